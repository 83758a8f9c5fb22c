/* openmpos terminal core: the key store (T-BASE-1, T-DUKPT-1, T-UNIQ-1).
 *
 * What it holds, all in one caller-allocated mpos_keystore and persisted through the HAL's
 * secure storage (terminal/hal.h):
 *   - the transaction keys: AES DUKPT (ANSI X9.24-3-2017) or TDES DUKPT (ANSI X9.24-1-2009)
 *     terminal state, or a terminal master key (TMK) and the working keys of the UnionPay
 *     master-key / working-key scheme (mpos/mkwk.h); plus the terminal's transaction
 *     sequence number and the initial key IDs it has retired;
 *   - the device identity: the P-256 private key (born here, never exported), its
 *     certificate, the trust anchors (back-end CA, parameter-signing key), the activation
 *     data (merchant ID, terminal ID);
 *   - the pending reversal record.
 *
 * The central rule. mpos_keystore_next_transaction() advances the DUKPT counter (the
 * transaction's register is taken and erased, the registers of later counters derived),
 * writes the new state to storage atomically and durably, and only then derives and returns
 * the transaction's working keys; the transaction's derivation key is erased before it
 * returns. Whatever the moment of a power loss, the state found at the next start has a
 * next counter above every counter whose keys were ever returned: no KSN is used twice and
 * no stored register can derive a key already used (X9.24-3-2017 6.5 and X9.24-1-2009 A.2
 * forbid both). A pending reversal, an imported key and the device identity are persisted
 * the same way before the call returns.
 *
 * Storage. Three slots, each one record (keystore_record.h has the byte layout):
 *   "keys"      transaction keys, sequence number, retired key IDs      counter 0
 *   "reversal"  the pending reversal, or "none"                          counter 1
 *   "device"    device key pair, certificate, trust anchors, activation  counter 2
 * A record is MAGIC | version | type | generation | length | IV | AES-256-CBC ciphertext of
 * the body | AES-256-CMAC over all of it. The encryption and MAC keys are derived by the
 * HAL from the device storage key (mpos_hal_storage.derive_key: on a device it never leaves
 * the secure element; the simulator keeps it in a file of mode 0600). A record is written
 * with generation = HAL monotonic counter + 1 and the counter is incremented after the
 * write is durable; at open a record whose generation is the counter (or one above: a write
 * whose increment was cut off, which open completes) is current, an older one is a rollback
 * (an old copy of the storage put back) and is refused, as is a missing slot whose counter
 * is not 0. A record that does not authenticate or parse is refused: nothing is ever reset
 * silently. mpos_keystore_factory_reset() is the only way back from a refused store.
 *
 * A storage failure while persisting leaves the outcome unknown (old or new record): the
 * key store wipes every key it holds and refuses everything (MPOS_ERR_STATE) until it is
 * opened again from storage, which tells what was kept.
 *
 * Portable core code: no heap, no OS calls; crypto through lib/ (mpos/crypto.h, mpos/dukpt.h,
 * mpos/mkwk.h, mpos/ecc.h), storage through the HAL. One thread at a time per key store.
 * Return convention: 0, a negative enum mpos_err (lib/'s codes and hal.h's terminal codes),
 * or where stated a positive enum mpos_hal_status. On error every output that would hold a
 * key is zeroed.
 */
#ifndef MPOS_TERMINAL_KEYSTORE_H
#define MPOS_TERMINAL_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"
#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/ecc.h"
#include "mpos/err.h"
#include "mpos/mkwk.h"

#define MPOS_KEYSTORE_KSN_MAX      12   /* AES DUKPT KSN; TDES is 10 */
#define MPOS_KEYSTORE_KEY_MAX      32   /* longest working key */
#define MPOS_KEYSTORE_IK_HISTORY   8    /* retired initial key IDs remembered */
#define MPOS_KEYSTORE_IK_ID_MAX    10   /* AES: initial key ID (8); TDES: initial KSN (10) */
#define MPOS_KEYSTORE_CERT_MAX     2048 /* a DER certificate or trust anchor */
#define MPOS_KEYSTORE_MID_LEN      15   /* merchant ID, ans15 (ISO 8583 field 42) */
#define MPOS_KEYSTORE_TID_LEN      8    /* terminal ID, ans8 (ISO 8583 field 41) */
#define MPOS_KEYSTORE_DATETIME_LEN 14   /* YYYYMMDDhhmmss */
#define MPOS_KEYSTORE_PAN_MAX      19
#define MPOS_KEYSTORE_SLOTS        3

/* Slot names and their monotonic counters (mpos_hal_storage). */
#define MPOS_KEYSTORE_SLOT_KEYS        "keys"
#define MPOS_KEYSTORE_SLOT_REVERSAL    "reversal"
#define MPOS_KEYSTORE_SLOT_DEVICE      "device"
#define MPOS_KEYSTORE_COUNTER_KEYS     0u
#define MPOS_KEYSTORE_COUNTER_REVERSAL 1u
#define MPOS_KEYSTORE_COUNTER_DEVICE   2u

enum mpos_keystore_scheme {
    MPOS_KEYSTORE_NONE = 0,       /* no transaction keys: import one */
    MPOS_KEYSTORE_DUKPT_AES = 1,  /* X9.24-3-2017 */
    MPOS_KEYSTORE_DUKPT_TDES = 2, /* X9.24-1-2009 Annex A */
    MPOS_KEYSTORE_MKWK = 3        /* TMK + working keys (mpos/mkwk.h) */
};

/* Index of the two directions in mpos_keystore_txn. */
enum mpos_keystore_dir {
    MPOS_KEYSTORE_REQUEST = 0, /* terminal -> back end */
    MPOS_KEYSTORE_RESPONSE = 1 /* back end -> terminal */
};

/* The keys of one transaction. Holds keys: mpos_keystore_txn_clear() when done. */
typedef struct mpos_keystore_txn {
    enum mpos_keystore_scheme scheme;
    enum mpos_cipher cipher; /* AES (AES DUKPT), TDES (TDES DUKPT), TDES or SM4 (MKWK) */
    uint32_t sequence;       /* terminal sequence number, strictly increasing, never reused */
    uint32_t counter;        /* DUKPT transaction counter; 0 for MKWK */
    uint8_t ksn[MPOS_KEYSTORE_KSN_MAX];
    size_t ksn_len; /* 12 (AES), 10 (TDES), 0 (MKWK) */
    /* PIN: AES usage 1000 / TDES PIN variant / PIK. */
    uint8_t pin_key[MPOS_KEYSTORE_KEY_MAX];
    size_t pin_key_len;
    /* MAC: AES usages 2000 (request) and 2001 (response) / TDES MAC request and response
     * variants / MAK for both. */
    uint8_t mac_key[2][MPOS_KEYSTORE_KEY_MAX];
    size_t mac_key_len;
    /* Data: AES usages 3000 and 3001 / TDES data request and response variants / TDK for
     * both (length 0 when the sign-on gave no TDK). */
    uint8_t data_key[2][MPOS_KEYSTORE_KEY_MAX];
    size_t data_key_len;
} mpos_keystore_txn;

void mpos_keystore_txn_clear(mpos_keystore_txn *txn);

/* Why a transaction is reversed. */
enum mpos_keystore_reversal_reason {
    MPOS_REVERSAL_NO_RESPONSE = 1,      /* no valid response from the back end */
    MPOS_REVERSAL_CARD_DECLINED = 2,    /* approved online, declined by the card (2nd GEN AC) */
    MPOS_REVERSAL_TERMINAL_FAILURE = 3, /* the terminal could not complete (power, card out) */
    MPOS_REVERSAL_CANCELLED = 4         /* cancelled after the request was sent */
};

/* A reversal to send until the back end acknowledges it. No card data beyond the masked PAN
 * (G-ACCT-4). Strings NUL-terminated. */
typedef struct mpos_keystore_reversal {
    uint32_t sequence;                  /* the reversed transaction's sequence number (1..) */
    uint8_t txn_type;                   /* 1..4, the link's codes */
    uint64_t amount;                    /* minor units, at most 999999999999 */
    uint16_t currency;                  /* ISO 4217 numeric, 1..999 */
    uint8_t entry_mode;                 /* as the sealed request's */
    uint8_t reason;                     /* enum mpos_keystore_reversal_reason */
    uint8_t attempts;                   /* times sent so far */
    uint8_t ksn[MPOS_KEYSTORE_KSN_MAX]; /* the reversed request's KSN */
    size_t ksn_len;                     /* 0, 10 or 12 */
    char datetime[MPOS_KEYSTORE_DATETIME_LEN + 1]; /* the reversed request's, 14 digits */
    char masked_pan[MPOS_KEYSTORE_PAN_MAX + 1];    /* "" or a masked PAN */
} mpos_keystore_reversal;

/* One working key as the sign-on response carries it (mpos_mkwk_unwrap). */
typedef struct mpos_keystore_wrapped_key {
    const uint8_t *enc; /* key_len bytes, ECB under the TMK */
    size_t key_len;
    const uint8_t *kcv; /* check value, kcv_len bytes (4..8) */
    size_t kcv_len;
} mpos_keystore_wrapped_key;

/* A summary of what the key store holds (no key material). */
typedef struct mpos_keystore_info {
    enum mpos_keystore_scheme scheme;
    uint32_t sequence;     /* last sequence number given out; 0 before the first */
    uint32_t next_counter; /* DUKPT: counter of the next transaction; 0 when exhausted */
    int working_keys;      /* MKWK: 1 once a sign-on installed working keys */
    int has_device_key;
    int has_certificate;
    int has_trust;
    int activated;
    int reversal_pending;
    uint8_t ik_id[MPOS_KEYSTORE_IK_ID_MAX]; /* the loaded initial key ID / initial KSN */
    size_t ik_id_len;
} mpos_keystore_info;

/* ---- the context (fields private) --------------------------------------------------------- */

#define MPOS_KEYSTORE_SEAL_KEY_LEN 32

typedef struct mpos_keystore_mkwk {
    enum mpos_cipher cipher;
    uint8_t tmk[MPOS_MKWK_TMK_LEN];
    uint8_t pik[MPOS_MKWK_MAX_KEY_LEN];
    uint8_t mak[MPOS_MKWK_MAX_KEY_LEN];
    uint8_t tdk[MPOS_MKWK_MAX_KEY_LEN];
    size_t pik_len, mak_len, tdk_len; /* 0: not installed */
} mpos_keystore_mkwk;

typedef struct mpos_keystore_device {
    unsigned flags;
    uint8_t priv[MPOS_EC_P256_PRIV_LEN];
    uint8_t pub[MPOS_EC_P256_PUB_LEN];
    uint8_t cert[MPOS_KEYSTORE_CERT_MAX];
    size_t cert_len;
    uint8_t ca[MPOS_KEYSTORE_CERT_MAX];
    size_t ca_len;
    uint8_t param[MPOS_KEYSTORE_CERT_MAX];
    size_t param_len;
    char mid[MPOS_KEYSTORE_MID_LEN + 1];
    char tid[MPOS_KEYSTORE_TID_LEN + 1];
} mpos_keystore_device;

typedef struct mpos_keystore {
    const mpos_hal_storage *storage;
    const mpos_hal_rng *rng;
    mpos_crypto_ctx *cc;
    int state; /* closed, open, failed */
    uint8_t enc_key[MPOS_KEYSTORE_SEAL_KEY_LEN];
    uint8_t mac_key[MPOS_KEYSTORE_SEAL_KEY_LEN];
    uint64_t generation[MPOS_KEYSTORE_SLOTS];
    /* "keys" */
    enum mpos_keystore_scheme scheme;
    enum mpos_dukpt_aes_key_type aes_wk_type;
    uint32_t sequence;
    size_t history_len;
    uint8_t history[MPOS_KEYSTORE_IK_HISTORY][MPOS_KEYSTORE_IK_ID_MAX + 2];
    union {
        mpos_dukpt_aes_terminal aes;
        mpos_dukpt_tdes_terminal tdes;
        mpos_keystore_mkwk mkwk;
    } k;
    /* "reversal" */
    int reversal_present;
    mpos_keystore_reversal reversal;
    /* "device" */
    mpos_keystore_device dev;
    /* one record being sealed or opened */
    uint8_t io[MPOS_HAL_SLOT_MAX];
} mpos_keystore;

/* ---- opening --------------------------------------------------------------------------- */

/* Loads the key store from storage (every slot, verified). A new device (no slot, every
 * counter 0) opens empty. storage, rng and cc must outlive ks. Errors, with ks closed and
 * storage untouched (except completing an interrupted counter increment): MPOS_ERR_VERIFY
 * (a record does not authenticate: corrupted, or written under another device key),
 * MPOS_ERR_FORMAT (a record that authenticates but is not one this code writes),
 * MPOS_ERR_UNSUPPORTED (a later record version), MPOS_ERR_ROLLBACK, MPOS_ERR_PERMISSION,
 * MPOS_ERR_IO, MPOS_ERR_ARG. */
int mpos_keystore_open(mpos_keystore *ks, const mpos_hal_storage *storage, const mpos_hal_rng *rng,
                       mpos_crypto_ctx *cc) MPOS_MUST_CHECK;

/* Wipes every key the context holds; storage is unchanged. */
void mpos_keystore_close(mpos_keystore *ks);

/* The explicit way out of a store that mpos_keystore_open refuses, and the decommissioning
 * of a device: writes an empty record over every slot (each with a generation above its
 * counter, so no older record can come back), then opens the empty store. When the "keys"
 * record still opens, its sequence number and retired key IDs (with the loaded one added)
 * are kept, so neither comes round again. The device key, certificate, anchors, activation
 * and any reversal are gone: the device needs provisioning and activation again. */
int mpos_keystore_factory_reset(mpos_keystore *ks, const mpos_hal_storage *storage,
                                const mpos_hal_rng *rng, mpos_crypto_ctx *cc) MPOS_MUST_CHECK;

int mpos_keystore_info_get(const mpos_keystore *ks, mpos_keystore_info *info) MPOS_MUST_CHECK;

/* ---- transaction keys ------------------------------------------------------------------- */

/* Imports an AES DUKPT initial key (16, 24 or 32 bytes) and its initial key ID, as the
 * provisioning module unwrapped them; working keys of wk_type (AES128/192/256, not longer
 * than the initial key). Only into an empty slot: MPOS_ERR_STATE when transaction keys are
 * loaded (mpos_keystore_retire_keys first). MPOS_ERR_KSN when the initial key ID is one
 * this terminal retired (T-UNIQ-1: re-injecting a used key would repeat its KSNs).
 * MPOS_ERR_KEY for a key or type length not allowed. Persisted before it returns; the
 * first transaction uses counter 1. The caller wipes its copy of the key. */
int mpos_keystore_import_dukpt_aes(mpos_keystore *ks, const uint8_t *ik, size_t ik_len,
                                   const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                                   enum mpos_dukpt_aes_key_type wk_type) MPOS_MUST_CHECK;

/* The same for a TDES DUKPT IPEK (16 bytes) and the device's initial KSN (counter bits are
 * ignored and kept zero). */
int mpos_keystore_import_dukpt_tdes(mpos_keystore *ks, const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                    const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN]) MPOS_MUST_CHECK;

/* The same for a terminal master key (16 bytes; cipher MPOS_CIPHER_TDES or MPOS_CIPHER_SM4).
 * Transactions need working keys (mpos_keystore_install_working_keys). */
int mpos_keystore_import_tmk(mpos_keystore *ks, enum mpos_cipher cipher,
                             const uint8_t tmk[MPOS_MKWK_TMK_LEN]) MPOS_MUST_CHECK;

/* Sign-on (MKWK only, else MPOS_ERR_STATE): unwraps the PIN, MAC and (optional, NULL) data
 * working keys under the TMK, checks each check value (mpos_mkwk_unwrap: MPOS_ERR_VERIFY,
 * nothing changed) and persists them, replacing the previous ones. */
int mpos_keystore_install_working_keys(mpos_keystore *ks, const mpos_keystore_wrapped_key *pik,
                                       const mpos_keystore_wrapped_key *mak,
                                       const mpos_keystore_wrapped_key *tdk) MPOS_MUST_CHECK;

/* The explicit step before a new initial key or TMK: erases the transaction keys and
 * persists their absence before it returns (a crash leaves the keys or nothing). A DUKPT initial
 * key ID goes to the list of retired IDs (the last MPOS_KEYSTORE_IK_HISTORY), which import refuses.
 * The sequence number carries on. MPOS_ERR_STATE when nothing is loaded. */
int mpos_keystore_retire_keys(mpos_keystore *ks) MPOS_MUST_CHECK;

/* Starts a transaction (see the rule at the top): a new sequence number and, under DUKPT,
 * the next counter, persisted before the keys are derived into txn. MPOS_ERR_STATE when no
 * transaction keys are loaded (or MKWK without working keys), MPOS_ERR_EXHAUSTED when the
 * DUKPT counter or the sequence number is used up (the device needs a new key), a storage
 * error as the HAL returns it (the key store is then failed: open it again). txn is zeroed
 * on every error. */
int mpos_keystore_next_transaction(mpos_keystore *ks, mpos_keystore_txn *txn) MPOS_MUST_CHECK;

/* ---- reversal --------------------------------------------------------------------------- */

/* Records (or updates: same sequence number, e.g. attempts + 1) the pending reversal,
 * persisted before it returns. One at a time: MPOS_ERR_STATE when another transaction's
 * reversal is pending (send it first). MPOS_ERR_ARG for a field out of range. */
int mpos_keystore_reversal_store(mpos_keystore *ks,
                                 const mpos_keystore_reversal *r) MPOS_MUST_CHECK;

/* The pending reversal: 0 with *r, or MPOS_HAL_NOT_FOUND when there is none. */
int mpos_keystore_reversal_get(const mpos_keystore *ks, mpos_keystore_reversal *r) MPOS_MUST_CHECK;

/* The back end acknowledged the reversal of sequence: removes it, persisted. MPOS_ERR_STATE
 * when no reversal of that sequence number is pending. */
int mpos_keystore_reversal_done(mpos_keystore *ks, uint32_t sequence) MPOS_MUST_CHECK;

/* ---- device identity -------------------------------------------------------------------- */

/* Generates the device's P-256 key pair inside the key store (FIPS 186-5 A.2.2) and writes
 * the public key to pub; the private key never leaves. Once per device: MPOS_ERR_STATE when
 * a key exists (factory reset first). */
int mpos_keystore_generate_device_key(mpos_keystore *ks,
                                      uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* The device public key; MPOS_ERR_STATE before one was generated. */
int mpos_keystore_device_public(const mpos_keystore *ks,
                                uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* Stores the device certificate (DER, 1..MPOS_KEYSTORE_CERT_MAX bytes), replacing the
 * previous one. The caller has verified its chain; here it must carry the device's public
 * key (the 65-byte point appears in it), else MPOS_ERR_KEY. */
int mpos_keystore_set_certificate(mpos_keystore *ks, const uint8_t *cert,
                                  size_t len) MPOS_MUST_CHECK;

/* The stored certificate (a pointer into ks, valid until the next change); MPOS_ERR_STATE
 * when there is none. */
int mpos_keystore_certificate(const mpos_keystore *ks, const uint8_t **cert,
                              size_t *len) MPOS_MUST_CHECK;

/* Stores the trust anchors: the back-end CA certificate (DER, required) and the
 * parameter-signing key or certificate (DER, optional: NULL, 0), replacing the previous
 * ones. The caller authenticated them (provisioning bundle signature). */
int mpos_keystore_set_trust(mpos_keystore *ks, const uint8_t *ca, size_t ca_len,
                            const uint8_t *param, size_t param_len) MPOS_MUST_CHECK;

/* The trust anchors (pointers into ks; *param_len 0 when absent); MPOS_ERR_STATE when none. */
int mpos_keystore_trust(const mpos_keystore *ks, const uint8_t **ca, size_t *ca_len,
                        const uint8_t **param, size_t *param_len) MPOS_MUST_CHECK;

/* ECDSA P-256 / SHA-256 signature with the device key over msg (raw r || s). */
int mpos_keystore_sign(mpos_keystore *ks, const uint8_t *msg, size_t len,
                       uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]) MPOS_MUST_CHECK;

/* mpos_keystore_sign with the signature of mpos_hal_tls_config.sign (sign_ctx = the key
 * store), so the TLS port never holds the private key. */
int mpos_keystore_tls_sign(void *ks, const uint8_t *msg, size_t len,
                           uint8_t sig[MPOS_HAL_SIG_LEN]) MPOS_MUST_CHECK;

/* ECDH with the device key (SEC 1 v2 3.3.1): the x-coordinate of d * peer_pub, for the
 * provisioning bundle's key agreement (the peer's point is validated, MPOS_ERR_KEY). The
 * caller derives its key from it and wipes it. */
int mpos_keystore_ecdh(mpos_keystore *ks, const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                       uint8_t shared[MPOS_ECDH_P256_LEN]) MPOS_MUST_CHECK;

/* ---- activation (T-ACTIV-1) ------------------------------------------------------------- */

/* Records the activation: merchant ID (exactly 15) and terminal ID (exactly 8) printable
 * ASCII characters, persisted. MPOS_ERR_STATE when already activated (deactivate first). */
int mpos_keystore_set_activation(mpos_keystore *ks, const char *merchant_id,
                                 const char *terminal_id) MPOS_MUST_CHECK;

/* The activation data; MPOS_ERR_STATE when the terminal is not activated. */
int mpos_keystore_activation(const mpos_keystore *ks, char merchant_id[MPOS_KEYSTORE_MID_LEN + 1],
                             char terminal_id[MPOS_KEYSTORE_TID_LEN + 1]) MPOS_MUST_CHECK;

/* Removes the activation, persisted. MPOS_ERR_STATE when not activated. */
int mpos_keystore_deactivate(mpos_keystore *ks) MPOS_MUST_CHECK;

#endif
