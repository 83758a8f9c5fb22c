/* libFuzzer target: the signed EMV parameter package parser (terminal/core/params,
 * docs/protocol.md 3).
 *
 * Every input goes to mpos_params_parse. When it parses, the package is rebuilt from its
 * fields with its own signatures (signers that return them): the result must be the input byte
 * for byte (one encoding per package), the views must lie inside the input, and the fields
 * must convert to kernel parameters. Every input also goes through mpos_params_verify under a
 * fixed anchor: nothing may verify (the fuzzer cannot sign).
 *
 * Build and run by hand: configure with -DMPOS_FUZZ=ON (clang) and run build/fuzz/fuzz_params
 * fuzz/corpus/fuzz_params.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The P-256 generator point: a valid public key nobody here signs with. */
static const uint8_t anchor[MPOS_EC_P256_PUB_LEN] = {
    0x04, 0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8, 0xBC, 0xE6, 0xE5,
    0x63, 0xA4, 0x40, 0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4,
    0xA1, 0x39, 0x45, 0xD8, 0x98, 0xC2, 0x96, 0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A,
    0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C, 0x0F, 0x9E, 0x16, 0x2B, 0xCE, 0x33,
    0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37, 0xBF, 0x51, 0xF5};

static int replay_signature(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    (void)msg;
    (void)len;
    memcpy(sig, ctx, 64);
    return 0;
}

static int inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static mpos_params_package pkg;
static mpos_emv_params emv;
static uint8_t e5[512];
static uint8_t again[MPOS_PARAMS_MAX_LEN];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t e5_len = 0, n = 0;
    if (mpos_params_parse(data, size, &pkg) == MPOS_OK) {
        CHECK(inside(pkg.endorsed, pkg.endorsed_len, data, size));
        CHECK(inside(pkg.signed_part, pkg.signed_len, data, size));
        CHECK(pkg.params.aid_count >= 1 && pkg.params.aid_count <= MPOS_PARAMS_MAX_AIDS);
        CHECK(pkg.params.capk_count <= MPOS_PARAMS_MAX_CAPKS);
        CHECK(mpos_params_endorsement_build(&pkg.endorsement, replay_signature, pkg.endorsement.sig,
                                            e5, sizeof(e5), &e5_len) == MPOS_OK);
        CHECK(mpos_params_build(&pkg.params, e5, e5_len, replay_signature, pkg.sig, again,
                                sizeof(again), &n) == MPOS_OK);
        CHECK(n == size && memcmp(again, data, size) == 0);
        mpos_emv_params_default(&emv);
        CHECK(mpos_params_to_emv(&pkg.params, &emv) == MPOS_OK);
        CHECK(emv.aid_count == pkg.params.aid_count);
        for (size_t i = 0; i < emv.aid_count; i++) {
            const mpos_params_aid *a = mpos_params_aid_find(&pkg.params, pkg.params.aids[i].aid,
                                                            pkg.params.aids[i].aid_len);
            CHECK(a == &pkg.params.aids[i]);
        }
    }
    CHECK(mpos_params_verify(anchor, data, size, MPOS_PARAMS_NO_CLOCK, &pkg) != MPOS_OK);
    return 0;
}
