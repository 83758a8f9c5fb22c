/* mpos-hsmd wire protocol: versioned, length-prefixed binary frames with typed fields.
 * docs/hsm-protocol.md is the reference (frame, commands, fields, status codes, limits).
 *
 *   frame    = length (4, big-endian: the bytes that follow) || body
 *   request  = version (1) || command (2) || request id (4) || field*
 *   response = version (1) || command (2) || request id (4) || status (1) || field*
 *   field    = tag (1) || length (2, big-endian) || value
 *
 * Every command has a fixed schema for its request and its response: which tags, which are
 * required, minimum and maximum lengths; each tag has one type (bytes, printable text,
 * digits, or a big-endian integer of fixed size). Decoding is strict: an unknown tag, a
 * duplicate, a missing required field, a length outside the schema, a value not of the tag's
 * type, or trailing bytes refuse the whole message. Nothing here allocates: a decoded message
 * points into the caller's buffer, and the writer fills a caller buffer. */
#ifndef MPOS_HSM_PROTO_H
#define MPOS_HSM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define HSM_PROTO_VERSION          1
#define HSM_PROTO_PREFIX_LEN       4 /* the length field */
#define HSM_PROTO_REQ_HEADER_LEN   7 /* version, command, request id */
#define HSM_PROTO_RESP_HEADER_LEN  8 /* version, command, request id, status */
#define HSM_PROTO_FIELD_HEADER_LEN 3 /* tag, length */
#define HSM_PROTO_DEFAULT_MAX_REQUEST                                                              \
    16384                                 /* default limit of a request body (after the prefix)    \
                                           */
#define HSM_PROTO_MAX_REQUEST       65536 /* highest limit a server may be configured with */
#define HSM_PROTO_MAX_RESPONSE      65536 /* longest response body a client accepts */
#define HSM_PROTO_MAX_TAG           127   /* tags are 1..127 */
#define HSM_PROTO_MAX_SCHEMA_FIELDS 32    /* fields of one message schema */
#define HSM_PROTO_NAME_MAX_LEN      24    /* longest command name */

/* Status of a response (one byte). 0 is success; every other value is an error class and the
 * response then carries no field. */
enum hsm_status {
    HSM_STATUS_OK = 0,
    HSM_STATUS_FRAME = 1,        /* frame shorter than its header; the connection is closed */
    HSM_STATUS_VERSION = 2,      /* protocol version not supported */
    HSM_STATUS_COMMAND = 3,      /* unknown command code */
    HSM_STATUS_FIELD = 4,        /* fields do not match the command's schema */
    HSM_STATUS_TOO_LARGE = 5,    /* request longer than the server's limit; connection closed */
    HSM_STATUS_DENIED = 6,       /* command not in the allow-list of the socket's role */
    HSM_STATUS_KEY = 7,          /* a key block does not verify or is not the key it claims */
    HSM_STATUS_USAGE = 8,        /* a key's usage, algorithm or mode of use does not allow it */
    HSM_STATUS_VERIFY = 9,       /* a MAC, PIN, cryptogram or check value did not verify */
    HSM_STATUS_INPUT = 10,       /* field content the operation refuses (KSN, PAN, PIN block..) */
    HSM_STATUS_EXHAUSTED = 11,   /* DUKPT counter exhausted */
    HSM_STATUS_UNSUPPORTED = 12, /* valid, but not implemented */
    HSM_STATUS_BUSY = 13,        /* server at its connection limit; connection closed */
    HSM_STATUS_INTERNAL = 14     /* internal error (crypto provider, random generator) */
};
#define HSM_STATUS_MAX HSM_STATUS_INTERNAL

/* A short fixed name of a status ("ok", "field", ...), "?" for an unknown value. */
const char *hsm_status_name(int status);

/* The status for an mpos_err returned by an operation (0 gives HSM_STATUS_OK). */
int hsm_status_from_err(int err);

/* Field types. */
enum hsm_field_type {
    HSM_FT_BYTES = 1,  /* any bytes */
    HSM_FT_TEXT = 2,   /* printable ASCII 0x20..0x7E (key blocks, labels) */
    HSM_FT_DIGITS = 3, /* ASCII '0'..'9' (PAN, PVV) */
    HSM_FT_U8 = 4,     /* exactly 1 byte */
    HSM_FT_U16 = 5,    /* exactly 2 bytes, big-endian */
    HSM_FT_U64 = 6     /* exactly 8 bytes, big-endian (two's complement for signed values) */
};

/* Tags: one meaning and one type per tag across all commands (docs/hsm-protocol.md). */
enum hsm_tag {
    HSM_TAG_COUNT = 1,          /* u16: random bytes asked for */
    HSM_TAG_DATA = 2,           /* bytes: random bytes; data to MAC; encrypted card data */
    HSM_TAG_VERSION = 3,        /* text: server name and version */
    HSM_TAG_LMK_KCV = 4,        /* bytes: LMK check value */
    HSM_TAG_UPTIME = 5,         /* u64: seconds since start */
    HSM_TAG_ROLE = 6,           /* text: role of the connection */
    HSM_TAG_WORKERS = 7,        /* u8: crypto worker threads */
    HSM_TAG_COMMANDS = 8,       /* u64: commands served */
    HSM_TAG_REFUSED = 9,        /* u64: commands refused */
    HSM_TAG_SESSIONS = 10,      /* u64: connections accepted */
    HSM_TAG_KEY_BLOCK = 11,     /* text: a key block under the LMK (the command's key) */
    HSM_TAG_KEK = 12,           /* text: key block under the LMK of a KEK / TMK / transport key */
    HSM_TAG_TR31 = 13,          /* text: a TR-31 block under a KEK (import in, export out) */
    HSM_TAG_DEST_KEY = 14,      /* text: key block of the destination zone key (ZPK, ZDK) */
    HSM_TAG_BDK = 15,           /* text: key block of a BDK */
    HSM_TAG_SRC_KEY = 16,       /* text: key block of the source PIN key */
    HSM_TAG_PVK = 17,           /* text: key block of a PIN verification key */
    HSM_TAG_KCV = 18,           /* bytes: a key check value (3 legacy, 5 CMAC) */
    HSM_TAG_KEY_USAGE = 19,     /* text: TR-31 key usage, 2 characters */
    HSM_TAG_ALGORITHM = 20,     /* text: TR-31 algorithm, 1 character */
    HSM_TAG_MODE = 21,          /* text: TR-31 mode of use, 1 character */
    HSM_TAG_EXPORTABILITY = 22, /* text: 'E' or 'N' */
    HSM_TAG_KEY_LEN = 23,       /* u8: key length, bytes */
    HSM_TAG_DUKPT = 24,         /* u8: DUKPT scheme, 0 none, 1 AES, 2 TDES */
    HSM_TAG_PUBKEY = 25,        /* bytes: EC P-256 public key, uncompressed */
    HSM_TAG_KSN = 26,           /* bytes: KSN, 12 (AES DUKPT) or 10 (TDES DUKPT) */
    HSM_TAG_KEY_ID = 27,        /* bytes: AES initial key ID (8) or TDES KSN (10) */
    HSM_TAG_AES_KEY_LEN = 28,   /* u8: AES DUKPT working-key length 16, 24, 32 */
    HSM_TAG_PIN_BLOCK = 29,     /* bytes: an encrypted PIN block, 8 or 16 */
    HSM_TAG_PIN_FORMAT = 30,    /* u8: ISO 9564-1 format of the input PIN block */
    HSM_TAG_DEST_FORMAT = 31,   /* u8: ISO 9564-1 format of the output PIN block */
    HSM_TAG_PAN = 32,           /* digits: PAN, 12 to 19 */
    HSM_TAG_MAC = 33,           /* bytes: a MAC, 4 to 16 */
    HSM_TAG_MAC_LEN = 34,       /* u8: MAC length wanted, 0 full */
    HSM_TAG_MAC_ALG = 35,       /* u8: enum hsm_mac_alg */
    HSM_TAG_IV = 36,            /* bytes: IV of re-encrypted card data */
    HSM_TAG_EMV = 37,           /* bytes: allow-listed EMV objects, BER-TLV */
    HSM_TAG_PVKI = 38,          /* u8: PIN verification key index 0..9 */
    HSM_TAG_PVV = 39,           /* digits: PVV, 4 */
    HSM_TAG_HASH = 40,          /* bytes: PAN hash, 32 */
    HSM_TAG_MK_OPTION = 41,     /* u8: EMV ICC master key option 1 A, 2 B */
    HSM_TAG_SK_METHOD = 42,     /* u8: EMV session key method 1 common, 2 PBOC */
    HSM_TAG_PSN = 43,           /* digits: PAN sequence number, 2 */
    HSM_TAG_ATC = 44,           /* bytes: ATC, 2 */
    HSM_TAG_ARQC = 45,          /* bytes: ARQC, 8 */
    HSM_TAG_ARPC_METHOD = 46,   /* u8: 0 verify only, 1, 2 */
    HSM_TAG_ARC = 47,           /* bytes: ARC, 2 */
    HSM_TAG_CSU = 48,           /* bytes: CSU, 4 */
    HSM_TAG_PROP = 49,          /* bytes: proprietary authentication data, 0..8 */
    HSM_TAG_ARPC = 50,          /* bytes: ARPC, 8 or 4 */
    HSM_TAG_CERT = 51,          /* bytes: DER certificate issued */
    HSM_TAG_CSR = 52,           /* bytes: PKCS#10 request (DER; PEM for provision.terminal) */
    HSM_TAG_SERIAL = 53,        /* text: terminal serial, 1..32 */
    HSM_TAG_NOT_BEFORE = 54,    /* u64: Unix seconds */
    HSM_TAG_NOT_AFTER = 55,     /* u64: Unix seconds */
    HSM_TAG_CERT_SERIAL = 56,   /* bytes: certificate serial number, 16 */
    HSM_TAG_CA_CERT = 57,       /* bytes: DER CA certificate */
    HSM_TAG_SINGLE_DES = 58,    /* u8: 1 for a single-DES UnionPay MAK */
    HSM_TAG_PIK_ENC = 59,       /* bytes: PIK under the TMK */
    HSM_TAG_PIK_KCV = 60,       /* bytes: PIK check value, 4 */
    HSM_TAG_PIK_BLOCK = 61,     /* text: PIK key block under the LMK */
    HSM_TAG_MAK_ENC = 62,
    HSM_TAG_MAK_KCV = 63,
    HSM_TAG_MAK_BLOCK = 64,
    HSM_TAG_TDK_ENC = 65,
    HSM_TAG_TDK_KCV = 66,
    HSM_TAG_TDK_BLOCK = 67,
    HSM_TAG_COMMON_NAME = 68,  /* text: CA certificate common name, 1..64 */
    HSM_TAG_TRUST_ANCHOR = 69, /* bytes: DER certificate of the back end's TLS trust anchor */
    HSM_TAG_BUNDLE = 70,       /* bytes: a provisioning bundle (mpos/provision.h), to 8192 */
    HSM_TAG_CERT_SHA256 = 71,  /* bytes: SHA-256 fingerprint of a certificate, 32 */
    HSM_TAG_KIND = 72,         /* u8: provisioned key kind (enum mpos_provision_kind) */
    /* Sealed messages (sealed.open / sealed.respond), params.sign, key.from-components,
     * cert.sign's server profile. */
    HSM_TAG_SEALED = 73,         /* bytes: a whole sealed request or response, to 1024 */
    HSM_TAG_ZEK = 74,            /* text: key block of a zone encryption key (track 2, DE 62) */
    HSM_TAG_MSG_TYPE = 75,       /* u8: sealed message type (1 request, 2 reversal) */
    HSM_TAG_SCHEME = 76,         /* u8: sealed key scheme (0x11..0x13 AES, 0x21 TDES) */
    HSM_TAG_SEQUENCE = 77,       /* u64: terminal sequence number (0..2^32-1) */
    HSM_TAG_TXN_TYPE = 78,       /* u8: transaction type (1 sale .. 4 balance) */
    HSM_TAG_AMOUNT = 79,         /* u64: amount, minor units */
    HSM_TAG_CURRENCY = 80,       /* u16: ISO 4217 numeric */
    HSM_TAG_MERCHANT_ID = 81,    /* text: merchant ID, 15 */
    HSM_TAG_TERMINAL_ID = 82,    /* text: terminal ID, 8 */
    HSM_TAG_DATETIME = 83,       /* digits: YYYYMMDDhhmmss, 14 */
    HSM_TAG_ENTRY_MODE = 84,     /* u8: POS entry mode (0x00, 0x05, 0x90) */
    HSM_TAG_FALLBACK = 85,       /* u8: 1 stripe fallback after a chip failure */
    HSM_TAG_MASKED_PAN = 86,     /* text: masked PAN (first 6, last 4), 12..19 */
    HSM_TAG_ORIGINAL_REF = 87,   /* text: original reference, 1..32 */
    HSM_TAG_LOCATION = 88,       /* bytes: lat_e7 (4) || lon_e7 (4) || accuracy_m (4) || time (8),
                                    big-endian, signed as two's complement */
    HSM_TAG_CHIP_CARD = 89,      /* u8: 1 chip card (chip read, or service code 2xx/6xx) */
    HSM_TAG_TRACK2_ENC = 90,     /* bytes: track 2 under the ZEK (TDES-CBC, IV in `iv`), 8..24 */
    HSM_TAG_RESPONSE_CODE = 91,  /* text: response code, 2 */
    HSM_TAG_AUTH_CODE = 92,      /* text: authorisation code, 6 */
    HSM_TAG_RRN = 93,            /* text: retrieval reference number, 12 */
    HSM_TAG_IAD = 94,            /* bytes: issuer authentication data (EMV 91), 8..16 */
    HSM_TAG_HAS_PIN = 95,        /* u8: 1 when the sealed request carried a PIN block */
    HSM_TAG_COMPONENT1 = 96,     /* bytes: clear key component 1 (key.from-components) */
    HSM_TAG_COMPONENT2 = 97,     /* bytes: clear key component 2 */
    HSM_TAG_COMPONENT3 = 98,     /* bytes: clear key component 3 (optional) */
    HSM_TAG_COMPONENT_KCVS = 99, /* bytes: the components' check values, one after the other */
    HSM_TAG_DNS_NAME = 100,      /* text: DNS name of a TLS server certificate, 1..253 */
    HSM_TAG_REV_REASON = 101,    /* u8: sealed reversal's reason 1..4 (docs/protocol.md DF34) */
    HSM_TAG_RETRY = 102          /* u8: 1, a sealed request's retry flag (docs/protocol.md DF35) */
};

struct hsm_tag_info {
    uint8_t tag;
    uint8_t type;     /* enum hsm_field_type */
    uint16_t max_len; /* longest value of this tag in any command */
    const char *name;
};

/* The type and name of a tag, NULL for a tag not defined. */
const struct hsm_tag_info *hsm_proto_tag(unsigned tag);

#define HSM_FIELD_REQUIRED 1u

/* One field of a message schema. min_len/max_len tighten the tag's limits for this command
 * (0 max_len: the tag's own maximum). */
struct hsm_field_spec {
    uint8_t tag;
    uint8_t flags;
    uint16_t min_len;
    uint16_t max_len;
};

struct hsm_msg_schema {
    const struct hsm_field_spec *fields;
    size_t n;
};

/* One command: code, name (as in the audit log and the allow-lists) and its two schemas. */
struct hsm_command {
    uint16_t code;
    const char *name;
    struct hsm_msg_schema request;
    struct hsm_msg_schema response;
};

/* Command codes (docs/hsm-protocol.md): high byte = family. */
enum hsm_command_code {
    HSM_CMD_STATUS = 0x0001,
    HSM_CMD_RANDOM = 0x0002,
    HSM_CMD_KEY_GENERATE = 0x0101,
    HSM_CMD_BDK_GENERATE = 0x0102,
    HSM_CMD_KEY_IMPORT = 0x0103,
    HSM_CMD_KEY_EXPORT = 0x0104,
    HSM_CMD_DUKPT_INITIAL_KEY = 0x0105,
    HSM_CMD_MKWK_GENERATE = 0x0106,
    HSM_CMD_KEY_FROM_COMPONENTS = 0x0107,
    HSM_CMD_PIN_TRANSLATE_DUKPT = 0x0201,
    HSM_CMD_PIN_TRANSLATE = 0x0202,
    HSM_CMD_PIN_VERIFY_PVV = 0x0203,
    HSM_CMD_PVV_GENERATE = 0x0204,
    HSM_CMD_DUKPT_MAC_VERIFY = 0x0301,
    HSM_CMD_DUKPT_MAC_GENERATE = 0x0302,
    HSM_CMD_MAC_GENERATE = 0x0303,
    HSM_CMD_MAC_VERIFY = 0x0304,
    HSM_CMD_CARD_DATA_TRANSLATE = 0x0401,
    HSM_CMD_PAN_HASH = 0x0501,
    HSM_CMD_ARQC_VERIFY = 0x0601,
    HSM_CMD_CERT_SIGN = 0x0701,
    HSM_CMD_CA_CERT_CREATE = 0x0702,
    HSM_CMD_PROVISION_TERMINAL = 0x0703,
    HSM_CMD_SEALED_OPEN = 0x0801,
    HSM_CMD_SEALED_RESPOND = 0x0802,
    HSM_CMD_PARAMS_SIGN = 0x0803
};

/* The command of a code or a name, NULL if there is none. */
const struct hsm_command *hsm_proto_command(uint16_t code);
const struct hsm_command *hsm_proto_command_by_name(const char *name);

/* All commands, for listings and tests: *n is set to their number. */
const struct hsm_command *hsm_proto_commands(size_t *n);

/* Position of a command in hsm_proto_commands() (hsmd's allow-list bit). */
size_t hsm_proto_command_index(const struct hsm_command *c);

/* A decoded value: points into the frame it was decoded from. */
struct hsm_field {
    const uint8_t *value;
    uint16_t len;
};

typedef struct hsm_msg {
    uint8_t version;
    uint16_t command;
    uint32_t request_id;
    uint8_t status;      /* responses only */
    int header_ok;       /* 1 once version, command and request id were read */
    uint64_t present[2]; /* bit t set when tag t is present */
    struct hsm_field field[HSM_PROTO_MAX_TAG + 1];
    const struct hsm_command *cmd; /* NULL for an unknown command */
} hsm_msg;

/* Reads a length prefix. 0 and *body_len on success; HSM_STATUS_TOO_LARGE when the body is
 * longer than max_body; HSM_STATUS_FRAME when it is shorter than min_body (the header). */
int hsm_proto_frame_len(const uint8_t prefix[HSM_PROTO_PREFIX_LEN], size_t min_body,
                        size_t max_body, size_t *body_len) MPOS_MUST_CHECK;

/* Decodes a request body (the bytes after the prefix). Returns HSM_STATUS_OK, or the status
 * to answer with (FRAME, VERSION, COMMAND, FIELD). When m->header_ok is set the command
 * and request id are valid even on error, so the answer can echo them. */
int hsm_proto_decode_request(const uint8_t *body, size_t len, hsm_msg *m) MPOS_MUST_CHECK;

/* Decodes a response body to a request of command `expect_command`. Returns 0, or
 * MPOS_ERR_FORMAT for any deviation (wrong version or command, unknown status, fields on an
 * error status, fields outside the response schema). The status is in m->status. */
int hsm_proto_decode_response(const uint8_t *body, size_t len, uint16_t expect_command,
                              hsm_msg *m) MPOS_MUST_CHECK;

/* Accessors of a decoded message. Each returns 0, or MPOS_ERR_ARG when the field is absent
 * (only possible for optional fields: required ones were checked by the decoder). */
int hsm_msg_has(const hsm_msg *m, unsigned tag);
int hsm_msg_bytes(const hsm_msg *m, unsigned tag, const uint8_t **value,
                  size_t *len) MPOS_MUST_CHECK;
/* Copies a text or digits field into out (cap bytes, NUL-terminated); MPOS_ERR_LENGTH when it
 * does not fit. */
int hsm_msg_text(const hsm_msg *m, unsigned tag, char *out, size_t cap) MPOS_MUST_CHECK;
int hsm_msg_u8(const hsm_msg *m, unsigned tag, uint8_t *v) MPOS_MUST_CHECK;
int hsm_msg_u16(const hsm_msg *m, unsigned tag, uint16_t *v) MPOS_MUST_CHECK;
int hsm_msg_u64(const hsm_msg *m, unsigned tag, uint64_t *v) MPOS_MUST_CHECK;

/* Builds one frame (prefix included) in a caller buffer. Errors are sticky: the first one
 * (buffer too small, a value too long for its tag or not of its type) is kept in err, later
 * calls do nothing, and hsm_writer_finish reports it. */
typedef struct hsm_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
} hsm_writer;

void hsm_writer_request(hsm_writer *w, uint8_t *buf, size_t cap, uint16_t command,
                        uint32_t request_id);
void hsm_writer_response(hsm_writer *w, uint8_t *buf, size_t cap, uint16_t command,
                         uint32_t request_id, uint8_t status);
void hsm_put_bytes(hsm_writer *w, unsigned tag, const void *value, size_t len);
void hsm_put_text(hsm_writer *w, unsigned tag, const char *s); /* strlen(s) bytes */
void hsm_put_u8(hsm_writer *w, unsigned tag, uint8_t v);
void hsm_put_u16(hsm_writer *w, unsigned tag, uint16_t v);
void hsm_put_u64(hsm_writer *w, unsigned tag, uint64_t v);
/* Writes the length prefix; returns 0 and the whole frame's length, or the sticky error. */
int hsm_writer_finish(hsm_writer *w, size_t *frame_len) MPOS_MUST_CHECK;

#endif
