/* libFuzzer target: hsm/proto, the mpos-hsmd wire codec.
 *
 * The first input byte picks the direction (even: a request as hsmd reads it, odd: a response
 * as the client reads it, expecting the command in the next two bytes); the rest is a whole
 * frame (length prefix included). Runs the prefix check with the default limit, then the
 * strict decoder. Whenever a message is accepted: every present field must lie inside the
 * input, be of its tag's type and within the schema's lengths; re-encoding the fields (in
 * schema order) with the writer into a buffer of the frame's size must succeed, decode again
 * to the same values, and one byte less room must fail with MPOS_ERR_LENGTH. The accessors are
 * exercised on every tag.
 *
 * Build and run by hand:
 *   clang -fsanitize=fuzzer,address,undefined -I lib/include -I hsm/proto fuzz/fuzz_hsm_proto.c \
 *       hsm/proto/proto.c hsm/proto/commands.c lib/util/err.c lib/util/util.c -lcrypto \
 *       -o /tmp/fuzz_hsm_proto && /tmp/fuzz_hsm_proto -max_total_time=30
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/util.h"
#include "proto.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t out[HSM_PROTO_PREFIX_LEN + HSM_PROTO_MAX_RESPONSE];

/* Re-encodes m's fields into cap bytes; returns the writer's result. */
static int reencode(const hsm_msg *m, const struct hsm_msg_schema *s, int response, size_t cap,
                    size_t *len)
{
    hsm_writer w;
    if (response) {
        hsm_writer_response(&w, out, cap, m->command, m->request_id, m->status);
    } else {
        hsm_writer_request(&w, out, cap, m->command, m->request_id);
    }
    for (size_t i = 0; s != NULL && i < s->n; i++) {
        unsigned tag = s->fields[i].tag;
        if (hsm_msg_has(m, tag)) {
            hsm_put_bytes(&w, tag, m->field[tag].value, m->field[tag].len);
        }
    }
    return hsm_writer_finish(&w, len);
}

static void check_message(const hsm_msg *m, const uint8_t *data, size_t size, size_t frame_len,
                          int response)
{
    const struct hsm_msg_schema *s = NULL;
    size_t fields_len = 0;
    if (!response || m->status == HSM_STATUS_OK) {
        CHECK(m->cmd != NULL);
        s = response ? &m->cmd->response : &m->cmd->request;
    }
    for (unsigned t = 0; t <= HSM_PROTO_MAX_TAG; t++) {
        const uint8_t *v = NULL;
        size_t vl = 0;
        uint8_t u8;
        uint16_t u16;
        uint64_t u64;
        char text[64];
        int has = hsm_msg_has(m, t);
        CHECK((hsm_msg_bytes(m, t, &v, &vl) == 0) == has);
        (void)hsm_msg_u8(m, t, &u8);
        (void)hsm_msg_u16(m, t, &u16);
        (void)hsm_msg_u64(m, t, &u64);
        (void)hsm_msg_text(m, t, text, sizeof(text));
        if (!has) {
            continue;
        }
        CHECK(s != NULL);
        CHECK(v >= data && v + vl <= data + size);
        const struct hsm_tag_info *ti = hsm_proto_tag(t);
        CHECK(ti != NULL && vl <= ti->max_len);
        fields_len += 3 + vl;
    }
    size_t hdr = response ? HSM_PROTO_RESP_HEADER_LEN : HSM_PROTO_REQ_HEADER_LEN;
    CHECK(hdr + fields_len == frame_len); /* no byte unaccounted for */
    size_t len = 0;
    size_t whole = HSM_PROTO_PREFIX_LEN + frame_len;
    CHECK(whole <= sizeof(out));
    CHECK(reencode(m, s, response, whole, &len) == 0 && len == whole);
    hsm_msg again;
    if (response) {
        CHECK(hsm_proto_decode_response(out + 4, len - 4, m->command, &again) == 0);
    } else {
        CHECK(hsm_proto_decode_request(out + 4, len - 4, &again) == HSM_STATUS_OK);
    }
    CHECK(memcmp(again.present, m->present, sizeof(m->present)) == 0);
    for (unsigned t = 0; t <= HSM_PROTO_MAX_TAG; t++) {
        if (hsm_msg_has(m, t)) {
            CHECK(again.field[t].len == m->field[t].len &&
                  memcmp(again.field[t].value, m->field[t].value, m->field[t].len) == 0);
        }
    }
    CHECK(reencode(m, s, response, whole - 1, &len) == MPOS_ERR_LENGTH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hsm_msg m;
    size_t body = 0;
    if (size < 1 + HSM_PROTO_PREFIX_LEN) {
        return 0;
    }
    int response = data[0] & 1;
    const uint8_t *frame = data + 1;
    size_t frame_size = size - 1;
    uint16_t expect = 0;
    if (response) {
        if (frame_size < 2 + HSM_PROTO_PREFIX_LEN) {
            return 0;
        }
        expect = mpos_load_be16(frame);
        frame += 2;
        frame_size -= 2;
    }
    size_t min = response ? HSM_PROTO_RESP_HEADER_LEN : HSM_PROTO_REQ_HEADER_LEN;
    size_t max = response ? HSM_PROTO_MAX_RESPONSE : HSM_PROTO_DEFAULT_MAX_REQUEST;
    int st = hsm_proto_frame_len(frame, min, max, &body);
    if (st != HSM_STATUS_OK) {
        CHECK(body == 0 && (st == HSM_STATUS_TOO_LARGE || st == HSM_STATUS_FRAME));
        return 0;
    }
    if (body > frame_size - HSM_PROTO_PREFIX_LEN) {
        return 0; /* hsmd waits for the rest */
    }
    const uint8_t *b = frame + HSM_PROTO_PREFIX_LEN;
    if (response) {
        if (hsm_proto_decode_response(b, body, expect, &m) == 0) {
            check_message(&m, b, body, body, 1);
        } else {
            CHECK(m.present[0] == 0 && m.present[1] == 0);
        }
    } else {
        st = hsm_proto_decode_request(b, body, &m);
        CHECK(st >= HSM_STATUS_OK && st <= HSM_STATUS_MAX);
        if (st == HSM_STATUS_OK) {
            check_message(&m, b, body, body, 0);
        } else {
            CHECK(m.present[0] == 0 && m.present[1] == 0);
            CHECK(st == HSM_STATUS_FRAME || m.header_ok);
        }
    }
    return 0;
}
