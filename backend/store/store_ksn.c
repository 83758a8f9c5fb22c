/* mpos_store: KSN allocation (T-UNIQ-1), the keys of a terminal, and the anti-replay counter
 * (B-REPLAY-1).
 *
 * ANSI X9.24-3-2017 (AES DUKPT): the initial key ID is 8 bytes, BDK ID (4) || derivation ID
 * (4); the KSN adds a 4-byte transaction counter. ANSI X9.24-1-2017 (TDES DUKPT): the 10-byte
 * KSN is the initial KSN (59 bits: here a 40-bit key set ID and a 19-bit device ID) and a
 * 21-bit counter. One allocator per BDK hands out derivation / device IDs with a single
 * conditional UPDATE ... RETURNING, which the database serialises (SQLite: the write lock;
 * PostgreSQL: the row lock), so no two terminals ever receive the same initial KSN; the
 * UNIQUE constraints on ksn_allocations and terminals.initial_ksn hold the line as well.
 */
#include <stdio.h>
#include <string.h>

#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

#define AES_KEY_SET_HEX   8            /* BDK ID */
#define TDES_KEY_SET_HEX  10           /* key set ID */
#define AES_MAX_DEVICE    4294967295LL /* 32-bit derivation ID */
#define TDES_MAX_DEVICE   524287LL     /* 19-bit device ID */
#define TDES_COUNTER_BITS 21

static int hex_upper(const char *in, size_t len, char *out)
{
    if (in == NULL || strlen(in) != len) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'f') {
            c = (char)(c - 'a' + 'A');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            return MPOS_ERR_FORMAT;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return MPOS_OK;
}

static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'A' + 10);
}

static size_t key_set_hex_len(enum mpos_terminal_scheme scheme)
{
    return scheme == MPOS_SCHEME_AES_DUKPT    ? AES_KEY_SET_HEX
           : scheme == MPOS_SCHEME_TDES_DUKPT ? TDES_KEY_SET_HEX
                                              : 0;
}

int mpos_store_ksn_allocator_create(mpos_store *st, enum mpos_terminal_scheme scheme,
                                    const char *key_set_id, const char *bdk_label,
                                    int64_t first_device_id, int64_t now)
{
    char ksi[TDES_KEY_SET_HEX + 1];
    char object[64], detail[128];
    struct mpos_store_key key;
    int64_t changes = 0;
    size_t hex_len = key_set_hex_len(scheme);
    int64_t max = scheme == MPOS_SCHEME_AES_DUKPT ? AES_MAX_DEVICE : TDES_MAX_DEVICE;
    if (st == NULL || hex_len == 0) {
        return MPOS_ERR_ARG;
    }
    if (hex_upper(key_set_id, hex_len, ksi) != MPOS_OK || !mpos_store_label_valid(bdk_label) ||
        first_device_id < 0 || first_device_id > max) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_key_load(st, bdk_label, &key);
    if (rc == MPOS_OK && strcmp(key.usage, "B0") != 0) {
        rc = MPOS_ERR_USAGE; /* only a BDK derives initial keys */
    }
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_allocator_insert, &changes, "tttiii",
                        mpos_terminal_scheme_name(scheme), ksi, bdk_label, first_device_id, max,
                        now);
        if (rc == STORE_DONE && changes != 1) {
            rc = MPOS_STORE_EXISTS; /* key set ID taken, or this BDK has an allocator */
        }
    }
    if (rc == STORE_DONE) {
        snprintf(object, sizeof(object), "ksn-allocator:%s:%s", mpos_terminal_scheme_name(scheme),
                 ksi);
        snprintf(detail, sizeof(detail), "bdk=%s first=%lld max=%lld", bdk_label,
                 (long long)first_device_id, (long long)max);
        rc = store_audit(st, now, "ksn.allocator.create", object, detail);
    }
    MPOS_WIPE_CTX(&key);
    return store_tx_end(st, rc == MPOS_OK, rc);
}

int mpos_store_ksn_allocate(mpos_store *st, enum mpos_terminal_scheme scheme,
                            const char *key_set_id, const char *bdk_label, const char *serial,
                            int64_t now, char initial_ksn_out[MPOS_STORE_KSN_HEX_LEN + 1],
                            int64_t *device_id_out)
{
    char ksi[TDES_KEY_SET_HEX + 1] = "";
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1] = "";
    char found_scheme[16] = "";
    struct store_stmt *s = NULL;
    int64_t device = 0, changes = 0, dummy = 0;
    int is_null = 1, rc = MPOS_OK;
    size_t hex_len = key_set_hex_len(scheme);
    if (st == NULL || initial_ksn_out == NULL || hex_len == 0) {
        return MPOS_ERR_ARG;
    }
    initial_ksn_out[0] = '\0';
    if (device_id_out != NULL) {
        *device_id_out = -1;
    }
    if ((key_set_id == NULL && !mpos_store_label_valid(bdk_label)) ||
        (key_set_id != NULL && hex_upper(key_set_id, hex_len, ksi) != MPOS_OK) ||
        (serial != NULL && (store_serial_copy(serial, sn) != MPOS_OK))) {
        return MPOS_ERR_FORMAT;
    }
    rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (key_set_id == NULL) {
        rc = store_prepare(st, sql_allocator_by_label, &s, "t", bdk_label);
        if (rc == MPOS_OK) {
            rc = store_step(st, s);
            if (rc == STORE_ROW) {
                rc = store_column_copy(st, s, 0, found_scheme, sizeof(found_scheme));
                if (rc == MPOS_OK) {
                    rc = store_column_copy(st, s, 1, ksi, sizeof(ksi));
                }
                if (rc == MPOS_OK && strcmp(found_scheme, mpos_terminal_scheme_name(scheme)) != 0) {
                    rc = MPOS_STORE_NOT_FOUND; /* the BDK's allocator is of the other scheme */
                }
            } else if (rc == STORE_DONE) {
                rc = MPOS_STORE_NOT_FOUND;
            }
        }
        store_finalize(st, s);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    /* The allocation itself: one atomic conditional increment. */
    rc = store_query_int64(st, sql_allocator_take, &device, &is_null, "tt",
                           mpos_terminal_scheme_name(scheme), ksi);
    if (rc == STORE_DONE) {
        /* No row moved: unknown allocator, or no device ID left. */
        rc = store_query_int64(st, sql_allocator_exists, &dummy, NULL, "tt",
                               mpos_terminal_scheme_name(scheme), ksi);
        rc = rc == STORE_ROW ? MPOS_STORE_EXHAUSTED : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND : rc;
        goto exit;
    }
    if (rc != STORE_ROW || is_null) {
        rc = rc < 0 ? rc : MPOS_STORE_ERR_DB;
        goto exit;
    }
    if (scheme == MPOS_SCHEME_AES_DUKPT) {
        /* X9.24-3-2017 6.1: initial key ID = BDK ID || derivation ID. */
        snprintf(ksn, sizeof(ksn), "%s%08llX", ksi, (unsigned long long)device);
    } else {
        /* X9.24-1-2017 C.2: KSN = key set ID (40 bits) || device ID (19) || counter 0 (21). */
        snprintf(ksn, sizeof(ksn), "%s%010llX", ksi,
                 (unsigned long long)device << TDES_COUNTER_BITS);
    }
    rc =
        store_exec(st, sql_allocation_insert, &changes, "ttitti", mpos_terminal_scheme_name(scheme),
                   ksi, device, ksn, serial != NULL ? sn : NULL, now);
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_ERR_CONSTRAINT; /* never: the device ID was just taken */
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    rc = MPOS_OK;
    memcpy(initial_ksn_out, ksn, sizeof(ksn));
    if (device_id_out != NULL) {
        *device_id_out = device;
    }
exit:
    return store_tx_end(st, rc == MPOS_OK, rc);
}

static int hex64_upper(const char *in, char out[MPOS_STORE_SHA256_HEX_LEN + 1])
{
    return hex_upper(in, MPOS_STORE_SHA256_HEX_LEN, out);
}

int mpos_store_terminal_register_keys(mpos_store *st, const char *serial,
                                      const struct mpos_store_terminal_keys *keys, int64_t now)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1] = "";
    char kcv[MPOS_STORE_KCV_HEX_LEN + 1] = "";
    char cert[MPOS_STORE_SHA256_HEX_LEN + 1];
    char owner[MPOS_STORE_SERIAL_LEN + 1] = "", bdk[MPOS_STORE_LABEL_LEN + 1] = "";
    char object[64], detail[MPOS_STORE_AUDIT_DETAIL_LEN + 1];
    struct mpos_store_key key;
    struct mpos_store_terminal t = {0};
    struct store_stmt *s = NULL;
    int64_t changes = 0;
    int rc = MPOS_OK, existed = 0;
    const char *scheme_name = NULL;
    if (st == NULL || keys == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(&key, 0, sizeof(key));
    scheme_name = mpos_terminal_scheme_name(keys->scheme);
    if (store_serial_copy(serial, sn) != MPOS_OK || !mpos_store_label_valid(keys->key_label) ||
        hex64_upper(keys->cert_sha256, cert) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    switch (keys->scheme) {
    case MPOS_SCHEME_AES_DUKPT:
        rc = keys->tmk_kcv == NULL ? hex_upper(keys->initial_ksn, 16, ksn) : MPOS_ERR_FORMAT;
        break;
    case MPOS_SCHEME_TDES_DUKPT:
        rc = keys->tmk_kcv == NULL ? hex_upper(keys->initial_ksn, 20, ksn) : MPOS_ERR_FORMAT;
        /* The 21 counter bits of an initial KSN are zero (the last 5 hex digits and the low
         * bit of the one before). */
        if (rc == MPOS_OK && (strcmp(ksn + 15, "00000") != 0 || (hex_value(ksn[14]) & 1) != 0)) {
            rc = MPOS_ERR_FORMAT;
        }
        break;
    case MPOS_SCHEME_MKWK:
        rc = keys->initial_ksn == NULL && keys->tmk_kcv != NULL && strlen(keys->tmk_kcv) >= 4 &&
                     strlen(keys->tmk_kcv) <= MPOS_STORE_KCV_HEX_LEN &&
                     strlen(keys->tmk_kcv) % 2 == 0
                 ? hex_upper(keys->tmk_kcv, strlen(keys->tmk_kcv), kcv)
                 : MPOS_ERR_FORMAT;
        break;
    default:
        rc = MPOS_ERR_ARG;
    }
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    /* Only a provisioned or suspended terminal (or a new one) takes keys. */
    rc = store_terminal_load(st, sn, &t);
    if (rc == MPOS_OK) {
        existed = 1;
        if (t.state != MPOS_TERMINAL_PROVISIONED && t.state != MPOS_TERMINAL_SUSPENDED) {
            rc = MPOS_STORE_STATE;
            goto exit;
        }
    } else if (rc != MPOS_STORE_NOT_FOUND) {
        goto exit;
    }
    /* The key: a BDK for DUKPT, a key-encryption key (the TMK) for master/working keys. */
    rc = store_key_load(st, keys->key_label, &key);
    if (rc == MPOS_OK && strcmp(key.usage, keys->scheme == MPOS_SCHEME_MKWK ? "K0" : "B0") != 0) {
        rc = MPOS_ERR_USAGE;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (keys->scheme != MPOS_SCHEME_MKWK) {
        /* The initial KSN must come from this BDK's allocator, for this serial or nobody. */
        rc = store_prepare(st, sql_allocation_get, &s, "tt", ksn, scheme_name);
        if (rc == MPOS_OK) {
            rc = store_step(st, s);
            if (rc == STORE_ROW) {
                rc = store_column_copy(st, s, 0, owner, sizeof(owner));
                if (rc == MPOS_OK) {
                    rc = store_column_copy(st, s, 1, bdk, sizeof(bdk));
                }
            } else if (rc == STORE_DONE) {
                rc = MPOS_STORE_NOT_FOUND;
            }
        }
        store_finalize(st, s);
        if (rc == MPOS_OK &&
            (strcmp(bdk, keys->key_label) != 0 || (owner[0] != '\0' && strcmp(owner, sn) != 0))) {
            rc = MPOS_STORE_STATE;
        }
        if (rc == MPOS_OK && owner[0] == '\0') {
            rc = store_exec(st, sql_allocation_claim, &changes, "tt", ksn, sn);
            rc = rc == STORE_DONE ? (changes == 1 ? MPOS_OK : MPOS_STORE_STATE) : rc;
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    const char *ksn_arg = ksn[0] != '\0' ? ksn : NULL;
    const char *kcv_arg = kcv[0] != '\0' ? kcv : NULL;
    if (existed) {
        rc = store_exec(st, sql_terminal_set_keys, &changes, "ttttttit", sn, scheme_name, ksn_arg,
                        kcv_arg, keys->key_label, cert, now, mpos_terminal_state_name(t.state));
    } else {
        rc = store_exec(st, sql_terminal_insert_keys, &changes, "tttttti", sn, scheme_name, ksn_arg,
                        kcv_arg, keys->key_label, cert, now);
    }
    if (rc == STORE_DONE && changes != 1) {
        rc = existed ? MPOS_STORE_STATE : MPOS_STORE_EXISTS;
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    snprintf(object, sizeof(object), "terminal:%s", sn);
    snprintf(detail, sizeof(detail), "scheme=%s %s=%s key=%s cert=%.16s", scheme_name,
             ksn_arg != NULL ? "ksn" : "kcv", ksn_arg != NULL ? ksn : kcv, keys->key_label, cert);
    rc = store_audit(st, now, "terminal.keys", object, detail);
exit:
    MPOS_WIPE_CTX(&key);
    return store_tx_end(st, rc == MPOS_OK, rc);
}

int mpos_store_ksn_accept(mpos_store *st, const char *serial, const char *initial_ksn,
                          int64_t counter, int64_t now)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1];
    struct mpos_store_terminal t;
    int64_t changes = 0;
    size_t ksn_len = initial_ksn != NULL ? strlen(initial_ksn) : 0;
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (store_serial_copy(serial, sn) != MPOS_OK || (ksn_len != 16 && ksn_len != 20) ||
        hex_upper(initial_ksn, ksn_len, ksn) != MPOS_OK || counter < 0 ||
        counter > AES_MAX_DEVICE) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    /* One conditional write: two nodes racing with the same counter, one wins. */
    rc = store_exec(st, sql_terminal_ksn_accept, &changes, "ttii", sn, ksn, counter, now);
    if (rc != STORE_DONE) {
        return rc;
    }
    if (changes == 1) {
        return MPOS_OK;
    }
    rc = store_terminal_load(st, sn, &t);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (t.state != MPOS_TERMINAL_ACTIVE || strcmp(t.initial_ksn, ksn) != 0) {
        return MPOS_STORE_STATE;
    }
    return MPOS_STORE_REPLAY;
}
