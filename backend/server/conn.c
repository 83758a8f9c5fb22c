/* mpos-backend: one host connection (docs/system-design.md 1): outer TLS on a
 * bufferevent_openssl, frames, the envelope, host sessions, and dispatch to the inner TLS.
 *
 * Limits (B-SEC-1, DoS): a frame longer than 65536 closes the connection at once (its length
 * prefix is enough to know); the input buffer never holds more than one largest frame plus a
 * header (read watermark); the TLS handshake and every frame must complete within
 * BK_FRAME_TIMEOUT_S; a connection silent for [server] idle_timeout_s is closed.
 */
#include "server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpos/crypto.h"
#include "mpos/util.h"

struct bs_conn {
    struct bs_worker *w;
    struct bs_conn *next, *prev;
    uint64_t id;
    char peer[64];
    struct bufferevent *bev;
    SSL *ssl;
    struct event *frame_timer, *close_ev;
    int closing, close_tries;
    int handshaken;
    /* host session */
    int logged_in;
    struct bs_session sess;
    uint8_t token[32];
    uint8_t env_key[32];
    uint64_t last_counter;
    struct bs_envelope env;
    /* TXN_BEGIN */
    int has_intent;
    uint8_t intent_type;
    uint64_t intent_amount;
    uint16_t intent_currency;
    char intent_ref[33];
    struct bs_inner *inner;
};

static const struct timeval frame_tv = {BK_FRAME_TIMEOUT_S, 0};

size_t bs_conns_quiesce(struct bs_worker *w)
{
    size_t pending = 0;
    for (struct bs_conn *c = w->conns; c != NULL; c = c->next) {
        bufferevent_disable(c->bev, EV_READ);
        pending += evbuffer_get_length(bufferevent_get_output(c->bev));
    }
    return pending;
}

struct bs_worker *bs_conn_worker(struct bs_conn *c)
{
    return c->w;
}

uint64_t bs_conn_view_id(struct bs_conn *c)
{
    return c->id;
}

void bs_conn_view(struct bs_conn *c, struct bs_conn_view *v)
{
    v->id = c->id;
    v->sess = c->logged_in ? &c->sess : NULL;
    v->env = &c->env;
    v->peer = c->peer;
    v->has_intent = &c->has_intent;
    v->intent_type = &c->intent_type;
    v->intent_amount = &c->intent_amount;
    v->intent_currency = &c->intent_currency;
    v->intent_ref = c->intent_ref;
}

void bs_conn_free(struct bs_conn *c)
{
    struct bs_worker *w = c->w;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else if (w->conns == c) {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->frame_timer != NULL) {
        event_free(c->frame_timer);
    }
    if (c->close_ev != NULL) {
        event_free(c->close_ev);
    }
    if (c->bev != NULL) {
        bufferevent_free(c->bev); /* frees the SSL and closes the socket */
    }
    bs_inner_free(c->inner);
    bs_log("info", "disconnected", c->id, " peer=%s", c->peer);
    atomic_fetch_sub(&w->n_conns, 1);
    atomic_fetch_sub(&w->srv->clients, 1);
    mpos_cleanse(c, sizeof(*c)); /* token and envelope key */
    free(c);
}

/* Closes once what was queued (an ERROR) has gone out, never from inside a callback chain
 * that still uses c: the close event runs from the loop. */
static void on_close_ev(evutil_socket_t fd, short what, void *arg)
{
    struct bs_conn *c = arg;
    (void)fd;
    (void)what;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 || ++c->close_tries > 40) {
        bs_conn_free(c);
        return;
    }
    struct timeval tv = {0, 50000};
    event_add(c->close_ev, &tv);
}

static void conn_close(struct bs_conn *c, const char *reason)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    bs_log("info", "closing", c->id, " reason=%s", reason);
    bufferevent_disable(c->bev, EV_READ);
    struct timeval tv = {0, 0};
    event_add(c->close_ev, &tv);
}

/* Starts a frame to the host in buf. An error (a buffer too small) sticks in the writer, like
 * those of the puts after it: send_frame() reports it and sends nothing. */
static void frame_init(mpos_hostmsg_writer *o, uint8_t *buf, size_t cap, uint8_t type)
{
    if (mpos_hostmsg_writer_init(o, buf, cap, type) != MPOS_OK) {
        return; /* o->err holds it */
    }
}

static void send_frame(struct bs_conn *c, mpos_hostmsg_writer *o)
{
    size_t n = 0;
    int rc = mpos_hostmsg_finish(o, &n);
    if (rc != MPOS_OK) {
        /* Too long, or a value the codec refuses (e.g. a masked-pan not in the first 6 /
         * last 4 form): nothing goes out. */
        bs_log("error", rc == MPOS_ERR_LENGTH ? "frame_too_long" : "frame_refused", c->id, " rc=%d",
               rc);
        return;
    }
    if (bufferevent_write(c->bev, o->buf, n) != 0) {
        conn_close(c, "write_failed");
    }
    mpos_cleanse(o->buf, n);
}

void bs_conn_send_error(struct bs_conn *c, int code, const char *message)
{
    uint8_t buf[300];
    mpos_hostmsg_writer o;
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_ERROR);
    mpos_hostmsg_put_u16(&o, MPOS_HM_ERROR, (uint16_t)code);
    mpos_hostmsg_put_text(&o, MPOS_HM_MESSAGE, message);
    send_frame(c, &o);
}

void bs_conn_send_tunnel(struct bs_conn *c, const uint8_t *data, size_t len)
{
    uint8_t buf[BK_FRAME_CAP(BK_TUNNEL_CHUNK)];
    while (len > 0) {
        size_t n = len > BK_TUNNEL_CHUNK ? BK_TUNNEL_CHUNK : len;
        mpos_hostmsg_writer o;
        frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_TUNNEL_DOWN);
        mpos_hostmsg_put(&o, MPOS_HM_DATA, data, n);
        send_frame(c, &o);
        data += n;
        len -= n;
    }
}

void bs_conn_send_txn_result(struct bs_conn *c, const mpos_bk_txn_outcome *r)
{
    uint8_t buf[512];
    mpos_hostmsg_writer o;
    size_t pl = strlen(r->masked_pan);
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_TXN_RESULT);
    size_t ml = strnlen(r->merchant_id, sizeof(r->merchant_id));
    if (ml >= 1 && ml <= 15) {
        char mid[16];
        snprintf(mid, sizeof(mid), "%-15.15s", r->merchant_id); /* DE 42: ans 15, padded */
        mpos_hostmsg_put_text(&o, MPOS_HM_MERCHANT_ID, mid);
    }
    if (strlen(r->terminal_id) == 8) {
        mpos_hostmsg_put_text(&o, MPOS_HM_TERMINAL_ID, r->terminal_id);
    }
    mpos_hostmsg_put_u8(&o, MPOS_HM_TXN_TYPE, r->txn_type);
    mpos_hostmsg_put_u64(&o, MPOS_HM_AMOUNT, r->amount);
    mpos_hostmsg_put_u16(&o, MPOS_HM_CURRENCY, r->currency);
    if (pl >= 12 && pl <= 19) {
        mpos_hostmsg_put_text(&o, MPOS_HM_MASKED_PAN, r->masked_pan); /* first 6 / last 4 only */
    }
    mpos_hostmsg_put_text(&o, MPOS_HM_RESPONSE_CODE, r->response_code);
    mpos_hostmsg_put_text(&o, MPOS_HM_AUTH_CODE, r->auth_code);
    mpos_hostmsg_put_text(&o, MPOS_HM_RRN, r->rrn);
    mpos_hostmsg_put_u32(&o, MPOS_HM_SEQUENCE, r->sequence);
    send_frame(c, &o);
}

static const char *role_name(int role)
{
    return role == MPOS_ROLE_SUPERVISOR ? "supervisor" : "cashier";
}

/* Impossible travel of the operator (1.3): logged always; 1 when the message is declined. */
static int travel(struct bs_conn *c, uint8_t type)
{
    char who[64], u[40], m[20];
    snprintf(who, sizeof(who), "op:%s/%s", c->sess.merchant, c->sess.username);
    if (!bs_travel_check(who, &c->env, c->w->srv->cfg->max_speed_kmh)) {
        return 0;
    }
    bs_log("warn", "alert", c->id, " alert=impossible_travel merchant=%s user=%s peer=%s",
           bs_log_safe(c->sess.merchant, m, sizeof(m)), bs_log_safe(c->sess.username, u, sizeof(u)),
           c->peer);
    return c->w->srv->cfg->decline_impossible_travel && type != MPOS_HOSTMSG_LOGOUT &&
           type != MPOS_HOSTMSG_TUNNEL;
}

static void envelope_refused(struct bs_conn *c, int code, const char *why, uint8_t type)
{
    bs_log("warn", code == MPOS_HMERR_INTEGRITY ? "integrity_refused" : "envelope_refused", c->id,
           " type=0x%02X reason=%s peer=%s", type, why, c->peer);
    bs_conn_send_error(c, code, code == MPOS_HMERR_INTEGRITY ? "integrity" : "envelope");
}

static void do_login(struct bs_conn *c, const mpos_hostmsg *m)
{
    const struct bs_config *cfg = c->w->srv->cfg;
    char merchant[16], username[33], password[129], sm[20], su[40];
    uint8_t key[32], token[32];
    const char *why = NULL;
    enum mpos_operator_role role = MPOS_ROLE_CASHIER;
    int rc;
    password[0] = '\0';
    if (!mpos_hostmsg_has(m, MPOS_HM_MERCHANT) || !mpos_hostmsg_has(m, MPOS_HM_USERNAME) ||
        !mpos_hostmsg_has(m, MPOS_HM_PASSWORD)) {
        /* A LOGIN without its own fields: the envelope may still be fine, the request not. */
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    if (bs_login_key(c->ssl, key) != 0) {
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    rc = bs_envelope_check(cfg, m, key, &c->last_counter, &c->env, &why);
    MPOS_WIPE_BUFFER(key);
    if (rc != 0) {
        envelope_refused(c, rc, why, m->type);
        return;
    }
    /* The parser checked the lengths (merchant 1..15, username 1..32, password 1..128): each
     * fits its buffer. */
    const uint8_t *pw = NULL;
    size_t pw_len = 0;
    if (mpos_hostmsg_get_text(m, MPOS_HM_MERCHANT, merchant, sizeof(merchant)) != MPOS_OK ||
        mpos_hostmsg_get_text(m, MPOS_HM_USERNAME, username, sizeof(username)) != MPOS_OK ||
        mpos_hostmsg_get(m, MPOS_HM_PASSWORD, &pw, &pw_len) != MPOS_OK ||
        pw_len >= sizeof(password)) {
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    memcpy(password, pw, pw_len);
    password[pw_len] = '\0';
    if (memchr(pw, 0, pw_len) != NULL) {
        rc = MPOS_STORE_DENIED; /* an embedded NUL would shorten what is checked */
    } else {
        rc = mpos_store_operator_verify(c->w->store, merchant, username, password,
                                        (int64_t)time(NULL), &role);
    }
    MPOS_WIPE_BUFFER(password);
    bs_log_safe(merchant, sm, sizeof(sm));
    bs_log_safe(username, su, sizeof(su));
    if (rc != 0) {
        int code = rc == MPOS_STORE_LOCKED ? MPOS_HMERR_LOCKED
                   : rc == MPOS_STORE_DENIED || rc == MPOS_STORE_DISABLED
                       ? MPOS_HMERR_BAD_CREDENTIALS
                       : MPOS_HMERR_INTERNAL;
        bs_log("warn", "login_failed", c->id, " merchant=%s user=%s peer=%s reason=%s", sm, su,
               c->peer,
               code == MPOS_HMERR_LOCKED     ? "locked"
               : code == MPOS_HMERR_INTERNAL ? "store"
                                             : "credentials");
        bs_conn_send_error(c, code,
                           code == MPOS_HMERR_LOCKED            ? "locked"
                           : code == MPOS_HMERR_BAD_CREDENTIALS ? "bad-credentials"
                                                                : "internal");
        return;
    }
    struct bs_session s;
    memset(&s, 0, sizeof(s));
    /* The store keeps merchant IDs in uppercase and usernames in lowercase. */
    for (size_t i = 0; merchant[i] != '\0'; i++) {
        s.merchant[i] = merchant[i];
    }
    for (size_t i = 0; username[i] != '\0'; i++) {
        char ch = username[i];
        s.username[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    s.role = (int)role;
    memcpy(s.device_id, c->env.device_id, 32);
    s.expires = (int64_t)time(NULL) + cfg->session_ttl_s;
    snprintf(s.source, sizeof(s.source), "%s", c->peer);
    if (mpos_random_bytes(token, sizeof(token)) != MPOS_OK ||
        bs_session_create(c->w->store, token, &s) != 0 ||
        bs_session_key(c->ssl, token, c->env_key) != 0) {
        MPOS_WIPE_BUFFER(token);
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    memcpy(c->token, token, 32);
    c->sess = s;
    c->logged_in = 1;
    c->has_intent = 0;
    int declined = travel(c, m->type);
    bs_log("info", "login", c->id, " merchant=%s user=%s role=%s peer=%s lat_e7=%d lon_e7=%d", sm,
           su, role_name(s.role), c->peer, c->env.lat_e7, c->env.lon_e7);
    if (declined) {
        bs_session_revoke(c->w->store, token);
        MPOS_WIPE_BUFFER(token);
        c->logged_in = 0;
        bs_conn_send_error(c, MPOS_HMERR_INTEGRITY, "impossible travel");
        return;
    }
    uint8_t buf[128];
    mpos_hostmsg_writer o;
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_LOGIN_OK);
    mpos_hostmsg_put(&o, MPOS_HM_SESSION_TOKEN, token, 32);
    mpos_hostmsg_put_text(&o, MPOS_HM_ROLE, role_name(s.role));
    mpos_hostmsg_put_u64(&o, MPOS_HM_EXPIRES, (uint64_t)s.expires);
    send_frame(c, &o);
    MPOS_WIPE_BUFFER(token);
}

static void do_resume(struct bs_conn *c, const mpos_hostmsg *m)
{
    const struct bs_config *cfg = c->w->srv->cfg;
    uint8_t key[32], token[32];
    const char *why = NULL;
    struct bs_session s;
    int rc;
    const uint8_t *tv = NULL;
    size_t tl = 0;
    if (mpos_hostmsg_get(m, MPOS_HM_SESSION_TOKEN, &tv, &tl) != MPOS_OK || tl != sizeof(token)) {
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    memcpy(token, tv, sizeof(token));
    if (bs_session_key(c->ssl, token, key) != 0) {
        MPOS_WIPE_BUFFER(token);
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    /* The MAC first: a forged RESUME learns nothing about which tokens exist. */
    rc = bs_envelope_check(cfg, m, key, &c->last_counter, &c->env, &why);
    if (rc != 0) {
        MPOS_WIPE_BUFFER(key);
        MPOS_WIPE_BUFFER(token);
        envelope_refused(c, rc, why, m->type);
        return;
    }
    rc = bs_session_lookup(c->w->store, token, (int64_t)time(NULL), &s);
    if (rc == 0 && !mpos_ct_equal(s.device_id, c->env.device_id, 32)) {
        rc = BK_SESSION_NOT_FOUND; /* a session is bound to the device it logged in from */
        bs_log("warn", "resume_device_mismatch", c->id, " peer=%s", c->peer);
    }
    if (rc != 0) {
        MPOS_WIPE_BUFFER(key);
        MPOS_WIPE_BUFFER(token);
        bs_log("warn", "resume_failed", c->id, " peer=%s reason=%s", c->peer,
               rc == BK_SESSION_EXPIRED ? "expired" : "unknown");
        bs_conn_send_error(
            c, rc == BK_SESSION_EXPIRED ? MPOS_HMERR_SESSION_EXPIRED : MPOS_HMERR_NOT_LOGGED_IN,
            rc == BK_SESSION_EXPIRED ? "session-expired" : "not-logged-in");
        return;
    }
    memcpy(c->token, token, 32);
    memcpy(c->env_key, key, 32);
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(token);
    c->sess = s;
    c->logged_in = 1;
    char sm[20], su[40];
    bs_log("info", "resume", c->id, " merchant=%s user=%s role=%s peer=%s",
           bs_log_safe(s.merchant, sm, sizeof(sm)), bs_log_safe(s.username, su, sizeof(su)),
           role_name(s.role), c->peer);
    if (travel(c, m->type)) {
        c->logged_in = 0;
        bs_conn_send_error(c, MPOS_HMERR_INTEGRITY, "impossible travel");
        return;
    }
    uint8_t buf[128];
    mpos_hostmsg_writer o;
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_RESUME_OK);
    mpos_hostmsg_put_text(&o, MPOS_HM_ROLE, role_name(s.role));
    mpos_hostmsg_put_u64(&o, MPOS_HM_EXPIRES, (uint64_t)s.expires);
    mpos_hostmsg_put_text(&o, MPOS_HM_MERCHANT, s.merchant);
    send_frame(c, &o);
}

static void do_txn_begin(struct bs_conn *c, const mpos_hostmsg *m)
{
    uint8_t type = 0;
    uint64_t amount = 0;
    uint16_t currency = 0;
    if (mpos_hostmsg_get_u8(m, MPOS_HM_TXN_TYPE, &type) != MPOS_OK ||
        mpos_hostmsg_get_u64(m, MPOS_HM_AMOUNT, &amount) != MPOS_OK ||
        mpos_hostmsg_get_u16(m, MPOS_HM_CURRENCY, &currency) != MPOS_OK) {
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    int needs_ref = type == 2 || type == 3;
    if (type < 1 || type > 4 || (needs_ref && !mpos_hostmsg_has(m, MPOS_HM_REFERENCE)) ||
        currency == 0 || currency > 999 || amount > 999999999999ull) {
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    /* A-OPER-1, least privilege: cashiers sell and ask balances; voids and refunds are the
     * supervisor's. */
    if (c->sess.role != MPOS_ROLE_SUPERVISOR && type != 1 && type != 4) {
        bs_log("warn", "forbidden", c->id, " what=txn_begin txn_type=%u role=%s", type,
               role_name(c->sess.role));
        bs_conn_send_error(c, MPOS_HMERR_FORBIDDEN, "forbidden");
        return;
    }
    char ref[33] = "";
    /* Optional (sale, balance); its length 1..32 was checked by the parser. */
    if (mpos_hostmsg_has(m, MPOS_HM_REFERENCE) &&
        mpos_hostmsg_get_text(m, MPOS_HM_REFERENCE, ref, sizeof(ref)) != MPOS_OK) {
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    if (needs_ref) {
        /* Void and refund by reference: the original (this merchant's approved sale, found
         * by RRN in the journal) fixes the currency, and for a void the amount (the host may
         * send 0: the operator gave only the RRN); a refund may not exceed it. */
        uint64_t orig_amount = 0;
        uint16_t orig_currency = 0;
        int state = MPOS_BK_ORIG_NOT_FOUND;
        int rc = mpos_bk_txn_lookup(c->w->srv->txn, c->sess.merchant, ref, &orig_amount,
                                    &orig_currency, &state);
        const char *why = rc != 0                              ? "internal"
                          : state == MPOS_BK_ORIG_NOT_FOUND    ? "original-not-found"
                          : state == MPOS_BK_ORIG_NOT_APPROVED ? "original-not-approved"
                          : state == MPOS_BK_ORIG_VOIDED       ? "original-already-voided"
                          : type == 2 && amount != 0 && amount != orig_amount ? "amount-differs"
                          : type == 3 && (amount == 0 || amount > orig_amount)
                              ? "refund-above-original"
                              : NULL;
        if (why != NULL) {
            char sr[40];
            bs_log("warn", "txn_begin_refused", c->id, " txn_type=%u ref=%s reason=%s", type,
                   bs_log_safe(ref, sr, sizeof(sr)), why);
            bs_conn_send_error(c, rc != 0 ? MPOS_HMERR_INTERNAL : MPOS_HMERR_BAD_REQUEST, why);
            return;
        }
        if (type == 2) {
            amount = orig_amount;
        }
        currency = orig_currency;
    }
    c->has_intent = 1;
    c->intent_type = type;
    c->intent_amount = amount;
    c->intent_currency = currency;
    memcpy(c->intent_ref, ref, sizeof(c->intent_ref));
    bs_log("info", "txn_begin", c->id, " txn_type=%u amount=%llu currency=%u", type,
           (unsigned long long)amount, currency);
    uint8_t buf[64];
    mpos_hostmsg_writer o;
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_TXN_OK);
    if (needs_ref) {
        /* What the terminal must show and the operator confirm (START_TXN). */
        mpos_hostmsg_put_u64(&o, MPOS_HM_AMOUNT, amount);
        mpos_hostmsg_put_u16(&o, MPOS_HM_CURRENCY, currency);
    }
    send_frame(c, &o);
}

static void do_settle(struct bs_conn *c)
{
    if (c->sess.role != MPOS_ROLE_SUPERVISOR) {
        bs_log("warn", "forbidden", c->id, " what=settle role=%s", role_name(c->sess.role));
        bs_conn_send_error(c, MPOS_HMERR_FORBIDDEN, "forbidden");
        return;
    }
    char *t = malloc(16001);
    if (t == NULL) {
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    t[0] = '\0';
    int rc = mpos_bk_txn_settle(c->w->srv->txn, c->sess.merchant, t, 16001);
    char sm[20];
    bs_log(rc == 0 ? "info" : "error", "settle", c->id, " merchant=%s rc=%d",
           bs_log_safe(c->sess.merchant, sm, sizeof(sm)), rc);
    if (rc != 0) {
        free(t);
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    uint8_t *buf = malloc(BK_FRAME_CAP(16000));
    if (buf == NULL) {
        free(t);
        bs_conn_send_error(c, MPOS_HMERR_INTERNAL, "internal");
        return;
    }
    mpos_hostmsg_writer o;
    size_t tl = strnlen(t, 16000);
    frame_init(&o, buf, BK_FRAME_CAP(16000), MPOS_HOSTMSG_SETTLE_OK);
    mpos_hostmsg_put(&o, MPOS_HM_TEXT, t, tl);
    send_frame(c, &o);
    free(buf);
    free(t);
}

static void do_logout(struct bs_conn *c)
{
    bs_session_revoke(c->w->store, c->token);
    MPOS_WIPE_BUFFER(c->token);
    MPOS_WIPE_BUFFER(c->env_key);
    c->logged_in = 0;
    c->has_intent = 0;
    bs_log("info", "logout", c->id, NULL);
    uint8_t buf[16];
    mpos_hostmsg_writer o;
    frame_init(&o, buf, sizeof(buf), MPOS_HOSTMSG_LOGOUT_OK);
    send_frame(c, &o);
}

static void handle_frame(struct bs_conn *c, const uint8_t *msg, size_t len)
{
    mpos_hostmsg m;
    const char *why = NULL;
    if (bs_msg_parse(&m, msg, len) != 0) {
        bs_log("warn", "bad_request", c->id, " type=0x%02X peer=%s", msg[0], c->peer);
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        return;
    }
    if (m.type == MPOS_HOSTMSG_LOGIN) {
        do_login(c, &m);
        return;
    }
    if (m.type == MPOS_HOSTMSG_RESUME) {
        do_resume(c, &m);
        return;
    }
    if (!c->logged_in) {
        bs_conn_send_error(c, MPOS_HMERR_NOT_LOGGED_IN, "not-logged-in");
        return;
    }
    int rc = bs_envelope_check(c->w->srv->cfg, &m, c->env_key, &c->last_counter, &c->env, &why);
    if (rc != 0) {
        envelope_refused(c, rc, why, m.type);
        return;
    }
    if (!mpos_ct_equal(c->env.device_id, c->sess.device_id, 32)) {
        envelope_refused(c, MPOS_HMERR_ENVELOPE, "device", m.type);
        return;
    }
    if ((int64_t)time(NULL) >= c->sess.expires) {
        bs_session_revoke(c->w->store, c->token);
        c->logged_in = 0;
        bs_conn_send_error(c, MPOS_HMERR_SESSION_EXPIRED, "session-expired");
        return;
    }
    if (travel(c, m.type)) {
        bs_conn_send_error(c, MPOS_HMERR_INTEGRITY, "impossible travel");
        return;
    }
    switch (m.type) {
    case MPOS_HOSTMSG_TUNNEL: {
        const uint8_t *data = NULL;
        size_t data_len = 0;
        if (mpos_hostmsg_get(&m, MPOS_HM_DATA, &data, &data_len) != MPOS_OK) {
            bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
            return;
        }
        bs_inner_feed(c->inner, c, data, data_len);
        break;
    }
    case MPOS_HOSTMSG_TXN_BEGIN:
        do_txn_begin(c, &m);
        break;
    case MPOS_HOSTMSG_SETTLE:
        do_settle(c);
        break;
    case MPOS_HOSTMSG_LOGOUT:
        do_logout(c);
        break;
    default:
        bs_conn_send_error(c, MPOS_HMERR_BAD_REQUEST, "bad-request");
        break;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct bs_conn *c = arg;
    struct bs_worker *w = c->w;
    struct evbuffer *in = bufferevent_get_input(bev);
    int consumed = 0;
    while (!c->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[4];
        if (avail < 4) {
            break;
        }
        if (evbuffer_copyout(in, hdr, 4) != 4) {
            break;
        }
        uint32_t n = mpos_load_be32(hdr);
        if (n == 0 || n > MPOS_HOSTMSG_MAX_LEN) {
            /* 1.1: larger (or empty) frames close the connection; nothing else is read. */
            bs_log("warn", "oversize_frame", c->id, " length=%lu peer=%s", (unsigned long)n,
                   c->peer);
            bs_conn_free(c);
            return;
        }
        if (avail < 4 + (size_t)n) {
            break;
        }
        if (evbuffer_remove(in, w->frame, 4 + (size_t)n) != (int)(4 + n)) {
            bs_conn_free(c);
            return;
        }
        consumed = 1;
        handle_frame(c, w->frame + 4, n);
        mpos_cleanse(w->frame, 4 + (size_t)n); /* passwords, tunnel bytes */
    }
    if (c->closing) {
        return;
    }
    if (consumed) {
        evtimer_del(c->frame_timer);
    }
    if (evbuffer_get_length(in) > 0 && !evtimer_pending(c->frame_timer, NULL)) {
        evtimer_add(c->frame_timer, &frame_tv); /* the rest of this frame: 10 s */
    }
}

static void on_frame_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct bs_conn *c = arg;
    (void)fd;
    (void)what;
    bs_log("warn", c->handshaken ? "frame_timeout" : "handshake_timeout", c->id, " peer=%s",
           c->peer);
    bs_conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct bs_conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshaken = 1;
        evtimer_del(c->frame_timer);
        bs_log("info", "tls_established", c->id, " peer=%s version=%s resumed=%d", c->peer,
               SSL_get_version(c->ssl), SSL_session_reused(c->ssl));
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        bs_log("info", "idle_timeout", c->id, " peer=%s", c->peer);
    } else if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        bs_log("info", c->handshaken ? "tls_error" : "handshake_failed", c->id,
               " peer=%s ssl_error=%lu", c->peer, e);
    }
    ERR_clear_error();
    bs_conn_free(c);
}

struct bs_conn *bs_conn_new(struct bs_worker *w, const struct bs_handoff *h)
{
    struct bs_conn *c = calloc(1, sizeof(*c));
    SSL *ssl = NULL;
    if (c == NULL || (c->inner = bs_inner_new()) == NULL ||
        (ssl = SSL_new(w->srv->outer)) == NULL) {
        goto fail;
    }
    c->w = w;
    c->id = h->conn;
    snprintf(c->peer, sizeof(c->peer), "%s", h->peer);
    c->ssl = ssl;
    c->bev = bufferevent_openssl_socket_new(w->dw.base, h->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        goto fail;
    }
    ssl = NULL; /* the bufferevent owns it */
    c->frame_timer = evtimer_new(w->dw.base, on_frame_timeout, c);
    c->close_ev = evtimer_new(w->dw.base, on_close_ev, c);
    if (c->frame_timer == NULL || c->close_ev == NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        goto fail_closed;
    }
    struct timeval idle = {(time_t)w->srv->cfg->idle_timeout_s, 0};
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 4 + MPOS_HOSTMSG_MAX_LEN + 1);
    bufferevent_set_timeouts(c->bev, &idle, NULL);
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
        goto fail_closed_bev;
    }
    evtimer_add(c->frame_timer, &frame_tv); /* the handshake too must finish in time */
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    atomic_fetch_add(&w->n_conns, 1);
    bs_log("info", "connected", c->id, " peer=%s worker=%u", c->peer, w->index);
    return c;
fail_closed_bev:
    bufferevent_free(c->bev);
    c->bev = NULL;
fail_closed:
    if (c->frame_timer != NULL) {
        event_free(c->frame_timer);
    }
    if (c->close_ev != NULL) {
        event_free(c->close_ev);
    }
    bs_inner_free(c->inner);
    free(c);
    return NULL;
fail:
    SSL_free(ssl);
    if (c != NULL) {
        bs_inner_free(c->inner);
        free(c);
    }
    close(h->fd);
    bs_log("error", "connection_setup_failed", h->conn, NULL);
    return NULL;
}
