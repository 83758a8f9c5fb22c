/* openmpos terminal core: cardholder verification (EMV 4.3 Book 3 10.5 and Annex C3), offline
 * PIN (Book 3 6.5.12 VERIFY, 6.5.6 GET CHALLENGE; Book 2 7 PIN encipherment) and the
 * retrieval of the ICC PIN Encipherment Public Key (Book 2 5.3 / 6.3 issuer key, 6.4 / 7.1
 * ICC key). */
#include <string.h>

#include "emv_internal.h"
#include "mpos/hash.h"
#include "mpos/rsa.h"
#include "mpos/util.h"

/* CVM codes (Book 3 Annex C3, byte 1 bits 6-1). */
#define CVM_FAIL           0x00
#define CVM_PLAIN_PIN      0x01
#define CVM_ONLINE_PIN     0x02
#define CVM_PLAIN_PIN_SIG  0x03
#define CVM_ENC_PIN        0x04
#define CVM_ENC_PIN_SIG    0x05
#define CVM_SIGNATURE      0x1E
#define CVM_NO_CVM         0x1F
#define CVM_APPLY_NEXT     0x40 /* byte 1 bit 7: apply the next rule if this one fails */
#define CVM_RESULT_UNKNOWN 0x00
#define CVM_RESULT_FAILED  0x01
#define CVM_RESULT_SUCCESS 0x02

/* ---- ICC PIN Encipherment Public Key retrieval */

struct recovered {
    uint8_t x[MPOS_RSA_MAX_MOD_LEN];
    size_t n;
};

/* Book 2 5.3 steps 1-3 / 6.4 steps 1-3: the certificate has the key's length, recovers with
 * the key, and has header 6A, the format and trailer BC. */
static int recover(struct recovered *rc, const uint8_t *mod, size_t mod_len, const uint8_t *exp,
                   size_t exp_len, const uint8_t *cert, size_t cert_len, uint8_t format)
{
    if (cert_len != mod_len || mod_len < 64) {
        return 0;
    }
    if (mpos_rsa_public(mod, mod_len, exp, exp_len, cert, cert_len, rc->x) != MPOS_OK) {
        return 0;
    }
    rc->n = mod_len;
    return rc->x[0] == 0x6A && rc->x[1] == format && rc->x[mod_len - 1] == 0xBC;
}

/* Book 2 5.3 step 5-7: SHA-1 over the certificate from its format byte to the end of its key
 * field, then the key remainder and exponent, equals the hash in the certificate. */
static int hash_ok(const struct recovered *rc, const uint8_t *rem, size_t rem_len,
                   const uint8_t *exp, size_t exp_len)
{
    uint8_t buf[2 * MPOS_RSA_MAX_MOD_LEN + MPOS_RSA_MAX_EXP_LEN];
    uint8_t digest[MPOS_SHA1_LEN];
    size_t n = 0, body = rc->n - 22;
    int ok = 0;
    if (rem_len > MPOS_RSA_MAX_MOD_LEN || exp_len > MPOS_RSA_MAX_EXP_LEN) {
        return 0;
    }
    memcpy(buf, &rc->x[1], body);
    n += body;
    if (rem_len > 0) {
        memcpy(&buf[n], rem, rem_len);
        n += rem_len;
    }
    memcpy(&buf[n], exp, exp_len);
    n += exp_len;
    if (mpos_sha1(buf, n, digest) == MPOS_OK) {
        ok = memcmp(digest, &rc->x[rc->n - 21], MPOS_SHA1_LEN) == 0;
    }
    return ok;
}

/* Certificate expiry MMYY against today (k->date YYMMDD): valid through its month. */
static int cert_current(const mpos_emv_ctx *k, const uint8_t mmyy[2])
{
    uint8_t d[3] = {mmyy[1], mmyy[0], 0x01};
    uint8_t t[3] = {k->date[0], k->date[1], 0x01};
    uint32_t cv = emv_date_value(d), tv = emv_date_value(t);
    return cv != 0 && tv != 0 && cv >= tv;
}

/* The key of a certificate: the leftmost part in the certificate (field of field_len bytes),
 * completed by the remainder when longer (Book 2 5.3 step 10). */
static int assemble_key(uint8_t *out, size_t *out_len, size_t key_len, const uint8_t *field,
                        size_t field_len, const uint8_t *rem, size_t rem_len)
{
    if (key_len == 0 || key_len > MPOS_RSA_MAX_MOD_LEN) {
        return 0;
    }
    if (key_len <= field_len) {
        memcpy(out, field, key_len);
    } else {
        if (rem_len != key_len - field_len) {
            return 0;
        }
        memcpy(out, field, field_len);
        memcpy(&out[field_len], rem, rem_len);
    }
    *out_len = key_len;
    return 1;
}

/* 1 with k->key_mod/key_exp holding the ICC PIN Encipherment Public Key, 0 when it cannot be
 * retrieved (then offline enciphered PIN fails). */
static int retrieve_pin_key(mpos_emv_ctx *k)
{
    struct recovered rc;
    uint8_t iss_mod[MPOS_RSA_MAX_MOD_LEN];
    size_t iss_len = 0;
    const uint8_t *df, *idx, *cert, *rem, *exp, *pan;
    size_t df_len, idx_len, cert_len, rem_len, exp_len, pan_len;
    char pan_digits[MPOS_EMV_PAN_BUF_LEN], cert_pan[MPOS_EMV_PAN_BUF_LEN];
    const mpos_emv_capk *ca = NULL;
    int ok = 0;

    if (!emv_card_find(k, 0x84, &df, &df_len) || !emv_card_find(k, 0x8F, &idx, &idx_len) ||
        !emv_card_find(k, 0x5A, &pan, &pan_len) || emv_pan_digits(pan, pan_len, pan_digits) != 0) {
        goto exit;
    }
    for (size_t i = 0; i < k->params->capk_count; i++) {
        const mpos_emv_capk *c = &k->params->capks[i];
        if (memcmp(c->rid, df, 5) == 0 && c->index == idx[0]) {
            ca = c;
            break;
        }
    }
    if (ca == NULL || !emv_card_find(k, 0x90, &cert, &cert_len) ||
        !emv_card_find(k, 0x9F32, &exp, &exp_len)) {
        goto exit;
    }
    if (!emv_card_find(k, 0x92, &rem, &rem_len)) {
        rem = NULL;
    }
    /* Issuer Public Key Certificate, format 02 (Book 2 5.3, Table 6). */
    if (!recover(&rc, ca->modulus, ca->modulus_len, ca->exponent, ca->exponent_len, cert, cert_len,
                 0x02) ||
        !hash_ok(&rc, rem, rem_len, exp, exp_len)) {
        goto exit;
    }
    /* Issuer identifier: the leftmost 3-8 PAN digits, padded with F (step 8). */
    {
        size_t digits = 0;
        for (size_t i = 0; i < 8; i++) {
            unsigned d = (i % 2 == 0) ? (unsigned)(rc.x[2 + i / 2] >> 4)
                                      : (unsigned)(rc.x[2 + i / 2] & 0x0F);
            if (d == 0x0F) {
                for (size_t j = i; j < 8; j++) {
                    unsigned e = (j % 2 == 0) ? (unsigned)(rc.x[2 + j / 2] >> 4)
                                              : (unsigned)(rc.x[2 + j / 2] & 0x0F);
                    if (e != 0x0F) {
                        goto exit;
                    }
                }
                break;
            }
            if (d > 9 || pan_digits[i] != (char)('0' + d)) {
                goto exit;
            }
            digits++;
        }
        if (digits < 3) {
            goto exit;
        }
    }
    /* Steps 9-10: current, SHA-1 / RSA, exponent length as announced. */
    if (!cert_current(k, &rc.x[6]) || rc.x[11] != 0x01 || rc.x[12] != 0x01 || rc.x[14] != exp_len ||
        rc.x[13] > rc.n) {
        goto exit;
    }
    if (!assemble_key(iss_mod, &iss_len, rc.x[13], &rc.x[15], rc.n - 36, rem, rem_len)) {
        goto exit;
    }
    uint8_t iss_exp[MPOS_RSA_MAX_EXP_LEN];
    size_t iss_exp_len = exp_len;
    memcpy(iss_exp, exp, exp_len);

    /* ICC PIN Encipherment Public Key Certificate, format 04 (Book 2 7.1, 6.4, Table 14). */
    if (!emv_card_find(k, 0x9F2D, &cert, &cert_len) || !emv_card_find(k, 0x9F2E, &exp, &exp_len)) {
        goto exit;
    }
    if (!emv_card_find(k, 0x9F2F, &rem, &rem_len)) {
        rem = NULL;
    }
    if (!recover(&rc, iss_mod, iss_len, iss_exp, iss_exp_len, cert, cert_len, 0x04) ||
        !hash_ok(&rc, rem, rem_len, exp, exp_len)) {
        goto exit;
    }
    /* Step 8: the PAN of the certificate is the application PAN. */
    if (emv_pan_digits(&rc.x[2], 10, cert_pan) != 0 || strcmp(cert_pan, pan_digits) != 0) {
        goto exit;
    }
    if (!cert_current(k, &rc.x[12]) || rc.x[17] != 0x01 || rc.x[18] != 0x01 ||
        rc.x[20] != exp_len || rc.x[19] > rc.n) {
        goto exit;
    }
    if (!assemble_key(k->key_mod, &k->key_mod_len, rc.x[19], &rc.x[21], rc.n - 42, rem, rem_len)) {
        goto exit;
    }
    memcpy(k->key_exp, exp, exp_len);
    k->key_exp_len = exp_len;
    /* The PIN block needs 17 bytes of the key (Book 2 7.2). */
    ok = k->key_mod_len >= 17 + 8;

exit:
    if (!ok) {
        k->key_mod_len = 0;
        k->key_exp_len = 0;
    }
    MPOS_WIPE_CTX(&rc);
    MPOS_WIPE_BUFFER(pan_digits);
    MPOS_WIPE_BUFFER(cert_pan);
    return ok;
}

/* ---- offline PIN */

/* Book 3 6.5.12, Table 24: plaintext offline PIN block C=2, N, PIN digits, F filler. */
static int pin_block(const char *pin, uint8_t block[8])
{
    size_t n = strlen(pin);
    if (!mpos_pin_valid(pin)) {
        return 0;
    }
    memset(block, 0xFF, 8);
    block[0] = (uint8_t)(0x20 | n);
    for (size_t i = 0; i < n; i++) {
        uint8_t d = (uint8_t)(pin[i] - '0');
        size_t nib = 2 + i;
        if (nib % 2 == 0) {
            block[nib / 2] = (uint8_t)((d << 4) | (block[nib / 2] & 0x0F));
        } else {
            block[nib / 2] = (uint8_t)((block[nib / 2] & 0xF0) | d);
        }
    }
    return 1;
}

/* GET DATA of the PIN Try Counter '9F17' (Book 3 6.5.7): 0..15, or 0xFF when unknown. */
static int read_try_counter(mpos_emv_ctx *k, unsigned *tries)
{
    int r;
    size_t n = emv_apdu_build(k, 0x80, 0xCA, 0x9F, 0x17, NULL, 0, 1);
    *tries = 0xFF;
    if ((r = emv_transmit(k, n)) != 0) {
        return r;
    }
    if (k->sw == EMV_SW_OK && k->rapdu_len == 4 && k->rapdu[0] == 0x9F && k->rapdu[1] == 0x17 &&
        k->rapdu[2] == 0x01) {
        *tries = k->rapdu[3];
    }
    return 0;
}

/* Builds and sends VERIFY for one PIN (plaintext P2 80, enciphered P2 88). 0 with k->sw,
 * CVM_RESULT_FAILED as *failed when the enciphering step cannot be done, or an outcome. */
static int verify_pin(mpos_emv_ctx *k, const char *pin, int enciphered, int *failed)
{
    uint8_t block[8];
    uint8_t data[MPOS_RSA_MAX_MOD_LEN];
    size_t n;
    int r = 0;
    *failed = 0;
    if (!pin_block(pin, block)) {
        *failed = 1;
        goto exit;
    }
    if (!enciphered) {
        n = emv_apdu_build(k, 0x00, 0x20, 0x00, 0x80, block, sizeof(block), 0);
        r = emv_transmit(k, n);
        goto exit;
    }
    /* Book 2 7.2: '7F' || PIN block || ICC Unpredictable Number || random pad, enciphered
     * with the ICC PIN Encipherment Public Key (RSA recovery function inverse). */
    n = emv_apdu_build(k, 0x00, 0x84, 0x00, 0x00, NULL, 0, 1);
    if ((r = emv_transmit(k, n)) != 0) {
        goto exit;
    }
    if (k->sw != EMV_SW_OK || k->rapdu_len != 8) {
        *failed = 1;
        goto exit;
    }
    size_t nic = k->key_mod_len;
    data[0] = 0x7F;
    memcpy(&data[1], block, 8);
    memcpy(&data[9], k->rapdu, 8);
    if (k->env.rng(k->env.ctx, &data[17], nic - 17) != 0) {
        r = MPOS_ERR_RNG;
        goto exit;
    }
    /* 7F as the first byte keeps the value below any modulus of nic bytes (its top byte is
     * at least 80). */
    if (mpos_rsa_public(k->key_mod, nic, k->key_exp, k->key_exp_len, data, nic, data) != MPOS_OK) {
        *failed = 1;
        goto exit;
    }
    n = emv_apdu_build(k, 0x00, 0x20, 0x00, 0x88, data, nic, 0);
    if (n == 0) {
        *failed = 1;
        goto exit;
    }
    r = emv_transmit(k, n);

exit:
    MPOS_WIPE_BUFFER(block);
    MPOS_WIPE_BUFFER(data);
    mpos_cleanse(k->capdu, sizeof(k->capdu));
    return r;
}

/* Offline PIN (Book 3 10.5.1). *ok 1 when the card accepted a PIN. 0 or an outcome. */
static int offline_pin(mpos_emv_ctx *k, int enciphered, int *ok)
{
    char pin[MPOS_PIN_BUF_LEN];
    unsigned tries;
    int r = 0, failed;
    *ok = 0;
    memset(pin, 0, sizeof(pin));
    if (enciphered && !retrieve_pin_key(k)) {
        goto exit;
    }
    if ((r = read_try_counter(k, &tries)) != 0) {
        goto exit;
    }
    if (tries == 0) {
        emv_tvr_set(k, MPOS_EMV_TVR_PIN_TRY_EXCEEDED);
        goto exit;
    }
    for (int attempt = 0; attempt < MPOS_EMV_MAX_PIN_ATTEMPTS; attempt++) {
        int e = k->env.pin_entry(
            k->env.ctx, enciphered ? MPOS_EMV_PIN_OFFLINE_ENCIPHERED : MPOS_EMV_PIN_OFFLINE_PLAIN,
            tries, pin);
        pin[MPOS_PIN_BUF_LEN - 1] = '\0';
        if (e == MPOS_EMV_PIN_BYPASSED) {
            emv_tvr_set(k, MPOS_EMV_TVR_PIN_NOT_ENTERED);
            goto exit;
        }
        if (e != MPOS_EMV_PIN_ENTERED) {
            r = emv_end(k, MPOS_EMV_CANCELLED, MPOS_EMV_REASON_CANCELLED);
            goto exit;
        }
        r = verify_pin(k, pin, enciphered, &failed);
        mpos_cleanse(pin, sizeof(pin));
        if (r != 0 || failed) {
            goto exit;
        }
        if (k->rapdu_len != 0) {
            r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
            goto exit;
        }
        if (k->sw == EMV_SW_OK) {
            *ok = 1;
            goto exit;
        }
        if ((k->sw & 0xFFF0u) == 0x63C0u) {
            /* Wrong PIN, x tries left (Book 3 6.5.12.4). */
            tries = k->sw & 0x0Fu;
            if (tries == 0) {
                emv_tvr_set(k, MPOS_EMV_TVR_PIN_TRY_EXCEEDED);
                goto exit;
            }
            continue;
        }
        if (k->sw == 0x6983 || k->sw == 0x6984) {
            emv_tvr_set(k, MPOS_EMV_TVR_PIN_TRY_EXCEEDED); /* blocked / counter at 0 */
        }
        goto exit; /* any other status: this CVM failed */
    }

exit:
    MPOS_WIPE_BUFFER(pin);
    return r;
}

/* ---- the CVM list */

static int terminal_supports(const mpos_emv_ctx *k, uint8_t method)
{
    uint8_t caps = k->params->terminal_caps[1];
    switch (method) {
    case CVM_FAIL:
        return 1;
    case CVM_PLAIN_PIN:
        return (caps & 0x80) != 0;
    case CVM_ONLINE_PIN:
        return (caps & 0x40) != 0;
    case CVM_ENC_PIN:
        return (caps & 0x10) != 0;
    case CVM_NO_CVM:
        return (caps & 0x08) != 0;
    default:
        return 0; /* signature and combinations: this kernel has no signature step */
    }
}

static int recognised(uint8_t method)
{
    return method <= CVM_ENC_PIN_SIG || method == CVM_SIGNATURE || method == CVM_NO_CVM;
}

static int attended(const mpos_emv_ctx *k)
{
    unsigned env = k->params->terminal_type & 0x0Fu;
    return env >= 1 && env <= 3;
}

/* Book 3 Annex C3, Table 40: 1 satisfied, 0 not (or a condition code we do not know). */
static int condition_met(const mpos_emv_ctx *k, uint8_t cond, uint8_t method, uint32_t x,
                         uint32_t y)
{
    int cash = k->txn.type == 0x01, cashback = k->txn.type == 0x09;
    const uint8_t *cur;
    size_t cur_len;
    int in_app_currency = emv_card_find(k, 0x9F42, &cur, &cur_len) && cur_len == 2 &&
                          memcmp(cur, k->params->currency, 2) == 0;
    uint64_t amount = k->txn.amount;
    switch (cond) {
    case 0x00:
        return 1;
    case 0x01:
        return cash && !attended(k);
    case 0x02:
        return !cash && !cashback;
    case 0x03:
        return terminal_supports(k, method) && recognised(method);
    case 0x04:
        return cash && attended(k);
    case 0x05:
        return cashback;
    case 0x06:
        return in_app_currency && amount < x;
    case 0x07:
        return in_app_currency && amount > x;
    case 0x08:
        return in_app_currency && amount < y;
    case 0x09:
        return in_app_currency && amount > y;
    default:
        return 0;
    }
}

/* Performs one recognised CVM. *ok 1 on success, *result the CVM Results byte 3. */
static int perform(mpos_emv_ctx *k, uint8_t method, int *ok, uint8_t *result)
{
    int r = 0;
    *ok = 0;
    *result = CVM_RESULT_FAILED;
    if (!terminal_supports(k, method)) {
        if (method == CVM_PLAIN_PIN || method == CVM_ONLINE_PIN || method == CVM_ENC_PIN) {
            emv_tvr_set(k, MPOS_EMV_TVR_NO_PINPAD);
        }
        return 0;
    }
    switch (method) {
    case CVM_NO_CVM:
        *ok = 1;
        *result = CVM_RESULT_SUCCESS;
        return 0;
    case CVM_PLAIN_PIN:
    case CVM_ENC_PIN:
        if (k->env.pin_entry == NULL) {
            emv_tvr_set(k, MPOS_EMV_TVR_NO_PINPAD);
            return 0;
        }
        r = offline_pin(k, method == CVM_ENC_PIN, ok);
        if (*ok) {
            *result = CVM_RESULT_SUCCESS;
        }
        return r;
    case CVM_ONLINE_PIN: {
        if (k->env.pin_entry == NULL) {
            emv_tvr_set(k, MPOS_EMV_TVR_NO_PINPAD);
            return 0;
        }
        int e = k->env.pin_entry(k->env.ctx, MPOS_EMV_PIN_ONLINE, 0xFF, NULL);
        if (e == MPOS_EMV_PIN_ENTERED) {
            emv_tvr_set(k, MPOS_EMV_TVR_ONLINE_PIN);
            k->result.online_pin = 1;
            *ok = 1;
            *result = CVM_RESULT_UNKNOWN; /* Book 4 A4: verified by the issuer */
            return 0;
        }
        if (e == MPOS_EMV_PIN_BYPASSED) {
            emv_tvr_set(k, MPOS_EMV_TVR_PIN_NOT_ENTERED);
            return 0;
        }
        return emv_end(k, MPOS_EMV_CANCELLED, MPOS_EMV_REASON_CANCELLED);
    }
    default:
        return 0; /* CVM_FAIL */
    }
}

int emv_cvm(mpos_emv_ctx *k)
{
    const uint8_t *aip, *list;
    size_t aip_len, list_len;
    int r;
    /* Book 3 10.5: only when the AIP says the card supports cardholder verification. */
    if (!emv_card_find(k, 0x82, &aip, &aip_len) || (aip[0] & 0x10) == 0) {
        k->cvm_results[0] = 0x3F;
        return 0;
    }
    if (!emv_card_find(k, 0x8E, &list, &list_len) || list_len < 10) {
        emv_tvr_set(k, MPOS_EMV_TVR_ICC_DATA_MISSING);
        k->cvm_results[0] = 0x3F;
        return 0;
    }
    if (list_len % 2 != 0) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    k->tsi[0] |= MPOS_EMV_TSI_CVM_PERFORMED;
    uint32_t x = mpos_load_be32(list), y = mpos_load_be32(list + 4);
    int applied = 0;
    for (size_t i = 8; i + 1 < list_len; i += 2) {
        uint8_t rule = list[i], cond = list[i + 1], method = rule & 0x3F;
        int ok = 0;
        uint8_t result = CVM_RESULT_FAILED;
        if (!condition_met(k, cond, method, x, y)) {
            continue;
        }
        applied = 1;
        k->cvm_results[0] = rule;
        k->cvm_results[1] = cond;
        k->cvm_results[2] = CVM_RESULT_FAILED;
        if (!recognised(method)) {
            emv_tvr_set(k, MPOS_EMV_TVR_UNRECOGNISED_CVM);
        } else if ((r = perform(k, method, &ok, &result)) != 0) {
            return r;
        }
        k->cvm_results[2] = result;
        if (ok) {
            return 0;
        }
        if ((rule & CVM_APPLY_NEXT) == 0) {
            break;
        }
    }
    /* Book 3 10.5.5: no rule satisfied, or the last one applied failed. */
    emv_tvr_set(k, MPOS_EMV_TVR_CVM_FAILED);
    if (!applied) {
        k->cvm_results[0] = 0x3F;
        k->cvm_results[1] = 0x00;
        k->cvm_results[2] = CVM_RESULT_FAILED;
    }
    return 0;
}
