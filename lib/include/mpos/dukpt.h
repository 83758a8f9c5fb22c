/* openmpos: DUKPT, derived unique key per transaction.
 *
 * AES DUKPT (ANSI X9.24-3-2017): 12-byte KSN = 8-byte initial key ID || 32-bit transaction
 * counter (big-endian); AES-128/192/256 BDK; working keys of any X9.24-3 usage and type.
 * TDES DUKPT (ANSI X9.24-1-2009 Annex A): 10-byte KSN whose rightmost 21 bits are the
 * transaction counter; 2-key (or 3-key) TDES BDK; 16-byte keys with the PIN, MAC and data
 * variants.
 *
 * Host side: stateless; every call derives from the BDK. A KSN no terminal produces (counter
 * 0, too many one-bits) is refused with MPOS_ERR_KSN.
 *
 * Terminal side: a caller-allocated mpos_dukpt_aes_terminal / mpos_dukpt_tdes_terminal holds
 * the intermediate derivation key (future key) registers and the counter. Per transaction:
 *
 *   mpos_dukpt_*_terminal_next()         select the next counter; the transaction's key is
 *                                        taken out of its register, the registers of later
 *                                        transactions are derived, the used one erased
 *   mpos_dukpt_*_terminal_export()       persist the state atomically (it never contains a
 *                                        key of the current or an earlier transaction)
 *   mpos_dukpt_*_terminal_working_key()  the working keys of this transaction
 *   mpos_dukpt_*_terminal_done()         erase the transaction's key
 *
 * After a restart, mpos_dukpt_*_terminal_import() resumes at the next counter: a counter is
 * never used twice. A context is used by one thread at a time. All functions return 0 or a
 * negative enum mpos_err; on error every output that would hold a key is zeroed.
 */
#ifndef MPOS_DUKPT_H
#define MPOS_DUKPT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"

/* ---- AES DUKPT (ANSI X9.24-3-2017) ---------------------------------------------------- */

#define MPOS_DUKPT_AES_IKID_LEN       8  /* initial key ID: BDK ID (4) || derivation ID (4) */
#define MPOS_DUKPT_AES_KSN_LEN        12 /* initial key ID || transaction counter */
#define MPOS_DUKPT_AES_MAX_KEY_LEN    32
#define MPOS_DUKPT_AES_REGISTERS      32 /* one intermediate derivation key per counter bit */
#define MPOS_DUKPT_AES_MAX_ONE_BITS   16 /* counters with more one-bits are never used */
#define MPOS_DUKPT_AES_UPDATE_COUNTER 0xFFFFFFFFu /* counter of the key encryption key */
#define MPOS_DUKPT_AES_LAST_COUNTER   0xFFFF0000u /* the last counter a terminal uses */
#define MPOS_DUKPT_AES_STATE_LEN      1048        /* exported terminal state */

/* Key usage indicators of X9.24-3-2017 6.3.2 (Tables 2 and 3). */
enum mpos_dukpt_aes_usage {
    MPOS_DUKPT_AES_USAGE_KEK = 0x0002,        /* key encryption key (DUKPT update key) */
    MPOS_DUKPT_AES_USAGE_PIN = 0x1000,        /* PIN encryption */
    MPOS_DUKPT_AES_USAGE_MAC_GEN = 0x2000,    /* message authentication, generation */
    MPOS_DUKPT_AES_USAGE_MAC_VERIFY = 0x2001, /* message authentication, verification */
    MPOS_DUKPT_AES_USAGE_MAC_BOTH = 0x2002,   /* message authentication, both ways */
    MPOS_DUKPT_AES_USAGE_DATA_ENC = 0x3000,   /* data encryption, encrypt */
    MPOS_DUKPT_AES_USAGE_DATA_DEC = 0x3001,   /* data encryption, decrypt */
    MPOS_DUKPT_AES_USAGE_DATA_BOTH = 0x3002   /* data encryption, both ways */
};

/* Working-key types of X9.24-3-2017 6.2.1. */
enum mpos_dukpt_aes_key_type {
    MPOS_DUKPT_AES_KEY_2TDEA = 1,
    MPOS_DUKPT_AES_KEY_3TDEA = 2,
    MPOS_DUKPT_AES_KEY_AES128 = 3,
    MPOS_DUKPT_AES_KEY_AES192 = 4,
    MPOS_DUKPT_AES_KEY_AES256 = 5,
    MPOS_DUKPT_AES_KEY_HMAC128 = 6,
    MPOS_DUKPT_AES_KEY_HMAC192 = 7,
    MPOS_DUKPT_AES_KEY_HMAC256 = 8
};

/* Length in bytes of a key of that type, 0 for an unknown type. */
size_t mpos_dukpt_aes_key_len(enum mpos_dukpt_aes_key_type type);

/* The initial key of a terminal: bdk of 16, 24 or 32 bytes, ik of bdk_len bytes. */
int mpos_dukpt_aes_initial_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                               const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                               uint8_t *ik) MPOS_MUST_CHECK;

/* Host: the intermediate derivation key of the KSN's counter (bdk_len bytes to key).
 * MPOS_ERR_KSN for counter 0 or more than 16 one-bits. */
int mpos_dukpt_aes_derivation_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                  const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN],
                                  uint8_t *key) MPOS_MUST_CHECK;

/* Host: a working key of the KSN (mpos_dukpt_aes_key_len(type) bytes to key). The KEK usage
 * takes only the counter FFFFFFFF, every other usage a counter of 1 to 16 one-bits
 * (MPOS_ERR_KSN). MPOS_ERR_KEY when the type is longer than the BDK; MPOS_ERR_ARG for an
 * unknown usage or type. */
int mpos_dukpt_aes_working_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                               const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN],
                               enum mpos_dukpt_aes_usage usage, enum mpos_dukpt_aes_key_type type,
                               uint8_t *key) MPOS_MUST_CHECK;

/* Terminal state. The fields are private: use the functions. */
typedef struct mpos_dukpt_aes_terminal {
    /* registers[p]: intermediate derivation key of the next counter whose lowest one-bit is
     * bit p; erased (zero) when no such key is held. */
    uint8_t registers[MPOS_DUKPT_AES_REGISTERS][MPOS_DUKPT_AES_MAX_KEY_LEN];
    uint8_t current[MPOS_DUKPT_AES_MAX_KEY_LEN]; /* derivation key of the transaction */
    uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN];
    uint32_t next_counter; /* counter of the next transaction; 0 when exhausted */
    uint32_t counter;      /* counter of the current transaction; 0 when none */
    size_t key_len;        /* 16, 24 or 32; 0 when nothing is loaded */
} mpos_dukpt_aes_terminal;

/* Loads an initial key (16, 24 or 32 bytes) and its ID; the first transaction uses counter 1.
 * The caller erases its copy of the initial key afterwards. */
int mpos_dukpt_aes_terminal_load(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc, const uint8_t *ik,
                                 size_t ik_len,
                                 const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN]) MPOS_MUST_CHECK;

/* Like mpos_dukpt_aes_terminal_load, with the first transaction at first_counter (a counter
 * of 1 to 16 one-bits, else MPOS_ERR_KSN): the state a terminal has after using every
 * counter below it. For migration of a device and for tests at the end of the counter space. */
int mpos_dukpt_aes_terminal_load_at(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                    const uint8_t *ik, size_t ik_len,
                                    const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN],
                                    uint32_t first_counter) MPOS_MUST_CHECK;

/* Starts the next transaction and writes its KSN. Ends the previous transaction if still
 * open. MPOS_ERR_EXHAUSTED after counter FFFF0000: the device needs a new initial key. */
int mpos_dukpt_aes_terminal_next(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                 uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN]) MPOS_MUST_CHECK;

/* A working key of the current transaction (rules of mpos_dukpt_aes_working_key; the KEK,
 * whose counter FFFFFFFF no transaction has, is MPOS_ERR_KSN). MPOS_ERR_ARG when no
 * transaction is open. */
int mpos_dukpt_aes_terminal_working_key(mpos_dukpt_aes_terminal *t, mpos_crypto_ctx *cc,
                                        enum mpos_dukpt_aes_usage usage,
                                        enum mpos_dukpt_aes_key_type type,
                                        uint8_t *key) MPOS_MUST_CHECK;

/* Ends the current transaction: erases its derivation key. */
void mpos_dukpt_aes_terminal_done(mpos_dukpt_aes_terminal *t);

/* Serialises the state (registers, counter, initial key ID; never the current transaction's
 * key) into MPOS_DUKPT_AES_STATE_LEN bytes, protected by a CRC-32 against corruption. The
 * bytes hold keys: store them as the registers themselves. */
int mpos_dukpt_aes_terminal_export(const mpos_dukpt_aes_terminal *t,
                                   uint8_t out[MPOS_DUKPT_AES_STATE_LEN]) MPOS_MUST_CHECK;

/* Restores an exported state, with no transaction open. Every field is validated (length,
 * version, CRC, key length, counter, erased registers): MPOS_ERR_FORMAT, and t cleared, for
 * a state no terminal produces. */
int mpos_dukpt_aes_terminal_import(mpos_dukpt_aes_terminal *t, const uint8_t *in,
                                   size_t len) MPOS_MUST_CHECK;

/* Erases the whole context. */
void mpos_dukpt_aes_terminal_clear(mpos_dukpt_aes_terminal *t);

/* ---- TDES DUKPT (ANSI X9.24-1-2009 Annex A) ------------------------------------------- */

#define MPOS_DUKPT_TDES_KSN_LEN      10
#define MPOS_DUKPT_TDES_KEY_LEN      16
#define MPOS_DUKPT_TDES_REGISTERS    21 /* future key registers, one per counter bit */
#define MPOS_DUKPT_TDES_MAX_ONE_BITS 10
#define MPOS_DUKPT_TDES_COUNTER_MASK 0x1FFFFFu
#define MPOS_DUKPT_TDES_LAST_COUNTER 0x1FF800u /* the last counter a terminal uses */
#define MPOS_DUKPT_TDES_STATE_LEN    364       /* exported terminal state */

/* Working keys of X9.24-1-2009 A.4: variants of the transaction key. */
enum mpos_dukpt_tdes_usage {
    MPOS_DUKPT_TDES_USAGE_PIN = 1,      /* variant 00000000000000FF 00000000000000FF */
    MPOS_DUKPT_TDES_USAGE_MAC_REQ = 2,  /* variant 000000000000FF00 000000000000FF00 */
    MPOS_DUKPT_TDES_USAGE_MAC_RESP = 3, /* variant 00000000FF000000 00000000FF000000 */
    MPOS_DUKPT_TDES_USAGE_DATA_REQ = 4, /* variant 0000000000FF0000 ..., then one-way */
    MPOS_DUKPT_TDES_USAGE_DATA_RESP = 5 /* variant 000000FF00000000 ..., then one-way */
};

/* The initial PIN encryption key (IPEK) of the KSN's device; the counter bits are ignored.
 * bdk: 16 bytes (2-key TDES) or 24 bytes (3-key, which X9.24-1-2009 does not define: the
 * BDK variant C0C0C0C000000000 is applied to each of the three parts, so K1|K2|K1 gives the
 * IPEK of K1|K2). The IPEK is 16 bytes either way. */
int mpos_dukpt_tdes_ipek(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                         const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                         uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN]) MPOS_MUST_CHECK;

/* Host: the transaction key (future key) of the KSN. MPOS_ERR_KSN for counter 0 or more
 * than 10 one-bits. */
int mpos_dukpt_tdes_transaction_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                    const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                                    uint8_t key[MPOS_DUKPT_TDES_KEY_LEN]) MPOS_MUST_CHECK;

/* Host: a working key of the KSN (transaction key, then the usage's variant). */
int mpos_dukpt_tdes_working_key(mpos_crypto_ctx *cc, const uint8_t *bdk, size_t bdk_len,
                                const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN],
                                enum mpos_dukpt_tdes_usage usage,
                                uint8_t key[MPOS_DUKPT_TDES_KEY_LEN]) MPOS_MUST_CHECK;

/* The working key of a usage from a transaction key (in place allowed). */
int mpos_dukpt_tdes_variant(mpos_crypto_ctx *cc, const uint8_t txn_key[MPOS_DUKPT_TDES_KEY_LEN],
                            enum mpos_dukpt_tdes_usage usage,
                            uint8_t key[MPOS_DUKPT_TDES_KEY_LEN]) MPOS_MUST_CHECK;

/* Terminal state. The fields are private: use the functions. */
typedef struct mpos_dukpt_tdes_terminal {
    /* registers[p]: future key of the next counter whose lowest one-bit is bit p; erased
     * (zero) when no such key is held. */
    uint8_t registers[MPOS_DUKPT_TDES_REGISTERS][MPOS_DUKPT_TDES_KEY_LEN];
    uint8_t current[MPOS_DUKPT_TDES_KEY_LEN]; /* key of the current transaction */
    uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN];    /* initial KSN: counter bits zero */
    uint32_t next_counter; /* counter of the next transaction; 0 when exhausted */
    uint32_t counter;      /* counter of the current transaction; 0 when none */
    int loaded;
} mpos_dukpt_tdes_terminal;

/* Loads an IPEK and the device's KSN (counter bits ignored); the first counter is 1. */
int mpos_dukpt_tdes_terminal_load(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                  const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                  const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN]) MPOS_MUST_CHECK;

/* Like mpos_dukpt_tdes_terminal_load, with the first transaction at first_counter (1 to 10
 * one-bits within 21 bits, else MPOS_ERR_KSN). */
int mpos_dukpt_tdes_terminal_load_at(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                     const uint8_t ipek[MPOS_DUKPT_TDES_KEY_LEN],
                                     const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN],
                                     uint32_t first_counter) MPOS_MUST_CHECK;

/* Starts the next transaction and writes its KSN. MPOS_ERR_EXHAUSTED after counter 1FF800. */
int mpos_dukpt_tdes_terminal_next(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                  uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN]) MPOS_MUST_CHECK;

/* A working key of the current transaction. MPOS_ERR_ARG when no transaction is open. */
int mpos_dukpt_tdes_terminal_working_key(mpos_dukpt_tdes_terminal *t, mpos_crypto_ctx *cc,
                                         enum mpos_dukpt_tdes_usage usage,
                                         uint8_t key[MPOS_DUKPT_TDES_KEY_LEN]) MPOS_MUST_CHECK;

/* Ends the current transaction: erases its key. */
void mpos_dukpt_tdes_terminal_done(mpos_dukpt_tdes_terminal *t);

/* Serialises the state into MPOS_DUKPT_TDES_STATE_LEN bytes (see the AES functions). */
int mpos_dukpt_tdes_terminal_export(const mpos_dukpt_tdes_terminal *t,
                                    uint8_t out[MPOS_DUKPT_TDES_STATE_LEN]) MPOS_MUST_CHECK;

/* Restores an exported state after validating every field (MPOS_ERR_FORMAT, t cleared). */
int mpos_dukpt_tdes_terminal_import(mpos_dukpt_tdes_terminal *t, const uint8_t *in,
                                    size_t len) MPOS_MUST_CHECK;

/* Erases the whole context. */
void mpos_dukpt_tdes_terminal_clear(mpos_dukpt_tdes_terminal *t);

#endif
