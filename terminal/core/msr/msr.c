/* openmpos terminal core: magnetic stripe tracks, Luhn, service code and fallback rules. */
#include <string.h>

#include "mpos/util.h"
#include "msr/msr.h"

/* The two track alphabets (ISO/IEC 7811-2 6-bit, 7811-2/-6 BCD 4-bit) as seen in ASCII. */
struct track_alphabet {
    char start;     /* start sentinel */
    uint8_t base;   /* ASCII of character code 0 */
    uint8_t mask;   /* character codes are 0..mask */
    size_t max_len; /* longest track, sentinels and LRC included (ISO/IEC 7813 10.1, 10.2) */
};

static const struct track_alphabet track1_alphabet = {'%', 0x20, 0x3F, MPOS_MSR_TRACK1_MAX_LEN};
static const struct track_alphabet track2_alphabet = {';', 0x30, 0x0F, MPOS_MSR_TRACK2_MAX_LEN};

#define END_SENTINEL '?'

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int in_alphabet(const struct track_alphabet *a, char c)
{
    uint8_t u = (uint8_t)c;
    return u >= a->base && u <= a->base + a->mask;
}

/* Finds the data of a framed (SS data ES [LRC]) or bare track. The frame's characters must
 * all be in the alphabet; the LRC, when present, must match: ISO/IEC 7811-2 and 7811-6, the
 * LRC character's code is the XOR of the codes of every character from SS through ES (the
 * parity bits, which the reader already checked, are not in the ASCII form). */
static int unframe(const struct track_alphabet *a, const char *track, size_t len, const char **data,
                   size_t *data_len)
{
    if (len == 0 || len > a->max_len) {
        return MPOS_ERR_FORMAT;
    }
    if (track[0] != a->start) {
        /* Bare: the reader removed SS, ES and LRC; the data alone is at most max_len - 3. */
        if (len > a->max_len - 3) {
            return MPOS_ERR_FORMAT;
        }
        *data = track;
        *data_len = len;
        return MPOS_OK;
    }
    size_t es = 1;
    while (es < len && track[es] != END_SENTINEL) {
        es++;
    }
    if (es == len || len - es > 2 || es - 1 > a->max_len - 3) {
        return MPOS_ERR_FORMAT; /* no end sentinel, more than one character after it, or more
                                   data than SS, ES and LRC leave room for */
    }
    uint8_t lrc = 0;
    for (size_t i = 0; i <= es; i++) {
        if (!in_alphabet(a, track[i])) {
            return MPOS_ERR_FORMAT;
        }
        lrc ^= (uint8_t)((uint8_t)track[i] - a->base);
    }
    if (len - es == 2) {
        char expect = (char)(a->base + (lrc & a->mask));
        if (track[es + 1] != expect) {
            return MPOS_ERR_FORMAT;
        }
    }
    *data = track + 1;
    *data_len = es - 1;
    return MPOS_OK;
}

/* Counts the digits at p (at most max). */
static size_t digit_run(const char *p, size_t len)
{
    size_t n = 0;
    while (n < len && is_digit(p[n])) {
        n++;
    }
    return n;
}

/* YYMM SC at p (7 digits available, checked by the caller): month 01..12. */
static int expiry_valid(const char *p)
{
    unsigned mm = (unsigned)(p[2] - '0') * 10u + (unsigned)(p[3] - '0');
    return mm >= 1 && mm <= 12;
}

/* Puts nibble v at nibble position *n of out. */
static void put_nibble(uint8_t *out, size_t *n, unsigned v)
{
    if (*n % 2 == 0) {
        out[*n / 2] = (uint8_t)(v << 4);
    } else {
        out[*n / 2] |= (uint8_t)(v & 0x0Fu);
    }
    (*n)++;
}

int mpos_msr_parse_track2(const char *track, size_t len, mpos_msr_card *card)
{
    int rc = MPOS_ERR_FORMAT;
    const char *d = NULL;
    size_t dlen = 0, pan_len, i, n = 0;
    if (card == NULL || (track == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(card, sizeof(*card));
    if (unframe(&track2_alphabet, track, len, &d, &dlen) != MPOS_OK) {
        goto exit;
    }
    /* ISO/IEC 7813 10.2: PAN, FS '=', expiry YYMM, service code, discretionary data. */
    pan_len = digit_run(d, dlen);
    if (pan_len < MPOS_MSR_PAN_MIN_LEN || pan_len > MPOS_MSR_PAN_MAX_LEN || pan_len == dlen ||
        d[pan_len] != '=') {
        goto exit;
    }
    i = pan_len + 1;
    if (dlen - i < MPOS_MSR_EXPIRY_LEN + MPOS_MSR_SERVICE_CODE_LEN ||
        digit_run(d + i, dlen - i) != dlen - i || !expiry_valid(d + i)) {
        goto exit; /* expiry and service code present, then digits only */
    }
    memcpy(card->pan, d, pan_len);
    memcpy(card->expiry, d + i, MPOS_MSR_EXPIRY_LEN);
    memcpy(card->service_code, d + i + MPOS_MSR_EXPIRY_LEN, MPOS_MSR_SERVICE_CODE_LEN);
    /* EMV 4.3 Book 3 Annex A, tag 57: the same characters as nibbles, 'D' for the separator,
     * F-padded to a whole byte. dlen <= 37 so this is at most 19 bytes. */
    for (size_t k = 0; k < dlen; k++) {
        put_nibble(card->track2_eq, &n, d[k] == '=' ? 0x0Du : (unsigned)(d[k] - '0'));
    }
    if (n % 2 != 0) {
        put_nibble(card->track2_eq, &n, 0x0Fu);
    }
    card->track2_eq_len = n / 2;
    card->has_track2 = 1;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(card, sizeof(*card));
    }
    return rc;
}

/* A track 1 data character that is not a sentinel or the separator. */
static int track1_text(char c)
{
    return in_alphabet(&track1_alphabet, c) && c != '%' && c != '^' && c != END_SENTINEL;
}

int mpos_msr_parse_track1(const char *track, size_t len, mpos_msr_card *card)
{
    int rc = MPOS_ERR_FORMAT;
    const char *d = NULL;
    size_t dlen = 0, pan_len, name_start, name_len, i;
    if (card == NULL || (track == NULL && len > 0)) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(card, sizeof(*card));
    if (unframe(&track1_alphabet, track, len, &d, &dlen) != MPOS_OK) {
        goto exit;
    }
    /* ISO/IEC 7813 10.1: format code 'B', PAN, FS '^', name, FS '^', expiry YYMM, service
     * code, discretionary data. */
    if (dlen < 1 || d[0] != 'B') {
        goto exit;
    }
    pan_len = digit_run(d + 1, dlen - 1);
    if (pan_len < MPOS_MSR_PAN_MIN_LEN || pan_len > MPOS_MSR_PAN_MAX_LEN || 1 + pan_len == dlen ||
        d[1 + pan_len] != '^') {
        goto exit;
    }
    name_start = 2 + pan_len;
    name_len = 0;
    while (name_start + name_len < dlen && track1_text(d[name_start + name_len])) {
        name_len++;
    }
    if (name_len < MPOS_MSR_NAME_MIN_LEN || name_len > MPOS_MSR_NAME_MAX_LEN ||
        name_start + name_len == dlen || d[name_start + name_len] != '^') {
        goto exit;
    }
    i = name_start + name_len + 1;
    if (dlen - i < MPOS_MSR_EXPIRY_LEN + MPOS_MSR_SERVICE_CODE_LEN ||
        digit_run(d + i, MPOS_MSR_EXPIRY_LEN + MPOS_MSR_SERVICE_CODE_LEN) !=
            MPOS_MSR_EXPIRY_LEN + MPOS_MSR_SERVICE_CODE_LEN ||
        !expiry_valid(d + i)) {
        goto exit;
    }
    for (size_t k = i + MPOS_MSR_EXPIRY_LEN + MPOS_MSR_SERVICE_CODE_LEN; k < dlen; k++) {
        if (!track1_text(d[k])) {
            goto exit; /* discretionary data: no sentinel or separator */
        }
    }
    memcpy(card->pan, d + 1, pan_len);
    memcpy(card->name, d + name_start, name_len);
    memcpy(card->expiry, d + i, MPOS_MSR_EXPIRY_LEN);
    memcpy(card->service_code, d + i + MPOS_MSR_EXPIRY_LEN, MPOS_MSR_SERVICE_CODE_LEN);
    card->has_track1 = 1;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(card, sizeof(*card));
    }
    return rc;
}

int mpos_msr_parse(const char *track1, size_t track1_len, const char *track2, size_t track2_len,
                   mpos_msr_card *card)
{
    int rc = MPOS_ERR_FORMAT;
    mpos_msr_card t1;
    memset(&t1, 0, sizeof(t1));
    if (card == NULL) {
        return MPOS_ERR_ARG;
    }
    if (track2 == NULL || track2_len == 0) {
        mpos_cleanse(card, sizeof(*card));
        goto exit; /* track 2 is required */
    }
    rc = mpos_msr_parse_track2(track2, track2_len, card);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (track1 != NULL && track1_len > 0) {
        rc = mpos_msr_parse_track1(track1, track1_len, &t1);
        if (rc != MPOS_OK) {
            goto exit;
        }
        if (strcmp(t1.pan, card->pan) != 0 || strcmp(t1.expiry, card->expiry) != 0 ||
            strcmp(t1.service_code, card->service_code) != 0) {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
        memcpy(card->name, t1.name, sizeof(card->name));
        card->has_track1 = 1;
    }
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(card, sizeof(*card));
    }
    MPOS_WIPE_CTX(&t1);
    return rc;
}

void mpos_msr_card_clear(mpos_msr_card *card)
{
    if (card != NULL) {
        mpos_cleanse(card, sizeof(*card));
    }
}

int mpos_msr_luhn_valid(const char *digits, size_t len)
{
    /* ISO/IEC 7812-1 Annex B: from the rightmost digit (the check digit), double every
     * second digit, subtract 9 from results over 9; the sum is a multiple of 10. */
    unsigned sum = 0;
    if (digits == NULL || len == 0) {
        return 0;
    }
    for (size_t k = 0; k < len; k++) {
        char c = digits[len - 1 - k];
        if (!is_digit(c)) {
            return 0;
        }
        unsigned v = (unsigned)(c - '0');
        if (k % 2 == 1) {
            v *= 2;
            if (v > 9) {
                v -= 9;
            }
        }
        sum += v;
    }
    return sum % 10 == 0;
}

int mpos_msr_check(const mpos_msr_card *card, const mpos_msr_policy *policy,
                   mpos_msr_decision *decision)
{
    int rc = MPOS_ERR_ARG;
    mpos_msr_decision d;
    memset(&d, 0, sizeof(d));
    if (decision == NULL) {
        return MPOS_ERR_ARG;
    }
    if (card == NULL || policy == NULL || !card->has_track2 || policy->year < 2000 ||
        policy->year > 2099 || policy->month < 1 || policy->month > 12) {
        goto exit;
    }
    const char *nul = memchr(card->pan, 0, sizeof(card->pan));
    size_t pan_len = nul != NULL ? (size_t)(nul - card->pan) : 0;
    if (pan_len < MPOS_MSR_PAN_MIN_LEN || pan_len > MPOS_MSR_PAN_MAX_LEN ||
        card->service_code[3] != '\0' || card->expiry[4] != '\0' ||
        !mpos_digits_valid(card->service_code, 3, 3) || !mpos_digits_valid(card->expiry, 4, 4)) {
        goto exit;
    }
    if (!mpos_msr_luhn_valid(card->pan, pan_len)) {
        rc = MPOS_MSR_BAD_PAN;
        goto exit;
    }
    /* ISO/IEC 7813 10.2.5 (service code). Position 1: 1 international, 2 international IC,
     * 5 national, 6 national IC (7 private, 9 test, the rest reserved: refused). Position 2:
     * 0 normal, 2 by issuer, 4 by issuer unless bilateral agreement (others reserved).
     * Position 3: 0 PIN required, 1 none, 2 goods and services only, 3 ATM only with PIN,
     * 4 cash only, 5 goods and services with PIN, 6 / 7 PIN where a PIN pad is present. */
    char s1 = card->service_code[0], s2 = card->service_code[1], s3 = card->service_code[2];
    if (!(s1 == '1' || s1 == '2' || s1 == '5' || s1 == '6') ||
        !(s2 == '0' || s2 == '2' || s2 == '4') || s3 == '3' || s3 == '4' || s3 == '8' ||
        s3 == '9') {
        rc = MPOS_MSR_NOT_ACCEPTED;
        goto exit;
    }
    int chip_card = s1 == '2' || s1 == '6';
    if (chip_card && !policy->chip_read_failed) {
        rc = MPOS_MSR_USE_CHIP; /* EMV: a chip card is read by its chip */
        goto exit;
    }
    d.fallback = chip_card;
    d.pin_required = s3 == '0' || s3 == '3' || s3 == '5' || s3 == '6' || s3 == '7';
    d.online_required = s2 == '2' || s2 == '4';
    unsigned yy = (unsigned)(card->expiry[0] - '0') * 10u + (unsigned)(card->expiry[1] - '0');
    unsigned mm = (unsigned)(card->expiry[2] - '0') * 10u + (unsigned)(card->expiry[3] - '0');
    unsigned card_month = (2000u + yy) * 12u + mm;
    unsigned today_month = (unsigned)policy->year * 12u + policy->month;
    d.expired = card_month < today_month;
    if (d.expired && policy->refuse_expired) {
        rc = MPOS_MSR_EXPIRED;
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (rc == MPOS_OK) {
        *decision = d;
    } else {
        memset(decision, 0, sizeof(*decision));
    }
    return rc;
}

int mpos_msr_mask_pan(const char *pan, char out[MPOS_MSR_PAN_BUF_LEN])
{
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, MPOS_MSR_PAN_BUF_LEN);
    if (pan == NULL || !mpos_digits_valid(pan, MPOS_MSR_PAN_MIN_LEN, MPOS_MSR_PAN_MAX_LEN)) {
        return MPOS_ERR_PAN;
    }
    size_t len = strlen(pan);
    for (size_t i = 0; i < len; i++) {
        out[i] = (i < MPOS_MSR_MASK_HEAD || i >= len - MPOS_MSR_MASK_TAIL) ? pan[i] : '*';
    }
    return MPOS_OK;
}

int mpos_msr_pan_is_masked(const char *s, size_t len)
{
    if (s == NULL || len < MPOS_MSR_PAN_MIN_LEN || len > MPOS_MSR_PAN_MAX_LEN) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        int edge = i < MPOS_MSR_MASK_HEAD || i >= len - MPOS_MSR_MASK_TAIL;
        if (edge ? !is_digit(s[i]) : s[i] != '*') {
            return 0;
        }
    }
    return 1;
}
