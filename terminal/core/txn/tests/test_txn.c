/* Unit tests: terminal/core/txn (the transaction state machine, txn.h, and PIN entry,
 * pin_entry.h).
 *
 * The rig: a scripted keypad and a card reader whose steps fire when the display shows a
 * given prompt, a recording display (every prompt checked with mpos_prompt_params_valid), a
 * fake clock that the waits move forward, the in-process virtual card engine
 * (sim/cardsim) as the chip, tracks built from shared/testdata/cards.tsv as the stripe, a
 * key store double with the DUKPT terminal state of the published test keys, a host link
 * session whose event frames are decoded back, and an in-test back end: it opens each sealed
 * request with mpos_sealed_open_request (keys derived from the BDK, as mpos-hsmd would),
 * decrypts the PIN block, decides per the card's behaviour in cards.tsv (approve, 51, 55 for
 * a wrong PIN, 54), verifies the ARQC and builds the ARPC with lib/emv, and seals the
 * response; it can also drop, forge or misaddress it.
 *
 * Keys: AES BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID 1234567890123456 (ANSI
 * X9.24-3-2017 supplement test vectors); TDES BDK 0123456789ABCDEFFEDCBA9876543210, KSN
 * FFFF9876543210E00000 (ANSI X9.24-1-2009 A.4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "card.h"
#include "mpos/dukpt.h"
#include "mpos/emv.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "test_cards.h"
#include "testutil.h"
#include "txn/pin_entry.h"
#include "txn/txn.h"

#define AES_BDK128 "FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define AES_IKID   "1234567890123456"
#define TDES_BDK   "0123456789ABCDEFFEDCBA9876543210"
#define TDES_KSN   "FFFF9876543210E00000"
#define MID        "898310048990001"
#define TID        "10000001"
#define T0_UNIX    1773570600LL /* 2026-03-15T10:30:00Z */

#define MAX_SHOWN  1024
#define MAX_KEYS   96
#define MAX_STEPS  8
#define MAX_EVENTS 256
#define MAX_BREQ   64
#define MAX_TL     256
#define MAX_INJECT 4

static mpos_crypto_ctx cc;

struct shown {
    enum mpos_prompt prompt;
    mpos_prompt_params p;
    enum mpos_link_state link; /* the session's state when it was shown */
};

struct keystep {
    enum mpos_prompt at; /* fires while the display shows this prompt */
    enum mpos_key key;
    uint32_t delay_ms; /* the cardholder takes this long */
};

struct cardstep {
    enum mpos_prompt at;
    enum mpos_card_event ev;
    char card[32];
};

struct breq {
    mpos_sealed_request q;
    char pin[MPOS_PIN_BUF_LEN];
    int pin_ok;
    char rc[3];
    uint64_t at; /* the monotonic clock when it arrived */
};

enum be_mode { BE_NORMAL = 0, BE_DROP, BE_FORGE, BE_OTHER_SEQ, BE_OTHER_KSN, BE_GARBAGE };

struct inject {
    enum mpos_prompt at;
    mpos_link_msg cmd;
    int armed;
    int rc;
};

static struct rig {
    int tdes;
    uint64_t mono;
    /* display */
    struct shown shown[MAX_SHOWN];
    size_t nshown;
    enum mpos_prompt current;
    size_t refused;
    /* keypad */
    struct keystep keys[MAX_KEYS];
    size_t nkeys, keynext;
    uint32_t max_wait; /* longest keypad wait asked for */
    /* reader */
    struct cardstep steps[MAX_STEPS];
    size_t nsteps, stepnext;
    mpos_cardsim sim;
    mpos_cardsim_profile prof;
    int sim_ready, inserted;
    mpos_hal_tracks tracks;
    int have_tracks;
    /* storage */
    struct {
        char name[MPOS_HAL_SLOT_NAME_MAX + 1];
        uint8_t data[64];
        size_t len;
    } slots[4];
    size_t nslots;
    /* the key store double */
    mpos_dukpt_aes_terminal aes;
    mpos_dukpt_tdes_terminal tdes_t;
    uint32_t seq;
    int has_rev;
    mpos_keystore_reversal rev;
    /* back end */
    uint8_t bdk[32];
    size_t bdk_len;
    enum be_mode mode;
    int mode_count;
    int retry94; /* answer retries (DF35) with 94: the first still in flight */
    uint32_t last_counter;
    struct breq log[MAX_BREQ];
    size_t nlog;
    uint8_t resp[MPOS_SEALED_MAX_RESPONSE_LEN];
    size_t resp_len;
    int resp_ready;
    /* timeline */
    char tl[MAX_TL][16];
    size_t ntl;
    /* host */
    mpos_link_session session;
    mpos_link_decoder dec;
    mpos_link_msg evs[MAX_EVENTS];
    size_t nevs;
    struct inject inject[MAX_INJECT];
    /* the PIN scan */
    const char *scan_pin;
    int scans, pin_found;
    /* HAL */
    mpos_hal_card_reader reader;
    mpos_hal_keypad keypad;
    mpos_hal_display display;
    mpos_hal_storage storage;
    mpos_hal_rng rng;
    mpos_hal_clock clock;
    mpos_hal hal;
    mpos_emv_params params;
    mpos_txn_config cfg;
    mpos_txn_env env;
    mpos_txn txn;
} R;

static void tl_add(const char *fmt, unsigned v)
{
    if (R.ntl < MAX_TL) {
        snprintf(R.tl[R.ntl++], sizeof(R.tl[0]), fmt, v);
    }
}

/* Index of the first timeline entry equal to s at or after from, or -1. */
static int tl_find(const char *s, size_t from)
{
    for (size_t i = from; i < R.ntl; i++) {
        if (strcmp(R.tl[i], s) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static const char *cards_path(void)
{
    static char path[1024];
    const char *src = getenv("MPOS_SOURCE_DIR");
    FILE *f;
    snprintf(path, sizeof(path), "%s/../shared/testdata/cards.tsv", src != NULL ? src : ".");
    if ((f = fopen(path, "r")) != NULL) {
        fclose(f);
        return path;
    }
    snprintf(path, sizeof(path), "%s/tests/data/cards.tsv", src != NULL ? src : ".");
    return path;
}

/* ---- HAL: display, keypad, reader, storage, RNG, clock --------------------------------------- */

static int d_show(void *ctx, enum mpos_prompt prompt, const mpos_prompt_params *p)
{
    (void)ctx;
    if (!mpos_prompt_params_valid((unsigned)prompt, p)) {
        R.refused++;
        return MPOS_ERR_ARG;
    }
    if (R.nshown < MAX_SHOWN) {
        R.shown[R.nshown].prompt = prompt;
        R.shown[R.nshown].p = *p;
        R.shown[R.nshown].link = R.session.state;
        R.nshown++;
    }
    if (prompt != R.current) {
        tl_add("P%u", (unsigned)prompt);
    }
    R.current = prompt;
    return 0;
}

static int k_read(void *ctx, uint32_t timeout_ms, enum mpos_key *key)
{
    (void)ctx;
    if (timeout_ms > R.max_wait) {
        R.max_wait = timeout_ms;
    }
    if (R.keynext < R.nkeys && R.keys[R.keynext].at == R.current) {
        struct keystep *k = &R.keys[R.keynext];
        if (k->delay_ms > timeout_ms) {
            k->delay_ms -= timeout_ms;
            R.mono += timeout_ms;
            *key = MPOS_KEY_TIMEOUT;
            return 0;
        }
        R.mono += k->delay_ms + 1;
        *key = k->key;
        R.keynext++;
        return 0;
    }
    R.mono += timeout_ms;
    *key = MPOS_KEY_TIMEOUT;
    return 0;
}

static void load_card(const char *name)
{
    if (R.sim_ready) {
        mpos_cardsim_clear(&R.sim);
        R.sim_ready = 0;
    }
    assert_int_equal(mpos_cardsim_profile_load(cards_path(), name, &R.prof), MPOS_OK);
    assert_int_equal(mpos_cardsim_init(&R.sim, &R.prof, &cc), MPOS_OK);
    R.sim_ready = 1;
}

static void swipe_card(const char *name)
{
    char t2[64];
    const struct tc_card *all;
    assert_true(tc_load(&all) > 0);
    const struct tc_card *c = tc_find(name);
    assert_non_null(c);
    size_t n = tc_track2(c, "12345678", 1, 1, t2, sizeof(t2));
    assert_true(n > 0 && n <= MPOS_HAL_TRACK2_MAX);
    memset(&R.tracks, 0, sizeof(R.tracks));
    memcpy(R.tracks.track2, t2, n);
    R.tracks.track2_len = n;
    R.have_tracks = 1;
}

static int r_wait(void *ctx, uint32_t timeout_ms, enum mpos_card_event *ev)
{
    (void)ctx;
    if (R.stepnext < R.nsteps && R.steps[R.stepnext].at == R.current) {
        struct cardstep *s = &R.steps[R.stepnext++];
        R.mono += 200;
        if (s->ev == MPOS_CARD_EVENT_INSERTED) {
            load_card(s->card);
            R.inserted = 1;
        } else if (s->ev == MPOS_CARD_EVENT_SWIPED) {
            swipe_card(s->card);
        } else {
            R.inserted = 0;
        }
        *ev = s->ev;
        return 0;
    }
    if (R.inserted && R.current == MPOS_HAL_PROMPT_REMOVE_CARD) {
        R.inserted = 0;
        R.mono += 500;
        *ev = MPOS_CARD_EVENT_REMOVED;
        return 0;
    }
    R.mono += timeout_ms;
    return MPOS_HAL_TIMEOUT;
}

static int r_power_on(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    (void)ctx;
    if (!R.inserted || !R.sim_ready) {
        return MPOS_HAL_NO_CARD;
    }
    return mpos_cardsim_power_on(&R.sim, atr, atr_len) == 0 ? 0 : MPOS_HAL_CARD_MUTE;
}

static int r_power_off(void *ctx)
{
    (void)ctx;
    if (R.sim_ready) {
        mpos_cardsim_power_off(&R.sim);
    }
    return 0;
}

static int r_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                      uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    (void)ctx;
    if (!R.inserted) {
        return MPOS_HAL_CARD_REMOVED;
    }
    return mpos_cardsim_process(&R.sim, capdu, capdu_len, rapdu, MPOS_RAPDU_MAX, rapdu_len) == 0
               ? 0
               : MPOS_HAL_CARD_MUTE;
}

static int r_tracks(void *ctx, mpos_hal_tracks *t)
{
    (void)ctx;
    if (!R.have_tracks) {
        memset(t, 0, sizeof(*t));
        return MPOS_HAL_NO_CARD;
    }
    *t = R.tracks;
    memset(&R.tracks, 0, sizeof(R.tracks));
    R.have_tracks = 0;
    return 0;
}

static int s_find(const char *name)
{
    for (size_t i = 0; i < R.nslots; i++) {
        if (strcmp(R.slots[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int s_read(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
    (void)ctx;
    int i = s_find(name);
    if (!mpos_hal_slot_name_valid(name)) {
        return MPOS_ERR_ARG;
    }
    if (i < 0) {
        return MPOS_HAL_NOT_FOUND;
    }
    if (R.slots[i].len > cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(buf, R.slots[i].data, R.slots[i].len);
    *len = R.slots[i].len;
    return 0;
}

static int s_write(void *ctx, const char *name, const uint8_t *data, size_t len)
{
    (void)ctx;
    int i = s_find(name);
    if (!mpos_hal_slot_name_valid(name) || len == 0 || len > sizeof(R.slots[0].data)) {
        return MPOS_ERR_ARG;
    }
    if (i < 0) {
        assert_true(R.nslots < 4);
        i = (int)R.nslots++;
        snprintf(R.slots[i].name, sizeof(R.slots[i].name), "%s", name);
    }
    memcpy(R.slots[i].data, data, len);
    R.slots[i].len = len;
    tl_add("W%u", (unsigned)len);
    return 0;
}

static int g_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len) == MPOS_OK ? 0 : MPOS_ERR_RNG;
}

static int c_now(void *ctx, int64_t *s)
{
    (void)ctx;
    *s = T0_UNIX + (int64_t)(R.mono / 1000u);
    return 0;
}

static int c_mono(void *ctx, uint64_t *ms)
{
    (void)ctx;
    *ms = R.mono;
    return 0;
}

/* ---- the key store double -------------------------------------------------------------------- */

static int st_next(void *ctx, mpos_keystore_txn *k)
{
    (void)ctx;
    memset(k, 0, sizeof(*k));
    if (R.tdes) {
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&R.tdes_t, &cc, k->ksn), MPOS_OK);
        static const enum mpos_dukpt_tdes_usage u[5] = {
            MPOS_DUKPT_TDES_USAGE_PIN, MPOS_DUKPT_TDES_USAGE_MAC_REQ,
            MPOS_DUKPT_TDES_USAGE_MAC_RESP, MPOS_DUKPT_TDES_USAGE_DATA_REQ,
            MPOS_DUKPT_TDES_USAGE_DATA_RESP};
        uint8_t *dst[5] = {k->pin_key, k->mac_key[0], k->mac_key[1], k->data_key[0],
                           k->data_key[1]};
        for (int i = 0; i < 5; i++) {
            assert_int_equal(mpos_dukpt_tdes_terminal_working_key(&R.tdes_t, &cc, u[i], dst[i]),
                             MPOS_OK);
        }
        mpos_dukpt_tdes_terminal_done(&R.tdes_t);
        k->scheme = MPOS_KEYSTORE_DUKPT_TDES;
        k->cipher = MPOS_CIPHER_TDES;
        k->ksn_len = MPOS_DUKPT_TDES_KSN_LEN;
    } else {
        assert_int_equal(mpos_dukpt_aes_terminal_next(&R.aes, &cc, k->ksn), MPOS_OK);
        static const enum mpos_dukpt_aes_usage u[5] = {
            MPOS_DUKPT_AES_USAGE_PIN, MPOS_DUKPT_AES_USAGE_MAC_GEN, MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
            MPOS_DUKPT_AES_USAGE_DATA_ENC, MPOS_DUKPT_AES_USAGE_DATA_DEC};
        uint8_t *dst[5] = {k->pin_key, k->mac_key[0], k->mac_key[1], k->data_key[0],
                           k->data_key[1]};
        for (int i = 0; i < 5; i++) {
            assert_int_equal(mpos_dukpt_aes_terminal_working_key(&R.aes, &cc, u[i],
                                                                 MPOS_DUKPT_AES_KEY_AES128, dst[i]),
                             MPOS_OK);
        }
        mpos_dukpt_aes_terminal_done(&R.aes);
        k->scheme = MPOS_KEYSTORE_DUKPT_AES;
        k->cipher = MPOS_CIPHER_AES;
        k->ksn_len = MPOS_DUKPT_AES_KSN_LEN;
    }
    k->pin_key_len = k->mac_key_len = k->data_key_len = 16;
    k->sequence = ++R.seq;
    tl_add("K%u", R.seq);
    return 0;
}

static int st_activation(void *ctx, char mid[MPOS_KEYSTORE_MID_LEN + 1],
                         char tid[MPOS_KEYSTORE_TID_LEN + 1])
{
    (void)ctx;
    strcpy(mid, MID);
    strcpy(tid, TID);
    return 0;
}

static int st_rev_store(void *ctx, const mpos_keystore_reversal *r)
{
    (void)ctx;
    if (R.has_rev && R.rev.sequence != r->sequence) {
        return MPOS_ERR_STATE;
    }
    assert_true(r->masked_pan[0] == '\0' || mpos_prompt_pan_is_masked(r->masked_pan));
    R.rev = *r;
    R.has_rev = 1;
    tl_add("RS%u", r->reason);
    return 0;
}

static int st_rev_get(void *ctx, mpos_keystore_reversal *r)
{
    (void)ctx;
    memset(r, 0, sizeof(*r));
    if (!R.has_rev) {
        return MPOS_HAL_NOT_FOUND;
    }
    *r = R.rev;
    return 0;
}

static int st_rev_done(void *ctx, uint32_t sequence)
{
    (void)ctx;
    if (!R.has_rev || R.rev.sequence != sequence) {
        return MPOS_ERR_STATE;
    }
    R.has_rev = 0;
    memset(&R.rev, 0, sizeof(R.rev));
    tl_add("RD%u", sequence);
    return 0;
}

/* ---- the back end ---------------------------------------------------------------------------- */

static int hsm_keys(void *ctx, enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                    const uint8_t *ksn, size_t ksn_len, mpos_sealed_keys *keys)
{
    uint8_t mac[16], data[16];
    int rc;
    int req = dir == MPOS_SEALED_DIR_REQUEST;
    (void)ctx;
    if (scheme != (R.tdes ? MPOS_SEALED_TDES : MPOS_SEALED_AES128)) {
        return MPOS_ERR_KEY;
    }
    if (R.tdes) {
        if (ksn_len != MPOS_DUKPT_TDES_KSN_LEN) {
            return MPOS_ERR_KSN;
        }
        rc = mpos_dukpt_tdes_working_key(
            &cc, R.bdk, R.bdk_len, ksn,
            req ? MPOS_DUKPT_TDES_USAGE_MAC_REQ : MPOS_DUKPT_TDES_USAGE_MAC_RESP, mac);
        if (rc == MPOS_OK) {
            rc = mpos_dukpt_tdes_working_key(
                &cc, R.bdk, R.bdk_len, ksn,
                req ? MPOS_DUKPT_TDES_USAGE_DATA_REQ : MPOS_DUKPT_TDES_USAGE_DATA_RESP, data);
        }
    } else {
        if (ksn_len != MPOS_DUKPT_AES_KSN_LEN) {
            return MPOS_ERR_KSN;
        }
        rc = mpos_dukpt_aes_working_key(&cc, R.bdk, R.bdk_len, ksn,
                                        req ? MPOS_DUKPT_AES_USAGE_MAC_GEN
                                            : MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
                                        MPOS_DUKPT_AES_KEY_AES128, mac);
        if (rc == MPOS_OK) {
            rc = mpos_dukpt_aes_working_key(&cc, R.bdk, R.bdk_len, ksn,
                                            req ? MPOS_DUKPT_AES_USAGE_DATA_ENC
                                                : MPOS_DUKPT_AES_USAGE_DATA_DEC,
                                            MPOS_DUKPT_AES_KEY_AES128, data);
        }
    }
    if (rc == MPOS_OK) {
        rc = mpos_sealed_keys_set(keys, scheme, dir, ksn, ksn_len, mac, data, 16);
    }
    MPOS_WIPE_BUFFER(mac);
    MPOS_WIPE_BUFFER(data);
    return rc;
}

static uint32_t ksn_counter(const uint8_t *ksn, size_t len)
{
    if (len == MPOS_DUKPT_TDES_KSN_LEN) {
        return mpos_load_be32(ksn + 6) & MPOS_DUKPT_TDES_COUNTER_MASK;
    }
    return mpos_load_be32(ksn + 8);
}

static const uint8_t *f55(const mpos_sealed_request *q, uint32_t tag, size_t *vlen)
{
    mpos_tlv o;
    int found = 0;
    assert_int_equal(mpos_tlv_find(q->card.emv, q->card.emv_len, MPOS_TLV_STRICT, tag, &o, &found),
                     MPOS_OK);
    if (!found) {
        fail_msg("tag %X not in field 55", tag);
    }
    *vlen = o.len;
    return o.value;
}

static void take(const mpos_sealed_request *q, uint32_t tag, uint8_t *out, size_t n)
{
    size_t vl;
    const uint8_t *v = f55(q, tag, &vl);
    assert_int_equal(vl, n);
    memcpy(out, v, n);
}

/* The issuer: verifies the ARQC of the request's field 55 under the card's issuer master key
 * (EMV 4.3 Book 2 A1.4 / A1.3.1, from the request's PAN and the issuer's PSN) and writes the
 * Issuer Authentication Data for arc with the card's ARPC method (8.2.1 / 8.2.2). */
static size_t issuer_arpc(const mpos_sealed_request *q, const mpos_cardsim_profile *p,
                          const char *arc, uint8_t iad[16])
{
    uint8_t mk[16], sk[16], data[MPOS_EMV_AC_DATA_MAX_LEN], arqc[8], ipart[4];
    size_t dlen = 0, vl, n;
    struct mpos_emv_ac_fields f;
    memset(&f, 0, sizeof(f));
    take(q, 0x9F02, f.amount_authorised, 6);
    take(q, 0x9F03, f.amount_other, 6);
    take(q, 0x9F1A, f.terminal_country, 2);
    take(q, 0x95, f.tvr, 5);
    take(q, 0x5F2A, f.currency, 2);
    take(q, 0x9A, f.date, 3);
    take(q, 0x9C, &f.type, 1);
    take(q, 0x9F37, f.un, 4);
    take(q, 0x82, f.aip, 2);
    take(q, 0x9F36, f.atc, 2);
    take(q, 0x9F26, arqc, 8);
    const uint8_t *iad10 = f55(q, 0x9F10, &vl);
    assert_true(vl >= 7);
    memcpy(ipart, iad10 + 3, 4);
    f.iad_part = ipart;
    f.iad_part_len = 4;
    enum mpos_emv_mk_option opt =
        strlen(q->card.pan) > 16 ? MPOS_EMV_MK_OPTION_B : MPOS_EMV_MK_OPTION_A;
    assert_int_equal(mpos_emv_derive_icc_mk(&cc, opt, p->imk, 16, q->card.pan,
                                            p->psn[0] != '\0' ? p->psn : NULL, mk),
                     MPOS_OK);
    assert_int_equal(mpos_emv_derive_sk(&cc, MPOS_EMV_SK_COMMON, mk, 16, f.atc, sk), MPOS_OK);
    assert_int_equal(mpos_emv_ac_data_build(&f, data, sizeof(data), &dlen), MPOS_OK);
    assert_int_equal(mpos_emv_ac_verify(&cc, sk, 16, data, dlen, arqc), MPOS_OK);
    if (p->arpc_method == 2) {
        static const uint8_t csu[4] = {0x00, 0x00, 0x00, 0x00};
        assert_int_equal(mpos_emv_arpc2_generate(&cc, sk, 16, arqc, csu, NULL, 0, iad), MPOS_OK);
        memcpy(iad + 4, csu, 4);
        n = 8;
    } else {
        assert_int_equal(mpos_emv_arpc1_generate(&cc, sk, 16, arqc, (const uint8_t *)arc, iad),
                         MPOS_OK);
        memcpy(iad + 8, arc, 2);
        n = 10;
    }
    MPOS_WIPE_BUFFER(mk);
    MPOS_WIPE_BUFFER(sk);
    return n;
}

static const struct tc_card *card_by_pan(const char *pan)
{
    const struct tc_card *all;
    size_t n = tc_load(&all);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i].pan, pan) == 0) {
            return &all[i];
        }
    }
    fail_msg("no card with that PAN in cards.tsv");
    return NULL;
}

static void be_handle(const uint8_t *msg, size_t len)
{
    mpos_sealed_response resp;
    assert_true(R.nlog < MAX_BREQ);
    struct breq *b = &R.log[R.nlog++];
    memset(b, 0, sizeof(*b));
    b->at = R.mono;
    assert_int_equal(mpos_sealed_open_request(&cc, hsm_keys, NULL, msg, len, &b->q), MPOS_OK);
    /* B-REPLAY-1: each KSN counter above the last accepted one. */
    uint32_t counter = ksn_counter(b->q.ksn, b->q.ksn_len);
    assert_true(counter > R.last_counter);
    R.last_counter = counter;
    tl_add(b->q.msg_type == MPOS_SEALED_MSG_REVERSAL ? "REV%u" : "REQ%u", b->q.sequence);

    memset(&resp, 0, sizeof(resp));
    resp.scheme = b->q.scheme;
    memcpy(resp.ksn, b->q.ksn, b->q.ksn_len);
    resp.ksn_len = b->q.ksn_len;
    resp.sequence = b->q.sequence;
    if (b->q.msg_type == MPOS_SEALED_MSG_REVERSAL) {
        strcpy(resp.response_code, "00");
        strcpy(b->rc, "00");
    } else {
        const struct tc_card *c = card_by_pan(b->q.card.pan);
        mpos_cardsim_profile p;
        assert_int_equal(mpos_cardsim_profile_load(cards_path(), c->name, &p), MPOS_OK);
        if (b->q.has_pin) {
            /* The PIN, as the HSM would translate it: under the PIN key of this KSN. */
            uint8_t key[16];
            if (R.tdes) {
                assert_int_equal(b->q.pin_format, 0);
                assert_int_equal(mpos_dukpt_tdes_working_key(&cc, R.bdk, R.bdk_len, b->q.ksn,
                                                             MPOS_DUKPT_TDES_USAGE_PIN, key),
                                 MPOS_OK);
                assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES,
                                                        key, 16, b->q.pin_block, b->q.pin_block_len,
                                                        b->q.card.pan, b->pin),
                                 MPOS_OK);
            } else {
                assert_int_equal(b->q.pin_format, 4);
                assert_int_equal(mpos_dukpt_aes_working_key(&cc, R.bdk, R.bdk_len, b->q.ksn,
                                                            MPOS_DUKPT_AES_USAGE_PIN,
                                                            MPOS_DUKPT_AES_KEY_AES128, key),
                                 MPOS_OK);
                assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES,
                                                        key, 16, b->q.pin_block, b->q.pin_block_len,
                                                        b->q.card.pan, b->pin),
                                 MPOS_OK);
            }
            MPOS_WIPE_BUFFER(key);
            b->pin_ok = strcmp(b->pin, c->pin) == 0;
        }
        if (p.behaviour == MPOS_CARDSIM_INSUFFICIENT) {
            strcpy(b->rc, "51");
        } else if (p.behaviour == MPOS_CARDSIM_EXPIRED) {
            strcpy(b->rc, "54");
        } else if (b->q.has_pin && !b->pin_ok) {
            strcpy(b->rc, "55");
        } else {
            strcpy(b->rc, "00");
        }
        strcpy(resp.response_code, b->rc);
        strcpy(resp.arc, b->rc);
        strcpy(resp.rrn, "260315000001");
        if (strcmp(b->rc, "00") == 0) {
            strcpy(resp.auth_code, "A1B2C3");
        }
        if (b->q.entry_mode == MPOS_ENTRY_CHIP) {
            resp.iad_len = issuer_arpc(&b->q, &p, b->rc, resp.iad);
        }
        if (b->q.retry && R.retry94) {
            memset(&resp.auth_code, 0, sizeof(resp.auth_code));
            memset(&resp.arc, 0, sizeof(resp.arc));
            resp.iad_len = 0;
            strcpy(resp.response_code, "94");
            strcpy(b->rc, "94");
        }
    }
    enum be_mode mode = BE_NORMAL;
    if (b->q.msg_type == MPOS_SEALED_MSG_REQUEST && R.mode_count > 0) {
        R.mode_count--;
        mode = R.mode;
    }
    R.resp_ready = 1;
    switch (mode) {
    case BE_DROP:
        R.resp_ready = 0;
        return;
    case BE_GARBAGE:
        assert_int_equal(mpos_random_bytes(R.resp, 64), MPOS_OK);
        R.resp_len = 64;
        return;
    case BE_OTHER_SEQ:
        resp.sequence++; /* a genuine response, to another request */
        break;
    case BE_OTHER_KSN:
        mpos_store_be32(resp.ksn + resp.ksn_len - 4,
                        mpos_load_be32(resp.ksn + resp.ksn_len - 4) + 1);
        break;
    default:
        break;
    }
    assert_int_equal(mpos_sealed_seal_response(&cc, hsm_keys, NULL, &resp, NULL, NULL, R.resp,
                                               sizeof(R.resp), &R.resp_len),
                     MPOS_OK);
    if (mode == BE_FORGE) {
        R.resp[R.resp_len - 1] ^= 0x01; /* the last MAC byte */
    }
}

/* 1 if needle occurs in the len bytes at hay. */
static int contains(const void *hay, size_t len, const void *needle, size_t nlen)
{
    const uint8_t *h = hay;
    for (size_t i = 0; i + nlen <= len; i++) {
        if (memcmp(h + i, needle, nlen) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The PIN anywhere in the context: as digits, or as the packed PIN field of ISO 9564-1
 * formats 0 (0L then the digits) and 4 (4L then the digits). */
static int pin_in_context(const char *pin)
{
    size_t n = strlen(pin);
    uint8_t f0[8], f4[8];
    f0[0] = (uint8_t)n;
    f4[0] = (uint8_t)(0x40u | n);
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint8_t b = (uint8_t)(((pin[i] - '0') << 4) | (pin[i + 1] - '0'));
        f0[1 + i / 2] = b;
        f4[1 + i / 2] = b;
    }
    size_t fl = 1 + n / 2;
    return contains(&R.txn, sizeof(R.txn), pin, n) || contains(&R.txn, sizeof(R.txn), f0, fl) ||
           contains(&R.txn, sizeof(R.txn), f4, fl);
}

static int n_send(void *ctx, const uint8_t *msg, size_t len)
{
    (void)ctx;
    if (R.scan_pin != NULL) {
        /* The block is built and the request sealed: no trace of the PIN may be left. */
        R.scans++;
        R.pin_found |= pin_in_context(R.scan_pin);
    }
    tl_add("TX%u", (unsigned)len);
    be_handle(msg, len);
    return 0;
}

static void h_poll(void *ctx);

/* As the port's would, the wait for the response keeps reading the host link. */
static int n_recv(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    (void)ctx;
    *len = 0;
    h_poll(NULL);
    if (!R.resp_ready) {
        R.mono += timeout_ms;
        return MPOS_HAL_TIMEOUT;
    }
    assert_true(R.resp_len <= cap);
    memcpy(buf, R.resp, R.resp_len);
    *len = R.resp_len;
    R.resp_ready = 0;
    return 0;
}

/* ---- the host -------------------------------------------------------------------------------- */

static int h_write(void *ctx, const uint8_t *frame, size_t len)
{
    (void)ctx;
    while (len > 0) {
        size_t used = 0;
        mpos_link_frame f;
        int r = mpos_link_decoder_feed(&R.dec, frame, len, &used, &f);
        assert_true(r >= 0);
        frame += used;
        len -= used;
        if (r == 1) {
            assert_true(R.nevs < MAX_EVENTS);
            assert_int_equal(mpos_link_decode(&f, &R.evs[R.nevs]), MPOS_OK);
            R.nevs++;
        }
    }
    return 0;
}

static void h_poll(void *ctx)
{
    (void)ctx;
    for (int i = 0; i < MAX_INJECT; i++) {
        struct inject *in = &R.inject[i];
        if (in->armed && in->at == R.current) {
            in->armed = 0;
            in->rc = mpos_txn_command(&R.txn, &in->cmd);
            tl_add("CMD%u", (unsigned)in->rc);
            return;
        }
    }
}

static void inject_at(int i, enum mpos_prompt at, uint8_t type)
{
    memset(&R.inject[i], 0, sizeof(R.inject[i]));
    R.inject[i].at = at;
    R.inject[i].cmd.type = type;
    R.inject[i].armed = 1;
    R.inject[i].rc = -100;
}

/* ---- rig ------------------------------------------------------------------------------------- */

static void rig_setup(int tdes)
{
    if (R.sim_ready) {
        mpos_cardsim_clear(&R.sim);
    }
    memset(&R, 0, sizeof(R));
    R.tdes = tdes;
    if (tdes) {
        uint8_t ksn[10], ipek[16];
        R.bdk_len = tu_hex(TDES_BDK, R.bdk, sizeof(R.bdk));
        tu_hex(TDES_KSN, ksn, sizeof(ksn));
        assert_int_equal(mpos_dukpt_tdes_ipek(&cc, R.bdk, R.bdk_len, ksn, ipek), MPOS_OK);
        assert_int_equal(mpos_dukpt_tdes_terminal_load(&R.tdes_t, &cc, ipek, ksn), MPOS_OK);
        MPOS_WIPE_BUFFER(ipek);
    } else {
        uint8_t ikid[8], ik[16];
        R.bdk_len = tu_hex(AES_BDK128, R.bdk, sizeof(R.bdk));
        tu_hex(AES_IKID, ikid, sizeof(ikid));
        assert_int_equal(mpos_dukpt_aes_initial_key(&cc, R.bdk, R.bdk_len, ikid, ik), MPOS_OK);
        assert_int_equal(mpos_dukpt_aes_terminal_load(&R.aes, &cc, ik, 16, ikid), MPOS_OK);
        MPOS_WIPE_BUFFER(ik);
    }
    R.mono = 1000000;
    R.reader.wait_event = r_wait;
    R.reader.power_on = r_power_on;
    R.reader.power_off = r_power_off;
    R.reader.exchange = r_exchange;
    R.reader.read_tracks = r_tracks;
    R.keypad.read_key = k_read;
    R.display.show = d_show;
    R.storage.read = s_read;
    R.storage.write = s_write;
    R.rng.random = g_random;
    R.clock.now = c_now;
    R.clock.monotonic_ms = c_mono;
    R.hal.reader = &R.reader;
    R.hal.keypad = &R.keypad;
    R.hal.display = &R.display;
    R.hal.storage = &R.storage;
    R.hal.rng = &R.rng;
    R.hal.clock = &R.clock;

    mpos_emv_params_default(&R.params);
    mpos_emv_capk *ca = &R.params.capks[0];
    static const uint8_t rid[5] = {0xA0, 0x00, 0x00, 0x03, 0x33};
    memcpy(ca->rid, rid, 5);
    assert_int_equal(mpos_cardsim_ca_key(&ca->index, ca->modulus, sizeof(ca->modulus),
                                         &ca->modulus_len, ca->exponent, sizeof(ca->exponent),
                                         &ca->exponent_len),
                     MPOS_OK);
    R.params.capk_count = 1;
    memcpy(R.params.terminal_id, "T0000001", 9);
    memcpy(R.params.merchant_id, "000000000000000", 16);
    memcpy(R.params.ifd_serial, "SN000001", 9);
    R.params.mcc[0] = 0x53;
    R.params.mcc[1] = 0x11;

    assert_int_equal(mpos_link_session_init(&R.session, MPOS_LINK_STATE_IDLE), MPOS_OK);
    mpos_link_decoder_init(&R.dec);
    R.cfg.emv = &R.params;
    R.cfg.pin.rate_max = MPOS_PIN_ENTRY_RATE_CAP;
    R.env.hal = &R.hal;
    R.env.cc = &cc;
    R.env.store.next_transaction = st_next;
    R.env.store.activation = st_activation;
    R.env.store.reversal_store = st_rev_store;
    R.env.store.reversal_get = st_rev_get;
    R.env.store.reversal_done = st_rev_done;
    R.env.net.send = n_send;
    R.env.net.recv = n_recv;
    R.env.host.session = &R.session;
    R.env.host.write = h_write;
    R.env.host.poll = h_poll;
    /* The tests of a lost response expect today's single send; test_retry_* turn it on. */
    R.cfg.retries = MPOS_TXN_NO_RETRY;
    R.retry94 = 0;
    assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
}

/* A new script: the recordings are emptied, the store and the back end go on. */
static void script_reset(void)
{
    R.nkeys = R.keynext = 0;
    R.nsteps = R.stepnext = 0;
    R.nshown = 0;
    R.current = 0;
    R.nevs = 0;
    R.ntl = 0;
    memset(R.inject, 0, sizeof(R.inject));
    R.mono += 61000; /* a minute between transactions */
}

static void key_add(enum mpos_prompt at, enum mpos_key key, uint32_t delay)
{
    assert_true(R.nkeys < MAX_KEYS);
    R.keys[R.nkeys].at = at;
    R.keys[R.nkeys].key = key;
    R.keys[R.nkeys].delay_ms = delay;
    R.nkeys++;
}

static void pin_add(const char *pin)
{
    for (const char *p = pin; *p != '\0'; p++) {
        key_add(MPOS_HAL_PROMPT_ENTER_PIN, (enum mpos_key)(MPOS_KEY_0 + (*p - '0')), 300);
    }
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_OK, 300);
}

static void card_add(enum mpos_prompt at, enum mpos_card_event ev, const char *name)
{
    assert_true(R.nsteps < MAX_STEPS);
    R.steps[R.nsteps].at = at;
    R.steps[R.nsteps].ev = ev;
    snprintf(R.steps[R.nsteps].card, sizeof(R.steps[0].card), "%s", name);
    R.nsteps++;
}

static int start(uint8_t type, uint64_t amount, uint16_t currency, const char *ref)
{
    mpos_link_msg m;
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_CMD_START_TXN;
    m.u.start.txn_type = type;
    m.u.start.amount = amount;
    m.u.start.currency = currency;
    snprintf(m.u.start.original_ref, sizeof(m.u.start.original_ref), "%s", ref);
    return mpos_txn_command(&R.txn, &m);
}

/* The usual chip sale: confirm, insert the card, enter the PIN (NULL: none scripted). */
static void chip_sale(const char *card, const char *pin, uint64_t amount)
{
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 1500);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, card);
    if (pin != NULL) {
        pin_add(pin);
    }
    assert_int_equal(start(MPOS_LINK_TXN_SALE, amount, 156, ""), 0);
}

static mpos_txn_result run(void)
{
    mpos_txn_result r;
    assert_int_equal(mpos_txn_run(&R.txn, &r), MPOS_OK);
    assert_int_equal(R.refused, 0);
    assert_int_equal(mpos_txn_get_state(&R.txn), MPOS_TXN_IDLE);
    assert_int_equal(R.session.state, MPOS_LINK_STATE_IDLE);
    return r;
}

/* The prompts shown, consecutive repeats (PIN digit echo) folded. */
static size_t prompts(enum mpos_prompt *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < R.nshown; i++) {
        if (n == 0 || out[n - 1] != R.shown[i].prompt) {
            assert_true(n < cap);
            out[n++] = R.shown[i].prompt;
        }
    }
    return n;
}

static void expect_prompts(const enum mpos_prompt *want, size_t n)
{
    enum mpos_prompt got[64];
    size_t m = prompts(got, 64);
    for (size_t i = 0; i < m && i < n; i++) {
        if (got[i] != want[i]) {
            fail_msg("prompt %zu: got %d, want %d", i, got[i], want[i]);
        }
    }
    assert_int_equal(m, n);
}

static const struct shown *first_shown(enum mpos_prompt p)
{
    for (size_t i = 0; i < R.nshown; i++) {
        if (R.shown[i].prompt == p) {
            return &R.shown[i];
        }
    }
    return NULL;
}

/* The events: every prompt once (PIN echo excluded), then RESULT right after the result
 * prompt; returns the RESULT. */
static const mpos_link_msg *check_events(void)
{
    enum mpos_prompt want[64];
    size_t n = prompts(want, 64), k = 0;
    const mpos_link_msg *result = NULL;
    for (size_t i = 0; i < R.nevs; i++) {
        const mpos_link_msg *e = &R.evs[i];
        if (e->type == MPOS_LINK_EVT_PROMPT_SHOWN) {
            assert_true(k < n);
            assert_int_equal(e->u.prompt.prompt, want[k]);
            k++;
        } else {
            assert_int_equal(e->type, MPOS_LINK_EVT_RESULT);
            assert_null(result);
            result = e;
            /* after the result prompt (APPROVED .. NO_RESPONSE), before REMOVE_CARD */
            assert_true(k > 0);
            assert_true(want[k - 1] >= MPOS_HAL_PROMPT_APPROVED &&
                        want[k - 1] != MPOS_HAL_PROMPT_REMOVE_CARD);
        }
    }
    assert_int_equal(k, n);
    assert_non_null(result);
    if (result->u.result.masked_pan[0] != '\0') {
        assert_true(mpos_msr_pan_is_masked(result->u.result.masked_pan,
                                           strlen(result->u.result.masked_pan)));
    }
    return result;
}

static void masked(const char *card, char out[MPOS_MSR_PAN_BUF_LEN])
{
    const struct tc_card *all;
    assert_true(tc_load(&all) > 0);
    const struct tc_card *c = tc_find(card);
    assert_non_null(c);
    assert_int_equal(mpos_msr_mask_pan(c->pan, out), MPOS_OK);
}

static int setup(void **state)
{
    (void)state;
    return mpos_crypto_init(&cc) == MPOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_txn_clear(&R.txn);
    if (R.sim_ready) {
        mpos_cardsim_clear(&R.sim);
        R.sim_ready = 0;
    }
    mpos_crypto_clear(&cc);
    return 0;
}

#define NEED_CARDS()                                                                               \
    do {                                                                                           \
        const struct tc_card *all_;                                                                \
        if (tc_load(&all_) == 0) {                                                                 \
            print_message("cards.tsv not found: skipped\n");                                       \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- tests: the transactions ----------------------------------------------------------------- */

static void test_sale_approved(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    chip_sale("approve", "1234", 12345);
    mpos_txn_result r = run();
    char mp[MPOS_MSR_PAN_BUF_LEN];
    masked("approve", mp);

    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(r.reason, MPOS_TXN_R_APPROVED);
    assert_int_equal(r.entry_mode, MPOS_ENTRY_CHIP);
    assert_int_equal(r.fallback, 0);
    assert_true(r.pin_entered);
    assert_int_equal(r.sequence, 1);
    assert_string_equal(r.response_code, "00");
    assert_string_equal(r.auth_code, "A1B2C3");
    assert_string_equal(r.masked_pan, mp);
    assert_int_equal(r.reversal_pending, 0);

    /* What went out. */
    assert_int_equal(R.nlog, 1);
    const mpos_sealed_request *q = &R.log[0].q;
    assert_int_equal(q->msg_type, MPOS_SEALED_MSG_REQUEST);
    assert_int_equal(q->sequence, 1);
    assert_int_equal(q->txn_type, MPOS_LINK_TXN_SALE);
    assert_int_equal(q->amount, 12345);
    assert_int_equal(q->currency, 156);
    assert_string_equal(q->merchant_id, MID);
    assert_string_equal(q->terminal_id, TID);
    assert_int_equal(strncmp(q->datetime, "2026031510", 10), 0);
    assert_int_equal(q->entry_mode, MPOS_ENTRY_CHIP);
    assert_int_equal(q->fallback, 0);
    assert_string_equal(q->masked_pan, mp);
    assert_true(q->card.emv_len > 0);
    assert_true(q->has_pin);
    assert_true(R.log[0].pin_ok);
    assert_int_equal(q->has_location, 0);

    /* What was shown, in which state, and what the host learnt. */
    static const enum mpos_prompt want[] = {
        MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_HAL_PROMPT_INSERT_CARD, MPOS_HAL_PROMPT_ENTER_PIN,
        MPOS_HAL_PROMPT_PROCESSING,     MPOS_HAL_PROMPT_APPROVED,    MPOS_HAL_PROMPT_REMOVE_CARD};
    expect_prompts(want, sizeof(want) / sizeof(want[0]));
    assert_int_equal(first_shown(MPOS_HAL_PROMPT_CONFIRM_AMOUNT)->link,
                     MPOS_LINK_STATE_AWAIT_CONFIRM);
    assert_int_equal(first_shown(MPOS_HAL_PROMPT_INSERT_CARD)->link, MPOS_LINK_STATE_AWAIT_CARD);
    assert_int_equal(first_shown(MPOS_HAL_PROMPT_ENTER_PIN)->link, MPOS_LINK_STATE_AWAIT_PIN);
    assert_int_equal(first_shown(MPOS_HAL_PROMPT_PROCESSING)->link, MPOS_LINK_STATE_ONLINE);
    assert_int_equal(first_shown(MPOS_HAL_PROMPT_APPROVED)->link, MPOS_LINK_STATE_SHOW_RESULT);
    const struct shown *ap = first_shown(MPOS_HAL_PROMPT_APPROVED);
    assert_int_equal(ap->p.amount, 12345);
    assert_string_equal(ap->p.masked_pan, mp);
    /* The PIN echo: counts 0..4, never a digit. */
    size_t counts = 0;
    for (size_t i = 0; i < R.nshown; i++) {
        if (R.shown[i].prompt == MPOS_HAL_PROMPT_ENTER_PIN) {
            assert_int_equal(R.shown[i].p.count, counts);
            counts++;
        }
    }
    assert_int_equal(counts, 5);
    const mpos_link_msg *res = check_events();
    assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(res->u.result.txn_seq, 1);
    assert_string_equal(res->u.result.masked_pan, mp);
    assert_string_equal(res->u.result.auth_code, "A1B2C3");

    /* The reversal record: persisted before the request left, removed after. */
    assert_int_equal(R.has_rev, 0);
    int rs = tl_find("RS3", 0), tx = -1, rd = tl_find("RD1", 0);
    for (size_t i = 0; i < R.ntl; i++) {
        if (strncmp(R.tl[i], "TX", 2) == 0) {
            tx = (int)i;
            break;
        }
    }
    assert_true(rs >= 0 && tx > rs && rd > tx);
}

static void test_declined_51(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    chip_sale("insufficient", "4321", 500000);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_DECLINED);
    assert_int_equal(r.reason, MPOS_TXN_R_ISSUER_DECLINED);
    assert_string_equal(r.response_code, "51");
    assert_string_equal(r.auth_code, "");
    assert_int_equal(r.reversal_pending, 0);
    assert_int_equal(R.has_rev, 0);
    assert_true(R.log[0].pin_ok);
    const struct shown *d = first_shown(MPOS_HAL_PROMPT_DECLINED);
    assert_non_null(d);
    assert_string_equal(d->p.result, "51");
    const mpos_link_msg *res = check_events();
    assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_DECLINED);
    assert_string_equal(res->u.result.response_code, "51");

    /* An expired card goes online flagged (TVR) and the issuer declines it. */
    chip_sale("expired", "7777", 1200);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_DECLINED);
    assert_string_equal(r.response_code, "54");
    assert_int_equal(R.has_rev, 0);
}

static void test_wrong_pin_then_right(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    chip_sale("wrong-pin", "1111", 2000);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_DECLINED);
    assert_string_equal(r.response_code, "55");
    assert_false(R.log[0].pin_ok);
    assert_string_equal(R.log[0].pin, "1111");
    /* A new transaction: a new sequence number and KSN, the right PIN. */
    chip_sale("wrong-pin", "2468", 2000);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(r.sequence, 2);
    assert_int_equal(R.nlog, 2);
    assert_true(R.log[1].pin_ok);
    assert_memory_not_equal(R.log[0].q.ksn, R.log[1].q.ksn, R.log[0].q.ksn_len);
    assert_int_equal(R.has_rev, 0);
}

static void test_card_declines_after_approval(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    chip_sale("card-declines", "1357", 8800);
    mpos_txn_result r = run();
    char mp[MPOS_MSR_PAN_BUF_LEN];
    masked("card-declines", mp);
    assert_int_equal(R.log[0].rc[0], '0'); /* the issuer approved */
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_DECLINED);
    assert_int_equal(r.reason, MPOS_TXN_R_CARD_DECLINED_AFTER_APPROVAL);
    assert_string_equal(r.response_code, "");
    assert_string_equal(r.auth_code, "");
    assert_true(r.reversal_pending);
    /* Recorded, with the reason, before the result was shown. */
    assert_true(R.has_rev);
    assert_int_equal(R.rev.sequence, 1);
    assert_int_equal(R.rev.reason, MPOS_REVERSAL_CARD_DECLINED);
    assert_int_equal(R.rev.amount, 8800);
    assert_string_equal(R.rev.masked_pan, mp);
    assert_memory_equal(R.rev.ksn, R.log[0].q.ksn, R.rev.ksn_len);
    int rs = tl_find("RS2", 0), shown = tl_find("P13", 0);
    assert_true(rs >= 0 && shown > rs);
    const mpos_link_msg *res = check_events();
    assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_DECLINED);

    /* The next transaction: the reversal goes first, under a new KSN, with the reversed
     * transaction's sequence number; then the new request. */
    chip_sale("approve", "1234", 100);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.nlog, 3);
    const mpos_sealed_request *rev = &R.log[1].q;
    assert_int_equal(rev->msg_type, MPOS_SEALED_MSG_REVERSAL);
    assert_int_equal(rev->sequence, 1);
    assert_int_equal(rev->reversal_reason, MPOS_SEALED_REV_CARD_DECLINED); /* the record's */
    assert_int_equal(rev->amount, 8800);
    assert_int_equal(rev->txn_type, MPOS_LINK_TXN_SALE);
    assert_int_equal(rev->entry_mode, MPOS_ENTRY_NONE);
    assert_memory_not_equal(rev->ksn, R.log[0].q.ksn, rev->ksn_len);
    assert_int_equal(R.log[2].q.msg_type, MPOS_SEALED_MSG_REQUEST);
    assert_int_equal(R.log[2].q.sequence, r.sequence);
    assert_true(r.sequence > 1);
    int rev_at = tl_find("REV1", 0), done = tl_find("RD1", 0), confirm = tl_find("P5", 0);
    char req[16];
    snprintf(req, sizeof(req), "REQ%u", r.sequence);
    assert_true(confirm >= 0 && rev_at > confirm && done > rev_at && tl_find(req, 0) > done);
    assert_int_equal(R.has_rev, 0);
}

static void test_chip_broken_fallback(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, "chip-broken");
    card_add(MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE, MPOS_CARD_EVENT_REMOVED, "");
    card_add(MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE, MPOS_CARD_EVENT_SWIPED, "chip-broken");
    pin_add("8642");
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 4200, 156, ""), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(r.entry_mode, MPOS_ENTRY_MAGSTRIPE);
    assert_int_equal(r.fallback, 1);
    const mpos_sealed_request *q = &R.log[0].q;
    assert_int_equal(q->entry_mode, MPOS_ENTRY_MAGSTRIPE);
    assert_int_equal(q->fallback, 1);
    assert_true(q->card.track2_len > 0);
    assert_int_equal(q->card.emv_len, 0);
    assert_true(R.log[0].pin_ok);
    static const enum mpos_prompt want[] = {
        MPOS_HAL_PROMPT_CONFIRM_AMOUNT,   MPOS_HAL_PROMPT_INSERT_CARD,
        MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE, MPOS_HAL_PROMPT_ENTER_PIN,
        MPOS_HAL_PROMPT_PROCESSING,       MPOS_HAL_PROMPT_APPROVED};
    expect_prompts(want, sizeof(want) / sizeof(want[0]));
    check_events();
}

static void test_swipe_chip_card_refused(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    /* Swiped without a chip failure: USE_CHIP, nothing sent; the cardholder gives up. */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_SWIPED, "approve");
    key_add(MPOS_HAL_PROMPT_USE_CHIP, MPOS_KEY_CANCEL, 0);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 990, 156, ""), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(r.reason, MPOS_TXN_R_CARD_CANCELLED);
    assert_int_equal(R.nlog, 0);
    assert_non_null(first_shown(MPOS_HAL_PROMPT_USE_CHIP));
    assert_null(first_shown(MPOS_HAL_PROMPT_ENTER_PIN));
    check_events();

    /* Swiped, then inserted: the chip reads it (no fallback flag). */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_SWIPED, "approve");
    card_add(MPOS_HAL_PROMPT_USE_CHIP, MPOS_CARD_EVENT_INSERTED, "approve");
    pin_add("1234");
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 990, 156, ""), 0);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.nlog, 1);
    assert_int_equal(R.log[0].q.entry_mode, MPOS_ENTRY_CHIP);
    assert_int_equal(R.log[0].q.fallback, 0);
}

static void test_stripe_only_card(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_SWIPED, "stripe-only");
    pin_add("1111");
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 150, 156, ""), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.log[0].q.entry_mode, MPOS_ENTRY_MAGSTRIPE);
    assert_int_equal(R.log[0].q.fallback, 0); /* service code 101: no chip, no fallback */
    assert_true(R.log[0].pin_ok);
}

static void test_cancel_at_confirmation(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    /* The cancel key. */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_CANCEL, 0);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 777, 156, ""), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(r.reason, MPOS_TXN_R_CONFIRM_CANCELLED);
    assert_int_equal(r.sequence, 0);
    assert_int_equal(R.seq, 0); /* no key was taken */
    static const enum mpos_prompt want[] = {MPOS_HAL_PROMPT_CONFIRM_AMOUNT,
                                            MPOS_HAL_PROMPT_CANCELLED};
    expect_prompts(want, 2);
    const mpos_link_msg *res = check_events();
    assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(res->u.result.amount, 777);

    /* Nobody answers. */
    script_reset();
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 777, 156, ""), 0);
    uint64_t t0 = R.mono;
    r = run();
    assert_int_equal(r.reason, MPOS_TXN_R_CONFIRM_TIMEOUT);
    assert_true(R.mono - t0 >= MPOS_TXN_CONFIRM_TIMEOUT_MS);

    /* The host cancels. */
    script_reset();
    inject_at(0, MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_LINK_CMD_CANCEL);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 777, 156, ""), 0);
    r = run();
    assert_int_equal(R.inject[0].rc, 0);
    assert_int_equal(r.reason, MPOS_TXN_R_HOST_CANCELLED);
    assert_int_equal(R.nlog, 0);
    assert_int_equal(R.seq, 0);
}

static void test_pin_timeout(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    /* No key at all: the inter-key timeout. */
    chip_sale("approve", NULL, 1000);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(r.reason, MPOS_TXN_R_PIN_TIMEOUT);
    assert_int_equal(R.nlog, 0);
    assert_int_equal(R.has_rev, 0);
    static const enum mpos_prompt want[] = {MPOS_HAL_PROMPT_CONFIRM_AMOUNT,
                                            MPOS_HAL_PROMPT_INSERT_CARD, MPOS_HAL_PROMPT_ENTER_PIN,
                                            MPOS_HAL_PROMPT_CANCELLED, MPOS_HAL_PROMPT_REMOVE_CARD};
    expect_prompts(want, sizeof(want) / sizeof(want[0]));
    check_events();

    /* A slow cardholder: every key within the inter-key timeout, the whole beyond the
     * overall one. */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, "approve");
    for (int i = 1; i <= 4; i++) {
        key_add(MPOS_HAL_PROMPT_ENTER_PIN, (enum mpos_key)i, 14000);
    }
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_OK, 14000);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 1000, 156, ""), 0);
    r = run();
    assert_int_equal(r.reason, MPOS_TXN_R_PIN_TIMEOUT);
    assert_int_equal(R.nlog, 0);
}

static void check_no_response(enum be_mode mode, enum mpos_txn_reason reason)
{
    rig_setup(0);
    R.mode = mode;
    R.mode_count = 1;
    chip_sale("approve", "1234", 3100);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_NO_RESPONSE);
    assert_int_equal(r.reason, reason);
    assert_true(r.reversal_pending);
    assert_string_equal(r.response_code, "");
    assert_true(R.has_rev);
    assert_int_equal(R.rev.sequence, 1);
    assert_int_equal(R.rev.reason, MPOS_REVERSAL_NO_RESPONSE);
    assert_true(tl_find("RS1", 0) >= 0 && tl_find("RS1", 0) < tl_find("P17", 0));
    assert_non_null(first_shown(MPOS_HAL_PROMPT_NO_RESPONSE));
    assert_null(first_shown(MPOS_HAL_PROMPT_APPROVED));
    const mpos_link_msg *res = check_events();
    assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_NO_RESPONSE);
    /* Sent before the next transaction. */
    chip_sale("approve", "1234", 3200);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.nlog, 3);
    assert_int_equal(R.log[1].q.msg_type, MPOS_SEALED_MSG_REVERSAL);
    assert_int_equal(R.log[1].q.sequence, 1);
    assert_int_equal(R.log[1].q.reversal_reason, MPOS_SEALED_REV_NO_RESPONSE);
    assert_int_equal(R.log[1].q.amount, 3100);
    assert_int_equal(R.has_rev, 0);
}

static void test_forged_response(void **state)
{
    (void)state;
    NEED_CARDS();
    check_no_response(BE_FORGE, MPOS_TXN_R_BAD_RESPONSE);
}

static void test_mismatched_response(void **state)
{
    (void)state;
    NEED_CARDS();
    check_no_response(BE_OTHER_SEQ, MPOS_TXN_R_BAD_RESPONSE);
    check_no_response(BE_OTHER_KSN, MPOS_TXN_R_BAD_RESPONSE);
    check_no_response(BE_GARBAGE, MPOS_TXN_R_BAD_RESPONSE);
}

static void test_no_response(void **state)
{
    (void)state;
    NEED_CARDS();
    check_no_response(BE_DROP, MPOS_TXN_R_NO_RESPONSE);
}

/* docs/protocol.md 2.8: the response to a chip sale is lost; after the online timeout and the
 * retry delay the same transaction goes again under a new KSN with the same sequence number,
 * the same clear fields and EMV data, the retry flag and no PIN block; the back end's answer
 * to it (bound to the new KSN) completes the chip and the sale, and the reversal record goes.
 * The key store's sequence number the retry took is skipped. */
static void test_retry_lost_response(void **state)
{
    (void)state;
    NEED_CARDS();
    for (int tdes = 0; tdes <= 1; tdes++) {
        rig_setup(tdes);
        R.cfg.retries = 0; /* the default: one retry */
        R.cfg.retry_delay_ms = 0;
        R.cfg.online_timeout_ms = 3000;
        assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
        R.mode = BE_DROP;
        R.mode_count = 1;
        chip_sale("approve", "1234", 3100);
        mpos_txn_result r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
        assert_int_equal(r.reason, MPOS_TXN_R_APPROVED);
        assert_string_equal(r.response_code, "00");
        assert_string_equal(r.auth_code, "A1B2C3");
        assert_int_equal(r.sequence, 1);
        assert_false(r.reversal_pending);
        assert_false(R.has_rev);
        assert_non_null(first_shown(MPOS_HAL_PROMPT_APPROVED));
        assert_null(first_shown(MPOS_HAL_PROMPT_NO_RESPONSE));
        assert_int_equal(R.nlog, 2);
        const mpos_sealed_request *a = &R.log[0].q, *b = &R.log[1].q;
        assert_int_equal(a->retry, 0);
        assert_int_equal(a->has_pin, 1);
        assert_true(R.log[0].pin_ok);
        assert_int_equal(b->msg_type, MPOS_SEALED_MSG_REQUEST);
        assert_int_equal(b->retry, 1);
        assert_int_equal(b->has_pin, 0);
        assert_int_equal(b->sequence, a->sequence);
        assert_int_equal(b->ksn_len, a->ksn_len);
        assert_memory_not_equal(b->ksn, a->ksn, a->ksn_len); /* be_handle: counter above */
        assert_int_equal(b->amount, a->amount);
        assert_int_equal(b->txn_type, a->txn_type);
        assert_string_equal(b->datetime, a->datetime);
        assert_string_equal(b->masked_pan, a->masked_pan);
        assert_int_equal(b->card.emv_len, a->card.emv_len);
        assert_memory_equal(b->card.emv, a->card.emv, a->card.emv_len); /* the same ARQC */
        /* After the online timeout, then the default delay. */
        assert_true(R.log[1].at - R.log[0].at >= 3000 + MPOS_TXN_RETRY_DELAY_MS);
        assert_true(R.log[1].at - R.log[0].at < 3000 + MPOS_TXN_RETRY_DELAY_MS + 1000);
        const mpos_link_msg *res = check_events();
        assert_int_equal(res->u.result.outcome, MPOS_LINK_OUTCOME_APPROVED);
        /* The next transaction: no reversal first; sequence 2 went to the retry's key. */
        chip_sale("approve", "1234", 3200);
        r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
        assert_int_equal(R.nlog, 3);
        assert_int_equal(R.log[2].q.msg_type, MPOS_SEALED_MSG_REQUEST);
        assert_int_equal(R.log[2].q.retry, 0);
        assert_int_equal(R.log[2].q.sequence, 3);
    }
}

/* The retry's answer is 94 (the first still in flight at the back end), or the retry gets no
 * answer either: no valid response, the card gets no ARC, the record says "no response" and
 * the reversal goes before the next transaction. A configured delay is honoured. */
static void test_retry_in_flight_or_lost(void **state)
{
    (void)state;
    NEED_CARDS();
    for (int k = 0; k < 2; k++) {
        rig_setup(0);
        R.cfg.retries = 0;
        R.cfg.retry_delay_ms = 2500;
        R.cfg.online_timeout_ms = 3000;
        assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
        R.mode = BE_DROP;
        R.mode_count = k == 0 ? 1 : 2;
        R.retry94 = k == 0;
        chip_sale("approve", "1234", 3100);
        mpos_txn_result r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_NO_RESPONSE);
        assert_int_equal(r.reason, MPOS_TXN_R_NO_RESPONSE);
        assert_true(r.reversal_pending);
        assert_string_equal(r.response_code, "");
        assert_string_equal(r.auth_code, "");
        assert_int_equal(R.nlog, 2);
        assert_int_equal(R.log[1].q.retry, 1);
        assert_int_equal(R.log[1].q.sequence, 1);
        assert_true(R.log[1].at - R.log[0].at >= 3000 + 2500);
        assert_true(R.has_rev);
        assert_int_equal(R.rev.sequence, 1);
        assert_int_equal(R.rev.reason, MPOS_REVERSAL_NO_RESPONSE);
        assert_non_null(first_shown(MPOS_HAL_PROMPT_NO_RESPONSE));
        assert_null(first_shown(MPOS_HAL_PROMPT_APPROVED));
        /* The reversal goes before the next transaction, for sequence 1. */
        R.retry94 = 0;
        chip_sale("approve", "1234", 3200);
        r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
        assert_int_equal(R.nlog, 4);
        assert_int_equal(R.log[2].q.msg_type, MPOS_SEALED_MSG_REVERSAL);
        assert_int_equal(R.log[2].q.sequence, 1);
        assert_int_equal(R.log[2].q.retry, 0);
        assert_int_equal(R.log[3].q.sequence, 4); /* 2: the retry's key, 3: the reversal's */
        assert_false(R.has_rev);
    }
}

static int recv_nothing(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    (void)ctx;
    (void)buf;
    (void)cap;
    *len = 0;
    R.resp_ready = 0;
    R.mono += timeout_ms;
    return MPOS_HAL_TIMEOUT;
}

static void test_reversal_blocks_next(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    R.mode = BE_DROP;
    R.mode_count = 1;
    chip_sale("approve", "1234", 3100);
    run();
    assert_true(R.has_rev);
    /* The back end is unreachable: the reversal cannot go, so the next transaction stops
     * before any card is read. */
    R.txn.env.net.recv = recv_nothing;
    chip_sale("approve", "1234", 3200);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_NO_RESPONSE);
    assert_int_equal(r.reason, MPOS_TXN_R_REVERSAL_PENDING);
    assert_true(r.reversal_pending);
    assert_null(first_shown(MPOS_HAL_PROMPT_INSERT_CARD));
    assert_true(R.has_rev);
    assert_int_equal(R.rev.sequence, 1);
    assert_int_equal(R.rev.attempts, MPOS_TXN_REVERSAL_TRIES);
    /* Back: an idle flush sends it. */
    R.txn.env.net.recv = n_recv;
    R.ntl = 0;
    assert_int_equal(mpos_txn_flush_reversal(&R.txn), 0);
    assert_int_equal(R.has_rev, 0);
    assert_int_equal(R.session.state, MPOS_LINK_STATE_IDLE);
    assert_int_equal(R.log[R.nlog - 1].q.msg_type, MPOS_SEALED_MSG_REVERSAL);
    assert_int_equal(mpos_txn_flush_reversal(&R.txn), 0); /* nothing left */
}

/* Whatever reason the store's record gives (a power loss while online leaves "terminal
 * failure", the first record written), the reversal carries it (docs/protocol.md 2.3 DF34). */
static void test_reversal_reason_from_record(void **state)
{
    (void)state;
    NEED_CARDS();
    static const uint8_t reasons[] = {MPOS_REVERSAL_TERMINAL_FAILURE, MPOS_REVERSAL_CANCELLED,
                                      MPOS_REVERSAL_NO_RESPONSE, MPOS_REVERSAL_CARD_DECLINED};
    for (size_t i = 0; i < sizeof(reasons); i++) {
        rig_setup(0);
        /* An approved sale cut off by a power loss: its record, as online_phase wrote it
         * before the request left, is still there at the next start. */
        chip_sale("approve", "1234", 4100);
        mpos_txn_result r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
        assert_int_equal(R.has_rev, 0);
        memset(&R.rev, 0, sizeof(R.rev));
        R.rev.sequence = r.sequence;
        R.rev.txn_type = MPOS_LINK_TXN_SALE;
        R.rev.amount = 4100;
        R.rev.currency = 156;
        R.rev.entry_mode = MPOS_ENTRY_CHIP;
        R.rev.reason = reasons[i];
        memcpy(R.rev.ksn, R.log[0].q.ksn, R.log[0].q.ksn_len);
        R.rev.ksn_len = R.log[0].q.ksn_len;
        strcpy(R.rev.datetime, R.log[0].q.datetime);
        R.has_rev = 1;
        mpos_txn_clear(&R.txn);
        assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
        assert_int_equal(mpos_txn_flush_reversal(&R.txn), 0);
        assert_int_equal(R.nlog, 2);
        assert_int_equal(R.log[1].q.msg_type, MPOS_SEALED_MSG_REVERSAL);
        assert_int_equal(R.log[1].q.sequence, r.sequence);
        assert_int_equal(R.log[1].q.reversal_reason, reasons[i]);
        assert_int_equal(R.has_rev, 0);
    }
    /* A record whose reason the wire cannot carry is not sent, and stays. */
    rig_setup(0);
    memset(&R.rev, 0, sizeof(R.rev));
    R.rev.sequence = 1;
    R.rev.txn_type = MPOS_LINK_TXN_SALE;
    R.rev.amount = 4100;
    R.rev.currency = 156;
    R.rev.reason = 9;
    strcpy(R.rev.datetime, "20260315120000");
    R.has_rev = 1;
    assert_int_not_equal(mpos_txn_flush_reversal(&R.txn), 0);
    assert_int_equal(R.nlog, 0);
    assert_int_equal(R.has_rev, 1);
}

static void test_void_reversal_after_restart(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    R.mode = BE_DROP;
    R.mode_count = 1;
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, "approve");
    pin_add("1234");
    assert_int_equal(start(MPOS_LINK_TXN_VOID, 5000, 156, "RRN260315000042"), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_NO_RESPONSE);
    assert_string_equal(R.log[0].q.original_ref, "RRN260315000042");
    /* The reference slot is written before the reversal record. */
    int w = -1;
    for (size_t i = 0; i < R.ntl; i++) {
        if (R.tl[i][0] == 'W') {
            w = (int)i;
            break;
        }
    }
    assert_true(w >= 0 && w < tl_find("RS3", 0));

    /* A restart: the context (RAM) is gone, the store and the storage remain. */
    mpos_txn_clear(&R.txn);
    assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
    assert_int_equal(mpos_txn_flush_reversal(&R.txn), 0);
    const mpos_sealed_request *rev = &R.log[R.nlog - 1].q;
    assert_int_equal(rev->msg_type, MPOS_SEALED_MSG_REVERSAL);
    assert_int_equal(rev->txn_type, MPOS_LINK_TXN_VOID);
    assert_int_equal(rev->sequence, 1);
    assert_int_equal(rev->reversal_reason, MPOS_SEALED_REV_NO_RESPONSE);
    assert_string_equal(rev->original_ref, "RRN260315000042");
    assert_int_equal(R.has_rev, 0);
    /* The slot no longer names it. */
    int s = s_find(MPOS_TXN_REF_SLOT);
    assert_true(s >= 0);
    assert_int_equal(R.slots[s].len, 1);
}

static void test_tdes_sale(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(1);
    chip_sale("approve", "1234", 6600);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.log[0].q.scheme, MPOS_SEALED_TDES);
    assert_int_equal(R.log[0].q.pin_format, 0);
    assert_int_equal(R.log[0].q.pin_block_len, 8);
    assert_true(R.log[0].pin_ok);
}

static void test_offline_pin_card(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    /* A wrong offline PIN, then the right one: the card counts the tries. */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, "offline-pin");
    pin_add("9999");
    pin_add("5555");
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 2500, 156, ""), 0);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    const struct shown *retry = first_shown(MPOS_HAL_PROMPT_PIN_RETRY);
    assert_non_null(retry);
    assert_int_equal(retry->p.count, 2);
    assert_false(R.log[0].q.has_pin); /* verified by the card: no online PIN block */
    char mp[MPOS_MSR_PAN_BUF_LEN];
    masked("offline-pin", mp);
    assert_string_equal(r.masked_pan, mp);
    check_events();
}

/* ---- tests: the host link -------------------------------------------------------------------- */

static void test_link_commands(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    /* Malformed orders. */
    assert_int_equal(start(MPOS_LINK_TXN_BALANCE, 5, 156, ""), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 0, 156, ""), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 5, 1000, ""), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 5, 156, "ABC"), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_REFUND, 5, 156, ""), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_REFUND, 5, 156, "AB-1"), MPOS_LINK_E_MALFORMED);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, MPOS_LINK_MAX_AMOUNT + 1, 156, ""),
                     MPOS_LINK_E_MALFORMED);
    assert_int_equal(mpos_txn_get_state(&R.txn), MPOS_TXN_IDLE);
    mpos_link_msg m;
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_CMD_CANCEL;
    assert_int_equal(mpos_txn_command(&R.txn, &m), MPOS_LINK_E_NOT_ALLOWED);
    m.type = MPOS_LINK_CMD_GET_INFO;
    assert_int_equal(mpos_txn_command(&R.txn, &m), MPOS_ERR_ARG);
    assert_int_equal(mpos_txn_run(&R.txn, NULL), MPOS_ERR_STATE);

    /* The host's location, taken while idle, goes into the request. */
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_CMD_SET_HOST_LOCATION;
    m.u.location.lat_e7 = 312304170;
    m.u.location.lon_e7 = 1214737000;
    m.u.location.accuracy_m = 12;
    m.u.location.time = 1773570000ull;
    assert_int_equal(mpos_txn_command(&R.txn, &m), 0);

    /* During the transaction: a second START_TXN (PIN entry), a location (confirmation) and
     * a CANCEL once online are refused; nothing changes. */
    chip_sale("approve", "1234", 4321);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 1, 156, ""), MPOS_LINK_E_NOT_ALLOWED);
    inject_at(0, MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_LINK_CMD_SET_HOST_LOCATION);
    R.inject[0].cmd.u.location = m.u.location;
    inject_at(1, MPOS_HAL_PROMPT_ENTER_PIN, MPOS_LINK_CMD_START_TXN);
    R.inject[1].cmd.u.start.txn_type = MPOS_LINK_TXN_SALE;
    R.inject[1].cmd.u.start.amount = 1;
    R.inject[1].cmd.u.start.currency = 156;
    inject_at(2, MPOS_HAL_PROMPT_PROCESSING, MPOS_LINK_CMD_CANCEL);
    mpos_txn_result r = run();
    assert_int_equal(R.inject[0].rc, MPOS_LINK_E_NOT_ALLOWED);
    assert_int_equal(R.inject[1].rc, MPOS_LINK_E_NOT_ALLOWED);
    assert_int_equal(R.inject[2].rc, MPOS_LINK_E_NOT_ALLOWED);
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.log[0].q.amount, 4321);
    assert_true(R.log[0].q.has_location);
    assert_int_equal(R.log[0].q.location.lat_e7, 312304170);

    /* A CANCEL from the host while waiting for the card, and during PIN entry. */
    script_reset();
    key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
    inject_at(0, MPOS_HAL_PROMPT_INSERT_CARD, MPOS_LINK_CMD_CANCEL);
    assert_int_equal(start(MPOS_LINK_TXN_SALE, 10, 156, ""), 0);
    r = run();
    assert_int_equal(R.inject[0].rc, 0);
    assert_int_equal(r.reason, MPOS_TXN_R_HOST_CANCELLED);

    chip_sale("approve", NULL, 10);
    inject_at(0, MPOS_HAL_PROMPT_ENTER_PIN, MPOS_LINK_CMD_CANCEL);
    size_t sent = R.nlog;
    r = run();
    assert_int_equal(R.inject[0].rc, 0);
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(r.reason, MPOS_TXN_R_HOST_CANCELLED);
    assert_int_equal(R.nlog, sent);
}

static void test_pin_rate_limit(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    R.cfg.pin.rate_max = 2;
    R.cfg.pin.rate_window_ms = 600000; /* 10 minutes */
    mpos_txn_clear(&R.txn);
    assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
    for (int i = 0; i < 2; i++) {
        chip_sale("approve", "1234", 100);
        assert_int_equal(run().outcome, MPOS_LINK_OUTCOME_APPROVED);
    }
    chip_sale("approve", "1234", 100);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_CANCELLED);
    assert_int_equal(r.reason, MPOS_TXN_R_PIN_RATE_LIMITED);
    assert_null(first_shown(MPOS_HAL_PROMPT_ENTER_PIN));
    assert_int_equal(R.nlog, 2);
    /* After the window, again. */
    R.mono += 600000;
    chip_sale("approve", "1234", 100);
    assert_int_equal(run().outcome, MPOS_LINK_OUTCOME_APPROVED);
}

/* ---- tests: the one copy of the order and the clear PIN -------------------------------------- */

static uint64_t bcd_amount(const uint8_t v[6])
{
    uint64_t a = 0;
    for (int i = 0; i < 6; i++) {
        a = a * 100u + (uint64_t)(v[i] >> 4) * 10u + (v[i] & 0x0Fu);
    }
    return a;
}

static uint32_t prng;
static uint32_t next_rand(void)
{
    prng ^= prng << 13;
    prng ^= prng >> 17;
    prng ^= prng << 5;
    return prng;
}

static void test_property_amount_shown_is_amount_sealed(void **state)
{
    (void)state;
    NEED_CARDS();
    rig_setup(0);
    prng = 0x2468ACE1u;
    unsigned rounds = 48 / tu_scale() + 4;
    for (unsigned i = 0; i < rounds; i++) {
        uint8_t type = (uint8_t)(1u + next_rand() % 4u);
        uint64_t amount = 0;
        if (type != MPOS_LINK_TXN_BALANCE) {
            /* Every magnitude from 1 to 12 digits. */
            uint64_t mod = 1;
            for (unsigned d = 1 + next_rand() % 12u; d > 0; d--) {
                mod *= 10u;
            }
            amount = 1u + (((uint64_t)next_rand() << 32 | next_rand()) % (mod - (mod > 1)));
            if (amount > MPOS_LINK_MAX_AMOUNT) {
                amount = MPOS_LINK_MAX_AMOUNT;
            }
        }
        uint16_t currency = (uint16_t)(1u + next_rand() % 999u);
        char ref[MPOS_LINK_REF_MAX_LEN + 1] = "";
        if (type == MPOS_LINK_TXN_VOID || type == MPOS_LINK_TXN_REFUND) {
            static const char an[] =
                "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            size_t n = 1 + next_rand() % MPOS_LINK_REF_MAX_LEN;
            for (size_t k = 0; k < n; k++) {
                ref[k] = an[next_rand() % (sizeof(an) - 1)];
            }
        }
        script_reset();
        key_add(MPOS_HAL_PROMPT_CONFIRM_AMOUNT, MPOS_KEY_OK, 0);
        card_add(MPOS_HAL_PROMPT_INSERT_CARD, MPOS_CARD_EVENT_INSERTED, "approve");
        pin_add("1234");
        assert_int_equal(start(type, amount, currency, ref), 0);
        mpos_txn_result r = run();
        assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
        assert_int_equal(R.nlog, i + 1);

        /* The display's log and the back end's decoding of the sealed request agree. */
        const struct shown *c = first_shown(MPOS_HAL_PROMPT_CONFIRM_AMOUNT);
        const mpos_sealed_request *q = &R.log[i].q;
        assert_non_null(c);
        assert_int_equal(c->p.txn_type, type);
        assert_int_equal(c->p.amount, amount);
        assert_int_equal(c->p.currency, currency);
        assert_int_equal(q->txn_type, c->p.txn_type);
        assert_int_equal(q->amount, c->p.amount);
        assert_int_equal(q->currency, c->p.currency);
        assert_string_equal(q->original_ref, ref);
        /* ... and so do the card's data ('9F02', '5F2A') and the other prompts. */
        uint8_t v[6], cur[2];
        take(q, 0x9F02, v, 6);
        assert_int_equal(bcd_amount(v), amount);
        take(q, 0x5F2A, cur, 2);
        assert_int_equal((cur[0] & 0x0F) * 100 + (cur[1] >> 4) * 10 + (cur[1] & 0x0F), currency);
        for (size_t k = 0; k < R.nshown; k++) {
            if (R.shown[k].p.present & MPOS_PROMPT_P_AMOUNT) {
                assert_int_equal(R.shown[k].p.amount, amount);
                assert_int_equal(R.shown[k].p.currency, currency);
            }
        }
        for (size_t k = 0; k < R.nevs; k++) {
            const mpos_link_msg *e = &R.evs[k];
            if (e->type == MPOS_LINK_EVT_PROMPT_SHOWN &&
                ((unsigned)mpos_link_prompt_params(e->u.prompt.prompt) & MPOS_LINK_PARAM_AMOUNT)) {
                assert_int_equal(e->u.prompt.amount, amount);
                assert_int_equal(e->u.prompt.currency, currency);
            }
        }
        assert_int_equal(check_events()->u.result.amount, amount);
    }
}

static void test_clear_pin_not_in_context(void **state)
{
    (void)state;
    NEED_CARDS();
    static const char *const cards[2][2] = {{"approve-19digit", "908172"}, {"wrong-pin", "2468"}};
    for (int tdes = 0; tdes < 2; tdes++) {
        for (int c = 0; c < 2; c++) {
            rig_setup(tdes);
            R.scan_pin = cards[c][1];
            chip_sale(cards[c][0], cards[c][1], 5150);
            mpos_txn_result r = run();
            assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
            assert_true(R.log[0].pin_ok); /* the PIN was entered and is in the block */
            assert_int_equal(R.scans, 1);
            assert_false(R.pin_found);
            assert_false(pin_in_context(cards[c][1]));
            /* Nor the full PAN, once the transaction is over. */
            const struct tc_card *all;
            assert_true(tc_load(&all) > 0);
            const char *pan = tc_find(cards[c][0])->pan;
            assert_false(contains(&R.txn, sizeof(R.txn), pan, strlen(pan)));
        }
    }
}

/* ---- tests: PIN entry on its own ------------------------------------------------------------- */

static mpos_pin_entry pe;

static void pe_setup(void)
{
    mpos_pin_entry_io io;
    rig_setup(0);
    script_reset();
    memset(&io, 0, sizeof(io));
    io.keypad = &R.keypad;
    io.display = &R.display;
    io.clock = &R.clock;
    io.rng = &R.rng;
    io.cc = &cc;
    assert_int_equal(mpos_pin_entry_init(&pe, NULL, &io), MPOS_OK);
    R.current = MPOS_HAL_PROMPT_ENTER_PIN;
}

static void test_pin_entry_keys(void **state)
{
    (void)state;
    mpos_pin_entry_prompt p;
    char pin[MPOS_PIN_BUF_LEN];
    memset(&p, 0, sizeof(p));
    p.amount = 100;
    p.currency = 156;

    /* CLEAR erases the last digit; OK before 4 digits is ignored. */
    pe_setup();
    static const enum mpos_key seq1[] = {MPOS_KEY_1,  MPOS_KEY_2, MPOS_KEY_CLEAR, MPOS_KEY_3,
                                         MPOS_KEY_OK, MPOS_KEY_4, MPOS_KEY_5,     MPOS_KEY_OK};
    for (size_t i = 0; i < sizeof(seq1) / sizeof(seq1[0]); i++) {
        key_add(MPOS_HAL_PROMPT_ENTER_PIN, seq1[i], 100);
    }
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_PIN_ENTRY_OK);
    assert_string_equal(pin, "1345");
    static const uint8_t counts[] = {0, 1, 2, 1, 2, 3, 4};
    assert_int_equal(R.nshown, sizeof(counts));
    for (size_t i = 0; i < R.nshown; i++) {
        assert_int_equal(R.shown[i].prompt, MPOS_HAL_PROMPT_ENTER_PIN);
        assert_int_equal(R.shown[i].p.count, counts[i]);
    }

    /* At most 12 digits. */
    pe_setup();
    for (int i = 0; i < 14; i++) {
        key_add(MPOS_HAL_PROMPT_ENTER_PIN, (enum mpos_key)(i % 10), 100);
    }
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_OK, 100);
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_PIN_ENTRY_OK);
    assert_string_equal(pin, "012345678901");

    /* CANCEL. */
    pe_setup();
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_7, 100);
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_CANCEL, 100);
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_PIN_ENTRY_CANCELLED);
    assert_int_equal(pin[0], '\0');

    /* Online: the block decrypts to the PIN under the key, for this PAN only. */
    pe_setup();
    uint8_t key[16], block[16];
    size_t blen = 0;
    char out[MPOS_PIN_BUF_LEN];
    memset(key, 0x5A, sizeof(key));
    pin_add("4096");
    assert_int_equal(mpos_pin_entry_online(&pe, &p, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16,
                                           "6212094482246349", block, &blen),
                     MPOS_PIN_ENTRY_OK);
    assert_int_equal(blen, 16);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, block,
                                            blen, "6212094482246349", out),
                     MPOS_OK);
    assert_string_equal(out, "4096");
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, block,
                                            blen, "6228184790612522", out),
                     MPOS_ERR_DECODE);
    /* A format with the wrong cipher, a bad PAN: refused before anything is shown. */
    pe_setup();
    assert_int_equal(mpos_pin_entry_online(&pe, &p, MPOS_PIN_FORMAT_4, MPOS_CIPHER_TDES, key, 16,
                                           "6212094482246349", block, &blen),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_pin_entry_online(&pe, &p, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                           "62120944", block, &blen),
                     MPOS_ERR_PAN);
    assert_int_equal(blen, 0);
    assert_int_equal(R.nshown, 0);
    /* A full PAN on the prompt is refused. */
    p.masked_pan = "6212094482246349";
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_ERR_PAN);
    assert_int_equal(R.nshown, 0);
}

static void test_pin_entry_timeouts(void **state)
{
    (void)state;
    mpos_pin_entry_prompt p;
    char pin[MPOS_PIN_BUF_LEN];
    memset(&p, 0, sizeof(p));
    p.amount = 100;
    p.currency = 156;
    /* Inter-key: a pause just under the limit is fine, just over is not. */
    pe_setup();
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_1, MPOS_PIN_ENTRY_INTERKEY_MS - 1000);
    key_add(MPOS_HAL_PROMPT_ENTER_PIN, MPOS_KEY_2, MPOS_PIN_ENTRY_INTERKEY_MS + 1000);
    uint64_t t0 = R.mono;
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_PIN_ENTRY_TIMEOUT);
    assert_int_equal(R.keynext, 1);
    uint64_t took = R.mono - t0;
    assert_true(took >= 2 * MPOS_PIN_ENTRY_INTERKEY_MS - 1000 &&
                took < 2 * MPOS_PIN_ENTRY_INTERKEY_MS + MPOS_PIN_ENTRY_POLL_MS);
    /* No key at all; the keypad is never waited on longer than poll_ms (the abort hook
     * runs between the waits). */
    pe_setup();
    R.max_wait = 0;
    t0 = R.mono;
    assert_int_equal(mpos_pin_entry_offline(&pe, &p, pin), MPOS_PIN_ENTRY_TIMEOUT);
    assert_true(R.mono - t0 >= MPOS_PIN_ENTRY_INTERKEY_MS);
    assert_true(R.max_wait > 0 && R.max_wait <= MPOS_PIN_ENTRY_POLL_MS);
}

/* ---- on the real key store ------------------------------------------------------------------- */

#ifdef MPOS_TEST_HAVE_KEYSTORE
#include "mem_storage.h"
#include "txn/txn_keystore.h"

static mem_storage mem;
static mpos_hal_storage mem_hal;
static mpos_keystore ks;

/* The rig with the key store on the in-memory storage (which also holds "txn-ref"). */
static void ks_rig(void)
{
    uint8_t ikid[8], ik[16];
    rig_setup(0);
    mem_storage_init(&mem, 7);
    mem_storage_bind(&mem, &mem_hal);
    assert_int_equal(mpos_keystore_open(&ks, &mem_hal, &R.rng, &cc), MPOS_OK);
    tu_hex(AES_IKID, ikid, sizeof(ikid));
    assert_int_equal(mpos_dukpt_aes_initial_key(&cc, R.bdk, R.bdk_len, ikid, ik), MPOS_OK);
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_AES128),
                     MPOS_OK);
    MPOS_WIPE_BUFFER(ik);
    assert_int_equal(mpos_keystore_set_activation(&ks, MID, TID), MPOS_OK);
    R.hal.storage = &mem_hal;
    mpos_txn_store_keystore(&R.env.store, &ks);
    mpos_txn_clear(&R.txn);
    assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);
}

static void test_keystore_reversal_survives_power_loss(void **state)
{
    (void)state;
    NEED_CARDS();
    mpos_keystore_info info;
    ks_rig();
    chip_sale("approve", "1234", 700);
    mpos_txn_result r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(r.sequence, 1);
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.reversal_pending, 0);

    chip_sale("card-declines", "1357", 8800);
    r = run();
    assert_int_equal(r.reason, MPOS_TXN_R_CARD_DECLINED_AFTER_APPROVAL);
    assert_int_equal(r.sequence, 2);

    /* Power loss: RAM is gone, the storage keeps what was durable. */
    mpos_keystore_close(&ks);
    mpos_txn_clear(&R.txn);
    mem_storage_reboot(&mem);
    assert_int_equal(mpos_keystore_open(&ks, &mem_hal, &R.rng, &cc), MPOS_OK);
    mpos_keystore_reversal rev;
    assert_int_equal(mpos_keystore_reversal_get(&ks, &rev), MPOS_OK);
    assert_int_equal(rev.sequence, 2);
    assert_int_equal(rev.reason, MPOS_REVERSAL_CARD_DECLINED);
    assert_int_equal(rev.amount, 8800);
    assert_int_equal(mpos_txn_init(&R.txn, &R.cfg, &R.env), MPOS_OK);

    /* The next transaction sends it first (the back end checks that every KSN counter goes
     * up), then goes on. */
    chip_sale("approve", "1234", 900);
    r = run();
    assert_int_equal(r.outcome, MPOS_LINK_OUTCOME_APPROVED);
    assert_int_equal(R.nlog, 4);
    assert_int_equal(R.log[2].q.msg_type, MPOS_SEALED_MSG_REVERSAL);
    assert_int_equal(R.log[2].q.sequence, 2);
    assert_int_equal(R.log[2].q.reversal_reason, MPOS_SEALED_REV_CARD_DECLINED);
    assert_int_equal(R.log[3].q.sequence, r.sequence);
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.reversal_pending, 0);
    assert_int_equal(info.sequence, r.sequence);
    mpos_keystore_close(&ks);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sale_approved),
        cmocka_unit_test(test_declined_51),
        cmocka_unit_test(test_wrong_pin_then_right),
        cmocka_unit_test(test_card_declines_after_approval),
        cmocka_unit_test(test_chip_broken_fallback),
        cmocka_unit_test(test_swipe_chip_card_refused),
        cmocka_unit_test(test_stripe_only_card),
        cmocka_unit_test(test_cancel_at_confirmation),
        cmocka_unit_test(test_pin_timeout),
        cmocka_unit_test(test_forged_response),
        cmocka_unit_test(test_mismatched_response),
        cmocka_unit_test(test_no_response),
        cmocka_unit_test(test_retry_lost_response),
        cmocka_unit_test(test_retry_in_flight_or_lost),
        cmocka_unit_test(test_reversal_blocks_next),
        cmocka_unit_test(test_void_reversal_after_restart),
        cmocka_unit_test(test_reversal_reason_from_record),
        cmocka_unit_test(test_tdes_sale),
        cmocka_unit_test(test_offline_pin_card),
        cmocka_unit_test(test_link_commands),
        cmocka_unit_test(test_pin_rate_limit),
        cmocka_unit_test(test_property_amount_shown_is_amount_sealed),
        cmocka_unit_test(test_clear_pin_not_in_context),
        cmocka_unit_test(test_pin_entry_keys),
        cmocka_unit_test(test_pin_entry_timeouts),
#ifdef MPOS_TEST_HAVE_KEYSTORE
        cmocka_unit_test(test_keystore_reversal_survives_power_loss),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
