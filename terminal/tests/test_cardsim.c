/* Tests (label terminal): the virtual card engine (terminal/sim/cardsim) on its own: power-up
 * behaviours, command parsing and status words (ISO/IEC 7816-4; EMV 4.3 Book 3 6.5), the PIN
 * Try Limit, the ARQC against lib/emv computed here from the issuer master key (Book 2 8.1.2,
 * A1.3.1, A1.4), issuer authentication (8.2.1), enciphered PIN (Book 2 7.2).
 * Card data comes from cards.tsv at run time and is never printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "card.h"
#include "emv_harness.h"
#include "mpos/emv.h"
#include "mpos/rsa.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "testutil.h"

static mpos_crypto_ctx cc;
static mpos_cardsim card;
static mpos_cardsim_profile prof;
static uint8_t rsp[MPOS_CARDSIM_RAPDU_MAX];
static size_t rsp_len;

static int setup(void **state)
{
    (void)state;
    return mpos_crypto_init(&cc) == MPOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_cardsim_clear(&card);
    mpos_crypto_clear(&cc);
    return 0;
}

static void load(const char *name)
{
    mpos_cardsim_clear(&card);
    assert_int_equal(mpos_cardsim_profile_load(h_cards_path(), name, &prof), MPOS_OK);
}

static void power(void)
{
    uint8_t atr[MPOS_CARDSIM_ATR_MAX];
    size_t atr_len;
    assert_int_equal(mpos_cardsim_init(&card, &prof, &cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_power_on(&card, atr, &atr_len), 0);
    assert_true(atr_len >= 2 && atr[0] == 0x3B);
}

/* Sends a hex C-APDU, returns SW; the data is in rsp (rsp_len bytes without SW). */
static unsigned send_bin(const uint8_t *c, size_t n)
{
    assert_int_equal(mpos_cardsim_process(&card, c, n, rsp, sizeof(rsp), &rsp_len), 0);
    assert_true(rsp_len >= 2);
    rsp_len -= 2;
    return (unsigned)rsp[rsp_len] << 8 | rsp[rsp_len + 1];
}

static unsigned send(const char *hex)
{
    uint8_t c[300];
    size_t n = tu_hex(hex, c, sizeof(c));
    return send_bin(c, n);
}

static void select_app(void)
{
    uint8_t c[32] = {0x00, 0xA4, 0x04, 0x00, (uint8_t)prof.aid_len};
    memcpy(&c[5], prof.aid, prof.aid_len);
    c[5 + prof.aid_len] = 0x00;
    assert_int_equal(send_bin(c, 6 + prof.aid_len), 0x9000);
}

static void test_profiles(void **state)
{
    (void)state;
    mpos_cardsim_profile p;
    assert_int_equal(mpos_cardsim_profile_parse("a\tb\n", &p), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_cardsim_profile_parse("x\t6212094482246349\t3012\t220\t01\t1234\t127\t"
                                                "1561F401E8F11F75C848D4E793834A2Z\tok",
                                                &p),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_cardsim_profile_parse("x\t62120944\t3012\t220\t01\t1234\t127\t"
                                                "00112233445566778899AABBCCDDEEFF\tok",
                                                &p),
                     MPOS_ERR_FORMAT);
    /* A made-up row (not a card of cards.tsv): unknown names get the approve personalisation. */
    assert_int_equal(mpos_cardsim_profile_parse("new-card\t6299999999999999\t3012\t220\t01\t"
                                                "1234\t127\t00112233445566778899AABBCCDDEEFF\t"
                                                "whatever\r\n",
                                                &p),
                     MPOS_OK);
    assert_int_equal(p.behaviour, MPOS_CARDSIM_APPROVE);
    assert_int_equal(p.pin_try_limit, 3);
    load("offline-pin");
    assert_int_equal(prof.offline_pin, MPOS_CARDSIM_OFFLINE_PIN_ENCIPHERED);
    load("foreign-aid");
    assert_int_equal(prof.aid_len, 7);
}

static void test_power(void **state)
{
    (void)state;
    uint8_t atr[MPOS_CARDSIM_ATR_MAX], c[5] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    size_t atr_len;
    load("chip-broken");
    assert_int_equal(mpos_cardsim_init(&card, &prof, &cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_power_on(&card, atr, &atr_len), MPOS_CARDSIM_MUTE);
    assert_int_equal(mpos_cardsim_process(&card, c, 5, rsp, sizeof(rsp), &rsp_len),
                     MPOS_CARDSIM_MUTE);
    load("stripe-only");
    assert_int_equal(mpos_cardsim_init(&card, &prof, &cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_power_on(&card, atr, &atr_len), MPOS_CARDSIM_NO_CHIP);
    assert_int_equal(mpos_cardsim_process(&card, c, 5, rsp, sizeof(rsp), &rsp_len),
                     MPOS_CARDSIM_NO_CHIP);
    load("approve");
    assert_int_equal(mpos_cardsim_init(&card, &prof, &cc), MPOS_OK);
    /* Not powered: no answer. */
    assert_int_equal(mpos_cardsim_process(&card, c, 5, rsp, sizeof(rsp), &rsp_len),
                     MPOS_CARDSIM_MUTE);
    assert_int_equal(mpos_cardsim_power_on(&card, atr, &atr_len), 0);
    mpos_cardsim_power_off(&card);
    assert_int_equal(mpos_cardsim_process(&card, c, 5, rsp, sizeof(rsp), &rsp_len),
                     MPOS_CARDSIM_MUTE);
}

static void test_commands(void **state)
{
    (void)state;
    load("approve");
    power();
    assert_int_equal(send("00A4"), 0x6700);                                   /* 2 bytes */
    assert_int_equal(send("00A404000F315041592E5359532E4444463031"), 0x6700); /* Lc 15, 14 */
    assert_int_equal(send("00A4040000"), 0x6A82);                             /* case 2, no name */
    assert_int_equal(send("00FF000000"), 0x6D00);
    assert_int_equal(send("9000000000"), 0x6E00);
    assert_int_equal(send("80A8000002830000"), 0x6985); /* GPO before SELECT */
    /* PSE, its directory record, then the application. */
    assert_int_equal(send("00A404000E315041592E5359532E444446303100"), 0x9000);
    assert_int_equal(mpos_tlv_validate(rsp, rsp_len, MPOS_TLV_STRICT), MPOS_OK);
    assert_int_equal(send("00B2010C00"), 0x9000);
    assert_int_equal(rsp[0], 0x70);
    assert_int_equal(send("00B2020C00"), 0x6A83);
    assert_int_equal(send("00B2010800"), 0x6A86); /* P2 not '100' in bits 3-1 */
    select_app();
    assert_int_equal(send("80AE80000100"), 0x6985);                 /* GENERATE AC before GPO */
    assert_int_equal(send("0082000008000000000000000000"), 0x6985); /* EXTERNAL AUTH */
    assert_int_equal(send("80A8000002830000"), 0x6700);             /* PDOL data missing */
    assert_int_equal(send("80A8000011830F00000000000000000000000000000000"), 0x6700);
    assert_int_equal(send("80A800000B830900000000000000000000"), 0x9000);
    assert_int_equal(rsp[0], 0x77);
    assert_int_equal(send("80A800000B830900000000000000000000"), 0x6985); /* once */
    assert_int_equal(send("00B2010C00"), 0x9000);
    assert_int_equal(send("00B2040C00"), 0x6A83);
    assert_int_equal(send("00B2011400"), 0x6A82); /* no SFI 2 on this card */
    assert_int_equal(send("80CA9F1700"), 0x9000);
    assert_int_equal(rsp_len, 4);
    assert_int_equal(rsp[3], 3);
    assert_int_equal(send("80CA9F3600"), 0x9000);
    assert_int_equal(mpos_load_be16(&rsp[3]), prof.atc_start + 1);
    assert_int_equal(send("80CA9F4F00"), 0x6A88);
    assert_int_equal(send("0084000000"), 0x9000);
    assert_int_equal(rsp_len, 8);
}

/* The PIN Try Limit: 3 wrong PINs block the PIN; a right one before that resets the count. */
static void test_pin_try_limit(void **state)
{
    (void)state;
    uint8_t c[13] = {0x00, 0x20, 0x00, 0x80, 0x08};
    load("wrong-pin");
    power();
    select_app();
    const char *wrong = strcmp(prof.pin, "0000") == 0 ? "1111" : "0000";
    /* Plaintext offline PIN block: 2, length, digits, F filler (Book 3 6.5.12). */
    memset(&c[5], 0xFF, 8);
    c[5] = 0x24;
    c[6] = (uint8_t)((wrong[0] - '0') << 4 | (wrong[1] - '0'));
    c[7] = (uint8_t)((wrong[2] - '0') << 4 | (wrong[3] - '0'));
    assert_int_equal(send_bin(c, 13), 0x63C2);
    assert_int_equal(send("0020008000"), 0x63C2); /* no data: tries left */
    assert_int_equal(send_bin(c, 13), 0x63C1);
    assert_int_equal(send_bin(c, 13), 0x63C0);
    assert_int_equal(mpos_cardsim_pin_tries(&card), 0);
    /* Blocked: even the right PIN is refused. */
    size_t n = strlen(prof.pin);
    uint8_t right[13] = {0x00, 0x20, 0x00, 0x80, 0x08};
    memset(&right[5], 0xFF, 8);
    right[5] = (uint8_t)(0x20 | n);
    for (size_t i = 0; i < n; i++) {
        size_t nib = 2 + i;
        uint8_t d = (uint8_t)(prof.pin[i] - '0');
        if (nib % 2 == 0) {
            right[5 + nib / 2] = (uint8_t)(d << 4 | 0x0F);
        } else {
            right[5 + nib / 2] = (uint8_t)((right[5 + nib / 2] & 0xF0) | d);
        }
    }
    assert_int_equal(send_bin(right, 13), 0x6983);
    assert_int_equal(send("80CA9F1700"), 0x9000);
    assert_int_equal(rsp[3], 0);
    /* A new card: wrong, then right, resets to 3. */
    mpos_cardsim_clear(&card);
    power();
    select_app();
    assert_int_equal(send_bin(c, 13), 0x63C2);
    assert_int_equal(send_bin(right, 13), 0x9000);
    assert_int_equal(mpos_cardsim_pin_tries(&card), 3);
    /* A malformed block is refused without counting. */
    right[5] = 0x13;
    assert_int_equal(send_bin(right, 13), 0x6A80);
    assert_int_equal(mpos_cardsim_pin_tries(&card), 3);
}

/* ARQC of the first GENERATE AC recomputed here, then ARPC method 1 by EXTERNAL
 * AUTHENTICATE and a TC; a wrong ARPC gives 6300 and an AAC. */
static void run_gac(int good_arpc)
{
    uint8_t cmd[64] = {0x80, 0xAE, 0x80, 0x00, 52};
    uint8_t *d = &cmd[5];
    /* CDOL1 data: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 9F21 9F4E(20). */
    memset(d, 0, 52);
    d[5] = 0x50;  /* amount 0.50 */
    d[12] = 0x01; /* 9F1A 0156 */
    d[13] = 0x56;
    d[14] = 0x80; /* TVR */
    d[19] = 0x01; /* 5F2A 0156 */
    d[20] = 0x56;
    d[21] = 0x26; /* 9A 260315 */
    d[22] = 0x03;
    d[23] = 0x15;
    d[25] = 0xDE; /* 9F37 */
    d[26] = 0xAD;
    d[27] = 0xBE;
    d[28] = 0xEF;
    cmd[57] = 0x00;
    assert_int_equal(send_bin(cmd, 58), 0x9000);
    assert_int_equal(rsp[0], 0x80);
    assert_int_equal(rsp[2] & 0xC0, 0x80);
    uint8_t atc[2] = {rsp[3], rsp[4]}, arqc[8], iad[8];
    memcpy(arqc, &rsp[5], 8);
    memcpy(iad, &rsp[13], 8);

    struct mpos_emv_ac_fields f;
    uint8_t mk[16], sk[16], data[MPOS_EMV_AC_DATA_MAX_LEN];
    size_t dlen;
    memset(&f, 0, sizeof(f));
    memcpy(f.amount_authorised, d, 6);
    memcpy(f.amount_other, d + 6, 6);
    memcpy(f.terminal_country, d + 12, 2);
    memcpy(f.tvr, d + 14, 5);
    memcpy(f.currency, d + 19, 2);
    memcpy(f.date, d + 21, 3);
    f.type = d[24];
    memcpy(f.un, d + 25, 4);
    f.aip[0] = 0x1C;
    memcpy(f.atc, atc, 2);
    f.iad_part = iad + 3;
    f.iad_part_len = 4;
    assert_int_equal(
        mpos_emv_derive_icc_mk(&cc, MPOS_EMV_MK_OPTION_A, prof.imk, 16, prof.pan, prof.psn, mk),
        MPOS_OK);
    assert_int_equal(mpos_emv_derive_sk(&cc, MPOS_EMV_SK_COMMON, mk, 16, atc, sk), MPOS_OK);
    assert_int_equal(mpos_emv_ac_data_build(&f, data, sizeof(data), &dlen), MPOS_OK);
    assert_int_equal(mpos_emv_ac_verify(&cc, sk, 16, data, dlen, arqc), MPOS_OK);

    uint8_t ea[15] = {0x00, 0x82, 0x00, 0x00, 0x0A};
    assert_int_equal(mpos_emv_arpc1_generate(&cc, sk, 16, arqc, (const uint8_t *)"00", &ea[5]),
                     MPOS_OK);
    ea[13] = '0';
    ea[14] = '0';
    if (!good_arpc) {
        ea[5] ^= 0x80;
    }
    assert_int_equal(send_bin(ea, 15), good_arpc ? 0x9000 : 0x6300);
    assert_int_equal(send_bin(ea, 15), 0x6985); /* only once */
    /* Second GENERATE AC: CDOL2 = 8A + the CDOL1 fields up to 9F37. */
    uint8_t g2[64] = {0x80, 0xAE, 0x40, 0x00, 31, '0', '0'};
    memcpy(&g2[7], d, 29);
    g2[36] = 0x00;
    assert_int_equal(send_bin(g2, 37), 0x9000);
    assert_int_equal(rsp[2] & 0xC0, good_arpc ? 0x40 : 0x00);
    assert_int_equal(send_bin(g2, 37), 0x6985); /* the transaction is over */
    MPOS_WIPE_BUFFER(mk);
    MPOS_WIPE_BUFFER(sk);
}

static void test_generate_ac(void **state)
{
    (void)state;
    load("approve");
    power();
    select_app();
    assert_int_equal(send("80A800000B830900000000000000000000"), 0x9000);
    assert_int_equal(send("80AE90000100"), 0x6A86); /* CDA not supported */
    assert_int_equal(send("80AE80000100"), 0x6700); /* CDOL1 data of the wrong length */
    run_gac(1);
    /* A new session: wrong ARPC. */
    uint8_t atr[MPOS_CARDSIM_ATR_MAX];
    size_t atr_len;
    assert_int_equal(mpos_cardsim_power_on(&card, atr, &atr_len), 0);
    select_app();
    assert_int_equal(send("80A800000B830900000000000000000000"), 0x9000);
    run_gac(0);
}

/* VERIFY P2 88 refused without a fresh GET CHALLENGE, and the certificate records of SFI 2.
 * A good enciphered PIN (the kernel recovering the key from these certificates) is in
 * test_emv_kernel (offline-pin card). */
static void test_enciphered_verify(void **state)
{
    (void)state;
    load("offline-pin");
    power();
    select_app();
    assert_int_equal(send("80A800000B830900000000000000000000"), 0x9000);
    /* Without a challenge the block cannot verify. */
    uint8_t v[5 + 128] = {0x00, 0x20, 0x00, 0x88, 0x80};
    assert_int_equal(send_bin(v, sizeof(v)), 0x6A80);
    assert_int_equal(mpos_cardsim_pin_tries(&card), 3);
    /* Records of SFI 2 hold the certificates. */
    assert_int_equal(send("00B2011400"), 0x9000);
    assert_int_equal(send("00B2021400"), 0x9000);
    assert_int_equal(send("00B2031400"), 0x6A83);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles),    cmocka_unit_test(test_power),
        cmocka_unit_test(test_commands),    cmocka_unit_test(test_pin_try_limit),
        cmocka_unit_test(test_generate_ac), cmocka_unit_test(test_enciphered_verify),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
