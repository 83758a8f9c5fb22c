/* libFuzzer target: terminal/core/msr (ISO/IEC 7813 track parsing, service-code rules,
 * masking).
 *
 * The input is what a reader could hand over: up to the first 0x0A byte it is track 1, the
 * rest track 2 (and each alone is parsed as either track too). A track that parses must give
 * well-formed fields (PAN of 12..19 digits, YYMM with a month 01..12, a 3-digit service code,
 * a track 2 equivalent that spells PAN, expiry and service code), and the bare data built
 * back from them must parse to the same card; a track that does not parse leaves the card
 * all zeros. The service-code rules and the mask helpers run on every parsed card.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msr/msr.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return s[n] == '\0';
}

static void check_card(const mpos_msr_card *c)
{
    size_t pan_len = strlen(c->pan);
    CHECK(pan_len >= MPOS_MSR_PAN_MIN_LEN && pan_len <= MPOS_MSR_PAN_MAX_LEN);
    CHECK(digits(c->pan, pan_len) && digits(c->expiry, 4) && digits(c->service_code, 3));
    int mm = (c->expiry[2] - '0') * 10 + (c->expiry[3] - '0');
    CHECK(mm >= 1 && mm <= 12);
    char masked[MPOS_MSR_PAN_BUF_LEN];
    CHECK(mpos_msr_mask_pan(c->pan, masked) == MPOS_OK);
    CHECK(mpos_msr_pan_is_masked(masked, pan_len) && !mpos_msr_pan_is_masked(c->pan, pan_len));
    for (int failed = 0; failed < 2; failed++) {
        mpos_msr_policy p = {2026, 6, failed, failed};
        mpos_msr_decision d;
        int r = mpos_msr_check(c, &p, &d);
        CHECK((r >= 0 && r <= MPOS_MSR_EXPIRED) || (r == MPOS_ERR_ARG && !c->has_track2));
        CHECK(r == MPOS_OK || all_zero(&d, sizeof(d)));
        CHECK(r != MPOS_OK || !d.fallback || failed);
    }
    if (c->has_track2) {
        /* The track 2 equivalent spells the track: PAN D YYMM SC ..., F only at the end. */
        char nib[2 * MPOS_MSR_TRACK2_EQ_MAX_LEN + 1];
        size_t n = 0;
        CHECK(c->track2_eq_len >= 10 && c->track2_eq_len <= MPOS_MSR_TRACK2_EQ_MAX_LEN);
        for (size_t i = 0; i < c->track2_eq_len; i++) {
            static const char hex[] = "0123456789ABCDEF";
            nib[n++] = hex[c->track2_eq[i] >> 4];
            nib[n++] = hex[c->track2_eq[i] & 0x0F];
        }
        if (nib[n - 1] == 'F') {
            n--;
        }
        nib[n] = '\0';
        CHECK(strncmp(nib, c->pan, pan_len) == 0 && nib[pan_len] == 'D');
        CHECK(strncmp(nib + pan_len + 1, c->expiry, 4) == 0);
        CHECK(strncmp(nib + pan_len + 5, c->service_code, 3) == 0);
        CHECK(digits(nib + pan_len + 1, n - pan_len - 1));
        /* Rebuilt as a bare track 2, it parses to the same card. */
        char t2[64];
        memcpy(t2, nib, n);
        t2[pan_len] = '=';
        mpos_msr_card again;
        CHECK(mpos_msr_parse_track2(t2, n, &again) == MPOS_OK);
        CHECK(strcmp(again.pan, c->pan) == 0 && again.track2_eq_len == c->track2_eq_len &&
              memcmp(again.track2_eq, c->track2_eq, c->track2_eq_len) == 0);
    }
}

static void parse_one(const char *t, size_t n)
{
    mpos_msr_card c;
    int r = mpos_msr_parse_track2(t, n, &c);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
    if (r == MPOS_OK) {
        CHECK(n <= MPOS_MSR_TRACK2_MAX_LEN);
        check_card(&c);
    } else {
        CHECK(all_zero(&c, sizeof(c)));
    }
    r = mpos_msr_parse_track1(t, n, &c);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
    if (r == MPOS_OK) {
        CHECK(n <= MPOS_MSR_TRACK1_MAX_LEN && c.has_track1 && !c.has_track2);
        size_t nl = strlen(c.name);
        CHECK(nl >= MPOS_MSR_NAME_MIN_LEN && nl <= MPOS_MSR_NAME_MAX_LEN);
        check_card(&c);
    } else {
        CHECK(all_zero(&c, sizeof(c)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    const uint8_t *nl = memchr(data, 0x0A, size);
    size_t l1 = nl != NULL ? (size_t)(nl - data) : 0;
    size_t l2 = nl != NULL ? size - l1 - 1 : size;
    const char *t2 = nl != NULL ? t + l1 + 1 : t;
    parse_one(t, size);
    if (nl != NULL) {
        parse_one(t, l1);
        parse_one(t2, l2);
    }
    mpos_msr_card c;
    int r = mpos_msr_parse(nl != NULL ? t : NULL, l1, t2, l2, &c);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
    if (r == MPOS_OK) {
        CHECK(c.has_track2 && c.has_track1 == (l1 > 0));
        check_card(&c);
    } else {
        CHECK(all_zero(&c, sizeof(c)));
    }
    /* The mask checker on the raw input. */
    (void)mpos_msr_pan_is_masked(t, size);
    return 0;
}
