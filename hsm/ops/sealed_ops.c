/* mpos-hsmd ops: the terminal's sealed transaction messages (terminal/core/txn/sealed.h,
 * docs/protocol.md 2) opened and answered inside hsmd (docs/system-design.md section 3).
 *
 * The sealed module authenticates and parses; this file gives it the DUKPT working keys of the
 * request's KSN, derived from the BDK here (they never leave the command), and turns the opened
 * request into what the back end may see: the clear fields, the PAN for routing, the PIN
 * re-encrypted under the zone PIN key, track 2 under the zone encryption key, and the EMV
 * objects on the clear allow-list. */
#include <string.h>

#include "mpos/ecc.h"
#include "mpos/tlv.h"
#include "ops_int.h"
#include "txn/sealed.h"

static const char *const usages_data[] = {"D0", NULL};

/* Key provider context: the BDK block of the command. */
struct sealed_keys_ctx {
    hsm_vault *v;
    const struct hsm_kb_in *bdk;
};

/* The working-key length of a sealed scheme (AES: the scheme's key type; TDES: 16). */
static size_t scheme_key_len(enum mpos_sealed_scheme scheme)
{
    switch (scheme) {
    case MPOS_SEALED_AES128:
        return 16;
    case MPOS_SEALED_AES192:
        return 24;
    case MPOS_SEALED_AES256:
        return 32;
    case MPOS_SEALED_TDES:
        return 16;
    }
    return 0;
}

static void dukpt_ref_of(const struct hsm_kb_in *bdk, enum mpos_sealed_scheme scheme,
                         const uint8_t *ksn, size_t ksn_len, struct hsm_dukpt_ref *ref)
{
    memset(ref, 0, sizeof(*ref));
    ref->bdk = *bdk;
    memcpy(ref->ksn, ksn, ksn_len);
    ref->ksn_len = ksn_len;
    ref->aes_key_len = scheme == MPOS_SEALED_TDES ? 0 : scheme_key_len(scheme);
}

/* mpos_sealed_key_fn: the MAC and data keys of one direction, derived from the BDK. The BDK's
 * DUKPT scheme must be the message's: an AES BDK never answers for a TDES request. */
static int sealed_keys(void *vctx, enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                       const uint8_t *ksn, size_t ksn_len, mpos_sealed_keys *keys)
{
    const struct sealed_keys_ctx *ctx = vctx;
    struct hsm_dukpt_ref ref;
    hsm_key mac, data;
    int s1 = 0, s2 = 0;
    int rc;
    size_t klen = scheme_key_len(scheme);
    memset(&mac, 0, sizeof(mac));
    memset(&data, 0, sizeof(data));
    if (klen == 0 || ksn_len > HSM_KSN_MAX_LEN) {
        return MPOS_ERR_ARG;
    }
    /* The BDK's algorithm first: a BDK of the other scheme is a usage error, whatever the
     * KSN looks like. */
    {
        static const char *const usages_bdk[] = {"B0", NULL};
        rc = ops_load(ctx->v, ctx->bdk, usages_bdk, scheme == MPOS_SEALED_TDES ? "T" : "A", 'X',
                      &mac);
        hsm_key_clear(&mac);
        if (rc != MPOS_OK) {
            return rc;
        }
    }
    dukpt_ref_of(ctx->bdk, scheme, ksn, ksn_len, &ref);
    rc = ops_dukpt_working_key(
        ctx->v, &ref,
        dir == MPOS_SEALED_DIR_REQUEST ? OPS_DUKPT_MAC_REQUEST : OPS_DUKPT_MAC_RESPONSE, &mac, &s1);
    if (rc == MPOS_OK) {
        rc = ops_dukpt_working_key(ctx->v, &ref,
                                   dir == MPOS_SEALED_DIR_REQUEST ? OPS_DUKPT_DATA_REQUEST
                                                                  : OPS_DUKPT_DATA_RESPONSE,
                                   &data, &s2);
    }
    if (rc == MPOS_OK && (s1 != (scheme == MPOS_SEALED_TDES ? 2 : 1) || s2 != s1 ||
                          mac.len != klen || data.len != klen)) {
        rc = MPOS_ERR_USAGE;
    }
    if (rc == MPOS_OK) {
        rc = mpos_sealed_keys_set(keys, scheme, dir, ksn, ksn_len, mac.bytes, data.bytes, klen);
    }
    hsm_key_clear(&mac);
    hsm_key_clear(&data);
    return rc;
}

/* EMV 5F34 (n2, one BCD byte) as two digits. */
static int psn_digits(const mpos_tlv *o, char psn[3])
{
    uint8_t hi, lo;
    if (o->len != 1) {
        return MPOS_ERR_FORMAT;
    }
    hi = (uint8_t)(o->value[0] >> 4);
    lo = (uint8_t)(o->value[0] & 0x0F);
    if (hi > 9 || lo > 9) {
        return MPOS_ERR_FORMAT;
    }
    psn[0] = (char)('0' + hi);
    psn[1] = (char)('0' + lo);
    psn[2] = '\0';
    return MPOS_OK;
}

/* The EMV objects on the clear allow-list (card_data.c) and the PSN. The sealed module has
 * already checked the data is strict BER-TLV. */
static int emv_clear(const uint8_t *emv, size_t len, struct hsm_sealed_open_resp *resp)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int rc = MPOS_OK;
    mpos_tlv_iter_init(&it, emv, len, MPOS_TLV_STRICT);
    while (rc == MPOS_OK && mpos_tlv_more(&it)) {
        rc = mpos_tlv_next(&it, &o);
        if (rc != MPOS_OK) {
            break;
        }
        if (o.tag == 0x5F34) {
            rc = psn_digits(&o, resp->psn);
        }
        if (rc == MPOS_OK && ops_emv_tag_is_clear(o.tag)) {
            if (resp->emv_len + o.raw_len > sizeof(resp->emv)) {
                rc = MPOS_ERR_LENGTH;
                break;
            }
            memcpy(resp->emv + resp->emv_len, o.raw, o.raw_len);
            resp->emv_len += o.raw_len;
        }
    }
    MPOS_WIPE_CTX(&o);
    return rc;
}

/* ISO/IEC 7813 track 2 in EMV '57' form (BCD nibbles): PAN, separator D, YYMM, service code.
 * 1 when the service code's first digit is 2 or 6 (the card has a chip), else 0. */
static int track2_chip(const uint8_t *t2, size_t len)
{
    size_t nibbles = 2 * len;
    for (size_t i = 0; i < nibbles; i++) {
        uint8_t nib = (uint8_t)((t2[i / 2] >> (i % 2 ? 0 : 4)) & 0x0F);
        if (nib == 0x0D) {
            size_t sc = i + 1 + 4; /* first digit of the service code */
            if (sc >= nibbles) {
                return 0;
            }
            nib = (uint8_t)((t2[sc / 2] >> (sc % 2 ? 0 : 4)) & 0x0F);
            return nib == 2 || nib == 6;
        }
    }
    return 0;
}

/* Track 2 under the ZEK: TDES-CBC, fresh random IV, ISO/IEC 9797-1 padding method 2. */
static int track2_under_zek(hsm_vault *v, const struct hsm_kb_in *zek_kb, const uint8_t *t2,
                            size_t len, struct hsm_sealed_open_resp *resp)
{
    hsm_key zek;
    uint8_t plain[HSM_SEALED_TRACK2_ENC_MAX];
    size_t out_len = ((len + 1 + 7) / 8) * 8;
    int rc;
    memset(&zek, 0, sizeof(zek));
    memset(plain, 0, sizeof(plain));
    if (len == 0 || out_len > sizeof(plain)) {
        return MPOS_ERR_LENGTH;
    }
    rc = ops_load(v, zek_kb, usages_data, "T", 'E', &zek);
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(plain, t2, len);
    plain[len] = 0x80;
    if (mpos_random_bytes(resp->track2_iv, sizeof(resp->track2_iv)) != MPOS_OK) {
        rc = MPOS_ERR_RNG;
        goto exit;
    }
    rc = mpos_cipher_cbc(&v->cc, MPOS_CIPHER_TDES, 1, zek.bytes, zek.len, resp->track2_iv, plain,
                         resp->track2_enc, out_len);
    if (rc == MPOS_OK) {
        resp->track2_enc_len = out_len;
    }
exit:
    MPOS_WIPE_BUFFER(plain);
    hsm_key_clear(&zek);
    return rc;
}

/* The PIN block of the request (under the DUKPT PIN key of its KSN) as format 0 under the
 * ZPK, through the pin.translate-dukpt code path. */
static int pin_to_zpk(hsm_vault *v, const struct hsm_sealed_open_req *req,
                      const mpos_sealed_request *q, struct hsm_sealed_open_resp *resp)
{
    struct hsm_pin_translate_req t;
    struct hsm_pin_block_resp out;
    int rc;
    memset(&t, 0, sizeof(t));
    if (q->pin_block_len > sizeof(t.pin_block)) {
        return MPOS_ERR_LENGTH;
    }
    t.source = HSM_PIN_FROM_DUKPT;
    dukpt_ref_of(&req->bdk, q->scheme, q->ksn, q->ksn_len, &t.dukpt);
    memcpy(t.pin_block, q->pin_block, q->pin_block_len);
    t.pin_block_len = q->pin_block_len;
    memcpy(t.pan, q->card.pan, sizeof(t.pan));
    t.zpk = req->zpk;
    t.dst_format = MPOS_PIN_FORMAT_0;
    rc = hsm_op_pin_translate(v, &t, &out);
    if (rc == MPOS_OK && out.pin_block_len == sizeof(resp->pin_block)) {
        memcpy(resp->pin_block, out.pin_block, out.pin_block_len);
        resp->pin_block_len = out.pin_block_len;
    } else if (rc == MPOS_OK) {
        rc = MPOS_ERR_USAGE; /* not an 8-byte format 0 block: not a TDES ZPK */
    }
    MPOS_WIPE_CTX(&t);
    MPOS_WIPE_CTX(&out);
    return rc;
}

/* The ZPK (usage P0, TDES, encrypt) and ZEK checked before the message is opened, so a wrong
 * key is refused without any work on the card data. */
static int zone_keys_check(hsm_vault *v, const struct hsm_sealed_open_req *req)
{
    static const char *const usages_pin[] = {"P0", NULL};
    hsm_key k;
    int rc = MPOS_OK;
    memset(&k, 0, sizeof(k));
    if (req->zpk.len != 0) {
        rc = ops_load(v, &req->zpk, usages_pin, "T", 'E', &k);
        hsm_key_clear(&k);
    }
    if (rc == MPOS_OK && req->zek.len != 0) {
        rc = ops_load(v, &req->zek, usages_data, "T", 'E', &k);
        hsm_key_clear(&k);
    }
    return rc;
}

int hsm_op_sealed_open(hsm_vault *v, const struct hsm_sealed_open_req *req,
                       struct hsm_sealed_open_resp *resp)
{
    mpos_sealed_request q;
    struct sealed_keys_ctx kctx;
    struct hsm_sealed_fields *f;
    int rc = MPOS_ERR_ARG;
    memset(&q, 0, sizeof(q));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    f = &resp->fields;
    if (!ops_vault_ready(v) || req == NULL || req->sealed == NULL) {
        goto exit;
    }
    if (req->sealed_len == 0 || req->sealed_len > HSM_SEALED_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = zone_keys_check(v, req);
    if (rc != MPOS_OK) {
        goto exit;
    }
    kctx.v = v;
    kctx.bdk = &req->bdk;
    /* Verifies the MAC under the request MAC key before it decrypts or believes anything. */
    rc = mpos_sealed_open_request(&v->cc, sealed_keys, &kctx, req->sealed, req->sealed_len, &q);
    if (rc != MPOS_OK) {
        goto exit;
    }
    f->msg_type = q.msg_type;
    f->scheme = (uint8_t)q.scheme;
    memcpy(f->ksn, q.ksn, q.ksn_len);
    f->ksn_len = q.ksn_len;
    f->sequence = q.sequence;
    f->txn_type = q.txn_type;
    f->amount = q.amount;
    f->currency = q.currency;
    memcpy(f->merchant_id, q.merchant_id, sizeof(f->merchant_id));
    memcpy(f->terminal_id, q.terminal_id, sizeof(f->terminal_id));
    memcpy(f->datetime, q.datetime, sizeof(f->datetime));
    f->entry_mode = q.entry_mode;
    f->fallback = q.fallback;
    f->reversal_reason = q.reversal_reason; /* checked by the opener: 1..4 iff a reversal */
    f->retry = q.retry; /* checked by the opener: 0, or 1 in a request without a PIN block */
    memcpy(f->masked_pan, q.masked_pan, sizeof(f->masked_pan));
    memcpy(f->original_ref, q.original_ref, sizeof(f->original_ref));
    if (q.has_location) {
        f->has_location = 1;
        f->lat_e7 = q.location.lat_e7;
        f->lon_e7 = q.location.lon_e7;
        f->accuracy_m = q.location.accuracy_m;
        f->location_time = q.location.time;
    }
    if (q.entry_mode != MPOS_ENTRY_NONE) {
        struct hsm_pan_hash_req hreq;
        struct hsm_pan_hash_resp hresp;
        memcpy(resp->pan, q.card.pan, sizeof(resp->pan));
        memcpy(hreq.pan, q.card.pan, sizeof(hreq.pan));
        rc = hsm_op_pan_hash(v, &hreq, &hresp);
        MPOS_WIPE_CTX(&hreq);
        if (rc != MPOS_OK) {
            goto exit;
        }
        memcpy(resp->pan_hash, hresp.hash, sizeof(resp->pan_hash));
        resp->has_pan_hash = 1;
        if (q.card.emv_len > 0) {
            rc = emv_clear(q.card.emv, q.card.emv_len, resp);
            if (rc != MPOS_OK) {
                goto exit;
            }
        }
        /* A chip read is a chip card; a stripe read tells by its service code (ISO/IEC
         * 7813: first digit 2 or 6 = integrated circuit). */
        resp->chip_card = q.entry_mode == MPOS_ENTRY_CHIP ||
                          (q.card.track2_len > 0 && track2_chip(q.card.track2, q.card.track2_len));
        if (q.card.track2_len > 0 && req->zek.len != 0) {
            rc = track2_under_zek(v, &req->zek, q.card.track2, q.card.track2_len, resp);
            if (rc != MPOS_OK) {
                goto exit;
            }
        }
    }
    if (q.has_pin) {
        resp->has_pin = 1;
        if (req->zpk.len != 0) {
            rc = pin_to_zpk(v, req, &q, resp);
            if (rc != MPOS_OK) {
                goto exit;
            }
        }
    }
    rc = MPOS_OK;
exit:
    mpos_sealed_request_clear(&q);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int hsm_op_sealed_respond(hsm_vault *v, const struct hsm_sealed_respond_req *req,
                          struct hsm_sealed_respond_resp *resp)
{
    mpos_sealed_response r;
    struct sealed_keys_ctx kctx;
    int rc = MPOS_ERR_ARG;
    memset(&r, 0, sizeof(r));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || req->ksn_len > sizeof(r.ksn) ||
        req->iad_len > sizeof(r.iad) || scheme_key_len((enum mpos_sealed_scheme)req->scheme) == 0) {
        goto exit;
    }
    /* The text fields must be NUL-terminated within their buffers (sealed.c checks content). */
    if (memchr(req->response_code, '\0', sizeof(req->response_code)) == NULL ||
        memchr(req->auth_code, '\0', sizeof(req->auth_code)) == NULL ||
        memchr(req->rrn, '\0', sizeof(req->rrn)) == NULL ||
        memchr(req->arc, '\0', sizeof(req->arc)) == NULL) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    r.scheme = (enum mpos_sealed_scheme)req->scheme;
    memcpy(r.ksn, req->ksn, req->ksn_len);
    r.ksn_len = req->ksn_len;
    r.sequence = req->sequence;
    memcpy(r.response_code, req->response_code, sizeof(r.response_code));
    memcpy(r.auth_code, req->auth_code, sizeof(r.auth_code));
    memcpy(r.rrn, req->rrn, sizeof(r.rrn));
    memcpy(r.arc, req->arc, sizeof(r.arc));
    memcpy(r.iad, req->iad, req->iad_len);
    r.iad_len = req->iad_len;
    kctx.v = v;
    kctx.bdk = &req->bdk;
    rc = mpos_sealed_seal_response(&v->cc, sealed_keys, &kctx, &r, NULL, NULL, resp->sealed,
                                   sizeof(resp->sealed), &resp->sealed_len);
exit:
    mpos_sealed_response_clear(&r);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* ---- params.sign ------------------------------------------------------------------------- */

int hsm_op_params_sign(hsm_vault *v, const struct hsm_params_sign_req *req,
                       struct hsm_params_sign_resp *resp)
{
    static const char *const usages_sign[] = {"S0", "S1", NULL};
    hsm_key key;
    mpos_tlv_iter it;
    mpos_tlv o;
    int rc = MPOS_ERR_ARG;
    memset(&key, 0, sizeof(key));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || (req->data == NULL && req->data_len != 0)) {
        goto exit;
    }
    if (req->data_len > 4096) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = ops_load(v, &req->key, usages_sign, "E", 'S', &key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = key.len == HSM_EC_PRIV_LEN ? mpos_ec_p256_public(key.bytes, resp->pub) : MPOS_ERR_KEY;
    if (rc != MPOS_OK || req->data_len == 0) {
        goto exit;
    }
    /* Exactly one whole strict BER-TLV object, E6 (endorsement) or E4 (signed part): the key
     * signs parameters and nothing else (docs/protocol.md 3.1). */
    rc = MPOS_ERR_FORMAT;
    if (mpos_tlv_validate(req->data, req->data_len, MPOS_TLV_STRICT) != MPOS_OK) {
        goto exit;
    }
    mpos_tlv_iter_init(&it, req->data, req->data_len, MPOS_TLV_STRICT);
    if (!mpos_tlv_more(&it) || mpos_tlv_next(&it, &o) != MPOS_OK ||
        (o.tag != 0xE6 && o.tag != 0xE4) || o.raw_len != req->data_len || mpos_tlv_more(&it)) {
        goto exit;
    }
    rc = mpos_ecdsa_p256_sign(key.bytes, req->data, req->data_len, resp->sig);
    resp->has_sig = rc == MPOS_OK;
exit:
    hsm_key_clear(&key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
