/* Shared by the tests of hsm/ops (test_ops.c, test_provision.c, test_sealed_ops.c): the vault
 * every test opens from the same two test LMK components, and the small helpers all of them
 * need. TEST-ONLY: the LMK components are public test values. */
#ifndef MPOS_HSM_OPS_TEST_FIXTURE_H
#define MPOS_HSM_OPS_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "ops.h"

/* Opens cc and the vault v from the LMK components 01..20 and 41..60 (hex bytes), checked
 * against their AES CMAC check values (computed with python). 0, or -1 when anything fails
 * (the cmocka group setup's convention). */
int hsm_test_open(hsm_vault *v, mpos_crypto_ctx *cc);

/* Closes what hsm_test_open opened. */
void hsm_test_close(hsm_vault *v, mpos_crypto_ctx *cc);

/* 1 when the len bytes at p are all zero (outputs an op must wipe on failure). */
int hsm_test_all_zero(const void *p, size_t len);

/* The key-block argument of an op from a key block an op returned. */
struct hsm_kb_in hsm_test_in(const struct hsm_kb_out *o);

/* A key block under v's LMK for the known clear key hex with the given attributes (usage is
 * the two-character TR-31 key usage); a cmocka failure when the vault refuses it. */
void hsm_test_kb(hsm_vault *v, const char *usage, char alg, char mode, char exp, uint8_t dukpt,
                 const char *hex, struct hsm_kb_out *out);

#endif
