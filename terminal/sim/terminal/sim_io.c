/* mpos-terminal: keypad, display and card reader of the simulator (sim_io.h). */
#define _POSIX_C_SOURCE 200809L

#include "sim_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "link/link.h"
#include "mpos/util.h"
#ifdef MPOS_HAVE_PCSC
#include "pcsc_reader.h"
#endif

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* A signal (SIGTERM) cuts the sleep short only when the caller checks its flag; the
         * remaining time is short (one poll slice) so finishing it is fine. */
        break;
    }
}

/* ---- keypad ----------------------------------------------------------------------------- */

static int add_step(struct sim_keypad *kp, enum mpos_key key, uint32_t *wait, unsigned *at)
{
    if (kp->count >= SIM_KEYS_MAX) {
        return -1;
    }
    kp->steps[kp->count].key = key;
    kp->steps[kp->count].wait_ms = *wait;
    kp->steps[kp->count].at = *at;
    kp->count++;
    *wait = 0;
    *at = 0;
    return 0;
}

/* The prompt whose link name is name (sim_prompt_name), 0 when there is none. */
static unsigned prompt_by_name(const char *name)
{
    for (unsigned p = 1; p <= MPOS_HAL_PROMPT_MAX; p++) {
        if (strcmp(sim_prompt_name(p), name) == 0) {
            return p;
        }
    }
    return 0;
}

int sim_keypad_init(struct sim_keypad *kp, const char *script)
{
    memset(kp, 0, sizeof(*kp));
    kp->tty_fd = -1;
    kp->last_ms = mono_ms();
    if (script == NULL) {
        struct termios t;
        kp->tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (kp->tty_fd >= 0 && tcgetattr(kp->tty_fd, &t) == 0 &&
            sizeof(t) <= sizeof(kp->saved_termios)) {
            memcpy(kp->saved_termios, &t, sizeof(t));
            t.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
            t.c_cc[VMIN] = 0;
            t.c_cc[VTIME] = 0;
            if (tcsetattr(kp->tty_fd, TCSANOW, &t) == 0) {
                kp->tty_raw = 1;
            }
        }
        return 0;
    }
    kp->scripted = 1;
    uint32_t wait = 0;
    unsigned at = 0;
    const char *p = script;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char tok[64];
        if (n == 0 || n >= sizeof(tok)) {
            goto bad;
        }
        memcpy(tok, p, n);
        tok[n] = '\0';
        int rc = 0;
        if (strcmp(tok, "ok") == 0) {
            rc = add_step(kp, MPOS_KEY_OK, &wait, &at);
        } else if (strcmp(tok, "cancel") == 0) {
            rc = add_step(kp, MPOS_KEY_CANCEL, &wait, &at);
        } else if (strcmp(tok, "clear") == 0) {
            rc = add_step(kp, MPOS_KEY_CLEAR, &wait, &at);
        } else if (n == 1 && tok[0] >= '0' && tok[0] <= '9') {
            rc = add_step(kp, (enum mpos_key)(MPOS_KEY_0 + (tok[0] - '0')), &wait, &at);
        } else if (strncmp(tok, "pin:", 4) == 0 && n > 4) {
            for (size_t i = 4; i < n && rc == 0; i++) {
                if (tok[i] < '0' || tok[i] > '9') {
                    rc = -1;
                } else {
                    rc = add_step(kp, (enum mpos_key)(MPOS_KEY_0 + (tok[i] - '0')), &wait, &at);
                }
            }
        } else if (strncmp(tok, "at:", 3) == 0 && n > 3) {
            /* One prompt per key: a second at: before the key is a mistake in the script. */
            unsigned p = prompt_by_name(tok + 3);
            if (p == 0 || at != 0) {
                rc = -1;
            } else {
                at = p;
            }
        } else if (strncmp(tok, "wait:", 5) == 0 && n > 5) {
            char *e = NULL;
            unsigned long ms = strtoul(tok + 5, &e, 10);
            if (*e != '\0' || ms > 600000ul) {
                rc = -1;
            } else {
                wait += (uint32_t)ms;
            }
        } else {
            rc = -1;
        }
        mpos_cleanse(tok, sizeof(tok)); /* may hold PIN digits */
        if (rc != 0) {
            goto bad;
        }
        p += n;
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                goto bad;
            }
        }
    }
    return 0;
bad:
    /* Never echo the script: it may hold a PIN. */
    fprintf(stderr, "mpos-terminal: --keys: bad token (ok, cancel, clear, 0..9, pin:DIGITS, "
                    "wait:MS, at:PROMPT, comma-separated; at most 512 keys)\n");
    return -1;
}

void sim_keypad_close(struct sim_keypad *kp)
{
    if (kp->tty_fd >= 0) {
        if (kp->tty_raw) {
            struct termios t;
            memcpy(&t, kp->saved_termios, sizeof(t));
            (void)tcsetattr(kp->tty_fd, TCSANOW, &t);
        }
        close(kp->tty_fd);
    }
    mpos_cleanse(kp, sizeof(*kp));
    kp->tty_fd = -1;
}

static int tty_key(struct sim_keypad *kp, uint32_t timeout_ms, enum mpos_key *key)
{
    uint64_t end = mono_ms() + timeout_ms;
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= end) {
            return 0;
        }
        struct pollfd pfd = {kp->tty_fd, POLLIN, 0};
        int n = poll(&pfd, 1, (int)(end - now));
        if (n < 0 && errno == EINTR) {
            return 0;
        }
        if (n <= 0) {
            return n < 0 ? MPOS_ERR_IO : 0;
        }
        unsigned char c = 0;
        ssize_t got = read(kp->tty_fd, &c, 1);
        if (got != 1) {
            return 0;
        }
        if (c >= '0' && c <= '9') {
            *key = (enum mpos_key)(MPOS_KEY_0 + (c - '0'));
        } else if (c == '\r' || c == '\n') {
            *key = MPOS_KEY_OK;
        } else if (c == 0x1B || c == 'c' || c == 'C') {
            *key = MPOS_KEY_CANCEL;
        } else if (c == 0x7F || c == 0x08) {
            *key = MPOS_KEY_CLEAR;
        } else {
            continue;
        }
        c = 0;
        return 0;
    }
}

static int kp_read_key(void *ctx, uint32_t timeout_ms, enum mpos_key *key)
{
    struct sim_keypad *kp = ctx;
    *key = MPOS_KEY_TIMEOUT;
    if (!kp->scripted) {
        if (kp->tty_fd < 0) {
            sleep_ms(timeout_ms);
            return 0;
        }
        int rc = tty_key(kp, timeout_ms, key);
        if (rc != 0) {
            *key = MPOS_KEY_CANCEL;
        }
        return rc;
    }
    if (kp->next >= kp->count) {
        sleep_ms(timeout_ms); /* the script ran out: nobody presses anything */
        return 0;
    }
    unsigned at = kp->steps[kp->next].at;
    if (at != 0 && (kp->display == NULL || kp->display->shown_at[at] <= kp->last_show)) {
        /* The key belongs to a prompt not shown yet (at:): nobody presses anything now. The
         * display cannot change while this call waits (one thread), so the whole time-out
         * passes; a poll with time-out 0 (the card phase) returns at once. */
        sleep_ms(timeout_ms);
        return 0;
    }
    uint64_t due = kp->last_ms + kp->steps[kp->next].wait_ms;
    uint64_t now = mono_ms();
    if (now < due) {
        uint64_t left = due - now;
        if (left > timeout_ms) {
            sleep_ms(timeout_ms);
            return 0;
        }
        sleep_ms((uint32_t)left);
    }
    *key = kp->steps[kp->next].key;
    kp->steps[kp->next].key = MPOS_KEY_TIMEOUT; /* played: forget which key it was */
    kp->next++;
    kp->last_ms = mono_ms();
    kp->last_show = kp->display != NULL ? kp->display->shows : 0;
    return 0;
}

void sim_keypad_bind(struct sim_keypad *kp, mpos_hal_keypad *hal)
{
    hal->ctx = kp;
    hal->read_key = kp_read_key;
}

void sim_keypad_follow(struct sim_keypad *kp, const struct sim_display *d)
{
    kp->display = d;
    kp->last_show = d != NULL ? d->shows : 0;
}

/* ---- display ---------------------------------------------------------------------------- */

const char *sim_prompt_name(unsigned prompt)
{
    return mpos_link_prompt_name(prompt); /* the link's names: every tool spells them alike */
}

int sim_display_init(struct sim_display *d, const char *log_path, int tty)
{
    memset(d, 0, sizeof(*d));
    /* Scripted mode: no screen (the display log is the record); TTY mode: /dev/tty, else
     * log lines on stderr. */
    d->screen = tty ? stderr : NULL;
    if (tty) {
        FILE *f = fopen("/dev/tty", "w");
        if (f != NULL) {
            d->screen = f;
            d->own_screen = 1;
        }
    }
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || (d->log = fdopen(fd, "a")) == NULL) {
            if (fd >= 0) {
                close(fd);
            }
            return -1;
        }
    }
    return 0;
}

void sim_display_close(struct sim_display *d)
{
    if (d->log != NULL) {
        fclose(d->log);
    }
    if (d->own_screen) {
        fclose(d->screen);
    }
    memset(d, 0, sizeof(*d));
}

static int disp_show(void *ctx, enum mpos_prompt prompt, const mpos_prompt_params *p)
{
    struct sim_display *d = ctx;
    if (!mpos_prompt_params_valid((unsigned)prompt, p)) {
        return MPOS_ERR_ARG;
    }
    /* The PIN prompt's refreshes (count = digits entered) are neither logged nor shown as
     * lines of their own; the screen shows '*' per digit like a PIN pad. */
    int refresh = (int)prompt == d->last_prompt && prompt == MPOS_HAL_PROMPT_ENTER_PIN;
    d->last_prompt = (int)prompt;
    if (!refresh) {
        /* For the scripted keypad's at: steps (sim_keypad_follow). */
        d->shows++;
        d->shown_at[prompt] = d->shows;
    }
    if (d->screen != NULL && d->own_screen) {
        /* A terminal: text for a person; the PIN prompt shows a '*' per digit. */
        if (prompt == MPOS_HAL_PROMPT_ENTER_PIN) {
            char stars[13];
            memset(stars, '*', p->count);
            stars[p->count] = '\0';
            fprintf(d->screen, "%s[display] ENTER PIN  amount %llu  %s\n", refresh ? "\r" : "",
                    (unsigned long long)p->amount, stars);
        } else {
            fprintf(d->screen, "[display] %s", sim_prompt_name((unsigned)prompt));
            if (p->present & MPOS_PROMPT_P_TYPE) {
                fprintf(d->screen, "  type %u", (unsigned)p->txn_type);
            }
            if (p->present & MPOS_PROMPT_P_AMOUNT) {
                fprintf(d->screen, "  amount %llu currency %u", (unsigned long long)p->amount,
                        (unsigned)p->currency);
            }
            if (p->present & MPOS_PROMPT_P_COUNT) {
                fprintf(d->screen, "  count %u", (unsigned)p->count);
            }
            if (p->present & MPOS_PROMPT_P_PAN) {
                fprintf(d->screen, "  %s", p->masked_pan); /* masked: checked above */
            }
            if (p->present & MPOS_PROMPT_P_RESULT) {
                fprintf(d->screen, "  %s", p->result);
            }
            fputc('\n', d->screen);
        }
    } else if (d->screen != NULL && !refresh) {
        /* No terminal: a log line like the others on stderr (no PIN count). */
        fprintf(d->screen, "mpos-terminal: event=display prompt=%s\n",
                sim_prompt_name((unsigned)prompt));
    }
    if (d->screen != NULL) {
        fflush(d->screen);
    }
    if (d->log != NULL && !refresh) {
        unsigned count = prompt == MPOS_HAL_PROMPT_ENTER_PIN ? 0u : p->count;
        fprintf(d->log, "prompt=%s type=%u amount=%llu currency=%u count=%u\n",
                sim_prompt_name((unsigned)prompt), (unsigned)p->txn_type,
                (unsigned long long)p->amount, (unsigned)p->currency, count);
        fflush(d->log);
    }
    return 0;
}

void sim_display_bind(struct sim_display *d, mpos_hal_display *hal)
{
    hal->ctx = d;
    hal->show = disp_show;
}

/* ---- card reader ------------------------------------------------------------------------ */

int sim_reader_init(struct sim_reader *r, const char *pattern, const char *swipe_dir)
{
    memset(r, 0, sizeof(*r));
    r->pattern = pattern;
    r->swipe_dir = swipe_dir;
    if (swipe_dir != NULL) {
        if (strlen(swipe_dir) + 7 >= sizeof(r->swipe_path)) {
            return -1;
        }
        snprintf(r->swipe_path, sizeof(r->swipe_path), "%s/swipe", swipe_dir);
    }
#ifdef MPOS_HAVE_PCSC
    r->pcsc = calloc(1, sizeof(mpos_pcsc_reader));
    if (r->pcsc == NULL) {
        return -1;
    }
#endif
    return 0;
}

int sim_reader_ready(struct sim_reader *r, uint32_t timeout_ms)
{
#ifdef MPOS_HAVE_PCSC
    mpos_pcsc_reader *pr = r->pcsc;
    int rc;
    if (r->pcsc_ready) {
        return 0;
    }
    mpos_pcsc_reader_close(pr);
    memset(pr, 0, sizeof(*pr));
    rc = mpos_pcsc_reader_open(pr);
    if (rc == 0) {
        rc = mpos_pcsc_reader_select(pr, r->pattern, timeout_ms);
    }
    if (rc != 0) {
        mpos_pcsc_reader_close(pr);
        return rc;
    }
    r->pcsc_ready = 1;
    return 0;
#else
    (void)r;
    (void)timeout_ms;
    return MPOS_ERR_IO;
#endif
}

void sim_reader_close(struct sim_reader *r)
{
#ifdef MPOS_HAVE_PCSC
    if (r->pcsc != NULL) {
        mpos_pcsc_reader_close(r->pcsc);
        free(r->pcsc);
    }
#endif
    memset(r, 0, sizeof(*r));
}

static int swipe_present(const struct sim_reader *r)
{
    return r->swipe_dir != NULL && access(r->swipe_path, F_OK) == 0;
}

static int rd_wait_event(void *ctx, uint32_t timeout_ms, enum mpos_card_event *event)
{
    struct sim_reader *r = ctx;
    uint64_t end = mono_ms() + timeout_ms;
    for (;;) {
        if (swipe_present(r)) {
            *event = MPOS_CARD_EVENT_SWIPED;
            return 0;
        }
        uint64_t now = mono_ms();
        if (now >= end) {
            return MPOS_HAL_TIMEOUT;
        }
        uint32_t slice = (uint32_t)(end - now < 100 ? end - now : 100);
#ifdef MPOS_HAVE_PCSC
        if (!r->pcsc_ready) {
            /* pcscd went away (or was not there): follow the reader again as soon as it is
             * back, within this wait, so a card inserted meanwhile is still seen (a fresh
             * follow reports a card already there as inserted). */
            (void)sim_reader_ready(r, 0);
        }
        if (r->pcsc_ready) {
            int rc = mpos_pcsc_reader_wait_event(r->pcsc, slice, event);
            if (rc == 0) {
                return 0;
            }
            if (rc != MPOS_HAL_TIMEOUT) {
                r->pcsc_ready = 0;
                sleep_ms(slice);
            }
            continue;
        }
#endif
        sleep_ms(slice);
    }
}

static int rd_power_on(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    struct sim_reader *r = ctx;
#ifdef MPOS_HAVE_PCSC
    if (r->pcsc_ready) {
        return mpos_pcsc_reader_power_on(r->pcsc, atr, atr_len);
    }
#endif
    (void)r;
    (void)atr;
    *atr_len = 0;
    return MPOS_HAL_NO_CARD;
}

static int rd_power_off(void *ctx)
{
    struct sim_reader *r = ctx;
#ifdef MPOS_HAVE_PCSC
    if (r->pcsc_ready) {
        return mpos_pcsc_reader_power_off(r->pcsc);
    }
#endif
    (void)r;
    return 0;
}

static int rd_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                       uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    struct sim_reader *r = ctx;
#ifdef MPOS_HAVE_PCSC
    if (r->pcsc_ready) {
        return mpos_pcsc_reader_exchange(r->pcsc, capdu, capdu_len, rapdu, rapdu_len);
    }
#endif
    (void)r;
    (void)capdu;
    (void)capdu_len;
    (void)rapdu;
    *rapdu_len = 0;
    return MPOS_ERR_STATE;
}

/* Copies one line (without CR/LF) of at most cap characters; 0, or -1 when longer. */
static int take_line(const char **p, const char *end, char *out, size_t cap, size_t *len)
{
    const char *s = *p;
    size_t n = 0;
    while (s + n < end && s[n] != '\n') {
        n++;
    }
    size_t l = n;
    if (l > 0 && s[l - 1] == '\r') {
        l--;
    }
    *p = s + n + (s + n < end ? 1 : 0);
    if (l > cap) {
        return -1;
    }
    memcpy(out, s, l);
    *len = l;
    return 0;
}

static int rd_read_tracks(void *ctx, mpos_hal_tracks *tracks)
{
    struct sim_reader *r = ctx;
    char buf[MPOS_HAL_TRACK1_MAX + MPOS_HAL_TRACK2_MAX + 8];
    size_t n = 0;
    int rc = MPOS_HAL_NO_CARD;
    memset(tracks, 0, sizeof(*tracks));
    int fd = open(r->swipe_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return MPOS_HAL_NO_CARD;
    }
    ssize_t got;
    while (n < sizeof(buf) && (got = read(fd, buf + n, sizeof(buf) - n)) > 0) {
        n += (size_t)got;
    }
    close(fd);
    /* The reader keeps one swipe and forgets it once taken. */
    (void)unlink(r->swipe_path);
    const char *p = buf, *end = buf + n;
    if (n < sizeof(buf) &&
        take_line(&p, end, tracks->track1, sizeof(tracks->track1), &tracks->track1_len) == 0 &&
        take_line(&p, end, tracks->track2, sizeof(tracks->track2), &tracks->track2_len) == 0 &&
        (tracks->track1_len > 0 || tracks->track2_len > 0)) {
        rc = 0;
    } else {
        mpos_cleanse(tracks, sizeof(*tracks));
    }
    mpos_cleanse(buf, sizeof(buf));
    return rc;
}

void sim_reader_bind(struct sim_reader *r, mpos_hal_card_reader *hal)
{
    memset(hal, 0, sizeof(*hal));
    hal->ctx = r;
    hal->wait_event = rd_wait_event;
    hal->power_on = rd_power_on;
    hal->power_off = rd_power_off;
    hal->exchange = rd_exchange;
    hal->read_tracks = r->swipe_dir != NULL ? rd_read_tracks : NULL;
}
