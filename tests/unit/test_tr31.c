/* Unit tests: TR-31 / ANSI X9.143 key blocks (mpos/tr31.h).
 *
 * Known answers: TR-31:2018 A.7.2.2 (version B), A.7.3.2 (version B with KS), A.7.4
 * (version D), ANSI X9.143:2021 8.1 (version D, obfuscated) and 8.4.2 (version B with KS),
 * and a Thales payShield 10k example (version D, AES-256 key), as listed in
 * ../shared/vectors/published.tsv. The test carries its own small raw implementation of the
 * key block cryptography on the facade (raw_wrap/raw_open below): it recovers the random
 * padding of the published blocks (so wrap can be shown to reproduce them byte for byte) and
 * builds blocks with a valid MAC around headers or key fields the library must refuse. The
 * opt-in proprietary extensions (SM4 '4', raw EC 'E') have known answers from the vault's
 * former, independent implementation of them (test_ext_known_answers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/tr31.h"
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

struct vector {
    const char *kbpk;
    const char *block;
    const char *key;
    const char *source;
};

static const struct vector published[] = {
    {"DD7515F2BFC17F85CE48F3CA25CB21F6",
     "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
     "3F419E1CB7079442AA37474C2EFBF8B8", "TR-31:2018 A.7.2.2"},
    {"1D22BF32387C600AD97F9B97A51311AC",
     "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E2"
     "48719E24B433627",
     "E8BC63E5479455E26577F715D587FE68", "TR-31:2018 A.7.3.2"},
    {"1D22BF32387C600AD97F9B97A51311AC",
     "B0120B0TX12S0100KS1800604B120F929280000015CEB14B76D551F21EC43A75390FA118A98C6CB049E3B9E8"
     "64A5F4A8B9A5108A6DB5635C95B042D7",
     "E8BC63E5479455E26577F715D587FE68", "ANSI X9.143:2021 8.4.2"},
    {"88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
     "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA"
     "05F7425509593D03A457DC34",
     "3F419E1CB7079442AA37474C2EFBF8B8", "TR-31:2018 A.7.4"},
    {"88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
     "D0144P0AE00E00002C77FA3F4A553BED6E88AE5C172A4166E3D4ACA8E2AC71C158A476FAC12C13C3829DE55D"
     "3AB54C48F4C4FEF7AC75E90FC47F1B77E7B19A73ED46E64410082557",
     "3F419E1CB7079442AA37474C2EFBF8B8", "ANSI X9.143:2021 8.1"},
    {"4141414141414141414141414141414141414141414141414141414141414141",
     "D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF13"
     "57178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814",
     "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC",
     "Thales payShield 10k example"},
};
#define N_PUBLISHED (sizeof(published) / sizeof(published[0]))

/* Writes n as the 4-digit length field of a key block. */
static void set_length_field(char *block, size_t n)
{
    for (size_t i = 4; i > 0; i--) {
        block[i] = (char)('0' + n % 10);
        n /= 10;
    }
}

/* ---- a raw key block implementation for the tests (no header checks at all) ---- */

static size_t raw_bs(char version)
{
    return version == 'B' ? 8 : 16;
}

/* X9.143:2021 7.2.1 / 7.2.2, written out again independently of lib/tr31. */
static void raw_derive(char version, const uint8_t *kbpk, size_t kbpk_len, uint8_t *kbek,
                       uint8_t *kbak)
{
    enum mpos_cipher cipher = version == 'B' ? MPOS_CIPHER_TDES : MPOS_CIPHER_AES;
    size_t bs = raw_bs(version);
    uint8_t alg = version == 'B' ? (kbpk_len == 16 ? 0 : 1)
                                 : (kbpk_len == 16   ? 2
                                    : kbpk_len == 24 ? 3
                                                     : 4);
    for (uint8_t usage = 0; usage < 2; usage++) {
        for (uint8_t i = 0; (size_t)i * bs < kbpk_len; i++) {
            uint8_t data[8] = {
                (uint8_t)(i + 1),        0, usage, 0, 0, alg, (uint8_t)(kbpk_len >> 5),
                (uint8_t)(kbpk_len << 3)};
            uint8_t out[16];
            assert_int_equal(mpos_cmac(&cc, cipher, kbpk, kbpk_len, data, 8, out), MPOS_OK);
            size_t n = kbpk_len - (size_t)i * bs < bs ? kbpk_len - (size_t)i * bs : bs;
            memcpy((usage == 0 ? kbek : kbak) + (size_t)i * bs, out, n);
        }
    }
}

/* Builds header || E(payload) || MAC with a valid MAC whatever the header says. When
 * fix_length is set the length field (characters 1-4) is set to the block's length. */
static void raw_wrap(const char *header, int fix_length, const uint8_t *kbpk, size_t kbpk_len,
                     const uint8_t *payload, size_t payload_len, char *out)
{
    char version = header[0] == 'B' ? 'B' : 'D';
    enum mpos_cipher cipher = version == 'B' ? MPOS_CIPHER_TDES : MPOS_CIPHER_AES;
    size_t bs = raw_bs(version);
    size_t h = strlen(header);
    uint8_t kbek[32], kbak[32], mac[16], buf[1200], enc[128];
    char hexbuf[300];
    memcpy(buf, header, h);
    if (fix_length) {
        set_length_field((char *)buf, h + 2 * payload_len + 2 * bs);
    }
    memcpy(buf + h, payload, payload_len);
    raw_derive(version, kbpk, kbpk_len, kbek, kbak);
    assert_int_equal(mpos_cmac(&cc, cipher, kbak, kbpk_len, buf, h + payload_len, mac), MPOS_OK);
    assert_int_equal(
        mpos_cipher_cbc(&cc, cipher, 1, kbek, kbpk_len, mac, buf + h, enc, payload_len), MPOS_OK);
    memcpy(out, buf, h);
    mpos_hex_encode(enc, payload_len, hexbuf);
    memcpy(out + h, hexbuf, 2 * payload_len);
    mpos_hex_encode(mac, bs, hexbuf);
    memcpy(out + h + 2 * payload_len, hexbuf, 2 * bs + 1);
}

/* Decrypts a well-formed block without any check; returns the clear key data length. */
static size_t raw_open(const char *block, size_t header_len, const uint8_t *kbpk, size_t kbpk_len,
                       uint8_t *payload)
{
    char version = block[0];
    enum mpos_cipher cipher = version == 'B' ? MPOS_CIPHER_TDES : MPOS_CIPHER_AES;
    size_t bs = raw_bs(version);
    size_t n = strlen(block);
    uint8_t kbek[32], kbak[32], mac[16], enc[128];
    char hexbuf[300];
    size_t payload_len = (n - header_len - 2 * bs) / 2;
    memcpy(hexbuf, block + header_len, 2 * payload_len);
    hexbuf[2 * payload_len] = '\0';
    tu_hex(hexbuf, enc, sizeof(enc));
    tu_hex(block + n - 2 * bs, mac, sizeof(mac));
    raw_derive(version, kbpk, kbpk_len, kbek, kbak);
    assert_int_equal(
        mpos_cipher_cbc(&cc, cipher, 0, kbek, kbpk_len, mac, enc, payload, payload_len), MPOS_OK);
    return payload_len;
}

/* ---- helpers ---- */

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Unwrap must fail (with want, or any error when want is 0) and leave no key bytes. */
static int expect_reject(const uint8_t *kbpk, size_t kbpk_len, const char *block, size_t len,
                         int want)
{
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 99;
    mpos_tr31_header hdr;
    memset(key, 0xA5, sizeof(key));
    int rc = mpos_tr31_unwrap(&cc, kbpk, kbpk_len, block, len, &hdr, key, sizeof(key), &key_len);
    if (rc == MPOS_OK || (want != 0 && rc != want)) {
        fprintf(stderr, "expected rejection %d, got %d (%s) for %.*s\n", want, rc,
                hdr.why != NULL ? hdr.why : "-", (int)len, block);
        fail();
    }
    assert_int_equal(key_len, 0);
    assert_true(all_zero(key, sizeof(key)));
    assert_int_equal(hdr.len, 0); /* no unauthenticated header handed out either */
    return rc;
}

static void expect_key(const uint8_t *kbpk, size_t kbpk_len, const char *block, const char *key_hex)
{
    uint8_t key[MPOS_TR31_MAX_KEY_LEN], want[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 0;
    size_t want_len = tu_hex(key_hex, want, sizeof(want));
    mpos_tr31_header hdr;
    int rc = mpos_tr31_unwrap(&cc, kbpk, kbpk_len, block, strlen(block), &hdr, key, sizeof(key),
                              &key_len);
    if (rc != MPOS_OK) {
        fprintf(stderr, "unwrap failed %d (%s): %s\n", rc, hdr.why != NULL ? hdr.why : "-", block);
    }
    assert_int_equal(rc, MPOS_OK);
    assert_int_equal(key_len, want_len);
    assert_memory_equal(key, want, want_len);
}

static int parse_t(const char *text)
{
    mpos_tr31_header hdr;
    return mpos_tr31_header_parse(text, strlen(text), MPOS_TR31_PARSE_TEMPLATE, &hdr);
}

static int parse_b(const char *text)
{
    mpos_tr31_header hdr;
    return mpos_tr31_header_parse(text, strlen(text), MPOS_TR31_PARSE_BLOCK, &hdr);
}

/* ---- known answers ---- */

static void test_published_vectors(void **state)
{
    (void)state;
    for (size_t v = 0; v < N_PUBLISHED; v++) {
        uint8_t kbpk[32];
        size_t kbpk_len = tu_hex(published[v].kbpk, kbpk, sizeof(kbpk));
        expect_key(kbpk, kbpk_len, published[v].block, published[v].key);
    }
    /* The parsed header of TR-31:2018 A.7.3.2. */
    mpos_tr31_header hdr;
    uint8_t kbpk[16], key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len;
    tu_hex(published[1].kbpk, kbpk, sizeof(kbpk));
    assert_int_equal(mpos_tr31_unwrap(&cc, kbpk, 16, published[1].block, strlen(published[1].block),
                                      &hdr, key, sizeof(key), &key_len),
                     MPOS_OK);
    assert_int_equal(hdr.version, 'B');
    assert_int_equal(hdr.block_len, 104);
    assert_string_equal(hdr.key_usage, "B0");
    assert_int_equal(hdr.algorithm, 'T');
    assert_int_equal(hdr.mode_of_use, 'X');
    assert_string_equal(hdr.key_version, "12");
    assert_int_equal(hdr.exportability, 'S');
    assert_int_equal(hdr.key_context, '0');
    assert_int_equal(hdr.num_opt_blocks, 1);
    assert_int_equal(hdr.len, 40);
    const struct mpos_tr31_opt_block *ks = mpos_tr31_header_find(&hdr, "KS");
    assert_non_null(ks);
    assert_int_equal(ks->len, 20);
    assert_memory_equal(hdr.text + ks->offset, "00604B120F9292800000", 20);
    assert_null(mpos_tr31_header_find(&hdr, "IK"));
}

/* Every tr31 line of the published vectors file, through the library. */
static void test_published_file(void **state)
{
    (void)state;
    const char *path = tu_published_vectors();
    if (path == NULL) {
        skip();
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    unsigned seen = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char kbpk_hex[200], block[2000], expect[200];
        if (strncmp(line, "tr31 unwrap ", 12) != 0) {
            continue;
        }
        assert_int_equal(
            sscanf(line, "tr31 unwrap --kbpk %199s --block %1999s %199s", kbpk_hex, block, expect),
            3);
        uint8_t kbpk[64];
        size_t kbpk_len = tu_hex(kbpk_hex, kbpk, sizeof(kbpk));
        expect_key(kbpk, kbpk_len, block, expect);
        seen++;
    }
    fclose(f);
    assert_true(seen >= N_PUBLISHED);
}

/* wrap with the padding each published block carries reproduces the block exactly. The
 * padding is recovered by decrypting with the raw implementation. */
static void test_wrap_reproduces_published(void **state)
{
    (void)state;
    for (size_t v = 0; v < N_PUBLISHED; v++) {
        uint8_t kbpk[32], payload[128], key[64];
        char out[MPOS_TR31_MAX_BLOCK_LEN + 1], tmpl[200];
        size_t out_len = 0;
        size_t kbpk_len = tu_hex(published[v].kbpk, kbpk, sizeof(kbpk));
        size_t key_len = tu_hex(published[v].key, key, sizeof(key));
        mpos_tr31_header hdr;
        const char *block = published[v].block;
        assert_int_equal(mpos_tr31_header_parse(block, strlen(block), MPOS_TR31_PARSE_BLOCK, &hdr),
                         MPOS_OK);
        size_t payload_len = raw_open(block, hdr.len, kbpk, kbpk_len, payload);
        assert_int_equal(mpos_load_be16(payload), key_len * 8);
        assert_memory_equal(payload + 2, key, key_len);
        /* The template: the header with a length field that wrap must not trust. */
        memcpy(tmpl, block, hdr.len);
        memcpy(tmpl + 1, "9999", 4);
        tmpl[hdr.len] = '\0';
        assert_int_equal(mpos_tr31_wrap(&cc, kbpk, kbpk_len, tmpl, hdr.len, key, key_len,
                                        payload + 2 + key_len, payload_len - 2 - key_len, out,
                                        sizeof(out), &out_len),
                         MPOS_OK);
        assert_int_equal(out_len, strlen(block));
        assert_string_equal(out, block);
    }
    /* The A.7.4 padding, pinned: the block is the unobfuscated form of a 16-byte AES key. */
    uint8_t kbpk[32], payload[128], pad[14];
    tu_hex(published[3].kbpk, kbpk, sizeof(kbpk));
    tu_hex("1C2965473CE206BB855B01533782", pad, sizeof(pad));
    assert_int_equal(raw_open(published[3].block, 16, kbpk, 32, payload), 32);
    assert_memory_equal(payload + 18, pad, sizeof(pad));
}

/* ---- round trips ---- */

struct rt_case {
    const char *header; /* template */
    size_t key_len;
};

static void round_trip(const uint8_t *kbpk, size_t kbpk_len, const char *tmpl, size_t key_len)
{
    uint8_t key[MPOS_TR31_MAX_KEY_LEN], back[MPOS_TR31_MAX_KEY_LEN];
    char a[MPOS_TR31_MAX_BLOCK_LEN + 1], b[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t a_len = 0, b_len = 0, back_len = 0;
    mpos_tr31_header t, hdr;
    assert_int_equal(mpos_random_bytes(key, key_len), MPOS_OK);
    int rc = mpos_tr31_header_parse(tmpl, strlen(tmpl), MPOS_TR31_PARSE_TEMPLATE, &t);
    if (rc != MPOS_OK) {
        fprintf(stderr, "template %s: %s\n", tmpl, t.why);
    }
    assert_int_equal(rc, MPOS_OK);
    rc = mpos_tr31_wrap(&cc, kbpk, kbpk_len, tmpl, strlen(tmpl), key, key_len, NULL, 0, a,
                        sizeof(a), &a_len);
    if (rc != MPOS_OK) {
        fprintf(stderr, "wrap %s (key %zu, kbpk %zu): %d\n", tmpl, key_len, kbpk_len, rc);
    }
    assert_int_equal(rc, MPOS_OK);
    assert_int_equal(a_len, strlen(a));
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, kbpk_len, tmpl, strlen(tmpl), key, key_len, NULL, 0,
                                    b, sizeof(b), &b_len),
                     MPOS_OK);
    assert_int_equal(a_len, b_len);
    assert_string_not_equal(a, b); /* random padding */
    assert_int_equal(
        mpos_tr31_unwrap(&cc, kbpk, kbpk_len, a, a_len, &hdr, back, sizeof(back), &back_len),
        MPOS_OK);
    assert_int_equal(back_len, key_len);
    assert_memory_equal(back, key, key_len);
    /* The header is the template's, with the length field and maybe a PB block. */
    assert_int_equal(hdr.version, t.version);
    assert_string_equal(hdr.key_usage, t.key_usage);
    assert_int_equal(hdr.algorithm, t.algorithm);
    assert_int_equal(hdr.mode_of_use, t.mode_of_use);
    assert_int_equal(hdr.exportability, t.exportability);
    assert_memory_equal(hdr.text + 5, tmpl + 5, 7);
    assert_memory_equal(hdr.text + MPOS_TR31_FIXED_HEADER_LEN, tmpl + MPOS_TR31_FIXED_HEADER_LEN,
                        t.len - MPOS_TR31_FIXED_HEADER_LEN);
    assert_true(
        hdr.num_opt_blocks == t.num_opt_blocks ||
        (hdr.num_opt_blocks == t.num_opt_blocks + 1 && mpos_tr31_header_find(&hdr, "PB") != NULL));
    /* Key-length obfuscation: the clear key data is as long as for the longest key. */
    size_t bs = hdr.version == 'B' ? 8 : 16;
    size_t longest = t.algorithm == 'T'   ? 24
                     : t.algorithm == 'A' ? 32
                     : t.algorithm == 'D' ? 8
                                          : 64;
    size_t payload = (2 + longest + bs - 1) / bs * bs;
    assert_int_equal(a_len, hdr.len + 2 * payload + 2 * bs);
    assert_int_equal((hdr.len - MPOS_TR31_FIXED_HEADER_LEN) % bs, 0);
}

static void test_round_trips(void **state)
{
    (void)state;
    static const size_t b_kbpk[] = {16, 24};
    static const size_t d_kbpk[] = {16, 24, 32};
    static const struct rt_case cases[] = {
        {"?0000P0TE00E0000", 16},
        {"?0000D0TB00N0000", 24},
        {"?0000D0AB00N0000", 16},
        {"?0000K1AD01E0000", 24},
        {"?0000D0AN00N0000", 32},
        {"?0000P0DE00E0000", 8},
        {"?0000M7HC00N0000", 16},
        {"?0000M7HG00N0000", 33},
        {"?0000M7HV00N0000", 64},
        {"?0000B0TX12S0100KS1800604B120F9292800000", 16}, /* no PB needed for B */
        {"?0000B1AX00N0100IK14FFFF9876543210E0", 16},     /* PB for both */
        {"?0000K0TB00E0200KC0C00ABCDEFLB05X", 24},        /* PB */
        {"?0000P0TE00E0300KP0E01A1B2C3D4TS1320240229235959ZLB08ABCD", 16},
    };
    for (int version = 0; version < 2; version++) {
        const size_t *lens = version == 0 ? b_kbpk : d_kbpk;
        size_t nlens = version == 0 ? 2 : 3;
        for (size_t k = 0; k < nlens; k++) {
            uint8_t kbpk[32];
            assert_int_equal(mpos_random_bytes(kbpk, lens[k]), MPOS_OK);
            for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
                char tmpl[512];
                assert_true(strlen(cases[c].header) < sizeof(tmpl));
                strcpy(tmpl, cases[c].header);
                tmpl[0] = version == 0 ? 'B' : 'D';
                round_trip(kbpk, lens[k], tmpl, cases[c].key_len);
            }
            /* An optional block in the extended length form: "00" "02" then 012C = 300
             * characters (X9.143:2021 6.2, table 1). */
            char ext[400] = "?0000D0AB00N0100LB0002012C";
            ext[0] = version == 0 ? 'B' : 'D';
            memset(ext + 26, 'L', 300 - 10);
            ext[16 + 300] = '\0';
            round_trip(kbpk, lens[k], ext, 32);
        }
    }
}

/* Given padding: the unobfuscated form, and the lengths refused. */
static void test_given_padding(void **state)
{
    (void)state;
    uint8_t kbpk[16], key[16], pad[64] = {0}, back[64];
    char out[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t out_len, back_len;
    tu_hex("00112233445566778899AABBCCDDEEFF", kbpk, sizeof(kbpk));
    tu_hex("0123456789ABCDEFFEDCBA9876543210", key, sizeof(key));
    /* B, 2-key TDES key, no obfuscation: 2 + 16 + 6 = 24 bytes. */
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "B0000P0TE00E0000", 16, key, 16, pad, 6, out,
                                    sizeof(out), &out_len),
                     MPOS_OK);
    assert_int_equal(out_len, 16 + 48 + 16);
    assert_memory_equal(out, "B0080P0TE00E0000", 16);
    assert_int_equal(
        mpos_tr31_unwrap(&cc, kbpk, 16, out, out_len, NULL, back, sizeof(back), &back_len),
        MPOS_OK);
    assert_int_equal(back_len, 16);
    assert_memory_equal(back, key, 16);
    /* Not a whole number of blocks, or more than obfuscation needs (B, T: 32 bytes). */
    static const size_t bad_b[] = {0, 5, 7, 22, 30};
    for (size_t i = 0; i < sizeof(bad_b) / sizeof(bad_b[0]); i++) {
        memset(out, 'x', sizeof(out));
        assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "B0000P0TE00E0000", 16, key, 16, pad,
                                        bad_b[i], out, sizeof(out), &out_len),
                         MPOS_ERR_LENGTH);
        assert_int_equal(out_len, 0);
        assert_true(all_zero((const uint8_t *)out, sizeof(out)));
    }
    /* 14 bytes: the obfuscated length exactly. */
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "B0000P0TE00E0000", 16, key, 16, pad, 14, out,
                                    sizeof(out), &out_len),
                     MPOS_OK);
    assert_int_equal(out_len, 16 + 64 + 16);
    /* D: 2 + 16 + 14 = 32 and 2 + 16 + 30 = 48 are fine, 46 is too long, 15 not aligned. */
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, pad, 30, out,
                                    sizeof(out), &out_len),
                     MPOS_OK);
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, pad, 46, out,
                                    sizeof(out), &out_len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, pad, 15, out,
                                    sizeof(out), &out_len),
                     MPOS_ERR_LENGTH);
    /* Output buffer one short (the NUL does not fit). */
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, pad, 14, out,
                                    16 + 64 + 32, &out_len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, pad, 14, out,
                                    16 + 64 + 32 + 1, &out_len),
                     MPOS_OK);
}

/* ---- negative ---- */

/* Bits that are not DES parity bits (the low bit of each byte): flipping a parity bit of
 * a TDES KBPK leaves the same key. */
static void test_wrong_kbpk(void **state)
{
    (void)state;
    for (size_t v = 0; v < N_PUBLISHED; v++) {
        uint8_t kbpk[32];
        const char *block = published[v].block;
        size_t kbpk_len = tu_hex(published[v].kbpk, kbpk, sizeof(kbpk));
        for (size_t bit = 0; bit < kbpk_len * 8; bit++) {
            if (block[0] == 'B' && bit % 8 == 7) {
                continue;
            }
            kbpk[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
            expect_reject(kbpk, kbpk_len, block, strlen(block), MPOS_ERR_VERIFY);
            kbpk[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
        }
        /* A KBPK of a length the version does not take. */
        static const size_t b_bad[] = {0, 8, 15, 17, 32};
        static const size_t d_bad[] = {0, 8, 15, 20, 33};
        for (size_t i = 0; i < 5; i++) {
            uint8_t big[40] = {0};
            memcpy(big, kbpk, kbpk_len);
            expect_reject(big, block[0] == 'B' ? b_bad[i] : d_bad[i], block, strlen(block),
                          MPOS_ERR_KEY);
        }
    }
}

/* Every single-bit flip of every character of every published block (the result may be
 * lowercase, non-hex, non-printable or a different version letter) is rejected. */
static void test_every_bit_flip(void **state)
{
    (void)state;
    unsigned flips = 0;
    for (size_t v = 0; v < N_PUBLISHED; v++) {
        uint8_t kbpk[32];
        char block[MPOS_TR31_MAX_BLOCK_LEN];
        size_t kbpk_len = tu_hex(published[v].kbpk, kbpk, sizeof(kbpk));
        size_t n = strlen(published[v].block);
        memcpy(block, published[v].block, n + 1);
        for (size_t i = 0; i < n; i++) {
            for (int bit = 0; bit < 8; bit++) {
                block[i] = (char)(block[i] ^ (1 << bit));
                expect_reject(kbpk, kbpk_len, block, n, 0);
                block[i] = published[v].block[i];
                flips++;
            }
        }
    }
    assert_true(flips > 5000);
}

static void test_truncated_and_extended(void **state)
{
    (void)state;
    static const char *const tails[] = {
        "0", "00", "A", "0000000000000000", "00000000000000000000000000000000", " "};
    for (size_t v = 0; v < N_PUBLISHED; v++) {
        uint8_t kbpk[32];
        char block[MPOS_TR31_MAX_BLOCK_LEN + 64];
        size_t kbpk_len = tu_hex(published[v].kbpk, kbpk, sizeof(kbpk));
        size_t n = strlen(published[v].block);
        for (size_t len = 0; len < n; len++) {
            expect_reject(kbpk, kbpk_len, published[v].block, len, 0);
            /* Truncated, with the length field made to agree. */
            if (len >= 16) {
                memcpy(block, published[v].block, len);
                set_length_field(block, len);
                expect_reject(kbpk, kbpk_len, block, len, 0);
            }
        }
        for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
            size_t m = n + strlen(tails[t]);
            memcpy(block, published[v].block, n);
            memcpy(block + n, tails[t], strlen(tails[t]));
            expect_reject(kbpk, kbpk_len, block, m, 0);
            set_length_field(block, m);
            expect_reject(kbpk, kbpk_len, block, m, 0);
        }
    }
}

static void test_bad_length_field(void **state)
{
    (void)state;
    static const char *const fields[] = {"0079", "0081", "0000", "9999",
                                         "008O", " 080", "+080", "0x50"};
    uint8_t kbpk[16];
    char block[128];
    tu_hex(published[0].kbpk, kbpk, sizeof(kbpk));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        strcpy(block, published[0].block);
        memcpy(block + 1, fields[i], 4);
        int rc = expect_reject(kbpk, 16, block, strlen(block), 0);
        assert_true(rc == MPOS_ERR_LENGTH || rc == MPOS_ERR_FORMAT);
    }
}

/* Headers the library must refuse even though the MAC over them is valid. */
static void test_bad_headers_with_valid_mac(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        int rc;
        int template_ok; /* as a wrap template the header is fine (wrap adds the PB) */
    } cases[] = {
        {"D0000Q9AE00E0000", MPOS_ERR_FORMAT, 0}, /* unknown key usage */
        {"D000000AE00E0000", MPOS_ERR_FORMAT, 0}, /* numeric (proprietary) usage */
        {"D0000P0ZE00E0000", MPOS_ERR_FORMAT, 0}, /* unknown algorithm */
        {"D0000P0AQ00E0000", MPOS_ERR_FORMAT, 0}, /* unknown mode of use */
        {"D0000P0AC00E0000", MPOS_ERR_USAGE, 0},  /* PIN key used for MACs */
        {"D0000M7AC00E0000", MPOS_ERR_USAGE, 0},  /* HMAC usage with AES */
        {"D0000B0AE00E0000", MPOS_ERR_USAGE, 0},  /* BDK to encrypt */
        {"D0000K0HB00E0000", MPOS_ERR_USAGE, 0},  /* HMAC KEK */
        {"D0000P0AE0-E0000", MPOS_ERR_FORMAT, 0}, /* key version not alphanumeric */
        {"D0000P0AE00X0000", MPOS_ERR_FORMAT, 0}, /* exportability */
        {"D0000P0AE00E0A00", MPOS_ERR_FORMAT, 0}, /* count not digits */
        {"D0000P0AE00E0030", MPOS_ERR_FORMAT, 0}, /* key context */
        {"D0000P0AE00E0001", MPOS_ERR_FORMAT, 0}, /* reserved byte */
        {"D0000P0AE00e0000", MPOS_ERR_FORMAT, 0}, /* lowercase exportability */
        {"d0000P0AE00E0000", MPOS_ERR_FORMAT, 0}, /* lowercase version */
        {"D0000P0AE00E0100KS1800604B120F9292800000", MPOS_ERR_FORMAT, 1}, /* D needs a PB */
        {"D0000P0AE00E0100ZZ10000000000000", MPOS_ERR_FORMAT, 0},         /* unknown ID */
        {"D0000P0AE00E0200PB08000000KS1800604B120F9292800000", MPOS_ERR_FORMAT, 0}, /* PB 1st */
        {"D0000P0AE00E0100PB10000000000000", MPOS_ERR_FORMAT, 0}, /* PB, nothing to pad */
        {"D0000P0AE00E0200LB05XPB1B00000000000000000000000", MPOS_ERR_FORMAT, 0}, /* PB long */
        {"D0000P0AE00E0300LB06XYLB06XYPB0800", MPOS_ERR_FORMAT, 0},               /* repeated */
        {"D0000P0AE00E0100KC1201ABCDEFABCDEF", MPOS_ERR_FORMAT, 0}, /* KCV of 6 bytes */
        {"D0000P0AE00E0200IK13FFFF9876543210EPB0D000000000", MPOS_ERR_FORMAT, 0}, /* IK 15 */
    };
    uint8_t kbpk[32], payload[48] = {0}, key[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t key_len;
    tu_hex(published[3].kbpk, kbpk, sizeof(kbpk));
    tu_hex("00803F419E1CB7079442AA37474C2EFBF8B8", payload, sizeof(payload));
    /* Control: the raw wrap of a good header unwraps. */
    raw_wrap("D0000P0AE00E0000", 1, kbpk, 32, payload, 32, block);
    assert_int_equal(
        mpos_tr31_unwrap(&cc, kbpk, 32, block, strlen(block), NULL, key, sizeof(key), &key_len),
        MPOS_OK);
    assert_int_equal(key_len, 16);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_wrap(cases[i].header, 1, kbpk, 32, payload, 32, block);
        expect_reject(kbpk, 32, block, strlen(block), cases[i].rc);
        /* The same header is refused as a wrap template. */
        uint8_t k16[16] = {0};
        char out[MPOS_TR31_MAX_BLOCK_LEN + 1];
        size_t out_len;
        int rc = mpos_tr31_wrap(&cc, kbpk, 32, cases[i].header, strlen(cases[i].header), k16, 16,
                                NULL, 0, out, sizeof(out), &out_len);
        assert_int_equal(rc, cases[i].template_ok ? MPOS_OK : cases[i].rc);
    }
    /* Versions refused; A, C, E exist but are not implemented. */
    static const char *const versions = "ACE0Z@b";
    for (const char *p = versions; *p != '\0'; p++) {
        char hdr16[17] = "D0000P0AE00E0000";
        hdr16[0] = *p;
        raw_wrap(hdr16, 1, kbpk, 32, payload, 32, block);
        expect_reject(kbpk, 32, block, strlen(block),
                      (*p == 'A' || *p == 'C' || *p == 'E' || *p == '0') ? MPOS_ERR_UNSUPPORTED
                                                                         : MPOS_ERR_FORMAT);
    }
    /* Asymmetric algorithms parse as headers but are not wrapped or unwrapped here. */
    assert_int_equal(parse_t("D0000K2RB00E0000"), MPOS_OK);
    raw_wrap("D0000K2RB00E0000", 1, kbpk, 32, payload, 32, block);
    expect_reject(kbpk, 32, block, strlen(block), MPOS_ERR_UNSUPPORTED);
}

/* The key field after a valid MAC: length, algorithm and padding checks. */
static void test_bad_key_fields_with_valid_mac(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        unsigned bits;      /* the key length field */
        size_t payload_len; /* clear key data, bytes */
        int ok;
    } cases[] = {
        {"B0000P0TE00E0000", 128, 32, 1}, /* controls: obfuscated TDES key */
        {"D0000P0AE00E0000", 128, 48, 1}, /* and AES key */
        {"B0000P0TE00E0000", 64, 24, 0},  /* TDES key of 8 bytes (single DES is algorithm D) */
        {"D0000P0AE00E0000", 160, 32, 0}, /* AES key of 20 bytes */
        {"D0000P0AE00E0000", 129, 32, 0}, /* not whole bytes */
        {"D0000P0AE00E0000", 256, 32, 0}, /* a 32-byte key in 32 bytes of data */
        {"D0000P0AE00E0000", 0, 16, 0},   /* no key */
        {"D0000P0AE00E0000", 128, 64, 0}, /* padding beyond obfuscation (48 is the most) */
        {"D0000P0TE00E0000", 128, 48, 0}, /* TDES key under D: 32 is the most */
        {"B0000P0TE00E0000", 128, 40, 0}, /* TDES key under B: 32 is the most */
        {"D0000M7HC00N0000", 64, 16, 0},  /* HMAC key of 8 bytes */
    };
    uint8_t kbpk_b[16], kbpk_d[32], payload[128], key[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t key_len;
    tu_hex(published[0].kbpk, kbpk_b, sizeof(kbpk_b));
    tu_hex(published[3].kbpk, kbpk_d, sizeof(kbpk_d));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int b = cases[i].header[0] == 'B';
        memset(payload, 0x5A, sizeof(payload));
        mpos_store_be16(payload, (uint16_t)cases[i].bits);
        raw_wrap(cases[i].header, 1, b ? kbpk_b : kbpk_d, b ? 16 : 32, payload,
                 cases[i].payload_len, block);
        if (cases[i].ok) {
            assert_int_equal(mpos_tr31_unwrap(&cc, b ? kbpk_b : kbpk_d, b ? 16 : 32, block,
                                              strlen(block), NULL, key, sizeof(key), &key_len),
                             MPOS_OK);
            assert_int_equal(key_len, cases[i].bits / 8);
        } else {
            expect_reject(b ? kbpk_b : kbpk_d, b ? 16 : 32, block, strlen(block), MPOS_ERR_DECODE);
        }
    }
    /* Encrypted data that is not whole cipher blocks, or missing. */
    raw_wrap("D0000P0AE00E0000", 1, kbpk_d, 32, payload, 32, block);
    size_t n = strlen(block);
    char cut[MPOS_TR31_MAX_BLOCK_LEN + 1];
    memcpy(cut, block, 16);
    memcpy(cut + 16, block + 16 + 2, n - 16 - 2); /* drop one byte of key data */
    set_length_field(cut, n - 2);
    expect_reject(kbpk_d, 32, cut, n - 2, MPOS_ERR_LENGTH);
    memcpy(cut, block, 16);
    memcpy(cut + 16, block + n - 32, 32); /* the MAC alone */
    memcpy(cut + 1, "0048", 4);
    expect_reject(kbpk_d, 32, cut, 48, MPOS_ERR_LENGTH);
    /* Lowercase hex in the key data (the same bytes, so it would verify if accepted). */
    memcpy(cut, block, n + 1);
    for (size_t i = 16; i < n; i++) {
        if (cut[i] >= 'A' && cut[i] <= 'F') {
            cut[i] = (char)(cut[i] + 32);
            break;
        }
    }
    expect_reject(kbpk_d, 32, cut, n, MPOS_ERR_FORMAT);
    /* Key buffer too small for a good block: refused, wiped. */
    uint8_t small[8];
    size_t small_len = 1;
    memset(small, 0xFF, sizeof(small));
    assert_int_equal(mpos_tr31_unwrap(&cc, kbpk_d, 32, published[3].block,
                                      strlen(published[3].block), NULL, small, sizeof(small),
                                      &small_len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(small_len, 0);
    assert_true(all_zero(small, sizeof(small)));
}

static void test_optional_block_syntax(void **state)
{
    (void)state;
    static const char *const good[] = {
        "B0000B0TX12S0100KS1800604B120F9292800000",
        "B0000B0TX12S0100KS14FFFF9876543210E0", /* 8-byte KSI: 16 hex */
        "D0000B1AX00N0100IK14FFFF9876543210E0", /* the PB comes with wrap */
        "B0000K0TB00E0100KC0C00ABCDEF",         /* legacy KCV, 3 bytes */
        "B0000K0TB00E0100KP0E01ABCDEF01",       /* CMAC KCV, 4 bytes */
        "B0000K0TB00E0100TS1320240229235959Z",  /* leap day */
        "B0000K0TB00E0100TS182024-12-31T23:59:59Z",
        "B0000K0TB00E0100TS1B2024-12-31T23:59:59.99Z",
        "B0000K0TB00E0100TS152024123123595999Z", /* hundredths */
        "B0000K0TB00E0100LB05 ",
        "B0000K0TB00E010010061A", /* proprietary numeric ID */
        "B0000K0TB00E0100HM0621",
        "B0000K0TB00E0200LB05XPB0B0000000", /* 5 + 11 = 16 */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int rc = parse_t(good[i]);
        if (rc != MPOS_OK) {
            fprintf(stderr, "%s: %d\n", good[i], rc);
        }
        assert_int_equal(rc, MPOS_OK);
    }
    static const char *const bad[] = {
        "B0000B0TX12S0100KS1600604B120F92928000",   /* KS of 18 hex */
        "B0000B0TX12S0100KS1800604b120F9292800000", /* lowercase hex */
        "B0000B0TX12S0100KS1800604G120F9292800000", /* not hex */
        "D0000B1AX00N0100IK13FFFF9876543210E",
        "B0000K0TB00E0100KC0A02ABCDEF",         /* KCV algorithm 02 */
        "B0000K0TB00E0100KC0900ABC",            /* odd hex */
        "B0000K0TB00E0100KC0800AB",             /* 1-byte KCV */
        "B0000K0TB00E0100KC0E00ABCDEF01",       /* 4-byte legacy KCV */
        "B0000K0TB00E0100TS1320230229235959Z",  /* no leap day in 2023 */
        "B0000K0TB00E0100TS1320231301000000Z",  /* month 13 */
        "B0000K0TB00E0100TS1320231231240000Z",  /* hour 24 */
        "B0000K0TB00E0100TS1320231131000000Z",  /* 31 November */
        "B0000K0TB00E0100TS132023123100000000", /* no Z */
        "B0000K0TB00E0100TS182024-12-31 23:59:59Z",
        "B0000K0TB00E0100TS1520240229235959.0Z", /* basic form with a dot */
        "B0000K0TB00E0100TS1420240229235959.Z",  /* 16 characters */
        "B0000K0TB00E0100LB04",                  /* empty label */
        "B0000K0TB00E0100HM05A",                 /* HM of 1 digit */
        "B0000K0TB00E0100XY05A",                 /* undefined ID */
        "B0000K0TB00E0100kc0C00ABCDEF",          /* lowercase ID */
        "B0000K0TB00E0100LB0g X",                /* length not hex */
        "B0000K0TB00E0100LB0a X",                /* lowercase hex length */
        "B0000K0TB00E0100LB03",                  /* shorter than its own fields */
        "B0000K0TB00E0100LB09XYZ",               /* past the end */
        "B0000K0TB00E0200LB05X",                 /* count says 2 */
        "B0000K0TB00E0100LB05XY",                /* text after the blocks */
        "B0000K0TB00E0100LB0004012CXY",          /* length of length 04 */
        "B0000K0TB00E0100LB00020010XYZXYZ",      /* extended form for 16 characters */
        "B0000K0TB00E0100LB000201",              /* extended length truncated */
        "B0000K0TB00E0200LB05XPB080000",         /* PB of 8, 11 needed */
        "B0000K0TB00E0200LB05XPB0600",           /* PB of 6, 11 needed */
        "B0000K0TB00E0300LB05XPB0700LB05Y",      /* PB not last */
        "B0000K0TB00E0100PB080000",              /* PB with nothing to pad */
        "B0000K0TB00E0300LB05XLB05XPB06XX",      /* repeated ID */
        "B0000K0TB00E01",                        /* short fixed header */
        "B0000K0TB00E0100LB",                    /* truncated block header */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_t(bad[i]);
        if (rc == MPOS_OK) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
        }
        assert_true(rc == MPOS_ERR_FORMAT || rc == MPOS_ERR_LENGTH);
    }
    /* Non-printable characters anywhere. */
    assert_int_equal(parse_t("B0000K0TB00E0100LB05\x01"), MPOS_ERR_FORMAT);
    assert_int_equal(parse_t("B0000K0TB00E0100LB05\x7F"), MPOS_ERR_FORMAT);
    assert_int_equal(parse_t("B0000K0TB00E0100LB05\xC3"), MPOS_ERR_FORMAT);
    /* A whole block: the optional blocks must already be padded. */
    char block[200];
    uint8_t kbpk[16], payload[32] = {0};
    tu_hex(published[0].kbpk, kbpk, sizeof(kbpk));
    payload[1] = 0x80;
    raw_wrap("B0000K0TB00E0100LB05X", 1, kbpk, 16, payload, 32, block);
    assert_int_equal(parse_b(block), MPOS_ERR_FORMAT);
    raw_wrap("B0000K0TB00E0200LB05XPB0B0000000", 1, kbpk, 16, payload, 32, block);
    assert_int_equal(parse_b(block), MPOS_OK);
    /* Parser arguments. */
    mpos_tr31_header hdr;
    assert_int_equal(mpos_tr31_header_parse(NULL, 0, MPOS_TR31_PARSE_BLOCK, &hdr), MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_header_parse("B0016K0TB00E0000", 16, (enum mpos_tr31_parse)7, &hdr),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_header_parse("B0016K0TB00E0000", 16, MPOS_TR31_PARSE_BLOCK, NULL),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_header_parse("B0016K0TB00E0000", 16, MPOS_TR31_PARSE_BLOCK, &hdr),
                     MPOS_OK);
}

/* wrap: the template's own problems. */
static void test_wrap_rejects(void **state)
{
    (void)state;
    uint8_t kbpk[32] = {1, 2, 3}, key[80] = {4, 5, 6};
    char out[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t out_len;
#define WRAP(h, kl, ksz)                                                                           \
    mpos_tr31_wrap(&cc, kbpk, (kl), (h), strlen(h), key, (ksz), NULL, 0, out, sizeof(out), &out_len)
    assert_int_equal(WRAP("Z0000P0TE00E0000", 16, 16), MPOS_ERR_FORMAT);
    assert_int_equal(WRAP("A0000P0TE00E0000", 16, 16), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(WRAP("C0000P0TE00E0000", 16, 16), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(WRAP("B0000P0", 16, 16), MPOS_ERR_LENGTH);
    assert_int_equal(WRAP("B0000P0TE00E0000", 32, 16), MPOS_ERR_KEY); /* AES KBPK for B */
    assert_int_equal(WRAP("B0000P0TE00E0000", 8, 16), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000P0AE00E0000", 8, 16), MPOS_ERR_KEY);
    assert_int_equal(WRAP("B0000P0TE00E0000", 16, 8), MPOS_ERR_KEY); /* key vs algorithm */
    assert_int_equal(WRAP("B0000P0TE00E0000", 16, 32), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000P0AE00E0000", 16, 20), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000P0DE00E0000", 16, 16), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000M7HC00E0000", 16, 15), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000M7HC00E0000", 16, 65), MPOS_ERR_KEY);
    assert_int_equal(WRAP("D0000K2RB00E0000", 16, 16), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(WRAP("D0000P0AE00E0000", 16, 16), MPOS_OK);
    assert_memory_equal(out, "D0144", 5);
    /* The length field of the template is ignored, even when it is not digits. */
    assert_int_equal(WRAP("DxxxxP0AE00E0000", 16, 16), MPOS_OK);
    assert_memory_equal(out, "D0144", 5);
    /* 99 optional blocks that would need a PB as the 100th. */
    char many[16 + 99 * 4 + 8] = "D0000P0AE00E9900";
    size_t pos = 16;
    for (int i = 0; i < 99; i++) {
        many[pos++] = (char)('0' + i / 10);
        many[pos++] = (char)('0' + i % 10);
        many[pos++] = '0';
        many[pos++] = '4';
    }
    many[pos] = '\0';
    assert_int_equal(parse_t(many), MPOS_OK);
    assert_int_equal(WRAP(many, 16, 16), MPOS_ERR_FORMAT); /* 396 characters: PB needed */
    /* A header over the supported maximum. */
    char big[MPOS_TR31_MAX_HEADER_LEN + 64] = "D0000P0AE00E0100LB0002";
    size_t biglen = MPOS_TR31_MAX_HEADER_LEN - 16 + 8;
    snprintf(big + 22, 5, "%04zX", biglen);
    memset(big + 26, 'X', biglen - 10);
    big[16 + biglen] = '\0';
    assert_int_equal(parse_t(big), MPOS_ERR_LENGTH);
    /* Arguments. */
    assert_int_equal(mpos_tr31_wrap(NULL, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, NULL, 0, out,
                                    sizeof(out), &out_len),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_wrap(&cc, kbpk, 16, "D0000P0AE00E0000", 16, key, 16, NULL, 3, out,
                                    sizeof(out), &out_len),
                     MPOS_ERR_ARG);
#undef WRAP
    uint8_t k[16];
    size_t kl;
    assert_int_equal(mpos_tr31_unwrap(&cc, kbpk, 16, NULL, 0, NULL, k, sizeof(k), &kl),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_unwrap(&cc, kbpk, 16, "B", 1, NULL, NULL, 0, &kl), MPOS_ERR_ARG);
}

/* ---- proprietary extensions (MPOS_TR31_EXT_*, opt-in) ---- */

/* Known answers from an independent implementation: the vault's former version D code for SM4
 * and EC keys (hsm/vault/keyblock_ext.c, since removed), run with KBPK 30 31 .. 4F, the key
 * below and the given padding C3 C2 C1 ... (14 bytes). */
static const char ext_kbpk[] = "303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F";
static const char ext_key[] = "057CF36AE158CF46BD34AB22991087FE75EC63DA51C83FB62DA41B920980F76E";
static const char ext_pad[] = "C3C2C1C0C7C6C5C4CBCAC9C8CFCE";
static const struct {
    const char *tmpl;
    size_t key_len;
    const char *block;
} ext_known[] = {
    {"D0000K04B00N0010", 16,
     "D0112K04B00N0010BB5DD5ECD21241AA8FBE1F99F86945BBEB583AA771EA36A689DF3F7AE2A710BB7B131EBF9C5"
     "8DD0FAEEB254D0A818DE0"},
    {"D0000K04B00N0110"
     "9109MP1D1",
     16,
     "D0128K04B00N02109109MP1D1PB07000763D102D182D5464C3E7406BF2B632F3A26649D559502442C89AD234B89"
     "BF1EA753FCE2896E4FF77376ADE6414ED8F98"},
    {"D0000S1ES00N0010", 32,
     "D0144S1ES00N0010D4B36AB53A851AAFFE5236CE2A9A4380E651088AFF76343994788B1D561E0D343E0A0AD5A0E"
     "B15E47EB21BEC9EE016A5A3E0908C722CCE1539E2EC41FB45C958"},
};

static int ext_unwrap(const uint8_t *kbpk, size_t kbpk_len, const char *block, unsigned flags,
                      uint8_t *key, size_t *key_len)
{
    return mpos_tr31_unwrap_ext(&cc, kbpk, kbpk_len, block, strlen(block), NULL, key,
                                MPOS_TR31_MAX_KEY_LEN, key_len, flags);
}

static int ext_parse(const char *text, unsigned flags)
{
    mpos_tr31_header hdr;
    return mpos_tr31_header_parse_ext(text, strlen(text), MPOS_TR31_PARSE_TEMPLATE, &hdr, flags);
}

static void test_ext_known_answers(void **state)
{
    uint8_t kbpk[32], key[32], pad[14], payload[48], got[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1], raw[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t len = 0, got_len = 0;
    (void)state;
    tu_hex(ext_kbpk, kbpk, sizeof(kbpk));
    tu_hex(ext_key, key, sizeof(key));
    tu_hex(ext_pad, pad, sizeof(pad));
    for (size_t i = 0; i < sizeof(ext_known) / sizeof(ext_known[0]); i++) {
        const char *tmpl = ext_known[i].tmpl;
        size_t kl = ext_known[i].key_len;
        char alg = tmpl[7];
        unsigned own = alg == 'E' ? MPOS_TR31_EXT_EC_RAW : MPOS_TR31_EXT_SM4;
        /* wrap with the same padding reproduces the block; unwrap gives the key back. */
        assert_int_equal(mpos_tr31_wrap_ext(&cc, kbpk, 32, tmpl, strlen(tmpl), key, kl, pad,
                                            sizeof(pad), block, sizeof(block), &len, own),
                         MPOS_OK);
        assert_string_equal(block, ext_known[i].block);
        assert_int_equal(ext_unwrap(kbpk, 32, ext_known[i].block, own, got, &got_len), MPOS_OK);
        assert_int_equal(got_len, kl);
        assert_memory_equal(got, key, kl);
        /* This file's raw construction gives the same block for the same clear key data. */
        mpos_store_be16(payload, (uint16_t)(kl * 8));
        memcpy(payload + 2, key, kl);
        memcpy(payload + 2 + kl, pad, sizeof(pad));
        raw_wrap(block, 0, kbpk, 32, payload, 2 + kl + sizeof(pad), raw);
        raw[len] = '\0';
        assert_string_equal(raw, ext_known[i].block);
        /* Refused without the flag, or with only the other extension. */
        assert_int_equal(ext_unwrap(kbpk, 32, block, 0, got, &got_len),
                         alg == 'E' ? MPOS_ERR_UNSUPPORTED : MPOS_ERR_FORMAT);
        assert_int_equal(got_len, 0);
        assert_int_equal(ext_unwrap(kbpk, 32, block, MPOS_TR31_EXT_ALL & ~own, got, &got_len),
                         alg == 'E' ? MPOS_ERR_UNSUPPORTED : MPOS_ERR_FORMAT);
        expect_reject(kbpk, 32, block, len, alg == 'E' ? MPOS_ERR_UNSUPPORTED : MPOS_ERR_FORMAT);
    }
}

/* Wraps tmpl with flags and random padding, checks the block length, unwraps it again. */
static void ext_round_trip(size_t kbpk_len, const char *tmpl, size_t key_len, size_t block_len,
                           unsigned flags)
{
    uint8_t kbpk[32], key[32], got[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t len = 0, got_len = 0;
    assert_int_equal(mpos_random_bytes(kbpk, kbpk_len), MPOS_OK);
    assert_int_equal(mpos_random_bytes(key, key_len), MPOS_OK);
    if (mpos_tr31_wrap_ext(&cc, kbpk, kbpk_len, tmpl, strlen(tmpl), key, key_len, NULL, 0, block,
                           sizeof(block), &len, flags) != MPOS_OK) {
        fail_msg("wrap_ext %s (KBPK %zu) refused", tmpl, kbpk_len);
    }
    assert_int_equal(len, block_len);
    assert_int_equal(ext_unwrap(kbpk, kbpk_len, block, flags, got, &got_len), MPOS_OK);
    assert_int_equal(got_len, key_len);
    assert_memory_equal(got, key, key_len);
    /* The wrong KBPK: the MAC does not verify. */
    kbpk[0] ^= 1;
    assert_int_equal(ext_unwrap(kbpk, kbpk_len, block, flags, got, &got_len), MPOS_ERR_VERIFY);
    assert_int_equal(got_len, 0);
}

static void test_ext_sm4(void **state)
{
    static const char *const usages[] = {
        "B0", "B1", "B2", "B3", "C0", "D0", "D1", "D2", "D3", "E0", "E1", "E2", "E3", "E4",
        "E5", "E6", "I0", "K0", "K1", "K2", "K3", "K4", "M0", "M1", "M2", "M3", "M4", "M5",
        "M6", "M7", "M8", "P0", "P1", "S0", "S1", "S2", "V0", "V1", "V2", "V3", "V4"};
    const unsigned sm4 = MPOS_TR31_EXT_SM4;
    uint8_t kbpk[32] = {9}, key[32] = {7}, got[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t len = 0, got_len = 0;
    (void)state;
    /* 16-byte keys under every AES KBPK length, 2 + 16 + 14 = 32 bytes of clear key data. */
    for (size_t kl = 16; kl <= 32; kl += 8) {
        ext_round_trip(kl, "D0000P04E00N0010", 16, 16 + 64 + 32, sm4);
        ext_round_trip(kl, "D0000M14C00N0010", 16, 16 + 64 + 32, sm4);
        ext_round_trip(kl, "D0000K04B00E0000", 16, 16 + 64 + 32, sm4);
    }
    /* '4' goes with exactly the usages that take 'A', and M1; the modes are the usage's. */
    for (size_t u = 0; u < sizeof(usages) / sizeof(usages[0]); u++) {
        for (const char *m = "BCDEGNSTVXY"; *m != '\0'; m++) {
            char h4[17], ha[17], ht[17];
            snprintf(h4, sizeof(h4), "D0000%s4%c00N0010", usages[u], *m);
            snprintf(ha, sizeof(ha), "D0000%sA%c00N0010", usages[u], *m);
            snprintf(ht, sizeof(ht), "D0000%sT%c00N0010", usages[u], *m);
            int want = strcmp(usages[u], "M1") == 0 ? parse_t(ht) : parse_t(ha);
            if (ext_parse(h4, sm4) != want) {
                fail_msg("%s with the SM4 extension: expected %d", h4, want);
            }
            assert_int_equal(ext_parse(h4, 0), MPOS_ERR_FORMAT); /* strict: unknown algorithm */
            assert_int_equal(ext_parse(h4, MPOS_TR31_EXT_EC_RAW), MPOS_ERR_FORMAT);
        }
    }
    /* Key lengths other than 16; more padding than obfuscation needs; version B. */
#define WRAP_SM4(h, kl, pad, pl)                                                                   \
    mpos_tr31_wrap_ext(&cc, kbpk, 32, (h), strlen(h), key, (kl), (pad), (pl), block,               \
                       sizeof(block), &len, sm4)
    assert_int_equal(WRAP_SM4("D0000P04E00N0010", 8, NULL, 0), MPOS_ERR_KEY);
    assert_int_equal(WRAP_SM4("D0000P04E00N0010", 24, NULL, 0), MPOS_ERR_KEY);
    assert_int_equal(WRAP_SM4("D0000P04E00N0010", 32, NULL, 0), MPOS_ERR_KEY);
    assert_int_equal(WRAP_SM4("D0000P04E00N0010", 16, key, 30), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tr31_wrap_ext(&cc, kbpk, 16, "B0000P04E00N0010", 16, key, 16, NULL, 0,
                                        block, sizeof(block), &len, sm4),
                     MPOS_ERR_UNSUPPORTED); /* version B (TDES KBPK) */
    assert_int_equal(WRAP_SM4("D0000M04C00N0010", 16, NULL, 0), MPOS_ERR_USAGE);
    assert_int_equal(WRAP_SM4("D0000P04E00N0010", 16, key, 14), MPOS_OK);
#undef WRAP_SM4
    /* An authentic SM4 block whose key length field says 24 bytes: refused after the MAC. */
    {
        uint8_t payload[32] = {0x00, 0xC0};
        char raw[MPOS_TR31_MAX_BLOCK_LEN + 1];
        raw_wrap("D0000P04E00N0010", 1, kbpk, 32, payload, 32, raw);
        assert_int_equal(ext_unwrap(kbpk, 32, raw, sm4, got, &got_len), MPOS_ERR_DECODE);
        payload[1] = 0x80;
        raw_wrap("D0000P04E00N0010", 1, kbpk, 32, payload, 32, raw);
        assert_int_equal(ext_unwrap(kbpk, 32, raw, sm4, got, &got_len), MPOS_OK);
        /* Under a TDES KBPK (version B) the extension does not apply. */
        raw_wrap("B0000P04E00N0000", 1, kbpk, 16, payload, 32, raw);
        assert_int_equal(ext_unwrap(kbpk, 16, raw, sm4, got, &got_len), MPOS_ERR_UNSUPPORTED);
    }
}

static void test_ext_ec_raw(void **state)
{
    const unsigned ec = MPOS_TR31_EXT_EC_RAW;
    uint8_t kbpk[32] = {3}, key[33] = {5}, got[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t len = 0, got_len = 0;
    (void)state;
    /* The raw 32-byte scalar: 2 + 32 + 14 = 48 bytes of clear key data, the usages of 'E'. */
    ext_round_trip(32, "D0000S0ES00N0010", 32, 16 + 96 + 32, ec);
    ext_round_trip(32, "D0000S1ES00E0010", 32, 16 + 96 + 32, ec);
    ext_round_trip(16, "D0000S2EV00N0000", 32, 16 + 96 + 32, ec);
    ext_round_trip(24, "D0000K3EX00N0000", 32, 16 + 96 + 32, ec);
    ext_round_trip(32, "D0000D1ED00N0000", 32, 16 + 96 + 32, ec);
#define WRAP_EC(h, kl, flags)                                                                      \
    mpos_tr31_wrap_ext(&cc, kbpk, 32, (h), strlen(h), key, (kl), NULL, 0, block, sizeof(block),    \
                       &len, (flags))
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 31, ec), MPOS_ERR_KEY);
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 33, ec), MPOS_ERR_KEY);
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 16, ec), MPOS_ERR_KEY);
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 32, 0), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 32, MPOS_TR31_EXT_SM4), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(mpos_tr31_wrap_ext(&cc, kbpk, 24, "B0000S0ES00N0000", 16, key, 32, NULL, 0,
                                        block, sizeof(block), &len, ec),
                     MPOS_ERR_UNSUPPORTED); /* version B (TDES KBPK) */
    assert_int_equal(WRAP_EC("D0000S0RS00N0010", 32, MPOS_TR31_EXT_ALL), MPOS_ERR_UNSUPPORTED);
    assert_int_equal(WRAP_EC("D0000P0EE00N0010", 32, ec), MPOS_ERR_USAGE);
    assert_int_equal(WRAP_EC("D0000S0ES00N0010", 32, ec), MPOS_OK);
#undef WRAP_EC
    /* An authentic 'E' block with a 16-byte key: refused after the MAC. */
    {
        uint8_t payload[48] = {0x00, 0x80};
        char raw[MPOS_TR31_MAX_BLOCK_LEN + 1];
        raw_wrap("D0000S0ES00N0010", 1, kbpk, 32, payload, 48, raw);
        assert_int_equal(ext_unwrap(kbpk, 32, raw, ec, got, &got_len), MPOS_ERR_DECODE);
        assert_int_equal(got_len, 0);
    }
}

static void test_ext_flags(void **state)
{
    uint8_t kbpk[32], key[MPOS_TR31_MAX_KEY_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    size_t len = 0, key_len = 0;
    mpos_tr31_header hdr;
    (void)state;
    /* Unknown flag bits are a programming error. */
    assert_int_equal(ext_parse("D0000P0AE00E0000", 0x80u), MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_wrap_ext(&cc, kbpk, 32, "D0000P0AE00E0000", 16, key, 16, NULL, 0,
                                        block, sizeof(block), &len, 0x80u),
                     MPOS_ERR_ARG);
    assert_int_equal(ext_unwrap(kbpk, 32, published[4].block, 0x80u, key, &key_len), MPOS_ERR_ARG);
    assert_int_equal(mpos_tr31_key_len_valid_ext('A', 16, 0x80u), 0);
    /* Standard blocks open the same whatever the flags. */
    for (size_t i = 0; i < N_PUBLISHED; i++) {
        size_t kl = tu_hex(published[i].kbpk, kbpk, sizeof(kbpk));
        for (unsigned flags = 0; flags <= MPOS_TR31_EXT_ALL; flags++) {
            uint8_t want[MPOS_TR31_MAX_KEY_LEN];
            size_t want_len = tu_hex(published[i].key, want, sizeof(want));
            assert_int_equal(mpos_tr31_unwrap_ext(&cc, kbpk, kl, published[i].block,
                                                  strlen(published[i].block), &hdr, key,
                                                  sizeof(key), &key_len, flags),
                             MPOS_OK);
            assert_int_equal(key_len, want_len);
            assert_memory_equal(key, want, want_len);
        }
    }
    /* Flags 0: the strict key lengths. */
    for (const char *a = "ADEHRST4Z"; *a != '\0'; a++) {
        for (size_t n = 0; n <= MPOS_TR31_MAX_KEY_LEN + 1; n++) {
            assert_int_equal(mpos_tr31_key_len_valid_ext(*a, n, 0), mpos_tr31_key_len_valid(*a, n));
        }
    }
    assert_true(mpos_tr31_key_len_valid_ext(MPOS_TR31_ALG_SM4, 16, MPOS_TR31_EXT_SM4));
    assert_false(mpos_tr31_key_len_valid_ext(MPOS_TR31_ALG_SM4, 16, MPOS_TR31_EXT_EC_RAW));
    assert_true(mpos_tr31_key_len_valid_ext('E', 32, MPOS_TR31_EXT_EC_RAW));
    assert_false(mpos_tr31_key_len_valid_ext('E', 32, MPOS_TR31_EXT_SM4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_published_file),
        cmocka_unit_test(test_wrap_reproduces_published),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_given_padding),
        cmocka_unit_test(test_wrong_kbpk),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_truncated_and_extended),
        cmocka_unit_test(test_bad_length_field),
        cmocka_unit_test(test_bad_headers_with_valid_mac),
        cmocka_unit_test(test_bad_key_fields_with_valid_mac),
        cmocka_unit_test(test_optional_block_syntax),
        cmocka_unit_test(test_wrap_rejects),
        cmocka_unit_test(test_ext_known_answers),
        cmocka_unit_test(test_ext_sm4),
        cmocka_unit_test(test_ext_ec_raw),
        cmocka_unit_test(test_ext_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
