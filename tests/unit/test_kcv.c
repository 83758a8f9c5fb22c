/* Unit tests: lib/kcv (legacy and CMAC key check values).
 *
 * Known answers: ANSI X9.143:2021 8.1 (AES CMAC KCV, as listed in published.tsv), the UnionPay
 * POS sign-on field 62 example (legacy TDES KCVs of a double-length PIK and a single-length
 * MAK), and each method against its definition composed here from the facade.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/kcv.h"
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

static void check_kcv(enum mpos_cipher c, enum mpos_kcv_method m, const char *key_hex,
                      const char *kcv_hex)
{
    uint8_t key[32], expect[16], kcv[16];
    size_t kl = tu_hex(key_hex, key, sizeof(key));
    size_t n = tu_hex(kcv_hex, expect, sizeof(expect));
    assert_int_equal(mpos_kcv_compute(&cc, c, m, key, kl, kcv, n), MPOS_OK);
    assert_memory_equal(kcv, expect, n);
    assert_int_equal(mpos_kcv_verify(&cc, c, m, key, kl, expect, n), MPOS_OK);
}

static void test_published(void **state)
{
    (void)state;
    /* ANSI X9.143:2021 8.1: KCV of the AES-128 key 3F419E1C...B8 by the CMAC method. */
    check_kcv(MPOS_CIPHER_AES, MPOS_KCV_CMAC, "3F419E1CB7079442AA37474C2EFBF8B8", "08793E25AB");
    /* UnionPay POS sign-on field 62 example: PIK and (single-length) MAK check values. */
    check_kcv(MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, "807A23AD32B36D457AE91FDF927570EA", "8D0A74B8");
    check_kcv(MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, "5BB5C72CD00B73385BB5C72CD00B7338", "AB7153CA");
    check_kcv(MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, "5BB5C72CD00B7338", "AB7153CA");
    /* Legacy KCV of the single-DES key 0123456789ABCDEF: DES(K, 0) = D5D44FF720683D0D. */
    check_kcv(MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, "0123456789ABCDEF", "D5D44FF720683D0D");
}

/* Which CMAC input is the X9.24-1:2017 A.3 check value: one zero block of the cipher's block
 * length reproduces X9.143 8.1; the CMAC of the empty message (RFC 4493 example 1 style) is a
 * different value. */
static void test_cmac_input_is_a_zero_block(void **state)
{
    (void)state;
    uint8_t key[16], zero[16] = {0}, full[16], empty[16], kcv[5];
    tu_hex("3F419E1CB7079442AA37474C2EFBF8B8", key, sizeof(key));
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, key, 16, zero, 16, full), MPOS_OK);
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, key, 16, NULL, 0, empty), MPOS_OK);
    assert_int_equal(
        mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 16, kcv, sizeof(kcv)), MPOS_OK);
    assert_memory_equal(kcv, full, 5);
    assert_memory_not_equal(kcv, empty, 5);
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(mpos_kcv_default_method(MPOS_CIPHER_AES), MPOS_KCV_CMAC);
    assert_int_equal(mpos_kcv_default_method(MPOS_CIPHER_TDES), MPOS_KCV_LEGACY);
    assert_int_equal(mpos_kcv_default_method(MPOS_CIPHER_SM4), MPOS_KCV_LEGACY);
    assert_int_equal(mpos_kcv_default_len(MPOS_KCV_LEGACY), 3);
    assert_int_equal(mpos_kcv_default_len(MPOS_KCV_CMAC), 5);
    assert_int_equal(mpos_kcv_default_len((enum mpos_kcv_method)0), 0);
}

/* Every cipher and key length, both methods, every output length: the KCV is the prefix of
 * E(K, 0^b) or CMAC(K, 0^b) computed directly on the facade. */
static void test_definition_all_lengths(void **state)
{
    (void)state;
    struct {
        enum mpos_cipher c;
        size_t kl;
    } keys[] = {{MPOS_CIPHER_TDES, 8}, {MPOS_CIPHER_TDES, 16}, {MPOS_CIPHER_TDES, 24},
                {MPOS_CIPHER_AES, 16}, {MPOS_CIPHER_AES, 24},  {MPOS_CIPHER_AES, 32},
                {MPOS_CIPHER_SM4, 16}};
    uint8_t key[32], zero[16] = {0}, legacy[16], cmac[16], kcv[16];
    for (unsigned r = 0; r < 4; r++) {
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            size_t b = mpos_cipher_block_len(keys[i].c);
            assert_int_equal(mpos_cipher_ecb(&cc, keys[i].c, 1, key, keys[i].kl, zero, legacy, b),
                             MPOS_OK);
            assert_int_equal(mpos_cmac(&cc, keys[i].c, key, keys[i].kl, zero, b, cmac), MPOS_OK);
            for (size_t n = 1; n <= b; n++) {
                assert_int_equal(
                    mpos_kcv_compute(&cc, keys[i].c, MPOS_KCV_LEGACY, key, keys[i].kl, kcv, n),
                    MPOS_OK);
                assert_memory_equal(kcv, legacy, n);
                assert_int_equal(
                    mpos_kcv_compute(&cc, keys[i].c, MPOS_KCV_CMAC, key, keys[i].kl, kcv, n),
                    MPOS_OK);
                assert_memory_equal(kcv, cmac, n);
                assert_int_equal(
                    mpos_kcv_verify(&cc, keys[i].c, MPOS_KCV_LEGACY, key, keys[i].kl, legacy, n),
                    MPOS_OK);
                assert_int_equal(
                    mpos_kcv_verify(&cc, keys[i].c, MPOS_KCV_CMAC, key, keys[i].kl, cmac, n),
                    MPOS_OK);
            }
        }
    }
}

static void test_verify_rejects(void **state)
{
    (void)state;
    uint8_t key[16], expect[16];
    tu_hex("807A23AD32B36D457AE91FDF927570EA", key, sizeof(key));
    tu_hex("8D0A74B8", expect, sizeof(expect));
    /* Each single-bit change of the expected value. */
    for (size_t bit = 0; bit < 32; bit++) {
        expect[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            mpos_kcv_verify(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, expect, 4),
            MPOS_ERR_VERIFY);
        expect[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Each single-bit change of the key outside the DES parity bits. A parity bit (the
     * low bit of each byte) is not part of the DES key, so the KCV cannot and need not see
     * it: that key is the same DES key. */
    for (size_t bit = 0; bit < 128; bit++) {
        key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = mpos_kcv_verify(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, expect, 4);
        assert_int_equal(rc, bit % 8 == 0 ? MPOS_OK : MPOS_ERR_VERIFY);
        key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Same key, other method or cipher: different value. */
    assert_int_equal(mpos_kcv_verify(&cc, MPOS_CIPHER_TDES, MPOS_KCV_CMAC, key, 16, expect, 4),
                     MPOS_ERR_VERIFY);
    assert_int_equal(mpos_kcv_verify(&cc, MPOS_CIPHER_AES, MPOS_KCV_LEGACY, key, 16, expect, 4),
                     MPOS_ERR_VERIFY);
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t key[32] = {0}, kcv[17];
    /* Key lengths the cipher does not take. */
    static const struct {
        enum mpos_cipher c;
        size_t kl;
    } bad[] = {{MPOS_CIPHER_TDES, 0},  {MPOS_CIPHER_TDES, 2}, {MPOS_CIPHER_TDES, 12},
               {MPOS_CIPHER_TDES, 32}, {MPOS_CIPHER_AES, 8},  {MPOS_CIPHER_AES, 17},
               {MPOS_CIPHER_SM4, 8},   {MPOS_CIPHER_SM4, 24}, {MPOS_CIPHER_SM4, 32}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(kcv, 0xAA, sizeof(kcv));
        assert_int_equal(mpos_kcv_compute(&cc, bad[i].c, MPOS_KCV_LEGACY, key, bad[i].kl, kcv, 3),
                         MPOS_ERR_KEY);
        assert_int_equal(kcv[0] | kcv[1] | kcv[2], 0); /* wiped */
        assert_int_equal(mpos_kcv_verify(&cc, bad[i].c, MPOS_KCV_CMAC, key, bad[i].kl, kcv, 3),
                         MPOS_ERR_KEY);
    }
    /* Output lengths: 1 to the block. */
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, kcv, 0),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, kcv, 9),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 16, kcv, 17),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_kcv_verify(&cc, MPOS_CIPHER_SM4, MPOS_KCV_LEGACY, key, 16, kcv, 0),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_kcv_verify(&cc, MPOS_CIPHER_SM4, MPOS_KCV_LEGACY, key, 16, kcv, 17),
                     MPOS_ERR_LENGTH);
    /* Unknown cipher or method, NULL pointers. */
    assert_int_equal(mpos_kcv_compute(&cc, (enum mpos_cipher)9, MPOS_KCV_LEGACY, key, 16, kcv, 3),
                     MPOS_ERR_ARG);
    assert_int_equal(
        mpos_kcv_compute(&cc, MPOS_CIPHER_AES, (enum mpos_kcv_method)7, key, 16, kcv, 3),
        MPOS_ERR_ARG);
    assert_int_equal(mpos_kcv_compute(NULL, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 16, kcv, 3),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, NULL, 16, kcv, 3),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 16, NULL, 3),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_kcv_verify(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 16, NULL, 3),
                     MPOS_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published),      cmocka_unit_test(test_cmac_input_is_a_zero_block),
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_definition_all_lengths),
        cmocka_unit_test(test_verify_rejects), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
