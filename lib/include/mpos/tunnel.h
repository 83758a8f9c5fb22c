/* openmpos: codec of the terminal <-> back-end application messages that travel inside the
 * inner TLS tunnel (docs/system-design.md section 2.1).
 *
 * Wire format of one message: type (u8) || len (u16 big-endian, 0..8192) || body.
 * Bodies of HELLO, HELLO_OK, ACTIVATE, ACTIVATE_OK and ERROR are BER-TLV decoded with
 * MPOS_TLV_STRICT (minimal lengths, no padding), made of the primitive private-class tags
 * DF01..DF08 only. Each type has a fixed field set:
 *
 *   0x01 HELLO        DF01 serial, DF02 firmware
 *   0x81 HELLO_OK     DF04 status, DF08 activated; when activated = 1 also DF05, DF06, DF07
 *   0x02 ACTIVATE     DF01 serial, DF02 firmware, DF03 activation code
 *   0x82 ACTIVATE_OK  DF04 status; when status = 0 also DF05, DF06, DF07
 *   0x03 SEALED       the sealed request (docs/protocol.md 2), raw, 1..8192 bytes
 *   0x83 SEALED_RESP  the sealed response, raw, 1..8192 bytes
 *   0x8F ERROR        DF04 status (1..8: an ERROR never says "ok")
 *
 * Field rules (checked by both encode and decode, so encode never makes what decode refuses):
 *   DF01 serial         ans (0x20..0x7E) 1..32
 *   DF02 firmware       ans 1..32 of the form major.minor.patch[-suffix]: three decimal
 *                       numbers of 1..5 digits, then optionally '-' and 1+ ans characters
 *   DF03 activation     4..32 characters of 0-9 A-Z a-z '-'
 *   DF04 status         1 byte, 0..8 (enum mpos_tunnel_status)
 *   DF05 merchant ID    ans, exactly 15
 *   DF06 terminal ID    ans, exactly 8
 *   DF07 parameter pkg  1..4096 bytes (opaque here; docs/protocol.md section 3)
 *   DF08 activated      1 byte, 0 or 1
 *
 * Strictness (one message has one encoding): the tags of a body appear in ascending order
 * (which also refuses duplicates), each exactly as the type's field set asks; a missing tag, an
 * extra or unknown tag, a constructed tag, a duplicate, a value out of range, trailing bytes, a
 * header length that differs from the body's size, a length over 8192 or an unknown type is
 * refused with MPOS_ERR_FORMAT.
 *
 * Nothing allocates. Errors: MPOS_ERR_ARG for NULL pointers, an unknown type or a field the
 * caller set out of range (encode); MPOS_ERR_FORMAT for malformed input (decode, reader);
 * MPOS_ERR_LENGTH when the output does not fit (encode).
 */
#ifndef MPOS_TUNNEL_H
#define MPOS_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_TUNNEL_HEADER_LEN   3    /* type + u16 length */
#define MPOS_TUNNEL_MAX_BODY     8192 /* the longest body */
#define MPOS_TUNNEL_MAX_MSG      (MPOS_TUNNEL_HEADER_LEN + MPOS_TUNNEL_MAX_BODY)
#define MPOS_TUNNEL_SERIAL_MAX   32
#define MPOS_TUNNEL_FIRMWARE_MAX 32
#define MPOS_TUNNEL_CODE_MIN     4
#define MPOS_TUNNEL_CODE_MAX     32
#define MPOS_TUNNEL_MERCHANT_LEN 15
#define MPOS_TUNNEL_TERMINAL_LEN 8
#define MPOS_TUNNEL_PARAMS_MAX   4096

/* The BER-TLV tags of the bodies. */
#define MPOS_TUNNEL_TAG_SERIAL    0xDF01u
#define MPOS_TUNNEL_TAG_FIRMWARE  0xDF02u
#define MPOS_TUNNEL_TAG_CODE      0xDF03u
#define MPOS_TUNNEL_TAG_STATUS    0xDF04u
#define MPOS_TUNNEL_TAG_MERCHANT  0xDF05u
#define MPOS_TUNNEL_TAG_TERMINAL  0xDF06u
#define MPOS_TUNNEL_TAG_PARAMS    0xDF07u
#define MPOS_TUNNEL_TAG_ACTIVATED 0xDF08u

enum mpos_tunnel_type {
    MPOS_TUNNEL_HELLO = 0x01,
    MPOS_TUNNEL_ACTIVATE = 0x02,
    MPOS_TUNNEL_SEALED = 0x03,
    MPOS_TUNNEL_HELLO_OK = 0x81,
    MPOS_TUNNEL_ACTIVATE_OK = 0x82,
    MPOS_TUNNEL_SEALED_RESP = 0x83,
    MPOS_TUNNEL_ERROR = 0x8F
};

/* DF04 (docs/system-design.md 2.1). */
enum mpos_tunnel_status {
    MPOS_TUNNEL_ST_OK = 0,
    MPOS_TUNNEL_ST_CODE_WRONG = 1,
    MPOS_TUNNEL_ST_CODE_EXPIRED = 2,
    MPOS_TUNNEL_ST_CODE_USED = 3,
    MPOS_TUNNEL_ST_TERMINAL_REFUSED = 4, /* not registered, suspended, retired */
    MPOS_TUNNEL_ST_NOT_ACTIVATED = 5,
    MPOS_TUNNEL_ST_REFUSED = 6, /* malformed, MAC, replay */
    MPOS_TUNNEL_ST_INTERNAL = 7,
    MPOS_TUNNEL_ST_FIRMWARE = 8, /* firmware below the minimum */
    MPOS_TUNNEL_ST_MAX = 8
};

/* One message. Text fields are NUL-terminated; only the fields of the type's set are used
 * (encode ignores the others, decode zeroes them). For SEALED / SEALED_RESP, body points at
 * the raw sealed bytes: into the decoder's input after decode (keep the input alive), at the
 * caller's bytes for encode. */
typedef struct mpos_tunnel_msg {
    uint8_t type;                                   /* enum mpos_tunnel_type */
    char serial[MPOS_TUNNEL_SERIAL_MAX + 1];        /* DF01 */
    char firmware[MPOS_TUNNEL_FIRMWARE_MAX + 1];    /* DF02 */
    char code[MPOS_TUNNEL_CODE_MAX + 1];            /* DF03 */
    uint8_t status;                                 /* DF04, enum mpos_tunnel_status */
    char merchant_id[MPOS_TUNNEL_MERCHANT_LEN + 1]; /* DF05 */
    char terminal_id[MPOS_TUNNEL_TERMINAL_LEN + 1]; /* DF06 */
    uint8_t params[MPOS_TUNNEL_PARAMS_MAX];         /* DF07 */
    size_t params_len;                              /* 0 when absent */
    uint8_t activated;                              /* DF08 */
    const uint8_t *body;                            /* SEALED, SEALED_RESP */
    size_t body_len;
} mpos_tunnel_msg;

/* Zeroes msg and sets its type. */
void mpos_tunnel_msg_init(mpos_tunnel_msg *msg, enum mpos_tunnel_type type);

/* A fixed, short name of a type ("HELLO", ..., "UNKNOWN") for logs. */
const char *mpos_tunnel_type_name(unsigned type);

/* Writes one whole message (header + body) to out (cap bytes) and sets *len to its size.
 * Checks every field of the type's set first (MPOS_ERR_ARG when one is out of range or a text
 * field is not NUL-terminated within its array). MPOS_ERR_LENGTH when it does not fit; *len is
 * 0 on every error. */
int mpos_tunnel_encode(const mpos_tunnel_msg *msg, uint8_t *out, size_t cap,
                       size_t *len) MPOS_MUST_CHECK;

/* Decodes exactly one whole message occupying all len bytes of in. On error msg is zeroed. */
int mpos_tunnel_decode(const uint8_t *in, size_t len, mpos_tunnel_msg *msg) MPOS_MUST_CHECK;

/* Extracts whole messages from a byte stream that arrives in arbitrary chunks (TLS
 * application data). It buffers at most one message. Use:
 *     while (n > 0) {
 *         r = mpos_tunnel_reader_feed(&rd, p, n, &used);  if (r) -> framing error, stop
 *         p += used; n -= used;
 *         r = mpos_tunnel_reader_take(&rd, &msg, &got);
 *         if (r) -> this message is malformed (stream still in sync)
 *         else if (got) -> handle msg
 *     }
 * A framing error (a header with an unknown type or a length over 8192) is sticky: the stream
 * cannot be resynchronised. */
typedef struct mpos_tunnel_reader {
    uint8_t buf[MPOS_TUNNEL_MAX_MSG];
    size_t have; /* bytes of the current message buffered */
    int err;     /* sticky framing error, 0 while good */
} mpos_tunnel_reader;

void mpos_tunnel_reader_init(mpos_tunnel_reader *rd);

/* Takes bytes from in (len bytes; in may be NULL when len is 0) up to the end of the current
 * message and no further; *used says how many. Returns 0, or MPOS_ERR_FORMAT (sticky) when
 * the header is bad, with *used 0. While a whole message waits for take, it uses nothing. */
int mpos_tunnel_reader_feed(mpos_tunnel_reader *rd, const uint8_t *in, size_t len,
                            size_t *used) MPOS_MUST_CHECK;

/* When a whole message is buffered: decodes it into msg, sets *got = 1 and starts the next
 * message (msg.body points into the reader's buffer and stays valid until the next feed).
 * Otherwise *got = 0. A body that does not decode returns MPOS_ERR_FORMAT with *got 0 and is
 * dropped (the stream stays in sync). The sticky framing error is returned again. */
int mpos_tunnel_reader_take(mpos_tunnel_reader *rd, mpos_tunnel_msg *msg, int *got) MPOS_MUST_CHECK;

/* 1 when bytes of an incomplete message are buffered (a stream that ends here is truncated). */
int mpos_tunnel_reader_pending(const mpos_tunnel_reader *rd);

#endif
