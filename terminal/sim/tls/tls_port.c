/* openmpos simulator: the TLS client port (tls_port.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "extkey.h"
#include "tls_port.h"

#define PUMP_CHUNK 4096

struct mpos_tls_port {
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *prov_default, *prov_ext;
    SSL_CTX *sctx;
    SSL *ssl;
    BIO *net; /* our end of the BIO pair: records to and from the transport */
    const mpos_hal_transport *tr;
    uint32_t hs_timeout_ms;
    int open;
    int resumed; /* the open connection resumed a ticket */
    /* The last TLS 1.3 session ticket (key material: memory only, single use) and the
     * binding of the connection it came from; bind of the connection being opened. */
    SSL_SESSION *ticket;
    uint8_t ticket_bind[32];
    uint8_t bind[32];
    mpos_tls_port_log_fn log_fn;
    void *log_ctx;
};

static void forget_ticket(mpos_tls_port *p)
{
    SSL_SESSION_free(p->ticket); /* cleanses the resumption secret */
    p->ticket = NULL;
    OPENSSL_cleanse(p->ticket_bind, sizeof(p->ticket_bind));
}

int mpos_tls_port_new(mpos_tls_port **out)
{
    mpos_tls_port *p;
    if (out == NULL)
        return MPOS_ERR_ARG;
    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return MPOS_ERR_CRYPTO;
    p->hs_timeout_ms = MPOS_TLS_PORT_HANDSHAKE_TIMEOUT_MS;
    p->libctx = OSSL_LIB_CTX_new();
    if (p->libctx == NULL || (p->prov_default = OSSL_PROVIDER_load(p->libctx, "default")) == NULL ||
        (p->prov_ext = mpos_extkey_load(p->libctx)) == NULL) {
        mpos_tls_port_free(p);
        return MPOS_ERR_CRYPTO;
    }
    *out = p;
    return 0;
}

static void conn_free(mpos_tls_port *p)
{
    SSL_free(p->ssl); /* frees its end of the pair */
    BIO_free(p->net);
    SSL_CTX_free(p->sctx); /* and the key, certificate and store */
    p->ssl = NULL;
    p->net = NULL;
    p->sctx = NULL;
    p->tr = NULL;
    p->open = 0;
    p->resumed = 0;
    OPENSSL_cleanse(p->bind, sizeof(p->bind));
}

/* What a ticket is bound to: the server name, the trust anchor and the device certificate
 * of the connection (SHA-256 over each, length-prefixed). A ticket resumes the
 * authentication of its own connection only, so it is offered only to the same name under
 * the same anchor with the same client identity. */
static int make_bind(mpos_tls_port *p, const mpos_hal_tls_config *cfg, uint8_t out[32])
{
    EVP_MD *md = EVP_MD_fetch(p->libctx, "SHA256", NULL);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    const uint8_t *parts[3] = {(const uint8_t *)cfg->server_name, cfg->ca_cert, cfg->client_cert};
    size_t lens[3] = {strlen(cfg->server_name), cfg->ca_cert_len, cfg->client_cert_len};
    unsigned int n = 0;
    int ok = md != NULL && mc != NULL && EVP_DigestInit_ex(mc, md, NULL) == 1;
    for (int i = 0; ok && i < 3; i++) {
        uint8_t l[8];
        for (int j = 0; j < 8; j++)
            l[j] = (uint8_t)((uint64_t)lens[i] >> (56 - 8 * j));
        ok =
            EVP_DigestUpdate(mc, l, sizeof(l)) == 1 && EVP_DigestUpdate(mc, parts[i], lens[i]) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(mc, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(mc);
    EVP_MD_free(md);
    return ok ? 0 : MPOS_ERR_CRYPTO;
}

/* A ticket still inside its lifetime (the session's timeout and the server's hint). */
static int ticket_fresh(const SSL_SESSION *s)
{
    long now = (long)time(NULL), start = SSL_SESSION_get_time(s), life = SSL_SESSION_get_timeout(s);
    unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(s);
    if (hint > 0 && (life <= 0 || hint < (unsigned long)life))
        life = (long)hint;
    return SSL_SESSION_is_resumable(s) && life > 0 && start <= now && now - start < life;
}

/* New session ticket (TLS 1.3 NewSessionTicket, after the handshake): kept in memory for
 * the next open; the previous one is dropped. Returns 1: we keep the reference. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    mpos_tls_port *p = SSL_get_app_data(ssl);
    if (p == NULL || SSL_version(ssl) != TLS1_3_VERSION || !SSL_SESSION_is_resumable(sess))
        return 0;
    forget_ticket(p);
    p->ticket = sess;
    memcpy(p->ticket_bind, p->bind, sizeof(p->bind));
    return 1;
}

/* Sends whatever OpenSSL queued for the network. */
static int flush_out(mpos_tls_port *p)
{
    uint8_t buf[PUMP_CHUNK];
    while (BIO_ctrl_pending(p->net) > 0) {
        int n = BIO_read(p->net, buf, sizeof(buf));
        if (n <= 0)
            return MPOS_ERR_IO;
        if (p->tr->send(p->tr->ctx, buf, (size_t)n) != 0)
            return MPOS_ERR_IO;
    }
    return 0;
}

/* Feeds what the transport brings. 0, MPOS_HAL_TIMEOUT, MPOS_HAL_CLOSED, MPOS_ERR_IO. */
static int feed_in(mpos_tls_port *p, uint32_t timeout_ms)
{
    uint8_t buf[PUMP_CHUNK];
    size_t cap = BIO_ctrl_get_write_guarantee(p->net), len = 0;
    int rc;
    if (cap == 0)
        return MPOS_ERR_IO;
    if (cap > sizeof(buf))
        cap = sizeof(buf);
    rc = p->tr->recv(p->tr->ctx, buf, cap, &len, timeout_ms);
    if (rc == 0 && (len == 0 || len > cap))
        rc = MPOS_ERR_IO;
    if (rc == 0 && BIO_write(p->net, buf, (int)len) != (int)len)
        rc = MPOS_ERR_IO;
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int tls_open(void *ctx, const mpos_hal_tls_config *cfg, const mpos_hal_transport *transport)
{
    mpos_tls_port *p = ctx;
    const unsigned char *q;
    X509 *ca = NULL, *dev = NULL;
    EVP_PKEY *key = NULL;
    BIO *inner = NULL;
    X509_STORE *store;
    X509_VERIFY_PARAM *vp;
    int rc = MPOS_ERR_CRYPTO;

    if (p == NULL || cfg == NULL || transport == NULL || transport->send == NULL ||
        transport->recv == NULL || cfg->server_name == NULL || cfg->server_name[0] == '\0' ||
        strlen(cfg->server_name) > MPOS_HAL_SERVER_NAME_MAX || cfg->ca_cert == NULL ||
        cfg->client_cert == NULL || cfg->sign == NULL || cfg->ca_cert_len > LONG_MAX ||
        cfg->client_cert_len > LONG_MAX)
        return MPOS_ERR_ARG;
    if (p->ssl != NULL)
        return MPOS_ERR_STATE;
    ERR_clear_error();

    q = cfg->ca_cert;
    ca = d2i_X509(NULL, &q, (long)cfg->ca_cert_len);
    q = cfg->client_cert;
    dev = d2i_X509(NULL, &q, (long)cfg->client_cert_len);
    if (ca == NULL || dev == NULL) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    key = mpos_extkey_new(p->libctx, X509_get0_pubkey(dev), cfg->sign, cfg->sign_ctx);
    if (key == NULL) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }

    p->sctx = SSL_CTX_new_ex(p->libctx, NULL, TLS_client_method());
    if (p->sctx == NULL)
        goto exit;
    /* RFC 8446 only: min = max = TLS 1.3 (T-CHAN-1: nothing older offered or accepted). */
    if (!SSL_CTX_set_min_proto_version(p->sctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(p->sctx, TLS1_3_VERSION))
        goto exit;
    /* Resumption with a ticket the port keeps itself (new_session_cb), never in OpenSSL's
     * cache; PSK with (EC)DHE only: without SSL_OP_ALLOW_NO_DHE_KEX the client offers the
     * psk_dhe_ke mode alone, so a resumed connection still has forward secrecy. No 0-RTT:
     * SSL_write_early_data is never called, so early data is never sent. */
    SSL_CTX_set_session_cache_mode(p->sctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(p->sctx, new_session_cb);
    SSL_CTX_clear_options(p->sctx, SSL_OP_NO_TICKET | SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_CTX_set_options(p->sctx, SSL_OP_NO_RENEGOTIATION);
    if (!SSL_CTX_set_max_early_data(p->sctx, 0) ||
        !SSL_CTX_set1_client_sigalgs_list(p->sctx, "ECDSA+SHA256"))
        goto exit;
    /* Trust: only the back-end anchor (no default paths). */
    store = SSL_CTX_get_cert_store(p->sctx);
    if (store == NULL || !X509_STORE_add_cert(store, ca))
        goto exit;
    SSL_CTX_set_verify(p->sctx, SSL_VERIFY_PEER, NULL);
    /* The device certificate and its callback key (mutual authentication). */
    if (SSL_CTX_use_certificate(p->sctx, dev) != 1 || SSL_CTX_use_PrivateKey(p->sctx, key) != 1) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }

    if (make_bind(p, cfg, p->bind) != 0)
        goto exit;
    p->ssl = SSL_new(p->sctx);
    if (p->ssl == NULL || !BIO_new_bio_pair(&inner, 0, &p->net, 0) || !SSL_set_app_data(p->ssl, p))
        goto exit;
    SSL_set_bio(p->ssl, inner, inner);
    inner = NULL;
    SSL_set_connect_state(p->ssl);
    /* SNI and the identity check: the certificate must name cfg->server_name. */
    vp = SSL_get0_param(p->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!SSL_set_tlsext_host_name(p->ssl, cfg->server_name) ||
        !SSL_set1_host(p->ssl, cfg->server_name))
        goto exit;
    /* The ticket of the last connection, if it belongs to this name, anchor and device and
     * is still fresh. TLS 1.3 resumption (RFC 8446 2.2) carries the authentication of the
     * connection that issued the ticket: that server proved it held a certificate chaining
     * to this anchor for this name; the PSK binder proves the server holds the resumption
     * secret. Single use (RFC 8446 C.4): it is given to this handshake and forgotten here; the
     * server's next ticket replaces it. */
    if (p->ticket != NULL) {
        int use = CRYPTO_memcmp(p->ticket_bind, p->bind, sizeof(p->bind)) == 0 &&
                  ticket_fresh(p->ticket) &&
                  SSL_SESSION_get_protocol_version(p->ticket) == TLS1_3_VERSION;
        if (use && !SSL_set_session(p->ssl, p->ticket))
            goto exit;
        forget_ticket(p);
    }
    p->tr = transport;

    for (;;) {
        int r = SSL_do_handshake(p->ssl), err;
        int frc = flush_out(p);
        if (r == 1) {
            rc = frc;
            break;
        }
        err = SSL_get_error(p->ssl, r);
        if (err == SSL_ERROR_WANT_READ && frc == 0) {
            rc = feed_in(p, p->hs_timeout_ms);
            if (rc != 0)
                break;
            continue;
        }
        if (SSL_get_verify_result(p->ssl) != X509_V_OK)
            rc = MPOS_ERR_VERIFY;
        else
            rc = MPOS_ERR_IO;
        break;
    }
exit:
    X509_free(ca);
    X509_free(dev);
    EVP_PKEY_free(key);
    BIO_free(inner);
    if (rc == 0) {
        p->open = 1;
        p->resumed = SSL_session_reused(p->ssl) == 1;
        if (p->log_fn != NULL)
            p->log_fn(p->log_ctx, p->resumed);
        else
            fprintf(stderr, "mpos-terminal: event=tunnel_tls resumed=%d\n", p->resumed);
    } else {
        conn_free(p);
    }
    ERR_clear_error();
    return rc;
}

static int tls_write(void *ctx, const uint8_t *data, size_t len)
{
    mpos_tls_port *p = ctx;
    int rc;
    if (p == NULL || (data == NULL && len != 0))
        return MPOS_ERR_ARG;
    if (!p->open)
        return MPOS_ERR_STATE;
    if (len == 0)
        return 0;
    for (;;) {
        size_t w = 0;
        int r = SSL_write_ex(p->ssl, data, len, &w), err;
        if ((rc = flush_out(p)) != 0)
            return rc;
        if (r == 1)
            return 0; /* default mode: all of it */
        err = SSL_get_error(p->ssl, r);
        ERR_clear_error();
        if (err == SSL_ERROR_WANT_WRITE)
            continue; /* the pair was full and is drained now */
        if (err == SSL_ERROR_ZERO_RETURN)
            return MPOS_HAL_CLOSED;
        return MPOS_ERR_IO;
    }
}

static int tls_read(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    mpos_tls_port *p = ctx;
    int rc;
    if (p == NULL || buf == NULL || len == NULL || cap == 0)
        return MPOS_ERR_ARG;
    *len = 0;
    if (!p->open)
        return MPOS_ERR_STATE;
    for (;;) {
        int r = SSL_read_ex(p->ssl, buf, cap, len), err;
        if ((rc = flush_out(p)) != 0) /* post-handshake replies (key update) */
            return rc;
        if (r == 1)
            return 0;
        err = SSL_get_error(p->ssl, r);
        if (err == SSL_ERROR_WANT_READ) {
            rc = feed_in(p, timeout_ms);
            if (rc == MPOS_HAL_CLOSED)
                return MPOS_ERR_IO; /* cut without close_notify: never an end */
            if (rc != 0)
                return rc;
            continue;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            return MPOS_HAL_CLOSED;
        }
        rc = MPOS_ERR_IO;
        if (err == SSL_ERROR_SSL &&
            ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC)
            rc = MPOS_ERR_VERIFY;
        ERR_clear_error();
        return rc;
    }
}

static void tls_close(void *ctx)
{
    mpos_tls_port *p = ctx;
    if (p == NULL)
        return;
    if (p->open && p->ssl != NULL) {
        (void)SSL_shutdown(p->ssl); /* queues close_notify */
        (void)flush_out(p);
    }
    conn_free(p); /* SSL_free wipes the traffic secrets */
    ERR_clear_error();
}

void mpos_tls_port_free(mpos_tls_port *port)
{
    if (port == NULL)
        return;
    tls_close(port);
    forget_ticket(port);
    OSSL_PROVIDER_unload(port->prov_ext);
    OSSL_PROVIDER_unload(port->prov_default);
    OSSL_LIB_CTX_free(port->libctx);
    free(port);
}

void mpos_tls_port_set_handshake_timeout(mpos_tls_port *port, uint32_t timeout_ms)
{
    if (port != NULL)
        port->hs_timeout_ms = timeout_ms;
}

int mpos_tls_port_resumed(const mpos_tls_port *port)
{
    return port != NULL && port->open && port->resumed;
}

int mpos_tls_port_has_ticket(const mpos_tls_port *port)
{
    return port != NULL && port->ticket != NULL;
}

void mpos_tls_port_forget_ticket(mpos_tls_port *port)
{
    if (port != NULL)
        forget_ticket(port);
}

void mpos_tls_port_set_log(mpos_tls_port *port, mpos_tls_port_log_fn fn, void *ctx)
{
    if (port != NULL) {
        port->log_fn = fn;
        port->log_ctx = ctx;
    }
}

void mpos_tls_port_hal(mpos_tls_port *port, mpos_hal_tls *hal)
{
    if (hal == NULL)
        return;
    hal->ctx = port;
    hal->open = tls_open;
    hal->write = tls_write;
    hal->read = tls_read;
    hal->close = tls_close;
}
