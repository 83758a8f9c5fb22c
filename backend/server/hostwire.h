/* mpos-backend: the host protocol's frames and fields (docs/system-design.md 1.1, 1.2), the
 * back end's side. Strict: every field's length and alphabet checked, each tag at most once,
 * only the tags of the message's set, mac last.
 *
 * (lib/hostmsg, the shared codec, was not in the tree when this was written; when it lands
 * this file can become a thin adapter over it. The tests build frames independently.)
 */
#ifndef MPOS_BACKEND_HOSTWIRE_H
#define MPOS_BACKEND_HOSTWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define HW_MAX_LEN   65536 /* type + body */
#define HW_MAX_TAG   0x3F
#define HW_FIELD_HDR 3

enum hw_type {
    HW_LOGIN = 0x01,
    HW_RESUME = 0x02,
    HW_TUNNEL = 0x03,
    HW_TXN_BEGIN = 0x04,
    HW_SETTLE = 0x05,
    HW_LOGOUT = 0x06,
    HW_LOGIN_OK = 0x81,
    HW_RESUME_OK = 0x82,
    HW_TUNNEL_OUT = 0x83,
    HW_TXN_OK = 0x84,
    HW_SETTLE_OK = 0x85,
    HW_LOGOUT_OK = 0x86,
    HW_TXN_RESULT = 0x87,
    HW_ERROR = 0x8F
};

enum hw_tag {
    HW_T_MERCHANT = 0x01,
    HW_T_USERNAME = 0x02,
    HW_T_PASSWORD = 0x03,
    HW_T_DEVICE_ID = 0x04,
    HW_T_TOKEN = 0x05,
    HW_T_ROLE = 0x06,
    HW_T_EXPIRES = 0x07,
    HW_T_ERROR = 0x08,
    HW_T_MESSAGE = 0x09,
    HW_T_DATA = 0x0A,
    HW_T_TXN_TYPE = 0x0B,
    HW_T_AMOUNT = 0x0C,
    HW_T_CURRENCY = 0x0D,
    HW_T_REFERENCE = 0x0E,
    HW_T_TEXT = 0x0F,
    HW_T_MERCHANT_ID = 0x10,
    HW_T_TERMINAL_ID = 0x11,
    HW_T_MASKED_PAN = 0x12,
    HW_T_RESPONSE_CODE = 0x13,
    HW_T_AUTH_CODE = 0x14,
    HW_T_RRN = 0x15,
    HW_T_SEQUENCE = 0x16,
    HW_T_LAT = 0x20,
    HW_T_LON = 0x21,
    HW_T_ACCURACY = 0x22,
    HW_T_LOC_TIME = 0x23,
    HW_T_DEBUGGER = 0x24,
    HW_T_ROOT = 0x25,
    HW_T_BINARY_HASH = 0x26,
    HW_T_COUNTER = 0x27,
    HW_T_MAC = 0x3F
};

/* 1.4 */
enum hw_err {
    HW_ERR_BAD_REQUEST = 1,
    HW_ERR_NOT_LOGGED_IN = 2,
    HW_ERR_BAD_CREDENTIALS = 3,
    HW_ERR_LOCKED = 4,
    HW_ERR_FORBIDDEN = 5,
    HW_ERR_ENVELOPE = 6,
    HW_ERR_INTEGRITY = 7,
    HW_ERR_INTERNAL = 8,
    HW_ERR_SESSION_EXPIRED = 9,
    HW_ERR_BUSY = 10,
    HW_ERR_TERMINAL = 11
};

struct hw_field {
    const uint8_t *v; /* into the frame */
    uint16_t len;
    uint8_t present;
};

/* One parsed host message; the fields point into the frame passed to hw_parse. */
struct hw_msg {
    uint8_t type;
    struct hw_field f[HW_MAX_TAG + 1];
    size_t mac_off; /* offset of the mac field's tag from the type byte (0: no mac) */
};

/* Parses one message (the type byte and the body, len bytes: what the length prefix
 * counted). Fields outside the type's set, unknown tags, duplicates, a mac not last, lengths
 * or alphabets out of range: MPOS_ERR_FORMAT. Missing fields are not checked here. */
int hw_parse(const uint8_t *msg, size_t len, struct hw_msg *m) MPOS_MUST_CHECK;

/* Field values. */
uint64_t hw_u64(const struct hw_field *f); /* big-endian, any length up to 8 */
/* Copies a text field into out (cap > len), NUL-terminated. */
void hw_text(const struct hw_field *f, char *out, size_t cap);

/* Frame builder (the 4-byte length prefix included). */
struct hw_out {
    uint8_t *buf;
    size_t cap, len;
    int err; /* sticky: a field did not fit */
};
void hw_out_init(struct hw_out *o, uint8_t *buf, size_t cap, uint8_t type);
void hw_put(struct hw_out *o, uint8_t tag, const void *v, size_t len);
void hw_put_str(struct hw_out *o, uint8_t tag, const char *s);
void hw_put_u8(struct hw_out *o, uint8_t tag, uint8_t v);
void hw_put_u16(struct hw_out *o, uint8_t tag, uint16_t v);
void hw_put_u32(struct hw_out *o, uint8_t tag, uint32_t v);
void hw_put_u64(struct hw_out *o, uint8_t tag, uint64_t v);
/* Writes the length prefix; 0 and the frame length, or MPOS_ERR_LENGTH. */
int hw_out_finish(struct hw_out *o, size_t *len) MPOS_MUST_CHECK;

#endif
