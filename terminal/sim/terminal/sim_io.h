/* mpos-terminal: the simulator's keypad, display and card reader (terminal/hal.h) for `run`.
 *
 * Keypad, two modes:
 *   - scripted (--keys SCRIPT): comma-separated tokens played in order across transactions:
 *     `ok`, `cancel`, `clear`, a digit `0`..`9`, `pin:NNNN` (one digit key per digit),
 *     `wait:MS` (the next key comes no earlier than MS milliseconds after the previous key was
 *     taken, or after the start for a leading wait) and `at:PROMPT` (the next key comes only
 *     once the display has shown PROMPT, a link prompt name such as ENTER_PIN, after the
 *     previous key was taken, or after the start: until then every read times out, as when
 *     nobody presses anything; needs sim_keypad_follow). When the script runs out the keypad
 *     times out for ever (MPOS_KEY_TIMEOUT).
 *   - TTY: keys read raw from /dev/tty: digits, Enter = OK, Esc or 'c' = CANCEL, Backspace =
 *     CLEAR. Without a terminal every read times out.
 * Display: each prompt is written as a line of text to /dev/tty (TTY mode) or stderr, and,
 * with --display-log FILE, one line per prompt shown is appended to FILE:
 *     prompt=<NAME> type=<n> amount=<minor> currency=<n> count=<n>
 * NAME is the link's prompt name (docs/protocol.md 1.4). A PIN digit never appears anywhere;
 * the PIN entry's digit-count refreshes are not logged (an ENTER_PIN line is written when the
 * prompt first appears, with count=0), so the log does not tell the PIN length either.
 * Card reader: the chip through PC/SC (pcsc_reader.h, the reader whose name contains the
 * pattern), the stripe from a drop file: when DIR/swipe appears, wait_event reports a swipe and
 * read_tracks takes the file (track 1 on the first line, track 2 on the second, either may be
 * empty; ASCII as a reader delivers it, sentinels included or not, as msr.h reads them) and
 * deletes it.
 *
 * Simulator code (heap, OS). One thread.
 */
#ifndef MPOS_SIM_IO_H
#define MPOS_SIM_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hal.h"

#define SIM_KEYS_MAX 512

struct sim_key_step {
    enum mpos_key key;
    uint32_t wait_ms; /* delay before this key */
    unsigned at;      /* the prompt that must be shown before this key (at:), 0 for none */
};

struct sim_display;

struct sim_keypad {
    int scripted;
    struct sim_key_step steps[SIM_KEYS_MAX];
    size_t count, next;
    uint64_t last_ms;                  /* when the previous key was taken (monotonic) */
    unsigned long last_show;           /* the display's show count then (at:) */
    const struct sim_display *display; /* the display at: looks at (sim_keypad_follow) */
    int tty_fd;                        /* TTY mode: /dev/tty, -1 if none */
    int tty_raw;                       /* termios changed (restored at close) */
    unsigned char saved_termios[256];
};

/* Parses SCRIPT (NULL: TTY mode). -1 on a bad token (the message is written to stderr). */
int sim_keypad_init(struct sim_keypad *kp, const char *script);
void sim_keypad_close(struct sim_keypad *kp);
void sim_keypad_bind(struct sim_keypad *kp, mpos_hal_keypad *hal);
/* Lets the script's at:PROMPT steps see what d shows (d must outlive kp's use). Without it an
 * at: step is never reached: the keypad times out from there on. */
void sim_keypad_follow(struct sim_keypad *kp, const struct sim_display *d);

struct sim_display {
    FILE *log;    /* --display-log, or NULL */
    FILE *screen; /* /dev/tty or stderr */
    int own_screen;
    int last_prompt;
    unsigned long shows;                             /* prompts shown (PIN refreshes excluded) */
    unsigned long shown_at[MPOS_HAL_PROMPT_MAX + 1]; /* shows count when each was last shown */
};

int sim_display_init(struct sim_display *d, const char *log_path, int tty);
void sim_display_close(struct sim_display *d);
void sim_display_bind(struct sim_display *d, mpos_hal_display *hal);

/* The link's name of a prompt ("?" when unknown). */
const char *sim_prompt_name(unsigned prompt);

struct sim_reader {
    void *pcsc; /* struct mpos_pcsc_reader *, NULL without PC/SC */
    int pcsc_ready;
    const char *pattern;
    const char *swipe_dir; /* NULL: no stripe head */
    char swipe_path[4096];
};

/* Prepares the reader (PC/SC is tried at once and again at each transaction when it failed). */
int sim_reader_init(struct sim_reader *r, const char *pattern, const char *swipe_dir);
/* Makes sure the PC/SC reader is connected and followed (waits up to timeout_ms). 0 or error. */
int sim_reader_ready(struct sim_reader *r, uint32_t timeout_ms);
void sim_reader_close(struct sim_reader *r);
void sim_reader_bind(struct sim_reader *r, mpos_hal_card_reader *hal);

#endif
