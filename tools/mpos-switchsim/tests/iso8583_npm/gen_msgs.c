/* iso8583_npm: builds a fixed set of messages of docs/system-design.md section 4.1 with
 * lib/iso8583 (sign-on, echo, sale, void, refund, reversal, balance, a sale response), MACs
 * them like mpos-switchsim and the back end do (ISO 9797-1 MAC algorithm 3, padding 1, under a
 * fixed test ZAK), and prints them as JSON for check_npm.js: per message its name, the framed
 * message in hex, the MTI and every field (binary fields in hex, listed in "binary").
 * Test values only: a made-up PAN, a fixed test key. */
#include <stdio.h>
#include <string.h>

#include "mpos/crypto.h"
#include "mpos/iso8583.h"
#include "mpos/mac.h"
#include "mpos/util.h"

static const uint8_t zak[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
static mpos_crypto_ctx cc;
static int first = 1;

struct fv {
    unsigned field;
    const char *s;    /* text value, or NULL */
    const uint8_t *b; /* binary value */
    size_t blen;
};

static void json_str(const uint8_t *v, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '"' || v[i] == '\\') {
            putchar('\\');
        }
        putchar(v[i]);
    }
    putchar('"');
}

static int emit(const char *name, const char *mti, const struct fv *f, size_t n, int mac)
{
    static uint8_t out[4096];
    static char hex[8193];
    static const uint8_t zero[8] = {0};
    mpos_iso8583_msg m;
    size_t len = 0, mlen = 0;
    int secondary = 0, rc;
    if ((rc = mpos_iso8583_init(&m, mti)) != MPOS_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = f[i].s != NULL ? mpos_iso8583_set_str(&m, f[i].field, f[i].s)
                            : mpos_iso8583_set(&m, f[i].field, f[i].b, f[i].blen);
        if (rc != MPOS_OK) {
            fprintf(stderr, "gen_msgs: %s field %u refused\n", name, f[i].field);
            return rc;
        }
        secondary |= f[i].field > 64;
    }
    if (mac && (rc = mpos_iso8583_set(&m, secondary ? 128 : 64, zero, 8)) != MPOS_OK) {
        return rc;
    }
    if ((rc = mpos_iso8583_pack_framed(&m, out, sizeof(out), &len)) != MPOS_OK) {
        return rc;
    }
    if (mac) {
        /* The MAC covers the message from the MTI up to the MAC field (section 4). */
        if ((rc = mpos_iso8583_mac_range(out + 2, len - 2, &mlen)) != MPOS_OK ||
            (rc = mpos_mac_iso9797_alg3(&cc, zak, sizeof(zak), MPOS_MAC_PAD_1, out + 2, mlen,
                                        out + 2 + mlen)) != MPOS_OK) {
            return rc;
        }
    }
    /* Unpack what was packed: the JSON lists the fields as our codec reads them back. */
    if ((rc = mpos_iso8583_unpack(out + 2, len - 2, &m)) != MPOS_OK) {
        return rc;
    }
    mpos_hex_encode(out, len, hex);
    printf("%s\n {\"name\": \"%s\", \"frame\": \"%s\", \"mti\": \"%.4s\", \"fields\": {",
           first ? "" : ",", name, hex, m.mti);
    first = 0;
    int firstf = 1;
    char binary[256] = "";
    for (unsigned fno = 2; fno <= MPOS_ISO8583_MAX_FIELD; fno++) {
        const uint8_t *v = NULL;
        size_t vl = 0;
        int present = 0;
        if (fno == 65 || mpos_iso8583_get(&m, fno, &v, &vl, &present) != MPOS_OK || !present) {
            continue;
        }
        printf("%s\"%u\": ", firstf ? "" : ", ", fno);
        firstf = 0;
        if (mpos_iso8583_fields[fno].charset == MPOS_ISO8583_B) {
            mpos_hex_encode(v, vl, hex);
            printf("\"%s\"", hex);
            size_t bl = strlen(binary);
            snprintf(binary + bl, sizeof(binary) - bl, "%s%u", bl ? ", " : "", fno);
        } else {
            json_str(v, vl);
        }
    }
    printf("}, \"binary\": [%s]}", binary);
    return MPOS_OK;
}

int main(void)
{
    /* EMV data of a chip sale: 9F26 ARQC, 9F27 CID, 9F10 IAD, 9F37 UN, 9F36 ATC, 95 TVR, 9A
     * date, 9C type, 9F02 amount, 5F2A currency, 82 AIP, 9F1A country (bytes >= 0x80 on
     * purpose: they show what a text-only codec does to binary data). */
    static const uint8_t de55[] = {0x9F, 0x26, 0x08, 0x8E, 0x1A, 0x2B, 0x3C, 0x4D, 0x5E, 0x6F, 0x70,
                                   0x9F, 0x27, 0x01, 0x80, 0x9F, 0x10, 0x08, 0x07, 0x01, 0x01, 0x03,
                                   0xA0, 0xA0, 0x00, 0x01, 0x9F, 0x37, 0x04, 0x11, 0x22, 0x33, 0x44,
                                   0x9F, 0x36, 0x02, 0x00, 0x21, 0x95, 0x05, 0x00, 0x00, 0x00, 0x00,
                                   0x00, 0x9A, 0x03, 0x26, 0x01, 0x15, 0x9C, 0x01, 0x00, 0x9F, 0x02,
                                   0x06, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x5F, 0x2A, 0x02, 0x01,
                                   0x56, 0x82, 0x02, 0x7C, 0x00, 0x9F, 0x1A, 0x02, 0x01, 0x56};
    static const uint8_t pinblock[8] = {0x3A, 0x91, 0x07, 0xC2, 0x55, 0xE0, 0x18, 0xF4};
    static const uint8_t resp55[] = {0x91, 0x0A, 0xD1, 0x6B, 0x09, 0x44, 0xE2, 0x7F,
                                     0x31, 0xA8, 0x30, 0x30, 0x8A, 0x02, 0x30, 0x30};
    const char *de62 = "5A1C3D4E5F60718293A4B5C6D7E8F9011223344556677889";
    const char *pan = "6212094482246349";
    const char *orig = "020000012301151230450000012345600000000000";
    int rc = mpos_crypto_init(&cc);
    if (rc != MPOS_OK) {
        return 1;
    }
    const struct fv signon[] = {
        {7, "0115123000", NULL, 0}, {11, "000001", NULL, 0}, {70, "001", NULL, 0}};
    const struct fv echo[] = {
        {7, "0115123100", NULL, 0}, {11, "000002", NULL, 0}, {70, "301", NULL, 0}};
    const struct fv sale[] = {{2, pan, NULL, 0},
                              {3, "000000", NULL, 0},
                              {4, "000000001000", NULL, 0},
                              {7, "0115123045", NULL, 0},
                              {11, "000123", NULL, 0},
                              {12, "203045", NULL, 0},
                              {13, "0115", NULL, 0},
                              {22, "051", NULL, 0},
                              {23, "001", NULL, 0},
                              {25, "00", NULL, 0},
                              {32, "123456", NULL, 0},
                              {37, "600000000001", NULL, 0},
                              {41, "TERM0001", NULL, 0},
                              {42, "MERCHANT0000001", NULL, 0},
                              {49, "156", NULL, 0},
                              {52, NULL, pinblock, sizeof(pinblock)},
                              {55, NULL, de55, sizeof(de55)},
                              {62, de62, NULL, 0}};
    const struct fv sale_resp[] = {{3, "000000", NULL, 0},
                                   {4, "000000001000", NULL, 0},
                                   {7, "0115123045", NULL, 0},
                                   {11, "000123", NULL, 0},
                                   {37, "600000000001", NULL, 0},
                                   {38, "A1B2C3", NULL, 0},
                                   {39, "00", NULL, 0},
                                   {41, "TERM0001", NULL, 0},
                                   {42, "MERCHANT0000001", NULL, 0},
                                   {55, NULL, resp55, sizeof(resp55)}};
    const struct fv voidm[] = {{2, pan, NULL, 0},
                               {3, "020000", NULL, 0},
                               {4, "000000001000", NULL, 0},
                               {7, "0115124000", NULL, 0},
                               {11, "000124", NULL, 0},
                               {12, "204000", NULL, 0},
                               {13, "0115", NULL, 0},
                               {22, "052", NULL, 0},
                               {25, "00", NULL, 0},
                               {32, "123456", NULL, 0},
                               {37, "600000000002", NULL, 0},
                               {41, "TERM0001", NULL, 0},
                               {42, "MERCHANT0000001", NULL, 0},
                               {49, "156", NULL, 0},
                               {90, orig, NULL, 0}};
    const struct fv refund[] = {{2, pan, NULL, 0},
                                {3, "200000", NULL, 0},
                                {4, "000000000500", NULL, 0},
                                {7, "0115125000", NULL, 0},
                                {11, "000125", NULL, 0},
                                {12, "205000", NULL, 0},
                                {13, "0115", NULL, 0},
                                {22, "052", NULL, 0},
                                {25, "00", NULL, 0},
                                {32, "123456", NULL, 0},
                                {37, "600000000003", NULL, 0},
                                {41, "TERM0001", NULL, 0},
                                {42, "MERCHANT0000001", NULL, 0},
                                {49, "156", NULL, 0},
                                {90, orig, NULL, 0}};
    const struct fv reversal[] = {{2, pan, NULL, 0},
                                  {3, "000000", NULL, 0},
                                  {4, "000000001000", NULL, 0},
                                  {7, "0115123045", NULL, 0},
                                  {11, "000126", NULL, 0},
                                  {32, "123456", NULL, 0},
                                  {37, "600000000001", NULL, 0},
                                  {39, "68", NULL, 0},
                                  {41, "TERM0001", NULL, 0},
                                  {42, "MERCHANT0000001", NULL, 0},
                                  {49, "156", NULL, 0},
                                  {90, orig, NULL, 0}};
    const struct fv balance[] = {{2, pan, NULL, 0},
                                 {3, "310000", NULL, 0},
                                 {4, "000000000000", NULL, 0},
                                 {7, "0115126000", NULL, 0},
                                 {11, "000127", NULL, 0},
                                 {12, "206000", NULL, 0},
                                 {13, "0115", NULL, 0},
                                 {22, "051", NULL, 0},
                                 {25, "00", NULL, 0},
                                 {32, "123456", NULL, 0},
                                 {37, "600000000004", NULL, 0},
                                 {41, "TERM0001", NULL, 0},
                                 {42, "MERCHANT0000001", NULL, 0},
                                 {49, "156", NULL, 0},
                                 {52, NULL, pinblock, sizeof(pinblock)}};
#define N(a) (sizeof(a) / sizeof(a[0]))
    printf("[");
    if ((rc = emit("sign-on", "0800", signon, N(signon), 0)) != MPOS_OK ||
        (rc = emit("echo", "0800", echo, N(echo), 0)) != MPOS_OK ||
        (rc = emit("sale", "0200", sale, N(sale), 1)) != MPOS_OK ||
        (rc = emit("sale-response", "0210", sale_resp, N(sale_resp), 1)) != MPOS_OK ||
        (rc = emit("void", "0200", voidm, N(voidm), 1)) != MPOS_OK ||
        (rc = emit("refund", "0200", refund, N(refund), 1)) != MPOS_OK ||
        (rc = emit("reversal", "0400", reversal, N(reversal), 1)) != MPOS_OK ||
        (rc = emit("balance", "0100", balance, N(balance), 1)) != MPOS_OK) {
        fprintf(stderr, "gen_msgs: %s\n", mpos_strerror(rc));
        mpos_crypto_clear(&cc);
        return 1;
    }
    printf("\n]\n");
    mpos_crypto_clear(&cc);
    return 0;
}
