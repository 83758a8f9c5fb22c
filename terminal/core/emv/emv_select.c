/* openmpos terminal core: application selection (EMV 4.3 Book 1 section 12). */
#include <string.h>

#include "emv_internal.h"
#include "mpos/tlv.h"
#include "mpos/util.h"

static const uint8_t pse_name[] = "1PAY.SYS.DDF01";
#define PSE_NAME_LEN        (sizeof(pse_name) - 1)
#define MAX_NEXT_OCCURRENCE 8 /* SELECT next rounds for one partial AID */

/* Finds a tag among the objects of one level. 1 found, 0 absent, -1 malformed. */
static int find_in(const uint8_t *buf, size_t len, uint32_t tag, mpos_tlv *obj)
{
    int found = 0;
    if (mpos_tlv_find(buf, len, MPOS_TLV_CARD, tag, obj, &found) != MPOS_OK) {
        return -1;
    }
    return found;
}

/* The FCI of a SELECT response (Book 1 11.3.4): a well-formed 6F template, nothing after it,
 * with a DF name '84' and a proprietary template 'A5'. 0 with df and a5 filled, or an
 * outcome. */
static int parse_fci(mpos_emv_ctx *k, mpos_tlv *df, mpos_tlv *a5)
{
    mpos_tlv fci;
    mpos_tlv_iter it;
    if (mpos_tlv_validate(k->rapdu, k->rapdu_len, MPOS_TLV_CARD) != MPOS_OK) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    mpos_tlv_iter_init(&it, k->rapdu, k->rapdu_len, MPOS_TLV_CARD);
    if (!mpos_tlv_more(&it) || mpos_tlv_next(&it, &fci) != MPOS_OK || fci.tag != 0x6F ||
        mpos_tlv_more(&it)) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
    }
    if (find_in(fci.value, fci.len, 0x84, df) != 1 || find_in(fci.value, fci.len, 0xA5, a5) != 1 ||
        df->len < MPOS_EMV_AID_MIN_LEN || df->len > MPOS_EMV_AID_MAX_LEN || !a5->constructed) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
    }
    return 0;
}

/* The Application Priority Indicator '87' of a template: 1 and the priority (0..15), or 0
 * when the application asks for cardholder confirmation, which this terminal cannot give
 * (Book 1 12.4: it is then not selected). */
static int priority_of(const uint8_t *tmpl, size_t len, uint8_t *priority)
{
    mpos_tlv api;
    *priority = 0;
    if (find_in(tmpl, len, 0x87, &api) == 1 && api.len == 1) {
        if (api.value[0] & 0x80) {
            return 0;
        }
        *priority = api.value[0] & 0x0F;
    }
    return 1;
}

static void add_candidate(mpos_emv_ctx *k, const uint8_t *aid, size_t aid_len, uint8_t priority,
                          size_t param)
{
    for (size_t i = 0; i < k->cand_count; i++) {
        if (k->cand[i].aid_len == aid_len && memcmp(k->cand[i].aid, aid, aid_len) == 0) {
            return;
        }
    }
    if (k->cand_count >= MPOS_EMV_MAX_CANDIDATES) {
        return;
    }
    struct mpos_emv_candidate *c = &k->cand[k->cand_count++];
    memcpy(c->aid, aid, aid_len);
    c->aid_len = (uint8_t)aid_len;
    c->priority = priority;
    c->param = (uint8_t)param;
}

/* Index of the terminal AID the card AID matches (Book 1 12.3.1), or -1. */
static int match_aid(const mpos_emv_params *p, const uint8_t *aid, size_t aid_len)
{
    for (size_t i = 0; i < p->aid_count; i++) {
        const mpos_emv_aid_param *a = &p->aids[i];
        if (aid_len == a->aid_len && memcmp(aid, a->aid, aid_len) == 0) {
            return (int)i;
        }
        if (a->partial && aid_len > a->aid_len && memcmp(aid, a->aid, a->aid_len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Book 1 12.3.2: the PSE and its directory. 0 (candidates may be empty: the caller goes on
 * with the list of AIDs) or an outcome. */
static int from_pse(mpos_emv_ctx *k)
{
    mpos_tlv df, a5, sfi_obj, rec, entry, adf;
    int r;
    size_t n = emv_apdu_build(k, 0x00, 0xA4, 0x04, 0x00, pse_name, PSE_NAME_LEN, 1);
    if ((r = emv_transmit(k, n)) != 0) {
        return r;
    }
    if (k->sw == 0x6A81) {
        return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_CARD_BLOCKED);
    }
    if (k->sw != EMV_SW_OK) {
        return 0; /* no PSE, or blocked: list of AIDs */
    }
    if ((r = parse_fci(k, &df, &a5)) != 0) {
        return r;
    }
    if (find_in(a5.value, a5.len, 0x88, &sfi_obj) != 1 || sfi_obj.len != 1 ||
        sfi_obj.value[0] < 1 || sfi_obj.value[0] > 30) {
        return 0; /* no usable directory SFI: list of AIDs */
    }
    uint8_t sfi = sfi_obj.value[0];
    for (uint8_t recno = 1; recno <= MPOS_EMV_MAX_PSE_RECORDS; recno++) {
        n = emv_apdu_build(k, 0x00, 0xB2, recno, (uint8_t)(sfi << 3 | 0x04), NULL, 0, 1);
        if ((r = emv_transmit(k, n)) != 0) {
            return r;
        }
        if (k->sw == 0x6A83) {
            break; /* record not found: end of the directory */
        }
        if (k->sw != EMV_SW_OK) {
            k->cand_count = 0;
            return 0;
        }
        /* A directory record is one '70' template of '61' entries (Book 1 12.2.3). */
        mpos_tlv_iter it;
        if (mpos_tlv_validate(k->rapdu, k->rapdu_len, MPOS_TLV_CARD) != MPOS_OK) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        mpos_tlv_iter_init(&it, k->rapdu, k->rapdu_len, MPOS_TLV_CARD);
        if (!mpos_tlv_more(&it) || mpos_tlv_next(&it, &rec) != MPOS_OK || rec.tag != 0x70 ||
            mpos_tlv_more(&it)) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        mpos_tlv_iter_init(&it, rec.value, rec.len, MPOS_TLV_CARD);
        while (mpos_tlv_more(&it)) {
            uint8_t prio;
            if (mpos_tlv_next(&it, &entry) != MPOS_OK) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
            }
            if (entry.tag != 0x61) {
                continue;
            }
            /* ADF entries only; DDF entries ('9D') are not followed. */
            if (find_in(entry.value, entry.len, 0x4F, &adf) != 1 ||
                adf.len < MPOS_EMV_AID_MIN_LEN || adf.len > MPOS_EMV_AID_MAX_LEN) {
                continue;
            }
            int m = match_aid(k->params, adf.value, adf.len);
            if (m >= 0 && priority_of(entry.value, entry.len, &prio)) {
                add_candidate(k, adf.value, adf.len, prio, (size_t)m);
            }
        }
    }
    return 0;
}

/* Book 1 12.3.3: the list of AIDs, each selected in turn (with SELECT next for AIDs that
 * allow partial selection). 0 or an outcome. */
static int from_aid_list(mpos_emv_ctx *k)
{
    mpos_tlv df, a5;
    int r;
    for (size_t i = 0; i < k->params->aid_count; i++) {
        const mpos_emv_aid_param *a = &k->params->aids[i];
        uint8_t p2 = 0x00;
        for (int round = 0; round < MAX_NEXT_OCCURRENCE; round++) {
            size_t n = emv_apdu_build(k, 0x00, 0xA4, 0x04, p2, a->aid, a->aid_len, 1);
            if ((r = emv_transmit(k, n)) != 0) {
                return r;
            }
            if (k->sw == 0x6A81) {
                return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_CARD_BLOCKED);
            }
            if (k->sw != EMV_SW_OK && k->sw != 0x6283) {
                break; /* not on the card */
            }
            if ((r = parse_fci(k, &df, &a5)) != 0) {
                return r;
            }
            int exact = df.len == a->aid_len && memcmp(df.value, a->aid, a->aid_len) == 0;
            int partial =
                a->partial && df.len > a->aid_len && memcmp(df.value, a->aid, a->aid_len) == 0;
            uint8_t prio;
            if (k->sw == EMV_SW_OK && (exact || partial) && priority_of(a5.value, a5.len, &prio)) {
                add_candidate(k, df.value, df.len, prio, i);
            }
            if (exact || !partial) {
                break;
            }
            p2 = 0x02; /* next occurrence */
        }
    }
    return 0;
}

int emv_build_candidates(mpos_emv_ctx *k)
{
    int r;
    k->cand_count = 0;
    if ((r = from_pse(k)) != 0) {
        return r;
    }
    /* Book 1 12.3.2: an empty candidate list from the PSE falls back to the list of AIDs. */
    if (k->cand_count == 0 && (r = from_aid_list(k)) != 0) {
        return r;
    }
    if (k->cand_count == 0) {
        return emv_end(k, MPOS_EMV_NOT_ACCEPTED, MPOS_EMV_REASON_NO_APPLICATION);
    }
    return 0;
}

/* The best candidate: lowest nonzero priority first, then those without one, list order. */
static size_t best_candidate(const mpos_emv_ctx *k)
{
    size_t best = 0;
    for (size_t i = 1; i < k->cand_count; i++) {
        unsigned pi = k->cand[i].priority ? k->cand[i].priority : 16u;
        unsigned pb = k->cand[best].priority ? k->cand[best].priority : 16u;
        if (pi < pb) {
            best = i;
        }
    }
    return best;
}

int emv_final_select(mpos_emv_ctx *k)
{
    mpos_tlv df, a5;
    int r;
    while (k->cand_count > 0) {
        size_t b = best_candidate(k);
        struct mpos_emv_candidate c = k->cand[b];
        /* Book 1 12.4: the candidate leaves the list whatever happens next. */
        memmove(&k->cand[b], &k->cand[b + 1], (k->cand_count - b - 1) * sizeof(k->cand[0]));
        k->cand_count--;

        size_t n = emv_apdu_build(k, 0x00, 0xA4, 0x04, 0x00, c.aid, c.aid_len, 1);
        if ((r = emv_transmit(k, n)) != 0) {
            return r;
        }
        if (k->sw != EMV_SW_OK) {
            continue; /* blocked (6283) or gone: next candidate */
        }
        if ((r = parse_fci(k, &df, &a5)) != 0) {
            return r;
        }
        if (df.len != c.aid_len || memcmp(df.value, c.aid, c.aid_len) != 0) {
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_DATA_INVALID);
        }
        emv_store_drop(k, EMV_SRC_FCI);
        if ((r = emv_store_tlv(k, k->rapdu, k->rapdu_len, EMV_SRC_FCI, 0)) != 0) {
            return r;
        }
        k->param_index = c.param;
        return 0;
    }
    return emv_end(k, MPOS_EMV_NOT_ACCEPTED, MPOS_EMV_REASON_NO_APPLICATION);
}
