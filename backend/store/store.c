/* mpos_store: opening, transactions, statement helpers, sequences, the audit trail, and the
 * validation of identifiers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

const char *mpos_store_strerror(int rc)
{
    switch (rc) {
    case MPOS_STORE_ERR_DB:
        return "database error";
    case MPOS_STORE_ERR_BUSY:
        return "database is locked (busy timeout)";
    case MPOS_STORE_ERR_CONSTRAINT:
        return "database constraint refused the change";
    case MPOS_STORE_ERR_SCHEMA_OLD:
        return "database schema is older than this program (migrate it)";
    case MPOS_STORE_ERR_SCHEMA_NEW:
        return "database schema is newer than this program";
    case MPOS_STORE_ERR_NO_DB:
        return "no database at that location";
    case MPOS_STORE_ERR_TX:
        return "transaction misuse";
    case MPOS_STORE_NOT_FOUND:
        return "not found";
    case MPOS_STORE_EXISTS:
        return "already exists";
    case MPOS_STORE_STATE:
        return "not allowed in the current state";
    case MPOS_STORE_EXPIRED:
        return "activation code expired";
    case MPOS_STORE_USED:
        return "activation code already used or revoked";
    case MPOS_STORE_DENIED:
        return "denied";
    case MPOS_STORE_LOCKED:
        return "locked after too many failed attempts";
    case MPOS_STORE_WEAK_PASSWORD:
        return "password refused by the policy";
    case MPOS_STORE_EXHAUSTED:
        return "no KSN left in this allocator";
    case MPOS_STORE_REPLAY:
        return "KSN counter not above the last accepted one";
    case MPOS_STORE_DISABLED:
        return "operator disabled";
    default:
        return mpos_strerror(rc);
    }
}

int mpos_store_open(const char *location, unsigned flags, int busy_timeout_ms, mpos_store **out)
{
    mpos_store *st = NULL;
    int rc = MPOS_OK;
    int64_t version = 0;
    if (out == NULL || location == NULL || busy_timeout_ms < 0) {
        return MPOS_ERR_ARG;
    }
    *out = NULL;
    if (strncmp(location, "postgresql://", 13) == 0 || strncmp(location, "postgres://", 11) == 0) {
        return MPOS_ERR_UNSUPPORTED; /* the PostgreSQL engine is a later step (docs/store.md) */
    }
    if (strncmp(location, "sqlite:", 7) == 0) {
        location += 7;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    snprintf(st->actor, sizeof(st->actor), "unknown");
    rc = store_sqlite_open(location, flags, busy_timeout_ms == 0 ? 5000 : busy_timeout_ms, &st->eng,
                           &st->conn);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_store_schema_version(st, &version);
    if (rc == MPOS_OK && version > MPOS_STORE_SCHEMA_VERSION) {
        rc = MPOS_STORE_ERR_SCHEMA_NEW;
    }
exit:
    if (rc != MPOS_OK) {
        mpos_store_close(st);
        return rc;
    }
    *out = st;
    return MPOS_OK;
}

void mpos_store_close(mpos_store *st)
{
    if (st == NULL) {
        return;
    }
    if (st->eng != NULL) {
        st->eng->close(st->conn);
    }
    MPOS_WIPE_CTX(st);
    free(st);
}

const char *mpos_store_errmsg(const mpos_store *st)
{
    if (st == NULL || st->eng == NULL) {
        return "no store";
    }
    return st->eng->errmsg(st->conn);
}

void mpos_store_set_actor(mpos_store *st, const char *actor)
{
    if (st == NULL) {
        return;
    }
    size_t j = 0;
    for (size_t i = 0; actor != NULL && actor[i] != '\0' && j < MPOS_STORE_ACTOR_LEN; i++) {
        unsigned char c = (unsigned char)actor[i];
        st->actor[j++] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    st->actor[j] = '\0';
    if (j == 0) {
        snprintf(st->actor, sizeof(st->actor), "unknown");
    }
}

/* ---- statements ---------------------------------------------------------------------- */

static int bind_args(mpos_store *st, struct store_stmt *s, const char *fmt, va_list ap)
{
    int rc = MPOS_OK;
    int n = (int)strlen(fmt);
    /* The statement must take exactly the parameters bound: a mismatch is a bug here. */
    if (st->eng->param_count(s) != n) {
        return MPOS_ERR_ARG;
    }
    for (int i = 0; i < n && rc == MPOS_OK; i++) {
        if (fmt[i] == 'i') {
            rc = st->eng->bind_int64(s, i + 1, va_arg(ap, int64_t));
        } else if (fmt[i] == 't') {
            rc = st->eng->bind_text(s, i + 1, va_arg(ap, const char *));
        } else {
            rc = MPOS_ERR_ARG;
        }
    }
    return rc;
}

static int prepare_v(mpos_store *st, const char *sql, struct store_stmt **out, const char *fmt,
                     va_list ap)
{
    struct store_stmt *s = NULL;
    int rc = st->eng->prepare(st->conn, sql, &s);
    if (rc == MPOS_OK) {
        rc = bind_args(st, s, fmt, ap);
    }
    if (rc != MPOS_OK) {
        st->eng->finalize(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

int store_prepare(mpos_store *st, const char *sql, struct store_stmt **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = prepare_v(st, sql, out, fmt, ap);
    va_end(ap);
    return rc;
}

int store_step(mpos_store *st, struct store_stmt *s)
{
    return st->eng->step(s);
}

void store_finalize(mpos_store *st, struct store_stmt *s)
{
    if (s != NULL) {
        st->eng->finalize(s);
    }
}

int store_exec(mpos_store *st, const char *sql, int64_t *changes, const char *fmt, ...)
{
    struct store_stmt *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = prepare_v(st, sql, &s, fmt, ap);
    va_end(ap);
    if (rc != MPOS_OK) {
        return rc;
    }
    do {
        rc = st->eng->step(s);
    } while (rc == STORE_ROW);
    if (rc == STORE_DONE && changes != NULL) {
        *changes = st->eng->changes(st->conn);
    }
    st->eng->finalize(s);
    return rc;
}

int store_query_int64(mpos_store *st, const char *sql, int64_t *out, int *is_null, const char *fmt,
                      ...)
{
    struct store_stmt *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = prepare_v(st, sql, &s, fmt, ap);
    va_end(ap);
    *out = 0;
    if (is_null != NULL) {
        *is_null = 1;
    }
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = st->eng->step(s);
    if (rc == STORE_ROW) {
        if (is_null != NULL) {
            *is_null = st->eng->column_is_null(s, 0);
        }
        *out = st->eng->column_int64(s, 0);
        /* Finish the statement: an UPDATE ... RETURNING is complete only when stepped out. */
        int rc2 = st->eng->step(s);
        if (rc2 < 0) {
            rc = rc2;
        }
    }
    st->eng->finalize(s);
    return rc;
}

int store_column_copy(mpos_store *st, struct store_stmt *s, int col, char *out, size_t cap)
{
    const char *v = st->eng->column_text(s, col);
    if (v == NULL) {
        v = "";
    }
    size_t n = strlen(v);
    if (n >= cap) {
        out[0] = '\0';
        return MPOS_ERR_LENGTH;
    }
    memcpy(out, v, n + 1);
    return MPOS_OK;
}

int64_t store_column_int64(mpos_store *st, struct store_stmt *s, int col)
{
    return st->eng->column_int64(s, col);
}

int store_column_is_null(mpos_store *st, struct store_stmt *s, int col)
{
    return st->eng->column_is_null(s, col);
}

/* ---- transactions -------------------------------------------------------------------- */

int mpos_store_begin(mpos_store *st)
{
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (st->tx_depth != 0) {
        return MPOS_STORE_ERR_TX;
    }
    int rc = st->eng->begin(st->conn);
    if (rc == MPOS_OK) {
        st->tx_depth = 1;
        st->tx_caller = 1;
        st->tx_doomed = 0;
    }
    return rc;
}

int mpos_store_commit(mpos_store *st)
{
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!st->tx_caller || st->tx_depth != 1) {
        return MPOS_STORE_ERR_TX;
    }
    int rc = MPOS_OK;
    if (st->tx_doomed) {
        (void)st->eng->rollback(st->conn);
        rc = MPOS_STORE_ERR_TX;
    } else {
        rc = st->eng->commit(st->conn);
        if (rc != MPOS_OK) {
            (void)st->eng->rollback(st->conn);
        }
    }
    st->tx_depth = 0;
    st->tx_caller = 0;
    st->tx_doomed = 0;
    return rc;
}

void mpos_store_rollback(mpos_store *st)
{
    if (st == NULL || st->tx_depth == 0) {
        return;
    }
    (void)st->eng->rollback(st->conn);
    st->tx_depth = 0;
    st->tx_caller = 0;
    st->tx_doomed = 0;
}

int store_tx_begin(mpos_store *st)
{
    if (st->tx_depth > 0) {
        if (st->tx_doomed) {
            return MPOS_STORE_ERR_TX;
        }
        st->tx_depth++;
        return MPOS_OK;
    }
    int rc = st->eng->begin(st->conn);
    if (rc == MPOS_OK) {
        st->tx_depth = 1;
        st->tx_caller = 0;
    }
    return rc;
}

int store_tx_end(mpos_store *st, int commit, int rc)
{
    if (st->tx_depth > 1 || (st->tx_caller && st->tx_depth == 1)) {
        /* Joined someone else's transaction: it decides; a failure dooms it. */
        if (st->tx_depth > 1) {
            st->tx_depth--;
        }
        if (!commit) {
            st->tx_doomed = 1;
        }
        return rc;
    }
    if (st->tx_depth != 1) {
        return rc;
    }
    if (commit) {
        int crc = st->eng->commit(st->conn);
        if (crc != MPOS_OK) {
            (void)st->eng->rollback(st->conn);
            rc = crc;
        }
    } else {
        (void)st->eng->rollback(st->conn);
    }
    st->tx_depth = 0;
    return rc;
}

int store_require_schema(mpos_store *st)
{
    if (st->schema_version < MPOS_STORE_SCHEMA_VERSION) {
        return MPOS_STORE_ERR_SCHEMA_OLD;
    }
    if (st->schema_version > MPOS_STORE_SCHEMA_VERSION) {
        return MPOS_STORE_ERR_SCHEMA_NEW;
    }
    return MPOS_OK;
}

int store_write_begin(mpos_store *st)
{
    int rc = store_require_schema(st);
    return rc == MPOS_OK ? store_tx_begin(st) : rc;
}

/* ---- sequences, digests, audit ------------------------------------------------------- */

int store_next_id(mpos_store *st, const char *name, int64_t *out)
{
    int is_null = 1;
    int rc = store_query_int64(st, sql_next_id, out, &is_null, "t", name);
    if (rc == STORE_ROW && !is_null) {
        return MPOS_OK;
    }
    return rc < 0 ? rc : MPOS_STORE_ERR_DB; /* the sequence row is created by the schema */
}

int store_sha256_hex(const void *data, size_t len, char hex[65])
{
    uint8_t digest[32];
    unsigned int dlen = 0;
    int rc = MPOS_OK;
    if (EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != sizeof(digest)) {
        rc = MPOS_ERR_CRYPTO;
        hex[0] = '\0';
        goto exit;
    }
    mpos_hex_encode(digest, sizeof(digest), hex);
exit:
    MPOS_WIPE_BUFFER(digest);
    return rc;
}

/* Appends one length-prefixed field ("<len>:<bytes>;") to the hash input. */
static int put_field(char *buf, size_t cap, size_t *pos, const char *field)
{
    int n = snprintf(buf + *pos, cap - *pos, "%zu:%s;", strlen(field), field);
    if (n < 0 || (size_t)n >= cap - *pos) {
        return MPOS_ERR_LENGTH;
    }
    *pos += (size_t)n;
    return MPOS_OK;
}

static int audit_hash(int64_t seq, int64_t at, const char *actor, const char *action,
                      const char *object, const char *detail, const char *prev_hash, char out[65])
{
    char buf[1024];
    char num[2][24];
    size_t pos = 0;
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)seq);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)at);
    const char *fields[] = {
        "openmpos audit v1", prev_hash, num[0], num[1], actor, action, object, detail};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        int rc = put_field(buf, sizeof(buf), &pos, fields[i]);
        if (rc != MPOS_OK) {
            return rc;
        }
    }
    return store_sha256_hex(buf, pos, out);
}

static const char zero_hash[] = "0000000000000000000000000000000000000000000000000000000000000000";

int store_audit(mpos_store *st, int64_t now, const char *action, const char *object,
                const char *detail)
{
    int64_t seq = 0;
    char prev[65] = "";
    char row[65] = "";
    struct store_stmt *s = NULL;
    int rc = store_next_id(st, "audit", &seq);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (seq == 1) {
        memcpy(prev, zero_hash, sizeof(prev));
    } else {
        /* The sequence row is locked by this transaction until commit: no one else can append
         * between our read of the previous record and our insert. */
        rc = store_prepare(st, sql_audit_prev, &s, "i", seq - 1);
        if (rc == MPOS_OK) {
            rc = store_step(st, s);
            if (rc == STORE_ROW) {
                rc = store_column_copy(st, s, 0, prev, sizeof(prev));
            } else if (rc == STORE_DONE) {
                rc = MPOS_STORE_ERR_DB; /* a gap: the chain is broken */
            }
        }
        store_finalize(st, s);
        if (rc != MPOS_OK) {
            return rc;
        }
    }
    rc = audit_hash(seq, now, st->actor, action, object, detail, prev, row);
    if (rc != MPOS_OK) {
        return rc;
    }
    return store_exec(st, sql_audit_insert, NULL,
                      "iittttt"
                      "t",
                      seq, now, st->actor, action, object, detail, prev, row);
}

static int audit_read(mpos_store *st, struct store_stmt *s, struct mpos_store_audit *a,
                      char prev[65])
{
    memset(a, 0, sizeof(*a));
    a->seq = store_column_int64(st, s, 0);
    a->created_at = store_column_int64(st, s, 1);
    int rc = store_column_copy(st, s, 2, a->actor, sizeof(a->actor));
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 3, a->action, sizeof(a->action));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 4, a->object, sizeof(a->object));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 5, a->detail, sizeof(a->detail));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 6, prev, 65);
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 7, a->row_hash, sizeof(a->row_hash));
    }
    return rc;
}

int mpos_store_audit_list(mpos_store *st, int64_t limit,
                          int (*cb)(void *cb_ctx, const struct mpos_store_audit *a), void *cb_ctx)
{
    struct store_stmt *s = NULL;
    struct mpos_store_audit a;
    char prev[65];
    int64_t max = 0, after = 0;
    int is_null = 1;
    if (st == NULL || cb == NULL || limit < 0) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (limit > 0) {
        rc = store_query_int64(st, sql_audit_max, &max, &is_null, "");
        if (rc < 0) {
            return rc;
        }
        after = (!is_null && max > limit) ? max - limit : 0;
    }
    rc = store_prepare(st, sql_audit_list_all, &s, "i", after);
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = audit_read(st, s, &a, prev);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &a);
        }
    }
    store_finalize(st, s);
    return rc == STORE_DONE ? MPOS_OK : rc;
}

int mpos_store_audit_verify(mpos_store *st, int64_t *count, int64_t *bad_seq)
{
    struct store_stmt *s = NULL;
    struct mpos_store_audit a;
    char prev[65], expect_prev[65], hash[65];
    int64_t n = 0;
    if (st == NULL || count == NULL || bad_seq == NULL) {
        return MPOS_ERR_ARG;
    }
    *count = 0;
    *bad_seq = 0;
    int rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    memcpy(expect_prev, zero_hash, sizeof(expect_prev));
    rc = store_prepare(st, sql_audit_list_all, &s, "i", (int64_t)0);
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = audit_read(st, s, &a, prev);
        if (rc != MPOS_OK) {
            break;
        }
        n++;
        rc = audit_hash(a.seq, a.created_at, a.actor, a.action, a.object, a.detail, prev, hash);
        if (rc != MPOS_OK) {
            break;
        }
        if (a.seq != n || strcmp(prev, expect_prev) != 0 || strcmp(hash, a.row_hash) != 0) {
            *bad_seq = a.seq;
            rc = MPOS_ERR_VERIFY;
            break;
        }
        memcpy(expect_prev, a.row_hash, sizeof(expect_prev));
    }
    store_finalize(st, s);
    *count = n;
    return rc == STORE_DONE ? MPOS_OK : rc;
}

/* ---- identifiers --------------------------------------------------------------------- */

static int all_of(const char *s, size_t min, size_t max, const char *extra, int lower, int upper)
{
    size_t n = 0;
    if (s == NULL) {
        return 0;
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= '0' && c <= '9') || (lower && c >= 'a' && c <= 'z') ||
                 (upper && c >= 'A' && c <= 'Z') || (c != '\0' && strchr(extra, c) != NULL);
        if (!ok || n >= max) {
            return 0;
        }
    }
    return n >= min;
}

/* Merchant IDs are stored in uppercase and usernames in lowercase, whatever case they are
 * typed in; serials are exact (the device's own, as in its certificate and the provisioning
 * bundle); labels are lowercase only. */
int mpos_store_merchant_id_valid(const char *id)
{
    return all_of(id, 1, MPOS_STORE_MERCHANT_ID_LEN, "", 1, 1);
}

int mpos_store_serial_valid(const char *serial)
{
    return all_of(serial, 1, MPOS_STORE_SERIAL_LEN, "-", 1, 1);
}

int store_serial_copy(const char *serial, char out[MPOS_STORE_SERIAL_LEN + 1])
{
    if (!mpos_store_serial_valid(serial)) {
        out[0] = '\0';
        return MPOS_ERR_FORMAT;
    }
    memcpy(out, serial, strlen(serial) + 1);
    return MPOS_OK;
}

int mpos_store_username_valid(const char *username)
{
    return all_of(username, 3, MPOS_STORE_USERNAME_LEN, "._-", 1, 1);
}

int mpos_store_label_valid(const char *label)
{
    return all_of(label, 1, MPOS_STORE_LABEL_LEN, "._:-", 1, 0);
}

int store_utf8_check(const char *s, size_t *chars)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        unsigned c = *p;
        size_t len = c < 0x80             ? 1
                     : (c & 0xE0) == 0xC0 ? 2
                     : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4
                                          : 0;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        if (len == 0) {
            return 0;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        /* Shortest form only, no surrogates, nothing past U+10FFFF, no C0/C1 controls. */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF || cp < 0x20 ||
            (cp >= 0x7F && cp <= 0x9F)) {
            return 0;
        }
        p += len;
        n++;
    }
    if (chars != NULL) {
        *chars = n;
    }
    return 1;
}

int mpos_store_merchant_name_valid(const char *name)
{
    if (name == NULL || strlen(name) > MPOS_STORE_MERCHANT_NAME_LEN ||
        !store_utf8_check(name, NULL)) {
        return 0;
    }
    return strspn(name, " ") != strlen(name); /* not empty, not only blanks */
}

int store_canon(const char *in, char *out, size_t cap, int upper)
{
    size_t n = 0;
    if (in == NULL || cap == 0) {
        return MPOS_ERR_ARG;
    }
    for (; in[n] != '\0'; n++) {
        if (n + 1 >= cap) {
            out[0] = '\0';
            return MPOS_ERR_FORMAT;
        }
        char c = in[n];
        if (upper && c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        } else if (!upper && c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        out[n] = c;
    }
    out[n] = '\0';
    return MPOS_OK;
}
