/* openmpos: terminal provisioning, portable side (docs/provisioning.md is the binding format).
 *
 * A terminal proves nothing and receives its keys once: it generates its P-256 device key pair
 * in its key store and emits a certificate request; mpos-hsmd signs the request with the
 * manufacturer CA key, draws an ephemeral P-256 key, derives the transport key
 *
 *     TK = HKDF-SHA256(IKM = ECDH(ephemeral, device public key), salt = serial,
 *                      info = "openmpos TK", L = 32)
 *
 * (the serial: its ASCII characters without terminator; ECDH: the 32-byte x-coordinate), wraps
 * the terminal's initial key as a TR-31 version D key block under TK, and signs the whole
 * bundle with the CA key. Only the holder of the device private key derives TK, so a bundle
 * opens in exactly one terminal (T-UNIQ-1); TK is never shared by two terminals.
 *
 * Bundle (BER-TLV of mpos/tlv.h, MPOS_TLV_STRICT: minimal lengths, no padding; private-class
 * tags; every field exactly once and in this order; C7 optional):
 *
 *   E1 bundle
 *     E2 signed part
 *       C1 format version          1 byte: 01
 *       C2 signature algorithm     1 byte: 01 ECDSA P-256 with SHA-256 (02 reserved for SM2)
 *       C3 terminal serial         1..32 of A-Z a-z 0-9 '-'
 *       C4 key kind                1 byte: enum mpos_provision_kind
 *       C5 device certificate      X.509 v3 DER, 1..MPOS_PROVISION_CERT_MAX_LEN
 *       C6 CA certificate          X.509 v3 DER, 1..MPOS_PROVISION_CERT_MAX_LEN
 *       C7 back-end trust anchor   X.509 DER (optional), 1..MPOS_PROVISION_CERT_MAX_LEN
 *       C8 ephemeral public key    65 bytes 04 || X || Y
 *       C9 key block               TR-31 version D, ASCII, 1..MPOS_PROVISION_KEYBLOCK_MAX_LEN
 *     CA signature                 64 bytes r || s: ECDSA P-256 / SHA-256 by the manufacturer
 *                                  CA key over the whole E2 object (tag, length and value)
 *
 * The key block under TK (header written exactly so, checked exactly so after its MAC):
 *   AES DUKPT   "D" len "B1" "A" "X" "00" "N" ... IK = initial key ID (16 hex); key 16/24/32
 *   TDES DUKPT  "D" len "B1" "T" "X" "00" "N" ... KS = initial KSN (20 hex, counter bits 0);
 *               key: the 16-byte IPEK
 *   TMK         "D" len "K0" "T" "D" "00" "N" ... KC = "00" + legacy KCV (6 hex); key 16 bytes
 *   SM4 TMK     "D" len "K0" "4" "D" "00" "N" ... KC = "00" + legacy SM4 KCV (6 hex); key 16
 *               bytes; algorithm '4' is proprietary (MPOS_TR31_EXT_SM4, mpos/tr31.h): only
 *               this kind's block is wrapped and opened with that extension
 * with key context 0 and a PB block as needed; no other optional block.
 *
 * Nothing here allocates (the EC and HKDF primitives of mpos/ecc.h allocate inside libcrypto
 * on a Linux build). Functions return 0 or a negative enum mpos_err; outputs that would hold a
 * key are zeroed on every error; every temporary key is wiped on every path.
 */
#ifndef MPOS_PROVISION_H
#define MPOS_PROVISION_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/crypto.h"
#include "mpos/ecc.h"
#include "mpos/err.h"

#define MPOS_PROVISION_VERSION          1
#define MPOS_PROVISION_SIG_ECDSA_P256   1    /* C2: ECDSA P-256 with SHA-256, raw r || s */
#define MPOS_PROVISION_SIG_SM2          2    /* C2: reserved (MPOS_ERR_UNSUPPORTED today) */
#define MPOS_PROVISION_SERIAL_MAX_LEN   32   /* characters */
#define MPOS_PROVISION_CERT_MAX_LEN     2048 /* one DER certificate */
#define MPOS_PROVISION_KEYBLOCK_MAX_LEN 256  /* the TR-31 block under TK, characters */
#define MPOS_PROVISION_BUNDLE_MAX_LEN   8192 /* a whole bundle */
#define MPOS_PROVISION_CSR_MAX_LEN      256  /* what mpos_provision_csr_build writes */
#define MPOS_PROVISION_TK_LEN           32   /* AES-256 */
#define MPOS_PROVISION_TK_INFO          "openmpos TK"
#define MPOS_PROVISION_MAX_KEY_LEN      32 /* AES-256 initial key */
#define MPOS_PROVISION_MAX_ID_LEN       12
#define MPOS_PROVISION_KCV_LEN          3 /* TMK: legacy check value in KC */

/* Tags (private class; E1, E2 constructed). */
#define MPOS_PROVISION_TAG_BUNDLE       0xE1u
#define MPOS_PROVISION_TAG_SIGNED       0xE2u
#define MPOS_PROVISION_TAG_VERSION      0xC1u
#define MPOS_PROVISION_TAG_SIG_ALG      0xC2u
#define MPOS_PROVISION_TAG_SERIAL       0xC3u
#define MPOS_PROVISION_TAG_KIND         0xC4u
#define MPOS_PROVISION_TAG_DEVICE_CERT  0xC5u
#define MPOS_PROVISION_TAG_CA_CERT      0xC6u
#define MPOS_PROVISION_TAG_TRUST_ANCHOR 0xC7u
#define MPOS_PROVISION_TAG_EPHEMERAL    0xC8u
#define MPOS_PROVISION_TAG_KEY_BLOCK    0xC9u
#define MPOS_PROVISION_TAG_SIGNATURE    0xCAu

/* The initial key a bundle carries. */
enum mpos_provision_kind {
    MPOS_PROVISION_AES_DUKPT = 1,  /* X9.24-3-2017 initial key + initial key ID */
    MPOS_PROVISION_TDES_DUKPT = 2, /* X9.24-1-2009 IPEK + initial KSN */
    MPOS_PROVISION_TMK = 3,        /* UnionPay terminal master key (TDES, 16 bytes) + KCV */
    MPOS_PROVISION_TMK_SM4 = 4     /* UnionPay SM4 terminal master key (16 bytes) + KCV */
};

/* 1 if serial is 1 to MPOS_PROVISION_SERIAL_MAX_LEN characters of A-Z a-z 0-9 '-' (the
 * characters hsm_op_cert_sign puts in the certificate's serialNumber), NUL-terminated. */
int mpos_provision_serial_valid(const char *serial);

/* ---- the terminal's key pair and certificate request ----------------------------------- */

/* Signs msg (len bytes) into sig: ECDSA P-256 with SHA-256, raw r || s; returns 0 or a negative
 * enum mpos_err. The manufacturer CA key inside mpos-hsmd for a bundle; the device key inside
 * the terminal's key store for a certificate request (the shape of mpos_hal_tls_config.sign). */
typedef int (*mpos_provision_sign_fn)(void *ctx, const uint8_t *msg, size_t len,
                                      uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]);

/* ECDH with the device's private key (SEC 1 v2 3.3.1: the x-coordinate of d * peer_pub, the
 * peer's point validated), done where the key lives; returns 0 or a negative enum mpos_err. */
typedef int (*mpos_provision_ecdh_fn)(void *ctx, const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                                      uint8_t shared[MPOS_ECDH_P256_LEN]);

/* The device key as a key store that never releases it offers it: the public key, and ECDH and
 * signing by callback. */
struct mpos_provision_device {
    const uint8_t *pub; /* MPOS_EC_P256_PUB_LEN bytes, 04 || X || Y */
    mpos_provision_ecdh_fn ecdh;
    mpos_provision_sign_fn sign;
    void *ctx; /* passed to ecdh and sign */
};

/* A fresh device key pair (mpos_ec_p256_generate): the private scalar stays in the key store. */
int mpos_provision_device_key_generate(uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                                       uint8_t pub[MPOS_EC_P256_PUB_LEN]) MPOS_MUST_CHECK;

/* The device's PKCS#10 certificate request (RFC 2986), DER, signed by the device key:
 * version 0, subject = one RDN serialNumber (X.520, PrintableString) = serial, the P-256
 * public key of priv (RFC 5480), no attributes, ecdsa-with-SHA256 (RFC 5758 3.2). At most
 * MPOS_PROVISION_CSR_MAX_LEN bytes to csr (cap bytes); its length in *csr_len.
 * MPOS_ERR_FORMAT for a serial mpos_provision_serial_valid refuses, MPOS_ERR_LENGTH when cap is
 * too small (csr zeroed), MPOS_ERR_KEY for a scalar out of range. */
int mpos_provision_csr_build(const uint8_t priv[MPOS_EC_P256_PRIV_LEN], const char *serial,
                             uint8_t *csr, size_t cap, size_t *csr_len) MPOS_MUST_CHECK;

/* The same request for a device key held in a key store: dev->pub and dev->sign (dev->ecdh is
 * not used). A sign error is returned as is; the request is not checked against the key (the
 * CA checks its self-signature). */
int mpos_provision_csr_build_device(const struct mpos_provision_device *dev, const char *serial,
                                    uint8_t *csr, size_t cap, size_t *csr_len) MPOS_MUST_CHECK;

/* ---- certificates ----------------------------------------------------------------------- */

/* What the provisioning code reads from an X.509 certificate. Pointers are into the caller's
 * DER, which must outlive the struct. */
struct mpos_provision_cert {
    const uint8_t *tbs; /* TBSCertificate, tag to end: what the issuer signed */
    size_t tbs_len;
    const uint8_t *issuer; /* issuer Name, tag to end */
    size_t issuer_len;
    const uint8_t *subject; /* subject Name, tag to end */
    size_t subject_len;
    const uint8_t *serial; /* value of the subject's serialNumber attribute; NULL if none */
    size_t serial_len;
    uint8_t pub[MPOS_EC_P256_PUB_LEN];    /* subjectPublicKey */
    uint8_t sig[MPOS_ECDSA_P256_SIG_LEN]; /* signatureValue as r || s */
};

/* Reads an X.509 v3 certificate (RFC 5280 4.1), strict DER, exactly len bytes (at most
 * MPOS_PROVISION_CERT_MAX_LEN): version v3; signature algorithm ecdsa-with-SHA256 without
 * parameters (RFC 5758 3.2), the same inside and outside the TBSCertificate; subject public
 * key id-ecPublicKey on prime256v1 (RFC 5480 2.1.1), uncompressed; the signature a DER
 * ECDSA-Sig-Value (RFC 5480 2.2) with minimal positive INTEGERs below 2^256; at most one
 * serialNumber in the subject. No signature is checked here. MPOS_ERR_FORMAT for anything
 * else, MPOS_ERR_LENGTH for a length out of range; c is zeroed on error. */
int mpos_provision_cert_parse(const uint8_t *der, size_t len,
                              struct mpos_provision_cert *c) MPOS_MUST_CHECK;

/* ---- the bundle ------------------------------------------------------------------------- */

/* A bundle's fields. From mpos_provision_bundle_parse: pointers into the caller's buffer, which
 * must outlive the struct. To mpos_provision_bundle_encode: the fields to write (version,
 * sig_alg, signed_part and signature are ignored there). */
typedef struct mpos_provision_bundle {
    unsigned version; /* MPOS_PROVISION_VERSION */
    unsigned sig_alg; /* MPOS_PROVISION_SIG_ECDSA_P256 */
    enum mpos_provision_kind kind;
    const char *serial; /* not NUL-terminated in a parsed bundle: serial_len characters */
    size_t serial_len;
    const uint8_t *device_cert;
    size_t device_cert_len;
    const uint8_t *ca_cert;
    size_t ca_cert_len;
    const uint8_t *trust_anchor; /* NULL and 0 when absent */
    size_t trust_anchor_len;
    const uint8_t *ephemeral_pub; /* MPOS_EC_P256_PUB_LEN bytes */
    const char *key_block;        /* not NUL-terminated: key_block_len characters */
    size_t key_block_len;
    const uint8_t *signed_part; /* the E2 object, tag to end: the signed message */
    size_t signed_len;
    const uint8_t *signature; /* MPOS_ECDSA_P256_SIG_LEN bytes */
} mpos_provision_bundle;

/* Reads a bundle's syntax (no cryptography): exactly one E1 spanning the len bytes (at most
 * MPOS_PROVISION_BUNDLE_MAX_LEN), the fields above in order with their lengths and values (a
 * known kind, a valid serial, an ephemeral key starting 04, a key block of printable ASCII
 * starting 'D', each certificate one DER SEQUENCE spanning its field). MPOS_ERR_FORMAT or
 * MPOS_ERR_LENGTH for anything else, MPOS_ERR_UNSUPPORTED for another format version or
 * signature algorithm; b is zeroed on error. Authenticates nothing: use mpos_provision_open. */
int mpos_provision_bundle_parse(const uint8_t *buf, size_t len,
                                mpos_provision_bundle *b) MPOS_MUST_CHECK;

/* Encodes the fields of b (checked as mpos_provision_bundle_parse checks them, serial as a
 * NUL-terminated string; kind and serial_len are read, serial_len may be 0 for strlen) with
 * format version 1 and signature algorithm 1, has sign sign the E2 object, and writes the
 * bundle to out (cap bytes), its length to *len. MPOS_ERR_LENGTH when it does not fit; a sign
 * error is returned as is; out is zeroed on error. */
int mpos_provision_bundle_encode(const mpos_provision_bundle *b, mpos_provision_sign_fn sign,
                                 void *sign_ctx, uint8_t *out, size_t cap,
                                 size_t *len) MPOS_MUST_CHECK;

/* ---- the transport key and the key block ------------------------------------------------ */

/* The key a bundle delivers. */
struct mpos_provision_key {
    enum mpos_provision_kind kind;
    uint8_t key[MPOS_PROVISION_MAX_KEY_LEN]; /* the initial key, IPEK or TMK */
    size_t key_len;
    uint8_t id[MPOS_PROVISION_MAX_ID_LEN]; /* AES: initial key ID (8, for
                                              mpos_dukpt_aes_terminal_load); TDES: initial
                                              KSN (10, counter bits 0); TMK: none */
    size_t id_len;
    uint8_t kcv[MPOS_PROVISION_KCV_LEN]; /* TMK, SM4 TMK: its legacy check value (verified,
                                            X9.24-1:2017 A.2 with TDES or SM4); else 0 */
    size_t kcv_len;
};

/* TK = HKDF-SHA256(ECDH(priv, peer_pub), salt = serial, info = "openmpos TK"), 32 bytes.
 * mpos-hsmd calls it with the ephemeral private key and the device public key, the terminal
 * with its device private key and the ephemeral public key. */
int mpos_provision_transport_key(const uint8_t priv[MPOS_EC_P256_PRIV_LEN],
                                 const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN], const char *serial,
                                 uint8_t tk[MPOS_PROVISION_TK_LEN]) MPOS_MUST_CHECK;

/* The same from the ECDH secret z (32 bytes) computed elsewhere (a key store's ECDH). */
int mpos_provision_transport_key_from_secret(const uint8_t z[MPOS_ECDH_P256_LEN],
                                             const char *serial,
                                             uint8_t tk[MPOS_PROVISION_TK_LEN]) MPOS_MUST_CHECK;

/* Wraps key (kind, key, key_len, id, id_len; kcv is ignored and computed for a TMK) under tk as
 * the TR-31 version D block of its kind (header above, random key-length padding). AES DUKPT:
 * key 16, 24 or 32 bytes, id 8; TDES DUKPT: key 16, id 10 with the 21 counter bits zero
 * (MPOS_ERR_KSN otherwise); TMK and SM4 TMK: key 16 bytes, id_len 0. Writes the block (and a NUL)
 * to block (cap bytes) and its length to *block_len. */
int mpos_provision_key_wrap(mpos_crypto_ctx *cc, const uint8_t tk[MPOS_PROVISION_TK_LEN],
                            const struct mpos_provision_key *key, char *block, size_t cap,
                            size_t *block_len) MPOS_MUST_CHECK;

/* Unwraps a key block made by mpos_provision_key_wrap: MAC first (MPOS_ERR_VERIFY: another TK,
 * i.e. another terminal, or a changed block), then the header must be exactly the one of kind
 * (MPOS_ERR_FORMAT), the TMK's KC must match the key (constant time, MPOS_ERR_VERIFY). out is
 * zeroed on every error. */
int mpos_provision_key_unwrap(mpos_crypto_ctx *cc, const uint8_t tk[MPOS_PROVISION_TK_LEN],
                              enum mpos_provision_kind kind, const char *block, size_t block_len,
                              struct mpos_provision_key *out) MPOS_MUST_CHECK;

/* ---- opening a bundle in the terminal --------------------------------------------------- */

/* Opens a bundle in the terminal that holds device_priv and is called serial (NUL-terminated),
 * trusting only ca_pub, the manufacturer CA's public key installed at manufacture:
 *   1. the syntax (mpos_provision_bundle_parse);
 *   2. the CA signature over the E2 object under ca_pub, before anything else is used;
 *   3. the bundle's serial is serial;
 *   4. the CA certificate's key is ca_pub; the device certificate's issuer is the CA
 *      certificate's subject, its signature verifies under ca_pub, its subject serialNumber
 *      is serial, and its public key is the one of device_priv;
 *   5. TK from device_priv, the ephemeral key and serial; the key block unwrapped under TK
 *      (mpos_provision_key_unwrap with the bundle's kind).
 * view (may be NULL) receives the fields (the device certificate and trust anchor to keep);
 * key the initial key. MPOS_ERR_VERIFY for any authentication failure (signature, another CA,
 * another terminal's bundle, a changed key block), MPOS_ERR_FORMAT/LENGTH/UNSUPPORTED for
 * syntax, MPOS_ERR_KEY for a device scalar out of range. On error key and view are zeroed. */
int mpos_provision_open(mpos_crypto_ctx *cc, const uint8_t device_priv[MPOS_EC_P256_PRIV_LEN],
                        const char *serial, const uint8_t ca_pub[MPOS_EC_P256_PUB_LEN],
                        const uint8_t *bundle, size_t bundle_len, mpos_provision_bundle *view,
                        struct mpos_provision_key *key) MPOS_MUST_CHECK;

/* mpos_provision_open for a device key held in a key store: step 4 compares the certificate's
 * key with dev->pub, step 5 has dev->ecdh compute the ECDH secret with the ephemeral key (which
 * is wiped here once TK is derived). dev->sign is not used. An ecdh error is returned as is
 * (MPOS_ERR_KEY for the ephemeral point, whatever the key store reports otherwise). */
int mpos_provision_open_device(mpos_crypto_ctx *cc, const struct mpos_provision_device *dev,
                               const char *serial, const uint8_t ca_pub[MPOS_EC_P256_PUB_LEN],
                               const uint8_t *bundle, size_t bundle_len,
                               mpos_provision_bundle *view,
                               struct mpos_provision_key *key) MPOS_MUST_CHECK;

/* Erases a key. */
void mpos_provision_key_clear(struct mpos_provision_key *k);

#endif
