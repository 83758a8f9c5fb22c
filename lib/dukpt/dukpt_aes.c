/* openmpos: AES DUKPT, ANSI X9.24-3-2017.
 *
 * Every key is derived by one or two AES encryptions of a 16-byte derivation data block
 * under the key above it (6.3.1-6.3.3), through mpos_aes_encrypt_block() (the facade's AES-NI
 * path). A host derivation from the BDK at a counter with 16 one-bits is 18 AES operations:
 * the derivation data is filled once per call and then only its usage and counter fields
 * change; the keys of the chain alternate between two buffers, so no key is copied.
 */
#include <string.h>

#include "dukpt_internal.h"
#include "mpos/dukpt.h"
#include "mpos/util.h"

#define DD_LEN     16 /* derivation data: one AES block */
#define ALL_COUNTS 0xFFFFFFFFu

/* X9.24-3-2017 6.3.2 (Tables 2 and 3): key usage indicators of the derivation keys. */
#define USAGE_KEY_DERIVATION 0x8000u
#define USAGE_INITIAL_KEY    0x8001u

/* X9.24-3-2017 6.2.1 and 6.3.2: algorithm indicator and length in bits of each key type. */
static const struct {
    uint16_t algorithm;
    uint16_t bits;
} key_types[] = {
    [MPOS_DUKPT_AES_KEY_2TDEA] = {0x0000, 128},   [MPOS_DUKPT_AES_KEY_3TDEA] = {0x0001, 192},
    [MPOS_DUKPT_AES_KEY_AES128] = {0x0002, 128},  [MPOS_DUKPT_AES_KEY_AES192] = {0x0003, 192},
    [MPOS_DUKPT_AES_KEY_AES256] = {0x0004, 256},  [MPOS_DUKPT_AES_KEY_HMAC128] = {0x0005, 128},
    [MPOS_DUKPT_AES_KEY_HMAC192] = {0x0005, 192}, [MPOS_DUKPT_AES_KEY_HMAC256] = {0x0005, 256},
};

size_t mpos_dukpt_aes_key_len(enum mpos_dukpt_aes_key_type type)
{
    if (type < MPOS_DUKPT_AES_KEY_2TDEA || type > MPOS_DUKPT_AES_KEY_HMAC256) {
        return 0;
    }
    return key_types[type].bits / 8u;
}

/* X9.24-3-2017 6.3.1: the initial key and the intermediate derivation keys are AES keys of
 * the BDK's length. 0 for a length AES does not take. */
static enum mpos_dukpt_aes_key_type derivation_type(size_t key_len)
{
    switch (key_len) {
    case 16:
        return MPOS_DUKPT_AES_KEY_AES128;
    case 24:
        return MPOS_DUKPT_AES_KEY_AES192;
    case 32:
        return MPOS_DUKPT_AES_KEY_AES256;
    default:
        return (enum mpos_dukpt_aes_key_type)0;
    }
}

static int usage_known(enum mpos_dukpt_aes_usage usage)
{
    switch (usage) {
    case MPOS_DUKPT_AES_USAGE_KEK:
    case MPOS_DUKPT_AES_USAGE_PIN:
    case MPOS_DUKPT_AES_USAGE_MAC_GEN:
    case MPOS_DUKPT_AES_USAGE_MAC_VERIFY:
    case MPOS_DUKPT_AES_USAGE_MAC_BOTH:
    case MPOS_DUKPT_AES_USAGE_DATA_ENC:
    case MPOS_DUKPT_AES_USAGE_DATA_DEC:
    case MPOS_DUKPT_AES_USAGE_DATA_BOTH:
        return 1;
    default:
        return 0;
    }
}

/* X9.24-3-2017 6.1: a terminal uses only counters of 1 to 16 one-bits. 6.5.2: the key
 * encryption (update) key belongs to the counter FFFFFFFF, which no transaction uses. */
static int counter_allowed(uint32_t counter, int kek)
{
    if (kek) {
        return counter == MPOS_DUKPT_AES_UPDATE_COUNTER;
    }
    return counter != 0 && mpos_popcount32(counter) <= MPOS_DUKPT_AES_MAX_ONE_BITS;
}

/* Checks usage and type of a working key derived from a key_len-byte derivation key. */
static int working_key_allowed(enum mpos_dukpt_aes_usage usage, enum mpos_dukpt_aes_key_type type,
                               size_t key_len, uint32_t counter)
{
    size_t wk_len = mpos_dukpt_aes_key_len(type);
    if (!usage_known(usage) || wk_len == 0) {
        return MPOS_ERR_ARG;
    }
    /* X9.24-3-2017 6.1.3: no working key stronger than the key it is derived from. */
    if (wk_len > key_len) {
        return MPOS_ERR_KEY;
    }
    return counter_allowed(counter, usage == MPOS_DUKPT_AES_USAGE_KEK) ? MPOS_OK : MPOS_ERR_KSN;
}

/* X9.24-3-2017 6.3.3: version 01, key block counter, key usage indicator, algorithm
 * indicator, length in bits; bytes 8..15 (initial key ID, or derivation ID and counter) are
 * the caller's. */
static void dd_header(uint8_t dd[DD_LEN], uint16_t usage, enum mpos_dukpt_aes_key_type type)
{
    dd[0] = 0x01;
    dd[1] = 0x01;
    mpos_store_be16(dd + 2, usage);
    mpos_store_be16(dd + 4, key_types[type].algorithm);
    mpos_store_be16(dd + 6, key_types[type].bits);
}

/* X9.24-3-2017 6.3.3: working and intermediate keys take the rightmost 4 bytes of the initial
 * key ID (the derivation ID) and the counter. */
static void dd_ksn(uint8_t dd[DD_LEN], const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                   uint32_t counter)
{
    memcpy(dd + 8, ikid + 4, 4);
    mpos_store_be32(dd + 12, counter);
}

/* X9.24-3-2017 6.3.1: the derived key is the leftmost out_len bytes of AES(key, dd) with key
 * block counter 1, then (keys over 128 bits) AES(key, dd) with key block counter 2. out must
 * not overlap key. */
static int kdf(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len, uint8_t dd[DD_LEN],
               uint8_t *out, size_t out_len)
{
    dd[1] = 0x01;
    int rc = mpos_aes_encrypt_block(cc, key, key_len, dd, out);
    if (rc == MPOS_OK && out_len == 2 * MPOS_AES_BLOCK_LEN) {
        dd[1] = 0x02;
        rc = mpos_aes_encrypt_block(cc, key, key_len, dd, out + MPOS_AES_BLOCK_LEN);
    } else if (rc == MPOS_OK && out_len > MPOS_AES_BLOCK_LEN) {
        uint8_t second[MPOS_AES_BLOCK_LEN]; /* 192-bit keys take half of it */
        dd[1] = 0x02;
        rc = mpos_aes_encrypt_block(cc, key, key_len, dd, second);
        memcpy(out + MPOS_AES_BLOCK_LEN, second, out_len - MPOS_AES_BLOCK_LEN);
        MPOS_WIPE_BUFFER(second);
    }
    return rc;
}

/* X9.24-3-2017 6.4: from the key in keys[*at], derives the intermediate derivation key of
 * `counter`: for each one-bit of the counter, most significant first, the key of the
 * counter made of the bits so far is derived from the key of the bits before it. The keys
 * alternate between keys[0] and keys[1]; *at names the result. dd: usage, type and
 * derivation ID already set. */
static int walk(mpos_crypto_ctx *cc, uint8_t keys[2][MPOS_DUKPT_AES_MAX_KEY_LEN], size_t key_len,
                uint8_t dd[DD_LEN], uint32_t counter, unsigned *at)
{
    uint32_t so_far = 0;
    int rc = MPOS_OK;
    for (uint32_t bit = 0x80000000u; bit != 0 && rc == MPOS_OK; bit >>= 1) {
        if ((counter & bit) != 0) {
            so_far |= bit;
            mpos_store_be32(dd + 12, so_far);
            rc = kdf(cc, keys[*at], key_len, dd, keys[*at ^ 1u], key_len);
            *at ^= 1u;
        }
    }
    return rc;
}

/* Host derivation from the BDK: initial key, the walk to the KSN's counter, and with a
 * usage (not 0) the working key. key: key_len bytes. Arguments are checked by the caller. */
static int host_derive(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                       const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN], uint16_t usage,
                       enum mpos_dukpt_aes_key_type type, uint8_t *key, size_t key_len)
{
    uint8_t keys[2][MPOS_DUKPT_AES_MAX_KEY_LEN];
    uint8_t dd[DD_LEN];
    unsigned at = 0;
    enum mpos_dukpt_aes_key_type dtype = derivation_type(bdk_len);
    /* X9.24-3-2017 6.3.3: the initial key takes usage 8001 and the whole initial key ID. */
    dd_header(dd, USAGE_INITIAL_KEY, dtype);
    memcpy(dd + 8, ksn, MPOS_DUKPT_AES_IKID_LEN);
    int rc = kdf(cc, bdk, bdk_len, dd, keys[0], bdk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    mpos_store_be16(dd + 2, USAGE_KEY_DERIVATION);
    memcpy(dd + 8, ksn + 4, 4);
    rc = walk(cc, keys, bdk_len, dd, mpos_load_be32(ksn + MPOS_DUKPT_AES_IKID_LEN), &at);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (usage == 0) {
        memcpy(key, keys[at], bdk_len);
    } else {
        /* X9.24-3-2017 6.3.3: the working key's usage and type; derivation ID and counter
         * stay, the counter field already holding the whole counter. */
        dd_header(dd, usage, type);
        rc = kdf(cc, keys[at], bdk_len, dd, key, key_len);
    }
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(key, key_len);
    }
    MPOS_WIPE_BUFFER(keys);
    return rc;
}

int mpos_dukpt_aes_initial_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                               const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN], uint8_t *ik)
{
    uint8_t dd[DD_LEN];
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || bdk == NULL || ikid == NULL || ik == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (derivation_type(bdk_len) == 0) {
        goto exit;
    }
    /* X9.24-3-2017 6.3.3: usage 8001, the BDK's type, the whole initial key ID. */
    dd_header(dd, USAGE_INITIAL_KEY, derivation_type(bdk_len));
    memcpy(dd + 8, ikid, MPOS_DUKPT_AES_IKID_LEN);
    rc = kdf(cc, bdk, bdk_len, dd, ik, bdk_len);
exit:
    if (rc != MPOS_OK && ik != NULL && derivation_type(bdk_len) != 0) {
        mpos_cleanse(ik, bdk_len);
    }
    return rc;
}

int mpos_dukpt_aes_derivation_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                  const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN], uint8_t *key)
{
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || bdk == NULL || ksn == NULL || key == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (derivation_type(bdk_len) == 0) {
        goto exit;
    }
    rc = MPOS_ERR_KSN;
    if (!counter_allowed(mpos_load_be32(ksn + MPOS_DUKPT_AES_IKID_LEN), 0)) {
        goto exit;
    }
    rc = host_derive(cc, bdk, bdk_len, ksn, 0, derivation_type(bdk_len), key, bdk_len);
exit:
    if (rc != MPOS_OK && key != NULL && derivation_type(bdk_len) != 0) {
        mpos_cleanse(key, bdk_len);
    }
    return rc;
}

int mpos_dukpt_aes_working_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                               const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN],
                               enum mpos_dukpt_aes_usage usage, enum mpos_dukpt_aes_key_type type,
                               uint8_t *key)
{
    size_t key_len = mpos_dukpt_aes_key_len(type);
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || bdk == NULL || ksn == NULL || key == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (derivation_type(bdk_len) == 0) {
        goto exit;
    }
    rc = working_key_allowed(usage, type, bdk_len, mpos_load_be32(ksn + MPOS_DUKPT_AES_IKID_LEN));
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = host_derive(cc, bdk, bdk_len, ksn, (uint16_t)usage, type, key, key_len);
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, key_len);
    }
    return rc;
}

/* ---- terminal --------------------------------------------------------------------------- */

/* Puts the terminal at first_counter as X9.24-3-2017's "Load Initial Key" and "Update
 * Derivation Keys" would have left it after the counters below: each live register p holds
 * the intermediate derivation key of dukpt_register_counter(first_counter, p), walked from
 * the initial key (6.4). */
int mpos_dukpt_aes_terminal_load_at(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                    const uint8_t *ik, size_t ik_len,
                                    const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                                    uint32_t first_counter)
{
    uint8_t keys[2][MPOS_DUKPT_AES_MAX_KEY_LEN];
    uint8_t dd[DD_LEN];
    int rc = MPOS_ERR_ARG;
    if (t == NULL || cc == NULL || ik == NULL || ikid == NULL) {
        goto exit;
    }
    mpos_dukpt_aes_terminal_clear(t);
    rc = MPOS_ERR_KEY;
    if (derivation_type(ik_len) == 0) {
        goto exit;
    }
    rc = MPOS_ERR_KSN;
    if (!counter_allowed(first_counter, 0)) {
        goto exit;
    }
    memcpy(t->ikid, ikid, MPOS_DUKPT_AES_IKID_LEN);
    dd_header(dd, USAGE_KEY_DERIVATION, derivation_type(ik_len));
    dd_ksn(dd, ikid, 0);
    uint32_t live = dukpt_live_registers(first_counter, ALL_COUNTS);
    rc = MPOS_OK;
    for (unsigned p = 0; p < MPOS_DUKPT_AES_REGISTERS && rc == MPOS_OK; p++) {
        if ((live >> p) & 1u) {
            unsigned at = 0;
            memcpy(keys[0], ik, ik_len);
            rc = walk(cc, keys, ik_len, dd, dukpt_register_counter(first_counter, p), &at);
            memcpy(t->registers[p], keys[at], ik_len);
        }
    }
    if (rc == MPOS_OK) {
        t->key_len = ik_len;
        t->next_counter = first_counter;
    }
exit:
    if (rc != MPOS_OK && t != NULL) {
        mpos_dukpt_aes_terminal_clear(t);
    }
    MPOS_WIPE_BUFFER(keys);
    return rc;
}

int mpos_dukpt_aes_terminal_load(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc, const uint8_t *ik,
                                 size_t ik_len, const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN])
{
    return mpos_dukpt_aes_terminal_load_at(t, cc, ik, ik_len, ikid, 1);
}

int mpos_dukpt_aes_terminal_next(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                 uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN])
{
    uint8_t dd[DD_LEN];
    int rc = MPOS_ERR_ARG;
    if (t == NULL || cc == NULL || ksn == NULL || t->key_len == 0) {
        goto exit;
    }
    mpos_dukpt_aes_terminal_done(t);
    rc = MPOS_ERR_EXHAUSTED;
    uint32_t c = t->next_counter;
    if (c == 0) {
        goto exit;
    }
    unsigned p = dukpt_bit_index(dukpt_lowest_bit(c));
    /* X9.24-3-2017 "Update Derivation Keys": while c has fewer than 16 one-bits, each
     * register below p receives the key of c with that bit added, derived from c's key.
     * (Done before the transaction, so the state persisted next holds no key of it.) */
    rc = MPOS_OK;
    if (mpos_popcount32(c) < MPOS_DUKPT_AES_MAX_ONE_BITS) {
        dd_header(dd, USAGE_KEY_DERIVATION, derivation_type(t->key_len));
        for (unsigned j = p; j-- > 0 && rc == MPOS_OK;) {
            dd_ksn(dd, t->ikid, c | ((uint32_t)1 << j));
            rc = kdf(cc, t->registers[p], t->key_len, dd, t->registers[j], t->key_len);
        }
    }
    if (rc != MPOS_OK) {
        /* Registers below p held nothing: the state is as before the call. */
        mpos_cleanse(t->registers, p * sizeof(t->registers[0]));
        goto exit;
    }
    /* The register is erased once its key is taken for the transaction. */
    memcpy(t->current, t->registers[p], t->key_len);
    MPOS_WIPE_BUFFER(t->registers[p]);
    t->counter = c;
    t->next_counter = dukpt_following(c, MPOS_DUKPT_AES_MAX_ONE_BITS, ALL_COUNTS);
    memcpy(ksn, t->ikid, MPOS_DUKPT_AES_IKID_LEN);
    mpos_store_be32(ksn + MPOS_DUKPT_AES_IKID_LEN, c);
exit:
    if (rc != MPOS_OK && ksn != NULL) {
        memset(ksn, 0, MPOS_DUKPT_AES_KSN_LEN);
    }
    return rc;
}

int mpos_dukpt_aes_terminal_working_key(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                        enum mpos_dukpt_aes_usage usage,
                                        enum mpos_dukpt_aes_key_type type, uint8_t *key)
{
    uint8_t dd[DD_LEN];
    size_t key_len = mpos_dukpt_aes_key_len(type);
    int rc = MPOS_ERR_ARG;
    if (t == NULL || cc == NULL || key == NULL || t->key_len == 0 || t->counter == 0) {
        goto exit;
    }
    rc = working_key_allowed(usage, type, t->key_len, t->counter);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* X9.24-3-2017 6.3.3: the working key's usage, type, derivation ID and counter. */
    dd_header(dd, (uint16_t)usage, type);
    dd_ksn(dd, t->ikid, t->counter);
    rc = kdf(cc, t->current, t->key_len, dd, key, key_len);
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, key_len);
    }
    return rc;
}

void mpos_dukpt_aes_terminal_done(mpos_dukpt_aes_terminal *t)
{
    if (t != NULL) {
        MPOS_WIPE_BUFFER(t->current);
        t->counter = 0;
    }
}

void mpos_dukpt_aes_terminal_clear(mpos_dukpt_aes_terminal *t)
{
    if (t != NULL) {
        MPOS_WIPE_CTX(t);
    }
}

/* Exported state: "DKA" 01 | key length | 3 zero bytes | initial key ID (8) | next counter
 * (4, big-endian, 0 = exhausted) | 32 registers of 32 bytes (key, zero padded; erased = zero)
 * | CRC-32 of everything before (4, big-endian). */
enum {
    AES_ST_KEY_LEN = 4,
    AES_ST_IKID = 8,
    AES_ST_NEXT = 16,
    AES_ST_REGS = 20,
    AES_ST_CRC = AES_ST_REGS + MPOS_DUKPT_AES_REGISTERS * MPOS_DUKPT_AES_MAX_KEY_LEN
};
static const uint8_t aes_magic[4] = {'D', 'K', 'A', 0x01};
_Static_assert(AES_ST_CRC + 4 == MPOS_DUKPT_AES_STATE_LEN, "AES DUKPT state layout");

int mpos_dukpt_aes_terminal_export(const mpos_dukpt_aes_terminal *t,
                                   uint8_t out[MPOS_DUKPT_AES_STATE_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (t == NULL || out == NULL || t->key_len == 0) {
        goto exit;
    }
    memset(out, 0, MPOS_DUKPT_AES_STATE_LEN);
    memcpy(out, aes_magic, sizeof(aes_magic));
    out[AES_ST_KEY_LEN] = (uint8_t)t->key_len;
    memcpy(out + AES_ST_IKID, t->ikid, MPOS_DUKPT_AES_IKID_LEN);
    mpos_store_be32(out + AES_ST_NEXT, t->next_counter);
    memcpy(out + AES_ST_REGS, t->registers, sizeof(t->registers));
    mpos_store_be32(out + AES_ST_CRC, mpos_dukpt_crc32(out, AES_ST_CRC));
    rc = MPOS_OK;
exit:
    return rc;
}

int mpos_dukpt_aes_terminal_import(mpos_dukpt_aes_terminal *t, const uint8_t *in, size_t len)
{
    int rc = MPOS_ERR_ARG;
    if (t == NULL || in == NULL) {
        goto exit;
    }
    mpos_dukpt_aes_terminal_clear(t);
    rc = MPOS_ERR_FORMAT;
    if (len != MPOS_DUKPT_AES_STATE_LEN || memcmp(in, aes_magic, sizeof(aes_magic)) != 0 ||
        mpos_load_be32(in + AES_ST_CRC) != mpos_dukpt_crc32(in, AES_ST_CRC) ||
        !dukpt_all_zero(in + AES_ST_KEY_LEN + 1, 3)) {
        goto exit;
    }
    size_t key_len = in[AES_ST_KEY_LEN];
    uint32_t next = mpos_load_be32(in + AES_ST_NEXT);
    if (derivation_type(key_len) == 0 || (next != 0 && !counter_allowed(next, 0))) {
        goto exit;
    }
    /* Exactly the live registers hold a key, with no zero block (so a changed key length
     * shows); erased registers and the padding are zero. */
    uint32_t live = dukpt_live_registers(next, ALL_COUNTS);
    for (unsigned p = 0; p < MPOS_DUKPT_AES_REGISTERS; p++) {
        const uint8_t *reg = in + AES_ST_REGS + p * MPOS_DUKPT_AES_MAX_KEY_LEN;
        int ok = (live >> p) & 1u
                     ? !dukpt_all_zero(reg, MPOS_AES_BLOCK_LEN) &&
                           (key_len == MPOS_AES_BLOCK_LEN ||
                            !dukpt_all_zero(reg + MPOS_AES_BLOCK_LEN, key_len - MPOS_AES_BLOCK_LEN))
                     : dukpt_all_zero(reg, key_len);
        if (!ok || !dukpt_all_zero(reg + key_len, MPOS_DUKPT_AES_MAX_KEY_LEN - key_len)) {
            goto exit;
        }
    }
    memcpy(t->registers, in + AES_ST_REGS, sizeof(t->registers));
    memcpy(t->ikid, in + AES_ST_IKID, MPOS_DUKPT_AES_IKID_LEN);
    t->next_counter = next;
    t->key_len = key_len;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK && t != NULL) {
        mpos_dukpt_aes_terminal_clear(t);
    }
    return rc;
}
