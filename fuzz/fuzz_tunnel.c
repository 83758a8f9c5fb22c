/* libFuzzer target: lib/tunnel, the terminal <-> back-end tunnel messages
 * (docs/system-design.md 2.1).
 *
 * The input is decoded three ways:
 *   1  as one whole message (mpos_tunnel_decode): the result is OK or FORMAT; on FORMAT the
 *      struct is zeroed; on OK, encoding the struct gives back exactly the input bytes (one
 *      message has one encoding) and a SEALED body points into the input;
 *   2  as a stream through mpos_tunnel_reader, in chunks whose sizes come from the first byte:
 *      every message it yields re-encodes to the bytes of the stream it came from, and the
 *      bytes used never exceed what was fed;
 *   3  the stream again in one chunk: the same messages come out (chunking changes nothing).
 * Invariants everywhere: no crash or sanitizer report, results in the documented set.
 *
 * Build and run by hand (or configure with -DMPOS_FUZZ=ON):
 *   see fuzz/fuzz_link_frame.c; add lib/tunnel/tunnel.c and lib/'s tlv, util sources.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/tunnel.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t out[MPOS_TUNNEL_MAX_MSG];
static mpos_tunnel_reader rd;
static mpos_tunnel_msg msg;

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

static void mode_whole(const uint8_t *data, size_t size)
{
    size_t len = 0;
    int r = mpos_tunnel_decode(data, size, &msg);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
    if (r != MPOS_OK) {
        CHECK(all_zero(&msg, sizeof(msg)));
        return;
    }
    if (msg.body != NULL) {
        CHECK(msg.body == data + MPOS_TUNNEL_HEADER_LEN && msg.body_len == size - 3);
    }
    CHECK(mpos_tunnel_encode(&msg, out, sizeof(out), &len) == MPOS_OK);
    CHECK(len == size && memcmp(out, data, size) == 0);
}

/* Runs the stream through the reader in chunks of `chunk` bytes; returns a digest of what came
 * out (the messages and malformed ones in order, and where the message that broke the framing
 * started). */
static uint64_t mode_stream(const uint8_t *data, size_t size, size_t chunk)
{
    uint64_t digest = 0;
    size_t off = 0, msg_start = 0;
    mpos_tunnel_reader_init(&rd);
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        const uint8_t *p = data + off;
        while (n > 0) {
            size_t used = 0;
            int got = 0;
            int r = mpos_tunnel_reader_feed(&rd, p, n, &used);
            CHECK(used <= n);
            if (r != MPOS_OK) {
                CHECK(r == MPOS_ERR_FORMAT && used == 0);
                return digest * 31u + 0x1000000u + msg_start;
            }
            p += used;
            n -= used;
            r = mpos_tunnel_reader_take(&rd, &msg, &got);
            CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
            if (r == MPOS_ERR_FORMAT) {
                digest = digest * 31u + 2u;
                msg_start = (size_t)(p - data);
            } else if (got) {
                size_t len = 0;
                size_t whole = (size_t)(p - data) - msg_start;
                CHECK(mpos_tunnel_encode(&msg, out, sizeof(out), &len) == MPOS_OK);
                CHECK(len == whole && memcmp(out, data + msg_start, len) == 0);
                digest = digest * 31u + 1u + msg.type;
                msg_start = (size_t)(p - data);
            } else {
                CHECK(used > 0 || n == 0);
            }
        }
        off += size - off < chunk ? size - off : chunk;
    }
    return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t chunk = 1u + data[0] % 97u;
    data++;
    size--;
    mode_whole(data, size);
    uint64_t a = mode_stream(data, size, chunk);
    uint64_t b = mode_stream(data, size, size == 0 ? 1 : size);
    CHECK(a == b);
    return 0;
}
