/* mpos-backend configuration: an INI file (libinih) and a few flags, which win
 * (docs/backend.md has the reference). Unknown sections or keys are an error: a misspelt
 * security setting must not silently fall back to its default. */
#include "server.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mpos/tlv.h"
#include "mpos/util.h"

void bs_config_defaults(struct bs_config *c)
{
    memset(c, 0, sizeof(*c));
    c->workers = 2;
    c->idle_timeout_s = 300;
    c->max_connections = 1024;
    c->hsm_timeout_ms = 5000;
    c->up_port = 0;
    c->up_timeout_ms = 5000;
    c->echo_s = 60;
    c->saf_interval_ms = 2000;
    c->max_login_failures = MPOS_STORE_MAX_FAILED_LOGINS;
    c->lockout_s = MPOS_STORE_LOCKOUT_SECONDS;
    c->session_ttl_s = 28800;
    c->max_speed_kmh = 900;
}

void bs_config_free(struct bs_config *c)
{
    char **strs[] = {&c->listen,   &c->cert,       &c->key,      &c->terminal_ca, &c->params,
                     &c->store_db, &c->hsm_socket, &c->up_host,  &c->acquirer_id, &c->zpk,
                     &c->zak,      &c->zek,        &c->port_file};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
    }
    free(c->params_pkg);
    memset(c, 0, sizeof(*c));
}

/* "hex,hex,..." of SHA-256 values; empty: any binary. */
static int set_hashes(struct bs_config *c, const char *v)
{
    c->n_binary_hashes = 0;
    const char *p = v;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t') {
            p++;
        }
        size_t n = strcspn(p, " ,\t");
        if (n == 0) {
            break;
        }
        char hex[65];
        size_t got = 0;
        if (n != 64 || c->n_binary_hashes == BK_MAX_BINARY_HASH) {
            return -1;
        }
        memcpy(hex, p, 64);
        hex[64] = '\0';
        if (mpos_hex_decode(hex, c->binary_hashes[c->n_binary_hashes], 32, &got) != MPOS_OK ||
            got != 32) {
            return -1;
        }
        c->n_binary_hashes++;
        p += n;
    }
    return 0;
}

static int apply(struct bs_config *c, const char *section, const char *key, const char *v)
{
    int x = 0;
    if (strcmp(section, "server") == 0) {
        if (strcmp(key, "listen") == 0) {
            return mpos_cfg_set_str(&c->listen, v);
        } else if (strcmp(key, "workers") == 0) {
            return mpos_cfg_set_uint(&c->workers, v, 1, BK_MAX_WORKERS);
        } else if (strcmp(key, "cert") == 0) {
            return mpos_cfg_set_str(&c->cert, v);
        } else if (strcmp(key, "key") == 0) {
            return mpos_cfg_set_str(&c->key, v);
        } else if (strcmp(key, "allow_tls12") == 0) {
            return mpos_cfg_set_int(&c->allow_tls12, v, 0, 1);
        } else if (strcmp(key, "idle_timeout_s") == 0) {
            return mpos_cfg_set_uint(&c->idle_timeout_s, v, 1, 86400);
        } else if (strcmp(key, "max_connections") == 0) {
            return mpos_cfg_set_uint(&c->max_connections, v, 1, 1000000);
        }
    } else if (strcmp(section, "terminal") == 0) {
        if (strcmp(key, "ca") == 0) {
            return mpos_cfg_set_str(&c->terminal_ca, v);
        } else if (strcmp(key, "params") == 0) {
            return mpos_cfg_set_str(&c->params, v);
        }
    } else if (strcmp(section, "store") == 0) {
        if (strcmp(key, "db") == 0) {
            return mpos_cfg_set_str(&c->store_db, v);
        }
    } else if (strcmp(section, "hsm") == 0) {
        if (strcmp(key, "socket") == 0) {
            return mpos_cfg_set_str(&c->hsm_socket, v);
        } else if (strcmp(key, "timeout_ms") == 0) {
            return mpos_cfg_set_int(&c->hsm_timeout_ms, v, 1, 600000);
        }
    } else if (strcmp(section, "upstream") == 0) {
        if (strcmp(key, "host") == 0) {
            return mpos_cfg_set_str(&c->up_host, v);
        } else if (strcmp(key, "port") == 0) {
            if (mpos_cfg_set_int(&x, v, 1, 65535) != 0) {
                return -1;
            }
            c->up_port = (uint16_t)x;
            return 0;
        } else if (strcmp(key, "timeout_ms") == 0) {
            return mpos_cfg_set_int(&c->up_timeout_ms, v, 1, 600000);
        } else if (strcmp(key, "echo_s") == 0) {
            return mpos_cfg_set_int(&c->echo_s, v, 0, 86400);
        } else if (strcmp(key, "saf_interval_ms") == 0) {
            return mpos_cfg_set_int(&c->saf_interval_ms, v, 1, 3600000);
        } else if (strcmp(key, "acquirer_id") == 0) {
            return mpos_digits_valid(v, 1, 11) ? mpos_cfg_set_str(&c->acquirer_id, v) : -1;
        }
    } else if (strcmp(section, "keys") == 0) {
        char **dst = strcmp(key, "zpk") == 0   ? &c->zpk
                     : strcmp(key, "zak") == 0 ? &c->zak
                     : strcmp(key, "zek") == 0 ? &c->zek
                                               : NULL;
        if (dst != NULL) {
            return mpos_store_label_valid(v) ? mpos_cfg_set_str(dst, v) : -1;
        }
    } else if (strcmp(section, "policy") == 0) {
        if (strcmp(key, "allow_root") == 0) {
            return mpos_cfg_set_int(&c->allow_root, v, 0, 1);
        } else if (strcmp(key, "allow_debugger") == 0) {
            return mpos_cfg_set_int(&c->allow_debugger, v, 0, 1);
        } else if (strcmp(key, "binary_hashes") == 0) {
            return set_hashes(c, v);
        } else if (strcmp(key, "bind_host_device") == 0) {
            return mpos_cfg_set_int(&c->bind_host_device, v, 0, 1);
        } else if (strcmp(key, "max_login_failures") == 0) {
            return mpos_cfg_set_int(&c->max_login_failures, v, 1, 1000);
        } else if (strcmp(key, "lockout_s") == 0) {
            return mpos_cfg_set_int(&c->lockout_s, v, 1, 86400 * 30);
        } else if (strcmp(key, "session_ttl_s") == 0) {
            return mpos_cfg_set_int(&c->session_ttl_s, v, 1, 86400 * 7);
        } else if (strcmp(key, "max_speed_kmh") == 0) {
            return mpos_cfg_set_int(&c->max_speed_kmh, v, 1, 100000);
        } else if (strcmp(key, "decline_impossible_travel") == 0) {
            return mpos_cfg_set_int(&c->decline_impossible_travel, v, 0, 1);
        } else if (strcmp(key, "min_password_length") == 0) {
            return 0; /* mposctl's setting, read from the same file */
        }
    }
    return -1;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    if (apply(user, section, name, value) != 0) {
        fprintf(stderr, "mpos-backend: configuration: [%s] %s: unknown or not valid\n", section,
                name);
        return 0;
    }
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mpos-backend --config FILE [--listen ADDR:PORT] [--workers N]\n"
            "                    [--port-file FILE] [--foreground] [--allow-root]\n"
            "  --config FILE      INI configuration (docs/backend.md)\n"
            "  --listen ADDR:PORT host listener (default 127.0.0.1:0, port chosen by the OS)\n"
            "  --workers N        worker threads (default 2)\n"
            "  --port-file FILE   write the bound port there once listening\n"
            "  --foreground       do not detach\n"
            "  --allow-root       run as root (tests only)\n");
}

/* Reads a whole small file (the parameter package). */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f == NULL) {
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > max) {
        fclose(f);
        return -1;
    }
    *len = (size_t)st.st_size;
    *out = malloc(*len);
    if (*out == NULL || fread(*out, 1, *len, f) != *len) {
        free(*out);
        *out = NULL;
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

int bs_params_min_firmware(const uint8_t *pkg, size_t len, uint32_t *out)
{
    mpos_tlv e3, e4, c4;
    int found = 0;
    *out = 0;
    if (mpos_tlv_find(pkg, len, MPOS_TLV_STRICT, 0xE3, &e3, &found) != 0 || !found ||
        e3.raw_len != len ||
        mpos_tlv_find(e3.value, e3.len, MPOS_TLV_STRICT, 0xE4, &e4, &found) != 0 || !found ||
        mpos_tlv_find(e4.value, e4.len, MPOS_TLV_STRICT, 0xC4, &c4, &found) != 0 || !found ||
        c4.len != 4) {
        return MPOS_ERR_FORMAT;
    }
    *out = mpos_load_be32(c4.value);
    return 0;
}

int bs_firmware_parse(const char *s, uint32_t *out)
{
    unsigned long part[3] = {0, 0, 0};
    const char *p = s;
    *out = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = 0;
        while (p[n] >= '0' && p[n] <= '9') {
            n++;
        }
        if (n == 0 || n > 5) {
            return MPOS_ERR_FORMAT;
        }
        part[i] = strtoul(p, NULL, 10);
        p += n;
        if (i < 2 && *p++ != '.') {
            return MPOS_ERR_FORMAT;
        }
    }
    if ((*p != '\0' && *p != '-') || part[0] > 255 || part[1] > 255 || part[2] > 255) {
        return MPOS_ERR_FORMAT;
    }
    *out = (uint32_t)(part[0] << 16 | part[1] << 8 | part[2]);
    return 0;
}

static const struct mpos_cfg_flag flags[] = {
    {"--listen", "server", "listen"},
    {"--workers", "server", "workers"},
};

int bs_config_load(struct bs_config *c, int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[i + 1];
        }
    }
    if (config == NULL) {
        fprintf(stderr, "mpos-backend: --config FILE is required\n");
        usage();
        return -1;
    }
    int rc = ini_parse(config, on_ini, c);
    if (rc != 0) {
        fprintf(stderr, "mpos-backend: cannot read configuration %s%s\n", config,
                rc > 0 ? " (error above)" : "");
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = -1, used = 1;
        if (strcmp(a, "--foreground") == 0) {
            c->foreground = 1;
            r = 0;
            used = 0;
        } else if (strcmp(a, "--allow-root") == 0) {
            c->allow_root_process = 1;
            r = 0;
            used = 0;
        } else if (v == NULL) {
            r = -1;
        } else if (strcmp(a, "--config") == 0) {
            r = 0;
        } else if (strcmp(a, "--port-file") == 0) {
            r = mpos_cfg_set_str(&c->port_file, v);
        } else {
            const struct mpos_cfg_flag *f =
                mpos_cfg_flag_find(flags, sizeof(flags) / sizeof(flags[0]), a);
            if (f != NULL) {
                r = apply(c, f->section, f->key, v);
            }
        }
        if (r != 0) {
            fprintf(stderr, "mpos-backend: bad or unknown option: %s\n", a);
            usage();
            return -1;
        }
        i += used;
    }
    if (c->listen == NULL && mpos_cfg_set_str(&c->listen, "127.0.0.1:0") != 0) {
        return -1;
    }
    if (c->cert == NULL || c->key == NULL) {
        fprintf(stderr, "mpos-backend: [server] cert and key are required\n");
        return -1;
    }
    if (c->terminal_ca == NULL || c->store_db == NULL) {
        fprintf(stderr, "mpos-backend: [terminal] ca and [store] db are required\n");
        return -1;
    }
    /* The store enforces the lock-out (A-OPER-1) with its own fixed numbers; a different
     * setting would be a promise this process cannot keep. */
    if (c->max_login_failures != MPOS_STORE_MAX_FAILED_LOGINS ||
        c->lockout_s != MPOS_STORE_LOCKOUT_SECONDS) {
        fprintf(stderr,
                "mpos-backend: [policy] max_login_failures and lockout_s must be %d and %d (the "
                "store enforces these)\n",
                MPOS_STORE_MAX_FAILED_LOGINS, MPOS_STORE_LOCKOUT_SECONDS);
        return -1;
    }
    /* HELLO_OK and ACTIVATE_OK of an activated terminal carry the package (2.1). */
    if (c->params == NULL) {
        fprintf(stderr, "mpos-backend: [terminal] params is required\n");
        return -1;
    }
    {
        if (read_file(c->params, MPOS_TUNNEL_PARAMS_MAX, &c->params_pkg, &c->params_len) != 0 ||
            bs_params_min_firmware(c->params_pkg, c->params_len, &c->min_firmware) != 0) {
            fprintf(stderr, "mpos-backend: [terminal] params %s: not a parameter package\n",
                    c->params);
            return -1;
        }
    }
    return 0;
}
