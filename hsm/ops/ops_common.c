/* mpos-hsmd ops: helpers shared by the command files (ops_int.h). */
#include <string.h>

#include "mpos/dukpt.h"
#include "mpos/kcv.h"
#include "ops_int.h"

int ops_vault_ready(const hsm_vault *v)
{
    return v != NULL && v->open;
}

int ops_load(hsm_vault *v, const struct hsm_kb_in *kb, const char *const *usages,
             const char *algorithms, char operation, hsm_key *out)
{
    struct hsm_key_need need;
    int rc;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (kb == NULL || kb->text == NULL || kb->len == 0) {
        return MPOS_ERR_ARG;
    }
    if (kb->len > HSM_KEYBLOCK_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    need.usages = usages;
    need.algorithms = algorithms;
    need.operation = operation;
    rc = hsm_key_load(v, kb->text, kb->len, &need, out);
    if (rc != MPOS_OK) {
        hsm_key_clear(out);
        return rc;
    }
    /* Belt and braces: the vault enforces need, and so does every command. */
    if (out->attr.algorithm == '\0' || strchr(algorithms, out->attr.algorithm) == NULL ||
        !ops_key_len_valid(out->attr.algorithm, out->len)) {
        hsm_key_clear(out);
        return MPOS_ERR_USAGE;
    }
    for (size_t i = 0; usages[i] != NULL; i++) {
        if (strcmp(usages[i], out->attr.usage) == 0) {
            return MPOS_OK;
        }
    }
    hsm_key_clear(out);
    return MPOS_ERR_USAGE;
}

int ops_cipher(const hsm_key *k, enum mpos_cipher *cipher)
{
    switch (k->attr.algorithm) {
    case 'T':
    case 'D':
        *cipher = MPOS_CIPHER_TDES;
        return MPOS_OK;
    case 'A':
        *cipher = MPOS_CIPHER_AES;
        return MPOS_OK;
    case HSM_ALG_SM4:
        *cipher = MPOS_CIPHER_SM4;
        return MPOS_OK;
    default:
        return MPOS_ERR_USAGE;
    }
}

int ops_key_len_valid(char algorithm, size_t len)
{
    switch (algorithm) {
    case 'A':
        return len == 16 || len == 24 || len == 32;
    case 'T':
        return len == 16 || len == 24;
    case 'D':
        return len == 8;
    case HSM_ALG_SM4:
        return len == 16;
    case 'H':
        return len >= 16 && len <= HSM_KEY_MAX_LEN;
    case 'E':
        return len == HSM_EC_PRIV_LEN;
    default:
        return 0;
    }
}

int ops_kcv(hsm_vault *v, const hsm_key *k, uint8_t kcv[HSM_KCV_LEN], size_t *kcv_len)
{
    enum mpos_cipher cipher;
    enum mpos_kcv_method method;
    size_t len;
    int rc;
    memset(kcv, 0, HSM_KCV_LEN);
    *kcv_len = 0;
    if (k->attr.algorithm == 'H' || k->attr.algorithm == 'E') {
        return MPOS_OK; /* no check value for HMAC and EC keys */
    }
    rc = ops_cipher(k, &cipher);
    if (rc != MPOS_OK) {
        return rc;
    }
    /* X9.24-1:2017 A.3: CMAC for AES; the legacy method for TDES and SM4. */
    method = mpos_kcv_default_method(cipher);
    len = mpos_kcv_default_len(method);
    rc = mpos_kcv_compute(&v->cc, cipher, method, k->bytes, k->len, kcv, len);
    if (rc == MPOS_OK) {
        *kcv_len = len;
    }
    return rc;
}

unsigned ops_strength(char algorithm, size_t key_len)
{
    /* SP 800-57 part 1 rev. 5, 5.6.1 table 2. */
    switch (algorithm) {
    case 'D':
        return 56;
    case 'T':
        return key_len == 24 ? 112u : key_len == 16 ? 80u : 0u;
    case 'A':
        return (unsigned)(8 * key_len);
    case HSM_ALG_SM4:
        return 128;
    case 'H':
        return key_len * 8 > 256 ? 256u : (unsigned)(8 * key_len);
    case 'E':
        return 128;
    default:
        return 0;
    }
}

int ops_store(hsm_vault *v, const hsm_key *k, struct hsm_kb_out *out)
{
    size_t len = 0;
    int rc = hsm_key_store(v, k, out->text, sizeof(out->text), &len);
    if (rc != MPOS_OK) {
        mpos_cleanse(out, sizeof(*out));
        return rc;
    }
    if (len >= sizeof(out->text)) {
        mpos_cleanse(out, sizeof(*out));
        return MPOS_ERR_LENGTH;
    }
    out->text[len] = '\0';
    out->len = len;
    return MPOS_OK;
}

int ops_pan_check(const char pan[HSM_PAN_BUF_LEN])
{
    if (pan == NULL || memchr(pan, '\0', HSM_PAN_BUF_LEN) == NULL ||
        !mpos_digits_valid(pan, 12, 19)) {
        return MPOS_ERR_PAN;
    }
    return MPOS_OK;
}

static const char *const usages_bdk[] = {"B0", NULL};

int ops_dukpt_working_key(hsm_vault *v, const struct hsm_dukpt_ref *ref, enum ops_dukpt_key kind,
                          hsm_key *wk, int *scheme)
{
    hsm_key bdk;
    int rc;
    memset(&bdk, 0, sizeof(bdk));
    memset(wk, 0, sizeof(*wk));
    *scheme = 0;
    /* A BDK derives, nothing else (X9.143 6.3.3 mode X). */
    rc = ops_load(v, &ref->bdk, usages_bdk, "AT", 'X', &bdk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if ((bdk.attr.algorithm == 'A' && bdk.attr.dukpt != 1 && bdk.attr.dukpt != 0) ||
        (bdk.attr.algorithm == 'T' && bdk.attr.dukpt != 2 && bdk.attr.dukpt != 0)) {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    if (bdk.attr.algorithm == 'A') {
        static const enum mpos_dukpt_aes_usage aes_usage[] = {
            [OPS_DUKPT_PIN] = MPOS_DUKPT_AES_USAGE_PIN,
            [OPS_DUKPT_MAC_REQUEST] = MPOS_DUKPT_AES_USAGE_MAC_GEN,
            [OPS_DUKPT_MAC_RESPONSE] = MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
            [OPS_DUKPT_DATA_REQUEST] = MPOS_DUKPT_AES_USAGE_DATA_ENC,
            [OPS_DUKPT_DATA_RESPONSE] = MPOS_DUKPT_AES_USAGE_DATA_DEC};
        size_t klen = ref->aes_key_len == 0 ? 16 : ref->aes_key_len;
        enum mpos_dukpt_aes_key_type type;
        if (ref->ksn_len != MPOS_DUKPT_AES_KSN_LEN) {
            rc = MPOS_ERR_KSN;
            goto exit;
        }
        switch (klen) {
        case 16:
            type = MPOS_DUKPT_AES_KEY_AES128;
            break;
        case 24:
            type = MPOS_DUKPT_AES_KEY_AES192;
            break;
        case 32:
            type = MPOS_DUKPT_AES_KEY_AES256;
            break;
        default:
            rc = MPOS_ERR_KEY;
            goto exit;
        }
        /* X9.24-3-2017 6.3.3 (host derivation of the working key of the KSN). */
        rc = mpos_dukpt_aes_working_key(&v->cc, bdk.bytes, bdk.len, ref->ksn, aes_usage[kind], type,
                                        wk->bytes);
        if (rc != MPOS_OK) {
            goto exit;
        }
        wk->len = klen;
        wk->attr.algorithm = 'A';
        *scheme = 1;
    } else {
        static const enum mpos_dukpt_tdes_usage tdes_usage[] = {
            [OPS_DUKPT_PIN] = MPOS_DUKPT_TDES_USAGE_PIN,
            [OPS_DUKPT_MAC_REQUEST] = MPOS_DUKPT_TDES_USAGE_MAC_REQ,
            [OPS_DUKPT_MAC_RESPONSE] = MPOS_DUKPT_TDES_USAGE_MAC_RESP,
            [OPS_DUKPT_DATA_REQUEST] = MPOS_DUKPT_TDES_USAGE_DATA_REQ,
            [OPS_DUKPT_DATA_RESPONSE] = MPOS_DUKPT_TDES_USAGE_DATA_RESP};
        if (ref->ksn_len != MPOS_DUKPT_TDES_KSN_LEN) {
            rc = MPOS_ERR_KSN;
            goto exit;
        }
        if (ref->aes_key_len != 0) {
            rc = MPOS_ERR_ARG;
            goto exit;
        }
        /* X9.24-1-2009 A.4 (transaction key, then the usage's variant). */
        rc = mpos_dukpt_tdes_working_key(&v->cc, bdk.bytes, bdk.len, ref->ksn, tdes_usage[kind],
                                         wk->bytes);
        if (rc != MPOS_OK) {
            goto exit;
        }
        wk->len = MPOS_DUKPT_TDES_KEY_LEN;
        wk->attr.algorithm = 'T';
        *scheme = 2;
    }
exit:
    hsm_key_clear(&bdk);
    if (rc != MPOS_OK) {
        hsm_key_clear(wk);
        *scheme = 0;
    }
    return rc;
}
