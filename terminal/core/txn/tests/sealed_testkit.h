/* Test kit: a test terminal for the sealed-message tests of the terminal, mpos-hsmd and the
 * back end (terminal/core/txn/tests/test_sealed.c, hsm/ops/test_sealed_ops.c,
 * hsm/hsmd/tests/test_hsmd.c, backend/txn/tests/test_bk_txn.c): the DUKPT terminal state of a
 * known BDK, the request and response keys of its current transaction, the PIN pad, the card
 * read of a test card and the header fields of a request. Every side of the system seals and
 * opens with the terminal's own code (txn/sealed.h), so the tests share one terminal too.
 *
 * The published DUKPT test keys: AES BDK FEDCBA9876543210F1F1F1F1F1F1F1F1 (and its AES-256
 * sibling), initial key ID 1234567890123456 (ANSI X9.24-3-2017 supplement); TDES BDK
 * 0123456789ABCDEFFEDCBA9876543210, KSN FFFF9876543210E00000 (ANSI X9.24-1-2009 A.4). */
#ifndef MPOS_SEALED_TESTKIT_H
#define MPOS_SEALED_TESTKIT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/err.h"
#include "test_cards.h"
#include "txn/sealed.h"

#define STK_AES_BDK128 "FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define STK_AES_BDK256 "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define STK_AES_IKID   "1234567890123456"
#define STK_TDES_BDK   "0123456789ABCDEFFEDCBA9876543210"
#define STK_TDES_KSN   "FFFF9876543210E00000"

/* The fixed header fields of stk_request. */
#define STK_CURRENCY    156
#define STK_MERCHANT_ID "898310048990001"
#define STK_TERMINAL_ID "10000001"
#define STK_DATETIME    "20260115093000"

/* One terminal: its DUKPT state (aes or tdes, after scheme) and, after stk_term_next, the KSN
 * of its current transaction with the keys of both directions. */
struct stk_term {
    mpos_crypto_ctx *cc;
    enum mpos_sealed_scheme scheme;
    mpos_dukpt_aes_terminal aes;
    mpos_dukpt_tdes_terminal tdes;
    uint8_t ksn[12];
    size_t ksn_len;
    mpos_sealed_keys req_keys, resp_keys;
};

/* Loads t from the clear BDK (bdk_len bytes) and id: the 8-byte initial key ID (AES schemes;
 * the initial key is as long as the BDK) or the 10-byte initial KSN (MPOS_SEALED_TDES). cc
 * stays in use by t. */
enum mpos_err stk_term_load(struct stk_term *t, mpos_crypto_ctx *cc, enum mpos_sealed_scheme scheme,
                            const uint8_t *bdk, size_t bdk_len, const uint8_t *id) MPOS_MUST_CHECK;

/* Loads t from the published test BDK of the scheme (AES-128 for MPOS_SEALED_AES128, AES-256
 * for the other AES schemes, whose keys need a BDK as strong) and its initial key ID / KSN. */
enum mpos_err stk_term_published(struct stk_term *t, mpos_crypto_ctx *cc,
                                 enum mpos_sealed_scheme scheme) MPOS_MUST_CHECK;

/* The next transaction: a new KSN and its request and response keys. */
enum mpos_err stk_term_next(struct stk_term *t) MPOS_MUST_CHECK;

/* The PIN pad: q's PIN block of pin and pan under the transaction's DUKPT PIN key (format 4
 * under the AES-128 PIN key, format 0 under the TDES one); sets has_pin and pin_format. */
enum mpos_err stk_term_pin(struct stk_term *t, const char *pin, const char *pan,
                           mpos_sealed_request *q) MPOS_MUST_CHECK;

/* Wipes the DUKPT state and the transaction keys. */
void stk_term_clear(struct stk_term *t);

/* The card read of a test card: PAN, expiry and track 2 equivalent, through the terminal's
 * stripe parser (discretionary data "1234"); out is zeroed first. */
enum mpos_err stk_card_read(const struct tc_card *c, mpos_sealed_card *out) MPOS_MUST_CHECK;

/* The test card called name in *out. Returns 0 when cards.tsv is not found (the test skips),
 * 1 when the card is there, -1 when the file has no such card (a failure). */
int stk_card(const char *name, const struct tc_card **out);

/* A zeroed request with the header every test shares: msg_type, sequence, a sale (txn_type
 * MPOS_LINK_TXN_SALE) of amount in STK_CURRENCY by STK_MERCHANT_ID / STK_TERMINAL_ID at
 * STK_DATETIME. */
void stk_request(mpos_sealed_request *q, uint8_t msg_type, uint32_t sequence, uint64_t amount);

/* For cmocka tests: var = the test card called name; the test is skipped when cards.tsv is
 * not found and fails when the card is not in it. */
#define STK_NEED_CARD(var, name)                                                                   \
    do {                                                                                           \
        int stk_found_ = stk_card((name), &(var));                                                 \
        if (stk_found_ == 0) {                                                                     \
            print_message("cards.tsv not found: skipped\n");                                       \
            skip();                                                                                \
        }                                                                                          \
        assert_int_equal(stk_found_, 1);                                                           \
    } while (0)

#endif
