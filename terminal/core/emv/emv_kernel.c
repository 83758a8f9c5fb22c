/* openmpos terminal core: the EMV / PBOC contact kernel, transaction flow (EMV 4.3 Book 3
 * section 10; Book 4 for the terminal's side). */
#include <string.h>

#include "emv_internal.h"
#include "mpos/tlv.h"
#include "mpos/util.h"

#define MAX_AMOUNT   999999999999ULL
#define MAX_SEQUENCE 99999999UL
#define GPO_ROUNDS   MPOS_EMV_MAX_CANDIDATES /* 6985 to GPO: next candidate (Book 3 10.1) */

/* AC types of GENERATE AC P1 and of the CID (Book 3 6.5.5, Table 12 and 14). */
#define AC_AAC  0x00
#define AC_TC   0x40
#define AC_ARQC 0x80
#define AC_MASK 0xC0

static const uint8_t up_debit[] = {0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x01};
static const uint8_t up_credit[] = {0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x02};
static const uint8_t up_quasi[] = {0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x03};

void mpos_emv_params_default(mpos_emv_params *p)
{
    static const uint8_t denial[5] = MPOS_EMV_TAC_DENIAL_DEFAULT;
    static const uint8_t online[5] = MPOS_EMV_TAC_ONLINE_DEFAULT;
    static const uint8_t deflt[5] = MPOS_EMV_TAC_DEFAULT_DEFAULT;
    static const uint8_t *const aids[] = {up_debit, up_credit, up_quasi};
    if (p == NULL) {
        return;
    }
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < 3; i++) {
        mpos_emv_aid_param *a = &p->aids[i];
        memcpy(a->aid, aids[i], sizeof(up_debit));
        a->aid_len = sizeof(up_debit);
        a->partial = 0;
        a->app_version[0] = 0x00;
        a->app_version[1] = 0x30;
        memcpy(a->tac_denial, denial, 5);
        memcpy(a->tac_online, online, 5);
        memcpy(a->tac_default, deflt, 5);
    }
    p->aid_count = 3;
    p->terminal_country[0] = 0x01;
    p->terminal_country[1] = 0x56;
    p->currency[0] = 0x01;
    p->currency[1] = 0x56;
    p->currency_exponent = 2;
    p->terminal_type = 0x21;
    p->terminal_caps[0] = 0x60;
    p->terminal_caps[1] = 0xD0;
    p->terminal_caps[2] = 0x00;
    static const uint8_t add[5] = {0x60, 0x00, 0xB0, 0x50, 0x01};
    memcpy(p->additional_caps, add, 5);
    p->floor_limit = 0;
}

void mpos_emv_init(mpos_emv_ctx *k, const mpos_emv_params *params, const mpos_emv_env *env)
{
    if (k == NULL) {
        return;
    }
    mpos_cleanse(k, sizeof(*k));
    k->params = params;
    if (env != NULL) {
        k->env = *env;
    }
    k->state = EMV_ST_IDLE;
}

int emv_end(mpos_emv_ctx *k, enum mpos_emv_outcome outcome, enum mpos_emv_reason reason)
{
    k->result.outcome = outcome;
    k->result.reason = reason;
    /* Fallback to the stripe only when the chip itself could not be read, before any
     * cryptogram (a card that answers wrongly must not be able to force a downgrade). */
    k->result.fallback_allowed = outcome == MPOS_EMV_CARD_ERROR && !k->gac1.present;
    k->result.reversal_required = k->issuer_approved && outcome != MPOS_EMV_APPROVED;
    k->state = EMV_ST_DONE;
    mpos_cleanse(k->capdu, sizeof(k->capdu));
    return (int)outcome;
}

void emv_tvr_set(mpos_emv_ctx *k, unsigned bit)
{
    k->tvr[(bit >> 8) - 1] |= (uint8_t)(bit & 0xFFu);
}

int emv_tvr_test(const uint8_t tvr[5], unsigned bit)
{
    return (tvr[(bit >> 8) - 1] & (uint8_t)(bit & 0xFFu)) != 0;
}

static void bcd_store(uint8_t *out, size_t n, uint64_t v)
{
    for (size_t i = n; i-- > 0;) {
        unsigned lo = (unsigned)(v % 10);
        v /= 10;
        unsigned hi = (unsigned)(v % 10);
        v /= 10;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int params_valid(const mpos_emv_params *p)
{
    if (p->aid_count == 0 || p->aid_count > MPOS_EMV_MAX_AIDS ||
        p->capk_count > MPOS_EMV_MAX_CAPKS || p->currency_exponent > 9 ||
        !emv_is_bcd(p->terminal_country, 2) || !emv_is_bcd(p->currency, 2) ||
        !emv_is_bcd(p->mcc, 2)) {
        return 0;
    }
    for (size_t i = 0; i < p->aid_count; i++) {
        if (p->aids[i].aid_len < MPOS_EMV_AID_MIN_LEN ||
            p->aids[i].aid_len > MPOS_EMV_AID_MAX_LEN) {
            return 0;
        }
    }
    for (size_t i = 0; i < p->capk_count; i++) {
        if (p->capks[i].modulus_len > MPOS_RSA_MAX_MOD_LEN ||
            p->capks[i].exponent_len > MPOS_RSA_MAX_EXP_LEN) {
            return 0;
        }
    }
    return 1;
}

static int days_in_month(unsigned year, unsigned month)
{
    static const uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) {
        return 29;
    }
    return days[month - 1];
}

/* The terminal's transaction data: amounts, date, time, unpredictable number. */
static int set_terminal_data(mpos_emv_ctx *k)
{
    mpos_emv_datetime now;
    memset(&now, 0, sizeof(now));
    if (k->env.now(k->env.ctx, &now) != 0) {
        return MPOS_ERR_FORMAT;
    }
    if (now.year < 2000 || now.year > 2099 || now.month < 1 || now.month > 12 || now.day < 1 ||
        now.day > days_in_month(now.year, now.month) || now.hour > 23 || now.minute > 59 ||
        now.second > 59) {
        return MPOS_ERR_FORMAT;
    }
    bcd_store(&k->date[0], 1, now.year % 100u);
    bcd_store(&k->date[1], 1, now.month);
    bcd_store(&k->date[2], 1, now.day);
    bcd_store(&k->time[0], 1, now.hour);
    bcd_store(&k->time[1], 1, now.minute);
    bcd_store(&k->time[2], 1, now.second);
    bcd_store(k->amount, 6, k->txn.amount);
    bcd_store(k->amount_other, 6, k->txn.amount_other);
    bcd_store(k->sequence, 4, k->txn.sequence);
    bcd_store(k->currency_exp, 1, k->params->currency_exponent);
    mpos_store_be32(k->floor_limit, k->params->floor_limit);
    /* Book 4 6.5.6 / Book 3 Annex A: '9F37' from the terminal's random generator. */
    if (k->env.rng(k->env.ctx, k->un, sizeof(k->un)) != 0) {
        return MPOS_ERR_RNG;
    }
    return 0;
}

/* Cold reset through the caller's reader, with the ATR's first byte checked (ISO/IEC 7816-3
 * 8.1: TS is 3B direct or 3F inverse convention). */
static int reset_card(mpos_emv_ctx *k)
{
    uint8_t atr[MPOS_ATR_MAX];
    size_t atr_len = 0;
    if (k->env.card_reset == NULL) {
        return 0;
    }
    if (k->env.card_reset(k->env.ctx, atr, &atr_len) != 0) {
        return emv_end(k, MPOS_EMV_CARD_ERROR, MPOS_EMV_REASON_NO_ANSWER);
    }
    if (atr_len < 2 || atr_len > MPOS_ATR_MAX || (atr[0] != 0x3B && atr[0] != 0x3F)) {
        return emv_end(k, MPOS_EMV_CARD_ERROR, MPOS_EMV_REASON_ATR);
    }
    return 0;
}

/* Book 3 10.2: the AFL is 4-byte entries: SFI 1..30 (low 3 bits zero), first record >= 1,
 * last >= first, ODA records <= the range. */
static int afl_valid(const uint8_t *afl, size_t len)
{
    if (len == 0 || len % 4 != 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i += 4) {
        uint8_t sfi = afl[i] >> 3;
        if ((afl[i] & 0x07) != 0 || sfi < 1 || sfi > 30 || afl[i + 1] < 1 ||
            afl[i + 2] < afl[i + 1] || afl[i + 3] > afl[i + 2] - afl[i + 1] + 1) {
            return 0;
        }
    }
    return 1;
}

/* GET PROCESSING OPTIONS (Book 3 6.5.8, 10.1). 0, 1 when the card answered 6985 (the
 * application is not usable: select another), or an outcome. */
static int get_processing_options(mpos_emv_ctx *k)
{
    uint8_t pdol_data[252], data[255];
    size_t pdol_data_len = 0, dlen = 0, n;
    const uint8_t *pdol;
    size_t pdol_len;
    mpos_tlv top;
    mpos_tlv_iter it;
    int r;

    /* Command template '83' with the PDOL data (empty without a PDOL). */
    if (emv_card_find(k, 0x9F38, &pdol, &pdol_len) &&
        emv_dol_build(k, pdol, pdol_len, pdol_data, sizeof(pdol_data), &pdol_data_len) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    if (mpos_tlv_put(data, sizeof(data), &dlen, 0x83, pdol_data, pdol_data_len) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    n = emv_apdu_build(k, 0x80, 0xA8, 0x00, 0x00, data, dlen, 1);
    if ((r = emv_transmit(k, n)) != 0) {
        return r;
    }
    if (k->sw == 0x6985) {
        return 1;
    }
    if (k->sw != EMV_SW_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_STATUS);
    }
    if (mpos_tlv_validate(k->rapdu, k->rapdu_len, MPOS_TLV_CARD) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    mpos_tlv_iter_init(&it, k->rapdu, k->rapdu_len, MPOS_TLV_CARD);
    if (!mpos_tlv_more(&it) || mpos_tlv_next(&it, &top) != MPOS_OK || mpos_tlv_more(&it)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    if (top.tag == 0x80) {
        /* Format 1: AIP || AFL. */
        if (top.len < 2 || (top.len - 2) % 4 != 0) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        uint8_t tmp[2 + MPOS_TLV_MAX_HEADER_LEN + 252];
        size_t tl = 0;
        if (mpos_tlv_put(tmp, sizeof(tmp), &tl, 0x82, top.value, 2) != MPOS_OK ||
            mpos_tlv_put(tmp, sizeof(tmp), &tl, 0x94, top.value + 2, top.len - 2) != MPOS_OK) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        if ((r = emv_store_tlv(k, tmp, tl, EMV_SRC_GPO, 1)) != 0) {
            return r;
        }
    } else if (top.tag == 0x77) {
        /* Format 2: a template that must hold AIP and AFL. */
        if ((r = emv_store_tlv(k, top.value, top.len, EMV_SRC_GPO, 1)) != 0) {
            return r;
        }
    } else {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    const uint8_t *v;
    size_t vl;
    if (!emv_card_find(k, 0x82, &v, &vl)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_MISSING);
    }
    if (!emv_card_find(k, 0x94, &v, &vl) || !afl_valid(v, vl)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_AFL);
    }
    return 0;
}

/* READ RECORD over the AFL (Book 3 6.5.11, 10.2). */
static int read_records(mpos_emv_ctx *k)
{
    uint8_t afl[252];
    const uint8_t *v;
    size_t afl_len;
    int r;
    if (!emv_card_find(k, 0x94, &v, &afl_len)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_AFL);
    }
    memcpy(afl, v, afl_len); /* the store grows while we read */
    for (size_t i = 0; i < afl_len; i += 4) {
        uint8_t sfi = afl[i] >> 3;
        for (unsigned rec = afl[i + 1]; rec <= afl[i + 2]; rec++) {
            mpos_tlv tmpl;
            mpos_tlv_iter it;
            if (++k->records_read > MPOS_EMV_MAX_RECORDS) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_TOO_LARGE);
            }
            size_t n =
                emv_apdu_build(k, 0x00, 0xB2, (uint8_t)rec, (uint8_t)(sfi << 3 | 0x04), NULL, 0, 1);
            if ((r = emv_transmit(k, n)) != 0) {
                return r;
            }
            if (k->sw != EMV_SW_OK) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_STATUS);
            }
            /* SFI 1..10: one '70' template and nothing else (Book 3 10.2); SFI 11..30 hold
             * issuer data outside EMV, used only when it is such a template. */
            int ok = mpos_tlv_validate(k->rapdu, k->rapdu_len, MPOS_TLV_CARD) == MPOS_OK;
            mpos_tlv_iter_init(&it, k->rapdu, k->rapdu_len, MPOS_TLV_CARD);
            ok = ok && mpos_tlv_more(&it) && mpos_tlv_next(&it, &tmpl) == MPOS_OK &&
                 tmpl.tag == 0x70 && !mpos_tlv_more(&it);
            if (!ok) {
                if (sfi <= 10) {
                    return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
                }
                continue;
            }
            if ((r = emv_store_tlv(k, tmpl.value, tmpl.len, EMV_SRC_RECORD, 1)) != 0) {
                return r;
            }
            if (rec == 0xFF) {
                break;
            }
        }
    }
    return 0;
}

/* Track 2 Equivalent Data '57' (Book 3 Annex A): PAN, separator D, YYMM, service code. */
static int track2_consistent(const uint8_t *t2, size_t len, const char *pan, const uint8_t exp[3])
{
    char digits[2 * MPOS_EMV_TRACK2_MAX + 1];
    size_t n = 0, sep = 0;
    int have_sep = 0;
    for (size_t i = 0; i < 2 * len; i++) {
        unsigned d = (i % 2 == 0) ? (unsigned)(t2[i / 2] >> 4) : (unsigned)(t2[i / 2] & 0x0F);
        if (d == 0x0D && !have_sep) {
            have_sep = 1;
            sep = n;
            continue;
        }
        if (d == 0x0F && i == 2 * len - 1) {
            break; /* pad to a whole byte */
        }
        if (d > 9) {
            return 0;
        }
        digits[n++] = (char)('0' + d);
    }
    digits[n] = '\0';
    if (!have_sep || n < sep + 7 || sep != strlen(pan) || memcmp(digits, pan, sep) != 0) {
        return 0;
    }
    uint8_t yy = (uint8_t)((digits[sep] - '0') << 4 | (digits[sep + 1] - '0'));
    uint8_t mm = (uint8_t)((digits[sep + 2] - '0') << 4 | (digits[sep + 3] - '0'));
    return yy == exp[0] && mm == exp[1];
}

/* Book 3 7.2: mandatory data, and the consistency of what the request will carry. */
static int check_card_data(mpos_emv_ctx *k)
{
    const uint8_t *v, *exp;
    size_t n, exp_len;
    char pan[MPOS_EMV_PAN_BUF_LEN];
    size_t count, data_len;
    int r = 0;
    static const uint32_t mandatory[] = {0x5A, 0x5F24, 0x8C, 0x8D};
    for (size_t i = 0; i < sizeof(mandatory) / sizeof(mandatory[0]); i++) {
        if (!emv_card_find(k, mandatory[i], &v, &n)) {
            emv_tvr_set(k, MPOS_EMV_TVR_ICC_DATA_MISSING);
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_MISSING);
        }
    }
    (void)emv_card_find(k, 0x5A, &v, &n);
    (void)emv_card_find(k, 0x5F24, &exp, &exp_len);
    if (emv_pan_digits(v, n, pan) != 0 || emv_date_value(exp) == 0) {
        r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
        goto exit;
    }
    if (emv_card_find(k, 0x57, &v, &n) && !track2_consistent(v, n, pan, exp)) {
        r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
        goto exit;
    }
    if ((emv_card_find(k, 0x5F34, &v, &n) && !emv_is_bcd(v, n)) ||
        (emv_card_find(k, 0x5F25, &v, &n) && emv_date_value(v) == 0) ||
        (emv_card_find(k, 0x5F30, &v, &n) && !emv_is_bcd(v, n))) {
        r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
        goto exit;
    }
    /* CDOL1 and CDOL2 must parse and their data fit one command. */
    static const uint32_t cdols[] = {0x8C, 0x8D};
    for (size_t i = 0; i < 2; i++) {
        (void)emv_card_find(k, cdols[i], &v, &n);
        if (mpos_tlv_dol_parse(v, n, NULL, 0, &count, &data_len) != MPOS_OK) {
            r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
            goto exit;
        }
        if (data_len > 255) {
            r = emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
            goto exit;
        }
    }
exit:
    MPOS_WIPE_BUFFER(pan);
    return r;
}

/* Book 3 10.4: processing restrictions. */
static void processing_restrictions(mpos_emv_ctx *k)
{
    const uint8_t *v, *country;
    size_t n, cn;
    const mpos_emv_aid_param *ap = &k->params->aids[k->param_index];
    uint32_t today = emv_date_value(k->date);

    /* 10.4.1 Application Version Number. */
    if (emv_card_find(k, 0x9F08, &v, &n) && memcmp(v, ap->app_version, 2) != 0) {
        emv_tvr_set(k, MPOS_EMV_TVR_DIFFERENT_VERSIONS);
    }
    /* 10.4.2 Application Usage Control: not an ATM, so "valid at terminals other than ATMs";
     * then domestic or international use of the service asked for. */
    if (emv_card_find(k, 0x9F07, &v, &n)) {
        int ok = (v[0] & 0x01) != 0;
        if (ok && emv_card_find(k, 0x5F28, &country, &cn)) {
            int domestic = memcmp(country, k->params->terminal_country, 2) == 0;
            switch (k->txn.type) {
            case 0x00: /* goods or services */
                ok = domestic ? (v[0] & 0x28) != 0 : (v[0] & 0x14) != 0;
                break;
            case 0x01: /* cash */
                ok = domestic ? (v[0] & 0x80) != 0 : (v[0] & 0x40) != 0;
                break;
            case 0x09: /* cashback */
                ok = domestic ? (v[1] & 0x80) != 0 : (v[1] & 0x40) != 0;
                break;
            default:
                break;
            }
        }
        if (!ok) {
            emv_tvr_set(k, MPOS_EMV_TVR_SERVICE_NOT_ALLOWED);
        }
    }
    /* 10.4.3 Application Effective and Expiration Dates. */
    if (emv_card_find(k, 0x5F25, &v, &n) && today < emv_date_value(v)) {
        emv_tvr_set(k, MPOS_EMV_TVR_NOT_EFFECTIVE);
    }
    if (emv_card_find(k, 0x5F24, &v, &n) && today > emv_date_value(v)) {
        emv_tvr_set(k, MPOS_EMV_TVR_EXPIRED);
    }
}

/* GET DATA of a 2-byte counter ('9F36' ATC, '9F13' Last Online ATC Register). 1 with the
 * value, 0 when the card did not give it, or an outcome (negative for errors) in *r. */
static int get_counter(mpos_emv_ctx *k, uint8_t p2, uint16_t *value, int *r)
{
    size_t n = emv_apdu_build(k, 0x80, 0xCA, 0x9F, p2, NULL, 0, 1);
    if ((*r = emv_transmit(k, n)) != 0) {
        return 0;
    }
    if (k->sw != EMV_SW_OK || k->rapdu_len != 5 || k->rapdu[0] != 0x9F || k->rapdu[1] != p2 ||
        k->rapdu[2] != 0x02) {
        return 0;
    }
    *value = mpos_load_be16(&k->rapdu[3]);
    return 1;
}

/* Book 3 10.6: terminal risk management of an online-only terminal: floor limit (0: every
 * transaction is over it) and velocity checking; no random selection (everything goes online)
 * and no exception file. */
static int terminal_risk_management(mpos_emv_ctx *k)
{
    const uint8_t *aip, *lcol, *ucol;
    size_t n;
    int r = 0;
    if (k->txn.amount >= k->params->floor_limit) {
        emv_tvr_set(k, MPOS_EMV_TVR_FLOOR_LIMIT);
    }
    if (emv_card_find(k, 0x82, &aip, &n) && (aip[0] & 0x08) != 0 &&
        emv_card_find(k, 0x9F14, &lcol, &n) && emv_card_find(k, 0x9F23, &ucol, &n)) {
        uint16_t atc = 0, last = 0;
        int have_atc = get_counter(k, 0x36, &atc, &r);
        if (r != 0) {
            return r;
        }
        int have_last = get_counter(k, 0x13, &last, &r);
        if (r != 0) {
            return r;
        }
        if (!have_atc || !have_last || atc <= last) {
            emv_tvr_set(k, MPOS_EMV_TVR_LCOL_EXCEEDED);
            emv_tvr_set(k, MPOS_EMV_TVR_UCOL_EXCEEDED);
        } else {
            if (atc - last > lcol[0]) {
                emv_tvr_set(k, MPOS_EMV_TVR_LCOL_EXCEEDED);
            }
            if (atc - last > ucol[0]) {
                emv_tvr_set(k, MPOS_EMV_TVR_UCOL_EXCEEDED);
            }
        }
        if (have_last && last == 0) {
            emv_tvr_set(k, MPOS_EMV_TVR_NEW_CARD);
        }
    }
    k->tsi[0] |= MPOS_EMV_TSI_TRM_PERFORMED;
    return 0;
}

/* An Issuer Action Code, or its default when absent (Book 3 10.7: denial zeros, online and
 * default all ones). */
static void iac(const mpos_emv_ctx *k, uint32_t tag, uint8_t fill, uint8_t out[5])
{
    const uint8_t *v;
    size_t n;
    if (emv_card_find(k, tag, &v, &n)) {
        memcpy(out, v, 5);
    } else {
        memset(out, fill, 5);
    }
}

static int matches(const uint8_t tvr[5], const uint8_t tac[5], const uint8_t iac_[5])
{
    for (size_t i = 0; i < 5; i++) {
        if (tvr[i] & (tac[i] | iac_[i])) {
            return 1;
        }
    }
    return 0;
}

/* Book 3 10.7: terminal action analysis before the first GENERATE AC. Denial codes first;
 * an online-only terminal asks for an ARQC for everything else. */
static uint8_t action_analysis(const mpos_emv_ctx *k)
{
    uint8_t code[5];
    iac(k, 0x9F0E, 0x00, code);
    if (matches(k->tvr, k->params->aids[k->param_index].tac_denial, code)) {
        return AC_AAC;
    }
    return AC_ARQC;
}

/* GENERATE AC (Book 3 6.5.5) with the data of the CDOL of cdol_tag; the response in ac.
 * Allowed answers: never a higher cryptogram than asked (AAC < ARQC < TC, Book 3 9.3). */
static int generate_ac(mpos_emv_ctx *k, uint8_t p1, uint32_t cdol_tag, struct mpos_emv_ac *ac)
{
    uint8_t data[255];
    size_t dlen = 0, n;
    const uint8_t *cdol;
    size_t cdol_len;
    mpos_tlv top, o;
    mpos_tlv_iter it;
    int r;
    (void)emv_card_find(k, cdol_tag, &cdol, &cdol_len);
    memcpy(ac->tvr, k->tvr, 5);
    memcpy(ac->tsi, k->tsi, 2);
    if (emv_dol_build(k, cdol, cdol_len, data, sizeof(data), &dlen) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    n = emv_apdu_build(k, 0x80, 0xAE, p1, 0x00, data, dlen, 1);
    if ((r = emv_transmit(k, n)) != 0) {
        return r;
    }
    if (k->sw != EMV_SW_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_STATUS);
    }
    if (mpos_tlv_validate(k->rapdu, k->rapdu_len, MPOS_TLV_CARD) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    mpos_tlv_iter_init(&it, k->rapdu, k->rapdu_len, MPOS_TLV_CARD);
    if (!mpos_tlv_more(&it) || mpos_tlv_next(&it, &top) != MPOS_OK || mpos_tlv_more(&it)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    if (top.tag == 0x80) {
        /* Format 1: CID (1) || ATC (2) || AC (8) || IAD (optional, up to 32). */
        if (top.len < 11 || top.len > 11 + MPOS_EMV_IAD_MAX) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        ac->cid = top.value[0];
        memcpy(ac->atc, top.value + 1, 2);
        memcpy(ac->ac, top.value + 3, 8);
        ac->iad_len = top.len - 11;
        memcpy(ac->iad, top.value + 11, ac->iad_len);
    } else if (top.tag == 0x77) {
        /* Format 2: 9F27, 9F36, 9F26 mandatory, 9F10 optional; each once. */
        int seen27 = 0, seen36 = 0, seen26 = 0, seen10 = 0;
        mpos_tlv_iter_init(&it, top.value, top.len, MPOS_TLV_CARD);
        while (mpos_tlv_more(&it)) {
            if (mpos_tlv_next(&it, &o) != MPOS_OK) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
            }
            int bad = 0;
            if (o.tag == 0x9F27) {
                bad = seen27++ || o.len != 1;
                if (!bad) {
                    ac->cid = o.value[0];
                }
            } else if (o.tag == 0x9F36) {
                bad = seen36++ || o.len != 2;
                if (!bad) {
                    memcpy(ac->atc, o.value, 2);
                }
            } else if (o.tag == 0x9F26) {
                bad = seen26++ || o.len != 8;
                if (!bad) {
                    memcpy(ac->ac, o.value, 8);
                }
            } else if (o.tag == 0x9F10) {
                bad = seen10++ || o.len > MPOS_EMV_IAD_MAX;
                if (!bad) {
                    memcpy(ac->iad, o.value, o.len);
                    ac->iad_len = o.len;
                }
            }
            if (bad) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
            }
        }
        if (!seen27 || !seen36 || !seen26) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_MISSING);
        }
    } else {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    ac->present = 1;
    uint8_t type = ac->cid & AC_MASK;
    int allowed;
    if (p1 == AC_AAC) {
        allowed = type == AC_AAC;
    } else if (p1 == AC_ARQC) {
        allowed = type == AC_AAC || type == AC_ARQC;
    } else {
        allowed = type == AC_AAC || type == AC_TC;
    }
    if (!allowed) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_CRYPTOGRAM);
    }
    return 0;
}

/* Up to the first GENERATE AC; mpos_emv_start around it. */
static int run_to_first_ac(mpos_emv_ctx *k)
{
    int r;
    if ((r = set_terminal_data(k)) != 0) {
        return r;
    }
    if ((r = reset_card(k)) != 0) {
        return r;
    }
    /* Book 1 12: candidate list, then final selection and GPO until one application takes
     * it (Book 3 10.1: 6985 to GPO removes the application and selects again). */
    if ((r = emv_build_candidates(k)) != 0) {
        return r;
    }
    for (int round = 0;; round++) {
        if (round >= GPO_ROUNDS) {
            return emv_end(k, MPOS_EMV_NOT_ACCEPTED, MPOS_EMV_REASON_NO_APPLICATION);
        }
        if ((r = emv_final_select(k)) != 0) {
            return r;
        }
        emv_store_drop(k, EMV_SRC_GPO);
        memset(k->tvr, 0, sizeof(k->tvr));
        memset(k->tsi, 0, sizeof(k->tsi));
        r = get_processing_options(k);
        if (r == 0) {
            break;
        }
        if (r != 1) {
            return r;
        }
    }
    if ((r = read_records(k)) != 0) {
        return r;
    }
    if ((r = check_card_data(k)) != 0) {
        return r;
    }
    /* Book 3 10.3: offline data authentication is not performed by this terminal. */
    emv_tvr_set(k, MPOS_EMV_TVR_ODA_NOT_PERFORMED);
    processing_restrictions(k);
    if ((r = emv_cvm(k)) != 0) {
        return r;
    }
    if ((r = terminal_risk_management(k)) != 0) {
        return r;
    }
    uint8_t p1 = action_analysis(k);
    if ((r = generate_ac(k, p1, 0x8C, &k->gac1)) != 0) {
        return r;
    }
    k->tsi[0] |= MPOS_EMV_TSI_CRM_PERFORMED;
    if ((k->gac1.cid & AC_MASK) == AC_ARQC) {
        k->state = EMV_ST_ONLINE;
        k->result.outcome = MPOS_EMV_ONLINE;
        k->result.reason = MPOS_EMV_REASON_NONE;
        mpos_cleanse(k->capdu, sizeof(k->capdu));
        return MPOS_EMV_ONLINE;
    }
    return emv_end(k, MPOS_EMV_DECLINED, MPOS_EMV_REASON_NONE);
}

int mpos_emv_start(mpos_emv_ctx *k, const mpos_emv_txn *txn)
{
    int r;
    if (k == NULL || txn == NULL || k->params == NULL || k->state != EMV_ST_IDLE ||
        k->env.card_io == NULL || k->env.rng == NULL || k->env.now == NULL) {
        return MPOS_ERR_ARG;
    }
    if (txn->amount > MAX_AMOUNT || txn->amount_other > MAX_AMOUNT ||
        txn->sequence > MAX_SEQUENCE || !params_valid(k->params)) {
        return MPOS_ERR_ARG;
    }
    k->txn = *txn;
    k->state = EMV_ST_STARTED;
    r = run_to_first_ac(k);
    if (r < 0) {
        /* An internal error (RNG, clock): the context is spent, no command data is kept. */
        k->state = EMV_ST_DONE;
        mpos_cleanse(k->capdu, sizeof(k->capdu));
    }
    return r;
}

/* Counts the issuer script templates 71/72 of a response; they are not processed. */
static int count_scripts(const uint8_t *buf, size_t len)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int count = 0;
    if (buf == NULL) {
        return 0;
    }
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_CARD);
    while (mpos_tlv_more(&it) && mpos_tlv_next(&it, &o) == MPOS_OK) {
        if (o.tag == 0x71 || o.tag == 0x72) {
            count++;
        }
    }
    return count;
}

/* Book 3 10.9: issuer authentication with EXTERNAL AUTHENTICATE (6.5.4), unless the card
 * takes the Issuer Authentication Data in CDOL2 (then the DOL carries it). */
static int issuer_authentication(mpos_emv_ctx *k)
{
    const uint8_t *aip, *cdol2;
    size_t n, cdol2_len, count = 0;
    mpos_tlv_dol_entry entries[MPOS_TLV_DOL_MAX_ENTRIES];
    int r;
    if (k->iad91_len == 0 || !emv_card_find(k, 0x82, &aip, &n) || (aip[0] & 0x04) == 0) {
        return 0;
    }
    (void)emv_card_find(k, 0x8D, &cdol2, &cdol2_len);
    if (mpos_tlv_dol_parse(cdol2, cdol2_len, entries, MPOS_TLV_DOL_MAX_ENTRIES, &count, NULL) ==
        MPOS_OK) {
        for (size_t i = 0; i < count; i++) {
            if (entries[i].tag == 0x91) {
                return 0;
            }
        }
    }
    k->tsi[0] |= MPOS_EMV_TSI_ISSUER_AUTH_PERFORMED;
    n = emv_apdu_build(k, 0x00, 0x82, 0x00, 0x00, k->iad91, k->iad91_len, 0);
    if ((r = emv_transmit(k, n)) != 0) {
        return r;
    }
    if (k->sw != EMV_SW_OK) {
        emv_tvr_set(k, MPOS_EMV_TVR_ISSUER_AUTH_FAILED); /* 6300 and any other refusal */
    }
    return 0;
}

int mpos_emv_complete(mpos_emv_ctx *k, const mpos_emv_online_response *resp)
{
    int r;
    uint8_t p1;
    if (k == NULL || k->state != EMV_ST_ONLINE) {
        return MPOS_ERR_ARG;
    }
    if (resp == NULL) {
        /* Book 3 10.7 / Book 4: unable to go online. The default action codes would decide,
         * but an online-only terminal declines: ask for an AAC with ARC Z3. */
        k->arc[0] = 'Z';
        k->arc[1] = '3';
        p1 = AC_AAC;
    } else {
        k->issuer_approved = resp->approved != 0;
        memcpy(k->arc, resp->arc, 2);
        if (resp->iad91 != NULL && resp->iad91_len > 0) {
            if (resp->iad91_len >= MPOS_EMV_ISSUER_AUTH_MIN &&
                resp->iad91_len <= MPOS_EMV_ISSUER_AUTH_MAX) {
                memcpy(k->iad91, resp->iad91, resp->iad91_len);
                k->iad91_len = resp->iad91_len;
            } else {
                emv_tvr_set(k, MPOS_EMV_TVR_ISSUER_AUTH_FAILED);
            }
        }
        k->result.scripts_ignored = count_scripts(resp->scripts, resp->scripts_len);
        if ((r = issuer_authentication(k)) != 0) {
            return r;
        }
        p1 = k->issuer_approved ? AC_TC : AC_AAC;
    }
    if ((r = generate_ac(k, p1, 0x8D, &k->gac2)) != 0) {
        return r;
    }
    if (memcmp(k->gac2.atc, k->gac1.atc, 2) != 0) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    if (resp == NULL) {
        return emv_end(k, MPOS_EMV_DECLINED, MPOS_EMV_REASON_UNABLE_ONLINE);
    }
    if ((k->gac2.cid & AC_MASK) == AC_TC) {
        return emv_end(k, MPOS_EMV_APPROVED, MPOS_EMV_REASON_NONE);
    }
    if (k->issuer_approved) {
        return emv_end(k, MPOS_EMV_DECLINED_AFTER_APPROVAL, MPOS_EMV_REASON_NONE);
    }
    return emv_end(k, MPOS_EMV_DECLINED, MPOS_EMV_REASON_NONE);
}

const mpos_emv_result *mpos_emv_get_result(const mpos_emv_ctx *k)
{
    return k != NULL ? &k->result : NULL;
}

int mpos_emv_get_data(const mpos_emv_ctx *k, uint32_t tag, const uint8_t **value, size_t *len,
                      int *found)
{
    enum mpos_tlv_format f;
    if (k == NULL || value == NULL || len == NULL || found == NULL || k->params == NULL) {
        return MPOS_ERR_ARG;
    }
    *value = NULL;
    *len = 0;
    *found = emv_lookup(k, tag, value, len, &f);
    return MPOS_OK;
}

int mpos_emv_card_data_get(const mpos_emv_ctx *k, mpos_emv_card_data *out)
{
    const uint8_t *v;
    size_t n;
    if (k == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (!emv_card_find(k, 0x5A, &v, &n) || emv_pan_digits(v, n, out->pan) != 0 ||
        !emv_card_find(k, 0x5F24, &v, &n) || !emv_is_bcd(v, 3)) {
        mpos_cleanse(out, sizeof(*out));
        return MPOS_ERR_ARG;
    }
    for (size_t i = 0; i < 3; i++) {
        out->expiry[2 * i] = (char)('0' + (v[i] >> 4));
        out->expiry[2 * i + 1] = (char)('0' + (v[i] & 0x0F));
    }
    if (emv_card_find(k, 0x5F34, &v, &n) && emv_is_bcd(v, 1)) {
        out->psn[0] = (char)('0' + (v[0] >> 4));
        out->psn[1] = (char)('0' + (v[0] & 0x0F));
    }
    if (emv_card_find(k, 0x5F30, &v, &n) && emv_is_bcd(v, 2) && (v[0] >> 4) == 0) {
        out->service_code[0] = (char)('0' + (v[0] & 0x0F));
        out->service_code[1] = (char)('0' + (v[1] >> 4));
        out->service_code[2] = (char)('0' + (v[1] & 0x0F));
    }
    if (emv_card_find(k, 0x57, &v, &n)) {
        memcpy(out->track2, v, n);
        out->track2_len = n;
    }
    if (emv_card_find(k, 0x84, &v, &n)) {
        memcpy(out->aid, v, n);
        out->aid_len = n;
    }
    return MPOS_OK;
}

int mpos_emv_field55(const mpos_emv_ctx *k, enum mpos_emv_f55 which, uint8_t *out, size_t cap,
                     size_t *len)
{
    static const uint32_t tags[] = {0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95,   0x9A,   0x9C,
                                    0x9F02, 0x5F2A, 0x82,   0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35,
                                    0x9F1E, 0x84,   0x9F09, 0x9F41, 0x9B,   0x8A};
    const struct mpos_emv_ac *ac;
    size_t count = sizeof(tags) / sizeof(tags[0]);
    if (k == NULL || out == NULL || len == NULL ||
        (which != MPOS_EMV_F55_REQUEST && which != MPOS_EMV_F55_FINAL)) {
        return MPOS_ERR_ARG;
    }
    *len = 0;
    ac = which == MPOS_EMV_F55_REQUEST ? &k->gac1 : &k->gac2;
    if (!ac->present) {
        return MPOS_ERR_ARG;
    }
    if (which == MPOS_EMV_F55_REQUEST) {
        count -= 2; /* no TSI and ARC in the request */
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *v = NULL;
        size_t n = 0;
        enum mpos_tlv_format f;
        int r;
        switch (tags[i]) {
        case 0x9F26:
            v = ac->ac;
            n = 8;
            break;
        case 0x9F27:
            v = &ac->cid;
            n = 1;
            break;
        case 0x9F10:
            v = ac->iad;
            n = ac->iad_len;
            break;
        case 0x9F36:
            v = ac->atc;
            n = 2;
            break;
        case 0x95:
            v = ac->tvr;
            n = 5;
            break;
        default:
            (void)emv_lookup(k, tags[i], &v, &n, &f);
            break;
        }
        if (v == NULL || n == 0) {
            continue;
        }
        if ((r = mpos_tlv_put(out, cap, len, tags[i], v, n)) != MPOS_OK) {
            mpos_cleanse(out, cap);
            *len = 0;
            return r;
        }
    }
    return MPOS_OK;
}

void mpos_emv_clear(mpos_emv_ctx *k)
{
    if (k != NULL) {
        mpos_cleanse(k, sizeof(*k));
    }
}
