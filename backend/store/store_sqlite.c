/* mpos_store: the SQLite engine (the embedded default).
 *
 * Connection settings, each for a reason:
 *   journal_mode=WAL     readers never block the writer, and the writer never blocks readers;
 *   synchronous=FULL     a committed transaction survives a power cut (WAL fsync per commit):
 *                        a KSN allocation or an activation must never be lost once reported;
 *   foreign_keys=ON      SQLite leaves them off per connection unless asked;
 *   busy_timeout         a second process (another mposctl, the back end) waits for the lock
 *                        instead of failing at once;
 *   BEGIN IMMEDIATE      write transactions take the write lock up front, so two writers never
 *                        deadlock upgrading a read lock (SQLITE_BUSY without waiting);
 *   trusted_schema=OFF, no extension loading: the file is data, never code.
 * A new database file is created with mode 0600 (it holds password hashes).
 */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC, O_NOFOLLOW */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_db.h"

struct store_stmt {
    sqlite3_stmt *stmt;
    sqlite3 *db;
};

static int map_rc(sqlite3 *db, int rc)
{
    (void)db;
    switch (rc & 0xFF) {
    case SQLITE_OK:
        return MPOS_OK;
    case SQLITE_ROW:
        return STORE_ROW;
    case SQLITE_DONE:
        return STORE_DONE;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return MPOS_STORE_ERR_BUSY;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
            return MPOS_STORE_EXISTS;
        }
        return MPOS_STORE_ERR_CONSTRAINT;
    case SQLITE_NOMEM:
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
        return MPOS_ERR_ARG;
    default:
        return MPOS_STORE_ERR_DB;
    }
}

static int sq_exec(void *conn, const char *sql)
{
    return map_rc(conn, sqlite3_exec(conn, sql, NULL, NULL, NULL));
}

/* The portable text numbers parameters PostgreSQL's way, $N; SQLite's numbered form is ?N
 * ($N would be a named parameter there, numbered by first appearance). Rewritten outside
 * quoted literals and identifiers. */
static char *numbered_params(const char *sql)
{
    size_t n = strlen(sql);
    char *out = malloc(n + 1);
    char quote = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) {
        char c = sql[i];
        if (quote != 0) {
            quote = c == quote ? 0 : quote;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '$' && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
            c = '?';
        }
        out[i] = c;
    }
    return out;
}

static int sq_prepare(void *conn, const char *sql, struct store_stmt **out)
{
    int rc = MPOS_OK;
    char *text = numbered_params(sql);
    struct store_stmt *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (text == NULL || s == NULL) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    int src = sqlite3_prepare_v3(conn, text, -1, 0, &s->stmt, NULL);
    if (src != SQLITE_OK || s->stmt == NULL) {
        /* NULL statement: the text held no SQL at all. */
        rc = src == SQLITE_OK ? MPOS_STORE_ERR_DB : map_rc(conn, src);
        goto exit;
    }
    s->db = conn;
    *out = s;
    s = NULL;
exit:
    if (s != NULL) {
        sqlite3_finalize(s->stmt);
        free(s);
    }
    free(text);
    return rc;
}

static int sq_param_count(struct store_stmt *s)
{
    return sqlite3_bind_parameter_count(s->stmt);
}

static int sq_bind_int64(struct store_stmt *s, int index, int64_t v)
{
    return map_rc(s->db, sqlite3_bind_int64(s->stmt, index, (sqlite3_int64)v));
}

static int sq_bind_text(struct store_stmt *s, int index, const char *v)
{
    if (v == NULL) {
        return map_rc(s->db, sqlite3_bind_null(s->stmt, index));
    }
    return map_rc(s->db, sqlite3_bind_text(s->stmt, index, v, -1, SQLITE_TRANSIENT));
}

static int sq_step(struct store_stmt *s)
{
    int rc = sqlite3_step(s->stmt);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return map_rc(s->db, rc);
    }
    /* With sqlite3_prepare_v3 the extended code comes back from step directly. */
    return map_rc(s->db, sqlite3_extended_errcode(s->db));
}

static int sq_column_is_null(struct store_stmt *s, int col)
{
    return sqlite3_column_type(s->stmt, col) == SQLITE_NULL;
}

static int64_t sq_column_int64(struct store_stmt *s, int col)
{
    return (int64_t)sqlite3_column_int64(s->stmt, col);
}

static const char *sq_column_text(struct store_stmt *s, int col)
{
    if (sqlite3_column_type(s->stmt, col) == SQLITE_NULL) {
        return NULL;
    }
    return (const char *)sqlite3_column_text(s->stmt, col);
}

static int64_t sq_changes(void *conn)
{
    return (int64_t)sqlite3_changes64(conn);
}

static void sq_finalize(struct store_stmt *s)
{
    if (s != NULL) {
        sqlite3_finalize(s->stmt);
        free(s);
    }
}

static int sq_begin(void *conn)
{
    return sq_exec(conn, "BEGIN IMMEDIATE");
}

static int sq_commit(void *conn)
{
    return sq_exec(conn, "COMMIT");
}

static int sq_rollback(void *conn)
{
    if (sqlite3_get_autocommit(conn)) {
        return MPOS_OK; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
    }
    return sq_exec(conn, "ROLLBACK");
}

static int sq_lock_for_migration(void *conn)
{
    /* BEGIN IMMEDIATE already holds the database's only write lock. */
    (void)conn;
    return MPOS_OK;
}

static int sq_table_exists(void *conn, const char *table, int *exists)
{
    struct store_stmt *s = NULL;
    *exists = 0;
    int rc = sq_prepare(conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1", &s);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = sq_bind_text(s, 1, table);
    if (rc == MPOS_OK) {
        rc = sq_step(s);
        if (rc == STORE_ROW) {
            *exists = 1;
            rc = MPOS_OK;
        }
    }
    sq_finalize(s);
    return rc;
}

static const char *sq_errmsg(void *conn)
{
    return sqlite3_errmsg(conn);
}

static void sq_close(void *conn)
{
    if (conn != NULL) {
        if (!sqlite3_get_autocommit(conn)) {
            (void)sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
        }
        sqlite3_close_v2(conn);
    }
}

static const struct store_engine sqlite_engine = {
    .name = "sqlite",
    .exec = sq_exec,
    .prepare = sq_prepare,
    .param_count = sq_param_count,
    .bind_int64 = sq_bind_int64,
    .bind_text = sq_bind_text,
    .step = sq_step,
    .column_is_null = sq_column_is_null,
    .column_int64 = sq_column_int64,
    .column_text = sq_column_text,
    .changes = sq_changes,
    .finalize = sq_finalize,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .lock_for_migration = sq_lock_for_migration,
    .table_exists = sq_table_exists,
    .errmsg = sq_errmsg,
    .close = sq_close,
};

/* The journal mode now in force ("wal", "delete" ...) into mode (cap bytes). */
static int journal_mode(sqlite3 *db, const char *sql, char *mode, size_t cap)
{
    struct store_stmt *s = NULL;
    int rc = sq_prepare(db, sql, &s);
    mode[0] = '\0';
    if (rc == MPOS_OK) {
        rc = sq_step(s);
        if (rc == STORE_ROW) {
            const char *m = sq_column_text(s, 0);
            snprintf(mode, cap, "%s", m != NULL ? m : "");
            rc = MPOS_OK;
        } else if (rc == STORE_DONE) {
            rc = MPOS_STORE_ERR_DB;
        }
    }
    sq_finalize(s);
    return rc;
}

/* journal_mode=WAL is persistent in the file. Switching a new file to WAL takes an exclusive
 * lock, and SQLite answers SQLITE_BUSY at once (without the busy handler) when another
 * process holds the file at that moment, e.g. several processes creating the same database:
 * retried here until the busy timeout. */
static int wal_mode(sqlite3 *db, int busy_timeout_ms)
{
    char mode[16];
    int rc = MPOS_OK;
    for (int waited = 0;; waited += 10) {
        rc = journal_mode(db, "PRAGMA journal_mode", mode, sizeof(mode));
        if (rc == MPOS_OK && strcmp(mode, "wal") != 0) {
            rc = journal_mode(db, "PRAGMA journal_mode=WAL", mode, sizeof(mode));
        }
        if (rc == MPOS_OK) {
            return strcmp(mode, "wal") == 0 ? MPOS_OK : MPOS_STORE_ERR_DB;
        }
        if (rc != MPOS_STORE_ERR_BUSY || waited >= busy_timeout_ms) {
            return rc;
        }
        sqlite3_sleep(10);
    }
}

/* Creates the file with mode 0600 before SQLite opens it (SQLite would use 0644 & umask). */
static int create_private_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return errno == EEXIST ? MPOS_OK : MPOS_STORE_ERR_NO_DB;
    }
    close(fd);
    return MPOS_OK;
}

int store_sqlite_open(const char *path, unsigned flags, int busy_timeout_ms,
                      const struct store_engine **eng, void **conn)
{
    sqlite3 *db = NULL;
    struct stat sb;
    int rc = MPOS_OK;
    *eng = NULL;
    *conn = NULL;
    if (path == NULL || path[0] == '\0') {
        return MPOS_ERR_ARG;
    }
    if (stat(path, &sb) != 0) {
        if (!(flags & MPOS_STORE_CREATE)) {
            return MPOS_STORE_ERR_NO_DB;
        }
        rc = create_private_file(path);
        if (rc != MPOS_OK) {
            return rc;
        }
    }
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    if (sqlite3_open_v2(path, &db, oflags, NULL) != SQLITE_OK) {
        rc = MPOS_STORE_ERR_DB;
        goto exit;
    }
    (void)sqlite3_extended_result_codes(db, 1);
    if (sqlite3_busy_timeout(db, busy_timeout_ms) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) != SQLITE_OK) {
        rc = MPOS_STORE_ERR_DB;
        goto exit;
    }
    rc = wal_mode(db, busy_timeout_ms);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = sq_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                     "PRAGMA secure_delete=ON");
    if (rc != MPOS_OK) {
        goto exit;
    }
    *eng = &sqlite_engine;
    *conn = db;
    db = NULL;
exit:
    if (db != NULL) {
        sqlite3_close_v2(db);
    }
    return rc;
}
