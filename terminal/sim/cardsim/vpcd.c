/* openmpos simulator: the vpcd transport of the virtual card (vpcd.h). */
#define _DEFAULT_SOURCE /* TCP_QUICKACK, SOCK_CLOEXEC */

#include "vpcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mpos/util.h"

/* ISO/IEC 7816-4 5.6 status words the transport produces itself. */
#define SW_WRONG_LENGTH 0x6700

/* A card present, never powered: any non-empty answer tells the driver a card is there. */
static const uint8_t atr_unpowered[] = {0x3B, 0x00};
/* T=0 only: no interface bytes (ISO/IEC 7816-3 8.2.3, T=0 when TD1 is absent). */
static const uint8_t atr_t0[] = {0x3B, 0x00};

uint64_t mpos_vpcd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One trace line (mpos_vpcd_trace): never card data, only what the format says. */
static void trace(const mpos_vpcd_slot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void trace(const mpos_vpcd_slot *s, const char *fmt, ...)
{
    va_list ap;
    if (s->trace == NULL) {
        return;
    }
    uint64_t now = mpos_vpcd_now_ms();
    fprintf(s->trace, "mpos-cardsim: trace %llu.%03llu slot %u ", (unsigned long long)(now / 1000u),
            (unsigned long long)(now % 1000u), s->index);
    va_start(ap, fmt);
    vfprintf(s->trace, fmt, ap);
    va_end(ap);
    fputc('\n', s->trace);
    fflush(s->trace);
}

static void set_quickack(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void frame_reset(mpos_vpcd_slot *s)
{
    s->hdr_got = 0;
    s->frame_len = 0;
    s->frame_got = 0;
    s->frame_start_ms = 0;
    mpos_cleanse(s->frame, sizeof(s->frame));
}

static void t0_clear(mpos_vpcd_slot *s)
{
    mpos_cleanse(s->t0_rsp, sizeof(s->t0_rsp));
    s->t0_rsp_len = 0;
    s->t0_off = 0;
    s->t0_kind = 0;
    memset(s->t0_hdr, 0, sizeof(s->t0_hdr));
}

/* Closes the reader's connection; hard: with a TCP reset (SO_LINGER 0), so the driver's
 * pending recv fails at once instead of reading an orderly end. */
static void conn_close(mpos_vpcd_slot *s, int hard, const char *why)
{
    if (s->conn_fd >= 0) {
        trace(s, "close %s (%s)", hard ? "reset" : "orderly", why);
        if (hard) {
            struct linger lg = {1, 0};
            (void)setsockopt(s->conn_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            s->resets++;
        }
        (void)close(s->conn_fd);
        s->conn_fd = -1;
    }
    s->powerup_pending = 0;
    frame_reset(s);
    t0_clear(s);
}

/* One frame, one send(): the 2-byte length and the body together. 0, or -1 when the
 * connection was closed because of it. */
static int send_frame(mpos_vpcd_slot *s, const uint8_t *body, size_t len)
{
    uint8_t out[2 + MPOS_CARDSIM_RAPDU_MAX];
    ssize_t n;
    if (s->conn_fd < 0 || len > MPOS_CARDSIM_RAPDU_MAX) {
        return -1;
    }
    mpos_store_be16(out, (uint16_t)len);
    if (len > 0) {
        memcpy(&out[2], body, len);
    }
    do {
        n = send(s->conn_fd, out, 2 + len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    mpos_cleanse(out, sizeof(out));
    if (n != (ssize_t)(2 + len)) {
        /* The socket buffer of a reader that reads one frame at a time never fills: a short
         * write means the reader is gone or misbehaving. */
        conn_close(s, 1, "short write");
        return -1;
    }
    return 0;
}

static void sw_only(uint8_t *r, size_t *rlen, unsigned sw)
{
    r[0] = (uint8_t)(sw >> 8);
    r[1] = (uint8_t)sw;
    *rlen = 2;
}

/* The T=0 protocol over the engine (ISO/IEC 7816-3 10.3.4; EMV 4.3 Book 1 9.3.1.1 to
 * 9.3.1.3): 0 with the R-APDU in r, or the engine's non-zero result. */
static int t0_process(mpos_vpcd_slot *s, const uint8_t *c, size_t n, uint8_t *r, size_t cap,
                      size_t *rlen)
{
    int rc;
    size_t lc = 0, data_len;
    int kind = s->t0_kind;
    *rlen = 0;
    /* GET RESPONSE for the data of the last case 4 command (7816-4 7.6.1). */
    if (kind == 1 && n == 5 && c[0] == 0x00 && c[1] == 0xC0 && c[2] == 0x00 && c[3] == 0x00) {
        size_t avail = s->t0_rsp_len - 2 - s->t0_off;
        size_t le = c[4] == 0 ? 256 : c[4];
        if (le > avail) {
            sw_only(r, rlen, 0x6C00u | (unsigned)avail); /* wrong Le: the exact length */
            return 0;
        }
        memcpy(r, &s->t0_rsp[s->t0_off], le);
        s->t0_off += le;
        if (le < avail) {
            size_t left = avail - le;
            sw_only(&r[le], rlen, 0x6100u | (unsigned)(left >= 256 ? 0 : left));
            *rlen += le;
            return 0;
        }
        memcpy(&r[le], &s->t0_rsp[s->t0_rsp_len - 2], 2);
        *rlen = le + 2;
        t0_clear(s);
        return 0;
    }
    /* The case 2 command again, with Le = the length 6Cxx gave (Book 1 9.3.1.2). */
    if (kind == 2 && n == 5 && memcmp(c, s->t0_hdr, 4) == 0 &&
        (size_t)c[4] == (s->t0_rsp_len - 2) % 256) {
        memcpy(r, s->t0_rsp, s->t0_rsp_len);
        *rlen = s->t0_rsp_len;
        t0_clear(s);
        return 0;
    }
    t0_clear(s); /* any other command drops what was waiting */
    rc = mpos_cardsim_process(s->card, c, n, r, cap, rlen);
    if (rc != 0 || *rlen < 2) {
        return rc != 0 ? rc : MPOS_CARDSIM_MUTE;
    }
    data_len = *rlen - 2;
    if (n > 5) {
        lc = c[4];
    }
    if (data_len == 0) {
        return 0;
    }
    if (n == 5) {
        /* Case 2: Le = 00 stands for 256 (7816-3 10.3.2). */
        size_t le = c[4] == 0 ? 256 : c[4];
        if (le != data_len) {
            memcpy(s->t0_rsp, r, *rlen);
            s->t0_rsp_len = *rlen;
            memcpy(s->t0_hdr, c, 4);
            s->t0_kind = 2;
            sw_only(r, rlen, 0x6C00u | (unsigned)(data_len % 256));
        }
        return 0;
    }
    if (n == 5 + lc || n == 6 + lc) {
        /* Case 4 (or case 3 with data back): T=0 carries no Le, so the card says 61xx. */
        memcpy(s->t0_rsp, r, *rlen);
        s->t0_rsp_len = *rlen;
        s->t0_off = 0;
        s->t0_kind = 1;
        sw_only(r, rlen, 0x6100u | (unsigned)(data_len % 256));
    }
    return 0;
}

static void handle_apdu(mpos_vpcd_slot *s, const uint8_t *c, size_t n)
{
    uint8_t r[MPOS_CARDSIM_RAPDU_MAX];
    size_t rlen = 0;
    int rc;
    s->apdus++;
    trace(s, "apdu %zu bytes", n);
    if (s->card == NULL) {
        conn_close(s, 1, "apdu, no card"); /* no answer; the next poll finds the slot empty */
        return;
    }
    if (s->silent) {
        conn_close(s, 1, "apdu, mute");
        return;
    }
    rc = s->t0 ? t0_process(s, c, n, r, sizeof(r), &rlen)
               : mpos_cardsim_process(s->card, c, n, r, sizeof(r), &rlen);
    if (rc != 0 || rlen < 2) {
        /* Mute (or not powered, or a bad call): a real reader times out; this one resets. */
        conn_close(s, 1, "apdu not answered");
    } else {
        trace(s, "answer %zu bytes", rlen);
        (void)send_frame(s, r, rlen);
    }
    mpos_cleanse(r, sizeof(r));
}

static void handle_ctrl(mpos_vpcd_slot *s, uint8_t ctrl)
{
    trace(s, "control %02x (%s)", (unsigned)ctrl, s->card != NULL ? "card" : "empty");
    switch (ctrl) {
    case MPOS_VPCD_CTRL_OFF:
        s->powerup_pending = 0;
        t0_clear(s);
        if (s->card != NULL) {
            mpos_cardsim_power_off(s->card);
        }
        break;
    case MPOS_VPCD_CTRL_ON:
    case MPOS_VPCD_CTRL_RESET:
        /* The engine has only a cold reset; a warm one (02) restarts the session the same
         * way (ISO/IEC 7816-3 6.2.3). The driver asks for the ATR next. */
        t0_clear(s);
        s->powerup_pending = 1;
        s->powerup_rc = MPOS_CARDSIM_NO_CHIP;
        if (s->card != NULL) {
            uint8_t atr[MPOS_CARDSIM_ATR_MAX];
            size_t atr_len = 0;
            s->powerup_rc =
                s->silent ? MPOS_CARDSIM_MUTE : mpos_cardsim_power_on(s->card, atr, &atr_len);
            if (s->powerup_rc == 0) {
                if (s->t0) {
                    memcpy(s->atr, atr_t0, sizeof(atr_t0));
                    s->atr_len = sizeof(atr_t0);
                } else {
                    memcpy(s->atr, atr, atr_len);
                    s->atr_len = atr_len;
                }
            }
        }
        break;
    case MPOS_VPCD_CTRL_ATR:
        if (s->card == NULL) {
            /* The driver's "no card": an empty answer, and the end of the connection (its
             * recv of the empty body with MSG_WAITALL waits for a byte or the end). */
            if (send_frame(s, NULL, 0) == 0) {
                conn_close(s, 0, "no card");
            }
        } else if (s->powerup_pending) {
            s->powerup_pending = 0;
            trace(s, "power-up answer: %s", s->powerup_rc == 0 ? "ATR" : "no ATR");
            if (s->powerup_rc == 0) {
                (void)send_frame(s, s->atr, s->atr_len);
            } else {
                /* No ATR: an answer longer than any ATR, which the driver refuses ("Not
                 * enough memory for ATR", IFD_COMMUNICATION_ERROR) without dropping the
                 * connection: the power-up fails and the card stays present. */
                uint8_t no_atr[MPOS_VPCD_NO_ATR_LEN];
                memset(no_atr, 0, sizeof(no_atr));
                (void)send_frame(s, no_atr, sizeof(no_atr));
            }
        } else if (s->atr_len > 0) {
            (void)send_frame(s, s->atr, s->atr_len);
        } else {
            (void)send_frame(s, atr_unpowered, sizeof(atr_unpowered));
        }
        break;
    default:
        break; /* not part of the protocol: ignored, as the driver never sends one */
    }
}

static void handle_frame(mpos_vpcd_slot *s)
{
    if (s->frame_len > MPOS_VPCD_FRAME_MAX) {
        /* Dropped unread: too long for any short C-APDU. */
        uint8_t r[2];
        size_t rlen;
        s->apdus++;
        sw_only(r, &rlen, SW_WRONG_LENGTH);
        if (s->card == NULL) {
            conn_close(s, 1, "long frame, no card");
        } else {
            (void)send_frame(s, r, rlen);
        }
    } else if (s->frame_len == 1) {
        handle_ctrl(s, s->frame[0]);
    } else if (s->frame_len > 1) {
        handle_apdu(s, s->frame, s->frame_len);
    }
}

/* Feeds received bytes into the frame parser; frames are handled as they complete. */
static void feed(mpos_vpcd_slot *s, const uint8_t *p, size_t n, uint64_t now)
{
    while (n > 0 && s->conn_fd >= 0) {
        if (s->hdr_got == 0 && s->frame_start_ms == 0) {
            s->frame_start_ms = now == 0 ? 1 : now;
        }
        if (s->hdr_got < 2) {
            s->hdr[s->hdr_got++] = *p++;
            n--;
            if (s->hdr_got == 2) {
                s->frame_len = (size_t)s->hdr[0] << 8 | s->hdr[1];
                s->frame_got = 0;
            }
        } else {
            size_t want = s->frame_len - s->frame_got;
            size_t take = n < want ? n : want;
            if (s->frame_got < MPOS_VPCD_FRAME_MAX) {
                size_t room = MPOS_VPCD_FRAME_MAX - s->frame_got;
                memcpy(&s->frame[s->frame_got], p, take < room ? take : room);
            }
            s->frame_got += take;
            p += take;
            n -= take;
        }
        if (s->hdr_got == 2 && s->frame_got == s->frame_len) {
            handle_frame(s);
            if (s->conn_fd >= 0) {
                frame_reset(s);
            }
        }
    }
}

static void on_readable(mpos_vpcd_slot *s, uint64_t now)
{
    uint8_t buf[1024];
    ssize_t n;
    do {
        n = recv(s->conn_fd, buf, sizeof(buf), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    if (n <= 0) {
        /* the driver closed (eject) or the connection failed */
        conn_close(s, 0, n == 0 ? "closed by the reader" : "receive failed");
        return;
    }
    set_quickack(s->conn_fd);
    feed(s, buf, (size_t)n, now);
    mpos_cleanse(buf, (size_t)n);
}

static void on_accept(mpos_vpcd_slot *s)
{
    int one = 1, fd;
    do {
        fd = accept(s->listen_fd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return;
    }
    /* One reader per slot: a new connection replaces the old one (the driver opens a new one
     * only after it gave up the old). */
    conn_close(s, 0, "replaced");
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        (void)close(fd);
        return;
    }
    set_quickack(fd);
    s->conn_fd = fd;
    s->connects++;
    frame_reset(s);
    trace(s, "accept (%s)", s->card != NULL ? "card" : "empty");
}

static int listen_on(struct in_addr addr, uint16_t port)
{
    struct sockaddr_in sa;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr = addr;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0) {
        int e = errno;
        (void)close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int mpos_vpcd_open(mpos_vpcd *v, const char *addr, uint16_t base_port, size_t nslots,
                   mpos_crypto_ctx *cc)
{
    struct in_addr a;
    if (v == NULL || addr == NULL || cc == NULL || nslots < 1 || nslots > MPOS_VPCD_SLOTS ||
        base_port == 0 || (unsigned)base_port + nslots - 1 > 65535u) {
        return MPOS_ERR_ARG;
    }
    /* Loopback only (127.0.0.0/8): the virtual card is never reachable from outside. */
    if (inet_pton(AF_INET, addr, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        return MPOS_ERR_ARG;
    }
    memset(v, 0, sizeof(*v));
    v->nslots = nslots;
    v->frame_timeout_ms = MPOS_VPCD_FRAME_TIMEOUT;
    v->cc = cc;
    for (size_t i = 0; i < MPOS_VPCD_SLOTS; i++) {
        v->slot[i].listen_fd = -1;
        v->slot[i].conn_fd = -1;
        v->slot[i].index = (unsigned)i;
    }
    for (size_t i = 0; i < nslots; i++) {
        v->slot[i].port = (uint16_t)(base_port + i);
        v->slot[i].listen_fd = listen_on(a, v->slot[i].port);
        if (v->slot[i].listen_fd < 0) {
            int e = errno;
            mpos_vpcd_close(v);
            errno = e;
            return MPOS_ERR_IO;
        }
    }
    return 0;
}

void mpos_vpcd_close(mpos_vpcd *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < MPOS_VPCD_SLOTS; i++) {
        mpos_vpcd_remove(v, i);
        conn_close(&v->slot[i], 0, "end");
        if (v->slot[i].listen_fd >= 0) {
            (void)close(v->slot[i].listen_fd);
            v->slot[i].listen_fd = -1;
        }
    }
}

int mpos_vpcd_insert(mpos_vpcd *v, size_t slot, const mpos_cardsim_profile *p, int t0)
{
    mpos_cardsim *c;
    int rc;
    if (v == NULL || p == NULL || slot >= v->nslots) {
        return MPOS_ERR_ARG;
    }
    mpos_vpcd_remove(v, slot);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return MPOS_ERR_IO;
    }
    rc = mpos_cardsim_init(c, p, v->cc);
    if (rc != 0) {
        mpos_cardsim_clear(c);
        free(c);
        return rc;
    }
    v->slot[slot].card = c;
    v->slot[slot].t0 = t0 ? 1 : 0;
    v->slot[slot].silent = 0;
    v->slot[slot].atr_len = 0;
    v->slot[slot].powerup_pending = 0;
    trace(&v->slot[slot], "insert%s", t0 ? " (T=0)" : "");
    return 0;
}

void mpos_vpcd_remove(mpos_vpcd *v, size_t slot)
{
    mpos_vpcd_slot *s;
    if (v == NULL || slot >= MPOS_VPCD_SLOTS) {
        return;
    }
    s = &v->slot[slot];
    if (s->card == NULL) {
        return;
    }
    mpos_cardsim_clear(s->card);
    free(s->card);
    s->card = NULL;
    s->atr_len = 0;
    /* The contacts open: whatever the reader was doing fails, and its next poll finds no
     * card. */
    trace(s, "remove");
    conn_close(s, 1, "removal");
}

void mpos_vpcd_silence(mpos_vpcd *v, size_t slot, int on)
{
    if (v != NULL && slot < MPOS_VPCD_SLOTS) {
        v->slot[slot].silent = on ? 1 : 0;
    }
}

size_t mpos_vpcd_pollfds(const mpos_vpcd *v, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < v->nslots; i++) {
        if (v->slot[i].listen_fd >= 0 && n < cap) {
            fds[n].fd = v->slot[i].listen_fd;
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            n++;
        }
        if (v->slot[i].conn_fd >= 0 && n < cap) {
            fds[n].fd = v->slot[i].conn_fd;
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            n++;
        }
    }
    return n;
}

void mpos_vpcd_service(mpos_vpcd *v, const struct pollfd *fds, size_t n, uint64_t now_ms)
{
    for (size_t k = 0; k < n; k++) {
        if (fds[k].revents == 0) {
            continue;
        }
        for (size_t i = 0; i < v->nslots; i++) {
            mpos_vpcd_slot *s = &v->slot[i];
            if (fds[k].fd == s->conn_fd && s->conn_fd >= 0) {
                if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                    on_readable(s, now_ms);
                }
            } else if (fds[k].fd == s->listen_fd && (fds[k].revents & POLLIN)) {
                on_accept(s);
            }
        }
    }
    for (size_t i = 0; i < v->nslots; i++) {
        mpos_vpcd_slot *s = &v->slot[i];
        if (s->conn_fd >= 0 && s->frame_start_ms != 0 &&
            now_ms - s->frame_start_ms > v->frame_timeout_ms) {
            conn_close(s, 1, "frame time-out"); /* a frame started and did not complete */
        }
    }
}

void mpos_vpcd_trace(mpos_vpcd *v, FILE *f)
{
    if (v != NULL) {
        for (size_t i = 0; i < MPOS_VPCD_SLOTS; i++) {
            v->slot[i].trace = f;
        }
    }
}
