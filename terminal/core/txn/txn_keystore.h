/* openmpos terminal core: the transaction machine's store (txn.h, mpos_txn_store) on the key
 * store (terminal/core/keystore). Header-only, so that mpos_txn does not depend on the key
 * store's library: the port that includes this links mpos_keystore. */
#ifndef MPOS_TERMINAL_TXN_KEYSTORE_H
#define MPOS_TERMINAL_TXN_KEYSTORE_H

#include "keystore/keystore.h"
#include "txn/txn.h"

static inline int mpos_txn_ks_next(void *ctx, mpos_keystore_txn *keys)
{
    return mpos_keystore_next_transaction((mpos_keystore *)ctx, keys);
}

static inline int mpos_txn_ks_activation(void *ctx, char mid[MPOS_KEYSTORE_MID_LEN + 1],
                                         char tid[MPOS_KEYSTORE_TID_LEN + 1])
{
    return mpos_keystore_activation((const mpos_keystore *)ctx, mid, tid);
}

static inline int mpos_txn_ks_rev_store(void *ctx, const mpos_keystore_reversal *r)
{
    return mpos_keystore_reversal_store((mpos_keystore *)ctx, r);
}

static inline int mpos_txn_ks_rev_get(void *ctx, mpos_keystore_reversal *r)
{
    return mpos_keystore_reversal_get((const mpos_keystore *)ctx, r);
}

static inline int mpos_txn_ks_rev_done(void *ctx, uint32_t sequence)
{
    return mpos_keystore_reversal_done((mpos_keystore *)ctx, sequence);
}

/* Fills s with the key store ks (which must outlive the transaction context). */
static inline void mpos_txn_store_keystore(mpos_txn_store *s, mpos_keystore *ks)
{
    s->ctx = ks;
    s->next_transaction = mpos_txn_ks_next;
    s->activation = mpos_txn_ks_activation;
    s->reversal_store = mpos_txn_ks_rev_store;
    s->reversal_get = mpos_txn_ks_rev_get;
    s->reversal_done = mpos_txn_ks_rev_done;
}

#endif
