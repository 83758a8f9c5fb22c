/* mpos-hsmd ops: random bytes and status. */
#include <stdio.h>
#include <string.h>

#include "ops_int.h"

#ifndef MPOS_VERSION_STRING
#define MPOS_VERSION_STRING "0.1.0"
#endif

int hsm_op_random(hsm_vault *v, const struct hsm_random_req *req, struct hsm_random_resp *resp)
{
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    if (req->len == 0 || req->len > HSM_RANDOM_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    if (mpos_random_bytes(resp->bytes, req->len) != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
        return MPOS_ERR_RNG;
    }
    resp->len = req->len;
    return MPOS_OK;
}

int hsm_op_status(hsm_vault *v, const struct hsm_status_req *req, struct hsm_status_resp *resp)
{
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        return MPOS_ERR_ARG;
    }
    memcpy(resp->lmk_kcv, v->lmk_kcv, HSM_KCV_LEN);
    resp->commands = req->commands;
    resp->refused = req->refused;
    resp->sessions = req->sessions;
    resp->uptime_s = req->uptime_s;
    snprintf(resp->version, sizeof(resp->version), "openmpos %s", MPOS_VERSION_STRING);
    return MPOS_OK;
}
