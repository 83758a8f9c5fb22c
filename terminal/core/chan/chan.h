/* openmpos terminal core: the terminal's end of the channel to the back end (T-CHAN-1,
 * T-ACTIV-1, docs/system-design.md section 2).
 *
 * The channel is a TLS 1.3 connection (the HAL's TLS port, hal->tls) over a byte transport the
 * port provides (on the simulator: the host link's TUNNEL_DATA, relayed by the host), carrying
 * the application messages of lib/tunnel (mpos/tunnel.h):
 *   - open: the TLS handshake with the key store's device certificate as client certificate
 *     (the private key stays in the key store: sign = mpos_keystore_tls_sign), the key store's
 *     back-end CA as the only trust anchor and cfg.server_name as the name to check; then
 *     HELLO (serial, firmware) and the back end's HELLO_OK. When HELLO_OK carries a parameter
 *     package (an activated terminal) and this terminal is activated, the package is applied
 *     when its version is above the held one (an older or equal one is MPOS_ERR_ROLLBACK
 *     inside params and is no error here: the back end always sends its current package);
 *   - activate: ACTIVATE (serial, firmware, the code the host's ACTIVATE command carried),
 *     then ACTIVATE_OK: on status 0 the parameter package is verified and applied FIRST (a
 *     package that does not verify leaves the terminal not activated), then merchant and
 *     terminal ID are stored in the key store (mpos_keystore_set_activation);
 *   - the transaction machine's net (txn.h mpos_txn_net): one sealed request out as a SEALED
 *     message, one SEALED_RESP in. An ERROR message, a closed or failed tunnel, or any other
 *     message is "no response" to the machine (and anything but ERROR closes the tunnel).
 * The tunnel is opened when first needed and kept until mpos_chan_close (the port closes it
 * when the host connection ends: docs/system-design.md 2). A tunnel that failed is closed;
 * the next use opens a new one (a full handshake).
 *
 * Parameter anchor: the key store's parameter anchor when it has one, else its back-end CA
 * certificate (mpos_params_anchor_key takes a point or a certificate, docs/protocol.md 3.1).
 *
 * Portable core code: no heap, no OS calls; the HAL (tls, clock), the key store, the params
 * store and lib/ only. Return convention: 0, a positive value where stated, or a negative enum
 * mpos_err (lib/'s and hal.h's codes). Nothing here logs; no secret passes through it except
 * TLS plaintext, which holds sealed (encrypted) requests only.
 */
#ifndef MPOS_TERMINAL_CHAN_H
#define MPOS_TERMINAL_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "emv_kernel.h"
#include "hal.h"
#include "keystore/keystore.h"
#include "mpos/err.h"
#include "mpos/tunnel.h"
#include "params.h"
#include "txn/txn.h"

#define MPOS_CHAN_TIMEOUT_MS 30000u /* default wait for HELLO_OK / ACTIVATE_OK */
#define MPOS_CHAN_REFUSED    100    /* mpos_chan_activate: the back end said no (see status) */

typedef struct mpos_chan_config {
    const char *serial;      /* DF01, 1..32 printable; must outlive the channel */
    const char *firmware;    /* DF02, major.minor.patch[-suffix] */
    const char *server_name; /* the back end's TLS name (SNI and certificate check) */
    uint32_t timeout_ms;     /* wait for each answer of open / activate; 0: the default */
} mpos_chan_config;

/* Fields private. */
typedef struct mpos_chan {
    const mpos_hal *hal; /* tls and clock required */
    mpos_keystore *ks;
    mpos_params_store *params;
    mpos_emv_params *emv; /* where an applied package's EMV parameters go */
    const mpos_hal_transport *transport;
    mpos_chan_config cfg;
    uint32_t firmware_num; /* (major << 16) | (minor << 8) | patch */
    mpos_hal_tls_config tls_cfg;
    int open;           /* TLS up and HELLO_OK taken */
    uint8_t status;     /* DF04 of the last HELLO_OK / ACTIVATE_OK / ERROR */
    int peer_activated; /* DF08 of HELLO_OK */
    int params_changed; /* set when a package was applied; cleared by the caller */
    uint32_t opens;     /* tunnels opened (statistics, tests) */
    mpos_tunnel_reader rd;
    uint8_t in[2048]; /* TLS plaintext read and not yet framed */
    size_t in_pos, in_len;
    uint8_t out[MPOS_TUNNEL_MAX_MSG];
    mpos_tunnel_msg msg;
} mpos_chan;

/* Parses "major.minor.patch[-suffix]" (each 0..255) into (major << 16) | (minor << 8) | patch,
 * the params module's firmware number. MPOS_ERR_FORMAT. */
int mpos_chan_firmware_number(const char *firmware, uint32_t *num) MPOS_MUST_CHECK;

/* Prepares ch (closed). hal, ks, params, emv, transport and the strings of cfg must outlive
 * ch. MPOS_ERR_ARG for a missing part, a HAL without tls or clock, or a serial / firmware the
 * tunnel messages cannot carry. */
int mpos_chan_init(mpos_chan *ch, const mpos_hal *hal, mpos_keystore *ks, mpos_params_store *params,
                   mpos_emv_params *emv, const mpos_hal_transport *transport,
                   const mpos_chan_config *cfg) MPOS_MUST_CHECK;

/* Opens the tunnel if it is not open (see the top). 0 when it is up. MPOS_ERR_STATE when the
 * key store has no device certificate or trust anchor, or when the back end refused the
 * terminal (HELLO_OK with a status other than 0 or 5, or ERROR: mpos_chan_status tells which;
 * the tunnel is closed); the TLS port's errors (MPOS_ERR_VERIFY, MPOS_HAL_TIMEOUT,
 * MPOS_HAL_CLOSED, MPOS_ERR_IO); MPOS_ERR_FORMAT for a malformed or unexpected answer. A
 * package in HELLO_OK that fails verification is ignored (the held one stays): the tunnel is
 * still up. */
int mpos_chan_open(mpos_chan *ch) MPOS_MUST_CHECK;

/* Activates the terminal with code (4..32 of 0-9 A-Z a-z '-'), opening the tunnel first if
 * needed. 0 when activated (package applied, IDs stored); MPOS_CHAN_REFUSED when the back end
 * refused (code wrong, expired, used, ...: mpos_chan_status; nothing changed); MPOS_ERR_STATE
 * when the terminal is activated already; MPOS_ERR_VERIFY (or the params module's error) when
 * the package does not verify (not activated); the errors of mpos_chan_open. */
int mpos_chan_activate(mpos_chan *ch, const char *code) MPOS_MUST_CHECK;

/* Fills net with the channel's send / recv for the transaction machine (ctx = ch). send
 * opens the tunnel when needed. recv: 0 with the SEALED_RESP body; MPOS_ERR_STATE for an
 * ERROR message (the tunnel stays); MPOS_HAL_TIMEOUT, MPOS_HAL_CLOSED or another error close
 * the tunnel (so a late answer is never taken for the next request's). */
void mpos_chan_net(mpos_chan *ch, mpos_txn_net *net);

/* 1 while the tunnel is open. */
int mpos_chan_is_open(const mpos_chan *ch);

/* The status (DF04) of the back end's last HELLO_OK, ACTIVATE_OK or ERROR. */
uint8_t mpos_chan_status(const mpos_chan *ch);

/* Closes the tunnel (close_notify) and forgets everything buffered. Safe when closed. */
void mpos_chan_close(mpos_chan *ch);

#endif
