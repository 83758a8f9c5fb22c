/* libmposhost: the session state file (token, expiry, merchant, role), mode 0600. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostint.h"
#include "mpos/util.h"

int host_state_save(const char *path, const struct host_state *st)
{
    char tmp[4096], hex[65], text[512];
    int fd = -1, rc = MPOSHOST_ERR_STATE, n;
    if (path == NULL || st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return MPOSHOST_ERR_STATE;
    }
    mpos_hex_encode(st->token, 32, hex);
    n = snprintf(text, sizeof(text), "token=%s\nexpires=%llu\nmerchant=%s\nrole=%s\nuser=%s\n", hex,
                 (unsigned long long)st->s.expires, st->s.merchant, st->s.role, st->s.username);
    if (n < 0 || n >= (int)sizeof(text)) {
        goto exit;
    }
    (void)unlink(tmp);
    /* O_EXCL + O_NOFOLLOW: never write the token through a planted link. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        goto exit;
    }
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        goto exit;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto exit;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (fd >= 0) {
        close(fd);
    }
    if (rc != MPOS_OK) {
        (void)unlink(tmp);
    }
    MPOS_WIPE_BUFFER(hex);
    MPOS_WIPE_BUFFER(text);
    return rc;
}

static void copy_field(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

int host_state_load(const char *path, struct host_state *st)
{
    char text[1024];
    struct stat sb;
    ssize_t n;
    size_t tlen = 0;
    int fd, rc = MPOSHOST_ERR_STATE, have_token = 0;
    if (path == NULL || st == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(st, 0, sizeof(*st));
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? MPOSHOST_ERR_NOT_LOGGED : MPOSHOST_ERR_STATE;
    }
    /* The token is a credential: a file others can read or that is not ours is not used. */
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0 ||
        sb.st_uid != geteuid()) {
        goto exit;
    }
    n = read(fd, text, sizeof(text) - 1);
    if (n <= 0) {
        goto exit;
    }
    text[n] = '\0';
    for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
        char *eq;
        next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }
        eq = strchr(line, '=');
        if (eq == NULL) {
            goto exit;
        }
        *eq++ = '\0';
        if (strcmp(line, "token") == 0) {
            if (mpos_hex_decode(eq, st->token, sizeof(st->token), &tlen) != MPOS_OK || tlen != 32) {
                goto exit;
            }
            have_token = 1;
        } else if (strcmp(line, "expires") == 0) {
            st->s.expires = strtoull(eq, NULL, 10);
        } else if (strcmp(line, "merchant") == 0) {
            copy_field(st->s.merchant, sizeof(st->s.merchant), eq);
        } else if (strcmp(line, "role") == 0) {
            copy_field(st->s.role, sizeof(st->s.role), eq);
        } else if (strcmp(line, "user") == 0) {
            copy_field(st->s.username, sizeof(st->s.username), eq);
        }
    }
    rc = have_token ? MPOS_OK : MPOSHOST_ERR_STATE;
exit:
    close(fd);
    MPOS_WIPE_BUFFER(text);
    if (rc != MPOS_OK) {
        mpos_cleanse(st, sizeof(*st));
    }
    return rc;
}

int host_state_remove(const char *path)
{
    if (path == NULL) {
        return MPOS_ERR_ARG;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        return MPOSHOST_ERR_STATE;
    }
    return MPOS_OK;
}

/* The receipts file: "RRN AMOUNT CURRENCY" lines of the sales this device approved, so that a
 * void can name only the RRN (the link needs the original's amount: docs/protocol.md 1.3). */
static int receipts_path(const char *state, char *out, size_t cap)
{
    return snprintf(out, cap, "%s.receipts", state) < (int)cap ? MPOS_OK : MPOSHOST_ERR_STATE;
}

int host_receipt_add(const char *state, const char *rrn, uint64_t amount, uint16_t currency)
{
    char path[4096], line[64];
    int fd, n, rc = MPOSHOST_ERR_STATE;
    if (state == NULL || rrn == NULL || rrn[0] == '\0' || strlen(rrn) > 12) {
        return MPOS_ERR_ARG;
    }
    if (receipts_path(state, path, sizeof(path)) != MPOS_OK) {
        return MPOSHOST_ERR_STATE;
    }
    n = snprintf(line, sizeof(line), "%s %llu %u\n", rrn, (unsigned long long)amount,
                 (unsigned)currency);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return MPOSHOST_ERR_STATE;
    }
    if (fchmod(fd, 0600) == 0 && n > 0 && write(fd, line, (size_t)n) == n) {
        rc = MPOS_OK;
    }
    close(fd);
    return rc;
}

int host_receipt_find(const char *state, const char *rrn, uint64_t *amount, uint16_t *currency)
{
    char path[4096], line[128];
    struct stat sb;
    FILE *f;
    int fd, rc = MPOSHOST_ERR_NOT_LOGGED;
    if (state == NULL || rrn == NULL || amount == NULL || currency == NULL) {
        return MPOS_ERR_ARG;
    }
    if (receipts_path(state, path, sizeof(path)) != MPOS_OK) {
        return MPOSHOST_ERR_STATE;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return MPOSHOST_ERR_NOT_LOGGED;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0 ||
        sb.st_uid != geteuid() || (f = fdopen(fd, "r")) == NULL) {
        close(fd);
        return MPOSHOST_ERR_STATE;
    }
    /* The last line for that RRN wins. */
    while (fgets(line, sizeof(line), f) != NULL) {
        char r[16];
        unsigned long long a = 0;
        unsigned c = 0;
        if (sscanf(line, "%15s %llu %u", r, &a, &c) == 3 && strcmp(r, rrn) == 0 && c <= 999) {
            *amount = (uint64_t)a;
            *currency = (uint16_t)c;
            rc = MPOS_OK;
        }
    }
    fclose(f);
    return rc;
}
