/* openmpos simulator: the virtual EMV / PBOC contact card, as an APDU engine.
 *
 * One card = one profile (a row of shared/testdata/cards.tsv, personalised by its behaviour)
 * and its state (ATC, PIN Try Counter, Last Online ATC Register, which survive power cycles,
 * and the session state, which does not). The engine takes one C-APDU and gives one R-APDU;
 * it knows nothing of a transport, so the same card serves the kernel in-process in unit
 * tests and pcscd through mpos-cardsim (vpcd protocol).
 *
 * What the card implements (EMV 4.3 Book 3 6.5 commands; PBOC 3.0 debit/credit choices):
 * SELECT by name (PSE '1PAY.SYS.DDF01' and the application, first occurrence), READ RECORD,
 * GET PROCESSING OPTIONS (format 1 or 2), GET DATA ('9F36' ATC, '9F17' PIN Try Counter,
 * '9F13' Last Online ATC Register), GET CHALLENGE, VERIFY (plaintext P2 80 and RSA-enciphered
 * P2 88 offline PIN, PIN Try Limit 3), GENERATE AC 1 and 2 (ARQC / TC / AAC under the EMV
 * common session key of the ICC master key derived from the issuer master key of the row:
 * option A, option B for PANs over 16 digits; lib/emv), and issuer authentication (ARPC
 * method 1, or method 2, by EXTERNAL AUTHENTICATE or in CDOL2).
 *
 * The card's RSA keys (PIN encipherment, and the issuer and certification authority keys
 * that certify it) are fixed test keys compiled into the simulator (testkeys.c), never real
 * ones; the private operations use OpenSSL (this is a simulator, not the terminal core).
 * Certificates are built at mpos_cardsim_init for the profile's PAN.
 */
#ifndef MPOS_CARDSIM_CARD_H
#define MPOS_CARDSIM_CARD_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/emv.h"
#include "mpos/err.h"

/* Positive results of power-on and process: the transport turns them into a failed power-up
 * or a time-out. */
#define MPOS_CARDSIM_MUTE    1 /* the chip does not answer */
#define MPOS_CARDSIM_NO_CHIP 2 /* no chip: power-up refused */

#define MPOS_CARDSIM_ATR_MAX   33
#define MPOS_CARDSIM_RAPDU_MAX 258
#define MPOS_CARDSIM_REC_MAX   256 /* one record, '70' template included */
#define MPOS_CARDSIM_MAX_RECS  6   /* records of the application (SFI 1 and 2) */

/* The behaviours of cards.tsv, by the row's name. */
enum mpos_cardsim_behaviour {
    MPOS_CARDSIM_APPROVE = 1,
    MPOS_CARDSIM_APPROVE_19DIGIT,
    MPOS_CARDSIM_INSUFFICIENT,  /* issuer side; the card behaves normally */
    MPOS_CARDSIM_WRONG_PIN,     /* issuer side (online PIN); PIN Try Limit 3 for offline */
    MPOS_CARDSIM_CARD_DECLINES, /* AAC at the second GENERATE AC */
    MPOS_CARDSIM_CHIP_BROKEN,   /* mute */
    MPOS_CARDSIM_STRIPE_ONLY,   /* no chip */
    MPOS_CARDSIM_OFFLINE_PIN,   /* CVM list: offline enciphered PIN, then online PIN */
    MPOS_CARDSIM_EXPIRED,       /* expiry date in the past */
    MPOS_CARDSIM_FOREIGN_AID    /* only A0000000031010 */
};

enum mpos_cardsim_offline_pin {
    MPOS_CARDSIM_OFFLINE_PIN_NONE = 0,
    MPOS_CARDSIM_OFFLINE_PIN_PLAIN = 1,     /* CVM 41 03 first */
    MPOS_CARDSIM_OFFLINE_PIN_ENCIPHERED = 2 /* CVM 44 03 first */
};

typedef struct mpos_cardsim_profile {
    /* From the row of cards.tsv. */
    char name[32];
    char pan[20];                  /* 12..19 digits */
    char expiry[5];                /* YYMM */
    char service_code[4];          /* 3 digits */
    char psn[3];                   /* 2 digits */
    char pin[13];                  /* 4..12 digits */
    uint8_t imk[MPOS_EMV_KEY_LEN]; /* issuer master key for application cryptograms */
    enum mpos_cardsim_behaviour behaviour;
    /* Personalisation, set from the behaviour by mpos_cardsim_profile_parse; a test may
     * change it before mpos_cardsim_init. */
    int has_chip;
    int mute;
    uint8_t aid[16];
    size_t aid_len;
    int pse;                  /* 1: the card has the PSE */
    int gpo_format;           /* 1: '80' template, 2: '77' */
    int gac_format;           /* 1 or 2 */
    int arpc_method;          /* 1 or 2 */
    int iad_in_cdol2;         /* 1: '91' in CDOL2, else EXTERNAL AUTHENTICATE */
    int issuer_auth_required; /* 1: TC at GAC2 only after a good issuer authentication */
    enum mpos_cardsim_offline_pin offline_pin;
    int decline_at_gac2;
    uint8_t pin_try_limit;
    uint16_t atc_start; /* ATC before the first transaction */
} mpos_cardsim_profile;

/* Parses one row of cards.tsv (tab-separated, the 9 columns of its header; a trailing newline
 * is allowed) and personalises the profile from the row's name. A name not in the list gets
 * the approve personalisation. MPOS_ERR_FORMAT for a row that does not parse. */
int mpos_cardsim_profile_parse(const char *line, mpos_cardsim_profile *p) MPOS_MUST_CHECK;

/* Reads the row named name from the cards.tsv file at path. MPOS_ERR_FORMAT when the file
 * cannot be read or has no such row. */
int mpos_cardsim_profile_load(const char *path, const char *name,
                              mpos_cardsim_profile *p) MPOS_MUST_CHECK;

/* Caller-allocated; fields private. */
typedef struct mpos_cardsim {
    mpos_cardsim_profile prof;
    mpos_crypto_ctx *cc;
    void *pin_key; /* EVP_PKEY of the ICC PIN encipherment key */
    /* persistent state */
    uint16_t atc;
    uint16_t last_online_atc;
    uint8_t pin_tries;
    /* personalisation */
    uint8_t pse_fci[64];
    size_t pse_fci_len;
    uint8_t pse_rec[64];
    size_t pse_rec_len;
    uint8_t fci[128];
    size_t fci_len;
    uint8_t recs[MPOS_CARDSIM_MAX_RECS][MPOS_CARDSIM_REC_MAX];
    size_t rec_len[MPOS_CARDSIM_MAX_RECS];
    uint8_t rec_sfi[MPOS_CARDSIM_MAX_RECS];
    uint8_t rec_no[MPOS_CARDSIM_MAX_RECS];
    size_t rec_count;
    uint8_t afl[8];
    size_t afl_len;
    uint8_t aip[2];
    uint8_t pdol[16];
    size_t pdol_len;
    uint8_t cdol1[64];
    size_t cdol1_len;
    uint8_t cdol2[64];
    size_t cdol2_len;
    /* session (reset by power-on and SELECT) */
    int powered;
    int selected; /* 0 none, 1 PSE, 2 application */
    int gpo_done;
    int gac_state;   /* 0 none, 1 ARQC given, 2 done */
    int issuer_auth; /* 0 not done, 1 good, -1 failed */
    int offline_pin_ok;
    uint8_t challenge[8];
    int challenge_valid;
    uint8_t sk[MPOS_EMV_KEY_LEN];
    uint8_t arqc[MPOS_EMV_AC_LEN];
    uint8_t cvr[3];
} mpos_cardsim;

/* Personalises the card for the profile: records, certificates, keys. cc must outlive c.
 * MPOS_ERR_ARG, MPOS_ERR_FORMAT (profile values), MPOS_ERR_CRYPTO. */
int mpos_cardsim_init(mpos_cardsim *c, const mpos_cardsim_profile *p,
                      mpos_crypto_ctx *cc) MPOS_MUST_CHECK;

/* Cold reset: 0 with the ATR, MPOS_CARDSIM_MUTE or MPOS_CARDSIM_NO_CHIP. */
int mpos_cardsim_power_on(mpos_cardsim *c, uint8_t atr[MPOS_CARDSIM_ATR_MAX],
                          size_t *atr_len) MPOS_MUST_CHECK;

void mpos_cardsim_power_off(mpos_cardsim *c);

/* One command: 0 with the R-APDU (data || SW1 SW2, at most MPOS_CARDSIM_RAPDU_MAX bytes,
 * rapdu has cap bytes), MPOS_CARDSIM_MUTE / MPOS_CARDSIM_NO_CHIP when the card does not
 * answer (also when it is not powered), MPOS_ERR_ARG / MPOS_ERR_LENGTH for a bad call. */
int mpos_cardsim_process(mpos_cardsim *c, const uint8_t *capdu, size_t capdu_len, uint8_t *rapdu,
                         size_t cap, size_t *rapdu_len) MPOS_MUST_CHECK;

/* The card's PIN Try Counter and ATC (for tests). */
uint8_t mpos_cardsim_pin_tries(const mpos_cardsim *c);
uint16_t mpos_cardsim_atc(const mpos_cardsim *c);

/* Frees the key and wipes the card. */
void mpos_cardsim_clear(mpos_cardsim *c);

/* The test certification authority public key that certifies every virtual card (RID
 * A000000333 or the profile's RID, index *index): what the terminal's parameters need.
 * mod: cap bytes. MPOS_ERR_CRYPTO when the compiled key does not load. */
int mpos_cardsim_ca_key(uint8_t *index, uint8_t *mod, size_t cap, size_t *mod_len, uint8_t *exp,
                        size_t exp_cap, size_t *exp_len) MPOS_MUST_CHECK;

#endif
