/* mpos-hsmd ops: PIN translation and Visa PVV verification. The PIN exists in clear only in
 * the locals of these functions and is wiped on every path. */
#include <string.h>

#include "mpos/pin.h"
#include "ops_int.h"

static const char *const usages_pin[] = {"P0", NULL};
static const char *const usages_pvk[] = {"V2", NULL};
static const char pin_key_algs[] = {'T', 'A', HSM_ALG_SM4, '\0'};

/* Decrypts a PIN block under a PIN key block (usage P0, mode D or B). */
static int pin_from_key(hsm_vault *v, const struct hsm_kb_in *kb, enum mpos_pin_format format,
                        const uint8_t *block, size_t block_len, const char *pan,
                        char pin[MPOS_PIN_BUF_LEN])
{
    hsm_key k;
    enum mpos_cipher cipher;
    int rc = ops_load(v, kb, usages_pin, pin_key_algs, 'D', &k);
    if (rc == MPOS_OK) {
        rc = ops_cipher(&k, &cipher);
    }
    if (rc == MPOS_OK) {
        /* ISO 9564-1:2017 9.3 (formats 0, 1, 3) / 9.4.2.4 (format 4). */
        rc = mpos_pin_block_decrypt(&v->cc, format, cipher, k.bytes, k.len, block, block_len, pan,
                                    pin);
    }
    hsm_key_clear(&k);
    return rc;
}

int hsm_op_pin_translate(hsm_vault *v, const struct hsm_pin_translate_req *req,
                         struct hsm_pin_block_resp *resp)
{
    hsm_key zpk;
    hsm_key wk;
    char pin[MPOS_PIN_BUF_LEN];
    enum mpos_cipher zcipher;
    int scheme = 0;
    int rc = MPOS_ERR_ARG;
    memset(&zpk, 0, sizeof(zpk));
    memset(&wk, 0, sizeof(wk));
    memset(pin, 0, sizeof(pin));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || req->pin_block_len > HSM_PIN_BLOCK_MAX_LEN ||
        (req->dst_format != MPOS_PIN_FORMAT_0 && req->dst_format != MPOS_PIN_FORMAT_4)) {
        goto exit;
    }
    rc = ops_pan_check(req->pan);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The destination: a zone PIN key that encrypts (mode E or B). */
    rc = ops_load(v, &req->zpk, usages_pin, pin_key_algs, 'E', &zpk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = ops_cipher(&zpk, &zcipher);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_pin_cipher_check(req->dst_format, zcipher, zpk.len);
    if (rc == MPOS_ERR_ARG) {
        rc = MPOS_ERR_USAGE; /* e.g. format 0 asked of an AES key */
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (req->source == HSM_PIN_FROM_DUKPT) {
        enum mpos_pin_format f;
        enum mpos_cipher c;
        rc = ops_dukpt_working_key(v, &req->dukpt, OPS_DUKPT_PIN, &wk, &scheme);
        if (rc != MPOS_OK) {
            goto exit;
        }
        /* AES DUKPT: ISO 9564-1 format 4 under the usage 1000 key (X9.24-3-2017 6.3.2);
         * TDES DUKPT: format 0 under the PIN variant (X9.24-1-2009 A.4). */
        f = scheme == 1 ? MPOS_PIN_FORMAT_4 : MPOS_PIN_FORMAT_0;
        c = scheme == 1 ? MPOS_CIPHER_AES : MPOS_CIPHER_TDES;
        rc = mpos_pin_block_decrypt(&v->cc, f, c, wk.bytes, wk.len, req->pin_block,
                                    req->pin_block_len, req->pan, pin);
    } else if (req->source == HSM_PIN_FROM_KEY) {
        rc = pin_from_key(v, &req->src_key, req->src_format, req->pin_block, req->pin_block_len,
                          req->pan, pin);
    } else {
        rc = MPOS_ERR_ARG;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Re-encipher with a fresh random fill (ISO 9564-1:2017 9.3.2 / 9.4.2). */
    rc = mpos_pin_block_encrypt(&v->cc, req->dst_format, zcipher, zpk.bytes, zpk.len, pin, req->pan,
                                NULL, 0, resp->pin_block, &resp->pin_block_len);
exit:
    MPOS_WIPE_BUFFER(pin);
    hsm_key_clear(&zpk);
    hsm_key_clear(&wk);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* Constant-time selection of a byte: m is 0xFF or 0x00. */
static uint8_t ct_sel(uint8_t m, uint8_t a, uint8_t b)
{
    return (uint8_t)((m & a) | ((uint8_t)~m & b));
}

/* 0xFF if a < b (both below 128), else 0x00, without a branch. */
static uint8_t ct_lt(uint8_t a, uint8_t b)
{
    return (uint8_t)(0u - (((unsigned)a - (unsigned)b) >> 8 & 1u));
}

/* The Visa PVV of a PIN (see ops.h), as 4 ASCII digits + NUL, with no branch or memory index
 * depending on the PIN or the encrypted value. */
static int pvv_compute(hsm_vault *v, const hsm_key *pvk, const char *pan, uint8_t pvki,
                       const char *pin, char pvv[5])
{
    uint8_t tsp[8];
    uint8_t digits[16];
    uint8_t out[4] = {0, 0, 0, 0};
    uint8_t count = 0;
    size_t pan_len = strlen(pan);
    int rc;
    /* TSP: 11 rightmost PAN digits excluding the check digit, PVKI, 4 leftmost PIN digits. */
    for (size_t i = 0; i < 11; i++) {
        digits[i] = (uint8_t)(pan[pan_len - 12 + i] - '0');
    }
    digits[11] = pvki;
    for (size_t i = 0; i < 4; i++) {
        digits[12 + i] = (uint8_t)(pin[i] - '0');
    }
    for (size_t i = 0; i < 8; i++) {
        tsp[i] = (uint8_t)(digits[2 * i] << 4 | digits[2 * i + 1]);
    }
    /* E(PVK, TSP): TDES ECB under the double-length PVK. */
    rc = mpos_cipher_ecb(&v->cc, MPOS_CIPHER_TDES, 1, pvk->bytes, pvk->len, tsp, tsp, 8);
    if (rc != MPOS_OK) {
        goto exit;
    }
    for (size_t i = 0; i < 8; i++) {
        digits[2 * i] = (uint8_t)(tsp[i] >> 4);
        digits[2 * i + 1] = (uint8_t)(tsp[i] & 0x0F);
    }
    /* Decimalisation: first the decimal digits left to right, then the digits A-F minus 10. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < 16; i++) {
            uint8_t is_dec = ct_lt(digits[i], 10);
            uint8_t want = pass == 0 ? is_dec : (uint8_t)~is_dec;
            uint8_t take = (uint8_t)(want & ct_lt(count, 4));
            uint8_t value = ct_sel(is_dec, digits[i], (uint8_t)(digits[i] - 10));
            for (uint8_t j = 0; j < 4; j++) {
                uint8_t here = (uint8_t)(take & mpos_ct_byte_is_zero((uint8_t)(count ^ j)));
                out[j] = ct_sel(here, value, out[j]);
            }
            count = (uint8_t)(count + (take & 1u));
        }
    }
    for (size_t j = 0; j < 4; j++) {
        pvv[j] = (char)('0' + out[j]);
    }
    pvv[4] = '\0';
exit:
    MPOS_WIPE_BUFFER(tsp);
    MPOS_WIPE_BUFFER(digits);
    MPOS_WIPE_BUFFER(out);
    return rc;
}

/* Loads the keys, decrypts the PIN and computes its PVV. */
static int pvv_of_request(hsm_vault *v, const struct hsm_pvv_req *req, char operation, char pvv[5])
{
    hsm_key pvk;
    char pin[MPOS_PIN_BUF_LEN];
    int rc;
    memset(&pvk, 0, sizeof(pvk));
    memset(pin, 0, sizeof(pin));
    if (req->pvki > 6 || req->pin_block_len > HSM_PIN_BLOCK_MAX_LEN) {
        return MPOS_ERR_ARG;
    }
    rc = ops_pan_check(req->pan);
    if (rc != MPOS_OK) {
        return rc;
    }
    /* PVK: VISA PVV usage V2, TDES (X9.143:2021 6.3.1). */
    rc = ops_load(v, &req->pvk, usages_pvk, "T", operation, &pvk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = pin_from_key(v, &req->zpk, req->format, req->pin_block, req->pin_block_len, req->pan, pin);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = pvv_compute(v, &pvk, req->pan, req->pvki, pin, pvv);
exit:
    MPOS_WIPE_BUFFER(pin);
    hsm_key_clear(&pvk);
    return rc;
}

int hsm_op_pin_verify(hsm_vault *v, const struct hsm_pvv_req *req)
{
    char pvv[5];
    int rc;
    memset(pvv, 0, sizeof(pvv));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    if (memchr(req->pvv, '\0', sizeof(req->pvv)) == NULL || !mpos_digits_valid(req->pvv, 4, 4)) {
        return MPOS_ERR_FORMAT;
    }
    rc = pvv_of_request(v, req, 'V', pvv);
    if (rc == MPOS_OK && !mpos_ct_equal(pvv, req->pvv, 4)) {
        rc = MPOS_ERR_VERIFY;
    }
    MPOS_WIPE_BUFFER(pvv);
    return rc;
}

int hsm_op_pvv_generate(hsm_vault *v, const struct hsm_pvv_req *req, struct hsm_pvv_resp *resp)
{
    int rc;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = pvv_of_request(v, req, 'G', resp->pvv);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
