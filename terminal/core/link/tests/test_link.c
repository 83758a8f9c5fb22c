/* Unit tests: terminal/core/link (frames, messages, the state x command validator).
 *
 * The CRC check values are those of the CRC catalogue (CRC-16/CCITT-FALSE of "123456789" =
 * 29B1, CRC-32/ISO-HDLC = CBF43926). The state table below is written out again from
 * docs/protocol.md, independently of link.c, and every state x every type byte is tried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "link/link.h"
#include "mpos/util.h"
#include "testutil.h"

/* A small deterministic generator (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* ---- sample messages: one of each type ------------------------------------------------- */

static uint8_t tunnel_bytes[MPOS_LINK_MAX_PAYLOAD];

static void fill_tunnel(void)
{
    for (size_t i = 0; i < sizeof(tunnel_bytes); i++) {
        tunnel_bytes[i] = (uint8_t)(i * 7 + 3);
    }
}

/* A valid message of the given type (variant v picks among value sets). */
static mpos_link_msg sample(uint8_t type, unsigned v)
{
    mpos_link_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.seq = (uint16_t)(0x1234 + v);
    switch (type) {
    case MPOS_LINK_CMD_START_TXN:
        m.u.start.txn_type = (uint8_t)(1 + v % 4);
        m.u.start.amount = m.u.start.txn_type == MPOS_LINK_TXN_BALANCE ? 0 : 1 + v * 1234567ull;
        m.u.start.currency = (uint16_t)(v % 2 ? 156 : 978);
        if (m.u.start.txn_type == MPOS_LINK_TXN_VOID ||
            m.u.start.txn_type == MPOS_LINK_TXN_REFUND) {
            strcpy(m.u.start.original_ref, v % 3 ? "000123456789" : "A");
        }
        break;
    case MPOS_LINK_CMD_ACTIVATE:
        strcpy(m.u.activate.code, v % 2 ? "ABCD-1234-EFGH" : "0000");
        break;
    case MPOS_LINK_CMD_TUNNEL_DATA:
    case MPOS_LINK_EVT_TUNNEL_DATA:
        m.u.tunnel.data = tunnel_bytes;
        m.u.tunnel.len = v % 3 == 0 ? 1 : v % 3 == 1 ? 517 : MPOS_LINK_MAX_PAYLOAD;
        break;
    case MPOS_LINK_CMD_SET_HOST_LOCATION:
        m.u.location.lat_e7 = v % 2 ? 311234567 : -MPOS_LINK_LAT_MAX_E7;
        m.u.location.lon_e7 = v % 2 ? 1214737000 : -MPOS_LINK_LON_MAX_E7;
        m.u.location.accuracy_m = v % 2 ? 15 : MPOS_LINK_ACCURACY_MAX_M;
        m.u.location.time = v % 2 ? 1767225600ull : MPOS_LINK_TIME_MAX;
        break;
    case MPOS_LINK_EVT_INFO:
        m.u.info.ref_seq = 7;
        m.u.info.state = (uint8_t)(v % MPOS_LINK_STATE_COUNT);
        strcpy(m.u.info.serial, "MPOS-SIM-000001");
        strcpy(m.u.info.firmware, "openmpos 0.1.0 (build 42)");
        break;
    case MPOS_LINK_EVT_ACK:
        m.u.ack.ref_seq = 0xFFFF;
        m.u.ack.ref_type = MPOS_LINK_CMD_CANCEL;
        break;
    case MPOS_LINK_EVT_ERROR:
        m.u.error.ref_seq = 3;
        m.u.error.ref_type = 0xEE;
        m.u.error.code = (uint8_t)(1 + v % 4);
        m.u.error.state = MPOS_LINK_STATE_ONLINE;
        break;
    case MPOS_LINK_EVT_PROMPT_SHOWN:
        m.u.prompt.prompt = v % 2 ? MPOS_PROMPT_CONFIRM_AMOUNT : MPOS_PROMPT_WRONG_PIN;
        if (v % 2) {
            m.u.prompt.txn_type = MPOS_LINK_TXN_SALE;
            m.u.prompt.amount = 12345;
            m.u.prompt.currency = 156;
        } else {
            m.u.prompt.count = 2;
        }
        break;
    case MPOS_LINK_EVT_RESULT:
        m.u.result.outcome = MPOS_LINK_OUTCOME_APPROVED;
        m.u.result.txn_type = MPOS_LINK_TXN_SALE;
        m.u.result.amount = MPOS_LINK_MAX_AMOUNT;
        m.u.result.currency = 156;
        m.u.result.txn_seq = 0xDEADBEEF;
        strcpy(m.u.result.response_code, "00");
        strcpy(m.u.result.auth_code, "A1B2C3");
        strcpy(m.u.result.rrn, "123456789012");
        strcpy(m.u.result.masked_pan, v % 2 ? "411111******1111" : "411111*********1111");
        break;
    default:
        break;
    }
    return m;
}

static const uint8_t all_types[] = {
    MPOS_LINK_CMD_GET_INFO,     MPOS_LINK_CMD_START_TXN,   MPOS_LINK_CMD_CANCEL,
    MPOS_LINK_CMD_ACTIVATE,     MPOS_LINK_CMD_TUNNEL_DATA, MPOS_LINK_CMD_SET_HOST_LOCATION,
    MPOS_LINK_EVT_INFO,         MPOS_LINK_EVT_ACK,         MPOS_LINK_EVT_ERROR,
    MPOS_LINK_EVT_PROMPT_SHOWN, MPOS_LINK_EVT_RESULT,      MPOS_LINK_EVT_TUNNEL_DATA,
};
#define NTYPES (sizeof(all_types) / sizeof(all_types[0]))

static void assert_msg_equal(const mpos_link_msg *a, const mpos_link_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->seq, b->seq);
    if (a->type == MPOS_LINK_CMD_TUNNEL_DATA || a->type == MPOS_LINK_EVT_TUNNEL_DATA) {
        assert_int_equal(a->u.tunnel.len, b->u.tunnel.len);
        assert_memory_equal(a->u.tunnel.data, b->u.tunnel.data, a->u.tunnel.len);
        return;
    }
    /* Every other union member is plain data, zero-filled around the strings. */
    assert_memory_equal(&a->u, &b->u, sizeof(a->u));
}

/* ---- CRCs and single frames ------------------------------------------------------------- */

static void test_crc(void **state)
{
    (void)state;
    const uint8_t check[] = "123456789";
    assert_int_equal(mpos_link_crc16(check, 9), 0x29B1);
    assert_int_equal(mpos_link_crc32(check, 9), 0xCBF43926u);
    assert_int_equal(mpos_link_crc32(check, 0), 0);
}

/* Decodes a frame into out[n]; TUNNEL_DATA points into the decoder, so its bytes are copied
 * to storage of the test before the next feed. */
static void take_frame(const mpos_link_frame *f, mpos_link_msg *out, size_t n)
{
    static uint8_t keep[64][MPOS_LINK_MAX_PAYLOAD];
    assert_int_equal(mpos_link_decode(f, out), MPOS_OK);
    if (out->type == MPOS_LINK_CMD_TUNNEL_DATA || out->type == MPOS_LINK_EVT_TUNNEL_DATA) {
        assert_true(n < 64);
        memcpy(keep[n], out->u.tunnel.data, out->u.tunnel.len);
        out->u.tunnel.data = keep[n];
    }
}

/* Decodes a whole buffer fed in one piece: the frames, in order. */
static size_t decode_all(mpos_link_decoder *d, const uint8_t *in, size_t len, mpos_link_msg *out,
                         size_t max)
{
    size_t n = 0, pos = 0;
    for (;;) {
        size_t used = 0;
        mpos_link_frame f;
        int r = mpos_link_decoder_feed(d, in + pos, len - pos, &used, &f);
        assert_true(r == 0 || r == 1);
        assert_true(used <= len - pos);
        pos += used;
        if (r == 0) {
            assert_int_equal(pos, len);
            return n;
        }
        assert_true(n < max);
        take_frame(&f, &out[n], n);
        n++;
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    static uint8_t frame[MPOS_LINK_MAX_FRAME_LEN];
    static mpos_link_decoder d;
    for (size_t t = 0; t < NTYPES; t++) {
        for (unsigned v = 0; v < 6; v++) {
            mpos_link_msg m = sample(all_types[t], v), back[2];
            size_t len = 0;
            assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &len), MPOS_OK);
            mpos_link_decoder_init(&d);
            assert_int_equal(decode_all(&d, frame, len, back, 2), 1);
            assert_msg_equal(&m, &back[0]);
            assert_int_equal(d.dropped_bytes, 0);
            assert_int_equal(d.bad_frames, 0);
            /* One byte less room: MPOS_ERR_LENGTH. */
            size_t l2 = 0;
            assert_int_equal(mpos_link_encode(&m, frame, len - 1, &l2), MPOS_ERR_LENGTH);
            assert_int_equal(l2, 0);
        }
    }
}

/* ---- the decoder over a byte stream ----------------------------------------------------- */

#define STREAM_FRAMES 40
static uint8_t stream[STREAM_FRAMES * MPOS_LINK_MAX_FRAME_LEN + 65536];
static mpos_link_msg sent[STREAM_FRAMES], got[STREAM_FRAMES + 4];

/* A stream of STREAM_FRAMES random valid messages; returns its length. */
static size_t make_stream(void)
{
    size_t len = 0;
    for (size_t i = 0; i < STREAM_FRAMES; i++) {
        size_t n = 0;
        sent[i] = sample(all_types[rnd_below(NTYPES)], (unsigned)rnd_below(6));
        sent[i].seq = (uint16_t)i;
        assert_int_equal(mpos_link_encode(&sent[i], stream + len, sizeof(stream) - len, &n),
                         MPOS_OK);
        len += n;
    }
    return len;
}

/* Feeds the stream in random chunks (max_chunk 1 = one byte at a time). */
static size_t feed_chunked(mpos_link_decoder *d, const uint8_t *in, size_t len, size_t max_chunk,
                           mpos_link_msg *out, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < len) {
        size_t chunk = 1 + rnd_below(max_chunk);
        if (chunk > len - pos) {
            chunk = len - pos;
        }
        size_t off = 0;
        for (;;) {
            size_t used = 0;
            mpos_link_frame f;
            int r = mpos_link_decoder_feed(d, in + pos + off, chunk - off, &used, &f);
            assert_true(r == 0 || r == 1);
            off += used;
            if (r == 0) {
                assert_int_equal(off, chunk);
                break;
            }
            assert_true(n < max);
            take_frame(&f, &out[n], n);
            n++;
        }
        pos += chunk;
    }
    return n;
}

static void test_chunking(void **state)
{
    (void)state;
    static mpos_link_decoder d;
    static const size_t chunks[] = {1, 2, 3, 7, 10, 64, 1000, 5000, SIZE_MAX / 2};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        size_t len = make_stream();
        mpos_link_decoder_init(&d);
        size_t n = feed_chunked(&d, stream, len, chunks[c] > len ? len : chunks[c], got,
                                STREAM_FRAMES + 4);
        assert_int_equal(n, STREAM_FRAMES);
        for (size_t i = 0; i < n; i++) {
            assert_msg_equal(&sent[i], &got[i]);
        }
        assert_int_equal(d.dropped_bytes, 0);
        assert_int_equal(d.bad_frames, 0);
    }
}

/* Two frames: a (damaged as the caller likes) then b; only b must come out. */
static uint8_t fa[MPOS_LINK_MAX_FRAME_LEN + 8], fb[MPOS_LINK_MAX_FRAME_LEN];
static size_t la, lb;
static mpos_link_msg ma, mb;

static void make_pair(uint8_t ta, unsigned va, uint8_t tb, unsigned vb)
{
    ma = sample(ta, va);
    mb = sample(tb, vb);
    mb.seq = 0xB0B0;
    assert_int_equal(mpos_link_encode(&ma, fa, sizeof(fa), &la), MPOS_OK);
    assert_int_equal(mpos_link_encode(&mb, fb, sizeof(fb), &lb), MPOS_OK);
}

/* 1 if the frame a is still whole inside buf (damage that only added bytes around it). */
static int contains_a(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i + la <= len; i++) {
        if (memcmp(buf + i, fa, la) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Feeds damaged + b (one piece, then byte by byte): exactly b comes out (and a before it, if
 * the damage left a whole). */
static void expect_only_b(const uint8_t *damaged, size_t dlen)
{
    static mpos_link_decoder d;
    static uint8_t buf[2 * MPOS_LINK_MAX_FRAME_LEN + 16];
    mpos_link_msg out[3];
    size_t expect = contains_a(damaged, dlen) ? 2 : 1;
    memcpy(buf, damaged, dlen);
    memcpy(buf + dlen, fb, lb);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        mpos_link_decoder_init(&d);
        size_t n = bytewise ? feed_chunked(&d, buf, dlen + lb, 1, out, 3)
                            : decode_all(&d, buf, dlen + lb, out, 3);
        if (n != expect || out[0].seq != (expect == 2 ? ma.seq : 0xB0B0)) {
            print_message("damaged frame of %zu bytes (type %02X, bytewise %d): %zu frames out:",
                          dlen, ma.type, bytewise, n);
            for (size_t i = 0; i < n; i++) {
                print_message(" %04X", out[i].seq);
            }
            print_message("\n");
            for (size_t i = 0; i < dlen && i < 48; i++) {
                print_message("%02X", damaged[i]);
            }
            print_message("\n");
        }
        assert_int_equal(n, expect);
        if (expect == 2) {
            assert_int_equal(out[0].seq, ma.seq);
        }
        assert_int_equal(out[expect - 1].seq, 0xB0B0);
        if (mb.type != MPOS_LINK_CMD_TUNNEL_DATA) {
            assert_msg_equal(&mb, &out[expect - 1]);
        }
        if (expect == 1) {
            assert_true(d.dropped_bytes >= (dlen > 0 ? 1u : 0u));
        }
    }
}

static void test_truncation(void **state)
{
    (void)state;
    static mpos_link_decoder d;
    mpos_link_msg out[1];
    /* Every truncation of every type of frame: followed by a good frame, only that one comes
     * out (at once, by the look-ahead rule); at the end of the stream, nothing comes out. */
    for (size_t t = 0; t < NTYPES; t++) {
        make_pair(all_types[t], 1, MPOS_LINK_EVT_RESULT, 1);
        for (size_t k = 0; k < la; k += (k < 64 || k + 64 > la) ? 1 : tu_scale()) {
            expect_only_b(fa, k);
            mpos_link_decoder_init(&d);
            assert_int_equal(decode_all(&d, fa, k, out, 1), 0);
        }
    }
}

static void test_garbage(void **state)
{
    (void)state;
    static uint8_t dmg[MPOS_LINK_MAX_FRAME_LEN + 8];
    static const uint8_t inject[] = {0x00, 0xFF, MPOS_LINK_MAGIC0, MPOS_LINK_MAGIC1, 0x01, 0x83};
    /* At every position of every type of frame: a bit flipped, a byte injected, a byte
     * deleted; every bit and every injected byte in the header and the CRC. Only the good
     * frame after it comes out (and the damaged one too when the damage left it whole). */
    for (size_t t = 0; t < NTYPES; t++) {
        make_pair(all_types[t], 1, t % 2 ? MPOS_LINK_CMD_CANCEL : MPOS_LINK_EVT_RESULT, 2);
        for (size_t i = 0; i < la; i += (i < 64 || i + 64 > la) ? 1 : tu_scale()) {
            int edge = i < MPOS_LINK_HEADER_LEN || i + MPOS_LINK_TRAILER_LEN >= la;
            for (int b = 0; b < 8; b++) {
                if (!edge && b != (int)(i % 8)) {
                    continue;
                }
                memcpy(dmg, fa, la);
                dmg[i] ^= (uint8_t)(1u << b);
                expect_only_b(dmg, la);
            }
            for (size_t g = 0; g < sizeof(inject); g++) {
                if (!edge && g != i % sizeof(inject)) {
                    continue;
                }
                memcpy(dmg, fa, i);
                dmg[i] = inject[g];
                memcpy(dmg + i + 1, fa + i, la - i);
                expect_only_b(dmg, la + 1);
            }
            memcpy(dmg, fa, i);
            memcpy(dmg + i, fa + i + 1, la - i - 1);
            expect_only_b(dmg, la - 1);
        }
    }
}

/* Noise before, between and after frames, with false magics and fake headers in it. */
static void test_noise(void **state)
{
    (void)state;
    static mpos_link_decoder d;
    static uint8_t buf[sizeof(stream)];
    for (int round = 0; round < 20; round++) {
        size_t slen = make_stream(), len = 0, pos = 0;
        for (size_t i = 0; i < STREAM_FRAMES; i++) {
            size_t noise = rnd_below(round % 2 ? 300 : 20);
            for (size_t k = 0; k < noise; k++) {
                uint8_t c = (uint8_t)rnd();
                buf[len++] = (rnd() & 3) == 0   ? MPOS_LINK_MAGIC0
                             : (rnd() & 3) == 0 ? MPOS_LINK_MAGIC1
                                                : c;
            }
            if ((rnd() & 7) == 0) {
                /* A fake header whose CRC-16 is right, announcing a long payload. */
                uint8_t fake[MPOS_LINK_HEADER_LEN] = {
                    MPOS_LINK_MAGIC0, MPOS_LINK_MAGIC1, MPOS_LINK_VERSION, 1, 0, 0, 0x0F, 0xF0};
                mpos_store_be16(fake + 8, mpos_link_crc16(fake, 8));
                memcpy(buf + len, fake, sizeof(fake));
                len += sizeof(fake);
            }
            /* The frame itself: find its length by re-encoding. */
            size_t n = 0;
            uint8_t tmp[MPOS_LINK_MAX_FRAME_LEN];
            assert_int_equal(mpos_link_encode(&sent[i], tmp, sizeof(tmp), &n), MPOS_OK);
            assert_memory_equal(tmp, stream + pos, n);
            memcpy(buf + len, tmp, n);
            len += n;
            pos += n;
        }
        assert_int_equal(pos, slen);
        mpos_link_decoder_init(&d);
        size_t n = feed_chunked(&d, buf, len, 1 + rnd_below(300), got, STREAM_FRAMES + 4);
        assert_int_equal(n, STREAM_FRAMES);
        for (size_t i = 0; i < n; i++) {
            assert_msg_equal(&sent[i], &got[i]);
        }
    }
    /* A flood of pure noise, then one frame. */
    size_t len = 0;
    for (; len < 200000 && len < sizeof(buf) - MPOS_LINK_MAX_FRAME_LEN; len++) {
        buf[len] = (uint8_t)rnd();
    }
    mpos_link_msg m = sample(MPOS_LINK_CMD_GET_INFO, 0), out[4];
    size_t n = 0;
    assert_int_equal(mpos_link_encode(&m, buf + len, MPOS_LINK_MAX_FRAME_LEN, &n), MPOS_OK);
    mpos_link_decoder_init(&d);
    assert_int_equal(decode_all(&d, buf, len + n, out, 4), 1);
    assert_msg_equal(&m, &out[0]);
    assert_true(d.dropped_bytes >= len - MPOS_LINK_MAX_FRAME_LEN);
}

static void test_oversize(void **state)
{
    (void)state;
    static uint8_t big[MPOS_LINK_MAX_FRAME_LEN + 64], payload[MPOS_LINK_MAX_PAYLOAD + 1];
    size_t n = 0;
    /* The encoders refuse more than the maximum. */
    assert_int_equal(
        mpos_link_frame_encode(5, 0, payload, MPOS_LINK_MAX_PAYLOAD + 1, big, sizeof(big), &n),
        MPOS_ERR_LENGTH);
    mpos_link_msg m = sample(MPOS_LINK_CMD_TUNNEL_DATA, 2);
    m.u.tunnel.len = MPOS_LINK_MAX_PAYLOAD + 1;
    assert_int_equal(mpos_link_encode(&m, big, sizeof(big), &n), MPOS_ERR_FORMAT);
    /* The maximum itself passes. */
    assert_int_equal(
        mpos_link_frame_encode(5, 0, payload, MPOS_LINK_MAX_PAYLOAD, big, sizeof(big), &n),
        MPOS_OK);
    assert_int_equal(n, MPOS_LINK_MAX_FRAME_LEN);
    /* A header announcing 4097 .. 65535 bytes, with correct CRCs, is dropped at once. */
    static const uint16_t lengths[] = {MPOS_LINK_MAX_PAYLOAD + 1, 0x2000, 0xFFFF};
    for (size_t i = 0; i < 3; i++) {
        uint8_t hdr[MPOS_LINK_HEADER_LEN] = {MPOS_LINK_MAGIC0, MPOS_LINK_MAGIC1, MPOS_LINK_VERSION,
                                             MPOS_LINK_CMD_TUNNEL_DATA};
        mpos_store_be16(hdr + 6, lengths[i]);
        mpos_store_be16(hdr + 8, mpos_link_crc16(hdr, 8));
        make_pair(MPOS_LINK_CMD_GET_INFO, 0, MPOS_LINK_CMD_CANCEL, 0);
        expect_only_b(hdr, sizeof(hdr));
    }
    /* Another version: dropped. */
    make_pair(MPOS_LINK_CMD_GET_INFO, 0, MPOS_LINK_CMD_CANCEL, 0);
    memcpy(big, fa, la);
    big[2] = 2;
    mpos_store_be16(big + 8, mpos_link_crc16(big, 8));
    mpos_store_be32(big + la - 4, mpos_link_crc32(big, la - 4));
    expect_only_b(big, la);
    /* Arguments. */
    mpos_link_decoder d;
    mpos_link_frame f;
    size_t used;
    mpos_link_decoder_init(&d);
    assert_int_equal(mpos_link_decoder_feed(&d, NULL, 1, &used, &f), MPOS_ERR_ARG);
    assert_int_equal(mpos_link_decoder_feed(NULL, big, 1, &used, &f), MPOS_ERR_ARG);
    assert_int_equal(mpos_link_decoder_feed(&d, NULL, 0, &used, &f), 0);
}

/* ---- message fields --------------------------------------------------------------------- */

/* msg must be refused by the encoder, and the same payload by the decoder. */
static void expect_bad_msg(const mpos_link_msg *m)
{
    static uint8_t frame[MPOS_LINK_MAX_FRAME_LEN];
    size_t n = 0;
    assert_int_equal(mpos_link_encode(m, frame, sizeof(frame), &n), MPOS_ERR_FORMAT);
}

/* A raw payload for a type must be refused by the decoder. */
static void expect_bad_payload(uint8_t type, const uint8_t *p, size_t len)
{
    mpos_link_frame f = {type, 1, p, len};
    mpos_link_msg m;
    assert_int_equal(mpos_link_decode(&f, &m), MPOS_ERR_FORMAT);
    assert_int_equal(m.type, 0);
}

static void test_payload_lengths(void **state)
{
    (void)state;
    static uint8_t frame[MPOS_LINK_MAX_FRAME_LEN], p[MPOS_LINK_MAX_PAYLOAD];
    for (size_t t = 0; t < NTYPES; t++) {
        if (all_types[t] == MPOS_LINK_CMD_TUNNEL_DATA ||
            all_types[t] == MPOS_LINK_EVT_TUNNEL_DATA) {
            expect_bad_payload(all_types[t], NULL, 0); /* empty tunnel data */
            continue;
        }
        mpos_link_msg m = sample(all_types[t], 1);
        size_t n = 0;
        assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
        size_t plen = n - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN;
        memcpy(p, frame + MPOS_LINK_HEADER_LEN, plen);
        /* Every truncation and one extra byte. */
        for (size_t k = 0; k < plen; k++) {
            uint8_t *exact = malloc(k ? k : 1);
            assert_non_null(exact);
            memcpy(exact, p, k);
            expect_bad_payload(all_types[t], exact, k);
            free(exact);
        }
        p[plen] = 0;
        expect_bad_payload(all_types[t], p, plen + 1);
    }
}

static void test_field_ranges(void **state)
{
    (void)state;
    mpos_link_msg m;
    /* START_TXN */
    m = sample(MPOS_LINK_CMD_START_TXN, 0);
    m.u.start.txn_type = 0;
    expect_bad_msg(&m);
    m.u.start.txn_type = 5;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_START_TXN, 0); /* sale */
    m.u.start.amount = 0;
    expect_bad_msg(&m);
    m.u.start.amount = MPOS_LINK_MAX_AMOUNT + 1;
    expect_bad_msg(&m);
    m.u.start.amount = MPOS_LINK_MAX_AMOUNT;
    size_t n;
    uint8_t frame[256];
    assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
    m.u.start.currency = 0;
    expect_bad_msg(&m);
    m.u.start.currency = 1000;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_START_TXN, 0);
    strcpy(m.u.start.original_ref, "X"); /* a sale has no original */
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_START_TXN, 3); /* balance */
    m.u.start.amount = 1;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_START_TXN, 1); /* void */
    m.u.start.original_ref[0] = '\0';
    expect_bad_msg(&m);
    strcpy(m.u.start.original_ref, "12 34");
    expect_bad_msg(&m);
    memset(m.u.start.original_ref, 'A', sizeof(m.u.start.original_ref)); /* no NUL */
    expect_bad_msg(&m);
    /* ACTIVATE */
    m = sample(MPOS_LINK_CMD_ACTIVATE, 0);
    strcpy(m.u.activate.code, "ABC");
    expect_bad_msg(&m);
    strcpy(m.u.activate.code, "ABCD EFGH");
    expect_bad_msg(&m);
    memset(m.u.activate.code, 'A', sizeof(m.u.activate.code));
    expect_bad_msg(&m);
    /* SET_HOST_LOCATION */
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.lat_e7 = MPOS_LINK_LAT_MAX_E7 + 1;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.lat_e7 = -MPOS_LINK_LAT_MAX_E7 - 1;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.lon_e7 = MPOS_LINK_LON_MAX_E7 + 1;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.lon_e7 = INT32_MIN;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.accuracy_m = MPOS_LINK_ACCURACY_MAX_M + 1;
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_CMD_SET_HOST_LOCATION, 1);
    m.u.location.time = MPOS_LINK_TIME_MIN - 1;
    expect_bad_msg(&m);
    m.u.location.time = MPOS_LINK_TIME_MAX + 1;
    expect_bad_msg(&m);
    m.u.location.time = 0;
    expect_bad_msg(&m);
    /* PROMPT_SHOWN: ids of the table only, unused parameters zero. */
    for (unsigned id = 0; id < 256; id++) {
        m = sample(MPOS_LINK_EVT_PROMPT_SHOWN, 0);
        m.u.prompt.prompt = (uint8_t)id;
        m.u.prompt.count = 0;
        int bits = mpos_link_prompt_params(id);
        unsigned params = bits < 0 ? 0u : (unsigned)bits;
        if (bits < 0) {
            assert_true(id == 0 || id > MPOS_LINK_PROMPT_MAX);
            expect_bad_msg(&m);
            continue;
        }
        if (params & MPOS_LINK_PARAM_TYPE) {
            m.u.prompt.txn_type = MPOS_LINK_TXN_REFUND;
        }
        if (params & MPOS_LINK_PARAM_AMOUNT) {
            m.u.prompt.amount = 100;
            m.u.prompt.currency = 840;
        }
        assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
        mpos_link_msg bad = m;
        bad.u.prompt.count = (params & MPOS_LINK_PARAM_COUNT) ? 0 : 1;
        if (!(params & MPOS_LINK_PARAM_COUNT)) {
            expect_bad_msg(&bad);
        }
        bad = m;
        bad.u.prompt.txn_type = (params & MPOS_LINK_PARAM_TYPE) ? 9 : 1;
        expect_bad_msg(&bad);
        bad = m;
        bad.u.prompt.currency = (params & MPOS_LINK_PARAM_AMOUNT) ? 1000 : 156;
        expect_bad_msg(&bad);
    }
    /* RESULT: never a full PAN (G-ACCT-2). */
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    strcpy(m.u.result.masked_pan, "4111111111111111");
    expect_bad_msg(&m);
    strcpy(m.u.result.masked_pan, "4111111*****1111");
    expect_bad_msg(&m);
    strcpy(m.u.result.masked_pan, "411111");
    expect_bad_msg(&m);
    m.u.result.masked_pan[0] = '\0'; /* no card: fine */
    assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    strcpy(m.u.result.response_code, "0");
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    strcpy(m.u.result.auth_code, "A1B2C");
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    strcpy(m.u.result.rrn, "12345678901$");
    expect_bad_msg(&m);
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    m.u.result.outcome = 0;
    expect_bad_msg(&m);
    m.u.result.outcome = MPOS_LINK_OUTCOME_ACTIVATED; /* activation carries no transaction */
    expect_bad_msg(&m);
    /* A full PAN written into a RESULT payload by a peer is refused by the decoder too. */
    m = sample(MPOS_LINK_EVT_RESULT, 1);
    assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
    uint8_t *payload = frame + MPOS_LINK_HEADER_LEN;
    size_t plen = n - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN, stars = 0;
    for (size_t k = 0; k < plen; k++) {
        if (payload[k] == '*') {
            payload[k] = '1';
            stars++;
        }
    }
    assert_int_equal(stars, 6);
    expect_bad_payload(MPOS_LINK_EVT_RESULT, payload, plen);
    /* A NUL inside a string field: refused (it would hide what follows it from the checks
     * and give the message a second encoding). */
    static const uint8_t nul_ref[] = {MPOS_LINK_TXN_SALE, 0, 0, 0, 0, 0, 0, 0, 1, 0, 156, 1, 0};
    expect_bad_payload(MPOS_LINK_CMD_START_TXN, nul_ref, sizeof(nul_ref));
    static const uint8_t nul_code[] = {5, 'A', 'B', 'C', 'D', 0};
    expect_bad_payload(MPOS_LINK_CMD_ACTIVATE, nul_code, sizeof(nul_code));
    /* Unknown types: neither encoded nor decoded. */
    m = sample(MPOS_LINK_CMD_GET_INFO, 0);
    m.type = 0x07;
    assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_ERR_UNSUPPORTED);
    mpos_link_frame f = {0x07, 0, NULL, 0};
    assert_int_equal(mpos_link_decode(&f, &m), MPOS_ERR_UNSUPPORTED);
}

/* ---- the command validator -------------------------------------------------------------- */

/* docs/protocol.md, "State table", written out again. Columns: GET_INFO, START_TXN, CANCEL,
 * ACTIVATE, TUNNEL_DATA, SET_HOST_LOCATION. */
static const int table[MPOS_LINK_STATE_COUNT][6] = {
    [MPOS_LINK_STATE_NOT_ACTIVATED] = {1, 0, 0, 1, 1, 1},
    [MPOS_LINK_STATE_IDLE] = {1, 1, 0, 0, 1, 1},
    [MPOS_LINK_STATE_AWAIT_CONFIRM] = {1, 0, 1, 0, 1, 0},
    [MPOS_LINK_STATE_AWAIT_CARD] = {1, 0, 1, 0, 1, 0},
    [MPOS_LINK_STATE_AWAIT_PIN] = {1, 0, 1, 0, 1, 0},
    [MPOS_LINK_STATE_ONLINE] = {1, 0, 0, 0, 1, 0},
    [MPOS_LINK_STATE_SHOW_RESULT] = {1, 0, 0, 0, 1, 0},
};

static int expected_verdict(unsigned state, unsigned type)
{
    if (type < MPOS_LINK_CMD_GET_INFO || type > MPOS_LINK_CMD_SET_HOST_LOCATION) {
        return MPOS_LINK_E_UNKNOWN_COMMAND;
    }
    return table[state][type - 1] ? MPOS_OK : MPOS_LINK_E_NOT_ALLOWED;
}

/* The reply is exactly one ERROR frame answering (seq, type) with code, in state. */
static void assert_error_reply(const uint8_t *reply, size_t len, uint16_t seq, uint8_t type,
                               int code, unsigned state)
{
    static mpos_link_decoder d;
    mpos_link_msg out[2];
    assert_int_equal(len, MPOS_LINK_ERROR_FRAME_LEN);
    mpos_link_decoder_init(&d);
    assert_int_equal(decode_all(&d, reply, len, out, 2), 1);
    assert_int_equal(out[0].type, MPOS_LINK_EVT_ERROR);
    assert_int_equal(out[0].u.error.ref_seq, seq);
    assert_int_equal(out[0].u.error.ref_type, type);
    assert_int_equal(out[0].u.error.code, code);
    assert_int_equal(out[0].u.error.state, state);
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

/* One frame into a session in state; checks the verdict, the reply, the unchanged state. */
static void try_frame(unsigned state, uint8_t type, const uint8_t *payload, size_t len, int expect)
{
    mpos_link_session s;
    mpos_link_msg cmd;
    uint8_t reply[64];
    size_t reply_len = 99;
    mpos_link_frame f = {type, (uint16_t)(0x4000 + type), payload, len};
    assert_int_equal(mpos_link_session_init(&s, (enum mpos_link_state)state), MPOS_OK);
    s.next_seq = 77;
    memset(&cmd, 0xA5, sizeof(cmd));
    int r = mpos_link_session_receive(&s, &f, &cmd, reply, sizeof(reply), &reply_len);
    assert_int_equal(r, expect);
    assert_int_equal(s.state, state); /* nothing but the state machine changes it */
    if (expect == MPOS_OK) {
        assert_int_equal(reply_len, 0);
        assert_int_equal(cmd.type, type);
        assert_int_equal(cmd.seq, f.seq);
        assert_int_equal(s.next_seq, 77);
    } else {
        assert_true(all_zero(&cmd, sizeof(cmd)));
        assert_error_reply(reply, reply_len, f.seq, type, expect, state);
        assert_int_equal(s.next_seq, 78);
    }
}

static void test_state_table_exhaustive(void **state)
{
    (void)state;
    static uint8_t frame[MPOS_LINK_MAX_FRAME_LEN], junk[64];
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)rnd();
    }
    for (unsigned s = 0; s < MPOS_LINK_STATE_COUNT; s++) {
        for (unsigned t = 0; t < 256; t++) {
            int expect = expected_verdict(s, t);
            assert_int_equal(mpos_link_check((enum mpos_link_state)s, t), expect);
            if (mpos_link_is_command(t) || mpos_link_is_event(t)) {
                /* A well-formed message of the type. */
                mpos_link_msg m = sample((uint8_t)t, 1);
                size_t n = 0;
                assert_int_equal(mpos_link_encode(&m, frame, sizeof(frame), &n), MPOS_OK);
                size_t plen = n - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN;
                try_frame(s, (uint8_t)t, frame + MPOS_LINK_HEADER_LEN, plen, expect);
                if (expect == MPOS_OK && t != MPOS_LINK_CMD_TUNNEL_DATA) {
                    /* Allowed, but malformed: one byte too many. */
                    frame[MPOS_LINK_HEADER_LEN + plen] = 0;
                    try_frame(s, (uint8_t)t, frame + MPOS_LINK_HEADER_LEN, plen + 1,
                              MPOS_LINK_E_MALFORMED);
                }
            }
            /* Empty and junk payloads. */
            int empty_ok =
                expect == MPOS_OK && (t == MPOS_LINK_CMD_GET_INFO || t == MPOS_LINK_CMD_CANCEL);
            try_frame(s, (uint8_t)t, NULL, 0,
                      expect != MPOS_OK ? expect
                      : empty_ok        ? MPOS_OK
                                        : MPOS_LINK_E_MALFORMED);
            int junk_ok = expect == MPOS_OK && t == MPOS_LINK_CMD_TUNNEL_DATA;
            try_frame(s, (uint8_t)t, junk, sizeof(junk),
                      expect != MPOS_OK ? expect
                      : junk_ok         ? MPOS_OK
                                        : MPOS_LINK_E_MALFORMED);
        }
    }
    /* A state out of range fails closed. */
    assert_int_equal(mpos_link_check((enum mpos_link_state)MPOS_LINK_STATE_COUNT, 1), MPOS_ERR_ARG);
    mpos_link_session s = {(enum mpos_link_state)MPOS_LINK_STATE_COUNT, 0};
    mpos_link_msg cmd;
    uint8_t reply[64];
    size_t reply_len = 0;
    mpos_link_frame f = {MPOS_LINK_CMD_GET_INFO, 9, NULL, 0};
    assert_int_equal(mpos_link_session_receive(&s, &f, &cmd, reply, sizeof(reply), &reply_len),
                     MPOS_LINK_E_INTERNAL);
    assert_int_equal(s.state, MPOS_LINK_STATE_COUNT);
    assert_int_equal(mpos_link_session_init(&s, (enum mpos_link_state)7), MPOS_ERR_ARG);
    assert_int_equal(mpos_link_session_set_state(&s, (enum mpos_link_state)7), MPOS_ERR_ARG);
}

/* The oracles T-LIMIT-1 forbids have no command: whatever type byte a host picks for "encrypt
 * this PIN", "encrypt this data", "MAC these bytes", "show this text", "export a key" or
 * "debug mode", and whatever it puts in the payload, every state answers UNKNOWN_COMMAND (or
 * a refusal of a real command) and nothing changes. */
static void test_no_oracles(void **state)
{
    (void)state;
    static const char *payloads[] = {
        "1234",                             /* a clear PIN */
        "4111111111111111=30121010000",     /* track data */
        "0123456789ABCDEFFEDCBA9876543210", /* key-like bytes */
        "APPROVED - PLEASE ENTER PIN",      /* display text */
        "DEBUG",
    };
    for (unsigned s = 0; s < MPOS_LINK_STATE_COUNT; s++) {
        for (unsigned t = 0; t < 256; t++) {
            if (mpos_link_is_command(t)) {
                continue;
            }
            for (size_t p = 0; p < sizeof(payloads) / sizeof(payloads[0]); p++) {
                try_frame(s, (uint8_t)t, (const uint8_t *)payloads[p], strlen(payloads[p]),
                          MPOS_LINK_E_UNKNOWN_COMMAND);
            }
        }
        /* The real commands with such payloads: refused unless they are what the command
         * takes (TUNNEL_DATA carries opaque TLS bytes to the terminal's own TLS client). */
        for (unsigned t = MPOS_LINK_CMD_GET_INFO; t <= MPOS_LINK_CMD_SET_HOST_LOCATION; t++) {
            int expect = expected_verdict(s, t);
            if (expect != MPOS_OK || t == MPOS_LINK_CMD_TUNNEL_DATA) {
                continue;
            }
            try_frame(s, (uint8_t)t, (const uint8_t *)payloads[3], strlen(payloads[3]),
                      MPOS_LINK_E_MALFORMED);
        }
    }
}

static void test_session(void **state)
{
    (void)state;
    mpos_link_session s;
    uint8_t out[MPOS_LINK_MAX_FRAME_LEN];
    size_t n = 0;
    assert_int_equal(mpos_link_session_init(&s, MPOS_LINK_STATE_IDLE), MPOS_OK);
    /* Events only, with the session's sequence numbers. */
    for (size_t t = 0; t < NTYPES; t++) {
        mpos_link_msg m = sample(all_types[t], 1);
        uint16_t before = s.next_seq;
        int r = mpos_link_session_send(&s, &m, out, sizeof(out), &n);
        if (mpos_link_is_command(all_types[t])) {
            assert_int_equal(r, MPOS_ERR_ARG);
            assert_int_equal(s.next_seq, before);
        } else {
            assert_int_equal(r, MPOS_OK);
            assert_int_equal(m.seq, before);
            assert_int_equal(s.next_seq, (uint16_t)(before + 1));
            assert_int_equal(mpos_load_be16(out + 4), before);
        }
    }
    /* The state machine moves the state; the table follows. */
    mpos_link_msg cmd;
    uint8_t reply[64];
    size_t reply_len;
    mpos_link_msg start = sample(MPOS_LINK_CMD_START_TXN, 0);
    assert_int_equal(mpos_link_encode(&start, out, sizeof(out), &n), MPOS_OK);
    mpos_link_frame f = {MPOS_LINK_CMD_START_TXN, start.seq, out + MPOS_LINK_HEADER_LEN,
                         n - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN};
    assert_int_equal(mpos_link_session_receive(&s, &f, &cmd, reply, sizeof(reply), &reply_len),
                     MPOS_OK);
    assert_int_equal(cmd.u.start.amount, start.u.start.amount);
    assert_int_equal(mpos_link_session_set_state(&s, MPOS_LINK_STATE_AWAIT_CONFIRM), MPOS_OK);
    assert_int_equal(mpos_link_session_receive(&s, &f, &cmd, reply, sizeof(reply), &reply_len),
                     MPOS_LINK_E_NOT_ALLOWED); /* no second transaction */
    assert_int_equal(s.state, MPOS_LINK_STATE_AWAIT_CONFIRM);
    /* A reply buffer too small is an argument error, not a refusal. */
    assert_int_equal(
        mpos_link_session_receive(&s, &f, &cmd, reply, MPOS_LINK_ERROR_FRAME_LEN - 1, &reply_len),
        MPOS_ERR_LENGTH);
    assert_int_equal(mpos_link_session_receive(NULL, &f, &cmd, reply, sizeof(reply), &reply_len),
                     MPOS_ERR_ARG);
}

/* The name tables: every prompt and outcome has its own name, in enum order (the display
 * logs and the acceptance tests match on them); ids outside the tables are "?". */
static void test_names(void **state)
{
    (void)state;
    assert_string_equal(mpos_link_prompt_name(MPOS_PROMPT_WELCOME), "WELCOME");
    assert_string_equal(mpos_link_prompt_name(MPOS_PROMPT_ENTER_PIN), "ENTER_PIN");
    assert_string_equal(mpos_link_prompt_name(MPOS_PROMPT_CARD_EXPIRED), "CARD_EXPIRED");
    assert_string_equal(mpos_link_prompt_name(0), "?");
    assert_string_equal(mpos_link_prompt_name(MPOS_LINK_PROMPT_MAX + 1), "?");
    assert_string_equal(mpos_link_prompt_name(0xFFFFFFFFu), "?");
    for (unsigned a = 1; a <= MPOS_LINK_PROMPT_MAX; a++) {
        assert_non_null(mpos_link_prompt_name(a));
        assert_string_not_equal(mpos_link_prompt_name(a), "?");
        for (unsigned b = a + 1; b <= MPOS_LINK_PROMPT_MAX; b++) {
            assert_string_not_equal(mpos_link_prompt_name(a), mpos_link_prompt_name(b));
        }
    }
    assert_string_equal(mpos_link_outcome_name(MPOS_LINK_OUTCOME_APPROVED), "APPROVED");
    assert_string_equal(mpos_link_outcome_name(MPOS_LINK_OUTCOME_NO_RESPONSE), "NO_RESPONSE");
    assert_string_equal(mpos_link_outcome_name(MPOS_LINK_OUTCOME_ACTIVATION_FAILED),
                        "ACTIVATION_FAILED");
    assert_string_equal(mpos_link_outcome_name(0), "?");
    assert_string_equal(mpos_link_outcome_name(MPOS_LINK_OUTCOME_ACTIVATION_FAILED + 1), "?");
    for (unsigned a = MPOS_LINK_OUTCOME_APPROVED; a <= MPOS_LINK_OUTCOME_ACTIVATION_FAILED; a++) {
        assert_string_not_equal(mpos_link_outcome_name(a), "?");
        for (unsigned b = a + 1; b <= MPOS_LINK_OUTCOME_ACTIVATION_FAILED; b++) {
            assert_string_not_equal(mpos_link_outcome_name(a), mpos_link_outcome_name(b));
        }
    }
}

int main(void)
{
    fill_tunnel();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),          cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_chunking),     cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_garbage),      cmocka_unit_test(test_noise),
        cmocka_unit_test(test_oversize),     cmocka_unit_test(test_payload_lengths),
        cmocka_unit_test(test_field_ranges), cmocka_unit_test(test_state_table_exhaustive),
        cmocka_unit_test(test_no_oracles),   cmocka_unit_test(test_session),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
