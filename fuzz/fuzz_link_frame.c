/* libFuzzer target: terminal/core/link (host link frames, messages, command validator).
 *
 * The input is a byte stream from an untrusted host. The first byte picks the chunking; the
 * rest is fed to the incremental decoder in one piece, then again in chunks whose sizes come
 * from the input itself. Every frame that comes out must be a whole valid frame (it re-encodes
 * to the very bytes the decoder held, CRCs included); its payload is decoded as a message and,
 * when that succeeds, re-encoded to the same bytes (one encoding per message) and decoded
 * again to the same message. Every frame is offered to a session in every state: the verdict
 * must be the table's, a refusal must come with exactly one ERROR frame that decodes to the
 * refused sequence, type, code and state, and the state never changes. Finally the input is
 * decoded directly as the payload of every type, with the same re-encoding check.
 *
 * Build and run by hand (or configure with -DMPOS_FUZZ=ON):
 *   clang -fsanitize=fuzzer,address,undefined -I lib/include -I terminal/core \
 *       fuzz/fuzz_link_frame.c terminal/core/link/link.c terminal/core/msr/msr.c \
 *       lib/util/err.c lib/util/util.c -lcrypto -o /tmp/fuzz_link_frame
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "link/link.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t scratch[MPOS_LINK_MAX_FRAME_LEN], again[MPOS_LINK_MAX_FRAME_LEN];

/* A decoded message re-encodes to exactly the frame it came from, and decodes back. */
static void check_message(const mpos_link_frame *f)
{
    mpos_link_msg m, m2;
    size_t n = 0;
    int r = mpos_link_decode(f, &m);
    CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT || r == MPOS_ERR_UNSUPPORTED);
    if (r != MPOS_OK) {
        return;
    }
    CHECK(m.type == f->type && m.seq == f->seq);
    CHECK(mpos_link_encode(&m, scratch, sizeof(scratch), &n) == MPOS_OK);
    CHECK(n == MPOS_LINK_HEADER_LEN + f->len + MPOS_LINK_TRAILER_LEN);
    CHECK(f->len == 0 || memcmp(scratch + MPOS_LINK_HEADER_LEN, f->payload, f->len) == 0);
    mpos_link_frame f2 = {scratch[3], m.seq, scratch + MPOS_LINK_HEADER_LEN, f->len};
    CHECK(mpos_link_decode(&f2, &m2) == MPOS_OK);
    if (m.type == MPOS_LINK_CMD_TUNNEL_DATA || m.type == MPOS_LINK_EVT_TUNNEL_DATA) {
        CHECK(m2.u.tunnel.len == m.u.tunnel.len &&
              memcmp(m2.u.tunnel.data, m.u.tunnel.data, m.u.tunnel.len) == 0);
    } else {
        CHECK(memcmp(&m.u, &m2.u, sizeof(m.u)) == 0);
    }
}

/* The frame in every state of a session. */
static void check_session(const mpos_link_frame *f)
{
    static mpos_link_decoder d;
    for (unsigned s = 0; s < MPOS_LINK_STATE_COUNT; s++) {
        mpos_link_session ses;
        mpos_link_msg cmd, err;
        uint8_t reply[MPOS_LINK_ERROR_FRAME_LEN];
        size_t reply_len = 0, used = 0;
        CHECK(mpos_link_session_init(&ses, (enum mpos_link_state)s) == MPOS_OK);
        int verdict = mpos_link_check((enum mpos_link_state)s, f->type);
        CHECK(verdict == MPOS_OK || verdict == MPOS_LINK_E_UNKNOWN_COMMAND ||
              verdict == MPOS_LINK_E_NOT_ALLOWED);
        CHECK((verdict == MPOS_LINK_E_UNKNOWN_COMMAND) == !mpos_link_is_command(f->type));
        int r = mpos_link_session_receive(&ses, f, &cmd, reply, sizeof(reply), &reply_len);
        CHECK(ses.state == (enum mpos_link_state)s);
        if (r == MPOS_OK) {
            CHECK(verdict == MPOS_OK && reply_len == 0 && cmd.type == f->type);
            continue;
        }
        CHECK(r == verdict || (verdict == MPOS_OK && r == MPOS_LINK_E_MALFORMED));
        CHECK(reply_len == MPOS_LINK_ERROR_FRAME_LEN);
        mpos_link_frame ef;
        mpos_link_decoder_init(&d);
        CHECK(mpos_link_decoder_feed(&d, reply, reply_len, &used, &ef) == 1 && used == reply_len);
        CHECK(mpos_link_decode(&ef, &err) == MPOS_OK && err.type == MPOS_LINK_EVT_ERROR);
        CHECK(err.u.error.ref_seq == f->seq && err.u.error.ref_type == f->type);
        CHECK(err.u.error.code == r && err.u.error.state == s);
    }
}

/* A delivered frame: valid, in bounds, and consistent. */
static void check_frame(const mpos_link_decoder *d, const mpos_link_frame *f)
{
    size_t n = 0;
    CHECK(f->len <= MPOS_LINK_MAX_PAYLOAD);
    CHECK(f->payload == d->buf + MPOS_LINK_HEADER_LEN);
    CHECK(mpos_link_frame_encode(f->type, f->seq, f->payload, f->len, again, sizeof(again), &n) ==
          MPOS_OK);
    CHECK(n <= d->have && memcmp(again, d->buf, n) == 0); /* exactly the bytes held */
    check_message(f);
    check_session(f);
}

/* Feeds data in chunks; returns the number of frames. */
static size_t run(const uint8_t *data, size_t size, const uint8_t *sizes, size_t nsizes)
{
    static mpos_link_decoder d;
    size_t pos = 0, k = 0, frames = 0;
    mpos_link_decoder_init(&d);
    while (pos < size) {
        size_t chunk = nsizes ? 1 + (size_t)sizes[k++ % nsizes] * 17 % 600 : size - pos;
        if (chunk > size - pos) {
            chunk = size - pos;
        }
        size_t off = 0;
        for (;;) {
            size_t used = 0;
            mpos_link_frame f;
            int r = mpos_link_decoder_feed(&d, data + pos + off, chunk - off, &used, &f);
            CHECK(r == 0 || r == 1);
            CHECK(used <= chunk - off);
            CHECK(d.have <= MPOS_LINK_MAX_FRAME_LEN);
            off += used;
            if (r == 0) {
                CHECK(off == chunk);
                break;
            }
            frames++;
            check_frame(&d, &f);
        }
        pos += chunk;
    }
    return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t nsizes = data[0] % 8;
    data++;
    size--;
    size_t whole = run(data, size, NULL, 0);
    size_t bytes = size < 4096 ? run(data, size, (const uint8_t *)"\x00", 1) : 0;
    size_t chunked = run(data, size, data, nsizes < size ? nsizes : 0);
    /* A frame cut short can only be preempted by a whole frame inside it; each delivered
     * frame holds at least the header, so no mode delivers more than the bytes allow. */
    CHECK(whole <= size / MPOS_LINK_HEADER_LEN && bytes <= size / MPOS_LINK_HEADER_LEN &&
          chunked <= size / MPOS_LINK_HEADER_LEN);

    /* The input as the payload of every type. */
    if (size <= MPOS_LINK_MAX_PAYLOAD) {
        for (unsigned t = 0; t < 256; t++) {
            if (!mpos_link_is_command(t) && !mpos_link_is_event(t) && t != 0 && t != 0xFF) {
                continue;
            }
            mpos_link_frame f = {(uint8_t)t, 0x1234, data, size};
            check_message(&f);
        }
    }
    return 0;
}
