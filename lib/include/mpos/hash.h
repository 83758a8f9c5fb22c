/* openmpos: message digests of the crypto facade.
 *
 * Only what a payment standard fixes as a data digest: SHA-1 over PAN || PSN in EMV 4.3 Book 2
 * A1.4.2 (ICC master key derivation option B). Never for signatures or MACs.
 *
 * Unlike the block ciphers of mpos/crypto.h this goes through libcrypto's one-shot digest,
 * which allocates a digest context inside each call (OpenSSL 3 frees and re-creates the
 * provider context even on a reused EVP_MD_CTX). It serves issuer-side and personalisation
 * work (option B derivation), not the per-transaction paths of the terminal core.
 */
#ifndef MPOS_HASH_H
#define MPOS_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_SHA1_LEN 20

/* SHA-1 (FIPS 180-4) of len bytes at data (NULL allowed when len is 0) into digest.
 * MPOS_ERR_ARG for a NULL pointer, MPOS_ERR_CRYPTO if libcrypto fails (digest then zeroed). */
int mpos_sha1(const uint8_t *data, size_t len, uint8_t digest[MPOS_SHA1_LEN]) MPOS_MUST_CHECK;

#endif
