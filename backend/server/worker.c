/* mpos-backend worker: one thread, one event_base (common/daemon's mpos_dworker), one store
 * handle. The accept loop hands it sockets through the worker's queue. */
#include "server.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_item(void *owner, const void *item)
{
    struct bs_worker *w = owner;
    if (bs_conn_new(w, item) == NULL) {
        atomic_fetch_sub(&w->srv->clients, 1);
    }
}

/* Shutdown: the answers of the last callbacks (a transaction that finished while we were
 * asked to stop) still go out, reading nothing new. */
static size_t drain(void *owner)
{
    return bs_conns_quiesce(owner);
}

static void discard(void *item)
{
    close(((struct bs_handoff *)item)->fd);
}

int bs_worker_hand(struct bs_worker *w, const struct bs_handoff *h)
{
    return mpos_dworker_hand(&w->dw, h);
}

int bs_worker_start(struct bs_worker *w)
{
    int rc = mpos_store_open(w->srv->cfg->store_db, 0, 0, &w->store);
    if (rc != 0) {
        fprintf(stderr, "mpos-backend: worker %u: store %s: %s\n", w->index, w->srv->cfg->store_db,
                mpos_store_strerror(rc));
        return -1;
    }
    mpos_store_set_actor(w->store, "mpos-backend");
    /* graceful: a callback in progress (a transaction waiting for the switch) finishes and
     * answers before the loop stops. */
    if (mpos_dworker_init(&w->dw, w, sizeof(struct bs_handoff), on_item, drain, discard, 1) != 0) {
        return -1;
    }
    return mpos_dworker_start(&w->dw);
}

void bs_worker_stop(struct bs_worker *w)
{
    mpos_dworker_stop(&w->dw);
}

void bs_worker_free(struct bs_worker *w)
{
    while (w->conns != NULL) {
        bs_conn_free(w->conns);
    }
    mpos_dworker_destroy(&w->dw);
    mpos_store_close(w->store);
    w->store = NULL;
}
