/* mpos-backend: the network side of the back end (docs/system-design.md sections 1 and 2,
 * docs/backend.md). Internal interfaces between the files of backend/server.
 *
 * Threads: the main thread runs the accept loop (and the stop signals); each worker runs its
 * own event_base with the connections handed to it, its own store handle (a mpos_store serves
 * one thread at a time) and calls the transaction processor, which may block that worker
 * (never the accept loop). Shared between threads: the configuration (read-only after
 * start), the session table and the travel tracker (each behind its own mutex), the TLS
 * contexts and their ticket key ring (mutex), and the processor (thread-safe by contract).
 */
#ifndef MPOS_BACKEND_SERVER_H
#define MPOS_BACKEND_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "bk_txn.h"
#include "mpos/daemon.h"
#include "mpos/err.h"
#include "mpos/hostmsg.h"
#include "mpos/store.h"
#include "mpos/tunnel.h"

#define BK_MAX_WORKERS     64
#define BK_FRAME_TIMEOUT_S 10    /* 1.1: one frame must arrive within 10 s */
#define BK_TUNNEL_CHUNK    16384 /* 1.2: data field of one TUNNEL message */
/* A frame of one field of vlen bytes: length prefix, type, tag + u16 length, value. */
#define BK_FRAME_CAP(vlen)  (MPOS_HOSTMSG_HDR_LEN + 1u + 3u + (size_t)(vlen))
#define BK_MAX_BINARY_HASH  64
#define BK_SHUTDOWN_GRACE_S 30 /* bound on waiting for in-flight transactions at SIGTERM */

/* ---- configuration (config.c) ----------------------------------------------------------- */

struct bs_config {
    /* [server] */
    char *listen;
    unsigned workers;
    char *cert, *key;
    int allow_tls12;
    unsigned idle_timeout_s;
    unsigned max_connections;
    /* [terminal] */
    char *terminal_ca;
    char *params;
    /* [store] */
    char *store_db;
    /* [hsm] */
    char *hsm_socket;
    int hsm_timeout_ms;
    /* [upstream] */
    char *up_host;
    uint16_t up_port;
    int up_timeout_ms, echo_s, saf_interval_ms;
    char *acquirer_id;
    /* [keys] */
    char *zpk, *zak, *zek;
    /* [policy] */
    int allow_root, allow_debugger;
    uint8_t binary_hashes[BK_MAX_BINARY_HASH][32];
    size_t n_binary_hashes; /* 0: any binary */
    int bind_host_device;
    int max_login_failures, lockout_s, session_ttl_s, max_speed_kmh, decline_impossible_travel;
    /* command line only */
    char *port_file;
    int foreground;
    int allow_root_process; /* --allow-root: run as uid 0 (tests, never production) */
    /* loaded at start: the parameter package and its minimum firmware */
    uint8_t *params_pkg;
    size_t params_len;
    uint32_t min_firmware;
};

void bs_config_defaults(struct bs_config *c);
void bs_config_free(struct bs_config *c);
/* INI (--config) first, then the flags. 0, or -1 after one line on stderr; 1 for --help. */
int bs_config_load(struct bs_config *c, int argc, char **argv) MPOS_MUST_CHECK;
/* Minimum firmware (major << 16 | minor << 8 | patch) from a parameter package (the E4's C4,
 * docs/protocol.md 3.2). MPOS_ERR_FORMAT if the package does not have that structure. */
int bs_params_min_firmware(const uint8_t *pkg, size_t len, uint32_t *out) MPOS_MUST_CHECK;
/* "1.2.3[-x]" -> 1 << 16 | 2 << 8 | 3; MPOS_ERR_FORMAT otherwise. */
int bs_firmware_parse(const char *s, uint32_t *out) MPOS_MUST_CHECK;

/* ---- logging (log.c): key=value lines on stderr, never a secret ------------------------- */

/* fmt: further " key=value" pairs (values without spaces, or quoted by the caller). */
void bs_log(const char *level, const char *event, uint64_t conn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Copies s into out (cap) keeping [A-Za-z0-9._:@/-] and replacing anything else by '_':
 * values from the network never break a log line or forge a key. */
const char *bs_log_safe(const char *s, char *out, size_t cap);

/* ---- TLS (tls.c) ------------------------------------------------------------------------ */

/* The outer (host) server context: TLS 1.3 (TLS 1.2 ECDHE+AEAD when allowed), no 0-RTT,
 * tickets under the rotating key ring. */
SSL_CTX *bs_tls_outer_ctx(const struct bs_config *c);
/* The inner (terminal) context: TLS 1.3 only, client certificate required, chained to the
 * manufacturer CA only, no tickets, no 0-RTT. */
SSL_CTX *bs_tls_inner_ctx(const struct bs_config *c);
void bs_tls_cleanup(void);

/* ---- sessions (session_store.c) --------------------------------------------------------- */

struct bs_session {
    char merchant[MPOS_STORE_MERCHANT_ID_LEN + 1];
    char username[MPOS_STORE_USERNAME_LEN + 1];
    int role; /* enum mpos_operator_role */
    uint8_t device_id[32];
    int64_t expires;
    char source[64];
};

enum { BK_SESSION_NOT_FOUND = 1, BK_SESSION_EXPIRED = 2 };

/* The sessions are rows of the store (st: the calling worker's handle). */
/* Records a session under SHA-256(token) (the token itself is never kept). 0 or -1. */
int bs_session_create(mpos_store *st, const uint8_t token[32],
                      const struct bs_session *s) MPOS_MUST_CHECK;
/* 0 and *out, BK_SESSION_NOT_FOUND (or revoked, or the store failed), BK_SESSION_EXPIRED. */
int bs_session_lookup(mpos_store *st, const uint8_t token[32], int64_t now,
                      struct bs_session *out) MPOS_MUST_CHECK;
void bs_session_revoke(mpos_store *st, const uint8_t token[32]);

/* ---- envelope and integrity (envelope.c) ------------------------------------------------ */

struct bs_envelope {
    int32_t lat_e7, lon_e7;
    uint32_t accuracy_m;
    uint64_t loc_time;
    uint8_t device_id[32];
    int debugger, root;
    uint8_t binary_hash[32];
    uint64_t counter;
};

/* The MAC keys of 1.3. 0 or a negative enum mpos_err. */
int bs_login_key(SSL *ssl, uint8_t key[32]) MPOS_MUST_CHECK;
int bs_session_key(SSL *ssl, const uint8_t token[32], uint8_t key[32]) MPOS_MUST_CHECK;

/* Checks the envelope of m (frame = the type byte and what follows, len bytes): every field
 * present, the MAC under key, the counter above *last_counter, the location in range; then the
 * integrity policy. 0 (and *last_counter moved, *env filled), MPOS_HMERR_ENVELOPE or
 * MPOS_HMERR_INTEGRITY (with a fixed reason word in *why). */
/* Parses one host message (type byte and body, len bytes) with lib/hostmsg's strictness and
 * refuses an unknown type or a field its type may not carry (1.3). Missing fields are left to
 * the handlers: where they check them decides the error (1.4: a missing envelope field is an
 * envelope refusal, a LOGIN without its password a bad request). 0 or an MPOS_ERR_*. */
int bs_msg_parse(mpos_hostmsg *m, const uint8_t *msg, size_t len) MPOS_MUST_CHECK;

int bs_envelope_check(const struct bs_config *c, const mpos_hostmsg *m, const uint8_t key[32],
                      uint64_t *last_counter, struct bs_envelope *env, const char **why);

/* Impossible travel: records (who, location) and returns 1 when the previous location of the
 * same key is further away than max_speed_kmh allows in the time between them. */
int bs_travel_check(const char *who, const struct bs_envelope *env, int max_speed_kmh);
void bs_travel_free(void);

/* ---- workers and connections (worker.c, conn.c, inner.c) -------------------------------- */

struct bs_server;
struct bs_conn;

struct bs_handoff {
    int fd;
    uint64_t conn;
    char peer[64];
};

struct bs_worker {
    struct bs_server *srv;
    unsigned index;
    struct mpos_dworker dw; /* thread, event_base (dw.base), hand-off queue of bs_handoff */
    struct bs_conn *conns;  /* doubly linked */
    atomic_uint n_conns;
    mpos_store *store; /* this thread's handle */
    uint8_t frame[4 + MPOS_HOSTMSG_MAX_LEN];
};

struct bs_server {
    struct bs_config *cfg;
    SSL_CTX *outer, *inner;
    mpos_bk_txn *txn;
    struct event_base *base;
    struct evconnlistener *lev;
    struct event *sig_term, *sig_int;
    struct bs_worker *workers;
    unsigned n_workers, next_worker;
    atomic_uint clients;
    atomic_uint_fast64_t conn_seq;
    atomic_int stopping;
};

int bs_worker_start(struct bs_worker *w) MPOS_MUST_CHECK;
int bs_worker_hand(struct bs_worker *w, const struct bs_handoff *h) MPOS_MUST_CHECK;
void bs_worker_stop(struct bs_worker *w);
void bs_worker_free(struct bs_worker *w);

/* A new connection on worker w (TLS handshake starts); NULL on failure (fd then closed). */
struct bs_conn *bs_conn_new(struct bs_worker *w, const struct bs_handoff *h);
void bs_conn_free(struct bs_conn *c);
/* Shutdown: stops reading on every connection of w; returns the bytes still to be sent. */
size_t bs_conns_quiesce(struct bs_worker *w);

/* conn.c services for inner.c */
void bs_conn_send_tunnel(struct bs_conn *c, const uint8_t *data, size_t len);
void bs_conn_send_error(struct bs_conn *c, int code, const char *message);
void bs_conn_send_txn_result(struct bs_conn *c, const mpos_bk_txn_outcome *o);
/* The state inner.c needs from the host session. */
struct bs_conn_view {
    uint64_t id;
    const struct bs_session *sess; /* NULL when not logged in */
    const struct bs_envelope *env; /* the envelope of the message being handled */
    const char *peer;
    /* TXN_BEGIN intent (consumed by the next SEALED) */
    int *has_intent;
    uint8_t *intent_type;
    uint64_t *intent_amount;
    uint16_t *intent_currency;
    char *intent_ref;
};
void bs_conn_view(struct bs_conn *c, struct bs_conn_view *v);
struct bs_worker *bs_conn_worker(struct bs_conn *c);
uint64_t bs_conn_view_id(struct bs_conn *c);

/* The inner TLS of one host connection. */
struct bs_inner;
struct bs_inner *bs_inner_new(void);
void bs_inner_free(struct bs_inner *in);
/* TUNNEL bytes from the host: feeds the inner connection (created by the first bytes), handles
 * the tunnel messages, sends what the inner TLS produced back as TUNNEL frames. */
void bs_inner_feed(struct bs_inner *in, struct bs_conn *c, const uint8_t *data, size_t len);

#endif
