/* libmposhost end to end against a scripted back end (TLS 1.3 + lib/hostmsg, in a thread)
 * and a scripted terminal (terminal/core/link's codec on a Unix socket, in a thread).
 *
 * Checked on the back end's side: TLS 1.3, the LOGIN MAC under the key from this connection's
 * exporter, every later MAC under env_key, the envelope on every message (location as
 * configured, device ID, binary hash, root flag, counter 1, 2, 3 ... per connection). On the
 * terminal's side: SET_HOST_LOCATION, START_TXN as asked, the back end's 10000 tunnel bytes
 * arriving unchanged in link frames of at most 4096 bytes. On the host's: the terminal's
 * tunnel bytes reach the back end unchanged, prompts reach the callback, the receipt carries
 * the RESULT and TXN_RESULT fields, the state file is 0600. Then: a server name that does not
 * match, and a CA that did not issue the certificate, are refused. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "link/link.h"
#include "mpos/hostmsg.h"
#include "mpos/util.h"
#include "mposhost.h"

#define DOWN_LEN 10000
#define UP_LEN   3000

static char dir[] = "/tmp/mposhost-flow-XXXXXX";
static char cert_path[128], key_path[128], other_ca[128], state_path[128], sock_path[128];
static int be_port;
static int be_listen_fd = -1, link_listen_fd = -1;
static const uint8_t TOKEN[32] = {0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
                                  0x7B, 0x7C, 0x7D, 0x7E, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85,
                                  0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F};

/* What the threads saw; checked by the main thread (cmocka asserts only there). */
static char be_fail[256], term_fail[256];
static int be_msgs, term_down_frames;

#define BE_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c) && be_fail[0] == '\0') {                                                          \
            snprintf(be_fail, sizeof(be_fail), "back end: %s (line %d)", #c, __LINE__);            \
        }                                                                                          \
    } while (0)
#define TERM_CHECK(c)                                                                              \
    do {                                                                                           \
        if (!(c) && term_fail[0] == '\0') {                                                        \
            snprintf(term_fail, sizeof(term_fail), "terminal: %s (line %d)", #c, __LINE__);        \
        }                                                                                          \
    } while (0)

/* An unconditional failure with its reason (no string literal used as a condition). */
#define BE_FAIL(what)                                                                              \
    do {                                                                                           \
        if (be_fail[0] == '\0') {                                                                  \
            snprintf(be_fail, sizeof(be_fail), "back end: %s (line %d)", what, __LINE__);          \
        }                                                                                          \
    } while (0)
#define TERM_FAIL(what)                                                                            \
    do {                                                                                           \
        if (term_fail[0] == '\0') {                                                                \
            snprintf(term_fail, sizeof(term_fail), "terminal: %s (line %d)", what, __LINE__);      \
        }                                                                                          \
    } while (0)

static void make_cert(const char *cn, const char *cpath, const char *kpath)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    X509_EXTENSION *ext;
    X509V3_CTX v3;
    FILE *f;
    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:backend.test");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    f = fopen(cpath, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    if (kpath != NULL) {
        f = fopen(kpath, "w");
        assert_non_null(f);
        PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
        fclose(f);
    }
    X509_free(x);
    EVP_PKEY_free(k);
}

/* ---- the scripted back end ---------------------------------------------------------------- */

struct be_conn {
    SSL *ssl;
    mpos_hostmsg_reader r;
    uint8_t key[32];
    uint64_t counter;
    uint8_t buf[20000];
    size_t off, len;
};

static int be_recv(struct be_conn *c, mpos_hostmsg *m)
{
    for (;;) {
        const uint8_t *msg = NULL;
        size_t used = 0, ml = 0;
        int rc;
        if (c->off >= c->len) {
            int n = SSL_read(c->ssl, c->buf, sizeof(c->buf));
            if (n <= 0) {
                return -1;
            }
            c->off = 0;
            c->len = (size_t)n;
        }
        rc = mpos_hostmsg_reader_feed(&c->r, c->buf + c->off, c->len - c->off, &used, &msg, &ml);
        c->off += used;
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            return mpos_hostmsg_parse(m, msg, ml);
        }
    }
}

/* The envelope of every host message, under c->key. */
static void be_check_env(struct be_conn *c, const mpos_hostmsg *m)
{
    struct mpos_hostmsg_envelope e;
    uint8_t zero[32] = {0};
    BE_CHECK(mpos_hostmsg_verify_mac(m, c->key, 32) == MPOS_OK);
    BE_CHECK(mpos_hostmsg_get_envelope(m, &e) == MPOS_OK);
    BE_CHECK(e.counter == c->counter + 1);
    c->counter = e.counter;
    BE_CHECK(e.lat == 312304000 && e.lon == 1214737000 && e.accuracy == 20);
    BE_CHECK(e.loc_time + 60 > (uint64_t)time(NULL));
    BE_CHECK(memcmp(e.device_id, zero, 32) != 0 && memcmp(e.binary_hash, zero, 32) != 0);
    BE_CHECK(e.root == (geteuid() == 0));
    be_msgs++;
}

static void be_send(struct be_conn *c, mpos_hostmsg_writer *w)
{
    size_t n = 0;
    BE_CHECK(mpos_hostmsg_finish(w, &n) == MPOS_OK);
    BE_CHECK(SSL_write(c->ssl, w->buf, (int)n) == (int)n);
}

static void be_session(SSL *ssl, int index)
{
    static uint8_t out[40000];
    static struct be_conn c;
    mpos_hostmsg m;
    mpos_hostmsg_writer w;
    uint8_t exp[32];
    memset(&c, 0, sizeof(c));
    c.ssl = ssl;
    mpos_hostmsg_reader_init(&c.r);
    BE_CHECK(SSL_version(ssl) == TLS1_3_VERSION);
    if (be_recv(&c, &m) != MPOS_OK) {
        BE_FAIL("first message");
        return;
    }
    if (index == 0) {
        char s[64];
        BE_CHECK(m.type == MPOS_HOSTMSG_LOGIN);
        BE_CHECK(SSL_export_keying_material(ssl, exp, 32, MPOS_HOSTMSG_EXPORTER_LOGIN,
                                            strlen(MPOS_HOSTMSG_EXPORTER_LOGIN),
                                            (const unsigned char *)"", 0, 1) == 1);
        BE_CHECK(mpos_hostmsg_login_key(exp, c.key) == MPOS_OK);
        be_check_env(&c, &m);
        BE_CHECK(mpos_hostmsg_get_text(&m, MPOS_HM_MERCHANT, s, sizeof(s)) == MPOS_OK &&
                 strcmp(s, "M0001") == 0);
        BE_CHECK(mpos_hostmsg_get_text(&m, MPOS_HM_USERNAME, s, sizeof(s)) == MPOS_OK &&
                 strcmp(s, "alice") == 0);
        BE_CHECK(mpos_hostmsg_get_text(&m, MPOS_HM_PASSWORD, s, sizeof(s)) == MPOS_OK &&
                 strcmp(s, "correct horse") == 0);
        BE_CHECK(mpos_hostmsg_writer_init(&w, out, sizeof(out), MPOS_HOSTMSG_LOGIN_OK) == 0);
        (void)mpos_hostmsg_put(&w, MPOS_HM_SESSION_TOKEN, TOKEN, 32);
        (void)mpos_hostmsg_put_text(&w, MPOS_HM_ROLE, "cashier");
        (void)mpos_hostmsg_put_u64(&w, MPOS_HM_EXPIRES, (uint64_t)time(NULL) + 3600);
        be_send(&c, &w);
        return;
    }
    /* RESUME, TXN_BEGIN, then the relay. */
    BE_CHECK(m.type == MPOS_HOSTMSG_RESUME);
    BE_CHECK(SSL_export_keying_material(ssl, exp, 32, MPOS_HOSTMSG_EXPORTER_SESSION,
                                        strlen(MPOS_HOSTMSG_EXPORTER_SESSION),
                                        (const unsigned char *)"", 0, 1) == 1);
    BE_CHECK(mpos_hostmsg_env_key(TOKEN, exp, c.key) == MPOS_OK);
    be_check_env(&c, &m);
    BE_CHECK(mpos_hostmsg_writer_init(&w, out, sizeof(out), MPOS_HOSTMSG_RESUME_OK) == 0);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_ROLE, "cashier");
    (void)mpos_hostmsg_put_u64(&w, MPOS_HM_EXPIRES, (uint64_t)time(NULL) + 3600);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, "M0001");
    be_send(&c, &w);

    BE_CHECK(be_recv(&c, &m) == MPOS_OK && m.type == MPOS_HOSTMSG_TXN_BEGIN);
    be_check_env(&c, &m);
    {
        uint8_t t = 0;
        uint64_t a = 0;
        uint16_t cur = 0;
        BE_CHECK(mpos_hostmsg_get_u8(&m, MPOS_HM_TXN_TYPE, &t) == MPOS_OK && t == 1);
        BE_CHECK(mpos_hostmsg_get_u64(&m, MPOS_HM_AMOUNT, &a) == MPOS_OK && a == 1234);
        BE_CHECK(mpos_hostmsg_get_u16(&m, MPOS_HM_CURRENCY, &cur) == MPOS_OK && cur == 156);
    }
    BE_CHECK(mpos_hostmsg_writer_init(&w, out, sizeof(out), MPOS_HOSTMSG_TXN_OK) == 0);
    be_send(&c, &w);

    /* Down: 10000 bytes in one TUNNEL message. */
    {
        static uint8_t down[DOWN_LEN];
        for (size_t i = 0; i < DOWN_LEN; i++) {
            down[i] = (uint8_t)(i * 13 + 5);
        }
        BE_CHECK(mpos_hostmsg_writer_init(&w, out, sizeof(out), MPOS_HOSTMSG_TUNNEL_DOWN) == 0);
        (void)mpos_hostmsg_put(&w, MPOS_HM_DATA, down, DOWN_LEN);
        be_send(&c, &w);
    }
    /* Up: the terminal's 3000 bytes, in TUNNEL messages (one per link frame). */
    {
        size_t got = 0;
        while (got < UP_LEN) {
            const uint8_t *d = NULL;
            size_t dl = 0;
            if (be_recv(&c, &m) != MPOS_OK) {
                BE_FAIL("tunnel up");
                return;
            }
            BE_CHECK(m.type == MPOS_HOSTMSG_TUNNEL);
            be_check_env(&c, &m);
            BE_CHECK(mpos_hostmsg_get(&m, MPOS_HM_DATA, &d, &dl) == MPOS_OK);
            for (size_t i = 0; i < dl && got + i < UP_LEN; i++) {
                BE_CHECK(d[i] == (uint8_t)((got + i) * 7 + 1));
            }
            got += dl;
        }
        BE_CHECK(got == UP_LEN);
    }
    BE_CHECK(mpos_hostmsg_writer_init(&w, out, sizeof(out), MPOS_HOSTMSG_TXN_RESULT) == 0);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT_ID, "MID000000000001");
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_TERMINAL_ID, "TID00001");
    (void)mpos_hostmsg_put_u8(&w, MPOS_HM_TXN_TYPE, 1);
    (void)mpos_hostmsg_put_u64(&w, MPOS_HM_AMOUNT, 1234);
    (void)mpos_hostmsg_put_u16(&w, MPOS_HM_CURRENCY, 156);
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_MASKED_PAN, "622200******0001");
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_RESPONSE_CODE, "00");
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_AUTH_CODE, "A1B2C3");
    (void)mpos_hostmsg_put_text(&w, MPOS_HM_RRN, "000000000777");
    (void)mpos_hostmsg_put_u32(&w, MPOS_HM_SEQUENCE, 42);
    be_send(&c, &w);
    /* Wait for the host to close. */
    (void)be_recv(&c, &m);
}

static void *be_thread(void *arg)
{
    int sessions = *(int *)arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BE_CHECK(ctx != NULL);
    BE_CHECK(SSL_CTX_use_certificate_file(ctx, cert_path, SSL_FILETYPE_PEM) == 1);
    BE_CHECK(SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) == 1);
    for (int i = 0; i < sessions; i++) {
        int fd = accept(be_listen_fd, NULL, NULL);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            be_session(ssl, i);
            SSL_shutdown(ssl);
        } else if (i < 2) {
            BE_FAIL("handshake");
        }
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
    }
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the scripted terminal ---------------------------------------------------------------- */

static int term_recv(int fd, mpos_link_decoder *d, mpos_link_msg *m)
{
    static uint8_t buf[8192];
    static size_t off, len;
    for (;;) {
        mpos_link_frame f;
        size_t used = 0;
        int rc = mpos_link_decoder_feed(d, buf + off, len - off, &used, &f);
        off += used;
        if (rc == 1) {
            return mpos_link_decode(&f, m);
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            return -1;
        }
        off = 0;
        len = (size_t)n;
    }
}

static void term_send(int fd, mpos_link_session *s, mpos_link_msg *m)
{
    uint8_t out[MPOS_LINK_MAX_FRAME_LEN];
    size_t n = 0;
    TERM_CHECK(mpos_link_session_send(s, m, out, sizeof(out), &n) == MPOS_OK);
    TERM_CHECK(send(fd, out, n, MSG_NOSIGNAL) == (ssize_t)n);
}

static void term_ack(int fd, mpos_link_session *s, const mpos_link_msg *cmd)
{
    mpos_link_msg a;
    memset(&a, 0, sizeof(a));
    a.type = MPOS_LINK_EVT_ACK;
    a.u.ack.ref_seq = cmd->seq;
    a.u.ack.ref_type = cmd->type;
    term_send(fd, s, &a);
}

/* The next command other than GET_INFO; GET_INFO (the host asks whether the terminal is idle
 * before and after a transaction) is answered with INFO in the session's state. */
static int term_next(int fd, mpos_link_decoder *d, mpos_link_session *s, mpos_link_msg *m)
{
    for (;;) {
        mpos_link_msg info;
        int rc = term_recv(fd, d, m);
        if (rc != MPOS_OK || m->type != MPOS_LINK_CMD_GET_INFO) {
            return rc;
        }
        memset(&info, 0, sizeof(info));
        info.type = MPOS_LINK_EVT_INFO;
        info.u.info.ref_seq = m->seq;
        info.u.info.state = (uint8_t)s->state;
        strcpy(info.u.info.serial, "SIM-TERM-1");
        strcpy(info.u.info.firmware, "0.1.0");
        term_send(fd, s, &info);
    }
}

static void *term_thread(void *arg)
{
    (void)arg;
    mpos_link_decoder d;
    mpos_link_session s;
    mpos_link_msg m, e;
    static uint8_t up[UP_LEN];
    size_t got = 0;
    int fd = accept(link_listen_fd, NULL, NULL);
    mpos_link_decoder_init(&d);
    TERM_CHECK(mpos_link_session_init(&s, MPOS_LINK_STATE_IDLE) == MPOS_OK);
    TERM_CHECK(term_next(fd, &d, &s, &m) == MPOS_OK && m.type == MPOS_LINK_CMD_SET_HOST_LOCATION);
    TERM_CHECK(m.u.location.lat_e7 == 312304000 && m.u.location.lon_e7 == 1214737000);
    term_ack(fd, &s, &m);
    TERM_CHECK(term_next(fd, &d, &s, &m) == MPOS_OK && m.type == MPOS_LINK_CMD_START_TXN);
    TERM_CHECK(m.u.start.txn_type == 1 && m.u.start.amount == 1234 && m.u.start.currency == 156);
    term_ack(fd, &s, &m);
    memset(&e, 0, sizeof(e));
    e.type = MPOS_LINK_EVT_PROMPT_SHOWN;
    e.u.prompt.prompt = MPOS_PROMPT_CONFIRM_AMOUNT;
    e.u.prompt.txn_type = 1;
    e.u.prompt.amount = 1234;
    e.u.prompt.currency = 156;
    term_send(fd, &s, &e);
    for (size_t i = 0; i < UP_LEN; i++) {
        up[i] = (uint8_t)(i * 7 + 1);
    }
    memset(&e, 0, sizeof(e));
    e.type = MPOS_LINK_EVT_TUNNEL_DATA;
    e.u.tunnel.data = up;
    e.u.tunnel.len = UP_LEN;
    term_send(fd, &s, &e);
    while (got < DOWN_LEN) {
        if (term_next(fd, &d, &s, &m) != MPOS_OK) {
            TERM_FAIL("tunnel down");
            break;
        }
        TERM_CHECK(m.type == MPOS_LINK_CMD_TUNNEL_DATA);
        TERM_CHECK(m.u.tunnel.len <= 4096);
        for (size_t i = 0; i < m.u.tunnel.len; i++) {
            TERM_CHECK(m.u.tunnel.data[i] == (uint8_t)((got + i) * 13 + 5));
        }
        got += m.u.tunnel.len;
        term_down_frames++;
    }
    TERM_CHECK(got == DOWN_LEN);
    memset(&e, 0, sizeof(e));
    e.type = MPOS_LINK_EVT_RESULT;
    e.u.result.outcome = MPOS_LINK_OUTCOME_APPROVED;
    e.u.result.txn_type = 1;
    e.u.result.amount = 1234;
    e.u.result.currency = 156;
    e.u.result.txn_seq = 42;
    strcpy(e.u.result.response_code, "00");
    strcpy(e.u.result.auth_code, "A1B2C3");
    strcpy(e.u.result.rrn, "000000000777");
    strcpy(e.u.result.masked_pan, "622200******0001");
    term_send(fd, &s, &e);
    while (term_next(fd, &d, &s, &m) == MPOS_OK) { /* until the host closes */
    }
    close(fd);
    return NULL;
}

/* ---- the host ----------------------------------------------------------------------------- */

static int prompts_seen[19];

static void on_prompt(void *ctx, const struct mposhost_prompt *p)
{
    (void)ctx;
    if (p->id < 19) {
        prompts_seen[p->id]++;
    }
}

static void host_config(struct mposhost_config *hc, const char *ca, const char *name)
{
    static char backend[64];
    memset(hc, 0, sizeof(*hc));
    snprintf(backend, sizeof(backend), "127.0.0.1:%d", be_port);
    hc->terminal = NULL;
    hc->backend = backend;
    hc->ca_file = ca;
    hc->server_name = name;
    hc->state_file = state_path;
    hc->have_location = 1;
    hc->lat_e7 = 312304000;
    hc->lon_e7 = 1214737000;
    hc->accuracy_m = 20;
    hc->timeout_ms = 10000;
    hc->txn_timeout_ms = 20000;
    hc->on_prompt = on_prompt;
}

static int setup(void **state)
{
    (void)state;
    struct sockaddr_in sa;
    struct sockaddr_un su;
    socklen_t sl = sizeof(sa);
    assert_non_null(mkdtemp(dir));
    snprintf(cert_path, sizeof(cert_path), "%s/be.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/be.key", dir);
    snprintf(other_ca, sizeof(other_ca), "%s/other.pem", dir);
    snprintf(state_path, sizeof(state_path), "%s/state", dir);
    snprintf(sock_path, sizeof(sock_path), "%s/link.sock", dir);
    make_cert("backend.test", cert_path, key_path);
    make_cert("someone else", other_ca, NULL);
    be_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(be_listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(be_listen_fd, 4), 0);
    assert_int_equal(getsockname(be_listen_fd, (struct sockaddr *)&sa, &sl), 0);
    be_port = ntohs(sa.sin_port);
    link_listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    strcpy(su.sun_path, sock_path);
    assert_int_equal(bind(link_listen_fd, (struct sockaddr *)&su, sizeof(su)), 0);
    assert_int_equal(listen(link_listen_fd, 2), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(be_listen_fd);
    close(link_listen_fd);
    unlink(cert_path);
    unlink(key_path);
    unlink(other_ca);
    unlink(state_path);
    unlink(sock_path);
    rmdir(dir);
    return 0;
}

static void test_login_and_sale(void **state)
{
    (void)state;
    struct mposhost_config hc;
    struct mposhost_session s;
    struct mposhost_receipt r;
    struct stat sb;
    mposhost *h = NULL;
    pthread_t bt, tt;
    int sessions = 2;
    char link[160];
    assert_int_equal(pthread_create(&bt, NULL, be_thread, &sessions), 0);
    assert_int_equal(pthread_create(&tt, NULL, term_thread, NULL), 0);
    host_config(&hc, cert_path, "backend.test");
    snprintf(link, sizeof(link), "unix:%s", sock_path);
    hc.terminal = link;
    assert_int_equal(mposhost_new(&hc, &h), MPOS_OK);
    int rc = mposhost_login(h, "M0001", "alice", "correct horse", &s);
    if (rc != MPOS_OK) {
        fail_msg("login: %s: %s", mposhost_strerror(rc), mposhost_message(h));
    }
    assert_string_equal(s.role, "cashier");
    assert_int_equal(stat(state_path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    rc = mposhost_txn(h, MPOSHOST_SALE, 1234, 156, NULL, &r);
    if (rc != MPOS_OK) {
        fail_msg("sale: %s: %s", mposhost_strerror(rc), mposhost_message(h));
    }
    mposhost_free(h);
    pthread_join(tt, NULL);
    pthread_join(bt, NULL);
    if (be_fail[0]) {
        fail_msg("%s", be_fail);
    }
    if (term_fail[0]) {
        fail_msg("%s", term_fail);
    }
    assert_int_equal(r.outcome, MPOSHOST_APPROVED);
    assert_int_equal(r.amount, 1234);
    assert_string_equal(r.masked_pan, "622200******0001");
    assert_string_equal(r.auth_code, "A1B2C3");
    assert_string_equal(r.rrn, "000000000777");
    assert_string_equal(r.response_code, "00");
    assert_true(r.have_backend);
    assert_string_equal(r.merchant_id, "MID000000000001");
    assert_string_equal(r.terminal_id, "TID00001");
    assert_int_equal(prompts_seen[5], 1);
    /* The approved sale is kept for a void by RRN alone. */
    {
        char rp[160], line[64] = "";
        FILE *f;
        snprintf(rp, sizeof(rp), "%s.receipts", state_path);
        f = fopen(rp, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);
        unlink(rp);
        assert_string_equal(line, "000000000777 1234 156\n");
    }
    assert_true(term_down_frames >= 3); /* 10000 bytes: at least 3 frames of <= 4096 */
    assert_true(be_msgs >= 4);          /* LOGIN, RESUME, TXN_BEGIN, TUNNEL ... */
}

/* The certificate is checked: the name, and the issuer against the configured CA only. */
static void test_tls_refusals(void **state)
{
    (void)state;
    struct mposhost_config hc;
    struct mposhost_session s;
    mposhost *h = NULL;
    pthread_t bt;
    int sessions = 2;
    be_fail[0] = '\0';
    assert_int_equal(pthread_create(&bt, NULL, be_thread, &sessions), 0);
    host_config(&hc, cert_path, "other.test");
    assert_int_equal(mposhost_new(&hc, &h), MPOS_OK);
    assert_int_equal(mposhost_login(h, "M0001", "alice", "x", &s), MPOSHOST_ERR_TLS);
    mposhost_free(h);
    host_config(&hc, other_ca, "backend.test");
    assert_int_equal(mposhost_new(&hc, &h), MPOS_OK);
    assert_int_equal(mposhost_login(h, "M0001", "alice", "x", &s), MPOSHOST_ERR_TLS);
    mposhost_free(h);
    pthread_join(bt, NULL);
}

int main(void)
{
    /* A peer that hangs up must fail a check, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_and_sale),
        cmocka_unit_test(test_tls_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
