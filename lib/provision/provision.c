/* openmpos provisioning: the transport key, the key block under it, and opening a bundle in
 * the terminal (mpos/provision.h, docs/provisioning.md). */
#include <string.h>

#include "mpos/kcv.h"
#include "mpos/tr31.h"
#include "mpos/util.h"
#include "provision_int.h"

#define AES_IKID_LEN  8  /* X9.24-3-2017 initial key ID */
#define TDES_KSN_LEN  10 /* X9.24-1-2009 KSN */
#define TMK_LEN       16 /* 2-key TDES */
#define TDES_IPEK_LEN 16

int mpos_provision_device_key_generate(uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                                       uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    return mpos_ec_p256_generate(priv, pub);
}

void mpos_provision_key_clear(struct mpos_provision_key *k)
{
    if (k != NULL) {
        MPOS_WIPE_CTX(k);
    }
}

int mpos_provision_transport_key_from_secret(const uint8_t z[MPOS_ECDH_P256_LEN],
                                             const char *serial, uint8_t tk[MPOS_PROVISION_TK_LEN])
{
    static const char info[] = MPOS_PROVISION_TK_INFO;
    int rc;
    if (tk == NULL) {
        return MPOS_ERR_ARG;
    }
    if (z == NULL || serial == NULL) {
        mpos_cleanse(tk, MPOS_PROVISION_TK_LEN);
        return MPOS_ERR_ARG;
    }
    if (!mpos_provision_serial_valid(serial)) {
        mpos_cleanse(tk, MPOS_PROVISION_TK_LEN);
        return MPOS_ERR_FORMAT;
    }
    /* RFC 5869 2.2-2.3 (SP 800-56C r2 5.1 two-step): TK = HKDF-SHA256(salt = serial, IKM = Z,
     * info = "openmpos TK", L = 32); mpos_hkdf_sha256 zeroes tk on error. */
    rc = mpos_hkdf_sha256((const uint8_t *)serial, strlen(serial), z, MPOS_ECDH_P256_LEN,
                          (const uint8_t *)info, sizeof(info) - 1, tk, MPOS_PROVISION_TK_LEN);
    return rc;
}

int mpos_provision_transport_key(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                                 const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN], const char *serial,
                                 uint8_t tk[MPOS_PROVISION_TK_LEN])
{
    uint8_t z[MPOS_ECDH_P256_LEN];
    int rc = MPOS_ERR_ARG;
    if (tk == NULL) {
        return MPOS_ERR_ARG;
    }
    if (priv == NULL || peer_pub == NULL || serial == NULL) {
        goto exit;
    }
    if (!mpos_provision_serial_valid(serial)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    /* SEC 1 v2 3.3.1: Z = x(d * Q). */
    rc = mpos_ecdh_p256(priv, peer_pub, z);
    if (rc == MPOS_OK) {
        rc = mpos_provision_transport_key_from_secret(z, serial, tk);
    }
exit:
    MPOS_WIPE_BUFFER(z);
    if (rc != MPOS_OK) {
        mpos_cleanse(tk, MPOS_PROVISION_TK_LEN);
    }
    return rc;
}

/* ---- the key block ---------------------------------------------------------------------- */

/* X9.24-1-2009 A.6: an initial KSN has its 21 counter bits zero. */
static int tdes_counter_zero(const uint8_t ksn[TDES_KSN_LEN])
{
    return (ksn[7] & 0x1Fu) == 0 && ksn[8] == 0 && ksn[9] == 0;
}

/* What the header of each kind is: usage, algorithm, mode of use, the one optional block. */
struct kind_rule {
    const char *usage;
    char algorithm;
    char mode;
    const char *opt_id;
    size_t opt_len; /* characters of its data */
};

static int kind_rule(enum mpos_provision_kind kind, struct kind_rule *r)
{
    switch (kind) {
    case MPOS_PROVISION_AES_DUKPT:
        /* X9.143:2021 6.3.1 B1 initial DUKPT key; 6.3.6.6 IK: the X9.24-3 initial key ID. */
        *r = (struct kind_rule){"B1", 'A', 'X', "IK", 2 * AES_IKID_LEN};
        return MPOS_OK;
    case MPOS_PROVISION_TDES_DUKPT:
        /* B1; 6.3.6.8 KS: the X9.24-1 initial KSN. */
        *r = (struct kind_rule){"B1", 'T', 'X', "KS", 2 * TDES_KSN_LEN};
        return MPOS_OK;
    case MPOS_PROVISION_TMK:
        /* 6.3.1 K0 key encryption key, mode D (the terminal only unwraps working keys);
         * 6.3.6.7 KC: "00" (legacy method) then the KCV. */
        *r = (struct kind_rule){"K0", 'T', 'D', "KC", 2 + 2 * MPOS_PROVISION_KCV_LEN};
        return MPOS_OK;
    case MPOS_PROVISION_TMK_SM4:
        /* The same with the proprietary algorithm '4' (X9.143:2021 6.3.2 numeric codes;
         * MPOS_TR31_EXT_SM4). */
        *r = (struct kind_rule){"K0", MPOS_TR31_ALG_SM4, 'D', "KC", 2 + 2 * MPOS_PROVISION_KCV_LEN};
        return MPOS_OK;
    default:
        return MPOS_ERR_ARG;
    }
}

/* The TMK's cipher; the TR-31 extensions its block needs (only an SM4 TMK's: '4'). */
static enum mpos_cipher tmk_cipher(enum mpos_provision_kind kind)
{
    return kind == MPOS_PROVISION_TMK_SM4 ? MPOS_CIPHER_SM4 : MPOS_CIPHER_TDES;
}

static unsigned tr31_flags(enum mpos_provision_kind kind)
{
    return kind == MPOS_PROVISION_TMK_SM4 ? MPOS_TR31_EXT_SM4 : 0u;
}

int mpos_provision_key_wrap(mpos_crypto_ctx *cc, const uint8_t tk[MPOS_PROVISION_TK_LEN],
                            const struct mpos_provision_key *key, char *block, size_t cap,
                            size_t *block_len)
{
    struct kind_rule rule;
    char header[MPOS_TR31_FIXED_HEADER_LEN + 4 + 2 * MPOS_PROVISION_MAX_ID_LEN + 1];
    char data[2 * MPOS_PROVISION_MAX_ID_LEN + 1];
    uint8_t kcv[MPOS_PROVISION_KCV_LEN];
    int rc = MPOS_ERR_ARG;
    if (block_len != NULL) {
        *block_len = 0;
    }
    if (cc == NULL || tk == NULL || key == NULL || block == NULL || block_len == NULL ||
        kind_rule(key->kind, &rule) != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_KEY;
    switch (key->kind) {
    case MPOS_PROVISION_AES_DUKPT:
        if ((key->key_len != 16 && key->key_len != 24 && key->key_len != 32) ||
            key->id_len != AES_IKID_LEN) {
            goto exit;
        }
        mpos_hex_encode(key->id, AES_IKID_LEN, data);
        break;
    case MPOS_PROVISION_TDES_DUKPT:
        if (key->key_len != TDES_IPEK_LEN || key->id_len != TDES_KSN_LEN) {
            goto exit;
        }
        if (!tdes_counter_zero(key->id)) {
            rc = MPOS_ERR_KSN;
            goto exit;
        }
        mpos_hex_encode(key->id, TDES_KSN_LEN, data);
        break;
    default: /* MPOS_PROVISION_TMK, MPOS_PROVISION_TMK_SM4 */
        if (key->key_len != TMK_LEN || key->id_len != 0) {
            goto exit;
        }
        /* ANSI X9.24-1:2017 A.2 legacy check value: E(K, 0), leftmost 3 bytes (TDES or SM4). */
        rc = mpos_kcv_compute(cc, tmk_cipher(key->kind), MPOS_KCV_LEGACY, key->key, key->key_len,
                              kcv, sizeof(kcv));
        if (rc != MPOS_OK) {
            goto exit;
        }
        data[0] = '0';
        data[1] = '0';
        mpos_hex_encode(kcv, sizeof(kcv), data + 2);
        break;
    }
    /* X9.143:2021 6.2: version D, length (recomputed by wrap), usage, algorithm, mode, key
     * version 00, exportability N (the terminal passes it on to nobody), one optional block,
     * key context 0, reserved 0; then the optional block: ID, length (ID + length + data, 2
     * hex digits), data. */
    {
        static const char hexd[] = "0123456789ABCDEF";
        size_t n = 0;
        size_t opt_field = 4 + rule.opt_len;
        memcpy(header + n, "D0000", 5);
        n += 5;
        memcpy(header + n, rule.usage, 2);
        n += 2;
        header[n++] = rule.algorithm;
        header[n++] = rule.mode;
        memcpy(header + n, "00N0100", 7);
        n += 7;
        memcpy(header + n, rule.opt_id, 2);
        n += 2;
        header[n++] = hexd[(opt_field >> 4) & 0xFu];
        header[n++] = hexd[opt_field & 0xFu];
        memcpy(header + n, data, rule.opt_len);
        n += rule.opt_len;
        header[n] = '\0';
    }
    rc = mpos_tr31_wrap_ext(cc, tk, MPOS_PROVISION_TK_LEN, header, strlen(header), key->key,
                            key->key_len, NULL, 0, block, cap, block_len, tr31_flags(key->kind));
exit:
    MPOS_WIPE_BUFFER(kcv);
    if (rc != MPOS_OK && block != NULL && cap > 0) {
        mpos_cleanse(block, cap);
    }
    return rc;
}

/* Decodes the hex data of an optional block (n characters) into out. */
static int opt_hex(const mpos_tr31_header *hdr, const struct mpos_tr31_opt_block *ob, uint8_t *out,
                   size_t out_len)
{
    char hex[2 * MPOS_PROVISION_MAX_ID_LEN + 1];
    size_t got = 0;
    if (ob->len != 2 * out_len || ob->len >= sizeof(hex)) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(hex, hdr->text + ob->offset, ob->len);
    hex[ob->len] = '\0';
    if (mpos_hex_decode(hex, out, out_len, &got) != MPOS_OK || got != out_len) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

/* The authentic header must be exactly what mpos_provision_key_wrap writes for kind. */
static int header_matches(const mpos_tr31_header *hdr, const struct kind_rule *rule,
                          const struct mpos_tr31_opt_block **opt)
{
    *opt = NULL;
    if (hdr->version != 'D' || strcmp(hdr->key_usage, rule->usage) != 0 ||
        hdr->algorithm != rule->algorithm || hdr->mode_of_use != rule->mode ||
        strcmp(hdr->key_version, "00") != 0 || hdr->exportability != 'N' ||
        hdr->key_context != '0' || hdr->num_opt_blocks < 1 || hdr->num_opt_blocks > 2) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < hdr->num_opt_blocks; i++) {
        const struct mpos_tr31_opt_block *ob = &hdr->opt[i];
        if (i == 0 && strcmp(ob->id, rule->opt_id) == 0 && ob->len == rule->opt_len) {
            *opt = ob;
        } else if (i == 1 && strcmp(ob->id, "PB") == 0) {
            continue; /* padding of the optional blocks (X9.143:2021 6.3.6.11) */
        } else {
            return MPOS_ERR_FORMAT;
        }
    }
    return *opt != NULL ? MPOS_OK : MPOS_ERR_FORMAT;
}

int mpos_provision_key_unwrap(mpos_crypto_ctx *cc, const uint8_t tk[MPOS_PROVISION_TK_LEN],
                              enum mpos_provision_kind kind, const char *block, size_t block_len,
                              struct mpos_provision_key *out)
{
    struct kind_rule rule;
    const struct mpos_tr31_opt_block *ob = NULL;
    mpos_tr31_header hdr;
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 0;
    int rc = MPOS_ERR_ARG;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    MPOS_WIPE_CTX(out);
    memset(&hdr, 0, sizeof(hdr));
    if (cc == NULL || tk == NULL || block == NULL || kind_rule(kind, &rule) != MPOS_OK) {
        goto exit;
    }
    if (block_len == 0 || block_len > MPOS_PROVISION_KEYBLOCK_MAX_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    /* X9.143:2021 7.3.2 / 7.4: decrypt, verify the MAC in constant time, only then release the
     * key (lib/tr31). Under another terminal's TK the MAC fails: MPOS_ERR_VERIFY. */
    rc = mpos_tr31_unwrap_ext(cc, tk, MPOS_PROVISION_TK_LEN, block, block_len, &hdr, key,
                              sizeof(key), &key_len, tr31_flags(kind));
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = header_matches(&hdr, &rule, &ob);
    if (rc != MPOS_OK) {
        goto exit;
    }
    out->kind = kind;
    switch (kind) {
    case MPOS_PROVISION_AES_DUKPT:
        if (key_len != 16 && key_len != 24 && key_len != 32) {
            rc = MPOS_ERR_KEY;
            goto exit;
        }
        rc = opt_hex(&hdr, ob, out->id, AES_IKID_LEN);
        out->id_len = AES_IKID_LEN;
        break;
    case MPOS_PROVISION_TDES_DUKPT:
        if (key_len != TDES_IPEK_LEN) {
            rc = MPOS_ERR_KEY;
            goto exit;
        }
        rc = opt_hex(&hdr, ob, out->id, TDES_KSN_LEN);
        out->id_len = TDES_KSN_LEN;
        if (rc == MPOS_OK && !tdes_counter_zero(out->id)) {
            rc = MPOS_ERR_KSN;
        }
        break;
    default: /* MPOS_PROVISION_TMK, MPOS_PROVISION_TMK_SM4 */
        if (key_len != TMK_LEN) {
            rc = MPOS_ERR_KEY;
            goto exit;
        }
        /* KC: "00" (X9.24-1:2017 A.2 legacy method) then the check value, compared with the
         * key's own in constant time. */
        if (hdr.text[ob->offset] != '0' || hdr.text[ob->offset + 1] != '0') {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
        {
            struct mpos_tr31_opt_block kcv_part = *ob;
            kcv_part.offset = (uint16_t)(ob->offset + 2);
            kcv_part.len = (uint16_t)(ob->len - 2);
            rc = opt_hex(&hdr, &kcv_part, out->kcv, MPOS_PROVISION_KCV_LEN);
        }
        if (rc == MPOS_OK) {
            rc = mpos_kcv_verify(cc, tmk_cipher(kind), MPOS_KCV_LEGACY, key, key_len, out->kcv,
                                 MPOS_PROVISION_KCV_LEN);
        }
        out->kcv_len = MPOS_PROVISION_KCV_LEN;
        break;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    memcpy(out->key, key, key_len);
    out->key_len = key_len;
exit:
    MPOS_WIPE_BUFFER(key);
    if (rc != MPOS_OK) {
        MPOS_WIPE_CTX(out);
    }
    return rc;
}

/* ---- opening a bundle ------------------------------------------------------------------- */

int mpos_provision_open_device(mpos_crypto_ctx *cc, const struct mpos_provision_device *dev,
                               const char *serial, const uint8_t ca_pub[MPOS_EC_P256_PUB_LEN],
                               const uint8_t *bundle, size_t bundle_len,
                               mpos_provision_bundle *view, struct mpos_provision_key *key)
{
    mpos_provision_bundle b;
    struct mpos_provision_cert dev_cert, ca;
    uint8_t z[MPOS_ECDH_P256_LEN];
    uint8_t tk[MPOS_PROVISION_TK_LEN];
    size_t serial_len;
    int rc = MPOS_ERR_ARG;
    memset(&b, 0, sizeof(b));
    memset(z, 0, sizeof(z));
    memset(tk, 0, sizeof(tk));
    if (view != NULL) {
        memset(view, 0, sizeof(*view));
    }
    if (key == NULL) {
        return MPOS_ERR_ARG;
    }
    MPOS_WIPE_CTX(key);
    if (cc == NULL || dev == NULL || dev->pub == NULL || dev->ecdh == NULL || serial == NULL ||
        ca_pub == NULL || bundle == NULL) {
        goto exit;
    }
    if (!mpos_provision_serial_valid(serial)) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    serial_len = strlen(serial);
    /* 1. Syntax. */
    rc = mpos_provision_bundle_parse(bundle, bundle_len, &b);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 2. The manufacturer CA's signature over the E2 object (FIPS 186-5 6.4.2), before any
     * field is used. A key that is not a point is the caller's error (MPOS_ERR_KEY). */
    rc = mpos_ecdsa_p256_verify(ca_pub, b.signed_part, b.signed_len, b.signature);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_VERIFY;
    /* 3. Made for this terminal. */
    if (b.serial_len != serial_len || memcmp(b.serial, serial, serial_len) != 0) {
        goto exit;
    }
    /* 4. The certificates: the CA's is of the trusted key, the device's was issued by it
     * (RFC 5280 6.1.3 (a)(1), (a)(4)) to this serial and for this device's key. */
    if (mpos_provision_cert_parse(b.ca_cert, b.ca_cert_len, &ca) != MPOS_OK ||
        mpos_provision_cert_parse(b.device_cert, b.device_cert_len, &dev_cert) != MPOS_OK) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    if (memcmp(ca.pub, ca_pub, MPOS_EC_P256_PUB_LEN) != 0 ||
        dev_cert.issuer_len != ca.subject_len ||
        memcmp(dev_cert.issuer, ca.subject, ca.subject_len) != 0 || dev_cert.serial == NULL ||
        dev_cert.serial_len != serial_len || memcmp(dev_cert.serial, serial, serial_len) != 0 ||
        memcmp(dev_cert.pub, dev->pub, MPOS_EC_P256_PUB_LEN) != 0) {
        goto exit;
    }
    rc = mpos_ecdsa_p256_verify(ca_pub, dev_cert.tbs, dev_cert.tbs_len, dev_cert.sig);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* 5. TK (SEC 1 v2 3.3.1 in the key store, then RFC 5869), then the key block under it. */
    rc = dev->ecdh(dev->ctx, b.ephemeral_pub, z);
    if (rc != MPOS_OK) {
        rc = rc > 0 ? MPOS_ERR_CRYPTO : rc;
        goto exit;
    }
    rc = mpos_provision_transport_key_from_secret(z, serial, tk);
    MPOS_WIPE_BUFFER(z);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_provision_key_unwrap(cc, tk, b.kind, b.key_block, b.key_block_len, key);
    if (rc == MPOS_OK && view != NULL) {
        *view = b;
    }
exit:
    MPOS_WIPE_BUFFER(z);
    MPOS_WIPE_BUFFER(tk);
    if (rc != MPOS_OK) {
        MPOS_WIPE_CTX(key);
        if (view != NULL) {
            memset(view, 0, sizeof(*view));
        }
    }
    return rc;
}

static int scalar_ecdh(void *ctx, const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                       uint8_t shared[MPOS_ECDH_P256_LEN])
{
    return mpos_ecdh_p256((const uint8_t *)ctx, peer_pub, shared);
}

int mpos_provision_open(mpos_crypto_ctx *cc, const uint8_t device_priv[MPOS_EC_P256_PRIV_LEN],
                        const char *serial, const uint8_t ca_pub[MPOS_EC_P256_PUB_LEN],
                        const uint8_t *bundle, size_t bundle_len, mpos_provision_bundle *view,
                        struct mpos_provision_key *key)
{
    uint8_t pub[MPOS_EC_P256_PUB_LEN];
    struct mpos_provision_device dev;
    int rc;
    if (view != NULL) {
        memset(view, 0, sizeof(*view));
    }
    if (key == NULL) {
        return MPOS_ERR_ARG;
    }
    MPOS_WIPE_CTX(key);
    if (device_priv == NULL) {
        return MPOS_ERR_ARG;
    }
    /* The device's public key is the one of its scalar (FIPS 186-5 A.2): a caller cannot pair
     * a certificate's key with another private key. */
    rc = mpos_ec_p256_public(device_priv, pub);
    if (rc != MPOS_OK) {
        return rc;
    }
    dev.pub = pub;
    dev.ecdh = scalar_ecdh;
    dev.sign = NULL;
    dev.ctx = (void *)device_priv;
    return mpos_provision_open_device(cc, &dev, serial, ca_pub, bundle, bundle_len, view, key);
}
