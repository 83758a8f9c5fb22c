/* openmpos terminal: the hardware abstraction layer (HAL) of the portable core.
 *
 * The terminal core (terminal/core/) reaches the world only through this header
 * (docs/terminal-design.md, core rules): card reader, keypad, display, secure storage, random
 * generator, clock and the TLS client port. Each part is a struct of function pointers with
 * a caller-provided context (`ctx`, passed back as the first argument of every function);
 * the port fills the structs once at start-up and the core never allocates, opens a file or
 * calls the OS itself. A port is the Linux simulator (terminal/sim/) or a secure MCU.
 *
 * Conventions for every function below:
 *   - 0 is success; a negative value is an enum mpos_err (lib/'s codes or the terminal codes
 *     below): the operation failed and, unless the function says otherwise, nothing changed;
 *     a positive value is an expected outcome that is not a failure (enum mpos_hal_status:
 *     a timeout, no card, a slot that does not exist).
 *   - Lengths are in bytes, maxima are compile-time constants (MPOS_HAL_*), every output
 *     buffer has the stated capacity and the implementation never writes past it.
 *   - A function is called by one thread at a time for a given ctx; it may block up to the
 *     timeout it is given (or, without a timeout, for as long as the hardware needs).
 *   - Implementations never log or keep what passes through them beyond what the contract
 *     says (keys, PIN digits, card data, storage contents).
 */
#ifndef MPOS_TERMINAL_HAL_H
#define MPOS_TERMINAL_HAL_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"

/* ---- terminal error codes and statuses -------------------------------------------------- */

/* Failures the terminal adds to enum mpos_err (lib/ uses -1 .. -14). */
enum mpos_hal_err {
    MPOS_ERR_IO = -32,         /* the device (storage, reader, link) failed to do the job */
    MPOS_ERR_PERMISSION = -33, /* storage is not private to the terminal (mode, owner, type) */
    MPOS_ERR_ROLLBACK = -34,   /* a stored record is older than its monotonic counter says */
    MPOS_ERR_STATE = -35       /* not allowed in the current state (out of order, failed) */
};

/* Expected outcomes (positive). */
enum mpos_hal_status {
    MPOS_HAL_TIMEOUT = 1,      /* nothing happened within the timeout */
    MPOS_HAL_NO_CARD = 2,      /* no card in the reader / nothing swiped */
    MPOS_HAL_CARD_MUTE = 3,    /* a card is there but does not answer (no ATR, no R-APDU) */
    MPOS_HAL_CARD_REMOVED = 4, /* the card left during the operation */
    MPOS_HAL_NOT_FOUND = 5,    /* storage: the slot does not exist */
    MPOS_HAL_CLOSED = 6        /* TLS: the peer closed the connection (close_notify) */
};

/* A short fixed English description of an error or status (never contains data). */
static inline const char *mpos_hal_strerror(int rc)
{
    switch (rc) {
    case MPOS_ERR_IO:
        return "device I/O failure";
    case MPOS_ERR_PERMISSION:
        return "storage is not private";
    case MPOS_ERR_ROLLBACK:
        return "stored record rolled back";
    case MPOS_ERR_STATE:
        return "not allowed in this state";
    case MPOS_HAL_TIMEOUT:
        return "timeout";
    case MPOS_HAL_NO_CARD:
        return "no card";
    case MPOS_HAL_CARD_MUTE:
        return "card does not answer";
    case MPOS_HAL_CARD_REMOVED:
        return "card removed";
    case MPOS_HAL_NOT_FOUND:
        return "not found";
    case MPOS_HAL_CLOSED:
        return "connection closed";
    default:
        return mpos_strerror(rc);
    }
}

/* ---- card reader: chip (ISO/IEC 7816-3/-4) and magnetic stripe (ISO/IEC 7811/7813) ------- */

/* The same values as terminal/core/emv/emv_kernel.h (an identical redefinition: a mismatch
 * is a compile error wherever both are included). */
#define MPOS_CAPDU_MAX 261 /* CLA INS P1 P2 Lc, 255 data bytes, Le */
#define MPOS_RAPDU_MAX 258 /* 256 data bytes and SW1 SW2 */
#define MPOS_ATR_MAX   33  /* ISO/IEC 7816-3 8.2 */

#define MPOS_HAL_TRACK1_MAX 79 /* ISO/IEC 7813: characters, sentinels and LRC included */
#define MPOS_HAL_TRACK2_MAX 40

/* What one swipe gave, as the characters the reader decoded (ASCII, not NUL-terminated; the
 * format is terminal/core/msr/msr.h's). A track that was not read has length 0. Holds
 * cardholder data: the core wipes it after parsing. */
typedef struct mpos_hal_tracks {
    char track1[MPOS_HAL_TRACK1_MAX];
    size_t track1_len;
    char track2[MPOS_HAL_TRACK2_MAX];
    size_t track2_len;
} mpos_hal_tracks;

/* What the reader saw. */
enum mpos_card_event {
    MPOS_CARD_EVENT_INSERTED = 1, /* a card sits in the contact slot: power_on it */
    MPOS_CARD_EVENT_SWIPED = 2,   /* a stripe was read: take it with read_tracks */
    MPOS_CARD_EVENT_REMOVED = 3   /* the slot is empty again */
};

typedef struct mpos_hal_card_reader {
    void *ctx;
    /* Waits up to timeout_ms for the next change: a card inserted, a swipe, a card removed
     * (reported only when one had been inserted). 0 with *event; MPOS_HAL_TIMEOUT;
     * MPOS_ERR_IO. A card already inserted when the wait starts is reported at once. */
    int (*wait_event)(void *ctx, uint32_t timeout_ms, enum mpos_card_event *event);
    /* Powers the inserted card (cold reset, ISO/IEC 7816-3 6.2.2; class A, then B as the
     * card allows) and writes its ATR (at most MPOS_ATR_MAX bytes). The signature is the EMV
     * kernel's reset callback. 0 with the ATR; MPOS_HAL_NO_CARD when the slot is empty;
     * MPOS_HAL_CARD_MUTE when no valid ATR came (the contacts are deactivated again);
     * MPOS_ERR_IO when the reader failed. */
    int (*power_on)(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len);
    /* Deactivates the contacts (ISO/IEC 7816-3 6.4). 0 (also when nothing is powered) or
     * MPOS_ERR_IO. */
    int (*power_off)(void *ctx);
    /* One command-response pair with the powered card: capdu (4 to MPOS_CAPDU_MAX bytes, a
     * short APDU of case 1 to 4) in, the R-APDU (data and SW1 SW2, 2 to MPOS_RAPDU_MAX
     * bytes) out. The transport handles T=0 procedure bytes and T=1 blocks; 61xx and 6Cxx
     * are the caller's. The signature is the EMV kernel's mpos_card_io_fn. 0 with the
     * R-APDU; MPOS_HAL_CARD_REMOVED or MPOS_HAL_CARD_MUTE when no response came;
     * MPOS_ERR_LENGTH for a C-APDU out of range; MPOS_ERR_STATE when no card is powered;
     * MPOS_ERR_IO. A response longer than MPOS_RAPDU_MAX is MPOS_ERR_IO, never truncated. */
    int (*exchange)(void *ctx, const uint8_t *capdu, size_t capdu_len,
                    uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len);
    /* Takes the tracks of the last swipe (the reader keeps one swipe, and forgets it here):
     * tracks 1 and 2 as read; either may be absent, and a track that failed the reader's
     * parity or LRC check is reported absent. 0 with at least one track; MPOS_HAL_NO_CARD
     * when there is no swipe or no readable track; MPOS_ERR_IO. On every non-zero return
     * *tracks is zeroed. NULL when the terminal has no magnetic stripe head. */
    int (*read_tracks)(void *ctx, mpos_hal_tracks *tracks);
} mpos_hal_card_reader;

/* ---- keypad ---------------------------------------------------------------------------- */

enum mpos_key {
    MPOS_KEY_0 = 0, /* MPOS_KEY_0 + d is digit d */
    MPOS_KEY_1,
    MPOS_KEY_2,
    MPOS_KEY_3,
    MPOS_KEY_4,
    MPOS_KEY_5,
    MPOS_KEY_6,
    MPOS_KEY_7,
    MPOS_KEY_8,
    MPOS_KEY_9,
    MPOS_KEY_OK = 10,     /* enter / confirm */
    MPOS_KEY_CANCEL = 11, /* abort */
    MPOS_KEY_CLEAR = 12,  /* correction: erase the last digit */
    MPOS_KEY_TIMEOUT = 13 /* no key within the timeout */
};

typedef struct mpos_hal_keypad {
    void *ctx;
    /* Waits up to timeout_ms for one key press and writes it to *key (MPOS_KEY_TIMEOUT when
     * none came). 0, or MPOS_ERR_IO (then *key is MPOS_KEY_CANCEL). The keypad is the
     * terminal's own (the PIN pad): the implementation gives the digit to the core only,
     * never echoes, logs or buffers it, and does not report which digit was pressed to
     * anything else (a display shows at most a '*' per digit, driven by the core). */
    int (*read_key)(void *ctx, uint32_t timeout_ms, enum mpos_key *key);
} mpos_hal_keypad;

/* ---- display: a fixed table of prompts with typed parameters ---------------------------- */

/* The prompt table. The values are the host link's (terminal/core/link/link.h, enum
 * mpos_link_prompt, where 6 is PRESENT_CARD and 10 is WRONG_PIN), so the core reports the
 * prompt it shows with the same code. The display renders its own text for each; nothing
 * from outside the terminal is ever shown as text (T-LIMIT-1, G-PROMPT-1). */
enum mpos_prompt {
    MPOS_HAL_PROMPT_WELCOME = 1,
    MPOS_HAL_PROMPT_NOT_ACTIVATED = 2,
    MPOS_HAL_PROMPT_ACTIVATING = 3,
    MPOS_HAL_PROMPT_ACTIVATED = 4,
    MPOS_HAL_PROMPT_CONFIRM_AMOUNT = 5,   /* type, amount: OK to accept, CANCEL to refuse */
    MPOS_HAL_PROMPT_INSERT_CARD = 6,      /* type, amount: insert or swipe */
    MPOS_HAL_PROMPT_USE_CHIP = 7,         /* a chip card was swiped */
    MPOS_HAL_PROMPT_CHIP_ERROR_SWIPE = 8, /* chip unreadable: fallback to the stripe */
    MPOS_HAL_PROMPT_ENTER_PIN = 9,        /* amount, [masked PAN]; digits as '*' (count) */
    MPOS_HAL_PROMPT_PIN_RETRY = 10,       /* wrong PIN: count = tries left */
    MPOS_HAL_PROMPT_PROCESSING = 11,
    MPOS_HAL_PROMPT_APPROVED = 12, /* type, amount, [masked PAN] */
    MPOS_HAL_PROMPT_DECLINED = 13, /* [result code] */
    MPOS_HAL_PROMPT_CANCELLED = 14,
    MPOS_HAL_PROMPT_REMOVE_CARD = 15,
    MPOS_HAL_PROMPT_CARD_ERROR = 16,
    MPOS_HAL_PROMPT_NO_RESPONSE = 17,
    MPOS_HAL_PROMPT_CARD_EXPIRED = 18
};
#define MPOS_HAL_PROMPT_MAX 18

/* Parameter bits. */
#define MPOS_PROMPT_P_TYPE   0x01u /* txn_type */
#define MPOS_PROMPT_P_AMOUNT 0x02u /* amount and currency */
#define MPOS_PROMPT_P_COUNT  0x04u /* count: PIN digits entered, or tries left */
#define MPOS_PROMPT_P_PAN    0x08u /* masked PAN */
#define MPOS_PROMPT_P_RESULT 0x10u /* result code */

#define MPOS_PROMPT_MAX_AMOUNT  999999999999ull /* n12, minor units */
#define MPOS_PROMPT_PAN_MIN_LEN 12
#define MPOS_PROMPT_PAN_MAX_LEN 19
#define MPOS_PROMPT_RESULT_LEN  2 /* ISO 8583 response code, [0-9A-Z] */

/* Typed parameters of a prompt. `present` says which are given; the others are zero. */
typedef struct mpos_prompt_params {
    unsigned present;  /* MPOS_PROMPT_P_* bits */
    uint8_t txn_type;  /* 1 sale, 2 void, 3 refund, 4 balance (the link's codes) */
    uint64_t amount;   /* minor units, 0..MPOS_PROMPT_MAX_AMOUNT */
    uint16_t currency; /* ISO 4217 numeric, 1..999 */
    uint8_t count;     /* 0..12 */
    char masked_pan[MPOS_PROMPT_PAN_MAX_LEN + 1]; /* first 6 and last 4 digits, '*' between */
    char result[MPOS_PROMPT_RESULT_LEN + 1];
} mpos_prompt_params;

/* The parameters a prompt must have, and those it may have; both 0 for an unknown prompt
 * (which no display shows). */
static inline unsigned mpos_prompt_required(unsigned prompt)
{
    switch (prompt) {
    case MPOS_HAL_PROMPT_CONFIRM_AMOUNT:
    case MPOS_HAL_PROMPT_INSERT_CARD:
    case MPOS_HAL_PROMPT_APPROVED:
        return MPOS_PROMPT_P_TYPE | MPOS_PROMPT_P_AMOUNT;
    case MPOS_HAL_PROMPT_ENTER_PIN:
        return MPOS_PROMPT_P_AMOUNT | MPOS_PROMPT_P_COUNT;
    case MPOS_HAL_PROMPT_PIN_RETRY:
        return MPOS_PROMPT_P_COUNT;
    default:
        return 0;
    }
}

static inline unsigned mpos_prompt_allowed(unsigned prompt)
{
    switch (prompt) {
    case MPOS_HAL_PROMPT_ENTER_PIN:
    case MPOS_HAL_PROMPT_APPROVED:
        return mpos_prompt_required(prompt) | MPOS_PROMPT_P_PAN;
    case MPOS_HAL_PROMPT_DECLINED:
        return MPOS_PROMPT_P_RESULT;
    default:
        return (prompt >= 1 && prompt <= MPOS_HAL_PROMPT_MAX) ? mpos_prompt_required(prompt) : 0;
    }
}

/* 1 if s (NUL-terminated within MPOS_PROMPT_PAN_MAX_LEN + 1 bytes) is a masked PAN: 12 to 19
 * characters, the first 6 and last 4 digits, '*' in between (G-ACCT-2). */
static inline int mpos_prompt_pan_is_masked(const char s[MPOS_PROMPT_PAN_MAX_LEN + 1])
{
    size_t len = 0;
    while (len <= MPOS_PROMPT_PAN_MAX_LEN && s[len] != '\0') {
        len++;
    }
    if (len < MPOS_PROMPT_PAN_MIN_LEN || len > MPOS_PROMPT_PAN_MAX_LEN) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        int edge = i < 6 || i >= len - 4;
        if (edge ? (s[i] < '0' || s[i] > '9') : s[i] != '*') {
            return 0;
        }
    }
    return 1;
}

/* 1 if p is a valid parameter set for prompt: the required ones present, nothing outside the
 * allowed ones, each field in range and the absent ones zero. Displays call it and refuse
 * anything else (MPOS_ERR_ARG). */
static inline int mpos_prompt_params_valid(unsigned prompt, const mpos_prompt_params *p)
{
    unsigned req = mpos_prompt_required(prompt);
    unsigned allowed = mpos_prompt_allowed(prompt);
    if (p == NULL || prompt < 1 || prompt > MPOS_HAL_PROMPT_MAX || (p->present & req) != req ||
        (p->present & ~allowed) != 0) {
        return 0;
    }
    if ((p->present & MPOS_PROMPT_P_TYPE) ? (p->txn_type < 1 || p->txn_type > 4)
                                          : p->txn_type != 0) {
        return 0;
    }
    if ((p->present & MPOS_PROMPT_P_AMOUNT)
            ? (p->amount > MPOS_PROMPT_MAX_AMOUNT || p->currency < 1 || p->currency > 999)
            : (p->amount != 0 || p->currency != 0)) {
        return 0;
    }
    if ((p->present & MPOS_PROMPT_P_COUNT) ? p->count > 12 : p->count != 0) {
        return 0;
    }
    if ((p->present & MPOS_PROMPT_P_PAN) ? !mpos_prompt_pan_is_masked(p->masked_pan)
                                         : p->masked_pan[0] != '\0') {
        return 0;
    }
    if (p->present & MPOS_PROMPT_P_RESULT) {
        for (size_t i = 0; i < MPOS_PROMPT_RESULT_LEN; i++) {
            char c = p->result[i];
            if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) {
                return 0;
            }
        }
        return p->result[MPOS_PROMPT_RESULT_LEN] == '\0';
    }
    return p->result[0] == '\0';
}

typedef struct mpos_hal_display {
    void *ctx;
    /* Shows prompt with its parameters, replacing what was shown. The display renders its
     * own fixed text per prompt and formats the parameters itself (amount with the
     * currency's minor units, the masked PAN as given). MPOS_ERR_ARG when
     * mpos_prompt_params_valid fails (nothing shown), MPOS_ERR_IO. */
    int (*show)(void *ctx, enum mpos_prompt prompt, const mpos_prompt_params *params);
} mpos_hal_display;

/* ---- secure storage: named slots, atomic writes, monotonic counters --------------------- */

#define MPOS_HAL_SLOT_NAME_MAX  16   /* [a-z0-9_-], 1..16 characters */
#define MPOS_HAL_SLOT_MAX       8192 /* bytes in one slot */
#define MPOS_HAL_COUNTERS       4    /* monotonic counters 0..3 */
#define MPOS_HAL_DEVICE_KEY_MAX 64   /* longest key derive_key gives */
#define MPOS_HAL_LABEL_MAX      64   /* longest derivation label */

/* Storage the terminal alone can read and write, which keeps its contents across power loss.
 * Durability is part of the contract: "durable" means a power loss at any later moment
 * cannot undo it. */
typedef struct mpos_hal_storage {
    void *ctx;
    /* Reads slot name into buf (capacity cap) and its length into *len. 0; MPOS_HAL_NOT_FOUND
     * when the slot does not exist; MPOS_ERR_LENGTH when it holds more than cap bytes;
     * MPOS_ERR_PERMISSION when the backing store is readable or writable by others;
     * MPOS_ERR_ARG for a name outside the rule; MPOS_ERR_IO. What a read returns is durable
     * (an implementation makes the visible state durable before it reads), so a later read
     * after a power loss returns the same content or a later write's. */
    int (*read)(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len);
    /* Replaces the content of slot name (creating it) with len bytes (1 to
     * MPOS_HAL_SLOT_MAX), atomically: on Linux, write a temporary file, fsync it, rename it
     * over the slot, fsync the directory. 0 means the new content is durable. On any error
     * (MPOS_ERR_IO, MPOS_ERR_PERMISSION) and on power loss during the call, the slot holds
     * either its old content or the new one, entirely; never a mix, never a partial write.
     * After an error the caller treats the outcome as unknown. */
    int (*write)(void *ctx, const char *name, const uint8_t *data, size_t len);
    /* Reads monotonic counter id (0 .. MPOS_HAL_COUNTERS - 1); a counter never written is
     * 0. MPOS_ERR_ARG, MPOS_ERR_IO. */
    int (*counter_read)(void *ctx, uint32_t id, uint64_t *value);
    /* Adds 1 to counter id and writes the new value to *value; 0 means the new value is
     * durable. A counter never goes down, whatever happens to the slots (on a device it
     * lives in the secure element or a replay-protected memory block, where restoring an
     * old copy of the storage cannot reset it). On error or power loss it holds the old or
     * the new value. MPOS_ERR_ARG, MPOS_ERR_IO. */
    int (*counter_increment)(void *ctx, uint32_t id, uint64_t *value);
    /* Derives out_len (16 to MPOS_HAL_DEVICE_KEY_MAX) bytes of key from the device storage
     * key for label (1 to MPOS_HAL_LABEL_MAX bytes): the same label always gives the same
     * key on one device, and another device gives another. The device storage key itself
     * never leaves the implementation: on a device it is held by the secure element (or
     * fused into the MCU's key storage) and the derivation runs there; the Linux simulator
     * keeps it in a file of mode 0600 and derives with HKDF-SHA-256 (RFC 5869). MPOS_ERR_ARG,
     * MPOS_ERR_LENGTH, MPOS_ERR_IO (out zeroed). */
    int (*derive_key)(void *ctx, const uint8_t *label, size_t label_len, uint8_t *out,
                      size_t out_len);
} mpos_hal_storage;

/* 1 if name follows the slot-name rule. */
static inline int mpos_hal_slot_name_valid(const char *name)
{
    size_t len = 0;
    if (name == NULL) {
        return 0;
    }
    while (len <= MPOS_HAL_SLOT_NAME_MAX && name[len] != '\0') {
        char c = name[len];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
        len++;
    }
    return len >= 1 && len <= MPOS_HAL_SLOT_NAME_MAX;
}

/* ---- random generator ------------------------------------------------------------------- */

typedef struct mpos_hal_rng {
    void *ctx;
    /* len bytes from a cryptographically secure generator (NIST SP 800-90A/B/C class: the
     * device TRNG conditioned by a DRBG; on Linux, mpos_random_bytes). 0, or MPOS_ERR_RNG
     * with out zeroed: the core never falls back to anything weaker. */
    int (*random)(void *ctx, uint8_t *out, size_t len);
} mpos_hal_rng;

/* ---- clock ------------------------------------------------------------------------------ */

typedef struct mpos_hal_clock {
    void *ctx;
    /* Wall-clock time, UTC, in seconds since 1970-01-01T00:00:00Z (leap seconds not
     * counted). It may jump (set by the operator or the back end): use it for timestamps,
     * never for timeouts. 0, or MPOS_ERR_IO when the clock is not set / failed. */
    int (*now)(void *ctx, int64_t *unix_seconds);
    /* Milliseconds since an arbitrary origin, never going backwards, unaffected by changes
     * of the wall clock: timeouts. 0 or MPOS_ERR_IO. */
    int (*monotonic_ms)(void *ctx, uint64_t *ms);
} mpos_hal_clock;

/* ---- TLS client port -------------------------------------------------------------------- */

/* The byte pipe the host relays (link TUNNEL_DATA frames): the TLS port sends and receives
 * TLS records through it and never opens a socket of its own. Implemented by the core. */
typedef struct mpos_hal_transport {
    void *ctx;
    /* Sends len bytes towards the back end. 0 or MPOS_ERR_IO. */
    int (*send)(void *ctx, const uint8_t *data, size_t len);
    /* Receives up to cap bytes from the back end (at least 1 on success). 0;
     * MPOS_HAL_TIMEOUT after timeout_ms; MPOS_HAL_CLOSED when the host closed the tunnel;
     * MPOS_ERR_IO. */
    int (*recv)(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms);
} mpos_hal_transport;

#define MPOS_HAL_SERVER_NAME_MAX 253 /* DNS name */
#define MPOS_HAL_SIG_LEN         64  /* ECDSA P-256 r || s */

/* The terminal's side of the connection. */
typedef struct mpos_hal_tls_config {
    const char *server_name; /* the back end's DNS name: SNI and certificate check */
    const uint8_t *ca_cert;  /* trust anchor (DER X.509): the back-end CA */
    size_t ca_cert_len;
    const uint8_t *client_cert; /* the device certificate (DER X.509, P-256 key) */
    size_t client_cert_len;
    /* Signs for the client's CertificateVerify: ECDSA P-256 with SHA-256 over msg (the
     * TLS 1.3 content of RFC 8446 4.4.3), raw r || s. The device private key stays in the
     * key store (terminal/core/keystore); the TLS port never sees it. 0 or a negative
     * enum mpos_err. */
    int (*sign)(void *sign_ctx, const uint8_t *msg, size_t len, uint8_t sig[MPOS_HAL_SIG_LEN]);
    void *sign_ctx;
} mpos_hal_tls_config;

typedef struct mpos_hal_tls {
    void *ctx;
    /* Runs a TLS 1.3 handshake (RFC 8446; nothing older is offered or accepted, no 0-RTT,
     * no renegotiation: T-CHAN-1) over transport, as client with the certificate of cfg
     * (mutual authentication), verifying the server's chain to cfg->ca_cert and its name
     * against cfg->server_name. Resumption: the port may keep the last session ticket of
     * the server, in memory only, and offer it (PSK with (EC)DHE, never psk_ke alone) only
     * to the same server name, trust anchor and client certificate; the resumed handshake
     * is bound to the server authentication of the one that issued the ticket, and the
     * server re-checks the device from the certificate the ticket holds. No early data is
     * ever sent. cfg and transport must stay valid until close. 0 when the connection is
     * up; MPOS_ERR_VERIFY when the server is not authentic; MPOS_HAL_TIMEOUT;
     * MPOS_HAL_CLOSED; MPOS_ERR_STATE when already open; MPOS_ERR_IO. */
    int (*open)(void *ctx, const mpos_hal_tls_config *cfg, const mpos_hal_transport *transport);
    /* Sends len application bytes, all or nothing. 0, MPOS_HAL_CLOSED, MPOS_ERR_STATE (not
     * open), MPOS_ERR_IO. */
    int (*write)(void *ctx, const uint8_t *data, size_t len);
    /* Receives up to cap application bytes (at least 1 on success). 0; MPOS_HAL_TIMEOUT;
     * MPOS_HAL_CLOSED after the peer's close_notify (a connection cut without it is
     * MPOS_ERR_IO: a truncation is never taken for an end); MPOS_ERR_VERIFY when a record
     * does not authenticate; MPOS_ERR_STATE; MPOS_ERR_IO. */
    int (*read)(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms);
    /* Sends close_notify if the connection is up and forgets every key of the connection
     * (but a session ticket kept for the next open, see open). Always safe to call. */
    void (*close)(void *ctx);
} mpos_hal_tls;

/* ---- the whole HAL ---------------------------------------------------------------------- */

/* What the core is given at start-up. Each member points to a struct the port owns for the
 * terminal's lifetime; a part the build does not have (no magstripe head: read_tracks NULL;
 * no TLS yet) is NULL, and the core refuses the functions that need it. */
typedef struct mpos_hal {
    const mpos_hal_card_reader *reader;
    const mpos_hal_keypad *keypad;
    const mpos_hal_display *display;
    const mpos_hal_storage *storage;
    const mpos_hal_rng *rng;
    const mpos_hal_clock *clock;
    const mpos_hal_tls *tls;
} mpos_hal;

#endif
