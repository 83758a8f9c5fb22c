/* A test double of the transaction processor (backend/txn/bk_txn.h) for mpos-backend's own
 * tests, which exercise the network side (sessions, envelope, inner TLS) without mpos-hsmd
 * or a switch. It is linked only into mpos-backend-testd, never into mpos-backend.
 *
 * process(): a "sealed request" whose first byte is 0x00 does not verify (MPOS_ERR_VERIFY);
 * any other is answered with a "response" = "RESP:" || the request, and an approved outcome
 * whose amount and type come from the operator's intent (so the tests see the intent pass).
 * A request starting 0x02 takes 1.5 s (a transaction in flight at shutdown). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bk_txn.h"

struct mpos_bk_txn {
    int started;
};

int mpos_bk_txn_start(const mpos_bk_txn_config *cfg, mpos_bk_txn **out)
{
    if (cfg == NULL || out == NULL || cfg->store_path == NULL) {
        return MPOS_ERR_ARG;
    }
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        return MPOS_ERR_ARG;
    }
    (*out)->started = 1;
    return 0;
}

int mpos_bk_txn_process(mpos_bk_txn *p, const mpos_bk_txn_context *ctx, const uint8_t *sealed,
                        size_t len, uint8_t *resp, size_t cap, size_t *resp_len,
                        mpos_bk_txn_outcome *o)
{
    if (p == NULL || ctx == NULL || sealed == NULL || len == 0 || resp_len == NULL || o == NULL) {
        return MPOS_ERR_ARG;
    }
    if (sealed[0] == 0x00) {
        return MPOS_ERR_VERIFY;
    }
    if (sealed[0] == 0x02) {
        struct timespec ts = {1, 500000000};
        nanosleep(&ts, NULL);
    }
    if (len + 5 > cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(resp, "RESP:", 5);
    memcpy(resp + 5, sealed, len);
    *resp_len = len + 5;
    memset(o, 0, sizeof(*o));
    o->txn_type = ctx->has_intent ? ctx->intent_type : 1;
    o->amount = ctx->has_intent ? ctx->intent_amount : 0;
    o->currency = ctx->has_intent ? ctx->intent_currency : 156;
    o->sequence = 1;
    memcpy(o->merchant_id, "MERCHANT0000001", 16);
    memcpy(o->terminal_id, "00000001", 9);
    memcpy(o->masked_pan, "622588******1234", 17);
    memcpy(o->response_code, "00", 3);
    memcpy(o->auth_code, "123456", 7);
    memcpy(o->rrn, "000000000001", 13);
    return 0;
}

int mpos_bk_txn_settle(mpos_bk_txn *p, const char *merchant_id, char *text, size_t cap)
{
    if (p == NULL || merchant_id == NULL || text == NULL || cap < 64) {
        return MPOS_ERR_ARG;
    }
    strcpy(text, "batch=1\nsale_count=0\nsale_amount=0\n");
    return 0;
}

/* A fixed journal: RRN 000000000001 an approved sale of 1234 in 156; 000000000002 voided;
 * 000000000003 declined; any other unknown (the same for every merchant). */
int mpos_bk_txn_lookup(mpos_bk_txn *p, const char *merchant_id, const char *rrn, uint64_t *amount,
                       uint16_t *currency, int *state)
{
    if (p == NULL || merchant_id == NULL || rrn == NULL || amount == NULL || currency == NULL ||
        state == NULL) {
        return MPOS_ERR_ARG;
    }
    *amount = 0;
    *currency = 0;
    *state = MPOS_BK_ORIG_NOT_FOUND;
    if (strcmp(rrn, "000000000001") == 0) {
        *state = MPOS_BK_ORIG_APPROVED;
        *amount = 1234;
        *currency = 156;
    } else if (strcmp(rrn, "000000000002") == 0) {
        *state = MPOS_BK_ORIG_VOIDED;
    } else if (strcmp(rrn, "000000000003") == 0) {
        *state = MPOS_BK_ORIG_NOT_APPROVED;
    }
    return 0;
}

void mpos_bk_txn_stop(mpos_bk_txn *p)
{
    free(p);
}
