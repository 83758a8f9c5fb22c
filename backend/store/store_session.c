/* mpos_store: host sessions (migration 2's host_sessions) and the journal's void lookup.
 * Sessions live in the store so that a back-end restart does not log everyone out and several
 * back-end nodes share them; a row holds SHA-256(token), never the token (a copy of the
 * database opens no session). */
#include <string.h>

#include "mpos/store.h"
#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

static int hash_token(const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN], char hex[65])
{
    return store_sha256_hex(token, MPOS_STORE_SESSION_TOKEN_LEN, hex);
}

int mpos_store_session_create(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                              const struct mpos_store_session *s, int64_t now)
{
    char th[65], dev[65];
    if (st == NULL || token == NULL || s == NULL) {
        return MPOS_ERR_ARG;
    }
    const char *role = mpos_operator_role_name(s->role);
    if (role == NULL || s->merchant_id[0] == '\0' || s->username[0] == '\0' ||
        s->expires_at <= now) {
        return MPOS_ERR_FORMAT;
    }
    int rc = hash_token(token, th);
    mpos_hex_encode(s->device_id, sizeof(s->device_id), dev);
    if (rc == MPOS_OK) {
        rc = store_require_schema(st);
    }
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_session_insert, NULL, "tttttii", th, s->merchant_id, s->username,
                        role, dev, now, s->expires_at);
    }
    mpos_cleanse(th, sizeof(th));
    return rc;
}

int mpos_store_session_get(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                           int64_t now, struct mpos_store_session *out)
{
    char th[65], role[16], dev[65];
    struct store_stmt *q = NULL;
    size_t got = 0;
    if (st == NULL || token == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    int rc = hash_token(token, th);
    if (rc == MPOS_OK) {
        rc = store_require_schema(st);
    }
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_session_get, &q, "t", th);
    }
    if (rc == MPOS_OK) {
        rc = store_step(st, q);
        if (rc == STORE_DONE) {
            rc = MPOS_STORE_NOT_FOUND;
        } else if (rc == STORE_ROW) {
            enum mpos_operator_role r;
            rc = store_column_copy(st, q, 0, out->merchant_id, sizeof(out->merchant_id));
            if (rc == MPOS_OK) {
                rc = store_column_copy(st, q, 1, out->username, sizeof(out->username));
            }
            if (rc == MPOS_OK) {
                rc = store_column_copy(st, q, 2, role, sizeof(role));
            }
            if (rc == MPOS_OK) {
                rc = store_column_copy(st, q, 3, dev, sizeof(dev));
            }
            if (rc == MPOS_OK &&
                (mpos_operator_role_parse(role, &r) != MPOS_OK ||
                 mpos_hex_decode(dev, out->device_id, sizeof(out->device_id), &got) != MPOS_OK ||
                 got != sizeof(out->device_id))) {
                rc = MPOS_ERR_FORMAT;
            }
            if (rc == MPOS_OK) {
                out->role = r;
                out->expires_at = store_column_int64(st, q, 4);
                out->revoked = !store_column_is_null(st, q, 5);
                /* A revoked session is as good as none; an expired one says so (the host
                 * shows "session expired, log in again"). */
                rc = out->revoked             ? MPOS_STORE_NOT_FOUND
                     : out->expires_at <= now ? MPOS_STORE_EXPIRED
                                              : MPOS_OK;
            }
        }
        store_finalize(st, q);
    }
    mpos_cleanse(th, sizeof(th));
    return rc;
}

int mpos_store_session_revoke(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                              int64_t now)
{
    char th[65];
    if (st == NULL || token == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = hash_token(token, th);
    if (rc == MPOS_OK) {
        rc = store_require_schema(st);
    }
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_session_revoke, NULL, "ti", th, now);
    }
    mpos_cleanse(th, sizeof(th));
    return rc;
}

int mpos_store_session_purge(mpos_store *st, int64_t now, int64_t *removed)
{
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    return rc == MPOS_OK ? store_exec(st, sql_session_purge, removed, "i", now) : rc;
}

int mpos_store_journal_voided(mpos_store *st, const char *rrn, int *voided)
{
    int64_t one = 0;
    int is_null = 0;
    if (st == NULL || voided == NULL) {
        return MPOS_ERR_ARG;
    }
    *voided = 0;
    if (rrn == NULL || rrn[0] == '\0' || strlen(rrn) > MPOS_STORE_RRN_LEN) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_query_int64(st, sql_journal_voided, &one, &is_null, "t", rrn);
        if (rc == STORE_ROW || rc == STORE_DONE) {
            *voided = rc == STORE_ROW;
            rc = MPOS_OK;
        }
    }
    return rc;
}
