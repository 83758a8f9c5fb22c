/* mpos-hsmd: the commands, as pure functions over the vault (docs/hsm-design.md).
 *
 * Every command is
 *
 *     int hsm_op_<name>(hsm_vault *v, const struct hsm_<name>_req *req,
 *                       struct hsm_<name>_resp *resp);
 *
 * (verify-only commands have no response). A command does no I/O and allocates nothing of its
 * own (hsm_op_cert_sign, hsm_op_ca_cert_create and hsm_op_generate_key for EC keys go through
 * libcrypto's X.509 and EC code, which allocates internally). The vault must be open. Every clear
 * key, PIN, track and card-data temporary is wiped on every path. A command returns 0 or a negative
 * enum mpos_err; on any error the whole response is zeroed, so a caller that ignores the result
 * sends nothing.
 *
 * Errors every command may return: MPOS_ERR_ARG (NULL, unknown enum, vault not open),
 * MPOS_ERR_LENGTH / MPOS_ERR_FORMAT (a field the command does not take), MPOS_ERR_VERIFY (a key
 * block that does not verify under the LMK: tampered, or another LMK; and a MAC, PIN,
 * cryptogram or check value that does not match), MPOS_ERR_USAGE (a key block whose usage,
 * algorithm, mode of use, exportability or DUKPT scheme the command does not take),
 * MPOS_ERR_KEY (a key length the command does not take), MPOS_ERR_KSN, MPOS_ERR_DECODE (a
 * decrypted PIN block or card data that is not well formed), MPOS_ERR_CRYPTO, MPOS_ERR_RNG.
 *
 * Key arguments arrive as key blocks under the LMK (struct hsm_kb_in, the text as received).
 * Each command states the usage / algorithm / mode of use it accepts for each; anything else is
 * MPOS_ERR_USAGE before any other work. Algorithm codes are those of struct hsm_key_attr, plus
 * HSM_ALG_SM4. Mode of use N permits no operation (vault.h). The vault's reason for a refusal is
 * in v->why.
 *
 * Which role may call which command is hsmd's business (allow-lists), not this module's.
 */
#ifndef MPOS_HSM_OPS_H
#define MPOS_HSM_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/emv.h"
#include "mpos/mkwk.h"
#include "mpos/err.h"
#include "mpos/pin.h"
#include "vault/vault.h"

/* SM4 has no X9.143 algorithm code. Numeric algorithm codes are reserved for proprietary use
 * (X9.143:2021 6.3.2); openmpos uses '4' (for SM4) in the key-block header and in
 * hsm_key_attr.algorithm (vault.h defines it too). An SM4 key is 16 bytes. */
#ifndef HSM_ALG_SM4
#define HSM_ALG_SM4 '4'
#endif

#define HSM_PAN_BUF_LEN       20   /* 12 to 19 digits + NUL */
#define HSM_KSN_MAX_LEN       12   /* AES DUKPT 12 bytes, TDES DUKPT 10 */
#define HSM_IKID_LEN          8    /* AES DUKPT initial key ID */
#define HSM_MAC_MAX_LEN       16   /* one AES / SM4 block */
#define HSM_PIN_BLOCK_MAX_LEN 16   /* format 4 */
#define HSM_EC_PUB_LEN        65   /* P-256 uncompressed point 04 || X || Y */
#define HSM_EC_PRIV_LEN       32   /* P-256 private scalar, the content of an 'E' key block */
#define HSM_HASH_LEN          32   /* HMAC-SHA-256 */
#define HSM_RANDOM_MAX_LEN    256  /* most random bytes per command */
#define HSM_CARD_DATA_MAX_LEN 1024 /* longest DUKPT-encrypted card data, bytes */
#define HSM_SERIAL_BUF_LEN    33   /* terminal serial: 1 to 32 of A-Z a-z 0-9 '-', + NUL */
#define HSM_CERT_MAX_LEN      2048
#define HSM_CERT_SERIAL_LEN   16 /* certificate serial number: 16 random bytes, top bit 0 */
#define HSM_MKWK_KCV_LEN      4  /* UnionPay working key check value, bytes */

/* A key block as received (under the LMK, or a TR-31 block under a KEK for import). */
struct hsm_kb_in {
    const char *text;
    size_t len;
};

/* A key block produced by a command: NUL-terminated text and its length. */
struct hsm_kb_out {
    char text[HSM_KEYBLOCK_MAX_LEN + 1];
    size_t len;
};

/* A DUKPT transaction as the terminal identified it: the BDK (usage B0, mode X; the
 * scheme is the key block's DUKPT attribute: AES BDK -> AES DUKPT, TDES BDK -> TDES DUKPT) and
 * the KSN (12 bytes AES, 10 bytes TDES). */
struct hsm_dukpt_ref {
    struct hsm_kb_in bdk;
    uint8_t ksn[HSM_KSN_MAX_LEN];
    size_t ksn_len;
    /* AES DUKPT only: length of the working key, 16 (0 means 16), 24 or 32 bytes, at most the
     * BDK's length. An AES working key (X9.24-3-2017 6.2.1 key types AES-128/192/256). */
    size_t aes_key_len;
};

/* ---- Key management (role tools) ------------------------------------------------------- */

/* Generates a random key with the attributes given and returns it as a key block under the
 * LMK with its check value. Symmetric: algorithm 'A' (16/24/32), 'T' (16/24), 'D' (8),
 * 'H' (16..64),
 * HSM_ALG_SM4 (16). Algorithm 'E' (usage S0/S1, mode S): a P-256 key pair; the key block holds
 * the private scalar, the response carries the public key, no check value.
 * Usage B0 must carry attr.dukpt matching the algorithm (1 AES, 2 TDES); other usages 0. */
struct hsm_generate_key_req {
    struct hsm_key_attr attr;
    size_t key_len; /* bytes; ignored for 'E' */
};
struct hsm_generate_key_resp {
    struct hsm_kb_out key;
    uint8_t kcv[HSM_KCV_LEN]; /* AES: CMAC KCV, 5 bytes; others: legacy KCV, 3 bytes */
    size_t kcv_len;           /* 0 for 'E' */
    uint8_t ec_pub[HSM_EC_PUB_LEN];
    size_t ec_pub_len; /* HSM_EC_PUB_LEN for 'E', else 0 */
};
int hsm_op_generate_key(hsm_vault *v, const struct hsm_generate_key_req *req,
                        struct hsm_generate_key_resp *resp) MPOS_MUST_CHECK;

/* Generates a BDK: usage B0, mode X, DUKPT scheme from the algorithm (AES-128/192/256 ->
 * AES DUKPT; 2-key (16) or 3-key (24) TDES -> TDES DUKPT). */
struct hsm_generate_bdk_req {
    char algorithm;     /* 'A' or 'T' */
    size_t key_len;     /* 'A': 16, 24, 32; 'T': 16, 24 */
    char exportability; /* 'E' or 'N' */
};
int hsm_op_generate_bdk(hsm_vault *v, const struct hsm_generate_bdk_req *req,
                        struct hsm_generate_key_resp *resp) MPOS_MUST_CHECK;

/* Imports a key received as a TR-31 block (version D under an AES KEK, version B under a TDES
 * KEK) under a KEK/ZMK given as a key block under the LMK (usage K0 or K1, mode D or B). The
 * imported key keeps the TR-31 header's usage, algorithm, mode and exportability ('S' is
 * stored as 'N'); mode N is refused (MPOS_ERR_USAGE: it permits no command). It is refused
 * (MPOS_ERR_KEY) if it is stronger than the KEK. dukpt: the scheme of an imported B0 key (0: from
 * its algorithm). expected_kcv (optional, 0 to HSM_KCV_LEN bytes, the key's own check-value method)
 * is compared in constant time. */
struct hsm_import_key_req {
    struct hsm_kb_in kek;
    struct hsm_kb_in block; /* TR-31 under the KEK */
    uint8_t dukpt;
    uint8_t expected_kcv[HSM_KCV_LEN];
    size_t expected_kcv_len; /* 0: no check */
};
struct hsm_import_key_resp {
    struct hsm_kb_out key; /* under the LMK */
    struct hsm_key_attr attr;
    uint8_t kcv[HSM_KCV_LEN];
    size_t kcv_len;
};
int hsm_op_import_key(hsm_vault *v, const struct hsm_import_key_req *req,
                      struct hsm_import_key_resp *resp) MPOS_MUST_CHECK;

/* Exports a key (exportability 'E' only; MPOS_ERR_USAGE otherwise) as a TR-31 block under a
 * KEK (usage K0 or K1, mode E or B): version D under an AES KEK, B under a TDES KEK. Refused
 * (MPOS_ERR_KEY) if the key is stronger than the KEK. The block keeps the key's usage,
 * algorithm and mode; its exportability is the one asked ('N' recommended, so the receiver
 * cannot pass it on; 'E' only if the key has it). Asymmetric keys are not exported. */
struct hsm_export_key_req {
    struct hsm_kb_in kek;
    struct hsm_kb_in key;
    char exportability; /* of the exported block: 'N' or 'E' */
};
struct hsm_export_key_resp {
    struct hsm_kb_out block; /* TR-31 under the KEK */
    uint8_t kcv[HSM_KCV_LEN];
    size_t kcv_len;
};
int hsm_op_export_key(hsm_vault *v, const struct hsm_export_key_req *req,
                      struct hsm_export_key_resp *resp) MPOS_MUST_CHECK;

/* Derives a terminal's initial DUKPT key from a BDK and exports it under a transport key
 * (usage K1 or K0, mode E or B; AES or TDES) as a TR-31 block: usage B1, mode X,
 * exportability N, algorithm of the initial key.
 * AES DUKPT: the initial key (X9.24-3-2017 6.5.3, same length as the BDK) of the 8-byte
 *   initial key ID ikid; optional block IK = the ID (16 hex).
 * TDES DUKPT: the IPEK (X9.24-1-2009 A.6) of the 10-byte ksn (counter bits ignored); optional
 *   block KS = the initial KSN, counter bits zero (20 hex).
 * Refused (MPOS_ERR_KEY) if the initial key is stronger than the transport key. */
struct hsm_dukpt_initial_key_req {
    struct hsm_kb_in bdk;
    uint8_t id[HSM_KSN_MAX_LEN]; /* AES: initial key ID (8); TDES: KSN (10) */
    size_t id_len;
    struct hsm_kb_in transport_key;
};
struct hsm_dukpt_initial_key_resp {
    struct hsm_kb_out block;  /* TR-31 under the transport key */
    uint8_t kcv[HSM_KCV_LEN]; /* of the initial key: AES CMAC 5 bytes, TDES legacy 3 */
    size_t kcv_len;
};
int hsm_op_dukpt_initial_key(hsm_vault *v, const struct hsm_dukpt_initial_key_req *req,
                             struct hsm_dukpt_initial_key_resp *resp) MPOS_MUST_CHECK;

/* UnionPay sign-on: fresh working keys encrypted under the terminal master key (TMK: usage
 * K0, mode E or B, algorithm 'T' (16 bytes) or HSM_ALG_SM4), ECB, each with the first
 * HSM_MKWK_KCV_LEN bytes of its legacy check value (mpos/mkwk.h), and each also as a key block
 * under the LMK for the back end's later commands:
 *   PIK: usage P0, mode B;  MAK: usage M1, mode C (the UnionPay "ECB" MAC, hsm_op_mac_*);
 *   TDK: usage D0, mode B.  Exportability N.
 * TDES: PIK and TDK 16 bytes; MAK 16 bytes, or 8 (algorithm 'D', single DES) when
 * mak_single_des is set. SM4: every key 16 bytes. */
struct hsm_mkwk_req {
    struct hsm_kb_in tmk;
    int mak_single_des;
};
struct hsm_mkwk_key {
    uint8_t enc[MPOS_MKWK_MAX_KEY_LEN];
    size_t enc_len;
    uint8_t kcv[HSM_MKWK_KCV_LEN];
    struct hsm_kb_out key; /* under the LMK */
};
struct hsm_mkwk_resp {
    struct hsm_mkwk_key pik, mak, tdk;
};
int hsm_op_mkwk_generate(hsm_vault *v, const struct hsm_mkwk_req *req,
                         struct hsm_mkwk_resp *resp) MPOS_MUST_CHECK;

/* ---- DUKPT MACs (role backend) --------------------------------------------------------- */

/* Verifies the MAC of a terminal's request: AES DUKPT: CMAC (SP 800-38B) under the working
 * key of usage 2000 (MAC generation, X9.24-3-2017 6.3.2); TDES DUKPT: ISO 9797-1 MAC
 * algorithm 3 (ANSI X9.19), padding method 1, under the MAC-request variant (X9.24-1-2009
 * A.4). mac_len MPOS_MAC_MIN_VERIFY_LEN (4) to the full MAC (16 AES, 8 TDES), compared in
 * constant time: 0 or MPOS_ERR_VERIFY. A MAC made with a response-direction key never
 * verifies here. */
struct hsm_dukpt_mac_verify_req {
    struct hsm_dukpt_ref dukpt;
    const uint8_t *data;
    size_t data_len;
    uint8_t mac[HSM_MAC_MAX_LEN];
    size_t mac_len;
};
int hsm_op_dukpt_mac_verify(hsm_vault *v,
                            const struct hsm_dukpt_mac_verify_req *req) MPOS_MUST_CHECK;

/* Generates the MAC of the response: AES DUKPT usage 2001 key (CMAC), TDES MAC-response
 * variant (X9.19). mac_len 4 to the full MAC (0 means full). */
struct hsm_dukpt_mac_generate_req {
    struct hsm_dukpt_ref dukpt;
    const uint8_t *data;
    size_t data_len;
    size_t mac_len;
};
struct hsm_mac_resp {
    uint8_t mac[HSM_MAC_MAX_LEN];
    size_t mac_len;
};
int hsm_op_dukpt_mac_generate(hsm_vault *v, const struct hsm_dukpt_mac_generate_req *req,
                              struct hsm_mac_resp *resp) MPOS_MUST_CHECK;

/* ---- PINs ------------------------------------------------------------------------------ */

enum hsm_pin_source {
    HSM_PIN_FROM_DUKPT = 1, /* AES DUKPT: format 4 under the usage 1000 key (AES); TDES
                               DUKPT: format 0 under the PIN variant */
    HSM_PIN_FROM_KEY = 2    /* a PIN key block (usage P0, mode D or B): a zone PIN key or a
                               sign-on PIK; src_format 0, 1, 3 (TDES) or 4 (AES, SM4) */
};

/* Translates a PIN block to a zone PIN key (usage P0, mode E or B): dst_format 0 (TDES ZPK)
 * or 4 (AES or SM4 ZPK), with a fresh random fill. The PIN is decoded and re-encoded inside
 * and never leaves. PIN blocks are ISO 9564-1:2017. */
struct hsm_pin_translate_req {
    enum hsm_pin_source source;
    struct hsm_dukpt_ref dukpt;      /* HSM_PIN_FROM_DUKPT */
    struct hsm_kb_in src_key;        /* HSM_PIN_FROM_KEY */
    enum mpos_pin_format src_format; /* HSM_PIN_FROM_KEY */
    uint8_t pin_block[HSM_PIN_BLOCK_MAX_LEN];
    size_t pin_block_len;
    char pan[HSM_PAN_BUF_LEN];
    struct hsm_kb_in zpk;
    enum mpos_pin_format dst_format;
};
struct hsm_pin_block_resp {
    uint8_t pin_block[HSM_PIN_BLOCK_MAX_LEN];
    size_t pin_block_len;
};
int hsm_op_pin_translate(hsm_vault *v, const struct hsm_pin_translate_req *req,
                         struct hsm_pin_block_resp *resp) MPOS_MUST_CHECK;

/* Visa PIN Verification Value (VISA PIN verification, as publicly described, e.g. IBM CCA
 * "VISA-PVV"): TSP = the 11 rightmost PAN digits excluding the check digit || PVKI (1 digit)
 * || the 4 leftmost PIN digits; E(PVK, TSP) as 16 hex digits; PVV = the first 4 decimal
 * digits of it left to right, completed if needed by the hex digits A-F, each minus 10, in
 * the order they appear. PVK: usage V2, algorithm 'T' (16 or 24 bytes), mode V/C (verify) or
 * G/C (generate). The PIN arrives as a PIN block under a zone PIN key (usage P0, mode D or
 * B; format 0, 1, 3 with TDES, 4 with AES or SM4). */
struct hsm_pvv_req {
    struct hsm_kb_in zpk;
    enum mpos_pin_format format;
    uint8_t pin_block[HSM_PIN_BLOCK_MAX_LEN];
    size_t pin_block_len;
    char pan[HSM_PAN_BUF_LEN];
    struct hsm_kb_in pvk;
    uint8_t pvki; /* PIN verification key indicator, 0 to 6 */
    char pvv[5];  /* verify: the issuer's 4-digit PVV, NUL-terminated */
};
struct hsm_pvv_resp {
    char pvv[5];
};
/* 0 when the PIN matches, MPOS_ERR_VERIFY when not (compared in constant time). */
int hsm_op_pin_verify(hsm_vault *v, const struct hsm_pvv_req *req) MPOS_MUST_CHECK;
/* The PVV of the PIN (issuer set-up, test data); req->pvv is ignored. */
int hsm_op_pvv_generate(hsm_vault *v, const struct hsm_pvv_req *req,
                        struct hsm_pvv_resp *resp) MPOS_MUST_CHECK;

/* ---- Card data (role backend) ---------------------------------------------------------- */

/* Card-data format (openmpos): the terminal encodes the card's data as BER-TLV objects
 * (mpos/tlv.h, MPOS_TLV_STRICT: minimal lengths, no padding inside) containing at least PAN
 * '5A' and track 2 equivalent data '57', with expiry '5F24' and any EMV data; the PAN in '5A'
 * must equal the PAN in '57'. It pads them with ISO/IEC 9797-1 padding method 2 (80 then zeros
 * up to a whole block) and encrypts them in CBC mode with a zero IV (the DUKPT key is unique
 * to the transaction) under the request data key: AES DUKPT usage 3000 (AES working key,
 * aes_key_len), TDES DUKPT the data-request variant (X9.24-1-2009 A.4).
 *
 * hsm_op_card_data_translate decrypts and checks that, then re-encrypts the same plaintext
 * (same format and padding) in CBC under a zone data key (usage D0, mode E or B, AES or TDES)
 * with a fresh random IV. Returned in clear: the PAN, for routing, and the objects whose tag
 * is on the non-sensitive EMV allow-list (hsm/ops/card_data.c: AIP, ATC, cryptogram and its
 * inputs, PSN, IAD, CVM results, TVR...). Never: track data, expiry, name, CVN, or any tag
 * not on the list. Every content failure (padding, TLV, PAN) is the same MPOS_ERR_DECODE;
 * the format has no integrity of its own, so hsmd should rate-limit failures per KSN (a CBC
 * format without a MAC is a decryption oracle to whoever may submit it many times). */
struct hsm_card_data_req {
    struct hsm_dukpt_ref dukpt;
    const uint8_t *data;
    size_t data_len; /* a whole number of blocks, at most HSM_CARD_DATA_MAX_LEN */
    struct hsm_kb_in zdk;
};
struct hsm_card_data_resp {
    char pan[HSM_PAN_BUF_LEN];
    uint8_t iv[MPOS_MAX_BLOCK_LEN];
    size_t iv_len;
    uint8_t data[HSM_CARD_DATA_MAX_LEN];
    size_t data_len;
    uint8_t emv[HSM_CARD_DATA_MAX_LEN]; /* allow-listed objects, BER-TLV, in input order */
    size_t emv_len;
};
int hsm_op_card_data_translate(hsm_vault *v, const struct hsm_card_data_req *req,
                               struct hsm_card_data_resp *resp) MPOS_MUST_CHECK;

/* ---- Zone MACs (roles backend, switch) ------------------------------------------------- */

enum hsm_mac_alg {
    HSM_MAC_ISO9797_3 = 1, /* ISO 9797-1 alg 3 (X9.19), padding 1: usage M3, TDES 16 bytes */
    HSM_MAC_CMAC = 2,      /* SP 800-38B CMAC (ISO 9797-1:2011 alg 5): usage M6, AES or TDES */
    HSM_MAC_CUP_ECB = 3    /* UnionPay POS "ECB" MAC: usage M1 (the sign-on MAK), TDES
                              ('T' 16, 'D' 8 bytes) or SM4 */
};

/* mode of use: generate G, C or B; verify V, C or B. mac_len 4 to the algorithm's full
 * MAC (8 TDES, 16 AES/SM4); 0 means full for generate. */
struct hsm_mac_req {
    enum hsm_mac_alg alg;
    struct hsm_kb_in key;
    const uint8_t *data;
    size_t data_len;
    uint8_t mac[HSM_MAC_MAX_LEN]; /* verify only */
    size_t mac_len;
};
int hsm_op_mac_generate(hsm_vault *v, const struct hsm_mac_req *req,
                        struct hsm_mac_resp *resp) MPOS_MUST_CHECK;
int hsm_op_mac_verify(hsm_vault *v, const struct hsm_mac_req *req) MPOS_MUST_CHECK;

/* ---- PAN hash (role backend) ----------------------------------------------------------- */

/* HMAC-SHA-256 (RFC 2104, FIPS 198-1) of the PAN's ASCII digits under the hsmd-internal
 * key K_PAN = SP 800-108 counter-mode KDF with AES-CMAC (LMK, label "openmpos PAN hash"),
 * 256 bits. The same PAN always gives the same value under one LMK. */
struct hsm_pan_hash_req {
    char pan[HSM_PAN_BUF_LEN];
};
struct hsm_pan_hash_resp {
    uint8_t hash[HSM_HASH_LEN];
};
int hsm_op_pan_hash(hsm_vault *v, const struct hsm_pan_hash_req *req,
                    struct hsm_pan_hash_resp *resp) MPOS_MUST_CHECK;

/* ---- EMV issuer side (roles backend, switch) ------------------------------------------- */

/* Verifies an ARQC (EMV 4.3 Book 2 8.1.2) and, when arpc_method is 1 or 2, generates the ARPC
 * (8.2.1 / 8.2.2). The issuer master key: usage E0, mode X, algorithm 'T' (16 bytes).
 * ICC master key by option A or B (A1.4), session key by the common method or PBOC.
 * An ARQC that does not verify is MPOS_ERR_VERIFY and no ARPC is produced. */
struct hsm_arqc_req {
    struct hsm_kb_in imk;
    enum mpos_emv_mk_option mk_option;
    enum mpos_emv_sk_method sk_method;
    char pan[HSM_PAN_BUF_LEN];
    char psn[3]; /* two digits, or "" when the card has no PSN */
    uint8_t atc[MPOS_EMV_ATC_LEN];
    const uint8_t *ac_data; /* the raw cryptogram input data */
    size_t ac_data_len;     /* at most MPOS_EMV_AC_DATA_MAX_LEN */
    uint8_t arqc[MPOS_EMV_AC_LEN];
    int arpc_method;               /* 0: verify only; 1 or 2 (enum mpos_emv_arpc_method) */
    uint8_t arc[MPOS_EMV_ARC_LEN]; /* method 1 */
    uint8_t csu[MPOS_EMV_CSU_LEN]; /* method 2 */
    uint8_t prop[MPOS_EMV_PROP_AUTH_MAX_LEN]; /* method 2 */
    size_t prop_len;
};
struct hsm_arqc_resp {
    uint8_t arpc[MPOS_EMV_ARPC1_LEN];
    size_t arpc_len; /* 8 (method 1), 4 (method 2), 0 (verify only) */
};
int hsm_op_arqc_verify(hsm_vault *v, const struct hsm_arqc_req *req,
                       struct hsm_arqc_resp *resp) MPOS_MUST_CHECK;

/* ---- Device certificates (role tools) -------------------------------------------------- */

/* Signs a terminal's certificate request (PKCS#10, DER) with the manufacturer CA key (key
 * block usage S1 or S0, algorithm 'E', mode S: a P-256 private scalar). The request's
 * self-signature must verify, its key must be P-256, and its subject must carry serialNumber
 * equal to serial. The certificate (X.509 v3, DER, ECDSA with SHA-256): issuer = subject of
 * ca_cert (whose public key must be the CA key's), subject = serialNumber=<serial>, a random
 * HSM_CERT_SERIAL_LEN-byte serial number, validity [not_before, not_after] (Unix seconds,
 * not_before < not_after), basicConstraints CA:FALSE (critical), keyUsage digitalSignature +
 * keyAgreement (critical), extendedKeyUsage clientAuth, subject and authority key IDs.
 *
 * Server profile (dns not empty; serial must then be empty): a TLS server certificate for the
 * back end: the CSR's subject is not read (its key and self-signature are checked as above),
 * subject = CN=<dns>, subjectAltName dNSName <dns>, keyUsage digitalSignature (critical),
 * extendedKeyUsage serverAuth, the other extensions as above. dns: 1 to 253 characters of
 * a-z A-Z 0-9 '-' '.', no empty label, not starting or ending with '-' or '.'. */
#define HSM_DNS_BUF_LEN 254
struct hsm_cert_sign_req {
    struct hsm_kb_in ca_key;
    const uint8_t *ca_cert;
    size_t ca_cert_len;
    const uint8_t *csr;
    size_t csr_len;
    char serial[HSM_SERIAL_BUF_LEN];
    int64_t not_before;
    int64_t not_after;
    char dns[HSM_DNS_BUF_LEN]; /* "" device profile; else the server profile */
};
struct hsm_cert_sign_resp {
    uint8_t cert[HSM_CERT_MAX_LEN];
    size_t cert_len;
    uint8_t cert_serial[HSM_CERT_SERIAL_LEN];
};
int hsm_op_cert_sign(hsm_vault *v, const struct hsm_cert_sign_req *req,
                     struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;

/* Creates the manufacturer CA's self-signed certificate (X.509 v3, DER, ECDSA with SHA-256)
 * for its key (key block as for hsm_op_cert_sign): subject = issuer = CN=<common_name> (1 to
 * 64 printable characters), a random serial number, validity [not_before, not_after],
 * basicConstraints CA:TRUE, pathLenConstraint 0 (critical), keyUsage keyCertSign + cRLSign
 * (critical), subject key ID. */
struct hsm_ca_cert_req {
    struct hsm_kb_in ca_key;
    char common_name[65];
    int64_t not_before;
    int64_t not_after;
};
int hsm_op_ca_cert_create(hsm_vault *v, const struct hsm_ca_cert_req *req,
                          struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;

/* ---- Miscellaneous (every role) -------------------------------------------------------- */

struct hsm_random_req {
    size_t len; /* 1 to HSM_RANDOM_MAX_LEN */
};
struct hsm_random_resp {
    uint8_t bytes[HSM_RANDOM_MAX_LEN];
    size_t len;
};
int hsm_op_random(hsm_vault *v, const struct hsm_random_req *req,
                  struct hsm_random_resp *resp) MPOS_MUST_CHECK;

/* Status: the LMK check value and the daemon's counters, which hsmd passes in (the ops keep
 * no state). */
struct hsm_status_req {
    uint64_t commands; /* commands served since start */
    uint64_t refused;  /* commands refused (allow-list, usage, format) */
    uint64_t sessions; /* connections accepted */
    uint64_t uptime_s;
};
struct hsm_status_resp {
    uint8_t lmk_kcv[HSM_KCV_LEN];
    uint64_t commands;
    uint64_t refused;
    uint64_t sessions;
    uint64_t uptime_s;
    char version[16]; /* "openmpos x.y.z" */
};
int hsm_op_status(hsm_vault *v, const struct hsm_status_req *req,
                  struct hsm_status_resp *resp) MPOS_MUST_CHECK;

/* ==== Terminal provisioning (role tools; hsm/ops/provision.c) ============================
 * Appended section: `mposctl terminal provision` (docs/provisioning.md, T-UNIQ-1). */

#include "mpos/provision.h"

#define HSM_PROVISION_BUNDLE_MAX_LEN MPOS_PROVISION_BUNDLE_MAX_LEN
#define HSM_CSR_MAX_LEN              4096 /* a certificate request as received, DER or PEM */
#define HSM_CERT_SHA256_LEN          32

enum hsm_provision_key {
    HSM_PROVISION_DUKPT = 1, /* the initial DUKPT key of id under bdk */
    HSM_PROVISION_TMK = 2    /* a fresh terminal master key drawn by the command */
};

/* Provisions one terminal: signs its certificate request with the manufacturer CA key (as
 * hsm_op_cert_sign: key block S1/S0, algorithm 'E', mode S; ca_cert its certificate; serial,
 * not_before, not_after as there), draws an ephemeral P-256 key, derives the transport key
 * TK = HKDF-SHA256(ECDH(ephemeral, device public key), salt = serial, info = "openmpos TK")
 * from the certified device key, wraps the terminal's initial key under TK as a TR-31 version
 * D block, and returns the bundle signed by the CA key (mpos/provision.h). The ephemeral key,
 * ECDH secret, TK and initial key exist only inside the command and are wiped on every path.
 *
 *   HSM_PROVISION_DUKPT: bdk (usage B0, mode X). AES BDK (DUKPT attribute AES): id = the 8-byte
 *     initial key ID from the store's allocator, the key = X9.24-3-2017 6.5.3 initial key (as
 *     long as the BDK), IK block. TDES BDK: id = the 10-byte initial KSN, its 21 counter bits
 *     zero (MPOS_ERR_KSN otherwise), the key = X9.24-1-2009 IPEK, KS block.
 *   HSM_PROVISION_TMK: tmk_algorithm 'T' (or 0): a random 16-byte TDES TMK; the bundle carries
 *     it as usage K0, mode D with its check value in KC; resp->tmk holds it under the LMK
 *     (usage K0, mode B, exportability N) for hsm_op_mkwk_generate. HSM_ALG_SM4: a random
 *     16-byte SM4 TMK, kind MPOS_PROVISION_TMK_SM4, carried as usage K0, algorithm '4'
 *     (proprietary, MPOS_TR31_EXT_SM4), mode D, KC = its legacy SM4 check value; resp->tmk
 *     likewise. Any other tmk_algorithm: MPOS_ERR_ARG. bdk and id not read.
 *
 * csr: PKCS#10, DER, or one PEM block "CERTIFICATE REQUEST" / "NEW CERTIFICATE REQUEST" (only
 * whitespace around it); its P-256 key must be valid and its subject serialNumber = serial.
 * trust_anchor (optional, trust_anchor_len 0 for none): the back end's TLS trust anchor, one DER
 * X.509 certificate, carried in the bundle. The device certificate must be readable by the
 * terminal (mpos_provision_cert_parse) and certify the CSR's key.
 *
 * The response carries what the store registers: the device certificate's SHA-256
 * fingerprint and serial number, the initial key ID / initial KSN (DUKPT; as given) or the TMK
 * check value, and the bundle for the terminal. The bundle imports into no other terminal. */
struct hsm_provision_terminal_req {
    enum hsm_provision_key key;
    struct hsm_kb_in bdk;        /* HSM_PROVISION_DUKPT */
    uint8_t id[HSM_KSN_MAX_LEN]; /* HSM_PROVISION_DUKPT: AES initial key ID (8) / TDES KSN (10) */
    size_t id_len;
    char tmk_algorithm; /* HSM_PROVISION_TMK: 'T' or 0 (TDES), HSM_ALG_SM4 */
    struct hsm_kb_in ca_key;
    const uint8_t *ca_cert; /* DER */
    size_t ca_cert_len;
    const uint8_t *csr; /* DER or PEM, at most HSM_CSR_MAX_LEN */
    size_t csr_len;
    char serial[HSM_SERIAL_BUF_LEN];
    int64_t not_before;
    int64_t not_after;
    const uint8_t *trust_anchor; /* optional DER certificate */
    size_t trust_anchor_len;
};
struct hsm_provision_terminal_resp {
    uint8_t bundle[HSM_PROVISION_BUNDLE_MAX_LEN];
    size_t bundle_len;
    uint8_t cert_sha256[HSM_CERT_SHA256_LEN]; /* fingerprint of the device certificate */
    uint8_t cert_serial[HSM_CERT_SERIAL_LEN];
    enum mpos_provision_kind kind; /* AES DUKPT, TDES DUKPT, TMK or SM4 TMK */
    uint8_t id[HSM_KSN_MAX_LEN];   /* DUKPT: the initial key ID / initial KSN to register */
    size_t id_len;
    uint8_t
        kcv[HSM_KCV_LEN]; /* check value of the key in the bundle: AES CMAC 5 bytes, TDES
                             (IPEK, TMK) and SM4 legacy 3 bytes; the TMK's is what mkwk registers */
    size_t kcv_len;
    struct hsm_kb_out tmk; /* HSM_PROVISION_TMK: the TMK under the LMK; else empty */
};
int hsm_op_provision_terminal(hsm_vault *v, const struct hsm_provision_terminal_req *req,
                              struct hsm_provision_terminal_resp *resp) MPOS_MUST_CHECK;

/* ==== Sealed transaction messages, parameter signing, key forming =========================
 * Appended section (docs/system-design.md section 3; hsm/ops/sealed_ops.c, params_sign.c,
 * keys.c). The sealed message format is terminal/core/txn/sealed.h (docs/protocol.md 2); these
 * structs are plain so that the back end needs no terminal header: the enum values quoted in
 * the comments are those of sealed.h and link.h. */

#define HSM_SEALED_MAX_LEN        1024 /* longest sealed request (MPOS_SEALED_MAX_REQUEST_LEN) */
#define HSM_SEALED_RESP_MAX_LEN   512  /* longest sealed response (MPOS_SEALED_MAX_RESPONSE_LEN) */
#define HSM_SEALED_EMV_MAX_LEN    255  /* EMV data of a request (MPOS_SEALED_MAX_EMV_LEN) */
#define HSM_SEALED_TRACK2_MAX_LEN 19   /* EMV tag 57 */
#define HSM_SEALED_TRACK2_ENC_MAX 24   /* track 2 padded (ISO 9797-1 method 2) to whole blocks */
#define HSM_SEALED_IAD_MAX_LEN    16
#define HSM_EC_SIG_LEN            64 /* ECDSA P-256 signature r || s */

/* The clear fields of an opened sealed request: what the back end may know in clear. Strings
 * are NUL-terminated; "" = absent. */
struct hsm_sealed_fields {
    uint8_t msg_type;             /* 0x01 request, 0x02 reversal (enum mpos_sealed_msg_type) */
    uint8_t scheme;               /* 0x11 / 0x12 / 0x13 AES DUKPT with AES-128 / 192 / 256
                                     working keys, 0x21 TDES DUKPT (enum mpos_sealed_scheme) */
    uint8_t ksn[HSM_KSN_MAX_LEN]; /* the request's KSN: the anti-replay counter is in it */
    size_t ksn_len;               /* 12 AES, 10 TDES */
    uint32_t sequence;            /* terminal sequence number: the idempotency key */
    uint8_t txn_type;     /* 1 sale, 2 void, 3 refund, 4 balance (enum mpos_link_txn_type) */
    uint64_t amount;      /* minor units; 0 for balance */
    uint16_t currency;    /* ISO 4217 numeric */
    char merchant_id[16]; /* 15 characters, ISO 8583 DE 42 */
    char terminal_id[9];  /* 8 characters, DE 41 */
    char datetime[15];    /* terminal clock, YYYYMMDDhhmmss UTC */
    uint8_t entry_mode;   /* 0x00 no card, 0x05 chip, 0x90 stripe (enum mpos_entry_mode) */
    uint8_t fallback;     /* 1: stripe read after a chip failure */
    char masked_pan[HSM_PAN_BUF_LEN]; /* first 6 and last 4 digits, '*' between; "" no card */
    char original_ref[33];            /* void and refund: the original's reference (RRN); else "" */
    int has_location;                 /* 1 when the host reported its location (H-GEO-1) */
    int32_t lat_e7;                   /* latitude, 1e-7 degrees */
    int32_t lon_e7;                   /* longitude, 1e-7 degrees */
    uint32_t accuracy_m;              /* metres */
    uint64_t location_time;           /* Unix seconds, host clock */
    uint8_t reversal_reason; /* reversals only (msg_type 0x02): 1 no response, 2 card declined
                                after approval, 3 terminal failure, 4 cancelled (enum
                                mpos_sealed_reversal_reason); 0 in a request */
    uint8_t retry; /* 1: a retry of this sequence number under a new KSN (DF35: the first send
                      got no valid response; no PIN block): answer from the journal, never
                      start a new charge. 0: a first send, or a reversal */
};

/* sealed.open (0x0801): opens a terminal's sealed request with the DUKPT request keys that
 * hsmd derives from the BDK (usage B0, mode X; AES BDK for the AES schemes, TDES BDK for
 * TDES) and the request's KSN. The MAC is verified first (constant time): when it does not,
 * the result is MPOS_ERR_VERIFY and nothing was decrypted (no decryption oracle). Then:
 *   - pan, pan_hash (as hsm_op_pan_hash), psn (EMV 5F34), emv: only the allow-listed objects
 *     of the card's EMV data (cryptogram and its inputs: hsm/ops/card_data.c's list);
 *   - chip_card: 1 for a chip read, and for a stripe read whose track 2 service code starts
 *     with 2 or 6 (a chip card read by its stripe);
 *   - zpk given (usage P0, algorithm 'T', mode E or B) and the request has a PIN block:
 *     pin_block = the PIN as ISO 9564-1 format 0 under the ZPK (ISO 8583 DE 52); the PIN
 *     block of the request (format 4 AES / format 0 TDES under the DUKPT PIN key) is
 *     decoded inside only. No PIN block without a zpk;
 *   - zek given (usage D0, algorithm 'T', mode E or B) and the request carries track 2:
 *     track2_iv and track2_enc = TDES-CBC under the ZEK with a fresh random IV of the EMV 57
 *     bytes padded by ISO/IEC 9797-1 padding method 2.
 * Never in the response: track 2, expiry, CVN, PIN in clear, or EMV objects off the list.
 * Errors: MPOS_ERR_FORMAT (the clear part or, after the MAC, the content is malformed),
 * MPOS_ERR_VERIFY (MAC), MPOS_ERR_USAGE (a key of the wrong kind, or a BDK of the other
 * DUKPT scheme than the request's), MPOS_ERR_KSN, MPOS_ERR_DECODE (a PIN block that does not
 * decode), MPOS_ERR_CRYPTO, MPOS_ERR_RNG. */
struct hsm_sealed_open_req {
    struct hsm_kb_in bdk;
    const uint8_t *sealed; /* the whole sealed request, 1..HSM_SEALED_MAX_LEN bytes */
    size_t sealed_len;
    struct hsm_kb_in zpk; /* optional: len 0 = none */
    struct hsm_kb_in zek; /* optional: len 0 = none */
};
struct hsm_sealed_open_resp {
    struct hsm_sealed_fields fields;
    char pan[HSM_PAN_BUF_LEN];           /* the PAN (DE 2, routing); "" when no card was read */
    int has_pan_hash;                    /* 1 when pan is set */
    uint8_t pan_hash[HSM_HASH_LEN];      /* keyed PAN hash, as pan.hash */
    char psn[3];                         /* PAN sequence number (EMV 5F34), 2 digits; "" absent */
    uint8_t emv[HSM_SEALED_EMV_MAX_LEN]; /* allow-listed EMV objects, BER-TLV (DE 55) */
    size_t emv_len;
    int chip_card; /* 1: chip read, or stripe service code 2xx / 6xx; 0 otherwise */
    int has_pin;   /* 1 when the request carried a PIN block (whether or not zpk was given) */
    uint8_t pin_block[8]; /* format 0 under the ZPK */
    size_t pin_block_len; /* 8, or 0 when no PIN block or no zpk */
    uint8_t track2_iv[8]; /* ZEK given and track 2 present */
    uint8_t track2_enc[HSM_SEALED_TRACK2_ENC_MAX];
    size_t track2_enc_len; /* 0 when none */
};
int hsm_op_sealed_open(hsm_vault *v, const struct hsm_sealed_open_req *req,
                       struct hsm_sealed_open_resp *resp) MPOS_MUST_CHECK;

/* sealed.respond (0x0802): seals the back end's response with the DUKPT response keys of the
 * request's KSN (derived from the BDK inside hsmd). scheme, ksn and sequence are the opened
 * request's; response_code 2 characters (required); auth_code "" or 6, rrn "" or 12, arc ""
 * or 2 characters; iad 0 or 8..16 bytes (EMV 91). MPOS_ERR_FORMAT for a field the sealed
 * format refuses. */
struct hsm_sealed_respond_req {
    struct hsm_kb_in bdk;
    uint8_t scheme; /* as hsm_sealed_fields.scheme */
    uint8_t ksn[HSM_KSN_MAX_LEN];
    size_t ksn_len;
    uint32_t sequence;
    char response_code[3];
    char auth_code[7];
    char rrn[13];
    char arc[3];
    uint8_t iad[HSM_SEALED_IAD_MAX_LEN];
    size_t iad_len;
};
struct hsm_sealed_respond_resp {
    uint8_t sealed[HSM_SEALED_RESP_MAX_LEN];
    size_t sealed_len;
};
int hsm_op_sealed_respond(hsm_vault *v, const struct hsm_sealed_respond_req *req,
                          struct hsm_sealed_respond_resp *resp) MPOS_MUST_CHECK;

/* params.sign (0x0803): ECDSA P-256 / SHA-256 with a key block (usage S0 or S1, algorithm
 * 'E', mode S) over data, which must be exactly one whole BER-TLV object (strict encoding)
 * with tag E6 (a parameter-key endorsement) or E4 (a parameter package's signed part,
 * docs/protocol.md 3.1); anything else is MPOS_ERR_FORMAT, so the key signs nothing but
 * parameters. sig = r || s (32 bytes each, big-endian). Always returned: the key's public key
 * (the back end's tools put the signing key's into the endorsement); with no data, only it. */
struct hsm_params_sign_req {
    struct hsm_kb_in key;
    const uint8_t *data; /* NULL with data_len 0: no signature, only the public key */
    size_t data_len;     /* 0, or 2..4096 */
};
struct hsm_params_sign_resp {
    uint8_t sig[HSM_EC_SIG_LEN];
    int has_sig;
    uint8_t pub[HSM_EC_PUB_LEN]; /* the key's public key (for the endorsement it signs) */
};
int hsm_op_params_sign(hsm_vault *v, const struct hsm_params_sign_req *req,
                       struct hsm_params_sign_resp *resp) MPOS_MUST_CHECK;

/* key.from-components (0x0107, role tools): forms a key from 2 or 3 clear components entered
 * under dual control: key = XOR of the components, each key_len bytes. attr and key_len as
 * for hsm_op_generate_key (symmetric algorithms only: 'A', 'T', 'D', 'H', SM4; B0 needs the
 * DUKPT scheme). TDES/DES components get odd parity set after the XOR. Refused
 * (MPOS_ERR_KEY): a component all zero, two equal components, an all-zero result. The
 * response gives the check value of each component (of the component as a key of the same
 * algorithm and length, as the operator computed it) and of the result. */
struct hsm_key_from_components_req {
    struct hsm_key_attr attr;
    size_t key_len;
    uint8_t comp[HSM_MAX_COMPONENTS][HSM_KEY_MAX_LEN];
    size_t n; /* 2 or 3 */
};
struct hsm_key_from_components_resp {
    struct hsm_kb_out key;
    uint8_t kcv[HSM_KCV_LEN];
    size_t kcv_len;
    uint8_t comp_kcv[HSM_MAX_COMPONENTS][HSM_KCV_LEN]; /* kcv_len bytes each, n of them */
};
int hsm_op_key_from_components(hsm_vault *v, const struct hsm_key_from_components_req *req,
                               struct hsm_key_from_components_resp *resp) MPOS_MUST_CHECK;

#endif
