/* openmpos: BER-TLV codec for EMV data (EMV 4.3 Book 3 Annex B; the ISO/IEC 8825-1 BER
 * subset EMV uses) and EMV Data Object Lists (Book 3 5.4).
 *
 * Nothing allocates and nothing recurses: decoded objects point into the caller's buffer,
 * nested walks use a fixed stack of MPOS_TLV_MAX_DEPTH levels, the encoder writes into a
 * caller buffer.
 *
 * What the decoder takes (Annex B; ISO/IEC 8825-1 8.1.2, 8.1.3):
 * - Tags of 1 to 3 bytes, kept as a big-endian integer (0x5A, 0x9F02, 0xBF0C, 0xDF8101).
 *   A first byte with low bits 11111 is followed by subsequent bytes, each with bit 8 set when
 *   another follows. A tag that needs a 4th byte is refused. EMV's 9F01..9F1E are accepted
 *   although X.690 would code those tag numbers in one byte; tags compare as bytes.
 * - Lengths in short form (00..7F) and long form 81 xx, 82 xx xx, 83 xx xx xx. Indefinite
 *   (80) and 84 or more are refused; EMV uses at most 82, 83 is taken for our own messages.
 * - Constructed when bit 6 of the first tag byte is set.
 * - A value that runs past the end of its buffer (or of its enclosing template) is refused.
 *
 * Flags choose the strictness; use one of the two presets:
 * - MPOS_TLV_CARD for data from a card. 00 bytes before, between and after objects are
 *   skipped (Book 3 Annex B; Specification Update 69). Non-minimal long-form lengths
 *   (81 05, 82 00 10) are accepted: BER allows them and cards in the field send them.
 *   FF is not padding here (ISO/IEC 7816-4 allows FF padding, but EMV kernels use FFxx tags
 *   such as FF8101); add MPOS_TLV_PAD_FF only for ISO 7816 file data that needs it.
 * - MPOS_TLV_STRICT for data we encode ourselves (the sealed transaction request, stored
 *   records): exactly what mpos_tlv_put produces and nothing else, so no message has two
 *   encodings. No padding (a 00 tag byte is an error), minimal lengths only, and a first
 *   subsequent tag byte of 80 is refused (X.690 8.1.2.4.2 c).
 *
 * Every function returns 0 or a negative enum mpos_err: MPOS_ERR_FORMAT for malformed input,
 * MPOS_ERR_LENGTH when an output does not fit, MPOS_ERR_ARG for NULL pointers, unknown flags
 * or a tag that is not a valid 1..3 byte tag. No function reads outside the bytes it is given.
 */
#ifndef MPOS_TLV_H
#define MPOS_TLV_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_TLV_MAX_TAG_LEN    3         /* bytes of a tag */
#define MPOS_TLV_MAX_LEN_LEN    4         /* bytes of a length field: 83 xx xx xx */
#define MPOS_TLV_MAX_HEADER_LEN 7         /* tag + length field */
#define MPOS_TLV_MAX_VALUE_LEN  0xFFFFFFu /* the longest value a 83 length can code */
/* Objects nest at most this many levels: top-level objects are level 1, an object inside a
 * level-n template is level n+1 (6F > A5 > BF0C > 61 > 4F is 5 levels). */
#define MPOS_TLV_MAX_DEPTH 8
/* Entries of a DOL array that holds any DOL a card can send: a DOL value fits in a 254-byte
 * record and every entry takes at least 2 bytes, but no real DOL comes near; 64 is generous. */
#define MPOS_TLV_DOL_MAX_ENTRIES 64
/* The longest data element a DOL entry may ask for (its length is one byte, Book 3 5.4). */
#define MPOS_TLV_DOL_MAX_ELEM_LEN 0x7F

/* Decoder flags. */
#define MPOS_TLV_PAD_00      0x01u /* skip 00 bytes before, between and after objects */
#define MPOS_TLV_PAD_FF      0x02u /* skip FF bytes too (ISO/IEC 7816-4; not for EMV data) */
#define MPOS_TLV_CANONICAL   0x04u /* minimal lengths only; no first subsequent tag byte 80 */
#define MPOS_TLV_CARD        (MPOS_TLV_PAD_00)
#define MPOS_TLV_STRICT      (MPOS_TLV_CANONICAL)
#define MPOS_TLV_FLAGS_KNOWN (MPOS_TLV_PAD_00 | MPOS_TLV_PAD_FF | MPOS_TLV_CANONICAL)

/* One decoded object. value and raw point into the caller's buffer, which must outlive it. */
typedef struct mpos_tlv {
    uint32_t tag;         /* tag bytes, big-endian: 0x5A, 0x9F02, 0xDF8101 */
    int constructed;      /* 1 when bit 6 of the first tag byte is set (a template) */
    const uint8_t *value; /* the value field */
    size_t len;           /* its length */
    const uint8_t *raw;   /* the first tag byte */
    size_t raw_len;       /* tag + length field + value */
} mpos_tlv;

/* A cursor over the objects of one level of a buffer. Plain data: copy it to keep a position. */
typedef struct mpos_tlv_iter {
    const uint8_t *p; /* next unread byte */
    size_t left;      /* bytes from p to the end */
    unsigned flags;
    int err; /* the error that stopped the cursor, sticky; 0 while it is good */
} mpos_tlv_iter;

/* Starts a cursor over len bytes at buf (buf may be NULL when len is 0). A NULL buf with a
 * nonzero len or unknown flags make the cursor fail with MPOS_ERR_ARG on first use. To walk a
 * template's content, start a second cursor over obj.value, obj.len. */
void mpos_tlv_iter_init(mpos_tlv_iter *it, const uint8_t *buf, size_t len, unsigned flags);

/* 1 if mpos_tlv_next has something to report: another object (after padding), or an error.
 * 0 at the end of the buffer. */
int mpos_tlv_more(const mpos_tlv_iter *it);

/* Decodes the next object of this level into obj and moves past it. MPOS_ERR_FORMAT when the
 * object is malformed (the cursor then stays on it and keeps returning the error),
 * MPOS_ERR_LENGTH when nothing is left. obj is zeroed on every error. Use:
 *     while (mpos_tlv_more(&it)) { if ((r = mpos_tlv_next(&it, &obj)) != 0) goto exit; ... } */
int mpos_tlv_next(mpos_tlv_iter *it, mpos_tlv *obj) MPOS_MUST_CHECK;

/* Looks for the first object with this tag among the top-level objects of buf (no descent).
 * *found is 1 and obj filled when it is there, else *found is 0 and obj zeroed. Only the
 * objects up to the one found are checked; MPOS_ERR_FORMAT if one of those is malformed. */
int mpos_tlv_find(const uint8_t *buf, size_t len, unsigned flags, uint32_t tag, mpos_tlv *obj,
                  int *found) MPOS_MUST_CHECK;

/* Same, but also inside templates, depth first in buffer order (the first occurrence as the
 * bytes run), at most MPOS_TLV_MAX_DEPTH levels. A template itself can be the match. Deeper
 * nesting met before the match is MPOS_ERR_FORMAT. */
int mpos_tlv_find_deep(const uint8_t *buf, size_t len, unsigned flags, uint32_t tag, mpos_tlv *obj,
                       int *found) MPOS_MUST_CHECK;

/* 0 if every object of buf, and of every template inside it, is well formed, each template's
 * content ends exactly at its end, and nothing nests deeper than MPOS_TLV_MAX_DEPTH.
 * An empty buffer (or one of padding only) is valid. */
int mpos_tlv_validate(const uint8_t *buf, size_t len, unsigned flags) MPOS_MUST_CHECK;

/* Appends tag, the minimal length field and value_len bytes of value at buf + *len (buf has
 * cap bytes) and adds the bytes written to *len. value may be NULL when value_len is 0 and may
 * lie inside buf. MPOS_ERR_LENGTH, with nothing written, when it does not fit or value_len is
 * over MPOS_TLV_MAX_VALUE_LEN; MPOS_ERR_ARG for an invalid tag or *len > cap. */
int mpos_tlv_put(uint8_t *buf, size_t cap, size_t *len, uint32_t tag, const uint8_t *value,
                 size_t value_len) MPOS_MUST_CHECK;

/* Where a template opened with mpos_tlv_begin starts; filled in by begin, used by end. */
typedef struct mpos_tlv_mark {
    size_t tag_pos;   /* offset of the first tag byte */
    size_t value_pos; /* offset of the first content byte */
} mpos_tlv_mark;

/* Opens a template (the tag must be constructed, else MPOS_ERR_ARG): writes the tag and a
 * one-byte length placeholder at buf + *len. Append the content with mpos_tlv_put and nested
 * begin/end pairs, then close it with mpos_tlv_end; pairs nest last-opened, first-closed. */
int mpos_tlv_begin(uint8_t *buf, size_t cap, size_t *len, uint32_t tag,
                   mpos_tlv_mark *mark) MPOS_MUST_CHECK;

/* Closes the template of mark: writes the minimal length of the content appended since begin,
 * moving the content right when the length needs more than the placeholder byte.
 * MPOS_ERR_LENGTH, with the buffer unchanged, when that does not fit in cap; MPOS_ERR_ARG
 * for a mark that does not match *len. */
int mpos_tlv_end(uint8_t *buf, size_t cap, size_t *len, const mpos_tlv_mark *mark) MPOS_MUST_CHECK;

/* One entry of a Data Object List: a tag and the number of bytes its data takes. */
typedef struct mpos_tlv_dol_entry {
    uint32_t tag;
    size_t len;
    int constructed; /* a template tag: its data is always zeros (Book 3 5.4 a) */
} mpos_tlv_dol_entry;

/* Parses a DOL (PDOL, CDOL1, CDOL2, DDOL, TDOL: tag + one-byte length pairs, no values,
 * no padding; Book 3 5.4). Fills up to max_entries entries (entries may be NULL to count
 * only), sets *count and, if data_len is not NULL, *data_len = the sum of the lengths, which
 * is the size of the data mpos_tlv_dol_build makes. MPOS_ERR_FORMAT for a malformed tag, a
 * missing length, or a length byte of 80 or more (EMV codes it in one byte, BER would read
 * 8x as a long form: both readings are refused); else MPOS_ERR_LENGTH for more than
 * max_entries, with the first max_entries filled and *count, *data_len those of the whole DOL. */
int mpos_tlv_dol_parse(const uint8_t *dol, size_t dol_len, mpos_tlv_dol_entry *entries,
                       size_t max_entries, size_t *count, size_t *data_len) MPOS_MUST_CHECK;

/* The format of a data element (EMV 4.3 Book 3 4.3), as far as the DOL rules care. */
enum mpos_tlv_format {
    MPOS_TLV_FMT_B = 0, /* b, a, an, ans: keep the leftmost bytes, pad right with 00 */
    MPOS_TLV_FMT_N = 1, /* n: keep the rightmost bytes, pad left with 00 */
    MPOS_TLV_FMT_CN = 2 /* cn: keep the leftmost bytes, pad right with FF */
};

/* Supplies the terminal's value for a DOL tag. Called with *value NULL, *value_len 0 and
 * *format MPOS_TLV_FMT_B. To supply a value, point *value at it (it must stay valid until the
 * callback is next called or the build returns), set *value_len and *format. Leave *value
 * NULL when the tag is unknown, absent, or not applicable to this transaction: the field is
 * then all zeros (Book 3 5.4 a, b, e). Return 0, or a negative enum mpos_err to stop the build
 * (that value is returned). */
typedef int (*mpos_tlv_dol_lookup_fn)(void *ctx, uint32_t tag, const uint8_t **value,
                                      size_t *value_len, enum mpos_tlv_format *format);

/* Builds the data a DOL asks for (the PDOL data of GET PROCESSING OPTIONS, the CDOL1/CDOL2
 * data of GENERATE AC, the DDOL data of INTERNAL AUTHENTICATE) and appends it at out + *len
 * (out has cap bytes), adding its size to *len. For each entry, in order: a template tag gets
 * zeros without a lookup (5.4 a); otherwise lookup's value, truncated or padded to the entry's
 * length by its format (5.4 c, d). The DOL is parsed in full first: MPOS_ERR_FORMAT or
 * MPOS_ERR_LENGTH (data larger than the room left) return before anything is written or any
 * lookup is made. On a lookup error or a bad format from it, the bytes written are wiped. */
int mpos_tlv_dol_build(const uint8_t *dol, size_t dol_len, mpos_tlv_dol_lookup_fn lookup, void *ctx,
                       uint8_t *out, size_t cap, size_t *len) MPOS_MUST_CHECK;

#endif
