/* libmposhost: the cashier app's library (docs/host.md, docs/system-design.md 1).
 *
 * A small C API a phone app embeds: it talks to the terminal over its link (docs/protocol.md
 * 1) and to the back end over TLS 1.3 (the host protocol, lib/hostmsg), logs the operator in,
 * adds the envelope (location, device ID, debugger, root, binary hash, counter, MAC) to every
 * message, and relays the terminal's end-to-end TLS tunnel without reading it. It never sees
 * a PAN, track, PIN or key (H-KERNEL-1: it links no card kernel, no TLV or PIN-block code).
 *
 * One mposhost handle serves one operation at a time (not thread-safe). Every wait has a
 * timeout. Functions return 0 or a negative code: enum mpos_err (mpos/err.h) or enum
 * mposhost_err below; mposhost_message() then holds a one-line reason (never a secret).
 */
#ifndef MPOSHOST_H
#define MPOSHOST_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

enum mposhost_err {
    MPOSHOST_ERR_IO = -100,         /* a connection failed or closed */
    MPOSHOST_ERR_TIMEOUT = -101,    /* a peer did not answer in time */
    MPOSHOST_ERR_TLS = -102,        /* TLS handshake or certificate check failed */
    MPOSHOST_ERR_BACKEND = -103,    /* the back end answered ERROR (mposhost_backend_error()) */
    MPOSHOST_ERR_TERMINAL = -104,   /* the terminal refused a command (ERROR event) */
    MPOSHOST_ERR_PROTOCOL = -105,   /* a peer sent something the protocol does not allow */
    MPOSHOST_ERR_NOT_LOGGED = -106, /* no session in the state file, or it expired */
    MPOSHOST_ERR_CONFIG = -107,     /* missing or bad configuration (location, addresses) */
    MPOSHOST_ERR_STATE = -108       /* the state file cannot be read or written safely */
};

/* Terminal RESULT outcomes (docs/protocol.md 1.4). */
enum mposhost_outcome {
    MPOSHOST_APPROVED = 1,
    MPOSHOST_DECLINED = 2,
    MPOSHOST_CANCELLED = 3,
    MPOSHOST_NO_RESPONSE = 4,
    MPOSHOST_CARD_ERROR = 5,
    MPOSHOST_ACTIVATED = 6,
    MPOSHOST_ACTIVATION_FAILED = 7
};

enum mposhost_txn_type {
    MPOSHOST_SALE = 1,
    MPOSHOST_VOID = 2,
    MPOSHOST_REFUND = 3,
    MPOSHOST_BALANCE = 4
};

/* A prompt the terminal shows on its own display (docs/protocol.md 1.4, PROMPT_SHOWN). */
struct mposhost_prompt {
    uint8_t id; /* 1..18, the table of docs/protocol.md 1.4 */
    uint8_t txn_type;
    uint64_t amount;
    uint16_t currency;
    uint8_t count;
};

struct mposhost_config {
    const char *terminal;    /* "unix:PATH" or "tcp:HOST:PORT"; NULL for back-end-only work */
    const char *backend;     /* "HOST:PORT" */
    const char *ca_file;     /* PEM: the only trust anchor for the back end's chain */
    const char *server_name; /* name checked in the back end's certificate (and SNI) */
    const char *state_file;  /* session state (0600) */
    const uint8_t *app_key;  /* device-ID key (>= 16 bytes); NULL: the built-in app key */
    size_t app_key_len;
    int have_location; /* H-GEO-1: messages need a location; 0 = none configured */
    int32_t lat_e7, lon_e7;
    uint32_t accuracy_m;
    uint64_t loc_time;       /* Unix seconds of the fix (gpsd); 0 = the time of each message */
    unsigned timeout_ms;     /* per wait for a peer's answer; 0 = 30000 */
    unsigned txn_timeout_ms; /* a whole transaction or activation; 0 = 180000 */
    /* Called for each PROMPT_SHOWN event, and with short progress lines (never secrets). */
    void (*on_prompt)(void *ctx, const struct mposhost_prompt *p);
    void (*on_progress)(void *ctx, const char *line);
    void *cb_ctx;
};

struct mposhost_session {
    char merchant[16];
    char username[33];
    char role[17];
    uint64_t expires;
};

struct mposhost_terminal_info {
    uint8_t state; /* docs/protocol.md 1.5 */
    char serial[33];
    char firmware[33];
};

/* The outcome of a transaction or activation: the terminal's RESULT, plus the back end's
 * TXN_RESULT when it sent one (have_backend). */
struct mposhost_receipt {
    uint8_t outcome; /* enum mposhost_outcome */
    uint8_t txn_type;
    uint64_t amount;
    uint16_t currency;
    uint32_t sequence;
    char response_code[3];
    char auth_code[7];
    char rrn[13];
    char masked_pan[20];
    int have_backend;
    char merchant_id[16];
    char terminal_id[9];
};

typedef struct mposhost mposhost;

/* Creates a handle; the strings of cfg are copied. */
int mposhost_new(const struct mposhost_config *cfg, mposhost **out) MPOS_MUST_CHECK;
/* Closes the connections and frees h (NULL allowed); secrets are wiped. */
void mposhost_free(mposhost *h);
/* The reason of the last failure, one line. */
const char *mposhost_message(const mposhost *h);
/* The back end's error code (docs/system-design.md 1.4) of the last MPOSHOST_ERR_BACKEND. */
unsigned mposhost_backend_error(const mposhost *h);
/* A short English text for an enum mposhost_err or enum mpos_err. */
const char *mposhost_strerror(int rc);

/* LOGIN: stores the session (token, expiry, merchant, role) in the state file (0600). */
int mposhost_login(mposhost *h, const char *merchant, const char *username, const char *password,
                   struct mposhost_session *out) MPOS_MUST_CHECK;
/* The stored session (does not contact anyone). */
int mposhost_session_get(mposhost *h, struct mposhost_session *out) MPOS_MUST_CHECK;
/* LOGOUT: the back end revokes the token; the state file is removed either way. */
int mposhost_logout(mposhost *h) MPOS_MUST_CHECK;
/* GET_INFO on the terminal link. */
int mposhost_info(mposhost *h, struct mposhost_terminal_info *out) MPOS_MUST_CHECK;
/* ACTIVATE with the code, relaying the tunnel until the terminal's RESULT. */
int mposhost_activate(mposhost *h, const char *code, struct mposhost_receipt *out) MPOS_MUST_CHECK;
/* A transaction: SET_HOST_LOCATION, TXN_BEGIN, START_TXN, relay, RESULT and TXN_RESULT.
 * reference: the original's RRN for void and refund, NULL otherwise; a void with amount 0
 * takes the original's amount and currency from TXN_OK (the back end's journal). Returns 0 whenever
 * the terminal reported an outcome (approved or not: see out->outcome). */
int mposhost_txn(mposhost *h, enum mposhost_txn_type type, uint64_t amount, uint16_t currency,
                 const char *reference, struct mposhost_receipt *out) MPOS_MUST_CHECK;
/* SETTLE (supervisor): the back end's totals as key=value lines into text (cap bytes). */
int mposhost_settle(mposhost *h, char *text, size_t cap) MPOS_MUST_CHECK;

/* Parses a decimal amount ("12.34") into minor units with the currency's exponent: digits,
 * optionally '.' and exactly `exponent` digits (none when exponent is 0); at most 12 digits in
 * all, no sign, no spaces. MPOS_ERR_FORMAT otherwise. */
int mposhost_parse_amount(const char *s, unsigned exponent, uint64_t *minor) MPOS_MUST_CHECK;
/* Formats minor units with the exponent ("12.34") into out (cap >= 24). */
void mposhost_format_amount(uint64_t minor, unsigned exponent, char *out, size_t cap);
/* The ISO 4217 exponent of a numeric currency code (2 unless known otherwise). */
unsigned mposhost_currency_exponent(uint16_t currency);

#endif
