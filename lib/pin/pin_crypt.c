/* openmpos: ISO 9564-1:2017 PIN block encipherment and decipherment, and the random fill.
 * Every primitive goes through mpos/crypto.h. */
#include <string.h>

#include "mpos/pin.h"
#include "mpos/util.h"

/* Bound on generator refills when drawing format 3 fill (each byte is kept with probability
 * 252/256, so reaching it means the generator is broken). */
#define FILL_MAX_DRAWS 16

int mpos_pin_cipher_check(enum mpos_pin_format format, enum mpos_cipher cipher, size_t key_len)
{
    switch (format) {
    case MPOS_PIN_FORMAT_0:
    case MPOS_PIN_FORMAT_1:
    case MPOS_PIN_FORMAT_3:
        /* ISO 9564-1:2017 9.3: 64-bit block cipher; TDES with a double or triple-length key
         * (ISO 9564-2 does not approve single DES). */
        if (cipher != MPOS_CIPHER_TDES) {
            return MPOS_ERR_ARG;
        }
        return key_len == 16 || key_len == 24 ? MPOS_OK : MPOS_ERR_KEY;
    case MPOS_PIN_FORMAT_4:
        /* ISO 9564-1:2017 9.4: 128-bit block cipher (AES; SM4 as the national option). */
        if (cipher != MPOS_CIPHER_AES && cipher != MPOS_CIPHER_SM4) {
            return MPOS_ERR_ARG;
        }
        return mpos_cipher_key_len_valid(cipher, key_len) ? MPOS_OK : MPOS_ERR_KEY;
    default:
        return MPOS_ERR_ARG;
    }
}

int mpos_pin_fill_random(enum mpos_pin_format format, size_t pin_len,
                         uint8_t fill_out[MPOS_PIN_FILL_MAX_LEN], size_t *fill_len)
{
    uint8_t pool[32];
    int rc = MPOS_ERR_ARG;
    if (fill_out == NULL || fill_len == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(fill_out, 0, MPOS_PIN_FILL_MAX_LEN);
    *fill_len = 0;
    if (mpos_pin_block_len(format) == 0) {
        goto exit;
    }
    if (pin_len < MPOS_PIN_MIN_LEN || pin_len > MPOS_PIN_MAX_LEN) {
        rc = MPOS_ERR_PIN;
        goto exit;
    }
    size_t want = mpos_pin_fill_len(format, pin_len);
    size_t got = 0;
    rc = MPOS_OK;
    for (unsigned draw = 0; got < want && rc == MPOS_OK; draw++) {
        if (draw == FILL_MAX_DRAWS) {
            rc = MPOS_ERR_RNG;
            break;
        }
        rc = mpos_random_bytes(pool, sizeof(pool));
        for (size_t i = 0; i < sizeof(pool) && got < want && rc == MPOS_OK; i++) {
            uint8_t b = pool[i];
            if (format == MPOS_PIN_FORMAT_3) {
                /* ISO 9564-1:2017 9.3.5.2: fill 1010..1111 chosen at random. 252 = 6 * 42:
                 * bytes below it fall uniformly on 0..5; the others are rejected (no modulo
                 * bias). */
                if (b < 252) {
                    fill_out[got++] = (uint8_t)(0x0A + b % 6);
                }
            } else if (format == MPOS_PIN_FORMAT_4) {
                /* 9.4.2.2.2: 8 random bytes, i.e. 16 uniform nibbles. */
                fill_out[got++] = (uint8_t)(b >> 4);
                if (got < want) {
                    fill_out[got++] = (uint8_t)(b & 0x0F);
                }
            } else {
                /* 9.3.3: format 1 fill, any nibble. */
                fill_out[got++] = (uint8_t)(b & 0x0F);
            }
        }
    }
    if (rc == MPOS_OK) {
        *fill_len = want;
    }
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(fill_out, MPOS_PIN_FILL_MAX_LEN);
    }
    MPOS_WIPE_BUFFER(pool);
    return rc;
}

int mpos_pin_block_encrypt(mpos_crypto_ctx *cc, enum mpos_pin_format format,
                           enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
                           const char *pin, const char *pan, const uint8_t *fill, size_t fill_len,
                           uint8_t block_out[MPOS_PIN_BLOCK_MAX_LEN], size_t *block_len)
{
    uint8_t field[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t pan_field[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t random_fill[MPOS_PIN_FILL_MAX_LEN];
    size_t len = 0;
    size_t pan_len = 0;
    int rc = MPOS_ERR_ARG;
    if (block_out == NULL || block_len == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(block_out, 0, MPOS_PIN_BLOCK_MAX_LEN);
    *block_len = 0;
    memset(field, 0, sizeof(field));
    memset(pan_field, 0, sizeof(pan_field));
    memset(random_fill, 0, sizeof(random_fill));
    if (cc == NULL || key == NULL || pin == NULL) {
        goto exit;
    }
    rc = mpos_pin_cipher_check(format, cipher, key_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (!mpos_pin_valid(pin)) {
        rc = MPOS_ERR_PIN;
        goto exit;
    }
    if (format != MPOS_PIN_FORMAT_1 && !mpos_pin_pan_valid(pan)) {
        rc = MPOS_ERR_PAN;
        goto exit;
    }
    if (fill == NULL && format != MPOS_PIN_FORMAT_0) {
        if (fill_len != 0) {
            rc = MPOS_ERR_ARG;
            goto exit;
        }
        rc = mpos_pin_fill_random(format, strlen(pin), random_fill, &fill_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        fill = random_fill;
    }
    if (format != MPOS_PIN_FORMAT_4) {
        /* ISO 9564-1:2017 9.3: encipher the 64-bit clear PIN block. */
        rc = mpos_pin_clear_block_encode(format, pin, pan, fill, fill_len, field, &len);
        if (rc == MPOS_OK) {
            rc = mpos_cipher_ecb(cc, cipher, 1, key, key_len, field, block_out, len);
        }
        goto exit;
    }
    /* ISO 9564-1:2017 9.4.2.3: block = E(K, E(K, PIN field) XOR PAN field). */
    rc = mpos_pin_field_encode(format, pin, fill, fill_len, field, &len);
    if (rc == MPOS_OK) {
        rc = mpos_pin_pan_field_encode(format, pan, pan_field, &pan_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_cipher_ecb(cc, cipher, 1, key, key_len, field, field, len);
    }
    if (rc == MPOS_OK) {
        mpos_xor(field, pan_field, len);
        rc = mpos_cipher_ecb(cc, cipher, 1, key, key_len, field, block_out, len);
    }
exit:
    if (rc == MPOS_OK) {
        *block_len = len;
    } else {
        mpos_cleanse(block_out, MPOS_PIN_BLOCK_MAX_LEN);
        *block_len = 0;
    }
    MPOS_WIPE_BUFFER(field);
    MPOS_WIPE_BUFFER(pan_field);
    MPOS_WIPE_BUFFER(random_fill);
    return rc;
}

int mpos_pin_block_decrypt(mpos_crypto_ctx *cc, enum mpos_pin_format format,
                           enum mpos_cipher cipher, const uint8_t *key, size_t key_len,
                           const uint8_t *block, size_t block_len, const char *pan,
                           char pin_out[MPOS_PIN_BUF_LEN])
{
    uint8_t clear[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t pan_field[MPOS_PIN_BLOCK_MAX_LEN];
    size_t pan_len = 0;
    int rc = MPOS_ERR_ARG;
    if (pin_out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(pin_out, 0, MPOS_PIN_BUF_LEN);
    memset(clear, 0, sizeof(clear));
    memset(pan_field, 0, sizeof(pan_field));
    /* Argument checks: none depends on the key or the block's content. */
    if (cc == NULL || key == NULL || block == NULL) {
        goto exit;
    }
    rc = mpos_pin_cipher_check(format, cipher, key_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (block_len != mpos_pin_block_len(format)) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    if (format != MPOS_PIN_FORMAT_1 && !mpos_pin_pan_valid(pan)) {
        rc = MPOS_ERR_PAN;
        goto exit;
    }

    rc = mpos_cipher_ecb(cc, cipher, 0, key, key_len, block, clear, block_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (format != MPOS_PIN_FORMAT_4) {
        /* ISO 9564-1:2017 9.3: the clear block, then strict decoding (PAN XOR inside). */
        rc = mpos_pin_clear_block_decode(format, clear, block_len, pan, pin_out);
        goto exit;
    }
    /* ISO 9564-1:2017 9.4.2.3 reversed: PIN field = D(K, D(K, block) XOR PAN field). */
    rc = mpos_pin_pan_field_encode(format, pan, pan_field, &pan_len);
    if (rc == MPOS_OK) {
        mpos_xor(clear, pan_field, block_len);
        rc = mpos_cipher_ecb(cc, cipher, 0, key, key_len, clear, clear, block_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_pin_field_decode(format, clear, block_len, pin_out);
    }
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(pin_out, MPOS_PIN_BUF_LEN);
    }
    MPOS_WIPE_BUFFER(clear);
    MPOS_WIPE_BUFFER(pan_field);
    return rc;
}
