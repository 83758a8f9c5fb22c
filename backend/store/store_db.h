/* mpos_store internals: the engine interface under the typed operations.
 *
 * The operations (store_*.c) are written once, in portable SQL with PostgreSQL's numbered
 * parameters $1, $2 ... (store_sql.def). SQLite spells a numbered parameter ?N (it would read
 * $N as a *named* parameter, numbered by first appearance), so its engine rewrites $N to ?N
 * outside string literals when it prepares; store_prepare() checks that the statement has
 * exactly as many parameters as the caller binds. An engine implements this table: SQLite
 * now (store_sqlite.c), PostgreSQL through libpq later.
 */
#ifndef MPOS_STORE_DB_H
#define MPOS_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/store.h"

/* store_step() results besides errors. */
enum { STORE_ROW = 1, STORE_DONE = 0 };

struct store_stmt;

struct store_engine {
    const char *name;
    /* Runs one or more statements without parameters (migrations). */
    int (*exec)(void *conn, const char *sql);
    int (*prepare)(void *conn, const char *sql, struct store_stmt **out);
    int (*param_count)(struct store_stmt *s);
    int (*bind_int64)(struct store_stmt *s, int index, int64_t v);
    int (*bind_text)(struct store_stmt *s, int index, const char *v); /* NULL: SQL NULL */
    /* STORE_ROW, STORE_DONE, MPOS_STORE_EXISTS (unique/primary key violation) or an error. */
    int (*step)(struct store_stmt *s);
    int (*column_is_null)(struct store_stmt *s, int col);
    int64_t (*column_int64)(struct store_stmt *s, int col);
    const char *(*column_text)(struct store_stmt *s, int col); /* NULL for SQL NULL */
    int64_t (*changes)(void *conn); /* rows written by the last statement */
    void (*finalize)(struct store_stmt *s);
    int (*begin)(void *conn); /* a write transaction: takes the write lock up front */
    int (*commit)(void *conn);
    int (*rollback)(void *conn);
    /* Serialises migrations between processes; called inside begin(). */
    int (*lock_for_migration)(void *conn);
    int (*table_exists)(void *conn, const char *table, int *exists);
    const char *(*errmsg)(void *conn);
    void (*close)(void *conn);
};

struct mpos_store {
    const struct store_engine *eng;
    void *conn;
    int64_t schema_version;
    int tx_depth;  /* 0: none; 1: an operation's own or the caller's; >1 nested joins */
    int tx_caller; /* the outer transaction is the caller's (mpos_store_begin) */
    int tx_doomed; /* an operation failed inside the caller's transaction */
    char actor[MPOS_STORE_ACTOR_LEN + 1];
};

/* Engines. */
int store_sqlite_open(const char *path, unsigned flags, int busy_timeout_ms,
                      const struct store_engine **eng, void **conn);

/* Statement helpers: a prepared statement with its parameters bound in one call.
 * fmt: one character per parameter: 'i' int64_t, 't' const char * (NULL: SQL NULL). */
int store_prepare(mpos_store *st, const char *sql, struct store_stmt **out, const char *fmt,
                  ...) MPOS_MUST_CHECK;
int store_step(mpos_store *st, struct store_stmt *s) MPOS_MUST_CHECK;
void store_finalize(mpos_store *st, struct store_stmt *s);
/* prepare + step to completion; *changes (may be NULL) gets the rows written. */
int store_exec(mpos_store *st, const char *sql, int64_t *changes, const char *fmt,
               ...) MPOS_MUST_CHECK;
/* prepare + one step: STORE_ROW with the first column's value in *out, or STORE_DONE. */
int store_query_int64(mpos_store *st, const char *sql, int64_t *out, int *is_null, const char *fmt,
                      ...) MPOS_MUST_CHECK;
/* Copies a text column into out (cap bytes); "" for NULL. MPOS_ERR_LENGTH if it does not fit. */
int store_column_copy(mpos_store *st, struct store_stmt *s, int col, char *out,
                      size_t cap) MPOS_MUST_CHECK;
int64_t store_column_int64(mpos_store *st, struct store_stmt *s, int col);
int store_column_is_null(mpos_store *st, struct store_stmt *s, int col);

/* Transactions for operations: join the caller's one or open our own. tx_end commits (rc ==
 * 0 or positive outcome that wrote nothing harmful is decided by the caller) or rolls back. */
int store_tx_begin(mpos_store *st) MPOS_MUST_CHECK;
/* Ends the transaction opened by store_tx_begin: commits when commit is 1, else rolls back
 * (or dooms the caller's transaction). Returns rc, or the commit error. */
int store_tx_end(mpos_store *st, int commit, int rc);

/* The schema must be current for every operation but migrate. */
int store_require_schema(mpos_store *st) MPOS_MUST_CHECK;

/* The start of every writing operation: the schema check, then store_tx_begin. On success
 * the caller ends with store_tx_end; on failure there is no transaction to end. */
int store_write_begin(mpos_store *st) MPOS_MUST_CHECK;
/* Next value of a named sequence (id_sequences): one atomic increment. */
int store_next_id(mpos_store *st, const char *name, int64_t *out) MPOS_MUST_CHECK;

/* Reads a terminal by canonical serial: MPOS_OK, MPOS_STORE_NOT_FOUND or an error. */
int store_terminal_load(mpos_store *st, const char *serial,
                        struct mpos_store_terminal *t) MPOS_MUST_CHECK;

/* Reads a key row by label (validated): MPOS_OK, MPOS_STORE_NOT_FOUND or an error. */
int store_key_load(mpos_store *st, const char *label, struct mpos_store_key *out) MPOS_MUST_CHECK;

/* Appends an audit record (inside the current transaction). */
int store_audit(mpos_store *st, int64_t now, const char *action, const char *object,
                const char *detail) MPOS_MUST_CHECK;

/* Copies an identifier into out (cap bytes) in upper (upper = 1) or lower case ASCII.
 * MPOS_ERR_FORMAT if it does not fit. */
int store_canon(const char *in, char *out, size_t cap, int upper) MPOS_MUST_CHECK;

/* Validates a terminal serial and copies it as is (serials are case-sensitive). */
int store_serial_copy(const char *serial, char out[MPOS_STORE_SERIAL_LEN + 1]) MPOS_MUST_CHECK;

/* 1 if s is valid UTF-8 (shortest forms, no surrogates) without control characters; the
 * number of code points goes to *chars (may be NULL). */
int store_utf8_check(const char *s, size_t *chars);

/* SHA-256 of len bytes as 64 uppercase hex characters (libcrypto). */
int store_sha256_hex(const void *data, size_t len, char hex[65]) MPOS_MUST_CHECK;

#endif
