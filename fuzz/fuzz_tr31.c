/* libFuzzer target: the TR-31 / X9.143 header and optional-block parser and unwrap (lib/tr31).
 *
 * The input is the key block text itself. Every input goes through:
 *   1. mpos_tr31_header_parse as a whole key block; on success the parsed fields must lie
 *      inside the input (lengths, offsets of the optional blocks, the length field);
 *   2. mpos_tr31_unwrap under a fixed KBPK (version B: the TDES KBPK of TR-31:2018 A.7.2.2,
 *      version D: the AES-256 KBPK of A.7.4, so those published blocks are valid seeds): a
 *      failure must leave zeros in the key buffer, a success a key of an allowed length;
 *   3. mpos_tr31_header_parse as a wrap template; on success a fixed key of the header's
 *      algorithm is wrapped with deterministic padding and must unwrap to the same key under
 *      the same header (wrap and the strict parser agree).
 * Each step runs again through the *_ext functions with every extension enabled
 * (MPOS_TR31_EXT_ALL): they may only widen (what the strict functions accept, they accept the
 * same way), and the same invariants hold for SM4 and raw EC blocks.
 *
 * Build (outside CMake): clang -fsanitize=fuzzer,address,undefined -I lib/include this file,
 * every .c of lib/tr31, lib/util and lib/crypto, and -lcrypto. Run with a corpus directory:
 * ./fuzz_tr31 -max_total_time=20 -dict=fuzz/fuzz_tr31.dict corpus/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/crypto.h"
#include "mpos/tr31.h"
#include "mpos/util.h"

static mpos_crypto_ctx cc;
static int cc_ready;

static const uint8_t kbpk_b[16] = {0xDD, 0x75, 0x15, 0xF2, 0xBF, 0xC1, 0x7F, 0x85,
                                   0xCE, 0x48, 0xF3, 0xCA, 0x25, 0xCB, 0x21, 0xF6};
static const uint8_t kbpk_d[32] = {0x88, 0xE1, 0xAB, 0x2A, 0x2E, 0x3D, 0xD3, 0x8C, 0x1F, 0xA0, 0x39,
                                   0xA5, 0x36, 0x50, 0x0C, 0xC8, 0xA8, 0x7A, 0xB9, 0xD6, 0x2D, 0xC9,
                                   0x2C, 0x01, 0x05, 0x8F, 0xA7, 0x9F, 0x44, 0x65, 0x7D, 0xE6};

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static void check_header(const mpos_tr31_header *hdr, size_t size)
{
    check(hdr->len >= MPOS_TR31_FIXED_HEADER_LEN && hdr->len <= size &&
          hdr->len <= MPOS_TR31_MAX_HEADER_LEN);
    check(hdr->version == 'B' || hdr->version == 'D');
    check(hdr->num_opt_blocks <= MPOS_TR31_MAX_OPT_BLOCKS);
    for (size_t i = 0; i < hdr->num_opt_blocks; i++) {
        check((size_t)hdr->opt[i].offset + hdr->opt[i].len <= hdr->len);
        check(hdr->opt[i].offset >= MPOS_TR31_FIXED_HEADER_LEN + 4);
        check(mpos_tr31_header_find(hdr, hdr->opt[i].id) == &hdr->opt[i]);
    }
    check(strlen(hdr->text) == hdr->len);
}

/* The length of the fixed key wrapped for an algorithm, 0 when it is not wrapped (asymmetric
 * keys, or an extension algorithm outside version D). */
static size_t key_len_for(const mpos_tr31_header *t, unsigned flags)
{
    size_t klen = t->algorithm == 'T'                 ? 16
                  : t->algorithm == 'A'               ? 24
                  : t->algorithm == 'D'               ? 8
                  : t->algorithm == MPOS_TR31_ALG_SM4 ? 16
                  : t->algorithm == 'E'               ? 32
                                                      : 20;
    if (!mpos_tr31_key_len_valid_ext(t->algorithm, klen, flags) ||
        (t->version != 'D' && (t->algorithm == MPOS_TR31_ALG_SM4 || t->algorithm == 'E'))) {
        return 0;
    }
    return klen;
}

static void round_trip(const char *tmpl, size_t size, const mpos_tr31_header *t, unsigned flags)
{
    static const uint8_t pattern[MPOS_TR31_MAX_KEY_LEN] = {
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98,
        0x76, 0x54, 0x32, 0x10, 0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78};
    const uint8_t padding[MPOS_TR31_MAX_PAYLOAD_LEN] = {0};
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t block_len = 0, key_len = 0;
    mpos_tr31_header back;
    size_t klen = key_len_for(t, flags);
    size_t bs = t->version == 'B' ? 8 : 16;
    size_t pad = (bs - (2 + klen) % bs) % bs;
    const uint8_t *kbpk = t->version == 'B' ? kbpk_b : kbpk_d;
    size_t kbpk_len = t->version == 'B' ? sizeof(kbpk_b) : sizeof(kbpk_d);
    if (klen == 0) {
        return; /* not wrapped here */
    }
    int rc = mpos_tr31_wrap_ext(&cc, kbpk, kbpk_len, tmpl, size, pattern, klen, padding, pad, block,
                                sizeof(block), &block_len, flags);
    if (rc != MPOS_OK) {
        /* Only limits may stop a valid template: 99 blocks plus a PB, or the size. */
        check(rc == MPOS_ERR_FORMAT || rc == MPOS_ERR_LENGTH);
        check(all_zero((const uint8_t *)block, sizeof(block)));
        return;
    }
    check(block_len == strlen(block));
    rc = mpos_tr31_unwrap_ext(&cc, kbpk, kbpk_len, block, block_len, &back, key, sizeof(key),
                              &key_len, flags);
    check(rc == MPOS_OK && key_len == klen && memcmp(key, pattern, klen) == 0);
    check(memcmp(back.text + 5, tmpl + 5, 7) == 0 && back.key_context == t->key_context);
    check(memcmp(back.text + MPOS_TR31_FIXED_HEADER_LEN, tmpl + MPOS_TR31_FIXED_HEADER_LEN,
                 t->len - MPOS_TR31_FIXED_HEADER_LEN) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mpos_tr31_header hdr;
    uint8_t key[MPOS_TR31_MAX_KEY_LEN], strict_key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 1, strict_len = 0;
    const char *text = (const char *)data;
    int b = size > 0 && text[0] == 'B';
    const uint8_t *kbpk = b ? kbpk_b : kbpk_d;
    size_t kbpk_len = b ? sizeof(kbpk_b) : sizeof(kbpk_d);
    int strict_ok;
    if (!cc_ready) {
        check(mpos_crypto_init(&cc) == MPOS_OK);
        cc_ready = 1;
    }
    strict_ok = mpos_tr31_header_parse(text, size, MPOS_TR31_PARSE_BLOCK, &hdr) == MPOS_OK;
    if (strict_ok) {
        check_header(&hdr, size);
        check(hdr.block_len == size);
    } else {
        check(hdr.why != NULL && hdr.len == 0);
    }
    if (mpos_tr31_header_parse_ext(text, size, MPOS_TR31_PARSE_BLOCK, &hdr, MPOS_TR31_EXT_ALL) ==
        MPOS_OK) {
        check_header(&hdr, size);
    } else {
        check(!strict_ok && hdr.why != NULL && hdr.len == 0);
    }
    memset(key, 0xA5, sizeof(key));
    strict_ok = mpos_tr31_unwrap(&cc, kbpk, kbpk_len, text, size, &hdr, key, sizeof(key),
                                 &key_len) == MPOS_OK;
    if (strict_ok) {
        check_header(&hdr, size);
        check(mpos_tr31_key_len_valid(hdr.algorithm, key_len));
        memcpy(strict_key, key, key_len);
        strict_len = key_len;
    } else {
        check(key_len == 0 && all_zero(key, sizeof(key)) && hdr.len == 0);
    }
    memset(key, 0xA5, sizeof(key));
    if (mpos_tr31_unwrap_ext(&cc, kbpk, kbpk_len, text, size, &hdr, key, sizeof(key), &key_len,
                             MPOS_TR31_EXT_ALL) == MPOS_OK) {
        check_header(&hdr, size);
        check(mpos_tr31_key_len_valid_ext(hdr.algorithm, key_len, MPOS_TR31_EXT_ALL));
        check(!strict_ok || (key_len == strict_len && memcmp(key, strict_key, key_len) == 0));
    } else {
        check(!strict_ok && key_len == 0 && all_zero(key, sizeof(key)) && hdr.len == 0);
    }
    if (mpos_tr31_header_parse(text, size, MPOS_TR31_PARSE_TEMPLATE, &hdr) == MPOS_OK) {
        check_header(&hdr, size);
        check(hdr.len == size);
        round_trip(text, size, &hdr, 0);
    }
    if (mpos_tr31_header_parse_ext(text, size, MPOS_TR31_PARSE_TEMPLATE, &hdr, MPOS_TR31_EXT_ALL) ==
        MPOS_OK) {
        check_header(&hdr, size);
        check(hdr.len == size);
        round_trip(text, size, &hdr, MPOS_TR31_EXT_ALL);
    }
    return 0;
}
