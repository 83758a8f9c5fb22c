/* mpos-hsmd ops: EMV issuer side (ARQC verification, ARPC generation). */
#include <string.h>

#include "mpos/emv.h"
#include "ops_int.h"

static const char *const usages_imk[] = {"E0", NULL};

int hsm_op_arqc_verify(hsm_vault *v, const struct hsm_arqc_req *req, struct hsm_arqc_resp *resp)
{
    hsm_key imk;
    uint8_t mk[MPOS_EMV_KEY_LEN];
    uint8_t sk[MPOS_EMV_KEY_LEN];
    const char *psn;
    int rc = MPOS_ERR_ARG;
    memset(&imk, 0, sizeof(imk));
    memset(mk, 0, sizeof(mk));
    memset(sk, 0, sizeof(sk));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || (req->ac_data == NULL && req->ac_data_len > 0) ||
        req->ac_data_len > MPOS_EMV_AC_DATA_MAX_LEN || req->arpc_method < 0 ||
        req->arpc_method > 2 || req->prop_len > MPOS_EMV_PROP_AUTH_MAX_LEN) {
        goto exit;
    }
    rc = ops_pan_check(req->pan);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (memchr(req->psn, '\0', sizeof(req->psn)) == NULL) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    psn = req->psn[0] == '\0' ? NULL : req->psn;
    /* Issuer master key for application cryptograms (X9.143:2021 6.3.1 E0), derive only. */
    rc = ops_load(v, &req->imk, usages_imk, "T", 'X', &imk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* EMV 4.3 Book 2 A1.4: ICC master key; A1.3 (or PBOC): session key. */
    rc = mpos_emv_derive_icc_mk(&v->cc, req->mk_option, imk.bytes, imk.len, req->pan, psn, mk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_emv_derive_sk(&v->cc, req->sk_method, mk, sizeof(mk), req->atc, sk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 8.1.2: recompute the ARQC, constant-time compare. */
    rc = mpos_emv_ac_verify(&v->cc, sk, sizeof(sk), req->ac_data, req->ac_data_len, req->arqc);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (req->arpc_method == MPOS_EMV_ARPC_METHOD_1) {
        /* 8.2.1 */
        rc = mpos_emv_arpc1_generate(&v->cc, sk, sizeof(sk), req->arqc, req->arc, resp->arpc);
        resp->arpc_len = MPOS_EMV_ARPC1_LEN;
    } else if (req->arpc_method == MPOS_EMV_ARPC_METHOD_2) {
        /* 8.2.2 */
        rc = mpos_emv_arpc2_generate(&v->cc, sk, sizeof(sk), req->arqc, req->csu,
                                     req->prop_len > 0 ? req->prop : NULL, req->prop_len,
                                     resp->arpc);
        resp->arpc_len = MPOS_EMV_ARPC2_LEN;
    }
exit:
    hsm_key_clear(&imk);
    MPOS_WIPE_BUFFER(mk);
    MPOS_WIPE_BUFFER(sk);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
