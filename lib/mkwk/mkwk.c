/* openmpos: UnionPay master-key / working-key delivery (sign-on field 62 keys). */
#include <string.h>

#include "mpos/kcv.h"
#include "mpos/mkwk.h"
#include "mpos/util.h"

int mpos_mkwk_key_len_valid(enum mpos_cipher cipher, size_t key_len)
{
    switch (cipher) {
    case MPOS_CIPHER_TDES:
        /* Double-length working keys; single length for the MAK of the DES-MAC terminals. */
        return key_len == 8 || key_len == 16;
    case MPOS_CIPHER_SM4:
        return key_len == 16;
    default:
        return 0;
    }
}

static int check_args(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *tmk,
                      size_t tmk_len, const uint8_t *in, size_t key_len, const uint8_t *out,
                      const uint8_t *kcv, size_t kcv_len)
{
    if (cc == NULL || tmk == NULL || in == NULL || out == NULL || kcv == NULL ||
        (cipher != MPOS_CIPHER_TDES && cipher != MPOS_CIPHER_SM4)) {
        return MPOS_ERR_ARG;
    }
    if (tmk_len != MPOS_MKWK_TMK_LEN || !mpos_mkwk_key_len_valid(cipher, key_len)) {
        return MPOS_ERR_KEY;
    }
    if (kcv_len < MPOS_MKWK_KCV_MIN_LEN || kcv_len > MPOS_MKWK_KCV_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    return MPOS_OK;
}

int mpos_mkwk_unwrap(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *tmk,
                     size_t tmk_len, const uint8_t *enc_key, size_t key_len, const uint8_t *kcv,
                     size_t kcv_len, uint8_t *key)
{
    uint8_t clear[MPOS_MKWK_MAX_KEY_LEN];
    int rc = check_args(cc, cipher, tmk, tmk_len, enc_key, key_len, key, kcv, kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The working key is the ECB decryption of its cryptogram under the TMK (an 8-byte TDES
     * key is one block, a 16-byte key two independent blocks). */
    rc = mpos_cipher_ecb(cc, cipher, 0, tmk, tmk_len, enc_key, clear, key_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Legacy check value: E(working key, zero block), leftmost kcv_len bytes, compared in
     * constant time before the key is released. */
    rc = mpos_kcv_verify(cc, cipher, MPOS_KCV_LEGACY, clear, key_len, kcv, kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(key, clear, key_len);
exit:
    MPOS_WIPE_BUFFER(clear);
    if (rc != MPOS_OK && key != NULL && key_len <= MPOS_MKWK_MAX_KEY_LEN) {
        mpos_cleanse(key, key_len);
    }
    return rc;
}

int mpos_mkwk_wrap(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *tmk, size_t tmk_len,
                   const uint8_t *key, size_t key_len, uint8_t *enc_key, uint8_t *kcv,
                   size_t kcv_len)
{
    int rc = check_args(cc, cipher, tmk, tmk_len, key, key_len, enc_key, kcv, kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_kcv_compute(cc, cipher, MPOS_KCV_LEGACY, key, key_len, kcv, kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_cipher_ecb(cc, cipher, 1, tmk, tmk_len, key, enc_key, key_len);
exit:
    if (rc != MPOS_OK) {
        if (enc_key != NULL && key_len <= MPOS_MKWK_MAX_KEY_LEN) {
            mpos_cleanse(enc_key, key_len);
        }
        if (kcv != NULL && kcv_len <= MPOS_MKWK_KCV_MAX_LEN) {
            mpos_cleanse(kcv, kcv_len);
        }
    }
    return rc;
}
