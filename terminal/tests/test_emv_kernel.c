/* Tests (label terminal): the EMV / PBOC kernel (terminal/core/emv) against the virtual card
 * (terminal/sim/cardsim) in-process, for every card of shared/testdata/cards.tsv, and against
 * scripted malformed card responses. The issuer side recomputes every ARQC from the card's
 * issuer master key with lib/emv (EMV 4.3 Book 2 8.1.2, A1.3.1, A1.4) using only the data of
 * the request, and answers with its ARPC (8.2.1 method 1, 8.2.2 method 2).
 * Card numbers, PINs and keys come from cards.tsv at run time and are never printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emv_harness.h"
#include "mpos/tlv.h"
#include "mpos/util.h"

static struct harness H;

static int teardown(void **state)
{
    (void)state;
    h_teardown(&H);
    return 0;
}

static const mpos_emv_result *res(void)
{
    return mpos_emv_get_result(&H.k);
}

static int tvr(unsigned bit)
{
    const uint8_t *v;
    size_t n;
    int found;
    assert_int_equal(mpos_emv_get_data(&H.k, 0x95, &v, &n, &found), MPOS_OK);
    assert_true(found && n == 5);
    return (v[(bit >> 8) - 1] & (bit & 0xFF)) != 0;
}

static uint8_t data_byte(uint32_t tag, size_t i)
{
    const uint8_t *v;
    size_t n;
    int found;
    assert_int_equal(mpos_emv_get_data(&H.k, tag, &v, &n, &found), MPOS_OK);
    assert_true(found && i < n);
    return v[i];
}

/* ---- the cards file */

static void test_cards_file_copy(void **state)
{
    (void)state;
    const char *src = getenv("MPOS_SOURCE_DIR");
    char a[1024], b[1024];
    assert_non_null(src);
    snprintf(a, sizeof(a), "%s/../shared/testdata/cards.tsv", src);
    snprintf(b, sizeof(b), "%s/tests/data/cards.tsv", src);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fb); /* the copy in the repository is always there */
    if (fa == NULL) {
        fclose(fb);
        skip(); /* no shared folder beside the repository: nothing to compare */
    }
    int ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        assert_int_equal(ca, cb);
    } while (ca != EOF);
    fclose(fa);
    fclose(fb);
}

static void test_every_row_parses(void **state)
{
    (void)state;
    static const char *names[] = {"approve",       "approve-19digit", "insufficient", "wrong-pin",
                                  "card-declines", "chip-broken",     "stripe-only",  "offline-pin",
                                  "expired",       "foreign-aid"};
    mpos_cardsim_profile p;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(mpos_cardsim_profile_load(h_cards_path(), names[i], &p), MPOS_OK);
        assert_string_equal(p.name, names[i]);
    }
    assert_int_not_equal(mpos_cardsim_profile_load(h_cards_path(), "no-such-card", &p), MPOS_OK);
}

/* ---- the happy paths */

/* approve: PSE, GPO format 2, online PIN, ARQC checked by the issuer, EXTERNAL AUTHENTICATE
 * (method 1), TC. */
static void test_approve(void **state)
{
    (void)state;
    uint8_t f55[320];
    size_t len = 0, vl;
    mpos_emv_card_data cd;
    h_setup(&H, "approve");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(res()->online_pin, 1);
    assert_int_equal(H.online_pin_calls, 1);
    assert_int_equal(H.pin_next, 0); /* no offline PIN asked */
    /* TVR: ODA not performed, floor limit 0 exceeded, online PIN entered; nothing else. */
    assert_true(tvr(MPOS_EMV_TVR_ODA_NOT_PERFORMED));
    assert_true(tvr(MPOS_EMV_TVR_FLOOR_LIMIT));
    assert_true(tvr(MPOS_EMV_TVR_ONLINE_PIN));
    assert_false(tvr(MPOS_EMV_TVR_EXPIRED));
    assert_false(tvr(MPOS_EMV_TVR_CVM_FAILED));
    assert_false(tvr(MPOS_EMV_TVR_DIFFERENT_VERSIONS));
    assert_false(tvr(MPOS_EMV_TVR_LCOL_EXCEEDED));
    /* CVM results: online PIN (42 03), result unknown. */
    assert_int_equal(data_byte(0x9F34, 0), 0x42);
    assert_int_equal(data_byte(0x9F34, 1), 0x03);
    assert_int_equal(data_byte(0x9F34, 2), 0x00);
    /* The unpredictable number is the first output of the RNG callback. */
    const uint8_t *un;
    int found;
    assert_int_equal(mpos_emv_get_data(&H.k, 0x9F37, &un, &vl, &found), MPOS_OK);
    assert_memory_equal(un, H.first_random, 4);
    /* Card data of the request. */
    assert_int_equal(mpos_emv_card_data_get(&H.k, &cd), MPOS_OK);
    assert_true(strcmp(cd.pan, H.prof.pan) == 0);
    assert_true(strcmp(cd.psn, H.prof.psn) == 0);
    assert_int_equal(memcmp(cd.expiry, H.prof.expiry, 4), 0);
    assert_string_equal(cd.service_code, H.prof.service_code);
    assert_true(cd.track2_len > 0);
    assert_int_equal(cd.aid_len, 8);
    /* Field 55 is canonical BER-TLV with the tags the request needs. */
    assert_int_equal(mpos_emv_field55(&H.k, MPOS_EMV_F55_REQUEST, f55, sizeof(f55), &len), MPOS_OK);
    assert_int_equal(mpos_tlv_validate(f55, len, MPOS_TLV_STRICT), MPOS_OK);
    static const uint32_t need[] = {0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95,   0x9A,
                                    0x9C,   0x9F02, 0x5F2A, 0x82,   0x9F1A, 0x9F03, 0x9F33,
                                    0x84,   0x9F34, 0x9F35, 0x9F1E, 0x9F09, 0x9F41};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        (void)h_f55(f55, len, need[i], &vl);
    }
    assert_int_equal(h_f55(f55, len, 0x9F27, &vl)[0] & 0xC0, 0x80); /* ARQC */
    assert_int_equal(mpos_emv_field55(&H.k, MPOS_EMV_F55_FINAL, f55, sizeof(f55), &len),
                     MPOS_ERR_ARG);
    /* Issuer approves with its ARPC. */
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
    assert_int_equal(res()->reversal_required, 0);
    assert_int_equal(H.ins_count[0x82], 1); /* EXTERNAL AUTHENTICATE */
    assert_int_equal(data_byte(0x9B, 0) & MPOS_EMV_TSI_ISSUER_AUTH_PERFORMED,
                     MPOS_EMV_TSI_ISSUER_AUTH_PERFORMED);
    assert_false(tvr(MPOS_EMV_TVR_ISSUER_AUTH_FAILED));
    assert_int_equal(mpos_emv_field55(&H.k, MPOS_EMV_F55_FINAL, f55, sizeof(f55), &len), MPOS_OK);
    assert_int_equal(h_f55(f55, len, 0x9F27, &vl)[0] & 0xC0, 0x40); /* TC */
    assert_memory_equal(h_f55(f55, len, 0x8A, &vl), "00", 2);
    (void)h_f55(f55, len, 0x9B, &vl);
    /* Out of order calls. */
    assert_int_equal(h_start(&H), MPOS_ERR_ARG);
    assert_int_equal(mpos_emv_complete(&H.k, NULL), MPOS_ERR_ARG);
}

/* approve-19digit: option B key derivation, GPO format 1, GENERATE AC format 2, ARPC method 2
 * carried in CDOL2 (no EXTERNAL AUTHENTICATE). */
static void test_approve_19digit(void **state)
{
    (void)state;
    mpos_emv_card_data cd;
    h_setup(&H, "approve-19digit");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(mpos_emv_card_data_get(&H.k, &cd), MPOS_OK);
    assert_int_equal(strlen(cd.pan), 19);
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
    assert_int_equal(H.ins_count[0x82], 0);
    assert_int_equal(data_byte(0x9F27, 0) & 0xC0, 0x40);
}

/* insufficient: no PSE, the list of AIDs finds the application; the issuer declines (51). */
static void test_insufficient(void **state)
{
    (void)state;
    h_setup(&H, "insufficient");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(h_complete(&H, 0, "51"), MPOS_EMV_DECLINED);
    assert_int_equal(res()->reversal_required, 0);
    assert_int_equal(data_byte(0x9F27, 0) & 0xC0, 0x00); /* AAC */
}

/* wrong-pin: the online PIN is the issuer's (55 declines); the same card then approves. */
static void test_wrong_pin_online(void **state)
{
    (void)state;
    h_setup(&H, "wrong-pin");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(h_complete(&H, 0, "55"), MPOS_EMV_DECLINED);
    uint16_t atc1 = mpos_cardsim_atc(&H.card);
    /* Second transaction on the same card (new ATC, new session key). */
    mpos_emv_init(&H.k, &H.params, &H.env);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(mpos_cardsim_atc(&H.card), atc1 + 1);
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
}

/* card-declines: issuer approves, the card answers AAC: reversal. */
static void test_card_declines(void **state)
{
    (void)state;
    h_setup(&H, "card-declines");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_DECLINED_AFTER_APPROVAL);
    assert_int_equal(res()->reversal_required, 1);
    assert_int_equal(res()->fallback_allowed, 0);
    assert_int_equal(data_byte(0x9F27, 0) & 0xC0, 0x00);
}

/* chip-broken: no answer to the reset: chip error, fallback allowed. Also when the caller
 * powered the card itself and the first command gets no answer. */
static void test_chip_broken(void **state)
{
    (void)state;
    h_setup(&H, "chip-broken");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
    assert_int_equal(res()->reason, MPOS_EMV_REASON_NO_ANSWER);
    assert_int_equal(res()->fallback_allowed, 1);
    assert_int_equal(res()->reversal_required, 0);
    H.env.card_reset = NULL;
    mpos_emv_init(&H.k, &H.params, &H.env);
    assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
    assert_int_equal(res()->fallback_allowed, 1);
}

/* stripe-only: the reader finds no chip. */
static void test_stripe_only(void **state)
{
    (void)state;
    h_setup(&H, "stripe-only");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
    assert_int_equal(res()->fallback_allowed, 1);
}

/* foreign-aid: the PSE lists only A0000000031010, the list of AIDs finds nothing. */
static void test_foreign_aid(void **state)
{
    (void)state;
    h_setup(&H, "foreign-aid");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_NOT_ACCEPTED);
    assert_int_equal(res()->reason, MPOS_EMV_REASON_NO_APPLICATION);
    assert_int_equal(res()->fallback_allowed, 0);
    assert_int_equal(H.ins_count[0xA8], 0); /* no GPO */
    mpos_emv_card_data cd;
    assert_int_equal(mpos_emv_card_data_get(&H.k, &cd), MPOS_ERR_ARG);
}

/* expired: TVR "Expired application"; with the default TACs it goes online and the issuer
 * declines (54); with the expired bit in TAC-Denial the card is asked for an AAC at once. */
static void test_expired(void **state)
{
    (void)state;
    h_setup(&H, "expired");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_true(tvr(MPOS_EMV_TVR_EXPIRED));
    assert_int_equal(h_complete(&H, 0, "54"), MPOS_EMV_DECLINED);

    mpos_cardsim_clear(&H.card);
    for (size_t i = 0; i < H.params.aid_count; i++) {
        H.params.aids[i].tac_denial[1] |= 0x40;
    }
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_DECLINED);
    assert_true(tvr(MPOS_EMV_TVR_EXPIRED));
    assert_int_equal(data_byte(0x9F27, 0) & 0xC0, 0x00);
    assert_int_equal(res()->reversal_required, 0);
}

/* offline-pin: enciphered offline PIN (certificates recovered with the test CA key); a wrong
 * PIN decrements the counter and the cardholder tries again with the right one. */
static void test_offline_pin_wrong_then_right(void **state)
{
    (void)state;
    h_setup(&H, "offline-pin");
    h_card(&H);
    H.pins[0] = "0000";
    H.pins[1] = H.prof.pin;
    H.pin_count = 2;
    if (strcmp(H.prof.pin, "0000") == 0) {
        H.pins[0] = "9999";
    }
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(H.pin_next, 2);
    assert_int_equal(H.tries_seen[0], 3);
    assert_int_equal(H.tries_seen[1], 2);
    assert_int_equal(mpos_cardsim_pin_tries(&H.card), 3); /* reset by the right PIN */
    assert_int_equal(H.online_pin_calls, 0);
    assert_int_equal(res()->online_pin, 0);
    assert_int_equal(data_byte(0x9F34, 0), 0x44);
    assert_int_equal(data_byte(0x9F34, 2), 0x02); /* successful */
    assert_false(tvr(MPOS_EMV_TVR_PIN_TRY_EXCEEDED));
    assert_false(tvr(MPOS_EMV_TVR_CVM_FAILED));
    assert_int_equal(H.ins_count[0x84], 2); /* GET CHALLENGE per attempt */
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
}

/* Three wrong PINs: PIN Try Limit exceeded, the CVM list goes on to online PIN. */
static void test_offline_pin_limit(void **state)
{
    (void)state;
    h_setup(&H, "offline-pin");
    h_card(&H);
    const char *wrong = strcmp(H.prof.pin, "0000") == 0 ? "9999" : "0000";
    for (size_t i = 0; i < 5; i++) {
        H.pins[i] = wrong;
    }
    H.pin_count = 5;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(H.pin_next, 3);
    assert_int_equal(mpos_cardsim_pin_tries(&H.card), 0);
    assert_true(tvr(MPOS_EMV_TVR_PIN_TRY_EXCEEDED));
    assert_int_equal(H.online_pin_calls, 1);
    assert_int_equal(data_byte(0x9F34, 0), 0x42);
    /* Next transaction: the counter is 0, no offline PIN is asked at all. */
    h_complete(&H, 1, "00");
    mpos_emv_init(&H.k, &H.params, &H.env);
    H.pin_next = 0;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(H.pin_next, 0);
    assert_true(tvr(MPOS_EMV_TVR_PIN_TRY_EXCEEDED));
}

/* Plaintext offline PIN (CVM 41 03), wrong then right; bypass; cancel. */
static void test_offline_plain_pin(void **state)
{
    (void)state;
    h_setup(&H, "wrong-pin");
    H.prof.offline_pin = MPOS_CARDSIM_OFFLINE_PIN_PLAIN;
    h_card(&H);
    H.pins[0] = strcmp(H.prof.pin, "1111") == 0 ? "2222" : "1111";
    H.pins[1] = H.prof.pin;
    H.pin_count = 2;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(data_byte(0x9F34, 0), 0x41);
    assert_int_equal(data_byte(0x9F34, 2), 0x02);
    assert_int_equal(H.tries_seen[1], 2);
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);

    /* Bypass: "PIN not entered", next rule (online PIN). */
    mpos_emv_init(&H.k, &H.params, &H.env);
    H.pin_count = H.pin_next = 0;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_true(tvr(MPOS_EMV_TVR_PIN_NOT_ENTERED));
    assert_int_equal(data_byte(0x9F34, 0), 0x42);

    /* Cancel: the transaction ends. */
    assert_int_equal(mpos_emv_complete(&H.k, NULL), MPOS_EMV_DECLINED);
    mpos_emv_init(&H.k, &H.params, &H.env);
    H.offline_cancel = 1;
    assert_int_equal(h_start(&H), MPOS_EMV_CANCELLED);
}

/* Offline enciphered PIN without the CA key: the key cannot be retrieved, no PIN is asked
 * offline, online PIN follows. A certificate that does not verify does the same. */
static void test_offline_pin_no_ca_key(void **state)
{
    (void)state;
    h_setup(&H, "offline-pin");
    H.params.capk_count = 0;
    h_card(&H);
    H.pins[0] = H.prof.pin;
    H.pin_count = 1;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(H.pin_next, 0);
    assert_int_equal(H.online_pin_calls, 1);

    mpos_cardsim_clear(&H.card);
    H.params.capk_count = 1;
    H.params.capks[0].modulus[100] ^= 0x01; /* a different CA key */
    h_card(&H);
    H.online_pin_calls = 0;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(H.pin_next, 0);
    assert_int_equal(H.online_pin_calls, 1);
}

/* No online response: the card is asked for an AAC (ARC Z3). */
static void test_unable_online(void **state)
{
    (void)state;
    h_setup(&H, "approve");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(mpos_emv_complete(&H.k, NULL), MPOS_EMV_DECLINED);
    assert_int_equal(res()->reason, MPOS_EMV_REASON_UNABLE_ONLINE);
    assert_int_equal(data_byte(0x8A, 0), 'Z');
    assert_int_equal(data_byte(0x9F27, 0) & 0xC0, 0x00);
}

/* A wrong ARPC: EXTERNAL AUTHENTICATE fails (6300), the card declines: reversal. */
static void test_issuer_auth_fails(void **state)
{
    (void)state;
    uint8_t iad[16];
    mpos_emv_online_response resp;
    h_setup(&H, "approve");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    memset(&resp, 0, sizeof(resp));
    resp.approved = 1;
    memcpy(resp.arc, "00", 2);
    resp.iad91_len = h_issuer(&H, "00", iad);
    iad[0] ^= 0x01;
    resp.iad91 = iad;
    assert_int_equal(mpos_emv_complete(&H.k, &resp), MPOS_EMV_DECLINED_AFTER_APPROVAL);
    assert_true(tvr(MPOS_EMV_TVR_ISSUER_AUTH_FAILED));
    assert_int_equal(res()->reversal_required, 1);
}

/* Issuer scripts are not processed but do not disturb anything; a '91' of a bad length is
 * not sent. */
static void test_scripts_ignored(void **state)
{
    (void)state;
    uint8_t iad[16];
    static const uint8_t scripts[] = {0x71, 0x08, 0x9F, 0x18, 0x00, 0x86, 0x03, 0x84, 0x1E,
                                      0x00, 0x72, 0x03, 0x86, 0x01, 0x00, 0xFF, 0x81};
    mpos_emv_online_response resp;
    h_setup(&H, "approve");
    h_card(&H);
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    memset(&resp, 0, sizeof(resp));
    resp.approved = 1;
    memcpy(resp.arc, "00", 2);
    resp.iad91_len = h_issuer(&H, "00", iad);
    resp.iad91 = iad;
    resp.scripts = scripts;
    resp.scripts_len = sizeof(scripts);
    assert_int_equal(mpos_emv_complete(&H.k, &resp), MPOS_EMV_APPROVED);
    assert_int_equal(res()->scripts_ignored, 2);

    mpos_cardsim_clear(&H.card);
    h_card(&H);
    memset(H.ins_count, 0, sizeof(H.ins_count));
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    resp.iad91_len = 3;
    assert_int_equal(mpos_emv_complete(&H.k, &resp), MPOS_EMV_DECLINED_AFTER_APPROVAL);
    assert_int_equal(H.ins_count[0x82], 0);
    assert_true(tvr(MPOS_EMV_TVR_ISSUER_AUTH_FAILED));
}

/* T=0 style answers: every response with data comes as 61xx and GET RESPONSE. */
static void test_get_response(void **state)
{
    (void)state;
    h_setup(&H, "approve");
    h_card(&H);
    H.t0 = 1;
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_true(H.ins_count[0xC0] > 5);
    assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
}

/* ---- scripted malformed card responses: each ends cleanly, never with a fallback */

enum fault {
    F_GPO_TRUNCATED = 1, /* GPO: the template's length runs past the data */
    F_RECORD_SW,         /* READ RECORD: 6A82 */
    F_AFL_SFI0,          /* AFL entry with SFI 0 */
    F_AFL_FIRST0,        /* first record 0 */
    F_AFL_LAST_LT_FIRST, /* last < first */
    F_AFL_ODA_RANGE,     /* ODA count beyond the range */
    F_AFL_ENDLESS,       /* 255 records */
    F_OVERSIZE,          /* the reader reports 300 bytes */
    F_ONE_BYTE,          /* 1-byte R-APDU */
    F_RECORD_NOT_70,     /* a record that is not a '70' template */
    F_RECORD_TRAILING,   /* '70' template then trailing bytes */
    F_DUPLICATE,         /* the same primitive in two records */
    F_NO_PAN,            /* '5A' renamed */
    F_BAD_LENGTH,        /* '5F24' of 4 bytes */
    F_TRACK2_MISMATCH,   /* '57' PAN differs */
    F_GAC_TC,            /* TC to an ARQC request */
    F_GAC_SHORT,         /* format 1 response of 10 bytes */
    F_GAC_SW,            /* GENERATE AC: 6985 */
    F_GPO_6985,          /* the application refuses GPO */
    F_PSE_BLOCKED,       /* SELECT PSE: 6A81 */
    F_SELECT_BAD_FCI,    /* FCI not a TLV */
    F_MUTE_AFTER_GPO,    /* chip stops answering at READ RECORD */
    F_MUTE_AT_GAC2,      /* chip stops answering after the issuer approved */
    F_DEEP_NESTING,      /* record with 9 levels of templates */
    F_CVM_ODD,           /* CVM list of odd length */
    F_GAC2_ATC,          /* second GENERATE AC with another ATC */
};

/* Replaces the first occurrence of tag in a response with the same-length bytes of new_tag
 * (same tag size). */
static void retag(uint8_t *r, size_t len, uint16_t from, uint16_t to)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (r[i] == (from >> 8) && r[i + 1] == (from & 0xFF)) {
            r[i] = (uint8_t)(to >> 8);
            r[i + 1] = (uint8_t)to;
            return;
        }
    }
    fail_msg("tag %X not found", from);
}

static uint8_t *find_afl(uint8_t *r, size_t len)
{
    /* GPO format 2 of the approve card: 77 L 82 02 xx xx 94 L afl. */
    for (size_t i = 0; i + 2 < len; i++) {
        if (r[i] == 0x94) {
            return &r[i + 2];
        }
    }
    fail_msg("no AFL");
    return NULL;
}

static void set_response(uint8_t *rapdu, size_t *rlen, const uint8_t *data, size_t n)
{
    memcpy(rapdu, data, n);
    *rlen = n;
}

static int faults(struct harness *h, const uint8_t *capdu, size_t clen, uint8_t *r, size_t *rlen)
{
    (void)clen;
    uint8_t ins = capdu[1], p1 = capdu[2], p2 = capdu[3];
    /* Records of the application (after GPO), not of the PSE directory (also SFI 1). */
    int record = ins == 0xB2 && (p2 >> 3) == 1 && h->ins_count[0xA8] > 0;
    switch (h->tamper_arg) {
    case F_GPO_TRUNCATED:
        if (ins == 0xA8) {
            r[1] = (uint8_t)(r[1] + 4);
        }
        break;
    case F_RECORD_SW:
        if (record && p1 == 2) {
            set_response(r, rlen, (const uint8_t *)"\x6A\x82", 2);
        }
        break;
    case F_AFL_SFI0:
        if (ins == 0xA8) {
            find_afl(r, *rlen)[0] = 0x00;
        }
        break;
    case F_AFL_FIRST0:
        if (ins == 0xA8) {
            find_afl(r, *rlen)[1] = 0x00;
        }
        break;
    case F_AFL_LAST_LT_FIRST:
        if (ins == 0xA8) {
            find_afl(r, *rlen)[1] = 0x03;
            find_afl(r, *rlen)[2] = 0x02;
        }
        break;
    case F_AFL_ODA_RANGE:
        if (ins == 0xA8) {
            find_afl(r, *rlen)[3] = 0x04;
        }
        break;
    case F_AFL_ENDLESS:
        if (ins == 0xA8) {
            find_afl(r, *rlen)[0] = 0x58; /* SFI 11: issuer's records, any content */
            find_afl(r, *rlen)[2] = 0xFF;
        }
        if (ins == 0xB2 && (p2 >> 3) == 11) {
            /* A full-size record of a proprietary object. */
            r[0] = 0x70;
            r[1] = 0x81;
            r[2] = 0xFD;
            r[3] = 0xDF;
            r[4] = (uint8_t)(p1 & 0x7F); /* another tag in each record */
            r[5] = 0x81;
            r[6] = 0xF8;
            memset(&r[7], 0x5A, 0xF8);
            r[255] = 0x00;
            r[256] = 0x90;
            r[257] = 0x00;
            *rlen = 258;
        }
        break;
    case F_OVERSIZE:
        if (record && p1 == 1) {
            *rlen = 300;
        }
        break;
    case F_ONE_BYTE:
        if (record && p1 == 1) {
            *rlen = 1;
        }
        break;
    case F_RECORD_NOT_70:
        if (record && p1 == 1) {
            r[0] = 0x71;
        }
        break;
    case F_RECORD_TRAILING:
        if (record && p1 == 1) {
            memmove(&r[*rlen - 1], &r[*rlen - 2], 2);
            r[*rlen - 2] = 0x5F;
            *rlen += 1;
        }
        break;
    case F_DUPLICATE:
        if (record && p1 == 3) {
            retag(r, *rlen, 0x9F0E, 0x9F0D); /* 9F0D came just before */
        }
        break;
    case F_NO_PAN:
        if (record && p1 == 2) {
            r[2] = 0x50; /* '5A' becomes '50' application label */
        }
        break;
    case F_BAD_LENGTH:
        if (record && p1 == 3) {
            retag(r, *rlen, 0x9F0E, 0x5F24); /* 5 bytes for a 3-byte date */
        }
        if (record && p1 == 2) {
            retag(r, *rlen, 0x5F24, 0x5F26);
        }
        break;
    case F_TRACK2_MISMATCH:
        if (record && p1 == 1) {
            r[4] ^= 0x11;
        }
        break;
    case F_GAC_TC:
        if (ins == 0xAE && p1 == 0x80) {
            r[2] = 0x40;
        }
        break;
    case F_GAC_SHORT:
        if (ins == 0xAE) {
            static const uint8_t s[] = {0x80, 0x0A, 0x80, 0, 1, 1, 2, 3, 4, 5, 6, 7, 0x90, 0x00};
            set_response(r, rlen, s, sizeof(s));
        }
        break;
    case F_GAC_SW:
        if (ins == 0xAE) {
            set_response(r, rlen, (const uint8_t *)"\x69\x85", 2);
        }
        break;
    case F_GPO_6985:
        if (ins == 0xA8) {
            set_response(r, rlen, (const uint8_t *)"\x69\x85", 2);
        }
        break;
    case F_PSE_BLOCKED:
        if (ins == 0xA4 && capdu[5] == '1') {
            set_response(r, rlen, (const uint8_t *)"\x6A\x81", 2);
        }
        break;
    case F_SELECT_BAD_FCI:
        if (ins == 0xA4 && capdu[5] == '1') {
            r[1] = 0x7F;
        }
        break;
    case F_MUTE_AFTER_GPO:
        return record && p1 == 2;
    case F_MUTE_AT_GAC2:
        return ins == 0xAE && p1 == 0x40;
    case F_DEEP_NESTING:
        if (record && p1 == 1) {
            static const uint8_t deep[] = {0x70, 0x10, 0xE1, 0x0E, 0xE1, 0x0C, 0xE1,
                                           0x0A, 0xE1, 0x08, 0xE1, 0x06, 0xE1, 0x04,
                                           0xE1, 0x02, 0xE1, 0x00, 0x90, 0x00};
            set_response(r, rlen, deep, sizeof(deep));
        }
        break;
    case F_CVM_ODD:
        if (record && p1 == 3) {
            /* 8E 0E (8 + 6 bytes) -> 8E 0D, and the last byte becomes a 1-byte object. */
            for (size_t i = 0; i + 1 < *rlen; i++) {
                if (r[i] == 0x8E) {
                    r[i + 1] = (uint8_t)(r[i + 1] - 1);
                    r[i + 2 + r[i + 1]] = 0x00; /* padding byte: skipped as EMV allows */
                    break;
                }
            }
        }
        break;
    case F_GAC2_ATC:
        if (ins == 0xAE && p1 == 0x40) {
            r[4] ^= 0x01;
        }
        break;
    default:
        break;
    }
    return 0;
}

static void run_fault(enum fault f, int expect_outcome, int expect_reason)
{
    h_setup(&H, "approve");
    h_card(&H);
    H.tamper = faults;
    H.tamper_arg = (int)f;
    int r = h_start(&H);
    if (r == MPOS_EMV_ONLINE && (f == F_MUTE_AT_GAC2 || f == F_GAC2_ATC)) {
        r = h_complete(&H, 1, "00");
        assert_int_equal(res()->reversal_required, 1);
    }
    if (r != expect_outcome || (expect_reason >= 0 && (int)res()->reason != expect_reason)) {
        fail_msg("fault %d: outcome %d reason %d, expected %d / %d", (int)f, r, (int)res()->reason,
                 expect_outcome, expect_reason);
    }
    if (expect_outcome == MPOS_EMV_TERMINATED) {
        assert_int_equal(res()->fallback_allowed, 0);
    }
    h_teardown(&H);
}

static void test_malformed_responses(void **state)
{
    (void)state;
    const int T = MPOS_EMV_TERMINATED;
    run_fault(F_GPO_TRUNCATED, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_RECORD_SW, T, MPOS_EMV_REASON_STATUS);
    run_fault(F_AFL_SFI0, T, MPOS_EMV_REASON_AFL);
    run_fault(F_AFL_FIRST0, T, MPOS_EMV_REASON_AFL);
    run_fault(F_AFL_LAST_LT_FIRST, T, MPOS_EMV_REASON_AFL);
    run_fault(F_AFL_ODA_RANGE, T, MPOS_EMV_REASON_AFL);
    run_fault(F_AFL_ENDLESS, T, MPOS_EMV_REASON_TOO_LARGE);
    run_fault(F_OVERSIZE, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_ONE_BYTE, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_RECORD_NOT_70, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_RECORD_TRAILING, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_DUPLICATE, T, MPOS_EMV_REASON_DATA_DUPLICATE);
    run_fault(F_NO_PAN, T, MPOS_EMV_REASON_DATA_MISSING);
    run_fault(F_BAD_LENGTH, T, MPOS_EMV_REASON_DATA_INVALID);
    run_fault(F_TRACK2_MISMATCH, T, MPOS_EMV_REASON_DATA_INVALID);
    run_fault(F_GAC_TC, T, MPOS_EMV_REASON_CRYPTOGRAM);
    run_fault(F_GAC_SHORT, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_GAC_SW, T, MPOS_EMV_REASON_STATUS);
    run_fault(F_GPO_6985, MPOS_EMV_NOT_ACCEPTED, MPOS_EMV_REASON_NO_APPLICATION);
    run_fault(F_PSE_BLOCKED, T, MPOS_EMV_REASON_CARD_BLOCKED);
    run_fault(F_SELECT_BAD_FCI, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_MUTE_AFTER_GPO, MPOS_EMV_CARD_ERROR, MPOS_EMV_REASON_NO_ANSWER);
    run_fault(F_MUTE_AT_GAC2, MPOS_EMV_CARD_ERROR, MPOS_EMV_REASON_NO_ANSWER);
    run_fault(F_DEEP_NESTING, T, MPOS_EMV_REASON_FORMAT);
    run_fault(F_CVM_ODD, T, MPOS_EMV_REASON_DATA_INVALID);
    run_fault(F_GAC2_ATC, T, MPOS_EMV_REASON_DATA_INVALID);
    /* The card error after GPO still allows the stripe (nothing was authorised); after the
     * issuer's approval it does not, and a reversal is due (checked in run_fault). */
    h_setup(&H, "approve");
    h_card(&H);
    H.tamper = faults;
    H.tamper_arg = F_MUTE_AFTER_GPO;
    assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
    assert_int_equal(res()->fallback_allowed, 1);
}

/* ---- arguments */

static int failing_rng(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    memset(out, 0, len);
    return 1;
}

static int failing_clock(void *ctx, mpos_emv_datetime *now)
{
    (void)ctx;
    (void)now;
    return 1;
}

static void test_arguments(void **state)
{
    (void)state;
    h_setup(&H, "approve");
    h_card(&H);
    assert_int_equal(mpos_emv_start(NULL, &H.txn), MPOS_ERR_ARG);
    assert_int_equal(mpos_emv_start(&H.k, NULL), MPOS_ERR_ARG);
    H.txn.amount = 1000000000000ULL;
    assert_int_equal(h_start(&H), MPOS_ERR_ARG);
    H.txn.amount = 100;
    H.now.month = 2;
    H.now.day = 30;
    assert_int_equal(h_start(&H), MPOS_ERR_FORMAT);
    assert_int_equal(h_start(&H), MPOS_ERR_ARG); /* the context is spent */
    mpos_emv_env env = H.env;
    env.rng = NULL;
    mpos_emv_init(&H.k, &H.params, &env);
    assert_int_equal(h_start(&H), MPOS_ERR_ARG);
    H.now.month = 3;
    H.now.day = 15;
    env.rng = failing_rng;
    mpos_emv_init(&H.k, &H.params, &env);
    assert_int_equal(h_start(&H), MPOS_ERR_RNG);
    assert_int_equal(h_start(&H), MPOS_ERR_ARG);
    env = H.env;
    env.now = failing_clock;
    mpos_emv_init(&H.k, &H.params, &env);
    assert_int_equal(h_start(&H), MPOS_ERR_FORMAT);
    mpos_emv_params bad = H.params;
    bad.aid_count = 0;
    mpos_emv_init(&H.k, &bad, &H.env);
    assert_int_equal(h_start(&H), MPOS_ERR_ARG);
    size_t len;
    uint8_t f55[8];
    mpos_emv_init(&H.k, &H.params, &H.env);
    assert_int_equal(mpos_emv_field55(&H.k, MPOS_EMV_F55_REQUEST, f55, sizeof(f55), &len),
                     MPOS_ERR_ARG);
    /* A field 55 buffer that is too small. */
    assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
    assert_int_equal(mpos_emv_field55(&H.k, MPOS_EMV_F55_REQUEST, f55, sizeof(f55), &len),
                     MPOS_ERR_LENGTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cards_file_copy),
        cmocka_unit_test(test_every_row_parses),
        cmocka_unit_test_teardown(test_approve, teardown),
        cmocka_unit_test_teardown(test_approve_19digit, teardown),
        cmocka_unit_test_teardown(test_insufficient, teardown),
        cmocka_unit_test_teardown(test_wrong_pin_online, teardown),
        cmocka_unit_test_teardown(test_card_declines, teardown),
        cmocka_unit_test_teardown(test_chip_broken, teardown),
        cmocka_unit_test_teardown(test_stripe_only, teardown),
        cmocka_unit_test_teardown(test_foreign_aid, teardown),
        cmocka_unit_test_teardown(test_expired, teardown),
        cmocka_unit_test_teardown(test_offline_pin_wrong_then_right, teardown),
        cmocka_unit_test_teardown(test_offline_pin_limit, teardown),
        cmocka_unit_test_teardown(test_offline_plain_pin, teardown),
        cmocka_unit_test_teardown(test_offline_pin_no_ca_key, teardown),
        cmocka_unit_test_teardown(test_unable_online, teardown),
        cmocka_unit_test_teardown(test_issuer_auth_fails, teardown),
        cmocka_unit_test_teardown(test_scripts_ignored, teardown),
        cmocka_unit_test_teardown(test_get_response, teardown),
        cmocka_unit_test_teardown(test_malformed_responses, teardown),
        cmocka_unit_test_teardown(test_arguments, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
