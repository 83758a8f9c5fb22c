/* Test helper: an in-memory storage HAL that models power loss (mpos_hal_storage).
 *
 * Each slot has the content a power loss keeps (durable), possibly a newer one that is
 * visible but not yet durable (renamed, directory not synced), and a temporary file. An atomic
 * write passes five fault points, a counter increment two:
 *
 *   W1 before the temporary file is written   a crash here tears it (a random prefix)
 *   W2 before it is fsync'ed
 *   W3 before the rename
 *   W4 after the rename, before the directory fsync   (new content visible, not durable)
 *   W5 after the directory fsync, before returning    (durable, but the call fails)
 *   C1 before the counter moves
 *   C2 after it moved, before returning
 *
 * A crash makes that call return MPOS_ERR_IO and every later call too ("dead") until
 * mem_storage_reboot(), which resolves each non-durable rename as the policy says (kept,
 * dropped, or a coin flip per slot) and discards temporary files. A read makes what it
 * returns durable first, as the hal.h contract requires.
 *
 * Faults are chosen by point number (crash_at: the n-th point since init, counting across
 * reboots) or at random (crash_ppm per point). `lie` models a broken device whose write
 * returns before the directory is synced (used to prove the checks catch the consequence).
 */
#ifndef MPOS_TEST_MEM_STORAGE_H
#define MPOS_TEST_MEM_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"

#define MEM_SLOTS    8
#define MEM_NAME_MAX 24

enum mem_policy {
    MEM_RANDOM = 0, /* each pending rename kept or dropped at random */
    MEM_KEEP = 1,
    MEM_DROP = 2
};

typedef struct mem_slot {
    char name[MEM_NAME_MAX];
    int exists;
    uint8_t data[MPOS_HAL_SLOT_MAX];
    size_t len;
    int pending;
    uint8_t pdata[MPOS_HAL_SLOT_MAX];
    size_t plen;
    int tmp_exists;
    uint8_t tmp[MPOS_HAL_SLOT_MAX];
    size_t tmp_len;
} mem_slot;

typedef struct mem_storage {
    mem_slot slots[MEM_SLOTS];
    uint64_t counters[MPOS_HAL_COUNTERS];
    uint8_t device_key[32];
    uint64_t rng;       /* xorshift64* state */
    uint64_t points;    /* fault points passed since init */
    uint64_t crash_at;  /* crash at this point (1-based); 0 = never */
    uint32_t crash_ppm; /* random crashes: probability per point, per million */
    int transient;      /* a fault fails the call but the device lives on (no reboot) */
    int lie;            /* write returns after the rename, without the directory fsync */
    enum mem_policy policy;
    int dead;
    /* statistics */
    uint64_t crashes, torn, writes, reboots, pending_kept, pending_dropped;
    uint64_t crashes_at[8]; /* by point: W1..W5, C1, C2 */
} mem_storage;

/* A fresh, empty device; seed drives every random choice. */
void mem_storage_init(mem_storage *m, uint64_t seed);

/* Fills hal (ctx = m). */
void mem_storage_bind(mem_storage *m, mpos_hal_storage *hal);

/* Power comes back. */
void mem_storage_reboot(mem_storage *m);

/* Test access to the durable content (NULL when the slot does not exist) and to overwrite it
 * (len 0: delete), bypassing faults. */
const uint8_t *mem_storage_peek(const mem_storage *m, const char *name, size_t *len);
void mem_storage_poke(mem_storage *m, const char *name, const uint8_t *data, size_t len);

/* A random number below n (n > 0) from m's generator. */
uint64_t mem_storage_rand(mem_storage *m, uint64_t n);

#endif
