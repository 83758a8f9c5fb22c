/* mpos-backend host sessions (docs/system-design.md 1.3 "Sessions").
 *
 * Sessions live in the store (migration 2's host_sessions, backend/store/store_session.c):
 * a back-end restart does not log the cashiers out and several back-end nodes share them.
 * A row holds SHA-256(token) only, with operator, merchant, role, device ID and expiry: a
 * copy of the database, a memory dump or a log never yields a usable token. Each worker uses
 * its own store handle (the caller passes it). Expired rows are purged at each login.
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

#include "mpos/util.h"

int bs_session_create(mpos_store *st, const uint8_t token[32], const struct bs_session *s)
{
    struct mpos_store_session r;
    int64_t now = (int64_t)time(NULL);
    memset(&r, 0, sizeof(r));
    snprintf(r.merchant_id, sizeof(r.merchant_id), "%s", s->merchant);
    snprintf(r.username, sizeof(r.username), "%s", s->username);
    r.role = (enum mpos_operator_role)s->role;
    memcpy(r.device_id, s->device_id, sizeof(r.device_id));
    r.expires_at = s->expires;
    /* Housekeeping only: a failure here leaves rows that lookups refuse anyway. */
    if (mpos_store_session_purge(st, now, NULL) != MPOS_OK) {
        bs_log("warn", "session_store", 0, " op=purge");
    }
    int rc = mpos_store_session_create(st, token, &r, now);
    if (rc != MPOS_OK) {
        bs_log("error", "session_store", 0, " op=create rc=%d", rc);
        return -1;
    }
    return 0;
}

int bs_session_lookup(mpos_store *st, const uint8_t token[32], int64_t now, struct bs_session *out)
{
    struct mpos_store_session r;
    int rc = mpos_store_session_get(st, token, now, &r);
    if (rc == MPOS_STORE_NOT_FOUND) {
        return BK_SESSION_NOT_FOUND;
    }
    if (rc == MPOS_STORE_EXPIRED) {
        return BK_SESSION_EXPIRED;
    }
    if (rc != MPOS_OK) {
        /* The store is unreachable: fail closed (the host logs in again). */
        bs_log("error", "session_store", 0, " op=lookup rc=%d", rc);
        return BK_SESSION_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->merchant, sizeof(out->merchant), "%s", r.merchant_id);
    snprintf(out->username, sizeof(out->username), "%s", r.username);
    out->role = (int)r.role;
    memcpy(out->device_id, r.device_id, sizeof(out->device_id));
    out->expires = r.expires_at;
    return 0;
}

void bs_session_revoke(mpos_store *st, const uint8_t token[32])
{
    int rc = mpos_store_session_revoke(st, token, (int64_t)time(NULL));
    if (rc != MPOS_OK) {
        bs_log("error", "session_store", 0, " op=revoke rc=%d", rc);
    }
}
