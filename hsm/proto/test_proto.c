/* mpos_hsm_proto: the codec alone. Round trips, every refusal of the strict decoder, the
 * writer's sticky errors, and the consistency of the command and tag tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/util.h"
#include "proto.h"

/* A request body (after the prefix) with the given fields. */
static size_t body(uint8_t *out, uint8_t version, uint16_t cmd, const uint8_t *fields, size_t n)
{
    out[0] = version;
    mpos_store_be16(out + 1, cmd);
    mpos_store_be32(out + 3, 0x01020304);
    if (n > 0) {
        memcpy(out + 7, fields, n);
    }
    return 7 + n;
}

static void test_round_trip(void **state)
{
    uint8_t buf[256];
    hsm_writer w;
    hsm_msg m;
    size_t len = 0;
    uint16_t count = 0;
    (void)state;
    hsm_writer_request(&w, buf, sizeof(buf), HSM_CMD_RANDOM, 42);
    hsm_put_u16(&w, HSM_TAG_COUNT, 32);
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(len, 4 + 7 + 3 + 2);
    size_t blen = 0;
    assert_int_equal(hsm_proto_frame_len(buf, HSM_PROTO_REQ_HEADER_LEN, 16384, &blen), 0);
    assert_int_equal(blen, len - 4);
    assert_int_equal(hsm_proto_decode_request(buf + 4, blen, &m), HSM_STATUS_OK);
    assert_int_equal(m.command, HSM_CMD_RANDOM);
    assert_int_equal(m.request_id, 42);
    assert_string_equal(m.cmd->name, "random");
    assert_int_equal(hsm_msg_u16(&m, HSM_TAG_COUNT, &count), 0);
    assert_int_equal(count, 32);
    assert_false(hsm_msg_has(&m, HSM_TAG_DATA));

    /* The response, decoded as a client does. */
    uint8_t rnd[32];
    memset(rnd, 0xA5, sizeof(rnd));
    hsm_writer_response(&w, buf, sizeof(buf), HSM_CMD_RANDOM, 42, HSM_STATUS_OK);
    hsm_put_bytes(&w, HSM_TAG_DATA, rnd, sizeof(rnd));
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_RANDOM, &m), 0);
    const uint8_t *v = NULL;
    size_t vl = 0;
    assert_int_equal(hsm_msg_bytes(&m, HSM_TAG_DATA, &v, &vl), 0);
    assert_int_equal(vl, 32);
    assert_memory_equal(v, rnd, 32);
}

static void test_frame_len(void **state)
{
    uint8_t p[4];
    size_t n = 99;
    (void)state;
    mpos_store_be32(p, 16385);
    assert_int_equal(hsm_proto_frame_len(p, 7, 16384, &n), HSM_STATUS_TOO_LARGE);
    assert_int_equal(n, 0);
    mpos_store_be32(p, 0xFFFFFFFFu);
    assert_int_equal(hsm_proto_frame_len(p, 7, 16384, &n), HSM_STATUS_TOO_LARGE);
    mpos_store_be32(p, 6);
    assert_int_equal(hsm_proto_frame_len(p, 7, 16384, &n), HSM_STATUS_FRAME);
    mpos_store_be32(p, 16384);
    assert_int_equal(hsm_proto_frame_len(p, 7, 16384, &n), HSM_STATUS_OK);
    assert_int_equal(n, 16384);
}

static int decode_fields(uint16_t cmd, const uint8_t *f, size_t n)
{
    uint8_t b[128];
    hsm_msg m;
    return hsm_proto_decode_request(b, body(b, HSM_PROTO_VERSION, cmd, f, n), &m);
}

static void test_refusals(void **state)
{
    (void)state;
    static const uint8_t ok[] = {HSM_TAG_COUNT, 0, 2, 0, 16};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, ok, sizeof(ok)), HSM_STATUS_OK);
    /* missing required */
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, NULL, 0), HSM_STATUS_FIELD);
    /* duplicate */
    static const uint8_t dup[] = {HSM_TAG_COUNT, 0, 2, 0, 16, HSM_TAG_COUNT, 0, 2, 0, 16};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, dup, sizeof(dup)), HSM_STATUS_FIELD);
    /* a tag the protocol has, but not this command */
    static const uint8_t other[] = {HSM_TAG_COUNT, 0, 2, 0, 16, HSM_TAG_PAN, 0, 1, '4'};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, other, sizeof(other)), HSM_STATUS_FIELD);
    /* a tag the protocol does not have, tag 0 */
    static const uint8_t unknown[] = {HSM_TAG_COUNT, 0, 2, 0, 16, 0x7E, 0, 0};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, unknown, sizeof(unknown)), HSM_STATUS_FIELD);
    static const uint8_t zero[] = {0, 0, 0};
    assert_int_equal(decode_fields(HSM_CMD_STATUS, zero, sizeof(zero)), HSM_STATUS_FIELD);
    /* integer of the wrong size */
    static const uint8_t wide[] = {HSM_TAG_COUNT, 0, 3, 0, 0, 16};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, wide, sizeof(wide)), HSM_STATUS_FIELD);
    /* value past the end; truncated field header */
    static const uint8_t past[] = {HSM_TAG_COUNT, 0, 4, 0, 16};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, past, sizeof(past)), HSM_STATUS_FIELD);
    static const uint8_t trail[] = {HSM_TAG_COUNT, 0, 2, 0, 16, HSM_TAG_DATA};
    assert_int_equal(decode_fields(HSM_CMD_RANDOM, trail, sizeof(trail)), HSM_STATUS_FIELD);
    /* status takes no field at all */
    assert_int_equal(decode_fields(HSM_CMD_STATUS, ok, sizeof(ok)), HSM_STATUS_FIELD);
    assert_int_equal(decode_fields(HSM_CMD_STATUS, NULL, 0), HSM_STATUS_OK);
    /* digits, text and lengths: a PAN with a letter, a short PAN, a long one */
    static const uint8_t pan_ok[] = {HSM_TAG_PAN, 0,   12,  '4', '1', '1', '1', '1',
                                     '1',         '1', '1', '1', '1', '1', '1'};
    assert_int_equal(decode_fields(HSM_CMD_PAN_HASH, pan_ok, sizeof(pan_ok)), HSM_STATUS_OK);
    uint8_t pan_bad[sizeof(pan_ok)];
    memcpy(pan_bad, pan_ok, sizeof(pan_ok));
    pan_bad[5] = 'A';
    assert_int_equal(decode_fields(HSM_CMD_PAN_HASH, pan_bad, sizeof(pan_bad)), HSM_STATUS_FIELD);
    static const uint8_t pan_short[] = {HSM_TAG_PAN, 0, 3, '4', '1', '1'};
    assert_int_equal(decode_fields(HSM_CMD_PAN_HASH, pan_short, sizeof(pan_short)),
                     HSM_STATUS_FIELD);
    uint8_t pan_long[3 + 20];
    pan_long[0] = HSM_TAG_PAN;
    mpos_store_be16(pan_long + 1, 20);
    memset(pan_long + 3, '4', 20);
    assert_int_equal(decode_fields(HSM_CMD_PAN_HASH, pan_long, sizeof(pan_long)), HSM_STATUS_FIELD);
    /* a key block with a control character */
    uint8_t kb[3 + 20];
    kb[0] = HSM_TAG_KEY_BLOCK;
    mpos_store_be16(kb + 1, 20);
    memset(kb + 3, 'A', 20);
    kb[10] = '\n';
    static const uint8_t alg[] = {HSM_TAG_MAC_ALG, 0, 1, 2, HSM_TAG_DATA, 0, 0};
    uint8_t req[64];
    memcpy(req, alg, sizeof(alg));
    memcpy(req + sizeof(alg), kb, sizeof(kb));
    assert_int_equal(decode_fields(HSM_CMD_MAC_GENERATE, req, sizeof(alg) + sizeof(kb)),
                     HSM_STATUS_FIELD);
    kb[10] = 'A';
    memcpy(req + sizeof(alg), kb, sizeof(kb));
    assert_int_equal(decode_fields(HSM_CMD_MAC_GENERATE, req, sizeof(alg) + sizeof(kb)),
                     HSM_STATUS_OK);
}

static void test_header_refusals(void **state)
{
    uint8_t b[32] = {0};
    hsm_msg m;
    (void)state;
    assert_int_equal(hsm_proto_decode_request(b, 6, &m), HSM_STATUS_FRAME);
    assert_false(m.header_ok);
    assert_int_equal(hsm_proto_decode_request(b, body(b, 2, HSM_CMD_STATUS, NULL, 0), &m),
                     HSM_STATUS_VERSION);
    assert_true(m.header_ok);
    assert_int_equal(m.request_id, 0x01020304);
    assert_int_equal(hsm_proto_decode_request(b, body(b, 1, 0xBEEF, NULL, 0), &m),
                     HSM_STATUS_COMMAND);
    assert_int_equal(m.command, 0xBEEF);
    assert_null(m.cmd);
}

static void test_response_refusals(void **state)
{
    uint8_t buf[128];
    hsm_writer w;
    hsm_msg m;
    size_t len = 0;
    (void)state;
    /* An error status with a field. */
    hsm_writer_response(&w, buf, sizeof(buf), HSM_CMD_RANDOM, 1, HSM_STATUS_DENIED);
    hsm_put_u16(&w, HSM_TAG_COUNT, 1);
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_RANDOM, &m),
                     MPOS_ERR_FORMAT);
    /* OK without the required field; OK for another command; unknown status. */
    hsm_writer_response(&w, buf, sizeof(buf), HSM_CMD_RANDOM, 1, HSM_STATUS_OK);
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_RANDOM, &m),
                     MPOS_ERR_FORMAT);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_STATUS, &m),
                     MPOS_ERR_FORMAT);
    hsm_writer_response(&w, buf, sizeof(buf), HSM_CMD_RANDOM, 1, HSM_STATUS_MAX + 1);
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_RANDOM, &m),
                     MPOS_ERR_FORMAT);
    /* A frame-level refusal carries command 0. */
    hsm_writer_response(&w, buf, sizeof(buf), 0, 0, HSM_STATUS_TOO_LARGE);
    assert_int_equal(hsm_writer_finish(&w, &len), 0);
    assert_int_equal(hsm_proto_decode_response(buf + 4, len - 4, HSM_CMD_RANDOM, &m), 0);
    assert_int_equal(m.status, HSM_STATUS_TOO_LARGE);
}

static void test_writer_errors(void **state)
{
    uint8_t buf[16];
    hsm_writer w;
    size_t len = 1;
    (void)state;
    hsm_writer_request(&w, buf, sizeof(buf), HSM_CMD_PAN_HASH, 1);
    hsm_put_text(&w, HSM_TAG_PAN, "4111111111111111"); /* does not fit */
    hsm_put_u8(&w, HSM_TAG_PVKI, 1);                   /* ignored after the error */
    assert_int_equal(hsm_writer_finish(&w, &len), MPOS_ERR_LENGTH);
    assert_int_equal(len, 0);
    uint8_t big[64];
    hsm_writer_request(&w, big, sizeof(big), HSM_CMD_PAN_HASH, 1);
    hsm_put_text(&w, HSM_TAG_PAN, "41111X"); /* not digits */
    assert_int_equal(hsm_writer_finish(&w, &len), MPOS_ERR_ARG);
    hsm_writer_request(&w, big, sizeof(big), HSM_CMD_PAN_HASH, 1);
    hsm_put_u8(&w, 0x7E, 1); /* no such tag */
    assert_int_equal(hsm_writer_finish(&w, &len), MPOS_ERR_ARG);
    hsm_writer_request(&w, buf, 8, HSM_CMD_STATUS, 1); /* smaller than a header */
    assert_int_equal(hsm_writer_finish(&w, &len), MPOS_ERR_LENGTH);
}

static void test_tables(void **state)
{
    size_t n = 0;
    const struct hsm_command *cmds = hsm_proto_commands(&n);
    (void)state;
    assert_true(n > 0 && n <= 64); /* hsmd's allow-lists are 64-bit masks */
    for (size_t i = 0; i < n; i++) {
        const struct hsm_command *c = &cmds[i];
        assert_true(strlen(c->name) <= HSM_PROTO_NAME_MAX_LEN);
        assert_ptr_equal(hsm_proto_command(c->code), c);
        assert_ptr_equal(hsm_proto_command_by_name(c->name), c);
        const struct hsm_msg_schema *s[2] = {&c->request, &c->response};
        for (int k = 0; k < 2; k++) {
            size_t fixed = 0;
            assert_true(s[k]->n <= HSM_PROTO_MAX_SCHEMA_FIELDS);
            for (size_t f = 0; f < s[k]->n; f++) {
                const struct hsm_field_spec *fs = &s[k]->fields[f];
                const struct hsm_tag_info *ti = hsm_proto_tag(fs->tag);
                assert_non_null(ti);
                assert_true(fs->max_len == 0 || fs->max_len <= ti->max_len);
                assert_true(fs->min_len <= (fs->max_len ? fs->max_len : ti->max_len));
                for (size_t g = f + 1; g < s[k]->n; g++) {
                    assert_int_not_equal(fs->tag, s[k]->fields[g].tag);
                }
                fixed += 3u + (fs->max_len ? fs->max_len : ti->max_len);
            }
            /* The largest request of every command fits the default limit. */
            if (k == 0) {
                assert_true(7 + fixed <= HSM_PROTO_DEFAULT_MAX_REQUEST);
            }
        }
    }
    for (unsigned t = 1; t <= HSM_PROTO_MAX_TAG; t++) {
        const struct hsm_tag_info *ti = hsm_proto_tag(t);
        if (ti != NULL) {
            assert_int_equal(ti->tag, t);
        }
    }
    assert_string_equal(hsm_status_name(HSM_STATUS_DENIED), "denied");
    assert_string_equal(hsm_status_name(99), "?");
    assert_int_equal(hsm_status_from_err(MPOS_ERR_USAGE), HSM_STATUS_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_frame_len),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_header_refusals),
        cmocka_unit_test(test_response_refusals),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
