/* openmpos: HKDF-SHA-256 and SHA-256 of the crypto facade on OpenSSL 3's libcrypto
 * (mpos/ecc.h). */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "mpos/ecc.h"
#include "mpos/util.h"

int mpos_hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                     const uint8_t *info, size_t info_len, uint8_t *okm, size_t okm_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *ctx = NULL;
    OSSL_PARAM params[5];
    size_t n = 0;
    int rc = MPOS_ERR_ARG;
    if (okm == NULL) {
        return MPOS_ERR_ARG;
    }
    if ((salt == NULL && salt_len > 0) || (ikm == NULL && ikm_len > 0) ||
        (info == NULL && info_len > 0)) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    /* RFC 5869 2.3: L <= 255 * HashLen. */
    if (okm_len == 0 || okm_len > MPOS_HKDF_SHA256_MAX_LEN || info_len > MPOS_HKDF_MAX_INFO_LEN) {
        goto exit;
    }
    if (ikm_len == 0) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    /* RFC 5869 2.2: an absent salt is HashLen zero bytes, which HMAC pads an empty key to. */
    if (salt_len > 0) {
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    }
    if (info_len > 0) {
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    }
    params[n] = OSSL_PARAM_construct_end();
    rc = MPOS_ERR_CRYPTO;
    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    /* RFC 5869 2.2 PRK = HMAC-Hash(salt, IKM); 2.3 T(i) = HMAC-Hash(PRK, T(i-1) | info | i). */
    if (ctx == NULL || EVP_KDF_derive(ctx, okm, okm_len, params) != 1) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    EVP_KDF_CTX_free(ctx); /* clears the context's copy of the key */
    EVP_KDF_free(kdf);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        if (okm_len <= MPOS_HKDF_SHA256_MAX_LEN) {
            mpos_cleanse(okm, okm_len);
        }
    }
    return rc;
}

int mpos_sha256(const uint8_t *data, size_t len, uint8_t digest[MPOS_SHA256_LEN])
{
    static const uint8_t empty[1] = {0};
    unsigned int out_len = 0;
    if (digest == NULL || (data == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    /* FIPS 180-4 6.2: one-shot digest through the default provider. */
    if (EVP_Digest(data != NULL ? data : empty, len, digest, &out_len, EVP_sha256(), NULL) != 1 ||
        out_len != MPOS_SHA256_LEN) {
        ERR_clear_error();
        mpos_cleanse(digest, MPOS_SHA256_LEN);
        return MPOS_ERR_CRYPTO;
    }
    return MPOS_OK;
}
