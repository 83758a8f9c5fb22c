/* mpos_store: operators of the cashier app (A-OPER-1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/password.h"
#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

static const char *const role_names[] = {NULL, "cashier", "supervisor"};

const char *mpos_operator_role_name(enum mpos_operator_role r)
{
    return (r == MPOS_ROLE_CASHIER || r == MPOS_ROLE_SUPERVISOR) ? role_names[r] : "?";
}

int mpos_operator_role_parse(const char *name, enum mpos_operator_role *out)
{
    for (int i = MPOS_ROLE_CASHIER; i <= MPOS_ROLE_SUPERVISOR; i++) {
        if (name != NULL && strcmp(name, role_names[i]) == 0) {
            *out = (enum mpos_operator_role)i;
            return MPOS_OK;
        }
    }
    return MPOS_ERR_FORMAT;
}

static int ids_canon(const char *merchant_id, const char *username,
                     char mid[MPOS_STORE_MERCHANT_ID_LEN + 1],
                     char user[MPOS_STORE_USERNAME_LEN + 1])
{
    if (!mpos_store_merchant_id_valid(merchant_id) || !mpos_store_username_valid(username) ||
        store_canon(merchant_id, mid, MPOS_STORE_MERCHANT_ID_LEN + 1, 1) != MPOS_OK ||
        store_canon(username, user, MPOS_STORE_USERNAME_LEN + 1, 0) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

int mpos_store_operator_add(mpos_store *st, const char *merchant_id, const char *username,
                            enum mpos_operator_role role, const char *password, int64_t now,
                            int *policy_reason)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1], user[MPOS_STORE_USERNAME_LEN + 1];
    char hash[MPOS_PASSWORD_HASH_LEN + 1] = "";
    char object[64];
    int64_t changes = 0, one = 0;
    int rc = MPOS_OK, reason = MPOS_PASSWORD_OK;
    if (policy_reason != NULL) {
        *policy_reason = MPOS_PASSWORD_OK;
    }
    if (st == NULL || password == NULL ||
        (role != MPOS_ROLE_CASHIER && role != MPOS_ROLE_SUPERVISOR)) {
        return MPOS_ERR_ARG;
    }
    if (ids_canon(merchant_id, username, mid, user) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    reason = mpos_password_policy_check(user, password);
    if (reason != MPOS_PASSWORD_OK) {
        if (policy_reason != NULL) {
            *policy_reason = reason;
        }
        return MPOS_STORE_WEAK_PASSWORD;
    }
    rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    /* The slow hash first, outside the transaction: the write lock is held for milliseconds. */
    rc = mpos_password_hash(password, hash, sizeof(hash));
    if (rc != MPOS_OK) {
        goto exit_notx;
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        goto exit_notx;
    }
    rc = store_query_int64(st, sql_merchant_exists, &one, NULL, "t", mid);
    if (rc != STORE_ROW) {
        rc = rc == STORE_DONE ? MPOS_STORE_NOT_FOUND : rc;
        goto exit;
    }
    rc = store_exec(st, sql_operator_insert, &changes, "tttti", mid, user,
                    mpos_operator_role_name(role), hash, now);
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_EXISTS;
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    snprintf(object, sizeof(object), "operator:%s/%s", mid, user);
    rc = store_audit(st, now, "operator.add", object, mpos_operator_role_name(role));
exit:
    rc = store_tx_end(st, rc == MPOS_OK, rc);
exit_notx:
    MPOS_WIPE_BUFFER(hash);
    return rc;
}

/* When the operator does not exist (or the name is malformed) the password is checked
 * against this hash of a random 32-byte secret nobody knows, with the current parameters:
 * the same Argon2id work, so the answer time does not tell which usernames exist. */
static const char dummy_hash[] = "$argon2id$v=19$m=65536,t=3,p=1$BSKjgvq3aR/qaCPdzj0KNQ$7/"
                                 "0bZmfDPuxhbQcHBKhzWp5yUgF7d7P9hS2iFYk+AsA";

static int dummy_verify(const char *password)
{
    int rc = mpos_password_verify(dummy_hash, password); /* always a mismatch: only the work */
    (void)rc;
    return MPOS_STORE_DENIED;
}

int mpos_store_operator_verify(mpos_store *st, const char *merchant_id, const char *username,
                               const char *password, int64_t now, enum mpos_operator_role *role_out)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1], user[MPOS_STORE_USERNAME_LEN + 1];
    char hash[MPOS_PASSWORD_HASH_LEN + 1] = "";
    char role[16] = "";
    struct store_stmt *s = NULL;
    int64_t locked_until = 0, disabled_at = 0, changes = 0;
    int locked_null = 1, disabled_null = 1, found = 0;
    enum mpos_operator_role r = 0;
    if (role_out != NULL) {
        *role_out = 0;
    }
    if (st == NULL || password == NULL) {
        return MPOS_ERR_ARG;
    }
    if (ids_canon(merchant_id, username, mid, user) != MPOS_OK) {
        return dummy_verify(password);
    }
    int rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_prepare(st, sql_operator_auth, &s, "tt", mid, user);
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        if (rc == STORE_ROW) {
            found = 1;
            rc = store_column_copy(st, s, 0, hash, sizeof(hash));
            if (rc == MPOS_OK) {
                rc = store_column_copy(st, s, 1, role, sizeof(role));
            }
            locked_null = store_column_is_null(st, s, 2);
            locked_until = store_column_int64(st, s, 2);
            disabled_null = store_column_is_null(st, s, 3);
            disabled_at = store_column_int64(st, s, 3);
        } else if (rc == STORE_DONE) {
            rc = MPOS_OK;
        }
    }
    store_finalize(st, s);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (!found) {
        rc = dummy_verify(password);
        goto exit;
    }
    (void)disabled_at;
    if (!disabled_null) {
        rc = MPOS_STORE_DISABLED;
        goto exit;
    }
    if (!locked_null && locked_until > now) {
        rc = MPOS_STORE_LOCKED;
        goto exit;
    }
    rc = mpos_operator_role_parse(role, &r);
    if (rc != MPOS_OK) {
        rc = MPOS_STORE_ERR_DB;
        goto exit;
    }
    rc = mpos_password_verify(hash, password);
    if (rc == MPOS_ERR_VERIFY) {
        /* One conditional write counts the failure and locks at the limit. */
        rc = store_exec(st, sql_operator_fail, NULL, "ttiii", mid, user,
                        (int64_t)MPOS_STORE_MAX_FAILED_LOGINS,
                        now + (int64_t)MPOS_STORE_LOCKOUT_SECONDS, now);
        rc = rc == STORE_DONE ? MPOS_STORE_DENIED : rc;
        goto exit;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Success counts only if no concurrent failure locked the operator meanwhile. */
    rc = store_exec(st, sql_operator_success, &changes, "tti", mid, user, now);
    if (rc == STORE_DONE) {
        rc = changes == 1 ? MPOS_OK : MPOS_STORE_LOCKED;
    }
    if (rc == MPOS_OK && role_out != NULL) {
        *role_out = r;
    }
exit:
    MPOS_WIPE_BUFFER(hash);
    return rc;
}

static int operator_read(mpos_store *st, struct store_stmt *s, struct mpos_store_operator *o)
{
    char role[16];
    memset(o, 0, sizeof(*o));
    int rc = store_column_copy(st, s, 0, o->merchant_id, sizeof(o->merchant_id));
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 1, o->username, sizeof(o->username));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 2, role, sizeof(role));
    }
    if (rc == MPOS_OK && mpos_operator_role_parse(role, &o->role) != MPOS_OK) {
        rc = MPOS_STORE_ERR_DB;
    }
    o->failed_attempts = store_column_int64(st, s, 3);
    o->locked_until = store_column_int64(st, s, 4);
    o->disabled_at = store_column_int64(st, s, 5);
    o->created_at = store_column_int64(st, s, 6);
    o->password_changed_at = store_column_int64(st, s, 7);
    o->last_login_at = store_column_int64(st, s, 8);
    return rc;
}

int mpos_store_operator_list(mpos_store *st, const char *merchant_id,
                             int (*cb)(void *cb_ctx, const struct mpos_store_operator *o),
                             void *cb_ctx)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1];
    struct store_stmt *s = NULL;
    struct mpos_store_operator o;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK && merchant_id != NULL) {
        rc = mpos_store_merchant_id_valid(merchant_id)
                 ? store_canon(merchant_id, mid, sizeof(mid), 1)
                 : MPOS_ERR_FORMAT;
        if (rc == MPOS_OK) {
            rc = store_prepare(st, sql_operator_list_merchant, &s, "t", mid);
        }
    } else if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_operator_list_all, &s, "");
    }
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = operator_read(st, s, &o);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &o);
        }
    }
    store_finalize(st, s);
    return rc == STORE_DONE ? MPOS_OK : rc;
}
