/* openmpos: HMAC-SHA-256 of the crypto facade on OpenSSL 3's libcrypto (mpos/hmac.h). */
#include <openssl/evp.h>

#include "mpos/hmac.h"
#include "mpos/util.h"

int mpos_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                     uint8_t mac[MPOS_HMAC_SHA256_LEN])
{
    static const uint8_t empty[1] = {0};
    size_t out_len = 0;
    if (mac == NULL) {
        return MPOS_ERR_ARG;
    }
    if (key == NULL || (data == NULL && len > 0)) {
        mpos_cleanse(mac, MPOS_HMAC_SHA256_LEN);
        return MPOS_ERR_ARG;
    }
    if (key_len < MPOS_HMAC_MIN_KEY_LEN || key_len > MPOS_HMAC_MAX_KEY_LEN) {
        mpos_cleanse(mac, MPOS_HMAC_SHA256_LEN);
        return MPOS_ERR_KEY;
    }
    /* RFC 2104 section 2 / FIPS 198-1 section 4: H((K ^ opad) || H((K ^ ipad) || text)),
     * one-shot through the default provider. */
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, data != NULL ? data : empty,
                  len, mac, MPOS_HMAC_SHA256_LEN, &out_len) == NULL ||
        out_len != MPOS_HMAC_SHA256_LEN) {
        mpos_cleanse(mac, MPOS_HMAC_SHA256_LEN);
        return MPOS_ERR_CRYPTO;
    }
    return MPOS_OK;
}
