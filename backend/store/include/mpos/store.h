/* openmpos back end: the store. Everything that outlives a connection lives here (merchants,
 * terminals, operators, activation codes, key blocks, KSN allocation, anti-replay counters, the
 * fleet audit trail), behind typed operations: callers never write SQL.
 *
 * One store API, several engines. mpos_store_open() picks the engine from the location:
 * a path (or "sqlite:PATH") is the embedded SQLite database (WAL, synchronous=FULL, foreign
 * keys on, busy timeout); "postgresql://..." is reserved for the PostgreSQL engine that
 * several back-end nodes will share (docs/store.md). The operations are written once, in
 * portable SQL, over a small engine interface; every counter is moved by an atomic
 * conditional write, so two processes or two nodes never hand out the same value.
 *
 * Conventions (../shared/spec/style.md 2): 0 is success; a negative value is an enum mpos_err
 * or one of the MPOS_STORE_ERR_* below (the call could not do its job); a positive value is a
 * business outcome (not found, already exists, state does not allow it, ...).
 *
 * Time is always passed in (`now`, Unix seconds, UTC), so that tests control it and all nodes
 * write the same kind of value. Merchant IDs are stored in uppercase and usernames in
 * lowercase; terminal serials are exact (case-sensitive, as in the device's certificate and
 * provisioning bundle); the *_valid() helpers say what is accepted.
 *
 * A mpos_store is used by one thread at a time. Every operation runs in its own transaction
 * unless the caller opened one with mpos_store_begin(); then it joins it, and an operation
 * that fails inside it dooms it (mpos_store_commit() then rolls back and reports the error).
 *
 * Nothing here ever holds a clear key, a clear password beyond the call that hashes it, or a
 * clear activation code beyond the call that hashes it: key blocks (TR-31 under the LMK)
 * only, Argon2id hashes, SHA-256 digests.
 */
#ifndef MPOS_STORE_H
#define MPOS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

/* Errors of the store beyond enum mpos_err (negative: the call could not do its job). */
enum mpos_store_err {
    MPOS_STORE_ERR_DB = -100,         /* the database engine failed (I/O, corrupt, full disk) */
    MPOS_STORE_ERR_BUSY = -101,       /* the database stayed locked past the busy timeout */
    MPOS_STORE_ERR_CONSTRAINT = -102, /* a CHECK or foreign key refused the write */
    MPOS_STORE_ERR_SCHEMA_OLD = -103, /* the schema is older than this code: migrate first */
    MPOS_STORE_ERR_SCHEMA_NEW = -104, /* the schema is newer than this code: refused */
    MPOS_STORE_ERR_NO_DB = -105,      /* no database at that location (and not asked to create) */
    MPOS_STORE_ERR_TX = -106          /* transaction misuse (nested begin, commit without begin) */
};

/* Business outcomes (positive). */
enum mpos_store_outcome {
    MPOS_STORE_NOT_FOUND = 1,     /* no such merchant, terminal, operator, key, allocator */
    MPOS_STORE_EXISTS = 2,        /* the ID, serial, username or label is taken */
    MPOS_STORE_STATE = 3,         /* the object's state does not allow the operation */
    MPOS_STORE_EXPIRED = 4,       /* activation code past its expiry */
    MPOS_STORE_USED = 5,          /* activation code already used, revoked or burnt */
    MPOS_STORE_DENIED = 6,        /* wrong activation code or password */
    MPOS_STORE_LOCKED = 7,        /* operator locked out after failed attempts */
    MPOS_STORE_WEAK_PASSWORD = 8, /* the password policy refused it (see mpos/password.h) */
    MPOS_STORE_EXHAUSTED = 9,     /* a KSN allocator has no device ID left */
    MPOS_STORE_REPLAY = 10,       /* a KSN counter not above the last one accepted */
    MPOS_STORE_DISABLED = 11      /* operator disabled */
};

/* A short fixed English description of any store result or enum mpos_err (no data). */
const char *mpos_store_strerror(int rc);

/* Schema version this code writes and reads. */
#define MPOS_STORE_SCHEMA_VERSION 2

/* Sizes (characters, without the NUL). */
#define MPOS_STORE_MERCHANT_ID_LEN   15   /* ISO 8583 DE 42 card acceptor ID: [A-Z0-9]{1,15} */
#define MPOS_STORE_MERCHANT_NAME_LEN 64   /* bytes of UTF-8, no control characters */
#define MPOS_STORE_MCC_LEN           4    /* ISO 18245 merchant category code */
#define MPOS_STORE_SERIAL_LEN        32   /* terminal serial: [A-Za-z0-9-]{1,32}, exact */
#define MPOS_STORE_TID_LEN           8    /* ISO 8583 DE 41 terminal ID, allocated: 8 digits */
#define MPOS_STORE_USERNAME_LEN      32   /* [a-z0-9._-]{3,32}, stored lowercase */
#define MPOS_STORE_LABEL_LEN         64   /* key label: [a-z0-9._:-]{1,64} */
#define MPOS_STORE_KEYBLOCK_LEN      2048 /* longest key block stored */
#define MPOS_STORE_KCV_HEX_LEN       10   /* at most 5 bytes, uppercase hex */
#define MPOS_STORE_SHA256_HEX_LEN    64   /* certificate fingerprint, digests */
#define MPOS_STORE_KSN_HEX_LEN                                                                     \
    20                                 /* initial KSN as stored: AES 16 hex (initial key ID),      \
                                          TDES 20 hex (counter bits zero) */
#define MPOS_STORE_HOST_BINDING_LEN 64 /* hex SHA-256 of the host's device identifier */
#define MPOS_STORE_ACTOR_LEN        64
#define MPOS_STORE_AUDIT_DETAIL_LEN 256
#define MPOS_STORE_ERRMSG_LEN       256

/* Operator lock-out (A-OPER-1): after this many failed logins in a row the operator is locked
 * for MPOS_STORE_LOCKOUT_SECONDS; activation codes are burnt after this many wrong codes. */
#define MPOS_STORE_MAX_FAILED_LOGINS       5
#define MPOS_STORE_LOCKOUT_SECONDS         900
#define MPOS_STORE_MAX_ACTIVATION_FAILURES 5

typedef struct mpos_store mpos_store;

/* ---- open, close, schema ---------------------------------------------------------------- */

#define MPOS_STORE_CREATE 0x1u /* create the database if it does not exist (mode 0600) */

/* Opens the store at location (a path, "sqlite:PATH", or "postgresql://..." which is
 * MPOS_ERR_UNSUPPORTED for now). Refuses a schema newer than this code
 * (MPOS_STORE_ERR_SCHEMA_NEW); an older one opens, so that it can be migrated, but every
 * other operation then returns MPOS_STORE_ERR_SCHEMA_OLD. busy_timeout_ms 0 means 5000.
 * *out is NULL on error. */
int mpos_store_open(const char *location, unsigned flags, int busy_timeout_ms,
                    mpos_store **out) MPOS_MUST_CHECK;

/* Closes the store (rolls back an open transaction). NULL is allowed. */
void mpos_store_close(mpos_store *st);

/* The engine's last message (e.g. "database is locked"), for logs; never contains values. */
const char *mpos_store_errmsg(const mpos_store *st);

/* Schema version of the open database (0 for an empty one). */
int mpos_store_schema_version(mpos_store *st, int64_t *version) MPOS_MUST_CHECK;

/* Applies the missing migrations, each in its own transaction, and records them in
 * schema_version. Idempotent; safe when several processes migrate at once (the migration
 * lock serialises them and each re-reads the version under it). *from and *to (may be NULL)
 * receive the versions before and after. */
int mpos_store_migrate(mpos_store *st, int64_t now, int64_t *from, int64_t *to) MPOS_MUST_CHECK;

/* The SQL of migration `version` (1..MPOS_STORE_SCHEMA_VERSION), or NULL: for the
 * portability check that runs the schema on PostgreSQL. */
const char *mpos_store_migration_sql(int64_t version);

/* The text of every statement the operations run, one after another (NULL after the last),
 * and its name in *name (may be NULL), for the same check. */
const char *mpos_store_statement_sql(size_t index, const char **name);

/* ---- transactions, audit actor --------------------------------------------------------- */

/* Groups several operations into one write transaction (not nested). */
int mpos_store_begin(mpos_store *st) MPOS_MUST_CHECK;
int mpos_store_commit(mpos_store *st) MPOS_MUST_CHECK;
void mpos_store_rollback(mpos_store *st);

/* Who is making the changes, as written to the audit trail (e.g. "mposctl:alice"). Copied;
 * truncated to MPOS_STORE_ACTOR_LEN. Default "unknown". */
void mpos_store_set_actor(mpos_store *st, const char *actor);

/* ---- validation helpers (1 if acceptable) ---------------------------------------------- */

int mpos_store_merchant_id_valid(const char *id);
int mpos_store_merchant_name_valid(const char *name);
int mpos_store_serial_valid(const char *serial);
int mpos_store_username_valid(const char *username);
int mpos_store_label_valid(const char *label);

/* ---- merchants ------------------------------------------------------------------------- */

struct mpos_store_merchant {
    char id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char name[MPOS_STORE_MERCHANT_NAME_LEN + 1];
    char mcc[MPOS_STORE_MCC_LEN + 1]; /* "" when not set */
    int64_t created_at;
};

/* Adds a merchant. id NULL: allocates the next 15-digit ID; otherwise the ID given
 * (canonicalised to uppercase). mcc NULL or 4 digits. The ID is written to id_out.
 * MPOS_STORE_EXISTS when the ID is taken; MPOS_ERR_FORMAT for an invalid ID, name or MCC. */
int mpos_store_merchant_add(mpos_store *st, const char *id, const char *name, const char *mcc,
                            int64_t now,
                            char id_out[MPOS_STORE_MERCHANT_ID_LEN + 1]) MPOS_MUST_CHECK;

int mpos_store_merchant_get(mpos_store *st, const char *id,
                            struct mpos_store_merchant *out) MPOS_MUST_CHECK;

/* Calls cb for each merchant in ID order; a non-zero return from cb stops and is returned. */
int mpos_store_merchant_list(mpos_store *st,
                             int (*cb)(void *cb_ctx, const struct mpos_store_merchant *m),
                             void *cb_ctx) MPOS_MUST_CHECK;

/* ---- terminals ------------------------------------------------------------------------- */

enum mpos_terminal_state {
    MPOS_TERMINAL_PROVISIONED = 1, /* known; waiting for activation (T-ACTIV-1) */
    MPOS_TERMINAL_ACTIVE = 2,      /* activated: may transact */
    MPOS_TERMINAL_SUSPENDED = 3,   /* blocked; resume returns it to where it was */
    MPOS_TERMINAL_RETIRED = 4      /* final: never transacts again, its KSN is never reused */
};

enum mpos_terminal_scheme {
    MPOS_SCHEME_NONE = 0,       /* no key loaded yet */
    MPOS_SCHEME_AES_DUKPT = 1,  /* ANSI X9.24-3 */
    MPOS_SCHEME_TDES_DUKPT = 2, /* ANSI X9.24-1 */
    MPOS_SCHEME_MKWK = 3        /* UnionPay master key / working keys (TMK) */
};

const char *mpos_terminal_state_name(enum mpos_terminal_state s);
const char *mpos_terminal_scheme_name(enum mpos_terminal_scheme s); /* "aes-dukpt", ... */
/* 0 and the scheme for "aes-dukpt", "tdes-dukpt" or "mkwk"; MPOS_ERR_FORMAT otherwise. */
int mpos_terminal_scheme_parse(const char *name, enum mpos_terminal_scheme *out) MPOS_MUST_CHECK;

/* Registered location (B-MOVE-1): microdegrees, radius in metres. */
struct mpos_store_location {
    int set;          /* 0: no location */
    int64_t lat_e6;   /* -90000000 .. 90000000 */
    int64_t lon_e6;   /* -180000000 .. 180000000 */
    int64_t radius_m; /* 1 .. 20000000 */
};

struct mpos_store_terminal {
    char serial[MPOS_STORE_SERIAL_LEN + 1];
    char merchant_id[MPOS_STORE_MERCHANT_ID_LEN + 1]; /* "" when unassigned */
    char tid[MPOS_STORE_TID_LEN + 1];                 /* "" when unassigned */
    enum mpos_terminal_state state;
    enum mpos_terminal_scheme scheme;
    char initial_ksn[MPOS_STORE_KSN_HEX_LEN + 1];    /* DUKPT; "" otherwise */
    char tmk_kcv[MPOS_STORE_KCV_HEX_LEN + 1];        /* mkwk; "" otherwise */
    char key_label[MPOS_STORE_LABEL_LEN + 1];        /* BDK (DUKPT) or TMK (mkwk) block */
    char cert_sha256[MPOS_STORE_SHA256_HEX_LEN + 1]; /* device certificate fingerprint */
    char host_binding[MPOS_STORE_HOST_BINDING_LEN + 1];
    struct mpos_store_location location;
    int has_ksn_counter;
    int64_t last_ksn_counter; /* anti-replay: last accepted counter for initial_ksn */
    int has_sequence;
    int64_t last_sequence; /* last accepted terminal transaction sequence number */
    int64_t created_at, updated_at, provisioned_at, activated_at, retired_at; /* 0: never */
};

/* Assigns the terminal (created if unknown, in state provisioned) to a merchant, with an
 * optional location, and records a new one-time activation code (its SHA-256 under the serial,
 * never the code; any earlier unused code is revoked). The state becomes provisioned: the
 * terminal activates again with the new code. Allowed from provisioned; from active or
 * suspended only with reassign set (moving a terminal is a deliberate act); never from
 * retired (MPOS_STORE_STATE). MPOS_STORE_NOT_FOUND: no such merchant. A terminal ID (DE 41)
 * is allocated at its first assignment. code is a code from mpos_activation_code_generate(). */
int mpos_store_terminal_assign(mpos_store *st, const char *serial, const char *merchant_id,
                               const struct mpos_store_location *location, int reassign,
                               const char *code, int64_t expires_at, int64_t now) MPOS_MUST_CHECK;

int mpos_store_terminal_get(mpos_store *st, const char *serial,
                            struct mpos_store_terminal *out) MPOS_MUST_CHECK;

/* Calls cb for each terminal (of one merchant, or all when merchant_id is NULL) in serial
 * order; a non-zero return from cb stops and is returned. */
int mpos_store_terminal_list(mpos_store *st, const char *merchant_id,
                             int (*cb)(void *cb_ctx, const struct mpos_store_terminal *t),
                             void *cb_ctx) MPOS_MUST_CHECK;

enum mpos_terminal_action {
    MPOS_TERMINAL_SUSPEND = 1, /* provisioned|active -> suspended */
    MPOS_TERMINAL_RESUME = 2,  /* suspended -> active if it was ever activated, else provisioned */
    MPOS_TERMINAL_RETIRE = 3   /* any but retired -> retired (final); revokes unused codes */
};

/* Applies a state transition as one conditional write; MPOS_STORE_STATE when the current
 * state does not allow it. The new state goes to *new_state (may be NULL). */
int mpos_store_terminal_transition(mpos_store *st, const char *serial,
                                   enum mpos_terminal_action action, int64_t now,
                                   enum mpos_terminal_state *new_state) MPOS_MUST_CHECK;

/* What provisioning (mposctl terminal provision, through mpos-hsmd) records for a terminal.
 * DUKPT: initial_ksn is the one allocated by mpos_store_ksn_allocate() for this serial and
 * key_label the BDK; mkwk: tmk_kcv and key_label the TMK's own key block (label, stored first
 * with mpos_store_key_put()). cert_sha256: fingerprint of the certificate hsmd signed. */
struct mpos_store_terminal_keys {
    enum mpos_terminal_scheme scheme;
    const char *initial_ksn; /* hex, DUKPT only */
    const char *tmk_kcv;     /* hex, mkwk only */
    const char *key_label;
    const char *cert_sha256; /* 64 hex */
};

/* Records the keys and certificate of a terminal (created if unknown, state provisioned).
 * Allowed in states provisioned and suspended (re-keying a suspended device); an active one
 * must be suspended first; retired never. Re-keying resets the anti-replay counter (a new
 * initial KSN starts from counter 0) and forgets the activation: new credentials activate
 * again with a new code (resume then leads to provisioned). The initial KSN must be
 * allocated to this serial. */
int mpos_store_terminal_register_keys(mpos_store *st, const char *serial,
                                      const struct mpos_store_terminal_keys *keys,
                                      int64_t now) MPOS_MUST_CHECK;

/* Activation (T-ACTIV-1), the store side: the back end has authenticated the terminal's
 * certificate (its fingerprint is cert_sha256) and received the code the merchant typed.
 * One conditional write marks the code used and the terminal active, so two nodes cannot
 * both accept it. MPOS_STORE_DENIED: wrong code (counted; after
 * MPOS_STORE_MAX_ACTIVATION_FAILURES the code is burnt) or another certificate;
 * MPOS_STORE_EXPIRED; MPOS_STORE_USED (used, revoked or burnt; or no code outstanding);
 * MPOS_STORE_STATE: not provisioned, or keys/certificate/merchant missing. host_binding (may
 * be NULL) binds the terminal to the host device it activated through (B-MOVE-1). */
int mpos_store_activation_redeem(mpos_store *st, const char *serial, const char *code,
                                 const char *cert_sha256, const char *host_binding,
                                 int64_t now) MPOS_MUST_CHECK;

/* Anti-replay (B-REPLAY-1), the store side: accepts counter for the terminal's current initial
 * KSN only if it is strictly greater than the last accepted one, in one conditional write.
 * MPOS_STORE_REPLAY otherwise; MPOS_STORE_STATE if the terminal is not active or the KSN is
 * not its current one. Call it only after the request's MAC verified in mpos-hsmd. */
int mpos_store_ksn_accept(mpos_store *st, const char *serial, const char *initial_ksn,
                          int64_t counter, int64_t now) MPOS_MUST_CHECK;

/* ---- KSN allocation (T-UNIQ-1) --------------------------------------------------------- */

/* Creates the allocator of one BDK: AES DUKPT key_set_id = the 4-byte BDK ID (8 hex), device
 * IDs are the 4-byte derivation IDs; TDES DUKPT key_set_id = the 5-byte key set ID (10 hex),
 * device IDs the 19-bit device (TRSM) IDs. Device IDs start at first_device_id (>= 1 is
 * advised) and are never handed out twice, whatever happens to the terminals. bdk_label
 * names the BDK's key block (mpos_store_key_put() first). */
int mpos_store_ksn_allocator_create(mpos_store *st, enum mpos_terminal_scheme scheme,
                                    const char *key_set_id, const char *bdk_label,
                                    int64_t first_device_id, int64_t now) MPOS_MUST_CHECK;

/* Allocates the next initial KSN of an allocator as one atomic increment in the database,
 * recording it (and the serial it is for, may be NULL). initial_ksn_out: AES 16 hex (BDK ID ||
 * derivation ID = the initial key ID), TDES 20 hex (key set ID || device ID || counter 0).
 * MPOS_STORE_EXHAUSTED when no device ID is left; MPOS_STORE_NOT_FOUND for an unknown
 * allocator. The allocator is named by key_set_id, or by the BDK's label when key_set_id is
 * NULL. */
int mpos_store_ksn_allocate(mpos_store *st, enum mpos_terminal_scheme scheme,
                            const char *key_set_id, const char *bdk_label, const char *serial,
                            int64_t now, char initial_ksn_out[MPOS_STORE_KSN_HEX_LEN + 1],
                            int64_t *device_id_out) MPOS_MUST_CHECK;

/* ---- operators (A-OPER-1) -------------------------------------------------------------- */

enum mpos_operator_role { MPOS_ROLE_CASHIER = 1, MPOS_ROLE_SUPERVISOR = 2 };

const char *mpos_operator_role_name(enum mpos_operator_role r);
int mpos_operator_role_parse(const char *name, enum mpos_operator_role *out) MPOS_MUST_CHECK;

struct mpos_store_operator {
    char merchant_id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char username[MPOS_STORE_USERNAME_LEN + 1];
    enum mpos_operator_role role;
    int64_t failed_attempts;
    int64_t locked_until; /* 0: not locked */
    int64_t disabled_at;  /* 0: enabled */
    int64_t created_at, password_changed_at, last_login_at;
};

/* Adds an operator: checks the password policy (MPOS_STORE_WEAK_PASSWORD, with the reason
 * from mpos/password.h in *policy_reason, may be NULL), hashes the password with Argon2id and
 * stores only the hash. MPOS_STORE_EXISTS: username taken for that merchant;
 * MPOS_STORE_NOT_FOUND: no such merchant. */
int mpos_store_operator_add(mpos_store *st, const char *merchant_id, const char *username,
                            enum mpos_operator_role role, const char *password, int64_t now,
                            int *policy_reason) MPOS_MUST_CHECK;

/* Checks an operator's password (login). 0 and the role on success (the failure count is
 * reset); MPOS_STORE_DENIED for a wrong password or an unknown operator (the same Argon2id
 * work is done either way); MPOS_STORE_LOCKED while locked out (without checking the
 * password); MPOS_STORE_DISABLED. Failures are counted with one conditional write. */
int mpos_store_operator_verify(mpos_store *st, const char *merchant_id, const char *username,
                               const char *password, int64_t now,
                               enum mpos_operator_role *role_out) MPOS_MUST_CHECK;

/* Calls cb for each operator of a merchant (all merchants when NULL). Never exposes hashes. */
int mpos_store_operator_list(mpos_store *st, const char *merchant_id,
                             int (*cb)(void *cb_ctx, const struct mpos_store_operator *o),
                             void *cb_ctx) MPOS_MUST_CHECK;

/* ---- key blocks ------------------------------------------------------------------------ */

struct mpos_store_key {
    char label[MPOS_STORE_LABEL_LEN + 1];
    char key_block[MPOS_STORE_KEYBLOCK_LEN + 1]; /* TR-31 version D under the LMK's KBPK */
    char kcv[MPOS_STORE_KCV_HEX_LEN + 1];
    char usage[3];  /* TR-31 key usage, from the block's header */
    char algorithm; /* TR-31 algorithm, from the block's header */
    int64_t created_at;
};

/* Stores a key block under a new label. The block must parse as a TR-31 version D key block
 * (the only form in which a key leaves mpos-hsmd); usage and algorithm are read from its
 * header. kcv: 2 to 5 bytes of uppercase hex. MPOS_STORE_EXISTS if the label is taken;
 * MPOS_ERR_FORMAT for anything that is not a key block. */
int mpos_store_key_put(mpos_store *st, const char *label, const char *key_block, const char *kcv,
                       int64_t now) MPOS_MUST_CHECK;

int mpos_store_key_get(mpos_store *st, const char *label,
                       struct mpos_store_key *out) MPOS_MUST_CHECK;

/* Calls cb for each key in label order (the block included: it is safe outside hsmd). */
int mpos_store_key_list(mpos_store *st, int (*cb)(void *cb_ctx, const struct mpos_store_key *k),
                        void *cb_ctx) MPOS_MUST_CHECK;

/* ---- audit trail of fleet changes ------------------------------------------------------ */

struct mpos_store_audit {
    int64_t seq; /* 1, 2, 3 ... without gaps */
    int64_t created_at;
    char actor[MPOS_STORE_ACTOR_LEN + 1];
    char action[32]; /* e.g. "terminal.suspend" */
    char object[MPOS_STORE_SERIAL_LEN + 32];
    char detail[MPOS_STORE_AUDIT_DETAIL_LEN + 1]; /* never a secret */
    char row_hash[MPOS_STORE_SHA256_HEX_LEN + 1];
};

/* Calls cb for each audit record in order (the last `limit` ones; 0: all). */
int mpos_store_audit_list(mpos_store *st, int64_t limit,
                          int (*cb)(void *cb_ctx, const struct mpos_store_audit *a),
                          void *cb_ctx) MPOS_MUST_CHECK;

/* Re-computes the hash chain (each record's hash covers the previous one): 0 if intact,
 * MPOS_ERR_VERIFY otherwise with the first bad sequence number in *bad_seq. *count: records. */
int mpos_store_audit_verify(mpos_store *st, int64_t *count, int64_t *bad_seq) MPOS_MUST_CHECK;

/* ---- host sessions (migration 2, docs/system-design.md 1.3) ------------------------------ */

#define MPOS_STORE_SESSION_TOKEN_LEN 32

/* A host session: the token itself is never stored, only its SHA-256 (hex). */
struct mpos_store_session {
    char merchant_id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char username[MPOS_STORE_USERNAME_LEN + 1];
    enum mpos_operator_role role;
    uint8_t device_id[32]; /* the host device the session is bound to */
    int64_t expires_at;    /* Unix seconds */
    int revoked;           /* read back only */
};

/* Records a new session under SHA-256(token). MPOS_ERR_FORMAT for an empty merchant or user,
 * a bad role or an expiry not after now; MPOS_STORE_EXISTS if the hash is taken. */
int mpos_store_session_create(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                              const struct mpos_store_session *s, int64_t now) MPOS_MUST_CHECK;
/* The session of token: MPOS_OK and *out; MPOS_STORE_NOT_FOUND (none, or revoked);
 * MPOS_STORE_EXPIRED (expires_at <= now; *out filled). */
int mpos_store_session_get(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                           int64_t now, struct mpos_store_session *out) MPOS_MUST_CHECK;
/* Revokes the session of token (logout); no error when there is none. */
int mpos_store_session_revoke(mpos_store *st, const uint8_t token[MPOS_STORE_SESSION_TOKEN_LEN],
                              int64_t now) MPOS_MUST_CHECK;
/* Deletes the sessions expired at now; *removed (may be NULL) gets how many. */
int mpos_store_session_purge(mpos_store *st, int64_t now, int64_t *removed) MPOS_MUST_CHECK;

/* ---- the transaction journal (G-ACCT-4), reversals, settlement (migration 2) ----------- */

/* One transaction as the back end processed it: written (state pending) before the request
 * goes upstream, completed with the result. Never a track, PIN, PIN block, CVN or expiry; the
 * PAN only masked (first 6 / last 4) and as mpos-hsmd's keyed hash. (serial, sequence) is
 * unique: the terminal's sequence number is the idempotency key. */
enum mpos_journal_state { MPOS_JOURNAL_PENDING = 1, MPOS_JOURNAL_DONE = 2 };

#define MPOS_STORE_RRN_LEN     12 /* ISO 8583 DE 37 */
#define MPOS_STORE_DE7_LEN     10 /* ISO 8583 DE 7, MMDDhhmmss */
#define MPOS_STORE_KSNX_LEN    24 /* a whole KSN in hex (AES 12 bytes) */
#define MPOS_STORE_IAD_HEX_LEN 32
#define MPOS_STORE_ALERT_LEN   32
#define MPOS_STORE_ADDR_LEN    63

struct mpos_store_journal {
    int64_t id; /* assigned by mpos_store_journal_insert */
    char serial[MPOS_STORE_SERIAL_LEN + 1];
    int64_t sequence;
    char merchant_id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char tid[MPOS_STORE_TID_LEN + 1];
    char username[MPOS_STORE_USERNAME_LEN + 1]; /* "" when none */
    int64_t txn_type;                           /* 1 sale, 2 void, 3 refund, 4 balance */
    int64_t amount, currency;
    char masked_pan[20];                          /* "" when no card was read */
    char pan_hash[MPOS_STORE_SHA256_HEX_LEN + 1]; /* keyed hash from mpos-hsmd, or "" */
    char ksn[MPOS_STORE_KSNX_LEN + 1];            /* the request's whole KSN, hex */
    int64_t stan;                                 /* assigned: 1..999999 */
    char rrn[MPOS_STORE_RRN_LEN + 1];             /* assigned: 12 digits, unique */
    char transmit_time[MPOS_STORE_DE7_LEN + 1];   /* DE 7 of the upstream request */
    char mti[5];                                  /* "0200", "0100" */
    char proc_code[7];                            /* DE 3 */
    char entry_mode[4];                           /* DE 22 */
    char original_rrn[MPOS_STORE_RRN_LEN + 1];    /* void / refund: the original's; else "" */
    enum mpos_journal_state state;
    int upstream_sent; /* the request went (or may have gone) to the network */
    char response_code[3], auth_code[7], arc[3];
    char iad[MPOS_STORE_IAD_HEX_LEN + 1]; /* issuer authentication data (EMV 91), hex */
    int has_location;
    int64_t lat_e7, lon_e7, accuracy_m, loc_time;  /* the host's location (H-GEO-1) */
    char device_id[MPOS_STORE_SHA256_HEX_LEN + 1]; /* host device ID, hex */
    char source_addr[MPOS_STORE_ADDR_LEN + 1];
    char alert[MPOS_STORE_ALERT_LEN + 1]; /* "" or a word: "outside_radius", ... */
    int reversed;                         /* a reversal was queued for it */
    int64_t batch;                        /* settlement batch, 0 while open */
    int64_t created_at, updated_at;
};

/* Writes a new entry in state pending: assigns id, STAN and RRN (written back into e) from
 * the store's sequences, so that two nodes never use the same ones. MPOS_STORE_EXISTS when
 * (serial, sequence) already has an entry (a retry: read it with mpos_store_journal_get). */
int mpos_store_journal_insert(mpos_store *st, struct mpos_store_journal *e,
                              int64_t now) MPOS_MUST_CHECK;

/* Reads the entry of (serial, sequence), or by RRN. MPOS_STORE_NOT_FOUND when none. */
int mpos_store_journal_get(mpos_store *st, const char *serial, int64_t sequence,
                           struct mpos_store_journal *out) MPOS_MUST_CHECK;
int mpos_store_journal_get_rrn(mpos_store *st, const char *rrn,
                               struct mpos_store_journal *out) MPOS_MUST_CHECK;

/* *voided = 1 when an approved void of the transaction with this RRN is in the journal (and
 * was not itself reversed). */
int mpos_store_journal_voided(mpos_store *st, const char *rrn, int *voided) MPOS_MUST_CHECK;
/* The host location of the terminal's latest journal entry that had one (impossible-travel
 * check). MPOS_STORE_NOT_FOUND when none. */
int mpos_store_journal_last_location(mpos_store *st, const char *serial, int64_t *lat_e7,
                                     int64_t *lon_e7, int64_t *loc_time) MPOS_MUST_CHECK;

/* Marks the entry as (possibly) sent upstream: written before the first byte goes out, so a
 * crash after the send still leaves a reversal to make. */
int mpos_store_journal_mark_sent(mpos_store *st, int64_t id, int64_t now) MPOS_MUST_CHECK;

/* Completes a pending entry with its result (one conditional write: state pending -> done).
 * auth_code, arc, iad_hex may be NULL or "". MPOS_STORE_STATE when it was not pending. */
int mpos_store_journal_complete(mpos_store *st, int64_t id, const char *response_code,
                                const char *auth_code, const char *arc, const char *iad_hex,
                                int64_t now) MPOS_MUST_CHECK;

/* Calls cb for every pending entry (the processor's start-up: entries a crash left open). */
int mpos_store_journal_list_pending(mpos_store *st,
                                    int (*cb)(void *cb_ctx, const struct mpos_store_journal *e),
                                    void *cb_ctx) MPOS_MUST_CHECK;

/* Reversal reasons (ISO 8583 DE 39 of the 0400). */
#define MPOS_REVERSAL_REASON_TIMEOUT         "68"
#define MPOS_REVERSAL_REASON_CARD_DECLINED   "06"
#define MPOS_REVERSAL_REASON_TERMINAL_FAILED "22"

struct mpos_store_reversal {
    int64_t id;
    int64_t journal_id;
    char reason[3];
    int64_t stan;                               /* the 0400's own STAN */
    char transmit_time[MPOS_STORE_DE7_LEN + 1]; /* the 0400's DE 7 */
    int done;
    int64_t attempts;
    int64_t created_at, last_attempt_at, done_at;
    struct mpos_store_journal orig; /* the transaction it reverses */
};

/* Queues the reversal of a journal entry (store-and-forward): one row per entry, with its own
 * STAN, and the entry marked reversed, in one transaction. MPOS_STORE_EXISTS when the entry
 * already has one (idempotent: *id_out still gets its id); MPOS_STORE_NOT_FOUND: no entry. */
int mpos_store_reversal_queue(mpos_store *st, int64_t journal_id, const char *reason,
                              const char *transmit_time, int64_t now,
                              int64_t *id_out) MPOS_MUST_CHECK;

/* Calls cb for every reversal not yet acknowledged, oldest first. */
int mpos_store_reversal_list_pending(mpos_store *st,
                                     int (*cb)(void *cb_ctx, const struct mpos_store_reversal *r),
                                     void *cb_ctx) MPOS_MUST_CHECK;

/* Counts one send attempt; marks a reversal acknowledged (an 0410 came). */
int mpos_store_reversal_attempt(mpos_store *st, int64_t id, int64_t now) MPOS_MUST_CHECK;
int mpos_store_reversal_done(mpos_store *st, int64_t id, int64_t now) MPOS_MUST_CHECK;

/* Settlement totals of one terminal of one batch. Approved (response 00) entries only;
 * reversed ones and balance enquiries excluded. */
struct mpos_store_settle_totals {
    int64_t batch;
    char merchant_id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char tid[MPOS_STORE_TID_LEN + 1];
    int64_t sale_count, sale_amount;
    int64_t refund_count, refund_amount;
    int64_t void_count, void_amount;
    int64_t currency; /* of the entries; -1 when they mixed currencies */
};

/* Closes the open batch of merchant_id (every merchant when NULL), in one transaction: each
 * merchant with settled entries gets a new batch number, its completed unsettled entries are
 * assigned to it, and cb is called once per (merchant, terminal) with the totals (in merchant
 * ID and terminal ID order). A merchant with nothing to settle gets no batch. *batches (may be
 * NULL): batches closed. MPOS_STORE_NOT_FOUND: no such merchant. */
int mpos_store_settle(mpos_store *st, const char *merchant_id, int64_t now,
                      int (*cb)(void *cb_ctx, const struct mpos_store_settle_totals *t),
                      void *cb_ctx, int64_t *batches) MPOS_MUST_CHECK;

#endif
