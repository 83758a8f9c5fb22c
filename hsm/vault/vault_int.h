/* mpos-hsmd vault internals shared by vault.c (arena, key blocks) and lmk_pkcs11.c (token). */
#ifndef MPOS_HSM_VAULT_INT_H
#define MPOS_HSM_VAULT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

/* Layout of the locked arena (one page between two PROT_NONE guard pages). */
#define HSM_ARENA_LMK_OFF     0
#define HSM_ARENA_KBPK_OFF    HSM_LMK_LEN
#define HSM_ARENA_SCRATCH_OFF (2 * HSM_LMK_LEN)
#define HSM_ARENA_SCRATCH_LEN 128 /* token output (C_Decrypt wants room for the tag) */

/* Records why (a fixed string) and returns rc. */
int hsm_vault_refuse(hsm_vault *v, int rc, const char *why);

/* MPOS_OK when v is initialised and not open, else MPOS_ERR_ARG (why set). */
int hsm_vault_check_closed(hsm_vault *v) MPOS_MUST_CHECK;

/* The LMK is in place in the arena: derives the KBPK, computes the LMK check value, marks the
 * vault open. On error the arena is wiped and the vault stays closed. */
int hsm_vault_finish_open(hsm_vault *v) MPOS_MUST_CHECK;

/* Wipes LMK, KBPK, scratch and check value; the vault is closed but stays initialised. */
void hsm_vault_wipe_keys(hsm_vault *v);

/* keyblock_ext.c: X9.143 version D for the algorithms lib/tr31 does not wrap ('E' EC private
 * scalar, 32 bytes; HSM_ALG_SM4, 16 bytes), same construction and arguments as
 * mpos_tr31_wrap / mpos_tr31_unwrap with a 32-byte KBPK; why gets a fixed description of a
 * failure. 'A' is accepted too (the tests compare both implementations on it). */
int hsm_kb_ext_algorithm(char algorithm); /* 1 for 'E' and HSM_ALG_SM4 */
int hsm_kb_key_len_valid(char algorithm, size_t len);
/* mpos_tr31_header_parse, with HSM_ALG_SM4 shown to it as 'A' (SM4 keys take the usages and
 * modes of AES keys); hdr->algorithm and hdr->text keep the real code. */
int hsm_kb_parse(const char *text, size_t len, enum mpos_tr31_parse mode,
                 mpos_tr31_header *hdr) MPOS_MUST_CHECK;
int hsm_kb_ext_wrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, const char *tmpl, size_t tmpl_len,
                    const uint8_t *key, size_t key_len, const uint8_t *padding, size_t padding_len,
                    char *block, size_t cap, size_t *block_len, const char **why) MPOS_MUST_CHECK;
int hsm_kb_ext_unwrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, const char *block, size_t block_len,
                      mpos_tr31_header *hdr, uint8_t *key, size_t key_cap, size_t *key_len,
                      const char **why) MPOS_MUST_CHECK;

#endif
