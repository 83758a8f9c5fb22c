/* mpos-switchsim: the issuer engine (no sockets). It holds the zone keys, the test cards of
 * cards.tsv (with a PVV instead of the PIN), the ledger and the test controls that change a
 * card's answer, and turns one ISO 8583 request (docs/system-design.md section 4) into its
 * response. switchsim_main.c puts it behind a TCP listener and a control socket.
 *
 * Secrets: the clear PIN of cards.tsv is read once at start-up to compute the PVV and wiped;
 * keys live in the engine until sw_issuer_clear. Nothing secret is ever written to a log, the
 * ledger or an answer: PANs appear masked (first 6, last 4).
 */
#ifndef MPOS_SWITCHSIM_ISSUER_H
#define MPOS_SWITCHSIM_ISSUER_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"
#include "mpos/iso8583.h"

#define SW_MAX_CARDS       64
#define SW_MAX_TXNS        4096 /* ledger records; a full ledger answers 96 */
#define SW_MAX_MSG         2048 /* longest ISO 8583 message accepted or produced (no header) */
#define SW_PIN_TRY_LIMIT   3
#define SW_DEFAULT_BALANCE 10000000 /* minor units: 100000.00 */
#define SW_MASKED_PAN_LEN  20       /* buffer for a masked PAN + NUL */

enum sw_txn_type { SW_SALE = 1, SW_VOID = 2, SW_REFUND = 3, SW_BALANCE = 4 };

struct sw_card {
    char name[32];
    char pan[20];
    char masked[SW_MASKED_PAN_LEN];
    char expiry[5]; /* YYMM of the issuer's record */
    char psn[3];
    char pvv[5];           /* Visa PVV of the PIN under the PVK */
    uint8_t imk[16];       /* issuer master key for application cryptograms */
    int arpc_method;       /* 1 (ARPC || ARC) or 2 (ARPC || CSU), as the card is personalised */
    int64_t start_balance; /* minor units */
    int64_t balance;
    unsigned pin_failures; /* consecutive wrong PINs; SW_PIN_TRY_LIMIT blocks the PIN */
    char forced_rc[3];     /* "" or a response code forced by the control "rc" */
};

struct sw_txn {
    char mti[5];
    int type; /* enum sw_txn_type */
    char stan[7];
    char de7[11];
    char acq[12]; /* DE 32, left-padded with zeros to 11 digits */
    char rrn[13];
    size_t card;
    uint64_t amount;
    char rc[3];
    char auth[7];
    int approved;
    int voided;
    int reversed;
    uint64_t refunded;
    long orig; /* the sale a void or refund names, -1 none */
};

struct sw_stats {
    unsigned long requests, responses, dropped, duplicated, bad_mac, malformed, reversals, approved,
        declined;
};

typedef struct sw_issuer {
    mpos_crypto_ctx cc;
    uint8_t zpk[24], zak[16], zek[24];
    size_t zpk_len, zek_len;
    uint8_t pvk[16]; /* PIN verification key (Visa PVV) */
    unsigned pvki;
    int have_zek;
    struct sw_card cards[SW_MAX_CARDS];
    size_t ncards;
    struct sw_txn *txns; /* SW_MAX_TXNS records, allocated by sw_issuer_init */
    size_t ntxns;
    unsigned long auth_seq;
    const char *ledger_path; /* NULL: no ledger file */
    struct sw_stats st;
} sw_issuer;

/* Reads the keys file (key=value lines, '#' or ';' comments, [section] lines ignored):
 *   zmk = HEX          clear key-block protection key (test only: the simulator is its own HSM);
 *                      16/24 bytes (TR-31 version B) or 16/24/32 (version D)
 *   zpk = KEYBLOCK     TR-31 under the ZMK, usage P0, algorithm T (16 or 24 bytes)
 *   zak = KEYBLOCK     usage M3 (ISO 9797-1 MAC algorithm 3), algorithm T, 16 bytes
 *   zek = KEYBLOCK     optional: usage D0, algorithm T (DE 62 card data)
 *   pvk = HEX          clear TDES PVK (16 bytes) for the Visa PVVs
 *   pvki = DIGIT       PVK index in the PVV (default 1)
 * then the cards (cards.tsv format). On error *why names the problem (never a value).
 * ledger_path may be NULL. MPOS_ERR_* on failure, everything wiped. */
int sw_issuer_init(sw_issuer *is, const char *keys_path, const char *cards_path,
                   const char *ledger_path, const char **why) MPOS_MUST_CHECK;

/* Wipes keys and cards, frees the ledger. */
void sw_issuer_clear(sw_issuer *is);

/* Processes one unframed request. *resp_len 0 means: no answer (bad MAC, unparseable
 * message); otherwise resp holds the unframed response. *financial is 1 for 0100/0200/0400
 * (the test controls apply to those only). Logs one line on stderr. */
int sw_issuer_handle(sw_issuer *is, const uint8_t *req, size_t req_len, uint8_t *resp, size_t cap,
                     size_t *resp_len, int *financial) MPOS_MUST_CHECK;

/* Control "rc PAN CODE": forces CODE (2 characters an, or "-" to clear) for the card. */
int sw_issuer_force_rc(sw_issuer *is, const char *pan, const char *code) MPOS_MUST_CHECK;

/* Control "reset": balances to their start values, ledger emptied, PIN try counters and
 * forced codes cleared, statistics zeroed. */
void sw_issuer_reset(sw_issuer *is);

/* One line "PAN=MINOR ..." (masked PANs, balances in minor units) into out. */
void sw_issuer_ledger_line(const sw_issuer *is, char *out, size_t cap);

/* Rewrites the ledger file (when configured). */
void sw_issuer_ledger_write(const sw_issuer *is);

/* Masks a PAN: first 6 and last 4 digits, '*' between. */
void sw_mask_pan(const char *pan, char out[SW_MASKED_PAN_LEN]);

#endif
