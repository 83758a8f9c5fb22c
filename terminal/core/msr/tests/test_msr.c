/* Unit tests: terminal/core/msr (ISO/IEC 7813 tracks 1 and 2, Luhn, service code and fallback
 * rules, PAN masking).
 *
 * The cards are those of shared/testdata/cards.tsv, read at run time; their tracks are built
 * here from PAN, expiry and service code (ISO/IEC 7813 10.1 and 10.2, LRC per ISO/IEC 7811-2).
 * The Luhn known answers are the examples of ISO/IEC 7812-1 Annex B practice (79927398713). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msr/msr.h"
#include "test_cards.h"

/* Today for the policy: after every expiry in cards.tsv but the "expired" card's. */
#define TODAY_YEAR  2026
#define TODAY_MONTH 1

static const struct tc_card *need_cards(size_t *n)
{
    const struct tc_card *all;
    *n = tc_load(&all);
    return all;
}

#define SKIP_WITHOUT_CARDS(n)                                                                      \
    do {                                                                                           \
        if ((n) == 0) {                                                                            \
            print_message("cards.tsv not found: skipped\n");                                       \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* The track 2 equivalent nibbles of "PAN D YYMM SC disc", F-padded. */
static size_t expect_t2eq(const struct tc_card *c, const char *disc, uint8_t out[19])
{
    char s[64];
    size_t n =
        (size_t)snprintf(s, sizeof(s), "%sD%s%s%s", c->pan, c->expiry, c->service_code, disc);
    if (n % 2) {
        s[n++] = 'F';
    }
    for (size_t i = 0; i < n; i += 2) {
        unsigned hi = s[i] == 'D' ? 0xD : s[i] == 'F' ? 0xF : (unsigned)(s[i] - '0');
        unsigned lo = s[i + 1] == 'D' ? 0xD : s[i + 1] == 'F' ? 0xF : (unsigned)(s[i + 1] - '0');
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return n / 2;
}

/* ---- parsing the test cards ------------------------------------------------------------- */

static void test_track2_cards(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    static const char *discs[] = {"", "1", "12345678901", "0000000000001"};
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < 4; d++) {
            for (int shape = 0; shape < 3; shape++) { /* bare, framed, framed + LRC */
                char t2[64];
                mpos_msr_card card;
                uint8_t eq[19];
                size_t len = tc_track2(&cards[i], discs[d], shape > 0, shape == 2, t2, sizeof(t2));
                if (strlen(cards[i].pan) + 8 + strlen(discs[d]) > 37) {
                    assert_int_equal(mpos_msr_parse_track2(t2, len, &card), MPOS_ERR_FORMAT);
                    continue;
                }
                assert_int_equal(mpos_msr_parse_track2(t2, len, &card), MPOS_OK);
                assert_string_equal(card.pan, cards[i].pan);
                assert_string_equal(card.expiry, cards[i].expiry);
                assert_string_equal(card.service_code, cards[i].service_code);
                assert_string_equal(card.name, "");
                assert_true(card.has_track2 && !card.has_track1);
                size_t eq_len = expect_t2eq(&cards[i], discs[d], eq);
                assert_int_equal(card.track2_eq_len, eq_len);
                assert_memory_equal(card.track2_eq, eq, eq_len);
                mpos_msr_card_clear(&card);
            }
        }
    }
}

static void test_track1_cards(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        for (int shape = 0; shape < 3; shape++) {
            char t1[96], t2[64];
            mpos_msr_card card;
            size_t l1 = tc_track1(&cards[i], "TEST/CARDHOLDER MR", "0000123", shape > 0, shape == 2,
                                  t1, sizeof(t1));
            size_t l2 = tc_track2(&cards[i], "", 1, 1, t2, sizeof(t2));
            assert_int_equal(mpos_msr_parse_track1(t1, l1, &card), MPOS_OK);
            assert_string_equal(card.pan, cards[i].pan);
            assert_string_equal(card.expiry, cards[i].expiry);
            assert_string_equal(card.service_code, cards[i].service_code);
            assert_string_equal(card.name, "TEST/CARDHOLDER MR");
            assert_true(card.has_track1 && !card.has_track2 && card.track2_eq_len == 0);
            /* Both tracks: they agree, the name comes from track 1, the rest from track 2. */
            assert_int_equal(mpos_msr_parse(t1, l1, t2, l2, &card), MPOS_OK);
            assert_true(card.has_track1 && card.has_track2);
            assert_string_equal(card.name, "TEST/CARDHOLDER MR");
            assert_string_equal(card.pan, cards[i].pan);
            /* Track 2 alone is enough; track 1 alone is not. */
            assert_int_equal(mpos_msr_parse(NULL, 0, t2, l2, &card), MPOS_OK);
            assert_int_equal(mpos_msr_parse(t1, l1, NULL, 0, &card), MPOS_ERR_FORMAT);
            assert_string_equal(card.pan, "");
            mpos_msr_card_clear(&card);
        }
    }
}

/* Tracks of two different cards are refused together. */
static void test_tracks_disagree(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    assert_true(n >= 2);
    char t1[96], t2[64];
    mpos_msr_card card;
    size_t l1 = tc_track1(&cards[0], "A/B", "", 1, 1, t1, sizeof(t1));
    size_t l2 = tc_track2(&cards[1], "", 1, 1, t2, sizeof(t2));
    assert_int_equal(mpos_msr_parse(t1, l1, t2, l2, &card), MPOS_ERR_FORMAT);
    /* Same PAN, another expiry or service code. */
    struct tc_card other = cards[0];
    other.expiry[3] = other.expiry[3] == '1' ? '2' : '1';
    l2 = tc_track2(&other, "", 1, 1, t2, sizeof(t2));
    assert_int_equal(mpos_msr_parse(t1, l1, t2, l2, &card), MPOS_ERR_FORMAT);
    other = cards[0];
    other.service_code[2] = other.service_code[2] == '0' ? '1' : '0';
    l2 = tc_track2(&other, "", 1, 1, t2, sizeof(t2));
    assert_int_equal(mpos_msr_parse(t1, l1, t2, l2, &card), MPOS_ERR_FORMAT);
    /* A malformed track 1 next to a good track 2 is refused too. */
    l2 = tc_track2(&cards[0], "", 1, 1, t2, sizeof(t2));
    assert_int_equal(mpos_msr_parse("%B?", 3, t2, l2, &card), MPOS_ERR_FORMAT);
}

/* ---- malformed tracks ------------------------------------------------------------------- */

struct bad {
    const char *track;
    const char *why;
};

/* A made-up Luhn-valid PAN for format tests: 4111111111111111. */
static const struct bad bad_track2[] = {
    {"", "empty"},
    {";?", "no data"},
    {";4111111111111111=30121010000", "no end sentinel"},
    {";4111111111111111=30121010000?01", "two characters after ES"},
    {";4111111111111111=30121010000?0", "wrong LRC"},
    {"4111111111111111=30121010000?", "ES without SS"},
    {"4111111111111111D30121010000", "EMV separator on a track"},
    {";4111111111111111^30121010000?", "track 1 separator"},
    {";41111111111=30121010000?", "PAN of 11 digits"},
    {";41111111111111111111=3012101?", "PAN of 20 digits"},
    {";=3012101?", "no PAN"},
    {";4111111111111111?", "no separator"},
    {";4111111111111111=?", "expiry marked absent"},
    {";4111111111111111=3012?", "no service code"},
    {";4111111111111111=301210?", "short service code"},
    {";4111111111111111=3013101?", "month 13"},
    {";4111111111111111=3000101?", "month 00"},
    {";4111111111111111=3012101:0?", "':' in discretionary data"},
    {";4111111111111111=3012101=0?", "second separator"},
    {";4111111111111111=3012101;?", "start sentinel in data"},
    {";4111111111111111=301210100000000000000?", "38 data characters (framed)"},
    {";4111111111111111=30121010000000000000?", "control: 37 data characters"},
    {"4111111111111111=301210100000000000000", "bare data of 38 characters"},
    {";4111111111111111=3012101 ?", "space on track 2"},
    {";4111111111111111=3012101A?", "letter on track 2"},
    {";41111111 11111111=3012101?", "space in PAN"},
};

static const struct bad bad_track1[] = {
    {"", "empty"},
    {"%?", "no data"},
    {"%B4111111111111111^TEST/CARD^3012101?", "control: valid"},
    {"%A4111111111111111^TEST/CARD^3012101?", "format code A"},
    {"%4111111111111111^TEST/CARD^3012101?", "no format code"},
    {"%B4111111111111111^TEST/CARD^3012101", "no end sentinel"},
    {"%B4111111111111111^TEST/CARD^3012101?!!", "two characters after ES"},
    {"%B41111111111^TEST/CARD^3012101?", "PAN of 11 digits"},
    {"%B4111111111111111^X^3012101?", "name of 1 character"},
    {"%B4111111111111111^ABCDEFGHIJKLMNOPQRSTUVWXYZA^3012101?", "name of 27 characters"},
    {"%B4111111111111111TEST/CARD^3012101?", "no first separator"},
    {"%B4111111111111111^TEST/CARD3012101?", "no second separator"},
    {"%B4111111111111111^TEST/CARD^^?", "expiry marked absent"},
    {"%B4111111111111111^TEST/CARD^301?", "short expiry"},
    {"%B4111111111111111^TEST/CARD^3013101?", "month 13"},
    {"%B4111111111111111^TEST/CARD^3012101^?", "separator in discretionary data"},
    {"%B4111111111111111^TEST/CARD^3012101%?", "start sentinel in data"},
    {"%B4111111111111111^test/card^3012101?", "lower case (not in the 6-bit alphabet)"},
    {"%B4111111111111111^TEST/CARD^3012101~?", "'~' (not in the alphabet)"},
    {"%B4111111111111111^TEST/CARD^3012101\x01?", "an ASCII control character"},
    {"%B4111111111111111^TEST/CARD^3012101000000000000000000000000000000000000000000?",
     "77 data characters (framed)"},
    {"%B4111111111111111^TEST/CARD^301210100000000000000000000000000000000000000000?",
     "control: 76 data characters"},
};

static void test_bad_tracks(void **state)
{
    (void)state;
    mpos_msr_card card;
    for (size_t i = 0; i < sizeof(bad_track2) / sizeof(bad_track2[0]); i++) {
        memset(&card, 0x55, sizeof(card));
        int r = mpos_msr_parse_track2(bad_track2[i].track, strlen(bad_track2[i].track), &card);
        if (strncmp(bad_track2[i].why, "control", 7) == 0) {
            assert_int_equal(r, MPOS_OK);
            continue;
        }
        if (r != MPOS_ERR_FORMAT) {
            fail_msg("track 2 accepted: %s", bad_track2[i].why);
        }
        for (size_t k = 0; k < sizeof(card); k++) {
            assert_int_equal(((uint8_t *)&card)[k], 0); /* wiped */
        }
    }
    for (size_t i = 0; i < sizeof(bad_track1) / sizeof(bad_track1[0]); i++) {
        int r = mpos_msr_parse_track1(bad_track1[i].track, strlen(bad_track1[i].track), &card);
        int expect = strncmp(bad_track1[i].why, "control", 7) == 0 ? MPOS_OK : MPOS_ERR_FORMAT;
        if (r != expect) {
            fail_msg("track 1 %s: %d", bad_track1[i].why, r);
        }
    }
    /* The LRC: the right one is accepted, every other character refused. */
    char t[64];
    strcpy(t, ";4111111111111111=3012101?");
    size_t len = strlen(t);
    char lrc = tc_lrc(t, len, 0x30, 0x0F);
    for (int c = 0; c < 256; c++) {
        t[len] = (char)c;
        int r = mpos_msr_parse_track2(t, len + 1, &card);
        assert_int_equal(r, (char)c == lrc ? MPOS_OK : MPOS_ERR_FORMAT);
    }
    strcpy(t, "%B4111111111111111^TEST/CARD^3012101?");
    len = strlen(t);
    lrc = tc_lrc(t, len, 0x20, 0x3F);
    for (int c = 0; c < 256; c++) {
        t[len] = (char)c;
        int r = mpos_msr_parse_track1(t, len + 1, &card);
        assert_int_equal(r, (char)c == lrc ? MPOS_OK : MPOS_ERR_FORMAT);
    }
    /* Arguments. */
    assert_int_equal(mpos_msr_parse_track2(NULL, 3, &card), MPOS_ERR_ARG);
    assert_int_equal(mpos_msr_parse_track2(";?", 2, NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_msr_parse_track1(NULL, 0, &card), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_msr_parse(NULL, 0, NULL, 0, NULL), MPOS_ERR_ARG);
}

/* Every truncation of a framed track before its end sentinel is refused; the parser reads
 * nothing past the length it is given (the copy is exactly that long, for ASan). */
static void test_truncations(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        char t1[96], t2[64];
        size_t l1 = tc_track1(&cards[i], "TEST/CARD", "123", 1, 1, t1, sizeof(t1));
        size_t l2 = tc_track2(&cards[i], "123", 1, 1, t2, sizeof(t2));
        for (size_t k = 0; k < l2; k++) {
            char *copy = malloc(k ? k : 1);
            mpos_msr_card card;
            assert_non_null(copy);
            memcpy(copy, t2, k);
            assert_int_equal(mpos_msr_parse_track2(copy, k, &card),
                             k == l2 - 1 ? MPOS_OK : MPOS_ERR_FORMAT); /* LRC is optional */
            free(copy);
        }
        for (size_t k = 0; k < l1; k++) {
            char *copy = malloc(k ? k : 1);
            mpos_msr_card card;
            assert_non_null(copy);
            memcpy(copy, t1, k);
            assert_int_equal(mpos_msr_parse_track1(copy, k, &card),
                             k == l1 - 1 ? MPOS_OK : MPOS_ERR_FORMAT);
            free(copy);
        }
    }
}

/* ---- Luhn, service code, chip and fallback, expiry ------------------------------------- */

static void test_luhn(void **state)
{
    (void)state;
    assert_true(mpos_msr_luhn_valid("79927398713", 11));
    assert_false(mpos_msr_luhn_valid("79927398710", 11));
    assert_true(mpos_msr_luhn_valid("0", 1));
    assert_false(mpos_msr_luhn_valid("", 0));
    assert_false(mpos_msr_luhn_valid("7992739871X", 11));
    assert_false(mpos_msr_luhn_valid(NULL, 3));
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(cards[i].pan);
        assert_true(mpos_msr_luhn_valid(cards[i].pan, len));
        /* Any single-digit change breaks it (the Luhn check catches every one). */
        for (size_t k = 0; k < len; k++) {
            char pan[20];
            strcpy(pan, cards[i].pan);
            pan[k] = (char)('0' + (pan[k] - '0' + 1) % 10);
            assert_false(mpos_msr_luhn_valid(pan, len));
        }
    }
}

static mpos_msr_policy policy(int chip_failed, int refuse_expired)
{
    mpos_msr_policy p = {TODAY_YEAR, TODAY_MONTH, chip_failed, refuse_expired};
    return p;
}

static int read_card(const struct tc_card *c, mpos_msr_card *card)
{
    char t2[64];
    size_t l2 = tc_track2(c, "", 1, 1, t2, sizeof(t2));
    return mpos_msr_parse(NULL, 0, t2, l2, card);
}

/* Chip cards (service code 2xx / 6xx) need a chip failure in the same transaction. */
static void test_chip_and_fallback(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        mpos_msr_card card;
        mpos_msr_decision d;
        mpos_msr_policy no_fail = policy(0, 0), failed = policy(1, 0);
        int chip = cards[i].service_code[0] == '2' || cards[i].service_code[0] == '6';
        assert_int_equal(read_card(&cards[i], &card), MPOS_OK);
        memset(&d, 0x55, sizeof(d));
        int r = mpos_msr_check(&card, &no_fail, &d);
        if (chip) {
            assert_int_equal(r, MPOS_MSR_USE_CHIP);
            assert_int_equal(d.fallback + d.pin_required + d.online_required + d.expired, 0);
        } else {
            assert_int_equal(r, MPOS_OK);
            assert_int_equal(d.fallback, 0);
        }
        assert_int_equal(mpos_msr_check(&card, &failed, &d), MPOS_OK);
        assert_int_equal(d.fallback, chip);
        mpos_msr_card_clear(&card);
    }
    /* The named cards of the file. */
    const struct tc_card *broken = tc_find("chip-broken"), *stripe = tc_find("stripe-only");
    assert_non_null(broken);
    assert_non_null(stripe);
    mpos_msr_card card;
    mpos_msr_decision d;
    mpos_msr_policy p0 = policy(0, 0), p1 = policy(1, 0);
    assert_int_equal(read_card(broken, &card), MPOS_OK);
    assert_int_equal(mpos_msr_check(&card, &p0, &d), MPOS_MSR_USE_CHIP);
    assert_int_equal(mpos_msr_check(&card, &p1, &d), MPOS_OK);
    assert_int_equal(d.fallback, 1);
    assert_int_equal(d.pin_required, 1); /* 220: PIN required, by issuer */
    assert_int_equal(d.online_required, 1);
    assert_int_equal(read_card(stripe, &card), MPOS_OK);
    assert_int_equal(mpos_msr_check(&card, &p0, &d), MPOS_OK);
    assert_int_equal(d.fallback, 0); /* 101: a stripe card, no fallback */
    assert_int_equal(d.pin_required, 0);
    assert_int_equal(d.online_required, 0);
    assert_int_equal(mpos_msr_check(&card, &p1, &d), MPOS_OK);
    assert_int_equal(d.fallback, 0); /* a failed chip read means nothing for it */
}

static void test_bad_luhn_refused(void **state)
{
    (void)state;
    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        struct tc_card bad = cards[i];
        size_t len = strlen(bad.pan);
        bad.pan[len - 1] = (char)('0' + (bad.pan[len - 1] - '0' + 5) % 10);
        mpos_msr_card card;
        mpos_msr_decision d;
        mpos_msr_policy p = policy(1, 0);
        assert_int_equal(read_card(&bad, &card), MPOS_OK); /* the format is fine */
        assert_int_equal(mpos_msr_check(&card, &p, &d), MPOS_MSR_BAD_PAN);
    }
}

static void test_service_codes(void **state)
{
    (void)state;
    /* Every service code, on a made-up Luhn-valid PAN. */
    for (int sc = 0; sc < 1000; sc++) {
        char t2[64];
        mpos_msr_card card;
        mpos_msr_decision d;
        mpos_msr_policy p0 = policy(0, 0), p1 = policy(1, 0);
        snprintf(t2, sizeof(t2), ";4111111111111111=3012%03d?", sc);
        assert_int_equal(mpos_msr_parse_track2(t2, strlen(t2), &card), MPOS_OK);
        int s1 = sc / 100, s2 = sc / 10 % 10, s3 = sc % 10;
        int ok = (s1 == 1 || s1 == 2 || s1 == 5 || s1 == 6) && (s2 == 0 || s2 == 2 || s2 == 4) &&
                 s3 != 3 && s3 != 4 && s3 != 8 && s3 != 9;
        int chip = s1 == 2 || s1 == 6;
        int r0 = mpos_msr_check(&card, &p0, &d);
        int r1 = mpos_msr_check(&card, &p1, &d);
        if (!ok) {
            assert_int_equal(r0, MPOS_MSR_NOT_ACCEPTED);
            assert_int_equal(r1, MPOS_MSR_NOT_ACCEPTED);
            continue;
        }
        assert_int_equal(r0, chip ? MPOS_MSR_USE_CHIP : MPOS_OK);
        assert_int_equal(r1, MPOS_OK);
        assert_int_equal(d.fallback, chip);
        assert_int_equal(d.pin_required, s3 == 0 || s3 == 5 || s3 == 6 || s3 == 7);
        assert_int_equal(d.online_required, s2 != 0);
    }
}

static void test_expiry(void **state)
{
    (void)state;
    static const struct {
        const char *expiry;
        int expired;
    } cases[] = {{"2601", 0}, {"2512", 1}, {"2602", 0}, {"0001", 1}, {"9912", 0}, {"2501", 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char t2[64];
        mpos_msr_card card;
        mpos_msr_decision d;
        mpos_msr_policy flag = policy(0, 0), refuse = policy(0, 1);
        snprintf(t2, sizeof(t2), ";4111111111111111=%s101?", cases[i].expiry);
        assert_int_equal(mpos_msr_parse_track2(t2, strlen(t2), &card), MPOS_OK);
        assert_int_equal(mpos_msr_check(&card, &flag, &d), MPOS_OK);
        assert_int_equal(d.expired, cases[i].expired);
        assert_int_equal(mpos_msr_check(&card, &refuse, &d),
                         cases[i].expired ? MPOS_MSR_EXPIRED : MPOS_OK);
    }
    /* The "expired" card of the file. */
    size_t n;
    (void)need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    const struct tc_card *exp = tc_find("expired");
    assert_non_null(exp);
    mpos_msr_card card;
    mpos_msr_decision d;
    mpos_msr_policy p = policy(1, 0), r = policy(1, 1);
    assert_int_equal(read_card(exp, &card), MPOS_OK);
    assert_int_equal(mpos_msr_check(&card, &p, &d), MPOS_OK);
    assert_int_equal(d.expired, 1);
    assert_int_equal(mpos_msr_check(&card, &r, &d), MPOS_MSR_EXPIRED);
    /* Policy and argument errors. */
    mpos_msr_policy bad = {1999, 1, 0, 0};
    assert_int_equal(mpos_msr_check(&card, &bad, &d), MPOS_ERR_ARG);
    bad.year = 2026;
    bad.month = 13;
    assert_int_equal(mpos_msr_check(&card, &bad, &d), MPOS_ERR_ARG);
    assert_int_equal(mpos_msr_check(NULL, &p, &d), MPOS_ERR_ARG);
    assert_int_equal(mpos_msr_check(&card, &p, NULL), MPOS_ERR_ARG);
    mpos_msr_card empty;
    memset(&empty, 0, sizeof(empty));
    assert_int_equal(mpos_msr_check(&empty, &p, &d), MPOS_ERR_ARG);
}

/* ---- masking (G-ACCT-2) ---------------------------------------------------------------- */

static void test_masking(void **state)
{
    (void)state;
    char out[MPOS_MSR_PAN_BUF_LEN];
    assert_int_equal(mpos_msr_mask_pan("411111111111", out), MPOS_OK);
    assert_string_equal(out, "411111**1111");
    assert_int_equal(mpos_msr_mask_pan("4111111111111111", out), MPOS_OK);
    assert_string_equal(out, "411111******1111");
    assert_int_equal(mpos_msr_mask_pan("4111111111111111111", out), MPOS_OK);
    assert_string_equal(out, "411111*********1111");
    assert_int_equal(mpos_msr_mask_pan("41111111111", out), MPOS_ERR_PAN);
    assert_string_equal(out, "");
    assert_int_equal(mpos_msr_mask_pan("41111111111111111111", out), MPOS_ERR_PAN);
    assert_int_equal(mpos_msr_mask_pan("411111111111111A", out), MPOS_ERR_PAN);
    assert_int_equal(mpos_msr_mask_pan(NULL, out), MPOS_ERR_PAN);
    assert_int_equal(mpos_msr_mask_pan("4111111111111111", NULL), MPOS_ERR_ARG);

    assert_true(mpos_msr_pan_is_masked("411111******1111", 16));
    assert_false(mpos_msr_pan_is_masked("4111111111111111", 16)); /* a full PAN */
    assert_false(mpos_msr_pan_is_masked("4111111*****1111", 16)); /* 7 digits shown */
    assert_false(mpos_msr_pan_is_masked("411111*****11111", 16)); /* 5 at the end */
    assert_false(mpos_msr_pan_is_masked("411111******111", 15));  /* 3 digits at the end */
    assert_true(mpos_msr_pan_is_masked("411111*****1111", 15));
    assert_false(mpos_msr_pan_is_masked("41111**1111", 11));
    assert_false(mpos_msr_pan_is_masked("411111#*****1111", 16));
    assert_false(mpos_msr_pan_is_masked(NULL, 16));

    size_t n;
    const struct tc_card *cards = need_cards(&n);
    SKIP_WITHOUT_CARDS(n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(cards[i].pan);
        assert_int_equal(mpos_msr_mask_pan(cards[i].pan, out), MPOS_OK);
        assert_int_equal(strlen(out), len);
        assert_memory_equal(out, cards[i].pan, 6);
        assert_memory_equal(out + len - 4, cards[i].pan + len - 4, 4);
        for (size_t k = 6; k < len - 4; k++) {
            assert_int_equal(out[k], '*');
        }
        assert_true(mpos_msr_pan_is_masked(out, len));
        assert_false(mpos_msr_pan_is_masked(cards[i].pan, len));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_track2_cards),      cmocka_unit_test(test_track1_cards),
        cmocka_unit_test(test_tracks_disagree),   cmocka_unit_test(test_bad_tracks),
        cmocka_unit_test(test_truncations),       cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_chip_and_fallback), cmocka_unit_test(test_bad_luhn_refused),
        cmocka_unit_test(test_service_codes),     cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_masking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
