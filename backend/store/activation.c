/* openmpos back end: activation codes (mpos/activation.h). */
#include <string.h>

#include "mpos/activation.h"
#include "mpos/crypto.h"
#include "mpos/util.h"
#include "store_db.h"

/* Crockford's base32 alphabet: no I, L, O, U. */
static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int mpos_activation_code_generate(char out[MPOS_ACTIVATION_CODE_LEN + 1])
{
    uint8_t rnd[10]; /* 80 bits = 16 base32 characters */
    int rc = mpos_random_bytes(rnd, sizeof(rnd));
    size_t j = 0;
    if (rc != MPOS_OK) {
        mpos_cleanse(out, MPOS_ACTIVATION_CODE_LEN + 1);
        goto exit;
    }
    for (size_t i = 0; i < MPOS_ACTIVATION_CODE_CHARS; i++) {
        /* Character i is bits 5i .. 5i+4 of the 80-bit string, most significant first. */
        size_t bit = 5 * i;
        unsigned v =
            ((unsigned)rnd[bit / 8] << 8 | (bit / 8 + 1 < sizeof(rnd) ? rnd[bit / 8 + 1] : 0));
        v = (v >> (11 - bit % 8)) & 0x1F;
        if (i > 0 && i % 4 == 0) {
            out[j++] = '-';
        }
        out[j++] = alphabet[v];
    }
    out[j] = '\0';
exit:
    MPOS_WIPE_BUFFER(rnd);
    return rc;
}

int mpos_activation_code_normalize(const char *typed, char out[MPOS_ACTIVATION_CODE_CHARS + 1])
{
    size_t n = 0;
    int rc = MPOS_OK;
    if (typed == NULL) {
        return MPOS_ERR_ARG;
    }
    for (size_t i = 0; typed[i] != '\0'; i++) {
        char c = typed[i];
        if (c == '-' || c == ' ') {
            continue;
        }
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        c = c == 'O' ? '0' : (c == 'I' || c == 'L') ? '1' : c;
        if (c == '\0' || strchr(alphabet, c) == NULL || n >= MPOS_ACTIVATION_CODE_CHARS) {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
        out[n++] = c;
    }
    if (n != MPOS_ACTIVATION_CODE_CHARS) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    out[n] = '\0';
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(out, MPOS_ACTIVATION_CODE_CHARS + 1);
    }
    return rc;
}

int mpos_activation_code_hash(const char *serial, const char *code,
                              char hex[MPOS_ACTIVATION_HASH_HEX_LEN + 1])
{
    static const char domain[] = "openmpos activation code v1";
    char canon[MPOS_ACTIVATION_CODE_CHARS + 1];
    char buf[sizeof(domain) + MPOS_STORE_SERIAL_LEN + 1 + MPOS_ACTIVATION_CODE_CHARS];
    size_t slen = serial != NULL ? strlen(serial) : 0;
    int rc = MPOS_OK;
    hex[0] = '\0';
    if (slen == 0 || slen > MPOS_STORE_SERIAL_LEN) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_activation_code_normalize(code, canon);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* domain || 0x00 || serial || 0x00 || code (sizeof(domain) counts its NUL). */
    memcpy(buf, domain, sizeof(domain));
    memcpy(buf + sizeof(domain), serial, slen);
    buf[sizeof(domain) + slen] = '\0';
    memcpy(buf + sizeof(domain) + slen + 1, canon, MPOS_ACTIVATION_CODE_CHARS);
    rc = store_sha256_hex(buf, sizeof(domain) + slen + 1 + MPOS_ACTIVATION_CODE_CHARS, hex);
exit:
    MPOS_WIPE_BUFFER(canon);
    MPOS_WIPE_BUFFER(buf);
    return rc;
}
