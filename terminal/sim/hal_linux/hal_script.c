/* openmpos terminal simulator: scripted keypad and recording display (hal_script.h). */
#include <string.h>

#include "hal_script.h"

static int kp_read_key(void *ctx, uint32_t timeout_ms, enum mpos_key *key)
{
    mpos_hal_script_keypad *kp = ctx;
    if (kp == NULL || key == NULL) {
        return MPOS_ERR_ARG;
    }
    kp->last_timeout = timeout_ms;
    *key = kp->next < kp->count ? kp->keys[kp->next++] : MPOS_KEY_TIMEOUT;
    return MPOS_OK;
}

void mpos_hal_script_keypad_init(mpos_hal_script_keypad *kp, const enum mpos_key *keys,
                                 size_t count, mpos_hal_keypad *hal)
{
    if (kp == NULL) {
        return;
    }
    memset(kp, 0, sizeof(*kp));
    kp->keys = keys;
    kp->count = keys != NULL ? count : 0;
    if (hal != NULL) {
        hal->ctx = kp;
        hal->read_key = kp_read_key;
    }
}

static int display_show(void *ctx, enum mpos_prompt prompt, const mpos_prompt_params *params)
{
    mpos_hal_script_display *d = ctx;
    if (d == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_prompt_params_valid((unsigned)prompt, params)) {
        d->refused++;
        return MPOS_ERR_ARG;
    }
    if (d->count == MPOS_HAL_SCRIPT_MAX_SHOWN) {
        d->dropped++;
        return MPOS_OK;
    }
    d->shown[d->count].prompt = prompt;
    d->shown[d->count].params = *params;
    d->count++;
    return MPOS_OK;
}

void mpos_hal_script_display_init(mpos_hal_script_display *d, mpos_hal_display *hal)
{
    if (d == NULL) {
        return;
    }
    memset(d, 0, sizeof(*d));
    if (hal != NULL) {
        hal->ctx = d;
        hal->show = display_show;
    }
}
