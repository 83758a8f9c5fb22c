/* Unit tests: lib/util (hex, constant-time compare, parity, digits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/util.h"

static void test_hex_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[8];
    size_t len = 0;
    char out[17];
    assert_int_equal(mpos_hex_decode("00ff7Fa0", buf, sizeof(buf), &len), MPOS_OK);
    assert_int_equal(len, 4);
    mpos_hex_encode(buf, len, out);
    assert_string_equal(out, "00FF7FA0");
    assert_int_equal(mpos_hex_decode("", buf, sizeof(buf), &len), MPOS_OK);
    assert_int_equal(len, 0);
}

static void test_hex_rejects(void **state)
{
    (void)state;
    uint8_t buf[2];
    size_t len = 99;
    assert_int_equal(mpos_hex_decode("ABC", buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hex_decode("0G", buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hex_decode(" 00", buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hex_decode("0x00", buf, sizeof(buf), &len), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hex_decode("000000", buf, sizeof(buf), &len), MPOS_ERR_LENGTH);
    assert_int_equal(len, 99);
}

static void test_ct_equal(void **state)
{
    (void)state;
    uint8_t a[16] = {0}, b[16] = {0};
    assert_true(mpos_ct_equal(a, b, sizeof(a)));
    for (size_t i = 0; i < sizeof(a) * 8; i++) {
        b[i / 8] = (uint8_t)(1u << (i % 8));
        assert_false(mpos_ct_equal(a, b, sizeof(a)));
        b[i / 8] = 0;
    }
    assert_true(mpos_ct_equal(a, b, 0));
    assert_int_equal(mpos_ct_byte_is_zero(0), 0xFF);
    assert_int_equal(mpos_ct_byte_is_zero(1), 0);
    assert_int_equal(mpos_ct_byte_is_zero(0x80), 0);
}

static void test_parity_and_digits(void **state)
{
    (void)state;
    uint8_t k[4] = {0x00, 0x01, 0xFE, 0x72};
    mpos_des_set_odd_parity(k, sizeof(k));
    assert_int_equal(k[0], 0x01);
    assert_int_equal(k[1], 0x01);
    assert_int_equal(k[2], 0xFE);
    assert_int_equal(k[3], 0x73);
    assert_true(mpos_digits_valid("1234", 4, 12));
    assert_false(mpos_digits_valid("123", 4, 12));
    assert_false(mpos_digits_valid("1234567890123", 4, 12));
    assert_false(mpos_digits_valid("12a4", 4, 12));
    assert_false(mpos_digits_valid("", 0, 0) == 0);
    assert_int_equal(mpos_popcount32(0xFFFFFFFFu), 32);
    assert_int_equal(mpos_popcount32(0x80000001u), 2);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int e = MPOS_ERR_UNSUPPORTED; e <= 0; e++) {
        assert_string_not_equal(mpos_strerror(e), "unknown error");
    }
    assert_string_equal(mpos_strerror(-999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_roundtrip), cmocka_unit_test(test_hex_rejects),
        cmocka_unit_test(test_ct_equal),      cmocka_unit_test(test_parity_and_digits),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
