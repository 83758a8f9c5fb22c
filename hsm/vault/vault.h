/* mpos-hsmd: the key vault. Holds the LMK and the key-block protection key derived from it in
 * locked memory, and turns key blocks (TR-31 version D under that KBPK) into clear keys that
 * exist only inside hsmd, checking their attributes against what the command needs.
 * docs/hsm-design.md explains the model. Only code inside mpos-hsmd links this module. */
#ifndef MPOS_HSM_VAULT_H
#define MPOS_HSM_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/err.h"
#include "mpos/tr31.h"

#define HSM_LMK_LEN          32  /* AES-256 */
#define HSM_KEY_MAX_LEN      64  /* longest clear key (HMAC); AES 32, TDES 24 */
#define HSM_KEYBLOCK_MAX_LEN 512 /* longest key block hsmd writes or accepts, characters */
#define HSM_KCV_LEN          5   /* check values shown: CMAC for AES, 3-byte legacy for TDES */
#define HSM_MAX_COMPONENTS   3

/* Additions to the contract (vault owner): */
#define HSM_LMK_KEK_LABEL "mpos-lmk-kek" /* CKA_LABEL of the token's LMK wrapping key */
/* SP 800-108 label of the KBPK derivation (hsm_kbpk_derive). */
#define HSM_KBPK_KDF_LABEL "openmpos LMK key blocks"
/* Proprietary optional block of openmpos key blocks (X9.143:2021 6.3.6: numeric IDs are
 * reserved for proprietary use; "0M" is not one). Content "MP1" (owner tag and format
 * version) then attributes: "D1" AES DUKPT, "D2" TDES DUKPT. Written only when there is an
 * attribute to carry. */
#define HSM_OPT_BLOCK_ID "91"
/* lmk.wrapped: magic "MPOSLMK1" (8) || mechanism (4, big-endian, CKM_AES_GCM) || IV (12) ||
 * GCM ciphertext of the LMK (32) || tag (16); the first 12 bytes are the GCM AAD. */
#define HSM_LMK_FILE_LEN      72
#define HSM_KDF_MAX_FIXED_LEN 128 /* longest SP 800-108 fixed input data hsm_kdf_cmac takes */
/* SM4 has no X9.143 algorithm code; numeric codes are proprietary (X9.143:2021 6.3.2):
 * openmpos uses '4' in the key block header and in hsm_key_attr.algorithm (same definition as
 * hsm/ops/ops.h). */
#define HSM_ALG_SM4 '4'
/* The lib/tr31 extensions of the key blocks under the LMK (mpos/tr31.h): SM4 keys
 * (HSM_ALG_SM4) and EC private scalars ('E'). Whatever opens such a block outside hsm_key_load
 * passes these flags to mpos_tr31_unwrap_ext; blocks exchanged under a KEK stay strict. */
#define HSM_KEYBLOCK_TR31_EXT (MPOS_TR31_EXT_SM4 | MPOS_TR31_EXT_EC_RAW)

/* PKCS#11 location of the LMK wrapping key (configuration, so a real HSM drops in). */
struct hsm_pkcs11_config {
    const char *module_path; /* e.g. /usr/lib/softhsm/libsofthsm2.so */
    const char *token_label; /* token holding the non-extractable key "mpos-lmk-kek" */
    const char *user_pin;    /* token user PIN */
};

/* Key attributes, as in the TR-31 header (ANSI X9.143 6.3) plus the openmpos optional block. */
struct hsm_key_attr {
    char usage[3];      /* "B0", "P0", "M6", "D0", "K0", "E0"... NUL-terminated */
    char algorithm;     /* 'A' AES, 'T' TDES, 'H' HMAC, 'E' EC; also 'D' single DES (8 bytes),
                         * HSM_ALG_SM4 (16 bytes); an 'E' key is the 32-byte private scalar */
    char mode;          /* 'B' both, 'E' encrypt/wrap, 'D' decrypt, 'G' generate, 'V' verify,
                         * 'C' generate+verify, 'N' none, 'S' sign, 'X' derive keys */
    char exportability; /* 'E' exportable under a KEK, 'N' never */
    uint8_t dukpt;      /* for B0/B1: 1 AES DUKPT, 2 TDES DUKPT; else 0 */
};

/* A clear key inside hsmd. Lives on the stack of an hsm_op_* only for one command, or in the
 * locked arena; wiped with hsm_key_clear() on every path. */
typedef struct hsm_key {
    uint8_t bytes[HSM_KEY_MAX_LEN];
    size_t len;
    struct hsm_key_attr attr;
} hsm_key;

/* What a command accepts for one key argument: any of the listed usages (NULL-terminated
 * list of 2-character codes), one of the algorithms (string of codes, e.g. "AT"), and a mode
 * of use that permits the operation (the operation's letter must be allowed by the key's
 * mode: 'G' is allowed by G, C, B; 'V' by V, C, B; 'E' by E, B; 'D' by D, B; 'X' by X; 'S' by
 * S). */
struct hsm_key_need {
    const char *const *usages;
    const char *algorithms;
    char operation;
};

typedef struct hsm_vault {
    mpos_crypto_ctx cc;
    uint8_t *arena; /* mlock'ed page(s): LMK, KBPK; never swapped, wiped on close */
    size_t arena_len;
    uint8_t *lmk;  /* inside arena */
    uint8_t *kbpk; /* inside arena: CMAC-KDF(LMK, "openmpos LMK key blocks") */
    uint8_t lmk_kcv[HSM_KCV_LEN];
    int open;
    /* Addition: a fixed English description of the last refusal of hsm_vault_* or
     * hsm_key_* (never key or PIN data), NULL after success. For logs and operators. */
    const char *why;
} hsm_vault;

/* Allocates and mlocks the arena (MPOS_ERR_CRYPTO with a clear message on stderr if locking
 * fails: the caller refuses to start) and initialises the crypto context. */
/* The arena is one page between two PROT_NONE guard pages, MADV_DONTDUMP and MADV_DONTFORK (a
 * child process has no arena: touching it faults). v is overwritten: call it on a vault that
 * is not initialised, or closed. Workers may copy the struct once open (the copy shares the
 * arena and needs its own crypto context); only the owner calls hsm_vault_close. */
int hsm_vault_init(hsm_vault *v) MPOS_MUST_CHECK;

/* Creates a new LMK: generates it, creates the wrapping key in the token if it is not there,
 * writes the wrapped LMK to wrapped_path (mode 0600, refusing to overwrite). For
 * `mposctl hsm init`. Leaves the vault open with the new LMK. */
int hsm_vault_create_pkcs11(hsm_vault *v, const struct hsm_pkcs11_config *cfg,
                            const char *wrapped_path) MPOS_MUST_CHECK;

/* Opens the LMK from the token: one C_Decrypt at start-up, never again per command. Refuses a
 * wrapped-LMK file with loose permissions (group/other bits). */
/* Errors of both (v->why says which check): MPOS_ERR_ARG bad arguments, vault not initialised
 * or already open, file missing, present at create, not a regular file, not owned by the
 * effective user, group/other permission bits; MPOS_ERR_FORMAT file length or magic;
 * MPOS_ERR_UNSUPPORTED a mechanism this build does not read; MPOS_ERR_CRYPTO module not
 * loadable, no token with that label, token or session failure; MPOS_ERR_VERIFY PIN refused
 * or the wrapped LMK does not authenticate (tampered, other token); MPOS_ERR_KEY the wrapping
 * key is missing (open), ambiguous, or not a sensitive, non-extractable AES-256 key with
 * encrypt and decrypt. The session is logged out and the module finalised on every path. */
int hsm_vault_open_pkcs11(hsm_vault *v, const struct hsm_pkcs11_config *cfg,
                          const char *wrapped_path) MPOS_MUST_CHECK;

/* Opens the LMK from 2 or 3 components (32 bytes each) entered under dual control. Each
 * component's check value must equal the one given (kcvs[i], HSM_KCV_LEN bytes); the LMK is
 * their XOR. */
/* Check values are the CMAC method (hsm_key_kcv of the component as an AES-256 key), compared
 * in constant time. MPOS_ERR_LENGTH for n not 2 or 3; MPOS_ERR_VERIFY for a check value that
 * does not match; MPOS_ERR_KEY for an all-zero component, two equal components, or an
 * all-zero LMK. v->lmk_kcv then holds the combined key's check value for confirmation. */
int hsm_vault_open_components(hsm_vault *v, const uint8_t comps[][HSM_LMK_LEN], size_t n,
                              const uint8_t kcvs[][HSM_KCV_LEN]) MPOS_MUST_CHECK;

/* Wipes the LMK, KBPK and arena, frees the crypto context. */
void hsm_vault_close(hsm_vault *v);

/* Addition: makes the arena of an open vault read-only (mprotect PROT_READ), so that no stray
 * write can change the LMK or KBPK while commands run; hsm_key_* only read it. Optional, once
 * after opening and before serving; hsm_vault_close undoes it. MPOS_ERR_ARG if v is not open,
 * MPOS_ERR_CRYPTO if mprotect fails. */
int hsm_vault_seal(hsm_vault *v) MPOS_MUST_CHECK;

/* Unwraps a key block under the KBPK and checks it against need: MPOS_ERR_VERIFY for a block
 * that does not verify (tampered, other LMK), MPOS_ERR_USAGE when its usage, algorithm or
 * mode of use does not fit. out is wiped on error. */
int hsm_key_load(hsm_vault *v, const char *block, size_t block_len, const struct hsm_key_need *need,
                 hsm_key *out) MPOS_MUST_CHECK;
/* Every failure of the key block itself (syntax, header, MAC, key length) is MPOS_ERR_VERIFY,
 * so MPOS_ERR_USAGE always means an authentic block of the wrong kind; v->why has detail.
 * Also: MPOS_ERR_ARG vault not open or malformed need (checked first), MPOS_ERR_LENGTH block
 * longer than HSM_KEYBLOCK_MAX_LEN, MPOS_ERR_KEY / MPOS_ERR_FORMAT an authentic block this
 * vault never writes (algorithm D, exportability S, a bad block 91). */

/* Wraps a clear key with its attributes under the KBPK (random key-length padding). */
int hsm_key_store(hsm_vault *v, const hsm_key *key, char *block, size_t cap,
                  size_t *block_len) MPOS_MUST_CHECK;
/* The header is "D" length usage algorithm mode "00" exportability, then key context 1
 * (storage), and block 91 when dukpt is set. Algorithms A, T, H, D through lib/tr31 strict;
 * HSM_ALG_SM4 and E through its proprietary extensions MPOS_TR31_EXT_SM4 and
 * MPOS_TR31_EXT_EC_RAW (mpos/tr31.h: SM4 takes the usages of AES and M1; E the raw 32-byte
 * scalar). Refused: any other algorithm, exportability other than E or N, dukpt other than 0,
 * or 1 for an AES / 2 for a TDES B0 or B1 key (MPOS_ERR_KEY); a usage/algorithm/mode
 * combination lib/tr31 does not allow (MPOS_ERR_USAGE or MPOS_ERR_FORMAT); a key length the
 * algorithm does not take (MPOS_ERR_KEY). block is wiped on error. */

/* Generates a random key of attr's algorithm and the given length (DES parity set for TDES). */
int hsm_key_generate(hsm_vault *v, const struct hsm_key_attr *attr, size_t len,
                     hsm_key *out) MPOS_MUST_CHECK;

/* Addition: the check hsm_key_load makes after unwrapping, for keys that did not come from a
 * key block (generated or derived inside a command): 0 when key's usage, algorithm and mode
 * fit need, else MPOS_ERR_USAGE; MPOS_ERR_ARG for a malformed need (no usages, no
 * algorithms, an operation other than G V E D X S). Mode N permits no operation here. */
int hsm_key_check(const hsm_key *key, const struct hsm_key_need *need) MPOS_MUST_CHECK;

/* The check value of a key: CMAC method (5 bytes) for AES, legacy (3 bytes, rest zero) for
 * TDES. */
int hsm_key_kcv(hsm_vault *v, const hsm_key *key, uint8_t kcv[HSM_KCV_LEN]) MPOS_MUST_CHECK;

void hsm_key_clear(hsm_key *k);

/* Addition: NIST SP 800-108r1 4.1 KDF in counter mode with AES-CMAC (SP 800-38B) as PRF:
 * K(i) = CMAC(key, [i]_32 || fixed), i = 1, 2, ..., out = the leftmost out_len bytes of
 * K(1) || K(2) || ... The caller's fixed input data carries Label || 0x00 || Context || [L]
 * (at most HSM_KDF_MAX_FIXED_LEN bytes). out is wiped on error. */
int hsm_kdf_cmac(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len, const uint8_t *fixed,
                 size_t fixed_len, uint8_t *out, size_t out_len) MPOS_MUST_CHECK;

/* Addition: KBPK = hsm_kdf_cmac(LMK, fixed) with fixed = "openmpos LMK key blocks" (23 ASCII
 * bytes, no terminator) || 0x00 || empty context || [256]_32 (00 00 01 00): two CMAC blocks,
 * 256 bits. */
int hsm_kbpk_derive(mpos_crypto_ctx *cc, const uint8_t lmk[HSM_LMK_LEN],
                    uint8_t kbpk[HSM_LMK_LEN]) MPOS_MUST_CHECK;

#endif
