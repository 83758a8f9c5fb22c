/* openmpos: ISO 8583:1987 codec, ASCII fields, binary bitmaps (profile in mpos/iso8583.h). */
#include "mpos/iso8583.h"

#include <string.h>

#include "mpos/util.h"

#define FX(cs, n)                                                                                  \
    {                                                                                              \
        MPOS_ISO8583_FIXED, MPOS_ISO8583_##cs, (n), (n)                                            \
    }
#define LL(cs, n)                                                                                  \
    {                                                                                              \
        MPOS_ISO8583_LLVAR, MPOS_ISO8583_##cs, 1, (n)                                              \
    }
#define LLL(cs, n)                                                                                 \
    {                                                                                              \
        MPOS_ISO8583_LLLVAR, MPOS_ISO8583_##cs, 1, (n)                                             \
    }

/* ISO 8583:1987 clause 4.3 (data element directory), the fields this link uses. 55 and 60..63
 * follow the usual network profiles (ICC data, private use). */
const mpos_iso8583_field_spec mpos_iso8583_fields[MPOS_ISO8583_MAX_FIELD + 1] = {
    [2] = LL(N, 19),      [3] = FX(N, 6),       [4] = FX(N, 12),      [7] = FX(N, 10),
    [11] = FX(N, 6),      [12] = FX(N, 6),      [13] = FX(N, 4),      [14] = FX(N, 4),
    [18] = FX(N, 4),      [22] = FX(N, 3),      [23] = FX(N, 3),      [25] = FX(N, 2),
    [32] = LL(N, 11),     [35] = LL(Z, 37),     [37] = FX(AN, 12),    [38] = FX(AN, 6),
    [39] = FX(AN, 2),     [41] = FX(ANS, 8),    [42] = FX(ANS, 15),   [43] = FX(ANS, 40),
    [49] = FX(N, 3),      [52] = FX(B, 8),      [53] = FX(N, 16),     [55] = LLL(B, 255),
    [60] = LLL(ANS, 999), [61] = LLL(ANS, 999), [62] = LLL(ANS, 999), [63] = LLL(ANS, 999),
    [64] = FX(B, 8),      [70] = FX(N, 3),      [90] = FX(N, 42),     [95] = FX(AN, 42),
    [128] = FX(B, 8),
};

static int bit_get(const uint8_t *bm, unsigned n)
{
    return (bm[(n - 1) / 8] >> (7 - (n - 1) % 8)) & 1;
}

static void bit_set(uint8_t *bm, unsigned n, int on)
{
    uint8_t mask = (uint8_t)(0x80u >> ((n - 1) % 8));
    if (on) {
        bm[(n - 1) / 8] |= mask;
    } else {
        bm[(n - 1) / 8] &= (uint8_t)~mask;
    }
}

static const mpos_iso8583_field_spec *spec_of(unsigned field)
{
    if (field < 2 || field > MPOS_ISO8583_MAX_FIELD) {
        return NULL;
    }
    const mpos_iso8583_field_spec *s = &mpos_iso8583_fields[field];
    return s->kind == MPOS_ISO8583_NONE ? NULL : s;
}

static int char_ok(uint8_t charset, uint8_t c)
{
    switch (charset) {
    case MPOS_ISO8583_N:
        return c >= '0' && c <= '9';
    case MPOS_ISO8583_Z:
        return (c >= '0' && c <= '9') || c == '=';
    case MPOS_ISO8583_AN:
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               c == ' ';
    case MPOS_ISO8583_ANS:
        return c >= 0x20 && c <= 0x7E;
    case MPOS_ISO8583_B:
        return 1;
    default:
        return 0;
    }
}

/* The value fits the field's row of the table: length and characters. */
static int value_ok(const mpos_iso8583_field_spec *s, const uint8_t *v, size_t len)
{
    if (len < s->min_len || len > s->max_len || (len > 0 && v == NULL)) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (!char_ok(s->charset, v[i])) {
            return 0;
        }
    }
    return 1;
}

static int mti_ok(const char *mti)
{
    /* Clause 4.1: four digits, the first one the version, 0 = ISO 8583:1987. */
    for (size_t i = 0; i < MPOS_ISO8583_MTI_LEN; i++) {
        if (mti[i] < '0' || mti[i] > '9') {
            return 0;
        }
    }
    return mti[0] == '0';
}

int mpos_iso8583_init(mpos_iso8583_msg *msg, const char mti[MPOS_ISO8583_MTI_LEN])
{
    if (msg == NULL || mti == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(msg, 0, sizeof(*msg));
    if (!mti_ok(mti)) {
        return MPOS_ERR_ARG;
    }
    memcpy(msg->mti, mti, MPOS_ISO8583_MTI_LEN);
    return MPOS_OK;
}

int mpos_iso8583_set(mpos_iso8583_msg *msg, unsigned field, const void *value, size_t len)
{
    const mpos_iso8583_field_spec *s = spec_of(field);
    if (msg == NULL || s == NULL || !value_ok(s, value, len)) {
        return MPOS_ERR_ARG;
    }
    msg->value[field] = value;
    msg->len[field] = (uint16_t)len;
    bit_set(msg->present, field, 1);
    return MPOS_OK;
}

int mpos_iso8583_set_str(mpos_iso8583_msg *msg, unsigned field, const char *s)
{
    if (s == NULL) {
        return MPOS_ERR_ARG;
    }
    return mpos_iso8583_set(msg, field, s, strlen(s));
}

int mpos_iso8583_clear(mpos_iso8583_msg *msg, unsigned field)
{
    if (msg == NULL || spec_of(field) == NULL) {
        return MPOS_ERR_ARG;
    }
    msg->value[field] = NULL;
    msg->len[field] = 0;
    bit_set(msg->present, field, 0);
    return MPOS_OK;
}

int mpos_iso8583_has(const mpos_iso8583_msg *msg, unsigned field)
{
    return msg != NULL && spec_of(field) != NULL && bit_get(msg->present, field);
}

int mpos_iso8583_get(const mpos_iso8583_msg *msg, unsigned field, const uint8_t **value,
                     size_t *len, int *present)
{
    if (value != NULL) {
        *value = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (present != NULL) {
        *present = 0;
    }
    if (msg == NULL || value == NULL || len == NULL || present == NULL || spec_of(field) == NULL) {
        return MPOS_ERR_ARG;
    }
    if (bit_get(msg->present, field)) {
        *value = msg->value[field];
        *len = msg->len[field];
        *present = 1;
    }
    return MPOS_OK;
}

/* Any of fields 66..128 present: the secondary bitmap is needed (clause 4.2). */
static int needs_secondary(const uint8_t *present)
{
    for (unsigned f = 66; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        if (bit_get(present, f)) {
            return 1;
        }
    }
    return 0;
}

int mpos_iso8583_pack(const mpos_iso8583_msg *msg, uint8_t *out, size_t cap, size_t *out_len)
{
    int ret = MPOS_ERR_ARG;
    size_t pos = 0;
    if (out_len != NULL) {
        *out_len = 0;
    }
    if (msg == NULL || out == NULL || out_len == NULL) {
        goto exit;
    }
    ret = MPOS_ERR_FORMAT;
    if (!mti_ok(msg->mti) || bit_get(msg->present, 1) || bit_get(msg->present, 65)) {
        goto exit;
    }
    int secondary = needs_secondary(msg->present);
    if (secondary && bit_get(msg->present, 64)) {
        goto exit; /* the MAC is in 128 when there is a secondary bitmap */
    }
    /* Check the whole struct first (it is plain data a caller may have edited). */
    size_t total = MPOS_ISO8583_MTI_LEN + MPOS_ISO8583_BITMAP_LEN * (secondary ? 2u : 1u);
    for (unsigned f = 2; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        if (!bit_get(msg->present, f)) {
            continue;
        }
        const mpos_iso8583_field_spec *s = spec_of(f);
        if (s == NULL || !value_ok(s, msg->value[f], msg->len[f])) {
            goto exit;
        }
        total += (size_t)msg->len[f] + (s->kind == MPOS_ISO8583_LLVAR    ? 2u
                                        : s->kind == MPOS_ISO8583_LLLVAR ? 3u
                                                                         : 0u);
    }
    ret = MPOS_ERR_LENGTH;
    if (total > cap) {
        goto exit;
    }
    /* Clause 4.1: MTI; clause 4.2: primary bitmap, bit 1 = secondary bitmap present. */
    memcpy(out, msg->mti, MPOS_ISO8583_MTI_LEN);
    pos = MPOS_ISO8583_MTI_LEN;
    uint8_t bm[2 * MPOS_ISO8583_BITMAP_LEN];
    memcpy(bm, msg->present, sizeof(bm));
    bit_set(bm, 1, secondary);
    size_t bm_len = MPOS_ISO8583_BITMAP_LEN * (secondary ? 2u : 1u);
    memcpy(out + pos, bm, bm_len);
    pos += bm_len;
    /* Clause 4.3: data elements in ascending order, variable ones after their length. */
    for (unsigned f = 2; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        if (!bit_get(msg->present, f)) {
            continue;
        }
        const mpos_iso8583_field_spec *s = spec_of(f);
        size_t n = msg->len[f];
        if (s->kind == MPOS_ISO8583_LLLVAR) {
            out[pos++] = (uint8_t)('0' + n / 100);
        }
        if (s->kind != MPOS_ISO8583_FIXED) {
            out[pos++] = (uint8_t)('0' + n / 10 % 10);
            out[pos++] = (uint8_t)('0' + n % 10);
        }
        if (n > 0) {
            memcpy(out + pos, msg->value[f], n);
        }
        pos += n;
    }
    *out_len = pos;
    ret = MPOS_OK;
exit:
    return ret;
}

int mpos_iso8583_pack_framed(const mpos_iso8583_msg *msg, uint8_t *out, size_t cap, size_t *out_len)
{
    int ret = MPOS_ERR_ARG;
    size_t n = 0;
    if (out_len != NULL) {
        *out_len = 0;
    }
    if (msg == NULL || out == NULL || out_len == NULL) {
        goto exit;
    }
    ret = MPOS_ERR_LENGTH;
    if (cap < MPOS_ISO8583_FRAME_HDR) {
        goto exit;
    }
    size_t room = cap - MPOS_ISO8583_FRAME_HDR;
    if (room > MPOS_ISO8583_MAX_MSG_LEN) {
        room = MPOS_ISO8583_MAX_MSG_LEN;
    }
    ret = mpos_iso8583_pack(msg, out + MPOS_ISO8583_FRAME_HDR, room, &n);
    if (ret != MPOS_OK) {
        goto exit;
    }
    mpos_store_be16(out, (uint16_t)n);
    *out_len = n + MPOS_ISO8583_FRAME_HDR;
exit:
    return ret;
}

/* Reads an n-digit ASCII length prefix; -1 if any byte is not a digit. */
static long read_len(const uint8_t *p, size_t digits)
{
    long v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int mpos_iso8583_unpack(const uint8_t *buf, size_t len, mpos_iso8583_msg *msg)
{
    int ret = MPOS_ERR_ARG;
    size_t pos = 0;
    if (msg == NULL) {
        goto exit;
    }
    memset(msg, 0, sizeof(*msg));
    if (buf == NULL && len > 0) {
        goto exit;
    }
    ret = MPOS_ERR_FORMAT;
    if (len < MPOS_ISO8583_MIN_MSG_LEN || !mti_ok((const char *)buf)) {
        goto exit;
    }
    pos = MPOS_ISO8583_MTI_LEN;
    uint8_t bm[2 * MPOS_ISO8583_BITMAP_LEN] = {0};
    memcpy(bm, buf + pos, MPOS_ISO8583_BITMAP_LEN);
    pos += MPOS_ISO8583_BITMAP_LEN;
    int secondary = bit_get(bm, 1);
    if (secondary) {
        if (len - pos < MPOS_ISO8583_BITMAP_LEN) {
            goto exit;
        }
        memcpy(bm + MPOS_ISO8583_BITMAP_LEN, buf + pos, MPOS_ISO8583_BITMAP_LEN);
        pos += MPOS_ISO8583_BITMAP_LEN;
        /* Bit 1 set only when a field 66..128 follows; bit 65 (tertiary bitmap) refused. */
        if (bit_get(bm, 65) || !needs_secondary(bm) || bit_get(bm, 64)) {
            goto exit;
        }
    }
    for (unsigned f = 2; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        if (!bit_get(bm, f)) {
            continue;
        }
        const mpos_iso8583_field_spec *s = spec_of(f);
        if (s == NULL) {
            goto exit; /* a field this link does not know */
        }
        size_t n;
        if (s->kind == MPOS_ISO8583_FIXED) {
            n = s->max_len;
        } else {
            size_t digits = s->kind == MPOS_ISO8583_LLVAR ? 2u : 3u;
            if (len - pos < digits) {
                goto exit;
            }
            long v = read_len(buf + pos, digits);
            if (v < 0) {
                goto exit;
            }
            n = (size_t)v;
            pos += digits;
        }
        if (len - pos < n || !value_ok(s, buf + pos, n)) {
            goto exit;
        }
        msg->value[f] = buf + pos;
        msg->len[f] = (uint16_t)n;
        pos += n;
    }
    if (pos != len) {
        goto exit; /* trailing bytes */
    }
    memcpy(msg->mti, buf, MPOS_ISO8583_MTI_LEN);
    memcpy(msg->present, bm, sizeof(msg->present));
    bit_set(msg->present, 1, 0);
    ret = MPOS_OK;
exit:
    if (ret != MPOS_OK && msg != NULL) {
        memset(msg, 0, sizeof(*msg));
    }
    return ret;
}

int mpos_iso8583_frame_parse(const uint8_t *buf, size_t len, const uint8_t **msg_data,
                             size_t *msg_len, size_t *frame_len)
{
    int ret = MPOS_ERR_ARG;
    if (msg_data != NULL) {
        *msg_data = NULL;
    }
    if (msg_len != NULL) {
        *msg_len = 0;
    }
    if (frame_len != NULL) {
        *frame_len = 0;
    }
    if ((buf == NULL && len > 0) || msg_data == NULL || msg_len == NULL || frame_len == NULL) {
        goto exit;
    }
    ret = MPOS_ERR_LENGTH;
    if (len < MPOS_ISO8583_FRAME_HDR) {
        goto exit;
    }
    size_t n = mpos_load_be16(buf);
    if (n < MPOS_ISO8583_MIN_MSG_LEN) {
        ret = MPOS_ERR_FORMAT;
        goto exit;
    }
    if (len - MPOS_ISO8583_FRAME_HDR < n) {
        goto exit;
    }
    *msg_data = buf + MPOS_ISO8583_FRAME_HDR;
    *msg_len = n;
    *frame_len = n + MPOS_ISO8583_FRAME_HDR;
    ret = MPOS_OK;
exit:
    return ret;
}

int mpos_iso8583_mac_range(const uint8_t *buf, size_t len, size_t *mac_input_len)
{
    int ret = MPOS_ERR_ARG;
    mpos_iso8583_msg m;
    if (mac_input_len != NULL) {
        *mac_input_len = 0;
    }
    if (mac_input_len == NULL) {
        goto exit;
    }
    ret = mpos_iso8583_unpack(buf, len, &m);
    if (ret != MPOS_OK) {
        goto exit;
    }
    /* The MAC is the last data element: 64 without, 128 with the secondary bitmap. */
    unsigned mac_field = needs_secondary(m.present) ? 128u : 64u;
    ret = MPOS_ERR_FORMAT;
    if (!bit_get(m.present, mac_field)) {
        goto exit;
    }
    *mac_input_len = (size_t)(m.value[mac_field] - buf);
    ret = MPOS_OK;
exit:
    return ret;
}
