/* mpos_daemon worker threads: one event_base per thread, fed through a locked queue and woken
 * by an event the accepting thread activates (event_active is thread-safe once
 * evthread_use_pthreads() ran). */
#include "mpos/daemon.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct mpos_dworker *w = arg;
    unsigned char item[256];
    unsigned char *it = w->item_size <= sizeof(item) ? item : malloc(w->item_size);
    (void)fd;
    (void)what;
    if (it == NULL) {
        /* Retry on the next wake: the items stay queued. */
        return;
    }
    for (;;) {
        pthread_mutex_lock(&w->lock);
        if (w->queue_len == 0) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        memcpy(it, w->queue, w->item_size);
        memmove(w->queue, w->queue + w->item_size, (w->queue_len - 1) * w->item_size);
        w->queue_len--;
        pthread_mutex_unlock(&w->lock);
        w->on_item(w->owner, it);
    }
    if (it != item) {
        free(it);
    }
}

int mpos_dworker_init(struct mpos_dworker *w, void *owner, size_t item_size,
                      mpos_dworker_item_fn on_item, mpos_dworker_drain_fn drain,
                      mpos_dworker_discard_fn discard, int graceful)
{
    memset(w, 0, sizeof(*w));
    if (item_size == 0 || on_item == NULL || pthread_mutex_init(&w->lock, NULL) != 0) {
        return -1;
    }
    w->lock_ready = 1;
    w->owner = owner;
    w->item_size = item_size;
    w->on_item = on_item;
    w->drain = drain;
    w->discard = discard;
    w->graceful = graceful;
    return 0;
}

int mpos_dworker_hand(struct mpos_dworker *w, const void *item)
{
    pthread_mutex_lock(&w->lock);
    if (w->queue_len == w->queue_cap) {
        size_t cap = w->queue_cap != 0 ? 2 * w->queue_cap : 16;
        unsigned char *q = realloc(w->queue, cap * w->item_size);
        if (q == NULL) {
            pthread_mutex_unlock(&w->lock);
            return -1;
        }
        w->queue = q;
        w->queue_cap = cap;
    }
    memcpy(w->queue + w->queue_len * w->item_size, item, w->item_size);
    w->queue_len++;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0);
    return 0;
}

static void *worker_main(void *arg)
{
    struct mpos_dworker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    if (w->drain != NULL) {
        for (int i = 0; i < 20 && w->drain(w->owner) > 0; i++) {
            struct timeval tv = {0, 50000};
            event_base_loopexit(w->base, &tv);
            event_base_loop(w->base, 0);
        }
    }
    return NULL;
}

int mpos_dworker_start(struct mpos_dworker *w)
{
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

void mpos_dworker_stop(struct mpos_dworker *w)
{
    if (w->started) {
        /* loopexit lets a callback in progress (a transaction waiting for the switch) finish
         * and answer first; loopbreak stops at once. */
        if (w->graceful) {
            event_base_loopexit(w->base, NULL);
        } else {
            event_base_loopbreak(w->base);
        }
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

void mpos_dworker_destroy(struct mpos_dworker *w)
{
    if (w->lock_ready) {
        pthread_mutex_lock(&w->lock);
    }
    for (size_t i = 0; w->discard != NULL && i < w->queue_len; i++) {
        w->discard(w->queue + i * w->item_size);
    }
    free(w->queue);
    w->queue = NULL;
    w->queue_len = w->queue_cap = 0;
    if (w->lock_ready) {
        pthread_mutex_unlock(&w->lock);
        pthread_mutex_destroy(&w->lock);
        w->lock_ready = 0;
    }
    if (w->wake != NULL) {
        event_free(w->wake);
        w->wake = NULL;
    }
    if (w->base != NULL) {
        event_base_free(w->base);
        w->base = NULL;
    }
}
