/* openmpos: ISO 9564-1:2017 PIN block encoding and decoding (formats 0, 1, 3, 4). Pure
 * functions: no crypto, no random numbers. Nibble i of a field is the high half of byte i/2
 * when i is even, the low half when it is odd.
 */
#include <string.h>

#include "mpos/pin.h"
#include "mpos/util.h"

#define PIN_NIBBLES 16 /* nibbles of an 8-byte field: C, N and 14 PIN/fill positions */

static int format_known(enum mpos_pin_format format)
{
    return format == MPOS_PIN_FORMAT_0 || format == MPOS_PIN_FORMAT_1 ||
           format == MPOS_PIN_FORMAT_3 || format == MPOS_PIN_FORMAT_4;
}

static int format_has_pan(enum mpos_pin_format format)
{
    return format == MPOS_PIN_FORMAT_0 || format == MPOS_PIN_FORMAT_3;
}

static uint8_t get_nibble(const uint8_t *buf, size_t i)
{
    return (uint8_t)((i % 2 == 0 ? buf[i / 2] >> 4 : buf[i / 2]) & 0x0F);
}

/* buf must hold zeros at nibble i. */
static void put_nibble(uint8_t *buf, size_t i, unsigned v)
{
    buf[i / 2] |= (uint8_t)(i % 2 == 0 ? (v & 0x0Fu) << 4 : (v & 0x0Fu));
}

/* Constant-time masks on small values (< 2^31): 0xFF when true, 0x00 when false. */
static uint8_t ct_lt(uint32_t a, uint32_t b)
{
    return (uint8_t)(0u - ((a - b) >> 31));
}

static uint8_t ct_eq(uint32_t a, uint32_t b)
{
    return mpos_ct_byte_is_zero((uint8_t)(a ^ b));
}

size_t mpos_pin_block_len(enum mpos_pin_format format)
{
    if (!format_known(format)) {
        return 0;
    }
    return format == MPOS_PIN_FORMAT_4 ? MPOS_PIN_BLOCK4_LEN : MPOS_PIN_BLOCK_LEN;
}

size_t mpos_pin_fill_len(enum mpos_pin_format format, size_t pin_len)
{
    if (pin_len < MPOS_PIN_MIN_LEN || pin_len > MPOS_PIN_MAX_LEN) {
        return 0;
    }
    switch (format) {
    case MPOS_PIN_FORMAT_1:
    case MPOS_PIN_FORMAT_3:
        return PIN_NIBBLES - 2 - pin_len; /* ISO 9564-1:2017 9.3.3, 9.3.5.2 */
    case MPOS_PIN_FORMAT_4:
        return MPOS_PIN_FILL_MAX_LEN; /* 9.4.2.2.2: 8 random bytes in the second half */
    default:
        return 0;
    }
}

int mpos_pin_valid(const char *pin)
{
    /* ISO 9564-1:2017 8.1: a PIN has 4 to 12 decimal digits. */
    return mpos_digits_valid(pin, MPOS_PIN_MIN_LEN, MPOS_PIN_MAX_LEN);
}

int mpos_pin_pan_valid(const char *pan)
{
    return mpos_digits_valid(pan, MPOS_PIN_PAN_MIN_LEN, MPOS_PIN_PAN_MAX_LEN);
}

int mpos_pin_field_encode(enum mpos_pin_format format, const char *pin, const uint8_t *fill,
                          size_t fill_len, uint8_t field_out[MPOS_PIN_BLOCK_MAX_LEN],
                          size_t *field_len)
{
    int rc = MPOS_ERR_ARG;
    if (field_out == NULL || field_len == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(field_out, 0, MPOS_PIN_BLOCK_MAX_LEN);
    *field_len = 0;
    if (!format_known(format) || pin == NULL) {
        goto exit;
    }
    if (!mpos_pin_valid(pin)) {
        rc = MPOS_ERR_PIN;
        goto exit;
    }
    size_t n = strlen(pin);
    if (format == MPOS_PIN_FORMAT_0) {
        if (fill != NULL || fill_len != 0) {
            goto exit; /* format 0 has no choice of fill */
        }
    } else {
        if (fill == NULL) {
            goto exit;
        }
        if (fill_len != mpos_pin_fill_len(format, n)) {
            rc = MPOS_ERR_LENGTH;
            goto exit;
        }
        uint8_t bad = 0;
        for (size_t i = 0; i < fill_len; i++) {
            bad |= (uint8_t)(fill[i] > 0x0F);
            /* ISO 9564-1:2017 9.3.5.2: format 3 fill digits are 1010 to 1111. */
            bad |= (uint8_t)(format == MPOS_PIN_FORMAT_3 && fill[i] < 0x0A);
        }
        if (bad) {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
    }

    /* ISO 9564-1:2017 9.3.1: control field C = the format; then N = the PIN length. */
    put_nibble(field_out, 0, (unsigned)format);
    put_nibble(field_out, 1, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        put_nibble(field_out, 2 + i, (unsigned)(pin[i] - '0'));
    }
    /* The 14 - N PIN/fill positions after the PIN: 9.3.2.2 F; 9.3.3 and 9.3.5.2 the fill;
     * 9.4.2.2.2 A up to the end of the first half, then the 8 random bytes. */
    for (size_t i = 2 + n; i < PIN_NIBBLES; i++) {
        unsigned v = format == MPOS_PIN_FORMAT_0   ? 0x0Fu
                     : format == MPOS_PIN_FORMAT_4 ? 0x0Au
                                                   : fill[i - 2 - n];
        put_nibble(field_out, i, v);
    }
    if (format == MPOS_PIN_FORMAT_4) {
        for (size_t i = 0; i < MPOS_PIN_FILL_MAX_LEN; i++) {
            put_nibble(field_out, PIN_NIBBLES + i, fill[i]);
        }
    }
    *field_len = mpos_pin_block_len(format);
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(field_out, MPOS_PIN_BLOCK_MAX_LEN);
    }
    return rc;
}

int mpos_pin_pan_field_encode(enum mpos_pin_format format, const char *pan,
                              uint8_t field_out[MPOS_PIN_BLOCK_MAX_LEN], size_t *field_len)
{
    if (field_out == NULL || field_len == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(field_out, 0, MPOS_PIN_BLOCK_MAX_LEN);
    *field_len = 0;
    if (!format_known(format) || format == MPOS_PIN_FORMAT_1 || pan == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_pin_pan_valid(pan)) {
        return MPOS_ERR_PAN;
    }
    size_t len = strlen(pan);
    if (format == MPOS_PIN_FORMAT_4) {
        /* ISO 9564-1:2017 9.4.2.2.3: M = PAN length - 12, then the whole PAN (check digit
         * included), then zero pad to 32 nibbles. Shorter PANs (zero-padded to 12 on the left,
         * M = 0) are not accepted here: a PAN has at least 12 digits. */
        put_nibble(field_out, 0, (unsigned)(len - MPOS_PIN_PAN_MIN_LEN));
        for (size_t i = 0; i < len; i++) {
            put_nibble(field_out, 1 + i, (unsigned)(pan[i] - '0'));
        }
        *field_len = MPOS_PIN_BLOCK4_LEN;
        return MPOS_OK;
    }
    /* ISO 9564-1:2017 9.3.2.3, 9.3.5.3: 0000, then the 12 rightmost PAN digits excluding the
     * check digit, right justified and zero padded on the left (a 12-digit PAN gives 11). */
    size_t body = len - 1; /* digits before the check digit */
    for (size_t i = 0; i < 12; i++) {
        /* nibble 4 + i holds body digit body - 12 + i, when that exists */
        if (body + i >= 12) {
            put_nibble(field_out, 4 + i, (unsigned)(pan[body + i - 12] - '0'));
        }
    }
    *field_len = MPOS_PIN_BLOCK_LEN;
    return MPOS_OK;
}

/* Strict validation of a plaintext PIN field; the PIN (or zeros) goes to pin_out. No branch
 * and no memory index depends on the field's content: every check is accumulated into one
 * mask and the result is chosen with masks too (ISO 9564-1:2017 9.3.1, 9.3.2.2, 9.3.3,
 * 9.3.5.2, 9.4.2.2.2). Returns MPOS_OK or MPOS_ERR_DECODE. */
static int decode_field(enum mpos_pin_format format, const uint8_t *field,
                        char pin_out[MPOS_PIN_BUF_LEN])
{
    uint32_t n = get_nibble(field, 1);
    /* C equals the format; 4 <= N <= 12. */
    uint8_t bad = (uint8_t)~ct_eq(get_nibble(field, 0), (uint32_t)format);
    bad |= ct_lt(n, MPOS_PIN_MIN_LEN);
    bad |= (uint8_t)~ct_lt(n, MPOS_PIN_MAX_LEN + 1);
    for (size_t i = 0; i < PIN_NIBBLES - 2; i++) {
        uint32_t d = get_nibble(field, 2 + i);
        uint8_t is_pin = ct_lt((uint32_t)i, n);
        uint8_t is_digit = ct_lt(d, 10);
        uint8_t fill_ok;
        switch (format) {
        case MPOS_PIN_FORMAT_0:
            fill_ok = ct_eq(d, 0x0F);
            break;
        case MPOS_PIN_FORMAT_3:
            fill_ok = (uint8_t)~is_digit; /* A-F */
            break;
        case MPOS_PIN_FORMAT_4:
            fill_ok = ct_eq(d, 0x0A);
            break;
        default: /* format 1: any fill */
            fill_ok = 0xFF;
            break;
        }
        bad |= (uint8_t)(is_pin & ~is_digit);
        bad |= (uint8_t)(~is_pin & ~fill_ok);
        if (i < MPOS_PIN_MAX_LEN) {
            pin_out[i] = (char)(is_pin & (uint8_t)('0' + d));
        }
    }
    pin_out[MPOS_PIN_MAX_LEN] = '\0';
    /* Decide: bad is 0x00 or 0xFF. Zero the PIN on failure without a branch. */
    for (size_t i = 0; i < MPOS_PIN_MAX_LEN; i++) {
        pin_out[i] = (char)((uint8_t)pin_out[i] & (uint8_t)~bad);
    }
    return MPOS_ERR_DECODE * (int)(bad & 1u);
}

int mpos_pin_field_decode(enum mpos_pin_format format, const uint8_t *field, size_t field_len,
                          char pin_out[MPOS_PIN_BUF_LEN])
{
    if (pin_out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(pin_out, 0, MPOS_PIN_BUF_LEN);
    if (!format_known(format) || field == NULL) {
        return MPOS_ERR_ARG;
    }
    if (field_len != mpos_pin_block_len(format)) {
        return MPOS_ERR_LENGTH;
    }
    return decode_field(format, field, pin_out);
}

int mpos_pin_clear_block_encode(enum mpos_pin_format format, const char *pin, const char *pan,
                                const uint8_t *fill, size_t fill_len,
                                uint8_t block_out[MPOS_PIN_BLOCK_MAX_LEN], size_t *block_len)
{
    uint8_t pan_field[MPOS_PIN_BLOCK_MAX_LEN];
    size_t pan_len = 0;
    int rc = mpos_pin_field_encode(format, pin, fill, fill_len, block_out, block_len);
    if (rc != MPOS_OK || !format_has_pan(format)) {
        return rc;
    }
    rc = mpos_pin_pan_field_encode(format, pan, pan_field, &pan_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* ISO 9564-1:2017 9.3.2.1, 9.3.5.1: clear PIN block = PIN field XOR PAN field. */
    mpos_xor(block_out, pan_field, MPOS_PIN_BLOCK_LEN);
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(block_out, MPOS_PIN_BLOCK_MAX_LEN);
        *block_len = 0;
    }
    MPOS_WIPE_BUFFER(pan_field);
    return rc;
}

int mpos_pin_clear_block_decode(enum mpos_pin_format format, const uint8_t *block, size_t block_len,
                                const char *pan, char pin_out[MPOS_PIN_BUF_LEN])
{
    uint8_t field[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t pan_field[MPOS_PIN_BLOCK_MAX_LEN];
    size_t pan_len = 0;
    int rc = MPOS_ERR_ARG;
    if (pin_out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(pin_out, 0, MPOS_PIN_BUF_LEN);
    memset(field, 0, sizeof(field));
    memset(pan_field, 0, sizeof(pan_field));
    if (!format_known(format) || block == NULL) {
        goto exit;
    }
    if (block_len != mpos_pin_block_len(format)) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    memcpy(field, block, block_len);
    if (format_has_pan(format)) {
        rc = mpos_pin_pan_field_encode(format, pan, pan_field, &pan_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        /* ISO 9564-1:2017 9.3.2.1, 9.3.5.1: PIN field = clear block XOR PAN field. */
        mpos_xor(field, pan_field, MPOS_PIN_BLOCK_LEN);
    }
    rc = decode_field(format, field, pin_out);
exit:
    MPOS_WIPE_BUFFER(field);
    MPOS_WIPE_BUFFER(pan_field);
    return rc;
}
