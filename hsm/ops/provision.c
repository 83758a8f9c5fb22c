/* mpos-hsmd ops: terminal provisioning (hsm_op_provision_terminal, docs/provisioning.md).
 *
 * The device certificate is signed by cert.c's core with the manufacturer CA key; the bundle's
 * format, transport key and key block are lib/provision's, the same code the terminal opens it
 * with. OpenSSL is used directly only to read the request (PEM, its public key) and the trust
 * anchor: this runs inside hsmd only. */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "mpos/dukpt.h"
#include "mpos/ecc.h"
#include "mpos/provision.h"
#include "ops_cert.h"
#include "ops_int.h"

_Static_assert(HSM_CERT_MAX_LEN <= MPOS_PROVISION_CERT_MAX_LEN,
               "a certificate hsmd signs must fit a bundle field");
_Static_assert(HSM_EC_PRIV_LEN == MPOS_EC_P256_PRIV_LEN && HSM_EC_PUB_LEN == MPOS_EC_P256_PUB_LEN,
               "one P-256 key format");
_Static_assert(HSM_KCV_LEN >= MPOS_PROVISION_KCV_LEN, "check value sizes");

static const char *const usages_ca[] = {"S1", "S0", NULL};
static const char *const usages_bdk[] = {"B0", NULL};

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The request as DER: given as DER (a SEQUENCE), or as exactly one PEM block (RFC 7468 7:
 * label "CERTIFICATE REQUEST", or the legacy "NEW CERTIFICATE REQUEST"), no encapsulated
 * headers, nothing but whitespace around it. */
static int csr_to_der(const uint8_t *in, size_t len, uint8_t *der, size_t cap, size_t *der_len)
{
    static const char begin[] = "-----BEGIN ";
    BIO *bio = NULL;
    char *name = NULL;
    char *header = NULL;
    unsigned char *data = NULL;
    long data_len = 0;
    size_t lead = 0;
    int rc = MPOS_ERR_FORMAT;
    *der_len = 0;
    while (lead < len && is_space(in[lead])) {
        lead++;
    }
    if (len - lead < sizeof(begin) - 1 || memcmp(in + lead, begin, sizeof(begin) - 1) != 0) {
        /* DER: checked in full by d2i_X509_REQ later. */
        if (len > cap) {
            return MPOS_ERR_LENGTH;
        }
        memcpy(der, in, len);
        *der_len = len;
        return MPOS_OK;
    }
    bio = BIO_new_mem_buf(in + lead, (int)(len - lead));
    if (bio == NULL) {
        rc = MPOS_ERR_CRYPTO;
        goto exit;
    }
    if (PEM_read_bio(bio, &name, &header, &data, &data_len) != 1 ||
        (strcmp(name, PEM_STRING_X509_REQ) != 0 && strcmp(name, PEM_STRING_X509_REQ_OLD) != 0) ||
        header[0] != '\0' || data_len <= 0) {
        goto exit;
    }
    for (;;) {
        uint8_t rest[64];
        int n = BIO_read(bio, rest, (int)sizeof(rest));
        if (n <= 0) {
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!is_space(rest[i])) {
                goto exit;
            }
        }
    }
    if ((size_t)data_len > cap) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    memcpy(der, data, (size_t)data_len);
    *der_len = (size_t)data_len;
    rc = MPOS_OK;
exit:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    if (rc != MPOS_OK) {
        ERR_clear_error();
    }
    return rc;
}

/* The request's public key as an uncompressed P-256 point (the form the bundle and the
 * terminal use). MPOS_ERR_FORMAT for a request that does not parse, MPOS_ERR_KEY for another
 * key type or encoding. */
static int csr_public_key(const uint8_t *der, size_t len, uint8_t pub[HSM_EC_PUB_LEN])
{
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    EVP_PKEY *k;
    size_t pub_len = 0;
    int rc = MPOS_ERR_FORMAT;
    if (req == NULL || p != der + len) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    k = X509_REQ_get0_pubkey(req);
    if (k == NULL || !EVP_PKEY_is_a(k, "EC") ||
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, HSM_EC_PUB_LEN,
                                        &pub_len) != 1 ||
        pub_len != HSM_EC_PUB_LEN || mpos_ec_p256_check_public(pub) != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    X509_REQ_free(req);
    if (rc != MPOS_OK) {
        ERR_clear_error();
        memset(pub, 0, HSM_EC_PUB_LEN);
    }
    return rc;
}

/* One DER X.509 certificate, nothing after it. */
static int trust_anchor_valid(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x;
    int ok;
    if (len == 0 || len > HSM_CERT_MAX_LEN) {
        return 0;
    }
    x = d2i_X509(NULL, &p, (long)len);
    ok = x != NULL && p == der + len;
    X509_free(x);
    ERR_clear_error();
    return ok;
}

static int ca_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    /* FIPS 186-5 6.4.1 with the manufacturer CA's P-256 key. */
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

/* The terminal's initial key: derived from the BDK, or a fresh TMK (also stored under the
 * LMK into resp->tmk). Its check value into resp. */
static int initial_key(hsm_vault *v, const struct hsm_provision_terminal_req *req,
                       struct mpos_provision_key *pk, struct hsm_provision_terminal_resp *resp)
{
    hsm_key bdk;
    hsm_key k;
    struct hsm_key_attr a;
    int rc;
    memset(&bdk, 0, sizeof(bdk));
    memset(&k, 0, sizeof(k));
    memset(&a, 0, sizeof(a));
    memset(pk, 0, sizeof(*pk));
    if (req->key == HSM_PROVISION_TMK) {
        if (req->tmk_algorithm != 'T' && req->tmk_algorithm != '\0' &&
            req->tmk_algorithm != HSM_ALG_SM4) {
            rc = MPOS_ERR_ARG;
            goto exit;
        }
        /* A 2-key TDES TMK for the UnionPay sign-on (hsm_op_mkwk_generate: K0, mode E or B);
         * the vault draws it with odd parity and K1 != K2 (SP 800-67r2 3.3). Or a 16-byte SM4
         * TMK (GB/T 32907), carried in the bundle with the proprietary TR-31 algorithm '4'
         * (lib/provision, MPOS_TR31_EXT_SM4). */
        memcpy(a.usage, "K0", 3);
        a.algorithm = req->tmk_algorithm == HSM_ALG_SM4 ? HSM_ALG_SM4 : 'T';
        a.mode = 'B';
        a.exportability = 'N';
        rc = hsm_key_generate(v, &a, 16, &k);
        if (rc == MPOS_OK) {
            rc = ops_store(v, &k, &resp->tmk);
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
        pk->kind = a.algorithm == HSM_ALG_SM4 ? MPOS_PROVISION_TMK_SM4 : MPOS_PROVISION_TMK;
    } else if (req->key == HSM_PROVISION_DUKPT) {
        /* A BDK derives, nothing else (X9.143 6.3.3 mode X). */
        rc = ops_load(v, &req->bdk, usages_bdk, "AT", 'X', &bdk);
        if (rc != MPOS_OK) {
            goto exit;
        }
        if (bdk.attr.algorithm == 'A' && bdk.attr.dukpt != 2) {
            if (req->id_len != MPOS_DUKPT_AES_IKID_LEN) {
                rc = MPOS_ERR_LENGTH;
                goto exit;
            }
            /* X9.24-3-2017 6.5.3: the initial key of the initial key ID. */
            rc = mpos_dukpt_aes_initial_key(&v->cc, bdk.bytes, bdk.len, req->id, k.bytes);
            k.len = bdk.len;
            k.attr.algorithm = 'A';
            pk->kind = MPOS_PROVISION_AES_DUKPT;
        } else if (bdk.attr.algorithm == 'T' && bdk.attr.dukpt != 1) {
            if (req->id_len != MPOS_DUKPT_TDES_KSN_LEN) {
                rc = MPOS_ERR_LENGTH;
                goto exit;
            }
            /* X9.24-1-2009 A.6: an initial KSN, counter bits zero: the store allocates it so,
             * and the KSN registered must be the one in the bundle. */
            if ((req->id[7] & 0x1Fu) != 0 || req->id[8] != 0 || req->id[9] != 0) {
                rc = MPOS_ERR_KSN;
                goto exit;
            }
            rc = mpos_dukpt_tdes_ipek(&v->cc, bdk.bytes, bdk.len, req->id, k.bytes);
            k.len = MPOS_DUKPT_TDES_KEY_LEN;
            k.attr.algorithm = 'T';
            pk->kind = MPOS_PROVISION_TDES_DUKPT;
        } else {
            rc = MPOS_ERR_USAGE;
            goto exit;
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
        memcpy(pk->id, req->id, req->id_len);
        pk->id_len = req->id_len;
        memcpy(resp->id, req->id, req->id_len);
        resp->id_len = req->id_len;
    } else {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    memcpy(pk->key, k.bytes, k.len);
    pk->key_len = k.len;
    /* X9.24-1:2017 A.3 for AES, the legacy check value for TDES and SM4 (ops_kcv). */
    rc = ops_kcv(v, &k, resp->kcv, &resp->kcv_len);
    resp->kind = pk->kind;
exit:
    hsm_key_clear(&bdk);
    hsm_key_clear(&k);
    if (rc != MPOS_OK) {
        mpos_provision_key_clear(pk);
    }
    return rc;
}

int hsm_op_provision_terminal(hsm_vault *v, const struct hsm_provision_terminal_req *req,
                              struct hsm_provision_terminal_resp *resp)
{
    hsm_key ca;
    struct mpos_provision_key pk;
    struct hsm_cert_sign_req cs_req;
    struct hsm_cert_sign_resp cs_resp;
    struct mpos_provision_cert cert;
    mpos_provision_bundle b;
    mpos_provision_bundle check;
    uint8_t csr[HSM_CERT_MAX_LEN];
    size_t csr_len = 0;
    uint8_t dev_pub[HSM_EC_PUB_LEN];
    uint8_t eph_priv[HSM_EC_PRIV_LEN];
    uint8_t eph_pub[HSM_EC_PUB_LEN];
    uint8_t tk[MPOS_PROVISION_TK_LEN];
    char block[MPOS_PROVISION_KEYBLOCK_MAX_LEN + 1];
    size_t block_len = 0;
    int rc = MPOS_ERR_ARG;
    memset(&ca, 0, sizeof(ca));
    memset(&pk, 0, sizeof(pk));
    memset(&cs_resp, 0, sizeof(cs_resp));
    memset(eph_priv, 0, sizeof(eph_priv));
    memset(tk, 0, sizeof(tk));
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v) || req == NULL || req->ca_cert == NULL || req->csr == NULL ||
        req->ca_cert_len == 0 || req->csr_len == 0 ||
        (req->trust_anchor == NULL && req->trust_anchor_len != 0) ||
        (req->key != HSM_PROVISION_DUKPT && req->key != HSM_PROVISION_TMK)) {
        goto exit;
    }
    if (req->ca_cert_len > HSM_CERT_MAX_LEN || req->csr_len > HSM_CSR_MAX_LEN ||
        req->trust_anchor_len > HSM_CERT_MAX_LEN ||
        (req->key == HSM_PROVISION_DUKPT && req->id_len > HSM_KSN_MAX_LEN)) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    if (memchr(req->serial, '\0', sizeof(req->serial)) == NULL ||
        !mpos_provision_serial_valid(req->serial)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    if (req->trust_anchor_len != 0 &&
        !trust_anchor_valid(req->trust_anchor, req->trust_anchor_len)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    /* Every key argument is checked before any other work. */
    rc = ops_load(v, &req->ca_key, usages_ca, "E", 'S', &ca);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (ca.len != HSM_EC_PRIV_LEN) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    if (req->key == HSM_PROVISION_DUKPT) {
        hsm_key probe;
        rc = ops_load(v, &req->bdk, usages_bdk, "AT", 'X', &probe);
        hsm_key_clear(&probe);
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    /* 1. The device's request: its P-256 key, uncompressed (SEC 1 v2 2.3.3). */
    rc = csr_to_der(req->csr, req->csr_len, csr, sizeof(csr), &csr_len);
    if (rc == MPOS_OK) {
        rc = csr_public_key(csr, csr_len, dev_pub);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 2. Its certificate, signed with the manufacturer CA key (cert.c): the request's
     * self-signature, serialNumber = serial, the CA certificate of this key. */
    memset(&cs_req, 0, sizeof(cs_req));
    cs_req.ca_cert = req->ca_cert;
    cs_req.ca_cert_len = req->ca_cert_len;
    cs_req.csr = csr;
    cs_req.csr_len = csr_len;
    memcpy(cs_req.serial, req->serial, sizeof(cs_req.serial));
    cs_req.not_before = req->not_before;
    cs_req.not_after = req->not_after;
    rc = ops_cert_sign_scalar(ca.bytes, &cs_req, &cs_resp);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The terminal reads it with lib/provision: it must, and find the request's key. */
    if (mpos_provision_cert_parse(cs_resp.cert, cs_resp.cert_len, &cert) != MPOS_OK ||
        memcmp(cert.pub, dev_pub, HSM_EC_PUB_LEN) != 0) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    /* 3. The initial key. */
    rc = initial_key(v, req, &pk, resp);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 4. TK = HKDF-SHA256(ECDH(ephemeral, device key), salt = serial, info = "openmpos TK")
     * (SEC 1 v2 3.3.1, RFC 5869), the ephemeral private key wiped as soon as it has served. */
    rc = mpos_ec_p256_generate(eph_priv, eph_pub);
    if (rc == MPOS_OK) {
        rc = mpos_provision_transport_key(eph_priv, dev_pub, req->serial, tk);
    }
    mpos_cleanse(eph_priv, sizeof(eph_priv));
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 5. The key block under TK (X9.143 version D). */
    rc = mpos_provision_key_wrap(&v->cc, tk, &pk, block, sizeof(block), &block_len);
    mpos_cleanse(tk, sizeof(tk));
    mpos_provision_key_clear(&pk);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 6. The bundle, signed by the CA key over its E2 object. */
    memset(&b, 0, sizeof(b));
    b.kind = resp->kind;
    b.serial = req->serial;
    b.device_cert = cs_resp.cert;
    b.device_cert_len = cs_resp.cert_len;
    b.ca_cert = req->ca_cert;
    b.ca_cert_len = req->ca_cert_len;
    b.trust_anchor = req->trust_anchor_len != 0 ? req->trust_anchor : NULL;
    b.trust_anchor_len = req->trust_anchor_len;
    b.ephemeral_pub = eph_pub;
    b.key_block = block;
    b.key_block_len = block_len;
    rc = mpos_provision_bundle_encode(&b, ca_sign, ca.bytes, resp->bundle, sizeof(resp->bundle),
                                      &resp->bundle_len);
    if (rc == MPOS_OK) {
        rc = mpos_provision_bundle_parse(resp->bundle, resp->bundle_len, &check);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 7. What the store registers. */
    rc = mpos_sha256(cs_resp.cert, cs_resp.cert_len, resp->cert_sha256);
    memcpy(resp->cert_serial, cs_resp.cert_serial, sizeof(resp->cert_serial));
exit:
    hsm_key_clear(&ca);
    mpos_provision_key_clear(&pk);
    mpos_cleanse(eph_priv, sizeof(eph_priv));
    mpos_cleanse(tk, sizeof(tk));
    mpos_cleanse(block, sizeof(block));
    mpos_cleanse(csr, sizeof(csr));
    mpos_cleanse(&cs_resp, sizeof(cs_resp));
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}
