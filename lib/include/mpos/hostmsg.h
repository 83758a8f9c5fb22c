/* openmpos: the host protocol codec (docs/system-design.md 1.1-1.3): the messages between the
 * cashier app (mpos-host) and the back end over the outer TLS, and the envelope MAC.
 *
 * Frame: length (u32 BE, counts type + body, 1..MPOS_HOSTMSG_MAX_LEN) || type (u8) || body; the
 * body is fields tag (u8) || len (u16 BE) || value. No heap: a parsed message points into the
 * caller's input, the writer builds into a caller buffer, the stream reader holds one frame.
 * Strict: an unknown tag, a repeated tag, a length outside the field's range, a value outside
 * its type (text characters, 0/1 flags, txn-type 1..4), or anything after the mac field is
 * MPOS_ERR_FORMAT.
 *
 * Which fields each message type may and must carry (the table of 1.3, both directions) is
 * mpos_hostmsg_type_fields(); mpos_hostmsg_check_allowed() / _check_required() apply it to a
 * parsed message, separately, because a receiver answers the two differently and at different
 * points (a foreign field is a bad request at once; a missing envelope field is an envelope
 * refusal, only after the login state is known). mpos_hostmsg_get_envelope() reads and
 * range-checks the envelope's fields.
 */
#ifndef MPOS_HOSTMSG_H
#define MPOS_HOSTMSG_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_HOSTMSG_MAX_LEN       65536u /* type + body */
#define MPOS_HOSTMSG_HDR_LEN       4u     /* the u32 length */
#define MPOS_HOSTMSG_MAX_FRAME_LEN (MPOS_HOSTMSG_HDR_LEN + MPOS_HOSTMSG_MAX_LEN)
#define MPOS_HOSTMSG_TAG_LIMIT     64u /* tags are 0x01..0x3F */
#define MPOS_HOSTMSG_MAC_LEN       32u
#define MPOS_HOSTMSG_KEY_LEN       32u /* login key and env_key */
#define MPOS_HOSTMSG_EXPORTER_LEN  32u /* TLS exporter output the keys are derived from */
#define MPOS_HOSTMSG_DATA_MAX      16384u
#define MPOS_HOSTMSG_ID_LEN        32u /* device-id, session-token, binary-hash */

/* TLS exporter labels (RFC 8446 7.5), empty context, MPOS_HOSTMSG_EXPORTER_LEN bytes. */
#define MPOS_HOSTMSG_EXPORTER_LOGIN   "EXPORTER-openmpos-login"
#define MPOS_HOSTMSG_EXPORTER_SESSION "EXPORTER-openmpos-session"

enum mpos_hostmsg_type {
    MPOS_HOSTMSG_LOGIN = 0x01,
    MPOS_HOSTMSG_RESUME = 0x02,
    MPOS_HOSTMSG_TUNNEL = 0x03,
    MPOS_HOSTMSG_TXN_BEGIN = 0x04,
    MPOS_HOSTMSG_SETTLE = 0x05,
    MPOS_HOSTMSG_LOGOUT = 0x06,
    MPOS_HOSTMSG_LOGIN_OK = 0x81,
    MPOS_HOSTMSG_RESUME_OK = 0x82,
    MPOS_HOSTMSG_TUNNEL_DOWN = 0x83, /* back end -> host TUNNEL */
    MPOS_HOSTMSG_TXN_OK = 0x84,
    MPOS_HOSTMSG_SETTLE_OK = 0x85,
    MPOS_HOSTMSG_LOGOUT_OK = 0x86,
    MPOS_HOSTMSG_TXN_RESULT = 0x87,
    MPOS_HOSTMSG_ERROR = 0x8F
};

enum mpos_hostmsg_tag {
    MPOS_HM_MERCHANT = 0x01,
    MPOS_HM_USERNAME = 0x02,
    MPOS_HM_PASSWORD = 0x03,
    MPOS_HM_DEVICE_ID = 0x04,
    MPOS_HM_SESSION_TOKEN = 0x05,
    MPOS_HM_ROLE = 0x06,
    MPOS_HM_EXPIRES = 0x07,
    MPOS_HM_ERROR = 0x08,
    MPOS_HM_MESSAGE = 0x09,
    MPOS_HM_DATA = 0x0A,
    MPOS_HM_TXN_TYPE = 0x0B,
    MPOS_HM_AMOUNT = 0x0C,
    MPOS_HM_CURRENCY = 0x0D,
    MPOS_HM_REFERENCE = 0x0E,
    MPOS_HM_TEXT = 0x0F,
    MPOS_HM_MERCHANT_ID = 0x10,
    MPOS_HM_TERMINAL_ID = 0x11,
    MPOS_HM_MASKED_PAN = 0x12,
    MPOS_HM_RESPONSE_CODE = 0x13,
    MPOS_HM_AUTH_CODE = 0x14,
    MPOS_HM_RRN = 0x15,
    MPOS_HM_SEQUENCE = 0x16,
    MPOS_HM_LAT = 0x20,
    MPOS_HM_LON = 0x21,
    MPOS_HM_ACCURACY = 0x22,
    MPOS_HM_LOC_TIME = 0x23,
    MPOS_HM_DEBUGGER = 0x24,
    MPOS_HM_ROOT = 0x25,
    MPOS_HM_BINARY_HASH = 0x26,
    MPOS_HM_COUNTER = 0x27,
    MPOS_HM_MAC = 0x3F
};

/* Error codes of the ERROR message (docs/system-design.md 1.4). */
enum mpos_hostmsg_error {
    MPOS_HMERR_BAD_REQUEST = 1,
    MPOS_HMERR_NOT_LOGGED_IN = 2,
    MPOS_HMERR_BAD_CREDENTIALS = 3,
    MPOS_HMERR_LOCKED = 4,
    MPOS_HMERR_FORBIDDEN = 5,
    MPOS_HMERR_ENVELOPE = 6,
    MPOS_HMERR_INTEGRITY = 7,
    MPOS_HMERR_INTERNAL = 8,
    MPOS_HMERR_SESSION_EXPIRED = 9,
    MPOS_HMERR_BUSY = 10,
    MPOS_HMERR_TERMINAL = 11
};

/* A set of tags as a bit mask: bit t stands for tag t (tags are below 64). */
#define MPOS_HOSTMSG_BIT(tag) ((uint64_t)1 << (tag))
/* The envelope every message from the host carries (1.3), mac included. */
#define MPOS_HOSTMSG_ENVELOPE_FIELDS                                                               \
    (MPOS_HOSTMSG_BIT(MPOS_HM_LAT) | MPOS_HOSTMSG_BIT(MPOS_HM_LON) |                               \
     MPOS_HOSTMSG_BIT(MPOS_HM_ACCURACY) | MPOS_HOSTMSG_BIT(MPOS_HM_LOC_TIME) |                     \
     MPOS_HOSTMSG_BIT(MPOS_HM_DEVICE_ID) | MPOS_HOSTMSG_BIT(MPOS_HM_DEBUGGER) |                    \
     MPOS_HOSTMSG_BIT(MPOS_HM_ROOT) | MPOS_HOSTMSG_BIT(MPOS_HM_BINARY_HASH) |                      \
     MPOS_HOSTMSG_BIT(MPOS_HM_COUNTER) | MPOS_HOSTMSG_BIT(MPOS_HM_MAC))

/* One field of a parsed message: points into the caller's input. */
struct mpos_hostmsg_field {
    const uint8_t *value; /* NULL when absent */
    uint16_t len;
    uint8_t present;
};

/* A parsed message. Valid while the input it was parsed from is. */
typedef struct {
    uint8_t type;
    const uint8_t *msg; /* the type byte */
    size_t msg_len;     /* type + body */
    size_t mac_covered; /* bytes from the type byte to the end of the field before mac */
    unsigned field_count;
    struct mpos_hostmsg_field f[MPOS_HOSTMSG_TAG_LIMIT];
} mpos_hostmsg;

/* The envelope every host message carries (H-GEO-1, H-DEVID-1, H-BASE-1), mac aside. */
struct mpos_hostmsg_envelope {
    int32_t lat;       /* 1e-7 degree, -900000000..900000000 */
    int32_t lon;       /* 1e-7 degree, -1800000000..1800000000 */
    uint32_t accuracy; /* metres, <= 1000000 */
    uint64_t loc_time; /* Unix seconds */
    uint8_t device_id[MPOS_HOSTMSG_ID_LEN];
    uint8_t debugger; /* 0/1 */
    uint8_t root;     /* 0/1 */
    uint8_t binary_hash[MPOS_HOSTMSG_ID_LEN];
    uint64_t counter; /* >= 1, strictly increasing per connection */
};

/* Writer into a caller buffer: the frame (length prefix included) is built in place. The first
 * error sticks: later puts do nothing and mpos_hostmsg_finish() returns it. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
    int sealed; /* a mac was put: nothing may follow */
    uint8_t seen[MPOS_HOSTMSG_TAG_LIMIT / 8];
} mpos_hostmsg_writer;

/* Stream reader: feeds bytes of a connection in any chunks and yields whole messages. */
typedef struct {
    uint8_t buf[MPOS_HOSTMSG_MAX_FRAME_LEN];
    size_t have;
    int failed; /* a bad length prefix: the stream cannot be resynchronised */
} mpos_hostmsg_reader;

/* The allowed length range of a tag; 0 when the tag is unknown. */
int mpos_hostmsg_tag_range(uint8_t tag, uint16_t *min_len, uint16_t *max_len);

/* Parses one message (type byte + body, without the length prefix) of len bytes (1..
 * MPOS_HOSTMSG_MAX_LEN). MPOS_ERR_ARG for NULL, MPOS_ERR_LENGTH for a length outside that
 * range, MPOS_ERR_FORMAT for a truncated field, unknown or repeated tag, length out of the
 * field's range, bad value, or a field after mac. On error *m holds no field. */
int mpos_hostmsg_parse(mpos_hostmsg *m, const uint8_t *msg, size_t len) MPOS_MUST_CHECK;

/* The fields a message type may carry (*allowed) and must carry (*required, a subset) as
 * MPOS_HOSTMSG_BIT masks, from the table of docs/system-design.md 1.3: host -> back end
 * messages allow and require the envelope besides their own fields; TXN_BEGIN's reference,
 * TXN_OK's amount and currency, TXN_RESULT's merchant-id, terminal-id and masked-pan, and
 * ERROR's message are optional. Returns 1 for a known type, 0 (both masks 0) for an unknown
 * one. Either pointer may be NULL. */
int mpos_hostmsg_type_fields(uint8_t type, uint64_t *allowed, uint64_t *required);
/* MPOS_ERR_FORMAT when the message's type is unknown or it carries a field its type may not
 * carry; MPOS_ERR_ARG for NULL. Missing fields are not checked here. */
int mpos_hostmsg_check_allowed(const mpos_hostmsg *m) MPOS_MUST_CHECK;
/* MPOS_ERR_FORMAT when the message's type is unknown or a field its type must carry is
 * missing; MPOS_ERR_ARG for NULL. */
int mpos_hostmsg_check_required(const mpos_hostmsg *m) MPOS_MUST_CHECK;

/* 1 when the tag is present. */
int mpos_hostmsg_has(const mpos_hostmsg *m, uint8_t tag);

/* The raw value of a present tag; MPOS_ERR_FORMAT when absent. */
int mpos_hostmsg_get(const mpos_hostmsg *m, uint8_t tag, const uint8_t **value,
                     size_t *len) MPOS_MUST_CHECK;
/* Fixed-size integers (the table fixes the length, the parser checked it); MPOS_ERR_FORMAT
 * when absent, MPOS_ERR_ARG when the tag is not of that width. */
int mpos_hostmsg_get_u8(const mpos_hostmsg *m, uint8_t tag, uint8_t *v) MPOS_MUST_CHECK;
int mpos_hostmsg_get_u16(const mpos_hostmsg *m, uint8_t tag, uint16_t *v) MPOS_MUST_CHECK;
int mpos_hostmsg_get_u32(const mpos_hostmsg *m, uint8_t tag, uint32_t *v) MPOS_MUST_CHECK;
int mpos_hostmsg_get_i32(const mpos_hostmsg *m, uint8_t tag, int32_t *v) MPOS_MUST_CHECK;
int mpos_hostmsg_get_u64(const mpos_hostmsg *m, uint8_t tag, uint64_t *v) MPOS_MUST_CHECK;
/* A text field copied NUL-terminated into out (cap > len); MPOS_ERR_FORMAT when absent,
 * MPOS_ERR_LENGTH when it does not fit. */
int mpos_hostmsg_get_text(const mpos_hostmsg *m, uint8_t tag, char *out,
                          size_t cap) MPOS_MUST_CHECK;

/* Reads and range-checks the envelope fields; MPOS_ERR_FORMAT when one is missing or out of
 * range, or when mac is missing (it does not verify the mac). */
int mpos_hostmsg_get_envelope(const mpos_hostmsg *m,
                              struct mpos_hostmsg_envelope *env) MPOS_MUST_CHECK;

/* Verifies the mac field (HMAC-SHA-256 under key, MPOS_HOSTMSG_KEY_LEN bytes) over the type
 * byte .. end of the field before mac, in constant time. MPOS_ERR_FORMAT when there is no
 * mac, MPOS_ERR_VERIFY when it does not match. */
int mpos_hostmsg_verify_mac(const mpos_hostmsg *m, const uint8_t *key,
                            size_t key_len) MPOS_MUST_CHECK;

/* Starts a message of the given type in buf (cap bytes; at least 5). */
int mpos_hostmsg_writer_init(mpos_hostmsg_writer *w, uint8_t *buf, size_t cap,
                             uint8_t type) MPOS_MUST_CHECK;
/* Appends a field; the value is checked like the parser checks it (MPOS_ERR_FORMAT), a full
 * buffer is MPOS_ERR_LENGTH. value may be NULL when len is 0. mac cannot be put this way. */
int mpos_hostmsg_put(mpos_hostmsg_writer *w, uint8_t tag, const void *value, size_t len);
int mpos_hostmsg_put_u8(mpos_hostmsg_writer *w, uint8_t tag, uint8_t v);
int mpos_hostmsg_put_u16(mpos_hostmsg_writer *w, uint8_t tag, uint16_t v);
int mpos_hostmsg_put_u32(mpos_hostmsg_writer *w, uint8_t tag, uint32_t v);
int mpos_hostmsg_put_i32(mpos_hostmsg_writer *w, uint8_t tag, int32_t v);
int mpos_hostmsg_put_u64(mpos_hostmsg_writer *w, uint8_t tag, uint64_t v);
int mpos_hostmsg_put_text(mpos_hostmsg_writer *w, uint8_t tag, const char *s);
/* Appends every envelope field but mac (range-checked: MPOS_ERR_FORMAT). */
int mpos_hostmsg_put_envelope(mpos_hostmsg_writer *w, const struct mpos_hostmsg_envelope *env);
/* Appends the mac field: HMAC-SHA-256 under key of every byte written after the length
 * prefix. Nothing can be put after it. */
int mpos_hostmsg_put_mac(mpos_hostmsg_writer *w, const uint8_t *key,
                         size_t key_len) MPOS_MUST_CHECK;
/* Fills in the length prefix; *frame_len = bytes of the whole frame at buf. Returns the first
 * error of the puts, if any. */
int mpos_hostmsg_finish(mpos_hostmsg_writer *w, size_t *frame_len) MPOS_MUST_CHECK;

/* Resets a reader (also after an error). */
void mpos_hostmsg_reader_init(mpos_hostmsg_reader *r);
/* Feeds up to len bytes. *consumed says how many were taken (it stops at the end of a frame,
 * so call again with the rest). Returns 1 when a whole message is ready: *msg / *msg_len are
 * its type byte + body inside the reader, valid until the next feed; 0 when more bytes are
 * needed; MPOS_ERR_LENGTH when a length prefix is 0 or above MPOS_HOSTMSG_MAX_LEN (the
 * connection must be closed: the stream has no resync). */
int mpos_hostmsg_reader_feed(mpos_hostmsg_reader *r, const uint8_t *data, size_t len,
                             size_t *consumed, const uint8_t **msg,
                             size_t *msg_len) MPOS_MUST_CHECK;
/* 1 when the reader holds part of a frame (for the 10 s per-frame limit). */
int mpos_hostmsg_reader_pending(const mpos_hostmsg_reader *r);

/* The LOGIN MAC key: HKDF-SHA-256(ikm = exporter "EXPORTER-openmpos-login", no salt, info
 * "openmpos login v1"), MPOS_HOSTMSG_KEY_LEN bytes. */
int mpos_hostmsg_login_key(const uint8_t exporter[MPOS_HOSTMSG_EXPORTER_LEN],
                           uint8_t key[MPOS_HOSTMSG_KEY_LEN]) MPOS_MUST_CHECK;
/* The session's envelope key: HKDF-SHA-256(ikm = session token, salt = exporter
 * "EXPORTER-openmpos-session", info "openmpos host envelope v1"). */
int mpos_hostmsg_env_key(const uint8_t token[MPOS_HOSTMSG_ID_LEN],
                         const uint8_t exporter[MPOS_HOSTMSG_EXPORTER_LEN],
                         uint8_t key[MPOS_HOSTMSG_KEY_LEN]) MPOS_MUST_CHECK;

#endif
