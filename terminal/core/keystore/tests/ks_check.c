/* Test helper: DUKPT invariants of the key store (ks_check.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keystore_record.h"
#include "ks_check.h"
#include "mpos/util.h"

static int fail(ks_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->failed = 1;
    return -1;
}

void ks_check_init(ks_check *c, mpos_crypto_ctx *cc, enum mpos_keystore_scheme scheme,
                   const uint8_t *bdk, size_t bdk_len, const uint8_t *ik_id,
                   enum mpos_dukpt_aes_key_type wk_type)
{
    memset(c, 0, sizeof(*c));
    c->cc = cc;
    c->scheme = scheme;
    memcpy(c->bdk, bdk, bdk_len);
    c->bdk_len = bdk_len;
    memcpy(c->ik_id, ik_id,
           scheme == MPOS_KEYSTORE_DUKPT_AES ? MPOS_DUKPT_AES_IKID_LEN : MPOS_DUKPT_TDES_KSN_LEN);
    c->wk_type = wk_type;
}

size_t ks_check_initial_key(ks_check *c, uint8_t ik[32])
{
    if (c->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        if (mpos_dukpt_aes_initial_key(c->cc, c->bdk, c->bdk_len, c->ik_id, ik) != MPOS_OK) {
            return 0;
        }
        return c->bdk_len;
    }
    if (mpos_dukpt_tdes_ipek(c->cc, c->bdk, c->bdk_len, c->ik_id, ik) != MPOS_OK) {
        return 0;
    }
    return MPOS_DUKPT_TDES_KEY_LEN;
}

static size_t key_len(const ks_check *c)
{
    return c->scheme == MPOS_KEYSTORE_DUKPT_AES ? c->bdk_len : MPOS_DUKPT_TDES_KEY_LEN;
}

static size_t ksn_of(const ks_check *c, uint32_t counter, uint8_t ksn[12])
{
    memset(ksn, 0, 12);
    if (c->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        memcpy(ksn, c->ik_id, MPOS_DUKPT_AES_IKID_LEN);
        mpos_store_be32(ksn + MPOS_DUKPT_AES_IKID_LEN, counter);
        return MPOS_DUKPT_AES_KSN_LEN;
    }
    memcpy(ksn, c->ik_id, MPOS_DUKPT_TDES_KSN_LEN);
    ksn[7] = (uint8_t)((ksn[7] & 0xE0) | ((counter >> 16) & 0x1F));
    ksn[8] = (uint8_t)(counter >> 8);
    ksn[9] = (uint8_t)counter;
    return MPOS_DUKPT_TDES_KSN_LEN;
}

/* The key a register holds for counter (AES: intermediate derivation key; TDES: future
 * key, i.e. the transaction key of that counter). */
static int host_key(ks_check *c, uint32_t counter, uint8_t key[32])
{
    uint8_t ksn[12];
    memset(key, 0, 32);
    ksn_of(c, counter, ksn);
    if (c->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        return mpos_dukpt_aes_derivation_key(c->cc, c->bdk, c->bdk_len, ksn, key);
    }
    return mpos_dukpt_tdes_transaction_key(c->cc, c->bdk, c->bdk_len, ksn, key);
}

int ks_check_use(ks_check *c, const mpos_keystore_txn *txn)
{
    uint8_t ksn[12], key[32];
    if (txn->scheme != c->scheme) {
        return fail(c, "transaction of scheme %d, expected %d", txn->scheme, c->scheme);
    }
    uint32_t ctr = txn->counter;
    size_t ksn_len = ksn_of(c, ctr, ksn);
    if (txn->ksn_len != ksn_len || memcmp(txn->ksn, ksn, ksn_len) != 0) {
        return fail(c, "KSN does not match counter %08X", ctr);
    }
    for (size_t i = 0; i < c->n_used; i++) {
        if (c->used[i] == ctr) {
            return fail(c, "KSN counter %08X used twice", ctr);
        }
    }
    if (ctr <= c->max_used) {
        return fail(c, "counter %08X not above %08X: moved back", ctr, c->max_used);
    }
    if (txn->sequence <= c->last_sequence) {
        return fail(c, "sequence %u not above %u", txn->sequence, c->last_sequence);
    }
    if (c->n_used == KS_CHECK_MAX_USED) {
        return fail(c, "too many transactions for the checker");
    }
    /* The working keys are the host's (request MAC and data, response MAC, PIN). */
    if (c->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        static const enum mpos_dukpt_aes_usage usage[4] = {
            MPOS_DUKPT_AES_USAGE_PIN, MPOS_DUKPT_AES_USAGE_MAC_GEN, MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
            MPOS_DUKPT_AES_USAGE_DATA_ENC};
        const uint8_t *got[4] = {txn->pin_key, txn->mac_key[0], txn->mac_key[1], txn->data_key[0]};
        size_t wl = mpos_dukpt_aes_key_len(c->wk_type);
        for (int i = 0; i < 4; i++) {
            if (mpos_dukpt_aes_working_key(c->cc, c->bdk, c->bdk_len, ksn, usage[i], c->wk_type,
                                           key) != MPOS_OK ||
                memcmp(key, got[i], wl) != 0) {
                return fail(c, "AES working key %d of counter %08X is not the host's", i, ctr);
            }
        }
    } else {
        static const enum mpos_dukpt_tdes_usage usage[4] = {
            MPOS_DUKPT_TDES_USAGE_PIN, MPOS_DUKPT_TDES_USAGE_MAC_REQ,
            MPOS_DUKPT_TDES_USAGE_MAC_RESP, MPOS_DUKPT_TDES_USAGE_DATA_REQ};
        const uint8_t *got[4] = {txn->pin_key, txn->mac_key[0], txn->mac_key[1], txn->data_key[0]};
        for (int i = 0; i < 4; i++) {
            if (mpos_dukpt_tdes_working_key(c->cc, c->bdk, c->bdk_len, ksn, usage[i], key) !=
                    MPOS_OK ||
                memcmp(key, got[i], MPOS_DUKPT_TDES_KEY_LEN) != 0) {
                return fail(c, "TDES working key %d of counter %06X is not the host's", i, ctr);
            }
        }
    }
    if (host_key(c, ctr, c->used_key[c->n_used]) != MPOS_OK) {
        return fail(c, "host derivation failed");
    }
    c->used[c->n_used++] = ctr;
    c->max_used = ctr;
    c->last_sequence = txn->sequence;
    return 0;
}

/* The registers live when next is the next counter (X9.24-3 6.5 / X9.24-1 A.2 state). */
static uint32_t live_registers(uint32_t next, uint32_t mask)
{
    uint32_t low = next & (0u - next);
    return next == 0 ? 0 : (~next | low) & ~(low - 1u) & mask;
}

static uint32_t register_counter(uint32_t next, unsigned p)
{
    uint32_t at_or_below = (uint32_t)((UINT64_C(2) << p) - 1u);
    return (next & ~at_or_below) | ((uint32_t)1 << p);
}

int ks_check_state(ks_check *c, const void *terminal, const uint8_t *raw, size_t raw_len)
{
    uint8_t key[32];
    const int aes = c->scheme == MPOS_KEYSTORE_DUKPT_AES;
    const mpos_dukpt_aes_terminal *ta = terminal;
    const mpos_dukpt_tdes_terminal *tt = terminal;
    uint32_t next = aes ? ta->next_counter : tt->next_counter;
    unsigned nregs = aes ? MPOS_DUKPT_AES_REGISTERS : MPOS_DUKPT_TDES_REGISTERS;
    uint32_t mask = aes ? 0xFFFFFFFFu : MPOS_DUKPT_TDES_COUNTER_MASK;
    size_t kl = key_len(c);
    c->states_checked++;
    /* Forward only: above every used counter, and never below a state stored earlier. */
    if (next != 0 && next <= c->max_used) {
        return fail(c, "stored next counter %08X not above used %08X: a KSN would repeat", next,
                    c->max_used);
    }
    if (next != 0 && next < c->last_stored_next) {
        return fail(c, "stored next counter %08X below an earlier stored %08X", next,
                    c->last_stored_next);
    }
    if (next != 0) {
        c->last_stored_next = next;
    }
    uint32_t live = live_registers(next, mask);
    for (unsigned p = 0; p < nregs; p++) {
        const uint8_t *reg = aes ? ta->registers[p] : tt->registers[p];
        if (!((live >> p) & 1u)) {
            static const uint8_t zero[32];
            if (memcmp(reg, zero, kl) != 0) {
                return fail(c, "register %u should be erased (next %08X)", p, next);
            }
            continue;
        }
        uint32_t rc_ = register_counter(next, p);
        if (rc_ < next) {
            return fail(c, "register %u holds counter %08X below next %08X", p, rc_, next);
        }
        if (host_key(c, rc_, key) != MPOS_OK || memcmp(key, reg, kl) != 0) {
            return fail(c, "register %u is not the key of counter %08X", p, rc_);
        }
        c->registers_checked++;
    }
    /* No used key anywhere in what is stored (checked on every 16-byte window). */
    for (size_t i = 0; i < c->n_used; i++) {
        for (size_t off = 0; off + 16 <= raw_len; off++) {
            if (memcmp(raw + off, c->used_key[i], 16) == 0) {
                return fail(c, "the key of used counter %08X is stored at offset %zu", c->used[i],
                            off);
            }
        }
    }
    return 0;
}

int ks_check_stored(ks_check *c, const mpos_hal_storage *st)
{
    static uint8_t buf[MPOS_HAL_SLOT_MAX];
    uint8_t enc[KS_KEY_LEN], mac[KS_KEY_LEN];
    size_t len = 0, body_len = 0;
    uint64_t gen = 0;
    int r = st->read(st->ctx, MPOS_KEYSTORE_SLOT_KEYS, buf, sizeof(buf), &len);
    if (r == MPOS_HAL_NOT_FOUND) {
        return 0;
    }
    if (r != MPOS_OK) {
        return fail(c, "keys slot unreadable: %d", r);
    }
    if (st->derive_key(st->ctx, (const uint8_t *)KS_LABEL_ENC, sizeof(KS_LABEL_ENC) - 1, enc,
                       sizeof(enc)) != MPOS_OK ||
        st->derive_key(st->ctx, (const uint8_t *)KS_LABEL_MAC, sizeof(KS_LABEL_MAC) - 1, mac,
                       sizeof(mac)) != MPOS_OK ||
        mpos_keystore_record_open(c->cc, enc, mac, KS_TYPE_KEYS, buf, len, &gen, &body_len) !=
            MPOS_OK) {
        return fail(c, "keys record does not open");
    }
    const uint8_t *body = buf + KS_HDR_LEN;
    const size_t payload = 12 + MPOS_KEYSTORE_IK_HISTORY * (MPOS_KEYSTORE_IK_ID_MAX + 2);
    if (body[0] != c->scheme) {
        return 0; /* no DUKPT state (none yet, or retired) */
    }
    if (c->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        static mpos_dukpt_aes_terminal t;
        if (body_len != payload + MPOS_DUKPT_AES_STATE_LEN ||
            mpos_dukpt_aes_terminal_import(&t, body + payload, MPOS_DUKPT_AES_STATE_LEN) !=
                MPOS_OK) {
            return fail(c, "stored AES state does not import");
        }
        /* Another initial key's state is not this checker's to judge. */
        r = memcmp(t.ikid, c->ik_id, MPOS_DUKPT_AES_IKID_LEN) != 0
                ? 0
                : ks_check_state(c, &t, body, body_len);
        mpos_dukpt_aes_terminal_clear(&t);
    } else {
        static mpos_dukpt_tdes_terminal t;
        if (body_len != payload + MPOS_DUKPT_TDES_STATE_LEN ||
            mpos_dukpt_tdes_terminal_import(&t, body + payload, MPOS_DUKPT_TDES_STATE_LEN) !=
                MPOS_OK) {
            return fail(c, "stored TDES state does not import");
        }
        uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN];
        memcpy(iksn, c->ik_id, sizeof(iksn));
        iksn[7] &= 0xE0;
        iksn[8] = iksn[9] = 0;
        r = memcmp(t.iksn, iksn, sizeof(iksn)) != 0 ? 0 : ks_check_state(c, &t, body, body_len);
        mpos_dukpt_tdes_terminal_clear(&t);
    }
    return r;
}
