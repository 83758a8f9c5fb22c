/* Unit tests: lib/mkwk (UnionPay master-key / working-key delivery).
 *
 * Known answers: the UnionPay POS sign-on field 62 example of published.tsv: TMK
 * CA5D92598DCA48CE8A4C76361A9269E9, PIK cryptogram 6701EAD6A9AD51E51AA406E2C27FCFA9 with check
 * value 8D0A74B8, single-length MAK cryptogram B651F9E9BACE9AE1 with check value AB7153CA.
 * Negative tests: wrong lengths, wrong check values, and every single-bit change of an
 * encrypted working key (rejected by the check value), of the check value, and of the TMK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/kcv.h"
#include "mpos/mkwk.h"
#include "mpos/util.h"
#include "testutil.h"

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

#define TMK_HEX     "CA5D92598DCA48CE8A4C76361A9269E9"
#define PIK_ENC_HEX "6701EAD6A9AD51E51AA406E2C27FCFA9"
#define PIK_HEX     "807A23AD32B36D457AE91FDF927570EA"
#define PIK_KCV_HEX "8D0A74B8"
#define MAK_ENC_HEX "B651F9E9BACE9AE1"
#define MAK_HEX     "5BB5C72CD00B7338"
#define MAK_KCV_HEX "AB7153CA"

static void expect_wiped(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p[i], 0);
    }
}

static void test_unionpay_example(void **state)
{
    (void)state;
    uint8_t tmk[16], enc[16], kcv[8], key[16], expect[16];
    tu_hex(TMK_HEX, tmk, sizeof(tmk));
    /* PIK: double length. */
    tu_hex(PIK_ENC_HEX, enc, sizeof(enc));
    tu_hex(PIK_KCV_HEX, kcv, sizeof(kcv));
    tu_hex(PIK_HEX, expect, sizeof(expect));
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, kcv, 4, key),
                     MPOS_OK);
    assert_memory_equal(key, expect, 16);
    /* MAK: single length (one ECB block). */
    tu_hex(MAK_ENC_HEX, enc, sizeof(enc));
    tu_hex(MAK_KCV_HEX, kcv, sizeof(kcv));
    tu_hex(MAK_HEX, expect, sizeof(expect));
    memset(key, 0xAA, sizeof(key));
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 8, kcv, 4, key),
                     MPOS_OK);
    assert_memory_equal(key, expect, 8);
    assert_int_equal(key[8], 0xAA); /* nothing written past the key */
}

/* The back-end direction reproduces the example's cryptograms and check values. */
static void test_wrap_reproduces_example(void **state)
{
    (void)state;
    uint8_t tmk[16], key[16], enc[16], kcv[8], expect[16];
    tu_hex(TMK_HEX, tmk, sizeof(tmk));
    tu_hex(PIK_HEX, key, sizeof(key));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, key, 16, enc, kcv, 4), MPOS_OK);
    tu_hex(PIK_ENC_HEX, expect, sizeof(expect));
    assert_memory_equal(enc, expect, 16);
    tu_hex(PIK_KCV_HEX, expect, sizeof(expect));
    assert_memory_equal(kcv, expect, 4);
    tu_hex(MAK_HEX, key, sizeof(key));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, key, 8, enc, kcv, 8), MPOS_OK);
    tu_hex(MAK_ENC_HEX, expect, sizeof(expect));
    assert_memory_equal(enc, expect, 8);
    tu_hex(MAK_KCV_HEX, expect, sizeof(expect));
    assert_memory_equal(kcv, expect, 4);
    /* In place (enc_key == key) is allowed. */
    tu_hex(PIK_HEX, key, sizeof(key));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, key, 16, key, kcv, 4), MPOS_OK);
    tu_hex(PIK_ENC_HEX, expect, sizeof(expect));
    assert_memory_equal(key, expect, 16);
}

/* Check values of 4 to 8 bytes are compared; 3 and 9 are refused. */
static void test_kcv_lengths(void **state)
{
    (void)state;
    uint8_t tmk[16], enc[16], pik[16], full[8], key[16];
    tu_hex(TMK_HEX, tmk, sizeof(tmk));
    tu_hex(PIK_ENC_HEX, enc, sizeof(enc));
    tu_hex(PIK_HEX, pik, sizeof(pik));
    assert_int_equal(
        mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, pik, 16, full, sizeof(full)),
        MPOS_OK);
    for (size_t n = 4; n <= 8; n++) {
        assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, full, n, key),
                         MPOS_OK);
        assert_memory_equal(key, pik, 16);
        /* A change in the last compared byte is caught at every length. */
        full[n - 1] ^= 0x01;
        memset(key, 0xAA, sizeof(key));
        assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, full, n, key),
                         MPOS_ERR_VERIFY);
        expect_wiped(key, 16);
        full[n - 1] ^= 0x01;
    }
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, full, 3, key),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, full, 9, key),
                     MPOS_ERR_LENGTH);
    uint8_t kcv[8];
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, pik, 16, enc, kcv, 3),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, pik, 16, enc, kcv, 9),
                     MPOS_ERR_LENGTH);
}

/* Flips every bit of enc (n bytes) and expects the unwrap to reject it and wipe the output.
 * Under ECB a ciphertext bit change turns the whole 8- or 16-byte plaintext block into an
 * unrelated value, so the key changes in more than its parity bits (probability of a parity-
 * only change 2^-56 for DES, and SM4 has no parity bits) and its KCV changes; a false accept
 * would need a 32-bit KCV collision (2^-32 per flip). These are fixed vectors, so the result
 * is deterministic: every flip below is rejected. */
static void flip_every_bit(enum mpos_cipher c, const uint8_t tmk[16], uint8_t *enc, size_t n,
                           const uint8_t *kcv)
{
    uint8_t key[16];
    for (size_t bit = 0; bit < 8 * n; bit++) {
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(key, 0xAA, sizeof(key));
        assert_int_equal(mpos_mkwk_unwrap(&cc, c, tmk, 16, enc, n, kcv, 4, key), MPOS_ERR_VERIFY);
        expect_wiped(key, n);
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(mpos_mkwk_unwrap(&cc, c, tmk, 16, enc, n, kcv, 4, key), MPOS_OK);
}

static void test_every_bit_flip_rejected(void **state)
{
    (void)state;
    uint8_t tmk[16], enc[16], kcv[8];
    tu_hex(TMK_HEX, tmk, sizeof(tmk));
    tu_hex(PIK_ENC_HEX, enc, sizeof(enc));
    tu_hex(PIK_KCV_HEX, kcv, sizeof(kcv));
    flip_every_bit(MPOS_CIPHER_TDES, tmk, enc, 16, kcv);
    tu_hex(MAK_ENC_HEX, enc, sizeof(enc));
    tu_hex(MAK_KCV_HEX, kcv, sizeof(kcv));
    flip_every_bit(MPOS_CIPHER_TDES, tmk, enc, 8, kcv);
    /* SM4: a fixed TMK and working key, wrapped here, then every flip of the cryptogram. */
    uint8_t sm4_tmk[16], wk[16];
    tu_hex("0123456789ABCDEFFEDCBA9876543210", sm4_tmk, sizeof(sm4_tmk));
    tu_hex("00112233445566778899AABBCCDDEEFF", wk, sizeof(wk));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_SM4, sm4_tmk, 16, wk, 16, enc, kcv, 4),
                     MPOS_OK);
    flip_every_bit(MPOS_CIPHER_SM4, sm4_tmk, enc, 16, kcv);

    /* Every bit of the check value. */
    uint8_t key[16];
    tu_hex(PIK_ENC_HEX, enc, sizeof(enc));
    tu_hex(PIK_KCV_HEX, kcv, sizeof(kcv));
    for (size_t bit = 0; bit < 32; bit++) {
        kcv[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, kcv, 4, key),
                         MPOS_ERR_VERIFY);
        kcv[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }

    /* Every bit of the TMK. The low bit of each TMK byte is a DES parity bit, ignored by
     * DES: such a "different" TMK is the same TDES key, decrypts the same working key and is
     * (correctly) accepted. Every other bit gives another TMK and is rejected. */
    for (size_t bit = 0; bit < 128; bit++) {
        tmk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, kcv, 4, key);
        assert_int_equal(rc, bit % 8 == 0 ? MPOS_OK : MPOS_ERR_VERIFY);
        tmk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

/* A working key of one terminal does not unwrap under another terminal's TMK, and SM4 and
 * TDES cryptograms are not interchangeable. */
static void test_wrong_tmk_or_cipher(void **state)
{
    (void)state;
    uint8_t tmk[16], other[16], enc[16], kcv[8], key[16];
    tu_hex(TMK_HEX, tmk, sizeof(tmk));
    tu_hex("0123456789ABCDEFFEDCBA9876543210", other, sizeof(other));
    tu_hex(PIK_ENC_HEX, enc, sizeof(enc));
    tu_hex(PIK_KCV_HEX, kcv, sizeof(kcv));
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, other, 16, enc, 16, kcv, 4, key),
                     MPOS_ERR_VERIFY);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_SM4, tmk, 16, enc, 16, kcv, 4, key),
                     MPOS_ERR_VERIFY);
    expect_wiped(key, 16);
}

/* Random round trips for both ciphers and all working key lengths. */
static void test_round_trip(void **state)
{
    (void)state;
    struct {
        enum mpos_cipher c;
        size_t kl;
    } cases[] = {{MPOS_CIPHER_TDES, 8}, {MPOS_CIPHER_TDES, 16}, {MPOS_CIPHER_SM4, 16}};
    uint8_t tmk[16], wk[16], enc[16], kcv[8], back[16], ref[16];
    for (unsigned r = 0; r < 50; r++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            assert_int_equal(mpos_random_bytes(tmk, sizeof(tmk)), MPOS_OK);
            assert_int_equal(mpos_random_bytes(wk, sizeof(wk)), MPOS_OK);
            size_t kcv_len = 4 + r % 5;
            assert_int_equal(
                mpos_mkwk_wrap(&cc, cases[i].c, tmk, 16, wk, cases[i].kl, enc, kcv, kcv_len),
                MPOS_OK);
            /* Against the definition: ECB under the TMK, legacy KCV. */
            assert_int_equal(mpos_cipher_ecb(&cc, cases[i].c, 1, tmk, 16, wk, ref, cases[i].kl),
                             MPOS_OK);
            assert_memory_equal(enc, ref, cases[i].kl);
            assert_int_equal(
                mpos_kcv_verify(&cc, cases[i].c, MPOS_KCV_LEGACY, wk, cases[i].kl, kcv, kcv_len),
                MPOS_OK);
            assert_int_equal(
                mpos_mkwk_unwrap(&cc, cases[i].c, tmk, 16, enc, cases[i].kl, kcv, kcv_len, back),
                MPOS_OK);
            assert_memory_equal(back, wk, cases[i].kl);
        }
    }
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t tmk[24] = {0}, enc[24] = {0}, kcv[8] = {0}, key[24];
    /* TMK: 16 bytes only (a 2-key TDES or SM4 key). */
    static const size_t bad_tmk[] = {0, 8, 15, 17, 24};
    for (size_t i = 0; i < sizeof(bad_tmk) / sizeof(bad_tmk[0]); i++) {
        memset(key, 0xAA, sizeof(key));
        assert_int_equal(
            mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, bad_tmk[i], enc, 16, kcv, 4, key),
            MPOS_ERR_KEY);
        expect_wiped(key, 16);
        assert_int_equal(
            mpos_mkwk_wrap(&cc, MPOS_CIPHER_SM4, tmk, bad_tmk[i], enc, 16, key, kcv, 4),
            MPOS_ERR_KEY);
    }
    /* Working key: TDES 8 or 16, SM4 16. */
    static const size_t bad_tdes[] = {0, 4, 12, 15, 24};
    for (size_t i = 0; i < sizeof(bad_tdes) / sizeof(bad_tdes[0]); i++) {
        assert_int_equal(
            mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, bad_tdes[i], kcv, 4, key),
            MPOS_ERR_KEY);
    }
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_SM4, tmk, 16, enc, 8, kcv, 4, key),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_SM4, tmk, 16, enc, 24, kcv, 4, key),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_mkwk_key_len_valid(MPOS_CIPHER_TDES, 8), 1);
    assert_int_equal(mpos_mkwk_key_len_valid(MPOS_CIPHER_TDES, 16), 1);
    assert_int_equal(mpos_mkwk_key_len_valid(MPOS_CIPHER_TDES, 24), 0);
    assert_int_equal(mpos_mkwk_key_len_valid(MPOS_CIPHER_SM4, 16), 1);
    assert_int_equal(mpos_mkwk_key_len_valid(MPOS_CIPHER_AES, 16), 0);
    /* AES is not a cipher of the scheme; NULL pointers. */
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_AES, tmk, 16, enc, 16, kcv, 4, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mkwk_unwrap(NULL, MPOS_CIPHER_TDES, tmk, 16, enc, 16, kcv, 4, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, NULL, 16, enc, 16, kcv, 4, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, NULL, 16, kcv, 4, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, NULL, 4, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 16, kcv, 4, NULL),
                     MPOS_ERR_ARG);
    /* wrap wipes its outputs on error. */
    uint8_t out[16], okcv[8];
    memset(out, 0xAA, sizeof(out));
    memset(okcv, 0xAA, sizeof(okcv));
    assert_int_equal(mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, tmk, 16, enc, 12, out, okcv, 4),
                     MPOS_ERR_KEY);
    expect_wiped(out, 12);
    expect_wiped(okcv, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unionpay_example),
        cmocka_unit_test(test_wrap_reproduces_example),
        cmocka_unit_test(test_kcv_lengths),
        cmocka_unit_test(test_every_bit_flip_rejected),
        cmocka_unit_test(test_wrong_tmk_or_cipher),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
