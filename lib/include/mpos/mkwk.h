/* openmpos: the UnionPay master-key / working-key scheme.
 *
 * At sign-on the back end sends fresh working keys (PIK, MAK, TDK) encrypted under the
 * terminal master key (TMK) in ECB mode, each with a check value: the leftmost 4 (or up to 8)
 * bytes of the legacy KCV, i.e. the encryption of a zero block under the clear working key.
 *
 * - cipher MPOS_CIPHER_TDES: TMK of 16 bytes; working key of 16 bytes (double length) or
 *   8 bytes (single length, the traditional single-DES MAK; it is used as K|K).
 * - cipher MPOS_CIPHER_SM4: TMK of 16 bytes; working key of 16 bytes.
 *
 * The check value only detects a corrupted or mismatched key (a wrong TMK, a transmission
 * error, a key for another terminal); it is not a MAC. Whoever can write the sign-on response
 * can also write a matching check value, so the channel that carries it must be
 * authenticated elsewhere. DES parity bits are not checked and not changed: they do not
 * affect the KCV, and the key is returned exactly as it was encrypted.
 */
#ifndef MPOS_MKWK_H
#define MPOS_MKWK_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

#define MPOS_MKWK_TMK_LEN     16 /* terminal master key, TDES (2-key) or SM4 */
#define MPOS_MKWK_MAX_KEY_LEN 16 /* longest working key */
#define MPOS_MKWK_KCV_MIN_LEN 4  /* shortest check value compared */
#define MPOS_MKWK_KCV_MAX_LEN 8  /* longest check value compared */

/* 1 if a working key of key_len bytes is allowed under cipher (TDES 8 or 16, SM4 16). */
int mpos_mkwk_key_len_valid(enum mpos_cipher cipher, size_t key_len);

/* Decrypts the working key enc_key (key_len bytes, ECB under tmk) into key (key_len bytes)
 * and returns it only if its legacy check value starts with the kcv_len bytes of kcv
 * (MPOS_MKWK_KCV_MIN_LEN to MPOS_MKWK_KCV_MAX_LEN), compared in constant time.
 * MPOS_ERR_VERIFY on a mismatch; MPOS_ERR_KEY for a TMK or working key length the cipher does
 * not take; MPOS_ERR_LENGTH for kcv_len out of range; MPOS_ERR_ARG for a NULL pointer or an
 * unknown cipher. On every error the key_len bytes of key are wiped. key may not overlap
 * enc_key. */
int mpos_mkwk_unwrap(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *tmk,
                     size_t tmk_len, const uint8_t *enc_key, size_t key_len, const uint8_t *kcv,
                     size_t kcv_len, uint8_t *key) MPOS_MUST_CHECK;

/* The back end's direction: encrypts the working key key (key_len bytes) under tmk (ECB) into
 * enc_key (key_len bytes) and writes the leftmost kcv_len bytes (MPOS_MKWK_KCV_MIN_LEN to
 * MPOS_MKWK_KCV_MAX_LEN) of its legacy check value to kcv. Same errors as mpos_mkwk_unwrap
 * (no MPOS_ERR_VERIFY); on error enc_key and kcv are zeroed. */
int mpos_mkwk_wrap(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *tmk, size_t tmk_len,
                   const uint8_t *key, size_t key_len, uint8_t *enc_key, uint8_t *kcv,
                   size_t kcv_len) MPOS_MUST_CHECK;

#endif
