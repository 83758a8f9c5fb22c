/* openmpos simulator: the virtual EMV / PBOC card (card.h). Commands: EMV 4.3 Book 3 6.5;
 * data: Book 3 Annex A; cryptograms: Book 2 8.1, 8.2 and Annex A1 through lib/emv;
 * certificates and PIN encipherment: Book 2 5.3, 6.4, 7. */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "card.h"
#include "mpos/hash.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "testkeys.h"

#define SW_OK                0x9000u
#define SW_WRONG_LENGTH      0x6700u
#define SW_WRONG_DATA        0x6A80u
#define SW_NOT_FOUND         0x6A82u
#define SW_RECORD_NOT_FOUND  0x6A83u
#define SW_WRONG_P1P2        0x6A86u
#define SW_DATA_NOT_FOUND    0x6A88u
#define SW_CONDITIONS        0x6985u
#define SW_PIN_BLOCKED       0x6983u
#define SW_AUTH_FAILED       0x6300u
#define SW_INS_NOT_SUPPORTED 0x6D00u
#define SW_CLA_NOT_SUPPORTED 0x6E00u

#define SEL_NONE 0
#define SEL_PSE  1
#define SEL_APP  2

static const uint8_t pse_name[] = "1PAY.SYS.DDF01";
static const uint8_t atr_t1[] = {0x3B, 0x80, 0x80, 0x01, 0x01}; /* T=0 and T=1, no history */
static const uint8_t up_debit[] = {0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x01};
static const uint8_t up_credit[] = {0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x02};
static const uint8_t visa[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};

/* ---- profiles */

static const struct {
    const char *name;
    enum mpos_cardsim_behaviour b;
} behaviours[] = {
    {"approve", MPOS_CARDSIM_APPROVE},
    {"approve-19digit", MPOS_CARDSIM_APPROVE_19DIGIT},
    {"insufficient", MPOS_CARDSIM_INSUFFICIENT},
    {"wrong-pin", MPOS_CARDSIM_WRONG_PIN},
    {"card-declines", MPOS_CARDSIM_CARD_DECLINES},
    {"chip-broken", MPOS_CARDSIM_CHIP_BROKEN},
    {"stripe-only", MPOS_CARDSIM_STRIPE_ONLY},
    {"offline-pin", MPOS_CARDSIM_OFFLINE_PIN},
    {"expired", MPOS_CARDSIM_EXPIRED},
    {"foreign-aid", MPOS_CARDSIM_FOREIGN_AID},
};

static int copy_digits(char *dst, size_t cap, const char *src, size_t len, size_t min, size_t max)
{
    if (len < min || len > max || len >= cap) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (src[i] < '0' || src[i] > '9') {
            return 0;
        }
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 1;
}

static void personalise(mpos_cardsim_profile *p)
{
    p->has_chip = 1;
    p->mute = 0;
    memcpy(p->aid, up_debit, sizeof(up_debit));
    p->aid_len = sizeof(up_debit);
    p->pse = 1;
    p->gpo_format = 2;
    p->gac_format = 1;
    p->arpc_method = 1;
    p->iad_in_cdol2 = 0;
    p->issuer_auth_required = 1;
    p->offline_pin = MPOS_CARDSIM_OFFLINE_PIN_NONE;
    p->decline_at_gac2 = 0;
    p->pin_try_limit = 3;
    p->atc_start = 0x0010;
    switch (p->behaviour) {
    case MPOS_CARDSIM_APPROVE_19DIGIT:
        /* Credit application, format 1 GPO, format 2 GENERATE AC, ARPC method 2 in CDOL2. */
        memcpy(p->aid, up_credit, sizeof(up_credit));
        p->gpo_format = 1;
        p->gac_format = 2;
        p->arpc_method = 2;
        p->iad_in_cdol2 = 1;
        break;
    case MPOS_CARDSIM_INSUFFICIENT:
        p->pse = 0; /* selected through the list of AIDs */
        break;
    case MPOS_CARDSIM_WRONG_PIN:
        p->iad_in_cdol2 = 1;
        break;
    case MPOS_CARDSIM_CARD_DECLINES:
        p->decline_at_gac2 = 1;
        break;
    case MPOS_CARDSIM_CHIP_BROKEN:
        p->mute = 1;
        break;
    case MPOS_CARDSIM_STRIPE_ONLY:
        p->has_chip = 0;
        break;
    case MPOS_CARDSIM_OFFLINE_PIN:
        p->offline_pin = MPOS_CARDSIM_OFFLINE_PIN_ENCIPHERED;
        break;
    case MPOS_CARDSIM_FOREIGN_AID:
        memcpy(p->aid, visa, sizeof(visa));
        p->aid_len = sizeof(visa);
        break;
    default:
        break;
    }
}

int mpos_cardsim_profile_parse(const char *line, mpos_cardsim_profile *p)
{
    const char *field[9];
    size_t flen[9];
    size_t nf = 0;
    const char *s = line;
    size_t imk_len = 0;
    if (line == NULL || p == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(p, 0, sizeof(*p));
    while (nf < 9) {
        const char *t = s;
        while (*t != '\0' && *t != '\t' && *t != '\n' && *t != '\r') {
            t++;
        }
        field[nf] = s;
        flen[nf] = (size_t)(t - s);
        nf++;
        if (*t != '\t') {
            break;
        }
        s = t + 1;
    }
    if (nf != 9 || flen[0] == 0 || flen[0] >= sizeof(p->name) || flen[7] != 32) {
        goto bad;
    }
    memcpy(p->name, field[0], flen[0]);
    p->name[flen[0]] = '\0';
    if (!copy_digits(p->pan, sizeof(p->pan), field[1], flen[1], 12, 19) ||
        !copy_digits(p->expiry, sizeof(p->expiry), field[2], flen[2], 4, 4) ||
        !copy_digits(p->service_code, sizeof(p->service_code), field[3], flen[3], 3, 3) ||
        !copy_digits(p->psn, sizeof(p->psn), field[4], flen[4], 2, 2) ||
        !copy_digits(p->pin, sizeof(p->pin), field[5], flen[5], 4, 12)) {
        goto bad;
    }
    char hex[33];
    memcpy(hex, field[7], 32);
    hex[32] = '\0';
    int r = mpos_hex_decode(hex, p->imk, sizeof(p->imk), &imk_len);
    MPOS_WIPE_BUFFER(hex);
    if (r != MPOS_OK || imk_len != sizeof(p->imk)) {
        goto bad;
    }
    p->behaviour = MPOS_CARDSIM_APPROVE;
    for (size_t i = 0; i < sizeof(behaviours) / sizeof(behaviours[0]); i++) {
        if (strcmp(p->name, behaviours[i].name) == 0) {
            p->behaviour = behaviours[i].b;
        }
    }
    personalise(p);
    return MPOS_OK;
bad:
    mpos_cleanse(p, sizeof(*p));
    return MPOS_ERR_FORMAT;
}

int mpos_cardsim_profile_load(const char *path, const char *name, mpos_cardsim_profile *p)
{
    char line[512];
    int r = MPOS_ERR_FORMAT;
    size_t nlen;
    FILE *f;
    if (path == NULL || name == NULL || p == NULL) {
        return MPOS_ERR_ARG;
    }
    nlen = strlen(name);
    f = fopen(path, "r");
    if (f == NULL) {
        return MPOS_ERR_FORMAT;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || strncmp(line, name, nlen) != 0 || line[nlen] != '\t') {
            continue;
        }
        r = mpos_cardsim_profile_parse(line, p);
        break;
    }
    fclose(f);
    MPOS_WIPE_BUFFER(line);
    return r;
}

/* ---- RSA through OpenSSL (the card's private operations) */

static EVP_PKEY *load_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = NULL;
    if (bio != NULL) {
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    return k;
}

static int key_param(const EVP_PKEY *k, const char *name, uint8_t *out, size_t cap, size_t *len)
{
    BIGNUM *bn = NULL;
    int r = MPOS_ERR_CRYPTO;
    if (EVP_PKEY_get_bn_param(k, name, &bn) == 1) {
        int n = BN_num_bytes(bn);
        if (n > 0 && (size_t)n <= cap && BN_bn2bin(bn, out) == n) {
            *len = (size_t)n;
            r = MPOS_OK;
        }
    }
    BN_free(bn);
    return r;
}

/* out = in ^ d mod n, in and out of the modulus' length (raw RSA, no padding). */
static int rsa_private(EVP_PKEY *k, const uint8_t *in, size_t len, uint8_t *out)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);
    size_t out_len = len;
    int r = MPOS_ERR_CRYPTO;
    if (pc != NULL && EVP_PKEY_decrypt_init(pc) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(pc, RSA_NO_PADDING) == 1 &&
        EVP_PKEY_decrypt(pc, out, &out_len, in, len) == 1 && out_len == len) {
        r = MPOS_OK;
    }
    EVP_PKEY_CTX_free(pc);
    return r;
}

int mpos_cardsim_ca_key(uint8_t *index, uint8_t *mod, size_t cap, size_t *mod_len, uint8_t *exp,
                        size_t exp_cap, size_t *exp_len)
{
    EVP_PKEY *ca;
    int r;
    if (index == NULL || mod == NULL || mod_len == NULL || exp == NULL || exp_len == NULL) {
        return MPOS_ERR_ARG;
    }
    ca = load_key(mpos_cardsim_ca_key_pem);
    if (ca == NULL) {
        return MPOS_ERR_CRYPTO;
    }
    *index = MPOS_CARDSIM_CA_INDEX;
    r = key_param(ca, OSSL_PKEY_PARAM_RSA_N, mod, cap, mod_len);
    if (r == MPOS_OK) {
        r = key_param(ca, OSSL_PKEY_PARAM_RSA_E, exp, exp_cap, exp_len);
    }
    EVP_PKEY_free(ca);
    return r;
}

/* A public key certificate (Book 2 5.3 Table 6 format 02, 6.4 Table 14 / 7.1 format 04) of
 * the key (mod, exp), signed by signer (n bytes): header 6A, format, id (4-byte issuer
 * identifier or 10-byte PAN), expiry 12/49, serial, SHA-1, RSA, key length, exponent length,
 * the leftmost part of the key (pad BB), SHA-1 hash, trailer BC. The part of the key that
 * does not fit goes to rem. */
static int build_cert(EVP_PKEY *signer, size_t n, uint8_t format, const uint8_t *id, size_t id_len,
                      const uint8_t *mod, size_t mod_len, const uint8_t *exp, size_t exp_len,
                      uint8_t *cert, uint8_t *rem, size_t *rem_len)
{
    uint8_t x[256], buf[600], digest[MPOS_SHA1_LEN];
    size_t hdr = 11 + id_len, field = n - 32 - id_len, p = 0;
    int r;
    if (n > sizeof(x) || mod_len > n || mod_len > 255) {
        return MPOS_ERR_ARG;
    }
    x[p++] = 0x6A;
    x[p++] = format;
    memcpy(&x[p], id, id_len);
    p += id_len;
    x[p++] = 0x12; /* expiry MMYY */
    x[p++] = 0x49;
    x[p++] = 0x00; /* serial */
    x[p++] = 0x00;
    x[p++] = 0x01;
    x[p++] = 0x01; /* hash algorithm: SHA-1 */
    x[p++] = 0x01; /* public key algorithm: RSA */
    x[p++] = (uint8_t)mod_len;
    x[p++] = (uint8_t)exp_len;
    if (p != hdr) {
        return MPOS_ERR_ARG;
    }
    if (mod_len <= field) {
        memcpy(&x[p], mod, mod_len);
        memset(&x[p + mod_len], 0xBB, field - mod_len);
        *rem_len = 0;
    } else {
        memcpy(&x[p], mod, field);
        memcpy(rem, mod + field, mod_len - field);
        *rem_len = mod_len - field;
    }
    memcpy(buf, &x[1], n - 22);
    memcpy(&buf[n - 22], rem, *rem_len);
    memcpy(&buf[n - 22 + *rem_len], exp, exp_len);
    if ((r = mpos_sha1(buf, n - 22 + *rem_len + exp_len, digest)) != MPOS_OK) {
        return r;
    }
    memcpy(&x[n - 21], digest, MPOS_SHA1_LEN);
    x[n - 1] = 0xBC;
    return rsa_private(signer, x, n, cert);
}

/* ---- personalisation */

static int put(uint8_t *buf, size_t cap, size_t *len, uint32_t tag, const uint8_t *v, size_t n)
{
    return mpos_tlv_put(buf, cap, len, tag, v, n);
}

static void bcd_digits(uint8_t *out, const char *digits, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        out[i / 2] = (uint8_t)((digits[i] - '0') << 4 | (digits[i + 1] - '0'));
    }
}

/* cn: digits then F padding to whole bytes (or to out_len bytes). */
static size_t cn_encode(uint8_t *out, size_t out_len, const char *digits)
{
    size_t n = strlen(digits), bytes = out_len ? out_len : (n + 1) / 2;
    memset(out, 0xFF, bytes);
    for (size_t i = 0; i < n; i++) {
        uint8_t d = (uint8_t)(digits[i] - '0');
        if (i % 2 == 0) {
            out[i / 2] = (uint8_t)(d << 4 | 0x0F);
        } else {
            out[i / 2] = (uint8_t)((out[i / 2] & 0xF0) | d);
        }
    }
    return bytes;
}

static int days_in(unsigned year, unsigned month)
{
    static const uint8_t d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && year % 4 == 0 ? 29 : d[month - 1];
}

/* Opens a record: '70' template in c->recs[c->rec_count]. */
static int rec_add(mpos_cardsim *c, uint8_t sfi, uint8_t recno, const uint8_t *content, size_t len)
{
    size_t n = 0;
    if (c->rec_count >= MPOS_CARDSIM_MAX_RECS) {
        return MPOS_ERR_LENGTH;
    }
    int r = put(c->recs[c->rec_count], MPOS_CARDSIM_REC_MAX, &n, 0x70, content, len);
    if (r != MPOS_OK || n > 254) {
        return MPOS_ERR_LENGTH;
    }
    c->rec_len[c->rec_count] = n;
    c->rec_sfi[c->rec_count] = sfi;
    c->rec_no[c->rec_count] = recno;
    c->rec_count++;
    return MPOS_OK;
}

static int personalise_pin_certs(mpos_cardsim *c, uint8_t *r1, size_t *l1, uint8_t *r2, size_t *l2)
{
    EVP_PKEY *ca = load_key(mpos_cardsim_ca_key_pem);
    EVP_PKEY *iss = load_key(mpos_cardsim_iss_key_pem);
    EVP_PKEY *icc = load_key(mpos_cardsim_icc_key_pem);
    uint8_t ca_n[256], iss_n[256], iss_e[4], icc_n[256], icc_e[4], cert[256], rem[256], id[10];
    size_t ca_len = 0, iss_len = 0, iss_e_len = 0, icc_len = 0, icc_e_len = 0, rem_len = 0;
    uint8_t idx = MPOS_CARDSIM_CA_INDEX;
    int r = MPOS_ERR_CRYPTO;
    *l1 = *l2 = 0;
    if (ca == NULL || iss == NULL || icc == NULL ||
        key_param(ca, OSSL_PKEY_PARAM_RSA_N, ca_n, sizeof(ca_n), &ca_len) != MPOS_OK ||
        key_param(iss, OSSL_PKEY_PARAM_RSA_N, iss_n, sizeof(iss_n), &iss_len) != MPOS_OK ||
        key_param(iss, OSSL_PKEY_PARAM_RSA_E, iss_e, sizeof(iss_e), &iss_e_len) != MPOS_OK ||
        key_param(icc, OSSL_PKEY_PARAM_RSA_N, icc_n, sizeof(icc_n), &icc_len) != MPOS_OK ||
        key_param(icc, OSSL_PKEY_PARAM_RSA_E, icc_e, sizeof(icc_e), &icc_e_len) != MPOS_OK) {
        goto exit;
    }
    /* Issuer certificate: issuer identifier = the leftmost 6 PAN digits. */
    char bin[7];
    memcpy(bin, c->prof.pan, 6);
    bin[6] = '\0';
    cn_encode(id, 4, bin);
    if ((r = build_cert(ca, ca_len, 0x02, id, 4, iss_n, iss_len, iss_e, iss_e_len, cert, rem,
                        &rem_len)) != MPOS_OK) {
        goto exit;
    }
    if ((r = put(r1, 250, l1, 0x8F, &idx, 1)) != MPOS_OK ||
        (r = put(r1, 250, l1, 0x90, cert, ca_len)) != MPOS_OK ||
        (r = put(r1, 250, l1, 0x9F32, iss_e, iss_e_len)) != MPOS_OK ||
        (rem_len > 0 && (r = put(r1, 250, l1, 0x92, rem, rem_len)) != MPOS_OK)) {
        goto exit;
    }
    /* ICC PIN Encipherment Public Key Certificate: the PAN, padded with F to 10 bytes. */
    cn_encode(id, 10, c->prof.pan);
    if ((r = build_cert(iss, iss_len, 0x04, id, 10, icc_n, icc_len, icc_e, icc_e_len, cert, rem,
                        &rem_len)) != MPOS_OK) {
        goto exit;
    }
    if ((r = put(r2, 250, l2, 0x9F2D, cert, iss_len)) != MPOS_OK ||
        (r = put(r2, 250, l2, 0x9F2E, icc_e, icc_e_len)) != MPOS_OK ||
        (rem_len > 0 && (r = put(r2, 250, l2, 0x9F2F, rem, rem_len)) != MPOS_OK)) {
        goto exit;
    }
    c->pin_key = icc;
    icc = NULL;
    r = MPOS_OK;
exit:
    EVP_PKEY_free(ca);
    EVP_PKEY_free(iss);
    EVP_PKEY_free(icc);
    return r;
}

int mpos_cardsim_init(mpos_cardsim *c, const mpos_cardsim_profile *p, mpos_crypto_ctx *cc)
{
    static const uint8_t pdol[] = {0x9F, 0x7A, 0x01, 0x9F, 0x02, 0x06, 0x5F, 0x2A, 0x02};
    static const uint8_t cdol1[] = {0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02,
                                    0x95, 0x05, 0x5F, 0x2A, 0x02, 0x9A, 0x03, 0x9C, 0x01,
                                    0x9F, 0x37, 0x04, 0x9F, 0x21, 0x03, 0x9F, 0x4E, 0x14};
    static const uint8_t cdol2[] = {0x8A, 0x02, 0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06,
                                    0x9F, 0x1A, 0x02, 0x95, 0x05, 0x5F, 0x2A, 0x02,
                                    0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04};
    static const uint8_t iac_default[5] = {0xD8, 0x60, 0x24, 0xA8, 0x00};
    static const uint8_t iac_denial[5] = {0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t iac_online[5] = {0xD8, 0x60, 0x24, 0xF8, 0x00};
    static const uint8_t auc[2] = {0xFF, 0x00};
    static const uint8_t version[2] = {0x00, 0x30};
    static const uint8_t cny[2] = {0x01, 0x56}, usa[2] = {0x08, 0x40};
    uint8_t buf[250], t2[19], v[16];
    size_t n = 0, k;
    char digits[48];
    int r;
    if (c == NULL || p == NULL || cc == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(c, 0, sizeof(*c));
    c->prof = *p;
    c->cc = cc;
    if (!mpos_digits_valid(p->pan, 12, 19) || !mpos_digits_valid(p->expiry, 4, 4) ||
        !mpos_digits_valid(p->service_code, 3, 3) || !mpos_digits_valid(p->psn, 2, 2) ||
        !mpos_digits_valid(p->pin, 4, 12) || p->aid_len < 5 || p->aid_len > 16 ||
        p->pin_try_limit == 0 || p->pin_try_limit > 15) {
        r = MPOS_ERR_FORMAT;
        goto exit;
    }
    c->atc = p->atc_start;
    c->last_online_atc = p->atc_start;
    c->pin_tries = p->pin_try_limit;

    /* PSE: FCI and one directory record (Book 1 11.3.4, 12.2.3). */
    {
        uint8_t a5[32], e61[48];
        size_t a5n = 0, e61n = 0, rec = 0;
        static const uint8_t sfi1 = 0x01, lang[2] = {'z', 'h'}, prio = 0x01;
        if ((r = put(a5, sizeof(a5), &a5n, 0x88, &sfi1, 1)) != MPOS_OK ||
            (r = put(a5, sizeof(a5), &a5n, 0x5F2D, lang, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x84, pse_name, sizeof(pse_name) - 1)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0xA5, a5, a5n)) != MPOS_OK ||
            (r = put(c->pse_fci, sizeof(c->pse_fci), &c->pse_fci_len, 0x6F, buf, n)) != MPOS_OK) {
            goto exit;
        }
        if ((r = put(e61, sizeof(e61), &e61n, 0x4F, p->aid, p->aid_len)) != MPOS_OK ||
            (r = put(e61, sizeof(e61), &e61n, 0x50, (const uint8_t *)"TEST CARD", 9)) != MPOS_OK ||
            (r = put(e61, sizeof(e61), &e61n, 0x87, &prio, 1)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &rec, 0x61, e61, e61n)) != MPOS_OK ||
            (r = put(c->pse_rec, sizeof(c->pse_rec), &c->pse_rec_len, 0x70, buf, rec)) != MPOS_OK) {
            goto exit;
        }
    }
    /* Application FCI with the PDOL. */
    {
        uint8_t a5[64];
        size_t a5n = 0;
        static const uint8_t prio = 0x01, lang[4] = {'z', 'h', 'e', 'n'};
        n = 0;
        memcpy(c->pdol, pdol, sizeof(pdol));
        c->pdol_len = sizeof(pdol);
        if ((r = put(a5, sizeof(a5), &a5n, 0x50, (const uint8_t *)"TEST CARD", 9)) != MPOS_OK ||
            (r = put(a5, sizeof(a5), &a5n, 0x87, &prio, 1)) != MPOS_OK ||
            (r = put(a5, sizeof(a5), &a5n, 0x9F38, pdol, sizeof(pdol))) != MPOS_OK ||
            (r = put(a5, sizeof(a5), &a5n, 0x5F2D, lang, 4)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x84, p->aid, p->aid_len)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0xA5, a5, a5n)) != MPOS_OK ||
            (r = put(c->fci, sizeof(c->fci), &c->fci_len, 0x6F, buf, n)) != MPOS_OK) {
            goto exit;
        }
    }
    /* SFI 1 record 1: Track 2 Equivalent Data = PAN D YYMM service code 00000. */
    snprintf(digits, sizeof(digits), "%sD%s%s00000", p->pan, p->expiry, p->service_code);
    memset(t2, 0xFF, sizeof(t2));
    k = 0;
    for (size_t i = 0; digits[i] != '\0'; i++) {
        uint8_t d = digits[i] == 'D' ? 0x0D : (uint8_t)(digits[i] - '0');
        if (i % 2 == 0) {
            t2[i / 2] = (uint8_t)(d << 4 | 0x0F);
        } else {
            t2[i / 2] = (uint8_t)((t2[i / 2] & 0xF0) | d);
        }
        k = i / 2 + 1;
    }
    n = 0;
    if ((r = put(buf, sizeof(buf), &n, 0x57, t2, k)) != MPOS_OK ||
        (r = rec_add(c, 1, 1, buf, n)) != MPOS_OK) {
        goto exit;
    }
    /* SFI 1 record 2: PAN, dates, country, service code, PSN, usage, version, limits. */
    n = 0;
    {
        unsigned yy = (unsigned)((p->expiry[0] - '0') * 10 + (p->expiry[1] - '0'));
        unsigned mm = (unsigned)((p->expiry[2] - '0') * 10 + (p->expiry[3] - '0'));
        uint8_t exp[3], eff[3], svc[2], psn[1];
        static const uint8_t lcol = 3, ucol = 5, cexp = 2;
        if (mm < 1 || mm > 12) {
            r = MPOS_ERR_FORMAT;
            goto exit;
        }
        bcd_digits(exp, p->expiry, 4);
        int dd = days_in(2000 + yy, mm);
        exp[2] = (uint8_t)((dd / 10) << 4 | (dd % 10));
        unsigned ey = (yy + 90) % 100; /* effective ten years before */
        eff[0] = (uint8_t)((ey / 10) << 4 | (ey % 10));
        eff[1] = exp[1];
        eff[2] = 0x01;
        svc[0] = (uint8_t)(p->service_code[0] - '0');
        svc[1] = (uint8_t)((p->service_code[1] - '0') << 4 | (p->service_code[2] - '0'));
        bcd_digits(psn, p->psn, 2);
        size_t pl = cn_encode(v, 0, p->pan);
        int foreign = p->behaviour == MPOS_CARDSIM_FOREIGN_AID;
        if ((r = put(buf, sizeof(buf), &n, 0x5A, v, pl)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x5F24, exp, 3)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x5F25, eff, 3)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x5F28, foreign ? usa : cny, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x5F30, svc, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x5F34, psn, 1)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F07, auc, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F08, version, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F42, foreign ? usa : cny, 2)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F44, &cexp, 1)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F14, &lcol, 1)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F23, &ucol, 1)) != MPOS_OK ||
            (r = rec_add(c, 1, 2, buf, n)) != MPOS_OK) {
            goto exit;
        }
    }
    /* SFI 1 record 3: CVM list, Issuer Action Codes, CDOL1, CDOL2. */
    {
        uint8_t cvm[16] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t cl = 8;
        if (p->offline_pin == MPOS_CARDSIM_OFFLINE_PIN_ENCIPHERED) {
            cvm[cl++] = 0x44; /* enciphered PIN by ICC, if supported, next on failure */
            cvm[cl++] = 0x03;
        } else if (p->offline_pin == MPOS_CARDSIM_OFFLINE_PIN_PLAIN) {
            cvm[cl++] = 0x41; /* plaintext PIN by ICC */
            cvm[cl++] = 0x03;
        }
        static const uint8_t rest[6] = {0x42, 0x03, 0x1E, 0x03, 0x1F, 0x03};
        memcpy(&cvm[cl], rest, sizeof(rest));
        cl += sizeof(rest);
        memcpy(c->cdol1, cdol1, sizeof(cdol1));
        c->cdol1_len = sizeof(cdol1);
        memcpy(c->cdol2, cdol2, sizeof(cdol2));
        c->cdol2_len = sizeof(cdol2);
        if (p->iad_in_cdol2) {
            c->cdol2[c->cdol2_len++] = 0x91;
            c->cdol2[c->cdol2_len++] = p->arpc_method == 1 ? 0x0A : 0x08;
        }
        n = 0;
        if ((r = put(buf, sizeof(buf), &n, 0x8E, cvm, cl)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F0D, iac_default, 5)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F0E, iac_denial, 5)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x9F0F, iac_online, 5)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x8C, c->cdol1, c->cdol1_len)) != MPOS_OK ||
            (r = put(buf, sizeof(buf), &n, 0x8D, c->cdol2, c->cdol2_len)) != MPOS_OK ||
            (r = rec_add(c, 1, 3, buf, n)) != MPOS_OK) {
            goto exit;
        }
    }
    static const uint8_t afl1[4] = {0x08, 0x01, 0x03, 0x00};
    static const uint8_t afl2[4] = {0x10, 0x01, 0x02, 0x00};
    memcpy(c->afl, afl1, 4);
    c->afl_len = 4;
    /* SFI 2: the certificates of the PIN encipherment key. */
    if (p->offline_pin == MPOS_CARDSIM_OFFLINE_PIN_ENCIPHERED) {
        uint8_t r2[250];
        size_t l1 = 0, l2 = 0;
        if ((r = personalise_pin_certs(c, buf, &l1, r2, &l2)) != MPOS_OK ||
            (r = rec_add(c, 2, 1, buf, l1)) != MPOS_OK ||
            (r = rec_add(c, 2, 2, r2, l2)) != MPOS_OK) {
            goto exit;
        }
        memcpy(&c->afl[4], afl2, 4);
        c->afl_len = 8;
    }
    /* AIP: cardholder verification, terminal risk management, issuer authentication. */
    c->aip[0] = 0x1C;
    c->aip[1] = 0x00;
    r = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(digits);
    MPOS_WIPE_BUFFER(t2);
    MPOS_WIPE_BUFFER(v);
    MPOS_WIPE_BUFFER(buf);
    if (r != MPOS_OK) {
        mpos_cardsim_clear(c);
    }
    return r;
}

void mpos_cardsim_clear(mpos_cardsim *c)
{
    if (c == NULL) {
        return;
    }
    EVP_PKEY_free(c->pin_key);
    mpos_cleanse(c, sizeof(*c));
}

uint8_t mpos_cardsim_pin_tries(const mpos_cardsim *c)
{
    return c->pin_tries;
}

uint16_t mpos_cardsim_atc(const mpos_cardsim *c)
{
    return c->atc;
}

/* ---- session */

static void reset_session(mpos_cardsim *c)
{
    c->gpo_done = 0;
    c->gac_state = 0;
    c->issuer_auth = 0;
    c->offline_pin_ok = 0;
    c->challenge_valid = 0;
    MPOS_WIPE_BUFFER(c->challenge);
    MPOS_WIPE_BUFFER(c->sk);
    MPOS_WIPE_BUFFER(c->arqc);
    memset(c->cvr, 0, sizeof(c->cvr));
}

int mpos_cardsim_power_on(mpos_cardsim *c, uint8_t atr[MPOS_CARDSIM_ATR_MAX], size_t *atr_len)
{
    if (c == NULL || atr == NULL || atr_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *atr_len = 0;
    if (!c->prof.has_chip) {
        return MPOS_CARDSIM_NO_CHIP;
    }
    if (c->prof.mute) {
        return MPOS_CARDSIM_MUTE;
    }
    c->powered = 1;
    c->selected = SEL_NONE;
    reset_session(c);
    memcpy(atr, atr_t1, sizeof(atr_t1));
    *atr_len = sizeof(atr_t1);
    return 0;
}

void mpos_cardsim_power_off(mpos_cardsim *c)
{
    if (c != NULL) {
        c->powered = 0;
        c->selected = SEL_NONE;
        reset_session(c);
    }
}

/* The response being built. */
struct rsp {
    uint8_t *buf;
    size_t cap;
    size_t len;
};

static int answer(struct rsp *o, const uint8_t *data, size_t len, uint16_t sw)
{
    if (len + 2 > o->cap || len + 2 > MPOS_CARDSIM_RAPDU_MAX) {
        return MPOS_ERR_LENGTH;
    }
    if (len > 0) {
        memcpy(o->buf, data, len);
    }
    o->buf[len] = (uint8_t)(sw >> 8);
    o->buf[len + 1] = (uint8_t)sw;
    o->len = len + 2;
    return 0;
}

static int sw_only(struct rsp *o, uint16_t sw)
{
    return answer(o, NULL, 0, sw);
}

static int cmd_select(mpos_cardsim *c, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
                      struct rsp *o)
{
    if (p1 != 0x04 || (p2 != 0x00 && p2 != 0x02)) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    c->selected = SEL_NONE;
    reset_session(c);
    if (p2 == 0x00 && c->prof.pse && lc == sizeof(pse_name) - 1 &&
        memcmp(data, pse_name, lc) == 0) {
        c->selected = SEL_PSE;
        return answer(o, c->pse_fci, c->pse_fci_len, SW_OK);
    }
    /* First occurrence of a (possibly partial) DF name; there is only one application. */
    if (p2 == 0x00 && lc >= 5 && lc <= c->prof.aid_len && memcmp(data, c->prof.aid, lc) == 0) {
        c->selected = SEL_APP;
        return answer(o, c->fci, c->fci_len, SW_OK);
    }
    return sw_only(o, SW_NOT_FOUND);
}

static int cmd_read_record(mpos_cardsim *c, uint8_t p1, uint8_t p2, struct rsp *o)
{
    uint8_t sfi = p2 >> 3;
    if ((p2 & 0x07) != 0x04 || p1 == 0) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    if (c->selected == SEL_PSE) {
        if (sfi != 1) {
            return sw_only(o, SW_NOT_FOUND);
        }
        return p1 == 1 ? answer(o, c->pse_rec, c->pse_rec_len, SW_OK)
                       : sw_only(o, SW_RECORD_NOT_FOUND);
    }
    if (c->selected != SEL_APP) {
        return sw_only(o, SW_CONDITIONS);
    }
    int sfi_known = 0;
    for (size_t i = 0; i < c->rec_count; i++) {
        if (c->rec_sfi[i] == sfi) {
            sfi_known = 1;
            if (c->rec_no[i] == p1) {
                return answer(o, c->recs[i], c->rec_len[i], SW_OK);
            }
        }
    }
    return sw_only(o, sfi_known ? SW_RECORD_NOT_FOUND : SW_NOT_FOUND);
}

static int cmd_gpo(mpos_cardsim *c, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
                   struct rsp *o)
{
    uint8_t out[64], inner[32];
    size_t n = 0, in = 0, pdol_data = 0, count = 0;
    if (p1 != 0 || p2 != 0) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    if (c->selected != SEL_APP || c->gpo_done) {
        return sw_only(o, SW_CONDITIONS);
    }
    if (mpos_tlv_dol_parse(c->pdol, c->pdol_len, NULL, 0, &count, &pdol_data) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    /* Command template '83' with exactly the PDOL data. */
    if (lc < 2 || data[0] != 0x83 || data[1] != lc - 2 || data[1] != pdol_data) {
        return sw_only(o, SW_WRONG_LENGTH);
    }
    if (c->atc == 0xFFFF) {
        return sw_only(o, SW_CONDITIONS);
    }
    c->atc++;
    c->gpo_done = 1;
    if (c->prof.gpo_format == 1) {
        memcpy(inner, c->aip, 2);
        memcpy(&inner[2], c->afl, c->afl_len);
        if (put(out, sizeof(out), &n, 0x80, inner, 2 + c->afl_len) != MPOS_OK) {
            return MPOS_ERR_LENGTH;
        }
    } else {
        if (put(inner, sizeof(inner), &in, 0x82, c->aip, 2) != MPOS_OK ||
            put(inner, sizeof(inner), &in, 0x94, c->afl, c->afl_len) != MPOS_OK ||
            put(out, sizeof(out), &n, 0x77, inner, in) != MPOS_OK) {
            return MPOS_ERR_LENGTH;
        }
    }
    return answer(o, out, n, SW_OK);
}

static int cmd_get_data(mpos_cardsim *c, uint8_t p1, uint8_t p2, struct rsp *o)
{
    uint8_t out[8];
    uint32_t tag = (uint32_t)p1 << 8 | p2;
    if (c->selected != SEL_APP) {
        return sw_only(o, SW_CONDITIONS);
    }
    out[0] = p1;
    out[1] = p2;
    switch (tag) {
    case 0x9F36:
        out[2] = 2;
        mpos_store_be16(&out[3], c->atc);
        return answer(o, out, 5, SW_OK);
    case 0x9F13:
        out[2] = 2;
        mpos_store_be16(&out[3], c->last_online_atc);
        return answer(o, out, 5, SW_OK);
    case 0x9F17:
        out[2] = 1;
        out[3] = c->pin_tries;
        return answer(o, out, 4, SW_OK);
    default:
        return sw_only(o, SW_DATA_NOT_FOUND);
    }
}

static int cmd_get_challenge(mpos_cardsim *c, uint8_t p1, uint8_t p2, struct rsp *o)
{
    if (p1 != 0 || p2 != 0) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    if (mpos_random_bytes(c->challenge, sizeof(c->challenge)) != MPOS_OK) {
        return MPOS_ERR_RNG;
    }
    c->challenge_valid = 1;
    return answer(o, c->challenge, sizeof(c->challenge), SW_OK);
}

/* Book 3 6.5.12 Table 24: the plaintext PIN block the card expects for its PIN. */
static void expected_block(const char *pin, uint8_t block[8])
{
    size_t n = strlen(pin);
    memset(block, 0xFF, 8);
    block[0] = (uint8_t)(0x20 | n);
    for (size_t i = 0; i < n; i++) {
        size_t nib = 2 + i;
        uint8_t d = (uint8_t)(pin[i] - '0');
        if (nib % 2 == 0) {
            block[nib / 2] = (uint8_t)(d << 4 | (block[nib / 2] & 0x0F));
        } else {
            block[nib / 2] = (uint8_t)((block[nib / 2] & 0xF0) | d);
        }
    }
}

/* A well-formed plaintext PIN block: control 2, length 4..12, digits, F filler. */
static int block_well_formed(const uint8_t b[8])
{
    unsigned n = b[0] & 0x0Fu;
    if ((b[0] >> 4) != 0x2 || n < 4 || n > 12) {
        return 0;
    }
    for (unsigned i = 0; i < 14; i++) {
        unsigned nib = 2 + i;
        unsigned d = nib % 2 == 0 ? (unsigned)(b[nib / 2] >> 4) : (unsigned)(b[nib / 2] & 0x0F);
        if ((i < n && d > 9) || (i >= n && d != 0x0F)) {
            return 0;
        }
    }
    return 1;
}

static int cmd_verify(mpos_cardsim *c, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
                      struct rsp *o)
{
    uint8_t block[8], expect[8], plain[256];
    int r;
    if (p1 != 0 || (p2 != 0x80 && p2 != 0x88)) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    if (c->selected != SEL_APP) {
        return sw_only(o, SW_CONDITIONS);
    }
    if (lc == 0) {
        /* ISO/IEC 7816-4 7.5.6: no data asks for the number of tries left. */
        return sw_only(o, c->pin_tries == 0 ? SW_PIN_BLOCKED : (uint16_t)(0x63C0u | c->pin_tries));
    }
    if (c->pin_tries == 0) {
        return sw_only(o, SW_PIN_BLOCKED);
    }
    if (p2 == 0x80) {
        if (lc != 8) {
            return sw_only(o, SW_WRONG_LENGTH);
        }
        memcpy(block, data, 8);
    } else {
        /* Book 2 7.2: decipher, check the header and the challenge, take the PIN block. */
        int ok =
            c->pin_key != NULL && c->challenge_valid && lc == (size_t)EVP_PKEY_get_size(c->pin_key);
        c->challenge_valid = 0;
        if (!ok || rsa_private(c->pin_key, data, lc, plain) != MPOS_OK || plain[0] != 0x7F ||
            !mpos_ct_equal(&plain[9], c->challenge, 8)) {
            MPOS_WIPE_BUFFER(plain);
            return sw_only(o, SW_WRONG_DATA);
        }
        memcpy(block, &plain[1], 8);
        MPOS_WIPE_BUFFER(plain);
    }
    if (!block_well_formed(block)) {
        r = sw_only(o, SW_WRONG_DATA);
        goto exit;
    }
    expected_block(c->prof.pin, expect);
    if (mpos_ct_equal(block, expect, 8)) {
        c->pin_tries = c->prof.pin_try_limit;
        c->offline_pin_ok = 1;
        c->cvr[0] |= 0x04; /* offline PIN performed */
        r = sw_only(o, SW_OK);
    } else {
        c->pin_tries--;
        c->cvr[0] |= 0x06; /* offline PIN performed and failed */
        r = sw_only(o, (uint16_t)(0x63C0u | c->pin_tries));
    }
exit:
    MPOS_WIPE_BUFFER(block);
    MPOS_WIPE_BUFFER(expect);
    return r;
}

/* The value of tag in DOL data built for dol (data must be exactly the DOL's size). */
static int dol_value(const uint8_t *dol, size_t dol_len, const uint8_t *data, uint32_t tag,
                     const uint8_t **v, size_t *len)
{
    mpos_tlv_dol_entry e[24];
    size_t count = 0, off = 0;
    if (mpos_tlv_dol_parse(dol, dol_len, e, 24, &count, NULL) != MPOS_OK) {
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        if (e[i].tag == tag) {
            *v = data + off;
            *len = e[i].len;
            return 1;
        }
        off += e[i].len;
    }
    return 0;
}

static int arc_approves(const uint8_t arc[2])
{
    return (arc[0] == '0' && arc[1] == '0') || (arc[0] == '1' && arc[1] == '0') ||
           (arc[0] == '1' && arc[1] == '1');
}

/* Issuer authentication (Book 2 8.2; method 1 ARPC || ARC, method 2 ARPC || CSU). */
static void issuer_auth(mpos_cardsim *c, const uint8_t *iad, size_t len)
{
    enum mpos_emv_arpc_method m =
        c->prof.arpc_method == 2 ? MPOS_EMV_ARPC_METHOD_2 : MPOS_EMV_ARPC_METHOD_1;
    int ok =
        mpos_emv_issuer_auth_verify(c->cc, m, c->sk, sizeof(c->sk), c->arqc, iad, len) == MPOS_OK;
    c->issuer_auth = ok ? 1 : -1;
    if (!ok) {
        c->cvr[0] |= 0x08; /* issuer authentication performed and failed */
    }
}

static int cmd_generate_ac(mpos_cardsim *c, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
                           struct rsp *o)
{
    const uint8_t *dol = c->gac_state == 0 ? c->cdol1 : c->cdol2;
    size_t dol_len = c->gac_state == 0 ? c->cdol1_len : c->cdol2_len;
    size_t need = 0, count = 0, ac_len = 0, n = 0, in = 0;
    uint8_t type = p1 & 0xC0, ac_data[MPOS_EMV_AC_DATA_MAX_LEN], ac[8], iad[8];
    uint8_t out[64], inner[48], cid;
    struct mpos_emv_ac_fields f;
    const uint8_t *v;
    size_t vl;
    int r;

    if ((p1 & 0x3F) != 0 || p2 != 0 || type == 0xC0) {
        return sw_only(o, SW_WRONG_P1P2); /* no CDA, no RFU */
    }
    if (c->selected != SEL_APP || !c->gpo_done || c->gac_state == 2) {
        return sw_only(o, SW_CONDITIONS);
    }
    if (mpos_tlv_dol_parse(dol, dol_len, NULL, 0, &count, &need) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (lc != need) {
        return sw_only(o, SW_WRONG_LENGTH);
    }
    memset(&f, 0, sizeof(f));
    for (size_t i = 0; i < MPOS_EMV_AC_FIELD_COUNT; i++) {
        uint32_t tag = mpos_emv_ac_field_tags[i];
        if (!dol_value(dol, dol_len, data, tag, &v, &vl) ||
            mpos_emv_ac_field_set(&f, tag, v, vl) != MPOS_OK) {
            /* Absent, or of another length: the field stays zero. */
            continue;
        }
    }
    /* AIP and ATC are the card's own, whatever the CDOL carried. */
    memcpy(f.aip, c->aip, 2);
    mpos_store_be16(f.atc, c->atc);

    if (c->gac_state == 0) {
        /* First GENERATE AC: the card always wants to go online (Book 3 9.3: never more
         * than asked): AAC asked gives AAC, ARQC or TC asked gives ARQC. */
        cid = type == 0x00 ? 0x00 : 0x80;
        c->cvr[0] = (uint8_t)((c->cvr[0] & 0x0F) | 0x80 | (cid == 0x80 ? 0x20 : 0x00));
        if ((r = mpos_emv_derive_ac_sk(c->cc, c->prof.imk, sizeof(c->prof.imk), c->prof.pan,
                                       c->prof.psn, f.atc, c->sk)) != MPOS_OK) {
            goto exit;
        }
    } else {
        if (type == 0x80) {
            r = sw_only(o, SW_WRONG_P1P2);
            goto exit;
        }
        /* Second GENERATE AC: issuer authentication in CDOL2 when personalised so. */
        const uint8_t *arc = NULL;
        size_t arc_len = 0;
        if (c->prof.iad_in_cdol2 && dol_value(dol, dol_len, data, 0x91, &v, &vl)) {
            uint8_t any = 0;
            for (size_t i = 0; i < vl; i++) {
                any |= v[i];
            }
            if (any != 0 && c->issuer_auth == 0) {
                issuer_auth(c, v, vl);
            }
        }
        int approve = type == 0x40;
        if (!dol_value(dol, dol_len, data, 0x8A, &arc, &arc_len) || arc_len != 2 ||
            !arc_approves(arc)) {
            approve = 0;
        }
        if (c->prof.issuer_auth_required && c->issuer_auth != 1) {
            approve = 0;
        }
        if (c->prof.decline_at_gac2) {
            approve = 0;
        }
        cid = approve ? 0x40 : 0x00;
        c->cvr[0] = (uint8_t)((c->cvr[0] & 0x3F) | (approve ? 0x40 : 0x00));
        if (approve && c->issuer_auth == 1) {
            c->last_online_atc = c->atc; /* an online transaction completed */
        }
    }
    f.iad_part = NULL;
    iad[0] = 0x07; /* length of what follows */
    iad[1] = 0x01; /* derivation key index */
    iad[2] = 0x01; /* cryptogram version */
    iad[3] = 0x03; /* CVR: its length, then 3 bytes */
    memcpy(&iad[4], c->cvr, 3);
    iad[7] = 0x01;        /* algorithm: TDES */
    f.iad_part = &iad[3]; /* PBOC: the CVR (length byte included) ends the AC data */
    f.iad_part_len = 4;
    if ((r = mpos_emv_ac_data_build(&f, ac_data, sizeof(ac_data), &ac_len)) != MPOS_OK ||
        (r = mpos_emv_ac_generate(c->cc, c->sk, sizeof(c->sk), ac_data, ac_len, ac)) != MPOS_OK) {
        goto exit;
    }
    if (c->gac_state == 0) {
        memcpy(c->arqc, ac, 8);
    }
    c->gac_state = (c->gac_state == 0 && cid == 0x80) ? 1 : 2;
    if (c->prof.gac_format == 1) {
        inner[0] = cid;
        memcpy(&inner[1], f.atc, 2);
        memcpy(&inner[3], ac, 8);
        memcpy(&inner[11], iad, sizeof(iad));
        r = put(out, sizeof(out), &n, 0x80, inner, 11 + sizeof(iad));
    } else {
        if ((r = put(inner, sizeof(inner), &in, 0x9F27, &cid, 1)) == MPOS_OK &&
            (r = put(inner, sizeof(inner), &in, 0x9F36, f.atc, 2)) == MPOS_OK &&
            (r = put(inner, sizeof(inner), &in, 0x9F26, ac, 8)) == MPOS_OK &&
            (r = put(inner, sizeof(inner), &in, 0x9F10, iad, sizeof(iad))) == MPOS_OK) {
            r = put(out, sizeof(out), &n, 0x77, inner, in);
        }
    }
    if (r == MPOS_OK) {
        r = answer(o, out, n, SW_OK);
    }
exit:
    MPOS_WIPE_BUFFER(ac_data);
    return r;
}

static int cmd_external_auth(mpos_cardsim *c, uint8_t p1, uint8_t p2, const uint8_t *data,
                             size_t lc, struct rsp *o)
{
    if (p1 != 0 || p2 != 0) {
        return sw_only(o, SW_WRONG_P1P2);
    }
    /* Once, after an ARQC and before the second GENERATE AC (Book 3 6.5.4). */
    if (c->selected != SEL_APP || c->gac_state != 1 || c->issuer_auth != 0) {
        return sw_only(o, SW_CONDITIONS);
    }
    if (lc < 8 || lc > 16) {
        return sw_only(o, SW_WRONG_LENGTH);
    }
    issuer_auth(c, data, lc);
    return sw_only(o, c->issuer_auth == 1 ? SW_OK : SW_AUTH_FAILED);
}

int mpos_cardsim_process(mpos_cardsim *c, const uint8_t *capdu, size_t capdu_len, uint8_t *rapdu,
                         size_t cap, size_t *rapdu_len)
{
    struct rsp o;
    const uint8_t *data = NULL;
    size_t lc = 0;
    int r;
    if (c == NULL || capdu == NULL || rapdu == NULL || rapdu_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *rapdu_len = 0;
    if (!c->prof.has_chip) {
        return MPOS_CARDSIM_NO_CHIP;
    }
    if (c->prof.mute || !c->powered) {
        return MPOS_CARDSIM_MUTE;
    }
    if (cap < 2) {
        return MPOS_ERR_LENGTH;
    }
    o.buf = rapdu;
    o.cap = cap;
    o.len = 0;
    /* ISO/IEC 7816-3 12.1: cases 1 to 4, short length fields. */
    if (capdu_len < 4) {
        r = sw_only(&o, SW_WRONG_LENGTH);
        goto done;
    }
    if (capdu_len > 5) {
        lc = capdu[4];
        if (lc == 0 || (capdu_len != 5 + lc && capdu_len != 6 + lc)) {
            r = sw_only(&o, SW_WRONG_LENGTH);
            goto done;
        }
        data = &capdu[5];
    }
    uint8_t cla = capdu[0], ins = capdu[1], p1 = capdu[2], p2 = capdu[3];
    uint16_t cmd = (uint16_t)(cla << 8 | ins);
    switch (cmd) {
    case 0x00A4:
        r = cmd_select(c, p1, p2, data, lc, &o);
        break;
    case 0x00B2:
        r = cmd_read_record(c, p1, p2, &o);
        break;
    case 0x80A8:
        r = cmd_gpo(c, p1, p2, data, lc, &o);
        break;
    case 0x80CA:
        r = cmd_get_data(c, p1, p2, &o);
        break;
    case 0x0084:
        r = cmd_get_challenge(c, p1, p2, &o);
        break;
    case 0x0020:
        r = cmd_verify(c, p1, p2, data, lc, &o);
        break;
    case 0x80AE:
        r = cmd_generate_ac(c, p1, p2, data, lc, &o);
        break;
    case 0x0082:
        r = cmd_external_auth(c, p1, p2, data, lc, &o);
        break;
    default:
        r = sw_only(&o, (cla == 0x00 || cla == 0x80) ? SW_INS_NOT_SUPPORTED : SW_CLA_NOT_SUPPORTED);
        break;
    }
done:
    if (r != 0) {
        return r;
    }
    *rapdu_len = o.len;
    return 0;
}
