/* openmpos: elliptic-curve operations, HKDF and SHA-256 of the crypto facade.
 *
 * What terminal provisioning needs (docs/provisioning.md): NIST P-256 (FIPS 186-5, SEC 2
 * secp256r1) key pairs, ECDH, ECDSA with SHA-256, HKDF-SHA-256 (RFC 5869) and SHA-256 for
 * certificate fingerprints. Keys are plain byte strings so that the terminal core never sees
 * a provider type:
 *   private key  the scalar d, 32 bytes big-endian, 1 <= d <= n - 1
 *   public key   the uncompressed point 04 || X || Y, 65 bytes (SEC 1 v2 2.3.3); compressed
 *                points and the point at infinity are refused
 *   signature    raw r || s, 32 bytes each big-endian (not DER; a DER ECDSA-Sig-Value must be
 *                converted by the caller, as lib/provision does for X.509)
 *   ECDH secret  the x-coordinate of d * Q, 32 bytes (SEC 1 v2 3.3.1; no hashing)
 *
 * On Linux this is OpenSSL 3's libcrypto (never hand-rolled EC arithmetic). Unlike the block
 * ciphers of mpos/crypto.h, every function here allocates inside libcrypto on each call: they
 * serve provisioning and activation, not the per-transaction paths. No context, thread-safe.
 *
 * Every function returns 0 or a negative enum mpos_err: MPOS_ERR_ARG for a NULL pointer,
 * MPOS_ERR_KEY for a private scalar out of range or a public key that is not a point of the
 * curve, MPOS_ERR_LENGTH for a length the function does not take, MPOS_ERR_VERIFY for a
 * signature that does not verify, MPOS_ERR_CRYPTO when libcrypto fails, MPOS_ERR_RNG when the
 * random generator fails. On error every output that would hold a key, secret or signature is
 * zeroed.
 */
#ifndef MPOS_ECC_H
#define MPOS_ECC_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_EC_P256_PRIV_LEN    32 /* private scalar */
#define MPOS_EC_P256_PUB_LEN     65 /* 04 || X || Y */
#define MPOS_ECDH_P256_LEN       32 /* shared secret: x-coordinate */
#define MPOS_ECDSA_P256_SIG_LEN  64 /* r || s */
#define MPOS_SHA256_LEN          32
#define MPOS_HKDF_SHA256_MAX_LEN (255 * MPOS_SHA256_LEN) /* RFC 5869 2.3: L <= 255 * HashLen */
#define MPOS_HKDF_MAX_INFO_LEN   1024 /* longest info taken (libcrypto's own limit) */

/* A fresh P-256 key pair from the provider's DRBG (FIPS 186-5 A.2.2 key generation). */
int mpos_ec_p256_generate(uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                          uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* The public key Q = d * G of a private scalar. */
int mpos_ec_p256_public(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                        uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* 0 if pub is an uncompressed point of P-256 (SEC 1 v2 3.2.2.1 partial validation: on the
 * curve, not infinity; the cofactor is 1), else MPOS_ERR_KEY. */
int mpos_ec_p256_check_public(const uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* ECDH (SEC 1 v2 3.3.1, NIST SP 800-56A r3 5.7.1.2 with cofactor 1): the x-coordinate of
 * priv * peer_pub. The peer's point is validated first (MPOS_ERR_KEY). */
int mpos_ecdh_p256(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                   const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                   uint8_t shared[MPOS_ECDH_P256_LEN]) MPOS_MUST_CHECK;

/* ECDSA (FIPS 186-5 6.4.1) over SHA-256(msg) with a random per-message secret k; raw r || s.
 * msg may be NULL when len is 0. */
int mpos_ecdsa_p256_sign(const uint8_t priv[MPOS_EC_P256_PRIV_LEN], const uint8_t *msg, size_t len,
                         uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]) MPOS_MUST_CHECK;

/* Verifies a raw r || s ECDSA signature (FIPS 186-5 6.4.2) over SHA-256(msg): 0 when it
 * verifies, MPOS_ERR_VERIFY when not (r or s zero or >= n included), MPOS_ERR_KEY for a public
 * key that is not a point of the curve. */
int mpos_ecdsa_p256_verify(const uint8_t pub[MPOS_EC_P256_PUB_LEN], const uint8_t *msg, size_t len,
                           const uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]) MPOS_MUST_CHECK;

/* HKDF with SHA-256 (RFC 5869 2.2 extract then 2.3 expand): okm_len (1 to
 * MPOS_HKDF_SHA256_MAX_LEN) bytes of output keying material. salt may be NULL or empty (RFC
 * 5869 2.2: then HashLen zero bytes), info NULL or empty, at most MPOS_HKDF_MAX_INFO_LEN bytes
 * (MPOS_ERR_LENGTH); ikm at least one byte (MPOS_ERR_KEY when empty). */
int mpos_hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                     const uint8_t *info, size_t info_len, uint8_t *okm,
                     size_t okm_len) MPOS_MUST_CHECK;

/* SHA-256 (FIPS 180-4 6.2) of len bytes at data (NULL allowed when len is 0): certificate
 * fingerprints. */
int mpos_sha256(const uint8_t *data, size_t len, uint8_t digest[MPOS_SHA256_LEN]) MPOS_MUST_CHECK;

#endif
