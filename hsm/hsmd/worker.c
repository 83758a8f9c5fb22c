/* mpos-hsmd worker: one thread, one event loop (common/daemon's mpos_dworker), its own crypto
 * context. The main thread hands it accepted connections through the worker's queue. */
#include "hsmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpos/util.h"

static void on_item(void *owner, const void *item)
{
    struct hsmd_worker *w = owner;
    const struct hsmd_handoff *h = item;
    if (hsmd_session_new(w, h) == NULL) {
        close(h->fd);
        atomic_fetch_sub(&w->srv->clients, 1);
    }
}

static void discard(void *item)
{
    close(((struct hsmd_handoff *)item)->fd);
}

int hsmd_worker_hand(struct hsmd_worker *w, const struct hsmd_handoff *h)
{
    return mpos_dworker_hand(&w->dw, h);
}

int hsmd_worker_start(struct hsmd_worker *w)
{
    /* The worker's vault handle: the owner's locked arena (read-only from here on) with a
     * crypto context of its own, since a context serves one thread at a time. */
    w->vault = w->srv->vault;
    memset(&w->vault.cc, 0, sizeof(w->vault.cc));
    if (mpos_crypto_init(&w->vault.cc) != MPOS_OK) {
        fprintf(stderr, "mpos-hsmd: worker %u: cannot initialise the crypto context\n", w->index);
        return -1;
    }
    w->out_cap = HSM_PROTO_PREFIX_LEN + HSM_PROTO_MAX_RESPONSE;
    w->out = malloc(w->out_cap);
    if (w->out == NULL) {
        return -1;
    }
    /* Not graceful: a command is short and stopping must not wait for a slow client. */
    if (mpos_dworker_init(&w->dw, w, sizeof(struct hsmd_handoff), on_item, NULL, discard, 0) != 0) {
        return -1;
    }
    return mpos_dworker_start(&w->dw);
}

void hsmd_worker_stop(struct hsmd_worker *w)
{
    mpos_dworker_stop(&w->dw);
}

void hsmd_worker_free(struct hsmd_worker *w)
{
    while (w->sessions != NULL) {
        hsmd_session_free(w->sessions);
    }
    mpos_dworker_destroy(&w->dw);
    if (w->out != NULL) {
        mpos_cleanse(w->out, w->out_cap);
        free(w->out);
        w->out = NULL;
    }
    mpos_crypto_clear(&w->vault.cc);
    MPOS_WIPE_CTX(&w->vault); /* the arena itself is wiped by its owner */
    MPOS_WIPE_BUFFER(w->kcv_cache);
}
