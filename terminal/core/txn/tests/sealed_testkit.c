/* Test kit: a test terminal for the sealed-message tests (sealed_testkit.h). */
#include "sealed_testkit.h"

#include <string.h>

#include "link/link.h"
#include "mpos/pin.h"
#include "mpos/util.h"
#include "msr/msr.h"

enum mpos_err stk_term_load(struct stk_term *t, mpos_crypto_ctx *cc, enum mpos_sealed_scheme scheme,
                            const uint8_t *bdk, size_t bdk_len, const uint8_t *id)
{
    uint8_t ik[32];
    int rc;
    memset(t, 0, sizeof(*t));
    t->cc = cc;
    t->scheme = scheme;
    if (scheme == MPOS_SEALED_TDES) {
        rc = mpos_dukpt_tdes_ipek(cc, bdk, bdk_len, id, ik);
        if (rc == MPOS_OK) {
            rc = mpos_dukpt_tdes_terminal_load(&t->tdes, cc, ik, id);
        }
    } else {
        if (bdk_len > sizeof(ik)) {
            return MPOS_ERR_LENGTH;
        }
        rc = mpos_dukpt_aes_initial_key(cc, bdk, bdk_len, id, ik);
        if (rc == MPOS_OK) {
            rc = mpos_dukpt_aes_terminal_load(&t->aes, cc, ik, bdk_len, id);
        }
    }
    mpos_cleanse(ik, sizeof(ik));
    return (enum mpos_err)rc;
}

enum mpos_err stk_term_published(struct stk_term *t, mpos_crypto_ctx *cc,
                                 enum mpos_sealed_scheme scheme)
{
    uint8_t bdk[32], id[10];
    size_t bdk_len = 0, id_len = 0;
    /* AES-192 and AES-256 transaction keys need a BDK at least as strong. */
    const char *bdk_hex = scheme == MPOS_SEALED_TDES     ? STK_TDES_BDK
                          : scheme == MPOS_SEALED_AES128 ? STK_AES_BDK128
                                                         : STK_AES_BDK256;
    const char *id_hex = scheme == MPOS_SEALED_TDES ? STK_TDES_KSN : STK_AES_IKID;
    int rc = mpos_hex_decode(bdk_hex, bdk, sizeof(bdk), &bdk_len);
    if (rc == MPOS_OK) {
        rc = mpos_hex_decode(id_hex, id, sizeof(id), &id_len);
    }
    if (rc == MPOS_OK) {
        rc = stk_term_load(t, cc, scheme, bdk, bdk_len, id);
    }
    mpos_cleanse(bdk, sizeof(bdk));
    return (enum mpos_err)rc;
}

enum mpos_err stk_term_next(struct stk_term *t)
{
    int rc;
    if (t->scheme == MPOS_SEALED_TDES) {
        t->ksn_len = MPOS_DUKPT_TDES_KSN_LEN;
        rc = mpos_dukpt_tdes_terminal_next(&t->tdes, t->cc, t->ksn);
        if (rc == MPOS_OK) {
            rc = mpos_sealed_keys_tdes(&t->req_keys, t->cc, &t->tdes, MPOS_SEALED_DIR_REQUEST,
                                       t->ksn);
        }
        if (rc == MPOS_OK) {
            rc = mpos_sealed_keys_tdes(&t->resp_keys, t->cc, &t->tdes, MPOS_SEALED_DIR_RESPONSE,
                                       t->ksn);
        }
    } else {
        t->ksn_len = MPOS_DUKPT_AES_KSN_LEN;
        rc = mpos_dukpt_aes_terminal_next(&t->aes, t->cc, t->ksn);
        if (rc == MPOS_OK) {
            rc = mpos_sealed_keys_aes(&t->req_keys, t->cc, &t->aes, t->scheme,
                                      MPOS_SEALED_DIR_REQUEST, t->ksn);
        }
        if (rc == MPOS_OK) {
            rc = mpos_sealed_keys_aes(&t->resp_keys, t->cc, &t->aes, t->scheme,
                                      MPOS_SEALED_DIR_RESPONSE, t->ksn);
        }
    }
    return (enum mpos_err)rc;
}

enum mpos_err stk_term_pin(struct stk_term *t, const char *pin, const char *pan,
                           mpos_sealed_request *q)
{
    uint8_t key[16];
    int rc;
    if (t->scheme == MPOS_SEALED_TDES) {
        rc = mpos_dukpt_tdes_terminal_working_key(&t->tdes, t->cc, MPOS_DUKPT_TDES_USAGE_PIN, key);
        if (rc == MPOS_OK) {
            rc = mpos_pin_block_encrypt(t->cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16, pin,
                                        pan, NULL, 0, q->pin_block, &q->pin_block_len);
        }
        q->pin_format = 0;
    } else {
        rc = mpos_dukpt_aes_terminal_working_key(&t->aes, t->cc, MPOS_DUKPT_AES_USAGE_PIN,
                                                 MPOS_DUKPT_AES_KEY_AES128, key);
        if (rc == MPOS_OK) {
            rc = mpos_pin_block_encrypt(t->cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, pin,
                                        pan, NULL, 0, q->pin_block, &q->pin_block_len);
        }
        q->pin_format = 4;
    }
    q->has_pin = rc == MPOS_OK;
    mpos_cleanse(key, sizeof(key));
    return (enum mpos_err)rc;
}

void stk_term_clear(struct stk_term *t)
{
    mpos_dukpt_aes_terminal_clear(&t->aes);
    mpos_dukpt_tdes_terminal_clear(&t->tdes);
    mpos_sealed_keys_clear(&t->req_keys);
    mpos_sealed_keys_clear(&t->resp_keys);
}

enum mpos_err stk_card_read(const struct tc_card *c, mpos_sealed_card *out)
{
    char t2[64];
    mpos_msr_card m;
    size_t l2 = tc_track2(c, "1234", 1, 1, t2, sizeof(t2));
    memset(out, 0, sizeof(*out));
    int rc = mpos_msr_parse(NULL, 0, t2, l2, &m);
    if (rc != MPOS_OK) {
        return (enum mpos_err)rc;
    }
    memcpy(out->pan, m.pan, sizeof(out->pan) < sizeof(m.pan) ? sizeof(out->pan) : sizeof(m.pan));
    out->pan[sizeof(out->pan) - 1] = '\0';
    memcpy(out->expiry, m.expiry,
           sizeof(out->expiry) < sizeof(m.expiry) ? sizeof(out->expiry) : sizeof(m.expiry));
    out->expiry[sizeof(out->expiry) - 1] = '\0';
    if (m.track2_eq_len > sizeof(out->track2)) {
        mpos_msr_card_clear(&m);
        return MPOS_ERR_LENGTH;
    }
    memcpy(out->track2, m.track2_eq, m.track2_eq_len);
    out->track2_len = m.track2_eq_len;
    mpos_msr_card_clear(&m);
    return MPOS_OK;
}

int stk_card(const char *name, const struct tc_card **out)
{
    const struct tc_card *all;
    *out = NULL;
    if (tc_load(&all) == 0) {
        return 0;
    }
    *out = tc_find(name);
    return *out != NULL ? 1 : -1;
}

void stk_request(mpos_sealed_request *q, uint8_t msg_type, uint32_t sequence, uint64_t amount)
{
    memset(q, 0, sizeof(*q));
    q->msg_type = msg_type;
    q->sequence = sequence;
    q->txn_type = MPOS_LINK_TXN_SALE;
    q->amount = amount;
    q->currency = STK_CURRENCY;
    strcpy(q->merchant_id, STK_MERCHANT_ID);
    strcpy(q->terminal_id, STK_TERMINAL_ID);
    strcpy(q->datetime, STK_DATETIME);
}
