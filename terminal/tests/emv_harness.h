/* Test harness: the EMV kernel against the virtual card in-process, with scripted faults. */
#ifndef MPOS_EMV_HARNESS_H
#define MPOS_EMV_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "card.h"
#include "emv_kernel.h"

struct harness;

/* Called after the card answered (rapdu/rlen may be rewritten; *rlen may be set above
 * MPOS_RAPDU_MAX to play a reader that reports an oversize answer). Return nonzero to make the
 * card mute for this command. */
typedef int (*harness_tamper_fn)(struct harness *h, const uint8_t *capdu, size_t clen,
                                 uint8_t *rapdu, size_t *rlen);

struct harness {
    mpos_crypto_ctx cc;
    mpos_cardsim card;
    mpos_cardsim_profile prof;
    mpos_emv_params params;
    mpos_emv_env env;
    mpos_emv_ctx k;
    mpos_emv_txn txn;
    mpos_emv_datetime now;
    uint32_t rng;
    uint8_t first_random[4]; /* the first 4 bytes the RNG gave (the UN) */
    int rng_calls;
    /* PIN entry script: offline PINs in order, then bypass; online PIN answer. */
    const char *pins[8];
    size_t pin_count, pin_next;
    unsigned tries_seen[8];
    int online_pin_result;
    int online_pin_calls;
    int offline_cancel;
    /* card I/O */
    harness_tamper_fn tamper;
    int tamper_arg;
    size_t exchanges;
    int t0; /* answer every response with data as 61xx first */
    uint8_t pending[MPOS_RAPDU_MAX];
    size_t pending_len;
    unsigned ins_count[256]; /* commands seen, by INS */
};

/* Path of cards.tsv: $MPOS_SOURCE_DIR/../shared/testdata/cards.tsv when it exists, else the
 * copy in $MPOS_SOURCE_DIR/tests/data/cards.tsv. */
const char *h_cards_path(void);

/* Loads the card row and the default parameters (with the test CA key), fixed clock
 * 2026-03-15 10:30:00, amount 123.45 CNY, goods. Aborts the test on failure. */
void h_setup(struct harness *h, const char *card_name);

/* Personalises the card from h->prof (change h->prof between h_setup and h_card) and
 * initialises the kernel context. */
void h_card(struct harness *h);

/* mpos_emv_start with h->txn. */
int h_start(struct harness *h);

/* The issuer: checks the ARQC of the request's field 55 against the card's issuer master key
 * (lib/emv, recomputed from the request data only) and builds the Issuer Authentication Data
 * for arc with the card's ARPC method. Returns its length. */
size_t h_issuer(struct harness *h, const char *arc, uint8_t iad[16]);

/* mpos_emv_complete with the issuer's answer (approved, arc, its ARPC). */
int h_complete(struct harness *h, int approved, const char *arc);

void h_teardown(struct harness *h);

/* TLV of field 55: finds tag (abort if absent). */
const uint8_t *h_f55(const uint8_t *f55, size_t len, uint32_t tag, size_t *vlen);

#endif
