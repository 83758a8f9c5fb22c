/* openmpos: ISO 9564-1:2017 PIN blocks, formats 0, 1, 3 (8-byte, TDES) and 4 (16-byte, AES, or
 * SM4 as the national-algorithm option).
 *
 * Two layers:
 * - pure encode/decode of the PIN field, the PAN field and the clear PIN block: no crypto, no
 *   random numbers, so they can be unit-tested and fuzzed alone;
 * - mpos_pin_block_encrypt / mpos_pin_block_decrypt through mpos/crypto.h.
 *
 * Strings: a PIN is 4 to 12 ASCII digits, a PAN 12 to 19 ASCII digits (no Luhn check: the
 * issuer's check digit is data), both NUL-terminated. A decoded PIN is written to a caller
 * buffer of MPOS_PIN_BUF_LEN bytes as a NUL-terminated string, every byte after the PIN zero.
 *
 * Fill: an explicit fill is given as nibbles, one per byte (values 0x0-0xF), in the order they
 * appear in the PIN field:
 * - format 0: no fill is taken (fill NULL, fill_len 0); the fill is always F;
 * - format 1: 14 - PIN length nibbles, any value;
 * - format 3: 14 - PIN length nibbles, each 0xA-0xF;
 * - format 4: 16 nibbles, the 8-byte random second half of the PIN field.
 * The first half of a format 4 PIN field is always filled with A.
 *
 * The clear PIN block: formats 0 and 3 = PIN field XOR PAN field; format 1 = PIN field;
 * format 4 = its 16-byte plaintext PIN field (format 4 binds the PAN between its two
 * encipherments, ISO 9564-1:2017 9.4.2.3, so it has no clear PIN-XOR-PAN block).
 *
 * Decoding is strict: control nibble equal to the format, PIN length N in 4..12, N digits
 * 0-9, then fill F (format 0), A-F (format 3), any (format 1), A up to the end of the first
 * half (format 4). Every check on the content is accumulated without branching on the data
 * and reported as one MPOS_ERR_DECODE, so a caller cannot learn which check failed; on that
 * error pin_out is all zeros.
 */
#ifndef MPOS_PIN_H
#define MPOS_PIN_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

enum mpos_pin_format {
    MPOS_PIN_FORMAT_0 = 0, /* ISO 9564-1 format 0 (ANSI X9.8): PIN XOR PAN, fill F */
    MPOS_PIN_FORMAT_1 = 1, /* format 1: no PAN, fill any nibble (transaction field) */
    MPOS_PIN_FORMAT_3 = 3, /* format 3: PIN XOR PAN, fill A-F */
    MPOS_PIN_FORMAT_4 = 4  /* format 4: 128-bit block cipher, PAN field between encipherments */
};

#define MPOS_PIN_MIN_LEN       4
#define MPOS_PIN_MAX_LEN       12
#define MPOS_PIN_BUF_LEN       (MPOS_PIN_MAX_LEN + 1) /* size of every pin_out (digits + NUL) */
#define MPOS_PIN_PAN_MIN_LEN   12
#define MPOS_PIN_PAN_MAX_LEN   19
#define MPOS_PIN_BLOCK_LEN     8  /* formats 0, 1, 3 */
#define MPOS_PIN_BLOCK4_LEN    16 /* format 4 */
#define MPOS_PIN_BLOCK_MAX_LEN 16 /* size of every block, field and block_out buffer */
#define MPOS_PIN_FILL_MAX_LEN  16 /* nibbles; size of fill_out of mpos_pin_fill_random */

/* Block length of a format: 8 (formats 0, 1, 3), 16 (format 4), 0 for any other value. */
size_t mpos_pin_block_len(enum mpos_pin_format format);

/* Number of fill nibbles the format takes for a PIN of pin_len digits: 14 - pin_len (formats 1
 * and 3), 16 (format 4), 0 (format 0, or a format or PIN length that is not valid). */
size_t mpos_pin_fill_len(enum mpos_pin_format format, size_t pin_len);

/* 1 if the NUL-terminated pin is 4 to 12 digits, else 0. */
int mpos_pin_valid(const char *pin);

/* 1 if the NUL-terminated pan is 12 to 19 digits, else 0. */
int mpos_pin_pan_valid(const char *pan);

/* Whether the format may be enciphered with cipher under a key of key_len bytes: formats 0, 1,
 * 3 take TDES with a 16 or 24-byte key; format 4 takes AES (16, 24, 32) or SM4 (16).
 * MPOS_OK; MPOS_ERR_ARG for an unknown format or cipher or a cipher the format does not take;
 * MPOS_ERR_KEY for a key length the cipher or the format does not take. */
int mpos_pin_cipher_check(enum mpos_pin_format format, enum mpos_cipher cipher,
                          size_t key_len) MPOS_MUST_CHECK;

/* Draws a random fill for a PIN of pin_len digits from mpos_random_bytes: format 1 uniform
 * nibbles 0-F, format 3 uniform nibbles A-F (rejection sampling, no bias), format 4 8 random
 * bytes (16 nibbles); format 0 gives *fill_len 0. MPOS_ERR_PIN for pin_len outside 4..12,
 * MPOS_ERR_RNG when the generator fails (fill_out is then zeros). */
int mpos_pin_fill_random(enum mpos_pin_format format, size_t pin_len,
                         uint8_t fill_out[MPOS_PIN_FILL_MAX_LEN], size_t *fill_len) MPOS_MUST_CHECK;

/* ISO 9564-1:2017 9.3.2.2, 9.3.3, 9.3.5.2, 9.4.2.2.2: the plaintext PIN field (8 bytes, or 16
 * for format 4) of pin with the explicit fill (see above; fill is required for formats 1, 3
 * and 4, and must be NULL with fill_len 0 for format 0). Errors: MPOS_ERR_PIN (pin),
 * MPOS_ERR_LENGTH (fill_len), MPOS_ERR_FORMAT (a fill nibble out of range), MPOS_ERR_ARG. */
int mpos_pin_field_encode(enum mpos_pin_format format, const char *pin, const uint8_t *fill,
                          size_t fill_len, uint8_t field_out[MPOS_PIN_BLOCK_MAX_LEN],
                          size_t *field_len) MPOS_MUST_CHECK;

/* Decodes and strictly validates a plaintext PIN field (field_len must be the format's block
 * length, else MPOS_ERR_LENGTH). MPOS_ERR_DECODE for any content error, pin_out then zeros. */
int mpos_pin_field_decode(enum mpos_pin_format format, const uint8_t *field, size_t field_len,
                          char pin_out[MPOS_PIN_BUF_LEN]) MPOS_MUST_CHECK;

/* ISO 9564-1:2017 9.3.2.3, 9.3.5.3 (formats 0 and 3, 8 bytes: 0000 then the rightmost 12 PAN
 * digits excluding the check digit) and 9.4.2.2.3 (format 4, 16 bytes: M = PAN length - 12,
 * the PAN, zeros). MPOS_ERR_PAN for a PAN that is not 12 to 19 digits; MPOS_ERR_ARG for
 * format 1, which has no PAN field. */
int mpos_pin_pan_field_encode(enum mpos_pin_format format, const char *pan,
                              uint8_t field_out[MPOS_PIN_BLOCK_MAX_LEN],
                              size_t *field_len) MPOS_MUST_CHECK;

/* The clear PIN block (see above) of pin, pan and the explicit fill. pan is used by formats 0
 * and 3 only (it may be NULL for formats 1 and 4). Errors as the two encoders above. */
int mpos_pin_clear_block_encode(enum mpos_pin_format format, const char *pin, const char *pan,
                                const uint8_t *fill, size_t fill_len,
                                uint8_t block_out[MPOS_PIN_BLOCK_MAX_LEN],
                                size_t *block_len) MPOS_MUST_CHECK;

/* Decodes and strictly validates a clear PIN block. pan is used by formats 0 and 3 only
 * (MPOS_ERR_PAN when it is not valid there). MPOS_ERR_LENGTH for a block_len that is not the
 * format's; MPOS_ERR_DECODE for any content error, pin_out then zeros. */
int mpos_pin_clear_block_decode(enum mpos_pin_format format, const uint8_t *block, size_t block_len,
                                const char *pan, char pin_out[MPOS_PIN_BUF_LEN]) MPOS_MUST_CHECK;

/* Encrypts pin into a PIN block of the format (8 or 16 bytes, stored in *block_len) under key.
 * Formats 0, 1, 3: E(K, clear block) with TDES (ISO 9564-1:2017 9.3). Format 4:
 * E(K, E(K, PIN field) XOR PAN field) with AES or SM4 (9.4.2.3). pan is ignored (may be NULL)
 * for format 1. fill NULL draws the fill from mpos_random_bytes; otherwise the explicit fill
 * (for tests and for a format 1 transaction field). Errors: MPOS_ERR_ARG / MPOS_ERR_KEY
 * (mpos_pin_cipher_check), MPOS_ERR_PIN, MPOS_ERR_PAN, fill errors as mpos_pin_field_encode,
 * MPOS_ERR_RNG, MPOS_ERR_CRYPTO; on error block_out is zeros and *block_len 0. */
int mpos_pin_block_encrypt(mpos_crypto_ctx *cc, enum mpos_pin_format format,
                           enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
                           const char *pin, const char *pan, const uint8_t *fill, size_t fill_len,
                           uint8_t block_out[MPOS_PIN_BLOCK_MAX_LEN],
                           size_t *block_len) MPOS_MUST_CHECK;

/* Decrypts a PIN block and writes its PIN to pin_out. Argument errors come first and do not
 * depend on the key or the block's content: MPOS_ERR_ARG / MPOS_ERR_KEY, MPOS_ERR_LENGTH (block
 * length not the format's), MPOS_ERR_PAN (formats 0, 3, 4; pan ignored for format 1),
 * MPOS_ERR_CRYPTO. A decrypted block that does not decode is MPOS_ERR_DECODE, whatever the
 * reason (wrong key, wrong PAN, tampered block); pin_out is all zeros on every error. */
int mpos_pin_block_decrypt(mpos_crypto_ctx *cc, enum mpos_pin_format format,
                           enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
                           const uint8_t *block, size_t block_len, const char *pan,
                           char pin_out[MPOS_PIN_BUF_LEN]) MPOS_MUST_CHECK;

#endif
