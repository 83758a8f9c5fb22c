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

#endif
