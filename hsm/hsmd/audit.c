/* mpos-hsmd audit log: one line per command or connection event, each written with one
 * write(2) on an O_APPEND descriptor so that lines of several workers never interleave.
 * A line holds the time, the role, the peer's pid and uid (SO_PEERCRED), the connection and
 * request numbers, the command name, key check values, a command's note (sealed.open: the
 * masked PAN) and the result: never a key, PIN, PAN or track (the callers pass only names,
 * check values, masked PANs and status names). */
#include "hsmd.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hsmd_audit_open(struct hsmd_audit *a, const char *path)
{
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (a->fd < 0) {
        perror("mpos-hsmd: audit log");
        return -1;
    }
    struct stat st;
    if (fstat(a->fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0022) != 0) {
        fprintf(stderr,
                "mpos-hsmd: audit log %s is not a regular file writable only by its "
                "owner\n",
                path);
        close(a->fd);
        a->fd = -1;
        return -1;
    }
    return 0;
}

void hsmd_audit_close(struct hsmd_audit *a)
{
    if (a->fd >= 0) {
        close(a->fd);
    }
    a->fd = -1;
}

void hsmd_audit_line(struct hsmd_audit *a, int role, pid_t pid, uid_t uid, uint64_t conn,
                     uint32_t request_id, const char *cmd, const char *kcvs, const char *note,
                     const char *result)
{
    char line[384];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ role=%s pid=%ld uid=%ld conn=%llu "
                     "id=%lu cmd=%s kcv=%s%s%s result=%s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, hsmd_role_name(role), (long)pid, (long)uid,
                     (unsigned long long)conn, (unsigned long)request_id, cmd,
                     kcvs != NULL && kcvs[0] != '\0' ? kcvs : "-",
                     note != NULL && note[0] != '\0' ? " " : "", note != NULL ? note : "", result);
    if (n <= 0 || a->fd < 0) {
        return;
    }
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* An audit line that cannot be written is reported, never silently dropped. */
    if (write(a->fd, line, (size_t)n) != n) {
        static const char msg[] = "mpos-hsmd: audit log write failed\n";
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
            return;
        }
    }
}
