/* mpos-backend worker: one thread, one event_base, one store handle. The accept loop hands it
 * sockets through a small locked queue and wakes it with an event (hsm/hsmd/worker.c's
 * pattern). */
#include "server.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct bs_worker *w = arg;
    (void)fd;
    (void)what;
    for (;;) {
        struct bs_handoff h;
        pthread_mutex_lock(&w->lock);
        if (w->queue_len == 0) {
            pthread_mutex_unlock(&w->lock);
            return;
        }
        h = w->queue[0];
        memmove(w->queue, w->queue + 1, (w->queue_len - 1) * sizeof(w->queue[0]));
        w->queue_len--;
        pthread_mutex_unlock(&w->lock);
        if (bs_conn_new(w, &h) == NULL) {
            atomic_fetch_sub(&w->srv->clients, 1);
        }
    }
}

int bs_worker_hand(struct bs_worker *w, const struct bs_handoff *h)
{
    pthread_mutex_lock(&w->lock);
    if (w->queue_len == w->queue_cap) {
        size_t cap = w->queue_cap != 0 ? 2 * w->queue_cap : 16;
        struct bs_handoff *q = realloc(w->queue, cap * sizeof(*q));
        if (q == NULL) {
            pthread_mutex_unlock(&w->lock);
            return -1;
        }
        w->queue = q;
        w->queue_cap = cap;
    }
    w->queue[w->queue_len++] = *h;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0); /* thread-safe: evthread_use_pthreads() in main */
    return 0;
}

static void *worker_main(void *arg)
{
    struct bs_worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    /* Shutdown: the answers of the last callbacks (a transaction that finished while we
     * were asked to stop) still go out, reading nothing new, for at most one second. */
    for (int i = 0; i < 20 && bs_conns_quiesce(w) > 0; i++) {
        struct timeval tv = {0, 50000};
        event_base_loopexit(w->base, &tv);
        event_base_loop(w->base, 0);
    }
    return NULL;
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
    w->base = event_base_new();
    if (w->base == NULL) {
        return -1;
    }
    w->wake = event_new(w->base, -1, 0, on_wake, w);
    if (w->wake == NULL || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        return -1;
    }
    w->started = 1;
    return 0;
}

void bs_worker_stop(struct bs_worker *w)
{
    if (w->started) {
        /* loopexit, not loopbreak: a callback in progress (a transaction waiting for the
         * switch) finishes and answers first. */
        event_base_loopexit(w->base, NULL);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

void bs_worker_free(struct bs_worker *w)
{
    while (w->conns != NULL) {
        bs_conn_free(w->conns);
    }
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->queue_len; i++) {
        close(w->queue[i].fd);
    }
    free(w->queue);
    w->queue = NULL;
    w->queue_len = w->queue_cap = 0;
    pthread_mutex_unlock(&w->lock);
    if (w->wake != NULL) {
        event_free(w->wake);
        w->wake = NULL;
    }
    if (w->base != NULL) {
        event_base_free(w->base);
        w->base = NULL;
    }
    mpos_store_close(w->store);
    w->store = NULL;
}
