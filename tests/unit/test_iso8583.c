/* Unit tests: lib/iso8583 (ISO 8583:1987, ASCII fields, binary bitmaps, 2-byte length header).
 *
 * Messages are test values in the shape of a card-network link: authorization (0100/0110),
 * financial (0200/0210), reversal (0400/0410 with original data elements, field 90) and
 * network management (0800/0810). The 0800 echo test is written out byte by byte from
 * ISO 8583:1987 clauses 4.1 (MTI), 4.2 (bitmaps) and 4.3 (fields 7, 11, 70). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/iso8583.h"
#include "mpos/util.h"
#include "testutil.h"

static const uint8_t MAC8[8] = {0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04};
static const uint8_t PINBLK[8] = {0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0};
static const uint8_t ICC[] = {0x9F, 0x26, 0x08, 0x11, 0x22, 0x33, 0x44, 0x55,
                              0x66, 0x77, 0x88, 0x82, 0x02, 0x19, 0x80};

/* The 0800 echo test: MTI, primary bitmap (bits 1, 7, 11), secondary bitmap (bit 70),
 * field 7 "0611120000", field 11 "000001", field 70 "301". */
static const char ECHO_HEX[] = "30383030"
                               "8220000000000000"
                               "0400000000000000"
                               "30363131313230303030"
                               "303030303031"
                               "333031";

static void set_ok(mpos_iso8583_msg *m, unsigned f, const char *s)
{
    assert_int_equal(mpos_iso8583_set_str(m, f, s), MPOS_OK);
}

/* Every strict prefix of a valid message is refused, without reading past it. */
static void check_truncations(const uint8_t *buf, size_t len)
{
    mpos_iso8583_msg m;
    for (size_t n = 0; n < len; n++) {
        uint8_t *p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, buf, n);
        assert_int_equal(mpos_iso8583_unpack(p, n, &m), MPOS_ERR_FORMAT);
        assert_false(mpos_iso8583_has(&m, 11));
        free(p);
    }
}

/* Pack, unpack, compare every field, pack again byte for byte, frame and deframe, truncate. */
static void round_trip(const mpos_iso8583_msg *in, uint8_t *buf, size_t *len)
{
    static uint8_t again[4096], framed[4096];
    mpos_iso8583_msg out;
    size_t len2 = 0, flen = 0;
    assert_int_equal(mpos_iso8583_pack(in, buf, 4096, len), MPOS_OK);
    /* Exact-fit and one-short output buffers. */
    assert_int_equal(mpos_iso8583_pack(in, again, *len, &len2), MPOS_OK);
    assert_int_equal(mpos_iso8583_pack(in, again, *len - 1, &len2), MPOS_ERR_LENGTH);
    assert_int_equal(len2, 0);
    uint8_t *exact = malloc(*len);
    assert_non_null(exact);
    memcpy(exact, buf, *len);
    assert_int_equal(mpos_iso8583_unpack(exact, *len, &out), MPOS_OK);
    assert_memory_equal(out.mti, in->mti, 4);
    for (unsigned f = 0; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        assert_int_equal(mpos_iso8583_has(&out, f), mpos_iso8583_has(in, f));
        if (mpos_iso8583_has(in, f)) {
            const uint8_t *a, *b;
            size_t al, bl;
            int pa, pb;
            assert_int_equal(mpos_iso8583_get(in, f, &a, &al, &pa), MPOS_OK);
            assert_int_equal(mpos_iso8583_get(&out, f, &b, &bl, &pb), MPOS_OK);
            assert_true(pa && pb);
            assert_int_equal(al, bl);
            assert_memory_equal(a, b, al);
            assert_true(b >= exact && b + bl <= exact + *len); /* points into the input */
        }
    }
    assert_int_equal(mpos_iso8583_pack(&out, again, sizeof(again), &len2), MPOS_OK);
    assert_int_equal(len2, *len);
    assert_memory_equal(again, buf, *len);

    assert_int_equal(mpos_iso8583_pack_framed(in, framed, sizeof(framed), &flen), MPOS_OK);
    assert_int_equal(flen, *len + 2);
    assert_int_equal(mpos_load_be16(framed), *len);
    assert_memory_equal(framed + 2, buf, *len);
    const uint8_t *md;
    size_t ml, fl;
    for (size_t n = 0; n < flen; n++) {
        assert_int_equal(mpos_iso8583_frame_parse(framed, n, &md, &ml, &fl), MPOS_ERR_LENGTH);
        assert_null(md);
    }
    assert_int_equal(mpos_iso8583_frame_parse(framed, flen + 5, &md, &ml, &fl), MPOS_OK);
    assert_ptr_equal(md, framed + 2);
    assert_int_equal(ml, *len);
    assert_int_equal(fl, flen);

    check_truncations(buf, *len);
    /* One trailing byte is refused. */
    uint8_t *longer = malloc(*len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, *len);
    longer[*len] = '0';
    assert_int_equal(mpos_iso8583_unpack(longer, *len + 1, &out), MPOS_ERR_FORMAT);
    free(longer);
    free(exact);
}

static void test_echo_known_bytes(void **state)
{
    (void)state;
    uint8_t want[64], buf[4096];
    size_t want_len = tu_hex(ECHO_HEX, want, sizeof(want)), len = 0;
    mpos_iso8583_msg m;
    assert_int_equal(mpos_iso8583_init(&m, "0800"), MPOS_OK);
    set_ok(&m, 70, "301");
    set_ok(&m, 11, "000001");
    set_ok(&m, 7, "0611120000");
    round_trip(&m, buf, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(buf, want, want_len);

    /* Without field 70 there is no secondary bitmap and bit 1 is clear. */
    assert_int_equal(mpos_iso8583_clear(&m, 70), MPOS_OK);
    assert_int_equal(mpos_iso8583_pack(&m, buf, sizeof(buf), &len), MPOS_OK);
    assert_int_equal(len, 4 + 8 + 10 + 6);
    assert_int_equal(buf[4], 0x02);
    assert_int_equal(buf[5], 0x20);

    /* 0810 answer: 7, 11, 39, 70. */
    assert_int_equal(mpos_iso8583_init(&m, "0810"), MPOS_OK);
    set_ok(&m, 7, "0611120000");
    set_ok(&m, 11, "000001");
    set_ok(&m, 39, "00");
    set_ok(&m, 70, "301");
    round_trip(&m, buf, &len);
    assert_int_equal(buf[4], 0x82);
    assert_int_equal(buf[5], 0x20);
    assert_int_equal(buf[8], 0x02);  /* bit 39 */
    assert_int_equal(buf[12], 0x04); /* bit 70 */
}

static void test_financial(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len = 0, mac_in = 0;
    mpos_iso8583_msg m;
    /* 0200 chip purchase with online PIN and MAC in field 64. */
    assert_int_equal(mpos_iso8583_init(&m, "0200"), MPOS_OK);
    set_ok(&m, 2, "4761739001010010");
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000001250");
    set_ok(&m, 7, "0611120000");
    set_ok(&m, 11, "000123");
    set_ok(&m, 12, "120000");
    set_ok(&m, 13, "0611");
    set_ok(&m, 14, "2212");
    set_ok(&m, 18, "5411");
    set_ok(&m, 22, "051");
    set_ok(&m, 23, "001");
    set_ok(&m, 25, "00");
    set_ok(&m, 32, "123456");
    set_ok(&m, 35, "4761739001010010=22122011143804400000");
    set_ok(&m, 37, "000000000123");
    set_ok(&m, 41, "TERM0001");
    set_ok(&m, 42, "MERCHANT0000001");
    set_ok(&m, 43, "OPENMPOS TEST SHOP      PARIS         FR");
    set_ok(&m, 49, "978");
    assert_int_equal(mpos_iso8583_set(&m, 52, PINBLK, 8), MPOS_OK);
    set_ok(&m, 53, "2001010100000000");
    assert_int_equal(mpos_iso8583_set(&m, 55, ICC, sizeof(ICC)), MPOS_OK);
    set_ok(&m, 60, "private 60");
    set_ok(&m, 61, "x");
    set_ok(&m, 62, "{\"batch\":7}");
    set_ok(&m, 63, "TABLE 63");
    assert_int_equal(mpos_iso8583_set(&m, 64, MAC8, 8), MPOS_OK);
    round_trip(&m, buf, &len);
    assert_int_equal(mpos_iso8583_mac_range(buf, len, &mac_in), MPOS_OK);
    assert_int_equal(mac_in, len - 8);
    assert_memory_equal(buf + mac_in, MAC8, 8);
    /* LLVAR / LLLVAR prefixes as ASCII digits: field 2 right after the bitmap. */
    assert_memory_equal(buf + 12, "164761739001010010", 18);

    /* 0210 approval. */
    assert_int_equal(mpos_iso8583_init(&m, "0210"), MPOS_OK);
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000001250");
    set_ok(&m, 7, "0611120001");
    set_ok(&m, 11, "000123");
    set_ok(&m, 37, "000000000123");
    set_ok(&m, 38, "A1B2 3");
    set_ok(&m, 39, "00");
    set_ok(&m, 41, "TERM0001");
    assert_int_equal(mpos_iso8583_set(&m, 55, ICC, 4), MPOS_OK);
    assert_int_equal(mpos_iso8583_set(&m, 64, MAC8, 8), MPOS_OK);
    round_trip(&m, buf, &len);
    assert_int_equal(mpos_iso8583_mac_range(buf, len, &mac_in), MPOS_OK);
    assert_int_equal(mac_in, len - 8);
}

static void test_authorization(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len = 0, mac_in = 0;
    mpos_iso8583_msg m;
    assert_int_equal(mpos_iso8583_init(&m, "0100"), MPOS_OK);
    set_ok(&m, 2, "5413330089020011");
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000010000");
    set_ok(&m, 11, "000200");
    set_ok(&m, 14, "2512");
    set_ok(&m, 22, "012");
    set_ok(&m, 41, "TERM0001");
    set_ok(&m, 42, "MERCHANT0000001");
    set_ok(&m, 49, "840");
    round_trip(&m, buf, &len);
    /* No MAC field: mac_range refuses. */
    assert_int_equal(mpos_iso8583_mac_range(buf, len, &mac_in), MPOS_ERR_FORMAT);

    assert_int_equal(mpos_iso8583_init(&m, "0110"), MPOS_OK);
    set_ok(&m, 2, "5413330089020011");
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000010000");
    set_ok(&m, 11, "000200");
    set_ok(&m, 38, "123456");
    set_ok(&m, 39, "05");
    set_ok(&m, 41, "TERM0001");
    round_trip(&m, buf, &len);
}

static void test_reversal(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len = 0, mac_in = 0;
    mpos_iso8583_msg m;
    /* 0400 with original data elements (MTI 0200, STAN, transmission time, acquirer, forwarder)
     * and the MAC in field 128 because of the secondary bitmap. */
    assert_int_equal(mpos_iso8583_init(&m, "0400"), MPOS_OK);
    set_ok(&m, 2, "4761739001010010");
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000001250");
    set_ok(&m, 7, "0611120500");
    set_ok(&m, 11, "000124");
    set_ok(&m, 39, "68");
    set_ok(&m, 41, "TERM0001");
    set_ok(&m, 49, "978");
    set_ok(&m, 90, "020000012306111200000000012345600000000000");
    set_ok(&m, 95, "000000000000000000000000000000000000000000");
    assert_int_equal(mpos_iso8583_set(&m, 128, MAC8, 8), MPOS_OK);
    round_trip(&m, buf, &len);
    assert_int_equal(buf[4] & 0x80, 0x80);
    assert_int_equal(mpos_iso8583_mac_range(buf, len, &mac_in), MPOS_OK);
    assert_int_equal(mac_in, len - 8);
    assert_memory_equal(buf + mac_in, MAC8, 8);
    /* Field 64 with a secondary bitmap: refused by pack. */
    assert_int_equal(mpos_iso8583_set(&m, 64, MAC8, 8), MPOS_OK);
    assert_int_equal(mpos_iso8583_pack(&m, buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(len, 0);

    assert_int_equal(mpos_iso8583_init(&m, "0410"), MPOS_OK);
    set_ok(&m, 3, "000000");
    set_ok(&m, 4, "000000001250");
    set_ok(&m, 7, "0611120501");
    set_ok(&m, 11, "000124");
    set_ok(&m, 39, "00");
    set_ok(&m, 41, "TERM0001");
    set_ok(&m, 90, "020000012306111200000000012345600000000000");
    round_trip(&m, buf, &len);
}

static void test_set_rejects(void **state)
{
    (void)state;
    mpos_iso8583_msg m;
    const uint8_t *v;
    size_t l;
    int p;
    assert_int_equal(mpos_iso8583_init(&m, "1200"), MPOS_ERR_ARG); /* 1993 version */
    assert_int_equal(mpos_iso8583_init(&m, "02A0"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_init(NULL, "0200"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_init(&m, "0200"), MPOS_OK);
    assert_int_equal(mpos_iso8583_set_str(&m, 1, "x"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 65, "x"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 5, "000000000001"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 0, "x"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 129, "x"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 3, "00000"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 3, "0000000"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 3, "00000A"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 2, "47617390010100100000"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 2, ""), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 35, "4761D2212"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 37, "00000000012-"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set_str(&m, 41, "TERM\n001"), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set(&m, 52, PINBLK, 7), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set(&m, 52, NULL, 8), MPOS_ERR_ARG);
    static uint8_t big[256];
    assert_int_equal(mpos_iso8583_set(&m, 55, big, 256), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_set(&m, 55, big, 255), MPOS_OK);
    for (unsigned f = 0; f <= 128; f++) {
        if (f != 55) {
            assert_false(mpos_iso8583_has(&m, f));
        }
    }
    assert_int_equal(mpos_iso8583_get(&m, 4, &v, &l, &p), MPOS_OK);
    assert_int_equal(p, 0);
    assert_null(v);
    assert_int_equal(mpos_iso8583_get(&m, 5, &v, &l, &p), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_clear(&m, 65), MPOS_ERR_ARG);
    /* A struct edited by hand out of the table is refused by pack. */
    uint8_t buf[512];
    size_t len = 7;
    m.len[55] = 300;
    assert_int_equal(mpos_iso8583_pack(&m, buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(len, 0);
    m.len[55] = 255;
    m.present[0] |= 0x08; /* field 5 */
    assert_int_equal(mpos_iso8583_pack(&m, buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_iso8583_pack(NULL, buf, sizeof(buf), &len), MPOS_ERR_ARG);
}

/* Unpacks hex and expects MPOS_ERR_FORMAT. */
static void expect_bad(const char *hex)
{
    uint8_t buf[512];
    size_t n = tu_hex(hex, buf, sizeof(buf));
    mpos_iso8583_msg m;
    assert_int_equal(mpos_iso8583_unpack(buf, n, &m), MPOS_ERR_FORMAT);
    assert_int_equal(m.mti[0], 0);
}

static void test_unpack_rejects(void **state)
{
    (void)state;
    mpos_iso8583_msg m;
    uint8_t ok[64];
    size_t n = tu_hex(ECHO_HEX, ok, sizeof(ok));
    assert_int_equal(mpos_iso8583_unpack(ok, n, &m), MPOS_OK);
    assert_int_equal(mpos_iso8583_unpack(NULL, 0, &m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_iso8583_unpack(NULL, 5, &m), MPOS_ERR_ARG);

    /* MTI: a non-digit, the 1993 version. */
    expect_bad("3038413002000000000000003030303030310000");
    expect_bad("31383030"
               "0020000000000000"
               "303030303031");
    /* Primary only, field 11: the good form, then a non-digit in the field. */
    uint8_t g[64];
    size_t gn = tu_hex("30383030"
                       "0020000000000000"
                       "303030303031",
                       g, sizeof(g));
    assert_int_equal(mpos_iso8583_unpack(g, gn, &m), MPOS_OK);
    expect_bad("30383030"
               "0020000000000000"
               "3030303030"
               "41");
    expect_bad("30383030"
               "0020000000000000"
               "3030303030"
               "20");
    /* Bitmap with an unknown field (5) or field 1 only (bit 1 without fields 66..128). */
    expect_bad("30383030"
               "0820000000000000"
               "303030303031"
               "303030303030303030303031");
    expect_bad("30383030"
               "8020000000000000"
               "0000000000000000"
               "303030303031");
    /* Bit 65 (a tertiary bitmap) and an unknown secondary field (66). */
    expect_bad("30383030"
               "8020000000000000"
               "C000000000000000"
               "303030303031");
    expect_bad("30383030"
               "8020000000000000"
               "4000000000000000"
               "303030303031");
    /* Secondary flag set, secondary bitmap missing entirely. */
    expect_bad("30383030"
               "8020000000000000");
    /* Empty bitmap with a trailing byte. */
    expect_bad("30383030"
               "0000000000000000"
               "30");
    /* Field 2 (LLVAR n..19): good, non-digit prefix, over the table, zero, short value,
     * non-digit in the PAN. */
    gn = tu_hex("30323030"
                "4000000000000000"
                "3136"
                "34373631373339303031303130303130",
                g, sizeof(g));
    assert_int_equal(mpos_iso8583_unpack(g, gn, &m), MPOS_OK);
    expect_bad("30323030"
               "4000000000000000"
               "3A36"
               "34373631373339303031303130303130");
    expect_bad("30323030"
               "4000000000000000"
               "2036"
               "34373631373339303031303130303130");
    expect_bad("30323030"
               "4000000000000000"
               "3230"
               "3437363137333930303130313030313030303030");
    expect_bad("30323030"
               "4000000000000000"
               "3030");
    expect_bad("30323030"
               "4000000000000000"
               "3137"
               "34373631373339303031303130303130");
    expect_bad("30323030"
               "4000000000000000"
               "3136"
               "343736313733393030313031303031"
               "3D");
    /* Field 55 (LLLVAR b..255): 256 is over the table; a 2-digit prefix is short. */
    expect_bad("30323030"
               "0000000000000200"
               "323536"
               "00");
    expect_bad("30323030"
               "0000000000000200"
               "3031");
    gn = tu_hex("30323030"
                "0000000000000200"
                "303031"
                "FF",
                g, sizeof(g));
    assert_int_equal(mpos_iso8583_unpack(g, gn, &m), MPOS_OK);
    /* Field 64 with a secondary bitmap (field 70). */
    expect_bad("30383030"
               "8000000000000001"
               "0400000000000000"
               "0102030405060708"
               "333031");
    /* Field 41 ans with a control character. */
    expect_bad("30383030"
               "0000000000800000"
               "5445524D3030300A");
}

static void test_frame_and_mac_args(void **state)
{
    (void)state;
    const uint8_t *md;
    size_t ml, fl, mi;
    uint8_t hdr[4] = {0x00, 0x0B, 0, 0}; /* 11 < minimal message */
    assert_int_equal(mpos_iso8583_frame_parse(hdr, 4, &md, &ml, &fl), MPOS_ERR_FORMAT);
    hdr[1] = 0x00;
    assert_int_equal(mpos_iso8583_frame_parse(hdr, 4, &md, &ml, &fl), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_iso8583_frame_parse(NULL, 0, &md, &ml, &fl), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_iso8583_frame_parse(hdr, 4, NULL, &ml, &fl), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_mac_range(hdr, 4, NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_iso8583_mac_range(hdr, 4, &mi), MPOS_ERR_FORMAT);
    /* pack_framed with too little room. */
    mpos_iso8583_msg m;
    uint8_t out[32];
    size_t ol = 9;
    assert_int_equal(mpos_iso8583_init(&m, "0800"), MPOS_OK);
    set_ok(&m, 70, "301");
    assert_int_equal(mpos_iso8583_pack_framed(&m, out, 1, &ol), MPOS_ERR_LENGTH);
    assert_int_equal(ol, 0);
    assert_int_equal(mpos_iso8583_pack_framed(&m, out, 2 + 4 + 16 + 2, &ol), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_iso8583_pack_framed(&m, out, 2 + 4 + 16 + 3, &ol), MPOS_OK);
    assert_int_equal(ol, 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_known_bytes),   cmocka_unit_test(test_financial),
        cmocka_unit_test(test_authorization),      cmocka_unit_test(test_reversal),
        cmocka_unit_test(test_set_rejects),        cmocka_unit_test(test_unpack_rejects),
        cmocka_unit_test(test_frame_and_mac_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
