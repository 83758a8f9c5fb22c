/* openmpos terminal core: the transaction state machine (txn.h). */
#include "txn.h"

#include <string.h>

#include "mpos/pin.h"
#include "mpos/util.h"

/* Steps of the card and online phases (positive, beside 0 = go on and negative errors). */
#define STEP_GO   0 /* the next phase */
#define STEP_WAIT 1 /* keep waiting for a card */
#define STEP_END  2 /* the outcome is set: show it */

/* The key store's reversal reasons go on the wire as they are (docs/protocol.md 2.3, DF34). */
_Static_assert((int)MPOS_REVERSAL_NO_RESPONSE == (int)MPOS_SEALED_REV_NO_RESPONSE &&
                   (int)MPOS_REVERSAL_CARD_DECLINED == (int)MPOS_SEALED_REV_CARD_DECLINED &&
                   (int)MPOS_REVERSAL_TERMINAL_FAILURE == (int)MPOS_SEALED_REV_TERMINAL_FAILURE &&
                   (int)MPOS_REVERSAL_CANCELLED == (int)MPOS_SEALED_REV_CANCELLED,
               "reversal reasons: key store and sealed message differ");

#define UNIX_2000 946684800LL  /* 2000-01-01T00:00:00Z */
#define UNIX_2100 4102444800LL /* 2100-01-01T00:00:00Z */

/* ---- small helpers --------------------------------------------------------------------------- */

static int hal_err(int rc)
{
    return rc < 0 ? rc : MPOS_ERR_IO;
}

static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Length of s if it is 1..max characters of [0-9A-Za-z] within cap bytes, else 0. */
static size_t alnum_len(const char *s, size_t cap, size_t max)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0') {
        if (!is_alnum(s[n])) {
            return 0;
        }
        n++;
    }
    return (n < cap && n <= max) ? n : 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    while (n + 1 < cap && src[n] != '\0') {
        dst[n] = src[n];
        n++;
    }
    memset(dst + n, 0, cap - n);
}

static enum mpos_link_state link_state_of(enum mpos_txn_state s)
{
    switch (s) {
    case MPOS_TXN_CONFIRM:
        return MPOS_LINK_STATE_AWAIT_CONFIRM;
    case MPOS_TXN_CARD:
        return MPOS_LINK_STATE_AWAIT_CARD;
    case MPOS_TXN_PIN:
        return MPOS_LINK_STATE_AWAIT_PIN;
    case MPOS_TXN_ONLINE:
        return MPOS_LINK_STATE_ONLINE;
    case MPOS_TXN_RESULT:
        return MPOS_LINK_STATE_SHOW_RESULT;
    default:
        return MPOS_LINK_STATE_IDLE;
    }
}

static void set_state(mpos_txn *t, enum mpos_txn_state s)
{
    t->state = s;
    if (t->env.host.session != NULL) {
        int rc = mpos_link_session_set_state(t->env.host.session, link_state_of(s));
        (void)rc; /* only an out-of-range state fails, and link_state_of gives none */
    }
}

/* The key store's mpos_keystore_txn_clear, without linking the key store. */
static void keys_clear(mpos_keystore_txn *k)
{
    MPOS_WIPE_CTX(k);
}

static int mono_ms(const mpos_txn *t, uint64_t *ms)
{
    *ms = 0;
    return t->env.hal->clock->monotonic_ms(t->env.hal->clock->ctx, ms) == 0 ? MPOS_OK : MPOS_ERR_IO;
}

/* The host's poll hook, then the cancel flag a CANCEL command set. */
static int host_cancelled(mpos_txn *t)
{
    if (t->env.host.poll != NULL) {
        t->env.host.poll(t->env.host.ctx);
    }
    return t->cancel_requested;
}

static void end(mpos_txn *t, enum mpos_link_outcome outcome, enum mpos_txn_reason reason)
{
    t->result.outcome = (uint8_t)outcome;
    t->result.reason = (uint8_t)reason;
}

/* ---- events and prompts ---------------------------------------------------------------------- */

static void send_event(mpos_txn *t, mpos_link_msg *m)
{
    size_t len = 0;
    if (t->env.host.session == NULL) {
        return;
    }
    if (mpos_link_session_send(t->env.host.session, m, t->frame, sizeof(t->frame), &len) ==
            MPOS_OK &&
        t->env.host.write != NULL) {
        int rc = t->env.host.write(t->env.host.ctx, t->frame, len);
        (void)rc; /* the link only informs the host: the transaction goes on */
    }
    mpos_cleanse(t->frame, sizeof(t->frame));
}

/* PROMPT_SHOWN with the parameters the link's table gives the prompt (docs/protocol.md 1.4). */
static void emit_prompt(mpos_txn *t, enum mpos_prompt prompt, const mpos_prompt_params *p)
{
    mpos_link_msg m;
    int bits = mpos_link_prompt_params((unsigned)prompt);
    if (bits < 0) {
        return;
    }
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_PROMPT_SHOWN;
    m.u.prompt.prompt = (uint8_t)prompt;
    if ((unsigned)bits & MPOS_LINK_PARAM_TYPE) {
        m.u.prompt.txn_type = p->txn_type;
    }
    if ((unsigned)bits & MPOS_LINK_PARAM_AMOUNT) {
        m.u.prompt.amount = p->amount;
        m.u.prompt.currency = p->currency;
    }
    if ((unsigned)bits & MPOS_LINK_PARAM_COUNT) {
        m.u.prompt.count = p->count;
    }
    send_event(t, &m);
}

/* Shows a prompt of the fixed table; reports it to the host unless it is a refresh. */
static int show(mpos_txn *t, enum mpos_prompt prompt, const mpos_prompt_params *p, int update)
{
    const mpos_hal_display *d = t->env.hal->display;
    int rc = d->show(d->ctx, prompt, p);
    if (rc != 0) {
        return hal_err(rc);
    }
    if (!update) {
        emit_prompt(t, prompt, p);
    }
    return MPOS_OK;
}

static int show_plain(mpos_txn *t, enum mpos_prompt prompt)
{
    mpos_prompt_params p;
    memset(&p, 0, sizeof(p));
    return show(t, prompt, &p, 0);
}

/* A prompt with the confirmed type and amount: the only copy there is (G-TXN-1). */
static int show_order(mpos_txn *t, enum mpos_prompt prompt)
{
    mpos_prompt_params p;
    memset(&p, 0, sizeof(p));
    p.present = MPOS_PROMPT_P_TYPE | MPOS_PROMPT_P_AMOUNT;
    p.txn_type = t->txn_type;
    p.amount = t->amount;
    p.currency = t->currency;
    return show(t, prompt, &p, 0);
}

/* The PIN module's hooks. */
static int pin_show(void *ctx, enum mpos_prompt prompt, const mpos_prompt_params *p, int update)
{
    return show((mpos_txn *)ctx, prompt, p, update);
}

static int pin_abort(void *ctx)
{
    return host_cancelled((mpos_txn *)ctx);
}

/* ---- time ------------------------------------------------------------------------------------ */

/* Days since 1970-01-01 to the civil date (H. Hinnant's days_from_civil inverse), for dates
 * of 2000..2099 (days >= 0). */
static void civil(uint64_t secs, mpos_emv_datetime *dt)
{
    uint64_t days = secs / 86400u, rem = secs % 86400u;
    uint64_t z = days + 719468u;
    uint64_t era = z / 146097u;
    uint64_t doe = z - era * 146097u;
    uint64_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    uint64_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);
    uint64_t mp = (5u * doy + 2u) / 153u;
    uint64_t d = doy - (153u * mp + 2u) / 5u + 1u;
    uint64_t m = mp < 10u ? mp + 3u : mp - 9u;
    uint64_t y = yoe + era * 400u + (m <= 2u ? 1u : 0u);
    dt->year = (uint16_t)y;
    dt->month = (uint8_t)m;
    dt->day = (uint8_t)d;
    dt->hour = (uint8_t)(rem / 3600u);
    dt->minute = (uint8_t)(rem / 60u % 60u);
    dt->second = (uint8_t)(rem % 60u);
}

static void put_digits(char *out, unsigned v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        out[i - 1] = (char)('0' + v % 10u);
        v /= 10u;
    }
}

/* Reads the clock: t->datetime (UTC, the sealed request's DF2A) and t->local (the kernel's
 * date and the expiry check). MPOS_ERR_IO when the clock fails or is not set (2000..2099). */
static int clock_refresh(mpos_txn *t)
{
    int64_t now = 0, local;
    mpos_emv_datetime utc;
    if (t->env.hal->clock->now(t->env.hal->clock->ctx, &now) != 0) {
        return MPOS_ERR_IO;
    }
    local = now + t->cfg.utc_offset_s;
    if (now < UNIX_2000 || now >= UNIX_2100 || local < UNIX_2000 || local >= UNIX_2100) {
        return MPOS_ERR_IO;
    }
    civil((uint64_t)now, &utc);
    civil((uint64_t)local, &t->local);
    put_digits(t->datetime, utc.year, 4);
    put_digits(t->datetime + 4, utc.month, 2);
    put_digits(t->datetime + 6, utc.day, 2);
    put_digits(t->datetime + 8, utc.hour, 2);
    put_digits(t->datetime + 10, utc.minute, 2);
    put_digits(t->datetime + 12, utc.second, 2);
    t->datetime[MPOS_SEALED_DATETIME_LEN] = '\0';
    return MPOS_OK;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* The sealed scheme (docs/protocol.md 2.1) and the PIN block format of the keys. */
static int key_schemes(const mpos_keystore_txn *k, enum mpos_sealed_scheme *scheme,
                       enum mpos_pin_format *format, enum mpos_cipher *cipher)
{
    if (k->scheme == MPOS_KEYSTORE_DUKPT_AES && k->cipher == MPOS_CIPHER_AES &&
        k->ksn_len == MPOS_DUKPT_AES_KSN_LEN && k->mac_key_len == k->data_key_len) {
        switch (k->mac_key_len) {
        case 16:
            *scheme = MPOS_SEALED_AES128;
            break;
        case 24:
            *scheme = MPOS_SEALED_AES192;
            break;
        case 32:
            *scheme = MPOS_SEALED_AES256;
            break;
        default:
            return MPOS_ERR_KEY;
        }
        *format = MPOS_PIN_FORMAT_4; /* ISO 9564-1:2017 9.4 */
        *cipher = MPOS_CIPHER_AES;
        return MPOS_OK;
    }
    if (k->scheme == MPOS_KEYSTORE_DUKPT_TDES && k->ksn_len == MPOS_DUKPT_TDES_KSN_LEN &&
        k->mac_key_len == 16 && k->data_key_len == 16) {
        *scheme = MPOS_SEALED_TDES;
        *format = MPOS_PIN_FORMAT_0; /* 9.3.2 */
        *cipher = MPOS_CIPHER_TDES;
        return MPOS_OK;
    }
    /* Master key / working key has no sealed scheme (docs/protocol.md 2.1). */
    return MPOS_ERR_UNSUPPORTED;
}

/* The sealed keys of one direction of k into t->skeys. */
static int sealed_keys(mpos_txn *t, const mpos_keystore_txn *k, enum mpos_sealed_dir dir)
{
    enum mpos_sealed_scheme scheme;
    enum mpos_pin_format format;
    enum mpos_cipher cipher;
    int i = dir == MPOS_SEALED_DIR_REQUEST ? MPOS_KEYSTORE_REQUEST : MPOS_KEYSTORE_RESPONSE;
    int rc = key_schemes(k, &scheme, &format, &cipher);
    if (rc != MPOS_OK) {
        return rc;
    }
    return mpos_sealed_keys_set(&t->skeys, scheme, dir, k->ksn, k->ksn_len, k->mac_key[i],
                                k->data_key[i], k->mac_key_len);
}

/* A new sequence number and DUKPT key (the key store persists both before the key exists). */
static int next_keys(mpos_txn *t, mpos_keystore_txn *k)
{
    enum mpos_sealed_scheme scheme;
    enum mpos_pin_format format;
    enum mpos_cipher cipher;
    int rc = t->env.store.next_transaction(t->env.store.ctx, k);
    if (rc != MPOS_OK) {
        keys_clear(k);
        return rc < 0 ? rc : MPOS_ERR_STATE;
    }
    rc = key_schemes(k, &scheme, &format, &cipher);
    if (rc != MPOS_OK || k->sequence == 0) {
        keys_clear(k);
        return rc != MPOS_OK ? rc : MPOS_ERR_STATE;
    }
    return MPOS_OK;
}

static int load_activation(mpos_txn *t)
{
    int rc = t->env.store.activation(t->env.store.ctx, t->merchant_id, t->terminal_id);
    if (rc != MPOS_OK) {
        memset(t->merchant_id, 0, sizeof(t->merchant_id));
        memset(t->terminal_id, 0, sizeof(t->terminal_id));
        return rc < 0 ? rc : MPOS_ERR_STATE;
    }
    return MPOS_OK;
}

static int rng_fn(void *ctx, uint8_t *out, size_t len)
{
    const mpos_txn *t = ctx;
    if (t->env.hal->rng->random(t->env.hal->rng->ctx, out, len) != 0) {
        mpos_cleanse(out, len);
        return MPOS_ERR_RNG;
    }
    return MPOS_OK;
}

/* ---- the original reference of a void or refund reversal ------------------------------------- */

#define REF_SLOT_VERSION 1
#define REF_SLOT_HDR     6 /* version, sequence (4), length */

static int ref_save(mpos_txn *t, uint32_t sequence, const char *ref)
{
    const mpos_hal_storage *st = t->env.hal->storage;
    uint8_t buf[REF_SLOT_HDR + MPOS_LINK_REF_MAX_LEN];
    size_t n = alnum_len(ref, MPOS_LINK_REF_MAX_LEN + 1, MPOS_LINK_REF_MAX_LEN);
    if (n == 0) {
        return MPOS_ERR_ARG;
    }
    t->ref_sequence = sequence;
    copy_str(t->ref, sizeof(t->ref), ref);
    if (st == NULL || st->write == NULL) {
        return MPOS_OK; /* no storage: kept in RAM only */
    }
    buf[0] = REF_SLOT_VERSION;
    mpos_store_be32(buf + 1, sequence);
    buf[5] = (uint8_t)n;
    memcpy(buf + REF_SLOT_HDR, ref, n);
    return st->write(st->ctx, MPOS_TXN_REF_SLOT, buf, REF_SLOT_HDR + n) == 0 ? MPOS_OK
                                                                             : MPOS_ERR_IO;
}

static int ref_load(mpos_txn *t, uint32_t sequence, char out[MPOS_LINK_REF_MAX_LEN + 1])
{
    const mpos_hal_storage *st = t->env.hal->storage;
    uint8_t buf[REF_SLOT_HDR + MPOS_LINK_REF_MAX_LEN];
    size_t len = 0;
    memset(out, 0, MPOS_LINK_REF_MAX_LEN + 1);
    if (t->ref_sequence == sequence && t->ref[0] != '\0') {
        copy_str(out, MPOS_LINK_REF_MAX_LEN + 1, t->ref);
        return MPOS_OK;
    }
    if (st == NULL || st->read == NULL ||
        st->read(st->ctx, MPOS_TXN_REF_SLOT, buf, sizeof(buf), &len) != 0 ||
        len < REF_SLOT_HDR + 1 || buf[0] != REF_SLOT_VERSION ||
        mpos_load_be32(buf + 1) != sequence || buf[5] != len - REF_SLOT_HDR) {
        return MPOS_ERR_STATE;
    }
    for (size_t i = REF_SLOT_HDR; i < len; i++) {
        if (!is_alnum((char)buf[i])) {
            return MPOS_ERR_FORMAT;
        }
    }
    memcpy(out, buf + REF_SLOT_HDR, len - REF_SLOT_HDR);
    return MPOS_OK;
}

static void ref_forget(mpos_txn *t)
{
    const mpos_hal_storage *st = t->env.hal->storage;
    static const uint8_t none[1] = {0};
    if (st != NULL && st->write != NULL) {
        int rc = st->write(st->ctx, MPOS_TXN_REF_SLOT, none, sizeof(none));
        (void)rc; /* a stale reference is bound to its sequence number and never reused */
    }
    t->ref_sequence = 0;
    memset(t->ref, 0, sizeof(t->ref));
}

static int needs_ref(uint8_t type)
{
    return type == MPOS_LINK_TXN_VOID || type == MPOS_LINK_TXN_REFUND;
}

/* ---- reversal -------------------------------------------------------------------------------- */

/* Sends the pending reversal, tries times at most. 0 when none is pending (any more), 1 when
 * it still is, or a negative error. Runs with the state already ONLINE. */
static int flush(mpos_txn *t)
{
    mpos_keystore_reversal r;
    mpos_keystore_txn k;
    char ref[MPOS_LINK_REF_MAX_LEN + 1];
    int rc;

    memset(&k, 0, sizeof(k));
    memset(ref, 0, sizeof(ref));
    rc = t->env.store.reversal_get(t->env.store.ctx, &r);
    if (rc == MPOS_HAL_NOT_FOUND) {
        rc = MPOS_OK;
        goto exit;
    }
    if (rc != MPOS_OK) {
        rc = rc < 0 ? rc : MPOS_ERR_STATE;
        goto exit;
    }
    if (needs_ref(r.txn_type) && (rc = ref_load(t, r.sequence, ref)) != MPOS_OK) {
        goto exit; /* cannot be sent as docs/protocol.md 2.3 requires: left pending */
    }
    if ((rc = load_activation(t)) != MPOS_OK) {
        goto exit;
    }
    rc = 1;
    for (uint32_t i = 0; i < t->cfg.reversal_tries; i++) {
        int sent;
        if (r.attempts < UINT8_MAX) {
            r.attempts++;
        }
        if ((rc = t->env.store.reversal_store(t->env.store.ctx, &r)) != MPOS_OK) {
            rc = rc < 0 ? rc : MPOS_ERR_STATE;
            goto exit;
        }
        /* A new KSN for each try; the reversed transaction's sequence number is the back
         * end's idempotency key (docs/protocol.md 2.3, DF24). */
        if ((rc = next_keys(t, &k)) != MPOS_OK) {
            goto exit;
        }
        memset(&t->req, 0, sizeof(t->req));
        t->req.msg_type = MPOS_SEALED_MSG_REVERSAL;
        t->req.sequence = r.sequence;
        t->req.txn_type = r.txn_type;
        t->req.amount = r.amount;
        t->req.currency = r.currency;
        copy_str(t->req.merchant_id, sizeof(t->req.merchant_id), t->merchant_id);
        copy_str(t->req.terminal_id, sizeof(t->req.terminal_id), t->terminal_id);
        copy_str(t->req.datetime, sizeof(t->req.datetime), r.datetime);
        t->req.entry_mode = MPOS_ENTRY_NONE; /* no card data is kept (G-ACCT-4) */
        copy_str(t->req.original_ref, sizeof(t->req.original_ref), ref);
        /* The record's reason, so the back end sends the switch the true DE 39 reason (the
         * key store checked it is 1..4; the sealer refuses anything else). */
        t->req.reversal_reason = r.reason;
        rc = sealed_keys(t, &k, MPOS_SEALED_DIR_REQUEST);
        if (rc == MPOS_OK) {
            rc = mpos_sealed_seal_request(t->env.cc, &t->skeys, &t->req, rng_fn, t, t->msg,
                                          sizeof(t->msg), &t->msg_len);
        }
        mpos_sealed_request_clear(&t->req);
        mpos_sealed_keys_clear(&t->skeys);
        if (rc != MPOS_OK) {
            goto exit;
        }
        sent = t->env.net.send(t->env.net.ctx, t->msg, t->msg_len) == 0;
        rc = sent ? t->env.net.recv(t->env.net.ctx, t->in, sizeof(t->in), &t->in_len,
                                    t->cfg.online_timeout_ms)
                  : MPOS_ERR_IO;
        if (rc == MPOS_OK && t->in_len <= sizeof(t->in)) {
            rc = sealed_keys(t, &k, MPOS_SEALED_DIR_RESPONSE);
            if (rc == MPOS_OK) {
                rc = mpos_sealed_open_response(t->env.cc, &t->skeys, r.sequence, t->in, t->in_len,
                                               &t->resp);
            }
            mpos_sealed_keys_clear(&t->skeys);
        } else {
            rc = MPOS_ERR_VERIFY;
        }
        keys_clear(&k);
        mpos_sealed_response_clear(&t->resp);
        mpos_cleanse(t->msg, sizeof(t->msg));
        mpos_cleanse(t->in, sizeof(t->in));
        if (rc == MPOS_OK) {
            /* Any valid response acknowledges the reversal. */
            rc = t->env.store.reversal_done(t->env.store.ctx, r.sequence);
            if (rc == MPOS_OK && needs_ref(r.txn_type)) {
                ref_forget(t);
            }
            rc = rc < 0 ? rc : (rc > 0 ? MPOS_ERR_STATE : MPOS_OK);
            goto exit;
        }
        rc = 1;
    }
exit:
    keys_clear(&k);
    MPOS_WIPE_CTX(&r);
    MPOS_WIPE_BUFFER(ref);
    return rc;
}

/* The reversal record of this transaction (persisted by the store before it returns). */
static int record_reversal(mpos_txn *t, enum mpos_keystore_reversal_reason reason)
{
    mpos_keystore_reversal r;
    int rc;
    memset(&r, 0, sizeof(r));
    r.sequence = t->keys.sequence;
    r.txn_type = t->txn_type;
    r.amount = t->amount;
    r.currency = t->currency;
    r.entry_mode = t->entry_mode;
    r.reason = (uint8_t)reason;
    memcpy(r.ksn, t->keys.ksn, t->keys.ksn_len);
    r.ksn_len = t->keys.ksn_len;
    copy_str(r.datetime, sizeof(r.datetime), t->datetime);
    copy_str(r.masked_pan, sizeof(r.masked_pan), t->masked_pan);
    rc = t->env.store.reversal_store(t->env.store.ctx, &r);
    return rc == MPOS_OK ? MPOS_OK : (rc < 0 ? rc : MPOS_ERR_STATE);
}

/* ---- PIN ------------------------------------------------------------------------------------- */

static void pin_prompt(const mpos_txn *t, mpos_pin_entry_prompt *p)
{
    memset(p, 0, sizeof(*p));
    p->amount = t->amount;
    p->currency = t->currency;
    p->masked_pan = t->masked_pan[0] != '\0' ? t->masked_pan : NULL;
}

/* Online PIN for the PAN of the card read in this transaction: the block, built and
 * enciphered under this transaction's DUKPT PIN key, into t->pin_block. */
static int online_pin(mpos_txn *t, const char *pan)
{
    enum mpos_sealed_scheme scheme;
    enum mpos_pin_format format;
    enum mpos_cipher cipher;
    mpos_pin_entry_prompt p;
    int rc;
    if ((rc = key_schemes(&t->keys, &scheme, &format, &cipher)) != MPOS_OK) {
        t->pin_status = rc;
        return rc;
    }
    if ((rc = mpos_msr_mask_pan(pan, t->masked_pan)) != MPOS_OK) {
        t->pin_status = rc;
        return rc;
    }
    set_state(t, MPOS_TXN_PIN);
    pin_prompt(t, &p);
    rc = mpos_pin_entry_online(&t->pin, &p, format, cipher, t->keys.pin_key, t->keys.pin_key_len,
                               pan, t->pin_block, &t->pin_block_len);
    t->pin_status = rc;
    t->has_pin = rc == MPOS_OK;
    return rc;
}

static enum mpos_txn_reason pin_reason(const mpos_txn *t)
{
    if (t->cancel_requested) {
        return MPOS_TXN_R_HOST_CANCELLED;
    }
    switch (t->pin_status) {
    case MPOS_PIN_ENTRY_TIMEOUT:
        return MPOS_TXN_R_PIN_TIMEOUT;
    case MPOS_PIN_ENTRY_RATE_LIMITED:
        return MPOS_TXN_R_PIN_RATE_LIMITED;
    case MPOS_PIN_ENTRY_CANCELLED:
        return MPOS_TXN_R_PIN_CANCELLED;
    default:
        return MPOS_TXN_R_TERMINAL;
    }
}

/* ---- the EMV kernel's callbacks -------------------------------------------------------------- */

static int emv_reset(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    const mpos_hal_card_reader *r = ((mpos_txn *)ctx)->env.hal->reader;
    return r->power_on(r->ctx, atr, atr_len);
}

static int emv_io(void *ctx, const uint8_t *capdu, size_t capdu_len, uint8_t rapdu[MPOS_RAPDU_MAX],
                  size_t *rapdu_len)
{
    const mpos_hal_card_reader *r = ((mpos_txn *)ctx)->env.hal->reader;
    return r->exchange(r->ctx, capdu, capdu_len, rapdu, rapdu_len);
}

static int emv_now(void *ctx, mpos_emv_datetime *now)
{
    mpos_txn *t = ctx;
    int rc = clock_refresh(t);
    *now = t->local;
    return rc;
}

static int emv_pin(void *ctx, enum mpos_emv_pin_kind kind, unsigned tries_left,
                   char pin[MPOS_PIN_BUF_LEN])
{
    mpos_txn *t = ctx;
    mpos_emv_card_data cd;
    int rc;
    if (host_cancelled(t)) {
        t->pin_status = MPOS_PIN_ENTRY_CANCELLED;
        return MPOS_EMV_PIN_CANCELLED;
    }
    /* The PAN of this card: for the online PIN block, and masked on the prompt. */
    rc = mpos_emv_card_data_get(&t->emv, &cd);
    if (rc == MPOS_OK) {
        if (kind == MPOS_EMV_PIN_ONLINE) {
            rc = online_pin(t, cd.pan);
        } else if (pin == NULL) {
            rc = MPOS_ERR_ARG;
        } else if ((rc = mpos_msr_mask_pan(cd.pan, t->masked_pan)) == MPOS_OK) {
            mpos_pin_entry_prompt p;
            pin_prompt(t, &p);
            if (t->offline_pin_calls > 0 && tries_left >= 1 && tries_left <= MPOS_PIN_MAX_LEN) {
                p.retry = 1; /* the card refused the last one */
                p.tries_left = (uint8_t)tries_left;
            }
            t->offline_pin_calls++;
            set_state(t, MPOS_TXN_PIN);
            rc = mpos_pin_entry_offline(&t->pin, &p, pin);
        }
    }
    MPOS_WIPE_CTX(&cd);
    t->pin_status = rc;
    return rc == MPOS_OK ? MPOS_EMV_PIN_ENTERED : MPOS_EMV_PIN_CANCELLED;
}

/* ---- card ------------------------------------------------------------------------------------ */

/* '9C' (EMV Book 3 Annex A; the first two digits of the ISO 8583:1987 processing code). */
static uint8_t emv_type(uint8_t type)
{
    switch (type) {
    case MPOS_LINK_TXN_VOID:
        return 0x02;
    case MPOS_LINK_TXN_REFUND:
        return 0x20;
    case MPOS_LINK_TXN_BALANCE:
        return 0x31;
    default:
        return 0x00;
    }
}

static void card_power_off(mpos_txn *t)
{
    const mpos_hal_card_reader *r = t->env.hal->reader;
    int rc = r->power_off(r->ctx);
    (void)rc;
}

/* One chip read up to the first GENERATE AC. */
static int chip_read(mpos_txn *t)
{
    mpos_emv_txn et;
    const mpos_emv_result *res;
    int rc;
    t->chip_attempts++;
    t->card_inserted = 1;
    t->offline_pin_calls = 0;
    mpos_emv_init(&t->emv, &t->emv_params, &t->emv_env);
    memset(&et, 0, sizeof(et));
    et.type = emv_type(t->txn_type);
    et.amount = t->amount;
    et.sequence = t->keys.sequence % 100000000u; /* '9F41' n8 */
    rc = mpos_emv_start(&t->emv, &et);
    if (rc < 0) {
        return rc;
    }
    res = mpos_emv_get_result(&t->emv);
    switch (rc) {
    case MPOS_EMV_ONLINE:
        t->chip_online = 1;
        t->entry_mode = MPOS_ENTRY_CHIP;
        t->fallback = 0;
        return STEP_GO;
    case MPOS_EMV_DECLINED:
        end(t, MPOS_LINK_OUTCOME_DECLINED, MPOS_TXN_R_CARD_DECLINED);
        return STEP_END;
    case MPOS_EMV_CANCELLED:
        end(t, MPOS_LINK_OUTCOME_CANCELLED, pin_reason(t));
        return STEP_END;
    case MPOS_EMV_CARD_ERROR:
    case MPOS_EMV_NOT_ACCEPTED:
        if (res->fallback_allowed && t->env.hal->reader->read_tracks != NULL) {
            /* A chip failure in this transaction: the stripe may be used (msr.h). */
            t->chip_failed = 1;
            card_power_off(t);
            mpos_emv_clear(&t->emv);
            return show_plain(t, MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE) == MPOS_OK ? STEP_WAIT
                                                                              : MPOS_ERR_IO;
        }
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_REFUSED);
        return STEP_END;
    default:
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_REFUSED);
        return STEP_END;
    }
}

static int bad_swipe(mpos_txn *t)
{
    mpos_msr_card_clear(&t->stripe);
    if (++t->bad_swipes >= MPOS_TXN_MAX_BAD_SWIPES) {
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_REFUSED);
        return STEP_END;
    }
    int rc = t->chip_failed ? show_plain(t, MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE)
                            : show_order(t, MPOS_HAL_PROMPT_INSERT_CARD);
    return rc == MPOS_OK ? STEP_WAIT : rc;
}

/* One swipe, under the stripe rules (msr.h): a chip card only after its chip failed in this
 * transaction (then flagged as a fallback); PIN always. */
static int stripe_read(mpos_txn *t)
{
    const mpos_hal_card_reader *r = t->env.hal->reader;
    mpos_hal_tracks tr;
    mpos_msr_policy policy;
    mpos_msr_decision dec;
    int rc;
    memset(&tr, 0, sizeof(tr));
    rc = r->read_tracks(r->ctx, &tr);
    if (rc == 0) {
        rc = mpos_msr_parse(tr.track1_len != 0 ? tr.track1 : NULL, tr.track1_len,
                            tr.track2_len != 0 ? tr.track2 : NULL, tr.track2_len, &t->stripe);
    }
    MPOS_WIPE_CTX(&tr);
    if (rc != 0) {
        return bad_swipe(t);
    }
    memset(&policy, 0, sizeof(policy));
    policy.year = t->local.year;
    policy.month = t->local.month;
    policy.chip_read_failed = t->chip_failed;
    policy.refuse_expired = 0; /* flagged only: the issuer declines it (54) */
    rc = mpos_msr_check(&t->stripe, &policy, &dec);
    if (rc < 0) {
        mpos_msr_card_clear(&t->stripe);
        return rc;
    }
    switch (rc) {
    case 0:
        break;
    case MPOS_MSR_USE_CHIP:
        mpos_msr_card_clear(&t->stripe);
        rc = show_plain(t, MPOS_HAL_PROMPT_USE_CHIP);
        return rc == MPOS_OK ? STEP_WAIT : rc;
    case MPOS_MSR_BAD_PAN:
        return bad_swipe(t);
    default:
        mpos_msr_card_clear(&t->stripe);
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_REFUSED);
        return STEP_END;
    }
    t->entry_mode = MPOS_ENTRY_MAGSTRIPE;
    t->fallback = dec.fallback ? 1 : 0;
    rc = online_pin(t, t->stripe.pan);
    if (rc < 0) {
        return rc;
    }
    if (rc > 0) {
        end(t, MPOS_LINK_OUTCOME_CANCELLED, pin_reason(t));
        return STEP_END;
    }
    return STEP_GO;
}

static int card_phase(mpos_txn *t)
{
    const mpos_hal_card_reader *r = t->env.hal->reader;
    const mpos_hal_keypad *kp = t->env.hal->keypad;
    uint64_t start = 0, now = 0;
    int rc;
    set_state(t, MPOS_TXN_CARD);
    if ((rc = show_order(t, MPOS_HAL_PROMPT_INSERT_CARD)) != MPOS_OK) {
        return rc;
    }
    if ((rc = mono_ms(t, &start)) != MPOS_OK) {
        return rc;
    }
    for (;;) {
        enum mpos_key key = MPOS_KEY_TIMEOUT;
        enum mpos_card_event ev;
        if (host_cancelled(t)) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_HOST_CANCELLED);
            return STEP_END;
        }
        if ((rc = mono_ms(t, &now)) != MPOS_OK) {
            return rc;
        }
        if (now - start >= t->cfg.card_timeout_ms) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_CARD_TIMEOUT);
            return STEP_END;
        }
        if ((rc = kp->read_key(kp->ctx, 0, &key)) != 0) {
            return hal_err(rc);
        }
        if (key == MPOS_KEY_CANCEL) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_CARD_CANCELLED);
            return STEP_END;
        }
        uint64_t wait = t->cfg.card_timeout_ms - (now - start);
        if (wait > t->cfg.poll_ms) {
            wait = t->cfg.poll_ms;
        }
        rc = r->wait_event(r->ctx, (uint32_t)wait, &ev);
        if (rc == MPOS_HAL_TIMEOUT) {
            continue;
        }
        if (rc != 0) {
            return hal_err(rc);
        }
        if (ev == MPOS_CARD_EVENT_INSERTED) {
            if (t->chip_attempts >= MPOS_TXN_MAX_CHIP_ATTEMPTS) {
                t->card_inserted = 1;
                continue; /* the chip has had its chances: a swipe only */
            }
            rc = chip_read(t);
        } else if (ev == MPOS_CARD_EVENT_SWIPED && r->read_tracks != NULL) {
            rc = stripe_read(t);
        } else {
            if (ev == MPOS_CARD_EVENT_REMOVED) {
                t->card_inserted = 0;
            }
            continue;
        }
        if (rc != STEP_WAIT) {
            return rc;
        }
    }
}

/* ---- confirmation ---------------------------------------------------------------------------- */

/* G-PROMPT-1: the type and amount on the terminal's display, OK to go on. */
static int confirm(mpos_txn *t)
{
    const mpos_hal_keypad *kp = t->env.hal->keypad;
    uint64_t start = 0, now = 0;
    int rc;
    if ((rc = show_order(t, MPOS_HAL_PROMPT_CONFIRM_AMOUNT)) != MPOS_OK) {
        return rc;
    }
    if ((rc = mono_ms(t, &start)) != MPOS_OK) {
        return rc;
    }
    for (;;) {
        enum mpos_key key = MPOS_KEY_TIMEOUT;
        if (host_cancelled(t)) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_HOST_CANCELLED);
            return STEP_END;
        }
        if ((rc = mono_ms(t, &now)) != MPOS_OK) {
            return rc;
        }
        if (now - start >= t->cfg.confirm_timeout_ms) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_CONFIRM_TIMEOUT);
            return STEP_END;
        }
        uint64_t wait = t->cfg.confirm_timeout_ms - (now - start);
        if (wait > t->cfg.poll_ms) {
            wait = t->cfg.poll_ms;
        }
        if ((rc = kp->read_key(kp->ctx, (uint32_t)wait, &key)) != 0) {
            return hal_err(rc);
        }
        if (key == MPOS_KEY_OK) {
            return STEP_GO;
        }
        if (key == MPOS_KEY_CANCEL) {
            end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_CONFIRM_CANCELLED);
            return STEP_END;
        }
    }
}

/* ---- online ---------------------------------------------------------------------------------- */

/* The request, from the context's one copy of the order and the card read here (T-LIMIT-2:
 * built from this structure only). */
static int build_request(mpos_txn *t, int retry)
{
    mpos_sealed_request *q = &t->req;
    int rc = MPOS_OK;
    memset(q, 0, sizeof(*q));
    q->msg_type = MPOS_SEALED_MSG_REQUEST;
    q->retry = retry ? 1 : 0;
    q->sequence = t->keys.sequence;
    q->txn_type = t->txn_type;
    q->amount = t->amount;
    q->currency = t->currency;
    copy_str(q->merchant_id, sizeof(q->merchant_id), t->merchant_id);
    copy_str(q->terminal_id, sizeof(q->terminal_id), t->terminal_id);
    copy_str(q->datetime, sizeof(q->datetime), t->datetime);
    q->entry_mode = t->entry_mode;
    q->fallback = t->fallback;
    copy_str(q->original_ref, sizeof(q->original_ref), t->original_ref);
    q->has_location = t->has_location;
    q->location = t->location;
    if (t->entry_mode == MPOS_ENTRY_CHIP) {
        mpos_emv_card_data cd;
        rc = mpos_emv_card_data_get(&t->emv, &cd);
        if (rc == MPOS_OK && mpos_msr_mask_pan(cd.pan, t->masked_pan) != MPOS_OK) {
            rc = MPOS_ERR_FORMAT; /* not a PAN the request can carry */
        }
        if (rc == MPOS_OK) {
            copy_str(q->card.pan, sizeof(q->card.pan), cd.pan);
            memcpy(q->card.expiry, cd.expiry, 4); /* YYMMDD -> YYMM */
            q->card.expiry[4] = '\0';
            if (cd.track2_len > 0 && cd.track2_len <= sizeof(q->card.track2)) {
                memcpy(q->card.track2, cd.track2, cd.track2_len);
                q->card.track2_len = cd.track2_len;
            }
            rc = mpos_emv_field55(&t->emv, MPOS_EMV_F55_REQUEST, q->card.emv, sizeof(q->card.emv),
                                  &q->card.emv_len);
        }
        MPOS_WIPE_CTX(&cd);
    } else {
        copy_str(q->card.pan, sizeof(q->card.pan), t->stripe.pan);
        copy_str(q->card.expiry, sizeof(q->card.expiry), t->stripe.expiry);
        memcpy(q->card.track2, t->stripe.track2_eq, t->stripe.track2_eq_len);
        q->card.track2_len = t->stripe.track2_eq_len;
    }
    /* A retry carries no PIN block: the one entered is bound to the first KSN and the clear
     * PIN is gone (docs/protocol.md 2.3 DF35). */
    if (rc == MPOS_OK && t->has_pin && !retry) {
        enum mpos_sealed_scheme scheme;
        enum mpos_pin_format format;
        enum mpos_cipher cipher;
        rc = key_schemes(&t->keys, &scheme, &format, &cipher);
        q->has_pin = 1;
        q->pin_format = (uint8_t)format;
        memcpy(q->pin_block, t->pin_block, t->pin_block_len);
        q->pin_block_len = t->pin_block_len;
    }
    if (rc == MPOS_OK) {
        rc = sealed_keys(t, &t->keys, MPOS_SEALED_DIR_REQUEST);
    }
    if (rc == MPOS_OK) {
        rc = mpos_sealed_seal_request(t->env.cc, &t->skeys, q, rng_fn, t, t->msg, sizeof(t->msg),
                                      &t->msg_len);
    }
    /* The clear card data lived in q only for the sealing. */
    mpos_sealed_request_clear(q);
    mpos_sealed_keys_clear(&t->skeys);
    return rc;
}

/* Chip and issuer agree on the outcome (mpos_emv_complete with the response). */
static int chip_complete(mpos_txn *t, int approved, enum mpos_keystore_reversal_reason *rev)
{
    mpos_emv_online_response er;
    int rc;
    memset(&er, 0, sizeof(er));
    er.approved = approved;
    /* '8A': the back end's card ARC, else the response code (both an2). */
    memcpy(er.arc, t->resp.arc[0] != '\0' ? t->resp.arc : t->resp.response_code, 2);
    if (t->resp.iad_len > 0) {
        er.iad91 = t->resp.iad;
        er.iad91_len = t->resp.iad_len;
    }
    t->chip_online = 0;
    rc = mpos_emv_complete(&t->emv, &er);
    *rev = 0;
    if (rc == MPOS_EMV_APPROVED && approved) {
        end(t, MPOS_LINK_OUTCOME_APPROVED, MPOS_TXN_R_APPROVED);
    } else if (rc == MPOS_EMV_DECLINED_AFTER_APPROVAL) {
        end(t, MPOS_LINK_OUTCOME_DECLINED, MPOS_TXN_R_CARD_DECLINED_AFTER_APPROVAL);
        *rev = MPOS_REVERSAL_CARD_DECLINED;
    } else if (approved) {
        /* The issuer approved and the card did not complete (gone, mute, wrong answer). */
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_FAILED_AFTER_APPROVAL);
        *rev = MPOS_REVERSAL_TERMINAL_FAILURE;
    } else {
        end(t, MPOS_LINK_OUTCOME_DECLINED, MPOS_TXN_R_ISSUER_DECLINED);
    }
    return rc < 0 ? rc : MPOS_OK;
}

/* The previous transaction's reversal, if one is pending, goes out before this transaction
 * takes its key: the store holds one reversal at a time, and the back end accepts KSN
 * counters in increasing order only (B-REPLAY-1), so nothing of this transaction may be
 * sealed before it. */
static int pending_first(mpos_txn *t)
{
    mpos_keystore_reversal r;
    int rc = t->env.store.reversal_get(t->env.store.ctx, &r);
    MPOS_WIPE_CTX(&r);
    if (rc == MPOS_HAL_NOT_FOUND) {
        return STEP_GO;
    }
    if (rc != MPOS_OK) {
        return rc < 0 ? rc : MPOS_ERR_STATE;
    }
    set_state(t, MPOS_TXN_ONLINE);
    if ((rc = show_plain(t, MPOS_HAL_PROMPT_PROCESSING)) != MPOS_OK) {
        return rc;
    }
    rc = flush(t);
    if (rc != MPOS_OK) {
        end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_REVERSAL_PENDING);
        t->result.reversal_pending = 1;
        return rc < 0 ? rc : STEP_END;
    }
    return STEP_GO;
}

/* Sends t->msg and awaits the answer to this request (t->keys: KSN and sequence). 1 with
 * t->resp for a valid response; 0 (the end set to NO_RESPONSE) for anything else. */
static int exchange(mpos_txn *t)
{
    int rc, valid = 0;
    if (t->env.net.send(t->env.net.ctx, t->msg, t->msg_len) != 0) {
        end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_NO_RESPONSE);
    } else if (t->env.net.recv(t->env.net.ctx, t->in, sizeof(t->in), &t->in_len,
                               t->cfg.online_timeout_ms) != 0 ||
               t->in_len > sizeof(t->in)) {
        end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_NO_RESPONSE);
    } else {
        /* T-CHAN-2: MAC under the response keys of this KSN, bound to this sequence. */
        rc = sealed_keys(t, &t->keys, MPOS_SEALED_DIR_RESPONSE);
        if (rc == MPOS_OK) {
            rc = mpos_sealed_open_response(t->env.cc, &t->skeys, t->keys.sequence, t->in, t->in_len,
                                           &t->resp);
        }
        mpos_sealed_keys_clear(&t->skeys);
        valid = rc == MPOS_OK;
        if (!valid) {
            end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_BAD_RESPONSE);
        }
    }
    mpos_cleanse(t->msg, sizeof(t->msg));
    mpos_cleanse(t->in, sizeof(t->in));
    return valid;
}

/* The pause before a retry, in poll_ms slices on the card reader as the other waits, with the
 * host's poll hook served between slices. A removed card is noted (the completion then fails
 * and reverses an approval, as without a retry). */
static int retry_wait(mpos_txn *t)
{
    const mpos_hal_card_reader *r = t->env.hal->reader;
    uint64_t start = 0, now = 0;
    int rc = mono_ms(t, &start);
    while (rc == MPOS_OK && (rc = mono_ms(t, &now)) == MPOS_OK &&
           now - start < t->cfg.retry_delay_ms) {
        enum mpos_card_event ev;
        uint64_t wait = t->cfg.retry_delay_ms - (now - start);
        if (t->env.host.poll != NULL) {
            t->env.host.poll(t->env.host.ctx);
        }
        int s =
            r->wait_event(r->ctx, (uint32_t)(wait > t->cfg.poll_ms ? t->cfg.poll_ms : wait), &ev);
        if (s == 0 && ev == MPOS_CARD_EVENT_REMOVED) {
            t->card_inserted = 0;
        } else if (s < 0 && s != MPOS_HAL_TIMEOUT) {
            return hal_err(s);
        }
    }
    return rc;
}

/* The retry of a request whose response was lost (docs/protocol.md 2.8): a new key from the
 * store (its sequence number is skipped, as a reversal's), the ORIGINAL sequence number, the
 * same clear fields and card data, the retry flag and no PIN block; sealed into t->msg. */
static int build_retry(mpos_txn *t)
{
    mpos_keystore_txn k;
    uint32_t sequence = t->keys.sequence;
    int rc = next_keys(t, &k);
    if (rc != MPOS_OK) {
        return rc; /* t->keys (the first send's) stay: the reversal record names them */
    }
    keys_clear(&t->keys);
    t->keys = k;
    t->keys.sequence = sequence;
    keys_clear(&k);
    /* The PIN block belongs to the first KSN: not needed any more. */
    mpos_cleanse(t->pin_block, sizeof(t->pin_block));
    return build_request(t, 1);
}

static int online_phase(mpos_txn *t)
{
    enum mpos_keystore_reversal_reason rev = 0;
    int rc, valid, approved;
    if (host_cancelled(t)) {
        end(t, MPOS_LINK_OUTCOME_CANCELLED, MPOS_TXN_R_HOST_CANCELLED);
        return STEP_END;
    }
    set_state(t, MPOS_TXN_ONLINE); /* from here on the outcome belongs to the back end */
    if ((rc = show_plain(t, MPOS_HAL_PROMPT_PROCESSING)) != MPOS_OK) {
        return rc;
    }
    if ((rc = clock_refresh(t)) != MPOS_OK) {
        return rc;
    }
    rc = build_request(t, 0);
    if (rc == MPOS_ERR_FORMAT) {
        /* Card data the request cannot carry (its track 2 disagrees with its PAN, ...). */
        end(t, MPOS_LINK_OUTCOME_CARD_ERROR, MPOS_TXN_R_CARD_REFUSED);
        return STEP_END;
    }
    if (rc != MPOS_OK) {
        return rc;
    }
    /* Persisted before the request leaves: whatever happens next, it is reversed unless a
     * valid response says otherwise. */
    if (needs_ref(t->txn_type) && (rc = ref_save(t, t->keys.sequence, t->original_ref)) != 0) {
        return rc;
    }
    if ((rc = record_reversal(t, MPOS_REVERSAL_TERMINAL_FAILURE)) != MPOS_OK) {
        return rc;
    }
    t->result.reversal_pending = 1;
    valid = exchange(t);
    /* No valid response: the same transaction again under a new KSN (docs/protocol.md 2.8).
     * The chip still waits for its second GENERATE AC and the reversal record stays until
     * the outcome is known. The back end answers with the first outcome, never a second
     * charge; 94 (the first still in flight) counts as no response. */
    for (uint32_t i = 0; !valid && i < t->cfg.retries; i++) {
        if (retry_wait(t) != MPOS_OK || build_retry(t) != MPOS_OK) {
            break; /* the end is already NO_RESPONSE: reversed */
        }
        valid = exchange(t);
        if (valid && strcmp(t->resp.response_code, "94") == 0) {
            mpos_sealed_response_clear(&t->resp);
            end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_NO_RESPONSE);
            valid = 0;
            break;
        }
    }
    if (!valid) {
        if (t->chip_online) {
            t->chip_online = 0;
            rc = mpos_emv_complete(&t->emv, NULL); /* AAC: never approved offline */
            (void)rc;
        }
        rc = record_reversal(t, MPOS_REVERSAL_NO_RESPONSE);
        (void)rc; /* on failure the first record ("terminal failure") stands */
        return STEP_END;
    }
    approved = strcmp(t->resp.response_code, "00") == 0;
    if (t->chip_online) {
        if ((rc = chip_complete(t, approved, &rev)) != MPOS_OK) {
            rev = approved ? MPOS_REVERSAL_TERMINAL_FAILURE : 0;
            end(t, MPOS_LINK_OUTCOME_CARD_ERROR,
                approved ? MPOS_TXN_R_CARD_FAILED_AFTER_APPROVAL : MPOS_TXN_R_TERMINAL);
        }
    } else if (approved) {
        end(t, MPOS_LINK_OUTCOME_APPROVED, MPOS_TXN_R_APPROVED);
    } else {
        end(t, MPOS_LINK_OUTCOME_DECLINED, MPOS_TXN_R_ISSUER_DECLINED);
    }
    if (t->result.outcome == MPOS_LINK_OUTCOME_APPROVED ||
        t->result.outcome == MPOS_LINK_OUTCOME_DECLINED) {
        copy_str(t->result.response_code, sizeof(t->result.response_code), t->resp.response_code);
        copy_str(t->result.rrn, sizeof(t->result.rrn), t->resp.rrn);
    }
    if (t->result.outcome == MPOS_LINK_OUTCOME_APPROVED) {
        copy_str(t->result.auth_code, sizeof(t->result.auth_code), t->resp.auth_code);
    }
    if (rev != 0) {
        /* Reversed: the host gets no approval data for it. */
        memset(t->result.response_code, 0, sizeof(t->result.response_code));
        memset(t->result.auth_code, 0, sizeof(t->result.auth_code));
        memset(t->result.rrn, 0, sizeof(t->result.rrn));
        if (rev != MPOS_REVERSAL_TERMINAL_FAILURE) {
            rc = record_reversal(t, rev);
            (void)rc; /* on failure the first record stands: it is reversed either way */
        }
        return STEP_END;
    }
    /* Nothing to reverse: the record goes. */
    rc = t->env.store.reversal_done(t->env.store.ctx, t->keys.sequence);
    if (rc != MPOS_OK) {
        if (t->result.outcome == MPOS_LINK_OUTCOME_APPROVED) {
            /* The record may come back at the next start and reverse this sale: say so
             * now rather than show an approval that will be undone. */
            end(t, MPOS_LINK_OUTCOME_NO_RESPONSE, MPOS_TXN_R_TERMINAL);
            memset(t->result.response_code, 0, sizeof(t->result.response_code));
            memset(t->result.auth_code, 0, sizeof(t->result.auth_code));
            memset(t->result.rrn, 0, sizeof(t->result.rrn));
        }
        return rc < 0 ? rc : STEP_END;
    }
    if (needs_ref(t->txn_type)) {
        ref_forget(t);
    }
    t->result.reversal_pending = 0;
    return STEP_END;
}

/* ---- the end --------------------------------------------------------------------------------- */

static int result_code_showable(const char *rc)
{
    for (size_t i = 0; i < 2; i++) {
        char c = rc[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) {
            return 0;
        }
    }
    return rc[2] == '\0';
}

static void wipe_transaction(mpos_txn *t)
{
    keys_clear(&t->keys);
    t->has_keys = 0;
    mpos_emv_clear(&t->emv);
    mpos_msr_card_clear(&t->stripe);
    MPOS_WIPE_BUFFER(t->pin_block);
    t->pin_block_len = 0;
    t->has_pin = 0;
    mpos_sealed_request_clear(&t->req);
    mpos_sealed_keys_clear(&t->skeys);
    mpos_sealed_response_clear(&t->resp);
    MPOS_WIPE_BUFFER(t->msg);
    t->msg_len = 0;
    MPOS_WIPE_BUFFER(t->in);
    t->in_len = 0;
    MPOS_WIPE_BUFFER(t->masked_pan);
    MPOS_WIPE_BUFFER(t->original_ref);
    t->txn_type = 0;
    t->amount = 0;
    t->currency = 0;
    t->chip_online = 0;
    t->chip_failed = 0;
    t->chip_attempts = 0;
    t->bad_swipes = 0;
    t->offline_pin_calls = 0;
    t->pin_status = 0;
    t->entry_mode = 0;
    t->fallback = 0;
    t->cancel_requested = 0;
}

/* Shows the outcome, sends RESULT, waits for the card to leave, wipes, back to IDLE. */
static int finish(mpos_txn *t)
{
    mpos_prompt_params p;
    mpos_link_msg m;
    enum mpos_prompt prompt;
    int rc = MPOS_OK;

    if (t->chip_online) {
        /* Ended before the request went out (cancel, failure): ask the card for an AAC. */
        t->chip_online = 0;
        int c = mpos_emv_complete(&t->emv, NULL);
        (void)c;
    }
    set_state(t, MPOS_TXN_RESULT);
    mpos_txn_result *res = &t->result;
    res->txn_type = t->txn_type;
    res->amount = t->amount;
    res->currency = t->currency;
    copy_str(res->masked_pan, sizeof(res->masked_pan), t->masked_pan);
    res->entry_mode = t->entry_mode;
    res->fallback = t->fallback;
    res->pin_entered = t->has_pin;

    memset(&p, 0, sizeof(p));
    switch (res->outcome) {
    case MPOS_LINK_OUTCOME_APPROVED:
        prompt = MPOS_HAL_PROMPT_APPROVED;
        p.present = MPOS_PROMPT_P_TYPE | MPOS_PROMPT_P_AMOUNT;
        p.txn_type = t->txn_type;
        p.amount = t->amount;
        p.currency = t->currency;
        if (mpos_prompt_pan_is_masked(res->masked_pan)) {
            p.present |= MPOS_PROMPT_P_PAN;
            copy_str(p.masked_pan, sizeof(p.masked_pan), res->masked_pan);
        }
        break;
    case MPOS_LINK_OUTCOME_DECLINED:
        prompt = MPOS_HAL_PROMPT_DECLINED;
        if (result_code_showable(res->response_code)) {
            p.present = MPOS_PROMPT_P_RESULT;
            copy_str(p.result, sizeof(p.result), res->response_code);
        }
        break;
    case MPOS_LINK_OUTCOME_NO_RESPONSE:
        prompt = MPOS_HAL_PROMPT_NO_RESPONSE;
        break;
    case MPOS_LINK_OUTCOME_CARD_ERROR:
        prompt = MPOS_HAL_PROMPT_CARD_ERROR;
        break;
    default:
        res->outcome = MPOS_LINK_OUTCOME_CANCELLED;
        prompt = MPOS_HAL_PROMPT_CANCELLED;
        break;
    }
    rc = show(t, prompt, &p, 0);

    /* Then the host learns it (masked PAN only: the encoder refuses anything else). */
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_RESULT;
    m.u.result.outcome = res->outcome;
    m.u.result.txn_type = res->txn_type;
    m.u.result.amount = res->amount;
    m.u.result.currency = res->currency;
    m.u.result.txn_seq = res->sequence;
    copy_str(m.u.result.response_code, sizeof(m.u.result.response_code), res->response_code);
    copy_str(m.u.result.auth_code, sizeof(m.u.result.auth_code), res->auth_code);
    copy_str(m.u.result.rrn, sizeof(m.u.result.rrn), res->rrn);
    copy_str(m.u.result.masked_pan, sizeof(m.u.result.masked_pan), res->masked_pan);
    send_event(t, &m);

    card_power_off(t);
    if (t->card_inserted) {
        const mpos_hal_card_reader *r = t->env.hal->reader;
        uint64_t start = 0, now = 0;
        int s = show_plain(t, MPOS_HAL_PROMPT_REMOVE_CARD);
        if (s == MPOS_OK && mono_ms(t, &start) == MPOS_OK) {
            while (mono_ms(t, &now) == MPOS_OK && now - start < t->cfg.remove_timeout_ms) {
                enum mpos_card_event ev;
                uint64_t wait = t->cfg.remove_timeout_ms - (now - start);
                if (t->env.host.poll != NULL) {
                    t->env.host.poll(t->env.host.ctx);
                }
                s = r->wait_event(r->ctx, (uint32_t)(wait > t->cfg.poll_ms ? t->cfg.poll_ms : wait),
                                  &ev);
                if (s == 0 && ev == MPOS_CARD_EVENT_REMOVED) {
                    break;
                }
                if (s < 0) {
                    break;
                }
            }
        }
        t->card_inserted = 0;
    }
    wipe_transaction(t);
    set_state(t, MPOS_TXN_IDLE);
    return rc;
}

/* ---- API ------------------------------------------------------------------------------------- */

int mpos_txn_init(mpos_txn *t, const mpos_txn_config *cfg, const mpos_txn_env *env)
{
    mpos_pin_entry_io io;
    const mpos_hal *h;
    int rc;
    if (t == NULL || cfg == NULL || env == NULL || cfg->emv == NULL || env->hal == NULL ||
        env->cc == NULL) {
        return MPOS_ERR_ARG;
    }
    h = env->hal;
    if (h->reader == NULL || h->reader->wait_event == NULL || h->reader->power_on == NULL ||
        h->reader->power_off == NULL || h->reader->exchange == NULL || h->keypad == NULL ||
        h->keypad->read_key == NULL || h->display == NULL || h->display->show == NULL ||
        h->rng == NULL || h->rng->random == NULL || h->clock == NULL || h->clock->now == NULL ||
        h->clock->monotonic_ms == NULL || env->store.next_transaction == NULL ||
        env->store.activation == NULL || env->store.reversal_store == NULL ||
        env->store.reversal_get == NULL || env->store.reversal_done == NULL ||
        env->net.send == NULL || env->net.recv == NULL || env->host.session == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    t->env = *env;
    t->emv_params = *cfg->emv;
    if (t->cfg.confirm_timeout_ms == 0) {
        t->cfg.confirm_timeout_ms = MPOS_TXN_CONFIRM_TIMEOUT_MS;
    }
    if (t->cfg.card_timeout_ms == 0) {
        t->cfg.card_timeout_ms = MPOS_TXN_CARD_TIMEOUT_MS;
    }
    if (t->cfg.online_timeout_ms == 0) {
        t->cfg.online_timeout_ms = MPOS_TXN_ONLINE_TIMEOUT_MS;
    }
    if (t->cfg.remove_timeout_ms == 0) {
        t->cfg.remove_timeout_ms = MPOS_TXN_REMOVE_TIMEOUT_MS;
    }
    if (t->cfg.poll_ms == 0) {
        t->cfg.poll_ms = MPOS_TXN_POLL_MS;
    }
    if (t->cfg.reversal_tries == 0) {
        t->cfg.reversal_tries = MPOS_TXN_REVERSAL_TRIES;
    }
    if (t->cfg.retries == 0) {
        t->cfg.retries = MPOS_TXN_RETRIES;
    } else if (t->cfg.retries == MPOS_TXN_NO_RETRY) {
        t->cfg.retries = 0;
    } else if (t->cfg.retries > MPOS_TXN_MAX_RETRIES) {
        t->cfg.retries = MPOS_TXN_MAX_RETRIES;
    }
    if (t->cfg.retry_delay_ms == 0) {
        t->cfg.retry_delay_ms = MPOS_TXN_RETRY_DELAY_MS;
    }
    if (t->cfg.pin.poll_ms == 0 || t->cfg.pin.poll_ms > t->cfg.poll_ms) {
        t->cfg.pin.poll_ms = t->cfg.poll_ms;
    }
    memset(&io, 0, sizeof(io));
    io.keypad = h->keypad;
    io.display = h->display;
    io.clock = h->clock;
    io.rng = h->rng;
    io.cc = env->cc;
    io.show = pin_show;
    io.abort_check = pin_abort;
    io.hook_ctx = t;
    if ((rc = mpos_pin_entry_init(&t->pin, &t->cfg.pin, &io)) != MPOS_OK) {
        memset(t, 0, sizeof(*t));
        return rc;
    }
    t->emv_env.ctx = t;
    t->emv_env.card_reset = emv_reset;
    t->emv_env.card_io = emv_io;
    t->emv_env.rng = rng_fn;
    t->emv_env.now = emv_now;
    t->emv_env.pin_entry = emv_pin;
    t->state = MPOS_TXN_IDLE;
    return MPOS_OK;
}

static int start_valid(const mpos_link_msg *c)
{
    uint8_t type = c->u.start.txn_type;
    size_t ref_len = 0;
    if (type < MPOS_LINK_TXN_SALE || type > MPOS_LINK_TXN_BALANCE ||
        c->u.start.amount > MPOS_LINK_MAX_AMOUNT ||
        (type == MPOS_LINK_TXN_BALANCE ? c->u.start.amount != 0 : c->u.start.amount == 0) ||
        c->u.start.currency < 1 || c->u.start.currency > 999) {
        return 0;
    }
    if (c->u.start.original_ref[0] != '\0') {
        ref_len = alnum_len(c->u.start.original_ref, sizeof(c->u.start.original_ref),
                            MPOS_LINK_REF_MAX_LEN);
        if (ref_len == 0) {
            return 0;
        }
    }
    return needs_ref(type) ? ref_len > 0 : ref_len == 0;
}

int mpos_txn_command(mpos_txn *t, const mpos_link_msg *cmd)
{
    int rc;
    if (t == NULL || cmd == NULL || t->env.host.session == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cmd->type != MPOS_LINK_CMD_START_TXN && cmd->type != MPOS_LINK_CMD_CANCEL &&
        cmd->type != MPOS_LINK_CMD_SET_HOST_LOCATION) {
        return MPOS_ERR_ARG;
    }
    /* T-LIMIT-1: the state table first, on the state the host sees. */
    rc = mpos_link_check(t->env.host.session->state, cmd->type);
    if (rc != 0) {
        return rc;
    }
    switch (cmd->type) {
    case MPOS_LINK_CMD_START_TXN:
        if (t->state != MPOS_TXN_IDLE) {
            return MPOS_LINK_E_NOT_ALLOWED;
        }
        if (!start_valid(cmd)) {
            return MPOS_LINK_E_MALFORMED;
        }
        /* The order: copied once, here, and read-only until the transaction ends. */
        t->txn_type = cmd->u.start.txn_type;
        t->amount = cmd->u.start.amount;
        t->currency = cmd->u.start.currency;
        copy_str(t->original_ref, sizeof(t->original_ref), cmd->u.start.original_ref);
        t->cancel_requested = 0;
        memset(&t->result, 0, sizeof(t->result));
        set_state(t, MPOS_TXN_CONFIRM);
        return 0;
    case MPOS_LINK_CMD_CANCEL:
        if (t->state != MPOS_TXN_CONFIRM && t->state != MPOS_TXN_CARD && t->state != MPOS_TXN_PIN) {
            return MPOS_LINK_E_NOT_ALLOWED;
        }
        t->cancel_requested = 1;
        return 0;
    default: /* SET_HOST_LOCATION */
        if (t->state != MPOS_TXN_IDLE) {
            return MPOS_LINK_E_NOT_ALLOWED;
        }
        if (!mpos_link_location_valid(&cmd->u.location)) {
            return MPOS_LINK_E_MALFORMED;
        }
        t->location = cmd->u.location;
        t->has_location = 1;
        return 0;
    }
}

int mpos_txn_run(mpos_txn *t, mpos_txn_result *result)
{
    int rc, step;
    if (result != NULL) {
        memset(result, 0, sizeof(*result));
    }
    if (t == NULL) {
        return MPOS_ERR_ARG;
    }
    if (t->state != MPOS_TXN_CONFIRM) {
        return MPOS_ERR_STATE;
    }
    memset(&t->result, 0, sizeof(t->result));
    /* The kernel's copy of the order and of the terminal's identity. */
    rc = load_activation(t);
    if (rc == MPOS_OK) {
        copy_str(t->emv_params.terminal_id, sizeof(t->emv_params.terminal_id), t->terminal_id);
        copy_str(t->emv_params.merchant_id, sizeof(t->emv_params.merchant_id), t->merchant_id);
        t->emv_params.currency[0] = (uint8_t)(t->currency / 100u % 10u); /* '5F2A' n3 */
        t->emv_params.currency[1] = (uint8_t)((t->currency / 10u % 10u) << 4 | t->currency % 10u);
        rc = clock_refresh(t);
    }
    step = rc == MPOS_OK ? confirm(t) : rc;
    if (step == STEP_GO) {
        step = pending_first(t);
    }
    if (step == STEP_GO) {
        step = next_keys(t, &t->keys);
        if (step == MPOS_OK) {
            t->has_keys = 1;
            t->result.sequence = t->keys.sequence;
            step = card_phase(t);
        }
    }
    if (step == STEP_GO) {
        step = online_phase(t);
    }
    rc = step < 0 ? step : MPOS_OK;
    if (step < 0 && t->result.outcome == 0) {
        /* A failure of the terminal: nothing was approved; once the request may have left,
         * its reversal is pending. */
        end(t,
            t->result.reversal_pending ? MPOS_LINK_OUTCOME_NO_RESPONSE
                                       : MPOS_LINK_OUTCOME_CANCELLED,
            MPOS_TXN_R_TERMINAL);
    }
    int f = finish(t);
    if (rc == MPOS_OK) {
        rc = f;
    }
    if (result != NULL) {
        *result = t->result;
    }
    return rc;
}

int mpos_txn_flush_reversal(mpos_txn *t)
{
    int rc;
    if (t == NULL) {
        return MPOS_ERR_ARG;
    }
    if (t->state != MPOS_TXN_IDLE) {
        return MPOS_ERR_STATE;
    }
    enum mpos_link_state before = t->env.host.session->state;
    set_state(t, MPOS_TXN_ONLINE); /* no START_TXN meanwhile */
    rc = flush(t);
    t->state = MPOS_TXN_IDLE;
    int s = mpos_link_session_set_state(t->env.host.session, before);
    (void)s;
    return rc;
}

enum mpos_txn_state mpos_txn_get_state(const mpos_txn *t)
{
    return t != NULL ? t->state : MPOS_TXN_IDLE;
}

void mpos_txn_clear(mpos_txn *t)
{
    if (t == NULL) {
        return;
    }
    keys_clear(&t->keys);
    mpos_emv_clear(&t->emv);
    mpos_pin_entry_clear(&t->pin);
    MPOS_WIPE_CTX(t);
}
