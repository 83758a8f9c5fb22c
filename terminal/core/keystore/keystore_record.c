/* openmpos terminal core: sealing and opening key store records (keystore_record.h). */
#include <string.h>

#include "keystore_record.h"
#include "mpos/util.h"

int mpos_keystore_record_seal(mpos_crypto_ctx *cc, const uint8_t enc_key[KS_KEY_LEN],
                              const uint8_t mac_key[KS_KEY_LEN], const uint8_t iv[KS_IV_LEN],
                              unsigned type, uint64_t gen, uint8_t *buf, size_t cap,
                              size_t body_len, size_t *out_len)
{
    int rc = MPOS_ERR_ARG;
    size_t padded = (body_len + 15u) / 16u * 16u;
    if (cc == NULL || enc_key == NULL || mac_key == NULL || iv == NULL || buf == NULL ||
        out_len == NULL || type > 0xFFu || gen == 0) {
        goto exit;
    }
    *out_len = 0;
    rc = MPOS_ERR_LENGTH;
    if (body_len == 0 || body_len > KS_BODY_MAX || ks_record_len(body_len) > cap) {
        goto exit;
    }
    buf[0] = KS_MAGIC_0;
    buf[1] = KS_MAGIC_1;
    buf[2] = KS_MAGIC_2;
    buf[3] = KS_MAGIC_3;
    buf[4] = KS_VERSION;
    buf[5] = (uint8_t)type;
    buf[6] = 0;
    buf[7] = 0;
    ks_store_be64(buf + 8, gen);
    mpos_store_be32(buf + 16, (uint32_t)body_len);
    memcpy(buf + KS_IV_OFF, iv, KS_IV_LEN);
    memset(buf + KS_HDR_LEN + body_len, 0, padded - body_len);
    /* NIST SP 800-38A 6.2: CBC under the encryption key, random IV; then SP 800-38B CMAC
     * under the other key over header, IV and ciphertext (encrypt-then-MAC). */
    rc = mpos_cipher_cbc(cc, MPOS_CIPHER_AES, 1, enc_key, KS_KEY_LEN, iv, buf + KS_HDR_LEN,
                         buf + KS_HDR_LEN, padded);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_cmac(cc, MPOS_CIPHER_AES, mac_key, KS_KEY_LEN, buf, KS_HDR_LEN + padded,
                   buf + KS_HDR_LEN + padded);
    if (rc != MPOS_OK) {
        goto exit;
    }
    *out_len = ks_record_len(body_len);
exit:
    if (rc != MPOS_OK && buf != NULL && cap > 0) {
        mpos_cleanse(buf, cap);
    }
    return rc;
}

int mpos_keystore_record_open(mpos_crypto_ctx *cc, const uint8_t enc_key[KS_KEY_LEN],
                              const uint8_t mac_key[KS_KEY_LEN], unsigned type, uint8_t *buf,
                              size_t len, uint64_t *gen, size_t *body_len)
{
    uint8_t mac[KS_MAC_LEN];
    uint8_t iv[KS_IV_LEN];
    int rc = MPOS_ERR_ARG;
    size_t blen = 0;
    if (cc == NULL || enc_key == NULL || mac_key == NULL || buf == NULL || gen == NULL ||
        body_len == NULL) {
        goto exit;
    }
    *gen = 0;
    *body_len = 0;
    /* The size first: the length field must give exactly this many bytes. */
    rc = MPOS_ERR_FORMAT;
    if (len < KS_RECORD_MIN || buf[0] != KS_MAGIC_0 || buf[1] != KS_MAGIC_1 ||
        buf[2] != KS_MAGIC_2 || buf[3] != KS_MAGIC_3) {
        goto exit;
    }
    blen = mpos_load_be32(buf + 16);
    if (blen == 0 || blen > KS_BODY_MAX || ks_record_len(blen) != len) {
        goto exit;
    }
    size_t padded = len - KS_HDR_LEN - KS_MAC_LEN;
    /* The MAC before anything else is believed (SP 800-38B 6.3, constant-time compare). */
    rc = mpos_cmac(cc, MPOS_CIPHER_AES, mac_key, KS_KEY_LEN, buf, KS_HDR_LEN + padded, mac);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_VERIFY;
    if (!mpos_ct_equal(mac, buf + KS_HDR_LEN + padded, KS_MAC_LEN)) {
        goto exit;
    }
    rc = MPOS_ERR_UNSUPPORTED;
    if (buf[4] != KS_VERSION) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    uint64_t g = ks_load_be64(buf + 8);
    if (buf[5] != type || buf[6] != 0 || buf[7] != 0 || g == 0) {
        goto exit;
    }
    memcpy(iv, buf + KS_IV_OFF, KS_IV_LEN);
    rc = mpos_cipher_cbc(cc, MPOS_CIPHER_AES, 0, enc_key, KS_KEY_LEN, iv, buf + KS_HDR_LEN,
                         buf + KS_HDR_LEN, padded);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    uint8_t pad = 0;
    for (size_t i = blen; i < padded; i++) {
        pad |= buf[KS_HDR_LEN + i];
    }
    if (pad != 0) {
        goto exit;
    }
    *gen = g;
    *body_len = blen;
    rc = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK && buf != NULL && len > 0) {
        mpos_cleanse(buf, len);
    }
    return rc;
}
