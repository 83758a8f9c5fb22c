/* Unit tests: terminal/core/chan against an in-memory TLS port (hal.h mpos_hal_tls) whose far
 * end is a fake back end built from lib/tunnel: HELLO / HELLO_OK, activation with a signed
 * parameter package (the real params and key store modules over in-memory storage), packages
 * in HELLO_OK (newer applied, equal kept), refusals, and the transaction machine's net
 * (SEALED / SEALED_RESP, ERROR, timeouts, a closed tunnel, protocol violations), with the
 * back end's bytes delivered in chunks of every size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chan.h"
#include "mem_storage.h"
#include "mpos/ecc.h"
#include "mpos/tunnel.h"
#include "mpos/util.h"
#include "testutil.h"

#define ISSUED   1767225600 /* 2026-01-01 */
#define FIRMWARE "1.2.3-test"
#define SERIAL   "SN-CHAN-1"
#define MID      "MERCHANT0000042"
#define TID      "TERM0042"
#define CODE     "GOOD-CODE-1"

/* ---- the fake back end ------------------------------------------------------------------ */

enum be_mode {
    BE_NORMAL = 0,
    BE_SILENT,        /* answers nothing */
    BE_ERROR,         /* answers SEALED with ERROR 6 */
    BE_WRONG_TYPE,    /* answers SEALED with HELLO_OK */
    BE_GARBAGE,       /* answers with a bad header */
    BE_CLOSE,         /* closes (close_notify) instead of answering */
    BE_REFUSE,        /* HELLO_OK status 4 */
    BE_HELLO_ERROR,   /* ERROR 4 to HELLO */
    BE_ROGUE_PACKAGE, /* packages signed by a key the anchor did not endorse */
    BE_LATE           /* answers SEALED only after the terminal's timeout */
};

struct backend {
    enum be_mode mode;
    int activated; /* the back end's record of this terminal */
    uint32_t pkg_version;
    mpos_tunnel_reader rd;
    mpos_tunnel_msg msg, ans;
    uint8_t q[3 * MPOS_TUNNEL_MAX_MSG]; /* bytes towards the terminal */
    size_t q_head, q_tail;
    int peer_closed;
    int hellos, activates, sealed;
    char last_serial[40], last_firmware[40], last_code[40];
    uint8_t last_sealed[MPOS_TUNNEL_MAX_BODY];
    size_t last_sealed_len;
    uint8_t late[MPOS_TUNNEL_MAX_MSG];
    size_t late_len;
};

static struct backend be;
static mpos_crypto_ctx cc;
static uint8_t anchor_priv[32], anchor_pub[65], signer_priv[32], signer_pub[65];
static uint8_t rogue_priv[32], rogue_pub[65];
static uint8_t endorsement[256];
static size_t endorsement_len;

static int sign_with(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

static size_t make_pkg(uint32_t version, const uint8_t *sign_priv, uint8_t *out)
{
    static const char *aids[3] = {"A000000333010101", "A000000333010102", "A000000333010103"};
    mpos_params p;
    size_t len = 0;
    memset(&p, 0, sizeof(p));
    p.version = version;
    p.issued = ISSUED;
    p.min_firmware = 0x00010000;
    p.country[0] = 0x01;
    p.country[1] = 0x56;
    p.currency[0] = 0x01;
    p.currency[1] = 0x56;
    p.currency_exponent = 2;
    for (size_t i = 0; i < 3; i++) {
        mpos_params_aid *a = &p.aids[i];
        a->aid_len = tu_hex(aids[i], a->aid, sizeof(a->aid));
        a->app_version[1] = 0x30;
        tu_hex("0010000000", a->tac_denial, 5);
        tu_hex("D84004F800", a->tac_online, 5);
        tu_hex("D84000A800", a->tac_default, 5);
        a->floor_limit = (uint32_t)(100 * (i + 1) + version);
    }
    p.aid_count = 3;
    assert_int_equal(mpos_params_build(&p, endorsement, endorsement_len, sign_with,
                                       (void *)sign_priv, out, MPOS_PARAMS_MAX_LEN, &len),
                     MPOS_OK);
    return len;
}

static void be_push(const mpos_tunnel_msg *m)
{
    size_t len = 0;
    assert_int_equal(mpos_tunnel_encode(m, be.q + be.q_tail, sizeof(be.q) - be.q_tail, &len),
                     MPOS_OK);
    be.q_tail += len;
}

static void be_fill_activation(mpos_tunnel_msg *m)
{
    strcpy(m->merchant_id, MID);
    strcpy(m->terminal_id, TID);
    m->params_len =
        make_pkg(be.pkg_version, be.mode == BE_ROGUE_PACKAGE ? rogue_priv : signer_priv, m->params);
}

static void be_handle(void)
{
    mpos_tunnel_msg *a = &be.ans;
    switch (be.msg.type) {
    case MPOS_TUNNEL_HELLO:
        be.hellos++;
        strcpy(be.last_serial, be.msg.serial);
        strcpy(be.last_firmware, be.msg.firmware);
        if (be.mode == BE_HELLO_ERROR) {
            mpos_tunnel_msg_init(a, MPOS_TUNNEL_ERROR);
            a->status = MPOS_TUNNEL_ST_TERMINAL_REFUSED;
        } else {
            mpos_tunnel_msg_init(a, MPOS_TUNNEL_HELLO_OK);
            a->status = be.mode == BE_REFUSE ? MPOS_TUNNEL_ST_TERMINAL_REFUSED
                        : be.activated       ? MPOS_TUNNEL_ST_OK
                                             : MPOS_TUNNEL_ST_NOT_ACTIVATED;
            a->activated = (uint8_t)be.activated;
            if (be.activated && be.mode != BE_REFUSE) {
                be_fill_activation(a);
            }
        }
        be_push(a);
        break;
    case MPOS_TUNNEL_ACTIVATE:
        be.activates++;
        strcpy(be.last_code, be.msg.code);
        mpos_tunnel_msg_init(a, MPOS_TUNNEL_ACTIVATE_OK);
        if (strcmp(be.msg.code, CODE) != 0) {
            a->status = MPOS_TUNNEL_ST_CODE_WRONG;
        } else {
            be.activated = 1;
            be_fill_activation(a);
        }
        be_push(a);
        break;
    case MPOS_TUNNEL_SEALED:
        be.sealed++;
        memcpy(be.last_sealed, be.msg.body, be.msg.body_len);
        be.last_sealed_len = be.msg.body_len;
        if (be.mode == BE_SILENT) {
            break;
        }
        if (be.mode == BE_CLOSE) {
            be.peer_closed = 1;
            break;
        }
        if (be.mode == BE_GARBAGE) {
            static const uint8_t g[] = {0x44, 0xFF, 0xFF, 0x00};
            memcpy(be.q + be.q_tail, g, sizeof(g));
            be.q_tail += sizeof(g);
            break;
        }
        if (be.mode == BE_ERROR) {
            mpos_tunnel_msg_init(a, MPOS_TUNNEL_ERROR);
            a->status = MPOS_TUNNEL_ST_REFUSED;
        } else if (be.mode == BE_WRONG_TYPE) {
            mpos_tunnel_msg_init(a, MPOS_TUNNEL_HELLO_OK);
        } else {
            /* The answer: the request's bytes reversed (the test checks them). */
            static uint8_t rev[MPOS_TUNNEL_MAX_BODY];
            for (size_t i = 0; i < be.msg.body_len; i++) {
                rev[i] = be.msg.body[be.msg.body_len - 1 - i];
            }
            mpos_tunnel_msg_init(a, MPOS_TUNNEL_SEALED_RESP);
            a->body = rev;
            a->body_len = be.msg.body_len;
        }
        if (be.mode == BE_LATE) {
            assert_int_equal(mpos_tunnel_encode(a, be.late, sizeof(be.late), &be.late_len),
                             MPOS_OK);
            break;
        }
        be_push(a);
        break;
    default:
        fail_msg("unexpected message %02X from the terminal", be.msg.type);
    }
}

/* ---- the in-memory TLS port and clock --------------------------------------------------- */

struct fake_tls {
    int open;
    int opens, closes;
    int fail_open; /* MPOS_ERR_VERIFY etc. */
    size_t chunk;  /* bytes per read */
    const mpos_hal_tls_config *cfg;
    const mpos_hal_transport *transport;
};

static struct fake_tls ftls;
static uint64_t mono_ms;

static int tls_open(void *ctx, const mpos_hal_tls_config *cfg, const mpos_hal_transport *tr)
{
    (void)ctx;
    assert_false(ftls.open);
    ftls.opens++;
    ftls.cfg = cfg;
    ftls.transport = tr;
    if (ftls.fail_open != 0) {
        return ftls.fail_open;
    }
    ftls.open = 1;
    /* A new connection: the back end's per-connection state starts over. */
    mpos_tunnel_reader_init(&be.rd);
    be.q_head = be.q_tail = 0;
    be.peer_closed = 0;
    return MPOS_OK;
}

static int tls_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (!ftls.open) {
        return MPOS_ERR_STATE;
    }
    while (len > 0) {
        size_t used = 0;
        int got = 0;
        assert_int_equal(mpos_tunnel_reader_feed(&be.rd, data, len, &used), MPOS_OK);
        data += used;
        len -= used;
        assert_int_equal(mpos_tunnel_reader_take(&be.rd, &be.msg, &got), MPOS_OK);
        if (got) {
            be_handle();
        }
    }
    return MPOS_OK;
}

static int tls_read(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    (void)ctx;
    *len = 0;
    if (!ftls.open) {
        return MPOS_ERR_STATE;
    }
    if (be.q_head == be.q_tail) {
        if (be.peer_closed) {
            return MPOS_HAL_CLOSED;
        }
        mono_ms += timeout_ms; /* nothing came: the whole timeout passes */
        if (be.late_len > 0) {
            /* The late answer arrives after the terminal gave up. */
            memcpy(be.q + be.q_tail, be.late, be.late_len);
            be.q_tail += be.late_len;
            be.late_len = 0;
        }
        return MPOS_HAL_TIMEOUT;
    }
    size_t n = be.q_tail - be.q_head;
    if (n > ftls.chunk) {
        n = ftls.chunk;
    }
    if (n > cap) {
        n = cap;
    }
    memcpy(buf, be.q + be.q_head, n);
    be.q_head += n;
    *len = n;
    mono_ms += 1;
    return MPOS_OK;
}

static void tls_close(void *ctx)
{
    (void)ctx;
    if (ftls.open) {
        ftls.closes++;
    }
    ftls.open = 0;
}

static int clock_now(void *ctx, int64_t *t)
{
    (void)ctx;
    *t = ISSUED + 3600;
    return 0;
}

static int clock_mono(void *ctx, uint64_t *ms)
{
    (void)ctx;
    *ms = mono_ms;
    return 0;
}

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}

static int tr_send(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)d;
    (void)n;
    return MPOS_ERR_IO; /* the fake TLS port never uses the transport */
}

static int tr_recv(void *ctx, uint8_t *b, size_t cap, size_t *n, uint32_t t)
{
    (void)ctx;
    (void)b;
    (void)cap;
    (void)t;
    *n = 0;
    return MPOS_ERR_IO;
}

/* ---- fixture ---------------------------------------------------------------------------- */

struct fixture {
    mem_storage mem;
    mpos_hal_storage storage;
    mpos_hal_rng rng;
    mpos_hal_clock clock;
    mpos_hal_tls tls;
    mpos_hal hal;
    mpos_hal_transport transport;
    mpos_keystore ks;
    mpos_params_store params;
    mpos_emv_params emv;
    mpos_chan ch;
    uint8_t cert[200];
    size_t cert_len;
};

static struct fixture *fx;

static void reopen_stores(void)
{
    mpos_keystore_close(&fx->ks);
    mpos_params_close(&fx->params);
    assert_int_equal(mpos_keystore_open(&fx->ks, &fx->storage, &fx->rng, &cc), MPOS_OK);
    int rc = mpos_params_open(&fx->params, &fx->storage, &fx->rng, &cc, 0x00010203, &fx->emv);
    assert_true(rc == MPOS_OK || rc == MPOS_PARAMS_NONE);
}

static int setup(void **state)
{
    (void)state;
    uint8_t pub[65];
    mpos_params_endorsement e;
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return -1;
    }
    memset(&be, 0, sizeof(be));
    memset(&ftls, 0, sizeof(ftls));
    ftls.chunk = 100000;
    be.pkg_version = 1;
    mono_ms = 1000;
    mem_storage_init(&fx->mem, 7);
    mem_storage_bind(&fx->mem, &fx->storage);
    fx->rng.random = test_random;
    fx->clock.now = clock_now;
    fx->clock.monotonic_ms = clock_mono;
    fx->tls.open = tls_open;
    fx->tls.write = tls_write;
    fx->tls.read = tls_read;
    fx->tls.close = tls_close;
    fx->hal.storage = &fx->storage;
    fx->hal.rng = &fx->rng;
    fx->hal.clock = &fx->clock;
    fx->hal.tls = &fx->tls;
    fx->transport.send = tr_send;
    fx->transport.recv = tr_recv;
    mpos_emv_params_default(&fx->emv);
    fx->emv.aid_count = 1; /* an applied package (3 AIDs) is visible */
    if (mpos_keystore_open(&fx->ks, &fx->storage, &fx->rng, &cc) != MPOS_OK ||
        mpos_keystore_generate_device_key(&fx->ks, pub) != MPOS_OK) {
        return -1;
    }
    /* A "certificate" that carries the device key (all the key store checks). */
    memcpy(fx->cert, "\x30\x81\x80", 3);
    memcpy(fx->cert + 3, pub, 65);
    fx->cert_len = 3 + 65 + 10;
    if (mpos_keystore_set_certificate(&fx->ks, fx->cert, fx->cert_len) != MPOS_OK ||
        mpos_keystore_set_trust(&fx->ks, (const uint8_t *)"CA-DER", 6, anchor_pub, 65) != MPOS_OK) {
        return -1;
    }
    if (mpos_params_open(&fx->params, &fx->storage, &fx->rng, &cc, 0x00010203, &fx->emv) !=
        MPOS_PARAMS_NONE) {
        return -1;
    }
    memset(&e, 0, sizeof(e));
    e.usage = MPOS_PARAMS_USAGE;
    e.not_before = ISSUED - 86400;
    e.not_after = ISSUED + 86400 * 365;
    memcpy(e.pub, signer_pub, 65);
    if (mpos_params_endorsement_build(&e, sign_with, anchor_priv, endorsement, sizeof(endorsement),
                                      &endorsement_len) != MPOS_OK) {
        return -1;
    }
    mpos_chan_config cfg = {SERIAL, FIRMWARE, "mpos-backend", 5000};
    if (mpos_chan_init(&fx->ch, &fx->hal, &fx->ks, &fx->params, &fx->emv, &fx->transport, &cfg) !=
        MPOS_OK) {
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mpos_chan_close(&fx->ch);
    mpos_keystore_close(&fx->ks);
    mpos_params_close(&fx->params);
    free(fx);
    return 0;
}

static void activate_ok(void)
{
    assert_int_equal(mpos_chan_activate(&fx->ch, CODE), MPOS_OK);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_firmware_number(void **state)
{
    (void)state;
    uint32_t n = 0;
    assert_int_equal(mpos_chan_firmware_number("1.2.3-test", &n), MPOS_OK);
    assert_int_equal(n, 0x00010203);
    assert_int_equal(mpos_chan_firmware_number("0.1.0-sim", &n), MPOS_OK);
    assert_int_equal(n, 0x00000100);
    assert_int_equal(mpos_chan_firmware_number("255.255.255", &n), MPOS_OK);
    assert_int_equal(n, 0x00FFFFFF);
    assert_int_equal(mpos_chan_firmware_number("256.0.0", &n), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_chan_firmware_number("1.2", &n), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_chan_firmware_number("1.2.3x", &n), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_chan_firmware_number("1.2.0003", &n), MPOS_ERR_FORMAT);
}

static void test_init_refuses(void **state)
{
    (void)state;
    mpos_chan ch;
    mpos_chan_config cfg = {SERIAL, "1.2", "mpos-backend", 0};
    assert_int_equal(
        mpos_chan_init(&ch, &fx->hal, &fx->ks, &fx->params, &fx->emv, &fx->transport, &cfg),
        MPOS_ERR_ARG);
    cfg.firmware = FIRMWARE;
    cfg.server_name = "";
    assert_int_equal(
        mpos_chan_init(&ch, &fx->hal, &fx->ks, &fx->params, &fx->emv, &fx->transport, &cfg),
        MPOS_ERR_ARG);
    cfg.server_name = "x";
    cfg.serial = "";
    assert_int_equal(
        mpos_chan_init(&ch, &fx->hal, &fx->ks, &fx->params, &fx->emv, &fx->transport, &cfg),
        MPOS_ERR_ARG);
}

static void test_open_hello(void **state)
{
    (void)state;
    const uint8_t *cert = NULL;
    size_t cert_len = 0;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_true(mpos_chan_is_open(&fx->ch));
    assert_int_equal(mpos_chan_status(&fx->ch), MPOS_TUNNEL_ST_NOT_ACTIVATED);
    assert_int_equal(be.hellos, 1);
    assert_string_equal(be.last_serial, SERIAL);
    assert_string_equal(be.last_firmware, FIRMWARE);
    /* The TLS configuration: the key store's certificate, CA and sign callback. */
    assert_int_equal(mpos_keystore_certificate(&fx->ks, &cert, &cert_len), MPOS_OK);
    assert_ptr_equal(ftls.cfg->client_cert, cert);
    assert_int_equal(ftls.cfg->client_cert_len, cert_len);
    assert_int_equal(ftls.cfg->ca_cert_len, 6);
    assert_memory_equal(ftls.cfg->ca_cert, "CA-DER", 6);
    assert_string_equal(ftls.cfg->server_name, "mpos-backend");
    assert_ptr_equal(ftls.cfg->sign, mpos_keystore_tls_sign);
    assert_ptr_equal(ftls.cfg->sign_ctx, &fx->ks);
    assert_ptr_equal(ftls.transport, &fx->transport);
    /* Open again: nothing new. */
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_int_equal(ftls.opens, 1);
    assert_int_equal(be.hellos, 1);
    /* The sign callback signs with the device key. */
    uint8_t sig[64], pub[65];
    assert_int_equal(ftls.cfg->sign(ftls.cfg->sign_ctx, (const uint8_t *)"abc", 3, sig), 0);
    assert_int_equal(mpos_keystore_device_public(&fx->ks, pub), MPOS_OK);
    assert_int_equal(mpos_ecdsa_p256_verify(pub, (const uint8_t *)"abc", 3, sig), MPOS_OK);
    mpos_chan_close(&fx->ch);
    assert_false(mpos_chan_is_open(&fx->ch));
    assert_int_equal(ftls.closes, 1);
}

static void test_activate(void **state)
{
    (void)state;
    char mid[16], tid[9];
    const mpos_params *p = NULL;
    assert_int_equal(fx->emv.aid_count, 1);
    for (size_t chunk = 1; chunk <= 4096; chunk = chunk * 3 + 1) {
        /* Wrong code first: refused, nothing changed, the tunnel stays. */
        ftls.chunk = chunk;
        assert_int_equal(mpos_chan_activate(&fx->ch, "BAD-CODE"), MPOS_CHAN_REFUSED);
        assert_int_equal(mpos_chan_status(&fx->ch), MPOS_TUNNEL_ST_CODE_WRONG);
        assert_int_equal(mpos_keystore_activation(&fx->ks, mid, tid), MPOS_ERR_STATE);
        assert_true(mpos_chan_is_open(&fx->ch));
        mpos_chan_close(&fx->ch);
    }
    ftls.chunk = 5;
    activate_ok();
    assert_string_equal(be.last_code, CODE);
    assert_int_equal(mpos_keystore_activation(&fx->ks, mid, tid), MPOS_OK);
    assert_string_equal(mid, MID);
    assert_string_equal(tid, TID);
    assert_int_equal(fx->emv.aid_count, 3);
    assert_true(fx->ch.params_changed);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_OK);
    assert_int_equal(p->version, 1);
    /* Persisted: both survive a restart. */
    reopen_stores();
    assert_int_equal(mpos_keystore_activation(&fx->ks, mid, tid), MPOS_OK);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_OK);
    /* Once only. */
    assert_int_equal(mpos_chan_activate(&fx->ch, CODE), MPOS_ERR_STATE);
    /* A code the tunnel cannot carry is refused before any handshake. */
    mpos_chan_close(&fx->ch);
    assert_int_equal(mpos_keystore_deactivate(&fx->ks), MPOS_OK);
    int opens = ftls.opens;
    assert_int_equal(mpos_chan_activate(&fx->ch, "AB"), MPOS_ERR_ARG);
    assert_int_equal(mpos_chan_activate(&fx->ch, "AB_CD"), MPOS_ERR_ARG);
    assert_int_equal(ftls.opens, opens);
}

static void test_activate_bad_package(void **state)
{
    (void)state;
    char mid[16], tid[9];
    const mpos_params *p = NULL;
    be.mode = BE_ROGUE_PACKAGE;
    assert_int_equal(mpos_chan_activate(&fx->ch, CODE), MPOS_ERR_VERIFY);
    /* Not activated, no package, the kernel's parameters untouched. */
    assert_int_equal(mpos_keystore_activation(&fx->ks, mid, tid), MPOS_ERR_STATE);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_PARAMS_NONE);
    assert_int_equal(fx->emv.aid_count, 1);
}

static void test_hello_packages(void **state)
{
    (void)state;
    const mpos_params *p = NULL;
    activate_ok();
    mpos_chan_close(&fx->ch);
    fx->ch.params_changed = 0;
    /* Same version in HELLO_OK: kept, no error. */
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_int_equal(mpos_chan_status(&fx->ch), MPOS_TUNNEL_ST_OK);
    assert_false(fx->ch.params_changed);
    mpos_chan_close(&fx->ch);
    /* Newer: applied. */
    be.pkg_version = 2;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_true(fx->ch.params_changed);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_OK);
    assert_int_equal(p->version, 2);
    assert_int_equal(fx->emv.floor_limit, 102); /* the lowest AID floor limit of version 2 */
    mpos_chan_close(&fx->ch);
    /* Newer but not authentic: ignored, the tunnel is up, version 2 held. */
    be.pkg_version = 3;
    be.mode = BE_ROGUE_PACKAGE;
    fx->ch.params_changed = 0;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_false(fx->ch.params_changed);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_OK);
    assert_int_equal(p->version, 2);
}

/* An unactivated terminal ignores the package of a back end that thinks it is activated. */
static void test_hello_package_needs_activation(void **state)
{
    (void)state;
    const mpos_params *p = NULL;
    be.activated = 1;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK);
    assert_false(fx->ch.params_changed);
    assert_int_equal(mpos_params_current(&fx->params, &p, NULL), MPOS_PARAMS_NONE);
}

static void test_refused(void **state)
{
    (void)state;
    be.mode = BE_REFUSE;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_ERR_STATE);
    assert_int_equal(mpos_chan_status(&fx->ch), MPOS_TUNNEL_ST_TERMINAL_REFUSED);
    assert_false(mpos_chan_is_open(&fx->ch));
    assert_false(ftls.open);
    be.mode = BE_HELLO_ERROR;
    assert_int_equal(mpos_chan_activate(&fx->ch, CODE), MPOS_ERR_STATE);
    assert_false(ftls.open);
    /* TLS failures come through and leave it closed. */
    be.mode = BE_NORMAL;
    ftls.fail_open = MPOS_ERR_VERIFY;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_ERR_VERIFY);
    assert_false(mpos_chan_is_open(&fx->ch));
    /* The back end says nothing: timeout. */
    ftls.fail_open = 0;
    be.mode = BE_SILENT;
    be.hellos = 0;
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_OK); /* HELLO is answered even when silent */
    mpos_chan_close(&fx->ch);
}

static void test_no_identity(void **state)
{
    (void)state;
    /* A factory-reset key store has no certificate: no tunnel, no handshake. */
    assert_int_equal(mpos_keystore_factory_reset(&fx->ks, &fx->storage, &fx->rng, &cc), MPOS_OK);
    assert_int_equal(mpos_chan_open(&fx->ch), MPOS_ERR_STATE);
    assert_int_equal(ftls.opens, 0);
}

static void test_net(void **state)
{
    (void)state;
    mpos_txn_net net;
    uint8_t req[3000], resp[3000];
    size_t len = 0;
    for (size_t i = 0; i < sizeof(req); i++) {
        req[i] = (uint8_t)(i * 31 + 7);
    }
    activate_ok();
    mpos_chan_close(&fx->ch);
    mpos_chan_net(&fx->ch, &net);
    assert_ptr_equal(net.ctx, &fx->ch);
    static const size_t chunks[] = {1, 2, 13, 700, 100000};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        ftls.chunk = chunks[c];
        size_t n = 200 + 500 * c;
        assert_int_equal(net.send(net.ctx, req, n), 0);
        assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), 0);
        assert_int_equal(len, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(resp[i], req[n - 1 - i]);
        }
        assert_int_equal(be.last_sealed_len, n);
        assert_memory_equal(be.last_sealed, req, n);
    }
    /* One tunnel for all of them (opened by the first send). */
    assert_int_equal(ftls.opens, 1 + 1);
    assert_int_equal(be.sealed, 5);
}

static void test_net_failures(void **state)
{
    (void)state;
    mpos_txn_net net;
    uint8_t req[64] = {1, 2, 3}, resp[64];
    size_t len = 9;
    activate_ok();
    mpos_chan_net(&fx->ch, &net);
    int opens = ftls.opens;

    /* ERROR: no response, the tunnel stays. */
    be.mode = BE_ERROR;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_ERR_STATE);
    assert_int_equal(len, 0);
    assert_int_equal(mpos_chan_status(&fx->ch), MPOS_TUNNEL_ST_REFUSED);
    assert_true(mpos_chan_is_open(&fx->ch));

    /* Silence: timeout after the time given, the tunnel closes. */
    be.mode = BE_SILENT;
    uint64_t t0 = mono_ms;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1500), MPOS_HAL_TIMEOUT);
    assert_true(mono_ms - t0 >= 1500);
    assert_false(mpos_chan_is_open(&fx->ch));
    /* recv without a tunnel: closed. */
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_HAL_CLOSED);

    /* A late answer is never taken for the next request's: the tunnel was closed. */
    be.mode = BE_LATE;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_HAL_TIMEOUT);
    be.mode = BE_NORMAL;
    req[0] = 0x77;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), 0);
    assert_int_equal(resp[63], 0x77);

    /* The peer closes: closed. */
    be.mode = BE_CLOSE;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_HAL_CLOSED);
    assert_false(mpos_chan_is_open(&fx->ch));

    /* Wrong message type, garbage framing: refused, the tunnel closes. */
    be.mode = BE_WRONG_TYPE;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_ERR_FORMAT);
    assert_false(mpos_chan_is_open(&fx->ch));
    be.mode = BE_GARBAGE;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, sizeof(resp), &len, 1000), MPOS_ERR_FORMAT);
    assert_false(mpos_chan_is_open(&fx->ch));

    /* A response longer than the buffer: refused. */
    be.mode = BE_NORMAL;
    assert_int_equal(net.send(net.ctx, req, sizeof(req)), 0);
    assert_int_equal(net.recv(net.ctx, resp, 10, &len, 1000), MPOS_ERR_FORMAT);

    /* Each failure above that closed it cost a new handshake (and a new HELLO). */
    assert_true(ftls.opens > opens + 4);
    assert_int_equal(be.hellos, ftls.opens);

    /* A send that cannot open the tunnel fails. */
    mpos_chan_close(&fx->ch);
    ftls.fail_open = MPOS_ERR_IO;
    assert_int_not_equal(net.send(net.ctx, req, sizeof(req)), 0);
}

int main(void)
{
    if (mpos_crypto_init(&cc) != MPOS_OK || mpos_ec_p256_generate(anchor_priv, anchor_pub) ||
        mpos_ec_p256_generate(signer_priv, signer_pub) ||
        mpos_ec_p256_generate(rogue_priv, rogue_pub)) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_firmware_number),
        cmocka_unit_test_setup_teardown(test_init_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activate_bad_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_packages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_package_needs_activation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_failures, setup, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    mpos_crypto_clear(&cc);
    return r;
}
