/* openmpos simulator: the external-key provider (extkey.h).
 *
 * Key management "EC" (names shared with the default provider so libssl sees an EC key;
 * property provider=mpos-extkey; the port's library context prefers provider=default for
 * every fetch, so only keys made here use it). Signature "MPOS-EXTKEY-ECDSA" (a name no other
 * provider has, so libssl's EVP_DigestSign on such a key always lands here): a one-shot
 * digest_sign gets the TLS 1.3 CertificateVerify content (RFC 8446 4.4.3) as is, which is
 * what mpos_hal_tls_config.sign signs (ECDSA P-256 / SHA-256).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "extkey.h"

#define P256_PUB_LEN    65 /* 04 || X || Y (SEC 1 2.3.3, uncompressed) */
#define P256_GROUP      "prime256v1"
#define DER_SIG_MAX     72 /* ECDSA-Sig-Value for P-256 (RFC 5480 / SEC 1 C.8) */
#define SIGN_FN_PARAM   "mpos-extkey-sign"
#define SIGN_CTX_PARAM  "mpos-extkey-sign-ctx"
#define SIG_ALG_NAME    "MPOS-EXTKEY-ECDSA"
#define PROV_PROPERTIES "provider=" MPOS_EXTKEY_PROVIDER

typedef struct extkey {
    uint8_t pub[P256_PUB_LEN];
    size_t pub_len;
    mpos_extkey_sign_fn sign;
    void *sign_ctx;
} extkey;

typedef struct extsig {
    extkey *key;
    uint8_t *buf; /* message for the streaming interface */
    size_t len, cap;
} extsig;

/* ---- key management ---------------------------------------------------------------------- */

static void *km_new(void *provctx)
{
    (void)provctx;
    return calloc(1, sizeof(extkey));
}

static void km_free(void *kd)
{
    if (kd != NULL) {
        OPENSSL_cleanse(kd, sizeof(extkey));
        free(kd);
    }
}

static int km_has(const void *kd, int selection)
{
    const extkey *k = kd;
    if (k == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 && k->pub_len == 0)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k->sign == NULL)
        return 0;
    return 1;
}

static int km_match(const void *a, const void *b, int selection)
{
    const extkey *x = a, *y = b;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0)
        return 1; /* domain parameters: both P-256 by construction */
    return x->pub_len != 0 && x->pub_len == y->pub_len && memcmp(x->pub, y->pub, x->pub_len) == 0;
}

static int km_import(void *kd, int selection, const OSSL_PARAM params[])
{
    extkey *k = kd;
    const OSSL_PARAM *p;
    if (k == NULL)
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p != NULL) {
        const char *g = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &g) ||
            (strcasecmp(g, P256_GROUP) != 0 && strcasecmp(g, "P-256") != 0))
            return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
        const void *pub = NULL;
        size_t len = 0;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
        if (p == NULL || !OSSL_PARAM_get_octet_string_ptr(p, &pub, &len) || len != P256_PUB_LEN ||
            ((const uint8_t *)pub)[0] != 0x04)
            return 0;
        memcpy(k->pub, pub, len);
        k->pub_len = len;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
        /* Not a private key: the signer (function and context pointers), from
         * mpos_extkey_new only. Keys from elsewhere never carry one. */
        const void *fn = NULL, *ctx = NULL;
        size_t fl = 0, cl = 0;
        const OSSL_PARAM *pf = OSSL_PARAM_locate_const(params, SIGN_FN_PARAM);
        const OSSL_PARAM *pc = OSSL_PARAM_locate_const(params, SIGN_CTX_PARAM);
        if (pf == NULL || pc == NULL)
            return 0;
        if (!OSSL_PARAM_get_octet_string_ptr(pf, &fn, &fl) || fl != sizeof(k->sign) ||
            !OSSL_PARAM_get_octet_string_ptr(pc, &ctx, &cl) || cl != sizeof(k->sign_ctx))
            return 0;
        memcpy(&k->sign, fn, fl);
        memcpy(&k->sign_ctx, ctx, cl);
    }
    return 1;
}

static const OSSL_PARAM km_types[] = {OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
                                      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
                                      OSSL_PARAM_END};

static const OSSL_PARAM *km_import_types(int selection)
{
    (void)selection;
    return km_types;
}

/* Public part and group only: a request that includes the private key fails, so the key is
 * never copied into another provider (where it would not sign through the callback). */
static int km_export(void *kd, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    extkey *k = kd;
    OSSL_PARAM params[3];
    size_t n = 0;
    if (k == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, P256_GROUP, 0);
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, k->pub, k->pub_len);
    params[n] = OSSL_PARAM_construct_end();
    return cb(params, cbarg);
}

static const OSSL_PARAM *km_export_types(int selection)
{
    (void)selection;
    return km_types;
}

static int km_get_params(void *kd, OSSL_PARAM params[])
{
    extkey *k = kd;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) != NULL &&
        !OSSL_PARAM_set_int(p, 256))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) != NULL &&
        !OSSL_PARAM_set_int(p, 128))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) != NULL &&
        !OSSL_PARAM_set_int(p, DER_SIG_MAX))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, P256_GROUP))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, "SHA256"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) != NULL &&
        !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) != NULL &&
        !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
        return 0;
    return 1;
}

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_END};
    (void)provctx;
    return t;
}

static const char *km_query_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? SIG_ALG_NAME : NULL;
}

/* ---- signature --------------------------------------------------------------------------- */

static void *sig_newctx(void *provctx, const char *propq)
{
    (void)provctx;
    (void)propq;
    return calloc(1, sizeof(extsig));
}

static void sig_freectx(void *c)
{
    extsig *s = c;
    if (s == NULL)
        return;
    if (s->buf != NULL) {
        OPENSSL_cleanse(s->buf, s->cap);
        free(s->buf);
    }
    free(s);
}

static int is_sha256(const char *md)
{
    return md == NULL || md[0] == '\0' || strcasecmp(md, "SHA256") == 0 ||
           strcasecmp(md, "SHA2-256") == 0 || strcasecmp(md, "SHA-256") == 0 ||
           strcmp(md, "2.16.840.1.101.3.4.2.1") == 0;
}

static int sig_digest_sign_init(void *c, const char *mdname, void *kd, const OSSL_PARAM params[])
{
    extsig *s = c;
    extkey *k = kd;
    (void)params;
    if (s == NULL || k == NULL || k->sign == NULL || !is_sha256(mdname))
        return 0;
    s->key = k;
    s->len = 0;
    return 1;
}

static int sig_digest_sign_update(void *c, const unsigned char *data, size_t len)
{
    extsig *s = c;
    if (len > SIZE_MAX / 2 - s->len)
        return 0;
    if (s->len + len > s->cap) {
        size_t cap = (s->len + len) * 2;
        uint8_t *nb = malloc(cap);
        if (nb == NULL)
            return 0;
        if (s->buf != NULL) {
            memcpy(nb, s->buf, s->len);
            OPENSSL_cleanse(s->buf, s->cap);
            free(s->buf);
        }
        s->buf = nb;
        s->cap = cap;
    }
    if (len != 0)
        memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 1;
}

/* raw r || s (SEC 1 4.1.3 output) to ECDSA-Sig-Value DER (RFC 5480 2.2 / RFC 8446 4.2.3). */
static int sign_der(extkey *k, const uint8_t *msg, size_t len, unsigned char *sig, size_t *siglen,
                    size_t sigsize)
{
    uint8_t rs[MPOS_HAL_SIG_LEN];
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *sv = NULL;
    unsigned char *der = NULL;
    int der_len, ok = 0;

    if (sig == NULL) {
        *siglen = DER_SIG_MAX;
        return 1;
    }
    if (k->sign(k->sign_ctx, msg, len, rs) != 0)
        goto exit;
    r = BN_bin2bn(rs, 32, NULL);
    sv = BN_bin2bn(rs + 32, 32, NULL);
    es = ECDSA_SIG_new();
    if (r == NULL || sv == NULL || es == NULL || !ECDSA_SIG_set0(es, r, sv))
        goto exit;
    r = sv = NULL; /* owned by es */
    der_len = i2d_ECDSA_SIG(es, &der);
    if (der_len <= 0 || (size_t)der_len > sigsize)
        goto exit;
    memcpy(sig, der, (size_t)der_len);
    *siglen = (size_t)der_len;
    ok = 1;
exit:
    OPENSSL_cleanse(rs, sizeof(rs));
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    return ok;
}

static int sig_digest_sign_final(void *c, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    extsig *s = c;
    int ok;
    if (s == NULL || s->key == NULL)
        return 0;
    ok = sign_der(s->key, s->buf, s->len, sig, siglen, sigsize);
    if (sig != NULL)
        s->len = 0;
    return ok;
}

static int sig_digest_sign(void *c, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
    extsig *s = c;
    if (s == NULL || s->key == NULL)
        return 0;
    return sign_der(s->key, tbs, tbslen, sig, siglen, sigsize);
}

/* ---- the provider ------------------------------------------------------------------------ */

static const OSSL_DISPATCH km_fns[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_import_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_export_types},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_gettable_params},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_query_operation_name},
    {0, NULL}};

static const OSSL_DISPATCH sig_fns[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},
    {0, NULL}};

static const OSSL_ALGORITHM km_algs[] = {
    {"EC:id-ecPublicKey", PROV_PROPERTIES, km_fns, "P-256 key signing through a callback"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM sig_algs[] = {
    {SIG_ALG_NAME, PROV_PROPERTIES, sig_fns, "ECDSA P-256/SHA-256 through a callback"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT:
        return km_algs;
    case OSSL_OP_SIGNATURE:
        return sig_algs;
    default:
        return NULL;
    }
}

static const OSSL_DISPATCH prov_fns[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query}, {0, NULL}};

static int prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    *out = prov_fns;
    *provctx = (void *)handle;
    return 1;
}

OSSL_PROVIDER *mpos_extkey_load(OSSL_LIB_CTX *libctx)
{
    if (!OSSL_PROVIDER_add_builtin(libctx, MPOS_EXTKEY_PROVIDER, prov_init))
        return NULL;
    /* Everything else (ECDHE, ciphers, digests, the server's keys) from the default
     * provider; keys made by mpos_extkey_new ask for this provider explicitly. */
    if (!EVP_set_default_properties(libctx, "?provider=default"))
        return NULL;
    return OSSL_PROVIDER_load(libctx, MPOS_EXTKEY_PROVIDER);
}

EVP_PKEY *mpos_extkey_new(OSSL_LIB_CTX *libctx, const EVP_PKEY *cert_pub, mpos_extkey_sign_fn sign,
                          void *sign_ctx)
{
    uint8_t pub[P256_PUB_LEN];
    size_t pub_len = 0;
    char group[32];
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[5];

    if (cert_pub == NULL || sign == NULL || !EVP_PKEY_is_a(cert_pub, "EC") ||
        !EVP_PKEY_get_utf8_string_param(cert_pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL) ||
        strcmp(group, P256_GROUP) != 0 ||
        !EVP_PKEY_get_octet_string_param(cert_pub, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub),
                                         &pub_len) ||
        pub_len != P256_PUB_LEN)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len);
    params[2] = OSSL_PARAM_construct_octet_string(SIGN_FN_PARAM, &sign, sizeof(sign));
    params[3] = OSSL_PARAM_construct_octet_string(SIGN_CTX_PARAM, &sign_ctx, sizeof(sign_ctx));
    params[4] = OSSL_PARAM_construct_end();
    pctx = EVP_PKEY_CTX_new_from_name(libctx, "EC", PROV_PROPERTIES);
    if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(pctx);
    return pkey;
}
