/* mpos-backend: host protocol frames (hostwire.h; docs/system-design.md 1.1, 1.2). */
#include "hostwire.h"

#include <string.h>

#include "mpos/hostmsg.h"

enum kind { K_NONE, K_TEXT_AN, K_AN, K_TEXT, K_BYTES, K_UINT, K_ROLE, K_MAC };

struct spec {
    uint8_t kind;
    uint16_t min, max;
};

/* 1.2, by tag. K_UINT fields have min == max == their width. */
static const struct spec specs[HW_MAX_TAG + 1] = {
    [HW_T_MERCHANT] = {K_TEXT_AN, 1, 15},
    [HW_T_USERNAME] = {K_TEXT, 1, 32},
    [HW_T_PASSWORD] = {K_BYTES, 1, 128},
    [HW_T_DEVICE_ID] = {K_BYTES, 32, 32},
    [HW_T_TOKEN] = {K_BYTES, 32, 32},
    [HW_T_ROLE] = {K_ROLE, 1, 16},
    [HW_T_EXPIRES] = {K_UINT, 8, 8},
    [HW_T_ERROR] = {K_UINT, 2, 2},
    [HW_T_MESSAGE] = {K_TEXT, 0, 200},
    [HW_T_DATA] = {K_BYTES, 1, 16384},
    [HW_T_TXN_TYPE] = {K_UINT, 1, 1},
    [HW_T_AMOUNT] = {K_UINT, 8, 8},
    [HW_T_CURRENCY] = {K_UINT, 2, 2},
    [HW_T_REFERENCE] = {K_AN, 1, 32},
    [HW_T_TEXT] = {K_TEXT, 0, 16000},
    [HW_T_MERCHANT_ID] = {K_TEXT, 15, 15},
    [HW_T_TERMINAL_ID] = {K_TEXT, 8, 8},
    [HW_T_MASKED_PAN] = {K_TEXT, 12, 19},
    [HW_T_RESPONSE_CODE] = {K_TEXT, 2, 2},
    [HW_T_AUTH_CODE] = {K_TEXT, 0, 6},
    [HW_T_RRN] = {K_TEXT, 0, 12},
    [HW_T_SEQUENCE] = {K_UINT, 4, 4},
    [HW_T_LAT] = {K_UINT, 4, 4},
    [HW_T_LON] = {K_UINT, 4, 4},
    [HW_T_ACCURACY] = {K_UINT, 4, 4},
    [HW_T_LOC_TIME] = {K_UINT, 8, 8},
    [HW_T_DEBUGGER] = {K_UINT, 1, 1},
    [HW_T_ROOT] = {K_UINT, 1, 1},
    [HW_T_BINARY_HASH] = {K_BYTES, 32, 32},
    [HW_T_COUNTER] = {K_UINT, 8, 8},
    [HW_T_MAC] = {K_MAC, 32, 32},
};

#define BIT(t) ((uint64_t)1 << (t))
#define ENVELOPE                                                                                   \
    (BIT(HW_T_LAT) | BIT(HW_T_LON) | BIT(HW_T_ACCURACY) | BIT(HW_T_LOC_TIME) |                     \
     BIT(HW_T_DEVICE_ID) | BIT(HW_T_DEBUGGER) | BIT(HW_T_ROOT) | BIT(HW_T_BINARY_HASH) |           \
     BIT(HW_T_COUNTER) | BIT(HW_T_MAC))

/* The tags each message from the host may carry (1.3). */
static uint64_t allowed(uint8_t type)
{
    switch (type) {
    case HW_LOGIN:
        return ENVELOPE | BIT(HW_T_MERCHANT) | BIT(HW_T_USERNAME) | BIT(HW_T_PASSWORD);
    case HW_RESUME:
        return ENVELOPE | BIT(HW_T_TOKEN);
    case HW_TUNNEL:
        return ENVELOPE | BIT(HW_T_DATA);
    case HW_TXN_BEGIN:
        return ENVELOPE | BIT(HW_T_TXN_TYPE) | BIT(HW_T_AMOUNT) | BIT(HW_T_CURRENCY) |
               BIT(HW_T_REFERENCE);
    case HW_SETTLE:
    case HW_LOGOUT:
        return ENVELOPE;
    default:
        return 0;
    }
}

static int text_ok(const struct spec *s, const uint8_t *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = v[i];
        if (s->kind == K_TEXT_AN) {
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
                return 0; /* merchant: [A-Z0-9] */
            }
        } else if (s->kind == K_AN) {
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9'))) {
                return 0; /* reference: an */
            }
        } else if (s->kind == K_TEXT || s->kind == K_ROLE) {
            /* Printable ASCII; the text field also takes line feeds (key=value lines). */
            if ((ch < 0x20 || ch > 0x7E) && ch != '\n') {
                return 0;
            }
        }
    }
    if (s->kind == K_ROLE) {
        return (len == 7 && memcmp(v, "cashier", 7) == 0) ||
               (len == 10 && memcmp(v, "supervisor", 10) == 0);
    }
    return 1;
}

int hw_parse(const uint8_t *msg, size_t len, struct hw_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (msg == NULL || len < 1 || len > HW_MAX_LEN) {
        return MPOS_ERR_FORMAT;
    }
    /* The shared codec's strictness first (lib/hostmsg), then this side's: the tag set of
     * each message type. */
    mpos_hostmsg shared;
    if (mpos_hostmsg_parse(&shared, msg, len) != 0) {
        return MPOS_ERR_FORMAT;
    }
    m->type = msg[0];
    uint64_t ok = allowed(m->type);
    if (ok == 0) {
        return MPOS_ERR_FORMAT;
    }
    size_t off = 1;
    while (off < len) {
        if (len - off < HW_FIELD_HDR) {
            return MPOS_ERR_FORMAT;
        }
        uint8_t tag = msg[off];
        uint16_t flen = (uint16_t)(msg[off + 1] << 8 | msg[off + 2]);
        if (tag > HW_MAX_TAG || (ok & BIT(tag)) == 0 || m->f[tag].present ||
            len - off - HW_FIELD_HDR < flen) {
            return MPOS_ERR_FORMAT;
        }
        const struct spec *s = &specs[tag];
        const uint8_t *v = msg + off + HW_FIELD_HDR;
        if (s->kind == K_NONE || flen < s->min || flen > s->max || !text_ok(s, v, flen)) {
            return MPOS_ERR_FORMAT;
        }
        if (tag == HW_T_MAC) {
            if (off + HW_FIELD_HDR + flen != len) {
                return MPOS_ERR_FORMAT; /* mac must be last */
            }
            m->mac_off = off;
        }
        m->f[tag].v = v;
        m->f[tag].len = flen;
        m->f[tag].present = 1;
        off += HW_FIELD_HDR + flen;
    }
    return 0;
}

uint64_t hw_u64(const struct hw_field *f)
{
    uint64_t v = 0;
    for (uint16_t i = 0; i < f->len && i < 8; i++) {
        v = v << 8 | f->v[i];
    }
    return v;
}

void hw_text(const struct hw_field *f, char *out, size_t cap)
{
    size_t n = f->present ? f->len : 0;
    if (cap == 0) {
        return;
    }
    if (n >= cap) {
        n = cap - 1;
    }
    if (n > 0) {
        memcpy(out, f->v, n);
    }
    out[n] = '\0';
}

void hw_out_init(struct hw_out *o, uint8_t *buf, size_t cap, uint8_t type)
{
    o->buf = buf;
    o->cap = cap;
    o->err = cap < 5;
    o->len = o->err ? 0 : 5;
    if (!o->err) {
        buf[4] = type;
    }
}

void hw_put(struct hw_out *o, uint8_t tag, const void *v, size_t len)
{
    if (o->err || len > 0xFFFF || o->cap - o->len < HW_FIELD_HDR + len) {
        o->err = 1;
        return;
    }
    o->buf[o->len] = tag;
    o->buf[o->len + 1] = (uint8_t)(len >> 8);
    o->buf[o->len + 2] = (uint8_t)len;
    if (len > 0) {
        memcpy(o->buf + o->len + HW_FIELD_HDR, v, len);
    }
    o->len += HW_FIELD_HDR + len;
}

void hw_put_str(struct hw_out *o, uint8_t tag, const char *s)
{
    hw_put(o, tag, s, strlen(s));
}

static void put_be(struct hw_out *o, uint8_t tag, uint64_t v, size_t width)
{
    uint8_t b[8];
    for (size_t i = 0; i < width; i++) {
        b[width - 1 - i] = (uint8_t)(v >> (8 * i));
    }
    hw_put(o, tag, b, width);
}

void hw_put_u8(struct hw_out *o, uint8_t tag, uint8_t v)
{
    put_be(o, tag, v, 1);
}

void hw_put_u16(struct hw_out *o, uint8_t tag, uint16_t v)
{
    put_be(o, tag, v, 2);
}

void hw_put_u32(struct hw_out *o, uint8_t tag, uint32_t v)
{
    put_be(o, tag, v, 4);
}

void hw_put_u64(struct hw_out *o, uint8_t tag, uint64_t v)
{
    put_be(o, tag, v, 8);
}

int hw_out_finish(struct hw_out *o, size_t *len)
{
    *len = 0;
    if (o->err || o->len - 4 > HW_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    size_t n = o->len - 4;
    o->buf[0] = (uint8_t)(n >> 24);
    o->buf[1] = (uint8_t)(n >> 16);
    o->buf[2] = (uint8_t)(n >> 8);
    o->buf[3] = (uint8_t)n;
    *len = o->len;
    return 0;
}
