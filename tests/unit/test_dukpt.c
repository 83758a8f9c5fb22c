/* Unit tests: DUKPT (lib/dukpt).
 *
 * Known answers: every dukpt line of tests/vectors/published.tsv, through the C API. Their
 * sources: ANSI X9.24-1-2009 A.4 (TDES: BDK 0123456789ABCDEFFEDCBA9876543210, KSN
 * FFFF9876543210E...) and the ANSI X9.24-3-2017 supplement test vectors (AES-128 and AES-256
 * BDKs, initial key ID 1234567890123456). Then: the refusals of the contract; the terminal
 * against host derivation for the first 10,000 transactions and at every counter boundary,
 * to exhaustion; state export/import and corrupted states.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/util.h"
#include "testutil.h"

static mpos_crypto_ctx cc;

static int setup(void **state)
{
    (void)state;
    return mpos_crypto_init(&cc) == MPOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    return 0;
}

/* ---- known answers ------------------------------------------------------------------- */

#define AES_BDK128 "FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define AES_BDK256 "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define AES_IKID   "1234567890123456"
#define TDES_BDK   "0123456789ABCDEFFEDCBA9876543210"
#define TDES_KSN   "FFFF9876543210"

#define IK      (-1) /* the initial key / IPEK */
#define DERIVE  0    /* the derivation key (AES) / transaction key (TDES) */
#define PIN     MPOS_DUKPT_AES_USAGE_PIN
#define MAC_GEN MPOS_DUKPT_AES_USAGE_MAC_GEN
#define DATA    MPOS_DUKPT_AES_USAGE_DATA_ENC
#define KEK     MPOS_DUKPT_AES_USAGE_KEK
#define A128    MPOS_DUKPT_AES_KEY_AES128
#define A256    MPOS_DUKPT_AES_KEY_AES256

struct aes_vector {
    const char *bdk, *counter;
    int usage; /* IK, DERIVE or an enum mpos_dukpt_aes_usage */
    enum mpos_dukpt_aes_key_type type;
    const char *expect;
};

/* ANSI X9.24-3-2017 supplement test vectors (as listed in published.tsv). */
static const struct aes_vector aes_vectors[] = {
    {AES_BDK128, "00000000", IK, 0, "1273671EA26AC29AFA4D1084127652A1"},
    {AES_BDK128, "00000001", DERIVE, 0, "4F21B565BAD9835E112B6465635EAE44"},
    {AES_BDK128, "00000001", PIN, A128, "AF8CB133A78F8DC2D1359F18527593FB"},
    {AES_BDK128, "00000001", MAC_GEN, A128, "A2DC23DE6FDE0824A2BC321E08E4B8B7"},
    {AES_BDK128, "00000001", DATA, A128, "A35C412EFD41FDB98B69797C02DCD08F"},
    {AES_BDK128, "00000002", DERIVE, 0, "2F34D68DE10F68D38091A73B9E7C437C"},
    {AES_BDK128, "00000002", PIN, A128, "D30BDC73EC9714B000BEC66BDB7B6D09"},
    {AES_BDK128, "00000002", MAC_GEN, A128, "484C3B06E8562704528CD5B46FB12FB6"},
    {AES_BDK128, "00000002", DATA, A128, "D639514AA33AC43AD9229E433D6D4E5B"},
    {AES_BDK128, "00000003", DERIVE, 0, "031504E530365CF81264238540518318"},
    {AES_BDK128, "00000003", PIN, A128, "7D69F01F3B45449F62C7816ECE723268"},
    {AES_BDK128, "00000003", MAC_GEN, A128, "A5DF7D9D800CA769766F0C77CA4E6E6C"},
    {AES_BDK128, "00000003", DATA, A128, "EF17F6AB45B4820C93A3DCB21BC491AD"},
    {AES_BDK128, "00000004", DERIVE, 0, "0EEFC7ADA628BA68878DA9165A8A1887"},
    {AES_BDK128, "00000004", PIN, A128, "91A0588318EC2673214271F70137896E"},
    {AES_BDK128, "00000004", MAC_GEN, A128, "E6E4679647D8A9057C1FC15537CB4C4E"},
    {AES_BDK128, "00000004", DATA, A128, "B3BD44C08BB6BA27C3BB4711D7D70387"},
    {AES_BDK128, "00000005", DERIVE, 0, "C2A7AC328A5DA2D6002D62465BFC028B"},
    {AES_BDK128, "00000005", PIN, A128, "35A43BC9EFEB09C756204B57E3FB7D4D"},
    {AES_BDK128, "00000005", MAC_GEN, A128, "0588185FE1FF8C7E22FAD78C1C61F065"},
    {AES_BDK128, "00000005", DATA, A128, "CA02DF6F30B39E14BD0B4A30E460920F"},
    {AES_BDK128, "00000006", DERIVE, 0, "D30F7D9351DA58448A2F5E92B4EE3B7D"},
    {AES_BDK128, "00000006", PIN, A128, "02DCC6CD1201A3A2CA7099559C862123"},
    {AES_BDK128, "00000006", MAC_GEN, A128, "7B60F72A5639C0EE7EB2100FA80BB793"},
    {AES_BDK128, "00000006", DATA, A128, "C9B8A7C4E486180B2229115164F0B293"},
    {AES_BDK128, "00000007", DERIVE, 0, "A8253CEED9AC042C54F75D35C8352278"},
    {AES_BDK128, "00000007", PIN, A128, "6ECF912F3B18CA11A7A27BB60705FD09"},
    {AES_BDK128, "00000007", MAC_GEN, A128, "BAA08CA263C69525BC6B1BA8F4275D69"},
    {AES_BDK128, "00000007", DATA, A128, "0FA8F1F0A2DD7B1005A862D77CDED698"},
    {AES_BDK128, "00000008", DERIVE, 0, "718EE6CF0B27E53D5F7AF99C4D8146A2"},
    {AES_BDK128, "00000008", PIN, A128, "4D9DF3FBEE3448FC3E676D04320A90F5"},
    {AES_BDK128, "00000008", MAC_GEN, A128, "6FD572E5D59E618875F193484F9178FB"},
    {AES_BDK128, "00000008", DATA, A128, "650F34204ABD4E57764D61AC3D266FB1"},
    {AES_BDK128, "0001FFFE", DERIVE, 0, "E21E8C8D347F8561A2BE752DAA85A111"},
    {AES_BDK128, "00020000", DERIVE, 0, "F7AE9025468A25D37B7249CFFED224C8"},
    {AES_BDK128, "00020001", DERIVE, 0, "692C8EA4013645135B36497131DF9D2C"},
    {AES_BDK128, "FFFE2000", DERIVE, 0, "48E585B694EB0B18D5C35443E163C0BA"},
    {AES_BDK128, "FFFE4000", DERIVE, 0, "396C2C7CA1EA701C03B86B7D41F0C562"},
    {AES_BDK128, "FFFE8000", DERIVE, 0, "0387625F189B58AE03EF0E8CCA41105E"},
    {AES_BDK128, "FFFF0000", DERIVE, 0, "F6BA59389BD14A9855BE9727E7C52E3C"},
    {AES_BDK128, "FFFFFFFF", KEK, A128, "9A9770AEE1ACD1B13473D0463A1883B9"},
    {AES_BDK256, "00000000", IK, 0,
     "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F"},
    {AES_BDK256, "00000001", DERIVE, 0,
     "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3"},
    {AES_BDK256, "00000001", PIN, A128, "09C9C432966811D6B2C3336BAC1B1202"},
    {AES_BDK256, "00000001", PIN, A256,
     "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502"},
    {AES_BDK256, "00000002", DERIVE, 0,
     "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97"},
    {AES_BDK256, "00000002", PIN, A128, "D632226A80795D13A80AFE66A3E97B01"},
    {AES_BDK256, "00000002", PIN, A256,
     "3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62"},
    {AES_BDK256, "00000008", DERIVE, 0,
     "20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308"},
    {AES_BDK256, "00000008", PIN, A128, "53C1C60A65532313141A102AD720E967"},
    {AES_BDK256, "00000008", PIN, A256,
     "173A45284262A3E292D86D08FD6DE9167963214450D1D48F6103BD2EB08E61B5"},
};

struct tdes_vector {
    const char *counter; /* the last 6 hex digits of the KSN */
    int usage;           /* IK, DERIVE or an enum mpos_dukpt_tdes_usage */
    const char *expect;
};

/* ANSI X9.24-1-2009 A.4 (as listed in published.tsv); BDK TDES_BDK, KSN TDES_KSN || counter. */
static const struct tdes_vector tdes_vectors[] = {
    {"E00000", IK, "6AC292FAA1315B4D858AB3A3D7D5933A"},
    {"E00001", DERIVE, "042666B49184CFA368DE9628D0397BC9"},
    {"E00001", MPOS_DUKPT_TDES_USAGE_PIN, "042666B49184CF5C68DE9628D0397B36"},
    {"E00002", DERIVE, "C46551CEF9FD24B0AA9AD834130D3BC7"},
    {"E00002", MPOS_DUKPT_TDES_USAGE_PIN, "C46551CEF9FD244FAA9AD834130D3B38"},
    {"E00003", DERIVE, "0DF3D9422ACA56E547676D07AD6BADFA"},
    {"E00003", MPOS_DUKPT_TDES_USAGE_PIN, "0DF3D9422ACA561A47676D07AD6BAD05"},
    {"E00008", DERIVE, "27F66D5244FF62E1AA6F6120EDEB4280"},
    {"E00008", MPOS_DUKPT_TDES_USAGE_PIN, "27F66D5244FF621EAA6F6120EDEB427F"},
    {"E00010", DERIVE, "59598DCBD9BD94C094165CE453585F57"},
    {"E00010", MPOS_DUKPT_TDES_USAGE_PIN, "59598DCBD9BD943F94165CE453585FA8"},
    {"E00015", DERIVE, "E161D1956A61F6D2F37AFD7F9CC3699A"},
    {"E00015", MPOS_DUKPT_TDES_USAGE_PIN, "E161D1956A61F62DF37AFD7F9CC36965"},
    {"EFF800", DERIVE, "F9CDFEBF4F5B1D9EB3EC12454527E176"},
    {"EFF800", MPOS_DUKPT_TDES_USAGE_PIN, "F9CDFEBF4F5B1D61B3EC12454527E189"},
    {"EFF801", DERIVE, "5BEE92627E97825C911BF619DF72CA3B"},
    {"EFF801", MPOS_DUKPT_TDES_USAGE_PIN, "5BEE92627E9782A3911BF619DF72CAC4"},
    {"EFF900", DERIVE, "906AAC1751D4971A144D52C76C6E1F97"},
    {"EFF900", MPOS_DUKPT_TDES_USAGE_PIN, "906AAC1751D497E5144D52C76C6E1F68"},
    {"F00000", DERIVE, "AA4D58DB653EC74A48C75F2F047DD2B5"},
    {"F00000", MPOS_DUKPT_TDES_USAGE_PIN, "AA4D58DB653EC7B548C75F2F047DD24A"},
};

static int aes_derive(const uint8_t *bdk, size_t bdk_len, const uint8_t ksn[12], int usage,
                      enum mpos_dukpt_aes_key_type type, uint8_t *out, size_t *out_len)
{
    if (usage == IK) {
        *out_len = bdk_len;
        return mpos_dukpt_aes_initial_key(&cc, bdk, bdk_len, ksn, out);
    }
    if (usage == DERIVE) {
        *out_len = bdk_len;
        return mpos_dukpt_aes_derivation_key(&cc, bdk, bdk_len, ksn, out);
    }
    *out_len = mpos_dukpt_aes_key_len(type);
    return mpos_dukpt_aes_working_key(&cc, bdk, bdk_len, ksn, (enum mpos_dukpt_aes_usage)usage,
                                      type, out);
}

static int tdes_derive(const uint8_t *bdk, size_t bdk_len, const uint8_t ksn[10], int usage,
                       uint8_t out[16])
{
    if (usage == IK) {
        return mpos_dukpt_tdes_ipek(&cc, bdk, bdk_len, ksn, out);
    }
    if (usage == DERIVE) {
        return mpos_dukpt_tdes_transaction_key(&cc, bdk, bdk_len, ksn, out);
    }
    return mpos_dukpt_tdes_working_key(&cc, bdk, bdk_len, ksn, (enum mpos_dukpt_tdes_usage)usage,
                                       out);
}

static void test_aes_published(void **state)
{
    (void)state;
    for (int aesni = 0; aesni <= 1; aesni++) {
        mpos_crypto_set_aesni(&cc, aesni); /* libcrypto and AES-NI paths alike */
        for (size_t i = 0; i < sizeof(aes_vectors) / sizeof(aes_vectors[0]); i++) {
            const struct aes_vector *v = &aes_vectors[i];
            uint8_t bdk[32], ksn[12], expect[32], out[32];
            char ksn_hex[25];
            size_t bdk_len = tu_hex(v->bdk, bdk, sizeof(bdk)), out_len = 0;
            snprintf(ksn_hex, sizeof(ksn_hex), "%s%s", AES_IKID, v->counter);
            tu_hex(ksn_hex, ksn, sizeof(ksn));
            size_t n = tu_hex(v->expect, expect, sizeof(expect));
            assert_int_equal(aes_derive(bdk, bdk_len, ksn, v->usage, v->type, out, &out_len),
                             MPOS_OK);
            assert_int_equal(out_len, n);
            assert_memory_equal(out, expect, n);
        }
    }
    mpos_crypto_set_aesni(&cc, 1);
}

static void test_tdes_published(void **state)
{
    (void)state;
    uint8_t bdk[16], ksn[10], expect[16], out[16];
    tu_hex(TDES_BDK, bdk, sizeof(bdk));
    for (size_t i = 0; i < sizeof(tdes_vectors) / sizeof(tdes_vectors[0]); i++) {
        const struct tdes_vector *v = &tdes_vectors[i];
        char ksn_hex[21];
        snprintf(ksn_hex, sizeof(ksn_hex), "%s%s", TDES_KSN, v->counter);
        tu_hex(ksn_hex, ksn, sizeof(ksn));
        tu_hex(v->expect, expect, sizeof(expect));
        assert_int_equal(tdes_derive(bdk, sizeof(bdk), ksn, v->usage, out), MPOS_OK);
        assert_memory_equal(out, expect, 16);
    }
}

/* The value of option `name` in a published.tsv command line, or NULL. */
static const char *opt_value(const char *args, const char *name, char *buf, size_t cap)
{
    char pattern[32];
    snprintf(pattern, sizeof(pattern), "--%s ", name);
    const char *p = strstr(args, pattern);
    if (p == NULL) {
        return NULL;
    }
    p += strlen(pattern);
    size_t n = strcspn(p, " \t");
    assert_true(n < cap);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static int name_index(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return (int)i;
        }
    }
    fail_msg("unknown name %s in published.tsv", name);
    return -1;
}

/* Every dukpt line of the published file itself (when the build knows where it is), so a
 * vector added there is tested here too. */
static void test_published_file(void **state)
{
    (void)state;
    static const char *const aes_usage_names[] = {"pin",      "mac-gen",  "mac-verify", "mac-both",
                                                  "data-enc", "data-dec", "data-both",  "kek"};
    static const int aes_usage_values[] = {
        MPOS_DUKPT_AES_USAGE_PIN,        MPOS_DUKPT_AES_USAGE_MAC_GEN,
        MPOS_DUKPT_AES_USAGE_MAC_VERIFY, MPOS_DUKPT_AES_USAGE_MAC_BOTH,
        MPOS_DUKPT_AES_USAGE_DATA_ENC,   MPOS_DUKPT_AES_USAGE_DATA_DEC,
        MPOS_DUKPT_AES_USAGE_DATA_BOTH,  MPOS_DUKPT_AES_USAGE_KEK};
    static const char *const type_names[] = {"",       "2tdea",   "3tdea",   "aes128", "aes192",
                                             "aes256", "hmac128", "hmac192", "hmac256"};
    static const char *const tdes_usage_names[] = {"",         "pin",      "mac-req",
                                                   "mac-resp", "data-req", "data-resp"};
    const char *path = tu_published_vectors();
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (f == NULL) {
        skip();
    }
    char line[1024];
    unsigned count = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "dukpt ", 6) != 0) {
            continue;
        }
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        char *expect_hex = tab + 1;
        expect_hex[strcspn(expect_hex, "\t\r\n")] = '\0';
        char scheme[8], bdk_hex[80], ksn_hex[32], usage_name[16], type_name[16];
        uint8_t bdk[32], ksn[12], expect[32], out[32];
        int ik = strncmp(line, "dukpt ik ", 9) == 0;
        assert_non_null(opt_value(line, "scheme", scheme, sizeof(scheme)));
        size_t bdk_len = tu_hex(opt_value(line, "bdk", bdk_hex, sizeof(bdk_hex)), bdk, sizeof(bdk));
        tu_hex(opt_value(line, "ksn", ksn_hex, sizeof(ksn_hex)), ksn, sizeof(ksn));
        size_t n = tu_hex(expect_hex, expect, sizeof(expect)), out_len = 16;
        const char *u = opt_value(line, "usage", usage_name, sizeof(usage_name));
        const char *t = opt_value(line, "key-type", type_name, sizeof(type_name));
        if (strcmp(scheme, "aes") == 0) {
            int usage = ik ? IK : DERIVE;
            if (u != NULL) {
                usage = aes_usage_values[name_index(u, aes_usage_names, 8)];
            }
            int type = bdk_len == 16   ? (int)MPOS_DUKPT_AES_KEY_AES128
                       : bdk_len == 24 ? (int)MPOS_DUKPT_AES_KEY_AES192
                                       : (int)MPOS_DUKPT_AES_KEY_AES256;
            if (t != NULL) {
                type = name_index(t, type_names, 9);
            }
            assert_int_equal(aes_derive(bdk, bdk_len, ksn, usage,
                                        (enum mpos_dukpt_aes_key_type)type, out, &out_len),
                             MPOS_OK);
        } else {
            int usage = ik ? IK : u != NULL ? name_index(u, tdes_usage_names, 6) : DERIVE;
            assert_int_equal(tdes_derive(bdk, bdk_len, ksn, usage, out), MPOS_OK);
        }
        assert_int_equal(out_len, n);
        assert_memory_equal(out, expect, n);
        count++;
    }
    fclose(f);
    assert_true(count >= sizeof(aes_vectors) / sizeof(aes_vectors[0]) +
                             sizeof(tdes_vectors) / sizeof(tdes_vectors[0]));
}

/* X9.24-3-2017 6.3.1-6.3.3 restated: every usage and key type from the derivation key, with
 * the algorithm indicator and length of the type and two blocks above 128 bits. */
static void test_aes_working_key_layout(void **state)
{
    (void)state;
    static const uint16_t usages[] = {0x1000, 0x2000, 0x2001, 0x2002, 0x3000, 0x3001, 0x3002};
    static const struct {
        enum mpos_dukpt_aes_key_type type;
        uint16_t algorithm, bits;
    } types[] = {{MPOS_DUKPT_AES_KEY_2TDEA, 0, 128},   {MPOS_DUKPT_AES_KEY_3TDEA, 1, 192},
                 {MPOS_DUKPT_AES_KEY_AES128, 2, 128},  {MPOS_DUKPT_AES_KEY_AES192, 3, 192},
                 {MPOS_DUKPT_AES_KEY_AES256, 4, 256},  {MPOS_DUKPT_AES_KEY_HMAC128, 5, 128},
                 {MPOS_DUKPT_AES_KEY_HMAC192, 5, 192}, {MPOS_DUKPT_AES_KEY_HMAC256, 5, 256}};
    uint8_t bdk[32], ksn[12], dk[32], dd[16], expect[32], out[32];
    tu_hex(AES_BDK256, bdk, sizeof(bdk));
    tu_hex(AES_IKID "00A0C0E1", ksn, sizeof(ksn));
    assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, bdk, 32, ksn, dk), MPOS_OK);
    for (size_t u = 0; u < sizeof(usages) / sizeof(usages[0]); u++) {
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
            size_t len = types[k].bits / 8u;
            dd[0] = 0x01;
            mpos_store_be16(dd + 2, usages[u]);
            mpos_store_be16(dd + 4, types[k].algorithm);
            mpos_store_be16(dd + 6, types[k].bits);
            memcpy(dd + 8, ksn + 4, 8);
            for (uint8_t block = 1; block <= (len + 15) / 16; block++) {
                uint8_t b[16];
                dd[1] = block;
                assert_int_equal(mpos_aes_encrypt_block(&cc, dk, 32, dd, b), MPOS_OK);
                memcpy(expect + 16 * (block - 1), b, len - 16u * (block - 1u) < 16 ? 8 : 16);
            }
            assert_int_equal(mpos_dukpt_aes_key_len(types[k].type), len);
            assert_int_equal(mpos_dukpt_aes_working_key(&cc, bdk, 32, ksn,
                                                        (enum mpos_dukpt_aes_usage)usages[u],
                                                        types[k].type, out),
                             MPOS_OK);
            assert_memory_equal(out, expect, len);
        }
    }
}

/* ---- refusals ---------------------------------------------------------------------------- */

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static void expect_aes_working(const uint8_t *bdk, size_t bdk_len, const char *ksn_hex, int usage,
                               int type, int rc)
{
    uint8_t ksn[12], out[32];
    tu_hex(ksn_hex, ksn, sizeof(ksn));
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(mpos_dukpt_aes_working_key(&cc, bdk, bdk_len, ksn,
                                                (enum mpos_dukpt_aes_usage)usage,
                                                (enum mpos_dukpt_aes_key_type)type, out),
                     rc);
    size_t n = mpos_dukpt_aes_key_len((enum mpos_dukpt_aes_key_type)type);
    if (rc != MPOS_OK) {
        assert_true(all_zero(out, n)); /* no half key left for a caller that ignores rc */
    }
}

static void test_aes_refusals(void **state)
{
    (void)state;
    uint8_t bdk[33] = {0}, ksn[12], out[33];
    tu_hex(AES_BDK256, bdk, 32);
    tu_hex(AES_IKID "00000001", ksn, sizeof(ksn));
    static const size_t bad_len[] = {0, 8, 15, 17, 20, 31, 33};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        assert_int_equal(mpos_dukpt_aes_initial_key(&cc, bdk, bad_len[i], ksn, out), MPOS_ERR_KEY);
        assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, bdk, bad_len[i], ksn, out),
                         MPOS_ERR_KEY);
        expect_aes_working(bdk, bad_len[i], AES_IKID "00000001", PIN, A128, MPOS_ERR_KEY);
    }
    assert_int_equal(mpos_dukpt_aes_initial_key(NULL, bdk, 16, ksn, out), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, NULL, 16, ksn, out), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, bdk, 16, NULL, out), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_working_key(&cc, bdk, 16, ksn, PIN, A128, NULL), MPOS_ERR_ARG);

    /* Counter 0, more than 16 one-bits, FFFFFFFF for anything but the KEK. */
    static const char *const bad_counters[] = {"00000000", "0001FFFF", "FFFF0001", "FFFFFFFE",
                                               "FFFFFFFF", "7FFFFFFF", "AAAAAAAB"};
    for (size_t i = 0; i < sizeof(bad_counters) / sizeof(bad_counters[0]); i++) {
        char hex[25];
        snprintf(hex, sizeof(hex), "%s%s", AES_IKID, bad_counters[i]);
        tu_hex(hex, ksn, sizeof(ksn));
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, bdk, 32, ksn, out), MPOS_ERR_KSN);
        assert_true(all_zero(out, 32));
        expect_aes_working(bdk, 32, hex, PIN, A128, MPOS_ERR_KSN);
        expect_aes_working(bdk, 32, hex, MPOS_DUKPT_AES_USAGE_DATA_BOTH, A256, MPOS_ERR_KSN);
    }
    /* The last counter with 16 one-bits is fine; 16 one-bits anywhere are. */
    expect_aes_working(bdk, 32, AES_IKID "FFFF0000", PIN, A128, MPOS_OK);
    expect_aes_working(bdk, 32, AES_IKID "0000FFFF", PIN, A128, MPOS_OK);
    expect_aes_working(bdk, 32, AES_IKID "AAAAAAAA", PIN, A128, MPOS_OK);
    /* The KEK only at FFFFFFFF. */
    expect_aes_working(bdk, 32, AES_IKID "FFFFFFFF", KEK, A256, MPOS_OK);
    expect_aes_working(bdk, 32, AES_IKID "00000001", KEK, A128, MPOS_ERR_KSN);
    expect_aes_working(bdk, 32, AES_IKID "FFFF0000", KEK, A128, MPOS_ERR_KSN);
    expect_aes_working(bdk, 32, AES_IKID "00000000", KEK, A128, MPOS_ERR_KSN);
    /* Working keys longer than the BDK. */
    expect_aes_working(bdk, 16, AES_IKID "00000001", PIN, A256, MPOS_ERR_KEY);
    expect_aes_working(bdk, 16, AES_IKID "00000001", PIN, MPOS_DUKPT_AES_KEY_AES192, MPOS_ERR_KEY);
    expect_aes_working(bdk, 16, AES_IKID "00000001", PIN, MPOS_DUKPT_AES_KEY_3TDEA, MPOS_ERR_KEY);
    expect_aes_working(bdk, 16, AES_IKID "00000001", PIN, MPOS_DUKPT_AES_KEY_HMAC256, MPOS_ERR_KEY);
    expect_aes_working(bdk, 24, AES_IKID "00000001", PIN, A256, MPOS_ERR_KEY);
    expect_aes_working(bdk, 16, AES_IKID "FFFFFFFF", KEK, A256, MPOS_ERR_KEY);
    expect_aes_working(bdk, 16, AES_IKID "00000001", PIN, MPOS_DUKPT_AES_KEY_2TDEA, MPOS_OK);
    expect_aes_working(bdk, 24, AES_IKID "00000001", PIN, MPOS_DUKPT_AES_KEY_3TDEA, MPOS_OK);
    /* Unknown usages and types. */
    expect_aes_working(bdk, 32, AES_IKID "00000001", 0, A128, MPOS_ERR_ARG);
    expect_aes_working(bdk, 32, AES_IKID "00000001", 0x8000, A128, MPOS_ERR_ARG);
    expect_aes_working(bdk, 32, AES_IKID "00000001", 0x8001, A128, MPOS_ERR_ARG);
    expect_aes_working(bdk, 32, AES_IKID "00000001", 0x1001, A128, MPOS_ERR_ARG);
    expect_aes_working(bdk, 32, AES_IKID "00000001", PIN, 0, MPOS_ERR_ARG);
    expect_aes_working(bdk, 32, AES_IKID "00000001", PIN, 9, MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_key_len((enum mpos_dukpt_aes_key_type)0), 0);
    assert_int_equal(mpos_dukpt_aes_key_len((enum mpos_dukpt_aes_key_type)9), 0);
}

static void test_tdes_refusals(void **state)
{
    (void)state;
    uint8_t bdk[32] = {0}, ksn[10], out[16];
    tu_hex(TDES_BDK, bdk, 16);
    tu_hex(TDES_KSN "E00001", ksn, sizeof(ksn));
    static const size_t bad_len[] = {0, 8, 15, 17, 23, 25, 32};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(mpos_dukpt_tdes_ipek(&cc, bdk, bad_len[i], ksn, out), MPOS_ERR_KEY);
        assert_true(all_zero(out, 16));
        assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, bad_len[i], ksn, out),
                         MPOS_ERR_KEY);
    }
    assert_int_equal(mpos_dukpt_tdes_ipek(&cc, NULL, 16, ksn, out), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, 16, NULL, out), MPOS_ERR_ARG);
    /* Counter 0; more than 10 one-bits (the bits above the 21-bit counter do not count). */
    static const char *const bad_counters[] = {"E00000", "E007FF", "FFFFFF",
                                               "FFFC00", "F003FF", "E0FFE0"};
    for (size_t i = 0; i < sizeof(bad_counters) / sizeof(bad_counters[0]); i++) {
        char hex[21];
        snprintf(hex, sizeof(hex), "%s%s", TDES_KSN, bad_counters[i]);
        tu_hex(hex, ksn, sizeof(ksn));
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, 16, ksn, out), MPOS_ERR_KSN);
        assert_true(all_zero(out, 16));
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(
            mpos_dukpt_tdes_working_key(&cc, bdk, 16, ksn, MPOS_DUKPT_TDES_USAGE_PIN, out),
            MPOS_ERR_KSN);
        assert_true(all_zero(out, 16));
    }
    tu_hex(TDES_KSN "FFF800", ksn, sizeof(ksn)); /* the last counter, 1FF800: 10 one-bits */
    assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, 16, ksn, out), MPOS_OK);
    tu_hex(TDES_KSN "E003FF", ksn, sizeof(ksn));
    assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, 16, ksn, out), MPOS_OK);
    /* Unknown usages. */
    static const int bad_usage[] = {0, 6, -1, 0x1000};
    for (size_t i = 0; i < sizeof(bad_usage) / sizeof(bad_usage[0]); i++) {
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(mpos_dukpt_tdes_working_key(&cc, bdk, 16, ksn,
                                                     (enum mpos_dukpt_tdes_usage)bad_usage[i], out),
                         MPOS_ERR_ARG);
        assert_true(all_zero(out, 16));
    }
}

/* X9.24-1-2009 A.4 restated: the MAC variants are the transaction key XOR their constant; the
 * data variants then encrypt their own halves under themselves (TDES-ECB). */
static void test_tdes_variants(void **state)
{
    (void)state;
    static const struct {
        int usage;
        unsigned byte; /* the byte of each half the variant sets to FF */
        int one_way;
    } variants[] = {{MPOS_DUKPT_TDES_USAGE_PIN, 7, 0},
                    {MPOS_DUKPT_TDES_USAGE_MAC_REQ, 6, 0},
                    {MPOS_DUKPT_TDES_USAGE_MAC_RESP, 4, 0},
                    {MPOS_DUKPT_TDES_USAGE_DATA_REQ, 5, 1},
                    {MPOS_DUKPT_TDES_USAGE_DATA_RESP, 3, 1}};
    uint8_t bdk[16], ksn[10], txn[16], var[16], expect[16], out[16];
    tu_hex(TDES_BDK, bdk, sizeof(bdk));
    tu_hex(TDES_KSN "E00015", ksn, sizeof(ksn));
    assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, bdk, 16, ksn, txn), MPOS_OK);
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        memcpy(var, txn, 16);
        var[variants[i].byte] ^= 0xFF;
        var[8 + variants[i].byte] ^= 0xFF;
        if (variants[i].one_way) {
            assert_int_equal(mpos_cipher_ecb(&cc, MPOS_CIPHER_TDES, 1, var, 16, var, expect, 16),
                             MPOS_OK);
        } else {
            memcpy(expect, var, 16);
        }
        enum mpos_dukpt_tdes_usage u = (enum mpos_dukpt_tdes_usage)variants[i].usage;
        assert_int_equal(mpos_dukpt_tdes_working_key(&cc, bdk, 16, ksn, u, out), MPOS_OK);
        assert_memory_equal(out, expect, 16);
        memcpy(out, txn, 16); /* in place */
        assert_int_equal(mpos_dukpt_tdes_variant(&cc, out, u, out), MPOS_OK);
        assert_memory_equal(out, expect, 16);
    }
    /* A 3-key BDK: the mask on every part; a BDK K|K|K gives the IPEK of K|K. */
    uint8_t bdk3[24], a[16], b[16];
    memcpy(bdk3, bdk, 8);
    memcpy(bdk3 + 8, bdk + 8, 8);
    memcpy(bdk3 + 16, bdk, 8);
    assert_int_equal(mpos_dukpt_tdes_ipek(&cc, bdk3, 24, ksn, a), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_ipek(&cc, bdk, 16, ksn, b), MPOS_OK);
    assert_memory_equal(a, b, 16);
    bdk3[16] ^= 0x02; /* a true 3-key BDK differs */
    assert_int_equal(mpos_dukpt_tdes_ipek(&cc, bdk3, 24, ksn, a), MPOS_OK);
    assert_memory_not_equal(a, b, 16);
}

/* ---- terminal against host ----------------------------------------------------------- */

/* The counter a terminal uses after c: the next one with at most max_bits one-bits, 0 past
 * the end (written naively, independently of lib/dukpt). */
static uint32_t next_valid(uint32_t c, unsigned max_bits, uint64_t last)
{
    uint64_t n = (uint64_t)c + 1;
    while (n <= last && mpos_popcount32((uint32_t)n) > max_bits) {
        n++;
    }
    return n > last ? 0 : (uint32_t)n;
}

static uint32_t reg_counter(uint32_t next, unsigned p)
{
    uint64_t below = (UINT64_C(2) << p) - 1;
    return (uint32_t)((next & ~below) | (UINT64_C(1) << p));
}

/* Whether register p of a terminal whose next counter is `next` must hold a key. */
static int reg_live(uint32_t next, unsigned p)
{
    if (next == 0) {
        return 0;
    }
    unsigned low = 0;
    while (((next >> low) & 1u) == 0) {
        low++;
    }
    return p == low || (p > low && ((next >> p) & 1u) == 0);
}

struct aes_fixture {
    uint8_t bdk[32];
    size_t bdk_len;
    uint8_t ikid[8];
    uint8_t ik[32];
};

static void aes_fixture(struct aes_fixture *f, const char *bdk_hex)
{
    f->bdk_len = tu_hex(bdk_hex, f->bdk, sizeof(f->bdk));
    tu_hex(AES_IKID, f->ikid, sizeof(f->ikid));
    assert_int_equal(mpos_dukpt_aes_initial_key(&cc, f->bdk, f->bdk_len, f->ikid, f->ik), MPOS_OK);
}

static void aes_ksn(const struct aes_fixture *f, uint32_t counter, uint8_t ksn[12])
{
    memcpy(ksn, f->ikid, 8);
    mpos_store_be32(ksn + 8, counter);
}

/* Every register holds the host's derivation key of its counter, or is erased. */
static void aes_check_registers(const struct aes_fixture *f, const mpos_dukpt_aes_terminal *t)
{
    for (unsigned p = 0; p < MPOS_DUKPT_AES_REGISTERS; p++) {
        if (reg_live(t->next_counter, p)) {
            uint8_t ksn[12], key[32];
            aes_ksn(f, reg_counter(t->next_counter, p), ksn);
            assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, f->bdk, f->bdk_len, ksn, key),
                             MPOS_OK);
            assert_memory_equal(t->registers[p], key, f->bdk_len);
        } else {
            assert_true(all_zero(t->registers[p], sizeof(t->registers[p])));
        }
    }
}

/* One transaction: the terminal's KSN is `expect`, its key and a working key equal the host's,
 * the used register is erased. */
static void aes_step(const struct aes_fixture *f, mpos_dukpt_aes_terminal *t, uint32_t expect)
{
    uint8_t ksn[12], want[12], host[32], term[32];
    assert_int_equal(mpos_dukpt_aes_terminal_next(t, &cc, ksn), MPOS_OK);
    aes_ksn(f, expect, want);
    assert_memory_equal(ksn, want, 12);
    assert_int_equal(mpos_dukpt_aes_derivation_key(&cc, f->bdk, f->bdk_len, ksn, host), MPOS_OK);
    assert_memory_equal(t->current, host, f->bdk_len);
    assert_int_equal(mpos_dukpt_aes_working_key(&cc, f->bdk, f->bdk_len, ksn, PIN, A128, host),
                     MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(t, &cc, PIN, A128, term), MPOS_OK);
    assert_memory_equal(term, host, 16);
    unsigned low = 0;
    while (((expect >> low) & 1u) == 0) {
        low++;
    }
    assert_true(all_zero(t->registers[low], sizeof(t->registers[low])));
    assert_int_equal(t->next_counter, next_valid(expect, 16, 0xFFFFFFFFu));
}

static void test_aes_terminal_first_transactions(void **state)
{
    (void)state;
    static const char *const bdks[] = {
        AES_BDK128, "00112233445566778899AABBCCDDEEFF0011223344556677", AES_BDK256};
    mpos_dukpt_aes_terminal t;
    for (size_t b = 0; b < 3; b++) {
        struct aes_fixture f;
        aes_fixture(&f, bdks[b]);
        assert_int_equal(mpos_dukpt_aes_terminal_load(&t, &cc, f.ik, f.bdk_len, f.ikid), MPOS_OK);
        aes_check_registers(&f, &t);
        unsigned n = (b == 0 ? 10000u : 1000u) / tu_scale();
        uint32_t c = 1;
        for (unsigned i = 0; i < n; i++) {
            aes_step(&f, &t, c);
            if (i % 97 == 0) {
                aes_check_registers(&f, &t);
            }
            mpos_dukpt_aes_terminal_done(&t);
            assert_true(all_zero(t.current, sizeof(t.current)));
            c = next_valid(c, 16, 0xFFFFFFFFu);
        }
        mpos_dukpt_aes_terminal_clear(&t);
    }
}

/* Terminal at `first`, then `steps` transactions against the host, registers checked. Returns
 * the counter after them (0 when exhausted on the way, which is then checked). */
static uint32_t aes_run_from(const struct aes_fixture *f, uint32_t first, unsigned steps)
{
    mpos_dukpt_aes_terminal t;
    uint8_t ksn[12];
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, f->ik, f->bdk_len, f->ikid, first),
                     MPOS_OK);
    aes_check_registers(f, &t);
    uint32_t c = first;
    for (unsigned i = 0; i < steps && c != 0; i++) {
        aes_step(f, &t, c);
        aes_check_registers(f, &t);
        c = next_valid(c, 16, 0xFFFFFFFFu);
    }
    if (c == 0) {
        assert_int_equal(mpos_dukpt_aes_terminal_next(&t, &cc, ksn), MPOS_ERR_EXHAUSTED);
        assert_true(all_zero(ksn, sizeof(ksn)));
        assert_int_equal(mpos_dukpt_aes_terminal_next(&t, &cc, ksn), MPOS_ERR_EXHAUSTED);
        uint8_t key[16];
        assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, PIN, A128, key),
                         MPOS_ERR_ARG);
        for (unsigned p = 0; p < MPOS_DUKPT_AES_REGISTERS; p++) {
            assert_true(all_zero(t.registers[p], sizeof(t.registers[p])));
        }
    }
    mpos_dukpt_aes_terminal_clear(&t);
    return c;
}

static void test_aes_terminal_boundaries(void **state)
{
    (void)state;
    struct aes_fixture f;
    aes_fixture(&f, AES_BDK128);
    /* Each power of two and the counters just below and above it. */
    for (unsigned k = 0; k < 32; k++) {
        uint32_t p2 = (uint32_t)1 << k;
        uint32_t around[3] = {p2 - 1u, p2, p2 + 1u};
        for (int i = 0; i < 3; i++) {
            if (around[i] != 0 && mpos_popcount32(around[i]) <= 16) {
                aes_run_from(&f, around[i], 3);
            }
        }
    }
    /* Counters with 16 one-bits: the next transaction skips to a carry. */
    aes_run_from(&f, 0x0000FFFFu, 3);
    aes_run_from(&f, 0x7FFF8000u, 3);
    aes_run_from(&f, 0xAAAAAAAAu, 3);
    aes_run_from(&f, 0x0001FFFEu, 3); /* the published vectors 1FFFE, 20000, 20001 */
    /* The last valid counters: FFFE0000, FFFE0001, FFFE0002, FFFE0004 ... FFFE8000, FFFF0000,
     * then exhaustion. */
    assert_int_equal(aes_run_from(&f, 0xFFFE0000u, 100), 0);
    assert_int_equal(aes_run_from(&f, MPOS_DUKPT_AES_LAST_COUNTER, 100), 0);
    /* Other key sizes at the end of the space. */
    aes_fixture(&f, AES_BDK256);
    assert_int_equal(aes_run_from(&f, 0xFFFE8000u, 100), 0);
    aes_run_from(&f, 0x80000000u, 3);
}

struct tdes_fixture {
    uint8_t bdk[16];
    uint8_t iksn[10];
    uint8_t ipek[16];
};

static void tdes_fixture(struct tdes_fixture *f)
{
    tu_hex(TDES_BDK, f->bdk, sizeof(f->bdk));
    tu_hex(TDES_KSN "E00000", f->iksn, sizeof(f->iksn));
    assert_int_equal(mpos_dukpt_tdes_ipek(&cc, f->bdk, 16, f->iksn, f->ipek), MPOS_OK);
}

static void tdes_ksn(const struct tdes_fixture *f, uint32_t counter, uint8_t ksn[10])
{
    memcpy(ksn, f->iksn, 10);
    ksn[7] = (uint8_t)((ksn[7] & 0xE0) | (counter >> 16));
    ksn[8] = (uint8_t)(counter >> 8);
    ksn[9] = (uint8_t)counter;
}

static void tdes_check_registers(const struct tdes_fixture *f, const mpos_dukpt_tdes_terminal *t)
{
    for (unsigned p = 0; p < MPOS_DUKPT_TDES_REGISTERS; p++) {
        if (reg_live(t->next_counter, p)) {
            uint8_t ksn[10], key[16];
            tdes_ksn(f, reg_counter(t->next_counter, p), ksn);
            assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, f->bdk, 16, ksn, key), MPOS_OK);
            assert_memory_equal(t->registers[p], key, 16);
        } else {
            assert_true(all_zero(t->registers[p], 16));
        }
    }
}

static void tdes_step(const struct tdes_fixture *f, mpos_dukpt_tdes_terminal *t, uint32_t expect)
{
    uint8_t ksn[10], want[10], host[16], term[16];
    assert_int_equal(mpos_dukpt_tdes_terminal_next(t, &cc, ksn), MPOS_OK);
    tdes_ksn(f, expect, want);
    assert_memory_equal(ksn, want, 10);
    assert_int_equal(mpos_dukpt_tdes_transaction_key(&cc, f->bdk, 16, ksn, host), MPOS_OK);
    assert_memory_equal(t->current, host, 16);
    assert_int_equal(mpos_dukpt_tdes_variant(&cc, host, MPOS_DUKPT_TDES_USAGE_PIN, host), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_working_key(t, &cc, MPOS_DUKPT_TDES_USAGE_PIN, term),
                     MPOS_OK);
    assert_memory_equal(term, host, 16);
    unsigned low = 0;
    while (((expect >> low) & 1u) == 0) {
        low++;
    }
    assert_true(all_zero(t->registers[low], 16));
    assert_int_equal(t->next_counter, next_valid(expect, 10, MPOS_DUKPT_TDES_COUNTER_MASK));
}

static void test_tdes_terminal_first_transactions(void **state)
{
    (void)state;
    struct tdes_fixture f;
    mpos_dukpt_tdes_terminal t;
    tdes_fixture(&f);
    assert_int_equal(mpos_dukpt_tdes_terminal_load(&t, &cc, f.ipek, f.iksn), MPOS_OK);
    tdes_check_registers(&f, &t);
    unsigned n = 10000u / tu_scale();
    uint32_t c = 1;
    for (unsigned i = 0; i < n; i++) {
        tdes_step(&f, &t, c);
        if (i % 97 == 0) {
            tdes_check_registers(&f, &t);
        }
        mpos_dukpt_tdes_terminal_done(&t);
        c = next_valid(c, 10, MPOS_DUKPT_TDES_COUNTER_MASK);
    }
    if (n == 10000u) {
        assert_int_equal(c, 0x2770); /* 10,000 transactions skip the counters of 11+ bits */
    }
    mpos_dukpt_tdes_terminal_clear(&t);
}

static uint32_t tdes_run_from(const struct tdes_fixture *f, uint32_t first, unsigned steps)
{
    mpos_dukpt_tdes_terminal t;
    uint8_t ksn[10];
    assert_int_equal(mpos_dukpt_tdes_terminal_load_at(&t, &cc, f->ipek, f->iksn, first), MPOS_OK);
    tdes_check_registers(f, &t);
    uint32_t c = first;
    for (unsigned i = 0; i < steps && c != 0; i++) {
        tdes_step(f, &t, c);
        tdes_check_registers(f, &t);
        c = next_valid(c, 10, MPOS_DUKPT_TDES_COUNTER_MASK);
    }
    if (c == 0) {
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&t, &cc, ksn), MPOS_ERR_EXHAUSTED);
        assert_true(all_zero(ksn, sizeof(ksn)));
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&t, &cc, ksn), MPOS_ERR_EXHAUSTED);
        for (unsigned p = 0; p < MPOS_DUKPT_TDES_REGISTERS; p++) {
            assert_true(all_zero(t.registers[p], 16));
        }
    }
    mpos_dukpt_tdes_terminal_clear(&t);
    return c;
}

static void test_tdes_terminal_boundaries(void **state)
{
    (void)state;
    struct tdes_fixture f;
    tdes_fixture(&f);
    for (unsigned k = 0; k < 21; k++) {
        uint32_t p2 = (uint32_t)1 << k;
        uint32_t around[3] = {p2 - 1u, p2, p2 + 1u};
        for (int i = 0; i < 3; i++) {
            if (around[i] != 0 && mpos_popcount32(around[i]) <= 10) {
                tdes_run_from(&f, around[i], 3);
            }
        }
    }
    tdes_run_from(&f, 0x3FF, 3);     /* 10 one-bits: skips to 400 */
    tdes_run_from(&f, 0x0FF800, 40); /* the published EFF800 .. EFF900 region */
    /* The last counters: 1FF000, 1FF001, 1FF002, 1FF004 ... 1FF800, then exhaustion. */
    assert_int_equal(tdes_run_from(&f, 0x1FF000, 100), 0);
    assert_int_equal(tdes_run_from(&f, MPOS_DUKPT_TDES_LAST_COUNTER, 100), 0);
}

static void test_terminal_misuse(void **state)
{
    (void)state;
    struct aes_fixture f;
    mpos_dukpt_aes_terminal t;
    uint8_t ksn[12], key[32];
    aes_fixture(&f, AES_BDK128);
    memset(&t, 0, sizeof(t));
    assert_int_equal(mpos_dukpt_aes_terminal_next(&t, &cc, ksn), MPOS_ERR_ARG); /* not loaded */
    assert_int_equal(mpos_dukpt_aes_terminal_load(&t, &cc, f.ik, 15, f.ikid), MPOS_ERR_KEY);
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, f.ik, 16, f.ikid, 0), MPOS_ERR_KSN);
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, f.ik, 16, f.ikid, 0x0001FFFF),
                     MPOS_ERR_KSN);
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, f.ik, 16, f.ikid, 0xFFFFFFFF),
                     MPOS_ERR_KSN);
    assert_int_equal(t.key_len, 0); /* a failed load leaves nothing */
    assert_int_equal(mpos_dukpt_aes_terminal_load(&t, &cc, f.ik, 16, f.ikid), MPOS_OK);
    memset(key, 0xAA, sizeof(key));
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, PIN, A128, key), MPOS_ERR_ARG);
    assert_true(all_zero(key, 16)); /* no transaction yet */
    assert_int_equal(mpos_dukpt_aes_terminal_next(&t, &cc, ksn), MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, KEK, A128, key), MPOS_ERR_KSN);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, PIN, A256, key), MPOS_ERR_KEY);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, PIN, 0, key), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, 0x4000, A128, key), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, MPOS_DUKPT_AES_USAGE_MAC_BOTH,
                                                         MPOS_DUKPT_AES_KEY_HMAC128, key),
                     MPOS_OK);
    mpos_dukpt_aes_terminal_done(&t);
    assert_int_equal(mpos_dukpt_aes_terminal_working_key(&t, &cc, PIN, A128, key), MPOS_ERR_ARG);
    mpos_dukpt_aes_terminal_clear(&t);

    struct tdes_fixture g;
    mpos_dukpt_tdes_terminal u;
    uint8_t tksn[10];
    tdes_fixture(&g);
    memset(&u, 0, sizeof(u));
    assert_int_equal(mpos_dukpt_tdes_terminal_next(&u, &cc, tksn), MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_tdes_terminal_load_at(&u, &cc, g.ipek, g.iksn, 0), MPOS_ERR_KSN);
    assert_int_equal(mpos_dukpt_tdes_terminal_load_at(&u, &cc, g.ipek, g.iksn, 0x7FF),
                     MPOS_ERR_KSN);
    assert_int_equal(mpos_dukpt_tdes_terminal_load_at(&u, &cc, g.ipek, g.iksn, 0x200000),
                     MPOS_ERR_KSN);
    /* The counter bits of the KSN given at load are ignored. */
    uint8_t iksn[10];
    memcpy(iksn, g.iksn, 10);
    iksn[9] = 0x15;
    assert_int_equal(mpos_dukpt_tdes_terminal_load(&u, &cc, g.ipek, iksn), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_working_key(&u, &cc, MPOS_DUKPT_TDES_USAGE_PIN, key),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_dukpt_tdes_terminal_next(&u, &cc, tksn), MPOS_OK);
    tdes_ksn(&g, 1, iksn);
    assert_memory_equal(tksn, iksn, 10);
    assert_int_equal(
        mpos_dukpt_tdes_terminal_working_key(&u, &cc, (enum mpos_dukpt_tdes_usage)9, key),
        MPOS_ERR_ARG);
    mpos_dukpt_tdes_terminal_clear(&u);
}

/* ---- state export / import ------------------------------------------------------------ */

/* CRC-32 as zlib computes it, to reseal states altered on purpose. */
static uint32_t crc32_ref(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
    }
    return ~crc;
}

static void reseal(uint8_t *state, size_t len)
{
    mpos_store_be32(state + len - 4, crc32_ref(state, len - 4));
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_aes_state_roundtrip(void **state)
{
    (void)state;
    struct aes_fixture f;
    mpos_dukpt_aes_terminal a, b;
    uint8_t st[MPOS_DUKPT_AES_STATE_LEN], ksn_a[12], ksn_b[12], ka[32], kb[32];
    aes_fixture(&f, "00112233445566778899AABBCCDDEEFF0011223344556677");
    assert_int_equal(mpos_dukpt_aes_terminal_load(&a, &cc, f.ik, f.bdk_len, f.ikid), MPOS_OK);
    for (unsigned i = 0; i < 300; i++) {
        assert_int_equal(mpos_dukpt_aes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
        /* Persisted after next(): it never holds the key of this (or an earlier) transaction. */
        assert_int_equal(mpos_dukpt_aes_terminal_export(&a, st), MPOS_OK);
        assert_false(contains(st, sizeof(st), a.current, f.bdk_len));
        assert_int_equal(mpos_dukpt_aes_terminal_import(&b, st, sizeof(st)), MPOS_OK);
        assert_int_equal(b.counter, 0); /* no transaction open after a restart */
        assert_int_equal(mpos_dukpt_aes_terminal_working_key(&b, &cc, PIN, A128, kb), MPOS_ERR_ARG);
        /* Both continue with the same next counter and keys. */
        mpos_dukpt_aes_terminal_done(&a);
        assert_int_equal(mpos_dukpt_aes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
        assert_int_equal(mpos_dukpt_aes_terminal_next(&b, &cc, ksn_b), MPOS_OK);
        assert_memory_equal(ksn_a, ksn_b, 12);
        assert_int_equal(mpos_dukpt_aes_terminal_working_key(&a, &cc, DATA, A128, ka), MPOS_OK);
        assert_int_equal(mpos_dukpt_aes_terminal_working_key(&b, &cc, DATA, A128, kb), MPOS_OK);
        assert_memory_equal(ka, kb, 16);
        mpos_dukpt_aes_terminal_clear(&b);
    }
    /* An exhausted terminal stays exhausted across export and import. */
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&a, &cc, f.ik, f.bdk_len, f.ikid,
                                                     MPOS_DUKPT_AES_LAST_COUNTER),
                     MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_export(&a, st), MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_import(&b, st, sizeof(st)), MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_next(&b, &cc, ksn_b), MPOS_ERR_EXHAUSTED);
    mpos_dukpt_aes_terminal_clear(&a);
    mpos_dukpt_aes_terminal_clear(&b);
    assert_int_equal(mpos_dukpt_aes_terminal_export(&a, st), MPOS_ERR_ARG); /* nothing loaded */
}

static void expect_aes_import_fails(const uint8_t *st, size_t len)
{
    mpos_dukpt_aes_terminal t;
    memset(&t, 0x55, sizeof(t));
    assert_int_equal(mpos_dukpt_aes_terminal_import(&t, st, len), MPOS_ERR_FORMAT);
    assert_int_equal(t.key_len, 0); /* cleared */
    assert_true(all_zero(t.registers[0], sizeof(t.registers)));
}

static void test_aes_state_corruption(void **state)
{
    (void)state;
    struct aes_fixture f;
    mpos_dukpt_aes_terminal t;
    uint8_t good[MPOS_DUKPT_AES_STATE_LEN + 1], st[MPOS_DUKPT_AES_STATE_LEN + 1];
    const size_t len = MPOS_DUKPT_AES_STATE_LEN;
    aes_fixture(&f, AES_BDK128);
    /* Next counter 00012340: registers 6, 7, 10, 11, 13-15, 17-31 hold keys. */
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, f.ik, 16, f.ikid, 0x00012340),
                     MPOS_OK);
    assert_int_equal(mpos_dukpt_aes_terminal_export(&t, good), MPOS_OK);
    mpos_dukpt_aes_terminal_clear(&t);
    /* The test's CRC agrees with the library's: a resealed copy imports. */
    memcpy(st, good, len);
    reseal(st, len);
    assert_memory_equal(st, good, len);
    assert_int_equal(mpos_dukpt_aes_terminal_import(&t, st, len), MPOS_OK);
    /* Any flipped bit is caught. */
    for (size_t i = 0; i < len; i++) {
        memcpy(st, good, len);
        st[i] ^= (uint8_t)(1u << (i % 8));
        expect_aes_import_fails(st, len);
    }
    expect_aes_import_fails(good, len - 1);
    expect_aes_import_fails(good, len + 1);
    expect_aes_import_fails(good, 0);
    /* Well sealed but impossible states. */
    static const struct {
        size_t at;
        uint8_t value;
    } edits[] = {
        {0, 'X'},                 /* magic */
        {3, 0x02},                /* version */
        {4, 20},                  /* key length AES does not take */
        {4, 24},                  /* key length the registers do not have */
        {4, 32},                  /* key length the registers do not have */
        {5, 1},                   /* reserved */
        {20 + 32 * 0, 0x01},      /* register 0: below the next counter's lowest bit */
        {20 + 32 * 8 + 5, 0x01},  /* register 8: bit 8 of the next counter is set */
        {20 + 32 * 6 + 16, 0x01}, /* register 6: padding beyond the 16-byte key */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(st, good, len);
        st[edits[i].at] = edits[i].value;
        reseal(st, len);
        expect_aes_import_fails(st, len);
    }
    /* Next counters no terminal has, or whose registers differ: FFFF2340 (20 one-bits),
     * 0 (exhausted, but keys left), 00012342 (register 1 would hold a key), 00012380. */
    static const uint32_t counters[] = {0xFFFF2340u, 0, 0x00012342u, 0x00012380u};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        memcpy(st, good, len);
        mpos_store_be32(st + 16, counters[i]);
        reseal(st, len);
        expect_aes_import_fails(st, len);
    }
    /* A live register erased. */
    memcpy(st, good, len);
    memset(st + 20 + 32 * 31, 0, 32);
    reseal(st, len);
    expect_aes_import_fails(st, len);
    mpos_dukpt_aes_terminal_clear(&t);
}

static void expect_tdes_import_fails(const uint8_t *st, size_t len)
{
    mpos_dukpt_tdes_terminal t;
    memset(&t, 0x55, sizeof(t));
    assert_int_equal(mpos_dukpt_tdes_terminal_import(&t, st, len), MPOS_ERR_FORMAT);
    assert_int_equal(t.loaded, 0); /* cleared */
    assert_true(all_zero(t.registers[0], sizeof(t.registers)));
}

static void test_tdes_state(void **state)
{
    (void)state;
    struct tdes_fixture f;
    mpos_dukpt_tdes_terminal a, b;
    uint8_t st[MPOS_DUKPT_TDES_STATE_LEN + 1], good[MPOS_DUKPT_TDES_STATE_LEN + 1];
    uint8_t ksn_a[10], ksn_b[10], ka[16], kb[16];
    const size_t len = MPOS_DUKPT_TDES_STATE_LEN;
    tdes_fixture(&f);
    assert_int_equal(mpos_dukpt_tdes_terminal_load(&a, &cc, f.ipek, f.iksn), MPOS_OK);
    for (unsigned i = 0; i < 200; i++) {
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
        /* Persisted after next(): it never holds the key of this (or an earlier) transaction. */
        assert_int_equal(mpos_dukpt_tdes_terminal_export(&a, st), MPOS_OK);
        assert_false(contains(st, len, a.current, 16));
        assert_false(contains(st, len, f.ipek, 16));
        assert_int_equal(mpos_dukpt_tdes_terminal_import(&b, st, len), MPOS_OK);
        assert_int_equal(b.counter, 0);
        mpos_dukpt_tdes_terminal_done(&a);
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
        assert_int_equal(mpos_dukpt_tdes_terminal_next(&b, &cc, ksn_b), MPOS_OK);
        assert_memory_equal(ksn_a, ksn_b, 10);
        assert_int_equal(
            mpos_dukpt_tdes_terminal_working_key(&a, &cc, MPOS_DUKPT_TDES_USAGE_DATA_REQ, ka),
            MPOS_OK);
        assert_int_equal(
            mpos_dukpt_tdes_terminal_working_key(&b, &cc, MPOS_DUKPT_TDES_USAGE_DATA_REQ, kb),
            MPOS_OK);
        assert_memory_equal(ka, kb, 16);
    }
    /* Exhausted across export and import. */
    assert_int_equal(
        mpos_dukpt_tdes_terminal_load_at(&a, &cc, f.ipek, f.iksn, MPOS_DUKPT_TDES_LAST_COUNTER),
        MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_next(&a, &cc, ksn_a), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_export(&a, st), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_import(&b, st, len), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_next(&b, &cc, ksn_b), MPOS_ERR_EXHAUSTED);

    /* Next counter 001234: registers 2, 3, 6-8, 10, 11, 13-20 hold keys. */
    assert_int_equal(mpos_dukpt_tdes_terminal_load_at(&a, &cc, f.ipek, f.iksn, 0x1234), MPOS_OK);
    assert_int_equal(mpos_dukpt_tdes_terminal_export(&a, good), MPOS_OK);
    memcpy(st, good, len);
    reseal(st, len);
    assert_memory_equal(st, good, len);
    for (size_t i = 0; i < len; i++) {
        memcpy(st, good, len);
        st[i] ^= (uint8_t)(0x80u >> (i % 8));
        expect_tdes_import_fails(st, len);
    }
    expect_tdes_import_fails(good, len - 1);
    expect_tdes_import_fails(good, len + 1);
    static const struct {
        size_t at;
        uint8_t value;
    } edits[] = {
        {1, 'X'},                 /* magic */
        {4, 1},                   /* reserved */
        {8 + 9, 0x01},            /* initial KSN with counter bits */
        {8 + 7, 0xE1},            /* initial KSN with counter bits (the top five) */
        {18, 1},                  /* reserved */
        {24 + 16 * 0, 0x01},      /* register 0: below the next counter's lowest bit */
        {24 + 16 * 9 + 15, 0x01}, /* register 9: bit 9 of the next counter is set */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(st, good, len);
        st[edits[i].at] = edits[i].value;
        reseal(st, len);
        expect_tdes_import_fails(st, len);
    }
    /* Beyond 21 bits; 11 one-bits; 0 with keys left; registers of another counter. */
    static const uint32_t counters[] = {0x201234u, 0x0017FFu, 0, 0x1236u, 0x1238u};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        memcpy(st, good, len);
        mpos_store_be32(st + 20, counters[i]);
        reseal(st, len);
        expect_tdes_import_fails(st, len);
    }
    memcpy(st, good, len);
    memset(st + 24 + 16 * 20, 0, 16); /* a live register erased */
    reseal(st, len);
    expect_tdes_import_fails(st, len);
    mpos_dukpt_tdes_terminal_clear(&a);
    mpos_dukpt_tdes_terminal_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes_published),
        cmocka_unit_test(test_tdes_published),
        cmocka_unit_test(test_published_file),
        cmocka_unit_test(test_aes_working_key_layout),
        cmocka_unit_test(test_aes_refusals),
        cmocka_unit_test(test_tdes_refusals),
        cmocka_unit_test(test_tdes_variants),
        cmocka_unit_test(test_aes_terminal_first_transactions),
        cmocka_unit_test(test_aes_terminal_boundaries),
        cmocka_unit_test(test_tdes_terminal_first_transactions),
        cmocka_unit_test(test_tdes_terminal_boundaries),
        cmocka_unit_test(test_terminal_misuse),
        cmocka_unit_test(test_aes_state_roundtrip),
        cmocka_unit_test(test_aes_state_corruption),
        cmocka_unit_test(test_tdes_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
