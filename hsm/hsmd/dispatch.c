/* mpos-hsmd dispatch: a decoded request -> the hsm_op_* request struct -> the op -> the
 * response frame. The decoder has already checked every field against the command's schema
 * (presence, length, type); the ops check the content. Request and response structs that may
 * hold secrets or card data are wiped on every path. */
#include "hsmd.h"

#include <string.h>

#include "mpos/util.h"
#include "ops.h"

/* A key block field as the ops take it (points into the request frame). */
static struct hsm_kb_in kb(const hsm_msg *m, unsigned tag)
{
    struct hsm_kb_in k = {NULL, 0};
    if (hsm_msg_has(m, tag)) {
        k.text = (const char *)m->field[tag].value;
        k.len = m->field[tag].len;
    }
    return k;
}

/* Copies an optional u8 field (default def). */
static uint8_t opt_u8(const hsm_msg *m, unsigned tag, uint8_t def)
{
    uint8_t v = def;
    if (hsm_msg_has(m, tag) && hsm_msg_u8(m, tag, &v) != 0) {
        v = def;
    }
    return v;
}

/* A required u8 (present: the decoder checked). */
static uint8_t u8(const hsm_msg *m, unsigned tag)
{
    return opt_u8(m, tag, 0);
}

static char ch(const hsm_msg *m, unsigned tag)
{
    return hsm_msg_has(m, tag) && m->field[tag].len > 0 ? (char)m->field[tag].value[0] : '\0';
}

/* Copies a bytes field into a fixed array; MPOS_ERR_LENGTH if it does not fit. */
static int copy_field(const hsm_msg *m, unsigned tag, uint8_t *out, size_t cap, size_t *len)
{
    *len = 0;
    if (!hsm_msg_has(m, tag)) {
        return 0;
    }
    if (m->field[tag].len > cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(out, m->field[tag].value, m->field[tag].len);
    *len = m->field[tag].len;
    return 0;
}

static int copy_exact(const hsm_msg *m, unsigned tag, uint8_t *out, size_t want)
{
    size_t len = 0;
    int rc = copy_field(m, tag, out, want, &len);
    return rc != 0 ? rc : len == want ? 0 : MPOS_ERR_LENGTH;
}

static int text_field(const hsm_msg *m, unsigned tag, char *out, size_t cap)
{
    int rc = hsm_msg_text(m, tag, out, cap);
    return rc == MPOS_ERR_ARG ? 0 : rc; /* absent optional: empty */
}

static int dukpt_ref(const hsm_msg *m, struct hsm_dukpt_ref *r)
{
    r->bdk = kb(m, HSM_TAG_BDK);
    r->aes_key_len = opt_u8(m, HSM_TAG_AES_KEY_LEN, 0);
    return copy_field(m, HSM_TAG_KSN, r->ksn, sizeof(r->ksn), &r->ksn_len);
}

static void put_kb(hsm_writer *w, unsigned tag, const struct hsm_kb_out *k)
{
    hsm_put_bytes(w, tag, k->text, k->len);
}

/* Audit: the check values of the key blocks a command used (after it verified them). */
static void audit_blocks(struct hsmd_call *c, const hsm_msg *m, const unsigned *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hsm_msg_has(m, tags[i])) {
            hsmd_audit_kcv_block(c, m->field[tags[i]].value, m->field[tags[i]].len);
        }
    }
}
#define AUDIT_BLOCKS(c, m, ...)                                                                    \
    do {                                                                                           \
        static const unsigned tags_[] = {__VA_ARGS__};                                             \
        audit_blocks(c, m, tags_, sizeof(tags_) / sizeof(tags_[0]));                               \
    } while (0)

/* ---- commands ---------------------------------------------------------------------------- */

static int do_status(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsmd_server *s = c->w->srv;
    struct hsm_status_req req = {atomic_load(&s->commands), atomic_load(&s->refused),
                                 atomic_load(&s->sessions), (uint64_t)(time(NULL) - s->started)};
    struct hsm_status_resp resp;
    (void)m;
    int rc = hsm_op_status(&c->w->vault, &req, &resp);
    if (rc == 0) {
        hsm_put_text(w, HSM_TAG_VERSION, resp.version);
        hsm_put_text(w, HSM_TAG_ROLE, hsmd_role_name(c->role));
        hsm_put_bytes(w, HSM_TAG_LMK_KCV, resp.lmk_kcv, HSM_KCV_LEN);
        hsm_put_u64(w, HSM_TAG_UPTIME, resp.uptime_s);
        hsm_put_u8(w, HSM_TAG_WORKERS, (uint8_t)s->n_workers);
        hsm_put_u64(w, HSM_TAG_COMMANDS, resp.commands);
        hsm_put_u64(w, HSM_TAG_REFUSED, resp.refused);
        hsm_put_u64(w, HSM_TAG_SESSIONS, resp.sessions);
        hsmd_audit_kcv_bytes(c, resp.lmk_kcv, HSM_KCV_LEN);
    }
    return rc;
}

static int do_random(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    uint16_t n = 0;
    struct hsm_random_resp resp;
    int rc = hsm_msg_u16(m, HSM_TAG_COUNT, &n);
    if (rc == 0) {
        struct hsm_random_req req = {n};
        rc = hsm_op_random(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_DATA, resp.bytes, resp.len);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static void put_generated(struct hsmd_call *c, hsm_writer *w, const struct hsm_generate_key_resp *r)
{
    put_kb(w, HSM_TAG_KEY_BLOCK, &r->key);
    if (r->kcv_len > 0) {
        hsm_put_bytes(w, HSM_TAG_KCV, r->kcv, r->kcv_len);
        hsmd_audit_kcv_bytes(c, r->kcv, r->kcv_len);
    }
    if (r->ec_pub_len > 0) {
        hsm_put_bytes(w, HSM_TAG_PUBKEY, r->ec_pub, r->ec_pub_len);
    }
}

static int do_key_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_generate_key_req req;
    struct hsm_generate_key_resp resp;
    memset(&req, 0, sizeof(req));
    int rc = text_field(m, HSM_TAG_KEY_USAGE, req.attr.usage, sizeof(req.attr.usage));
    req.attr.algorithm = ch(m, HSM_TAG_ALGORITHM);
    req.attr.mode = ch(m, HSM_TAG_MODE);
    req.attr.exportability = ch(m, HSM_TAG_EXPORTABILITY);
    req.attr.dukpt = opt_u8(m, HSM_TAG_DUKPT, 0);
    req.key_len = opt_u8(m, HSM_TAG_KEY_LEN, 0);
    if (rc == 0) {
        rc = hsm_op_generate_key(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        put_generated(c, w, &resp);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_bdk_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_generate_bdk_req req = {ch(m, HSM_TAG_ALGORITHM), u8(m, HSM_TAG_KEY_LEN),
                                       ch(m, HSM_TAG_EXPORTABILITY)};
    struct hsm_generate_key_resp resp;
    int rc = hsm_op_generate_bdk(&c->w->vault, &req, &resp);
    if (rc == 0) {
        put_generated(c, w, &resp);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_key_import(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_import_key_req req;
    struct hsm_import_key_resp resp;
    memset(&req, 0, sizeof(req));
    req.kek = kb(m, HSM_TAG_KEK);
    req.block = kb(m, HSM_TAG_TR31);
    req.dukpt = opt_u8(m, HSM_TAG_DUKPT, 0);
    int rc = copy_field(m, HSM_TAG_KCV, req.expected_kcv, sizeof(req.expected_kcv),
                        &req.expected_kcv_len);
    if (rc == 0) {
        rc = hsm_op_import_key(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        AUDIT_BLOCKS(c, m, HSM_TAG_KEK);
        put_kb(w, HSM_TAG_KEY_BLOCK, &resp.key);
        hsm_put_bytes(w, HSM_TAG_KEY_USAGE, resp.attr.usage, 2);
        hsm_put_bytes(w, HSM_TAG_ALGORITHM, &resp.attr.algorithm, 1);
        hsm_put_bytes(w, HSM_TAG_MODE, &resp.attr.mode, 1);
        hsm_put_bytes(w, HSM_TAG_EXPORTABILITY, &resp.attr.exportability, 1);
        hsm_put_u8(w, HSM_TAG_DUKPT, resp.attr.dukpt);
        hsm_put_bytes(w, HSM_TAG_KCV, resp.kcv, resp.kcv_len);
        hsmd_audit_kcv_bytes(c, resp.kcv, resp.kcv_len);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_key_export(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_export_key_req req = {kb(m, HSM_TAG_KEK), kb(m, HSM_TAG_KEY_BLOCK),
                                     ch(m, HSM_TAG_EXPORTABILITY)};
    struct hsm_export_key_resp resp;
    int rc = hsm_op_export_key(&c->w->vault, &req, &resp);
    if (rc == 0) {
        AUDIT_BLOCKS(c, m, HSM_TAG_KEK);
        put_kb(w, HSM_TAG_TR31, &resp.block);
        hsm_put_bytes(w, HSM_TAG_KCV, resp.kcv, resp.kcv_len);
        hsmd_audit_kcv_bytes(c, resp.kcv, resp.kcv_len);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_dukpt_initial_key(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_dukpt_initial_key_req req;
    struct hsm_dukpt_initial_key_resp resp;
    memset(&req, 0, sizeof(req));
    req.bdk = kb(m, HSM_TAG_BDK);
    req.transport_key = kb(m, HSM_TAG_KEK);
    int rc = copy_field(m, HSM_TAG_KEY_ID, req.id, sizeof(req.id), &req.id_len);
    if (rc == 0) {
        rc = hsm_op_dukpt_initial_key(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        AUDIT_BLOCKS(c, m, HSM_TAG_BDK, HSM_TAG_KEK);
        put_kb(w, HSM_TAG_TR31, &resp.block);
        hsm_put_bytes(w, HSM_TAG_KCV, resp.kcv, resp.kcv_len);
        hsmd_audit_kcv_bytes(c, resp.kcv, resp.kcv_len);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static void put_mkwk(hsm_writer *w, unsigned tag_enc, const struct hsm_mkwk_key *k)
{
    hsm_put_bytes(w, tag_enc, k->enc, k->enc_len);
    hsm_put_bytes(w, tag_enc + 1, k->kcv, HSM_MKWK_KCV_LEN);
    put_kb(w, tag_enc + 2, &k->key);
}

static int do_mkwk_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_mkwk_req req = {kb(m, HSM_TAG_KEK), opt_u8(m, HSM_TAG_SINGLE_DES, 0) != 0};
    struct hsm_mkwk_resp resp;
    int rc = hsm_op_mkwk_generate(&c->w->vault, &req, &resp);
    if (rc == 0) {
        AUDIT_BLOCKS(c, m, HSM_TAG_KEK);
        put_mkwk(w, HSM_TAG_PIK_ENC, &resp.pik);
        put_mkwk(w, HSM_TAG_MAK_ENC, &resp.mak);
        put_mkwk(w, HSM_TAG_TDK_ENC, &resp.tdk);
        hsmd_audit_kcv_bytes(c, resp.pik.kcv, HSM_MKWK_KCV_LEN);
        hsmd_audit_kcv_bytes(c, resp.mak.kcv, HSM_MKWK_KCV_LEN);
        hsmd_audit_kcv_bytes(c, resp.tdk.kcv, HSM_MKWK_KCV_LEN);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_pin_translate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w, int dukpt)
{
    struct hsm_pin_translate_req req;
    struct hsm_pin_block_resp resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    int rc;
    if (dukpt) {
        req.source = HSM_PIN_FROM_DUKPT;
        rc = dukpt_ref(m, &req.dukpt);
    } else {
        req.source = HSM_PIN_FROM_KEY;
        req.src_key = kb(m, HSM_TAG_SRC_KEY);
        req.src_format = (enum mpos_pin_format)u8(m, HSM_TAG_PIN_FORMAT);
        rc = 0;
    }
    req.zpk = kb(m, HSM_TAG_DEST_KEY);
    req.dst_format = (enum mpos_pin_format)u8(m, HSM_TAG_DEST_FORMAT);
    if (rc == 0) {
        rc = copy_field(m, HSM_TAG_PIN_BLOCK, req.pin_block, sizeof(req.pin_block),
                        &req.pin_block_len);
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_PAN, req.pan, sizeof(req.pan));
    }
    if (rc == 0) {
        rc = hsm_op_pin_translate(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_PIN_BLOCK, resp.pin_block, resp.pin_block_len);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK, HSM_TAG_SRC_KEY, HSM_TAG_DEST_KEY);
    MPOS_WIPE_CTX(&req);
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_pin_translate_dukpt(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    return do_pin_translate(c, m, w, 1);
}

static int do_pin_translate_key(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    return do_pin_translate(c, m, w, 0);
}

static int pvv_req(const hsm_msg *m, struct hsm_pvv_req *req)
{
    memset(req, 0, sizeof(*req));
    req->zpk = kb(m, HSM_TAG_SRC_KEY);
    req->format = (enum mpos_pin_format)u8(m, HSM_TAG_PIN_FORMAT);
    req->pvk = kb(m, HSM_TAG_PVK);
    req->pvki = u8(m, HSM_TAG_PVKI);
    int rc = copy_field(m, HSM_TAG_PIN_BLOCK, req->pin_block, sizeof(req->pin_block),
                        &req->pin_block_len);
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_PAN, req->pan, sizeof(req->pan));
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_PVV, req->pvv, sizeof(req->pvv));
    }
    return rc;
}

static int do_pin_verify_pvv(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_pvv_req req;
    int rc = pvv_req(m, &req);
    (void)w;
    if (rc == 0) {
        rc = hsm_op_pin_verify(&c->w->vault, &req);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_SRC_KEY, HSM_TAG_PVK);
    MPOS_WIPE_CTX(&req);
    return rc;
}

static int do_pvv_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_pvv_req req;
    struct hsm_pvv_resp resp;
    memset(&resp, 0, sizeof(resp));
    int rc = pvv_req(m, &req);
    if (rc == 0) {
        rc = hsm_op_pvv_generate(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_text(w, HSM_TAG_PVV, resp.pvv);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_SRC_KEY, HSM_TAG_PVK);
    MPOS_WIPE_CTX(&req);
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int do_dukpt_mac_verify(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_dukpt_mac_verify_req req;
    memset(&req, 0, sizeof(req));
    (void)w;
    int rc = dukpt_ref(m, &req.dukpt);
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req.data, &req.data_len);
    }
    if (rc == 0) {
        rc = copy_field(m, HSM_TAG_MAC, req.mac, sizeof(req.mac), &req.mac_len);
    }
    if (rc == 0) {
        rc = hsm_op_dukpt_mac_verify(&c->w->vault, &req);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK);
    return rc;
}

static int do_dukpt_mac_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_dukpt_mac_generate_req req;
    struct hsm_mac_resp resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    int rc = dukpt_ref(m, &req.dukpt);
    req.mac_len = opt_u8(m, HSM_TAG_MAC_LEN, 0);
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req.data, &req.data_len);
    }
    if (rc == 0) {
        rc = hsm_op_dukpt_mac_generate(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_MAC, resp.mac, resp.mac_len);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK);
    return rc;
}

static int mac_req(const hsm_msg *m, struct hsm_mac_req *req)
{
    memset(req, 0, sizeof(*req));
    req->alg = (enum hsm_mac_alg)u8(m, HSM_TAG_MAC_ALG);
    req->key = kb(m, HSM_TAG_KEY_BLOCK);
    req->mac_len = opt_u8(m, HSM_TAG_MAC_LEN, 0);
    int rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req->data, &req->data_len);
    if (rc == 0 && hsm_msg_has(m, HSM_TAG_MAC)) {
        rc = copy_field(m, HSM_TAG_MAC, req->mac, sizeof(req->mac), &req->mac_len);
    }
    return rc;
}

static int do_mac_generate(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_mac_req req;
    struct hsm_mac_resp resp;
    memset(&resp, 0, sizeof(resp));
    int rc = mac_req(m, &req);
    if (rc == 0) {
        rc = hsm_op_mac_generate(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_MAC, resp.mac, resp.mac_len);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_KEY_BLOCK);
    return rc;
}

static int do_mac_verify(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_mac_req req;
    int rc = mac_req(m, &req);
    (void)w;
    if (rc == 0) {
        rc = hsm_op_mac_verify(&c->w->vault, &req);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_KEY_BLOCK);
    return rc;
}

static int do_card_data(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_card_data_req req;
    struct hsm_card_data_resp *resp = &c->w->card_resp; /* 3 KiB: per worker, not the stack */
    memset(&req, 0, sizeof(req));
    int rc = dukpt_ref(m, &req.dukpt);
    req.zdk = kb(m, HSM_TAG_DEST_KEY);
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req.data, &req.data_len);
    }
    if (rc == 0) {
        rc = hsm_op_card_data_translate(&c->w->vault, &req, resp);
    }
    if (rc == 0) {
        hsm_put_text(w, HSM_TAG_PAN, resp->pan);
        hsm_put_bytes(w, HSM_TAG_IV, resp->iv, resp->iv_len);
        hsm_put_bytes(w, HSM_TAG_DATA, resp->data, resp->data_len);
        if (resp->emv_len > 0) {
            hsm_put_bytes(w, HSM_TAG_EMV, resp->emv, resp->emv_len);
        }
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK, HSM_TAG_DEST_KEY);
    MPOS_WIPE_CTX(resp);
    return rc;
}

static int do_pan_hash(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_pan_hash_req req;
    struct hsm_pan_hash_resp resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    int rc = text_field(m, HSM_TAG_PAN, req.pan, sizeof(req.pan));
    if (rc == 0) {
        rc = hsm_op_pan_hash(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_HASH, resp.hash, sizeof(resp.hash));
    }
    MPOS_WIPE_CTX(&req);
    return rc;
}

static int do_arqc_verify(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_arqc_req req;
    struct hsm_arqc_resp resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.imk = kb(m, HSM_TAG_KEY_BLOCK);
    req.mk_option = (enum mpos_emv_mk_option)u8(m, HSM_TAG_MK_OPTION);
    req.sk_method = (enum mpos_emv_sk_method)u8(m, HSM_TAG_SK_METHOD);
    req.arpc_method = opt_u8(m, HSM_TAG_ARPC_METHOD, 0);
    int rc = text_field(m, HSM_TAG_PAN, req.pan, sizeof(req.pan));
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_PSN, req.psn, sizeof(req.psn));
    }
    if (rc == 0) {
        rc = copy_exact(m, HSM_TAG_ATC, req.atc, sizeof(req.atc));
    }
    if (rc == 0) {
        rc = copy_exact(m, HSM_TAG_ARQC, req.arqc, sizeof(req.arqc));
    }
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req.ac_data, &req.ac_data_len);
    }
    if (rc == 0 && req.arpc_method == 1) {
        rc = copy_exact(m, HSM_TAG_ARC, req.arc, sizeof(req.arc));
    }
    if (rc == 0 && req.arpc_method == 2) {
        rc = copy_exact(m, HSM_TAG_CSU, req.csu, sizeof(req.csu));
        if (rc == 0) {
            rc = copy_field(m, HSM_TAG_PROP, req.prop, sizeof(req.prop), &req.prop_len);
        }
    }
    if (rc == 0) {
        rc = hsm_op_arqc_verify(&c->w->vault, &req, &resp);
    }
    if (rc == 0 && resp.arpc_len > 0) {
        hsm_put_bytes(w, HSM_TAG_ARPC, resp.arpc, resp.arpc_len);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_KEY_BLOCK);
    MPOS_WIPE_CTX(&req);
    return rc;
}

static int do_cert_sign(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_cert_sign_req req;
    struct hsm_cert_sign_resp resp;
    uint64_t nb = 0, na = 0;
    memset(&req, 0, sizeof(req));
    req.ca_key = kb(m, HSM_TAG_KEY_BLOCK);
    /* A device certificate (serial) or a TLS server certificate (dns-name), never both. */
    if (hsm_msg_has(m, HSM_TAG_SERIAL) == hsm_msg_has(m, HSM_TAG_DNS_NAME)) {
        return MPOS_ERR_ARG;
    }
    int rc = hsm_msg_bytes(m, HSM_TAG_CA_CERT, &req.ca_cert, &req.ca_cert_len);
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_CSR, &req.csr, &req.csr_len);
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_SERIAL, req.serial, sizeof(req.serial));
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_DNS_NAME, req.dns, sizeof(req.dns));
    }
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_BEFORE, &nb);
    }
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_AFTER, &na);
    }
    req.not_before = (int64_t)nb;
    req.not_after = (int64_t)na;
    if (rc == 0) {
        rc = hsm_op_cert_sign(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_CERT, resp.cert, resp.cert_len);
        hsm_put_bytes(w, HSM_TAG_CERT_SERIAL, resp.cert_serial, sizeof(resp.cert_serial));
    }
    return rc;
}

static int do_ca_cert_create(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_ca_cert_req req;
    struct hsm_cert_sign_resp resp;
    uint64_t nb = 0, na = 0;
    memset(&req, 0, sizeof(req));
    req.ca_key = kb(m, HSM_TAG_KEY_BLOCK);
    int rc = text_field(m, HSM_TAG_COMMON_NAME, req.common_name, sizeof(req.common_name));
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_BEFORE, &nb);
    }
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_AFTER, &na);
    }
    req.not_before = (int64_t)nb;
    req.not_after = (int64_t)na;
    if (rc == 0) {
        rc = hsm_op_ca_cert_create(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_CERT, resp.cert, resp.cert_len);
        hsm_put_bytes(w, HSM_TAG_CERT_SERIAL, resp.cert_serial, sizeof(resp.cert_serial));
    }
    return rc;
}

/* provision.terminal: one terminal's certificate and initial key in one bundle (T-UNIQ-1).
 * The request names a DUKPT terminal (bdk, key-id) or a TMK terminal (algorithm), never
 * both. Audit: the check values of the BDK and CA key blocks and of the key in the bundle. */
static int do_provision_terminal(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_provision_terminal_req req;
    struct hsm_provision_terminal_resp *resp = &c->w->provision_resp; /* 9 KiB: per worker */
    uint64_t nb = 0, na = 0;
    int dukpt = hsm_msg_has(m, HSM_TAG_BDK);
    int rc = 0;
    memset(&req, 0, sizeof(req));
    if (dukpt == hsm_msg_has(m, HSM_TAG_ALGORITHM) || dukpt != hsm_msg_has(m, HSM_TAG_KEY_ID)) {
        return MPOS_ERR_ARG;
    }
    if (dukpt) {
        req.key = HSM_PROVISION_DUKPT;
        req.bdk = kb(m, HSM_TAG_BDK);
        rc = copy_field(m, HSM_TAG_KEY_ID, req.id, sizeof(req.id), &req.id_len);
    } else {
        req.key = HSM_PROVISION_TMK;
        req.tmk_algorithm = ch(m, HSM_TAG_ALGORITHM);
    }
    req.ca_key = kb(m, HSM_TAG_KEY_BLOCK);
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_CA_CERT, &req.ca_cert, &req.ca_cert_len);
    }
    if (rc == 0) {
        rc = hsm_msg_bytes(m, HSM_TAG_CSR, &req.csr, &req.csr_len);
    }
    if (rc == 0 && hsm_msg_has(m, HSM_TAG_TRUST_ANCHOR)) {
        rc = hsm_msg_bytes(m, HSM_TAG_TRUST_ANCHOR, &req.trust_anchor, &req.trust_anchor_len);
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_SERIAL, req.serial, sizeof(req.serial));
    }
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_BEFORE, &nb);
    }
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_NOT_AFTER, &na);
    }
    req.not_before = (int64_t)nb;
    req.not_after = (int64_t)na;
    if (rc == 0) {
        rc = hsm_op_provision_terminal(&c->w->vault, &req, resp);
    }
    if (rc == 0) {
        AUDIT_BLOCKS(c, m, HSM_TAG_BDK, HSM_TAG_KEY_BLOCK);
        hsm_put_bytes(w, HSM_TAG_BUNDLE, resp->bundle, resp->bundle_len);
        hsm_put_bytes(w, HSM_TAG_CERT_SHA256, resp->cert_sha256, sizeof(resp->cert_sha256));
        hsm_put_bytes(w, HSM_TAG_CERT_SERIAL, resp->cert_serial, sizeof(resp->cert_serial));
        hsm_put_u8(w, HSM_TAG_KIND, (uint8_t)resp->kind);
        if (resp->id_len > 0) {
            hsm_put_bytes(w, HSM_TAG_KEY_ID, resp->id, resp->id_len);
        }
        hsm_put_bytes(w, HSM_TAG_KCV, resp->kcv, resp->kcv_len);
        if (resp->tmk.len > 0) {
            put_kb(w, HSM_TAG_KEY_BLOCK, &resp->tmk);
        }
        hsmd_audit_kcv_bytes(c, resp->kcv, resp->kcv_len);
    }
    MPOS_WIPE_CTX(resp);
    return rc;
}

/* key.from-components: the clear components are in the request frame only (the session wipes
 * it); the audit line gets the check values of each component and of the key formed. */
static int do_key_from_components(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    static const unsigned tags[HSM_MAX_COMPONENTS] = {HSM_TAG_COMPONENT1, HSM_TAG_COMPONENT2,
                                                      HSM_TAG_COMPONENT3};
    struct hsm_key_from_components_req req;
    struct hsm_key_from_components_resp resp;
    size_t len = 0;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    int rc = text_field(m, HSM_TAG_KEY_USAGE, req.attr.usage, sizeof(req.attr.usage));
    req.attr.algorithm = ch(m, HSM_TAG_ALGORITHM);
    req.attr.mode = ch(m, HSM_TAG_MODE);
    req.attr.exportability = ch(m, HSM_TAG_EXPORTABILITY);
    req.attr.dukpt = opt_u8(m, HSM_TAG_DUKPT, 0);
    for (size_t i = 0; rc == 0 && i < HSM_MAX_COMPONENTS && hsm_msg_has(m, tags[i]); i++) {
        rc = copy_field(m, tags[i], req.comp[i], sizeof(req.comp[i]), &len);
        /* Every component has the key's length. */
        if (rc == 0 && i > 0 && len != req.key_len) {
            rc = MPOS_ERR_LENGTH;
        }
        req.key_len = len;
        req.n = i + 1;
    }
    if (rc == 0) {
        rc = hsm_op_key_from_components(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        uint8_t kcvs[HSM_MAX_COMPONENTS * HSM_KCV_LEN];
        for (size_t i = 0; i < req.n; i++) {
            memcpy(kcvs + i * resp.kcv_len, resp.comp_kcv[i], resp.kcv_len);
            hsmd_audit_kcv_bytes(c, resp.comp_kcv[i], resp.kcv_len);
        }
        put_kb(w, HSM_TAG_KEY_BLOCK, &resp.key);
        hsm_put_bytes(w, HSM_TAG_KCV, resp.kcv, resp.kcv_len);
        hsm_put_bytes(w, HSM_TAG_COMPONENT_KCVS, kcvs, req.n * resp.kcv_len);
        hsmd_audit_kcv_bytes(c, resp.kcv, resp.kcv_len);
    }
    MPOS_WIPE_CTX(&req);
    MPOS_WIPE_CTX(&resp);
    return rc;
}

/* The audit note of an opened request: "pan=" and the PAN masked here from the PAN itself
 * (first 6, '*' between, last 4: what PCI DSS 3.4 allows to show), not the request's
 * masked-PAN field, so that the line can never hold more digits whatever the request says. */
static void audit_masked_pan(struct hsmd_call *c, const char *pan)
{
    size_t n = strlen(pan);
    if (n < 12 || n > 19 || strspn(pan, "0123456789") != n) {
        return;
    }
    char *o = c->note;
    memcpy(o, "pan=", 4);
    o += 4;
    for (size_t i = 0; i < n; i++) {
        *o++ = i < 6 || i >= n - 4 ? pan[i] : '*';
    }
    *o = '\0';
}

/* sealed.open: the terminal's sealed request, opened with keys derived from the BDK. The
 * response carries the clear fields, the PAN, its hash, the PSN and allow-listed EMV data, and
 * the PIN block / track 2 under the zone keys. Audit: check values of the key blocks and,
 * once the MAC verified, the masked PAN (which transaction's card it was, without the PAN). */
static int do_sealed_open(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_sealed_open_req req;
    struct hsm_sealed_open_resp *resp = &c->w->sealed_resp; /* 1 KiB: per worker */
    memset(&req, 0, sizeof(req));
    req.bdk = kb(m, HSM_TAG_BDK);
    req.zpk = kb(m, HSM_TAG_DEST_KEY);
    req.zek = kb(m, HSM_TAG_ZEK);
    int rc = hsm_msg_bytes(m, HSM_TAG_SEALED, &req.sealed, &req.sealed_len);
    if (rc == 0) {
        rc = hsm_op_sealed_open(&c->w->vault, &req, resp);
    }
    if (rc == 0) {
        const struct hsm_sealed_fields *f = &resp->fields;
        hsm_put_u8(w, HSM_TAG_MSG_TYPE, f->msg_type);
        hsm_put_u8(w, HSM_TAG_SCHEME, f->scheme);
        hsm_put_bytes(w, HSM_TAG_KSN, f->ksn, f->ksn_len);
        hsm_put_u64(w, HSM_TAG_SEQUENCE, f->sequence);
        hsm_put_u8(w, HSM_TAG_TXN_TYPE, f->txn_type);
        hsm_put_u64(w, HSM_TAG_AMOUNT, f->amount);
        hsm_put_u16(w, HSM_TAG_CURRENCY, f->currency);
        hsm_put_text(w, HSM_TAG_MERCHANT_ID, f->merchant_id);
        hsm_put_text(w, HSM_TAG_TERMINAL_ID, f->terminal_id);
        hsm_put_text(w, HSM_TAG_DATETIME, f->datetime);
        hsm_put_u8(w, HSM_TAG_ENTRY_MODE, f->entry_mode);
        hsm_put_u8(w, HSM_TAG_FALLBACK, f->fallback);
        if (f->reversal_reason != 0) {
            hsm_put_u8(w, HSM_TAG_REV_REASON, f->reversal_reason);
        }
        if (f->retry != 0) {
            hsm_put_u8(w, HSM_TAG_RETRY, f->retry);
        }
        if (f->masked_pan[0] != '\0') {
            hsm_put_text(w, HSM_TAG_MASKED_PAN, f->masked_pan);
        }
        if (f->original_ref[0] != '\0') {
            hsm_put_text(w, HSM_TAG_ORIGINAL_REF, f->original_ref);
        }
        if (f->has_location) {
            uint8_t loc[20];
            mpos_store_be32(loc, (uint32_t)f->lat_e7);
            mpos_store_be32(loc + 4, (uint32_t)f->lon_e7);
            mpos_store_be32(loc + 8, f->accuracy_m);
            mpos_store_be32(loc + 12, (uint32_t)(f->location_time >> 32));
            mpos_store_be32(loc + 16, (uint32_t)f->location_time);
            hsm_put_bytes(w, HSM_TAG_LOCATION, loc, sizeof(loc));
        }
        if (resp->pan[0] != '\0') {
            hsm_put_text(w, HSM_TAG_PAN, resp->pan);
            audit_masked_pan(c, resp->pan);
        }
        if (resp->has_pan_hash) {
            hsm_put_bytes(w, HSM_TAG_HASH, resp->pan_hash, sizeof(resp->pan_hash));
        }
        if (resp->psn[0] != '\0') {
            hsm_put_text(w, HSM_TAG_PSN, resp->psn);
        }
        if (resp->emv_len > 0) {
            hsm_put_bytes(w, HSM_TAG_EMV, resp->emv, resp->emv_len);
        }
        hsm_put_u8(w, HSM_TAG_CHIP_CARD, (uint8_t)(resp->chip_card != 0));
        hsm_put_u8(w, HSM_TAG_HAS_PIN, (uint8_t)(resp->has_pin != 0));
        if (resp->pin_block_len > 0) {
            hsm_put_bytes(w, HSM_TAG_PIN_BLOCK, resp->pin_block, resp->pin_block_len);
        }
        if (resp->track2_enc_len > 0) {
            hsm_put_bytes(w, HSM_TAG_IV, resp->track2_iv, sizeof(resp->track2_iv));
            hsm_put_bytes(w, HSM_TAG_TRACK2_ENC, resp->track2_enc, resp->track2_enc_len);
        }
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK, HSM_TAG_DEST_KEY, HSM_TAG_ZEK);
    MPOS_WIPE_CTX(resp);
    return rc;
}

static int do_sealed_respond(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_sealed_respond_req req;
    struct hsm_sealed_respond_resp resp;
    uint64_t seq = 0;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.bdk = kb(m, HSM_TAG_BDK);
    req.scheme = u8(m, HSM_TAG_SCHEME);
    int rc = copy_field(m, HSM_TAG_KSN, req.ksn, sizeof(req.ksn), &req.ksn_len);
    if (rc == 0) {
        rc = hsm_msg_u64(m, HSM_TAG_SEQUENCE, &seq);
    }
    if (rc == 0 && seq > UINT32_MAX) {
        rc = MPOS_ERR_FORMAT;
    }
    req.sequence = (uint32_t)seq;
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_RESPONSE_CODE, req.response_code, sizeof(req.response_code));
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_AUTH_CODE, req.auth_code, sizeof(req.auth_code));
    }
    if (rc == 0) {
        rc = text_field(m, HSM_TAG_RRN, req.rrn, sizeof(req.rrn));
    }
    if (rc == 0 && hsm_msg_has(m, HSM_TAG_ARC)) {
        rc = copy_exact(m, HSM_TAG_ARC, (uint8_t *)req.arc, 2);
    }
    if (rc == 0) {
        rc = copy_field(m, HSM_TAG_IAD, req.iad, sizeof(req.iad), &req.iad_len);
    }
    if (rc == 0) {
        rc = hsm_op_sealed_respond(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        hsm_put_bytes(w, HSM_TAG_SEALED, resp.sealed, resp.sealed_len);
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_BDK);
    return rc;
}

static int do_params_sign(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w)
{
    struct hsm_params_sign_req req;
    struct hsm_params_sign_resp resp;
    memset(&req, 0, sizeof(req));
    req.key = kb(m, HSM_TAG_KEY_BLOCK);
    int rc = 0;
    if (hsm_msg_has(m, HSM_TAG_DATA)) {
        rc = hsm_msg_bytes(m, HSM_TAG_DATA, &req.data, &req.data_len);
    }
    if (rc == 0) {
        rc = hsm_op_params_sign(&c->w->vault, &req, &resp);
    }
    if (rc == 0) {
        if (resp.has_sig) {
            hsm_put_bytes(w, HSM_TAG_DATA, resp.sig, sizeof(resp.sig));
        }
        hsm_put_bytes(w, HSM_TAG_PUBKEY, resp.pub, sizeof(resp.pub));
    }
    AUDIT_BLOCKS(c, m, HSM_TAG_KEY_BLOCK);
    return rc;
}

typedef int (*handler_fn)(struct hsmd_call *c, const hsm_msg *m, hsm_writer *w);

static const struct {
    uint16_t code;
    handler_fn fn;
} handlers[] = {
    {HSM_CMD_STATUS, do_status},
    {HSM_CMD_RANDOM, do_random},
    {HSM_CMD_KEY_GENERATE, do_key_generate},
    {HSM_CMD_BDK_GENERATE, do_bdk_generate},
    {HSM_CMD_KEY_IMPORT, do_key_import},
    {HSM_CMD_KEY_EXPORT, do_key_export},
    {HSM_CMD_DUKPT_INITIAL_KEY, do_dukpt_initial_key},
    {HSM_CMD_MKWK_GENERATE, do_mkwk_generate},
    {HSM_CMD_PIN_TRANSLATE_DUKPT, do_pin_translate_dukpt},
    {HSM_CMD_PIN_TRANSLATE, do_pin_translate_key},
    {HSM_CMD_PIN_VERIFY_PVV, do_pin_verify_pvv},
    {HSM_CMD_PVV_GENERATE, do_pvv_generate},
    {HSM_CMD_DUKPT_MAC_VERIFY, do_dukpt_mac_verify},
    {HSM_CMD_DUKPT_MAC_GENERATE, do_dukpt_mac_generate},
    {HSM_CMD_MAC_GENERATE, do_mac_generate},
    {HSM_CMD_MAC_VERIFY, do_mac_verify},
    {HSM_CMD_CARD_DATA_TRANSLATE, do_card_data},
    {HSM_CMD_PAN_HASH, do_pan_hash},
    {HSM_CMD_ARQC_VERIFY, do_arqc_verify},
    {HSM_CMD_CERT_SIGN, do_cert_sign},
    {HSM_CMD_CA_CERT_CREATE, do_ca_cert_create},
    {HSM_CMD_PROVISION_TERMINAL, do_provision_terminal},
    {HSM_CMD_KEY_FROM_COMPONENTS, do_key_from_components},
    {HSM_CMD_SEALED_OPEN, do_sealed_open},
    {HSM_CMD_SEALED_RESPOND, do_sealed_respond},
    {HSM_CMD_PARAMS_SIGN, do_params_sign},
};

size_t hsmd_error_frame(uint8_t *out, size_t cap, uint16_t command, uint32_t request_id, int status)
{
    hsm_writer w;
    size_t n = 0;
    hsm_writer_response(&w, out, cap, command, request_id, (uint8_t)status);
    return hsm_writer_finish(&w, &n) == 0 ? n : 0;
}

int hsmd_dispatch(struct hsmd_call *call, const hsm_msg *req, uint8_t *out, size_t cap,
                  size_t *out_len)
{
    hsm_writer w;
    *out_len = 0;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (handlers[i].code != req->command) {
            continue;
        }
        hsm_writer_response(&w, out, cap, req->command, req->request_id, HSM_STATUS_OK);
        int rc = handlers[i].fn(call, req, &w);
        if (rc != 0) {
            mpos_cleanse(out, w.len);
            return hsm_status_from_err(rc);
        }
        if (hsm_writer_finish(&w, out_len) != 0) {
            mpos_cleanse(out, w.len);
            *out_len = 0;
            return HSM_STATUS_INTERNAL;
        }
        return HSM_STATUS_OK;
    }
    return HSM_STATUS_COMMAND;
}
