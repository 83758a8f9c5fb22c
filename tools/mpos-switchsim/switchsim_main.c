/* mpos-switchsim: the card network and issuer simulator (docs/switchsim.md).
 *
 *   mpos-switchsim --keys FILE --cards FILE [--listen ADDR:PORT] [--port-file FILE]
 *                  [--control PATH] [--ledger FILE] [--read-timeout MS]
 *
 * Speaks the ISO 8583 profile of docs/system-design.md section 4 on a TCP listener (127.0.0.1
 * port 0 by default; only 127.0.0.0/8 is accepted), several connections at once, one poll loop.
 * Prints "listening=127.0.0.1:PORT" on stdout (and the port alone to --port-file), then
 * "ready". Test controls come through the control socket (a Unix stream socket of mode 0600,
 * refused if PATH exists), one command per line, one answer line "ok ..." or "error: ...":
 *   delay MS       every later response waits MS more (0 ends it)
 *   drop N         the next N financial requests are processed but not answered
 *   disconnect     closes every switch connection now
 *   duplicate N    the next N responses are sent twice
 *   late MS        the next financial request is answered after MS
 *   rc PAN CODE    forces response code CODE for the card ("-" clears)
 *   reset          controls off, balances and ledger back to the start, counters zero
 *   status         ok requests=.. responses=.. ...
 *   ledger         ok MASKEDPAN=BALANCE ...
 * SIGTERM / SIGINT end it cleanly (exit 0); start-up errors exit 1, usage errors 2.
 */
#define _GNU_SOURCE /* accept4, signalfd */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "issuer.h"
#include "mpos/iso8583.h"
#include "mpos/util.h"

#define MAX_CONNS     32
#define CTL_CLIENTS   4
#define CTL_LINE_MAX  256
#define RX_CAP        (MPOS_ISO8583_FRAME_HDR + SW_MAX_MSG)
#define TX_CAP        65536
#define MAX_PENDING   256
#define DEFAULT_RD_MS 10000

struct conn {
    int fd;
    unsigned long gen; /* identifies the connection for queued responses */
    uint8_t rx[RX_CAP];
    size_t rx_len;
    long long rx_since; /* when the partial frame in rx started, ms */
    uint8_t tx[TX_CAP];
    size_t tx_len;
};

struct pending {
    int used;
    unsigned long gen;
    long long due;
    size_t len;
    uint8_t frame[MPOS_ISO8583_FRAME_HDR + SW_MAX_MSG];
};

struct ctl_client {
    int fd;
    char line[CTL_LINE_MAX];
    size_t len;
};

struct app {
    sw_issuer is;
    int lfd, ctl_fd, sig_fd;
    const char *ctl_path;
    struct conn *conns[MAX_CONNS];
    unsigned long next_gen;
    struct ctl_client cl[CTL_CLIENTS];
    struct pending *pend;
    long long read_timeout;
    /* test controls */
    long long delay_ms, late_ms;
    unsigned long drop_n, dup_n;
    int stop;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mpos-switchsim --keys FILE --cards FILE [--listen ADDR:PORT]\n"
               "                      [--port-file FILE] [--control PATH] [--ledger FILE]\n"
               "                      [--read-timeout MS]\n");
}

static int parse_num(const char *s, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* ---- switch connections ----------------------------------------------------------------- */

static void conn_close(struct app *a, size_t i, const char *why)
{
    fprintf(stderr, "switchsim event=disconnect conn=%lu reason=%s\n", a->conns[i]->gen, why);
    (void)close(a->conns[i]->fd);
    free(a->conns[i]);
    a->conns[i] = NULL;
}

static size_t conn_count(const struct app *a)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_CONNS; i++) {
        n += a->conns[i] != NULL;
    }
    return n;
}

static void conn_accept(struct app *a)
{
    int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    for (size_t i = 0; i < MAX_CONNS; i++) {
        if (a->conns[i] == NULL) {
            struct conn *c = calloc(1, sizeof(*c));
            if (c == NULL) {
                break;
            }
            c->fd = fd;
            c->gen = ++a->next_gen;
            a->conns[i] = c;
            fprintf(stderr, "switchsim event=connect conn=%lu\n", c->gen);
            return;
        }
    }
    fprintf(stderr, "switchsim event=refused reason=too_many_connections\n");
    (void)close(fd);
}

/* Writes what can be written now; the rest waits for POLLOUT. 0, or -1 to close. */
static int conn_flush(struct conn *c)
{
    while (c->tx_len > 0) {
        ssize_t n = send(c->fd, c->tx, c->tx_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
        }
        memmove(c->tx, c->tx + n, c->tx_len - (size_t)n);
        c->tx_len -= (size_t)n;
    }
    return 0;
}

static void conn_send(struct app *a, size_t i, const uint8_t *frame, size_t len)
{
    struct conn *c = a->conns[i];
    if (c->tx_len + len > sizeof(c->tx)) {
        conn_close(a, i, "output_overflow"); /* a peer that does not read */
        return;
    }
    memcpy(c->tx + c->tx_len, frame, len);
    c->tx_len += len;
    a->is.st.responses++;
    if (conn_flush(c) != 0) {
        conn_close(a, i, "write_error");
    }
}

static void send_to_gen(struct app *a, unsigned long gen, const uint8_t *frame, size_t len)
{
    for (size_t i = 0; i < MAX_CONNS; i++) {
        if (a->conns[i] != NULL && a->conns[i]->gen == gen) {
            conn_send(a, i, frame, len);
            return;
        }
    }
    fprintf(stderr, "switchsim event=response_lost reason=connection_gone\n");
}

static void queue_response(struct app *a, unsigned long gen, long long due, const uint8_t *frame,
                           size_t len)
{
    for (size_t k = 0; k < MAX_PENDING; k++) {
        if (!a->pend[k].used) {
            a->pend[k].used = 1;
            a->pend[k].gen = gen;
            a->pend[k].due = due;
            a->pend[k].len = len;
            memcpy(a->pend[k].frame, frame, len);
            return;
        }
    }
    fprintf(stderr, "switchsim event=response_lost reason=queue_full\n");
}

/* One request: the issuer answers, the test controls decide when and how often it is sent. */
static void on_message(struct app *a, size_t i, const uint8_t *msg, size_t len)
{
    static uint8_t frame[MPOS_ISO8583_FRAME_HDR + SW_MAX_MSG];
    size_t rlen = 0;
    int financial = 0;
    unsigned long gen = a->conns[i]->gen;
    if (sw_issuer_handle(&a->is, msg, len, frame + 2, SW_MAX_MSG, &rlen, &financial) != MPOS_OK ||
        rlen == 0) {
        return;
    }
    mpos_store_be16(frame, (uint16_t)rlen);
    rlen += 2;
    /* Network management is never dropped or delayed: the controls aim at transactions, and
     * an echo must not use them up. */
    long long extra = 0;
    int copies = 1;
    if (financial) {
        if (a->drop_n > 0) {
            a->drop_n--;
            a->is.st.dropped++;
            fprintf(stderr, "switchsim event=drop\n");
            return;
        }
        extra = a->delay_ms + a->late_ms;
        a->late_ms = 0;
        if (a->dup_n > 0) {
            a->dup_n--;
            a->is.st.duplicated++;
            copies = 2;
        }
    }
    for (int k = 0; k < copies; k++) {
        if (extra > 0) {
            queue_response(a, gen, now_ms() + extra, frame, rlen);
        } else {
            send_to_gen(a, gen, frame, rlen);
        }
    }
}

static void conn_read(struct app *a, size_t i)
{
    struct conn *c = a->conns[i];
    ssize_t n = recv(c->fd, c->rx + c->rx_len, sizeof(c->rx) - c->rx_len, MSG_DONTWAIT);
    if (n == 0) {
        conn_close(a, i, "peer_closed");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(a, i, "read_error");
        }
        return;
    }
    if (c->rx_len == 0) {
        c->rx_since = now_ms();
    }
    c->rx_len += (size_t)n;
    for (;;) {
        const uint8_t *m = NULL;
        size_t mlen = 0, flen = 0;
        if (c->rx_len >= 2 && mpos_load_be16(c->rx) > SW_MAX_MSG) {
            conn_close(a, i, "frame_too_long");
            return;
        }
        int r = mpos_iso8583_frame_parse(c->rx, c->rx_len, &m, &mlen, &flen);
        if (r == MPOS_ERR_LENGTH) {
            break;
        }
        if (r != MPOS_OK) {
            conn_close(a, i, "bad_frame");
            return;
        }
        on_message(a, i, m, mlen);
        if (a->conns[i] == NULL) {
            return;
        }
        memmove(c->rx, c->rx + flen, c->rx_len - flen);
        c->rx_len -= flen;
        c->rx_since = now_ms();
    }
}

/* ---- control socket --------------------------------------------------------------------- */

static void ctl_answer(struct ctl_client *cl, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(cl->fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        off += (size_t)n;
    }
}

static void ctl_command(struct app *a, struct ctl_client *cl, char *line)
{
    static char out[4096];
    char *arg = strchr(line, ' ');
    long long v = 0;
    if (arg != NULL) {
        *arg++ = '\0';
    }
    fprintf(stderr, "switchsim event=control command=%s\n", line);
    if (strcmp(line, "delay") == 0 && arg && parse_num(arg, 600000, &v)) {
        a->delay_ms = v;
        ctl_answer(cl, "ok\n");
    } else if (strcmp(line, "late") == 0 && arg && parse_num(arg, 600000, &v)) {
        a->late_ms = v;
        ctl_answer(cl, "ok\n");
    } else if (strcmp(line, "drop") == 0 && arg && parse_num(arg, 1000000, &v)) {
        a->drop_n = (unsigned long)v;
        ctl_answer(cl, "ok\n");
    } else if (strcmp(line, "duplicate") == 0 && arg && parse_num(arg, 1000000, &v)) {
        a->dup_n = (unsigned long)v;
        ctl_answer(cl, "ok\n");
    } else if (strcmp(line, "disconnect") == 0 && arg == NULL) {
        size_t n = 0;
        for (size_t i = 0; i < MAX_CONNS; i++) {
            if (a->conns[i] != NULL) {
                conn_close(a, i, "control");
                n++;
            }
        }
        snprintf(out, sizeof(out), "ok closed=%zu\n", n);
        ctl_answer(cl, out);
    } else if (strcmp(line, "rc") == 0 && arg) {
        char *code = strchr(arg, ' ');
        int r = MPOS_ERR_FORMAT;
        if (code != NULL) {
            *code++ = '\0';
            r = sw_issuer_force_rc(&a->is, arg, code);
        }
        ctl_answer(cl, r == MPOS_OK        ? "ok\n"
                       : r == MPOS_ERR_PAN ? "error: unknown card\n"
                                           : "error: usage: rc PAN CODE\n");
    } else if (strcmp(line, "reset") == 0 && arg == NULL) {
        a->delay_ms = a->late_ms = 0;
        a->drop_n = a->dup_n = 0;
        for (size_t k = 0; k < MAX_PENDING; k++) {
            a->pend[k].used = 0;
        }
        sw_issuer_reset(&a->is);
        ctl_answer(cl, "ok\n");
    } else if (strcmp(line, "status") == 0 && arg == NULL) {
        const struct sw_stats *s = &a->is.st;
        snprintf(out, sizeof(out),
                 "ok requests=%lu responses=%lu approved=%lu declined=%lu reversals=%lu "
                 "dropped=%lu duplicated=%lu bad_mac=%lu malformed=%lu connections=%zu "
                 "delay=%lld late=%lld drop=%lu duplicate=%lu\n",
                 s->requests, s->responses, s->approved, s->declined, s->reversals, s->dropped,
                 s->duplicated, s->bad_mac, s->malformed, conn_count(a), a->delay_ms, a->late_ms,
                 a->drop_n, a->dup_n);
        ctl_answer(cl, out);
    } else if (strcmp(line, "ledger") == 0 && arg == NULL) {
        memcpy(out, "ok ", 3);
        sw_issuer_ledger_line(&a->is, out + 3, sizeof(out) - 5);
        strcat(out, "\n");
        ctl_answer(cl, out);
    } else if (strcmp(line, "ping") == 0 && arg == NULL) {
        ctl_answer(cl, "ok\n");
    } else {
        ctl_answer(cl, "error: unknown command or bad argument\n");
    }
}

static void ctl_read(struct app *a, struct ctl_client *cl)
{
    ssize_t n = recv(cl->fd, cl->line + cl->len, sizeof(cl->line) - 1 - cl->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            (void)close(cl->fd);
            cl->fd = -1;
            cl->len = 0;
        }
        return;
    }
    cl->len += (size_t)n;
    for (;;) {
        char *nl = memchr(cl->line, '\n', cl->len);
        if (nl == NULL) {
            if (cl->len == sizeof(cl->line) - 1) {
                ctl_answer(cl, "error: line too long\n");
                (void)close(cl->fd);
                cl->fd = -1;
                cl->len = 0;
            }
            return;
        }
        *nl = '\0';
        size_t used = (size_t)(nl - cl->line) + 1;
        if (nl > cl->line && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        ctl_command(a, cl, cl->line);
        memmove(cl->line, cl->line + used, cl->len - used);
        cl->len -= used;
    }
}

static int ctl_open(struct app *a)
{
    struct sockaddr_un sa;
    mode_t old;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(a->ctl_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "mpos-switchsim: control socket path too long\n");
        return -1;
    }
    strcpy(sa.sun_path, a->ctl_path);
    a->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->ctl_fd < 0) {
        perror("mpos-switchsim: control socket");
        return -1;
    }
    old = umask(0177); /* the socket file: 0600 */
    if (bind(a->ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(a->ctl_fd, 4) != 0) {
        umask(old);
        perror("mpos-switchsim: control socket");
        (void)close(a->ctl_fd);
        a->ctl_fd = -1;
        return -1;
    }
    umask(old);
    return 0;
}

/* ---- listener --------------------------------------------------------------------------- */

static int listen_open(struct app *a, const char *spec, char *shown, size_t cap)
{
    char host[64] = "127.0.0.1";
    long long port = 0;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int one = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    if (spec != NULL) {
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host) ||
            !parse_num(colon + 1, 65535, &port)) {
            fprintf(stderr, "mpos-switchsim: --listen wants ADDR:PORT\n");
            return -2;
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "mpos-switchsim: --listen takes a 127.0.0.0/8 address only\n");
        return -2;
    }
    sa.sin_port = htons((uint16_t)port);
    a->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->lfd < 0 || setsockopt(a->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(a->lfd, 16) != 0 ||
        getsockname(a->lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("mpos-switchsim: listen");
        return -1;
    }
    snprintf(shown, cap, "%s:%u", host, (unsigned)ntohs(sa.sin_port));
    return (int)ntohs(sa.sin_port);
}

/* ---- main loop -------------------------------------------------------------------------- */

static void run(struct app *a)
{
    struct pollfd pf[3 + MAX_CONNS + CTL_CLIENTS];
    size_t map[3 + MAX_CONNS + CTL_CLIENTS];
    while (!a->stop) {
        size_t n = 0;
        long long now = now_ms(), timeout = 1000;
        pf[n++] = (struct pollfd){.fd = a->lfd, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = a->sig_fd, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = a->ctl_fd, .events = a->ctl_fd >= 0 ? POLLIN : 0};
        for (size_t i = 0; i < MAX_CONNS; i++) {
            if (a->conns[i] != NULL) {
                map[n] = i;
                pf[n++] = (struct pollfd){
                    .fd = a->conns[i]->fd,
                    .events = (short)(POLLIN | (a->conns[i]->tx_len > 0 ? POLLOUT : 0))};
            }
        }
        size_t first_ctl = n;
        for (size_t i = 0; i < CTL_CLIENTS; i++) {
            if (a->cl[i].fd >= 0) {
                map[n] = i;
                pf[n++] = (struct pollfd){.fd = a->cl[i].fd, .events = POLLIN};
            }
        }
        for (size_t k = 0; k < MAX_PENDING; k++) {
            if (a->pend[k].used && a->pend[k].due - now < timeout) {
                timeout = a->pend[k].due - now < 0 ? 0 : a->pend[k].due - now;
            }
        }
        int r = poll(pf, (nfds_t)n, (int)timeout);
        if (r < 0 && errno != EINTR) {
            perror("mpos-switchsim: poll");
            return;
        }
        if (pf[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                a->stop = 1;
            }
        }
        if (pf[0].revents & POLLIN) {
            conn_accept(a);
        }
        if (a->ctl_fd >= 0 && (pf[2].revents & POLLIN)) {
            int fd = accept4(a->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
            size_t k = 0;
            while (fd >= 0 && k < CTL_CLIENTS && a->cl[k].fd >= 0) {
                k++;
            }
            if (fd >= 0 && k < CTL_CLIENTS) {
                /* The answers are written blocking: a client that never reads must not stall
                 * the switch for more than a second per answer. */
                struct timeval tv = {1, 0};
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                a->cl[k].fd = fd;
                a->cl[k].len = 0;
            } else if (fd >= 0) {
                (void)close(fd);
            }
        }
        for (size_t p = 3; p < first_ctl; p++) {
            size_t i = map[p];
            if (a->conns[i] == NULL || a->conns[i]->fd != pf[p].fd) {
                continue;
            }
            if (pf[p].revents & POLLOUT) {
                if (conn_flush(a->conns[i]) != 0) {
                    conn_close(a, i, "write_error");
                    continue;
                }
            }
            if (pf[p].revents & (POLLIN | POLLHUP | POLLERR)) {
                conn_read(a, i);
            }
        }
        for (size_t p = first_ctl; p < n; p++) {
            if (a->cl[map[p]].fd == pf[p].fd && (pf[p].revents & (POLLIN | POLLHUP | POLLERR))) {
                ctl_read(a, &a->cl[map[p]]);
            }
        }
        now = now_ms();
        /* Responses whose time has come, oldest due first. */
        for (;;) {
            long best = -1;
            for (size_t k = 0; k < MAX_PENDING; k++) {
                if (a->pend[k].used && a->pend[k].due <= now &&
                    (best < 0 || a->pend[k].due < a->pend[best].due)) {
                    best = (long)k;
                }
            }
            if (best < 0) {
                break;
            }
            a->pend[best].used = 0;
            send_to_gen(a, a->pend[best].gen, a->pend[best].frame, a->pend[best].len);
        }
        /* Bounded reads: a frame begun and not finished within the read timeout closes. */
        for (size_t i = 0; i < MAX_CONNS; i++) {
            if (a->conns[i] != NULL && a->conns[i]->rx_len > 0 &&
                now - a->conns[i]->rx_since > a->read_timeout) {
                conn_close(a, i, "read_timeout");
            }
        }
    }
}

int main(int argc, char **argv)
{
    static struct app app;
    struct app *a = &app;
    const char *keys = NULL, *cards = NULL, *listen_spec = NULL, *port_file = NULL, *ledger = NULL,
               *why = "";
    char shown[80];
    sigset_t mask;
    long long v;
    int rc = 1, port;

    a->lfd = a->ctl_fd = a->sig_fd = -1;
    a->read_timeout = DEFAULT_RD_MS;
    for (size_t i = 0; i < CTL_CLIENTS; i++) {
        a->cl[i].fd = -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        if (strcmp(o, "--keys") == 0) {
            keys = val;
        } else if (strcmp(o, "--cards") == 0) {
            cards = val;
        } else if (strcmp(o, "--listen") == 0) {
            listen_spec = val;
        } else if (strcmp(o, "--port-file") == 0) {
            port_file = val;
        } else if (strcmp(o, "--control") == 0) {
            a->ctl_path = val;
        } else if (strcmp(o, "--ledger") == 0) {
            ledger = val;
        } else if (strcmp(o, "--read-timeout") == 0 && parse_num(val, 3600000, &v) && v > 0) {
            a->read_timeout = v;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (keys == NULL || cards == NULL) {
        usage(stderr);
        return 2;
    }
    a->pend = calloc(MAX_PENDING, sizeof(*a->pend));
    if (a->pend == NULL) {
        return 1;
    }
    if (sw_issuer_init(&a->is, keys, cards, ledger, &why) != MPOS_OK) {
        fprintf(stderr, "mpos-switchsim: %s\n", why);
        free(a->pend);
        return 1;
    }
    sw_issuer_ledger_write(&a->is);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    a->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    port = listen_open(a, listen_spec, shown, sizeof(shown));
    if (port < 0) {
        rc = port == -2 ? 2 : 1;
        goto exit;
    }
    if (a->ctl_path != NULL && ctl_open(a) != 0) {
        a->ctl_path = NULL; /* not ours: do not unlink it */
        goto exit;
    }
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
            fprintf(stderr, "mpos-switchsim: cannot write the port file\n");
            goto exit;
        }
    }
    printf("listening=%s\n", shown);
    if (a->ctl_path != NULL) {
        printf("control=%s\n", a->ctl_path);
    }
    printf("ready\n");
    fflush(stdout);
    fprintf(stderr, "switchsim event=start listen=%s cards=%zu zek=%d\n", shown, a->is.ncards,
            a->is.have_zek);
    run(a);
    rc = 0;
exit:
    for (size_t i = 0; i < MAX_CONNS; i++) {
        if (a->conns[i] != NULL) {
            conn_close(a, i, "shutdown");
        }
    }
    for (size_t i = 0; i < CTL_CLIENTS; i++) {
        if (a->cl[i].fd >= 0) {
            (void)close(a->cl[i].fd);
        }
    }
    if (a->ctl_fd >= 0) {
        (void)close(a->ctl_fd);
        (void)unlink(a->ctl_path);
    }
    if (a->lfd >= 0) {
        (void)close(a->lfd);
    }
    if (a->sig_fd >= 0) {
        (void)close(a->sig_fd);
    }
    sw_issuer_clear(&a->is);
    free(a->pend);
    fprintf(stderr, "switchsim event=stop\n");
    return rc;
}
