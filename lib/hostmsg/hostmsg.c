/* openmpos: the host protocol codec (docs/system-design.md 1.1-1.3). */
#include <string.h>

#include "mpos/ecc.h"
#include "mpos/hmac.h"
#include "mpos/hostmsg.h"
#include "mpos/util.h"

/* What the value of a field may hold, beyond its length. */
enum kind {
    K_NONE = 0, /* unknown tag */
    K_BYTES,    /* opaque */
    K_UPPER_AN, /* [A-Z0-9] */
    K_AN,       /* [A-Za-z0-9] */
    K_TEXT,     /* printable ASCII 0x20..0x7E */
    K_LINES,    /* printable ASCII and '\n' (key=value lines) */
    K_MASKED,   /* first 6 digits, '*'s, last 4 digits */
    K_FLAG,     /* u8 0/1 */
    K_TXN_TYPE, /* u8 1..4 */
    K_INT       /* fixed-width integer, any value */
};

struct spec {
    uint8_t kind;
    uint16_t min;
    uint16_t max;
};

/* docs/system-design.md 1.2, indexed by tag. */
static const struct spec SPECS[MPOS_HOSTMSG_TAG_LIMIT] = {
    [MPOS_HM_MERCHANT] = {K_UPPER_AN, 1, 15},
    [MPOS_HM_USERNAME] = {K_TEXT, 1, 32},
    [MPOS_HM_PASSWORD] = {K_BYTES, 1, 128},
    [MPOS_HM_DEVICE_ID] = {K_BYTES, 32, 32},
    [MPOS_HM_SESSION_TOKEN] = {K_BYTES, 32, 32},
    [MPOS_HM_ROLE] = {K_TEXT, 1, 16},
    [MPOS_HM_EXPIRES] = {K_INT, 8, 8},
    [MPOS_HM_ERROR] = {K_INT, 2, 2},
    [MPOS_HM_MESSAGE] = {K_TEXT, 0, 200},
    [MPOS_HM_DATA] = {K_BYTES, 1, MPOS_HOSTMSG_DATA_MAX},
    [MPOS_HM_TXN_TYPE] = {K_TXN_TYPE, 1, 1},
    [MPOS_HM_AMOUNT] = {K_INT, 8, 8},
    [MPOS_HM_CURRENCY] = {K_INT, 2, 2},
    [MPOS_HM_REFERENCE] = {K_AN, 1, 32},
    [MPOS_HM_TEXT] = {K_LINES, 0, 16000},
    [MPOS_HM_MERCHANT_ID] = {K_TEXT, 15, 15},
    [MPOS_HM_TERMINAL_ID] = {K_TEXT, 8, 8},
    [MPOS_HM_MASKED_PAN] = {K_MASKED, 12, 19},
    [MPOS_HM_RESPONSE_CODE] = {K_TEXT, 2, 2},
    [MPOS_HM_AUTH_CODE] = {K_TEXT, 0, 6},
    [MPOS_HM_RRN] = {K_TEXT, 0, 12},
    [MPOS_HM_SEQUENCE] = {K_INT, 4, 4},
    [MPOS_HM_LAT] = {K_INT, 4, 4},
    [MPOS_HM_LON] = {K_INT, 4, 4},
    [MPOS_HM_ACCURACY] = {K_INT, 4, 4},
    [MPOS_HM_LOC_TIME] = {K_INT, 8, 8},
    [MPOS_HM_DEBUGGER] = {K_FLAG, 1, 1},
    [MPOS_HM_ROOT] = {K_FLAG, 1, 1},
    [MPOS_HM_BINARY_HASH] = {K_BYTES, 32, 32},
    [MPOS_HM_COUNTER] = {K_INT, 8, 8},
    [MPOS_HM_MAC] = {K_BYTES, 32, 32},
};

/* Envelope ranges (H-GEO-1): the same as the terminal's SET_HOST_LOCATION (docs/protocol.md
 * 1.3), so a location the back end takes is one the terminal takes too. */
#define LAT_MAX      900000000
#define LON_MAX      1800000000
#define ACCURACY_MAX 1000000u
#define TIME_MIN     946684800ull  /* 2000-01-01 */
#define TIME_MAX     4102444799ull /* 2099-12-31 23:59:59 */

static const char LOGIN_INFO[] = "openmpos login v1";
static const char ENV_INFO[] = "openmpos host envelope v1";

static uint64_t load_be64(const uint8_t *p)
{
    return ((uint64_t)mpos_load_be32(p) << 32) | mpos_load_be32(p + 4);
}

static void store_be64(uint8_t *p, uint64_t v)
{
    mpos_store_be32(p, (uint32_t)(v >> 32));
    mpos_store_be32(p + 4, (uint32_t)v);
}

static int value_ok(uint8_t kind, const uint8_t *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = v[i];
        int ok = 1;
        switch (kind) {
        case K_UPPER_AN:
            ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            break;
        case K_AN:
            ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
            break;
        case K_TEXT:
            ok = c >= 0x20 && c <= 0x7E;
            break;
        case K_LINES:
            ok = (c >= 0x20 && c <= 0x7E) || c == '\n';
            break;
        case K_MASKED:
            /* First 6 and last 4 digits, '*' between (PCI DSS 3.4): never a whole PAN, even
             * from a back end that would send one (the host prints this field). */
            ok = (i < 6 || i + 4 >= len) ? (c >= '0' && c <= '9') : c == '*';
            break;
        case K_FLAG:
            ok = c <= 1;
            break;
        case K_TXN_TYPE:
            ok = c >= 1 && c <= 4;
            break;
        default:
            break;
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

int mpos_hostmsg_tag_range(uint8_t tag, uint16_t *min_len, uint16_t *max_len)
{
    if (tag >= MPOS_HOSTMSG_TAG_LIMIT || SPECS[tag].kind == K_NONE) {
        return 0;
    }
    if (min_len != NULL) {
        *min_len = SPECS[tag].min;
    }
    if (max_len != NULL) {
        *max_len = SPECS[tag].max;
    }
    return 1;
}

int mpos_hostmsg_parse(mpos_hostmsg *m, const uint8_t *msg, size_t len)
{
    int rc = MPOS_ERR_FORMAT;
    size_t off = 1;
    if (m == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(m, 0, sizeof(*m));
    if (msg == NULL) {
        return MPOS_ERR_ARG;
    }
    if (len < 1 || len > MPOS_HOSTMSG_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    m->type = msg[0];
    m->msg = msg;
    m->msg_len = len;
    while (off < len) {
        uint8_t tag;
        uint16_t flen;
        const struct spec *s;
        if (m->f[MPOS_HM_MAC].present) {
            goto exit; /* mac must be last: the MAC covers everything before it */
        }
        if (len - off < 3) {
            goto exit;
        }
        tag = msg[off];
        flen = mpos_load_be16(msg + off + 1);
        if (tag >= MPOS_HOSTMSG_TAG_LIMIT || SPECS[tag].kind == K_NONE) {
            goto exit;
        }
        s = &SPECS[tag];
        if (m->f[tag].present || flen < s->min || flen > s->max || len - off - 3 < flen) {
            goto exit;
        }
        if (!value_ok(s->kind, msg + off + 3, flen)) {
            goto exit;
        }
        if (tag == MPOS_HM_MAC) {
            m->mac_covered = off;
        }
        m->f[tag].present = 1;
        m->f[tag].value = msg + off + 3;
        m->f[tag].len = flen;
        m->field_count++;
        off += 3u + flen;
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        memset(m, 0, sizeof(*m));
    }
    return rc;
}

#define B(tag) MPOS_HOSTMSG_BIT(tag)

/* docs/system-design.md 1.3, by message type: what it may carry and what it must. */
struct type_fields {
    uint8_t type;
    uint64_t allowed;
    uint64_t required;
};

#define ENV MPOS_HOSTMSG_ENVELOPE_FIELDS
static const struct type_fields TYPES[] = {
    {MPOS_HOSTMSG_LOGIN, ENV | B(MPOS_HM_MERCHANT) | B(MPOS_HM_USERNAME) | B(MPOS_HM_PASSWORD),
     ENV | B(MPOS_HM_MERCHANT) | B(MPOS_HM_USERNAME) | B(MPOS_HM_PASSWORD)},
    {MPOS_HOSTMSG_RESUME, ENV | B(MPOS_HM_SESSION_TOKEN), ENV | B(MPOS_HM_SESSION_TOKEN)},
    {MPOS_HOSTMSG_TUNNEL, ENV | B(MPOS_HM_DATA), ENV | B(MPOS_HM_DATA)},
    {MPOS_HOSTMSG_TXN_BEGIN,
     ENV | B(MPOS_HM_TXN_TYPE) | B(MPOS_HM_AMOUNT) | B(MPOS_HM_CURRENCY) | B(MPOS_HM_REFERENCE),
     ENV | B(MPOS_HM_TXN_TYPE) | B(MPOS_HM_AMOUNT) | B(MPOS_HM_CURRENCY)},
    {MPOS_HOSTMSG_SETTLE, ENV, ENV},
    {MPOS_HOSTMSG_LOGOUT, ENV, ENV},
    {MPOS_HOSTMSG_LOGIN_OK, B(MPOS_HM_SESSION_TOKEN) | B(MPOS_HM_ROLE) | B(MPOS_HM_EXPIRES),
     B(MPOS_HM_SESSION_TOKEN) | B(MPOS_HM_ROLE) | B(MPOS_HM_EXPIRES)},
    {MPOS_HOSTMSG_RESUME_OK, B(MPOS_HM_ROLE) | B(MPOS_HM_EXPIRES) | B(MPOS_HM_MERCHANT),
     B(MPOS_HM_ROLE) | B(MPOS_HM_EXPIRES) | B(MPOS_HM_MERCHANT)},
    {MPOS_HOSTMSG_TUNNEL_DOWN, B(MPOS_HM_DATA), B(MPOS_HM_DATA)},
    /* amount and currency only for a void or refund (the original's). */
    {MPOS_HOSTMSG_TXN_OK, B(MPOS_HM_AMOUNT) | B(MPOS_HM_CURRENCY), 0},
    {MPOS_HOSTMSG_SETTLE_OK, B(MPOS_HM_TEXT), B(MPOS_HM_TEXT)},
    {MPOS_HOSTMSG_LOGOUT_OK, 0, 0},
    /* merchant-id, terminal-id and masked-pan are left out when the outcome has none. */
    {MPOS_HOSTMSG_TXN_RESULT,
     B(MPOS_HM_MERCHANT_ID) | B(MPOS_HM_TERMINAL_ID) | B(MPOS_HM_TXN_TYPE) | B(MPOS_HM_AMOUNT) |
         B(MPOS_HM_CURRENCY) | B(MPOS_HM_MASKED_PAN) | B(MPOS_HM_RESPONSE_CODE) |
         B(MPOS_HM_AUTH_CODE) | B(MPOS_HM_RRN) | B(MPOS_HM_SEQUENCE),
     B(MPOS_HM_TXN_TYPE) | B(MPOS_HM_AMOUNT) | B(MPOS_HM_CURRENCY) | B(MPOS_HM_RESPONSE_CODE) |
         B(MPOS_HM_AUTH_CODE) | B(MPOS_HM_RRN) | B(MPOS_HM_SEQUENCE)},
    {MPOS_HOSTMSG_ERROR, B(MPOS_HM_ERROR) | B(MPOS_HM_MESSAGE), B(MPOS_HM_ERROR)},
};
#undef ENV

int mpos_hostmsg_type_fields(uint8_t type, uint64_t *allowed, uint64_t *required)
{
    uint64_t a = 0;
    uint64_t r = 0;
    int known = 0;
    for (size_t i = 0; i < sizeof(TYPES) / sizeof(TYPES[0]); i++) {
        if (TYPES[i].type == type) {
            a = TYPES[i].allowed;
            r = TYPES[i].required;
            known = 1;
            break;
        }
    }
    if (allowed != NULL) {
        *allowed = a;
    }
    if (required != NULL) {
        *required = r;
    }
    return known;
}

/* The tags present in m as a mask. */
static uint64_t present_mask(const mpos_hostmsg *m)
{
    uint64_t have = 0;
    for (unsigned t = 0; t < MPOS_HOSTMSG_TAG_LIMIT; t++) {
        if (m->f[t].present) {
            have |= B(t);
        }
    }
    return have;
}

int mpos_hostmsg_check_allowed(const mpos_hostmsg *m)
{
    uint64_t allowed = 0;
    if (m == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_hostmsg_type_fields(m->type, &allowed, NULL)) {
        return MPOS_ERR_FORMAT;
    }
    return (present_mask(m) & ~allowed) == 0 ? MPOS_OK : MPOS_ERR_FORMAT;
}

int mpos_hostmsg_check_required(const mpos_hostmsg *m)
{
    uint64_t required = 0;
    if (m == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_hostmsg_type_fields(m->type, NULL, &required)) {
        return MPOS_ERR_FORMAT;
    }
    return (present_mask(m) & required) == required ? MPOS_OK : MPOS_ERR_FORMAT;
}

int mpos_hostmsg_has(const mpos_hostmsg *m, uint8_t tag)
{
    return m != NULL && tag < MPOS_HOSTMSG_TAG_LIMIT && m->f[tag].present;
}

int mpos_hostmsg_get(const mpos_hostmsg *m, uint8_t tag, const uint8_t **value, size_t *len)
{
    if (m == NULL || value == NULL || len == NULL || tag >= MPOS_HOSTMSG_TAG_LIMIT) {
        return MPOS_ERR_ARG;
    }
    if (!m->f[tag].present) {
        *value = NULL;
        *len = 0;
        return MPOS_ERR_FORMAT;
    }
    *value = m->f[tag].value;
    *len = m->f[tag].len;
    return MPOS_OK;
}

/* A fixed-width field's bytes, or an error. */
static int get_fixed(const mpos_hostmsg *m, uint8_t tag, size_t width, const uint8_t **v)
{
    size_t len = 0;
    int rc;
    if (tag >= MPOS_HOSTMSG_TAG_LIMIT || SPECS[tag].kind == K_NONE || SPECS[tag].min != width ||
        SPECS[tag].max != width) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_hostmsg_get(m, tag, v, &len);
    if (rc != MPOS_OK) {
        return rc;
    }
    return len == width ? MPOS_OK : MPOS_ERR_FORMAT;
}

int mpos_hostmsg_get_u8(const mpos_hostmsg *m, uint8_t tag, uint8_t *v)
{
    const uint8_t *p = NULL;
    int rc;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = get_fixed(m, tag, 1, &p);
    *v = rc == MPOS_OK ? p[0] : 0;
    return rc;
}

int mpos_hostmsg_get_u16(const mpos_hostmsg *m, uint8_t tag, uint16_t *v)
{
    const uint8_t *p = NULL;
    int rc;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = get_fixed(m, tag, 2, &p);
    *v = rc == MPOS_OK ? mpos_load_be16(p) : 0;
    return rc;
}

int mpos_hostmsg_get_u32(const mpos_hostmsg *m, uint8_t tag, uint32_t *v)
{
    const uint8_t *p = NULL;
    int rc;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = get_fixed(m, tag, 4, &p);
    *v = rc == MPOS_OK ? mpos_load_be32(p) : 0;
    return rc;
}

int mpos_hostmsg_get_i32(const mpos_hostmsg *m, uint8_t tag, int32_t *v)
{
    uint32_t u = 0;
    int rc;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_hostmsg_get_u32(m, tag, &u);
    /* Two's complement without implementation-defined conversion. */
    *v = u <= 0x7FFFFFFFu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7FFFFFFF - 1;
    return rc;
}

int mpos_hostmsg_get_u64(const mpos_hostmsg *m, uint8_t tag, uint64_t *v)
{
    const uint8_t *p = NULL;
    int rc;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = get_fixed(m, tag, 8, &p);
    *v = rc == MPOS_OK ? load_be64(p) : 0;
    return rc;
}

int mpos_hostmsg_get_text(const mpos_hostmsg *m, uint8_t tag, char *out, size_t cap)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    int rc;
    if (out == NULL || cap == 0) {
        return MPOS_ERR_ARG;
    }
    out[0] = '\0';
    rc = mpos_hostmsg_get(m, tag, &p, &len);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (len >= cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return MPOS_OK;
}

int mpos_hostmsg_get_envelope(const mpos_hostmsg *m, struct mpos_hostmsg_envelope *env)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    int rc;
    if (m == NULL || env == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(env, 0, sizeof(*env));
    if (!mpos_hostmsg_has(m, MPOS_HM_MAC)) {
        return MPOS_ERR_FORMAT;
    }
    if ((rc = mpos_hostmsg_get_i32(m, MPOS_HM_LAT, &env->lat)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_i32(m, MPOS_HM_LON, &env->lon)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_u32(m, MPOS_HM_ACCURACY, &env->accuracy)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_u64(m, MPOS_HM_LOC_TIME, &env->loc_time)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_u8(m, MPOS_HM_DEBUGGER, &env->debugger)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_u8(m, MPOS_HM_ROOT, &env->root)) != MPOS_OK ||
        (rc = mpos_hostmsg_get_u64(m, MPOS_HM_COUNTER, &env->counter)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = mpos_hostmsg_get(m, MPOS_HM_DEVICE_ID, &p, &len)) != MPOS_OK) {
        goto exit;
    }
    memcpy(env->device_id, p, MPOS_HOSTMSG_ID_LEN);
    if ((rc = mpos_hostmsg_get(m, MPOS_HM_BINARY_HASH, &p, &len)) != MPOS_OK) {
        goto exit;
    }
    memcpy(env->binary_hash, p, MPOS_HOSTMSG_ID_LEN);
    rc = MPOS_ERR_FORMAT;
    if (env->lat < -LAT_MAX || env->lat > LAT_MAX || env->lon < -LON_MAX || env->lon > LON_MAX ||
        env->accuracy > ACCURACY_MAX || env->loc_time < TIME_MIN || env->loc_time > TIME_MAX ||
        env->counter == 0) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        memset(env, 0, sizeof(*env));
    }
    return rc;
}

int mpos_hostmsg_verify_mac(const mpos_hostmsg *m, const uint8_t *key, size_t key_len)
{
    uint8_t mac[MPOS_HMAC_SHA256_LEN];
    int rc;
    if (m == NULL || key == NULL || m->msg == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!m->f[MPOS_HM_MAC].present || m->f[MPOS_HM_MAC].len != MPOS_HOSTMSG_MAC_LEN) {
        return MPOS_ERR_FORMAT;
    }
    rc = mpos_hmac_sha256(key, key_len, m->msg, m->mac_covered, mac);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_ct_equal(mac, m->f[MPOS_HM_MAC].value, MPOS_HOSTMSG_MAC_LEN) ? MPOS_OK
                                                                           : MPOS_ERR_VERIFY;
exit:
    MPOS_WIPE_BUFFER(mac);
    return rc;
}

int mpos_hostmsg_writer_init(mpos_hostmsg_writer *w, uint8_t *buf, size_t cap, uint8_t type)
{
    if (w == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(w, 0, sizeof(*w));
    if (buf == NULL) {
        w->err = MPOS_ERR_ARG;
        return MPOS_ERR_ARG;
    }
    if (cap < MPOS_HOSTMSG_HDR_LEN + 1) {
        w->err = MPOS_ERR_LENGTH;
        return MPOS_ERR_LENGTH;
    }
    w->buf = buf;
    w->cap = cap < MPOS_HOSTMSG_MAX_FRAME_LEN ? cap : MPOS_HOSTMSG_MAX_FRAME_LEN;
    memset(buf, 0, MPOS_HOSTMSG_HDR_LEN);
    buf[MPOS_HOSTMSG_HDR_LEN] = type;
    w->len = MPOS_HOSTMSG_HDR_LEN + 1;
    return MPOS_OK;
}

/* Appends a field after the checks; also used for mac. */
static int put_field(mpos_hostmsg_writer *w, uint8_t tag, const void *value, size_t len)
{
    const struct spec *s;
    int rc = MPOS_ERR_FORMAT;
    if (w == NULL) {
        return MPOS_ERR_ARG;
    }
    if (w->err != MPOS_OK) {
        return w->err;
    }
    if (w->buf == NULL || (value == NULL && len > 0)) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    if (w->sealed || tag >= MPOS_HOSTMSG_TAG_LIMIT || SPECS[tag].kind == K_NONE) {
        goto exit;
    }
    s = &SPECS[tag];
    if (((unsigned)w->seen[tag / 8] >> (tag % 8u)) & 1u) {
        goto exit;
    }
    if (len < s->min || len > s->max || (len > 0 && !value_ok(s->kind, value, len))) {
        goto exit;
    }
    if (w->cap - w->len < 3 + len) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    w->buf[w->len] = tag;
    mpos_store_be16(w->buf + w->len + 1, (uint16_t)len);
    if (len > 0) {
        memcpy(w->buf + w->len + 3, value, len);
    }
    w->len += 3 + len;
    w->seen[tag / 8] = (uint8_t)(w->seen[tag / 8] | (1u << (tag % 8u)));
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        w->err = rc;
    }
    return rc;
}

int mpos_hostmsg_put(mpos_hostmsg_writer *w, uint8_t tag, const void *value, size_t len)
{
    if (tag == MPOS_HM_MAC) {
        if (w != NULL && w->err == MPOS_OK) {
            w->err = MPOS_ERR_ARG;
        }
        return MPOS_ERR_ARG;
    }
    return put_field(w, tag, value, len);
}

int mpos_hostmsg_put_u8(mpos_hostmsg_writer *w, uint8_t tag, uint8_t v)
{
    return mpos_hostmsg_put(w, tag, &v, 1);
}

int mpos_hostmsg_put_u16(mpos_hostmsg_writer *w, uint8_t tag, uint16_t v)
{
    uint8_t b[2];
    mpos_store_be16(b, v);
    return mpos_hostmsg_put(w, tag, b, sizeof(b));
}

int mpos_hostmsg_put_u32(mpos_hostmsg_writer *w, uint8_t tag, uint32_t v)
{
    uint8_t b[4];
    mpos_store_be32(b, v);
    return mpos_hostmsg_put(w, tag, b, sizeof(b));
}

int mpos_hostmsg_put_i32(mpos_hostmsg_writer *w, uint8_t tag, int32_t v)
{
    /* Two's complement bit pattern, defined for every value. */
    uint32_t u = v >= 0 ? (uint32_t)v : (uint32_t)(-(v + 1)) ^ 0xFFFFFFFFu;
    return mpos_hostmsg_put_u32(w, tag, u);
}

int mpos_hostmsg_put_u64(mpos_hostmsg_writer *w, uint8_t tag, uint64_t v)
{
    uint8_t b[8];
    store_be64(b, v);
    return mpos_hostmsg_put(w, tag, b, sizeof(b));
}

int mpos_hostmsg_put_text(mpos_hostmsg_writer *w, uint8_t tag, const char *s)
{
    if (s == NULL) {
        return mpos_hostmsg_put(w, tag, NULL, 1); /* NULL with a length: MPOS_ERR_ARG sticks */
    }
    return mpos_hostmsg_put(w, tag, s, strlen(s));
}

int mpos_hostmsg_put_envelope(mpos_hostmsg_writer *w, const struct mpos_hostmsg_envelope *env)
{
    if (w == NULL) {
        return MPOS_ERR_ARG;
    }
    if (env == NULL) {
        if (w->err == MPOS_OK) {
            w->err = MPOS_ERR_ARG;
        }
        return MPOS_ERR_ARG;
    }
    if (env->lat < -LAT_MAX || env->lat > LAT_MAX || env->lon < -LON_MAX || env->lon > LON_MAX ||
        env->accuracy > ACCURACY_MAX || env->loc_time < TIME_MIN || env->loc_time > TIME_MAX ||
        env->counter == 0 || env->debugger > 1 || env->root > 1) {
        if (w->err == MPOS_OK) {
            w->err = MPOS_ERR_FORMAT;
        }
        return w->err;
    }
    (void)mpos_hostmsg_put_i32(w, MPOS_HM_LAT, env->lat);
    (void)mpos_hostmsg_put_i32(w, MPOS_HM_LON, env->lon);
    (void)mpos_hostmsg_put_u32(w, MPOS_HM_ACCURACY, env->accuracy);
    (void)mpos_hostmsg_put_u64(w, MPOS_HM_LOC_TIME, env->loc_time);
    (void)mpos_hostmsg_put(w, MPOS_HM_DEVICE_ID, env->device_id, MPOS_HOSTMSG_ID_LEN);
    (void)mpos_hostmsg_put_u8(w, MPOS_HM_DEBUGGER, env->debugger);
    (void)mpos_hostmsg_put_u8(w, MPOS_HM_ROOT, env->root);
    (void)mpos_hostmsg_put(w, MPOS_HM_BINARY_HASH, env->binary_hash, MPOS_HOSTMSG_ID_LEN);
    return mpos_hostmsg_put_u64(w, MPOS_HM_COUNTER, env->counter);
}

int mpos_hostmsg_put_mac(mpos_hostmsg_writer *w, const uint8_t *key, size_t key_len)
{
    uint8_t mac[MPOS_HMAC_SHA256_LEN];
    int rc;
    if (w == NULL) {
        return MPOS_ERR_ARG;
    }
    if (w->err != MPOS_OK) {
        return w->err;
    }
    if (key == NULL) {
        w->err = MPOS_ERR_ARG;
        return MPOS_ERR_ARG;
    }
    /* From the type byte to the end of the last field (docs/system-design.md 1.3). */
    rc = mpos_hmac_sha256(key, key_len, w->buf + MPOS_HOSTMSG_HDR_LEN,
                          w->len - MPOS_HOSTMSG_HDR_LEN, mac);
    if (rc == MPOS_OK) {
        rc = put_field(w, MPOS_HM_MAC, mac, sizeof(mac));
    } else {
        w->err = rc;
    }
    if (rc == MPOS_OK) {
        w->sealed = 1;
    }
    MPOS_WIPE_BUFFER(mac);
    return rc;
}

int mpos_hostmsg_finish(mpos_hostmsg_writer *w, size_t *frame_len)
{
    if (w == NULL || frame_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *frame_len = 0;
    if (w->err != MPOS_OK) {
        return w->err;
    }
    mpos_store_be32(w->buf, (uint32_t)(w->len - MPOS_HOSTMSG_HDR_LEN));
    *frame_len = w->len;
    return MPOS_OK;
}

void mpos_hostmsg_reader_init(mpos_hostmsg_reader *r)
{
    if (r != NULL) {
        r->have = 0;
        r->failed = 0;
    }
}

int mpos_hostmsg_reader_feed(mpos_hostmsg_reader *r, const uint8_t *data, size_t len,
                             size_t *consumed, const uint8_t **msg, size_t *msg_len)
{
    size_t take = 0;
    size_t want;
    if (r == NULL || consumed == NULL || msg == NULL || msg_len == NULL ||
        (data == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    *consumed = 0;
    *msg = NULL;
    *msg_len = 0;
    if (r->failed) {
        return MPOS_ERR_LENGTH;
    }
    /* The message delivered by the previous call is gone now. */
    if (r->have >= MPOS_HOSTMSG_HDR_LEN &&
        r->have == MPOS_HOSTMSG_HDR_LEN + (size_t)mpos_load_be32(r->buf)) {
        r->have = 0;
    }
    if (r->have < MPOS_HOSTMSG_HDR_LEN) {
        take = MPOS_HOSTMSG_HDR_LEN - r->have;
        if (take > len) {
            take = len;
        }
        memcpy(r->buf + r->have, data, take);
        r->have += take;
        if (r->have < MPOS_HOSTMSG_HDR_LEN) {
            *consumed = take;
            return 0;
        }
        want = mpos_load_be32(r->buf);
        /* Checked from the prefix alone, so an oversize frame is never read (1.1). */
        if (want < 1 || want > MPOS_HOSTMSG_MAX_LEN) {
            r->failed = 1;
            *consumed = take;
            return MPOS_ERR_LENGTH;
        }
    }
    want = MPOS_HOSTMSG_HDR_LEN + (size_t)mpos_load_be32(r->buf) - r->have;
    if (want > len - take) {
        want = len - take;
    }
    memcpy(r->buf + r->have, data + take, want);
    r->have += want;
    *consumed = take + want;
    if (r->have == MPOS_HOSTMSG_HDR_LEN + (size_t)mpos_load_be32(r->buf)) {
        *msg = r->buf + MPOS_HOSTMSG_HDR_LEN;
        *msg_len = r->have - MPOS_HOSTMSG_HDR_LEN;
        return 1;
    }
    return 0;
}

int mpos_hostmsg_reader_pending(const mpos_hostmsg_reader *r)
{
    if (r == NULL || r->have == 0) {
        return 0;
    }
    /* A delivered message still held is not a pending frame. */
    return !(r->have >= MPOS_HOSTMSG_HDR_LEN &&
             r->have == MPOS_HOSTMSG_HDR_LEN + (size_t)mpos_load_be32(r->buf));
}

int mpos_hostmsg_login_key(const uint8_t exporter[MPOS_HOSTMSG_EXPORTER_LEN],
                           uint8_t key[MPOS_HOSTMSG_KEY_LEN])
{
    int rc;
    if (exporter == NULL || key == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_hkdf_sha256(NULL, 0, exporter, MPOS_HOSTMSG_EXPORTER_LEN, (const uint8_t *)LOGIN_INFO,
                          sizeof(LOGIN_INFO) - 1, key, MPOS_HOSTMSG_KEY_LEN);
    if (rc != MPOS_OK) {
        mpos_cleanse(key, MPOS_HOSTMSG_KEY_LEN);
    }
    return rc;
}

int mpos_hostmsg_env_key(const uint8_t token[MPOS_HOSTMSG_ID_LEN],
                         const uint8_t exporter[MPOS_HOSTMSG_EXPORTER_LEN],
                         uint8_t key[MPOS_HOSTMSG_KEY_LEN])
{
    int rc;
    if (token == NULL || exporter == NULL || key == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_hkdf_sha256(exporter, MPOS_HOSTMSG_EXPORTER_LEN, token, MPOS_HOSTMSG_ID_LEN,
                          (const uint8_t *)ENV_INFO, sizeof(ENV_INFO) - 1, key,
                          MPOS_HOSTMSG_KEY_LEN);
    if (rc != MPOS_OK) {
        mpos_cleanse(key, MPOS_HOSTMSG_KEY_LEN);
    }
    return rc;
}
