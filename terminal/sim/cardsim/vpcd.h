/* openmpos simulator: the virtual card served over vsmartcard's vpcd protocol (the transport
 * of mpos-cardsim; the card itself is card.h's engine).
 *
 * The vpcd protocol (vsmartcard 3.3, virtualsmartcard/src/vpcd/vpcd.c): a TCP stream of
 * frames, each a 2-byte big-endian length and that many bytes. From the reader (pcscd's vpcd
 * driver) come 1-byte control frames, 00 power off, 01 power on, 02 reset (no answer), 04 get
 * ATR (answered by a frame holding the ATR), and C-APDUs (answered by a frame holding the
 * R-APDU). pcscd's presence poll (every 400 ms) is a 04 frame.
 *
 * Reversed mode: mpos-cardsim listens, on 127.0.0.0/8 only, and the driver connects to it
 * (reader.conf DEVICENAME <host>:<port>; the driver of Debian's vsmartcard-vpcd 3.3 has two
 * slots, so one reader.conf entry gives two readers, on <port> and <port>+1). The driver has
 * no time-out of its own and a reader thread of pcscd blocks until an answer comes, so this
 * transport answers every 04 and every C-APDU at once, or resets the connection; it never
 * leaves a frame unanswered. The driver drops its connection (and reports no card) after a
 * frame that gets an empty answer or none; the 3.3 driver then aborts pcscd at the next poll
 * unless libmpos_vpcd_preload.so is loaded into it (vpcd_preload.c), which makes it connect
 * again. So only what must look like a removal drops the connection:
 *   - a card in the slot: 04 gives its ATR (of the last power-up, or 3B 00 before the first);
 *     after 01 or 02 the next 04 is the power-up: the engine's ATR, or, for a card that gives
 *     none (mute chip, no chip), MPOS_VPCD_NO_ATR_LEN bytes, more than any ATR, which the
 *     driver refuses (IFD_COMMUNICATION_ERROR) while keeping the connection: pcscd sees a
 *     card that is there and does not answer (works without the preload library);
 *   - an empty slot: 04 gives an empty frame and the connection ends (the driver's "card
 *     removed"; it opens a new one at its next poll); a C-APDU resets the connection;
 *   - removing a card resets the connection, so a C-APDU in flight fails and the next poll
 *     sees the slot empty;
 *   - a C-APDU the engine does not answer, or any while the slot is silenced, resets the
 *     connection (a mute card: the reader's time-out); the next poll finds the card again.
 * A frame longer than MPOS_VPCD_FRAME_MAX is read and dropped and answered 6700; a frame not
 * complete within the frame time-out resets the connection. Every frame is written with one
 * send() on a TCP_NODELAY socket, and TCP_QUICKACK is set again after each read (the driver
 * writes a frame's length and its body with two send() calls, and without TCP_NODELAY on its
 * first connection: without an immediate ACK from here, Nagle's algorithm holds the body for
 * the delayed-ACK time, 40 ms).
 *
 * T=0 mode (per slot): the card's ATR says T=0 only (3B 00) and the transport plays the T=0
 * transmission protocol's answers (ISO/IEC 7816-3 10.3.4, EMV 4.3 Book 1 9.3.1): a case 4
 * command with response data is answered 61xx and the data given by GET RESPONSE; a case 2
 * command whose Le is not the data length is answered 6Cxx and the data given when the same
 * command comes again with that Le. The engine sees each command once.
 *
 * No card data is printed or logged here. Single-threaded: one event loop drives it.
 */
#ifndef MPOS_CARDSIM_VPCD_H
#define MPOS_CARDSIM_VPCD_H

#include <poll.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "card.h"
#include "hal.h" /* MPOS_ERR_IO */

#define MPOS_VPCD_SLOTS         2     /* the slots of the vpcd driver (Debian 3.3 build) */
#define MPOS_VPCD_DEFAULT_PORT  35963 /* 0x8C7B, the driver's VPCDPORT */
#define MPOS_VPCD_FRAME_MAX     512   /* longest frame kept (a short C-APDU is 261) */
#define MPOS_VPCD_FRAME_TIMEOUT 2000  /* ms for a started frame to complete */
#define MPOS_VPCD_POLLFDS       (2 * MPOS_VPCD_SLOTS)
#define MPOS_VPCD_NO_ATR_LEN    40 /* "no ATR" answer: longer than any ATR (33) */

#define MPOS_VPCD_CTRL_OFF   0x00
#define MPOS_VPCD_CTRL_ON    0x01
#define MPOS_VPCD_CTRL_RESET 0x02
#define MPOS_VPCD_CTRL_ATR   0x04

typedef struct mpos_vpcd_slot {
    int listen_fd;
    int conn_fd; /* -1: no reader connected */
    uint16_t port;
    /* frame being received */
    uint8_t hdr[2];
    size_t hdr_got;
    size_t frame_len;
    size_t frame_got;
    uint64_t frame_start_ms;
    uint8_t frame[MPOS_VPCD_FRAME_MAX];
    /* the card: NULL when the slot is empty */
    mpos_cardsim *card;
    int t0;
    int silent;          /* the chip stopped answering (mpos_vpcd_silence) */
    int powerup_pending; /* 01 or 02 came: the next 04 is the power-up's answer */
    int powerup_rc;      /* the engine's power-on result */
    uint8_t atr[MPOS_CARDSIM_ATR_MAX];
    size_t atr_len; /* 0: never powered */
    /* T=0: the answer waiting for GET RESPONSE, or for the command again with the right Le */
    uint8_t t0_rsp[MPOS_CARDSIM_RAPDU_MAX];
    size_t t0_rsp_len; /* data and SW; 0: none */
    size_t t0_off;     /* data already given */
    uint8_t t0_hdr[4]; /* the case 2 command waiting for its Le (6Cxx) */
    int t0_kind;       /* 0 none, 1 GET RESPONSE (61xx), 2 same command again (6Cxx) */
    /* counters */
    unsigned long connects;
    unsigned long apdus;
    unsigned long resets; /* connections reset by this side */
    FILE *trace;          /* NULL, or where the transport events go (mpos_vpcd_trace) */
    unsigned index;       /* the slot's number, for the trace */
} mpos_vpcd_slot;

typedef struct mpos_vpcd {
    mpos_vpcd_slot slot[MPOS_VPCD_SLOTS];
    size_t nslots;
    uint32_t frame_timeout_ms;
    mpos_crypto_ctx *cc; /* for the engine (card.h) */
} mpos_vpcd;

/* Listens on addr (a dotted IPv4 address in 127.0.0.0/8) at base_port + i for slot i, i <
 * nslots (1..MPOS_VPCD_SLOTS). cc must outlive v. Slots start empty. 0; MPOS_ERR_ARG (address
 * not a loopback one, port out of range); MPOS_ERR_IO (socket, bind or listen failed: errno
 * says why). */
int mpos_vpcd_open(mpos_vpcd *v, const char *addr, uint16_t base_port, size_t nslots,
                   mpos_crypto_ctx *cc) MPOS_MUST_CHECK;

/* Removes every card and closes every socket. */
void mpos_vpcd_close(mpos_vpcd *v);

/* Puts a card personalised from p in slot (replacing one that is there: a removal and an
 * insertion). t0: play the T=0 protocol. 0; MPOS_ERR_ARG; MPOS_ERR_CRYPTO / MPOS_ERR_FORMAT
 * from mpos_cardsim_init (the slot is then empty). */
int mpos_vpcd_insert(mpos_vpcd *v, size_t slot, const mpos_cardsim_profile *p,
                     int t0) MPOS_MUST_CHECK;

/* Takes the card out of slot (nothing when it is empty) and resets the slot's connection. */
void mpos_vpcd_remove(mpos_vpcd *v, size_t slot);

/* Makes the chip in slot stop answering (on) or answer again: while silent, every C-APDU
 * resets the connection and a power-up gives no ATR, while the card stays present (a chip
 * that fails in the middle of a session). Cleared by an insertion. */
void mpos_vpcd_silence(mpos_vpcd *v, size_t slot, int on);

/* The descriptors to poll (listening and connected sockets, POLLIN) into fds (capacity
 * MPOS_VPCD_POLLFDS); returns how many. */
size_t mpos_vpcd_pollfds(const mpos_vpcd *v, struct pollfd *fds, size_t cap);

/* Handles what poll reported for the descriptors mpos_vpcd_pollfds gave (fds, n), then the
 * frame time-outs at now_ms (a CLOCK_MONOTONIC reading). */
void mpos_vpcd_service(mpos_vpcd *v, const struct pollfd *fds, size_t n, uint64_t now_ms);

/* Writes one line per transport event to f (NULL: none): connections accepted and closed
 * (with the reason), control frames, the length of each C-APDU and answer, insertions and
 * removals, with a millisecond time stamp. Never a byte of an APDU, an answer or an ATR: the
 * lines carry no card data (for the diagnosis of pcscd / vpcd timing). */
void mpos_vpcd_trace(mpos_vpcd *v, FILE *f);

/* Milliseconds since an arbitrary origin (CLOCK_MONOTONIC). */
uint64_t mpos_vpcd_now_ms(void);

#endif
