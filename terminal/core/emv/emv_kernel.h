/* openmpos terminal core: the EMV / PBOC contact kernel (H-KERNEL-1).
 *
 * One transaction, EMV 4.3 Books 1 and 3 with the UnionPay (PBOC 3.0 debit/credit) choices:
 *
 *   mpos_emv_init(ctx, params, env)
 *   mpos_emv_start(ctx, txn)       reset (optional), application selection (PSE, then the list
 *                                  of AIDs), GET PROCESSING OPTIONS, READ RECORD over the AFL,
 *                                  processing restrictions, cardholder verification, terminal
 *                                  risk management, terminal action analysis, first GENERATE AC
 *        -> MPOS_EMV_ONLINE        the card asked for authorisation (ARQC): build the request
 *                                  from mpos_emv_card_data / mpos_emv_field55, send it, then
 *   mpos_emv_complete(ctx, resp)   issuer authentication (EXTERNAL AUTHENTICATE, or the ARPC in
 *                                  CDOL2), second GENERATE AC; resp NULL = unable to go online
 *        -> MPOS_EMV_APPROVED / MPOS_EMV_DECLINED / MPOS_EMV_DECLINED_AFTER_APPROVAL (reverse)
 *   mpos_emv_clear(ctx)            wipes the card data
 *
 * The kernel is portable C11: no heap, no OS call, no OpenSSL. It reaches the card, the random
 * generator, the clock and the PIN pad only through the callbacks of mpos_emv_env, and uses
 * lib/ for RSA (mpos/rsa.h, portable) and SHA-1 (mpos/hash.h) when an offline PIN is
 * enciphered. On Linux that SHA-1 is libcrypto's one-shot digest, which allocates inside
 * libcrypto: the only allocation on a kernel path (offline enciphered PIN only); a device
 * port of the facade has none.
 *
 * Every card response is untrusted: each R-APDU is length-checked, each TLV goes through
 * lib/tlv (MPOS_TLV_CARD) and each data object the kernel uses has its EMV length checked.
 * A response that does not fit ends the transaction with MPOS_EMV_TERMINATED (never with a
 * fallback to the magnetic stripe: a card that answers wrongly must not be able to force a
 * downgrade); a chip that does not answer ends it with MPOS_EMV_CARD_ERROR.
 *
 * What it does not do (the terminal is online-only and accepts UnionPay contact cards):
 * offline data authentication (SDA/DDA/CDA; the TVR says "Offline data authentication was
 * not performed", Book 3 10.3), offline approval, issuer script processing (71/72 are checked
 * as TLV and ignored), signature CVMs, cardholder application choice (an application whose
 * priority indicator asks for cardholder confirmation is not selected, Book 1 12.4), DDF
 * directories nested in the PSE, the ICC public key (9F46) as PIN key: offline enciphered
 * PIN needs an ICC PIN Encipherment Public Key Certificate (9F2D).
 *
 * Return convention (../shared/spec/style.md 2): 0 or a positive enum mpos_emv_outcome for
 * what happened to the transaction, a negative enum mpos_err for a programming or internal
 * error (bad argument, call out of order, RNG or clock failure).
 */
#ifndef MPOS_EMV_KERNEL_H
#define MPOS_EMV_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"
#include "mpos/pin.h"
#include "mpos/rsa.h"

#define MPOS_CAPDU_MAX 261 /* CLA INS P1 P2 Lc, 255 data bytes, Le */
#define MPOS_RAPDU_MAX 258 /* 256 data bytes and SW1 SW2 */
#define MPOS_ATR_MAX   33  /* ISO/IEC 7816-3 8.2 */

#define MPOS_EMV_AID_MIN_LEN     5 /* RID */
#define MPOS_EMV_AID_MAX_LEN     16
#define MPOS_EMV_MAX_AIDS        8    /* AIDs of the parameters */
#define MPOS_EMV_MAX_CAPKS       8    /* certification authority public keys */
#define MPOS_EMV_MAX_CANDIDATES  8    /* candidate list of application selection */
#define MPOS_EMV_MAX_RECORDS     64   /* records read over the AFL in one transaction */
#define MPOS_EMV_MAX_PSE_RECORDS 16   /* records of the PSE directory */
#define MPOS_EMV_STORE_LEN       4096 /* bytes of card data kept (FCI, GPO, records) */
#define MPOS_EMV_STORE_OBJS      128  /* data objects kept */
#define MPOS_EMV_MAX_PIN_ATTEMPTS                                                                  \
    8 /* offline PIN entries per transaction, whatever the card says */
#define MPOS_EMV_TVR_LEN         5
#define MPOS_EMV_TAC_LEN         5
#define MPOS_EMV_IAD_MAX         32 /* Issuer Application Data '9F10' */
#define MPOS_EMV_ISSUER_AUTH_MIN 8  /* Issuer Authentication Data '91': 8 to 16 bytes */
#define MPOS_EMV_ISSUER_AUTH_MAX 16
#define MPOS_EMV_PAN_BUF_LEN     20 /* 19 digits and NUL */
#define MPOS_EMV_TRACK2_MAX      19 /* Track 2 Equivalent Data '57' */

/* ---- Bits of the TVR '95' (Book 3 Annex C5) as (byte number << 8 | mask), bytes 1..5. */
#define MPOS_EMV_TVR_ODA_NOT_PERFORMED   0x0180u /* B1b8 Offline data auth. not performed */
#define MPOS_EMV_TVR_ICC_DATA_MISSING    0x0120u /* B1b6 */
#define MPOS_EMV_TVR_DIFFERENT_VERSIONS  0x0280u /* B2b8 ICC and terminal application versions */
#define MPOS_EMV_TVR_EXPIRED             0x0240u /* B2b7 Expired application */
#define MPOS_EMV_TVR_NOT_EFFECTIVE       0x0220u /* B2b6 Application not yet effective */
#define MPOS_EMV_TVR_SERVICE_NOT_ALLOWED 0x0210u /* B2b5 Requested service not allowed */
#define MPOS_EMV_TVR_NEW_CARD            0x0208u /* B2b4 */
#define MPOS_EMV_TVR_CVM_FAILED          0x0380u /* B3b8 Cardholder verification not successful */
#define MPOS_EMV_TVR_UNRECOGNISED_CVM    0x0340u /* B3b7 */
#define MPOS_EMV_TVR_PIN_TRY_EXCEEDED    0x0320u /* B3b6 PIN Try Limit exceeded */
#define MPOS_EMV_TVR_NO_PINPAD           0x0310u /* B3b5 PIN required, pad absent/not working */
#define MPOS_EMV_TVR_PIN_NOT_ENTERED     0x0308u /* B3b4 PIN required, pad present, no PIN */
#define MPOS_EMV_TVR_ONLINE_PIN          0x0304u /* B3b3 Online PIN entered */
#define MPOS_EMV_TVR_FLOOR_LIMIT         0x0480u /* B4b8 Transaction exceeds floor limit */
#define MPOS_EMV_TVR_LCOL_EXCEEDED       0x0440u /* B4b7 Lower consecutive offline limit */
#define MPOS_EMV_TVR_UCOL_EXCEEDED       0x0420u /* B4b6 Upper consecutive offline limit */
#define MPOS_EMV_TVR_ISSUER_AUTH_FAILED  0x0540u /* B5b7 Issuer authentication failed */

/* Bits of the TSI '9B' (Book 3 Annex C6), byte 1. */
#define MPOS_EMV_TSI_CVM_PERFORMED         0x40u
#define MPOS_EMV_TSI_CRM_PERFORMED         0x20u /* card risk management */
#define MPOS_EMV_TSI_ISSUER_AUTH_PERFORMED 0x10u
#define MPOS_EMV_TSI_TRM_PERFORMED         0x08u

/* Default Terminal Action Codes, the values commonly configured for the UnionPay AIDs in PBOC
 * terminal parameters (DF13 denial, DF12 online, DF11 default), which
 * mpos_emv_params_default puts in every AID (the signed parameter package overrides them):
 * - Denial  00 10 00 00 00: Requested service not allowed for card product (B2b5);
 * - Online  D8 40 04 F8 00: ODA not performed, SDA failed, card on exception file, DDA
 *   failed; expired application; online PIN entered; floor limit, LCOL, UCOL exceeded,
 *   randomly selected, merchant forced online (all lead online, which we are anyway);
 * - Default D8 40 00 A8 00: as Online without online PIN, LCOL and random selection.
 * An expired card therefore goes online with TVR B2b7 set and the issuer declines (54);
 * an acquirer who wants the terminal to decline it sets byte 2 bit 7 (40) of TAC-Denial.
 * Terminal action analysis (Book 3 10.7) of this online-only terminal: TVR & (TAC-Denial |
 * IAC-Denial) asks for an AAC, anything else for an ARQC (the online codes cannot change
 * that); without a response, AAC whatever the default codes say. Issuer Action Codes absent
 * from the card count as 00 00 00 00 00 (denial) and FF FF FF FF FF (online, default). */
#define MPOS_EMV_TAC_DENIAL_DEFAULT                                                                \
    {                                                                                              \
        0x00, 0x10, 0x00, 0x00, 0x00                                                               \
    }
#define MPOS_EMV_TAC_ONLINE_DEFAULT                                                                \
    {                                                                                              \
        0xD8, 0x40, 0x04, 0xF8, 0x00                                                               \
    }
#define MPOS_EMV_TAC_DEFAULT_DEFAULT                                                               \
    {                                                                                              \
        0xD8, 0x40, 0x00, 0xA8, 0x00                                                               \
    }

/* ---- Callbacks. All take the env's ctx first. */

/* Powers the card (cold reset) and returns its ATR. 0 with the ATR, any other value when the
 * card did not answer or has no chip (the kernel ends with MPOS_EMV_CARD_ERROR). */
typedef int (*mpos_emv_reset_fn)(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len);

/* Sends one C-APDU and receives one R-APDU (data and SW1 SW2, at most MPOS_RAPDU_MAX bytes)
 * into rapdu. 0 when a response came, any other value when the card did not answer (mute,
 * removed, transmission error). The transport handles T=0/T=1; the kernel handles 61xx and
 * 6Cxx itself. */
typedef int (*mpos_card_io_fn)(void *ctx, const uint8_t *capdu, size_t capdu_len,
                               uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len);

/* len random bytes (the unpredictable numbers). 0, or nonzero when the generator failed. */
typedef int (*mpos_emv_rng_fn)(void *ctx, uint8_t *out, size_t len);

typedef struct mpos_emv_datetime {
    uint16_t year; /* 2000..2099 */
    uint8_t month, day, hour, minute, second;
} mpos_emv_datetime;

/* The local date and time of the terminal. 0, or nonzero when the clock failed. */
typedef int (*mpos_emv_now_fn)(void *ctx, mpos_emv_datetime *now);

enum mpos_emv_pin_kind {
    MPOS_EMV_PIN_OFFLINE_PLAIN = 1,      /* verified by the card, sent in plaintext */
    MPOS_EMV_PIN_OFFLINE_ENCIPHERED = 2, /* verified by the card, RSA-enciphered */
    MPOS_EMV_PIN_ONLINE = 3              /* verified by the issuer */
};

/* What a PIN entry gives back. */
enum mpos_emv_pin_result {
    MPOS_EMV_PIN_ENTERED = 0,
    MPOS_EMV_PIN_BYPASSED = 1,  /* no PIN entered (bypass key): this CVM fails */
    MPOS_EMV_PIN_CANCELLED = 2, /* cancel or time-out: the transaction ends */
};

/* PIN entry on the terminal's own keypad. For an offline kind, writes the digits to pin as a
 * NUL-terminated string (the kernel wipes it); tries_left is the card's PIN Try Counter, or
 * 0xFF when unknown, and a retry after a wrong PIN comes with the new count. For
 * MPOS_EMV_PIN_ONLINE, pin is NULL: the caller takes the PIN and enciphers it into its online
 * PIN block itself (the kernel never sees it). Returns an enum mpos_emv_pin_result. */
typedef int (*mpos_emv_pin_fn)(void *ctx, enum mpos_emv_pin_kind kind, unsigned tries_left,
                               char pin[MPOS_PIN_BUF_LEN]);

typedef struct mpos_emv_env {
    void *ctx;                    /* passed to every callback */
    mpos_emv_reset_fn card_reset; /* optional: NULL when the caller powered the card */
    mpos_card_io_fn card_io;
    mpos_emv_rng_fn rng;
    mpos_emv_now_fn now;
    mpos_emv_pin_fn pin_entry; /* NULL: no PIN pad (PIN CVMs fail with TVR B3b5) */
} mpos_emv_env;

/* ---- Parameters, filled by the caller (later from the signed parameter package). */

typedef struct mpos_emv_aid_param {
    uint8_t aid[MPOS_EMV_AID_MAX_LEN];
    size_t aid_len;         /* 5..16 */
    int partial;            /* 1: the card's AID may be longer (Book 1 12.3.1) */
    uint8_t app_version[2]; /* terminal's Application Version Number '9F09' */
    uint8_t tac_denial[5];
    uint8_t tac_online[5];
    uint8_t tac_default[5];
} mpos_emv_aid_param;

/* A certification authority public key (Book 2 5.1), for the issuer certificate of offline
 * enciphered PIN. */
typedef struct mpos_emv_capk {
    uint8_t rid[5];
    uint8_t index; /* '8F' */
    uint8_t modulus[MPOS_RSA_MAX_MOD_LEN];
    size_t modulus_len;
    uint8_t exponent[MPOS_RSA_MAX_EXP_LEN];
    size_t exponent_len;
} mpos_emv_capk;

typedef struct mpos_emv_params {
    mpos_emv_aid_param aids[MPOS_EMV_MAX_AIDS];
    size_t aid_count;
    mpos_emv_capk capks[MPOS_EMV_MAX_CAPKS];
    size_t capk_count;
    uint8_t terminal_country[2]; /* '9F1A' n3, 0156 = China */
    uint8_t currency[2];         /* '5F2A' n3, 0156 = CNY */
    uint8_t currency_exponent;   /* '5F36' */
    uint8_t terminal_type;       /* '9F35': 0x21 merchant, attended, online only */
    uint8_t terminal_caps[3];    /* '9F33' */
    uint8_t additional_caps[5];  /* '9F40' */
    uint32_t floor_limit;        /* '9F1B', minor units; 0: every transaction goes online */
    char terminal_id[9];         /* '9F1C' an8 */
    char merchant_id[16];        /* '9F16' ans15 */
    uint8_t mcc[2];              /* '9F15' n4 */
    char ifd_serial[9];          /* '9F1E' an8 */
} mpos_emv_params;

/* Fills p with the documented defaults: the UnionPay AIDs A000000333010101 (debit), ...02
 * (credit), ...03 (quasi-credit), exact match, application version 0030, the TACs above;
 * China / CNY / exponent 2; terminal type 21; terminal capabilities 60 D0 00 (magstripe and
 * contact IC; plaintext offline PIN, online PIN, enciphered offline PIN; no signature, no
 * "no CVM"; no offline data authentication); additional capabilities 60 00 B0 50 01 (goods,
 * services; numeric and command keys; display attendant and cardholder; code table 1);
 * floor limit 0. No CA keys (add them: offline enciphered PIN fails without the card's CA
 * key). The identifiers are left empty. */
void mpos_emv_params_default(mpos_emv_params *p);

/* ---- The transaction. */

typedef struct mpos_emv_txn {
    uint8_t type;          /* '9C': 0x00 goods and services, 0x01 cash, 0x09 cashback, ... */
    uint64_t amount;       /* '9F02' minor units, at most 999999999999 */
    uint64_t amount_other; /* '9F03' (cashback), at most 999999999999 */
    uint32_t sequence;     /* '9F41' Transaction Sequence Counter, at most 99999999 */
} mpos_emv_txn;

/* The issuer's answer, as the transaction layer read it from the verified response. */
typedef struct mpos_emv_online_response {
    int approved;           /* 1 when the issuer approved (response code 00) */
    uint8_t arc[2];         /* Authorisation Response Code '8A', two an characters ("00") */
    const uint8_t *iad91;   /* Issuer Authentication Data '91' value, or NULL */
    size_t iad91_len;       /* 8..16 when present */
    const uint8_t *scripts; /* issuer script templates 71/72 as received, or NULL (ignored) */
    size_t scripts_len;
} mpos_emv_online_response;

enum mpos_emv_outcome {
    MPOS_EMV_ONLINE = 1,                  /* ARQC: go online, then mpos_emv_complete */
    MPOS_EMV_APPROVED = 2,                /* TC at the second GENERATE AC */
    MPOS_EMV_DECLINED = 3,                /* AAC: card decline at GAC1, issuer decline, or
                                             unable to go online */
    MPOS_EMV_DECLINED_AFTER_APPROVAL = 4, /* issuer approved, card answered AAC: reverse */
    MPOS_EMV_NOT_ACCEPTED = 5,            /* no application in common with the card */
    MPOS_EMV_CARD_ERROR = 6,              /* the chip did not answer (see fallback_allowed) */
    MPOS_EMV_TERMINATED = 7,              /* the card answered wrongly: no fallback */
    MPOS_EMV_CANCELLED = 8                /* the cardholder cancelled PIN entry */
};

enum mpos_emv_reason {
    MPOS_EMV_REASON_NONE = 0,
    MPOS_EMV_REASON_NO_ANSWER,      /* reset or APDU without answer */
    MPOS_EMV_REASON_ATR,            /* ATR not ISO 7816-3 */
    MPOS_EMV_REASON_CARD_BLOCKED,   /* 6A81 to SELECT: card blocked (Book 1 12.3.2) */
    MPOS_EMV_REASON_NO_APPLICATION, /* no mutually supported application left */
    MPOS_EMV_REASON_FORMAT,         /* an R-APDU or TLV that does not parse */
    MPOS_EMV_REASON_STATUS,         /* a status word the command does not allow */
    MPOS_EMV_REASON_AFL,            /* AFL empty or out of range (Book 3 10.2) */
    MPOS_EMV_REASON_DATA_MISSING,   /* a mandatory data object is absent (Book 3 7.2) */
    MPOS_EMV_REASON_DATA_DUPLICATE, /* a primitive object returned twice (Book 3 10.2) */
    MPOS_EMV_REASON_DATA_INVALID,   /* a data object of the wrong length or content */
    MPOS_EMV_REASON_TOO_LARGE,      /* more card data than the kernel's fixed maxima */
    MPOS_EMV_REASON_CRYPTOGRAM,     /* CID not allowed for the AC type requested */
    MPOS_EMV_REASON_CANCELLED,      /* PIN entry cancelled */
    MPOS_EMV_REASON_UNABLE_ONLINE   /* mpos_emv_complete without a response */
};

typedef struct mpos_emv_result {
    enum mpos_emv_outcome outcome;
    enum mpos_emv_reason reason;
    uint16_t sw;           /* the status word behind REASON_STATUS / the last one seen */
    int fallback_allowed;  /* 1: the chip could not be read, the stripe may be used */
    int reversal_required; /* 1: the issuer approved but the card did not (or went mute) */
    int online_pin;        /* 1: the cardholder entered an online PIN (CVM 02) */
    int scripts_ignored;   /* issuer script templates received and not processed */
} mpos_emv_result;

/* The card data the sealed request needs, as strings. */
typedef struct mpos_emv_card_data {
    char pan[MPOS_EMV_PAN_BUF_LEN];      /* '5A', digits */
    char psn[3];                         /* '5F34' two digits, "" when the card has none */
    char expiry[7];                      /* '5F24' YYMMDD */
    char service_code[4];                /* '5F30' three digits, "" when absent */
    uint8_t track2[MPOS_EMV_TRACK2_MAX]; /* '57' as read */
    size_t track2_len;                   /* 0 when absent */
    uint8_t aid[MPOS_EMV_AID_MAX_LEN];   /* DF name '84' of the selected application */
    size_t aid_len;
} mpos_emv_card_data;

/* Which field 55 (chip data of the ISO 8583 message). */
enum mpos_emv_f55 {
    MPOS_EMV_F55_REQUEST = 1, /* the authorisation request: ARQC of the first GENERATE AC */
    MPOS_EMV_F55_FINAL = 2    /* after mpos_emv_complete: TC/AAC of the second (reversal,
                                 confirmation), with the final TVR and TSI */
};

/* ---- The kernel context: caller-allocated, fields private. */

struct mpos_emv_obj {
    uint32_t tag;
    uint16_t off;
    uint16_t len;
    uint8_t source;
};

struct mpos_emv_candidate {
    uint8_t aid[MPOS_EMV_AID_MAX_LEN];
    uint8_t aid_len;
    uint8_t priority; /* '87' low nibble, 0 = none (last) */
    uint8_t param;    /* index in params->aids */
};

struct mpos_emv_ac {
    int present;
    uint8_t cid;
    uint8_t atc[2];
    uint8_t ac[8];
    uint8_t iad[MPOS_EMV_IAD_MAX];
    size_t iad_len;
    uint8_t tvr[5]; /* the TVR sent with this GENERATE AC */
    uint8_t tsi[2];
};

typedef struct mpos_emv_ctx {
    const mpos_emv_params *params;
    mpos_emv_env env;
    mpos_emv_txn txn;
    mpos_emv_result result;
    int state;
    /* application selection */
    struct mpos_emv_candidate cand[MPOS_EMV_MAX_CANDIDATES];
    size_t cand_count;
    size_t param_index; /* AID parameters of the selected application */
    /* card data: primitive objects of the FCI, GPO response, records, GET DATA */
    struct mpos_emv_obj objs[MPOS_EMV_STORE_OBJS];
    size_t obj_count;
    uint8_t store[MPOS_EMV_STORE_LEN];
    size_t store_len;
    size_t records_read;
    /* terminal data */
    uint8_t tvr[5];
    uint8_t tsi[2];
    uint8_t cvm_results[3];
    uint8_t un[4];
    uint8_t date[3];
    uint8_t time[3];
    uint8_t amount[6];
    uint8_t amount_other[6];
    uint8_t sequence[4];
    uint8_t arc[2];
    uint8_t iad91[MPOS_EMV_ISSUER_AUTH_MAX];
    size_t iad91_len;
    uint8_t currency_exp[1];
    uint8_t floor_limit[4];
    int issuer_approved; /* the online response said approved */
    struct mpos_emv_ac gac1, gac2;
    /* offline enciphered PIN: the recovered keys (public) */
    uint8_t key_mod[MPOS_RSA_MAX_MOD_LEN];
    size_t key_mod_len;
    uint8_t key_exp[MPOS_RSA_MAX_EXP_LEN];
    size_t key_exp_len;
    /* the exchange in progress */
    uint8_t capdu[MPOS_CAPDU_MAX];
    uint8_t rapdu[MPOS_RAPDU_MAX];
    size_t rapdu_len; /* data bytes, without the status word */
    uint16_t sw;
} mpos_emv_ctx;

/* Prepares ctx for one transaction. params and env must outlive ctx (params is read, never
 * written). */
void mpos_emv_init(mpos_emv_ctx *ctx, const mpos_emv_params *params, const mpos_emv_env *env);

/* Runs the card up to the first GENERATE AC (see the top of this file). Returns
 * MPOS_EMV_ONLINE, MPOS_EMV_DECLINED, MPOS_EMV_NOT_ACCEPTED, MPOS_EMV_CARD_ERROR,
 * MPOS_EMV_TERMINATED or MPOS_EMV_CANCELLED (details in mpos_emv_get_result), or a negative
 * enum mpos_err: MPOS_ERR_ARG (NULL, missing callback, call out of order, transaction values
 * out of range, parameters not valid), MPOS_ERR_RNG (the RNG callback failed),
 * MPOS_ERR_FORMAT (the clock callback failed or gave a date that does not exist). After a
 * negative result the context is spent (init it again). Callbacks run inside this call; the
 * PIN entry callback may call mpos_emv_card_data_get (the PAN of an online PIN block). */
int mpos_emv_start(mpos_emv_ctx *ctx, const mpos_emv_txn *txn) MPOS_MUST_CHECK;

/* Completes a transaction that returned MPOS_EMV_ONLINE. resp NULL: no valid response came
 * (time-out, MAC failure): the card is asked for an AAC with ARC "Z3" and the outcome is
 * MPOS_EMV_DECLINED (an online-only terminal never approves offline). Otherwise returns
 * MPOS_EMV_APPROVED, MPOS_EMV_DECLINED, MPOS_EMV_DECLINED_AFTER_APPROVAL,
 * MPOS_EMV_CARD_ERROR or MPOS_EMV_TERMINATED (the last two with reversal_required when the
 * issuer had approved), or MPOS_ERR_ARG (out of order; an ARC that is not two an characters
 * or a '91' outside 8..16 bytes is not an argument error: it is treated as received). */
int mpos_emv_complete(mpos_emv_ctx *ctx, const mpos_emv_online_response *resp) MPOS_MUST_CHECK;

/* The outcome and its details; valid after mpos_emv_start. */
const mpos_emv_result *mpos_emv_get_result(const mpos_emv_ctx *ctx);

/* A data object of the transaction by tag: the terminal's ('95', '9B', '9F37', '9A', '9C',
 * '9F02', '9F03', '9F34', '5F2A', '9F1A', '9F33', '9F35', '9F09', '9F1E', '8A', ...), the
 * last GENERATE AC's ('9F26', '9F27', '9F36', '9F10') or the card's (FCI, GPO, records).
 * *found 1 and *value, *len pointing into ctx (valid until the next call on ctx), or
 * *found 0. MPOS_ERR_ARG for NULL pointers. */
int mpos_emv_get_data(const mpos_emv_ctx *ctx, uint32_t tag, const uint8_t **value, size_t *len,
                      int *found) MPOS_MUST_CHECK;

/* The card data of the request (after MPOS_EMV_ONLINE, or after any outcome once the
 * records are read). MPOS_ERR_ARG when the card data is not there yet. */
int mpos_emv_card_data_get(const mpos_emv_ctx *ctx, mpos_emv_card_data *out) MPOS_MUST_CHECK;

/* Field 55: 9F26 9F27 9F10 9F37 9F36 95 9A 9C 9F02 5F2A 82 9F1A 9F03 9F33 9F34 9F35 9F1E 84
 * 9F09 9F41 (and 9B, 8A for MPOS_EMV_F55_FINAL) as BER-TLV into out (cap bytes; 320 always
 * suffice), length in *len. MPOS_ERR_ARG when that GENERATE AC has not happened,
 * MPOS_ERR_LENGTH when cap is too small. */
int mpos_emv_field55(const mpos_emv_ctx *ctx, enum mpos_emv_f55 which, uint8_t *out, size_t cap,
                     size_t *len) MPOS_MUST_CHECK;

/* Wipes everything the card gave and the transaction data. */
void mpos_emv_clear(mpos_emv_ctx *ctx);

#endif
