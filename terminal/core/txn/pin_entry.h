/* openmpos terminal core: PIN entry on the terminal's own keypad (T-BASE-1, T-ACCT-1,
 * T-LIMIT-1, G-PROMPT-1).
 *
 * The digits come from the terminal's keypad (terminal/hal.h, mpos_hal_keypad) and from
 * nothing else: there is no function that takes a PIN from the caller, the host link or any
 * buffer. The display shows the ENTER_PIN prompt of the fixed table with the amount and the
 * number of digits entered (the count, never a digit); the caller sees each display update
 * through a show hook so that it can report the prompt to the host once (the digit count
 * never leaves the terminal).
 *
 * Keys: 0-9 add a digit (at most MPOS_PIN_MAX_LEN, further digits are ignored); CLEAR erases
 * the last digit (terminal/hal.h); OK ends the entry when 4..12 digits are in (ignored
 * before: no PIN bypass on this online-only terminal); CANCEL abandons it.
 * Timeouts (on the HAL's monotonic clock): an overall one from the prompt, and an inter-key
 * one from the last key press. The keypad is read in slices of at most poll_ms so that the
 * caller's abort hook (a CANCEL from the host, for instance) is checked between them.
 *
 * Rate limit: at most rate_max completed entries (a PIN block built, or a PIN handed to the
 * card) within any rate_window_ms; one more is refused before the prompt is shown
 * (MPOS_PIN_ENTRY_RATE_LIMITED). The history lives in this context only, in RAM: it is not
 * persisted. A restart resets it; that is acceptable because every entry also needs a card
 * read, the cardholder's confirmation of the amount, a fresh DUKPT key (persisted counter)
 * and, for an online PIN, a round trip to the back end, and the issuer's PIN try counter
 * bounds guessing on any one card. The limit exists to stop the terminal from being driven
 * as a fast PIN-block source (T-LIMIT-1).
 *
 * Online PIN (mpos_pin_entry_online): the block is built and enciphered here, at once, under
 * the transaction's DUKPT PIN key: ISO 9564-1 format 4 with AES (fill from the HAL RNG) or
 * format 0 with TDES, with the PAN of the card read in this transaction. The clear digits
 * live only in a local buffer of this call, wiped on every path before it returns; the
 * context never holds them. Offline PIN (mpos_pin_entry_offline) hands the digits to the
 * EMV kernel's buffer, which the kernel wipes after VERIFY.
 *
 * Portable core code: no heap, no OS calls, everything through the HAL and lib/. Return
 * convention: 0 (entered), a positive enum mpos_pin_entry_status, or a negative enum
 * mpos_err (a HAL or crypto failure: the entry is abandoned and the outputs zeroed).
 */
#ifndef MPOS_TERMINAL_PIN_ENTRY_H
#define MPOS_TERMINAL_PIN_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"
#include "mpos/crypto.h"
#include "mpos/err.h"
#include "mpos/pin.h"

#define MPOS_PIN_ENTRY_RATE_CAP 16 /* largest rate_max */

/* Defaults (a 0 in the configuration takes them). */
#define MPOS_PIN_ENTRY_OVERALL_MS  60000u
#define MPOS_PIN_ENTRY_INTERKEY_MS 15000u
#define MPOS_PIN_ENTRY_POLL_MS     250u
#define MPOS_PIN_ENTRY_WINDOW_MS   60000u
#define MPOS_PIN_ENTRY_RATE_MAX    6u

enum mpos_pin_entry_status {
    MPOS_PIN_ENTRY_OK = 0,
    MPOS_PIN_ENTRY_CANCELLED = 1,   /* CANCEL key, or the abort hook said so */
    MPOS_PIN_ENTRY_TIMEOUT = 2,     /* overall or inter-key timeout */
    MPOS_PIN_ENTRY_RATE_LIMITED = 3 /* too many entries in the window: nothing shown */
};

typedef struct mpos_pin_entry_config {
    uint32_t overall_timeout_ms;  /* from the first prompt to OK */
    uint32_t interkey_timeout_ms; /* from the last key (or the prompt) */
    uint32_t poll_ms;             /* longest single keypad wait */
    uint32_t rate_window_ms;
    uint32_t rate_max; /* 1..MPOS_PIN_ENTRY_RATE_CAP entries per window */
} mpos_pin_entry_config;

/* Shows a prompt: update is 0 for the first display of a prompt in this entry and 1 for a
 * digit-count refresh of the same prompt. Returns 0 or a negative enum mpos_err (the entry is
 * then abandoned with that error). */
typedef int (*mpos_pin_entry_show_fn)(void *ctx, enum mpos_prompt prompt,
                                      const mpos_prompt_params *params, int update);

/* Called between keypad waits; nonzero abandons the entry (MPOS_PIN_ENTRY_CANCELLED). */
typedef int (*mpos_pin_entry_abort_fn)(void *ctx);

typedef struct mpos_pin_entry_io {
    const mpos_hal_keypad *keypad;
    const mpos_hal_display *display; /* used when show is NULL */
    const mpos_hal_clock *clock;
    const mpos_hal_rng *rng;
    mpos_crypto_ctx *cc;
    mpos_pin_entry_show_fn show;         /* optional */
    mpos_pin_entry_abort_fn abort_check; /* optional */
    void *hook_ctx;
} mpos_pin_entry_io;

/* The context: configuration, devices and the rate-limit history (monotonic times). Holds no
 * PIN digit at any time. */
typedef struct mpos_pin_entry {
    mpos_pin_entry_config cfg;
    mpos_pin_entry_io io;
    uint64_t history[MPOS_PIN_ENTRY_RATE_CAP]; /* times of the last completed entries */
    size_t history_len;
    size_t history_next;
} mpos_pin_entry;

/* What the PIN prompt shows besides the digit count. */
typedef struct mpos_pin_entry_prompt {
    uint64_t amount;        /* minor units */
    uint16_t currency;      /* ISO 4217 numeric */
    const char *masked_pan; /* optional (NULL): shown with the prompt, must be masked */
    int retry;              /* offline PIN after a wrong one: PIN_RETRY with tries_left first */
    uint8_t tries_left;     /* with retry: 1..12 */
} mpos_pin_entry_prompt;

/* Fills cfg's zero fields with the defaults. */
void mpos_pin_entry_config_default(mpos_pin_entry_config *cfg);

/* Prepares pe. cfg may be NULL (defaults). MPOS_ERR_ARG when keypad, clock, rng, cc or both
 * display and show are missing, or rate_max is above MPOS_PIN_ENTRY_RATE_CAP. */
int mpos_pin_entry_init(mpos_pin_entry *pe, const mpos_pin_entry_config *cfg,
                        const mpos_pin_entry_io *io) MPOS_MUST_CHECK;

/* Online PIN: prompts, reads 4..12 digits and writes the enciphered PIN block of the PAN (12
 * to 19 digits, the card read in this transaction) under key to block (16 bytes capacity),
 * its length to *block_len. format MPOS_PIN_FORMAT_4 takes cipher MPOS_CIPHER_AES (fill from
 * the HAL RNG, ISO 9564-1:2017 9.4.2.2), MPOS_PIN_FORMAT_0 takes MPOS_CIPHER_TDES (9.3.2).
 * Returns 0 with the block, a positive enum mpos_pin_entry_status (block zeroed), or a
 * negative enum mpos_err (MPOS_ERR_ARG / MPOS_ERR_KEY / MPOS_ERR_PAN before anything is
 * shown; a HAL, RNG or crypto error; block zeroed). */
int mpos_pin_entry_online(mpos_pin_entry *pe, const mpos_pin_entry_prompt *prompt,
                          enum mpos_pin_format format, enum mpos_cipher cipher, const uint8_t *key,
                          size_t key_len, const char *pan, uint8_t block[MPOS_PIN_BLOCK_MAX_LEN],
                          size_t *block_len) MPOS_MUST_CHECK;

/* Offline PIN for the EMV kernel: prompts and writes the digits, NUL-terminated, to pin (the
 * kernel's buffer, which the kernel wipes). Returns as mpos_pin_entry_online (pin zeroed on
 * anything but 0). */
int mpos_pin_entry_offline(mpos_pin_entry *pe, const mpos_pin_entry_prompt *prompt,
                           char pin[MPOS_PIN_BUF_LEN]) MPOS_MUST_CHECK;

/* Forgets the rate-limit history and the devices. */
void mpos_pin_entry_clear(mpos_pin_entry *pe);

#endif
