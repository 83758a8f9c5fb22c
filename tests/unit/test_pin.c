/* Unit tests: ISO 9564-1 PIN blocks (lib/pin). Known answers from ANSI X9.24-1-2009 A.4
 * (format 0, TDES) and the ANSI X9.24-3-2017 supplement test vectors (format 4, AES), both as
 * listed in published.tsv; every pin line of published.tsv is also replayed through the C API.
 * Then round trips over every format, cipher, key, PIN length and PAN length; argument errors;
 * single-bit flips; the random fill; and (under valgrind) a constant-time check of decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/pin.h"
#include "mpos/util.h"
#include "testutil.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

static mpos_crypto_ctx cc;

static int setup(void **state)
{
    (void)state;
    return mpos_crypto_init(&cc) == MPOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    return 0;
}

/* Hex digits to fill nibbles, one per byte (odd counts allowed). */
static size_t nibbles_from_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        char c = hex[i];
        out[i] = (uint8_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return n;
}

static void random_digits(char *out, size_t n)
{
    uint8_t r[32];
    assert_true(n < sizeof(r));
    assert_int_equal(mpos_random_bytes(r, n), MPOS_OK);
    for (size_t i = 0; i < n; i++) {
        out[i] = (char)('0' + r[i] % 10);
    }
    out[n] = '\0';
}

static void expect_hex(const uint8_t *got, size_t got_len, const char *hex);

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

/* ---- Published vectors (published.tsv), as C API calls ---------------------------------- */

struct pin_vector {
    const char *key, *block, *pan, *pin;
};

/* ANSI X9.24-1-2009 A.4: format 0, PIN 1234, PAN 4012345678909, under the PIN keys of the
 * DUKPT example (one per transaction). */
static const struct pin_vector x9_24_1_format0[] = {
    {"042666B49184CF5C68DE9628D0397B36", "1B9C1845EB993A7A", "4012345678909", "1234"},
    {"C46551CEF9FD244FAA9AD834130D3B38", "10A01C8D02C69107", "4012345678909", "1234"},
    {"0DF3D9422ACA561A47676D07AD6BAD05", "18DC07B94797B466", "4012345678909", "1234"},
    {"27F66D5244FF621EAA6F6120EDEB427F", "50E55547A5027551", "4012345678909", "1234"},
    {"59598DCBD9BD943F94165CE453585FA8", "D5D9638559EF53D6", "4012345678909", "1234"},
    {"E161D1956A61F62DF37AFD7F9CC36965", "72105C22EBC791E6", "4012345678909", "1234"},
    {"F9CDFEBF4F5B1D61B3EC12454527E189", "33365F5CC6F23C35", "4012345678909", "1234"},
    {"5BEE92627E9782A3911BF619DF72CAC4", "3A86BF003F835C9D", "4012345678909", "1234"},
    {"906AAC1751D497E5144D52C76C6E1F68", "1A4C10AFBA03A430", "4012345678909", "1234"},
    {"AA4D58DB653EC7B548C75F2F047DD24A", "73EC88AD0AC5830E", "4012345678909", "1234"},
};

/* ANSI X9.24-3-2017 supplement test vectors: format 4 (AES-128 PIN keys of the AES DUKPT
 * example), PIN 1234, PAN 4111111111111111. The random half is not published: decrypt only. */
static const struct pin_vector x9_24_3_format4[] = {
    {"AF8CB133A78F8DC2D1359F18527593FB", "A912150391AB65A67E52883D81CE2D15", "4111111111111111",
     "1234"},
    {"D30BDC73EC9714B000BEC66BDB7B6D09", "52A00503BD34BA1383F6A7EE9FE2547F", "4111111111111111",
     "1234"},
    {"7D69F01F3B45449F62C7816ECE723268", "A5A27E82B43A9A866A93D7ABE89CEF93", "4111111111111111",
     "1234"},
    {"91A0588318EC2673214271F70137896E", "71B3D0528669498777555A8BE6698E44", "4111111111111111",
     "1234"},
    {"35A43BC9EFEB09C756204B57E3FB7D4D", "881A7F77A2E04E5BEA985E342FD0B628", "4111111111111111",
     "1234"},
    {"02DCC6CD1201A3A2CA7099559C862123", "BDC1C3871AFB0B340AA5B5CEFD08695E", "4111111111111111",
     "1234"},
    {"6ECF912F3B18CA11A7A27BB60705FD09", "4A8E6B8C7DBEE6CBA6DC774F0CB83396", "4111111111111111",
     "1234"},
    {"4D9DF3FBEE3448FC3E676D04320A90F5", "8308BB857C17F390369F761F8EB358FA", "4111111111111111",
     "1234"},
};

static void test_x9_24_1_format0(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(x9_24_1_format0) / sizeof(x9_24_1_format0[0]); v++) {
        const struct pin_vector *t = &x9_24_1_format0[v];
        uint8_t key[16], expect[8], block[MPOS_PIN_BLOCK_MAX_LEN], clear[8];
        char pin[MPOS_PIN_BUF_LEN];
        size_t len = 0;
        tu_hex(t->key, key, sizeof(key));
        tu_hex(t->block, expect, sizeof(expect));
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                                t->pin, t->pan, NULL, 0, block, &len),
                         MPOS_OK);
        assert_int_equal(len, 8);
        assert_memory_equal(block, expect, 8);
        assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                                expect, 8, t->pan, pin),
                         MPOS_OK);
        assert_string_equal(pin, t->pin);
        /* X9.24-1-2009 A.4: every block deciphers to the clear PIN block 041274EDCBA9876F. */
        uint8_t clear_expect[8];
        tu_hex("041274EDCBA9876F", clear_expect, sizeof(clear_expect));
        assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 0, key, 16, expect, clear, 8),
                         MPOS_OK);
        assert_memory_equal(clear, clear_expect, 8);
    }
}

static void test_x9_24_3_format4(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(x9_24_3_format4) / sizeof(x9_24_3_format4[0]); v++) {
        const struct pin_vector *t = &x9_24_3_format4[v];
        uint8_t key[16], block[16], inter[16], pan_field[16], field[16];
        char pin[MPOS_PIN_BUF_LEN];
        size_t len = 0;
        tu_hex(t->key, key, sizeof(key));
        tu_hex(t->block, block, sizeof(block));
        assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                                block, 16, t->pan, pin),
                         MPOS_OK);
        assert_string_equal(pin, t->pin);
        /* The first half of the deciphered PIN field is 4 4 1234 A..A (ISO 9564-1 9.4.2.2.2). */
        assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 0, key, 16, block, inter, 16),
                         MPOS_OK);
        assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_4, t->pan, pan_field, &len),
                         MPOS_OK);
        mpos_xor(inter, pan_field, 16);
        assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 0, key, 16, inter, field, 16),
                         MPOS_OK);
        uint8_t half[8];
        tu_hex("441234AAAAAAAAAA", half, sizeof(half));
        assert_memory_equal(field, half, 8);
        /* Re-encrypting with the recovered random half gives the published block back. */
        uint8_t fill[16], again[MPOS_PIN_BLOCK_MAX_LEN];
        for (size_t i = 0; i < 8; i++) {
            fill[2 * i] = (uint8_t)(field[8 + i] >> 4);
            fill[2 * i + 1] = (uint8_t)(field[8 + i] & 0x0F);
        }
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                                t->pin, t->pan, fill, 16, again, &len),
                         MPOS_OK);
        assert_int_equal(len, 16);
        assert_memory_equal(again, block, 16);
    }
}

/* Cross-checks computed with the openssl command line (enc -sm4-ecb / -aes-128-ecb /
 * -des-ede3, -nopad) following ISO 9564-1:2017 9.4.2.3 and 9.3.5.1 by hand, for the cipher
 * options that have no published vector: format 4 with SM4 and AES, format 3 with 3-key TDES. */
static void test_openssl_cross_checks(void **state)
{
    (void)state;
    uint8_t key[24], fill[MPOS_PIN_FILL_MAX_LEN], block[MPOS_PIN_BLOCK_MAX_LEN];
    size_t len = 0, fl;
    char out[MPOS_PIN_BUF_LEN];
    tu_hex("AF8CB133A78F8DC2D1359F18527593FB", key, sizeof(key));
    fl = nibbles_from_hex("0011223344556677", fill, sizeof(fill));
    /* PIN field 4C123456789012AA0011223344556677, PAN field 44111111111111111000000000000000 */
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, key, 16,
                                            "123456789012", "4111111111111111", fill, fl, block,
                                            &len),
                     MPOS_OK);
    expect_hex(block, len, "ED5F999A6DBB6BE21480569771C69351");
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, key, 16, block,
                                            len, "4111111111111111", out),
                     MPOS_OK);
    assert_string_equal(out, "123456789012");
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                            "123456789012", "4111111111111111", fill, fl, block,
                                            &len),
                     MPOS_OK);
    expect_hex(block, len, "B6EE69A75028CE5DFB779907AA8737C5");
    /* Clear block 341274B9F9B9D35D (test_fields_known) under a 3-key TDES key. */
    tu_hex("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123", key, sizeof(key));
    fl = nibbles_from_hex("ABCDEFABCD", fill, sizeof(fill));
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key, 24,
                                            "1234", "4012345678909", fill, fl, block, &len),
                     MPOS_OK);
    expect_hex(block, len, "7009259D2845D21C");
}

/* Replays every `pin` line of published.tsv (args TAB expected TAB source) through the C API. */
static int replay_pin_line(char *args, const char *expect)
{
    char *tok[32];
    size_t nt = 0;
    for (char *p = strtok(args, " "); p != NULL && nt < 32; p = strtok(NULL, " ")) {
        tok[nt++] = p;
    }
    if (nt < 2 || strcmp(tok[0], "pin") != 0) {
        return 0;
    }
    const char *format_s = NULL, *pin = NULL, *pan = NULL, *key_s = NULL, *cipher_s = NULL,
               *fill_s = NULL, *block_s = NULL;
    for (size_t i = 2; i + 1 < nt; i += 2) {
        const char *o = tok[i], *v = tok[i + 1];
        if (strcmp(o, "--format") == 0) {
            format_s = v;
        } else if (strcmp(o, "--pin") == 0) {
            pin = v;
        } else if (strcmp(o, "--pan") == 0) {
            pan = v;
        } else if (strcmp(o, "--key") == 0) {
            key_s = v;
        } else if (strcmp(o, "--cipher") == 0) {
            cipher_s = v;
        } else if (strcmp(o, "--fill") == 0) {
            fill_s = v;
        } else if (strcmp(o, "--block") == 0) {
            block_s = v;
        } else {
            fail_msg("published.tsv: unknown pin option %s", o);
        }
    }
    assert_non_null(format_s);
    assert_non_null(key_s);
    enum mpos_pin_format format = (enum mpos_pin_format)atoi(format_s);
    enum mpos_cipher cipher = format == MPOS_PIN_FORMAT_4 ? MPOS_CIPHER_AES : MPOS_CIPHER_TDES;
    if (cipher_s != NULL) {
        cipher = strcmp(cipher_s, "aes") == 0   ? MPOS_CIPHER_AES
                 : strcmp(cipher_s, "sm4") == 0 ? MPOS_CIPHER_SM4
                                                : MPOS_CIPHER_TDES;
    }
    uint8_t key[32], block[MPOS_PIN_BLOCK_MAX_LEN], want[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t fill[MPOS_PIN_FILL_MAX_LEN];
    size_t key_len = tu_hex(key_s, key, sizeof(key));
    size_t fill_len = fill_s != NULL ? nibbles_from_hex(fill_s, fill, sizeof(fill)) : 0;
    if (strcmp(tok[1], "encrypt") == 0) {
        size_t len = 0;
        assert_non_null(pin);
        if (fill_s == NULL && format != MPOS_PIN_FORMAT_0) {
            fail_msg("published.tsv: format %d encrypt without --fill is not deterministic",
                     (int)format);
        }
        assert_int_equal(mpos_pin_block_encrypt(&cc, format, cipher, key, key_len, pin, pan,
                                                fill_s != NULL ? fill : NULL, fill_len, block,
                                                &len),
                         MPOS_OK);
        size_t want_len = tu_hex(expect, want, sizeof(want));
        assert_int_equal(len, want_len);
        assert_memory_equal(block, want, len);
    } else {
        char out[MPOS_PIN_BUF_LEN];
        assert_string_equal(tok[1], "decrypt");
        assert_non_null(block_s);
        size_t block_len = tu_hex(block_s, block, sizeof(block));
        assert_int_equal(
            mpos_pin_block_decrypt(&cc, format, cipher, key, key_len, block, block_len, pan, out),
            MPOS_OK);
        assert_string_equal(out, expect);
    }
    return 1;
}

static void test_published_file(void **state)
{
    (void)state;
    const char *path = tu_published_vectors();
    if (path == NULL) {
        skip();
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    unsigned count = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || strncmp(line, "pin ", 4) != 0) {
            continue;
        }
        char *tab1 = strchr(line, '\t');
        assert_non_null(tab1);
        *tab1 = '\0';
        char *expect = tab1 + 1;
        char *tab2 = strchr(expect, '\t');
        assert_non_null(tab2);
        *tab2 = '\0';
        count += (unsigned)replay_pin_line(line, expect);
    }
    fclose(f);
    assert_true(count >= 28); /* 20 format 0 (X9.24-1) + 8 format 4 (X9.24-3) at the time */
}

/* ---- Pure encoders: known fields -------------------------------------------------------- */

static void expect_hex(const uint8_t *got, size_t got_len, const char *hex)
{
    uint8_t want[MPOS_PIN_BLOCK_MAX_LEN];
    size_t n = tu_hex(hex, want, sizeof(want));
    assert_int_equal(got_len, n);
    assert_memory_equal(got, want, n);
}

static void test_fields_known(void **state)
{
    (void)state;
    uint8_t out[MPOS_PIN_BLOCK_MAX_LEN], fill[MPOS_PIN_FILL_MAX_LEN];
    size_t len = 0;
    char pin[MPOS_PIN_BUF_LEN];

    /* ANSI X9.24-1-2009 A.4: clear PIN block of PIN 1234, PAN 4012345678909. */
    assert_int_equal(
        mpos_pin_clear_block_encode(MPOS_PIN_FORMAT_0, "1234", "4012345678909", NULL, 0, out, &len),
        MPOS_OK);
    expect_hex(out, len, "041274EDCBA9876F");
    /* Worked example of the EFTlab PIN block knowledge base (ISO 9564-1 format 0):
     * PIN 1234, PAN 43219876543210987 -> 0412AC89ABCDEF67. */
    assert_int_equal(mpos_pin_clear_block_encode(MPOS_PIN_FORMAT_0, "1234", "43219876543210987",
                                                 NULL, 0, out, &len),
                     MPOS_OK);
    expect_hex(out, len, "0412AC89ABCDEF67");
    assert_int_equal(
        mpos_pin_clear_block_decode(MPOS_PIN_FORMAT_0, out, 8, "43219876543210987", pin), MPOS_OK);
    assert_string_equal(pin, "1234");

    /* PAN fields at the length limits (ISO 9564-1:2017 9.3.2.3 and 9.4.2.2.3). */
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_0, "123456789012", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "0000012345678901");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_3, "1234567890123", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "0000123456789012");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_0, "1234567890123456789", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "0000789012345678");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_4, "4111111111111111", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "44111111111111111000000000000000");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_4, "123456789012", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "01234567890120000000000000000000");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_4, "1234567890123456789", out, &len),
                     MPOS_OK);
    expect_hex(out, len, "71234567890123456789000000000000");
    assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_1, "4111111111111111", out, &len),
                     MPOS_ERR_ARG);

    /* PIN fields with explicit fill (ISO 9564-1:2017 9.3.3, 9.3.5.2, 9.4.2.2.2). */
    size_t fl = nibbles_from_hex("0123456789", fill, sizeof(fill));
    assert_int_equal(mpos_pin_field_encode(MPOS_PIN_FORMAT_1, "1234", fill, fl, out, &len),
                     MPOS_OK);
    expect_hex(out, len, "1412340123456789");
    fl = nibbles_from_hex("ABCDEFA", fill, sizeof(fill));
    assert_int_equal(mpos_pin_field_encode(MPOS_PIN_FORMAT_3, "1234567", fill, fl, out, &len),
                     MPOS_OK);
    expect_hex(out, len, "371234567ABCDEFA");
    fl = nibbles_from_hex("0011223344556677", fill, sizeof(fill));
    assert_int_equal(mpos_pin_field_encode(MPOS_PIN_FORMAT_4, "123456789012", fill, fl, out, &len),
                     MPOS_OK);
    expect_hex(out, len, "4C123456789012AA0011223344556677");
    assert_int_equal(mpos_pin_field_encode(MPOS_PIN_FORMAT_0, "123456789012", NULL, 0, out, &len),
                     MPOS_OK);
    expect_hex(out, len, "0C123456789012FF");
    /* Format 3 clear block = PIN field XOR PAN field. */
    fl = nibbles_from_hex("ABCDEFABCD", fill, sizeof(fill));
    assert_int_equal(mpos_pin_clear_block_encode(MPOS_PIN_FORMAT_3, "1234", "4012345678909", fill,
                                                 fl, out, &len),
                     MPOS_OK);
    /* 341234ABCDEFABCD XOR 0000401234567890 */
    expect_hex(out, len, "341274B9F9B9D35D");
    assert_int_equal(mpos_pin_clear_block_decode(MPOS_PIN_FORMAT_3, out, 8, "4012345678909", pin),
                     MPOS_OK);
    assert_string_equal(pin, "1234");
}

/* ---- Round trips -------------------------------------------------------------------------- */

struct cipher_case {
    enum mpos_pin_format format;
    enum mpos_cipher cipher;
    size_t key_len;
};

static const struct cipher_case cipher_cases[] = {
    {MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, 16}, {MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, 24},
    {MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, 16}, {MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, 24},
    {MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, 16}, {MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, 24},
    {MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, 16},  {MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, 24},
    {MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, 32},  {MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, 16},
};
#define N_CIPHER_CASES (sizeof(cipher_cases) / sizeof(cipher_cases[0]))

static void test_round_trips(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CIPHER_CASES; c++) {
        const struct cipher_case *k = &cipher_cases[c];
        uint8_t key[32];
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        for (size_t pin_len = MPOS_PIN_MIN_LEN; pin_len <= MPOS_PIN_MAX_LEN; pin_len++) {
            for (size_t pan_len = MPOS_PIN_PAN_MIN_LEN; pan_len <= MPOS_PIN_PAN_MAX_LEN;
                 pan_len++) {
                char pin[MPOS_PIN_BUF_LEN], pan[MPOS_PIN_PAN_MAX_LEN + 1];
                char out[MPOS_PIN_BUF_LEN];
                uint8_t block[MPOS_PIN_BLOCK_MAX_LEN], clear[MPOS_PIN_BLOCK_MAX_LEN];
                uint8_t fill[MPOS_PIN_FILL_MAX_LEN];
                size_t len = 0, clen = 0, fl = 0;
                random_digits(pin, pin_len);
                random_digits(pan, pan_len);
                /* Random fill. */
                assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                        pin, pan, NULL, 0, block, &len),
                                 MPOS_OK);
                assert_int_equal(len, mpos_pin_block_len(k->format));
                assert_int_equal(mpos_pin_block_decrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                        block, len, pan, out),
                                 MPOS_OK);
                assert_string_equal(out, pin);
                /* Explicit fill: encrypt equals the cipher over the clear block (formats 0, 1,
                 * 3), and the clear encoders round-trip. */
                assert_int_equal(mpos_pin_fill_random(k->format, pin_len, fill, &fl), MPOS_OK);
                assert_int_equal(fl, mpos_pin_fill_len(k->format, pin_len));
                assert_int_equal(mpos_pin_block_encrypt(
                                     &cc, k->format, k->cipher, key, k->key_len, pin, pan,
                                     k->format == MPOS_PIN_FORMAT_0 ? NULL : fill, fl, block, &len),
                                 MPOS_OK);
                assert_int_equal(
                    mpos_pin_clear_block_encode(k->format, pin, pan,
                                                k->format == MPOS_PIN_FORMAT_0 ? NULL : fill, fl,
                                                clear, &clen),
                    MPOS_OK);
                assert_int_equal(clen, len);
                if (k->format != MPOS_PIN_FORMAT_4) {
                    uint8_t enc[8];
                    assert_int_equal(
                        mpos_cipher_ecb(&cc, k->cipher, 1, key, k->key_len, clear, enc, 8),
                        MPOS_OK);
                    assert_memory_equal(enc, block, 8);
                }
                assert_int_equal(mpos_pin_clear_block_decode(k->format, clear, clen, pan, out),
                                 MPOS_OK);
                assert_string_equal(out, pin);
                assert_int_equal(mpos_pin_block_decrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                        block, len, pan, out),
                                 MPOS_OK);
                assert_string_equal(out, pin);
                /* Format 1 ignores the PAN entirely. */
                if (k->format == MPOS_PIN_FORMAT_1) {
                    assert_int_equal(mpos_pin_block_decrypt(&cc, k->format, k->cipher, key,
                                                            k->key_len, block, len, NULL, out),
                                     MPOS_OK);
                    assert_string_equal(out, pin);
                }
            }
        }
    }
}

/* A block decrypted under the wrong key or with the wrong PAN is MPOS_ERR_DECODE (or, rarely
 * for the wrong key, a different PIN), and pin_out is then zeros. */
static void test_wrong_key_or_pan(void **state)
{
    (void)state;
    unsigned rejected = 0, total = 0;
    for (size_t c = 0; c < N_CIPHER_CASES; c++) {
        const struct cipher_case *k = &cipher_cases[c];
        for (unsigned round = 0; round < 50; round++) {
            uint8_t key[32], other[32], block[MPOS_PIN_BLOCK_MAX_LEN];
            char out[MPOS_PIN_BUF_LEN];
            size_t len = 0;
            assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
            memcpy(other, key, sizeof(other));
            other[round % k->key_len] ^= 0x02; /* not a DES parity bit */
            assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                    "24680", "5432109876543210", NULL, 0, block,
                                                    &len),
                             MPOS_OK);
            int rc = mpos_pin_block_decrypt(&cc, k->format, k->cipher, other, k->key_len, block,
                                            len, "5432109876543210", out);
            total++;
            if (rc == MPOS_ERR_DECODE) {
                rejected++;
                assert_true(all_zero(out, sizeof(out)));
            } else {
                assert_int_equal(rc, MPOS_OK);
                assert_string_not_equal(out, "24680");
            }
            if (k->format != MPOS_PIN_FORMAT_1) {
                /* A PAN differing in a digit that the PAN field lays over a PIN digit (in
                 * format 3 a difference over the fill can go unseen: B XOR 1 is A). */
                rc = mpos_pin_block_decrypt(&cc, k->format, k->cipher, key, k->key_len, block, len,
                                            "5439109876543210", out);
                if (rc == MPOS_ERR_DECODE) {
                    assert_true(all_zero(out, sizeof(out)));
                } else {
                    assert_int_equal(rc, MPOS_OK);
                    assert_string_not_equal(out, "24680");
                }
            }
        }
    }
    /* Formats 0 and 3 leave the check digit out of the PAN field (ISO 9564-1:2017 9.3.2.3):
     * a PAN differing only there decodes to the same PIN. */
    {
        uint8_t key[16], block[MPOS_PIN_BLOCK_MAX_LEN];
        char out[MPOS_PIN_BUF_LEN];
        size_t len = 0;
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                                "24680", "5432109876543210", NULL, 0, block, &len),
                         MPOS_OK);
        assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                                block, len, "5432109876543217", out),
                         MPOS_OK);
        assert_string_equal(out, "24680");
    }
    /* Format 1 accepts any fill, so a wrong key is not always rejected; most are. */
    assert_true(rejected * 10 > total * 9);
}

/* ---- Negative cases ----------------------------------------------------------------------- */

static void test_bad_arguments(void **state)
{
    (void)state;
    uint8_t key[32] = {0}, block[MPOS_PIN_BLOCK_MAX_LEN], fill[MPOS_PIN_FILL_MAX_LEN];
    char out[MPOS_PIN_BUF_LEN];
    size_t len = 99;
    const char *pan = "4012345678909";
    memset(fill, 0x0A, sizeof(fill));
    tu_hex("042666B49184CF5C68DE9628D0397B36", key, sizeof(key));

    /* PIN length and digits. */
    const char *bad_pins[] = {"", "123", "1234567890123", "12a4", "12 4", "-123", "１２３４"};
    for (size_t i = 0; i < sizeof(bad_pins) / sizeof(bad_pins[0]); i++) {
        for (size_t c = 0; c < N_CIPHER_CASES; c++) {
            const struct cipher_case *k = &cipher_cases[c];
            memset(block, 0x55, sizeof(block));
            assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                    bad_pins[i], pan, NULL, 0, block, &len),
                             MPOS_ERR_PIN);
            assert_int_equal(len, 0);
            assert_true(all_zero(block, sizeof(block)));
            assert_int_equal(mpos_pin_field_encode(k->format, bad_pins[i], fill,
                                                   k->format == MPOS_PIN_FORMAT_4 ? 16 : 10, block,
                                                   &len),
                             MPOS_ERR_PIN);
        }
    }
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16, NULL,
                                            pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);

    /* PAN length and digits (formats 0, 3, 4); format 1 ignores the PAN. */
    const char *bad_pans[] = {"", "40123456789", "40123456789012345678", "4012X45678909",
                              "401234567890 "};
    for (size_t i = 0; i < sizeof(bad_pans) / sizeof(bad_pans[0]); i++) {
        for (size_t c = 0; c < N_CIPHER_CASES; c++) {
            const struct cipher_case *k = &cipher_cases[c];
            int want = k->format == MPOS_PIN_FORMAT_1 ? MPOS_OK : MPOS_ERR_PAN;
            assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                    "1234", bad_pans[i], NULL, 0, block, &len),
                             want);
            assert_int_equal(mpos_pin_block_decrypt(&cc, k->format, k->cipher, key, k->key_len,
                                                    block, mpos_pin_block_len(k->format),
                                                    bad_pans[i], out),
                             k->format == MPOS_PIN_FORMAT_1 ? MPOS_OK : MPOS_ERR_PAN);
        }
        assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_0, bad_pans[i], block, &len),
                         MPOS_ERR_PAN);
        assert_int_equal(mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_4, bad_pans[i], block, &len),
                         MPOS_ERR_PAN);
        assert_int_equal(mpos_pin_clear_block_decode(MPOS_PIN_FORMAT_0, block, 8, bad_pans[i], out),
                         MPOS_ERR_PAN);
    }
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            "1234", NULL, NULL, 0, block, &len),
                     MPOS_ERR_PAN);

    /* Fill: none with format 0; exact length; format 3 only A-F; nibbles only. */
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, fill, 10, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 10, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, fill, 4, block, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, fill, 11, block, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                            "1234", pan, fill, 4, block, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                            "1234", pan, fill, 15, block, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 10, block, &len),
                     MPOS_ERR_ARG);
    uint8_t f3[10];
    for (uint8_t v = 0; v < 0x0A; v++) {
        memset(f3, 0x0B, sizeof(f3));
        f3[9] = v;
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key, 16,
                                                "1234", pan, f3, 10, block, &len),
                         MPOS_ERR_FORMAT);
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, key, 16,
                                                "1234", pan, f3, 10, block, &len),
                         MPOS_OK);
    }
    f3[0] = 0x10;
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_1, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, f3, 10, block, &len),
                     MPOS_ERR_FORMAT);
    fill[3] = 0xFA;
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                            "1234", pan, fill, 16, block, &len),
                     MPOS_ERR_FORMAT);
    fill[3] = 0x0A;

    /* Key lengths and ciphers per format. */
    const size_t tdes_bad[] = {0, 8, 15, 17, 32};
    for (size_t i = 0; i < sizeof(tdes_bad) / sizeof(tdes_bad[0]); i++) {
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key,
                                                tdes_bad[i], "1234", pan, NULL, 0, block, &len),
                         MPOS_ERR_KEY);
        assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key,
                                                tdes_bad[i], block, 8, pan, out),
                         MPOS_ERR_KEY);
    }
    const size_t aes_bad[] = {0, 8, 15, 20, 33};
    for (size_t i = 0; i < sizeof(aes_bad) / sizeof(aes_bad[0]); i++) {
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key,
                                                aes_bad[i], "1234", pan, NULL, 0, block, &len),
                         MPOS_ERR_KEY);
    }
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, key, 24,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, key, 32, block,
                                            16, pan, out),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_AES, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_SM4, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, (enum mpos_pin_format)2, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, (enum mpos_cipher)7, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);

    /* Block lengths. */
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            block, 7, pan, out),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            block, 16, pan, out),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, block,
                                            8, pan, out),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_field_decode(MPOS_PIN_FORMAT_4, block, 8, out), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pin_clear_block_decode(MPOS_PIN_FORMAT_1, block, 0, NULL, out),
                     MPOS_ERR_LENGTH);

    /* NULL pointers. */
    assert_int_equal(mpos_pin_block_encrypt(NULL, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, NULL, 16,
                                            "1234", pan, NULL, 0, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            "1234", pan, NULL, 0, NULL, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16, NULL,
                                            8, pan, out),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            block, 8, pan, NULL),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_field_decode(MPOS_PIN_FORMAT_0, NULL, 8, out), MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_field_encode(MPOS_PIN_FORMAT_1, "1234", NULL, 10, block, &len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_3, 3, fill, &len), MPOS_ERR_PIN);
    assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_3, 13, fill, &len), MPOS_ERR_PIN);
    assert_int_equal(mpos_pin_fill_random((enum mpos_pin_format)5, 4, fill, &len), MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_block_len((enum mpos_pin_format)2), 0);
    assert_int_equal(mpos_pin_fill_len(MPOS_PIN_FORMAT_1, 13), 0);
    assert_int_equal(mpos_pin_fill_len(MPOS_PIN_FORMAT_0, 4), 0);
    assert_int_equal(mpos_pin_fill_len(MPOS_PIN_FORMAT_3, 12), 2);
    assert_int_equal(mpos_pin_fill_len(MPOS_PIN_FORMAT_4, 12), 16);
}

/* Hand-built clear blocks that break exactly one rule each are all rejected, with zeros out. */
static void test_decode_rejects(void **state)
{
    (void)state;
    struct {
        enum mpos_pin_format format;
        const char *field;
    } cases[] = {
        {MPOS_PIN_FORMAT_0, "141234FFFFFFFFFF"},                 /* control nibble */
        {MPOS_PIN_FORMAT_0, "031234FFFFFFFFFF"},                 /* N = 3 */
        {MPOS_PIN_FORMAT_0, "001234FFFFFFFFFF"},                 /* N = 0 */
        {MPOS_PIN_FORMAT_0, "0D1234567890123F"},                 /* N = 13 */
        {MPOS_PIN_FORMAT_0, "0F1234567890123F"},                 /* N = 15 */
        {MPOS_PIN_FORMAT_0, "04123AFFFFFFFFFF"},                 /* PIN digit A */
        {MPOS_PIN_FORMAT_0, "041234FFFFFFFFFE"},                 /* fill E */
        {MPOS_PIN_FORMAT_0, "0412345FFFFFFFFF"},                 /* digit where fill belongs */
        {MPOS_PIN_FORMAT_0, "0C12345678901FFF"},                 /* N = 12 with 11 digits */
        {MPOS_PIN_FORMAT_3, "341234ABCDEF9BCD"},                 /* fill 9 */
        {MPOS_PIN_FORMAT_3, "041234ABCDEFABCD"},                 /* format 0 control */
        {MPOS_PIN_FORMAT_3, "3412F4ABCDEFABCD"},                 /* PIN digit F */
        {MPOS_PIN_FORMAT_1, "04123401234567AB"},                 /* control */
        {MPOS_PIN_FORMAT_1, "1312340123456789"},                 /* N = 3 */
        {MPOS_PIN_FORMAT_1, "14B23401234567AB"},                 /* PIN digit B */
        {MPOS_PIN_FORMAT_4, "441234AAAAAAAAAB0011223344556677"}, /* fill B */
        {MPOS_PIN_FORMAT_4, "441234FFFFFFFFFF0011223344556677"}, /* fill F */
        {MPOS_PIN_FORMAT_4, "041234AAAAAAAAAA0011223344556677"}, /* control */
        {MPOS_PIN_FORMAT_4, "4D1234567890123A0011223344556677"}, /* N = 13 */
        {MPOS_PIN_FORMAT_4, "4412C4AAAAAAAAAA0011223344556677"}, /* PIN digit C */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t field[MPOS_PIN_BLOCK_MAX_LEN];
        char out[MPOS_PIN_BUF_LEN];
        size_t n = tu_hex(cases[i].field, field, sizeof(field));
        memset(out, 'x', sizeof(out));
        assert_int_equal(mpos_pin_field_decode(cases[i].format, field, n, out), MPOS_ERR_DECODE);
        assert_true(all_zero(out, sizeof(out)));
    }
    /* And the good ones next to them. */
    uint8_t field[MPOS_PIN_BLOCK_MAX_LEN];
    char out[MPOS_PIN_BUF_LEN];
    size_t n = tu_hex("1412340123456789", field, sizeof(field));
    assert_int_equal(mpos_pin_field_decode(MPOS_PIN_FORMAT_1, field, n, out), MPOS_OK);
    assert_string_equal(out, "1234");
    n = tu_hex("0C123456789012FF", field, sizeof(field));
    assert_int_equal(mpos_pin_field_decode(MPOS_PIN_FORMAT_0, field, n, out), MPOS_OK);
    assert_string_equal(out, "123456789012");
    n = tu_hex("4C123456789012AAFFFFFFFFFFFFFFFF", field, sizeof(field));
    assert_int_equal(mpos_pin_field_decode(MPOS_PIN_FORMAT_4, field, n, out), MPOS_OK);
    assert_string_equal(out, "123456789012");
}

/* Every single-bit flip of a decrypted format 0 clear block, and of the first half of a format
 * 4 PIN field, is rejected or decodes to a different PIN; flips in the format 4 random half do
 * not change the PIN (that half carries no PIN information and is not checked). Formats 1 and
 * 3 are left out on purpose: a flip inside their free fill (A <-> B in format 3) is a valid
 * block with the same PIN. */
static void check_flips(enum mpos_pin_format format, const char *pin, const char *pan)
{
    uint8_t clear[MPOS_PIN_BLOCK_MAX_LEN], fill[MPOS_PIN_FILL_MAX_LEN];
    size_t len = 0, fl = 0;
    char out[MPOS_PIN_BUF_LEN];
    assert_int_equal(mpos_pin_fill_random(format, strlen(pin), fill, &fl), MPOS_OK);
    assert_int_equal(mpos_pin_clear_block_encode(format, pin, pan,
                                                 format == MPOS_PIN_FORMAT_0 ? NULL : fill, fl,
                                                 clear, &len),
                     MPOS_OK);
    for (size_t bit = 0; bit < 8 * len; bit++) {
        clear[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
        memset(out, 'x', sizeof(out));
        int rc = mpos_pin_clear_block_decode(format, clear, len, pan, out);
        if (bit < 64) {
            if (rc == MPOS_ERR_DECODE) {
                assert_true(all_zero(out, sizeof(out)));
            } else {
                assert_int_equal(rc, MPOS_OK);
                assert_string_not_equal(out, pin);
                assert_true(mpos_pin_valid(out));
            }
        } else {
            assert_int_equal(rc, MPOS_OK);
            assert_string_equal(out, pin);
        }
        clear[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
    }
    assert_int_equal(mpos_pin_clear_block_decode(format, clear, len, pan, out), MPOS_OK);
    assert_string_equal(out, pin);
}

static void test_bit_flips(void **state)
{
    (void)state;
    const char *pins[] = {"1234",        "0000",         "9999",        "8888",      "13579",
                          "246802",      "1234567",      "90817263",    "123456789", "9876543210",
                          "01234567890", "999999999999", "888888888888"};
    const char *pans[] = {"4012345678909", "123456789012", "1234567890123456789"};
    for (size_t p = 0; p < sizeof(pins) / sizeof(pins[0]); p++) {
        for (size_t a = 0; a < sizeof(pans) / sizeof(pans[0]); a++) {
            check_flips(MPOS_PIN_FORMAT_0, pins[p], pans[a]);
            check_flips(MPOS_PIN_FORMAT_4, pins[p], pans[a]);
        }
    }
    /* Random PINs of every length too. */
    for (unsigned round = 0; round < 200; round++) {
        char pin[MPOS_PIN_BUF_LEN];
        random_digits(pin, MPOS_PIN_MIN_LEN + round % 9);
        check_flips(MPOS_PIN_FORMAT_0, pin, "5413330089020011");
        check_flips(MPOS_PIN_FORMAT_4, pin, "5413330089020011");
    }
}

/* Through the cipher as well: a flipped bit anywhere in an encrypted block never crashes and
 * never decodes to the original PIN. */
static void test_ciphertext_flips(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CIPHER_CASES; c++) {
        const struct cipher_case *k = &cipher_cases[c];
        uint8_t key[32], block[MPOS_PIN_BLOCK_MAX_LEN];
        size_t len = 0;
        char out[MPOS_PIN_BUF_LEN];
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, k->key_len, "5678",
                                                "6011000990139424", NULL, 0, block, &len),
                         MPOS_OK);
        for (size_t bit = 0; bit < 8 * len; bit++) {
            block[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
            int rc = mpos_pin_block_decrypt(&cc, k->format, k->cipher, key, k->key_len, block, len,
                                            "6011000990139424", out);
            if (rc == MPOS_ERR_DECODE) {
                assert_true(all_zero(out, sizeof(out)));
            } else {
                assert_int_equal(rc, MPOS_OK);
                assert_string_not_equal(out, "5678");
            }
            block[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
        }
    }
}

/* ---- Random fill ---------------------------------------------------------------------- */

static void test_random_fill(void **state)
{
    (void)state;
    uint8_t key[16], a[MPOS_PIN_BLOCK_MAX_LEN], b[MPOS_PIN_BLOCK_MAX_LEN];
    size_t la = 0, lb = 0;
    tu_hex("0123456789ABCDEFFEDCBA9876543210", key, sizeof(key));
    /* Fresh fill each call: formats 1, 3, 4 differ between calls; format 0 does not. */
    for (size_t c = 0; c < N_CIPHER_CASES; c++) {
        const struct cipher_case *k = &cipher_cases[c];
        if (k->key_len != 16) {
            continue;
        }
        assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, 16, "1234",
                                                "4111111111111111", NULL, 0, a, &la),
                         MPOS_OK);
        assert_int_equal(mpos_pin_block_encrypt(&cc, k->format, k->cipher, key, 16, "1234",
                                                "4111111111111111", NULL, 0, b, &lb),
                         MPOS_OK);
        assert_int_equal(la, lb);
        if (k->format == MPOS_PIN_FORMAT_0) {
            assert_memory_equal(a, b, la);
        } else {
            assert_memory_not_equal(a, b, la);
        }
    }

    /* Format 3 fill: every digit in A-F, roughly uniform (chi-square, 5 degrees of freedom,
     * 40 is far beyond the 1e-6 tail); format 1: all 16 nibbles appear; format 4: 8 bytes. */
    unsigned count3[16] = {0}, count1[16] = {0}, total3 = 0;
    unsigned draws = 20000 / tu_scale();
    for (unsigned i = 0; i < draws; i++) {
        uint8_t fill[MPOS_PIN_FILL_MAX_LEN];
        size_t fl = 0;
        size_t pin_len = MPOS_PIN_MIN_LEN + i % 9;
        assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_3, pin_len, fill, &fl), MPOS_OK);
        assert_int_equal(fl, 14 - pin_len);
        for (size_t j = 0; j < fl; j++) {
            assert_in_range(fill[j], 0x0A, 0x0F);
            count3[fill[j]]++;
            total3++;
        }
        assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_1, pin_len, fill, &fl), MPOS_OK);
        assert_int_equal(fl, 14 - pin_len);
        for (size_t j = 0; j < fl; j++) {
            assert_in_range(fill[j], 0x00, 0x0F);
            count1[fill[j]]++;
        }
        assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_4, pin_len, fill, &fl), MPOS_OK);
        assert_int_equal(fl, 16);
        assert_int_equal(mpos_pin_fill_random(MPOS_PIN_FORMAT_0, pin_len, fill, &fl), MPOS_OK);
        assert_int_equal(fl, 0);
    }
    double expect = (double)total3 / 6.0, chi = 0.0;
    for (unsigned v = 0x0A; v <= 0x0F; v++) {
        double d = (double)count3[v] - expect;
        chi += d * d / expect;
    }
    assert_true(chi < 40.0);
    for (unsigned v = 0; v < 16; v++) {
        assert_true(count1[v] > 0);
    }

    /* And in the blocks themselves: decipher format 3 blocks made with random fill and check
     * the fill nibbles of the PIN field. */
    for (unsigned i = 0; i < 2000 / tu_scale(); i++) {
        uint8_t block[MPOS_PIN_BLOCK_MAX_LEN], clear[8], pan_field[MPOS_PIN_BLOCK_MAX_LEN];
        size_t len = 0, pl = 0;
        char pin[MPOS_PIN_BUF_LEN];
        size_t pin_len = MPOS_PIN_MIN_LEN + i % 9;
        random_digits(pin, pin_len);
        assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key, 16,
                                                pin, "4012345678909", NULL, 0, block, &len),
                         MPOS_OK);
        assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 0, key, 16, block, clear, 8),
                         MPOS_OK);
        assert_int_equal(
            mpos_pin_pan_field_encode(MPOS_PIN_FORMAT_3, "4012345678909", pan_field, &pl), MPOS_OK);
        mpos_xor(clear, pan_field, 8);
        for (size_t j = 2 + pin_len; j < 16; j++) {
            uint8_t nib = (uint8_t)((j % 2 == 0 ? clear[j / 2] >> 4 : clear[j / 2]) & 0x0F);
            assert_in_range(nib, 0x0A, 0x0F);
        }
    }
}

/* ---- Constant time (valgrind) ------------------------------------------------------------- */

/* Under valgrind the decrypted block is marked undefined: memcheck then reports any branch or
 * memory index that depends on it inside the decoders (ctgrind, as Monocypher and BearSSL do).
 * Run: valgrind --error-exitcode=1 ./test_pin. Without valgrind the test is skipped. */
static void test_decode_constant_time(void **state)
{
    (void)state;
#ifdef HAVE_MEMCHECK
    if (!RUNNING_ON_VALGRIND) {
        skip();
    }
    const char *fields[] = {"041234FFFFFFFFFF",
                            "0C123456789012FF",
                            "041234FFFFFFFFFE",
                            "141234AAAAAAAAAA",
                            "341234ABCDEFABCD",
                            "F41234FFFFFFFFFF",
                            "441234AAAAAAAAAA0011223344556677"};
    const enum mpos_pin_format formats[] = {MPOS_PIN_FORMAT_0, MPOS_PIN_FORMAT_1, MPOS_PIN_FORMAT_3,
                                            MPOS_PIN_FORMAT_4};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
            uint8_t field[MPOS_PIN_BLOCK_MAX_LEN];
            char out[MPOS_PIN_BUF_LEN];
            size_t n = tu_hex(fields[i], field, sizeof(field));
            if (n != mpos_pin_block_len(formats[f])) {
                continue;
            }
            VALGRIND_MAKE_MEM_UNDEFINED(field, sizeof(field));
            int rc = mpos_pin_field_decode(formats[f], field, n, out);
            int rc2 = mpos_pin_clear_block_decode(formats[f], field, n, "4012345678909", out);
            /* The result itself is public: declassify it, and the PIN, before looking. */
            VALGRIND_MAKE_MEM_DEFINED(&rc, sizeof(rc));
            VALGRIND_MAKE_MEM_DEFINED(&rc2, sizeof(rc2));
            VALGRIND_MAKE_MEM_DEFINED(out, sizeof(out));
            assert_true(rc == MPOS_OK || rc == MPOS_ERR_DECODE);
            assert_true(rc2 == MPOS_OK || rc2 == MPOS_ERR_DECODE);
        }
    }
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x9_24_1_format0),      cmocka_unit_test(test_x9_24_3_format4),
        cmocka_unit_test(test_published_file),       cmocka_unit_test(test_fields_known),
        cmocka_unit_test(test_openssl_cross_checks), cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_wrong_key_or_pan),     cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_decode_rejects),       cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_ciphertext_flips),     cmocka_unit_test(test_random_fill),
        cmocka_unit_test(test_decode_constant_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
