/* openmpos: SHA-1 of the crypto facade on OpenSSL 3's libcrypto (mpos/hash.h). */
#include <openssl/evp.h>

#include "mpos/hash.h"
#include "mpos/util.h"

int mpos_sha1(const uint8_t *data, size_t len, uint8_t digest[MPOS_SHA1_LEN])
{
    static const uint8_t empty[1] = {0};
    unsigned int out_len = 0;
    if (digest == NULL || (data == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    /* FIPS 180-4 6.1: one-shot digest through the default provider. */
    if (EVP_Digest(data != NULL ? data : empty, len, digest, &out_len, EVP_sha1(), NULL) != 1 ||
        out_len != MPOS_SHA1_LEN) {
        mpos_cleanse(digest, MPOS_SHA1_LEN);
        return MPOS_ERR_CRYPTO;
    }
    return MPOS_OK;
}
