/* Tests of the hsmd commands of docs/system-design.md section 3 (hsm/ops/sealed_ops.c) and of
 * key.from-components (hsm/ops/keys.c), over a vault opened from 2 components.
 *
 * The terminal side is the terminal's own code (terminal/core/txn/sealed.h with the DUKPT
 * terminal state of lib/dukpt) on the published DUKPT test BDKs (X9.24-3-2017 supplement:
 * AES BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID 1234567890123456; X9.24-1-2009
 * A.4: TDES BDK 0123456789ABCDEFFEDCBA9876543210, KSN FFFF9876543210E00000). The BDKs, the ZPK
 * and the ZEK enter the vault through key.from-components, so the test knows their clear value
 * and checks the PIN block and the track 2 it gets back with lib/ independently. The cards
 * come from shared/testdata/cards.tsv at run time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/dukpt.h"
#include "mpos/ecc.h"
#include "mpos/kcv.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "msr/msr.h"
#include "ops.h"
#include "sealed_testkit.h"
#include "test_cards.h"
#include "test_fixture.h"
#include "testutil.h"
#include "txn/sealed.h"

static hsm_vault V;
static mpos_crypto_ctx cc;

#define AES_BDK  STK_AES_BDK128
#define TDES_BDK STK_TDES_BDK
/* Zone keys of the test (odd parity, K1 != K2). */
#define ZPK_HEX "89ABCDEF012345670123456789ABCDEF"
#define ZEK_HEX "FEDCBA98765432100123456789ABCDEF"

static int group_setup(void **state)
{
    (void)state;
    return hsm_test_open(&V, &cc);
}

static int group_teardown(void **state)
{
    (void)state;
    hsm_test_close(&V, &cc);
    return 0;
}

/* A key under the LMK from the clear hex value, as key.from-components forms it: component 1
 * random-looking, component 2 = key XOR component 1. */
static int from_hex(const char *usage, char alg, char mode, uint8_t dukpt, const char *hex,
                    struct hsm_kb_out *out)
{
    struct hsm_key_from_components_req req;
    struct hsm_key_from_components_resp resp;
    uint8_t key[HSM_KEY_MAX_LEN];
    memset(&req, 0, sizeof(req));
    req.key_len = tu_hex(hex, key, sizeof(key));
    memcpy(req.attr.usage, usage, 3);
    req.attr.algorithm = alg;
    req.attr.mode = mode;
    req.attr.exportability = 'N';
    req.attr.dukpt = dukpt;
    req.n = 2;
    for (size_t i = 0; i < req.key_len; i++) {
        req.comp[0][i] = (uint8_t)(0x5A ^ (i * 37));
        req.comp[1][i] = (uint8_t)(key[i] ^ req.comp[0][i]);
    }
    int rc = hsm_op_key_from_components(&V, &req, &resp);
    if (rc == MPOS_OK) {
        *out = resp.key;
    }
    mpos_cleanse(key, sizeof(key));
    return rc;
}

/* ---- key.from-components ------------------------------------------------------------------ */

static void test_key_from_components(void **state)
{
    struct hsm_key_from_components_req req;
    struct hsm_key_from_components_resp resp;
    uint8_t want[16], kcv[5];
    (void)state;
    /* Two TDES components: the key is their XOR with odd parity; each check value is the
     * legacy KCV of the component, the result's the KCV of the key. */
    memset(&req, 0, sizeof(req));
    memcpy(req.attr.usage, "K0", 3);
    req.attr.algorithm = 'T';
    req.attr.mode = 'B';
    req.attr.exportability = 'E';
    req.key_len = 16;
    req.n = 2;
    tu_hex("0123456789ABCDEFFEDCBA9876543210", req.comp[0], 16);
    tu_hex("1F1F1F1F0E0E0E0E1F1F1F1F0E0E0E0E", req.comp[1], 16);
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_OK);
    for (size_t i = 0; i < 16; i++) {
        want[i] = (uint8_t)(req.comp[0][i] ^ req.comp[1][i]);
    }
    mpos_des_set_odd_parity(want, 16);
    assert_int_equal(resp.kcv_len, 3);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, want, 16, kcv, 3),
                     MPOS_OK);
    assert_memory_equal(resp.kcv, kcv, 3);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(
            mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, req.comp[i], 16, kcv, 3),
            MPOS_OK);
        assert_memory_equal(resp.comp_kcv[i], kcv, 3);
    }
    /* The block is an authentic K0 key whose own check value is the one reported. */
    hsm_key k;
    static const char *const k0[] = {"K0", NULL};
    struct hsm_key_need need = {k0, "T", 'E'};
    assert_int_equal(hsm_key_load(&V, resp.key.text, resp.key.len, &need, &k), MPOS_OK);
    assert_memory_equal(k.bytes, want, 16);
    hsm_key_clear(&k);

    /* Three AES-256 components for an AES BDK (CMAC check values, 5 bytes). */
    memset(&req, 0, sizeof(req));
    memcpy(req.attr.usage, "B0", 3);
    req.attr.algorithm = 'A';
    req.attr.mode = 'X';
    req.attr.exportability = 'N';
    req.attr.dukpt = 1;
    req.key_len = 32;
    req.n = 3;
    for (size_t i = 0; i < 32; i++) {
        req.comp[0][i] = (uint8_t)i;
        req.comp[1][i] = (uint8_t)(0xA5 + i);
        req.comp[2][i] = (uint8_t)(0x3C * i + 1);
    }
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_OK);
    assert_int_equal(resp.kcv_len, 5);
    assert_int_equal(mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, req.comp[2], 32, kcv, 5),
                     MPOS_OK);
    assert_memory_equal(resp.comp_kcv[2], kcv, 5);

    /* Refused: one component, a zero one, two equal ones (their XOR is zero: also the
     * all-zero key), an EC key, a length the algorithm does not take, a B0 without scheme. */
    req.n = 1;
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_LENGTH);
    assert_true(hsm_test_all_zero(&resp, sizeof(resp)));
    req.n = 3;
    memset(req.comp[1], 0, 32);
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_KEY);
    memcpy(req.comp[1], req.comp[0], 32);
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_KEY);
    assert_true(hsm_test_all_zero(&resp, sizeof(resp)));
    req.comp[1][0] ^= 1;
    req.key_len = 20;
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_KEY);
    req.key_len = 32;
    req.attr.dukpt = 0;
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_ARG);
    req.attr.dukpt = 1;
    req.attr.algorithm = 'E';
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_ARG);
    /* TDES halves that are equal after the XOR: single DES in disguise. */
    memset(&req, 0, sizeof(req));
    memcpy(req.attr.usage, "P0", 3);
    req.attr.algorithm = 'T';
    req.attr.mode = 'B';
    req.attr.exportability = 'N';
    req.key_len = 16;
    req.n = 2;
    tu_hex("0123456789ABCDEF0123456789ABCDEF", req.comp[0], 16);
    tu_hex("11111111111111111111111111111110", req.comp[1], 16);
    assert_int_equal(hsm_op_key_from_components(&V, &req, &resp), MPOS_ERR_KEY);
}

/* ---- a terminal ----------------------------------------------------------------------------- */

/* The terminal (sealed_testkit.h) and its BDK as hsmd holds it. */
struct term {
    struct stk_term t;
    struct hsm_kb_out bdk;
};

static void term_init(struct term *t, enum mpos_sealed_scheme scheme)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(stk_term_published(&t->t, &cc, scheme), MPOS_OK);
    if (scheme == MPOS_SEALED_TDES) {
        assert_int_equal(from_hex("B0", 'T', 'X', 2, TDES_BDK, &t->bdk), MPOS_OK);
    } else {
        assert_int_equal(from_hex("B0", 'A', 'X', 1, AES_BDK, &t->bdk), MPOS_OK);
    }
}

static void term_next(struct term *t)
{
    assert_int_equal(stk_term_next(&t->t), MPOS_OK);
}

/* Field 55 with cryptogram objects, the PSN, and objects that must never leave hsmd in clear
 * (track 2 57, expiry 5F24, 9F1F track 1 discretionary data). */
static size_t field55(const mpos_sealed_card *card, uint8_t *out, size_t cap)
{
    size_t len = 0;
    static const uint8_t arqc[8] = {0x8A, 0x91, 0x2C, 0x3D, 0x11, 0x05, 0x7E, 0x42};
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F26, arqc, 8), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F27, (const uint8_t *)"\x80", 1), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x57, card->track2, card->track2_len), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x5F24, (const uint8_t *)"\x30\x12\x31", 3),
                     MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F36, (const uint8_t *)"\x00\x2A", 2), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F1F, (const uint8_t *)"1234", 4), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x5F34, (const uint8_t *)"\x01", 1), MPOS_OK);
    return len;
}

static void sale(struct term *t, const struct tc_card *c, uint8_t entry, mpos_sealed_request *q)
{
    stk_request(q, MPOS_SEALED_MSG_REQUEST, 4242, 12345);
    q->entry_mode = entry;
    q->has_location = 1;
    q->location.lat_e7 = -312304170;
    q->location.lon_e7 = 1214737000;
    q->location.accuracy_m = 12;
    q->location.time = 1768469400ull;
    assert_int_equal(stk_card_read(c, &q->card), MPOS_OK);
    if (entry == MPOS_ENTRY_CHIP) {
        q->card.emv_len = field55(&q->card, q->card.emv, sizeof(q->card.emv));
    }
    assert_int_equal(stk_term_pin(&t->t, c->pin, c->pan, q), MPOS_OK);
}

static uint8_t msg[MPOS_SEALED_MAX_REQUEST_LEN];
static size_t msg_len;
static struct hsm_sealed_open_resp open_resp;

static void seal(struct term *t, const mpos_sealed_request *q)
{
    assert_int_equal(
        mpos_sealed_seal_request(&cc, &t->t.req_keys, q, NULL, NULL, msg, sizeof(msg), &msg_len),
        MPOS_OK);
}

static void check_open(struct term *t, const struct tc_card *c, const mpos_sealed_request *q,
                       const struct hsm_sealed_open_resp *r, int with_keys)
{
    const struct hsm_sealed_fields *f = &r->fields;
    assert_int_equal(f->msg_type, MPOS_SEALED_MSG_REQUEST);
    assert_int_equal(f->reversal_reason, 0); /* a request has none */
    assert_int_equal(f->scheme, t->t.scheme);
    assert_int_equal(f->ksn_len, t->t.ksn_len);
    assert_memory_equal(f->ksn, t->t.ksn, t->t.ksn_len);
    assert_int_equal(f->sequence, 4242);
    assert_int_equal(f->txn_type, MPOS_LINK_TXN_SALE);
    assert_true(f->amount == 12345);
    assert_int_equal(f->currency, 156);
    assert_string_equal(f->merchant_id, "898310048990001");
    assert_string_equal(f->terminal_id, "10000001");
    assert_string_equal(f->datetime, "20260115093000");
    assert_int_equal(f->entry_mode, q->entry_mode);
    assert_int_equal(f->fallback, 0);
    assert_int_equal(f->has_location, 1);
    assert_int_equal(f->lat_e7, -312304170);
    assert_int_equal(f->lon_e7, 1214737000);
    assert_int_equal(f->accuracy_m, 12);
    assert_true(f->location_time == 1768469400ull);
    assert_string_equal(f->original_ref, "");
    /* Masked PAN: first 6, last 4. */
    size_t pl = strlen(c->pan);
    assert_int_equal(strlen(f->masked_pan), pl);
    assert_memory_equal(f->masked_pan, c->pan, 6);
    assert_memory_equal(f->masked_pan + pl - 4, c->pan + pl - 4, 4);
    assert_string_equal(r->pan, c->pan);
    /* The PAN hash is pan.hash's. */
    struct hsm_pan_hash_req hq;
    struct hsm_pan_hash_resp hr;
    strcpy(hq.pan, c->pan);
    assert_int_equal(hsm_op_pan_hash(&V, &hq, &hr), MPOS_OK);
    assert_int_equal(r->has_pan_hash, 1);
    assert_memory_equal(r->pan_hash, hr.hash, 32);
    assert_int_equal(r->has_pin, 1);
    if (!with_keys) {
        assert_int_equal(r->pin_block_len, 0);
        assert_int_equal(r->track2_enc_len, 0);
        return;
    }
    /* The PIN block is format 0 under the ZPK and holds the card's PIN. */
    uint8_t zpk[16], zek[16], plain[24];
    char pin[MPOS_PIN_BUF_LEN];
    tu_hex(ZPK_HEX, zpk, 16);
    tu_hex(ZEK_HEX, zek, 16);
    assert_int_equal(r->pin_block_len, 8);
    assert_int_equal(mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, zpk, 16,
                                            r->pin_block, 8, c->pan, pin),
                     MPOS_OK);
    assert_string_equal(pin, c->pin);
    /* Track 2 under the ZEK: TDES-CBC, the IV given, padding method 2. */
    size_t want = ((q->card.track2_len + 1 + 7) / 8) * 8;
    assert_int_equal(r->track2_enc_len, want);
    assert_int_equal(mpos_cipher_cbc(&cc, MPOS_CIPHER_TDES, 0, zek, 16, r->track2_iv, r->track2_enc,
                                     plain, want),
                     MPOS_OK);
    assert_memory_equal(plain, q->card.track2, q->card.track2_len);
    assert_int_equal(plain[q->card.track2_len], 0x80);
    assert_true(hsm_test_all_zero(plain + q->card.track2_len + 1, want - q->card.track2_len - 1));
    mpos_cleanse(pin, sizeof(pin));
    mpos_cleanse(plain, sizeof(plain));
}

/* Searches for needle in hay. */
static int contains(const void *hay, size_t n, const void *needle, size_t m)
{
    const uint8_t *h = hay;
    for (size_t i = 0; m > 0 && i + m <= n; i++) {
        if (memcmp(h + i, needle, m) == 0) {
            return 1;
        }
    }
    return 0;
}

static void sealed_roundtrip(enum mpos_sealed_scheme scheme)
{
    const struct tc_card *c;
    STK_NEED_CARD(c, "approve");
    struct term t;
    struct hsm_kb_out zpk, zek, other_bdk;
    static mpos_sealed_request q;
    struct hsm_sealed_open_req req;
    term_init(&t, scheme);
    term_next(&t);
    term_next(&t);
    assert_int_equal(from_hex("P0", 'T', 'B', 0, ZPK_HEX, &zpk), MPOS_OK);
    assert_int_equal(from_hex("D0", 'T', 'B', 0, ZEK_HEX, &zek), MPOS_OK);
    sale(&t, c, MPOS_ENTRY_CHIP, &q);
    seal(&t, &q);

    memset(&req, 0, sizeof(req));
    req.bdk = hsm_test_in(&t.bdk);
    req.sealed = msg;
    req.sealed_len = msg_len;
    /* Without zone keys: no PIN block, no track. */
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);
    check_open(&t, c, &q, &open_resp, 0);
    req.zpk = hsm_test_in(&zpk);
    req.zek = hsm_test_in(&zek);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);
    check_open(&t, c, &q, &open_resp, 1);
    assert_int_equal(open_resp.chip_card, 1);
    assert_string_equal(open_resp.psn, "01");
    /* EMV: the cryptogram objects and the PSN, in order; never 57, 5F24, 9F1F. */
    {
        uint8_t want[64];
        size_t wl = 0;
        static const uint8_t arqc[8] = {0x8A, 0x91, 0x2C, 0x3D, 0x11, 0x05, 0x7E, 0x42};
        assert_int_equal(mpos_tlv_put(want, sizeof(want), &wl, 0x9F26, arqc, 8), MPOS_OK);
        assert_int_equal(mpos_tlv_put(want, sizeof(want), &wl, 0x9F27, (const uint8_t *)"\x80", 1),
                         MPOS_OK);
        assert_int_equal(
            mpos_tlv_put(want, sizeof(want), &wl, 0x9F36, (const uint8_t *)"\x00\x2A", 2), MPOS_OK);
        assert_int_equal(mpos_tlv_put(want, sizeof(want), &wl, 0x5F34, (const uint8_t *)"\x01", 1),
                         MPOS_OK);
        assert_int_equal(open_resp.emv_len, wl);
        assert_memory_equal(open_resp.emv, want, wl);
    }
    /* Nothing of the track anywhere in the response. */
    assert_false(contains(&open_resp, sizeof(open_resp), q.card.track2, q.card.track2_len));

    /* A message whose MAC does not verify: MPOS_ERR_VERIFY, nothing returned; every byte of
     * the message (ciphertext, PIN block, clear fields, MAC) is covered. */
    for (size_t i = 0; i < msg_len; i += 7) {
        msg[i] ^= 0x01;
        int rc = hsm_op_sealed_open(&V, &req, &open_resp);
        assert_true(rc == MPOS_ERR_VERIFY || rc == MPOS_ERR_FORMAT);
        assert_true(hsm_test_all_zero(&open_resp, sizeof(open_resp)));
        msg[i] ^= 0x01;
    }
    msg[msg_len - 1] ^= 0x80; /* the MAC itself */
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_VERIFY);
    msg[msg_len - 1] ^= 0x80;
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);

    /* The BDK of the other DUKPT scheme is refused; a BDK of the same scheme but another
     * value does not verify the MAC. */
    if (scheme == MPOS_SEALED_TDES) {
        assert_int_equal(from_hex("B0", 'A', 'X', 1, AES_BDK, &other_bdk), MPOS_OK);
    } else {
        assert_int_equal(from_hex("B0", 'T', 'X', 2, TDES_BDK, &other_bdk), MPOS_OK);
    }
    req.bdk = hsm_test_in(&other_bdk);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_USAGE);
    if (scheme == MPOS_SEALED_TDES) {
        assert_int_equal(
            from_hex("B0", 'T', 'X', 2, "1123456789ABCDEFFEDCBA9876543210", &other_bdk), MPOS_OK);
    } else {
        assert_int_equal(
            from_hex("B0", 'A', 'X', 1, "FEDCBA9876543210F1F1F1F1F1F1F1F2", &other_bdk), MPOS_OK);
    }
    req.bdk = hsm_test_in(&other_bdk);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_VERIFY);
    /* Zone keys of the wrong kind: the ZPK as ZEK and back; an AES ZPK. */
    req.bdk = hsm_test_in(&t.bdk);
    req.zpk = hsm_test_in(&zek);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_USAGE);
    req.zpk = hsm_test_in(&zpk);
    req.zek = hsm_test_in(&zpk);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_USAGE);
    req.zek = hsm_test_in(&zek);
    assert_int_equal(from_hex("P0", 'A', 'B', 0, "00112233445566778899AABBCCDDEEFF", &other_bdk),
                     MPOS_OK);
    req.zpk = hsm_test_in(&other_bdk);
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_USAGE);
    req.zpk = hsm_test_in(&zpk);

    /* sealed.respond: the terminal opens the response with its own response keys. */
    struct hsm_sealed_respond_req rq;
    struct hsm_sealed_respond_resp rr;
    mpos_sealed_response back;
    memset(&rq, 0, sizeof(rq));
    rq.bdk = hsm_test_in(&t.bdk);
    rq.scheme = (uint8_t)scheme;
    memcpy(rq.ksn, t.t.ksn, t.t.ksn_len);
    rq.ksn_len = t.t.ksn_len;
    rq.sequence = 4242;
    strcpy(rq.response_code, "00");
    strcpy(rq.auth_code, "A1B2C3");
    strcpy(rq.rrn, "000000000042");
    strcpy(rq.arc, "00");
    rq.iad_len = 10;
    memcpy(rq.iad, "\x11\x22\x33\x44\x55\x66\x77\x88\x30\x30", 10);
    assert_int_equal(hsm_op_sealed_respond(&V, &rq, &rr), MPOS_OK);
    assert_int_equal(
        mpos_sealed_open_response(&cc, &t.t.resp_keys, 4242, rr.sealed, rr.sealed_len, &back),
        MPOS_OK);
    assert_string_equal(back.response_code, "00");
    assert_string_equal(back.auth_code, "A1B2C3");
    assert_string_equal(back.rrn, "000000000042");
    assert_string_equal(back.arc, "00");
    assert_int_equal(back.iad_len, 10);
    assert_memory_equal(back.iad, rq.iad, 10);
    /* Another sequence number, or a response sealed for another KSN, is no valid response. */
    assert_int_equal(
        mpos_sealed_open_response(&cc, &t.t.resp_keys, 4243, rr.sealed, rr.sealed_len, &back),
        MPOS_ERR_VERIFY);
    rq.ksn[rq.ksn_len - 1] ^= 0x01;
    assert_int_equal(hsm_op_sealed_respond(&V, &rq, &rr), MPOS_OK);
    assert_int_not_equal(
        mpos_sealed_open_response(&cc, &t.t.resp_keys, 4242, rr.sealed, rr.sealed_len, &back),
        MPOS_OK);
    rq.ksn[rq.ksn_len - 1] ^= 0x01;
    /* Fields the format refuses. */
    strcpy(rq.response_code, "0");
    assert_int_equal(hsm_op_sealed_respond(&V, &rq, &rr), MPOS_ERR_FORMAT);
    assert_true(hsm_test_all_zero(&rr, sizeof(rr)));
    strcpy(rq.response_code, "05");
    rq.iad_len = 4;
    assert_int_equal(hsm_op_sealed_respond(&V, &rq, &rr), MPOS_ERR_FORMAT);
    rq.iad_len = 0;
    rq.scheme = 0x33;
    assert_int_equal(hsm_op_sealed_respond(&V, &rq, &rr), MPOS_ERR_ARG);
    mpos_sealed_request_clear(&q);
    stk_term_clear(&t.t);
}

static void test_sealed_aes(void **state)
{
    (void)state;
    sealed_roundtrip(MPOS_SEALED_AES128);
}

static void test_sealed_tdes(void **state)
{
    (void)state;
    sealed_roundtrip(MPOS_SEALED_TDES);
}

/* Stripe reads: the chip-card flag follows the service code; no EMV data, no PSN. */
static void test_sealed_stripe(void **state)
{
    (void)state;
    const struct tc_card *chip;
    STK_NEED_CARD(chip, "approve");
    const struct tc_card *stripe;
    STK_NEED_CARD(stripe, "stripe-only");
    struct term t;
    static mpos_sealed_request q;
    struct hsm_sealed_open_req req;
    term_init(&t, MPOS_SEALED_TDES);
    for (int i = 0; i < 2; i++) {
        const struct tc_card *c = i == 0 ? chip : stripe;
        term_next(&t);
        sale(&t, c, MPOS_ENTRY_MAGSTRIPE, &q);
        seal(&t, &q);
        memset(&req, 0, sizeof(req));
        req.bdk = hsm_test_in(&t.bdk);
        req.sealed = msg;
        req.sealed_len = msg_len;
        assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);
        assert_int_equal(open_resp.chip_card, i == 0 ? 1 : 0);
        assert_int_equal(open_resp.emv_len, 0);
        assert_string_equal(open_resp.psn, "");
        assert_string_equal(open_resp.pan, c->pan);
        assert_int_equal(open_resp.fields.entry_mode, MPOS_ENTRY_MAGSTRIPE);
    }
    /* A reversal without a card: no PAN, no hash, no PIN; its reason, each of them, as the
     * terminal sealed it (docs/protocol.md 2.3 DF34). */
    for (uint8_t reason = MPOS_SEALED_REV_NO_RESPONSE; reason <= MPOS_SEALED_REV_CANCELLED;
         reason++) {
        term_next(&t);
        stk_request(&q, MPOS_SEALED_MSG_REVERSAL, 77, 100);
        q.reversal_reason = reason;
        q.entry_mode = MPOS_ENTRY_NONE;
        seal(&t, &q);
        req.sealed_len = msg_len;
        assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);
        assert_int_equal(open_resp.fields.msg_type, MPOS_SEALED_MSG_REVERSAL);
        assert_int_equal(open_resp.fields.reversal_reason, reason);
        assert_int_equal(open_resp.fields.sequence, 77);
        assert_string_equal(open_resp.pan, "");
        assert_string_equal(open_resp.fields.masked_pan, "");
        assert_int_equal(open_resp.has_pan_hash, 0);
        assert_int_equal(open_resp.has_pin, 0);
        assert_int_equal(open_resp.chip_card, 0);
        assert_int_equal(open_resp.fields.has_location, 0);
        /* The reason is MAC'd: changed in transit, the request does not open. */
        size_t at = msg_len - (3 + 8) - 1; /* TDES: an 8-byte MAC after it */
        assert_int_equal(msg[at], reason);
        msg[at] = (uint8_t)(reason % 4 + 1);
        assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_VERIFY);
        assert_int_equal(open_resp.fields.reversal_reason, 0);
    }
    /* docs/protocol.md 2.3 DF35: a retry (new KSN, same sequence, no PIN block) comes back with
     * its flag; the first send of the same transaction without it; the flag is MAC'd. */
    for (int retry = 0; retry <= 1; retry++) {
        term_next(&t);
        sale(&t, chip, MPOS_ENTRY_CHIP, &q);
        q.sequence = 78;
        if (retry) {
            q.retry = 1;
            q.has_pin = 0;
            q.pin_format = 0;
            q.pin_block_len = 0;
            memset(q.pin_block, 0, sizeof(q.pin_block));
        }
        seal(&t, &q);
        req.sealed_len = msg_len;
        assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_OK);
        assert_int_equal(open_resp.fields.msg_type, MPOS_SEALED_MSG_REQUEST);
        assert_int_equal(open_resp.fields.retry, retry);
        assert_int_equal(open_resp.fields.sequence, 78);
        assert_int_equal(open_resp.has_pin, !retry);
        if (retry) {
            size_t at = msg_len - (3 + 8) - 1; /* TDES: an 8-byte MAC after DF35 01 01 */
            assert_int_equal(msg[at - 2], 0x35);
            assert_int_equal(msg[at], 1);
            msg[at] = 0;
            assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_VERIFY);
            assert_int_equal(open_resp.fields.retry, 0);
        }
    }
    /* Garbage and oversized input. */
    req.sealed_len = 0;
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_LENGTH);
    req.sealed_len = HSM_SEALED_MAX_LEN + 1;
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_LENGTH);
    req.sealed_len = 20;
    assert_int_equal(hsm_op_sealed_open(&V, &req, &open_resp), MPOS_ERR_FORMAT);
    mpos_sealed_request_clear(&q);
}

/* ---- params.sign ------------------------------------------------------------------------- */

static void test_params_sign(void **state)
{
    (void)state;
    struct hsm_generate_key_req g;
    struct hsm_generate_key_resp key, aes;
    struct hsm_params_sign_req req;
    struct hsm_params_sign_resp resp;
    uint8_t data[64];
    size_t len = 0;
    memset(&g, 0, sizeof(g));
    memcpy(g.attr.usage, "S0", 3);
    g.attr.algorithm = 'E';
    g.attr.mode = 'S';
    g.attr.exportability = 'N';
    assert_int_equal(hsm_op_generate_key(&V, &g, &key), MPOS_OK);
    assert_int_equal(
        mpos_tlv_put(data, sizeof(data), &len, 0xE4, (const uint8_t *)"\xC1\x01\x01", 3), MPOS_OK);
    memset(&req, 0, sizeof(req));
    req.key = hsm_test_in(&key.key);
    req.data = data;
    req.data_len = len;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(key.ec_pub, data, len, resp.sig), MPOS_OK);
    assert_memory_equal(resp.pub, key.ec_pub, 65);
    assert_int_equal(resp.has_sig, 1);
    /* No data: the public key only. */
    req.data = NULL;
    req.data_len = 0;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_OK);
    assert_int_equal(resp.has_sig, 0);
    assert_memory_equal(resp.pub, key.ec_pub, 65);
    req.data = data;
    req.data_len = len;
    data[0] = 0xE6;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(key.ec_pub, data, len, resp.sig), MPOS_OK);
    /* Anything but one whole E6 / E4 object is refused. */
    data[0] = 0xE5;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_ERR_FORMAT);
    assert_true(hsm_test_all_zero(&resp, sizeof(resp)));
    data[0] = 0xE4;
    data[len] = 0x00;
    req.data_len = len + 1;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_ERR_FORMAT);
    memcpy(data + len, data, len); /* two objects */
    req.data_len = 2 * len;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_ERR_FORMAT);
    req.data_len = len - 1;
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_ERR_FORMAT);
    /* Only an EC signing key. */
    req.data_len = len;
    memset(&g, 0, sizeof(g));
    memcpy(g.attr.usage, "M6", 3);
    g.attr.algorithm = 'A';
    g.attr.mode = 'C';
    g.attr.exportability = 'N';
    g.key_len = 16;
    assert_int_equal(hsm_op_generate_key(&V, &g, &aes), MPOS_OK);
    req.key = hsm_test_in(&aes.key);
    assert_int_equal(hsm_op_params_sign(&V, &req, &resp), MPOS_ERR_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_from_components), cmocka_unit_test(test_sealed_aes),
        cmocka_unit_test(test_sealed_tdes),         cmocka_unit_test(test_sealed_stripe),
        cmocka_unit_test(test_params_sign),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
