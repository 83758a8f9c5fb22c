/* openmpos provisioning: the DER the terminal needs without a provider's X.509 code, read and
 * written with lib/tlv (DER is BER with minimal definite lengths: MPOS_TLV_STRICT): the fields
 * of an X.509 certificate it checks, and its PKCS#10 certificate request. */
#include <string.h>

#include "mpos/ecc.h"
#include "mpos/util.h"
#include "provision_int.h"

/* ASN.1 universal tags (X.680 8.6) and the context tags of X.509 (RFC 5280 4.1). */
#define T_INTEGER    0x02u
#define T_BIT_STRING 0x03u
#define T_OID        0x06u
#define T_UTF8       0x0Cu
#define T_PRINTABLE  0x13u
#define T_SEQUENCE   0x30u
#define T_SET        0x31u
#define T_CTX0       0xA0u /* [0] constructed: version; PKCS#10 attributes */
#define T_CTX1_PRIM  0x81u /* [1] issuerUniqueID */
#define T_CTX2_PRIM  0x82u /* [2] subjectUniqueID */
#define T_CTX3       0xA3u /* [3] extensions */

/* OID contents (X.690 8.19). */
static const uint8_t oid_ecdsa_sha256[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};
static const uint8_t oid_ec_public_key[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01};
static const uint8_t oid_prime256v1[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
static const uint8_t oid_serial_number[] = {0x55, 0x04, 0x05}; /* X.520 id-at-serialNumber */

int prov_next(mpos_tlv_iter *it, uint32_t tag, mpos_tlv *obj)
{
    if (!mpos_tlv_more(it) || mpos_tlv_next(it, obj) != MPOS_OK || obj->tag != tag) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

int prov_der_is_one_sequence(const uint8_t *der, size_t len)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    mpos_tlv_iter_init(&it, der, len, MPOS_TLV_STRICT);
    return prov_next(&it, T_SEQUENCE, &o) == MPOS_OK && !mpos_tlv_more(&it);
}

static int oid_is(const mpos_tlv *o, const uint8_t *oid, size_t len)
{
    return o->tag == T_OID && o->len == len && memcmp(o->value, oid, len) == 0;
}

/* RFC 5758 3.2: AlgorithmIdentifier { ecdsa-with-SHA256 } with the parameters absent. */
static int alg_is_ecdsa_sha256(const mpos_tlv *alg)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    mpos_tlv_iter_init(&it, alg->value, alg->len, MPOS_TLV_STRICT);
    return prov_next(&it, T_OID, &o) == MPOS_OK &&
           oid_is(&o, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256)) && !mpos_tlv_more(&it);
}

/* RFC 5480 2.1.1, 2.2: SubjectPublicKeyInfo { { id-ecPublicKey, prime256v1 }, BIT STRING with
 * no unused bits holding the uncompressed point }. */
static int spki_p256(const mpos_tlv *spki, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    mpos_tlv_iter it, ait;
    mpos_tlv alg, o, bits;
    mpos_tlv_iter_init(&it, spki->value, spki->len, MPOS_TLV_STRICT);
    if (prov_next(&it, T_SEQUENCE, &alg) != MPOS_OK ||
        prov_next(&it, T_BIT_STRING, &bits) != MPOS_OK || mpos_tlv_more(&it)) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&ait, alg.value, alg.len, MPOS_TLV_STRICT);
    if (prov_next(&ait, T_OID, &o) != MPOS_OK ||
        !oid_is(&o, oid_ec_public_key, sizeof(oid_ec_public_key)) ||
        prov_next(&ait, T_OID, &o) != MPOS_OK ||
        !oid_is(&o, oid_prime256v1, sizeof(oid_prime256v1)) || mpos_tlv_more(&ait)) {
        return MPOS_ERR_FORMAT;
    }
    if (bits.len != 1 + MPOS_EC_P256_PUB_LEN || bits.value[0] != 0x00 || bits.value[1] != 0x04) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(pub, bits.value + 1, MPOS_EC_P256_PUB_LEN);
    return MPOS_OK;
}

/* A DER INTEGER (X.690 8.3) that is non-negative, minimally encoded and below 2^256, as 32
 * big-endian bytes. */
static int uint256_from_der(const mpos_tlv *o, uint8_t out[32])
{
    const uint8_t *v = o->value;
    size_t n = o->len;
    if (o->tag != T_INTEGER || n == 0 || n > 33 || (v[0] & 0x80u) != 0) {
        return MPOS_ERR_FORMAT;
    }
    /* X.690 8.3.2: the first nine bits are never all zero (nor all one). */
    if (n > 1 && v[0] == 0 && (v[1] & 0x80u) == 0) {
        return MPOS_ERR_FORMAT;
    }
    if (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    if (n > 32) {
        return MPOS_ERR_FORMAT;
    }
    memset(out, 0, 32);
    memcpy(out + 32 - n, v, n);
    return MPOS_OK;
}

/* RFC 5480 2.2 / RFC 3279 2.2.3: a BIT STRING with no unused bits holding
 * ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, as r || s. */
static int sig_from_bit_string(const mpos_tlv *bits, uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    mpos_tlv_iter it, sit;
    mpos_tlv seq, r, s;
    if (bits->len < 2 || bits->value[0] != 0x00) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&it, bits->value + 1, bits->len - 1, MPOS_TLV_STRICT);
    if (prov_next(&it, T_SEQUENCE, &seq) != MPOS_OK || mpos_tlv_more(&it)) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&sit, seq.value, seq.len, MPOS_TLV_STRICT);
    if (prov_next(&sit, T_INTEGER, &r) != MPOS_OK || prov_next(&sit, T_INTEGER, &s) != MPOS_OK ||
        mpos_tlv_more(&sit) || uint256_from_der(&r, sig) != MPOS_OK ||
        uint256_from_der(&s, sig + 32) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

/* RFC 5280 4.1.2.4: Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
 * AttributeTypeAndValue ::= SEQUENCE { type OID, value }). Finds the serialNumber attribute
 * (X.520), at most one; its value a PrintableString or UTF8String. */
static int name_serial(const mpos_tlv *name, const uint8_t **serial, size_t *serial_len)
{
    mpos_tlv_iter it;
    mpos_tlv rdn;
    *serial = NULL;
    *serial_len = 0;
    mpos_tlv_iter_init(&it, name->value, name->len, MPOS_TLV_STRICT);
    while (mpos_tlv_more(&it)) {
        mpos_tlv_iter rit;
        mpos_tlv atv;
        if (prov_next(&it, T_SET, &rdn) != MPOS_OK || rdn.len == 0) {
            return MPOS_ERR_FORMAT;
        }
        mpos_tlv_iter_init(&rit, rdn.value, rdn.len, MPOS_TLV_STRICT);
        while (mpos_tlv_more(&rit)) {
            mpos_tlv_iter ait;
            mpos_tlv type, value;
            if (prov_next(&rit, T_SEQUENCE, &atv) != MPOS_OK) {
                return MPOS_ERR_FORMAT;
            }
            mpos_tlv_iter_init(&ait, atv.value, atv.len, MPOS_TLV_STRICT);
            if (prov_next(&ait, T_OID, &type) != MPOS_OK || !mpos_tlv_more(&ait) ||
                mpos_tlv_next(&ait, &value) != MPOS_OK || mpos_tlv_more(&ait)) {
                return MPOS_ERR_FORMAT;
            }
            if (!oid_is(&type, oid_serial_number, sizeof(oid_serial_number))) {
                continue;
            }
            if (*serial != NULL || (value.tag != T_PRINTABLE && value.tag != T_UTF8)) {
                return MPOS_ERR_FORMAT;
            }
            *serial = value.value;
            *serial_len = value.len;
        }
    }
    return MPOS_OK;
}

static int cert_parse(const uint8_t *der, size_t len, struct mpos_provision_cert *c)
{
    mpos_tlv_iter it, cit, tit, vit;
    mpos_tlv cert, tbs, alg, sigval, o, name, spki;
    uint32_t last;
    mpos_tlv_iter_init(&it, der, len, MPOS_TLV_STRICT);
    /* RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
     * signatureValue }, nothing after it. */
    if (prov_next(&it, T_SEQUENCE, &cert) != MPOS_OK || mpos_tlv_more(&it)) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&cit, cert.value, cert.len, MPOS_TLV_STRICT);
    if (prov_next(&cit, T_SEQUENCE, &tbs) != MPOS_OK ||
        prov_next(&cit, T_SEQUENCE, &alg) != MPOS_OK ||
        prov_next(&cit, T_BIT_STRING, &sigval) != MPOS_OK || mpos_tlv_more(&cit)) {
        return MPOS_ERR_FORMAT;
    }
    c->tbs = tbs.raw;
    c->tbs_len = tbs.raw_len;
    if (!alg_is_ecdsa_sha256(&alg) || sig_from_bit_string(&sigval, c->sig) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&tit, tbs.value, tbs.len, MPOS_TLV_STRICT);
    /* 4.1.2.1: version [0] EXPLICIT INTEGER v3 (2). */
    if (prov_next(&tit, T_CTX0, &o) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    mpos_tlv_iter_init(&vit, o.value, o.len, MPOS_TLV_STRICT);
    if (prov_next(&vit, T_INTEGER, &o) != MPOS_OK || mpos_tlv_more(&vit) || o.len != 1 ||
        o.value[0] != 2) {
        return MPOS_ERR_FORMAT;
    }
    /* 4.1.2.2: serialNumber, positive, at most 20 octets (21 with a leading zero). */
    if (prov_next(&tit, T_INTEGER, &o) != MPOS_OK || o.len == 0 || o.len > 21 ||
        (o.value[0] & 0x80u) != 0) {
        return MPOS_ERR_FORMAT;
    }
    /* 4.1.2.3: signature, which must equal signatureAlgorithm (4.1.1.2). */
    if (prov_next(&tit, T_SEQUENCE, &o) != MPOS_OK || o.raw_len != alg.raw_len ||
        memcmp(o.raw, alg.raw, alg.raw_len) != 0) {
        return MPOS_ERR_FORMAT;
    }
    /* 4.1.2.4 issuer, 4.1.2.5 validity, 4.1.2.6 subject, 4.1.2.7 subjectPublicKeyInfo. */
    if (prov_next(&tit, T_SEQUENCE, &name) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    c->issuer = name.raw;
    c->issuer_len = name.raw_len;
    if (prov_next(&tit, T_SEQUENCE, &o) != MPOS_OK ||
        prov_next(&tit, T_SEQUENCE, &name) != MPOS_OK ||
        prov_next(&tit, T_SEQUENCE, &spki) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    c->subject = name.raw;
    c->subject_len = name.raw_len;
    if (name_serial(&name, &c->serial, &c->serial_len) != MPOS_OK ||
        spki_p256(&spki, c->pub) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    /* 4.1.2.8, 4.1.2.9: issuerUniqueID [1], subjectUniqueID [2], extensions [3], each at most
     * once and in that order (their content is not read here). */
    last = 0;
    while (mpos_tlv_more(&tit)) {
        if (mpos_tlv_next(&tit, &o) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
        uint32_t rank = o.tag == T_CTX1_PRIM   ? 1u
                        : o.tag == T_CTX2_PRIM ? 2u
                        : o.tag == T_CTX3      ? 3u
                                               : 0u;
        if (rank == 0 || rank <= last) {
            return MPOS_ERR_FORMAT;
        }
        last = rank;
    }
    return MPOS_OK;
}

int mpos_provision_cert_parse(const uint8_t *der, size_t len, struct mpos_provision_cert *c)
{
    int rc;
    if (c == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(c, 0, sizeof(*c));
    if (der == NULL) {
        return MPOS_ERR_ARG;
    }
    if (len == 0 || len > MPOS_PROVISION_CERT_MAX_LEN) {
        return MPOS_ERR_LENGTH;
    }
    rc = cert_parse(der, len, c);
    if (rc != MPOS_OK) {
        memset(c, 0, sizeof(*c));
    }
    return rc;
}

/* ---- the certificate request ------------------------------------------------------------ */

/* A DER INTEGER (X.690 8.3) of a 32-byte unsigned big-endian value: leading zero bytes
 * dropped, one 00 added when the top bit is set. Returns the content length (1 to 33). */
static size_t der_uint256(const uint8_t in[32], uint8_t out[33])
{
    size_t skip = 0;
    size_t n = 0;
    while (skip < 31 && in[skip] == 0) {
        skip++;
    }
    if ((in[skip] & 0x80u) != 0) {
        out[n++] = 0x00;
    }
    memcpy(out + n, in + skip, 32 - skip);
    return n + 32 - skip;
}

/* BIT STRING content of a signature: 00 (no unused bits) || ECDSA-Sig-Value. */
static int sig_bit_string(const uint8_t sig[MPOS_ECDSA_P256_SIG_LEN], uint8_t *out, size_t cap,
                          size_t *len)
{
    uint8_t r[33], s[33];
    size_t rl = der_uint256(sig, r);
    size_t sl = der_uint256(sig + 32, s);
    mpos_tlv_mark m;
    int rc;
    *len = 0;
    if (cap == 0) {
        return MPOS_ERR_LENGTH;
    }
    out[(*len)++] = 0x00;
    rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &m);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_INTEGER, r, rl);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_INTEGER, s, sl);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &m);
    }
    return rc;
}

/* AlgorithmIdentifier { ecdsa-with-SHA256 } (RFC 5758 3.2). */
static int put_alg(uint8_t *out, size_t cap, size_t *len)
{
    mpos_tlv_mark m;
    int rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &m);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_OID, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256));
    }
    return rc == MPOS_OK ? mpos_tlv_end(out, cap, len, &m) : rc;
}

/* CertificationRequestInfo (RFC 2986 4.1). */
static int put_cri(uint8_t *out, size_t cap, size_t *len, const char *serial,
                   const uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    static const uint8_t version0[] = {0x00};
    uint8_t bits[1 + MPOS_EC_P256_PUB_LEN];
    mpos_tlv_mark cri, name, rdn, atv, spki, alg;
    int rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &cri);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_INTEGER, version0, 1);
    }
    /* subject: SEQUENCE { SET { SEQUENCE { serialNumber, PrintableString } } } */
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &name);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, len, T_SET, &rdn);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &atv);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_OID, oid_serial_number, sizeof(oid_serial_number));
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_PRINTABLE, (const uint8_t *)serial, strlen(serial));
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &atv);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &rdn);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &name);
    }
    /* subjectPKInfo (RFC 5480 2). */
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &spki);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_begin(out, cap, len, T_SEQUENCE, &alg);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_OID, oid_ec_public_key, sizeof(oid_ec_public_key));
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_OID, oid_prime256v1, sizeof(oid_prime256v1));
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &alg);
    }
    if (rc == MPOS_OK) {
        bits[0] = 0x00;
        memcpy(bits + 1, pub, MPOS_EC_P256_PUB_LEN);
        rc = mpos_tlv_put(out, cap, len, T_BIT_STRING, bits, sizeof(bits));
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &spki);
    }
    /* attributes [0] IMPLICIT SET OF Attribute: none. */
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, T_CTX0, NULL, 0);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(out, cap, len, &cri);
    }
    return rc;
}

/* RFC 2986 4.2: CertificationRequest ::= SEQUENCE { certificationRequestInfo,
 * signatureAlgorithm, signature BIT STRING }, the signature over the DER of the info. */
static int csr_build(const uint8_t pub[MPOS_EC_P256_PUB_LEN], const char *serial,
                     mpos_provision_sign_fn sign, void *sign_ctx, uint8_t *csr, size_t cap,
                     size_t *csr_len)
{
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN];
    uint8_t bits[1 + 2 + 2 * (2 + 33)];
    size_t bits_len = 0;
    size_t len = 0;
    size_t cri_pos;
    mpos_tlv_mark req;
    int rc;
    if (!mpos_provision_serial_valid(serial)) {
        return MPOS_ERR_FORMAT;
    }
    rc = mpos_tlv_begin(csr, cap, &len, T_SEQUENCE, &req);
    if (rc != MPOS_OK) {
        return rc;
    }
    cri_pos = len;
    rc = put_cri(csr, cap, &len, serial, pub);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = sign(sign_ctx, csr + cri_pos, len - cri_pos, sig);
    if (rc != MPOS_OK) {
        return rc > 0 ? MPOS_ERR_CRYPTO : rc; /* a signer reports 0 or a negative error */
    }
    rc = put_alg(csr, cap, &len);
    if (rc == MPOS_OK) {
        rc = sig_bit_string(sig, bits, sizeof(bits), &bits_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(csr, cap, &len, T_BIT_STRING, bits, bits_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_tlv_end(csr, cap, &len, &req);
    }
    if (rc == MPOS_OK) {
        *csr_len = len;
    }
    return rc;
}

static int scalar_sign(void *ctx, const uint8_t *msg, size_t len,
                       uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    /* FIPS 186-5 6.4.1 with the device key. */
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

int mpos_provision_csr_build(const uint8_t priv[MPOS_EC_P256_PRIV_LEN], const char *serial,
                             uint8_t *csr, size_t cap, size_t *csr_len)
{
    uint8_t pub[MPOS_EC_P256_PUB_LEN];
    int rc = MPOS_ERR_ARG;
    if (csr_len != NULL) {
        *csr_len = 0;
    }
    if (priv == NULL || serial == NULL || csr == NULL || csr_len == NULL) {
        goto exit;
    }
    if (!mpos_provision_serial_valid(serial)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    rc = mpos_ec_p256_public(priv, pub);
    if (rc == MPOS_OK) {
        rc = csr_build(pub, serial, scalar_sign, (void *)priv, csr, cap, csr_len);
    }
exit:
    if (rc != MPOS_OK && csr != NULL && csr_len != NULL) {
        mpos_cleanse(csr, cap);
    }
    return rc;
}

int mpos_provision_csr_build_device(const struct mpos_provision_device *dev, const char *serial,
                                    uint8_t *csr, size_t cap, size_t *csr_len)
{
    int rc = MPOS_ERR_ARG;
    if (csr_len != NULL) {
        *csr_len = 0;
    }
    if (dev == NULL || dev->pub == NULL || dev->sign == NULL || serial == NULL || csr == NULL ||
        csr_len == NULL) {
        goto exit;
    }
    /* RFC 5480 2.2: the uncompressed point (checked on the curve by whoever reads it). */
    if (dev->pub[0] != 0x04) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    rc = csr_build(dev->pub, serial, dev->sign, dev->ctx, csr, cap, csr_len);
exit:
    if (rc != MPOS_OK && csr != NULL && csr_len != NULL) {
        mpos_cleanse(csr, cap);
    }
    return rc;
}
