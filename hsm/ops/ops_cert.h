/* mpos-hsmd ops: EC P-256 helpers on libcrypto (hsm/ops/cert.c). Internal to hsm/ops. */
#ifndef MPOS_HSM_OPS_CERT_H
#define MPOS_HSM_OPS_CERT_H

#include <stdint.h>

#include "ops.h"

/* A fresh P-256 key pair: the private scalar (big-endian, 32 bytes) and the uncompressed
 * public point. On error both are zeroed. */
int ops_ec_generate(uint8_t priv[HSM_EC_PRIV_LEN], uint8_t pub[HSM_EC_PUB_LEN]) MPOS_MUST_CHECK;

/* The signing cores of hsm_op_cert_sign and hsm_op_ca_cert_create, given the CA's private
 * scalar instead of its key block (req->ca_key is not read). For those two and for tests. */
int ops_cert_sign_scalar(const uint8_t priv[HSM_EC_PRIV_LEN], const struct hsm_cert_sign_req *req,
                         struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;
int ops_ca_cert_scalar(const uint8_t priv[HSM_EC_PRIV_LEN], const struct hsm_ca_cert_req *req,
                       struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;

#endif
