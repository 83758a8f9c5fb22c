/* libFuzzer target: lib/hostmsg (the host protocol, docs/system-design.md 1.1-1.3).
 *
 * The input is a byte stream from an untrusted peer (a host for the back end, a back end for
 * the host). It is fed to the stream reader in chunks whose sizes come from the input; each
 * message that comes out is parsed, and when it parses:
 *   - re-encoding its fields with the writer, in the same order, gives back the very same bytes
 *     (one encoding per message, so the MAC input is unambiguous);
 *   - the envelope, when it reads, re-encodes to the same field values;
 *   - re-MAC'd under a fixed key, it parses and verifies, and a one-bit change in the covered
 *     part is refused (by the parser or by the MAC).
 * Then the whole input is parsed directly as one message. No crash or sanitizer report, every
 * result in the documented set.
 *
 * Build and run by hand (or configure with -DMPOS_FUZZ=ON):
 *   clang -fsanitize=fuzzer,address,undefined -I lib/include fuzz/fuzz_hostmsg.c \
 *       lib/hostmsg/hostmsg.c lib/crypto/hkdf.c lib/crypto/hmac.c ... lib/util/util.c -lcrypto -o
 * /tmp/fuzz_hostmsg
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/hostmsg.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t KEY[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static uint8_t again[MPOS_HOSTMSG_MAX_FRAME_LEN + 64];
static uint8_t remac[MPOS_HOSTMSG_MAX_FRAME_LEN + 64];
static mpos_hostmsg_reader reader;

static void check_message(const uint8_t *msg, size_t len)
{
    mpos_hostmsg m, m2;
    mpos_hostmsg_writer w;
    size_t n = 0, off = 1;
    int rc = mpos_hostmsg_parse(&m, msg, len);
    CHECK(rc == MPOS_OK || rc == MPOS_ERR_FORMAT || rc == MPOS_ERR_LENGTH);
    if (rc != MPOS_OK) {
        for (unsigned t = 0; t < MPOS_HOSTMSG_TAG_LIMIT; t++) {
            CHECK(!mpos_hostmsg_has(&m, (uint8_t)t));
        }
        return;
    }
    /* Re-encode in the order of the input. */
    CHECK(mpos_hostmsg_writer_init(&w, again, sizeof(again), m.type) == MPOS_OK);
    while (off < len) {
        uint8_t tag = msg[off];
        CHECK(mpos_hostmsg_has(&m, tag));
        if (tag == MPOS_HM_MAC) {
            /* Copy it raw: the writer computes macs, it does not take them. */
            CHECK(w.len + 35 <= w.cap);
            memcpy(again + w.len, msg + off, 35);
            w.len += 35;
            off += 35;
            continue;
        }
        CHECK(mpos_hostmsg_put(&w, tag, m.f[tag].value, m.f[tag].len) == MPOS_OK);
        off += 3u + m.f[tag].len;
    }
    CHECK(mpos_hostmsg_finish(&w, &n) == MPOS_OK);
    CHECK(n == len + 4 && memcmp(again + 4, msg, len) == 0);

    struct mpos_hostmsg_envelope env;
    rc = mpos_hostmsg_get_envelope(&m, &env);
    CHECK(rc == MPOS_OK || rc == MPOS_ERR_FORMAT);
    rc = mpos_hostmsg_verify_mac(&m, KEY, sizeof(KEY));
    CHECK(rc == MPOS_OK || rc == MPOS_ERR_FORMAT || rc == MPOS_ERR_VERIFY);

    /* Without its mac, re-MAC'd: it verifies, and a flipped bit does not. */
    size_t body = m.f[MPOS_HM_MAC].present ? m.mac_covered : len;
    CHECK(body <= len);
    if (body + 4 + 35 > sizeof(remac)) {
        return;
    }
    if (body + 35 > MPOS_HOSTMSG_MAX_LEN) {
        return;
    }
    CHECK(mpos_hostmsg_writer_init(&w, remac, sizeof(remac), m.type) == MPOS_OK);
    memcpy(remac + 5, msg + 1, body - 1);
    w.len = 4 + body;
    CHECK(mpos_hostmsg_put_mac(&w, KEY, sizeof(KEY)) == MPOS_OK);
    CHECK(mpos_hostmsg_finish(&w, &n) == MPOS_OK);
    CHECK(mpos_hostmsg_parse(&m2, remac + 4, n - 4) == MPOS_OK);
    CHECK(mpos_hostmsg_verify_mac(&m2, KEY, sizeof(KEY)) == MPOS_OK);
    remac[4 + body / 2] ^= 0x01;
    rc = mpos_hostmsg_parse(&m2, remac + 4, n - 4);
    if (rc == MPOS_OK) {
        /* The type byte or a field value changed, or a header now frames other fields. */
        rc = mpos_hostmsg_verify_mac(&m2, KEY, sizeof(KEY));
        CHECK(rc == MPOS_ERR_VERIFY || rc == MPOS_ERR_FORMAT);
    } else {
        CHECK(rc == MPOS_ERR_FORMAT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    unsigned k = 0;
    mpos_hostmsg_reader_init(&reader);
    while (off < size) {
        /* Chunk sizes from the input itself: 1..64, cycling over its bytes. */
        size_t chunk = (size_t)(data[k++ % size] & 0x3F) + 1;
        if (chunk > size - off) {
            chunk = size - off;
        }
        while (chunk > 0) {
            size_t used = 0, ml = 0;
            const uint8_t *msg = NULL;
            int rc = mpos_hostmsg_reader_feed(&reader, data + off, chunk, &used, &msg, &ml);
            CHECK(rc == 0 || rc == 1 || rc == MPOS_ERR_LENGTH);
            CHECK(used <= chunk);
            if (rc == MPOS_ERR_LENGTH) {
                goto direct;
            }
            if (rc == 1) {
                CHECK(ml >= 1 && ml <= MPOS_HOSTMSG_MAX_LEN);
                check_message(msg, ml);
            }
            off += used;
            chunk -= used;
        }
    }
direct:
    if (size >= 1 && size <= MPOS_HOSTMSG_MAX_LEN) {
        check_message(data, size);
    }
    return 0;
}
