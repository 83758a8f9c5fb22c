/* libmposhost internal: the host's own codec of the terminal link (docs/protocol.md 1), written
 * independently of terminal/core/link (which the host must not link: H-KERNEL-1). Frames are
 * built and decoded here; the payloads of the commands the host sends and of the events it
 * receives are encoded and checked here too. */
#ifndef MPOSHOST_HLINK_H
#define MPOSHOST_HLINK_H

#include <stddef.h>
#include <stdint.h>

#define HL_MAGIC0      0x4Du
#define HL_MAGIC1      0x50u
#define HL_VERSION     0x01u
#define HL_HDR_LEN     10u
#define HL_CRC_LEN     4u
#define HL_MAX_PAYLOAD 4096u
#define HL_MAX_FRAME   (HL_HDR_LEN + HL_MAX_PAYLOAD + HL_CRC_LEN)

enum hl_type {
    HL_CMD_GET_INFO = 0x01,
    HL_CMD_START_TXN = 0x02,
    HL_CMD_CANCEL = 0x03,
    HL_CMD_ACTIVATE = 0x04,
    HL_CMD_TUNNEL_DATA = 0x05,
    HL_CMD_SET_HOST_LOCATION = 0x06,
    HL_EVT_INFO = 0x81,
    HL_EVT_ACK = 0x82,
    HL_EVT_ERROR = 0x83,
    HL_EVT_PROMPT_SHOWN = 0x84,
    HL_EVT_RESULT = 0x85,
    HL_EVT_TUNNEL_DATA = 0x86
};

/* CRC-16/CCITT-FALSE and CRC-32/ISO-HDLC (docs/protocol.md 1.1). */
uint16_t hl_crc16(const uint8_t *p, size_t len);
uint32_t hl_crc32(const uint8_t *p, size_t len);

/* One frame into out (cap bytes); 0 or a negative enum mpos_err. */
int hl_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out,
             size_t cap, size_t *out_len);

/* Stream decoder: skips noise one byte at a time (a failed candidate loses its first byte). */
typedef struct {
    uint8_t buf[2 * HL_MAX_FRAME];
    size_t have;
    size_t drop; /* bytes of a delivered frame to drop at the next call */
} hl_decoder;

struct hl_frame_view {
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload;
    size_t len;
};

void hl_decoder_init(hl_decoder *d);
/* Takes up to len bytes (*consumed says how many); 1 with *f when a valid frame is ready (valid
 * until the next call), 0 when more bytes are needed. */
int hl_decoder_feed(hl_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                    struct hl_frame_view *f);

/* Command payloads; each returns the payload length or a negative enum mpos_err. */
int hl_put_start(uint8_t *out, size_t cap, uint8_t txn_type, uint64_t amount, uint16_t currency,
                 const char *reference);
int hl_put_activate(uint8_t *out, size_t cap, const char *code);
int hl_put_location(uint8_t *out, size_t cap, int32_t lat, int32_t lon, uint32_t accuracy,
                    uint64_t time);

/* Decoded events. */
struct hl_event {
    uint8_t type;
    uint16_t seq;
    union {
        struct {
            uint16_t ref_seq;
            uint8_t state;
            char serial[33];
            char firmware[33];
        } info;
        struct {
            uint16_t ref_seq;
            uint8_t ref_type;
            uint8_t code;  /* ERROR only */
            uint8_t state; /* ERROR only */
        } ack;
        struct {
            uint8_t id;
            uint8_t txn_type;
            uint64_t amount;
            uint16_t currency;
            uint8_t count;
        } prompt;
        struct {
            uint8_t outcome;
            uint8_t txn_type;
            uint64_t amount;
            uint16_t currency;
            uint32_t sequence;
            char response_code[3];
            char auth_code[7];
            char rrn[13];
            char masked_pan[20];
        } result;
        struct {
            const uint8_t *data;
            size_t len;
        } tunnel;
    } u;
};

/* Decodes an event frame strictly (lengths exact, strings in their alphabets, the masked PAN
 * first 6 / last 4 only): 0, MPOS_ERR_FORMAT, or MPOS_ERR_UNSUPPORTED for a non-event type. */
int hl_decode_event(const struct hl_frame_view *f, struct hl_event *ev);

#endif
