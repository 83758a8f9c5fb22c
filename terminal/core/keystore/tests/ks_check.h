/* Test helper: the DUKPT invariants of the key store, checked against the host side.
 *
 * The checker knows the BDK (as the back end would) and records every transaction whose keys
 * the key store returned. It reports, without asserting (so a test can also prove it fires):
 *   - a KSN used twice, or a counter not above every counter used before (forward only);
 *   - a sequence number not above the last one;
 *   - working keys that are not the host's keys of the KSN;
 *   - in what storage holds (the "keys" record, opened with the device's record keys): a next
 *     counter not above the highest counter used, a counter moving back from one stored
 *     state to the next, a register that is not exactly the host's key of a counter at or
 *     above the next one (so no stored register can derive a used key, X9.24-3 6.5 /
 *     X9.24-1 A.2), a register that should be erased and is not, or, anywhere in the record's
 *     body, the key of a counter already used.
 */
#ifndef MPOS_TEST_KS_CHECK_H
#define MPOS_TEST_KS_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"

#define KS_CHECK_MAX_USED 4096

typedef struct ks_check {
    mpos_crypto_ctx *cc;
    enum mpos_keystore_scheme scheme; /* DUKPT AES or TDES */
    uint8_t bdk[32];
    size_t bdk_len;
    uint8_t ik_id[MPOS_KEYSTORE_IK_ID_MAX]; /* AES initial key ID (8) / TDES initial KSN */
    enum mpos_dukpt_aes_key_type wk_type;
    uint32_t used[KS_CHECK_MAX_USED];
    uint8_t used_key[KS_CHECK_MAX_USED][32]; /* the counter's derivation / transaction key */
    size_t n_used;
    uint32_t max_used;
    uint32_t last_sequence;
    uint32_t last_stored_next;
    uint64_t states_checked, registers_checked;
    int failed;
    char why[256];
} ks_check;

/* AES: bdk of 16/24/32 bytes, ik_id the 8-byte initial key ID, working keys of wk_type.
 * TDES: bdk of 16 bytes, ik_id the 10-byte initial KSN. */
void ks_check_init(ks_check *c, mpos_crypto_ctx *cc, enum mpos_keystore_scheme scheme,
                   const uint8_t *bdk, size_t bdk_len, const uint8_t *ik_id,
                   enum mpos_dukpt_aes_key_type wk_type);

/* The initial key the terminal gets (AES: initial key; TDES: IPEK) into ik (bdk_len bytes for
 * AES, 16 for TDES); returns its length. */
size_t ks_check_initial_key(ks_check *c, uint8_t ik[32]);

/* Records a transaction the key store returned. 0, or -1 with c->why. */
int ks_check_use(ks_check *c, const mpos_keystore_txn *txn);

/* Checks the "keys" record storage holds now. 0, or -1 with c->why. A store with no keys
 * record or no DUKPT state passes (nothing can repeat from it). */
int ks_check_stored(ks_check *c, const mpos_hal_storage *st);

/* Checks one DUKPT terminal state (AES or TDES as c->scheme) and the raw bytes it came from
 * against the used counters. 0, or -1 with c->why. */
int ks_check_state(ks_check *c, const void *terminal, const uint8_t *raw, size_t raw_len);

#endif
