/* mpos-hsmd ops: the manufacturer CA (EC P-256 key pairs, device and CA certificates).
 * OpenSSL's X.509 code is used directly: this runs inside hsmd only, never in lib/. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ops_cert.h"
#include "ops_int.h"

static const char *const usages_ca[] = {"S1", "S0", NULL};

int ops_ec_generate(uint8_t priv[HSM_EC_PRIV_LEN], uint8_t pub[HSM_EC_PUB_LEN])
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *d = NULL;
    size_t pub_len = 0;
    int rc = MPOS_ERR_CRYPTO;
    /* FIPS 186-5 A.2: key pair on P-256 from the default provider's DRBG. */
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        goto exit;
    }
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 ||
        BN_bn2binpad(d, priv, HSM_EC_PRIV_LEN) != HSM_EC_PRIV_LEN) {
        goto exit;
    }
    if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                        HSM_EC_PUB_LEN, &pub_len) != 1 ||
        pub_len != HSM_EC_PUB_LEN || pub[0] != 0x04) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    BN_clear_free(d);
    EVP_PKEY_free(pkey);
    if (rc != MPOS_OK) {
        mpos_cleanse(priv, HSM_EC_PRIV_LEN);
        mpos_cleanse(pub, HSM_EC_PUB_LEN);
    }
    return rc;
}

/* The EVP key of a private scalar, through an RFC 5915 ECPrivateKey (no public key: libcrypto
 * computes it) built in a buffer that is wiped here. */
static EVP_PKEY *ec_private_key(const uint8_t priv[HSM_EC_PRIV_LEN])
{
    /* RFC 5915 section 3: SEQUENCE { version 1, OCTET STRING d, [0] namedCurve prime256v1 } */
    static const uint8_t head[] = {0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20};
    static const uint8_t tail[] = {0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                   0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
    uint8_t der[sizeof(head) + HSM_EC_PRIV_LEN + sizeof(tail)];
    const unsigned char *p = der;
    EVP_PKEY *pkey;
    memcpy(der, head, sizeof(head));
    memcpy(der + sizeof(head), priv, HSM_EC_PRIV_LEN);
    memcpy(der + sizeof(head) + HSM_EC_PRIV_LEN, tail, sizeof(tail));
    pkey = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)sizeof(der));
    MPOS_WIPE_BUFFER(der);
    return pkey;
}

static int is_p256(EVP_PKEY *pk)
{
    char group[32];
    size_t len = 0;
    return pk != NULL && EVP_PKEY_is_a(pk, "EC") &&
           EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          &len) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

/* A NUL-terminated field of cap bytes holding 1 to max characters of the set allowed. */
static int text_valid(const char *s, size_t cap, size_t max, int printable_string)
{
    const char *end = memchr(s, '\0', cap);
    size_t len;
    if (end == NULL) {
        return 0;
    }
    len = (size_t)(end - s);
    if (len == 0 || len > max) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        if (!printable_string) {
            ok = c >= 0x20 && c <= 0x7E;
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* RFC 5280 4.1.2.2: a positive serial of HSM_CERT_SERIAL_LEN bytes (top bit 0, next bit 1 so
 * the DER INTEGER keeps its length). */
static int set_serial(X509 *x, uint8_t serial[HSM_CERT_SERIAL_LEN])
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    int rc = MPOS_ERR_CRYPTO;
    if (mpos_random_bytes(serial, HSM_CERT_SERIAL_LEN) != MPOS_OK) {
        return MPOS_ERR_RNG;
    }
    serial[0] = (uint8_t)((serial[0] & 0x7F) | 0x40);
    bn = BN_bin2bn(serial, HSM_CERT_SERIAL_LEN, NULL);
    if (bn == NULL || (ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        X509_set_serialNumber(x, ai) != 1) {
        goto exit;
    }
    rc = MPOS_OK;
exit:
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return rc;
}

static int set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    if (not_before < 0 || not_after <= not_before ||
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL) {
        return MPOS_ERR_ARG;
    }
    return MPOS_OK;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? MPOS_OK : MPOS_ERR_CRYPTO;
}

static int finish(X509 *x, EVP_PKEY *ca, struct hsm_cert_sign_resp *resp)
{
    unsigned char *p = resp->cert;
    int len;
    if (X509_sign(x, ca, EVP_sha256()) <= 0) {
        return MPOS_ERR_CRYPTO;
    }
    len = i2d_X509(x, NULL);
    if (len <= 0) {
        return MPOS_ERR_CRYPTO;
    }
    if ((size_t)len > sizeof(resp->cert)) {
        return MPOS_ERR_LENGTH;
    }
    if (i2d_X509(x, &p) != len) {
        return MPOS_ERR_CRYPTO;
    }
    resp->cert_len = (size_t)len;
    return MPOS_OK;
}

/* The CA's EVP key of a private scalar; MPOS_ERR_KEY if it is not a P-256 key. */
static int ca_from_scalar(const uint8_t priv[HSM_EC_PRIV_LEN], EVP_PKEY **out)
{
    *out = ec_private_key(priv);
    if (*out == NULL) {
        return MPOS_ERR_KEY;
    }
    if (!is_p256(*out)) {
        EVP_PKEY_free(*out);
        *out = NULL;
        return MPOS_ERR_KEY;
    }
    return MPOS_OK;
}

/* Loads the CA key block (usage S1 or S0, algorithm E, mode S) and runs fn with its scalar. */
static int with_ca_key(hsm_vault *v, const struct hsm_kb_in *kb, const void *req,
                       struct hsm_cert_sign_resp *resp,
                       int (*fn)(const uint8_t *, const void *, struct hsm_cert_sign_resp *))
{
    hsm_key key;
    int rc;
    memset(resp, 0, sizeof(*resp));
    if (!ops_vault_ready(v)) {
        return MPOS_ERR_ARG;
    }
    rc = ops_load(v, kb, usages_ca, "E", 'S', &key);
    if (rc == MPOS_OK) {
        rc = key.len == HSM_EC_PRIV_LEN ? fn(key.bytes, req, resp) : MPOS_ERR_KEY;
    }
    hsm_key_clear(&key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

/* RFC 1035 2.3.1 / RFC 1123 2.1 host name (preferred syntax): labels of 1 to 63 letters,
 * digits and hyphens, not starting or ending with a hyphen, separated by single dots; 1 to 253
 * characters in all. */
static int dns_valid(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);
    size_t len, label = 0;
    if (end == NULL) {
        return 0;
    }
    len = (size_t)(end - s);
    if (len == 0 || len > 253) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return 0;
            }
            label = 0;
            continue;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-') ||
            (c == '-' && label == 0) || ++label > 63) {
            return 0;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

int ops_cert_sign_scalar(const uint8_t priv[HSM_EC_PRIV_LEN], const struct hsm_cert_sign_req *req,
                         struct hsm_cert_sign_resp *resp)
{
    int server;
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    X509_REQ *csr = NULL;
    X509 *x = NULL;
    X509_NAME *subject = NULL;
    EVP_PKEY *dev_key;
    X509V3_CTX ctx;
    const unsigned char *p;
    int rc = MPOS_ERR_ARG;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (priv == NULL || req == NULL || req->ca_cert == NULL || req->csr == NULL ||
        req->ca_cert_len == 0 || req->csr_len == 0 || req->ca_cert_len > HSM_CERT_MAX_LEN ||
        req->csr_len > HSM_CERT_MAX_LEN) {
        goto exit;
    }
    /* The server profile names a host and no serial; the device profile the reverse. */
    server = req->dns[0] != '\0';
    if (server ? !dns_valid(req->dns, sizeof(req->dns)) || req->serial[0] != '\0'
               : !text_valid(req->serial, sizeof(req->serial), HSM_SERIAL_BUF_LEN - 1, 1)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    rc = ca_from_scalar(priv, &ca_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    p = req->ca_cert;
    ca = d2i_X509(NULL, &p, (long)req->ca_cert_len);
    if (ca == NULL || p != req->ca_cert + req->ca_cert_len) {
        goto exit;
    }
    /* The CA certificate must be the CA key's own. */
    if (EVP_PKEY_eq(X509_get0_pubkey(ca), ca_key) != 1) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    p = req->csr;
    csr = d2i_X509_REQ(NULL, &p, (long)req->csr_len);
    if (csr == NULL || p != req->csr + req->csr_len) {
        goto exit;
    }
    /* PKCS#10 (RFC 2986) 4.2: the request is signed by the key it carries. */
    dev_key = X509_REQ_get0_pubkey(csr);
    if (!is_p256(dev_key)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    if (X509_REQ_verify(csr, dev_key) != 1) {
        rc = MPOS_ERR_VERIFY;
        goto exit;
    }
    /* Subject serialNumber (X.520) must be the terminal serial, exactly once. */
    if (!server) {
        X509_NAME *n = X509_REQ_get_subject_name(csr);
        int idx = X509_NAME_get_index_by_NID(n, NID_serialNumber, -1);
        const ASN1_STRING *s;
        size_t slen = strlen(req->serial);
        if (idx < 0 || X509_NAME_get_index_by_NID(n, NID_serialNumber, idx) >= 0) {
            goto exit;
        }
        s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
        if (s == NULL || (size_t)ASN1_STRING_length(s) != slen ||
            memcmp(ASN1_STRING_get0_data(s), req->serial, slen) != 0) {
            rc = MPOS_ERR_VERIFY;
            goto exit;
        }
    }
    rc = MPOS_ERR_CRYPTO;
    x = X509_new();
    subject = X509_NAME_new();
    if (x == NULL || subject == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_NAME_add_entry_by_NID(
            subject, server ? NID_commonName : NID_serialNumber, MBSTRING_ASC,
            (const unsigned char *)(server ? req->dns : req->serial), -1, -1, 0) != 1 ||
        X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
        X509_set_pubkey(x, dev_key) != 1) {
        goto exit;
    }
    rc = set_serial(x, resp->cert_serial);
    if (rc == MPOS_OK) {
        rc = set_validity(x, req->not_before, req->not_after);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* RFC 5280 4.2.1: the extensions of a device (TLS client) certificate, or of the back
     * end's TLS server certificate (RFC 6125: the name is checked against the dNSName SAN; a
     * TLS 1.3 server with an ECDSA key only signs, RFC 8446 4.4.3). */
    X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
    rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_key_usage,
                     server ? "critical,digitalSignature"
                            : "critical,digitalSignature,keyAgreement");
    }
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_ext_key_usage, server ? "serverAuth" : "clientAuth");
    }
    if (rc == MPOS_OK && server) {
        char san[HSM_DNS_BUF_LEN + 4];
        memcpy(san, "DNS:", 4);
        memcpy(san + 4, req->dns, strlen(req->dns) + 1);
        rc = add_ext(x, &ctx, NID_subject_alt_name, san);
    }
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    }
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    if (rc == MPOS_OK) {
        rc = finish(x, ca_key, resp);
    }
exit:
    X509_NAME_free(subject);
    X509_free(x);
    X509_REQ_free(csr);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

int ops_ca_cert_scalar(const uint8_t priv[HSM_EC_PRIV_LEN], const struct hsm_ca_cert_req *req,
                       struct hsm_cert_sign_resp *resp)
{
    EVP_PKEY *ca_key = NULL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    X509V3_CTX ctx;
    int rc = MPOS_ERR_ARG;
    if (resp == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(resp, 0, sizeof(*resp));
    if (priv == NULL || req == NULL) {
        goto exit;
    }
    if (!text_valid(req->common_name, sizeof(req->common_name), sizeof(req->common_name) - 1, 0)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    rc = ca_from_scalar(priv, &ca_key);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_CRYPTO;
    x = X509_new();
    name = X509_NAME_new();
    if (x == NULL || name == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                   (const unsigned char *)req->common_name, -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_set_pubkey(x, ca_key) != 1) {
        goto exit;
    }
    rc = set_serial(x, resp->cert_serial);
    if (rc == MPOS_OK) {
        rc = set_validity(x, req->not_before, req->not_after);
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* RFC 5280 4.2.1.9, 4.2.1.3, 4.2.1.2: a CA that signs end-entity certificates only. */
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (rc == MPOS_OK) {
        rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    }
    if (rc == MPOS_OK) {
        rc = finish(x, ca_key, resp);
    }
exit:
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(ca_key);
    if (rc != MPOS_OK) {
        mpos_cleanse(resp, sizeof(*resp));
    }
    return rc;
}

static int cert_sign_fn(const uint8_t *priv, const void *req, struct hsm_cert_sign_resp *resp)
{
    return ops_cert_sign_scalar(priv, req, resp);
}

static int ca_cert_fn(const uint8_t *priv, const void *req, struct hsm_cert_sign_resp *resp)
{
    return ops_ca_cert_scalar(priv, req, resp);
}

int hsm_op_cert_sign(hsm_vault *v, const struct hsm_cert_sign_req *req,
                     struct hsm_cert_sign_resp *resp)
{
    if (resp == NULL || req == NULL) {
        return MPOS_ERR_ARG;
    }
    return with_ca_key(v, &req->ca_key, req, resp, cert_sign_fn);
}

int hsm_op_ca_cert_create(hsm_vault *v, const struct hsm_ca_cert_req *req,
                          struct hsm_cert_sign_resp *resp)
{
    if (resp == NULL || req == NULL) {
        return MPOS_ERR_ARG;
    }
    return with_ca_key(v, &req->ca_key, req, resp, ca_cert_fn);
}
