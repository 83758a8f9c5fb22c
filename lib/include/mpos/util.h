/* openmpos: small helpers every module uses: secure wipe, constant-time compare, hex, digits. */
#ifndef MPOS_UTIL_H
#define MPOS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

/* Overwrites len bytes at p with zeros in a way the compiler may not remove. */
void mpos_cleanse(void *p, size_t len);

#define MPOS_WIPE_BUFFER(buf) mpos_cleanse((buf), sizeof(buf))
#define MPOS_WIPE_CTX(ptr)    mpos_cleanse((ptr), sizeof(*(ptr)))

/* 1 if a and b hold the same len bytes, else 0. Time depends only on len. */
int mpos_ct_equal(const void *a, const void *b, size_t len);

/* Constant-time selection helpers on bytes (no branch on the secret condition). */
uint8_t mpos_ct_byte_is_zero(uint8_t x); /* 0xFF if x == 0 else 0x00 */

/* XOR len bytes of b into a. */
void mpos_xor(uint8_t *a, const uint8_t *b, size_t len);

/* Decodes hex (either case, even number of digits) into out. The length decoded is stored in
 * *out_len. MPOS_ERR_FORMAT for a non-hex character or odd length, MPOS_ERR_LENGTH when it
 * does not fit in out_cap bytes. */
int mpos_hex_decode(const char *hex, uint8_t *out, size_t out_cap, size_t *out_len) MPOS_MUST_CHECK;

/* Encodes len bytes as uppercase hex into out (2*len + 1 bytes, NUL-terminated). */
void mpos_hex_encode(const uint8_t *in, size_t len, char *out);

/* 1 if s has between min and max characters, all '0'..'9'. */
int mpos_digits_valid(const char *s, size_t min, size_t max);

/* Sets each byte of a DES key to odd parity. */
void mpos_des_set_odd_parity(uint8_t *key, size_t len);

/* Stores and loads big-endian integers. */
void mpos_store_be16(uint8_t *p, uint16_t v);
void mpos_store_be32(uint8_t *p, uint32_t v);
uint16_t mpos_load_be16(const uint8_t *p);
uint32_t mpos_load_be32(const uint8_t *p);

/* Number of one-bits in v. */
unsigned mpos_popcount32(uint32_t v);

#endif
