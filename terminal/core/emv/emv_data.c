/* openmpos terminal core: the card data store, data object formats (EMV 4.3 Book 3 Annex A),
 * DOL data (Book 3 5.4) and the small conversions the kernel needs. */
#include <string.h>

#include "emv_internal.h"
#include "mpos/tlv.h"
#include "mpos/util.h"

/* Lengths of the card data objects the kernel uses (Book 3 Annex A, Table 33; Book 2 for the
 * certificate objects). An object outside its range ends the transaction. */
static const struct {
    uint32_t tag;
    uint16_t min, max;
} formats[] = {
    {0x4F, 5, 16},  {0x50, 1, 16},     {0x57, 8, 19},   {0x5A, 6, 10},    {0x5F20, 2, 26},
    {0x5F24, 3, 3}, {0x5F25, 3, 3},    {0x5F28, 2, 2},  {0x5F2D, 2, 8},   {0x5F30, 2, 2},
    {0x5F34, 1, 1}, {0x82, 2, 2},      {0x84, 5, 16},   {0x87, 1, 1},     {0x88, 1, 1},
    {0x8C, 2, 252}, {0x8D, 2, 252},    {0x8E, 8, 252},  {0x8F, 1, 1},     {0x90, 64, 248},
    {0x92, 1, 248}, {0x94, 4, 252},    {0x9F07, 2, 2},  {0x9F08, 2, 2},   {0x9F0D, 5, 5},
    {0x9F0E, 5, 5}, {0x9F0F, 5, 5},    {0x9F10, 1, 32}, {0x9F11, 1, 1},   {0x9F12, 1, 16},
    {0x9F13, 2, 2}, {0x9F14, 1, 1},    {0x9F17, 1, 1},  {0x9F23, 1, 1},   {0x9F26, 8, 8},
    {0x9F27, 1, 1}, {0x9F2D, 64, 248}, {0x9F2E, 1, 3},  {0x9F2F, 1, 248}, {0x9F32, 1, 3},
    {0x9F36, 2, 2}, {0x9F38, 2, 252},  {0x9F42, 2, 2},  {0x9F44, 1, 1},
};

static int format_ok(uint32_t tag, size_t len)
{
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (formats[i].tag == tag) {
            return len >= formats[i].min && len <= formats[i].max;
        }
    }
    return 1;
}

static const uint8_t source_order[] = {EMV_SRC_RECORD, EMV_SRC_GPO, EMV_SRC_FCI, EMV_SRC_GETDATA};

int emv_card_find(const mpos_emv_ctx *k, uint32_t tag, const uint8_t **value, size_t *len)
{
    for (size_t s = 0; s < sizeof(source_order); s++) {
        for (size_t i = 0; i < k->obj_count; i++) {
            const struct mpos_emv_obj *o = &k->objs[i];
            if (o->tag == tag && o->source == source_order[s]) {
                *value = &k->store[o->off];
                *len = o->len;
                return 1;
            }
        }
    }
    *value = NULL;
    *len = 0;
    return 0;
}

static int is_duplicate(const mpos_emv_ctx *k, uint32_t tag)
{
    for (size_t i = 0; i < k->obj_count; i++) {
        if (k->objs[i].tag == tag &&
            (k->objs[i].source == EMV_SRC_RECORD || k->objs[i].source == EMV_SRC_GPO)) {
            return 1;
        }
    }
    return 0;
}

static int store_one(mpos_emv_ctx *k, const mpos_tlv *obj, enum emv_source source, int check_dup)
{
    if (!format_ok(obj->tag, obj->len)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    /* Book 3 10.2: a primitive data object the card already returned ends the transaction. */
    if (check_dup && is_duplicate(k, obj->tag)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_DUPLICATE);
    }
    if (k->obj_count >= MPOS_EMV_STORE_OBJS || obj->len > MPOS_EMV_STORE_LEN - k->store_len) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_TOO_LARGE);
    }
    struct mpos_emv_obj *o = &k->objs[k->obj_count++];
    o->tag = obj->tag;
    o->off = (uint16_t)k->store_len;
    o->len = (uint16_t)obj->len;
    o->source = (uint8_t)source;
    if (obj->len > 0) {
        memcpy(&k->store[k->store_len], obj->value, obj->len);
    }
    k->store_len += obj->len;
    return 0;
}

int emv_store_tlv(mpos_emv_ctx *k, const uint8_t *buf, size_t len, enum emv_source source,
                  int check_dup)
{
    /* Depth-first walk with the library's depth bound, no recursion. */
    mpos_tlv_iter stack[MPOS_TLV_MAX_DEPTH];
    size_t top = 0;
    mpos_tlv obj;
    int r;
    mpos_tlv_iter_init(&stack[0], buf, len, MPOS_TLV_CARD);
    for (;;) {
        if (!mpos_tlv_more(&stack[top])) {
            if (top == 0) {
                return 0;
            }
            top--;
            continue;
        }
        if (mpos_tlv_next(&stack[top], &obj) != MPOS_OK) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        if (obj.constructed) {
            if (top + 1 >= MPOS_TLV_MAX_DEPTH) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
            }
            top++;
            mpos_tlv_iter_init(&stack[top], obj.value, obj.len, MPOS_TLV_CARD);
            continue;
        }
        if ((r = store_one(k, &obj, source, check_dup)) != 0) {
            return r;
        }
    }
}

void emv_store_drop(mpos_emv_ctx *k, enum emv_source source)
{
    size_t keep = 0, used = 0;
    for (size_t i = 0; i < k->obj_count; i++) {
        struct mpos_emv_obj o = k->objs[i];
        if (o.source == source) {
            continue;
        }
        memmove(&k->store[used], &k->store[o.off], o.len);
        o.off = (uint16_t)used;
        used += o.len;
        k->objs[keep++] = o;
    }
    mpos_cleanse(&k->store[used], MPOS_EMV_STORE_LEN - used);
    mpos_cleanse(&k->objs[keep], (MPOS_EMV_STORE_OBJS - keep) * sizeof(k->objs[0]));
    k->obj_count = keep;
    k->store_len = used;
}

/* ---- terminal data and DOL data */

/* Length of a NUL-terminated string kept in a buffer of cap bytes (C11 has no strnlen). */
static size_t bounded_len(const char *s, size_t cap)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0') {
        n++;
    }
    return n;
}

static const uint8_t ec_indicator[1] = {0x00}; /* '9F7A' PBOC electronic cash: not supported */

int emv_lookup(const mpos_emv_ctx *k, uint32_t tag, const uint8_t **value, size_t *value_len,
               enum mpos_tlv_format *format)
{
    const mpos_emv_params *p = k->params;
    const mpos_emv_aid_param *ap = &p->aids[k->param_index];
    const struct mpos_emv_ac *ac = k->gac2.present ? &k->gac2 : &k->gac1;
    const uint8_t *v = NULL;
    size_t n = 0;
    enum mpos_tlv_format f = MPOS_TLV_FMT_B;

    switch (tag) {
    case 0x9F02:
        v = k->amount;
        n = 6;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F03:
        v = k->amount_other;
        n = 6;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F1A:
        v = p->terminal_country;
        n = 2;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x5F2A:
        v = p->currency;
        n = 2;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x5F36:
        v = k->currency_exp;
        n = 1;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9A:
        v = k->date;
        n = 3;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F21:
        v = k->time;
        n = 3;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9C:
        v = &k->txn.type;
        n = 1;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F37:
        v = k->un;
        n = 4;
        break;
    case 0x95:
        v = k->tvr;
        n = 5;
        break;
    case 0x9B:
        v = k->tsi;
        n = 2;
        break;
    case 0x9F34:
        v = k->cvm_results;
        n = 3;
        break;
    case 0x9F35:
        v = &p->terminal_type;
        n = 1;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F33:
        v = p->terminal_caps;
        n = 3;
        break;
    case 0x9F40:
        v = p->additional_caps;
        n = 5;
        break;
    case 0x9F09:
        v = ap->app_version;
        n = 2;
        break;
    case 0x9F15:
        v = p->mcc;
        n = 2;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F41:
        v = k->sequence;
        n = 4;
        f = MPOS_TLV_FMT_N;
        break;
    case 0x9F1B:
        v = k->floor_limit;
        n = 4;
        break;
    case 0x9F1C:
        v = (const uint8_t *)p->terminal_id;
        n = bounded_len(p->terminal_id, sizeof(p->terminal_id));
        break;
    case 0x9F16:
        v = (const uint8_t *)p->merchant_id;
        n = bounded_len(p->merchant_id, sizeof(p->merchant_id));
        break;
    case 0x9F1E:
        v = (const uint8_t *)p->ifd_serial;
        n = bounded_len(p->ifd_serial, sizeof(p->ifd_serial));
        break;
    case 0x8A:
        v = k->arc;
        n = 2;
        break;
    case 0x91:
        v = k->iad91;
        n = k->iad91_len;
        break;
    case 0x9F7A:
        v = ec_indicator;
        n = 1;
        break;
    case 0x9F26:
        if (ac->present) {
            v = ac->ac;
            n = 8;
        }
        break;
    case 0x9F27:
        if (ac->present) {
            v = &ac->cid;
            n = 1;
        }
        break;
    case 0x9F36:
        if (ac->present) {
            v = ac->atc;
            n = 2;
        } else {
            (void)emv_card_find(k, tag, &v, &n);
        }
        break;
    case 0x9F10:
        if (ac->present) {
            v = ac->iad;
            n = ac->iad_len;
        } else {
            (void)emv_card_find(k, tag, &v, &n);
        }
        break;
    default:
        /* Book 3 5.4: data the card itself gave may be asked for. */
        (void)emv_card_find(k, tag, &v, &n);
        break;
    }
    if (v == NULL || n == 0) {
        return 0;
    }
    *value = v;
    *value_len = n;
    *format = f;
    return 1;
}

static int dol_lookup(void *ctx, uint32_t tag, const uint8_t **value, size_t *value_len,
                      enum mpos_tlv_format *format)
{
    /* Unknown or absent: zeros (Book 3 5.4 b, e). */
    (void)emv_lookup(ctx, tag, value, value_len, format);
    return 0;
}

int emv_dol_build(mpos_emv_ctx *k, const uint8_t *dol, size_t dol_len, uint8_t *out, size_t cap,
                  size_t *out_len)
{
    *out_len = 0;
    return mpos_tlv_dol_build(dol, dol_len, dol_lookup, k, out, cap, out_len);
}

/* ---- conversions */

int emv_is_bcd(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((p[i] >> 4) > 9 || (p[i] & 0x0F) > 9) {
            return 0;
        }
    }
    return 1;
}

int emv_pan_digits(const uint8_t *v, size_t len, char pan[MPOS_EMV_PAN_BUF_LEN])
{
    size_t n = 0;
    int padding = 0;
    memset(pan, 0, MPOS_EMV_PAN_BUF_LEN);
    for (size_t i = 0; i < 2 * len; i++) {
        unsigned d = (i % 2 == 0) ? (unsigned)(v[i / 2] >> 4) : (unsigned)(v[i / 2] & 0x0F);
        if (d == 0x0F) {
            padding = 1;
            continue;
        }
        /* cn: digits, then only F padding (Book 3 Annex A, format cn). */
        if (d > 9 || padding || n >= MPOS_EMV_PAN_BUF_LEN - 1) {
            memset(pan, 0, MPOS_EMV_PAN_BUF_LEN);
            return MPOS_ERR_FORMAT;
        }
        pan[n++] = (char)('0' + d);
    }
    if (n < 12) {
        memset(pan, 0, MPOS_EMV_PAN_BUF_LEN);
        return MPOS_ERR_FORMAT;
    }
    return 0;
}

uint32_t emv_date_value(const uint8_t d[3])
{
    if (!emv_is_bcd(d, 3)) {
        return 0;
    }
    uint32_t yy = (uint32_t)(d[0] >> 4) * 10u + (d[0] & 0x0Fu);
    uint32_t mm = (uint32_t)(d[1] >> 4) * 10u + (d[1] & 0x0Fu);
    uint32_t dd = (uint32_t)(d[2] >> 4) * 10u + (d[2] & 0x0Fu);
    if (mm < 1 || mm > 12 || dd < 1 || dd > 31) {
        return 0;
    }
    uint32_t year = yy < 50 ? 2000u + yy : 1900u + yy;
    return year * 10000u + mm * 100u + dd;
}
