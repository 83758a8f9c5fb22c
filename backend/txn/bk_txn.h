/* mpos-backend: the transaction processor (docs/system-design.md sections 2-4), the part of
 * the back end between a verified inner-TLS tunnel and the card network.
 *
 * backend/server (the network side: host sessions, envelope, inner TLS, activation) calls
 * it; it owns: mpos-hsmd calls (sealed.open FIRST, so a forged request never moves a
 * counter; sealed.respond), anti-replay (mpos_store_ksn_accept, B-REPLAY-1), idempotency by
 * terminal sequence number, the checks of section 4.3, the journal (committed before the
 * upstream request, G-ACCT-4), the ISO 8583 upstream link (sign-on, echo, requests, MAC under
 * the ZAK), store-and-forward reversals (across restarts) and settlement totals.
 *
 * Thread-safe: one processor per process, called from any worker thread; each call blocks
 * its caller until the outcome is known (at most the upstream timeout plus the hsmd time).
 */
#ifndef MPOS_BACKEND_TXN_H
#define MPOS_BACKEND_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

#define MPOS_BK_SERIAL_MAX      32
#define MPOS_BK_FIRMWARE_MAX    32
#define MPOS_BK_USERNAME_MAX    32
#define MPOS_BK_MAX_SEALED      1024 /* MPOS_SEALED_MAX_REQUEST_LEN */
#define MPOS_BK_MAX_SEALED_RESP 512

/* mpos_bk_txn_process: the terminal is not in a state that may transact (not activated,
 * retired, or no keys): the tunnel answers ERROR 5 / 4. (lib's enum mpos_err has no such
 * code: this one is the processor's own, outside its range.) */
#define MPOS_BK_ERR_STATE (-40)

/* [upstream], [keys], [store], [hsm], [policy] of the back end's configuration, parsed by
 * backend/server. Strings are owned by the caller and must outlive the processor. */
typedef struct mpos_bk_txn_config {
    const char *store_path; /* SQLite file (or PostgreSQL conninfo) */
    const char *hsm_socket; /* mpos-hsmd's backend-role socket */
    int hsm_timeout_ms;
    const char *upstream_host; /* "127.0.0.1" */
    uint16_t upstream_port;
    int upstream_timeout_ms; /* default 5000 */
    int echo_s;              /* default 60; 0: no echo */
    int saf_interval_ms;     /* default 2000 */
    const char *acquirer_id; /* DE 32, n..11 */
    const char *zpk_label;   /* store key labels (key blocks under the LMK) */
    const char *zak_label;
    const char *zek_label; /* NULL: DE 62 not sent */
    uint32_t min_firmware; /* major << 16 | minor << 8 | patch, from the parameter package */
    int max_speed_kmh;     /* impossible travel, default 900 */
    int decline_impossible_travel;
} mpos_bk_txn_config;

/* What the network side knows about the request's context; all of it authenticated there
 * (host session + envelope MAC; inner TLS client certificate). */
typedef struct mpos_bk_txn_context {
    char serial[MPOS_BK_SERIAL_MAX + 1];     /* from the terminal's certificate */
    char firmware[MPOS_BK_FIRMWARE_MAX + 1]; /* from the tunnel's HELLO */
    char merchant_id[16];                    /* the operator's merchant */
    char username[MPOS_BK_USERNAME_MAX + 1];
    int role;               /* enum mpos_operator_role */
    uint8_t device_id[32];  /* host device ID (envelope) */
    int32_t lat_e7, lon_e7; /* the envelope of the TXN_BEGIN / last TUNNEL */
    uint32_t accuracy_m;
    uint64_t loc_time;
    int debugger, root;
    uint8_t binary_hash[32];
    char source_addr[64]; /* the host's address, "127.0.0.1:port" */
    /* The operator's announced transaction (TXN_BEGIN); has_intent 0: none (a reversal
     * needs none). */
    int has_intent;
    uint8_t intent_type;
    uint64_t intent_amount;
    uint16_t intent_currency;
    char intent_ref[33];
} mpos_bk_txn_context;

/* The outcome, for the host's TXN_RESULT and the log (masked PAN only). */
typedef struct mpos_bk_txn_outcome {
    int is_reversal;
    uint8_t txn_type;
    uint64_t amount;
    uint16_t currency;
    uint32_t sequence;
    char merchant_id[16];
    char terminal_id[9];
    char masked_pan[20];
    char response_code[3];
    char auth_code[7];
    char rrn[13];
    const char *alert; /* NULL or a static word: "impossible_travel", "outside_radius", ... */
} mpos_bk_txn_outcome;

typedef struct mpos_bk_txn mpos_bk_txn;

/* Opens the store, connects to mpos-hsmd, starts the upstream thread (connect, sign-on,
 * echo) and the store-and-forward thread (pending reversals of earlier runs first). */
int mpos_bk_txn_start(const mpos_bk_txn_config *cfg, mpos_bk_txn **out) MPOS_MUST_CHECK;

/* Processes one SEALED message from the tunnel of ctx->serial. Returns:
 *   0 with the sealed response in resp (*resp_len) and *outcome filled;
 *   MPOS_ERR_VERIFY when the request did not verify or was replayed: no response (the tunnel
 *     answers ERROR 6), nothing changed;
 *   MPOS_ERR_FORMAT for a malformed message; MPOS_BK_ERR_STATE when the terminal is not
 *     activated (or retired); other negative enum mpos_err for internal failures.
 * A suspended terminal's verified request gets a sealed response with code 58 (and moves no
 * counter). */
int mpos_bk_txn_process(mpos_bk_txn *p, const mpos_bk_txn_context *ctx, const uint8_t *sealed,
                        size_t len, uint8_t *resp, size_t cap, size_t *resp_len,
                        mpos_bk_txn_outcome *outcome) MPOS_MUST_CHECK;

/* Settlement totals of merchant_id (all its terminals) since the last settlement, closed as
 * one batch: "key=value" lines into text (NUL-terminated). */
int mpos_bk_txn_settle(mpos_bk_txn *p, const char *merchant_id, char *text,
                       size_t cap) MPOS_MUST_CHECK;

/* The original of a void or refund, looked up by its RRN (TXN_BEGIN, docs/system-design.md
 * 1.3): what mpos_bk_txn_lookup() found. */
enum mpos_bk_orig_state {
    MPOS_BK_ORIG_APPROVED = 0,     /* approved, not voided: *amount and *currency set */
    MPOS_BK_ORIG_NOT_FOUND = 1,    /* no such RRN for this merchant */
    MPOS_BK_ORIG_NOT_APPROVED = 2, /* declined, pending, a void/refund itself, or reversed */
    MPOS_BK_ORIG_VOIDED = 3        /* an approved void of it exists */
};

/* Looks up the journal entry with this RRN (12 digits) of merchant_id. 0 with *state (and,
 * for MPOS_BK_ORIG_APPROVED, the original's amount and currency); a negative enum mpos_err
 * when the store fails or the arguments are bad. */
int mpos_bk_txn_lookup(mpos_bk_txn *p, const char *merchant_id, const char *rrn, uint64_t *amount,
                       uint16_t *currency, int *state) MPOS_MUST_CHECK;

/* Stops accepting new requests, waits for the ones in flight (graceful shutdown), stops the
 * threads, closes everything. NULL allowed. */
void mpos_bk_txn_stop(mpos_bk_txn *p);

#endif
