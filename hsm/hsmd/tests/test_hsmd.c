/* mpos-hsmd through its sockets: every command family, the published DUKPT vectors, refusals
 * of bad frames while other clients go on, allow-lists, idle timeout, 50 concurrent clients,
 * the hardening as /proc shows it, a clean stop, and an audit log free of secrets.
 * The daemon is started on sockets in a temporary directory and stopped by pid. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "harness.h"
#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/mac.h"
#include "mpos/pin.h"
#include "mpos/util.h"
#include "mpos/emv.h"
#include "mpos/kcv.h"
#include "mpos/provision.h"
#include "mpos/ecc.h"
#include "mpos/tlv.h"
#include "sealed_testkit.h"
#include "txn/sealed.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#ifndef HSMD_PATH
#error "HSMD_PATH: path of the mpos-hsmd executable"
#endif

#define IDLE_TIMEOUT_S 2
#define N_CLIENTS      50

/* ANSI X9.24-3-2017 supplement test vectors (AES DUKPT) and X9.24-1-2009 A.4 (TDES DUKPT),
 * as listed in tests/vectors/published.tsv. */
#define AES_BDK         "FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define AES_KSN1        "123456789012345600000001"
#define AES_PIN_BLOCK1  "A912150391AB65A67E52883D81CE2D15" /* PIN 1234 under the usage 1000 key */
#define AES_MAC_KEY1    "A2DC23DE6FDE0824A2BC321E08E4B8B7" /* usage 2000 key of KSN ..0001 */
#define AES_PAN         "4111111111111111"
#define TDES_BDK        "0123456789ABCDEFFEDCBA9876543210"
#define TDES_KSN1       "FFFF9876543210E00001"
#define TDES_TXN_KEY1   "042666B49184CFA368DE9628D0397BC9" /* transaction key of KSN ..E00001 */
#define TDES_PIN_BLOCK1 "1B9C1845EB993A7A"                 /* PIN 1234, format 0 */
#define TDES_PAN        "4012345678909"
/* Zone PIN keys of the test (values the test knows, to decrypt what hsmd returns). */
#define ZPK_AES  "00112233445566778899AABBCCDDEEFF"
#define ZPK_TDES "0123456789ABCDEF0123456789ABCDEF"
/* Different halves: a TDES key with K1 == K2 is single DES, which the crypto refuses. */
#undef ZPK_TDES
#define ZPK_TDES "89ABCDEF0123456776543210FEDCBA98"

/* sealed.open / sealed.respond: the card of the sealed requests (stripe, service code 201: a
 * chip card), the zone encryption key for track 2 and the parameter-signing key (P-256 scalar
 * of RFC 6979 A.2.5). */
#define SEALED_PAN     "4111111111111111"
#define SEALED_EXPIRY  "3012"
#define SEALED_TRACK2  "4111111111111111D301220112345F"
#define SEALED_PIN     "1234"
#define ZEK_TDES       "FEDCBA98765432100123456789ABCDEF"
#define PARAMS_KEY_HEX "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721"

static struct hsmd_harness H;
static char bdk_aes_kb[HSM_KEYBLOCK_MAX_LEN + 1], bdk_tdes_kb[HSM_KEYBLOCK_MAX_LEN + 1];
static char zpk_aes_kb[HSM_KEYBLOCK_MAX_LEN + 1], zpk_tdes_kb[HSM_KEYBLOCK_MAX_LEN + 1];
static mpos_crypto_ctx cc;

static char zek_kb[HSM_KEYBLOCK_MAX_LEN + 1], params_kb[HSM_KEYBLOCK_MAX_LEN + 1];

static int group_setup(void **state)
{
    static const char *const extra[] = {"--idle-timeout", "2", "--workers", "2", NULL};
    (void)state;
    if (harness_init(&H) != 0 || mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    if (harness_key_block(&H, "B0", 'A', 'X', 'N', 1, AES_BDK, bdk_aes_kb, sizeof(bdk_aes_kb)) ||
        harness_key_block(&H, "B0", 'T', 'X', 'N', 2, TDES_BDK, bdk_tdes_kb, sizeof(bdk_tdes_kb)) ||
        harness_key_block(&H, "P0", 'A', 'B', 'N', 0, ZPK_AES, zpk_aes_kb, sizeof(zpk_aes_kb)) ||
        harness_key_block(&H, "P0", 'T', 'B', 'N', 0, ZPK_TDES, zpk_tdes_kb, sizeof(zpk_tdes_kb)) ||
        harness_key_block(&H, "D0", 'T', 'B', 'N', 0, ZEK_TDES, zek_kb, sizeof(zek_kb)) ||
        harness_key_block(&H, "S0", 'E', 'S', 'N', 0, PARAMS_KEY_HEX, params_kb,
                          sizeof(params_kb))) {
        fprintf(stderr, "cannot make the test key blocks\n");
        return -1;
    }
    return harness_start(&H, HSMD_PATH, extra);
}

static int group_teardown(void **state)
{
    (void)state;
    harness_cleanup(&H);
    mpos_crypto_clear(&cc);
    return 0;
}

static void open_role(hsm_client *c, int role)
{
    assert_int_equal(hsm_client_open(c, H.sock[role], 5000), 0);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void test_status_every_role(void **state)
{
    static const char *const names[] = {"backend", "tools", "switch"};
    (void)state;
    for (int r = 0; r < HARNESS_ROLES; r++) {
        hsm_client c;
        struct hsm_client_status st;
        open_role(&c, r);
        assert_int_equal(hsm_client_status(&c, &st), 0);
        assert_string_equal(st.role, names[r]);
        assert_memory_equal(st.lmk_kcv, H.lmk_kcv, HSM_KCV_LEN);
        assert_int_equal(st.workers, 2);
        assert_non_null(strstr(st.version, "openmpos"));
        hsm_client_close(&c);
    }
}

static void test_random(void **state)
{
    hsm_client c;
    uint8_t a[32], b[32], big[HSM_RANDOM_MAX_LEN];
    hsm_writer w;
    (void)state;
    open_role(&c, HARNESS_BACKEND);
    assert_int_equal(hsm_client_random(&c, a, sizeof(a)), 0);
    assert_int_equal(hsm_client_random(&c, b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(hsm_client_random(&c, big, sizeof(big)), 0);
    /* 0 and 257 bytes: well-formed fields the operation refuses. */
    hsm_client_begin(&c, HSM_CMD_RANDOM, &w);
    hsm_put_u16(&w, HSM_TAG_COUNT, 0);
    assert_int_equal(hsm_client_exchange(&c, &w), HSM_STATUS_INPUT);
    hsm_client_begin(&c, HSM_CMD_RANDOM, &w);
    hsm_put_u16(&w, HSM_TAG_COUNT, 257);
    assert_int_equal(hsm_client_exchange(&c, &w), HSM_STATUS_INPUT);
    assert_int_equal(hsm_client_random(&c, a, 16), 0); /* connection still serves */
    hsm_client_close(&c);
}

static void test_generate(void **state)
{
    hsm_client c;
    struct hsm_generate_key_req req;
    struct hsm_generate_key_resp resp;
    struct hsm_generate_bdk_req breq = {'A', 16, 'N'};
    (void)state;
    memset(&req, 0, sizeof(req));
    memcpy(req.attr.usage, "P0", 3);
    req.attr.algorithm = 'A';
    req.attr.mode = 'B';
    req.attr.exportability = 'E';
    req.key_len = 16;
    open_role(&c, HARNESS_TOOLS);
    assert_int_equal(hsm_client_generate_key(&c, &req, &resp), 0);
    assert_int_equal(resp.key.text[0], 'D');
    assert_int_equal(resp.kcv_len, 5);
    assert_int_equal(hsm_client_generate_bdk(&c, &breq, &resp), 0);
    assert_int_equal(resp.kcv_len, 5);
    assert_memory_equal(resp.key.text + 5, "B0AX", 4);
    /* An AES key of 20 bytes does not exist. */
    req.key_len = 20;
    assert_int_equal(hsm_client_generate_key(&c, &req, &resp), HSM_STATUS_KEY);
    hsm_client_close(&c);
}

/* Translates the published DUKPT PIN block to a ZPK and decrypts the result in-process. */
static void translate_and_check(hsm_client *c, const char *bdk_kb, const char *ksn_hex,
                                size_t ksn_len, const char *block_hex, size_t block_len,
                                const char *pan, const char *zpk_kb, const char *zpk_hex,
                                enum mpos_pin_format fmt, enum mpos_cipher cipher)
{
    struct hsm_pin_translate_req req;
    struct hsm_pin_block_resp resp;
    uint8_t zpk[16];
    char pin[MPOS_PIN_BUF_LEN];
    memset(&req, 0, sizeof(req));
    req.source = HSM_PIN_FROM_DUKPT;
    req.dukpt.bdk.text = bdk_kb;
    req.dukpt.bdk.len = strlen(bdk_kb);
    harness_hex(ksn_hex, req.dukpt.ksn, ksn_len);
    req.dukpt.ksn_len = ksn_len;
    harness_hex(block_hex, req.pin_block, block_len);
    req.pin_block_len = block_len;
    strcpy(req.pan, pan);
    req.zpk.text = zpk_kb;
    req.zpk.len = strlen(zpk_kb);
    req.dst_format = fmt;
    assert_int_equal(hsm_client_pin_translate(c, &req, &resp), 0);
    assert_int_equal(resp.pin_block_len, mpos_pin_block_len(fmt));
    harness_hex(zpk_hex, zpk, sizeof(zpk));
    assert_int_equal(mpos_pin_block_decrypt(&cc, fmt, cipher, zpk, sizeof(zpk), resp.pin_block,
                                            resp.pin_block_len, pan, pin),
                     0);
    assert_string_equal(pin, "1234");
    /* A flipped bit in the PIN block: refused (the decoded block is not well formed), or
     * translated to another PIN; never the same PIN. */
    req.pin_block[0] ^= 0x01;
    int rc = hsm_client_pin_translate(c, &req, &resp);
    if (rc == 0) {
        assert_int_equal(mpos_pin_block_decrypt(&cc, fmt, cipher, zpk, sizeof(zpk), resp.pin_block,
                                                resp.pin_block_len, pan, pin) == 0 &&
                             strcmp(pin, "1234") == 0,
                         0);
    } else {
        assert_int_equal(rc, HSM_STATUS_INPUT);
    }
    MPOS_WIPE_BUFFER(pin);
}

static void test_pin_translate_published(void **state)
{
    hsm_client c;
    (void)state;
    open_role(&c, HARNESS_BACKEND);
    /* AES DUKPT format 4 -> AES ZPK format 4. */
    translate_and_check(&c, bdk_aes_kb, AES_KSN1, 12, AES_PIN_BLOCK1, 16, AES_PAN, zpk_aes_kb,
                        ZPK_AES, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES);
    /* TDES DUKPT format 0 -> TDES ZPK format 0. */
    translate_and_check(&c, bdk_tdes_kb, TDES_KSN1, 10, TDES_PIN_BLOCK1, 8, TDES_PAN, zpk_tdes_kb,
                        ZPK_TDES, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES);
    hsm_client_close(&c);
}

static void test_pin_translate_wrong_key(void **state)
{
    hsm_client c;
    struct hsm_pin_translate_req req;
    struct hsm_pin_block_resp resp;
    char tampered[HSM_KEYBLOCK_MAX_LEN + 1];
    (void)state;
    memset(&req, 0, sizeof(req));
    req.source = HSM_PIN_FROM_DUKPT;
    req.dukpt.bdk.text = zpk_aes_kb; /* a PIN key is not a BDK */
    req.dukpt.bdk.len = strlen(zpk_aes_kb);
    harness_hex(AES_KSN1, req.dukpt.ksn, 12);
    req.dukpt.ksn_len = 12;
    harness_hex(AES_PIN_BLOCK1, req.pin_block, 16);
    req.pin_block_len = 16;
    strcpy(req.pan, AES_PAN);
    req.zpk.text = zpk_aes_kb;
    req.zpk.len = strlen(zpk_aes_kb);
    req.dst_format = MPOS_PIN_FORMAT_4;
    open_role(&c, HARNESS_BACKEND);
    assert_int_equal(hsm_client_pin_translate(&c, &req, &resp), HSM_STATUS_USAGE);
    /* A tampered BDK block does not verify under the LMK. */
    strcpy(tampered, bdk_aes_kb);
    size_t n = strlen(tampered);
    tampered[n - 1] = tampered[n - 1] == '0' ? '1' : '0';
    req.dukpt.bdk.text = tampered;
    req.dukpt.bdk.len = n;
    assert_int_equal(hsm_client_pin_translate(&c, &req, &resp), HSM_STATUS_VERIFY);
    hsm_client_close(&c);
}

static void test_dukpt_mac_verify_published(void **state)
{
    hsm_client c;
    struct hsm_dukpt_mac_verify_req req;
    static const uint8_t data[] = "0200 authorisation request: amount 000000012345";
    uint8_t key[16], mac[16], txn[16], mac_key[16];
    (void)state;
    open_role(&c, HARNESS_BACKEND);
    /* AES DUKPT: CMAC under the published usage 2000 key of KSN ..0001. */
    harness_hex(AES_MAC_KEY1, key, sizeof(key));
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, key, sizeof(key), data, sizeof(data), mac), 0);
    memset(&req, 0, sizeof(req));
    req.dukpt.bdk.text = bdk_aes_kb;
    req.dukpt.bdk.len = strlen(bdk_aes_kb);
    harness_hex(AES_KSN1, req.dukpt.ksn, 12);
    req.dukpt.ksn_len = 12;
    req.data = data;
    req.data_len = sizeof(data);
    memcpy(req.mac, mac, 16);
    req.mac_len = 16;
    assert_int_equal(hsm_client_dukpt_mac_verify(&c, &req), 0);
    req.mac_len = 8; /* truncated MACs verify on their leftmost bytes */
    assert_int_equal(hsm_client_dukpt_mac_verify(&c, &req), 0);
    req.mac[3] ^= 0x80;
    assert_int_equal(hsm_client_dukpt_mac_verify(&c, &req), HSM_STATUS_VERIFY);
    /* TDES DUKPT: X9.19 under the MAC-request variant of the published transaction key. */
    harness_hex(TDES_TXN_KEY1, txn, sizeof(txn));
    assert_int_equal(mpos_dukpt_tdes_variant(&cc, txn, MPOS_DUKPT_TDES_USAGE_MAC_REQ, mac_key), 0);
    assert_int_equal(mpos_mac_iso9797_alg3(&cc, mac_key, sizeof(mac_key), MPOS_MAC_PAD_1, data,
                                           sizeof(data), mac),
                     0);
    req.dukpt.bdk.text = bdk_tdes_kb;
    req.dukpt.bdk.len = strlen(bdk_tdes_kb);
    harness_hex(TDES_KSN1, req.dukpt.ksn, 10);
    req.dukpt.ksn_len = 10;
    memcpy(req.mac, mac, 8);
    req.mac_len = 8;
    assert_int_equal(hsm_client_dukpt_mac_verify(&c, &req), 0);
    req.mac[7] ^= 0x01;
    assert_int_equal(hsm_client_dukpt_mac_verify(&c, &req), HSM_STATUS_VERIFY);
    hsm_client_close(&c);
}

/* ---- the other commands, one successful call each (and a refusal where it says more) ---- */

static struct hsm_kb_in kbin(const char *text)
{
    struct hsm_kb_in k = {text, strlen(text)};
    return k;
}

static char kb_buf[16][HSM_KEYBLOCK_MAX_LEN + 1];
static unsigned kb_next;

/* A key block under the test LMK, kept for the rest of the run. */
static const char *make_kb(const char *usage, char alg, char mode, char exp, const char *hex)
{
    char *out = kb_buf[kb_next++ % 16];
    assert_int_equal(harness_key_block(&H, usage, alg, mode, exp, 0, hex, out, sizeof(kb_buf[0])),
                     0);
    return out;
}

static void test_key_management_commands(void **state)
{
    hsm_client t;
    (void)state;
    open_role(&t, HARNESS_TOOLS);
    /* export under a KEK, import back: same check value */
    const char *kek = make_kb("K0", 'A', 'B', 'N',
                              "000102030405060708090A0B0C0D0E0F"
                              "101112131415161718191A1B1C1D1E1F");
    const char *key = make_kb("P0", 'A', 'B', 'E', ZPK_AES);
    struct hsm_export_key_req ereq = {kbin(kek), kbin(key), 'N'};
    struct hsm_export_key_resp eresp;
    assert_int_equal(hsm_client_export_key(&t, &ereq, &eresp), 0);
    assert_int_equal(eresp.block.text[0], 'D');
    struct hsm_import_key_req ireq;
    struct hsm_import_key_resp iresp;
    memset(&ireq, 0, sizeof(ireq));
    ireq.kek = kbin(kek);
    ireq.block.text = eresp.block.text;
    ireq.block.len = eresp.block.len;
    memcpy(ireq.expected_kcv, eresp.kcv, eresp.kcv_len);
    ireq.expected_kcv_len = eresp.kcv_len;
    assert_int_equal(hsm_client_import_key(&t, &ireq, &iresp), 0);
    assert_string_equal(iresp.attr.usage, "P0");
    assert_int_equal(iresp.attr.algorithm, 'A');
    assert_memory_equal(iresp.kcv, eresp.kcv, eresp.kcv_len);
    ireq.expected_kcv[0] ^= 1;
    assert_int_equal(hsm_client_import_key(&t, &ireq, &iresp), HSM_STATUS_VERIFY);
    /* a non-exportable key stays inside */
    ereq.key = kbin(zpk_aes_kb);
    assert_int_equal(hsm_client_export_key(&t, &ereq, &eresp), HSM_STATUS_USAGE);

    /* terminal initial key under a transport key */
    const char *tk = make_kb("K1", 'A', 'E', 'N',
                             "F0E1D2C3B4A5968778695A4B3C2D1E0F"
                             "0F1E2D3C4B5A69788796A5B4C3D2E1F0");
    struct hsm_dukpt_initial_key_req dreq;
    struct hsm_dukpt_initial_key_resp dresp;
    memset(&dreq, 0, sizeof(dreq));
    dreq.bdk = kbin(bdk_aes_kb);
    harness_hex("1234567890123456", dreq.id, 8);
    dreq.id_len = 8;
    dreq.transport_key = kbin(tk);
    assert_int_equal(hsm_client_dukpt_initial_key(&t, &dreq, &dresp), 0);
    /* check value of the published initial key 1273671EA26AC29AFA4D1084127652A1 */
    uint8_t ik[16], kcv[5];
    harness_hex("1273671EA26AC29AFA4D1084127652A1", ik, sizeof(ik));
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, ik, 16, (const uint8_t[16]){0}, 16, ik), 0);
    memcpy(kcv, ik, 5);
    assert_int_equal(dresp.kcv_len, 5);
    assert_memory_equal(dresp.kcv, kcv, 5);

    /* UnionPay sign-on working keys under a TMK */
    const char *tmk = make_kb("K0", 'T', 'B', 'N', "CA5D92598DCA48CE8A4C76361A9269E9");
    struct hsm_mkwk_req mreq = {kbin(tmk), 0};
    struct hsm_mkwk_resp mresp;
    assert_int_equal(hsm_client_mkwk_generate(&t, &mreq, &mresp), 0);
    assert_int_equal(mresp.pik.enc_len, 16);
    assert_int_equal(mresp.mak.key.text[0], 'D');
    assert_int_equal(mresp.tdk.key.len, strlen(mresp.tdk.key.text));
    hsm_client_close(&t);
}

static void test_pin_and_mac_commands(void **state)
{
    hsm_client b, t, sw;
    (void)state;
    open_role(&b, HARNESS_BACKEND);
    open_role(&t, HARNESS_TOOLS);
    open_role(&sw, HARNESS_SWITCH);
    /* PAN hash: 32 bytes, the same for the same PAN, another for another */
    struct hsm_pan_hash_req preq;
    struct hsm_pan_hash_resp h1, h2;
    memset(&preq, 0, sizeof(preq));
    strcpy(preq.pan, AES_PAN);
    assert_int_equal(hsm_client_pan_hash(&b, &preq, &h1), 0);
    assert_int_equal(hsm_client_pan_hash(&b, &preq, &h2), 0);
    assert_memory_equal(h1.hash, h2.hash, 32);
    strcpy(preq.pan, TDES_PAN);
    assert_int_equal(hsm_client_pan_hash(&b, &preq, &h2), 0);
    assert_memory_not_equal(h1.hash, h2.hash, 32);

    /* zone MAC: CMAC with an AES M6 key, checked in-process */
    static const uint8_t msg[] = "0110 response 00";
    const char *mak = make_kb("M6", 'A', 'C', 'N', "2B7E151628AED2A6ABF7158809CF4F3C");
    struct hsm_mac_req mreq;
    struct hsm_mac_resp mresp;
    uint8_t mac[16], k[16];
    memset(&mreq, 0, sizeof(mreq));
    mreq.alg = HSM_MAC_CMAC;
    mreq.key = kbin(mak);
    mreq.data = msg;
    mreq.data_len = sizeof(msg);
    assert_int_equal(hsm_client_mac_generate(&b, &mreq, &mresp), 0);
    harness_hex("2B7E151628AED2A6ABF7158809CF4F3C", k, 16);
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, k, 16, msg, sizeof(msg), mac), 0);
    assert_int_equal(mresp.mac_len, 16);
    assert_memory_equal(mresp.mac, mac, 16);
    memcpy(mreq.mac, mac, 8);
    mreq.mac_len = 8;
    assert_int_equal(hsm_client_mac_verify(&sw, &mreq), 0);
    mreq.mac[0] ^= 1;
    assert_int_equal(hsm_client_mac_verify(&sw, &mreq), HSM_STATUS_VERIFY);

    /* DUKPT response MAC: the usage 2001 key of the published BDK and KSN */
    struct hsm_dukpt_mac_generate_req dreq;
    memset(&dreq, 0, sizeof(dreq));
    dreq.dukpt.bdk = kbin(bdk_aes_kb);
    harness_hex(AES_KSN1, dreq.dukpt.ksn, 12);
    dreq.dukpt.ksn_len = 12;
    dreq.data = msg;
    dreq.data_len = sizeof(msg);
    assert_int_equal(hsm_client_dukpt_mac_generate(&b, &dreq, &mresp), 0);
    uint8_t bdk[16];
    harness_hex(AES_BDK, bdk, 16);
    assert_int_equal(mpos_dukpt_aes_working_key(&cc, bdk, 16, dreq.dukpt.ksn,
                                                MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
                                                MPOS_DUKPT_AES_KEY_AES128, k),
                     0);
    assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, k, 16, msg, sizeof(msg), mac), 0);
    assert_memory_equal(mresp.mac, mac, mresp.mac_len);

    /* PIN from one zone key to another: AES format 4 -> TDES format 0 */
    struct hsm_pin_translate_req treq;
    struct hsm_pin_block_resp tresp;
    uint8_t zpk[16];
    char pin[MPOS_PIN_BUF_LEN];
    memset(&treq, 0, sizeof(treq));
    harness_hex(ZPK_AES, zpk, 16);
    assert_int_equal(mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, zpk, 16,
                                            "98765", AES_PAN, NULL, 0, treq.pin_block,
                                            &treq.pin_block_len),
                     0);
    treq.source = HSM_PIN_FROM_KEY;
    treq.src_key = kbin(zpk_aes_kb);
    treq.src_format = MPOS_PIN_FORMAT_4;
    strcpy(treq.pan, AES_PAN);
    treq.zpk = kbin(zpk_tdes_kb);
    treq.dst_format = MPOS_PIN_FORMAT_0;
    assert_int_equal(hsm_client_pin_translate(&b, &treq, &tresp), 0);
    harness_hex(ZPK_TDES, zpk, 16);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, zpk, 16,
                                            tresp.pin_block, tresp.pin_block_len, AES_PAN, pin),
                     0);
    assert_string_equal(pin, "98765");

    /* PVV: generated by tools, verified by the switch */
    const char *pvk = make_kb("V2", 'T', 'C', 'N', "0123456789ABCDEFFEDCBA9876543210");
    struct hsm_pvv_req vreq;
    struct hsm_pvv_resp vresp;
    memset(&vreq, 0, sizeof(vreq));
    vreq.zpk = kbin(zpk_tdes_kb);
    vreq.format = MPOS_PIN_FORMAT_0;
    memcpy(vreq.pin_block, tresp.pin_block, 8);
    vreq.pin_block_len = 8;
    strcpy(vreq.pan, AES_PAN);
    vreq.pvk = kbin(pvk);
    vreq.pvki = 1;
    assert_int_equal(hsm_client_pvv_generate(&t, &vreq, &vresp), 0);
    assert_int_equal(strlen(vresp.pvv), 4);
    memcpy(vreq.pvv, vresp.pvv, 5);
    assert_int_equal(hsm_client_pin_verify(&sw, &vreq), 0);
    vreq.pvv[0] = vreq.pvv[0] == '9' ? '0' : (char)(vreq.pvv[0] + 1);
    assert_int_equal(hsm_client_pin_verify(&sw, &vreq), HSM_STATUS_VERIFY);
    MPOS_WIPE_BUFFER(pin);
    hsm_client_close(&b);
    hsm_client_close(&t);
    hsm_client_close(&sw);
}

static void test_emv_and_card_data_commands(void **state)
{
    hsm_client b;
    (void)state;
    open_role(&b, HARNESS_BACKEND);
    /* ARQC of an on-us card, computed in-process from the IMK, verified with ARPC method 1 */
    static const char imk_hex[] = "0123456789ABCDEFFEDCBA9876543210";
    const char *imk = make_kb("E0", 'T', 'X', 'N', imk_hex);
    struct hsm_arqc_req areq;
    struct hsm_arqc_resp aresp;
    uint8_t imk_b[16], mk[16], sk[16], arpc[8];
    memset(&areq, 0, sizeof(areq));
    areq.imk = kbin(imk);
    areq.mk_option = MPOS_EMV_MK_OPTION_A;
    areq.sk_method = MPOS_EMV_SK_COMMON;
    strcpy(areq.pan, "5413330089012345");
    strcpy(areq.psn, "01");
    areq.atc[1] = 0x1C;
    static uint8_t ac_data[33];
    for (size_t i = 0; i < sizeof(ac_data); i++) {
        ac_data[i] = (uint8_t)(i * 7);
    }
    areq.ac_data = ac_data;
    areq.ac_data_len = sizeof(ac_data);
    harness_hex(imk_hex, imk_b, 16);
    assert_int_equal(
        mpos_emv_derive_icc_mk(&cc, MPOS_EMV_MK_OPTION_A, imk_b, 16, areq.pan, areq.psn, mk), 0);
    assert_int_equal(mpos_emv_derive_sk(&cc, MPOS_EMV_SK_COMMON, mk, 16, areq.atc, sk), 0);
    assert_int_equal(mpos_emv_ac_generate(&cc, sk, 16, ac_data, sizeof(ac_data), areq.arqc), 0);
    areq.arpc_method = 1;
    areq.arc[0] = '0';
    areq.arc[1] = '0';
    assert_int_equal(hsm_client_arqc_verify(&b, &areq, &aresp), 0);
    assert_int_equal(mpos_emv_arpc1_generate(&cc, sk, 16, areq.arqc, areq.arc, arpc), 0);
    assert_int_equal(aresp.arpc_len, 8);
    assert_memory_equal(aresp.arpc, arpc, 8);
    areq.arqc[7] ^= 1;
    assert_int_equal(hsm_client_arqc_verify(&b, &areq, &aresp), HSM_STATUS_VERIFY);

    /* card data: TLV 5A, 57, 5F24 padded (ISO 9797-1 method 2), AES-CBC under the 3000 key */
    static const uint8_t tlv[] = {0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x57,
                                  0x0D, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xD2, 0x81,
                                  0x22, 0x01, 0x1F, 0x5F, 0x24, 0x03, 0x28, 0x12, 0x31};
    uint8_t plain[48], enc[48], key[16], bdk[16], zdk[16];
    size_t plen = sizeof(tlv);
    memcpy(plain, tlv, plen);
    plain[plen++] = 0x80;
    while (plen % 16 != 0) {
        plain[plen++] = 0;
    }
    struct hsm_card_data_req creq;
    static struct hsm_card_data_resp cresp;
    memset(&creq, 0, sizeof(creq));
    creq.dukpt.bdk = kbin(bdk_aes_kb);
    harness_hex(AES_KSN1, creq.dukpt.ksn, 12);
    creq.dukpt.ksn_len = 12;
    harness_hex(AES_BDK, bdk, 16);
    assert_int_equal(mpos_dukpt_aes_working_key(&cc, bdk, 16, creq.dukpt.ksn,
                                                MPOS_DUKPT_AES_USAGE_DATA_ENC,
                                                MPOS_DUKPT_AES_KEY_AES128, key),
                     0);
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_AES, 1, key, 16, NULL, plain, enc, plen), 0);
    creq.data = enc;
    creq.data_len = plen;
    static const char zdk_hex[] = "5A5A5A5A0123456789ABCDEFA5A5A5A5";
    creq.zdk = kbin(make_kb("D0", 'A', 'B', 'N', zdk_hex));
    assert_int_equal(hsm_client_card_data_translate(&b, &creq, &cresp), 0);
    assert_string_equal(cresp.pan, AES_PAN);
    assert_int_equal(cresp.data_len, plen);
    harness_hex(zdk_hex, zdk, 16);
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_AES, 0, zdk, 16, cresp.iv, cresp.data,
                                     cresp.data, cresp.data_len),
                     0);
    assert_memory_equal(cresp.data, plain, plen);
    /* no track data or expiry in the clear part */
    for (size_t i = 0; i + 1 < cresp.emv_len; i++) {
        assert_false(cresp.emv[i] == 0x57 && cresp.emv[i + 1] == 0x0D);
    }
    MPOS_WIPE_CTX(&cresp);
    hsm_client_close(&b);
}

/* A PKCS#10 request for serialNumber=serial, DER, made with libcrypto. */
static size_t make_csr(const char *serial, uint8_t *out, size_t cap)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    size_t n = 0;
    assert_non_null(pk);
    assert_true(X509_NAME_add_entry_by_txt(name, "serialNumber", MBSTRING_ASC,
                                           (const unsigned char *)serial, -1, -1, 0) == 1);
    assert_true(X509_REQ_set_subject_name(req, name) == 1);
    assert_true(X509_REQ_set_pubkey(req, pk) == 1);
    assert_true(X509_REQ_sign(req, pk, EVP_sha256()) > 0);
    int len = i2d_X509_REQ(req, NULL);
    assert_true(len > 0 && (size_t)len <= cap);
    unsigned char *p = out;
    n = (size_t)i2d_X509_REQ(req, &p);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return n;
}

static void test_certificate_commands(void **state)
{
    hsm_client t;
    (void)state;
    open_role(&t, HARNESS_TOOLS);
    struct hsm_generate_key_req greq;
    struct hsm_generate_key_resp ca;
    memset(&greq, 0, sizeof(greq));
    memcpy(greq.attr.usage, "S1", 3);
    greq.attr.algorithm = 'E';
    greq.attr.mode = 'S';
    greq.attr.exportability = 'N';
    assert_int_equal(hsm_client_generate_key(&t, &greq, &ca), 0);
    assert_int_equal(ca.ec_pub_len, HSM_EC_PUB_LEN);
    assert_int_equal(ca.kcv_len, 0);
    struct hsm_ca_cert_req creq;
    static struct hsm_cert_sign_resp ca_cert, dev_cert;
    memset(&creq, 0, sizeof(creq));
    creq.ca_key.text = ca.key.text;
    creq.ca_key.len = ca.key.len;
    strcpy(creq.common_name, "openmpos test manufacturer CA");
    creq.not_before = 1700000000;
    creq.not_after = 2000000000;
    assert_int_equal(hsm_client_ca_cert_create(&t, &creq, &ca_cert), 0);
    const unsigned char *p = ca_cert.cert;
    X509 *x = d2i_X509(NULL, &p, (long)ca_cert.cert_len);
    assert_non_null(x);
    X509_free(x);
    static uint8_t csr[1024];
    struct hsm_cert_sign_req sreq;
    memset(&sreq, 0, sizeof(sreq));
    sreq.ca_key = creq.ca_key;
    sreq.ca_cert = ca_cert.cert;
    sreq.ca_cert_len = ca_cert.cert_len;
    sreq.csr = csr;
    sreq.csr_len = make_csr("TERM0001", csr, sizeof(csr));
    strcpy(sreq.serial, "TERM0001");
    sreq.not_before = 1700000000;
    sreq.not_after = 1900000000;
    assert_int_equal(hsm_client_cert_sign(&t, &sreq, &dev_cert), 0);
    p = dev_cert.cert;
    x = d2i_X509(NULL, &p, (long)dev_cert.cert_len);
    assert_non_null(x);
    X509_free(x);
    /* a request for another terminal is refused */
    strcpy(sreq.serial, "TERM0002");
    assert_true(hsm_client_cert_sign(&t, &sreq, &dev_cert) > 0);
    hsm_client_close(&t);
}

/* provision.terminal through the tools socket: a CA key and certificate made in hsmd, a
 * terminal key pair and certificate request made by lib/provision; the bundle opens with that
 * device key only (T-UNIQ-1), with the published AES DUKPT initial key and the returned check
 * value; the backend role is refused by its allow-list; an oversized CSR field is refused with
 * the field status and hsmd goes on serving. */
static void test_provision_terminal(void **state)
{
    static struct hsm_provision_terminal_resp resp;
    static uint8_t big_csr[HSM_CSR_MAX_LEN + 1];
    struct hsm_provision_terminal_req req;
    struct hsm_generate_key_req greq;
    struct hsm_generate_key_resp ca;
    struct hsm_ca_cert_req creq;
    static struct hsm_cert_sign_resp ca_cert;
    struct hsm_client_status st;
    struct mpos_provision_key out;
    mpos_provision_bundle view;
    uint8_t a_priv[MPOS_EC_P256_PRIV_LEN], a_pub[MPOS_EC_P256_PUB_LEN];
    uint8_t b_priv[MPOS_EC_P256_PRIV_LEN], b_pub[MPOS_EC_P256_PUB_LEN];
    uint8_t csr[MPOS_PROVISION_CSR_MAX_LEN], ik[16], kcv[5];
    size_t csr_len = 0;
    hsm_client t, b;
    (void)state;
    open_role(&t, HARNESS_TOOLS);

    /* The manufacturer CA: an EC signing key generated in hsmd, its self-signed certificate. */
    memset(&greq, 0, sizeof(greq));
    memcpy(greq.attr.usage, "S1", 3);
    greq.attr.algorithm = 'E';
    greq.attr.mode = 'S';
    greq.attr.exportability = 'N';
    assert_int_equal(hsm_client_generate_key(&t, &greq, &ca), 0);
    assert_int_equal(ca.ec_pub_len, HSM_EC_PUB_LEN);
    memset(&creq, 0, sizeof(creq));
    creq.ca_key.text = ca.key.text;
    creq.ca_key.len = ca.key.len;
    strcpy(creq.common_name, "openmpos test manufacturer CA");
    creq.not_before = 1767225600; /* 2026-01-01 */
    creq.not_after = 2082758400;  /* 2036-01-01 */
    assert_int_equal(hsm_client_ca_cert_create(&t, &creq, &ca_cert), 0);

    /* Terminal A (and B, another device key) as the terminal makes them. */
    assert_int_equal(mpos_provision_device_key_generate(a_priv, a_pub), MPOS_OK);
    assert_int_equal(mpos_provision_device_key_generate(b_priv, b_pub), MPOS_OK);
    assert_int_equal(mpos_provision_csr_build(a_priv, "MP0000000001", csr, sizeof(csr), &csr_len),
                     MPOS_OK);

    memset(&req, 0, sizeof(req));
    req.key = HSM_PROVISION_DUKPT;
    req.bdk.text = bdk_aes_kb;
    req.bdk.len = strlen(bdk_aes_kb);
    harness_hex("1234567890123456", req.id, 8);
    req.id_len = 8;
    req.ca_key = creq.ca_key;
    req.ca_cert = ca_cert.cert;
    req.ca_cert_len = ca_cert.cert_len;
    req.csr = csr;
    req.csr_len = csr_len;
    strcpy(req.serial, "MP0000000001");
    req.not_before = 1767225600;
    req.not_after = 1893456000;
    assert_int_equal(hsm_client_provision_terminal(&t, &req, &resp), 0);
    assert_true(resp.bundle_len > 0 && resp.bundle_len <= MPOS_PROVISION_BUNDLE_MAX_LEN);
    assert_int_equal(resp.kind, MPOS_PROVISION_AES_DUKPT);
    assert_int_equal(resp.id_len, 8);
    assert_memory_equal(resp.id, req.id, 8);
    assert_int_equal(resp.kcv_len, 5);
    assert_int_equal(resp.tmk.len, 0);

    /* A opens it under the CA key hsmd generated: the X9.24-3-2017 supplement initial key of
     * IKID 1234567890123456, whose CMAC check value is the one hsmd returned. */
    assert_int_equal(mpos_provision_open(&cc, a_priv, "MP0000000001", ca.ec_pub, resp.bundle,
                                         resp.bundle_len, &view, &out),
                     MPOS_OK);
    harness_hex("1273671EA26AC29AFA4D1084127652A1", ik, sizeof(ik));
    assert_int_equal(out.kind, MPOS_PROVISION_AES_DUKPT);
    assert_int_equal(out.key_len, 16);
    assert_memory_equal(out.key, ik, 16);
    assert_int_equal(out.id_len, 8);
    assert_memory_equal(out.id, req.id, 8);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, out.key, out.key_len,
                                      kcv, sizeof(kcv)),
                     MPOS_OK);
    assert_memory_equal(kcv, resp.kcv, 5);
    assert_int_equal(view.device_cert_len > 0, 1);
    assert_memory_equal(view.ca_cert, ca_cert.cert, ca_cert.cert_len);
    mpos_provision_key_clear(&out);

    /* Another device key does not open it (its TK differs; the certificate names A's key). */
    assert_int_equal(mpos_provision_open(&cc, b_priv, "MP0000000001", ca.ec_pub, resp.bundle,
                                         resp.bundle_len, NULL, &out),
                     MPOS_ERR_VERIFY);
    for (size_t i = 0; i < sizeof(out.key); i++) {
        assert_int_equal(out.key[i], 0);
    }

    /* The back end may not provision: allow-list refusal, the connection goes on. */
    open_role(&b, HARNESS_BACKEND);
    assert_int_equal(hsm_client_provision_terminal(&b, &req, &resp), HSM_STATUS_DENIED);
    assert_int_equal(resp.bundle_len, 0);
    assert_int_equal(hsm_client_status(&b, &st), 0);
    hsm_client_close(&b);

    /* A CSR one byte over its field maximum (4096). The client refuses to encode it (nothing
     * sent); sent raw, hsmd answers with the field status, and it keeps serving: the same
     * client (reconnecting if needed) asks status and provisions again. */
    memset(big_csr, 0x30, sizeof(big_csr));
    req.csr = big_csr;
    req.csr_len = sizeof(big_csr);
    assert_int_equal(hsm_client_provision_terminal(&t, &req, &resp), MPOS_ERR_ARG);
    {
        static uint8_t frame[16384];
        hsm_writer w;
        size_t n = 0;
        hsm_writer_request(&w, frame, sizeof(frame), HSM_CMD_PROVISION_TERMINAL, 4242);
        hsm_put_bytes(&w, HSM_TAG_BDK, req.bdk.text, req.bdk.len);
        hsm_put_bytes(&w, HSM_TAG_KEY_ID, req.id, req.id_len);
        hsm_put_bytes(&w, HSM_TAG_KEY_BLOCK, req.ca_key.text, req.ca_key.len);
        hsm_put_bytes(&w, HSM_TAG_CA_CERT, req.ca_cert, req.ca_cert_len);
        /* the CSR field by hand: tag, 16-bit length, value (the writer would refuse it) */
        assert_true(w.err == 0 && w.cap - w.len >= 3 + sizeof(big_csr));
        w.buf[w.len] = HSM_TAG_CSR;
        mpos_store_be16(w.buf + w.len + 1, (uint16_t)sizeof(big_csr));
        memcpy(w.buf + w.len + 3, big_csr, sizeof(big_csr));
        w.len += 3 + sizeof(big_csr);
        hsm_put_text(&w, HSM_TAG_SERIAL, req.serial);
        hsm_put_u64(&w, HSM_TAG_NOT_BEFORE, (uint64_t)req.not_before);
        hsm_put_u64(&w, HSM_TAG_NOT_AFTER, (uint64_t)req.not_after);
        assert_int_equal(hsm_writer_finish(&w, &n), 0);
        assert_int_equal(hsm_client_send_raw(&t, frame, n, HSM_CMD_PROVISION_TERMINAL),
                         HSM_STATUS_FIELD);
    }
    assert_int_equal(hsm_client_status(&t, &st), 0);
    assert_string_equal(st.role, "tools");
    req.csr = csr;
    req.csr_len = csr_len;
    assert_int_equal(hsm_client_provision_terminal(&t, &req, &resp), 0);
    assert_int_equal(mpos_provision_open(&cc, a_priv, "MP0000000001", ca.ec_pub, resp.bundle,
                                         resp.bundle_len, NULL, &out),
                     MPOS_OK);
    assert_memory_equal(out.key, ik, 16);
    mpos_provision_key_clear(&out);
    hsm_client_close(&t);
    mpos_cleanse(a_priv, sizeof(a_priv));
    mpos_cleanse(b_priv, sizeof(b_priv));
}

/* ---- refusals ---------------------------------------------------------------------------- */

/* ---- sealed messages and parameter signing (docs/system-design.md section 3) -------------- */

static struct hsm_kb_in kb_in(const char *text)
{
    struct hsm_kb_in r = {text, strlen(text)};
    return r;
}

/* The terminal of the sealed tests (sealed_testkit.h): AES DUKPT on the published BDK and
 * initial key ID, one transaction's request and response keys. */
static void sealed_term_next(struct stk_term *st)
{
    assert_int_equal(stk_term_published(st, &cc, MPOS_SEALED_AES128), MPOS_OK);
    assert_int_equal(stk_term_next(st), MPOS_OK);
}

/* A stripe sale with a PIN, sealed by the terminal's own code. */
static size_t sealed_sale(struct stk_term *st, uint8_t *out, size_t cap)
{
    mpos_sealed_request q;
    size_t len = 0;
    stk_request(&q, MPOS_SEALED_MSG_REQUEST, 77, 4200);
    q.entry_mode = MPOS_ENTRY_MAGSTRIPE;
    strcpy(q.card.pan, SEALED_PAN);
    strcpy(q.card.expiry, SEALED_EXPIRY);
    q.card.track2_len = strlen(SEALED_TRACK2) / 2;
    harness_hex(SEALED_TRACK2, q.card.track2, q.card.track2_len);
    assert_int_equal(stk_term_pin(st, SEALED_PIN, SEALED_PAN, &q), MPOS_OK);
    assert_int_equal(mpos_sealed_seal_request(&cc, &st->req_keys, &q, NULL, NULL, out, cap, &len),
                     MPOS_OK);
    mpos_sealed_request_clear(&q);
    return len;
}

static int no_field(const hsm_client *c)
{
    return c->resp.present[0] == 0 && c->resp.present[1] == 0;
}

static void test_sealed_open_respond(void **state)
{
    static struct hsm_sealed_open_resp r;
    struct hsm_sealed_open_req req;
    struct hsm_sealed_respond_req rreq;
    struct hsm_sealed_respond_resp rresp;
    struct stk_term st;
    mpos_sealed_response tr;
    hsm_client c, t;
    uint8_t msg[HSM_SEALED_MAX_LEN], key[16], plain[HSM_SEALED_TRACK2_ENC_MAX];
    char pin[MPOS_PIN_BUF_LEN];
    (void)state;
    sealed_term_next(&st);
    size_t len = sealed_sale(&st, msg, sizeof(msg));
    memset(&req, 0, sizeof(req));
    req.bdk = kb_in(bdk_aes_kb);
    req.sealed = msg;
    req.sealed_len = len;
    req.zpk = kb_in(zpk_tdes_kb);
    req.zek = kb_in(zek_kb);

    /* The tools role may not open or answer sealed messages. */
    open_role(&t, HARNESS_TOOLS);
    assert_int_equal(hsm_client_sealed_open(&t, &req, &r), HSM_STATUS_DENIED);
    assert_true(no_field(&t));

    open_role(&c, HARNESS_BACKEND);
    assert_int_equal(hsm_client_sealed_open(&c, &req, &r), 0);
    assert_int_equal(r.fields.msg_type, MPOS_SEALED_MSG_REQUEST);
    assert_int_equal(r.fields.scheme, MPOS_SEALED_AES128);
    assert_int_equal(r.fields.ksn_len, MPOS_DUKPT_AES_KSN_LEN);
    assert_memory_equal(r.fields.ksn, st.ksn, MPOS_DUKPT_AES_KSN_LEN);
    assert_int_equal(r.fields.sequence, 77);
    assert_true(r.fields.amount == 4200);
    assert_string_equal(r.fields.terminal_id, "10000001");
    assert_string_equal(r.fields.masked_pan, "411111******1111");
    assert_string_equal(r.pan, SEALED_PAN);
    assert_int_equal(r.chip_card, 1); /* service code 201 */
    assert_int_equal(r.has_pin, 1);
    assert_int_equal(r.fields.reversal_reason, 0); /* a request has none */
    /* The PIN under the ZPK, format 0; track 2 under the ZEK, ISO 9797-1 padding method 2. */
    assert_int_equal(r.pin_block_len, 8);
    harness_hex(ZPK_TDES, key, sizeof(key));
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16,
                                            r.pin_block, 8, SEALED_PAN, pin),
                     0);
    assert_string_equal(pin, SEALED_PIN);
    assert_int_equal(r.track2_enc_len, 16);
    harness_hex(ZEK_TDES, key, sizeof(key));
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_TDES, 0, key, 16, r.track2_iv, r.track2_enc,
                                     plain, r.track2_enc_len),
                     MPOS_OK);
    uint8_t t2[15];
    harness_hex(SEALED_TRACK2, t2, sizeof(t2));
    assert_memory_equal(plain, t2, sizeof(t2));
    assert_int_equal(plain[15], 0x80);
    mpos_cleanse(key, sizeof(key));

    /* The response, sealed by hsmd, opens on the terminal with its response keys. */
    memset(&rreq, 0, sizeof(rreq));
    rreq.bdk = kb_in(bdk_aes_kb);
    rreq.scheme = r.fields.scheme;
    memcpy(rreq.ksn, r.fields.ksn, r.fields.ksn_len);
    rreq.ksn_len = r.fields.ksn_len;
    rreq.sequence = r.fields.sequence;
    strcpy(rreq.response_code, "00");
    strcpy(rreq.auth_code, "A1B2C3");
    strcpy(rreq.rrn, "601512345678");
    assert_int_equal(hsm_client_sealed_respond(&t, &rreq, &rresp), HSM_STATUS_DENIED);
    assert_true(no_field(&t));
    assert_int_equal(hsm_client_sealed_respond(&c, &rreq, &rresp), 0);
    assert_int_equal(
        mpos_sealed_open_response(&cc, &st.resp_keys, 77, rresp.sealed, rresp.sealed_len, &tr),
        MPOS_OK);
    assert_string_equal(tr.response_code, "00");
    assert_string_equal(tr.auth_code, "A1B2C3");
    assert_string_equal(tr.rrn, "601512345678");
    mpos_sealed_response_clear(&tr);
    /* ...and only to that request: another sequence number is refused by the terminal. */
    rreq.sequence = 78;
    assert_int_equal(hsm_client_sealed_respond(&c, &rreq, &rresp), 0);
    assert_int_not_equal(
        mpos_sealed_open_response(&cc, &st.resp_keys, 77, rresp.sealed, rresp.sealed_len, &tr),
        MPOS_OK);

    /* A tampered request (a byte of the MAC, two of the encrypted part): status verify, and
     * not one field in the answer (no decryption oracle). */
    const size_t positions[] = {len / 2, len - 1, len - 20};
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        msg[positions[i]] ^= 0x04;
        assert_int_equal(hsm_client_sealed_open(&c, &req, &r), HSM_STATUS_VERIFY);
        assert_true(no_field(&c));
        assert_string_equal(r.pan, "");
        msg[positions[i]] ^= 0x04;
    }
    /* The same request under the TDES BDK: a key of the other scheme. */
    req.bdk = kb_in(bdk_tdes_kb);
    assert_int_not_equal(hsm_client_sealed_open(&c, &req, &r), 0);
    assert_true(no_field(&c));
    req.bdk = kb_in(bdk_aes_kb);
    assert_int_equal(hsm_client_sealed_open(&c, &req, &r), 0); /* the connection still serves */

    /* A reversal: its reason crosses the socket as `reversal-reason` (docs/protocol.md 2.3
     * DF34), each of the four. */
    for (uint8_t reason = MPOS_SEALED_REV_NO_RESPONSE; reason <= MPOS_SEALED_REV_CANCELLED;
         reason++) {
        mpos_sealed_request q;
        size_t rlen = 0;
        stk_request(&q, MPOS_SEALED_MSG_REVERSAL, 77, 4200);
        q.reversal_reason = reason;
        q.entry_mode = MPOS_ENTRY_NONE;
        assert_int_equal(
            mpos_sealed_seal_request(&cc, &st.req_keys, &q, NULL, NULL, msg, sizeof(msg), &rlen),
            MPOS_OK);
        req.sealed_len = rlen;
        assert_int_equal(hsm_client_sealed_open(&c, &req, &r), 0);
        assert_int_equal(r.fields.msg_type, MPOS_SEALED_MSG_REVERSAL);
        assert_int_equal(r.fields.reversal_reason, reason);
        assert_int_equal(r.fields.sequence, 77);
        assert_string_equal(r.pan, "");
        assert_int_equal(r.fields.retry, 0);
    }
    /* A retry (docs/protocol.md 2.3 DF35): its flag crosses the socket as `retry`; the first
     * send of the same request has none. */
    for (uint8_t retry = 0; retry <= 1; retry++) {
        mpos_sealed_request q;
        size_t rlen = 0;
        stk_request(&q, MPOS_SEALED_MSG_REQUEST, 78, 4200);
        q.retry = retry;
        q.txn_type = MPOS_LINK_TXN_VOID;
        strcpy(q.original_ref, "000000000042");
        q.entry_mode = MPOS_ENTRY_NONE;
        assert_int_equal(
            mpos_sealed_seal_request(&cc, &st.req_keys, &q, NULL, NULL, msg, sizeof(msg), &rlen),
            MPOS_OK);
        req.sealed_len = rlen;
        assert_int_equal(hsm_client_sealed_open(&c, &req, &r), 0);
        assert_int_equal(r.fields.msg_type, MPOS_SEALED_MSG_REQUEST);
        assert_int_equal(r.fields.retry, retry);
        assert_int_equal(r.fields.sequence, 78);
        assert_int_equal(r.fields.reversal_reason, 0);
        assert_int_equal(r.has_pin, 0);
    }
    MPOS_WIPE_CTX(&r);
    hsm_client_close(&t);
    hsm_client_close(&c);
}

static void test_params_sign(void **state)
{
    struct hsm_params_sign_req req;
    struct hsm_params_sign_resp resp;
    uint8_t priv[32], pub[MPOS_EC_P256_PUB_LEN], e4[40], other[40];
    size_t e4_len = 0, other_len = 0;
    hsm_client c;
    (void)state;
    harness_hex(PARAMS_KEY_HEX, priv, sizeof(priv));
    assert_int_equal(mpos_ec_p256_public(priv, pub), MPOS_OK);
    mpos_cleanse(priv, sizeof(priv));
    /* A signed part (E4) as the builder makes it, and an object of another tag (E2: a
     * provisioning bundle's) that the key must not sign. */
    assert_int_equal(mpos_tlv_put(e4, sizeof(e4), &e4_len, 0xE4,
                                  (const uint8_t *)"\xC1\x01\x01\xC2\x04\x00\x00\x00\x01", 9),
                     MPOS_OK);
    assert_int_equal(mpos_tlv_put(other, sizeof(other), &other_len, 0xE2,
                                  (const uint8_t *)"\xC1\x01\x01\xC2\x04\x00\x00\x00\x01", 9),
                     MPOS_OK);
    memset(&req, 0, sizeof(req));
    req.key = kb_in(params_kb);
    for (int role = HARNESS_BACKEND; role <= HARNESS_TOOLS; role++) {
        open_role(&c, role);
        /* No data: only the public key (for the endorsement). */
        req.data = NULL;
        req.data_len = 0;
        assert_int_equal(hsm_client_params_sign(&c, &req, &resp), 0);
        assert_int_equal(resp.has_sig, 0);
        assert_memory_equal(resp.pub, pub, sizeof(pub));
        assert_false(hsm_msg_has(&c.resp, HSM_TAG_DATA));
        /* An E4 object: a signature that verifies under that key. */
        req.data = e4;
        req.data_len = e4_len;
        assert_int_equal(hsm_client_params_sign(&c, &req, &resp), 0);
        assert_int_equal(resp.has_sig, 1);
        assert_memory_equal(resp.pub, pub, sizeof(pub));
        assert_int_equal(mpos_ecdsa_p256_verify(pub, e4, e4_len, resp.sig), MPOS_OK);
        /* Anything but one whole E4 / E6 object: refused, no signature. */
        req.data = other;
        req.data_len = other_len;
        assert_int_equal(hsm_client_params_sign(&c, &req, &resp), HSM_STATUS_INPUT);
        assert_true(no_field(&c));
        req.data = e4;
        req.data_len = e4_len - 1;
        assert_int_equal(hsm_client_params_sign(&c, &req, &resp), HSM_STATUS_INPUT);
        assert_true(no_field(&c));
        hsm_client_close(&c);
    }
    /* Not a signing key: the BDK. Not allowed: the switch role. */
    open_role(&c, HARNESS_BACKEND);
    req.key = kb_in(bdk_aes_kb);
    req.data = e4;
    req.data_len = e4_len;
    assert_int_equal(hsm_client_params_sign(&c, &req, &resp), HSM_STATUS_USAGE);
    hsm_client_close(&c);
    open_role(&c, HARNESS_SWITCH);
    req.key = kb_in(params_kb);
    assert_int_equal(hsm_client_params_sign(&c, &req, &resp), HSM_STATUS_DENIED);
    hsm_client_close(&c);
}

static void test_allow_list(void **state)
{
    hsm_client c;
    struct hsm_generate_key_req req;
    struct hsm_generate_key_resp resp;
    struct hsm_client_status st;
    uint8_t r[8];
    (void)state;
    memset(&req, 0, sizeof(req));
    memcpy(req.attr.usage, "P0", 3);
    req.attr.algorithm = 'A';
    req.attr.mode = 'B';
    req.attr.exportability = 'N';
    req.key_len = 16;
    open_role(&c, HARNESS_BACKEND); /* key generation belongs to tools */
    assert_int_equal(hsm_client_generate_key(&c, &req, &resp), HSM_STATUS_DENIED);
    assert_int_equal(hsm_client_status(&c, &st), 0); /* and the connection goes on */
    hsm_client_close(&c);
    open_role(&c, HARNESS_SWITCH); /* random is not on the switch's list */
    assert_int_equal(hsm_client_random(&c, r, sizeof(r)), HSM_STATUS_DENIED);
    hsm_client_close(&c);
}

/* Sends raw bytes and expects one refusal with that status. */
static void raw_expect(hsm_client *c, const uint8_t *frame, size_t len, uint16_t cmd, int status)
{
    assert_int_equal(hsm_client_send_raw(c, frame, len, cmd), status);
}

static size_t frame_with_fields(uint8_t *out, uint16_t cmd, const uint8_t *fields, size_t n)
{
    mpos_store_be32(out, (uint32_t)(7 + n));
    out[4] = HSM_PROTO_VERSION;
    mpos_store_be16(out + 5, cmd);
    mpos_store_be32(out + 7, 77);
    if (n > 0) {
        memcpy(out + 11, fields, n);
    }
    return 11 + n;
}

static void test_garbled_frames(void **state)
{
    hsm_client bad, good;
    struct hsm_client_status st;
    uint8_t f[64];
    (void)state;
    open_role(&good, HARNESS_BACKEND);
    open_role(&bad, HARNESS_BACKEND);
    /* Field-level errors: answered, the connection stays usable. */
    static const uint8_t unknown_tag[] = {0x7F, 0x00, 0x01, 0x00};
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_STATUS, unknown_tag, sizeof(unknown_tag)),
               HSM_CMD_STATUS, HSM_STATUS_FIELD);
    static const uint8_t dup[] = {HSM_TAG_COUNT, 0, 2, 0, 8, HSM_TAG_COUNT, 0, 2, 0, 8};
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_RANDOM, dup, sizeof(dup)), HSM_CMD_RANDOM,
               HSM_STATUS_FIELD);
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_RANDOM, NULL, 0), HSM_CMD_RANDOM,
               HSM_STATUS_FIELD); /* missing */
    static const uint8_t too_long[] = {HSM_TAG_COUNT, 0, 3, 0, 0, 8};
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_RANDOM, too_long, sizeof(too_long)),
               HSM_CMD_RANDOM, HSM_STATUS_FIELD);
    static const uint8_t past_end[] = {HSM_TAG_COUNT, 0, 9, 0, 8};
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_RANDOM, past_end, sizeof(past_end)),
               HSM_CMD_RANDOM, HSM_STATUS_FIELD);
    static const uint8_t half_header[] = {HSM_TAG_COUNT, 0};
    raw_expect(&bad, f, frame_with_fields(f, HSM_CMD_RANDOM, half_header, sizeof(half_header)),
               HSM_CMD_RANDOM, HSM_STATUS_FIELD);
    raw_expect(&bad, f, frame_with_fields(f, 0x7777, NULL, 0), 0x7777, HSM_STATUS_COMMAND);
    size_t n = frame_with_fields(f, HSM_CMD_STATUS, NULL, 0);
    f[4] = 9;
    raw_expect(&bad, f, n, HSM_CMD_STATUS, HSM_STATUS_VERSION);
    assert_int_equal(hsm_client_status(&bad, &st), 0);
    /* Shorter than a header: the frame boundary is lost, refused and closed. */
    static const uint8_t runt[] = {0, 0, 0, 3, 1, 0, 1};
    raw_expect(&bad, runt, sizeof(runt), 0, HSM_STATUS_FRAME);
    assert_int_equal(bad.fd, -1);
    /* The other client never noticed. */
    assert_int_equal(hsm_client_status(&good, &st), 0);
    hsm_client_close(&bad);
    hsm_client_close(&good);
}

static void test_oversized_frame(void **state)
{
    hsm_client bad, good;
    struct hsm_client_status st;
    uint8_t f[HSM_PROTO_PREFIX_LEN + HSM_PROTO_REQ_HEADER_LEN];
    (void)state;
    open_role(&good, HARNESS_BACKEND);
    open_role(&bad, HARNESS_BACKEND);
    mpos_store_be32(f, HSM_PROTO_DEFAULT_MAX_REQUEST + 1);
    f[4] = HSM_PROTO_VERSION;
    mpos_store_be16(f + 5, HSM_CMD_STATUS);
    mpos_store_be32(f + 7, 1);
    /* Refused on the length alone: the body is never read. */
    raw_expect(&bad, f, sizeof(f), 0, HSM_STATUS_TOO_LARGE);
    mpos_store_be32(f, 0xFFFFFFFFu);
    raw_expect(&bad, f, sizeof(f), 0, HSM_STATUS_TOO_LARGE);
    /* Exactly the maximum is read (and refused for its fields, not its size). */
    size_t max_frame = HSM_PROTO_PREFIX_LEN + HSM_PROTO_DEFAULT_MAX_REQUEST;
    uint8_t *big = calloc(1, max_frame);
    assert_non_null(big);
    mpos_store_be32(big, HSM_PROTO_DEFAULT_MAX_REQUEST);
    big[4] = HSM_PROTO_VERSION;
    mpos_store_be16(big + 5, HSM_CMD_RANDOM);
    mpos_store_be32(big + 7, 5);
    big[11] = HSM_TAG_DATA;
    mpos_store_be16(big + 12, (uint16_t)(HSM_PROTO_DEFAULT_MAX_REQUEST - 7 - 3));
    raw_expect(&bad, big, max_frame, HSM_CMD_RANDOM, HSM_STATUS_FIELD);
    free(big);
    assert_int_equal(hsm_client_status(&good, &st), 0);
    hsm_client_close(&bad);
    hsm_client_close(&good);
}

static void test_truncated_frame(void **state)
{
    hsm_client bad, good;
    struct hsm_client_status st;
    uint8_t f[32], r[4];
    (void)state;
    open_role(&good, HARNESS_BACKEND);
    open_role(&bad, HARNESS_BACKEND);
    /* 100 bytes announced, 11 sent, then the client stops writing: no answer, closed. */
    size_t n = frame_with_fields(f, HSM_CMD_STATUS, NULL, 0);
    mpos_store_be32(f, 100);
    assert_int_equal(send(bad.fd, f, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(shutdown(bad.fd, SHUT_WR), 0);
    struct timeval tv = {5, 0};
    setsockopt(bad.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t got;
    do {
        got = recv(bad.fd, r, sizeof(r), 0);
    } while (got < 0 && errno == EAGAIN);
    assert_int_equal(got, 0);
    assert_int_equal(hsm_client_status(&good, &st), 0);
    hsm_client_close(&bad);
    hsm_client_close(&good);
}

static void test_idle_timeout(void **state)
{
    hsm_client c;
    struct hsm_client_status st;
    uint8_t r[4];
    (void)state;
    open_role(&c, HARNESS_BACKEND);
    assert_int_equal(hsm_client_status(&c, &st), 0);
    /* Half a frame, then silence: a slow client is dropped as well. */
    static const uint8_t partial[] = {0, 0, 0, 7, 1};
    assert_int_equal(send(c.fd, partial, sizeof(partial), MSG_NOSIGNAL), (ssize_t)sizeof(partial));
    sleep(IDLE_TIMEOUT_S + 2);
    ssize_t got;
    do {
        got = recv(c.fd, r, sizeof(r), MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    assert_int_equal(got, 0); /* closed by hsmd */
    hsm_client_close(&c);
}

/* ---- load -------------------------------------------------------------------------------- */

struct client_job {
    int role;
    int ok;
};

static void *client_thread(void *arg)
{
    struct client_job *job = arg;
    hsm_client c;
    struct hsm_pin_translate_req req;
    struct hsm_pin_block_resp resp;
    uint8_t r[16];
    job->ok = 0;
    if (hsm_client_open(&c, H.sock[job->role], 20000) != 0) {
        return NULL;
    }
    memset(&req, 0, sizeof(req));
    req.source = HSM_PIN_FROM_DUKPT;
    req.dukpt.bdk.text = bdk_aes_kb;
    req.dukpt.bdk.len = strlen(bdk_aes_kb);
    harness_hex(AES_KSN1, req.dukpt.ksn, 12);
    req.dukpt.ksn_len = 12;
    harness_hex(AES_PIN_BLOCK1, req.pin_block, 16);
    req.pin_block_len = 16;
    strcpy(req.pan, AES_PAN);
    req.zpk.text = zpk_aes_kb;
    req.zpk.len = strlen(zpk_aes_kb);
    req.dst_format = MPOS_PIN_FORMAT_4;
    int good = 0;
    for (int i = 0; i < 100; i++) {
        good += hsm_client_pin_translate(&c, &req, &resp) == 0 && resp.pin_block_len == 16;
        good += hsm_client_random(&c, r, sizeof(r)) == 0;
    }
    job->ok = good == 200;
    hsm_client_close(&c);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    pthread_t t[N_CLIENTS];
    struct client_job jobs[N_CLIENTS];
    (void)state;
    for (int i = 0; i < N_CLIENTS; i++) {
        jobs[i].role = HARNESS_BACKEND;
        assert_int_equal(pthread_create(&t[i], NULL, client_thread, &jobs[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
    }
    assert_int_equal(ok, N_CLIENTS);
}

/* ---- hardening --------------------------------------------------------------------------- */

/* The value of "Name:" in /proc/<pid>/status, copied into out. */
static int proc_status(pid_t pid, const char *name, char *out, size_t cap)
{
    char path[64], line[256];
    size_t nl = strlen(name);
    int rc = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
            printf("    /proc/<hsmd>/status %s", line);
            snprintf(out, cap, "%s", line + nl + 1 + strspn(line + nl + 1, " \t"));
            out[strcspn(out, "\n")] = '\0';
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static void test_proc_hardening(void **state)
{
    hsm_client c;
    struct hsm_client_status st;
    char v[128], path[64];
    struct stat sb;
    (void)state;
    open_role(&c, HARNESS_BACKEND);
    assert_int_equal(hsm_client_status(&c, &st), 0); /* serving while we look */
    assert_int_equal(proc_status(H.pid, "Uid", v, sizeof(v)), 0);
    long uid = strtol(v, NULL, 10);
    if (geteuid() == 0) {
        assert_int_not_equal(uid, 0);
        assert_int_equal(uid, 65534);
        assert_int_equal(proc_status(H.pid, "Gid", v, sizeof(v)), 0);
        assert_int_equal(strtol(v, NULL, 10), 65534);
        assert_int_equal(proc_status(H.pid, "Groups", v, sizeof(v)), 0);
        assert_string_equal(v, "");
    }
    assert_int_equal(proc_status(H.pid, "CapEff", v, sizeof(v)), 0);
    assert_int_equal(strtoull(v, NULL, 16), 0);
    assert_int_equal(proc_status(H.pid, "CapPrm", v, sizeof(v)), 0);
    assert_int_equal(strtoull(v, NULL, 16), 0);
    assert_int_equal(proc_status(H.pid, "CapBnd", v, sizeof(v)), 0);
    if (geteuid() == 0) {
        assert_int_equal(strtoull(v, NULL, 16), 0);
    }
    assert_int_equal(proc_status(H.pid, "NoNewPrivs", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    assert_int_equal(proc_status(H.pid, "VmLck", v, sizeof(v)), 0);
#if !defined(__SANITIZE_ADDRESS__) /* AddressSanitizer turns mlock into a no-op */
    assert_true(strtol(v, NULL, 10) > 0);
#endif
    /* Not dumpable: the kernel shows the files of /proc/<pid> as root's instead of the
     * process's user (the directory itself keeps the real uid), and refuses ptrace attach
     * and core files. */
    snprintf(path, sizeof(path), "/proc/%d/status", (int)H.pid);
    assert_int_equal(stat(path, &sb), 0);
    printf("    /proc/<hsmd>/status owner uid %ld (process uid %ld)\n", (long)sb.st_uid, uid);
    assert_int_equal(sb.st_uid, 0);
    if (uid != 0) {
        assert_int_not_equal((long)sb.st_uid, uid);
    }
    /* The sockets: mode 0600, owned by the service user. */
    assert_int_equal(stat(H.sock[HARNESS_BACKEND], &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    if (geteuid() == 0) {
        assert_int_equal(sb.st_uid, 65534);
    }
    assert_int_equal(hsm_client_status(&c, &st), 0);
    hsm_client_close(&c);
}

static void test_refuses_loose_permissions(void **state)
{
    struct hsmd_harness h2;
    char sock[160], audit[160];
    (void)state;
    assert_int_equal(harness_init(&h2), 0);
    snprintf(sock, sizeof(sock), "backend=%s", h2.sock[0]);
    snprintf(audit, sizeof(audit), "%s", h2.audit);
    const char *args[] = {
        HSMD_PATH, "--socket", sock, "--audit-log", audit, "--lmk-components-file", h2.comps, NULL};
    /* A components file others can read. */
    assert_int_equal(chmod(h2.comps, 0640), 0);
    assert_int_not_equal(harness_run(HSMD_PATH, args), 0);
    assert_int_equal(chmod(h2.comps, 0600), 0);
    /* A socket directory others can write to. */
    assert_int_equal(chmod(h2.dir, 0777), 0);
    assert_int_not_equal(harness_run(HSMD_PATH, args), 0);
    assert_int_equal(chmod(h2.dir, 0700), 0);
    harness_cleanup(&h2);
}

/* ---- stop and audit ---------------------------------------------------------------------- */

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int found = 0;
    assert_non_null(f);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strcasestr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* The check value the audit log gives a key (kcv_cache.c: CMAC for AES, legacy for TDES). */
static const char *kcv_of(enum mpos_cipher cipher, const char *key_hex,
                          char out[2 * HSM_KCV_LEN + 1])
{
    uint8_t key[32], kcv[HSM_KCV_LEN];
    size_t len = strlen(key_hex) / 2;
    enum mpos_kcv_method m = cipher == MPOS_CIPHER_AES ? MPOS_KCV_CMAC : MPOS_KCV_LEGACY;
    harness_hex(key_hex, key, len);
    assert_int_equal(mpos_kcv_compute(&cc, cipher, m, key, len, kcv, mpos_kcv_default_len(m)),
                     MPOS_OK);
    mpos_hex_encode(kcv, mpos_kcv_default_len(m), out);
    return out;
}

static void test_stop_and_audit(void **state)
{
    (void)state;
    assert_int_equal(harness_stop(&H), 0); /* SIGTERM: clean exit */
    /* One line per command, with the role, the peer and the result... */
    assert_true(file_contains(H.audit, "cmd=pin.translate-dukpt"));
    assert_true(file_contains(H.audit, "cmd=key.generate kcv=- result=denied"));
    assert_true(file_contains(H.audit, "role=switch"));
    assert_true(file_contains(H.audit, "result=idle-timeout"));
    assert_true(file_contains(H.audit, "result=too-large"));
    assert_true(file_contains(H.audit, "cmd=stop kcv=- result=ok"));
    /* sealed.open: the check values of the BDK, ZPK and ZEK and the masked PAN when it opened;
     * a refused request names no card. */
    char want[160], k1[2 * HSM_KCV_LEN + 1], k2[2 * HSM_KCV_LEN + 1], k3[2 * HSM_KCV_LEN + 1];
    snprintf(want, sizeof(want), "cmd=sealed.open kcv=%s,%s,%s pan=411111******1111 result=ok",
             kcv_of(MPOS_CIPHER_AES, AES_BDK, k1), kcv_of(MPOS_CIPHER_TDES, ZPK_TDES, k2),
             kcv_of(MPOS_CIPHER_TDES, ZEK_TDES, k3));
    assert_true(file_contains(H.audit, want));
    assert_true(file_contains(H.audit, "cmd=sealed.open kcv=-"));
    assert_false(file_contains(H.audit, "pan=411111******1111 result=verify"));
    /* ...and the check values of the keys used, never the keys, PANs, PIN blocks or LMK. */
    static const char *const secrets[] = {
        AES_BDK, TDES_BDK, ZPK_AES, ZPK_TDES, AES_PAN, TDES_PAN, AES_KSN1, AES_MAC_KEY1,
        AES_PIN_BLOCK1, TDES_PIN_BLOCK1, "41111111", "40123456", "1234567890123456",
        /* keys of the other commands, and the on-us card's PAN */
        "2B7E151628AED2A6ABF7158809CF4F3C", "5A5A5A5A0123456789ABCDEFA5A5A5A5",
        "CA5D92598DCA48CE8A4C76361A9269E9", "000102030405060708090A0B0C0D0E0F",
        "F0E1D2C3B4A5968778695A4B3C2D1E0F", "1273671EA26AC29AFA4D1084127652A1", "5413330089012345",
        "D2812201", SEALED_TRACK2, "D3012201", ZEK_TDES, PARAMS_KEY_HEX};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (file_contains(H.audit, secrets[i])) {
            fail_msg("audit log contains %s", secrets[i]);
        }
    }
    for (int i = 0; i < 2; i++) {
        assert_false(file_contains(H.audit, harness_component_hex[i]));
    }
    char kcv_hex[2 * HSM_KCV_LEN + 1];
    mpos_hex_encode(H.lmk_kcv, HSM_KCV_LEN, kcv_hex);
    assert_true(file_contains(H.audit, kcv_hex)); /* status names the LMK by its KCV */
    /* A sample for the log of the test run (the checks above prove it holds no secret). */
    FILE *f = fopen(H.audit, "r");
    char line[512];
    for (int i = 0; f != NULL && fgets(line, sizeof(line), f) != NULL;) {
        if (strstr(line, "cmd=pin.translate") != NULL || strstr(line, "result=denied") != NULL ||
            strstr(line, "cmd=key.export") != NULL || strstr(line, "cmd=status") != NULL) {
            if (i++ < 8) {
                printf("    audit: %s", line);
            }
        }
    }
    if (f != NULL) {
        fclose(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_every_role),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_pin_translate_published),
        cmocka_unit_test(test_pin_translate_wrong_key),
        cmocka_unit_test(test_dukpt_mac_verify_published),
        cmocka_unit_test(test_key_management_commands),
        cmocka_unit_test(test_pin_and_mac_commands),
        cmocka_unit_test(test_emv_and_card_data_commands),
        cmocka_unit_test(test_certificate_commands),
        cmocka_unit_test(test_provision_terminal),
        cmocka_unit_test(test_sealed_open_respond),
        cmocka_unit_test(test_params_sign),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_garbled_frames),
        cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_truncated_frame),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_proc_hardening),
        cmocka_unit_test(test_refuses_loose_permissions),
        cmocka_unit_test(test_stop_and_audit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
