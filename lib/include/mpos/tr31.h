/* openmpos: TR-31 / ANSI X9.143 key blocks, versions B and D.
 *
 * A key block is printable ASCII: a header (16 characters plus optional blocks), the
 * encrypted key data in uppercase hex, and the MAC in uppercase hex.
 *
 *   version B: TDES KBPK of 16 or 24 bytes, KBEK and KBAK derived from it with TDES CMAC
 *             (X9.143:2021 7.2.2), CMAC over the header and the clear key data (8 bytes),
 *             key data encrypted with TDES CBC using the MAC as IV (7.3).
 *   version D: the same with an AES KBPK of 16, 24 or 32 bytes (derivation 7.2.1), AES CMAC
 *             (16-byte MAC) and AES CBC.
 *
 * The clear key data is a 2-byte key length in bits, the key and padding, a whole number of
 * cipher blocks. wrap pads the key to the longest key of its algorithm (key-length
 * obfuscation: TDES 24, AES 32, HMAC 64 bytes) with random bytes unless the caller gives the
 * padding. Versions A, C (variant binding) and E are recognised and refused
 * (MPOS_ERR_UNSUPPORTED), as are asymmetric keys (algorithms E, R, S). Two proprietary
 * extensions (SM4 keys, raw EC private keys; version D only) exist as an explicit opt-in
 * through the *_ext functions at the end of this header; nothing else enables them.
 *
 * Header checks (both directions): printable ASCII; the length field equals the block's
 * length; a known key usage, algorithm and mode of use (X9.143:2021 6.3.1-6.3.3) in an
 * allowed combination (table in tr31_header.c; mode N goes with every usage); key version number
 * alphanumeric; exportability E, N or S; number of optional blocks two digits; key context 0, 1 or
 * 2 then '0'. Optional blocks: a defined ID (AL BI CT DA HM IK KC KP KS KV LB PB PK TC TS WP) or a
 * numeric (proprietary) one, each at most once; length as 2 uppercase hex digits, or "00" "02" and
 * 4 hex digits for a block longer than 255 characters (X9.143:2021 6.2, table 1); content of IK (16
 * hex), KS (16 or 20 hex), KC/KP ("00" + 2-3 byte legacy KCV or "01" + 2-5 byte CMAC KCV, hex),
 * TS/TC (UTC date-time YYYYMMDDhhmmss[cc]Z or YYYY-MM-DDThh:mm:ss[.cc]Z), HM (2 hex) checked; PB
 * only last, only as long as the padding needs, and the optional blocks together a whole number of
 * cipher blocks (8 characters for B, 16 for D). Hex inside a key block is uppercase only. A PB
 * block added by wrap is filled with '0' characters (the header is clear text: random filler would
 * hide nothing).
 *
 * Nothing here allocates: headers parse into a caller-allocated mpos_tr31_header.
 */
#ifndef MPOS_TR31_H
#define MPOS_TR31_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

#define MPOS_TR31_FIXED_HEADER_LEN 16   /* version .. key context */
#define MPOS_TR31_MAX_HEADER_LEN   1024 /* header with optional blocks, characters */
#define MPOS_TR31_MAX_OPT_BLOCKS   99   /* the two-digit count field */
#define MPOS_TR31_MAX_KEY_LEN      64   /* HMAC; TDES 24, AES 32, DES 8 */
#define MPOS_TR31_MAX_PAYLOAD_LEN  80   /* 2-byte length + 64-byte key, to whole AES blocks */
#define MPOS_TR31_MAX_MAC_LEN      16
/* Longest key block handled (the format's own limit is 9999). */
#define MPOS_TR31_MAX_BLOCK_LEN                                                                    \
    (MPOS_TR31_MAX_HEADER_LEN + 2 * MPOS_TR31_MAX_PAYLOAD_LEN + 2 * MPOS_TR31_MAX_MAC_LEN)

/* What mpos_tr31_header_parse() is given. */
enum mpos_tr31_parse {
    MPOS_TR31_PARSE_BLOCK = 0,   /* a whole key block: the length field must equal its length,
                                    the optional blocks must be padded to whole cipher blocks */
    MPOS_TR31_PARSE_TEMPLATE = 1 /* exactly a header for wrap: the length field is not read;
                                    a missing PB is allowed (wrap adds it) */
};

/* One optional block: its data is hdr->text[offset .. offset + len). */
struct mpos_tr31_opt_block {
    char id[3];      /* two characters, NUL-terminated */
    uint16_t offset; /* first data character in mpos_tr31_header.text */
    uint16_t len;    /* data characters (without ID and length fields) */
};

/* A parsed header. Text fields are NUL-terminated copies of the header's characters. */
typedef struct mpos_tr31_header {
    char version;        /* 'B' or 'D' */
    size_t block_len;    /* the length field (PARSE_BLOCK), 0 for a template */
    char key_usage[3];   /* e.g. "P0" */
    char algorithm;      /* 'A' AES, 'D' DES, 'T' TDES, 'H' HMAC, 'E' 'R' 'S' asymmetric;
                            '4' SM4 (MPOS_TR31_EXT_SM4 only) */
    char mode_of_use;    /* B C D E G N S T V X Y */
    char key_version[3]; /* "00" none, "cN" component N, else the version */
    char exportability;  /* 'E', 'N' or 'S' */
    char key_context;    /* X9.143:2021 6.2: '0' any, '1' storage, '2' exchange */
    size_t num_opt_blocks;
    struct mpos_tr31_opt_block opt[MPOS_TR31_MAX_OPT_BLOCKS];
    size_t len;      /* header characters: 16 + the optional blocks */
    const char *why; /* on error: a fixed description of the first check that failed */
    char text[MPOS_TR31_MAX_HEADER_LEN + 1];
} mpos_tr31_header;

/* Parses and validates the header at the start of text (text_len characters: the whole key
 * block for PARSE_BLOCK, exactly the header for PARSE_TEMPLATE). hdr->why names the failed
 * check. MPOS_ERR_FORMAT (syntax, unknown code), MPOS_ERR_USAGE (usage/algorithm/mode
 * combination not allowed), MPOS_ERR_LENGTH (length field, truncation, too long),
 * MPOS_ERR_UNSUPPORTED (version A, C, E or proprietary). */
int mpos_tr31_header_parse(const char *text, size_t text_len, enum mpos_tr31_parse mode,
                           mpos_tr31_header *hdr) MPOS_MUST_CHECK;

/* The optional block with this two-character ID, or NULL. */
const struct mpos_tr31_opt_block *mpos_tr31_header_find(const mpos_tr31_header *hdr,
                                                        const char *id);

/* 1 if key_len is a key length the algorithm takes inside a key block: 'T' 16 or 24, 'A' 16,
 * 24 or 32, 'D' 8, 'H' 16 to 64; else 0. */
int mpos_tr31_key_len_valid(char algorithm, size_t key_len);

/* Wraps key under kbpk. header (header_len characters) is a template: its length field is
 * ignored and recomputed, a PB block is added when the optional blocks need padding.
 * padding NULL: the key is padded with random bytes to the longest key of its algorithm;
 * otherwise exactly padding_len given bytes are used (2 + key_len + padding_len must be a
 * whole number of cipher blocks and at most the obfuscated length). Writes the key block
 * and a NUL to block (block_cap bytes) and its length to *block_len.
 * MPOS_ERR_KEY: KBPK length not allowed for the version, or key length not allowed for the
 * header's algorithm; MPOS_ERR_LENGTH: padding or output length; header errors as
 * mpos_tr31_header_parse(). */
int mpos_tr31_wrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len, const char *header,
                   size_t header_len, const uint8_t *key, size_t key_len, const uint8_t *padding,
                   size_t padding_len, char *block, size_t block_cap,
                   size_t *block_len) MPOS_MUST_CHECK;

/* Unwraps the key block (block_len characters) with kbpk: validates the header, decrypts the
 * key data into a private buffer, verifies the MAC in constant time, and only then reads the
 * key length field and releases the key into key (key_cap bytes; MPOS_TR31_MAX_KEY_LEN is
 * always enough), its length in *key_len. hdr (may be NULL) receives the parsed header.
 * Any failure overwrites key[0..key_cap) and sets *key_len to 0: MPOS_ERR_VERIFY (MAC: wrong
 * KBPK or a changed block), MPOS_ERR_DECODE (key length field or padding not allowed),
 * MPOS_ERR_KEY (KBPK length not allowed for the version), MPOS_ERR_FORMAT/LENGTH (syntax),
 * MPOS_ERR_UNSUPPORTED. */
int mpos_tr31_unwrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len, const char *block,
                     size_t block_len, mpos_tr31_header *hdr, uint8_t *key, size_t key_cap,
                     size_t *key_len) MPOS_MUST_CHECK;

/* ---- Proprietary extensions (explicit opt-in) ----
 *
 * The functions above are strict ANSI X9.143 and always stay so. Each function below takes the
 * arguments of its strict counterpart followed by flags, an OR of MPOS_TR31_EXT_* (other bits:
 * MPOS_ERR_ARG); with flags 0 it behaves exactly as its strict counterpart. An extension admits
 * one more key algorithm, in version D key blocks only (version B: wrap and unwrap refuse it,
 * MPOS_ERR_UNSUPPORTED). The construction is unchanged (X9.143:2021 7.3: KBEK/KBAK derived from
 * the KBPK, CMAC over header || clear key data, CBC with the MAC as IV), as are the header
 * checks; only the algorithm code and the key it carries are proprietary. Such a block is not
 * interoperable: a peer opens it only with the same extension enabled, and a strict reader
 * refuses it ('4': MPOS_ERR_FORMAT, unknown algorithm; 'E': MPOS_ERR_UNSUPPORTED).
 *
 * MPOS_TR31_EXT_SM4: algorithm MPOS_TR31_ALG_SM4 ('4'; X9.143:2021 6.3.2 reserves numeric
 * algorithm codes for proprietary use and defines none for SM4) is an SM4 key (GB/T 32907), 16
 * bytes, the only SM4 key length, so key-length obfuscation adds no padding beyond whole blocks:
 * the clear key data is 2 + 16 + 14 = 32 bytes. '4' goes with every key usage that takes 'A'
 * (SM4, like AES, is a 128-bit block cipher) and with M1 (UnionPay MAC keys, beside 'T' and
 * 'D'), with the modes of use of the usage (table in tr31_header.c).
 *
 * MPOS_TR31_EXT_EC_RAW: algorithm 'E' carries an EC private key as its raw 32-byte scalar
 * (P-256 or SM2, big-endian), not the DER structure an X9.143 interchange block holds: a storage
 * format, for key blocks under a key the holder never shares. Exactly 32 bytes, so again no
 * padding beyond whole blocks: the clear key data is 2 + 32 + 14 = 48 bytes. The key usages and
 * modes X9.143 allows for 'E' (D1, K3, S0, S1, S2). */
#define MPOS_TR31_EXT_SM4    0x01u
#define MPOS_TR31_EXT_EC_RAW 0x02u
#define MPOS_TR31_EXT_ALL    (MPOS_TR31_EXT_SM4 | MPOS_TR31_EXT_EC_RAW)
#define MPOS_TR31_ALG_SM4    '4'

/* mpos_tr31_header_parse with extensions: MPOS_TR31_EXT_SM4 makes '4' a known algorithm. */
int mpos_tr31_header_parse_ext(const char *text, size_t text_len, enum mpos_tr31_parse mode,
                               mpos_tr31_header *hdr, unsigned flags) MPOS_MUST_CHECK;

/* mpos_tr31_key_len_valid with extensions: also '4' 16 (MPOS_TR31_EXT_SM4) and 'E' 32
 * (MPOS_TR31_EXT_EC_RAW); 0 for any flag bit outside MPOS_TR31_EXT_ALL. */
int mpos_tr31_key_len_valid_ext(char algorithm, size_t key_len, unsigned flags);

/* mpos_tr31_wrap with extensions (same arguments, errors and output). */
int mpos_tr31_wrap_ext(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len,
                       const char *header, size_t header_len, const uint8_t *key, size_t key_len,
                       const uint8_t *padding, size_t padding_len, char *block, size_t block_cap,
                       size_t *block_len, unsigned flags) MPOS_MUST_CHECK;

/* mpos_tr31_unwrap with extensions (same arguments, errors and output). */
int mpos_tr31_unwrap_ext(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len,
                         const char *block, size_t block_len, mpos_tr31_header *hdr, uint8_t *key,
                         size_t key_cap, size_t *key_len, unsigned flags) MPOS_MUST_CHECK;

#endif
