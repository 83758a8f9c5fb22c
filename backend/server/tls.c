/* mpos-backend TLS contexts (docs/system-design.md 1 and 2; docs/backend.md "TLS").
 *
 * Outer (hosts): TLS 1.3; TLS 1.2 only when [server] allow_tls12, then only ECDHE with an
 * AEAD. No 0-RTT (replayable data would defeat the envelope's counter). Session tickets are
 * encrypted under a key ring of our own, rotated every hour, at most two keys kept: a ticket
 * older than two hours no longer decrypts, and a stolen ticket key opens at most that window.
 *
 * Inner (terminals, memory BIOs): TLS 1.3 only, the client certificate is required and must
 * chain to the manufacturer CA alone (no system store), no 0-RTT. One stateless ticket per
 * handshake (a terminal resumes its tunnel after a host reconnect), encrypted under the same
 * key ring, lifetime 2 h; its own session id context, so a ticket of one context never
 * resumes on the other. A resumed handshake carries no client certificate: the ticket holds
 * the one of the full handshake (SSL_get0_peer_certificate returns it), and inner.c checks the
 * terminal's registration and state on every connection, resumed or not.
 */
#include "server.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mpos/util.h"

#define TICKET_ROTATE_S 3600
#define TICKET_KEYS     2
/* Inner tickets: as long as the ring decrypts them (two rotation periods). */
#define INNER_TICKET_LIFETIME_S (TICKET_KEYS * TICKET_ROTATE_S)
#define INNER_SID_CTX           "mpos-inner-tls"

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t created; /* 0: empty slot */
};

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ring[TICKET_KEYS]; /* [0] newest */

/* Called with ring_lock held: a new key when none or the newest is an hour old. */
static int ring_rotate(time_t now)
{
    if (ring[0].created != 0 && now - ring[0].created < TICKET_ROTATE_S) {
        return 0;
    }
    struct ticket_key k;
    if (RAND_priv_bytes(k.name, sizeof(k.name)) != 1 ||
        RAND_priv_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_priv_bytes(k.hmac, sizeof(k.hmac)) != 1) {
        mpos_cleanse(&k, sizeof(k));
        return -1;
    }
    k.created = now;
    mpos_cleanse(&ring[TICKET_KEYS - 1], sizeof(ring[0]));
    memmove(&ring[1], &ring[0], (TICKET_KEYS - 1) * sizeof(ring[0]));
    ring[0] = k;
    mpos_cleanse(&k, sizeof(k));
    bs_log("info", "ticket_key_rotated", 0, NULL);
    return 0;
}

static int set_keys(const struct ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                    EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[3];
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) {
        return -1;
    }
    if (enc) {
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -1;
    }
    return EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -1;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: 1 ok, 2 ok but renew (an older key), 0 unknown key
 * (full handshake), -1 error. */
static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    int rc = -1;
    (void)s;
    pthread_mutex_lock(&ring_lock);
    time_t now = time(NULL);
    if (ring_rotate(now) != 0) {
        goto exit;
    }
    if (enc) {
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) {
            goto exit;
        }
        memcpy(key_name, ring[0].name, 16);
        rc = set_keys(&ring[0], iv, cctx, hctx, 1) == 0 ? 1 : -1;
        goto exit;
    }
    rc = 0;
    for (int i = 0; i < TICKET_KEYS; i++) {
        if (ring[i].created != 0 && now - ring[i].created < TICKET_KEYS * TICKET_ROTATE_S &&
            CRYPTO_memcmp(key_name, ring[i].name, 16) == 0) {
            rc = set_keys(&ring[i], iv, cctx, hctx, 0) != 0 ? -1 : i == 0 ? 1 : 2;
            break;
        }
    }
exit:
    pthread_mutex_unlock(&ring_lock);
    return rc;
}

void bs_tls_cleanup(void)
{
    pthread_mutex_lock(&ring_lock);
    mpos_cleanse(ring, sizeof(ring));
    pthread_mutex_unlock(&ring_lock);
}

static void ssl_errors(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    fprintf(stderr, "mpos-backend: %s: %s\n", what, e != 0 ? buf : "failed");
    ERR_clear_error();
}

static int load_identity(SSL_CTX *ctx, const struct bs_config *c)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        ssl_errors(c->cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_errors(c->key);
        return -1;
    }
    return 0;
}

SSL_CTX *bs_tls_outer_ctx(const struct bs_config *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_errors("outer TLS context");
        return NULL;
    }
    int min = c->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        /* TLS 1.2: forward secrecy and AEAD only (ECDHE-ECDSA/RSA with GCM or ChaCha20). */
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") != 1 ||
        SSL_CTX_set_max_early_data(ctx, 0) != 1 || SSL_CTX_set_recv_max_early_data(ctx, 0) != 1 ||
        load_identity(ctx, c) != 0) {
        ssl_errors("outer TLS settings");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* stateless tickets only */
    pthread_mutex_lock(&ring_lock);
    int r = ring_rotate(time(NULL));
    pthread_mutex_unlock(&ring_lock);
    if (r != 0 || SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
        ssl_errors("ticket keys");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The manufacturer CA, DER or PEM. */
static X509 *load_ca(const char *path)
{
    FILE *f = fopen(path, "rb");
    X509 *x = NULL;
    if (f == NULL) {
        return NULL;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    if (x == NULL) {
        ERR_clear_error();
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    return x;
}

SSL_CTX *bs_tls_inner_ctx(const struct bs_config *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    X509 *ca = NULL;
    if (ctx == NULL) {
        ssl_errors("inner TLS context");
        return NULL;
    }
    ca = load_ca(c->terminal_ca);
    if (ca == NULL) {
        fprintf(stderr, "mpos-backend: [terminal] ca %s: not a certificate\n", c->terminal_ca);
        goto fail;
    }
    /* A fresh store holding the CA alone: SSL_CTX_new's store has no default paths, and we
     * never call SSL_CTX_set_default_verify_paths. */
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_early_data(ctx, 0) != 1 || SSL_CTX_set_recv_max_early_data(ctx, 0) != 1 ||
        st == NULL || X509_STORE_add_cert(st, ca) != 1 || load_identity(ctx, c) != 0) {
        ssl_errors("inner TLS settings");
        goto fail;
    }
    X509_free(ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 2);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Stateless tickets only (no server cache): SSL_OP_NO_TICKET stays clear. psk_ke alone
     * (no (EC)DHE) is refused: SSL_OP_ALLOW_NO_DHE_KEX stays clear. */
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET | SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, INNER_TICKET_LIFETIME_S);
    pthread_mutex_lock(&ring_lock);
    int r = ring_rotate(time(NULL));
    pthread_mutex_unlock(&ring_lock);
    /* The session id context is required for resumption with a verified client certificate
     * and keeps inner and outer tickets apart (the outer context has none). */
    if (r != 0 || SSL_CTX_set_num_tickets(ctx, 1) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)INNER_SID_CTX,
                                       sizeof(INNER_SID_CTX) - 1) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
        ssl_errors("inner ticket settings");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
fail:
    X509_free(ca);
    SSL_CTX_free(ctx);
    return NULL;
}
