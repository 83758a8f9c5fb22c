/* mpos_bk_txn: store-and-forward reversals (docs/system-design.md 4.2).
 *
 * A reversal is a row of the store's queue before its first send (mpos_store_reversal_queue),
 * so a crash never loses one. This thread reads the queue at start-up (the rows of earlier
 * runs) and then every [upstream] saf_interval_ms, or at once when the processor queues a new
 * one, and sends each pending reversal as an 0400 until an 0410 for its STAN arrives (any
 * response code: the switch has recorded it). The 0400 carries the original's processing
 * code, amount, RRN, terminal and merchant IDs and currency, a STAN and DE 7 of its own,
 * DE 90 (the original's MTI, STAN, DE 7 and acquirer) and the reason in DE 39. The PAN
 * (DE 2) is not sent: the journal never holds it in clear (G-ACCT-4), and DE 90 with DE 37
 * identifies the original.
 */
#define _GNU_SOURCE /* clock_gettime, gmtime_r, strcasecmp, M_PI */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bk_int.h"

void bk_de90(const char *mti, int64_t stan, const char *de7, const char *acquirer, char out[43])
{
    char acq[12];
    size_t n = strlen(acquirer);
    /* The acquirer ID is n..11: right-justified, zero-filled to 11 digits. */
    memset(acq, '0', 11);
    acq[11] = '\0';
    if (n > 11) {
        n = 11;
    }
    memcpy(acq + 11 - n, acquirer, n);
    char buf[64];
    snprintf(buf, sizeof(buf), "%.4s%06lld%.10s%.11s00000000000", mti, (long long)(stan % 1000000),
             de7, acq);
    memcpy(out, buf, 42);
    out[42] = '\0';
}

struct saf_list {
    struct mpos_store_reversal r[16];
    size_t n;
};

static int collect(void *ctx, const struct mpos_store_reversal *r)
{
    struct saf_list *l = ctx;
    if (l->n >= sizeof(l->r) / sizeof(l->r[0])) {
        return 1; /* the rest in the next round */
    }
    l->r[l->n++] = *r;
    return 0;
}

/* Sends one reversal; 1 when an 0410 acknowledged it. */
static int forward_one(mpos_bk_txn *p, const struct mpos_store_reversal *r)
{
    const struct mpos_store_journal *o = &r->orig;
    mpos_iso8583_msg m;
    /* mpos_iso8583_set keeps pointers, not copies: every value lives until the send. */
    char de4[13], de11[7], de42[16], de49[4], de90[43];
    uint8_t resp[BK_MSG_MAX];
    size_t resp_len = 0;
    snprintf(de4, sizeof(de4), "%012lld", (long long)o->amount);
    snprintf(de11, sizeof(de11), "%06lld", (long long)r->stan);
    snprintf(de49, sizeof(de49), "%03lld", (long long)o->currency);
    bk_de90(o->mti, o->stan, o->transmit_time, p->cfg.acquirer_id, de90);
    int rc = mpos_iso8583_init(&m, "0400");
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 3, o->proc_code);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 4, de4);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 7, r->transmit_time);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 11, de11);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 32, p->cfg.acquirer_id);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 37, o->rrn);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 39, r->reason);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 41, o->tid);
    }
    if (rc == MPOS_OK) {
        snprintf(de42, sizeof(de42), "%-15s", o->merchant_id);
        rc = mpos_iso8583_set_str(&m, 42, de42);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 49, de49);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 90, de90);
    }
    if (rc != MPOS_OK) {
        fprintf(stderr, "mpos-backend: reversal %lld cannot be encoded\n", (long long)r->id);
        return 0;
    }
    pthread_mutex_lock(&p->store_mu);
    if (mpos_store_reversal_attempt(p->st, r->id, bk_now_s()) != MPOS_OK) {
        /* Only a counter: the send goes ahead. */
        fprintf(stderr, "mpos-backend: reversal attempt not counted\n");
    }
    pthread_mutex_unlock(&p->store_mu);
    rc = bk_up_exchange(p, &m, "0410", resp, &resp_len);
    if (rc != BK_UP_ANSWERED) {
        return 0;
    }
    pthread_mutex_lock(&p->store_mu);
    rc = mpos_store_reversal_done(p->st, r->id, bk_now_s());
    pthread_mutex_unlock(&p->store_mu);
    return rc == MPOS_OK || rc == MPOS_STORE_STATE;
}

static void *saf_main(void *arg)
{
    mpos_bk_txn *p = arg;
    static struct saf_list l; /* one SAF thread per process; keeps 16 KiB off its stack */
    for (;;) {
        pthread_mutex_lock(&p->life_mu);
        if (!p->stopping && !p->saf_kick) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int ms = p->cfg.saf_interval_ms;
            ts.tv_sec += ms / 1000;
            ts.tv_nsec += (long)(ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&p->life_cv, &p->life_mu, &ts);
        }
        int stopping = p->stopping && p->in_flight == 0;
        p->saf_kick = 0;
        pthread_mutex_unlock(&p->life_mu);
        if (stopping) {
            break;
        }
        if (!bk_up_ready(p)) {
            continue;
        }
        memset(&l, 0, sizeof(l));
        pthread_mutex_lock(&p->store_mu);
        int rc = mpos_store_reversal_list_pending(p->st, collect, &l);
        pthread_mutex_unlock(&p->store_mu);
        if (rc < 0) {
            fprintf(stderr, "mpos-backend: reversal queue unreadable (%s)\n",
                    mpos_store_strerror(rc));
            continue;
        }
        for (size_t i = 0; i < l.n; i++) {
            if (!forward_one(p, &l.r[i])) {
                break; /* the link is not answering: try again after the interval */
            }
        }
    }
    return NULL;
}

int bk_saf_start(mpos_bk_txn *p)
{
    p->saf_kick = 1; /* the queue of earlier runs first */
    if (pthread_create(&p->saf_thread, NULL, saf_main, p) != 0) {
        return MPOS_ERR_ARG;
    }
    p->saf_started = 1;
    return MPOS_OK;
}

void bk_saf_kick(mpos_bk_txn *p)
{
    pthread_mutex_lock(&p->life_mu);
    p->saf_kick = 1;
    pthread_cond_broadcast(&p->life_cv);
    pthread_mutex_unlock(&p->life_mu);
}

void bk_saf_stop(mpos_bk_txn *p)
{
    if (!p->saf_started) {
        return;
    }
    bk_saf_kick(p);
    pthread_join(p->saf_thread, NULL);
    p->saf_started = 0;
}
