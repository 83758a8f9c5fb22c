/* mpos-hsmd client: a small blocking client of one role socket, for the back end, mposctl and
 * the switch simulator. One call = one request frame and its response (docs/hsm-protocol.md);
 * every call has a deadline (the timeout given at open, for the whole exchange).
 *
 * The typed calls take and fill the request and response structs of hsm/ops/ops.h, so a
 * caller writes the same code as a command run in-process; only hsmd links the ops and the
 * vault, the client uses their definitions only.
 *
 * Return values: 0 the command succeeded; a positive enum hsm_status when hsmd answered with
 * an error class (HSM_STATUS_VERIFY: a MAC, PIN or cryptogram did not verify; _DENIED: not in
 * this role's allow-list; ...); a negative value when there was no valid answer:
 * HSM_CLIENT_ERR_IO (connection failed or closed), HSM_CLIENT_ERR_TIMEOUT, MPOS_ERR_FORMAT (a
 * response that breaks the protocol), MPOS_ERR_ARG / MPOS_ERR_LENGTH (a request that cannot be
 * encoded). After a transport or protocol error (HSM_CLIENT_ERR_*, MPOS_ERR_FORMAT), and after
 * a refusal that ends the connection (frame, too-large, busy), the connection is closed; the
 * next call reconnects.
 * A client is used by one thread at a time; open one per thread. */
#ifndef MPOS_HSM_CLIENT_H
#define MPOS_HSM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/err.h"
#include "ops.h"
#include "proto.h"

#define HSM_CLIENT_ERR_IO      (-64) /* connect, send or receive failed; peer closed */
#define HSM_CLIENT_ERR_TIMEOUT (-65) /* no complete answer before the deadline */

typedef struct hsm_client {
    int fd;
    int timeout_ms;
    uint32_t next_id;
    char path[108];
    uint8_t *buf; /* one frame: request, then its response */
    size_t cap;
    hsm_msg resp; /* the last response, pointing into buf */
} hsm_client;

/* Connects to the socket at path. timeout_ms bounds connect and each call (0: 5000). */
int hsm_client_open(hsm_client *c, const char *path, int timeout_ms) MPOS_MUST_CHECK;
void hsm_client_close(hsm_client *c);

/* Generic call, for commands without a typed wrapper and for tests: hsm_client_begin gives a
 * writer over the client's buffer with the command and a fresh request id; the caller adds
 * fields; hsm_client_exchange sends it and decodes the response into c->resp. Returns as the
 * typed calls. */
void hsm_client_begin(hsm_client *c, uint16_t command, hsm_writer *w);
int hsm_client_exchange(hsm_client *c, hsm_writer *w) MPOS_MUST_CHECK;

/* Sends raw bytes and reads one response frame (tests of the server's refusals). */
int hsm_client_send_raw(hsm_client *c, const uint8_t *bytes, size_t len,
                        uint16_t expect_command) MPOS_MUST_CHECK;

/* ---- typed calls (hsm/ops/ops.h) ---- */

struct hsm_client_status {
    char version[33];
    char role[17];
    uint8_t lmk_kcv[HSM_KCV_LEN];
    uint64_t uptime_s, commands, refused, sessions;
    unsigned workers;
};
int hsm_client_status(hsm_client *c, struct hsm_client_status *out) MPOS_MUST_CHECK;
int hsm_client_random(hsm_client *c, uint8_t *out, size_t len) MPOS_MUST_CHECK;

int hsm_client_generate_key(hsm_client *c, const struct hsm_generate_key_req *req,
                            struct hsm_generate_key_resp *resp) MPOS_MUST_CHECK;
int hsm_client_generate_bdk(hsm_client *c, const struct hsm_generate_bdk_req *req,
                            struct hsm_generate_key_resp *resp) MPOS_MUST_CHECK;
int hsm_client_import_key(hsm_client *c, const struct hsm_import_key_req *req,
                          struct hsm_import_key_resp *resp) MPOS_MUST_CHECK;
int hsm_client_export_key(hsm_client *c, const struct hsm_export_key_req *req,
                          struct hsm_export_key_resp *resp) MPOS_MUST_CHECK;
int hsm_client_dukpt_initial_key(hsm_client *c, const struct hsm_dukpt_initial_key_req *req,
                                 struct hsm_dukpt_initial_key_resp *resp) MPOS_MUST_CHECK;
int hsm_client_mkwk_generate(hsm_client *c, const struct hsm_mkwk_req *req,
                             struct hsm_mkwk_resp *resp) MPOS_MUST_CHECK;

int hsm_client_dukpt_mac_verify(hsm_client *c,
                                const struct hsm_dukpt_mac_verify_req *req) MPOS_MUST_CHECK;
int hsm_client_dukpt_mac_generate(hsm_client *c, const struct hsm_dukpt_mac_generate_req *req,
                                  struct hsm_mac_resp *resp) MPOS_MUST_CHECK;
/* HSM_PIN_FROM_DUKPT -> command pin.translate-dukpt; HSM_PIN_FROM_KEY -> pin.translate. */
int hsm_client_pin_translate(hsm_client *c, const struct hsm_pin_translate_req *req,
                             struct hsm_pin_block_resp *resp) MPOS_MUST_CHECK;
int hsm_client_pin_verify(hsm_client *c, const struct hsm_pvv_req *req) MPOS_MUST_CHECK;
int hsm_client_pvv_generate(hsm_client *c, const struct hsm_pvv_req *req,
                            struct hsm_pvv_resp *resp) MPOS_MUST_CHECK;
int hsm_client_card_data_translate(hsm_client *c, const struct hsm_card_data_req *req,
                                   struct hsm_card_data_resp *resp) MPOS_MUST_CHECK;
int hsm_client_mac_generate(hsm_client *c, const struct hsm_mac_req *req,
                            struct hsm_mac_resp *resp) MPOS_MUST_CHECK;
int hsm_client_mac_verify(hsm_client *c, const struct hsm_mac_req *req) MPOS_MUST_CHECK;
int hsm_client_pan_hash(hsm_client *c, const struct hsm_pan_hash_req *req,
                        struct hsm_pan_hash_resp *resp) MPOS_MUST_CHECK;
int hsm_client_arqc_verify(hsm_client *c, const struct hsm_arqc_req *req,
                           struct hsm_arqc_resp *resp) MPOS_MUST_CHECK;
int hsm_client_cert_sign(hsm_client *c, const struct hsm_cert_sign_req *req,
                         struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;
int hsm_client_ca_cert_create(hsm_client *c, const struct hsm_ca_cert_req *req,
                              struct hsm_cert_sign_resp *resp) MPOS_MUST_CHECK;
/* provision.terminal: req->key HSM_PROVISION_DUKPT sends bdk and id, HSM_PROVISION_TMK sends
 * tmk_algorithm ('T' when 0). resp (about 9 KiB: not for a small stack) gets the bundle, the
 * certificate fingerprint and serial, the kind, the id (DUKPT), the check value and, for a
 * TMK, its key block under the LMK. */
int hsm_client_provision_terminal(hsm_client *c, const struct hsm_provision_terminal_req *req,
                                  struct hsm_provision_terminal_resp *resp) MPOS_MUST_CHECK;

/* sealed.open (role backend): opens a terminal's sealed request inside hsmd (struct
 * hsm_sealed_open_req / _resp in hsm/ops/ops.h: resp->fields are the request's clear fields,
 * plus the PAN, its keyed hash, PSN, allow-listed EMV data, the chip-card flag, the PIN block
 * under the ZPK and track 2 under the ZEK when those keys are given; for a reversal,
 * fields.reversal_reason 1..4, which an answer must carry exactly for a reversal, else
 * MPOS_ERR_FORMAT; fields.retry 1 for a retry (DF35), only in a request without a PIN block,
 * else MPOS_ERR_FORMAT). HSM_STATUS_VERIFY: the MAC did not verify (nothing was decrypted);
 * HSM_STATUS_FIELD / _INPUT: malformed. resp is about 1 KiB. */
int hsm_client_sealed_open(hsm_client *c, const struct hsm_sealed_open_req *req,
                           struct hsm_sealed_open_resp *resp) MPOS_MUST_CHECK;
/* sealed.respond (role backend): the sealed response for the request of req->ksn. */
int hsm_client_sealed_respond(hsm_client *c, const struct hsm_sealed_respond_req *req,
                              struct hsm_sealed_respond_resp *resp) MPOS_MUST_CHECK;
/* params.sign (roles tools, backend): r || s over one E6 or E4 object, and the key's public
 * key; with req->data_len 0 only the public key. */
int hsm_client_params_sign(hsm_client *c, const struct hsm_params_sign_req *req,
                           struct hsm_params_sign_resp *resp) MPOS_MUST_CHECK;
/* key.from-components (role tools). */
int hsm_client_key_from_components(hsm_client *c, const struct hsm_key_from_components_req *req,
                                   struct hsm_key_from_components_resp *resp) MPOS_MUST_CHECK;

#endif
