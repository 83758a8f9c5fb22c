/* Tests (label terminal, RESOURCE_LOCK pcscd): the PC/SC card reader (terminal/sim/
 * pcsc_reader.h) through a real pcscd, whose only readers are the two vpcd slots of
 * mpos-cardsim. Run by mpos-pcsc-harness, which starts and stops both (root only: without
 * root, or outside the harness, the test is skipped with the reason).
 *
 * Against the in-process engine (card.h) fed the same commands: SELECT of the PSE and of the
 * application, READ RECORD, GET PROCESSING OPTIONS, GET DATA, with T=1 and with T=0 (61xx /
 * 6Cxx through mpos_pcsc_reader_transceive); the EMV kernel through the HAL functions, for a
 * whole approved transaction (T=1 and T=0); the APDU round-trip time; a mute chip and a
 * stripe-only card (a failing chip: power-up refused, the kernel's card error with fallback);
 * a card pulled out in the middle of a session and during a transaction; a chip that stops
 * answering in the middle of a session.
 * Card data comes from cards.tsv at run time and is never printed (memcmp, not
 * assert_memory_equal).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "card.h"
#include "mpos/util.h"
#include "emv_harness.h"
#include "pcsc_reader.h"

#define EVENT_WAIT_MS 3000 /* pcscd polls vpcd every 400 ms; an insertion takes up to two */

static mpos_pcsc_reader R;
static mpos_crypto_ctx CC;
static struct harness H;
static const char *reader_name[2];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One command to mpos-cardsim's control socket; asserts the answer is "ok". */
static void ctl(const char *fmt, ...)
{
    char cmd[128], ans[256];
    struct sockaddr_un sa;
    va_list ap;
    size_t got = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    const char *path = getenv("MPOS_CARDSIM_CONTROL");
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
    va_end(ap);
    strcat(cmd, "\n");
    assert_non_null(path);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    while (got < sizeof(ans) - 1) {
        ssize_t n = read(fd, ans + got, sizeof(ans) - 1 - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        if (ans[got - 1] == '\n') {
            break;
        }
    }
    ans[got] = '\0';
    close(fd);
    if (strncmp(ans, "ok", 2) != 0) {
        fail_msg("control command failed: %s", ans);
    }
}

/* 1 if pcscd reports a card in the followed reader now. */
static int card_present(void)
{
    SCARD_READERSTATE rs;
    memset(&rs, 0, sizeof(rs));
    rs.szReader = R.name;
    rs.dwCurrentState = SCARD_STATE_UNAWARE;
    assert_int_equal(SCardGetStatusChange(R.sc, 0, &rs, 1), SCARD_S_SUCCESS);
    return (rs.dwEventState & SCARD_STATE_PRESENT) != 0;
}

/* Follows reader slot and consumes the events of what is in it now. */
static void use_slot(int slot)
{
    enum mpos_card_event ev;
    assert_int_equal(mpos_pcsc_reader_select(&R, reader_name[slot], 2000), 0);
    while (mpos_pcsc_reader_wait_event(&R, 0, &ev) == 0) {
    }
}

/* Takes the card out of slot and waits until pcscd (and wait_event) saw it go. */
static void card_out(int slot)
{
    enum mpos_card_event ev;
    double end = now_ms() + EVENT_WAIT_MS;
    ctl("remove %d", slot);
    while (card_present()) {
        assert_true(now_ms() < end);
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
    while (mpos_pcsc_reader_wait_event(&R, 0, &ev) == 0) {
        assert_int_equal(ev, MPOS_CARD_EVENT_REMOVED);
    }
}

/* Puts card name (t0: a T=0 card) in the empty slot; returns once wait_event reported it. */
static void card_in(int slot, const char *name, int t0)
{
    enum mpos_card_event ev = 0;
    ctl("insert %d %s%s", slot, name, t0 ? " t0" : "");
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, EVENT_WAIT_MS, &ev), 0);
    assert_int_equal(ev, MPOS_CARD_EVENT_INSERTED);
}

static void swap_card(int slot, const char *name, int t0)
{
    card_out(slot);
    card_in(slot, name, t0);
}

static int group_setup(void **state)
{
    (void)state;
    if (getenv("MPOS_PCSC_HARNESS") == NULL) {
        return -1; /* main() has said why */
    }
    reader_name[0] = getenv("MPOS_PCSC_READER_0");
    reader_name[1] = getenv("MPOS_PCSC_READER_1");
    if (reader_name[0] == NULL || reader_name[1] == NULL || mpos_crypto_init(&CC) != MPOS_OK ||
        mpos_pcsc_reader_open(&R) != 0) {
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mpos_pcsc_reader_close(&R);
    mpos_crypto_clear(&CC);
    return 0;
}

/* A fresh in-process card of the same row, powered, for the expected answers. */
static void ref_card(mpos_cardsim *c, const char *name, uint8_t *atr, size_t *atr_len)
{
    mpos_cardsim_profile p;
    assert_int_equal(mpos_cardsim_profile_load(h_cards_path(), name, &p), MPOS_OK);
    assert_int_equal(mpos_cardsim_init(c, &p, &CC), MPOS_OK);
    mpos_cleanse(&p, sizeof(p));
    assert_int_equal(mpos_cardsim_power_on(c, atr, atr_len), 0);
}

/* Sends cmd through pcscd (transceive: 61xx / 6Cxx followed) and to the reference card;
 * the two answers must be the same bytes. Returns the status word. */
static unsigned same_answer(mpos_cardsim *ref, const uint8_t *cmd, size_t n, uint8_t *out,
                            size_t *out_len)
{
    uint8_t want[MPOS_CARDSIM_RAPDU_MAX];
    size_t wl = 0;
    assert_int_equal(mpos_cardsim_process(ref, cmd, n, want, sizeof(want), &wl), 0);
    assert_int_equal(mpos_pcsc_reader_transceive(&R, cmd, n, out, out_len), 0);
    assert_int_equal(*out_len, wl);
    assert_true(memcmp(out, want, wl) == 0);
    mpos_cleanse(want, sizeof(want));
    return (unsigned)out[wl - 2] << 8 | out[wl - 1];
}

/* SELECT PSE, its directory record, SELECT of the application, GPO, every record the AFL
 * names, GET DATA: through pcscd and in-process, byte for byte. */
static void compare_session(const char *name, int t0)
{
    mpos_cardsim ref;
    uint8_t atr[MPOS_ATR_MAX], ref_atr[MPOS_CARDSIM_ATR_MAX], r[MPOS_RAPDU_MAX], cmd[64];
    size_t atr_len = 0, ref_atr_len = 0, rl = 0;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    static const uint8_t gpo[] = {0x80, 0xA8, 0x00, 0x00, 0x0B, 0x83, 0x09, 0x00, 0x00,
                                  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t atc[] = {0x80, 0xCA, 0x9F, 0x36, 0x00};
    static const uint8_t ptc[] = {0x80, 0xCA, 0x9F, 0x17, 0x00};
    ref_card(&ref, name, ref_atr, &ref_atr_len);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    if (t0) {
        static const uint8_t atr_t0[] = {0x3B, 0x00};
        assert_int_equal(mpos_pcsc_reader_protocol(&R), SCARD_PROTOCOL_T0);
        assert_int_equal(atr_len, sizeof(atr_t0));
        assert_true(memcmp(atr, atr_t0, atr_len) == 0);
    } else {
        assert_int_equal(atr_len, ref_atr_len);
        assert_true(memcmp(atr, ref_atr, atr_len) == 0);
    }

    assert_int_equal(same_answer(&ref, pse, sizeof(pse), r, &rl), 0x9000);
    memcpy(cmd, (const uint8_t[]){0x00, 0xB2, 0x01, 0x0C, 0x00}, 5);
    assert_int_equal(same_answer(&ref, cmd, 5, r, &rl), 0x9000);
    assert_int_equal(same_answer(&ref, (const uint8_t[]){0x00, 0xB2, 0x02, 0x0C, 0x00}, 5, r, &rl),
                     0x6A83);
    /* SELECT by the application's AID (from the profile). */
    mpos_cardsim_profile p;
    assert_int_equal(mpos_cardsim_profile_load(h_cards_path(), name, &p), MPOS_OK);
    memcpy(cmd, (const uint8_t[]){0x00, 0xA4, 0x04, 0x00}, 4);
    cmd[4] = (uint8_t)p.aid_len;
    memcpy(&cmd[5], p.aid, p.aid_len);
    cmd[5 + p.aid_len] = 0x00;
    size_t sel_len = 6 + p.aid_len;
    mpos_cleanse(&p, sizeof(p));
    assert_int_equal(same_answer(&ref, cmd, sel_len, r, &rl), 0x9000);
    /* GPO, then the records of the AFL: format 1 ('80': AIP, AFL) or 2 ('77' with '82' and
     * '94'; EMV 4.3 Book 3 6.5.8.4). */
    assert_int_equal(same_answer(&ref, gpo, sizeof(gpo), r, &rl), 0x9000);
    const uint8_t *afl = NULL;
    size_t afl_len = 0;
    if (r[0] == 0x80) {
        afl = &r[4];
        afl_len = r[1] - 2u;
    } else {
        assert_int_equal(r[0], 0x77);
        for (size_t i = 2; i + 2 <= rl - 2;) {
            uint8_t tag = r[i], len = r[i + 1];
            if (tag == 0x94) {
                afl = &r[i + 2];
                afl_len = len;
                break;
            }
            i += 2u + len;
        }
    }
    assert_non_null(afl);
    assert_true(afl_len >= 4 && afl_len % 4 == 0);
    uint8_t afl_copy[32];
    memcpy(afl_copy, afl, afl_len);
    size_t records = 0;
    for (size_t e = 0; e < afl_len; e += 4) {
        uint8_t sfi = afl_copy[e] >> 3;
        for (unsigned rec = afl_copy[e + 1]; rec <= afl_copy[e + 2]; rec++) {
            uint8_t rr[5] = {0x00, 0xB2, (uint8_t)rec, (uint8_t)(sfi << 3 | 4), 0x00};
            assert_int_equal(same_answer(&ref, rr, 5, r, &rl), 0x9000);
            assert_int_equal(r[0], 0x70);
            records++;
        }
    }
    assert_true(records >= 1);
    assert_int_equal(same_answer(&ref, atc, sizeof(atc), r, &rl), 0x9000);
    assert_int_equal(same_answer(&ref, ptc, sizeof(ptc), r, &rl), 0x9000);
    mpos_cleanse(r, sizeof(r));
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    mpos_cardsim_clear(&ref);
}

static void test_readers(void **state)
{
    (void)state;
    char names[MPOS_PCSC_READERS_MAX][MPOS_PCSC_READER_NAME_MAX];
    size_t n = 0, ours = 0;
    assert_int_equal(mpos_pcsc_reader_list(&R, names, MPOS_PCSC_READERS_MAX, &n), 0);
    for (size_t i = 0; i < n; i++) {
        ours += strcmp(names[i], reader_name[0]) == 0 || strcmp(names[i], reader_name[1]) == 0;
    }
    assert_int_equal(ours, 2);
    assert_int_equal(mpos_pcsc_reader_select(&R, "no such reader", 100), MPOS_HAL_TIMEOUT);
    /* Nothing powered: exchange refuses. */
    uint8_t r[MPOS_RAPDU_MAX];
    size_t rl;
    static const uint8_t rr[] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    use_slot(0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, rr, sizeof(rr), r, &rl), MPOS_ERR_STATE);
}

/* The card the harness put in slot 0 (approve) is reported at once. */
static void test_event_at_start(void **state)
{
    (void)state;
    enum mpos_card_event ev = 0;
    assert_int_equal(mpos_pcsc_reader_select(&R, reader_name[0], 2000), 0);
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, 0, &ev), 0);
    assert_int_equal(ev, MPOS_CARD_EVENT_INSERTED);
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, 100, &ev), MPOS_HAL_TIMEOUT);
}

static void test_compare_t1(void **state)
{
    (void)state;
    use_slot(0);
    swap_card(0, "approve", 0); /* a fresh card: the same ATC as the reference */
    compare_session("approve", 0);
    /* The 19-digit card (option B) and a second session on the same card after a cold reset. */
    swap_card(0, "approve-19digit", 0);
    compare_session("approve-19digit", 0);
}

static void test_compare_t0(void **state)
{
    (void)state;
    uint8_t atr[MPOS_ATR_MAX], r[MPOS_RAPDU_MAX];
    size_t atr_len, rl;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    static const uint8_t rr[] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    use_slot(0);
    swap_card(0, "approve", 1);
    /* exchange gives the T=0 answers as they come: the layer above follows them. */
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
    assert_int_equal(rl, 2);
    assert_int_equal(r[0], 0x61);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, rr, sizeof(rr), r, &rl), 0);
    assert_int_equal(rl, 2);
    assert_int_equal(r[0], 0x6C);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    swap_card(0, "approve", 1);
    compare_session("approve", 1);
}

/* APDU round trips through pcscd (client -> pcscd -> vpcd driver -> mpos-cardsim). */
static void test_latency(void **state)
{
    (void)state;
    enum { N = 500 };
    static double t[N];
    uint8_t atr[MPOS_ATR_MAX], r[MPOS_RAPDU_MAX];
    size_t atr_len, rl;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    use_slot(0);
    swap_card(0, "approve", 0);
    double a = now_ms();
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    double power_ms = now_ms() - a;
    double sum = 0, worst = 0;
    for (int i = 0; i < N; i++) {
        a = now_ms();
        assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
        t[i] = now_ms() - a;
        sum += t[i];
        worst = t[i] > worst ? t[i] : worst;
    }
    /* p99 by counting: the smallest value with at least 99 % at or below it. */
    double p99 = worst;
    for (int i = 0; i < N; i++) {
        int below = 0;
        for (int j = 0; j < N; j++) {
            below += t[j] <= t[i];
        }
        if (below * 100 >= N * 99 && t[i] < p99) {
            p99 = t[i];
        }
    }
    printf("PC/SC APDU round trip through pcscd + vpcd: mean %.3f ms, p99 %.3f ms, worst %.3f ms "
           "over %d (SELECT PSE, %zu-byte answer); power-on (connect + cold reset) %.2f ms\n",
           sum / N, p99, worst, N, rl, power_ms);
    assert_true(sum / N < 5.0); /* well under the 40 ms of a delayed ACK */
    assert_true(p99 < 20.0);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
}

/* ---- the EMV kernel through the HAL functions */

static int hal_reset(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    (void)ctx;
    return mpos_pcsc_reader_power_on(&R, atr, atr_len);
}

static int last_io_rc;
static size_t remove_after; /* exchanges before the card is pulled out (0: never) */

static int hal_io(void *ctx, const uint8_t *capdu, size_t capdu_len, uint8_t rapdu[MPOS_RAPDU_MAX],
                  size_t *rapdu_len)
{
    struct harness *h = ctx;
    if (remove_after != 0 && h->exchanges == remove_after) {
        ctl("remove 0");
    }
    h->exchanges++;
    h->ins_count[capdu[1]]++;
    last_io_rc = mpos_pcsc_reader_exchange(&R, capdu, capdu_len, rapdu, rapdu_len);
    return last_io_rc;
}

/* h_setup + h_card, then the card callbacks on PC/SC. */
static void kernel_on_pcsc(const char *name)
{
    mpos_hal_card_reader hal;
    h_setup(&H, name);
    h_card(&H);
    mpos_pcsc_reader_hal(&R, &hal);
    assert_ptr_equal(hal.ctx, &R);
    assert_ptr_equal(hal.exchange, mpos_pcsc_reader_exchange);
    assert_null(hal.read_tracks);
    H.env.card_reset = hal_reset; /* the same signatures as hal.power_on / hal.exchange */
    H.env.card_io = hal_io;
    mpos_emv_init(&H.k, &H.params, &H.env);
    last_io_rc = 0;
    remove_after = 0;
}

static void test_kernel_approve(void **state)
{
    (void)state;
    for (int t0 = 0; t0 <= 1; t0++) {
        use_slot(0);
        swap_card(0, "approve", t0);
        kernel_on_pcsc("approve");
        assert_int_equal(h_start(&H), MPOS_EMV_ONLINE);
        assert_int_equal(h_complete(&H, 1, "00"), MPOS_EMV_APPROVED);
        assert_int_equal(H.ins_count[0x82], 1); /* EXTERNAL AUTHENTICATE */
        if (t0) {
            assert_true(H.ins_count[0xC0] >= 3); /* GET RESPONSE, by the kernel */
        } else {
            assert_int_equal(H.ins_count[0xC0], 0);
        }
        assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
        h_teardown(&H);
    }
}

/* A failing chip: chip-broken (mute) and stripe-only (no chip) in slot 1. Present, power-up
 * refused: MPOS_HAL_CARD_MUTE, and the kernel ends with a card error that allows fallback. */
static void test_failing_chip(void **state)
{
    (void)state;
    static const char *names[] = {"chip-broken", "stripe-only"};
    uint8_t atr[MPOS_ATR_MAX];
    size_t atr_len = 99;
    use_slot(1);
    for (size_t i = 0; i < 2; i++) {
        if (i == 0) {
            /* The harness started slot 1 with chip-broken: reported at once. */
            enum mpos_card_event ev = 0;
            assert_int_equal(mpos_pcsc_reader_select(&R, reader_name[1], 2000), 0);
            assert_int_equal(mpos_pcsc_reader_wait_event(&R, EVENT_WAIT_MS, &ev), 0);
            assert_int_equal(ev, MPOS_CARD_EVENT_INSERTED);
        } else {
            swap_card(1, names[i], 0);
        }
        assert_true(card_present());
        assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), MPOS_HAL_CARD_MUTE);
        assert_int_equal(atr_len, 0);
        assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), MPOS_HAL_CARD_MUTE);
        assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
        kernel_on_pcsc(names[i]);
        assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
        assert_int_equal(mpos_emv_get_result(&H.k)->fallback_allowed, 1);
        assert_int_equal(H.exchanges, 0);
        h_teardown(&H);
        assert_true(card_present()); /* still there: not a removal */
    }
    /* An empty slot: no card. */
    card_out(1);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), MPOS_HAL_NO_CARD);
}

/* Pulled out in the middle of a session: the next exchange says removed, so do wait_event
 * and power_on; a new card is then seen and works. */
static void test_removal_mid_session(void **state)
{
    (void)state;
    uint8_t atr[MPOS_ATR_MAX], r[MPOS_RAPDU_MAX];
    size_t atr_len, rl;
    enum mpos_card_event ev = 0;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    use_slot(0);
    swap_card(0, "approve", 0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
    ctl("remove 0");
    double a = now_ms();
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl),
                     MPOS_HAL_CARD_REMOVED);
    printf("removal seen by exchange after %.0f ms\n", now_ms() - a);
    assert_int_equal(rl, 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl),
                     MPOS_HAL_CARD_REMOVED);
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, EVENT_WAIT_MS, &ev), 0);
    assert_int_equal(ev, MPOS_CARD_EVENT_REMOVED);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), MPOS_HAL_NO_CARD);
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, 500, &ev), MPOS_HAL_TIMEOUT);
    card_in(0, "approve", 0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
    assert_int_equal(r[rl - 2], 0x90);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);

    /* Out during a transaction (after the third exchange): the kernel's card error, the HAL
     * says removed. */
    kernel_on_pcsc("approve");
    remove_after = 3;
    assert_int_equal(h_start(&H), MPOS_EMV_CARD_ERROR);
    assert_int_equal(last_io_rc, MPOS_HAL_CARD_REMOVED);
    assert_int_equal(H.exchanges, 4);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    h_teardown(&H);
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, EVENT_WAIT_MS, &ev), 0);
    assert_int_equal(ev, MPOS_CARD_EVENT_REMOVED);
    card_in(0, "approve", 0); /* leave slot 0 as the harness made it */
}

/* A chip that stops answering in the middle of a session: exchange says mute (not removed),
 * the card is still there, a new power-up fails until it answers again. */
static void test_mute_mid_session(void **state)
{
    (void)state;
    uint8_t atr[MPOS_ATR_MAX], r[MPOS_RAPDU_MAX];
    size_t atr_len, rl;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    use_slot(0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
    ctl("mute 0");
    double a = now_ms();
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), MPOS_HAL_CARD_MUTE);
    printf("mute chip reported by exchange after %.0f ms (removal grace %u ms)\n", now_ms() - a,
           (unsigned)R.removal_grace_ms);
    assert_true(card_present());
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), MPOS_HAL_CARD_MUTE);
    ctl("unmute 0");
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, pse, sizeof(pse), r, &rl), 0);
    assert_int_equal(r[rl - 2], 0x90);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    enum mpos_card_event ev;
    assert_int_equal(mpos_pcsc_reader_wait_event(&R, 0, &ev), MPOS_HAL_TIMEOUT); /* no event */
}

static void test_bad_calls(void **state)
{
    (void)state;
    uint8_t atr[MPOS_ATR_MAX], r[MPOS_RAPDU_MAX], big[MPOS_CAPDU_MAX + 1];
    size_t atr_len, rl;
    memset(big, 0, sizeof(big));
    use_slot(0);
    assert_int_equal(mpos_pcsc_reader_power_on(&R, atr, &atr_len), 0);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, big, 3, r, &rl), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pcsc_reader_exchange(&R, big, sizeof(big), r, &rl), MPOS_ERR_LENGTH);
    big[4] = 0x10; /* Lc 16 with 3 data bytes */
    assert_int_equal(mpos_pcsc_reader_exchange(&R, big, 8, r, &rl), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pcsc_reader_transceive(&R, big, 8, r, &rl), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0);
    assert_int_equal(mpos_pcsc_reader_power_off(&R), 0); /* nothing powered: still 0 */
}

int main(void)
{
    if (getenv("MPOS_PCSC_HARNESS") == NULL) {
        printf("SKIP: test_pcsc_reader runs under mpos-pcsc-harness (ctest does), which starts "
               "pcscd and mpos-cardsim (root only)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers),          cmocka_unit_test(test_event_at_start),
        cmocka_unit_test(test_compare_t1),       cmocka_unit_test(test_compare_t0),
        cmocka_unit_test(test_latency),          cmocka_unit_test(test_kernel_approve),
        cmocka_unit_test(test_failing_chip),     cmocka_unit_test(test_removal_mid_session),
        cmocka_unit_test(test_mute_mid_session), cmocka_unit_test(test_bad_calls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
