/* Unit tests: lib/mac (ISO/IEC 9797-1 MAC algorithms 1 and 3, UnionPay POS ECB MAC).
 *
 * Known answers: ISO/IEC 9797-1:2011 Annex B.4 (via published.tsv and openemv/crypto), RFC 4493
 * and the TDES-CMAC example of published.tsv (through mpos_cmac, as the CLI uses it),
 * ICAO Doc 9303 Part 11 Appendix D.3 (algorithm 3, padding method 2), the Bouncy Castle
 * ISO9797Alg3MacTest vector, the classic ANSI X9.9 example for algorithm 1, and a worked
 * UnionPay POS MAC example. Each algorithm is also cross-checked against an independent
 * composition of mpos_cipher_cbc/ecb written here, on random keys and messages of every
 * length around the block boundaries and long enough to span several internal chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/mac.h"
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

#define MAX_MSG 5000

/* ---- Independent compositions (the test's own reading of the standards). -------------- */

/* Pads per ISO 9797-1 method 1 or 2 into out; returns the padded length. */
static size_t ref_pad(int pad, const uint8_t *m, size_t n, uint8_t *out, size_t block)
{
    memcpy(out, m, n);
    size_t len = n;
    if (pad == 2) {
        out[len++] = 0x80;
    }
    while (len % block != 0 || len == 0) {
        out[len++] = 0;
    }
    return len;
}

/* Algorithm 1 = the last block of a zero-IV CBC encryption of the padded message. */
static void ref_alg1(const uint8_t *key, size_t kl, int pad, const uint8_t *m, size_t n,
                     uint8_t mac[8])
{
    static uint8_t padded[MAX_MSG + 16], ct[MAX_MSG + 16];
    size_t len = ref_pad(pad, m, n, padded, 8);
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_TDES, 1, key, kl, NULL, padded, ct, len),
                     MPOS_OK);
    memcpy(mac, ct + len - 8, 8);
}

/* Algorithm 3 = single-DES CBC under K1, then D(K2), then E(K1). */
static void ref_alg3(const uint8_t key[16], int pad, const uint8_t *m, size_t n, uint8_t mac[8])
{
    uint8_t h[8], t[8];
    ref_alg1(key, 8, pad, m, n, h);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 0, key + 8, 8, h, t, 8), MPOS_OK);
    assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 1, key, 8, t, mac, 8), MPOS_OK);
}

/* UnionPay ECB MAC as docs/mpos-crypto.md words it, with snprintf for the hex step. */
static void ref_cup(enum mpos_cipher c, const uint8_t *key, size_t kl, const uint8_t *m, size_t n,
                    uint8_t *mac)
{
    size_t b = mpos_cipher_block_len(c);
    uint8_t r[16] = {0}, x[16];
    char h[33];
    for (size_t i = 0; i < n; i++) {
        r[i % b] ^= m[i];
    }
    for (size_t i = 0; i < b; i++) {
        static const char digits[] = "0123456789ABCDEF";
        h[2 * i] = digits[r[i] >> 4];
        h[2 * i + 1] = digits[r[i] & 15];
    }
    assert_int_equal(mpos_cipher_ecb(&cc, c, 1, key, kl, (const uint8_t *)h, x, b), MPOS_OK);
    mpos_xor(x, (const uint8_t *)h + b, b);
    assert_int_equal(mpos_cipher_ecb(&cc, c, 1, key, kl, x, mac, b), MPOS_OK);
}

/* ---- Known answers. ---------------------------------------------------------------- */

static void check_alg3(const char *key_hex, int pad, const char *msg_hex, const char *mac_hex)
{
    uint8_t key[16], msg[64], mac[8], expect[8];
    size_t n = tu_hex(msg_hex, msg, sizeof(msg));
    size_t ml = tu_hex(mac_hex, expect, sizeof(expect));
    assert_int_equal(tu_hex(key_hex, key, sizeof(key)), 16);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, (enum mpos_mac_pad)pad, msg, n, mac),
                     MPOS_OK);
    assert_memory_equal(mac, expect, ml);
}

static void test_retail_known_answers(void **state)
{
    (void)state;
    /* ISO/IEC 9797-1:2011 Annex B.4, MAC algorithm 3, padding method 1, 32-bit MACs
     * (published.tsv; openemv/crypto test/crypto_tdes2_retail_mac_test.c). */
    check_alg3("0123456789ABCDEFFEDCBA9876543210", 1,
               "4E6F77206973207468652074696D6520666F7220616C6C20", /* "Now is the time for all " */
               "A1C72E74");
    check_alg3("0123456789ABCDEFFEDCBA9876543210", 1,
               "4E6F77206973207468652074696D6520666F72206974", /* "Now is the time for it" */
               "2E2B1428");
    /* ICAO Doc 9303 Part 11, Appendix D.3 (BAC mutual authentication): MAC algorithm 3,
     * DES, padding method 2 (the EMV padding). */
    check_alg3("7962D9ECE03D1ACD4C76089DCE131543", 2,
               "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2",
               "5F1448EEA8AD90A7");
    check_alg3("7962D9ECE03D1ACD4C76089DCE131543", 2,
               "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F",
               "2F2D235D074D7449");
    /* Bouncy Castle ISO9797Alg3MacTest: "Hello World !!!!" (two full blocks, padding 1). */
    check_alg3("7CA110454A1A6E570131D9619DC1376E", 1, "48656C6C6F20576F726C642021212121",
               "F09B856213BAB83B");
}

static void test_alg1_known_answers(void **state)
{
    (void)state;
    uint8_t key[8], msg[32], mac[8], expect[8];
    /* The classic ANSI X9.9 / ISO 9797-1 algorithm 1 example: single DES, key
     * 0123456789ABCDEF, "Now is the time for all " (three full blocks, no padding). */
    tu_hex("0123456789ABCDEF", key, sizeof(key));
    size_t n = tu_hex("4E6F77206973207468652074696D6520666F7220616C6C20", msg, sizeof(msg));
    assert_int_equal(mpos_mac_iso9797_alg1(&cc, key, 8, MPOS_MAC_PAD_1, msg, n, mac), MPOS_OK);
    tu_hex("70A30640CC76DD8B", expect, sizeof(expect));
    assert_memory_equal(mac, expect, 8);
    /* The same key as K|K and K|K|K is the same single-DES CBC-MAC. */
    uint8_t k3[24];
    memcpy(k3, key, 8);
    memcpy(k3 + 8, key, 8);
    memcpy(k3 + 16, key, 8);
    assert_int_equal(mpos_mac_iso9797_alg1(&cc, k3, 16, MPOS_MAC_PAD_1, msg, n, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
    assert_int_equal(mpos_mac_iso9797_alg1(&cc, k3, 24, MPOS_MAC_PAD_1, msg, n, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
    /* Empty message, padding 1: one zero block, so the MAC is E(K, 0): the well-known
     * DES(0123456789ABCDEF, 0000000000000000) = D5D44FF720683D0D. */
    assert_int_equal(mpos_mac_iso9797_alg1(&cc, key, 8, MPOS_MAC_PAD_1, NULL, 0, mac), MPOS_OK);
    tu_hex("D5D44FF720683D0D", expect, sizeof(expect));
    assert_memory_equal(mac, expect, 8);
}

static void test_padding_rules(void **state)
{
    (void)state;
    uint8_t key[16], mac[8], ref[8], blk[16] = {0};
    tu_hex("0123456789ABCDEFFEDCBA9876543210", key, sizeof(key));
    /* Method 1, empty message == MAC of one explicit zero block. */
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, NULL, 0, mac), MPOS_OK);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, blk, 8, ref), MPOS_OK);
    assert_memory_equal(mac, ref, 8);
    /* Method 2, empty message == MAC of 80 00..00 under method 1. */
    blk[0] = 0x80;
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_2, NULL, 0, mac), MPOS_OK);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, blk, 8, ref), MPOS_OK);
    assert_memory_equal(mac, ref, 8);
    /* Method 2 on a full block adds a whole block: M || 80 00..00 under method 1. */
    uint8_t m[16] = {1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_2, m, 8, mac), MPOS_OK);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, m, 16, ref), MPOS_OK);
    assert_memory_equal(mac, ref, 8);
    /* Method 1 on a full block adds nothing, so M and M || 00..00 differ ... */
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, m, 8, mac), MPOS_OK);
    memset(m + 8, 0, 8);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, m, 16, ref), MPOS_OK);
    assert_memory_not_equal(mac, ref, 8);
    /* ... while a partial block and its zero-extension collide (the known property of
     * method 1: it is only safe for fixed-length or length-prefixed messages). */
    m[5] = m[6] = m[7] = 0;
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, m, 5, mac), MPOS_OK);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, m, 8, ref), MPOS_OK);
    assert_memory_equal(mac, ref, 8);
}

static void test_cup_ecb_known_answers(void **state)
{
    (void)state;
    /* Worked UnionPay POS MAC example (solo123/pgate test/integration/pos_mac_test.rb):
     * MAB 1234567890ABCDEF ABCDEF1234567890, single-length MAK 2222222222222222.
     * R = B9F9B96AA4FDB57F, H = "B9F9B96AA4FDB57F", E(K, "B9F9B96A") = 9FDE90A34CF73B2E,
     * X = DEEAD6E70EC20C68, Y = E267B6E21913D339; field 64 = ASCII "E267B6E2". */
    uint8_t key[16], msg[16], mac[16], expect[8];
    tu_hex("2222222222222222", key, sizeof(key));
    size_t n = tu_hex("1234567890ABCDEFABCDEF1234567890", msg, sizeof(msg));
    tu_hex("E267B6E21913D339", expect, sizeof(expect));
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 8, msg, n, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
    /* A double-length MAK K|K is the same single DES. */
    memcpy(key + 8, key, 8);
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 16, msg, n, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
    /* Zero padding is absorbed by the XOR: a trailing zero byte does not change the MAC
     * (the scheme relies on ISO 8583 framing for the length). */
    uint8_t longer[17];
    memcpy(longer, msg, 16);
    longer[16] = 0;
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 16, longer, 17, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
    /* Documented weakness of the scheme (mac.h): swapping the two blocks keeps the MAC. */
    uint8_t swapped[16];
    memcpy(swapped, msg + 8, 8);
    memcpy(swapped + 8, msg, 8);
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 16, swapped, 16, mac), MPOS_OK);
    assert_memory_equal(mac, expect, 8);
}

/* CMAC is mpos_cmac() of the facade; the `mac --alg cmac-*` vectors of published.tsv are
 * checked here through the same call the CLI makes. */
static void test_cmac_published(void **state)
{
    (void)state;
    static const struct {
        enum mpos_cipher c;
        const char *key, *msg, *mac, *src;
    } v[] = {
        {MPOS_CIPHER_AES, "2B7E151628AED2A6ABF7158809CF4F3C", "",
         "BB1D6929E95937287FA37D129B756746", "RFC 4493 4, example 1"},
        {MPOS_CIPHER_AES, "2B7E151628AED2A6ABF7158809CF4F3C", "6BC1BEE22E409F96E93D7E117393172A",
         "070A16B46B4D4144F79BDD9DD04A287C", "RFC 4493 4, example 2"},
        {MPOS_CIPHER_AES, "2B7E151628AED2A6ABF7158809CF4F3C",
         "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411",
         "DFA66747DE9AE63030CA32611497C827", "RFC 4493 4, example 3"},
        {MPOS_CIPHER_AES, "2B7E151628AED2A6ABF7158809CF4F3C",
         "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411"
         "E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710",
         "51F0BEBF7E3B9D92FC49741779363CFE", "RFC 4493 4, example 4"},
        {MPOS_CIPHER_TDES, "0123456789ABCDEF23456789ABCDEF01", "6BC1BEE22E409F96E93D7E117393172A",
         "CC18A0B79AF2413B", "openemv/crypto test/crypto_tdes_cmac_test.c (published.tsv)"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t key[32], msg[64], mac[16], expect[16];
        size_t kl = tu_hex(v[i].key, key, sizeof(key));
        size_t n = tu_hex(v[i].msg, msg, sizeof(msg));
        size_t ml = tu_hex(v[i].mac, expect, sizeof(expect));
        assert_int_equal(mpos_cmac(&cc, v[i].c, key, kl, n > 0 ? msg : NULL, n, mac), MPOS_OK);
        if (memcmp(mac, expect, ml) != 0) {
            fail_msg("CMAC mismatch: %s", v[i].src);
        }
    }
}

/* ---- Cross-checks against the compositions. --------------------------------------- */

static void test_cross_check_random(void **state)
{
    (void)state;
    static uint8_t msg[MAX_MSG];
    static const size_t lengths[] = {0,  1,  7,  8,   9,   15,  16,  17,   23,   24,  25,
                                     31, 32, 33, 511, 512, 513, 520, 1031, 4095, 4999};
    static const size_t alg1_keys[] = {8, 16, 24};
    uint8_t key[24], mac[16], ref[16];
    unsigned rounds = 8;
    for (unsigned r = 0; r < rounds; r++) {
        assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
        assert_int_equal(mpos_random_bytes(msg, sizeof(msg)), MPOS_OK);
        for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
            size_t n = lengths[li];
            for (int pad = 1; pad <= 2; pad++) {
                size_t kl = alg1_keys[(r + li) % 3];
                assert_int_equal(
                    mpos_mac_iso9797_alg1(&cc, key, kl, (enum mpos_mac_pad)pad, msg, n, mac),
                    MPOS_OK);
                ref_alg1(key, kl, pad, msg, n, ref);
                assert_memory_equal(mac, ref, 8);
                assert_int_equal(
                    mpos_mac_iso9797_alg3(&cc, key, 16, (enum mpos_mac_pad)pad, msg, n, mac),
                    MPOS_OK);
                ref_alg3(key, pad, msg, n, ref);
                assert_memory_equal(mac, ref, 8);
            }
            size_t tk = (r & 1) ? 16 : 8;
            assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, tk, msg, n, mac),
                             MPOS_OK);
            ref_cup(MPOS_CIPHER_TDES, key, tk, msg, n, ref);
            assert_memory_equal(mac, ref, 8);
            assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_SM4, key, 16, msg, n, mac), MPOS_OK);
            ref_cup(MPOS_CIPHER_SM4, key, 16, msg, n, ref);
            assert_memory_equal(mac, ref, 16);
        }
    }
}

/* The incremental interface gives the one-shot result for any split of the message. */
static void test_incremental(void **state)
{
    (void)state;
    static uint8_t msg[1100];
    uint8_t key[16], whole[16], part[16];
    struct {
        enum mpos_mac_alg alg;
        enum mpos_cipher cipher;
        enum mpos_mac_pad pad;
        size_t key_len;
    } cases[] = {
        {MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, 16},
        {MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_2, 8},
        {MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, 16},
        {MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, MPOS_MAC_PAD_2, 16},
        {MPOS_MAC_ALG_CUP_ECB, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, 8},
        {MPOS_MAC_ALG_CUP_ECB, MPOS_CIPHER_SM4, MPOS_MAC_PAD_1, 16},
    };
    assert_int_equal(mpos_random_bytes(key, sizeof(key)), MPOS_OK);
    assert_int_equal(mpos_random_bytes(msg, sizeof(msg)), MPOS_OK);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        mpos_mac_ctx ctx;
        const size_t n = sizeof(msg);
        assert_int_equal(mpos_mac_init(&ctx, &cc, cases[c].alg, cases[c].cipher, cases[c].pad, key,
                                       cases[c].key_len),
                         MPOS_OK);
        size_t full = mpos_mac_length(&ctx);
        assert_int_equal(full, mpos_cipher_block_len(cases[c].cipher));
        assert_int_equal(mpos_mac_update(&ctx, msg, n), MPOS_OK);
        assert_int_equal(mpos_mac_final(&ctx, whole, full), MPOS_OK);
        assert_int_equal(mpos_mac_length(&ctx), 0); /* final cleared the context */
        /* Every two-way split, and byte-by-byte with empty updates in between. */
        for (size_t s = 0; s <= 40; s++) {
            size_t cut = s < 34 ? s : n - (40 - s);
            assert_int_equal(mpos_mac_init(&ctx, &cc, cases[c].alg, cases[c].cipher, cases[c].pad,
                                           key, cases[c].key_len),
                             MPOS_OK);
            assert_int_equal(mpos_mac_update(&ctx, msg, cut), MPOS_OK);
            assert_int_equal(mpos_mac_update(&ctx, NULL, 0), MPOS_OK);
            assert_int_equal(mpos_mac_update(&ctx, msg + cut, n - cut), MPOS_OK);
            assert_int_equal(mpos_mac_final(&ctx, part, full), MPOS_OK);
            assert_memory_equal(part, whole, full);
        }
        assert_int_equal(mpos_mac_init(&ctx, &cc, cases[c].alg, cases[c].cipher, cases[c].pad, key,
                                       cases[c].key_len),
                         MPOS_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(mpos_mac_update(&ctx, msg + i, 1), MPOS_OK);
        }
        assert_int_equal(mpos_mac_final_verify(&ctx, whole, full), MPOS_OK);
        /* Truncated output is the leftmost bytes. */
        assert_int_equal(mpos_mac_init(&ctx, &cc, cases[c].alg, cases[c].cipher, cases[c].pad, key,
                                       cases[c].key_len),
                         MPOS_OK);
        assert_int_equal(mpos_mac_update(&ctx, msg, n), MPOS_OK);
        memset(part, 0xAA, sizeof(part));
        assert_int_equal(mpos_mac_final(&ctx, part, 4), MPOS_OK);
        assert_memory_equal(part, whole, 4);
        assert_int_equal(part[4], 0xAA);
    }
}

/* ---- Verification. ------------------------------------------------------------------ */

static void test_verify(void **state)
{
    (void)state;
    uint8_t key[16], msg[24], mac[8];
    mpos_mac_ctx ctx;
    tu_hex("0123456789ABCDEFFEDCBA9876543210", key, sizeof(key));
    size_t n = tu_hex("4E6F77206973207468652074696D6520666F7220616C6C20", msg, sizeof(msg));
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, msg, n, mac), MPOS_OK);
    /* Stand-alone compare: lengths 4..8 accepted, others refused. */
    for (size_t len = 4; len <= 8; len++) {
        assert_int_equal(mpos_mac_verify(mac, 8, mac, len), MPOS_OK);
    }
    assert_int_equal(mpos_mac_verify(mac, 8, mac, 3), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mac_verify(mac, 8, mac, 9), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mac_verify(NULL, 8, mac, 8), MPOS_ERR_ARG);
    /* Every single-bit change of a received MAC, and of the message, is rejected. */
    for (size_t bit = 0; bit < 64; bit++) {
        uint8_t bad[8];
        memcpy(bad, mac, 8);
        bad[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
        assert_int_equal(mpos_mac_verify(mac, 8, bad, 8), MPOS_ERR_VERIFY);
        assert_int_equal(mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES,
                                       MPOS_MAC_PAD_1, key, 16),
                         MPOS_OK);
        assert_int_equal(mpos_mac_update(&ctx, msg, n), MPOS_OK);
        assert_int_equal(mpos_mac_final_verify(&ctx, bad, 8), MPOS_ERR_VERIFY);
    }
    for (size_t bit = 0; bit < 8 * n; bit++) {
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES,
                                       MPOS_MAC_PAD_1, key, 16),
                         MPOS_OK);
        assert_int_equal(mpos_mac_update(&ctx, msg, n), MPOS_OK);
        assert_int_equal(mpos_mac_final_verify(&ctx, mac, 4), MPOS_ERR_VERIFY);
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Length limits of final_verify, and the context is cleared even then. */
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_OK);
    assert_int_equal(mpos_mac_final_verify(&ctx, mac, 3), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mac_update(&ctx, msg, n), MPOS_ERR_ARG);
}

/* ---- Argument and key errors. ------------------------------------------------------- */

static void expect_wiped(const uint8_t *mac, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(mac[i], 0);
    }
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t key[32] = {0}, msg[8] = {0}, mac[16];
    mpos_mac_ctx ctx;
    static const size_t bad_alg3[] = {0, 8, 15, 17, 24, 32};
    for (size_t i = 0; i < sizeof(bad_alg3) / sizeof(bad_alg3[0]); i++) {
        memset(mac, 0xAA, sizeof(mac));
        assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, bad_alg3[i], MPOS_MAC_PAD_1, msg, 8, mac),
                         MPOS_ERR_KEY);
        expect_wiped(mac, 8);
    }
    static const size_t bad_alg1[] = {0, 7, 9, 12, 32};
    for (size_t i = 0; i < sizeof(bad_alg1) / sizeof(bad_alg1[0]); i++) {
        memset(mac, 0xAA, sizeof(mac));
        assert_int_equal(mpos_mac_iso9797_alg1(&cc, key, bad_alg1[i], MPOS_MAC_PAD_2, msg, 8, mac),
                         MPOS_ERR_KEY);
        expect_wiped(mac, 8);
    }
    /* cup-ecb: TDES MAK 8 or 16 only (no 3-key), SM4 16 only; AES is not a cup cipher. */
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 24, msg, 8, mac), MPOS_ERR_KEY);
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_SM4, key, 8, msg, 8, mac), MPOS_ERR_KEY);
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_SM4, key, 32, msg, 8, mac), MPOS_ERR_KEY);
    assert_int_equal(mpos_mac_cup_ecb(&cc, MPOS_CIPHER_AES, key, 16, msg, 8, mac), MPOS_ERR_ARG);
    /* Unknown padding, NULL pointers. */
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, (enum mpos_mac_pad)3, msg, 8, mac),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, (enum mpos_mac_pad)0, msg, 8, mac),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_1, NULL, 8, mac),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, NULL, 16, MPOS_MAC_PAD_1, msg, 8, mac),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mac_iso9797_alg3(NULL, key, 16, MPOS_MAC_PAD_1, msg, 8, mac),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_mac_iso9797_alg1(&cc, key, 16, MPOS_MAC_PAD_1, msg, 8, NULL),
                     MPOS_ERR_ARG);
    /* The incremental interface: ISO algorithms are TDES only, cup-ecb has no method 2,
     * unknown algorithm, out-of-range output lengths, use after final. */
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_AES, MPOS_MAC_PAD_1, key, 16),
        MPOS_ERR_ARG);
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_CUP_ECB, MPOS_CIPHER_TDES, MPOS_MAC_PAD_2, key, 16),
        MPOS_ERR_ARG);
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, (enum mpos_mac_alg)2, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_ERR_ARG);
    assert_int_equal(
        mpos_mac_init(NULL, &cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_ERR_ARG);
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_OK);
    assert_int_equal(mpos_mac_update(&ctx, NULL, 1), MPOS_ERR_ARG);
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_OK);
    assert_int_equal(mpos_mac_final(&ctx, mac, 0), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_mac_final(&ctx, mac, 8), MPOS_ERR_ARG); /* cleared by the failure */
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, MPOS_MAC_PAD_1, key, 16),
        MPOS_OK);
    assert_int_equal(mpos_mac_final(&ctx, mac, 9), MPOS_ERR_LENGTH);
    /* clear wipes the key copy. */
    memset(key, 0x5C, 16);
    assert_int_equal(
        mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, MPOS_MAC_PAD_2, key, 16),
        MPOS_OK);
    mpos_mac_clear(&ctx);
    const uint8_t *raw = (const uint8_t *)&ctx;
    for (size_t i = 0; i < sizeof(ctx); i++) {
        assert_int_equal(raw[i], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retail_known_answers),
        cmocka_unit_test(test_alg1_known_answers),
        cmocka_unit_test(test_padding_rules),
        cmocka_unit_test(test_cup_ecb_known_answers),
        cmocka_unit_test(test_cmac_published),
        cmocka_unit_test(test_cross_check_random),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
