/* mpos-hsmd wire codec: frames, typed fields, strict decoding (docs/hsm-protocol.md). */
#include "proto.h"

#include <string.h>

#include "mpos/util.h"

static const char *const status_names[] = {
    "ok",    "frame",  "version", "command",   "field",       "too-large", "denied",  "key",
    "usage", "verify", "input",   "exhausted", "unsupported", "busy",      "internal"};

const char *hsm_status_name(int status)
{
    if (status < 0 || status > HSM_STATUS_MAX) {
        return "?";
    }
    return status_names[status];
}

int hsm_status_from_err(int err)
{
    switch (err) {
    case MPOS_OK:
        return HSM_STATUS_OK;
    case MPOS_ERR_KEY:
        return HSM_STATUS_KEY;
    case MPOS_ERR_USAGE:
        return HSM_STATUS_USAGE;
    case MPOS_ERR_VERIFY:
        return HSM_STATUS_VERIFY;
    case MPOS_ERR_ARG:
    case MPOS_ERR_LENGTH:
    case MPOS_ERR_FORMAT:
    case MPOS_ERR_KSN:
    case MPOS_ERR_PIN:
    case MPOS_ERR_PAN:
    case MPOS_ERR_DECODE:
        return HSM_STATUS_INPUT;
    case MPOS_ERR_EXHAUSTED:
        return HSM_STATUS_EXHAUSTED;
    case MPOS_ERR_UNSUPPORTED:
        return HSM_STATUS_UNSUPPORTED;
    default:
        return HSM_STATUS_INTERNAL;
    }
}

int hsm_proto_frame_len(const uint8_t prefix[HSM_PROTO_PREFIX_LEN], size_t min_body,
                        size_t max_body, size_t *body_len)
{
    uint32_t n = mpos_load_be32(prefix);
    *body_len = 0;
    if (n > max_body) {
        return HSM_STATUS_TOO_LARGE;
    }
    if (n < min_body) {
        return HSM_STATUS_FRAME;
    }
    *body_len = n;
    return HSM_STATUS_OK;
}

/* 1 if every byte of value fits the type. */
static int value_of_type(uint8_t type, const uint8_t *v, size_t len)
{
    size_t i;
    switch (type) {
    case HSM_FT_BYTES:
        return 1;
    case HSM_FT_TEXT:
        for (i = 0; i < len; i++) {
            if (v[i] < 0x20 || v[i] > 0x7E) {
                return 0;
            }
        }
        return 1;
    case HSM_FT_DIGITS:
        for (i = 0; i < len; i++) {
            if (v[i] < '0' || v[i] > '9') {
                return 0;
            }
        }
        return 1;
    case HSM_FT_U8:
        return len == 1;
    case HSM_FT_U16:
        return len == 2;
    case HSM_FT_U64:
        return len == 8;
    default:
        return 0;
    }
}

static int has_tag(const hsm_msg *m, unsigned tag)
{
    return (m->present[tag / 64] >> (tag % 64)) & 1u;
}

static void clear_fields(hsm_msg *m)
{
    memset(m->present, 0, sizeof(m->present));
    memset(m->field, 0, sizeof(m->field));
}

static const struct hsm_field_spec *spec_of(const struct hsm_msg_schema *s, unsigned tag)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->fields[i].tag == tag) {
            return &s->fields[i];
        }
    }
    return NULL;
}

/* Reads the fields of p[0..len) against schema s into m. 0 or -1. */
static int decode_fields(const uint8_t *p, size_t len, const struct hsm_msg_schema *s, hsm_msg *m)
{
    size_t off = 0;
    while (off < len) {
        if (len - off < HSM_PROTO_FIELD_HEADER_LEN) {
            return -1; /* truncated field header */
        }
        unsigned tag = p[off];
        size_t flen = mpos_load_be16(p + off + 1);
        off += HSM_PROTO_FIELD_HEADER_LEN;
        if (flen > len - off) {
            return -1; /* value runs past the frame */
        }
        const struct hsm_tag_info *ti = hsm_proto_tag(tag);
        const struct hsm_field_spec *fs = spec_of(s, tag);
        if (ti == NULL || fs == NULL) {
            return -1; /* unknown to the protocol or to this command */
        }
        if (has_tag(m, tag)) {
            return -1; /* duplicate */
        }
        size_t max = fs->max_len != 0 ? fs->max_len : ti->max_len;
        if (flen < fs->min_len || flen > max || !value_of_type(ti->type, p + off, flen)) {
            return -1;
        }
        m->present[tag / 64] |= (uint64_t)1 << (tag % 64);
        m->field[tag].value = p + off;
        m->field[tag].len = (uint16_t)flen;
        off += flen;
    }
    for (size_t i = 0; i < s->n; i++) {
        if ((s->fields[i].flags & HSM_FIELD_REQUIRED) && !has_tag(m, s->fields[i].tag)) {
            return -1; /* missing */
        }
    }
    return 0;
}

static void msg_reset(hsm_msg *m)
{
    memset(m, 0, sizeof(*m));
}

int hsm_proto_decode_request(const uint8_t *body, size_t len, hsm_msg *m)
{
    msg_reset(m);
    if (body == NULL || len < HSM_PROTO_REQ_HEADER_LEN) {
        return HSM_STATUS_FRAME;
    }
    m->version = body[0];
    m->command = mpos_load_be16(body + 1);
    m->request_id = mpos_load_be32(body + 3);
    m->header_ok = 1;
    if (m->version != HSM_PROTO_VERSION) {
        return HSM_STATUS_VERSION;
    }
    m->cmd = hsm_proto_command(m->command);
    if (m->cmd == NULL) {
        return HSM_STATUS_COMMAND;
    }
    if (decode_fields(body + HSM_PROTO_REQ_HEADER_LEN, len - HSM_PROTO_REQ_HEADER_LEN,
                      &m->cmd->request, m) != 0) {
        clear_fields(m);
        return HSM_STATUS_FIELD;
    }
    return HSM_STATUS_OK;
}

int hsm_proto_decode_response(const uint8_t *body, size_t len, uint16_t expect_command, hsm_msg *m)
{
    static const struct hsm_msg_schema none = {NULL, 0};
    msg_reset(m);
    if (body == NULL || len < HSM_PROTO_RESP_HEADER_LEN) {
        return MPOS_ERR_FORMAT;
    }
    m->version = body[0];
    m->command = mpos_load_be16(body + 1);
    m->request_id = mpos_load_be32(body + 3);
    m->status = body[7];
    m->header_ok = 1;
    m->cmd = hsm_proto_command(m->command);
    if (m->version != HSM_PROTO_VERSION || m->status > HSM_STATUS_MAX) {
        return MPOS_ERR_FORMAT;
    }
    /* A refusal of a frame the server could not read may carry command 0. */
    if (m->command != expect_command && !(m->command == 0 && m->status != HSM_STATUS_OK)) {
        return MPOS_ERR_FORMAT;
    }
    const struct hsm_msg_schema *s = &none;
    if (m->status == HSM_STATUS_OK) {
        if (m->cmd == NULL) {
            return MPOS_ERR_FORMAT;
        }
        s = &m->cmd->response;
    }
    if (decode_fields(body + HSM_PROTO_RESP_HEADER_LEN, len - HSM_PROTO_RESP_HEADER_LEN, s, m) !=
        0) {
        clear_fields(m);
        return MPOS_ERR_FORMAT;
    }
    return 0;
}

int hsm_msg_has(const hsm_msg *m, unsigned tag)
{
    return tag <= HSM_PROTO_MAX_TAG && has_tag(m, tag);
}

int hsm_msg_bytes(const hsm_msg *m, unsigned tag, const uint8_t **value, size_t *len)
{
    if (!hsm_msg_has(m, tag)) {
        *value = NULL;
        *len = 0;
        return MPOS_ERR_ARG;
    }
    *value = m->field[tag].value;
    *len = m->field[tag].len;
    return 0;
}

int hsm_msg_text(const hsm_msg *m, unsigned tag, char *out, size_t cap)
{
    if (cap == 0) {
        return MPOS_ERR_LENGTH;
    }
    out[0] = '\0';
    if (!hsm_msg_has(m, tag)) {
        return MPOS_ERR_ARG;
    }
    if (m->field[tag].len >= cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(out, m->field[tag].value, m->field[tag].len);
    out[m->field[tag].len] = '\0';
    return 0;
}

static int msg_uint(const hsm_msg *m, unsigned tag, size_t size, uint64_t *v)
{
    *v = 0;
    if (!hsm_msg_has(m, tag)) {
        return MPOS_ERR_ARG;
    }
    if (m->field[tag].len != size) { /* the decoder guarantees it for integer tags */
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < size; i++) {
        *v = (*v << 8) | m->field[tag].value[i];
    }
    return 0;
}

int hsm_msg_u8(const hsm_msg *m, unsigned tag, uint8_t *v)
{
    uint64_t x = 0;
    int rc = msg_uint(m, tag, 1, &x);
    *v = (uint8_t)x;
    return rc;
}

int hsm_msg_u16(const hsm_msg *m, unsigned tag, uint16_t *v)
{
    uint64_t x = 0;
    int rc = msg_uint(m, tag, 2, &x);
    *v = (uint16_t)x;
    return rc;
}

int hsm_msg_u64(const hsm_msg *m, unsigned tag, uint64_t *v)
{
    return msg_uint(m, tag, 8, v);
}

static void writer_start(hsm_writer *w, uint8_t *buf, size_t cap, uint16_t command,
                         uint32_t request_id, size_t header_len)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
    if (buf == NULL || cap < HSM_PROTO_PREFIX_LEN + header_len) {
        w->err = MPOS_ERR_LENGTH;
        return;
    }
    buf[4] = HSM_PROTO_VERSION;
    mpos_store_be16(buf + 5, command);
    mpos_store_be32(buf + 7, request_id);
    w->len = HSM_PROTO_PREFIX_LEN + header_len;
}

void hsm_writer_request(hsm_writer *w, uint8_t *buf, size_t cap, uint16_t command,
                        uint32_t request_id)
{
    writer_start(w, buf, cap, command, request_id, HSM_PROTO_REQ_HEADER_LEN);
}

void hsm_writer_response(hsm_writer *w, uint8_t *buf, size_t cap, uint16_t command,
                         uint32_t request_id, uint8_t status)
{
    writer_start(w, buf, cap, command, request_id, HSM_PROTO_RESP_HEADER_LEN);
    if (w->err == 0) {
        buf[11] = status;
    }
}

void hsm_put_bytes(hsm_writer *w, unsigned tag, const void *value, size_t len)
{
    if (w->err != 0) {
        return;
    }
    const struct hsm_tag_info *ti = hsm_proto_tag(tag);
    if (ti == NULL || len > ti->max_len || (len > 0 && value == NULL) ||
        !value_of_type(ti->type, value, len)) {
        w->err = MPOS_ERR_ARG;
        return;
    }
    if (w->cap - w->len < HSM_PROTO_FIELD_HEADER_LEN + len) {
        w->err = MPOS_ERR_LENGTH;
        return;
    }
    w->buf[w->len] = (uint8_t)tag;
    mpos_store_be16(w->buf + w->len + 1, (uint16_t)len);
    if (len > 0) {
        memcpy(w->buf + w->len + HSM_PROTO_FIELD_HEADER_LEN, value, len);
    }
    w->len += HSM_PROTO_FIELD_HEADER_LEN + len;
}

void hsm_put_text(hsm_writer *w, unsigned tag, const char *s)
{
    hsm_put_bytes(w, tag, s, s != NULL ? strlen(s) : 0);
}

void hsm_put_u8(hsm_writer *w, unsigned tag, uint8_t v)
{
    hsm_put_bytes(w, tag, &v, 1);
}

void hsm_put_u16(hsm_writer *w, unsigned tag, uint16_t v)
{
    uint8_t b[2];
    mpos_store_be16(b, v);
    hsm_put_bytes(w, tag, b, sizeof(b));
}

void hsm_put_u64(hsm_writer *w, unsigned tag, uint64_t v)
{
    uint8_t b[8];
    mpos_store_be32(b, (uint32_t)(v >> 32));
    mpos_store_be32(b + 4, (uint32_t)v);
    hsm_put_bytes(w, tag, b, sizeof(b));
}

int hsm_writer_finish(hsm_writer *w, size_t *frame_len)
{
    *frame_len = 0;
    if (w->err != 0) {
        return w->err;
    }
    if (w->len - HSM_PROTO_PREFIX_LEN > UINT32_MAX) {
        return MPOS_ERR_LENGTH;
    }
    mpos_store_be32(w->buf, (uint32_t)(w->len - HSM_PROTO_PREFIX_LEN));
    *frame_len = w->len;
    return 0;
}
