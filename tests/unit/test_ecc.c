/* Unit tests: the EC / HKDF / SHA-256 facade (mpos/ecc.h, lib/crypto/ecc.c and hkdf.c).
 *
 * Known answers: RFC 5869 A.1-A.3 (HKDF-SHA-256), NIST CAVS 14.1 ECC CDH primitive P-256
 * COUNT 0 (ECDH), RFC 6979 A.2.5 (the P-256 key and its SHA-256 signatures of "sample" and
 * "test": verified, since signing draws a random k), FIPS 180-2 B.1 (SHA-256 "abc").
 * Cross-check: tests/unit/ecc_cross.py with python3-cryptography verifies signatures made here,
 * recomputes public keys from our scalars, and hands back an ECDH secret, a signature and an
 * HKDF output that must match ours.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, popen */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/ecc.h"
#include "mpos/util.h"
#include "testutil.h"

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

/* ---- HKDF ----------------------------------------------------------------------------- */

static void check_hkdf(const char *ikm_hex, const char *salt_hex, const char *info_hex,
                       const char *okm_hex)
{
    uint8_t ikm[128], salt[128], info[128], want[128], okm[128];
    size_t ikm_len = tu_hex(ikm_hex, ikm, sizeof(ikm));
    size_t salt_len = tu_hex(salt_hex, salt, sizeof(salt));
    size_t info_len = tu_hex(info_hex, info, sizeof(info));
    size_t len = tu_hex(okm_hex, want, sizeof(want));
    assert_int_equal(mpos_hkdf_sha256(salt_len ? salt : NULL, salt_len, ikm, ikm_len,
                                      info_len ? info : NULL, info_len, okm, len),
                     MPOS_OK);
    assert_memory_equal(okm, want, len);
}

static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    /* RFC 5869 A.1: basic test case with SHA-256. */
    check_hkdf("0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B", "000102030405060708090A0B0C",
               "F0F1F2F3F4F5F6F7F8F9",
               "3CB25F25FAACD57A90434F64D0362F2A2D2D0A90CF1A5A4C5DB02D56ECC4C5BF34007208D5B8871858"
               "65");
    /* RFC 5869 A.2: longer inputs and outputs. */
    check_hkdf(
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F2021222324252627"
        "28292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F",
        "606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F8081828384858687"
        "88898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAF",
        "B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7"
        "D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF",
        "B11E398DC80327A1C8E7F78C596A49344F012EDA2D4EFAD8A050CC4C19AFA97C59045A99CAC7827271"
        "CB41C65E590E09DA3275600C2F09B8367793A9ACA3DB71CC30C58179EC3E87C14C01D5C1F3434F1D87");
    /* RFC 5869 A.3: zero-length salt and info. */
    check_hkdf("0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B", "", "",
               "8DA4E775A563C18F715F802A063C5A31B8A11F5C5EE1879EC3454E5F3C738D2D9D201395FAA4B61A96"
               "C8");
}

static void test_hkdf_refusals(void **state)
{
    uint8_t ikm[32], okm[64], info[MPOS_HKDF_MAX_INFO_LEN + 1];
    (void)state;
    memset(ikm, 0x5A, sizeof(ikm));
    memset(info, 0x11, sizeof(info));
    memset(okm, 0xEE, sizeof(okm));
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 0, NULL, 0, okm, 32), MPOS_ERR_KEY);
    assert_true(all_zero(okm, 32));
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, NULL, 0, okm, 0), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, info, sizeof(info), okm, 32),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, info, MPOS_HKDF_MAX_INFO_LEN, okm, 32),
                     MPOS_OK);
    assert_int_equal(mpos_hkdf_sha256(NULL, 4, ikm, 32, NULL, 0, okm, 32), MPOS_ERR_ARG);
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, NULL, 32, NULL, 0, okm, 32), MPOS_ERR_ARG);
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, NULL, 0, NULL, 32), MPOS_ERR_ARG);
    /* The longest output (255 blocks) is taken, one byte more is not. */
    static uint8_t big[MPOS_HKDF_SHA256_MAX_LEN + 1];
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, NULL, 0, big, MPOS_HKDF_SHA256_MAX_LEN),
                     MPOS_OK);
    assert_int_equal(mpos_hkdf_sha256(NULL, 0, ikm, 32, NULL, 0, big, sizeof(big)),
                     MPOS_ERR_LENGTH);
}

/* ---- SHA-256 -------------------------------------------------------------------------- */

static void test_sha256(void **state)
{
    uint8_t d[32], want[32];
    (void)state;
    /* FIPS 180-2 B.1: "abc". */
    assert_int_equal(mpos_sha256((const uint8_t *)"abc", 3, d), MPOS_OK);
    tu_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", want, 32);
    assert_memory_equal(d, want, 32);
    /* The empty message (FIPS 180-4 examples: E3B0C442...). */
    assert_int_equal(mpos_sha256(NULL, 0, d), MPOS_OK);
    tu_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", want, 32);
    assert_memory_equal(d, want, 32);
    assert_int_equal(mpos_sha256(NULL, 1, d), MPOS_ERR_ARG);
}

/* ---- P-256 keys and ECDH -------------------------------------------------------------- */

/* NIST CAVS 14.1 KAS ECC CDH primitive, P-256, COUNT = 0. */
static const char cavs_qcavs[] =
    "04700C48F77F56584C5CC632CA65640DB91B6BACCE3A4DF6B42CE7CC838833D287"
    "DB71E509E3FD9B060DDB20BA5C51DCC5948D46FBF640DFE0441782CAB85FA4AC";
static const char cavs_diut[] = "7D7DC5F71EB29DDAF80D6214632EEAE03D9058AF1FB6D22ED80BADB62BC1A534";
static const char cavs_qiut[] = "04EAD218590119E8876B29146FF89CA61770C4EDBBF97D38CE385ED281D8A6B230"
                                "28AF61281FD35E2FA7002523ACC85A429CB06EE6648325389F59EDFCE1405141";
static const char cavs_ziut[] = "46FC62106420FF012E54A434FBDD2D25CCC5852060561E68040DD7778997BD7B";

static void test_ecdh_cavs(void **state)
{
    uint8_t d[32], q[65], qiut[65], z[32], want[32], pub[65];
    (void)state;
    tu_hex(cavs_diut, d, sizeof(d));
    tu_hex(cavs_qcavs, q, sizeof(q));
    tu_hex(cavs_qiut, qiut, sizeof(qiut));
    tu_hex(cavs_ziut, want, sizeof(want));
    assert_int_equal(mpos_ec_p256_public(d, pub), MPOS_OK);
    assert_memory_equal(pub, qiut, 65);
    assert_int_equal(mpos_ec_p256_check_public(q), MPOS_OK);
    assert_int_equal(mpos_ecdh_p256(d, q, z), MPOS_OK);
    assert_memory_equal(z, want, 32);

    /* Invalid peer points (SP 800-56A r3 5.6.2.3.4): off the curve, compressed or hybrid
     * prefix, all zero; the secret output is zeroed. */
    uint8_t bad[65];
    memcpy(bad, q, 65);
    bad[64] ^= 0x01;
    memset(z, 0xAA, sizeof(z));
    assert_int_equal(mpos_ecdh_p256(d, bad, z), MPOS_ERR_KEY);
    assert_true(all_zero(z, 32));
    assert_int_equal(mpos_ec_p256_check_public(bad), MPOS_ERR_KEY);
    memcpy(bad, q, 65);
    bad[0] = 0x02;
    assert_int_equal(mpos_ecdh_p256(d, bad, z), MPOS_ERR_KEY);
    bad[0] = 0x06;
    assert_int_equal(mpos_ecdh_p256(d, bad, z), MPOS_ERR_KEY);
    memset(bad, 0, sizeof(bad));
    assert_int_equal(mpos_ecdh_p256(d, bad, z), MPOS_ERR_KEY);
    bad[0] = 0x04;
    assert_int_equal(mpos_ecdh_p256(d, bad, z), MPOS_ERR_KEY);
    assert_int_equal(mpos_ecdh_p256(NULL, q, z), MPOS_ERR_ARG);
}

static void test_scalar_range(void **state)
{
    /* SEC 2 v2 2.4.2: G and n of secp256r1. */
    static const char g_hex[] = "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
                                "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";
    static const char n_hex[] = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
    uint8_t d[32], pub[65], g[65], z[32], sig[64];
    (void)state;
    tu_hex(g_hex, g, sizeof(g));
    memset(d, 0, sizeof(d));
    d[31] = 1; /* d = 1: Q = G */
    assert_int_equal(mpos_ec_p256_public(d, pub), MPOS_OK);
    assert_memory_equal(pub, g, 65);
    tu_hex(n_hex, d, sizeof(d));
    d[31] = 0x50; /* n - 1: Q = -G, same x */
    assert_int_equal(mpos_ec_p256_public(d, pub), MPOS_OK);
    assert_memory_equal(pub + 1, g + 1, 32);
    assert_memory_not_equal(pub + 33, g + 33, 32);
    /* Out of range: 0, n, n + 1, all FF. Every function refuses, outputs zeroed. */
    const char *bad[] = {"0000000000000000000000000000000000000000000000000000000000000000", n_hex,
                         "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632552",
                         "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tu_hex(bad[i], d, sizeof(d)), 32);
        memset(pub, 0xAA, sizeof(pub));
        assert_int_equal(mpos_ec_p256_public(d, pub), MPOS_ERR_KEY);
        assert_true(all_zero(pub, 65));
        assert_int_equal(mpos_ecdh_p256(d, g, z), MPOS_ERR_KEY);
        assert_true(all_zero(z, 32));
        assert_int_equal(mpos_ecdsa_p256_sign(d, (const uint8_t *)"x", 1, sig), MPOS_ERR_KEY);
        assert_true(all_zero(sig, 64));
    }
}

static void test_generate(void **state)
{
    uint8_t d1[32], q1[65], d2[32], q2[65], q[65];
    (void)state;
    assert_int_equal(mpos_ec_p256_generate(d1, q1), MPOS_OK);
    assert_int_equal(mpos_ec_p256_generate(d2, q2), MPOS_OK);
    assert_memory_not_equal(d1, d2, 32);
    assert_int_equal(q1[0], 0x04);
    assert_int_equal(mpos_ec_p256_public(d1, q), MPOS_OK);
    assert_memory_equal(q, q1, 65);
    assert_int_equal(mpos_ec_p256_check_public(q2), MPOS_OK);
    /* ECDH is symmetric. */
    uint8_t z1[32], z2[32];
    assert_int_equal(mpos_ecdh_p256(d1, q2, z1), MPOS_OK);
    assert_int_equal(mpos_ecdh_p256(d2, q1, z2), MPOS_OK);
    assert_memory_equal(z1, z2, 32);
    assert_int_equal(mpos_ec_p256_generate(NULL, q1), MPOS_ERR_ARG);
    mpos_cleanse(d1, sizeof(d1));
    mpos_cleanse(d2, sizeof(d2));
}

/* ---- ECDSA ---------------------------------------------------------------------------- */

/* RFC 6979 A.2.5: the P-256 key pair, and the SHA-256 signatures of "sample" and "test". */
static const char rfc6979_x[] = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
static const char rfc6979_u[] = "0460FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
                                "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
static const char rfc6979_sample[] =
    "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716"
    "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";
static const char rfc6979_test[] =
    "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367"
    "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083";

static void test_ecdsa_rfc6979(void **state)
{
    uint8_t x[32], u[65], pub[65], sig[64], sig2[64];
    (void)state;
    tu_hex(rfc6979_x, x, sizeof(x));
    tu_hex(rfc6979_u, u, sizeof(u));
    assert_int_equal(mpos_ec_p256_public(x, pub), MPOS_OK);
    assert_memory_equal(pub, u, 65);
    tu_hex(rfc6979_sample, sig, sizeof(sig));
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"sample", 6, sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"test", 4, sig), MPOS_ERR_VERIFY);
    tu_hex(rfc6979_test, sig, sizeof(sig));
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"test", 4, sig), MPOS_OK);
    /* Every single-bit flip of the signature fails. */
    for (size_t i = 0; i < 64 * 8; i++) {
        sig[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"test", 4, sig),
                         MPOS_ERR_VERIFY);
        sig[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* r or s zero, or n: invalid (FIPS 186-5 6.4.2 step 2). */
    memcpy(sig2, sig, 64);
    memset(sig2, 0, 32);
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"test", 4, sig2), MPOS_ERR_VERIFY);
    memcpy(sig2, sig, 64);
    tu_hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", sig2 + 32, 32);
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"test", 4, sig2), MPOS_ERR_VERIFY);
    /* Our own signatures verify, differ each time (random k), and fail under another key. */
    assert_int_equal(mpos_ecdsa_p256_sign(x, (const uint8_t *)"sample", 6, sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_sign(x, (const uint8_t *)"sample", 6, sig2), MPOS_OK);
    assert_memory_not_equal(sig, sig2, 64);
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"sample", 6, sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(u, (const uint8_t *)"sample", 6, sig2), MPOS_OK);
    uint8_t d2[32], q2[65];
    assert_int_equal(mpos_ec_p256_generate(d2, q2), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(q2, (const uint8_t *)"sample", 6, sig),
                     MPOS_ERR_VERIFY);
    /* The empty message. */
    assert_int_equal(mpos_ecdsa_p256_sign(x, NULL, 0, sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(u, NULL, 0, sig), MPOS_OK);
    /* A public key that is not a point: MPOS_ERR_KEY, not a verification failure. */
    u[64] ^= 1;
    assert_int_equal(mpos_ecdsa_p256_verify(u, NULL, 0, sig), MPOS_ERR_KEY);
    assert_int_equal(mpos_ecdsa_p256_verify(NULL, NULL, 0, sig), MPOS_ERR_ARG);
    assert_int_equal(mpos_ecdsa_p256_sign(x, NULL, 3, sig), MPOS_ERR_ARG);
    mpos_cleanse(d2, sizeof(d2));
}

/* ---- cross-check with python3-cryptography ---------------------------------------------- */

#define CROSS_CASES 16

static void hex_out(FILE *f, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        fprintf(f, "%02x", p[i]);
    }
}

static void test_python_cross(void **state)
{
    uint8_t d[CROSS_CASES][32], q[CROSS_CASES][65], msg[CROSS_CASES][100];
    uint8_t salt[CROSS_CASES][13], info[CROSS_CASES][11];
    char path[] = "/tmp/mpos_ecc_cross_XXXXXX";
    char cmd[1024], line[1024];
    (void)state;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    for (size_t i = 0; i < CROSS_CASES; i++) {
        uint8_t sig[64];
        assert_int_equal(mpos_ec_p256_generate(d[i], q[i]), MPOS_OK);
        assert_int_equal(mpos_random_bytes(msg[i], sizeof(msg[i])), MPOS_OK);
        assert_int_equal(mpos_random_bytes(salt[i], sizeof(salt[i])), MPOS_OK);
        assert_int_equal(mpos_random_bytes(info[i], sizeof(info[i])), MPOS_OK);
        assert_int_equal(mpos_ecdsa_p256_sign(d[i], msg[i], 1 + i * 6, sig), MPOS_OK);
        const uint8_t *fields[] = {d[i], q[i], msg[i], sig, salt[i], info[i]};
        const size_t lens[] = {32, 65, 1 + i * 6, 64, i % 2 ? sizeof(salt[i]) : 0, sizeof(info[i])};
        for (size_t k = 0; k < 6; k++) {
            if (lens[k] == 0) {
                fputc('-', f); /* an empty field */
            }
            hex_out(f, fields[k], lens[k]);
            fputc(k < 5 ? ' ' : '\n', f);
        }
    }
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s %s %s", MPOS_PYTHON, MPOS_ECC_CROSS, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0;
    while (fgets(line, sizeof(line), p) != NULL) {
        uint8_t pub_py[65], z_py[32], sig_py[64], okm_py[42], z[32], okm[42];
        char *save = NULL;
        char *tok[4];
        assert_true(n < CROSS_CASES);
        tok[0] = strtok_r(line, " \n", &save);
        for (size_t k = 1; k < 4; k++) {
            tok[k] = strtok_r(NULL, " \n", &save);
        }
        assert_non_null(tok[3]);
        assert_int_equal(tu_hex(tok[0], pub_py, sizeof(pub_py)), 65);
        assert_int_equal(tu_hex(tok[1], z_py, sizeof(z_py)), 32);
        assert_int_equal(tu_hex(tok[2], sig_py, sizeof(sig_py)), 64);
        assert_int_equal(tu_hex(tok[3], okm_py, sizeof(okm_py)), 42);
        assert_int_equal(mpos_ecdh_p256(d[n], pub_py, z), MPOS_OK);
        assert_memory_equal(z, z_py, 32);
        assert_int_equal(mpos_ecdsa_p256_verify(pub_py, msg[n], 1 + n * 6, sig_py), MPOS_OK);
        assert_int_equal(mpos_hkdf_sha256(n % 2 ? salt[n] : NULL, n % 2 ? sizeof(salt[n]) : 0, z,
                                          32, info[n], sizeof(info[n]), okm, sizeof(okm)),
                         MPOS_OK);
        assert_memory_equal(okm, okm_py, 42);
        n++;
    }
    int status = pclose(p);
    unlink(path);
    if (WEXITSTATUS(status) == 77) {
        print_message("python3-cryptography not installed: cross-check skipped\n");
        skip();
    }
    assert_int_equal(status, 0);
    assert_int_equal(n, CROSS_CASES);
    mpos_cleanse(d, sizeof(d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869),  cmocka_unit_test(test_hkdf_refusals),
        cmocka_unit_test(test_sha256),        cmocka_unit_test(test_ecdh_cavs),
        cmocka_unit_test(test_scalar_range),  cmocka_unit_test(test_generate),
        cmocka_unit_test(test_ecdsa_rfc6979), cmocka_unit_test(test_python_cross),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
