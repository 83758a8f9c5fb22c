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
    buf[n++] = HW_TUNNEL;
    buf[n++] = HW_T_DATA;
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
    struct hw_msg m;
    (void)state;
    size_t n = tunnel_msg(buf, NULL, 0);
    assert_int_equal(hw_parse(buf, n, &m), 0);
    assert_int_equal(m.f[HW_T_DATA].len, 3);
    /* A duplicate tag. */
    const uint8_t dup[] = {HW_T_DATA, 0, 1, 'x'};
    n = tunnel_msg(buf, dup, sizeof(dup));
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    /* A tag of another message (password in a TUNNEL). */
    const uint8_t pw[] = {HW_T_PASSWORD, 0, 1, 'x'};
    n = tunnel_msg(buf, pw, sizeof(pw));
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    /* An unknown tag. */
    const uint8_t unk[] = {0x30, 0, 1, 'x'};
    n = tunnel_msg(buf, unk, sizeof(unk));
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    /* A field after the mac. */
    uint8_t mac[3 + 32 + 4] = {HW_T_MAC, 0, 32};
    mac[35] = HW_T_COUNTER;
    n = tunnel_msg(buf, mac, sizeof(mac));
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    /* mac last is fine (the envelope check decides the rest). */
    n = tunnel_msg(buf, mac, 35);
    assert_int_equal(hw_parse(buf, n, &m), 0);
    assert_int_equal(m.mac_off, 7);
    /* A truncated field, a wrong length for a fixed field, an unknown type. */
    n = tunnel_msg(buf, (const uint8_t[]){HW_T_COUNTER, 0, 8, 1}, 4);
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    n = tunnel_msg(buf, (const uint8_t[]){HW_T_COUNTER, 0, 1, 1}, 4);
    assert_int_not_equal(hw_parse(buf, n, &m), 0);
    buf[0] = 0x7E;
    assert_int_not_equal(hw_parse(buf, 1, &m), 0);
}

static void test_builder(void **state)
{
    uint8_t buf[64];
    struct hw_out o;
    size_t n = 0;
    (void)state;
    hw_out_init(&o, buf, sizeof(buf), HW_ERROR);
    hw_put_u16(&o, HW_T_ERROR, 6);
    hw_put_str(&o, HW_T_MESSAGE, "envelope");
    assert_int_equal(hw_out_finish(&o, &n), 0);
    assert_int_equal(n, 4 + 1 + 5 + 11);
    assert_memory_equal(buf, ((const uint8_t[]){0, 0, 0, 17, 0x8F, 8, 0, 2, 0, 6}), 10);
    hw_out_init(&o, buf, 16, HW_ERROR);
    hw_put(&o, HW_T_MESSAGE, "0123456789abcdef", 16);
    assert_int_not_equal(hw_out_finish(&o, &n), 0);
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
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_firmware),
        cmocka_unit_test(test_travel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
