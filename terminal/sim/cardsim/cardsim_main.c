/* mpos-cardsim: the virtual EMV / PBOC card (card.h) behind pcscd's vpcd driver (vpcd.h).
 *
 *   mpos-cardsim [--cards PATH] [--card [SLOT:]NAME[,t0]]... [--bind ADDR] [--port N]
 *                [--slots N] [--control PATH] [--frame-timeout MS]
 *
 * Listens on ADDR (127.0.0.1; only 127.0.0.0/8 is accepted) at N (35963) for slot 0 and N+1
 * for slot 1: start it before pcscd, whose vpcd driver connects to it (reader.conf DEVICENAME
 * ADDR:N), and stop it after pcscd. The driver always opens both slots: keep --slots 2 for
 * it (a port nobody listens on when pcscd starts leaves the driver with a bad socket, and
 * pcscd aborts). --card puts the card of cards.tsv row NAME in a slot (slot
 * 0 by default; ",t0" makes it a T=0 card); a slot without --card starts empty.
 *
 * At run time the cards change through the control socket (--control PATH: a Unix stream
 * socket of mode 0600, refused if PATH exists), one command per line, one answer line each:
 *   insert SLOT NAME [t0]   put card NAME in SLOT (replaces a card that is there)   -> ok
 *   remove SLOT             take the card out                                         -> ok
 *   mute SLOT               the chip stops answering (APDUs, resets); the card stays  -> ok
 *   unmute SLOT             it answers again                                          -> ok
 *   status                  -> ok 0:NAME:t1:connected 1:-:-:waiting  (card, protocol, reader)
 *   ping                    -> ok
 * errors answer "error: <reason>". Signals: SIGUSR1 (SIGUSR2) takes the card out of slot 0
 * (1), or puts the last one back; SIGTERM, SIGINT or SIGHUP end it cleanly (the control
 * socket file is removed).
 *
 * Standard output: one line per slot ("slot 0 listening on 127.0.0.1:35963 card approve"), the
 * control socket, then "ready" once every socket listens. Card data (PAN, PIN, keys, APDUs) is
 * never printed. Exit status 0 after a signal, 1 on a start-up error, 2 on a usage error.
 *
 * With MPOS_CARDSIM_TRACE set (not empty) in its environment, the transport's events go to
 * standard error (mpos_vpcd_trace: connections, control frames, APDU lengths; no card data).
 */
#define _GNU_SOURCE /* signalfd, accept4 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "card.h"
#include "mpos/crypto.h"
#include "mpos/util.h"
#include "vpcd.h"

#ifndef MPOS_CARDS_DEFAULT
#define MPOS_CARDS_DEFAULT "cards.tsv"
#endif

#define CTL_CLIENTS  4
#define CTL_LINE_MAX 256

struct ctl_client {
    int fd;
    char line[CTL_LINE_MAX];
    size_t len;
};

struct app {
    mpos_crypto_ctx cc;
    mpos_vpcd v;
    const char *cards;
    char name[MPOS_VPCD_SLOTS][32]; /* the card in the slot, or the last one (for SIGUSR) */
    int t0[MPOS_VPCD_SLOTS];
    int present[MPOS_VPCD_SLOTS];
    const char *ctl_path;
    int ctl_fd;
    struct ctl_client cl[CTL_CLIENTS];
    int sig_fd;
    int stop;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpos-cardsim [--cards PATH] [--card [SLOT:]NAME[,t0]]... [--bind ADDR]\n"
            "                    [--port N] [--slots N] [--control PATH] [--frame-timeout MS]\n"
            "Serves the virtual card to pcscd's vpcd driver (reversed mode: the driver\n"
            "connects here). Default: --bind 127.0.0.1 --port %u --slots %u.\n",
            (unsigned)MPOS_VPCD_DEFAULT_PORT, (unsigned)MPOS_VPCD_SLOTS);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;
    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Loads row name and puts it in slot. 0, or -1 with a fixed reason in *why. */
static int insert_card(struct app *a, size_t slot, const char *name, int t0, const char **why)
{
    mpos_cardsim_profile p;
    int rc = -1;
    if (slot >= a->v.nslots) {
        *why = "no such slot";
        return -1;
    }
    if (strlen(name) == 0 || strlen(name) >= sizeof(a->name[0])) {
        *why = "bad card name";
        return -1;
    }
    if (mpos_cardsim_profile_load(a->cards, name, &p) != MPOS_OK) {
        *why = "no such card in the cards file";
        goto exit;
    }
    if (mpos_vpcd_insert(&a->v, slot, &p, t0) != 0) {
        *why = "the card does not personalise";
        a->present[slot] = 0;
        goto exit;
    }
    snprintf(a->name[slot], sizeof(a->name[slot]), "%s", name);
    a->t0[slot] = t0;
    a->present[slot] = 1;
    rc = 0;
exit:
    MPOS_WIPE_CTX(&p);
    return rc;
}

static void remove_card(struct app *a, size_t slot)
{
    mpos_vpcd_remove(&a->v, slot);
    a->present[slot] = 0;
}

static void ctl_reply(struct ctl_client *c, const char *msg)
{
    size_t len = strlen(msg), off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, msg + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        off += (size_t)n;
    }
}

static void ctl_command(struct app *a, struct ctl_client *c, char *line)
{
    char out[256];
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    char *arg1 = strtok_r(NULL, " \t\r", &save);
    char *arg2 = strtok_r(NULL, " \t\r", &save);
    char *arg3 = strtok_r(NULL, " \t\r", &save);
    unsigned long slot = 0;
    const char *why = "unknown command";
    if (cmd == NULL) {
        return;
    }
    if (strcmp(cmd, "ping") == 0 && arg1 == NULL) {
        ctl_reply(c, "ok\n");
        return;
    }
    if (strcmp(cmd, "status") == 0 && arg1 == NULL) {
        size_t off = (size_t)snprintf(out, sizeof(out), "ok");
        for (size_t i = 0; i < a->v.nslots && off < sizeof(out); i++) {
            off += (size_t)snprintf(out + off, sizeof(out) - off, " %zu:%s:%s:%s", i,
                                    a->present[i] ? a->name[i] : "-",
                                    a->present[i] ? (a->t0[i] ? "t0" : "t1") : "-",
                                    a->v.slot[i].conn_fd >= 0 ? "connected" : "waiting");
        }
        if (off < sizeof(out) - 1) {
            out[off++] = '\n';
            out[off] = '\0';
        } else {
            out[sizeof(out) - 2] = '\n';
            out[sizeof(out) - 1] = '\0';
        }
        ctl_reply(c, out);
        return;
    }
    if (strcmp(cmd, "insert") == 0 && arg1 != NULL && arg2 != NULL &&
        (arg3 == NULL || strcmp(arg3, "t0") == 0 || strcmp(arg3, "t1") == 0)) {
        if (parse_uint(arg1, MPOS_VPCD_SLOTS - 1, &slot) != 0) {
            why = "no such slot";
        } else if (insert_card(a, slot, arg2, arg3 != NULL && strcmp(arg3, "t0") == 0, &why) == 0) {
            ctl_reply(c, "ok\n");
            return;
        }
    } else if ((strcmp(cmd, "mute") == 0 || strcmp(cmd, "unmute") == 0) && arg1 != NULL &&
               arg2 == NULL) {
        if (parse_uint(arg1, MPOS_VPCD_SLOTS - 1, &slot) != 0 || slot >= a->v.nslots) {
            why = "no such slot";
        } else if (!a->present[slot]) {
            why = "no card in the slot";
        } else {
            mpos_vpcd_silence(&a->v, slot, strcmp(cmd, "mute") == 0);
            ctl_reply(c, "ok\n");
            return;
        }
    } else if (strcmp(cmd, "remove") == 0 && arg1 != NULL && arg2 == NULL) {
        if (parse_uint(arg1, MPOS_VPCD_SLOTS - 1, &slot) != 0 || slot >= a->v.nslots) {
            why = "no such slot";
        } else {
            remove_card(a, slot);
            ctl_reply(c, "ok\n");
            return;
        }
    }
    snprintf(out, sizeof(out), "error: %s\n", why);
    ctl_reply(c, out);
}

static void ctl_drop(struct ctl_client *c)
{
    if (c->fd >= 0) {
        (void)close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
}

static void ctl_readable(struct app *a, struct ctl_client *c)
{
    char buf[128];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        ctl_drop(c);
        return;
    }
    for (ssize_t i = 0; i < n && c->fd >= 0; i++) {
        if (buf[i] == '\n') {
            c->line[c->len] = '\0';
            ctl_command(a, c, c->line);
            c->len = 0;
        } else if (c->len + 1 < sizeof(c->line)) {
            c->line[c->len++] = buf[i];
        } else {
            ctl_reply(c, "error: line too long\n");
            ctl_drop(c);
        }
    }
}

static void ctl_accept(struct app *a)
{
    int fd = accept4(a->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        return;
    }
    for (size_t i = 0; i < CTL_CLIENTS; i++) {
        if (a->cl[i].fd < 0) {
            a->cl[i].fd = fd;
            a->cl[i].len = 0;
            return;
        }
    }
    (void)close(fd); /* too many control clients */
}

static int ctl_open(struct app *a)
{
    struct sockaddr_un sa;
    struct stat st;
    mode_t old;
    int fd;
    if (strlen(a->ctl_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "mpos-cardsim: control socket path too long\n");
        return -1;
    }
    if (lstat(a->ctl_path, &st) == 0) {
        fprintf(stderr, "mpos-cardsim: %s exists: not replacing it\n", a->ctl_path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        perror("mpos-cardsim: control socket");
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, a->ctl_path, strlen(a->ctl_path) + 1);
    old = umask(0177); /* the socket file: 0600 */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0) {
        umask(old);
        perror("mpos-cardsim: control socket");
        (void)close(fd);
        return -1;
    }
    umask(old);
    a->ctl_fd = fd;
    return 0;
}

static void on_signal(struct app *a)
{
    struct signalfd_siginfo si;
    while (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        size_t slot = si.ssi_signo == SIGUSR2 ? 1 : 0;
        const char *why = NULL;
        switch (si.ssi_signo) {
        case SIGUSR1:
        case SIGUSR2:
            if (slot >= a->v.nslots) {
                break;
            }
            if (a->present[slot]) {
                remove_card(a, slot);
            } else if (a->name[slot][0] != '\0' &&
                       insert_card(a, slot, a->name[slot], a->t0[slot], &why) != 0) {
                fprintf(stderr, "mpos-cardsim: slot %zu: %s\n", slot, why);
            }
            break;
        default:
            a->stop = 1;
            break;
        }
    }
}

static int run(struct app *a)
{
    while (!a->stop) {
        struct pollfd fds[MPOS_VPCD_POLLFDS + 2 + CTL_CLIENTS];
        size_t nv = mpos_vpcd_pollfds(&a->v, fds, MPOS_VPCD_POLLFDS);
        size_t n = nv;
        fds[n].fd = a->sig_fd;
        fds[n].events = POLLIN;
        fds[n++].revents = 0;
        if (a->ctl_fd >= 0) {
            fds[n].fd = a->ctl_fd;
            fds[n].events = POLLIN;
            fds[n++].revents = 0;
        }
        for (size_t i = 0; i < CTL_CLIENTS; i++) {
            if (a->cl[i].fd >= 0) {
                fds[n].fd = a->cl[i].fd;
                fds[n].events = POLLIN;
                fds[n++].revents = 0;
            }
        }
        int r = poll(fds, n, 200);
        if (r < 0 && errno != EINTR) {
            perror("mpos-cardsim: poll");
            return 1;
        }
        /* vpcd first: the reader's frames are the latency-critical path. */
        mpos_vpcd_service(&a->v, fds, nv, mpos_vpcd_now_ms());
        for (size_t k = nv; k < n && r > 0; k++) {
            if (fds[k].revents == 0) {
                continue;
            }
            if (fds[k].fd == a->sig_fd) {
                on_signal(a);
            } else if (fds[k].fd == a->ctl_fd) {
                ctl_accept(a);
            } else {
                for (size_t i = 0; i < CTL_CLIENTS; i++) {
                    if (a->cl[i].fd == fds[k].fd) {
                        ctl_readable(a, &a->cl[i]);
                    }
                }
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app; /* large (two card contexts' worth of buffers): not on the stack */
    struct app *a = &app;
    const char *bind_addr = "127.0.0.1";
    unsigned long port = MPOS_VPCD_DEFAULT_PORT, slots = MPOS_VPCD_SLOTS, timeout = 0;
    const char *card_arg[8];
    size_t ncards = 0;
    sigset_t set;
    int rc = 1, vpcd_open = 0, crypto_open = 0;

    a->cards = MPOS_CARDS_DEFAULT;
    a->ctl_fd = -1;
    a->sig_fd = -1;
    for (size_t i = 0; i < CTL_CLIENTS; i++) {
        a->cl[i].fd = -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (val == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(o, "--cards") == 0) {
            a->cards = val;
        } else if (strcmp(o, "--card") == 0 && ncards < sizeof(card_arg) / sizeof(card_arg[0])) {
            card_arg[ncards++] = val;
        } else if (strcmp(o, "--bind") == 0) {
            bind_addr = val;
        } else if (strcmp(o, "--port") == 0 && parse_uint(val, 65535, &port) == 0 && port > 0) {
        } else if (strcmp(o, "--slots") == 0 && parse_uint(val, MPOS_VPCD_SLOTS, &slots) == 0 &&
                   slots > 0) {
        } else if (strcmp(o, "--control") == 0) {
            a->ctl_path = val;
        } else if (strcmp(o, "--frame-timeout") == 0 && parse_uint(val, 600000, &timeout) == 0 &&
                   timeout > 0) {
        } else {
            usage(stderr);
            return 2;
        }
    }

    /* Signals through a descriptor, before anything can fail half-way. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
        (a->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
        perror("mpos-cardsim: signals");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    if (mpos_crypto_init(&a->cc) != MPOS_OK) {
        fprintf(stderr, "mpos-cardsim: crypto initialisation failed\n");
        goto exit;
    }
    crypto_open = 1;
    int vr = mpos_vpcd_open(&a->v, bind_addr, (uint16_t)port, slots, &a->cc);
    if (vr == MPOS_ERR_ARG) {
        fprintf(stderr, "mpos-cardsim: --bind must be an IPv4 address in 127.0.0.0/8 and the "
                        "ports within 1..65535\n");
        rc = 2;
        goto exit;
    }
    if (vr != 0) {
        fprintf(stderr, "mpos-cardsim: cannot listen on %s ports %lu..%lu: %s\n", bind_addr, port,
                port + slots - 1, strerror(errno));
        goto exit;
    }
    vpcd_open = 1;
    if (getenv("MPOS_CARDSIM_TRACE") != NULL && getenv("MPOS_CARDSIM_TRACE")[0] != '\0') {
        mpos_vpcd_trace(&a->v, stderr);
    }
    if (timeout > 0) {
        a->v.frame_timeout_ms = (uint32_t)timeout;
    }
    for (size_t i = 0; i < ncards; i++) {
        char spec[64];
        char *name = spec, *comma;
        unsigned long slot = 0;
        int t0 = 0;
        const char *why = NULL;
        if (strlen(card_arg[i]) >= sizeof(spec)) {
            fprintf(stderr, "mpos-cardsim: --card %s: too long\n", card_arg[i]);
            rc = 2;
            goto exit;
        }
        memcpy(spec, card_arg[i], strlen(card_arg[i]) + 1);
        if (spec[0] >= '0' && spec[0] <= '9' && spec[1] == ':') {
            slot = (unsigned long)(spec[0] - '0');
            name = &spec[2];
        }
        if ((comma = strchr(name, ',')) != NULL) {
            if (strcmp(comma, ",t0") != 0 && strcmp(comma, ",t1") != 0) {
                fprintf(stderr, "mpos-cardsim: --card %s: the option is t0 or t1\n", card_arg[i]);
                rc = 2;
                goto exit;
            }
            t0 = strcmp(comma, ",t0") == 0;
            *comma = '\0';
        }
        if (insert_card(a, slot, name, t0, &why) != 0) {
            fprintf(stderr, "mpos-cardsim: --card %s: %s (cards file %s)\n", card_arg[i], why,
                    a->cards);
            goto exit;
        }
    }
    if (a->ctl_path != NULL && ctl_open(a) != 0) {
        goto exit;
    }
    for (size_t i = 0; i < a->v.nslots; i++) {
        printf("mpos-cardsim: slot %zu listening on %s:%u card %s%s\n", i, bind_addr,
               (unsigned)a->v.slot[i].port, a->present[i] ? a->name[i] : "(none)",
               a->present[i] && a->t0[i] ? " (T=0)" : "");
    }
    if (a->ctl_fd >= 0) {
        printf("mpos-cardsim: control socket %s\n", a->ctl_path);
    }
    printf("mpos-cardsim: ready\n");
    fflush(stdout);

    rc = run(a);
    printf("mpos-cardsim: stopped\n");
    fflush(stdout);
exit:
    for (size_t i = 0; i < CTL_CLIENTS; i++) {
        ctl_drop(&a->cl[i]);
    }
    if (a->ctl_fd >= 0) {
        (void)close(a->ctl_fd);
        (void)unlink(a->ctl_path);
    }
    if (vpcd_open) {
        mpos_vpcd_close(&a->v);
    }
    if (crypto_open) {
        mpos_crypto_clear(&a->cc);
    }
    if (a->sig_fd >= 0) {
        (void)close(a->sig_fd);
    }
    return rc;
}
