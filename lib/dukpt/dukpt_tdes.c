/* openmpos: TDES DUKPT, ANSI X9.24-1-2009 Annex A.
 *
 * The KSN register is 80 bits: the initial KSN (59 bits) and a 21-bit counter. Keys are
 * 16 bytes (KL || KR); DES and TDES go through mpos_cipher_ecb() (an 8-byte key is single
 * DES there). A 3-key BDK only changes the IPEK derivation (see mpos/dukpt.h).
 */
#include <string.h>

#include "dukpt_internal.h"
#include "mpos/dukpt.h"
#include "mpos/util.h"

#define HALF            8 /* one DES key / block */
#define KSN_COUNTER_AT  7 /* the counter is the low 5 bits of byte 7, bytes 8 and 9 */
#define CRYPTO_REG_FROM 2 /* crypto register 1 = the rightmost 64 bits of the KSN register */

/* X9.24-1-2009 A.2 and A.6: the key register mask C0C0 C0C0 0000 0000 (per 8-byte part). */
static void xor_c0_mask(uint8_t *key, size_t len)
{
    for (size_t i = 0; i < len; i += HALF) {
        key[i] ^= 0xC0;
        key[i + 1] ^= 0xC0;
        key[i + 2] ^= 0xC0;
        key[i + 3] ^= 0xC0;
    }
}

static uint32_t ksn_counter(const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN])
{
    return ((uint32_t)(ksn[7] & 0x1F) << 16) | ((uint32_t)ksn[8] << 8) | ksn[9];
}

/* Writes a 21-bit counter into the 8-byte crypto register (the KSN's bytes 2..9). */
static void reg_set_counter(uint8_t reg[HALF], uint32_t counter)
{
    reg[5] = (uint8_t)((reg[5] & 0xE0) | ((counter >> 16) & 0x1F));
    reg[6] = (uint8_t)(counter >> 8);
    reg[7] = (uint8_t)counter;
}

/* X9.24-1-2009 A.3: a terminal uses only counters of 1 to 10 one-bits. */
static int counter_allowed(uint32_t counter)
{
    return counter != 0 && counter <= MPOS_DUKPT_TDES_COUNTER_MASK &&
           mpos_popcount32(counter) <= MPOS_DUKPT_TDES_MAX_ONE_BITS;
}

static int des_encrypt(mpos_crypto_ctx *cc, const uint8_t key[HALF], uint8_t block[HALF])
{
    return mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, key, HALF, block, block, HALF);
}

/* X9.24-1-2009 A.2 "Non-reversible Key Generation Process": the key of the KSN in crypto
 * register 1 (its rightmost 64 bits), from the key register KL || KR. out may be key. */
static int nrkgp(mpos_crypto_ctx *cc, const uint8_t key[MPOS_DUKPT_TDES_KEY_LEN],
                 const uint8_t reg[HALF], uint8_t out[MPOS_DUKPT_TDES_KEY_LEN])
{
    uint8_t masked[MPOS_DUKPT_TDES_KEY_LEN];
    uint8_t cr1[HALF], cr2[HALF];
    /* 1-3: CR2 = DES(KL, CR1 xor KR) xor KR */
    memcpy(cr2, reg, HALF);
    mpos_xor(cr2, key + HALF, HALF);
    int rc = des_encrypt(cc, key, cr2);
    mpos_xor(cr2, key + HALF, HALF);
    /* 4: key register xor C0C0C0C000000000 C0C0C0C000000000 */
    memcpy(masked, key, sizeof(masked));
    xor_c0_mask(masked, sizeof(masked));
    /* 5-7: CR1 = DES(KL', CR1 xor KR') xor KR' */
    memcpy(cr1, reg, HALF);
    mpos_xor(cr1, masked + HALF, HALF);
    if (rc == MPOS_OK) {
        rc = des_encrypt(cc, masked, cr1);
    }
    mpos_xor(cr1, masked + HALF, HALF);
    /* 8: the new key is CR1 || CR2 */
    memcpy(out, cr1, HALF);
    memcpy(out + HALF, cr2, HALF);
    if (rc != MPOS_OK) {
        mpos_cleanse(out, MPOS_DUKPT_TDES_KEY_LEN);
    }
    MPOS_WIPE_BUFFER(masked);
    MPOS_WIPE_BUFFER(cr1);
    MPOS_WIPE_BUFFER(cr2);
    return rc;
}

int mpos_dukpt_tdes_ipek(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                         const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                         uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN])
{
    uint8_t variant[24];
    uint8_t iksn[HALF];
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || bdk == NULL || ksn == NULL || ipek == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (bdk_len != 16 && bdk_len != 24) {
        goto exit;
    }
    /* X9.24-1-2009 A.6: the leftmost 64 bits of the KSN with the counter zeroed. */
    memcpy(iksn, ksn, HALF);
    iksn[KSN_COUNTER_AT] &= 0xE0;
    /* Left half: TDES(BDK, IKSN); right half: TDES(BDK xor C0C0C0C000000000 ..., IKSN). */
    memcpy(variant, bdk, bdk_len);
    xor_c0_mask(variant, bdk_len);
    rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, bdk, bdk_len, iksn, ipek, HALF);
    if (rc == MPOS_OK) {
        rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, variant, bdk_len, iksn, ipek + HALF, HALF);
    }
exit:
    if (rc != MPOS_OK && ipek != NULL) {
        mpos_cleanse(ipek, MPOS_DUKPT_TDES_KEY_LEN);
    }
    MPOS_WIPE_BUFFER(variant);
    return rc;
}

/* X9.24-1-2009 A.3: from the IPEK (key, replaced in place by the result), one
 * non-reversible key generation per one-bit of the counter, most significant first, the
 * crypto register holding the counter bits so far. reg: the KSN's bytes 2..9, counter 0. */
static int walk(mpos_crypto_ctx *cc, uint8_t key[MPOS_DUKPT_TDES_KEY_LEN], uint8_t reg[HALF],
                uint32_t counter)
{
    uint32_t so_far = 0;
    int rc = MPOS_OK;
    for (uint32_t bit = 1u << 20; bit != 0 && rc == MPOS_OK; bit >>= 1) {
        if ((counter & bit) != 0) {
            so_far |= bit;
            reg_set_counter(reg, so_far);
            rc = nrkgp(cc, key, reg, key);
        }
    }
    return rc;
}

int mpos_dukpt_tdes_transaction_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                    const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                                    uint8_t key[MPOS_DUKPT_TDES_KEY_LEN])
{
    uint8_t reg[HALF];
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || bdk == NULL || ksn == NULL || key == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KSN;
    if (!counter_allowed(ksn_counter(ksn))) {
        goto exit;
    }
    rc = mpos_dukpt_tdes_ipek(cc, bdk, bdk_len, ksn, key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(reg, ksn + CRYPTO_REG_FROM, HALF);
    reg_set_counter(reg, 0);
    rc = walk(cc, key, reg, ksn_counter(ksn));
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, MPOS_DUKPT_TDES_KEY_LEN);
    }
    return rc;
}

int mpos_dukpt_tdes_variant(mpos_crypto_ctx *cc, const uint8_t txn_key[MPOS_DUKPT_TDES_KEY_LEN],
                            enum mpos_dukpt_tdes_usage usage, uint8_t key[MPOS_DUKPT_TDES_KEY_LEN])
{
    /* X9.24-1-2009 A.4: the byte of each half that the variant constant sets to FF. */
    static const uint8_t variant_byte[] = {
        [MPOS_DUKPT_TDES_USAGE_PIN] = 7,       [MPOS_DUKPT_TDES_USAGE_MAC_REQ] = 6,
        [MPOS_DUKPT_TDES_USAGE_MAC_RESP] = 4,  [MPOS_DUKPT_TDES_USAGE_DATA_REQ] = 5,
        [MPOS_DUKPT_TDES_USAGE_DATA_RESP] = 3,
    };
    uint8_t variant[MPOS_DUKPT_TDES_KEY_LEN];
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || txn_key == NULL || key == NULL || usage < MPOS_DUKPT_TDES_USAGE_PIN ||
        usage > MPOS_DUKPT_TDES_USAGE_DATA_RESP) {
        goto exit;
    }
    memcpy(variant, txn_key, sizeof(variant));
    variant[variant_byte[usage]] ^= 0xFF;
    variant[HALF + variant_byte[usage]] ^= 0xFF;
    if (usage == MPOS_DUKPT_TDES_USAGE_DATA_REQ || usage == MPOS_DUKPT_TDES_USAGE_DATA_RESP) {
        /* X9.24-1-2009 A.4, data encryption: the variant key TDES-encrypts its own left and
         * right halves (a one-way function of the variant). */
        rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, variant, sizeof(variant), variant, key,
                             sizeof(variant));
    } else {
        memcpy(key, variant, sizeof(variant));
        rc = MPOS_OK;
    }
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, MPOS_DUKPT_TDES_KEY_LEN);
    }
    MPOS_WIPE_BUFFER(variant);
    return rc;
}

int mpos_dukpt_tdes_working_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                                enum mpos_dukpt_tdes_usage usage,
                                uint8_t key[MPOS_DUKPT_TDES_KEY_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (usage < MPOS_DUKPT_TDES_USAGE_PIN || usage > MPOS_DUKPT_TDES_USAGE_DATA_RESP) {
        goto exit;
    }
    rc = mpos_dukpt_tdes_transaction_key(cc, bdk, bdk_len, ksn, key);
    if (rc == MPOS_OK) {
        rc = mpos_dukpt_tdes_variant(cc, key, usage, key);
    }
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, MPOS_DUKPT_TDES_KEY_LEN);
    }
    return rc;
}

/* ---- terminal --------------------------------------------------------------------------- */

/* The crypto register (KSN bytes 2..9) of the terminal for a counter. */
static void terminal_reg(const mpos_dukpt_tdes_terminal *t, uint32_t counter, uint8_t reg[HALF])
{
    memcpy(reg, t->iksn + CRYPTO_REG_FROM, HALF);
    reg_set_counter(reg, counter);
}

/* Puts the terminal at first_counter as X9.24-1-2009 A.2 ("Load Initial Key", "New Key")
 * would have left it after the counters below: each live future key register p holds the
 * key of dukpt_register_counter(first_counter, p), derived from the IPEK (A.3). */
int mpos_dukpt_tdes_terminal_load_at(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                     const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                     const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN],
                                     uint32_t first_counter)
{
    uint8_t reg[HALF];
    int rc = MPOS_ERR_ARG;
    if (t == NULL || cc == NULL || ipek == NULL || iksn == NULL) {
        goto exit;
    }
    mpos_dukpt_tdes_terminal_clear(t);
    rc = MPOS_ERR_KSN;
    if (!counter_allowed(first_counter)) {
        goto exit;
    }
    memcpy(t->iksn, iksn, MPOS_DUKPT_TDES_KSN_LEN);
    t->iksn[KSN_COUNTER_AT] &= 0xE0;
    t->iksn[8] = 0;
    t->iksn[9] = 0;
    uint32_t live = dukpt_live_registers(first_counter, MPOS_DUKPT_TDES_COUNTER_MASK);
    rc = MPOS_OK;
    for (unsigned p = 0; p < MPOS_DUKPT_TDES_REGISTERS && rc == MPOS_OK; p++) {
        if ((live >> p) & 1u) {
            terminal_reg(t, 0, reg);
            memcpy(t->registers[p], ipek, MPOS_DUKPT_TDES_KEY_LEN);
            rc = walk(cc, t->registers[p], reg, dukpt_register_counter(first_counter, p));
        }
    }
    if (rc == MPOS_OK) {
        t->next_counter = first_counter;
        t->loaded = 1;
    }
exit:
    if (rc != MPOS_OK && t != NULL) {
        mpos_dukpt_tdes_terminal_clear(t);
    }
    return rc;
}

int mpos_dukpt_tdes_terminal_load(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                  const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                  const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN])
{
    return mpos_dukpt_tdes_terminal_load_at(t, cc, ipek, iksn, 1);
}

int mpos_dukpt_tdes_terminal_next(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                  uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN])
{
    uint8_t reg[HALF];
    int rc = MPOS_ERR_ARG;
    if (t == NULL || cc == NULL || ksn == NULL || !t->loaded) {
        goto exit;
    }
    mpos_dukpt_tdes_terminal_done(t);
    rc = MPOS_ERR_EXHAUSTED;
    uint32_t c = t->next_counter;
    if (c == 0) {
        goto exit;
    }
    unsigned p = dukpt_bit_index(dukpt_lowest_bit(c));
    /* X9.24-1-2009 A.2 "New Key-1/-3/-4": while c has fewer than 10 one-bits, each future
     * key register below p receives the key of c with that bit added, generated from c's
     * key (before the transaction here, so the state persisted next holds no key of it). */
    rc = MPOS_OK;
    if (mpos_popcount32(c) < MPOS_DUKPT_TDES_MAX_ONE_BITS) {
        for (unsigned j = p; j-- > 0 && rc == MPOS_OK;) {
            terminal_reg(t, c | ((uint32_t)1 << j), reg);
            rc = nrkgp(cc, t->registers[p], reg, t->registers[j]);
        }
    }
    if (rc != MPOS_OK) {
        mpos_cleanse(t->registers, p * sizeof(t->registers[0]));
        goto exit;
    }
    /* A.2 "New Key-2": the current key register is erased. */
    memcpy(t->current, t->registers[p], MPOS_DUKPT_TDES_KEY_LEN);
    MPOS_WIPE_BUFFER(t->registers[p]);
    t->counter = c;
    t->next_counter =
        dukpt_following(c, MPOS_DUKPT_TDES_MAX_ONE_BITS, MPOS_DUKPT_TDES_COUNTER_MASK);
    memcpy(ksn, t->iksn, MPOS_DUKPT_TDES_KSN_LEN);
    ksn[7] = (uint8_t)(ksn[7] | (c >> 16));
    ksn[8] = (uint8_t)(c >> 8);
    ksn[9] = (uint8_t)c;
exit:
    if (rc != MPOS_OK && ksn != NULL) {
        memset(ksn, 0, MPOS_DUKPT_TDES_KSN_LEN);
    }
    return rc;
}

int mpos_dukpt_tdes_terminal_working_key(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                         enum mpos_dukpt_tdes_usage usage,
                                         uint8_t key[MPOS_DUKPT_TDES_KEY_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (t == NULL || !t->loaded || t->counter == 0) {
        goto exit;
    }
    rc = mpos_dukpt_tdes_variant(cc, t->current, usage, key);
exit:
    if (rc != MPOS_OK && key != NULL) {
        mpos_cleanse(key, MPOS_DUKPT_TDES_KEY_LEN);
    }
    return rc;
}

void mpos_dukpt_tdes_terminal_done(mpos_dukpt_tdes_terminal *t)
{
    if (t != NULL) {
        MPOS_WIPE_BUFFER(t->current);
        t->counter = 0;
    }
}

void mpos_dukpt_tdes_terminal_clear(mpos_dukpt_tdes_terminal *t)
{
    if (t != NULL) {
        MPOS_WIPE_CTX(t);
    }
}

/* Exported state: "DKT" 01 | 4 zero bytes | initial KSN (10, counter bits zero) | 2 zero
 * bytes | next counter (4, big-endian, 0 = exhausted) | 21 registers of 16 bytes (erased =
 * zero) | CRC-32 of everything before (4, big-endian). */
enum {
    TDES_ST_IKSN = 8,
    TDES_ST_NEXT = 20,
    TDES_ST_REGS = 24,
    TDES_ST_CRC = TDES_ST_REGS + MPOS_DUKPT_TDES_REGISTERS * MPOS_DUKPT_TDES_KEY_LEN
};
static const uint8_t tdes_magic[4] = {'D', 'K', 'T', 0x01};
_Static_assert(TDES_ST_CRC + 4 == MPOS_DUKPT_TDES_STATE_LEN, "TDES DUKPT state layout");

int mpos_dukpt_tdes_terminal_export(const mpos_dukpt_tdes_terminal *t,
                                    uint8_t out[MPOS_DUKPT_TDES_STATE_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (t == NULL || out == NULL || !t->loaded) {
        goto exit;
    }
    memset(out, 0, MPOS_DUKPT_TDES_STATE_LEN);
    memcpy(out, tdes_magic, sizeof(tdes_magic));
    memcpy(out + TDES_ST_IKSN, t->iksn, MPOS_DUKPT_TDES_KSN_LEN);
    mpos_store_be32(out + TDES_ST_NEXT, t->next_counter);
    memcpy(out + TDES_ST_REGS, t->registers, sizeof(t->registers));
    mpos_store_be32(out + TDES_ST_CRC, mpos_dukpt_crc32(out, TDES_ST_CRC));
    rc = MPOS_OK;
exit:
    return rc;
}

int mpos_dukpt_tdes_terminal_import(mpos_dukpt_tdes_terminal *t, const uint8_t *in, size_t len)
{
    int rc = MPOS_ERR_ARG;
    if (t == NULL || in == NULL) {
        goto exit;
    }
    mpos_dukpt_tdes_terminal_clear(t);
    rc = MPOS_ERR_FORMAT;
    if (len != MPOS_DUKPT_TDES_STATE_LEN || memcmp(in, tdes_magic, sizeof(tdes_magic)) != 0 ||
        mpos_load_be32(in + TDES_ST_CRC) != mpos_dukpt_crc32(in, TDES_ST_CRC) ||
        !dukpt_all_zero(in + 4, 4) || !dukpt_all_zero(in + TDES_ST_IKSN + 10, 2) ||
        ksn_counter(in + TDES_ST_IKSN) != 0) {
        goto exit;
    }
    uint32_t next = mpos_load_be32(in + TDES_ST_NEXT);
    if (next != 0 && !counter_allowed(next)) {
        goto exit;
    }
    /* Exactly the live registers hold a key; erased ones are zero. */
    uint32_t live = dukpt_live_registers(next, MPOS_DUKPT_TDES_COUNTER_MASK);
    for (unsigned p = 0; p < MPOS_DUKPT_TDES_REGISTERS; p++) {
        const uint8_t *reg = in + TDES_ST_REGS + p * MPOS_DUKPT_TDES_KEY_LEN;
        int holds_key = !dukpt_all_zero(reg, MPOS_DUKPT_TDES_KEY_LEN);
        if (holds_key != (int)((live >> p) & 1u)) {
            goto exit;
        }
    }
    memcpy(t->registers, in + TDES_ST_REGS, sizeof(t->registers));
    memcpy(t->iksn, in + TDES_ST_IKSN, MPOS_DUKPT_TDES_KSN_LEN);
    t->next_counter = next;
    t->loaded = 1;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK && t != NULL) {
        mpos_dukpt_tdes_terminal_clear(t);
    }
    return rc;
}
