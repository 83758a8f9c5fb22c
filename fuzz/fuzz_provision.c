/* libFuzzer target: lib/provision's parsers (the provisioning bundle and the X.509 fields the
 * terminal reads; docs/provisioning.md).
 *
 * Every input goes to the bundle parser and to the certificate parser. When the bundle parses,
 * it is re-encoded from its fields with its own signature (a signer that returns it): the result
 * must be the input byte for byte (one encoding per bundle), and each certificate field must be
 * well formed for the certificate parser or be refused by it without harm; the key block is
 * offered to the unwrap under a fixed transport key (its MAC fails: nothing may be released).
 * When the certificate parser accepts the input, its views must lie inside it.
 *
 * Build and run by hand: configure with -DMPOS_FUZZ=ON (clang) and run build/fuzz/fuzz_provision
 * fuzz/corpus/fuzz_provision.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/crypto.h"
#include "mpos/provision.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static mpos_crypto_ctx cc;
static int cc_ready;

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

static void cert(const uint8_t *der, size_t len)
{
    struct mpos_provision_cert c;
    if (mpos_provision_cert_parse(der, len, &c) != 0) {
        return;
    }
    CHECK(inside(c.tbs, c.tbs_len, der, len));
    CHECK(inside(c.issuer, c.issuer_len, der, len));
    CHECK(inside(c.subject, c.subject_len, der, len));
    CHECK(c.serial == NULL || inside(c.serial, c.serial_len, der, len));
    CHECK(c.pub[0] == 0x04);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[MPOS_PROVISION_BUNDLE_MAX_LEN];
    static const uint8_t tk[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    mpos_provision_bundle b;
    struct mpos_provision_key key;
    uint8_t sig[64];
    size_t len = 0;
    if (!cc_ready) {
        CHECK(mpos_crypto_init(&cc) == 0);
        cc_ready = 1;
    }
    cert(data, size);
    if (mpos_provision_bundle_parse(data, size, &b) != 0) {
        return 0;
    }
    CHECK(inside(b.signed_part, b.signed_len, data, size));
    CHECK(inside(b.device_cert, b.device_cert_len, data, size));
    CHECK(inside(b.ca_cert, b.ca_cert_len, data, size));
    CHECK(b.trust_anchor == NULL || inside(b.trust_anchor, b.trust_anchor_len, data, size));
    CHECK(inside((const uint8_t *)b.key_block, b.key_block_len, data, size));
    memcpy(sig, b.signature, sizeof(sig));
    CHECK(mpos_provision_bundle_encode(&b, replay_signature, sig, out, sizeof(out), &len) == 0);
    CHECK(len == size && memcmp(out, data, size) == 0);
    cert(b.device_cert, b.device_cert_len);
    cert(b.ca_cert, b.ca_cert_len);
    if (mpos_provision_key_unwrap(&cc, tk, b.kind, b.key_block, b.key_block_len, &key) != 0) {
        for (size_t i = 0; i < sizeof(key); i++) {
            CHECK(((const uint8_t *)&key)[i] == 0);
        }
    }
    return 0;
}
