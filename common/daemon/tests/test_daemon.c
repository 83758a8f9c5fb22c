/* common/daemon: INI values and the worker hand-off queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include "mpos/daemon.h"

static void test_parse(void **state)
{
    long l = 0;
    unsigned long u = 0;
    int i = 0;
    unsigned x = 0;
    (void)state;
    assert_int_equal(mpos_cfg_parse_long("-5", -10, 10, &l), 0);
    assert_int_equal(l, -5);
    assert_int_equal(mpos_cfg_parse_long("11", -10, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_long(" 1", 0, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_long("+1", 0, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_long("1x", 0, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_long("", 0, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_long("-", 0, 10, &l), -1);
    assert_int_equal(mpos_cfg_parse_ulong("-1", 0, 10, &u), -1);
    assert_int_equal(mpos_cfg_parse_ulong("7", 0, 10, &u), 0);
    assert_int_equal(u, 7);
    assert_int_equal(mpos_cfg_parse_ulong("99999999999999999999999", 0, 10, &u), -1);
    assert_int_equal(mpos_cfg_set_int(&i, "-3", -5, 5), 0);
    assert_int_equal(i, -3);
    assert_int_equal(mpos_cfg_set_uint(&x, "65535", 1, 65535), 0);
    assert_int_equal(x, 65535);
    assert_int_equal(mpos_cfg_set_uint(&x, "0", 1, 65535), -1);
    assert_int_equal(x, 65535); /* unchanged on error */
    char *s = NULL;
    assert_int_equal(mpos_cfg_set_str(&s, "a"), 0);
    assert_int_equal(mpos_cfg_set_str(&s, "bc"), 0);
    assert_string_equal(s, "bc");
    free(s);
    static const struct mpos_cfg_flag flags[] = {{"--a", "s", "a"}, {"--b", "s", "b"}};
    assert_ptr_equal(mpos_cfg_flag_find(flags, 2, "--b"), &flags[1]);
    assert_null(mpos_cfg_flag_find(flags, 2, "--c"));
}

struct item {
    int fd;
    unsigned seq;
};

struct owner {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned got, next_expected;
    int in_order;
    pthread_t thread;
    unsigned discarded;
};

static void on_item(void *arg, const void *it)
{
    struct owner *o = arg;
    const struct item *i = it;
    pthread_mutex_lock(&o->lock);
    o->in_order &= i->seq == o->next_expected;
    o->next_expected++;
    o->got++;
    o->thread = pthread_self();
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

static void on_discard(void *it)
{
    (void)it;
}

static void test_worker(void **state)
{
    struct owner o;
    struct mpos_dworker w;
    (void)state;
    memset(&o, 0, sizeof(o));
    o.in_order = 1;
    pthread_mutex_init(&o.lock, NULL);
    pthread_cond_init(&o.cond, NULL);
    assert_int_equal(evthread_use_pthreads(), 0);
    assert_int_equal(mpos_dworker_init(&w, &o, 0, on_item, NULL, NULL, 1), -1);
    assert_int_equal(mpos_dworker_init(&w, &o, sizeof(struct item), on_item, NULL, on_discard, 1),
                     0);
    assert_int_equal(mpos_dworker_start(&w), 0);
    /* More than the first queue capacity (16): the queue grows. */
    for (unsigned k = 0; k < 100; k++) {
        struct item it = {-1, k};
        assert_int_equal(mpos_dworker_hand(&w, &it), 0);
    }
    pthread_mutex_lock(&o.lock);
    while (o.got < 100) {
        pthread_cond_wait(&o.cond, &o.lock);
    }
    pthread_mutex_unlock(&o.lock);
    assert_true(o.in_order);
    assert_false(pthread_equal(o.thread, pthread_self()));
    mpos_dworker_stop(&w);
    assert_int_equal(w.started, 0);
    mpos_dworker_destroy(&w);
    assert_null(w.base);
    mpos_dworker_destroy(&w); /* twice: harmless */
    pthread_cond_destroy(&o.cond);
    pthread_mutex_destroy(&o.lock);
}

static unsigned discards;
static void count_discard(void *it)
{
    const struct item *i = it;
    discards += i->seq;
}

static void test_destroy_discards_queued(void **state)
{
    struct owner o;
    struct mpos_dworker w;
    (void)state;
    memset(&o, 0, sizeof(o));
    assert_int_equal(
        mpos_dworker_init(&w, &o, sizeof(struct item), on_item, NULL, count_discard, 0), 0);
    /* Not started: no loop ever takes the items; destroy hands each to discard. */
    w.base = event_base_new();
    assert_non_null(w.base);
    w.wake = event_new(w.base, -1, 0, NULL, NULL);
    struct item a = {-1, 3}, b = {-1, 4};
    assert_int_equal(mpos_dworker_hand(&w, &a), 0);
    assert_int_equal(mpos_dworker_hand(&w, &b), 0);
    discards = 0;
    mpos_dworker_destroy(&w);
    assert_int_equal(discards, 7);
}

static void test_harden(void **state)
{
    (void)state;
    assert_int_equal(mpos_daemon_harden_early("test_daemon"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_worker),
        cmocka_unit_test(test_destroy_discards_queued),
        cmocka_unit_test(test_harden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
