/* openmpos provisioning: the bundle's encoding (mpos/provision.h, docs/provisioning.md). One
 * set of field checks serves the encoder and the parser, so nothing is written that would not
 * be read back. */
#include <string.h>

#include "mpos/util.h"
#include "provision_int.h"

int mpos_provision_serial_valid(const char *serial)
{
    size_t len = 0;
    if (serial == NULL) {
        return 0;
    }
    while (len <= MPOS_PROVISION_SERIAL_MAX_LEN && serial[len] != '\0') {
        char ch = serial[len];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-')) {
            return 0;
        }
        len++;
    }
    return len >= 1 && len <= MPOS_PROVISION_SERIAL_MAX_LEN;
}

/* The same rule on a counted string. */
static int serial_chars_valid(const char *s, size_t len)
{
    char buf[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    if (len == 0 || len > MPOS_PROVISION_SERIAL_MAX_LEN || memchr(s, '\0', len) != NULL) {
        return 0;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return mpos_provision_serial_valid(buf);
}

static int cert_field_valid(const uint8_t *der, size_t len)
{
    return der != NULL && len >= 1 && len <= MPOS_PROVISION_CERT_MAX_LEN &&
           prov_der_is_one_sequence(der, len);
}

/* A TR-31 version D block as text: printable ASCII (X9.143:2021 6.1), starting 'D'. The block
 * itself is checked by mpos_tr31_unwrap under its MAC. */
static int key_block_field_valid(const char *kb, size_t len)
{
    if (kb == NULL || len < 1 || len > MPOS_PROVISION_KEYBLOCK_MAX_LEN || kb[0] != 'D') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (kb[i] < 0x20 || kb[i] > 0x7E) {
            return 0;
        }
    }
    return 1;
}

static int kind_valid(unsigned kind)
{
    return kind == MPOS_PROVISION_AES_DUKPT || kind == MPOS_PROVISION_TDES_DUKPT ||
           kind == MPOS_PROVISION_TMK || kind == MPOS_PROVISION_TMK_SM4;
}

/* A field of one byte. */
static int one_byte(const mpos_tlv *o, unsigned *v)
{
    if (o->len != 1) {
        return MPOS_ERR_FORMAT;
    }
    *v = o->value[0];
    return MPOS_OK;
}

static int parse(const uint8_t *buf, size_t len, mpos_provision_bundle *b)
{
    mpos_tlv_iter it, bit, sit;
    mpos_tlv bundle, signed_part, sig, o;
    unsigned kind = 0;
    int rc;
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_STRICT);
    if (prov_next(&it, MPOS_PROVISION_TAG_BUNDLE, &bundle) != MPOS_OK || mpos_tlv_more(&it)) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&bit, bundle.value, bundle.len, MPOS_TLV_STRICT);
    if (prov_next(&bit, MPOS_PROVISION_TAG_SIGNED, &signed_part) != MPOS_OK ||
        prov_next(&bit, MPOS_PROVISION_TAG_SIGNATURE, &sig) != MPOS_OK || mpos_tlv_more(&bit) ||
        sig.len != MPOS_ECDSA_P256_SIG_LEN) {
        return MPOS_ERR_FORMAT;
    }
    b->signed_part = signed_part.raw;
    b->signed_len = signed_part.raw_len;
    b->signature = sig.value;

    mpos_tlv_iter_init(&sit, signed_part.value, signed_part.len, MPOS_TLV_STRICT);
    if (prov_next(&sit, MPOS_PROVISION_TAG_VERSION, &o) != MPOS_OK ||
        one_byte(&o, &b->version) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (b->version != MPOS_PROVISION_VERSION) {
        return MPOS_ERR_UNSUPPORTED;
    }
    if (prov_next(&sit, MPOS_PROVISION_TAG_SIG_ALG, &o) != MPOS_OK ||
        one_byte(&o, &b->sig_alg) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (b->sig_alg != MPOS_PROVISION_SIG_ECDSA_P256) {
        return MPOS_ERR_UNSUPPORTED;
    }
    if (prov_next(&sit, MPOS_PROVISION_TAG_SERIAL, &o) != MPOS_OK ||
        !serial_chars_valid((const char *)o.value, o.len)) {
        return MPOS_ERR_FORMAT;
    }
    b->serial = (const char *)o.value;
    b->serial_len = o.len;
    if (prov_next(&sit, MPOS_PROVISION_TAG_KIND, &o) != MPOS_OK || one_byte(&o, &kind) != MPOS_OK ||
        !kind_valid(kind)) {
        return MPOS_ERR_FORMAT;
    }
    b->kind = (enum mpos_provision_kind)kind;
    if (prov_next(&sit, MPOS_PROVISION_TAG_DEVICE_CERT, &o) != MPOS_OK ||
        !cert_field_valid(o.value, o.len)) {
        return MPOS_ERR_FORMAT;
    }
    b->device_cert = o.value;
    b->device_cert_len = o.len;
    if (prov_next(&sit, MPOS_PROVISION_TAG_CA_CERT, &o) != MPOS_OK ||
        !cert_field_valid(o.value, o.len)) {
        return MPOS_ERR_FORMAT;
    }
    b->ca_cert = o.value;
    b->ca_cert_len = o.len;
    /* C7 (optional) then C8. */
    if (!mpos_tlv_more(&sit) || mpos_tlv_next(&sit, &o) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (o.tag == MPOS_PROVISION_TAG_TRUST_ANCHOR) {
        if (!cert_field_valid(o.value, o.len)) {
            return MPOS_ERR_FORMAT;
        }
        b->trust_anchor = o.value;
        b->trust_anchor_len = o.len;
        if (!mpos_tlv_more(&sit) || mpos_tlv_next(&sit, &o) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
    }
    if (o.tag != MPOS_PROVISION_TAG_EPHEMERAL || o.len != MPOS_EC_P256_PUB_LEN ||
        o.value[0] != 0x04) {
        return MPOS_ERR_FORMAT;
    }
    b->ephemeral_pub = o.value;
    rc = prov_next(&sit, MPOS_PROVISION_TAG_KEY_BLOCK, &o);
    if (rc != MPOS_OK || !key_block_field_valid((const char *)o.value, o.len) ||
        mpos_tlv_more(&sit)) {
        return MPOS_ERR_FORMAT;
    }
    b->key_block = (const char *)o.value;
    b->key_block_len = o.len;
    return MPOS_OK;
}

int mpos_provision_bundle_parse(const uint8_t *buf, size_t len, mpos_provision_bundle *b)
{
    int rc;
    if (b == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(b, 0, sizeof(*b));
    if (buf == NULL) {
        return MPOS_ERR_ARG;
    }
    if (len == 0 || len > MPOS_PROVISION_BUNDLE_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    rc = parse(buf, len, b);
    if (rc != MPOS_OK) {
        memset(b, 0, sizeof(*b));
    }
    return rc;
}

int mpos_provision_bundle_encode(const mpos_provision_bundle *b, mpos_provision_sign_fn sign,
                                 void *sign_ctx, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN];
    const uint8_t version = MPOS_PROVISION_VERSION;
    const uint8_t sig_alg = MPOS_PROVISION_SIG_ECDSA_P256;
    uint8_t kind;
    size_t serial_len;
    size_t n = 0;
    mpos_tlv_mark outer, inner;
    int rc = MPOS_ERR_ARG;
    if (len != NULL) {
        *len = 0;
    }
    if (b == NULL || sign == NULL || out == NULL || len == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    serial_len = b->serial_len;
    if (serial_len == 0 && b->serial != NULL) {
        while (serial_len <= MPOS_PROVISION_SERIAL_MAX_LEN && b->serial[serial_len] != '\0') {
            serial_len++;
        }
    }
    if (b->serial == NULL || !serial_chars_valid(b->serial, serial_len) ||
        !kind_valid((unsigned)b->kind) || !cert_field_valid(b->device_cert, b->device_cert_len) ||
        !cert_field_valid(b->ca_cert, b->ca_cert_len) || b->ephemeral_pub == NULL ||
        b->ephemeral_pub[0] != 0x04 || !key_block_field_valid(b->key_block, b->key_block_len)) {
        goto exit;
    }
    if ((b->trust_anchor != NULL || b->trust_anchor_len != 0) &&
        !cert_field_valid(b->trust_anchor, b->trust_anchor_len)) {
        goto exit;
    }
    kind = (uint8_t)b->kind;
    rc = mpos_tlv_begin(out, cap, &n, MPOS_PROVISION_TAG_BUNDLE, &outer);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, &n, MPOS_PROVISION_TAG_SIGNED, &inner);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_VERSION, &version, 1);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_SIG_ALG, &sig_alg, 1);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_SERIAL, (const uint8_t *)b->serial,
                          serial_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_KIND, &kind, 1);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_DEVICE_CERT, b->device_cert,
                          b->device_cert_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_CA_CERT, b->ca_cert, b->ca_cert_len);
    }
    if (rc == MPOS_OK && b->trust_anchor != NULL) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_TRUST_ANCHOR, b->trust_anchor,
                          b->trust_anchor_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_EPHEMERAL, b->ephemeral_pub,
                          MPOS_EC_P256_PUB_LEN);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_KEY_BLOCK, (const uint8_t *)b->key_block,
                          b->key_block_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, &n, &inner);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The signature covers the E2 object, tag to end; E1's length, written last, may move it
     * right but does not change it. */
    rc = sign(sign_ctx, out + inner.tag_pos, n - inner.tag_pos, sig);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, &n, MPOS_PROVISION_TAG_SIGNATURE, sig, sizeof(sig));
    } else if (rc > 0) {
        rc = MPOS_ERR_CRYPTO; /* a signer must not report success with a positive value */
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, &n, &outer);
    }
    if (rc == MPOS_OK && n > MPOS_PROVISION_BUNDLE_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
    }
    if (rc == MPOS_OK) {
        *len = n;
    }
exit:
    if (rc != MPOS_OK && out != NULL && len != NULL) {
        mpos_cleanse(out, cap);
    }
    return rc;
}
