/* The key store on the simulator's file storage, a crash at every step (label faults).
 *
 * The fault hook of hal_linux stops the "device" before or after each step of every atomic
 * write (temporary file written, fsync'ed, renamed, directory fsync'ed), or tears the
 * temporary file. Then the storage and the key store are opened again from the directory
 * (leftover temporary files removed, an interrupted counter increment completed) and the
 * workload carries on. The checker of terminal/core/keystore/tests sees every transaction:
 * no KSN twice, counters forward only, and what the files hold never lets a used key be
 * derived. A real file system keeps what was renamed even without the directory fsync, so
 * this exercises the real code paths; tests/test_keystore_faults.c covers the renames a power
 * loss drops.
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hal_linux.h"
#include "keystore.h"
#include "ks_check.h"
#include "mpos/util.h"
#include "testutil.h"

#define MAX_STEPS 4096

struct plan {
    uint64_t steps;    /* steps seen */
    uint64_t crash_at; /* crash at this step (1-based), 0 never */
    enum mpos_hal_linux_fault how;
    int torn;     /* with a WRITE step: write half, then crash */
    uint32_t ppm; /* random crashes per million steps */
    uint64_t rng;
    uint64_t crashes, torn_writes;
    enum mpos_hal_linux_step kinds[MAX_STEPS];
};

static char base[256], dir[300];
static struct plan plan;
static mpos_hal_linux_storage st;
static mpos_hal_storage hal;
static mpos_hal_rng rng;
static mpos_crypto_ctx cc;
static mpos_keystore ks;
static ks_check chk;
static uint8_t ik[32];
static size_t ik_len;
static int rev_present;
static uint32_t rev_seq;

static uint64_t rnd(uint64_t n)
{
    plan.rng ^= plan.rng >> 12;
    plan.rng ^= plan.rng << 25;
    plan.rng ^= plan.rng >> 27;
    return (plan.rng * UINT64_C(2685821657736338717)) % n;
}

static enum mpos_hal_linux_fault hook(void *ctx, enum mpos_hal_linux_step step, const char *file,
                                      size_t *len)
{
    struct plan *p = ctx;
    (void)file;
    p->steps++;
    if (p->steps <= MAX_STEPS) {
        p->kinds[p->steps - 1] = step;
    }
    int crash =
        (p->crash_at != 0 && p->steps == p->crash_at) || (p->ppm != 0 && rnd(1000000) < p->ppm);
    if (!crash) {
        return MPOS_HAL_LINUX_RUN;
    }
    p->crashes++;
    enum mpos_hal_linux_fault how = p->how;
    int torn = p->torn;
    if (p->ppm != 0) {
        how = rnd(2) ? MPOS_HAL_LINUX_CRASH_AFTER : MPOS_HAL_LINUX_CRASH_BEFORE;
        torn = (int)rnd(2);
    }
    if (step == MPOS_HAL_LINUX_STEP_WRITE && torn) {
        *len = (size_t)rnd(*len);
        p->torn_writes++;
        return MPOS_HAL_LINUX_CRASH_AFTER;
    }
    return how;
}

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}

static void rm_store(void)
{
    DIR *dh = opendir(dir);
    if (dh != NULL) {
        struct dirent *e;
        while ((e = readdir(dh)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char p[600];
                snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
                (void)unlink(p);
            }
        }
        closedir(dh);
    }
    (void)rmdir(dir);
}

static int leftover_temporaries(void)
{
    int n = 0;
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh != NULL && (e = readdir(dh)) != NULL) {
        size_t l = strlen(e->d_name);
        n += l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0;
    }
    if (dh != NULL) {
        closedir(dh);
    }
    return n;
}

static int setup(void **state)
{
    (void)state;
    /* tmpfs when there is one: thousands of fsyncs, which the test cannot observe anyway. */
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(base, sizeof(base), "%s/mpos-ks-XXXXXX", tmp);
    if (mkdtemp(base) == NULL || mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/store", base);
    rng.ctx = NULL;
    rng.random = test_random;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_store();
    (void)rmdir(base);
    mpos_crypto_clear(&cc);
    return 0;
}

static void start(uint64_t seed)
{
    uint8_t bdk[16], ikid[8];
    rm_store();
    memset(&plan, 0, sizeof(plan));
    plan.rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
    rev_present = 0;
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, MPOS_HAL_LINUX_CREATE), MPOS_OK);
    mpos_hal_linux_storage_bind(&st, &hal);
    mpos_hal_linux_storage_set_fault(&st, hook, &plan);
    tu_hex("FEDCBA9876543210F1F1F1F1F1F1F1F1", bdk, sizeof(bdk));
    tu_hex("1234567890123456", ikid, sizeof(ikid));
    mpos_store_be32(ikid + 4, (uint32_t)seed);
    ks_check_init(&chk, &cc, MPOS_KEYSTORE_DUKPT_AES, bdk, 16, ikid, MPOS_DUKPT_AES_KEY_AES128);
    ik_len = ks_check_initial_key(&chk, ik);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
}

/* The power comes back: storage and key store opened again from the directory. */
static void recover(void)
{
    int rc = MPOS_ERR_IO;
    for (int tries = 0; tries < 1000 && rc != MPOS_OK; tries++) {
        mpos_keystore_close(&ks);
        mpos_hal_linux_storage_close(&st);
        assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_OK);
        assert_int_equal(leftover_temporaries(), 0);
        mpos_hal_linux_storage_bind(&st, &hal);
        mpos_hal_linux_storage_set_fault(&st, hook, &plan);
        rc = mpos_keystore_open(&ks, &hal, &rng, &cc);
        if (rc != MPOS_OK && !st.dead) {
            fail_msg("the store is refused after a crash: %d (%s)", rc, mpos_hal_strerror(rc));
        }
    }
    assert_int_equal(rc, MPOS_OK);
    if (ks_check_stored(&chk, &hal) != 0) {
        fail_msg("%s", chk.why);
    }
    mpos_keystore_reversal r;
    rev_present = mpos_keystore_reversal_get(&ks, &r) == MPOS_OK;
    rev_seq = r.sequence;
}

enum op { OP_IMPORT, OP_TXN, OP_REV, OP_REV_DONE, OP_ACT };

static int do_op(enum op op)
{
    int rc = MPOS_OK;
    mpos_keystore_info info;
    mpos_keystore_txn txn;
    switch (op) {
    case OP_IMPORT:
        assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
        if (info.scheme == MPOS_KEYSTORE_NONE) {
            rc = mpos_keystore_import_dukpt_aes(&ks, ik, ik_len, chk.ik_id,
                                                MPOS_DUKPT_AES_KEY_AES128);
        }
        break;
    case OP_TXN:
        rc = mpos_keystore_next_transaction(&ks, &txn);
        if (rc == MPOS_OK && ks_check_use(&chk, &txn) != 0) {
            fail_msg("%s", chk.why);
        }
        mpos_keystore_txn_clear(&txn);
        break;
    case OP_REV:
        if (!rev_present) {
            mpos_keystore_reversal r;
            memset(&r, 0, sizeof(r));
            r.sequence = chk.last_sequence != 0 ? chk.last_sequence : 1;
            r.txn_type = 1;
            r.amount = 500;
            r.currency = 156;
            r.reason = MPOS_REVERSAL_NO_RESPONSE;
            strcpy(r.datetime, "20250615093000");
            rc = mpos_keystore_reversal_store(&ks, &r);
            if (rc == MPOS_OK) {
                rev_present = 1;
                rev_seq = r.sequence;
            }
        }
        break;
    case OP_REV_DONE:
        if (rev_present) {
            rc = mpos_keystore_reversal_done(&ks, rev_seq);
            if (rc == MPOS_OK) {
                rev_present = 0;
            }
        }
        break;
    case OP_ACT:
        assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
        rc = info.activated ? mpos_keystore_deactivate(&ks)
                            : mpos_keystore_set_activation(&ks, "898310048990001", "T0000001");
        break;
    }
    if (rc == MPOS_OK) {
        return 0;
    }
    if (!st.dead) {
        fail_msg("operation %d failed without a crash: %d", op, rc);
    }
    assert_int_equal(rc, MPOS_ERR_IO);
    return 1;
}

static const enum op script[] = {OP_IMPORT, OP_TXN, OP_TXN, OP_REV,      OP_TXN,
                                 OP_TXN,    OP_ACT, OP_TXN, OP_REV_DONE, OP_TXN,
                                 OP_TXN,    OP_REV, OP_TXN, OP_ACT,      OP_TXN};
#define SCRIPT_TXNS 9

static void run_script(void)
{
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]);) {
        if (do_op(script[i]) == 0) {
            i++;
        } else {
            recover();
        }
    }
}

static void finish(void)
{
    plan.crash_at = 0;
    plan.ppm = 0;
    recover(); /* a clean restart at the end */
    assert_int_equal(do_op(OP_TXN), 0);
    mpos_keystore_close(&ks);
    mpos_hal_linux_storage_close(&st);
}

/* A crash before and after every step of every write of the workload, and a torn temporary
 * file at every data write. */
static void test_every_step(void **state)
{
    (void)state;
    start(1);
    run_script();
    uint64_t steps = plan.steps;
    assert_true(steps <= MAX_STEPS);
    static enum mpos_hal_linux_step kinds[MAX_STEPS];
    memcpy(kinds, plan.kinds, sizeof(kinds));
    mpos_keystore_close(&ks);
    mpos_hal_linux_storage_close(&st);
    uint64_t runs = 0, torn = 0;
    for (uint64_t k = 1; k <= steps; k++) {
        for (int variant = 0; variant < 3; variant++) {
            if (variant == 2 && kinds[k - 1] != MPOS_HAL_LINUX_STEP_WRITE) {
                continue;
            }
            start(1);
            plan.crash_at = k;
            plan.how = variant == 0 ? MPOS_HAL_LINUX_CRASH_BEFORE : MPOS_HAL_LINUX_CRASH_AFTER;
            plan.torn = variant == 2;
            run_script();
            assert_int_equal(plan.crashes, 1);
            assert_int_equal(chk.n_used, SCRIPT_TXNS);
            torn += plan.torn_writes;
            finish();
            runs++;
        }
    }
    print_message("files: %llu steps, %llu runs with one crash each (%llu torn writes)\n",
                  (unsigned long long)steps, (unsigned long long)runs, (unsigned long long)torn);
}

/* Random crashes, several per run, in recovery too. */
static void test_random_steps(void **state)
{
    (void)state;
    uint64_t crashes = 0, txns = 0;
    const unsigned trials = 60 / tu_scale() + 1;
    for (unsigned t = 0; t < trials; t++) {
        start(100 + t);
        plan.ppm = 30000;
        while (chk.n_used < 30) {
            uint64_t x = rnd(100);
            enum op op = x < 70 ? OP_TXN : x < 80 ? OP_REV : x < 90 ? OP_REV_DONE : OP_ACT;
            if (do_op(OP_IMPORT) != 0 || do_op(op) != 0) {
                recover();
            }
        }
        crashes += plan.crashes;
        txns += chk.n_used;
        finish();
    }
    print_message("files, random: %u runs, %llu transactions, %llu crashes\n", trials,
                  (unsigned long long)txns, (unsigned long long)crashes);
    assert_true(crashes > 100 / tu_scale());
}

/* A corrupted file is refused by the key store; the file is left for inspection. */
static void test_corrupt_file_refused(void **state)
{
    (void)state;
    char p[400];
    start(3);
    run_script();
    mpos_keystore_close(&ks);
    mpos_hal_linux_storage_close(&st);
    snprintf(p, sizeof(p), "%s/keys", dir);
    struct stat before;
    assert_int_equal(stat(p, &before), 0);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    fclose(f);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_OK);
    mpos_hal_linux_storage_bind(&st, &hal);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    struct stat after;
    assert_int_equal(stat(p, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    /* Truncated, as a copy cut short. */
    assert_int_equal(truncate(p, before.st_size - 10), 0);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_FORMAT);
    /* Loosened permissions: refused before it is read. */
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_PERMISSION);
    mpos_hal_linux_storage_close(&st);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_ERR_PERMISSION);
    assert_int_equal(chmod(dir, 0700), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_step),
        cmocka_unit_test(test_random_steps),
        cmocka_unit_test(test_corrupt_file_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
