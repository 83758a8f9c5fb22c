/* openmpos terminal core: the signed EMV parameter package (params.h, docs/protocol.md 3). */
#include <string.h>

#include "keystore/keystore_record.h"
#include "mpos/provision.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "params.h"

/* Tags (docs/protocol.md 3.2). Primitive tags are reused inside different templates. */
#define T_PACKAGE     0xE3u
#define T_SIGNED      0xE4u
#define T_ENDORSEMENT 0xE5u
#define T_ENDORSED    0xE6u
#define T_AID         0xE7u
#define T_CAPK        0xE8u
#define T_ANCHOR_SIG  0xCAu
#define T_PACKAGE_SIG 0xCBu
#define T_C(n)        (0xC0u + (n))

#define PARAMS_LABEL_ENC "openmpos params v1 encryption"
#define PARAMS_LABEL_MAC "openmpos params v1 authentication"

enum { ST_CLOSED = 0, ST_OPEN = 1, ST_FAILED = 2 };

_Static_assert(MPOS_PARAMS_COUNTER < MPOS_HAL_COUNTERS, "params counter");
_Static_assert(MPOS_PARAMS_MAX_LEN <= KS_BODY_MAX, "params record");
_Static_assert(MPOS_PARAMS_CAPK_MAX_MOD <= MPOS_RSA_MAX_MOD_LEN, "CA key modulus");

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* 1 if the len bytes are packed BCD (EMV Book 3 4.3, format n), each nibble 0..9. */
static int is_bcd(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((p[i] >> 4) > 9 || (p[i] & 0x0Fu) > 9) {
            return 0;
        }
    }
    return 1;
}

/* n3 in two bytes (ISO 3166-1 / ISO 4217 numeric): 0001..0999. */
static int n3_valid(const uint8_t v[2])
{
    return is_bcd(v, 2) && (v[0] >> 4) == 0 && (v[0] != 0 || v[1] != 0);
}

static unsigned bcd2(uint8_t b)
{
    return (unsigned)(b >> 4) * 10u + (b & 0x0Fu);
}

/* YYYYMMDD (2000..2099, month 1..12, day 1..31) as a number, from/to 4 BCD bytes. */
static int expiry_valid(uint32_t d)
{
    uint32_t y = d / 10000u, m = d / 100u % 100u, day = d % 100u;
    return y >= 2000u && y <= 2099u && m >= 1u && m <= 12u && day >= 1u && day <= 31u;
}

static void expiry_store(uint8_t out[4], uint32_t d)
{
    for (int i = 3; i >= 0; i--) {
        unsigned lo = d % 10u;
        d /= 10u;
        unsigned hi = d % 10u;
        d /= 10u;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int hal_rc(int rc)
{
    return rc > 0 ? MPOS_ERR_IO : rc;
}

/* ---- field rules (shared by the parser and the builder) --------------------------------- */

static int endorsement_valid(const mpos_params_endorsement *e)
{
    return e->usage != 0 && e->not_before >= 0 && e->not_after >= e->not_before &&
           e->pub[0] == 0x04;
}

static int aid_valid(const mpos_params_aid *a)
{
    return a->aid_len >= MPOS_EMV_AID_MIN_LEN && a->aid_len <= MPOS_EMV_AID_MAX_LEN &&
           (a->partial == 0 || a->partial == 1) && a->txn_limit <= MPOS_PARAMS_MAX_TXN_LIMIT &&
           (a->txn_limit == 0 || a->floor_limit <= a->txn_limit);
}

/* EMV 4.3 Book 2 5.1 / 11.2.2: modulus up to 1984 bits, exponent 3 or 2^16 + 1. */
static int capk_valid(const mpos_params_capk *k)
{
    static const uint8_t f4[3] = {0x01, 0x00, 0x01};
    return k->modulus_len >= MPOS_PARAMS_CAPK_MIN_MOD &&
           k->modulus_len <= MPOS_PARAMS_CAPK_MAX_MOD && k->modulus[0] != 0 &&
           (k->modulus[k->modulus_len - 1] & 1u) != 0 &&
           ((k->exponent_len == 1 && k->exponent[0] == 0x03) ||
            (k->exponent_len == 3 && memcmp(k->exponent, f4, 3) == 0)) &&
           expiry_valid(k->expiry);
}

static int params_valid(const mpos_params *p)
{
    if (p->version == 0 || p->issued < 0 || p->aid_count == 0 ||
        p->aid_count > MPOS_PARAMS_MAX_AIDS || p->capk_count > MPOS_PARAMS_MAX_CAPKS ||
        !n3_valid(p->country) || !n3_valid(p->currency) || p->currency_exponent > 3 ||
        (p->has_mcc != 0 && p->has_mcc != 1) || (p->has_mcc && !is_bcd(p->mcc, 2))) {
        return 0;
    }
    for (size_t i = 0; i < p->aid_count; i++) {
        if (!aid_valid(&p->aids[i])) {
            return 0;
        }
        for (size_t j = 0; j < i; j++) {
            if (p->aids[j].aid_len == p->aids[i].aid_len &&
                memcmp(p->aids[j].aid, p->aids[i].aid, p->aids[i].aid_len) == 0) {
                return 0;
            }
        }
    }
    for (size_t i = 0; i < p->capk_count; i++) {
        if (!capk_valid(&p->capks[i])) {
            return 0;
        }
        for (size_t j = 0; j < i; j++) {
            if (p->capks[j].index == p->capks[i].index &&
                memcmp(p->capks[j].rid, p->capks[i].rid, 5) == 0) {
                return 0;
            }
        }
    }
    return 1;
}

/* ---- parsing ---------------------------------------------------------------------------- */

/* The next object of it must be tag (primitive or constructed as the tag says). */
static int expect(mpos_tlv_iter *it, uint32_t tag, mpos_tlv *o)
{
    if (!mpos_tlv_more(it) || mpos_tlv_next(it, o) != MPOS_OK || o->tag != tag) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

/* A primitive field of length min..max; its value in *o. */
static int field(mpos_tlv_iter *it, uint32_t tag, size_t min, size_t max, mpos_tlv *o)
{
    int rc = expect(it, tag, o);
    if (rc == MPOS_OK && (o->len < min || o->len > max)) {
        rc = MPOS_ERR_FORMAT;
    }
    return rc;
}

/* 1 if the next object of it has this tag (the cursor does not move). */
static int next_is(const mpos_tlv_iter *it, uint32_t tag)
{
    mpos_tlv_iter copy = *it;
    mpos_tlv o;
    return mpos_tlv_more(&copy) && mpos_tlv_next(&copy, &o) == MPOS_OK && o.tag == tag;
}

static int format_field(mpos_tlv_iter *it)
{
    mpos_tlv o;
    int rc = field(it, T_C(1), 1, 1, &o);
    if (rc == MPOS_OK && o.value[0] != MPOS_PARAMS_FORMAT) {
        rc = MPOS_ERR_UNSUPPORTED;
    }
    return rc;
}

static int time_field(mpos_tlv_iter *it, uint32_t tag, int64_t *t)
{
    mpos_tlv o;
    int rc = field(it, tag, 8, 8, &o);
    if (rc == MPOS_OK) {
        uint64_t v = load_be64(o.value);
        if (v > (uint64_t)INT64_MAX) {
            return MPOS_ERR_FORMAT;
        }
        *t = (int64_t)v;
    }
    return rc;
}

static int parse_endorsement(const mpos_tlv *e5, mpos_params_package *out)
{
    mpos_params_endorsement *e = &out->endorsement;
    mpos_tlv_iter it, in;
    mpos_tlv e6, o;
    int rc;
    mpos_tlv_iter_init(&it, e5->value, e5->len, MPOS_TLV_STRICT);
    if ((rc = expect(&it, T_ENDORSED, &e6)) != MPOS_OK) {
        return rc;
    }
    out->endorsed = e6.raw;
    out->endorsed_len = e6.raw_len;
    mpos_tlv_iter_init(&in, e6.value, e6.len, MPOS_TLV_STRICT);
    if ((rc = format_field(&in)) != MPOS_OK || (rc = field(&in, T_C(2), 1, 1, &o)) != MPOS_OK) {
        return rc;
    }
    e->usage = o.value[0];
    if ((rc = time_field(&in, T_C(3), &e->not_before)) != MPOS_OK ||
        (rc = time_field(&in, T_C(4), &e->not_after)) != MPOS_OK ||
        (rc = field(&in, T_C(5), MPOS_EC_P256_PUB_LEN, MPOS_EC_P256_PUB_LEN, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(e->pub, o.value, MPOS_EC_P256_PUB_LEN);
    if (mpos_tlv_more(&in) ||
        (rc = field(&it, T_ANCHOR_SIG, MPOS_ECDSA_P256_SIG_LEN, MPOS_ECDSA_P256_SIG_LEN, &o)) !=
            MPOS_OK ||
        mpos_tlv_more(&it)) {
        return rc != MPOS_OK ? rc : MPOS_ERR_FORMAT;
    }
    memcpy(e->sig, o.value, MPOS_ECDSA_P256_SIG_LEN);
    return endorsement_valid(e) ? MPOS_OK : MPOS_ERR_FORMAT;
}

static int parse_aid(const mpos_tlv *e7, mpos_params_aid *a)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int rc;
    mpos_tlv_iter_init(&it, e7->value, e7->len, MPOS_TLV_STRICT);
    if ((rc = field(&it, T_C(1), MPOS_EMV_AID_MIN_LEN, MPOS_EMV_AID_MAX_LEN, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(a->aid, o.value, o.len);
    a->aid_len = o.len;
    if ((rc = field(&it, T_C(2), 1, 1, &o)) != MPOS_OK) {
        return rc;
    }
    if (o.value[0] > 1) {
        return MPOS_ERR_FORMAT;
    }
    a->partial = o.value[0];
    if ((rc = field(&it, T_C(3), 2, 2, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(a->app_version, o.value, 2);
    uint8_t *tacs[3] = {a->tac_denial, a->tac_online, a->tac_default};
    for (unsigned i = 0; i < 3; i++) {
        if ((rc = field(&it, T_C(4 + i), MPOS_EMV_TAC_LEN, MPOS_EMV_TAC_LEN, &o)) != MPOS_OK) {
            return rc;
        }
        memcpy(tacs[i], o.value, MPOS_EMV_TAC_LEN);
    }
    if ((rc = field(&it, T_C(7), 4, 4, &o)) != MPOS_OK) {
        return rc;
    }
    a->floor_limit = mpos_load_be32(o.value);
    if ((rc = field(&it, T_C(8), 8, 8, &o)) != MPOS_OK) {
        return rc;
    }
    a->txn_limit = load_be64(o.value);
    return mpos_tlv_more(&it) ? MPOS_ERR_FORMAT : MPOS_OK;
}

static int parse_capk(const mpos_tlv *e8, mpos_params_capk *k)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int rc;
    mpos_tlv_iter_init(&it, e8->value, e8->len, MPOS_TLV_STRICT);
    if ((rc = field(&it, T_C(1), 5, 5, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(k->rid, o.value, 5);
    if ((rc = field(&it, T_C(2), 1, 1, &o)) != MPOS_OK) {
        return rc;
    }
    k->index = o.value[0];
    if ((rc = field(&it, T_C(3), MPOS_PARAMS_CAPK_MIN_MOD, MPOS_PARAMS_CAPK_MAX_MOD, &o)) !=
        MPOS_OK) {
        return rc;
    }
    memcpy(k->modulus, o.value, o.len);
    k->modulus_len = o.len;
    if ((rc = field(&it, T_C(4), 1, 3, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(k->exponent, o.value, o.len);
    k->exponent_len = o.len;
    if ((rc = field(&it, T_C(5), 4, 4, &o)) != MPOS_OK) {
        return rc;
    }
    if (!is_bcd(o.value, 4)) {
        return MPOS_ERR_FORMAT;
    }
    k->expiry = 0;
    for (size_t i = 0; i < 4; i++) {
        k->expiry = k->expiry * 100u + bcd2(o.value[i]);
    }
    return mpos_tlv_more(&it) ? MPOS_ERR_FORMAT : MPOS_OK;
}

static int parse_signed(const mpos_tlv *e4, mpos_params *p)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int rc;
    mpos_tlv_iter_init(&it, e4->value, e4->len, MPOS_TLV_STRICT);
    if ((rc = format_field(&it)) != MPOS_OK || (rc = field(&it, T_C(2), 4, 4, &o)) != MPOS_OK) {
        return rc;
    }
    p->version = mpos_load_be32(o.value);
    if ((rc = time_field(&it, T_C(3), &p->issued)) != MPOS_OK ||
        (rc = field(&it, T_C(4), 4, 4, &o)) != MPOS_OK) {
        return rc;
    }
    p->min_firmware = mpos_load_be32(o.value);
    if ((rc = field(&it, T_C(5), 2, 2, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(p->country, o.value, 2);
    if ((rc = field(&it, T_C(6), 2, 2, &o)) != MPOS_OK) {
        return rc;
    }
    memcpy(p->currency, o.value, 2);
    if ((rc = field(&it, T_C(7), 1, 1, &o)) != MPOS_OK) {
        return rc;
    }
    p->currency_exponent = o.value[0];
    if (next_is(&it, T_C(8))) {
        if ((rc = field(&it, T_C(8), 2, 2, &o)) != MPOS_OK) {
            return rc;
        }
        p->has_mcc = 1;
        memcpy(p->mcc, o.value, 2);
    }
    while (next_is(&it, T_AID)) {
        if (p->aid_count == MPOS_PARAMS_MAX_AIDS) {
            return MPOS_ERR_FORMAT;
        }
        if ((rc = expect(&it, T_AID, &o)) != MPOS_OK ||
            (rc = parse_aid(&o, &p->aids[p->aid_count])) != MPOS_OK) {
            return rc;
        }
        p->aid_count++;
    }
    while (next_is(&it, T_CAPK)) {
        if (p->capk_count == MPOS_PARAMS_MAX_CAPKS) {
            return MPOS_ERR_FORMAT;
        }
        if ((rc = expect(&it, T_CAPK, &o)) != MPOS_OK ||
            (rc = parse_capk(&o, &p->capks[p->capk_count])) != MPOS_OK) {
            return rc;
        }
        p->capk_count++;
    }
    if (mpos_tlv_more(&it) || !params_valid(p)) {
        return MPOS_ERR_FORMAT;
    }
    return MPOS_OK;
}

int mpos_params_parse(const uint8_t *buf, size_t len, mpos_params_package *out)
{
    mpos_tlv_iter top, it;
    mpos_tlv e3, o;
    int rc = MPOS_ERR_ARG;
    if (out == NULL) {
        return rc;
    }
    memset(out, 0, sizeof(*out));
    if (buf == NULL) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (len == 0 || len > MPOS_PARAMS_MAX_LEN) {
        goto exit;
    }
    /* One E3 spanning the buffer: E5, E4, CB in that order and nothing else. */
    mpos_tlv_iter_init(&top, buf, len, MPOS_TLV_STRICT);
    if ((rc = expect(&top, T_PACKAGE, &e3)) != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    if (mpos_tlv_more(&top)) {
        goto exit;
    }
    mpos_tlv_iter_init(&it, e3.value, e3.len, MPOS_TLV_STRICT);
    if ((rc = expect(&it, T_ENDORSEMENT, &o)) != MPOS_OK ||
        (rc = parse_endorsement(&o, out)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = expect(&it, T_SIGNED, &o)) != MPOS_OK ||
        (rc = parse_signed(&o, &out->params)) != MPOS_OK) {
        goto exit;
    }
    out->signed_part = o.raw;
    out->signed_len = o.raw_len;
    if ((rc = field(&it, T_PACKAGE_SIG, MPOS_ECDSA_P256_SIG_LEN, MPOS_ECDSA_P256_SIG_LEN, &o)) !=
        MPOS_OK) {
        goto exit;
    }
    memcpy(out->sig, o.value, MPOS_ECDSA_P256_SIG_LEN);
    rc = mpos_tlv_more(&it) ? MPOS_ERR_FORMAT : MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* ---- verification ----------------------------------------------------------------------- */

int mpos_params_verify(const uint8_t anchor_pub[MPOS_EC_P256_PUB_LEN], const uint8_t *buf,
                       size_t len, int64_t now, mpos_params_package *out)
{
    int rc = MPOS_ERR_ARG;
    if (out == NULL) {
        return rc;
    }
    if (anchor_pub == NULL) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if ((rc = mpos_params_parse(buf, len, out)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = mpos_ec_p256_check_public(anchor_pub)) != MPOS_OK) {
        goto exit;
    }
    const mpos_params_endorsement *e = &out->endorsement;
    int64_t issued = out->params.issued;
    /* 1. The anchor's signature over E6 (FIPS 186-5 6.4.2), before any endorsement field is
     *    believed. */
    rc = mpos_ecdsa_p256_verify(anchor_pub, out->endorsed, out->endorsed_len, e->sig);
    if (rc != MPOS_OK) {
        rc = MPOS_ERR_VERIFY;
        goto exit;
    }
    /* 2. Usage "parameters"; validity covers the issue time and the trusted time. */
    rc = MPOS_ERR_VERIFY;
    if (e->usage != MPOS_PARAMS_USAGE || issued < e->not_before || issued > e->not_after ||
        (now != MPOS_PARAMS_NO_CLOCK && (now < e->not_before || now > e->not_after))) {
        goto exit;
    }
    /* 3. The package signature over E4 under the endorsed key (an endorsed value that is not
     *    a point of the curve cannot verify). */
    rc = mpos_ecdsa_p256_verify(e->pub, out->signed_part, out->signed_len, out->sig);
    if (rc != MPOS_OK) {
        rc = MPOS_ERR_VERIFY;
    }
exit:
    if (rc != MPOS_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

int mpos_params_anchor_key(const uint8_t *param, size_t len, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    struct mpos_provision_cert c;
    int rc = MPOS_ERR_ARG;
    if (pub == NULL) {
        return rc;
    }
    memset(pub, 0, MPOS_EC_P256_PUB_LEN);
    if (param == NULL) {
        return rc;
    }
    if (len == MPOS_EC_P256_PUB_LEN && param[0] == 0x04) {
        memcpy(pub, param, MPOS_EC_P256_PUB_LEN);
    } else {
        rc = mpos_provision_cert_parse(param, len, &c);
        if (rc != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
        memcpy(pub, c.pub, MPOS_EC_P256_PUB_LEN);
    }
    rc = mpos_ec_p256_check_public(pub);
    if (rc != MPOS_OK) {
        memset(pub, 0, MPOS_EC_P256_PUB_LEN);
    }
    return rc;
}

int mpos_params_to_emv(const mpos_params *p, mpos_emv_params *emv)
{
    if (p == NULL || emv == NULL || !params_valid(p)) {
        return MPOS_ERR_ARG;
    }
    memset(emv->aids, 0, sizeof(emv->aids));
    memset(emv->capks, 0, sizeof(emv->capks));
    uint32_t floor = UINT32_MAX;
    for (size_t i = 0; i < p->aid_count; i++) {
        const mpos_params_aid *a = &p->aids[i];
        mpos_emv_aid_param *d = &emv->aids[i];
        memcpy(d->aid, a->aid, a->aid_len);
        d->aid_len = a->aid_len;
        d->partial = a->partial;
        memcpy(d->app_version, a->app_version, 2);
        memcpy(d->tac_denial, a->tac_denial, MPOS_EMV_TAC_LEN);
        memcpy(d->tac_online, a->tac_online, MPOS_EMV_TAC_LEN);
        memcpy(d->tac_default, a->tac_default, MPOS_EMV_TAC_LEN);
        if (a->floor_limit < floor) {
            floor = a->floor_limit;
        }
    }
    emv->aid_count = p->aid_count;
    for (size_t i = 0; i < p->capk_count; i++) {
        const mpos_params_capk *k = &p->capks[i];
        mpos_emv_capk *d = &emv->capks[i];
        memcpy(d->rid, k->rid, 5);
        d->index = k->index;
        memcpy(d->modulus, k->modulus, k->modulus_len);
        d->modulus_len = k->modulus_len;
        memcpy(d->exponent, k->exponent, k->exponent_len);
        d->exponent_len = k->exponent_len;
    }
    emv->capk_count = p->capk_count;
    memcpy(emv->terminal_country, p->country, 2);
    memcpy(emv->currency, p->currency, 2);
    emv->currency_exponent = p->currency_exponent;
    if (p->has_mcc) {
        memcpy(emv->mcc, p->mcc, 2);
    }
    emv->floor_limit = floor;
    return MPOS_OK;
}

const mpos_params_aid *mpos_params_aid_find(const mpos_params *p, const uint8_t *aid,
                                            size_t aid_len)
{
    const mpos_params_aid *partial = NULL;
    if (p == NULL || aid == NULL || p->aid_count > MPOS_PARAMS_MAX_AIDS) {
        return NULL;
    }
    for (size_t i = 0; i < p->aid_count; i++) {
        const mpos_params_aid *a = &p->aids[i];
        if (a->aid_len > aid_len || a->aid_len > MPOS_EMV_AID_MAX_LEN ||
            memcmp(a->aid, aid, a->aid_len) != 0) {
            continue;
        }
        /* Book 1 12.3.1: exact match, or the terminal's AID a prefix when partial. */
        if (a->aid_len == aid_len) {
            return a;
        }
        if (a->partial && partial == NULL) {
            partial = a;
        }
    }
    return partial;
}

/* ---- the held package ------------------------------------------------------------------- */

static void store_fail(mpos_params_store *st)
{
    MPOS_WIPE_CTX(st);
    st->state = ST_FAILED;
}

/* Makes the package in held_buf (held_len bytes) the held one. */
static int hold(mpos_params_store *st, uint32_t firmware)
{
    int rc = mpos_params_parse(st->held_buf, st->held_len, &st->held);
    if (rc == MPOS_OK) {
        st->version = st->held.params.version;
        st->firmware_ok = firmware >= st->held.params.min_firmware;
    }
    return rc;
}

int mpos_params_open(mpos_params_store *st, const mpos_hal_storage *storage,
                     const mpos_hal_rng *rng, mpos_crypto_ctx *cc, uint32_t firmware,
                     mpos_emv_params *emv)
{
    uint64_t counter = 0, gen = 0, value = 0;
    size_t len = 0, body_len = 0;
    int rc = MPOS_ERR_ARG;
    if (st == NULL) {
        return rc;
    }
    MPOS_WIPE_CTX(st);
    if (storage == NULL || rng == NULL || cc == NULL || emv == NULL || storage->read == NULL ||
        storage->write == NULL || storage->counter_read == NULL ||
        storage->counter_increment == NULL || storage->derive_key == NULL || rng->random == NULL) {
        goto exit;
    }
    st->storage = storage;
    st->rng = rng;
    st->cc = cc;
    rc = storage->derive_key(storage->ctx, (const uint8_t *)PARAMS_LABEL_ENC,
                             sizeof(PARAMS_LABEL_ENC) - 1, st->enc_key, sizeof(st->enc_key));
    if (rc == MPOS_OK) {
        rc = storage->derive_key(storage->ctx, (const uint8_t *)PARAMS_LABEL_MAC,
                                 sizeof(PARAMS_LABEL_MAC) - 1, st->mac_key, sizeof(st->mac_key));
    }
    if (rc != MPOS_OK ||
        (rc = storage->counter_read(storage->ctx, MPOS_PARAMS_COUNTER, &counter)) != MPOS_OK) {
        goto exit;
    }
    rc = storage->read(storage->ctx, MPOS_PARAMS_SLOT, st->io, sizeof(st->io), &len);
    if (rc == MPOS_HAL_NOT_FOUND) {
        /* Never written, or deleted after its counter moved (a rollback). */
        rc = counter == 0 ? MPOS_OK : MPOS_ERR_ROLLBACK;
        if (rc == MPOS_OK) {
            st->state = ST_OPEN;
            rc = MPOS_PARAMS_NONE;
        }
        goto exit;
    }
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = mpos_keystore_record_open(cc, st->enc_key, st->mac_key, MPOS_PARAMS_RECORD_TYPE, st->io,
                                   len, &gen, &body_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The key store's rollback rule: generation = counter, or counter + 1 for a write whose
     * increment was cut off (completed below). */
    rc = MPOS_ERR_ROLLBACK;
    if (gen < counter || gen - counter > 1) {
        goto exit;
    }
    rc = MPOS_ERR_FORMAT;
    if (body_len > MPOS_PARAMS_MAX_LEN) {
        goto exit;
    }
    memcpy(st->held_buf, st->io + KS_HDR_LEN, body_len);
    st->held_len = body_len;
    /* The record authenticates under the device storage key: the package was verified when it
     * was applied. Its syntax is checked again. */
    if ((rc = hold(st, firmware)) != MPOS_OK) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    if (gen == counter + 1) {
        rc = storage->counter_increment(storage->ctx, MPOS_PARAMS_COUNTER, &value);
        if (rc == MPOS_OK && value != gen) {
            rc = MPOS_ERR_ROLLBACK;
        }
        if (rc != MPOS_OK) {
            goto exit;
        }
    }
    st->generation = gen;
    st->state = ST_OPEN;
    if (!st->firmware_ok) {
        emv->aid_count = 0;
        rc = MPOS_PARAMS_FIRMWARE_TOO_OLD;
        goto exit;
    }
    rc = mpos_params_to_emv(&st->held.params, emv);
exit:
    MPOS_WIPE_BUFFER(st->io);
    if (rc < 0) {
        rc = hal_rc(rc);
        MPOS_WIPE_CTX(st);
    }
    return rc;
}

/* Writes pkg as the held package: record with the next generation, durably, then the counter.
 * Any failure leaves the stored outcome unknown: st fails. */
static int persist(mpos_params_store *st, const uint8_t *pkg, size_t len)
{
    const mpos_hal_storage *s = st->storage;
    uint8_t iv[KS_IV_LEN];
    uint64_t gen = st->generation + 1, value = 0;
    size_t rec_len = 0;
    memcpy(st->io + KS_HDR_LEN, pkg, len);
    int rc = st->rng->random(st->rng->ctx, iv, sizeof(iv));
    if (rc != MPOS_OK) {
        rc = rc < 0 ? rc : MPOS_ERR_RNG;
        goto exit;
    }
    rc = mpos_keystore_record_seal(st->cc, st->enc_key, st->mac_key, iv, MPOS_PARAMS_RECORD_TYPE,
                                   gen, st->io, sizeof(st->io), len, &rec_len);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if ((rc = s->write(s->ctx, MPOS_PARAMS_SLOT, st->io, rec_len)) != MPOS_OK) {
        goto exit;
    }
    rc = s->counter_increment(s->ctx, MPOS_PARAMS_COUNTER, &value);
    if (rc == MPOS_OK && value != gen) {
        rc = MPOS_ERR_ROLLBACK;
    }
    if (rc == MPOS_OK) {
        st->generation = gen;
    }
exit:
    MPOS_WIPE_BUFFER(st->io);
    return hal_rc(rc);
}

int mpos_params_verify_and_apply(mpos_params_store *st,
                                 const uint8_t anchor_pub[MPOS_EC_P256_PUB_LEN], uint32_t firmware,
                                 int64_t now, const uint8_t *pkg, size_t len, mpos_emv_params *emv)
{
    int rc = MPOS_ERR_ARG;
    if (st == NULL || anchor_pub == NULL || pkg == NULL || emv == NULL) {
        return rc;
    }
    if (st->state != ST_OPEN) {
        return MPOS_ERR_STATE;
    }
    /* 1. Syntax, the endorsement under the anchor, the signature under the endorsed key. */
    if ((rc = mpos_params_verify(anchor_pub, pkg, len, now, &st->scratch)) != MPOS_OK) {
        goto exit;
    }
    /* 2. The version only goes up (a replay or a downgrade is refused). */
    if (st->scratch.params.version <= st->version) {
        rc = MPOS_ERR_ROLLBACK;
        goto exit;
    }
    /* 3. Persisted before anything uses it: the version has moved for good. */
    if ((rc = persist(st, pkg, len)) != MPOS_OK) {
        store_fail(st);
        goto exit;
    }
    memcpy(st->held_buf, pkg, len);
    st->held_len = len;
    if ((rc = hold(st, firmware)) != MPOS_OK) {
        store_fail(st);
        goto exit;
    }
    /* 4. The minimum firmware: below it, no EMV parameters (no transaction). */
    if (!st->firmware_ok) {
        emv->aid_count = 0;
        rc = MPOS_PARAMS_FIRMWARE_TOO_OLD;
        goto exit;
    }
    rc = mpos_params_to_emv(&st->held.params, emv);
exit:
    if (st->state == ST_OPEN) {
        memset(&st->scratch, 0, sizeof(st->scratch));
    }
    return rc;
}

int mpos_params_current(const mpos_params_store *st, const mpos_params **p, int *allowed)
{
    if (st == NULL || p == NULL) {
        return MPOS_ERR_ARG;
    }
    *p = NULL;
    if (allowed != NULL) {
        *allowed = 0;
    }
    if (st->state != ST_OPEN) {
        return MPOS_ERR_STATE;
    }
    if (st->version == 0) {
        return MPOS_PARAMS_NONE;
    }
    *p = &st->held.params;
    if (allowed != NULL) {
        *allowed = st->firmware_ok;
    }
    return MPOS_OK;
}

void mpos_params_close(mpos_params_store *st)
{
    if (st != NULL) {
        MPOS_WIPE_CTX(st);
    }
}

/* ---- building --------------------------------------------------------------------------- */

static int put_u8(uint8_t *out, size_t cap, size_t *len, uint32_t tag, uint8_t v)
{
    return mpos_tlv_put(out, cap, len, tag, &v, 1);
}

static int put_u32(uint8_t *out, size_t cap, size_t *len, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    mpos_store_be32(b, v);
    return mpos_tlv_put(out, cap, len, tag, b, sizeof(b));
}

static int put_u64(uint8_t *out, size_t cap, size_t *len, uint32_t tag, uint64_t v)
{
    uint8_t b[8];
    store_be64(b, v);
    return mpos_tlv_put(out, cap, len, tag, b, sizeof(b));
}

/* Signs out[start .. *len) and appends the signature as tag. */
static int put_sig(uint8_t *out, size_t cap, size_t *len, size_t start, uint32_t tag,
                   mpos_params_sign_fn sign, void *sign_ctx)
{
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN];
    int rc = sign(sign_ctx, out + start, *len - start, sig);
    if (rc == MPOS_OK) {
        rc = mpos_tlv_put(out, cap, len, tag, sig, sizeof(sig));
    } else if (rc > 0) {
        rc = MPOS_ERR_CRYPTO;
    }
    MPOS_WIPE_BUFFER(sig);
    return rc;
}

int mpos_params_endorsement_build(const mpos_params_endorsement *e, mpos_params_sign_fn sign,
                                  void *sign_ctx, uint8_t *out, size_t cap, size_t *len)
{
    mpos_tlv_mark m5, m6;
    size_t n = 0;
    int rc = MPOS_ERR_ARG;
    if (len == NULL) {
        return rc;
    }
    *len = 0;
    if (e == NULL || sign == NULL || out == NULL || !endorsement_valid(e)) {
        return rc;
    }
    if ((rc = mpos_tlv_begin(out, cap, &n, T_ENDORSEMENT, &m5)) != MPOS_OK ||
        (rc = mpos_tlv_begin(out, cap, &n, T_ENDORSED, &m6)) != MPOS_OK ||
        (rc = put_u8(out, cap, &n, T_C(1), MPOS_PARAMS_FORMAT)) != MPOS_OK ||
        (rc = put_u8(out, cap, &n, T_C(2), e->usage)) != MPOS_OK ||
        (rc = put_u64(out, cap, &n, T_C(3), (uint64_t)e->not_before)) != MPOS_OK ||
        (rc = put_u64(out, cap, &n, T_C(4), (uint64_t)e->not_after)) != MPOS_OK ||
        (rc = mpos_tlv_put(out, cap, &n, T_C(5), e->pub, MPOS_EC_P256_PUB_LEN)) != MPOS_OK ||
        (rc = mpos_tlv_end(out, cap, &n, &m6)) != MPOS_OK ||
        (rc = put_sig(out, cap, &n, m6.tag_pos, T_ANCHOR_SIG, sign, sign_ctx)) != MPOS_OK ||
        (rc = mpos_tlv_end(out, cap, &n, &m5)) != MPOS_OK) {
        goto exit;
    }
    *len = n;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(out, n < cap ? n : cap);
    }
    return rc;
}

static int build_signed(const mpos_params *p, uint8_t *out, size_t cap, size_t *n)
{
    mpos_tlv_mark m4, mi;
    int rc;
    if ((rc = mpos_tlv_begin(out, cap, n, T_SIGNED, &m4)) != MPOS_OK ||
        (rc = put_u8(out, cap, n, T_C(1), MPOS_PARAMS_FORMAT)) != MPOS_OK ||
        (rc = put_u32(out, cap, n, T_C(2), p->version)) != MPOS_OK ||
        (rc = put_u64(out, cap, n, T_C(3), (uint64_t)p->issued)) != MPOS_OK ||
        (rc = put_u32(out, cap, n, T_C(4), p->min_firmware)) != MPOS_OK ||
        (rc = mpos_tlv_put(out, cap, n, T_C(5), p->country, 2)) != MPOS_OK ||
        (rc = mpos_tlv_put(out, cap, n, T_C(6), p->currency, 2)) != MPOS_OK ||
        (rc = put_u8(out, cap, n, T_C(7), p->currency_exponent)) != MPOS_OK ||
        (p->has_mcc && (rc = mpos_tlv_put(out, cap, n, T_C(8), p->mcc, 2)) != MPOS_OK)) {
        return rc;
    }
    for (size_t i = 0; i < p->aid_count; i++) {
        const mpos_params_aid *a = &p->aids[i];
        if ((rc = mpos_tlv_begin(out, cap, n, T_AID, &mi)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(1), a->aid, a->aid_len)) != MPOS_OK ||
            (rc = put_u8(out, cap, n, T_C(2), (uint8_t)a->partial)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(3), a->app_version, 2)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(4), a->tac_denial, MPOS_EMV_TAC_LEN)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(5), a->tac_online, MPOS_EMV_TAC_LEN)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(6), a->tac_default, MPOS_EMV_TAC_LEN)) != MPOS_OK ||
            (rc = put_u32(out, cap, n, T_C(7), a->floor_limit)) != MPOS_OK ||
            (rc = put_u64(out, cap, n, T_C(8), a->txn_limit)) != MPOS_OK ||
            (rc = mpos_tlv_end(out, cap, n, &mi)) != MPOS_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < p->capk_count; i++) {
        const mpos_params_capk *k = &p->capks[i];
        uint8_t exp[4];
        expiry_store(exp, k->expiry);
        if ((rc = mpos_tlv_begin(out, cap, n, T_CAPK, &mi)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(1), k->rid, 5)) != MPOS_OK ||
            (rc = put_u8(out, cap, n, T_C(2), k->index)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(3), k->modulus, k->modulus_len)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(4), k->exponent, k->exponent_len)) != MPOS_OK ||
            (rc = mpos_tlv_put(out, cap, n, T_C(5), exp, sizeof(exp))) != MPOS_OK ||
            (rc = mpos_tlv_end(out, cap, n, &mi)) != MPOS_OK) {
            return rc;
        }
    }
    return mpos_tlv_end(out, cap, n, &m4);
}

int mpos_params_build(const mpos_params *p, const uint8_t *endorsement, size_t endorsement_len,
                      mpos_params_sign_fn sign, void *sign_ctx, uint8_t *out, size_t cap,
                      size_t *len)
{
    mpos_params_package check;
    mpos_tlv_mark m3;
    mpos_tlv e5;
    size_t n = 0, start = 0;
    int rc = MPOS_ERR_ARG;
    if (len == NULL) {
        return rc;
    }
    *len = 0;
    if (p == NULL || endorsement == NULL || sign == NULL || out == NULL || !params_valid(p)) {
        return rc;
    }
    /* The endorsement must be exactly one well-formed E5. */
    memset(&check, 0, sizeof(check));
    int found = 0;
    if (mpos_tlv_find(endorsement, endorsement_len, MPOS_TLV_STRICT, T_ENDORSEMENT, &e5, &found) !=
            MPOS_OK ||
        !found || e5.raw != endorsement || e5.raw_len != endorsement_len ||
        parse_endorsement(&e5, &check) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    if ((rc = mpos_tlv_begin(out, cap, &n, T_PACKAGE, &m3)) != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (endorsement_len > cap - n) {
        goto exit;
    }
    memcpy(out + n, endorsement, endorsement_len);
    n += endorsement_len;
    start = n;
    if ((rc = build_signed(p, out, cap, &n)) != MPOS_OK ||
        (rc = put_sig(out, cap, &n, start, T_PACKAGE_SIG, sign, sign_ctx)) != MPOS_OK ||
        (rc = mpos_tlv_end(out, cap, &n, &m3)) != MPOS_OK) {
        goto exit;
    }
    rc = MPOS_ERR_LENGTH;
    if (n > MPOS_PARAMS_MAX_LEN) {
        goto exit;
    }
    *len = n;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(out, n < cap ? n : cap);
    }
    return rc;
}
