/* openmpos: P-256 key pairs, ECDH and ECDSA of the crypto facade on OpenSSL 3's libcrypto
 * (mpos/ecc.h). Keys cross the facade as byte strings; the EVP keys built from them live only
 * inside one call. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "mpos/ecc.h"
#include "mpos/util.h"

/* SEC 2 v2 2.4.2: the order n of the base point of secp256r1. */
static const uint8_t p256_order[MPOS_EC_P256_PRIV_LEN] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};

/* 1 if 1 <= x <= n - 1 (FIPS 186-5 A.2: the range of a private key). Constant time: the
 * scalar is secret, so no branch or early exit depends on its bytes. */
static int scalar_in_range(const uint8_t x[MPOS_EC_P256_PRIV_LEN])
{
    uint32_t borrow = 0;
    uint8_t any = 0;
    for (size_t i = MPOS_EC_P256_PRIV_LEN; i-- > 0;) {
        uint32_t d = (uint32_t)x[i] - p256_order[i] - borrow;
        borrow = (d >> 8) & 1u; /* 1 when the byte subtraction wrapped */
        any |= x[i];
    }
    /* x - n borrows exactly when x < n. */
    return (int)(borrow & (uint32_t)(1u ^ (mpos_ct_byte_is_zero(any) & 1u)));
}

/* 1 if x < n, for public values (signature components). */
static int below_order(const uint8_t x[32])
{
    return memcmp(x, p256_order, sizeof(p256_order)) < 0;
}

static int is_zero32(const uint8_t x[32])
{
    uint8_t acc = 0;
    for (size_t i = 0; i < 32; i++) {
        acc |= x[i];
    }
    return acc == 0;
}

/* The EVP key of a private scalar, through an RFC 5915 ECPrivateKey without the public key
 * (libcrypto computes it) built in a buffer that is wiped here. NULL on failure. */
static EVP_PKEY *private_key(const uint8_t priv[MPOS_EC_P256_PRIV_LEN])
{
    /* RFC 5915 section 3: SEQUENCE { version 1, OCTET STRING d, [0] namedCurve prime256v1 }
     * (OID 1.2.840.10045.3.1.7, RFC 5480 2.1.1.1). */
    static const uint8_t head[] = {0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20};
    static const uint8_t tail[] = {0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                   0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
    uint8_t der[sizeof(head) + MPOS_EC_P256_PRIV_LEN + sizeof(tail)];
    const unsigned char *p = der;
    EVP_PKEY *pkey;
    memcpy(der, head, sizeof(head));
    memcpy(der + sizeof(head), priv, MPOS_EC_P256_PRIV_LEN);
    memcpy(der + sizeof(head) + MPOS_EC_P256_PRIV_LEN, tail, sizeof(tail));
    pkey = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)sizeof(der));
    MPOS_WIPE_BUFFER(der);
    return pkey;
}

/* The EVP key of an uncompressed P-256 point, validated (on the curve, not infinity). NULL
 * when it is not one. */
static EVP_PKEY *public_key(const uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;
    /* SEC 1 v2 2.3.4: uncompressed form only (04 || X || Y). */
    if (pub[0] != 0x04) {
        return NULL;
    }
    OSSL_PARAM params[3] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub,
                                          MPOS_EC_P256_PUB_LEN),
        OSSL_PARAM_construct_end()};
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        goto fail;
    }
    /* SEC 1 v2 3.2.2.1 steps 1-3 (with cofactor 1, step 4 is implied). */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check_quick(check) != 1) {
        goto fail;
    }
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
fail:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return NULL;
}

/* The uncompressed encoding of an EVP key's public point. */
static int encode_public(EVP_PKEY *pkey, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                        MPOS_EC_P256_PUB_LEN, &len) != 1 ||
        len != MPOS_EC_P256_PUB_LEN || pub[0] != 0x04) {
        return MPOS_ERR_CRYPTO;
    }
    return MPOS_OK;
}

int mpos_ec_p256_generate(uint8_t priv[MPOS_EC_P256_PRIV_LEN], uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *d = NULL;
    int rc = MPOS_ERR_CRYPTO;
    if (priv == NULL || pub == NULL) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    /* FIPS 186-5 A.2.2: a key pair on P-256 from the default provider's DRBG. */
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        goto exit;
    }
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 ||
        BN_bn2binpad(d, priv, MPOS_EC_P256_PRIV_LEN) != MPOS_EC_P256_PRIV_LEN) {
        goto exit;
    }
    rc = encode_public(pkey, pub);
    if (rc == MPOS_OK && !scalar_in_range(priv)) {
        rc = MPOS_ERR_CRYPTO;
    }
exit:
    BN_clear_free(d);
    EVP_PKEY_free(pkey);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        if (priv != NULL) {
            mpos_cleanse(priv, MPOS_EC_P256_PRIV_LEN);
        }
        if (pub != NULL) {
            mpos_cleanse(pub, MPOS_EC_P256_PUB_LEN);
        }
    }
    return rc;
}

int mpos_ec_p256_public(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                        uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    EVP_PKEY *pkey = NULL;
    int rc = MPOS_ERR_ARG;
    if (priv == NULL || pub == NULL) {
        goto exit;
    }
    if (!scalar_in_range(priv)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    /* FIPS 186-5 A.2: Q = d * G. */
    pkey = private_key(priv);
    rc = pkey != NULL ? encode_public(pkey, pub) : MPOS_ERR_CRYPTO;
exit:
    EVP_PKEY_free(pkey);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        if (pub != NULL) {
            mpos_cleanse(pub, MPOS_EC_P256_PUB_LEN);
        }
    }
    return rc;
}

int mpos_ec_p256_check_public(const uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    EVP_PKEY *pkey;
    if (pub == NULL) {
        return MPOS_ERR_ARG;
    }
    pkey = public_key(pub);
    if (pkey == NULL) {
        return MPOS_ERR_KEY;
    }
    EVP_PKEY_free(pkey);
    return MPOS_OK;
}

int mpos_ecdh_p256(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                   const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN], uint8_t shared[MPOS_ECDH_P256_LEN])
{
    EVP_PKEY *mine = NULL;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t len = MPOS_ECDH_P256_LEN;
    int rc = MPOS_ERR_ARG;
    if (priv == NULL || peer_pub == NULL || shared == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (!scalar_in_range(priv)) {
        goto exit;
    }
    /* SP 800-56A r3 5.6.2.3.4: the peer's public key is validated before use. */
    peer = public_key(peer_pub);
    if (peer == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_CRYPTO;
    mine = private_key(priv);
    if (mine == NULL) {
        goto exit;
    }
    /* SEC 1 v2 3.3.1: P = d * Q, z = x_P (field-size octets); libcrypto checks P != O. */
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL);
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1 ||
        EVP_PKEY_derive_set_peer_ex(ctx, peer, 1) != 1 || EVP_PKEY_derive(ctx, shared, &len) != 1 ||
        len != MPOS_ECDH_P256_LEN) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        if (shared != NULL) {
            mpos_cleanse(shared, MPOS_ECDH_P256_LEN);
        }
    }
    return rc;
}

/* The longest DER ECDSA-Sig-Value of P-256: SEQUENCE (2 + 2 * (2 + 33)). */
#define SIG_DER_MAX 72

int mpos_ecdsa_p256_sign(const uint8_t priv[MPOS_EC_P256_PRIV_LEN], const uint8_t *msg, size_t len,
                         uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    static const uint8_t empty[1] = {0};
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;
    uint8_t der[SIG_DER_MAX + 8];
    size_t der_len = sizeof(der);
    const unsigned char *p = der;
    int rc = MPOS_ERR_ARG;
    if (priv == NULL || sig == NULL || (msg == NULL && len > 0)) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    if (!scalar_in_range(priv)) {
        goto exit;
    }
    rc = MPOS_ERR_CRYPTO;
    pkey = private_key(priv);
    md = EVP_MD_CTX_new();
    if (pkey == NULL || md == NULL) {
        goto exit;
    }
    /* FIPS 186-5 6.4.1: e = SHA-256(M), a fresh k from the DRBG, (r, s). */
    if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1 ||
        EVP_DigestSign(md, der, &der_len, msg != NULL ? msg : empty, len) != 1) {
        goto exit;
    }
    /* SEC 1 v2 C.8 / RFC 3279 2.2.3: ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }. */
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (es == NULL || p != der + der_len) {
        goto exit;
    }
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        if (sig != NULL) {
            mpos_cleanse(sig, MPOS_ECDSA_P256_SIG_LEN);
        }
    }
    return rc;
}

int mpos_ecdsa_p256_verify(const uint8_t pub[MPOS_EC_P256_PUB_LEN], const uint8_t *msg, size_t len,
                           const uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    static const uint8_t empty[1] = {0};
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL;
    BIGNUM *s = NULL;
    uint8_t der[SIG_DER_MAX + 8];
    unsigned char *p = der;
    int der_len;
    int rc = MPOS_ERR_ARG;
    if (pub == NULL || sig == NULL || (msg == NULL && len > 0)) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    pkey = public_key(pub);
    if (pkey == NULL) {
        goto exit;
    }
    /* FIPS 186-5 6.4.2 step 2: r and s in [1, n - 1], else the signature is invalid. */
    rc = MPOS_ERR_VERIFY;
    if (is_zero32(sig) || is_zero32(sig + 32) || !below_order(sig) || !below_order(sig + 32)) {
        goto exit;
    }
    rc = MPOS_ERR_CRYPTO;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        goto exit;
    }
    r = NULL; /* owned by es now */
    s = NULL;
    der_len = i2d_ECDSA_SIG(es, NULL);
    if (der_len <= 0 || der_len > SIG_DER_MAX || i2d_ECDSA_SIG(es, &p) != der_len) {
        goto exit;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1) {
        goto exit;
    }
    /* FIPS 186-5 6.4.2 steps 3-8. */
    rc = EVP_DigestVerify(md, der, (size_t)der_len, msg != NULL ? msg : empty, len) == 1
             ? MPOS_OK
             : MPOS_ERR_VERIFY;
exit:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    if (rc != MPOS_OK) {
        ERR_clear_error();
    }
    return rc;
}
