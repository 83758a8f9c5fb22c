/* Constant-time check in the style of Monocypher's ctgrind (style.md rule 5).
 *
 * Secret inputs are marked undefined with VALGRIND_MAKE_MEM_UNDEFINED; memcheck then reports
 * every conditional jump or move, and every memory address, that depends on them ("Conditional
 * jump or move depends on uninitialised value(s)", "Use of uninitialised value"). Each test
 * asserts that valgrind counted no new error while it ran, so the failing test names the
 * function that branched; tests/unit/CMakeLists.txt also runs valgrind with --error-exitcode=1.
 * Outside valgrind the test has nothing to prove and exits 77 (skipped).
 *
 * Declassification: the verdict of a constant-time comparison (match or not) is public by
 * design, and every verify function branches on it to choose its return code. The executable
 * is linked with -Wl,--wrap=mpos_ct_equal, so every call to mpos_ct_equal (from the modules
 * too) runs the real comparison on the undefined bytes first (a branch inside it is reported)
 * and only then marks its one-bit result defined. Nothing else is declassified: a branch on
 * the secret bytes before the comparison, or an early-exit comparison, is still caught.
 *
 * What is secret here: libcrypto's table-based DES and SM4 index memory by key and data, which
 * memcheck would report against OpenSSL, not us. So for the AES/TDES-based verify functions
 * only the value the code under test compares is marked (the received/expected MAC, check
 * value or cryptogram); keys and messages stay defined. mpos_mac_verify and the PIN-block
 * decoders are pure, so there the whole secret (computed MAC; clear PIN block) is marked.
 * Not covered: TR-31 unwrap (the received MAC is hex inside the ASCII block, whose decoding
 * rightly branches on public characters) and PIN-block decryption (libcrypto on the key).
 *
 * Proof that it can fail: built with MPOS_CT_LEAKY, the wrapper compares with an early-exit
 * loop instead; that build is registered as test_ct_valgrind_leaky with WILL_FAIL TRUE.
 * MPOS_CT_HAVE_<module> says which module libraries are linked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <valgrind/memcheck.h>

#include "mpos/crypto.h"
#include "mpos/util.h"
#include "testutil.h"
#ifdef MPOS_CT_HAVE_mac
#include "mpos/mac.h"
#endif
#ifdef MPOS_CT_HAVE_kcv
#include "mpos/kcv.h"
#endif
#ifdef MPOS_CT_HAVE_mkwk
#include "mpos/mkwk.h"
#endif
#ifdef MPOS_CT_HAVE_emv
#include "mpos/emv.h"
#endif
#ifdef MPOS_CT_HAVE_pin
#include "mpos/pin.h"
#endif

#define SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))

/* Declassifies a result computed from secrets, so that the test may branch on it. */
static int public_int(int v)
{
    PUBLIC(&v, sizeof(v));
    return v;
}

int __real_mpos_ct_equal(const void *a, const void *b, size_t len);
int __wrap_mpos_ct_equal(const void *a, const void *b, size_t len);

#ifdef MPOS_CT_LEAKY
/* Deliberately not constant time: stops at the first difference (what memcmp does). */
static int leaky_equal(const void *a, const void *b, size_t len)
{
    const uint8_t *x = a;
    const uint8_t *y = b;
    for (size_t i = 0; i < len; i++) {
        if (x[i] != y[i]) {
            return 0;
        }
    }
    return 1;
}
#endif

int __wrap_mpos_ct_equal(const void *a, const void *b, size_t len)
{
#ifdef MPOS_CT_LEAKY
    int eq = leaky_equal(a, b, len);
#else
    int eq = __real_mpos_ct_equal(a, b, len);
#endif
    return public_int(eq); /* the verdict is public; the bytes compared stay secret */
}

static mpos_crypto_ctx cc;
static unsigned errors_before;

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

/* Each test starts counting valgrind's errors and ends with assert_constant_time(). */
static int count_start(void **state)
{
    (void)state;
    errors_before = (unsigned)VALGRIND_COUNT_ERRORS;
    return 0;
}

static void assert_constant_time(void)
{
    unsigned n = (unsigned)VALGRIND_COUNT_ERRORS - errors_before;
    if (n != 0) {
        fail_msg("%u valgrind error(s): a branch or an address depends on secret data", n);
    }
}

static void test_ct_equal(void **state)
{
    (void)state;
    uint8_t a[64], b[64];
    static const size_t lens[] = {0, 1, 4, 7, 8, 15, 16, 32, 64};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t n = lens[k];
        for (int differ = -1; differ < (int)n; differ++) {
            for (size_t i = 0; i < sizeof(a); i++) {
                a[i] = b[i] = (uint8_t)(i * 37 + n);
            }
            if (differ >= 0) {
                b[differ] ^= 0x10;
            }
            SECRET(a, sizeof(a));
            SECRET(b, sizeof(b));
            int eq = public_int(mpos_ct_equal(a, b, n));
            assert_int_equal(eq, differ < 0 ? 1 : 0);
        }
    }
    assert_constant_time();
}

static void test_ct_byte_is_zero(void **state)
{
    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        uint8_t x = (uint8_t)v;
        SECRET(&x, 1);
        int mask = public_int(mpos_ct_byte_is_zero(x));
        assert_int_equal(mask, v == 0 ? 0xFF : 0x00);
    }
    assert_constant_time();
}

/* Flips bit `bit` of buf (bit < 0: no change), then marks len bytes secret. */
static void tamper_secret(uint8_t *buf, size_t len, int bit)
{
    if (bit >= 0) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    SECRET(buf, len);
}

#ifdef MPOS_CT_HAVE_mac
static void test_mac_verify(void **state)
{
    (void)state;
    uint8_t key[16], data[24], mac[16], computed[16], received[16];
    tu_hex("0123456789ABCDEFFEDCBA9876543210", key, sizeof(key));
    memset(data, 0x5A, sizeof(data));
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_2, data, sizeof(data), mac),
                     MPOS_OK);
    for (int bit = -1; bit < 64; bit += 13) {
        /* Pure compare: both the computed and the received MAC are secret. */
        memcpy(computed, mac, 8);
        memcpy(received, mac, 8);
        tamper_secret(received, 8, bit);
        SECRET(computed, 8);
        for (size_t len = MPOS_MAC_MIN_VERIFY_LEN; len <= 8; len++) {
            int rc = public_int(mpos_mac_verify(computed, 8, received, len));
            assert_int_equal(rc, bit < 0 || bit >= (int)(8 * len) ? MPOS_OK : MPOS_ERR_VERIFY);
        }
        /* Computed through libcrypto (key defined): only the expected MAC is secret. */
        mpos_mac_ctx ctx;
        memcpy(received, mac, 8);
        tamper_secret(received, 8, bit);
        assert_int_equal(mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES,
                                       MPOS_MAC_PAD_2, key, 16),
                         MPOS_OK);
        assert_int_equal(mpos_mac_update(&ctx, data, sizeof(data)), MPOS_OK);
        int rc = public_int(mpos_mac_final_verify(&ctx, received, 8));
        assert_int_equal(rc, bit < 0 ? MPOS_OK : MPOS_ERR_VERIFY);
    }
    assert_constant_time();
}
#endif

#ifdef MPOS_CT_HAVE_kcv
static void test_kcv_verify(void **state)
{
    (void)state;
    static const struct {
        enum mpos_cipher cipher;
        enum mpos_kcv_method method;
        size_t key_len;
    } cases[] = {{MPOS_CIPHER_AES, MPOS_KCV_CMAC, 16},
                 {MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, 16},
                 {MPOS_CIPHER_TDES, MPOS_KCV_CMAC, 24}};
    uint8_t key[32], kcv[16], expected[16];
    tu_hex("3F419E1CB7079442AA37474C2EFBF8B8807A23AD32B36D457AE91FDF927570EA", key, sizeof(key));
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t n = cases[c].method == MPOS_KCV_CMAC ? 5 : 3;
        assert_int_equal(
            mpos_kcv_compute(&cc, cases[c].cipher, cases[c].method, key, cases[c].key_len, kcv, n),
            MPOS_OK);
        for (int bit = -1; bit < (int)(8 * n); bit += 7) {
            memcpy(expected, kcv, n);
            tamper_secret(expected, n, bit);
            int rc = public_int(mpos_kcv_verify(&cc, cases[c].cipher, cases[c].method, key,
                                                cases[c].key_len, expected, n));
            assert_int_equal(rc, bit < 0 ? MPOS_OK : MPOS_ERR_VERIFY);
        }
    }
    assert_constant_time();
}
#endif

#ifdef MPOS_CT_HAVE_mkwk
static void test_mkwk_unwrap(void **state)
{
    (void)state;
    uint8_t tmk[16], wk[16], enc[16], kcv[8], given[8], out[16];
    tu_hex("0123456789ABCDEFFEDCBA9876543210", tmk, sizeof(tmk));
    tu_hex("807A23AD32B36D457AE91FDF927570EA", wk, sizeof(wk));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, wk, 16, enc, kcv, 4), MPOS_OK);
    for (int bit = -1; bit < 32; bit += 5) {
        memcpy(given, kcv, 4);
        tamper_secret(given, 4, bit); /* the check value received with the key */
        int rc =
            public_int(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, given, 4, out));
        assert_int_equal(rc, bit < 0 ? MPOS_OK : MPOS_ERR_VERIFY);
    }
    assert_constant_time();
}
#endif

#ifdef MPOS_CT_HAVE_emv
static void test_emv_verify(void **state)
{
    (void)state;
    uint8_t sk[16], data[MPOS_EMV_AC_MIN_DATA_LEN], ac[8], arpc1[8], arpc2[4], given[8];
    uint8_t arc[2] = {0x30, 0x30}, csu[4] = {0x00, 0x80, 0x00, 0x00}, prop[2] = {0x12, 0x34};
    uint8_t iad[MPOS_EMV_ISSUER_AUTH_MAX_LEN];
    tu_hex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB", sk, sizeof(sk));
    memset(data, 0x21, sizeof(data));
    assert_int_equal(mpos_emv_ac_generate(&cc, sk, 16, data, sizeof(data), ac), MPOS_OK);
    assert_int_equal(mpos_emv_arpc1_generate(&cc, sk, 16, ac, arc, arpc1), MPOS_OK);
    assert_int_equal(mpos_emv_arpc2_generate(&cc, sk, 16, ac, csu, prop, 2, arpc2), MPOS_OK);
    for (int bit = -1; bit < 32; bit += 9) {
        int ok = bit < 0;
        memcpy(given, ac, 8);
        tamper_secret(given, 8, bit); /* the ARQC received from the card */
        assert_int_equal(public_int(mpos_emv_ac_verify(&cc, sk, 16, data, sizeof(data), given)),
                         ok ? MPOS_OK : MPOS_ERR_VERIFY);
        memcpy(given, arpc1, 8);
        tamper_secret(given, 8, bit); /* the ARPC received from the issuer */
        assert_int_equal(public_int(mpos_emv_arpc1_verify(&cc, sk, 16, ac, arc, given)),
                         ok ? MPOS_OK : MPOS_ERR_VERIFY);
        memcpy(given, arpc2, 4);
        tamper_secret(given, 4, bit);
        assert_int_equal(public_int(mpos_emv_arpc2_verify(&cc, sk, 16, ac, csu, prop, 2, given)),
                         ok ? MPOS_OK : MPOS_ERR_VERIFY);
        /* Issuer Authentication Data '91' = ARPC || ARC: only the ARPC part is secret (the ARC
         * is enciphered by libcrypto). */
        memcpy(iad, arpc1, 8);
        memcpy(iad + 8, arc, 2);
        tamper_secret(iad, 8, bit);
        assert_int_equal(public_int(mpos_emv_issuer_auth_verify(&cc, MPOS_EMV_ARPC_METHOD_1, sk, 16,
                                                                ac, iad, 10)),
                         ok ? MPOS_OK : MPOS_ERR_VERIFY);
    }
    assert_constant_time();
}
#endif

#ifdef MPOS_CT_HAVE_pin
/* The decoder validates a decrypted (secret) PIN block: the whole block is secret, and so is
 * what it says (PIN length, digits, whether it is well formed) until the result is returned. */
static void check_pin_decode(enum mpos_pin_format format, const char *pin, const char *pan,
                             int tamper_nibble, uint8_t tamper_value, int expect_ok)
{
    uint8_t field[MPOS_PIN_BLOCK_MAX_LEN], block[MPOS_PIN_BLOCK_MAX_LEN];
    uint8_t pan_field[MPOS_PIN_BLOCK_MAX_LEN], fill[MPOS_PIN_FILL_MAX_LEN];
    size_t field_len = 0, pan_len = 0, fill_len = mpos_pin_fill_len(format, strlen(pin));
    char out[MPOS_PIN_BUF_LEN];
    for (size_t i = 0; i < fill_len; i++) {
        fill[i] = (uint8_t)(format == MPOS_PIN_FORMAT_3 ? 0xA + i % 6 : (i * 7) & 0x0F);
    }
    assert_int_equal(
        mpos_pin_field_encode(format, pin, fill_len > 0 ? fill : NULL, fill_len, field, &field_len),
        MPOS_OK);
    if (tamper_nibble >= 0) {
        int shift = tamper_nibble % 2 == 0 ? 4 : 0;
        uint8_t *p = &field[tamper_nibble / 2];
        *p = (uint8_t)((*p & ~(0x0F << shift)) | (tamper_value << shift));
    }
    /* The clear block: PIN field XOR PAN field (formats 0, 3), else the PIN field itself. */
    memcpy(block, field, field_len);
    if (format == MPOS_PIN_FORMAT_0 || format == MPOS_PIN_FORMAT_3) {
        assert_int_equal(mpos_pin_pan_field_encode(format, pan, pan_field, &pan_len), MPOS_OK);
        mpos_xor(block, pan_field, field_len);
    }
    SECRET(block, field_len);
    int rc = public_int(mpos_pin_clear_block_decode(format, block, field_len, pan, out));
    PUBLIC(out, sizeof(out));
    assert_int_equal(rc, expect_ok ? MPOS_OK : MPOS_ERR_DECODE);
    assert_string_equal(out, expect_ok ? pin : "");
    SECRET(field, field_len);
    rc = public_int(mpos_pin_field_decode(format, field, field_len, out));
    PUBLIC(out, sizeof(out));
    assert_int_equal(rc, expect_ok ? MPOS_OK : MPOS_ERR_DECODE);
    assert_string_equal(out, expect_ok ? pin : "");
}

static void test_pin_decode(void **state)
{
    (void)state;
    static const enum mpos_pin_format formats[] = {MPOS_PIN_FORMAT_0, MPOS_PIN_FORMAT_1,
                                                   MPOS_PIN_FORMAT_3, MPOS_PIN_FORMAT_4};
    static const char *const pins[] = {"1234", "98765", "123456789012"};
    const char *pan = "4111111111111111";
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        for (size_t p = 0; p < sizeof(pins) / sizeof(pins[0]); p++) {
            check_pin_decode(formats[f], pins[p], pan, -1, 0, 1);
        }
        /* Wrong control nibble, PIN length 3 and 13 (the field's nibble 1), a non-digit. */
        check_pin_decode(formats[f], "1234", pan, 0, 0x7, 0);
        check_pin_decode(formats[f], "1234", pan, 1, 0x3, 0);
        check_pin_decode(formats[f], "1234", pan, 1, 0xD, 0);
        check_pin_decode(formats[f], "1234", pan, 3, 0xB, 0);
    }
    /* Fill nibbles that the format does not allow: format 0 not F, 3 a digit, 4 not A. */
    check_pin_decode(MPOS_PIN_FORMAT_0, "1234", pan, 9, 0xE, 0);
    check_pin_decode(MPOS_PIN_FORMAT_3, "1234", pan, 9, 0x5, 0);
    check_pin_decode(MPOS_PIN_FORMAT_4, "1234", pan, 9, 0xB, 0);
    assert_constant_time();
}
#endif

int main(void)
{
    if (!RUNNING_ON_VALGRIND) {
        fputs("test_ct_valgrind: proves nothing outside valgrind: skipped\n", stderr);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ct_equal, count_start),
        cmocka_unit_test_setup(test_ct_byte_is_zero, count_start),
#ifdef MPOS_CT_HAVE_mac
        cmocka_unit_test_setup(test_mac_verify, count_start),
#endif
#ifdef MPOS_CT_HAVE_kcv
        cmocka_unit_test_setup(test_kcv_verify, count_start),
#endif
#ifdef MPOS_CT_HAVE_mkwk
        cmocka_unit_test_setup(test_mkwk_unwrap, count_start),
#endif
#ifdef MPOS_CT_HAVE_emv
        cmocka_unit_test_setup(test_emv_verify, count_start),
#endif
#ifdef MPOS_CT_HAVE_pin
        cmocka_unit_test_setup(test_pin_decode, count_start),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
