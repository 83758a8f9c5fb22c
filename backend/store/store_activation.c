/* mpos_store: redeeming an activation code (T-ACTIV-1, the store side). */
#include <stdio.h>
#include <string.h>

#include "mpos/activation.h"
#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

static int hex_canon(const char *in, size_t len, char *out)
{
    if (in == NULL || strlen(in) != len) {
        return MPOS_ERR_FORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'f') {
            c = (char)(c - 'a' + 'A');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            return MPOS_ERR_FORMAT;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return MPOS_OK;
}

int mpos_store_activation_redeem(mpos_store *st, const char *serial, const char *code,
                                 const char *cert_sha256, const char *host_binding, int64_t now)
{
    char sn[MPOS_STORE_SERIAL_LEN + 1];
    char cert[MPOS_STORE_SHA256_HEX_LEN + 1];
    char host[MPOS_STORE_HOST_BINDING_LEN + 1];
    char given[MPOS_ACTIVATION_HASH_HEX_LEN + 1] = "";
    char open_hash[MPOS_ACTIVATION_HASH_HEX_LEN + 1] = "";
    char code_merchant[MPOS_STORE_MERCHANT_ID_LEN + 1] = "";
    char object[64];
    struct mpos_store_terminal t = {0};
    struct store_stmt *s = NULL;
    int64_t expires_at = 0, changes = 0;
    int rc = MPOS_OK, commit = 0, found = 0;
    if (st == NULL || code == NULL) {
        return MPOS_ERR_ARG;
    }
    if (store_serial_copy(serial, sn) != MPOS_OK ||
        hex_canon(cert_sha256, MPOS_STORE_SHA256_HEX_LEN, cert) != MPOS_OK ||
        (host_binding != NULL &&
         hex_canon(host_binding, MPOS_STORE_HOST_BINDING_LEN, host) != MPOS_OK)) {
        return MPOS_ERR_FORMAT;
    }
    /* A code that is not even well formed is simply wrong: no detail for the caller. */
    if (mpos_activation_code_hash(sn, code, given) != MPOS_OK) {
        return MPOS_STORE_DENIED;
    }
    rc = store_require_schema(st);
    if (rc != MPOS_OK) {
        goto exit_notx;
    }
    rc = store_tx_begin(st);
    if (rc != MPOS_OK) {
        goto exit_notx;
    }
    rc = store_terminal_load(st, sn, &t);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (t.state != MPOS_TERMINAL_PROVISIONED || t.scheme == MPOS_SCHEME_NONE ||
        t.merchant_id[0] == '\0' || t.cert_sha256[0] == '\0') {
        rc = MPOS_STORE_STATE;
        goto exit;
    }
    /* The one code outstanding for this terminal (assign revokes the earlier ones). */
    rc = store_prepare(st, sql_code_open, &s, "t", sn);
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        if (rc == STORE_ROW) {
            found = 1;
            rc = store_column_copy(st, s, 0, open_hash, sizeof(open_hash));
            if (rc == MPOS_OK) {
                rc = store_column_copy(st, s, 1, code_merchant, sizeof(code_merchant));
            }
            expires_at = store_column_int64(st, s, 2);
        } else if (rc == STORE_DONE) {
            rc = MPOS_OK;
        }
    }
    store_finalize(st, s);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (!found) {
        rc = MPOS_STORE_USED;
        goto exit;
    }
    if (strlen(open_hash) != MPOS_ACTIVATION_HASH_HEX_LEN ||
        !(mpos_ct_equal(open_hash, given, MPOS_ACTIVATION_HASH_HEX_LEN) &
          mpos_ct_equal(t.cert_sha256, cert, MPOS_STORE_SHA256_HEX_LEN))) {
        /* Counted in the same conditional write that burns the code at the limit. */
        rc = store_exec(st, sql_code_fail, NULL, "tii", open_hash,
                        (int64_t)MPOS_STORE_MAX_ACTIVATION_FAILURES, now);
        rc = rc == STORE_DONE ? MPOS_STORE_DENIED : rc;
        commit = rc == MPOS_STORE_DENIED;
        goto exit;
    }
    if (expires_at <= now) {
        rc = MPOS_STORE_EXPIRED;
        goto exit;
    }
    if (strcmp(code_merchant, t.merchant_id) != 0) {
        rc = MPOS_STORE_USED; /* issued for an earlier assignment */
        goto exit;
    }
    rc = store_exec(st, sql_code_use, &changes, "ti", open_hash, now);
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_USED; /* another node redeemed it first */
    }
    if (rc == STORE_DONE) {
        rc = store_exec(st, sql_terminal_activate, &changes, "tit", sn, now,
                        host_binding != NULL ? host : NULL);
        if (rc == STORE_DONE && changes != 1) {
            rc = MPOS_STORE_STATE;
        }
    }
    if (rc != STORE_DONE) {
        goto exit;
    }
    snprintf(object, sizeof(object), "terminal:%s", sn);
    rc = store_audit(st, now, "terminal.activate", object,
                     host_binding != NULL ? "host bound" : "no host binding");
    commit = rc == MPOS_OK;
exit:
    rc = store_tx_end(st, commit, rc);
exit_notx:
    MPOS_WIPE_BUFFER(given);
    MPOS_WIPE_BUFFER(open_hash);
    return rc;
}
