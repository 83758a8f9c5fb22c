/* openmpos: ISO 8583:1987 message codec for the card-network link of the back end.
 *
 * Profile ("ASCII 1987, binary bitmap"), the one this codec speaks and nothing else:
 * - Framing: each message on the wire is preceded by a 2-byte big-endian length header that
 *   counts the message bytes only (not itself). mpos_iso8583_pack_framed writes it,
 *   mpos_iso8583_frame_parse finds one frame at the start of a stream buffer.
 * - MTI: 4 ASCII digits; the version digit (first) must be '0' (ISO 8583:1987, clause 4.1).
 * - Bitmaps: binary, 8 bytes each, bit 1 = most significant bit of the first byte. The
 *   secondary bitmap follows the primary one exactly when a field 66..128 is present, and bit 1
 *   is set exactly then (a bit 1 with no field 66..128 is refused). Bit 65 (a tertiary bitmap)
 *   is never set and is refused. Fields 1 and 65 cannot be set by the caller.
 * - Numeric (n), track 2 (z), an and ans fields are ASCII characters, one per digit or
 *   character; n fixed fields carry exactly their length in digits (leading zeros are data).
 * - Variable length prefixes are ASCII digits: LLVAR 2 digits, LLLVAR 3 digits. They count
 *   characters for n/z/an/ans fields and bytes for b fields.
 * - b fields are raw bytes; their length is in bytes (52, 64, 128: 8 bytes; 55: ..255 bytes).
 * - Characters: n = '0'..'9'; z = '0'..'9' and '=' (the ASCII track 2 field separator);
 *   an = 'A'..'Z', 'a'..'z', '0'..'9' and space (ISO 8583 pads an fields with blanks);
 *   ans = printable ASCII 0x20..0x7E.
 * - A present variable-length field is never empty (min length 1).
 * - MAC: field 64 when the message has no secondary bitmap, field 128 when it has one; field 64
 *   together with a secondary bitmap is refused, so the MAC is always the last 8 bytes.
 *
 * Supported fields (mpos_iso8583_fields; any other field is refused by set, pack and unpack):
 *   2 LLVAR n..19 PAN            3 n 6 processing code        4 n 12 amount
 *   7 n 10 transmission date/time 11 n 6 STAN                  12 n 6 local time hhmmss
 *  13 n 4 local date MMDD        14 n 4 expiry YYMM           18 n 4 merchant type
 *  22 n 3 POS entry mode         23 n 3 card sequence number  25 n 2 POS condition code
 *  32 LLVAR n..11 acquirer ID    35 LLVAR z..37 track 2       37 an 12 RRN
 *  38 an 6 authorization ID      39 an 2 response code        41 ans 8 terminal ID
 *  42 ans 15 card acceptor ID    43 ans 40 name/location      49 n 3 currency code
 *  52 b 8 PIN block              53 n 16 security info        55 LLLVAR b..255 ICC data
 *  60..63 LLLVAR ans..999        64 b 8 MAC                   70 n 3 network mgmt code
 *  90 n 42 original data elements 95 an 42 replacement amounts 128 b 8 MAC
 *
 * Nothing allocates: a mpos_iso8583_msg holds, per field, a pointer and a length into buffers
 * the caller keeps alive (the unpacked message, or the caller's own values). Every function
 * returns 0 or a negative enum mpos_err: MPOS_ERR_ARG for NULL pointers, an unsupported field
 * number, or a value that does not fit its field (set); MPOS_ERR_FORMAT for malformed input
 * (unpack, frame_parse) or a message struct whose contents break the rules above (pack);
 * MPOS_ERR_LENGTH when an output buffer is too small or a frame is still incomplete.
 * No function reads outside the bytes it is given.
 */
#ifndef MPOS_ISO8583_H
#define MPOS_ISO8583_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_ISO8583_MTI_LEN     4     /* ASCII digits of the MTI */
#define MPOS_ISO8583_BITMAP_LEN  8     /* bytes of one bitmap */
#define MPOS_ISO8583_MAX_FIELD   128   /* highest field number */
#define MPOS_ISO8583_MAC_LEN     8     /* bytes of field 64 / 128 */
#define MPOS_ISO8583_FRAME_HDR   2     /* bytes of the length header */
#define MPOS_ISO8583_MAX_MSG_LEN 65535 /* the longest message the header can frame */
#define MPOS_ISO8583_MIN_MSG_LEN (MPOS_ISO8583_MTI_LEN + MPOS_ISO8583_BITMAP_LEN)

/* How a field's length is coded. MPOS_ISO8583_NONE marks an unsupported field number. */
enum mpos_iso8583_len_kind {
    MPOS_ISO8583_NONE = 0,
    MPOS_ISO8583_FIXED = 1,
    MPOS_ISO8583_LLVAR = 2, /* 2 ASCII digits of length, then the value */
    MPOS_ISO8583_LLLVAR = 3 /* 3 ASCII digits of length, then the value */
};

/* The characters a field takes (see the profile above). */
enum mpos_iso8583_charset {
    MPOS_ISO8583_N = 0,
    MPOS_ISO8583_Z = 1,
    MPOS_ISO8583_AN = 2,
    MPOS_ISO8583_ANS = 3,
    MPOS_ISO8583_B = 4
};

/* One row of the field table. For FIXED, min_len == max_len == the length. */
typedef struct mpos_iso8583_field_spec {
    uint8_t kind;     /* enum mpos_iso8583_len_kind */
    uint8_t charset;  /* enum mpos_iso8583_charset */
    uint16_t min_len; /* characters (bytes for b) */
    uint16_t max_len;
} mpos_iso8583_field_spec;

/* The field table, indexed by field number 0..128 (0, 1 and 65 are NONE). */
extern const mpos_iso8583_field_spec mpos_iso8583_fields[MPOS_ISO8583_MAX_FIELD + 1];

/* A message. Plain data; value pointers point into caller buffers. Fields 1 and 65 are never
 * present here: pack derives the bitmaps. Use the functions below rather than the members. */
typedef struct mpos_iso8583_msg {
    char mti[MPOS_ISO8583_MTI_LEN];
    uint8_t present[(MPOS_ISO8583_MAX_FIELD + 7) / 8]; /* bit n in ISO bitmap order */
    const uint8_t *value[MPOS_ISO8583_MAX_FIELD + 1];
    uint16_t len[MPOS_ISO8583_MAX_FIELD + 1];
} mpos_iso8583_msg;

/* Empties msg and sets its MTI (4 ASCII digits, version digit '0'). MPOS_ERR_ARG otherwise. */
int mpos_iso8583_init(mpos_iso8583_msg *msg, const char mti[MPOS_ISO8583_MTI_LEN]) MPOS_MUST_CHECK;

/* Sets field to len bytes at value (not copied: value must outlive msg's use). MPOS_ERR_ARG
 * for an unsupported field (including 1 and 65), a length outside the table or a character
 * the field does not take; msg is then unchanged. */
int mpos_iso8583_set(mpos_iso8583_msg *msg, unsigned field, const void *value,
                     size_t len) MPOS_MUST_CHECK;

/* Sets a field from a NUL-terminated string (same rules as mpos_iso8583_set). */
int mpos_iso8583_set_str(mpos_iso8583_msg *msg, unsigned field, const char *s) MPOS_MUST_CHECK;

/* Removes field (no effect when absent). MPOS_ERR_ARG for an unsupported field. */
int mpos_iso8583_clear(mpos_iso8583_msg *msg, unsigned field) MPOS_MUST_CHECK;

/* *present = 1 with the value and its length when field is present; *present = 0 with
 * *value = NULL and *len = 0 when not. MPOS_ERR_ARG for an unsupported field. */
int mpos_iso8583_get(const mpos_iso8583_msg *msg, unsigned field, const uint8_t **value,
                     size_t *len, int *present) MPOS_MUST_CHECK;

/* 1 when field is present in msg, else 0 (also for NULL or an unsupported field). */
int mpos_iso8583_has(const mpos_iso8583_msg *msg, unsigned field);

/* Encodes msg (MTI, bitmap(s), fields in ascending order) into out. *out_len is the length
 * written; 0 on any error. MPOS_ERR_FORMAT when msg breaks the profile (a field 64 with a
 * field 66..128, a member edited by hand out of the table), MPOS_ERR_LENGTH when it does not
 * fit in cap bytes. */
int mpos_iso8583_pack(const mpos_iso8583_msg *msg, uint8_t *out, size_t cap,
                      size_t *out_len) MPOS_MUST_CHECK;

/* As mpos_iso8583_pack, preceded by the 2-byte length header. MPOS_ERR_LENGTH also when the
 * message is longer than MPOS_ISO8583_MAX_MSG_LEN. */
int mpos_iso8583_pack_framed(const mpos_iso8583_msg *msg, uint8_t *out, size_t cap,
                             size_t *out_len) MPOS_MUST_CHECK;

/* Decodes exactly len bytes at buf (one message, no length header) into msg, whose values
 * then point into buf. Strict: MTI digits and version, bitmap bit 1 consistent with fields
 * 66..128, no bit 65, only table fields, every length prefix digits and within the table,
 * every character allowed, no field 64 with a secondary bitmap, no trailing byte. On error
 * MPOS_ERR_FORMAT and msg is emptied (MTI zeroed, no field). */
int mpos_iso8583_unpack(const uint8_t *buf, size_t len, mpos_iso8583_msg *msg) MPOS_MUST_CHECK;

/* Looks for one frame at the start of a stream buffer of len bytes. MPOS_OK with *msg_data /
 * *msg_len the message and *frame_len the bytes to consume (header + message);
 * MPOS_ERR_LENGTH when fewer bytes than the whole frame are there yet (outputs zeroed);
 * MPOS_ERR_FORMAT for a header shorter than MPOS_ISO8583_MIN_MSG_LEN (a peer out of step). */
int mpos_iso8583_frame_parse(const uint8_t *buf, size_t len, const uint8_t **msg_data,
                             size_t *msg_len, size_t *frame_len) MPOS_MUST_CHECK;

/* The bytes a MAC covers in a packed message of len bytes (no length header) that carries its
 * MAC field (64, or 128 with a secondary bitmap; pack it with a placeholder value first):
 * everything from the MTI up to the MAC field, i.e. the first *mac_input_len bytes; the MAC
 * itself is the 8 bytes at offset *mac_input_len, which are the message's last bytes.
 * The message is validated as by mpos_iso8583_unpack; MPOS_ERR_FORMAT when it is malformed or
 * has no MAC field. */
int mpos_iso8583_mac_range(const uint8_t *buf, size_t len, size_t *mac_input_len) MPOS_MUST_CHECK;

#endif
