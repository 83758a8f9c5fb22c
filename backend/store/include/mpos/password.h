/* openmpos back end: operator passwords (A-OPER-1).
 *
 * Policy, checked before anything is stored: at least MPOS_PASSWORD_MIN_CHARS characters
 * (Unicode code points) and at most MPOS_PASSWORD_MAX_BYTES bytes of valid UTF-8 with no
 * control character; characters of at least two classes (lowercase, uppercase, digit, other);
 * at least MPOS_PASSWORD_MIN_DISTINCT different characters; not containing the username
 * (ASCII case-insensitive).
 *
 * Hash: Argon2id (RFC 9106) through libargon2, t = 3 passes, m = 64 MiB, p = 1 lane, a
 * 16-byte salt from mpos_random_bytes(), a 32-byte tag, stored in the PHC string form
 * "$argon2id$v=19$m=65536,t=3,p=1$<salt>$<tag>", so that the parameters travel with each
 * hash and can be raised later (mpos_password_needs_rehash()). That is RFC 9106's second
 * recommended option (section 4) with t raised from 1 to 3 for the smaller memory; about
 * 0.1-0.2 s per hash on a server core.
 */
#ifndef MPOS_PASSWORD_H
#define MPOS_PASSWORD_H

#include <stddef.h>

#include "mpos/err.h"

#define MPOS_PASSWORD_MIN_CHARS    12
#define MPOS_PASSWORD_MAX_BYTES    128
#define MPOS_PASSWORD_MIN_CLASSES  2
#define MPOS_PASSWORD_MIN_DISTINCT 5

#define MPOS_ARGON2_T_COST     3
#define MPOS_ARGON2_M_KIB      65536 /* 64 MiB */
#define MPOS_ARGON2_LANES      1
#define MPOS_ARGON2_SALT_LEN   16
#define MPOS_ARGON2_TAG_LEN    32
#define MPOS_PASSWORD_HASH_LEN 127 /* longest encoded hash, characters */

/* Why the policy refused a password (0: accepted). */
enum mpos_password_reason {
    MPOS_PASSWORD_OK = 0,
    MPOS_PASSWORD_TOO_SHORT = 1,
    MPOS_PASSWORD_TOO_LONG = 2,
    MPOS_PASSWORD_BAD_CHARS = 3, /* a control character or invalid UTF-8 */
    MPOS_PASSWORD_ONE_CLASS = 4,
    MPOS_PASSWORD_REPETITIVE = 5,
    MPOS_PASSWORD_HAS_USERNAME = 6
};

/* Checks the policy; returns an enum mpos_password_reason. username may be NULL. */
int mpos_password_policy_check(const char *username, const char *password);

/* One-line English explanation of a reason, naming the rule (never the password). */
const char *mpos_password_policy_message(int reason);

/* Hashes password with Argon2id and a fresh random salt into encoded (cap bytes,
 * MPOS_PASSWORD_HASH_LEN + 1 is enough). Does not check the policy. MPOS_ERR_RNG,
 * MPOS_ERR_CRYPTO (libargon2 failed, e.g. out of memory), MPOS_ERR_LENGTH. */
int mpos_password_hash(const char *password, char *encoded, size_t cap) MPOS_MUST_CHECK;

/* 0 if password matches the encoded hash (libargon2 compares in constant time),
 * MPOS_ERR_VERIFY if not, MPOS_ERR_FORMAT for an encoded string that is not Argon2id. */
int mpos_password_verify(const char *encoded, const char *password) MPOS_MUST_CHECK;

/* 1 if the encoded hash uses other parameters than the current ones. */
int mpos_password_needs_rehash(const char *encoded);

#endif
