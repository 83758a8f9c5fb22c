/* mpos-backend: the acquirer's server (docs/system-design.md 1-2; docs/backend.md).
 *
 * Start-up: core dumps off and not dumpable (a dump would hold session keys and clear tunnel
 * data); refuse root unless --allow-root; configuration; TLS contexts; the transaction
 * processor; the listener (prints listening=ADDR:PORT and writes --port-file); workers; the
 * accept loop. SIGTERM/SIGINT: stop accepting, let the workers finish the callback they are
 * in (a transaction in flight answers), bounded by BK_SHUTDOWN_GRACE_S, close, exit 0. */
#include "server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    } else {
        snprintf(out, cap, "unknown");
    }
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct bs_server *s = arg;
    struct bs_handoff h;
    (void)lev;
    (void)socklen;
    memset(&h, 0, sizeof(h));
    h.fd = fd;
    h.conn = atomic_fetch_add(&s->conn_seq, 1) + 1;
    addr_text(sa, h.peer, sizeof(h.peer));
    if (atomic_load(&s->stopping) || atomic_load(&s->clients) >= s->cfg->max_connections) {
        bs_log("warn", "connection_refused", h.conn, " peer=%s reason=%s", h.peer,
               atomic_load(&s->stopping) ? "stopping" : "max_connections");
        close(fd);
        return;
    }
    /* Least loaded worker, ties broken round-robin. */
    unsigned best = s->next_worker++ % s->n_workers;
    for (unsigned i = 0; i < s->n_workers; i++) {
        if (atomic_load(&s->workers[i].n_conns) < atomic_load(&s->workers[best].n_conns)) {
            best = i;
        }
    }
    atomic_fetch_add(&s->clients, 1);
    if (bs_worker_hand(&s->workers[best], &h) != 0) {
        atomic_fetch_sub(&s->clients, 1);
        close(fd);
    }
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)lev;
    (void)arg;
    /* Out of descriptors or memory: keep listening, the next accept may succeed. */
    bs_log("error", "accept_failed", 0, " errno=%d", EVUTIL_SOCKET_ERROR());
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct bs_server *s = arg;
    (void)what;
    bs_log("info", "stopping", 0, " signal=%d", (int)sig);
    atomic_store(&s->stopping, 1);
    event_base_loopbreak(s->base);
}

/* "A.B.C.D:PORT" or "[v6]:PORT", port 0..65535 (0: the system picks one; libevent's parser
 * refuses 0). */
static int parse_listen(const char *text, struct sockaddr_storage *ss, int *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    char *end = NULL;
    if (colon == NULL || (size_t)(colon - text) >= sizeof(host) || colon[1] == '\0') {
        return -1;
    }
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535 || colon[1] < '0' || colon[1] > '9') {
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        host[hl - 1] = '\0';
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = (int)sizeof(*in6);
        return inet_pton(AF_INET6, host + 1, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    *len = (int)sizeof(*in);
    return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

static int listen_on(struct bs_server *s)
{
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char bound[80];
    memset(&ss, 0, sizeof(ss));
    if (parse_listen(s->cfg->listen, &ss, &sl) != 0) {
        fprintf(stderr, "mpos-backend: [server] listen %s: not ADDR:PORT\n", s->cfg->listen);
        return -1;
    }
    s->lev = evconnlistener_new_bind(
        s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
        512, (struct sockaddr *)&ss, sl);
    if (s->lev == NULL) {
        perror("mpos-backend: listen");
        return -1;
    }
    evconnlistener_set_error_cb(s->lev, on_accept_error);
    sl = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(s->lev), (struct sockaddr *)&ss, (socklen_t *)&sl) != 0) {
        return -1;
    }
    addr_text((struct sockaddr *)&ss, bound, sizeof(bound));
    if (s->cfg->port_file != NULL) {
        /* Written whole under a temporary name, then renamed: a reader never sees half. */
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", s->cfg->port_file);
        FILE *f = fopen(tmp, "w");
        unsigned port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, s->cfg->port_file) != 0) {
            perror("mpos-backend: --port-file");
            return -1;
        }
    }
    /* After the port file: whoever reads this line may read the file at once. */
    printf("listening=%s\n", bound);
    fflush(stdout);
    bs_log("info", "listening", 0, " addr=%s workers=%u tls12=%d", bound, s->cfg->workers,
           s->cfg->allow_tls12);
    return 0;
}

static int start_txn(struct bs_server *s)
{
    const struct bs_config *c = s->cfg;
    mpos_bk_txn_config tc;
    memset(&tc, 0, sizeof(tc));
    tc.store_path = c->store_db;
    tc.hsm_socket = c->hsm_socket;
    tc.hsm_timeout_ms = c->hsm_timeout_ms;
    tc.upstream_host = c->up_host != NULL ? c->up_host : "127.0.0.1";
    tc.upstream_port = c->up_port;
    tc.upstream_timeout_ms = c->up_timeout_ms;
    tc.echo_s = c->echo_s;
    tc.saf_interval_ms = c->saf_interval_ms;
    tc.acquirer_id = c->acquirer_id;
    tc.zpk_label = c->zpk;
    tc.zak_label = c->zak;
    tc.zek_label = c->zek;
    tc.min_firmware = c->min_firmware;
    tc.max_speed_kmh = c->max_speed_kmh;
    tc.decline_impossible_travel = c->decline_impossible_travel;
    int rc = mpos_bk_txn_start(&tc, &s->txn);
    if (rc != 0) {
        fprintf(stderr, "mpos-backend: the transaction processor did not start (%d)\n", rc);
        return -1;
    }
    return 0;
}

static void watchdog(int sig)
{
    (void)sig;
    /* In-flight work did not finish within the grace period: leave without flushing. */
    _exit(3);
}

int main(int argc, char **argv)
{
    static struct bs_config cfg;
    static struct bs_server srv;
    int rc = 1;
    if (mpos_daemon_harden_early("mpos-backend") != 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    bs_config_defaults(&cfg);
    int lr = bs_config_load(&cfg, argc, argv);
    if (lr != 0) {
        bs_config_free(&cfg);
        return lr > 0 ? 0 : 2;
    }
    if ((geteuid() == 0 || getuid() == 0) && !cfg.allow_root_process) {
        fprintf(stderr, "mpos-backend: refusing to run as root (start it as the service user, "
                        "e.g. with setpriv; --allow-root for tests)\n");
        bs_config_free(&cfg);
        return 2;
    }
    srv.cfg = &cfg;
    if (evthread_use_pthreads() != 0) {
        goto exit;
    }
    srv.outer = bs_tls_outer_ctx(&cfg);
    srv.inner = srv.outer != NULL ? bs_tls_inner_ctx(&cfg) : NULL;
    if (srv.inner == NULL) {
        goto exit;
    }
    /* Detach before any thread exists (fork keeps only the calling thread); the
     * configuration and TLS errors above still reach the caller's terminal. stdout and stderr
     * stay open: the listening= line and the logs go where the caller sent them. */
    if (!cfg.foreground && daemon(1, 1) != 0) {
        perror("mpos-backend: daemon");
        goto exit;
    }
    srv.base = event_base_new();
    if (srv.base == NULL || start_txn(&srv) != 0) {
        goto exit;
    }
    srv.n_workers = cfg.workers;
    srv.workers = calloc(cfg.workers, sizeof(*srv.workers));
    if (srv.workers == NULL) {
        goto exit;
    }
    for (unsigned i = 0; i < srv.n_workers; i++) {
        srv.workers[i].srv = &srv;
        srv.workers[i].index = i;
    }
    /* Workers inherit a mask without the stop signals: the accept loop alone receives them. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    for (unsigned i = 0; i < srv.n_workers; i++) {
        if (bs_worker_start(&srv.workers[i]) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            goto exit;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    srv.sig_term = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    srv.sig_int = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    if (srv.sig_term == NULL || srv.sig_int == NULL || evsignal_add(srv.sig_term, NULL) != 0 ||
        evsignal_add(srv.sig_int, NULL) != 0 || listen_on(&srv) != 0) {
        goto exit;
    }
    if (event_base_dispatch(srv.base) >= 0) {
        rc = 0;
    }
exit:
    atomic_store(&srv.stopping, 1);
    if (srv.lev != NULL) {
        evconnlistener_free(srv.lev); /* stop accepting first */
        srv.lev = NULL;
    }
    signal(SIGALRM, watchdog);
    alarm(BK_SHUTDOWN_GRACE_S);
    for (unsigned i = 0; srv.workers != NULL && i < srv.n_workers; i++) {
        bs_worker_stop(&srv.workers[i]);
    }
    for (unsigned i = 0; srv.workers != NULL && i < srv.n_workers; i++) {
        bs_worker_free(&srv.workers[i]);
    }
    mpos_bk_txn_stop(srv.txn);
    alarm(0);
    free(srv.workers);
    if (srv.sig_term != NULL) {
        event_free(srv.sig_term);
    }
    if (srv.sig_int != NULL) {
        event_free(srv.sig_int);
    }
    if (srv.base != NULL) {
        event_base_free(srv.base);
    }
    SSL_CTX_free(srv.outer);
    SSL_CTX_free(srv.inner);
    bs_tls_cleanup();
    bs_travel_free();
    bs_log("info", "stopped", 0, " status=%s", rc == 0 ? "ok" : "error");
    bs_config_free(&cfg);
    return rc;
}
