/* Power loss at every step (label faults): the key store over the in-memory storage model of
 * tests/mem_storage.h, where a crash can hit each of the five points of an atomic write
 * (torn temporary file, before fsync, before rename, renamed but directory not synced,
 * synced but not returned) and both points of a counter increment, and a rename not yet
 * synced survives the power loss or not.
 *
 * After every crash the device "reboots": the key store is opened again from storage (it must
 * open: a power loss is never a reason to refuse a store) and the workload carries on. The
 * checker (tests/ks_check.h) holds the host side and sees every transaction the key store
 * returned: no KSN may come twice, counters and sequence numbers only move forward, the
 * working keys are the host's, and what storage holds after each reboot has a next counter
 * above every counter used and registers that are exactly the keys of later counters (so no
 * used key can be derived from it) and no used key anywhere. The pending reversal and the
 * activation are each the last value stored or the one being stored when the power went.
 *
 *   - sweep: one crash at each fault point of a fixed workload (import, transactions,
 *     reversal stored / updated / acknowledged, activation, device key), rename kept and
 *     dropped; AES-128, AES-256 and TDES DUKPT;
 *   - random: thousands of crashes over randomised workloads, several per run, crashes
 *     during recovery included;
 *   - transient errors the device survives (the key store fails, is opened again);
 *   - retire and re-import at every crash point;
 *   - the checks have teeth: a storage that lies about durability is refused at the next
 *     open, and a full rollback (records and counters, beyond the HAL contract) is caught by
 *     the checker as a repeated KSN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keystore.h"
#include "ks_check.h"
#include "mem_storage.h"
#include "mpos/util.h"
#include "testutil.h"

static mpos_crypto_ctx cc;

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}
static const mpos_hal_rng rng = {NULL, test_random};

enum kind { K_AES128, K_AES256, K_TDES };

enum op {
    OP_IMPORT,
    OP_DEVKEY,
    OP_TXN,
    OP_REV_STORE,
    OP_REV_UPDATE,
    OP_REV_DONE,
    OP_ACTIVATE,
    OP_DEACTIVATE
};

typedef struct world {
    mem_storage *m;
    mpos_hal_storage hal;
    mpos_keystore ks;
    ks_check chk;
    enum kind kind;
    uint8_t ik[32];
    size_t ik_len;
    /* what storage must hold: the last value stored, or the one in flight at a crash */
    int rev_present, rev_inflight, cand_present;
    mpos_keystore_reversal rev, cand;
    int act, act_inflight, act_cand;
    int devkey, devkey_inflight;
    int imported;
    uint64_t recoveries;
} world;

static world *w;
static mem_storage *mem;

/* Copies the durable content of slot name to dst (MPOS_HAL_SLOT_MAX bytes); its length. */
static size_t peek_copy(const char *name, uint8_t *dst)
{
    size_t len = 0;
    const uint8_t *p = mem_storage_peek(mem, name, &len);
    assert_non_null(p);
    memcpy(dst, p, len);
    return len;
}

static int setup(void **state)
{
    (void)state;
    w = calloc(1, sizeof(*w));
    mem = calloc(1, sizeof(*mem));
    if (w == NULL || mem == NULL || mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    free(w);
    free(mem);
    return 0;
}

static void start(enum kind kind, uint64_t seed)
{
    uint8_t bdk[32], id[10];
    size_t bdk_len;
    memset(w, 0, sizeof(*w));
    w->m = mem;
    mem_storage_init(mem, seed);
    mem_storage_bind(mem, &w->hal);
    w->kind = kind;
    if (kind == K_TDES) {
        bdk_len = tu_hex("0123456789ABCDEFFEDCBA9876543210", bdk, sizeof(bdk));
        tu_hex("FFFF9876543210E00000", id, sizeof(id));
        id[5] = (uint8_t)seed; /* one device per run */
        ks_check_init(&w->chk, &cc, MPOS_KEYSTORE_DUKPT_TDES, bdk, bdk_len, id,
                      (enum mpos_dukpt_aes_key_type)0);
    } else {
        bdk_len = tu_hex(kind == K_AES128 ? "FEDCBA9876543210F1F1F1F1F1F1F1F1"
                                          : "FEDCBA9876543210F1F1F1F1F1F1F1F1"
                                            "FEDCBA9876543210F1F1F1F1F1F1F1F1",
                         bdk, sizeof(bdk));
        tu_hex("1234567890123456", id, sizeof(id));
        mpos_store_be32(id + 4, (uint32_t)seed);
        ks_check_init(&w->chk, &cc, MPOS_KEYSTORE_DUKPT_AES, bdk, bdk_len, id,
                      kind == K_AES128 ? MPOS_DUKPT_AES_KEY_AES128 : MPOS_DUKPT_AES_KEY_AES256);
    }
    w->ik_len = ks_check_initial_key(&w->chk, w->ik);
    assert_true(w->ik_len != 0);
    assert_int_equal(mpos_keystore_open(&w->ks, &w->hal, &rng, &cc), MPOS_OK);
}

static void check_or_fail(int r)
{
    if (r != 0) {
        fail_msg("after %llu recoveries: %s", (unsigned long long)w->recoveries, w->chk.why);
    }
}

static int same_reversal(const mpos_keystore_reversal *a, const mpos_keystore_reversal *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

/* Power comes back: the store must open, and hold what the models allow. */
static void recover(void)
{
    int rc = MPOS_ERR_IO;
    for (int tries = 0; tries < 1000 && rc != MPOS_OK; tries++) {
        if (w->m->dead || !w->m->transient) {
            mem_storage_reboot(w->m);
        }
        rc = mpos_keystore_open(&w->ks, &w->hal, &rng, &cc);
        if (rc != MPOS_OK && !w->m->dead && !w->m->transient) {
            fail_msg("the store is refused after a power loss: %d (%s)", rc, mpos_hal_strerror(rc));
        }
    }
    assert_int_equal(rc, MPOS_OK);
    w->recoveries++;
    /* The DUKPT invariants on what is stored now. */
    check_or_fail(ks_check_stored(&w->chk, &w->hal));
    mpos_keystore_info info;
    assert_int_equal(mpos_keystore_info_get(&w->ks, &info), MPOS_OK);
    if (w->imported) {
        assert_int_equal(info.scheme, w->chk.scheme);
    }
    assert_true(info.sequence >= w->chk.last_sequence);
    /* The reversal: the last one stored, or the one being stored. */
    mpos_keystore_reversal got;
    int present = mpos_keystore_reversal_get(&w->ks, &got) == MPOS_OK;
    int ok = present == w->rev_present && (!present || same_reversal(&got, &w->rev));
    if (!ok && w->rev_inflight) {
        ok = present == w->cand_present && (!present || same_reversal(&got, &w->cand));
    }
    if (!ok) {
        fail_msg("reversal after a crash: present %d, expected %d (in flight %d)", present,
                 w->rev_present, w->rev_inflight);
    }
    w->rev_present = present;
    w->rev = got;
    w->rev_inflight = 0;
    /* Activation and device key likewise. */
    ok = info.activated == w->act || (w->act_inflight && info.activated == w->act_cand);
    assert_true(ok);
    w->act = info.activated;
    w->act_inflight = 0;
    assert_true(info.has_device_key == w->devkey || (w->devkey_inflight && info.has_device_key));
    w->devkey = info.has_device_key;
    w->devkey_inflight = 0;
}

static mpos_keystore_reversal make_reversal(uint32_t seq, uint8_t attempts)
{
    mpos_keystore_reversal r;
    memset(&r, 0, sizeof(r));
    r.sequence = seq != 0 ? seq : 1;
    r.txn_type = 1;
    r.amount = 100u * seq + 1;
    r.currency = 156;
    r.entry_mode = 0x05;
    r.reason = MPOS_REVERSAL_NO_RESPONSE;
    r.attempts = attempts;
    r.ksn_len = 10;
    memset(r.ksn, (int)seq, 10);
    strcpy(r.datetime, "20250615093000");
    strcpy(r.masked_pan, "622202******0001");
    return r;
}

/* Runs one operation. 0 when done (or nothing to do), 1 when the power went. */
static int do_op(enum op op)
{
    int rc = MPOS_OK;
    mpos_keystore_txn txn;
    switch (op) {
    case OP_IMPORT: {
        mpos_keystore_info info;
        assert_int_equal(mpos_keystore_info_get(&w->ks, &info), MPOS_OK);
        if (info.scheme != MPOS_KEYSTORE_NONE) {
            w->imported = 1;
            return 0;
        }
        if (w->kind == K_TDES) {
            rc = mpos_keystore_import_dukpt_tdes(&w->ks, w->ik, w->chk.ik_id);
        } else {
            rc = mpos_keystore_import_dukpt_aes(&w->ks, w->ik, w->ik_len, w->chk.ik_id,
                                                w->chk.wk_type);
        }
        if (rc == MPOS_OK) {
            w->imported = 1;
        }
        break;
    }
    case OP_DEVKEY: {
        uint8_t pub[65];
        if (w->devkey) {
            return 0;
        }
        w->devkey_inflight = 1;
        rc = mpos_keystore_generate_device_key(&w->ks, pub);
        if (rc == MPOS_OK) {
            w->devkey = 1;
            w->devkey_inflight = 0;
        }
        break;
    }
    case OP_TXN:
        rc = mpos_keystore_next_transaction(&w->ks, &txn);
        if (rc == MPOS_OK) {
            check_or_fail(ks_check_use(&w->chk, &txn));
        }
        mpos_keystore_txn_clear(&txn);
        break;
    case OP_REV_STORE:
    case OP_REV_UPDATE:
        if ((op == OP_REV_STORE) == w->rev_present) {
            return 0;
        }
        w->cand = op == OP_REV_STORE
                      ? make_reversal(w->chk.last_sequence, 0)
                      : make_reversal(w->rev.sequence, (uint8_t)(w->rev.attempts + 1));
        w->cand_present = 1;
        w->rev_inflight = 1;
        rc = mpos_keystore_reversal_store(&w->ks, &w->cand);
        if (rc == MPOS_OK) {
            w->rev = w->cand;
            w->rev_present = 1;
            w->rev_inflight = 0;
        }
        break;
    case OP_REV_DONE:
        if (!w->rev_present) {
            return 0;
        }
        w->cand_present = 0;
        w->rev_inflight = 1;
        rc = mpos_keystore_reversal_done(&w->ks, w->rev.sequence);
        if (rc == MPOS_OK) {
            w->rev_present = 0;
            memset(&w->rev, 0, sizeof(w->rev));
            w->rev_inflight = 0;
        }
        break;
    case OP_ACTIVATE:
    case OP_DEACTIVATE:
        if ((op == OP_ACTIVATE) == w->act) {
            return 0;
        }
        w->act_cand = op == OP_ACTIVATE;
        w->act_inflight = 1;
        rc = op == OP_ACTIVATE ? mpos_keystore_set_activation(&w->ks, "898310048990001", "T0000001")
                               : mpos_keystore_deactivate(&w->ks);
        if (rc == MPOS_OK) {
            w->act = w->act_cand;
            w->act_inflight = 0;
        }
        break;
    }
    if (rc == MPOS_OK) {
        return 0;
    }
    /* Only the storage failing may make an operation fail here. */
    if (!w->m->dead && !w->m->transient) {
        fail_msg("operation %d failed without a fault: %d", op, rc);
    }
    assert_int_equal(rc, MPOS_ERR_IO);
    return 1;
}

/* Runs ops in order; an operation cut by a crash is run again after the recovery. */
static void run_script(const enum op *ops, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (do_op(ops[i]) == 0) {
            i++;
        } else {
            recover();
        }
    }
}

static const enum op script[] = {
    OP_IMPORT,    OP_TXN,        OP_TXN, OP_DEVKEY,   OP_TXN,        OP_REV_STORE,
    OP_TXN,       OP_REV_UPDATE, OP_TXN, OP_TXN,      OP_ACTIVATE,   OP_TXN,
    OP_REV_DONE,  OP_TXN,        OP_TXN, OP_TXN,      OP_DEACTIVATE, OP_TXN,
    OP_REV_STORE, OP_TXN,        OP_TXN, OP_REV_DONE, OP_TXN,
};
#define SCRIPT_LEN  (sizeof(script) / sizeof(script[0]))
#define SCRIPT_TXNS 14

static void finish_checks(void)
{
    check_or_fail(ks_check_stored(&w->chk, &w->hal));
    mpos_keystore_close(&w->ks);
    assert_int_equal(mpos_keystore_open(&w->ks, &w->hal, &rng, &cc), MPOS_OK);
    check_or_fail(ks_check_stored(&w->chk, &w->hal));
    /* One more transaction after everything: still no repeat. */
    assert_int_equal(do_op(OP_TXN), 0);
    mpos_keystore_close(&w->ks);
}

static void sweep(enum kind kind)
{
    /* The fault points of a clean run. */
    start(kind, 7);
    run_script(script, SCRIPT_LEN);
    uint64_t points = mem->points;
    assert_int_equal(w->chk.n_used, SCRIPT_TXNS);
    mpos_keystore_close(&w->ks);
    uint64_t runs = 0, kept = 0, dropped = 0;
    for (uint64_t k = 1; k <= points; k++) {
        for (int policy = MEM_KEEP; policy <= MEM_DROP; policy++) {
            start(kind, 7);
            mem->crash_at = k;
            mem->policy = (enum mem_policy)policy;
            run_script(script, SCRIPT_LEN);
            assert_int_equal(mem->crashes, 1);
            assert_int_equal(w->chk.n_used, SCRIPT_TXNS);
            kept += mem->pending_kept;
            dropped += mem->pending_dropped;
            finish_checks();
            runs++;
        }
    }
    print_message("sweep %s: %llu fault points, %llu runs with one crash each "
                  "(unsynced renames kept %llu, dropped %llu)\n",
                  kind == K_TDES     ? "TDES"
                  : kind == K_AES128 ? "AES-128"
                                     : "AES-256",
                  (unsigned long long)points, (unsigned long long)runs, (unsigned long long)kept,
                  (unsigned long long)dropped);
    assert_true(kept > 0 && dropped > 0);
}

static void test_sweep_aes128(void **state)
{
    (void)state;
    sweep(K_AES128);
}

static void test_sweep_aes256(void **state)
{
    (void)state;
    sweep(K_AES256);
}

static void test_sweep_tdes(void **state)
{
    (void)state;
    sweep(K_TDES);
}

/* Randomised workloads, a crash at any point with probability 4 % (several per run), during
 * recovery too; unsynced renames kept or dropped at random. */
static void test_random_crashes(void **state)
{
    (void)state;
    const unsigned trials = 1500 / tu_scale();
    const uint32_t per_trial = 40;
    uint64_t crashes = 0, torn = 0, recoveries = 0, txns = 0, kept = 0, dropped = 0;
    uint64_t at[7] = {0}, states = 0, registers = 0;
    for (unsigned t = 0; t < trials; t++) {
        start((enum kind)(t % 3), 1000 + t);
        mem->crash_ppm = 40000;
        mem->policy = MEM_RANDOM;
        static const enum op first[] = {OP_IMPORT, OP_DEVKEY};
        run_script(first, 2);
        while (w->chk.n_used < per_trial) {
            uint64_t x = mem_storage_rand(mem, 100);
            enum op op = x < 60   ? OP_TXN
                         : x < 70 ? OP_REV_STORE
                         : x < 78 ? OP_REV_UPDATE
                         : x < 88 ? OP_REV_DONE
                         : x < 94 ? OP_ACTIVATE
                                  : OP_DEACTIVATE;
            if (do_op(op) != 0) {
                recover();
            }
        }
        mem->crash_ppm = 0;
        finish_checks();
        crashes += mem->crashes;
        torn += mem->torn;
        recoveries += w->recoveries;
        txns += w->chk.n_used;
        kept += mem->pending_kept;
        dropped += mem->pending_dropped;
        states += w->chk.states_checked;
        registers += w->chk.registers_checked;
        for (int i = 0; i < 7; i++) {
            at[i] += mem->crashes_at[i];
        }
    }
    print_message("random: %u runs, %llu transactions, %llu crashes (W1 torn %llu, W2 %llu, "
                  "W3 %llu, W4 %llu, W5 %llu, C1 %llu, C2 %llu), %llu recoveries, unsynced "
                  "renames kept %llu / dropped %llu; %llu stored states and %llu registers "
                  "checked against the host\n",
                  trials, (unsigned long long)txns, (unsigned long long)crashes,
                  (unsigned long long)at[0], (unsigned long long)at[1], (unsigned long long)at[2],
                  (unsigned long long)at[3], (unsigned long long)at[4], (unsigned long long)at[5],
                  (unsigned long long)at[6], (unsigned long long)recoveries,
                  (unsigned long long)kept, (unsigned long long)dropped, (unsigned long long)states,
                  (unsigned long long)registers);
    assert_true(crashes >= 1000 / tu_scale());
    for (int i = 0; i < 7; i++) {
        assert_true(at[i] > 0);
    }
    (void)torn;
}

/* Errors the device survives: the key store fails and is opened again (no reboot). */
static void test_transient_errors(void **state)
{
    (void)state;
    uint64_t errors = 0;
    for (unsigned t = 0; t < 60; t++) {
        start((enum kind)(t % 3), 5000 + t);
        mem->transient = 1;
        mem->crash_ppm = 60000;
        static const enum op first[] = {OP_IMPORT};
        run_script(first, 1);
        while (w->chk.n_used < 30) {
            enum op op = mem_storage_rand(mem, 4) == 0 ? OP_REV_STORE : OP_TXN;
            if (mem_storage_rand(mem, 5) == 0) {
                op = OP_REV_DONE;
            }
            if (do_op(op) != 0) {
                recover();
            }
        }
        mem->transient = 0;
        mem->crash_ppm = 0;
        errors += mem->crashes;
        finish_checks();
    }
    print_message("transient: %llu storage errors survived\n", (unsigned long long)errors);
    assert_true(errors > 100);
}

/* The pending reversal through a crash at every point of the transactions after it. */
static void test_reversal_survives(void **state)
{
    (void)state;
    static const enum op ops[] = {OP_IMPORT,     OP_TXN, OP_REV_STORE, OP_TXN, OP_TXN,
                                  OP_REV_UPDATE, OP_TXN, OP_ACTIVATE,  OP_TXN};
    start(K_AES128, 11);
    run_script(ops, 3);
    uint64_t from = mem->points;
    run_script(ops + 3, 6);
    uint64_t to = mem->points;
    mpos_keystore_close(&w->ks);
    for (uint64_t k = from + 1; k <= to; k++) {
        start(K_AES128, 11);
        run_script(ops, 3);
        mpos_keystore_reversal stored = w->rev;
        mem->crash_at = k;
        mem->policy = (k & 1) ? MEM_KEEP : MEM_DROP;
        run_script(ops + 3, 6);
        assert_int_equal(mem->crashes, 1);
        mpos_keystore_reversal got;
        assert_int_equal(mpos_keystore_reversal_get(&w->ks, &got), MPOS_OK);
        assert_int_equal(got.sequence, stored.sequence);
        assert_true(got.attempts >= 1 && got.attempts <= 2); /* the update may run twice */
        assert_int_equal(got.amount, stored.amount);
        finish_checks();
    }
}

/* Retiring a key and importing the next, with a crash at every point of both. */
static void test_retire_import(void **state)
{
    (void)state;
    uint8_t ik2[32];
    uint8_t id2[8];
    size_t ik2_len = 0;
    static const enum op before[] = {OP_IMPORT, OP_TXN, OP_TXN, OP_TXN};
    /* Count the points of retire + import in a clean run. */
    start(K_AES128, 21);
    run_script(before, 4);
    w->imported = 0; /* the scheme may be none after a crash below */
    uint64_t from = mem->points;
    memcpy(id2, w->chk.ik_id, 8);
    id2[7] ^= 0xFF;
    {
        ks_check other;
        ks_check_init(&other, &cc, MPOS_KEYSTORE_DUKPT_AES, w->chk.bdk, w->chk.bdk_len, id2,
                      MPOS_DUKPT_AES_KEY_AES128);
        ik2_len = ks_check_initial_key(&other, ik2);
    }
    assert_int_equal(mpos_keystore_retire_keys(&w->ks), MPOS_OK);
    assert_int_equal(
        mpos_keystore_import_dukpt_aes(&w->ks, ik2, ik2_len, id2, MPOS_DUKPT_AES_KEY_AES128),
        MPOS_OK);
    uint64_t to = mem->points;
    mpos_keystore_close(&w->ks);
    for (uint64_t k = from + 1; k <= to; k++) {
        for (int policy = MEM_KEEP; policy <= MEM_DROP; policy++) {
            start(K_AES128, 21);
            run_script(before, 4);
            w->imported = 0;
            mem->crash_at = k;
            mem->policy = (enum mem_policy)policy;
            int rc = mpos_keystore_retire_keys(&w->ks);
            if (rc == MPOS_OK) {
                rc = mpos_keystore_import_dukpt_aes(&w->ks, ik2, ik2_len, id2,
                                                    MPOS_DUKPT_AES_KEY_AES128);
            }
            assert_int_equal(rc, MPOS_ERR_IO);
            recover();
            mpos_keystore_info info;
            assert_int_equal(mpos_keystore_info_get(&w->ks, &info), MPOS_OK);
            if (info.scheme == MPOS_KEYSTORE_DUKPT_AES &&
                memcmp(info.ik_id, w->chk.ik_id, 8) == 0) {
                /* Not retired: the old key carries on, without a repeat. */
                assert_int_equal(do_op(OP_TXN), 0);
            } else {
                /* Retired (and maybe the new key in): the old key can never come back. */
                if (info.scheme == MPOS_KEYSTORE_NONE) {
                    assert_int_equal(mpos_keystore_import_dukpt_aes(&w->ks, w->ik, w->ik_len,
                                                                    w->chk.ik_id,
                                                                    MPOS_DUKPT_AES_KEY_AES128),
                                     MPOS_ERR_KSN);
                    assert_int_equal(mpos_keystore_import_dukpt_aes(&w->ks, ik2, ik2_len, id2,
                                                                    MPOS_DUKPT_AES_KEY_AES128),
                                     MPOS_OK);
                }
                assert_int_equal(mpos_keystore_info_get(&w->ks, &info), MPOS_OK);
                assert_memory_equal(info.ik_id, id2, 8);
                assert_int_equal(info.next_counter, 1);
                assert_true(info.sequence >= 3);
                assert_int_equal(mpos_keystore_retire_keys(&w->ks), MPOS_OK);
                assert_int_equal(mpos_keystore_import_dukpt_aes(&w->ks, w->ik, w->ik_len,
                                                                w->chk.ik_id,
                                                                MPOS_DUKPT_AES_KEY_AES128),
                                 MPOS_ERR_KSN);
            }
            mpos_keystore_close(&w->ks);
        }
    }
    MPOS_WIPE_BUFFER(ik2);
}

/* A storage that says "written" before the directory is synced loses those writes at the
 * power loss: the key store then refuses to open (rollback), it never starts over. */
static void test_lying_storage_refused(void **state)
{
    (void)state;
    static const enum op ops[] = {OP_IMPORT, OP_TXN, OP_TXN, OP_TXN};
    start(K_AES128, 31);
    mem->lie = 1;
    run_script(ops, 4);
    mpos_keystore_close(&w->ks);
    mem_storage_reboot(mem);
    int rc = mpos_keystore_open(&w->ks, &w->hal, &rng, &cc);
    assert_int_equal(rc, MPOS_ERR_ROLLBACK);
}

/* The checker fires on what it is there to catch. */
static void test_checker_has_teeth(void **state)
{
    (void)state;
    static uint8_t saved[MPOS_HAL_SLOT_MAX];
    static const enum op ops[] = {OP_IMPORT, OP_TXN, OP_TXN, OP_TXN};
    size_t len;
    start(K_AES128, 41);
    run_script(ops, 4);
    /* A full rollback (record and counters: beyond what the HAL contract allows). */
    len = peek_copy(MPOS_KEYSTORE_SLOT_KEYS, saved);
    uint64_t counters[MPOS_HAL_COUNTERS];
    memcpy(counters, mem->counters, sizeof(counters));
    run_script(ops + 1, 3);
    mpos_keystore_close(&w->ks);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, saved, len);
    memcpy(mem->counters, counters, sizeof(counters));
    assert_int_equal(mpos_keystore_open(&w->ks, &w->hal, &rng, &cc), MPOS_OK);
    assert_int_equal(ks_check_stored(&w->chk, &w->hal), -1);
    print_message("checker on a rolled-back state: %s\n", w->chk.why);
    w->chk.failed = 0;
    w->chk.last_stored_next = 0;
    mpos_keystore_txn txn;
    assert_int_equal(mpos_keystore_next_transaction(&w->ks, &txn), MPOS_OK);
    assert_int_equal(ks_check_use(&w->chk, &txn), -1);
    print_message("checker on the next transaction: %s\n", w->chk.why);
    mpos_keystore_txn_clear(&txn);
    mpos_keystore_close(&w->ks);
    /* A state that still holds the register of a used counter. */
    mpos_dukpt_aes_terminal t;
    assert_int_equal(mpos_dukpt_aes_terminal_load(&t, &cc, w->ik, w->ik_len, w->chk.ik_id),
                     MPOS_OK);
    w->chk.last_stored_next = 0;
    assert_int_equal(ks_check_state(&w->chk, &t, (const uint8_t *)t.registers, sizeof(t.registers)),
                     -1);
    print_message("checker on a state of counter 1: %s\n", w->chk.why);
    /* The used key itself in stored bytes. */
    uint8_t ksn[12];
    assert_int_equal(mpos_dukpt_aes_terminal_load(&t, &cc, w->ik, w->ik_len, w->chk.ik_id),
                     MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_next(&t, &cc, ksn), MPOS_OK);
    static uint8_t raw[64];
    memcpy(raw + 5, t.current, 16);
    mpos_dukpt_aes_terminal_done(&t);
    mpos_dukpt_aes_terminal clean;
    memset(&clean, 0, sizeof(clean));
    clean.next_counter = 0; /* exhausted: no registers */
    clean.key_len = t.key_len;
    w->chk.last_stored_next = 0;
    assert_int_equal(ks_check_state(&w->chk, &clean, raw, sizeof(raw)), -1);
    print_message("checker on raw bytes holding a used key: %s\n", w->chk.why);
    mpos_dukpt_aes_terminal_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_aes128),      cmocka_unit_test(test_sweep_aes256),
        cmocka_unit_test(test_sweep_tdes),        cmocka_unit_test(test_random_crashes),
        cmocka_unit_test(test_transient_errors),  cmocka_unit_test(test_reversal_survives),
        cmocka_unit_test(test_retire_import),     cmocka_unit_test(test_lying_storage_refused),
        cmocka_unit_test(test_checker_has_teeth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
