/* libmposhost: the platform signals of the envelope (H-DEVID-1, H-BASE-1). */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hostint.h"
#include "mpos/hmac.h"
#include "mpos/util.h"

/* The built-in app key of the device ID: an app-specific key makes the ID of one machine
 * differ from app to app, and /etc/machine-id itself never leaves the device. */
static const char DEFAULT_APP_KEY[] = "openmpos-host device-id app key v1";

int host_device_id(const uint8_t *app_key, size_t app_key_len, uint8_t id[32])
{
    char buf[128];
    size_t n = 0;
    int rc = MPOS_ERR_ARG;
    const char *paths[] = {"/etc/machine-id", "/var/lib/dbus/machine-id"};
    memset(id, 0, 32);
    for (size_t i = 0; i < 2 && n == 0; i++) {
        FILE *f = fopen(paths[i], "r");
        if (f == NULL) {
            continue;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
            n--;
        }
    }
    if (n == 0) {
        rc = MPOS_ERR_FORMAT; /* no platform ID: no device ID */
        goto exit;
    }
    if (app_key == NULL) {
        app_key = (const uint8_t *)DEFAULT_APP_KEY;
        app_key_len = sizeof(DEFAULT_APP_KEY) - 1;
    }
    rc = mpos_hmac_sha256(app_key, app_key_len, (const uint8_t *)buf, n, id);
exit:
    MPOS_WIPE_BUFFER(buf);
    return rc;
}

int host_debugger(void)
{
    char line[256];
    int traced = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "TracerPid:", 10) == 0) {
            traced = atoi(line + 10) != 0;
            break;
        }
    }
    fclose(f);
    return traced;
}

int host_is_root(void)
{
    return geteuid() == 0;
}

int host_binary_hash(uint8_t hash[32])
{
    uint8_t buf[8192];
    unsigned len = 0;
    int rc = MPOS_ERR_CRYPTO;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    memset(hash, 0, 32);
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        goto exit;
    }
    if (fd < 0) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            rc = MPOS_ERR_ARG;
            goto exit;
        }
        if (n == 0) {
            break;
        }
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
            goto exit;
        }
    }
    if (EVP_DigestFinal_ex(md, hash, &len) != 1 || len != 32) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (fd >= 0) {
        close(fd);
    }
    EVP_MD_CTX_free(md);
    return rc;
}
