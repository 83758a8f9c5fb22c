/* openmpos: tunnel application message codec (docs/system-design.md 2.1). */
#include "mpos/tunnel.h"

#include <string.h>

#include "mpos/tlv.h"
#include "mpos/util.h"

/* Field bits, in tag order (bit i = tag DF01 + i), so "ascending order" is "ascending bit". */
#define F_SERIAL    (1u << 0)
#define F_FIRMWARE  (1u << 1)
#define F_CODE      (1u << 2)
#define F_STATUS    (1u << 3)
#define F_MERCHANT  (1u << 4)
#define F_TERMINAL  (1u << 5)
#define F_PARAMS    (1u << 6)
#define F_ACTIVATED (1u << 7)
#define F_ACT_SET   (F_MERCHANT | F_TERMINAL | F_PARAMS)

void mpos_tunnel_msg_init(mpos_tunnel_msg *msg, enum mpos_tunnel_type type)
{
    if (msg == NULL) {
        return;
    }
    memset(msg, 0, sizeof(*msg));
    msg->type = (uint8_t)type;
}

const char *mpos_tunnel_type_name(unsigned type)
{
    switch (type) {
    case MPOS_TUNNEL_HELLO:
        return "HELLO";
    case MPOS_TUNNEL_ACTIVATE:
        return "ACTIVATE";
    case MPOS_TUNNEL_SEALED:
        return "SEALED";
    case MPOS_TUNNEL_HELLO_OK:
        return "HELLO_OK";
    case MPOS_TUNNEL_ACTIVATE_OK:
        return "ACTIVATE_OK";
    case MPOS_TUNNEL_SEALED_RESP:
        return "SEALED_RESP";
    case MPOS_TUNNEL_ERROR:
        return "ERROR";
    default:
        return "UNKNOWN";
    }
}

static int known_type(unsigned t)
{
    return t == MPOS_TUNNEL_HELLO || t == MPOS_TUNNEL_ACTIVATE || t == MPOS_TUNNEL_SEALED ||
           t == MPOS_TUNNEL_HELLO_OK || t == MPOS_TUNNEL_ACTIVATE_OK ||
           t == MPOS_TUNNEL_SEALED_RESP || t == MPOS_TUNNEL_ERROR;
}

static int is_raw(unsigned t)
{
    return t == MPOS_TUNNEL_SEALED || t == MPOS_TUNNEL_SEALED_RESP;
}

static int ans_char(uint8_t c)
{
    return c >= 0x20 && c <= 0x7E;
}

static int ans_ok(const uint8_t *s, size_t n, size_t min, size_t max)
{
    if (n < min || n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ans_char(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* major.minor.patch[-suffix]: numbers of 1..5 digits, a suffix of 1+ ans characters. */
static int firmware_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    if (!ans_ok(s, n, 1, MPOS_TUNNEL_FIRMWARE_MAX)) {
        return 0;
    }
    for (int part = 0; part < 3; part++) {
        size_t start = i;
        while (i < n && is_digit(s[i])) {
            i++;
        }
        if (i == start || i - start > 5) {
            return 0;
        }
        if (part < 2) {
            if (i >= n || s[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    if (i == n) {
        return 1;
    }
    /* A suffix: '-' then at least one more character (all ans, checked above). */
    return s[i] == '-' && n - i >= 2;
}

static int code_ok(const uint8_t *s, size_t n)
{
    if (n < MPOS_TUNNEL_CODE_MIN || n > MPOS_TUNNEL_CODE_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!(is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* The fields a message of this type carries, given its status / activated flag. */
static unsigned field_set(unsigned type, uint8_t status, uint8_t activated)
{
    switch (type) {
    case MPOS_TUNNEL_HELLO:
        return F_SERIAL | F_FIRMWARE;
    case MPOS_TUNNEL_ACTIVATE:
        return F_SERIAL | F_FIRMWARE | F_CODE;
    case MPOS_TUNNEL_HELLO_OK:
        return F_STATUS | F_ACTIVATED | (activated == 1 ? F_ACT_SET : 0u);
    case MPOS_TUNNEL_ACTIVATE_OK:
        return F_STATUS | (status == MPOS_TUNNEL_ST_OK ? F_ACT_SET : 0u);
    case MPOS_TUNNEL_ERROR:
        return F_STATUS;
    default:
        return 0;
    }
}

/* Checks one field value; 1 when it is in range for this message type. */
static int field_ok(unsigned type, unsigned bit, const uint8_t *v, size_t n)
{
    switch (bit) {
    case F_SERIAL:
        return ans_ok(v, n, 1, MPOS_TUNNEL_SERIAL_MAX);
    case F_FIRMWARE:
        return firmware_ok(v, n);
    case F_CODE:
        return code_ok(v, n);
    case F_STATUS:
        if (n != 1 || v[0] > MPOS_TUNNEL_ST_MAX) {
            return 0;
        }
        return type != MPOS_TUNNEL_ERROR || v[0] != MPOS_TUNNEL_ST_OK;
    case F_MERCHANT:
        return ans_ok(v, n, MPOS_TUNNEL_MERCHANT_LEN, MPOS_TUNNEL_MERCHANT_LEN);
    case F_TERMINAL:
        return ans_ok(v, n, MPOS_TUNNEL_TERMINAL_LEN, MPOS_TUNNEL_TERMINAL_LEN);
    case F_PARAMS:
        return n >= 1 && n <= MPOS_TUNNEL_PARAMS_MAX;
    case F_ACTIVATED:
        return n == 1 && v[0] <= 1;
    default:
        return 0;
    }
}

/* Length of a NUL-terminated string inside an array of cap bytes; cap when unterminated. */
static size_t text_len(const char *s, size_t cap)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0') {
        n++;
    }
    return n;
}

/* The value of field bit of msg (for encode); 0 when a text field is unterminated. */
static int field_value(const mpos_tunnel_msg *msg, unsigned bit, const uint8_t **v, size_t *n)
{
    const char *s = NULL;
    size_t cap = 0;
    switch (bit) {
    case F_SERIAL:
        s = msg->serial;
        cap = sizeof(msg->serial);
        break;
    case F_FIRMWARE:
        s = msg->firmware;
        cap = sizeof(msg->firmware);
        break;
    case F_CODE:
        s = msg->code;
        cap = sizeof(msg->code);
        break;
    case F_MERCHANT:
        s = msg->merchant_id;
        cap = sizeof(msg->merchant_id);
        break;
    case F_TERMINAL:
        s = msg->terminal_id;
        cap = sizeof(msg->terminal_id);
        break;
    case F_STATUS:
        *v = &msg->status;
        *n = 1;
        return 1;
    case F_ACTIVATED:
        *v = &msg->activated;
        *n = 1;
        return 1;
    case F_PARAMS:
        if (msg->params_len > sizeof(msg->params)) {
            return 0;
        }
        *v = msg->params;
        *n = msg->params_len;
        return 1;
    default:
        return 0;
    }
    *n = text_len(s, cap);
    *v = (const uint8_t *)s;
    return *n < cap;
}

int mpos_tunnel_encode(const mpos_tunnel_msg *msg, uint8_t *out, size_t cap, size_t *len)
{
    int r = MPOS_ERR_ARG;
    size_t body = 0;
    if (len != NULL) {
        *len = 0;
    }
    if (msg == NULL || out == NULL || len == NULL || !known_type(msg->type)) {
        goto exit;
    }
    if (is_raw(msg->type)) {
        if (msg->body == NULL || msg->body_len < 1 || msg->body_len > MPOS_TUNNEL_MAX_BODY) {
            goto exit;
        }
        body = msg->body_len;
        if (cap < MPOS_TUNNEL_HEADER_LEN + body) {
            r = MPOS_ERR_LENGTH;
            goto exit;
        }
        /* memmove: the body may already sit at out + 3 (a caller building in place). */
        memmove(out + MPOS_TUNNEL_HEADER_LEN, msg->body, body);
    } else {
        unsigned set = field_set(msg->type, msg->status, msg->activated);
        if (cap < MPOS_TUNNEL_HEADER_LEN) {
            r = MPOS_ERR_LENGTH;
            goto exit;
        }
        size_t bcap = cap - MPOS_TUNNEL_HEADER_LEN;
        if (bcap > MPOS_TUNNEL_MAX_BODY) {
            bcap = MPOS_TUNNEL_MAX_BODY;
        }
        for (unsigned i = 0; i < 8; i++) {
            unsigned bit = 1u << i;
            const uint8_t *v = NULL;
            size_t n = 0;
            if (!(set & bit)) {
                continue;
            }
            if (!field_value(msg, bit, &v, &n) || !field_ok(msg->type, bit, v, n)) {
                r = MPOS_ERR_ARG;
                goto exit;
            }
            r = mpos_tlv_put(out + MPOS_TUNNEL_HEADER_LEN, bcap, &body, MPOS_TUNNEL_TAG_SERIAL + i,
                             v, n);
            if (r != MPOS_OK) {
                goto exit;
            }
        }
    }
    out[0] = msg->type;
    mpos_store_be16(out + 1, (uint16_t)body);
    *len = MPOS_TUNNEL_HEADER_LEN + body;
    r = MPOS_OK;
exit:
    return r;
}

static void store_text(char *dst, const uint8_t *v, size_t n)
{
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Decodes a TLV body for a non-raw type into msg (already zeroed, type set). */
static int decode_fields(const uint8_t *b, size_t n, mpos_tunnel_msg *msg)
{
    mpos_tlv_iter it;
    mpos_tlv obj;
    unsigned seen = 0;
    unsigned last = 0; /* the highest bit seen so far: order is strictly ascending */
    int r;
    mpos_tlv_iter_init(&it, b, n, MPOS_TLV_STRICT);
    while (mpos_tlv_more(&it)) {
        if ((r = mpos_tlv_next(&it, &obj)) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
        if (obj.constructed || obj.tag < MPOS_TUNNEL_TAG_SERIAL ||
            obj.tag > MPOS_TUNNEL_TAG_ACTIVATED) {
            return MPOS_ERR_FORMAT;
        }
        unsigned bit = 1u << (obj.tag - MPOS_TUNNEL_TAG_SERIAL);
        if (bit <= last || !field_ok(msg->type, bit, obj.value, obj.len)) {
            return MPOS_ERR_FORMAT;
        }
        last = bit;
        seen |= bit;
        switch (bit) {
        case F_SERIAL:
            store_text(msg->serial, obj.value, obj.len);
            break;
        case F_FIRMWARE:
            store_text(msg->firmware, obj.value, obj.len);
            break;
        case F_CODE:
            store_text(msg->code, obj.value, obj.len);
            break;
        case F_STATUS:
            msg->status = obj.value[0];
            break;
        case F_MERCHANT:
            store_text(msg->merchant_id, obj.value, obj.len);
            break;
        case F_TERMINAL:
            store_text(msg->terminal_id, obj.value, obj.len);
            break;
        case F_PARAMS:
            memcpy(msg->params, obj.value, obj.len);
            msg->params_len = obj.len;
            break;
        default: /* F_ACTIVATED */
            msg->activated = obj.value[0];
            break;
        }
    }
    /* The set depends on status / activated, known only now. */
    if (seen != field_set(msg->type, msg->status, msg->activated)) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

int mpos_tunnel_decode(const uint8_t *in, size_t len, mpos_tunnel_msg *msg)
{
    int r = MPOS_ERR_ARG;
    if (msg == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(msg, 0, sizeof(*msg));
    if (in == NULL) {
        goto exit;
    }
    r = MPOS_ERR_FORMAT;
    if (len < MPOS_TUNNEL_HEADER_LEN || !known_type(in[0])) {
        goto exit;
    }
    size_t body = mpos_load_be16(in + 1);
    if (body > MPOS_TUNNEL_MAX_BODY || len != MPOS_TUNNEL_HEADER_LEN + body) {
        goto exit;
    }
    msg->type = in[0];
    if (is_raw(in[0])) {
        if (body < 1) {
            goto exit;
        }
        msg->body = in + MPOS_TUNNEL_HEADER_LEN;
        msg->body_len = body;
        r = MPOS_OK;
    } else {
        r = decode_fields(in + MPOS_TUNNEL_HEADER_LEN, body, msg);
    }
exit:
    if (r != MPOS_OK) {
        memset(msg, 0, sizeof(*msg));
    }
    return r;
}

void mpos_tunnel_reader_init(mpos_tunnel_reader *rd)
{
    if (rd != NULL) {
        rd->have = 0;
        rd->err = 0;
    }
}

/* Size of the whole message once the header is in, else 0. */
static size_t whole_size(const mpos_tunnel_reader *rd)
{
    if (rd->have < MPOS_TUNNEL_HEADER_LEN) {
        return 0;
    }
    return MPOS_TUNNEL_HEADER_LEN + (size_t)mpos_load_be16(rd->buf + 1);
}

int mpos_tunnel_reader_feed(mpos_tunnel_reader *rd, const uint8_t *in, size_t len, size_t *used)
{
    if (used != NULL) {
        *used = 0;
    }
    if (rd == NULL || used == NULL || (in == NULL && len != 0)) {
        return MPOS_ERR_ARG;
    }
    if (rd->err != 0) {
        return rd->err;
    }
    size_t off = 0;
    if (rd->have < MPOS_TUNNEL_HEADER_LEN) {
        size_t n = MPOS_TUNNEL_HEADER_LEN - rd->have;
        if (n > len) {
            n = len;
        }
        memcpy(rd->buf + rd->have, in, n);
        rd->have += n;
        off = n;
        if (rd->have < MPOS_TUNNEL_HEADER_LEN) {
            *used = off;
            return MPOS_OK;
        }
        /* Check the header at once: a bad one means the stream is not ours any more. */
        if (!known_type(rd->buf[0]) || mpos_load_be16(rd->buf + 1) > MPOS_TUNNEL_MAX_BODY) {
            rd->err = MPOS_ERR_FORMAT;
            rd->have = 0;
            return rd->err;
        }
    }
    size_t want = whole_size(rd) - rd->have;
    size_t n = len - off;
    if (n > want) {
        n = want;
    }
    if (n > 0) {
        memcpy(rd->buf + rd->have, in + off, n);
    }
    rd->have += n;
    *used = off + n;
    return MPOS_OK;
}

int mpos_tunnel_reader_take(mpos_tunnel_reader *rd, mpos_tunnel_msg *msg, int *got)
{
    if (got != NULL) {
        *got = 0;
    }
    if (rd == NULL || msg == NULL || got == NULL) {
        return MPOS_ERR_ARG;
    }
    if (rd->err != 0) {
        return rd->err;
    }
    size_t whole = whole_size(rd);
    if (whole == 0 || rd->have < whole) {
        return MPOS_OK;
    }
    rd->have = 0; /* the next feed starts a new message; buf stays valid until then */
    int r = mpos_tunnel_decode(rd->buf, whole, msg);
    if (r == MPOS_OK) {
        *got = 1;
    }
    return r;
}

int mpos_tunnel_reader_pending(const mpos_tunnel_reader *rd)
{
    return rd != NULL && rd->err == 0 && rd->have > 0;
}
