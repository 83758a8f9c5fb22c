/* openmpos terminal core: PIN entry on the terminal's own keypad (pin_entry.h). */
#include "pin_entry.h"

#include <string.h>

#include "mpos/util.h"

void mpos_pin_entry_config_default(mpos_pin_entry_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    if (cfg->overall_timeout_ms == 0) {
        cfg->overall_timeout_ms = MPOS_PIN_ENTRY_OVERALL_MS;
    }
    if (cfg->interkey_timeout_ms == 0) {
        cfg->interkey_timeout_ms = MPOS_PIN_ENTRY_INTERKEY_MS;
    }
    if (cfg->poll_ms == 0) {
        cfg->poll_ms = MPOS_PIN_ENTRY_POLL_MS;
    }
    if (cfg->rate_window_ms == 0) {
        cfg->rate_window_ms = MPOS_PIN_ENTRY_WINDOW_MS;
    }
    if (cfg->rate_max == 0) {
        cfg->rate_max = MPOS_PIN_ENTRY_RATE_MAX;
    }
}

int mpos_pin_entry_init(mpos_pin_entry *pe, const mpos_pin_entry_config *cfg,
                        const mpos_pin_entry_io *io)
{
    if (pe == NULL || io == NULL || io->keypad == NULL || io->keypad->read_key == NULL ||
        io->clock == NULL || io->clock->monotonic_ms == NULL || io->rng == NULL ||
        io->rng->random == NULL || io->cc == NULL ||
        (io->show == NULL && (io->display == NULL || io->display->show == NULL))) {
        return MPOS_ERR_ARG;
    }
    memset(pe, 0, sizeof(*pe));
    if (cfg != NULL) {
        pe->cfg = *cfg;
    }
    mpos_pin_entry_config_default(&pe->cfg);
    if (pe->cfg.rate_max > MPOS_PIN_ENTRY_RATE_CAP) {
        memset(pe, 0, sizeof(*pe));
        return MPOS_ERR_ARG;
    }
    pe->io = *io;
    return MPOS_OK;
}

void mpos_pin_entry_clear(mpos_pin_entry *pe)
{
    if (pe != NULL) {
        MPOS_WIPE_CTX(pe);
    }
}

static int now_ms(const mpos_pin_entry *pe, uint64_t *ms)
{
    *ms = 0;
    return pe->io.clock->monotonic_ms(pe->io.clock->ctx, ms) == 0 ? MPOS_OK : MPOS_ERR_IO;
}

static int show(const mpos_pin_entry *pe, enum mpos_prompt prompt, const mpos_prompt_params *params,
                int update)
{
    int rc;
    if (pe->io.show != NULL) {
        rc = pe->io.show(pe->io.hook_ctx, prompt, params, update);
    } else {
        rc = pe->io.display->show(pe->io.display->ctx, prompt, params);
    }
    return rc == 0 ? MPOS_OK : (rc < 0 ? rc : MPOS_ERR_IO);
}

/* 1 when rate_max entries were completed within the window before now. A time above now (a
 * clock that went back) counts as recent. */
static int rate_exceeded(const mpos_pin_entry *pe, uint64_t now)
{
    size_t recent = 0;
    for (size_t i = 0; i < pe->history_len; i++) {
        uint64_t t = pe->history[i];
        if (t > now || now - t < pe->cfg.rate_window_ms) {
            recent++;
        }
    }
    return recent >= pe->cfg.rate_max;
}

static void rate_record(mpos_pin_entry *pe, uint64_t now)
{
    pe->history[pe->history_next] = now;
    pe->history_next = (pe->history_next + 1) % pe->cfg.rate_max;
    if (pe->history_len < pe->cfg.rate_max) {
        pe->history_len++;
    }
}

/* The parameters of the prompt, checked: amount and currency in range, a masked PAN only. */
static int prompt_params(const mpos_pin_entry_prompt *p, mpos_prompt_params *out)
{
    memset(out, 0, sizeof(*out));
    if (p->amount > MPOS_PROMPT_MAX_AMOUNT || p->currency < 1 || p->currency > 999 ||
        (p->retry && (p->tries_left < 1 || p->tries_left > MPOS_PIN_MAX_LEN))) {
        return MPOS_ERR_ARG;
    }
    out->present = MPOS_PROMPT_P_AMOUNT | MPOS_PROMPT_P_COUNT;
    out->amount = p->amount;
    out->currency = p->currency;
    if (p->masked_pan != NULL) {
        size_t len = 0;
        while (len <= MPOS_PROMPT_PAN_MAX_LEN && p->masked_pan[len] != '\0') {
            len++;
        }
        if (len > MPOS_PROMPT_PAN_MAX_LEN) {
            return MPOS_ERR_ARG;
        }
        memcpy(out->masked_pan, p->masked_pan, len);
        if (!mpos_prompt_pan_is_masked(out->masked_pan)) {
            memset(out, 0, sizeof(*out));
            return MPOS_ERR_PAN; /* G-ACCT-2: the display never shows a full PAN */
        }
        out->present |= MPOS_PROMPT_P_PAN;
    }
    return MPOS_OK;
}

/* Reads the PIN into digits (NUL-terminated). 0, a positive status, or a negative error; on
 * anything but 0 digits is zeroed. */
static int collect(mpos_pin_entry *pe, const mpos_pin_entry_prompt *prompt,
                   char digits[MPOS_PIN_BUF_LEN])
{
    mpos_prompt_params params;
    enum mpos_key key = MPOS_KEY_TIMEOUT;
    uint64_t start = 0, last = 0, now = 0;
    size_t n = 0;
    int rc;

    memset(digits, 0, MPOS_PIN_BUF_LEN);
    if ((rc = prompt_params(prompt, &params)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = now_ms(pe, &start)) != MPOS_OK) {
        goto exit;
    }
    if (rate_exceeded(pe, start)) {
        rc = MPOS_PIN_ENTRY_RATE_LIMITED;
        goto exit;
    }
    if (prompt->retry) {
        mpos_prompt_params r;
        memset(&r, 0, sizeof(r));
        r.present = MPOS_PROMPT_P_COUNT;
        r.count = prompt->tries_left;
        if ((rc = show(pe, MPOS_HAL_PROMPT_PIN_RETRY, &r, 0)) != MPOS_OK) {
            goto exit;
        }
    }
    if ((rc = show(pe, MPOS_HAL_PROMPT_ENTER_PIN, &params, 0)) != MPOS_OK) {
        goto exit;
    }
    last = start;
    for (;;) {
        if (pe->io.abort_check != NULL && pe->io.abort_check(pe->io.hook_ctx) != 0) {
            rc = MPOS_PIN_ENTRY_CANCELLED;
            goto exit;
        }
        if ((rc = now_ms(pe, &now)) != MPOS_OK) {
            goto exit;
        }
        uint64_t deadline = start + pe->cfg.overall_timeout_ms;
        if (last + pe->cfg.interkey_timeout_ms < deadline) {
            deadline = last + pe->cfg.interkey_timeout_ms;
        }
        if (now >= deadline) {
            rc = MPOS_PIN_ENTRY_TIMEOUT;
            goto exit;
        }
        uint64_t wait = deadline - now;
        if (wait > pe->cfg.poll_ms) {
            wait = pe->cfg.poll_ms;
        }
        key = MPOS_KEY_TIMEOUT;
        rc = pe->io.keypad->read_key(pe->io.keypad->ctx, (uint32_t)wait, &key);
        if (rc != 0) {
            rc = rc < 0 ? rc : MPOS_ERR_IO; /* a failed keypad abandons the entry */
            goto exit;
        }
        if (key == MPOS_KEY_TIMEOUT) {
            continue;
        }
        if ((rc = now_ms(pe, &last)) != MPOS_OK) {
            goto exit;
        }
        if (key <= MPOS_KEY_9) {
            if (n < MPOS_PIN_MAX_LEN) {
                digits[n++] = (char)('0' + (int)key);
            }
        } else if (key == MPOS_KEY_CLEAR) {
            if (n > 0) {
                digits[--n] = '\0';
            }
        } else if (key == MPOS_KEY_OK) {
            if (n >= MPOS_PIN_MIN_LEN) {
                rate_record(pe, last);
                rc = MPOS_PIN_ENTRY_OK;
                goto exit;
            }
            continue; /* too short: keep entering (no bypass) */
        } else if (key == MPOS_KEY_CANCEL) {
            rc = MPOS_PIN_ENTRY_CANCELLED;
            goto exit;
        } else {
            continue;
        }
        /* The echo: the number of digits, never a digit. */
        params.count = (uint8_t)n;
        if ((rc = show(pe, MPOS_HAL_PROMPT_ENTER_PIN, &params, 1)) != MPOS_OK) {
            goto exit;
        }
    }
exit:
    mpos_cleanse(&key, sizeof(key));
    mpos_cleanse(&n, sizeof(n));
    if (rc != MPOS_OK) {
        mpos_cleanse(digits, MPOS_PIN_BUF_LEN);
    }
    return rc;
}

int mpos_pin_entry_online(mpos_pin_entry *pe, const mpos_pin_entry_prompt *prompt,
                          enum mpos_pin_format format, enum mpos_cipher cipher, const uint8_t *key,
                          size_t key_len, const char *pan, uint8_t block[MPOS_PIN_BLOCK_MAX_LEN],
                          size_t *block_len)
{
    char digits[MPOS_PIN_BUF_LEN];
    uint8_t fill[MPOS_PIN_FILL_MAX_LEN];
    size_t fill_len = 0;
    int rc = MPOS_ERR_ARG;

    memset(digits, 0, sizeof(digits));
    memset(fill, 0, sizeof(fill));
    if (block != NULL) {
        memset(block, 0, MPOS_PIN_BLOCK_MAX_LEN);
    }
    if (block_len != NULL) {
        *block_len = 0;
    }
    if (pe == NULL || prompt == NULL || key == NULL || pan == NULL || block == NULL ||
        block_len == NULL || pe->io.keypad == NULL) {
        goto exit;
    }
    /* ISO 9564-1:2017 9.4 (format 4, AES) and 9.3.2 (format 0, TDES): nothing else. */
    if (!((format == MPOS_PIN_FORMAT_4 && cipher == MPOS_CIPHER_AES) ||
          (format == MPOS_PIN_FORMAT_0 && cipher == MPOS_CIPHER_TDES))) {
        goto exit;
    }
    if ((rc = mpos_pin_cipher_check(format, cipher, key_len)) != MPOS_OK) {
        goto exit;
    }
    if (!mpos_pin_pan_valid(pan)) {
        rc = MPOS_ERR_PAN;
        goto exit;
    }
    if ((rc = collect(pe, prompt, digits)) != MPOS_OK) {
        goto exit;
    }
    if (format == MPOS_PIN_FORMAT_4) {
        /* 9.4.2.2: the second half of the plaintext PIN field is random (the HAL's RNG). */
        if (pe->io.rng->random(pe->io.rng->ctx, fill, sizeof(fill)) != 0) {
            rc = MPOS_ERR_RNG;
            goto exit;
        }
        for (size_t i = 0; i < sizeof(fill); i++) {
            fill[i] &= 0x0Fu;
        }
        fill_len = sizeof(fill);
    }
    rc = mpos_pin_block_encrypt(pe->io.cc, format, cipher, key, key_len, digits, pan,
                                fill_len != 0 ? fill : NULL, fill_len, block, block_len);
exit:
    MPOS_WIPE_BUFFER(digits);
    MPOS_WIPE_BUFFER(fill);
    if (rc != MPOS_OK && block != NULL) {
        mpos_cleanse(block, MPOS_PIN_BLOCK_MAX_LEN);
    }
    if (rc != MPOS_OK && block_len != NULL) {
        *block_len = 0;
    }
    return rc;
}

int mpos_pin_entry_offline(mpos_pin_entry *pe, const mpos_pin_entry_prompt *prompt,
                           char pin[MPOS_PIN_BUF_LEN])
{
    int rc;
    if (pin == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(pin, 0, MPOS_PIN_BUF_LEN);
    if (pe == NULL || prompt == NULL || pe->io.keypad == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = collect(pe, prompt, pin);
    if (rc != MPOS_OK) {
        mpos_cleanse(pin, MPOS_PIN_BUF_LEN);
    }
    return rc;
}
