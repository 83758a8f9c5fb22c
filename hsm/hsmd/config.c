/* mpos-hsmd configuration: an INI file (libinih) and command-line flags, which win. */
#include "hsmd.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[HSMD_ROLES] = {"backend", "tools", "switch"};

/* The allow-lists of docs/hsm-design.md ("Roles"). */
static const char *const default_allow[HSMD_ROLES] = {
    /* backend: translate PIN and card data, MACs, PAN hash, EMV issuer side for on-us,
     * UnionPay sign-on working keys, sealed messages, parameter signing, random, status */
    "status random pin.translate-dukpt pin.translate card-data.translate dukpt.mac-verify "
    "dukpt.mac-generate mac.generate mac.verify pan.hash emv.arqc-verify mkwk.generate "
    "sealed.open sealed.respond params.sign",
    /* tools: key generation, import/export, keys from components, BDK, provisioning,
     * certificates, parameter signing, status */
    "status random key.generate bdk.generate key.import key.export dukpt.initial-key "
    "mkwk.generate pvv.generate cert.sign cert.ca-create provision.terminal "
    "key.from-components params.sign",
    /* switch: PIN verification against the PVV, ARQC/ARPC, zone MACs, status */
    "status pin.verify-pvv emv.arqc-verify mac.generate mac.verify",
};

const char *hsmd_role_name(int role)
{
    return role >= 0 && role < HSMD_ROLES ? role_names[role] : "-";
}

static int role_of(const char *name)
{
    for (int r = 0; r < HSMD_ROLES; r++) {
        if (strcmp(name, role_names[r]) == 0) {
            return r;
        }
    }
    return -1;
}

int hsmd_allow_parse(const char *list, uint64_t *mask)
{
    char name[HSM_PROTO_NAME_MAX_LEN + 1];
    *mask = 0;
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t') {
            p++;
        }
        size_t len = strcspn(p, " ,\t");
        if (len == 0) {
            break;
        }
        if (len > HSM_PROTO_NAME_MAX_LEN) {
            fprintf(stderr, "mpos-hsmd: unknown command in allow-list: %.*s\n", (int)len, p);
            return -1;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        const struct hsm_command *c = hsm_proto_command_by_name(name);
        if (c == NULL) {
            fprintf(stderr, "mpos-hsmd: unknown command in allow-list: %s\n", name);
            return -1;
        }
        *mask |= (uint64_t)1 << hsm_proto_command_index(c);
        p += len;
    }
    return 0;
}

void hsmd_config_defaults(struct hsmd_config *c)
{
    memset(c, 0, sizeof(*c));
    for (int r = 0; r < HSMD_ROLES; r++) {
        c->socket_uid[r] = -1;
        c->socket_gid[r] = -1;
        if (hsmd_allow_parse(default_allow[r], &c->allow[r]) != 0) {
            abort(); /* the built-in lists name known commands */
        }
    }
    c->workers = 2;
    c->max_request = HSM_PROTO_DEFAULT_MAX_REQUEST;
    c->idle_timeout = 60;
    c->max_clients = 1024;
    c->components = 2;
}

void hsmd_config_free(struct hsmd_config *c)
{
    for (int r = 0; r < HSMD_ROLES; r++) {
        free(c->socket[r]);
    }
    free(c->audit_log);
    free(c->pkcs11_module);
    free(c->token_label);
    free(c->pin_file);
    free(c->lmk_wrapped);
    free(c->components_file);
    memset(c, 0, sizeof(*c));
}

/* "uid" or "uid:gid". */
static int parse_owner(const char *v, long *uid, long *gid)
{
    char buf[64];
    unsigned long u = 0, g = 0;
    if (strlen(v) >= sizeof(buf)) {
        return -1;
    }
    strcpy(buf, v);
    char *colon = strchr(buf, ':');
    if (colon != NULL) {
        *colon = '\0';
        if (mpos_cfg_parse_ulong(colon + 1, 0, 0x7FFFFFFE, &g) != 0) {
            return -1;
        }
    }
    if (mpos_cfg_parse_ulong(buf, 0, 0x7FFFFFFE, &u) != 0) {
        return -1;
    }
    *uid = (long)u;
    *gid = colon != NULL ? (long)g : (long)u;
    return 0;
}

static int set_lmk_source(struct hsmd_config *c, const char *v)
{
    if (strcmp(v, "pkcs11") == 0) {
        c->lmk_source = HSMD_LMK_PKCS11;
    } else if (strcmp(v, "components") == 0) {
        c->lmk_source = HSMD_LMK_COMPONENTS;
    } else if (strcmp(v, "components-file") == 0) {
        c->lmk_source = HSMD_LMK_COMPONENTS_FILE;
    } else {
        return -1;
    }
    return 0;
}

/* One setting, from the INI file (section, key) or a flag (mapped onto the same names). */
static int apply(struct hsmd_config *c, const char *section, const char *key, const char *v)
{
    unsigned long x = 0;
    int r;
    if (strcmp(section, "hsmd") == 0) {
        if (strcmp(key, "workers") == 0) {
            if (mpos_cfg_parse_ulong(v, 1, HSMD_MAX_WORKERS, &x) != 0) {
                return -1;
            }
            c->workers = (unsigned)x;
        } else if (strcmp(key, "max_request") == 0) {
            if (mpos_cfg_parse_ulong(v, 256, HSM_PROTO_MAX_REQUEST, &x) != 0) {
                return -1;
            }
            c->max_request = x;
        } else if (strcmp(key, "idle_timeout") == 0) {
            if (mpos_cfg_parse_ulong(v, 1, 86400, &x) != 0) {
                return -1;
            }
            c->idle_timeout = (unsigned)x;
        } else if (strcmp(key, "max_clients") == 0) {
            if (mpos_cfg_parse_ulong(v, 1, 65536, &x) != 0) {
                return -1;
            }
            c->max_clients = (unsigned)x;
        } else if (strcmp(key, "audit_log") == 0) {
            return mpos_cfg_set_str(&c->audit_log, v);
        } else {
            return -1;
        }
        return 0;
    }
    if (strcmp(section, "sockets") == 0) {
        size_t kl = strlen(key);
        if (kl > 6 && strcmp(key + kl - 6, "_owner") == 0) {
            char role[16];
            if (kl - 6 >= sizeof(role)) {
                return -1;
            }
            memcpy(role, key, kl - 6);
            role[kl - 6] = '\0';
            r = role_of(role);
            return r < 0 ? -1 : parse_owner(v, &c->socket_uid[r], &c->socket_gid[r]);
        }
        r = role_of(key);
        return r < 0 ? -1 : mpos_cfg_set_str(&c->socket[r], v);
    }
    if (strcmp(section, "allow") == 0) {
        r = role_of(key);
        return r < 0 ? -1 : hsmd_allow_parse(v, &c->allow[r]);
    }
    if (strcmp(section, "lmk") == 0) {
        if (strcmp(key, "source") == 0) {
            return set_lmk_source(c, v);
        } else if (strcmp(key, "pkcs11_module") == 0) {
            return mpos_cfg_set_str(&c->pkcs11_module, v);
        } else if (strcmp(key, "token_label") == 0) {
            return mpos_cfg_set_str(&c->token_label, v);
        } else if (strcmp(key, "pin_file") == 0) {
            return mpos_cfg_set_str(&c->pin_file, v);
        } else if (strcmp(key, "wrapped") == 0) {
            return mpos_cfg_set_str(&c->lmk_wrapped, v);
        } else if (strcmp(key, "components") == 0) {
            if (mpos_cfg_parse_ulong(v, 2, HSM_MAX_COMPONENTS, &x) != 0) {
                return -1;
            }
            c->components = (unsigned)x;
        } else if (strcmp(key, "components_file") == 0) {
            return mpos_cfg_set_str(&c->components_file, v);
        } else {
            return -1;
        }
        return 0;
    }
    return -1;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    if (apply(user, section, name, value) != 0) {
        fprintf(stderr, "mpos-hsmd: configuration: [%s] %s: not valid\n", section, name);
        return 0;
    }
    return 1;
}

void hsmd_usage(void)
{
    fprintf(stderr,
            "usage: mpos-hsmd [--config FILE] [options]\n"
            "  --socket ROLE=PATH         listen for role backend, tools or switch\n"
            "  --socket-owner ROLE=UID[:GID]  owner of that socket (default: the service user)\n"
            "  --allow ROLE=CMD,...       replace the role's allow-list\n"
            "  --workers N                crypto worker threads (default 2)\n"
            "  --max-request BYTES        largest request body (default 16384)\n"
            "  --idle-timeout SECONDS     close idle connections (default 60)\n"
            "  --max-clients N            concurrent connections (default 1024)\n"
            "  --audit-log PATH           audit log (required)\n"
            "  --lmk-pkcs11 --pkcs11-module SO --token-label L --pin-file F --lmk-wrapped F\n"
            "  --lmk-components N         dual control: N components typed on stdin\n"
            "  --lmk-components-file F    components and check values from F (tests)\n");
}

/* Flags with a value, and the (section, key) each one sets. */
static const struct mpos_cfg_flag flags[] = {
    {"--workers", "hsmd", "workers"},           {"--max-request", "hsmd", "max_request"},
    {"--idle-timeout", "hsmd", "idle_timeout"}, {"--max-clients", "hsmd", "max_clients"},
    {"--audit-log", "hsmd", "audit_log"},       {"--pkcs11-module", "lmk", "pkcs11_module"},
    {"--token-label", "lmk", "token_label"},    {"--pin-file", "lmk", "pin_file"},
    {"--lmk-wrapped", "lmk", "wrapped"},
};

/* "ROLE=VALUE" flags. */
static int apply_role_flag(struct hsmd_config *c, const char *section, const char *suffix,
                           const char *v)
{
    char key[32];
    const char *eq = strchr(v, '=');
    if (eq == NULL || (size_t)(eq - v) + strlen(suffix) >= sizeof(key)) {
        return -1;
    }
    memcpy(key, v, (size_t)(eq - v));
    strcpy(key + (eq - v), suffix);
    return apply(c, section, key, eq + 1);
}

int hsmd_config_load(struct hsmd_config *c, int argc, char **argv)
{
    /* The INI file first, so that flags override it. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            int rc = ini_parse(argv[i + 1], on_ini, c);
            if (rc != 0) {
                fprintf(stderr, "mpos-hsmd: cannot read configuration %s%s\n", argv[i + 1],
                        rc > 0 ? " (error above)" : "");
                return -1;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = -1, used = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            hsmd_usage();
            return -1;
        } else if (strcmp(a, "--lmk-pkcs11") == 0) {
            c->lmk_source = HSMD_LMK_PKCS11;
            used = 0;
            rc = 0;
        } else if (v == NULL) {
            rc = -1;
        } else if (strcmp(a, "--config") == 0) {
            rc = 0;
        } else if (strcmp(a, "--socket") == 0) {
            rc = apply_role_flag(c, "sockets", "", v);
        } else if (strcmp(a, "--socket-owner") == 0) {
            rc = apply_role_flag(c, "sockets", "_owner", v);
        } else if (strcmp(a, "--allow") == 0) {
            rc = apply_role_flag(c, "allow", "", v);
        } else if (strcmp(a, "--lmk-components") == 0) {
            rc = apply(c, "lmk", "components", v);
            c->lmk_source = HSMD_LMK_COMPONENTS;
        } else if (strcmp(a, "--lmk-components-file") == 0) {
            rc = apply(c, "lmk", "components_file", v);
            c->lmk_source = HSMD_LMK_COMPONENTS_FILE;
        } else {
            const struct mpos_cfg_flag *f =
                mpos_cfg_flag_find(flags, sizeof(flags) / sizeof(flags[0]), a);
            if (f != NULL) {
                rc = apply(c, f->section, f->key, v);
            }
        }
        if (rc != 0) {
            fprintf(stderr, "mpos-hsmd: bad or unknown option: %s\n", a);
            hsmd_usage();
            return -1;
        }
        i += used;
    }
    int any = 0;
    for (int r = 0; r < HSMD_ROLES; r++) {
        any |= c->socket[r] != NULL;
    }
    if (!any) {
        fprintf(stderr, "mpos-hsmd: no role socket configured\n");
        return -1;
    }
    if (c->audit_log == NULL) {
        fprintf(stderr, "mpos-hsmd: no audit log configured\n");
        return -1;
    }
    switch (c->lmk_source) {
    case HSMD_LMK_PKCS11:
        if (c->pkcs11_module == NULL || c->token_label == NULL || c->pin_file == NULL ||
            c->lmk_wrapped == NULL) {
            fprintf(stderr, "mpos-hsmd: pkcs11 needs module, token label, PIN file and "
                            "wrapped LMK\n");
            return -1;
        }
        break;
    case HSMD_LMK_COMPONENTS:
        break;
    case HSMD_LMK_COMPONENTS_FILE:
        if (c->components_file == NULL) {
            fprintf(stderr, "mpos-hsmd: no components file\n");
            return -1;
        }
        break;
    default:
        fprintf(stderr, "mpos-hsmd: no LMK source configured\n");
        return -1;
    }
    return 0;
}
