/* mpos_daemon INI values: strict integers (a typo must not become 0) and owned strings. */
#include "mpos/daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mpos_cfg_set_str(char **dst, const char *v)
{
    size_t n = strlen(v);
    char *s = malloc(n + 1);
    if (s == NULL) {
        return -1;
    }
    memcpy(s, v, n + 1);
    free(*dst);
    *dst = s;
    return 0;
}

int mpos_cfg_parse_long(const char *v, long min, long max, long *out)
{
    char *end = NULL;
    /* strtol would accept leading space and '+': the file must say exactly a number. */
    if (!((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9'))) {
        return -1;
    }
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max) {
        return -1;
    }
    *out = x;
    return 0;
}

int mpos_cfg_parse_ulong(const char *v, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    /* strtoul would accept "-1" (as ULONG_MAX) and leading space. */
    if (v[0] < '0' || v[0] > '9') {
        return -1;
    }
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max) {
        return -1;
    }
    *out = x;
    return 0;
}

int mpos_cfg_set_int(int *dst, const char *v, long min, long max)
{
    long x = 0;
    if (min < -2147483647L - 1 || max > 2147483647L || mpos_cfg_parse_long(v, min, max, &x) != 0) {
        return -1;
    }
    *dst = (int)x;
    return 0;
}

int mpos_cfg_set_uint(unsigned *dst, const char *v, long min, long max)
{
    long x = 0;
    if (min < 0 || max > 4294967295L || mpos_cfg_parse_long(v, min, max, &x) != 0) {
        return -1;
    }
    *dst = (unsigned)x;
    return 0;
}

const struct mpos_cfg_flag *mpos_cfg_flag_find(const struct mpos_cfg_flag *table, size_t n,
                                               const char *flag)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].flag, flag) == 0) {
            return &table[i];
        }
    }
    return NULL;
}
