/* openmpos: ISO/IEC 9797-1:2011 MAC algorithms 1 and 3 and the UnionPay POS "ECB" MAC.
 *
 * Every block operation goes through the crypto facade (mpos_cipher_cbc/ecb). Long messages
 * are chained in chunks of MAC_CHUNK_LEN bytes through a stack buffer: nothing is allocated
 * and the message is never copied as a whole.
 */
#include <string.h>

#include "mpos/mac.h"
#include "mpos/util.h"

/* Bytes chained per facade call (a multiple of every block length). */
#define MAC_CHUNK_LEN 512

static int alg_known(enum mpos_mac_alg alg)
{
    return alg == MPOS_MAC_ALG_ISO9797_1 || alg == MPOS_MAC_ALG_ISO9797_3 ||
           alg == MPOS_MAC_ALG_CUP_ECB;
}

/* Key length rules of each algorithm (docs/mpos-crypto.md, mac). */
static int key_len_valid(enum mpos_mac_alg alg, enum mpos_cipher cipher, size_t key_len)
{
    switch (alg) {
    case MPOS_MAC_ALG_ISO9797_1:
        /* ISO 9797-1 MAC algorithm 1 with the block cipher DES or TDES as given. */
        return key_len == 8 || key_len == 16 || key_len == 24;
    case MPOS_MAC_ALG_ISO9797_3:
        /* MAC algorithm 3 (ANSI X9.19): two independent DES keys K and K'. */
        return key_len == 16;
    case MPOS_MAC_ALG_CUP_ECB:
        return cipher == MPOS_CIPHER_SM4 ? key_len == 16 : (key_len == 8 || key_len == 16);
    default:
        return 0;
    }
}

void mpos_mac_clear(mpos_mac_ctx *ctx)
{
    if (ctx != NULL) {
        MPOS_WIPE_CTX(ctx);
    }
}

int mpos_mac_init(mpos_mac_ctx *ctx, mpos_crypto_ctx *cc, enum mpos_mac_alg alg,
                  enum mpos_cipher cipher, enum mpos_mac_pad pad, const uint8_t *key,
                  size_t key_len)
{
    int rc = MPOS_ERR_ARG;
    if (ctx == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_mac_clear(ctx);
    if (cc == NULL || key == NULL || !alg_known(alg)) {
        goto exit;
    }
    if (alg == MPOS_MAC_ALG_CUP_ECB) {
        /* The UnionPay MAC has its own fixed zero padding. */
        if ((cipher != MPOS_CIPHER_TDES && cipher != MPOS_CIPHER_SM4) || pad != MPOS_MAC_PAD_1) {
            goto exit;
        }
    } else if (cipher != MPOS_CIPHER_TDES || (pad != MPOS_MAC_PAD_1 && pad != MPOS_MAC_PAD_2)) {
        goto exit;
    }
    if (!key_len_valid(alg, cipher, key_len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    ctx->cc = cc;
    ctx->alg = alg;
    ctx->cipher = cipher;
    ctx->pad = pad;
    ctx->block_len = mpos_cipher_block_len(cipher);
    ctx->key_len = key_len;
    memcpy(ctx->key, key, key_len);
    ctx->ready = 1;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_mac_clear(ctx);
    }
    return rc;
}

size_t mpos_mac_length(const mpos_mac_ctx *ctx)
{
    return ctx != NULL && ctx->ready ? ctx->block_len : 0;
}

/* Chains n bytes (whole blocks) into the CBC state. ISO 9797-1 initial transformation 1
 * (H1 = eK(D1)) and iteration (Hi = eK(Di XOR Hi-1)) are one CBC encryption with a zero IV;
 * the chaining value is the last ciphertext block. Algorithm 3 iterates under K alone
 * (single DES, the first 8 bytes of K|K'). */
static int cbc_chain(mpos_mac_ctx *ctx, const uint8_t *in, size_t n)
{
    uint8_t out[MAC_CHUNK_LEN];
    size_t cbc_key_len = ctx->alg == MPOS_MAC_ALG_ISO9797_3 ? 8 : ctx->key_len;
    int rc = MPOS_OK;
    while (n > 0) {
        size_t part = n < sizeof(out) ? n : sizeof(out);
        rc = mpos_cipher_cbc(ctx->cc, ctx->cipher, 1, ctx->key, cbc_key_len, ctx->state, in, out,
                             part);
        if (rc != MPOS_OK) {
            goto exit;
        }
        memcpy(ctx->state, out + part - ctx->block_len, ctx->block_len);
        in += part;
        n -= part;
    }
exit:
    MPOS_WIPE_BUFFER(out);
    return rc;
}

/* UnionPay POS MAC, step 1: XOR of all (zero-padded) blocks. Padding with zeros does not
 * change an XOR, so bytes are folded in where they fall. */
static void cup_fold(mpos_mac_ctx *ctx, const uint8_t *data, size_t len)
{
    size_t pos = ctx->buf_len;
    for (size_t i = 0; i < len; i++) {
        ctx->state[pos] ^= data[i];
        pos = pos + 1 == ctx->block_len ? 0 : pos + 1;
    }
    ctx->buf_len = pos;
}

int mpos_mac_update(mpos_mac_ctx *ctx, const uint8_t *data, size_t len)
{
    int rc = MPOS_OK;
    if (ctx == NULL || !ctx->ready || (data == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    if (len == 0) {
        return MPOS_OK;
    }
    ctx->have_data = 1;
    if (ctx->alg == MPOS_MAC_ALG_CUP_ECB) {
        cup_fold(ctx, data, len);
        return MPOS_OK;
    }
    size_t block = ctx->block_len;
    /* Complete a pending partial block first. */
    if (ctx->buf_len > 0) {
        size_t take = block - ctx->buf_len < len ? block - ctx->buf_len : len;
        memcpy(ctx->buf + ctx->buf_len, data, take);
        ctx->buf_len += take;
        data += take;
        len -= take;
        if (ctx->buf_len < block) {
            return MPOS_OK;
        }
        rc = cbc_chain(ctx, ctx->buf, block);
        ctx->buf_len = 0;
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    /* Whole blocks straight from the caller's buffer; the tail waits in buf. Padding never
     * changes a complete block, so blocks can be chained as soon as they are complete. */
    size_t whole = len - len % block;
    rc = cbc_chain(ctx, data, whole);
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(ctx->buf, data + whole, len - whole);
    ctx->buf_len = len - whole;
exit:
    if (rc != MPOS_OK) {
        mpos_mac_clear(ctx);
    }
    return rc;
}

/* Uppercase ASCII hex of one nibble without a data-dependent branch or table lookup. */
static uint8_t hex_digit(uint8_t nibble)
{
    unsigned n = nibble & 0x0Fu;
    /* 0xFF..FF when n > 9 (9 - n borrows), then add 7 to skip from '9'+1 to 'A'. */
    unsigned above9 = (unsigned)((9u - n) >> 8) & 7u;
    return (uint8_t)('0' + n + above9);
}

/* Computes the full MAC into out (block_len bytes). */
static int finish(mpos_mac_ctx *ctx, uint8_t *out)
{
    uint8_t hexed[2 * MPOS_MAX_BLOCK_LEN];
    uint8_t tmp[MPOS_MAX_BLOCK_LEN];
    size_t block = ctx->block_len;
    int rc = MPOS_OK;

    if (ctx->alg == MPOS_MAC_ALG_CUP_ECB) {
        /* UnionPay POS MAC (docs/mpos-crypto.md, cup-ecb): H = the 2b uppercase hex
         * characters of R; X = E(K, H[0..b)) XOR H[b..2b); Y = E(K, X). */
        for (size_t i = 0; i < block; i++) {
            hexed[2 * i] = hex_digit((uint8_t)(ctx->state[i] >> 4));
            hexed[2 * i + 1] = hex_digit(ctx->state[i]);
        }
        rc = mpos_cipher_ecb(ctx->cc, ctx->cipher, 1, ctx->key, ctx->key_len, hexed, tmp, block);
        if (rc != MPOS_OK) {
            goto exit;
        }
        mpos_xor(tmp, hexed + block, block);
        rc = mpos_cipher_ecb(ctx->cc, ctx->cipher, 1, ctx->key, ctx->key_len, tmp, out, block);
        goto exit;
    }

    /* ISO 9797-1:2011 padding. Method 1: zeros up to a positive multiple of the block, so an
     * empty message becomes one zero block and a full last block gets nothing. Method 2: one
     * 1 bit (0x80) then zeros, always added. */
    if (ctx->pad == MPOS_MAC_PAD_2 || ctx->buf_len > 0 || !ctx->have_data) {
        size_t n = ctx->buf_len;
        if (ctx->pad == MPOS_MAC_PAD_2) {
            ctx->buf[n++] = 0x80;
        }
        memset(ctx->buf + n, 0, block - n);
        rc = cbc_chain(ctx, ctx->buf, block);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    if (ctx->alg == MPOS_MAC_ALG_ISO9797_3) {
        /* Output transformation 3: G = eK(dK'(Hq)). */
        rc = mpos_cipher_ecb(ctx->cc, MPOS_CIPHER_TDES, 0, ctx->key + 8, 8, ctx->state, tmp, block);
        if (rc == MPOS_OK) {
            rc = mpos_cipher_ecb(ctx->cc, MPOS_CIPHER_TDES, 1, ctx->key, 8, tmp, out, block);
        }
    } else {
        /* Algorithm 1, output transformation 1: G = Hq. */
        memcpy(out, ctx->state, block);
    }
exit:
    MPOS_WIPE_BUFFER(hexed);
    MPOS_WIPE_BUFFER(tmp);
    return rc;
}

int mpos_mac_final(mpos_mac_ctx *ctx, uint8_t *mac, size_t mac_len)
{
    uint8_t full[MPOS_MAX_BLOCK_LEN];
    int rc = MPOS_ERR_ARG;
    if (ctx == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!ctx->ready || mac == NULL) {
        goto exit;
    }
    if (mac_len < 1 || mac_len > ctx->block_len) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = finish(ctx, full);
    if (rc == MPOS_OK) {
        /* ISO 9797-1 truncation: the leftmost bits. */
        memcpy(mac, full, mac_len);
    }
exit:
    MPOS_WIPE_BUFFER(full);
    mpos_mac_clear(ctx);
    return rc;
}

int mpos_mac_verify(const uint8_t *computed, size_t computed_len, const uint8_t *received,
                    size_t received_len)
{
    if (computed == NULL || received == NULL) {
        return MPOS_ERR_ARG;
    }
    if (received_len < MPOS_MAC_MIN_VERIFY_LEN || received_len > computed_len) {
        return MPOS_ERR_LENGTH;
    }
    return mpos_ct_equal(computed, received, received_len) ? MPOS_OK : MPOS_ERR_VERIFY;
}

int mpos_mac_final_verify(mpos_mac_ctx *ctx, const uint8_t *expected, size_t expected_len)
{
    uint8_t full[MPOS_MAX_BLOCK_LEN];
    int rc = MPOS_ERR_ARG;
    if (ctx == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!ctx->ready || expected == NULL) {
        goto exit;
    }
    if (expected_len < MPOS_MAC_MIN_VERIFY_LEN || expected_len > ctx->block_len) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = finish(ctx, full);
    if (rc == MPOS_OK) {
        rc = mpos_mac_verify(full, ctx->block_len, expected, expected_len);
    }
exit:
    MPOS_WIPE_BUFFER(full);
    mpos_mac_clear(ctx);
    return rc;
}

/* One-shot forms: init + update + final on a stack context. On error the MAC output is
 * overwritten with zeros so that a caller ignoring the result cannot use a partial value. */
static int one_shot(mpos_crypto_ctx *cc, enum mpos_mac_alg alg, enum mpos_cipher cipher,
                    enum mpos_mac_pad pad, const uint8_t *key, size_t key_len, const uint8_t *data,
                    size_t data_len, uint8_t *mac)
{
    mpos_mac_ctx ctx;
    size_t out_len = mpos_cipher_block_len(cipher);
    int rc;
    memset(&ctx, 0, sizeof(ctx));
    if (mac == NULL || out_len == 0) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_mac_init(&ctx, cc, alg, cipher, pad, key, key_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_mac_update(&ctx, data, data_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_mac_final(&ctx, mac, out_len);
exit:
    mpos_mac_clear(&ctx);
    if (rc != MPOS_OK) {
        mpos_cleanse(mac, out_len);
    }
    return rc;
}

int mpos_mac_iso9797_alg1(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                          enum mpos_mac_pad pad, const uint8_t *data, size_t data_len,
                          uint8_t mac[8])
{
    return one_shot(cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, pad, key, key_len, data, data_len,
                    mac);
}

int mpos_mac_iso9797_alg3(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len,
                          enum mpos_mac_pad pad, const uint8_t *data, size_t data_len,
                          uint8_t mac[8])
{
    return one_shot(cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, pad, key, key_len, data, data_len,
                    mac);
}

int mpos_mac_cup_ecb(mpos_crypto_ctx *cc, enum mpos_cipher cipher, const uint8_t *key,
                     size_t key_len, const uint8_t *data, size_t data_len, uint8_t *mac)
{
    if (cipher != MPOS_CIPHER_TDES && cipher != MPOS_CIPHER_SM4) {
        return MPOS_ERR_ARG;
    }
    return one_shot(cc, MPOS_MAC_ALG_CUP_ECB, cipher, MPOS_MAC_PAD_1, key, key_len, data, data_len,
                    mac);
}
