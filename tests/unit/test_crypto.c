/* Unit tests: the crypto facade. Known answers from FIPS 197, GB/T 32907, SP 800-67 and
 * RFC 4493, and the AES-NI path against libcrypto on random keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "mpos/crypto.h"
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

static void check_ecb(enum mpos_cipher c, const char *key_hex, const char *pt_hex,
                      const char *ct_hex)
{
    uint8_t key[32], pt[32], ct[32], out[32];
    size_t kl = tu_hex(key_hex, key, sizeof(key));
    size_t n = tu_hex(pt_hex, pt, sizeof(pt));
    tu_hex(ct_hex, ct, sizeof(ct));
    assert_int_equal(mpos_cipher_ecb(&cc, c, 1, key, kl, pt, out, n), MPOS_OK);
    assert_memory_equal(out, ct, n);
    assert_int_equal(mpos_cipher_ecb(&cc, c, 0, key, kl, ct, out, n), MPOS_OK);
    assert_memory_equal(out, pt, n);
    if (c == MPOS_CIPHER_AES) {
        for (int aesni = 0; aesni <= 1; aesni++) {
            mpos_crypto_set_aesni(&cc, aesni);
            assert_int_equal(mpos_aes_encrypt_block(&cc, key, kl, pt, out), MPOS_OK);
            assert_memory_equal(out, ct, 16);
        }
        mpos_crypto_set_aesni(&cc, 1);
    }
}

static void test_known_answers(void **state)
{
    (void)state;
    /* FIPS 197 Appendix C.1-C.3 */
    check_ecb(MPOS_CIPHER_AES, "000102030405060708090A0B0C0D0E0F",
              "00112233445566778899AABBCCDDEEFF", "69C4E0D86A7B0430D8CDB78070B4C55A");
    check_ecb(MPOS_CIPHER_AES, "000102030405060708090A0B0C0D0E0F1011121314151617",
              "00112233445566778899AABBCCDDEEFF", "DDA97CA4864CDFE06EAF70A0EC0D7191");
    check_ecb(MPOS_CIPHER_AES, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
              "00112233445566778899AABBCCDDEEFF", "8EA2B7CA516745BFEAFC49904B496089");
    /* GB/T 32907-2016 Appendix A.1 */
    check_ecb(MPOS_CIPHER_SM4, "0123456789ABCDEFFEDCBA9876543210",
              "0123456789ABCDEFFEDCBA9876543210", "681EDF34D206965E86B3E94F536E4246");
    /* FIPS 46-3 / SP 800-17 style single DES via K|K (key 133457799BBCDFF1) */
    check_ecb(MPOS_CIPHER_TDES, "133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405");
    check_ecb(MPOS_CIPHER_TDES, "133457799BBCDFF1133457799BBCDFF1", "0123456789ABCDEF",
              "85E813540F0AB405");
    /* 3-key TDES, SP 800-67 Rev.2 example (first block) */
    check_ecb(MPOS_CIPHER_TDES, "0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123",
              "5468652071756663", "A826FD8CE53B855F");
}

static void test_cbc_and_lengths(void **state)
{
    (void)state;
    uint8_t key[16], iv[16], buf[48], out[48], back[48];
    tu_hex("2B7E151628AED2A6ABF7158809CF4F3C", key, sizeof(key));
    tu_hex("000102030405060708090A0B0C0D0E0F", iv, sizeof(iv));
    /* SP 800-38A F.2.1 CBC-AES128.Encrypt, first two blocks */
    tu_hex("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51", buf, sizeof(buf));
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_AES, 1, key, 16, iv, buf, out, 32), MPOS_OK);
    uint8_t expect[32];
    tu_hex("7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2", expect,
           sizeof(expect));
    assert_memory_equal(out, expect, 32);
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_AES, 0, key, 16, iv, out, back, 32), MPOS_OK);
    assert_memory_equal(back, buf, 32);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 1, key, 16, buf, out, 15),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 1, key, 15, buf, out, 16), MPOS_ERR_KEY);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_SM4, 1, key, 24, buf, out, 16), MPOS_ERR_KEY);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 1, key, 12, buf, out, 8), MPOS_ERR_KEY);
    assert_int_equal(mpos_cipher_ecb(&cc, (enum mpos_cipher)9, 1, key, 16, buf, out, 16),
                     MPOS_ERR_ARG);
    /* Decryption after encryption on the same prepared context still has padding off. */
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 0, key, 16, buf, out, 16), MPOS_OK);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_AES, 1, key, 16, out, back, 16), MPOS_OK);
    assert_memory_equal(back, buf, 16);
}

static void test_cmac(void **state)
{
    (void)state;
    uint8_t key[16], mac[16], expect[16], data[16];
    tu_hex("2B7E151628AED2A6ABF7158809CF4F3C", key, sizeof(key));
    /* RFC 4493 4, example 1: empty message */
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, key, 16, NULL, 0, mac), MPOS_OK);
    tu_hex("BB1D6929E95937287FA37D129B756746", expect, sizeof(expect));
    assert_memory_equal(mac, expect, 16);
    tu_hex("6BC1BEE22E409F96E93D7E117393172A", data, sizeof(data));
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, key, 16, data, 16, mac), MPOS_OK);
    tu_hex("070A16B46B4D4144F79BDD9DD04A287C", expect, sizeof(expect));
    assert_memory_equal(mac, expect, 16);
    /* CMAC-TDES 2-key: the openemv/crypto example of published.tsv */
    uint8_t k2[16];
    tu_hex("0123456789ABCDEF23456789ABCDEF01", k2, sizeof(k2));
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_TDES, k2, 16, data, 16, mac), MPOS_OK);
    tu_hex("CC18A0B79AF2413B", expect, sizeof(expect));
    assert_memory_equal(mac, expect, 8);
}

/* The AES-NI path equals libcrypto for every key size on random keys and blocks. */
static void test_aesni_matches_libcrypto(void **state)
{
    (void)state;
    if (!mpos_crypto_set_aesni(&cc, 1)) {
        skip();
    }
    const size_t sizes[3] = {16, 24, 32};
    unsigned rounds = 20000 / tu_scale();
    for (unsigned i = 0; i < rounds; i++) {
        uint8_t key[32], in[16], a[16], b[16];
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        assert_int_equal(mpos_random_bytes(in, sizeof(in)), MPOS_OK);
        size_t kl = sizes[i % 3];
        mpos_crypto_set_aesni(&cc, 1);
        assert_int_equal(mpos_aes_encrypt_block(&cc, key, kl, in, a), MPOS_OK);
        mpos_crypto_set_aesni(&cc, 0);
        assert_int_equal(mpos_aes_encrypt_block(&cc, key, kl, in, b), MPOS_OK);
        assert_memory_equal(a, b, 16);
    }
    mpos_crypto_set_aesni(&cc, 1);
}

/* libcrypto's own CMAC (EVP_MAC), the reference for the facade's CMAC mode. */
static void reference_cmac(const char *cbc_name, const uint8_t *key, size_t key_len,
                           const uint8_t *data, size_t len, uint8_t *mac, size_t block)
{
    EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(m);
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cbc_name, 0),
        OSSL_PARAM_construct_end()};
    size_t outl = 0;
    assert_non_null(ctx);
    assert_int_equal(EVP_MAC_init(ctx, key, key_len, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, data, len), 1);
    assert_int_equal(EVP_MAC_final(ctx, mac, &outl, block), 1);
    assert_int_equal(outl, block);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
}

/* The facade's CMAC (prepared, re-keyed contexts) equals a fresh EVP_MAC CMAC for every
 * cipher, key length and message length 0..600, so re-keying never carries state over. */
static void test_cmac_matches_libcrypto(void **state)
{
    (void)state;
    static const struct {
        enum mpos_cipher cipher;
        size_t key_len;
        const char *name;
    } cases[] = {{MPOS_CIPHER_AES, 16, "AES-128-CBC"},   {MPOS_CIPHER_AES, 24, "AES-192-CBC"},
                 {MPOS_CIPHER_AES, 32, "AES-256-CBC"},   {MPOS_CIPHER_TDES, 16, "DES-EDE-CBC"},
                 {MPOS_CIPHER_TDES, 24, "DES-EDE3-CBC"}, {MPOS_CIPHER_SM4, 16, "SM4-CBC"}};
    static uint8_t data[600];
    assert_int_equal(mpos_random_bytes(data, sizeof(data)), MPOS_OK);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t block = mpos_cipher_block_len(cases[c].cipher);
        for (size_t len = 0; len <= sizeof(data); len += (len < 70 ? 1 : 53)) {
            uint8_t key[32], got[16], want[16];
            assert_int_equal(mpos_random_bytes(key, cases[c].key_len), MPOS_OK);
            assert_int_equal(mpos_cmac(&cc, cases[c].cipher, key, cases[c].key_len, data, len, got),
                             MPOS_OK);
            reference_cmac(cases[c].name, key, cases[c].key_len, data, len, want, block);
            assert_memory_equal(got, want, block);
        }
    }
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    assert_int_equal(mpos_random_bytes(a, sizeof(a)), MPOS_OK);
    assert_int_equal(mpos_random_bytes(b, sizeof(b)), MPOS_OK);
    assert_false(mpos_ct_equal(a, b, sizeof(a)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_cbc_and_lengths),
        cmocka_unit_test(test_cmac),
        cmocka_unit_test(test_aesni_matches_libcrypto),
        cmocka_unit_test(test_cmac_matches_libcrypto),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
