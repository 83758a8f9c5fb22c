/* openmpos terminal core: the key store (keystore.h). */
#include <string.h>

#include "keystore.h"
#include "keystore_record.h"
#include "mpos/util.h"

enum { KS_CLOSED = 0, KS_OPEN = 1, KS_FAILED = 2 };
enum { SLOT_KEYS = 0, SLOT_REVERSAL = 1, SLOT_DEVICE = 2 };

static const struct {
    const char *name;
    uint32_t counter;
    unsigned type;
} slots[MPOS_KEYSTORE_SLOTS] = {
    [SLOT_KEYS] = {MPOS_KEYSTORE_SLOT_KEYS, MPOS_KEYSTORE_COUNTER_KEYS, KS_TYPE_KEYS},
    [SLOT_REVERSAL] = {MPOS_KEYSTORE_SLOT_REVERSAL, MPOS_KEYSTORE_COUNTER_REVERSAL,
                       KS_TYPE_REVERSAL},
    [SLOT_DEVICE] = {MPOS_KEYSTORE_SLOT_DEVICE, MPOS_KEYSTORE_COUNTER_DEVICE, KS_TYPE_DEVICE},
};
_Static_assert(MPOS_KEYSTORE_COUNTER_DEVICE < MPOS_HAL_COUNTERS, "key store counters");

/* ---- body layouts ---------------------------------------------------------------------- */

/* "keys": scheme (1) | AES working-key type or MKWK cipher (1) | 0 (2) | sequence (4) |
 * history length (1) | 0 (3) | history: MPOS_KEYSTORE_IK_HISTORY entries of scheme (1),
 * length (1), ID (10, zero padded); unused entries zero | payload by scheme:
 *   DUKPT AES   the exported terminal state (MPOS_DUKPT_AES_STATE_LEN)
 *   DUKPT TDES  the exported terminal state (MPOS_DUKPT_TDES_STATE_LEN)
 *   MKWK        TMK (16) | PIK length (1) | PIK (16) | MAK length (1) | MAK (16) |
 *               TDK length (1) | TDK (16)   (keys zero padded; length 0 = absent)
 *   none        nothing */
#define HIST_ENTRY_LEN (MPOS_KEYSTORE_IK_ID_MAX + 2)
enum {
    KB_SCHEME = 0,
    KB_PARAM = 1,
    KB_SEQUENCE = 4,
    KB_HIST_LEN = 8,
    KB_HIST = 12,
    KB_PAYLOAD = KB_HIST + MPOS_KEYSTORE_IK_HISTORY * HIST_ENTRY_LEN,
    KB_MKWK_LEN = MPOS_MKWK_TMK_LEN + 3 * (1 + MPOS_MKWK_MAX_KEY_LEN)
};

/* "reversal": present (1) | when 1: sequence (4) | type (1) | amount (8) | currency (2) |
 * entry mode (1) | reason (1) | attempts (1) | KSN length (1) | KSN (12, zero padded) |
 * date and time (14) | masked PAN (19, zero padded). */
enum {
    RB_SEQUENCE = 1,
    RB_TYPE = 5,
    RB_AMOUNT = 6,
    RB_CURRENCY = 14,
    RB_ENTRY = 16,
    RB_REASON = 17,
    RB_ATTEMPTS = 18,
    RB_KSN_LEN = 19,
    RB_KSN = 20,
    RB_DATETIME = RB_KSN + MPOS_KEYSTORE_KSN_MAX,
    RB_PAN = RB_DATETIME + MPOS_KEYSTORE_DATETIME_LEN,
    RB_LEN = RB_PAN + MPOS_KEYSTORE_PAN_MAX
};

/* "device": flags (1) | 0 (3) | private key (32) | public key (65) | certificate length (2)
 * | certificate (MPOS_KEYSTORE_CERT_MAX) | CA length (2) | CA | parameter anchor length (2) |
 * parameter anchor | merchant ID (15) | terminal ID (8). Absent fields and padding zero. */
#define DEV_KEY       0x01u
#define DEV_CERT      0x02u
#define DEV_TRUST     0x04u
#define DEV_ACTIVATED 0x08u
#define DEV_FLAGS     (DEV_KEY | DEV_CERT | DEV_TRUST | DEV_ACTIVATED)
enum {
    DB_FLAGS = 0,
    DB_PRIV = 4,
    DB_PUB = DB_PRIV + MPOS_EC_P256_PRIV_LEN,
    DB_CERT = DB_PUB + MPOS_EC_P256_PUB_LEN, /* length (2) then bytes */
    DB_CA = DB_CERT + 2 + MPOS_KEYSTORE_CERT_MAX,
    DB_PARAM = DB_CA + 2 + MPOS_KEYSTORE_CERT_MAX,
    DB_MID = DB_PARAM + 2 + MPOS_KEYSTORE_CERT_MAX,
    DB_TID = DB_MID + MPOS_KEYSTORE_MID_LEN,
    DB_LEN = DB_TID + MPOS_KEYSTORE_TID_LEN
};
_Static_assert(KB_PAYLOAD + MPOS_DUKPT_AES_STATE_LEN <= KS_BODY_MAX, "keys record");
_Static_assert(DB_LEN <= KS_BODY_MAX, "device record");

static int all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

/* Length of the NUL-terminated string s, looking at most max + 1 bytes; max + 1 when it is
 * longer than max. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;
    while (n <= max && s[n] != '\0') {
        n++;
    }
    return n;
}

/* 1 if the len bytes at s are printable ASCII (ans fields of ISO 8583). */
static int printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E) {
            return 0;
        }
    }
    return 1;
}

static int digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* A HAL result as this module returns it: a positive status that is not expected here is a
 * device failure. */
static int hal_rc(int rc)
{
    return rc > 0 ? MPOS_ERR_IO : rc;
}

/* ---- state ------------------------------------------------------------------------------ */

/* The outcome of a write is unknown: forget everything until storage tells again. */
static void fail(mpos_keystore *ks)
{
    MPOS_WIPE_CTX(ks);
    ks->state = KS_FAILED;
}

static int is_open(const mpos_keystore *ks)
{
    return ks != NULL && ks->state == KS_OPEN;
}

static void clear_keys(mpos_keystore *ks)
{
    mpos_cleanse(&ks->k, sizeof(ks->k));
    ks->scheme = MPOS_KEYSTORE_NONE;
    ks->aes_wk_type = (enum mpos_dukpt_aes_key_type)0;
}

/* The ID of the loaded initial key as a history entry (scheme, length, ID). */
static void current_ik_entry(const mpos_keystore *ks, uint8_t entry[HIST_ENTRY_LEN])
{
    memset(entry, 0, HIST_ENTRY_LEN);
    if (ks->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        entry[0] = MPOS_KEYSTORE_DUKPT_AES;
        entry[1] = MPOS_DUKPT_AES_IKID_LEN;
        memcpy(entry + 2, ks->k.aes.ikid, MPOS_DUKPT_AES_IKID_LEN);
    } else if (ks->scheme == MPOS_KEYSTORE_DUKPT_TDES) {
        entry[0] = MPOS_KEYSTORE_DUKPT_TDES;
        entry[1] = MPOS_DUKPT_TDES_KSN_LEN;
        memcpy(entry + 2, ks->k.tdes.iksn, MPOS_DUKPT_TDES_KSN_LEN);
    }
}

static int history_has(const mpos_keystore *ks, const uint8_t entry[HIST_ENTRY_LEN])
{
    for (size_t i = 0; i < ks->history_len; i++) {
        if (memcmp(ks->history[i], entry, HIST_ENTRY_LEN) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Appends the loaded initial key's ID to the history (the oldest drops out when full). */
static void history_add_current(mpos_keystore *ks)
{
    uint8_t entry[HIST_ENTRY_LEN];
    current_ik_entry(ks, entry);
    if (entry[0] == 0 || history_has(ks, entry)) {
        return;
    }
    if (ks->history_len == MPOS_KEYSTORE_IK_HISTORY) {
        memmove(ks->history[0], ks->history[1],
                (MPOS_KEYSTORE_IK_HISTORY - 1) * sizeof(ks->history[0]));
        ks->history_len--;
    }
    memcpy(ks->history[ks->history_len++], entry, HIST_ENTRY_LEN);
}

/* ---- serialising ------------------------------------------------------------------------ */

static int keys_body(const mpos_keystore *ks, uint8_t *b, size_t *len)
{
    int rc = MPOS_OK;
    memset(b, 0, KB_PAYLOAD);
    b[KB_SCHEME] = (uint8_t)ks->scheme;
    mpos_store_be32(b + KB_SEQUENCE, ks->sequence);
    b[KB_HIST_LEN] = (uint8_t)ks->history_len;
    memcpy(b + KB_HIST, ks->history, ks->history_len * HIST_ENTRY_LEN);
    *len = KB_PAYLOAD;
    switch (ks->scheme) {
    case MPOS_KEYSTORE_DUKPT_AES:
        b[KB_PARAM] = (uint8_t)ks->aes_wk_type;
        rc = mpos_dukpt_aes_terminal_export(&ks->k.aes, b + KB_PAYLOAD);
        *len += MPOS_DUKPT_AES_STATE_LEN;
        break;
    case MPOS_KEYSTORE_DUKPT_TDES:
        rc = mpos_dukpt_tdes_terminal_export(&ks->k.tdes, b + KB_PAYLOAD);
        *len += MPOS_DUKPT_TDES_STATE_LEN;
        break;
    case MPOS_KEYSTORE_MKWK: {
        const mpos_keystore_mkwk *m = &ks->k.mkwk;
        uint8_t *p = b + KB_PAYLOAD;
        b[KB_PARAM] = (uint8_t)m->cipher;
        memset(p, 0, KB_MKWK_LEN);
        memcpy(p, m->tmk, MPOS_MKWK_TMK_LEN);
        p += MPOS_MKWK_TMK_LEN;
        const uint8_t *keys[3] = {m->pik, m->mak, m->tdk};
        const size_t lens[3] = {m->pik_len, m->mak_len, m->tdk_len};
        for (int i = 0; i < 3; i++) {
            p[0] = (uint8_t)lens[i];
            memcpy(p + 1, keys[i], lens[i]);
            p += 1 + MPOS_MKWK_MAX_KEY_LEN;
        }
        *len += KB_MKWK_LEN;
        break;
    }
    default:
        break;
    }
    return rc;
}

static size_t reversal_body(const mpos_keystore *ks, uint8_t *b)
{
    const mpos_keystore_reversal *r = &ks->reversal;
    if (!ks->reversal_present) {
        b[0] = 0;
        return 1;
    }
    memset(b, 0, RB_LEN);
    b[0] = 1;
    mpos_store_be32(b + RB_SEQUENCE, r->sequence);
    b[RB_TYPE] = r->txn_type;
    ks_store_be64(b + RB_AMOUNT, r->amount);
    mpos_store_be16(b + RB_CURRENCY, r->currency);
    b[RB_ENTRY] = r->entry_mode;
    b[RB_REASON] = r->reason;
    b[RB_ATTEMPTS] = r->attempts;
    b[RB_KSN_LEN] = (uint8_t)r->ksn_len;
    memcpy(b + RB_KSN, r->ksn, r->ksn_len);
    memcpy(b + RB_DATETIME, r->datetime, MPOS_KEYSTORE_DATETIME_LEN);
    memcpy(b + RB_PAN, r->masked_pan, bounded_len(r->masked_pan, MPOS_KEYSTORE_PAN_MAX));
    return RB_LEN;
}

static size_t device_body(const mpos_keystore *ks, uint8_t *b)
{
    const mpos_keystore_device *d = &ks->dev;
    memset(b, 0, DB_LEN);
    b[DB_FLAGS] = (uint8_t)d->flags;
    memcpy(b + DB_PRIV, d->priv, MPOS_EC_P256_PRIV_LEN);
    memcpy(b + DB_PUB, d->pub, MPOS_EC_P256_PUB_LEN);
    mpos_store_be16(b + DB_CERT, (uint16_t)d->cert_len);
    memcpy(b + DB_CERT + 2, d->cert, d->cert_len);
    mpos_store_be16(b + DB_CA, (uint16_t)d->ca_len);
    memcpy(b + DB_CA + 2, d->ca, d->ca_len);
    mpos_store_be16(b + DB_PARAM, (uint16_t)d->param_len);
    memcpy(b + DB_PARAM + 2, d->param, d->param_len);
    memcpy(b + DB_MID, d->mid, bounded_len(d->mid, MPOS_KEYSTORE_MID_LEN));
    memcpy(b + DB_TID, d->tid, bounded_len(d->tid, MPOS_KEYSTORE_TID_LEN));
    return DB_LEN;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static int parse_keys(mpos_keystore *ks, const uint8_t *b, size_t len)
{
    if (len < KB_PAYLOAD || b[2] != 0 || b[3] != 0 || !all_zero(b + KB_HIST_LEN + 1, 3) ||
        b[KB_HIST_LEN] > MPOS_KEYSTORE_IK_HISTORY) {
        return MPOS_ERR_FORMAT;
    }
    size_t hist = b[KB_HIST_LEN];
    for (size_t i = 0; i < MPOS_KEYSTORE_IK_HISTORY; i++) {
        const uint8_t *e = b + KB_HIST + i * HIST_ENTRY_LEN;
        int ok = i >= hist
                     ? all_zero(e, HIST_ENTRY_LEN)
                     : (e[0] == MPOS_KEYSTORE_DUKPT_AES && e[1] == MPOS_DUKPT_AES_IKID_LEN) ||
                           (e[0] == MPOS_KEYSTORE_DUKPT_TDES && e[1] == MPOS_DUKPT_TDES_KSN_LEN);
        if (!ok || !all_zero(e + 2 + e[1], MPOS_KEYSTORE_IK_ID_MAX - (size_t)e[1])) {
            return MPOS_ERR_FORMAT;
        }
    }
    memcpy(ks->history, b + KB_HIST, sizeof(ks->history));
    ks->history_len = hist;
    ks->sequence = mpos_load_be32(b + KB_SEQUENCE);
    const uint8_t *p = b + KB_PAYLOAD;
    size_t plen = len - KB_PAYLOAD;
    int rc = MPOS_ERR_FORMAT;
    switch (b[KB_SCHEME]) {
    case MPOS_KEYSTORE_NONE:
        if (plen == 0 && b[KB_PARAM] == 0) {
            rc = MPOS_OK;
        }
        break;
    case MPOS_KEYSTORE_DUKPT_AES: {
        enum mpos_dukpt_aes_key_type wk = (enum mpos_dukpt_aes_key_type)b[KB_PARAM];
        if (plen != MPOS_DUKPT_AES_STATE_LEN ||
            (wk != MPOS_DUKPT_AES_KEY_AES128 && wk != MPOS_DUKPT_AES_KEY_AES192 &&
             wk != MPOS_DUKPT_AES_KEY_AES256) ||
            mpos_dukpt_aes_terminal_import(&ks->k.aes, p, plen) != MPOS_OK ||
            mpos_dukpt_aes_key_len(wk) > ks->k.aes.key_len) {
            break;
        }
        ks->aes_wk_type = wk;
        rc = MPOS_OK;
        break;
    }
    case MPOS_KEYSTORE_DUKPT_TDES:
        if (plen == MPOS_DUKPT_TDES_STATE_LEN && b[KB_PARAM] == 0 &&
            mpos_dukpt_tdes_terminal_import(&ks->k.tdes, p, plen) == MPOS_OK) {
            rc = MPOS_OK;
        }
        break;
    case MPOS_KEYSTORE_MKWK: {
        mpos_keystore_mkwk *m = &ks->k.mkwk;
        enum mpos_cipher cipher = (enum mpos_cipher)b[KB_PARAM];
        if (plen != KB_MKWK_LEN || (cipher != MPOS_CIPHER_TDES && cipher != MPOS_CIPHER_SM4) ||
            all_zero(p, MPOS_MKWK_TMK_LEN)) {
            break;
        }
        m->cipher = cipher;
        memcpy(m->tmk, p, MPOS_MKWK_TMK_LEN);
        uint8_t *keys[3] = {m->pik, m->mak, m->tdk};
        size_t *lens[3] = {&m->pik_len, &m->mak_len, &m->tdk_len};
        const uint8_t *q = p + MPOS_MKWK_TMK_LEN;
        rc = MPOS_OK;
        for (int i = 0; i < 3; i++, q += 1 + MPOS_MKWK_MAX_KEY_LEN) {
            size_t kl = q[0];
            if ((kl != 0 && !mpos_mkwk_key_len_valid(cipher, kl)) ||
                !all_zero(q + 1 + kl, MPOS_MKWK_MAX_KEY_LEN - kl)) {
                rc = MPOS_ERR_FORMAT;
                break;
            }
            memcpy(keys[i], q + 1, kl);
            *lens[i] = kl;
        }
        /* PIK and MAK come together from one sign-on. */
        if (rc == MPOS_OK && (m->pik_len == 0) != (m->mak_len == 0)) {
            rc = MPOS_ERR_FORMAT;
        }
        break;
    }
    default:
        break;
    }
    if (rc == MPOS_OK) {
        ks->scheme = (enum mpos_keystore_scheme)b[KB_SCHEME];
    } else {
        clear_keys(ks);
    }
    return rc;
}

static int reversal_valid(const mpos_keystore_reversal *r)
{
    static const uint8_t zero[MPOS_KEYSTORE_KSN_MAX];
    size_t pan_len = bounded_len(r->masked_pan, MPOS_KEYSTORE_PAN_MAX);
    return r->sequence != 0 && r->txn_type >= 1 && r->txn_type <= 4 &&
           r->amount <= MPOS_PROMPT_MAX_AMOUNT && r->currency >= 1 && r->currency <= 999 &&
           r->reason >= MPOS_REVERSAL_NO_RESPONSE && r->reason <= MPOS_REVERSAL_CANCELLED &&
           (r->ksn_len == 0 || r->ksn_len == MPOS_DUKPT_TDES_KSN_LEN ||
            r->ksn_len == MPOS_DUKPT_AES_KSN_LEN) &&
           memcmp(r->ksn + r->ksn_len, zero, MPOS_KEYSTORE_KSN_MAX - r->ksn_len) == 0 &&
           bounded_len(r->datetime, MPOS_KEYSTORE_DATETIME_LEN) == MPOS_KEYSTORE_DATETIME_LEN &&
           digits(r->datetime, MPOS_KEYSTORE_DATETIME_LEN) &&
           (pan_len == 0 || mpos_prompt_pan_is_masked(r->masked_pan));
}

static int parse_reversal(mpos_keystore *ks, const uint8_t *b, size_t len)
{
    mpos_keystore_reversal *r = &ks->reversal;
    memset(r, 0, sizeof(*r));
    ks->reversal_present = 0;
    if (len == 1 && b[0] == 0) {
        return MPOS_OK;
    }
    if (len != RB_LEN || b[0] != 1 || b[RB_KSN_LEN] > MPOS_KEYSTORE_KSN_MAX) {
        return MPOS_ERR_FORMAT;
    }
    r->sequence = mpos_load_be32(b + RB_SEQUENCE);
    r->txn_type = b[RB_TYPE];
    r->amount = ks_load_be64(b + RB_AMOUNT);
    r->currency = mpos_load_be16(b + RB_CURRENCY);
    r->entry_mode = b[RB_ENTRY];
    r->reason = b[RB_REASON];
    r->attempts = b[RB_ATTEMPTS];
    r->ksn_len = b[RB_KSN_LEN];
    memcpy(r->ksn, b + RB_KSN, MPOS_KEYSTORE_KSN_MAX);
    memcpy(r->datetime, b + RB_DATETIME, MPOS_KEYSTORE_DATETIME_LEN);
    memcpy(r->masked_pan, b + RB_PAN, MPOS_KEYSTORE_PAN_MAX);
    size_t pan_len = bounded_len(r->masked_pan, MPOS_KEYSTORE_PAN_MAX);
    if (!reversal_valid(r) || !all_zero(b + RB_PAN + pan_len, MPOS_KEYSTORE_PAN_MAX - pan_len)) {
        memset(r, 0, sizeof(*r));
        return MPOS_ERR_FORMAT;
    }
    ks->reversal_present = 1;
    return MPOS_OK;
}

/* A length-prefixed field of the device body into dst (capacity MPOS_KEYSTORE_CERT_MAX). */
static int device_field(const uint8_t *f, uint8_t *dst, size_t *len)
{
    size_t n = mpos_load_be16(f);
    if (n > MPOS_KEYSTORE_CERT_MAX || !all_zero(f + 2 + n, MPOS_KEYSTORE_CERT_MAX - n)) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(dst, f + 2, n);
    *len = n;
    return MPOS_OK;
}

static int parse_device(mpos_keystore *ks, const uint8_t *b, size_t len)
{
    mpos_keystore_device *d = &ks->dev;
    uint8_t pub[MPOS_EC_P256_PUB_LEN];
    int rc = MPOS_ERR_FORMAT;
    memset(d, 0, sizeof(*d));
    if (len != DB_LEN || (b[DB_FLAGS] & ~DEV_FLAGS) != 0 || !all_zero(b + 1, 3)) {
        goto exit;
    }
    d->flags = b[DB_FLAGS];
    if (device_field(b + DB_CERT, d->cert, &d->cert_len) != MPOS_OK ||
        device_field(b + DB_CA, d->ca, &d->ca_len) != MPOS_OK ||
        device_field(b + DB_PARAM, d->param, &d->param_len) != MPOS_OK) {
        goto exit;
    }
    /* Each flag says exactly whether its fields are there. */
    if (((d->flags & DEV_CERT) != 0) != (d->cert_len != 0) ||
        ((d->flags & DEV_TRUST) != 0) != (d->ca_len != 0) ||
        (d->param_len != 0 && (d->flags & DEV_TRUST) == 0) ||
        ((d->flags & DEV_CERT) && !(d->flags & DEV_KEY))) {
        goto exit;
    }
    if (d->flags & DEV_KEY) {
        memcpy(d->priv, b + DB_PRIV, MPOS_EC_P256_PRIV_LEN);
        memcpy(d->pub, b + DB_PUB, MPOS_EC_P256_PUB_LEN);
        /* The pair must still be one (FIPS 186-5 A.2: Q = d * G). */
        if (mpos_ec_p256_public(d->priv, pub) != MPOS_OK ||
            !mpos_ct_equal(pub, d->pub, MPOS_EC_P256_PUB_LEN)) {
            goto exit;
        }
    } else if (!all_zero(b + DB_PRIV, MPOS_EC_P256_PRIV_LEN + MPOS_EC_P256_PUB_LEN)) {
        goto exit;
    }
    if (d->flags & DEV_ACTIVATED) {
        memcpy(d->mid, b + DB_MID, MPOS_KEYSTORE_MID_LEN);
        memcpy(d->tid, b + DB_TID, MPOS_KEYSTORE_TID_LEN);
        if (!printable(d->mid, MPOS_KEYSTORE_MID_LEN) ||
            !printable(d->tid, MPOS_KEYSTORE_TID_LEN)) {
            goto exit;
        }
    } else if (!all_zero(b + DB_MID, MPOS_KEYSTORE_MID_LEN + MPOS_KEYSTORE_TID_LEN)) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(pub);
    if (rc != MPOS_OK) {
        MPOS_WIPE_CTX(d);
    }
    return rc;
}

/* ---- storage ---------------------------------------------------------------------------- */

static int derive_seal_keys(mpos_keystore *ks)
{
    const mpos_hal_storage *st = ks->storage;
    int rc = st->derive_key(st->ctx, (const uint8_t *)KS_LABEL_ENC, sizeof(KS_LABEL_ENC) - 1,
                            ks->enc_key, sizeof(ks->enc_key));
    if (rc == MPOS_OK) {
        rc = st->derive_key(st->ctx, (const uint8_t *)KS_LABEL_MAC, sizeof(KS_LABEL_MAC) - 1,
                            ks->mac_key, sizeof(ks->mac_key));
    }
    return hal_rc(rc);
}

/* Reads, authenticates and parses slot s into ks. Rollback protection: a record carries the
 * generation its slot's counter had once it was written, so it must be the counter's value;
 * one above is a write whose counter increment was cut off, completed here. */
static int load_slot(mpos_keystore *ks, unsigned s)
{
    const mpos_hal_storage *st = ks->storage;
    uint64_t counter = 0, gen = 0, value = 0;
    size_t len = 0, body_len = 0;
    const uint8_t *body = ks->io + KS_HDR_LEN;
    int rc = st->counter_read(st->ctx, slots[s].counter, &counter);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = st->read(st->ctx, slots[s].name, ks->io, sizeof(ks->io), &len);
    if (rc == MPOS_HAL_NOT_FOUND) {
        /* A slot never written is empty; one whose counter moved was deleted. */
        rc = counter == 0 ? MPOS_OK : MPOS_ERR_ROLLBACK;
        goto exit;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_keystore_record_open(ks->cc, ks->enc_key, ks->mac_key, slots[s].type, ks->io, len,
                                   &gen, &body_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_ROLLBACK;
    if (gen < counter || gen - counter > 1) {
        goto exit;
    }
    switch (s) {
    case SLOT_KEYS:
        rc = parse_keys(ks, body, body_len);
        break;
    case SLOT_REVERSAL:
        rc = parse_reversal(ks, body, body_len);
        break;
    default:
        rc = parse_device(ks, body, body_len);
        break;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (gen == counter + 1) {
        rc = st->counter_increment(st->ctx, slots[s].counter, &value);
        if (rc == MPOS_OK && value != gen) {
            rc = MPOS_ERR_ROLLBACK;
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    ks->generation[s] = gen;
exit:
    MPOS_WIPE_BUFFER(ks->io);
    return hal_rc(rc);
}

/* Writes slot s from ks: the record with the next generation, durably, then the counter.
 * Any failure leaves the stored outcome unknown: the key store fails (fail()). */
static int persist(mpos_keystore *ks, unsigned s)
{
    const mpos_hal_storage *st = ks->storage;
    uint8_t iv[KS_IV_LEN];
    uint8_t *body = ks->io + KS_HDR_LEN;
    uint64_t gen = ks->generation[s] + 1, value = 0;
    size_t body_len = 0, len = 0;
    int rc = MPOS_OK;
    switch (s) {
    case SLOT_KEYS:
        rc = keys_body(ks, body, &body_len);
        break;
    case SLOT_REVERSAL:
        body_len = reversal_body(ks, body);
        break;
    default:
        body_len = device_body(ks, body);
        break;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = ks->rng->random(ks->rng->ctx, iv, sizeof(iv));
    if (rc != MPOS_OK) {
        rc = rc < 0 ? rc : MPOS_ERR_RNG;
        goto exit;
    }
    rc = mpos_keystore_record_seal(ks->cc, ks->enc_key, ks->mac_key, iv, slots[s].type, gen, ks->io,
                                   sizeof(ks->io), body_len, &len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = st->write(st->ctx, slots[s].name, ks->io, len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = st->counter_increment(st->ctx, slots[s].counter, &value);
    if (rc == MPOS_OK && value != gen) {
        rc = MPOS_ERR_ROLLBACK;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    ks->generation[s] = gen;
exit:
    MPOS_WIPE_BUFFER(ks->io);
    if (rc != MPOS_OK) {
        rc = hal_rc(rc);
        fail(ks);
    }
    return rc;
}

static int storage_valid(const mpos_hal_storage *st, const mpos_hal_rng *rng,
                         const mpos_crypto_ctx *cc)
{
    return st != NULL && rng != NULL && cc != NULL && st->read != NULL && st->write != NULL &&
           st->counter_read != NULL && st->counter_increment != NULL && st->derive_key != NULL &&
           rng->random != NULL;
}

/* ---- opening ---------------------------------------------------------------------------- */

int mpos_keystore_open(mpos_keystore *ks, const mpos_hal_storage *storage, const mpos_hal_rng *rng,
                       mpos_crypto_ctx *cc)
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL) {
        goto exit;
    }
    MPOS_WIPE_CTX(ks);
    if (!storage_valid(storage, rng, cc)) {
        goto exit;
    }
    ks->storage = storage;
    ks->rng = rng;
    ks->cc = cc;
    rc = derive_seal_keys(ks);
    for (unsigned s = 0; s < MPOS_KEYSTORE_SLOTS && rc == MPOS_OK; s++) {
        rc = load_slot(ks, s);
    }
    if (rc == MPOS_OK) {
        ks->state = KS_OPEN;
    }
exit:
    if (rc != MPOS_OK && ks != NULL) {
        MPOS_WIPE_CTX(ks);
    }
    return rc;
}

void mpos_keystore_close(mpos_keystore *ks)
{
    if (ks != NULL) {
        MPOS_WIPE_CTX(ks);
    }
}

int mpos_keystore_factory_reset(mpos_keystore *ks, const mpos_hal_storage *storage,
                                const mpos_hal_rng *rng, mpos_crypto_ctx *cc)
{
    int rc = MPOS_ERR_ARG;
    uint32_t sequence = 0;
    if (ks == NULL) {
        goto exit;
    }
    MPOS_WIPE_CTX(ks);
    if (!storage_valid(storage, rng, cc)) {
        goto exit;
    }
    ks->storage = storage;
    ks->rng = rng;
    ks->cc = cc;
    rc = derive_seal_keys(ks);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Keep the sequence number and the retired IDs when the keys record still opens. */
    if (load_slot(ks, SLOT_KEYS) == MPOS_OK) {
        history_add_current(ks);
        sequence = ks->sequence;
    } else {
        ks->history_len = 0;
        MPOS_WIPE_BUFFER(ks->history);
    }
    clear_keys(ks);
    ks->sequence = sequence;
    ks->reversal_present = 0;
    MPOS_WIPE_CTX(&ks->reversal);
    MPOS_WIPE_CTX(&ks->dev);
    /* Each slot gets generation counter + 1, above any record that could come back. */
    for (unsigned s = 0; s < MPOS_KEYSTORE_SLOTS; s++) {
        uint64_t counter = 0;
        rc = hal_rc(storage->counter_read(storage->ctx, slots[s].counter, &counter));
        if (rc != MPOS_OK) {
            goto exit;
        }
        ks->generation[s] = counter;
        rc = persist(ks, s);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    /* Open what was written: the store now reads back as empty. */
    rc = mpos_keystore_open(ks, storage, rng, cc);
exit:
    if (rc != MPOS_OK && ks != NULL) {
        MPOS_WIPE_CTX(ks);
    }
    return rc;
}

int mpos_keystore_info_get(const mpos_keystore *ks, mpos_keystore_info *info)
{
    if (info == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(info, 0, sizeof(*info));
    if (!is_open(ks)) {
        return MPOS_ERR_STATE;
    }
    uint8_t entry[HIST_ENTRY_LEN];
    info->scheme = ks->scheme;
    info->sequence = ks->sequence;
    if (ks->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        info->next_counter = ks->k.aes.next_counter;
    } else if (ks->scheme == MPOS_KEYSTORE_DUKPT_TDES) {
        info->next_counter = ks->k.tdes.next_counter;
    } else if (ks->scheme == MPOS_KEYSTORE_MKWK) {
        info->working_keys = ks->k.mkwk.pik_len != 0;
    }
    current_ik_entry(ks, entry);
    info->ik_id_len = entry[1];
    memcpy(info->ik_id, entry + 2, MPOS_KEYSTORE_IK_ID_MAX);
    info->has_device_key = (ks->dev.flags & DEV_KEY) != 0;
    info->has_certificate = (ks->dev.flags & DEV_CERT) != 0;
    info->has_trust = (ks->dev.flags & DEV_TRUST) != 0;
    info->activated = (ks->dev.flags & DEV_ACTIVATED) != 0;
    info->reversal_pending = ks->reversal_present;
    return MPOS_OK;
}

/* ---- transaction keys ------------------------------------------------------------------- */

int mpos_keystore_import_dukpt_aes(mpos_keystore *ks, const uint8_t *ik, size_t ik_len,
                                   const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                                   enum mpos_dukpt_aes_key_type wk_type)
{
    uint8_t entry[HIST_ENTRY_LEN] = {MPOS_KEYSTORE_DUKPT_AES, MPOS_DUKPT_AES_IKID_LEN};
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || ik == NULL || ikid == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme != MPOS_KEYSTORE_NONE) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if ((ik_len != 16 && ik_len != 24 && ik_len != 32) ||
        (wk_type != MPOS_DUKPT_AES_KEY_AES128 && wk_type != MPOS_DUKPT_AES_KEY_AES192 &&
         wk_type != MPOS_DUKPT_AES_KEY_AES256) ||
        mpos_dukpt_aes_key_len(wk_type) > ik_len) {
        goto exit;
    }
    /* T-UNIQ-1: an initial key ID this terminal used before would repeat its KSNs. */
    memcpy(entry + 2, ikid, MPOS_DUKPT_AES_IKID_LEN);
    rc = MPOS_ERR_KSN;
    if (history_has(ks, entry)) {
        goto exit;
    }
    rc = mpos_dukpt_aes_terminal_load(&ks->k.aes, ks->cc, ik, ik_len, ikid);
    if (rc != MPOS_OK) {
        clear_keys(ks);
        goto exit;
    }
    ks->scheme = MPOS_KEYSTORE_DUKPT_AES;
    ks->aes_wk_type = wk_type;
    rc = persist(ks, SLOT_KEYS);
exit:
    return rc;
}

int mpos_keystore_import_dukpt_tdes(mpos_keystore *ks, const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                    const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN])
{
    uint8_t entry[HIST_ENTRY_LEN] = {MPOS_KEYSTORE_DUKPT_TDES, MPOS_DUKPT_TDES_KSN_LEN};
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || ipek == NULL || iksn == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme != MPOS_KEYSTORE_NONE) {
        goto exit;
    }
    /* X9.24-1-2009 A.2: the initial KSN has the 21 counter bits zero. */
    memcpy(entry + 2, iksn, MPOS_DUKPT_TDES_KSN_LEN);
    entry[2 + 7] &= 0xE0;
    entry[2 + 8] = 0;
    entry[2 + 9] = 0;
    rc = MPOS_ERR_KSN;
    if (history_has(ks, entry)) {
        goto exit;
    }
    rc = mpos_dukpt_tdes_terminal_load(&ks->k.tdes, ks->cc, ipek, iksn);
    if (rc != MPOS_OK) {
        clear_keys(ks);
        goto exit;
    }
    ks->scheme = MPOS_KEYSTORE_DUKPT_TDES;
    rc = persist(ks, SLOT_KEYS);
exit:
    return rc;
}

int mpos_keystore_import_tmk(mpos_keystore *ks, enum mpos_cipher cipher,
                             const uint8_t tmk[MPOS_MKWK_TMK_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || tmk == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme != MPOS_KEYSTORE_NONE) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if ((cipher != MPOS_CIPHER_TDES && cipher != MPOS_CIPHER_SM4) ||
        all_zero(tmk, MPOS_MKWK_TMK_LEN)) {
        goto exit;
    }
    clear_keys(ks);
    ks->k.mkwk.cipher = cipher;
    memcpy(ks->k.mkwk.tmk, tmk, MPOS_MKWK_TMK_LEN);
    ks->scheme = MPOS_KEYSTORE_MKWK;
    rc = persist(ks, SLOT_KEYS);
exit:
    return rc;
}

int mpos_keystore_install_working_keys(mpos_keystore *ks, const mpos_keystore_wrapped_key *pik,
                                       const mpos_keystore_wrapped_key *mak,
                                       const mpos_keystore_wrapped_key *tdk)
{
    uint8_t keys[3][MPOS_MKWK_MAX_KEY_LEN];
    const mpos_keystore_wrapped_key *in[3] = {pik, mak, tdk};
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || pik == NULL || mak == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme != MPOS_KEYSTORE_MKWK) {
        goto exit;
    }
    mpos_keystore_mkwk *m = &ks->k.mkwk;
    /* All three unwrap and verify before anything changes. */
    for (int i = 0; i < 3; i++) {
        if (in[i] == NULL) {
            continue;
        }
        rc = MPOS_ERR_KEY;
        if (in[i]->enc == NULL || in[i]->kcv == NULL || in[i]->key_len > MPOS_MKWK_MAX_KEY_LEN) {
            goto exit;
        }
        rc = mpos_mkwk_unwrap(ks->cc, m->cipher, m->tmk, MPOS_MKWK_TMK_LEN, in[i]->enc,
                              in[i]->key_len, in[i]->kcv, in[i]->kcv_len, keys[i]);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    uint8_t *dst[3] = {m->pik, m->mak, m->tdk};
    size_t *lens[3] = {&m->pik_len, &m->mak_len, &m->tdk_len};
    for (int i = 0; i < 3; i++) {
        mpos_cleanse(dst[i], MPOS_MKWK_MAX_KEY_LEN);
        *lens[i] = in[i] != NULL ? in[i]->key_len : 0;
        memcpy(dst[i], keys[i], *lens[i]);
    }
    rc = persist(ks, SLOT_KEYS);
exit:
    MPOS_WIPE_BUFFER(keys);
    return rc;
}

int mpos_keystore_retire_keys(mpos_keystore *ks)
{
    int rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme == MPOS_KEYSTORE_NONE) {
        goto exit;
    }
    history_add_current(ks);
    clear_keys(ks);
    rc = persist(ks, SLOT_KEYS);
exit:
    return rc;
}

void mpos_keystore_txn_clear(mpos_keystore_txn *txn)
{
    if (txn != NULL) {
        MPOS_WIPE_CTX(txn);
    }
}

/* X9.24-3-2017 6.3.2 / 6.6: the working keys of the open AES DUKPT transaction. */
static int aes_working_keys(mpos_keystore *ks, mpos_keystore_txn *txn)
{
    mpos_dukpt_aes_terminal *t = &ks->k.aes;
    enum mpos_dukpt_aes_key_type wk = ks->aes_wk_type;
    int rc =
        mpos_dukpt_aes_terminal_working_key(t, ks->cc, MPOS_DUKPT_AES_USAGE_PIN, wk, txn->pin_key);
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_aes_terminal_working_key(t, ks->cc, MPOS_DUKPT_AES_USAGE_MAC_GEN, wk,
                                                 txn->mac_key[MPOS_KEYSTORE_REQUEST]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_aes_terminal_working_key(t, ks->cc, MPOS_DUKPT_AES_USAGE_MAC_VERIFY, wk,
                                                 txn->mac_key[MPOS_KEYSTORE_RESPONSE]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_aes_terminal_working_key(t, ks->cc, MPOS_DUKPT_AES_USAGE_DATA_ENC, wk,
                                                 txn->data_key[MPOS_KEYSTORE_REQUEST]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_aes_terminal_working_key(t, ks->cc, MPOS_DUKPT_AES_USAGE_DATA_DEC, wk,
                                                 txn->data_key[MPOS_KEYSTORE_RESPONSE]);
    }
    txn->cipher = MPOS_CIPHER_AES;
    txn->pin_key_len = txn->mac_key_len = txn->data_key_len = mpos_dukpt_aes_key_len(wk);
    txn->ksn_len = MPOS_DUKPT_AES_KSN_LEN;
    txn->counter = mpos_load_be32(txn->ksn + MPOS_DUKPT_AES_IKID_LEN);
    return rc;
}

/* X9.24-1-2009 A.4: the variants of the open TDES DUKPT transaction's key. */
static int tdes_working_keys(mpos_keystore *ks, mpos_keystore_txn *txn)
{
    mpos_dukpt_tdes_terminal *t = &ks->k.tdes;
    int rc =
        mpos_dukpt_tdes_terminal_working_key(t, ks->cc, MPOS_DUKPT_TDES_USAGE_PIN, txn->pin_key);
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_tdes_terminal_working_key(t, ks->cc, MPOS_DUKPT_TDES_USAGE_MAC_REQ,
                                                  txn->mac_key[MPOS_KEYSTORE_REQUEST]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_tdes_terminal_working_key(t, ks->cc, MPOS_DUKPT_TDES_USAGE_MAC_RESP,
                                                  txn->mac_key[MPOS_KEYSTORE_RESPONSE]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_tdes_terminal_working_key(t, ks->cc, MPOS_DUKPT_TDES_USAGE_DATA_REQ,
                                                  txn->data_key[MPOS_KEYSTORE_REQUEST]);
    }
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_tdes_terminal_working_key(t, ks->cc, MPOS_DUKPT_TDES_USAGE_DATA_RESP,
                                                  txn->data_key[MPOS_KEYSTORE_RESPONSE]);
    }
    txn->cipher = MPOS_CIPHER_TDES;
    txn->pin_key_len = txn->mac_key_len = txn->data_key_len = MPOS_DUKPT_TDES_KEY_LEN;
    txn->ksn_len = MPOS_DUKPT_TDES_KSN_LEN;
    txn->counter = (mpos_load_be32(txn->ksn + 6) & MPOS_DUKPT_TDES_COUNTER_MASK);
    return rc;
}

int mpos_keystore_next_transaction(mpos_keystore *ks, mpos_keystore_txn *txn)
{
    int rc = MPOS_ERR_ARG;
    if (txn != NULL) {
        memset(txn, 0, sizeof(*txn));
    }
    if (ks == NULL || txn == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || ks->scheme == MPOS_KEYSTORE_NONE ||
        (ks->scheme == MPOS_KEYSTORE_MKWK && ks->k.mkwk.pik_len == 0)) {
        goto exit;
    }
    rc = MPOS_ERR_EXHAUSTED;
    if (ks->sequence == UINT32_MAX) {
        goto exit;
    }
    /* 1. The next counter: its register is taken into the transaction's key and erased,
     * the registers of the counters after it derived (X9.24-3-2017 6.5.3, X9.24-1-2009
     * A.2). The transaction's key exists only in RAM. */
    if (ks->scheme == MPOS_KEYSTORE_DUKPT_AES) {
        rc = mpos_dukpt_aes_terminal_next(&ks->k.aes, ks->cc, txn->ksn);
    } else if (ks->scheme == MPOS_KEYSTORE_DUKPT_TDES) {
        rc = mpos_dukpt_tdes_terminal_next(&ks->k.tdes, ks->cc, txn->ksn);
    } else {
        rc = MPOS_OK;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    ks->sequence++;
    /* 2. The state after this transaction, durable before any key of it goes out. A
     * failure fails the key store (wiping the transaction's key with everything else). */
    rc = persist(ks, SLOT_KEYS);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 3. The working keys; then the transaction's key is erased. */
    txn->scheme = ks->scheme;
    txn->sequence = ks->sequence;
    switch (ks->scheme) {
    case MPOS_KEYSTORE_DUKPT_AES:
        rc = aes_working_keys(ks, txn);
        mpos_dukpt_aes_terminal_done(&ks->k.aes);
        break;
    case MPOS_KEYSTORE_DUKPT_TDES:
        rc = tdes_working_keys(ks, txn);
        mpos_dukpt_tdes_terminal_done(&ks->k.tdes);
        break;
    default: {
        const mpos_keystore_mkwk *m = &ks->k.mkwk;
        txn->cipher = m->cipher;
        memcpy(txn->pin_key, m->pik, m->pik_len);
        txn->pin_key_len = m->pik_len;
        for (int d = 0; d < 2; d++) {
            memcpy(txn->mac_key[d], m->mak, m->mak_len);
            memcpy(txn->data_key[d], m->tdk, m->tdk_len);
        }
        txn->mac_key_len = m->mak_len;
        txn->data_key_len = m->tdk_len;
        break;
    }
    }
exit:
    if (rc != MPOS_OK && txn != NULL) {
        mpos_keystore_txn_clear(txn);
    }
    return rc;
}

/* ---- reversal --------------------------------------------------------------------------- */

int mpos_keystore_reversal_store(mpos_keystore *ks, const mpos_keystore_reversal *r)
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || r == NULL || !reversal_valid(r)) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || (ks->reversal_present && ks->reversal.sequence != r->sequence)) {
        goto exit;
    }
    /* Copied field by field: nothing after a string's NUL reaches storage. */
    mpos_keystore_reversal *d = &ks->reversal;
    memset(d, 0, sizeof(*d));
    d->sequence = r->sequence;
    d->txn_type = r->txn_type;
    d->amount = r->amount;
    d->currency = r->currency;
    d->entry_mode = r->entry_mode;
    d->reason = r->reason;
    d->attempts = r->attempts;
    d->ksn_len = r->ksn_len;
    memcpy(d->ksn, r->ksn, r->ksn_len);
    memcpy(d->datetime, r->datetime, MPOS_KEYSTORE_DATETIME_LEN);
    memcpy(d->masked_pan, r->masked_pan, bounded_len(r->masked_pan, MPOS_KEYSTORE_PAN_MAX));
    ks->reversal_present = 1;
    rc = persist(ks, SLOT_REVERSAL);
exit:
    return rc;
}

int mpos_keystore_reversal_get(const mpos_keystore *ks, mpos_keystore_reversal *r)
{
    if (r == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(r, 0, sizeof(*r));
    if (!is_open(ks)) {
        return MPOS_ERR_STATE;
    }
    if (!ks->reversal_present) {
        return MPOS_HAL_NOT_FOUND;
    }
    *r = ks->reversal;
    return MPOS_OK;
}

int mpos_keystore_reversal_done(mpos_keystore *ks, uint32_t sequence)
{
    int rc = MPOS_ERR_STATE;
    if (!is_open(ks) || !ks->reversal_present || ks->reversal.sequence != sequence) {
        goto exit;
    }
    ks->reversal_present = 0;
    memset(&ks->reversal, 0, sizeof(ks->reversal));
    rc = persist(ks, SLOT_REVERSAL);
exit:
    return rc;
}

/* ---- device identity -------------------------------------------------------------------- */

int mpos_keystore_generate_device_key(mpos_keystore *ks, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || pub == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || (ks->dev.flags & DEV_KEY)) {
        goto exit;
    }
    /* FIPS 186-5 A.2.2 key pair generation inside the key store. */
    rc = mpos_ec_p256_generate(ks->dev.priv, ks->dev.pub);
    if (rc != MPOS_OK) {
        MPOS_WIPE_BUFFER(ks->dev.priv);
        MPOS_WIPE_BUFFER(ks->dev.pub);
        goto exit;
    }
    ks->dev.flags |= DEV_KEY;
    rc = persist(ks, SLOT_DEVICE);
    if (rc == MPOS_OK) {
        memcpy(pub, ks->dev.pub, MPOS_EC_P256_PUB_LEN);
    }
exit:
    if (rc != MPOS_OK && pub != NULL) {
        memset(pub, 0, MPOS_EC_P256_PUB_LEN);
    }
    return rc;
}

int mpos_keystore_device_public(const mpos_keystore *ks, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    if (pub == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(pub, 0, MPOS_EC_P256_PUB_LEN);
    if (!is_open(ks) || !(ks->dev.flags & DEV_KEY)) {
        return MPOS_ERR_STATE;
    }
    memcpy(pub, ks->dev.pub, MPOS_EC_P256_PUB_LEN);
    return MPOS_OK;
}

/* 1 if needle (n bytes) occurs in hay (len bytes). */
static int contains(const uint8_t *hay, size_t len, const uint8_t *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

int mpos_keystore_set_certificate(mpos_keystore *ks, const uint8_t *cert, size_t len)
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || cert == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || !(ks->dev.flags & DEV_KEY)) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (len == 0 || len > MPOS_KEYSTORE_CERT_MAX) {
        goto exit;
    }
    /* The subjectPublicKey BIT STRING of a P-256 certificate holds the point as is. */
    rc = MPOS_ERR_KEY;
    if (!contains(cert, len, ks->dev.pub, MPOS_EC_P256_PUB_LEN)) {
        goto exit;
    }
    memset(ks->dev.cert, 0, sizeof(ks->dev.cert));
    memcpy(ks->dev.cert, cert, len);
    ks->dev.cert_len = len;
    ks->dev.flags |= DEV_CERT;
    rc = persist(ks, SLOT_DEVICE);
exit:
    return rc;
}

int mpos_keystore_certificate(const mpos_keystore *ks, const uint8_t **cert, size_t *len)
{
    if (cert == NULL || len == NULL) {
        return MPOS_ERR_ARG;
    }
    *cert = NULL;
    *len = 0;
    if (!is_open(ks) || !(ks->dev.flags & DEV_CERT)) {
        return MPOS_ERR_STATE;
    }
    *cert = ks->dev.cert;
    *len = ks->dev.cert_len;
    return MPOS_OK;
}

int mpos_keystore_set_trust(mpos_keystore *ks, const uint8_t *ca, size_t ca_len,
                            const uint8_t *param, size_t param_len)
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || ca == NULL || (param == NULL && param_len != 0)) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks)) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (ca_len == 0 || ca_len > MPOS_KEYSTORE_CERT_MAX || param_len > MPOS_KEYSTORE_CERT_MAX) {
        goto exit;
    }
    mpos_keystore_device *d = &ks->dev;
    memset(d->ca, 0, sizeof(d->ca));
    memset(d->param, 0, sizeof(d->param));
    memcpy(d->ca, ca, ca_len);
    d->ca_len = ca_len;
    if (param_len != 0) {
        memcpy(d->param, param, param_len);
    }
    d->param_len = param_len;
    d->flags |= DEV_TRUST;
    rc = persist(ks, SLOT_DEVICE);
exit:
    return rc;
}

int mpos_keystore_trust(const mpos_keystore *ks, const uint8_t **ca, size_t *ca_len,
                        const uint8_t **param, size_t *param_len)
{
    if (ca == NULL || ca_len == NULL || param == NULL || param_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *ca = *param = NULL;
    *ca_len = *param_len = 0;
    if (!is_open(ks) || !(ks->dev.flags & DEV_TRUST)) {
        return MPOS_ERR_STATE;
    }
    *ca = ks->dev.ca;
    *ca_len = ks->dev.ca_len;
    if (ks->dev.param_len != 0) {
        *param = ks->dev.param;
        *param_len = ks->dev.param_len;
    }
    return MPOS_OK;
}

int mpos_keystore_sign(mpos_keystore *ks, const uint8_t *msg, size_t len,
                       uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || sig == NULL || (msg == NULL && len != 0)) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || !(ks->dev.flags & DEV_KEY)) {
        goto exit;
    }
    /* FIPS 186-5 6.4.1. */
    rc = mpos_ecdsa_p256_sign(ks->dev.priv, msg, len, sig);
exit:
    if (rc != MPOS_OK && sig != NULL) {
        memset(sig, 0, MPOS_ECDSA_P256_SIG_LEN);
    }
    return rc;
}

_Static_assert(MPOS_HAL_SIG_LEN == MPOS_ECDSA_P256_SIG_LEN, "TLS signature length");

int mpos_keystore_tls_sign(void *ks, const uint8_t *msg, size_t len, uint8_t sig[MPOS_HAL_SIG_LEN])
{
    return mpos_keystore_sign((mpos_keystore *)ks, msg, len, sig);
}

int mpos_keystore_ecdh(mpos_keystore *ks, const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                       uint8_t shared[MPOS_ECDH_P256_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || peer_pub == NULL || shared == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || !(ks->dev.flags & DEV_KEY)) {
        goto exit;
    }
    /* SEC 1 v2 3.3.1 (the peer point is validated by the facade). */
    rc = mpos_ecdh_p256(ks->dev.priv, peer_pub, shared);
exit:
    if (rc != MPOS_OK && shared != NULL) {
        mpos_cleanse(shared, MPOS_ECDH_P256_LEN);
    }
    return rc;
}

/* ---- activation ------------------------------------------------------------------------- */

int mpos_keystore_set_activation(mpos_keystore *ks, const char *merchant_id,
                                 const char *terminal_id)
{
    int rc = MPOS_ERR_ARG;
    if (ks == NULL || merchant_id == NULL || terminal_id == NULL ||
        bounded_len(merchant_id, MPOS_KEYSTORE_MID_LEN) != MPOS_KEYSTORE_MID_LEN ||
        bounded_len(terminal_id, MPOS_KEYSTORE_TID_LEN) != MPOS_KEYSTORE_TID_LEN ||
        !printable(merchant_id, MPOS_KEYSTORE_MID_LEN) ||
        !printable(terminal_id, MPOS_KEYSTORE_TID_LEN)) {
        goto exit;
    }
    rc = MPOS_ERR_STATE;
    if (!is_open(ks) || (ks->dev.flags & DEV_ACTIVATED)) {
        goto exit;
    }
    memcpy(ks->dev.mid, merchant_id, MPOS_KEYSTORE_MID_LEN + 1);
    memcpy(ks->dev.tid, terminal_id, MPOS_KEYSTORE_TID_LEN + 1);
    ks->dev.flags |= DEV_ACTIVATED;
    rc = persist(ks, SLOT_DEVICE);
exit:
    return rc;
}

int mpos_keystore_activation(const mpos_keystore *ks, char merchant_id[MPOS_KEYSTORE_MID_LEN + 1],
                             char terminal_id[MPOS_KEYSTORE_TID_LEN + 1])
{
    if (merchant_id == NULL || terminal_id == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(merchant_id, 0, MPOS_KEYSTORE_MID_LEN + 1);
    memset(terminal_id, 0, MPOS_KEYSTORE_TID_LEN + 1);
    if (!is_open(ks) || !(ks->dev.flags & DEV_ACTIVATED)) {
        return MPOS_ERR_STATE;
    }
    memcpy(merchant_id, ks->dev.mid, MPOS_KEYSTORE_MID_LEN);
    memcpy(terminal_id, ks->dev.tid, MPOS_KEYSTORE_TID_LEN);
    return MPOS_OK;
}

int mpos_keystore_deactivate(mpos_keystore *ks)
{
    int rc = MPOS_ERR_STATE;
    if (!is_open(ks) || !(ks->dev.flags & DEV_ACTIVATED)) {
        goto exit;
    }
    memset(ks->dev.mid, 0, sizeof(ks->dev.mid));
    memset(ks->dev.tid, 0, sizeof(ks->dev.tid));
    ks->dev.flags &= ~DEV_ACTIVATED;
    rc = persist(ks, SLOT_DEVICE);
exit:
    return rc;
}
