/* libmposhost: the terminal link codec (docs/protocol.md 1), independent of terminal/core. */
#include <string.h>

#include "hlink.h"
#include "mpos/err.h"
#include "mpos/util.h"

uint16_t hl_crc16(const uint8_t *p, size_t len)
{
    /* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no final XOR. */
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc = (uint16_t)((unsigned)crc ^ ((unsigned)p[i] << 8u));
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (uint16_t)(((unsigned)crc << 1u) ^ 0x1021u)
                                  : (uint16_t)((unsigned)crc << 1u);
        }
    }
    return crc;
}

uint32_t hl_crc32(const uint8_t *p, size_t len)
{
    /* CRC-32/ISO-HDLC: reflected poly 0xEDB88320, init and final XOR 0xFFFFFFFF. */
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
    }
    return crc ^ 0xFFFFFFFFu;
}

int hl_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out,
             size_t cap, size_t *out_len)
{
    if (out == NULL || out_len == NULL || (payload == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (len > HL_MAX_PAYLOAD || cap < HL_HDR_LEN + len + HL_CRC_LEN) {
        return MPOS_ERR_LENGTH;
    }
    out[0] = HL_MAGIC0;
    out[1] = HL_MAGIC1;
    out[2] = HL_VERSION;
    out[3] = type;
    mpos_store_be16(out + 4, seq);
    mpos_store_be16(out + 6, (uint16_t)len);
    mpos_store_be16(out + 8, hl_crc16(out, 8));
    if (len > 0) {
        memmove(out + HL_HDR_LEN, payload, len);
    }
    mpos_store_be32(out + HL_HDR_LEN + len, hl_crc32(out, HL_HDR_LEN + len));
    *out_len = HL_HDR_LEN + len + HL_CRC_LEN;
    return MPOS_OK;
}

void hl_decoder_init(hl_decoder *d)
{
    d->have = 0;
    d->drop = 0;
}

/* The verdict on a candidate at p with n bytes held: -1 not a frame, 0 maybe (needs more
 * bytes), else the whole frame's length. Each check is made as soon as its bytes are in. */
static long candidate(const uint8_t *p, size_t n)
{
    size_t plen;
    if (p[0] != HL_MAGIC0) {
        return -1;
    }
    if (n < 2) {
        return 0;
    }
    if (p[1] != HL_MAGIC1) {
        return -1;
    }
    if (n < 3) {
        return 0;
    }
    if (p[2] != HL_VERSION) {
        return -1;
    }
    if (n < 8) {
        return 0;
    }
    plen = mpos_load_be16(p + 6);
    if (plen > HL_MAX_PAYLOAD) {
        return -1;
    }
    if (n < HL_HDR_LEN) {
        return 0;
    }
    if (mpos_load_be16(p + 8) != hl_crc16(p, 8)) {
        return -1;
    }
    if (n < HL_HDR_LEN + plen + HL_CRC_LEN) {
        return 0;
    }
    if (mpos_load_be32(p + HL_HDR_LEN + plen) != hl_crc32(p, HL_HDR_LEN + plen)) {
        return -1;
    }
    return (long)(HL_HDR_LEN + plen + HL_CRC_LEN);
}

static void deliver(hl_decoder *d, size_t at, size_t flen, struct hl_frame_view *f)
{
    const uint8_t *p = d->buf + at;
    f->type = p[3];
    f->seq = mpos_load_be16(p + 4);
    f->len = mpos_load_be16(p + 6);
    f->payload = p + HL_HDR_LEN;
    d->drop = at + flen;
}

int hl_decoder_feed(hl_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                    struct hl_frame_view *f)
{
    size_t take, i;
    *consumed = 0;
    memset(f, 0, sizeof(*f));
    if (d->drop > 0) {
        memmove(d->buf, d->buf + d->drop, d->have - d->drop);
        d->have -= d->drop;
        d->drop = 0;
    }
    take = sizeof(d->buf) - d->have;
    if (take > len) {
        take = len;
    }
    if (take > 0) {
        memcpy(d->buf + d->have, in, take);
        d->have += take;
    }
    *consumed = take;
    for (i = 0; i < d->have; i++) {
        long v = candidate(d->buf + i, d->have - i);
        if (v < 0) {
            continue; /* resync: only this byte is lost */
        }
        if (v > 0) {
            deliver(d, i, (size_t)v, f);
            return 1;
        }
        /* An incomplete candidate: keep it from here. When the input is used up, a whole
         * valid frame inside it wins (a peer reset mid-frame must not block the next ones). */
        if (take == len) {
            for (size_t j = i + 1; j < d->have; j++) {
                long w = candidate(d->buf + j, d->have - j);
                if (w > 0) {
                    deliver(d, j, (size_t)w, f);
                    return 1;
                }
            }
        }
        break;
    }
    /* Everything before i is noise. */
    if (i > 0) {
        memmove(d->buf, d->buf + i, d->have - i);
        d->have -= i;
    }
    return 0;
}

static int an_ok(const char *s, size_t min, size_t max, int dash)
{
    size_t n = strlen(s);
    if (n < min || n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (dash && c == '-'))) {
            return 0;
        }
    }
    return 1;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    mpos_store_be32(p, (uint32_t)(v >> 32));
    mpos_store_be32(p + 4, (uint32_t)v);
}

static uint64_t load_be64(const uint8_t *p)
{
    return ((uint64_t)mpos_load_be32(p) << 32) | mpos_load_be32(p + 4);
}

int hl_put_start(uint8_t *out, size_t cap, uint8_t txn_type, uint64_t amount, uint16_t currency,
                 const char *reference)
{
    const char *ref = reference != NULL ? reference : "";
    size_t rl = strlen(ref);
    int needs_ref = txn_type == 2 || txn_type == 3;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    if (txn_type < 1 || txn_type > 4 || amount > 999999999999ull || currency < 1 ||
        currency > 999 || (txn_type == 4) != (amount == 0) ||
        (needs_ref ? !an_ok(ref, 1, 32, 0) : rl != 0)) {
        return MPOS_ERR_FORMAT;
    }
    if (cap < 12 + rl) {
        return MPOS_ERR_LENGTH;
    }
    out[0] = txn_type;
    store_be64(out + 1, amount);
    mpos_store_be16(out + 9, currency);
    out[11] = (uint8_t)rl;
    memcpy(out + 12, ref, rl);
    return (int)(12 + rl);
}

int hl_put_activate(uint8_t *out, size_t cap, const char *code)
{
    size_t n;
    if (out == NULL || code == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!an_ok(code, 4, 32, 1)) {
        return MPOS_ERR_FORMAT;
    }
    n = strlen(code);
    if (cap < 1 + n) {
        return MPOS_ERR_LENGTH;
    }
    out[0] = (uint8_t)n;
    memcpy(out + 1, code, n);
    return (int)(1 + n);
}

static uint32_t u32_of(int32_t v)
{
    return v >= 0 ? (uint32_t)v : (uint32_t)(-(v + 1)) ^ 0xFFFFFFFFu;
}

int hl_put_location(uint8_t *out, size_t cap, int32_t lat, int32_t lon, uint32_t accuracy,
                    uint64_t time)
{
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    if (lat < -900000000 || lat > 900000000 || lon < -1800000000 || lon > 1800000000 ||
        accuracy > 1000000u || time < 946684800ull || time > 4102444799ull) {
        return MPOS_ERR_FORMAT;
    }
    if (cap < 20) {
        return MPOS_ERR_LENGTH;
    }
    mpos_store_be32(out, u32_of(lat));
    mpos_store_be32(out + 4, u32_of(lon));
    mpos_store_be32(out + 8, accuracy);
    store_be64(out + 12, time);
    return 20;
}

/* A length-prefixed string at *off: one of the allowed lengths, characters by class. */
enum cls { C_ANS, C_AN, C_MASKED };

static int get_str(const uint8_t *p, size_t len, size_t *off, char *out, size_t cap, size_t min,
                   size_t max, enum cls cls)
{
    size_t n;
    if (*off >= len) {
        return 0;
    }
    n = p[*off];
    if ((n != 0 || min != 0) && (n < min || n > max)) {
        return 0;
    }
    if (n >= cap || len - *off - 1 < n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[*off + 1 + i];
        int ok;
        switch (cls) {
        case C_AN:
            ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
            break;
        case C_MASKED:
            /* 6 digits, '*' for each hidden digit, 4 digits (G-ACCT-2): never a full PAN. */
            ok = (i < 6 || i >= n - 4) ? (c >= '0' && c <= '9') : c == '*';
            break;
        default:
            ok = c >= 0x20 && c <= 0x7E;
            break;
        }
        if (!ok) {
            return 0;
        }
        out[i] = (char)c;
    }
    out[n] = '\0';
    *off += 1 + n;
    return 1;
}

/* 0 or exactly `len` (an optional field given as a fixed length when present). */
static int get_opt_fixed(const uint8_t *p, size_t len, size_t *off, char *out, size_t cap,
                         size_t fixed, enum cls cls)
{
    if (*off >= len) {
        return 0;
    }
    if (p[*off] != 0 && p[*off] != fixed) {
        return 0;
    }
    return get_str(p, len, off, out, cap, 0, fixed, cls);
}

int hl_decode_event(const struct hl_frame_view *f, struct hl_event *ev)
{
    const uint8_t *p = f->payload;
    size_t n = f->len, off = 0;
    int rc = MPOS_ERR_FORMAT;
    memset(ev, 0, sizeof(*ev));
    ev->type = f->type;
    ev->seq = f->seq;
    switch (f->type) {
    case HL_EVT_INFO:
        if (n < 3) {
            goto exit;
        }
        ev->u.info.ref_seq = mpos_load_be16(p);
        ev->u.info.state = p[2];
        off = 3;
        if (ev->u.info.state > 6 ||
            !get_str(p, n, &off, ev->u.info.serial, sizeof(ev->u.info.serial), 1, 32, C_ANS) ||
            !get_str(p, n, &off, ev->u.info.firmware, sizeof(ev->u.info.firmware), 1, 32, C_ANS) ||
            off != n) {
            goto exit;
        }
        break;
    case HL_EVT_ACK:
        if (n != 3) {
            goto exit;
        }
        ev->u.ack.ref_seq = mpos_load_be16(p);
        ev->u.ack.ref_type = p[2];
        break;
    case HL_EVT_ERROR:
        if (n != 5 || p[3] < 1 || p[3] > 4 || p[4] > 6) {
            goto exit;
        }
        ev->u.ack.ref_seq = mpos_load_be16(p);
        ev->u.ack.ref_type = p[2];
        ev->u.ack.code = p[3];
        ev->u.ack.state = p[4];
        break;
    case HL_EVT_PROMPT_SHOWN:
        if (n != 13 || p[0] < 1 || p[0] > 18) {
            goto exit;
        }
        ev->u.prompt.id = p[0];
        ev->u.prompt.txn_type = p[1];
        ev->u.prompt.amount = load_be64(p + 2);
        ev->u.prompt.currency = mpos_load_be16(p + 10);
        ev->u.prompt.count = p[12];
        break;
    case HL_EVT_RESULT:
        if (n < 16 || p[0] < 1 || p[0] > 7 || p[1] > 4) {
            goto exit;
        }
        ev->u.result.outcome = p[0];
        ev->u.result.txn_type = p[1];
        ev->u.result.amount = load_be64(p + 2);
        ev->u.result.currency = mpos_load_be16(p + 10);
        ev->u.result.sequence = mpos_load_be32(p + 12);
        off = 16;
        if (!get_opt_fixed(p, n, &off, ev->u.result.response_code, 3, 2, C_AN) ||
            !get_opt_fixed(p, n, &off, ev->u.result.auth_code, 7, 6, C_AN) ||
            !get_opt_fixed(p, n, &off, ev->u.result.rrn, 13, 12, C_AN) ||
            !get_str(p, n, &off, ev->u.result.masked_pan, 20, 0, 19, C_MASKED) || off != n) {
            goto exit;
        }
        if (ev->u.result.masked_pan[0] != '\0' && strlen(ev->u.result.masked_pan) < 12) {
            goto exit;
        }
        break;
    case HL_EVT_TUNNEL_DATA:
        if (n < 1) {
            goto exit;
        }
        ev->u.tunnel.data = p;
        ev->u.tunnel.len = n;
        break;
    default:
        rc = MPOS_ERR_UNSUPPORTED;
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        uint8_t t = ev->type;
        memset(ev, 0, sizeof(*ev));
        ev->type = t;
    }
    return rc;
}
