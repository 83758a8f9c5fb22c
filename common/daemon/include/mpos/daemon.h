/* openmpos: daemon plumbing shared by mpos-hsmd and mpos-backend (common/daemon).
 *
 * - Worker threads: one thread, one libevent event_base; the accept loop (another thread)
 *   hands it fixed-size items (an accepted socket and what goes with it) through a small
 *   locked queue and wakes it with an event. The owner's callback turns an item into a
 *   connection on the worker's base.
 * - INI value parsing: strict decimal integers in a range, owned string copies.
 * - Early hardening: no core dumps, not dumpable (a dump would hold keys).
 *
 * The caller must have called evthread_use_pthreads() before mpos_dworker_start(): the hand-off
 * activates the wake event from another thread. Heap is used (server code).
 */
#ifndef MPOS_DAEMON_H
#define MPOS_DAEMON_H

#include <pthread.h>
#include <stddef.h>

#include "mpos/err.h"

struct event_base;
struct event;

/* ---- worker threads -------------------------------------------------------------------- */

/* Called on the worker thread for each handed item (item_size bytes; the callback may keep a
 * copy, not the pointer). */
typedef void (*mpos_dworker_item_fn)(void *owner, const void *item);
/* Optional, on the worker thread after its loop was asked to exit: the bytes still to be sent
 * (the callback also stops reading new work). The loop then runs in 50 ms slices while it is
 * not 0, for at most one second: the answers of the last callbacks still go out. */
typedef size_t (*mpos_dworker_drain_fn)(void *owner);
/* Called by mpos_dworker_destroy() for each item still queued (e.g. to close its socket). */
typedef void (*mpos_dworker_discard_fn)(void *item);

struct mpos_dworker {
    /* set by mpos_dworker_init */
    void *owner;
    size_t item_size;
    mpos_dworker_item_fn on_item;
    mpos_dworker_drain_fn drain;     /* NULL: none */
    mpos_dworker_discard_fn discard; /* NULL: none */
    int graceful; /* 1: stop lets a running callback finish (loopexit); 0: loopbreak */
    /* state */
    struct event_base *base; /* the worker's loop: connections are created on it */
    struct event *wake;
    pthread_t thread;
    int started;
    int lock_ready;
    pthread_mutex_t lock; /* guards queue */
    unsigned char *queue;
    size_t queue_len, queue_cap; /* in items */
};

/* Sets the worker up (mutex, callbacks); no thread yet. item_size > 0, on_item not NULL. */
int mpos_dworker_init(struct mpos_dworker *w, void *owner, size_t item_size,
                      mpos_dworker_item_fn on_item, mpos_dworker_drain_fn drain,
                      mpos_dworker_discard_fn discard, int graceful) MPOS_MUST_CHECK;
/* Creates the event_base and the wake event and starts the thread. 0 or -1. */
int mpos_dworker_start(struct mpos_dworker *w) MPOS_MUST_CHECK;
/* Any thread: queues a copy of item and wakes the worker. 0, or -1 (out of memory: the caller
 * still owns what the item refers to). */
int mpos_dworker_hand(struct mpos_dworker *w, const void *item) MPOS_MUST_CHECK;
/* Asks the loop to stop (see graceful) and joins the thread; nothing when not started. */
void mpos_dworker_stop(struct mpos_dworker *w);
/* After stop and after the owner freed its connections (they live on w->base): discards the
 * queued items, frees the wake event, the base and the mutex. Safe on a worker that was only
 * initialised or zeroed. */
void mpos_dworker_destroy(struct mpos_dworker *w);

/* ---- INI values ------------------------------------------------------------------------ */

/* Replaces *dst by a copy of v (the old value freed). 0 or -1 (out of memory). */
int mpos_cfg_set_str(char **dst, const char *v) MPOS_MUST_CHECK;
/* Decimal with an optional '-', nothing else, min..max. 0 or -1. */
int mpos_cfg_parse_long(const char *v, long min, long max, long *out) MPOS_MUST_CHECK;
/* Decimal digits only (no sign, no space), min..max. 0 or -1. */
int mpos_cfg_parse_ulong(const char *v, unsigned long min, unsigned long max,
                         unsigned long *out) MPOS_MUST_CHECK;
/* mpos_cfg_parse_long into an int or an unsigned (min >= 0 for the latter). */
int mpos_cfg_set_int(int *dst, const char *v, long min, long max) MPOS_MUST_CHECK;
int mpos_cfg_set_uint(unsigned *dst, const char *v, long min, long max) MPOS_MUST_CHECK;

/* A flag with a value and the (section, key) it sets. */
struct mpos_cfg_flag {
    const char *flag, *section, *key;
};
/* The entry of table (n entries) for flag, or NULL. */
const struct mpos_cfg_flag *mpos_cfg_flag_find(const struct mpos_cfg_flag *table, size_t n,
                                               const char *flag);

/* ---- hardening ------------------------------------------------------------------------- */

/* Core dumps off (RLIMIT_CORE 0) and not dumpable (also keeps ptrace of the same user out).
 * Call first thing, and again after a change of credentials (which resets dumpable). 0, or -1
 * after "<prog>: disabling core dumps: <error>" on stderr. */
int mpos_daemon_harden_early(const char *prog) MPOS_MUST_CHECK;

#endif
