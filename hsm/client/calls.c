/* mpos-hsmd client: the typed calls, one per command (field tables in docs/hsm-protocol.md). */
#include <string.h>

#include "client.h"
#include "mpos/util.h"

static void put_kb(hsm_writer *w, unsigned tag, const struct hsm_kb_in *k)
{
    hsm_put_bytes(w, tag, k->text, k->len);
}

static void put_char(hsm_writer *w, unsigned tag, char ch)
{
    hsm_put_bytes(w, tag, &ch, 1);
}

static void put_dukpt(hsm_writer *w, const struct hsm_dukpt_ref *r)
{
    put_kb(w, HSM_TAG_BDK, &r->bdk);
    hsm_put_bytes(w, HSM_TAG_KSN, r->ksn, r->ksn_len);
    if (r->aes_key_len != 0) {
        hsm_put_u8(w, HSM_TAG_AES_KEY_LEN, (uint8_t)r->aes_key_len);
    }
}

/* Copies a response field into out (cap bytes); MPOS_ERR_FORMAT if absent or too long. */
static int get(const hsm_client *c, unsigned tag, void *out, size_t cap, size_t *len)
{
    const uint8_t *v = NULL;
    size_t n = 0;
    if (hsm_msg_bytes(&c->resp, tag, &v, &n) != 0 || n > cap) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(out, v, n);
    if (len != NULL) {
        *len = n;
    }
    return 0;
}

static int get_kb(const hsm_client *c, unsigned tag, struct hsm_kb_out *k)
{
    int rc = get(c, tag, k->text, sizeof(k->text) - 1, &k->len);
    k->text[rc == 0 ? k->len : 0] = '\0';
    return rc;
}

static int get_text(const hsm_client *c, unsigned tag, char *out, size_t cap)
{
    return hsm_msg_text(&c->resp, tag, out, cap) == 0 ? 0 : MPOS_ERR_FORMAT;
}

/* Runs the exchange; on success runs the response reader; on any failure zeroes resp. */
#define FINISH(c, w, resp, read)                                                                   \
    do {                                                                                           \
        int rc_ = hsm_client_exchange(c, w);                                                       \
        if (rc_ == 0 && (read) != 0) {                                                             \
            rc_ = MPOS_ERR_FORMAT;                                                                 \
        }                                                                                          \
        if (rc_ != 0 && (resp) != NULL) {                                                          \
            mpos_cleanse((resp), sizeof(*(resp)));                                                 \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

static int read_status(const hsm_client *c, struct hsm_client_status *out)
{
    uint8_t workers = 0;
    int rc = get_text(c, HSM_TAG_VERSION, out->version, sizeof(out->version)) |
             get_text(c, HSM_TAG_ROLE, out->role, sizeof(out->role)) |
             get(c, HSM_TAG_LMK_KCV, out->lmk_kcv, sizeof(out->lmk_kcv), NULL) |
             hsm_msg_u64(&c->resp, HSM_TAG_UPTIME, &out->uptime_s) |
             hsm_msg_u64(&c->resp, HSM_TAG_COMMANDS, &out->commands) |
             hsm_msg_u64(&c->resp, HSM_TAG_REFUSED, &out->refused) |
             hsm_msg_u64(&c->resp, HSM_TAG_SESSIONS, &out->sessions) |
             hsm_msg_u8(&c->resp, HSM_TAG_WORKERS, &workers);
    out->workers = workers;
    return rc;
}

int hsm_client_status(hsm_client *c, struct hsm_client_status *out)
{
    hsm_writer w;
    memset(out, 0, sizeof(*out));
    hsm_client_begin(c, HSM_CMD_STATUS, &w);
    FINISH(c, &w, out, read_status(c, out));
}

int hsm_client_random(hsm_client *c, uint8_t *out, size_t len)
{
    hsm_writer w;
    size_t got = 0;
    if (len == 0 || len > HSM_RANDOM_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    hsm_client_begin(c, HSM_CMD_RANDOM, &w);
    hsm_put_u16(&w, HSM_TAG_COUNT, (uint16_t)len);
    int rc = hsm_client_exchange(c, &w);
    if (rc == 0) {
        rc = get(c, HSM_TAG_DATA, out, len, &got);
        if (rc == 0 && got != len) {
            rc = MPOS_ERR_FORMAT;
        }
    }
    return rc;
}

static int read_generated(const hsm_client *c, struct hsm_generate_key_resp *r)
{
    int rc = get_kb(c, HSM_TAG_KEY_BLOCK, &r->key);
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_KCV)) {
        rc = get(c, HSM_TAG_KCV, r->kcv, sizeof(r->kcv), &r->kcv_len);
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_PUBKEY)) {
        rc = get(c, HSM_TAG_PUBKEY, r->ec_pub, sizeof(r->ec_pub), &r->ec_pub_len);
    }
    return rc;
}

int hsm_client_generate_key(hsm_client *c, const struct hsm_generate_key_req *req,
                            struct hsm_generate_key_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_KEY_GENERATE, &w);
    hsm_put_bytes(&w, HSM_TAG_KEY_USAGE, req->attr.usage,
                  (req->attr.usage[0] != 0 ? (req->attr.usage[1] != 0 ? 2u : 1u) : 0u));
    put_char(&w, HSM_TAG_ALGORITHM, req->attr.algorithm);
    put_char(&w, HSM_TAG_MODE, req->attr.mode);
    put_char(&w, HSM_TAG_EXPORTABILITY, req->attr.exportability);
    if (req->key_len != 0) {
        hsm_put_u8(&w, HSM_TAG_KEY_LEN, (uint8_t)req->key_len);
    }
    if (req->attr.dukpt != 0) {
        hsm_put_u8(&w, HSM_TAG_DUKPT, req->attr.dukpt);
    }
    FINISH(c, &w, resp, read_generated(c, resp));
}

int hsm_client_generate_bdk(hsm_client *c, const struct hsm_generate_bdk_req *req,
                            struct hsm_generate_key_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_BDK_GENERATE, &w);
    put_char(&w, HSM_TAG_ALGORITHM, req->algorithm);
    hsm_put_u8(&w, HSM_TAG_KEY_LEN, (uint8_t)req->key_len);
    put_char(&w, HSM_TAG_EXPORTABILITY, req->exportability);
    FINISH(c, &w, resp, read_generated(c, resp));
}

static int read_import(const hsm_client *c, struct hsm_import_key_resp *r)
{
    char usage[3] = "", alg[2] = "", mode[2] = "", exp[2] = "";
    int rc = get_kb(c, HSM_TAG_KEY_BLOCK, &r->key) |
             get_text(c, HSM_TAG_KEY_USAGE, usage, sizeof(usage)) |
             get_text(c, HSM_TAG_ALGORITHM, alg, sizeof(alg)) |
             get_text(c, HSM_TAG_MODE, mode, sizeof(mode)) |
             get_text(c, HSM_TAG_EXPORTABILITY, exp, sizeof(exp)) |
             hsm_msg_u8(&c->resp, HSM_TAG_DUKPT, &r->attr.dukpt) |
             get(c, HSM_TAG_KCV, r->kcv, sizeof(r->kcv), &r->kcv_len);
    memcpy(r->attr.usage, usage, sizeof(usage));
    r->attr.algorithm = alg[0];
    r->attr.mode = mode[0];
    r->attr.exportability = exp[0];
    return rc != 0 ? MPOS_ERR_FORMAT : 0;
}

int hsm_client_import_key(hsm_client *c, const struct hsm_import_key_req *req,
                          struct hsm_import_key_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_KEY_IMPORT, &w);
    put_kb(&w, HSM_TAG_KEK, &req->kek);
    put_kb(&w, HSM_TAG_TR31, &req->block);
    if (req->dukpt != 0) {
        hsm_put_u8(&w, HSM_TAG_DUKPT, req->dukpt);
    }
    if (req->expected_kcv_len != 0) {
        hsm_put_bytes(&w, HSM_TAG_KCV, req->expected_kcv, req->expected_kcv_len);
    }
    FINISH(c, &w, resp, read_import(c, resp));
}

int hsm_client_export_key(hsm_client *c, const struct hsm_export_key_req *req,
                          struct hsm_export_key_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_KEY_EXPORT, &w);
    put_kb(&w, HSM_TAG_KEK, &req->kek);
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->key);
    put_char(&w, HSM_TAG_EXPORTABILITY, req->exportability);
    FINISH(c, &w, resp,
           get_kb(c, HSM_TAG_TR31, &resp->block) |
               get(c, HSM_TAG_KCV, resp->kcv, sizeof(resp->kcv), &resp->kcv_len));
}

int hsm_client_dukpt_initial_key(hsm_client *c, const struct hsm_dukpt_initial_key_req *req,
                                 struct hsm_dukpt_initial_key_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_DUKPT_INITIAL_KEY, &w);
    put_kb(&w, HSM_TAG_BDK, &req->bdk);
    hsm_put_bytes(&w, HSM_TAG_KEY_ID, req->id, req->id_len);
    put_kb(&w, HSM_TAG_KEK, &req->transport_key);
    FINISH(c, &w, resp,
           get_kb(c, HSM_TAG_TR31, &resp->block) |
               get(c, HSM_TAG_KCV, resp->kcv, sizeof(resp->kcv), &resp->kcv_len));
}

static int read_mkwk_key(const hsm_client *c, unsigned tag_enc, struct hsm_mkwk_key *k)
{
    return get(c, tag_enc, k->enc, sizeof(k->enc), &k->enc_len) |
           get(c, tag_enc + 1, k->kcv, sizeof(k->kcv), NULL) | get_kb(c, tag_enc + 2, &k->key);
}

int hsm_client_mkwk_generate(hsm_client *c, const struct hsm_mkwk_req *req,
                             struct hsm_mkwk_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_MKWK_GENERATE, &w);
    put_kb(&w, HSM_TAG_KEK, &req->tmk);
    if (req->mak_single_des) {
        hsm_put_u8(&w, HSM_TAG_SINGLE_DES, 1);
    }
    FINISH(c, &w, resp,
           read_mkwk_key(c, HSM_TAG_PIK_ENC, &resp->pik) |
               read_mkwk_key(c, HSM_TAG_MAK_ENC, &resp->mak) |
               read_mkwk_key(c, HSM_TAG_TDK_ENC, &resp->tdk));
}

int hsm_client_dukpt_mac_verify(hsm_client *c, const struct hsm_dukpt_mac_verify_req *req)
{
    hsm_writer w;
    hsm_client_begin(c, HSM_CMD_DUKPT_MAC_VERIFY, &w);
    put_dukpt(&w, &req->dukpt);
    hsm_put_bytes(&w, HSM_TAG_DATA, req->data, req->data_len);
    hsm_put_bytes(&w, HSM_TAG_MAC, req->mac, req->mac_len);
    return hsm_client_exchange(c, &w);
}

int hsm_client_dukpt_mac_generate(hsm_client *c, const struct hsm_dukpt_mac_generate_req *req,
                                  struct hsm_mac_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_DUKPT_MAC_GENERATE, &w);
    put_dukpt(&w, &req->dukpt);
    hsm_put_bytes(&w, HSM_TAG_DATA, req->data, req->data_len);
    if (req->mac_len != 0) {
        hsm_put_u8(&w, HSM_TAG_MAC_LEN, (uint8_t)req->mac_len);
    }
    FINISH(c, &w, resp, get(c, HSM_TAG_MAC, resp->mac, sizeof(resp->mac), &resp->mac_len));
}

int hsm_client_pin_translate(hsm_client *c, const struct hsm_pin_translate_req *req,
                             struct hsm_pin_block_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    if (req->source == HSM_PIN_FROM_DUKPT) {
        hsm_client_begin(c, HSM_CMD_PIN_TRANSLATE_DUKPT, &w);
        put_dukpt(&w, &req->dukpt);
    } else if (req->source == HSM_PIN_FROM_KEY) {
        hsm_client_begin(c, HSM_CMD_PIN_TRANSLATE, &w);
        put_kb(&w, HSM_TAG_SRC_KEY, &req->src_key);
        hsm_put_u8(&w, HSM_TAG_PIN_FORMAT, (uint8_t)req->src_format);
    } else {
        return MPOS_ERR_ARG;
    }
    hsm_put_bytes(&w, HSM_TAG_PIN_BLOCK, req->pin_block, req->pin_block_len);
    hsm_put_text(&w, HSM_TAG_PAN, req->pan);
    put_kb(&w, HSM_TAG_DEST_KEY, &req->zpk);
    hsm_put_u8(&w, HSM_TAG_DEST_FORMAT, (uint8_t)req->dst_format);
    FINISH(
        c, &w, resp,
        get(c, HSM_TAG_PIN_BLOCK, resp->pin_block, sizeof(resp->pin_block), &resp->pin_block_len));
}

static void put_pvv(hsm_writer *w, const struct hsm_pvv_req *req, int with_pvv)
{
    put_kb(w, HSM_TAG_SRC_KEY, &req->zpk);
    hsm_put_u8(w, HSM_TAG_PIN_FORMAT, (uint8_t)req->format);
    hsm_put_bytes(w, HSM_TAG_PIN_BLOCK, req->pin_block, req->pin_block_len);
    hsm_put_text(w, HSM_TAG_PAN, req->pan);
    put_kb(w, HSM_TAG_PVK, &req->pvk);
    hsm_put_u8(w, HSM_TAG_PVKI, req->pvki);
    if (with_pvv) {
        hsm_put_text(w, HSM_TAG_PVV, req->pvv);
    }
}

int hsm_client_pin_verify(hsm_client *c, const struct hsm_pvv_req *req)
{
    hsm_writer w;
    hsm_client_begin(c, HSM_CMD_PIN_VERIFY_PVV, &w);
    put_pvv(&w, req, 1);
    return hsm_client_exchange(c, &w);
}

int hsm_client_pvv_generate(hsm_client *c, const struct hsm_pvv_req *req, struct hsm_pvv_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_PVV_GENERATE, &w);
    put_pvv(&w, req, 0);
    FINISH(c, &w, resp, get_text(c, HSM_TAG_PVV, resp->pvv, sizeof(resp->pvv)));
}

static int read_card_data(const hsm_client *c, struct hsm_card_data_resp *r)
{
    int rc = get_text(c, HSM_TAG_PAN, r->pan, sizeof(r->pan)) |
             get(c, HSM_TAG_IV, r->iv, sizeof(r->iv), &r->iv_len) |
             get(c, HSM_TAG_DATA, r->data, sizeof(r->data), &r->data_len);
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_EMV)) {
        rc = get(c, HSM_TAG_EMV, r->emv, sizeof(r->emv), &r->emv_len);
    }
    return rc != 0 ? MPOS_ERR_FORMAT : 0;
}

int hsm_client_card_data_translate(hsm_client *c, const struct hsm_card_data_req *req,
                                   struct hsm_card_data_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_CARD_DATA_TRANSLATE, &w);
    put_dukpt(&w, &req->dukpt);
    hsm_put_bytes(&w, HSM_TAG_DATA, req->data, req->data_len);
    put_kb(&w, HSM_TAG_DEST_KEY, &req->zdk);
    FINISH(c, &w, resp, read_card_data(c, resp));
}

static void put_mac(hsm_writer *w, const struct hsm_mac_req *req)
{
    hsm_put_u8(w, HSM_TAG_MAC_ALG, (uint8_t)req->alg);
    put_kb(w, HSM_TAG_KEY_BLOCK, &req->key);
    hsm_put_bytes(w, HSM_TAG_DATA, req->data, req->data_len);
}

int hsm_client_mac_generate(hsm_client *c, const struct hsm_mac_req *req, struct hsm_mac_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_MAC_GENERATE, &w);
    put_mac(&w, req);
    if (req->mac_len != 0) {
        hsm_put_u8(&w, HSM_TAG_MAC_LEN, (uint8_t)req->mac_len);
    }
    FINISH(c, &w, resp, get(c, HSM_TAG_MAC, resp->mac, sizeof(resp->mac), &resp->mac_len));
}

int hsm_client_mac_verify(hsm_client *c, const struct hsm_mac_req *req)
{
    hsm_writer w;
    hsm_client_begin(c, HSM_CMD_MAC_VERIFY, &w);
    put_mac(&w, req);
    hsm_put_bytes(&w, HSM_TAG_MAC, req->mac, req->mac_len);
    return hsm_client_exchange(c, &w);
}

int hsm_client_pan_hash(hsm_client *c, const struct hsm_pan_hash_req *req,
                        struct hsm_pan_hash_resp *resp)
{
    hsm_writer w;
    size_t n = 0;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_PAN_HASH, &w);
    hsm_put_text(&w, HSM_TAG_PAN, req->pan);
    FINISH(c, &w, resp, get(c, HSM_TAG_HASH, resp->hash, sizeof(resp->hash), &n));
}

int hsm_client_arqc_verify(hsm_client *c, const struct hsm_arqc_req *req,
                           struct hsm_arqc_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_ARQC_VERIFY, &w);
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->imk);
    hsm_put_u8(&w, HSM_TAG_MK_OPTION, (uint8_t)req->mk_option);
    hsm_put_u8(&w, HSM_TAG_SK_METHOD, (uint8_t)req->sk_method);
    hsm_put_text(&w, HSM_TAG_PAN, req->pan);
    if (req->psn[0] != '\0') {
        hsm_put_text(&w, HSM_TAG_PSN, req->psn);
    }
    hsm_put_bytes(&w, HSM_TAG_ATC, req->atc, sizeof(req->atc));
    hsm_put_bytes(&w, HSM_TAG_DATA, req->ac_data, req->ac_data_len);
    hsm_put_bytes(&w, HSM_TAG_ARQC, req->arqc, sizeof(req->arqc));
    if (req->arpc_method != 0) {
        hsm_put_u8(&w, HSM_TAG_ARPC_METHOD, (uint8_t)req->arpc_method);
    }
    if (req->arpc_method == 1) {
        hsm_put_bytes(&w, HSM_TAG_ARC, req->arc, sizeof(req->arc));
    } else if (req->arpc_method == 2) {
        hsm_put_bytes(&w, HSM_TAG_CSU, req->csu, sizeof(req->csu));
        hsm_put_bytes(&w, HSM_TAG_PROP, req->prop, req->prop_len);
    }
    FINISH(c, &w, resp,
           hsm_msg_has(&c->resp, HSM_TAG_ARPC)
               ? get(c, HSM_TAG_ARPC, resp->arpc, sizeof(resp->arpc), &resp->arpc_len)
               : 0);
}

int hsm_client_cert_sign(hsm_client *c, const struct hsm_cert_sign_req *req,
                         struct hsm_cert_sign_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_CERT_SIGN, &w);
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->ca_key);
    hsm_put_bytes(&w, HSM_TAG_CA_CERT, req->ca_cert, req->ca_cert_len);
    hsm_put_bytes(&w, HSM_TAG_CSR, req->csr, req->csr_len);
    if (req->dns[0] != '\0') {
        hsm_put_text(&w, HSM_TAG_DNS_NAME, req->dns);
    } else {
        hsm_put_text(&w, HSM_TAG_SERIAL, req->serial);
    }
    hsm_put_u64(&w, HSM_TAG_NOT_BEFORE, (uint64_t)req->not_before);
    hsm_put_u64(&w, HSM_TAG_NOT_AFTER, (uint64_t)req->not_after);
    FINISH(c, &w, resp,
           get(c, HSM_TAG_CERT, resp->cert, sizeof(resp->cert), &resp->cert_len) |
               get(c, HSM_TAG_CERT_SERIAL, resp->cert_serial, sizeof(resp->cert_serial), NULL));
}

int hsm_client_ca_cert_create(hsm_client *c, const struct hsm_ca_cert_req *req,
                              struct hsm_cert_sign_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_CA_CERT_CREATE, &w);
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->ca_key);
    hsm_put_text(&w, HSM_TAG_COMMON_NAME, req->common_name);
    hsm_put_u64(&w, HSM_TAG_NOT_BEFORE, (uint64_t)req->not_before);
    hsm_put_u64(&w, HSM_TAG_NOT_AFTER, (uint64_t)req->not_after);
    FINISH(c, &w, resp,
           get(c, HSM_TAG_CERT, resp->cert, sizeof(resp->cert), &resp->cert_len) |
               get(c, HSM_TAG_CERT_SERIAL, resp->cert_serial, sizeof(resp->cert_serial), NULL));
}

static int read_provision(const hsm_client *c, struct hsm_provision_terminal_resp *r)
{
    uint8_t kind = 0;
    int rc = get(c, HSM_TAG_BUNDLE, r->bundle, sizeof(r->bundle), &r->bundle_len) |
             get(c, HSM_TAG_CERT_SHA256, r->cert_sha256, sizeof(r->cert_sha256), NULL) |
             get(c, HSM_TAG_CERT_SERIAL, r->cert_serial, sizeof(r->cert_serial), NULL) |
             hsm_msg_u8(&c->resp, HSM_TAG_KIND, &kind) |
             get(c, HSM_TAG_KCV, r->kcv, sizeof(r->kcv), &r->kcv_len);
    r->kind = (enum mpos_provision_kind)kind;
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_KEY_ID)) {
        rc = get(c, HSM_TAG_KEY_ID, r->id, sizeof(r->id), &r->id_len);
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_KEY_BLOCK)) {
        rc = get_kb(c, HSM_TAG_KEY_BLOCK, &r->tmk);
    }
    return rc != 0 ? MPOS_ERR_FORMAT : 0;
}

int hsm_client_provision_terminal(hsm_client *c, const struct hsm_provision_terminal_req *req,
                                  struct hsm_provision_terminal_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    if (req->key == HSM_PROVISION_DUKPT) {
        hsm_client_begin(c, HSM_CMD_PROVISION_TERMINAL, &w);
        put_kb(&w, HSM_TAG_BDK, &req->bdk);
        hsm_put_bytes(&w, HSM_TAG_KEY_ID, req->id, req->id_len);
    } else if (req->key == HSM_PROVISION_TMK) {
        hsm_client_begin(c, HSM_CMD_PROVISION_TERMINAL, &w);
        put_char(&w, HSM_TAG_ALGORITHM, req->tmk_algorithm != '\0' ? req->tmk_algorithm : 'T');
    } else {
        return MPOS_ERR_ARG;
    }
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->ca_key);
    hsm_put_bytes(&w, HSM_TAG_CA_CERT, req->ca_cert, req->ca_cert_len);
    hsm_put_bytes(&w, HSM_TAG_CSR, req->csr, req->csr_len);
    hsm_put_text(&w, HSM_TAG_SERIAL, req->serial);
    hsm_put_u64(&w, HSM_TAG_NOT_BEFORE, (uint64_t)req->not_before);
    hsm_put_u64(&w, HSM_TAG_NOT_AFTER, (uint64_t)req->not_after);
    if (req->trust_anchor_len != 0) {
        hsm_put_bytes(&w, HSM_TAG_TRUST_ANCHOR, req->trust_anchor, req->trust_anchor_len);
    }
    FINISH(c, &w, resp, read_provision(c, resp));
}

/* ---- sealed messages, params.sign, key.from-components ------------------------------------ */

/* A text field of exactly `want` characters into out (want + 1 bytes). */
static int get_text_opt(const hsm_client *c, unsigned tag, char *out, size_t cap)
{
    out[0] = '\0';
    return hsm_msg_has(&c->resp, tag) ? get_text(c, tag, out, cap) : 0;
}

static int read_sealed_open(const hsm_client *c, struct hsm_sealed_open_resp *r)
{
    struct hsm_sealed_fields *f = &r->fields;
    uint64_t seq = 0;
    uint8_t chip = 0, has_pin = 0;
    int rc = hsm_msg_u8(&c->resp, HSM_TAG_MSG_TYPE, &f->msg_type) |
             hsm_msg_u8(&c->resp, HSM_TAG_SCHEME, &f->scheme) |
             get(c, HSM_TAG_KSN, f->ksn, sizeof(f->ksn), &f->ksn_len) |
             hsm_msg_u64(&c->resp, HSM_TAG_SEQUENCE, &seq) |
             hsm_msg_u8(&c->resp, HSM_TAG_TXN_TYPE, &f->txn_type) |
             hsm_msg_u64(&c->resp, HSM_TAG_AMOUNT, &f->amount) |
             hsm_msg_u16(&c->resp, HSM_TAG_CURRENCY, &f->currency) |
             get_text(c, HSM_TAG_MERCHANT_ID, f->merchant_id, sizeof(f->merchant_id)) |
             get_text(c, HSM_TAG_TERMINAL_ID, f->terminal_id, sizeof(f->terminal_id)) |
             get_text(c, HSM_TAG_DATETIME, f->datetime, sizeof(f->datetime)) |
             hsm_msg_u8(&c->resp, HSM_TAG_ENTRY_MODE, &f->entry_mode) |
             hsm_msg_u8(&c->resp, HSM_TAG_FALLBACK, &f->fallback) |
             get_text_opt(c, HSM_TAG_MASKED_PAN, f->masked_pan, sizeof(f->masked_pan)) |
             get_text_opt(c, HSM_TAG_ORIGINAL_REF, f->original_ref, sizeof(f->original_ref)) |
             get_text_opt(c, HSM_TAG_PAN, r->pan, sizeof(r->pan)) |
             get_text_opt(c, HSM_TAG_PSN, r->psn, sizeof(r->psn)) |
             hsm_msg_u8(&c->resp, HSM_TAG_CHIP_CARD, &chip) |
             hsm_msg_u8(&c->resp, HSM_TAG_HAS_PIN, &has_pin);
    if (rc != 0 || seq > UINT32_MAX) {
        return MPOS_ERR_FORMAT;
    }
    f->sequence = (uint32_t)seq;
    /* The reason is there exactly in a reversal (docs/protocol.md 2.3 DF34): the back end
     * reads it to pick the reversal's DE 39, so an answer without it is malformed. */
    if (hsm_msg_has(&c->resp, HSM_TAG_REV_REASON) != (f->msg_type == 0x02) ||
        (f->msg_type == 0x02 &&
         (hsm_msg_u8(&c->resp, HSM_TAG_REV_REASON, &f->reversal_reason) != 0 ||
          f->reversal_reason < 1 || f->reversal_reason > 4))) {
        return MPOS_ERR_FORMAT;
    }
    /* The retry flag (DF35) only as 1, only in a request, never with a PIN block: the back end
     * must not start a new charge on a retry, so an answer that blurs it is malformed. */
    if (hsm_msg_has(&c->resp, HSM_TAG_RETRY) &&
        (hsm_msg_u8(&c->resp, HSM_TAG_RETRY, &f->retry) != 0 || f->retry != 1 ||
         f->msg_type != 0x01 || has_pin != 0)) {
        return MPOS_ERR_FORMAT;
    }
    r->chip_card = chip != 0;
    r->has_pin = has_pin != 0;
    if (hsm_msg_has(&c->resp, HSM_TAG_LOCATION)) {
        uint8_t loc[20];
        rc = get(c, HSM_TAG_LOCATION, loc, sizeof(loc), NULL);
        f->has_location = 1;
        f->lat_e7 = (int32_t)mpos_load_be32(loc);
        f->lon_e7 = (int32_t)mpos_load_be32(loc + 4);
        f->accuracy_m = mpos_load_be32(loc + 8);
        f->location_time = ((uint64_t)mpos_load_be32(loc + 12) << 32) | mpos_load_be32(loc + 16);
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_HASH)) {
        rc = get(c, HSM_TAG_HASH, r->pan_hash, sizeof(r->pan_hash), NULL);
        r->has_pan_hash = 1;
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_EMV)) {
        rc = get(c, HSM_TAG_EMV, r->emv, sizeof(r->emv), &r->emv_len);
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_PIN_BLOCK)) {
        rc = get(c, HSM_TAG_PIN_BLOCK, r->pin_block, sizeof(r->pin_block), &r->pin_block_len);
    }
    if (rc == 0 && hsm_msg_has(&c->resp, HSM_TAG_TRACK2_ENC)) {
        size_t iv_len = 0;
        rc = get(c, HSM_TAG_IV, r->track2_iv, sizeof(r->track2_iv), &iv_len) |
             get(c, HSM_TAG_TRACK2_ENC, r->track2_enc, sizeof(r->track2_enc), &r->track2_enc_len);
        if (rc == 0 && iv_len != sizeof(r->track2_iv)) {
            rc = MPOS_ERR_FORMAT;
        }
    }
    return rc != 0 ? MPOS_ERR_FORMAT : 0;
}

int hsm_client_sealed_open(hsm_client *c, const struct hsm_sealed_open_req *req,
                           struct hsm_sealed_open_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_SEALED_OPEN, &w);
    put_kb(&w, HSM_TAG_BDK, &req->bdk);
    hsm_put_bytes(&w, HSM_TAG_SEALED, req->sealed, req->sealed_len);
    if (req->zpk.len != 0) {
        put_kb(&w, HSM_TAG_DEST_KEY, &req->zpk);
    }
    if (req->zek.len != 0) {
        put_kb(&w, HSM_TAG_ZEK, &req->zek);
    }
    FINISH(c, &w, resp, read_sealed_open(c, resp));
}

int hsm_client_sealed_respond(hsm_client *c, const struct hsm_sealed_respond_req *req,
                              struct hsm_sealed_respond_resp *resp)
{
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_SEALED_RESPOND, &w);
    put_kb(&w, HSM_TAG_BDK, &req->bdk);
    hsm_put_u8(&w, HSM_TAG_SCHEME, req->scheme);
    hsm_put_bytes(&w, HSM_TAG_KSN, req->ksn, req->ksn_len);
    hsm_put_u64(&w, HSM_TAG_SEQUENCE, req->sequence);
    hsm_put_text(&w, HSM_TAG_RESPONSE_CODE, req->response_code);
    if (req->auth_code[0] != '\0') {
        hsm_put_text(&w, HSM_TAG_AUTH_CODE, req->auth_code);
    }
    if (req->rrn[0] != '\0') {
        hsm_put_text(&w, HSM_TAG_RRN, req->rrn);
    }
    if (req->arc[0] != '\0') {
        hsm_put_bytes(&w, HSM_TAG_ARC, req->arc, strlen(req->arc));
    }
    if (req->iad_len != 0) {
        hsm_put_bytes(&w, HSM_TAG_IAD, req->iad, req->iad_len);
    }
    FINISH(c, &w, resp,
           get(c, HSM_TAG_SEALED, resp->sealed, sizeof(resp->sealed), &resp->sealed_len));
}

static int read_params_sig(const hsm_client *c, const struct hsm_params_sign_req *req,
                           struct hsm_params_sign_resp *r, size_t *n)
{
    size_t pub_len = 0;
    int rc = get(c, HSM_TAG_PUBKEY, r->pub, sizeof(r->pub), &pub_len);
    if (rc != 0 || pub_len != sizeof(r->pub) ||
        hsm_msg_has(&c->resp, HSM_TAG_DATA) != (req->data_len != 0)) {
        return MPOS_ERR_FORMAT;
    }
    if (req->data_len != 0) {
        rc = get(c, HSM_TAG_DATA, r->sig, sizeof(r->sig), n);
        if (rc != 0 || *n != sizeof(r->sig)) {
            return MPOS_ERR_FORMAT;
        }
        r->has_sig = 1;
    }
    return 0;
}

int hsm_client_params_sign(hsm_client *c, const struct hsm_params_sign_req *req,
                           struct hsm_params_sign_resp *resp)
{
    hsm_writer w;
    size_t n = 0;
    memset(resp, 0, sizeof(*resp));
    hsm_client_begin(c, HSM_CMD_PARAMS_SIGN, &w);
    put_kb(&w, HSM_TAG_KEY_BLOCK, &req->key);
    if (req->data_len != 0) {
        hsm_put_bytes(&w, HSM_TAG_DATA, req->data, req->data_len);
    }
    FINISH(c, &w, resp, read_params_sig(c, req, resp, &n));
}

static int read_components(const hsm_client *c, size_t n, struct hsm_key_from_components_resp *r)
{
    uint8_t kcvs[HSM_MAX_COMPONENTS * HSM_KCV_LEN];
    size_t len = 0;
    int rc = get_kb(c, HSM_TAG_KEY_BLOCK, &r->key) |
             get(c, HSM_TAG_KCV, r->kcv, sizeof(r->kcv), &r->kcv_len) |
             get(c, HSM_TAG_COMPONENT_KCVS, kcvs, sizeof(kcvs), &len);
    if (rc != 0 || len != n * r->kcv_len) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(r->comp_kcv[i], kcvs + i * r->kcv_len, r->kcv_len);
    }
    return 0;
}

int hsm_client_key_from_components(hsm_client *c, const struct hsm_key_from_components_req *req,
                                   struct hsm_key_from_components_resp *resp)
{
    static const unsigned tags[HSM_MAX_COMPONENTS] = {HSM_TAG_COMPONENT1, HSM_TAG_COMPONENT2,
                                                      HSM_TAG_COMPONENT3};
    hsm_writer w;
    memset(resp, 0, sizeof(*resp));
    if (req->n < 2 || req->n > HSM_MAX_COMPONENTS || req->key_len > HSM_KEY_MAX_LEN) {
        return MPOS_ERR_ARG;
    }
    hsm_client_begin(c, HSM_CMD_KEY_FROM_COMPONENTS, &w);
    hsm_put_bytes(&w, HSM_TAG_KEY_USAGE, req->attr.usage,
                  (req->attr.usage[0] != 0 ? (req->attr.usage[1] != 0 ? 2u : 1u) : 0u));
    put_char(&w, HSM_TAG_ALGORITHM, req->attr.algorithm);
    put_char(&w, HSM_TAG_MODE, req->attr.mode);
    put_char(&w, HSM_TAG_EXPORTABILITY, req->attr.exportability);
    if (req->attr.dukpt != 0) {
        hsm_put_u8(&w, HSM_TAG_DUKPT, req->attr.dukpt);
    }
    for (size_t i = 0; i < req->n; i++) {
        hsm_put_bytes(&w, tags[i], req->comp[i], req->key_len);
    }
    /* hsm_client_exchange wipes the request (clear components) from the buffer once sent. */
    FINISH(c, &w, resp, read_components(c, req->n, resp));
}
