/* Unit tests: lib/provision (mpos/provision.h), the terminal side of provisioning.
 *
 * The certificates here are made with OpenSSL's X.509 code, independently of lib/provision: a
 * CA certificate, and device certificates issued from certificate requests that
 * mpos_provision_csr_build wrote and OpenSSL parsed and verified. Bundles are made by a small
 * manufacturer CA written in the test from the module's own encoder, key wrap and the facade
 * (mpos-hsmd's hsm_op_provision_terminal is tested with the real CA in hsm/ops).
 *
 * What must hold (T-UNIQ-1): a bundle opens in the terminal it was made for and returns the
 * key put in; in another terminal it does not (its serial, its certificate, and, below them,
 * its transport key: the key block's MAC fails); every single-bit change of a bundle is
 * refused; a bundle of another CA is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mpos/crypto.h"
#include "mpos/ecc.h"
#include "mpos/kcv.h"
#include "mpos/provision.h"
#include "mpos/tr31.h"
#include "mpos/util.h"
#include "testutil.h"

static mpos_crypto_ctx cc;

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

/* ---- an independent CA (OpenSSL X.509) -------------------------------------------------- */

struct ca {
    uint8_t priv[32];
    uint8_t pub[65];
    EVP_PKEY *key;
    uint8_t cert[MPOS_PROVISION_CERT_MAX_LEN];
    size_t cert_len;
    X509 *x;
};

static EVP_PKEY *evp_from_scalar(const uint8_t priv[32])
{
    static const uint8_t head[] = {0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20};
    static const uint8_t tail[] = {0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                   0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
    uint8_t der[sizeof(head) + 32 + sizeof(tail)];
    const unsigned char *p = der;
    memcpy(der, head, sizeof(head));
    memcpy(der + sizeof(head), priv, 32);
    memcpy(der + sizeof(head) + 32, tail, sizeof(tail));
    EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)sizeof(der));
    assert_non_null(k);
    return k;
}

static void x509_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

static size_t x509_der(X509 *x, uint8_t *out, size_t cap)
{
    unsigned char *p = out;
    int len = i2d_X509(x, NULL);
    assert_true(len > 0 && (size_t)len <= cap);
    assert_int_equal(i2d_X509(x, &p), len);
    return (size_t)len;
}

static void ca_make(struct ca *ca, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    memset(ca, 0, sizeof(*ca));
    assert_int_equal(mpos_ec_p256_generate(ca->priv, ca->pub), MPOS_OK);
    ca->key = evp_from_scalar(ca->priv);
    ca->x = X509_new();
    assert_int_equal(X509_set_version(ca->x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(ca->x), 1), 1);
    assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(ca->x, n), 1);
    assert_int_equal(X509_set_issuer_name(ca->x, n), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(ca->x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(ca->x), 3600L * 24 * 3650));
    assert_int_equal(X509_set_pubkey(ca->x, ca->key), 1);
    x509_ext(ca->x, ca->x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    x509_ext(ca->x, ca->x, NID_key_usage, "critical,keyCertSign,cRLSign");
    x509_ext(ca->x, ca->x, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(ca->x, ca->key, EVP_sha256()) > 0);
    ca->cert_len = x509_der(ca->x, ca->cert, sizeof(ca->cert));
    X509_NAME_free(n);
}

static void ca_free(struct ca *ca)
{
    X509_free(ca->x);
    EVP_PKEY_free(ca->key);
    mpos_cleanse(ca->priv, sizeof(ca->priv));
}

/* Issues a device certificate from a CSR (DER), checking the request with OpenSSL first. */
static size_t ca_issue(const struct ca *ca, const uint8_t *csr, size_t csr_len, const char *serial,
                       uint8_t *out, size_t cap)
{
    const unsigned char *p = csr;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)csr_len);
    assert_non_null(req);
    assert_ptr_equal(p, csr + csr_len);
    EVP_PKEY *dev = X509_REQ_get0_pubkey(req);
    assert_int_equal(X509_REQ_verify(req, dev), 1);
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234), 1);
    assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_serialNumber, MBSTRING_ASC,
                                                (const unsigned char *)serial, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca->x)), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365));
    assert_int_equal(X509_set_pubkey(x, dev), 1);
    x509_ext(x, ca->x, NID_basic_constraints, "critical,CA:FALSE");
    x509_ext(x, ca->x, NID_key_usage, "critical,digitalSignature,keyAgreement");
    x509_ext(x, ca->x, NID_ext_key_usage, "clientAuth");
    x509_ext(x, ca->x, NID_subject_key_identifier, "hash");
    x509_ext(x, ca->x, NID_authority_key_identifier, "keyid:always");
    assert_true(X509_sign(x, ca->key, EVP_sha256()) > 0);
    size_t len = x509_der(x, out, cap);
    X509_NAME_free(n);
    X509_free(x);
    X509_REQ_free(req);
    return len;
}

/* ---- a terminal and its bundle ----------------------------------------------------------- */

struct terminal {
    char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    uint8_t priv[32];
    uint8_t pub[65];
    uint8_t cert[MPOS_PROVISION_CERT_MAX_LEN];
    size_t cert_len;
};

static void terminal_make(struct terminal *t, const char *serial, const struct ca *ca)
{
    uint8_t csr[MPOS_PROVISION_CSR_MAX_LEN];
    size_t csr_len = 0;
    memset(t, 0, sizeof(*t));
    snprintf(t->serial, sizeof(t->serial), "%s", serial);
    assert_int_equal(mpos_provision_device_key_generate(t->priv, t->pub), MPOS_OK);
    assert_int_equal(mpos_provision_csr_build(t->priv, t->serial, csr, sizeof(csr), &csr_len),
                     MPOS_OK);
    t->cert_len = ca_issue(ca, csr, csr_len, t->serial, t->cert, sizeof(t->cert));
}

static int sign_with(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

/* What a manufacturer CA does (docs/provisioning.md): ephemeral key, TK, key block, bundle. */
static size_t make_bundle(const struct ca *signer, const struct ca *ca_in_bundle,
                          const struct terminal *t, const struct mpos_provision_key *key,
                          const uint8_t *anchor, size_t anchor_len, uint8_t *out, size_t cap)
{
    uint8_t eph_priv[32], eph_pub[65], tk[32];
    char block[MPOS_PROVISION_KEYBLOCK_MAX_LEN + 1];
    size_t block_len = 0, len = 0;
    mpos_provision_bundle b;
    assert_int_equal(mpos_ec_p256_generate(eph_priv, eph_pub), MPOS_OK);
    assert_int_equal(mpos_provision_transport_key(eph_priv, t->pub, t->serial, tk), MPOS_OK);
    mpos_cleanse(eph_priv, sizeof(eph_priv));
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, key, block, sizeof(block), &block_len),
                     MPOS_OK);
    mpos_cleanse(tk, sizeof(tk));
    memset(&b, 0, sizeof(b));
    b.kind = key->kind;
    b.serial = t->serial;
    b.device_cert = t->cert;
    b.device_cert_len = t->cert_len;
    b.ca_cert = ca_in_bundle->cert;
    b.ca_cert_len = ca_in_bundle->cert_len;
    b.trust_anchor = anchor;
    b.trust_anchor_len = anchor_len;
    b.ephemeral_pub = eph_pub;
    b.key_block = block;
    b.key_block_len = block_len;
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, (void *)signer->priv, out, cap, &len), MPOS_OK);
    return len;
}

static void aes_key(struct mpos_provision_key *k, size_t len, uint8_t seed)
{
    memset(k, 0, sizeof(*k));
    k->kind = MPOS_PROVISION_AES_DUKPT;
    for (size_t i = 0; i < len; i++) {
        k->key[i] = (uint8_t)(seed + 7 * i);
    }
    k->key_len = len;
    k->id_len = tu_hex("1234567890123456", k->id, sizeof(k->id));
}

static struct ca CA, CA2;
static struct terminal A, B, A_IMPOSTOR;

static int group_setup(void **state)
{
    (void)state;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    return 0;
}

static void fleet(void)
{
    static int done;
    if (done) {
        return;
    }
    ca_make(&CA, "openmpos test manufacturer CA");
    ca_make(&CA2, "another CA");
    terminal_make(&A, "MP0000000001", &CA);
    terminal_make(&B, "MP0000000002", &CA);
    /* Another device that was (wrongly) certified under A's serial. */
    terminal_make(&A_IMPOSTOR, "MP0000000001", &CA);
    done = 1;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_serial(void **state)
{
    (void)state;
    assert_true(mpos_provision_serial_valid("MP0001234567"));
    assert_true(mpos_provision_serial_valid("a-Z-0"));
    assert_true(mpos_provision_serial_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")); /* 32 */
    assert_false(mpos_provision_serial_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"));
    assert_false(mpos_provision_serial_valid(""));
    assert_false(mpos_provision_serial_valid("MP 1"));
    assert_false(mpos_provision_serial_valid("MP_1"));
    assert_false(mpos_provision_serial_valid("MP.1"));
    assert_false(mpos_provision_serial_valid(NULL));
}

static void test_csr(void **state)
{
    uint8_t priv[32], pub[65], csr[MPOS_PROVISION_CSR_MAX_LEN];
    size_t len = 0;
    (void)state;
    assert_int_equal(mpos_provision_device_key_generate(priv, pub), MPOS_OK);
    assert_int_equal(
        mpos_provision_csr_build(priv, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", csr, sizeof(csr), &len),
        MPOS_OK);
    assert_true(len <= MPOS_PROVISION_CSR_MAX_LEN);
    /* OpenSSL reads it, the self-signature verifies, the key and serial are ours. */
    const unsigned char *p = csr;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_ptr_equal(p, csr + len);
    EVP_PKEY *k = X509_REQ_get0_pubkey(req);
    assert_int_equal(X509_REQ_verify(req, k), 1);
    uint8_t got[65];
    size_t got_len = 0;
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(k, "encoded-pub-key", got, sizeof(got), &got_len), 1);
    assert_int_equal(got_len, 65);
    assert_memory_equal(got, pub, 65);
    X509_NAME *n = X509_REQ_get_subject_name(req);
    assert_int_equal(X509_NAME_entry_count(n), 1);
    int idx = X509_NAME_get_index_by_NID(n, NID_serialNumber, -1);
    assert_int_equal(idx, 0);
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
    assert_int_equal(ASN1_STRING_type(s), V_ASN1_PRINTABLESTRING);
    assert_int_equal(ASN1_STRING_length(s), 32);
    assert_memory_equal(ASN1_STRING_get0_data(s), "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", 32);
    assert_int_equal(X509_REQ_get_version(req), 0);
    X509_REQ_free(req);
    /* Refusals. */
    assert_int_equal(mpos_provision_csr_build(priv, "MP 1", csr, sizeof(csr), &len),
                     MPOS_ERR_FORMAT);
    assert_int_equal(len, 0);
    assert_int_equal(mpos_provision_csr_build(priv, "MP1", csr, 100, &len), MPOS_ERR_LENGTH);
    assert_true(all_zero(csr, 100));
    memset(priv, 0, sizeof(priv));
    assert_int_equal(mpos_provision_csr_build(priv, "MP1", csr, sizeof(csr), &len), MPOS_ERR_KEY);
    assert_int_equal(mpos_provision_csr_build(NULL, "MP1", csr, sizeof(csr), &len), MPOS_ERR_ARG);
}

static void test_cert_parse(void **state)
{
    struct mpos_provision_cert c;
    uint8_t buf[MPOS_PROVISION_CERT_MAX_LEN + 1];
    (void)state;
    fleet();
    assert_int_equal(mpos_provision_cert_parse(A.cert, A.cert_len, &c), MPOS_OK);
    assert_memory_equal(c.pub, A.pub, 65);
    assert_non_null(c.serial);
    assert_int_equal(c.serial_len, strlen(A.serial));
    assert_memory_equal(c.serial, A.serial, c.serial_len);
    assert_int_equal(mpos_ecdsa_p256_verify(CA.pub, c.tbs, c.tbs_len, c.sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(CA2.pub, c.tbs, c.tbs_len, c.sig), MPOS_ERR_VERIFY);
    /* The issuer is the CA's subject, byte for byte; OpenSSL agrees on the TBS. */
    struct mpos_provision_cert cac;
    assert_int_equal(mpos_provision_cert_parse(CA.cert, CA.cert_len, &cac), MPOS_OK);
    assert_memory_equal(cac.pub, CA.pub, 65);
    assert_null(cac.serial);
    assert_int_equal(c.issuer_len, cac.subject_len);
    assert_memory_equal(c.issuer, cac.subject, c.issuer_len);
    {
        const unsigned char *p = A.cert;
        X509 *x = d2i_X509(NULL, &p, (long)A.cert_len);
        unsigned char *tbs = NULL;
        int tl = i2d_re_X509_tbs(x, &tbs);
        assert_int_equal((size_t)tl, c.tbs_len);
        assert_memory_equal(tbs, c.tbs, c.tbs_len);
        OPENSSL_free(tbs);
        X509_free(x);
    }
    /* Every truncation and one trailing byte are refused. */
    memcpy(buf, A.cert, A.cert_len);
    for (size_t l = 1; l < A.cert_len; l++) {
        assert_int_equal(mpos_provision_cert_parse(buf, l, &c), MPOS_ERR_FORMAT);
    }
    buf[A.cert_len] = 0;
    assert_int_equal(mpos_provision_cert_parse(buf, A.cert_len + 1, &c), MPOS_ERR_FORMAT);
    assert_true(all_zero(&c, sizeof(c)));
    /* Every bit flip: refused, or read to something other than the original. */
    for (size_t i = 0; i < 8 * A.cert_len; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rc = mpos_provision_cert_parse(buf, A.cert_len, &c);
        if (rc == MPOS_OK) {
            int same = memcmp(c.pub, A.pub, 65) == 0 &&
                       mpos_ecdsa_p256_verify(CA.pub, c.tbs, c.tbs_len, c.sig) == MPOS_OK;
            assert_false(same);
        }
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_int_equal(mpos_provision_cert_parse(A.cert, 0, &c), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_provision_cert_parse(NULL, 10, &c), MPOS_ERR_ARG);
}

static void test_key_wrap(void **state)
{
    uint8_t tk[32], tk2[32];
    char block[MPOS_PROVISION_KEYBLOCK_MAX_LEN + 1];
    size_t len = 0, len16 = 0;
    struct mpos_provision_key k, out;
    (void)state;
    assert_int_equal(mpos_random_bytes(tk, sizeof(tk)), MPOS_OK);
    memcpy(tk2, tk, sizeof(tk));
    tk2[31] ^= 1;
    /* AES DUKPT, each key length; the blocks are one length (key-length obfuscation). */
    for (size_t kl = 16; kl <= 32; kl += 8) {
        aes_key(&k, kl, 0x30);
        assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len), MPOS_OK);
        if (kl == 16) {
            len16 = len;
            assert_memory_equal(block + 5, "B1AX00N02", 9); /* IK and PB */
        }
        assert_int_equal(len, len16);
        assert_int_equal(
            mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_AES_DUKPT, block, len, &out),
            MPOS_OK);
        assert_int_equal(out.key_len, kl);
        assert_memory_equal(out.key, k.key, kl);
        assert_int_equal(out.id_len, 8);
        assert_memory_equal(out.id, k.id, 8);
        assert_int_equal(out.kcv_len, 0);
        /* Another TK: the MAC fails. Another kind: the header is refused. */
        assert_int_equal(
            mpos_provision_key_unwrap(&cc, tk2, MPOS_PROVISION_AES_DUKPT, block, len, &out),
            MPOS_ERR_VERIFY);
        assert_true(all_zero(&out, sizeof(out)));
        assert_int_equal(
            mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TDES_DUKPT, block, len, &out),
            MPOS_ERR_FORMAT);
        assert_true(all_zero(&out, sizeof(out)));
    }
    /* TDES DUKPT: IPEK and initial KSN; a KSN with counter bits set is refused. */
    memset(&k, 0, sizeof(k));
    k.kind = MPOS_PROVISION_TDES_DUKPT;
    k.key_len = tu_hex("6AC292FAA1315B4D858AB3A3D7D5933A", k.key, sizeof(k.key));
    k.id_len = tu_hex("FFFF9876543210E00000", k.id, sizeof(k.id));
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len), MPOS_OK);
    assert_non_null(strstr(block, "KS18FFFF9876543210E00000"));
    assert_int_equal(
        mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TDES_DUKPT, block, len, &out), MPOS_OK);
    assert_memory_equal(out.key, k.key, 16);
    assert_int_equal(out.id_len, 10);
    assert_memory_equal(out.id, k.id, 10);
    k.id[9] = 0x01;
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len),
                     MPOS_ERR_KSN);
    assert_true(all_zero(block, sizeof(block)));
    k.id[9] = 0x00;
    k.id[7] = 0xE1;
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len),
                     MPOS_ERR_KSN);
    /* TMK with its legacy check value in KC. */
    memset(&k, 0, sizeof(k));
    k.kind = MPOS_PROVISION_TMK;
    k.key_len = tu_hex("0123456789ABCDEFFEDCBA9876543210", k.key, sizeof(k.key));
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len), MPOS_OK);
    /* Legacy KCV of 0123456789ABCDEFFEDCBA9876543210: 08D7B4 (E(K, 0) = 08D7B4FB...). */
    assert_non_null(strstr(block, "K0TD00N0200KC0C0008D7B4"));
    assert_int_equal(mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TMK, block, len, &out),
                     MPOS_OK);
    assert_memory_equal(out.key, k.key, 16);
    assert_int_equal(out.kcv_len, 3);
    uint8_t want_kcv[3];
    tu_hex("08D7B4", want_kcv, 3);
    assert_memory_equal(out.kcv, want_kcv, 3);
    assert_int_equal(out.id_len, 0);
    /* SM4 TMK: the proprietary algorithm '4' (MPOS_TR31_EXT_SM4), KC = its legacy SM4 check
     * value; opened only as that kind, and only under its own TK. */
    {
        char sm4_block[MPOS_PROVISION_KEYBLOCK_MAX_LEN + 1];
        size_t sm4_len = 0;
        uint8_t sm4_kcv[3], other_tk[MPOS_PROVISION_TK_LEN];
        k.kind = MPOS_PROVISION_TMK_SM4;
        assert_int_equal(
            mpos_provision_key_wrap(&cc, tk, &k, sm4_block, sizeof(sm4_block), &sm4_len), MPOS_OK);
        assert_non_null(strstr(sm4_block, "K04D00N0200KC0C00"));
        assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_SM4, MPOS_KCV_LEGACY, k.key, 16, sm4_kcv,
                                          sizeof(sm4_kcv)),
                         MPOS_OK);
        assert_int_equal(
            mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TMK_SM4, sm4_block, sm4_len, &out),
            MPOS_OK);
        assert_int_equal(out.kind, MPOS_PROVISION_TMK_SM4);
        assert_memory_equal(out.key, k.key, 16);
        assert_memory_equal(out.kcv, sm4_kcv, 3);
        assert_int_not_equal(
            mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TMK, sm4_block, sm4_len, &out),
            MPOS_OK);
        assert_int_not_equal(
            mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TMK_SM4, block, len, &out), MPOS_OK);
        memcpy(other_tk, tk, sizeof(other_tk));
        other_tk[0] ^= 1;
        assert_int_equal(mpos_provision_key_unwrap(&cc, other_tk, MPOS_PROVISION_TMK_SM4, sm4_block,
                                                   sm4_len, &out),
                         MPOS_ERR_VERIFY);
        k.kind = MPOS_PROVISION_TMK;
    }
    /* Wrong lengths refused. */
    k.key_len = 24;
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len),
                     MPOS_ERR_KEY);
    k.key_len = 16;
    k.id_len = 8;
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len),
                     MPOS_ERR_KEY);
    k.kind = (enum mpos_provision_kind)9;
    assert_int_equal(mpos_provision_key_wrap(&cc, tk, &k, block, sizeof(block), &len),
                     MPOS_ERR_ARG);

    /* Authentic blocks under the right TK with any other header are refused: exportable,
     * another usage or mode, a missing or extra optional block, a TMK whose KC is wrong. */
    static const struct {
        const char *header;
        const char *key_hex;
        enum mpos_provision_kind kind;
        int want;
    } other[] = {
        {"D0000B1AX00E0100IK141234567890123456", "00112233445566778899AABBCCDDEEFF",
         MPOS_PROVISION_AES_DUKPT, MPOS_ERR_FORMAT},
        {"D0000B1AN00N0100IK141234567890123456", "00112233445566778899AABBCCDDEEFF",
         MPOS_PROVISION_AES_DUKPT, MPOS_ERR_FORMAT},
        {"D0000B1AX01N0100IK141234567890123456", "00112233445566778899AABBCCDDEEFF",
         MPOS_PROVISION_AES_DUKPT, MPOS_ERR_FORMAT},
        {"D0000B1AX00N0110IK141234567890123456", "00112233445566778899AABBCCDDEEFF",
         MPOS_PROVISION_AES_DUKPT, MPOS_ERR_FORMAT},
        {"D0000B1AX00N0000", "00112233445566778899AABBCCDDEEFF", MPOS_PROVISION_AES_DUKPT,
         MPOS_ERR_FORMAT},
        {"D0000B1AX00N0200IK141234567890123456KS18FFFF9876543210E00000",
         "00112233445566778899AABBCCDDEEFF", MPOS_PROVISION_AES_DUKPT, MPOS_ERR_FORMAT},
        {"D0000B1TX00N0100KS18FFFF9876543210E00000",
         "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", MPOS_PROVISION_TDES_DUKPT,
         MPOS_ERR_KEY},
        {"D0000B1TX00N0100KS18FFFF9876543210E00001", "0123456789ABCDEFFEDCBA9876543210",
         MPOS_PROVISION_TDES_DUKPT, MPOS_ERR_KSN},
        {"D0000K0TB00N0100KC0C0008D7B4", "0123456789ABCDEFFEDCBA9876543210", MPOS_PROVISION_TMK,
         MPOS_ERR_FORMAT},
        {"D0000K0TD00N0100KC0C0008D7B5", "0123456789ABCDEFFEDCBA9876543210", MPOS_PROVISION_TMK,
         MPOS_ERR_VERIFY},
        {"D0000K0TD00N0100KC10010102030405", "0123456789ABCDEFFEDCBA9876543210", MPOS_PROVISION_TMK,
         MPOS_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        uint8_t key[32];
        size_t kl = tu_hex(other[i].key_hex, key, sizeof(key));
        assert_int_equal(mpos_tr31_wrap(&cc, tk, 32, other[i].header, strlen(other[i].header), key,
                                        kl, NULL, 0, block, sizeof(block), &len),
                         MPOS_OK);
        int rc = mpos_provision_key_unwrap(&cc, tk, other[i].kind, block, len, &out);
        if (rc != other[i].want) {
            print_message("header %s: %d\n", other[i].header, rc);
        }
        assert_int_equal(rc, other[i].want);
        assert_true(all_zero(&out, sizeof(out)));
    }
    assert_int_equal(mpos_provision_key_unwrap(&cc, tk, MPOS_PROVISION_TMK, block, 0, &out),
                     MPOS_ERR_LENGTH);
    mpos_cleanse(tk, sizeof(tk));
}

static void test_transport_key(void **state)
{
    uint8_t e[32], q[65], t1[32], t2[32], t3[32];
    (void)state;
    fleet();
    assert_int_equal(mpos_ec_p256_generate(e, q), MPOS_OK);
    /* Both ends agree; another device key, or another serial, gives another TK. */
    assert_int_equal(mpos_provision_transport_key(e, A.pub, A.serial, t1), MPOS_OK);
    assert_int_equal(mpos_provision_transport_key(A.priv, q, A.serial, t2), MPOS_OK);
    assert_memory_equal(t1, t2, 32);
    assert_int_equal(mpos_provision_transport_key(B.priv, q, A.serial, t3), MPOS_OK);
    assert_memory_not_equal(t1, t3, 32);
    assert_int_equal(mpos_provision_transport_key(A.priv, q, B.serial, t3), MPOS_OK);
    assert_memory_not_equal(t1, t3, 32);
    /* It is HKDF-SHA256(salt = serial, ECDH, "openmpos TK"), composed here. */
    uint8_t z[32];
    assert_int_equal(mpos_ecdh_p256(A.priv, q, z), MPOS_OK);
    assert_int_equal(mpos_hkdf_sha256((const uint8_t *)A.serial, strlen(A.serial), z, 32,
                                      (const uint8_t *)"openmpos TK", 11, t3, 32),
                     MPOS_OK);
    assert_memory_equal(t1, t3, 32);
    assert_int_equal(mpos_provision_transport_key(A.priv, q, "MP 1", t3), MPOS_ERR_FORMAT);
    assert_true(all_zero(t3, 32));
    q[64] ^= 1;
    assert_int_equal(mpos_provision_transport_key(A.priv, q, A.serial, t3), MPOS_ERR_KEY);
    mpos_cleanse(e, sizeof(e));
}

static void test_bundle_format(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN + 1];
    struct mpos_provision_key k;
    mpos_provision_bundle b;
    size_t len;
    (void)state;
    fleet();
    aes_key(&k, 16, 1);
    /* With a trust anchor (here: CA2's certificate stands for the back end's). */
    len = make_bundle(&CA, &CA, &A, &k, CA2.cert, CA2.cert_len, buf, sizeof(buf));
    assert_int_equal(buf[0], 0xE1);
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_OK);
    assert_int_equal(b.version, 1);
    assert_int_equal(b.sig_alg, 1);
    assert_int_equal(b.kind, MPOS_PROVISION_AES_DUKPT);
    assert_int_equal(b.serial_len, strlen(A.serial));
    assert_memory_equal(b.serial, A.serial, b.serial_len);
    assert_int_equal(b.device_cert_len, A.cert_len);
    assert_memory_equal(b.device_cert, A.cert, A.cert_len);
    assert_int_equal(b.ca_cert_len, CA.cert_len);
    assert_int_equal(b.trust_anchor_len, CA2.cert_len);
    assert_memory_equal(b.trust_anchor, CA2.cert, CA2.cert_len);
    assert_int_equal(b.ephemeral_pub[0], 0x04);
    assert_int_equal(b.key_block[0], 'D');
    assert_int_equal(mpos_ecdsa_p256_verify(CA.pub, b.signed_part, b.signed_len, b.signature),
                     MPOS_OK);
    assert_int_equal(b.signed_part[0], 0xE2);
    /* Every truncation, and a trailing byte, is refused. */
    for (size_t l = 0; l < len; l++) {
        assert_true(mpos_provision_bundle_parse(buf, l, &b) < 0);
    }
    buf[len] = 0x00;
    assert_int_equal(mpos_provision_bundle_parse(buf, len + 1, &b), MPOS_ERR_FORMAT);
    assert_true(all_zero(&b, sizeof(b)));
    /* Without the trust anchor. */
    len = make_bundle(&CA, &CA, &A, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_OK);
    assert_null(b.trust_anchor);
    assert_int_equal(b.trust_anchor_len, 0);
    /* Version 2 and signature algorithm SM2 are not read. The first fields: E1 82 LL LL
     * E2 82 LL LL C1 01 01 C2 01 01. */
    assert_memory_equal(buf + 8, "\xC1\x01\x01\xC2\x01\x01", 6);
    buf[10] = 0x02;
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_ERR_UNSUPPORTED);
    buf[10] = 0x01;
    buf[13] = MPOS_PROVISION_SIG_SM2;
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_ERR_UNSUPPORTED);
    buf[13] = 0x01;
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_OK);
    /* Size bounds. */
    assert_int_equal(mpos_provision_bundle_parse(buf, MPOS_PROVISION_BUNDLE_MAX_LEN + 1, &b),
                     MPOS_ERR_LENGTH);
    assert_int_equal(mpos_provision_bundle_parse(buf, 0, &b), MPOS_ERR_LENGTH);

    /* The encoder refuses what the parser would refuse, and a buffer too small. */
    uint8_t eph[65];
    memset(eph, 0, sizeof(eph));
    memset(&b, 0, sizeof(b));
    b.kind = MPOS_PROVISION_AES_DUKPT;
    b.serial = A.serial;
    b.device_cert = A.cert;
    b.device_cert_len = A.cert_len;
    b.ca_cert = CA.cert;
    b.ca_cert_len = CA.cert_len;
    b.ephemeral_pub = eph;
    b.key_block = "D0000B1AX00N0000";
    b.key_block_len = 16;
    size_t out_len = 1;
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, sizeof(buf), &out_len),
        MPOS_ERR_FORMAT); /* ephemeral key not 04 || ... */
    assert_int_equal(out_len, 0);
    eph[0] = 0x04;
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, sizeof(buf), &out_len), MPOS_OK);
    assert_int_equal(mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, 100, &out_len),
                     MPOS_ERR_LENGTH);
    assert_true(all_zero(buf, 100));
    b.serial = "MP_1";
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, sizeof(buf), &out_len),
        MPOS_ERR_FORMAT);
    b.serial = A.serial;
    b.device_cert_len = A.cert_len - 1;
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, sizeof(buf), &out_len),
        MPOS_ERR_FORMAT);
    b.device_cert_len = A.cert_len;
    b.key_block = "B0000B1AX00N0000";
    assert_int_equal(
        mpos_provision_bundle_encode(&b, sign_with, CA.priv, buf, sizeof(buf), &out_len),
        MPOS_ERR_FORMAT);
}

static void test_open_a_not_b(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN];
    struct mpos_provision_key k, out;
    mpos_provision_bundle view, b;
    uint8_t tk_a[32], tk_b[32], eph[65];
    size_t len;
    (void)state;
    fleet();
    aes_key(&k, 32, 0x44);
    len = make_bundle(&CA, &CA, &A, &k, CA2.cert, CA2.cert_len, buf, sizeof(buf));
    /* A opens it: the key, its ID, the certificate and the trust anchor. */
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, &view, &out),
                     MPOS_OK);
    assert_int_equal(out.kind, MPOS_PROVISION_AES_DUKPT);
    assert_int_equal(out.key_len, 32);
    assert_memory_equal(out.key, k.key, 32);
    assert_int_equal(out.id_len, 8);
    assert_memory_equal(out.id, k.id, 8);
    assert_int_equal(view.device_cert_len, A.cert_len);
    assert_memory_equal(view.device_cert, A.cert, A.cert_len);
    assert_int_equal(view.trust_anchor_len, CA2.cert_len);
    /* B, with its own serial: not for it. */
    memset(&view, 0xAA, sizeof(view));
    assert_int_equal(mpos_provision_open(&cc, B.priv, B.serial, CA.pub, buf, len, &view, &out),
                     MPOS_ERR_VERIFY);
    assert_true(all_zero(&out, sizeof(out)));
    assert_true(all_zero(&view, sizeof(view)));
    /* B claiming A's serial, and a device certified under A's serial with another key: the
     * certificate's key is not theirs. */
    assert_int_equal(mpos_provision_open(&cc, B.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    assert_int_equal(
        mpos_provision_open(&cc, A_IMPOSTOR.priv, A.serial, CA.pub, buf, len, NULL, &out),
        MPOS_ERR_VERIFY);
    assert_true(all_zero(&out, sizeof(out)));
    /* Below the certificate check: B's private key derives another TK from the bundle's
     * ephemeral key, and the key block's MAC fails under it. */
    assert_int_equal(mpos_provision_bundle_parse(buf, len, &b), MPOS_OK);
    memcpy(eph, b.ephemeral_pub, 65);
    assert_int_equal(mpos_provision_transport_key(A.priv, eph, A.serial, tk_a), MPOS_OK);
    assert_int_equal(mpos_provision_transport_key(B.priv, eph, A.serial, tk_b), MPOS_OK);
    assert_memory_not_equal(tk_a, tk_b, 32);
    assert_int_equal(
        mpos_provision_key_unwrap(&cc, tk_b, b.kind, b.key_block, b.key_block_len, &out),
        MPOS_ERR_VERIFY);
    assert_int_equal(mpos_provision_transport_key(A_IMPOSTOR.priv, eph, A.serial, tk_b), MPOS_OK);
    assert_int_equal(
        mpos_provision_key_unwrap(&cc, tk_b, b.kind, b.key_block, b.key_block_len, &out),
        MPOS_ERR_VERIFY);
    assert_int_equal(
        mpos_provision_key_unwrap(&cc, tk_a, b.kind, b.key_block, b.key_block_len, &out), MPOS_OK);
    assert_memory_equal(out.key, k.key, 32);
    /* A bundle made for B opens in B, not in A. */
    len = make_bundle(&CA, &CA, &B, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, B.priv, B.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    assert_int_equal(mpos_provision_open(&cc, A.priv, B.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    mpos_provision_key_clear(&out);
    mpos_cleanse(tk_a, sizeof(tk_a));
    mpos_cleanse(tk_b, sizeof(tk_b));
}

static void test_open_bit_flips(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN];
    struct mpos_provision_key k, out;
    size_t len, refused = 0, step = tu_scale();
    (void)state;
    fleet();
    aes_key(&k, 16, 0x10);
    len = make_bundle(&CA, &CA, &A, &k, CA2.cert, CA2.cert_len, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    /* Every single-bit change (every step-th under sanitizers) is refused, most by the
     * signature, the framing bytes by the parser. */
    for (size_t i = 0; i < 8 * len; i += step) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rc = mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out);
        if (rc >= 0) {
            print_message("flip of bit %zu of byte %zu accepted\n", i % 8, i / 8);
        }
        assert_true(rc < 0);
        assert_true(all_zero(&out, sizeof(out)));
        refused++;
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_int_equal(refused, (8 * len + step - 1) / step);
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    assert_memory_equal(out.key, k.key, 16);
    mpos_provision_key_clear(&out);
}

static void test_open_other_ca(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN];
    struct mpos_provision_key k, out;
    struct terminal a2;
    size_t len;
    (void)state;
    fleet();
    aes_key(&k, 16, 0x20);
    /* Signed by another CA, everything else genuine. */
    len = make_bundle(&CA2, &CA, &A, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    /* Wholly another CA's (its certificate, a device certificate it issued to A's key). */
    memcpy(&a2, &A, sizeof(a2));
    {
        uint8_t csr[MPOS_PROVISION_CSR_MAX_LEN];
        size_t csr_len = 0;
        assert_int_equal(mpos_provision_csr_build(A.priv, A.serial, csr, sizeof(csr), &csr_len),
                         MPOS_OK);
        a2.cert_len = ca_issue(&CA2, csr, csr_len, A.serial, a2.cert, sizeof(a2.cert));
    }
    len = make_bundle(&CA2, &CA2, &a2, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA2.pub, buf, len, NULL, &out),
                     MPOS_OK); /* it is well formed: under its own CA it opens */
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    /* Signed by our CA but carrying the other CA's certificate, or a device certificate the
     * other CA issued: refused at the certificates. */
    len = make_bundle(&CA, &CA2, &A, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    len = make_bundle(&CA, &CA, &a2, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_VERIFY);
    assert_true(all_zero(&out, sizeof(out)));
    /* A trusted key that is not a point is the caller's error. */
    uint8_t bad[65];
    memcpy(bad, CA.pub, 65);
    bad[64] ^= 1;
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, bad, buf, len, NULL, &out),
                     MPOS_ERR_KEY);
}

static void test_open_kinds(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN];
    struct mpos_provision_key k, out;
    size_t len;
    (void)state;
    fleet();
    /* TDES DUKPT. */
    memset(&k, 0, sizeof(k));
    k.kind = MPOS_PROVISION_TDES_DUKPT;
    k.key_len = tu_hex("6AC292FAA1315B4D858AB3A3D7D5933A", k.key, sizeof(k.key));
    k.id_len = tu_hex("FFFF9876543210E00000", k.id, sizeof(k.id));
    len = make_bundle(&CA, &CA, &A, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    assert_int_equal(out.kind, MPOS_PROVISION_TDES_DUKPT);
    assert_memory_equal(out.key, k.key, 16);
    assert_memory_equal(out.id, k.id, 10);
    /* TMK. */
    memset(&k, 0, sizeof(k));
    k.kind = MPOS_PROVISION_TMK;
    k.key_len = tu_hex("0123456789ABCDEFFEDCBA9876543210", k.key, sizeof(k.key));
    len = make_bundle(&CA, &CA, &A, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    assert_int_equal(out.kind, MPOS_PROVISION_TMK);
    assert_memory_equal(out.key, k.key, 16);
    assert_int_equal(out.kcv_len, 3);
    assert_int_equal(
        mpos_kcv_verify(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, out.key, 16, out.kcv, 3), MPOS_OK);
    /* Argument refusals. */
    assert_int_equal(mpos_provision_open(&cc, A.priv, "MP 1", CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_provision_open(&cc, NULL, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_provision_open(&cc, A.priv, A.serial, CA.pub, buf, len, NULL, NULL),
                     MPOS_ERR_ARG);
    uint8_t zero[32];
    memset(zero, 0, sizeof(zero));
    assert_int_equal(mpos_provision_open(&cc, zero, A.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_KEY);
    mpos_provision_key_clear(&out);
}

/* A key store that never releases its private key: ECDH and signing by callback. */
struct stub_store {
    uint8_t priv[32];
    int ecdh_calls, sign_calls;
    int fail; /* the error every call returns when not 0 */
};

static int stub_ecdh(void *ctx, const uint8_t peer[65], uint8_t z[32])
{
    struct stub_store *s = ctx;
    s->ecdh_calls++;
    return s->fail != 0 ? s->fail : mpos_ecdh_p256(s->priv, peer, z);
}

static int stub_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    struct stub_store *s = ctx;
    s->sign_calls++;
    return s->fail != 0 ? s->fail : mpos_ecdsa_p256_sign(s->priv, msg, len, sig);
}

static void test_device_callbacks(void **state)
{
    static uint8_t buf[MPOS_PROVISION_BUNDLE_MAX_LEN];
    struct stub_store st, st_b;
    struct mpos_provision_device dev, dev_b;
    struct mpos_provision_key k, out;
    uint8_t csr[MPOS_PROVISION_CSR_MAX_LEN];
    size_t csr_len = 0, len;
    struct terminal t;
    (void)state;
    fleet();
    memset(&st, 0, sizeof(st));
    memset(&t, 0, sizeof(t));
    snprintf(t.serial, sizeof(t.serial), "KS-0001");
    assert_int_equal(mpos_ec_p256_generate(st.priv, t.pub), MPOS_OK);
    dev.pub = t.pub;
    dev.ecdh = stub_ecdh;
    dev.sign = stub_sign;
    dev.ctx = &st;
    /* The request, signed by the key store; OpenSSL verifies it in ca_issue. */
    assert_int_equal(mpos_provision_csr_build_device(&dev, t.serial, csr, sizeof(csr), &csr_len),
                     MPOS_OK);
    assert_int_equal(st.sign_calls, 1);
    t.cert_len = ca_issue(&CA, csr, csr_len, t.serial, t.cert, sizeof(t.cert));
    /* Same bytes as the scalar variant but for the random signature: same length range. */
    assert_true(csr_len > 150 && csr_len <= MPOS_PROVISION_CSR_MAX_LEN);
    aes_key(&k, 24, 0x66);
    len = make_bundle(&CA, &CA, &t, &k, NULL, 0, buf, sizeof(buf));
    assert_int_equal(mpos_provision_open_device(&cc, &dev, t.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_OK);
    assert_int_equal(st.ecdh_calls, 1);
    assert_int_equal(out.key_len, 24);
    assert_memory_equal(out.key, k.key, 24);
    /* Another key store claiming this terminal's public key: its ECDH derives another TK and
     * the key block's MAC fails. */
    memset(&st_b, 0, sizeof(st_b));
    uint8_t pub_b[65];
    assert_int_equal(mpos_ec_p256_generate(st_b.priv, pub_b), MPOS_OK);
    dev_b = dev;
    dev_b.ctx = &st_b;
    assert_int_equal(
        mpos_provision_open_device(&cc, &dev_b, t.serial, CA.pub, buf, len, NULL, &out),
        MPOS_ERR_VERIFY);
    assert_int_equal(st_b.ecdh_calls, 1);
    assert_true(all_zero(&out, sizeof(out)));
    /* With its own public key it is refused before any ECDH. */
    dev_b.pub = pub_b;
    assert_int_equal(
        mpos_provision_open_device(&cc, &dev_b, t.serial, CA.pub, buf, len, NULL, &out),
        MPOS_ERR_VERIFY);
    assert_int_equal(st_b.ecdh_calls, 1);
    /* Key store errors come back as they are; a positive value is not success. */
    st.fail = MPOS_ERR_CRYPTO;
    assert_int_equal(mpos_provision_open_device(&cc, &dev, t.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_CRYPTO);
    assert_int_equal(mpos_provision_csr_build_device(&dev, t.serial, csr, sizeof(csr), &csr_len),
                     MPOS_ERR_CRYPTO);
    assert_true(all_zero(csr, sizeof(csr)));
    st.fail = 3;
    assert_int_equal(mpos_provision_open_device(&cc, &dev, t.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_CRYPTO);
    assert_int_equal(mpos_provision_csr_build_device(&dev, t.serial, csr, sizeof(csr), &csr_len),
                     MPOS_ERR_CRYPTO);
    st.fail = 0;
    dev.ecdh = NULL;
    assert_int_equal(mpos_provision_open_device(&cc, &dev, t.serial, CA.pub, buf, len, NULL, &out),
                     MPOS_ERR_ARG);
    dev.sign = NULL;
    assert_int_equal(mpos_provision_csr_build_device(&dev, t.serial, csr, sizeof(csr), &csr_len),
                     MPOS_ERR_ARG);
    mpos_cleanse(&st, sizeof(st));
    mpos_cleanse(&st_b, sizeof(st_b));
    mpos_provision_key_clear(&out);
}

static void test_teardown_fleet(void **state)
{
    (void)state;
    fleet();
    ca_free(&CA);
    ca_free(&CA2);
    mpos_cleanse(&A, sizeof(A));
    mpos_cleanse(&B, sizeof(B));
    mpos_cleanse(&A_IMPOSTOR, sizeof(A_IMPOSTOR));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serial),           cmocka_unit_test(test_csr),
        cmocka_unit_test(test_cert_parse),       cmocka_unit_test(test_key_wrap),
        cmocka_unit_test(test_transport_key),    cmocka_unit_test(test_bundle_format),
        cmocka_unit_test(test_open_a_not_b),     cmocka_unit_test(test_open_bit_flips),
        cmocka_unit_test(test_open_other_ca),    cmocka_unit_test(test_open_kinds),
        cmocka_unit_test(test_device_callbacks), cmocka_unit_test(test_teardown_fleet),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
