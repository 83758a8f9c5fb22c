/* Tests of the signed EMV parameter package (terminal/core/params), on the in-memory storage
 * HAL of the key store's test kit.
 *
 * A package signed by an endorsed key is applied and the kernel parameters reflect it (the
 * UnionPay AIDs A000000333010101/02/03, TACs, limits, CA key, country, currency, MCC); every
 * single-bit flip of it is refused and changes nothing; a key the anchor did not endorse (or
 * endorsed for another usage or period) is refused; an older or equal version is refused; the
 * version survives a reboot and an old copy of the slot put back is refused; a minimum
 * firmware above the running one gives MPOS_PARAMS_FIRMWARE_TOO_OLD and empties the AIDs; the
 * parser's strictness and the builder round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emv_kernel.h"
#include "mem_storage.h"
#include "mpos/ecc.h"
#include "mpos/util.h"
#include "params.h"
#include "testutil.h"

#define FW_1_2_0 0x00010200u
#define FW_2_0_0 0x00020000u
#define ISSUED   INT64_C(1767225600) /* 2026-01-01 */

static mpos_crypto_ctx cc;
static mem_storage *mem;
static mpos_hal_storage hal;
static mpos_hal_rng rng;
static mpos_params_store st;
static mpos_emv_params emv;

static uint8_t anchor_priv[32], anchor_pub[65];
static uint8_t signer_priv[32], signer_pub[65];
static uint8_t rogue_priv[32], rogue_pub[65];

static uint8_t endorsement[256];
static size_t endorsement_len;

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}

static int sign_with(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

static void endorse(const uint8_t *by_priv, const uint8_t *pub, uint8_t usage, int64_t nb,
                    int64_t na, uint8_t *out, size_t *len)
{
    mpos_params_endorsement e;
    memset(&e, 0, sizeof(e));
    e.usage = usage;
    e.not_before = nb;
    e.not_after = na;
    memcpy(e.pub, pub, 65);
    assert_int_equal(mpos_params_endorsement_build(&e, sign_with, (void *)by_priv, out, 256, len),
                     MPOS_OK);
}

static void fill_params(mpos_params *p, uint32_t version, uint32_t min_fw)
{
    static const char *aids[3] = {"A000000333010101", "A000000333010102", "A000000333010103"};
    memset(p, 0, sizeof(*p));
    p->version = version;
    p->issued = ISSUED;
    p->min_firmware = min_fw;
    p->country[0] = 0x01;
    p->country[1] = 0x56;
    p->currency[0] = 0x01;
    p->currency[1] = 0x56;
    p->currency_exponent = 2;
    p->has_mcc = 1;
    p->mcc[0] = 0x58;
    p->mcc[1] = 0x12;
    for (size_t i = 0; i < 3; i++) {
        mpos_params_aid *a = &p->aids[i];
        a->aid_len = tu_hex(aids[i], a->aid, sizeof(a->aid));
        a->partial = i == 0;
        a->app_version[0] = 0x00;
        a->app_version[1] = 0x30;
        tu_hex("0010000000", a->tac_denial, 5);
        tu_hex("D84004F800", a->tac_online, 5);
        tu_hex("D84000A800", a->tac_default, 5);
        a->floor_limit = (uint32_t)(100 * (i + 1));
        a->txn_limit = 5000000;
    }
    p->aid_count = 3;
    mpos_params_capk *k = &p->capks[0];
    tu_hex("A000000333", k->rid, 5);
    k->index = 0x08;
    k->modulus_len = 248;
    for (size_t i = 0; i < k->modulus_len; i++) {
        k->modulus[i] = (uint8_t)(0xB5 + 7 * i);
    }
    k->modulus[0] = 0xC1;
    k->modulus[247] |= 1;
    k->exponent[0] = 0x03;
    k->exponent_len = 1;
    k->expiry = 20301231;
    p->capk_count = 1;
}

/* A package of version, signed by sign_priv, with the endorsement of the fixture. */
static size_t make_pkg(uint32_t version, uint32_t min_fw, const uint8_t *sign_priv, uint8_t *out)
{
    mpos_params p;
    size_t len = 0;
    fill_params(&p, version, min_fw);
    assert_int_equal(mpos_params_build(&p, endorsement, endorsement_len, sign_with,
                                       (void *)sign_priv, out, MPOS_PARAMS_MAX_LEN, &len),
                     MPOS_OK);
    return len;
}

static void reopen(uint32_t fw, int expect)
{
    mpos_params_close(&st);
    assert_int_equal(mpos_params_open(&st, &hal, &rng, &cc, fw, &emv), expect);
}

static int setup(void **state)
{
    (void)state;
    if (mpos_crypto_init(&cc) != MPOS_OK || mpos_ec_p256_generate(anchor_priv, anchor_pub) ||
        mpos_ec_p256_generate(signer_priv, signer_pub) ||
        mpos_ec_p256_generate(rogue_priv, rogue_pub)) {
        return -1;
    }
    mem = malloc(sizeof(*mem));
    if (mem == NULL) {
        return -1;
    }
    rng.ctx = NULL;
    rng.random = test_random;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    free(mem);
    return 0;
}

/* Each test: a fresh device, the default kernel parameters, the endorsement of signer. */
static int fresh(void **state)
{
    (void)state;
    mem_storage_init(mem, 42);
    mem_storage_bind(mem, &hal);
    mpos_emv_params_default(&emv);
    emv.aid_count = 1; /* so that a change is visible */
    endorse(anchor_priv, signer_pub, MPOS_PARAMS_USAGE, ISSUED - 86400, ISSUED + 86400 * 365,
            endorsement, &endorsement_len);
    if (mpos_params_open(&st, &hal, &rng, &cc, FW_1_2_0, &emv) != MPOS_PARAMS_NONE) {
        return -1;
    }
    return 0;
}

static void test_apply(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN], want[16];
    size_t len = make_pkg(3, FW_1_2_0, signer_priv, pkg);
    const mpos_params *cur = NULL;
    int allowed = 0;
    assert_int_equal(mpos_params_current(&st, &cur, &allowed), MPOS_PARAMS_NONE);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED + 10, pkg, len, &emv),
        MPOS_OK);
    assert_int_equal(emv.aid_count, 3);
    static const char *aids[3] = {"A000000333010101", "A000000333010102", "A000000333010103"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = tu_hex(aids[i], want, sizeof(want));
        assert_int_equal(emv.aids[i].aid_len, n);
        assert_memory_equal(emv.aids[i].aid, want, n);
        assert_int_equal(emv.aids[i].partial, i == 0);
        assert_memory_equal(emv.aids[i].app_version, "\x00\x30", 2);
        assert_memory_equal(emv.aids[i].tac_denial, "\x00\x10\x00\x00\x00", 5);
        assert_memory_equal(emv.aids[i].tac_online, "\xD8\x40\x04\xF8\x00", 5);
        assert_memory_equal(emv.aids[i].tac_default, "\xD8\x40\x00\xA8\x00", 5);
    }
    assert_int_equal(emv.capk_count, 1);
    assert_memory_equal(emv.capks[0].rid, "\xA0\x00\x00\x03\x33", 5);
    assert_int_equal(emv.capks[0].index, 8);
    assert_int_equal(emv.capks[0].modulus_len, 248);
    assert_int_equal(emv.capks[0].modulus[0], 0xC1);
    assert_int_equal(emv.capks[0].exponent_len, 1);
    assert_memory_equal(emv.terminal_country, "\x01\x56", 2);
    assert_memory_equal(emv.currency, "\x01\x56", 2);
    assert_int_equal(emv.currency_exponent, 2);
    assert_memory_equal(emv.mcc, "\x58\x12", 2);
    assert_int_equal(emv.floor_limit, 100);    /* the lowest of the AIDs' */
    assert_int_equal(emv.terminal_type, 0x21); /* not carried: left as it was */

    assert_int_equal(mpos_params_current(&st, &cur, &allowed), MPOS_OK);
    assert_int_equal(cur->version, 3);
    assert_int_equal(allowed, 1);
    /* Per-AID limits; partial selection only where allowed. */
    uint8_t card_aid[16];
    size_t n = tu_hex("A00000033301010155", card_aid, sizeof(card_aid));
    const mpos_params_aid *a = mpos_params_aid_find(cur, card_aid, n);
    assert_non_null(a);
    assert_int_equal(a->floor_limit, 100);
    assert_int_equal(a->txn_limit, 5000000);
    n = tu_hex("A00000033301010255", card_aid, sizeof(card_aid));
    assert_null(mpos_params_aid_find(cur, card_aid, n));
    n = tu_hex("A000000333010102", card_aid, sizeof(card_aid));
    assert_ptr_equal(mpos_params_aid_find(cur, card_aid, n), &cur->aids[1]);
    mpos_params_close(&st);
}

static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN];
    size_t len = make_pkg(4, FW_1_2_0, signer_priv, pkg);
    mpos_emv_params before = emv;
    uint64_t counter = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        pkg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv);
        if (rc >= 0) {
            fail_msg("bit %zu accepted (%d)", bit, rc);
        }
        pkg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_memory_equal(&before, &emv, sizeof(emv));
    assert_int_equal(hal.counter_read(hal.ctx, MPOS_PARAMS_COUNTER, &counter), MPOS_OK);
    assert_int_equal(counter, 0);
    size_t slot_len = 0;
    assert_null(mem_storage_peek(mem, MPOS_PARAMS_SLOT, &slot_len));
    /* The untouched package still goes in. */
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    mpos_params_close(&st);
}

static void test_not_endorsed(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN];
    mpos_emv_params before = emv;
    mpos_params_package out;
    /* Signed by a key the endorsement does not name. */
    size_t len = make_pkg(5, FW_1_2_0, rogue_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_VERIFY);
    /* The rogue key endorsed by itself (not the anchor). */
    endorse(rogue_priv, rogue_pub, MPOS_PARAMS_USAGE, 0, ISSUED * 2, endorsement, &endorsement_len);
    len = make_pkg(5, FW_1_2_0, rogue_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_VERIFY);
    /* Under the anchor the rogue endorsed, it verifies: the anchor is what decides. */
    assert_int_equal(mpos_params_verify(rogue_pub, pkg, len, MPOS_PARAMS_NO_CLOCK, &out), MPOS_OK);
    /* The anchor's endorsement for another usage. */
    endorse(anchor_priv, signer_pub, 2, 0, ISSUED * 2, endorsement, &endorsement_len);
    len = make_pkg(5, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_VERIFY);
    /* Validity: the issue time outside it, or the trusted time outside it. */
    endorse(anchor_priv, signer_pub, MPOS_PARAMS_USAGE, ISSUED + 1, ISSUED * 2, endorsement,
            &endorsement_len);
    len = make_pkg(5, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(mpos_params_verify(anchor_pub, pkg, len, MPOS_PARAMS_NO_CLOCK, &out),
                     MPOS_ERR_VERIFY);
    endorse(anchor_priv, signer_pub, MPOS_PARAMS_USAGE, 0, ISSUED + 100, endorsement,
            &endorsement_len);
    len = make_pkg(5, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(mpos_params_verify(anchor_pub, pkg, len, ISSUED + 101, &out), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_params_verify(anchor_pub, pkg, len, ISSUED + 100, &out), MPOS_OK);
    /* A bad anchor key. */
    uint8_t bad[65] = {0x04};
    assert_int_equal(mpos_params_verify(bad, pkg, len, MPOS_PARAMS_NO_CLOCK, &out), MPOS_ERR_KEY);
    assert_memory_equal(&before, &emv, sizeof(emv));
    mpos_params_close(&st);
}

static void test_replay(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN], old[MPOS_PARAMS_MAX_LEN];
    size_t old_len = make_pkg(5, FW_1_2_0, signer_priv, old);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, old, old_len, &emv),
        MPOS_OK);
    /* The same package again, and another of the same version. */
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, old, old_len, &emv),
        MPOS_ERR_ROLLBACK);
    size_t len = make_pkg(5, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_ROLLBACK);
    len = make_pkg(4, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_ROLLBACK);
    len = make_pkg(6, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    /* The version only moves by packages: 4 billion is fine, then nothing older. */
    len = make_pkg(UINT32_MAX, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, old, old_len, &emv),
        MPOS_ERR_ROLLBACK);
    mpos_params_close(&st);
}

static void test_persisted(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN], slot7[MPOS_HAL_SLOT_MAX];
    const mpos_params *cur = NULL;
    size_t len = make_pkg(7, FW_1_2_0, signer_priv, pkg), slot_len = 0;
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    const uint8_t *s = mem_storage_peek(mem, MPOS_PARAMS_SLOT, &slot_len);
    assert_non_null(s);
    memcpy(slot7, s, slot_len);
    /* Power off and on: the package comes back, its version still refuses a replay. */
    mem_storage_reboot(mem);
    mpos_emv_params_default(&emv);
    reopen(FW_1_2_0, MPOS_OK);
    assert_int_equal(emv.aid_count, 3);
    assert_int_equal(emv.capk_count, 1);
    assert_int_equal(mpos_params_current(&st, &cur, NULL), MPOS_OK);
    assert_int_equal(cur->version, 7);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_ROLLBACK);
    len = make_pkg(8, FW_1_2_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    /* An old copy of the slot put back (version 7) is a rollback, as is deleting it. */
    mem_storage_poke(mem, MPOS_PARAMS_SLOT, slot7, slot_len);
    reopen(FW_1_2_0, MPOS_ERR_ROLLBACK);
    mem_storage_poke(mem, MPOS_PARAMS_SLOT, NULL, 0);
    reopen(FW_1_2_0, MPOS_ERR_ROLLBACK);
    /* A record that does not authenticate is refused, never reset. */
    slot7[40] ^= 1;
    mem_storage_poke(mem, MPOS_PARAMS_SLOT, slot7, slot_len);
    reopen(FW_1_2_0, MPOS_ERR_VERIFY);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_ERR_STATE);
}

static void test_firmware(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN];
    size_t len = make_pkg(3, FW_1_2_0, signer_priv, pkg);
    int allowed = -1;
    const mpos_params *cur = NULL;
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv), MPOS_OK);
    assert_int_equal(emv.aid_count, 3);
    /* Version 4 needs firmware 2.0.0: authentic and newer, held, but no transaction. */
    len = make_pkg(4, FW_2_0_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_1_2_0, ISSUED, pkg, len, &emv),
        MPOS_PARAMS_FIRMWARE_TOO_OLD);
    assert_int_equal(emv.aid_count, 0);
    assert_int_equal(mpos_params_current(&st, &cur, &allowed), MPOS_OK);
    assert_int_equal(allowed, 0);
    /* The kernel refuses to start without AIDs. */
    mpos_emv_ctx k;
    mpos_emv_env env;
    mpos_emv_txn txn = {.type = 0, .amount = 100, .sequence = 1};
    memset(&env, 0, sizeof(env));
    mpos_emv_init(&k, &emv, &env);
    assert_true(mpos_emv_start(&k, &txn) < 0);
    /* It stays so across a restart on the old firmware, and ends with the update. */
    reopen(FW_1_2_0, MPOS_PARAMS_FIRMWARE_TOO_OLD);
    reopen(FW_2_0_0, MPOS_OK);
    assert_int_equal(emv.aid_count, 3);
    assert_int_equal(mpos_params_current(&st, &cur, &allowed), MPOS_OK);
    assert_int_equal(cur->version, 4);
    assert_int_equal(allowed, 1);
    /* Exactly the minimum is enough. */
    len = make_pkg(5, FW_2_0_0, signer_priv, pkg);
    assert_int_equal(
        mpos_params_verify_and_apply(&st, anchor_pub, FW_2_0_0, ISSUED, pkg, len, &emv), MPOS_OK);
    mpos_params_close(&st);
}

static int replay_sig(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    (void)msg;
    (void)len;
    memcpy(sig, ctx, 64);
    return 0;
}

static void test_format(void **state)
{
    (void)state;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN], again[MPOS_PARAMS_MAX_LEN], e5[256];
    mpos_params_package out;
    size_t len = make_pkg(9, FW_1_2_0, signer_priv, pkg), n = 0, e5_len = 0;
    assert_int_equal(mpos_params_parse(pkg, len, &out), MPOS_OK);
    assert_int_equal(out.params.version, 9);
    assert_int_equal(out.params.capks[0].expiry, 20301231);
    assert_int_equal(pkg[0], 0xE3);
    assert_int_equal(out.endorsed[0], 0xE6);
    assert_int_equal(out.signed_part[0], 0xE4);
    /* Rebuilt from its fields with its own signatures: the same bytes. */
    assert_int_equal(mpos_params_endorsement_build(&out.endorsement, replay_sig,
                                                   out.endorsement.sig, e5, sizeof(e5), &e5_len),
                     MPOS_OK);
    assert_int_equal(
        mpos_params_build(&out.params, e5, e5_len, replay_sig, out.sig, again, sizeof(again), &n),
        MPOS_OK);
    assert_int_equal(n, len);
    assert_memory_equal(again, pkg, len);
    /* Every truncation, a trailing byte, an oversize buffer. */
    for (size_t cut = 0; cut < len; cut++) {
        assert_true(mpos_params_parse(pkg, cut, &out) < 0);
    }
    pkg[len] = 0x00;
    assert_int_equal(mpos_params_parse(pkg, len + 1, &out), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_params_parse(pkg, MPOS_PARAMS_MAX_LEN + 1, &out), MPOS_ERR_LENGTH);
    /* Another format version. */
    assert_int_equal(mpos_params_parse(pkg, len, &out), MPOS_OK);
    size_t c1 = (size_t)(out.signed_part - pkg);
    uint8_t *e4 = pkg + c1;
    size_t hdr = (e4[1] & 0x80u) ? 2u + (e4[1] & 0x7Fu) : 2u;
    assert_int_equal(e4[hdr], 0xC1);
    e4[hdr + 2] = 2;
    assert_int_equal(mpos_params_parse(pkg, len, &out), MPOS_ERR_UNSUPPORTED);
    e4[hdr + 2] = 1;
    /* The builder refuses what the parser would: no AID, a duplicate AID or CA key, a bad
     * exponent, an even modulus, a bad expiry, a version 0, a country out of range. */
    mpos_params p;
    uint8_t *o = again;
    size_t cap = sizeof(again);
    fill_params(&p, 1, 0);
    p.aid_count = 0;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.aids[1] = p.aids[0];
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.capks[1] = p.capks[0];
    p.capk_count = 2;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.capks[0].exponent[0] = 5;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.capks[0].modulus[247] &= 0xFE;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.capks[0].expiry = 20301301;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 0, 0);
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    fill_params(&p, 1, 0);
    p.country[0] = 0x10;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n),
                     MPOS_ERR_ARG);
    /* Eight AIDs and eight 248-byte CA keys fit in MPOS_PARAMS_MAX_LEN. */
    fill_params(&p, 1, 0);
    for (size_t i = 0; i < MPOS_PARAMS_MAX_AIDS; i++) {
        p.aids[i] = p.aids[0];
        p.aids[i].aid_len = MPOS_EMV_AID_MAX_LEN;
        p.aids[i].aid[15] = (uint8_t)i;
    }
    p.aid_count = MPOS_PARAMS_MAX_AIDS;
    for (size_t i = 0; i < MPOS_PARAMS_MAX_CAPKS; i++) {
        p.capks[i] = p.capks[0];
        p.capks[i].index = (uint8_t)i;
        p.capks[i].exponent_len = 3;
        memcpy(p.capks[i].exponent, "\x01\x00\x01", 3);
    }
    p.capk_count = MPOS_PARAMS_MAX_CAPKS;
    assert_int_equal(mpos_params_build(&p, e5, e5_len, replay_sig, out.sig, o, cap, &n), MPOS_OK);
    assert_int_equal(mpos_params_parse(o, n, &out), MPOS_OK);
    assert_int_equal(out.params.capk_count, MPOS_PARAMS_MAX_CAPKS);
    /* The anchor as a raw point. */
    uint8_t pub[65];
    assert_int_equal(mpos_params_anchor_key(anchor_pub, 65, pub), MPOS_OK);
    assert_memory_equal(pub, anchor_pub, 65);
    assert_int_equal(mpos_params_anchor_key(anchor_pub, 64, pub), MPOS_ERR_FORMAT);
    mpos_params_close(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_apply, fresh),
        cmocka_unit_test_setup(test_bit_flips, fresh),
        cmocka_unit_test_setup(test_not_endorsed, fresh),
        cmocka_unit_test_setup(test_replay, fresh),
        cmocka_unit_test_setup(test_persisted, fresh),
        cmocka_unit_test_setup(test_firmware, fresh),
        cmocka_unit_test_setup(test_format, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
