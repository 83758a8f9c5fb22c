/* libFuzzer target: lib/tlv.
 *
 * The first input byte picks the decoder flags, the rest is the TLV data (libFuzzer hands it
 * over in a heap block of exactly that size, so AddressSanitizer sees any read past it). Runs
 * the validator, the one-level cursor, the one-level and deep finds, the DOL parser and the
 * DOL builder over it, and checks what each reports against the others. When the validator
 * accepts the data, re-encodes every object with mpos_tlv_put / begin / end into a buffer of
 * the input's size and checks that the result is canonical (MPOS_TLV_STRICT), decodes to the
 * same objects, re-encodes to itself, and that one byte less room gives MPOS_ERR_LENGTH.
 * Finally puts one object with a tag taken from the input and decodes it back.
 *
 * Build and run by hand (lib/util's sources are err.c and util.c):
 *   clang -fsanitize=fuzzer,address,undefined -I lib/include fuzz/fuzz_tlv.c lib/tlv/tlv.c \
 *       lib/util/err.c lib/util/util.c -lcrypto -o /tmp/fuzz_tlv && /tmp/fuzz_tlv
 * -max_total_time=30
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/tlv.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const unsigned flag_sets[4] = {MPOS_TLV_CARD, MPOS_TLV_STRICT,
                                      MPOS_TLV_CARD | MPOS_TLV_PAD_FF, 0};

/* A depth-first walk (pre-order) with the same depth bound as the library. */
struct walker {
    mpos_tlv_iter stack[MPOS_TLV_MAX_DEPTH];
    size_t top;
};

static void walker_init(struct walker *w, const uint8_t *buf, size_t len, unsigned flags)
{
    w->top = 0;
    mpos_tlv_iter_init(&w->stack[0], buf, len, flags);
}

/* 1 with the next object and its depth (0 = top level), 0 at the end, -1 on an error. */
static int walker_next(struct walker *w, mpos_tlv *obj, size_t *depth)
{
    for (;;) {
        if (!mpos_tlv_more(&w->stack[w->top])) {
            if (w->top == 0) {
                return 0;
            }
            w->top--;
            continue;
        }
        if (mpos_tlv_next(&w->stack[w->top], obj) != MPOS_OK) {
            return -1;
        }
        *depth = w->top;
        if (obj->constructed) {
            mpos_tlv_iter child;
            mpos_tlv_iter_init(&child, obj->value, obj->len, w->stack[w->top].flags);
            if (mpos_tlv_more(&child)) {
                if (w->top + 1 == MPOS_TLV_MAX_DEPTH) {
                    return -1;
                }
                w->stack[++w->top] = child;
            }
        }
        return 1;
    }
}

/* The object lies inside [buf, buf + len) and its parts add up. */
static void check_bounds(const mpos_tlv *o, const uint8_t *buf, size_t len)
{
    CHECK(o->raw >= buf && o->raw_len <= len && (size_t)(o->raw - buf) <= len - o->raw_len);
    CHECK(o->value > o->raw && o->value + o->len == o->raw + o->raw_len);
    CHECK((size_t)(o->value - o->raw) >= 2 &&
          (size_t)(o->value - o->raw) <= MPOS_TLV_MAX_HEADER_LEN);
    CHECK(o->tag != 0 && o->tag <= 0xFFFFFFu);
}

/* A tag the decoder takes in BER mode but the (canonical) encoder does not write. */
static int non_canonical_tag(uint32_t tag)
{
    return tag > 0xFFFFu && ((tag >> 8) & 0xFFu) == 0x80u;
}

/* Re-encodes every object of buf. MPOS_ERR_UNSUPPORTED for a non-canonical tag. */
static int reencode(const uint8_t *buf, size_t len, unsigned flags, uint8_t *out, size_t cap,
                    size_t *out_len)
{
    struct walker w;
    mpos_tlv_mark marks[MPOS_TLV_MAX_DEPTH];
    size_t open = 0, depth = 0;
    mpos_tlv o;
    int r, k;
    *out_len = 0;
    walker_init(&w, buf, len, flags);
    while ((k = walker_next(&w, &o, &depth)) == 1) {
        while (open > depth) {
            r = mpos_tlv_end(out, cap, out_len, &marks[--open]);
            if (r != MPOS_OK) {
                return r;
            }
        }
        if (non_canonical_tag(o.tag)) {
            return MPOS_ERR_UNSUPPORTED;
        }
        if (o.constructed) {
            CHECK(open < MPOS_TLV_MAX_DEPTH);
            r = mpos_tlv_begin(out, cap, out_len, o.tag, &marks[open++]);
        } else {
            r = mpos_tlv_put(out, cap, out_len, o.tag, o.value, o.len);
        }
        if (r != MPOS_OK) {
            return r;
        }
    }
    CHECK(k == 0); /* only called on validated input */
    while (open > 0) {
        r = mpos_tlv_end(out, cap, out_len, &marks[--open]);
        if (r != MPOS_OK) {
            return r;
        }
    }
    return MPOS_OK;
}

/* Both buffers decode to the same objects (constructed lengths may differ by padding). */
static void check_same_objects(const uint8_t *a, size_t alen, unsigned aflags, const uint8_t *b,
                               size_t blen, unsigned bflags)
{
    struct walker wa, wb;
    mpos_tlv oa, ob;
    size_t da = 0, db = 0;
    int ka, kb;
    walker_init(&wa, a, alen, aflags);
    walker_init(&wb, b, blen, bflags);
    do {
        ka = walker_next(&wa, &oa, &da);
        kb = walker_next(&wb, &ob, &db);
        CHECK(ka == kb && ka >= 0);
        if (ka == 1) {
            CHECK(da == db && oa.tag == ob.tag && oa.constructed == ob.constructed);
            if (!oa.constructed) {
                CHECK(oa.len == ob.len && (oa.len == 0 || memcmp(oa.value, ob.value, oa.len) == 0));
            }
        }
    } while (ka == 1);
}

struct dol_ctx {
    const uint8_t *data;
    size_t size;
};

/* Terminal values taken from the input itself: the lookup is a pure function of the tag, so
 * the reference below can ask it again. Some tags absent, one failing. */
static int dol_value(const struct dol_ctx *c, uint32_t tag, const uint8_t **value,
                     size_t *value_len, enum mpos_tlv_format *format)
{
    if (tag == 0x9F7F) {
        return MPOS_ERR_VERIFY;
    }
    if ((tag & 0x10u) != 0) {
        return MPOS_OK; /* absent */
    }
    size_t off = c->size ? tag % c->size : 0;
    size_t n = (tag >> 3) % 200;
    if (n > c->size - off) {
        n = c->size - off;
    }
    *value = c->data + off;
    *value_len = n;
    *format = (enum mpos_tlv_format)(tag % 3);
    return MPOS_OK;
}

static int dol_lookup(void *ctx, uint32_t tag, const uint8_t **value, size_t *value_len,
                      enum mpos_tlv_format *format)
{
    CHECK(*value == NULL && *value_len == 0 && *format == MPOS_TLV_FMT_B);
    return dol_value(ctx, tag, value, value_len, format);
}

/* Book 3 5.4 written out byte by byte, as a reference for one field. */
static void dol_reference(uint8_t *field, size_t flen, const uint8_t *v, size_t vlen,
                          enum mpos_tlv_format f)
{
    for (size_t i = 0; i < flen; i++) {
        if (v == NULL) {
            field[i] = 0x00; /* a, b, e */
        } else if (f == MPOS_TLV_FMT_N) {
            /* right-aligned: field byte i is value byte i - (flen - vlen) */
            field[i] = (i + vlen >= flen) ? v[i + vlen - flen] : 0x00;
        } else {
            field[i] = i < vlen ? v[i] : (f == MPOS_TLV_FMT_CN ? 0xFF : 0x00);
        }
    }
}

static void fuzz_dol(const uint8_t *data, size_t size)
{
    static mpos_tlv_dol_entry entries[MPOS_TLV_DOL_MAX_ENTRIES];
    static uint8_t out[2048], ref[2048];
    size_t count = 0, total = 0, count2 = 0, total2 = 0;
    int r = mpos_tlv_dol_parse(data, size, entries, MPOS_TLV_DOL_MAX_ENTRIES, &count, &total);
    int r2 = mpos_tlv_dol_parse(data, size, NULL, 0, &count2, &total2);
    CHECK(r2 == MPOS_OK || r2 == MPOS_ERR_FORMAT);
    if (r2 == MPOS_OK) {
        CHECK(r == (count2 > MPOS_TLV_DOL_MAX_ENTRIES ? MPOS_ERR_LENGTH : MPOS_OK));
        CHECK(count == count2 && total == total2);
        CHECK(total2 <= (size / 2) * MPOS_TLV_DOL_MAX_ELEM_LEN);
        if (r == MPOS_OK) {
            size_t sum = 0;
            for (size_t i = 0; i < count; i++) {
                CHECK(entries[i].len <= MPOS_TLV_DOL_MAX_ELEM_LEN && entries[i].tag != 0);
                sum += entries[i].len;
            }
            CHECK(sum == total);
        }
    } else {
        CHECK(r == r2);
    }

    /* The reference data, when the entries are all known. */
    struct dol_ctx c = {data, size};
    int have_ref = r2 == MPOS_OK && r == MPOS_OK && total2 <= sizeof(ref);
    int ref_err = MPOS_OK;
    if (have_ref) {
        size_t pos = 0;
        for (size_t i = 0; i < count && ref_err == MPOS_OK; i++) {
            const uint8_t *v = NULL;
            size_t vlen = 0;
            enum mpos_tlv_format f = MPOS_TLV_FMT_B;
            if (!entries[i].constructed) {
                ref_err = dol_value(&c, entries[i].tag, &v, &vlen, &f);
            }
            dol_reference(ref + pos, entries[i].len, v, vlen, f);
            pos += entries[i].len;
        }
    }

    size_t len = 5;
    memset(out, 0xA5, sizeof(out));
    r = mpos_tlv_dol_build(data, size, dol_lookup, &c, out, sizeof(out), &len);
    if (r2 != MPOS_OK) {
        CHECK(r == r2 && len == 5);
    } else if (total2 > sizeof(out) - 5) {
        CHECK(r == MPOS_ERR_LENGTH && len == 5);
    } else if (r == MPOS_OK) {
        CHECK(len == 5 + total2);
        CHECK(!have_ref || (ref_err == MPOS_OK && memcmp(out + 5, ref, total2) == 0));
    } else {
        CHECK(r == MPOS_ERR_VERIFY && len == 5);
        CHECK(!have_ref || ref_err == MPOS_ERR_VERIFY);
        for (size_t i = 5; i < 5 + total2; i++) {
            CHECK(out[i] == 0x00 || out[i] == 0xA5); /* wiped or never written */
        }
    }
}

/* The tag's size by the rules of Book 3 Annex B1 as the encoder takes them, 0 if invalid. */
static size_t reference_tag_len(uint32_t tag)
{
    uint8_t b[3] = {(uint8_t)(tag >> 16), (uint8_t)(tag >> 8), (uint8_t)tag};
    if (tag == 0 || tag > 0xFFFFFFu) {
        return 0;
    }
    if (tag <= 0xFF) {
        return (b[2] & 0x1F) != 0x1F ? 1 : 0;
    }
    if (tag <= 0xFFFF) {
        return ((b[1] & 0x1F) == 0x1F && b[2] < 0x80) ? 2 : 0;
    }
    return ((b[0] & 0x1F) == 0x1F && b[1] > 0x80 && b[2] < 0x80) ? 3 : 0;
}

/* Puts (or begins, fills and ends) one object with a tag from the input and a length near a
 * length-field boundary, and reads it back. */
static void fuzz_put(const uint8_t *data, size_t size)
{
    static const size_t boundaries[] = {0, 127, 128, 255, 256, 65535, 65536};
    static uint8_t buf[65536 + 16], value[65536 + 8];
    if (size < 6) {
        return;
    }
    uint32_t tag = 0;
    size_t tn_in = 1 + data[0] % 3;
    for (size_t i = 0; i < tn_in; i++) {
        tag = (tag << 8) | data[1 + i];
    }
    size_t vlen = boundaries[data[4] % 7] + data[5] % 5;
    vlen = vlen >= 2 ? vlen - 2 : 0;
    static int filled;
    if (!filled) {
        for (size_t i = 0; i < sizeof(value); i++) {
            value[i] = (uint8_t)(i * 31 + 7);
        }
        filled = 1;
    }
    size_t tn = reference_tag_len(tag);
    size_t hl = vlen < 0x80 ? 1 : vlen < 0x100 ? 2 : vlen < 0x10000 ? 3 : 4;
    size_t need = tn + hl + vlen;
    size_t cap = need + (data[0] >> 2) % 3;
    cap = cap > 0 ? cap - 1 : 0; /* one short, exact or one spare */
    int constructed = tn != 0 && ((tag >> (8 * (tn - 1))) & 0x20u) != 0;
    int use_begin = constructed && (data[0] & 0x40u) != 0;
    size_t len = 0;
    int r;
    if (use_begin) {
        mpos_tlv_mark m;
        r = mpos_tlv_begin(buf, cap, &len, tag, &m);
        if (r == MPOS_OK) {
            if (vlen > cap - len) {
                return; /* the content itself does not fit: nothing left to test */
            }
            memcpy(buf + len, value, vlen);
            len += vlen;
            r = mpos_tlv_end(buf, cap, &len, &m);
        }
    } else {
        r = mpos_tlv_put(buf, cap, &len, tag, value, vlen);
    }
    if (tn == 0) {
        CHECK(r == MPOS_ERR_ARG && len == 0);
        return;
    }
    if (cap < need) {
        CHECK(r == MPOS_ERR_LENGTH);
        return;
    }
    CHECK(r == MPOS_OK && len == need);
    mpos_tlv_iter it;
    mpos_tlv o;
    mpos_tlv_iter_init(&it, buf, len, MPOS_TLV_STRICT);
    CHECK(mpos_tlv_next(&it, &o) == MPOS_OK && !mpos_tlv_more(&it));
    CHECK(o.tag == tag && o.len == vlen && o.raw_len == len && o.constructed == constructed);
    CHECK(vlen == 0 || memcmp(o.value, value, vlen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const unsigned flags = flag_sets[data[0] & 3u];
    fuzz_put(data, size);
    data++;
    size--;

    /* Validator. */
    int valid = mpos_tlv_validate(data, size, flags);
    CHECK(valid == MPOS_OK || valid == MPOS_ERR_FORMAT);

    /* The fuzzer's own depth-first walk agrees with the validator. */
    struct walker w;
    size_t depth = 0, all_count = 0;
    int k;
    mpos_tlv o;
    walker_init(&w, data, size, flags);
    while ((k = walker_next(&w, &o, &depth)) == 1) {
        check_bounds(&o, data, size);
        CHECK(depth < MPOS_TLV_MAX_DEPTH);
        all_count++;
    }
    CHECK((k == 0) == (valid == MPOS_OK));

    /* One level: every object in bounds; the walk ends cleanly or in MPOS_ERR_FORMAT. */
    mpos_tlv_iter it;
    mpos_tlv first;
    int r = MPOS_OK;
    size_t top_count = 0;
    memset(&first, 0, sizeof(first));
    mpos_tlv_iter_init(&it, data, size, flags);
    while (mpos_tlv_more(&it)) {
        r = mpos_tlv_next(&it, &o);
        if (r != MPOS_OK) {
            CHECK(r == MPOS_ERR_FORMAT && o.value == NULL);
            CHECK(mpos_tlv_next(&it, &o) == r); /* sticky */
            break;
        }
        check_bounds(&o, data, size);
        if (top_count++ == 0) {
            first = o;
        }
    }
    if (r == MPOS_OK) {
        CHECK(mpos_tlv_next(&it, &o) == MPOS_ERR_LENGTH);
    }
    CHECK(valid != MPOS_OK || (r == MPOS_OK && all_count >= top_count));

    /* Finds: the first top-level object is found at once; on valid input nothing fails. */
    int found = 0;
    if (top_count > 0) {
        CHECK(mpos_tlv_find(data, size, flags, first.tag, &o, &found) == MPOS_OK && found);
        CHECK(o.raw == first.raw);
        CHECK(mpos_tlv_find_deep(data, size, flags, first.tag, &o, &found) == MPOS_OK && found);
        CHECK(o.raw == first.raw);
    }
    static const uint32_t tags[] = {0x5A, 0x57, 0x9F02, 0xBF0C, 0xDF8101, 0x70, 0x9F38};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        r = mpos_tlv_find_deep(data, size, flags, tags[i], &o, &found);
        CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
        CHECK(valid != MPOS_OK || r == MPOS_OK);
        if (found) {
            CHECK(r == MPOS_OK && o.tag == tags[i]);
            check_bounds(&o, data, size);
        } else if (r == MPOS_OK) {
            CHECK(o.value == NULL);
        }
        r = mpos_tlv_find(data, size, flags, tags[i], &o, &found);
        CHECK(r == MPOS_OK || r == MPOS_ERR_FORMAT);
        if (found) {
            check_bounds(&o, data, size);
        }
    }

    /* The whole input as a DOL. */
    fuzz_dol(data, size);

    /* Round trip through the encoder. */
    if (valid == MPOS_OK) {
        uint8_t *out = malloc(size ? size : 1);
        uint8_t *again = malloc(size ? size : 1);
        size_t out_len = 0, again_len = 0, short_len = 0;
        CHECK(out != NULL && again != NULL);
        r = reencode(data, size, flags, out, size, &out_len);
        if (r != MPOS_ERR_UNSUPPORTED) {
            CHECK(r == MPOS_OK && out_len <= size);
            CHECK(mpos_tlv_validate(out, out_len, MPOS_TLV_STRICT) == MPOS_OK);
            check_same_objects(data, size, flags, out, out_len, MPOS_TLV_STRICT);
            CHECK(reencode(out, out_len, MPOS_TLV_STRICT, again, size, &again_len) == MPOS_OK);
            CHECK(again_len == out_len && (out_len == 0 || memcmp(again, out, out_len) == 0));
            if (out_len > 0) {
                r = reencode(out, out_len, MPOS_TLV_STRICT, again, out_len - 1, &short_len);
                CHECK(r == MPOS_ERR_LENGTH);
            }
            if (flags == MPOS_TLV_STRICT) {
                CHECK(out_len == size && memcmp(out, data, size) == 0); /* canonical already */
            }
        }
        free(out);
        free(again);
    }
    return 0;
}
