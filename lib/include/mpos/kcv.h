/* openmpos: key check values.
 *
 * Legacy method: encrypt one all-zero block under the key (ECB) and keep the leftmost bytes.
 * CMAC method (ANSI X9.24-1:2017 A.3, the KCV of TR-31 / X9.143 key blocks): the NIST
 * SP 800-38B CMAC of one all-zero block of the cipher's block length (8 bytes for TDES,
 * 16 for AES and SM4), leftmost bytes. CMAC of the empty message is a different value and
 * is not a KCV.
 *
 * A check value identifies a key; it does not authenticate anything. TDES keys of 8 bytes
 * (single length, the UnionPay MAK) are used as K|K.
 */
#ifndef MPOS_KCV_H
#define MPOS_KCV_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

enum mpos_kcv_method {
    MPOS_KCV_LEGACY = 1, /* E(K, zero block) */
    MPOS_KCV_CMAC = 2    /* CMAC(K, zero block), ANSI X9.24-1:2017 A.3 */
};

#define MPOS_KCV_MAX_LEN            MPOS_MAX_BLOCK_LEN /* a KCV is at most one block */
#define MPOS_KCV_LEGACY_DEFAULT_LEN 3                  /* six hex digits */
#define MPOS_KCV_CMAC_DEFAULT_LEN   5                  /* ten hex digits (X9.24-1:2017 A.3) */

/* The usual method for a cipher: CMAC for AES, legacy for TDES and SM4. */
enum mpos_kcv_method mpos_kcv_default_method(enum mpos_cipher cipher);

/* The usual KCV length of a method in bytes (3 legacy, 5 CMAC); 0 for an unknown method. */
size_t mpos_kcv_default_len(enum mpos_kcv_method method);

/* Computes the leftmost kcv_len bytes (1 to the cipher's block length) of the check value of
 * key. MPOS_ERR_KEY for a key length the cipher does not take, MPOS_ERR_LENGTH for kcv_len out
 * of range, MPOS_ERR_ARG for an unknown cipher or method. On error the kcv_len bytes of kcv
 * are zeroed (when kcv_len is at most MPOS_KCV_MAX_LEN). */
int mpos_kcv_compute(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                     const uint8_t *key, size_t key_len, uint8_t *kcv,
                     size_t kcv_len) MPOS_MUST_CHECK;

/* Checks key against an expected check value prefix of expected_len bytes (1 to the block
 * length) in constant time. 0 when it matches, MPOS_ERR_VERIFY when it does not; the errors
 * of mpos_kcv_compute otherwise. The computed value never leaves the function. */
int mpos_kcv_verify(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                    const uint8_t *key, size_t key_len, const uint8_t *expected,
                    size_t expected_len) MPOS_MUST_CHECK;

#endif
