/* Test harness: the EMV kernel against the virtual card in-process (emv_harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emv_harness.h"
#include "mpos/emv.h"
#include "mpos/tlv.h"
#include "mpos/util.h"

const char *h_cards_path(void)
{
    static char path[1024];
    const char *src = getenv("MPOS_SOURCE_DIR");
    FILE *f;
    if (src == NULL) {
        src = ".";
    }
    snprintf(path, sizeof(path), "%s/../shared/testdata/cards.tsv", src);
    if ((f = fopen(path, "r")) != NULL) {
        fclose(f);
        return path;
    }
    snprintf(path, sizeof(path), "%s/tests/data/cards.tsv", src);
    return path;
}

static int io_reset(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    struct harness *h = ctx;
    return mpos_cardsim_power_on(&h->card, atr, atr_len);
}

static int io_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                       uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    struct harness *h = ctx;
    int r;
    h->exchanges++;
    h->ins_count[capdu[1]]++;
    if (h->t0 && capdu[0] == 0x00 && capdu[1] == 0xC0) {
        /* GET RESPONSE: the data held back. */
        memcpy(rapdu, h->pending, h->pending_len);
        *rapdu_len = h->pending_len;
        h->pending_len = 0;
        return 0;
    }
    r = mpos_cardsim_process(&h->card, capdu, capdu_len, rapdu, MPOS_RAPDU_MAX, rapdu_len);
    if (r != 0) {
        return r;
    }
    if (h->tamper != NULL && h->tamper(h, capdu, capdu_len, rapdu, rapdu_len) != 0) {
        return MPOS_CARDSIM_MUTE;
    }
    if (h->t0 && *rapdu_len > 2) {
        /* T=0 style: 61xx, the data comes with GET RESPONSE. */
        memcpy(h->pending, rapdu, *rapdu_len);
        h->pending_len = *rapdu_len;
        rapdu[0] = 0x61;
        rapdu[1] = (uint8_t)(*rapdu_len - 2);
        *rapdu_len = 2;
    }
    return 0;
}

static int io_rng(void *ctx, uint8_t *out, size_t len)
{
    struct harness *h = ctx;
    for (size_t i = 0; i < len; i++) {
        h->rng ^= h->rng << 13;
        h->rng ^= h->rng >> 17;
        h->rng ^= h->rng << 5;
        out[i] = (uint8_t)h->rng;
    }
    if (h->rng_calls++ == 0 && len >= 4) {
        memcpy(h->first_random, out, 4);
    }
    return 0;
}

static int io_now(void *ctx, mpos_emv_datetime *now)
{
    struct harness *h = ctx;
    *now = h->now;
    return 0;
}

static int io_pin(void *ctx, enum mpos_emv_pin_kind kind, unsigned tries_left,
                  char pin[MPOS_PIN_BUF_LEN])
{
    struct harness *h = ctx;
    if (kind == MPOS_EMV_PIN_ONLINE) {
        assert_null(pin);
        h->online_pin_calls++;
        return h->online_pin_result;
    }
    assert_non_null(pin);
    if (h->offline_cancel) {
        return MPOS_EMV_PIN_CANCELLED;
    }
    if (h->pin_next < 8) {
        h->tries_seen[h->pin_next] = tries_left;
    }
    if (h->pin_next >= h->pin_count) {
        return MPOS_EMV_PIN_BYPASSED;
    }
    snprintf(pin, MPOS_PIN_BUF_LEN, "%s", h->pins[h->pin_next++]);
    return MPOS_EMV_PIN_ENTERED;
}

void h_setup(struct harness *h, const char *card_name)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(mpos_crypto_init(&h->cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_profile_load(h_cards_path(), card_name, &h->prof), MPOS_OK);
    mpos_emv_params_default(&h->params);
    mpos_emv_capk *ca = &h->params.capks[0];
    static const uint8_t rid[5] = {0xA0, 0x00, 0x00, 0x03, 0x33};
    memcpy(ca->rid, rid, 5);
    assert_int_equal(mpos_cardsim_ca_key(&ca->index, ca->modulus, sizeof(ca->modulus),
                                         &ca->modulus_len, ca->exponent, sizeof(ca->exponent),
                                         &ca->exponent_len),
                     MPOS_OK);
    h->params.capk_count = 1;
    memcpy(h->params.terminal_id, "T0000001", 9);
    memcpy(h->params.merchant_id, "898310048990001", 16);
    memcpy(h->params.ifd_serial, "SN000001", 9);
    h->params.mcc[0] = 0x53;
    h->params.mcc[1] = 0x11;
    h->env.ctx = h;
    h->env.card_reset = io_reset;
    h->env.card_io = io_exchange;
    h->env.rng = io_rng;
    h->env.now = io_now;
    h->env.pin_entry = io_pin;
    h->now.year = 2026;
    h->now.month = 3;
    h->now.day = 15;
    h->now.hour = 10;
    h->now.minute = 30;
    h->rng = 0x12345678u;
    h->txn.type = 0x00;
    h->txn.amount = 12345;
    h->txn.sequence = 1;
    h->online_pin_result = MPOS_EMV_PIN_ENTERED;
}

void h_card(struct harness *h)
{
    assert_int_equal(mpos_cardsim_init(&h->card, &h->prof, &h->cc), MPOS_OK);
    mpos_emv_init(&h->k, &h->params, &h->env);
}

int h_start(struct harness *h)
{
    return mpos_emv_start(&h->k, &h->txn);
}

const uint8_t *h_f55(const uint8_t *f55, size_t len, uint32_t tag, size_t *vlen)
{
    mpos_tlv o;
    int found = 0;
    assert_int_equal(mpos_tlv_find(f55, len, MPOS_TLV_STRICT, tag, &o, &found), MPOS_OK);
    if (!found) {
        fail_msg("tag %X not in field 55", tag);
    }
    *vlen = o.len;
    return o.value;
}

static void take(const uint8_t *f55, size_t len, uint32_t tag, uint8_t *out, size_t n)
{
    size_t vl;
    const uint8_t *v = h_f55(f55, len, tag, &vl);
    assert_int_equal(vl, n);
    memcpy(out, v, n);
}

size_t h_issuer(struct harness *h, const char *arc, uint8_t iad[16])
{
    uint8_t f55[320], mk[16], sk[16], data[MPOS_EMV_AC_DATA_MAX_LEN], arqc[8], ipart[4];
    size_t len = 0, dlen = 0, vl;
    struct mpos_emv_ac_fields f;
    mpos_emv_card_data cd;
    assert_int_equal(mpos_emv_field55(&h->k, MPOS_EMV_F55_REQUEST, f55, sizeof(f55), &len),
                     MPOS_OK);
    assert_int_equal(mpos_emv_card_data_get(&h->k, &cd), MPOS_OK);
    memset(&f, 0, sizeof(f));
    take(f55, len, 0x9F02, f.amount_authorised, 6);
    take(f55, len, 0x9F03, f.amount_other, 6);
    take(f55, len, 0x9F1A, f.terminal_country, 2);
    take(f55, len, 0x95, f.tvr, 5);
    take(f55, len, 0x5F2A, f.currency, 2);
    take(f55, len, 0x9A, f.date, 3);
    take(f55, len, 0x9C, &f.type, 1);
    take(f55, len, 0x9F37, f.un, 4);
    take(f55, len, 0x82, f.aip, 2);
    take(f55, len, 0x9F36, f.atc, 2);
    take(f55, len, 0x9F26, arqc, 8);
    const uint8_t *iad10 = h_f55(f55, len, 0x9F10, &vl);
    assert_true(vl >= 7);
    memcpy(ipart, iad10 + 3, 4); /* PBOC: the CVR part of '9F10' */
    f.iad_part = ipart;
    f.iad_part_len = 4;
    /* EMV 4.3 Book 2 A1.4 (option A, or B over 16 digits) and A1.3.1 common session key,
     * from the request's PAN and PSN, never from the card's memory. */
    enum mpos_emv_mk_option opt = strlen(cd.pan) > 16 ? MPOS_EMV_MK_OPTION_B : MPOS_EMV_MK_OPTION_A;
    assert_int_equal(
        mpos_emv_derive_icc_mk(&h->cc, opt, h->prof.imk, 16, cd.pan, cd.psn[0] ? cd.psn : NULL, mk),
        MPOS_OK);
    assert_int_equal(mpos_emv_derive_sk(&h->cc, MPOS_EMV_SK_COMMON, mk, 16, f.atc, sk), MPOS_OK);
    assert_int_equal(mpos_emv_ac_data_build(&f, data, sizeof(data), &dlen), MPOS_OK);
    assert_int_equal(mpos_emv_ac_verify(&h->cc, sk, 16, data, dlen, arqc), MPOS_OK);
    size_t n;
    if (h->prof.arpc_method == 2) {
        static const uint8_t csu[4] = {0x00, 0x00, 0x00, 0x00};
        assert_int_equal(mpos_emv_arpc2_generate(&h->cc, sk, 16, arqc, csu, NULL, 0, iad), MPOS_OK);
        memcpy(iad + 4, csu, 4);
        n = 8;
    } else {
        assert_int_equal(mpos_emv_arpc1_generate(&h->cc, sk, 16, arqc, (const uint8_t *)arc, iad),
                         MPOS_OK);
        memcpy(iad + 8, arc, 2);
        n = 10;
    }
    MPOS_WIPE_BUFFER(mk);
    MPOS_WIPE_BUFFER(sk);
    return n;
}

int h_complete(struct harness *h, int approved, const char *arc)
{
    uint8_t iad[16];
    mpos_emv_online_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.approved = approved;
    memcpy(resp.arc, arc, 2);
    resp.iad91_len = h_issuer(h, arc, iad);
    resp.iad91 = iad;
    return mpos_emv_complete(&h->k, &resp);
}

void h_teardown(struct harness *h)
{
    mpos_emv_clear(&h->k);
    mpos_cardsim_clear(&h->card);
    mpos_crypto_clear(&h->cc);
}
