/* mpos-hsmd ops: helpers shared by the command files. Internal to hsm/ops. */
#ifndef MPOS_HSM_OPS_INT_H
#define MPOS_HSM_OPS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/util.h"
#include "ops.h"

/* 1 when the vault can serve a command. */
int ops_vault_ready(const hsm_vault *v);

/* Loads a key block with hsm_key_load(): usages is a NULL-terminated list, algorithms a string
 * of codes, operation the mode-of-use letter (vault.h). out is wiped on error. */
int ops_load(hsm_vault *v, const struct hsm_kb_in *kb, const char *const *usages,
             const char *algorithms, char operation, hsm_key *out) MPOS_MUST_CHECK;

/* The cipher of a symmetric key's algorithm ('T' and 'D' TDES, 'A' AES, HSM_ALG_SM4 SM4);
 * MPOS_ERR_USAGE for any other. */
int ops_cipher(const hsm_key *k, enum mpos_cipher *cipher) MPOS_MUST_CHECK;

/* Check value of a symmetric key: 'A' CMAC 5 bytes; 'T', 'D', SM4 legacy 3 bytes; others none
 * (*kcv_len 0). kcv is HSM_KCV_LEN bytes, zero-filled past kcv_len. */
int ops_kcv(hsm_vault *v, const hsm_key *k, uint8_t kcv[HSM_KCV_LEN],
            size_t *kcv_len) MPOS_MUST_CHECK;

/* Security strength in bits (SP 800-57 part 1 table 2): 2-key TDES 80, 3-key 112, single DES
 * 56, AES 8*len, SM4 128, HMAC min(8*len, 256); 0 for anything else. */
unsigned ops_strength(char algorithm, size_t key_len);

/* Stores k under the LMK into out. */
int ops_store(hsm_vault *v, const hsm_key *k, struct hsm_kb_out *out) MPOS_MUST_CHECK;

/* 1 if the key's length fits its algorithm ('A' 16/24/32, 'T' 16/24, 'D' 8, SM4 16,
 * 'H' 16..64, 'E' 32). */
int ops_key_len_valid(char algorithm, size_t len);

/* DUKPT: which working key of the transaction. */
enum ops_dukpt_key {
    OPS_DUKPT_PIN = 1,
    OPS_DUKPT_MAC_REQUEST,  /* AES usage 2000; TDES MAC-request variant */
    OPS_DUKPT_MAC_RESPONSE, /* AES usage 2001; TDES MAC-response variant */
    OPS_DUKPT_DATA_REQUEST, /* AES usage 3000; TDES data-request variant */
    OPS_DUKPT_DATA_RESPONSE /* AES usage 3001; TDES data-response variant */
};

/* Loads the BDK of ref (usage B0, mode X) and derives the working key of the KSN for kind into
 * wk (attributes zero except algorithm 'A' or 'T'); *scheme 1 AES, 2 TDES. wk wiped on error. */
int ops_dukpt_working_key(hsm_vault *v, const struct hsm_dukpt_ref *ref, enum ops_dukpt_key kind,
                          hsm_key *wk, int *scheme) MPOS_MUST_CHECK;

/* 1 when an EMV tag may leave hsmd in clear (the allow-list of card_data.c: the cryptogram
 * and its inputs; never track data, expiry, PAN, name, CVN or a proprietary tag). */
int ops_emv_tag_is_clear(uint32_t tag);

/* Copies the PAN of a NUL-terminated field after checking it is 12 to 19 digits. */
int ops_pan_check(const char pan[HSM_PAN_BUF_LEN]) MPOS_MUST_CHECK;

#endif
