/* openmpos terminal simulator: a scripted keypad and a recording display, for tests.
 *
 * The keypad plays a fixed list of keys, one per read_key call, then MPOS_KEY_TIMEOUT. The
 * display checks every prompt with mpos_prompt_params_valid (refusing others with
 * MPOS_ERR_ARG, as a real display must) and records what it showed, up to
 * MPOS_HAL_SCRIPT_MAX_SHOWN entries (later ones are counted in `dropped`).
 */
#ifndef MPOS_TERMINAL_HAL_SCRIPT_H
#define MPOS_TERMINAL_HAL_SCRIPT_H

#include <stddef.h>

#include "hal.h"

#define MPOS_HAL_SCRIPT_MAX_SHOWN 64

typedef struct mpos_hal_script_keypad {
    const enum mpos_key *keys;
    size_t count;
    size_t next;           /* keys read so far */
    uint32_t last_timeout; /* timeout_ms of the last read_key */
} mpos_hal_script_keypad;

typedef struct mpos_hal_script_shown {
    enum mpos_prompt prompt;
    mpos_prompt_params params;
} mpos_hal_script_shown;

typedef struct mpos_hal_script_display {
    mpos_hal_script_shown shown[MPOS_HAL_SCRIPT_MAX_SHOWN];
    size_t count;
    size_t dropped;
    size_t refused; /* show calls refused (invalid prompt or parameters) */
} mpos_hal_script_display;

/* Starts kp on the count keys at keys (kept by pointer) and fills hal. */
void mpos_hal_script_keypad_init(mpos_hal_script_keypad *kp, const enum mpos_key *keys,
                                 size_t count, mpos_hal_keypad *hal);

/* Empties d and fills hal. */
void mpos_hal_script_display_init(mpos_hal_script_display *d, mpos_hal_display *hal);

#endif
