/* Unit tests: lib/tlv (BER-TLV per EMV 4.3 Book 3 Annex B, DOLs per Book 3 5.4).
 *
 * The card data below has the shape of real EMV responses (the tags, templates and DOLs a
 * Visa credit application returns: FCI of SELECT, GPO response formats 1 and 2, a READ
 * RECORD template with track 2, PAN, expiry, CDOL1 and CDOL2); the values are test values
 * (test PAN 4761739001010010 of the Visa test cards), hand-checked against Annex B. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/tlv.h"
#include "mpos/util.h"
#include "testutil.h"

/* SELECT response: FCI template 6F { 84 DF name, A5 { 50 label, 87 priority, 9F38 PDOL,
 * BF0C { 9F4D log entry } } }. */
static const char FCI_HEX[] = "6F32"
                              "8407A0000000031010"
                              "A527"
                              "500B5649534120435245444954" /* "VISA CREDIT" */
                              "870101"
                              "9F380C9F66049F02069F37045F2A02"
                              "BF0C059F4D020B0A";

/* GET PROCESSING OPTIONS response format 1: 80 { AIP | AFL }. */
static const char GPO1_HEX[] = "800E1980080101001001030018010201";

/* GET PROCESSING OPTIONS response format 2: 77 { 82 AIP, 94 AFL, 9F36, 9F27, 9F26, 9F10 }. */
static const char GPO2_HEX[] = "772C"
                               "82021980"
                               "94080801010010010300"
                               "9F36020012"
                               "9F270180"
                               "9F26081122334455667788"
                               "9F100706010A03A00000";

/* READ RECORD response: 70 { 57 track 2, 5A PAN, 5F24 expiry, 8C CDOL1, 8D CDOL2 }. */
static const char RECORD_HEX[] = "704B"
                                 "57134761739001010010D22122011143804400000F"
                                 "5A084761739001010010"
                                 "5F2403221231"
                                 "8C159F02069F03069F1A0295055F2A029A039C019F3704"
                                 "8D0D8A029F02069F030695059F3704";

/* The CDOL1 of RECORD_HEX. */
static const char CDOL1_HEX[] = "9F02069F03069F1A0295055F2A029A039C019F3704";

static uint8_t big[70000]; /* long values and encoder round trips */

/* Decodes a hex literal into an exactly sized heap buffer (so a sanitizer build sees any
 * read past its end). */
static uint8_t *hex_exact(const char *hex, size_t *len)
{
    static uint8_t tmp[4096];
    *len = tu_hex(hex, tmp, sizeof(tmp));
    uint8_t *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    memcpy(p, tmp, *len);
    return p;
}

/* The buffer is refused by the validator, and a walk of its top level ends in
 * MPOS_ERR_FORMAT with obj zeroed. */
static void expect_format(const char *hex, unsigned flags)
{
    size_t len;
    uint8_t *buf = hex_exact(hex, &len);
    mpos_tlv_iter it;
    mpos_tlv obj;
    int r = MPOS_OK;
    assert_int_equal(mpos_tlv_validate(buf, len, flags), MPOS_ERR_FORMAT);
    mpos_tlv_iter_init(&it, buf, len, flags);
    while (r == MPOS_OK && mpos_tlv_more(&it)) {
        r = mpos_tlv_next(&it, &obj);
    }
    assert_int_equal(r, MPOS_ERR_FORMAT);
    assert_null(obj.value);
    assert_int_equal(obj.tag, 0);
    free(buf);
}

static void test_fci(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = hex_exact(FCI_HEX, &len);
    mpos_tlv obj, a5;
    mpos_tlv_iter it;
    int found = -1;
    uint8_t expect[16];

    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);

    /* Top level: one template. */
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_CARD);
    assert_true(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x6F);
    assert_true(obj.constructed);
    assert_int_equal(obj.len, 0x32);
    assert_ptr_equal(obj.value, buf + 2);
    assert_ptr_equal(obj.raw, buf);
    assert_int_equal(obj.raw_len, len);
    assert_false(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_LENGTH);

    /* 6F's content: 84 then A5. */
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x6F, &obj, &found), MPOS_OK);
    assert_true(found);
    mpos_tlv_iter_init(&it, obj.value, obj.len, MPOS_TLV_CARD);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x84);
    assert_false(obj.constructed);
    assert_memory_equal(obj.value, expect, tu_hex("A0000000031010", expect, sizeof(expect)));
    assert_int_equal(mpos_tlv_next(&it, &a5), MPOS_OK);
    assert_int_equal(a5.tag, 0xA5);
    assert_true(a5.constructed);
    assert_int_equal(a5.len, 0x27);
    assert_false(mpos_tlv_more(&it));

    /* One level only: 84 is not at the top. */
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x84, &obj, &found), MPOS_OK);
    assert_false(found);
    assert_null(obj.value);

    /* Depth first. */
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x50, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 11);
    assert_memory_equal(obj.value, "VISA CREDIT", 11);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x87, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 1);
    assert_int_equal(obj.value[0], 0x01);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0xBF0C, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_true(obj.constructed);
    assert_int_equal(obj.len, 5);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x9F4D, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 2);
    assert_int_equal(mpos_load_be16(obj.value), 0x0B0A);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x9F02, &obj, &found), MPOS_OK);
    assert_false(found); /* inside the PDOL's value, which is not a template */
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0, &obj, &found), MPOS_OK);
    assert_false(found);

    /* The PDOL. */
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x9F38, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 12);
    mpos_tlv_dol_entry e[MPOS_TLV_DOL_MAX_ENTRIES];
    size_t n = 0, data_len = 0;
    assert_int_equal(
        mpos_tlv_dol_parse(obj.value, obj.len, e, MPOS_TLV_DOL_MAX_ENTRIES, &n, &data_len),
        MPOS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(data_len, 4 + 6 + 4 + 2);
    assert_int_equal(e[0].tag, 0x9F66);
    assert_int_equal(e[0].len, 4);
    assert_int_equal(e[1].tag, 0x9F02);
    assert_int_equal(e[1].len, 6);
    assert_int_equal(e[2].tag, 0x9F37);
    assert_int_equal(e[3].tag, 0x5F2A);
    assert_int_equal(e[3].len, 2);
    assert_false(e[3].constructed);
    free(buf);
}

static void test_gpo_formats(void **state)
{
    (void)state;
    uint8_t buf[128], expect[32];
    size_t len = tu_hex(GPO1_HEX, buf, sizeof(buf));
    mpos_tlv obj;
    int found;

    /* Format 1: primitive 80 = AIP (2 bytes) | AFL (4 bytes per entry). */
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x80, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_false(obj.constructed);
    assert_int_equal(obj.len, 14);
    assert_int_equal(mpos_load_be16(obj.value), 0x1980);
    assert_int_equal((obj.len - 2) % 4, 0);
    assert_memory_equal(obj.value + 2, expect,
                        tu_hex("080101001001030018010201", expect, sizeof(expect)));

    /* Format 2: template 77. */
    len = tu_hex(GPO2_HEX, buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x77, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_true(obj.constructed);
    mpos_tlv tpl = obj;
    assert_int_equal(mpos_tlv_find(tpl.value, tpl.len, MPOS_TLV_CARD, 0x82, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(mpos_load_be16(obj.value), 0x1980);
    assert_int_equal(mpos_tlv_find(tpl.value, tpl.len, MPOS_TLV_CARD, 0x94, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 8);
    assert_int_equal(mpos_tlv_find(tpl.value, tpl.len, MPOS_TLV_CARD, 0x9F26, &obj, &found),
                     MPOS_OK);
    assert_true(found);
    assert_memory_equal(obj.value, expect, tu_hex("1122334455667788", expect, sizeof(expect)));
    assert_int_equal(mpos_tlv_find(tpl.value, tpl.len, MPOS_TLV_CARD, 0x9F10, &obj, &found),
                     MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 7);

    /* Walk all six in order. */
    static const uint32_t tags[] = {0x82, 0x94, 0x9F36, 0x9F27, 0x9F26, 0x9F10};
    mpos_tlv_iter it;
    size_t i = 0;
    mpos_tlv_iter_init(&it, tpl.value, tpl.len, MPOS_TLV_CARD);
    while (mpos_tlv_more(&it)) {
        assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
        assert_true(i < 6);
        assert_int_equal(obj.tag, tags[i]);
        i++;
    }
    assert_int_equal(i, 6);
}

static void test_read_record(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = hex_exact(RECORD_HEX, &len);
    uint8_t expect[32];
    mpos_tlv obj;
    int found;

    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x57, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 19);
    assert_int_equal(obj.value[8], 0xD2); /* separator after the 16-digit PAN */
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x5A, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_memory_equal(obj.value, expect, tu_hex("4761739001010010", expect, sizeof(expect)));
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x5F24, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_memory_equal(obj.value, expect, tu_hex("221231", expect, sizeof(expect)));
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x8C, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_memory_equal(obj.value, expect, tu_hex(CDOL1_HEX, expect, sizeof(expect)));
    size_t n = 0, data_len = 0;
    assert_int_equal(mpos_tlv_dol_parse(obj.value, obj.len, NULL, 0, &n, &data_len), MPOS_OK);
    assert_int_equal(n, 8);
    assert_int_equal(data_len, 29);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x8D, &obj, &found), MPOS_OK);
    assert_true(found);
    mpos_tlv_dol_entry e[MPOS_TLV_DOL_MAX_ENTRIES];
    assert_int_equal(
        mpos_tlv_dol_parse(obj.value, obj.len, e, MPOS_TLV_DOL_MAX_ENTRIES, &n, &data_len),
        MPOS_OK);
    assert_int_equal(n, 5);
    assert_int_equal(e[0].tag, 0x8A);
    assert_int_equal(e[0].len, 2);
    assert_int_equal(data_len, 2 + 6 + 6 + 5 + 4);
    /* Too small an array. */
    assert_int_equal(mpos_tlv_dol_parse(obj.value, obj.len, e, 4, &n, &data_len), MPOS_ERR_LENGTH);
    assert_int_equal(n, 5); /* what the whole DOL has */
    assert_int_equal(e[3].tag, 0x95);
    /* ...but a malformed DOL is a format error first. */
    uint8_t dol[32];
    size_t dol_len = tu_hex("8A029F02069F030695059F", dol, sizeof(dol));
    assert_int_equal(mpos_tlv_dol_parse(dol, dol_len, e, 1, &n, &data_len), MPOS_ERR_FORMAT);
    free(buf);
}

/* Terminal data for the CDOL1 test, by tag. */
struct term_data {
    int calls;
    int fail;
};

static int cdol_lookup(void *ctx, uint32_t tag, const uint8_t **value, size_t *value_len,
                       enum mpos_tlv_format *format)
{
    static const uint8_t amount[] = {0x10, 0x00}; /* n12 1000 given short: left-padded */
    static const uint8_t country[] = {0x08, 0x40};
    static const uint8_t tvr[] = {0x00, 0x00, 0x00, 0x80, 0x00};
    static const uint8_t currency[] = {0x09, 0x78};
    static const uint8_t date[] = {0x24, 0x03, 0x15};
    static const uint8_t type[] = {0x00};
    static const uint8_t un[] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66}; /* b, too long */
    static const uint8_t pan[] = {0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x00, 0x10};
    static const uint8_t name[] = {'A', 'B', 'C'};
    struct term_data *td = ctx;
    td->calls++;
    if (td->fail) {
        return MPOS_ERR_CRYPTO;
    }
    switch (tag) {
    case 0x9F02:
        *value = amount, *value_len = sizeof(amount), *format = MPOS_TLV_FMT_N;
        break;
    case 0x9F03:
        break; /* amount other absent: zeros (5.4 b) */
    case 0x9F1A:
        *value = country, *value_len = sizeof(country), *format = MPOS_TLV_FMT_N;
        break;
    case 0x95:
        *value = tvr, *value_len = sizeof(tvr), *format = MPOS_TLV_FMT_B;
        break;
    case 0x5F2A:
        *value = currency, *value_len = sizeof(currency), *format = MPOS_TLV_FMT_N;
        break;
    case 0x9A:
        *value = date, *value_len = sizeof(date), *format = MPOS_TLV_FMT_N;
        break;
    case 0x9C:
        *value = type, *value_len = sizeof(type), *format = MPOS_TLV_FMT_N;
        break;
    case 0x9F37:
        *value = un, *value_len = sizeof(un), *format = MPOS_TLV_FMT_B;
        break;
    case 0x5A:
        *value = pan, *value_len = sizeof(pan), *format = MPOS_TLV_FMT_CN;
        break;
    case 0x9F4E:
        *value = name, *value_len = sizeof(name), *format = MPOS_TLV_FMT_B;
        break;
    case 0x9F59:
        *value = name, *value_len = sizeof(name), *format = (enum mpos_tlv_format)7;
        break;
    default:
        break; /* unknown: zeros (5.4 a) */
    }
    return MPOS_OK;
}

static void test_dol_build(void **state)
{
    (void)state;
    uint8_t dol[64], out[64], expect[64];
    size_t dol_len = tu_hex(CDOL1_HEX, dol, sizeof(dol));
    size_t len = 0;
    struct term_data td = {0, 0};

    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, sizeof(out), &len),
                     MPOS_OK);
    assert_int_equal(td.calls, 8);
    size_t n = tu_hex("000000001000" /* 9F02 amount, n: padded left */
                      "000000000000" /* 9F03 absent */
                      "0840"         /* 9F1A */
                      "0000008000"   /* 95 */
                      "0978"         /* 5F2A */
                      "240315"       /* 9A */
                      "00"           /* 9C */
                      "11223344",    /* 9F37, b: leftmost 4 bytes kept */
                      expect, sizeof(expect));
    assert_int_equal(len, 29);
    assert_memory_equal(out, expect, n);

    /* Appends at *len. */
    size_t len2 = 3;
    memset(out, 0xEE, sizeof(out));
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, 32, &len2), MPOS_OK);
    assert_int_equal(len2, 32);
    assert_int_equal(out[2], 0xEE);
    assert_memory_equal(out + 3, expect, n);

    /* Truncation (5.4 c) and padding (5.4 d) by format, template and unknown tags (5.4 a). */
    dol_len = tu_hex("9F0204"   /* n truncated: rightmost 4 of 000000001000 -> 00001000 */
                     "5A0A"     /* cn padded: PAN then FFFF */
                     "5A04"     /* cn truncated: leftmost */
                     "9F4E05"   /* b padded: ABC 00 00 */
                     "9F4E02"   /* b truncated: AB */
                     "7003"     /* template: zeros, no lookup */
                     "9F0300"   /* zero-length entry: nothing */
                     "7002"     /* template: zeros, no lookup */
                     "DF810103" /* unknown 3-byte tag: zeros */
                     "9F1A03",  /* n padded: 000840 */
                     dol, sizeof(dol));
    td.calls = 0;
    len = 0;
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, sizeof(out), &len),
                     MPOS_OK);
    n = tu_hex("00001000"
               "4761739001010010FFFF"
               "47617390"
               "4142430000"
               "4142"
               "000000"
               "0000"
               "000000"
               "000840",
               expect, sizeof(expect));
    assert_int_equal(len, n);
    assert_memory_equal(out, expect, n);
    assert_int_equal(td.calls, 8); /* not for the two templates */

    /* Does not fit: nothing written, no lookup. */
    dol_len = tu_hex(CDOL1_HEX, dol, sizeof(dol));
    memset(out, 0xEE, sizeof(out));
    td.calls = 0;
    len = 1;
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, 29, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(len, 1);
    assert_int_equal(td.calls, 0);
    assert_int_equal(out[1], 0xEE);

    /* A failing lookup: its error, the bytes already written wiped. */
    td.fail = 1;
    len = 0;
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, sizeof(out), &len),
                     MPOS_ERR_CRYPTO);
    assert_int_equal(len, 0);
    td.fail = 0;
    dol_len = tu_hex("9F02069F590A", dol, sizeof(dol)); /* 9F59: a bad format */
    memset(out, 0xEE, sizeof(out));
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, sizeof(out), &len),
                     MPOS_ERR_ARG);
    assert_int_equal(len, 0);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(out[i], 0x00);
    }

    /* Empty DOL: nothing. */
    assert_int_equal(mpos_tlv_dol_build(NULL, 0, cdol_lookup, &td, out, sizeof(out), &len),
                     MPOS_OK);
    assert_int_equal(len, 0);
    assert_int_equal(mpos_tlv_dol_build(dol, dol_len, NULL, &td, out, sizeof(out), &len),
                     MPOS_ERR_ARG);
}

static void test_dol_rejects(void **state)
{
    (void)state;
    static const char *bad[] = {
        "9F",         /* truncated tag */
        "9F02",       /* no length */
        "9F02069F",   /* truncated tag after a good entry */
        "9F0280",     /* length 80: BER long form or EMV one byte? refused */
        "9F0281",     /* same */
        "DF81810101", /* 4-byte tag */
        "009F0206",   /* no padding in a DOL */
    };
    uint8_t dol[16];
    size_t n = 99, total = 99, len = 0;
    uint8_t out[16];
    struct term_data td = {0, 0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t dol_len = tu_hex(bad[i], dol, sizeof(dol));
        assert_int_equal(mpos_tlv_dol_parse(dol, dol_len, NULL, 0, &n, &total), MPOS_ERR_FORMAT);
        assert_int_equal(mpos_tlv_dol_build(dol, dol_len, cdol_lookup, &td, out, sizeof(out), &len),
                         MPOS_ERR_FORMAT);
    }
    assert_int_equal(td.calls, 0);
    assert_int_equal(len, 0);
    assert_int_equal(mpos_tlv_dol_parse(NULL, 1, NULL, 0, &n, &total), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_dol_parse(dol, 1, NULL, 0, NULL, &total), MPOS_ERR_ARG);
    /* A DOL entry of 7F (the largest) is fine. */
    size_t dol_len = tu_hex("9F4E7F", dol, sizeof(dol));
    assert_int_equal(mpos_tlv_dol_parse(dol, dol_len, NULL, 0, &n, &total), MPOS_OK);
    assert_int_equal(total, 0x7F);
}

static void test_multibyte_tags(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = 0;
    mpos_tlv obj;
    mpos_tlv_iter it;
    static const uint8_t v[] = {0xAA, 0xBB};

    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x9F02, v, 2), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0xDF8101, v, 2), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x5A, v, 1), MPOS_OK);
    mpos_tlv_mark m;
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0xBF0C, &m), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x9F4D, v, 2), MPOS_OK);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &m), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0xFF8101, NULL, 0), MPOS_OK);

    uint8_t expect[64];
    size_t n = tu_hex("9F0202AABB"
                      "DF810102AABB"
                      "5A01AA"
                      "BF0C059F4D02AABB"
                      "FF810100",
                      expect, sizeof(expect));
    assert_int_equal(len, n);
    assert_memory_equal(buf, expect, n);

    static const uint32_t tags[] = {0x9F02, 0xDF8101, 0x5A, 0xBF0C, 0xFF8101};
    static const int cons[] = {0, 0, 0, 1, 1};
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_STRICT);
    for (size_t i = 0; i < 5; i++) {
        assert_true(mpos_tlv_more(&it));
        assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
        assert_int_equal(obj.tag, tags[i]);
        assert_int_equal(obj.constructed, cons[i]);
    }
    assert_false(mpos_tlv_more(&it));
    /* FF starts a tag unless FF padding is asked for. */
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    int found;
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0xDF8101, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 2);
    /* 9F01..9F1E (tag numbers under 31 in the high form) are EMV tags: accepted strictly. */
    len = tu_hex("9F1A020840", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    /* A first subsequent byte 80 (X.690 8.1.2.4.2 c): BER-tolerant for cards, not strict. */
    len = tu_hex("DF800101AA", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_ERR_FORMAT);
}

static void test_long_lengths(void **state)
{
    (void)state;
    mpos_tlv obj;
    mpos_tlv_iter it;

    /* 81 80: 128 bytes. */
    big[0] = 0x9F, big[1] = 0x46, big[2] = 0x81, big[3] = 0x80;
    memset(big + 4, 0x5C, 128);
    mpos_tlv_iter_init(&it, big, 4 + 128, MPOS_TLV_STRICT);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x9F46);
    assert_int_equal(obj.len, 128);
    assert_ptr_equal(obj.value, big + 4);
    assert_false(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_validate(big, 4 + 127, MPOS_TLV_CARD), MPOS_ERR_FORMAT);

    /* 82 01 00: 256 bytes, in a template with 81 long form. */
    big[0] = 0x70, big[1] = 0x82, big[2] = 0x01, big[3] = 0x04;
    big[4] = 0x90, big[5] = 0x82, big[6] = 0x01, big[7] = 0x00;
    memset(big + 8, 0x33, 256);
    assert_int_equal(mpos_tlv_validate(big, 8 + 256, MPOS_TLV_STRICT), MPOS_OK);
    int found;
    assert_int_equal(mpos_tlv_find_deep(big, 8 + 256, MPOS_TLV_STRICT, 0x90, &obj, &found),
                     MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.len, 256);
    assert_ptr_equal(obj.value, big + 8);

    /* Non-minimal long forms: BER (card) yes, canonical no. */
    static const char *nonmin[] = {"5A8101AA", "5A820001AA", "5A83000001AA", "5A8100"};
    uint8_t buf[16];
    for (size_t i = 0; i < 4; i++) {
        size_t len = tu_hex(nonmin[i], buf, sizeof(buf));
        assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
        assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_ERR_FORMAT);
    }
    /* The smallest minimal ones. */
    static const char *minimal[] = {"5A00", "5A820100", "5A83010000"};
    static const size_t vlen[] = {0, 256, 65536};
    for (size_t i = 0; i < 3; i++) {
        size_t hl = tu_hex(minimal[i], buf, sizeof(buf));
        memcpy(big, buf, hl);
        memset(big + hl, 0, vlen[i]);
        assert_int_equal(mpos_tlv_validate(big, hl + vlen[i], MPOS_TLV_STRICT), MPOS_OK);
    }
}

static void test_rejects(void **state)
{
    (void)state;
    expect_format("9F", MPOS_TLV_CARD);                     /* truncated tag */
    expect_format("DF81", MPOS_TLV_CARD);                   /* truncated 3-byte tag */
    expect_format("5A", MPOS_TLV_CARD);                     /* truncated length */
    expect_format("5A81", MPOS_TLV_CARD);                   /* truncated long length */
    expect_format("5A8201", MPOS_TLV_CARD);                 /* same */
    expect_format("5A050102", MPOS_TLV_CARD);               /* length past the end */
    expect_format("5A81FF00", MPOS_TLV_CARD);               /* same, long form */
    expect_format("5A83FFFFFF00", MPOS_TLV_CARD);           /* same, huge */
    expect_format("DF81810100", MPOS_TLV_CARD);             /* 4-byte tag */
    expect_format("DF8181", MPOS_TLV_CARD);                 /* 4-byte tag, truncated */
    expect_format("5A8400000001AA", MPOS_TLV_CARD);         /* length 84 */
    expect_format("5A88000000000000000100", MPOS_TLV_CARD); /* 88 */
    expect_format("5AFF00", MPOS_TLV_CARD);                 /* FF as a length */
    expect_format("70805A01AA0000", MPOS_TLV_CARD);         /* indefinite length */
    expect_format("0000", MPOS_TLV_STRICT);                 /* 00 is no tag (EOC) */
    expect_format("5A01AA00", MPOS_TLV_STRICT);             /* no padding in strict */
    expect_format("5A01AA0000", MPOS_TLV_STRICT);           /* (nor an end-of-contents) */
    expect_format("FF", MPOS_TLV_CARD);                     /* FF is a tag start here */

    /* Template content that does not end where the template does. */
    uint8_t buf[32];
    size_t len = tu_hex("70035A02AABB", buf, sizeof(buf)); /* child runs past 70 */
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_ERR_FORMAT);
    len = tu_hex("70035A01AA9F", buf, sizeof(buf)); /* garbage after 70 */
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_ERR_FORMAT);
    len = tu_hex("70045A01AA9F", buf, sizeof(buf)); /* garbage inside 70 */
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_ERR_FORMAT);
    /* ...which a one-level walk does not look into, and a deep find before it still finds. */
    mpos_tlv obj;
    int found;
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x70, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x5A, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x57, &obj, &found),
                     MPOS_ERR_FORMAT);
    assert_false(found);

    /* A primitive's value is not parsed. */
    len = tu_hex("5A039F8181", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);

    /* The error is sticky. */
    mpos_tlv_iter it;
    len = tu_hex("5A01AA9F", buf, sizeof(buf));
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_CARD);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_true(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_FORMAT);
    assert_true(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_FORMAT);

    /* Arguments. */
    mpos_tlv_iter_init(&it, NULL, 3, MPOS_TLV_CARD);
    assert_true(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_ARG);
    mpos_tlv_iter_init(&it, buf, len, 0x80);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_ARG);
    mpos_tlv_iter_init(&it, NULL, 0, MPOS_TLV_CARD);
    assert_false(mpos_tlv_more(&it));
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tlv_next(NULL, &obj), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_next(&it, NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_validate(NULL, 1, MPOS_TLV_CARD), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_validate(NULL, 0, MPOS_TLV_CARD), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(buf, len, 0x100), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x5A, NULL, &found), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_find(buf, len, MPOS_TLV_CARD, 0x5A, &obj, NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_find(buf, len, 0x100, 0x5A, &obj, &found), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_find_deep(NULL, 2, MPOS_TLV_CARD, 0x5A, &obj, &found), MPOS_ERR_ARG);
}

static void test_padding(void **state)
{
    (void)state;
    uint8_t buf[32];
    mpos_tlv obj;
    mpos_tlv_iter it;
    int found;
    /* 00 before, between, after objects and inside a template (SU 69). */
    size_t len = tu_hex("00005A01AA0070060000570111000000", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_ERR_FORMAT);
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_CARD);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x5A);
    assert_ptr_equal(obj.raw, buf + 2);
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x70);
    assert_int_equal(obj.len, 6);
    assert_false(mpos_tlv_more(&it)); /* trailing padding only */
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_CARD, 0x57, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.value[0], 0x11);
    /* Padding only, or a template of padding only. */
    len = tu_hex("000000", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    len = tu_hex("70020000", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_OK);
    /* FF padding only on request. */
    len = tu_hex("FFFF5A01AAFF00", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD | MPOS_TLV_PAD_FF), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_ERR_FORMAT);
}

/* Nests `levels` levels: levels - 1 templates E1 around a primitive 5A. */
static size_t nest(uint8_t *buf, size_t cap, size_t levels)
{
    mpos_tlv_mark marks[32];
    size_t len = 0;
    static const uint8_t v = 0xAA;
    assert_true(levels >= 1 && levels <= 32);
    for (size_t i = 0; i + 1 < levels; i++) {
        assert_int_equal(mpos_tlv_begin(buf, cap, &len, 0xE1, &marks[i]), MPOS_OK);
    }
    assert_int_equal(mpos_tlv_put(buf, cap, &len, 0x5A, &v, 1), MPOS_OK);
    for (size_t i = levels - 1; i-- > 0;) {
        assert_int_equal(mpos_tlv_end(buf, cap, &len, &marks[i]), MPOS_OK);
    }
    return len;
}

static void test_depth(void **state)
{
    (void)state;
    uint8_t buf[128];
    mpos_tlv obj;
    int found;
    size_t len = nest(buf, sizeof(buf), MPOS_TLV_MAX_DEPTH);
    assert_int_equal(len, 3 + 2 * (MPOS_TLV_MAX_DEPTH - 1));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_STRICT, 0x5A, &obj, &found), MPOS_OK);
    assert_true(found);
    assert_int_equal(obj.value[0], 0xAA);

    len = nest(buf, sizeof(buf), MPOS_TLV_MAX_DEPTH + 1);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_tlv_find_deep(buf, len, MPOS_TLV_STRICT, 0x5A, &obj, &found),
                     MPOS_ERR_FORMAT);
    assert_false(found);
    /* A template at the deepest level may be empty. */
    len = tu_hex("E10EE10CE10AE108E106E104E102E100", buf, sizeof(buf));
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_STRICT), MPOS_OK);
    len = nest(buf, sizeof(buf), 30);
    assert_int_equal(mpos_tlv_validate(buf, len, MPOS_TLV_CARD), MPOS_ERR_FORMAT);
    /* One level at a time, the caller may go as deep as it likes. */
    mpos_tlv_iter it;
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_CARD);
    for (size_t i = 0; i < 29; i++) {
        assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
        assert_int_equal(obj.tag, 0xE1);
        mpos_tlv_iter_init(&it, obj.value, obj.len, MPOS_TLV_CARD);
    }
    assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
    assert_int_equal(obj.tag, 0x5A);
}

/* Every proper prefix of a single-template buffer is malformed: each must fail cleanly. */
static void truncations(const char *hex)
{
    size_t full;
    uint8_t *src = hex_exact(hex, &full);
    mpos_tlv obj;
    int found;
    assert_int_equal(mpos_tlv_validate(src, full, MPOS_TLV_STRICT), MPOS_OK);
    for (size_t n = 0; n < full; n++) {
        uint8_t *p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, src, n);
        int want = n == 0 ? MPOS_OK : MPOS_ERR_FORMAT;
        assert_int_equal(mpos_tlv_validate(p, n, MPOS_TLV_CARD), want);
        assert_int_equal(mpos_tlv_validate(p, n, MPOS_TLV_STRICT), want);
        assert_int_equal(mpos_tlv_find(p, n, MPOS_TLV_CARD, 0x9F10, &obj, &found), want);
        assert_false(found);
        /* A deep find of the last object never finds it; earlier ones may be found. */
        int r = mpos_tlv_find_deep(p, n, MPOS_TLV_CARD, 0xDEAD, &obj, &found);
        assert_int_equal(r, want);
        r = mpos_tlv_find_deep(p, n, MPOS_TLV_CARD, 0x5A, &obj, &found);
        assert_true(r == MPOS_OK || r == MPOS_ERR_FORMAT);
        if (found) {
            assert_true(obj.value + obj.len <= p + n);
        }
        mpos_tlv_iter it;
        mpos_tlv_iter_init(&it, p, n, MPOS_TLV_CARD);
        while (mpos_tlv_more(&it)) {
            if (mpos_tlv_next(&it, &obj) != MPOS_OK) {
                break;
            }
            assert_true(obj.value + obj.len <= p + n);
        }
        free(p);
    }
    free(src);
}

static void test_truncations(void **state)
{
    (void)state;
    truncations(FCI_HEX);
    truncations(GPO1_HEX);
    truncations(GPO2_HEX);
    truncations(RECORD_HEX);
    truncations("7081855A0847617390010100109F4678"
                "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
                "202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F"
                "404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F"
                "606162636465666768696A6B6C6D6E6F7071727374757677");
}

static void test_encoder_roundtrip(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 127, 128, 255, 256, 65535, 65536};
    static const char *headers[] = {"DF810100",   "DF810101",     "DF81017F",     "DF81018180",
                                    "DF810181FF", "DF8101820100", "DF810182FFFF", "DF810183010000"};
    static uint8_t value[65536];
    for (size_t i = 0; i < sizeof(value); i++) {
        value[i] = (uint8_t)(i * 7 + 1);
    }
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t hdr[8];
        size_t hl = tu_hex(headers[i], hdr, sizeof(hdr));
        size_t len = 0;
        size_t need = hl + lens[i];
        /* One byte short: MPOS_ERR_LENGTH, nothing written. */
        memset(big, 0xEE, need);
        assert_int_equal(mpos_tlv_put(big, need - 1, &len, 0xDF8101, value, lens[i]),
                         MPOS_ERR_LENGTH);
        assert_int_equal(len, 0);
        assert_int_equal(big[0], 0xEE);
        /* Exactly enough. */
        assert_int_equal(mpos_tlv_put(big, need, &len, 0xDF8101, value, lens[i]), MPOS_OK);
        assert_int_equal(len, need);
        assert_memory_equal(big, hdr, hl);
        mpos_tlv obj;
        mpos_tlv_iter it;
        mpos_tlv_iter_init(&it, big, len, MPOS_TLV_STRICT);
        assert_int_equal(mpos_tlv_next(&it, &obj), MPOS_OK);
        assert_int_equal(obj.tag, 0xDF8101);
        assert_false(obj.constructed);
        assert_int_equal(obj.len, lens[i]);
        assert_ptr_equal(obj.value, big + hl);
        if (lens[i] != 0) {
            assert_memory_equal(obj.value, value, lens[i]);
        }
        assert_false(mpos_tlv_more(&it));

        /* The same content through begin/end: the length is fixed up afterwards. */
        mpos_tlv_mark m;
        len = 0;
        assert_int_equal(mpos_tlv_begin(big, sizeof(big), &len, 0xBF0C, &m), MPOS_OK);
        if (lens[i] != 0) {
            memcpy(big + len, value, lens[i]); /* raw content appended by the caller */
        }
        len += lens[i];
        assert_int_equal(mpos_tlv_end(big, sizeof(big), &len, &m), MPOS_OK);
        assert_int_equal(len, need - 1); /* BF0C is one byte shorter than DF8101 */
        assert_int_equal(big[0], 0xBF);
        assert_int_equal(big[1], 0x0C);
        assert_memory_equal(big + 2, hdr + 3, hl - 3);
        if (lens[i] != 0) {
            assert_memory_equal(big + hl - 1, value, lens[i]);
        }
        /* end without room to grow the length field. */
        if (hl > 4) {
            len = 0;
            assert_int_equal(mpos_tlv_begin(big, need - 2, &len, 0xBF0C, &m), MPOS_OK);
            memset(big + len, 0x11, lens[i]);
            len += lens[i];
            assert_int_equal(mpos_tlv_end(big, need - 2, &len, &m), MPOS_ERR_LENGTH);
            assert_int_equal(len, 3 + lens[i]);
            assert_int_equal(big[2], 0x00);
            assert_int_equal(big[3], 0x11);
        }
    }
    /* Too long for a 83 length. */
    size_t len = 0;
    assert_int_equal(mpos_tlv_put(big, sizeof(big), &len, 0x5A, value, 0x1000000), MPOS_ERR_LENGTH);
}

static void test_encoder_fci(void **state)
{
    (void)state;
    uint8_t buf[128], expect[128];
    size_t len = 0;
    mpos_tlv_mark fci, prop, disc;
    static const uint8_t aid[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
    static const uint8_t prio = 0x01;
    static const uint8_t pdol[] = {0x9F, 0x66, 0x04, 0x9F, 0x02, 0x06,
                                   0x9F, 0x37, 0x04, 0x5F, 0x2A, 0x02};
    static const uint8_t log[] = {0x0B, 0x0A};
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x6F, &fci), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x84, aid, sizeof(aid)), MPOS_OK);
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0xA5, &prop), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x50, (const uint8_t *)"VISA CREDIT", 11),
                     MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x87, &prio, 1), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x9F38, pdol, sizeof(pdol)), MPOS_OK);
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0xBF0C, &disc), MPOS_OK);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x9F4D, log, sizeof(log)), MPOS_OK);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &disc), MPOS_OK);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &prop), MPOS_OK);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &fci), MPOS_OK);
    size_t n = tu_hex(FCI_HEX, expect, sizeof(expect));
    assert_int_equal(len, n);
    assert_memory_equal(buf, expect, n);

    /* A value may come from the buffer itself (re-wrap in place). */
    len = 0;
    memcpy(buf + 3, aid, sizeof(aid));
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x4F, buf + 3, sizeof(aid)), MPOS_OK);
    assert_int_equal(len, 9);
    assert_int_equal(buf[0], 0x4F);
    assert_int_equal(buf[1], 0x07);
    assert_memory_equal(buf + 2, aid, sizeof(aid));
}

static void test_encoder_args(void **state)
{
    (void)state;
    uint8_t buf[16];
    size_t len = 0;
    mpos_tlv_mark m;
    static const uint32_t bad_tags[] = {
        0x00,      /* no tag */
        0x1F,      /* needs subsequent bytes */
        0x9F,      /* same */
        0xFF,      /* same */
        0x9F81,    /* last byte says more follows */
        0x5A01,    /* first byte does not announce subsequent bytes */
        0xDF0101,  /* middle byte without bit 8 */
        0xDF8081,  /* last byte with bit 8 */
        0xDF8001,  /* first subsequent byte 80 (X.690 8.1.2.4.2 c) */
        0x01DF8101 /* 4 bytes */
    };
    for (size_t i = 0; i < sizeof(bad_tags) / sizeof(bad_tags[0]); i++) {
        assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, bad_tags[i], NULL, 0), MPOS_ERR_ARG);
        assert_int_equal(len, 0);
    }
    assert_int_equal(mpos_tlv_put(NULL, 0, &len, 0x5A, NULL, 0), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), NULL, 0x5A, NULL, 0), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x5A, NULL, 1), MPOS_ERR_ARG);
    len = sizeof(buf) + 1;
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x5A, NULL, 0), MPOS_ERR_ARG);
    len = sizeof(buf);
    assert_int_equal(mpos_tlv_put(buf, sizeof(buf), &len, 0x5A, NULL, 0), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x70, &m), MPOS_ERR_LENGTH);
    len = 0;
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x5A, &m), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x9F38, &m), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x70, NULL), MPOS_ERR_ARG);
    assert_int_equal(len, 0);
    /* A mark that does not match the buffer. */
    assert_int_equal(mpos_tlv_begin(buf, sizeof(buf), &len, 0x70, &m), MPOS_OK);
    mpos_tlv_mark bad = m;
    bad.value_pos = len + 1;
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &bad), MPOS_ERR_ARG);
    bad = m;
    bad.tag_pos = bad.value_pos;
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &bad), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_tlv_end(buf, sizeof(buf), &len, &m), MPOS_OK);
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0x70);
    assert_int_equal(buf[1], 0x00);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fci),          cmocka_unit_test(test_gpo_formats),
        cmocka_unit_test(test_read_record),  cmocka_unit_test(test_dol_build),
        cmocka_unit_test(test_dol_rejects),  cmocka_unit_test(test_multibyte_tags),
        cmocka_unit_test(test_long_lengths), cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_padding),      cmocka_unit_test(test_depth),
        cmocka_unit_test(test_truncations),  cmocka_unit_test(test_encoder_roundtrip),
        cmocka_unit_test(test_encoder_fci),  cmocka_unit_test(test_encoder_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
