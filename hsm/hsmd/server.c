/* mpos-hsmd listener: one Unix socket per role on the main thread's event loop. Accepted
 * connections get their peer credentials (SO_PEERCRED) and go to the least loaded worker.
 * SIGTERM and SIGINT stop every loop; main() then wipes and exits. */
#include "hsmd.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Answers a connection that will not be served with one status frame, best effort. */
static void refuse_fd(int fd, int status)
{
    uint8_t frame[HSM_PROTO_PREFIX_LEN + HSM_PROTO_RESP_HEADER_LEN];
    size_t n = hsmd_error_frame(frame, sizeof(frame), 0, 0, status);
    if (send(fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        (void)0; /* the client went away: nothing to tell */
    }
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct hsmd_listener *l = arg;
    struct hsmd_server *s = l->srv;
    struct hsmd_handoff h = {fd, l->role, -1, (uid_t)-1, 0};
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    (void)lev;
    (void)sa;
    (void)socklen;
    h.conn = atomic_fetch_add(&s->conn_seq, 1) + 1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
        h.pid = cred.pid;
        h.uid = cred.uid;
    }
    if (atomic_load(&s->clients) >= s->cfg->max_clients) {
        refuse_fd(fd, HSM_STATUS_BUSY);
        hsmd_audit_line(&s->audit, l->role, h.pid, h.uid, h.conn, 0, "connect", NULL, NULL, "busy");
        close(fd);
        return;
    }
    /* Least loaded worker, ties broken round-robin. */
    unsigned best = s->next_worker++ % s->n_workers;
    for (unsigned i = 0; i < s->n_workers; i++) {
        if (atomic_load(&s->workers[i].n_sessions) < atomic_load(&s->workers[best].n_sessions)) {
            best = i;
        }
    }
    atomic_fetch_add(&s->clients, 1);
    atomic_fetch_add(&s->sessions, 1);
    if (hsmd_worker_hand(&s->workers[best], &h) != 0) {
        atomic_fetch_sub(&s->clients, 1);
        refuse_fd(fd, HSM_STATUS_INTERNAL);
        close(fd);
    }
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct hsmd_listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* Out of descriptors or memory: keep listening, the next accept may succeed. */
    fprintf(stderr, "mpos-hsmd: accept on the %s socket: %s\n", hsmd_role_name(l->role),
            strerror(err));
    (void)lev;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct hsmd_server *s = arg;
    (void)what;
    fprintf(stderr, "mpos-hsmd: signal %d: stopping\n", (int)sig);
    event_base_loopbreak(s->base);
}

/* Binds one role socket: stale socket removed, mode 0600, owned by the client's service user
 * (default: the user hsmd runs as after the drop). */
static int listen_role(struct hsmd_server *s, int role, int was_root)
{
    const char *path = s->cfg->socket[role];
    struct sockaddr_un sun;
    char dir[sizeof(sun.sun_path)];
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "mpos-hsmd: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(dir, path);
    if (hsmd_check_dir(dirname(dir)) != 0) {
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "mpos-hsmd: %s exists and is not a socket\n", path);
            return -1;
        }
        unlink(path);
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("mpos-hsmd: socket");
        return -1;
    }
    mode_t old = umask(0177); /* created 0600: never a moment with looser bits */
    int brc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    uid_t uid = (uid_t)(s->cfg->socket_uid[role] >= 0 ? s->cfg->socket_uid[role]
                        : was_root                    ? HSMD_SERVICE_ID
                                                      : geteuid());
    gid_t gid = (gid_t)(s->cfg->socket_gid[role] >= 0 ? s->cfg->socket_gid[role]
                        : was_root                    ? HSMD_SERVICE_ID
                                                      : getegid());
    if (brc != 0 || chmod(path, 0600) != 0 || (was_root && chown(path, uid, gid) != 0) ||
        listen(fd, 512) != 0) {
        fprintf(stderr, "mpos-hsmd: %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    struct hsmd_listener *l = &s->listeners[role];
    l->srv = s;
    l->role = role;
    l->lev = evconnlistener_new(s->base, on_accept, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (l->lev == NULL) {
        close(fd);
        return -1;
    }
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    return 0;
}

int hsmd_server_listen(struct hsmd_server *s, int was_root)
{
    s->base = event_base_new();
    if (s->base == NULL) {
        return -1;
    }
    for (int r = 0; r < HSMD_ROLES; r++) {
        if (s->cfg->socket[r] != NULL && listen_role(s, r, was_root) != 0) {
            return -1;
        }
    }
    s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
    if (s->sig_term == NULL || s->sig_int == NULL || evsignal_add(s->sig_term, NULL) != 0 ||
        evsignal_add(s->sig_int, NULL) != 0) {
        return -1;
    }
    return 0;
}

int hsmd_server_run(struct hsmd_server *s)
{
    /* Workers inherit a mask without the stop signals: the main loop alone receives them. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    for (unsigned i = 0; i < s->n_workers; i++) {
        if (hsmd_worker_start(&s->workers[i]) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    fprintf(stderr, "mpos-hsmd: ready (%u workers)\n", s->n_workers);
    return event_base_dispatch(s->base) < 0 ? -1 : 0;
}

void hsmd_server_shutdown(struct hsmd_server *s)
{
    for (int r = 0; r < HSMD_ROLES; r++) {
        if (s->listeners[r].lev != NULL) {
            evconnlistener_free(s->listeners[r].lev);
            s->listeners[r].lev = NULL;
            /* Best effort: the directory may not be ours to write after the drop. */
            (void)unlink(s->cfg->socket[r]);
        }
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        hsmd_worker_stop(&s->workers[i]);
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        hsmd_worker_free(&s->workers[i]);
    }
    if (s->sig_term != NULL) {
        event_free(s->sig_term);
    }
    if (s->sig_int != NULL) {
        event_free(s->sig_int);
    }
    if (s->base != NULL) {
        event_base_free(s->base);
    }
    s->base = NULL;
}
