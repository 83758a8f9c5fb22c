/* openmpos terminal core: C-APDU building and the exchange with the card (EMV 4.3 Book 1
 * 9.3, 9.4; ISO/IEC 7816-4 5.1). */
#include <string.h>

#include "emv_internal.h"

#define EMV_MAX_CHAINED 4 /* GET RESPONSE / re-send rounds for one command */

size_t emv_apdu_build(mpos_emv_ctx *k, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                      const uint8_t *data, size_t data_len, int le)
{
    size_t n = 0;
    if (data_len > 255) {
        return 0;
    }
    k->capdu[n++] = cla;
    k->capdu[n++] = ins;
    k->capdu[n++] = p1;
    k->capdu[n++] = p2;
    if (data_len > 0) {
        k->capdu[n++] = (uint8_t)data_len;
        memmove(&k->capdu[n], data, data_len);
        n += data_len;
    }
    if (le) {
        k->capdu[n++] = 0x00;
    }
    return n;
}

/* 1 if the C-APDU of len bytes ends with an Le byte (case 2 or 4). */
static int has_le(const uint8_t *capdu, size_t len)
{
    return len == 5 || (len > 5 && len == 6 + (size_t)capdu[4]);
}

int emv_transmit(mpos_emv_ctx *k, size_t len)
{
    size_t rlen = 0;
    for (int round = 0; round <= EMV_MAX_CHAINED; round++) {
        rlen = 0;
        if (k->env.card_io(k->env.ctx, k->capdu, len, k->rapdu, &rlen) != 0) {
            k->rapdu_len = 0;
            return emv_end(k, MPOS_EMV_CARD_ERROR, MPOS_EMV_REASON_NO_ANSWER);
        }
        /* Book 1 9.4: at least SW1 SW2, at most 256 data bytes. */
        if (rlen < 2 || rlen > MPOS_RAPDU_MAX) {
            k->rapdu_len = 0;
            return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_FORMAT);
        }
        k->rapdu_len = rlen - 2;
        k->sw = (uint16_t)((unsigned)k->rapdu[rlen - 2] << 8 | k->rapdu[rlen - 1]);
        k->result.sw = k->sw;
        uint8_t sw1 = k->rapdu[rlen - 2];
        if (sw1 == 0x61 && k->rapdu_len == 0) {
            /* ISO/IEC 7816-4 5.1.3: response bytes still available, GET RESPONSE. */
            uint8_t le = k->rapdu[rlen - 1];
            len = emv_apdu_build(k, 0x00, 0xC0, 0x00, 0x00, NULL, 0, 0);
            k->capdu[len++] = le;
            continue;
        }
        if (sw1 == 0x6C && k->rapdu_len == 0 && has_le(k->capdu, len)) {
            /* Wrong Le: send the same command again with Le = SW2. */
            k->capdu[len - 1] = k->rapdu[rlen - 1];
            continue;
        }
        return 0;
    }
    return emv_end(k, MPOS_EMV_TERMINATED, MPOS_EMV_REASON_STATUS);
}
