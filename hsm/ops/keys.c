/* mpos-hsmd ops: key generation, import, export, DUKPT initial keys, UnionPay sign-on keys. */
#include <stdio.h>
#include <string.h>

#include "mpos/dukpt.h"
#include "mpos/mkwk.h"
#include "mpos/tr31.h"
#include "ops_cert.h"
#include "ops_int.h"

static const char *const usages_kek[] = {"K0", "K1", NULL};
static const char *const usages_tmk[] = {"K0", NULL};
static const char *const usages_bdk[] = {"B0", NULL};
/* Anything a key block may hold: export checks exportability, not usage. */
static const char *const usages_any[] = {
    "B0", "B1", "B2", "B3", "C0", "D0", "D1", "D2", "D3", "E0", "E1", "E2", "E3", "E4",
    "E5", "E6", "I0", "K0", "K1", "K2", "K3", "K4", "M0", "M1", "M2", "M3", "M4", "M5",
    "M6", "M7", "M8", "P0", "P1", "S0", "S1", "S2", "V0", "V1", "V2", "V3", "V4", NULL};

/* X9.143:2021 6.2: the 16-character fixed header of a key block to wrap under a KEK (a
 * template: the length field is recomputed by mpos_tr31_wrap). Key version "00", key context
 * '0' (X9.143 6.2: determined by the wrapping key; the value older TR-31:2018 readers take). */
static int tr31_template(char version, const struct hsm_key_attr *a, char exportability,
                         size_t num_opt, char out[17])
{
    int n = snprintf(out, 17, "%c0000%c%c%c%c00%c%02u00", version, a->usage[0], a->usage[1],
                     a->algorithm, a->mode, exportability, (unsigned)num_opt);
    return n == 16 ? MPOS_OK : MPOS_ERR_FORMAT;
}

/* TR-31 version for a KEK: D under AES, B under TDES (X9.143:2021 7.2, 7.3). */
static int kek_version(const hsm_key *kek, char *version)
{
    if (kek->attr.algorithm == 'A') {
        *version = 'D';
    } else if (kek->attr.algorithm == 'T') {
        *version = 'B';
    } else {
        return MPOS_ERR_USAGE;
    }
    return MPOS_OK;
}

static int attr_valid(const struct hsm_key_attr *a)
{
    if (a->usage[0] == '\0' || a->usage[1] == '\0' || a->usage[2] != '\0' ||
        (a->exportability != 'E' && a->exportability != 'N') || a->mode == '\0' ||
        a->mode == 'N') { /* mode N permits no command (vault.h) */
        return 0;
    }
    /* A BDK names its DUKPT scheme, and it must fit its algorithm; no other key has one. */
    if (strcmp(a->usage, "B0") == 0) {
        return (a->algorithm == 'A' && a->dukpt == 1) || (a->algorithm == 'T' && a->dukpt == 2);
    }
    return a->dukpt == 0;
}

int hsm_op_generate_key(hsm_vault *v, const struct hsm_generate_key_req *req,
                        struct hsm_generate_key_resp *resp)
{
    hsm_key key;
    int rc = MPOS_ERR_ARG;
    memset(&key, 0, sizeof(key));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || !attr_valid(&req->attr)) {
        goto exit;
    }
    key.attr = req->attr;
    if (req->attr.algorithm == 'E') {
        /* An EC P-256 key pair: signature or CA key only. */
        if (req->attr.usage[0] != 'S' || req->attr.mode != 'S') {
            rc = MPOS_ERR_USAGE;
            goto exit;
        }
        rc = ops_ec_generate(key.bytes, resp->ec_pub);
        if (rc != MPOS_OK) {
            goto exit;
        }
        key.len = HSM_EC_PRIV_LEN;
        resp->ec_pub_len = HSM_EC_PUB_LEN;
    } else {
        if (!ops_key_len_valid(req->attr.algorithm, req->key_len) || req->attr.algorithm == 'E') {
            rc = MPOS_ERR_KEY;
            goto exit;
        }
        /* The vault draws it (odd parity and K1 != K2 != K3 for TDES, SP 800-67r2 3.3). */
        rc = hsm_key_generate(v, &req->attr, req->key_len, &key);
        if (rc != MPOS_OK) {
            goto exit;
        }
        rc = ops_kcv(v, &key, resp->kcv, &resp->kcv_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    rc = ops_store(v, &key, &resp->key);
exit:
    hsm_key_clear(&key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int hsm_op_generate_bdk(hsm_vault *v, const struct hsm_generate_bdk_req *req,
                        struct hsm_generate_key_resp *resp)
{
    struct hsm_generate_key_req g;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (req == NULL || (req->algorithm != 'A' && req->algorithm != 'T')) {
        return MPOS_ERR_ARG;
    }
    memset(&g, 0, sizeof(g));
    memcpy(g.attr.usage, "B0", 3);
    g.attr.algorithm = req->algorithm;
    g.attr.mode = 'X';
    g.attr.exportability = req->exportability;
    g.attr.dukpt = req->algorithm == 'A' ? 1 : 2; /* X9.24-3-2017 / X9.24-1-2009 Annex A */
    g.key_len = req->key_len;
    return hsm_op_generate_key(v, &g, resp);
}

int hsm_op_import_key(hsm_vault *v, const struct hsm_import_key_req *req,
                      struct hsm_import_key_resp *resp)
{
    hsm_key kek;
    hsm_key key;
    mpos_tr31_header hdr;
    char version;
    int rc = MPOS_ERR_ARG;
    memset(&kek, 0, sizeof(kek));
    memset(&key, 0, sizeof(key));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || req->block.text == NULL ||
        req->expected_kcv_len > HSM_KCV_LEN) {
        goto exit;
    }
    if (req->block.len > HSM_KEYBLOCK_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    /* The KEK unwraps (mode D or B). */
    rc = ops_load(v, &req->kek, usages_kek, "AT", 'D', &kek);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = kek_version(&kek, &version);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The block's version must be the KEK's: a TDES KEK is never used as an AES key and back
     * (X9.143:2021 6.2: version B = TDES KBPK, D = AES KBPK). */
    rc = mpos_tr31_header_parse(req->block.text, req->block.len, MPOS_TR31_PARSE_BLOCK, &hdr);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (hdr.version != version) {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    /* X9.143:2021 7.3 / 7.2: header check, decrypt, constant-time MAC check, then the key. */
    rc = mpos_tr31_unwrap(&v->cc, kek.bytes, kek.len, req->block.text, req->block.len, &hdr,
                          key.bytes, sizeof(key.bytes), &key.len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Mode N permits no operation inside hsmd (vault.h): such a key would be dead weight. */
    if (hdr.mode_of_use == 'N') {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    memcpy(key.attr.usage, hdr.key_usage, 3);
    key.attr.algorithm = hdr.algorithm;
    key.attr.mode = hdr.mode_of_use;
    key.attr.exportability = hdr.exportability == 'E' ? 'E' : 'N';
    key.attr.dukpt = 0;
    if (strcmp(hdr.key_usage, "B0") == 0) {
        uint8_t scheme = hdr.algorithm == 'A' ? 1 : hdr.algorithm == 'T' ? 2 : 0;
        if (scheme == 0 || (req->dukpt != 0 && req->dukpt != scheme)) {
            rc = MPOS_ERR_USAGE;
            goto exit;
        }
        key.attr.dukpt = scheme;
    } else if (req->dukpt != 0) {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    if (!ops_key_len_valid(key.attr.algorithm, key.len) || key.attr.algorithm == 'E') {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    /* A key is never protected by a weaker one (X9.24-1:2017 7.2.2). */
    if (ops_strength(key.attr.algorithm, key.len) > ops_strength(kek.attr.algorithm, kek.len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    rc = ops_kcv(v, &key, resp->kcv, &resp->kcv_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (req->expected_kcv_len > 0 &&
        (req->expected_kcv_len > resp->kcv_len ||
         !mpos_ct_equal(resp->kcv, req->expected_kcv, req->expected_kcv_len))) {
        rc = MPOS_ERR_VERIFY;
        goto exit;
    }
    resp->attr = key.attr;
    rc = ops_store(v, &key, &resp->key);
exit:
    hsm_key_clear(&kek);
    hsm_key_clear(&key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int hsm_op_export_key(hsm_vault *v, const struct hsm_export_key_req *req,
                      struct hsm_export_key_resp *resp)
{
    hsm_key kek;
    hsm_key key;
    char header[17];
    char version;
    char exportability;
    size_t len = 0;
    int rc = MPOS_ERR_ARG;
    memset(&kek, 0, sizeof(kek));
    memset(&key, 0, sizeof(key));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        goto exit;
    }
    exportability = req->exportability == '\0' ? 'N' : req->exportability;
    if (exportability != 'N' && exportability != 'E') {
        goto exit;
    }
    rc = ops_load(v, &req->kek, usages_kek, "AT", 'E', &kek);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Any symmetric key whatever its mode of use: the vault checks a mode against an
     * operation, so ask for each operation in turn (the first that the key's mode allows
     * loads it); the gate for export is the exportability below. A block that does not
     * verify stops at the first try. */
    rc = MPOS_ERR_USAGE;
    for (const char *op = "GVEDXS"; *op != '\0' && rc == MPOS_ERR_USAGE; op++) {
        rc = ops_load(v, &req->key, usages_any, "ATDH4", *op, &key);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* A non-exportable key never leaves (X9.143:2021 6.3.5). */
    if (key.attr.exportability != 'E') {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    if (ops_strength(key.attr.algorithm, key.len) > ops_strength(kek.attr.algorithm, kek.len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    rc = kek_version(&kek, &version);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = tr31_template(version, &key.attr, exportability, 0, header);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_tr31_wrap(&v->cc, kek.bytes, kek.len, header, 16, key.bytes, key.len, NULL, 0,
                        resp->block.text, sizeof(resp->block.text), &len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    resp->block.len = len;
    rc = ops_kcv(v, &key, resp->kcv, &resp->kcv_len);
exit:
    hsm_key_clear(&kek);
    hsm_key_clear(&key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int hsm_op_dukpt_initial_key(hsm_vault *v, const struct hsm_dukpt_initial_key_req *req,
                             struct hsm_dukpt_initial_key_resp *resp)
{
    hsm_key bdk;
    hsm_key tk;
    hsm_key ik;
    struct hsm_key_attr a;
    char header[16 + 4 + 2 * MPOS_DUKPT_TDES_KSN_LEN + 1];
    uint8_t id[HSM_KSN_MAX_LEN];
    char version;
    size_t len = 0;
    int rc = MPOS_ERR_ARG;
    memset(&bdk, 0, sizeof(bdk));
    memset(&tk, 0, sizeof(tk));
    memset(&ik, 0, sizeof(ik));
    memset(&a, 0, sizeof(a));
    memset(id, 0, sizeof(id));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        goto exit;
    }
    rc = ops_load(v, &req->bdk, usages_bdk, "AT", 'X', &bdk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = ops_load(v, &req->transport_key, usages_kek, "AT", 'E', &tk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = kek_version(&tk, &version);
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(a.usage, "B1", 3); /* X9.143:2021 6.3.1: initial DUKPT key */
    a.mode = 'X';
    if (bdk.attr.algorithm == 'A' && bdk.attr.dukpt != 2) {
        if (req->id_len != MPOS_DUKPT_AES_IKID_LEN) {
            rc = MPOS_ERR_LENGTH;
            goto exit;
        }
        memcpy(id, req->id, MPOS_DUKPT_AES_IKID_LEN);
        /* X9.24-3-2017 6.5.3: the initial key of the initial key ID. */
        rc = mpos_dukpt_aes_initial_key(&v->cc, bdk.bytes, bdk.len, id, ik.bytes);
        if (rc != MPOS_OK) {
            goto exit;
        }
        ik.len = bdk.len;
        a.algorithm = 'A';
    } else if (bdk.attr.algorithm == 'T' && bdk.attr.dukpt != 1) {
        if (req->id_len != MPOS_DUKPT_TDES_KSN_LEN) {
            rc = MPOS_ERR_LENGTH;
            goto exit;
        }
        /* X9.24-1-2009 A.6: the initial KSN has the 21 counter bits zero. */
        memcpy(id, req->id, MPOS_DUKPT_TDES_KSN_LEN);
        id[7] &= 0xE0;
        id[8] = 0;
        id[9] = 0;
        rc = mpos_dukpt_tdes_ipek(&v->cc, bdk.bytes, bdk.len, id, ik.bytes);
        if (rc != MPOS_OK) {
            goto exit;
        }
        ik.len = MPOS_DUKPT_TDES_KEY_LEN;
        a.algorithm = 'T';
    } else {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    ik.attr = a;
    if (ops_strength(ik.attr.algorithm, ik.len) > ops_strength(tk.attr.algorithm, tk.len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    rc = tr31_template(version, &a, 'N', 1, header);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* X9.143:2021 6.3.6: IK (AES DUKPT initial key ID, 16 hex) or KS (TDES DUKPT initial
     * KSN, 20 hex); length field = ID + length + data characters. */
    if (a.algorithm == 'A') {
        memcpy(header + 16, "IK14", 4);
        mpos_hex_encode(id, MPOS_DUKPT_AES_IKID_LEN, header + 20);
    } else {
        memcpy(header + 16, "KS18", 4);
        mpos_hex_encode(id, MPOS_DUKPT_TDES_KSN_LEN, header + 20);
    }
    rc = mpos_tr31_wrap(&v->cc, tk.bytes, tk.len, header, strlen(header), ik.bytes, ik.len, NULL, 0,
                        resp->block.text, sizeof(resp->block.text), &len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    resp->block.len = len;
    rc = ops_kcv(v, &ik, resp->kcv, &resp->kcv_len);
exit:
    hsm_key_clear(&bdk);
    hsm_key_clear(&tk);
    hsm_key_clear(&ik);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* One working key of the sign-on: random, encrypted under the TMK with its check value
 * (mpos/mkwk.h), and stored under the LMK. */
static int mkwk_one(hsm_vault *v, enum mpos_cipher cipher, const hsm_key *tmk, const char *usage,
                    char algorithm, char mode, size_t len, struct hsm_mkwk_key *out)
{
    struct hsm_key_attr a;
    hsm_key wk;
    int rc;
    memset(&a, 0, sizeof(a));
    memcpy(a.usage, usage, 3);
    a.algorithm = algorithm;
    a.mode = mode;
    a.exportability = 'N';
    rc = hsm_key_generate(v, &a, len, &wk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_mkwk_wrap(&v->cc, cipher, tmk->bytes, tmk->len, wk.bytes, wk.len, out->enc, out->kcv,
                        HSM_MKWK_KCV_LEN);
    if (rc != MPOS_OK) {
        goto exit;
    }
    out->enc_len = len;
    rc = ops_store(v, &wk, &out->key);
exit:
    hsm_key_clear(&wk);
    return rc;
}

int hsm_op_mkwk_generate(hsm_vault *v, const struct hsm_mkwk_req *req, struct hsm_mkwk_resp *resp)
{
    static const char tmk_algorithms[] = {'T', HSM_ALG_SM4, '\0'};
    hsm_key tmk;
    enum mpos_cipher cipher;
    char mak_alg;
    size_t mak_len;
    int rc = MPOS_ERR_ARG;
    memset(&tmk, 0, sizeof(tmk));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL) {
        goto exit;
    }
    rc = ops_load(v, &req->tmk, usages_tmk, tmk_algorithms, 'E', &tmk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (tmk.len != MPOS_MKWK_TMK_LEN) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    rc = ops_cipher(&tmk, &cipher);
    if (rc != MPOS_OK) {
        goto exit;
    }
    mak_alg = tmk.attr.algorithm;
    mak_len = 16;
    if (req->mak_single_des) {
        if (cipher != MPOS_CIPHER_TDES) {
            rc = MPOS_ERR_ARG;
            goto exit;
        }
        mak_alg = 'D'; /* single DES, 8 bytes (X9.143:2021 6.3.2 algorithm D) */
        mak_len = 8;
    }
    rc = mkwk_one(v, cipher, &tmk, "P0", tmk.attr.algorithm, 'B', 16, &resp->pik);
    if (rc == MPOS_OK) {
        rc = mkwk_one(v, cipher, &tmk, "M1", mak_alg, 'C', mak_len, &resp->mak);
    }
    if (rc == MPOS_OK) {
        rc = mkwk_one(v, cipher, &tmk, "D0", tmk.attr.algorithm, 'B', 16, &resp->tdk);
    }
exit:
    hsm_key_clear(&tmk);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* Forms a key from clear components entered under dual control (no one person knows the key):
 * the XOR of 2 or 3 components. */
int hsm_op_key_from_components(hsm_vault *v, const struct hsm_key_from_components_req *req,
                               struct hsm_key_from_components_resp *resp)
{
    hsm_key key, part;
    static const uint8_t zero[HSM_KEY_MAX_LEN];
    int rc = MPOS_ERR_ARG;
    memset(&key, 0, sizeof(key));
    memset(&part, 0, sizeof(part));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || !attr_valid(&req->attr)) {
        goto exit;
    }
    if (req->n < 2 || req->n > HSM_MAX_COMPONENTS) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    /* Symmetric keys with a check value only: the operators compare it. */
    if (req->attr.algorithm != 'A' && req->attr.algorithm != 'T' && req->attr.algorithm != 'D' &&
        req->attr.algorithm != HSM_ALG_SM4) {
        rc = MPOS_ERR_USAGE;
        goto exit;
    }
    if (!ops_key_len_valid(req->attr.algorithm, req->key_len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    key.attr = req->attr;
    key.len = req->key_len;
    part.attr = req->attr;
    part.len = req->key_len;
    for (size_t i = 0; i < req->n; i++) {
        /* A zero component adds nothing; two equal ones cancel out: both defeat dual control. */
        rc = MPOS_ERR_KEY;
        if (mpos_ct_equal(req->comp[i], zero, req->key_len)) {
            goto exit;
        }
        for (size_t j = 0; j < i; j++) {
            if (mpos_ct_equal(req->comp[i], req->comp[j], req->key_len)) {
                goto exit;
            }
        }
        memcpy(part.bytes, req->comp[i], req->key_len);
        rc = ops_kcv(v, &part, resp->comp_kcv[i], &resp->kcv_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        for (size_t b = 0; b < req->key_len; b++) {
            key.bytes[b] ^= req->comp[i][b];
        }
    }
    rc = MPOS_ERR_KEY;
    if (mpos_ct_equal(key.bytes, zero, key.len)) {
        goto exit;
    }
    if (key.attr.algorithm == 'T' || key.attr.algorithm == 'D') {
        /* FIPS 46-3: odd parity per byte; SP 800-67r2 3.3: K1 != K2 (!= K3), else the key is
         * single DES. Parity bits are outside the key, so compare after setting them. */
        mpos_des_set_odd_parity(key.bytes, key.len);
        if (key.len >= 16 && (mpos_ct_equal(key.bytes, key.bytes + 8, 8) ||
                              (key.len == 24 && (mpos_ct_equal(key.bytes + 8, key.bytes + 16, 8) ||
                                                 mpos_ct_equal(key.bytes, key.bytes + 16, 8))))) {
            goto exit;
        }
    }
    rc = ops_kcv(v, &key, resp->kcv, &resp->kcv_len);
    if (rc == MPOS_OK) {
        rc = ops_store(v, &key, &resp->key);
    }
exit:
    hsm_key_clear(&key);
    hsm_key_clear(&part);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
