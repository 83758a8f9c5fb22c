/* mpos-backend: the inner TLS of one host connection (docs/system-design.md 2; T-CHAN-1,
 * R-PACK-2, T-ACTIV-1, B-SEC-1).
 *
 * The host relays TLS records it cannot read: they arrive in TUNNEL messages and are fed to a
 * server SSL on memory BIOs; what that SSL writes goes back in TUNNEL messages of at most
 * 16384 bytes. The terminal is who its certificate says: the certificate must chain to the
 * manufacturer CA (the context trusts nothing else), its subject serialNumber must name a
 * registered terminal whose recorded certificate fingerprint matches, in a state that allows
 * it, assigned to the merchant of the logged-in operator. The first message of a tunnel is
 * HELLO (or ACTIVATE, which carries the same identity); before activation nothing else.
 */
#include "server.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mpos/ecc.h"
#include "mpos/util.h"

struct bs_inner {
    SSL *ssl;
    int open;  /* handshake done and the terminal accepted */
    int hello; /* HELLO or ACTIVATE seen */
    char serial[MPOS_STORE_SERIAL_LEN + 1];
    char firmware[MPOS_TUNNEL_FIRMWARE_MAX + 1];
    char cert_sha256[MPOS_STORE_SHA256_HEX_LEN + 1];
    mpos_tunnel_reader rd;
};

struct bs_inner *bs_inner_new(void)
{
    return calloc(1, sizeof(struct bs_inner));
}

static void reset(struct bs_inner *in)
{
    SSL_free(in->ssl); /* and its two memory BIOs */
    mpos_cleanse(in, sizeof(*in));
}

void bs_inner_free(struct bs_inner *in)
{
    if (in != NULL) {
        reset(in);
        free(in);
    }
}

/* Sends what the SSL produced (handshake, records, alerts) to the host as TUNNEL messages. */
static void flush(struct bs_inner *in, struct bs_conn *c)
{
    uint8_t buf[BK_TUNNEL_CHUNK];
    BIO *w = in->ssl != NULL ? SSL_get_wbio(in->ssl) : NULL;
    while (w != NULL && BIO_ctrl_pending(w) > 0) {
        int n = BIO_read(w, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        bs_conn_send_tunnel(c, buf, (size_t)n);
    }
}

static void send_msg(struct bs_inner *in, struct bs_conn *c, const mpos_tunnel_msg *m)
{
    static _Thread_local uint8_t buf[MPOS_TUNNEL_MAX_MSG];
    size_t len = 0, w = 0;
    if (mpos_tunnel_encode(m, buf, sizeof(buf), &len) != 0) {
        bs_log("error", "tunnel_encode_failed", bs_conn_view_id(c), " type=%s",
               mpos_tunnel_type_name(m->type));
        return;
    }
    if (SSL_write_ex(in->ssl, buf, len, &w) != 1 || w != len) {
        ERR_clear_error();
        bs_log("error", "tunnel_write_failed", bs_conn_view_id(c), NULL);
    }
    mpos_cleanse(buf, len);
    flush(in, c);
}

static void send_status(struct bs_inner *in, struct bs_conn *c, uint8_t type, uint8_t status)
{
    mpos_tunnel_msg m;
    mpos_tunnel_msg_init(&m, (enum mpos_tunnel_type)type);
    m.status = status;
    send_msg(in, c, &m);
}

/* Ends the tunnel with close_notify (after an ERROR); the next TUNNEL bytes start anew. */
static void close_tunnel(struct bs_inner *in, struct bs_conn *c)
{
    if (in->ssl != NULL) {
        (void)SSL_shutdown(in->ssl);
        ERR_clear_error();
        flush(in, c);
    }
    reset(in);
}

static void refuse(struct bs_inner *in, struct bs_conn *c, const char *reason)
{
    char s[40];
    bs_log("warn", "terminal_refused", bs_conn_view_id(c), " serial=%s reason=%s resumed=%d",
           bs_log_safe(in->serial, s, sizeof(s)), reason,
           in->ssl != NULL && SSL_session_reused(in->ssl) == 1);
    send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_TERMINAL_REFUSED);
    close_tunnel(in, c);
    bs_conn_send_error(c, MPOS_HMERR_TERMINAL, "terminal");
}

/* After the handshake: who is it, and may it use this channel? 0 when accepted. Also after
 * a resumed handshake (the terminal's ticket, tls.c): the certificate is then the one of the
 * full handshake, kept in the ticket, and registration, fingerprint, state and merchant are
 * checked again here, so a ticket never outlives a suspension or retirement. */
static int accept_terminal(struct bs_inner *in, struct bs_conn *c)
{
    struct bs_conn_view v;
    struct mpos_store_terminal t;
    uint8_t digest[32];
    unsigned char *der = NULL;
    X509 *x = SSL_get0_peer_certificate(in->ssl);
    bs_conn_view(c, &v);
    if (x == NULL || SSL_get_verify_result(in->ssl) != X509_V_OK) {
        refuse(in, c, "certificate");
        return -1;
    }
    int idx = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_serialNumber, -1);
    X509_NAME_ENTRY *e = idx >= 0 ? X509_NAME_get_entry(X509_get_subject_name(x), idx) : NULL;
    ASN1_STRING *as = e != NULL ? X509_NAME_ENTRY_get_data(e) : NULL;
    int sl = as != NULL ? ASN1_STRING_length(as) : 0;
    if (sl <= 0 || sl > MPOS_STORE_SERIAL_LEN) {
        refuse(in, c, "no_serial");
        return -1;
    }
    memcpy(in->serial, ASN1_STRING_get0_data(as), (size_t)sl);
    in->serial[sl] = '\0';
    int dl = i2d_X509(x, &der);
    if (!mpos_store_serial_valid(in->serial) || dl <= 0 ||
        mpos_sha256(der, (size_t)dl, digest) != MPOS_OK) {
        OPENSSL_free(der);
        refuse(in, c, "serial");
        return -1;
    }
    OPENSSL_free(der);
    mpos_hex_encode(digest, sizeof(digest), in->cert_sha256);
    int rc = mpos_store_terminal_get(bs_conn_worker(c)->store, in->serial, &t);
    if (rc != 0) {
        refuse(in, c, rc == MPOS_STORE_NOT_FOUND ? "not_registered" : "store");
        return -1;
    }
    if (strcasecmp(t.cert_sha256, in->cert_sha256) != 0) {
        refuse(in, c, "certificate_not_registered");
        return -1;
    }
    if (t.state != MPOS_TERMINAL_PROVISIONED && t.state != MPOS_TERMINAL_ACTIVE) {
        refuse(in, c, mpos_terminal_state_name(t.state));
        return -1;
    }
    if (v.sess == NULL || strcmp(v.sess->merchant, t.merchant_id) != 0) {
        refuse(in, c, "other_merchant");
        return -1;
    }
    in->open = 1;
    char s[40];
    bs_log("info", "tunnel_open", v.id, " serial=%s state=%s resumed=%d",
           bs_log_safe(in->serial, s, sizeof(s)), mpos_terminal_state_name(t.state),
           SSL_session_reused(in->ssl) == 1);
    return 0;
}

/* MID (DE 42 is ans 15: left-justified, space-padded), TID and the package. */
static int fill_ids(const struct bs_config *cfg, const struct mpos_store_terminal *t,
                    mpos_tunnel_msg *m)
{
    if (cfg->params_pkg == NULL || strlen(t->tid) != MPOS_TUNNEL_TERMINAL_LEN) {
        return -1;
    }
    snprintf(m->merchant_id, sizeof(m->merchant_id), "%-15s", t->merchant_id);
    memcpy(m->terminal_id, t->tid, sizeof(m->terminal_id));
    memcpy(m->params, cfg->params_pkg, cfg->params_len);
    m->params_len = cfg->params_len;
    return 0;
}

static void on_hello(struct bs_inner *in, struct bs_conn *c, const mpos_tunnel_msg *msg)
{
    const struct bs_config *cfg = bs_conn_worker(c)->srv->cfg;
    struct mpos_store_terminal t;
    mpos_tunnel_msg r;
    int rc = mpos_store_terminal_get(bs_conn_worker(c)->store, in->serial, &t);
    if (rc != 0) {
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_INTERNAL);
        return;
    }
    if (t.state != MPOS_TERMINAL_PROVISIONED && t.state != MPOS_TERMINAL_ACTIVE) {
        refuse(in, c, mpos_terminal_state_name(t.state));
        return;
    }
    mpos_tunnel_msg_init(&r, MPOS_TUNNEL_HELLO_OK);
    r.status = MPOS_TUNNEL_ST_OK;
    r.activated = t.state == MPOS_TERMINAL_ACTIVE;
    if (r.activated && fill_ids(cfg, &t, &r) != 0) {
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_INTERNAL);
        return;
    }
    char s[40], f[40];
    bs_log("info", "hello", bs_conn_view_id(c), " serial=%s firmware=%s activated=%u",
           bs_log_safe(in->serial, s, sizeof(s)), bs_log_safe(msg->firmware, f, sizeof(f)),
           r.activated);
    send_msg(in, c, &r);
}

static void on_activate(struct bs_inner *in, struct bs_conn *c, const mpos_tunnel_msg *msg)
{
    const struct bs_config *cfg = bs_conn_worker(c)->srv->cfg;
    struct bs_conn_view v;
    struct mpos_store_terminal t;
    mpos_tunnel_msg r;
    char binding[MPOS_STORE_HOST_BINDING_LEN + 1];
    uint32_t fw = 0;
    uint8_t status;
    bs_conn_view(c, &v);
    mpos_tunnel_msg_init(&r, MPOS_TUNNEL_ACTIVATE_OK);
    if (bs_firmware_parse(msg->firmware, &fw) != 0 || fw < cfg->min_firmware) {
        status = MPOS_TUNNEL_ST_FIRMWARE;
    } else {
        /* B-MOVE-1: the terminal is bound to the host device it activated through. */
        mpos_hex_encode(v.env->device_id, 32, binding);
        int rc = mpos_store_activation_redeem(
            bs_conn_worker(c)->store, in->serial, msg->code, in->cert_sha256,
            cfg->bind_host_device ? binding : NULL, (int64_t)time(NULL));
        status = rc == 0                      ? MPOS_TUNNEL_ST_OK
                 : rc == MPOS_STORE_DENIED    ? MPOS_TUNNEL_ST_CODE_WRONG
                 : rc == MPOS_STORE_EXPIRED   ? MPOS_TUNNEL_ST_CODE_EXPIRED
                 : rc == MPOS_STORE_USED      ? MPOS_TUNNEL_ST_CODE_USED
                 : rc == MPOS_STORE_STATE     ? MPOS_TUNNEL_ST_TERMINAL_REFUSED
                 : rc == MPOS_STORE_NOT_FOUND ? MPOS_TUNNEL_ST_TERMINAL_REFUSED
                                              : MPOS_TUNNEL_ST_INTERNAL;
        if (status == MPOS_TUNNEL_ST_OK &&
            (mpos_store_terminal_get(bs_conn_worker(c)->store, in->serial, &t) != 0 ||
             fill_ids(cfg, &t, &r) != 0)) {
            status = MPOS_TUNNEL_ST_INTERNAL;
        }
    }
    r.status = status;
    char s[40];
    bs_log(status == 0 ? "info" : "warn", "activation", v.id, " serial=%s status=%u bound=%d",
           bs_log_safe(in->serial, s, sizeof(s)), status, cfg->bind_host_device);
    send_msg(in, c, &r);
}

static void on_sealed(struct bs_inner *in, struct bs_conn *c, const mpos_tunnel_msg *msg)
{
    struct bs_server *srv = bs_conn_worker(c)->srv;
    struct bs_conn_view v;
    struct mpos_store_terminal t;
    mpos_bk_txn_context ctx;
    mpos_bk_txn_outcome out;
    uint8_t resp[MPOS_BK_MAX_SEALED_RESP];
    size_t resp_len = 0;
    char s[40];
    bs_conn_view(c, &v);
    int rc = mpos_store_terminal_get(bs_conn_worker(c)->store, in->serial, &t);
    if (rc != 0) {
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_INTERNAL);
        return;
    }
    /* Suspended since the tunnel opened (mid-day): the processor answers the verified
     * request with 58 (docs/system-design.md 4.3), so the terminal learns it in a sealed,
     * authenticated response. Retired: the end of the road. */
    if (t.state == MPOS_TERMINAL_RETIRED) {
        refuse(in, c, mpos_terminal_state_name(t.state));
        return;
    }
    if (t.state != MPOS_TERMINAL_ACTIVE && t.state != MPOS_TERMINAL_SUSPENDED) {
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_NOT_ACTIVATED);
        return;
    }
    if (msg->body_len > MPOS_BK_MAX_SEALED) {
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
        return;
    }
    memset(&ctx, 0, sizeof(ctx));
    memset(&out, 0, sizeof(out));
    snprintf(ctx.serial, sizeof(ctx.serial), "%s", in->serial);
    snprintf(ctx.firmware, sizeof(ctx.firmware), "%s", in->firmware);
    snprintf(ctx.merchant_id, sizeof(ctx.merchant_id), "%s", v.sess->merchant);
    snprintf(ctx.username, sizeof(ctx.username), "%s", v.sess->username);
    ctx.role = v.sess->role;
    memcpy(ctx.device_id, v.env->device_id, 32);
    ctx.lat_e7 = v.env->lat_e7;
    ctx.lon_e7 = v.env->lon_e7;
    ctx.accuracy_m = v.env->accuracy_m;
    ctx.loc_time = v.env->loc_time;
    ctx.debugger = v.env->debugger;
    ctx.root = v.env->root;
    memcpy(ctx.binary_hash, v.env->binary_hash, 32);
    snprintf(ctx.source_addr, sizeof(ctx.source_addr), "%s", v.peer);
    ctx.has_intent = *v.has_intent;
    ctx.intent_type = *v.intent_type;
    ctx.intent_amount = *v.intent_amount;
    ctx.intent_currency = *v.intent_currency;
    snprintf(ctx.intent_ref, sizeof(ctx.intent_ref), "%s", v.intent_ref);
    /* The terminal's own impossible travel is the processor's check (it has the journal's
     * locations across restarts); the operator's is done per message in conn.c. */
    /* Blocks this worker (hsmd, switch); never the accept loop. */
    rc = mpos_bk_txn_process(srv->txn, &ctx, msg->body, msg->body_len, resp, sizeof(resp),
                             &resp_len, &out);
    if (rc != 0) {
        uint8_t st = rc == MPOS_ERR_VERIFY || rc == MPOS_ERR_FORMAT ? MPOS_TUNNEL_ST_REFUSED
                     : rc == MPOS_BK_ERR_STATE                      ? MPOS_TUNNEL_ST_NOT_ACTIVATED
                                                                    : MPOS_TUNNEL_ST_INTERNAL;
        bs_log("warn", "sealed_refused", v.id, " serial=%s rc=%d status=%u",
               bs_log_safe(in->serial, s, sizeof(s)), rc, st);
        send_status(in, c, MPOS_TUNNEL_ERROR, st);
        return;
    }
    if (!out.is_reversal) {
        *v.has_intent = 0; /* the announced transaction is done */
    }
    mpos_tunnel_msg r;
    mpos_tunnel_msg_init(&r, MPOS_TUNNEL_SEALED_RESP);
    r.body = resp;
    r.body_len = resp_len;
    send_msg(in, c, &r);
    mpos_cleanse(resp, sizeof(resp));
    char mp[24], rrn[16], rcode[4];
    bs_log("info", "transaction", v.id,
           " serial=%s txn_type=%u amount=%llu currency=%u sequence=%lu masked_pan=%s "
           "response_code=%s rrn=%s reversal=%d alert=%s",
           bs_log_safe(in->serial, s, sizeof(s)), out.txn_type, (unsigned long long)out.amount,
           out.currency, (unsigned long)out.sequence, bs_log_safe(out.masked_pan, mp, sizeof(mp)),
           bs_log_safe(out.response_code, rcode, sizeof(rcode)),
           bs_log_safe(out.rrn, rrn, sizeof(rrn)), out.is_reversal,
           out.alert != NULL ? out.alert : "-");
    if (!out.is_reversal) {
        bs_conn_send_txn_result(c, &out);
    }
}

static void on_message(struct bs_inner *in, struct bs_conn *c, const mpos_tunnel_msg *msg)
{
    if (!in->hello) {
        if (msg->type != MPOS_TUNNEL_HELLO && msg->type != MPOS_TUNNEL_ACTIVATE) {
            send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
            return;
        }
    }
    if (msg->type == MPOS_TUNNEL_HELLO || msg->type == MPOS_TUNNEL_ACTIVATE) {
        /* The terminal names itself as its certificate does, or not at all. */
        if (strcmp(msg->serial, in->serial) != 0) {
            send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
            return;
        }
        in->hello = 1;
        snprintf(in->firmware, sizeof(in->firmware), "%s", msg->firmware);
    }
    switch (msg->type) {
    case MPOS_TUNNEL_HELLO:
        on_hello(in, c, msg);
        break;
    case MPOS_TUNNEL_ACTIVATE:
        on_activate(in, c, msg);
        break;
    case MPOS_TUNNEL_SEALED:
        on_sealed(in, c, msg);
        break;
    default:
        send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
        break;
    }
}

/* Application bytes out of the inner TLS: split into tunnel messages. */
static void on_plain(struct bs_inner *in, struct bs_conn *c, const uint8_t *p, size_t n)
{
    mpos_tunnel_msg msg;
    while (n > 0 && in->ssl != NULL) {
        size_t used = 0;
        int got = 0;
        if (mpos_tunnel_reader_feed(&in->rd, p, n, &used) != 0) {
            bs_log("warn", "tunnel_framing_error", bs_conn_view_id(c), NULL);
            send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
            close_tunnel(in, c);
            return;
        }
        p += used;
        n -= used;
        int r = mpos_tunnel_reader_take(&in->rd, &msg, &got);
        if (r != 0) {
            send_status(in, c, MPOS_TUNNEL_ERROR, MPOS_TUNNEL_ST_REFUSED);
        } else if (got) {
            on_message(in, c, &msg);
        }
        mpos_cleanse(&msg, sizeof(msg));
    }
}

void bs_inner_feed(struct bs_inner *in, struct bs_conn *c, const uint8_t *data, size_t len)
{
    struct bs_server *srv = bs_conn_worker(c)->srv;
    uint8_t buf[4096];
    if (in->ssl == NULL && len > 0 && data[0] != 0x16) {
        /* A new tunnel starts with a handshake record (RFC 8446 5.1, content type 22).
         * Anything else is the tail of a tunnel we already ended (the terminal's alert or
         * data sent before it learnt): dropped without an answer, so that no stale alert
         * meets the terminal's next handshake. */
        return;
    }
    if (in->ssl == NULL) {
        BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
        in->ssl = SSL_new(srv->inner);
        if (r == NULL || w == NULL || in->ssl == NULL) {
            BIO_free(r);
            BIO_free(w);
            reset(in);
            bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
            return;
        }
        BIO_set_mem_eof_return(r, -1); /* empty means "more later", not end of stream */
        BIO_set_mem_eof_return(w, -1);
        SSL_set_bio(in->ssl, r, w);
        SSL_set_accept_state(in->ssl);
        mpos_tunnel_reader_init(&in->rd);
        bs_log("info", "tunnel_start", bs_conn_view_id(c), NULL);
    }
    if (BIO_write(SSL_get_rbio(in->ssl), data, (int)len) != (int)len) {
        reset(in);
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    if (!SSL_is_init_finished(in->ssl)) {
        int r = SSL_do_handshake(in->ssl);
        if (r != 1) {
            int e = SSL_get_error(in->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                flush(in, c);
                return;
            }
            long vr = SSL_get_verify_result(in->ssl);
            bs_log("warn", "tunnel_handshake_failed", bs_conn_view_id(c), " verify=%s",
                   vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "-");
            ERR_clear_error();
            flush(in, c); /* the alert */
            reset(in);
            bs_conn_send_error(c, MPOS_HMERR_TERMINAL, "terminal");
            return;
        }
        flush(in, c);
        if (accept_terminal(in, c) != 0) {
            return;
        }
    }
    while (in->ssl != NULL) {
        size_t n = 0;
        int r = SSL_read_ex(in->ssl, buf, sizeof(buf), &n);
        if (r == 1) {
            on_plain(in, c, buf, n);
            continue;
        }
        int e = SSL_get_error(in->ssl, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ) {
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* The terminal ended this tunnel (close_notify). What follows it in the same
             * TUNNEL bytes belongs to its next connection (it may already have sent its
             * ClientHello): keep it for a new tunnel instead of dropping it with the old. */
            BIO *rb = SSL_get_rbio(in->ssl);
            size_t rest = rb != NULL ? BIO_ctrl_pending(rb) : 0;
            uint8_t *tail = rest > 0 && rest <= BK_TUNNEL_CHUNK * 4 ? malloc(rest) : NULL;
            int got = tail != NULL ? BIO_read(rb, tail, (int)rest) : 0;
            bs_log("info", "tunnel_closed", bs_conn_view_id(c), NULL);
            close_tunnel(in, c);
            if (got > 0) {
                bs_inner_feed(in, c, tail, (size_t)got);
            }
            free(tail);
            break;
        }
        bs_log("warn", "tunnel_error", bs_conn_view_id(c), " ssl_error=%d", e);
        close_tunnel(in, c);
        break;
    }
    mpos_cleanse(buf, sizeof(buf));
    if (in->ssl != NULL) {
        flush(in, c);
    }
}
