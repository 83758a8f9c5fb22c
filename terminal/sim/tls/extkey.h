/* openmpos simulator: a minimal OpenSSL 3 provider for a P-256 key whose private operation is
 * a callback (internal to the TLS port, tls_port.h). Keys carry the public point and the
 * callback; signing hands the whole message to the callback (ECDSA with SHA-256 inside it,
 * raw r || s) and returns DER. Exporting the private key is refused. */
#ifndef MPOS_SIM_TLS_EXTKEY_H
#define MPOS_SIM_TLS_EXTKEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hal.h"

#define MPOS_EXTKEY_PROVIDER "mpos-extkey"

typedef int (*mpos_extkey_sign_fn)(void *sign_ctx, const uint8_t *msg, size_t len,
                                   uint8_t sig[MPOS_HAL_SIG_LEN]);

/* Registers and loads the provider into libctx (with the default provider, preferred for
 * every other algorithm). Returns the provider or NULL. */
OSSL_PROVIDER *mpos_extkey_load(OSSL_LIB_CTX *libctx);

/* A key of the provider with the public point of cert_pub (a P-256 EVP_PKEY, e.g. the device
 * certificate's) and the signer. NULL when cert_pub is not P-256 or on failure. */
EVP_PKEY *mpos_extkey_new(OSSL_LIB_CTX *libctx, const EVP_PKEY *cert_pub, mpos_extkey_sign_fn sign,
                          void *sign_ctx);

#endif
