/* openmpos terminal simulator: the Linux parts of the HAL (terminal/hal.h).
 *
 * Secure storage on files. A directory private to the terminal's user (mode 0700, owned by
 * the effective user, not a symbolic link) holds one file per slot (mode 0600) and one per
 * monotonic counter ("counter.<id>"); every file is written atomically: temporary file
 * ".<name>.tmp" created with O_EXCL, written, fsync'ed, renamed over the old one, then the
 * directory fsync'ed. Opening the store removes temporary files a power loss left behind and
 * fsyncs the directory; every read fsyncs the directory first, so what a read returns is
 * durable (the hal.h contract). Anything not private (a mode with group or other bits, another
 * owner, a link, more than one hard link) is refused with MPOS_ERR_PERMISSION, never "fixed".
 *
 * The device storage key is 32 random bytes in a file of mode 0600 ("device.key" in the
 * directory, created with MPOS_HAL_LINUX_CREATE; or a file given by path, which must exist);
 * derive_key is HKDF-SHA-256 (RFC 5869) of it with the label as info. On a real device that
 * key lives in the secure element and never reaches the application processor, and the
 * counters live there (or in an RPMB partition): here both are ordinary files of the same
 * user, so the simulator gives no protection against someone who can write the directory
 * (copying an old directory back, counters included, is a rollback it cannot see).
 *
 * Fault injection (tests): a hook called before each step of every atomic write may let it
 * run, or "crash" the store before or after the step; a crash during the data write may also
 * shorten it (a torn temporary file). A crashed store does nothing more (MPOS_ERR_IO for every
 * call, temporary files left as they are) until it is closed and opened again, as after a
 * power loss.
 *
 * Also here: the RNG (mpos_random_bytes) and the clock (clock_gettime), and a scripted keypad
 * and a recording display for tests (hal_script.h).
 */
#ifndef MPOS_TERMINAL_HAL_LINUX_H
#define MPOS_TERMINAL_HAL_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"
#include "mpos/err.h"

#define MPOS_HAL_LINUX_KEY_LEN  32
#define MPOS_HAL_LINUX_KEY_FILE "device.key"
#define MPOS_HAL_LINUX_CREATE   0x1u /* create the directory (0700) and the key file (0600) */

/* The steps of an atomic write, in their order. */
enum mpos_hal_linux_step {
    MPOS_HAL_LINUX_STEP_WRITE = 1,      /* write the temporary file */
    MPOS_HAL_LINUX_STEP_FSYNC_FILE = 2, /* fsync it */
    MPOS_HAL_LINUX_STEP_RENAME = 3,     /* rename it over the slot */
    MPOS_HAL_LINUX_STEP_FSYNC_DIR = 4   /* fsync the directory */
};

enum mpos_hal_linux_fault {
    MPOS_HAL_LINUX_RUN = 0,          /* do the step */
    MPOS_HAL_LINUX_CRASH_BEFORE = 1, /* crash instead of doing it */
    MPOS_HAL_LINUX_CRASH_AFTER = 2   /* do it (a write: *len bytes of it), then crash */
};

/* Called before each step of an atomic write of file (the slot's or counter's file name).
 * For MPOS_HAL_LINUX_STEP_WRITE, *len is the number of bytes to write and may be lowered. */
typedef enum mpos_hal_linux_fault (*mpos_hal_linux_fault_fn)(void *ctx,
                                                             enum mpos_hal_linux_step step,
                                                             const char *file, size_t *len);

/* Fields private. */
typedef struct mpos_hal_linux_storage {
    int dirfd; /* -1 when closed */
    int dead;  /* crashed (fault injection) */
    uint8_t key[MPOS_HAL_LINUX_KEY_LEN];
    mpos_hal_linux_fault_fn fault;
    void *fault_ctx;
} mpos_hal_linux_storage;

/* Opens the store in directory dir. key_file NULL: the key is dir/device.key; otherwise the
 * path of an existing key file. With MPOS_HAL_LINUX_CREATE a missing directory (its parent
 * must exist) and a missing dir/device.key are created. MPOS_ERR_PERMISSION for anything
 * not private; MPOS_ERR_FORMAT for a key file that is not MPOS_HAL_LINUX_KEY_LEN bytes;
 * MPOS_ERR_IO (a missing directory or key file without CREATE included). */
int mpos_hal_linux_storage_open(mpos_hal_linux_storage *st, const char *dir, const char *key_file,
                                unsigned flags) MPOS_MUST_CHECK;

/* Closes the directory and wipes the key. */
void mpos_hal_linux_storage_close(mpos_hal_linux_storage *st);

/* Fills hal with the store's functions (ctx = st). */
void mpos_hal_linux_storage_bind(mpos_hal_linux_storage *st, mpos_hal_storage *hal);

/* Sets (or, with NULL, removes) the fault hook. */
void mpos_hal_linux_storage_set_fault(mpos_hal_linux_storage *st, mpos_hal_linux_fault_fn fn,
                                      void *ctx);

/* The RNG and the clock (no context: ctx is NULL). */
void mpos_hal_linux_rng_bind(mpos_hal_rng *rng);
void mpos_hal_linux_clock_bind(mpos_hal_clock *clock);

#endif
