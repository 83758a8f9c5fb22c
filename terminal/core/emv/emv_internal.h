/* openmpos terminal core: internals shared by the kernel's files (not an API).
 *
 * Step functions return 0 to go on, a positive enum mpos_emv_outcome once the transaction
 * has ended (ctx->result filled by emv_end), or a negative enum mpos_err.
 */
#ifndef MPOS_EMV_INTERNAL_H
#define MPOS_EMV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "emv_kernel.h"
#include "mpos/tlv.h"

enum emv_state { EMV_ST_IDLE = 0, EMV_ST_STARTED, EMV_ST_ONLINE, EMV_ST_DONE };

enum emv_source { EMV_SRC_FCI = 1, EMV_SRC_GPO = 2, EMV_SRC_RECORD = 3, EMV_SRC_GETDATA = 4 };

#define EMV_SW_OK 0x9000u

/* Ends the transaction: fills ctx->result and returns the outcome. */
int emv_end(mpos_emv_ctx *k, enum mpos_emv_outcome outcome, enum mpos_emv_reason reason);

/* Sets or tests a TVR bit (MPOS_EMV_TVR_*). */
void emv_tvr_set(mpos_emv_ctx *k, unsigned bit);
int emv_tvr_test(const uint8_t tvr[5], unsigned bit);

/* ---- emv_apdu.c */

/* Builds a C-APDU in k->capdu: header, then Lc and data when data_len > 0, then Le 00 when
 * le is set. Returns its length, or 0 when data_len is over 255. */
size_t emv_apdu_build(mpos_emv_ctx *k, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                      const uint8_t *data, size_t data_len, int le);

/* Sends k->capdu (len bytes) and receives the response: k->rapdu holds the data
 * (k->rapdu_len bytes), k->sw the status word. Follows 61xx with GET RESPONSE and 6Cxx by
 * sending again with Le = xx (ISO/IEC 7816-3 / Book 1 9.3.1), a bounded number of times.
 * 0, or MPOS_EMV_CARD_ERROR (no answer) / MPOS_EMV_TERMINATED (malformed R-APDU). */
int emv_transmit(mpos_emv_ctx *k, size_t len);

/* ---- emv_data.c */

/* Looks a card object up (records first, then GPO, FCI, GET DATA). 1 found, 0 not. */
int emv_card_find(const mpos_emv_ctx *k, uint32_t tag, const uint8_t **value, size_t *len);

/* Stores every primitive object found in buf (walking into templates). With check_dup, a
 * primitive already returned by the records or GPO ends the transaction (Book 3 10.2).
 * Each object's length is checked against its EMV format (Book 3 Annex A). */
int emv_store_tlv(mpos_emv_ctx *k, const uint8_t *buf, size_t len, enum emv_source source,
                  int check_dup);

/* Drops the objects of one source (a new application is being selected). */
void emv_store_drop(mpos_emv_ctx *k, enum emv_source source);

/* A data object of the transaction: the terminal's, the last GENERATE AC's, else the card's.
 * 1 with value/len/format, 0 when absent. */
int emv_lookup(const mpos_emv_ctx *k, uint32_t tag, const uint8_t **value, size_t *value_len,
               enum mpos_tlv_format *format);

/* Builds DOL data (PDOL, CDOL1, CDOL2) into out. 0, or a negative error. */
int emv_dol_build(mpos_emv_ctx *k, const uint8_t *dol, size_t dol_len, uint8_t *out, size_t cap,
                  size_t *out_len);

/* The PAN of '5A' as digits. 0, or MPOS_ERR_FORMAT for a '5A' that is not 12..19 digits
 * padded with F. */
int emv_pan_digits(const uint8_t *v, size_t len, char pan[MPOS_EMV_PAN_BUF_LEN]);

/* Converts YYMMDD (BCD) to a comparable number 20YYMMDD/19YYMMDD (Book 3 Annex A: YY 00..49
 * is 20YY, 50..99 is 19YY). 0 for a value that is not a BCD date. */
uint32_t emv_date_value(const uint8_t d[3]);

/* 1 if every nibble of len bytes is 0..9. */
int emv_is_bcd(const uint8_t *p, size_t len);

/* ---- emv_select.c */

/* Builds the candidate list (PSE, then the list of AIDs). 0 with at least one candidate, or
 * an outcome. */
int emv_build_candidates(mpos_emv_ctx *k);

/* Final selection (Book 1 12.4): selects the best candidate still in the list, stores its FCI
 * and removes it from the list. 0 once one is selected, or an outcome (NOT_ACCEPTED when none
 * is left). */
int emv_final_select(mpos_emv_ctx *k);

/* ---- emv_cvm.c */

/* Cardholder verification (Book 3 10.5). 0 or an outcome. */
int emv_cvm(mpos_emv_ctx *k);

#endif
