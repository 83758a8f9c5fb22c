/* mpos-backend logs: one key=value line per event on stderr. Callers pass only values that
 * are safe to show (masked PAN, serials, usernames through bs_log_safe); never a PIN, PAN,
 * track, key, token or password. */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void bs_log(const char *level, const char *event, uint64_t conn, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    size_t n;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    int w = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s event=%s", ts.tv_nsec / 1000000,
                     level, event);
    if (w > 0) {
        n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    }
    if (conn != 0 && n < sizeof(line)) {
        w = snprintf(line + n, sizeof(line) - n, " conn=%llu", (unsigned long long)conn);
        if (w > 0) {
            n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
        }
    }
    if (fmt != NULL && n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (w > 0) {
            n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
        }
    }
    /* One write per line, so that lines of several threads never interleave. */
    flockfile(stderr);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    funlockfile(stderr);
}

const char *bs_log_safe(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    if (cap == 0) {
        return "";
    }
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 strchr("._:@/-*", ch) != NULL;
        out[i] = ok ? ch : '_';
    }
    out[i] = '\0';
    if (i == 0 && cap > 1) {
        out[0] = '-';
        out[1] = '\0';
    }
    return out;
}
