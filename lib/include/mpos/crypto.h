/* openmpos: the crypto facade. Every block cipher, CMAC and random byte of the payment
 * schemes goes through here, so a device port swaps this one module (mbedTLS, a secure
 * element) and nothing else. On Linux it is OpenSSL 3's libcrypto, plus an AES-NI path for
 * the single-block, fresh-key AES operations that dominate DUKPT. CMAC (SP 800-38B) is libcrypto's,
 * on contexts keyed once at init (a CMAC context allocates on its first keying only).
 *
 * A mpos_crypto_ctx is caller-allocated. mpos_crypto_init() creates the libcrypto contexts
 * once; afterwards no operation allocates memory. A context is used by one thread at a time.
 */
#ifndef MPOS_CRYPTO_H
#define MPOS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

enum mpos_cipher {
    MPOS_CIPHER_TDES = 1, /* DES/TDES: 8 (single DES as K|K|K), 16 (2-key) or 24-byte keys */
    MPOS_CIPHER_AES = 2,  /* AES-128/192/256 */
    MPOS_CIPHER_SM4 = 3   /* SM4 (GB/T 32907), 16-byte key */
};

#define MPOS_MAX_BLOCK_LEN 16
#define MPOS_MAX_KEY_LEN   32
#define MPOS_DES_BLOCK_LEN 8
#define MPOS_AES_BLOCK_LEN 16

struct evp_cipher_ctx_st;
struct evp_mac_ctx_st;

/* Index of the prepared libcrypto contexts; internal. */
enum {
    MPOS_CTX_TDES2,
    MPOS_CTX_TDES3,
    MPOS_CTX_AES128,
    MPOS_CTX_AES192,
    MPOS_CTX_AES256,
    MPOS_CTX_SM4,
    MPOS_CTX_COUNT
};

typedef struct mpos_crypto_ctx {
    struct evp_cipher_ctx_st *ecb[MPOS_CTX_COUNT];
    struct evp_cipher_ctx_st *cbc[MPOS_CTX_COUNT];
    struct evp_mac_ctx_st *cmac[MPOS_CTX_COUNT];
    int use_aesni; /* 1 when the CPU has AES-NI and it is enabled */
    int ready;
} mpos_crypto_ctx;

int mpos_crypto_init(mpos_crypto_ctx *cc) MPOS_MUST_CHECK;
void mpos_crypto_clear(mpos_crypto_ctx *cc);

/* Turns the AES-NI path on or off (off: every AES operation goes through libcrypto).
 * Returns the setting in force: 0 when the CPU has no AES-NI. */
int mpos_crypto_set_aesni(mpos_crypto_ctx *cc, int enable);

/* Block length of a cipher (8 or 16), 0 for an unknown one. */
size_t mpos_cipher_block_len(enum mpos_cipher cipher);

/* 1 if key_len is a key length the cipher takes. */
int mpos_cipher_key_len_valid(enum mpos_cipher cipher, size_t key_len);

/* ECB over len bytes (a whole number of blocks, in place allowed). */
int mpos_cipher_ecb(mpos_crypto_ctx *cc, enum mpos_cipher cipher, int encrypt, const uint8_t *key,
                    size_t key_len, const uint8_t *in, uint8_t *out, size_t len) MPOS_MUST_CHECK;

/* CBC over len bytes (a whole number of blocks, in place allowed), no padding. iv is one
 * block; NULL means zeros. */
int mpos_cipher_cbc(mpos_crypto_ctx *cc, enum mpos_cipher cipher, int encrypt, const uint8_t *key,
                    size_t key_len, const uint8_t *iv, const uint8_t *in, uint8_t *out,
                    size_t len) MPOS_MUST_CHECK;

/* One AES encryption of one 16-byte block under a fresh key (AES-NI when available). */
int mpos_aes_encrypt_block(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                           const uint8_t in[16], uint8_t out[16]) MPOS_MUST_CHECK;

/* NIST SP 800-38B CMAC. Writes one full block (8 or 16 bytes) to mac. */
int mpos_cmac(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
              const uint8_t *data, size_t data_len, uint8_t *mac) MPOS_MUST_CHECK;

/* Cryptographically secure random bytes. */
int mpos_random_bytes(uint8_t *out, size_t len) MPOS_MUST_CHECK;

#endif
