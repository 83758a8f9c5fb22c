/* mpos_store: merchants, terminals and their state machine, activation (T-ACTIV-1) and the
 * anti-replay counter (B-REPLAY-1). */
#include <stdio.h>
#include <string.h>

#include "mpos/activation.h"
#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

/* ---- merchants ----------------------------------------------------------------------- */

static int mcc_valid(const char *mcc)
{
    return mcc == NULL || mpos_digits_valid(mcc, MPOS_STORE_MCC_LEN, MPOS_STORE_MCC_LEN);
}

int mpos_store_merchant_add(mpos_store *st, const char *id, const char *name, const char *mcc,
                            int64_t now, char id_out[MPOS_STORE_MERCHANT_ID_LEN + 1])
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1] = "";
    char detail[MPOS_STORE_AUDIT_DETAIL_LEN + 1];
    char object[64];
    int64_t changes = 0;
    int rc = MPOS_OK;
    if (st == NULL || id_out == NULL) {
        return MPOS_ERR_ARG;
    }
    id_out[0] = '\0';
    if (!mpos_store_merchant_name_valid(name) || !mcc_valid(mcc) ||
        (id != NULL &&
         (!mpos_store_merchant_id_valid(id) || store_canon(id, mid, sizeof(mid), 1) != MPOS_OK))) {
        return MPOS_ERR_FORMAT;
    }
    rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (id != NULL) {
        rc = store_exec(st, sql_merchant_insert, &changes, "ttti", mid, name, mcc, now);
        if (rc == STORE_DONE && changes == 0) {
            rc = MPOS_STORE_EXISTS;
        }
    } else {
        /* Generated IDs: 15 digits from the merchant sequence; an ID someone chose by hand is
         * skipped. Bounded, so a sequence pointing into a range of hand-made IDs fails. */
        for (int tries = 0; tries < 1000; tries++) {
            int64_t n = 0;
            rc = store_next_id(st, "merchant", &n);
            if (rc != MPOS_OK) {
                break;
            }
            if (n > 999999999999999LL) {
                rc = MPOS_STORE_EXHAUSTED; /* 15 digits used up */
                break;
            }
            char digits[24];
            snprintf(digits, sizeof(digits), "%015lld", (long long)n);
            memcpy(mid, digits, sizeof(mid)); /* 15 digits and the NUL: n < 10^15 */
            rc = store_exec(st, sql_merchant_insert, &changes, "ttti", mid, name, mcc, now);
            if (rc != STORE_DONE || changes == 1) {
                break;
            }
            rc = MPOS_STORE_EXISTS;
        }
    }
    if (rc == STORE_DONE) {
        snprintf(object, sizeof(object), "merchant:%s", mid);
        snprintf(detail, sizeof(detail), "mcc=%s", mcc != NULL ? mcc : "-");
        rc = store_audit(st, now, "merchant.add", object, detail);
    }
    if (rc == MPOS_OK) {
        memcpy(id_out, mid, sizeof(mid));
    }
    return store_tx_end(st, rc == MPOS_OK, rc);
}

static int merchant_read(mpos_store *st, struct store_stmt *s, struct mpos_store_merchant *m)
{
    memset(m, 0, sizeof(*m));
    int rc = store_column_copy(st, s, 0, m->id, sizeof(m->id));
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 1, m->name, sizeof(m->name));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 2, m->mcc, sizeof(m->mcc));
    }
    m->created_at = store_column_int64(st, s, 3);
    return rc;
}

int mpos_store_merchant_get(mpos_store *st, const char *id, struct mpos_store_merchant *out)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1];
    struct store_stmt *s = NULL;
    if (st == NULL || out == NULL || !mpos_store_merchant_id_valid(id)) {
        return st == NULL || out == NULL ? MPOS_ERR_ARG : MPOS_ERR_FORMAT;
    }
    memset(out, 0, sizeof(*out));
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_canon(id, mid, sizeof(mid), 1);
    }
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_merchant_get, &s, "t", mid);
    }
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        rc = rc == STORE_ROW    ? merchant_read(st, s, out)
             : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND
                                : rc;
    }
    store_finalize(st, s);
    return rc;
}

int mpos_store_merchant_list(mpos_store *st,
                             int (*cb)(void *cb_ctx, const struct mpos_store_merchant *m),
                             void *cb_ctx)
{
    struct store_stmt *s = NULL;
    struct mpos_store_merchant m;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_merchant_list, &s, "");
    }
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = merchant_read(st, s, &m);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &m);
        }
    }
    store_finalize(st, s);
    return rc == STORE_DONE ? MPOS_OK : rc;
}

/* ---- terminals ----------------------------------------------------------------------- */

static const char *const state_names[] = {NULL, "provisioned", "active", "suspended", "retired"};
static const char *const scheme_names[] = {"none", "aes-dukpt", "tdes-dukpt", "mkwk"};

const char *mpos_terminal_state_name(enum mpos_terminal_state s)
{
    return (s >= MPOS_TERMINAL_PROVISIONED && s <= MPOS_TERMINAL_RETIRED) ? state_names[s] : "?";
}

const char *mpos_terminal_scheme_name(enum mpos_terminal_scheme s)
{
    return (s >= MPOS_SCHEME_NONE && s <= MPOS_SCHEME_MKWK) ? scheme_names[s] : "?";
}

int mpos_terminal_scheme_parse(const char *name, enum mpos_terminal_scheme *out)
{
    for (int i = MPOS_SCHEME_AES_DUKPT; i <= MPOS_SCHEME_MKWK; i++) {
        if (name != NULL && strcmp(name, scheme_names[i]) == 0) {
            *out = (enum mpos_terminal_scheme)i;
            return MPOS_OK;
        }
    }
    return MPOS_ERR_FORMAT;
}

static enum mpos_terminal_state state_parse(const char *name)
{
    for (int i = MPOS_TERMINAL_PROVISIONED; i <= MPOS_TERMINAL_RETIRED; i++) {
        if (name != NULL && strcmp(name, state_names[i]) == 0) {
            return (enum mpos_terminal_state)i;
        }
    }
    return (enum mpos_terminal_state)0;
}

static int terminal_read(mpos_store *st, struct store_stmt *s, struct mpos_store_terminal *t)
{
    char state[16], scheme[16];
    memset(t, 0, sizeof(*t));
    struct {
        int col;
        char *out;
        size_t cap;
    } text[] = {
        {0, t->serial, sizeof(t->serial)},
        {1, t->merchant_id, sizeof(t->merchant_id)},
        {2, t->tid, sizeof(t->tid)},
        {3, state, sizeof(state)},
        {4, scheme, sizeof(scheme)},
        {5, t->initial_ksn, sizeof(t->initial_ksn)},
        {6, t->tmk_kcv, sizeof(t->tmk_kcv)},
        {7, t->key_label, sizeof(t->key_label)},
        {8, t->cert_sha256, sizeof(t->cert_sha256)},
        {9, t->host_binding, sizeof(t->host_binding)},
    };
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        int rc = store_column_copy(st, s, text[i].col, text[i].out, text[i].cap);
        if (rc != MPOS_OK) {
            return rc;
        }
    }
    t->state = state_parse(state);
    t->scheme = MPOS_SCHEME_NONE;
    if (scheme[0] != '\0' && mpos_terminal_scheme_parse(scheme, &t->scheme) != MPOS_OK) {
        return MPOS_STORE_ERR_DB;
    }
    if (t->state == 0) {
        return MPOS_STORE_ERR_DB;
    }
    if (!store_column_is_null(st, s, 10)) {
        t->location.set = 1;
        t->location.lat_e6 = store_column_int64(st, s, 10);
        t->location.lon_e6 = store_column_int64(st, s, 11);
        t->location.radius_m = store_column_int64(st, s, 12);
    }
    t->has_ksn_counter = !store_column_is_null(st, s, 13);
    t->last_ksn_counter = store_column_int64(st, s, 13);
    t->has_sequence = !store_column_is_null(st, s, 14);
    t->last_sequence = store_column_int64(st, s, 14);
    t->created_at = store_column_int64(st, s, 15);
    t->updated_at = store_column_int64(st, s, 16);
    t->provisioned_at = store_column_int64(st, s, 17);
    t->activated_at = store_column_int64(st, s, 18);
    t->retired_at = store_column_int64(st, s, 19);
    return MPOS_OK;
}

/* Reads a terminal by canonical serial: MPOS_OK, MPOS_STORE_NOT_FOUND or an error. */
int store_terminal_load(mpos_store *st, const char *serial, struct mpos_store_terminal *t)
{
    struct store_stmt *s = NULL;
    int rc = store_prepare(st, sql_terminal_get, &s, "t", serial);
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        rc = rc == STORE_ROW    ? terminal_read(st, s, t)
             : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND
                                : rc;
    }
    store_finalize(st, s);
    return rc;
}

static int serial_canon(const char *serial, char out[MPOS_STORE_SERIAL_LEN + 1])
{
    return store_serial_copy(serial, out);
}

int mpos_store_terminal_get(mpos_store *st, const char *serial, struct mpos_store_terminal *out)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    if (st == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    int rc = serial_canon(serial, sn);
    if (rc == MPOS_OK) {
        rc = store_require_schema(st);
    }
    return rc == MPOS_OK ? store_terminal_load(st, sn, out) : rc;
}

int mpos_store_terminal_list(mpos_store *st, const char *merchant_id,
                             int (*cb)(void *cb_ctx, const struct mpos_store_terminal *t),
                             void *cb_ctx)
{
    char mid[MPOS_STORE_MERCHANT_ID_LEN + 1];
    struct store_stmt *s = NULL;
    struct mpos_store_terminal t;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK && merchant_id != NULL) {
        rc = mpos_store_merchant_id_valid(merchant_id)
                 ? store_canon(merchant_id, mid, sizeof(mid), 1)
                 : MPOS_ERR_FORMAT;
        if (rc == MPOS_OK) {
            rc = store_prepare(st, sql_terminal_list_merchant, &s, "t", mid);
        }
    } else if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_terminal_list_all, &s, "");
    }
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = terminal_read(st, s, &t);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &t);
        }
    }
    store_finalize(st, s);
    return rc == STORE_DONE ? MPOS_OK : rc;
}

static int location_valid(const struct mpos_store_location *l)
{
    return l == NULL || !l->set ||
           (l->lat_e6 >= -90000000 && l->lat_e6 <= 90000000 && l->lon_e6 >= -180000000 &&
            l->lon_e6 <= 180000000 && l->radius_m >= 1 && l->radius_m <= 20000000);
}

/* Binds NULL for an unset location: the three columns are set together or not at all. */
#define LOC_ARG(l, f) ((l) != NULL && (l)->set ? (l)->f : 0)

int mpos_store_terminal_assign(mpos_store *st, const char *serial, const char *merchant_id,
                               const struct mpos_store_location *location, int reassign,
                               const char *code, int64_t expires_at, int64_t now)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1], mid[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char tid[MPOS_STORE_TID_LEN + 1] = "";
    char code_hash[MPOS_ACTIVATION_HASH_HEX_LEN + 1] = "";
    char object[64], detail[MPOS_STORE_AUDIT_DETAIL_LEN + 1];
    struct mpos_store_terminal t = {0};
    struct mpos_store_location loc = {0};
    int64_t changes = 0, one = 0, tidn = 0;
    int rc = MPOS_OK, commit = 0, existed = 0, no_row = 0;
    if (st == NULL || code == NULL) {
        return MPOS_ERR_ARG;
    }
    if (serial_canon(serial, sn) != MPOS_OK || !mpos_store_merchant_id_valid(merchant_id) ||
        store_canon(merchant_id, mid, sizeof(mid), 1) != MPOS_OK || !location_valid(location) ||
        expires_at <= now) {
        return MPOS_ERR_FORMAT;
    }
    rc = mpos_activation_code_hash(sn, code, code_hash);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_query_int64(st, sql_merchant_exists, &one, &no_row, "t", mid);
    if (rc == STORE_DONE) {
        rc = MPOS_STORE_NOT_FOUND;
        goto exit;
    }
    if (rc != STORE_ROW) {
        goto exit;
    }
    rc = store_terminal_load(st, sn, &t);
    if (rc == MPOS_OK) {
        existed = 1;
        if (t.state == MPOS_TERMINAL_RETIRED ||
            (!reassign && t.state != MPOS_TERMINAL_PROVISIONED)) {
            rc = MPOS_STORE_STATE;
            goto exit;
        }
        memcpy(tid, t.tid, sizeof(tid));
    } else if (rc != MPOS_STORE_NOT_FOUND) {
        goto exit;
    }
    if (tid[0] == '\0') {
        rc = store_next_id(st, "tid", &tidn);
        if (rc != MPOS_OK) {
            goto exit;
        }
        if (tidn > 99999999) {
            rc = MPOS_STORE_EXHAUSTED;
            goto exit;
        }
        char digits[24];
        snprintf(digits, sizeof(digits), "%08lld", (long long)tidn);
        memcpy(tid, digits, sizeof(tid) - 1); /* 8 digits: tidn <= 99999999 */
        tid[sizeof(tid) - 1] = '\0';
    }
    /* The location: the one given; else the current one if the merchant stays the same. */
    if (location != NULL && location->set) {
        loc = *location;
    } else if (existed && strcmp(t.merchant_id, mid) == 0) {
        loc = t.location;
    }
    if (!existed) {
        if (loc.set) {
            rc = store_exec(st, sql_terminal_insert_assigned, &changes, "tttiiii", sn, mid, tid,
                            loc.lat_e6, loc.lon_e6, loc.radius_m, now);
        } else {
            rc = store_exec(st, sql_terminal_insert_assigned, &changes, "tttttti", sn, mid, tid,
                            (const char *)NULL, (const char *)NULL, (const char *)NULL, now);
        }
    } else {
        /* A new merchant (or a deliberate reassignment of an activated terminal) forgets the
         * host binding and the activation: the terminal activates again. */
        int64_t fresh = (strcmp(t.merchant_id, mid) != 0 || t.state != MPOS_TERMINAL_PROVISIONED);
        const char *old_state = mpos_terminal_state_name(t.state);
        if (loc.set) {
            rc = store_exec(st, sql_terminal_reassign, &changes, "tttiiiiit", sn, mid, tid,
                            loc.lat_e6, loc.lon_e6, loc.radius_m, fresh, now, old_state);
        } else {
            rc = store_exec(st, sql_terminal_reassign, &changes, "ttttttiit", sn, mid, tid,
                            (const char *)NULL, (const char *)NULL, (const char *)NULL, fresh, now,
                            old_state);
        }
    }
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_STATE; /* changed under us by another process: nothing written */
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    rc = store_exec(st, sql_code_revoke_open, NULL, "ti", sn, now);
    if (rc == STORE_DONE) {
        rc =
            store_exec(st, sql_code_insert, &changes, "tttii", code_hash, sn, mid, now, expires_at);
    }
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_EXISTS; /* the same code twice: only with a broken RNG */
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    snprintf(object, sizeof(object), "terminal:%s", sn);
    snprintf(detail, sizeof(detail), "merchant=%s tid=%s%s location=%s expires=%lld", mid, tid,
             existed ? (reassign ? " reassign" : "") : " new", loc.set ? "set" : "none",
             (long long)expires_at);
    rc = store_audit(st, now, "terminal.assign", object, detail);
    commit = rc == MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(code_hash);
    return store_tx_end(st, commit, rc);
}

int mpos_store_terminal_transition(mpos_store *st, const char *serial,
                                   enum mpos_terminal_action action, int64_t now,
                                   enum mpos_terminal_state *new_state)
{
    static const char *const action_names[] = {NULL, "terminal.suspend", "terminal.resume",
                                               "terminal.retire"};
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    char object[64], detail[64];
    struct mpos_store_terminal t = {0};
    enum mpos_terminal_state to = 0;
    int64_t changes = 0;
    int rc = MPOS_OK, commit = 0;
    if (st == NULL || action < MPOS_TERMINAL_SUSPEND || action > MPOS_TERMINAL_RETIRE) {
        return MPOS_ERR_ARG;
    }
    if (serial_canon(serial, sn) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_terminal_load(st, sn, &t);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The state machine: retired is final; suspend from provisioned or active; resume only a
     * suspended terminal, back to active if it was ever activated, else to provisioned. */
    switch (action) {
    case MPOS_TERMINAL_SUSPEND:
        if (t.state == MPOS_TERMINAL_PROVISIONED || t.state == MPOS_TERMINAL_ACTIVE) {
            to = MPOS_TERMINAL_SUSPENDED;
        }
        break;
    case MPOS_TERMINAL_RESUME:
        if (t.state == MPOS_TERMINAL_SUSPENDED) {
            to = t.activated_at != 0 ? MPOS_TERMINAL_ACTIVE : MPOS_TERMINAL_PROVISIONED;
        }
        break;
    case MPOS_TERMINAL_RETIRE:
        if (t.state != MPOS_TERMINAL_RETIRED) {
            to = MPOS_TERMINAL_RETIRED;
        }
        break;
    }
    if (to == 0) {
        rc = MPOS_STORE_STATE;
        goto exit;
    }
    rc = store_exec(st, sql_terminal_set_state, &changes, "ttit", sn, mpos_terminal_state_name(to),
                    now, mpos_terminal_state_name(t.state));
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_STATE;
    }
    if (rc == STORE_DONE && to == MPOS_TERMINAL_RETIRED) {
        rc = store_exec(st, sql_code_revoke_open, NULL, "ti", sn, now);
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    snprintf(object, sizeof(object), "terminal:%s", sn);
    snprintf(detail, sizeof(detail), "%s -> %s", mpos_terminal_state_name(t.state),
             mpos_terminal_state_name(to));
    rc = store_audit(st, now, action_names[action], object, detail);
    commit = rc == MPOS_OK;
exit:
    if (new_state != NULL) {
        *new_state = commit ? to : t.state;
    }
    return store_tx_end(st, commit, rc);
}
