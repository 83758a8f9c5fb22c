/* mpos_bk_txn: the transaction processor (bk_txn.h; docs/system-design.md sections 3 and 4).
 *
 * One request, in this order (../shared/spec/architecture.md "One sale"):
 *  1. the terminal's record: registered, activated, not retired; suspended -> 58;
 *  2. mpos-hsmd sealed.open FIRST: the MAC is verified inside hsmd, so a forged request is
 *     refused before it can move any counter or reach the journal;
 *  3. anti-replay: the KSN is this terminal's and its counter above the last one accepted
 *     (one conditional write in the store, B-REPLAY-1);
 *  4. idempotency: the terminal's sequence number already has an outcome -> the same
 *     outcome, re-sealed for the new KSN (never charged twice); still in flight -> 94;
 *     a retry (DF35) of an unknown sequence number -> 25, never a new charge;
 *  5. the checks of section 4.3 (12, 57) and the location alerts;
 *  6. the journal entry, committed before anything goes upstream (G-ACCT-4: masked PAN and
 *     keyed hash only);
 *  7. ISO 8583 upstream; timeout -> 91 and a reversal in the store-and-forward queue;
 *  8. the journal completed, the response sealed in hsmd for this KSN and sequence.
 * A REVERSAL from the terminal queues the 0400 of the transaction with its sequence number
 * (once; DE 39 from the reason the reversal carries), or is acknowledged locally when that
 * transaction never went upstream.
 */
#define _GNU_SOURCE /* clock_gettime, gmtime_r, strcasecmp, M_PI */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bk_int.h"
#include "mpos/util.h"

#define AES_IKID_HEX  16
#define TDES_IKSN_HEX 20

static const char *const alert_words[] = {"outside_radius", "host_not_bound", "impossible_travel",
                                          "location_mismatch"};

static const char *alert_static(const char *s)
{
    for (size_t i = 0; i < sizeof(alert_words) / sizeof(alert_words[0]); i++) {
        if (s != NULL && strcmp(s, alert_words[i]) == 0) {
            return alert_words[i];
        }
    }
    return NULL;
}

/* ---- start, stop ------------------------------------------------------------------------ */

static int load_key(mpos_store *st, const char *label, char *out)
{
    struct mpos_store_key k;
    out[0] = '\0';
    if (label == NULL || label[0] == '\0') {
        return MPOS_OK;
    }
    int rc = mpos_store_key_get(st, label, &k);
    if (rc == MPOS_OK) {
        snprintf(out, MPOS_STORE_KEYBLOCK_LEN + 1, "%s", k.key_block);
    }
    MPOS_WIPE_CTX(&k);
    return rc;
}

/* Entries a crash left pending: finished so that a retry gets an answer, and reversed when
 * they may have reached the network. */
struct pending_list {
    int64_t id[256];
    int sent[256];
    size_t n;
};

static int collect_pending(void *ctx, const struct mpos_store_journal *e)
{
    struct pending_list *l = ctx;
    if (l->n >= sizeof(l->id) / sizeof(l->id[0])) {
        return 1;
    }
    l->id[l->n] = e->id;
    l->sent[l->n] = e->upstream_sent;
    l->n++;
    return 0;
}

static int recover_pending(mpos_store *st)
{
    static struct pending_list l; /* start-up only, one thread */
    char de7[11];
    int rc;
    do {
        memset(&l, 0, sizeof(l));
        rc = mpos_store_journal_list_pending(st, collect_pending, &l);
        if (rc < 0) {
            return rc;
        }
        for (size_t i = 0; i < l.n; i++) {
            int64_t rid = 0;
            bk_de7(de7);
            if (l.sent[i]) {
                rc = mpos_store_reversal_queue(st, l.id[i], MPOS_REVERSAL_REASON_TIMEOUT, de7,
                                               bk_now_s(), &rid);
                if (rc != MPOS_OK && rc != MPOS_STORE_EXISTS) {
                    return rc;
                }
            }
            rc = mpos_store_journal_complete(st, l.id[i], l.sent[i] ? "91" : "96", NULL, NULL, NULL,
                                             bk_now_s());
            if (rc != MPOS_OK && rc != MPOS_STORE_STATE) {
                return rc;
            }
        }
    } while (l.n == sizeof(l.id) / sizeof(l.id[0]));
    return MPOS_OK;
}

int mpos_bk_txn_start(const mpos_bk_txn_config *cfg, mpos_bk_txn **out)
{
    if (cfg == NULL || out == NULL || cfg->store_path == NULL || cfg->hsm_socket == NULL ||
        cfg->upstream_host == NULL || cfg->acquirer_id == NULL || cfg->zak_label == NULL) {
        return MPOS_ERR_ARG;
    }
    *out = NULL;
    mpos_bk_txn *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return MPOS_ERR_LENGTH;
    }
    p->cfg = *cfg;
    if (p->cfg.upstream_timeout_ms <= 0) {
        p->cfg.upstream_timeout_ms = 5000;
    }
    if (p->cfg.saf_interval_ms <= 0) {
        p->cfg.saf_interval_ms = 2000;
    }
    if (p->cfg.max_speed_kmh <= 0) {
        p->cfg.max_speed_kmh = 900;
    }
    if (p->cfg.echo_s < 0) {
        p->cfg.echo_s = 0;
    }
    pthread_mutex_init(&p->store_mu, NULL);
    pthread_mutex_init(&p->hsm_mu, NULL);
    pthread_mutex_init(&p->life_mu, NULL);
    pthread_cond_init(&p->life_cv, NULL);
    p->hsm.fd = -1;
    int rc = mpos_store_open(cfg->store_path, 0, 0, &p->st);
    if (rc == MPOS_OK) {
        rc = load_key(p->st, cfg->zak_label, p->zak);
    }
    if (rc == MPOS_OK) {
        rc = load_key(p->st, cfg->zpk_label, p->zpk);
    }
    if (rc == MPOS_OK) {
        rc = load_key(p->st, cfg->zek_label, p->zek);
    }
    if (rc == MPOS_OK) {
        rc = recover_pending(p->st);
    }
    if (rc != MPOS_OK) {
        fprintf(stderr, "mpos-backend: store: %s\n", mpos_store_strerror(rc));
        mpos_store_close(p->st);
        free(p);
        return rc > 0 ? MPOS_ERR_ARG : rc;
    }
    rc = hsm_client_open(&p->hsm, cfg->hsm_socket, cfg->hsm_timeout_ms);
    if (rc != 0) {
        fprintf(stderr, "mpos-backend: cannot reach mpos-hsmd\n");
        mpos_store_close(p->st);
        free(p);
        return rc < 0 ? rc : MPOS_ERR_ARG;
    }
    rc = bk_up_start(p);
    if (rc == MPOS_OK) {
        rc = bk_saf_start(p);
    }
    if (rc != MPOS_OK) {
        mpos_bk_txn_stop(p);
        return rc;
    }
    *out = p;
    return MPOS_OK;
}

int mpos_bk_txn_lookup(mpos_bk_txn *p, const char *merchant_id, const char *rrn, uint64_t *amount,
                       uint16_t *currency, int *state)
{
    struct mpos_store_journal orig;
    int voided = 0;
    if (p == NULL || merchant_id == NULL || rrn == NULL || amount == NULL || currency == NULL ||
        state == NULL) {
        return MPOS_ERR_ARG;
    }
    *amount = 0;
    *currency = 0;
    *state = MPOS_BK_ORIG_NOT_FOUND;
    if (!mpos_digits_valid(rrn, MPOS_STORE_RRN_LEN, MPOS_STORE_RRN_LEN)) {
        return MPOS_OK; /* not an RRN: no such transaction */
    }
    pthread_mutex_lock(&p->store_mu);
    int rc = mpos_store_journal_get_rrn(p->st, rrn, &orig);
    if (rc == MPOS_OK) {
        rc = mpos_store_journal_voided(p->st, rrn, &voided);
    }
    pthread_mutex_unlock(&p->store_mu);
    if (rc == MPOS_STORE_NOT_FOUND ||
        (rc == MPOS_OK && strcmp(orig.merchant_id, merchant_id) != 0)) {
        /* Another merchant's transaction is as unknown as none. */
        MPOS_WIPE_CTX(&orig);
        return MPOS_OK;
    }
    if (rc != MPOS_OK) {
        MPOS_WIPE_CTX(&orig);
        return rc > 0 ? MPOS_ERR_ARG : rc;
    }
    /* The same rule as the check before going upstream (section 7 of process): an approved
     * sale of this merchant; a void or refund is not voided or refunded again. */
    if (orig.txn_type != 1 || orig.state != MPOS_JOURNAL_DONE ||
        strcmp(orig.response_code, "00") != 0 || orig.reversed) {
        *state = MPOS_BK_ORIG_NOT_APPROVED;
    } else if (voided) {
        *state = MPOS_BK_ORIG_VOIDED;
    } else {
        *state = MPOS_BK_ORIG_APPROVED;
        *amount = (uint64_t)orig.amount;
        *currency = (uint16_t)orig.currency;
    }
    MPOS_WIPE_CTX(&orig);
    return MPOS_OK;
}

void mpos_bk_txn_stop(mpos_bk_txn *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->life_mu);
    p->stopping = 1;
    while (p->in_flight > 0) {
        pthread_cond_wait(&p->life_cv, &p->life_mu);
    }
    pthread_mutex_unlock(&p->life_mu);
    bk_saf_stop(p);
    bk_up_stop(p);
    hsm_client_close(&p->hsm);
    mpos_store_close(p->st);
    MPOS_WIPE_BUFFER(p->zak);
    MPOS_WIPE_BUFFER(p->zpk);
    MPOS_WIPE_BUFFER(p->zek);
    pthread_mutex_destroy(&p->store_mu);
    pthread_mutex_destroy(&p->hsm_mu);
    pthread_mutex_destroy(&p->life_mu);
    pthread_cond_destroy(&p->life_cv);
    free(p);
}

/* ---- one request ------------------------------------------------------------------------ */

/* Everything one request needs; on the heap (the hsmd response alone is about 1 KiB). */
struct job {
    mpos_bk_txn *p;
    const mpos_bk_txn_context *ctx;
    struct mpos_store_terminal t;
    struct mpos_store_key bdk;
    struct hsm_sealed_open_resp o;
    struct mpos_store_journal e;
    const char *alert;
    char rcode[3], auth[7], arc[3];
    uint8_t iad[HSM_SEALED_IAD_MAX_LEN];
    size_t iad_len;
};

static int hsm_rc(int rc)
{
    if (rc == 0) {
        return MPOS_OK;
    }
    if (rc < 0) {
        return rc;
    }
    switch (rc) {
    case HSM_STATUS_VERIFY:
        return MPOS_ERR_VERIFY;
    case HSM_STATUS_FIELD:
    case HSM_STATUS_INPUT:
        return MPOS_ERR_FORMAT;
    case HSM_STATUS_KEY:
    case HSM_STATUS_USAGE:
        return MPOS_ERR_KEY;
    default:
        return MPOS_ERR_CRYPTO;
    }
}

/* The KSN is this terminal's (its initial key ID / initial KSN) and its counter. */
static int ksn_split(const struct job *j, int64_t *counter)
{
    const struct hsm_sealed_fields *f = &j->o.fields;
    char hex[2 * HSM_KSN_MAX_LEN + 1];
    if (j->t.scheme == MPOS_SCHEME_AES_DUKPT && f->ksn_len == 12 && f->scheme >= 0x11 &&
        f->scheme <= 0x13) {
        mpos_hex_encode(f->ksn, 8, hex);
        if (strlen(j->t.initial_ksn) != AES_IKID_HEX || strcasecmp(hex, j->t.initial_ksn) != 0) {
            return MPOS_ERR_VERIFY;
        }
        *counter = (int64_t)((uint32_t)f->ksn[8] << 24 | (uint32_t)f->ksn[9] << 16 |
                             (uint32_t)f->ksn[10] << 8 | f->ksn[11]);
        return MPOS_OK;
    }
    if (j->t.scheme == MPOS_SCHEME_TDES_DUKPT && f->ksn_len == 10 && f->scheme == 0x21) {
        uint8_t k[10];
        memcpy(k, f->ksn, 10);
        *counter = (int64_t)(((uint32_t)k[7] & 0x1F) << 16 | (uint32_t)k[8] << 8 | k[9]);
        k[7] &= 0xE0;
        k[8] = k[9] = 0;
        mpos_hex_encode(k, 10, hex);
        if (strlen(j->t.initial_ksn) != TDES_IKSN_HEX || strcasecmp(hex, j->t.initial_ksn) != 0) {
            return MPOS_ERR_VERIFY;
        }
        return MPOS_OK;
    }
    return MPOS_ERR_VERIFY;
}

/* Seals the response for this request's KSN and sequence in hsmd. */
static int respond(struct job *j, uint8_t *resp, size_t cap, size_t *resp_len)
{
    struct hsm_sealed_respond_req rq;
    struct hsm_sealed_respond_resp rs;
    memset(&rq, 0, sizeof(rq));
    memset(&rs, 0, sizeof(rs));
    rq.bdk.text = j->bdk.key_block;
    rq.bdk.len = strlen(j->bdk.key_block);
    rq.scheme = j->o.fields.scheme;
    memcpy(rq.ksn, j->o.fields.ksn, j->o.fields.ksn_len);
    rq.ksn_len = j->o.fields.ksn_len;
    rq.sequence = j->o.fields.sequence;
    snprintf(rq.response_code, sizeof(rq.response_code), "%s", j->rcode);
    snprintf(rq.auth_code, sizeof(rq.auth_code), "%s", j->auth);
    snprintf(rq.rrn, sizeof(rq.rrn), "%s", j->e.rrn);
    snprintf(rq.arc, sizeof(rq.arc), "%s", j->arc);
    memcpy(rq.iad, j->iad, j->iad_len);
    rq.iad_len = j->iad_len;
    pthread_mutex_lock(&j->p->hsm_mu);
    int rc = hsm_rc(hsm_client_sealed_respond(&j->p->hsm, &rq, &rs));
    pthread_mutex_unlock(&j->p->hsm_mu);
    if (rc == MPOS_OK) {
        if (rs.sealed_len > cap) {
            rc = MPOS_ERR_LENGTH;
        } else {
            memcpy(resp, rs.sealed, rs.sealed_len);
            *resp_len = rs.sealed_len;
        }
    }
    return rc;
}

static void fill_outcome(const struct job *j, mpos_bk_txn_outcome *out)
{
    const struct hsm_sealed_fields *f = &j->o.fields;
    memset(out, 0, sizeof(*out));
    out->is_reversal = f->msg_type == 0x02;
    out->txn_type = f->txn_type;
    out->amount = f->amount;
    out->currency = f->currency;
    out->sequence = f->sequence;
    snprintf(out->merchant_id, sizeof(out->merchant_id), "%s", j->t.merchant_id);
    snprintf(out->terminal_id, sizeof(out->terminal_id), "%s", j->t.tid);
    snprintf(out->masked_pan, sizeof(out->masked_pan), "%s", f->masked_pan);
    snprintf(out->response_code, sizeof(out->response_code), "%s", j->rcode);
    snprintf(out->auth_code, sizeof(out->auth_code), "%s", j->auth);
    snprintf(out->rrn, sizeof(out->rrn), "%s", j->e.rrn);
    out->alert = j->alert;
}

static void set_code(struct job *j, const char *code)
{
    snprintf(j->rcode, sizeof(j->rcode), "%s", code);
}

/* The outcome of a journal entry (a retry's answer). */
static void from_journal(struct job *j)
{
    set_code(j, j->e.response_code);
    snprintf(j->auth, sizeof(j->auth), "%s", j->e.auth_code);
    snprintf(j->arc, sizeof(j->arc), "%s", j->e.arc);
    size_t n = 0;
    if (j->e.iad[0] != '\0' && mpos_hex_decode(j->e.iad, j->iad, sizeof(j->iad), &n) == MPOS_OK) {
        j->iad_len = n;
    } else {
        j->iad_len = 0;
    }
    j->alert = alert_static(j->e.alert);
}

/* Registered IDs: the sealed ones are ans15 / ans8 (blank-padded); the store's are trimmed. */
static int id_equal(const char *sealed, const char *registered)
{
    size_t n = strlen(sealed);
    while (n > 0 && sealed[n - 1] == ' ') {
        n--;
    }
    return n == strlen(registered) && memcmp(sealed, registered, n) == 0;
}

/* Section 4.3 checks; sets j->rcode ("" = pass) and j->alert. */
static void run_checks(struct job *j)
{
    const mpos_bk_txn_context *c = j->ctx;
    const struct hsm_sealed_fields *f = &j->o.fields;
    mpos_bk_txn *p = j->p;
    uint32_t fw = 0;
    j->rcode[0] = '\0';
    /* 12: the request's IDs are the registration's, the operator is of that merchant. */
    if (!id_equal(f->merchant_id, j->t.merchant_id) || strcmp(f->terminal_id, j->t.tid) != 0 ||
        strcmp(c->merchant_id, j->t.merchant_id) != 0) {
        set_code(j, "12");
        return;
    }
    /* 12: a chip card read by its stripe without a chip failure first (fallback). */
    if (f->entry_mode == 0x90 && j->o.chip_card && !f->fallback) {
        set_code(j, "12");
        return;
    }
    if (p->cfg.min_firmware != 0 &&
        (bk_firmware_parse(c->firmware, &fw) != MPOS_OK || fw < p->cfg.min_firmware)) {
        set_code(j, "12");
        return;
    }
    /* 57: what the operator announced (TXN_BEGIN) is what the terminal sealed, and the
     * operator's role allows it (cashier: sale, balance; supervisor: also void, refund). */
    if (!c->has_intent || c->intent_type != f->txn_type || c->intent_amount != f->amount ||
        c->intent_currency != f->currency) {
        set_code(j, "57");
        return;
    }
    if ((f->txn_type == 2 || f->txn_type == 3) && c->role != MPOS_ROLE_SUPERVISOR) {
        set_code(j, "57");
        return;
    }
    /* 57: the location the terminal sealed (as the host told it) is the envelope's. */
    if (!f->has_location || f->lat_e7 != c->lat_e7 || f->lon_e7 != c->lon_e7) {
        j->alert = "location_mismatch";
        set_code(j, "57");
        return;
    }
    /* B-MOVE-1: the registered place and radius, and the host it was activated through. */
    if (j->t.location.set) {
        double d = bk_distance_m(j->t.location.lat_e6 * 10, j->t.location.lon_e6 * 10, c->lat_e7,
                                 c->lon_e7);
        if (d > (double)j->t.location.radius_m) {
            j->alert = "outside_radius";
            set_code(j, "57");
            return;
        }
    }
    if (j->t.host_binding[0] != '\0') {
        char dev[65];
        mpos_hex_encode(c->device_id, sizeof(c->device_id), dev);
        if (strcasecmp(dev, j->t.host_binding) != 0) {
            j->alert = "host_not_bound";
            set_code(j, "57");
            return;
        }
    }
    /* Impossible travel: from the terminal's previous located transaction. */
    int64_t plat = 0, plon = 0, ptime = 0;
    pthread_mutex_lock(&p->store_mu);
    int rc = mpos_store_journal_last_location(p->st, j->t.serial, &plat, &plon, &ptime);
    pthread_mutex_unlock(&p->store_mu);
    if (rc == MPOS_OK && c->loc_time != 0) {
        double d = bk_distance_m(plat, plon, c->lat_e7, c->lon_e7);
        double dt = (double)((int64_t)c->loc_time - ptime);
        double allowed = (dt > 0 ? dt : 0) * (double)p->cfg.max_speed_kmh / 3.6;
        /* 1 km of slack: location fixes are not exact. */
        if (d > allowed + 1000.0) {
            j->alert = "impossible_travel";
            fprintf(stderr, "mpos-backend: alert=impossible_travel serial=%s\n", j->t.serial);
            if (p->cfg.decline_impossible_travel) {
                set_code(j, "57");
                return;
            }
        }
    }
}

static const char *proc_code(uint8_t type)
{
    return type == 2 ? "020000" : type == 3 ? "200000" : type == 4 ? "310000" : "000000";
}

static const char *entry_mode(const struct hsm_sealed_open_resp *o)
{
    if (o->fields.entry_mode == 0x05) {
        return o->has_pin ? "051" : "052";
    }
    if (o->fields.entry_mode == 0x90) {
        return o->fields.fallback ? "801" : o->has_pin ? "901" : "902";
    }
    return "000";
}

/* The journal entry of a request that verified (before any check result is known). */
static void journal_fill(struct job *j)
{
    const mpos_bk_txn_context *c = j->ctx;
    const struct hsm_sealed_fields *f = &j->o.fields;
    struct mpos_store_journal *e = &j->e;
    memset(e, 0, sizeof(*e));
    snprintf(e->serial, sizeof(e->serial), "%s", j->t.serial);
    e->sequence = f->sequence;
    snprintf(e->merchant_id, sizeof(e->merchant_id), "%s", j->t.merchant_id);
    snprintf(e->tid, sizeof(e->tid), "%s", j->t.tid);
    snprintf(e->username, sizeof(e->username), "%s", c->username);
    e->txn_type = f->txn_type;
    e->amount = (int64_t)f->amount;
    e->currency = f->currency;
    snprintf(e->masked_pan, sizeof(e->masked_pan), "%s", f->masked_pan);
    if (j->o.has_pan_hash) {
        mpos_hex_encode(j->o.pan_hash, sizeof(j->o.pan_hash), e->pan_hash);
    }
    mpos_hex_encode(f->ksn, f->ksn_len, e->ksn);
    bk_de7(e->transmit_time);
    snprintf(e->mti, sizeof(e->mti), "%s", f->txn_type == 4 ? "0100" : "0200");
    snprintf(e->proc_code, sizeof(e->proc_code), "%s", proc_code(f->txn_type));
    snprintf(e->entry_mode, sizeof(e->entry_mode), "%s", entry_mode(&j->o));
    if (f->txn_type == 2 || f->txn_type == 3) {
        snprintf(e->original_rrn, sizeof(e->original_rrn), "%.12s", f->original_ref);
    }
    e->has_location = 1;
    e->lat_e7 = c->lat_e7;
    e->lon_e7 = c->lon_e7;
    e->accuracy_m = c->accuracy_m;
    e->loc_time = (int64_t)c->loc_time;
    mpos_hex_encode(c->device_id, sizeof(c->device_id), e->device_id);
    snprintf(e->source_addr, sizeof(e->source_addr), "%s", c->source_addr);
    snprintf(e->alert, sizeof(e->alert), "%s", j->alert != NULL ? j->alert : "");
}

/* Builds and exchanges the 0200 / 0100; sets the result. */
static void go_upstream(struct job *j, const struct mpos_store_journal *orig)
{
    mpos_bk_txn *p = j->p;
    const struct hsm_sealed_fields *f = &j->o.fields;
    const struct mpos_store_journal *e = &j->e;
    mpos_iso8583_msg m;
    char de4[13], de11[7], de12[7], de13[5], de23[4], de42[16], de49[4], de90[43];
    char de62[2 * (8 + HSM_SEALED_TRACK2_ENC_MAX) + 1];
    uint8_t resp[BK_MSG_MAX];
    size_t resp_len = 0;
    snprintf(de4, sizeof(de4), "%012llu", f->txn_type == 4 ? 0ULL : (unsigned long long)f->amount);
    snprintf(de11, sizeof(de11), "%06lld", (long long)e->stan);
    /* Local time and date of the transaction: the terminal's clock (UTC). */
    snprintf(de12, sizeof(de12), "%.6s", f->datetime + 8);
    snprintf(de13, sizeof(de13), "%.4s", f->datetime + 4);
    snprintf(de42, sizeof(de42), "%-15s", j->t.merchant_id);
    snprintf(de49, sizeof(de49), "%03u", (unsigned)(f->currency % 1000));
    int rc = mpos_iso8583_init(&m, e->mti);
    if (rc == MPOS_OK && j->o.pan[0] != '\0') {
        rc = mpos_iso8583_set_str(&m, 2, j->o.pan);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 3, e->proc_code);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 4, de4);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 7, e->transmit_time);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 11, de11);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 12, de12);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 13, de13);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 22, e->entry_mode);
    }
    if (rc == MPOS_OK && j->o.psn[0] != '\0') {
        snprintf(de23, sizeof(de23), "0%.2s", j->o.psn);
        rc = mpos_iso8583_set_str(&m, 23, de23);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 25, "00");
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 32, p->cfg.acquirer_id);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 37, e->rrn);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 41, j->t.tid);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 42, de42);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 49, de49);
    }
    if (rc == MPOS_OK && j->o.pin_block_len == 8) {
        rc = mpos_iso8583_set(&m, 52, j->o.pin_block, 8);
    }
    if (rc == MPOS_OK && j->o.emv_len > 0) {
        rc = mpos_iso8583_set(&m, 55, j->o.emv, j->o.emv_len);
    }
    if (rc == MPOS_OK && j->o.track2_enc_len > 0) {
        uint8_t raw[8 + HSM_SEALED_TRACK2_ENC_MAX];
        memcpy(raw, j->o.track2_iv, 8);
        memcpy(raw + 8, j->o.track2_enc, j->o.track2_enc_len);
        mpos_hex_encode(raw, 8 + j->o.track2_enc_len, de62);
        rc = mpos_iso8583_set_str(&m, 62, de62);
    }
    if (rc == MPOS_OK && orig != NULL) {
        bk_de90(orig->mti, orig->stan, orig->transmit_time, p->cfg.acquirer_id, de90);
        rc = mpos_iso8583_set_str(&m, 90, de90);
    }
    if (rc != MPOS_OK) {
        set_code(j, "96");
        return;
    }
    /* Recorded as sent before the first byte leaves: a crash after the send still leaves
     * the entry to reverse. */
    pthread_mutex_lock(&p->store_mu);
    rc = mpos_store_journal_mark_sent(p->st, e->id, bk_now_s());
    pthread_mutex_unlock(&p->store_mu);
    if (rc != MPOS_OK) {
        set_code(j, "96");
        return;
    }
    char resp_mti[5];
    snprintf(resp_mti, sizeof(resp_mti), "%s", f->txn_type == 4 ? "0110" : "0210");
    rc = bk_up_exchange(p, &m, resp_mti, resp, &resp_len);
    if (rc == BK_UP_TIMEOUT) {
        char de7[11];
        int64_t rid = 0;
        set_code(j, "91");
        bk_de7(de7);
        pthread_mutex_lock(&p->store_mu);
        rc = mpos_store_reversal_queue(p->st, e->id, MPOS_REVERSAL_REASON_TIMEOUT, de7, bk_now_s(),
                                       &rid);
        pthread_mutex_unlock(&p->store_mu);
        if (rc != MPOS_OK && rc != MPOS_STORE_EXISTS) {
            fprintf(stderr, "mpos-backend: reversal not queued (%s)\n", mpos_store_strerror(rc));
        }
        bk_saf_kick(p);
        return;
    }
    if (rc != BK_UP_ANSWERED) {
        set_code(j, rc == BK_UP_NOT_SENT ? "91" : "96");
        return;
    }
    mpos_iso8583_msg r;
    const uint8_t *v = NULL;
    size_t n = 0;
    int present = 0;
    if (mpos_iso8583_unpack(resp, resp_len, &r) != MPOS_OK ||
        mpos_iso8583_get(&r, 39, &v, &n, &present) != MPOS_OK || !present || n != 2) {
        set_code(j, "96");
        return;
    }
    memcpy(j->rcode, v, 2);
    j->rcode[2] = '\0';
    if (mpos_iso8583_get(&r, 38, &v, &n, &present) == MPOS_OK && present && n <= 6) {
        memcpy(j->auth, v, n);
        j->auth[n] = '\0';
    }
    if (mpos_iso8583_get(&r, 55, &v, &n, &present) == MPOS_OK && present) {
        const uint8_t *tv = NULL;
        size_t tn = 0;
        if (bk_tlv_get(v, n, 0x91, &tv, &tn) == 1 && tn >= 8 && tn <= sizeof(j->iad)) {
            memcpy(j->iad, tv, tn);
            j->iad_len = tn;
        }
        if (bk_tlv_get(v, n, 0x8A, &tv, &tn) == 1 && tn == 2 && isalnum(tv[0]) && isalnum(tv[1])) {
            memcpy(j->arc, tv, 2);
            j->arc[2] = '\0';
        }
    }
}

/* Completes the journal entry with j's result. */
static int journal_complete(struct job *j)
{
    char iad_hex[2 * HSM_SEALED_IAD_MAX_LEN + 1] = "";
    if (j->iad_len > 0) {
        mpos_hex_encode(j->iad, j->iad_len, iad_hex);
    }
    pthread_mutex_lock(&j->p->store_mu);
    int rc = mpos_store_journal_complete(j->p->st, j->e.id, j->rcode, j->auth, j->arc, iad_hex,
                                         bk_now_s());
    pthread_mutex_unlock(&j->p->store_mu);
    return rc;
}

/* ISO 8583 DE 39 of the 0400 for the reason the terminal's sealed REVERSAL carries
 * (docs/protocol.md 2.3 DF34; docs/system-design.md 4.1). sealed.open guarantees 1..4. */
static const char *reversal_de39(uint8_t reason)
{
    switch (reason) {
    case 1: /* no valid response: the terminal timed out on us */
        return MPOS_REVERSAL_REASON_TIMEOUT;
    case 2: /* approved, then declined by the card (second GENERATE AC) */
        return MPOS_REVERSAL_REASON_CARD_DECLINED;
    case 3: /* power lost while online, or the card gone or mute after the approval */
        return MPOS_REVERSAL_REASON_TERMINAL_FAILED;
    default: /* 4, cancelled after the request went out: the terminal did not complete it, and
                the store's reasons have no customer-cancellation code (17) */
        return MPOS_REVERSAL_REASON_TERMINAL_FAILED;
    }
}

/* A REVERSAL from the terminal for the transaction of the same sequence number. */
static int process_reversal(struct job *j)
{
    mpos_bk_txn *p = j->p;
    pthread_mutex_lock(&p->store_mu);
    int rc = mpos_store_journal_get(p->st, j->t.serial, j->o.fields.sequence, &j->e);
    pthread_mutex_unlock(&p->store_mu);
    set_code(j, "00");
    if (rc == MPOS_STORE_NOT_FOUND) {
        /* Never seen: nothing went upstream, acknowledged here. */
        memset(&j->e, 0, sizeof(j->e));
        return MPOS_OK;
    }
    if (rc != MPOS_OK) {
        return rc < 0 ? rc : MPOS_ERR_ARG;
    }
    /* The switch needs a reversal only if the request reached it and was not declined
     * there; an entry still pending is reversed too (its outcome is unknown). */
    int needed = j->e.upstream_sent &&
                 (j->e.state == MPOS_JOURNAL_PENDING || strcmp(j->e.response_code, "00") == 0 ||
                  strcmp(j->e.response_code, "91") == 0);
    if (needed) {
        char de7[11];
        int64_t rid = 0;
        bk_de7(de7);
        /* The terminal's own reason, not a guess from the journal's outcome. */
        const char *reason = reversal_de39(j->o.fields.reversal_reason);
        pthread_mutex_lock(&p->store_mu);
        rc = mpos_store_reversal_queue(p->st, j->e.id, reason, de7, bk_now_s(), &rid);
        pthread_mutex_unlock(&p->store_mu);
        if (rc != MPOS_OK && rc != MPOS_STORE_EXISTS) {
            set_code(j, "96");
            return MPOS_OK;
        }
        bk_saf_kick(p);
    }
    return MPOS_OK;
}

/* Why a request got no sealed response: the stage and the error class, no data. */
static int refused(const char *stage, int rc)
{
    fprintf(stderr, "mpos-backend: request refused at %s (%d)\n", stage, rc);
    return rc;
}

static int process(struct job *j, const uint8_t *sealed, size_t len)
{
    mpos_bk_txn *p = j->p;
    const mpos_bk_txn_context *c = j->ctx;
    int64_t counter = 0;
    /* 1. the terminal */
    pthread_mutex_lock(&p->store_mu);
    int rc = mpos_store_terminal_get(p->st, c->serial, &j->t);
    if (rc == MPOS_OK) {
        rc = mpos_store_key_get(p->st, j->t.key_label, &j->bdk);
    }
    pthread_mutex_unlock(&p->store_mu);
    if (rc != MPOS_OK) {
        return refused("terminal", rc == MPOS_STORE_NOT_FOUND ? MPOS_BK_ERR_STATE
                                   : rc > 0                   ? MPOS_ERR_ARG
                                                              : rc);
    }
    if ((j->t.state != MPOS_TERMINAL_ACTIVE && j->t.state != MPOS_TERMINAL_SUSPENDED) ||
        j->t.activated_at == 0 ||
        (j->t.scheme != MPOS_SCHEME_AES_DUKPT && j->t.scheme != MPOS_SCHEME_TDES_DUKPT)) {
        return refused("terminal state", MPOS_BK_ERR_STATE);
    }
    /* 2. open in hsmd: the MAC first */
    struct hsm_sealed_open_req oq;
    memset(&oq, 0, sizeof(oq));
    oq.bdk.text = j->bdk.key_block;
    oq.bdk.len = strlen(j->bdk.key_block);
    oq.sealed = sealed;
    oq.sealed_len = len;
    oq.zpk.text = p->zpk;
    oq.zpk.len = strlen(p->zpk);
    oq.zek.text = p->zek;
    oq.zek.len = strlen(p->zek);
    pthread_mutex_lock(&p->hsm_mu);
    int hrc = hsm_client_sealed_open(&p->hsm, &oq, &j->o);
    pthread_mutex_unlock(&p->hsm_mu);
    rc = hsm_rc(hrc);
    if (rc != MPOS_OK) {
        (void)refused("sealed.open (hsmd status)", hrc);
        return rc;
    }
    rc = ksn_split(j, &counter);
    if (rc != MPOS_OK) {
        return refused("KSN of another terminal", rc);
    }
    if (j->t.state == MPOS_TERMINAL_SUSPENDED) {
        /* Verified, but the terminal may not transact: 58, no counter moved, no journal. */
        set_code(j, "58");
        return MPOS_OK;
    }
    /* 3. anti-replay */
    pthread_mutex_lock(&p->store_mu);
    rc = mpos_store_ksn_accept(p->st, j->t.serial, j->t.initial_ksn, counter, bk_now_s());
    pthread_mutex_unlock(&p->store_mu);
    if (rc == MPOS_STORE_REPLAY) {
        return refused("anti-replay", MPOS_ERR_VERIFY);
    }
    if (rc == MPOS_STORE_STATE) {
        return refused("anti-replay", MPOS_BK_ERR_STATE);
    }
    if (rc != MPOS_OK) {
        return refused("anti-replay", rc > 0 ? MPOS_ERR_ARG : rc);
    }
    if (j->o.fields.msg_type == 0x02) {
        return process_reversal(j);
    }
    /* 4. a retry of a sequence number */
    pthread_mutex_lock(&p->store_mu);
    rc = mpos_store_journal_get(p->st, j->t.serial, j->o.fields.sequence, &j->e);
    pthread_mutex_unlock(&p->store_mu);
    if (rc == MPOS_OK) {
        if (j->e.state == MPOS_JOURNAL_DONE) {
            from_journal(j);
        } else {
            set_code(j, "94");
        }
        return MPOS_OK;
    }
    if (rc != MPOS_STORE_NOT_FOUND) {
        return rc > 0 ? MPOS_ERR_ARG : rc;
    }
    if (j->o.fields.retry) {
        /* A retry (DF35) of a sequence number never seen: its first send never arrived. It
         * carries no PIN block and must never start a new charge: 25, nothing journaled,
         * nothing upstream (docs/system-design.md 4.3). A late first send cannot charge
         * either: its KSN counter is below the retry's, so anti-replay refuses it. */
        set_code(j, "25");
        return MPOS_OK;
    }
    /* 5. checks */
    run_checks(j);
    /* 6. the journal, before anything goes upstream */
    journal_fill(j);
    pthread_mutex_lock(&p->store_mu);
    rc = mpos_store_journal_insert(p->st, &j->e, bk_now_s());
    pthread_mutex_unlock(&p->store_mu);
    if (rc == MPOS_STORE_EXISTS) {
        /* Another worker (or node) took this sequence number a moment ago. */
        set_code(j, "94");
        memset(&j->e, 0, sizeof(j->e));
        return MPOS_OK;
    }
    if (rc != MPOS_OK) {
        return refused("journal", rc > 0 ? MPOS_ERR_ARG : rc);
    }
    /* 7. upstream, unless a check declined it */
    if (j->rcode[0] == '\0') {
        struct mpos_store_journal orig;
        int have_orig = 0;
        if (j->o.fields.txn_type == 2 || j->o.fields.txn_type == 3) {
            pthread_mutex_lock(&p->store_mu);
            rc = mpos_store_journal_get_rrn(p->st, j->e.original_rrn, &orig);
            pthread_mutex_unlock(&p->store_mu);
            /* The original is one of this merchant's approved transactions. */
            if (rc != MPOS_OK || strcmp(orig.merchant_id, j->t.merchant_id) != 0 ||
                strcmp(orig.response_code, "00") != 0 || orig.id == j->e.id) {
                set_code(j, "25");
            } else {
                have_orig = 1;
            }
        }
        if (j->rcode[0] == '\0') {
            go_upstream(j, have_orig ? &orig : NULL);
        }
        MPOS_WIPE_CTX(&orig);
    }
    /* 8. the result */
    rc = journal_complete(j);
    return rc == MPOS_OK ? MPOS_OK : rc > 0 ? MPOS_ERR_ARG : rc;
}

int mpos_bk_txn_process(mpos_bk_txn *p, const mpos_bk_txn_context *ctx, const uint8_t *sealed,
                        size_t len, uint8_t *resp, size_t cap, size_t *resp_len,
                        mpos_bk_txn_outcome *outcome)
{
    if (p == NULL || ctx == NULL || sealed == NULL || resp == NULL || resp_len == NULL ||
        outcome == NULL) {
        return MPOS_ERR_ARG;
    }
    *resp_len = 0;
    memset(outcome, 0, sizeof(*outcome));
    if (len == 0 || len > MPOS_BK_MAX_SEALED) {
        return MPOS_ERR_FORMAT;
    }
    pthread_mutex_lock(&p->life_mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->life_mu);
        return MPOS_BK_ERR_STATE;
    }
    p->in_flight++;
    pthread_mutex_unlock(&p->life_mu);

    struct job *j = calloc(1, sizeof(*j));
    int rc = j == NULL ? MPOS_ERR_LENGTH : MPOS_OK;
    if (rc == MPOS_OK) {
        j->p = p;
        j->ctx = ctx;
        rc = process(j, sealed, len);
    }
    if (rc == MPOS_OK) {
        rc = respond(j, resp, cap, resp_len);
        if (rc != MPOS_OK) {
            (void)refused("sealed.respond", rc);
        }
    }
    if (rc == MPOS_OK) {
        fill_outcome(j, outcome);
    }
    if (j != NULL) {
        /* The opened request held the PAN, the PIN block under the ZPK and card data. */
        MPOS_WIPE_CTX(j);
        free(j);
    }
    pthread_mutex_lock(&p->life_mu);
    p->in_flight--;
    pthread_cond_broadcast(&p->life_cv);
    pthread_mutex_unlock(&p->life_mu);
    return rc;
}

/* ---- settlement ------------------------------------------------------------------------- */

struct settle_text {
    char *text;
    size_t cap, len;
    int overflow;
};

static int settle_line(void *ctx, const struct mpos_store_settle_totals *t)
{
    struct settle_text *s = ctx;
    int n =
        snprintf(s->text + s->len, s->cap - s->len,
                 "batch=%lld merchant=%s terminal=%s currency=%lld sale_count=%lld "
                 "sale_amount=%lld refund_count=%lld refund_amount=%lld void_count=%lld "
                 "void_amount=%lld net_amount=%lld\n",
                 (long long)t->batch, t->merchant_id, t->tid, (long long)t->currency,
                 (long long)t->sale_count, (long long)t->sale_amount, (long long)t->refund_count,
                 (long long)t->refund_amount, (long long)t->void_count, (long long)t->void_amount,
                 (long long)(t->sale_amount - t->refund_amount - t->void_amount));
    if (n < 0 || (size_t)n >= s->cap - s->len) {
        s->overflow = 1;
        return 1;
    }
    s->len += (size_t)n;
    return 0;
}

int mpos_bk_txn_settle(mpos_bk_txn *p, const char *merchant_id, char *text, size_t cap)
{
    struct settle_text s = {text, cap, 0, 0};
    int64_t batches = 0;
    if (p == NULL || text == NULL || cap < 2) {
        return MPOS_ERR_ARG;
    }
    text[0] = '\0';
    pthread_mutex_lock(&p->store_mu);
    int rc = mpos_store_settle(p->st, merchant_id, bk_now_s(), settle_line, &s, &batches);
    pthread_mutex_unlock(&p->store_mu);
    if (s.overflow) {
        return MPOS_ERR_LENGTH; /* the transaction rolled back: nothing was closed */
    }
    if (rc != MPOS_OK) {
        return rc == MPOS_STORE_NOT_FOUND ? MPOS_ERR_ARG : rc > 0 ? MPOS_ERR_ARG : rc;
    }
    int n = snprintf(text + s.len, cap - s.len, "batches=%lld\n", (long long)batches);
    return (n < 0 || (size_t)n >= cap - s.len) ? MPOS_ERR_LENGTH : MPOS_OK;
}
