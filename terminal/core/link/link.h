/* openmpos terminal core: the host link (T-LIMIT-1). The wire format is in docs/protocol.md
 * (section "Host link"); this header is the API.
 *
 * Three layers:
 * - frames over a byte stream: an encoder and an incremental decoder that takes bytes in any
 *   chunks and skips line noise, oversize and garbled frames without losing sync (the resync
 *   rule is at mpos_link_decoder_feed). The integrity checks are CRCs against line noise, not
 *   a security mechanism: the host and the link are untrusted, and everything that matters
 *   is protected end to end (the sealed request, the TLS tunnel);
 * - messages: the closed command set (host -> terminal) and the terminal's events, each with
 *   a fixed binary payload, encoded and decoded with every field range-checked;
 * - the command validator: a state x command table (mpos_link_check) and a session that
 *   refuses unknown, malformed and out-of-state commands with an ERROR event and changes
 *   nothing.
 *
 * There is no command to encrypt a PIN or data, to MAC given bytes, to show given text, to
 * export a key or to enter a debug or service mode, and no way to add one at run time: the
 * command set is this header's enum and the validator's table.
 *
 * Nothing allocates; contexts are caller-allocated; no function reads outside the bytes it is
 * given. Return convention: 0, a negative enum mpos_err, or where stated a positive result.
 */
#ifndef MPOS_TERMINAL_LINK_H
#define MPOS_TERMINAL_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

/* ---- frames ------------------------------------------------------------------------------ */

#define MPOS_LINK_MAGIC0      0x4Du /* 'M' */
#define MPOS_LINK_MAGIC1      0x50u /* 'P' */
#define MPOS_LINK_VERSION     0x01u
#define MPOS_LINK_HEADER_LEN  10 /* magic 2, version 1, type 1, sequence 2, length 2, CRC-16 2 */
#define MPOS_LINK_TRAILER_LEN 4  /* CRC-32 */
#define MPOS_LINK_MAX_PAYLOAD 4096
#define MPOS_LINK_MAX_FRAME_LEN                                                                    \
    (MPOS_LINK_HEADER_LEN + MPOS_LINK_MAX_PAYLOAD + MPOS_LINK_TRAILER_LEN)

/* A decoded frame. payload points into the decoder and stays valid until its next feed. */
typedef struct mpos_link_frame {
    uint8_t type; /* enum mpos_link_type, or any other value the peer sent */
    uint16_t seq;
    const uint8_t *payload;
    size_t len;
} mpos_link_frame;

/* CRC-16/CCITT-FALSE (poly 1021, init FFFF, no reflection; check value of "123456789" is
 * 29B1) of the header, and CRC-32/ISO-HDLC (ISO 3309, IEEE 802.3, as zlib's crc32; check
 * value CBF43926) of the whole frame. */
uint16_t mpos_link_crc16(const uint8_t *p, size_t len);
uint32_t mpos_link_crc32(const uint8_t *p, size_t len);

/* Writes one frame (header, payload, CRC-32) of any type to out (cap bytes) and its length to
 * *out_len. MPOS_ERR_LENGTH when len > MPOS_LINK_MAX_PAYLOAD or it does not fit; nothing is
 * written then. The message encoder below is the normal way to build a frame; this one also
 * serves tests and fuzzers that must send what no valid peer sends. */
int mpos_link_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                           uint8_t *out, size_t cap, size_t *out_len) MPOS_MUST_CHECK;

/* Incremental decoder. The fields are private except the two counters. */
typedef struct mpos_link_decoder {
    uint8_t buf[MPOS_LINK_MAX_FRAME_LEN]; /* the candidate frame, from its first magic byte */
    size_t have;                          /* bytes held in buf */
    size_t delivered;                     /* length of the frame handed out, dropped next */
    size_t scan;                          /* look-ahead: positions below are checked */
    uint32_t dropped_bytes;               /* bytes skipped as noise (statistics) */
    uint32_t bad_frames;                  /* candidates with the magic that failed (statistics) */
} mpos_link_decoder;

void mpos_link_decoder_init(mpos_link_decoder *d);

/* Feeds len bytes at in (any chunking, len 0 allowed). Takes bytes until a whole valid frame
 * is held or the input is used up; *consumed says how many were taken. Returns 1 with *frame
 * filled when a frame is ready (call again with the rest of the input: in + *consumed),
 * 0 when every byte was taken and no frame is complete yet, MPOS_ERR_ARG for NULL pointers.
 * Garbage is never an error: it is skipped and counted.
 *
 * Resync rule: a candidate frame starts at a MAGIC0 byte. It is dropped as soon as a check
 * can be made: the next byte is not MAGIC1, the version is not MPOS_LINK_VERSION, the length
 * is over MPOS_LINK_MAX_PAYLOAD, the header CRC-16 does not match, or (once the whole frame is
 * in) the CRC-32 does not match. Dropping removes only the candidate's first byte; the search
 * for the next MAGIC0 resumes at the byte after it, over the bytes already held. So a valid
 * frame is never lost because it began inside noise or inside a garbled frame, and a false
 * header is dropped after at most 10 bytes unless its CRC-16 matches by chance (2^-16).
 *
 * Look-ahead rule: a frame cut short (a peer reset mid-frame) leaves a candidate waiting for
 * bytes that never come, and the frames after it would wait with it. So when the input is used
 * up and the candidate is still incomplete, a whole valid frame that starts inside it wins:
 * the candidate is dropped and that frame delivered at once. (A payload that embeds a whole
 * valid frame of its own would lose to it; payloads are TLS ciphertext or short fixed fields,
 * and a host that wanted that frame delivered could send it directly.)
 *
 * The work is bounded: each input byte is copied at most once, the decoder never holds more
 * than MPOS_LINK_MAX_FRAME_LEN bytes, and the work per input byte is O(1) amortised for a
 * clean stream and at most O(MPOS_LINK_MAX_FRAME_LEN) for a hostile one (CRC-32 checks of
 * crafted headers). */
int mpos_link_decoder_feed(mpos_link_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                           mpos_link_frame *frame) MPOS_MUST_CHECK;

/* ---- messages ---------------------------------------------------------------------------- */

/* Frame types: the closed command set (host -> terminal) and the events (terminal -> host).
 * Every other value is an unknown command. */
enum mpos_link_type {
    MPOS_LINK_CMD_GET_INFO = 0x01,
    MPOS_LINK_CMD_START_TXN = 0x02,
    MPOS_LINK_CMD_CANCEL = 0x03,
    MPOS_LINK_CMD_ACTIVATE = 0x04,
    MPOS_LINK_CMD_TUNNEL_DATA = 0x05,
    MPOS_LINK_CMD_SET_HOST_LOCATION = 0x06,

    MPOS_LINK_EVT_INFO = 0x81,         /* answers GET_INFO */
    MPOS_LINK_EVT_ACK = 0x82,          /* a command was accepted */
    MPOS_LINK_EVT_ERROR = 0x83,        /* a command was refused; nothing changed */
    MPOS_LINK_EVT_PROMPT_SHOWN = 0x84, /* the terminal's display shows a prompt of its table */
    MPOS_LINK_EVT_RESULT = 0x85,       /* outcome of a transaction or activation */
    MPOS_LINK_EVT_TUNNEL_DATA = 0x86   /* TLS bytes from the terminal to the back end */
};

/* 1 if type is one of the commands, resp. one of the events. */
int mpos_link_is_command(unsigned type);
int mpos_link_is_event(unsigned type);

/* Terminal states, as the host sees them. */
enum mpos_link_state {
    MPOS_LINK_STATE_NOT_ACTIVATED = 0,
    MPOS_LINK_STATE_IDLE = 1,
    MPOS_LINK_STATE_AWAIT_CONFIRM = 2, /* amount and type shown, cardholder to confirm */
    MPOS_LINK_STATE_AWAIT_CARD = 3,
    MPOS_LINK_STATE_AWAIT_PIN = 4,
    MPOS_LINK_STATE_ONLINE = 5, /* sealed request sent, waiting for the back end */
    MPOS_LINK_STATE_SHOW_RESULT = 6
};
#define MPOS_LINK_STATE_COUNT 7

/* The code of an ERROR event. */
enum mpos_link_error {
    MPOS_LINK_E_UNKNOWN_COMMAND = 1, /* not a command of the closed set */
    MPOS_LINK_E_NOT_ALLOWED = 2,     /* a command, but not in the current state */
    MPOS_LINK_E_MALFORMED = 3,       /* payload length, field or range wrong */
    MPOS_LINK_E_INTERNAL = 4         /* the terminal could not handle it (fails closed) */
};

/* Transaction types: START_TXN's, and the sealed request's (docs/protocol.md). */
enum mpos_link_txn_type {
    MPOS_LINK_TXN_SALE = 1,
    MPOS_LINK_TXN_VOID = 2,
    MPOS_LINK_TXN_REFUND = 3,
    MPOS_LINK_TXN_BALANCE = 4
};

/* Outcomes of a RESULT event. */
enum mpos_link_outcome {
    MPOS_LINK_OUTCOME_APPROVED = 1,
    MPOS_LINK_OUTCOME_DECLINED = 2,
    MPOS_LINK_OUTCOME_CANCELLED = 3,
    MPOS_LINK_OUTCOME_NO_RESPONSE = 4, /* no valid response from the back end: reversed */
    MPOS_LINK_OUTCOME_CARD_ERROR = 5,  /* card refused or unreadable */
    MPOS_LINK_OUTCOME_ACTIVATED = 6,
    MPOS_LINK_OUTCOME_ACTIVATION_FAILED = 7
};

/* The terminal's fixed prompt table. The host learns which prompt is shown and with which
 * parameters; it never supplies text. */
enum mpos_link_prompt {
    MPOS_PROMPT_WELCOME = 1,
    MPOS_PROMPT_NOT_ACTIVATED = 2,
    MPOS_PROMPT_ACTIVATING = 3,
    MPOS_PROMPT_ACTIVATED = 4,
    MPOS_PROMPT_CONFIRM_AMOUNT = 5, /* type, amount, currency (G-PROMPT-1) */
    MPOS_PROMPT_PRESENT_CARD = 6,   /* type, amount, currency */
    MPOS_PROMPT_USE_CHIP = 7,
    MPOS_PROMPT_CHIP_ERROR_SWIPE = 8, /* fallback to the stripe */
    MPOS_PROMPT_ENTER_PIN = 9,        /* amount, currency */
    MPOS_PROMPT_WRONG_PIN = 10,       /* count = tries left */
    MPOS_PROMPT_PROCESSING = 11,
    MPOS_PROMPT_APPROVED = 12, /* type, amount, currency */
    MPOS_PROMPT_DECLINED = 13,
    MPOS_PROMPT_CANCELLED = 14,
    MPOS_PROMPT_REMOVE_CARD = 15,
    MPOS_PROMPT_CARD_ERROR = 16,
    MPOS_PROMPT_NO_RESPONSE = 17,
    MPOS_PROMPT_CARD_EXPIRED = 18
};
#define MPOS_LINK_PROMPT_MAX 18

/* Parameters a prompt takes (bits); the others must be zero. */
#define MPOS_LINK_PARAM_TYPE   0x01u /* txn_type */
#define MPOS_LINK_PARAM_AMOUNT 0x02u /* amount and currency */
#define MPOS_LINK_PARAM_COUNT  0x04u /* count */

/* The parameter bits of a prompt; -1 for an id that is not in the table. */
int mpos_link_prompt_params(unsigned prompt);

/* The names of the prompts and outcomes as logs, display records and test peers print them
 * ("ENTER_PIN", "APPROVED" ...): one table, so that every tool spells them alike. "?" for an
 * id that is not in the table. */
const char *mpos_link_prompt_name(unsigned prompt);
const char *mpos_link_outcome_name(unsigned outcome);

#define MPOS_LINK_MAX_AMOUNT      999999999999ull /* n12, minor units */
#define MPOS_LINK_REF_MAX_LEN     32              /* original reference: 1..32 [0-9A-Za-z] */
#define MPOS_LINK_CODE_MIN_LEN    4               /* activation code: 4..32 [0-9A-Za-z-] */
#define MPOS_LINK_CODE_MAX_LEN    32
#define MPOS_LINK_TEXT_MAX_LEN    32           /* serial, firmware version: 1..32 printable ASCII */
#define MPOS_LINK_LAT_MAX_E7      900000000    /* |latitude| in 1e-7 degrees */
#define MPOS_LINK_LON_MAX_E7      1800000000   /* |longitude| */
#define MPOS_LINK_ACCURACY_MAX_M  1000000u     /* metres */
#define MPOS_LINK_TIME_MIN        946684800ull /* 2000-01-01T00:00:00Z, Unix seconds */
#define MPOS_LINK_TIME_MAX        4102444799ull /* 2099-12-31T23:59:59Z */
#define MPOS_LINK_ERROR_FRAME_LEN (MPOS_LINK_HEADER_LEN + 5 + MPOS_LINK_TRAILER_LEN)

/* The host's location as it reports it (H-GEO-1). */
typedef struct mpos_link_location {
    int32_t lat_e7;      /* latitude, 1e-7 degrees, -90..90 */
    int32_t lon_e7;      /* longitude, 1e-7 degrees, -180..180 */
    uint32_t accuracy_m; /* 0..MPOS_LINK_ACCURACY_MAX_M */
    uint64_t time;       /* Unix seconds (host clock), MPOS_LINK_TIME_MIN..MPOS_LINK_TIME_MAX */
} mpos_link_location;

/* 1 if every field of the location is in range (the ranges above), else 0. */
int mpos_link_location_valid(const mpos_link_location *l);

/* One command or event. Strings are NUL-terminated; "" = absent where a field is optional. */
typedef struct mpos_link_msg {
    uint8_t type; /* enum mpos_link_type */
    uint16_t seq; /* the sender's frame sequence number */
    union {
        struct {
            uint8_t txn_type;  /* enum mpos_link_txn_type */
            uint64_t amount;   /* minor units; 0 for balance, > 0 otherwise */
            uint16_t currency; /* ISO 4217 numeric, 1..999 */
            char original_ref[MPOS_LINK_REF_MAX_LEN + 1]; /* void and refund only */
        } start;
        struct {
            char code[MPOS_LINK_CODE_MAX_LEN + 1];
        } activate;
        struct {
            const uint8_t *data; /* 1..MPOS_LINK_MAX_PAYLOAD bytes; decoded: into the frame */
            size_t len;
        } tunnel; /* both TUNNEL_DATA types */
        mpos_link_location location;
        struct {
            uint16_t ref_seq;
            uint8_t state; /* enum mpos_link_state */
            char serial[MPOS_LINK_TEXT_MAX_LEN + 1];
            char firmware[MPOS_LINK_TEXT_MAX_LEN + 1];
        } info;
        struct {
            uint16_t ref_seq;
            uint8_t ref_type;
        } ack;
        struct {
            uint16_t ref_seq;
            uint8_t ref_type;
            uint8_t code;  /* enum mpos_link_error */
            uint8_t state; /* the state the terminal is in (unchanged) */
        } error;
        struct {
            uint8_t prompt; /* enum mpos_link_prompt */
            uint8_t txn_type;
            uint64_t amount;
            uint16_t currency;
            uint8_t count;
        } prompt;
        struct {
            uint8_t outcome;  /* enum mpos_link_outcome */
            uint8_t txn_type; /* 0 for activation outcomes */
            uint64_t amount;
            uint16_t currency;
            uint32_t txn_seq;      /* the terminal's transaction sequence number */
            char response_code[3]; /* "" or an2 */
            char auth_code[7];     /* "" or an6 */
            char rrn[13];          /* "" or an12 */
            char masked_pan[20];   /* "" or first 6 / last 4 (G-ACCT-2): never a full PAN */
        } result;
    } u;
} mpos_link_msg;

/* Encodes msg as one frame (type msg->type, sequence msg->seq). Every field is checked as the
 * decoder checks it: MPOS_ERR_FORMAT for a field out of range (a RESULT whose PAN is not
 * masked among them: the terminal cannot put a full PAN on the link), MPOS_ERR_UNSUPPORTED
 * for an unknown type, MPOS_ERR_LENGTH when out is too small. */
int mpos_link_encode(const mpos_link_msg *msg, uint8_t *out, size_t cap,
                     size_t *out_len) MPOS_MUST_CHECK;

/* Decodes a frame's payload into msg (commands and events alike; for TUNNEL_DATA msg points
 * into the frame). MPOS_ERR_UNSUPPORTED for an unknown type, MPOS_ERR_FORMAT for a payload of
 * the wrong length or with a field out of range. msg is zeroed on error. */
int mpos_link_decode(const mpos_link_frame *frame, mpos_link_msg *msg) MPOS_MUST_CHECK;

/* ---- the command validator --------------------------------------------------------------- */

/* Whether the command type may be executed in the state, by the table of docs/protocol.md:
 * 0 if allowed, MPOS_LINK_E_UNKNOWN_COMMAND for a type outside the closed command set
 * (events included), MPOS_LINK_E_NOT_ALLOWED for a command the state does not take,
 * MPOS_ERR_ARG for a state out of range. */
int mpos_link_check(enum mpos_link_state state, unsigned cmd) MPOS_MUST_CHECK;

/* The terminal's end of the link: its state as the host sees it and its frame sequence. */
typedef struct mpos_link_session {
    enum mpos_link_state state;
    uint16_t next_seq;
} mpos_link_session;

/* Starts a session in state (MPOS_ERR_ARG for a state out of range). */
int mpos_link_session_init(mpos_link_session *s, enum mpos_link_state state) MPOS_MUST_CHECK;

/* The transaction state machine reports its new state here; nothing else changes it. */
int mpos_link_session_set_state(mpos_link_session *s, enum mpos_link_state state) MPOS_MUST_CHECK;

/* Takes one frame from the host. In this order: an unknown type, a command the state does not
 * allow (mpos_link_check; its payload is not even parsed), a malformed payload: each is
 * refused with an ERROR event (ref_seq, ref_type, code, current state) written as a frame to
 * reply (cap >= MPOS_LINK_ERROR_FRAME_LEN), and the positive enum mpos_link_error returned;
 * cmd is zeroed and s->state is never changed. Otherwise returns 0 with the command in cmd
 * (TUNNEL_DATA points into the frame) and *reply_len 0: the caller executes it and answers
 * (INFO, ACK, ...). Negative enum mpos_err for NULL pointers or a reply buffer too small. */
int mpos_link_session_receive(mpos_link_session *s, const mpos_link_frame *frame,
                              mpos_link_msg *cmd, uint8_t *reply, size_t cap,
                              size_t *reply_len) MPOS_MUST_CHECK;

/* Encodes an event from the terminal with the session's next sequence number (msg->seq is
 * set). MPOS_ERR_ARG for a type that is not an event; otherwise as mpos_link_encode. */
int mpos_link_session_send(mpos_link_session *s, mpos_link_msg *msg, uint8_t *out, size_t cap,
                           size_t *out_len) MPOS_MUST_CHECK;

#endif
