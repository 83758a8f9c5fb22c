/* mpos_daemon early hardening. */
#define _GNU_SOURCE 1 /* prctl */
#include "mpos/daemon.h"

#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int mpos_daemon_harden_early(const char *prog)
{
    struct rlimit no_core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        char what[128];
        snprintf(what, sizeof(what), "%s: disabling core dumps", prog);
        perror(what);
        return -1;
    }
    return 0;
}
