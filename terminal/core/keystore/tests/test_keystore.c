/* Tests of the key store (terminal/core/keystore), on the in-memory storage HAL.
 *
 * Transactions under AES DUKPT (X9.24-3-2017 supplement BDKs: AES-128
 * FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID 1234567890123456) and TDES DUKPT
 * (X9.24-1-2009 A.4: BDK 0123456789ABCDEFFEDCBA9876543210, KSN FFFF9876543210E00000), each
 * checked against the host derivation and the stored state checked after each; the master-key
 * / working-key scheme; the import rules (explicit retire, retired IDs refused); refusal of
 * corrupted, truncated, swapped, foreign and rolled-back records (never a silent reset) and
 * the explicit factory reset; the record format's strictness; the reversal record; the device
 * identity, trust anchors and activation; no clear key in storage; the failed state after a
 * storage error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keystore.h"
#include "keystore_record.h"
#include "ks_check.h"
#include "mem_storage.h"
#include "mpos/util.h"
#include "testutil.h"

static mpos_crypto_ctx cc;
static mem_storage *mem;

/* Copies the durable content of slot name to dst (MPOS_HAL_SLOT_MAX bytes); its length. */
static size_t peek_copy(const char *name, uint8_t *dst)
{
    size_t len = 0;
    const uint8_t *p = mem_storage_peek(mem, name, &len);
    assert_non_null(p);
    memcpy(dst, p, len);
    return len;
}
static mpos_hal_storage hal;
static mpos_hal_rng rng;
static mpos_keystore ks;
static ks_check chk;

static const char aes128_bdk[] = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
static const char aes256_bdk[] = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1";
static const char aes_ikid[] = "1234567890123456";
static const char tdes_bdk[] = "0123456789ABCDEFFEDCBA9876543210";
static const char tdes_iksn[] = "FFFF9876543210E00000";

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}

static int setup(void **state)
{
    (void)state;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    mem = malloc(sizeof(*mem));
    if (mem == NULL) {
        return -1;
    }
    rng.ctx = NULL;
    rng.random = test_random;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    free(mem);
    return 0;
}

/* A fresh device with an open, empty key store. */
static int fresh(void **state)
{
    (void)state;
    mem_storage_init(mem, 1);
    mem_storage_bind(mem, &hal);
    return mpos_keystore_open(&ks, &hal, &rng, &cc) == MPOS_OK ? 0 : -1;
}

static int close_ks(void **state)
{
    (void)state;
    mpos_keystore_close(&ks);
    return 0;
}

static void reopen(void)
{
    mpos_keystore_close(&ks);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
}

/* Imports the AES key of bdk_hex (working keys wk) and sets the checker up for it. */
static void import_aes(const char *bdk_hex, const char *ikid_hex, enum mpos_dukpt_aes_key_type wk)
{
    uint8_t bdk[32], ikid[8], ik[32];
    size_t bdk_len = tu_hex(bdk_hex, bdk, sizeof(bdk));
    tu_hex(ikid_hex, ikid, sizeof(ikid));
    ks_check_init(&chk, &cc, MPOS_KEYSTORE_DUKPT_AES, bdk, bdk_len, ikid, wk);
    size_t ik_len = ks_check_initial_key(&chk, ik);
    assert_int_equal(ik_len, bdk_len);
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, ik_len, ikid, wk), MPOS_OK);
    MPOS_WIPE_BUFFER(ik);
}

static void import_tdes(const char *bdk_hex, const char *iksn_hex)
{
    uint8_t bdk[16], iksn[10], ipek[32];
    tu_hex(bdk_hex, bdk, sizeof(bdk));
    tu_hex(iksn_hex, iksn, sizeof(iksn));
    ks_check_init(&chk, &cc, MPOS_KEYSTORE_DUKPT_TDES, bdk, 16, iksn,
                  (enum mpos_dukpt_aes_key_type)0);
    assert_int_equal(ks_check_initial_key(&chk, ipek), 16);
    assert_int_equal(mpos_keystore_import_dukpt_tdes(&ks, ipek, iksn), MPOS_OK);
    MPOS_WIPE_BUFFER(ipek);
}

/* One transaction, checked against the host and the stored state. */
static void txn_checked(void)
{
    mpos_keystore_txn txn;
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    if (ks_check_use(&chk, &txn) != 0 || ks_check_stored(&chk, &hal) != 0) {
        fail_msg("%s", chk.why);
    }
    mpos_keystore_txn_clear(&txn);
}

/* ---- opening and transactions ----------------------------------------------------------- */

static void test_fresh_store(void **state)
{
    (void)state;
    mpos_keystore_info info;
    mpos_keystore_txn txn;
    mpos_keystore_reversal r;
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.scheme, MPOS_KEYSTORE_NONE);
    assert_int_equal(info.sequence, 0);
    assert_false(info.has_device_key || info.activated || info.reversal_pending);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_reversal_get(&ks, &r), MPOS_HAL_NOT_FOUND);
    /* Opening wrote nothing. */
    size_t len;
    assert_null(mem_storage_peek(mem, MPOS_KEYSTORE_SLOT_KEYS, &len));
    assert_int_equal(mem->writes, 0);
    /* Arguments. */
    mpos_keystore other;
    assert_int_equal(mpos_keystore_open(&other, NULL, &rng, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_keystore_open(&other, &hal, NULL, &cc), MPOS_ERR_ARG);
    assert_int_equal(mpos_keystore_open(NULL, &hal, &rng, &cc), MPOS_ERR_ARG);
}

static void test_aes128_transactions(void **state)
{
    (void)state;
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    if (ks_check_stored(&chk, &hal) != 0) {
        fail_msg("%s", chk.why);
    }
    for (int i = 0; i < 40; i++) {
        txn_checked();
        if (i % 7 == 3) {
            reopen(); /* the state carries on after a restart */
        }
    }
    mpos_keystore_info info;
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.scheme, MPOS_KEYSTORE_DUKPT_AES);
    assert_int_equal(info.sequence, 40);
    assert_int_equal(info.next_counter, 41);
    assert_int_equal(info.ik_id_len, 8);
    assert_int_equal(chk.used[0], 1);
    assert_int_equal(chk.used[39], 40);
}

static void test_aes256_transactions(void **state)
{
    (void)state;
    import_aes(aes256_bdk, "1234567890123456", MPOS_DUKPT_AES_KEY_AES256);
    for (int i = 0; i < 20; i++) {
        txn_checked();
    }
    mpos_keystore_txn txn;
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    assert_int_equal(txn.cipher, MPOS_CIPHER_AES);
    assert_int_equal(txn.pin_key_len, 32);
    assert_int_equal(txn.ksn_len, 12);
    mpos_keystore_txn_clear(&txn);
}

static void test_aes_working_key_type(void **state)
{
    (void)state;
    uint8_t ik[16] = {1}, ikid[8] = {2};
    /* Working keys longer than the initial key, or not AES: refused. */
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_AES256),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_2TDEA),
                     MPOS_ERR_KEY);
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 15, ikid, MPOS_DUKPT_AES_KEY_AES128),
                     MPOS_ERR_KEY);
    assert_int_equal(mem->writes, 0);
    /* AES-256 initial key with AES-128 working keys. */
    import_aes(aes256_bdk, "00000000AABBCCDD", MPOS_DUKPT_AES_KEY_AES128);
    for (int i = 0; i < 5; i++) {
        txn_checked();
    }
}

static void test_tdes_transactions(void **state)
{
    (void)state;
    import_tdes(tdes_bdk, tdes_iksn);
    for (int i = 0; i < 40; i++) {
        txn_checked();
        if (i % 9 == 4) {
            reopen();
        }
    }
    mpos_keystore_info info;
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.scheme, MPOS_KEYSTORE_DUKPT_TDES);
    assert_int_equal(info.next_counter, 41);
    /* X9.24-1-2009 A.4: the PIN key of KSN FFFF9876543210E00001. */
    mpos_keystore_close(&ks);
    mem_storage_init(mem, 2);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    import_tdes(tdes_bdk, tdes_iksn);
    mpos_keystore_txn txn;
    uint8_t want[16], ksn[10];
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    tu_hex("FFFF9876543210E00001", ksn, sizeof(ksn));
    assert_memory_equal(txn.ksn, ksn, 10);
    tu_hex("042666B49184CF5C68DE9628D0397B36", want, sizeof(want));
    assert_memory_equal(txn.pin_key, want, 16);
    assert_int_equal(txn.counter, 1);
    assert_int_equal(txn.cipher, MPOS_CIPHER_TDES);
    mpos_keystore_txn_clear(&txn);
}

/* ---- master key / working keys ---------------------------------------------------------- */

static void wrap(enum mpos_cipher cipher, const uint8_t *tmk, const uint8_t *key, size_t len,
                 uint8_t *enc, uint8_t kcv[4], mpos_keystore_wrapped_key *w)
{
    assert_int_equal(mpos_mkwk_wrap(&cc, cipher, tmk, 16, key, len, enc, kcv, 4), MPOS_OK);
    w->enc = enc;
    w->key_len = len;
    w->kcv = kcv;
    w->kcv_len = 4;
}

static void mkwk_run(enum mpos_cipher cipher)
{
    uint8_t tmk[16], pik[16], mak[16], tdk[16];
    uint8_t epik[16], emak[16], etdk[16], kpik[4], kmak[4], ktdk[4];
    mpos_keystore_wrapped_key wpik, wmak, wtdk;
    mpos_keystore_txn txn;
    for (int i = 0; i < 16; i++) {
        tmk[i] = (uint8_t)(0x11 * (i + 1));
        pik[i] = (uint8_t)(0xA0 + i);
        mak[i] = (uint8_t)(0x50 + i);
        tdk[i] = (uint8_t)(0x30 + 3 * i);
    }
    assert_int_equal(mpos_keystore_import_tmk(&ks, MPOS_CIPHER_AES, tmk), MPOS_ERR_KEY);
    assert_int_equal(mpos_keystore_import_tmk(&ks, cipher, tmk), MPOS_OK);
    /* No working keys yet. */
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_STATE);
    wrap(cipher, tmk, pik, 16, epik, kpik, &wpik);
    wrap(cipher, tmk, mak, 16, emak, kmak, &wmak);
    wrap(cipher, tmk, tdk, 16, etdk, ktdk, &wtdk);
    /* A wrong check value: nothing installed. */
    kmak[0] ^= 1;
    assert_int_equal(mpos_keystore_install_working_keys(&ks, &wpik, &wmak, &wtdk), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_STATE);
    kmak[0] ^= 1;
    assert_int_equal(mpos_keystore_install_working_keys(&ks, &wpik, &wmak, &wtdk), MPOS_OK);
    reopen();
    for (uint32_t i = 1; i <= 3; i++) {
        assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
        assert_int_equal(txn.scheme, MPOS_KEYSTORE_MKWK);
        assert_int_equal(txn.cipher, cipher);
        assert_int_equal(txn.sequence, i);
        assert_int_equal(txn.ksn_len, 0);
        assert_memory_equal(txn.pin_key, pik, 16);
        assert_memory_equal(txn.mac_key[MPOS_KEYSTORE_REQUEST], mak, 16);
        assert_memory_equal(txn.mac_key[MPOS_KEYSTORE_RESPONSE], mak, 16);
        assert_memory_equal(txn.data_key[MPOS_KEYSTORE_REQUEST], tdk, 16);
        assert_int_equal(txn.data_key_len, 16);
        mpos_keystore_txn_clear(&txn);
    }
    /* A new sign-on without a TDK. */
    wrap(cipher, tmk, mak, 16, epik, kpik, &wpik);
    wrap(cipher, tmk, pik, 16, emak, kmak, &wmak);
    assert_int_equal(mpos_keystore_install_working_keys(&ks, &wpik, &wmak, NULL), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    assert_memory_equal(txn.pin_key, mak, 16);
    assert_int_equal(txn.data_key_len, 0);
    assert_int_equal(txn.sequence, 4);
    mpos_keystore_txn_clear(&txn);
    /* No clear TMK or working key in storage. */
    size_t len;
    const uint8_t *raw = mem_storage_peek(mem, MPOS_KEYSTORE_SLOT_KEYS, &len);
    assert_non_null(raw);
    for (size_t off = 0; off + 8 <= len; off++) {
        assert_false(memcmp(raw + off, tmk, 8) == 0 || memcmp(raw + off, pik, 8) == 0 ||
                     memcmp(raw + off, mak, 8) == 0);
    }
}

static void test_mkwk_tdes(void **state)
{
    (void)state;
    mkwk_run(MPOS_CIPHER_TDES);
}

static void test_mkwk_sm4(void **state)
{
    (void)state;
    mkwk_run(MPOS_CIPHER_SM4);
}

/* ---- import rules ----------------------------------------------------------------------- */

static void test_import_needs_retire(void **state)
{
    (void)state;
    mpos_keystore_info info;
    mpos_keystore_txn txn;
    uint8_t ik[16] = {0x42}, tmk[16] = {0x24}, iksn[10] = {0xFF};
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    txn_checked();
    txn_checked();
    uint64_t writes = mem->writes;
    /* Nothing replaces loaded keys implicitly. */
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 16, (const uint8_t *)"ABCDEFGH",
                                                    MPOS_DUKPT_AES_KEY_AES128),
                     MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_import_dukpt_tdes(&ks, ik, iksn), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_import_tmk(&ks, MPOS_CIPHER_TDES, tmk), MPOS_ERR_STATE);
    assert_int_equal(mem->writes, writes);
    /* The explicit, persisted step. */
    assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_OK);
    assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_STATE);
    reopen();
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.scheme, MPOS_KEYSTORE_NONE);
    assert_int_equal(info.sequence, 2);
    /* The retired key is gone from storage... */
    if (ks_check_stored(&chk, &hal) != 0) {
        fail_msg("%s", chk.why);
    }
    size_t len;
    const uint8_t *raw = mem_storage_peek(mem, MPOS_KEYSTORE_SLOT_KEYS, &len);
    assert_non_null(raw);
    assert_true(len < 400); /* no DUKPT state any more */
    /* ...and its ID can never be loaded again (it would repeat its KSNs). */
    uint8_t ikid[8], bdk[16], again[16];
    tu_hex(aes_ikid, ikid, sizeof(ikid));
    tu_hex(aes128_bdk, bdk, sizeof(bdk));
    assert_int_equal(mpos_dukpt_aes_initial_key(&cc, bdk, 16, ikid, again), MPOS_OK);
    assert_int_equal(
        mpos_keystore_import_dukpt_aes(&ks, again, 16, ikid, MPOS_DUKPT_AES_KEY_AES128),
        MPOS_ERR_KSN);
    /* A new key starts at counter 1; the sequence number carries on. */
    import_aes(aes128_bdk, "1234567890123457", MPOS_DUKPT_AES_KEY_AES128);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    assert_int_equal(txn.counter, 1);
    assert_int_equal(txn.sequence, 3);
    mpos_keystore_txn_clear(&txn);
    /* TDES: the initial KSN, counter bits ignored, is remembered the same way. */
    assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_OK);
    import_tdes(tdes_bdk, tdes_iksn);
    txn_checked();
    assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_OK);
    uint8_t ipek[32];
    tu_hex("FFFF9876543210E00005", iksn, sizeof(iksn));
    assert_int_equal(ks_check_initial_key(&chk, ipek), 16);
    assert_int_equal(mpos_keystore_import_dukpt_tdes(&ks, ipek, iksn), MPOS_ERR_KSN);
    MPOS_WIPE_BUFFER(again);
    MPOS_WIPE_BUFFER(ipek);
}

static void test_retired_history_limit(void **state)
{
    (void)state;
    uint8_t ik[16], ikid[8] = {0};
    memset(ik, 0x5A, sizeof(ik));
    /* MPOS_KEYSTORE_IK_HISTORY + 1 keys: all refused again while remembered. */
    for (int i = 0; i <= MPOS_KEYSTORE_IK_HISTORY; i++) {
        ikid[7] = (uint8_t)i;
        assert_int_equal(
            mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_AES128), MPOS_OK);
        assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_OK);
    }
    reopen();
    for (int i = 1; i <= MPOS_KEYSTORE_IK_HISTORY; i++) {
        ikid[7] = (uint8_t)i;
        assert_int_equal(
            mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_AES128),
            MPOS_ERR_KSN);
    }
}

/* ---- a fully loaded store for the refusal tests ----------------------------------------- */

static uint8_t fake_cert[300];
static size_t fake_cert_len;

/* A DER-shaped certificate that carries pub (the key store only checks the point is in it). */
static void make_cert(const uint8_t pub[65])
{
    static const uint8_t spki_head[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                        0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                        0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    size_t n = 0;
    fake_cert[n++] = 0x30;
    fake_cert[n++] = 0x82;
    fake_cert[n++] = 0x00;
    fake_cert[n++] = 0x00;
    for (int i = 0; i < 40; i++) {
        fake_cert[n++] = (uint8_t)(0x40 + i);
    }
    memcpy(fake_cert + n, spki_head, sizeof(spki_head));
    n += sizeof(spki_head);
    memcpy(fake_cert + n, pub, 65);
    n += 65;
    for (int i = 0; i < 20; i++) {
        fake_cert[n++] = (uint8_t)i;
    }
    fake_cert[2] = (uint8_t)((n - 4) >> 8);
    fake_cert[3] = (uint8_t)(n - 4);
    fake_cert_len = n;
}

static mpos_keystore_reversal sample_reversal(uint32_t seq)
{
    mpos_keystore_reversal r;
    memset(&r, 0, sizeof(r));
    r.sequence = seq;
    r.txn_type = 1;
    r.amount = 12345;
    r.currency = 156;
    r.entry_mode = 0x05;
    r.reason = MPOS_REVERSAL_NO_RESPONSE;
    r.ksn_len = 12;
    memset(r.ksn, 0xAB, 12);
    strcpy(r.datetime, "20250101120000");
    strcpy(r.masked_pan, "621234******1234");
    return r;
}

static void load_everything(void)
{
    uint8_t pub[65];
    static const uint8_t ca[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    static const uint8_t param[] = {0x30, 0x03, 0x02, 0x01, 0x02};
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    txn_checked();
    txn_checked();
    assert_int_equal(mpos_keystore_generate_device_key(&ks, pub), MPOS_OK);
    make_cert(pub);
    assert_int_equal(mpos_keystore_set_certificate(&ks, fake_cert, fake_cert_len), MPOS_OK);
    assert_int_equal(mpos_keystore_set_trust(&ks, ca, sizeof(ca), param, sizeof(param)), MPOS_OK);
    assert_int_equal(mpos_keystore_set_activation(&ks, "898310048990001", "10000001"), MPOS_OK);
    mpos_keystore_reversal r = sample_reversal(2);
    assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_OK);
    mpos_keystore_close(&ks);
}

static const char *const slot_names[] = {MPOS_KEYSTORE_SLOT_KEYS, MPOS_KEYSTORE_SLOT_REVERSAL,
                                         MPOS_KEYSTORE_SLOT_DEVICE};

static int refused(int rc)
{
    return rc == MPOS_ERR_VERIFY || rc == MPOS_ERR_FORMAT || rc == MPOS_ERR_UNSUPPORTED;
}

static void test_corrupted_refused(void **state)
{
    (void)state;
    static uint8_t saved[MPOS_HAL_SLOT_MAX], bad[MPOS_HAL_SLOT_MAX];
    load_everything();
    uint64_t counters[MPOS_HAL_COUNTERS];
    memcpy(counters, mem->counters, sizeof(counters));
    size_t opens = 0;
    for (size_t s = 0; s < 3; s++) {
        size_t len;
        const uint8_t *raw = mem_storage_peek(mem, slot_names[s], &len);
        assert_non_null(raw);
        memcpy(saved, raw, len);
        /* Every byte (every 5th of the large device record), one bit flipped. */
        size_t stride = len > 2000 ? 5 : 1;
        for (size_t off = 0; off < len; off += stride) {
            memcpy(bad, saved, len);
            bad[off] ^= (uint8_t)(1u << (off % 8));
            mem_storage_poke(mem, slot_names[s], bad, len);
            int rc = mpos_keystore_open(&ks, &hal, &rng, &cc);
            if (!refused(rc)) {
                fail_msg("slot %s, byte %zu flipped: open returned %d", slot_names[s], off, rc);
            }
            opens++;
            /* Refused, not reset: storage is exactly as it was given. */
            size_t l2;
            const uint8_t *now = mem_storage_peek(mem, slot_names[s], &l2);
            assert_int_equal(l2, len);
            assert_memory_equal(now, bad, len);
            assert_memory_equal(mem->counters, counters, sizeof(counters));
        }
        /* Truncated, extended. */
        size_t cuts[] = {len - 1, len - 16, len - 17, 20, 1};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            mem_storage_poke(mem, slot_names[s], saved, cuts[i]);
            assert_true(refused(mpos_keystore_open(&ks, &hal, &rng, &cc)));
        }
        memcpy(bad, saved, len);
        bad[len] = 0;
        mem_storage_poke(mem, slot_names[s], bad, len + 1);
        assert_true(refused(mpos_keystore_open(&ks, &hal, &rng, &cc)));
        mem_storage_poke(mem, slot_names[s], saved, len);
    }
    /* A record in another slot's place (valid MAC, wrong type). */
    size_t klen, dlen;
    static uint8_t keys_rec[MPOS_HAL_SLOT_MAX];
    klen = peek_copy(MPOS_KEYSTORE_SLOT_KEYS, keys_rec);
    const uint8_t *dev = mem_storage_peek(mem, MPOS_KEYSTORE_SLOT_DEVICE, &dlen);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, dev, dlen);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_FORMAT);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, keys_rec, klen);
    /* Another device's storage key. */
    mem->device_key[0] ^= 1;
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    mem->device_key[0] ^= 1;
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    print_message("corruption: %zu corrupted records refused\n", opens);
}

static void test_factory_reset(void **state)
{
    (void)state;
    mpos_keystore_info info;
    load_everything();
    /* Corrupt the device record: the store is refused until an explicit reset. */
    size_t len;
    static uint8_t bad[MPOS_HAL_SLOT_MAX];
    len = peek_copy(MPOS_KEYSTORE_SLOT_DEVICE, bad);
    bad[100] ^= 0x80;
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_DEVICE, bad, len);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    uint64_t before[MPOS_HAL_COUNTERS];
    memcpy(before, mem->counters, sizeof(before));
    assert_int_equal(mpos_keystore_factory_reset(&ks, &hal, &rng, &cc), MPOS_OK);
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.scheme, MPOS_KEYSTORE_NONE);
    assert_false(info.has_device_key || info.activated || info.reversal_pending);
    /* The keys record was intact: its sequence and the loaded ID are kept. */
    assert_int_equal(info.sequence, 2);
    uint8_t ik[32], ikid[8];
    assert_int_equal(ks_check_initial_key(&chk, ik), 16);
    tu_hex(aes_ikid, ikid, sizeof(ikid));
    assert_int_equal(mpos_keystore_import_dukpt_aes(&ks, ik, 16, ikid, MPOS_DUKPT_AES_KEY_AES128),
                     MPOS_ERR_KSN);
    /* Every counter moved on: no earlier record can come back. */
    for (int i = 0; i < 3; i++) {
        assert_true(mem->counters[i] == before[i] + 1);
    }
    reopen();
    /* A store whose keys record is corrupt too starts from nothing. */
    mpos_keystore_close(&ks);
    len = peek_copy(MPOS_KEYSTORE_SLOT_KEYS, bad);
    bad[40] ^= 1;
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, bad, len);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_keystore_factory_reset(&ks, &hal, &rng, &cc), MPOS_OK);
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.sequence, 0);
    MPOS_WIPE_BUFFER(ik);
}

static void test_rollback_refused(void **state)
{
    (void)state;
    static uint8_t old_keys[MPOS_HAL_SLOT_MAX], old_rev[MPOS_HAL_SLOT_MAX];
    size_t klen, rlen;
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    txn_checked();
    mpos_keystore_reversal r = sample_reversal(1);
    assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_OK);
    klen = peek_copy(MPOS_KEYSTORE_SLOT_KEYS, old_keys);
    rlen = peek_copy(MPOS_KEYSTORE_SLOT_REVERSAL, old_rev);
    txn_checked();
    txn_checked();
    assert_int_equal(mpos_keystore_reversal_done(&ks, 1), MPOS_OK);
    mpos_keystore_close(&ks);
    /* An old copy of the keys record would give counter 2 again. */
    static uint8_t cur[MPOS_HAL_SLOT_MAX];
    size_t clen;
    clen = peek_copy(MPOS_KEYSTORE_SLOT_KEYS, cur);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, old_keys, klen);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_ROLLBACK);
    /* Deleting it is no way round. */
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, NULL, 0);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_ROLLBACK);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, cur, clen);
    /* Nor for the reversal: an old copy would resend an acknowledged reversal. */
    static uint8_t cur_rev[MPOS_HAL_SLOT_MAX];
    size_t crlen;
    crlen = peek_copy(MPOS_KEYSTORE_SLOT_REVERSAL, cur_rev);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_REVERSAL, old_rev, rlen);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_ROLLBACK);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_REVERSAL, cur_rev, crlen);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    txn_checked();
}

static void test_counter_repair(void **state)
{
    (void)state;
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    txn_checked();
    mpos_keystore_close(&ks);
    /* The record was durable, the counter increment lost: open completes it. */
    uint64_t c = mem->counters[MPOS_KEYSTORE_COUNTER_KEYS];
    mem->counters[MPOS_KEYSTORE_COUNTER_KEYS] = c - 1;
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    assert_int_equal(mem->counters[MPOS_KEYSTORE_COUNTER_KEYS], c);
    txn_checked();
    mpos_keystore_close(&ks);
    /* Two behind: the counter itself went back (or the record is from the future). */
    mem->counters[MPOS_KEYSTORE_COUNTER_KEYS] -= 2;
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_ERR_ROLLBACK);
    mem->counters[MPOS_KEYSTORE_COUNTER_KEYS] += 2;
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
}

/* ---- record format ---------------------------------------------------------------------- */

static void test_record_format(void **state)
{
    (void)state;
    static uint8_t buf[MPOS_HAL_SLOT_MAX];
    uint8_t enc[32], mac[32], iv[16] = {9};
    uint64_t gen;
    size_t len, blen;
    memset(enc, 1, sizeof(enc));
    memset(mac, 2, sizeof(mac));
    for (size_t body = 1; body <= 40; body++) {
        memset(buf + KS_HDR_LEN, 0x77, body);
        assert_int_equal(
            mpos_keystore_record_seal(&cc, enc, mac, iv, 3, 42, buf, sizeof(buf), body, &len),
            MPOS_OK);
        assert_int_equal(len, ks_record_len(body));
        assert_int_equal(len % 16, (KS_HDR_LEN + KS_MAC_LEN) % 16);
        assert_int_equal(mpos_keystore_record_open(&cc, enc, mac, 3, buf, len, &gen, &blen),
                         MPOS_OK);
        assert_int_equal(gen, 42);
        assert_int_equal(blen, body);
        for (size_t i = 0; i < body; i++) {
            assert_int_equal(buf[KS_HDR_LEN + i], 0x77);
        }
    }
    /* Wrong type; the MAC key or the encryption key of another device. */
    memset(buf + KS_HDR_LEN, 0x55, 17);
    assert_int_equal(mpos_keystore_record_seal(&cc, enc, mac, iv, 1, 7, buf, sizeof(buf), 17, &len),
                     MPOS_OK);
    static uint8_t copy[MPOS_HAL_SLOT_MAX];
    memcpy(copy, buf, len);
    assert_int_equal(mpos_keystore_record_open(&cc, enc, mac, 2, buf, len, &gen, &blen),
                     MPOS_ERR_FORMAT);
    memcpy(buf, copy, len);
    mac[5] ^= 1;
    assert_int_equal(mpos_keystore_record_open(&cc, enc, mac, 1, buf, len, &gen, &blen),
                     MPOS_ERR_VERIFY);
    mac[5] ^= 1;
    /* Fields changed and the MAC recomputed (as only a key holder could): still refused. */
    size_t padded = len - KS_HDR_LEN - KS_MAC_LEN;
    struct {
        size_t off;
        uint8_t val;
        int want;
    } cases[] = {
        {4, 2, MPOS_ERR_UNSUPPORTED}, /* version */
        {6, 1, MPOS_ERR_FORMAT},      /* reserved */
        {15, 0, MPOS_ERR_FORMAT},     /* generation 0 (7 -> 0) */
        {19, 16, MPOS_ERR_FORMAT},    /* length 16: byte 17 is not padding */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(buf, copy, len);
        buf[cases[i].off] = cases[i].val;
        assert_int_equal(mpos_cmac(&cc, MPOS_CIPHER_AES, mac, 32, buf, KS_HDR_LEN + padded,
                                   buf + KS_HDR_LEN + padded),
                         MPOS_OK);
        assert_int_equal(mpos_keystore_record_open(&cc, enc, mac, 1, buf, len, &gen, &blen),
                         cases[i].want);
    }
    /* Lengths: empty, too long, not the record's size. */
    assert_int_equal(mpos_keystore_record_seal(&cc, enc, mac, iv, 1, 1, buf, sizeof(buf), 0, &len),
                     MPOS_ERR_LENGTH);
    assert_int_equal(
        mpos_keystore_record_seal(&cc, enc, mac, iv, 1, 1, buf, sizeof(buf), KS_BODY_MAX + 1, &len),
        MPOS_ERR_LENGTH);
    assert_int_equal(mpos_keystore_record_seal(&cc, enc, mac, iv, 1, 1, buf, 60, 17, &len),
                     MPOS_ERR_LENGTH);
    memcpy(buf, copy, ks_record_len(17));
    assert_int_equal(
        mpos_keystore_record_open(&cc, enc, mac, 1, buf, ks_record_len(17) - 16, &gen, &blen),
        MPOS_ERR_FORMAT);
}

/* ---- reversal --------------------------------------------------------------------------- */

static void test_reversal(void **state)
{
    (void)state;
    mpos_keystore_reversal r = sample_reversal(7), got;
    assert_int_equal(mpos_keystore_reversal_done(&ks, 7), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_reversal_get(&ks, &got), MPOS_OK);
    assert_memory_equal(&got, &r, sizeof(r));
    /* One at a time; the same one may be updated. */
    mpos_keystore_reversal other = sample_reversal(8);
    assert_int_equal(mpos_keystore_reversal_store(&ks, &other), MPOS_ERR_STATE);
    r.attempts = 3;
    assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_reversal_get(&ks, &got), MPOS_OK);
    assert_int_equal(got.attempts, 3);
    assert_int_equal(mpos_keystore_reversal_done(&ks, 8), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_reversal_done(&ks, 7), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_reversal_get(&ks, &got), MPOS_HAL_NOT_FOUND);
    assert_int_equal(mpos_keystore_reversal_store(&ks, &other), MPOS_OK);
    /* Fields out of range. */
    struct {
        const char *what;
        mpos_keystore_reversal r;
    } bad[8];
    for (int i = 0; i < 8; i++) {
        bad[i].r = sample_reversal(9);
    }
    bad[0].r.sequence = 0;
    bad[1].r.txn_type = 5;
    bad[2].r.amount = 1000000000000ull;
    bad[3].r.currency = 1000;
    bad[4].r.ksn_len = 11;
    strcpy(bad[5].r.masked_pan, "6212345678901234"); /* a full PAN never goes to storage */
    strcpy(bad[6].r.datetime, "2025010112000");
    bad[7].r.reason = 9;
    mpos_keystore_close(&ks);
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    assert_int_equal(mpos_keystore_reversal_done(&ks, 8), MPOS_OK);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(mpos_keystore_reversal_store(&ks, &bad[i].r), MPOS_ERR_ARG);
    }
    /* No masked PAN, no KSN: allowed. */
    r = sample_reversal(10);
    memset(r.masked_pan, 0, sizeof(r.masked_pan));
    r.ksn_len = 0;
    memset(r.ksn, 0, sizeof(r.ksn));
    assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_reversal_get(&ks, &got), MPOS_OK);
    assert_memory_equal(&got, &r, sizeof(r));
}

/* ---- device identity -------------------------------------------------------------------- */

static void test_device_identity(void **state)
{
    (void)state;
    uint8_t pub[65], pub2[65], sig[64], peer_priv[32], peer_pub[65], s1[32], s2[32];
    const uint8_t *p, *q;
    size_t n, m;
    static const uint8_t msg[] = "TLS 1.3, client CertificateVerify";
    assert_int_equal(mpos_keystore_device_public(&ks, pub), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_sign(&ks, msg, sizeof(msg), sig), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_set_certificate(&ks, msg, sizeof(msg)), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_generate_device_key(&ks, pub), MPOS_OK);
    assert_int_equal(mpos_keystore_generate_device_key(&ks, pub2), MPOS_ERR_STATE);
    reopen();
    assert_int_equal(mpos_keystore_device_public(&ks, pub2), MPOS_OK);
    assert_memory_equal(pub, pub2, 65);
    /* Signatures verify under the public key, through the TLS adapter too. */
    assert_int_equal(mpos_keystore_sign(&ks, msg, sizeof(msg), sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(pub, msg, sizeof(msg), sig), MPOS_OK);
    mpos_hal_tls_config cfg = {.sign = mpos_keystore_tls_sign, .sign_ctx = &ks};
    assert_int_equal(cfg.sign(cfg.sign_ctx, msg, 5, sig), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(pub, msg, 5, sig), MPOS_OK);
    /* ECDH agrees with the peer's side. */
    assert_int_equal(mpos_ec_p256_generate(peer_priv, peer_pub), MPOS_OK);
    assert_int_equal(mpos_keystore_ecdh(&ks, peer_pub, s1), MPOS_OK);
    assert_int_equal(mpos_ecdh_p256(peer_priv, pub, s2), MPOS_OK);
    assert_memory_equal(s1, s2, 32);
    peer_pub[10] ^= 1;
    assert_int_equal(mpos_keystore_ecdh(&ks, peer_pub, s1), MPOS_ERR_KEY);
    /* The certificate must carry the device key. */
    make_cert(peer_pub);
    assert_int_equal(mpos_keystore_set_certificate(&ks, fake_cert, fake_cert_len), MPOS_ERR_KEY);
    assert_int_equal(mpos_keystore_certificate(&ks, &p, &n), MPOS_ERR_STATE);
    make_cert(pub);
    assert_int_equal(mpos_keystore_set_certificate(&ks, fake_cert, fake_cert_len), MPOS_OK);
    assert_int_equal(mpos_keystore_set_certificate(&ks, fake_cert, MPOS_KEYSTORE_CERT_MAX + 1),
                     MPOS_ERR_LENGTH);
    /* Trust anchors. */
    static uint8_t ca[MPOS_KEYSTORE_CERT_MAX];
    memset(ca, 0xC4, sizeof(ca));
    assert_int_equal(mpos_keystore_trust(&ks, &p, &n, &q, &m), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_set_trust(&ks, ca, 0, NULL, 0), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_keystore_set_trust(&ks, ca, sizeof(ca), NULL, 0), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_certificate(&ks, &p, &n), MPOS_OK);
    assert_int_equal(n, fake_cert_len);
    assert_memory_equal(p, fake_cert, n);
    assert_int_equal(mpos_keystore_trust(&ks, &p, &n, &q, &m), MPOS_OK);
    assert_int_equal(n, sizeof(ca));
    assert_memory_equal(p, ca, n);
    assert_null(q);
    assert_int_equal(m, 0);
    assert_int_equal(mpos_keystore_set_trust(&ks, ca, 10, ca + 10, 20), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_trust(&ks, &p, &n, &q, &m), MPOS_OK);
    assert_int_equal(n, 10);
    assert_int_equal(m, 20);
    /* The private key is not in storage in clear. (Its public half is not either: the
     * record is encrypted.) */
    size_t len;
    const uint8_t *raw = mem_storage_peek(mem, MPOS_KEYSTORE_SLOT_DEVICE, &len);
    assert_non_null(raw);
    for (size_t off = 0; off + 16 <= len; off++) {
        assert_false(memcmp(raw + off, ks.dev.priv, 16) == 0);
        assert_false(memcmp(raw + off, pub + 1, 16) == 0);
    }
    MPOS_WIPE_BUFFER(peer_priv);
}

static void test_activation(void **state)
{
    (void)state;
    char mid[16], tid[9];
    mpos_keystore_info info;
    assert_int_equal(mpos_keystore_activation(&ks, mid, tid), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_deactivate(&ks), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_set_activation(&ks, "89831004899000", "10000001"), MPOS_ERR_ARG);
    assert_int_equal(mpos_keystore_set_activation(&ks, "8983100489900012", "10000001"),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_keystore_set_activation(&ks, "898310048990001", "1000000\n"),
                     MPOS_ERR_ARG);
    assert_int_equal(mpos_keystore_set_activation(&ks, "898310048990001", "10000001"), MPOS_OK);
    assert_int_equal(mpos_keystore_set_activation(&ks, "898310048990002", "10000002"),
                     MPOS_ERR_STATE);
    reopen();
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_true(info.activated);
    assert_int_equal(mpos_keystore_activation(&ks, mid, tid), MPOS_OK);
    assert_string_equal(mid, "898310048990001");
    assert_string_equal(tid, "10000001");
    assert_int_equal(mpos_keystore_deactivate(&ks), MPOS_OK);
    reopen();
    assert_int_equal(mpos_keystore_activation(&ks, mid, tid), MPOS_ERR_STATE);
    assert_int_equal(mpos_keystore_set_activation(&ks, "898310048990002", "10000002"), MPOS_OK);
}

/* ---- keys in storage -------------------------------------------------------------------- */

static void test_no_clear_key_in_storage(void **state)
{
    (void)state;
    uint8_t ik[16], ikid[8], bdk[16];
    mpos_dukpt_aes_terminal shadow;
    mpos_keystore_txn txn;
    uint8_t ksn[12];
    tu_hex(aes128_bdk, bdk, sizeof(bdk));
    tu_hex(aes_ikid, ikid, sizeof(ikid));
    assert_int_equal(mpos_dukpt_aes_initial_key(&cc, bdk, 16, ikid, ik), MPOS_OK);
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    /* A shadow terminal in step with the key store knows every register it holds. */
    assert_int_equal(mpos_dukpt_aes_terminal_load(&shadow, &cc, ik, 16, ikid), MPOS_OK);
    for (int t = 0; t < 10; t++) {
        assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
        assert_int_equal(mpos_dukpt_aes_terminal_next(&shadow, &cc, ksn), MPOS_OK);
        assert_memory_equal(ksn, txn.ksn, 12);
        for (size_t s = 0; s < 3; s++) {
            size_t len;
            const uint8_t *raw = mem_storage_peek(mem, slot_names[s], &len);
            for (size_t off = 0; raw != NULL && off + 16 <= len; off++) {
                assert_false(memcmp(raw + off, ik, 16) == 0);
                assert_false(memcmp(raw + off, shadow.current, 16) == 0);
                assert_false(memcmp(raw + off, txn.pin_key, 16) == 0);
                for (int p = 0; p < MPOS_DUKPT_AES_REGISTERS; p++) {
                    if (shadow.registers[p][0] | shadow.registers[p][1]) {
                        assert_false(memcmp(raw + off, shadow.registers[p], 16) == 0);
                    }
                }
            }
        }
        /* And the key store holds no key of the transaction after returning it. */
        assert_true(ks.k.aes.counter == 0);
        static const uint8_t zero[32];
        assert_memory_equal(ks.k.aes.current, zero, 32);
        mpos_keystore_txn_clear(&txn);
    }
    mpos_dukpt_aes_terminal_clear(&shadow);
    MPOS_WIPE_BUFFER(ik);
}

/* ---- the end of the counter space ------------------------------------------------------- */

/* A keys record holding state (AES DUKPT, next counter `first`), sealed as the key store
 * would with the generation one above the slot's counter (a write whose counter increment
 * was cut off: open completes it). */
static void put_aes_state_at(uint32_t first, uint32_t sequence)
{
    static uint8_t rec[MPOS_HAL_SLOT_MAX];
    uint8_t enc[32], mac[32], iv[16] = {0}, ik[32];
    mpos_dukpt_aes_terminal t;
    const size_t payload = 12 + MPOS_KEYSTORE_IK_HISTORY * (MPOS_KEYSTORE_IK_ID_MAX + 2);
    size_t len;
    assert_int_equal(ks_check_initial_key(&chk, ik), 16);
    assert_int_equal(mpos_dukpt_aes_terminal_load_at(&t, &cc, ik, 16, chk.ik_id, first), MPOS_OK);
    uint8_t *body = rec + KS_HDR_LEN;
    memset(body, 0, payload);
    body[0] = MPOS_KEYSTORE_DUKPT_AES;
    body[1] = MPOS_DUKPT_AES_KEY_AES128;
    mpos_store_be32(body + 4, sequence);
    assert_int_equal(mpos_dukpt_aes_terminal_export(&t, body + payload), MPOS_OK);
    assert_int_equal(
        hal.derive_key(hal.ctx, (const uint8_t *)KS_LABEL_ENC, sizeof(KS_LABEL_ENC) - 1, enc, 32),
        MPOS_OK);
    assert_int_equal(
        hal.derive_key(hal.ctx, (const uint8_t *)KS_LABEL_MAC, sizeof(KS_LABEL_MAC) - 1, mac, 32),
        MPOS_OK);
    assert_int_equal(mpos_keystore_record_seal(&cc, enc, mac, iv, KS_TYPE_KEYS,
                                               mem->counters[MPOS_KEYSTORE_COUNTER_KEYS] + 1, rec,
                                               sizeof(rec), payload + MPOS_DUKPT_AES_STATE_LEN,
                                               &len),
                     MPOS_OK);
    mem_storage_poke(mem, MPOS_KEYSTORE_SLOT_KEYS, rec, len);
    mpos_dukpt_aes_terminal_clear(&t);
    MPOS_WIPE_BUFFER(ik);
    MPOS_WIPE_BUFFER(enc);
    MPOS_WIPE_BUFFER(mac);
}

static void test_exhausted(void **state)
{
    (void)state;
    mpos_keystore_txn txn;
    mpos_keystore_info info;
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    mpos_keystore_close(&ks);
    /* X9.24-3-2017 6.1: FFFF0000 is the last counter a terminal uses. */
    put_aes_state_at(MPOS_DUKPT_AES_LAST_COUNTER, 100);
    uint64_t counter = mem->counters[MPOS_KEYSTORE_COUNTER_KEYS];
    assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
    assert_int_equal(mem->counters[MPOS_KEYSTORE_COUNTER_KEYS], counter + 1);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    assert_int_equal(txn.counter, MPOS_DUKPT_AES_LAST_COUNTER);
    assert_int_equal(txn.sequence, 101);
    if (ks_check_use(&chk, &txn) != 0 || ks_check_stored(&chk, &hal) != 0) {
        fail_msg("%s", chk.why);
    }
    uint64_t writes = mem->writes;
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_EXHAUSTED);
    assert_int_equal(mem->writes, writes); /* nothing written, no sequence number used */
    reopen();
    assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_OK);
    assert_int_equal(info.next_counter, 0);
    assert_int_equal(info.sequence, 101);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_EXHAUSTED);
    /* The device needs a new key: retire, then import. */
    assert_int_equal(mpos_keystore_retire_keys(&ks), MPOS_OK);
    import_aes(aes128_bdk, "1234567890ABCDEF", MPOS_DUKPT_AES_KEY_AES128);
    assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_OK);
    assert_int_equal(txn.counter, 1);
    assert_int_equal(txn.sequence, 102);
    mpos_keystore_txn_clear(&txn);
}

/* ---- a storage error -------------------------------------------------------------------- */

static void test_failed_state(void **state)
{
    (void)state;
    mpos_keystore_txn txn;
    mpos_keystore_info info;
    static const uint8_t zero[sizeof(mpos_keystore_txn)];
    import_aes(aes128_bdk, aes_ikid, MPOS_DUKPT_AES_KEY_AES128);
    txn_checked();
    /* Each fault point of the next write, as an error the device survives. */
    for (uint64_t k = 1; k <= 7; k++) {
        mem->transient = 1;
        mem->crash_at = mem->points + k;
        memset(&txn, 0x5A, sizeof(txn));
        int rc = mpos_keystore_next_transaction(&ks, &txn);
        assert_int_equal(rc, MPOS_ERR_IO);
        /* No key came out, and the key store holds none any more. */
        assert_memory_equal(&txn, zero, sizeof(txn));
        assert_int_equal(mpos_keystore_next_transaction(&ks, &txn), MPOS_ERR_STATE);
        assert_int_equal(mpos_keystore_info_get(&ks, &info), MPOS_ERR_STATE);
        mpos_keystore_reversal r = sample_reversal(1);
        assert_int_equal(mpos_keystore_reversal_store(&ks, &r), MPOS_ERR_STATE);
        assert_memory_equal(ks.k.aes.registers, zero, 32);
        /* Storage says what was kept; transactions carry on without a repeat. */
        mem->transient = 0;
        mem->crash_at = 0;
        assert_int_equal(mpos_keystore_open(&ks, &hal, &rng, &cc), MPOS_OK);
        if (ks_check_stored(&chk, &hal) != 0) {
            fail_msg("after fault %u: %s", (unsigned)k, chk.why);
        }
        txn_checked();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_store, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_aes128_transactions, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_aes256_transactions, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_aes_working_key_type, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_tdes_transactions, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_mkwk_tdes, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_mkwk_sm4, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_import_needs_retire, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_retired_history_limit, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_corrupted_refused, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_factory_reset, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_rollback_refused, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_counter_repair, fresh, close_ks),
        cmocka_unit_test(test_record_format),
        cmocka_unit_test_setup_teardown(test_reversal, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_device_identity, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_activation, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_no_clear_key_in_storage, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_exhausted, fresh, close_ks),
        cmocka_unit_test_setup_teardown(test_failed_state, fresh, close_ks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
