/* openmpos terminal core: magnetic stripe (ISO/IEC 7813 tracks 1 and 2), Luhn, service-code
 * and fallback rules, PAN masking.
 *
 * A track comes from the reader HAL as the characters it decoded, in ASCII: track 1 in the
 * 6-bit alphabet of ISO/IEC 7811-2 (0x20..0x5F), track 2 in the 4-bit one (0x30..0x3F). Both
 * shapes readers deliver are taken:
 *   - framed:   SS data ES [LRC]     ('%' ... '?' for track 1, ';' ... '?' for track 2);
 *   - bare:     data                 (the reader stripped the sentinels and the LRC).
 * When a character follows the end sentinel it is the LRC and it must match (ISO/IEC 7811-2
 * and 7811-6: XOR of the character codes, parity bits excluded, from SS through ES). Nothing
 * may follow the LRC. Lengths are those of ISO/IEC 7813: track 1 at most 79 characters and
 * track 2 at most 40, sentinels and LRC included.
 *
 * Track 2 (ISO/IEC 7813 10.2): PAN (12..19 digits) '=' expiry YYMM, service code (3 digits),
 * discretionary data (digits). Track 1 format B (7813 10.1): 'B' PAN '^' name (2..26
 * characters) '^' YYMM, service code, discretionary data. Expiry (month 01..12) and service
 * code are required: a track that marks them absent (a separator in their place) is refused,
 * since a payment needs both. The Luhn check is not a format rule (mpos_msr_check reports it).
 *
 * Nothing allocates; no function reads outside the bytes it is given. Card structures hold
 * cardholder data: wipe them with mpos_msr_card_clear when done. Return convention: 0, a
 * negative enum mpos_err (MPOS_ERR_FORMAT for a malformed track, MPOS_ERR_ARG), or for
 * mpos_msr_check a positive enum mpos_msr_outcome.
 */
#ifndef MPOS_TERMINAL_MSR_H
#define MPOS_TERMINAL_MSR_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_MSR_PAN_MIN_LEN       12
#define MPOS_MSR_PAN_MAX_LEN       19
#define MPOS_MSR_PAN_BUF_LEN       (MPOS_MSR_PAN_MAX_LEN + 1) /* digits + NUL; also masked */
#define MPOS_MSR_TRACK1_MAX_LEN    79 /* characters, sentinels and LRC included */
#define MPOS_MSR_TRACK2_MAX_LEN    40
#define MPOS_MSR_NAME_MIN_LEN      2
#define MPOS_MSR_NAME_MAX_LEN      26
#define MPOS_MSR_EXPIRY_LEN        4 /* YYMM */
#define MPOS_MSR_SERVICE_CODE_LEN  3
#define MPOS_MSR_TRACK2_EQ_MAX_LEN 19 /* EMV tag 57: 37 nibbles of track 2 data + F pad */
#define MPOS_MSR_MASK_HEAD         6  /* G-ACCT-2: digits shown at the start */
#define MPOS_MSR_MASK_TAIL         4  /* and at the end */

/* What one stripe read gives. Strings are NUL-terminated. */
typedef struct mpos_msr_card {
    char pan[MPOS_MSR_PAN_BUF_LEN];
    char expiry[MPOS_MSR_EXPIRY_LEN + 1];             /* YYMM */
    char service_code[MPOS_MSR_SERVICE_CODE_LEN + 1]; /* 3 digits */
    char name[MPOS_MSR_NAME_MAX_LEN + 1];             /* track 1 only; "" without it */
    /* Track 2 as EMV track 2 equivalent data (tag 57, EMV 4.3 Book 3 Annex A): PAN, 'D',
     * expiry, service code, discretionary data, packed BCD, F-padded to a whole byte.
     * Built from track 2 only (empty with a track 1 alone). */
    uint8_t track2_eq[MPOS_MSR_TRACK2_EQ_MAX_LEN];
    size_t track2_eq_len;
    int has_track1;
    int has_track2;
} mpos_msr_card;

/* Parses track 2 (len characters at track, not NUL-terminated) into card. On error card is
 * wiped. MPOS_ERR_FORMAT for anything that is not a well-formed track 2 (sentinels, length,
 * separator, field lengths, characters, LRC). */
int mpos_msr_parse_track2(const char *track, size_t len, mpos_msr_card *card) MPOS_MUST_CHECK;

/* Parses track 1 format B into card (track2_eq stays empty). Same rules. */
int mpos_msr_parse_track1(const char *track, size_t len, mpos_msr_card *card) MPOS_MUST_CHECK;

/* Parses what the reader read: track 1 and/or track 2 (a NULL track or length 0 = not read).
 * Track 2 is required (it is what the authorization uses); when track 1 is there too, it must
 * be well formed and carry the same PAN, expiry and service code, else MPOS_ERR_FORMAT (a
 * card whose tracks disagree is refused, not guessed at). On error card is wiped. */
int mpos_msr_parse(const char *track1, size_t track1_len, const char *track2, size_t track2_len,
                   mpos_msr_card *card) MPOS_MUST_CHECK;

/* Wipes the card structure. */
void mpos_msr_card_clear(mpos_msr_card *card);

/* 1 if the len ASCII digits at digits pass the Luhn check (ISO/IEC 7812-1 Annex B), 0 if
 * not or if a character is not a digit or len is 0. */
int mpos_msr_luhn_valid(const char *digits, size_t len);

/* Business outcomes of mpos_msr_check (positive, after the 0 of "accept"). */
enum mpos_msr_outcome {
    MPOS_MSR_USE_CHIP = 1,     /* a chip card read by stripe with no chip failure: insert it */
    MPOS_MSR_BAD_PAN = 2,      /* Luhn check failed: a misread or a made-up number */
    MPOS_MSR_NOT_ACCEPTED = 3, /* the service code forbids this card here (ATM/cash only,
                                  private, test or reserved values) */
    MPOS_MSR_EXPIRED = 4       /* past its expiry month (only with refuse_expired) */
};

/* The context of one stripe read. */
typedef struct mpos_msr_policy {
    uint16_t year;        /* today, from the terminal's clock: 2000..2099 */
    uint8_t month;        /* 1..12 */
    int chip_read_failed; /* 1 if a chip read of this card failed in this same transaction */
    int refuse_expired;   /* 1: an expired card is MPOS_MSR_EXPIRED; 0: it is only flagged
                             (the issuer declines it, as the chip kernel's TVR bit would) */
} mpos_msr_policy;

/* What an accepted read means for the transaction. */
typedef struct mpos_msr_decision {
    int fallback;        /* 1: a chip card accepted by stripe after a chip failure (POS entry
                            mode "fallback"); the request must say so */
    int pin_required;    /* service code 3rd digit 0, 3, 5, or 6, 7 (PIN pad present) */
    int online_required; /* service code 2nd digit 2 or 4: authorization by the issuer */
    int expired;         /* the expiry month is past */
} mpos_msr_decision;

/* Applies the rules to a parsed card, in this order:
 *   Luhn (MPOS_MSR_BAD_PAN);
 *   service code (ISO/IEC 7813 10.2.5): 1st digit 1, 2, 5 or 6, 2nd digit 0, 2 or 4, 3rd
 *   digit not 3 or 4 (ATM only, cash only) and not 8 or 9 (reserved), else
 *   MPOS_MSR_NOT_ACCEPTED;
 *   chip: a 1st digit 2 or 6 (IC card) is MPOS_MSR_USE_CHIP unless policy->chip_read_failed,
 *   in which case the read is accepted with decision->fallback = 1;
 *   expiry: valid through the end of its month (YY read as 20YY); past it,
 *   decision->expired = 1 and, with refuse_expired, MPOS_MSR_EXPIRED.
 * Returns 0 (accept, decision filled), a positive enum mpos_msr_outcome (decision zeroed), or
 * MPOS_ERR_ARG (NULL, a card without a parsed track 2, a policy date out of range; decision
 * zeroed). */
int mpos_msr_check(const mpos_msr_card *card, const mpos_msr_policy *policy,
                   mpos_msr_decision *decision) MPOS_MUST_CHECK;

/* G-ACCT-2: the display and log form of a PAN: the first 6 and last 4 digits, '*' between
 * ("621209******6349"). pan: 12..19 digits, NUL-terminated. out: MPOS_MSR_PAN_BUF_LEN bytes.
 * MPOS_ERR_PAN (out emptied) when pan is not 12..19 digits. */
int mpos_msr_mask_pan(const char *pan, char out[MPOS_MSR_PAN_BUF_LEN]) MPOS_MUST_CHECK;

/* 1 if the len characters at s are a masked PAN as mpos_msr_mask_pan writes it (12..19
 * characters: 6 digits, len - 10 '*', 4 digits), else 0. Used to refuse, at every output,
 * anything that could be a full PAN. */
int mpos_msr_pan_is_masked(const char *s, size_t len);

#endif
