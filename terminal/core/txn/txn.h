/* openmpos terminal core: the transaction state machine (G-PROMPT-1, G-TXN-1, T-LIMIT-1,
 * T-LIMIT-2, T-ACCT-1, G-ACCT-2, H-KERNEL-1, T-CHAN-2).
 *
 * One transaction of the closed set (sale, void, refund, balance inquiry), and the reversal
 * of the last one, from START_TXN to the RESULT event:
 *
 *   IDLE --START_TXN--> CONFIRM   the type and amount on the terminal's display
 *                                 (CONFIRM_AMOUNT); OK goes on; CANCEL, the confirmation
 *                                 timeout or a host CANCEL end it (CANCELLED)
 *        --OK--> [ONLINE]         only when a reversal is pending: PROCESSING, the reversal
 *                                 is sent and must be acknowledged, else the transaction ends
 *                                 here (NO_RESPONSE, no card read). It goes before this
 *                                 transaction takes its key because the back end accepts KSN
 *                                 counters in increasing order only (B-REPLAY-1)
 *        --> CARD                 a new terminal sequence number and DUKPT key (the key
 *                                 store persists both before any key exists); PRESENT_CARD.
 *                                 Chip first: the EMV kernel (H-KERNEL-1) up to the first
 *                                 GENERATE AC. A swipe is taken only under the stripe rules
 *                                 (msr.h): a chip card swiped before its chip failed in THIS
 *                                 transaction gets USE_CHIP and the wait goes on; after a
 *                                 chip failure the kernel allows, CHIP_ERROR_SWIPE and the
 *                                 swipe is flagged as a fallback in the sealed request
 *        --> PIN                  online PIN when the kernel's CVM asks for it, always for a
 *                                 stripe (pin_entry.h: keypad only, block built here under
 *                                 this transaction's DUKPT PIN key with this card's PAN);
 *                                 offline PIN for the card when its CVM list says so
 *        --> ONLINE               PROCESSING. A reversal record for this transaction is
 *                                 persisted (reason "terminal failure") BEFORE the sealed
 *                                 request goes out, so a power loss while online reverses;
 *                                 the response is awaited with a timeout and opened with
 *                                 mpos_sealed_open_response (MAC, bound to the KSN and the
 *                                 sequence number: T-CHAN-2). Without a valid response
 *                                 (timeout, tunnel closed, ERROR, bad MAC) the request is
 *                                 RETRIED (cfg.retries, default 1) after retry_delay_ms:
 *                                 the same transaction under a new KSN from the key store
 *                                 (whose own sequence number is skipped) with the ORIGINAL
 *                                 sequence number, the same clear fields, card and EMV data
 *                                 (the chip still awaits its second GENERATE AC), the retry
 *                                 flag (docs/protocol.md 2.3 DF35, 2.8) and no PIN block;
 *                                 the back end answers it with the first outcome. A valid
 *                                 response to the retry (bound to the new KSN) counts as a
 *                                 first one would. Still nothing valid, or 94 (the first
 *                                 still in flight) is "no valid
 *                                 response": the record stays (reason "no response") and the
 *                                 card gets no ARC (AAC). A valid response completes the chip
 *                                 with the ARC and issuer authentication data
 *                                 (mpos_emv_complete); DECLINED_AFTER_APPROVAL keeps the
 *                                 record (reason "card declined"), an approval the card could
 *                                 not complete keeps it too. Otherwise the record is removed
 *        --> RESULT               APPROVED / DECLINED / NO_RESPONSE / CARD_ERROR /
 *                                 CANCELLED on the display, then the RESULT event (masked
 *                                 PAN only), then REMOVE_CARD while a chip card is in
 *        --> IDLE
 *
 * Single source of truth (G-TXN-1, T-LIMIT-2): type, amount, currency and original reference
 * are copied from START_TXN into the context once, while idle; the confirmation prompt, the
 * card prompts, the EMV kernel ('9C', '9F02', '5F2A') and the sealed request all read that
 * one copy, and no command can change it until the transaction is over.
 *
 * The host link (T-LIMIT-1): mpos_txn_command takes START_TXN, CANCEL and SET_HOST_LOCATION
 * only where the state table allows them (mpos_link_check on the session's state), and
 * every state change is reported to the session (mpos_link_session_set_state). Each prompt
 * shown is reported as PROMPT_SHOWN (the PIN digit-count refreshes are not: the count never
 * leaves the terminal), and the end as RESULT.
 *
 * Reversals: one pending at a time, kept by the key store (persisted); sent at the start of
 * the next transaction (or by mpos_txn_flush_reversal when idle), under a new KSN each try
 * and with the reversed transaction's sequence number, which is the back end's idempotency
 * key (each try takes a key, and so a sequence number, from the key store: the numbers a
 * reversal uses are skipped, never reused), and with the record's reason (docs/protocol.md
 * 2.3 DF34; the back end's DE 39). Any valid response acknowledges it. A request whose
 * response was lost is retried in ONLINE (above), without its PIN block (bound to the first
 * KSN; the clear PIN is gone), so the back end can answer only from its journal; it never
 * starts a new charge on a retry. The
 * key store's record has no field for the original reference a void or refund reversal must
 * carry (docs/protocol.md 2.3, DF2E), so this module keeps it in its own storage slot
 * "txn-ref" (sequence and reference, not secret), written before the reversal record.
 *
 * Blocking model: mpos_txn_run runs the whole transaction in the caller's thread. Every
 * keypad and card-reader wait is cut into slices of at most poll_ms; between slices the
 * host's poll hook runs, in which the port may feed link commands to mpos_txn_command (a
 * CANCEL sets a flag the machine honours at its next step; START_TXN is refused). The back
 * end's response is awaited through the net callbacks, which the port implements over the
 * TLS port (terminal/hal.h) and the link's TUNNEL_DATA; while it waits, the port keeps
 * serving the link (a CANCEL there is refused by the state table: the outcome belongs to the
 * back end). The framing of one sealed message inside the TLS stream is the port's and the
 * back end's (docs/protocol.md does not define it yet).
 *
 * Portable core code: no heap, no OS calls, no OpenSSL; the HAL, the callbacks below and
 * lib/ only. Return convention: 0, a positive value where stated, or a negative enum
 * mpos_err (lib/'s and hal.h's codes).
 */
#ifndef MPOS_TERMINAL_TXN_H
#define MPOS_TERMINAL_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "emv_kernel.h"
#include "hal.h"
#include "keystore/keystore.h"
#include "link/link.h"
#include "msr/msr.h"
#include "mpos/err.h"
#include "pin_entry.h"
#include "txn/sealed.h"

/* Defaults (0 in the configuration takes them). */
#define MPOS_TXN_CONFIRM_TIMEOUT_MS 60000u
#define MPOS_TXN_CARD_TIMEOUT_MS    60000u
#define MPOS_TXN_ONLINE_TIMEOUT_MS  30000u
#define MPOS_TXN_REMOVE_TIMEOUT_MS  30000u
#define MPOS_TXN_POLL_MS            250u
#define MPOS_TXN_REVERSAL_TRIES     2u
#define MPOS_TXN_RETRIES            1u /* retries of a request whose response was lost */
#define MPOS_TXN_RETRY_DELAY_MS     2000u
#define MPOS_TXN_MAX_RETRIES        5u
#define MPOS_TXN_NO_RETRY           UINT32_MAX /* mpos_txn_config.retries: never retry */

#define MPOS_TXN_MAX_CHIP_ATTEMPTS 3 /* chip reads in one transaction */
#define MPOS_TXN_MAX_BAD_SWIPES    3 /* unreadable swipes in one transaction */
#define MPOS_TXN_REF_SLOT          "txn-ref"
#define MPOS_TXN_FRAME_LEN         128 /* largest event frame this module sends */

/* The states (each maps to one state of the host link, docs/protocol.md 1.5). */
enum mpos_txn_state {
    MPOS_TXN_IDLE = 0,    /* link: idle */
    MPOS_TXN_CONFIRM = 1, /* link: awaiting confirmation */
    MPOS_TXN_CARD = 2,    /* link: awaiting card */
    MPOS_TXN_PIN = 3,     /* link: awaiting PIN */
    MPOS_TXN_ONLINE = 4,  /* link: online (also while a reversal is sent) */
    MPOS_TXN_RESULT = 5   /* link: showing result */
};

/* Why a transaction ended as it did (diagnostics; the RESULT event carries the outcome). */
enum mpos_txn_reason {
    MPOS_TXN_R_NONE = 0,
    MPOS_TXN_R_APPROVED,
    MPOS_TXN_R_CONFIRM_CANCELLED, /* CANCEL on the keypad at the confirmation */
    MPOS_TXN_R_CONFIRM_TIMEOUT,
    MPOS_TXN_R_HOST_CANCELLED, /* CANCEL from the host link */
    MPOS_TXN_R_CARD_CANCELLED, /* CANCEL on the keypad while waiting for the card */
    MPOS_TXN_R_CARD_TIMEOUT,
    MPOS_TXN_R_PIN_CANCELLED,
    MPOS_TXN_R_PIN_TIMEOUT,
    MPOS_TXN_R_PIN_RATE_LIMITED,
    MPOS_TXN_R_CARD_REFUSED,     /* chip terminated, no fallback, stripe not accepted */
    MPOS_TXN_R_CARD_DECLINED,    /* the card declined offline (AAC at the first GENERATE AC) */
    MPOS_TXN_R_REVERSAL_PENDING, /* the previous transaction's reversal could not be sent */
    MPOS_TXN_R_NO_RESPONSE,      /* nothing came back in time, or the channel failed */
    MPOS_TXN_R_BAD_RESPONSE,     /* a response that did not verify or answer this request */
    MPOS_TXN_R_ISSUER_DECLINED,
    MPOS_TXN_R_CARD_DECLINED_AFTER_APPROVAL, /* reversed */
    MPOS_TXN_R_CARD_FAILED_AFTER_APPROVAL,   /* chip gone or wrong at completion: reversed */
    MPOS_TXN_R_TERMINAL                      /* a HAL, key store or internal failure */
};

/* The store of transaction keys and of the pending reversal: the key store
 * (terminal/core/keystore, mpos_txn_store_keystore in txn_keystore.h), or a test double. The
 * functions keep the key store's contracts: next_transaction persists the new DUKPT state and
 * sequence number before it derives a key; reversal_store and reversal_done persist before
 * they return. */
typedef struct mpos_txn_store {
    void *ctx;
    int (*next_transaction)(void *ctx, mpos_keystore_txn *keys);
    /* Merchant ID (15) and terminal ID (8); MPOS_ERR_STATE when not activated. */
    int (*activation)(void *ctx, char merchant_id[MPOS_KEYSTORE_MID_LEN + 1],
                      char terminal_id[MPOS_KEYSTORE_TID_LEN + 1]);
    int (*reversal_store)(void *ctx, const mpos_keystore_reversal *r);
    /* 0 with *r, or MPOS_HAL_NOT_FOUND. */
    int (*reversal_get)(void *ctx, mpos_keystore_reversal *r);
    int (*reversal_done)(void *ctx, uint32_t sequence);
} mpos_txn_store;

/* The channel to the back end (inside the TLS tunnel): one sealed message out, one in. */
typedef struct mpos_txn_net {
    void *ctx;
    /* 0 when the whole message was handed to the TLS port, else nonzero. */
    int (*send)(void *ctx, const uint8_t *msg, size_t len);
    /* One whole message (at most cap bytes): 0; MPOS_HAL_TIMEOUT after timeout_ms;
     * MPOS_HAL_CLOSED; a negative enum mpos_err. */
    int (*recv)(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms);
} mpos_txn_net;

/* The host link: the session (its state is set here), where event frames go, and a hook
 * that lets the port read the link during waits. */
typedef struct mpos_txn_host {
    void *ctx;
    mpos_link_session *session; /* required */
    /* Writes one event frame; a failure is ignored (the link only informs the host). NULL:
     * events are dropped. */
    int (*write)(void *ctx, const uint8_t *frame, size_t len);
    /* Optional: called between wait slices; may call mpos_txn_command. */
    void (*poll)(void *ctx);
} mpos_txn_host;

typedef struct mpos_txn_env {
    const mpos_hal *hal; /* reader, keypad, display, rng, clock required; storage for the
                            original reference of void/refund reversals */
    mpos_crypto_ctx *cc;
    mpos_txn_store store;
    mpos_txn_net net;
    mpos_txn_host host;
} mpos_txn_env;

typedef struct mpos_txn_config {
    const mpos_emv_params *emv; /* copied at init; the card data of each transaction
                                   overrides 5F2A (the confirmed currency), 9F1C and 9F16 (the
                                   activation's terminal and merchant IDs) */
    uint32_t confirm_timeout_ms;
    uint32_t card_timeout_ms;
    uint32_t online_timeout_ms;
    uint32_t remove_timeout_ms;
    uint32_t poll_ms;
    uint32_t reversal_tries; /* sends of a pending reversal per flush */
    uint32_t retries;        /* retries of a request that got no valid response (0: the
                                default 1; MPOS_TXN_NO_RETRY: none; at most
                                MPOS_TXN_MAX_RETRIES) */
    uint32_t retry_delay_ms; /* pause before each retry (0: the default) */
    int32_t utc_offset_s;    /* local time of the kernel's '9A' / '9F21' and of the expiry
                                check, from the HAL's UTC clock */
    mpos_pin_entry_config pin;
} mpos_txn_config;

/* The end of a transaction, as the RESULT event reports it (and a little more). No
 * cardholder data beyond the masked PAN. */
typedef struct mpos_txn_result {
    uint8_t outcome;  /* enum mpos_link_outcome */
    uint8_t reason;   /* enum mpos_txn_reason */
    uint8_t txn_type; /* as confirmed */
    uint64_t amount;
    uint16_t currency;
    uint32_t sequence;     /* terminal sequence number (0 if none was taken) */
    char response_code[3]; /* "" or an2 */
    char auth_code[7];
    char rrn[13];
    char masked_pan[MPOS_MSR_PAN_BUF_LEN]; /* "" or first 6 / last 4 */
    uint8_t entry_mode;                    /* enum mpos_entry_mode */
    uint8_t fallback;
    int pin_entered;
    int reversal_pending; /* a reversal of this or the previous transaction awaits sending */
} mpos_txn_result;

/* The context: caller-allocated, fields private. */
typedef struct mpos_txn {
    mpos_txn_config cfg;
    mpos_txn_env env;
    mpos_emv_params emv_params; /* the kernel's copy, per transaction */
    enum mpos_txn_state state;
    /* the order, as START_TXN gave it and the cardholder confirmed */
    uint8_t txn_type;
    uint64_t amount;
    uint16_t currency;
    char original_ref[MPOS_LINK_REF_MAX_LEN + 1];
    int has_location;
    mpos_link_location location;
    int cancel_requested;
    /* the transaction */
    mpos_keystore_txn keys;
    int has_keys;
    char merchant_id[MPOS_KEYSTORE_MID_LEN + 1];
    char terminal_id[MPOS_KEYSTORE_TID_LEN + 1];
    char datetime[MPOS_SEALED_DATETIME_LEN + 1];
    mpos_emv_datetime local;
    mpos_emv_ctx emv;
    mpos_emv_env emv_env;
    int chip_online;   /* the kernel waits for mpos_emv_complete */
    int card_inserted; /* a chip card sits in the reader */
    int chip_failed;   /* a chip read failed in this transaction with fallback allowed */
    int chip_attempts;
    int bad_swipes;
    int offline_pin_calls;
    int pin_status; /* the last PIN entry's enum mpos_pin_entry_status, or an error */
    mpos_msr_card stripe;
    mpos_pin_entry pin;
    uint8_t pin_block[MPOS_PIN_BLOCK_MAX_LEN];
    size_t pin_block_len;
    int has_pin;
    uint8_t entry_mode;
    uint8_t fallback;
    char masked_pan[MPOS_MSR_PAN_BUF_LEN];
    /* the messages */
    mpos_sealed_request req;
    mpos_sealed_keys skeys;
    mpos_sealed_response resp;
    uint8_t msg[MPOS_SEALED_MAX_REQUEST_LEN];
    size_t msg_len;
    uint8_t in[MPOS_SEALED_MAX_RESPONSE_LEN];
    size_t in_len;
    /* RAM copy of the reversal's original reference (the slot holds the durable one) */
    uint32_t ref_sequence;
    char ref[MPOS_LINK_REF_MAX_LEN + 1];
    uint8_t frame[MPOS_TXN_FRAME_LEN];
    mpos_txn_result result;
} mpos_txn;

/* Prepares t in the idle state. cfg and env are copied (the structures they point to must
 * outlive t). MPOS_ERR_ARG when a required part is missing or the EMV parameters are absent. */
int mpos_txn_init(mpos_txn *t, const mpos_txn_config *cfg, const mpos_txn_env *env) MPOS_MUST_CHECK;

/* A host command for the transaction machine, as mpos_link_session_receive decoded it:
 * START_TXN (idle only: takes the order and moves to CONFIRM), CANCEL (before the request
 * goes online: the machine ends with CANCELLED at its next step) and SET_HOST_LOCATION (idle
 * only: kept for the next requests, H-GEO-1). Checked again here with mpos_link_check on the
 * session's state and field by field. Returns 0 (accepted: the port answers ACK), a
 * positive enum mpos_link_error (refused, nothing changed: the port answers ERROR), or
 * MPOS_ERR_ARG for NULL or a command that is not one of these three. */
int mpos_txn_command(mpos_txn *t, const mpos_link_msg *cmd) MPOS_MUST_CHECK;

/* Runs the transaction START_TXN opened, to its end (the diagram at the top), and fills
 * *result (optional). Always returns to IDLE with the RESULT event sent. 0, or a negative
 * enum mpos_err when a HAL, key store or internal failure ended it (the result then says
 * CANCELLED, NO_RESPONSE or CARD_ERROR, and reason MPOS_TXN_R_TERMINAL); MPOS_ERR_STATE when
 * no transaction was started. */
int mpos_txn_run(mpos_txn *t, mpos_txn_result *result) MPOS_MUST_CHECK;

/* Sends the pending reversal, if any, while idle (at start-up, or when the tunnel comes
 * back). 0 when none is pending any more, 1 when it is still pending (no valid answer), or a
 * negative enum mpos_err. MPOS_ERR_STATE when a transaction is in progress. */
int mpos_txn_flush_reversal(mpos_txn *t) MPOS_MUST_CHECK;

/* The state (enum mpos_txn_state). */
enum mpos_txn_state mpos_txn_get_state(const mpos_txn *t);

/* Wipes the context (keys, card data, PIN block, messages). */
void mpos_txn_clear(mpos_txn *t);

#endif
