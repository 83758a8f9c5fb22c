/* openmpos terminal core: the sealed transaction request and the response check
 * (R-PACK-2, G-TXN-1, T-LIMIT-2, T-CHAN-2, H-GEO-1). Wire format: docs/protocol.md, "Sealed
 * transaction messages"; this header is the API.
 *
 * A request is a sequence of BER-TLV objects with private-class tags, in a fixed order, each
 * at most once, canonical (lib/tlv MPOS_TLV_STRICT), so a message has exactly one encoding:
 *   - in clear: version, message type, key scheme, KSN, terminal sequence number, transaction
 *     type, amount, currency, merchant ID, terminal ID, date/time, POS entry mode, fallback
 *     flag, masked PAN, original reference, the host's location;
 *   - encrypted under the DUKPT request data key (AES-CBC, or TDES-CBC with the data-request
 *     variant; random IV; ISO/IEC 9797-1 padding method 2): PAN, track 2 equivalent data,
 *     expiry, EMV data (field 55);
 *   - the PIN block, which the caller encrypted under the DUKPT PIN key (this module never
 *     sees a clear PIN);
 *   - in a reversal only, in clear, its reason (enum mpos_sealed_reversal_reason), so the
 *     back end need not guess the ISO 8583 reversal reason;
 *   - in a retry only, in clear, the retry flag (DF35 = 1): the same transaction (same
 *     sequence number, clear fields, card and EMV data) re-sent under a new KSN after its
 *     first send got no valid response, without a PIN block; the back end answers it with
 *     the first outcome and never starts a new charge on it;
 *   - last, a MAC under the DUKPT request MAC key (AES-CMAC, usage 2000; or ISO/IEC 9797-1
 *     MAC algorithm 3 = X9.19 with the MAC-request variant) over every byte before it
 *     (encrypt-then-MAC: the MAC covers the IV and the ciphertext).
 * The response carries the result, auth code, RRN, ARC, issuer authentication data, echoes of
 * the request's KSN and sequence number, optional data encrypted under the response data key
 * (3001 / data-response variant), and a MAC under the response MAC key (2001 / MAC-response
 * variant). A response is valid only if its MAC verifies (constant time) and it answers this
 * request (same scheme, KSN and sequence); anything else is "no valid response" and the
 * caller reverses.
 *
 * T-LIMIT-2: the terminal MACs only messages this module builds from a structure; there is no
 * function that MACs or encrypts caller-given bytes. The sealer computes the masked PAN from
 * the PAN and takes the KSN and scheme from the keys, so the clear fields cannot disagree
 * with what is encrypted and MAC'd.
 *
 * Keys: terminal functions take the working keys of one direction (mpos_sealed_keys), derived
 * from the DUKPT terminal state with mpos_sealed_keys_aes / _tdes. Back-end functions never
 * see a BDK: they take a key-provider callback, which the back end implements inside its HSM
 * boundary (mpos-hsmd derives the working keys of the KSN from the BDK it holds). The back
 * end's anti-replay rule (KSN counter strictly increasing, B-REPLAY-1) and the retry rule
 * (same sequence number = same transaction) are the caller's: this module authenticates.
 *
 * No heap, no OS calls; crypto through lib/ (mpos/crypto.h); random bytes from a callback
 * (NULL: mpos_random_bytes of the crypto facade). Return convention: 0, or a negative enum
 * mpos_err; every structure that held card data, a PIN block or a key is wiped on error.
 */
#ifndef MPOS_TERMINAL_SEALED_H
#define MPOS_TERMINAL_SEALED_H

#include <stddef.h>
#include <stdint.h>

#include "link/link.h"
#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/err.h"

#define MPOS_SEALED_VERSION           1
#define MPOS_SEALED_MAX_KSN_LEN       12 /* AES DUKPT; TDES is 10 */
#define MPOS_SEALED_MAX_KEY_LEN       32
#define MPOS_SEALED_MAX_MAC_LEN       16
#define MPOS_SEALED_MERCHANT_ID_LEN   15                    /* ans15, as ISO 8583 field 42 */
#define MPOS_SEALED_TERMINAL_ID_LEN   8                     /* ans8, as ISO 8583 field 41 */
#define MPOS_SEALED_DATETIME_LEN      14                    /* YYYYMMDDhhmmss, UTC */
#define MPOS_SEALED_REF_MAX_LEN       MPOS_LINK_REF_MAX_LEN /* original reference, an */
#define MPOS_SEALED_PAN_MIN_LEN       12
#define MPOS_SEALED_PAN_MAX_LEN       19
#define MPOS_SEALED_TRACK2_MAX_LEN    19  /* EMV tag 57 */
#define MPOS_SEALED_MAX_EMV_LEN       255 /* field 55 */
#define MPOS_SEALED_MAX_RESP_DATA_LEN 256
#define MPOS_SEALED_IAD_MIN_LEN       8 /* issuer authentication data, tag 91 */
#define MPOS_SEALED_IAD_MAX_LEN       16
#define MPOS_SEALED_MAX_AMOUNT        MPOS_LINK_MAX_AMOUNT /* n12, minor units */
#define MPOS_SEALED_MAX_REQUEST_LEN   1024 /* longest request this module writes or reads */
#define MPOS_SEALED_MAX_RESPONSE_LEN  512

enum mpos_sealed_msg_type {
    MPOS_SEALED_MSG_REQUEST = 0x01,  /* authorization / financial request */
    MPOS_SEALED_MSG_REVERSAL = 0x02, /* reverses the transaction of the same sequence number */
    MPOS_SEALED_MSG_RESPONSE = 0x81
};

/* Why the terminal reverses (docs/protocol.md 2.3, DF34): the values of the terminal key
 * store's enum mpos_keystore_reversal_reason, so a pending record's reason goes on the wire
 * unchanged. Present exactly in REVERSAL messages. */
enum mpos_sealed_reversal_reason {
    MPOS_SEALED_REV_NO_RESPONSE = 1,      /* no valid response from the back end */
    MPOS_SEALED_REV_CARD_DECLINED = 2,    /* approved online, declined by the card (2nd GEN AC) */
    MPOS_SEALED_REV_TERMINAL_FAILURE = 3, /* the terminal could not complete it (power lost
                                             while online, card gone or mute after approval) */
    MPOS_SEALED_REV_CANCELLED = 4         /* cancelled after the request was sent */
};

/* DUKPT variant and working-key algorithm. */
enum mpos_sealed_scheme {
    MPOS_SEALED_AES128 = 0x11, /* X9.24-3 AES DUKPT, AES-128 working keys */
    MPOS_SEALED_AES192 = 0x12,
    MPOS_SEALED_AES256 = 0x13,
    MPOS_SEALED_TDES = 0x21 /* X9.24-1 TDES DUKPT, 2-key TDES variants */
};

enum mpos_sealed_dir {
    MPOS_SEALED_DIR_REQUEST = 1, /* terminal -> back end: AES usages 2000/3000, TDES req */
    MPOS_SEALED_DIR_RESPONSE = 2 /* back end -> terminal: AES usages 2001/3001, TDES resp */
};

/* POS entry mode (ISO 8583 field 22, first two digits, as one BCD byte). */
enum mpos_entry_mode {
    MPOS_ENTRY_NONE = 0x00,     /* no card read (reversal, void without card) */
    MPOS_ENTRY_CHIP = 0x05,     /* contact chip */
    MPOS_ENTRY_MAGSTRIPE = 0x90 /* full magnetic stripe; with the fallback flag after a chip
                                   failure */
};

/* The working keys of one direction of one transaction. Holds keys: clear it after use. */
typedef struct mpos_sealed_keys {
    enum mpos_sealed_scheme scheme;
    enum mpos_sealed_dir dir;
    uint8_t ksn[MPOS_SEALED_MAX_KSN_LEN];
    size_t ksn_len;
    uint8_t mac_key[MPOS_SEALED_MAX_KEY_LEN];
    uint8_t data_key[MPOS_SEALED_MAX_KEY_LEN];
    size_t key_len; /* 16/24/32 for AES as the scheme says, 16 for TDES */
} mpos_sealed_keys;

/* Random bytes for the IVs: 0 or a negative enum mpos_err. */
typedef int (*mpos_sealed_rng_fn)(void *ctx, uint8_t *out, size_t len);

/* Back end: fills keys (mpos_sealed_keys_set) with the working keys of direction dir for the
 * KSN, or returns a negative enum mpos_err (unknown terminal, KSN refused, scheme not the one
 * this terminal is registered with: the provider decides). */
typedef int (*mpos_sealed_key_fn)(void *ctx, enum mpos_sealed_scheme scheme,
                                  enum mpos_sealed_dir dir, const uint8_t *ksn, size_t ksn_len,
                                  mpos_sealed_keys *keys);

/* Terminal, AES DUKPT: the keys of direction dir of the transaction open in t (after
 * mpos_dukpt_aes_terminal_next, which gave ksn). scheme AES128/192/256 picks the working-key
 * type (not longer than the initial key). X9.24-3-2017 6.3.2 usages: request 2000 (MAC) and
 * 3000 (data), response 2001 and 3001. keys is wiped on error. */
int mpos_sealed_keys_aes(mpos_sealed_keys *keys, mpos_crypto_ctx *cc, mpos_dukpt_aes_terminal *t,
                         enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                         const uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN]) MPOS_MUST_CHECK;

/* Terminal, TDES DUKPT: X9.24-1-2009 A.4 variants: MAC request / data request, or MAC
 * response / data response. */
int mpos_sealed_keys_tdes(mpos_sealed_keys *keys, mpos_crypto_ctx *cc, mpos_dukpt_tdes_terminal *t,
                          enum mpos_sealed_dir dir,
                          const uint8_t ksn[MPOS_DUKPT_TDES_KSN_LEN]) MPOS_MUST_CHECK;

/* Fills keys from already-derived keys (a key provider, an HSM). MPOS_ERR_ARG / MPOS_ERR_KEY
 * when the scheme, direction, KSN length or key length do not agree. */
int mpos_sealed_keys_set(mpos_sealed_keys *keys, enum mpos_sealed_scheme scheme,
                         enum mpos_sealed_dir dir, const uint8_t *ksn, size_t ksn_len,
                         const uint8_t *mac_key, const uint8_t *data_key,
                         size_t key_len) MPOS_MUST_CHECK;

void mpos_sealed_keys_clear(mpos_sealed_keys *keys);

/* Card data: encrypted on the wire. Strings NUL-terminated. */
typedef struct mpos_sealed_card {
    char pan[MPOS_SEALED_PAN_MAX_LEN + 1];      /* 12..19 digits */
    char expiry[5];                             /* YYMM */
    uint8_t track2[MPOS_SEALED_TRACK2_MAX_LEN]; /* EMV tag 57 format; required for a stripe
                                                   read, optional for chip */
    size_t track2_len;
    uint8_t emv[MPOS_SEALED_MAX_EMV_LEN]; /* field 55 (BER-TLV); required for chip, absent
                                             for stripe */
    size_t emv_len;
} mpos_sealed_card;

/* A transaction request. Strings NUL-terminated. */
typedef struct mpos_sealed_request {
    uint8_t msg_type; /* MPOS_SEALED_MSG_REQUEST or _REVERSAL */
    /* Not read by the sealer (it takes them from the keys); filled by the opener. */
    enum mpos_sealed_scheme scheme;
    uint8_t ksn[MPOS_SEALED_MAX_KSN_LEN];
    size_t ksn_len;
    uint32_t sequence; /* the idempotency key: a retry reuses it with a new KSN */
    uint8_t txn_type;  /* enum mpos_link_txn_type, as START_TXN gave it */
    uint64_t amount;   /* minor units: 0 for balance, 1..MPOS_SEALED_MAX_AMOUNT otherwise */
    uint16_t currency; /* ISO 4217 numeric, 1..999 */
    char merchant_id[MPOS_SEALED_MERCHANT_ID_LEN + 1]; /* exactly 15 printable ASCII */
    char terminal_id[MPOS_SEALED_TERMINAL_ID_LEN + 1]; /* exactly 8 printable ASCII */
    char datetime[MPOS_SEALED_DATETIME_LEN + 1];       /* terminal clock, a valid UTC time */
    uint8_t entry_mode;                                /* enum mpos_entry_mode */
    uint8_t fallback; /* 1: stripe after a chip failure (entry mode magstripe only) */
    char masked_pan[MPOS_SEALED_PAN_MAX_LEN + 1];   /* the opener's; the sealer masks card.pan */
    char original_ref[MPOS_SEALED_REF_MAX_LEN + 1]; /* void and refund: 1..32; else "" */
    int has_location;
    mpos_link_location location; /* as SET_HOST_LOCATION reported it (H-GEO-1) */
    mpos_sealed_card card;       /* present iff entry_mode is not NONE */
    int has_pin;
    uint8_t pin_format; /* ISO 9564-1 format: 4 with AES schemes, 0 with TDES */
    uint8_t pin_block[16];
    size_t pin_block_len;    /* 16 (format 4) or 8 (format 0) */
    uint8_t reversal_reason; /* enum mpos_sealed_reversal_reason: required (1..4) in a
                                REVERSAL, 0 in a REQUEST */
    uint8_t retry; /* 1: a retry of this sequence number under a new KSN (DF35), whose first
                      send got no valid response; REQUEST only and never with a PIN block
                      (the PIN block is bound to the first KSN). 0: a first send. */
} mpos_sealed_request;

/* The back end's answer. Strings NUL-terminated, "" = absent. */
typedef struct mpos_sealed_response {
    /* Echo of the request (the opener checks them; the sealer takes them from here). */
    enum mpos_sealed_scheme scheme;
    uint8_t ksn[MPOS_SEALED_MAX_KSN_LEN];
    size_t ksn_len;
    uint32_t sequence;
    char response_code[3]; /* an2, ISO 8583 field 39 ("00" approved); required */
    char auth_code[7];     /* "" or an6 */
    char rrn[13];          /* "" or an12 */
    char arc[3];           /* "" or an2: authorisation response code for the card (EMV 8A) */
    uint8_t iad[MPOS_SEALED_IAD_MAX_LEN];        /* issuer authentication data (EMV 91) */
    size_t iad_len;                              /* 0, or 8..16 */
    uint8_t data[MPOS_SEALED_MAX_RESP_DATA_LEN]; /* encrypted on the wire (3001) */
    size_t data_len;
} mpos_sealed_response;

/* Terminal: seals req under keys (direction REQUEST) into out (cap bytes), length in
 * *out_len. Every field is checked by the rules of docs/protocol.md first (MPOS_ERR_FORMAT);
 * req->scheme, ksn and masked_pan are not read (they come from the keys and the PAN).
 * MPOS_ERR_ARG / MPOS_ERR_KEY for keys that are not well-formed REQUEST keys, MPOS_ERR_LENGTH
 * when out is too small, an RNG error as the callback returned it; on every error the bytes
 * written to out are wiped. */
int mpos_sealed_seal_request(mpos_crypto_ctx *cc, const mpos_sealed_keys *keys,
                             const mpos_sealed_request *req, mpos_sealed_rng_fn rng, void *rng_ctx,
                             uint8_t *out, size_t cap, size_t *out_len) MPOS_MUST_CHECK;

/* Back end: opens a request. Parses the clear part (MPOS_ERR_FORMAT for anything but the
 * exact layout), asks get_keys for the REQUEST keys of its scheme and KSN, verifies the MAC in
 * constant time BEFORE any other use of the content (MPOS_ERR_VERIFY), decrypts, and checks
 * every field (MPOS_ERR_FORMAT), including that the masked PAN in clear is the mask of the
 * encrypted PAN. A get_keys error is returned as is. req is wiped on every error. */
int mpos_sealed_open_request(mpos_crypto_ctx *cc, mpos_sealed_key_fn get_keys, void *key_ctx,
                             const uint8_t *msg, size_t len,
                             mpos_sealed_request *req) MPOS_MUST_CHECK;

/* Back end: seals resp with the RESPONSE keys get_keys gives for resp->scheme and resp->ksn
 * (copy them, and resp->sequence, from the opened request). */
int mpos_sealed_seal_response(mpos_crypto_ctx *cc, mpos_sealed_key_fn get_keys, void *key_ctx,
                              const mpos_sealed_response *resp, mpos_sealed_rng_fn rng,
                              void *rng_ctx, uint8_t *out, size_t cap,
                              size_t *out_len) MPOS_MUST_CHECK;

/* Terminal: opens the response to the request sealed with the KSN of keys (direction
 * RESPONSE) and sequence number sequence. 0 only for a well-formed response whose MAC
 * verifies and whose scheme, KSN and sequence echo this request; MPOS_ERR_VERIFY for a MAC
 * that does not verify or a response to another request, MPOS_ERR_FORMAT for a malformed one.
 * Any nonzero result means "no valid response" (the caller reverses); resp is wiped then. */
int mpos_sealed_open_response(mpos_crypto_ctx *cc, const mpos_sealed_keys *keys, uint32_t sequence,
                              const uint8_t *msg, size_t len,
                              mpos_sealed_response *resp) MPOS_MUST_CHECK;

/* Wipes a request or response structure. */
void mpos_sealed_request_clear(mpos_sealed_request *req);
void mpos_sealed_response_clear(mpos_sealed_response *resp);

#endif
