/* libFuzzer target: the ISO 9564-1 PIN block decoders (lib/pin).
 *
 * Input: byte 0 selects the format (bits 0-1: 0, 1, 3, 4), how the PAN is read (bit 2: raw
 * bytes, or bytes mapped to digits so that valid PANs are common) and whether the block also
 * goes through mpos_pin_block_decrypt under a fixed key (bit 3); byte 1 is the PAN length
 * (0-23); then the PAN bytes; the rest is the block, of any length.
 *
 * Checked on every input, beyond the sanitizers: a decode succeeds only with a valid PIN
 * (4-12 digits, zeros after it), fails only with zeros in pin_out, and a block that decodes
 * encodes back to the same bytes with the fill it carried (decode and encode are inverse).
 *
 * Build (outside CMake): clang -fsanitize=fuzzer,address,undefined -I lib/include, this file,
 * every .c of lib/pin, lib/util and lib/crypto, and -lcrypto. Run with a corpus directory:
 * ./fuzz_pinblock -max_total_time=20 corpus/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/crypto.h"
#include "mpos/pin.h"
#include "mpos/util.h"

#define FUZZ_PAN_MAX 23

static mpos_crypto_ctx cc;
static int cc_ready;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static int pin_out_well_formed(const char pin[MPOS_PIN_BUF_LEN])
{
    size_t n = 0;
    while (n < MPOS_PIN_BUF_LEN && pin[n] != '\0') {
        n++;
    }
    if (n < MPOS_PIN_MIN_LEN || n > MPOS_PIN_MAX_LEN || !mpos_pin_valid(pin)) {
        return 0;
    }
    for (size_t i = n; i < MPOS_PIN_BUF_LEN; i++) {
        if (pin[i] != '\0') {
            return 0;
        }
    }
    return 1;
}

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static uint8_t nibble(const uint8_t *buf, size_t i)
{
    return (uint8_t)((i % 2 == 0 ? buf[i / 2] >> 4 : buf[i / 2]) & 0x0F);
}

/* A decoded clear block re-encodes to itself with the fill read back from its PIN field. */
static void check_round_trip(enum mpos_pin_format format, const uint8_t *block, size_t len,
                             const char *pan, const char *pin)
{
    uint8_t field[MPOS_PIN_BLOCK_MAX_LEN], pan_field[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t fill[MPOS_PIN_FILL_MAX_LEN], again[MPOS_PIN_BLOCK_MAX_LEN];
    size_t fill_len = 0, field_len = 0, again_len = 0;
    size_t n = strlen(pin);
    memcpy(field, block, len);
    if (format == MPOS_PIN_FORMAT_0 || format == MPOS_PIN_FORMAT_3) {
        check(mpos_pin_pan_field_encode(format, pan, pan_field, &field_len) == MPOS_OK);
        mpos_xor(field, pan_field, len);
    }
    if (format == MPOS_PIN_FORMAT_1 || format == MPOS_PIN_FORMAT_3) {
        for (size_t i = 2 + n; i < 16; i++) {
            fill[fill_len++] = nibble(field, i);
        }
    } else if (format == MPOS_PIN_FORMAT_4) {
        for (size_t i = 16; i < 32; i++) {
            fill[fill_len++] = nibble(field, i);
        }
    }
    check(mpos_pin_clear_block_encode(format, pin, pan, format == MPOS_PIN_FORMAT_0 ? NULL : fill,
                                      fill_len, again, &again_len) == MPOS_OK);
    check(again_len == len && memcmp(again, block, len) == 0);
    /* The PIN field alone decodes to the same PIN. */
    char pin2[MPOS_PIN_BUF_LEN];
    check(mpos_pin_field_decode(format, field, len, pin2) == MPOS_OK);
    check(memcmp(pin, pin2, MPOS_PIN_BUF_LEN) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum mpos_pin_format formats[4] = {MPOS_PIN_FORMAT_0, MPOS_PIN_FORMAT_1,
                                                    MPOS_PIN_FORMAT_3, MPOS_PIN_FORMAT_4};
    if (size < 2) {
        return 0;
    }
    enum mpos_pin_format format = formats[data[0] & 3];
    int digits_pan = (data[0] & 4) != 0;
    int via_cipher = (data[0] & 8) != 0;
    size_t pan_len = data[1] % (FUZZ_PAN_MAX + 1);
    data += 2;
    size -= 2;
    if (pan_len > size) {
        pan_len = size;
    }
    char pan[FUZZ_PAN_MAX + 1];
    for (size_t i = 0; i < pan_len; i++) {
        pan[i] = digits_pan ? (char)('0' + data[i] % 10) : (char)data[i];
    }
    pan[pan_len] = '\0';
    data += pan_len;
    size -= pan_len;

    /* Clear-block decoder. */
    char pin[MPOS_PIN_BUF_LEN];
    memset(pin, 'x', sizeof(pin));
    int rc = mpos_pin_clear_block_decode(format, data, size, pan, pin);
    if (rc == MPOS_OK) {
        check(size == mpos_pin_block_len(format));
        check(pin_out_well_formed(pin));
        check(format == MPOS_PIN_FORMAT_1 || format == MPOS_PIN_FORMAT_4 ||
              mpos_pin_pan_valid(pan));
        check_round_trip(format, data, size, pan, pin);
    } else {
        check(rc == MPOS_ERR_LENGTH || rc == MPOS_ERR_PAN || rc == MPOS_ERR_DECODE);
        check(all_zero(pin, sizeof(pin)));
    }

    /* PIN-field decoder on the same bytes. */
    memset(pin, 'x', sizeof(pin));
    rc = mpos_pin_field_decode(format, data, size, pin);
    if (rc == MPOS_OK) {
        check(pin_out_well_formed(pin));
    } else {
        check(rc == MPOS_ERR_LENGTH || rc == MPOS_ERR_DECODE);
        check(all_zero(pin, sizeof(pin)));
    }

    /* The whole decryption path under a fixed key. */
    if (via_cipher) {
        static const uint8_t key[16] = {0x04, 0x26, 0x66, 0xB4, 0x91, 0x84, 0xCF, 0x5C,
                                        0x68, 0xDE, 0x96, 0x28, 0xD0, 0x39, 0x7B, 0x36};
        if (!cc_ready) {
            check(mpos_crypto_init(&cc) == MPOS_OK);
            cc_ready = 1;
        }
        enum mpos_cipher cipher = format == MPOS_PIN_FORMAT_4 ? MPOS_CIPHER_AES : MPOS_CIPHER_TDES;
        memset(pin, 'x', sizeof(pin));
        rc = mpos_pin_block_decrypt(&cc, format, cipher, key, sizeof(key), data, size, pan, pin);
        if (rc == MPOS_OK) {
            check(pin_out_well_formed(pin));
        } else {
            check(rc == MPOS_ERR_LENGTH || rc == MPOS_ERR_PAN || rc == MPOS_ERR_DECODE);
            check(all_zero(pin, sizeof(pin)));
        }
    }
    mpos_cleanse(pin, sizeof(pin));
    return 0;
}
