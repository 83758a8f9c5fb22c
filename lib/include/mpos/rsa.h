/* openmpos: the RSA public-key operation of the crypto facade, raw (no padding).
 *
 * What EMV needs from RSA on the terminal side (EMV 4.3 Book 2): recovering the Issuer and
 * ICC PIN Encipherment Public Key Certificates (5.3, 7.1; the padding and hash checks are the
 * caller's, since EMV uses its own format, not PKCS#1), and enciphering an offline PIN block
 * under the ICC PIN Encipherment Public Key (7.2). Both are out = in ^ e mod n on public data.
 *
 * Through the facade like every primitive: libcrypto's BN_mod_exp on Linux; a device port
 * swaps lib/crypto/rsa.c for its crypto unit (or mbedTLS's mbedtls_mpi_exp_mod). Only public
 * data passes here, so variable time is fine; never use it with a private exponent. libcrypto
 * allocates its big numbers inside the call (like mpos_sha1): on the terminal this runs once
 * per offline enciphered PIN.
 */
#ifndef MPOS_RSA_H
#define MPOS_RSA_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_RSA_MAX_MOD_LEN 256 /* 2048 bits; EMV CA keys go up to 1984 bits (248 bytes) */
#define MPOS_RSA_MAX_EXP_LEN 4   /* EMV exponents are 3 and 2^16 + 1 (Book 2 5.1, 6.1) */

/* out = in ^ exp mod mod, all big-endian byte strings. mod: mod_len bytes (1 to
 * MPOS_RSA_MAX_MOD_LEN), odd, greater than 1, first byte nonzero. exp: 1 to
 * MPOS_RSA_MAX_EXP_LEN bytes, value at least 1. in: exactly mod_len bytes, value below mod.
 * out: mod_len bytes (may be in). Errors: MPOS_ERR_ARG for NULL pointers, MPOS_ERR_KEY for a
 * modulus or exponent outside the above, MPOS_ERR_LENGTH for in_len != mod_len,
 * MPOS_ERR_FORMAT for in >= mod (for a certificate: not a valid RSA value, Book 2 5.3 step 1).
 * On error out (when not NULL) is zeroed. */
int mpos_rsa_public(const uint8_t *mod, size_t mod_len, const uint8_t *exp, size_t exp_len,
                    const uint8_t *in, size_t in_len, uint8_t *out) MPOS_MUST_CHECK;

#endif
