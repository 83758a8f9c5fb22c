/* mpos-backend host sessions (docs/system-design.md 1.3 "Sessions").
 *
 * The table holds SHA-256(token) only, with operator, merchant, role, device ID, expiry and
 * source address: a memory dump or a log never yields a usable token. It lives in this
 * process, shared by the workers behind one mutex: the store (backend/store) has no session
 * table yet (schema version 1; docs/backend.md "Sessions" says what moves there with the
 * store's migration 2). Until then a restart logs every cashier out, which fails safe.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "mpos/ecc.h"
#include "mpos/util.h"

#define MAX_SESSIONS 100000

struct rec {
    uint8_t hash[32];
    struct bs_session s;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rec *table;
static size_t used, cap;

int bs_sessions_init(void)
{
    return 0;
}

void bs_sessions_free(void)
{
    pthread_mutex_lock(&lock);
    if (table != NULL) {
        mpos_cleanse(table, cap * sizeof(*table));
    }
    free(table);
    table = NULL;
    used = cap = 0;
    pthread_mutex_unlock(&lock);
}

static int token_hash(const uint8_t token[32], uint8_t hash[32])
{
    return mpos_sha256(token, 32, hash);
}

/* With lock held: drops expired sessions. */
static void purge(int64_t now)
{
    for (size_t i = 0; i < used;) {
        if (table[i].s.expires <= now) {
            table[i] = table[--used];
            mpos_cleanse(&table[used], sizeof(table[used]));
        } else {
            i++;
        }
    }
}

int bs_session_create(const uint8_t token[32], const struct bs_session *s)
{
    uint8_t h[32];
    int rc = token_hash(token, h);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&lock);
    purge((int64_t)time(NULL));
    if (used == cap) {
        size_t ncap = cap != 0 ? 2 * cap : 64;
        struct rec *t = ncap <= MAX_SESSIONS ? realloc(table, ncap * sizeof(*t)) : NULL;
        if (t == NULL) {
            pthread_mutex_unlock(&lock);
            return MPOS_ERR_LENGTH;
        }
        table = t;
        cap = ncap;
    }
    memcpy(table[used].hash, h, 32);
    table[used].s = *s;
    used++;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* With lock held: index of the session or -1. Constant-time per entry (the hash is not a
 * secret by itself, but comparing it so costs nothing). */
static long find(const uint8_t h[32])
{
    for (size_t i = 0; i < used; i++) {
        if (mpos_ct_equal(table[i].hash, h, 32)) {
            return (long)i;
        }
    }
    return -1;
}

int bs_session_lookup(const uint8_t token[32], int64_t now, struct bs_session *out)
{
    uint8_t h[32];
    int rc = token_hash(token, h);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&lock);
    long i = find(h);
    if (i < 0) {
        rc = BK_SESSION_NOT_FOUND;
    } else if (table[i].s.expires <= now) {
        table[i] = table[--used];
        rc = BK_SESSION_EXPIRED;
    } else {
        *out = table[i].s;
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void bs_session_revoke(const uint8_t token[32])
{
    uint8_t h[32];
    if (token_hash(token, h) != 0) {
        return;
    }
    pthread_mutex_lock(&lock);
    long i = find(h);
    if (i >= 0) {
        table[i] = table[--used];
        mpos_cleanse(&table[used], sizeof(table[used]));
    }
    pthread_mutex_unlock(&lock);
}
