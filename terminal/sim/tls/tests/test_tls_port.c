/* Tests of the simulator's TLS client port (terminal/sim/tls/tls_port.h) against an OpenSSL
 * TLS 1.3 server in the same process, over a BIO pair pumped by the transport callbacks as
 * the host would relay TUNNEL_DATA. The server requires a client certificate chained to the
 * CA. Certificates are made in memory; a key held by the test stands in for the key store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls_port.h"

#define BACKEND "backend.test"

typedef struct pki {
    EVP_PKEY *ca_key, *ca2_key, *srv_key, *dev_key, *wrong_key;
    X509 *ca, *ca2, *srv, *srv_other_ca, *dev;
    uint8_t ca_der[2048], dev_der[2048];
    size_t ca_der_len, dev_der_len;
} pki;

static pki P;

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *bc, const char *ku, const char *eku, const char *san)
{
    X509 *x = X509_new();
    X509V3_CTX v3;
    X509_NAME *n;
    static long serial = 1;
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    n = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    const char *vals[4] = {bc, ku, eku, san};
    const int nids[4] = {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                         NID_subject_alt_name};
    for (int i = 0; i < 4; i++) {
        if (vals[i] == NULL)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nids[i], vals[i]);
        assert_non_null(e);
        assert_int_equal(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    return x;
}

static size_t to_der(X509 *x, uint8_t *out, size_t cap)
{
    int n = i2d_X509(x, NULL);
    unsigned char *q = out;
    assert_true(n > 0 && (size_t)n <= cap);
    assert_int_equal(i2d_X509(x, &q), n);
    return (size_t)n;
}

static int setup(void **state)
{
    (void)state;
    P.ca_key = EVP_EC_gen("P-256");
    P.ca2_key = EVP_EC_gen("P-256");
    P.srv_key = EVP_EC_gen("P-256");
    P.dev_key = EVP_EC_gen("P-256");
    P.wrong_key = EVP_EC_gen("P-256");
    P.ca = make_cert("openmpos test CA", P.ca_key, NULL, P.ca_key, "critical,CA:TRUE",
                     "critical,keyCertSign,cRLSign", NULL, NULL);
    /* Another CA with the same name: its server certificate must not verify. */
    P.ca2 = make_cert("openmpos test CA", P.ca2_key, NULL, P.ca2_key, "critical,CA:TRUE",
                      "critical,keyCertSign,cRLSign", NULL, NULL);
    P.srv = make_cert(BACKEND, P.srv_key, P.ca, P.ca_key, "CA:FALSE", "critical,digitalSignature",
                      "serverAuth", "DNS:" BACKEND);
    P.srv_other_ca = make_cert(BACKEND, P.srv_key, P.ca2, P.ca2_key, "CA:FALSE",
                               "critical,digitalSignature", "serverAuth", "DNS:" BACKEND);
    P.dev = make_cert("device 0001", P.dev_key, P.ca, P.ca_key, "CA:FALSE",
                      "critical,digitalSignature", "clientAuth", NULL);
    P.ca_der_len = to_der(P.ca, P.ca_der, sizeof(P.ca_der));
    P.dev_der_len = to_der(P.dev, P.dev_der, sizeof(P.dev_der));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(P.ca);
    X509_free(P.ca2);
    X509_free(P.srv);
    X509_free(P.srv_other_ca);
    X509_free(P.dev);
    EVP_PKEY_free(P.ca_key);
    EVP_PKEY_free(P.ca2_key);
    EVP_PKEY_free(P.srv_key);
    EVP_PKEY_free(P.dev_key);
    EVP_PKEY_free(P.wrong_key);
    return 0;
}

/* ---- the stand-in for the key store's sign ----------------------------------------------- */

static int sign_calls;

static int test_sign(void *sign_ctx, const uint8_t *msg, size_t len, uint8_t sig[MPOS_HAL_SIG_LEN])
{
    EVP_PKEY *key = sign_ctx;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t der_len = sizeof(der);
    const unsigned char *q = der;
    ECDSA_SIG *es;
    int ok;
    sign_calls++;
    /* RFC 8446 4.4.3: 64 spaces, the context string, 0, the transcript hash (SHA-256 or
     * SHA-384 by cipher suite). */
    if ((len != 64 + 33 + 1 + 32 && len != 64 + 33 + 1 + 48) || msg[0] != 0x20 ||
        memcmp(msg + 64, "TLS 1.3, client", 15) != 0)
        return MPOS_ERR_ARG;
    ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
         EVP_DigestSign(md, der, &der_len, msg, len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return MPOS_ERR_CRYPTO;
    es = d2i_ECDSA_SIG(NULL, &q, (long)der_len);
    if (es == NULL)
        return MPOS_ERR_CRYPTO;
    ok = BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 &&
         BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32;
    ECDSA_SIG_free(es);
    return ok ? 0 : MPOS_ERR_CRYPTO;
}

/* ---- the in-process server and the host's relay ------------------------------------------ */

typedef struct server {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *net;
    int done, failed, closed;
    int saw_early_data_ext, saw_psk_ext, only_tls13, psk_modes_dhe_only;
    uint8_t got[256];
    size_t got_len;
} server;

static int hello_cb(SSL *s, int *al, void *arg)
{
    server *sv = SSL_get_app_data(s);
    const unsigned char *d;
    size_t n;
    (void)al;
    (void)arg;
    /* psk_key_exchange_modes: exactly one mode, psk_dhe_ke (1). */
    sv->psk_modes_dhe_only =
        SSL_client_hello_get0_ext(s, 45, &d, &n) && n == 2 && d[0] == 1 && d[1] == 1;
    sv->saw_early_data_ext = SSL_client_hello_get0_ext(s, 42, &d, &n); /* early_data */
    sv->saw_psk_ext = SSL_client_hello_get0_ext(s, 41, &d, &n);        /* pre_shared_key */
    sv->only_tls13 = SSL_client_hello_get0_ext(s, 43, &d, &n) && n == 3 && d[0] == 2 &&
                     d[1] == 0x03 && d[2] == 0x04; /* supported_versions: exactly 1.3 */
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The server's context: it issues tickets (OpenSSL's default: stateless, two per full
 * handshake, keys of its own) and would take early data. */
static SSL_CTX *server_ctx_new(X509 *cert, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, P.srv_key), 1);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), P.ca), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    assert_int_equal(SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"t", 1), 1);
    SSL_CTX_set_max_early_data(ctx, 16384); /* the server would take it: none must come */
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
    /* OpenSSL's anti-replay for 0-RTT looks stateless tickets up in a server cache this test
     * server does not keep: without this option it would refuse every ticket. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_ANTI_REPLAY);
    return ctx;
}

/* A server connection on ctx (taken over: freed with the server). */
static void server_init_ctx(server *sv, SSL_CTX *ctx)
{
    BIO *inner = NULL;
    memset(sv, 0, sizeof(*sv));
    sv->ctx = ctx;
    sv->ssl = SSL_new(sv->ctx);
    assert_non_null(sv->ssl);
    assert_int_equal(SSL_set_app_data(sv->ssl, sv), 1);
    assert_int_equal(BIO_new_bio_pair(&inner, 0, &sv->net, 0), 1);
    SSL_set_bio(sv->ssl, inner, inner);
    SSL_set_accept_state(sv->ssl);
}

static void server_init(server *sv, X509 *cert, int max_version)
{
    server_init_ctx(sv, server_ctx_new(cert, max_version));
}

static void server_free(server *sv)
{
    SSL_free(sv->ssl);
    BIO_free(sv->net);
    SSL_CTX_free(sv->ctx);
}

/* One step of the back end: handshake, then echo what it reads as "echo:<data>". */
static void server_step(server *sv)
{
    if (sv->failed || sv->closed)
        return;
    if (!sv->done) {
        int r = SSL_do_handshake(sv->ssl);
        if (r == 1)
            sv->done = 1;
        else if (SSL_get_error(sv->ssl, r) != SSL_ERROR_WANT_READ)
            sv->failed = 1;
        ERR_clear_error();
        if (!sv->done)
            return;
    }
    for (;;) {
        uint8_t buf[128], out[140];
        size_t n = 0, w = 0;
        int r = SSL_read_ex(sv->ssl, buf, sizeof(buf), &n);
        if (r != 1) {
            int e = SSL_get_error(sv->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN)
                sv->closed = 1;
            else if (e != SSL_ERROR_WANT_READ)
                sv->failed = 1;
            ERR_clear_error();
            return;
        }
        assert_true(sv->got_len + n <= sizeof(sv->got));
        memcpy(sv->got + sv->got_len, buf, n);
        sv->got_len += n;
        memcpy(out, "echo:", 5);
        memcpy(out + 5, buf, n);
        assert_int_equal(SSL_write_ex(sv->ssl, out, n + 5, &w), 1);
    }
}

static int relay_send(void *ctx, const uint8_t *data, size_t len)
{
    server *sv = ctx;
    assert_int_equal(BIO_write(sv->net, data, (int)len), (int)len);
    return 0;
}

static int relay_recv(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    server *sv = ctx;
    (void)timeout_ms;
    if (BIO_ctrl_pending(sv->net) == 0)
        server_step(sv);
    if (BIO_ctrl_pending(sv->net) == 0)
        return MPOS_HAL_TIMEOUT;
    int n = BIO_read(sv->net, buf, (int)(cap > 4096 ? 4096 : cap));
    assert_true(n > 0);
    *len = (size_t)n;
    return 0;
}

typedef struct fixture {
    server sv;
    mpos_hal_transport tr;
    mpos_hal_tls_config cfg;
    mpos_tls_port *port;
    mpos_hal_tls hal;
} fixture;

static void fixture_init(fixture *f, X509 *srv_cert, int max_version, EVP_PKEY *signer,
                         const char *name)
{
    server_init(&f->sv, srv_cert, max_version);
    f->tr.ctx = &f->sv;
    f->tr.send = relay_send;
    f->tr.recv = relay_recv;
    f->cfg.server_name = name;
    f->cfg.ca_cert = P.ca_der;
    f->cfg.ca_cert_len = P.ca_der_len;
    f->cfg.client_cert = P.dev_der;
    f->cfg.client_cert_len = P.dev_der_len;
    f->cfg.sign = test_sign;
    f->cfg.sign_ctx = signer;
    assert_int_equal(mpos_tls_port_new(&f->port), 0);
    mpos_tls_port_set_handshake_timeout(f->port, 10);
    mpos_tls_port_hal(f->port, &f->hal);
}

static void fixture_free(fixture *f)
{
    mpos_tls_port_free(f->port);
    server_free(&f->sv);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_handshake_and_data(void **state)
{
    fixture f;
    uint8_t buf[64];
    size_t n = 0;
    (void)state;
    sign_calls = 0;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_STATE);
    assert_int_equal(sign_calls, 1);
    assert_int_equal(f.hal.write(f.hal.ctx, (const uint8_t *)"ping", 4), 0);
    assert_int_equal(f.hal.read(f.hal.ctx, buf, sizeof(buf), &n, 10), 0);
    assert_true(f.sv.done);
    assert_false(f.sv.failed);
    assert_int_equal(SSL_version(f.sv.ssl), TLS1_3_VERSION);
    assert_non_null(SSL_get0_peer_certificate(f.sv.ssl)); /* the device authenticated */
    assert_int_equal(SSL_get_verify_result(f.sv.ssl), X509_V_OK);
    assert_int_equal(f.sv.got_len, 4);
    assert_memory_equal(f.sv.got, "ping", 4);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, "echo:ping", 9);
    /* Nothing more: a timeout, not an end. */
    assert_int_equal(f.hal.read(f.hal.ctx, buf, sizeof(buf), &n, 10), MPOS_HAL_TIMEOUT);
    /* No 0-RTT, no PSK, only TLS 1.3 offered. */
    assert_false(f.sv.saw_early_data_ext);
    assert_false(f.sv.saw_psk_ext);
    assert_true(f.sv.only_tls13);
    assert_int_equal(SSL_get_early_data_status(f.sv.ssl), SSL_EARLY_DATA_NOT_SENT);
    assert_false(SSL_session_reused(f.sv.ssl));
    /* The server closes: close_notify reads as CLOSED. */
    SSL_shutdown(f.sv.ssl);
    assert_int_equal(f.hal.read(f.hal.ctx, buf, sizeof(buf), &n, 10), MPOS_HAL_CLOSED);
    f.hal.close(f.hal.ctx);
    assert_int_equal(f.hal.write(f.hal.ctx, (const uint8_t *)"x", 1), MPOS_ERR_STATE);
    fixture_free(&f);
}

static void test_client_close(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    f.hal.close(f.hal.ctx);
    server_step(&f.sv);
    assert_true(f.sv.closed);
    f.hal.close(f.hal.ctx); /* always safe */
    fixture_free(&f);
}

static void test_server_other_ca_refused(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv_other_ca, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_VERIFY);
    assert_int_equal(f.hal.write(f.hal.ctx, (const uint8_t *)"x", 1), MPOS_ERR_STATE);
    fixture_free(&f);
}

static void test_server_wrong_name_refused(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, "other.test");
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_VERIFY);
    fixture_free(&f);
}

static void test_tls12_server_refused(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv, TLS1_2_VERSION, P.dev_key, BACKEND);
    int rc = f.hal.open(f.hal.ctx, &f.cfg, &f.tr);
    assert_int_not_equal(rc, 0);
    assert_true(rc < 0);
    assert_false(f.sv.done);
    fixture_free(&f);
}

static void test_wrong_signer_refused_by_server(void **state)
{
    fixture f;
    uint8_t buf[64];
    size_t n = 0;
    int rc;
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.wrong_key, BACKEND);
    /* TLS 1.3: the client's side is done before the server checks CertificateVerify. */
    rc = f.hal.open(f.hal.ctx, &f.cfg, &f.tr);
    if (rc == 0) {
        (void)f.hal.write(f.hal.ctx, (const uint8_t *)"ping", 4);
        rc = f.hal.read(f.hal.ctx, buf, sizeof(buf), &n, 10);
    }
    assert_true(rc < 0);
    assert_true(f.sv.failed);
    assert_false(f.sv.done);
    assert_int_equal(f.sv.got_len, 0);
    fixture_free(&f);
}

static void test_bad_arguments(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    f.cfg.client_cert_len = 10; /* not a certificate */
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_FORMAT);
    f.cfg.client_cert_len = P.dev_der_len;
    f.cfg.sign = NULL;
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_ARG);
    fixture_free(&f);
}

/* ---- resumption ---------------------------------------------------------------------------- */

static int log_calls, log_last;

static void log_cb(void *ctx, int resumed)
{
    (void)ctx;
    log_calls++;
    log_last = resumed;
}

/* One round trip: the client reads the echo, and with it the server's tickets. */
static void ping(fixture *f)
{
    uint8_t buf[64];
    size_t n = 0;
    assert_int_equal(f->hal.write(f->hal.ctx, (const uint8_t *)"ping", 4), 0);
    assert_int_equal(f->hal.read(f->hal.ctx, buf, sizeof(buf), &n, 10), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, "echo:ping", 9);
}

/* The terminal closes its tunnel (host reconnect) and the back end takes the next one on
 * ctx (NULL: the same context as before, so its ticket keys). */
static void reconnect(fixture *f, SSL_CTX *ctx)
{
    f->hal.close(f->hal.ctx);
    if (ctx == NULL) {
        assert_int_equal(SSL_CTX_up_ref(f->sv.ctx), 1);
        ctx = f->sv.ctx;
    }
    server_free(&f->sv);
    server_init_ctx(&f->sv, ctx);
}

static void test_resume_after_reconnect(void **state)
{
    fixture f;
    (void)state;
    sign_calls = 0;
    log_calls = 0;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    mpos_tls_port_set_log(f.port, log_cb, NULL);
    assert_false(mpos_tls_port_has_ticket(f.port));
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_false(mpos_tls_port_resumed(f.port));
    assert_int_equal(log_calls, 1);
    assert_int_equal(log_last, 0);
    ping(&f);
    assert_true(mpos_tls_port_has_ticket(f.port));
    assert_int_equal(sign_calls, 1);

    reconnect(&f, NULL);
    assert_true(mpos_tls_port_has_ticket(f.port)); /* kept over close */
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_true(f.sv.saw_psk_ext);
    assert_true(f.sv.psk_modes_dhe_only); /* psk_ke never offered */
    assert_false(f.sv.saw_early_data_ext);
    assert_true(mpos_tls_port_resumed(f.port));
    assert_int_equal(log_calls, 2);
    assert_int_equal(log_last, 1);
    assert_int_equal(sign_calls, 1); /* no CertificateVerify on resumption */
    ping(&f);
    assert_true(SSL_session_reused(f.sv.ssl));
    assert_int_equal(SSL_get_early_data_status(f.sv.ssl), SSL_EARLY_DATA_NOT_SENT);
    /* The device's certificate comes back from the ticket for the server to re-check. */
    X509 *peer = SSL_get0_peer_certificate(f.sv.ssl);
    assert_non_null(peer);
    assert_int_equal(X509_cmp(peer, P.dev), 0);
    assert_true(mpos_tls_port_has_ticket(f.port)); /* the resumed connection's new ticket */

    /* And again with that new ticket. */
    reconnect(&f, NULL);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_true(mpos_tls_port_resumed(f.port));
    ping(&f);
    f.hal.close(f.hal.ctx);
    assert_false(mpos_tls_port_resumed(f.port));
    fixture_free(&f);
}

static void test_ticket_not_offered_elsewhere(void **state)
{
    fixture f;
    uint8_t ca2_der[2048];
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    ping(&f);
    assert_true(mpos_tls_port_has_ticket(f.port));
    /* Another server name: no PSK in the hello, the certificate check fails as always. */
    reconnect(&f, NULL);
    f.cfg.server_name = "other.test";
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_VERIFY);
    assert_false(f.sv.saw_psk_ext);
    assert_false(mpos_tls_port_has_ticket(f.port)); /* dropped, not kept for later */

    /* A ticket, then another trust anchor: not offered either. */
    f.cfg.server_name = BACKEND;
    reconnect(&f, NULL);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    ping(&f);
    assert_true(mpos_tls_port_has_ticket(f.port));
    reconnect(&f, NULL);
    f.cfg.ca_cert = ca2_der;
    f.cfg.ca_cert_len = to_der(P.ca2, ca2_der, sizeof(ca2_der));
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_VERIFY);
    assert_false(f.sv.saw_psk_ext);
    assert_false(mpos_tls_port_has_ticket(f.port));
    fixture_free(&f);
}

static void test_ticket_refused_full_handshake(void **state)
{
    fixture f;
    (void)state;
    sign_calls = 0;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    ping(&f);
    /* A server with other ticket keys (a restarted back end): full handshake, new ticket. */
    reconnect(&f, server_ctx_new(P.srv, TLS1_3_VERSION));
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_true(f.sv.saw_psk_ext);
    assert_false(mpos_tls_port_resumed(f.port));
    assert_int_equal(sign_calls, 2);
    ping(&f);
    assert_false(SSL_session_reused(f.sv.ssl));
    assert_true(mpos_tls_port_has_ticket(f.port));
    /* Forgotten on request: the next open offers nothing. */
    mpos_tls_port_forget_ticket(f.port);
    reconnect(&f, NULL);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    assert_false(f.sv.saw_psk_ext);
    assert_false(mpos_tls_port_resumed(f.port));
    fixture_free(&f);
}

/* A server that is not the one of the ticket cannot complete a resumed handshake: same
 * name and anchor but it lacks the resumption secret, so it must prove a certificate, and
 * one from another CA fails as on a full handshake. */
static void test_resume_other_server_still_verified(void **state)
{
    fixture f;
    (void)state;
    fixture_init(&f, P.srv, TLS1_3_VERSION, P.dev_key, BACKEND);
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), 0);
    ping(&f);
    reconnect(&f, server_ctx_new(P.srv_other_ca, TLS1_3_VERSION));
    assert_int_equal(f.hal.open(f.hal.ctx, &f.cfg, &f.tr), MPOS_ERR_VERIFY);
    assert_true(f.sv.saw_psk_ext);
    assert_false(mpos_tls_port_has_ticket(f.port));
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_server_other_ca_refused),
        cmocka_unit_test(test_server_wrong_name_refused),
        cmocka_unit_test(test_tls12_server_refused),
        cmocka_unit_test(test_wrong_signer_refused_by_server),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_resume_after_reconnect),
        cmocka_unit_test(test_ticket_not_offered_elsewhere),
        cmocka_unit_test(test_ticket_refused_full_handshake),
        cmocka_unit_test(test_resume_other_server_still_verified),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
