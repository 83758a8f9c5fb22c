/* openmpos: BER-TLV codec and EMV Data Object Lists (EMV 4.3 Book 3 Annex B and 5.4;
 * ISO/IEC 8825-1). See mpos/tlv.h for the rules this decoder takes. */
#include <string.h>

#include "mpos/tlv.h"
#include "mpos/util.h"

#define TAG_NUMBER_MASK 0x1Fu /* ISO/IEC 8825-1 8.1.2.4.1: 11111 = subsequent bytes follow */
#define TAG_CONSTRUCTED 0x20u /* ISO/IEC 8825-1 8.1.2.5: bit 6 = constructed */
#define TAG_MORE        0x80u /* ISO/IEC 8825-1 8.1.2.4.2 a: bit 8 = another byte follows */
#define LEN_LONG        0x80u /* ISO/IEC 8825-1 8.1.3.5: long form */

static int flags_ok(unsigned flags)
{
    return (flags & ~MPOS_TLV_FLAGS_KNOWN) == 0;
}

static int is_padding(uint8_t b, unsigned flags)
{
    /* Book 3 Annex B, SU 69: 00 bytes may precede, separate or follow objects; ISO/IEC 7816-4
     * allows FF as well. */
    return (b == 0x00 && (flags & MPOS_TLV_PAD_00) != 0) ||
           (b == 0xFF && (flags & MPOS_TLV_PAD_FF) != 0);
}

/* Decodes a tag at p (avail bytes). Sets *tag and *n (bytes used). */
static int decode_tag(const uint8_t *p, size_t avail, unsigned flags, uint32_t *tag, size_t *n)
{
    if (avail == 0) {
        return MPOS_ERR_FORMAT;
    }
    uint32_t t = p[0];
    size_t i = 1;
    if (p[0] == 0x00) {
        /* Not a tag: padding (handled by the caller when allowed) or an end-of-contents
         * marker of the indefinite form, which EMV does not use. */
        return MPOS_ERR_FORMAT;
    }
    if ((p[0] & TAG_NUMBER_MASK) == TAG_NUMBER_MASK) {
        /* Book 3 Annex B1; ISO/IEC 8825-1 8.1.2.4.2: subsequent bytes, bit 8 = more. */
        uint8_t b;
        do {
            if (i == MPOS_TLV_MAX_TAG_LEN || i == avail) {
                return MPOS_ERR_FORMAT; /* a 4th byte needed, or the tag is truncated */
            }
            b = p[i];
            if (i == 1 && b == TAG_MORE && (flags & MPOS_TLV_CANONICAL) != 0) {
                return MPOS_ERR_FORMAT; /* ISO/IEC 8825-1 8.1.2.4.2 c */
            }
            t = (t << 8) | b;
            i++;
        } while ((b & TAG_MORE) != 0);
    }
    *tag = t;
    *n = i;
    return MPOS_OK;
}

/* Decodes a length field at p (avail bytes). Sets *value_len and *n (bytes used). */
static int decode_len(const uint8_t *p, size_t avail, unsigned flags, size_t *value_len, size_t *n)
{
    if (avail == 0) {
        return MPOS_ERR_FORMAT;
    }
    if ((p[0] & LEN_LONG) == 0) {
        *value_len = p[0]; /* ISO/IEC 8825-1 8.1.3.4: short form */
        *n = 1;
        return MPOS_OK;
    }
    /* ISO/IEC 8825-1 8.1.3.5: long form. 80 is the indefinite form (8.1.3.6), refused;
     * Book 3 Annex B2 uses at most 82, 83 is our extension, 84 and up are refused. */
    size_t k = p[0] & 0x7Fu;
    if (k == 0 || k > MPOS_TLV_MAX_LEN_LEN - 1 || avail - 1 < k) {
        return MPOS_ERR_FORMAT;
    }
    size_t v = 0;
    for (size_t i = 1; i <= k; i++) {
        v = (v << 8) | p[i];
    }
    /* Minimal form (X.690 10.1) in canonical mode: 81 needs 80+, 82 needs 100+, 83 10000+. */
    if ((flags & MPOS_TLV_CANONICAL) != 0 && v < ((k == 1) ? 0x80u : (size_t)1 << (8 * (k - 1)))) {
        return MPOS_ERR_FORMAT;
    }
    *value_len = v;
    *n = 1 + k;
    return MPOS_OK;
}

/* Decodes one object at p (avail bytes, no padding before it). */
static int decode_one(const uint8_t *p, size_t avail, unsigned flags, mpos_tlv *obj)
{
    uint32_t tag = 0;
    size_t tn = 0, ln = 0, vlen = 0;
    int r = decode_tag(p, avail, flags, &tag, &tn);
    if (r != MPOS_OK) {
        return r;
    }
    r = decode_len(p + tn, avail - tn, flags, &vlen, &ln);
    if (r != MPOS_OK) {
        return r;
    }
    /* Book 3 Annex B2: the value field has exactly the coded length; it must be there. */
    if (vlen > avail - tn - ln) {
        return MPOS_ERR_FORMAT;
    }
    obj->tag = tag;
    obj->constructed = (p[0] & TAG_CONSTRUCTED) != 0;
    obj->value = p + tn + ln;
    obj->len = vlen;
    obj->raw = p;
    obj->raw_len = tn + ln + vlen;
    return MPOS_OK;
}

void mpos_tlv_iter_init(mpos_tlv_iter *it, const uint8_t *buf, size_t len, unsigned flags)
{
    if (it == NULL) {
        return;
    }
    it->p = buf;
    it->left = len;
    it->flags = flags;
    it->err = MPOS_OK;
    if ((buf == NULL && len != 0) || !flags_ok(flags)) {
        it->p = NULL;
        it->left = 0;
        it->err = MPOS_ERR_ARG;
    }
}

/* Number of padding bytes at the cursor. */
static size_t padding_len(const mpos_tlv_iter *it)
{
    size_t i = 0;
    while (i < it->left && is_padding(it->p[i], it->flags)) {
        i++;
    }
    return i;
}

int mpos_tlv_more(const mpos_tlv_iter *it)
{
    if (it == NULL) {
        return 0;
    }
    if (it->err != MPOS_OK) {
        return 1;
    }
    return padding_len(it) < it->left;
}

int mpos_tlv_next(mpos_tlv_iter *it, mpos_tlv *obj)
{
    if (obj != NULL) {
        memset(obj, 0, sizeof(*obj));
    }
    if (it == NULL || obj == NULL) {
        return MPOS_ERR_ARG;
    }
    if (it->err != MPOS_OK) {
        return it->err;
    }
    size_t pad = padding_len(it);
    if (pad == it->left) {
        return MPOS_ERR_LENGTH; /* nothing left */
    }
    int r = decode_one(it->p + pad, it->left - pad, it->flags, obj);
    if (r != MPOS_OK) {
        memset(obj, 0, sizeof(*obj));
        it->err = r;
        return r;
    }
    it->p += pad + obj->raw_len;
    it->left -= pad + obj->raw_len;
    return MPOS_OK;
}

int mpos_tlv_find(const uint8_t *buf, size_t len, unsigned flags, uint32_t tag, mpos_tlv *obj,
                  int *found)
{
    mpos_tlv_iter it;
    mpos_tlv o;
    int r = MPOS_OK;
    if (obj != NULL) {
        memset(obj, 0, sizeof(*obj));
    }
    if (found != NULL) {
        *found = 0;
    }
    if (obj == NULL || found == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_tlv_iter_init(&it, buf, len, flags);
    while (mpos_tlv_more(&it)) {
        r = mpos_tlv_next(&it, &o);
        if (r != MPOS_OK) {
            goto exit;
        }
        if (o.tag == tag) {
            *obj = o;
            *found = 1;
            goto exit;
        }
    }
exit:
    return r;
}

/* Walks buf depth first in buffer order with a fixed stack of MPOS_TLV_MAX_DEPTH cursors,
 * stopping at the first object with tag `want` (0, never a tag, walks everything). */
static int walk(const uint8_t *buf, size_t len, unsigned flags, uint32_t want, mpos_tlv *obj,
                int *found)
{
    mpos_tlv_iter stack[MPOS_TLV_MAX_DEPTH];
    size_t top = 0; /* stack[top] walks level top + 1 */
    mpos_tlv o;
    int r = MPOS_OK;

    mpos_tlv_iter_init(&stack[0], buf, len, flags);
    for (;;) {
        if (!mpos_tlv_more(&stack[top])) {
            if (top == 0) {
                break;
            }
            top--;
            continue;
        }
        r = mpos_tlv_next(&stack[top], &o);
        if (r != MPOS_OK) {
            goto exit;
        }
        if (want != 0 && o.tag == want) {
            *obj = o;
            *found = 1;
            goto exit;
        }
        if (o.constructed) {
            /* Book 3 Annex B: a template's value is itself a sequence of objects. */
            mpos_tlv_iter child;
            mpos_tlv_iter_init(&child, o.value, o.len, flags);
            if (!mpos_tlv_more(&child)) {
                continue; /* empty (or padding only): nothing nests */
            }
            if (top + 1 == MPOS_TLV_MAX_DEPTH) {
                r = MPOS_ERR_FORMAT; /* its content would be level MPOS_TLV_MAX_DEPTH + 1 */
                goto exit;
            }
            stack[++top] = child;
        }
    }
exit:
    return r;
}

int mpos_tlv_find_deep(const uint8_t *buf, size_t len, unsigned flags, uint32_t tag, mpos_tlv *obj,
                       int *found)
{
    if (obj != NULL) {
        memset(obj, 0, sizeof(*obj));
    }
    if (found != NULL) {
        *found = 0;
    }
    if (obj == NULL || found == NULL || (buf == NULL && len != 0) || !flags_ok(flags)) {
        return MPOS_ERR_ARG;
    }
    if (tag == 0) {
        return MPOS_OK; /* 0 is never a tag */
    }
    return walk(buf, len, flags, tag, obj, found);
}

int mpos_tlv_validate(const uint8_t *buf, size_t len, unsigned flags)
{
    mpos_tlv o;
    int found = 0;
    if ((buf == NULL && len != 0) || !flags_ok(flags)) {
        return MPOS_ERR_ARG;
    }
    return walk(buf, len, flags, 0, &o, &found);
}

/* Bytes of a valid 1..3 byte tag, 0 for an invalid one (Book 3 Annex B1). Canonical: the
 * encoder only writes what MPOS_TLV_STRICT decodes. */
static size_t tag_size(uint32_t tag)
{
    if (tag == 0 || tag > 0xFFFFFFu) {
        return 0;
    }
    if (tag <= 0xFFu) {
        return (tag & TAG_NUMBER_MASK) == TAG_NUMBER_MASK ? 0 : 1;
    }
    if (tag <= 0xFFFFu) {
        uint32_t b0 = tag >> 8, b1 = tag & 0xFFu;
        int ok = (b0 & TAG_NUMBER_MASK) == TAG_NUMBER_MASK && (b1 & TAG_MORE) == 0;
        return ok ? 2 : 0;
    }
    uint32_t b0 = tag >> 16, b1 = (tag >> 8) & 0xFFu, b2 = tag & 0xFFu;
    int ok = (b0 & TAG_NUMBER_MASK) == TAG_NUMBER_MASK && (b1 & TAG_MORE) != 0 && b1 != TAG_MORE &&
             (b2 & TAG_MORE) == 0;
    return ok ? 3 : 0;
}

/* First byte of a valid tag. */
static uint8_t tag_first_byte(uint32_t tag, size_t n)
{
    return (uint8_t)(tag >> (8 * (n - 1)));
}

static void write_tag(uint8_t *p, uint32_t tag, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(tag >> (8 * (n - 1 - i)));
    }
}

/* Bytes of the minimal length field for value_len (Book 3 Annex B2; X.690 10.1), 0 if over
 * MPOS_TLV_MAX_VALUE_LEN. */
static size_t len_size(size_t value_len)
{
    if (value_len < 0x80u) {
        return 1;
    }
    if (value_len <= 0xFFu) {
        return 2;
    }
    if (value_len <= 0xFFFFu) {
        return 3;
    }
    if (value_len <= MPOS_TLV_MAX_VALUE_LEN) {
        return 4;
    }
    return 0;
}

static void write_len(uint8_t *p, size_t value_len, size_t n)
{
    if (n == 1) {
        p[0] = (uint8_t)value_len;
        return;
    }
    p[0] = (uint8_t)(LEN_LONG | (n - 1));
    for (size_t i = 1; i < n; i++) {
        p[i] = (uint8_t)(value_len >> (8 * (n - 1 - i)));
    }
}

int mpos_tlv_put(uint8_t *buf, size_t cap, size_t *len, uint32_t tag, const uint8_t *value,
                 size_t value_len)
{
    if (buf == NULL || len == NULL || *len > cap || (value == NULL && value_len != 0)) {
        return MPOS_ERR_ARG;
    }
    size_t tn = tag_size(tag);
    if (tn == 0) {
        return MPOS_ERR_ARG;
    }
    size_t ln = len_size(value_len);
    if (ln == 0) {
        return MPOS_ERR_LENGTH;
    }
    size_t room = cap - *len;
    if (tn + ln > room || value_len > room - tn - ln) {
        return MPOS_ERR_LENGTH;
    }
    uint8_t *p = buf + *len;
    if (value_len != 0) {
        memmove(p + tn + ln, value, value_len); /* value first: it may lie where the header goes */
    }
    write_tag(p, tag, tn);
    write_len(p + tn, value_len, ln);
    *len += tn + ln + value_len;
    return MPOS_OK;
}

int mpos_tlv_begin(uint8_t *buf, size_t cap, size_t *len, uint32_t tag, mpos_tlv_mark *mark)
{
    if (buf == NULL || len == NULL || mark == NULL || *len > cap) {
        return MPOS_ERR_ARG;
    }
    size_t tn = tag_size(tag);
    if (tn == 0 || (tag_first_byte(tag, tn) & TAG_CONSTRUCTED) == 0) {
        return MPOS_ERR_ARG;
    }
    if (tn + 1 > cap - *len) {
        return MPOS_ERR_LENGTH;
    }
    uint8_t *p = buf + *len;
    write_tag(p, tag, tn);
    p[tn] = 0x00; /* placeholder: an empty template if never closed */
    mark->tag_pos = *len;
    mark->value_pos = *len + tn + 1;
    *len += tn + 1;
    return MPOS_OK;
}

int mpos_tlv_end(uint8_t *buf, size_t cap, size_t *len, const mpos_tlv_mark *mark)
{
    if (buf == NULL || len == NULL || mark == NULL || *len > cap || mark->value_pos > *len ||
        mark->tag_pos >= mark->value_pos || mark->value_pos - mark->tag_pos < 2 ||
        mark->value_pos - mark->tag_pos > MPOS_TLV_MAX_TAG_LEN + 1) {
        return MPOS_ERR_ARG;
    }
    size_t content = *len - mark->value_pos;
    size_t ln = len_size(content);
    if (ln == 0) {
        return MPOS_ERR_LENGTH;
    }
    size_t extra = ln - 1; /* begin reserved one length byte */
    if (extra > cap - *len) {
        return MPOS_ERR_LENGTH;
    }
    uint8_t *v = buf + mark->value_pos;
    if (extra != 0 && content != 0) {
        memmove(v + extra, v, content);
    }
    write_len(v - 1, content, ln);
    *len += extra;
    return MPOS_OK;
}

/* Decodes the DOL entry at *p (*left bytes) and moves past it (Book 3 5.4: a tag, then a
 * one-byte length; no padding). */
static int dol_next(const uint8_t **p, size_t *left, mpos_tlv_dol_entry *e)
{
    uint32_t tag = 0;
    size_t tn = 0;
    int r = decode_tag(*p, *left, 0, &tag, &tn);
    if (r != MPOS_OK) {
        return r;
    }
    if (tn == *left) {
        return MPOS_ERR_FORMAT; /* the length byte is missing */
    }
    uint8_t l = (*p)[tn];
    if (l > MPOS_TLV_DOL_MAX_ELEM_LEN) {
        return MPOS_ERR_FORMAT; /* one byte for EMV, a long form for BER: ambiguous */
    }
    e->tag = tag;
    e->len = l;
    e->constructed = ((*p)[0] & TAG_CONSTRUCTED) != 0;
    *p += tn + 1;
    *left -= tn + 1;
    return MPOS_OK;
}

int mpos_tlv_dol_parse(const uint8_t *dol, size_t dol_len, mpos_tlv_dol_entry *entries,
                       size_t max_entries, size_t *count, size_t *data_len)
{
    const uint8_t *p = dol;
    size_t left = dol_len, n = 0, total = 0;
    mpos_tlv_dol_entry e;
    int r = MPOS_OK;
    if (count == NULL || (dol == NULL && dol_len != 0)) {
        return MPOS_ERR_ARG;
    }
    *count = 0;
    if (data_len != NULL) {
        *data_len = 0;
    }
    while (left > 0) {
        r = dol_next(&p, &left, &e);
        if (r != MPOS_OK) {
            goto exit;
        }
        if (entries != NULL && n < max_entries) {
            entries[n] = e;
        }
        n++;
        total += e.len; /* at most 127 per 2 bytes of DOL: cannot overflow */
    }
    /* A malformed DOL is MPOS_ERR_FORMAT whatever the array size. */
    if (entries != NULL && n > max_entries) {
        r = MPOS_ERR_LENGTH;
    }
    *count = n;
    if (data_len != NULL) {
        *data_len = total;
    }
exit:
    return r;
}

/* Copies value into a field of field_len bytes by the DOL rules (Book 3 5.4 c, d). */
static int dol_fill(uint8_t *field, size_t field_len, const uint8_t *value, size_t value_len,
                    enum mpos_tlv_format format)
{
    size_t n = value_len < field_len ? value_len : field_len;
    switch (format) {
    case MPOS_TLV_FMT_N:
        /* 5.4 c: truncate the leftmost bytes; 5.4 d: pad with leading zeros. */
        memset(field, 0x00, field_len - n);
        memcpy(field + field_len - n, value + value_len - n, n);
        return MPOS_OK;
    case MPOS_TLV_FMT_CN:
        /* 5.4 c: truncate the rightmost bytes; 5.4 d: pad with trailing FF. */
        memcpy(field, value, n);
        memset(field + n, 0xFF, field_len - n);
        return MPOS_OK;
    case MPOS_TLV_FMT_B:
        /* 5.4 c: truncate the rightmost bytes; 5.4 d: pad with trailing zeros. */
        memcpy(field, value, n);
        memset(field + n, 0x00, field_len - n);
        return MPOS_OK;
    }
    return MPOS_ERR_ARG;
}

int mpos_tlv_dol_build(const uint8_t *dol, size_t dol_len, mpos_tlv_dol_lookup_fn lookup, void *ctx,
                       uint8_t *out, size_t cap, size_t *len)
{
    size_t count = 0, total = 0, written = 0, left = dol_len;
    const uint8_t *p = dol;
    mpos_tlv_dol_entry e;
    uint8_t *dst = NULL;
    int r;

    if (lookup == NULL || out == NULL || len == NULL || *len > cap ||
        (dol == NULL && dol_len != 0)) {
        return MPOS_ERR_ARG;
    }
    /* Parse everything first: a malformed DOL or one that does not fit writes nothing. */
    r = mpos_tlv_dol_parse(dol, dol_len, NULL, 0, &count, &total);
    if (r != MPOS_OK) {
        return r;
    }
    if (total > cap - *len) {
        return MPOS_ERR_LENGTH;
    }
    dst = out + *len;
    while (left > 0) {
        r = dol_next(&p, &left, &e);
        if (r != MPOS_OK) {
            goto exit; /* cannot happen: parsed above */
        }
        uint8_t *field = dst + written;
        const uint8_t *value = NULL;
        size_t value_len = 0;
        enum mpos_tlv_format format = MPOS_TLV_FMT_B;
        if (!e.constructed) {
            r = lookup(ctx, e.tag, &value, &value_len, &format);
            if (r > 0) {
                r = MPOS_ERR_ARG; /* lib/ never returns business outcomes */
            }
            if (r != MPOS_OK) {
                goto exit;
            }
        }
        if (value == NULL) {
            /* 5.4 a (unknown tag or template), b (absent), e (not applicable): zeros. */
            memset(field, 0x00, e.len);
        } else {
            r = dol_fill(field, e.len, value, value_len, format);
            if (r != MPOS_OK) {
                goto exit;
            }
        }
        written += e.len;
    }
    *len += written;
exit:
    if (r != MPOS_OK && dst != NULL) {
        mpos_cleanse(dst, written);
    }
    return r;
}
