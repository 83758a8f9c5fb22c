/* libFuzzer target: terminal/core/txn/sealed (the sealed request and response parsers).
 *
 * A forged MAC stops every message at the first check, so a raw fuzzer would never get past
 * it. The first input byte picks a mode and a key scheme (AES-128 or TDES); the keys are fixed
 * test keys that the key provider hands out for whatever KSN the message names:
 *   0  raw: the rest opened as a request and as a response (the MAC check is the wall);
 *   1  request re-MAC'd: the rest is a request without its MAC; the fuzzer appends the right
 *      MAC, so the clear-field, decryption and card-data parsers see arbitrary input. When it
 *      opens, sealing the decoded request again with the same IV must give back the very same
 *      bytes (one encoding per message: canonical TLV, padding, PAN and track formats);
 *   2  response re-MAC'd: the same for a response, opened with the KSN and sequence it names
 *      (and must re-seal to the same bytes);
 *   3  card data: the rest is the plaintext inside the encrypted field of a request whose
 *      clear part is fixed and valid (chip, then stripe entry mode): the card-data parser;
 *   4  structured: fields taken from the rest, sealed and opened: the decoded request must
 *      carry exactly those values, and any one-byte change must be refused.
 * Invariants everywhere: no crash or sanitizer report, results in the documented set, outputs
 * wiped on error.
 *
 * Build and run by hand (or configure with -DMPOS_FUZZ=ON):
 *   see fuzz/fuzz_link_frame.c; add terminal/core/txn/sealed.c and lib/'s dukpt, mac, tlv,
 *   crypto sources.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/mac.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "txn/sealed.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static mpos_crypto_ctx cc;
static int ready;

static const uint8_t req_mac_key[32] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                        0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xF0, 0x01};
static const uint8_t req_data_key[32] = {0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98,
                                         0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F, 0x10};
static const uint8_t resp_mac_key[32] = {0x31, 0x42, 0x53, 0x64, 0x75, 0x86, 0x97, 0xA8,
                                         0xB9, 0xCA, 0xDB, 0xEC, 0xFD, 0x0E, 0x1F, 0x20};
static const uint8_t resp_data_key[32] = {0x41, 0x52, 0x63, 0x74, 0x85, 0x96, 0xA7, 0xB8,
                                          0xC9, 0xDA, 0xEB, 0xFC, 0x0D, 0x1E, 0x2F, 0x30};

struct provider {
    enum mpos_sealed_scheme scheme;
};

/* Fixed keys for any KSN of the scheme's length. */
static int fixed_keys(void *ctx, enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                      const uint8_t *ksn, size_t ksn_len, mpos_sealed_keys *keys)
{
    const struct provider *p = ctx;
    if (scheme != p->scheme) {
        return MPOS_ERR_KEY;
    }
    return mpos_sealed_keys_set(keys, scheme, dir, ksn, ksn_len,
                                dir == MPOS_SEALED_DIR_REQUEST ? req_mac_key : resp_mac_key,
                                dir == MPOS_SEALED_DIR_REQUEST ? req_data_key : resp_data_key, 16);
}

static size_t ksn_len_of(enum mpos_sealed_scheme s)
{
    return s == MPOS_SEALED_TDES ? 10 : 12;
}

/* Appends the MAC TLV over buf[0 .. *len). */
static int append_mac(enum mpos_sealed_scheme s, const uint8_t *key, uint8_t *buf, size_t cap,
                      size_t *len)
{
    uint8_t mac[16];
    size_t mac_len = s == MPOS_SEALED_TDES ? 8 : 16;
    int r = s == MPOS_SEALED_TDES
                ? mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_2, buf, *len, mac)
                : mpos_cmac(&cc, MPOS_CIPHER_AES, key, 16, buf, *len, mac);
    CHECK(r == MPOS_OK);
    return mpos_tlv_put(buf, cap, len, 0xDF7F, mac, mac_len);
}

/* An RNG that replays a given IV. */
struct iv_replay {
    const uint8_t *iv;
    size_t len;
};

static int replay_rng(void *ctx, uint8_t *out, size_t len)
{
    const struct iv_replay *r = ctx;
    if (r->iv == NULL || r->len != len) {
        return MPOS_ERR_RNG;
    }
    memcpy(out, r->iv, len);
    return MPOS_OK;
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static uint8_t buf[8192], out[8192];

static void check_open_request_result(int r, const mpos_sealed_request *q)
{
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT || r == MPOS_ERR_VERIFY || r == MPOS_ERR_KEY);
    if (r != MPOS_OK) {
        CHECK(all_zero(q, sizeof(*q)));
    }
}

static void mode_raw(enum mpos_sealed_scheme s, const uint8_t *data, size_t size)
{
    struct provider p = {s};
    mpos_sealed_request q;
    mpos_sealed_response resp;
    mpos_sealed_keys keys;
    uint8_t ksn[12] = {0};
    int r = mpos_sealed_open_request(&cc, fixed_keys, &p, data, size, &q);
    check_open_request_result(r, &q);
    CHECK(fixed_keys(&p, s, MPOS_SEALED_DIR_RESPONSE, ksn, ksn_len_of(s), &keys) == MPOS_OK);
    r = mpos_sealed_open_response(&cc, &keys, 0, data, size, &resp);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT || r == MPOS_ERR_VERIFY);
    if (r != MPOS_OK) {
        CHECK(all_zero(&resp, sizeof(resp)));
    }
}

static void mode_request_remac(enum mpos_sealed_scheme s, const uint8_t *data, size_t size)
{
    struct provider p = {s};
    mpos_sealed_request q;
    mpos_sealed_keys keys;
    size_t len = size, n = 0;
    if (size > sizeof(buf) - 32) {
        return;
    }
    memcpy(buf, data, size);
    if (append_mac(s, req_mac_key, buf, sizeof(buf), &len) != MPOS_OK) {
        return;
    }
    int r = mpos_sealed_open_request(&cc, fixed_keys, &p, buf, len, &q);
    check_open_request_result(r, &q);
    if (r != MPOS_OK) {
        return;
    }
    /* It opened: sealing it again with the same IV gives back the same bytes. */
    mpos_tlv iv;
    int found = 0;
    CHECK(mpos_tlv_find(buf, len, MPOS_TLV_STRICT, 0xDF30, &iv, &found) == MPOS_OK);
    struct iv_replay rep = {found ? iv.value : NULL, found ? iv.len : 0};
    CHECK(fixed_keys(&p, s, MPOS_SEALED_DIR_REQUEST, q.ksn, q.ksn_len, &keys) == MPOS_OK);
    CHECK(mpos_sealed_seal_request(&cc, &keys, &q, replay_rng, &rep, out, sizeof(out), &n) ==
          MPOS_OK);
    CHECK(n == len && memcmp(out, buf, len) == 0);
}

static void mode_response_remac(enum mpos_sealed_scheme s, const uint8_t *data, size_t size)
{
    struct provider p = {s};
    mpos_sealed_response resp;
    mpos_sealed_keys keys;
    mpos_tlv ksn, seq;
    int found_ksn = 0, found_seq = 0;
    size_t len = size, n = 0;
    if (size > sizeof(buf) - 32) {
        return;
    }
    memcpy(buf, data, size);
    if (append_mac(s, resp_mac_key, buf, sizeof(buf), &len) != MPOS_OK) {
        return;
    }
    /* The keys of the KSN the message names, and the sequence it names (when well formed). */
    uint8_t k[12] = {0};
    uint32_t sequence = 0;
    if (mpos_tlv_find(buf, len, MPOS_TLV_STRICT, 0xDF23, &ksn, &found_ksn) == MPOS_OK &&
        found_ksn && ksn.len == ksn_len_of(s)) {
        memcpy(k, ksn.value, ksn.len);
    }
    if (mpos_tlv_find(buf, len, MPOS_TLV_STRICT, 0xDF24, &seq, &found_seq) == MPOS_OK &&
        found_seq && seq.len == 4) {
        sequence = mpos_load_be32(seq.value);
    }
    CHECK(fixed_keys(&p, s, MPOS_SEALED_DIR_RESPONSE, k, ksn_len_of(s), &keys) == MPOS_OK);
    int r = mpos_sealed_open_response(&cc, &keys, sequence, buf, len, &resp);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT || r == MPOS_ERR_VERIFY);
    if (r != MPOS_OK) {
        CHECK(all_zero(&resp, sizeof(resp)));
        return;
    }
    CHECK(resp.sequence == sequence && memcmp(resp.ksn, k, resp.ksn_len) == 0);
    mpos_tlv iv;
    int found = 0;
    CHECK(mpos_tlv_find(buf, len, MPOS_TLV_STRICT, 0xDF30, &iv, &found) == MPOS_OK);
    struct iv_replay rep = {found ? iv.value : NULL, found ? iv.len : 0};
    CHECK(mpos_sealed_seal_response(&cc, fixed_keys, &p, &resp, replay_rng, &rep, out, sizeof(out),
                                    &n) == MPOS_OK);
    CHECK(n == len && memcmp(out, buf, len) == 0);
}

/* A valid clear part for a card read with the given entry mode. */
static size_t clear_part(enum mpos_sealed_scheme s, uint8_t entry, uint8_t *b, size_t cap)
{
    size_t len = 0;
    uint8_t ksn[12] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0, 0, 0, 1};
    uint8_t sch = (uint8_t)s, seq[4] = {0, 0, 0, 7};
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF20, (const uint8_t *)"\x01", 1) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF21, (const uint8_t *)"\x01", 1) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF22, &sch, 1) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF23, ksn, ksn_len_of(s)) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF24, seq, 4) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF25, (const uint8_t *)"\x01", 1) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF26, (const uint8_t *)"\x00\x00\x00\x00\x10\x00", 6) ==
          MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF27, (const uint8_t *)"\x01\x56", 2) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF28, (const uint8_t *)"898310048990001", 15) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF29, (const uint8_t *)"10000001", 8) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF2A, (const uint8_t *)"\x20\x26\x01\x15\x09\x30\x00", 7) ==
          MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF2B, &entry, 1) == MPOS_OK);
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF2C, (const uint8_t *)"\x00", 1) == MPOS_OK);
    /* The masked PAN of the fuzzer's favourite PAN; other PANs fail the consistency check,
     * after the card data was parsed. */
    CHECK(mpos_tlv_put(b, cap, &len, 0xDF2D, (const uint8_t *)"411111******1111", 16) == MPOS_OK);
    return len;
}

static void mode_card_data(enum mpos_sealed_scheme s, const uint8_t *data, size_t size)
{
    struct provider p = {s};
    mpos_sealed_request q;
    size_t block = s == MPOS_SEALED_TDES ? 8 : 16;
    static uint8_t plain[512];
    if (size > sizeof(plain) - 16) {
        return;
    }
    for (int e = 0; e < 2; e++) {
        size_t len = clear_part(s, e ? 0x90 : 0x05, buf, sizeof(buf));
        /* ISO/IEC 9797-1 padding method 2, CBC under the request data key, fixed IV. */
        memcpy(plain, data, size);
        size_t padded = (size / block + 1) * block;
        plain[size] = 0x80;
        memset(plain + size + 1, 0, padded - size - 1);
        uint8_t iv[16] = {0};
        enum mpos_cipher c = s == MPOS_SEALED_TDES ? MPOS_CIPHER_TDES : MPOS_CIPHER_AES;
        CHECK(mpos_cipher_cbc(&cc, c, 1, req_data_key, 16, iv, plain, plain, padded) == MPOS_OK);
        CHECK(mpos_tlv_put(buf, sizeof(buf), &len, 0xDF30, iv, block) == MPOS_OK);
        if (mpos_tlv_put(buf, sizeof(buf), &len, 0xDF31, plain, padded) != MPOS_OK) {
            return;
        }
        CHECK(append_mac(s, req_mac_key, buf, sizeof(buf), &len) == MPOS_OK);
        int r = mpos_sealed_open_request(&cc, fixed_keys, &p, buf, len, &q);
        check_open_request_result(r, &q);
        if (r == MPOS_OK) {
            CHECK(strcmp(q.masked_pan, "411111******1111") == 0);
            CHECK(q.card.pan[0] == '4' && strlen(q.card.pan) == 16);
        }
    }
}

/* Fields from the input, sealed and opened: exactly those values come back. */
static void mode_structured(enum mpos_sealed_scheme s, const uint8_t *data, size_t size)
{
    struct provider p = {s};
    mpos_sealed_request q, back;
    mpos_sealed_keys keys;
    size_t len = 0;
    if (size < 48) {
        return;
    }
    memset(&q, 0, sizeof(q));
    q.msg_type = data[0] & 1 ? MPOS_SEALED_MSG_REVERSAL : MPOS_SEALED_MSG_REQUEST;
    if (q.msg_type == MPOS_SEALED_MSG_REVERSAL) {
        q.reversal_reason = (uint8_t)(1 + (data[0] >> 1) % 4); /* a reversal says why */
    }
    q.sequence = mpos_load_be32(data + 1);
    q.txn_type = (uint8_t)(1 + data[5] % 4);
    uint64_t a = ((uint64_t)mpos_load_be32(data + 6) << 32) | mpos_load_be32(data + 10);
    q.amount = q.txn_type == MPOS_LINK_TXN_BALANCE ? 0 : 1 + a % MPOS_SEALED_MAX_AMOUNT;
    q.currency = (uint16_t)(1 + mpos_load_be16(data + 14) % 999);
    for (size_t i = 0; i < 15; i++) {
        q.merchant_id[i] = (char)(0x20 + data[16 + i] % 95);
    }
    for (size_t i = 0; i < 8; i++) {
        q.terminal_id[i] = (char)(0x20 + data[31 + i] % 95);
    }
    unsigned yy = data[39] % 100, mo = 1 + data[40] % 12, dd = 1 + data[41] % 28;
    unsigned hh = data[42] % 24, mi = data[43] % 60, ss = data[44] % 60;
    unsigned v[6] = {yy, mo, dd, hh, mi, ss};
    q.datetime[0] = '2';
    q.datetime[1] = '0';
    for (size_t i = 0; i < 6; i++) {
        q.datetime[2 + 2 * i] = (char)('0' + v[i] / 10);
        q.datetime[3 + 2 * i] = (char)('0' + v[i] % 10);
    }
    if (q.txn_type == MPOS_LINK_TXN_VOID || q.txn_type == MPOS_LINK_TXN_REFUND) {
        size_t rl = 1 + data[45] % 32;
        for (size_t i = 0; i < rl; i++) {
            q.original_ref[i] = (char)('A' + (data[(46 + i) % size] % 26));
        }
    }
    q.entry_mode = MPOS_ENTRY_NONE; /* the card paths are covered by the other modes */
    uint8_t ksn[12];
    for (size_t i = 0; i < 12; i++) {
        ksn[i] = data[(20 + i) % size];
    }
    CHECK(fixed_keys(&p, s, MPOS_SEALED_DIR_REQUEST, ksn, ksn_len_of(s), &keys) == MPOS_OK);
    CHECK(mpos_sealed_seal_request(&cc, &keys, &q, NULL, NULL, buf, sizeof(buf), &len) == MPOS_OK);
    CHECK(mpos_sealed_open_request(&cc, fixed_keys, &p, buf, len, &back) == MPOS_OK);
    CHECK(back.msg_type == q.msg_type && back.reversal_reason == q.reversal_reason &&
          back.sequence == q.sequence && back.txn_type == q.txn_type && back.amount == q.amount &&
          back.currency == q.currency && strcmp(back.merchant_id, q.merchant_id) == 0 &&
          strcmp(back.terminal_id, q.terminal_id) == 0 && strcmp(back.datetime, q.datetime) == 0 &&
          strcmp(back.original_ref, q.original_ref) == 0 && back.ksn_len == ksn_len_of(s) &&
          memcmp(back.ksn, ksn, back.ksn_len) == 0);
    /* One changed byte, picked by the input, is refused. */
    size_t at = mpos_load_be16(data + 46) % len;
    buf[at] ^= (uint8_t)(1 + data[size - 1] % 255);
    int r = mpos_sealed_open_request(&cc, fixed_keys, &p, buf, len, &back);
    CHECK(r == MPOS_ERR_FORMAT || r == MPOS_ERR_VERIFY || r == MPOS_ERR_KEY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        CHECK(mpos_crypto_init(&cc) == MPOS_OK);
        ready = 1;
    }
    if (size < 1) {
        return 0;
    }
    enum mpos_sealed_scheme s = (data[0] & 0x80) ? MPOS_SEALED_TDES : MPOS_SEALED_AES128;
    unsigned mode = (data[0] & 0x7F) % 5;
    data++;
    size--;
    switch (mode) {
    case 0:
        mode_raw(s, data, size);
        break;
    case 1:
        mode_request_remac(s, data, size);
        break;
    case 2:
        mode_response_remac(s, data, size);
        break;
    case 3:
        mode_card_data(s, data, size);
        break;
    default:
        mode_structured(s, data, size);
        break;
    }
    return 0;
}
