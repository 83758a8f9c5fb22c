/* mpos_store: the versioned schema. Each migration is one numbered SQL step, applied in its
 * own transaction and recorded in schema_version; a database newer than the last step here is
 * refused. A released step is never edited: a change is a new step.
 *
 * Portable SQL (SQLite 3.35+ and PostgreSQL 12+; docs/store.md): types BIGINT and TEXT only
 * (SQLite gives BIGINT integer affinity, 64-bit on both engines); binary values as uppercase
 * hex TEXT, so no BLOB/BYTEA difference; times as BIGINT Unix seconds written by the caller;
 * coordinates as BIGINT microdegrees (exact, no float); no AUTOINCREMENT/SERIAL/IDENTITY:
 * generated IDs come from id_sequences through one conditional UPDATE ... RETURNING;
 * CHECK constraints for enumerations; no partial indexes, no engine-specific functions.
 */
#include <stddef.h>

#include "store_db.h"
#include "store_sql.h"

static const char migration_1[] =
    /* Named counters: merchant IDs, terminal IDs (DE 41), the audit sequence. */
    "CREATE TABLE id_sequences ("
    " name TEXT PRIMARY KEY,"
    " next_value BIGINT NOT NULL CHECK (next_value >= 1));"
    "INSERT INTO id_sequences (name, next_value) VALUES ('merchant', 1), ('tid', 1), ('audit', 1);"

    "CREATE TABLE merchants ("
    " id TEXT PRIMARY KEY," /* ISO 8583 DE 42: [A-Z0-9]{1,15} */
    " name TEXT NOT NULL,"
    " mcc TEXT," /* ISO 18245 */
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL);"

    /* Key blocks only: TR-31 version D under the LMK's key-block protection key. The store
     * refuses anything else; a clear key never reaches this table. */
    "CREATE TABLE keys ("
    " label TEXT PRIMARY KEY,"
    " key_block TEXT NOT NULL,"
    " kcv TEXT NOT NULL,"
    " usage TEXT NOT NULL,"     /* TR-31 key usage from the header: B0, P0, M6, K0 ... */
    " algorithm TEXT NOT NULL," /* TR-31 algorithm: A, T, H, E */
    " created_at BIGINT NOT NULL,"
    " retired_at BIGINT);"

    "CREATE TABLE terminals ("
    " serial TEXT PRIMARY KEY," /* unique device serial, uppercase */
    " merchant_id TEXT REFERENCES merchants (id),"
    " tid TEXT UNIQUE," /* ISO 8583 DE 41, allocated at the first assignment */
    " state TEXT NOT NULL CHECK (state IN ('provisioned', 'active', 'suspended', 'retired')),"
    " scheme TEXT CHECK (scheme IN ('aes-dukpt', 'tdes-dukpt', 'mkwk')),"
    /* T-UNIQ-1: one initial KSN per terminal, enforced by the database too. AES: the
     * initial key ID (BDK ID || derivation ID), 16 hex; TDES: the initial KSN, 20 hex. */
    " initial_ksn TEXT UNIQUE,"
    " tmk_kcv TEXT,"
    " key_label TEXT REFERENCES keys (label),"        /* BDK (DUKPT) or the terminal's TMK */
    " cert_sha256 TEXT,"                              /* device certificate fingerprint */
    " lat_e6 BIGINT, lon_e6 BIGINT, radius_m BIGINT," /* B-MOVE-1 registered location */
    " host_binding TEXT," /* the host device the terminal activated through (B-MOVE-1) */
    /* Anti-replay (B-REPLAY-1): last KSN counter accepted for initial_ksn, last terminal
     * transaction sequence number accepted; moved only by conditional writes. */
    " last_ksn_counter BIGINT,"
    " last_sequence BIGINT,"
    " last_seen_at BIGINT,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " provisioned_at BIGINT,"
    " activated_at BIGINT,"
    " retired_at BIGINT,"
    " CHECK ((lat_e6 IS NULL AND lon_e6 IS NULL AND radius_m IS NULL) OR"
    "  (lat_e6 BETWEEN -90000000 AND 90000000 AND lon_e6 BETWEEN -180000000 AND 180000000"
    "   AND radius_m BETWEEN 1 AND 20000000)),"
    " CHECK (scheme IS NULL OR key_label IS NOT NULL),"
    " CHECK (state <> 'active' OR (merchant_id IS NOT NULL AND scheme IS NOT NULL"
    "  AND cert_sha256 IS NOT NULL)));"
    "CREATE INDEX terminals_merchant ON terminals (merchant_id);"

    /* KSN allocation (T-UNIQ-1): one allocator per BDK; next_device_id moves only forward,
     * by one conditional UPDATE, so a device ID is never handed out twice. */
    "CREATE TABLE ksn_allocators ("
    " scheme TEXT NOT NULL CHECK (scheme IN ('aes-dukpt', 'tdes-dukpt')),"
    " key_set_id TEXT NOT NULL," /* AES: BDK ID, 8 hex; TDES: key set ID, 10 hex */
    " bdk_label TEXT NOT NULL UNIQUE REFERENCES keys (label),"
    " next_device_id BIGINT NOT NULL CHECK (next_device_id >= 0),"
    " max_device_id BIGINT NOT NULL," /* AES 4294967295, TDES 524287 */
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (scheme, key_set_id));"
    "CREATE TABLE ksn_allocations ("
    " scheme TEXT NOT NULL,"
    " key_set_id TEXT NOT NULL,"
    " device_id BIGINT NOT NULL,"
    " initial_ksn TEXT NOT NULL UNIQUE,"
    " terminal_serial TEXT," /* the serial it was allocated for (no FK: allocated first) */
    " allocated_at BIGINT NOT NULL,"
    " PRIMARY KEY (scheme, key_set_id, device_id),"
    " FOREIGN KEY (scheme, key_set_id) REFERENCES ksn_allocators (scheme, key_set_id));"
    "CREATE INDEX ksn_allocations_terminal ON ksn_allocations (terminal_serial);"

    /* Operators of the cashier app (A-OPER-1): Argon2id hashes only. */
    "CREATE TABLE operators ("
    " merchant_id TEXT NOT NULL REFERENCES merchants (id),"
    " username TEXT NOT NULL,"
    " role TEXT NOT NULL CHECK (role IN ('cashier', 'supervisor')),"
    " password_hash TEXT NOT NULL,"
    " failed_attempts BIGINT NOT NULL DEFAULT 0,"
    " locked_until BIGINT,"
    " disabled_at BIGINT,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " password_changed_at BIGINT NOT NULL,"
    " last_login_at BIGINT,"
    " PRIMARY KEY (merchant_id, username));"

    /* One-time activation codes (T-ACTIV-1): the digest, never the code. */
    "CREATE TABLE activation_codes ("
    " code_hash TEXT PRIMARY KEY," /* SHA-256(domain, serial, code), hex */
    " terminal_serial TEXT NOT NULL REFERENCES terminals (serial),"
    " merchant_id TEXT NOT NULL REFERENCES merchants (id),"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL,"
    " used_at BIGINT,"
    " revoked_at BIGINT,"
    " failed_attempts BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX activation_codes_terminal ON activation_codes (terminal_serial);"

    /* Audit trail of fleet changes: gapless sequence, each row's hash covers the previous. */
    "CREATE TABLE audit_log ("
    " seq BIGINT PRIMARY KEY,"
    " created_at BIGINT NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " object TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " row_hash TEXT NOT NULL);";

/* Migration 2: the transaction journal (G-ACCT-4: masked PAN and keyed PAN hash only, never a
 * track, PIN, CVN or expiry), the store-and-forward reversal queue, settlement batches and
 * host sessions (the SHA-256 of the token only). */
static const char migration_2[] =
    "INSERT INTO id_sequences (name, next_value) VALUES ('journal', 1), ('stan', 1), "
    "('rrn', 1), ('reversal', 1), ('batch', 1);"

    "CREATE TABLE journal ("
    " id BIGINT PRIMARY KEY,"
    " serial TEXT NOT NULL REFERENCES terminals (serial),"
    " sequence BIGINT NOT NULL," /* the terminal's sequence number: the idempotency key */
    " merchant_id TEXT NOT NULL,"
    " tid TEXT NOT NULL,"
    " username TEXT,"
    " txn_type BIGINT NOT NULL CHECK (txn_type BETWEEN 1 AND 4),"
    " amount BIGINT NOT NULL,"
    " currency BIGINT NOT NULL,"
    " masked_pan TEXT,"
    " pan_hash TEXT," /* HMAC-SHA-256 under mpos-hsmd's PAN hash key, hex */
    " ksn TEXT NOT NULL,"
    " stan BIGINT NOT NULL,"
    " rrn TEXT NOT NULL UNIQUE,"
    " transmit_time TEXT NOT NULL," /* DE 7 of the upstream request */
    " mti TEXT NOT NULL,"
    " proc_code TEXT NOT NULL,"
    " entry_mode TEXT NOT NULL,"
    " original_rrn TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'done')),"
    " upstream_sent BIGINT NOT NULL DEFAULT 0,"
    " response_code TEXT,"
    " auth_code TEXT,"
    " arc TEXT,"
    " iad TEXT,"
    " lat_e7 BIGINT, lon_e7 BIGINT, accuracy_m BIGINT, loc_time BIGINT,"
    " device_id TEXT,"
    " source_addr TEXT,"
    " alert TEXT,"
    " reversed BIGINT NOT NULL DEFAULT 0,"
    " batch BIGINT,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " UNIQUE (serial, sequence));"
    "CREATE INDEX journal_settle ON journal (merchant_id, batch);"

    /* Reversals: stored before the first send, forwarded until an 0410 acknowledges them. */
    "CREATE TABLE reversals ("
    " id BIGINT PRIMARY KEY,"
    " journal_id BIGINT NOT NULL UNIQUE REFERENCES journal (id),"
    " reason TEXT NOT NULL CHECK (reason IN ('68', '06', '22')),"
    " stan BIGINT NOT NULL,"
    " transmit_time TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'done')),"
    " attempts BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " last_attempt_at BIGINT,"
    " done_at BIGINT);"
    "CREATE INDEX reversals_state ON reversals (state);"

    "CREATE TABLE settlements ("
    " batch BIGINT PRIMARY KEY,"
    " merchant_id TEXT NOT NULL REFERENCES merchants (id),"
    " created_at BIGINT NOT NULL);"

    "CREATE TABLE host_sessions ("
    " token_hash TEXT PRIMARY KEY," /* SHA-256 of the session token, hex */
    " merchant_id TEXT NOT NULL REFERENCES merchants (id),"
    " username TEXT NOT NULL,"
    " role TEXT NOT NULL CHECK (role IN ('cashier', 'supervisor')),"
    " device_id TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL,"
    " revoked_at BIGINT);";

static const char *const migrations[] = {
    NULL, /* version 0: empty database */
    migration_1,
    migration_2,
};

static const char *const migration_names[] = {
    NULL,
    "merchants, terminals, KSN allocation, operators, activation codes, keys, audit",
    "journal, reversals, settlements, host sessions",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == MPOS_STORE_SCHEMA_VERSION + 1,
               "one migration per schema version");

const char *mpos_store_migration_sql(int64_t version)
{
    if (version < 1 || version > MPOS_STORE_SCHEMA_VERSION) {
        return NULL;
    }
    return migrations[version];
}

int mpos_store_schema_version(mpos_store *st, int64_t *version)
{
    int exists = 0;
    int is_null = 0;
    int64_t v = 0;
    if (st == NULL || version == NULL) {
        return MPOS_ERR_ARG;
    }
    *version = 0;
    int rc = st->eng->table_exists(st->conn, "schema_version", &exists);
    if (rc != MPOS_OK || !exists) {
        return rc;
    }
    rc = store_query_int64(st, sql_schema_max, &v, &is_null, "");
    if (rc < 0) {
        return rc;
    }
    *version = (rc == STORE_ROW && !is_null) ? v : 0;
    st->schema_version = *version;
    return MPOS_OK;
}

int mpos_store_migrate(mpos_store *st, int64_t now, int64_t *from, int64_t *to)
{
    int64_t before = 0, current = 0;
    int rc = MPOS_OK;
    if (st == NULL || st->tx_depth != 0) {
        return st == NULL ? MPOS_ERR_ARG : MPOS_STORE_ERR_TX;
    }
    rc = mpos_store_schema_version(st, &before);
    if (rc != MPOS_OK) {
        goto exit;
    }
    current = before;
    for (;;) {
        /* Each step: lock, re-read the version (another process may have migrated), apply. */
        rc = st->eng->begin(st->conn);
        if (rc != MPOS_OK) {
            goto exit;
        }
        rc = st->eng->lock_for_migration(st->conn);
        if (rc == MPOS_OK) {
            rc = st->eng->exec(st->conn, sql_schema_table);
        }
        if (rc == MPOS_OK) {
            rc = mpos_store_schema_version(st, &current);
        }
        if (rc == MPOS_OK && current > MPOS_STORE_SCHEMA_VERSION) {
            rc = MPOS_STORE_ERR_SCHEMA_NEW;
        }
        if (rc != MPOS_OK || current == MPOS_STORE_SCHEMA_VERSION) {
            break;
        }
        int64_t next = current + 1;
        rc = st->eng->exec(st->conn, migrations[next]);
        if (rc == MPOS_OK) {
            rc = store_exec(st, sql_schema_insert, NULL, "iit", next, now, migration_names[next]);
        }
        if (rc != MPOS_OK) {
            break;
        }
        rc = st->eng->commit(st->conn);
        if (rc != MPOS_OK) {
            (void)st->eng->rollback(st->conn);
            goto exit;
        }
        current = next;
    }
    /* Leaving the loop: the transaction is open; nothing to keep from the last one. */
    (void)st->eng->rollback(st->conn);
exit:
    st->schema_version = current;
    if (from != NULL) {
        *from = before;
    }
    if (to != NULL) {
        *to = current;
    }
    return rc;
}
