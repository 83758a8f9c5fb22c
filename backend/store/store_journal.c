/* mpos_store: the transaction journal (G-ACCT-4), the store-and-forward reversal queue and
 * settlement batches (migration 2; docs/store.md).
 *
 * The journal is the back end's record of every transaction that verified: written before the
 * request goes upstream (so a crash leaves a trace to reverse), completed with the result.
 * The terminal's sequence number is the idempotency key: (serial, sequence) is UNIQUE and the
 * insert is ON CONFLICT DO NOTHING, so two nodes racing with the same retry create one entry.
 * STANs, RRNs, reversal and batch numbers come from id_sequences (one conditional UPDATE
 * each), never from the process, so they are unique across nodes and restarts.
 *
 * Nothing secret is ever written here: the caller gives the masked PAN and mpos-hsmd's keyed
 * PAN hash; there is no column that could hold a track, PIN block, CVN or expiry.
 */
#include <stdio.h>
#include <string.h>

#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

#define STAN_MODULUS 999999 /* DE 11: n6, 000001..999999 */

static int text_ok(const char *s, size_t max)
{
    return s != NULL && strlen(s) <= max;
}

/* NULL for "" so that absent values are SQL NULL. */
static const char *opt(const char *s)
{
    return (s == NULL || s[0] == '\0') ? NULL : s;
}

static int journal_read(mpos_store *st, struct store_stmt *s, struct mpos_store_journal *e)
{
    int rc = MPOS_OK;
    char state[16];
    memset(e, 0, sizeof(*e));
    e->id = store_column_int64(st, s, 0);
    rc |= store_column_copy(st, s, 1, e->serial, sizeof(e->serial));
    e->sequence = store_column_int64(st, s, 2);
    rc |= store_column_copy(st, s, 3, e->merchant_id, sizeof(e->merchant_id));
    rc |= store_column_copy(st, s, 4, e->tid, sizeof(e->tid));
    rc |= store_column_copy(st, s, 5, e->username, sizeof(e->username));
    e->txn_type = store_column_int64(st, s, 6);
    e->amount = store_column_int64(st, s, 7);
    e->currency = store_column_int64(st, s, 8);
    rc |= store_column_copy(st, s, 9, e->masked_pan, sizeof(e->masked_pan));
    rc |= store_column_copy(st, s, 10, e->pan_hash, sizeof(e->pan_hash));
    rc |= store_column_copy(st, s, 11, e->ksn, sizeof(e->ksn));
    e->stan = store_column_int64(st, s, 12);
    rc |= store_column_copy(st, s, 13, e->rrn, sizeof(e->rrn));
    rc |= store_column_copy(st, s, 14, e->transmit_time, sizeof(e->transmit_time));
    rc |= store_column_copy(st, s, 15, e->mti, sizeof(e->mti));
    rc |= store_column_copy(st, s, 16, e->proc_code, sizeof(e->proc_code));
    rc |= store_column_copy(st, s, 17, e->entry_mode, sizeof(e->entry_mode));
    rc |= store_column_copy(st, s, 18, e->original_rrn, sizeof(e->original_rrn));
    rc |= store_column_copy(st, s, 19, state, sizeof(state));
    e->state = strcmp(state, "done") == 0 ? MPOS_JOURNAL_DONE : MPOS_JOURNAL_PENDING;
    e->upstream_sent = store_column_int64(st, s, 20) != 0;
    rc |= store_column_copy(st, s, 21, e->response_code, sizeof(e->response_code));
    rc |= store_column_copy(st, s, 22, e->auth_code, sizeof(e->auth_code));
    rc |= store_column_copy(st, s, 23, e->arc, sizeof(e->arc));
    rc |= store_column_copy(st, s, 24, e->iad, sizeof(e->iad));
    e->lat_e7 = store_column_int64(st, s, 25);
    e->lon_e7 = store_column_int64(st, s, 26);
    e->accuracy_m = store_column_int64(st, s, 27);
    e->loc_time = store_column_int64(st, s, 28);
    /* Written as zeros when the request had no location (no NULL binding for integers). */
    e->has_location = e->lat_e7 != 0 || e->lon_e7 != 0 || e->accuracy_m != 0 || e->loc_time != 0;
    rc |= store_column_copy(st, s, 29, e->device_id, sizeof(e->device_id));
    rc |= store_column_copy(st, s, 30, e->source_addr, sizeof(e->source_addr));
    rc |= store_column_copy(st, s, 31, e->alert, sizeof(e->alert));
    e->reversed = store_column_int64(st, s, 32) != 0;
    e->batch = store_column_int64(st, s, 33);
    e->created_at = store_column_int64(st, s, 34);
    e->updated_at = store_column_int64(st, s, 35);
    /* store_column_copy returns 0 or one negative code: any failure makes rc non-zero. */
    return rc == MPOS_OK ? MPOS_OK : MPOS_ERR_LENGTH;
}

/* One row by (serial, sequence) ("ti"), by RRN ("t") or by id ("i"). */
static int journal_query_one(mpos_store *st, const char *sql, struct mpos_store_journal *out,
                             const char *fmt, const char *t, int64_t i)
{
    struct store_stmt *s = NULL;
    int rc = strcmp(fmt, "ti") == 0  ? store_prepare(st, sql, &s, fmt, t, i)
             : strcmp(fmt, "t") == 0 ? store_prepare(st, sql, &s, fmt, t)
                                     : store_prepare(st, sql, &s, fmt, i);
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        rc = rc == STORE_ROW    ? journal_read(st, s, out)
             : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND
                                : rc;
    }
    store_finalize(st, s);
    return rc;
}

int mpos_store_journal_insert(mpos_store *st, struct mpos_store_journal *e, int64_t now)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    int64_t id = 0, stan = 0, rrn = 0, changes = 0;
    if (st == NULL || e == NULL) {
        return MPOS_ERR_ARG;
    }
    if (store_serial_copy(e->serial, sn) != MPOS_OK || e->sequence < 0 ||
        e->sequence > 0xFFFFFFFFLL || e->txn_type < 1 || e->txn_type > 4 || e->amount < 0 ||
        e->currency < 0 || e->currency > 999 || !text_ok(e->ksn, MPOS_STORE_KSNX_LEN) ||
        e->ksn[0] == '\0' || strlen(e->transmit_time) != MPOS_STORE_DE7_LEN ||
        strlen(e->mti) != 4 || strlen(e->proc_code) != 6 || strlen(e->entry_mode) != 3) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_next_id(st, "journal", &id);
    if (rc == MPOS_OK) {
        rc = store_next_id(st, "stan", &stan);
    }
    if (rc == MPOS_OK) {
        rc = store_next_id(st, "rrn", &rrn);
    }
    if (rc == MPOS_OK) {
        e->id = id;
        e->stan = (stan - 1) % STAN_MODULUS + 1;
        /* 12 digits, unique for 10^12 transactions: the reference a void or refund names. */
        char digits[24];
        snprintf(digits, sizeof(digits), "%012lld", (long long)(rrn % 1000000000000LL));
        memcpy(e->rrn, digits, MPOS_STORE_RRN_LEN);
        e->rrn[MPOS_STORE_RRN_LEN] = '\0';
        e->state = MPOS_JOURNAL_PENDING;
        e->upstream_sent = 0;
        e->reversed = 0;
        e->batch = 0;
        e->created_at = e->updated_at = now;
        /* The location columns are all NULL or all set. */
        rc = store_exec(st, sql_journal_insert, &changes, "ititttiiitttittttttiiiittti", id, sn,
                        e->sequence, e->merchant_id, e->tid, opt(e->username), e->txn_type,
                        e->amount, e->currency, opt(e->masked_pan), opt(e->pan_hash), e->ksn,
                        e->stan, e->rrn, e->transmit_time, e->mti, e->proc_code, e->entry_mode,
                        opt(e->original_rrn), e->has_location ? e->lat_e7 : 0,
                        e->has_location ? e->lon_e7 : 0, e->has_location ? e->accuracy_m : 0,
                        e->has_location ? e->loc_time : 0, opt(e->device_id), opt(e->source_addr),
                        opt(e->alert), now);
        if (rc == STORE_DONE && changes != 1) {
            rc = MPOS_STORE_EXISTS;
        }
    }
    return store_tx_end(st, rc == MPOS_OK, rc);
}

int mpos_store_journal_get(mpos_store *st, const char *serial, int64_t sequence,
                           struct mpos_store_journal *out)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    if (st == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (store_serial_copy(serial, sn) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    return rc == MPOS_OK ? journal_query_one(st, sql_journal_get, out, "ti", sn, sequence) : rc;
}

int mpos_store_journal_get_rrn(mpos_store *st, const char *rrn, struct mpos_store_journal *out)
{
    if (st == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (rrn == NULL || rrn[0] == '\0' || strlen(rrn) > MPOS_STORE_RRN_LEN) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    return rc == MPOS_OK ? journal_query_one(st, sql_journal_get_rrn, out, "t", rrn, 0) : rc;
}

int mpos_store_journal_last_location(mpos_store *st, const char *serial, int64_t *lat_e7,
                                     int64_t *lon_e7, int64_t *loc_time)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    struct store_stmt *s = NULL;
    if (st == NULL || lat_e7 == NULL || lon_e7 == NULL || loc_time == NULL) {
        return MPOS_ERR_ARG;
    }
    if (store_serial_copy(serial, sn) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_journal_last_location, &s, "t", sn);
    }
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        if (rc == STORE_ROW) {
            *lat_e7 = store_column_int64(st, s, 0);
            *lon_e7 = store_column_int64(st, s, 1);
            *loc_time = store_column_int64(st, s, 2);
            rc = MPOS_OK;
        } else if (rc == STORE_DONE) {
            rc = MPOS_STORE_NOT_FOUND;
        }
    }
    store_finalize(st, s);
    return rc;
}

/* An update of exactly one row by its id at time now (sql binds id, now); missing when no
 * row changed (absent, or not in the state the statement wants). */
static int update_one(mpos_store *st, const char *sql, int64_t id, int64_t now, int missing)
{
    int64_t changes = 0;
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql, &changes, "ii", id, now);
    }
    return rc == MPOS_OK && changes != 1 ? missing : rc;
}

int mpos_store_journal_mark_sent(mpos_store *st, int64_t id, int64_t now)
{
    return update_one(st, sql_journal_mark_sent, id, now, MPOS_STORE_NOT_FOUND);
}

int mpos_store_journal_complete(mpos_store *st, int64_t id, const char *response_code,
                                const char *auth_code, const char *arc, const char *iad_hex,
                                int64_t now)
{
    int64_t changes = 0;
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (response_code == NULL || strlen(response_code) != 2 ||
        (auth_code != NULL && strlen(auth_code) > 6) || (arc != NULL && strlen(arc) > 2) ||
        (iad_hex != NULL && strlen(iad_hex) > MPOS_STORE_IAD_HEX_LEN)) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_journal_complete, &changes, "itttti", id, response_code,
                        opt(auth_code), opt(arc), opt(iad_hex), now);
    }
    return rc == MPOS_OK && changes != 1 ? MPOS_STORE_STATE : rc;
}

int mpos_store_journal_list_pending(mpos_store *st,
                                    int (*cb)(void *cb_ctx, const struct mpos_store_journal *e),
                                    void *cb_ctx)
{
    struct store_stmt *s = NULL;
    struct mpos_store_journal e;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_journal_pending, &s, "");
    }
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = journal_read(st, s, &e);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &e);
        }
    }
    store_finalize(st, s);
    return rc;
}

/* ---- reversals ------------------------------------------------------------------------- */

static int reason_valid(const char *r)
{
    return r != NULL && (strcmp(r, MPOS_REVERSAL_REASON_TIMEOUT) == 0 ||
                         strcmp(r, MPOS_REVERSAL_REASON_CARD_DECLINED) == 0 ||
                         strcmp(r, MPOS_REVERSAL_REASON_TERMINAL_FAILED) == 0);
}

int mpos_store_reversal_queue(mpos_store *st, int64_t journal_id, const char *reason,
                              const char *transmit_time, int64_t now, int64_t *id_out)
{
    struct mpos_store_journal e;
    int64_t id = 0, stan = 0, changes = 0;
    int is_null = 1;
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!reason_valid(reason) || transmit_time == NULL ||
        strlen(transmit_time) != MPOS_STORE_DE7_LEN) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = journal_query_one(st, sql_journal_get_id, &e, "i", NULL, journal_id);
    if (rc == MPOS_OK) {
        /* Idempotent: a second request for the same entry finds the first queue row. */
        rc = store_query_int64(st, sql_reversal_by_journal, &id, &is_null, "i", journal_id);
        if (rc == STORE_ROW) {
            rc = MPOS_STORE_EXISTS;
        } else if (rc == STORE_DONE) {
            rc = store_next_id(st, "reversal", &id);
            if (rc == MPOS_OK) {
                rc = store_next_id(st, "stan", &stan);
            }
            if (rc == MPOS_OK) {
                stan = (stan - 1) % STAN_MODULUS + 1;
                rc = store_exec(st, sql_reversal_insert, &changes, "iititi", id, journal_id, reason,
                                stan, transmit_time, now);
                if (rc == STORE_DONE && changes != 1) {
                    rc = MPOS_STORE_EXISTS;
                }
            }
            if (rc == MPOS_OK) {
                rc = store_exec(st, sql_journal_mark_reversed, NULL, "ii", journal_id, now);
            }
        }
    }
    if (id_out != NULL) {
        *id_out = (rc == MPOS_OK || rc == MPOS_STORE_EXISTS) ? id : 0;
    }
    MPOS_WIPE_CTX(&e);
    /* EXISTS wrote nothing: end our own transaction cleanly without dooming the caller's. */
    return store_tx_end(st, rc == MPOS_OK || rc == MPOS_STORE_EXISTS, rc);
}

int mpos_store_reversal_list_pending(mpos_store *st,
                                     int (*cb)(void *cb_ctx, const struct mpos_store_reversal *r),
                                     void *cb_ctx)
{
    /* Read the queue first, then each original: one statement open at a time. */
    enum { BATCH = 64 };
    struct mpos_store_reversal r[BATCH];
    size_t n = 0;
    char state[16];
    struct store_stmt *s = NULL;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_reversal_pending, &s, "");
    }
    while (rc == MPOS_OK && n < BATCH && (rc = store_step(st, s)) == STORE_ROW) {
        struct mpos_store_reversal *x = &r[n];
        memset(x, 0, sizeof(*x));
        x->id = store_column_int64(st, s, 0);
        x->journal_id = store_column_int64(st, s, 1);
        rc = store_column_copy(st, s, 2, x->reason, sizeof(x->reason));
        x->stan = store_column_int64(st, s, 3);
        if (rc == MPOS_OK) {
            rc = store_column_copy(st, s, 4, x->transmit_time, sizeof(x->transmit_time));
        }
        if (rc == MPOS_OK) {
            rc = store_column_copy(st, s, 5, state, sizeof(state));
        }
        x->done = strcmp(state, "done") == 0;
        x->attempts = store_column_int64(st, s, 6);
        x->created_at = store_column_int64(st, s, 7);
        x->last_attempt_at = store_column_int64(st, s, 8);
        x->done_at = store_column_int64(st, s, 9);
        n++;
    }
    if (rc == STORE_DONE) {
        rc = MPOS_OK;
    }
    store_finalize(st, s);
    for (size_t i = 0; rc == MPOS_OK && i < n; i++) {
        rc = journal_query_one(st, sql_journal_get_id, &r[i].orig, "i", NULL, r[i].journal_id);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &r[i]);
        }
    }
    return rc;
}

int mpos_store_reversal_attempt(mpos_store *st, int64_t id, int64_t now)
{
    return update_one(st, sql_reversal_attempt, id, now, MPOS_STORE_NOT_FOUND);
}

int mpos_store_reversal_done(mpos_store *st, int64_t id, int64_t now)
{
    return update_one(st, sql_reversal_done, id, now, MPOS_STORE_STATE);
}

/* ---- settlement ------------------------------------------------------------------------ */

static int settle_merchant(mpos_store *st, const char *mid, int64_t now,
                           int (*cb)(void *, const struct mpos_store_settle_totals *), void *cb_ctx,
                           int64_t *batches)
{
    struct mpos_store_settle_totals t;
    struct store_stmt *s = NULL;
    int64_t batch = 0, changes = 0;
    char tid[MPOS_STORE_TID_LEN + 1], rcode[3];
    int have = 0;
    int rc = store_next_id(st, "batch", &batch);
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_settle_insert, NULL, "iti", batch, mid, now);
    }
    if (rc == MPOS_OK) {
        rc = store_exec(st, sql_settle_assign, &changes, "iti", batch, mid, now);
    }
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_settle_entries, &s, "i", batch);
    }
    memset(&t, 0, sizeof(t));
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = store_column_copy(st, s, 0, tid, sizeof(tid));
        if (rc == MPOS_OK) {
            rc = store_column_copy(st, s, 4, rcode, sizeof(rcode));
        }
        if (rc != MPOS_OK) {
            break;
        }
        if (have && strcmp(tid, t.tid) != 0) {
            rc = cb(cb_ctx, &t);
            have = 0;
        }
        if (!have) {
            memset(&t, 0, sizeof(t));
            t.batch = batch;
            snprintf(t.merchant_id, sizeof(t.merchant_id), "%s", mid);
            snprintf(t.tid, sizeof(t.tid), "%s", tid);
            t.currency = 0;
            have = 1;
        }
        int64_t type = store_column_int64(st, s, 1);
        int64_t amount = store_column_int64(st, s, 2);
        int64_t cur = store_column_int64(st, s, 3);
        int reversed = store_column_int64(st, s, 5) != 0;
        if (strcmp(rcode, "00") != 0 || reversed || type == 4) {
            continue;
        }
        t.currency = (t.currency == 0 || t.currency == cur) ? cur : -1;
        if (type == 1) {
            t.sale_count++;
            t.sale_amount += amount;
        } else if (type == 2) {
            t.void_count++;
            t.void_amount += amount;
        } else if (type == 3) {
            t.refund_count++;
            t.refund_amount += amount;
        }
    }
    if (rc == STORE_DONE) {
        rc = MPOS_OK;
    }
    store_finalize(st, s);
    if (rc == MPOS_OK && have) {
        rc = cb(cb_ctx, &t);
    }
    if (rc == MPOS_OK && batches != NULL) {
        (*batches)++;
    }
    return rc;
}

int mpos_store_settle(mpos_store *st, const char *merchant_id, int64_t now,
                      int (*cb)(void *cb_ctx, const struct mpos_store_settle_totals *t),
                      void *cb_ctx, int64_t *batches)
{
    enum { MAX_MERCHANTS = 256 };
    char mids[MAX_MERCHANTS][MPOS_STORE_MERCHANT_ID_LEN + 1];
    size_t n = 0;
    struct store_stmt *s = NULL;
    int64_t one = 0;
    int is_null = 1;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    if (batches != NULL) {
        *batches = 0;
    }
    int rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (merchant_id != NULL) {
        if (!mpos_store_merchant_id_valid(merchant_id) ||
            store_canon(merchant_id, mids[0], sizeof(mids[0]), 1) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (merchant_id != NULL) {
        rc = store_query_int64(st, sql_merchant_exists, &one, &is_null, "t", mids[0]);
        rc = rc == STORE_ROW ? MPOS_OK : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND : rc;
        n = 1;
    } else {
        rc = store_prepare(st, sql_settle_merchants, &s, "");
        while (rc == MPOS_OK && n < MAX_MERCHANTS && (rc = store_step(st, s)) == STORE_ROW) {
            rc = store_column_copy(st, s, 0, mids[n], sizeof(mids[n]));
            n++;
        }
        if (rc == STORE_DONE || rc == STORE_ROW) {
            rc = MPOS_OK; /* more than MAX_MERCHANTS: the rest settle in the next run */
        }
        store_finalize(st, s);
    }
    for (size_t i = 0; rc == MPOS_OK && i < n; i++) {
        int64_t pending = 0;
        /* Nothing to settle for this merchant: no empty batch. */
        rc = store_query_int64(st, sql_settle_count, &pending, &is_null, "t", mids[i]);
        if (rc == STORE_ROW) {
            rc = pending > 0 ? settle_merchant(st, mids[i], now, cb, cb_ctx, batches) : MPOS_OK;
        } else if (rc == STORE_DONE) {
            rc = MPOS_OK;
        }
    }
    return store_tx_end(st, rc == MPOS_OK, rc);
}
