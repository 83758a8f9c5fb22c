/* mpos-backend internals (label ops): host frame parsing strictness, firmware versions, the
 * parameter package's minimum firmware, impossible travel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server.h"

/* A TUNNEL frame body: type, data field, then the given extra bytes. */
static size_t tunnel_msg(uint8_t *buf, const uint8_t *extra, size_t extra_len)
{
    size_t n = 0;
    buf[n++] = MPOS_HOSTMSG_TUNNEL;
    buf[n++] = MPOS_HM_DATA;
    buf[n++] = 0;
    buf[n++] = 3;
    memcpy(buf + n, "abc", 3);
    n += 3;
    if (extra_len > 0) {
        memcpy(buf + n, extra, extra_len);
    }
    return n + extra_len;
}

static void test_parse(void **state)
{
    uint8_t buf[256];
    mpos_hostmsg m;
    (void)state;
    size_t n = tunnel_msg(buf, NULL, 0);
    assert_int_equal(bs_msg_parse(&m, buf, n), 0);
    assert_int_equal(m.f[MPOS_HM_DATA].len, 3);
    /* A duplicate tag. */
    const uint8_t dup[] = {MPOS_HM_DATA, 0, 1, 'x'};
    n = tunnel_msg(buf, dup, sizeof(dup));
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    /* A tag of another message (password in a TUNNEL). */
    const uint8_t pw[] = {MPOS_HM_PASSWORD, 0, 1, 'x'};
    n = tunnel_msg(buf, pw, sizeof(pw));
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    /* An unknown tag. */
    const uint8_t unk[] = {0x30, 0, 1, 'x'};
    n = tunnel_msg(buf, unk, sizeof(unk));
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    /* A field after the mac. */
    uint8_t mac[3 + 32 + 4] = {MPOS_HM_MAC, 0, 32};
    mac[35] = MPOS_HM_COUNTER;
    n = tunnel_msg(buf, mac, sizeof(mac));
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    /* mac last is fine (the envelope check decides the rest). */
    n = tunnel_msg(buf, mac, 35);
    assert_int_equal(bs_msg_parse(&m, buf, n), 0);
    assert_int_equal(m.mac_covered, 7);
    /* A truncated field, a wrong length for a fixed field, an unknown type. */
    n = tunnel_msg(buf, (const uint8_t[]){MPOS_HM_COUNTER, 0, 8, 1}, 4);
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    n = tunnel_msg(buf, (const uint8_t[]){MPOS_HM_COUNTER, 0, 1, 1}, 4);
    assert_int_not_equal(bs_msg_parse(&m, buf, n), 0);
    buf[0] = 0x7E;
    assert_int_not_equal(bs_msg_parse(&m, buf, 1), 0);
}

static void test_builder(void **state)
{
    uint8_t buf[64];
    mpos_hostmsg_writer o;
    size_t n = 0;
    (void)state;
    assert_int_equal(mpos_hostmsg_writer_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_ERROR), 0);
    mpos_hostmsg_put_u16(&o, MPOS_HM_ERROR, 6);
    mpos_hostmsg_put_text(&o, MPOS_HM_MESSAGE, "envelope");
    assert_int_equal(mpos_hostmsg_finish(&o, &n), 0);
    assert_int_equal(n, 4 + 1 + 5 + 11);
    assert_memory_equal(buf, ((const uint8_t[]){0, 0, 0, 17, 0x8F, 8, 0, 2, 0, 6}), 10);
    assert_int_equal(mpos_hostmsg_writer_init(&o, buf, 16, MPOS_HOSTMSG_ERROR), 0);
    mpos_hostmsg_put(&o, MPOS_HM_MESSAGE, "0123456789abcdef", 16);
    assert_int_not_equal(mpos_hostmsg_finish(&o, &n), 0);
}

/* A TUNNEL with the envelope, MAC'd under key (accuracy out of the range only this test
 * writes: field by field, which the writer's envelope put would refuse). */
static size_t envelope_msg(uint8_t *buf, size_t cap, const uint8_t *key, uint64_t counter,
                           uint8_t root, uint32_t accuracy)
{
    mpos_hostmsg_writer w;
    size_t n = 0;
    uint8_t id[32];
    memset(id, 0xD1, sizeof(id));
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, cap, MPOS_HOSTMSG_TUNNEL), 0);
    mpos_hostmsg_put(&w, MPOS_HM_DATA, "abc", 3);
    mpos_hostmsg_put_i32(&w, MPOS_HM_LAT, -339000000);
    mpos_hostmsg_put_i32(&w, MPOS_HM_LON, 1512000000);
    mpos_hostmsg_put_u32(&w, MPOS_HM_ACCURACY, accuracy);
    mpos_hostmsg_put_u64(&w, MPOS_HM_LOC_TIME, 1760000000);
    mpos_hostmsg_put(&w, MPOS_HM_DEVICE_ID, id, sizeof(id));
    mpos_hostmsg_put_u8(&w, MPOS_HM_DEBUGGER, 0);
    mpos_hostmsg_put_u8(&w, MPOS_HM_ROOT, root);
    mpos_hostmsg_put(&w, MPOS_HM_BINARY_HASH, id, sizeof(id));
    mpos_hostmsg_put_u64(&w, MPOS_HM_COUNTER, counter);
    assert_int_equal(mpos_hostmsg_put_mac(&w, key, 32), 0);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), 0);
    return n;
}

/* bs_envelope_check over lib/hostmsg: each refusal and its reason, the counter. */
static void test_envelope(void **state)
{
    static uint8_t buf[1024];
    static struct bs_config cfg;
    uint8_t key[32], other[32];
    mpos_hostmsg m;
    struct bs_envelope env;
    uint64_t last = 4;
    const char *why = NULL;
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    memset(key, 0x5A, sizeof(key));
    memset(other, 0x5B, sizeof(other));
    size_t n = envelope_msg(buf, sizeof(buf), key, 5, 0, 30);
    assert_int_equal(bs_msg_parse(&m, buf + 4, n - 4), 0);
    assert_int_equal(bs_envelope_check(&cfg, &m, other, &last, &env, &why), MPOS_HMERR_ENVELOPE);
    assert_string_equal(why, "mac");
    assert_int_equal(last, 4);
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), 0);
    assert_string_equal(why, "ok");
    assert_int_equal(last, 5);
    assert_int_equal(env.lat_e7, -339000000);
    assert_int_equal(env.lon_e7, 1512000000);
    assert_int_equal(env.accuracy_m, 30);
    assert_int_equal(env.loc_time, 1760000000);
    /* The same message again: a replay. */
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), MPOS_HMERR_ENVELOPE);
    assert_string_equal(why, "counter");
    /* Accuracy beyond 1000 km: out of range, the counter stays. */
    n = envelope_msg(buf, sizeof(buf), key, 6, 0, 1000001);
    assert_int_equal(bs_msg_parse(&m, buf + 4, n - 4), 0);
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), MPOS_HMERR_ENVELOPE);
    assert_string_equal(why, "range");
    assert_int_equal(last, 5);
    /* Root: refused by policy, but authentic, so the counter moves; allowed by config. */
    n = envelope_msg(buf, sizeof(buf), key, 7, 1, 30);
    assert_int_equal(bs_msg_parse(&m, buf + 4, n - 4), 0);
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), MPOS_HMERR_INTEGRITY);
    assert_string_equal(why, "root");
    assert_int_equal(last, 7);
    cfg.allow_root = 1;
    n = envelope_msg(buf, sizeof(buf), key, 8, 1, 30);
    assert_int_equal(bs_msg_parse(&m, buf + 4, n - 4), 0);
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), 0);
    /* Without the envelope (data only): missing. */
    const uint8_t bare[] = {MPOS_HOSTMSG_TUNNEL, MPOS_HM_DATA, 0, 1, 'x'};
    assert_int_equal(bs_msg_parse(&m, bare, sizeof(bare)), 0);
    assert_int_equal(bs_envelope_check(&cfg, &m, key, &last, &env, &why), MPOS_HMERR_ENVELOPE);
    assert_string_equal(why, "missing");
}

static void test_firmware(void **state)
{
    uint32_t v = 0;
    (void)state;
    assert_int_equal(bs_firmware_parse("1.2.3", &v), 0);
    assert_int_equal(v, 0x010203);
    assert_int_equal(bs_firmware_parse("2.0.10-rc1", &v), 0);
    assert_int_equal(v, 0x02000A);
    assert_int_not_equal(bs_firmware_parse("1.2", &v), 0);
    assert_int_not_equal(bs_firmware_parse("1.2.3x", &v), 0);
    assert_int_not_equal(bs_firmware_parse("256.0.0", &v), 0);
    const uint8_t pkg[] = {0xE3, 0x0C, 0xE5, 0x00, 0xE4, 0x06, 0xC4,
                           0x04, 0x00, 0x01, 0x02, 0x00, 0xCB, 0x00};
    assert_int_equal(bs_params_min_firmware(pkg, sizeof(pkg), &v), 0);
    assert_int_equal(v, 0x010200);
    /* Truncated, trailing bytes, no minimum firmware. */
    assert_int_not_equal(bs_params_min_firmware(pkg, sizeof(pkg) - 1, &v), 0);
    const uint8_t longer[] = {0xE3, 0x0C, 0xE5, 0x00, 0xE4, 0x06, 0xC4, 0x04,
                              0x00, 0x01, 0x02, 0x00, 0xCB, 0x00, 0x00};
    assert_int_not_equal(bs_params_min_firmware(longer, sizeof(longer), &v), 0);
    const uint8_t none[] = {0xE3, 0x06, 0xE4, 0x04, 0xC3, 0x02, 0x00, 0x01};
    assert_int_not_equal(bs_params_min_firmware(none, sizeof(none), &v), 0);
}

static void test_travel(void **state)
{
    struct bs_envelope a, b;
    (void)state;
    memset(&a, 0, sizeof(a));
    a.lat_e7 = 488566140; /* Paris */
    a.lon_e7 = 23522220;
    a.accuracy_m = 50;
    a.loc_time = 1000000;
    b = a;
    b.lat_e7 = 397041940; /* Beijing, 8200 km away */
    b.lon_e7 = 1162927710;
    assert_int_equal(bs_travel_check("op:T/x", &a, 900), 0);
    b.loc_time = a.loc_time + 3600; /* one hour: too fast */
    assert_int_equal(bs_travel_check("op:T/x", &b, 900), 1);
    a.loc_time = b.loc_time + 12 * 3600; /* twelve hours later back in Paris: possible */
    assert_int_equal(bs_travel_check("op:T/x", &a, 900), 0);
    bs_travel_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),    cmocka_unit_test(test_builder),
        cmocka_unit_test(test_envelope), cmocka_unit_test(test_firmware),
        cmocka_unit_test(test_travel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
