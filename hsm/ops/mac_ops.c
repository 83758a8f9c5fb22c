/* mpos-hsmd ops: DUKPT request/response MACs and zone MACs. */
#include <string.h>

#include "mpos/mac.h"
#include "ops_int.h"

/* The full MAC of one algorithm under a clear key, into mac (HSM_MAC_MAX_LEN bytes). */
static int mac_compute(hsm_vault *v, enum hsm_mac_alg alg, const hsm_key *k, const uint8_t *data,
                       size_t data_len, uint8_t mac[HSM_MAC_MAX_LEN], size_t *mac_len)
{
    enum mpos_cipher cipher;
    int rc = ops_cipher(k, &cipher);
    if (rc != MPOS_OK) {
        return rc;
    }
    switch (alg) {
    case HSM_MAC_ISO9797_3:
        /* ISO/IEC 9797-1:2011 7.4 MAC algorithm 3, padding method 1 (ANSI X9.19). */
        *mac_len = 8;
        return mpos_mac_iso9797_alg3(&v->cc, k->bytes, k->len, MPOS_MAC_PAD_1, data, data_len, mac);
    case HSM_MAC_CMAC:
        /* NIST SP 800-38B 6.2. */
        *mac_len = mpos_cipher_block_len(cipher);
        return mpos_cmac(&v->cc, cipher, k->bytes, k->len, data, data_len, mac);
    case HSM_MAC_CUP_ECB:
        *mac_len = mpos_cipher_block_len(cipher);
        return mpos_mac_cup_ecb(&v->cc, cipher, k->bytes, k->len, data, data_len, mac);
    default:
        return MPOS_ERR_ARG;
    }
}

/* ---- DUKPT ----------------------------------------------------------------------------- */

/* The MAC of a DUKPT message: AES DUKPT CMAC, TDES DUKPT X9.19 (ISO 9797-1 alg 3, pad 1). */
static int dukpt_mac(hsm_vault *v, const struct hsm_dukpt_ref *ref, enum ops_dukpt_key kind,
                     const uint8_t *data, size_t data_len, uint8_t mac[HSM_MAC_MAX_LEN],
                     size_t *mac_len)
{
    hsm_key wk;
    int scheme = 0;
    int rc;
    if (data == NULL && data_len > 0) {
        return MPOS_ERR_ARG;
    }
    rc = ops_dukpt_working_key(v, ref, kind, &wk, &scheme);
    if (rc == MPOS_OK) {
        rc = mac_compute(v, scheme == 1 ? HSM_MAC_CMAC : HSM_MAC_ISO9797_3, &wk, data, data_len,
                         mac, mac_len);
    }
    hsm_key_clear(&wk);
    if (rc != MPOS_OK) {
        mpos_cleanse(mac, HSM_MAC_MAX_LEN);
        *mac_len = 0;
    }
    return rc;
}

int hsm_op_dukpt_mac_verify(hsm_vault *v, const struct hsm_dukpt_mac_verify_req *req)
{
    uint8_t mac[HSM_MAC_MAX_LEN];
    size_t mac_len = 0;
    int rc;
    if (!ops_vault_ready(v) || req == NULL || req->mac_len > HSM_MAC_MAX_LEN) {
        return MPOS_ERR_ARG;
    }
    /* The terminal MACs its request with the request key (X9.24-3-2017 usage 2000, or the
     * X9.24-1-2009 A.4 MAC-request variant); the response key is never tried. */
    rc = dukpt_mac(v, &req->dukpt, OPS_DUKPT_MAC_REQUEST, req->data, req->data_len, mac, &mac_len);
    if (rc == MPOS_OK) {
        rc = mpos_mac_verify(mac, mac_len, req->mac, req->mac_len);
    }
    MPOS_WIPE_BUFFER(mac);
    return rc;
}

int hsm_op_dukpt_mac_generate(hsm_vault *v, const struct hsm_dukpt_mac_generate_req *req,
                              struct hsm_mac_resp *resp)
{
    size_t full = 0;
    int rc;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = dukpt_mac(v, &req->dukpt, OPS_DUKPT_MAC_RESPONSE, req->data, req->data_len, resp->mac,
                   &full);
    if (rc == MPOS_OK) {
        size_t want = req->mac_len == 0 ? full : req->mac_len;
        if (want < MPOS_MAC_MIN_VERIFY_LEN || want > full) {
            rc = MPOS_ERR_LENGTH;
        } else {
            mpos_cleanse(resp->mac + want, sizeof(resp->mac) - want);
            resp->mac_len = want;
        }
    }
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* ---- Zone MACs ------------------------------------------------------------------------- */

static const char *const usages_m3[] = {"M3", NULL};
static const char *const usages_m6[] = {"M6", NULL};
static const char *const usages_m1[] = {"M1", NULL};

static int zone_mac(hsm_vault *v, const struct hsm_mac_req *req, char operation,
                    uint8_t mac[HSM_MAC_MAX_LEN], size_t *mac_len)
{
    static const char cmac_algs[] = {'A', 'T', HSM_ALG_SM4, '\0'};
    static const char cup_algs[] = {'T', 'D', HSM_ALG_SM4, '\0'};
    hsm_key k;
    int rc;
    memset(&k, 0, sizeof(k));
    if (req->data == NULL && req->data_len > 0) {
        return MPOS_ERR_ARG;
    }
    /* Each algorithm takes the usage that names it (X9.143:2021 6.3.1). */
    switch (req->alg) {
    case HSM_MAC_ISO9797_3:
        rc = ops_load(v, &req->key, usages_m3, "T", operation, &k);
        if (rc == MPOS_OK && k.len != 16) {
            rc = MPOS_ERR_KEY;
        }
        break;
    case HSM_MAC_CMAC:
        rc = ops_load(v, &req->key, usages_m6, cmac_algs, operation, &k);
        break;
    case HSM_MAC_CUP_ECB:
        rc = ops_load(v, &req->key, usages_m1, cup_algs, operation, &k);
        break;
    default:
        rc = MPOS_ERR_ARG;
        break;
    }
    if (rc == MPOS_OK) {
        rc = mac_compute(v, req->alg, &k, req->data, req->data_len, mac, mac_len);
    }
    hsm_key_clear(&k);
    return rc;
}

int hsm_op_mac_generate(hsm_vault *v, const struct hsm_mac_req *req, struct hsm_mac_resp *resp)
{
    size_t full = 0;
    int rc;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = zone_mac(v, req, 'G', resp->mac, &full);
    if (rc == MPOS_OK) {
        size_t want = req->mac_len == 0 ? full : req->mac_len;
        if (want < MPOS_MAC_MIN_VERIFY_LEN || want > full) {
            rc = MPOS_ERR_LENGTH;
        } else {
            mpos_cleanse(resp->mac + want, sizeof(resp->mac) - want);
            resp->mac_len = want;
        }
    }
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int hsm_op_mac_verify(hsm_vault *v, const struct hsm_mac_req *req)
{
    uint8_t mac[HSM_MAC_MAX_LEN];
    size_t full = 0;
    int rc;
    if (!ops_vault_ready(v) || req == NULL || req->mac_len > HSM_MAC_MAX_LEN) {
        return MPOS_ERR_ARG;
    }
    memset(mac, 0, sizeof(mac));
    rc = zone_mac(v, req, 'V', mac, &full);
    if (rc == MPOS_OK) {
        rc = mpos_mac_verify(mac, full, req->mac, req->mac_len); /* constant time */
    }
    MPOS_WIPE_BUFFER(mac);
    return rc;
}
