/* openmpos back end: one-time terminal activation codes (T-ACTIV-1).
 *
 * A code is 80 random bits (mpos_random_bytes) written as 16 characters of Crockford's
 * base32 (0-9 A-Z without I L O U) in four groups, e.g. "7QK2-M9XD-R4TB-H1CW": typeable on
 * a terminal keypad or a phone, and unambiguous (reading accepts lowercase, drops '-' and
 * spaces, and maps O to 0, I and L to 1 as Crockford does). It is shown once, by mposctl;
 * the store keeps only SHA-256("openmpos activation code v1" 0x00 serial 0x00 code), a
 * digest that needs no salt or slow hash: 80 bits of entropy are out of reach of a search.
 */
#ifndef MPOS_ACTIVATION_H
#define MPOS_ACTIVATION_H

#include "mpos/err.h"

#define MPOS_ACTIVATION_CODE_CHARS   16 /* base32 characters: 80 bits */
#define MPOS_ACTIVATION_CODE_LEN     19 /* with the three '-' separators */
#define MPOS_ACTIVATION_HASH_HEX_LEN 64

/* Generates a new code "XXXX-XXXX-XXXX-XXXX" (NUL-terminated). MPOS_ERR_RNG on failure
 * (out is then cleared). */
int mpos_activation_code_generate(char out[MPOS_ACTIVATION_CODE_LEN + 1]) MPOS_MUST_CHECK;

/* Canonical form of a typed code: 16 uppercase base32 characters. MPOS_ERR_FORMAT for a
 * wrong character or length (out cleared). */
int mpos_activation_code_normalize(const char *typed,
                                   char out[MPOS_ACTIVATION_CODE_CHARS + 1]) MPOS_MUST_CHECK;

/* The digest the store keeps for a code (normalised first) issued to serial, as 64
 * uppercase hex characters. */
int mpos_activation_code_hash(const char *serial, const char *code,
                              char hex[MPOS_ACTIVATION_HASH_HEX_LEN + 1]) MPOS_MUST_CHECK;

#endif
