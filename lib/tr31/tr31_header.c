/* openmpos: TR-31 / ANSI X9.143 key block header and optional blocks (mpos/tr31.h). */
#include <string.h>

#include "mpos/tr31.h"
#include "tr31_int.h"

/* X9.143:2021 6.3.1-6.3.3 (tables 2-4): the key usages we know, with the algorithms and
 * modes of use we allow each to carry. Mode N ("no special restrictions other than those of the key
 * usage") is allowed with every usage. Numeric (proprietary) usages, algorithms and modes are
 * refused, except the proprietary algorithms of the last column, each only with its extension
 * flag (mpos/tr31.h): '4' SM4 (MPOS_TR31_EXT_SM4) wherever 'A' is allowed, and for M1 (UnionPay
 * MAC keys, beside T and D). */
struct usage_rule {
    char usage[3];
    const char *algorithms;
    const char *modes;
    const char *ext_algorithms;
};

static const struct usage_rule usage_rules[] = {
    {"B0", "TA", "NXY", "4"},    /* BDK */
    {"B1", "TA", "NX", "4"},     /* initial DUKPT key (IPEK / IK) */
    {"B2", "T", "NXY", ""},      /* base key variant key */
    {"B3", "TAH", "NX", "4"},    /* key derivation key (not X9.24) */
    {"C0", "TA", "CGVN", "4"},   /* card verification key */
    {"D0", "TAD", "BDEN", "4"},  /* data encryption */
    {"D1", "RE", "BDEN", ""},    /* asymmetric data encryption */
    {"D2", "TA", "BDEN", "4"},   /* decimalisation table */
    {"D3", "TA", "BDEN", "4"},   /* sensitive data */
    {"E0", "TA", "XN", "4"},     /* EMV issuer master key: application cryptograms */
    {"E1", "TA", "XN", "4"},     /* EMV: secure messaging, confidentiality */
    {"E2", "TA", "XN", "4"},     /* EMV: secure messaging, integrity */
    {"E3", "TA", "XN", "4"},     /* EMV: data authentication code */
    {"E4", "TA", "XN", "4"},     /* EMV: dynamic numbers */
    {"E5", "TA", "XN", "4"},     /* EMV: card personalisation */
    {"E6", "TA", "XN", "4"},     /* EMV: other */
    {"I0", "TAD", "N", "4"},     /* initialisation vector */
    {"K0", "TAD", "BDENY", "4"}, /* key encryption or wrapping */
    {"K1", "TA", "BDEN", "4"},   /* TR-31 key block protection key */
    {"K2", "R", "BDEN", ""},     /* TR-34 asymmetric key */
    {"K3", "RE", "BDENX", ""},   /* asymmetric key agreement / wrapping */
    {"K4", "A", "BDEN", "4"},    /* ISO 20038 key block protection key */
    {"M0", "T", "CGVN", ""},     /* ISO 16609 MAC algorithm 1 (TDEA) */
    {"M1", "TD", "CGVN", "4"},   /* ISO 9797-1 MAC algorithm 1; UnionPay MAC keys */
    {"M2", "TD", "CGVN", ""},    /* ISO 9797-1 MAC algorithm 2 */
    {"M3", "TD", "CGVN", ""},    /* ISO 9797-1 MAC algorithm 3 */
    {"M4", "TD", "CGVN", ""},    /* ISO 9797-1 MAC algorithm 4 */
    {"M5", "TA", "CGVN", "4"},   /* ISO 9797-1:1999 MAC algorithm 5 */
    {"M6", "TA", "CGVN", "4"},   /* ISO 9797-1:2011 MAC algorithm 5 (CMAC) */
    {"M7", "H", "CGVN", ""},     /* HMAC */
    {"M8", "TD", "CGVN", ""},    /* ISO 9797-1:2011 MAC algorithm 6 */
    {"P0", "TAD", "BDEN", "4"},  /* PIN encryption */
    {"P1", "TA", "CGVN", "4"},   /* PIN generation */
    {"S0", "RSE", "SVN", ""},    /* asymmetric signature key */
    {"S1", "RSE", "SVN", ""},    /* asymmetric CA key */
    {"S2", "RSE", "SVTN", ""},   /* asymmetric key, non-X9.24 */
    {"V0", "TA", "CGVN", "4"},   /* PIN verification, other algorithm */
    {"V1", "T", "CGVN", ""},     /* PIN verification, IBM 3624 */
    {"V2", "T", "CGVN", ""},     /* PIN verification, VISA PVV */
    {"V3", "TA", "CGVN", "4"},   /* PIN verification, X9.132 algorithm 1 */
    {"V4", "TA", "CGVN", "4"},   /* PIN verification, X9.132 algorithm 2 */
};

/* X9.143:2021 6.3.2 and 6.3.3. */
static const char known_algorithms[] = "ADEHRST";
static const char known_modes[] = "BCDEGNSTVXY";

/* X9.143:2021 6.3.6: the defined optional block IDs. */
static const char *const defined_ids[] = {"AL", "BI", "CT", "DA", "HM", "IK", "KC", "KP",
                                          "KS", "KV", "LB", "PB", "PK", "TC", "TS", "WP"};

size_t tr31_block_len(char version)
{
    return version == 'B' ? MPOS_DES_BLOCK_LEN : version == 'D' ? MPOS_AES_BLOCK_LEN : 0;
}

/* The extensions (mpos/tr31.h) are defined for version D only. */
static int ext_enabled(unsigned flags, unsigned ext, char version)
{
    return (flags & ext) != 0 && version == 'D';
}

size_t tr31_max_key_len(char version, char algorithm, unsigned flags)
{
    switch (algorithm) {
    case 'T':
        return 24;
    case 'A':
        return 32;
    case 'D':
        return 8;
    case 'H':
        return MPOS_TR31_MAX_KEY_LEN;
    case MPOS_TR31_ALG_SM4:
        return ext_enabled(flags, MPOS_TR31_EXT_SM4, version) ? 16 : 0;
    case 'E':
        return ext_enabled(flags, MPOS_TR31_EXT_EC_RAW, version) ? 32 : 0;
    default:
        return 0;
    }
}

int mpos_tr31_key_len_valid_ext(char algorithm, size_t key_len, unsigned flags)
{
    if ((flags & ~MPOS_TR31_EXT_ALL) != 0) {
        return 0;
    }
    switch (algorithm) {
    case 'T':
        return key_len == 16 || key_len == 24;
    case 'A':
        return key_len == 16 || key_len == 24 || key_len == 32;
    case 'D':
        return key_len == 8;
    case 'H':
        return key_len >= 16 && key_len <= MPOS_TR31_MAX_KEY_LEN;
    case MPOS_TR31_ALG_SM4: /* GB/T 32907: a 128-bit key */
        return (flags & MPOS_TR31_EXT_SM4) != 0 && key_len == 16;
    case 'E': /* the raw P-256 / SM2 private scalar */
        return (flags & MPOS_TR31_EXT_EC_RAW) != 0 && key_len == 32;
    default:
        return 0;
    }
}

int mpos_tr31_key_len_valid(char algorithm, size_t key_len)
{
    return mpos_tr31_key_len_valid_ext(algorithm, key_len, 0);
}

int tr31_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

unsigned tr31_hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'A' + 10);
}

int tr31_all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!tr31_is_hex(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Decimal value of n digits, or -1. */
static long decimal(const char *s, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static unsigned hex_number(const char *s, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 4) | tr31_hex_value(s[i]);
    }
    return v;
}

/* Whether the algorithm is known (X9.143:2021 6.3.2), and allowed for the usage, with these
 * extension flags. */
static int algorithm_known(char algorithm, unsigned flags)
{
    return strchr(known_algorithms, algorithm) != NULL ||
           (algorithm == MPOS_TR31_ALG_SM4 && (flags & MPOS_TR31_EXT_SM4) != 0);
}

static int algorithm_allowed(const struct usage_rule *rule, char algorithm, unsigned flags)
{
    return strchr(rule->algorithms, algorithm) != NULL ||
           (algorithm == MPOS_TR31_ALG_SM4 && (flags & MPOS_TR31_EXT_SM4) != 0 &&
            strchr(rule->ext_algorithms, algorithm) != NULL);
}

static const struct usage_rule *find_usage(const char *usage)
{
    for (size_t i = 0; i < sizeof(usage_rules) / sizeof(usage_rules[0]); i++) {
        if (usage_rules[i].usage[0] == usage[0] && usage_rules[i].usage[1] == usage[1]) {
            return &usage_rules[i];
        }
    }
    return NULL;
}

static int id_is(const char *id, const char *name)
{
    return id[0] == name[0] && id[1] == name[1];
}

static int id_known(const char *id)
{
    if (is_digit(id[0]) && is_digit(id[1])) {
        return 1; /* X9.143:2021 6.3.6: numeric IDs are proprietary */
    }
    for (size_t i = 0; i < sizeof(defined_ids) / sizeof(defined_ids[0]); i++) {
        if (id_is(id, defined_ids[i])) {
            return 1;
        }
    }
    return 0;
}

static int leap_year(long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* X9.143:2021 6.3.6.13 / 6.3.6.14: a UTC date-time in ISO 8601 basic form YYYYMMDDhhmmssZ or
 * YYYYMMDDhhmmssccZ (hundredths), or extended form YYYY-MM-DDThh:mm:ssZ or
 * YYYY-MM-DDThh:mm:ss.ccZ. Checks the calendar (days per month, leap years). */
static int datetime_valid(const char *s, size_t n)
{
    static const unsigned char days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    /* offsets of year, month, day, hour, minute, second, hundredths */
    size_t at[7];
    int extended = n == 20 || n == 23;
    int hundredths = n == 17 || n == 23;
    if (n != 15 && n != 17 && !extended) {
        return 0;
    }
    if (s[n - 1] != 'Z') {
        return 0;
    }
    if (extended) {
        if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
            (hundredths && s[19] != '.')) {
            return 0;
        }
        const size_t ext[7] = {0, 5, 8, 11, 14, 17, 20};
        memcpy(at, ext, sizeof(at));
    } else {
        const size_t basic[7] = {0, 4, 6, 8, 10, 12, 14};
        memcpy(at, basic, sizeof(at));
    }
    long year = decimal(s + at[0], 4);
    long month = decimal(s + at[1], 2);
    long day = decimal(s + at[2], 2);
    long hour = decimal(s + at[3], 2);
    long minute = decimal(s + at[4], 2);
    long second = decimal(s + at[5], 2);
    long cent = hundredths ? decimal(s + at[6], 2) : 0;
    if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 59 || cent < 0) {
        return 0;
    }
    if (day > days[month - 1] || (month == 2 && day == 29 && !leap_year(year))) {
        return 0;
    }
    return 1;
}

/* KC, KP (X9.143:2021 6.3.6.7): KCV algorithm "00" legacy (2-3 bytes) or "01" CMAC (2-5
 * bytes, ANSI X9.24-1:2017 Annex A), then the KCV in hex. */
static int kcv_block_valid(const char *s, size_t n)
{
    if (n < 2 || !tr31_all_hex(s, n) || n % 2 != 0) {
        return 0;
    }
    size_t kcv_bytes = (n - 2) / 2;
    if (s[0] == '0' && s[1] == '0') {
        return kcv_bytes >= 2 && kcv_bytes <= 3;
    }
    if (s[0] == '0' && s[1] == '1') {
        return kcv_bytes >= 2 && kcv_bytes <= 5;
    }
    return 0;
}

/* Content of one optional block; NULL if it is acceptable, else why not. */
static const char *opt_content_error(const char *id, const char *s, size_t n)
{
    if (id_is(id, "KS")) { /* X9.143:2021 6.3.6.8: key set ID / initial KSN (X9.24-1) */
        return (n == 16 || n == 20) && tr31_all_hex(s, n)
                   ? NULL
                   : "optional block KS: must be 16 or 20 uppercase hex digits";
    }
    if (id_is(id, "IK")) { /* X9.143:2021 6.3.6.6: initial key ID (X9.24-3) */
        return n == 16 && tr31_all_hex(s, n) ? NULL
                                             : "optional block IK: must be 16 uppercase hex digits";
    }
    if (id_is(id, "KC") || id_is(id, "KP")) {
        return kcv_block_valid(s, n) ? NULL
                                     : "optional block KC/KP: must be 00 + 2-3 byte or 01 + 2-5 "
                                       "byte check value in uppercase hex";
    }
    if (id_is(id, "TS") || id_is(id, "TC")) {
        return datetime_valid(s, n) ? NULL
                                    : "optional block TS/TC: not a UTC date-time "
                                      "(YYYYMMDDhhmmssZ or YYYY-MM-DDThh:mm:ssZ)";
    }
    if (id_is(id, "HM")) { /* X9.143:2021 6.3.6.5: hash algorithm of an HMAC key */
        return n == 2 && tr31_all_hex(s, n) ? NULL
                                            : "optional block HM: must be 2 uppercase hex digits";
    }
    if (id_is(id, "LB")) { /* X9.143:2021 6.3.6.10: a printable label */
        return n > 0 ? NULL : "optional block LB: empty label";
    }
    return NULL; /* printable ASCII (checked for the whole text), nothing more defined */
}

int mpos_tr31_header_parse(const char *text, size_t text_len, enum mpos_tr31_parse mode,
                           mpos_tr31_header *hdr)
{
    return mpos_tr31_header_parse_ext(text, text_len, mode, hdr, 0);
}

int mpos_tr31_header_parse_ext(const char *text, size_t text_len, enum mpos_tr31_parse mode,
                               mpos_tr31_header *hdr, unsigned flags)
{
    int rc = MPOS_ERR_FORMAT;
    size_t pos = MPOS_TR31_FIXED_HEADER_LEN;
    size_t block = 0;
    long count;
    const struct usage_rule *rule;
    const char *pb_at = NULL;
    size_t pb_len = 0;
    if (hdr == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(hdr, 0, sizeof(*hdr));
    if (text == NULL || (mode != MPOS_TR31_PARSE_BLOCK && mode != MPOS_TR31_PARSE_TEMPLATE)) {
        hdr->why = "no text";
        return MPOS_ERR_ARG;
    }
    if ((flags & ~MPOS_TR31_EXT_ALL) != 0) {
        hdr->why = "unknown extension flag";
        return MPOS_ERR_ARG;
    }
#define FAIL(code, message)                                                                        \
    do {                                                                                           \
        rc = (code);                                                                               \
        hdr->why = (message);                                                                      \
        goto exit;                                                                                 \
    } while (0)
    if (text_len < MPOS_TR31_FIXED_HEADER_LEN) {
        FAIL(MPOS_ERR_LENGTH, "shorter than the 16-character header");
    }
    /* X9.143:2021 6.1: the whole key block is printable ASCII. */
    for (size_t i = 0; i < text_len; i++) {
        if (text[i] < 0x20 || text[i] > 0x7E) {
            FAIL(MPOS_ERR_FORMAT, "not printable ASCII");
        }
    }
    /* 6.2 byte 0: version. B and D here; A and C (TR-31 variant binding), E (ISO 20038)
     * and numeric (proprietary) versions are real but not implemented. */
    hdr->version = text[0];
    if (tr31_block_len(text[0]) == 0) {
        if (text[0] == 'A' || text[0] == 'C' || text[0] == 'E' || is_digit(text[0])) {
            FAIL(MPOS_ERR_UNSUPPORTED, "key block version not supported (only B and D)");
        }
        FAIL(MPOS_ERR_FORMAT, "unknown key block version");
    }
    /* bytes 1-4: key block length, decimal, the whole block (ignored in a template). */
    if (mode == MPOS_TR31_PARSE_BLOCK) {
        long length = decimal(text + 1, 4);
        if (length < 0) {
            FAIL(MPOS_ERR_FORMAT, "length field is not 4 digits");
        }
        if ((size_t)length != text_len) {
            FAIL(MPOS_ERR_LENGTH, "length field does not match the key block's length");
        }
        hdr->block_len = (size_t)length;
    }
    /* bytes 5-8: key usage, algorithm, mode of use and their combination (6.3.1-6.3.3). */
    memcpy(hdr->key_usage, text + 5, 2);
    hdr->algorithm = text[7];
    hdr->mode_of_use = text[8];
    rule = find_usage(hdr->key_usage);
    if (rule == NULL) {
        FAIL(MPOS_ERR_FORMAT, "unknown key usage");
    }
    if (!algorithm_known(text[7], flags)) {
        FAIL(MPOS_ERR_FORMAT, "unknown algorithm");
    }
    if (strchr(known_modes, text[8]) == NULL) {
        FAIL(MPOS_ERR_FORMAT, "unknown mode of use");
    }
    if (!algorithm_allowed(rule, text[7], flags)) {
        FAIL(MPOS_ERR_USAGE, "algorithm not allowed for this key usage");
    }
    if (strchr(rule->modes, text[8]) == NULL) {
        FAIL(MPOS_ERR_USAGE, "mode of use not allowed for this key usage");
    }
    /* bytes 9-10: key version number (6.3.4), byte 11: exportability (6.3.5). */
    if (!is_alnum(text[9]) || !is_alnum(text[10])) {
        FAIL(MPOS_ERR_FORMAT, "key version number is not alphanumeric");
    }
    memcpy(hdr->key_version, text + 9, 2);
    if (text[11] != 'E' && text[11] != 'N' && text[11] != 'S') {
        FAIL(MPOS_ERR_FORMAT, "exportability is not E, N or S");
    }
    hdr->exportability = text[11];
    /* bytes 12-13: number of optional blocks; 14: key context; 15: reserved '0'. */
    count = decimal(text + 12, 2);
    if (count < 0) {
        FAIL(MPOS_ERR_FORMAT, "number of optional blocks is not 2 digits");
    }
    if (text[14] != '0' && text[14] != '1' && text[14] != '2') {
        FAIL(MPOS_ERR_FORMAT, "key context is not 0, 1 or 2");
    }
    if (text[15] != '0') {
        FAIL(MPOS_ERR_FORMAT, "reserved header byte 15 is not 0");
    }
    hdr->key_context = text[14];

    /* Optional blocks (6.2, table 1; 6.3.6): ID, length, data. */
    for (block = 0; block < (size_t)count; block++) {
        const char *ob = text + pos;
        size_t len, field_len;
        if (text_len - pos < 4) {
            FAIL(MPOS_ERR_LENGTH, "optional block truncated");
        }
        if (!is_alnum(ob[0]) || !is_alnum(ob[1]) || !id_known(ob)) {
            FAIL(MPOS_ERR_FORMAT, "unknown optional block ID");
        }
        if (!tr31_all_hex(ob + 2, 2)) {
            FAIL(MPOS_ERR_FORMAT, "optional block length is not 2 uppercase hex digits");
        }
        len = hex_number(ob + 2, 2);
        field_len = 4;
        if (len == 0) {
            /* Extended length: "00", the length of the length in bytes ("02"), then the
             * length in 4 hex digits; only for blocks longer than 255 characters. */
            if (text_len - pos < 10 || ob[4] != '0' || ob[5] != '2' || !tr31_all_hex(ob + 6, 4)) {
                FAIL(MPOS_ERR_FORMAT, "extended optional block length is not 02 + 4 hex digits");
            }
            len = hex_number(ob + 6, 4);
            field_len = 10;
            if (len <= 0xFF) {
                FAIL(MPOS_ERR_FORMAT, "extended length used for a block of 255 characters or less");
            }
        }
        if (len < field_len) {
            FAIL(MPOS_ERR_FORMAT, "optional block length shorter than its own fields");
        }
        if (len > text_len - pos) {
            FAIL(MPOS_ERR_LENGTH, "optional block runs past the end");
        }
        if (pos + len > MPOS_TR31_MAX_HEADER_LEN) {
            FAIL(MPOS_ERR_LENGTH, "header longer than supported");
        }
        for (size_t j = 0; j < block; j++) {
            if (id_is(hdr->opt[j].id, ob)) {
                FAIL(MPOS_ERR_FORMAT, "optional block ID repeated");
            }
        }
        if (id_is(ob, "PB")) {
            if (block + 1 != (size_t)count) {
                FAIL(MPOS_ERR_FORMAT, "PB is not the last optional block");
            }
            pb_at = ob;
            pb_len = len;
        } else {
            const char *why = opt_content_error(ob, ob + field_len, len - field_len);
            if (why != NULL) {
                FAIL(MPOS_ERR_FORMAT, why);
            }
        }
        memcpy(hdr->opt[block].id, ob, 2);
        hdr->opt[block].offset = (uint16_t)(pos + field_len);
        hdr->opt[block].len = (uint16_t)(len - field_len);
        pos += len;
    }
    hdr->num_opt_blocks = block;
    if (mode == MPOS_TR31_PARSE_TEMPLATE && pos != text_len) {
        FAIL(MPOS_ERR_FORMAT, "characters after the optional blocks of the header");
    }
    {
        /* 6.3.6: the optional blocks together are a whole number of cipher blocks, a PB
         * block pads them, and PB is only as long as that needs (4 + 0..bs-1 characters). */
        size_t bs = tr31_block_len(hdr->version);
        size_t opt_len = pos - MPOS_TR31_FIXED_HEADER_LEN;
        if (pb_at != NULL) {
            size_t before = opt_len - pb_len;
            if (before % bs == 0) {
                FAIL(MPOS_ERR_FORMAT, "PB present but the optional blocks need no padding");
            }
            if (pb_len != 4 + (bs - (before + 4) % bs) % bs) {
                FAIL(MPOS_ERR_FORMAT, "PB longer or shorter than the padding needs");
            }
        } else if (mode == MPOS_TR31_PARSE_BLOCK && opt_len % bs != 0) {
            FAIL(MPOS_ERR_FORMAT, "optional blocks not padded to the cipher block length");
        }
    }
#undef FAIL
    hdr->len = pos;
    memcpy(hdr->text, text, pos);
    hdr->text[pos] = '\0';
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        const char *why = hdr->why;
        memset(hdr, 0, sizeof(*hdr));
        hdr->why = why;
    }
    return rc;
}

const struct mpos_tr31_opt_block *mpos_tr31_header_find(const mpos_tr31_header *hdr, const char *id)
{
    if (hdr == NULL || id == NULL || id[0] == '\0') {
        return NULL;
    }
    for (size_t i = 0; i < hdr->num_opt_blocks; i++) {
        if (id_is(hdr->opt[i].id, id)) {
            return &hdr->opt[i];
        }
    }
    return NULL;
}
