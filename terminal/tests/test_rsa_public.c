/* Tests (label terminal): mpos_rsa_public (lib/crypto/rsa.c), the raw RSA public operation the
 * EMV kernel uses for certificate recovery and PIN encipherment.
 *
 * Known answers:
 *  - Rivest, Shamir, Adleman, "A Method for Obtaining Digital Signatures and Public-Key
 *    Cryptosystems", CACM 21(2), 1978, section VIII: n = 2773, e = 17, the blocks of
 *    "ITS ALL GREEK TO ME" and their ciphertexts;
 *  - the worked example of the RSA article of the English Wikipedia: n = 3233, e = 17,
 *    m = 65, c = 2790.
 * Cross-check: the fixed test keys of the virtual card (1024, 1152, 1408 bits) and a fresh
 * 2048-bit key, each with random messages: OpenSSL's private operation undoes ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "mpos/rsa.h"
#include "testkeys.h"

static void kat(uint16_t n, uint8_t e, uint16_t m, uint16_t c)
{
    uint8_t mod[2] = {(uint8_t)(n >> 8), (uint8_t)n}, exp[1] = {e};
    uint8_t in[2] = {(uint8_t)(m >> 8), (uint8_t)m}, out[2];
    assert_int_equal(mpos_rsa_public(mod, 2, exp, 1, in, 2, out), 0);
    assert_int_equal((out[0] << 8) | out[1], c);
}

static void test_known_answers(void **state)
{
    (void)state;
    static const uint16_t m[10] = {920, 1900, 112, 1200, 718, 505, 1100, 2015, 13, 500};
    static const uint16_t c[10] = {948, 2342, 1084, 1444, 2663, 2390, 778, 774, 219, 1655};
    for (size_t i = 0; i < 10; i++) {
        kat(2773, 17, m[i], c[i]);
    }
    kat(3233, 17, 65, 2790);
    kat(3233, 1, 65, 65);
    kat(3233, 17, 0, 0);
    kat(3233, 17, 1, 1);
}

static void test_arguments(void **state)
{
    (void)state;
    uint8_t mod[2] = {0x0C, 0xA1}, even[2] = {0x0C, 0xA0}, lead0[3] = {0x00, 0x0C, 0xA1};
    uint8_t e3[1] = {3}, e0[1] = {0}, e5[5] = {1, 0, 0, 0, 1}, in[3] = {0, 1, 2}, out[3];
    uint8_t big[2] = {0x0C, 0xA1};
    assert_int_equal(mpos_rsa_public(NULL, 2, e3, 1, in, 2, out), -1);
    assert_int_equal(mpos_rsa_public(mod, 2, e3, 1, in, 2, NULL), -1);
    assert_int_equal(mpos_rsa_public(even, 2, e3, 1, in, 2, out), -5);
    assert_int_equal(mpos_rsa_public(lead0, 3, e3, 1, in, 3, out), -5);
    assert_int_equal(mpos_rsa_public(mod, 0, e3, 1, in, 0, out), -5);
    assert_int_equal(mpos_rsa_public(mod, 2, e0, 1, in, 2, out), -5);
    assert_int_equal(mpos_rsa_public(mod, 2, e5, 5, in, 2, out), -5);
    assert_int_equal(mpos_rsa_public(mod, 2, e3, 0, in, 2, out), -5);
    out[0] = out[1] = 0xAA;
    assert_int_equal(mpos_rsa_public(mod, 2, e3, 1, in, 3, out), -2);
    assert_int_equal(out[0] | out[1], 0);
    assert_int_equal(mpos_rsa_public(mod, 2, e3, 1, big, 2, out), -3); /* in == n */
    uint8_t one[1] = {1};
    assert_int_equal(mpos_rsa_public(one, 1, e3, 1, in, 1, out), -5);
}

static void cross_check(EVP_PKEY *k)
{
    BIGNUM *bn = NULL, *be = NULL;
    uint8_t n[512], e[8], m[512], c[512], back[512];
    size_t nl, el;
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &be), 1);
    nl = (size_t)BN_num_bytes(bn);
    el = (size_t)BN_num_bytes(be);
    assert_true(nl <= MPOS_RSA_MAX_MOD_LEN && el <= MPOS_RSA_MAX_EXP_LEN);
    BN_bn2bin(bn, n);
    BN_bn2bin(be, e);
    for (int round = 0; round < 20; round++) {
        assert_int_equal(RAND_bytes(m, (int)nl), 1);
        m[0] = (uint8_t)(round == 0 ? 0x00 : m[0] & 0x7F); /* below n */
        if (round == 1) {
            /* n - 2: the largest values work too. */
            memcpy(m, n, nl);
            unsigned borrow = 2;
            for (size_t i = nl; i-- > 0 && borrow != 0;) {
                unsigned v = m[i];
                m[i] = (uint8_t)(v - borrow);
                borrow = v < borrow ? 1u : 0u;
            }
        }
        assert_int_equal(mpos_rsa_public(n, nl, e, el, m, nl, c), 0);
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);
        size_t bl = nl;
        assert_non_null(pc);
        assert_int_equal(EVP_PKEY_decrypt_init(pc), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_NO_PADDING), 1);
        assert_int_equal(EVP_PKEY_decrypt(pc, back, &bl, c, nl), 1);
        EVP_PKEY_CTX_free(pc);
        assert_int_equal(bl, nl);
        assert_memory_equal(back, m, nl);
        /* In place gives the same. */
        memcpy(back, m, nl);
        assert_int_equal(mpos_rsa_public(n, nl, e, el, back, nl, back), 0);
        assert_memory_equal(back, c, nl);
    }
    BN_free(bn);
    BN_free(be);
}

static EVP_PKEY *pem(const char *s)
{
    BIO *b = BIO_new_mem_buf(s, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

static void test_against_openssl(void **state)
{
    (void)state;
    const char *keys[] = {mpos_cardsim_ca_key_pem, mpos_cardsim_iss_key_pem,
                          mpos_cardsim_icc_key_pem};
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY *k = pem(keys[i]);
        cross_check(k);
        EVP_PKEY_free(k);
    }
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    cross_check(k);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_against_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
