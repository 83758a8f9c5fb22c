/* mpos-hsmd ops: DUKPT-encrypted card data to a zone data key (format in ops.h). */
#include <string.h>

#include "mpos/tlv.h"
#include "ops_int.h"

static const char *const usages_data[] = {"D0", NULL};

/* EMV tags returned in clear: what authorisation and issuer-side cryptogram checks need, none
 * of which lets anyone make a payment (EMV 4.3 Book 3 Annex A). Track data (56, 57, 9F1F,
 * 9F20, 9F6B), expiry (5F24), effective date (5F25), name (5F20, 9F0B), service code (5F30),
 * PAN (5A) and any proprietary tag (a CVN among them) are not on the list. */
static const uint32_t clear_tags[] = {
    0x4F,   /* AID */
    0x50,   /* application label */
    0x82,   /* AIP */
    0x84,   /* DF name */
    0x95,   /* TVR */
    0x9A,   /* transaction date */
    0x9B,   /* TSI */
    0x9C,   /* transaction type */
    0x5F28, /* issuer country code */
    0x5F2A, /* transaction currency code */
    0x5F34, /* PAN sequence number */
    0x9F02, /* amount, authorised */
    0x9F03, /* amount, other */
    0x9F06, /* AID (terminal) */
    0x9F07, /* application usage control */
    0x9F09, /* application version number (terminal) */
    0x9F0D, /* IAC default */
    0x9F0E, /* IAC denial */
    0x9F0F, /* IAC online */
    0x9F10, /* issuer application data */
    0x9F1A, /* terminal country code */
    0x9F1E, /* IFD serial number */
    0x9F21, /* transaction time */
    0x9F26, /* application cryptogram */
    0x9F27, /* cryptogram information data */
    0x9F33, /* terminal capabilities */
    0x9F34, /* CVM results */
    0x9F35, /* terminal type */
    0x9F36, /* ATC */
    0x9F37, /* unpredictable number */
    0x9F41, /* transaction sequence counter */
    0x9F53, /* transaction category code */
    0x9F63, /* UnionPay: card product identification */
    0x9F66, /* TTQ */
    0x9F6C, /* card transaction qualifiers */
    0x9F74, /* UnionPay: electronic cash issuer authorisation code */
};

int ops_emv_tag_is_clear(uint32_t tag)
{
    for (size_t i = 0; i < sizeof(clear_tags) / sizeof(clear_tags[0]); i++) {
        if (clear_tags[i] == tag) {
            return 1;
        }
    }
    return 0;
}

/* EMV 4.3 Book 3 Annex A '5A': cn, up to 10 bytes, digits then F padding (odd length only).
 * Writes 12 to 19 digits and a NUL to pan. */
static int pan_from_5a(const mpos_tlv *o, char pan[HSM_PAN_BUF_LEN])
{
    size_t n = 0;
    if (o->len == 0 || o->len > 10) {
        return MPOS_ERR_DECODE;
    }
    for (size_t i = 0; i < 2 * o->len; i++) {
        uint8_t nib = (uint8_t)((o->value[i / 2] >> (i % 2 ? 0 : 4)) & 0x0F);
        if (nib <= 9 && n == i) {
            pan[n++] = (char)('0' + nib);
        } else if (!(nib == 0x0F && i == 2 * o->len - 1 && n == i)) {
            return MPOS_ERR_DECODE;
        }
    }
    pan[n] = '\0';
    return n >= 12 && n <= 19 ? MPOS_OK : MPOS_ERR_DECODE;
}

/* '57' (track 2 equivalent data): PAN, separator D, expiry YYMM, service code, discretionary
 * data, F padding (EMV 4.3 Book 3 Annex A; ISO/IEC 7813). Only the PAN is compared here. */
static int track2_matches(const mpos_tlv *o, const char *pan)
{
    size_t pan_len = strlen(pan);
    size_t nibbles = 2 * o->len;
    uint8_t diff = 0;
    if (o->len > 19 || nibbles < pan_len + 1 + 4 + 3) {
        return 0;
    }
    for (size_t i = 0; i <= pan_len; i++) {
        uint8_t nib = (uint8_t)((o->value[i / 2] >> (i % 2 ? 0 : 4)) & 0x0F);
        uint8_t want = i < pan_len ? (uint8_t)(pan[i] - '0') : 0x0D;
        diff |= (uint8_t)(nib ^ want);
    }
    return diff == 0;
}

int hsm_op_card_data_translate(hsm_vault *v, const struct hsm_card_data_req *req,
                               struct hsm_card_data_resp *resp)
{
    hsm_key wk;
    hsm_key zdk;
    uint8_t plain[HSM_CARD_DATA_MAX_LEN];
    enum mpos_cipher wcipher;
    enum mpos_cipher zcipher;
    size_t bl;
    size_t tlv_len;
    int scheme = 0;
    int rc = MPOS_ERR_ARG;
    int have_pan = 0;
    int have_track = 0;
    mpos_tlv_iter it;
    mpos_tlv o;
    mpos_tlv o57;
    memset(&wk, 0, sizeof(wk));
    memset(&zdk, 0, sizeof(zdk));
    memset(plain, 0, sizeof(plain));
    memset(&o57, 0, sizeof(o57));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || req->data == NULL) {
        goto exit;
    }
    if (req->data_len == 0 || req->data_len > HSM_CARD_DATA_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = ops_load(v, &req->zdk, usages_data, "AT", 'E', &zdk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = ops_cipher(&zdk, &zcipher);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The request data key: AES usage 3000 (X9.24-3-2017 6.3.2) or the TDES data-request
     * variant (X9.24-1-2009 A.4). A response-direction key is never derived here. */
    rc = ops_dukpt_working_key(v, &req->dukpt, OPS_DUKPT_DATA_REQUEST, &wk, &scheme);
    if (rc != MPOS_OK) {
        goto exit;
    }
    wcipher = scheme == 1 ? MPOS_CIPHER_AES : MPOS_CIPHER_TDES;
    bl = mpos_cipher_block_len(wcipher);
    if (req->data_len % bl != 0) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    /* CBC, zero IV (the key serves one transaction). */
    rc = mpos_cipher_cbc(&v->cc, wcipher, 0, wk.bytes, wk.len, NULL, req->data, plain,
                         req->data_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* Every content check below fails with the same MPOS_ERR_DECODE. */
    rc = MPOS_ERR_DECODE;
    /* ISO/IEC 9797-1 padding method 2: 80 then 0 to bl-1 zeros, inside the last block. */
    tlv_len = req->data_len;
    while (tlv_len > req->data_len - bl && plain[tlv_len - 1] == 0x00) {
        tlv_len--;
    }
    if (tlv_len <= req->data_len - bl || plain[tlv_len - 1] != 0x80) {
        goto exit;
    }
    tlv_len--;
    if (mpos_tlv_validate(plain, tlv_len, MPOS_TLV_STRICT) != MPOS_OK) {
        goto exit;
    }
    /* Top-level objects: PAN and track 2 once each; the allow-listed ones copied out. */
    mpos_tlv_iter_init(&it, plain, tlv_len, MPOS_TLV_STRICT);
    while (mpos_tlv_more(&it)) {
        if (mpos_tlv_next(&it, &o) != MPOS_OK) {
            goto exit;
        }
        if (o.tag == 0x5A) {
            if (have_pan || pan_from_5a(&o, resp->pan) != MPOS_OK) {
                goto exit;
            }
            have_pan = 1;
        } else if (o.tag == 0x57) {
            if (have_track) {
                goto exit;
            }
            o57 = o;
            have_track = 1;
        } else if (ops_emv_tag_is_clear(o.tag)) {
            if (resp->emv_len + o.raw_len > sizeof(resp->emv)) {
                goto exit;
            }
            memcpy(resp->emv + resp->emv_len, o.raw, o.raw_len);
            resp->emv_len += o.raw_len;
        }
    }
    if (!have_pan || !have_track || !track2_matches(&o57, resp->pan)) {
        goto exit;
    }
    /* Re-encrypt the same padded plaintext under the zone data key, CBC, random IV. */
    resp->iv_len = mpos_cipher_block_len(zcipher);
    if (mpos_random_bytes(resp->iv, resp->iv_len) != MPOS_OK) {
        rc = MPOS_ERR_RNG;
        goto exit;
    }
    {
        size_t zbl = resp->iv_len;
        size_t out_len = ((tlv_len + 1 + zbl - 1) / zbl) * zbl; /* 80, then zeros */
        if (out_len > sizeof(resp->data)) {
            rc = MPOS_ERR_LENGTH;
            goto exit;
        }
        memset(plain + tlv_len, 0, sizeof(plain) - tlv_len);
        plain[tlv_len] = 0x80;
        rc = mpos_cipher_cbc(&v->cc, zcipher, 1, zdk.bytes, zdk.len, resp->iv, plain, resp->data,
                             out_len);
        if (rc != MPOS_OK) {
            goto exit;
        }
        resp->data_len = out_len;
    }
exit:
    MPOS_WIPE_BUFFER(plain);
    MPOS_WIPE_CTX(&o);
    MPOS_WIPE_CTX(&o57);
    hsm_key_clear(&wk);
    hsm_key_clear(&zdk);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
