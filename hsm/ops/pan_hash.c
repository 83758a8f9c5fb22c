/* mpos-hsmd ops: keyed hash of a PAN under an hsmd-internal key derived from the LMK. */
#include <string.h>

#include "mpos/hmac.h"
#include "ops_int.h"

#define PAN_HASH_LABEL "openmpos PAN hash"

/* K_PAN = hsm_kdf_cmac(LMK, fixed): NIST SP 800-108r1 4.1 counter mode, PRF AES-256-CMAC,
 * fixed = "openmpos PAN hash" (17 ASCII bytes) || 0x00 || empty context || [256]_32; the
 * derivation of the KBPK with another label, so the two keys are independent. */
static int pan_hash_key(hsm_vault *v, uint8_t key[32])
{
    uint8_t fixed[sizeof(PAN_HASH_LABEL) + 4]; /* sizeof counts the label's NUL: the 0x00 */
    memcpy(fixed, PAN_HASH_LABEL, sizeof(PAN_HASH_LABEL));
    mpos_store_be32(fixed + sizeof(PAN_HASH_LABEL), 256);
    return hsm_kdf_cmac(&v->cc, v->lmk, HSM_LMK_LEN, fixed, sizeof(fixed), key, 32);
}

int hsm_op_pan_hash(hsm_vault *v, const struct hsm_pan_hash_req *req,
                    struct hsm_pan_hash_resp *resp)
{
    uint8_t key[32];
    int rc;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || v->lmk == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = ops_pan_check(req->pan);
    if (rc != MPOS_OK) {
        return rc;
    }
    memset(key, 0, sizeof(key));
    rc = pan_hash_key(v, key);
    if (rc == MPOS_OK) {
        /* RFC 2104 HMAC-SHA-256 over the PAN's ASCII digits. */
        rc = mpos_hmac_sha256(key, sizeof(key), (const uint8_t *)req->pan, strlen(req->pan),
                              resp->hash);
    }
    MPOS_WIPE_BUFFER(key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
