/* openmpos terminal core: the key store's record format (internal to terminal/core/keystore
 * and its tests).
 *
 * One slot of the HAL storage holds one record:
 *
 *   offset  length  field
 *   0       4       magic "MKSR"
 *   4       1       format version, 1
 *   5       1       record type (KS_TYPE_*): binds the record to its slot
 *   6       2       zero
 *   8       8       generation, big-endian: the slot's HAL monotonic counter once written
 *   16      4       body length in bytes, big-endian (1 .. KS_BODY_MAX)
 *   20      16      IV, random (HAL RNG)
 *   36      n       AES-256-CBC (NIST SP 800-38A 6.2) of the body, zero-padded to a whole
 *                   number of blocks (n = body length rounded up to 16)
 *   36 + n  16      AES-256-CMAC (NIST SP 800-38B) of bytes 0 .. 36 + n - 1
 *
 * Encrypt-then-MAC with two keys the HAL derives from the device storage key for the labels
 * KS_LABEL_ENC and KS_LABEL_MAC. A record is opened only after its length fields agree with
 * its size and its MAC verifies (constant-time compare); then the version, the type and the
 * zero padding are checked. The body layouts are keystore.c's.
 */
#ifndef MPOS_TERMINAL_KEYSTORE_RECORD_H
#define MPOS_TERMINAL_KEYSTORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"
#include "mpos/crypto.h"
#include "mpos/err.h"

#define KS_MAGIC_0    'M'
#define KS_MAGIC_1    'K'
#define KS_MAGIC_2    'S'
#define KS_MAGIC_3    'R'
#define KS_VERSION    1
#define KS_HDR_LEN    36
#define KS_IV_OFF     20
#define KS_IV_LEN     16
#define KS_MAC_LEN    16
#define KS_KEY_LEN    32 /* AES-256 for both keys */
#define KS_BODY_MAX   ((MPOS_HAL_SLOT_MAX - KS_HDR_LEN - KS_MAC_LEN) / 16 * 16)
#define KS_RECORD_MIN (KS_HDR_LEN + 16 + KS_MAC_LEN)

#define KS_TYPE_KEYS     1
#define KS_TYPE_REVERSAL 2
#define KS_TYPE_DEVICE   3

#define KS_LABEL_ENC "openmpos keystore v1 encryption"
#define KS_LABEL_MAC "openmpos keystore v1 authentication"

/* Length of the sealed record of a body of body_len bytes. */
static inline size_t ks_record_len(size_t body_len)
{
    return KS_HDR_LEN + (body_len + 15u) / 16u * 16u + KS_MAC_LEN;
}

static inline void ks_store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t ks_load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Seals in place: the body_len bytes at buf + KS_HDR_LEN become the record of type and
 * generation gen, ks_record_len(body_len) bytes (at most cap) at buf, its length in
 * *out_len. MPOS_ERR_LENGTH when the body is empty or too long; on error buf is wiped. */
int mpos_keystore_record_seal(mpos_crypto_ctx *cc, const uint8_t enc_key[KS_KEY_LEN],
                              const uint8_t mac_key[KS_KEY_LEN], const uint8_t iv[KS_IV_LEN],
                              unsigned type, uint64_t gen, uint8_t *buf, size_t cap,
                              size_t body_len, size_t *out_len) MPOS_MUST_CHECK;

/* Opens the len-byte record at buf in place: on success the body is the *body_len bytes at
 * buf + KS_HDR_LEN and its generation (at least 1) is in *gen. MPOS_ERR_FORMAT for a size or
 * magic that is not a record's, MPOS_ERR_VERIFY when the MAC does not verify,
 * MPOS_ERR_UNSUPPORTED for another version, MPOS_ERR_FORMAT for another type, a generation
 * of 0 or non-zero padding. On error buf is wiped. */
int mpos_keystore_record_open(mpos_crypto_ctx *cc, const uint8_t enc_key[KS_KEY_LEN],
                              const uint8_t mac_key[KS_KEY_LEN], unsigned type, uint8_t *buf,
                              size_t len, uint64_t *gen, size_t *body_len) MPOS_MUST_CHECK;

#endif
