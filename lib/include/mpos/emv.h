/* openmpos: EMV application cryptograms (EMV 4.3 Book 2 section 8 and Annex A1) and the
 * UnionPay PBOC session key.
 *
 * The chain is the same on the issuer (HSM), on the card (virtual card) and in tests:
 *   issuer master key --(A1.4, option A or B)--> ICC master key MK
 *   MK + ATC --(A1.3.1 common session key, or PBOC)--> session key SK
 *   SK + transaction data --(8.1.2, ISO 9797-1 MAC alg 3, padding 2)--> ARQC / TC / AAC
 *   SK + ARQC --(8.2.1 method 1 or 8.2.2 method 2)--> ARPC, checked by the card.
 *
 * Every key here is 2-key TDES, MPOS_EMV_KEY_LEN bytes; another key length is MPOS_ERR_KEY.
 * Derived keys (ICC master keys and session keys, both methods) are returned with odd parity;
 * DES ignores the parity bits, so nothing computed under a key depends on that choice.
 * On any error an output that would hold a key or a cryptogram is zeroed. Verification uses a
 * constant-time compare and returns MPOS_OK or MPOS_ERR_VERIFY.
 */
#ifndef MPOS_EMV_H
#define MPOS_EMV_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

#define MPOS_EMV_KEY_LEN           16 /* IMK, ICC MK, session key (2-key TDES) */
#define MPOS_EMV_PAN_MIN_DIGITS    12
#define MPOS_EMV_PAN_MAX_DIGITS    19
#define MPOS_EMV_PSN_DIGITS        2 /* PAN Sequence Number '5F34', as two decimal digits */
#define MPOS_EMV_ATC_LEN           2 /* Application Transaction Counter '9F36' */
#define MPOS_EMV_DIV_LEN           8 /* diversification value R of A1.3.1 */
#define MPOS_EMV_AC_LEN            8 /* ARQC, TC, AAC '9F26' */
#define MPOS_EMV_ARC_LEN           2 /* Authorisation Response Code '8A' (ARPC method 1) */
#define MPOS_EMV_CSU_LEN           4 /* Card Status Update (ARPC method 2) */
#define MPOS_EMV_PROP_AUTH_MAX_LEN 8 /* Proprietary Authentication Data (ARPC method 2) */
#define MPOS_EMV_ARPC1_LEN         8
#define MPOS_EMV_ARPC2_LEN         4
/* Issuer Authentication Data '91': method 1 ARPC || ARC (10 bytes); method 2
 * ARPC || CSU || proprietary authentication data (8 to 16 bytes). */
#define MPOS_EMV_ISSUER_AUTH_MAX_LEN                                                               \
    (MPOS_EMV_ARPC2_LEN + MPOS_EMV_CSU_LEN + MPOS_EMV_PROP_AUTH_MAX_LEN)
/* Recommended minimum AC data of Book 2 8.1.1 (Table 26): 33 bytes, then an optional
 * issuer-defined part taken from the Issuer Application Data '9F10' (at most 32 bytes). */
#define MPOS_EMV_AC_MIN_DATA_LEN 33
#define MPOS_EMV_IAD_MAX_LEN     32
#define MPOS_EMV_AC_DATA_MAX_LEN (MPOS_EMV_AC_MIN_DATA_LEN + MPOS_EMV_IAD_MAX_LEN)

enum mpos_emv_mk_option {
    MPOS_EMV_MK_OPTION_A = 1, /* A1.4.1: rightmost 16 digits of PAN || PSN */
    MPOS_EMV_MK_OPTION_B = 2  /* A1.4.2: SHA-1 and decimalisation for PANs over 16 digits */
};

enum mpos_emv_sk_method {
    MPOS_EMV_SK_COMMON = 1, /* A1.3.1 common session key, R = ATC || 00 00 00 00 00 00 */
    MPOS_EMV_SK_PBOC = 2    /* PBOC / UICS: TDES(MK, 00..00 || ATC) || TDES(MK, 00..00 || ~ATC) */
};

enum mpos_emv_arpc_method {
    MPOS_EMV_ARPC_METHOD_1 = 1, /* 8.2.1: 8-byte ARPC over ARQC and a 2-byte ARC */
    MPOS_EMV_ARPC_METHOD_2 = 2  /* 8.2.2: 4-byte ARPC over ARQC, CSU and proprietary data */
};

/* ICC master key from the issuer master key (A1.4). pan: 12 to 19 decimal digits (NUL-ended,
 * no 'F' padding); psn: two decimal digits, or NULL when the card has no PSN (A1.4 uses '00').
 * Option B equals option A for PANs of 16 digits or fewer. mk: 16 bytes, odd parity.
 * MPOS_ERR_PAN for a bad PAN, MPOS_ERR_FORMAT for a bad PSN, MPOS_ERR_KEY for imk_len != 16. */
int mpos_emv_derive_icc_mk(mpos_crypto_ctx *cc, enum mpos_emv_mk_option option, const uint8_t *imk,
                           size_t imk_len, const char *pan, const char *psn,
                           uint8_t mk[MPOS_EMV_KEY_LEN]) MPOS_MUST_CHECK;

/* Session key for application cryptograms from the ICC master key and the ATC (method
 * MPOS_EMV_SK_COMMON or MPOS_EMV_SK_PBOC). sk: 16 bytes, odd parity. */
int mpos_emv_derive_sk(mpos_crypto_ctx *cc, enum mpos_emv_sk_method method, const uint8_t *mk,
                       size_t mk_len, const uint8_t atc[MPOS_EMV_ATC_LEN],
                       uint8_t sk[MPOS_EMV_KEY_LEN]) MPOS_MUST_CHECK;

/* A1.3.1 common session key derivation with any 8-byte diversification value R (ATC || 00..00
 * for application cryptograms, the ARQC for secure-messaging keys). sk: 16 bytes, odd parity. */
int mpos_emv_derive_common_sk(mpos_crypto_ctx *cc, const uint8_t *mk, size_t mk_len,
                              const uint8_t r[MPOS_EMV_DIV_LEN],
                              uint8_t sk[MPOS_EMV_KEY_LEN]) MPOS_MUST_CHECK;

/* The card's AC session key straight from the issuer master key, the chain both the card
 * (at its first GENERATE AC) and the issuer (checking the ARQC) run: ICC master key by option A
 * (option B for PANs over 16 digits, A1.4), then the common session key (A1.3.1) for atc.
 * pan and psn as for mpos_emv_derive_icc_mk. The intermediate master key is wiped; on error
 * sk is zeroed and the error of the failing step is returned. */
int mpos_emv_derive_ac_sk(mpos_crypto_ctx *cc, const uint8_t *imk, size_t imk_len, const char *pan,
                          const char *psn, const uint8_t atc[MPOS_EMV_ATC_LEN],
                          uint8_t sk[MPOS_EMV_KEY_LEN]) MPOS_MUST_CHECK;

/* Application cryptogram (ARQC, TC or AAC: the algorithm is the same) over data_len bytes of
 * raw cryptogram input data (8.1.2): ISO 9797-1 MAC algorithm 3, padding method 2. data may be
 * NULL when data_len is 0. ac: 8 bytes. */
int mpos_emv_ac_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len, const uint8_t *data,
                         size_t data_len, uint8_t ac[MPOS_EMV_AC_LEN]) MPOS_MUST_CHECK;

/* Issuer side: recomputes the cryptogram and compares it in constant time with ac.
 * MPOS_OK if it matches, MPOS_ERR_VERIFY if not. */
int mpos_emv_ac_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len, const uint8_t *data,
                       size_t data_len, const uint8_t ac[MPOS_EMV_AC_LEN]) MPOS_MUST_CHECK;

/* ARPC method 1 (8.2.1): ARPC = TDES(SK)[ARQC XOR (ARC || 00 00 00 00 00 00)], 8 bytes. */
int mpos_emv_arpc1_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                            const uint8_t arqc[MPOS_EMV_AC_LEN],
                            const uint8_t arc[MPOS_EMV_ARC_LEN],
                            uint8_t arpc[MPOS_EMV_ARPC1_LEN]) MPOS_MUST_CHECK;

/* ARPC method 2 (8.2.2): the leftmost 4 bytes of MAC alg 3 (padding 2) over
 * ARQC || CSU || proprietary authentication data (prop_len 0 to 8; prop NULL when 0). */
int mpos_emv_arpc2_generate(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                            const uint8_t arqc[MPOS_EMV_AC_LEN],
                            const uint8_t csu[MPOS_EMV_CSU_LEN], const uint8_t *prop,
                            size_t prop_len, uint8_t arpc[MPOS_EMV_ARPC2_LEN]) MPOS_MUST_CHECK;

/* Card side: recompute and compare in constant time. MPOS_OK or MPOS_ERR_VERIFY. */
int mpos_emv_arpc1_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                          const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t arc[MPOS_EMV_ARC_LEN],
                          const uint8_t arpc[MPOS_EMV_ARPC1_LEN]) MPOS_MUST_CHECK;
int mpos_emv_arpc2_verify(mpos_crypto_ctx *cc, const uint8_t *sk, size_t sk_len,
                          const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t csu[MPOS_EMV_CSU_LEN],
                          const uint8_t *prop, size_t prop_len,
                          const uint8_t arpc[MPOS_EMV_ARPC2_LEN]) MPOS_MUST_CHECK;

/* Card side, from the Issuer Authentication Data '91' as received: method 1 expects exactly
 * ARPC (8) || ARC (2); method 2 expects ARPC (4) || CSU (4) || 0 to 8 bytes of proprietary
 * authentication data. A length the method does not allow, or an ARPC that does not match,
 * is MPOS_ERR_VERIFY (received data, not a programming error). */
int mpos_emv_issuer_auth_verify(mpos_crypto_ctx *cc, enum mpos_emv_arpc_method method,
                                const uint8_t *sk, size_t sk_len,
                                const uint8_t arqc[MPOS_EMV_AC_LEN], const uint8_t *iad91,
                                size_t iad91_len) MPOS_MUST_CHECK;

/* The recommended minimum set of AC data elements (Book 2 8.1.1, Table 26), in the order in
 * which they are concatenated, each as its raw tag value. */
struct mpos_emv_ac_fields {
    uint8_t amount_authorised[6]; /* '9F02' n12 */
    uint8_t amount_other[6];      /* '9F03' n12 */
    uint8_t terminal_country[2];  /* '9F1A' n3 */
    uint8_t tvr[5];               /* '95' Terminal Verification Results */
    uint8_t currency[2];          /* '5F2A' n3 */
    uint8_t date[3];              /* '9A' YYMMDD */
    uint8_t type;                 /* '9C' Transaction Type */
    uint8_t un[4];                /* '9F37' Unpredictable Number */
    uint8_t aip[2];               /* '82' Application Interchange Profile */
    uint8_t atc[2];               /* '9F36' Application Transaction Counter */
    const uint8_t *iad_part;      /* issuer-defined tail from '9F10' (e.g. the CVR), or NULL */
    size_t iad_part_len;          /* 0 to MPOS_EMV_IAD_MAX_LEN */
};

/* The tags of the fields of struct mpos_emv_ac_fields, in its order: '9F02', '9F03', '9F1A',
 * '95', '5F2A', '9A', '9C', '9F37', '82', '9F36' (the issuer-defined part excluded). */
#define MPOS_EMV_AC_FIELD_COUNT 10
extern const uint32_t mpos_emv_ac_field_tags[MPOS_EMV_AC_FIELD_COUNT];

/* Stores the value of one of those tags in its field, so that the card (from CDOL data) and
 * the issuer (from DE 55) fill the fields alike. MPOS_ERR_LENGTH when len is not the field's
 * length (nothing stored), MPOS_ERR_ARG for another tag or a NULL pointer. */
int mpos_emv_ac_field_set(struct mpos_emv_ac_fields *fields, uint32_t tag, const uint8_t *value,
                          size_t len) MPOS_MUST_CHECK;

/* Concatenates the fields into out (cap bytes; MPOS_EMV_AC_DATA_MAX_LEN always suffices) and
 * stores the length in *out_len. MPOS_ERR_LENGTH for an iad_part over 32 bytes or a short out. */
int mpos_emv_ac_data_build(const struct mpos_emv_ac_fields *fields, uint8_t *out, size_t cap,
                           size_t *out_len) MPOS_MUST_CHECK;

#endif
