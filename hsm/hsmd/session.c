/* mpos-hsmd session: one client connection on a worker's loop.
 *
 * States: READING (waiting for a whole frame: prefix, then body) and CLOSING (a refusal is
 * being flushed; nothing more is read). A frame is served as soon as it is complete; several
 * pipelined frames in the buffer are served in order. Backpressure: the input buffer holds at
 * most one frame of the largest allowed size (libevent stops reading beyond it), and a client
 * whose replies pile up beyond HSMD_OUT_HIGH_WATER is not read from until it catches up. An
 * idle timeout (read and write) closes a silent or stalled client. */
#include "hsmd.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/util.h"

enum session_state { SESSION_READING, SESSION_CLOSING };

struct hsmd_session {
    struct hsmd_worker *w;
    struct hsmd_session *prev, *next;
    struct bufferevent *bev;
    enum session_state state;
    int role;
    pid_t pid;
    uid_t uid;
    uint64_t conn;
    int paused; /* reading stopped by backpressure */
};

static void audit(struct hsmd_session *s, uint32_t id, const char *cmd, const char *kcvs,
                  const char *note, const char *result)
{
    hsmd_audit_line(&s->w->srv->audit, s->role, s->pid, s->uid, s->conn, id, cmd, kcvs, note,
                    result);
}

void hsmd_session_free(struct hsmd_session *s)
{
    struct hsmd_worker *w = s->w;
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        w->sessions = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    bufferevent_free(s->bev); /* closes the socket */
    atomic_fetch_sub(&w->n_sessions, 1);
    atomic_fetch_sub(&w->srv->clients, 1);
    free(s);
}

/* Sends a refusal that ends the connection: nothing more is read, the socket closes once the
 * frame is flushed. */
static void refuse_and_close(struct hsmd_session *s, uint16_t command, uint32_t id, int status)
{
    uint8_t frame[HSM_PROTO_PREFIX_LEN + HSM_PROTO_RESP_HEADER_LEN];
    size_t n = hsmd_error_frame(frame, sizeof(frame), command, id, status);
    s->state = SESSION_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_write(s->bev, frame, n);
    atomic_fetch_add(&s->w->srv->refused, 1);
}

/* Serves one complete request body. */
static void serve(struct hsmd_session *s, const uint8_t *body, size_t len)
{
    struct hsmd_worker *w = s->w;
    struct hsmd_server *srv = w->srv;
    hsm_msg req;
    size_t out_len = 0;
    int status = hsm_proto_decode_request(body, len, &req);
    const char *name = req.cmd != NULL ? req.cmd->name : "-";
    struct hsmd_call call = {w, s->role, "", ""};
    if (status == HSM_STATUS_OK) {
        uint64_t bit = (uint64_t)1 << hsm_proto_command_index(req.cmd);
        status = (srv->cfg->allow[s->role] & bit) == 0
                     ? HSM_STATUS_DENIED
                     : hsmd_dispatch(&call, &req, w->out, w->out_cap, &out_len);
    }
    if (status != HSM_STATUS_OK) {
        out_len = hsmd_error_frame(w->out, w->out_cap, req.header_ok ? req.command : 0,
                                   req.header_ok ? req.request_id : 0, status);
    }
    bufferevent_write(s->bev, w->out, out_len);
    mpos_cleanse(w->out, out_len);
    if (status == HSM_STATUS_OK || status == HSM_STATUS_VERIFY) {
        atomic_fetch_add(&srv->commands, 1);
    } else {
        atomic_fetch_add(&srv->refused, 1);
    }
    audit(s, req.request_id, name, call.kcvs, call.note, hsm_status_name(status));
}

/* Serves every complete frame in the input buffer, then applies backpressure. */
static void process(struct hsmd_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct evbuffer *out = bufferevent_get_output(s->bev);
    const size_t max = s->w->srv->cfg->max_request;
    while (s->state == SESSION_READING) {
        uint8_t prefix[HSM_PROTO_PREFIX_LEN];
        size_t body_len = 0;
        if (evbuffer_get_length(out) > HSMD_OUT_HIGH_WATER) {
            bufferevent_disable(s->bev, EV_READ);
            s->paused = 1;
            return;
        }
        if (evbuffer_copyout(in, prefix, sizeof(prefix)) < (ev_ssize_t)sizeof(prefix)) {
            return;
        }
        int st = hsm_proto_frame_len(prefix, HSM_PROTO_REQ_HEADER_LEN, max, &body_len);
        if (st != HSM_STATUS_OK) {
            /* The frame boundary is lost (or the client oversteps): answer and close. */
            audit(s, 0, "-", NULL, NULL, hsm_status_name(st));
            refuse_and_close(s, 0, 0, st);
            return;
        }
        if (evbuffer_get_length(in) < HSM_PROTO_PREFIX_LEN + body_len) {
            return;
        }
        uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(HSM_PROTO_PREFIX_LEN + body_len));
        if (frame == NULL) {
            refuse_and_close(s, 0, 0, HSM_STATUS_INTERNAL);
            return;
        }
        serve(s, frame + HSM_PROTO_PREFIX_LEN, body_len);
        /* Requests carry PIN blocks and card data (encrypted): wipe the copy we held. */
        mpos_cleanse(frame, HSM_PROTO_PREFIX_LEN + body_len);
        evbuffer_drain(in, HSM_PROTO_PREFIX_LEN + body_len);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct hsmd_session *s = arg;
    (void)bev;
    if (s->state == SESSION_CLOSING) {
        hsmd_session_free(s);
        return;
    }
    if (s->paused) {
        s->paused = 0;
        bufferevent_enable(s->bev, EV_READ);
        process(s); /* frames that arrived while paused are already buffered */
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct hsmd_session *s = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        audit(s, 0, "-", NULL, NULL, "idle-timeout");
    } else if (what & BEV_EVENT_EOF) {
        if (evbuffer_get_length(bufferevent_get_input(s->bev)) != 0) {
            audit(s, 0, "-", NULL, NULL, "truncated");
        }
    } else if (what & BEV_EVENT_ERROR) {
        audit(s, 0, "-", NULL, NULL, "socket-error");
    }
    hsmd_session_free(s);
}

struct hsmd_session *hsmd_session_new(struct hsmd_worker *w, const struct hsmd_handoff *h)
{
    struct hsmd_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->bev = bufferevent_socket_new(w->dw.base, h->fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        free(s);
        return NULL;
    }
    s->w = w;
    s->role = h->role;
    s->pid = h->pid;
    s->uid = h->uid;
    s->conn = h->conn;
    s->state = SESSION_READING;
    s->next = w->sessions;
    if (w->sessions != NULL) {
        w->sessions->prev = s;
    }
    w->sessions = s;
    atomic_fetch_add(&w->n_sessions, 1);
    struct timeval idle = {(time_t)w->srv->cfg->idle_timeout, 0};
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, HSM_PROTO_PREFIX_LEN + w->srv->cfg->max_request);
    bufferevent_set_timeouts(s->bev, &idle, &idle);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    audit(s, 0, "connect", NULL, NULL, "ok");
    return s;
}
