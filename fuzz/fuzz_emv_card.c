/* libFuzzer target: the EMV kernel (terminal/core/emv) against a malicious card. A card is
 * untrusted input: whatever R-APDUs it sends, the kernel must end with one of its outcomes,
 * never crash, read out of bounds, loop or send a malformed C-APDU.
 *
 * Input: byte 0 chooses the mode and the options, the rest drives the card.
 *   bit 0  0: a genuine virtual card (terminal/sim/cardsim, made-up profiles below, not the
 *             cards of cards.tsv) whose responses are edited: 4-byte edits
 *             [exchange, op, position, value] (flip bits, set a byte, truncate, set SW1 SW2,
 *             replace the response with the next value bytes of the input, go mute);
 *          1: a scripted card: the rest is a list of responses [length][bytes] (the last two
 *             bytes of each are SW1 SW2); when they run out the card is mute.
 *   bits 1-3  which profile (mode 0);
 *   bit 4     the cardholder enters a wrong PIN first;
 *   bit 5     the issuer approves;
 *   bit 6     the issuer's '91' is the right ARPC (else bytes of the input);
 *   bit 7     issuer script templates in the response (from the input).
 * After an ONLINE outcome the kernel is completed with that response (or none), and every
 * accessor is called; field 55 must be canonical BER-TLV.
 *
 * Build: cmake -DCMAKE_C_COMPILER=clang -DMPOS_FUZZ=ON; run: scripts/run-fuzz BUILD SECONDS.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "card.h"
#include "emv_kernel.h"
#include "mpos/emv.h"
#include "mpos/tlv.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Made-up test cards (not those of cards.tsv): name selects the behaviour. */
static const char *const rows[] = {
    "approve\t6299000000000001\t3012\t220\t01\t1234\t000\t0123456789ABCDEFFEDCBA9876543210\tf",
    "approve-19digit\t6299000000000000019\t3012\t220\t00\t123456\t000\t"
    "00112233445566778899AABBCCDDEEFF\tf",
    "offline-pin\t6299000000000002\t3012\t220\t01\t4321\t000\t"
    "FEDCBA98765432100123456789ABCDEF\tf",
    "expired\t6299000000000003\t2001\t220\t01\t1111\t000\t11111111111111112222222222222222\tf",
    "card-declines\t6299000000000004\t3012\t220\t01\t2222\t000\t"
    "33333333333333334444444444444444\tf",
    "insufficient\t6299000000000005\t3012\t220\t01\t3333\t000\t"
    "55555555555555556666666666666666\tf",
    "foreign-aid\t4299000000000006\t3012\t201\t01\t4444\t000\t"
    "77777777777777778888888888888888\tf",
    "wrong-pin\t6299000000000007\t3012\t220\t01\t5555\t000\t99999999999999990000000000000000\tf",
};
#define NPROFILES (sizeof(rows) / sizeof(rows[0]))

static mpos_crypto_ctx cc;
static mpos_cardsim templates[NPROFILES];
static mpos_emv_params params;
static int ready;

struct fuzz {
    const uint8_t *p;
    size_t left;
    int scripted;
    mpos_cardsim card;
    size_t exchange;
    uint8_t options;
    int wrong_pin_given;
};

static int take(struct fuzz *f, uint8_t *b)
{
    if (f->left == 0) {
        return 0;
    }
    *b = *f->p++;
    f->left--;
    return 1;
}

static int io_reset(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    struct fuzz *f = ctx;
    if (f->scripted) {
        atr[0] = 0x3B;
        atr[1] = 0x00;
        *atr_len = 2;
        return 0;
    }
    return mpos_cardsim_power_on(&f->card, atr, atr_len);
}

/* The edits for this exchange, applied to the genuine response. */
static int edit(struct fuzz *f, uint8_t *r, size_t *rlen)
{
    while (f->left >= 4 && f->p[0] == (uint8_t)f->exchange) {
        uint8_t op = f->p[1], pos = f->p[2], val = f->p[3];
        f->p += 4;
        f->left -= 4;
        size_t at = *rlen ? pos % *rlen : 0;
        switch (op % 6) {
        case 0:
            if (*rlen) {
                r[at] ^= val;
            }
            break;
        case 1:
            if (*rlen) {
                r[at] = val;
            }
            break;
        case 2: /* truncate the data, keep the status word */
            if (*rlen >= 2) {
                size_t keep = (*rlen - 2) ? pos % (*rlen - 1) : 0;
                r[keep] = r[*rlen - 2];
                r[keep + 1] = r[*rlen - 1];
                *rlen = keep + 2;
            }
            break;
        case 3:
            if (*rlen >= 2) {
                r[*rlen - 2] = pos;
                r[*rlen - 1] = val;
            }
            break;
        case 4: { /* replace with val bytes of the input */
            size_t n = val;
            if (n > f->left) {
                n = f->left;
            }
            memcpy(r, f->p, n);
            f->p += n;
            f->left -= n;
            *rlen = n;
            break;
        }
        default:
            return 1; /* mute */
        }
    }
    return 0;
}

static int io_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                       uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    struct fuzz *f = ctx;
    uint8_t len;
    /* The kernel's commands are well-formed short APDUs (ISO/IEC 7816-3 12.1). */
    CHECK(capdu_len >= 4 && capdu_len <= MPOS_CAPDU_MAX);
    if (capdu_len > 5) {
        CHECK(capdu[4] != 0 && (capdu_len == 5u + capdu[4] || capdu_len == 6u + capdu[4]));
    }
    f->exchange++;
    CHECK(f->exchange < 4096); /* no endless loop */
    if (f->scripted) {
        if (!take(f, &len)) {
            return 1;
        }
        size_t n = len < f->left ? len : f->left;
        memcpy(rapdu, f->p, n);
        f->p += n;
        f->left -= n;
        *rapdu_len = n;
        return 0;
    }
    int r = mpos_cardsim_process(&f->card, capdu, capdu_len, rapdu, MPOS_RAPDU_MAX, rapdu_len);
    if (r != 0) {
        return r;
    }
    return edit(f, rapdu, rapdu_len);
}

static int io_rng(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(0x5A ^ i);
    }
    return 0;
}

static int io_now(void *ctx, mpos_emv_datetime *now)
{
    (void)ctx;
    memset(now, 0, sizeof(*now));
    now->year = 2026;
    now->month = 3;
    now->day = 15;
    now->hour = 12;
    return 0;
}

static int io_pin(void *ctx, enum mpos_emv_pin_kind kind, unsigned tries_left,
                  char pin[MPOS_PIN_BUF_LEN])
{
    struct fuzz *f = ctx;
    (void)tries_left;
    if (kind == MPOS_EMV_PIN_ONLINE) {
        CHECK(pin == NULL);
        return MPOS_EMV_PIN_ENTERED;
    }
    CHECK(pin != NULL);
    if ((f->options & 0x10) && !f->wrong_pin_given) {
        f->wrong_pin_given = 1;
        memcpy(pin, "0000", 5);
        return MPOS_EMV_PIN_ENTERED;
    }
    if (f->scripted) {
        memcpy(pin, "1234", 5);
    } else {
        memcpy(pin, f->card.prof.pin, strlen(f->card.prof.pin) + 1);
    }
    return MPOS_EMV_PIN_ENTERED;
}

static void init_once(void)
{
    mpos_cardsim_profile p;
    if (ready) {
        return;
    }
    CHECK(mpos_crypto_init(&cc) == MPOS_OK);
    for (size_t i = 0; i < NPROFILES; i++) {
        CHECK(mpos_cardsim_profile_parse(rows[i], &p) == MPOS_OK);
        CHECK(mpos_cardsim_init(&templates[i], &p, &cc) == MPOS_OK);
    }
    mpos_emv_params_default(&params);
    static const uint8_t rid[5] = {0xA0, 0x00, 0x00, 0x03, 0x33};
    memcpy(params.capks[0].rid, rid, 5);
    CHECK(mpos_cardsim_ca_key(&params.capks[0].index, params.capks[0].modulus,
                              sizeof(params.capks[0].modulus), &params.capks[0].modulus_len,
                              params.capks[0].exponent, sizeof(params.capks[0].exponent),
                              &params.capks[0].exponent_len) == MPOS_OK);
    params.capk_count = 1;
    ready = 1;
}

/* The issuer's right ARPC for the request (as the harness of the unit tests does). */
static size_t right_arpc(struct fuzz *f, const uint8_t *f55, size_t len, const char *arc,
                         uint8_t iad[16])
{
    static const uint32_t tags[] = {0x9F02, 0x9F03, 0x9F1A, 0x95,   0x5F2A, 0x9A,
                                    0x9C,   0x9F37, 0x82,   0x9F36, 0x9F26, 0x9F10};
    mpos_tlv o[12];
    int found;
    uint8_t mk[16], sk[16], atc[2];
    for (size_t i = 0; i < 12; i++) {
        if (mpos_tlv_find(f55, len, MPOS_TLV_STRICT, tags[i], &o[i], &found) != MPOS_OK || !found) {
            return 0;
        }
    }
    if (o[9].len != 2 || o[10].len != 8) {
        return 0;
    }
    memcpy(atc, o[9].value, 2);
    enum mpos_emv_mk_option opt =
        strlen(f->card.prof.pan) > 16 ? MPOS_EMV_MK_OPTION_B : MPOS_EMV_MK_OPTION_A;
    if (mpos_emv_derive_icc_mk(&cc, opt, f->card.prof.imk, 16, f->card.prof.pan, f->card.prof.psn,
                               mk) != MPOS_OK ||
        mpos_emv_derive_sk(&cc, MPOS_EMV_SK_COMMON, mk, 16, atc, sk) != MPOS_OK) {
        return 0;
    }
    if (f->card.prof.arpc_method == 2) {
        static const uint8_t csu[4] = {0};
        if (mpos_emv_arpc2_generate(&cc, sk, 16, o[10].value, csu, NULL, 0, iad) != MPOS_OK) {
            return 0;
        }
        memset(iad + 4, 0, 4);
        return 8;
    }
    if (mpos_emv_arpc1_generate(&cc, sk, 16, o[10].value, (const uint8_t *)arc, iad) != MPOS_OK) {
        return 0;
    }
    memcpy(iad + 8, arc, 2);
    return 10;
}

static void check_result(const mpos_emv_ctx *k, int r)
{
    const mpos_emv_result *res = mpos_emv_get_result(k);
    CHECK(r >= MPOS_EMV_ONLINE && r <= MPOS_EMV_CANCELLED);
    CHECK((int)res->outcome == r);
    CHECK(!res->fallback_allowed || r == MPOS_EMV_CARD_ERROR);
}

static void accessors(const mpos_emv_ctx *k)
{
    static const uint32_t tags[] = {0x95, 0x9B,   0x9F37, 0x9F26, 0x9F10, 0x5A, 0x57,
                                    0x8E, 0x9F38, 0x84,   0x9F34, 0x8A,   0x91, 0xDF01};
    uint8_t f55[320];
    size_t len;
    mpos_emv_card_data cd;
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        const uint8_t *v;
        size_t n;
        int found;
        CHECK(mpos_emv_get_data(k, tags[i], &v, &n, &found) == MPOS_OK);
    }
    if (mpos_emv_card_data_get(k, &cd) == MPOS_OK) {
        CHECK(strlen(cd.pan) >= 12 && strlen(cd.pan) <= 19);
    }
    for (int w = MPOS_EMV_F55_REQUEST; w <= MPOS_EMV_F55_FINAL; w++) {
        if (mpos_emv_field55(k, (enum mpos_emv_f55)w, f55, sizeof(f55), &len) == MPOS_OK) {
            CHECK(mpos_tlv_validate(f55, len, MPOS_TLV_STRICT) == MPOS_OK);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz f;
    static mpos_emv_ctx k;
    mpos_emv_env env;
    mpos_emv_txn txn;
    int r;
    if (size < 1) {
        return 0;
    }
    init_once();
    memset(&f, 0, sizeof(f));
    f.options = data[0];
    f.scripted = data[0] & 1;
    f.p = data + 1;
    f.left = size - 1;
    f.card = templates[(data[0] >> 1) % NPROFILES]; /* fresh state; shares the key */

    memset(&env, 0, sizeof(env));
    env.ctx = &f;
    env.card_reset = io_reset;
    env.card_io = io_exchange;
    env.rng = io_rng;
    env.now = io_now;
    env.pin_entry = io_pin;
    memset(&txn, 0, sizeof(txn));
    txn.amount = 100;
    mpos_emv_init(&k, &params, &env);
    r = mpos_emv_start(&k, &txn);
    check_result(&k, r);
    accessors(&k);
    if (r == MPOS_EMV_ONLINE) {
        uint8_t iad[16], scripts[64], f55[320];
        size_t len = 0, sl = 0;
        mpos_emv_online_response resp;
        memset(&resp, 0, sizeof(resp));
        resp.approved = (f.options & 0x20) != 0;
        memcpy(resp.arc, resp.approved ? "00" : "05", 2);
        if ((f.options & 0x40) && !f.scripted &&
            mpos_emv_field55(&k, MPOS_EMV_F55_REQUEST, f55, sizeof(f55), &len) == MPOS_OK) {
            resp.iad91_len = right_arpc(&f, f55, len, (const char *)resp.arc, iad);
        } else {
            uint8_t n = 0;
            (void)take(&f, &n);
            resp.iad91_len = n % 17; /* 0..16: lengths the kernel must refuse too */
            for (size_t i = 0; i < resp.iad91_len; i++) {
                iad[i] = 0;
                (void)take(&f, &iad[i]);
            }
        }
        resp.iad91 = iad;
        if (f.options & 0x80) {
            while (sl < sizeof(scripts) && take(&f, &scripts[sl])) {
                sl++;
            }
            resp.scripts = scripts;
            resp.scripts_len = sl;
        }
        /* No response at all (unable to go online) for one combination of the options. */
        int none = (f.options & 0xE0) == 0x80;
        r = mpos_emv_complete(&k, none ? NULL : &resp);
        CHECK(r >= MPOS_EMV_APPROVED && r <= MPOS_EMV_TERMINATED);
        check_result(&k, r);
        /* Never approved unless the issuer approved (the card cannot upgrade an AAC). */
        CHECK(r != MPOS_EMV_APPROVED || (!none && resp.approved));
        accessors(&k);
    }
    mpos_emv_clear(&k);
    return 0;
}
