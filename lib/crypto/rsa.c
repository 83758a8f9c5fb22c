/* openmpos: raw RSA public operation of the crypto facade (mpos/rsa.h), on libcrypto.
 *
 * RSA itself: PKCS #1 v2.2 (RFC 8017) 5.1.1 RSAEP, c = m ^ e mod n, with the m < n check.
 * The modular exponentiation is libcrypto's (BN_mod_exp over a BN_CTX); a device port swaps
 * this file for its crypto unit or mbedTLS's mbedtls_mpi_exp_mod. Only public data passes
 * here (EMV certificate recovery and offline PIN encipherment), so timing is not a concern.
 */
#include <openssl/bn.h>

#include "mpos/rsa.h"
#include "mpos/util.h"

int mpos_rsa_public(const uint8_t *mod, size_t mod_len, const uint8_t *exp, size_t exp_len,
                    const uint8_t *in, size_t in_len, uint8_t *out)
{
    BN_CTX *bn = NULL;
    BIGNUM *n = NULL, *e = NULL, *x = NULL, *y = NULL;
    int r = MPOS_OK;
    if (mod == NULL || exp == NULL || in == NULL || out == NULL) {
        r = MPOS_ERR_ARG;
        goto exit;
    }
    /* An odd modulus above 1 with no leading zero byte, a small exponent of at least 1. */
    if (mod_len == 0 || mod_len > MPOS_RSA_MAX_MOD_LEN || mod[0] == 0 ||
        (mod[mod_len - 1] & 1u) == 0 || (mod_len == 1 && mod[0] == 1)) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    uint32_t ev = 0;
    if (exp_len == 0 || exp_len > MPOS_RSA_MAX_EXP_LEN) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    for (size_t i = 0; i < exp_len; i++) {
        ev = (ev << 8) | exp[i];
    }
    if (ev == 0) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    if (in_len != mod_len) {
        r = MPOS_ERR_LENGTH;
        goto exit;
    }
    bn = BN_CTX_new();
    n = BN_bin2bn(mod, (int)mod_len, NULL);
    e = BN_bin2bn(exp, (int)exp_len, NULL);
    x = BN_bin2bn(in, (int)in_len, NULL);
    y = BN_new();
    if (bn == NULL || n == NULL || e == NULL || x == NULL || y == NULL) {
        r = MPOS_ERR_CRYPTO;
        goto exit;
    }
    /* RFC 8017 5.1.1 step 1: the message representative must be below n. */
    if (BN_cmp(x, n) >= 0) {
        r = MPOS_ERR_FORMAT;
        goto exit;
    }
    if (BN_mod_exp(y, x, e, n, bn) != 1 || BN_bn2binpad(y, out, (int)mod_len) != (int)mod_len) {
        r = MPOS_ERR_CRYPTO;
        goto exit;
    }
exit:
    if (r != MPOS_OK && out != NULL && mod_len <= MPOS_RSA_MAX_MOD_LEN) {
        mpos_cleanse(out, mod_len);
    }
    BN_clear_free(x);
    BN_clear_free(y);
    BN_free(n);
    BN_free(e);
    BN_CTX_free(bn);
    return r;
}
