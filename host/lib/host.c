/* libmposhost: connections, the envelope, the relay and the operations (mposhost.h). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "hlink.h"
#include "hostint.h"
#include "mpos/hostmsg.h"
#include "mpos/util.h"
#include "mposhost.h"

#define DEFAULT_TIMEOUT_MS     30000u
#define DEFAULT_TXN_TIMEOUT_MS 180000u
/* After the terminal's RESULT, how long the back end's TXN_RESULT is waited for. */
#define TXN_RESULT_GRACE_MS 5000u

struct mposhost {
    char *terminal, *backend, *ca_file, *server_name, *state_file;
    uint8_t app_key[64];
    size_t app_key_len;
    int use_app_key;
    int have_location;
    int32_t lat, lon;
    uint32_t accuracy;
    uint64_t loc_time; /* the fix's time (gpsd); 0: each message's own */
    unsigned timeout_ms, txn_timeout_ms;
    void (*on_prompt)(void *, const struct mposhost_prompt *);
    void (*on_progress)(void *, const char *);
    void *cb_ctx;

    char msg[256];
    unsigned be_err;

    /* back end */
    SSL_CTX *ctx;
    SSL *ssl;
    int be_fd;
    uint64_t counter;
    uint8_t key[MPOS_HOSTMSG_KEY_LEN]; /* login key, then env_key */
    uint8_t inbuf[16384];
    size_t in_off, in_len;
    mpos_hostmsg_reader reader;
    uint8_t out[MPOS_HOSTMSG_MAX_FRAME_LEN];

    /* terminal */
    int link_fd;
    uint16_t link_seq;
    hl_decoder dec;
    uint8_t link_in[4096];
    size_t link_off, link_len;
    uint8_t link_out[HL_MAX_FRAME];

    /* envelope signals, measured once per handle */
    uint8_t device_id[32], binary_hash[32];
    uint8_t debugger, root;

    struct host_state st;

    /* the transaction being relayed */
    int have_result, have_txn_result;
    struct mposhost_receipt rcpt;
};

static void set_msg(mposhost *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof(h->msg), fmt, ap);
    va_end(ap);
}

static void progress(mposhost *h, const char *line)
{
    if (h->on_progress != NULL) {
        h->on_progress(h->cb_ctx, line);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining(uint64_t deadline)
{
    uint64_t n = now_ms();
    if (n >= deadline) {
        return 0;
    }
    return deadline - n > 60000u ? 60000 : (int)(deadline - n);
}

const char *mposhost_strerror(int rc)
{
    switch (rc) {
    case MPOSHOST_ERR_IO:
        return "connection failed";
    case MPOSHOST_ERR_TIMEOUT:
        return "timed out";
    case MPOSHOST_ERR_TLS:
        return "TLS failed";
    case MPOSHOST_ERR_BACKEND:
        return "refused by the back end";
    case MPOSHOST_ERR_TERMINAL:
        return "refused by the terminal";
    case MPOSHOST_ERR_PROTOCOL:
        return "protocol error";
    case MPOSHOST_ERR_NOT_LOGGED:
        return "not logged in";
    case MPOSHOST_ERR_CONFIG:
        return "configuration";
    case MPOSHOST_ERR_STATE:
        return "state file";
    default:
        return mpos_strerror(rc);
    }
}

const char *mposhost_message(const mposhost *h)
{
    return h != NULL ? h->msg : "";
}

unsigned mposhost_backend_error(const mposhost *h)
{
    return h != NULL ? h->be_err : 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

int mposhost_new(const struct mposhost_config *cfg, mposhost **out)
{
    mposhost *h;
    if (cfg == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    *out = NULL;
    if (cfg->app_key != NULL && (cfg->app_key_len < 16 || cfg->app_key_len > 64)) {
        return MPOS_ERR_KEY;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return MPOS_ERR_ARG;
    }
    h->be_fd = -1;
    h->link_fd = -1;
    h->terminal = dup_or_null(cfg->terminal);
    h->backend = dup_or_null(cfg->backend);
    h->ca_file = dup_or_null(cfg->ca_file);
    h->server_name = dup_or_null(cfg->server_name);
    h->state_file = dup_or_null(cfg->state_file);
    if (cfg->app_key != NULL) {
        memcpy(h->app_key, cfg->app_key, cfg->app_key_len);
        h->app_key_len = cfg->app_key_len;
        h->use_app_key = 1;
    }
    h->have_location = cfg->have_location;
    h->lat = cfg->lat_e7;
    h->lon = cfg->lon_e7;
    h->accuracy = cfg->accuracy_m;
    h->loc_time = cfg->loc_time;
    h->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    h->txn_timeout_ms = cfg->txn_timeout_ms != 0 ? cfg->txn_timeout_ms : DEFAULT_TXN_TIMEOUT_MS;
    h->on_prompt = cfg->on_prompt;
    h->on_progress = cfg->on_progress;
    h->cb_ctx = cfg->cb_ctx;
    *out = h;
    return MPOS_OK;
}

static void be_close(mposhost *h)
{
    if (h->ssl != NULL) {
        (void)SSL_shutdown(h->ssl);
        SSL_free(h->ssl);
        h->ssl = NULL;
    }
    SSL_CTX_free(h->ctx);
    h->ctx = NULL;
    if (h->be_fd >= 0) {
        close(h->be_fd);
        h->be_fd = -1;
    }
    h->counter = 0;
    h->in_off = h->in_len = 0;
    MPOS_WIPE_BUFFER(h->key);
    mpos_hostmsg_reader_init(&h->reader);
}

static void link_close(mposhost *h)
{
    if (h->link_fd >= 0) {
        close(h->link_fd);
        h->link_fd = -1;
    }
}

void mposhost_free(mposhost *h)
{
    if (h == NULL) {
        return;
    }
    be_close(h);
    link_close(h);
    free(h->terminal);
    free(h->backend);
    free(h->ca_file);
    free(h->server_name);
    free(h->state_file);
    mpos_cleanse(h, sizeof(*h));
    free(h);
}

/* ---- sockets ---------------------------------------------------------------------------- */

static void set_timeouts(int fd, unsigned ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* "HOST:PORT" (the last colon splits; "[v6]:port" too). */
static int tcp_connect(mposhost *h, const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints, *res = NULL, *ai;
    size_t hl;
    int fd = -1;
    if (colon == NULL || colon == hostport || colon[1] == '\0') {
        set_msg(h, "address '%s' is not HOST:PORT", hostport);
        return MPOSHOST_ERR_CONFIG;
    }
    hl = (size_t)(colon - hostport);
    if (hostport[0] == '[' && hl >= 2 && hostport[hl - 1] == ']') {
        hostport++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        return MPOSHOST_ERR_CONFIG;
    }
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        set_msg(h, "cannot resolve %s", host);
        return MPOSHOST_ERR_IO;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        set_timeouts(fd, h->timeout_ms);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        set_msg(h, "cannot connect to %s: %s", hostport, strerror(errno));
        return MPOSHOST_ERR_IO;
    }
    return fd;
}

static int unix_connect(mposhost *h, const char *path)
{
    struct sockaddr_un sa;
    int fd;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        set_msg(h, "socket path too long");
        return MPOSHOST_ERR_CONFIG;
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return MPOSHOST_ERR_IO;
    }
    set_timeouts(fd, h->timeout_ms);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        set_msg(h, "cannot connect to the terminal at %s: %s", path, strerror(errno));
        close(fd);
        return MPOSHOST_ERR_IO;
    }
    return fd;
}

/* ---- the terminal link -------------------------------------------------------------------- */

static int link_open(mposhost *h)
{
    int fd;
    if (h->link_fd >= 0) {
        return MPOS_OK;
    }
    if (h->terminal == NULL) {
        set_msg(h, "no terminal link configured");
        return MPOSHOST_ERR_CONFIG;
    }
    if (strncmp(h->terminal, "unix:", 5) == 0) {
        fd = unix_connect(h, h->terminal + 5);
    } else if (strncmp(h->terminal, "tcp:", 4) == 0) {
        fd = tcp_connect(h, h->terminal + 4);
    } else {
        set_msg(h, "terminal link must be unix:PATH or tcp:HOST:PORT");
        return MPOSHOST_ERR_CONFIG;
    }
    if (fd < 0) {
        return fd;
    }
    h->link_fd = fd;
    h->link_seq = 0;
    h->link_off = h->link_len = 0;
    hl_decoder_init(&h->dec);
    return MPOS_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return MPOSHOST_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return MPOS_OK;
}

/* Sends a command; *seq gets its sequence number. */
static int link_send(mposhost *h, uint8_t type, const uint8_t *payload, size_t len, uint16_t *seq)
{
    size_t n = 0;
    uint16_t s = h->link_seq++;
    int rc = hl_frame(type, s, payload, len, h->link_out, sizeof(h->link_out), &n);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (seq != NULL) {
        *seq = s;
    }
    rc = write_all(h->link_fd, h->link_out, n);
    if (rc != MPOS_OK) {
        set_msg(h, "terminal link write failed");
    }
    return rc;
}

/* The next event already received, without reading the socket: 1, or 0 when none. Frames that
 * are not events (a terminal never sends commands) are a protocol error. */
static int link_take(mposhost *h, struct hl_event *ev)
{
    for (;;) {
        struct hl_frame_view f;
        size_t used = 0;
        int got = hl_decoder_feed(&h->dec, h->link_in + h->link_off, h->link_len - h->link_off,
                                  &used, &f);
        int rc;
        h->link_off += used;
        if (got == 0) {
            return 0;
        }
        rc = hl_decode_event(&f, ev);
        if (rc != MPOS_OK) {
            set_msg(h, "malformed event 0x%02X from the terminal", (unsigned)f.type);
            return MPOSHOST_ERR_PROTOCOL;
        }
        return 1;
    }
}

static int link_read(mposhost *h)
{
    ssize_t n = recv(h->link_fd, h->link_in, sizeof(h->link_in), 0);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            return MPOS_OK;
        }
        set_msg(h, "the terminal closed the link");
        return MPOSHOST_ERR_IO;
    }
    h->link_off = 0;
    h->link_len = (size_t)n;
    return MPOS_OK;
}

/* ---- the back end ------------------------------------------------------------------------ */

static int tls_fail(mposhost *h, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    }
    ERR_clear_error();
    set_msg(h, "%s%s%s", what, buf[0] ? ": " : "", buf);
    return MPOSHOST_ERR_TLS;
}

static int be_open(mposhost *h)
{
    int fd, rc;
    long vr;
    if (h->ssl != NULL) {
        return MPOS_OK;
    }
    if (h->backend == NULL || h->ca_file == NULL || h->server_name == NULL) {
        set_msg(h, "back end address, CA file and server name are required");
        return MPOSHOST_ERR_CONFIG;
    }
    if (!h->have_location) {
        set_msg(h, "no location (--location, [host] location or a gpsd fix): every message "
                   "carries one");
        return MPOSHOST_ERR_CONFIG;
    }
    h->ctx = SSL_CTX_new(TLS_client_method());
    if (h->ctx == NULL) {
        return tls_fail(h, "TLS context");
    }
    /* TLS 1.3 only; the chain is checked against the configured CA alone (no system store);
     * no session resumption, so no 0-RTT data can ever be sent. */
    if (!SSL_CTX_set_min_proto_version(h->ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(h->ctx, TLS1_3_VERSION)) {
        return tls_fail(h, "TLS version");
    }
    SSL_CTX_set_session_cache_mode(h->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(h->ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_load_verify_locations(h->ctx, h->ca_file, NULL) != 1) {
        return tls_fail(h, "cannot load the CA file");
    }
    SSL_CTX_set_verify(h->ctx, SSL_VERIFY_PEER, NULL);
    fd = tcp_connect(h, h->backend);
    if (fd < 0) {
        return fd;
    }
    h->be_fd = fd;
    h->ssl = SSL_new(h->ctx);
    if (h->ssl == NULL || SSL_set_fd(h->ssl, fd) != 1) {
        return tls_fail(h, "TLS session");
    }
    X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(h->ssl), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!SSL_set_tlsext_host_name(h->ssl, h->server_name) ||
        !SSL_set1_host(h->ssl, h->server_name)) {
        return tls_fail(h, "server name");
    }
    rc = SSL_connect(h->ssl);
    vr = SSL_get_verify_result(h->ssl);
    if (rc != 1) {
        if (vr != X509_V_OK) {
            set_msg(h, "back end certificate refused: %s", X509_verify_cert_error_string(vr));
            ERR_clear_error();
            return MPOSHOST_ERR_TLS;
        }
        return tls_fail(h, "TLS handshake with the back end failed");
    }
    if (vr != X509_V_OK || SSL_get0_peer_certificate(h->ssl) == NULL) {
        set_msg(h, "back end certificate refused");
        return MPOSHOST_ERR_TLS;
    }
    h->counter = 0;
    h->in_off = h->in_len = 0;
    mpos_hostmsg_reader_init(&h->reader);
    return MPOS_OK;
}

static int exporter(mposhost *h, const char *label, uint8_t out[32])
{
    /* RFC 8446 7.5 with an empty context (docs/system-design.md 1.3). */
    if (SSL_export_keying_material(h->ssl, out, 32, label, strlen(label), (const unsigned char *)"",
                                   0, 1) != 1) {
        return tls_fail(h, "TLS exporter");
    }
    return MPOS_OK;
}

static int signals(mposhost *h)
{
    int rc;
    if (h->device_id[0] == 0 && h->device_id[1] == 0 && h->binary_hash[0] == 0) {
        rc = host_device_id(h->use_app_key ? h->app_key : NULL, h->app_key_len, h->device_id);
        if (rc != MPOS_OK) {
            set_msg(h, "no platform ID (/etc/machine-id) for the device ID");
            return rc;
        }
        rc = host_binary_hash(h->binary_hash);
        if (rc != MPOS_OK) {
            set_msg(h, "cannot hash the running binary");
            return rc;
        }
    }
    /* Measured for every message: a debugger can attach at any time. */
    h->debugger = (uint8_t)host_debugger();
    h->root = (uint8_t)host_is_root();
    return MPOS_OK;
}

/* Adds the envelope and the MAC under h->key, frames and sends. */
static int be_seal_send(mposhost *h, mpos_hostmsg_writer *w)
{
    struct mpos_hostmsg_envelope env;
    size_t n = 0;
    int rc = signals(h);
    if (rc != MPOS_OK) {
        return rc;
    }
    memset(&env, 0, sizeof(env));
    env.lat = h->lat;
    env.lon = h->lon;
    env.accuracy = h->accuracy;
    env.loc_time = h->loc_time != 0 ? h->loc_time : (uint64_t)time(NULL);
    memcpy(env.device_id, h->device_id, 32);
    env.debugger = h->debugger;
    env.root = h->root;
    memcpy(env.binary_hash, h->binary_hash, 32);
    env.counter = ++h->counter;
    (void)mpos_hostmsg_put_envelope(w, &env);
    rc = mpos_hostmsg_put_mac(w, h->key, sizeof(h->key));
    if (rc == MPOS_OK) {
        rc = mpos_hostmsg_finish(w, &n);
    }
    if (rc != MPOS_OK) {
        set_msg(h, "cannot build the message (location out of range?)");
        goto exit;
    }
    if (SSL_write(h->ssl, h->out, (int)n) != (int)n) {
        rc = tls_fail(h, "write to the back end failed");
        goto exit;
    }
    rc = MPOS_OK;
exit:
    /* LOGIN frames hold the password. */
    mpos_cleanse(h->out, n > 0 ? n : 256);
    return rc;
}

/* Whether the back end connection has bytes ready without waiting. */
static int be_ready(mposhost *h)
{
    return h->in_off < h->in_len || (h->ssl != NULL && SSL_pending(h->ssl) > 0);
}

/* One message from the back end into *m if one is complete with the bytes at hand (reads the
 * socket once when `read` is set): 1, 0, or a negative error. */
static int be_take(mposhost *h, mpos_hostmsg *m, int do_read)
{
    for (;;) {
        const uint8_t *msg = NULL;
        size_t used = 0, ml = 0;
        int rc;
        if (h->in_off >= h->in_len) {
            int n;
            if (!do_read && SSL_pending(h->ssl) == 0) {
                return 0;
            }
            n = SSL_read(h->ssl, h->inbuf, (int)sizeof(h->inbuf));
            if (n <= 0) {
                int e = SSL_get_error(h->ssl, n);
                if (e == SSL_ERROR_WANT_READ) {
                    return 0;
                }
                set_msg(h, "the back end closed the connection");
                ERR_clear_error();
                return MPOSHOST_ERR_IO;
            }
            h->in_off = 0;
            h->in_len = (size_t)n;
            do_read = 0;
        }
        rc = mpos_hostmsg_reader_feed(&h->reader, h->inbuf + h->in_off, h->in_len - h->in_off,
                                      &used, &msg, &ml);
        h->in_off += used;
        if (rc < 0) {
            set_msg(h, "bad frame length from the back end");
            return MPOSHOST_ERR_PROTOCOL;
        }
        if (rc == 1) {
            if (mpos_hostmsg_parse(m, msg, ml) != MPOS_OK) {
                set_msg(h, "malformed message from the back end");
                return MPOSHOST_ERR_PROTOCOL;
            }
            return 1;
        }
    }
}

static int be_error(mposhost *h, const mpos_hostmsg *m)
{
    uint16_t code = 0;
    char text[201] = "";
    if (mpos_hostmsg_get_u16(m, MPOS_HM_ERROR, &code) != MPOS_OK) {
        code = 0;
    }
    if (mpos_hostmsg_get_text(m, MPOS_HM_MESSAGE, text, sizeof(text)) != MPOS_OK) {
        text[0] = '\0';
    }
    h->be_err = code;
    set_msg(h, "back end error %u%s%s", (unsigned)code, text[0] ? ": " : "", text);
    return MPOSHOST_ERR_BACKEND;
}

/* ---- the relay ---------------------------------------------------------------------------- */

static int relay_down(mposhost *h, const mpos_hostmsg *m)
{
    const uint8_t *data = NULL;
    size_t len = 0;
    int rc;
    if (mpos_hostmsg_get(m, MPOS_HM_DATA, &data, &len) != MPOS_OK) {
        set_msg(h, "TUNNEL without data");
        return MPOSHOST_ERR_PROTOCOL;
    }
    if (h->link_fd < 0) {
        set_msg(h, "tunnel bytes but no terminal link");
        return MPOSHOST_ERR_PROTOCOL;
    }
    /* Split into link frames of at most 4096 bytes; the bytes are never looked at. */
    while (len > 0) {
        size_t n = len > HL_MAX_PAYLOAD ? HL_MAX_PAYLOAD : len;
        rc = link_send(h, HL_CMD_TUNNEL_DATA, data, n, NULL);
        if (rc != MPOS_OK) {
            return rc;
        }
        data += n;
        len -= n;
    }
    return MPOS_OK;
}

static int relay_up(mposhost *h, const uint8_t *data, size_t len)
{
    mpos_hostmsg_writer w;
    int rc = mpos_hostmsg_writer_init(&w, h->out, sizeof(h->out), MPOS_HOSTMSG_TUNNEL);
    if (rc != MPOS_OK) {
        return rc;
    }
    (void)mpos_hostmsg_put(&w, MPOS_HM_DATA, data, len);
    return be_seal_send(h, &w);
}

static void copy_text(const mpos_hostmsg *m, uint8_t tag, char *out, size_t cap)
{
    if (mpos_hostmsg_get_text(m, tag, out, cap) != MPOS_OK) {
        out[0] = '\0';
    }
}

/* A message from the back end during a relay. */
static int on_backend(mposhost *h, const mpos_hostmsg *m)
{
    switch (m->type) {
    case MPOS_HOSTMSG_TUNNEL_DOWN:
        return relay_down(h, m);
    case MPOS_HOSTMSG_TXN_RESULT:
        copy_text(m, MPOS_HM_MERCHANT_ID, h->rcpt.merchant_id, sizeof(h->rcpt.merchant_id));
        copy_text(m, MPOS_HM_TERMINAL_ID, h->rcpt.terminal_id, sizeof(h->rcpt.terminal_id));
        if (!h->have_result) {
            /* Fill what the terminal will confirm; its RESULT overrides. */
            copy_text(m, MPOS_HM_MASKED_PAN, h->rcpt.masked_pan, sizeof(h->rcpt.masked_pan));
            copy_text(m, MPOS_HM_RESPONSE_CODE, h->rcpt.response_code,
                      sizeof(h->rcpt.response_code));
            copy_text(m, MPOS_HM_AUTH_CODE, h->rcpt.auth_code, sizeof(h->rcpt.auth_code));
            copy_text(m, MPOS_HM_RRN, h->rcpt.rrn, sizeof(h->rcpt.rrn));
        } else if (h->rcpt.rrn[0] == '\0') {
            copy_text(m, MPOS_HM_RRN, h->rcpt.rrn, sizeof(h->rcpt.rrn));
        }
        h->rcpt.have_backend = 1;
        h->have_txn_result = 1;
        return MPOS_OK;
    case MPOS_HOSTMSG_ERROR:
        return be_error(h, m);
    default:
        set_msg(h, "unexpected message 0x%02X from the back end", (unsigned)m->type);
        return MPOSHOST_ERR_PROTOCOL;
    }
}

/* An event from the terminal during a relay (or while a command waits for its answer). */
static int on_event(mposhost *h, const struct hl_event *ev)
{
    switch (ev->type) {
    case HL_EVT_TUNNEL_DATA:
        if (h->ssl == NULL) {
            set_msg(h, "tunnel bytes but no back end connection");
            return MPOSHOST_ERR_PROTOCOL;
        }
        return relay_up(h, ev->u.tunnel.data, ev->u.tunnel.len);
    case HL_EVT_PROMPT_SHOWN:
        if (h->on_prompt != NULL) {
            struct mposhost_prompt p;
            p.id = ev->u.prompt.id;
            p.txn_type = ev->u.prompt.txn_type;
            p.amount = ev->u.prompt.amount;
            p.currency = ev->u.prompt.currency;
            p.count = ev->u.prompt.count;
            h->on_prompt(h->cb_ctx, &p);
        }
        return MPOS_OK;
    case HL_EVT_RESULT:
        h->rcpt.outcome = ev->u.result.outcome;
        h->rcpt.txn_type = ev->u.result.txn_type;
        h->rcpt.amount = ev->u.result.amount;
        h->rcpt.currency = ev->u.result.currency;
        h->rcpt.sequence = ev->u.result.sequence;
        memcpy(h->rcpt.response_code, ev->u.result.response_code, sizeof(h->rcpt.response_code));
        memcpy(h->rcpt.auth_code, ev->u.result.auth_code, sizeof(h->rcpt.auth_code));
        memcpy(h->rcpt.rrn, ev->u.result.rrn, sizeof(h->rcpt.rrn));
        memcpy(h->rcpt.masked_pan, ev->u.result.masked_pan, sizeof(h->rcpt.masked_pan));
        h->have_result = 1;
        return MPOS_OK;
    default:
        return MPOS_OK; /* INFO, ACK, ERROR outside a command: nothing to do */
    }
}

/* One round of waiting, shared by pump and relay_until: polls the link and the back end for
 * at most ms milliseconds and takes in what arrived (link bytes into the frame buffer, one
 * back-end message, processed at once). MPOS_OK also when nothing came or a signal interrupted
 * the poll: the callers loop and check their deadline. */
static int poll_read(mposhost *h, int ms)
{
    struct pollfd pf[2];
    nfds_t nf = 0;
    int rc, link_i = -1, be_i = -1;
    mpos_hostmsg m;
    if (h->link_fd >= 0) {
        pf[nf].fd = h->link_fd;
        pf[nf].events = POLLIN;
        link_i = (int)nf++;
    }
    if (h->ssl != NULL) {
        pf[nf].fd = h->be_fd;
        pf[nf].events = POLLIN;
        be_i = (int)nf++;
    }
    rc = poll(pf, nf, ms);
    if (rc < 0 && errno != EINTR) {
        return MPOSHOST_ERR_IO;
    }
    if (rc <= 0) {
        return MPOS_OK;
    }
    if (link_i >= 0 && (pf[link_i].revents & (POLLIN | POLLHUP | POLLERR)) &&
        (rc = link_read(h)) != MPOS_OK) {
        return rc;
    }
    if (be_i >= 0 && (pf[be_i].revents & (POLLIN | POLLHUP | POLLERR))) {
        rc = be_take(h, &m, 1);
        if (rc < 0) {
            return rc;
        }
        if (rc == 1 && (rc = on_backend(h, &m)) != MPOS_OK) {
            return rc;
        }
    }
    return MPOS_OK;
}

/* Waits for whichever peer speaks first, until the deadline: 0, MPOSHOST_ERR_TIMEOUT or an
 * error. Processes everything that is ready (events and back-end messages). When `want`
 * is non-NULL the loop stops with 1 as soon as an ACK, ERROR or INFO naming seq arrives
 * (*want gets it). */
static int pump(mposhost *h, uint64_t deadline, uint16_t seq, struct hl_event *want)
{
    for (;;) {
        int ms, rc;
        struct hl_event ev;
        mpos_hostmsg m;
        /* First whatever is buffered. */
        if (h->link_fd >= 0) {
            while ((rc = link_take(h, &ev)) == 1) {
                int answers = ((ev.type == HL_EVT_ACK || ev.type == HL_EVT_ERROR) &&
                               ev.u.ack.ref_seq == seq) ||
                              (ev.type == HL_EVT_INFO && ev.u.info.ref_seq == seq);
                if (want != NULL && answers) {
                    *want = ev;
                    return 1;
                }
                rc = on_event(h, &ev);
                if (rc != MPOS_OK) {
                    return rc;
                }
            }
            if (rc < 0) {
                return rc;
            }
        }
        if (h->ssl != NULL) {
            while (be_ready(h) && (rc = be_take(h, &m, 0)) != 0) {
                if (rc < 0) {
                    return rc;
                }
                rc = on_backend(h, &m);
                if (rc != MPOS_OK) {
                    return rc;
                }
            }
        }
        if (want == NULL) {
            return MPOS_OK; /* the caller checks its condition between rounds */
        }
        ms = remaining(deadline);
        if (ms == 0) {
            set_msg(h, "no answer from the terminal");
            return MPOSHOST_ERR_TIMEOUT;
        }
        if ((rc = poll_read(h, ms)) != MPOS_OK) {
            return rc;
        }
    }
}

/* Waits, relaying, until cond(h) holds or the deadline passes. */
static int relay_until(mposhost *h, uint64_t deadline, int (*cond)(const mposhost *),
                       const char *what)
{
    for (;;) {
        int ms, rc = pump(h, deadline, 0, NULL);
        if (rc != MPOS_OK) {
            return rc;
        }
        if (cond(h)) {
            return MPOS_OK;
        }
        ms = remaining(deadline);
        if (ms == 0) {
            set_msg(h, "timed out waiting for %s", what);
            return MPOSHOST_ERR_TIMEOUT;
        }
        if ((rc = poll_read(h, ms)) != MPOS_OK) {
            return rc;
        }
    }
}

/* Sends a command and waits for its ACK, INFO or ERROR (relaying meanwhile). */
static int link_command(mposhost *h, uint8_t type, const uint8_t *payload, size_t len,
                        struct hl_event *answer)
{
    uint16_t seq = 0;
    int rc = link_send(h, type, payload, len, &seq);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = pump(h, now_ms() + h->timeout_ms, seq, answer);
    if (rc < 0) {
        return rc;
    }
    if (answer->type == HL_EVT_ERROR) {
        static const char *const why[] = {"", "unknown command", "not allowed in this state",
                                          "malformed", "internal error"};
        set_msg(h, "the terminal refused command 0x%02X: %s (state %u)", (unsigned)type,
                answer->u.ack.code <= 4 ? why[answer->u.ack.code] : "?",
                (unsigned)answer->u.ack.state);
        return MPOSHOST_ERR_TERMINAL;
    }
    if (answer->u.ack.ref_type != type && answer->type == HL_EVT_ACK) {
        set_msg(h, "the terminal acknowledged another command");
        return MPOSHOST_ERR_PROTOCOL;
    }
    return MPOS_OK;
}

/* Waits for one back-end message that is not a TUNNEL (those are relayed). */
static int be_wait(mposhost *h, mpos_hostmsg *m, const char *what)
{
    uint64_t deadline = now_ms() + h->timeout_ms;
    for (;;) {
        int rc = be_take(h, m, 0);
        if (rc == 0) {
            struct pollfd pf;
            int ms = remaining(deadline);
            if (ms == 0) {
                set_msg(h, "timed out waiting for %s", what);
                return MPOSHOST_ERR_TIMEOUT;
            }
            pf.fd = h->be_fd;
            pf.events = POLLIN;
            rc = poll(&pf, 1, ms);
            if (rc < 0 && errno != EINTR) {
                return MPOSHOST_ERR_IO;
            }
            if (rc <= 0) {
                continue;
            }
            rc = be_take(h, m, 1);
        }
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            continue;
        }
        if (m->type == MPOS_HOSTMSG_ERROR) {
            return be_error(h, m);
        }
        if (m->type == MPOS_HOSTMSG_TUNNEL_DOWN) {
            rc = relay_down(h, m);
            if (rc != MPOS_OK) {
                return rc;
            }
            continue;
        }
        return MPOS_OK;
    }
}

/* ---- operations --------------------------------------------------------------------------- */

int mposhost_login(mposhost *h, const char *merchant, const char *username, const char *password,
                   struct mposhost_session *out)
{
    mpos_hostmsg_writer w;
    mpos_hostmsg m;
    uint8_t exp[32];
    const uint8_t *tok = NULL;
    size_t tl = 0;
    int rc;
    if (h == NULL || merchant == NULL || username == NULL || password == NULL) {
        return MPOS_ERR_ARG;
    }
    h->be_err = 0;
    be_close(h);
    rc = be_open(h);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = signals(h);
    if (rc != MPOS_OK) {
        goto exit;
    }
    /* The LOGIN MAC binds the message to this TLS connection (docs/system-design.md 1.3). */
    if ((rc = exporter(h, MPOS_HOSTMSG_EXPORTER_LOGIN, exp)) != MPOS_OK ||
        (rc = mpos_hostmsg_login_key(exp, h->key)) != MPOS_OK) {
        goto exit;
    }
    rc = mpos_hostmsg_writer_init(&w, h->out, sizeof(h->out), MPOS_HOSTMSG_LOGIN);
    if (rc != MPOS_OK) {
        goto exit;
    }
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, merchant);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_USERNAME, username);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_PASSWORD, password);
    if (w.err != MPOS_OK) {
        set_msg(h, "merchant (A-Z 0-9, 1..15), user (1..32) or password (1..128) not valid");
        rc = MPOSHOST_ERR_CONFIG;
        goto exit;
    }
    /* The device-id field LOGIN names is the envelope's (a tag appears once). */
    rc = be_seal_send(h, &w);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = be_wait(h, &m, "LOGIN_OK");
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (m.type != MPOS_HOSTMSG_LOGIN_OK ||
        mpos_hostmsg_get(&m, MPOS_HM_SESSION_TOKEN, &tok, &tl) != MPOS_OK ||
        mpos_hostmsg_get_u64(&m, MPOS_HM_EXPIRES, &h->st.s.expires) != MPOS_OK) {
        set_msg(h, "unexpected answer to LOGIN");
        rc = MPOSHOST_ERR_PROTOCOL;
        goto exit;
    }
    memcpy(h->st.token, tok, 32);
    copy_text(&m, MPOS_HM_ROLE, h->st.s.role, sizeof(h->st.s.role));
    snprintf(h->st.s.merchant, sizeof(h->st.s.merchant), "%s", merchant);
    snprintf(h->st.s.username, sizeof(h->st.s.username), "%s", username);
    if (h->state_file == NULL) {
        set_msg(h, "no state file");
        rc = MPOSHOST_ERR_CONFIG;
        goto exit;
    }
    rc = host_state_save(h->state_file, &h->st);
    if (rc != MPOS_OK) {
        set_msg(h, "cannot write the state file %s", h->state_file);
        goto exit;
    }
    if (out != NULL) {
        *out = h->st.s;
    }
exit:
    MPOS_WIPE_BUFFER(exp);
    be_close(h);
    return rc;
}

int mposhost_session_get(mposhost *h, struct mposhost_session *out)
{
    int rc;
    if (h == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = host_state_load(h->state_file, &h->st);
    if (rc == MPOS_OK) {
        *out = h->st.s;
    } else {
        set_msg(h, rc == MPOSHOST_ERR_NOT_LOGGED ? "not logged in (mpos-host login)"
                                                 : "state file unusable (must be ours, 0600)");
    }
    mpos_cleanse(h->st.token, sizeof(h->st.token));
    return rc;
}

/* Connects and resumes the stored session (RESUME, env_key). */
static int resume(mposhost *h)
{
    mpos_hostmsg_writer w;
    mpos_hostmsg m;
    uint8_t exp[32];
    int rc;
    h->be_err = 0;
    if (h->state_file == NULL) {
        set_msg(h, "no state file");
        return MPOSHOST_ERR_CONFIG;
    }
    rc = host_state_load(h->state_file, &h->st);
    if (rc != MPOS_OK) {
        set_msg(h, rc == MPOSHOST_ERR_NOT_LOGGED ? "not logged in (mpos-host login)"
                                                 : "state file unusable (must be ours, 0600)");
        return rc;
    }
    if (h->st.s.expires != 0 && h->st.s.expires <= (uint64_t)time(NULL)) {
        set_msg(h, "the session expired: log in again");
        rc = MPOSHOST_ERR_NOT_LOGGED;
        goto exit;
    }
    rc = be_open(h);
    if (rc != MPOS_OK) {
        goto exit;
    }
    if ((rc = exporter(h, MPOS_HOSTMSG_EXPORTER_SESSION, exp)) != MPOS_OK ||
        (rc = mpos_hostmsg_env_key(h->st.token, exp, h->key)) != MPOS_OK) {
        goto exit;
    }
    rc = mpos_hostmsg_writer_init(&w, h->out, sizeof(h->out), MPOS_HOSTMSG_RESUME);
    if (rc != MPOS_OK) {
        goto exit;
    }
    (void)mpos_hostmsg_put(&w, MPOS_HM_SESSION_TOKEN, h->st.token, 32);
    rc = be_seal_send(h, &w);
    if (rc != MPOS_OK) {
        goto exit;
    }
    rc = be_wait(h, &m, "RESUME_OK");
    if (rc != MPOS_OK) {
        goto exit;
    }
    if (m.type != MPOS_HOSTMSG_RESUME_OK) {
        set_msg(h, "unexpected answer to RESUME");
        rc = MPOSHOST_ERR_PROTOCOL;
        goto exit;
    }
    copy_text(&m, MPOS_HM_ROLE, h->st.s.role, sizeof(h->st.s.role));
    if (mpos_hostmsg_has(&m, MPOS_HM_EXPIRES) &&
        mpos_hostmsg_get_u64(&m, MPOS_HM_EXPIRES, &h->st.s.expires) != MPOS_OK) {
        h->st.s.expires = 0;
    }
exit:
    MPOS_WIPE_BUFFER(exp);
    mpos_cleanse(h->st.token, sizeof(h->st.token));
    if (rc != MPOS_OK) {
        be_close(h);
    }
    return rc;
}

/* Sends a message with no fields but the envelope and waits for its answer type. */
static int simple_request(mposhost *h, uint8_t type, uint8_t answer, mpos_hostmsg *m,
                          const char *what)
{
    mpos_hostmsg_writer w;
    int rc = mpos_hostmsg_writer_init(&w, h->out, sizeof(h->out), type);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = be_seal_send(h, &w);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = be_wait(h, m, what);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (m->type != answer) {
        set_msg(h, "unexpected answer 0x%02X", (unsigned)m->type);
        return MPOSHOST_ERR_PROTOCOL;
    }
    return MPOS_OK;
}

int mposhost_logout(mposhost *h)
{
    mpos_hostmsg m;
    int rc;
    if (h == NULL) {
        return MPOS_ERR_ARG;
    }
    rc = resume(h);
    if (rc == MPOS_OK) {
        rc = simple_request(h, MPOS_HOSTMSG_LOGOUT, MPOS_HOSTMSG_LOGOUT_OK, &m, "LOGOUT_OK");
    }
    be_close(h);
    /* The local copy of the token goes whatever the back end said. */
    if (h->state_file != NULL && rc != MPOSHOST_ERR_STATE &&
        host_state_remove(h->state_file) != MPOS_OK && rc == MPOS_OK) {
        rc = MPOSHOST_ERR_STATE;
    }
    return rc;
}

int mposhost_settle(mposhost *h, char *text, size_t cap)
{
    mpos_hostmsg m;
    int rc;
    if (h == NULL || text == NULL || cap == 0) {
        return MPOS_ERR_ARG;
    }
    text[0] = '\0';
    rc = resume(h);
    if (rc == MPOS_OK) {
        rc = simple_request(h, MPOS_HOSTMSG_SETTLE, MPOS_HOSTMSG_SETTLE_OK, &m, "SETTLE_OK");
    }
    if (rc == MPOS_OK && mpos_hostmsg_has(&m, MPOS_HM_TEXT)) {
        rc = mpos_hostmsg_get_text(&m, MPOS_HM_TEXT, text, cap);
    }
    be_close(h);
    return rc;
}

int mposhost_info(mposhost *h, struct mposhost_terminal_info *out)
{
    struct hl_event ev;
    int rc;
    if (h == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    rc = link_open(h);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = link_command(h, HL_CMD_GET_INFO, NULL, 0, &ev);
    if (rc == MPOS_OK && ev.type != HL_EVT_INFO) {
        set_msg(h, "GET_INFO was not answered with INFO");
        rc = MPOSHOST_ERR_PROTOCOL;
    }
    if (rc == MPOS_OK) {
        out->state = ev.u.info.state;
        memcpy(out->serial, ev.u.info.serial, sizeof(out->serial));
        memcpy(out->firmware, ev.u.info.firmware, sizeof(out->firmware));
    }
    link_close(h);
    return rc;
}

/* The terminal is busy on its own between transactions: a reversal it still owes the back
 * end goes out as soon as a host connects, and right after a transaction that needs one (the
 * card declined after approval). It can only reach the back end through this relay, and it
 * takes no new command meanwhile (docs/protocol.md 1.5: online). So before a transaction,
 * and after its result while the terminal is online, the host relays until GET_INFO reports
 * it idle (or not activated). only_online: return as soon as the terminal is not online
 * (after a result it may wait for the card to be taken out first; a reversal then goes out
 * at the next connection). */
static int never(const mposhost *h)
{
    (void)h;
    return 0;
}

static int wait_terminal_idle(mposhost *h, uint64_t deadline, int only_online)
{
    for (;;) {
        struct hl_event ev;
        uint64_t slice;
        int rc = link_command(h, HL_CMD_GET_INFO, NULL, 0, &ev);
        if (rc != MPOS_OK) {
            return rc;
        }
        if (ev.type != HL_EVT_INFO) {
            set_msg(h, "GET_INFO was not answered with INFO");
            return MPOSHOST_ERR_PROTOCOL;
        }
        if (ev.u.info.state <= 1 || (only_online && ev.u.info.state != 5)) { /* 5: online */
            return MPOS_OK;
        }
        if (remaining(deadline) == 0) {
            set_msg(h, "the terminal stayed busy (state %u)", (unsigned)ev.u.info.state);
            return MPOSHOST_ERR_TIMEOUT;
        }
        slice = now_ms() + 200;
        rc = relay_until(h, slice < deadline ? slice : deadline, never, "the terminal");
        if (rc != MPOS_OK && rc != MPOSHOST_ERR_TIMEOUT) {
            return rc;
        }
    }
}

/* A command the terminal takes only when idle (SET_HOST_LOCATION, START_TXN): the terminal
 * may start sending a pending reversal between our GET_INFO and the command, so a refusal
 * "not allowed" while it is online or showing a result is waited out and the command sent
 * again, until the deadline. */
static int link_command_when_idle(mposhost *h, uint8_t type, const uint8_t *payload, size_t len,
                                  struct hl_event *answer, uint64_t deadline)
{
    for (;;) {
        int rc = wait_terminal_idle(h, deadline, 0);
        if (rc != MPOS_OK) {
            return rc;
        }
        rc = link_command(h, type, payload, len, answer);
        if (rc != MPOSHOST_ERR_TERMINAL || answer->type != HL_EVT_ERROR ||
            answer->u.ack.code != 2 || (answer->u.ack.state != 5 && answer->u.ack.state != 6) ||
            remaining(deadline) == 0) {
            return rc;
        }
    }
}

static int have_result(const mposhost *h)
{
    return h->have_result;
}

static int have_both(const mposhost *h)
{
    return h->have_result && h->have_txn_result;
}

int mposhost_activate(mposhost *h, const char *code, struct mposhost_receipt *out)
{
    uint8_t payload[64];
    struct hl_event ev;
    int rc, n;
    if (h == NULL || code == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    n = hl_put_activate(payload, sizeof(payload), code);
    if (n < 0) {
        set_msg(h, "activation code: 4..32 of 0-9 A-Z a-z -");
        return MPOSHOST_ERR_CONFIG;
    }
    memset(&h->rcpt, 0, sizeof(h->rcpt));
    h->have_result = h->have_txn_result = 0;
    /* The tunnel needs the session first: the terminal starts its handshake right away. */
    rc = resume(h);
    if (rc == MPOS_OK) {
        rc = link_open(h);
    }
    if (rc == MPOS_OK) {
        progress(h, "activating the terminal");
        rc = link_command(h, HL_CMD_ACTIVATE, payload, (size_t)n, &ev);
    }
    if (rc == MPOS_OK) {
        rc = relay_until(h, now_ms() + h->txn_timeout_ms, have_result, "the activation result");
    }
    if (rc == MPOS_OK) {
        *out = h->rcpt;
    }
    link_close(h);
    be_close(h);
    return rc;
}

int mposhost_txn(mposhost *h, enum mposhost_txn_type type, uint64_t amount, uint16_t currency,
                 const char *reference, struct mposhost_receipt *out)
{
    uint8_t start[64], loc[32];
    mpos_hostmsg_writer w;
    mpos_hostmsg m;
    struct hl_event ev;
    int rc, n, nl;
    if (h == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    /* A void may name only the RRN (amount 0): the back end finds the original in its
     * journal and TXN_OK carries its amount and currency, which START_TXN then uses (the
     * terminal shows them for confirmation, docs/system-design.md 1.3). The receipts file of
     * this device is only a fallback for an older back end whose TXN_OK carries none. */
    int by_ref = type == MPOSHOST_VOID && amount == 0 && reference != NULL;
    if (by_ref && h->state_file != NULL) {
        uint16_t cur = 0;
        uint64_t amt = 0;
        if (host_receipt_find(h->state_file, reference, &amt, &cur) == MPOS_OK) {
            amount = amt;
            currency = cur;
        }
    }
    /* Checked now with a stand-in amount when only the RRN is known; rebuilt after TXN_OK. */
    n = hl_put_start(start, sizeof(start), (uint8_t)type, amount != 0 || !by_ref ? amount : 1,
                     currency, reference);
    if (n < 0) {
        set_msg(h, "transaction not valid (amount, currency 1..999, reference 1..32 an for "
                   "void/refund only)");
        return MPOSHOST_ERR_CONFIG;
    }
    if (!h->have_location) {
        set_msg(h, "no location (--location, [host] location or a gpsd fix)");
        return MPOSHOST_ERR_CONFIG;
    }
    nl = hl_put_location(loc, sizeof(loc), h->lat, h->lon, h->accuracy,
                         h->loc_time != 0 ? h->loc_time : (uint64_t)time(NULL));
    if (nl < 0) {
        set_msg(h, "location out of range");
        return MPOSHOST_ERR_CONFIG;
    }
    memset(&h->rcpt, 0, sizeof(h->rcpt));
    h->have_result = h->have_txn_result = 0;
    rc = resume(h);
    if (rc == MPOS_OK) {
        rc = link_open(h);
    }
    if (rc == MPOS_OK) {
        rc = link_command_when_idle(h, HL_CMD_SET_HOST_LOCATION, loc, (size_t)nl, &ev,
                                    now_ms() + h->txn_timeout_ms);
    }
    if (rc == MPOS_OK) {
        rc = mpos_hostmsg_writer_init(&w, h->out, sizeof(h->out), MPOS_HOSTMSG_TXN_BEGIN);
    }
    if (rc == MPOS_OK) {
        (void)mpos_hostmsg_put_u8(&w, MPOS_HM_TXN_TYPE, (uint8_t)type);
        (void)mpos_hostmsg_put_u64(&w, MPOS_HM_AMOUNT, amount);
        (void)mpos_hostmsg_put_u16(&w, MPOS_HM_CURRENCY, currency);
        if (reference != NULL && reference[0] != '\0') {
            (void)mpos_hostmsg_put_text(&w, MPOS_HM_REFERENCE, reference);
        }
        rc = be_seal_send(h, &w);
    }
    if (rc == MPOS_OK) {
        rc = be_wait(h, &m, "TXN_OK");
    }
    if (rc == MPOS_OK && m.type != MPOS_HOSTMSG_TXN_OK) {
        set_msg(h, "unexpected answer to TXN_BEGIN");
        rc = MPOSHOST_ERR_PROTOCOL;
    }
    if (rc == MPOS_OK && mpos_hostmsg_has(&m, MPOS_HM_AMOUNT) &&
        mpos_hostmsg_has(&m, MPOS_HM_CURRENCY)) {
        /* Void / refund: the original's amount (void) and currency from the back end's
         * journal are what the terminal shows and the sealed request must carry. */
        if (mpos_hostmsg_get_u64(&m, MPOS_HM_AMOUNT, &amount) != MPOS_OK ||
            mpos_hostmsg_get_u16(&m, MPOS_HM_CURRENCY, &currency) != MPOS_OK ||
            (n = hl_put_start(start, sizeof(start), (uint8_t)type, amount, currency, reference)) <
                0) {
            set_msg(h, "TXN_OK: original amount or currency not valid");
            rc = MPOSHOST_ERR_PROTOCOL;
        }
    } else if (rc == MPOS_OK && by_ref && amount == 0) {
        set_msg(h, "void: the back end did not give the original's amount: give --amount");
        rc = MPOSHOST_ERR_CONFIG;
    }
    if (rc == MPOS_OK) {
        rc = link_command_when_idle(h, HL_CMD_START_TXN, start, (size_t)n, &ev,
                                    now_ms() + h->txn_timeout_ms);
    }
    if (rc == MPOS_OK) {
        rc = relay_until(h, now_ms() + h->txn_timeout_ms, have_result, "the terminal's result");
    }
    if (rc == MPOS_OK &&
        (h->rcpt.outcome == MPOSHOST_APPROVED || h->rcpt.outcome == MPOSHOST_DECLINED ||
         h->rcpt.outcome == MPOSHOST_NO_RESPONSE)) {
        /* The back end's TXN_RESULT follows the sealed response; it only adds the merchant
         * and terminal IDs to the receipt, so a late one does not fail the transaction. */
        if (relay_until(h, now_ms() + TXN_RESULT_GRACE_MS, have_both, "TXN_RESULT") ==
            MPOSHOST_ERR_BACKEND) {
            rc = MPOSHOST_ERR_BACKEND;
        }
    }
    if (h->have_result && wait_terminal_idle(h, now_ms() + h->txn_timeout_ms, 1) != MPOS_OK) {
        /* The result stands; a reversal the terminal still owes goes out next time. */
        progress(h, "the terminal is still busy (a reversal may be pending)");
    }
    if (h->have_result && h->rcpt.outcome == MPOSHOST_APPROVED && type == MPOSHOST_SALE &&
        h->rcpt.rrn[0] != '\0' && h->state_file != NULL &&
        host_receipt_add(h->state_file, h->rcpt.rrn, h->rcpt.amount, h->rcpt.currency) != MPOS_OK) {
        progress(h, "warning: the receipt could not be kept for a later void");
    }
    if (rc == MPOS_OK || h->have_result) {
        *out = h->rcpt;
        if (h->have_result) {
            rc = MPOS_OK;
        }
    }
    link_close(h);
    be_close(h);
    return rc;
}
