/* openmpos terminal core: the host link: frames, messages, the command validator.
 * Wire format: docs/protocol.md, "Host link". */
#include <string.h>

#include "link/link.h"
#include "mpos/util.h"
#include "msr/msr.h"

/* ---- CRCs -------------------------------------------------------------------------------- */

uint16_t mpos_link_crc16(const uint8_t *p, size_t len)
{
    /* CRC-16/CCITT-FALSE: polynomial x^16 + x^12 + x^5 + 1, MSB first, init FFFF. */
    unsigned crc = 0xFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? ((crc << 1) ^ 0x1021u) : (crc << 1);
        }
        crc &= 0xFFFFu;
    }
    return (uint16_t)crc;
}

uint32_t mpos_link_crc32(const uint8_t *p, size_t len)
{
    /* CRC-32/ISO-HDLC (ISO 3309): reflected polynomial EDB88320, init and final XOR FFFFFFFF.
     * A nibble table keeps it small for a device and fast enough for 4 KB frames. */
    static const uint32_t nibble[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
                                        0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
                                        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ nibble[crc & 0x0Fu];
    }
    return crc ^ 0xFFFFFFFFu;
}

/* ---- frames ------------------------------------------------------------------------------ */

/* Header layout (docs/protocol.md): offsets of its fields. */
enum { H_MAGIC0 = 0, H_MAGIC1 = 1, H_VERSION = 2, H_TYPE = 3, H_SEQ = 4, H_LEN = 6, H_CRC16 = 8 };

int mpos_link_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                           uint8_t *out, size_t cap, size_t *out_len)
{
    if (out == NULL || out_len == NULL || (payload == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (len > MPOS_LINK_MAX_PAYLOAD || cap < MPOS_LINK_HEADER_LEN + len + MPOS_LINK_TRAILER_LEN) {
        return MPOS_ERR_LENGTH;
    }
    out[H_MAGIC0] = MPOS_LINK_MAGIC0;
    out[H_MAGIC1] = MPOS_LINK_MAGIC1;
    out[H_VERSION] = MPOS_LINK_VERSION;
    out[H_TYPE] = type;
    mpos_store_be16(out + H_SEQ, seq);
    mpos_store_be16(out + H_LEN, (uint16_t)len);
    mpos_store_be16(out + H_CRC16, mpos_link_crc16(out, H_CRC16));
    if (len > 0) {
        memmove(out + MPOS_LINK_HEADER_LEN, payload, len);
    }
    size_t body = MPOS_LINK_HEADER_LEN + len;
    mpos_store_be32(out + body, mpos_link_crc32(out, body));
    *out_len = body + MPOS_LINK_TRAILER_LEN;
    return MPOS_OK;
}

void mpos_link_decoder_init(mpos_link_decoder *d)
{
    if (d != NULL) {
        memset(d, 0, sizeof(*d));
    }
}

/* What the bytes held at offset off can be. */
enum { FRAME_BAD, FRAME_PARTIAL, FRAME_WHOLE };

/* Checks the bytes at buf + off as a frame, each header field as soon as its bytes are in:
 * FRAME_BAD when they cannot start a valid frame, FRAME_PARTIAL when they can but more bytes
 * are needed (*flen = the whole frame's length once the header is in, else 0), FRAME_WHOLE
 * when a whole valid frame of *flen bytes is held. */
static int frame_at(const mpos_link_decoder *d, size_t off, size_t *flen)
{
    const uint8_t *b = d->buf + off;
    size_t n = d->have - off;
    *flen = 0;
    if (n >= 1 && b[H_MAGIC0] != MPOS_LINK_MAGIC0) {
        return FRAME_BAD;
    }
    if (n >= 2 && b[H_MAGIC1] != MPOS_LINK_MAGIC1) {
        return FRAME_BAD;
    }
    if (n >= 3 && b[H_VERSION] != MPOS_LINK_VERSION) {
        return FRAME_BAD;
    }
    if (n >= H_LEN + 2 && mpos_load_be16(b + H_LEN) > MPOS_LINK_MAX_PAYLOAD) {
        return FRAME_BAD;
    }
    if (n < MPOS_LINK_HEADER_LEN) {
        return FRAME_PARTIAL;
    }
    if (mpos_load_be16(b + H_CRC16) != mpos_link_crc16(b, H_CRC16)) {
        return FRAME_BAD;
    }
    size_t body = MPOS_LINK_HEADER_LEN + (size_t)mpos_load_be16(b + H_LEN);
    *flen = body + MPOS_LINK_TRAILER_LEN;
    if (n < *flen) {
        return FRAME_PARTIAL;
    }
    return mpos_load_be32(b + body) == mpos_link_crc32(b, body) ? FRAME_WHOLE : FRAME_BAD;
}

/* Drops the first skip bytes held. */
static void drop(mpos_link_decoder *d, size_t skip)
{
    memmove(d->buf, d->buf + skip, d->have - skip);
    d->have -= skip;
    d->scan = 0;
}

/* The candidate at 0 is bad: drops its first byte and everything up to the next MAGIC0 among
 * the bytes held (the resync rule of link.h). */
static void resync(mpos_link_decoder *d)
{
    size_t i = 1;
    if (d->have >= 2 && d->buf[H_MAGIC1] == MPOS_LINK_MAGIC1) {
        d->bad_frames++; /* it had the magic: a damaged or foreign frame, not mere noise */
    }
    while (i < d->have && d->buf[i] != MPOS_LINK_MAGIC0) {
        i++;
    }
    d->dropped_bytes += (uint32_t)i;
    drop(d, i);
}

/* The candidate at 0 is incomplete and the input is used up: a whole valid frame that
 * starts inside it means the candidate was truncated (the look-ahead rule of link.h). Scans
 * each position once (d->scan), stopping at an inner candidate that is itself incomplete.
 * Returns the inner frame's length after dropping the bytes before it, or 0. */
static size_t look_ahead(mpos_link_decoder *d)
{
    size_t p = d->scan > 1 ? d->scan : 1, flen = 0;
    for (; p < d->have; p++) {
        if (d->buf[p] != MPOS_LINK_MAGIC0) {
            continue;
        }
        int st = frame_at(d, p, &flen);
        if (st == FRAME_PARTIAL) {
            break;
        }
        if (st == FRAME_WHOLE) {
            d->bad_frames++;
            d->dropped_bytes += (uint32_t)p;
            drop(d, p);
            return flen;
        }
    }
    d->scan = p;
    return 0;
}

int mpos_link_decoder_feed(mpos_link_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                           mpos_link_frame *frame)
{
    size_t pos = 0, flen = 0;
    if (d == NULL || consumed == NULL || frame == NULL || (in == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    *consumed = 0;
    memset(frame, 0, sizeof(*frame));
    if (d->delivered > 0) {
        /* The frame handed out by the previous call: its payload pointer expires now. */
        drop(d, d->delivered);
        d->delivered = 0;
    }
    for (;;) {
        int st = d->have > 0 ? frame_at(d, 0, &flen) : FRAME_PARTIAL;
        if (st == FRAME_BAD) {
            resync(d);
            continue;
        }
        if (st == FRAME_PARTIAL) {
            if (pos == len) {
                flen = d->have > MPOS_LINK_HEADER_LEN ? look_ahead(d) : 0;
                if (flen == 0) {
                    *consumed = pos;
                    return 0;
                }
            } else {
                if (d->have == 0) {
                    /* Before a candidate starts, skip noise without copying it. */
                    flen = 0;
                    while (pos < len && in[pos] != MPOS_LINK_MAGIC0) {
                        pos++;
                        d->dropped_bytes++;
                    }
                    if (pos == len) {
                        continue;
                    }
                }
                /* Take what the candidate still needs (its header first), no more. */
                size_t need = flen > 0 ? flen : MPOS_LINK_HEADER_LEN;
                size_t take = need - d->have;
                if (take > len - pos) {
                    take = len - pos;
                }
                memcpy(d->buf + d->have, in + pos, take);
                d->have += take;
                pos += take;
                continue;
            }
        }
        /* A whole valid frame at buf[0 .. flen). */
        frame->type = d->buf[H_TYPE];
        frame->seq = mpos_load_be16(d->buf + H_SEQ);
        frame->len = flen - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN;
        frame->payload = d->buf + MPOS_LINK_HEADER_LEN;
        d->delivered = flen;
        *consumed = pos;
        return 1;
    }
}

/* ---- field readers and writers ----------------------------------------------------------- */

struct writer {
    uint8_t *p;
    size_t cap;
    size_t len;
    int err;
};

static void put_bytes(struct writer *w, const void *v, size_t n)
{
    if (w->err != MPOS_OK) {
        return;
    }
    if (n > w->cap - w->len) {
        w->err = MPOS_ERR_LENGTH;
        return;
    }
    if (n > 0) {
        memcpy(w->p + w->len, v, n);
    }
    w->len += n;
}

static void put_u8(struct writer *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

static void put_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2];
    mpos_store_be16(b, v);
    put_bytes(w, b, 2);
}

static void put_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    mpos_store_be32(b, v);
    put_bytes(w, b, 4);
}

static void put_u64(struct writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)(v >> 32));
    put_u32(w, (uint32_t)v);
}

/* A string field: one length byte, then the characters. */
static void put_str(struct writer *w, const char *s)
{
    size_t n = strlen(s);
    put_u8(w, (uint8_t)n);
    put_bytes(w, s, n);
}

struct reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    int err;
};

static const uint8_t *get_bytes(struct reader *r, size_t n)
{
    if (r->err != MPOS_OK || n > r->len - r->pos) {
        r->err = MPOS_ERR_FORMAT;
        return NULL;
    }
    const uint8_t *v = r->p + r->pos;
    r->pos += n;
    return v;
}

static uint8_t get_u8(struct reader *r)
{
    const uint8_t *v = get_bytes(r, 1);
    return v != NULL ? v[0] : 0;
}

static uint16_t get_u16(struct reader *r)
{
    const uint8_t *v = get_bytes(r, 2);
    return v != NULL ? mpos_load_be16(v) : 0;
}

static uint32_t get_u32(struct reader *r)
{
    const uint8_t *v = get_bytes(r, 4);
    return v != NULL ? mpos_load_be32(v) : 0;
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t hi = get_u32(r);
    return (hi << 32) | get_u32(r);
}

/* A string field into out (cap bytes with the NUL): at most cap - 1 characters, none of
 * them NUL (a NUL would hide the characters after it from the checks and give the message a
 * second encoding). The characters are checked by the message's validator. */
static void get_str(struct reader *r, char *out, size_t cap)
{
    size_t n = get_u8(r);
    const uint8_t *v;
    if (r->err == MPOS_OK && n >= cap) {
        r->err = MPOS_ERR_FORMAT;
    }
    v = get_bytes(r, n);
    if (v != NULL && memchr(v, 0, n) != NULL) {
        r->err = MPOS_ERR_FORMAT;
        v = NULL;
    }
    if (v != NULL) {
        memcpy(out, v, n);
        out[n] = '\0';
    }
}

/* ---- field rules ------------------------------------------------------------------------- */

static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The NUL-terminated string at s (an array of cap bytes) has min..max characters, each
 * accepted by ok. */
static int str_valid(const char *s, size_t cap, size_t min, size_t max, int (*ok)(char))
{
    const char *nul = memchr(s, '\0', cap);
    if (nul == NULL) {
        return 0;
    }
    size_t n = (size_t)(nul - s);
    if (n < min || n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int code_char(char c)
{
    return is_alnum(c) || c == '-';
}

static int printable(char c)
{
    return c >= 0x20 && c <= 0x7E;
}

#define STR_VALID(field, min, max, ok) str_valid((field), sizeof(field), (min), (max), (ok))

/* "" or exactly n alphanumeric characters. */
#define OPT_ALNUM(field, n) (STR_VALID(field, 0, 0, is_alnum) || STR_VALID(field, n, n, is_alnum))

static int txn_type_valid(unsigned t)
{
    return t >= MPOS_LINK_TXN_SALE && t <= MPOS_LINK_TXN_BALANCE;
}

static int amount_valid(unsigned txn_type, uint64_t amount, uint16_t currency)
{
    if (currency < 1 || currency > 999 || amount > MPOS_LINK_MAX_AMOUNT) {
        return 0;
    }
    /* A balance enquiry moves no money; everything else moves some. */
    return txn_type == MPOS_LINK_TXN_BALANCE ? amount == 0 : amount > 0;
}

static int start_valid(const mpos_link_msg *m)
{
    unsigned t = m->u.start.txn_type;
    int needs_ref = t == MPOS_LINK_TXN_VOID || t == MPOS_LINK_TXN_REFUND;
    return txn_type_valid(t) && amount_valid(t, m->u.start.amount, m->u.start.currency) &&
           STR_VALID(m->u.start.original_ref, needs_ref ? 1u : 0u,
                     needs_ref ? MPOS_LINK_REF_MAX_LEN : 0u, is_alnum);
}

int mpos_link_location_valid(const mpos_link_location *l)
{
    return l->lat_e7 >= -MPOS_LINK_LAT_MAX_E7 && l->lat_e7 <= MPOS_LINK_LAT_MAX_E7 &&
           l->lon_e7 >= -MPOS_LINK_LON_MAX_E7 && l->lon_e7 <= MPOS_LINK_LON_MAX_E7 &&
           l->accuracy_m <= MPOS_LINK_ACCURACY_MAX_M && l->time >= MPOS_LINK_TIME_MIN &&
           l->time <= MPOS_LINK_TIME_MAX;
}

/* The parameter bits of each prompt id (index = id). */
static const uint8_t prompt_table[MPOS_LINK_PROMPT_MAX + 1] = {
    [MPOS_PROMPT_WELCOME] = 0,
    [MPOS_PROMPT_NOT_ACTIVATED] = 0,
    [MPOS_PROMPT_ACTIVATING] = 0,
    [MPOS_PROMPT_ACTIVATED] = 0,
    [MPOS_PROMPT_CONFIRM_AMOUNT] = MPOS_LINK_PARAM_TYPE | MPOS_LINK_PARAM_AMOUNT,
    [MPOS_PROMPT_PRESENT_CARD] = MPOS_LINK_PARAM_TYPE | MPOS_LINK_PARAM_AMOUNT,
    [MPOS_PROMPT_USE_CHIP] = 0,
    [MPOS_PROMPT_CHIP_ERROR_SWIPE] = 0,
    [MPOS_PROMPT_ENTER_PIN] = MPOS_LINK_PARAM_AMOUNT,
    [MPOS_PROMPT_WRONG_PIN] = MPOS_LINK_PARAM_COUNT,
    [MPOS_PROMPT_PROCESSING] = 0,
    [MPOS_PROMPT_APPROVED] = MPOS_LINK_PARAM_TYPE | MPOS_LINK_PARAM_AMOUNT,
    [MPOS_PROMPT_DECLINED] = 0,
    [MPOS_PROMPT_CANCELLED] = 0,
    [MPOS_PROMPT_REMOVE_CARD] = 0,
    [MPOS_PROMPT_CARD_ERROR] = 0,
    [MPOS_PROMPT_NO_RESPONSE] = 0,
    [MPOS_PROMPT_CARD_EXPIRED] = 0,
};

int mpos_link_prompt_params(unsigned prompt)
{
    if (prompt < 1 || prompt > MPOS_LINK_PROMPT_MAX) {
        return -1;
    }
    return prompt_table[prompt];
}

const char *mpos_link_prompt_name(unsigned prompt)
{
    static const char *const names[] = {[MPOS_PROMPT_WELCOME] = "WELCOME",
                                        [MPOS_PROMPT_NOT_ACTIVATED] = "NOT_ACTIVATED",
                                        [MPOS_PROMPT_ACTIVATING] = "ACTIVATING",
                                        [MPOS_PROMPT_ACTIVATED] = "ACTIVATED",
                                        [MPOS_PROMPT_CONFIRM_AMOUNT] = "CONFIRM_AMOUNT",
                                        [MPOS_PROMPT_PRESENT_CARD] = "PRESENT_CARD",
                                        [MPOS_PROMPT_USE_CHIP] = "USE_CHIP",
                                        [MPOS_PROMPT_CHIP_ERROR_SWIPE] = "CHIP_ERROR_SWIPE",
                                        [MPOS_PROMPT_ENTER_PIN] = "ENTER_PIN",
                                        [MPOS_PROMPT_WRONG_PIN] = "WRONG_PIN",
                                        [MPOS_PROMPT_PROCESSING] = "PROCESSING",
                                        [MPOS_PROMPT_APPROVED] = "APPROVED",
                                        [MPOS_PROMPT_DECLINED] = "DECLINED",
                                        [MPOS_PROMPT_CANCELLED] = "CANCELLED",
                                        [MPOS_PROMPT_REMOVE_CARD] = "REMOVE_CARD",
                                        [MPOS_PROMPT_CARD_ERROR] = "CARD_ERROR",
                                        [MPOS_PROMPT_NO_RESPONSE] = "NO_RESPONSE",
                                        [MPOS_PROMPT_CARD_EXPIRED] = "CARD_EXPIRED"};
    _Static_assert(sizeof(names) / sizeof(names[0]) == MPOS_LINK_PROMPT_MAX + 1,
                   "a name for every prompt");
    return prompt >= 1 && prompt <= MPOS_LINK_PROMPT_MAX ? names[prompt] : "?";
}

const char *mpos_link_outcome_name(unsigned outcome)
{
    static const char *const names[] = {[MPOS_LINK_OUTCOME_APPROVED] = "APPROVED",
                                        [MPOS_LINK_OUTCOME_DECLINED] = "DECLINED",
                                        [MPOS_LINK_OUTCOME_CANCELLED] = "CANCELLED",
                                        [MPOS_LINK_OUTCOME_NO_RESPONSE] = "NO_RESPONSE",
                                        [MPOS_LINK_OUTCOME_CARD_ERROR] = "CARD_ERROR",
                                        [MPOS_LINK_OUTCOME_ACTIVATED] = "ACTIVATED",
                                        [MPOS_LINK_OUTCOME_ACTIVATION_FAILED] =
                                            "ACTIVATION_FAILED"};
    return outcome >= 1 && outcome < sizeof(names) / sizeof(names[0]) ? names[outcome] : "?";
}

static int prompt_valid(const mpos_link_msg *m)
{
    int bits = mpos_link_prompt_params(m->u.prompt.prompt);
    if (bits < 0) {
        return 0;
    }
    unsigned params = (unsigned)bits;
    if ((params & MPOS_LINK_PARAM_TYPE) ? !txn_type_valid(m->u.prompt.txn_type)
                                        : m->u.prompt.txn_type != 0) {
        return 0;
    }
    if (params & MPOS_LINK_PARAM_AMOUNT) {
        /* A prompt may show 0 (balance) but never an amount out of range. */
        if (m->u.prompt.currency < 1 || m->u.prompt.currency > 999 ||
            m->u.prompt.amount > MPOS_LINK_MAX_AMOUNT) {
            return 0;
        }
    } else if (m->u.prompt.amount != 0 || m->u.prompt.currency != 0) {
        return 0;
    }
    return (params & MPOS_LINK_PARAM_COUNT) ? 1 : m->u.prompt.count == 0;
}

static int result_valid(const mpos_link_msg *m)
{
    unsigned o = m->u.result.outcome;
    const char *pan = m->u.result.masked_pan;
    const char *nul = memchr(pan, '\0', sizeof(m->u.result.masked_pan));
    if (o < MPOS_LINK_OUTCOME_APPROVED || o > MPOS_LINK_OUTCOME_ACTIVATION_FAILED || nul == NULL) {
        return 0;
    }
    size_t pan_len = (size_t)(nul - pan);
    /* G-ACCT-2: nothing that could be a full PAN ever leaves on the link. */
    if (pan_len != 0 && !mpos_msr_pan_is_masked(pan, pan_len)) {
        return 0;
    }
    if (o >= MPOS_LINK_OUTCOME_ACTIVATED) {
        if (m->u.result.txn_type != 0 || m->u.result.amount != 0 || m->u.result.currency != 0 ||
            m->u.result.txn_seq != 0 || pan_len != 0) {
            return 0;
        }
    } else if (!txn_type_valid(m->u.result.txn_type) ||
               !amount_valid(m->u.result.txn_type, m->u.result.amount, m->u.result.currency)) {
        return 0;
    }
    return OPT_ALNUM(m->u.result.response_code, 2) && OPT_ALNUM(m->u.result.auth_code, 6) &&
           OPT_ALNUM(m->u.result.rrn, 12);
}

static int state_valid(unsigned s)
{
    return s < MPOS_LINK_STATE_COUNT;
}

int mpos_link_is_command(unsigned type)
{
    return type >= MPOS_LINK_CMD_GET_INFO && type <= MPOS_LINK_CMD_SET_HOST_LOCATION;
}

int mpos_link_is_event(unsigned type)
{
    return type >= MPOS_LINK_EVT_INFO && type <= MPOS_LINK_EVT_TUNNEL_DATA;
}

/* Every field of msg is in range (the rules of docs/protocol.md). */
static int msg_valid(const mpos_link_msg *m)
{
    switch (m->type) {
    case MPOS_LINK_CMD_GET_INFO:
    case MPOS_LINK_CMD_CANCEL:
        return 1;
    case MPOS_LINK_CMD_START_TXN:
        return start_valid(m);
    case MPOS_LINK_CMD_ACTIVATE:
        return STR_VALID(m->u.activate.code, MPOS_LINK_CODE_MIN_LEN, MPOS_LINK_CODE_MAX_LEN,
                         code_char);
    case MPOS_LINK_CMD_TUNNEL_DATA:
    case MPOS_LINK_EVT_TUNNEL_DATA:
        return m->u.tunnel.data != NULL && m->u.tunnel.len >= 1 &&
               m->u.tunnel.len <= MPOS_LINK_MAX_PAYLOAD;
    case MPOS_LINK_CMD_SET_HOST_LOCATION:
        return mpos_link_location_valid(&m->u.location);
    case MPOS_LINK_EVT_INFO:
        return state_valid(m->u.info.state) &&
               STR_VALID(m->u.info.serial, 1, MPOS_LINK_TEXT_MAX_LEN, printable) &&
               STR_VALID(m->u.info.firmware, 1, MPOS_LINK_TEXT_MAX_LEN, printable);
    case MPOS_LINK_EVT_ACK:
        return mpos_link_is_command(m->u.ack.ref_type);
    case MPOS_LINK_EVT_ERROR:
        return m->u.error.code >= MPOS_LINK_E_UNKNOWN_COMMAND &&
               m->u.error.code <= MPOS_LINK_E_INTERNAL && state_valid(m->u.error.state);
    case MPOS_LINK_EVT_PROMPT_SHOWN:
        return prompt_valid(m);
    case MPOS_LINK_EVT_RESULT:
        return result_valid(m);
    default:
        return 0;
    }
}

/* ---- messages ---------------------------------------------------------------------------- */

static void put_payload(struct writer *w, const mpos_link_msg *m)
{
    switch (m->type) {
    case MPOS_LINK_CMD_START_TXN:
        put_u8(w, m->u.start.txn_type);
        put_u64(w, m->u.start.amount);
        put_u16(w, m->u.start.currency);
        put_str(w, m->u.start.original_ref);
        break;
    case MPOS_LINK_CMD_ACTIVATE:
        put_str(w, m->u.activate.code);
        break;
    case MPOS_LINK_CMD_TUNNEL_DATA:
    case MPOS_LINK_EVT_TUNNEL_DATA:
        put_bytes(w, m->u.tunnel.data, m->u.tunnel.len);
        break;
    case MPOS_LINK_CMD_SET_HOST_LOCATION:
        put_u32(w, (uint32_t)m->u.location.lat_e7);
        put_u32(w, (uint32_t)m->u.location.lon_e7);
        put_u32(w, m->u.location.accuracy_m);
        put_u64(w, m->u.location.time);
        break;
    case MPOS_LINK_EVT_INFO:
        put_u16(w, m->u.info.ref_seq);
        put_u8(w, m->u.info.state);
        put_str(w, m->u.info.serial);
        put_str(w, m->u.info.firmware);
        break;
    case MPOS_LINK_EVT_ACK:
        put_u16(w, m->u.ack.ref_seq);
        put_u8(w, m->u.ack.ref_type);
        break;
    case MPOS_LINK_EVT_ERROR:
        put_u16(w, m->u.error.ref_seq);
        put_u8(w, m->u.error.ref_type);
        put_u8(w, m->u.error.code);
        put_u8(w, m->u.error.state);
        break;
    case MPOS_LINK_EVT_PROMPT_SHOWN:
        put_u8(w, m->u.prompt.prompt);
        put_u8(w, m->u.prompt.txn_type);
        put_u64(w, m->u.prompt.amount);
        put_u16(w, m->u.prompt.currency);
        put_u8(w, m->u.prompt.count);
        break;
    case MPOS_LINK_EVT_RESULT:
        put_u8(w, m->u.result.outcome);
        put_u8(w, m->u.result.txn_type);
        put_u64(w, m->u.result.amount);
        put_u16(w, m->u.result.currency);
        put_u32(w, m->u.result.txn_seq);
        put_str(w, m->u.result.response_code);
        put_str(w, m->u.result.auth_code);
        put_str(w, m->u.result.rrn);
        put_str(w, m->u.result.masked_pan);
        break;
    default: /* GET_INFO, CANCEL: no payload */
        break;
    }
}

int mpos_link_encode(const mpos_link_msg *msg, uint8_t *out, size_t cap, size_t *out_len)
{
    if (msg == NULL || out == NULL || out_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (!mpos_link_is_command(msg->type) && !mpos_link_is_event(msg->type)) {
        return MPOS_ERR_UNSUPPORTED;
    }
    if (!msg_valid(msg)) {
        return MPOS_ERR_FORMAT;
    }
    if (cap < MPOS_LINK_HEADER_LEN + MPOS_LINK_TRAILER_LEN) {
        return MPOS_ERR_LENGTH;
    }
    /* The payload is written in place, then framed around (no second buffer on the stack). */
    size_t room = cap - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN;
    struct writer w = {out + MPOS_LINK_HEADER_LEN,
                       room < MPOS_LINK_MAX_PAYLOAD ? room : MPOS_LINK_MAX_PAYLOAD, 0, MPOS_OK};
    put_payload(&w, msg);
    if (w.err != MPOS_OK) {
        return w.err;
    }
    return mpos_link_frame_encode(msg->type, msg->seq, out + MPOS_LINK_HEADER_LEN, w.len, out, cap,
                                  out_len);
}

static void get_payload(struct reader *r, mpos_link_msg *m)
{
    switch (m->type) {
    case MPOS_LINK_CMD_START_TXN:
        m->u.start.txn_type = get_u8(r);
        m->u.start.amount = get_u64(r);
        m->u.start.currency = get_u16(r);
        get_str(r, m->u.start.original_ref, sizeof(m->u.start.original_ref));
        break;
    case MPOS_LINK_CMD_ACTIVATE:
        get_str(r, m->u.activate.code, sizeof(m->u.activate.code));
        break;
    case MPOS_LINK_CMD_TUNNEL_DATA:
    case MPOS_LINK_EVT_TUNNEL_DATA:
        m->u.tunnel.len = r->len;
        m->u.tunnel.data = get_bytes(r, r->len);
        break;
    case MPOS_LINK_CMD_SET_HOST_LOCATION:
        m->u.location.lat_e7 = (int32_t)get_u32(r);
        m->u.location.lon_e7 = (int32_t)get_u32(r);
        m->u.location.accuracy_m = get_u32(r);
        m->u.location.time = get_u64(r);
        break;
    case MPOS_LINK_EVT_INFO:
        m->u.info.ref_seq = get_u16(r);
        m->u.info.state = get_u8(r);
        get_str(r, m->u.info.serial, sizeof(m->u.info.serial));
        get_str(r, m->u.info.firmware, sizeof(m->u.info.firmware));
        break;
    case MPOS_LINK_EVT_ACK:
        m->u.ack.ref_seq = get_u16(r);
        m->u.ack.ref_type = get_u8(r);
        break;
    case MPOS_LINK_EVT_ERROR:
        m->u.error.ref_seq = get_u16(r);
        m->u.error.ref_type = get_u8(r);
        m->u.error.code = get_u8(r);
        m->u.error.state = get_u8(r);
        break;
    case MPOS_LINK_EVT_PROMPT_SHOWN:
        m->u.prompt.prompt = get_u8(r);
        m->u.prompt.txn_type = get_u8(r);
        m->u.prompt.amount = get_u64(r);
        m->u.prompt.currency = get_u16(r);
        m->u.prompt.count = get_u8(r);
        break;
    case MPOS_LINK_EVT_RESULT:
        m->u.result.outcome = get_u8(r);
        m->u.result.txn_type = get_u8(r);
        m->u.result.amount = get_u64(r);
        m->u.result.currency = get_u16(r);
        m->u.result.txn_seq = get_u32(r);
        get_str(r, m->u.result.response_code, sizeof(m->u.result.response_code));
        get_str(r, m->u.result.auth_code, sizeof(m->u.result.auth_code));
        get_str(r, m->u.result.rrn, sizeof(m->u.result.rrn));
        get_str(r, m->u.result.masked_pan, sizeof(m->u.result.masked_pan));
        break;
    default: /* GET_INFO, CANCEL: no payload */
        break;
    }
}

int mpos_link_decode(const mpos_link_frame *frame, mpos_link_msg *msg)
{
    if (msg == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(msg, 0, sizeof(*msg));
    if (frame == NULL || (frame->payload == NULL && frame->len > 0) ||
        frame->len > MPOS_LINK_MAX_PAYLOAD) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_link_is_command(frame->type) && !mpos_link_is_event(frame->type)) {
        return MPOS_ERR_UNSUPPORTED;
    }
    struct reader r = {frame->payload, frame->len, 0, MPOS_OK};
    msg->type = frame->type;
    msg->seq = frame->seq;
    get_payload(&r, msg);
    /* The whole payload and nothing more; then the same rules as the encoder's. */
    if (r.err != MPOS_OK || r.pos != r.len || !msg_valid(msg)) {
        memset(msg, 0, sizeof(*msg));
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

/* ---- the command validator --------------------------------------------------------------- */

#define C(x)            (1u << ((x)-1))
#define ALL_STATES_TAKE (C(MPOS_LINK_CMD_GET_INFO) | C(MPOS_LINK_CMD_TUNNEL_DATA))

/* The state x command table of docs/protocol.md: bit (command - 1) set = allowed.
 * GET_INFO and TUNNEL_DATA (the terminal's own TLS session: handshake, alerts, records, at
 * any time) in every state; ACTIVATE and the host location only before a transaction starts;
 * START_TXN only when idle; CANCEL only before the request goes online. */
static const uint8_t allowed[MPOS_LINK_STATE_COUNT] = {
    [MPOS_LINK_STATE_NOT_ACTIVATED] =
        ALL_STATES_TAKE | C(MPOS_LINK_CMD_ACTIVATE) | C(MPOS_LINK_CMD_SET_HOST_LOCATION),
    [MPOS_LINK_STATE_IDLE] =
        ALL_STATES_TAKE | C(MPOS_LINK_CMD_START_TXN) | C(MPOS_LINK_CMD_SET_HOST_LOCATION),
    [MPOS_LINK_STATE_AWAIT_CONFIRM] = ALL_STATES_TAKE | C(MPOS_LINK_CMD_CANCEL),
    [MPOS_LINK_STATE_AWAIT_CARD] = ALL_STATES_TAKE | C(MPOS_LINK_CMD_CANCEL),
    [MPOS_LINK_STATE_AWAIT_PIN] = ALL_STATES_TAKE | C(MPOS_LINK_CMD_CANCEL),
    [MPOS_LINK_STATE_ONLINE] = ALL_STATES_TAKE,
    [MPOS_LINK_STATE_SHOW_RESULT] = ALL_STATES_TAKE,
};

int mpos_link_check(enum mpos_link_state state, unsigned cmd)
{
    if (!state_valid((unsigned)state)) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_link_is_command(cmd)) {
        return MPOS_LINK_E_UNKNOWN_COMMAND;
    }
    return (allowed[state] & C(cmd)) ? MPOS_OK : MPOS_LINK_E_NOT_ALLOWED;
}

int mpos_link_session_init(mpos_link_session *s, enum mpos_link_state state)
{
    if (s == NULL || !state_valid((unsigned)state)) {
        return MPOS_ERR_ARG;
    }
    s->state = state;
    s->next_seq = 0;
    return MPOS_OK;
}

int mpos_link_session_set_state(mpos_link_session *s, enum mpos_link_state state)
{
    if (s == NULL || !state_valid((unsigned)state)) {
        return MPOS_ERR_ARG;
    }
    s->state = state;
    return MPOS_OK;
}

int mpos_link_session_send(mpos_link_session *s, mpos_link_msg *msg, uint8_t *out, size_t cap,
                           size_t *out_len)
{
    if (s == NULL || msg == NULL || out == NULL || out_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (!mpos_link_is_event(msg->type)) {
        return MPOS_ERR_ARG; /* the terminal sends events only */
    }
    msg->seq = s->next_seq;
    int rc = mpos_link_encode(msg, out, cap, out_len);
    if (rc == MPOS_OK) {
        s->next_seq++;
    }
    return rc;
}

int mpos_link_session_receive(mpos_link_session *s, const mpos_link_frame *frame,
                              mpos_link_msg *cmd, uint8_t *reply, size_t cap, size_t *reply_len)
{
    int verdict;
    mpos_link_msg err;
    if (cmd == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(cmd, 0, sizeof(*cmd));
    if (s == NULL || frame == NULL || reply == NULL || reply_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *reply_len = 0;
    if (cap < MPOS_LINK_ERROR_FRAME_LEN) {
        return MPOS_ERR_LENGTH;
    }
    verdict = mpos_link_check(s->state, frame->type);
    if (verdict < 0) {
        verdict = MPOS_LINK_E_INTERNAL; /* a state out of range: fail closed */
    }
    if (verdict == MPOS_OK && mpos_link_decode(frame, cmd) != MPOS_OK) {
        verdict = MPOS_LINK_E_MALFORMED;
    }
    if (verdict == MPOS_OK) {
        return MPOS_OK;
    }
    memset(cmd, 0, sizeof(*cmd));
    memset(&err, 0, sizeof(err));
    err.type = MPOS_LINK_EVT_ERROR;
    err.u.error.ref_seq = frame->seq;
    err.u.error.ref_type = frame->type;
    err.u.error.code = (uint8_t)verdict;
    err.u.error.state = state_valid((unsigned)s->state) ? (uint8_t)s->state : 0u;
    int rc = mpos_link_session_send(s, &err, reply, cap, reply_len);
    return rc != MPOS_OK ? rc : verdict;
}
