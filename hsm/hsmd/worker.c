/* mpos-hsmd worker: one thread, one event loop, its own crypto context. The main thread
 * hands it accepted connections through a small locked queue and wakes it with an event. */
#include "hsmd.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpos/util.h"

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct hsmd_worker *w = arg;
    (void)fd;
    (void)what;
    for (;;) {
        struct hsmd_handoff h;
        pthread_mutex_lock(&w->lock);
        if (w->queue_len == 0) {
            pthread_mutex_unlock(&w->lock);
            return;
        }
        h = w->queue[0];
        memmove(w->queue, w->queue + 1, (w->queue_len - 1) * sizeof(w->queue[0]));
        w->queue_len--;
        pthread_mutex_unlock(&w->lock);
        if (hsmd_session_new(w, &h) == NULL) {
            close(h.fd);
            atomic_fetch_sub(&w->srv->clients, 1);
        }
    }
}

int hsmd_worker_hand(struct hsmd_worker *w, const struct hsmd_handoff *h)
{
    pthread_mutex_lock(&w->lock);
    if (w->queue_len == w->queue_cap) {
        size_t cap = w->queue_cap != 0 ? 2 * w->queue_cap : 16;
        struct hsmd_handoff *q = realloc(w->queue, cap * sizeof(*q));
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
    struct hsmd_worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
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
    w->base = event_base_new();
    if (w->out == NULL || w->base == NULL) {
        return -1;
    }
    w->wake = event_new(w->base, -1, 0, on_wake, w);
    if (w->wake == NULL || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        return -1;
    }
    w->started = 1;
    return 0;
}

void hsmd_worker_stop(struct hsmd_worker *w)
{
    if (w->started) {
        event_base_loopbreak(w->base);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

void hsmd_worker_free(struct hsmd_worker *w)
{
    while (w->sessions != NULL) {
        hsmd_session_free(w->sessions);
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
    if (w->out != NULL) {
        mpos_cleanse(w->out, w->out_cap);
        free(w->out);
        w->out = NULL;
    }
    mpos_crypto_clear(&w->vault.cc);
    MPOS_WIPE_CTX(&w->vault); /* the arena itself is wiped by its owner */
    MPOS_WIPE_BUFFER(w->kcv_cache);
}
