/* mpos_bk_txn: the upstream ISO 8583 link (docs/system-design.md 4.2).
 *
 * One persistent TCP connection to the switch, owned by one thread: it connects, signs on
 * (0800, DE 70 = 001), sends an echo (0800/301) after echo_s seconds without traffic, reads
 * every response and hands it to the request waiting for that STAN and MTI. A request is
 * sent by its caller's thread (one writer at a time) and waits on a condition variable for
 * at most [upstream] timeout_ms. Every message carries a MAC (DE 64, or DE 128 with a
 * secondary bitmap) under the ZAK, made and checked inside mpos-hsmd; a response whose MAC
 * does not verify is dropped, as if it had never come (the request then times out and is
 * reversed: the safe side).
 *
 * When the connection drops, every waiting request learns it at once (its outcome is
 * unknown, so the caller treats it as a timeout); requests made while the link is down are
 * not sent at all (BK_UP_NOT_SENT), so nothing needs reversing for them.
 */
#define _GNU_SOURCE /* clock_gettime, gmtime_r, strcasecmp, M_PI */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bk_int.h"
#include "mpos/util.h"

#define RECONNECT_MS 300

static void log_line(const char *what)
{
    /* Operational log: no data of the transactions, only the link's events. */
    fprintf(stderr, "mpos-backend: upstream: %s\n", what);
}

static void deadline_ts(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int connect_to(const char *host, uint16_t port, int timeout_ms)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof(err);
        if (poll(&pfd, 1, timeout_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
            rc = 0;
        }
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Writes a whole frame within timeout_ms in all (a switch that reads a byte a second must not
 * hold send_mu, and every other request, for ever); the caller holds send_mu. */
static int write_all(int fd, const uint8_t *b, size_t n, int timeout_ms)
{
    int64_t deadline = bk_now_ms() + timeout_ms;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int64_t left = deadline - bk_now_ms();
            if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
                return -1;
            }
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        b += (size_t)w;
        n -= (size_t)w;
    }
    return 0;
}

/* Adds the MAC field, packs with the length header, MACs in hsmd, writes. */
static int send_msg(mpos_bk_txn *p, mpos_iso8583_msg *msg)
{
    static const uint8_t zero_mac[MPOS_ISO8583_MAC_LEN];
    uint8_t out[BK_MSG_MAX + MPOS_ISO8583_FRAME_HDR];
    size_t n = 0;
    int second = 0;
    for (unsigned f = 66; f < 128; f++) {
        second |= mpos_iso8583_has(msg, f);
    }
    int rc = mpos_iso8583_set(msg, second ? 128 : 64, zero_mac, sizeof(zero_mac));
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_pack_framed(msg, out, sizeof(out), &n);
    }
    if (rc == MPOS_OK) {
        rc = bk_mac(p, out + MPOS_ISO8583_FRAME_HDR, n - MPOS_ISO8583_FRAME_HDR, 1);
    }
    if (rc != MPOS_OK) {
        return rc;
    }
    struct bk_upstream *u = &p->up;
    pthread_mutex_lock(&u->mu);
    int fd = u->fd;
    pthread_mutex_unlock(&u->mu);
    if (fd < 0) {
        return BK_UP_NOT_SENT;
    }
    pthread_mutex_lock(&u->send_mu);
    rc = write_all(fd, out, n, p->cfg.upstream_timeout_ms) == 0 ? MPOS_OK : BK_UP_TIMEOUT;
    pthread_mutex_unlock(&u->send_mu);
    if (rc == MPOS_OK) {
        pthread_mutex_lock(&u->mu);
        u->last_send_ms = bk_now_ms();
        pthread_mutex_unlock(&u->mu);
    }
    return rc;
}

static uint32_t mgmt_stan(void)
{
    /* Network-management STANs come from this process; they never collide with a
     * transaction's in matching, because the response MTI (0810) differs. */
    static uint32_t next = 0;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    if (next == 0) {
        next = (uint32_t)(bk_now_ms() % 900000) + 1;
    }
    uint32_t s = next;
    next = next % 999999 + 1;
    pthread_mutex_unlock(&mu);
    return s;
}

static int send_mgmt(mpos_bk_txn *p, const char *code, uint32_t *stan_out)
{
    mpos_iso8583_msg m;
    char de7[11], de11[7];
    uint32_t stan = mgmt_stan();
    bk_de7(de7);
    snprintf(de11, sizeof(de11), "%06u", stan % 1000000u);
    int rc = mpos_iso8583_init(&m, "0800");
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 7, de7);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 11, de11);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_set_str(&m, 70, code);
    }
    if (rc == MPOS_OK) {
        rc = send_msg(p, &m);
    }
    if (stan_out != NULL) {
        *stan_out = stan;
    }
    return rc;
}

static uint32_t field_u32(const mpos_iso8583_msg *m, unsigned f)
{
    const uint8_t *v = NULL;
    size_t n = 0;
    int present = 0;
    uint32_t x = 0;
    if (mpos_iso8583_get(m, f, &v, &n, &present) != MPOS_OK || !present) {
        return 0;
    }
    for (size_t i = 0; i < n && i < 9; i++) {
        x = x * 10 + (uint32_t)(v[i] - '0');
    }
    return x;
}

static void drop_connection(struct bk_upstream *u)
{
    pthread_mutex_lock(&u->mu);
    if (u->fd >= 0) {
        /* Taking send_mu waits out a writer in the middle of a frame. */
        pthread_mutex_lock(&u->send_mu);
        close(u->fd);
        u->fd = -1;
        pthread_mutex_unlock(&u->send_mu);
    }
    u->signed_on = 0;
    for (size_t i = 0; i < BK_MAX_WAITERS; i++) {
        if (u->w[i].used && u->w[i].done == 0) {
            u->w[i].done = -1;
        }
    }
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
}

/* One message from the switch. */
static void dispatch(mpos_bk_txn *p, uint8_t *data, size_t len, uint32_t signon_stan)
{
    struct bk_upstream *u = &p->up;
    mpos_iso8583_msg m;
    if (len > BK_MSG_MAX || mpos_iso8583_unpack(data, len, &m) != MPOS_OK) {
        log_line("malformed message dropped");
        return;
    }
    if ((mpos_iso8583_has(&m, 64) || mpos_iso8583_has(&m, 128)) && bk_mac(p, data, len, 0) != 0) {
        log_line("message with a bad MAC dropped");
        return;
    }
    uint32_t stan = field_u32(&m, 11);
    if (memcmp(m.mti, "0810", 4) == 0) {
        const uint8_t *v = NULL;
        size_t n = 0;
        int present = 0;
        if (stan == signon_stan && mpos_iso8583_get(&m, 39, &v, &n, &present) == MPOS_OK &&
            present && n == 2 && memcmp(v, "00", 2) == 0) {
            pthread_mutex_lock(&u->mu);
            if (!u->signed_on) {
                u->signed_on = 1;
                pthread_cond_broadcast(&u->cv);
                log_line("signed on");
            }
            pthread_mutex_unlock(&u->mu);
        }
        return;
    }
    pthread_mutex_lock(&u->mu);
    for (size_t i = 0; i < BK_MAX_WAITERS; i++) {
        struct bk_waiter *w = &u->w[i];
        if (w->used && w->done == 0 && w->stan == stan && memcmp(w->mti, m.mti, 4) == 0) {
            memcpy(w->buf, data, len);
            w->len = len;
            w->done = 1;
            pthread_cond_broadcast(&u->cv);
            break;
        }
    }
    pthread_mutex_unlock(&u->mu);
}

static void *up_main(void *arg)
{
    mpos_bk_txn *p = arg;
    struct bk_upstream *u = &p->up;
    uint8_t rbuf[2 * (BK_MSG_MAX + MPOS_ISO8583_FRAME_HDR)];
    size_t have = 0;
    int64_t rx_since = 0; /* when the partial message in rbuf began */
    uint32_t signon_stan = 0;
    int64_t connected_at = 0;
    for (;;) {
        pthread_mutex_lock(&u->mu);
        int stop = u->stop, fd = u->fd, signed_on = u->signed_on;
        int64_t last_send = u->last_send_ms;
        pthread_mutex_unlock(&u->mu);
        if (stop) {
            break;
        }
        if (fd < 0) {
            fd = connect_to(p->cfg.upstream_host, p->cfg.upstream_port, 1000);
            if (fd < 0) {
                struct timespec ts;
                deadline_ts(&ts, RECONNECT_MS);
                pthread_mutex_lock(&u->mu);
                if (!u->stop) {
                    (void)pthread_cond_timedwait(&u->cv, &u->mu, &ts);
                }
                pthread_mutex_unlock(&u->mu);
                continue;
            }
            pthread_mutex_lock(&u->mu);
            u->fd = fd;
            pthread_mutex_unlock(&u->mu);
            have = 0;
            connected_at = bk_now_ms();
            log_line("connected");
            if (send_mgmt(p, "001", &signon_stan) != MPOS_OK) {
                drop_connection(u);
                continue;
            }
        }
        int64_t now = bk_now_ms();
        if (!signed_on && now - connected_at > p->cfg.upstream_timeout_ms) {
            log_line("no sign-on response; reconnecting");
            drop_connection(u);
            continue;
        }
        if (signed_on && p->cfg.echo_s > 0 && now - last_send >= (int64_t)p->cfg.echo_s * 1000) {
            if (send_mgmt(p, "301", NULL) != MPOS_OK) {
                drop_connection(u);
                continue;
            }
        }
        if (have > 0 && now - rx_since > p->cfg.upstream_timeout_ms) {
            /* Half a message that never ends: the peer is stuck or hostile. */
            log_line("incomplete message timed out; reconnecting");
            drop_connection(u);
            have = 0;
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 100);
        if (pr < 0 && errno != EINTR) {
            drop_connection(u);
            continue;
        }
        if (pr <= 0) {
            continue;
        }
        ssize_t r = recv(fd, rbuf + have, sizeof(rbuf) - have, 0);
        if (r <= 0) {
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            log_line("connection closed");
            drop_connection(u);
            continue;
        }
        if (have == 0) {
            rx_since = bk_now_ms();
        }
        have += (size_t)r;
        for (;;) {
            const uint8_t *md = NULL;
            size_t ml = 0, fl = 0;
            int fr = mpos_iso8583_frame_parse(rbuf, have, &md, &ml, &fl);
            if (fr == MPOS_ERR_LENGTH) {
                if (have == sizeof(rbuf) ||
                    (have >= MPOS_ISO8583_FRAME_HDR && mpos_load_be16(rbuf) > BK_MSG_MAX)) {
                    fr = MPOS_ERR_FORMAT; /* longer than anything we take: no waiting for it */
                } else {
                    break;
                }
            }
            if (fr != MPOS_OK) {
                log_line("peer out of step; reconnecting");
                drop_connection(u);
                have = 0;
                break;
            }
            dispatch(p, (uint8_t *)md, ml, signon_stan);
            memmove(rbuf, rbuf + fl, have - fl);
            have -= fl;
            rx_since = bk_now_ms();
        }
    }
    drop_connection(u);
    return NULL;
}

int bk_up_start(mpos_bk_txn *p)
{
    struct bk_upstream *u = &p->up;
    memset(u, 0, sizeof(*u));
    u->p = p;
    u->fd = -1;
    pthread_mutex_init(&u->mu, NULL);
    pthread_mutex_init(&u->send_mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    if (pthread_create(&u->thread, NULL, up_main, p) != 0) {
        return MPOS_ERR_ARG;
    }
    u->started = 1;
    return MPOS_OK;
}

void bk_up_stop(mpos_bk_txn *p)
{
    struct bk_upstream *u = &p->up;
    if (!u->started) {
        return;
    }
    pthread_mutex_lock(&u->mu);
    u->stop = 1;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    pthread_join(u->thread, NULL);
    u->started = 0;
    pthread_mutex_destroy(&u->mu);
    pthread_mutex_destroy(&u->send_mu);
    pthread_cond_destroy(&u->cv);
}

int bk_up_ready(mpos_bk_txn *p)
{
    pthread_mutex_lock(&p->up.mu);
    int r = p->up.signed_on && p->up.fd >= 0;
    pthread_mutex_unlock(&p->up.mu);
    return r;
}

int bk_up_exchange(mpos_bk_txn *p, mpos_iso8583_msg *msg, const char *resp_mti, uint8_t *resp_buf,
                   size_t *resp_len)
{
    struct bk_upstream *u = &p->up;
    struct bk_waiter *w = NULL;
    *resp_len = 0;
    pthread_mutex_lock(&u->mu);
    if (!u->signed_on || u->fd < 0) {
        pthread_mutex_unlock(&u->mu);
        return BK_UP_NOT_SENT;
    }
    for (size_t i = 0; i < BK_MAX_WAITERS; i++) {
        if (!u->w[i].used) {
            w = &u->w[i];
            break;
        }
    }
    if (w == NULL) {
        pthread_mutex_unlock(&u->mu);
        return BK_UP_NOT_SENT; /* overloaded: nothing sent, the caller declines 91 */
    }
    w->used = 1;
    w->done = 0;
    w->len = 0;
    w->stan = field_u32(msg, 11);
    memcpy(w->mti, resp_mti, 4);
    w->mti[4] = '\0';
    pthread_mutex_unlock(&u->mu);

    int rc = send_msg(p, msg);
    pthread_mutex_lock(&u->mu);
    if (rc == MPOS_OK) {
        struct timespec ts;
        deadline_ts(&ts, p->cfg.upstream_timeout_ms);
        while (w->done == 0) {
            if (pthread_cond_timedwait(&u->cv, &u->mu, &ts) == ETIMEDOUT) {
                break;
            }
        }
        if (w->done == 1) {
            memcpy(resp_buf, w->buf, w->len);
            *resp_len = w->len;
            rc = BK_UP_ANSWERED;
        } else {
            rc = BK_UP_TIMEOUT;
        }
    }
    w->used = 0;
    w->done = 0;
    pthread_mutex_unlock(&u->mu);
    return rc;
}
