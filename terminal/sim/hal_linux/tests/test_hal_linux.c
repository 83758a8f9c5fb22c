/* Tests of the simulator's Linux HAL (terminal/sim/hal_linux) and of terminal/hal.h.
 *
 * File storage: creation (directory 0700, key file 0600), round trips, the order of the steps
 * of an atomic write (temporary file, fsync, rename, directory fsync), a crash before and
 * after each step and a torn temporary file (old or new content, entirely; leftovers removed
 * at the next open), refusal of anything not private (modes, links, owner), counters, key
 * derivation. RNG and clock. The scripted keypad and the recording display with the prompt
 * table's parameter rules; hal.h's prompt codes and constants against the host link's and the
 * EMV kernel's headers.
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
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hal.h"
#include "hal_linux.h"
#include "hal_script.h"
#include "mpos/util.h"

#ifdef MPOS_TEST_HAVE_LINK
#include "link/link.h"
#endif
#ifdef MPOS_TEST_HAVE_EMV_KERNEL
#include "emv_kernel.h"
#endif

static char base[256]; /* a private temporary directory */
static char dir[300];  /* the store inside it */
static char path[400];

static int setup(void **state)
{
    (void)state;
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(base, sizeof(base), "%s/mpos-hal-XXXXXX", tmp);
    if (mkdtemp(base) == NULL) {
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/store", base);
    return 0;
}

/* Removes the store directory (flat) if present. */
static void rm_store(const char *d)
{
    DIR *dh = opendir(d);
    if (dh != NULL) {
        struct dirent *e;
        while ((e = readdir(dh)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char p[600];
                snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
                (void)unlink(p);
            }
        }
        closedir(dh);
    }
    (void)chmod(d, 0700);
    (void)rmdir(d);
}

static int teardown(void **state)
{
    (void)state;
    rm_store(dir);
    (void)rmdir(base);
    return 0;
}

static int clean(void **state)
{
    (void)state;
    rm_store(dir);
    return 0;
}

static const char *in_store(const char *name)
{
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static mode_t mode_of(const char *p)
{
    struct stat sb;
    assert_int_equal(lstat(p, &sb), 0);
    return sb.st_mode & 07777;
}

static int exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void open_store(mpos_hal_linux_storage *st, mpos_hal_storage *hal, unsigned flags)
{
    assert_int_equal(mpos_hal_linux_storage_open(st, dir, NULL, flags), MPOS_OK);
    mpos_hal_linux_storage_bind(st, hal);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(seed + 7 * i);
    }
}

/* ---- storage ------------------------------------------------------------------------------ */

static void test_create_and_round_trip(void **state)
{
    (void)state;
    mpos_hal_linux_storage st;
    mpos_hal_storage hal;
    static uint8_t a[MPOS_HAL_SLOT_MAX + 1], b[MPOS_HAL_SLOT_MAX + 1];
    size_t len;
    /* Without CREATE, no store. */
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_ERR_IO);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0x80), MPOS_ERR_ARG);
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    assert_int_equal(mode_of(dir), 0700);
    assert_int_equal(mode_of(in_store(MPOS_HAL_LINUX_KEY_FILE)), 0600);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_HAL_NOT_FOUND);
    fill(a, MPOS_HAL_SLOT_MAX, 1);
    assert_int_equal(hal.write(hal.ctx, "keys", a, 100), MPOS_OK);
    assert_int_equal(mode_of(in_store("keys")), 0600);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_OK);
    assert_int_equal(len, 100);
    assert_memory_equal(a, b, 100);
    assert_int_equal(hal.write(hal.ctx, "keys", a + 1, MPOS_HAL_SLOT_MAX), MPOS_OK);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_OK);
    assert_int_equal(len, MPOS_HAL_SLOT_MAX);
    assert_memory_equal(a + 1, b, len);
    assert_int_equal(hal.read(hal.ctx, "keys", b, MPOS_HAL_SLOT_MAX - 1, &len), MPOS_ERR_LENGTH);
    /* Names and lengths. */
    const char *bad_names[] = {
        "", ".keys", "a/b", "Keys", "counter.0", "device.key", "abcdefghijklmnopq", "../x"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        assert_int_equal(hal.write(hal.ctx, bad_names[i], a, 1), MPOS_ERR_ARG);
        assert_int_equal(hal.read(hal.ctx, bad_names[i], b, sizeof(b), &len), MPOS_ERR_ARG);
    }
    assert_int_equal(hal.write(hal.ctx, "abcdefghijklmnop", a, 1), MPOS_OK);
    assert_int_equal(hal.write(hal.ctx, "x", a, 0), MPOS_ERR_LENGTH);
    assert_int_equal(hal.write(hal.ctx, "x", a, MPOS_HAL_SLOT_MAX + 1), MPOS_ERR_LENGTH);
    /* No temporary file stays behind. */
    assert_false(exists(in_store(".keys.tmp")));
    mpos_hal_linux_storage_close(&st);
    /* Reopened: the same content, the same device key. */
    open_store(&st, &hal, 0);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_OK);
    assert_memory_equal(a + 1, b, MPOS_HAL_SLOT_MAX);
    mpos_hal_linux_storage_close(&st);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_ERR_STATE);
}

struct step_log {
    enum mpos_hal_linux_step steps[16];
    char files[16][32];
    size_t n;
    /* crash plan */
    enum mpos_hal_linux_step at;
    enum mpos_hal_linux_fault how;
    size_t torn_len; /* for a write: bytes written before the crash */
    int armed;
};

static enum mpos_hal_linux_fault log_hook(void *ctx, enum mpos_hal_linux_step step,
                                          const char *file, size_t *len)
{
    struct step_log *l = ctx;
    if (l->n < 16) {
        l->steps[l->n] = step;
        snprintf(l->files[l->n], sizeof(l->files[0]), "%s", file);
        l->n++;
    }
    if (l->armed && step == l->at) {
        l->armed = 0;
        if (step == MPOS_HAL_LINUX_STEP_WRITE && l->torn_len != SIZE_MAX) {
            *len = l->torn_len;
        }
        return l->how;
    }
    return MPOS_HAL_LINUX_RUN;
}

static void test_step_order(void **state)
{
    (void)state;
    mpos_hal_linux_storage st;
    mpos_hal_storage hal;
    struct step_log l;
    uint8_t a[10] = {1};
    uint64_t v;
    memset(&l, 0, sizeof(l));
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    mpos_hal_linux_storage_set_fault(&st, log_hook, &l);
    assert_int_equal(hal.write(hal.ctx, "keys", a, sizeof(a)), MPOS_OK);
    assert_int_equal(hal.counter_increment(hal.ctx, 2, &v), MPOS_OK);
    assert_int_equal(l.n, 8);
    const enum mpos_hal_linux_step want[4] = {
        MPOS_HAL_LINUX_STEP_WRITE, MPOS_HAL_LINUX_STEP_FSYNC_FILE, MPOS_HAL_LINUX_STEP_RENAME,
        MPOS_HAL_LINUX_STEP_FSYNC_DIR};
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(l.steps[i], want[i % 4]);
        assert_string_equal(l.files[i], i < 4 ? "keys" : "counter.2");
    }
    mpos_hal_linux_storage_close(&st);
}

/* A crash at each step of the second write, before and after it, and torn data writes: the
 * slot then holds the first or the second content entirely. */
static void test_crash_each_step(void **state)
{
    (void)state;
    static uint8_t v1[3000], v2[5000], got[MPOS_HAL_SLOT_MAX];
    fill(v1, sizeof(v1), 1);
    fill(v2, sizeof(v2), 2);
    size_t cases = 0;
    for (int step = MPOS_HAL_LINUX_STEP_WRITE; step <= MPOS_HAL_LINUX_STEP_FSYNC_DIR; step++) {
        for (int how = MPOS_HAL_LINUX_CRASH_BEFORE; how <= MPOS_HAL_LINUX_CRASH_AFTER; how++) {
            size_t torn[] = {SIZE_MAX, 0, 1, 2500, sizeof(v2) - 1};
            size_t ntorn = step == MPOS_HAL_LINUX_STEP_WRITE && how == MPOS_HAL_LINUX_CRASH_AFTER
                               ? sizeof(torn) / sizeof(torn[0])
                               : 1;
            for (size_t t = 0; t < ntorn; t++) {
                mpos_hal_linux_storage st;
                mpos_hal_storage hal;
                struct step_log l;
                size_t len;
                uint64_t v;
                rm_store(dir);
                open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
                assert_int_equal(hal.write(hal.ctx, "keys", v1, sizeof(v1)), MPOS_OK);
                memset(&l, 0, sizeof(l));
                l.at = (enum mpos_hal_linux_step)step;
                l.how = (enum mpos_hal_linux_fault)how;
                l.torn_len = torn[t];
                l.armed = 1;
                mpos_hal_linux_storage_set_fault(&st, log_hook, &l);
                assert_int_equal(hal.write(hal.ctx, "keys", v2, sizeof(v2)), MPOS_ERR_IO);
                /* Power is gone: nothing more happens. */
                assert_int_equal(hal.read(hal.ctx, "keys", got, sizeof(got), &len), MPOS_ERR_IO);
                assert_int_equal(hal.write(hal.ctx, "other", v1, 1), MPOS_ERR_IO);
                assert_int_equal(hal.counter_increment(hal.ctx, 0, &v), MPOS_ERR_IO);
                int renamed =
                    step > MPOS_HAL_LINUX_STEP_RENAME ||
                    (step == MPOS_HAL_LINUX_STEP_RENAME && how == MPOS_HAL_LINUX_CRASH_AFTER);
                /* A crash leaves the temporary file as it was, torn or not. */
                int has_tmp = exists(in_store(".keys.tmp"));
                assert_int_equal(has_tmp, !renamed);
                mpos_hal_linux_storage_close(&st);
                /* Power back: leftovers removed, one content or the other. */
                open_store(&st, &hal, 0);
                assert_false(exists(in_store(".keys.tmp")));
                assert_int_equal(hal.read(hal.ctx, "keys", got, sizeof(got), &len), MPOS_OK);
                if (renamed) {
                    assert_int_equal(len, sizeof(v2));
                    assert_memory_equal(got, v2, len);
                } else {
                    assert_int_equal(len, sizeof(v1));
                    assert_memory_equal(got, v1, len);
                }
                /* And the store works again. */
                assert_int_equal(hal.write(hal.ctx, "keys", v2, 10), MPOS_OK);
                mpos_hal_linux_storage_close(&st);
                cases++;
            }
        }
    }
    assert_int_equal(cases, 12);
}

static void test_permissions(void **state)
{
    (void)state;
    mpos_hal_linux_storage st;
    mpos_hal_storage hal;
    uint8_t a[32] = {3}, b[64];
    size_t len;
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    assert_int_equal(hal.write(hal.ctx, "keys", a, sizeof(a)), MPOS_OK);
    mpos_hal_linux_storage_close(&st);
    /* A directory others can read or enter. */
    const mode_t dir_modes[] = {0755, 0750, 0701, 0710, 0777};
    for (size_t i = 0; i < sizeof(dir_modes) / sizeof(dir_modes[0]); i++) {
        assert_int_equal(chmod(dir, dir_modes[i]), 0);
        assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_ERR_PERMISSION);
        assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, MPOS_HAL_LINUX_CREATE),
                         MPOS_ERR_PERMISSION);
    }
    assert_int_equal(chmod(dir, 0700), 0);
    /* ...or loosened while open. */
    open_store(&st, &hal, 0);
    assert_int_equal(chmod(dir, 0770), 0);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_ERR_PERMISSION);
    assert_int_equal(hal.write(hal.ctx, "keys", a, sizeof(a)), MPOS_ERR_PERMISSION);
    assert_int_equal(chmod(dir, 0700), 0);
    /* A slot file others can read: refused, and left as it is (not "fixed", not reset). */
    assert_int_equal(chmod(in_store("keys"), 0644), 0);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_ERR_PERMISSION);
    assert_int_equal(mode_of(in_store("keys")), 0644);
    assert_int_equal(chmod(in_store("keys"), 0604), 0);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_ERR_PERMISSION);
    assert_int_equal(chmod(in_store("keys"), 0600), 0);
    assert_int_equal(hal.read(hal.ctx, "keys", b, sizeof(b), &len), MPOS_OK);
    /* A symbolic link or a second hard link in a slot's place. */
    char target[400];
    snprintf(target, sizeof(target), "%s/outside", base);
    int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, a, sizeof(a)), (ssize_t)sizeof(a));
    close(fd);
    assert_int_equal(symlink(target, in_store("linked")), 0);
    assert_int_equal(hal.read(hal.ctx, "linked", b, sizeof(b), &len), MPOS_ERR_PERMISSION);
    assert_int_equal(link(target, in_store("hard")), 0);
    assert_int_equal(hal.read(hal.ctx, "hard", b, sizeof(b), &len), MPOS_ERR_PERMISSION);
    /* A write replaces the link itself, never what it points to. */
    assert_int_equal(hal.write(hal.ctx, "linked", b, 5), MPOS_OK);
    struct stat sb;
    assert_int_equal(stat(target, &sb), 0);
    assert_int_equal(sb.st_size, (off_t)sizeof(a));
    mpos_hal_linux_storage_close(&st);
    unlink(target);
    /* The key file: loose, linked, or of the wrong size. */
    assert_int_equal(chmod(in_store(MPOS_HAL_LINUX_KEY_FILE), 0640), 0);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_ERR_PERMISSION);
    assert_int_equal(chmod(in_store(MPOS_HAL_LINUX_KEY_FILE), 0600), 0);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, NULL, 0), MPOS_OK);
    mpos_hal_linux_storage_close(&st);
    snprintf(target, sizeof(target), "%s/key2", base);
    fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, a, 31), 31);
    close(fd);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, target, 0), MPOS_ERR_FORMAT);
    chmod(target, 0644);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, target, 0), MPOS_ERR_PERMISSION);
    unlink(target);
    assert_int_equal(mpos_hal_linux_storage_open(&st, dir, target, MPOS_HAL_LINUX_CREATE),
                     MPOS_ERR_IO); /* a named key file is never created */
    /* The directory itself a symbolic link. */
    char alias[400];
    snprintf(alias, sizeof(alias), "%s/alias", base);
    assert_int_equal(symlink(dir, alias), 0);
    assert_int_equal(mpos_hal_linux_storage_open(&st, alias, NULL, 0), MPOS_ERR_PERMISSION);
    unlink(alias);
    /* A directory that is not there and cannot be created. */
    snprintf(alias, sizeof(alias), "%s/no/such", base);
    assert_int_equal(mpos_hal_linux_storage_open(&st, alias, NULL, MPOS_HAL_LINUX_CREATE),
                     MPOS_ERR_IO);
}

static void test_counters(void **state)
{
    (void)state;
    mpos_hal_linux_storage st;
    mpos_hal_storage hal;
    uint64_t v = 99;
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    for (uint32_t id = 0; id < MPOS_HAL_COUNTERS; id++) {
        assert_int_equal(hal.counter_read(hal.ctx, id, &v), MPOS_OK);
        assert_int_equal(v, 0);
    }
    assert_int_equal(hal.counter_read(hal.ctx, MPOS_HAL_COUNTERS, &v), MPOS_ERR_ARG);
    assert_int_equal(hal.counter_increment(hal.ctx, MPOS_HAL_COUNTERS, &v), MPOS_ERR_ARG);
    for (uint64_t i = 1; i <= 5; i++) {
        assert_int_equal(hal.counter_increment(hal.ctx, 1, &v), MPOS_OK);
        assert_int_equal(v, i);
    }
    mpos_hal_linux_storage_close(&st);
    open_store(&st, &hal, 0);
    assert_int_equal(hal.counter_read(hal.ctx, 1, &v), MPOS_OK);
    assert_int_equal(v, 5);
    assert_int_equal(hal.counter_read(hal.ctx, 0, &v), MPOS_OK);
    assert_int_equal(v, 0);
    /* A damaged counter is a failed device, never 0. */
    int fd = open(in_store("counter.1"), O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x01", 1, 15), 1);
    close(fd);
    assert_int_equal(hal.counter_read(hal.ctx, 1, &v), MPOS_ERR_IO);
    assert_int_equal(hal.counter_increment(hal.ctx, 1, &v), MPOS_ERR_IO);
    assert_int_equal(truncate(in_store("counter.1"), 8), 0);
    assert_int_equal(hal.counter_read(hal.ctx, 1, &v), MPOS_ERR_IO);
    mpos_hal_linux_storage_close(&st);
}

static void test_derive_key(void **state)
{
    (void)state;
    mpos_hal_linux_storage st;
    mpos_hal_storage hal;
    uint8_t k1[64], k2[64], k3[32];
    static const uint8_t l1[] = "label one", l2[] = "label two";
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k1, 32), MPOS_OK);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k2, 32), MPOS_OK);
    assert_memory_equal(k1, k2, 32);
    assert_int_equal(hal.derive_key(hal.ctx, l2, sizeof(l2) - 1, k2, 32), MPOS_OK);
    assert_memory_not_equal(k1, k2, 32);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k2, 64), MPOS_OK);
    assert_memory_equal(k1, k2, 32); /* HKDF: a longer output extends the shorter one */
    assert_int_equal(hal.derive_key(hal.ctx, l1, 0, k3, 32), MPOS_ERR_LENGTH);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k3, 15), MPOS_ERR_LENGTH);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k3, 65), MPOS_ERR_LENGTH);
    mpos_hal_linux_storage_close(&st);
    /* The same label on the same device after a restart; another device gives another key. */
    open_store(&st, &hal, 0);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k3, 32), MPOS_OK);
    assert_memory_equal(k1, k3, 32);
    mpos_hal_linux_storage_close(&st);
    rm_store(dir);
    open_store(&st, &hal, MPOS_HAL_LINUX_CREATE);
    assert_int_equal(hal.derive_key(hal.ctx, l1, sizeof(l1) - 1, k3, 32), MPOS_OK);
    assert_memory_not_equal(k1, k3, 32);
    mpos_hal_linux_storage_close(&st);
}

/* ---- RNG, clock ------------------------------------------------------------------------- */

static void test_rng_clock(void **state)
{
    (void)state;
    mpos_hal_rng rng;
    mpos_hal_clock clk;
    uint8_t a[32], b[32];
    static const uint8_t zero[32];
    int64_t now;
    uint64_t m1, m2;
    mpos_hal_linux_rng_bind(&rng);
    mpos_hal_linux_clock_bind(&clk);
    assert_int_equal(rng.random(rng.ctx, a, sizeof(a)), MPOS_OK);
    assert_int_equal(rng.random(rng.ctx, b, sizeof(b)), MPOS_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_int_equal(rng.random(rng.ctx, a, 0), MPOS_OK);
    assert_int_equal(clk.now(clk.ctx, &now), MPOS_OK);
    assert_true(now > 1700000000); /* after 2023-11 */
    assert_int_equal(clk.monotonic_ms(clk.ctx, &m1), MPOS_OK);
    assert_int_equal(clk.monotonic_ms(clk.ctx, &m2), MPOS_OK);
    assert_true(m2 >= m1);
}

/* ---- scripted keypad, recording display, the prompt table -------------------------------- */

static void test_script(void **state)
{
    (void)state;
    static const enum mpos_key keys[] = {MPOS_KEY_1, MPOS_KEY_2, MPOS_KEY_CLEAR, MPOS_KEY_OK};
    mpos_hal_script_keypad kp;
    mpos_hal_keypad kpad;
    static mpos_hal_script_display d;
    mpos_hal_display disp;
    enum mpos_key k;
    mpos_hal_script_keypad_init(&kp, keys, 4, &kpad);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(kpad.read_key(kpad.ctx, 30000, &k), MPOS_OK);
        assert_int_equal(k, keys[i]);
    }
    assert_int_equal(kpad.read_key(kpad.ctx, 100, &k), MPOS_OK);
    assert_int_equal(k, MPOS_KEY_TIMEOUT);
    assert_int_equal(kp.last_timeout, 100);

    mpos_hal_script_display_init(&d, &disp);
    mpos_prompt_params p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_PROCESSING, &p), MPOS_OK);
    /* CONFIRM_AMOUNT needs type and amount. */
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_CONFIRM_AMOUNT, &p), MPOS_ERR_ARG);
    p.present = MPOS_PROMPT_P_TYPE | MPOS_PROMPT_P_AMOUNT;
    p.txn_type = 1;
    p.amount = 12345;
    p.currency = 156;
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_CONFIRM_AMOUNT, &p), MPOS_OK);
    /* ...and nothing else; a parameter it does not take must be absent. */
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_PROCESSING, &p), MPOS_ERR_ARG);
    p.present |= MPOS_PROMPT_P_PAN;
    strcpy(p.masked_pan, "621234******1234");
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_CONFIRM_AMOUNT, &p), MPOS_ERR_ARG);
    /* APPROVED may show the masked PAN, never a full one. */
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_APPROVED, &p), MPOS_OK);
    const char *bad_pans[] = {"6212345678901234", "62123*******1234",      "621234******123*",
                              "621234*1234",      "621234**********12345", ""};
    for (size_t i = 0; i < sizeof(bad_pans) / sizeof(bad_pans[0]); i++) {
        strcpy(p.masked_pan, bad_pans[i]);
        assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_APPROVED, &p), MPOS_ERR_ARG);
    }
    /* Ranges. */
    memset(&p, 0, sizeof(p));
    p.present = MPOS_PROMPT_P_AMOUNT | MPOS_PROMPT_P_COUNT;
    p.amount = MPOS_PROMPT_MAX_AMOUNT + 1;
    p.currency = 156;
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_ENTER_PIN, &p), MPOS_ERR_ARG);
    p.amount = 100;
    p.count = 13;
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_ENTER_PIN, &p), MPOS_ERR_ARG);
    p.count = 4;
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_ENTER_PIN, &p), MPOS_OK);
    memset(&p, 0, sizeof(p));
    p.present = MPOS_PROMPT_P_RESULT;
    strcpy(p.result, "51");
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_DECLINED, &p), MPOS_OK);
    strcpy(p.result, "5a");
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_DECLINED, &p), MPOS_ERR_ARG);
    strcpy(p.result, "511");
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_DECLINED, &p), MPOS_ERR_ARG);
    memset(&p, 0, sizeof(p));
    assert_int_equal(disp.show(disp.ctx, (enum mpos_prompt)0, &p), MPOS_ERR_ARG);
    assert_int_equal(disp.show(disp.ctx, (enum mpos_prompt)(MPOS_HAL_PROMPT_MAX + 1), &p),
                     MPOS_ERR_ARG);
    assert_int_equal(disp.show(disp.ctx, MPOS_HAL_PROMPT_REMOVE_CARD, NULL), MPOS_ERR_ARG);
    /* The log: what was shown, in order. */
    assert_int_equal(d.count, 5);
    assert_int_equal(d.shown[0].prompt, MPOS_HAL_PROMPT_PROCESSING);
    assert_int_equal(d.shown[1].prompt, MPOS_HAL_PROMPT_CONFIRM_AMOUNT);
    assert_int_equal(d.shown[1].params.amount, 12345);
    assert_int_equal(d.shown[2].prompt, MPOS_HAL_PROMPT_APPROVED);
    assert_string_equal(d.shown[2].params.masked_pan, "621234******1234");
    assert_int_equal(d.shown[4].prompt, MPOS_HAL_PROMPT_DECLINED);
    assert_int_equal(d.refused, 16);
    /* Every prompt of the table is showable with its required parameters. */
    for (unsigned id = 1; id <= MPOS_HAL_PROMPT_MAX; id++) {
        memset(&p, 0, sizeof(p));
        p.present = mpos_prompt_required(id);
        if (p.present & MPOS_PROMPT_P_TYPE) {
            p.txn_type = 1;
        }
        if (p.present & MPOS_PROMPT_P_AMOUNT) {
            p.currency = 840;
        }
        assert_true(mpos_prompt_params_valid(id, &p));
        assert_int_equal(mpos_prompt_required(id) & ~mpos_prompt_allowed(id), 0);
    }
    assert_int_equal(mpos_prompt_allowed(0), 0);
    assert_int_equal(mpos_prompt_allowed(MPOS_HAL_PROMPT_MAX + 1), 0);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(mpos_hal_strerror(MPOS_ERR_ROLLBACK), "stored record rolled back");
    assert_string_equal(mpos_hal_strerror(MPOS_HAL_NOT_FOUND), "not found");
    assert_string_equal(mpos_hal_strerror(MPOS_ERR_VERIFY), mpos_strerror(MPOS_ERR_VERIFY));
}

#ifdef MPOS_TEST_HAVE_LINK
/* One prompt table: the display's codes are the link's, and the link reports at most what
 * the display requires (the display alone gets the count of PIN digits entered). */
_Static_assert(MPOS_HAL_PROMPT_MAX == MPOS_LINK_PROMPT_MAX, "prompt table size");
#define SAME_PROMPT(hal_name, link_name)                                                           \
    _Static_assert((int)MPOS_HAL_PROMPT_##hal_name == (int)MPOS_PROMPT_##link_name, #hal_name)
SAME_PROMPT(WELCOME, WELCOME);
SAME_PROMPT(NOT_ACTIVATED, NOT_ACTIVATED);
SAME_PROMPT(ACTIVATING, ACTIVATING);
SAME_PROMPT(ACTIVATED, ACTIVATED);
SAME_PROMPT(CONFIRM_AMOUNT, CONFIRM_AMOUNT);
SAME_PROMPT(INSERT_CARD, PRESENT_CARD);
SAME_PROMPT(USE_CHIP, USE_CHIP);
SAME_PROMPT(CHIP_ERROR_SWIPE, CHIP_ERROR_SWIPE);
SAME_PROMPT(ENTER_PIN, ENTER_PIN);
SAME_PROMPT(PIN_RETRY, WRONG_PIN);
SAME_PROMPT(PROCESSING, PROCESSING);
SAME_PROMPT(APPROVED, APPROVED);
SAME_PROMPT(DECLINED, DECLINED);
SAME_PROMPT(CANCELLED, CANCELLED);
SAME_PROMPT(REMOVE_CARD, REMOVE_CARD);
SAME_PROMPT(CARD_ERROR, CARD_ERROR);
SAME_PROMPT(NO_RESPONSE, NO_RESPONSE);
SAME_PROMPT(CARD_EXPIRED, CARD_EXPIRED);
_Static_assert(MPOS_PROMPT_P_TYPE == MPOS_LINK_PARAM_TYPE &&
                   MPOS_PROMPT_P_AMOUNT == MPOS_LINK_PARAM_AMOUNT &&
                   MPOS_PROMPT_P_COUNT == MPOS_LINK_PARAM_COUNT,
               "parameter bits");

static void test_prompt_table_is_the_links(void **state)
{
    (void)state;
    for (unsigned id = 1; id <= MPOS_HAL_PROMPT_MAX; id++) {
        unsigned link = (unsigned)mpos_link_prompt_params(id);
        unsigned req = mpos_prompt_required(id);
        assert_int_equal(link & ~req, 0);
        assert_int_equal(req & ~link, id == MPOS_HAL_PROMPT_ENTER_PIN ? MPOS_PROMPT_P_COUNT : 0);
    }
}
#endif

#ifdef MPOS_TEST_HAVE_EMV_KERNEL
_Static_assert(MPOS_RAPDU_MAX == 258, "R-APDU maximum");
/* The reader's functions are the kernel's callbacks as they are. */
static void test_reader_is_kernel_io(void **state)
{
    (void)state;
    mpos_hal_card_reader r;
    memset(&r, 0, sizeof(r));
    mpos_card_io_fn io = r.exchange;
    mpos_emv_reset_fn reset = r.power_on;
    assert_null(io);
    assert_null(reset);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_round_trip, clean, clean),
        cmocka_unit_test_setup_teardown(test_step_order, clean, clean),
        cmocka_unit_test_setup_teardown(test_crash_each_step, clean, clean),
        cmocka_unit_test_setup_teardown(test_permissions, clean, clean),
        cmocka_unit_test_setup_teardown(test_counters, clean, clean),
        cmocka_unit_test_setup_teardown(test_derive_key, clean, clean),
        cmocka_unit_test(test_rng_clock),
        cmocka_unit_test(test_script),
        cmocka_unit_test(test_strerror),
#ifdef MPOS_TEST_HAVE_LINK
        cmocka_unit_test(test_prompt_table_is_the_links),
#endif
#ifdef MPOS_TEST_HAVE_EMV_KERNEL
        cmocka_unit_test(test_reader_is_kernel_io),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
