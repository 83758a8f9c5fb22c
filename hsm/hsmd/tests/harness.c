/* Test and bench harness for mpos-hsmd (harness.h). */
#define _GNU_SOURCE 1
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpos/kcv.h"
#include "mpos/util.h"

const char *const harness_component_hex[2] = {
    "0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0",
    "A5A5A5A55A5A5A5A3C3C3C3CC3C3C3C3966969966996699600FF00FFFF00FF00"};

static const char *const role_file[HARNESS_ROLES] = {"backend.sock", "tools.sock", "switch.sock"};
static const char *const role_name[HARNESS_ROLES] = {"backend", "tools", "switch"};

void harness_hex(const char *hex, uint8_t *out, size_t len)
{
    size_t got = 0;
    if (mpos_hex_decode(hex, out, len, &got) != MPOS_OK || got != len) {
        fprintf(stderr, "harness: bad hex literal %s\n", hex);
        abort();
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int harness_init(struct hsmd_harness *h)
{
    uint8_t comps[2][HSM_LMK_LEN], kcvs[2][HSM_KCV_LEN];
    int rc = -1;
    memset(h, 0, sizeof(*h));
    h->pid = -1;
    strcpy(h->dir, "/tmp/mpos-hsmd-test-XXXXXX");
    if (mkdtemp(h->dir) == NULL) {
        return -1;
    }
    for (int r = 0; r < HARNESS_ROLES; r++) {
        snprintf(h->sock[r], sizeof(h->sock[r]), "%s/%s", h->dir, role_file[r]);
    }
    snprintf(h->audit, sizeof(h->audit), "%s/audit.log", h->dir);
    snprintf(h->comps, sizeof(h->comps), "%s/lmk-components", h->dir);
    if (hsm_vault_init(&h->vault) != MPOS_OK) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        harness_hex(harness_component_hex[i], comps[i], HSM_LMK_LEN);
        if (mpos_kcv_compute(&h->vault.cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, comps[i], HSM_LMK_LEN,
                             kcvs[i], HSM_KCV_LEN) != MPOS_OK) {
            goto exit;
        }
    }
    if (hsm_vault_open_components(&h->vault, (const uint8_t(*)[HSM_LMK_LEN])comps, 2,
                                  (const uint8_t(*)[HSM_KCV_LEN])kcvs) != MPOS_OK) {
        goto exit;
    }
    memcpy(h->lmk_kcv, h->vault.lmk_kcv, HSM_KCV_LEN);
    int fd = open(h->comps, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        goto exit;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        goto exit;
    }
    fprintf(f, "# test LMK components: component check-value\n");
    for (int i = 0; i < 2; i++) {
        char hex[2 * HSM_KCV_LEN + 1];
        mpos_hex_encode(kcvs[i], HSM_KCV_LEN, hex);
        fprintf(f, "%s %s\n", harness_component_hex[i], hex);
    }
    rc = fclose(f) == 0 ? 0 : -1;
exit:
    MPOS_WIPE_BUFFER(comps);
    return rc;
}

static int can_connect(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;
    }
    int ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

int harness_start(struct hsmd_harness *h, const char *hsmd_path, const char *const *extra_args)
{
    const char *argv[64];
    char sock_args[HARNESS_ROLES][160];
    size_t n = 0;
    argv[n++] = hsmd_path;
    for (int r = 0; r < HARNESS_ROLES; r++) {
        snprintf(sock_args[r], sizeof(sock_args[r]), "%s=%s", role_name[r], h->sock[r]);
        argv[n++] = "--socket";
        argv[n++] = sock_args[r];
    }
    argv[n++] = "--audit-log";
    argv[n++] = h->audit;
    if (h->lmk_args == NULL) {
        argv[n++] = "--lmk-components-file";
        argv[n++] = h->comps;
    }
    for (size_t i = 0; h->lmk_args != NULL && h->lmk_args[i] != NULL && n < 40; i++) {
        argv[n++] = h->lmk_args[i];
    }
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 63; i++) {
        argv[n++] = extra_args[i];
    }
    argv[n] = NULL;
    h->pid = fork();
    if (h->pid < 0) {
        return -1;
    }
    if (h->pid == 0) {
        int in = open(h->stdin_path != NULL ? h->stdin_path : "/dev/null", O_RDONLY);
        if (in >= 0) {
            dup2(in, STDIN_FILENO);
        }
        execv(hsmd_path, (char *const *)argv);
        _exit(127);
    }
    for (int tries = 0; tries < 200; tries++) {
        int ready = 1;
        for (int r = 0; r < HARNESS_ROLES; r++) {
            ready &= can_connect(h->sock[r]);
        }
        if (ready) {
            return 0;
        }
        int status;
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            h->pid = -1;
            return -1;
        }
        sleep_ms(50);
    }
    return -1;
}

int harness_stop(struct hsmd_harness *h)
{
    int status = 0;
    if (h->pid <= 0) {
        return -1;
    }
    kill(h->pid, SIGTERM);
    for (int tries = 0; tries < 200; tries++) {
        pid_t p = waitpid(h->pid, &status, WNOHANG);
        if (p == h->pid) {
            h->pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(50);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &status, 0);
    h->pid = -1;
    return -1;
}

int harness_run(const char *hsmd_path, const char *const *args)
{
    int status = 0;
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
        }
        execv(hsmd_path, (char *const *)args);
        _exit(127);
    }
    for (int tries = 0; tries < 200; tries++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* With MPOS_TEST_ARTIFACTS set (ctest), the audit log is kept there for the secret scan
 * (tests/secret_scan.py): audit-<pid>-<n>.log. */
static void keep_artifact(const char *src, const char *stem)
{
    static unsigned n;
    const char *dir = getenv("MPOS_TEST_ARTIFACTS");
    char dst[512], parent[512], buf[4096];
    if (dir == NULL || dir[0] == '\0') {
        return;
    }
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        (void)mkdir(parent, 0755);
    }
    (void)mkdir(dir, 0755);
    snprintf(dst, sizeof(dst), "%s/%s-%ld-%u.log", dir, stem, (long)getpid(), n++);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ssize_t r;
    while (out >= 0 && (r = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)r) != r) {
            break;
        }
    }
    if (in >= 0) {
        close(in);
    }
    if (out >= 0) {
        close(out);
    }
}

void harness_cleanup(struct hsmd_harness *h)
{
    if (h->pid > 0) {
        (void)harness_stop(h);
    }
    for (int r = 0; r < HARNESS_ROLES; r++) {
        unlink(h->sock[r]);
    }
    keep_artifact(h->audit, "audit");
    unlink(h->audit);
    unlink(h->comps);
    rmdir(h->dir);
    hsm_vault_close(&h->vault);
}

int harness_key_block(struct hsmd_harness *h, const char *usage, char alg, char mode, char exp,
                      uint8_t dukpt, const char *key_hex, char *out, size_t cap)
{
    hsm_key k;
    size_t len = 0;
    memset(&k, 0, sizeof(k));
    if (mpos_hex_decode(key_hex, k.bytes, sizeof(k.bytes), &k.len) != MPOS_OK) {
        return -1;
    }
    memcpy(k.attr.usage, usage, 2);
    k.attr.algorithm = alg;
    k.attr.mode = mode;
    k.attr.exportability = exp;
    k.attr.dukpt = dukpt;
    int rc = hsm_key_store(&h->vault, &k, out, cap, &len);
    hsm_key_clear(&k);
    return rc == MPOS_OK ? 0 : -1;
}
