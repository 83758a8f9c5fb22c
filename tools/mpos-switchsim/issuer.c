/* mpos-switchsim: the issuer engine (issuer.h). */
#define _POSIX_C_SOURCE 200809L

#include "issuer.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpos/emv.h"
#include "mpos/mac.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/tr31.h"
#include "mpos/util.h"

#define LINE_MAX_LEN 1024

/* ---- small helpers ---------------------------------------------------------------------- */

void sw_mask_pan(const char *pan, char out[SW_MASKED_PAN_LEN])
{
    size_t n = strlen(pan);
    if (n < 12 || n >= SW_MASKED_PAN_LEN) {
        snprintf(out, SW_MASKED_PAN_LEN, "%s", "invalid");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (i < 6 || i >= n - 4) ? pan[i] : '*';
    }
    out[n] = '\0';
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) {
        s[--n] = '\0';
    }
    return s;
}

/* Copies a field value (len bytes, not NUL-terminated) into a C string of cap bytes. */
static int field_str(const mpos_iso8583_msg *m, unsigned field, char *out, size_t cap)
{
    const uint8_t *v = NULL;
    size_t len = 0;
    int present = 0;
    out[0] = '\0';
    if (mpos_iso8583_get(m, field, &v, &len, &present) != MPOS_OK || !present || len >= cap) {
        return 0;
    }
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static uint64_t digits_value(const char *s)
{
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10u + (uint64_t)(*s - '0');
    }
    return v;
}

/* ---- keys ------------------------------------------------------------------------------- */

/* Unwraps a TR-31 key block under the ZMK and checks usage and algorithm. */
static int unwrap_key(sw_issuer *is, const uint8_t *zmk, size_t zmk_len, const char *block,
                      const char *usage, int need16, uint8_t *key, size_t cap, size_t *key_len)
{
    static mpos_tr31_header hdr; /* large; one at a time (start-up only) */
    int rc = mpos_tr31_unwrap(&is->cc, zmk, zmk_len, block, strlen(block), &hdr, key, cap, key_len);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (strcmp(hdr.key_usage, usage) != 0 || hdr.algorithm != 'T' ||
        (need16 ? *key_len != 16 : (*key_len != 16 && *key_len != 24))) {
        mpos_cleanse(key, cap);
        *key_len = 0;
        return MPOS_ERR_USAGE;
    }
    return MPOS_OK;
}

struct keyfile {
    uint8_t zmk[32];
    size_t zmk_len;
    uint8_t pvk[16];
    size_t pvk_len;
    unsigned pvki;
    char zpk[MPOS_TR31_MAX_BLOCK_LEN + 1];
    char zak[MPOS_TR31_MAX_BLOCK_LEN + 1];
    char zek[MPOS_TR31_MAX_BLOCK_LEN + 1];
};

static int read_keys(const char *path, struct keyfile *kf, const char **why)
{
    char line[LINE_MAX_LEN];
    FILE *f = fopen(path, "r");
    int rc = MPOS_OK;
    if (f == NULL) {
        *why = "cannot open the keys file";
        return MPOS_ERR_ARG;
    }
    kf->pvki = 1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';' || *s == '[') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            *why = "keys file: a line without '='";
            rc = MPOS_ERR_FORMAT;
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        size_t vlen = strlen(v);
        if (strcmp(k, "zmk") == 0) {
            if (mpos_hex_decode(v, kf->zmk, sizeof(kf->zmk), &kf->zmk_len) != MPOS_OK) {
                *why = "keys file: zmk is not 16, 24 or 32 bytes of hex";
                rc = MPOS_ERR_FORMAT;
            }
        } else if (strcmp(k, "pvk") == 0) {
            if (mpos_hex_decode(v, kf->pvk, sizeof(kf->pvk), &kf->pvk_len) != MPOS_OK ||
                kf->pvk_len != 16) {
                *why = "keys file: pvk is not 16 bytes of hex";
                rc = MPOS_ERR_FORMAT;
            }
        } else if (strcmp(k, "pvki") == 0) {
            if (vlen != 1 || v[0] < '0' || v[0] > '9') {
                *why = "keys file: pvki is not one digit";
                rc = MPOS_ERR_FORMAT;
            }
            kf->pvki = (unsigned)(v[0] - '0');
        } else if (strcmp(k, "zpk") == 0 || strcmp(k, "zak") == 0 || strcmp(k, "zek") == 0) {
            char *dst = k[1] == 'p' ? kf->zpk : k[1] == 'a' ? kf->zak : kf->zek;
            if (vlen > MPOS_TR31_MAX_BLOCK_LEN) {
                *why = "keys file: key block too long";
                rc = MPOS_ERR_FORMAT;
            } else {
                memcpy(dst, v, vlen + 1);
            }
        } else {
            *why = "keys file: unknown key name";
            rc = MPOS_ERR_FORMAT;
        }
        mpos_cleanse(line, sizeof(line));
        if (rc != MPOS_OK) {
            break;
        }
    }
    mpos_cleanse(line, sizeof(line));
    fclose(f);
    if (rc == MPOS_OK &&
        (kf->zmk_len == 0 || kf->pvk_len == 0 || kf->zpk[0] == '\0' || kf->zak[0] == '\0')) {
        *why = "keys file: zmk, zpk, zak and pvk are required";
        rc = MPOS_ERR_FORMAT;
    }
    return rc;
}

/* ---- PVV -------------------------------------------------------------------------------- */

/* Visa PVV (the method of hsm/ops/pin_ops.c, VISA-PVV): TSP = the 11 rightmost PAN digits
 * excluding the check digit || PVKI || the 4 leftmost PIN digits; E(PVK, TSP) TDES ECB;
 * PVV = the first 4 decimal digits of its hex, then the digits A-F minus 10. */
static int pvv_compute(mpos_crypto_ctx *cc, const uint8_t pvk[16], const char *pan, unsigned pvki,
                       const char *pin, char pvv[5])
{
    uint8_t tsp[8], digits[16];
    size_t pan_len = strlen(pan), count = 0;
    int rc;
    for (size_t i = 0; i < 11; i++) {
        digits[i] = (uint8_t)(pan[pan_len - 12 + i] - '0');
    }
    digits[11] = (uint8_t)pvki;
    for (size_t i = 0; i < 4; i++) {
        digits[12 + i] = (uint8_t)(pin[i] - '0');
    }
    for (size_t i = 0; i < 8; i++) {
        tsp[i] = (uint8_t)(digits[2 * i] << 4 | digits[2 * i + 1]);
    }
    rc = mpos_cipher_ecb(cc, MPOS_CIPHER_TDES, 1, pvk, 16, tsp, tsp, 8);
    if (rc == MPOS_OK) {
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < 16 && count < 4; i++) {
                unsigned d = (i % 2 == 0) ? (unsigned)(tsp[i / 2] >> 4) : (tsp[i / 2] & 0x0Fu);
                if ((pass == 0) == (d < 10)) {
                    pvv[count++] = (char)('0' + (d < 10 ? d : d - 10));
                }
            }
        }
        pvv[4] = '\0';
    }
    MPOS_WIPE_BUFFER(tsp);
    MPOS_WIPE_BUFFER(digits);
    return rc;
}

/* ---- cards ------------------------------------------------------------------------------ */

/* "balance 1.00" in the behaviour text, in minor units; the default otherwise. */
static int64_t behaviour_balance(const char *text)
{
    const char *p = strstr(text, "balance ");
    int64_t units = 0, minor = 0;
    if (p == NULL) {
        return SW_DEFAULT_BALANCE;
    }
    p += strlen("balance ");
    if (!isdigit((unsigned char)*p)) {
        return SW_DEFAULT_BALANCE;
    }
    while (isdigit((unsigned char)*p) && units < 100000000000LL) {
        units = units * 10 + (*p++ - '0');
    }
    if (*p == '.') {
        p++;
        for (int i = 0; i < 2; i++) {
            minor = minor * 10 + (isdigit((unsigned char)*p) ? (*p++ - '0') : 0);
        }
    }
    return units * 100 + minor;
}

static int parse_card(sw_issuer *is, char *line, const struct keyfile *kf)
{
    char *field[9];
    size_t nf = 0;
    char *s = line;
    struct sw_card *c;
    size_t imk_len = 0;
    int rc = MPOS_ERR_FORMAT;
    while (nf < 9) {
        field[nf++] = s;
        char *t = strchr(s, '\t');
        if (t == NULL) {
            break;
        }
        *t = '\0';
        s = t + 1;
    }
    if (nf != 9 || is->ncards == SW_MAX_CARDS) {
        return MPOS_ERR_FORMAT;
    }
    (void)trim(field[8]);
    c = &is->cards[is->ncards];
    memset(c, 0, sizeof(*c));
    if (strlen(field[0]) >= sizeof(c->name) || !mpos_digits_valid(field[1], 12, 19) ||
        !mpos_digits_valid(field[2], 4, 4) || !mpos_digits_valid(field[4], 2, 2) ||
        !mpos_pin_valid(field[5])) {
        goto exit;
    }
    snprintf(c->name, sizeof(c->name), "%s", field[0]);
    snprintf(c->pan, sizeof(c->pan), "%s", field[1]);
    sw_mask_pan(c->pan, c->masked);
    snprintf(c->expiry, sizeof(c->expiry), "%s", field[2]);
    snprintf(c->psn, sizeof(c->psn), "%s", field[4]);
    if (mpos_hex_decode(field[7], c->imk, sizeof(c->imk), &imk_len) != MPOS_OK ||
        imk_len != sizeof(c->imk)) {
        goto exit;
    }
    rc = pvv_compute(&is->cc, kf->pvk, c->pan, kf->pvki, field[5], c->pvv);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The 19-digit card is personalised for ARPC method 2 (terminal/sim/cardsim/card.c,
     * personalise(): the same cards.tsv row name); every other card uses method 1. */
    c->arpc_method = strcmp(c->name, "approve-19digit") == 0 ? 2 : 1;
    c->start_balance = behaviour_balance(field[8]);
    c->balance = c->start_balance;
    is->ncards++;
exit:
    if (rc != MPOS_OK) {
        mpos_cleanse(c, sizeof(*c));
    }
    return rc;
}

static int read_cards(sw_issuer *is, const char *path, const struct keyfile *kf, const char **why)
{
    char line[LINE_MAX_LEN];
    FILE *f = fopen(path, "r");
    int rc = MPOS_OK;
    if (f == NULL) {
        *why = "cannot open the cards file";
        return MPOS_ERR_ARG;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || trim(line)[0] == '\0') {
            continue;
        }
        rc = parse_card(is, line, kf);
        if (rc != MPOS_OK) {
            *why = "cards file: a malformed row (or too many cards)";
            break;
        }
    }
    /* The clear PINs of the file were in line: gone now, only PVVs are kept. */
    mpos_cleanse(line, sizeof(line));
    fclose(f);
    if (rc == MPOS_OK && is->ncards == 0) {
        *why = "cards file: no card";
        rc = MPOS_ERR_FORMAT;
    }
    return rc;
}

int sw_issuer_init(sw_issuer *is, const char *keys_path, const char *cards_path,
                   const char *ledger_path, const char **why)
{
    struct keyfile *kf = calloc(1, sizeof(*kf));
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t klen = 0;
    int rc;
    memset(is, 0, sizeof(*is));
    *why = "";
    if (kf == NULL) {
        *why = "out of memory";
        return MPOS_ERR_ARG;
    }
    rc = mpos_crypto_init(&is->cc);
    if (rc != MPOS_OK) {
        *why = "crypto init failed";
        goto exit;
    }
    is->txns = calloc(SW_MAX_TXNS, sizeof(*is->txns));
    if (is->txns == NULL) {
        *why = "out of memory";
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    is->ledger_path = ledger_path;
    if ((rc = read_keys(keys_path, kf, why)) != MPOS_OK) {
        goto exit;
    }
    /* ZPK: usage P0 (PIN encryption), ZAK: M3 (ISO 9797-1 MAC algorithm 3), ZEK: D0 (data
     * encryption), all TDES (X9.143:2021 6.3.1, 6.3.2). */
    if ((rc = unwrap_key(is, kf->zmk, kf->zmk_len, kf->zpk, "P0", 0, key, sizeof(key), &klen)) !=
        MPOS_OK) {
        *why = "zpk: key block rejected (MAC, usage P0 or algorithm T)";
        goto exit;
    }
    memcpy(is->zpk, key, klen);
    is->zpk_len = klen;
    if ((rc = unwrap_key(is, kf->zmk, kf->zmk_len, kf->zak, "M3", 1, key, sizeof(key), &klen)) !=
        MPOS_OK) {
        *why = "zak: key block rejected (MAC, usage M3, 2-key TDES)";
        goto exit;
    }
    memcpy(is->zak, key, klen);
    if (kf->zek[0] != '\0') {
        if ((rc = unwrap_key(is, kf->zmk, kf->zmk_len, kf->zek, "D0", 0, key, sizeof(key),
                             &klen)) != MPOS_OK) {
            *why = "zek: key block rejected (MAC, usage D0 or algorithm T)";
            goto exit;
        }
        memcpy(is->zek, key, klen);
        is->zek_len = klen;
        is->have_zek = 1;
    }
    memcpy(is->pvk, kf->pvk, sizeof(is->pvk));
    is->pvki = kf->pvki;
    if ((rc = read_cards(is, cards_path, kf, why)) != MPOS_OK) {
        goto exit;
    }
exit:
    MPOS_WIPE_BUFFER(key);
    mpos_cleanse(kf, sizeof(*kf));
    free(kf);
    if (rc != MPOS_OK) {
        sw_issuer_clear(is);
    }
    return rc;
}

void sw_issuer_clear(sw_issuer *is)
{
    free(is->txns);
    mpos_crypto_clear(&is->cc);
    mpos_cleanse(is, sizeof(*is));
}

/* ---- ledger ----------------------------------------------------------------------------- */

static const char *type_name(int t)
{
    switch (t) {
    case SW_SALE:
        return "sale";
    case SW_VOID:
        return "void";
    case SW_REFUND:
        return "refund";
    case SW_BALANCE:
        return "balance";
    default:
        return "unknown";
    }
}

void sw_issuer_ledger_line(const sw_issuer *is, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < is->ncards && n < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%s=%" PRId64, i ? " " : "", is->cards[i].masked,
                         is->cards[i].balance);
        if (w < 0) {
            break;
        }
        n += (size_t)w;
    }
}

void sw_issuer_ledger_write(const sw_issuer *is)
{
    char tmp[4096];
    FILE *f;
    if (is->ledger_path == NULL) {
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", is->ledger_path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "switchsim event=ledger_error reason=open\n");
        return;
    }
    for (size_t i = 0; i < is->ncards; i++) {
        const struct sw_card *c = &is->cards[i];
        fprintf(f, "card=%s name=%s balance=%" PRId64 " start=%" PRId64 " pin_failures=%u\n",
                c->masked, c->name, c->balance, c->start_balance, c->pin_failures);
    }
    for (size_t i = 0; i < is->ntxns; i++) {
        const struct sw_txn *t = &is->txns[i];
        fprintf(f,
                "txn=%zu mti=%s type=%s pan=%s stan=%s de7=%s acq=%s rrn=%s amount=%" PRIu64
                " rc=%s auth=%s voided=%d reversed=%d refunded=%" PRIu64 " orig=%ld\n",
                i, t->mti, type_name(t->type), is->cards[t->card].masked, t->stan, t->de7, t->acq,
                t->rrn, t->amount, t->rc, t->auth[0] ? t->auth : "-", t->voided, t->reversed,
                t->refunded, t->orig);
    }
    if (fclose(f) != 0 || rename(tmp, is->ledger_path) != 0) {
        fprintf(stderr, "switchsim event=ledger_error reason=write\n");
    }
}

void sw_issuer_reset(sw_issuer *is)
{
    for (size_t i = 0; i < is->ncards; i++) {
        is->cards[i].balance = is->cards[i].start_balance;
        is->cards[i].pin_failures = 0;
        is->cards[i].forced_rc[0] = '\0';
    }
    memset(is->txns, 0, SW_MAX_TXNS * sizeof(*is->txns));
    is->ntxns = 0;
    memset(&is->st, 0, sizeof(is->st));
    sw_issuer_ledger_write(is);
}

static struct sw_card *find_card(sw_issuer *is, const char *pan)
{
    size_t n = strlen(pan);
    for (size_t i = 0; i < is->ncards; i++) {
        if (strlen(is->cards[i].pan) == n && strcmp(is->cards[i].pan, pan) == 0) {
            return &is->cards[i];
        }
    }
    return NULL;
}

int sw_issuer_force_rc(sw_issuer *is, const char *pan, const char *code)
{
    struct sw_card *c = find_card(is, pan);
    if (c == NULL) {
        return MPOS_ERR_PAN;
    }
    if (strcmp(code, "-") == 0) {
        c->forced_rc[0] = '\0';
        return MPOS_OK;
    }
    if (strlen(code) != 2 || !isalnum((unsigned char)code[0]) || !isalnum((unsigned char)code[1])) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(c->forced_rc, code, 3);
    return MPOS_OK;
}

/* ---- request processing ----------------------------------------------------------------- */

/* Everything a response points into (mpos_iso8583_msg does not copy). */
struct resp_bufs {
    char mti[5];
    char rc[3];
    char auth[7];
    uint8_t de55[32];
    size_t de55_len;
    char de62[40];
    uint8_t mac[8];
};

/* The request's identity: MTI, STAN, DE 7 and acquirer (DE 90 names an original this way). */
struct req_id {
    char mti[5], stan[7], de7[11], acq[12], rrn[13];
};

static void acq_pad(const char *acq, char out[12])
{
    size_t n = strlen(acq);
    memset(out, '0', 11);
    if (n > 11) {
        n = 11;
    }
    memcpy(out + 11 - n, acq, n);
    out[11] = '\0';
}

static long find_txn(const sw_issuer *is, const struct req_id *id)
{
    for (size_t i = is->ntxns; i-- > 0;) {
        const struct sw_txn *t = &is->txns[i];
        if (strcmp(t->mti, id->mti) == 0 && strcmp(t->stan, id->stan) == 0 &&
            strcmp(t->de7, id->de7) == 0 && strcmp(t->acq, id->acq) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static long find_rrn(const sw_issuer *is, const char *rrn)
{
    for (size_t i = is->ntxns; i-- > 0;) {
        if (rrn[0] != '\0' && strcmp(is->txns[i].rrn, rrn) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* DE 90 (n 42): original MTI, STAN, DE 7, acquirer (11), forwarding institution (11). */
static int parse_de90(const mpos_iso8583_msg *m, struct req_id *o)
{
    char v[43];
    memset(o, 0, sizeof(*o));
    if (!field_str(m, 90, v, sizeof(v)) || strlen(v) != 42) {
        return 0;
    }
    memcpy(o->mti, v, 4);
    memcpy(o->stan, v + 4, 6);
    memcpy(o->de7, v + 10, 10);
    memcpy(o->acq, v + 20, 11);
    return 1;
}

/* The MAC (ISO 9797-1 algorithm 3, padding method 1, the zone MAC of hsm/ops HSM_MAC_ISO9797_3)
 * over the first mac_len bytes. */
static int zone_mac(sw_issuer *is, const uint8_t *data, size_t len, uint8_t mac[8])
{
    return mpos_mac_iso9797_alg3(&is->cc, is->zak, sizeof(is->zak), MPOS_MAC_PAD_1, data, len, mac);
}

static int verify_mac(sw_issuer *is, const uint8_t *req, size_t len)
{
    size_t n = 0;
    uint8_t mac[8];
    int rc = mpos_iso8583_mac_range(req, len, &n);
    if (rc == MPOS_OK) {
        rc = zone_mac(is, req, n, mac);
    }
    if (rc == MPOS_OK) {
        rc = mpos_mac_verify(mac, sizeof(mac), req + n, MPOS_ISO8583_MAC_LEN);
    }
    MPOS_WIPE_BUFFER(mac);
    return rc;
}

/* DE 62 card data: hex(IV || TDES-CBC(ZEK, data || ISO 9797-1 padding 2)); data is the EMV
 * '57' value, or TLV objects holding a '57' (the card-data format of hsm/ops/ops.h). Writes
 * the PAN and expiry of the track. */
static int de62_track(sw_issuer *is, const mpos_iso8583_msg *m, char pan[20], char expiry[5])
{
    uint8_t buf[512];
    char hex[1000];
    size_t len = 0, i, n, plen = 0, nib;
    const uint8_t *t;
    size_t tlen;
    mpos_tlv obj;
    int found = 0, rc = MPOS_ERR_DECODE;
    if (!field_str(m, 62, hex, sizeof(hex)) ||
        mpos_hex_decode(hex, buf, sizeof(buf), &len) != MPOS_OK || len < 16 || len % 8 != 0) {
        return MPOS_ERR_FORMAT;
    }
    if (mpos_cipher_cbc(&is->cc, MPOS_CIPHER_TDES, 0, is->zek, is->zek_len, buf, buf + 8, buf + 8,
                        len - 8) != MPOS_OK) {
        goto exit;
    }
    /* ISO 9797-1 padding method 2 (terminal/core/txn/sealed.c pad2): 80 then zeros. */
    n = len - 8;
    while (n > 0 && buf[8 + n - 1] == 0x00) {
        n--;
    }
    if (n == 0 || buf[8 + n - 1] != 0x80 || len - 8 - (n - 1) > 8) {
        goto exit;
    }
    n--;
    t = buf + 8;
    tlen = n;
    if (mpos_tlv_validate(t, tlen, MPOS_TLV_STRICT) == MPOS_OK &&
        mpos_tlv_find(t, tlen, MPOS_TLV_STRICT, 0x57, &obj, &found) == MPOS_OK && found) {
        t = obj.value;
        tlen = obj.len;
    }
    /* Track 2 equivalent data (EMV Book 3 Annex A): PAN, D, YYMM, service code, ... */
    for (i = 0, nib = 0; i < 2 * tlen; i++) {
        unsigned d = (i % 2 == 0) ? (unsigned)(t[i / 2] >> 4) : (t[i / 2] & 0x0Fu);
        if (d == 0x0D) {
            break;
        }
        if (d > 9 || plen >= 19) {
            goto exit;
        }
        pan[plen++] = (char)('0' + d);
        nib++;
    }
    pan[plen] = '\0';
    if (i + 4 >= 2 * tlen || plen < 12) {
        goto exit;
    }
    for (size_t k = 0; k < 4; k++) {
        size_t j = i + 1 + k;
        unsigned d = (j % 2 == 0) ? (unsigned)(t[j / 2] >> 4) : (t[j / 2] & 0x0Fu);
        if (d > 9) {
            goto exit;
        }
        expiry[k] = (char)('0' + d);
    }
    expiry[4] = '\0';
    rc = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(buf);
    MPOS_WIPE_BUFFER(hex);
    return rc;
}

static int expired(const char *yymm)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int cur = (tm.tm_year % 100) * 100 + tm.tm_mon + 1;
    int exp =
        (yymm[0] - '0') * 1000 + (yymm[1] - '0') * 100 + (yymm[2] - '0') * 10 + (yymm[3] - '0');
    /* A card is valid through the last day of its expiry month (EMV Book 3 10.5.2). */
    return exp < cur;
}

/* BCD n12 (EMV 9F02) to a number. */
static uint64_t bcd_amount(const uint8_t v[6])
{
    uint64_t a = 0;
    for (size_t i = 0; i < 6; i++) {
        a = a * 100u + (uint64_t)(v[i] >> 4) * 10u + (v[i] & 0x0Fu);
    }
    return a;
}

struct emv_result {
    int present;  /* 9F26 was in DE 55 */
    int verified; /* the ARQC verified */
    uint8_t sk[16];
    uint8_t arqc[8];
    int amount_known;
    uint64_t amount; /* 9F02 */
};

/* Verifies the ARQC of DE 55 (EMV Book 2 8.1.2) the way the card computes it
 * (terminal/sim/cardsim/card.c): ICC MK by option A (option B for PANs over 16 digits), the
 * A1.3.1 common session key over the ATC, MAC algorithm 3 over the Table 26 data and the CVR
 * part of '9F10'. MPOS_ERR_FORMAT for malformed DE 55. */
static int check_arqc(sw_issuer *is, const struct sw_card *c, const mpos_iso8583_msg *m,
                      struct emv_result *er)
{
    const uint8_t *d55 = NULL;
    size_t l55 = 0, ac_len = 0;
    int present = 0, found = 0, rc;
    struct mpos_emv_ac_fields f;
    uint8_t ac_data[MPOS_EMV_AC_DATA_MAX_LEN];
    mpos_tlv obj;
    memset(er, 0, sizeof(*er));
    memset(&f, 0, sizeof(f));
    if (mpos_iso8583_get(m, 55, &d55, &l55, &present) != MPOS_OK || !present) {
        return MPOS_OK;
    }
    if (mpos_tlv_validate(d55, l55, MPOS_TLV_CARD) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < MPOS_EMV_AC_FIELD_COUNT; i++) {
        uint32_t tag = mpos_emv_ac_field_tags[i];
        if (mpos_tlv_find(d55, l55, MPOS_TLV_CARD, tag, &obj, &found) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
        if (found) {
            if (mpos_emv_ac_field_set(&f, tag, obj.value, obj.len) != MPOS_OK) {
                return MPOS_ERR_FORMAT;
            }
            if (tag == 0x9F02) {
                er->amount_known = 1;
                er->amount = bcd_amount(obj.value);
            }
        }
    }
    if (mpos_tlv_find(d55, l55, MPOS_TLV_CARD, 0x9F26, &obj, &found) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    if (!found) {
        return MPOS_OK; /* no cryptogram: nothing to verify (not a chip transaction) */
    }
    if (obj.len != 8) {
        return MPOS_ERR_FORMAT;
    }
    er->present = 1;
    memcpy(er->arqc, obj.value, 8);
    if (mpos_tlv_find(d55, l55, MPOS_TLV_CARD, 0x9F10, &obj, &found) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    /* PBOC IAD: length, DKI, CVN, then the CVR with its length byte, which ends the AC data. */
    if (found && obj.len >= 4 && (size_t)obj.value[3] + 4 <= obj.len &&
        (size_t)obj.value[3] + 1 <= MPOS_EMV_IAD_MAX_LEN) {
        f.iad_part = obj.value + 3;
        f.iad_part_len = (size_t)obj.value[3] + 1;
    }
    rc = mpos_emv_derive_ac_sk(&is->cc, c->imk, sizeof(c->imk), c->pan, c->psn, f.atc, er->sk);
    if (rc == MPOS_OK) {
        rc = mpos_emv_ac_data_build(&f, ac_data, sizeof(ac_data), &ac_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_emv_ac_verify(&is->cc, er->sk, sizeof(er->sk), ac_data, ac_len, er->arqc);
        er->verified = rc == MPOS_OK;
        rc = MPOS_OK;
    }
    MPOS_WIPE_BUFFER(ac_data);
    return rc;
}

/* DE 55 of the response: 91 issuer authentication data (method 1: ARPC || ARC; method 2:
 * ARPC || CSU, CSU byte 2 bit 8 "issuer approves") and 8A, the ARC (the response code). */
static int build_de55(sw_issuer *is, const struct sw_card *c, const struct emv_result *er,
                      const char rc[3], struct resp_bufs *rb)
{
    uint8_t iad[16], arpc[8];
    size_t ilen = 0;
    const uint8_t arc[2] = {(uint8_t)rc[0], (uint8_t)rc[1]};
    int r = MPOS_OK;
    rb->de55_len = 0;
    if (er->verified) {
        if (c->arpc_method == 2) {
            const uint8_t csu[4] = {0x00, strcmp(rc, "00") == 0 ? 0x80 : 0x00, 0x00, 0x00};
            r = mpos_emv_arpc2_generate(&is->cc, er->sk, sizeof(er->sk), er->arqc, csu, NULL, 0,
                                        arpc);
            memcpy(iad, arpc, 4);
            memcpy(iad + 4, csu, 4);
            ilen = 8;
        } else {
            r = mpos_emv_arpc1_generate(&is->cc, er->sk, sizeof(er->sk), er->arqc, arc, arpc);
            memcpy(iad, arpc, 8);
            memcpy(iad + 8, arc, 2);
            ilen = 10;
        }
        if (r == MPOS_OK) {
            r = mpos_tlv_put(rb->de55, sizeof(rb->de55), &rb->de55_len, 0x91, iad, ilen);
        }
    }
    if (r == MPOS_OK) {
        r = mpos_tlv_put(rb->de55, sizeof(rb->de55), &rb->de55_len, 0x8A, arc, 2);
    }
    MPOS_WIPE_BUFFER(arpc);
    return r;
}

/* Adds the MAC field (64, or 128 when the message has a secondary bitmap), packs and MACs. */
static int pack_macd(sw_issuer *is, mpos_iso8583_msg *m, struct resp_bufs *rb, uint8_t *out,
                     size_t cap, size_t *out_len)
{
    int secondary = 0;
    size_t n = 0;
    int rc;
    for (unsigned f = 66; f <= 127; f++) {
        secondary |= mpos_iso8583_has(m, f);
    }
    memset(rb->mac, 0, sizeof(rb->mac));
    rc = mpos_iso8583_set(m, secondary ? 128 : 64, rb->mac, 8);
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_pack(m, out, cap, out_len);
    }
    if (rc == MPOS_OK) {
        rc = mpos_iso8583_mac_range(out, *out_len, &n);
    }
    if (rc == MPOS_OK) {
        rc = zone_mac(is, out, n, out + n);
    }
    if (rc != MPOS_OK) {
        *out_len = 0;
    }
    return rc;
}

static int echo_fields(const mpos_iso8583_msg *req, mpos_iso8583_msg *resp, const unsigned *f,
                       size_t n)
{
    int rc = MPOS_OK;
    for (size_t i = 0; i < n && rc == MPOS_OK; i++) {
        const uint8_t *v = NULL;
        size_t len = 0;
        int present = 0;
        rc = mpos_iso8583_get(req, f[i], &v, &len, &present);
        if (rc == MPOS_OK && present) {
            rc = mpos_iso8583_set(resp, f[i], v, len);
        }
    }
    return rc;
}

static int handle_netmgmt(sw_issuer *is, const mpos_iso8583_msg *req, int macd, uint8_t *out,
                          size_t cap, size_t *out_len, struct resp_bufs *rb)
{
    static const unsigned echo[] = {7, 11, 70};
    mpos_iso8583_msg resp;
    char code[4];
    int rc;
    field_str(req, 70, code, sizeof(code));
    /* 001 sign-on, 002 sign-off, 301 echo test (ISO 8583:1987 DE 70). */
    snprintf(rb->rc, sizeof(rb->rc), "%s",
             (strcmp(code, "001") == 0 || strcmp(code, "002") == 0 || strcmp(code, "301") == 0)
                 ? "00"
                 : "30");
    rc = mpos_iso8583_init(&resp, "0810");
    if (rc != MPOS_OK) {
        return rc;
    }
    if ((rc = echo_fields(req, &resp, echo, sizeof(echo) / sizeof(echo[0]))) != MPOS_OK ||
        (rc = mpos_iso8583_set_str(&resp, 39, rb->rc)) != MPOS_OK) {
        return rc;
    }
    fprintf(stderr, "switchsim event=netmgmt code=%s rc=%s\n", code[0] ? code : "-", rb->rc);
    /* A MAC'd request gets a MAC'd answer (the back end MACs every message it sends). */
    return macd ? pack_macd(is, &resp, rb, out, cap, out_len)
                : mpos_iso8583_pack(&resp, out, cap, out_len);
}

/* Undo the effect of an approved original (reversal 0400). */
static void undo(sw_issuer *is, struct sw_txn *t)
{
    struct sw_card *c = &is->cards[t->card];
    if (!t->approved) {
        return;
    }
    switch (t->type) {
    case SW_SALE:
        if (!t->voided) {
            c->balance += (int64_t)t->amount;
        }
        break;
    case SW_VOID:
        if (t->orig >= 0) {
            struct sw_txn *o = &is->txns[t->orig];
            o->voided = 0;
            if (!o->reversed) {
                is->cards[o->card].balance -= (int64_t)o->amount;
            }
        }
        break;
    case SW_REFUND:
        c->balance -= (int64_t)t->amount;
        if (t->orig >= 0) {
            is->txns[t->orig].refunded -= t->amount;
        }
        break;
    default:
        break;
    }
}

static void set_rc(char rc[3], const char *code)
{
    rc[0] = code[0];
    rc[1] = code[1];
    rc[2] = '\0';
}

static int handle_reversal(sw_issuer *is, const mpos_iso8583_msg *req, uint8_t *out, size_t cap,
                           size_t *out_len, struct resp_bufs *rb)
{
    /* Section 4.1: 3 4 7 11 37 41 42, and DE 90 so the back end can match the pair. */
    static const unsigned echo[] = {3, 4, 7, 11, 37, 41, 42, 90};
    mpos_iso8583_msg resp;
    struct req_id o;
    long idx = -1;
    char reason[3] = "", rrn[13];
    const char *what = "unknown_original";
    int rc;
    is->st.reversals++;
    field_str(req, 39, reason, sizeof(reason));
    field_str(req, 37, rrn, sizeof(rrn));
    if (parse_de90(req, &o)) {
        idx = find_txn(is, &o);
    } else {
        idx = find_rrn(is, rrn);
    }
    if (idx < 0) {
        set_rc(rb->rc, "25");
    } else {
        struct sw_txn *t = &is->txns[idx];
        set_rc(rb->rc, "00");
        if (t->reversed) {
            what = "already_reversed";
        } else {
            undo(is, t);
            t->reversed = 1;
            what = "reversed";
            sw_issuer_ledger_write(is);
        }
    }
    fprintf(stderr, "switchsim event=reversal reason=%s result=%s pan=%s rc=%s\n",
            reason[0] ? reason : "-", what, idx >= 0 ? is->cards[is->txns[idx].card].masked : "-",
            rb->rc);
    if ((rc = mpos_iso8583_init(&resp, "0410")) != MPOS_OK) {
        return rc;
    }
    if ((rc = echo_fields(req, &resp, echo, sizeof(echo) / sizeof(echo[0]))) != MPOS_OK ||
        (rc = mpos_iso8583_set_str(&resp, 39, rb->rc)) != MPOS_OK) {
        return rc;
    }
    return pack_macd(is, &resp, rb, out, cap, out_len);
}

/* PIN check (DE 52): ISO 9564 format 0 under the ZPK, then the Visa PVV of the PIN against
 * the card's. 55 wrong PIN, 75 when the try limit is reached (the blocking attempt and every
 * later one, even with the right PIN); a right PIN resets the counter. */
static void check_pin(sw_issuer *is, struct sw_card *c, const uint8_t *block, size_t block_len,
                      char rc_out[3])
{
    char pin[MPOS_PIN_BUF_LEN], pvv[5];
    int ok = 0;
    memset(pvv, 0, sizeof(pvv));
    if (c->pin_failures >= SW_PIN_TRY_LIMIT) {
        set_rc(rc_out, "75");
        return;
    }
    if (mpos_pin_block_decrypt(&is->cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, is->zpk, is->zpk_len,
                               block, block_len, c->pan, pin) == MPOS_OK &&
        pvv_compute(&is->cc, is->pvk, c->pan, is->pvki, pin, pvv) == MPOS_OK) {
        ok = mpos_ct_equal(pvv, c->pvv, 4);
    }
    MPOS_WIPE_BUFFER(pin);
    MPOS_WIPE_BUFFER(pvv);
    if (ok) {
        c->pin_failures = 0;
        rc_out[0] = '\0';
        return;
    }
    c->pin_failures++;
    set_rc(rc_out, c->pin_failures >= SW_PIN_TRY_LIMIT ? "75" : "55");
}

/* The business decision of a 0100 / 0200 for card c; t is its new ledger record. */
static void decide(sw_issuer *is, const mpos_iso8583_msg *req, struct sw_card *c, struct sw_txn *t,
                   struct emv_result *er, char rc_out[3])
{
    char track_pan[20], track_exp[5] = "", pinrc[3] = "";
    const uint8_t *block = NULL;
    size_t block_len = 0;
    int present = 0;
    struct req_id o;
    long orig;
    if (c->forced_rc[0] != '\0') {
        set_rc(rc_out, c->forced_rc);
        return;
    }
    /* Card data under the ZEK: it must name the same PAN; its expiry is the one checked. */
    if (mpos_iso8583_has(req, 62)) {
        if (!is->have_zek || de62_track(is, req, track_pan, track_exp) != MPOS_OK) {
            set_rc(rc_out, "30");
            return;
        }
        if (strcmp(track_pan, c->pan) != 0) {
            set_rc(rc_out, "05");
            return;
        }
    }
    if (check_arqc(is, c, req, er) != MPOS_OK) {
        set_rc(rc_out, "30");
        return;
    }
    if (er->present && !er->verified) {
        set_rc(rc_out, "05"); /* the cryptogram does not verify */
        return;
    }
    /* The amount the card signed must be the amount asked for (a changed DE 4 is refused). */
    if (er->present && er->amount_known && t->type == SW_SALE && er->amount != t->amount) {
        set_rc(rc_out, "05");
        return;
    }
    if (mpos_iso8583_get(req, 52, &block, &block_len, &present) == MPOS_OK && present) {
        check_pin(is, c, block, block_len, pinrc);
        if (pinrc[0] != '\0') {
            set_rc(rc_out, pinrc);
            return;
        }
    }
    if (expired(track_exp[0] != '\0' ? track_exp : c->expiry)) {
        set_rc(rc_out, "54");
        return;
    }
    switch (t->type) {
    case SW_SALE:
        if (t->amount == 0) {
            set_rc(rc_out, "13");
        } else if (t->amount > (uint64_t)(c->balance > 0 ? c->balance : 0)) {
            set_rc(rc_out, "51");
        } else {
            c->balance -= (int64_t)t->amount;
            set_rc(rc_out, "00");
        }
        return;
    case SW_BALANCE:
        set_rc(rc_out, "00");
        return;
    case SW_VOID:
    case SW_REFUND:
        break;
    default:
        set_rc(rc_out, "12");
        return;
    }
    orig = parse_de90(req, &o) ? find_txn(is, &o) : -1;
    if (orig < 0 || is->txns[orig].type != SW_SALE || !is->txns[orig].approved ||
        is->txns[orig].card != t->card || is->txns[orig].reversed) {
        set_rc(rc_out, "25"); /* original not found */
        return;
    }
    struct sw_txn *ot = &is->txns[orig];
    t->orig = orig;
    if (t->type == SW_VOID) {
        if (ot->voided || ot->refunded != 0) {
            set_rc(rc_out, "12");
            return;
        }
        ot->voided = 1;
        t->amount = ot->amount; /* a void takes back the whole original */
        c->balance += (int64_t)t->amount;
    } else {
        if (ot->voided || t->amount == 0 || t->amount > ot->amount - ot->refunded) {
            set_rc(rc_out, "13"); /* more than is left of the original */
            return;
        }
        ot->refunded += t->amount;
        c->balance += (int64_t)t->amount;
    }
    set_rc(rc_out, "00");
}

static int handle_financial(sw_issuer *is, const mpos_iso8583_msg *req, uint8_t *out, size_t cap,
                            size_t *out_len, struct resp_bufs *rb)
{
    static const unsigned echo[] = {3, 4, 7, 11, 37, 41, 42};
    mpos_iso8583_msg resp;
    struct req_id id;
    struct emv_result er;
    struct sw_card *c = NULL;
    struct sw_txn *t = NULL;
    char pan[20] = "", proc[7] = "", amount_s[13] = "", acq[12] = "";
    int type = 0, rc, dup = 0;
    memset(&er, 0, sizeof(er));
    memset(&id, 0, sizeof(id));
    rb->auth[0] = '\0';
    rb->de55_len = 0;
    rb->de62[0] = '\0';

    int complete =
        field_str(req, 2, pan, sizeof(pan)) & field_str(req, 3, proc, sizeof(proc)) &
        field_str(req, 4, amount_s, sizeof(amount_s)) & field_str(req, 7, id.de7, sizeof(id.de7)) &
        field_str(req, 11, id.stan, sizeof(id.stan)) & field_str(req, 37, id.rrn, sizeof(id.rrn)) &
        mpos_iso8583_has(req, 41) & mpos_iso8583_has(req, 42);
    memcpy(id.mti, req->mti, 4);
    field_str(req, 32, acq, sizeof(acq));
    acq_pad(acq, id.acq);
    if (memcmp(req->mti, "0200", 4) == 0) {
        type = strncmp(proc, "00", 2) == 0   ? SW_SALE
               : strncmp(proc, "02", 2) == 0 ? SW_VOID
               : strncmp(proc, "20", 2) == 0 ? SW_REFUND
                                             : 0;
    } else if (strncmp(proc, "31", 2) == 0) {
        type = SW_BALANCE;
    }

    if (!complete) {
        set_rc(rb->rc, "30"); /* format error */
    } else if (type == 0) {
        set_rc(rb->rc, "12"); /* invalid transaction */
    } else if (find_txn(is, &id) >= 0) {
        /* A repeated request (same MTI, STAN, DE 7, acquirer) gets the first answer again and
         * changes nothing. */
        t = &is->txns[find_txn(is, &id)];
        dup = 1;
        c = &is->cards[t->card];
        set_rc(rb->rc, t->rc);
        memcpy(rb->auth, t->auth, sizeof(rb->auth));
        if (check_arqc(is, c, req, &er) != MPOS_OK) {
            memset(&er, 0, sizeof(er));
        }
    } else if ((c = find_card(is, pan)) == NULL) {
        set_rc(rb->rc, "14"); /* invalid card number */
    } else if (is->ntxns == SW_MAX_TXNS) {
        set_rc(rb->rc, "96");
    } else {
        t = &is->txns[is->ntxns++];
        memset(t, 0, sizeof(*t));
        memcpy(t->mti, id.mti, sizeof(t->mti));
        memcpy(t->stan, id.stan, sizeof(t->stan));
        memcpy(t->de7, id.de7, sizeof(t->de7));
        memcpy(t->acq, id.acq, sizeof(t->acq));
        memcpy(t->rrn, id.rrn, sizeof(t->rrn));
        t->type = type;
        t->card = (size_t)(c - is->cards);
        t->amount = digits_value(amount_s);
        t->orig = -1;
        decide(is, req, c, t, &er, rb->rc);
        memcpy(t->rc, rb->rc, 3);
        t->approved = strcmp(rb->rc, "00") == 0;
        if (t->approved) {
            is->auth_seq++;
            snprintf(t->auth, sizeof(t->auth), "%06lu",
                     (is->auth_seq * 7919ul + 1234ul) % 1000000ul);
            memcpy(rb->auth, t->auth, sizeof(rb->auth));
        }
        sw_issuer_ledger_write(is);
    }
    if (strcmp(rb->rc, "00") == 0) {
        is->st.approved++;
    } else {
        is->st.declined++;
    }
    fprintf(stderr, "switchsim event=request mti=%.4s type=%s pan=%s stan=%s amount=%s rc=%s%s%s\n",
            req->mti, type_name(type), c != NULL ? c->masked : "-", id.stan[0] ? id.stan : "-",
            amount_s[0] ? amount_s : "-", rb->rc, dup ? " duplicate=1" : "",
            er.present ? (er.verified ? " arqc=ok" : " arqc=bad") : "");

    rb->mti[0] = req->mti[0];
    rb->mti[1] = req->mti[1];
    rb->mti[2] = (char)(req->mti[2] + 1);
    rb->mti[3] = req->mti[3];
    rb->mti[4] = '\0';
    if ((rc = mpos_iso8583_init(&resp, rb->mti)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = echo_fields(req, &resp, echo, sizeof(echo) / sizeof(echo[0]))) != MPOS_OK ||
        (rc = mpos_iso8583_set_str(&resp, 39, rb->rc)) != MPOS_OK) {
        goto exit;
    }
    if (rb->auth[0] != '\0' && (rc = mpos_iso8583_set_str(&resp, 38, rb->auth)) != MPOS_OK) {
        goto exit;
    }
    if (c != NULL && er.present) {
        if ((rc = build_de55(is, c, &er, rb->rc, rb)) != MPOS_OK ||
            (rc = mpos_iso8583_set(&resp, 55, rb->de55, rb->de55_len)) != MPOS_OK) {
            goto exit;
        }
    }
    if (t != NULL && t->type == SW_BALANCE && strcmp(rb->rc, "00") == 0) {
        snprintf(rb->de62, sizeof(rb->de62), "balance=%" PRId64, c->balance);
        if ((rc = mpos_iso8583_set_str(&resp, 62, rb->de62)) != MPOS_OK) {
            goto exit;
        }
    }
    rc = pack_macd(is, &resp, rb, out, cap, out_len);
exit:
    mpos_cleanse(&er, sizeof(er));
    return rc;
}

int sw_issuer_handle(sw_issuer *is, const uint8_t *req, size_t req_len, uint8_t *resp, size_t cap,
                     size_t *resp_len, int *financial)
{
    mpos_iso8583_msg m;
    struct resp_bufs rb;
    int rc = MPOS_OK;
    *resp_len = 0;
    *financial = 0;
    memset(&rb, 0, sizeof(rb));
    is->st.requests++;
    if (mpos_iso8583_unpack(req, req_len, &m) != MPOS_OK) {
        is->st.malformed++;
        fprintf(stderr, "switchsim event=malformed len=%zu\n", req_len);
        return MPOS_OK;
    }
    int is_net = memcmp(m.mti, "0800", 4) == 0;
    int is_fin = memcmp(m.mti, "0100", 4) == 0 || memcmp(m.mti, "0200", 4) == 0 ||
                 memcmp(m.mti, "0400", 4) == 0;
    if (!is_net && !is_fin) {
        is->st.malformed++;
        fprintf(stderr, "switchsim event=unsupported mti=%.4s\n", m.mti);
        return MPOS_OK;
    }
    /* Every financial message carries a MAC; a network message may. A missing or bad MAC:
     * no answer at all (section 4), so a forger learns nothing. */
    int has_mac = mpos_iso8583_has(&m, 64) || mpos_iso8583_has(&m, 128);
    if ((is_fin && !has_mac) || (has_mac && verify_mac(is, req, req_len) != MPOS_OK)) {
        is->st.bad_mac++;
        fprintf(stderr, "switchsim event=bad_mac mti=%.4s\n", m.mti);
        return MPOS_OK;
    }
    *financial = is_fin;
    if (is_net) {
        rc = handle_netmgmt(is, &m, has_mac, resp, cap, resp_len, &rb);
    } else if (memcmp(m.mti, "0400", 4) == 0) {
        rc = handle_reversal(is, &m, resp, cap, resp_len, &rb);
    } else {
        rc = handle_financial(is, &m, resp, cap, resp_len, &rb);
    }
    if (rc != MPOS_OK) {
        *resp_len = 0;
        fprintf(stderr, "switchsim event=error mti=%.4s err=%s\n", m.mti, mpos_strerror(rc));
    }
    mpos_cleanse(&rb, sizeof(rb));
    return rc;
}
