/* Unit tests: the store (mpos/store.h) on SQLite: migrations, schema version refusal,
 * merchants, terminal state machine, activation codes, KSN allocation (10,000 in one process,
 * and two processes at once), anti-replay, operators, key blocks, transactions, the audit
 * chain, and a scan of the database files for secrets. Each test gets a fresh database in a
 * temporary directory. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fork, waitpid */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "mpos/activation.h"
#include "mpos/crypto.h"
#include "mpos/password.h"
#include "mpos/store.h"
#include "mpos/tr31.h"
#include "mpos/util.h"
#include "testutil.h"

#define NOW 1700000000LL

static const char cert_a[] = "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90";
static const char cert_b[] = "0000000000000000000000000000000000000000000000000000000000000001";

struct fixture {
    char dir[64];
    char path[96];
    mpos_store *st;
    mpos_crypto_ctx cc;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/mpos-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL || mpos_crypto_init(&f->cc) != MPOS_OK) {
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/mpos.db", f->dir);
    if (mpos_store_open(f->path, MPOS_STORE_CREATE, 0, &f->st) != MPOS_OK ||
        mpos_store_migrate(f->st, NOW, NULL, NULL) != MPOS_OK) {
        return -1;
    }
    mpos_store_set_actor(f->st, "test");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[1024];
    const char *keep = getenv("MPOS_TEST_ARTIFACTS");
    mpos_store_close(f->st);
    mpos_crypto_clear(&f->cc);
    /* With MPOS_TEST_ARTIFACTS set (ctest), the databases are kept there for the secret scan
     * (tests/secret_scan.py). */
    if (keep != NULL && keep[0] != '\0' && strchr(keep, '\'') == NULL) {
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp -r '%s' '%s/'", keep, f->dir, keep);
        if (system(cmd) != 0) {
            return -1;
        }
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

/* Runs SQL on the file directly (what an attacker or a careless admin could do). */
static void raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* A TR-31 version D key block of key under a throw-away KBPK (what hsmd would hand out). */
static void make_block(struct fixture *f, const char *header, const uint8_t *key, size_t key_len,
                       char *block, size_t cap)
{
    uint8_t kbpk[32];
    size_t len = 0;
    memset(kbpk, 0x5A, sizeof(kbpk));
    assert_int_equal(mpos_tr31_wrap(&f->cc, kbpk, sizeof(kbpk), header, strlen(header), key,
                                    key_len, NULL, 0, block, cap, &len),
                     MPOS_OK);
}

static void put_bdk(struct fixture *f, const char *label)
{
    uint8_t key[16];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    memset(key, 0x11, sizeof(key));
    make_block(f, "D0000B0AX00N0000", key, sizeof(key), block, sizeof(block));
    assert_int_equal(mpos_store_key_put(f->st, label, block, "ABCDEF1234", NOW), MPOS_OK);
}

/* A terminal with keys, a merchant and a fresh code, not yet activated. */
static void provisioned_terminal(struct fixture *f, const char *serial, char *code)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1];
    struct mpos_store_merchant m;
    if (mpos_store_merchant_get(f->st, "SHOP1", &m) == MPOS_STORE_NOT_FOUND) {
        assert_int_equal(mpos_store_merchant_add(f->st, "SHOP1", "Shop one", NULL, NOW, mid), 0);
        put_bdk(f, "bdk-1");
        assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_AES_DUKPT, "00A1B2C3",
                                                         "bdk-1", 1, NOW),
                         MPOS_OK);
    }
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, NULL, "bdk-1", serial,
                                             NOW, ksn, NULL),
                     MPOS_OK);
    struct mpos_store_terminal_keys k = {MPOS_SCHEME_AES_DUKPT, ksn, NULL, "bdk-1", cert_a};
    assert_int_equal(mpos_store_terminal_register_keys(f->st, serial, &k, NOW), MPOS_OK);
    assert_int_equal(mpos_activation_code_generate(code), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, serial, "SHOP1", NULL, 0, code, NOW + 3600, NOW),
        MPOS_OK);
}

/* ---- schema ---------------------------------------------------------------------------- */

static void test_migrate_from_empty_and_idempotent(void **state)
{
    struct fixture *f = *state;
    char path[128];
    mpos_store *st = NULL;
    int64_t from = -1, to = -1, v = -1;
    struct stat sb;
    snprintf(path, sizeof(path), "%s/fresh.db", f->dir);
    assert_int_equal(mpos_store_open(path, 0, 0, &st), MPOS_STORE_ERR_NO_DB);
    assert_null(st);
    assert_int_equal(mpos_store_open(path, MPOS_STORE_CREATE, 0, &st), MPOS_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(mpos_store_schema_version(st, &v), MPOS_OK);
    assert_int_equal(v, 0);
    /* Before migrating, operations refuse. */
    char mid[16];
    assert_int_equal(mpos_store_merchant_add(st, NULL, "x", NULL, NOW, mid),
                     MPOS_STORE_ERR_SCHEMA_OLD);
    assert_int_equal(mpos_store_migrate(st, NOW, &from, &to), MPOS_OK);
    assert_int_equal(from, 0);
    assert_int_equal(to, MPOS_STORE_SCHEMA_VERSION);
    assert_int_equal(mpos_store_migrate(st, NOW, &from, &to), MPOS_OK);
    assert_int_equal(from, MPOS_STORE_SCHEMA_VERSION);
    assert_int_equal(to, MPOS_STORE_SCHEMA_VERSION);
    mpos_store_close(st);
    /* Reopened: current, one row per migration, WAL persistent in the file. */
    assert_int_equal(mpos_store_open(path, 0, 0, &st), MPOS_OK);
    assert_int_equal(mpos_store_schema_version(st, &v), MPOS_OK);
    assert_int_equal(v, MPOS_STORE_SCHEMA_VERSION);
    assert_int_equal(mpos_store_merchant_add(st, NULL, "x", NULL, NOW, mid), MPOS_OK);
    mpos_store_close(st);
    assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM schema_version"),
                     MPOS_STORE_SCHEMA_VERSION);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_non_null(mpos_store_migration_sql(1));
    assert_null(mpos_store_migration_sql(MPOS_STORE_SCHEMA_VERSION + 1));
    assert_non_null(mpos_store_statement_sql(0, NULL));
}

static void test_future_schema_refused(void **state)
{
    struct fixture *f = *state;
    mpos_store *st = NULL;
    raw_sql(f->path, "INSERT INTO schema_version (version, applied_at, description) "
                     "VALUES (99, 1, 'from the future')");
    assert_int_equal(mpos_store_open(f->path, 0, 0, &st), MPOS_STORE_ERR_SCHEMA_NEW);
    assert_null(st);
    /* The handle opened before the upgrade refuses to migrate it back. */
    int64_t from = 0, to = 0;
    assert_int_equal(mpos_store_migrate(f->st, NOW, &from, &to), MPOS_STORE_ERR_SCHEMA_NEW);
    assert_int_equal(to, 99);
    char mid[16];
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "x", NULL, NOW, mid),
                     MPOS_STORE_ERR_SCHEMA_NEW);
    assert_int_equal(mpos_store_open("postgresql://db/mpos", 0, 0, &st), MPOS_ERR_UNSUPPORTED);
}

static void test_concurrent_migration(void **state)
{
    struct fixture *f = *state;
    char path[128];
    pid_t pids[8];
    snprintf(path, sizeof(path), "%s/race.db", f->dir);
    for (int i = 0; i < 8; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            mpos_store *st = NULL;
            int rc = mpos_store_open(path, MPOS_STORE_CREATE, 10000, &st);
            if (rc == MPOS_OK) {
                rc = mpos_store_migrate(st, NOW, NULL, NULL);
            }
            if (rc != MPOS_OK) {
                fprintf(stderr, "migrating process %d: %s (%s)\n", i, mpos_store_strerror(rc),
                        mpos_store_errmsg(st));
            }
            mpos_store_close(st);
            _exit(rc == MPOS_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < 8; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM schema_version"),
                     MPOS_STORE_SCHEMA_VERSION);
}

/* ---- merchants ------------------------------------------------------------------------- */

static int count_cb(void *ctx, const struct mpos_store_merchant *m)
{
    (void)m;
    (*(int *)ctx)++;
    return 0;
}

static void test_merchants(void **state)
{
    struct fixture *f = *state;
    char id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    struct mpos_store_merchant m;
    int n = 0;
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "Café Zürich", "5812", NOW, id), 0);
    assert_string_equal(id, "000000000000001");
    /* A hand-made ID in the generated range is skipped by the generator. */
    assert_int_equal(mpos_store_merchant_add(f->st, "000000000000002", "B", NULL, NOW, id), 0);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "C", NULL, NOW, id), 0);
    assert_string_equal(id, "000000000000003");
    assert_int_equal(mpos_store_merchant_add(f->st, "shop-x", "D", NULL, NOW, id), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, "shopx", "D", NULL, NOW, id), MPOS_OK);
    assert_string_equal(id, "SHOPX");
    assert_int_equal(mpos_store_merchant_add(f->st, "SHOPX", "E", NULL, NOW, id),
                     MPOS_STORE_EXISTS);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "", NULL, NOW, id), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "   ", NULL, NOW, id), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "a\nb", NULL, NOW, id), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "\xC3\x28", NULL, NOW, id),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, NULL, "x", "58", NOW, id), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_add(f->st, "1234567890123456", "x", NULL, NOW, id),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_merchant_get(f->st, "000000000000001", &m), MPOS_OK);
    assert_string_equal(m.name, "Café Zürich");
    assert_string_equal(m.mcc, "5812");
    assert_int_equal(mpos_store_merchant_get(f->st, "NOPE", &m), MPOS_STORE_NOT_FOUND);
    assert_int_equal(mpos_store_merchant_list(f->st, count_cb, &n), MPOS_OK);
    assert_int_equal(n, 4);
}

/* ---- terminals ------------------------------------------------------------------------- */

static void expect_state(struct fixture *f, const char *serial, enum mpos_terminal_state s)
{
    struct mpos_store_terminal t;
    assert_int_equal(mpos_store_terminal_get(f->st, serial, &t), MPOS_OK);
    assert_int_equal(t.state, s);
}

static void test_terminal_state_machine(void **state)
{
    struct fixture *f = *state;
    char code[MPOS_ACTIVATION_CODE_LEN + 1];
    char id[16];
    enum mpos_terminal_state to = 0;
    struct mpos_store_terminal t;
    struct mpos_store_location loc = {1, 48856614, 2352222, 250};
    assert_int_equal(mpos_store_merchant_add(f->st, "SHOP2", "Shop two", NULL, NOW, id), 0);
    assert_int_equal(mpos_activation_code_generate(code), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-100", "SHOP2", &loc, 0, code, NOW + 60, NOW), MPOS_OK);
    /* Serials are exact: another case is another device; '.' and '_' are not serial chars. */
    assert_int_equal(mpos_store_terminal_get(f->st, "t-100", &t), MPOS_STORE_NOT_FOUND);
    assert_int_equal(mpos_store_terminal_get(f->st, "T_100", &t), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-100", &t), MPOS_OK);
    assert_string_equal(t.serial, "T-100");
    assert_string_equal(t.tid, "00000001");
    assert_int_equal(t.state, MPOS_TERMINAL_PROVISIONED);
    assert_int_equal(t.location.lat_e6, 48856614);
    assert_int_equal(t.scheme, MPOS_SCHEME_NONE);
    /* Unknown merchant, bad location, expiry in the past. */
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-101", "NOPE", NULL, 0, code, NOW + 60, NOW),
        MPOS_STORE_NOT_FOUND);
    struct mpos_store_location bad = {1, 91000000, 0, 10};
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-101", "SHOP2", &bad, 0, code, NOW + 60, NOW),
        MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_terminal_assign(f->st, "T-101", "SHOP2", NULL, 0, code, NOW, NOW),
                     MPOS_ERR_FORMAT);
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-404", MPOS_TERMINAL_SUSPEND, NOW, &to),
        MPOS_STORE_NOT_FOUND);
    /* provisioned -> suspended -> (resume) provisioned, never activated. */
    assert_int_equal(mpos_store_terminal_transition(f->st, "T-100", MPOS_TERMINAL_RESUME, NOW, &to),
                     MPOS_STORE_STATE);
    assert_int_equal(to, MPOS_TERMINAL_PROVISIONED);
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-100", MPOS_TERMINAL_SUSPEND, NOW, &to), MPOS_OK);
    assert_int_equal(to, MPOS_TERMINAL_SUSPENDED);
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-100", MPOS_TERMINAL_SUSPEND, NOW, &to),
        MPOS_STORE_STATE);
    /* A suspended terminal is not re-assigned by accident. */
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-100", "SHOP2", NULL, 0, code, NOW + 60, NOW),
        MPOS_STORE_STATE);
    assert_int_equal(mpos_store_terminal_transition(f->st, "T-100", MPOS_TERMINAL_RESUME, NOW, &to),
                     MPOS_OK);
    assert_int_equal(to, MPOS_TERMINAL_PROVISIONED);
    /* Activated: suspend and resume return to active; assign needs reassign. */
    char code2[MPOS_ACTIVATION_CODE_LEN + 1];
    provisioned_terminal(f, "T-200", code2);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-200", code2, cert_a, NULL, NOW + 1),
                     MPOS_OK);
    expect_state(f, "T-200", MPOS_TERMINAL_ACTIVE);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-200", "SHOP1", NULL, 0, code, NOW + 60, NOW),
        MPOS_STORE_STATE);
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-200", MPOS_TERMINAL_SUSPEND, NOW, &to), MPOS_OK);
    assert_int_equal(mpos_store_terminal_transition(f->st, "T-200", MPOS_TERMINAL_RESUME, NOW, &to),
                     MPOS_OK);
    assert_int_equal(to, MPOS_TERMINAL_ACTIVE);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-200", "SHOP2", NULL, 1, code, NOW + 60, NOW), MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-200", &t), MPOS_OK);
    assert_int_equal(t.state, MPOS_TERMINAL_PROVISIONED);
    assert_int_equal(t.activated_at, 0);
    assert_string_equal(t.merchant_id, "SHOP2");
    assert_string_equal(t.tid, "00000002"); /* the terminal ID stays with the device */
    /* Retire: from any state; final. */
    assert_int_equal(mpos_store_terminal_transition(f->st, "T-200", MPOS_TERMINAL_RETIRE, NOW, &to),
                     MPOS_OK);
    assert_int_equal(to, MPOS_TERMINAL_RETIRED);
    for (int a = MPOS_TERMINAL_SUSPEND; a <= MPOS_TERMINAL_RETIRE; a++) {
        assert_int_equal(
            mpos_store_terminal_transition(f->st, "T-200", (enum mpos_terminal_action)a, NOW, &to),
            MPOS_STORE_STATE);
        assert_int_equal(to, MPOS_TERMINAL_RETIRED);
    }
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-200", "SHOP2", NULL, 1, code, NOW + 60, NOW),
        MPOS_STORE_STATE);
    struct mpos_store_terminal_keys k = {MPOS_SCHEME_AES_DUKPT, "00A1B2C300000099", NULL, "bdk-1",
                                         cert_a};
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-200", &k, NOW), MPOS_STORE_STATE);
    /* The code issued before retirement is revoked. */
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-200", code, cert_a, NULL, NOW),
                     MPOS_STORE_STATE);
    assert_int_equal(
        raw_int(f->path, "SELECT COUNT(*) FROM activation_codes WHERE terminal_serial = 'T-200' "
                         "AND used_at IS NULL AND revoked_at IS NULL"),
        0);
    expect_state(f, "T-200", MPOS_TERMINAL_RETIRED);
}

/* ---- activation codes ------------------------------------------------------------------ */

static void test_activation_codes(void **state)
{
    struct fixture *f = *state;
    char c1[MPOS_ACTIVATION_CODE_LEN + 1], c2[MPOS_ACTIVATION_CODE_LEN + 1];
    char c3[MPOS_ACTIVATION_CODE_LEN + 1], canon[17];
    char hash1[65], hash2[65];
    struct mpos_store_terminal t;
    /* Format: 4 groups of 4 Crockford base32 characters; 80 bits; normalisation. */
    assert_int_equal(mpos_activation_code_generate(c1), MPOS_OK);
    assert_int_equal(strlen(c1), 19);
    assert_true(c1[4] == '-' && c1[9] == '-' && c1[14] == '-');
    assert_int_equal(mpos_activation_code_normalize("7qk2-m9xd-r4tb-h1cw", canon), MPOS_OK);
    assert_string_equal(canon, "7QK2M9XDR4TBH1CW");
    assert_int_equal(mpos_activation_code_normalize("7QK2 M9XD R4TB HLCW", canon), MPOS_OK);
    assert_string_equal(canon, "7QK2M9XDR4TBH1CW");
    assert_int_equal(mpos_activation_code_normalize("7QK2M9XDR4TBH1CU", canon), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_activation_code_normalize("7QK2M9XDR4TBH1C", canon), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_activation_code_normalize("7QK2M9XDR4TBH1CWW", canon), MPOS_ERR_FORMAT);
    /* The hash binds the serial. */
    assert_int_equal(mpos_activation_code_hash("T-1", c1, hash1), MPOS_OK);
    assert_int_equal(mpos_activation_code_hash("T-2", c1, hash2), MPOS_OK);
    assert_string_not_equal(hash1, hash2);
    /* 1000 codes: all different, every character from the alphabet. */
    {
        static char seen[1000][20];
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(mpos_activation_code_generate(seen[i]), MPOS_OK);
            assert_int_equal(mpos_activation_code_normalize(seen[i], canon), MPOS_OK);
            for (int j = 0; j < i; j++) {
                assert_string_not_equal(seen[i], seen[j]);
            }
        }
    }

    provisioned_terminal(f, "T-300", c1);
    /* Wrong code, wrong certificate, expired, then the right one; then used. */
    assert_int_equal(mpos_activation_code_generate(c2), MPOS_OK);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c2, cert_a, NULL, NOW),
                     MPOS_STORE_DENIED);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", "not a code", cert_a, NULL, NOW),
                     MPOS_STORE_DENIED);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c1, cert_b, NULL, NOW),
                     MPOS_STORE_DENIED);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c1, cert_a, NULL, NOW + 3600),
                     MPOS_STORE_EXPIRED);
    expect_state(f, "T-300", MPOS_TERMINAL_PROVISIONED);
    /* A fresh code revokes the expired one. */
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-300", "SHOP1", NULL, 0, c2, NOW + 7200, NOW + 3600),
        MPOS_OK);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c1, cert_a, NULL, NOW + 3601),
                     MPOS_STORE_DENIED);
    /* Typed in lowercase, without dashes. */
    char typed[20];
    size_t j = 0;
    for (size_t i = 0; c2[i] != '\0'; i++) {
        if (c2[i] != '-') {
            typed[j++] = (c2[i] >= 'A' && c2[i] <= 'Z') ? (char)(c2[i] - 'A' + 'a') : c2[i];
        }
    }
    typed[j] = '\0';
    const char host[] = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", typed, cert_a, host, NOW + 3602),
                     MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-300", &t), MPOS_OK);
    assert_int_equal(t.state, MPOS_TERMINAL_ACTIVE);
    assert_int_equal(t.activated_at, NOW + 3602);
    assert_string_equal(t.host_binding, host);
    /* Single use: not again, not even after the terminal is made provisionable again. */
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c2, cert_a, NULL, NOW + 3603),
                     MPOS_STORE_STATE);
    assert_int_equal(mpos_store_terminal_assign(f->st, "T-300", "SHOP1", NULL, 1, "garbage",
                                                NOW + 7200, NOW + 3604),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_activation_code_generate(c3), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-300", "SHOP1", NULL, 1, c3, NOW + 7200, NOW + 3604),
        MPOS_OK);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c2, cert_a, NULL, NOW + 3605),
                     MPOS_STORE_DENIED);
    /* Brute force: the code is burnt after 5 wrong ones; then even the right one fails. */
    int failures_before = (int)raw_int(
        f->path, "SELECT failed_attempts FROM activation_codes WHERE used_at IS NULL AND "
                 "revoked_at IS NULL AND terminal_serial = 'T-300'");
    assert_int_equal(failures_before, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c1, cert_a, NULL, NOW + 3606),
                         MPOS_STORE_DENIED);
    }
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-300", c3, cert_a, NULL, NOW + 3607),
                     MPOS_STORE_USED);
    expect_state(f, "T-300", MPOS_TERMINAL_PROVISIONED);
    /* Activation needs keys and a certificate: a bare assigned terminal cannot activate. */
    assert_int_equal(mpos_activation_code_generate(c1), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-301", "SHOP1", NULL, 0, c1, NOW + 60, NOW), MPOS_OK);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-301", c1, cert_a, NULL, NOW),
                     MPOS_STORE_STATE);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-999", c1, cert_a, NULL, NOW),
                     MPOS_STORE_NOT_FOUND);
}

/* ---- KSN allocation -------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_ksn_allocation_unique(void **state)
{
    struct fixture *f = *state;
    enum { N = 10000 };
    char(*ksns)[MPOS_STORE_KSN_HEX_LEN + 1] = calloc(N, sizeof(*ksns));
    int64_t dev = 0;
    assert_non_null(ksns);
    put_bdk(f, "bdk-aes");
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_AES_DUKPT, "0badcafe",
                                                     "bdk-aes", 1, NOW),
                     MPOS_OK);
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_AES_DUKPT, "0BADCAFE",
                                                     "bdk-aes", 1, NOW),
                     MPOS_STORE_EXISTS);
    for (int i = 0; i < N; i++) {
        assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, "0BADCAFE", NULL,
                                                 NULL, NOW, ksns[i], &dev),
                         MPOS_OK);
        assert_int_equal(dev, i + 1);
    }
    assert_string_equal(ksns[0], "0BADCAFE00000001");
    assert_string_equal(ksns[N - 1], "0BADCAFE00002710");
    qsort(ksns, N, sizeof(*ksns), cmp_str);
    for (int i = 1; i < N; i++) {
        assert_string_not_equal(ksns[i - 1], ksns[i]);
    }
    assert_int_equal(raw_int(f->path, "SELECT COUNT(DISTINCT initial_ksn) FROM ksn_allocations"),
                     N);
    free(ksns);
    /* By the BDK's label; unknown allocator; wrong scheme; a key that is not a BDK. */
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1];
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, NULL, "bdk-aes", "T-1",
                                             NOW, ksn, &dev),
                     MPOS_OK);
    assert_int_equal(dev, N + 1);
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, "00000000", NULL, NULL,
                                             NOW, ksn, &dev),
                     MPOS_STORE_NOT_FOUND);
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_TDES_DUKPT, NULL, "bdk-aes", NULL,
                                             NOW, ksn, &dev),
                     MPOS_STORE_NOT_FOUND);
    uint8_t key[16] = {0};
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    make_block(f, "D0000P0AE00N0000", key, sizeof(key), block, sizeof(block));
    assert_int_equal(mpos_store_key_put(f->st, "pin-key", block, "00112233", NOW), MPOS_OK);
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_AES_DUKPT, "11111111",
                                                     "pin-key", 1, NOW),
                     MPOS_ERR_USAGE);
    /* TDES: key set ID || 19-bit device ID || 21 zero counter bits; exhaustion. */
    put_bdk(f, "bdk-tdes");
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_TDES_DUKPT, "FFFF987654",
                                                     "bdk-tdes", 524286, NOW),
                     MPOS_OK);
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_TDES_DUKPT, "FFFF987654", NULL,
                                             NULL, NOW, ksn, &dev),
                     MPOS_OK);
    assert_string_equal(ksn, "FFFF987654FFFFC00000"); /* device 0x7FFFE */
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_TDES_DUKPT, NULL, "bdk-tdes", NULL,
                                             NOW, ksn, &dev),
                     MPOS_OK);
    assert_string_equal(ksn, "FFFF987654FFFFE00000");
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_TDES_DUKPT, NULL, "bdk-tdes", NULL,
                                             NOW, ksn, &dev),
                     MPOS_STORE_EXHAUSTED);
    assert_string_equal(ksn, "");
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_TDES_DUKPT, "FFFF98765",
                                                     "bdk-tdes", 1, NOW),
                     MPOS_ERR_FORMAT);
}

/* Two processes, each with its own connection, allocate at the same time. */
static void test_ksn_allocation_two_processes(void **state)
{
    struct fixture *f = *state;
    enum { PER_CHILD = 2000 / 1 };
    unsigned per = PER_CHILD / tu_scale();
    pid_t pids[2];
    put_bdk(f, "bdk-par");
    assert_int_equal(mpos_store_ksn_allocator_create(f->st, MPOS_SCHEME_AES_DUKPT, "12345678",
                                                     "bdk-par", 1, NOW),
                     MPOS_OK);
    for (int c = 0; c < 2; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            mpos_store *st = NULL;
            char ksn[MPOS_STORE_KSN_HEX_LEN + 1];
            int rc = mpos_store_open(f->path, 0, 30000, &st);
            for (unsigned i = 0; rc == MPOS_OK && i < per; i++) {
                rc = mpos_store_ksn_allocate(st, MPOS_SCHEME_AES_DUKPT, "12345678", NULL, NULL, NOW,
                                             ksn, NULL);
            }
            if (rc != MPOS_OK) {
                fprintf(stderr, "child %d: %s (%s)\n", c, mpos_store_strerror(rc),
                        st != NULL ? mpos_store_errmsg(st) : "-");
            }
            mpos_store_close(st);
            _exit(rc == MPOS_OK ? 0 : 1);
        }
    }
    for (int c = 0; c < 2; c++) {
        int status = 0;
        assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    int64_t total = 2 * (int64_t)per;
    assert_int_equal(raw_int(f->path, "SELECT COUNT(*) FROM ksn_allocations WHERE key_set_id = "
                                      "'12345678'"),
                     total);
    assert_int_equal(raw_int(f->path, "SELECT COUNT(DISTINCT initial_ksn) FROM ksn_allocations "
                                      "WHERE key_set_id = '12345678'"),
                     total);
    /* No gap and no repeat: device IDs are exactly 1 .. total. */
    assert_int_equal(raw_int(f->path, "SELECT MIN(device_id) FROM ksn_allocations WHERE "
                                      "key_set_id = '12345678'"),
                     1);
    assert_int_equal(raw_int(f->path, "SELECT MAX(device_id) FROM ksn_allocations WHERE "
                                      "key_set_id = '12345678'"),
                     total);
    assert_int_equal(raw_int(f->path, "SELECT next_device_id FROM ksn_allocators WHERE "
                                      "key_set_id = '12345678'"),
                     total + 1);
}

static void test_register_keys_and_replay(void **state)
{
    struct fixture *f = *state;
    char code[MPOS_ACTIVATION_CODE_LEN + 1];
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1];
    struct mpos_store_terminal t;
    provisioned_terminal(f, "T-400", code);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-400", &t), MPOS_OK);
    assert_int_equal(t.scheme, MPOS_SCHEME_AES_DUKPT);
    assert_string_equal(t.initial_ksn, "00A1B2C300000001");
    assert_int_equal(t.has_ksn_counter, 0);
    /* Not active yet: no counter accepted. */
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", t.initial_ksn, 1, NOW),
                     MPOS_STORE_STATE);
    assert_int_equal(mpos_store_activation_redeem(f->st, "T-400", code, cert_a, NULL, NOW),
                     MPOS_OK);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", t.initial_ksn, 1, NOW), MPOS_OK);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", t.initial_ksn, 1, NOW),
                     MPOS_STORE_REPLAY);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", t.initial_ksn, 0, NOW),
                     MPOS_STORE_REPLAY);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", "00a1b2c300000001", 9, NOW), MPOS_OK);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", t.initial_ksn, 8, NOW),
                     MPOS_STORE_REPLAY);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-400", "00A1B2C300000002", 10, NOW),
                     MPOS_STORE_STATE);
    assert_int_equal(mpos_store_ksn_accept(f->st, "T-404", t.initial_ksn, 10, NOW),
                     MPOS_STORE_NOT_FOUND);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-400", &t), MPOS_OK);
    assert_int_equal(t.last_ksn_counter, 9);
    /* An active terminal is not re-keyed; a KSN belongs to one terminal only (T-UNIQ-1). */
    struct mpos_store_terminal_keys k = {MPOS_SCHEME_AES_DUKPT, t.initial_ksn, NULL, "bdk-1",
                                         cert_a};
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-400", &k, NOW), MPOS_STORE_STATE);
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-401", &k, NOW), MPOS_STORE_STATE);
    k.initial_ksn = "00A1B2C3000000FF"; /* never allocated */
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-401", &k, NOW),
                     MPOS_STORE_NOT_FOUND);
    /* Allocated for another serial. */
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, NULL, "bdk-1", "T-402",
                                             NOW, ksn, NULL),
                     MPOS_OK);
    k.initial_ksn = ksn;
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-401", &k, NOW), MPOS_STORE_STATE);
    /* Re-keying a suspended terminal resets the counter. */
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-400", MPOS_TERMINAL_SUSPEND, NOW, NULL), MPOS_OK);
    assert_int_equal(mpos_store_ksn_allocate(f->st, MPOS_SCHEME_AES_DUKPT, NULL, "bdk-1", "T-400",
                                             NOW, ksn, NULL),
                     MPOS_OK);
    k.initial_ksn = ksn;
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-400", &k, NOW), MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-400", &t), MPOS_OK);
    assert_int_equal(t.has_ksn_counter, 0);
    assert_string_equal(t.initial_ksn, ksn);
    assert_int_equal(t.activated_at, 0); /* new credentials: activate again */
    enum mpos_terminal_state to = 0;
    assert_int_equal(mpos_store_terminal_transition(f->st, "T-400", MPOS_TERMINAL_RESUME, NOW, &to),
                     MPOS_OK);
    assert_int_equal(to, MPOS_TERMINAL_PROVISIONED);
    /* Master/working keys: a K0 TMK, its check value; a BDK is refused as a TMK. */
    uint8_t tmk[16];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    memset(tmk, 0x22, sizeof(tmk));
    make_block(f, "D0000K0TB00N0000", tmk, sizeof(tmk), block, sizeof(block));
    assert_int_equal(mpos_store_key_put(f->st, "tmk:t-500", block, "1A2B3C", NOW), MPOS_OK);
    struct mpos_store_terminal_keys m = {MPOS_SCHEME_MKWK, NULL, "1a2b3c", "tmk:t-500", cert_b};
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-500", &m, NOW), MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(f->st, "T-500", &t), MPOS_OK);
    assert_string_equal(t.tmk_kcv, "1A2B3C");
    assert_string_equal(t.initial_ksn, "");
    m.key_label = "bdk-1";
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-501", &m, NOW), MPOS_ERR_USAGE);
    m.key_label = "tmk:t-500";
    m.tmk_kcv = "XYZ";
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-501", &m, NOW), MPOS_ERR_FORMAT);
    /* TDES initial KSN with counter bits set is refused. */
    struct mpos_store_terminal_keys td = {MPOS_SCHEME_TDES_DUKPT, "FFFF9876543210E00001", NULL,
                                          "bdk-1", cert_a};
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-502", &td, NOW), MPOS_ERR_FORMAT);
    td.initial_ksn = "FFFF9876543210F00000";
    assert_int_equal(mpos_store_terminal_register_keys(f->st, "T-502", &td, NOW), MPOS_ERR_FORMAT);
}

/* ---- operators ------------------------------------------------------------------------- */

static void test_operators(void **state)
{
    struct fixture *f = *state;
    char id[16];
    int reason = 0;
    enum mpos_operator_role role = 0;
    assert_int_equal(mpos_store_merchant_add(f->st, "SHOP3", "Shop three", NULL, NOW, id), 0);
    static const struct {
        const char *pw;
        int reason;
    } weak[] = {
        {"Short1!", MPOS_PASSWORD_TOO_SHORT},
        {"alllowercaseletters", MPOS_PASSWORD_ONE_CLASS},
        {"123456789012345", MPOS_PASSWORD_ONE_CLASS},
        {"Aaaaaaaaaaaaaaa", MPOS_PASSWORD_REPETITIVE},
        {"my-Alice-password-1", MPOS_PASSWORD_HAS_USERNAME},
        {"tab\there-Password1", MPOS_PASSWORD_BAD_CHARS},
    };
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
        assert_int_equal(mpos_store_operator_add(f->st, "SHOP3", "Alice", MPOS_ROLE_CASHIER,
                                                 weak[i].pw, NOW, &reason),
                         MPOS_STORE_WEAK_PASSWORD);
        assert_int_equal(reason, weak[i].reason);
        assert_non_null(strstr(mpos_password_policy_message(reason), "password"));
    }
    assert_int_equal(raw_int(f->path, "SELECT COUNT(*) FROM operators"), 0);
    const char good[] = "correct horse 7 battery";
    assert_int_equal(
        mpos_store_operator_add(f->st, "SHOP3", "Alice", MPOS_ROLE_SUPERVISOR, good, NOW, &reason),
        MPOS_OK);
    assert_int_equal(
        mpos_store_operator_add(f->st, "shop3", "alice", MPOS_ROLE_CASHIER, good, NOW, &reason),
        MPOS_STORE_EXISTS);
    assert_int_equal(
        mpos_store_operator_add(f->st, "SHOP4", "bob", MPOS_ROLE_CASHIER, good, NOW, &reason),
        MPOS_STORE_NOT_FOUND);
    assert_int_equal(
        mpos_store_operator_add(f->st, "SHOP3", "b", MPOS_ROLE_CASHIER, good, NOW, &reason),
        MPOS_ERR_FORMAT);
    assert_int_equal(raw_int(f->path, "SELECT COUNT(*) FROM operators WHERE password_hash LIKE "
                                      "'$argon2id$v=19$m=65536,t=3,p=1$%'"),
                     1);
    /* Login: right, wrong, unknown; lock-out after 5 failures; unlocked after the period. */
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "ALICE", good, NOW, &role), 0);
    assert_int_equal(role, MPOS_ROLE_SUPERVISOR);
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "alice", "wrong", NOW, &role),
                     MPOS_STORE_DENIED);
    assert_int_equal(role, 0);
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "nobody", good, NOW, &role),
                     MPOS_STORE_DENIED);
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "x", good, NOW, &role),
                     MPOS_STORE_DENIED);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "alice", "wrong", NOW, &role),
                         MPOS_STORE_DENIED);
    }
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "alice", good, NOW + 1, &role),
                     MPOS_STORE_LOCKED);
    assert_int_equal(mpos_store_operator_verify(f->st, "SHOP3", "alice", good,
                                                NOW + MPOS_STORE_LOCKOUT_SECONDS + 1, &role),
                     MPOS_OK);
    assert_int_equal(raw_int(f->path, "SELECT failed_attempts FROM operators"), 0);
}

/* ---- key blocks ------------------------------------------------------------------------ */

static void test_keys_blocks_only(void **state)
{
    struct fixture *f = *state;
    uint8_t key[16];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    struct mpos_store_key k;
    memset(key, 0x33, sizeof(key));
    make_block(f, "D0000M6AC00N0000", key, sizeof(key), block, sizeof(block));
    assert_int_equal(mpos_store_key_put(f->st, "mac-1", block, "0A0B0C0D0E", NOW), MPOS_OK);
    assert_int_equal(mpos_store_key_put(f->st, "mac-1", block, "0A0B0C0D0E", NOW),
                     MPOS_STORE_EXISTS);
    assert_int_equal(mpos_store_key_get(f->st, "mac-1", &k), MPOS_OK);
    assert_string_equal(k.usage, "M6");
    assert_int_equal(k.algorithm, 'A');
    assert_string_equal(k.key_block, block);
    /* A clear key in hex, a version B block, a damaged block, a bad label or check value. */
    assert_int_equal(
        mpos_store_key_put(f->st, "clear", "33333333333333333333333333333333", "0A0B0C", NOW),
        MPOS_ERR_FORMAT);
    uint8_t kbpk_b[16];
    size_t len = 0;
    char block_b[MPOS_TR31_MAX_BLOCK_LEN + 1];
    memset(kbpk_b, 0x44, sizeof(kbpk_b));
    assert_int_equal(mpos_tr31_wrap(&f->cc, kbpk_b, sizeof(kbpk_b), "B0000M3TC00N0000", 16, key,
                                    sizeof(key), NULL, 0, block_b, sizeof(block_b), &len),
                     MPOS_OK);
    assert_int_equal(mpos_store_key_put(f->st, "b-block", block_b, "0A0B0C", NOW), MPOS_ERR_FORMAT);
    char damaged[sizeof(block)];
    memcpy(damaged, block, sizeof(block));
    damaged[strlen(damaged) - 1] = 'g';
    assert_int_equal(mpos_store_key_put(f->st, "damaged", damaged, "0A0B0C", NOW), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_key_put(f->st, "Upper", block, "0A0B0C", NOW), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_key_put(f->st, "mac-2", block, "0a0b0c", NOW), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_key_put(f->st, "mac-2", block, "0A0", NOW), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_store_key_get(f->st, "nope", &k), MPOS_STORE_NOT_FOUND);
}

/* ---- transactions and audit ------------------------------------------------------------ */

static void test_transactions(void **state)
{
    struct fixture *f = *state;
    char id[16];
    struct mpos_store_merchant m;
    assert_int_equal(mpos_store_commit(f->st), MPOS_STORE_ERR_TX);
    assert_int_equal(mpos_store_begin(f->st), MPOS_OK);
    assert_int_equal(mpos_store_begin(f->st), MPOS_STORE_ERR_TX);
    assert_int_equal(mpos_store_merchant_add(f->st, "TXA", "a", NULL, NOW, id), MPOS_OK);
    assert_int_equal(mpos_store_merchant_add(f->st, "TXA", "a", NULL, NOW, id), MPOS_STORE_EXISTS);
    /* The failed operation doomed the transaction: nothing of it stays. */
    assert_int_equal(mpos_store_merchant_add(f->st, "TXB", "b", NULL, NOW, id), MPOS_STORE_ERR_TX);
    assert_int_equal(mpos_store_commit(f->st), MPOS_STORE_ERR_TX);
    assert_int_equal(mpos_store_merchant_get(f->st, "TXA", &m), MPOS_STORE_NOT_FOUND);
    assert_int_equal(mpos_store_begin(f->st), MPOS_OK);
    assert_int_equal(mpos_store_merchant_add(f->st, "TXC", "c", NULL, NOW, id), MPOS_OK);
    assert_int_equal(mpos_store_merchant_add(f->st, "TXD", "d", NULL, NOW, id), MPOS_OK);
    assert_int_equal(mpos_store_commit(f->st), MPOS_OK);
    assert_int_equal(mpos_store_merchant_get(f->st, "TXD", &m), MPOS_OK);
    assert_int_equal(mpos_store_begin(f->st), MPOS_OK);
    assert_int_equal(mpos_store_merchant_add(f->st, "TXE", "e", NULL, NOW, id), MPOS_OK);
    mpos_store_rollback(f->st);
    assert_int_equal(mpos_store_merchant_get(f->st, "TXE", &m), MPOS_STORE_NOT_FOUND);
}

static int audit_cb(void *ctx, const struct mpos_store_audit *a)
{
    int *n = ctx;
    (*n)++;
    assert_string_equal(a->actor, "test");
    return 0;
}

static void test_audit_chain(void **state)
{
    struct fixture *f = *state;
    char code[MPOS_ACTIVATION_CODE_LEN + 1];
    int64_t count = 0, bad = 0;
    int n = 0;
    provisioned_terminal(f, "T-600", code);
    assert_int_equal(
        mpos_store_terminal_transition(f->st, "T-600", MPOS_TERMINAL_RETIRE, NOW, NULL), MPOS_OK);
    assert_int_equal(mpos_store_audit_verify(f->st, &count, &bad), MPOS_OK);
    assert_true(count >= 6); /* merchant, key, allocator, keys, assign, retire */
    assert_int_equal(mpos_store_audit_list(f->st, 0, audit_cb, &n), MPOS_OK);
    assert_int_equal(n, count);
    n = 0;
    assert_int_equal(mpos_store_audit_list(f->st, 2, audit_cb, &n), MPOS_OK);
    assert_int_equal(n, 2);
    raw_sql(f->path, "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 2");
    assert_int_equal(mpos_store_audit_verify(f->st, &count, &bad), MPOS_ERR_VERIFY);
    assert_int_equal(bad, 2);
}

/* ---- the files hold no secret ---------------------------------------------------------- */

static int file_contains(const char *path, const void *needle, size_t len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return 0;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    int found = 0;
    for (size_t i = 0; !found && len <= got && i + len <= got; i++) {
        found = memcmp(buf + i, needle, len) == 0;
    }
    free(buf);
    return found;
}

static void assert_absent(struct fixture *f, const void *needle, size_t len)
{
    char p[128];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
        assert_false(file_contains(p, needle, len));
    }
}

static void test_no_secret_in_files(void **state)
{
    struct fixture *f = *state;
    char code[MPOS_ACTIVATION_CODE_LEN + 1], canon[17], id[16];
    const char password[] = "Zebra-Quartz-9921-Vault";
    uint8_t tmk[16];
    char hex[33], block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    int reason = 0;
    assert_int_equal(mpos_store_merchant_add(f->st, "SHOP9", "Shop nine", NULL, NOW, id), 0);
    assert_int_equal(
        mpos_store_operator_add(f->st, "SHOP9", "carol", MPOS_ROLE_CASHIER, password, NOW, &reason),
        MPOS_OK);
    assert_int_equal(mpos_activation_code_generate(code), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(f->st, "T-900", "SHOP9", NULL, 0, code, NOW + 60, NOW), 0);
    for (size_t i = 0; i < sizeof(tmk); i++) {
        tmk[i] = (uint8_t)(0xA0 + i);
    }
    make_block(f, "D0000K0TB00N0000", tmk, sizeof(tmk), block, sizeof(block));
    assert_int_equal(mpos_store_key_put(f->st, "tmk:t-900", block, "1A2B3C", NOW), MPOS_OK);
    /* Check both the WAL (before) and the main file (after a checkpoint at close). */
    for (int pass = 0; pass < 2; pass++) {
        assert_absent(f, password, strlen(password));
        assert_absent(f, code, strlen(code));
        assert_int_equal(mpos_activation_code_normalize(code, canon), MPOS_OK);
        assert_absent(f, canon, strlen(canon));
        assert_absent(f, tmk, sizeof(tmk));
        mpos_hex_encode(tmk, sizeof(tmk), hex);
        assert_absent(f, hex, strlen(hex));
        for (char *p = hex; *p != '\0'; p++) {
            *p = (*p >= 'A' && *p <= 'F') ? (char)(*p - 'A' + 'a') : *p;
        }
        assert_absent(f, hex, strlen(hex));
        mpos_store_close(f->st);
        assert_int_equal(mpos_store_open(f->path, 0, 0, &f->st), MPOS_OK);
    }
    /* The key block itself is there: that is the point. */
    assert_true(file_contains(f->path, block, strlen(block)) || file_contains(f->path, block, 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_from_empty_and_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merchants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminal_state_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activation_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ksn_allocation_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ksn_allocation_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_keys_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_blocks_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_in_files, setup, teardown),
    };
    /* Each run keeps only its own databases: earlier runs' copies are removed first. */
    const char *keep = getenv("MPOS_TEST_ARTIFACTS");
    if (keep != NULL && keep[0] != '\0' && strchr(keep, '\'') == NULL) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", keep);
        if (system(cmd) != 0) {
            return 1;
        }
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
