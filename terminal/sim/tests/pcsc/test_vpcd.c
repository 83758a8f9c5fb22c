/* Tests (label terminal, no root, no pcscd): the vpcd transport of the virtual card
 * (terminal/sim/cardsim/vpcd.h) driven by a stand-in for pcscd's vpcd driver that speaks the
 * protocol as vsmartcard 3.3 does (a frame's length and body in two send() calls, no
 * TCP_NODELAY), and the driver's reconnection fix (vpcd_preload.c, linked in: its
 * vicc_connect is called directly on a struct laid out as the driver's).
 * Card data comes from cards.tsv at run time and is never printed (memcmp, not
 * assert_memory_equal).
 */
#define _GNU_SOURCE /* TCP_QUICKACK */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "card.h"
#include "mpos/util.h"
#include "testutil.h"
#include "vpcd.h"

/* vpcd_preload.c, compiled into this test. */
struct vicc_ctx {
    int server_sock;
    int client_sock;
    char *hostname;
    unsigned short port;
    void *io_lock;
};
int vicc_connect(struct vicc_ctx *ctx, long secs, long usecs);

static mpos_crypto_ctx cc;
static mpos_vpcd V;
static uint16_t base_port;

static const char *cards_path(void)
{
    static char path[1024];
    const char *src = getenv("MPOS_SOURCE_DIR");
    FILE *f;
    snprintf(path, sizeof(path), "%s/../shared/testdata/cards.tsv", src != NULL ? src : ".");
    if ((f = fopen(path, "r")) != NULL) {
        fclose(f);
        return path;
    }
    snprintf(path, sizeof(path), "%s/tests/data/cards.tsv", src != NULL ? src : ".");
    return path;
}

static void load(const char *name, mpos_cardsim_profile *p)
{
    assert_int_equal(mpos_cardsim_profile_load(cards_path(), name, p), MPOS_OK);
}

static void insert(size_t slot, const char *name, int t0)
{
    mpos_cardsim_profile p;
    load(name, &p);
    assert_int_equal(mpos_vpcd_insert(&V, slot, &p, t0), 0);
    mpos_cleanse(&p, sizeof(p));
}

/* Runs the transport's loop for up to ms (until something happened when stop_early). */
static void pump(unsigned ms)
{
    uint64_t end = mpos_vpcd_now_ms() + ms;
    do {
        struct pollfd fds[MPOS_VPCD_POLLFDS];
        size_t n = mpos_vpcd_pollfds(&V, fds, MPOS_VPCD_POLLFDS);
        int r = poll(fds, n, 5);
        assert_true(r >= 0 || errno == EINTR);
        mpos_vpcd_service(&V, fds, n, mpos_vpcd_now_ms());
    } while (mpos_vpcd_now_ms() < end);
}

/* Pumps until fd is readable (at most 2 s). 1 if readable. */
static int pump_until_readable(int fd)
{
    uint64_t end = mpos_vpcd_now_ms() + 2000;
    while (mpos_vpcd_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) {
            return 1;
        }
        struct pollfd fds[MPOS_VPCD_POLLFDS];
        size_t n = mpos_vpcd_pollfds(&V, fds, MPOS_VPCD_POLLFDS);
        (void)poll(fds, n, 1);
        mpos_vpcd_service(&V, fds, n, mpos_vpcd_now_ms());
    }
    return 0;
}

/* The driver's side: a plain connect (no TCP_NODELAY, as vsmartcard 3.3's first connection). */
static int drv_connect(size_t slot)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)(base_port + slot));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    pump(20); /* accepted */
    return fd;
}

/* Sends a frame as the driver does: length, then body, in two send() calls. */
static void drv_send(int fd, const uint8_t *body, size_t len)
{
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    assert_int_equal(send(fd, hdr, 2, MSG_NOSIGNAL), 2);
    if (len > 0) {
        assert_int_equal(send(fd, body, len, MSG_NOSIGNAL), (ssize_t)len);
    }
}

static void drv_ctrl(int fd, uint8_t c)
{
    drv_send(fd, &c, 1);
}

/* Receives one frame: its length (-1 when the connection ended or was reset first). */
static long drv_recv(int fd, uint8_t *buf, size_t cap)
{
    uint8_t hdr[2];
    size_t got = 0, len;
    while (got < 2) {
        if (!pump_until_readable(fd)) {
            return -2; /* no answer at all */
        }
        ssize_t n = recv(fd, hdr + got, 2 - got, 0);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    len = (size_t)hdr[0] << 8 | hdr[1];
    assert_true(len <= cap);
    got = 0;
    while (got < len) {
        if (!pump_until_readable(fd)) {
            return -2;
        }
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return (long)len;
}

/* 1 if the connection ended (EOF or reset) within 2 s. */
static int drv_closed(int fd)
{
    uint8_t b;
    if (!pump_until_readable(fd)) {
        return 0;
    }
    return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* The same command on a fresh in-process card: its answer. */
static size_t engine_answer(mpos_cardsim *c, const uint8_t *cmd, size_t n, uint8_t *r)
{
    size_t rl = 0;
    assert_int_equal(mpos_cardsim_process(c, cmd, n, r, MPOS_CARDSIM_RAPDU_MAX, &rl), 0);
    return rl;
}

static int setup(void **state)
{
    (void)state;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    /* Two free consecutive ports on 127.0.0.1. */
    for (int attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
            return -1;
        }
        close(fd);
        uint16_t p = ntohs(sa.sin_port);
        if (p < 65535 && mpos_vpcd_open(&V, "127.0.0.1", p, 2, &cc) == 0) {
            base_port = p;
            return 0;
        }
    }
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_vpcd_close(&V);
    mpos_crypto_clear(&cc);
    return 0;
}

static void test_open_loopback_only(void **state)
{
    (void)state;
    mpos_vpcd v;
    assert_int_equal(mpos_vpcd_open(&v, "0.0.0.0", 35963, 2, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_vpcd_open(&v, "192.0.2.1", 35963, 2, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_vpcd_open(&v, "localhost", 35963, 2, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_vpcd_open(&v, "127.0.0.1", 65535, 2, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_vpcd_open(&v, "127.0.0.1", 35963, 3, &cc), MPOS_ERR_ARG);
    /* The ports in use: bind fails. */
    assert_int_equal(mpos_vpcd_open(&v, "127.0.0.1", base_port, 1, &cc), MPOS_ERR_IO);
}

/* An empty slot: 04 gives an empty frame and the connection ends; an APDU gets no answer. */
static void test_empty_slot(void **state)
{
    (void)state;
    uint8_t buf[64];
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    int fd = drv_connect(1);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 0);
    assert_true(drv_closed(fd));
    close(fd);
    fd = drv_connect(1);
    drv_send(fd, sel, sizeof(sel));
    assert_true(drv_closed(fd));
    close(fd);
}

/* The trace (mpos_vpcd_trace): one line per event, lengths only, never a byte of a frame. */
static void test_trace(void **state)
{
    (void)state;
    uint8_t buf[300];
    char text[4096];
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    FILE *f = tmpfile();
    assert_non_null(f);
    mpos_vpcd_trace(&V, f);
    insert(0, "approve", 0);
    int fd = drv_connect(0);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ON);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_true(drv_recv(fd, buf, sizeof(buf)) > 2);
    drv_send(fd, pse, sizeof(pse));
    long n = drv_recv(fd, buf, sizeof(buf));
    assert_true(n >= 2);
    mpos_vpcd_remove(&V, 0);
    assert_true(drv_closed(fd));
    close(fd);
    mpos_vpcd_trace(&V, NULL);
    rewind(f);
    size_t got = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[got] = '\0';
    assert_non_null(strstr(text, "slot 0 insert"));
    assert_non_null(strstr(text, "slot 0 accept (card)"));
    assert_non_null(strstr(text, "slot 0 control 01 (card)"));
    assert_non_null(strstr(text, "slot 0 power-up answer: ATR"));
    assert_non_null(strstr(text, "slot 0 apdu 20 bytes"));
    char want[64];
    snprintf(want, sizeof(want), "slot 0 answer %ld bytes", n);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "slot 0 remove"));
    assert_non_null(strstr(text, "slot 0 close reset (removal)"));
    assert_null(strstr(text, "1PAY")); /* no APDU bytes */
    assert_null(strstr(text, "A4"));
    insert(0, "approve", 0); /* as the other tests expect the slot */
}

/* Presence, power-up, APDUs: the engine's answers, unchanged. */
static void test_card_t1(void **state)
{
    (void)state;
    uint8_t buf[300], want[MPOS_CARDSIM_RAPDU_MAX], atr[MPOS_CARDSIM_ATR_MAX];
    size_t atr_len, wl;
    mpos_cardsim ref;
    mpos_cardsim_profile p;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    static const uint8_t rr[] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    insert(0, "approve", 0);
    load("approve", &p);
    assert_int_equal(mpos_cardsim_init(&ref, &p, &cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_power_on(&ref, atr, &atr_len), 0);

    int fd = drv_connect(0);
    /* Presence before any power-up: a non-empty answer. */
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_true(drv_recv(fd, buf, sizeof(buf)) > 0);
    /* An APDU to an unpowered card: no answer, the connection is reset. */
    drv_send(fd, rr, sizeof(rr));
    assert_true(drv_closed(fd));
    close(fd);

    fd = drv_connect(0);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ON);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)atr_len);
    assert_int_equal(memcmp(buf, atr, atr_len), 0);
    /* A control byte the protocol does not have, and an empty frame: ignored. */
    drv_ctrl(fd, 0x03);
    drv_send(fd, NULL, 0);
    drv_send(fd, pse, sizeof(pse));
    wl = engine_answer(&ref, pse, sizeof(pse), want);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)wl);
    assert_int_equal(memcmp(buf, want, wl), 0);
    drv_send(fd, rr, sizeof(rr));
    wl = engine_answer(&ref, rr, sizeof(rr), want);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)wl);
    assert_int_equal(memcmp(buf, want, wl), 0);
    assert_int_equal(buf[wl - 2], 0x90);
    /* Presence while powered: the ATR again. */
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)atr_len);
    /* Power off: the card answers nothing more until the next power-up. */
    drv_ctrl(fd, MPOS_VPCD_CTRL_OFF);
    drv_ctrl(fd, MPOS_VPCD_CTRL_RESET);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)atr_len);

    /* A frame longer than any short APDU: read, dropped, 6700; the connection stays. */
    uint8_t big[600];
    memset(big, 0, sizeof(big));
    big[1] = 0xB2;
    drv_send(fd, big, sizeof(big));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(buf[0], 0x67);
    assert_int_equal(buf[1], 0x00);

    /* A new connection replaces the old one. */
    int fd2 = drv_connect(0);
    assert_true(drv_closed(fd));
    close(fd);
    drv_ctrl(fd2, MPOS_VPCD_CTRL_ATR);
    assert_true(drv_recv(fd2, buf, sizeof(buf)) > 0);

    /* Removal: the connection is reset at once. */
    mpos_vpcd_remove(&V, 0);
    assert_true(drv_closed(fd2));
    close(fd2);
    mpos_cardsim_clear(&ref);
    mpos_cleanse(&p, sizeof(p));
}

/* A mute chip and a stripe-only card: present, and the power-up gives more than any ATR. */
static void test_no_atr(void **state)
{
    (void)state;
    static const char *names[] = {"chip-broken", "stripe-only"};
    uint8_t buf[300];
    for (size_t i = 0; i < 2; i++) {
        insert(1, names[i], 0);
        int fd = drv_connect(1);
        drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
        long n = drv_recv(fd, buf, sizeof(buf));
        assert_true(n > 0 && n <= MPOS_CARDSIM_ATR_MAX); /* present */
        drv_ctrl(fd, MPOS_VPCD_CTRL_ON);
        drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
        assert_int_equal(drv_recv(fd, buf, sizeof(buf)), MPOS_VPCD_NO_ATR_LEN);
        assert_true(MPOS_VPCD_NO_ATR_LEN > 33); /* pcsc-lite's MAX_ATR_SIZE */
        /* Still connected and still present. */
        drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
        assert_true(drv_recv(fd, buf, sizeof(buf)) > 0);
        close(fd);
        mpos_vpcd_remove(&V, 1);
    }
}

/* T=0: 61xx and GET RESPONSE, 6Cxx and the command again; the engine sees each command once. */
static void test_t0(void **state)
{
    (void)state;
    uint8_t buf[300], want[MPOS_CARDSIM_RAPDU_MAX], atr[MPOS_CARDSIM_ATR_MAX];
    size_t atr_len, wl;
    mpos_cardsim ref;
    mpos_cardsim_profile p;
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1'}; /* no Le */
    uint8_t rr[] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00, 0x00};
    insert(0, "approve", 1);
    load("approve", &p);
    assert_int_equal(mpos_cardsim_init(&ref, &p, &cc), MPOS_OK);
    assert_int_equal(mpos_cardsim_power_on(&ref, atr, &atr_len), 0);
    int fd = drv_connect(0);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ON);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(buf[0], 0x3B);
    assert_int_equal(buf[1], 0x00); /* T=0 only */

    /* Case 4: 61xx, then GET RESPONSE with a short Le (61 rest), a long one (6C), the rest. */
    wl = engine_answer(&ref, pse, sizeof(pse), want);
    assert_true(wl > 12);
    drv_send(fd, pse, sizeof(pse));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(buf[0], 0x61);
    assert_int_equal(buf[1], wl - 2);
    gr[4] = 10;
    drv_send(fd, gr, sizeof(gr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 12);
    assert_int_equal(memcmp(buf, want, 10), 0);
    assert_int_equal(buf[10], 0x61);
    assert_int_equal(buf[11], wl - 12);
    gr[4] = (uint8_t)(wl - 12 + 1);
    drv_send(fd, gr, sizeof(gr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(buf[0], 0x6C);
    assert_int_equal(buf[1], wl - 12);
    gr[4] = (uint8_t)(wl - 12);
    drv_send(fd, gr, sizeof(gr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)(wl - 10));
    assert_int_equal(memcmp(buf, want + 10, wl - 10), 0);

    /* Case 2 with Le 00: 6Cxx, then the same command with Le = xx gives the record. */
    wl = engine_answer(&ref, rr, sizeof(rr), want);
    drv_send(fd, rr, sizeof(rr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(buf[0], 0x6C);
    assert_int_equal(buf[1], wl - 2);
    rr[4] = (uint8_t)(wl - 2);
    drv_send(fd, rr, sizeof(rr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)wl);
    assert_int_equal(memcmp(buf, want, wl), 0);
    /* The right Le at once: no 6C. */
    wl = engine_answer(&ref, rr, sizeof(rr), want);
    drv_send(fd, rr, sizeof(rr));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), (long)wl);
    assert_int_equal(memcmp(buf, want, wl), 0);
    /* A status word without data passes as it is. */
    static const uint8_t bad[] = {0x00, 0xB2, 0x05, 0x0C, 0x00};
    wl = engine_answer(&ref, bad, sizeof(bad), want);
    assert_int_equal(wl, 2);
    drv_send(fd, bad, sizeof(bad));
    assert_int_equal(drv_recv(fd, buf, sizeof(buf)), 2);
    assert_int_equal(memcmp(buf, want, 2), 0);
    close(fd);
    mpos_vpcd_remove(&V, 0);
    mpos_cardsim_clear(&ref);
    mpos_cleanse(&p, sizeof(p));
}

/* A frame that starts and stops half-way: the connection is reset after the frame time-out. */
static void test_frame_timeout(void **state)
{
    (void)state;
    uint8_t half[3] = {0x00, 0x05, 0x00};
    insert(0, "approve", 0);
    V.frame_timeout_ms = 100;
    int fd = drv_connect(0);
    assert_int_equal(send(fd, half, sizeof(half), MSG_NOSIGNAL), 3);
    pump(50);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0); /* still open */
    pump(150);
    assert_true(drv_closed(fd));
    close(fd);
    V.frame_timeout_ms = MPOS_VPCD_FRAME_TIMEOUT;
    mpos_vpcd_remove(&V, 0);
}

/* Round trips as the driver makes them (two send() calls per frame, Nagle on): well under
 * the 40 ms of a delayed ACK. */
static void test_latency(void **state)
{
    (void)state;
    uint8_t buf[300];
    static const uint8_t rr[] = {0x00, 0xB2, 0x01, 0x0C, 0x00};
    enum { N = 300 };
    insert(0, "approve", 0);
    int fd = drv_connect(0);
    static const uint8_t pse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '1', 'P', 'A', 'Y', '.',
                                  'S',  'Y',  'S',  '.',  'D',  'D', 'F', '0', '1', 0x00};
    drv_ctrl(fd, MPOS_VPCD_CTRL_ON);
    drv_ctrl(fd, MPOS_VPCD_CTRL_ATR);
    assert_true(drv_recv(fd, buf, sizeof(buf)) > 0);
    drv_send(fd, pse, sizeof(pse));
    assert_true(drv_recv(fd, buf, sizeof(buf)) > 2);
    uint64_t worst = 0, t0 = mpos_vpcd_now_ms();
    for (int i = 0; i < N; i++) {
        uint64_t a = mpos_vpcd_now_ms();
        drv_send(fd, rr, sizeof(rr));
        assert_true(drv_recv(fd, buf, sizeof(buf)) > 2);
        uint64_t d = mpos_vpcd_now_ms() - a;
        worst = d > worst ? d : worst;
    }
    double mean = (double)(mpos_vpcd_now_ms() - t0) / N;
    printf("vpcd transport round trip (no pcscd): mean %.3f ms, worst %llu ms over %d\n", mean,
           (unsigned long long)worst, N);
    assert_true(mean < 5.0);
    assert_true(worst < 30);
    close(fd);
    mpos_vpcd_remove(&V, 0);
}

/* The driver fix: reversed mode reconnects (loopback only, TCP_NODELAY); server mode
 * accepts; a connection that is there is kept. */
static void test_preload_reconnect(void **state)
{
    (void)state;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char host[] = "127.0.0.1", far[] = "192.0.2.1", name[] = "localhost";
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 0;
    socklen_t ol = sizeof(one);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);

    assert_int_equal(vicc_connect(NULL, 0, 0), 0);
    struct vicc_ctx c = {-1, -1, host, ntohs(sa.sin_port), NULL};
    assert_int_equal(vicc_connect(&c, 0, 0), 1);
    assert_true(c.client_sock >= 0);
    assert_int_equal(getsockopt(c.client_sock, IPPROTO_TCP, TCP_NODELAY, &one, &ol), 0);
    assert_int_not_equal(one, 0);
    int kept = c.client_sock;
    assert_int_equal(vicc_connect(&c, 0, 0), 1);
    assert_int_equal(c.client_sock, kept);
    int acc = accept(lfd, NULL, NULL);
    assert_true(acc >= 0);
    close(acc);
    close(c.client_sock);

    /* Nothing outside 127.0.0.0/8, no name look-up. */
    struct vicc_ctx f = {-1, -1, far, 35963, NULL};
    assert_int_equal(vicc_connect(&f, 0, 0), 0);
    assert_int_equal(f.client_sock, -1);
    struct vicc_ctx n = {-1, -1, name, 35963, NULL};
    assert_int_equal(vicc_connect(&n, 0, 0), 0);
    /* Refused: not connected, no abort. */
    struct vicc_ctx r = {-1, -1, host, 1, NULL};
    assert_int_equal(vicc_connect(&r, 0, 0), 0);
    assert_int_equal(r.client_sock, -1);

    /* Server mode: accepts a waiting client. */
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct vicc_ctx s = {lfd, -1, NULL, 0, NULL};
    assert_int_equal(vicc_connect(&s, 1, 0), 1);
    assert_true(s.client_sock >= 0);
    close(s.client_sock);
    close(cfd);
    struct vicc_ctx s2 = {lfd, -1, NULL, 0, NULL};
    assert_int_equal(vicc_connect(&s2, 0, 1000), 0); /* nobody waiting */
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_loopback_only),
        cmocka_unit_test(test_empty_slot),
        cmocka_unit_test(test_card_t1),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_no_atr),
        cmocka_unit_test(test_t0),
        cmocka_unit_test(test_frame_timeout),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_preload_reconnect),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
