/* openmpos: wipe, constant-time compare, hex and digit helpers. */
#include <string.h>

#include <openssl/crypto.h>

#include "mpos/util.h"

void mpos_cleanse(void *p, size_t len)
{
    /* OPENSSL_cleanse is written so the compiler cannot drop it (libsodium's sodium_memzero
     * and explicit_bzero do the same on other platforms). */
    if (p != NULL && len > 0) {
        OPENSSL_cleanse(p, len);
    }
}

int mpos_ct_equal(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a;
    const volatile uint8_t *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < len; i++) {
        diff |= (uint8_t)(x[i] ^ y[i]);
    }
    return (int)(1u & ((unsigned)(diff - 1u) >> 8));
}

uint8_t mpos_ct_byte_is_zero(uint8_t x)
{
    return (uint8_t)(((unsigned)x - 1u) >> 8);
}

void mpos_xor(uint8_t *a, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        a[i] ^= b[i];
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int mpos_hex_decode(const char *hex, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (hex == NULL || out_len == NULL || (out == NULL && out_cap > 0)) {
        return MPOS_ERR_ARG;
    }
    size_t n = strlen(hex);
    if (n % 2 != 0) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        if (hex_value(hex[i]) < 0) {
            return MPOS_ERR_FORMAT;
        }
    }
    if (n / 2 > out_cap) {
        return MPOS_ERR_LENGTH;
    }
    for (size_t i = 0; i < n / 2; i++) {
        out[i] = (uint8_t)((hex_value(hex[2 * i]) << 4) | hex_value(hex[2 * i + 1]));
    }
    *out_len = n / 2;
    return MPOS_OK;
}

void mpos_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
    out[2 * len] = '\0';
}

int mpos_digits_valid(const char *s, size_t min, size_t max)
{
    if (s == NULL) {
        return 0;
    }
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= max) {
            return 0;
        }
    }
    return n >= min;
}

void mpos_des_set_odd_parity(uint8_t *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)(key[i] & 0xFE);
        unsigned ones = mpos_popcount32(b);
        key[i] = (uint8_t)(b | ((ones & 1u) ^ 1u));
    }
}

void mpos_store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void mpos_store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint16_t mpos_load_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t mpos_load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

unsigned mpos_popcount32(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    return (unsigned)((((v + (v >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
}
