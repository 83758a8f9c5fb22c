/* openmpos terminal simulator: a contact card reader through PC/SC (pcsc-lite), the chip half
 * of the simulator's card-reader HAL (terminal/hal.h, mpos_hal_card_reader).
 *
 * One context follows one reader, by name: list the readers, pick one, then wait for cards,
 * power them, exchange APDUs. The reader may be a real one or a virtual one (pcscd's vpcd
 * driver in front of mpos-cardsim): nothing here knows the difference.
 *
 * Layers (who does what with an APDU):
 *   - T=0 procedure bytes and T=1 blocks: the reader's driver under pcscd (ISO/IEC 7816-3).
 *   - 61xx (GET RESPONSE) and 6Cxx (the same command again with Le = SW2): the caller, in the
 *     terminal's EMV kernel (terminal/core/emv/emv_apdu.c, emv_transmit; EMV 4.3 Book 1
 *     9.3.1.1 to 9.3.1.3, ISO/IEC 7816-4 5.1.3), as hal.h requires: mpos_pcsc_reader_exchange
 *     hands them back unchanged, so the kernel sees the same thing on every transport.
 *     mpos_pcsc_reader_transceive does the same chaining for callers that are not the kernel
 *     (tests, diagnostics); the terminal never uses it under the kernel.
 *   - Time-outs: a card's own time-outs (BWT, CWT, WWT) are the driver's, which reports them
 *     as a transmission error (mapped to MPOS_HAL_CARD_MUTE). pcsc-lite's client has no
 *     time-out of its own on SCardConnect and SCardTransmit, so a driver that never answers
 *     blocks the caller; the vpcd transport of mpos-cardsim always answers or resets. The
 *     waits of this module (events, the removal check after an error) are bounded by the
 *     caller's timeout and removal_grace_ms.
 *
 * The reader is taken in exclusive mode (SCARD_SHARE_EXCLUSIVE): while a card is powered no
 * other PC/SC client can send it anything. Nothing that passes through (ATR, APDUs) is logged
 * or kept beyond the call.
 */
#ifndef MPOS_TERMINAL_PCSC_READER_H
#define MPOS_TERMINAL_PCSC_READER_H

#include <stddef.h>
#include <stdint.h>

#include <winscard.h>

#include "hal.h"
#include "mpos/err.h"

#define MPOS_PCSC_READER_NAME_MAX 128  /* bytes, NUL included */
#define MPOS_PCSC_READERS_MAX     16   /* pcsc-lite's PCSCLITE_MAX_READERS_CONTEXTS */
#define MPOS_PCSC_REMOVAL_GRACE   1000 /* ms; pcscd polls a reader without events every 400 */

typedef struct mpos_pcsc_reader {
    SCARDCONTEXT sc;
    int sc_valid;
    SCARDHANDLE card;
    int connected;
    DWORD protocol;                       /* SCARD_PROTOCOL_T0 or _T1 while connected */
    char name[MPOS_PCSC_READER_NAME_MAX]; /* the reader followed; "" before select */
    DWORD known_state;                    /* last dwEventState seen (wait_event) */
    int reported_present;                 /* INSERTED reported, REMOVED not yet */
    unsigned event_count;                 /* pcsc-lite's card event counter then */
    unsigned conn_count;                  /* the counter when the card was powered */
    uint32_t removal_grace_ms;            /* see exchange */
} mpos_pcsc_reader;

/* Connects to the PC/SC service (SCardEstablishContext). 0; MPOS_ERR_IO when pcscd is not
 * there (SCARD_E_NO_SERVICE) or refuses. */
int mpos_pcsc_reader_open(mpos_pcsc_reader *r) MPOS_MUST_CHECK;

/* Disconnects a card (pcscd powers it off: see power_off) and releases the context. Safe on a
 * context that open failed on, and twice. */
void mpos_pcsc_reader_close(mpos_pcsc_reader *r);

/* The names of the readers pcscd has now, at most cap of them (each NUL-terminated). 0 with
 * *count (0 when there is none); MPOS_ERR_LENGTH when a name is longer than
 * MPOS_PCSC_READER_NAME_MAX - 1; MPOS_ERR_IO. */
int mpos_pcsc_reader_list(mpos_pcsc_reader *r, char names[][MPOS_PCSC_READER_NAME_MAX], size_t cap,
                          size_t *count) MPOS_MUST_CHECK;

/* Follows the first reader whose name contains pattern (the whole name, or a part such as
 * "Virtual PCD 00 01"), waiting up to timeout_ms for it to appear. Forgets a previous reader
 * (and its card, as power_off does). 0; MPOS_HAL_TIMEOUT; MPOS_ERR_IO. */
int mpos_pcsc_reader_select(mpos_pcsc_reader *r, const char *pattern,
                            uint32_t timeout_ms) MPOS_MUST_CHECK;

/* ---- hal.h's card-reader functions (ctx is the mpos_pcsc_reader) ---- */

/* hal.h wait_event, through SCardGetStatusChange. A removal and a new insertion between two
 * calls are reported as REMOVED, then INSERTED. */
int mpos_pcsc_reader_wait_event(void *ctx, uint32_t timeout_ms,
                                enum mpos_card_event *event) MPOS_MUST_CHECK;

/* hal.h power_on: a cold reset of the card in the followed reader (SCardConnect, exclusive,
 * T=0 or T=1 as the ATR offers; then SCardReconnect with SCARD_UNPOWER_CARD, so the card
 * always starts from a cold reset even when pcscd had powered it before), and its ATR; a
 * handle whose cold reset failed is dropped with SCARD_UNPOWER_CARD, so that the next call
 * tries the power-up again at once (pcsc_reader.c, forget_failed_card). 0; MPOS_HAL_NO_CARD;
 * MPOS_HAL_CARD_MUTE (no ATR: a mute chip, no chip, a protocol the reader cannot use); MPOS_ERR_IO.
 */
int mpos_pcsc_reader_power_on(void *ctx, uint8_t atr[MPOS_ATR_MAX],
                              size_t *atr_len) MPOS_MUST_CHECK;

/* hal.h power_off: SCardDisconnect with SCARD_LEAVE_CARD; pcscd's event thread then
 * deactivates the contacts itself, in the next one or two rounds of its poll (0.4 to 0.8 s),
 * unless another session took the card meanwhile (then power_on's cold reset follows). Not
 * SCARD_UNPOWER_CARD: pcscd 1.9.9 then checks the card's presence and, for a card pulled out
 * at that moment, marks the reader empty behind its event thread's back; a card put back
 * within 0.4 s is then never seen again (pcsc_reader.c, forget_card). 0, or MPOS_ERR_IO (the
 * handle is forgotten either way). */
int mpos_pcsc_reader_power_off(void *ctx) MPOS_MUST_CHECK;

/* hal.h exchange (SCardTransmit). 61xx and 6Cxx are returned as they come. When no answer
 * came (a transmission error) it waits up to removal_grace_ms for pcscd to notice a removal
 * (the reader thread polls a reader like vpcd every 400 ms), so a card pulled out is
 * MPOS_HAL_CARD_REMOVED and a card that is there and does not answer MPOS_HAL_CARD_MUTE.
 * MPOS_ERR_LENGTH for a C-APDU that is not a short one of case 1 to 4 (ISO/IEC 7816-3 12.1);
 * MPOS_ERR_STATE when no card is powered; MPOS_ERR_IO (also for an answer of 1 byte or longer
 * than MPOS_RAPDU_MAX bytes, never truncated; an empty one is no answer). */
int mpos_pcsc_reader_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                              uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len) MPOS_MUST_CHECK;

/* Fills hal with the functions above and ctx = r (read_tracks NULL: PC/SC has no stripe
 * head; the simulator's swipes come from elsewhere). */
void mpos_pcsc_reader_hal(mpos_pcsc_reader *r, mpos_hal_card_reader *hal);

/* ---- outside the HAL ---- */

/* exchange, then the APDU-level rules of ISO/IEC 7816-4 5.1.3 for callers that are not the
 * EMV kernel: 61xx is followed by GET RESPONSE (00 C0 00 00 xx) and 6Cxx by the same command
 * again with Le = xx (case 2 and 4 only), at most 4 rounds; the data of successive GET
 * RESPONSEs is joined. 0 with the final R-APDU (data and the last SW1 SW2, at most
 * MPOS_RAPDU_MAX bytes: MPOS_ERR_IO beyond); the other results of exchange. */
int mpos_pcsc_reader_transceive(mpos_pcsc_reader *r, const uint8_t *capdu, size_t capdu_len,
                                uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len) MPOS_MUST_CHECK;

/* The PC/SC protocol in use (SCARD_PROTOCOL_T0 / _T1), 0 when no card is powered. */
unsigned mpos_pcsc_reader_protocol(const mpos_pcsc_reader *r);

#endif
