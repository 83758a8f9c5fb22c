/* openmpos terminal core: the channel to the back end (chan.h). */
#include "chan.h"

#include <string.h>

#include "mpos/util.h"

static int digits_num(const char **p, uint32_t *v)
{
    const char *s = *p;
    uint32_t n = 0;
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        if (i >= 3) {
            return MPOS_ERR_FORMAT;
        }
        n = n * 10u + (uint32_t)(s[i] - '0');
        i++;
    }
    if (i == 0 || n > 255) {
        return MPOS_ERR_FORMAT;
    }
    *v = n;
    *p = s + i;
    return MPOS_OK;
}

int mpos_chan_firmware_number(const char *firmware, uint32_t *num)
{
    uint32_t part[3];
    const char *p = firmware;
    if (firmware == NULL || num == NULL) {
        return MPOS_ERR_ARG;
    }
    for (int i = 0; i < 3; i++) {
        if (digits_num(&p, &part[i]) != MPOS_OK) {
            return MPOS_ERR_FORMAT;
        }
        if (i < 2) {
            if (*p != '.') {
                return MPOS_ERR_FORMAT;
            }
            p++;
        }
    }
    if (*p != '\0' && *p != '-') {
        return MPOS_ERR_FORMAT;
    }
    *num = part[0] << 16 | part[1] << 8 | part[2];
    return MPOS_OK;
}

/* 1 when s fits a tunnel text field (NUL-terminated within cap). */
static int fits(const char *s, size_t cap)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0') {
        n++;
    }
    return n < cap;
}

int mpos_chan_init(mpos_chan *ch, const mpos_hal *hal, mpos_keystore *ks, mpos_params_store *params,
                   mpos_emv_params *emv, const mpos_hal_transport *transport,
                   const mpos_chan_config *cfg)
{
    mpos_tunnel_msg probe;
    size_t len = 0;
    if (ch == NULL || hal == NULL || ks == NULL || params == NULL || emv == NULL ||
        transport == NULL || cfg == NULL || hal->tls == NULL || hal->clock == NULL ||
        cfg->serial == NULL || cfg->firmware == NULL || cfg->server_name == NULL ||
        cfg->server_name[0] == '\0' || !fits(cfg->serial, sizeof(probe.serial)) ||
        !fits(cfg->firmware, sizeof(probe.firmware)) ||
        !fits(cfg->server_name, MPOS_HAL_SERVER_NAME_MAX + 1)) {
        return MPOS_ERR_ARG;
    }
    memset(ch, 0, sizeof(*ch));
    /* The HELLO must encode: checks serial and firmware by the tunnel's own rules. */
    mpos_tunnel_msg_init(&probe, MPOS_TUNNEL_HELLO);
    memcpy(probe.serial, cfg->serial, strlen(cfg->serial) + 1);
    memcpy(probe.firmware, cfg->firmware, strlen(cfg->firmware) + 1);
    if (mpos_tunnel_encode(&probe, ch->out, sizeof(ch->out), &len) != MPOS_OK ||
        mpos_chan_firmware_number(cfg->firmware, &ch->firmware_num) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    ch->hal = hal;
    ch->ks = ks;
    ch->params = params;
    ch->emv = emv;
    ch->transport = transport;
    ch->cfg = *cfg;
    if (ch->cfg.timeout_ms == 0) {
        ch->cfg.timeout_ms = MPOS_CHAN_TIMEOUT_MS;
    }
    mpos_tunnel_reader_init(&ch->rd);
    return MPOS_OK;
}

int mpos_chan_is_open(const mpos_chan *ch)
{
    return ch != NULL && ch->open;
}

uint8_t mpos_chan_status(const mpos_chan *ch)
{
    return ch != NULL ? ch->status : 0;
}

void mpos_chan_close(mpos_chan *ch)
{
    if (ch == NULL || ch->hal == NULL) {
        return;
    }
    /* Always close the port: a failed handshake leaves state there too. */
    ch->hal->tls->close(ch->hal->tls->ctx);
    ch->open = 0;
    ch->in_pos = ch->in_len = 0;
    mpos_tunnel_reader_init(&ch->rd);
    mpos_cleanse(ch->in, sizeof(ch->in));
}

static int send_msg(mpos_chan *ch, const mpos_tunnel_msg *m)
{
    size_t len = 0;
    int rc = mpos_tunnel_encode(m, ch->out, sizeof(ch->out), &len);
    if (rc != MPOS_OK) {
        return rc;
    }
    return ch->hal->tls->write(ch->hal->tls->ctx, ch->out, len);
}

/* Reads the next whole message into ch->msg within timeout_ms. A SEALED_RESP body points into
 * the reader and is valid until the next read. */
static int read_msg(mpos_chan *ch, uint32_t timeout_ms)
{
    uint64_t start = 0, now = 0;
    int rc;
    if (ch->hal->clock->monotonic_ms(ch->hal->clock->ctx, &start) != 0) {
        return MPOS_ERR_IO;
    }
    for (;;) {
        while (ch->in_pos < ch->in_len) {
            size_t used = 0;
            int got = 0;
            rc = mpos_tunnel_reader_feed(&ch->rd, ch->in + ch->in_pos, ch->in_len - ch->in_pos,
                                         &used);
            if (rc != MPOS_OK) {
                return MPOS_ERR_FORMAT;
            }
            ch->in_pos += used;
            rc = mpos_tunnel_reader_take(&ch->rd, &ch->msg, &got);
            if (rc != MPOS_OK) {
                return MPOS_ERR_FORMAT;
            }
            if (got) {
                return MPOS_OK;
            }
        }
        if (ch->hal->clock->monotonic_ms(ch->hal->clock->ctx, &now) != 0) {
            return MPOS_ERR_IO;
        }
        uint64_t spent = now - start;
        if (spent >= timeout_ms) {
            return MPOS_HAL_TIMEOUT;
        }
        ch->in_pos = ch->in_len = 0;
        rc = ch->hal->tls->read(ch->hal->tls->ctx, ch->in, sizeof(ch->in), &ch->in_len,
                                (uint32_t)(timeout_ms - spent));
        if (rc != MPOS_OK) {
            ch->in_len = 0;
            return rc;
        }
        if (ch->in_len == 0 || ch->in_len > sizeof(ch->in)) {
            ch->in_len = 0;
            return MPOS_ERR_IO;
        }
    }
}

/* The parameter anchor's public key (see chan.h). */
static int anchor_pub(mpos_chan *ch, uint8_t pub[MPOS_EC_P256_PUB_LEN])
{
    const uint8_t *ca = NULL, *param = NULL;
    size_t ca_len = 0, param_len = 0;
    int rc = mpos_keystore_trust(ch->ks, &ca, &ca_len, &param, &param_len);
    if (rc != MPOS_OK) {
        return rc;
    }
    return param_len > 0 ? mpos_params_anchor_key(param, param_len, pub)
                         : mpos_params_anchor_key(ca, ca_len, pub);
}

/* Verifies and applies the package of ch->msg. 0 (applied: emv changed), 1 (same or older:
 * kept the held one), or a negative error (nothing changed). */
static int apply_package(mpos_chan *ch)
{
    uint8_t pub[MPOS_EC_P256_PUB_LEN];
    int64_t now = 0;
    int rc = anchor_pub(ch, pub);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (ch->hal->clock->now(ch->hal->clock->ctx, &now) != 0) {
        now = MPOS_PARAMS_NO_CLOCK;
    }
    rc = mpos_params_verify_and_apply(ch->params, pub, ch->firmware_num, now, ch->msg.params,
                                      ch->msg.params_len, ch->emv);
    if (rc == MPOS_ERR_ROLLBACK) {
        return 1;
    }
    if (rc >= 0) {
        /* 0, or MPOS_PARAMS_FIRMWARE_TOO_OLD (held, AID list emptied): either way emv moved. */
        ch->params_changed = 1;
        return 0;
    }
    return rc;
}

static int fill_identity(mpos_chan *ch, mpos_tunnel_msg *m, enum mpos_tunnel_type type)
{
    mpos_tunnel_msg_init(m, type);
    memcpy(m->serial, ch->cfg.serial, strlen(ch->cfg.serial) + 1);
    memcpy(m->firmware, ch->cfg.firmware, strlen(ch->cfg.firmware) + 1);
    return MPOS_OK;
}

int mpos_chan_open(mpos_chan *ch)
{
    const uint8_t *cert = NULL, *ca = NULL, *param = NULL;
    size_t cert_len = 0, ca_len = 0, param_len = 0;
    mpos_tunnel_msg hello;
    int rc;
    if (ch == NULL || ch->hal == NULL) {
        return MPOS_ERR_ARG;
    }
    if (ch->open) {
        return MPOS_OK;
    }
    if (mpos_keystore_certificate(ch->ks, &cert, &cert_len) != MPOS_OK ||
        mpos_keystore_trust(ch->ks, &ca, &ca_len, &param, &param_len) != MPOS_OK) {
        return MPOS_ERR_STATE;
    }
    memset(&ch->tls_cfg, 0, sizeof(ch->tls_cfg));
    ch->tls_cfg.server_name = ch->cfg.server_name;
    ch->tls_cfg.ca_cert = ca;
    ch->tls_cfg.ca_cert_len = ca_len;
    ch->tls_cfg.client_cert = cert;
    ch->tls_cfg.client_cert_len = cert_len;
    ch->tls_cfg.sign = mpos_keystore_tls_sign;
    ch->tls_cfg.sign_ctx = ch->ks;
    ch->in_pos = ch->in_len = 0;
    mpos_tunnel_reader_init(&ch->rd);
    ch->opens++;
    rc = ch->hal->tls->open(ch->hal->tls->ctx, &ch->tls_cfg, ch->transport);
    if (rc != MPOS_OK) {
        goto fail;
    }
    (void)fill_identity(ch, &hello, MPOS_TUNNEL_HELLO);
    rc = send_msg(ch, &hello);
    if (rc != MPOS_OK) {
        goto fail;
    }
    rc = read_msg(ch, ch->cfg.timeout_ms);
    if (rc != MPOS_OK) {
        goto fail;
    }
    if (ch->msg.type == MPOS_TUNNEL_ERROR) {
        ch->status = ch->msg.status;
        rc = MPOS_ERR_STATE;
        goto fail;
    }
    if (ch->msg.type != MPOS_TUNNEL_HELLO_OK) {
        rc = MPOS_ERR_FORMAT;
        goto fail;
    }
    ch->status = ch->msg.status;
    ch->peer_activated = ch->msg.activated;
    if (ch->msg.status != MPOS_TUNNEL_ST_OK && ch->msg.status != MPOS_TUNNEL_ST_NOT_ACTIVATED) {
        rc = MPOS_ERR_STATE;
        goto fail;
    }
    ch->open = 1;
    if (ch->msg.activated == 1 && ch->msg.params_len > 0) {
        char mid[MPOS_KEYSTORE_MID_LEN + 1], tid[MPOS_KEYSTORE_TID_LEN + 1];
        /* Only a terminal that is activated takes the package of HELLO_OK; a bad package
         * keeps the held one and the tunnel (the transaction still works on what it has). */
        if (mpos_keystore_activation(ch->ks, mid, tid) == MPOS_OK) {
            (void)apply_package(ch);
        }
    }
    return MPOS_OK;
fail:
    mpos_chan_close(ch);
    return rc;
}

int mpos_chan_activate(mpos_chan *ch, const char *code)
{
    char mid[MPOS_KEYSTORE_MID_LEN + 1], tid[MPOS_KEYSTORE_TID_LEN + 1];
    mpos_tunnel_msg req;
    int rc;
    if (ch == NULL || ch->hal == NULL || code == NULL || !fits(code, sizeof(req.code))) {
        return MPOS_ERR_ARG;
    }
    if (mpos_keystore_activation(ch->ks, mid, tid) == MPOS_OK) {
        return MPOS_ERR_STATE;
    }
    (void)fill_identity(ch, &req, MPOS_TUNNEL_ACTIVATE);
    memcpy(req.code, code, strlen(code) + 1);
    /* Checked before the tunnel is opened: a bad code costs no handshake. */
    if (mpos_tunnel_encode(&req, ch->out, sizeof(ch->out), &(size_t){0}) != MPOS_OK) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_chan_open(ch);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = send_msg(ch, &req);
    if (rc != MPOS_OK) {
        mpos_chan_close(ch);
        return rc;
    }
    rc = read_msg(ch, ch->cfg.timeout_ms);
    if (rc != MPOS_OK) {
        mpos_chan_close(ch);
        return rc;
    }
    if (ch->msg.type == MPOS_TUNNEL_ERROR) {
        ch->status = ch->msg.status;
        return MPOS_CHAN_REFUSED;
    }
    if (ch->msg.type != MPOS_TUNNEL_ACTIVATE_OK) {
        mpos_chan_close(ch);
        return MPOS_ERR_FORMAT;
    }
    ch->status = ch->msg.status;
    if (ch->msg.status != MPOS_TUNNEL_ST_OK) {
        return MPOS_CHAN_REFUSED;
    }
    /* The package first: an activation whose parameters do not verify is no activation. */
    rc = apply_package(ch);
    if (rc < 0) {
        return rc;
    }
    return mpos_keystore_set_activation(ch->ks, ch->msg.merchant_id, ch->msg.terminal_id);
}

static int net_send(void *ctx, const uint8_t *msg, size_t len)
{
    mpos_chan *ch = ctx;
    mpos_tunnel_msg m;
    int rc = mpos_chan_open(ch);
    if (rc != MPOS_OK) {
        return rc;
    }
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_SEALED);
    m.body = msg;
    m.body_len = len;
    rc = send_msg(ch, &m);
    if (rc != MPOS_OK) {
        mpos_chan_close(ch);
    }
    return rc;
}

static int net_recv(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    mpos_chan *ch = ctx;
    int rc;
    *len = 0;
    if (!ch->open) {
        return MPOS_HAL_CLOSED;
    }
    rc = read_msg(ch, timeout_ms);
    if (rc != MPOS_OK) {
        /* A timeout closes too: a late answer must never be taken for the next request's. */
        mpos_chan_close(ch);
        return rc;
    }
    if (ch->msg.type == MPOS_TUNNEL_ERROR) {
        ch->status = ch->msg.status;
        return MPOS_ERR_STATE;
    }
    if (ch->msg.type != MPOS_TUNNEL_SEALED_RESP || ch->msg.body_len > cap) {
        mpos_chan_close(ch);
        return MPOS_ERR_FORMAT;
    }
    memcpy(buf, ch->msg.body, ch->msg.body_len);
    *len = ch->msg.body_len;
    return MPOS_OK;
}

void mpos_chan_net(mpos_chan *ch, mpos_txn_net *net)
{
    net->ctx = ch;
    net->send = net_send;
    net->recv = net_recv;
}
