/* openmpos: message authentication codes of the payment world.
 *
 * ISO/IEC 9797-1:2011 MAC algorithm 1 (CBC-MAC) and algorithm 3 (ANSI X9.19 retail MAC) with
 * padding methods 1 and 2; the UnionPay POS "ECB" MAC (TDES and SM4). CMAC is
 * mpos_cmac() of mpos/crypto.h. All MACs are computed in full; callers truncate. On error the
 * one-shot functions zero their MAC output.
 */
#ifndef MPOS_MAC_H
#define MPOS_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

enum mpos_mac_pad {
    MPOS_MAC_PAD_1 = 1, /* ISO 9797-1 padding method 1: zeros to a positive multiple */
    MPOS_MAC_PAD_2 = 2  /* ISO 9797-1 padding method 2: 0x80 then zeros, always added */
};

/* ISO 9797-1 algorithm 1: CBC-MAC under a DES/TDES key of 8, 16 or 24 bytes. mac: 8 bytes. */
int mpos_mac_iso9797_alg1(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                          enum mpos_mac_pad pad, const uint8_t *data, size_t data_len,
                          uint8_t mac[8]) MPOS_MUST_CHECK;

/* ISO 9797-1 algorithm 3 (ANSI X9.19 retail MAC): single-DES CBC under K1, final block
 * decrypted under K2 and encrypted under K1. key: 16 bytes (K1|K2). mac: 8 bytes. */
int mpos_mac_iso9797_alg3(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                          enum mpos_mac_pad pad, const uint8_t *data, size_t data_len,
                          uint8_t mac[8]) MPOS_MUST_CHECK;

/* UnionPay POS "ECB" MAC (docs/mpos-crypto.md, mac cup-ecb / cup-ecb-sm4). cipher is
 * MPOS_CIPHER_TDES (8 or 16-byte MAK, mac 8 bytes) or MPOS_CIPHER_SM4 (16 bytes, mac 16).
 * R = XOR of the zero-padded blocks; H = uppercase ASCII hex of R; X = E(K, H left half)
 * XOR H right half; mac = E(K, X). For interoperability only: the MAC depends on nothing but
 * the XOR of the blocks, so reordered blocks, trailing zero bytes or two compensating changes
 * keep it; it is not a secure MAC. */
int mpos_mac_cup_ecb(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *key,
                     size_t key_len, const uint8_t *data, size_t data_len,
                     uint8_t *mac) MPOS_MUST_CHECK;

/* ---- Incremental interface: the same MACs over a message given in pieces (ISO 8583 fields,
 * a file read in chunks). Nothing is allocated and the message is never copied: full blocks
 * are chained as they arrive, at most one partial block is held in the context. */

#define MPOS_MAC_MAX_KEY_LEN    24 /* a 3-key TDES key */
#define MPOS_MAC_MIN_VERIFY_LEN 4  /* shortest MAC a verify call accepts (32 bits) */

enum mpos_mac_alg {
    MPOS_MAC_ALG_ISO9797_1 = 1, /* ISO 9797-1 MAC algorithm 1 (CBC-MAC), TDES key 8/16/24 */
    MPOS_MAC_ALG_ISO9797_3 = 3, /* ISO 9797-1 MAC algorithm 3 (retail MAC), TDES key 16 */
    MPOS_MAC_ALG_CUP_ECB = 16   /* UnionPay POS "ECB" MAC, TDES key 8/16 or SM4 key 16 */
};

/* Caller-allocated; the fields are private. Holds a copy of the key until final or clear. */
typedef struct mpos_mac_ctx {
    mpos_crypto_ctx *cc;
    enum mpos_mac_alg alg;
    enum mpos_cipher cipher;
    enum mpos_mac_pad pad;
    size_t block_len;
    size_t key_len;
    size_t buf_len; /* bytes held in buf (CBC) or position in the XOR block (CUP) */
    int have_data;  /* 1 once any message byte was given */
    int ready;      /* 1 between init and final/clear */
    uint8_t key[MPOS_MAC_MAX_KEY_LEN];
    uint8_t state[MPOS_MAX_BLOCK_LEN]; /* CBC chaining value, or the XOR of the blocks (CUP) */
    uint8_t buf[MPOS_MAX_BLOCK_LEN];   /* pending partial block (CBC) */
} mpos_mac_ctx;

/* Starts a MAC. alg ISO9797_1 or ISO9797_3 take cipher MPOS_CIPHER_TDES and pad 1 or 2;
 * CUP_ECB takes cipher TDES or SM4 and pad MPOS_MAC_PAD_1 (its fixed zero padding).
 * MPOS_ERR_KEY for a key length the algorithm does not take, MPOS_ERR_ARG otherwise. */
int mpos_mac_init(mpos_mac_ctx *ctx, mpos_crypto_ctx *cc, enum mpos_mac_alg alg,
                  enum mpos_cipher cipher, enum mpos_mac_pad pad, const uint8_t *key,
                  size_t key_len) MPOS_MUST_CHECK;

/* Adds len bytes of the message (len 0 allowed, data may then be NULL). */
int mpos_mac_update(mpos_mac_ctx *ctx, const uint8_t *data, size_t len) MPOS_MUST_CHECK;

/* Full MAC length of a started context: the cipher's block length (8 TDES, 16 SM4). */
size_t mpos_mac_length(const mpos_mac_ctx *ctx);

/* Finishes the MAC and writes its leftmost mac_len bytes (1 to mpos_mac_length) to mac.
 * The context is cleared in every case (init again to reuse it). */
int mpos_mac_final(mpos_mac_ctx *ctx, uint8_t *mac, size_t mac_len) MPOS_MUST_CHECK;

/* Finishes the MAC and compares its leftmost expected_len bytes (MPOS_MAC_MIN_VERIFY_LEN to
 * mpos_mac_length) with expected in constant time. 0 on a match, MPOS_ERR_VERIFY otherwise;
 * the computed MAC never leaves the function. The context is cleared in every case. */
int mpos_mac_final_verify(mpos_mac_ctx *ctx, const uint8_t *expected,
                          size_t expected_len) MPOS_MUST_CHECK;

/* Wipes the context (key copy included). Safe on a cleared or never-initialised context
 * that was zeroed. */
void mpos_mac_clear(mpos_mac_ctx *ctx);

/* Constant-time check of a received (possibly truncated) MAC against a computed one: 0 when
 * the leftmost received_len bytes of computed equal received, MPOS_ERR_VERIFY when they do
 * not, MPOS_ERR_LENGTH when received_len is below MPOS_MAC_MIN_VERIFY_LEN or above
 * computed_len. Time depends only on the lengths. */
int mpos_mac_verify(const uint8_t *computed, size_t computed_len, const uint8_t *received,
                    size_t received_len) MPOS_MUST_CHECK;

#endif
