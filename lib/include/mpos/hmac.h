/* openmpos: HMAC-SHA-256 of the crypto facade.
 *
 * For keyed hashes that a standard or our own design fixes as HMAC (the PAN hash of
 * mpos-hsmd, docs/hsm-design.md). Not a payment MAC: those are in mpos/mac.h and mpos_cmac().
 *
 * Like mpos/hash.h this goes through libcrypto's one-shot EVP_Q_mac, which allocates inside
 * each call; it serves server-side work (hsmd), not the per-transaction paths of the terminal.
 */
#ifndef MPOS_HMAC_H
#define MPOS_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_HMAC_SHA256_LEN  32
#define MPOS_HMAC_MIN_KEY_LEN 16 /* shortest key taken (128 bits) */
#define MPOS_HMAC_MAX_KEY_LEN 64 /* one SHA-256 block: longer keys would be hashed first */

/* HMAC-SHA-256 (RFC 2104, FIPS 198-1) of len bytes at data (NULL allowed when len is 0) under
 * a key of MPOS_HMAC_MIN_KEY_LEN to MPOS_HMAC_MAX_KEY_LEN bytes, into mac.
 * MPOS_ERR_ARG for a NULL pointer, MPOS_ERR_KEY for a key length out of range,
 * MPOS_ERR_CRYPTO if libcrypto fails; mac is zeroed on every error. */
int mpos_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                     uint8_t mac[MPOS_HMAC_SHA256_LEN]) MPOS_MUST_CHECK;

#endif
