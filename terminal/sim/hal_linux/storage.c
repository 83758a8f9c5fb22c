/* openmpos terminal simulator: file-backed secure storage (hal_linux.h). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "hal_linux.h"
#include "mpos/crypto.h"
#include "mpos/ecc.h"
#include "mpos/util.h"

#define FILE_NAME_MAX 32 /* ".<slot>.tmp", "counter.<id>" */
#define COUNTER_LEN   16 /* value (8, big-endian) | its complement (8) */

static const char hkdf_salt[] = "openmpos simulator device storage key v1";

/* ---- checks ----------------------------------------------------------------------------- */

/* A file or directory private to this user: the expected type, our owner, no group or other
 * permission bits; a regular file has one link only (a hard link elsewhere would be a
 * second name for it). */
static int check_private(int fd, int want_dir)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        return MPOS_ERR_IO;
    }
    if ((want_dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) || sb.st_uid != geteuid() ||
        (sb.st_mode & 077) != 0 || (!want_dir && sb.st_nlink != 1)) {
        return MPOS_ERR_PERMISSION;
    }
    return MPOS_OK;
}

/* errno of a failed open as a HAL error: a link where a file should be is a permission
 * problem, not an I/O one. */
static int open_error(int err)
{
    return (err == ELOOP || err == ENOTDIR || err == EACCES || err == EPERM) ? MPOS_ERR_PERMISSION
                                                                             : MPOS_ERR_IO;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return MPOS_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return MPOS_OK;
}

static int read_all(int fd, uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return MPOS_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return MPOS_OK;
}

/* ---- atomic write ----------------------------------------------------------------------- */

static enum mpos_hal_linux_fault hook(mpos_hal_linux_storage *st, enum mpos_hal_linux_step step,
                                      const char *file, size_t *len)
{
    size_t dummy = 0;
    return st->fault != NULL ? st->fault(st->fault_ctx, step, file, len != NULL ? len : &dummy)
                             : MPOS_HAL_LINUX_RUN;
}

/* Replaces file in the directory with len bytes: temporary file, fsync, rename, fsync of the
 * directory. An error before the rename removes the temporary file; a crash (fault hook)
 * leaves everything as a power loss would. */
static int atomic_write(mpos_hal_linux_storage *st, const char *file, const uint8_t *data,
                        size_t len)
{
    char tmp[FILE_NAME_MAX + 8];
    int fd = -1;
    int rc = MPOS_ERR_IO;
    int renamed = 0;
    enum mpos_hal_linux_fault f;
    if (st->dead) {
        return MPOS_ERR_IO;
    }
    if (snprintf(tmp, sizeof(tmp), ".%s.tmp", file) >= (int)sizeof(tmp)) {
        return MPOS_ERR_ARG;
    }
    if (unlinkat(st->dirfd, tmp, 0) != 0 && errno != ENOENT) {
        goto exit;
    }
    fd = openat(st->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        goto exit;
    }
    size_t n = len;
    f = hook(st, MPOS_HAL_LINUX_STEP_WRITE, file, &n);
    if (f == MPOS_HAL_LINUX_CRASH_BEFORE) {
        goto crash;
    }
    if (write_all(fd, data, n < len ? n : len) != MPOS_OK) {
        goto exit;
    }
    if (f == MPOS_HAL_LINUX_CRASH_AFTER || n < len) {
        goto crash;
    }
    f = hook(st, MPOS_HAL_LINUX_STEP_FSYNC_FILE, file, NULL);
    if (f == MPOS_HAL_LINUX_CRASH_BEFORE) {
        goto crash;
    }
    if (fsync(fd) != 0) {
        goto exit;
    }
    if (f == MPOS_HAL_LINUX_CRASH_AFTER) {
        goto crash;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto exit;
    }
    fd = -1;
    f = hook(st, MPOS_HAL_LINUX_STEP_RENAME, file, NULL);
    if (f == MPOS_HAL_LINUX_CRASH_BEFORE) {
        goto crash;
    }
    if (renameat(st->dirfd, tmp, st->dirfd, file) != 0) {
        goto exit;
    }
    renamed = 1;
    if (f == MPOS_HAL_LINUX_CRASH_AFTER) {
        goto crash;
    }
    f = hook(st, MPOS_HAL_LINUX_STEP_FSYNC_DIR, file, NULL);
    if (f == MPOS_HAL_LINUX_CRASH_BEFORE) {
        goto crash;
    }
    if (fsync(st->dirfd) != 0) {
        goto exit;
    }
    if (f == MPOS_HAL_LINUX_CRASH_AFTER) {
        goto crash;
    }
    rc = MPOS_OK;
    goto exit;
crash:
    st->dead = 1;
    if (fd >= 0) {
        (void)close(fd);
    }
    return MPOS_ERR_IO;
exit:
    if (fd >= 0) {
        (void)close(fd);
    }
    if (rc != MPOS_OK && !renamed) {
        (void)unlinkat(st->dirfd, tmp, 0);
    }
    return rc;
}

/* Reads file (at most cap bytes) into buf. MPOS_HAL_NOT_FOUND when it does not exist. */
static int read_file(mpos_hal_linux_storage *st, const char *file, uint8_t *buf, size_t cap,
                     size_t *len)
{
    struct stat sb;
    int rc;
    /* What is visible becomes durable before it is returned (hal.h: reads are durable). */
    if (fsync(st->dirfd) != 0) {
        return MPOS_ERR_IO;
    }
    int fd = openat(st->dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? MPOS_HAL_NOT_FOUND : open_error(errno);
    }
    rc = check_private(fd, 0);
    if (rc == MPOS_OK) {
        rc = fstat(fd, &sb) == 0 ? MPOS_OK : MPOS_ERR_IO;
    }
    if (rc == MPOS_OK && (uintmax_t)sb.st_size > cap) {
        rc = MPOS_ERR_LENGTH;
    }
    if (rc == MPOS_OK) {
        rc = read_all(fd, buf, (size_t)sb.st_size);
        *len = (size_t)sb.st_size;
    }
    (void)close(fd);
    return rc;
}

/* Every call checks the store is usable and the directory still private. */
static int usable(mpos_hal_linux_storage *st)
{
    if (st == NULL || st->dirfd < 0) {
        return MPOS_ERR_STATE;
    }
    if (st->dead) {
        return MPOS_ERR_IO;
    }
    return check_private(st->dirfd, 1);
}

/* ---- the HAL functions ------------------------------------------------------------------ */

static int st_read(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
    mpos_hal_linux_storage *st = ctx;
    if (buf == NULL || len == NULL || !mpos_hal_slot_name_valid(name)) {
        return MPOS_ERR_ARG;
    }
    *len = 0;
    int rc = usable(st);
    if (rc == MPOS_OK) {
        rc = read_file(st, name, buf, cap, len);
    }
    if (rc != MPOS_OK) {
        *len = 0;
    }
    return rc;
}

static int st_write(void *ctx, const char *name, const uint8_t *data, size_t len)
{
    mpos_hal_linux_storage *st = ctx;
    if (data == NULL || !mpos_hal_slot_name_valid(name)) {
        return MPOS_ERR_ARG;
    }
    if (len == 0 || len > MPOS_HAL_SLOT_MAX) {
        return MPOS_ERR_LENGTH;
    }
    int rc = usable(st);
    return rc == MPOS_OK ? atomic_write(st, name, data, len) : rc;
}

static int counter_file(uint32_t id, char file[FILE_NAME_MAX])
{
    if (id >= MPOS_HAL_COUNTERS) {
        return MPOS_ERR_ARG;
    }
    (void)snprintf(file, FILE_NAME_MAX, "counter.%u", (unsigned)id);
    return MPOS_OK;
}

static int counter_get(mpos_hal_linux_storage *st, const char *file, uint64_t *value)
{
    uint8_t buf[COUNTER_LEN];
    size_t len = 0;
    uint64_t v = 0, inv = 0;
    int rc = read_file(st, file, buf, sizeof(buf), &len);
    if (rc == MPOS_HAL_NOT_FOUND) {
        *value = 0;
        return MPOS_OK;
    }
    if (rc != MPOS_OK) {
        return rc == MPOS_ERR_LENGTH ? MPOS_ERR_IO : rc;
    }
    /* A counter that does not check is a failed device: never read as 0. */
    if (len != COUNTER_LEN) {
        return MPOS_ERR_IO;
    }
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | buf[i];
        inv = (inv << 8) | buf[8 + i];
    }
    if (inv != ~v) {
        return MPOS_ERR_IO;
    }
    *value = v;
    return MPOS_OK;
}

static int st_counter_read(void *ctx, uint32_t id, uint64_t *value)
{
    mpos_hal_linux_storage *st = ctx;
    char file[FILE_NAME_MAX];
    if (value == NULL || counter_file(id, file) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    *value = 0;
    int rc = usable(st);
    if (rc == MPOS_OK) {
        rc = counter_get(st, file, value);
    }
    return rc;
}

static int st_counter_increment(void *ctx, uint32_t id, uint64_t *value)
{
    mpos_hal_linux_storage *st = ctx;
    char file[FILE_NAME_MAX];
    uint8_t buf[COUNTER_LEN];
    uint64_t v = 0;
    if (value == NULL || counter_file(id, file) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    int rc = usable(st);
    if (rc == MPOS_OK) {
        rc = counter_get(st, file, &v);
    }
    if (rc == MPOS_OK && v == UINT64_MAX) {
        rc = MPOS_ERR_IO;
    }
    if (rc == MPOS_OK) {
        v++;
        for (int i = 7; i >= 0; i--) {
            buf[i] = (uint8_t)(v >> (8 * (7 - i)));
            buf[8 + i] = (uint8_t)~buf[i];
        }
        rc = atomic_write(st, file, buf, sizeof(buf));
    }
    *value = rc == MPOS_OK ? v : 0;
    return rc;
}

static int st_derive_key(void *ctx, const uint8_t *label, size_t label_len, uint8_t *out,
                         size_t out_len)
{
    mpos_hal_linux_storage *st = ctx;
    int rc = MPOS_ERR_ARG;
    if (st == NULL || label == NULL || out == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (label_len == 0 || label_len > MPOS_HAL_LABEL_MAX || out_len < 16 ||
        out_len > MPOS_HAL_DEVICE_KEY_MAX) {
        goto exit;
    }
    rc = st->dirfd < 0 ? MPOS_ERR_STATE : st->dead ? MPOS_ERR_IO : MPOS_OK;
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* RFC 5869: PRK = HMAC(salt, device key), OKM = expand(PRK, label). */
    rc = mpos_hkdf_sha256((const uint8_t *)hkdf_salt, sizeof(hkdf_salt) - 1, st->key,
                          sizeof(st->key), label, label_len, out, out_len);
exit:
    if (rc != MPOS_OK && out != NULL && out_len > 0 && out_len <= MPOS_HAL_DEVICE_KEY_MAX) {
        mpos_cleanse(out, out_len);
    }
    return rc;
}

/* ---- opening ---------------------------------------------------------------------------- */

/* Removes the temporary files a power loss left (".<name>.tmp"), then makes the directory
 * durable as it is. */
static int clean_temporaries(int dirfd)
{
    int fd = dup(dirfd);
    if (fd < 0) {
        return MPOS_ERR_IO;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        (void)close(fd);
        return MPOS_ERR_IO;
    }
    int rc = MPOS_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 5 && e->d_name[0] == '.' && strcmp(e->d_name + n - 4, ".tmp") == 0 &&
            unlinkat(dirfd, e->d_name, 0) != 0 && errno != ENOENT) {
            rc = MPOS_ERR_IO;
        }
    }
    (void)closedir(d);
    if (rc == MPOS_OK && fsync(dirfd) != 0) {
        rc = MPOS_ERR_IO;
    }
    return rc;
}

static int load_key(mpos_hal_linux_storage *st, const char *key_file, unsigned flags)
{
    uint8_t buf[MPOS_HAL_LINUX_KEY_LEN + 1];
    struct stat sb;
    int rc;
    int fd = key_file != NULL
                 ? open(key_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                 : openat(st->dirfd, MPOS_HAL_LINUX_KEY_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && key_file == NULL && (flags & MPOS_HAL_LINUX_CREATE)) {
        /* A new device: 256 bits from the RNG, written like a slot. */
        rc = mpos_random_bytes(st->key, sizeof(st->key));
        if (rc == MPOS_OK) {
            rc = atomic_write(st, MPOS_HAL_LINUX_KEY_FILE, st->key, sizeof(st->key));
        }
        goto exit;
    }
    if (fd < 0) {
        rc = open_error(errno);
        goto exit;
    }
    rc = check_private(fd, 0);
    if (rc == MPOS_OK) {
        rc = fstat(fd, &sb) == 0 ? MPOS_OK : MPOS_ERR_IO;
    }
    if (rc == MPOS_OK && sb.st_size != MPOS_HAL_LINUX_KEY_LEN) {
        rc = MPOS_ERR_FORMAT;
    }
    if (rc == MPOS_OK) {
        rc = read_all(fd, buf, MPOS_HAL_LINUX_KEY_LEN);
    }
    if (rc == MPOS_OK) {
        memcpy(st->key, buf, sizeof(st->key));
    }
    (void)close(fd);
exit:
    MPOS_WIPE_BUFFER(buf);
    return rc;
}

int mpos_hal_linux_storage_open(mpos_hal_linux_storage *st, const char *dir, const char *key_file,
                                unsigned flags)
{
    int rc = MPOS_ERR_ARG;
    if (st == NULL) {
        return rc;
    }
    memset(st, 0, sizeof(*st));
    st->dirfd = -1;
    if (dir == NULL || (flags & ~MPOS_HAL_LINUX_CREATE) != 0) {
        goto exit;
    }
    if ((flags & MPOS_HAL_LINUX_CREATE) && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = open_error(errno);
        goto exit;
    }
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = open_error(errno);
        goto exit;
    }
    rc = check_private(st->dirfd, 1);
    if (rc == MPOS_OK) {
        rc = clean_temporaries(st->dirfd);
    }
    if (rc == MPOS_OK) {
        rc = load_key(st, key_file, flags);
    }
exit:
    if (rc != MPOS_OK) {
        mpos_hal_linux_storage_close(st);
    }
    return rc;
}

void mpos_hal_linux_storage_close(mpos_hal_linux_storage *st)
{
    if (st == NULL) {
        return;
    }
    if (st->dirfd >= 0) {
        (void)close(st->dirfd);
    }
    MPOS_WIPE_CTX(st);
    st->dirfd = -1;
}

void mpos_hal_linux_storage_bind(mpos_hal_linux_storage *st, mpos_hal_storage *hal)
{
    if (hal == NULL) {
        return;
    }
    hal->ctx = st;
    hal->read = st_read;
    hal->write = st_write;
    hal->counter_read = st_counter_read;
    hal->counter_increment = st_counter_increment;
    hal->derive_key = st_derive_key;
}

void mpos_hal_linux_storage_set_fault(mpos_hal_linux_storage *st, mpos_hal_linux_fault_fn fn,
                                      void *ctx)
{
    if (st != NULL) {
        st->fault = fn;
        st->fault_ctx = ctx;
    }
}
