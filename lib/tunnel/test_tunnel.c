/* Unit tests: lib/tunnel, the tunnel application messages (docs/system-design.md 2.1).
 * Round trips of every message, byte-exact encodings checked against hand-built TLV, every
 * malformed case (header, lengths, missing / extra / duplicate / out-of-order tags, ranges),
 * and the chunked stream reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/tlv.h"
#include "mpos/tunnel.h"
#include "mpos/util.h"
#include "testutil.h"

static uint8_t buf[MPOS_TUNNEL_MAX_MSG + 64];

static void fill_activation(mpos_tunnel_msg *m)
{
    strcpy(m->merchant_id, "MERCHANT0000001");
    strcpy(m->terminal_id, "TERM0001");
    m->params_len = 300;
    for (size_t i = 0; i < m->params_len; i++) {
        m->params[i] = (uint8_t)(i * 7);
    }
}

static void roundtrip(const mpos_tunnel_msg *m)
{
    mpos_tunnel_msg back;
    size_t len = 0;
    assert_int_equal(mpos_tunnel_encode(m, buf, sizeof(buf), &len), MPOS_OK);
    assert_int_equal(buf[0], m->type);
    assert_int_equal(mpos_load_be16(buf + 1), len - 3);
    assert_int_equal(mpos_tunnel_decode(buf, len, &back), MPOS_OK);
    assert_int_equal(back.type, m->type);
    assert_string_equal(back.serial, m->serial);
    assert_string_equal(back.firmware, m->firmware);
    assert_string_equal(back.code, m->code);
    assert_int_equal(back.status, m->status);
    assert_int_equal(back.activated, m->activated);
    assert_string_equal(back.merchant_id, m->merchant_id);
    assert_string_equal(back.terminal_id, m->terminal_id);
    assert_int_equal(back.params_len, m->params_len);
    assert_memory_equal(back.params, m->params, m->params_len);
    assert_int_equal(back.body_len, m->body_len);
    if (m->body_len > 0) {
        assert_ptr_equal(back.body, buf + 3);
        assert_memory_equal(back.body, m->body, m->body_len);
    }
    /* Too small an output: MPOS_ERR_LENGTH at every size below. */
    for (size_t cap = 0; cap < len; cap += (len > 64 ? 37 : 1)) {
        size_t l2 = 99;
        assert_int_equal(mpos_tunnel_encode(m, buf, cap, &l2), MPOS_ERR_LENGTH);
        assert_int_equal(l2, 0);
    }
}

static void test_roundtrip_all(void **state)
{
    (void)state;
    mpos_tunnel_msg m;
    uint8_t sealed[MPOS_TUNNEL_MAX_BODY];
    for (size_t i = 0; i < sizeof(sealed); i++) {
        sealed[i] = (uint8_t)(i ^ 0x5A);
    }

    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO);
    strcpy(m.serial, "SN-0001");
    strcpy(m.firmware, "1.2.3-sim");
    roundtrip(&m);

    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ACTIVATE);
    strcpy(m.serial, "SN-0001");
    strcpy(m.firmware, "10.0.99999");
    strcpy(m.code, "ABCD-1234-efgh");
    roundtrip(&m);

    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO_OK);
    m.status = 0;
    m.activated = 0;
    roundtrip(&m);
    m.status = MPOS_TUNNEL_ST_NOT_ACTIVATED;
    roundtrip(&m);
    m.status = 0;
    m.activated = 1;
    fill_activation(&m);
    roundtrip(&m);
    m.params_len = MPOS_TUNNEL_PARAMS_MAX;
    roundtrip(&m);

    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ACTIVATE_OK);
    fill_activation(&m);
    roundtrip(&m);
    for (uint8_t st = 1; st <= MPOS_TUNNEL_ST_MAX; st++) {
        mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ACTIVATE_OK);
        m.status = st;
        roundtrip(&m);
        mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ERROR);
        m.status = st;
        roundtrip(&m);
    }

    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_SEALED);
    m.body = sealed;
    m.body_len = 1;
    roundtrip(&m);
    m.body_len = MPOS_TUNNEL_MAX_BODY;
    roundtrip(&m);
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_SEALED_RESP);
    m.body = sealed;
    m.body_len = 200;
    roundtrip(&m);
}

/* Fields outside the type's set are not encoded (and come back zero). */
static void test_encode_ignores_other_fields(void **state)
{
    (void)state;
    mpos_tunnel_msg m, back;
    size_t len = 0;
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO_OK);
    m.activated = 0;
    fill_activation(&m); /* not sent: activated = 0 */
    strcpy(m.code, "IGNORED1");
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);
    uint8_t want[32];
    size_t wl = tu_hex("810008DF040100DF080100", want, sizeof(want));
    assert_int_equal(len, wl);
    assert_memory_equal(buf, want, wl);
    assert_int_equal(mpos_tunnel_decode(buf, len, &back), MPOS_OK);
    assert_int_equal(back.params_len, 0);
    assert_string_equal(back.merchant_id, "");
    assert_string_equal(back.code, "");
}

static void test_encode_exact_hello(void **state)
{
    (void)state;
    mpos_tunnel_msg m;
    size_t len = 0;
    uint8_t want[64];
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO);
    strcpy(m.serial, "S1");
    strcpy(m.firmware, "1.0.0");
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);
    size_t wl = tu_hex("01000DDF01025331DF0205312E302E30", want, sizeof(want));
    assert_int_equal(len, wl);
    assert_memory_equal(buf, want, wl);
    /* ERROR 6 */
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ERROR);
    m.status = MPOS_TUNNEL_ST_REFUSED;
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);
    wl = tu_hex("8F0004DF040106", want, sizeof(want));
    assert_int_equal(len, wl);
    assert_memory_equal(buf, want, wl);
}

static void expect_encode_arg(const mpos_tunnel_msg *m)
{
    size_t len = 5;
    assert_int_equal(mpos_tunnel_encode(m, buf, sizeof(buf), &len), MPOS_ERR_ARG);
    assert_int_equal(len, 0);
}

static void test_encode_refuses_bad_fields(void **state)
{
    (void)state;
    mpos_tunnel_msg m;
    size_t len;
    static const char *bad_fw[] = {"",     "1",          "1.2",    "1.2.3.", "1.2.3-", "a.b.c",
                                   "1..3", "123456.1.1", "1.2.3x", "-1.2.3", "1.2.-3", "1.2.3 -x"};
    static const char *good_fw[] = {"0.0.0", "1.2.3-rc.1", "99999.0.1-x y", "1.2.3--"};
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO);
    strcpy(m.serial, "SN1");
    for (size_t i = 0; i < sizeof(bad_fw) / sizeof(bad_fw[0]); i++) {
        strcpy(m.firmware, bad_fw[i]);
        expect_encode_arg(&m);
    }
    for (size_t i = 0; i < sizeof(good_fw) / sizeof(good_fw[0]); i++) {
        strcpy(m.firmware, good_fw[i]);
        assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);
    }
    /* Serial: empty, control character, unterminated. */
    strcpy(m.firmware, "1.0.0");
    m.serial[0] = '\0';
    expect_encode_arg(&m);
    strcpy(m.serial, "S\x01");
    expect_encode_arg(&m);
    memset(m.serial, 'A', sizeof(m.serial));
    expect_encode_arg(&m);
    memset(m.serial, 'A', 32);
    m.serial[32] = '\0';
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);

    /* Activation code: length 3 and 33 (unterminated), bad characters. */
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ACTIVATE);
    strcpy(m.serial, "SN1");
    strcpy(m.firmware, "1.0.0");
    strcpy(m.code, "ABC");
    expect_encode_arg(&m);
    strcpy(m.code, "ABC_D");
    expect_encode_arg(&m);
    strcpy(m.code, "AB D");
    expect_encode_arg(&m);
    memset(m.code, 'A', sizeof(m.code));
    expect_encode_arg(&m);
    strcpy(m.code, "a-Z9");
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), &len), MPOS_OK);

    /* Status and flags out of range; ERROR with status 0. */
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ERROR);
    expect_encode_arg(&m);
    m.status = 9;
    expect_encode_arg(&m);
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO_OK);
    m.activated = 2;
    expect_encode_arg(&m);
    m.activated = 1;
    fill_activation(&m);
    m.status = 9;
    expect_encode_arg(&m);
    m.status = 0;
    strcpy(m.merchant_id, "SHORT");
    expect_encode_arg(&m);
    fill_activation(&m);
    strcpy(m.terminal_id, "T1");
    expect_encode_arg(&m);
    fill_activation(&m);
    m.params_len = 0;
    expect_encode_arg(&m);
    m.params_len = MPOS_TUNNEL_PARAMS_MAX + 1;
    expect_encode_arg(&m);

    /* Raw bodies: empty, too long, NULL. */
    uint8_t b[4] = {1, 2, 3, 4};
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_SEALED);
    m.body = b;
    m.body_len = 0;
    expect_encode_arg(&m);
    m.body_len = MPOS_TUNNEL_MAX_BODY + 1;
    expect_encode_arg(&m);
    m.body = NULL;
    m.body_len = 4;
    expect_encode_arg(&m);

    /* Unknown type, NULL pointers. */
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ERROR);
    m.type = 0x04;
    expect_encode_arg(&m);
    m.type = MPOS_TUNNEL_ERROR;
    m.status = 1;
    assert_int_equal(mpos_tunnel_encode(NULL, buf, sizeof(buf), &len), MPOS_ERR_ARG);
    assert_int_equal(mpos_tunnel_encode(&m, NULL, sizeof(buf), &len), MPOS_ERR_ARG);
    assert_int_equal(mpos_tunnel_encode(&m, buf, sizeof(buf), NULL), MPOS_ERR_ARG);
}

/* Builds type || len || body from a hex body. */
static size_t frame(uint8_t type, const char *body_hex, uint8_t *out, size_t cap)
{
    size_t n = tu_hex(body_hex, out + 3, cap - 3);
    out[0] = type;
    mpos_store_be16(out + 1, (uint16_t)n);
    return n + 3;
}

static void expect_decode_format(uint8_t type, const char *body_hex)
{
    static uint8_t in[MPOS_TUNNEL_MAX_MSG];
    mpos_tunnel_msg m;
    size_t n = frame(type, body_hex, in, sizeof(in));
    memset(&m, 0xAA, sizeof(m));
    assert_int_equal(mpos_tunnel_decode(in, n, &m), MPOS_ERR_FORMAT);
    /* Zeroed on error. */
    for (size_t i = 0; i < sizeof(m); i++) {
        assert_int_equal(((const uint8_t *)&m)[i], 0);
    }
}

static void expect_decode_ok(uint8_t type, const char *body_hex)
{
    static uint8_t in[MPOS_TUNNEL_MAX_MSG];
    mpos_tunnel_msg m;
    size_t n = frame(type, body_hex, in, sizeof(in));
    assert_int_equal(mpos_tunnel_decode(in, n, &m), MPOS_OK);
}

#define SER "DF01025331"                           /* DF01 "S1" */
#define FW  "DF0205312E302E30"                     /* DF02 "1.0.0" */
#define CD  "DF030441424344"                       /* DF03 "ABCD" */
#define ST0 "DF040100"                             /* DF04 0 */
#define MID "DF050F4D45524348414E5430303030303031" /* "MERCHANT0000001" */
#define TID "DF06085445524D30303031"               /* "TERM0001" */
#define PKG "DF0703010203"
#define AC1 "DF080101"
#define AC0 "DF080100"

static void test_decode_field_sets(void **state)
{
    (void)state;
    /* The valid references. */
    expect_decode_ok(0x01, SER FW);
    expect_decode_ok(0x02, SER FW CD);
    expect_decode_ok(0x81, ST0 AC0);
    expect_decode_ok(0x81, ST0 MID TID PKG AC1);
    expect_decode_ok(0x82, ST0 MID TID PKG);
    expect_decode_ok(0x82, "DF040101");
    expect_decode_ok(0x8F, "DF040108");

    /* Missing tags. */
    expect_decode_format(0x01, SER);
    expect_decode_format(0x01, FW);
    expect_decode_format(0x01, "");
    expect_decode_format(0x02, SER FW);
    expect_decode_format(0x81, ST0);
    expect_decode_format(0x81, AC0);
    expect_decode_format(0x81, ST0 MID TID AC1); /* activated without the package */
    expect_decode_format(0x81, ST0 TID PKG AC1); /* without the merchant */
    expect_decode_format(0x82, ST0 MID TID);     /* ok without the package */
    expect_decode_format(0x82, "");
    expect_decode_format(0x8F, "");
    /* Extra tags. */
    expect_decode_format(0x01, SER FW CD);
    expect_decode_format(0x81, ST0 MID TID PKG AC0);    /* not activated with the activation set */
    expect_decode_format(0x82, "DF040101" MID TID PKG); /* failed with the activation set */
    expect_decode_format(0x8F, "DF040101" AC0);
    expect_decode_format(0x01, SER FW "DF0901"); /* unknown tag DF09 */
    expect_decode_format(0x01, "5A0101" SER FW); /* unknown tag 5A */
    expect_decode_format(0x01, "DF0000" SER FW); /* DF00 */
    /* Duplicates and order. */
    expect_decode_format(0x01, SER SER FW);
    expect_decode_format(0x01, SER FW FW);
    expect_decode_format(0x01, FW SER);
    expect_decode_format(0x81, AC0 ST0);
    /* Constructed tag with a DF01-like number (FF01 is private constructed). */
    expect_decode_format(0x01, "FF0104DF010153" FW);
    /* Ranges. */
    expect_decode_format(0x8F, "DF040100");   /* ERROR "ok" */
    expect_decode_format(0x8F, "DF040109");   /* status 9 */
    expect_decode_format(0x8F, "DF04020001"); /* status 2 bytes */
    expect_decode_format(0x8F, "DF0400");     /* status empty */
    expect_decode_format(0x81, ST0 "DF080102");
    expect_decode_format(0x81, ST0 "DF08020001");
    expect_decode_format(0x01, "DF0100" FW);             /* empty serial */
    expect_decode_format(0x01, "DF01025301" FW);         /* control char */
    expect_decode_format(0x01, "DF010253FF" FW);         /* non-ASCII */
    expect_decode_format(0x01, SER "DF0203312E30");      /* "1.0" */
    expect_decode_format(0x02, SER FW "DF0303414243");   /* code of 3 */
    expect_decode_format(0x02, SER FW "DF030441422043"); /* space in code */
    expect_decode_format(0x82, ST0 "DF050E4D45524348414E54303030303030" TID PKG); /* MID 14 */
    expect_decode_format(0x82, ST0 MID "DF06075445524D303030" PKG);               /* TID 7 */
    expect_decode_format(0x82, ST0 MID TID "DF0700");                             /* empty pkg */
    /* TLV malformation under STRICT: non-minimal length, trailing byte, truncated value. */
    expect_decode_format(0x01, "DF0181025331" FW);
    expect_decode_format(0x01, SER FW "00");
    expect_decode_format(0x01, SER "DF020531");
}

static void test_decode_serial_max(void **state)
{
    (void)state;
    char hex[200] = "DF0120";
    for (int i = 0; i < 32; i++) {
        strcat(hex, "41");
    }
    strcat(hex, FW);
    expect_decode_ok(0x01, hex);
    char hex2[200] = "DF0121";
    for (int i = 0; i < 33; i++) {
        strcat(hex2, "41");
    }
    strcat(hex2, FW);
    expect_decode_format(0x01, hex2);
}

static void test_decode_params_limits(void **state)
{
    (void)state;
    static uint8_t in[MPOS_TUNNEL_MAX_MSG];
    mpos_tunnel_msg m;
    uint8_t head[64];
    for (size_t pl = MPOS_TUNNEL_PARAMS_MAX; pl <= MPOS_TUNNEL_PARAMS_MAX + 1; pl++) {
        size_t n = 3;
        size_t hl = tu_hex(ST0 MID TID, head, sizeof(head));
        memcpy(in + n, head, hl);
        n += hl;
        in[n++] = 0xDF;
        in[n++] = 0x07;
        in[n++] = 0x82;
        mpos_store_be16(in + n, (uint16_t)pl);
        n += 2;
        memset(in + n, 0x33, pl);
        n += pl;
        in[0] = 0x82;
        mpos_store_be16(in + 1, (uint16_t)(n - 3));
        int r = mpos_tunnel_decode(in, n, &m);
        assert_int_equal(r, pl == MPOS_TUNNEL_PARAMS_MAX ? MPOS_OK : MPOS_ERR_FORMAT);
        if (r == MPOS_OK) {
            assert_int_equal(m.params_len, pl);
            assert_int_equal(m.params[pl - 1], 0x33);
        }
    }
}

static void test_decode_header(void **state)
{
    (void)state;
    static uint8_t in[MPOS_TUNNEL_MAX_MSG + 8];
    mpos_tunnel_msg m;
    size_t n = frame(0x01, SER FW, in, sizeof(in));
    assert_int_equal(mpos_tunnel_decode(in, n, &m), MPOS_OK);
    assert_string_equal(m.serial, "S1");
    assert_string_equal(m.firmware, "1.0.0");
    /* Header length that differs from the bytes given, both ways. */
    assert_int_equal(mpos_tunnel_decode(in, n - 1, &m), MPOS_ERR_FORMAT);
    in[n] = 0;
    assert_int_equal(mpos_tunnel_decode(in, n + 1, &m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_tunnel_decode(in, 0, &m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_tunnel_decode(in, 2, &m), MPOS_ERR_FORMAT);
    /* Unknown types. */
    static const uint8_t bad_types[] = {0x00, 0x04, 0x80, 0x84, 0x8E, 0x90, 0xFF, 0x0F};
    for (size_t i = 0; i < sizeof(bad_types); i++) {
        in[0] = bad_types[i];
        assert_int_equal(mpos_tunnel_decode(in, n, &m), MPOS_ERR_FORMAT);
    }
    /* SEALED: empty body refused; 8192 ok; 8193 refused. */
    memset(in, 0x42, sizeof(in));
    in[0] = 0x03;
    mpos_store_be16(in + 1, 0);
    assert_int_equal(mpos_tunnel_decode(in, 3, &m), MPOS_ERR_FORMAT);
    mpos_store_be16(in + 1, MPOS_TUNNEL_MAX_BODY);
    assert_int_equal(mpos_tunnel_decode(in, MPOS_TUNNEL_MAX_MSG, &m), MPOS_OK);
    assert_int_equal(m.body_len, MPOS_TUNNEL_MAX_BODY);
    in[0] = 0x83;
    mpos_store_be16(in + 1, MPOS_TUNNEL_MAX_BODY + 1);
    assert_int_equal(mpos_tunnel_decode(in, MPOS_TUNNEL_MAX_MSG + 1, &m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_tunnel_decode(NULL, 3, &m), MPOS_ERR_ARG);
    assert_int_equal(mpos_tunnel_decode(in, 3, NULL), MPOS_ERR_ARG);
}

/* A stream of several messages fed in every chunk size from 1 up. */
static void test_reader_chunks(void **state)
{
    (void)state;
    static uint8_t stream[3 * MPOS_TUNNEL_MAX_MSG];
    static uint8_t sealed[5000];
    mpos_tunnel_msg m[4];
    size_t total = 0, len = 0;
    for (size_t i = 0; i < sizeof(sealed); i++) {
        sealed[i] = (uint8_t)(i * 13);
    }
    mpos_tunnel_msg_init(&m[0], MPOS_TUNNEL_HELLO);
    strcpy(m[0].serial, "SN-77");
    strcpy(m[0].firmware, "0.1.0");
    mpos_tunnel_msg_init(&m[1], MPOS_TUNNEL_SEALED);
    m[1].body = sealed;
    m[1].body_len = sizeof(sealed);
    mpos_tunnel_msg_init(&m[2], MPOS_TUNNEL_ERROR);
    m[2].status = MPOS_TUNNEL_ST_INTERNAL;
    mpos_tunnel_msg_init(&m[3], MPOS_TUNNEL_ACTIVATE_OK);
    fill_activation(&m[3]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mpos_tunnel_encode(&m[i], stream + total, sizeof(stream) - total, &len),
                         MPOS_OK);
        total += len;
    }
    static const size_t chunks[] = {1, 2, 3, 4, 7, 64, 1000, 4099, 100000};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        static mpos_tunnel_reader rd;
        mpos_tunnel_msg got_msg;
        int got = 0, count = 0;
        mpos_tunnel_reader_init(&rd);
        for (size_t off = 0; off < total;) {
            size_t n = total - off < chunks[c] ? total - off : chunks[c];
            const uint8_t *p = stream + off;
            off += n;
            while (n > 0) {
                size_t used = 0;
                assert_int_equal(mpos_tunnel_reader_feed(&rd, p, n, &used), MPOS_OK);
                assert_true(used <= n);
                p += used;
                n -= used;
                assert_int_equal(mpos_tunnel_reader_take(&rd, &got_msg, &got), MPOS_OK);
                if (got) {
                    assert_true(count < 4);
                    assert_int_equal(got_msg.type, m[count].type);
                    if (count == 1) {
                        assert_int_equal(got_msg.body_len, sizeof(sealed));
                        assert_memory_equal(got_msg.body, sealed, sizeof(sealed));
                    } else if (count == 0) {
                        assert_string_equal(got_msg.serial, "SN-77");
                    } else if (count == 2) {
                        assert_int_equal(got_msg.status, MPOS_TUNNEL_ST_INTERNAL);
                    } else {
                        assert_string_equal(got_msg.terminal_id, "TERM0001");
                        assert_int_equal(got_msg.params_len, 300);
                    }
                    count++;
                } else {
                    /* No progress without a message means the chunk is used up. */
                    assert_true(used > 0 || n == 0);
                }
            }
        }
        assert_int_equal(count, 4);
        assert_false(mpos_tunnel_reader_pending(&rd));
    }
}

static void test_reader_errors(void **state)
{
    (void)state;
    static mpos_tunnel_reader rd;
    mpos_tunnel_msg m;
    int got = 1;
    size_t used = 9;
    uint8_t in[64];

    /* A whole message waits: feed takes nothing more until take. */
    mpos_tunnel_reader_init(&rd);
    size_t n = frame(0x8F, "DF040107", in, sizeof(in));
    memcpy(in + n, in, n);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, in, 2 * n, &used), MPOS_OK);
    assert_int_equal(used, n);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, in + n, n, &used), MPOS_OK);
    assert_int_equal(used, 0);
    assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_OK);
    assert_int_equal(got, 1);
    assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_OK);
    assert_int_equal(got, 0);

    /* A malformed body is dropped and the stream continues. */
    n = frame(0x8F, "DF040100", in, sizeof(in));
    size_t n2 = frame(0x8F, "DF040103", in + n, sizeof(in) - n);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, in, n + n2, &used), MPOS_OK);
    assert_int_equal(used, n);
    assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_ERR_FORMAT);
    assert_int_equal(got, 0);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, in + n, n2, &used), MPOS_OK);
    assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_OK);
    assert_int_equal(got, 1);
    assert_int_equal(m.status, 3);

    /* Truncated: pending. */
    assert_int_equal(mpos_tunnel_reader_feed(&rd, in, 4, &used), MPOS_OK);
    assert_true(mpos_tunnel_reader_pending(&rd));
    assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_OK);
    assert_int_equal(got, 0);

    /* Bad header: unknown type or too long, split across feeds; sticky. */
    static const uint8_t bad1[] = {0x05, 0x00, 0x01, 0x00};
    static const uint8_t bad2[] = {0x03, 0x20, 0x01, 0x00};
    const uint8_t *bads[] = {bad1, bad2};
    for (int i = 0; i < 2; i++) {
        mpos_tunnel_reader_init(&rd);
        assert_int_equal(mpos_tunnel_reader_feed(&rd, bads[i], 2, &used), MPOS_OK);
        assert_int_equal(used, 2);
        assert_int_equal(mpos_tunnel_reader_feed(&rd, bads[i] + 2, 2, &used), MPOS_ERR_FORMAT);
        assert_int_equal(used, 0);
        n = frame(0x8F, "DF040107", in, sizeof(in));
        assert_int_equal(mpos_tunnel_reader_feed(&rd, in, n, &used), MPOS_ERR_FORMAT);
        assert_int_equal(mpos_tunnel_reader_take(&rd, &m, &got), MPOS_ERR_FORMAT);
        assert_false(mpos_tunnel_reader_pending(&rd));
    }
    /* Exactly 8192 is fine for the header. */
    static const uint8_t ok_hdr[] = {0x03, 0x20, 0x00};
    mpos_tunnel_reader_init(&rd);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, ok_hdr, 3, &used), MPOS_OK);
    assert_int_equal(mpos_tunnel_reader_feed(NULL, in, 1, &used), MPOS_ERR_ARG);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, NULL, 1, &used), MPOS_ERR_ARG);
    assert_int_equal(mpos_tunnel_reader_feed(&rd, NULL, 0, &used), MPOS_OK);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(mpos_tunnel_type_name(0x81), "HELLO_OK");
    assert_string_equal(mpos_tunnel_type_name(0x8F), "ERROR");
    assert_string_equal(mpos_tunnel_type_name(0x44), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_encode_ignores_other_fields),
        cmocka_unit_test(test_encode_exact_hello),
        cmocka_unit_test(test_encode_refuses_bad_fields),
        cmocka_unit_test(test_decode_field_sets),
        cmocka_unit_test(test_decode_serial_max),
        cmocka_unit_test(test_decode_params_limits),
        cmocka_unit_test(test_decode_header),
        cmocka_unit_test(test_reader_chunks),
        cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
