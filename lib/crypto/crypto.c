/* openmpos: the crypto facade on OpenSSL 3's libcrypto.
 *
 * Every libcrypto context is fetched and created once in mpos_crypto_init(); an operation
 * only re-keys a prepared context, so nothing is allocated per operation (checked by
 * tests/unit/test_noalloc.c). One prepared context per cipher and key length: switching the
 * cipher of an EVP context would reallocate its provider state.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "aes_ni.h"
#include "mpos/crypto.h"
#include "mpos/util.h"

static const char *const ecb_names[MPOS_CTX_COUNT] = {"DES-EDE-ECB", "DES-EDE3-ECB", "AES-128-ECB",
                                                      "AES-192-ECB", "AES-256-ECB",  "SM4-ECB"};
static const char *const cbc_names[MPOS_CTX_COUNT] = {"DES-EDE-CBC", "DES-EDE3-CBC", "AES-128-CBC",
                                                      "AES-192-CBC", "AES-256-CBC",  "SM4-CBC"};

size_t mpos_cipher_block_len(enum mpos_cipher cipher)
{
    switch (cipher) {
    case MPOS_CIPHER_TDES:
        return MPOS_DES_BLOCK_LEN;
    case MPOS_CIPHER_AES:
    case MPOS_CIPHER_SM4:
        return MPOS_AES_BLOCK_LEN;
    default:
        return 0;
    }
}

int mpos_cipher_key_len_valid(enum mpos_cipher cipher, size_t key_len)
{
    switch (cipher) {
    case MPOS_CIPHER_TDES:
        return key_len == 8 || key_len == 16 || key_len == 24;
    case MPOS_CIPHER_AES:
        return key_len == 16 || key_len == 24 || key_len == 32;
    case MPOS_CIPHER_SM4:
        return key_len == 16;
    default:
        return 0;
    }
}

/* Maps cipher + key length to the prepared context, and a single-DES key to K|K. */
static int select_ctx(enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
                      uint8_t expanded[16], const uint8_t **use_key, size_t *use_len)
{
    *use_key = key;
    *use_len = key_len;
    switch (cipher) {
    case MPOS_CIPHER_TDES:
        if (key_len == 8) {
            /* EDE with K1 = K2 is single DES (and keeps us off the legacy provider). */
            memcpy(expanded, key, 8);
            memcpy(expanded + 8, key, 8);
            *use_key = expanded;
            *use_len = 16;
            return MPOS_CTX_TDES2;
        }
        return key_len == 16 ? MPOS_CTX_TDES2 : key_len == 24 ? MPOS_CTX_TDES3 : -1;
    case MPOS_CIPHER_AES:
        return key_len == 16   ? MPOS_CTX_AES128
               : key_len == 24 ? MPOS_CTX_AES192
               : key_len == 32 ? MPOS_CTX_AES256
                               : -1;
    case MPOS_CIPHER_SM4:
        return key_len == 16 ? MPOS_CTX_SM4 : -1;
    default:
        return -1;
    }
}

int mpos_crypto_init(mpos_crypto_ctx *cc)
{
    if (cc == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(cc, 0, sizeof(*cc));
    int rc = MPOS_ERR_CRYPTO;
    static const uint8_t warmup_key[24] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                           0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
                                           0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67};
    static const size_t key_lens[MPOS_CTX_COUNT] = {16, 24, 16, 24, 32, 16};
    EVP_MAC *cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    if (cmac == NULL) {
        goto exit;
    }
    for (int i = 0; i < MPOS_CTX_COUNT; i++) {
        EVP_CIPHER *ecb = EVP_CIPHER_fetch(NULL, ecb_names[i], NULL);
        EVP_CIPHER *cbc = EVP_CIPHER_fetch(NULL, cbc_names[i], NULL);
        cc->ecb[i] = EVP_CIPHER_CTX_new();
        cc->cbc[i] = EVP_CIPHER_CTX_new();
        cc->cmac[i] = EVP_MAC_CTX_new(cmac);
        int ok = ecb != NULL && cbc != NULL && cc->ecb[i] != NULL && cc->cbc[i] != NULL &&
                 cc->cmac[i] != NULL &&
                 EVP_CipherInit_ex2(cc->ecb[i], ecb, NULL, NULL, 1, NULL) == 1 &&
                 EVP_CipherInit_ex2(cc->cbc[i], cbc, NULL, NULL, 1, NULL) == 1 &&
                 EVP_CIPHER_CTX_set_padding(cc->ecb[i], 0) == 1 &&
                 EVP_CIPHER_CTX_set_padding(cc->cbc[i], 0) == 1;
        if (ok) {
            /* Key the CMAC context once now (a fixed non-secret key with distinct DES halves):
             * its first keying creates the cipher context inside; later ones reuse it. */
            OSSL_PARAM params[2] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cbc_names[i], 0),
                OSSL_PARAM_construct_end()};
            ok = EVP_MAC_init(cc->cmac[i], warmup_key, key_lens[i], params) == 1;
        }
        EVP_CIPHER_free(ecb);
        EVP_CIPHER_free(cbc);
        if (!ok) {
            goto exit;
        }
    }
    /* Instantiate this thread's DRBG now, so no later random draw allocates. */
    uint8_t warm[1];
    if (RAND_bytes(warm, sizeof(warm)) != 1) {
        rc = MPOS_ERR_RNG;
        goto exit;
    }
    cc->use_aesni = mpos_aesni_supported();
    cc->ready = 1;
    rc = MPOS_OK;
exit:
    EVP_MAC_free(cmac);
    if (rc != MPOS_OK) {
        mpos_crypto_clear(cc);
    }
    return rc;
}

void mpos_crypto_clear(mpos_crypto_ctx *cc)
{
    if (cc == NULL) {
        return;
    }
    for (int i = 0; i < MPOS_CTX_COUNT; i++) {
        EVP_CIPHER_CTX_free(cc->ecb[i]); /* frees and cleanses the key schedule */
        EVP_CIPHER_CTX_free(cc->cbc[i]);
        EVP_MAC_CTX_free(cc->cmac[i]);
    }
    memset(cc, 0, sizeof(*cc));
}

int mpos_crypto_set_aesni(mpos_crypto_ctx *cc, int enable)
{
    cc->use_aesni = enable && mpos_aesni_supported();
    return cc->use_aesni;
}

static int run_cipher(struct evp_cipher_ctx_st *ctx, int encrypt, const uint8_t *key,
                      const uint8_t *iv, const uint8_t *in, uint8_t *out, size_t len)
{
    int outl = 0;
    if (len > (size_t)INT32_MAX) {
        return MPOS_ERR_LENGTH;
    }
    /* Re-keying a prepared context keeps its cipher and its padding setting (off). */
    if (EVP_CipherInit_ex2(ctx, NULL, key, iv, encrypt, NULL) != 1 ||
        EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1 || (size_t)outl != len) {
        return MPOS_ERR_CRYPTO;
    }
    return MPOS_OK;
}

static int cipher_mode(mpos_crypto_ctx *cc, int cbc, enum mpos_cipher cipher, int encrypt,
                       const uint8_t *key, size_t key_len, const uint8_t *iv, const uint8_t *in,
                       uint8_t *out, size_t len)
{
    uint8_t expanded[16];
    uint8_t zero_iv[MPOS_MAX_BLOCK_LEN] = {0};
    const uint8_t *use_key;
    size_t use_len;
    size_t block = mpos_cipher_block_len(cipher);
    if (cc == NULL || !cc->ready || key == NULL || (len > 0 && (in == NULL || out == NULL))) {
        return MPOS_ERR_ARG;
    }
    int idx = select_ctx(cipher, key, key_len, expanded, &use_key, &use_len);
    if (idx < 0) {
        return block == 0 ? MPOS_ERR_ARG : MPOS_ERR_KEY;
    }
    if (len % block != 0) {
        return MPOS_ERR_LENGTH;
    }
    int rc = MPOS_OK;
    if (len > 0) {
        rc = cbc ? run_cipher(cc->cbc[idx], encrypt, use_key, iv != NULL ? iv : zero_iv, in, out,
                              len)
                 : run_cipher(cc->ecb[idx], encrypt, use_key, NULL, in, out, len);
    }
    MPOS_WIPE_BUFFER(expanded);
    return rc;
}

int mpos_cipher_ecb(mpos_crypto_ctx *cc, enum mpos_cipher cipher, int encrypt, const uint8_t *key,
                    size_t key_len, const uint8_t *in, uint8_t *out, size_t len)
{
    return cipher_mode(cc, 0, cipher, encrypt, key, key_len, NULL, in, out, len);
}

int mpos_cipher_cbc(mpos_crypto_ctx *cc, enum mpos_cipher cipher, int encrypt, const uint8_t *key,
                    size_t key_len, const uint8_t *iv, const uint8_t *in, uint8_t *out, size_t len)
{
    return cipher_mode(cc, 1, cipher, encrypt, key, key_len, iv, in, out, len);
}

int mpos_aes_encrypt_block(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                           const uint8_t in[16], uint8_t out[16])
{
    if (cc == NULL || key == NULL || in == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc->use_aesni) {
        if (!mpos_cipher_key_len_valid(MPOS_CIPHER_AES, key_len)) {
            return MPOS_ERR_KEY;
        }
        mpos_aesni_encrypt_block(key, key_len, in, out);
        return MPOS_OK;
    }
    return mpos_cipher_ecb(cc, MPOS_CIPHER_AES, 1, key, key_len, in, out, 16);
}

int mpos_cmac(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
              const uint8_t *data, size_t data_len, uint8_t *mac)
{
    uint8_t expanded[16];
    const uint8_t *use_key;
    size_t use_len;
    size_t outl = 0;
    size_t block = mpos_cipher_block_len(cipher);
    if (cc == NULL || !cc->ready || key == NULL || mac == NULL || (data == NULL && data_len > 0)) {
        return MPOS_ERR_ARG;
    }
    int idx = select_ctx(cipher, key, key_len, expanded, &use_key, &use_len);
    if (idx < 0) {
        return block == 0 ? MPOS_ERR_ARG : MPOS_ERR_KEY;
    }
    /* NIST SP 800-38B through libcrypto's CMAC; the context was keyed once at init, so
     * re-keying it reuses its cipher context (no allocation). */
    int rc = MPOS_ERR_CRYPTO;
    if (EVP_MAC_init(cc->cmac[idx], use_key, use_len, NULL) == 1 &&
        (data_len == 0 || EVP_MAC_update(cc->cmac[idx], data, data_len) == 1) &&
        EVP_MAC_final(cc->cmac[idx], mac, &outl, block) == 1 && outl == block) {
        rc = MPOS_OK;
    } else {
        mpos_cleanse(mac, block);
    }
    MPOS_WIPE_BUFFER(expanded);
    return rc;
}

int mpos_random_bytes(uint8_t *out, size_t len)
{
    if (out == NULL && len > 0) {
        return MPOS_ERR_ARG;
    }
    if (len > (size_t)INT32_MAX) {
        return MPOS_ERR_LENGTH;
    }
    return RAND_bytes(out, (int)len) == 1 ? MPOS_OK : MPOS_ERR_RNG;
}
