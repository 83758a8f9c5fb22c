/* openmpos back end: operator password policy and Argon2id hashing (mpos/password.h). */
#include <stdio.h>
#include <string.h>

#include <argon2.h>

#include "mpos/crypto.h"
#include "mpos/password.h"
#include "mpos/util.h"
#include "store_db.h"

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* 1 if needle occurs in haystack, ASCII case-insensitive. */
static int contains_ci(const char *haystack, const char *needle)
{
    size_t hn = strlen(haystack), nn = strlen(needle);
    if (nn == 0 || nn > hn) {
        return 0;
    }
    for (size_t i = 0; i + nn <= hn; i++) {
        size_t j = 0;
        while (j < nn && ascii_lower(haystack[i + j]) == ascii_lower(needle[j])) {
            j++;
        }
        if (j == nn) {
            return 1;
        }
    }
    return 0;
}

int mpos_password_policy_check(const char *username, const char *password)
{
    size_t chars = 0, bytes = 0, distinct = 0;
    unsigned classes = 0;
    unsigned char seen[256] = {0};
    if (password == NULL) {
        return MPOS_PASSWORD_TOO_SHORT;
    }
    bytes = strlen(password);
    if (bytes > MPOS_PASSWORD_MAX_BYTES) {
        return MPOS_PASSWORD_TOO_LONG;
    }
    if (!store_utf8_check(password, &chars)) {
        return MPOS_PASSWORD_BAD_CHARS;
    }
    if (chars < MPOS_PASSWORD_MIN_CHARS) {
        return MPOS_PASSWORD_TOO_SHORT;
    }
    for (size_t i = 0; i < bytes; i++) {
        unsigned char c = (unsigned char)password[i];
        if (c >= 'a' && c <= 'z') {
            classes |= 1u;
        } else if (c >= 'A' && c <= 'Z') {
            classes |= 2u;
        } else if (c >= '0' && c <= '9') {
            classes |= 4u;
        } else {
            classes |= 8u; /* punctuation, space, any non-ASCII character */
        }
        /* Distinct characters, approximated by distinct bytes (exact for ASCII). */
        if (!seen[c]) {
            seen[c] = 1;
            distinct++;
        }
    }
    if (mpos_popcount32(classes) < MPOS_PASSWORD_MIN_CLASSES) {
        return MPOS_PASSWORD_ONE_CLASS;
    }
    if (distinct < MPOS_PASSWORD_MIN_DISTINCT) {
        return MPOS_PASSWORD_REPETITIVE;
    }
    if (username != NULL && contains_ci(password, username)) {
        return MPOS_PASSWORD_HAS_USERNAME;
    }
    return MPOS_PASSWORD_OK;
}

const char *mpos_password_policy_message(int reason)
{
    switch (reason) {
    case MPOS_PASSWORD_OK:
        return "password accepted";
    case MPOS_PASSWORD_TOO_SHORT:
        return "password too short: at least 12 characters";
    case MPOS_PASSWORD_TOO_LONG:
        return "password too long: at most 128 bytes";
    case MPOS_PASSWORD_BAD_CHARS:
        return "password has a control character or is not valid UTF-8";
    case MPOS_PASSWORD_ONE_CLASS:
        return "password uses one kind of character only: mix lowercase, uppercase, digits or "
               "symbols";
    case MPOS_PASSWORD_REPETITIVE:
        return "password too repetitive: at least 5 different characters";
    case MPOS_PASSWORD_HAS_USERNAME:
        return "password contains the username";
    default:
        return "password refused";
    }
}

int mpos_password_hash(const char *password, char *encoded, size_t cap)
{
    uint8_t salt[MPOS_ARGON2_SALT_LEN];
    int rc = MPOS_OK;
    if (password == NULL || encoded == NULL) {
        return MPOS_ERR_ARG;
    }
    size_t need = argon2_encodedlen(MPOS_ARGON2_T_COST, MPOS_ARGON2_M_KIB, MPOS_ARGON2_LANES,
                                    MPOS_ARGON2_SALT_LEN, MPOS_ARGON2_TAG_LEN, Argon2_id);
    if (cap < need || need > MPOS_PASSWORD_HASH_LEN + 1) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    rc = mpos_random_bytes(salt, sizeof(salt));
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* RFC 9106 3.1 Argon2id, parameters in mpos/password.h. */
    if (argon2id_hash_encoded(MPOS_ARGON2_T_COST, MPOS_ARGON2_M_KIB, MPOS_ARGON2_LANES, password,
                              strlen(password), salt, sizeof(salt), MPOS_ARGON2_TAG_LEN, encoded,
                              cap) != ARGON2_OK) {
        rc = MPOS_ERR_CRYPTO;
    }
exit:
    if (rc != MPOS_OK && encoded != NULL && cap > 0) {
        mpos_cleanse(encoded, cap);
    }
    MPOS_WIPE_BUFFER(salt);
    return rc;
}

int mpos_password_verify(const char *encoded, const char *password)
{
    if (encoded == NULL || password == NULL) {
        return MPOS_ERR_ARG;
    }
    if (strncmp(encoded, "$argon2id$", 10) != 0) {
        return MPOS_ERR_FORMAT;
    }
    int rc = argon2id_verify(encoded, password, strlen(password));
    if (rc == ARGON2_OK) {
        return MPOS_OK;
    }
    return rc == ARGON2_VERIFY_MISMATCH ? MPOS_ERR_VERIFY
           : rc == ARGON2_DECODING_FAIL ? MPOS_ERR_FORMAT
                                        : MPOS_ERR_CRYPTO;
}

int mpos_password_needs_rehash(const char *encoded)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "$argon2id$v=19$m=%d,t=%d,p=%d$", MPOS_ARGON2_M_KIB,
             MPOS_ARGON2_T_COST, MPOS_ARGON2_LANES);
    return encoded == NULL || strncmp(encoded, prefix, strlen(prefix)) != 0;
}
