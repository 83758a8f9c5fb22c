/* openmpos simulator: the TLS client port of terminal/hal.h (mpos_hal_tls) with OpenSSL 3.
 *
 * What it does (T-CHAN-1, R-PACK-2: the terminal's own secure channel to the back end):
 *   - TLS 1.3 only (RFC 8446): minimum = maximum = TLS1_3_VERSION; a server that offers
 *     anything older fails the handshake (MPOS_ERR_IO).
 *   - No 0-RTT: early data is never written (SSL_write_early_data is never called), also on
 *     a resumed connection.
 *   - Resumption (the tunnel is reopened after every host reconnect): the port keeps the
 *     last TLS 1.3 session ticket the server sent, in memory only (it is key material: never
 *     written anywhere; SSL_SESSION_free wipes it on mpos_tls_port_free or when replaced), and
 *     offers it on the next open (SSL_set_session) when that open has the same server name,
 *     trust anchor and device certificate as the connection that received it (a SHA-256
 *     binding over the three). A ticket is used once: it is dropped when offered (or when it
 *     does not fit or is out of its lifetime), and the resumed connection's new ticket
 *     replaces it. PSK with (EC)DHE only (psk_dhe_ke; SSL_OP_ALLOW_NO_DHE_KEX is cleared, so
 *     psk_ke is never offered): a resumed connection keeps forward secrecy.
 *     Server authentication on resumption: TLS 1.3 resumption (RFC 8446 2.2, 4.6.1) is bound
 *     to the handshake that issued the ticket, in which the server proved its certificate for
 *     this name under this anchor; the resumed handshake's binder and Finished prove it holds
 *     that ticket's resumption secret. The client certificate is not sent again: the server
 *     finds it in the ticket and must re-check the device's registration on every connection
 *     (the back end does: docs/system-design.md 2).
 *   - Log: after each successful open one line "event=tunnel_tls resumed=0|1" (stderr with the
 *     prefix "mpos-terminal: ", or the callback of mpos_tls_port_set_log).
 *   - No renegotiation (TLS 1.3 has none); post-handshake key updates are handled by OpenSSL.
 *   - No socket: the TLS records go through the caller's mpos_hal_transport (TUNNEL_DATA the
 *     host relays) via an in-memory BIO pair.
 *   - Server authentication: the chain must end at cfg->ca_cert (an X509_STORE holding only
 *     that anchor, no system paths) and the certificate must carry cfg->server_name (DNS SAN,
 *     no partial wildcards); SNI is cfg->server_name. Failure: MPOS_ERR_VERIFY.
 *   - Client authentication with cfg->client_cert (P-256). The private-key operation goes to
 *     cfg->sign (the key store): the port holds an EVP_PKEY from a small built-in OpenSSL 3
 *     provider ("mpos-extkey", in a library context private to the port) whose key carries
 *     only the public point and the sign callback; its ECDSA signature operation hands the
 *     whole TLS 1.3 CertificateVerify content to cfg->sign (which hashes with SHA-256) and
 *     DER-encodes the r || s it returns. The key never exists in the port, and the provider
 *     refuses to export a private key.
 *   In TLS 1.3 the client finishes its handshake before the server has checked the client
 *   certificate: a server refusing the device shows as an error on the first read, not in
 *   open.
 *
 * Simulator code: uses the heap and OpenSSL (docs/dev-helpers.md). One thread at a time.
 */
#ifndef MPOS_SIM_TLS_PORT_H
#define MPOS_SIM_TLS_PORT_H

#include <stdint.h>

#include "hal.h"

#define MPOS_TLS_PORT_HANDSHAKE_TIMEOUT_MS 30000u /* default wait for each record in open */

typedef struct mpos_tls_port mpos_tls_port;

/* Creates a port (its own OpenSSL library context with the default provider and the
 * external-key provider). 0, MPOS_ERR_ARG, MPOS_ERR_CRYPTO. */
int mpos_tls_port_new(mpos_tls_port **out) MPOS_MUST_CHECK;

/* Closes the connection if open and frees the port. NULL is allowed. */
void mpos_tls_port_free(mpos_tls_port *port);

/* How long open waits for each piece of the server's handshake (default above). */
void mpos_tls_port_set_handshake_timeout(mpos_tls_port *port, uint32_t timeout_ms);

/* 1 when the connection now open resumed a ticket, else 0. */
int mpos_tls_port_resumed(const mpos_tls_port *port);

/* 1 when a ticket is kept for the next open, else 0. */
int mpos_tls_port_has_ticket(const mpos_tls_port *port);

/* Drops the kept ticket (if any): the next open is a full handshake. */
void mpos_tls_port_forget_ticket(mpos_tls_port *port);

/* Where the line after a successful open goes: fn(ctx, resumed) instead of stderr. fn NULL:
 * stderr again. */
typedef void (*mpos_tls_port_log_fn)(void *ctx, int resumed);
void mpos_tls_port_set_log(mpos_tls_port *port, mpos_tls_port_log_fn fn, void *ctx);

/* Fills hal with the port's functions (ctx = port): the struct to give the core. */
void mpos_tls_port_hal(mpos_tls_port *port, mpos_hal_tls *hal);

#endif
