/* mpos-hsmd hardening: file permission checks, privilege drop, capabilities, core dumps. */
#include "hsmd.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int hsmd_check_dir(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "mpos-hsmd: socket directory %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "mpos-hsmd: %s is not a directory\n", path);
        return -1;
    }
    if ((st.st_mode & 0022) != 0 || (st.st_uid != 0 && st.st_uid != geteuid())) {
        fprintf(stderr,
                "mpos-hsmd: refusing socket directory %s: mode %04o owner %ld (it must be "
                "owned by root or by us and writable by no one else)\n",
                path, (unsigned)(st.st_mode & 07777), (long)st.st_uid);
        return -1;
    }
    return 0;
}

int hsmd_check_secret_file(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        fprintf(stderr, "mpos-hsmd: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 0077) != 0 ||
        (st.st_uid != 0 && st.st_uid != geteuid())) {
        fprintf(stderr,
                "mpos-hsmd: refusing key file %s: mode %04o owner %ld (it must be a regular file "
                "owned by root or by us, with no group or other permission)\n",
                path, (unsigned)(st.st_mode & 07777), (long)st.st_uid);
        return -1;
    }
    return 0;
}

int hsmd_harden_early(void)
{
    return mpos_daemon_harden_early("mpos-hsmd");
}

/* Reads a "Name:\tvalue" line of /proc/self/status as a hex number. */
static int status_hex(const char *name, unsigned long long *v)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t nl = strlen(name);
    int rc = -1;
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
            *v = strtoull(line + nl + 1, NULL, 16);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int last_cap(void)
{
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
    int n = CAP_LAST_CAP;
    if (f != NULL) {
        if (fscanf(f, "%d", &n) != 1) {
            n = CAP_LAST_CAP;
        }
        fclose(f);
    }
    return n;
}

static int clear_capabilities(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) != 0) {
        perror("mpos-hsmd: capset");
        return -1;
    }
    /* Ambient set: absent on old kernels (EINVAL), harmless then. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        perror("mpos-hsmd: clearing ambient capabilities");
        return -1;
    }
    return 0;
}

int hsmd_drop_privileges(int was_root)
{
    if (was_root) {
        /* The bounding set first: dropping it needs CAP_SETPCAP, gone after setresuid. A
         * container may withhold CAP_SETPCAP: then the set stays, which no-new-privileges
         * below makes unreachable (no exec can raise capabilities again). */
        int last = last_cap();
        for (int cap = 0; cap <= last; cap++) {
            if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) == 0 || errno == EINVAL) {
                continue;
            }
            if (errno != EPERM) {
                perror("mpos-hsmd: dropping the capability bounding set");
                return -1;
            }
            fprintf(stderr, "mpos-hsmd: warning: no CAP_SETPCAP, bounding set kept\n");
            break;
        }
        gid_t gid = HSMD_SERVICE_ID;
        uid_t uid = HSMD_SERVICE_ID;
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            perror("mpos-hsmd: dropping to the service user");
            return -1;
        }
        /* Regaining root must now fail. */
        if (setresuid(0, 0, 0) == 0 || getuid() == 0 || geteuid() == 0) {
            fprintf(stderr, "mpos-hsmd: privilege drop did not hold\n");
            return -1;
        }
    }
    if (clear_capabilities() != 0) {
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        perror("mpos-hsmd: PR_SET_NO_NEW_PRIVS");
        return -1;
    }
    /* A change of credentials resets the dumpable flag: set it again. */
    if (hsmd_harden_early() != 0) {
        return -1;
    }
    unsigned long long eff = 1, prm = 1;
    if (status_hex("CapEff", &eff) != 0 || status_hex("CapPrm", &prm) != 0 || eff != 0 ||
        prm != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 ||
        prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
        fprintf(stderr, "mpos-hsmd: hardening could not be verified (CapEff %llx CapPrm %llx)\n",
                eff, prm);
        return -1;
    }
    return 0;
}
