/* openmpos terminal core: the signed EMV parameter package (docs/protocol.md section 3).
 *
 * The back end sends the terminal its EMV parameters (AIDs with their action codes and
 * limits, CA public keys, country, currency, merchant category code, the minimum firmware
 * version) in one package:
 *
 *   E3 package = E5 endorsement | E4 signed part | CB signature
 *
 * - The endorsement certifies the back end's parameter-signing key (P-256) for usage
 *   "parameters" over a validity period; it is signed by the parameter trust anchor, the
 *   P-256 key the terminal received at provisioning (the key store's parameter anchor).
 * - The signature is ECDSA P-256 / SHA-256 (FIPS 186-5) by the endorsed key over the E4
 *   object, tag to end.
 * - The version in E4 only goes up: the terminal takes a package only when its version is
 *   above the one it holds. The package it holds is kept in its own storage slot
 *   ("params", monotonic counter 3) in the key store's record format (keystore_record.h:
 *   AES-256-CBC + AES-256-CMAC under keys the HAL derives from the device storage key,
 *   generation = the slot's monotonic counter), so an old copy of the storage put back is
 *   refused (MPOS_ERR_ROLLBACK) and the version never comes down.
 *
 * The parser is strict (MPOS_TLV_STRICT, one fixed order, every length and value range
 * checked, nothing else allowed): a package has exactly one encoding, which the builder
 * produces. The builder takes signing callbacks: this module never holds a private key.
 *
 * Portable core code: no heap, no OS call, crypto through lib/ (mpos/ecc.h), storage through
 * the HAL. Return convention: 0, a positive enum mpos_params_outcome where stated, or a
 * negative enum mpos_err (lib/'s codes and hal.h's terminal codes).
 */
#ifndef MPOS_TERMINAL_PARAMS_H
#define MPOS_TERMINAL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "emv_kernel.h"
#include "hal.h"
#include "mpos/crypto.h"
#include "mpos/ecc.h"
#include "mpos/err.h"

#define MPOS_PARAMS_MAX_LEN       4096               /* a whole package */
#define MPOS_PARAMS_FORMAT        1                  /* C1 of E6 and E4 */
#define MPOS_PARAMS_USAGE         1                  /* C2 of E6: parameter signing */
#define MPOS_PARAMS_MAX_AIDS      MPOS_EMV_MAX_AIDS  /* 1..8 E7 */
#define MPOS_PARAMS_MAX_CAPKS     MPOS_EMV_MAX_CAPKS /* 0..8 E8 */
#define MPOS_PARAMS_CAPK_MIN_MOD  64                 /* 512 bits */
#define MPOS_PARAMS_CAPK_MAX_MOD  248                /* 1984 bits, EMV 4.3 Book 2 5.1 */
#define MPOS_PARAMS_MAX_TXN_LIMIT 999999999999ull    /* n12, minor units */
#define MPOS_PARAMS_NO_CLOCK      (-1) /* `now` when the terminal has no trustworthy clock */

/* Storage: the slot and the monotonic counter (mpos_hal_storage) of the held package. The
 * key store uses counters 0..2; the record type is 4 (key store types are 1..3). */
#define MPOS_PARAMS_SLOT        "params"
#define MPOS_PARAMS_COUNTER     3u
#define MPOS_PARAMS_RECORD_TYPE 4u

/* Expected outcomes (positive). */
enum mpos_params_outcome {
    MPOS_PARAMS_NONE = 1, /* open: no package held yet (a new device): no transaction */
    /* The package is authentic and newer, and it is now the one held (persisted: the version
     * moved), but its minimum firmware version is above the running one. Its EMV parameters
     * are NOT applied and the kernel's AID list is emptied: the terminal refuses transactions
     * until its firmware is updated (open gives this outcome at every start until then). */
    MPOS_PARAMS_FIRMWARE_TOO_OLD = 2
};

/* One AID (E7). */
typedef struct mpos_params_aid {
    uint8_t aid[MPOS_EMV_AID_MAX_LEN];
    size_t aid_len;         /* 5..16 */
    int partial;            /* 1: partial selection allowed (EMV Book 1 12.3.1) */
    uint8_t app_version[2]; /* '9F09' */
    uint8_t tac_denial[MPOS_EMV_TAC_LEN];
    uint8_t tac_online[MPOS_EMV_TAC_LEN];
    uint8_t tac_default[MPOS_EMV_TAC_LEN];
    uint32_t floor_limit; /* '9F1B', minor units */
    uint64_t txn_limit;   /* highest amount accepted, minor units; 0: no limit */
} mpos_params_aid;

/* One EMV certification authority public key (E8; Book 2 5.1, 11.2.2). */
typedef struct mpos_params_capk {
    uint8_t rid[5];
    uint8_t index;
    uint8_t modulus[MPOS_PARAMS_CAPK_MAX_MOD];
    size_t modulus_len; /* 64..248, odd, first byte nonzero */
    uint8_t exponent[3];
    size_t exponent_len; /* 03, or 01 00 01 */
    uint32_t expiry;     /* YYYYMMDD as a decimal number (20301231) */
} mpos_params_capk;

/* The endorsement of the parameter-signing key (E5). */
typedef struct mpos_params_endorsement {
    uint8_t usage;                        /* MPOS_PARAMS_USAGE */
    int64_t not_before;                   /* Unix seconds, inclusive */
    int64_t not_after;                    /* Unix seconds, inclusive, >= not_before */
    uint8_t pub[MPOS_EC_P256_PUB_LEN];    /* the endorsed key, 04 || X || Y */
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]; /* the anchor's, over E6 (parse output only) */
} mpos_params_endorsement;

/* The content of a package (E4). */
typedef struct mpos_params {
    uint32_t version;          /* >= 1 */
    int64_t issued;            /* Unix seconds, >= 0 */
    uint32_t min_firmware;     /* (major << 16) | (minor << 8) | patch: 0x00010200 = 1.2.0 */
    uint8_t country[2];        /* '9F1A' n3, BCD 0001..0999 */
    uint8_t currency[2];       /* '5F2A' n3, BCD 0001..0999 */
    uint8_t currency_exponent; /* '5F36', 0..3 */
    int has_mcc;
    uint8_t mcc[2]; /* '9F15' n4 BCD, when has_mcc */
    mpos_params_aid aids[MPOS_PARAMS_MAX_AIDS];
    size_t aid_count; /* 1..8, no AID twice */
    mpos_params_capk capks[MPOS_PARAMS_MAX_CAPKS];
    size_t capk_count; /* 0..8, no (RID, index) twice */
} mpos_params;

/* A parsed package: the fields, and views into the caller's buffer. */
typedef struct mpos_params_package {
    mpos_params_endorsement endorsement;
    mpos_params params;
    const uint8_t *endorsed; /* E6 object, tag to end: what the anchor signed */
    size_t endorsed_len;
    const uint8_t *signed_part; /* E4 object, tag to end: what the endorsed key signed */
    size_t signed_len;
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]; /* CB */
} mpos_params_package;

/* ---- parsing and verification (no state) ------------------------------------------------ */

/* Syntax only (docs/protocol.md 3): exactly len bytes (at most MPOS_PARAMS_MAX_LEN), one E3
 * object in the fixed order, every field in range. No signature is checked. MPOS_ERR_FORMAT,
 * MPOS_ERR_LENGTH, MPOS_ERR_UNSUPPORTED (another format version), MPOS_ERR_ARG; out zeroed
 * on error. */
int mpos_params_parse(const uint8_t *buf, size_t len, mpos_params_package *out) MPOS_MUST_CHECK;

/* Parses and authenticates: the endorsement's signature under anchor_pub, its usage, its
 * validity covering the package's issued time (and now, unless now is MPOS_PARAMS_NO_CLOCK),
 * then the package signature under the endorsed key. MPOS_ERR_VERIFY for any authentication
 * failure (a signature, another anchor, usage, validity), else as mpos_params_parse;
 * MPOS_ERR_KEY when anchor_pub is not a P-256 point. out zeroed on error. */
int mpos_params_verify(const uint8_t anchor_pub[MPOS_EC_P256_PUB_LEN], const uint8_t *buf,
                       size_t len, int64_t now, mpos_params_package *out) MPOS_MUST_CHECK;

/* The anchor key from the key store's parameter anchor (mpos_keystore_trust's param): the
 * 65-byte point itself, or an X.509 certificate (mpos_provision_cert_parse) carrying it.
 * MPOS_ERR_FORMAT, MPOS_ERR_KEY; pub zeroed on error. */
int mpos_params_anchor_key(const uint8_t *param, size_t len,
                           uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* Writes the package's fields into the kernel's parameters: the AIDs (aid, partial, version,
 * the three TACs), the CA keys, country, currency and exponent, the MCC when present, and as
 * floor limit the lowest of the AIDs' (the kernel has one). Terminal type, capabilities and
 * identifiers are left as they are. Per-AID floor and transaction limits stay in p
 * (mpos_params_aid_find). MPOS_ERR_ARG. */
int mpos_params_to_emv(const mpos_params *p, mpos_emv_params *emv) MPOS_MUST_CHECK;

/* The AID entry of p that the selected application's AID (the card's DF name) falls under:
 * an exact match, or a partial-selection entry that is a prefix of it. NULL when none. */
const mpos_params_aid *mpos_params_aid_find(const mpos_params *p, const uint8_t *aid,
                                            size_t aid_len);

/* ---- the held package (stateful) -------------------------------------------------------- */

typedef struct mpos_params_store {
    const mpos_hal_storage *storage;
    const mpos_hal_rng *rng;
    mpos_crypto_ctx *cc;
    int state; /* closed, open, failed */
    uint8_t enc_key[32];
    uint8_t mac_key[32];
    uint64_t generation;      /* the slot's record generation; 0: none */
    uint32_t version;         /* the held package's version; 0: none */
    int firmware_ok;          /* the held package allows the running firmware */
    mpos_params_package held; /* the held package (views into held_buf) */
    uint8_t held_buf[MPOS_PARAMS_MAX_LEN];
    size_t held_len;
    mpos_params_package scratch;
    uint8_t io[MPOS_HAL_SLOT_MAX];
} mpos_params_store;

/* Opens the held package from storage at start-up. The record must authenticate under the
 * device storage key and its generation match the counter (else MPOS_ERR_VERIFY /
 * MPOS_ERR_ROLLBACK, never a silent reset); the package in it was verified when it was
 * applied, and its syntax is checked again (MPOS_ERR_FORMAT). Then:
 *   0                              emv filled (mpos_params_to_emv) with the held package;
 *   MPOS_PARAMS_NONE               no package yet (slot never written, counter 0): emv
 *                                  untouched, and no transaction until one is applied;
 *   MPOS_PARAMS_FIRMWARE_TOO_OLD   held, but firmware is below its minimum: emv's AID list is
 *                                  emptied (aid_count 0, so mpos_emv_start refuses to run).
 * storage, rng and cc must outlive st. On a negative result st is closed and emv untouched. */
int mpos_params_open(mpos_params_store *st, const mpos_hal_storage *storage,
                     const mpos_hal_rng *rng, mpos_crypto_ctx *cc, uint32_t firmware,
                     mpos_emv_params *emv) MPOS_MUST_CHECK;

/* Takes a package from the back end. In order: mpos_params_verify; version above the held
 * one (else MPOS_ERR_ROLLBACK: a replay or a downgrade); the package is persisted as the held
 * one (record, then counter; a storage failure leaves st failed, MPOS_ERR_STATE until
 * reopened); then, if firmware >= its minimum, emv is filled and 0 returned, else
 * MPOS_PARAMS_FIRMWARE_TOO_OLD with emv's AID list emptied (aid_count 0: mpos_emv_start
 * refuses to run) and nothing else of emv changed. On any negative result nothing is stored
 * and emv is untouched (a package is applied whole or not at all). MPOS_ERR_STATE when st is
 * not open. pkg must not lie inside st. */
int mpos_params_verify_and_apply(mpos_params_store *st,
                                 const uint8_t anchor_pub[MPOS_EC_P256_PUB_LEN], uint32_t firmware,
                                 int64_t now, const uint8_t *pkg, size_t len,
                                 mpos_emv_params *emv) MPOS_MUST_CHECK;

/* The held package's content; MPOS_PARAMS_NONE when there is none, MPOS_ERR_STATE when st
 * is not open. *allowed (may be NULL) is 1 when the running firmware meets its minimum. */
int mpos_params_current(const mpos_params_store *st, const mpos_params **p,
                        int *allowed) MPOS_MUST_CHECK;

void mpos_params_close(mpos_params_store *st);

/* ---- building (tests, the back end) ----------------------------------------------------- */

/* Signs msg (ECDSA P-256 / SHA-256, raw r || s) with a key the caller holds. */
typedef int (*mpos_params_sign_fn)(void *ctx, const uint8_t *msg, size_t len,
                                   uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]);

/* The endorsement E5 of e (sig ignored) signed by the anchor's sign callback, into out (cap
 * bytes), length in *len. MPOS_ERR_ARG for a field out of range, MPOS_ERR_LENGTH, or the
 * callback's error; out wiped on error. */
int mpos_params_endorsement_build(const mpos_params_endorsement *e, mpos_params_sign_fn sign,
                                  void *sign_ctx, uint8_t *out, size_t cap,
                                  size_t *len) MPOS_MUST_CHECK;

/* The package E3: the endorsement (an E5 object as built above, copied as given), E4 from p,
 * signed by the parameter-signing key's callback. The same rules as the parser (a package it
 * builds parses, and a parsed package rebuilds byte for byte). Errors as above. */
int mpos_params_build(const mpos_params *p, const uint8_t *endorsement, size_t endorsement_len,
                      mpos_params_sign_fn sign, void *sign_ctx, uint8_t *out, size_t cap,
                      size_t *len) MPOS_MUST_CHECK;

#endif
