/* openmpos terminal core: the sealed transaction request and response.
 * Wire format: docs/protocol.md, "Sealed transaction messages". */
#include <string.h>

#include "mpos/mac.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "msr/msr.h"
#include "txn/sealed.h"

/* ---- tags (docs/protocol.md) --------------------------------------------------------------- */

enum {
    T_VERSION = 0xDF20,
    T_MSG_TYPE = 0xDF21,
    T_SCHEME = 0xDF22,
    T_KSN = 0xDF23,
    T_SEQUENCE = 0xDF24,
    T_TXN_TYPE = 0xDF25,
    T_AMOUNT = 0xDF26,
    T_CURRENCY = 0xDF27,
    T_MERCHANT_ID = 0xDF28,
    T_TERMINAL_ID = 0xDF29,
    T_DATETIME = 0xDF2A,
    T_ENTRY_MODE = 0xDF2B,
    T_FALLBACK = 0xDF2C,
    T_MASKED_PAN = 0xDF2D,
    T_ORIGINAL_REF = 0xDF2E,
    T_LOCATION = 0xDF2F,
    T_IV = 0xDF30,
    T_ENCRYPTED = 0xDF31,
    T_PIN_FORMAT = 0xDF32,
    T_PIN_BLOCK = 0xDF33,
    T_REVERSAL_REASON = 0xDF34,
    T_RETRY = 0xDF35,
    T_RESPONSE_CODE = 0xDF50,
    T_AUTH_CODE = 0xDF51,
    T_RRN = 0xDF52,
    T_ARC = 0xDF53,
    T_IAD = 0xDF54,
    T_MAC = 0xDF7F,
    /* inside the encrypted card data */
    T_PAN = 0x5A,    /* EMV Application PAN, cn */
    T_TRACK2 = 0x57, /* EMV Track 2 Equivalent Data */
    T_EXPIRY = 0xDF41,
    T_EMV_DATA = 0xDF42
};

#define AMOUNT_LEN     6   /* n12 */
#define CURRENCY_LEN   2   /* n3, right-justified in n4 */
#define DATETIME_BCD   7   /* n14 */
#define LOCATION_LEN   20  /* lat 4, lon 4, accuracy 4, time 8 */
#define EXPIRY_BCD     2   /* n4 YYMM */
#define CARD_PLAIN_MAX 297 /* 5A 12 + 57 21 + DF41 5 + DF42 259 (81 FF) */
#define CARD_CT_MAX    304 /* padded to the block */
#define RESP_CT_MAX    (MPOS_SEALED_MAX_RESP_DATA_LEN + 16)

/* ---- schemes and keys ---------------------------------------------------------------------- */

struct scheme_info {
    enum mpos_cipher cipher;
    size_t key_len;
    size_t ksn_len;
    size_t block;
    size_t mac_len;
    uint8_t pin_format;
    size_t pin_block_len;
};

static int scheme_info(unsigned scheme, struct scheme_info *si)
{
    memset(si, 0, sizeof(*si));
    switch (scheme) {
    case MPOS_SEALED_AES128:
    case MPOS_SEALED_AES192:
    case MPOS_SEALED_AES256:
        si->cipher = MPOS_CIPHER_AES;
        si->key_len = scheme == MPOS_SEALED_AES128 ? 16 : scheme == MPOS_SEALED_AES192 ? 24 : 32;
        si->ksn_len = MPOS_DUKPT_AES_KSN_LEN;
        si->block = MPOS_AES_BLOCK_LEN;
        si->mac_len = 16; /* the full CMAC */
        si->pin_format = 4;
        si->pin_block_len = 16;
        return MPOS_OK;
    case MPOS_SEALED_TDES:
        si->cipher = MPOS_CIPHER_TDES;
        si->key_len = MPOS_DUKPT_TDES_KEY_LEN;
        si->ksn_len = MPOS_DUKPT_TDES_KSN_LEN;
        si->block = MPOS_DES_BLOCK_LEN;
        si->mac_len = 8;
        si->pin_format = 0;
        si->pin_block_len = 8;
        return MPOS_OK;
    default:
        return MPOS_ERR_ARG;
    }
}

/* The keys are well formed and of the direction wanted. */
static int keys_check(const mpos_sealed_keys *k, enum mpos_sealed_dir dir, struct scheme_info *si)
{
    if (scheme_info(k->scheme, si) != MPOS_OK || k->dir != dir) {
        return MPOS_ERR_ARG;
    }
    if (k->ksn_len != si->ksn_len || k->key_len != si->key_len) {
        return MPOS_ERR_KEY;
    }
    return MPOS_OK;
}

void mpos_sealed_keys_clear(mpos_sealed_keys *keys)
{
    if (keys != NULL) {
        mpos_cleanse(keys, sizeof(*keys));
    }
}

int mpos_sealed_keys_set(mpos_sealed_keys *keys, enum mpos_sealed_scheme scheme,
                         enum mpos_sealed_dir dir, const uint8_t *ksn, size_t ksn_len,
                         const uint8_t *mac_key, const uint8_t *data_key, size_t key_len)
{
    struct scheme_info si;
    int rc = MPOS_ERR_ARG;
    if (keys == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(keys, sizeof(*keys));
    if (ksn == NULL || mac_key == NULL || data_key == NULL || scheme_info(scheme, &si) != MPOS_OK ||
        (dir != MPOS_SEALED_DIR_REQUEST && dir != MPOS_SEALED_DIR_RESPONSE)) {
        goto exit;
    }
    if (ksn_len != si.ksn_len || key_len != si.key_len) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    keys->scheme = scheme;
    keys->dir = dir;
    memcpy(keys->ksn, ksn, ksn_len);
    keys->ksn_len = ksn_len;
    memcpy(keys->mac_key, mac_key, key_len);
    memcpy(keys->data_key, data_key, key_len);
    keys->key_len = key_len;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(keys, sizeof(*keys));
    }
    return rc;
}

int mpos_sealed_keys_aes(mpos_sealed_keys *keys, mpos_crypto_ctx *cc, mpos_dukpt_aes_terminal *t,
                         enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                         const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN])
{
    struct scheme_info si;
    enum mpos_dukpt_aes_key_type type;
    int rc = MPOS_ERR_ARG;
    if (keys == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(keys, sizeof(*keys));
    if (cc == NULL || t == NULL || ksn == NULL || scheme_info(scheme, &si) != MPOS_OK ||
        si.cipher != MPOS_CIPHER_AES ||
        (dir != MPOS_SEALED_DIR_REQUEST && dir != MPOS_SEALED_DIR_RESPONSE)) {
        goto exit;
    }
    type = scheme == MPOS_SEALED_AES128   ? MPOS_DUKPT_AES_KEY_AES128
           : scheme == MPOS_SEALED_AES192 ? MPOS_DUKPT_AES_KEY_AES192
                                          : MPOS_DUKPT_AES_KEY_AES256;
    /* X9.24-3-2017 6.3.2 Table 2: 2000 MAC generation / 3000 encryption for the request the
     * terminal sends, 2001 MAC verification / 3001 decryption for the response it reads. */
    rc = mpos_dukpt_aes_terminal_working_key(t, cc,
                                             dir == MPOS_SEALED_DIR_REQUEST
                                                 ? MPOS_DUKPT_AES_USAGE_MAC_GEN
                                                 : MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
                                             type, keys->mac_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_dukpt_aes_terminal_working_key(t, cc,
                                             dir == MPOS_SEALED_DIR_REQUEST
                                                 ? MPOS_DUKPT_AES_USAGE_DATA_ENC
                                                 : MPOS_DUKPT_AES_USAGE_DATA_DEC,
                                             type, keys->data_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    keys->scheme = scheme;
    keys->dir = dir;
    memcpy(keys->ksn, ksn, MPOS_DUKPT_AES_KSN_LEN);
    keys->ksn_len = MPOS_DUKPT_AES_KSN_LEN;
    keys->key_len = si.key_len;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(keys, sizeof(*keys));
    }
    return rc;
}

int mpos_sealed_keys_tdes(mpos_sealed_keys *keys, mpos_crypto_ctx *cc, mpos_dukpt_tdes_terminal *t,
                          enum mpos_sealed_dir dir, const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN])
{
    int rc = MPOS_ERR_ARG;
    if (keys == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(keys, sizeof(*keys));
    if (cc == NULL || t == NULL || ksn == NULL ||
        (dir != MPOS_SEALED_DIR_REQUEST && dir != MPOS_SEALED_DIR_RESPONSE)) {
        goto exit;
    }
    /* X9.24-1-2009 A.4: MAC request / data request variants for the request, MAC response /
     * data response variants for the response. */
    rc = mpos_dukpt_tdes_terminal_working_key(t, cc,
                                              dir == MPOS_SEALED_DIR_REQUEST
                                                  ? MPOS_DUKPT_TDES_USAGE_MAC_REQ
                                                  : MPOS_DUKPT_TDES_USAGE_MAC_RESP,
                                              keys->mac_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_dukpt_tdes_terminal_working_key(t, cc,
                                              dir == MPOS_SEALED_DIR_REQUEST
                                                  ? MPOS_DUKPT_TDES_USAGE_DATA_REQ
                                                  : MPOS_DUKPT_TDES_USAGE_DATA_RESP,
                                              keys->data_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    keys->scheme = MPOS_SEALED_TDES;
    keys->dir = dir;
    memcpy(keys->ksn, ksn, MPOS_DUKPT_TDES_KSN_LEN);
    keys->ksn_len = MPOS_DUKPT_TDES_KSN_LEN;
    keys->key_len = MPOS_DUKPT_TDES_KEY_LEN;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(keys, sizeof(*keys));
    }
    return rc;
}

/* ---- crypto steps --------------------------------------------------------------------------- */

/* The MAC of a message (si->mac_len bytes to mac). */
static int compute_mac(mpos_crypto_ctx *cc, const struct scheme_info *si, const uint8_t *key,
                       const uint8_t *data, size_t len, uint8_t mac[MPOS_SEALED_MAX_MAC_LEN])
{
    if (si->cipher == MPOS_CIPHER_AES) {
        /* NIST SP 800-38B CMAC, untruncated. */
        return mpos_cmac(cc, MPOS_CIPHER_AES, key, si->key_len, data, len, mac);
    }
    /* ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19), padding method 2. */
    return mpos_mac_iso9797_alg3(cc, key, si->key_len, MPOS_MAC_PAD_2, data, len, mac);
}

/* ISO/IEC 9797-1 padding method 2: 0x80, then zeros to a whole number of blocks (always
 * adds at least one byte). buf has cap bytes and holds len; returns the padded length or 0
 * when it does not fit. */
static size_t pad2(uint8_t *buf, size_t len, size_t cap, size_t block)
{
    size_t padded = (len / block + 1) * block;
    if (padded > cap) {
        return 0;
    }
    buf[len] = 0x80;
    memset(buf + len + 1, 0, padded - len - 1);
    return padded;
}

/* Removes padding method 2 from len bytes: the length of the content, or SIZE_MAX when the
 * padding is not well formed. */
static size_t unpad2(const uint8_t *buf, size_t len, size_t block)
{
    size_t i = len;
    while (i > 0 && buf[i - 1] == 0x00) {
        i--;
    }
    if (i == 0 || buf[i - 1] != 0x80 || len - (i - 1) > block) {
        return SIZE_MAX;
    }
    return i - 1;
}

static int get_iv(mpos_sealed_rng_fn rng, void *rng_ctx, uint8_t *iv, size_t len)
{
    int rc = rng != NULL ? rng(rng_ctx, iv, len) : mpos_random_bytes(iv, len);
    if (rc != MPOS_OK) {
        mpos_cleanse(iv, len);
        return rc < 0 ? rc : MPOS_ERR_RNG;
    }
    return MPOS_OK;
}

/* ---- field formats ------------------------------------------------------------------------- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_printable(char c)
{
    return c >= 0x20 && c <= 0x7E;
}

/* The string in the cap-byte array s is NUL-terminated, min..max characters, each ok. */
static int str_ok(const char *s, size_t cap, size_t min, size_t max, int (*ok)(char))
{
    const char *nul = memchr(s, '\0', cap);
    if (nul == NULL) {
        return 0;
    }
    size_t n = (size_t)(nul - s);
    if (n < min || n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok(s[i])) {
            return 0;
        }
    }
    return 1;
}

#define STR_OK(field, min, max, ok) str_ok((field), sizeof(field), (min), (max), (ok))
#define OPT_ALNUM(field, n)         (STR_OK(field, 0, 0, is_alnum) || STR_OK(field, n, n, is_alnum))

/* Unsigned BCD (EMV format n) of n bytes, right-justified. */
static void bcd_put(uint8_t *out, size_t n, uint64_t v)
{
    for (size_t i = n; i > 0; i--) {
        out[i - 1] = (uint8_t)(v % 10);
        v /= 10;
        out[i - 1] = (uint8_t)(out[i - 1] | (uint8_t)((v % 10) << 4));
        v /= 10;
    }
}

static int bcd_get(const uint8_t *in, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = in[i] >> 4, lo = in[i] & 0x0Fu;
        if (hi > 9 || lo > 9) {
            return MPOS_ERR_FORMAT;
        }
        r = r * 100 + hi * 10 + lo;
    }
    *v = r;
    return MPOS_OK;
}

/* n digits (even) as BCD and back. */
static void digits_to_bcd(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i += 2) {
        out[i / 2] = (uint8_t)(((unsigned)(s[i] - '0') << 4) | (unsigned)(s[i + 1] - '0'));
    }
}

static int bcd_to_digits(const uint8_t *in, size_t nbytes, char *out)
{
    for (size_t i = 0; i < nbytes; i++) {
        unsigned hi = in[i] >> 4, lo = in[i] & 0x0Fu;
        if (hi > 9 || lo > 9) {
            return MPOS_ERR_FORMAT;
        }
        out[2 * i] = (char)('0' + hi);
        out[2 * i + 1] = (char)('0' + lo);
    }
    out[2 * nbytes] = '\0';
    return MPOS_OK;
}

static unsigned two_digits(const char *s)
{
    return (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
}

/* YYYYMMDDhhmmss, a real UTC time of 2000..2099. */
static int datetime_ok(const char *s, size_t cap)
{
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!str_ok(s, cap, MPOS_SEALED_DATETIME_LEN, MPOS_SEALED_DATETIME_LEN, is_digit) ||
        two_digits(s) != 20) {
        return 0;
    }
    unsigned y = two_digits(s + 2), mo = two_digits(s + 4), d = two_digits(s + 6);
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && y % 4 != 0)) {
        return 0; /* within 2000..2099 every fourth year is a leap year */
    }
    return two_digits(s + 8) <= 23 && two_digits(s + 10) <= 59 && two_digits(s + 12) <= 59;
}

/* YYMM with a month of 01..12. */
static int expiry_ok(const char *s, size_t cap)
{
    if (!str_ok(s, cap, 4, 4, is_digit)) {
        return 0;
    }
    unsigned mm = two_digits(s + 2);
    return mm >= 1 && mm <= 12;
}

static int32_t int32_from_u32(uint32_t u)
{
    /* Two's complement without implementation-defined conversion. */
    return u <= 0x7FFFFFFFu ? (int32_t)u : (int32_t)(-(int32_t)(~u) - 1);
}

static void location_put(uint8_t out[LOCATION_LEN], const mpos_link_location *l)
{
    mpos_store_be32(out, (uint32_t)l->lat_e7);
    mpos_store_be32(out + 4, (uint32_t)l->lon_e7);
    mpos_store_be32(out + 8, l->accuracy_m);
    mpos_store_be32(out + 12, (uint32_t)(l->time >> 32));
    mpos_store_be32(out + 16, (uint32_t)l->time);
}

static void location_get(const uint8_t in[LOCATION_LEN], mpos_link_location *l)
{
    l->lat_e7 = int32_from_u32(mpos_load_be32(in));
    l->lon_e7 = int32_from_u32(mpos_load_be32(in + 4));
    l->accuracy_m = mpos_load_be32(in + 8);
    l->time = ((uint64_t)mpos_load_be32(in + 12) << 32) | mpos_load_be32(in + 16);
}

/* PAN as EMV format cn (digits, F-padded to a whole byte); returns the byte length. */
static size_t pan_to_cn(const char *pan, uint8_t out[10])
{
    size_t n = strlen(pan), bytes = (n + 1) / 2;
    memset(out, 0xFF, bytes);
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(pan[i] - '0');
        out[i / 2] = (uint8_t)(i % 2 == 0 ? (d << 4) | 0x0Fu : (out[i / 2] & 0xF0u) | d);
    }
    return bytes;
}

/* Format cn back to digits: digits, then at most one F as the last nibble. */
static int pan_from_cn(const uint8_t *v, size_t len, char out[MPOS_SEALED_PAN_MAX_LEN + 1])
{
    size_t n = 0;
    for (size_t i = 0; i < 2 * len; i++) {
        unsigned nib = (i % 2 == 0) ? (unsigned)(v[i / 2] >> 4) : (unsigned)(v[i / 2] & 0x0Fu);
        if (nib <= 9 && n == i) {
            if (n == MPOS_SEALED_PAN_MAX_LEN) {
                return MPOS_ERR_FORMAT;
            }
            out[n++] = (char)('0' + nib);
        } else if (!(nib == 0x0F && i == 2 * len - 1)) {
            return MPOS_ERR_FORMAT;
        }
    }
    out[n] = '\0';
    return n >= MPOS_SEALED_PAN_MIN_LEN ? MPOS_OK : MPOS_ERR_FORMAT;
}

/* Track 2 equivalent data (EMV 4.3 Book 3 Annex A, tag 57): PAN, separator D, expiry YYMM,
 * service code, discretionary digits, F pad only as the last nibble of an odd count. Checks
 * that it carries pan and expiry. */
static int track2_ok(const uint8_t *v, size_t len, const char *pan, const char *expiry)
{
    size_t nibbles = 2 * len, sep = SIZE_MAX, pan_len = strlen(pan);
    if (len == 0 || len > MPOS_SEALED_TRACK2_MAX_LEN) {
        return 0;
    }
    for (size_t i = 0; i < nibbles; i++) {
        unsigned nib = (i % 2 == 0) ? (unsigned)(v[i / 2] >> 4) : (unsigned)(v[i / 2] & 0x0Fu);
        if (nib == 0x0D && sep == SIZE_MAX) {
            sep = i;
        } else if (nib == 0x0F) {
            if (i != nibbles - 1) {
                return 0;
            }
            nibbles--;
        } else if (nib > 9) {
            return 0;
        } else if (sep == SIZE_MAX ? (i >= pan_len || (char)('0' + nib) != pan[i])
                                   : (i - sep <= 4 && (char)('0' + nib) != expiry[i - sep - 1])) {
            return 0;
        }
    }
    /* The PAN in full before D, then expiry and a 3-digit service code at least; at most the
     * 37 characters of a track 2 (ISO/IEC 7813 10.2). */
    return sep == pan_len && nibbles >= sep + 1 + 7 && nibbles <= 37;
}

/* ---- message layout ------------------------------------------------------------------------ */

struct spec {
    uint32_t tag;
    uint16_t min, max;
    uint8_t required;
};

struct slot {
    const uint8_t *v;
    size_t len;
    int present;
};

/* The request, in order (docs/protocol.md). */
enum {
    RQ_VERSION,
    RQ_MSG_TYPE,
    RQ_SCHEME,
    RQ_KSN,
    RQ_SEQUENCE,
    RQ_TXN_TYPE,
    RQ_AMOUNT,
    RQ_CURRENCY,
    RQ_MERCHANT_ID,
    RQ_TERMINAL_ID,
    RQ_DATETIME,
    RQ_ENTRY_MODE,
    RQ_FALLBACK,
    RQ_MASKED_PAN,
    RQ_ORIGINAL_REF,
    RQ_LOCATION,
    RQ_IV,
    RQ_ENCRYPTED,
    RQ_PIN_FORMAT,
    RQ_PIN_BLOCK,
    RQ_REVERSAL_REASON,
    RQ_RETRY,
    RQ_MAC,
    RQ_COUNT
};

static const struct spec request_spec[RQ_COUNT] = {
    [RQ_VERSION] = {T_VERSION, 1, 1, 1},
    [RQ_MSG_TYPE] = {T_MSG_TYPE, 1, 1, 1},
    [RQ_SCHEME] = {T_SCHEME, 1, 1, 1},
    [RQ_KSN] = {T_KSN, MPOS_DUKPT_TDES_KSN_LEN, MPOS_DUKPT_AES_KSN_LEN, 1},
    [RQ_SEQUENCE] = {T_SEQUENCE, 4, 4, 1},
    [RQ_TXN_TYPE] = {T_TXN_TYPE, 1, 1, 1},
    [RQ_AMOUNT] = {T_AMOUNT, AMOUNT_LEN, AMOUNT_LEN, 1},
    [RQ_CURRENCY] = {T_CURRENCY, CURRENCY_LEN, CURRENCY_LEN, 1},
    [RQ_MERCHANT_ID] = {T_MERCHANT_ID, MPOS_SEALED_MERCHANT_ID_LEN, MPOS_SEALED_MERCHANT_ID_LEN, 1},
    [RQ_TERMINAL_ID] = {T_TERMINAL_ID, MPOS_SEALED_TERMINAL_ID_LEN, MPOS_SEALED_TERMINAL_ID_LEN, 1},
    [RQ_DATETIME] = {T_DATETIME, DATETIME_BCD, DATETIME_BCD, 1},
    [RQ_ENTRY_MODE] = {T_ENTRY_MODE, 1, 1, 1},
    [RQ_FALLBACK] = {T_FALLBACK, 1, 1, 1},
    [RQ_MASKED_PAN] = {T_MASKED_PAN, MPOS_SEALED_PAN_MIN_LEN, MPOS_SEALED_PAN_MAX_LEN, 0},
    [RQ_ORIGINAL_REF] = {T_ORIGINAL_REF, 1, MPOS_SEALED_REF_MAX_LEN, 0},
    [RQ_LOCATION] = {T_LOCATION, LOCATION_LEN, LOCATION_LEN, 0},
    [RQ_IV] = {T_IV, MPOS_DES_BLOCK_LEN, MPOS_AES_BLOCK_LEN, 0},
    [RQ_ENCRYPTED] = {T_ENCRYPTED, MPOS_DES_BLOCK_LEN, CARD_CT_MAX, 0},
    [RQ_PIN_FORMAT] = {T_PIN_FORMAT, 1, 1, 0},
    [RQ_PIN_BLOCK] = {T_PIN_BLOCK, 8, 16, 0},
    [RQ_REVERSAL_REASON] = {T_REVERSAL_REASON, 1, 1, 0},
    [RQ_RETRY] = {T_RETRY, 1, 1, 0},
    [RQ_MAC] = {T_MAC, 8, MPOS_SEALED_MAX_MAC_LEN, 1},
};

/* The response, in order. */
enum {
    RS_VERSION,
    RS_MSG_TYPE,
    RS_SCHEME,
    RS_KSN,
    RS_SEQUENCE,
    RS_RESPONSE_CODE,
    RS_AUTH_CODE,
    RS_RRN,
    RS_ARC,
    RS_IAD,
    RS_IV,
    RS_ENCRYPTED,
    RS_MAC,
    RS_COUNT
};

static const struct spec response_spec[RS_COUNT] = {
    [RS_VERSION] = {T_VERSION, 1, 1, 1},
    [RS_MSG_TYPE] = {T_MSG_TYPE, 1, 1, 1},
    [RS_SCHEME] = {T_SCHEME, 1, 1, 1},
    [RS_KSN] = {T_KSN, MPOS_DUKPT_TDES_KSN_LEN, MPOS_DUKPT_AES_KSN_LEN, 1},
    [RS_SEQUENCE] = {T_SEQUENCE, 4, 4, 1},
    [RS_RESPONSE_CODE] = {T_RESPONSE_CODE, 2, 2, 1},
    [RS_AUTH_CODE] = {T_AUTH_CODE, 6, 6, 0},
    [RS_RRN] = {T_RRN, 12, 12, 0},
    [RS_ARC] = {T_ARC, 2, 2, 0},
    [RS_IAD] = {T_IAD, MPOS_SEALED_IAD_MIN_LEN, MPOS_SEALED_IAD_MAX_LEN, 0},
    [RS_IV] = {T_IV, MPOS_DES_BLOCK_LEN, MPOS_AES_BLOCK_LEN, 0},
    [RS_ENCRYPTED] = {T_ENCRYPTED, MPOS_DES_BLOCK_LEN, RESP_CT_MAX, 0},
    [RS_MAC] = {T_MAC, 8, MPOS_SEALED_MAX_MAC_LEN, 1},
};

/* The encrypted card data, in order. */
enum { CD_PAN, CD_TRACK2, CD_EXPIRY, CD_EMV, CD_COUNT };

static const struct spec card_spec[CD_COUNT] = {
    [CD_PAN] = {T_PAN, 6, 10, 1},
    [CD_TRACK2] = {T_TRACK2, 10, MPOS_SEALED_TRACK2_MAX_LEN, 0},
    [CD_EXPIRY] = {T_EXPIRY, EXPIRY_BCD, EXPIRY_BCD, 1},
    [CD_EMV] = {T_EMV_DATA, 1, MPOS_SEALED_MAX_EMV_LEN, 0},
};

/* Splits msg into the slots of spec: canonical BER-TLV (MPOS_TLV_STRICT), primitive objects
 * only, the tags in the spec's order, each at most once, the required ones present, lengths
 * in range. When the spec ends with the MAC, nothing may follow it and *mac_at is the offset
 * of its first tag byte (the MAC covers msg[0 .. *mac_at)). */
static int split(const uint8_t *msg, size_t len, const struct spec *spec, size_t n,
                 struct slot *slots, size_t *mac_at)
{
    mpos_tlv_iter it;
    mpos_tlv obj;
    size_t k = 0;
    memset(slots, 0, n * sizeof(*slots));
    mpos_tlv_iter_init(&it, msg, len, MPOS_TLV_STRICT);
    while (mpos_tlv_more(&it)) {
        if (mpos_tlv_next(&it, &obj) != MPOS_OK || obj.constructed) {
            return MPOS_ERR_FORMAT;
        }
        while (k < n && spec[k].tag != obj.tag) {
            if (spec[k].required) {
                return MPOS_ERR_FORMAT; /* a required field missing, or out of order */
            }
            k++;
        }
        if (k == n || obj.len < spec[k].min || obj.len > spec[k].max) {
            return MPOS_ERR_FORMAT; /* unknown, repeated, out of order, or a bad length */
        }
        slots[k].v = obj.value;
        slots[k].len = obj.len;
        slots[k].present = 1;
        if (obj.tag == T_MAC && mac_at != NULL) {
            *mac_at = (size_t)(obj.raw - msg);
        }
        k++;
    }
    for (; k < n; k++) {
        if (spec[k].required) {
            return MPOS_ERR_FORMAT;
        }
    }
    return MPOS_OK;
}

/* ---- validation ---------------------------------------------------------------------------- */

static int txn_type_ok(unsigned t)
{
    return t >= MPOS_LINK_TXN_SALE && t <= MPOS_LINK_TXN_BALANCE;
}

/* A reversal says why (1..4, docs/protocol.md 2.3 DF34); a request has no reason. */
static int reversal_reason_ok(unsigned msg_type, unsigned reason)
{
    if (msg_type == MPOS_SEALED_MSG_REVERSAL) {
        return reason >= MPOS_SEALED_REV_NO_RESPONSE && reason <= MPOS_SEALED_REV_CANCELLED;
    }
    return reason == 0;
}

/* The card data is complete and consistent for the entry mode. */
static int card_ok(const mpos_sealed_card *c, unsigned entry_mode)
{
    if (!STR_OK(c->pan, MPOS_SEALED_PAN_MIN_LEN, MPOS_SEALED_PAN_MAX_LEN, is_digit) ||
        !expiry_ok(c->expiry, sizeof(c->expiry)) || c->track2_len > sizeof(c->track2) ||
        c->emv_len > sizeof(c->emv)) {
        return 0;
    }
    if (c->track2_len > 0 && !track2_ok(c->track2, c->track2_len, c->pan, c->expiry)) {
        return 0;
    }
    if (c->emv_len > 0 && mpos_tlv_validate(c->emv, c->emv_len, 0) != MPOS_OK) {
        return 0; /* field 55: well-formed BER-TLV, no padding */
    }
    if (entry_mode == MPOS_ENTRY_CHIP) {
        return c->emv_len > 0;
    }
    return c->track2_len > 0 && c->emv_len == 0; /* a stripe read: track 2, no chip data */
}

/* Every rule of docs/protocol.md that the request's fields must meet (scheme, KSN and masked
 * PAN excepted: they come from the keys and the PAN). */
static int request_ok(const mpos_sealed_request *r, const struct scheme_info *si)
{
    unsigned t = r->txn_type, em = r->entry_mode;
    int needs_ref = t == MPOS_LINK_TXN_VOID || t == MPOS_LINK_TXN_REFUND;
    int has_card = em != MPOS_ENTRY_NONE;
    if ((r->msg_type != MPOS_SEALED_MSG_REQUEST && r->msg_type != MPOS_SEALED_MSG_REVERSAL) ||
        !reversal_reason_ok(r->msg_type, r->reversal_reason) || !txn_type_ok(t) ||
        r->amount > MPOS_SEALED_MAX_AMOUNT ||
        (t == MPOS_LINK_TXN_BALANCE ? r->amount != 0 : r->amount == 0) || r->currency < 1 ||
        r->currency > 999) {
        return 0;
    }
    if (!STR_OK(r->merchant_id, MPOS_SEALED_MERCHANT_ID_LEN, MPOS_SEALED_MERCHANT_ID_LEN,
                is_printable) ||
        !STR_OK(r->terminal_id, MPOS_SEALED_TERMINAL_ID_LEN, MPOS_SEALED_TERMINAL_ID_LEN,
                is_printable) ||
        !datetime_ok(r->datetime, sizeof(r->datetime)) ||
        !STR_OK(r->original_ref, needs_ref ? 1u : 0u, needs_ref ? MPOS_SEALED_REF_MAX_LEN : 0u,
                is_alnum)) {
        return 0;
    }
    if ((em != MPOS_ENTRY_NONE && em != MPOS_ENTRY_CHIP && em != MPOS_ENTRY_MAGSTRIPE) ||
        r->fallback > 1 || (r->fallback && em != MPOS_ENTRY_MAGSTRIPE)) {
        return 0;
    }
    if ((r->has_location != 0 && r->has_location != 1) ||
        (r->has_location && !mpos_link_location_valid(&r->location))) {
        return 0;
    }
    if (has_card && !card_ok(&r->card, em)) {
        return 0;
    }
    if (r->has_pin != 0 && r->has_pin != 1) {
        return 0;
    }
    if (r->has_pin &&
        (!has_card || r->pin_format != si->pin_format || r->pin_block_len != si->pin_block_len)) {
        return 0; /* a PIN belongs to a card; ISO 9564-1 format 4 with AES, 0 with TDES */
    }
    /* A retry (DF35) re-sends a REQUEST under a new KSN: the PIN block of the first send is
     * bound to the first KSN and the clear PIN is gone, so a retry never carries one; a
     * reversal is never a retry (it has its own pending-record resend). */
    if (r->retry > 1 || (r->retry && (r->msg_type != MPOS_SEALED_MSG_REQUEST || r->has_pin))) {
        return 0;
    }
    return 1;
}

static int response_ok(const mpos_sealed_response *r)
{
    return STR_OK(r->response_code, 2, 2, is_alnum) && OPT_ALNUM(r->auth_code, 6) &&
           OPT_ALNUM(r->rrn, 12) && OPT_ALNUM(r->arc, 2) &&
           (r->iad_len == 0 ||
            (r->iad_len >= MPOS_SEALED_IAD_MIN_LEN && r->iad_len <= MPOS_SEALED_IAD_MAX_LEN)) &&
           r->data_len <= MPOS_SEALED_MAX_RESP_DATA_LEN;
}

/* ---- sealing ------------------------------------------------------------------------------- */

#define PUT(tag, v, n)                                                                             \
    do {                                                                                           \
        rc = mpos_tlv_put(out, cap, &len, (tag), (v), (n));                                        \
        if (rc != MPOS_OK) {                                                                       \
            goto exit;                                                                             \
        }                                                                                          \
    } while (0)

#define PUT_U8(tag, x)                                                                             \
    do {                                                                                           \
        uint8_t b_ = (uint8_t)(x);                                                                 \
        PUT((tag), &b_, 1);                                                                        \
    } while (0)

/* Pads plain (holding plain_len of cap bytes), encrypts it in place under a fresh IV and
 * appends IV and ciphertext. */
static int put_encrypted(mpos_crypto_ctx *cc, const struct scheme_info *si, const uint8_t *key,
                         mpos_sealed_rng_fn rng, void *rng_ctx, uint8_t *plain, size_t plain_len,
                         size_t plain_cap, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t iv[MPOS_MAX_BLOCK_LEN];
    int rc;
    size_t padded = pad2(plain, plain_len, plain_cap, si->block);
    if (padded == 0) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = get_iv(rng, rng_ctx, iv, si->block);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_tlv_put(out, cap, len, T_IV, iv, si->block);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* CBC with a random IV (NIST SP 800-38A 6.2); encrypt-then-MAC, the MAC covers both. */
    rc = mpos_cipher_cbc(cc, si->cipher, 1, key, si->key_len, iv, plain, plain, padded);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_tlv_put(out, cap, len, T_ENCRYPTED, plain, padded);
exit:
    MPOS_WIPE_BUFFER(iv);
    return rc;
}

/* Appends the MAC of out[0 .. *len). */
static int put_mac(mpos_crypto_ctx *cc, const struct scheme_info *si, const uint8_t *key,
                   uint8_t *out, size_t cap, size_t *len)
{
    uint8_t mac[MPOS_SEALED_MAX_MAC_LEN];
    int rc = compute_mac(cc, si, key, out, *len, mac);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_MAC, mac, si->mac_len);
    }
    MPOS_WIPE_BUFFER(mac);
    return rc;
}

int mpos_sealed_seal_request(mpos_crypto_ctx *cc, const mpos_sealed_keys *keys,
                             const mpos_sealed_request *req, mpos_sealed_rng_fn rng, void *rng_ctx,
                             uint8_t *out, size_t cap, size_t *out_len)
{
    int rc = MPOS_ERR_ARG;
    struct scheme_info si;
    uint8_t plain[CARD_CT_MAX], field[10];
    char masked[MPOS_SEALED_PAN_MAX_LEN + 1];
    size_t len = 0, plain_len = 0;
    int has_card;
    if (out_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (cc == NULL || keys == NULL || req == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = keys_check(keys, MPOS_SEALED_DIR_REQUEST, &si);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    if (!request_ok(req, &si)) {
        goto exit;
    }
    has_card = req->entry_mode != MPOS_ENTRY_NONE;
    /* G-ACCT-2 / T-LIMIT-2: the clear masked PAN is made here, from the PAN itself. */
    if (has_card) {
        rc = mpos_msr_mask_pan(req->card.pan, masked);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }

    /* The clear part, in the order of docs/protocol.md. */
    PUT_U8(T_VERSION, MPOS_SEALED_VERSION);
    PUT_U8(T_MSG_TYPE, req->msg_type);
    PUT_U8(T_SCHEME, keys->scheme);
    PUT(T_KSN, keys->ksn, keys->ksn_len);
    mpos_store_be32(field, req->sequence);
    PUT(T_SEQUENCE, field, 4);
    PUT_U8(T_TXN_TYPE, req->txn_type);
    bcd_put(field, AMOUNT_LEN, req->amount);
    PUT(T_AMOUNT, field, AMOUNT_LEN);
    bcd_put(field, CURRENCY_LEN, req->currency);
    PUT(T_CURRENCY, field, CURRENCY_LEN);
    PUT(T_MERCHANT_ID, (const uint8_t *)req->merchant_id, MPOS_SEALED_MERCHANT_ID_LEN);
    PUT(T_TERMINAL_ID, (const uint8_t *)req->terminal_id, MPOS_SEALED_TERMINAL_ID_LEN);
    digits_to_bcd(req->datetime, MPOS_SEALED_DATETIME_LEN, field);
    PUT(T_DATETIME, field, DATETIME_BCD);
    PUT_U8(T_ENTRY_MODE, req->entry_mode);
    PUT_U8(T_FALLBACK, req->fallback);
    if (has_card) {
        PUT(T_MASKED_PAN, (const uint8_t *)masked, strlen(masked));
    }
    if (req->original_ref[0] != '\0') {
        PUT(T_ORIGINAL_REF, (const uint8_t *)req->original_ref, strlen(req->original_ref));
    }
    if (req->has_location) {
        uint8_t loc[LOCATION_LEN];
        location_put(loc, &req->location);
        PUT(T_LOCATION, loc, LOCATION_LEN);
    }

    /* The card data, encrypted under the request data key. */
    if (has_card) {
        uint8_t cn[10];
        size_t cn_len = pan_to_cn(req->card.pan, cn);
        rc = mpos_tlv_put(plain, sizeof(plain), &plain_len, T_PAN, cn, cn_len);
        MPOS_WIPE_BUFFER(cn);
        if (rc == MPOS_OK && req->card.track2_len > 0) {
            rc = mpos_tlv_put(plain, sizeof(plain), &plain_len, T_TRACK2, req->card.track2,
                              req->card.track2_len);
        }
        if (rc == MPOS_OK) {
            uint8_t exp[EXPIRY_BCD];
            digits_to_bcd(req->card.expiry, 4, exp);
            rc = mpos_tlv_put(plain, sizeof(plain), &plain_len, T_EXPIRY, exp, EXPIRY_BCD);
            MPOS_WIPE_BUFFER(exp);
        }
        if (rc == MPOS_OK && req->card.emv_len > 0) {
            rc = mpos_tlv_put(plain, sizeof(plain), &plain_len, T_EMV_DATA, req->card.emv,
                              req->card.emv_len);
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
        rc = put_encrypted(cc, &si, keys->data_key, rng, rng_ctx, plain, plain_len, sizeof(plain),
                           out, cap, &len);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    /* The PIN block as the PIN pad encrypted it under the DUKPT PIN key. */
    if (req->has_pin) {
        PUT_U8(T_PIN_FORMAT, req->pin_format);
        PUT(T_PIN_BLOCK, req->pin_block, req->pin_block_len);
    }
    /* A reversal's reason, in clear for the back end's ISO 8583 DE 39, and MAC'd. */
    if (req->msg_type == MPOS_SEALED_MSG_REVERSAL) {
        PUT_U8(T_REVERSAL_REASON, req->reversal_reason);
    }
    /* A retry says so, in clear and MAC'd, so the back end never starts a new charge on it. */
    if (req->retry) {
        PUT_U8(T_RETRY, 1);
    }
    /* Last, the MAC over everything before it. */
    rc = put_mac(cc, &si, keys->mac_key, out, cap, &len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    *out_len = len;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(out, len); /* no half-built message */
    }
    MPOS_WIPE_BUFFER(plain);
    MPOS_WIPE_BUFFER(field);
    MPOS_WIPE_BUFFER(masked);
    return rc;
}

int mpos_sealed_seal_response(mpos_crypto_ctx *cc, mpos_sealed_key_fn get_keys, void *key_ctx,
                              const mpos_sealed_response *resp, mpos_sealed_rng_fn rng,
                              void *rng_ctx, uint8_t *out, size_t cap, size_t *out_len)
{
    int rc = MPOS_ERR_ARG;
    struct scheme_info si;
    mpos_sealed_keys keys;
    uint8_t plain[RESP_CT_MAX], seq[4];
    size_t len = 0;
    memset(&keys, 0, sizeof(keys));
    if (out_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *out_len = 0;
    if (cc == NULL || get_keys == NULL || resp == NULL || out == NULL ||
        scheme_info(resp->scheme, &si) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    rc = MPOS_ERR_FORMAT;
    if (resp->ksn_len != si.ksn_len || !response_ok(resp)) {
        goto exit;
    }
    rc = get_keys(key_ctx, resp->scheme, MPOS_SEALED_DIR_RESPONSE, resp->ksn, resp->ksn_len, &keys);
    if (rc != MPOS_OK) {
        rc = rc < 0 ? rc : MPOS_ERR_KEY;
        goto exit;
    }
    rc = keys_check(&keys, MPOS_SEALED_DIR_RESPONSE, &si);
    if (rc == MPOS_OK &&
        (keys.scheme != resp->scheme || memcmp(keys.ksn, resp->ksn, resp->ksn_len) != 0)) {
        rc = MPOS_ERR_KEY; /* the provider answered for another KSN */
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    PUT_U8(T_VERSION, MPOS_SEALED_VERSION);
    PUT_U8(T_MSG_TYPE, MPOS_SEALED_MSG_RESPONSE);
    PUT_U8(T_SCHEME, resp->scheme);
    PUT(T_KSN, resp->ksn, resp->ksn_len);
    mpos_store_be32(seq, resp->sequence);
    PUT(T_SEQUENCE, seq, 4);
    PUT(T_RESPONSE_CODE, (const uint8_t *)resp->response_code, 2);
    if (resp->auth_code[0] != '\0') {
        PUT(T_AUTH_CODE, (const uint8_t *)resp->auth_code, 6);
    }
    if (resp->rrn[0] != '\0') {
        PUT(T_RRN, (const uint8_t *)resp->rrn, 12);
    }
    if (resp->arc[0] != '\0') {
        PUT(T_ARC, (const uint8_t *)resp->arc, 2);
    }
    if (resp->iad_len > 0) {
        PUT(T_IAD, resp->iad, resp->iad_len);
    }
    if (resp->data_len > 0) {
        memcpy(plain, resp->data, resp->data_len);
        rc = put_encrypted(cc, &si, keys.data_key, rng, rng_ctx, plain, resp->data_len,
                           sizeof(plain), out, cap, &len);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    rc = put_mac(cc, &si, keys.mac_key, out, cap, &len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    *out_len = len;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(out, len);
    }
    mpos_sealed_keys_clear(&keys);
    MPOS_WIPE_BUFFER(plain);
    return rc;
}

/* ---- opening ------------------------------------------------------------------------------- */

/* Verifies the MAC of msg[0 .. mac_at) against the received one, in constant time. */
static int verify_mac(mpos_crypto_ctx *cc, const struct scheme_info *si, const uint8_t *key,
                      const uint8_t *msg, size_t mac_at, const struct slot *mac)
{
    uint8_t computed[MPOS_SEALED_MAX_MAC_LEN];
    int rc = MPOS_ERR_FORMAT;
    if (mac->len != si->mac_len) {
        goto exit;
    }
    rc = compute_mac(cc, si, key, msg, mac_at, computed);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_mac_verify(computed, si->mac_len, mac->v, mac->len);
exit:
    MPOS_WIPE_BUFFER(computed);
    return rc;
}

/* Decrypts IV + ciphertext into plain (cap bytes) and removes the padding. */
static int decrypt(mpos_crypto_ctx *cc, const struct scheme_info *si, const uint8_t *key,
                   const struct slot *iv, const struct slot *ct, uint8_t *plain, size_t cap,
                   size_t *plain_len)
{
    int rc;
    if (iv->len != si->block || ct->len % si->block != 0 || ct->len > cap) {
        return MPOS_ERR_FORMAT;
    }
    rc = mpos_cipher_cbc(cc, si->cipher, 0, key, si->key_len, iv->v, ct->v, plain, ct->len);
    if (rc != MPOS_OK) {
        return rc;
    }
    size_t n = unpad2(plain, ct->len, si->block);
    if (n == SIZE_MAX) {
        return MPOS_ERR_FORMAT;
    }
    *plain_len = n;
    return MPOS_OK;
}

/* The slot holds exactly the characters of a string field. */
static void slot_str(const struct slot *s, char *out, size_t cap)
{
    if (s->present && s->len < cap) {
        memcpy(out, s->v, s->len);
        out[s->len] = '\0';
    }
}

/* A string field's bytes contain no NUL (a NUL would hide characters from the checks). */
static int slot_no_nul(const struct slot *s)
{
    return !s->present || memchr(s->v, '\0', s->len) == NULL;
}

static int open_card(const uint8_t *plain, size_t len, mpos_sealed_card *c)
{
    struct slot cs[CD_COUNT];
    int rc = split(plain, len, card_spec, CD_COUNT, cs, NULL);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (pan_from_cn(cs[CD_PAN].v, cs[CD_PAN].len, c->pan) != MPOS_OK ||
        bcd_to_digits(cs[CD_EXPIRY].v, EXPIRY_BCD, c->expiry) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (cs[CD_TRACK2].present) {
        memcpy(c->track2, cs[CD_TRACK2].v, cs[CD_TRACK2].len);
        c->track2_len = cs[CD_TRACK2].len;
    }
    if (cs[CD_EMV].present) {
        memcpy(c->emv, cs[CD_EMV].v, cs[CD_EMV].len);
        c->emv_len = cs[CD_EMV].len;
    }
    return MPOS_OK;
}

int mpos_sealed_open_request(mpos_crypto_ctx *cc, mpos_sealed_key_fn get_keys, void *key_ctx,
                             const uint8_t *msg, size_t len, mpos_sealed_request *req)
{
    int rc = MPOS_ERR_ARG;
    struct slot s[RQ_COUNT];
    struct scheme_info si;
    mpos_sealed_keys keys;
    uint8_t plain[CARD_CT_MAX];
    size_t mac_at = 0, plain_len = 0;
    uint64_t v;
    char masked[MPOS_SEALED_PAN_MAX_LEN + 1];
    memset(&keys, 0, sizeof(keys));
    if (req == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(req, sizeof(*req));
    if (cc == NULL || get_keys == NULL || (msg == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    rc = MPOS_ERR_FORMAT;
    if (len > MPOS_SEALED_MAX_REQUEST_LEN ||
        split(msg, len, request_spec, RQ_COUNT, s, &mac_at) != MPOS_OK ||
        s[RQ_VERSION].v[0] != MPOS_SEALED_VERSION ||
        scheme_info(s[RQ_SCHEME].v[0], &si) != MPOS_OK || s[RQ_KSN].len != si.ksn_len) {
        goto exit;
    }
    req->scheme = (enum mpos_sealed_scheme)s[RQ_SCHEME].v[0];
    memcpy(req->ksn, s[RQ_KSN].v, si.ksn_len);
    req->ksn_len = si.ksn_len;

    /* The keys of this KSN, then the MAC, before anything else is believed. */
    rc = get_keys(key_ctx, req->scheme, MPOS_SEALED_DIR_REQUEST, req->ksn, req->ksn_len, &keys);
    if (rc != MPOS_OK) {
        rc = rc < 0 ? rc : MPOS_ERR_KEY;
        goto exit;
    }
    rc = keys_check(&keys, MPOS_SEALED_DIR_REQUEST, &si);
    if (rc == MPOS_OK &&
        (keys.scheme != req->scheme || memcmp(keys.ksn, req->ksn, req->ksn_len) != 0)) {
        rc = MPOS_ERR_KEY;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = verify_mac(cc, &si, keys.mac_key, msg, mac_at, &s[RQ_MAC]);
    if (rc != MPOS_OK) {
        goto exit;
    }

    /* Authentic: now decode and check every field. */
    rc = MPOS_ERR_FORMAT;
    req->msg_type = s[RQ_MSG_TYPE].v[0];
    req->sequence = mpos_load_be32(s[RQ_SEQUENCE].v);
    req->txn_type = s[RQ_TXN_TYPE].v[0];
    if (bcd_get(s[RQ_AMOUNT].v, AMOUNT_LEN, &req->amount) != MPOS_OK ||
        bcd_get(s[RQ_CURRENCY].v, CURRENCY_LEN, &v) != MPOS_OK || v > 999 ||
        bcd_to_digits(s[RQ_DATETIME].v, DATETIME_BCD, req->datetime) != MPOS_OK ||
        !slot_no_nul(&s[RQ_MERCHANT_ID]) || !slot_no_nul(&s[RQ_TERMINAL_ID]) ||
        !slot_no_nul(&s[RQ_MASKED_PAN]) || !slot_no_nul(&s[RQ_ORIGINAL_REF])) {
        goto exit;
    }
    req->currency = (uint16_t)v;
    slot_str(&s[RQ_MERCHANT_ID], req->merchant_id, sizeof(req->merchant_id));
    slot_str(&s[RQ_TERMINAL_ID], req->terminal_id, sizeof(req->terminal_id));
    slot_str(&s[RQ_MASKED_PAN], req->masked_pan, sizeof(req->masked_pan));
    slot_str(&s[RQ_ORIGINAL_REF], req->original_ref, sizeof(req->original_ref));
    req->entry_mode = s[RQ_ENTRY_MODE].v[0];
    req->fallback = s[RQ_FALLBACK].v[0];
    if (s[RQ_LOCATION].present) {
        req->has_location = 1;
        location_get(s[RQ_LOCATION].v, &req->location);
    }
    /* Card data: present exactly when a card was read, with its masked PAN in clear. */
    int has_card = req->entry_mode != MPOS_ENTRY_NONE;
    if (s[RQ_IV].present != has_card || s[RQ_ENCRYPTED].present != has_card ||
        s[RQ_MASKED_PAN].present != has_card) {
        goto exit;
    }
    if (has_card) {
        rc = decrypt(cc, &si, keys.data_key, &s[RQ_IV], &s[RQ_ENCRYPTED], plain, sizeof(plain),
                     &plain_len);
        if (rc == MPOS_OK) {
            rc = open_card(plain, plain_len, &req->card);
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
        rc = MPOS_ERR_FORMAT;
    }
    if (s[RQ_PIN_FORMAT].present != s[RQ_PIN_BLOCK].present) {
        goto exit;
    }
    if (s[RQ_PIN_BLOCK].present) {
        req->has_pin = 1;
        req->pin_format = s[RQ_PIN_FORMAT].v[0];
        memcpy(req->pin_block, s[RQ_PIN_BLOCK].v, s[RQ_PIN_BLOCK].len);
        req->pin_block_len = s[RQ_PIN_BLOCK].len;
    }
    /* The reason is there exactly in a reversal: a request carrying one, even 0, is refused
     * here, since request_ok sees only the value. */
    if (s[RQ_REVERSAL_REASON].present != (req->msg_type == MPOS_SEALED_MSG_REVERSAL)) {
        goto exit;
    }
    if (s[RQ_REVERSAL_REASON].present) {
        req->reversal_reason = s[RQ_REVERSAL_REASON].v[0];
    }
    /* Present only with the value 1: an absent flag and 0 must not be two encodings of
     * "first send" (request_ok refuses values above 1). */
    if (s[RQ_RETRY].present) {
        req->retry = s[RQ_RETRY].v[0];
        if (req->retry == 0) {
            goto exit;
        }
    }
    if (!request_ok(req, &si)) {
        goto exit;
    }
    if (has_card) {
        if (mpos_msr_mask_pan(req->card.pan, masked) != MPOS_OK ||
            strcmp(masked, req->masked_pan) != 0) {
            goto exit; /* the clear masked PAN is not the encrypted PAN's */
        }
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_sealed_request_clear(req);
    }
    mpos_sealed_keys_clear(&keys);
    MPOS_WIPE_BUFFER(plain);
    MPOS_WIPE_BUFFER(masked);
    return rc;
}

int mpos_sealed_open_response(mpos_crypto_ctx *cc, const mpos_sealed_keys *keys, uint32_t sequence,
                              const uint8_t *msg, size_t len, mpos_sealed_response *resp)
{
    int rc = MPOS_ERR_ARG;
    struct slot s[RS_COUNT];
    struct scheme_info si;
    uint8_t plain[RESP_CT_MAX];
    size_t mac_at = 0, plain_len = 0;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(resp, sizeof(*resp));
    if (cc == NULL || keys == NULL || (msg == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    rc = keys_check(keys, MPOS_SEALED_DIR_RESPONSE, &si);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    if (len > MPOS_SEALED_MAX_RESPONSE_LEN ||
        split(msg, len, response_spec, RS_COUNT, s, &mac_at) != MPOS_OK ||
        s[RS_VERSION].v[0] != MPOS_SEALED_VERSION ||
        s[RS_MSG_TYPE].v[0] != MPOS_SEALED_MSG_RESPONSE) {
        goto exit;
    }
    /* T-CHAN-2: the MAC under this request's response key first ... */
    rc = verify_mac(cc, &si, keys->mac_key, msg, mac_at, &s[RS_MAC]);
    if (rc != MPOS_OK) {
        rc = MPOS_ERR_VERIFY;
        goto exit;
    }
    /* ... then that it answers this request: scheme, KSN and sequence number. */
    if (s[RS_SCHEME].v[0] != (uint8_t)keys->scheme || s[RS_KSN].len != keys->ksn_len ||
        !mpos_ct_equal(s[RS_KSN].v, keys->ksn, keys->ksn_len) ||
        mpos_load_be32(s[RS_SEQUENCE].v) != sequence) {
        rc = MPOS_ERR_VERIFY;
        goto exit;
    }
    /* Authentic and ours: now decode and check every field. */
    rc = MPOS_ERR_FORMAT;
    resp->scheme = keys->scheme;
    memcpy(resp->ksn, keys->ksn, keys->ksn_len);
    resp->ksn_len = keys->ksn_len;
    resp->sequence = sequence;
    if (!slot_no_nul(&s[RS_RESPONSE_CODE]) || !slot_no_nul(&s[RS_AUTH_CODE]) ||
        !slot_no_nul(&s[RS_RRN]) || !slot_no_nul(&s[RS_ARC]) ||
        s[RS_IV].present != s[RS_ENCRYPTED].present) {
        goto exit;
    }
    slot_str(&s[RS_RESPONSE_CODE], resp->response_code, sizeof(resp->response_code));
    slot_str(&s[RS_AUTH_CODE], resp->auth_code, sizeof(resp->auth_code));
    slot_str(&s[RS_RRN], resp->rrn, sizeof(resp->rrn));
    slot_str(&s[RS_ARC], resp->arc, sizeof(resp->arc));
    if (s[RS_IAD].present) {
        memcpy(resp->iad, s[RS_IAD].v, s[RS_IAD].len);
        resp->iad_len = s[RS_IAD].len;
    }
    if (s[RS_ENCRYPTED].present) {
        rc = decrypt(cc, &si, keys->data_key, &s[RS_IV], &s[RS_ENCRYPTED], plain, sizeof(plain),
                     &plain_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        rc = MPOS_ERR_FORMAT;
        if (plain_len == 0 || plain_len > sizeof(resp->data)) {
            goto exit;
        }
        memcpy(resp->data, plain, plain_len);
        resp->data_len = plain_len;
    }
    if (!response_ok(resp)) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_sealed_response_clear(resp);
    }
    MPOS_WIPE_BUFFER(plain);
    return rc;
}

void mpos_sealed_request_clear(mpos_sealed_request *req)
{
    if (req != NULL) {
        mpos_cleanse(req, sizeof(*req));
    }
}

void mpos_sealed_response_clear(mpos_sealed_response *resp)
{
    if (resp != NULL) {
        mpos_cleanse(resp, sizeof(*resp));
    }
}
