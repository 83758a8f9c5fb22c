/* Host link codec (host/lib/hlink.c) cross-checked against the terminal's own implementation
 * (terminal/core/link), which this test may link and libmposhost may not; plus amount
 * parsing and the state file's permissions.
 *
 * Commands the host encodes must decode in the terminal's decoder and validator to the same
 * values; events the terminal encodes must decode in the host's to the same values; both
 * decoders must agree on frames cut into any chunks and wrapped in noise. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hlink.h"
#include "hostint.h"
#include "link/link.h"
#include "mposhost.h"

/* The terminal decodes one whole frame of ours. */
static void term_decode(const uint8_t *frame, size_t n, mpos_link_msg *msg)
{
    mpos_link_decoder d;
    mpos_link_frame f;
    size_t used = 0;
    mpos_link_decoder_init(&d);
    assert_int_equal(mpos_link_decoder_feed(&d, frame, n, &used, &f), 1);
    assert_int_equal(used, n);
    assert_int_equal(mpos_link_decode(&f, msg), MPOS_OK);
}

static void test_crc(void **state)
{
    (void)state;
    const uint8_t s[] = "123456789";
    assert_int_equal(hl_crc16(s, 9), 0x29B1);
    assert_int_equal(hl_crc32(s, 9), 0xCBF43926u);
    for (size_t n = 0; n < 300; n += 7) {
        uint8_t b[300];
        for (size_t i = 0; i < n; i++) {
            b[i] = (uint8_t)(i * 31 + n);
        }
        assert_int_equal(hl_crc16(b, n), mpos_link_crc16(b, n));
        assert_int_equal(hl_crc32(b, n), mpos_link_crc32(b, n));
    }
}

static void test_commands_to_terminal(void **state)
{
    (void)state;
    uint8_t p[64], fr[HL_MAX_FRAME];
    size_t n = 0;
    int pl;
    mpos_link_msg m;
    mpos_link_session s;
    mpos_link_frame f;
    mpos_link_decoder d;
    uint8_t reply[64];
    size_t rl = 0, used = 0;

    pl = hl_put_start(p, sizeof(p), 3, 123456, 156, "000012345678");
    assert_true(pl > 0);
    assert_int_equal(hl_frame(HL_CMD_START_TXN, 7, p, (size_t)pl, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_int_equal(m.type, MPOS_LINK_CMD_START_TXN);
    assert_int_equal(m.seq, 7);
    assert_int_equal(m.u.start.txn_type, 3);
    assert_int_equal(m.u.start.amount, 123456);
    assert_int_equal(m.u.start.currency, 156);
    assert_string_equal(m.u.start.original_ref, "000012345678");
    /* And byte for byte as the terminal's encoder writes it. */
    {
        uint8_t tf[HL_MAX_FRAME];
        size_t tn = 0;
        assert_int_equal(mpos_link_encode(&m, tf, sizeof(tf), &tn), MPOS_OK);
        assert_int_equal(tn, n);
        assert_memory_equal(tf, fr, n);
    }
    /* The terminal's validator takes it when idle. */
    assert_int_equal(mpos_link_session_init(&s, MPOS_LINK_STATE_IDLE), MPOS_OK);
    mpos_link_decoder_init(&d);
    assert_int_equal(mpos_link_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(mpos_link_session_receive(&s, &f, &m, reply, sizeof(reply), &rl), 0);

    pl = hl_put_start(p, sizeof(p), 4, 0, 392, NULL);
    assert_true(pl > 0);
    assert_int_equal(hl_frame(HL_CMD_START_TXN, 8, p, (size_t)pl, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_int_equal(m.u.start.txn_type, 4);
    assert_int_equal(m.u.start.currency, 392);

    pl = hl_put_activate(p, sizeof(p), "AB12-cd34");
    assert_true(pl > 0);
    assert_int_equal(hl_frame(HL_CMD_ACTIVATE, 9, p, (size_t)pl, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_string_equal(m.u.activate.code, "AB12-cd34");

    pl = hl_put_location(p, sizeof(p), -337000000, -1799999999, 1000000, 1760000000);
    assert_int_equal(pl, 20);
    assert_int_equal(hl_frame(HL_CMD_SET_HOST_LOCATION, 10, p, 20, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_int_equal(m.u.location.lat_e7, -337000000);
    assert_int_equal(m.u.location.lon_e7, -1799999999);
    assert_int_equal(m.u.location.accuracy_m, 1000000);
    assert_int_equal(m.u.location.time, 1760000000);

    assert_int_equal(hl_frame(HL_CMD_GET_INFO, 11, NULL, 0, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_int_equal(m.type, MPOS_LINK_CMD_GET_INFO);

    static uint8_t big[4096];
    memset(big, 0x17, sizeof(big));
    assert_int_equal(hl_frame(HL_CMD_TUNNEL_DATA, 12, big, 4096, fr, sizeof(fr), &n), MPOS_OK);
    term_decode(fr, n, &m);
    assert_int_equal(m.u.tunnel.len, 4096);
    assert_int_equal(hl_frame(HL_CMD_TUNNEL_DATA, 12, big, 4097, fr, sizeof(fr) + 1, &n),
                     MPOS_ERR_LENGTH);

    /* What the terminal would call malformed, the host refuses to encode. */
    assert_true(hl_put_start(p, sizeof(p), 1, 0, 156, NULL) < 0);    /* sale of 0 */
    assert_true(hl_put_start(p, sizeof(p), 4, 1, 156, NULL) < 0);    /* balance > 0 */
    assert_true(hl_put_start(p, sizeof(p), 2, 100, 156, NULL) < 0);  /* void: no ref */
    assert_true(hl_put_start(p, sizeof(p), 1, 100, 156, "123") < 0); /* sale: a ref */
    assert_true(hl_put_start(p, sizeof(p), 1, 1000000000000ull, 156, NULL) < 0);
    assert_true(hl_put_start(p, sizeof(p), 1, 100, 1000, NULL) < 0);
    assert_true(hl_put_start(p, sizeof(p), 2, 100, 156, "12 4") < 0);
    assert_true(hl_put_activate(p, sizeof(p), "abc") < 0);
    assert_true(hl_put_activate(p, sizeof(p), "abc_d") < 0);
    assert_true(hl_put_location(p, sizeof(p), 900000001, 0, 0, 1760000000) < 0);
    assert_true(hl_put_location(p, sizeof(p), 0, 0, 0, 946684799) < 0);
}

/* Encodes an event with the terminal's encoder and decodes it with the host's. */
static void host_decode(const mpos_link_msg *m, struct hl_event *ev)
{
    uint8_t fr[HL_MAX_FRAME];
    size_t n = 0, used = 0;
    hl_decoder d;
    struct hl_frame_view f;
    assert_int_equal(mpos_link_encode(m, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(used, n);
    assert_int_equal(f.seq, m->seq);
    assert_int_equal(hl_decode_event(&f, ev), MPOS_OK);
    assert_int_equal(ev->type, m->type);
}

static void test_events_from_terminal(void **state)
{
    (void)state;
    mpos_link_msg m;
    struct hl_event ev;

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_INFO;
    m.seq = 300;
    m.u.info.ref_seq = 5;
    m.u.info.state = MPOS_LINK_STATE_IDLE;
    strcpy(m.u.info.serial, "SIM-0001");
    strcpy(m.u.info.firmware, "0.1.0-sim");
    host_decode(&m, &ev);
    assert_int_equal(ev.u.info.ref_seq, 5);
    assert_int_equal(ev.u.info.state, 1);
    assert_string_equal(ev.u.info.serial, "SIM-0001");
    assert_string_equal(ev.u.info.firmware, "0.1.0-sim");

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_ERROR;
    m.u.error.ref_seq = 65535;
    m.u.error.ref_type = 2;
    m.u.error.code = MPOS_LINK_E_NOT_ALLOWED;
    m.u.error.state = MPOS_LINK_STATE_NOT_ACTIVATED;
    host_decode(&m, &ev);
    assert_int_equal(ev.u.ack.ref_seq, 65535);
    assert_int_equal(ev.u.ack.ref_type, 2);
    assert_int_equal(ev.u.ack.code, 2);
    assert_int_equal(ev.u.ack.state, 0);

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_ACK;
    m.u.ack.ref_seq = 9;
    m.u.ack.ref_type = 4;
    host_decode(&m, &ev);
    assert_int_equal(ev.u.ack.ref_seq, 9);
    assert_int_equal(ev.u.ack.ref_type, 4);

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_PROMPT_SHOWN;
    m.u.prompt.prompt = MPOS_PROMPT_CONFIRM_AMOUNT;
    m.u.prompt.txn_type = 1;
    m.u.prompt.amount = 1234;
    m.u.prompt.currency = 156;
    host_decode(&m, &ev);
    assert_int_equal(ev.u.prompt.id, 5);
    assert_int_equal(ev.u.prompt.amount, 1234);
    assert_int_equal(ev.u.prompt.currency, 156);

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_RESULT;
    m.u.result.outcome = MPOS_LINK_OUTCOME_APPROVED;
    m.u.result.txn_type = 1;
    m.u.result.amount = 1234;
    m.u.result.currency = 156;
    m.u.result.txn_seq = 42;
    strcpy(m.u.result.response_code, "00");
    strcpy(m.u.result.auth_code, "A1B2C3");
    strcpy(m.u.result.rrn, "000000000123");
    strcpy(m.u.result.masked_pan, "622200******0001");
    host_decode(&m, &ev);
    assert_int_equal(ev.u.result.outcome, 1);
    assert_int_equal(ev.u.result.sequence, 42);
    assert_string_equal(ev.u.result.response_code, "00");
    assert_string_equal(ev.u.result.auth_code, "A1B2C3");
    assert_string_equal(ev.u.result.rrn, "000000000123");
    assert_string_equal(ev.u.result.masked_pan, "622200******0001");

    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_RESULT;
    m.u.result.outcome = MPOS_LINK_OUTCOME_ACTIVATED;
    host_decode(&m, &ev);
    assert_int_equal(ev.u.result.outcome, 6);
    assert_string_equal(ev.u.result.masked_pan, "");

    static const uint8_t data[] = {0x16, 0x03, 0x03, 0x00, 0x01, 0xFF};
    memset(&m, 0, sizeof(m));
    m.type = MPOS_LINK_EVT_TUNNEL_DATA;
    m.u.tunnel.data = data;
    m.u.tunnel.len = sizeof(data);
    host_decode(&m, &ev);
    assert_int_equal(ev.u.tunnel.len, sizeof(data));
    assert_memory_equal(ev.u.tunnel.data, data, sizeof(data));
}

/* A RESULT carrying a full PAN (written with the raw frame encoder, which the terminal's
 * message encoder would refuse) is refused by the host too; so are wrong lengths. */
static void test_host_refuses(void **state)
{
    (void)state;
    uint8_t p[128], fr[256];
    size_t n = 0, used = 0;
    hl_decoder d;
    struct hl_frame_view f;
    struct hl_event ev;
    size_t k = 0;
    p[k++] = 1;
    p[k++] = 1;
    memset(p + k, 0, 8);
    p[k + 7] = 100;
    k += 8;
    p[k++] = 0;
    p[k++] = 156;
    memset(p + k, 0, 4);
    k += 4;
    p[k++] = 0; /* rc */
    p[k++] = 0; /* auth */
    p[k++] = 0; /* rrn */
    p[k++] = 16;
    memcpy(p + k, "6222001234560001", 16);
    k += 16;
    assert_int_equal(mpos_link_frame_encode(0x85, 1, p, k, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(hl_decode_event(&f, &ev), MPOS_ERR_FORMAT);
    /* The masked form of the same bytes passes. */
    memcpy(p + k - 16, "622200******0001", 16);
    assert_int_equal(mpos_link_frame_encode(0x85, 1, p, k, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(hl_decode_event(&f, &ev), MPOS_OK);
    /* One byte too many. */
    assert_int_equal(mpos_link_frame_encode(0x85, 1, p, k + 1, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(hl_decode_event(&f, &ev), MPOS_ERR_FORMAT);
    /* ACK of the wrong length, unknown event. */
    assert_int_equal(mpos_link_frame_encode(0x82, 1, p, 4, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(hl_decode_event(&f, &ev), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_link_frame_encode(0x87, 1, p, 3, fr, sizeof(fr), &n), MPOS_OK);
    hl_decoder_init(&d);
    assert_int_equal(hl_decoder_feed(&d, fr, n, &used, &f), 1);
    assert_int_equal(hl_decode_event(&f, &ev), MPOS_ERR_UNSUPPORTED);
}

/* A stream of frames in noise, a garbled frame and a frame cut short: both decoders, fed in
 * the same chunks, deliver the same frames. */
static void test_decoders_agree(void **state)
{
    (void)state;
    static uint8_t stream[20000];
    size_t len = 0, n = 0;
    uint8_t pay[600];
    for (size_t i = 0; i < sizeof(pay); i++) {
        pay[i] = (uint8_t)(i * 7);
    }
    pay[5] = 0x4D; /* a magic byte inside a payload */
    for (int k = 0; k < 12; k++) {
        /* noise with false magics */
        stream[len++] = 0x4D;
        stream[len++] = (uint8_t)(k == 3 ? 0x50 : 0x11);
        stream[len++] = 0x00;
        assert_int_equal(hl_frame(HL_EVT_TUNNEL_DATA, (uint16_t)k, pay, (size_t)(k * 50 + 1),
                                  stream + len, sizeof(stream) - len, &n),
                         MPOS_OK);
        if (k == 5) {
            stream[len + 20] ^= 0xFF; /* garbled: CRC-32 fails */
        }
        if (k == 8) {
            n -= 3; /* cut short: the next frame must still come out */
        }
        len += n;
    }
    for (size_t chunk = 1; chunk < 3000; chunk = chunk * 3 + 1) {
        hl_decoder hd;
        mpos_link_decoder td;
        uint16_t hseq[16], tseq[16];
        size_t hn = 0, tn = 0;
        hl_decoder_init(&hd);
        mpos_link_decoder_init(&td);
        for (size_t off = 0; off < len; off += chunk) {
            size_t c = len - off < chunk ? len - off : chunk;
            size_t o = 0, used = 0;
            struct hl_frame_view f;
            int rc;
            do {
                rc = hl_decoder_feed(&hd, stream + off + o, c - o, &used, &f);
                o += used;
                if (rc == 1) {
                    assert_true(hn < 16);
                    hseq[hn++] = f.seq;
                }
            } while (rc == 1 || o < c);
            o = 0;
            do {
                mpos_link_frame tf;
                rc = mpos_link_decoder_feed(&td, stream + off + o, c - o, &used, &tf);
                o += used;
                if (rc == 1) {
                    assert_true(tn < 16);
                    tseq[tn++] = tf.seq;
                }
            } while (rc == 1 || o < c);
        }
        assert_int_equal(hn, tn);
        assert_memory_equal(hseq, tseq, hn * sizeof(uint16_t));
        assert_int_equal(hn, 10); /* 12 frames, one garbled, one cut short */
    }
}

static void test_amounts(void **state)
{
    (void)state;
    uint64_t v = 99;
    char out[32];
    assert_int_equal(mposhost_parse_amount("12.34", 2, &v), MPOS_OK);
    assert_int_equal(v, 1234);
    assert_int_equal(mposhost_parse_amount("12", 2, &v), MPOS_OK);
    assert_int_equal(v, 1200);
    assert_int_equal(mposhost_parse_amount("0.01", 2, &v), MPOS_OK);
    assert_int_equal(v, 1);
    assert_int_equal(mposhost_parse_amount("9999999999.99", 2, &v), MPOS_OK);
    assert_int_equal(v, 999999999999ull);
    assert_int_equal(mposhost_parse_amount("1500", 0, &v), MPOS_OK);
    assert_int_equal(v, 1500);
    assert_int_equal(mposhost_parse_amount("1.500", 3, &v), MPOS_OK);
    assert_int_equal(v, 1500);
    const char *bad[] = {"",           ".5",   "12.",   "12.3",
                         "12.345",     "1,00", "-1",    "+1",
                         " 1",         "1 ",   "1e2",   "0x10",
                         "1.2.3",      "abc",  "12.3a", "99999999999.99" /* 13 digits */,
                         "10000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 7;
        assert_int_equal(mposhost_parse_amount(bad[i], 2, &v), MPOS_ERR_FORMAT);
        assert_int_equal(v, 0);
    }
    assert_int_equal(mposhost_parse_amount("1.5", 0, &v), MPOS_ERR_FORMAT);
    assert_int_equal(mposhost_currency_exponent(156), 2);
    assert_int_equal(mposhost_currency_exponent(392), 0);
    mposhost_format_amount(1234, 2, out, sizeof(out));
    assert_string_equal(out, "12.34");
    mposhost_format_amount(5, 2, out, sizeof(out));
    assert_string_equal(out, "0.05");
    mposhost_format_amount(1500, 0, out, sizeof(out));
    assert_string_equal(out, "1500");
}

static void test_state_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/mposhost-state-XXXXXX";
    char path[128];
    struct host_state st, got;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/state", dir);
    assert_int_equal(host_state_load(path, &got), MPOSHOST_ERR_NOT_LOGGED);
    memset(&st, 0, sizeof(st));
    for (int i = 0; i < 32; i++) {
        st.token[i] = (uint8_t)(i + 1);
    }
    st.s.expires = 1900000000;
    strcpy(st.s.merchant, "M0001");
    strcpy(st.s.role, "cashier");
    strcpy(st.s.username, "alice");
    assert_int_equal(host_state_save(path, &st), MPOS_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(host_state_load(path, &got), MPOS_OK);
    assert_memory_equal(got.token, st.token, 32);
    assert_int_equal(got.s.expires, 1900000000);
    assert_string_equal(got.s.merchant, "M0001");
    assert_string_equal(got.s.role, "cashier");
    assert_string_equal(got.s.username, "alice");
    /* Readable by others: refused (the token is a credential). */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(host_state_load(path, &got), MPOSHOST_ERR_STATE);
    /* A symlink is not followed. */
    char link[160];
    snprintf(link, sizeof(link), "%s/link", dir);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(host_state_load(link, &got), MPOSHOST_ERR_STATE);
    /* Receipts for a later void: the last line for an RRN wins; unknown RRN; 0600 only. */
    uint64_t amt = 0;
    uint16_t cur = 0;
    char rpath[160];
    assert_int_equal(host_receipt_find(path, "000000000001", &amt, &cur), MPOSHOST_ERR_NOT_LOGGED);
    assert_int_equal(host_receipt_add(path, "000000000001", 1234, 156), MPOS_OK);
    assert_int_equal(host_receipt_add(path, "000000000002", 99, 392), MPOS_OK);
    assert_int_equal(host_receipt_find(path, "000000000001", &amt, &cur), MPOS_OK);
    assert_int_equal(amt, 1234);
    assert_int_equal(cur, 156);
    assert_int_equal(host_receipt_find(path, "000000000002", &amt, &cur), MPOS_OK);
    assert_int_equal(amt, 99);
    assert_int_equal(cur, 392);
    assert_int_equal(host_receipt_find(path, "000000000003", &amt, &cur), MPOSHOST_ERR_NOT_LOGGED);
    snprintf(rpath, sizeof(rpath), "%s.receipts", path);
    assert_int_equal(stat(rpath, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(chmod(rpath, 0640), 0);
    assert_int_equal(host_receipt_find(path, "000000000001", &amt, &cur), MPOSHOST_ERR_STATE);
    unlink(rpath);
    assert_int_equal(host_state_remove(path), MPOS_OK);
    assert_int_equal(host_state_remove(path), MPOS_OK);
    unlink(link);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),
        cmocka_unit_test(test_commands_to_terminal),
        cmocka_unit_test(test_events_from_terminal),
        cmocka_unit_test(test_host_refuses),
        cmocka_unit_test(test_decoders_agree),
        cmocka_unit_test(test_amounts),
        cmocka_unit_test(test_state_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
