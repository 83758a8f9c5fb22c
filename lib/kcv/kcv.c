/* openmpos: key check values (legacy and CMAC-based). */
#include <string.h>

#include "mpos/kcv.h"
#include "mpos/util.h"

enum mpos_kcv_method mpos_kcv_default_method(enum mpos_cipher cipher)
{
    /* ANSI X9.24-1:2017 A.3 for AES keys; the legacy value stays the norm for TDES and SM4
     * (UnionPay sign-on, GM/T practice). */
    return cipher == MPOS_CIPHER_AES ? MPOS_KCV_CMAC : MPOS_KCV_LEGACY;
}

size_t mpos_kcv_default_len(enum mpos_kcv_method method)
{
    switch (method) {
    case MPOS_KCV_LEGACY:
        return MPOS_KCV_LEGACY_DEFAULT_LEN;
    case MPOS_KCV_CMAC:
        return MPOS_KCV_CMAC_DEFAULT_LEN;
    default:
        return 0;
    }
}

/* Full check value (one block) into out. */
static int kcv_full(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                    const uint8_t *key, size_t key_len, uint8_t out[MPOS_MAX_BLOCK_LEN])
{
    static const uint8_t zero[MPOS_MAX_BLOCK_LEN] = {0};
    size_t block = mpos_cipher_block_len(cipher);
    switch (method) {
    case MPOS_KCV_LEGACY:
        /* ANSI X9.24-1:2017 Annex A, legacy method: encrypt a block of binary zeros (ECB). */
        return mpos_cipher_ecb(cc, cipher, 1, key, key_len, zero, out, block);
    case MPOS_KCV_CMAC:
        /* ANSI X9.24-1:2017 A.3: CMAC over one block of binary zeros of the cipher's block
         * length (reproduces the X9.143:2021 8.1 check value 08793E25AB; the CMAC of the
         * empty message does not). */
        return mpos_cmac(cc, cipher, key, key_len, zero, block, out);
    default:
        return MPOS_ERR_ARG;
    }
}

/* Argument checks shared by compute and verify. */
static int check_args(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                      const uint8_t *key, size_t key_len, const uint8_t *buf, size_t len)
{
    size_t block = mpos_cipher_block_len(cipher);
    if (cc == NULL || key == NULL || buf == NULL || block == 0 ||
        (method != MPOS_KCV_LEGACY && method != MPOS_KCV_CMAC)) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_cipher_key_len_valid(cipher, key_len)) {
        return MPOS_ERR_KEY;
    }
    if (len < 1 || len > block) {
        return MPOS_ERR_LENGTH;
    }
    return MPOS_OK;
}

int mpos_kcv_compute(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                     const uint8_t *key, size_t key_len, uint8_t *kcv, size_t kcv_len)
{
    uint8_t full[MPOS_MAX_BLOCK_LEN];
    int rc = check_args(cc, cipher, method, key, key_len, kcv, kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = kcv_full(cc, cipher, method, key, key_len, full);
    if (rc == MPOS_OK) {
        memcpy(kcv, full, kcv_len); /* the leftmost bytes */
    }
exit:
    MPOS_WIPE_BUFFER(full);
    if (rc != MPOS_OK && kcv != NULL && kcv_len <= MPOS_KCV_MAX_LEN) {
        mpos_cleanse(kcv, kcv_len);
    }
    return rc;
}

int mpos_kcv_verify(mpos_crypto_ctx *cc, enum mpos_cipher cipher, enum mpos_kcv_method method,
                    const uint8_t *key, size_t key_len, const uint8_t *expected,
                    size_t expected_len)
{
    uint8_t full[MPOS_MAX_BLOCK_LEN];
    int rc = check_args(cc, cipher, method, key, key_len, expected, expected_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = kcv_full(cc, cipher, method, key, key_len, full);
    if (rc == MPOS_OK) {
        rc = mpos_ct_equal(full, expected, expected_len) ? MPOS_OK : MPOS_ERR_VERIFY;
    }
exit:
    MPOS_WIPE_BUFFER(full);
    return rc;
}
