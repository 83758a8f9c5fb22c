/* openmpos: EMV application cryptograms (EMV 4.3 Book 2 8.1, 8.2 and Annex A1) and the
 * UnionPay PBOC session key. Every block operation goes through the crypto facade, every MAC
 * through mpos/mac.h; nothing is allocated (except SHA-1 of option B, see mpos/hash.h).
 */
#include <string.h>

#include "mpos/emv.h"
#include "mpos/hash.h"
#include "mpos/mac.h"
#include "mpos/util.h"

#define BLOCK MPOS_DES_BLOCK_LEN

/* Longest PAN || PSN digit string, plus a leading '0' for a whole number of bytes. */
#define PAN_PSN_MAX_DIGITS (MPOS_EMV_PAN_MAX_DIGITS + MPOS_EMV_PSN_DIGITS + 1)

static int key_check(const uint8_t *key, size_t key_len)
{
    if (key == NULL) {
        return MPOS_ERR_ARG;
    }
    /* Annex A1: IMK, ICC master keys and session keys are double-length TDES keys. */
    return key_len == MPOS_EMV_KEY_LEN ? MPOS_OK : MPOS_ERR_KEY;
}

/* Packs n (even) decimal digits into n/2 bytes, two digits a byte. */
static void pack_digits(const char *digits, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n / 2; i++) {
        out[i] =
            (uint8_t)(((unsigned)(digits[2 * i] - '0') << 4) | (unsigned)(digits[2 * i + 1] - '0'));
    }
}

/* A1.4.1 (also the last step of A1.4.2): Z_L = DES3(IMK)[Y], Z_R = DES3(IMK)[Y XOR 'FF..FF'],
 * MK = Z_L || Z_R with each byte set to odd parity. */
static int mk_from_y(mpos_crypto_ctx *cc, const uint8_t *imk, const uint8_t y[BLOCK],
                     uint8_t mk[MPOS_EMV_KEY_LEN])
{
    uint8_t blocks[2 * BLOCK];
    memcpy(blocks, y, BLOCK);
    for (size_t i = 0; i < BLOCK; i++) {
        blocks[BLOCK + i] = (uint8_t)(y[i] ^ 0xFFu);
    }
    int rc =
        mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, imk, MPOS_EMV_KEY_LEN, blocks, mk, sizeof(blocks));
    if (rc == MPOS_OK) {
        mpos_des_set_odd_parity(mk, MPOS_EMV_KEY_LEN);
    }
    MPOS_WIPE_BUFFER(blocks);
    return rc;
}

/* A1.4.2 steps 1 to 3: the 16 digits of Y from the SHA-1 of PAN || PSN (pan_psn holds the
 * digits, already padded to an even count). */
static int option_b_digits(const char *pan_psn, size_t n, char y_digits[16])
{
    uint8_t packed[PAN_PSN_MAX_DIGITS / 2];
    uint8_t hash[MPOS_SHA1_LEN];
    size_t got = 0;
    /* Step 1: X = SHA-1 of the BCD-packed PAN || PSN (a leading '0' nibble when odd). */
    pack_digits(pan_psn, n, packed);
    int rc = mpos_sha1(packed, n / 2, hash);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Step 2: the decimal digits 0-9 of X, read left to right, until 16 are taken. */
    for (size_t i = 0; i < 2 * MPOS_SHA1_LEN && got < 16; i++) {
        unsigned nib =
            (i % 2 == 0) ? (unsigned)(hash[i / 2] >> 4) : (unsigned)(hash[i / 2] & 0x0Fu);
        if (nib < 10) {
            y_digits[got++] = (char)('0' + nib);
        }
    }
    /* Step 3: if fewer than 16, the hex digits A-F of X, left to right, decimalised as
     * A=0 .. F=5, complete Y. */
    for (size_t i = 0; i < 2 * MPOS_SHA1_LEN && got < 16; i++) {
        unsigned nib =
            (i % 2 == 0) ? (unsigned)(hash[i / 2] >> 4) : (unsigned)(hash[i / 2] & 0x0Fu);
        if (nib >= 10) {
            y_digits[got++] = (char)('0' + nib - 10);
        }
    }
exit:
    MPOS_WIPE_BUFFER(packed);
    MPOS_WIPE_BUFFER(hash);
    return rc;
}

int mpos_emv_derive_icc_mk(mpos_crypto_ctx *cc, enum mpos_emv_mk_option option, const uint8_t *imk,
                           size_t imk_len, const char *pan, const char *psn,
                           uint8_t mk[MPOS_EMV_KEY_LEN])
{
    char digits[PAN_PSN_MAX_DIGITS];
    char y_digits[16];
    uint8_t y[BLOCK];
    size_t pan_len = 0;
    size_t n = 0;
    int rc = MPOS_ERR_ARG;

    if (mk == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc == NULL || pan == NULL ||
        (option != MPOS_EMV_MK_OPTION_A && option != MPOS_EMV_MK_OPTION_B)) {
        goto exit;
    }
    rc = key_check(imk, imk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (!mpos_digits_valid(pan, MPOS_EMV_PAN_MIN_DIGITS, MPOS_EMV_PAN_MAX_DIGITS)) {
        rc = MPOS_ERR_PAN;
        goto exit;
    }
    /* A1.4: a card without PAN Sequence Number uses '00'. */
    if (psn == NULL) {
        psn = "00";
    }
    if (!mpos_digits_valid(psn, MPOS_EMV_PSN_DIGITS, MPOS_EMV_PSN_DIGITS)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    pan_len = strlen(pan);

    if (option == MPOS_EMV_MK_OPTION_B && pan_len > 16) {
        /* A1.4.2: PAN || PSN, padded on the left with one '0' to a whole number of bytes. */
        if ((pan_len + MPOS_EMV_PSN_DIGITS) % 2 != 0) {
            digits[n++] = '0';
        }
        memcpy(digits + n, pan, pan_len);
        n += pan_len;
        memcpy(digits + n, psn, MPOS_EMV_PSN_DIGITS);
        n += MPOS_EMV_PSN_DIGITS;
        rc = option_b_digits(digits, n, y_digits);
        if (rc != MPOS_OK) {
            goto exit;
        }
    } else {
        /* A1.4.1 (and A1.4.2 for PANs of 16 digits or fewer): Y = the rightmost 16 digits of
         * PAN || PSN, padded on the left with zeros when shorter. */
        memcpy(digits, pan, pan_len);
        memcpy(digits + pan_len, psn, MPOS_EMV_PSN_DIGITS);
        n = pan_len + MPOS_EMV_PSN_DIGITS;
        if (n >= 16) {
            memcpy(y_digits, digits + n - 16, 16);
        } else {
            memset(y_digits, '0', 16 - n);
            memcpy(y_digits + 16 - n, digits, n);
        }
    }
    pack_digits(y_digits, 16, y);
    rc = mk_from_y(cc, imk, y, mk);
exit:
    MPOS_WIPE_BUFFER(digits);
    MPOS_WIPE_BUFFER(y_digits);
    MPOS_WIPE_BUFFER(y);
    if (rc != MPOS_OK) {
        mpos_cleanse(mk, MPOS_EMV_KEY_LEN);
    }
    return rc;
}

/* SK = DES3(MK)[F1] || DES3(MK)[F2], then odd parity (as the EMV published vector has it;
 * DES does not read the parity bits). */
static int sk_from_blocks(mpos_crypto_ctx *cc, const uint8_t *mk, const uint8_t f[2 * BLOCK],
                          uint8_t sk[MPOS_EMV_KEY_LEN])
{
    int rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, mk, MPOS_EMV_KEY_LEN, f, sk, 2 * BLOCK);
    if (rc == MPOS_OK) {
        mpos_des_set_odd_parity(sk, MPOS_EMV_KEY_LEN);
    }
    return rc;
}

int mpos_emv_derive_common_sk(mpos_crypto_ctx *cc, const uint8_t *mk, size_t mk_len,
                              const uint8_t r[MPOS_EMV_DIV_LEN], uint8_t sk[MPOS_EMV_KEY_LEN])
{
    uint8_t f[2 * BLOCK];
    int rc = MPOS_ERR_ARG;
    if (sk == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc == NULL || r == NULL) {
        goto exit;
    }
    rc = key_check(mk, mk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* A1.3.1, 8-byte block cipher: F1 = R0 || R1 || 'F0' || R3 .. R7,
     * F2 = R0 || R1 || '0F' || R3 .. R7. */
    memcpy(f, r, BLOCK);
    memcpy(f + BLOCK, r, BLOCK);
    f[2] = 0xF0;
    f[BLOCK + 2] = 0x0F;
    rc = sk_from_blocks(cc, mk, f, sk);
exit:
    MPOS_WIPE_BUFFER(f);
    if (rc != MPOS_OK) {
        mpos_cleanse(sk, MPOS_EMV_KEY_LEN);
    }
    return rc;
}

int mpos_emv_derive_sk(mpos_crypto_ctx *cc, enum mpos_emv_sk_method method, const uint8_t *mk,
                       size_t mk_len, const uint8_t atc[MPOS_EMV_ATC_LEN],
                       uint8_t sk[MPOS_EMV_KEY_LEN])
{
    uint8_t f[2 * BLOCK];
    int rc = MPOS_ERR_ARG;
    if (sk == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(f, 0, sizeof(f));
    if (cc == NULL || atc == NULL) {
        goto exit;
    }
    switch (method) {
    case MPOS_EMV_SK_COMMON:
        /* 8.1.2 / A1.3.1: R = ATC || '00 00 00 00 00 00'. */
        memcpy(f, atc, MPOS_EMV_ATC_LEN);
        rc = mpos_emv_derive_common_sk(cc, mk, mk_len, f, sk);
        goto exit;
    case MPOS_EMV_SK_PBOC:
        rc = key_check(mk, mk_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        /* PBOC (JR/T 0025.7) / UICS process key: SK_L = DES3(MK)['00'x6 || ATC],
         * SK_R = DES3(MK)['00'x6 || (ATC XOR 'FFFF')]. */
        f[6] = atc[0];
        f[7] = atc[1];
        f[BLOCK + 6] = (uint8_t)(atc[0] ^ 0xFFu);
        f[BLOCK + 7] = (uint8_t)(atc[1] ^ 0xFFu);
        rc = sk_from_blocks(cc, mk, f, sk);
        goto exit;
    default:
        rc = MPOS_ERR_ARG;
        goto exit;
    }
exit:
    MPOS_WIPE_BUFFER(f);
    if (rc != MPOS_OK) {
        mpos_cleanse(sk, MPOS_EMV_KEY_LEN);
    }
    return rc;
}

int mpos_emv_ac_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len, const uint8_t *data,
                         size_t data_len, uint8_t ac[MPOS_EMV_AC_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (ac == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc == NULL || (data == NULL && data_len > 0)) {
        goto exit;
    }
    rc = key_check(sk, sk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 8.1.2 and A1.2.1: MAC over the cryptogram data with ISO/IEC 9797-1 MAC algorithm 3,
     * padding method 2 ('80' then zeros), DES as the block cipher, the 8-byte result. */
    rc = mpos_mac_iso9797_alg3(cc, sk, sk_len, MPOS_MAC_PAD_2, data, data_len, ac);
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(ac, MPOS_EMV_AC_LEN);
    }
    return rc;
}

int mpos_emv_ac_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len, const uint8_t *data,
                       size_t data_len, const uint8_t ac[MPOS_EMV_AC_LEN])
{
    uint8_t computed[MPOS_EMV_AC_LEN];
    int rc = MPOS_ERR_ARG;
    if (ac == NULL) {
        goto exit;
    }
    rc = mpos_emv_ac_generate(cc, sk, sk_len, data, data_len, computed);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_ct_equal(computed, ac, MPOS_EMV_AC_LEN) ? MPOS_OK : MPOS_ERR_VERIFY;
exit:
    MPOS_WIPE_BUFFER(computed);
    return rc;
}

int mpos_emv_arpc1_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                            const uint8_t arqc[MPOS_EMV_AC_LEN],
                            const uint8_t arc[MPOS_EMV_ARC_LEN], uint8_t arpc[MPOS_EMV_ARPC1_LEN])
{
    uint8_t x[BLOCK];
    int rc = MPOS_ERR_ARG;
    if (arpc == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(x, 0, sizeof(x));
    if (cc == NULL || arqc == NULL || arc == NULL) {
        goto exit;
    }
    rc = key_check(sk, sk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 8.2.1: X = ARC || '00 00 00 00 00 00'; ARPC = DES3(SK)[ARQC XOR X] (A1.1). */
    memcpy(x, arc, MPOS_EMV_ARC_LEN);
    mpos_xor(x, arqc, BLOCK);
    rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, sk, sk_len, x, arpc, BLOCK);
exit:
    MPOS_WIPE_BUFFER(x);
    if (rc != MPOS_OK) {
        mpos_cleanse(arpc, MPOS_EMV_ARPC1_LEN);
    }
    return rc;
}

int mpos_emv_arpc2_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                            const uint8_t arqc[MPOS_EMV_AC_LEN],
                            const uint8_t csu[MPOS_EMV_CSU_LEN], const uint8_t *prop,
                            size_t prop_len, uint8_t arpc[MPOS_EMV_ARPC2_LEN])
{
    uint8_t input[MPOS_EMV_AC_LEN + MPOS_EMV_CSU_LEN + MPOS_EMV_PROP_AUTH_MAX_LEN];
    uint8_t mac[BLOCK];
    int rc = MPOS_ERR_ARG;
    if (arpc == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(input, 0, sizeof(input));
    memset(mac, 0, sizeof(mac));
    if (cc == NULL || arqc == NULL || csu == NULL || (prop == NULL && prop_len > 0)) {
        goto exit;
    }
    if (prop_len > MPOS_EMV_PROP_AUTH_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = key_check(sk, sk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 8.2.2: Y = ARQC || CSU || Proprietary Authentication Data (0-8 bytes);
     * ARPC = the leftmost 4 bytes of MAC(SK)[Y] (A1.2.1, MAC algorithm 3, padding 2). */
    memcpy(input, arqc, MPOS_EMV_AC_LEN);
    memcpy(input + MPOS_EMV_AC_LEN, csu, MPOS_EMV_CSU_LEN);
    if (prop_len > 0) {
        memcpy(input + MPOS_EMV_AC_LEN + MPOS_EMV_CSU_LEN, prop, prop_len);
    }
    rc = mpos_mac_iso9797_alg3(cc, sk, sk_len, MPOS_MAC_PAD_2, input,
                               MPOS_EMV_AC_LEN + MPOS_EMV_CSU_LEN + prop_len, mac);
    if (rc == MPOS_OK) {
        memcpy(arpc, mac, MPOS_EMV_ARPC2_LEN);
    }
exit:
    MPOS_WIPE_BUFFER(input);
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK) {
        mpos_cleanse(arpc, MPOS_EMV_ARPC2_LEN);
    }
    return rc;
}

int mpos_emv_arpc1_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                          const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t arc[MPOS_EMV_ARC_LEN],
                          const uint8_t arpc[MPOS_EMV_ARPC1_LEN])
{
    uint8_t computed[MPOS_EMV_ARPC1_LEN];
    int rc = MPOS_ERR_ARG;
    if (arpc == NULL) {
        goto exit;
    }
    rc = mpos_emv_arpc1_generate(cc, sk, sk_len, arqc, arc, computed);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_ct_equal(computed, arpc, MPOS_EMV_ARPC1_LEN) ? MPOS_OK : MPOS_ERR_VERIFY;
exit:
    MPOS_WIPE_BUFFER(computed);
    return rc;
}

int mpos_emv_arpc2_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                          const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t csu[MPOS_EMV_CSU_LEN],
                          const uint8_t *prop, size_t prop_len,
                          const uint8_t arpc[MPOS_EMV_ARPC2_LEN])
{
    uint8_t computed[MPOS_EMV_ARPC2_LEN];
    int rc = MPOS_ERR_ARG;
    if (arpc == NULL) {
        goto exit;
    }
    rc = mpos_emv_arpc2_generate(cc, sk, sk_len, arqc, csu, prop, prop_len, computed);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_ct_equal(computed, arpc, MPOS_EMV_ARPC2_LEN) ? MPOS_OK : MPOS_ERR_VERIFY;
exit:
    MPOS_WIPE_BUFFER(computed);
    return rc;
}

int mpos_emv_issuer_auth_verify(mpos_crypto_ctx *cc, enum mpos_emv_arpc_method method,
                                const uint8_t *sk, size_t sk_len,
                                const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t *iad91,
                                size_t iad91_len)
{
    int rc = MPOS_ERR_ARG;
    if (cc == NULL || arqc == NULL || (iad91 == NULL && iad91_len > 0)) {
        goto exit;
    }
    rc = key_check(sk, sk_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    switch (method) {
    case MPOS_EMV_ARPC_METHOD_1:
        /* 8.2.1: Issuer Authentication Data = ARPC (8) || ARC (2). */
        if (iad91_len != MPOS_EMV_ARPC1_LEN + MPOS_EMV_ARC_LEN) {
            rc = MPOS_ERR_VERIFY;
            goto exit;
        }
        rc = mpos_emv_arpc1_verify(cc, sk, sk_len, arqc, iad91 + MPOS_EMV_ARPC1_LEN, iad91);
        goto exit;
    case MPOS_EMV_ARPC_METHOD_2:
        /* 8.2.2: Issuer Authentication Data = ARPC (4) || CSU (4) || proprietary (0-8). */
        if (iad91_len < MPOS_EMV_ARPC2_LEN + MPOS_EMV_CSU_LEN ||
            iad91_len > MPOS_EMV_ISSUER_AUTH_MAX_LEN) {
            rc = MPOS_ERR_VERIFY;
            goto exit;
        }
        rc = mpos_emv_arpc2_verify(cc, sk, sk_len, arqc, iad91 + MPOS_EMV_ARPC2_LEN,
                                   iad91 + MPOS_EMV_ARPC2_LEN + MPOS_EMV_CSU_LEN,
                                   iad91_len - MPOS_EMV_ARPC2_LEN - MPOS_EMV_CSU_LEN, iad91);
        goto exit;
    default:
        rc = MPOS_ERR_ARG;
        goto exit;
    }
exit:
    return rc;
}

int mpos_emv_derive_ac_sk(mpos_crypto_ctx *cc, const uint8_t *imk, size_t imk_len, const char *pan,
                          const char *psn, const uint8_t atc[MPOS_EMV_ATC_LEN],
                          uint8_t sk[MPOS_EMV_KEY_LEN])
{
    uint8_t mk[MPOS_EMV_KEY_LEN];
    if (sk == NULL) {
        return MPOS_ERR_ARG;
    }
    if (pan == NULL) {
        mpos_cleanse(sk, MPOS_EMV_KEY_LEN);
        return MPOS_ERR_ARG;
    }
    /* Option B equals option A up to 16 digits; naming A there keeps the common case obvious. */
    enum mpos_emv_mk_option opt = strlen(pan) > 16 ? MPOS_EMV_MK_OPTION_B : MPOS_EMV_MK_OPTION_A;
    int rc = mpos_emv_derive_icc_mk(cc, opt, imk, imk_len, pan, psn, mk);
    if (rc == MPOS_OK) {
        rc = mpos_emv_derive_sk(cc, MPOS_EMV_SK_COMMON, mk, sizeof(mk), atc, sk);
    } else {
        mpos_cleanse(sk, MPOS_EMV_KEY_LEN);
    }
    MPOS_WIPE_BUFFER(mk);
    return rc;
}

const uint32_t mpos_emv_ac_field_tags[MPOS_EMV_AC_FIELD_COUNT] = {
    0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36};

int mpos_emv_ac_field_set(struct mpos_emv_ac_fields *fields, uint32_t tag, const uint8_t *value,
                          size_t len)
{
    if (fields == NULL || value == NULL) {
        return MPOS_ERR_ARG;
    }
    uint8_t *dst;
    size_t want;
    switch (tag) {
    case 0x9F02:
        dst = fields->amount_authorised;
        want = sizeof(fields->amount_authorised);
        break;
    case 0x9F03:
        dst = fields->amount_other;
        want = sizeof(fields->amount_other);
        break;
    case 0x9F1A:
        dst = fields->terminal_country;
        want = sizeof(fields->terminal_country);
        break;
    case 0x95:
        dst = fields->tvr;
        want = sizeof(fields->tvr);
        break;
    case 0x5F2A:
        dst = fields->currency;
        want = sizeof(fields->currency);
        break;
    case 0x9A:
        dst = fields->date;
        want = sizeof(fields->date);
        break;
    case 0x9C:
        dst = &fields->type;
        want = sizeof(fields->type);
        break;
    case 0x9F37:
        dst = fields->un;
        want = sizeof(fields->un);
        break;
    case 0x82:
        dst = fields->aip;
        want = sizeof(fields->aip);
        break;
    case 0x9F36:
        dst = fields->atc;
        want = sizeof(fields->atc);
        break;
    default:
        return MPOS_ERR_ARG;
    }
    if (len != want) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(dst, value, len);
    return MPOS_OK;
}

int mpos_emv_ac_data_build(const struct mpos_emv_ac_fields *fields, uint8_t *out, size_t cap,
                           size_t *out_len)
{
    if (fields == NULL || out == NULL || out_len == NULL ||
        (fields->iad_part == NULL && fields->iad_part_len > 0)) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    size_t total = MPOS_EMV_AC_MIN_DATA_LEN + fields->iad_part_len;
    if (fields->iad_part_len > MPOS_EMV_IAD_MAX_LEN || cap < total) {
        return MPOS_ERR_LENGTH;
    }
    /* Book 2 8.1.1, Table 26: the recommended minimum set, in this order. */
    uint8_t *p = out;
    memcpy(p, fields->amount_authorised, sizeof(fields->amount_authorised));
    p += sizeof(fields->amount_authorised);
    memcpy(p, fields->amount_other, sizeof(fields->amount_other));
    p += sizeof(fields->amount_other);
    memcpy(p, fields->terminal_country, sizeof(fields->terminal_country));
    p += sizeof(fields->terminal_country);
    memcpy(p, fields->tvr, sizeof(fields->tvr));
    p += sizeof(fields->tvr);
    memcpy(p, fields->currency, sizeof(fields->currency));
    p += sizeof(fields->currency);
    memcpy(p, fields->date, sizeof(fields->date));
    p += sizeof(fields->date);
    *p++ = fields->type;
    memcpy(p, fields->un, sizeof(fields->un));
    p += sizeof(fields->un);
    memcpy(p, fields->aip, sizeof(fields->aip));
    p += sizeof(fields->aip);
    memcpy(p, fields->atc, sizeof(fields->atc));
    p += sizeof(fields->atc);
    /* Then whatever the cryptogram version takes from the Issuer Application Data. */
    if (fields->iad_part_len > 0) {
        memcpy(p, fields->iad_part, fields->iad_part_len);
    }
    *out_len = total;
    return MPOS_OK;
}
