/* mpos_bk_txn against a real mpos-hsmd (the hsmd test harness) and an independent ISO 8583
 * peer (iso_peer.py, Python), with sealed requests made by the terminal's own code from the
 * DUKPT state of a known BDK. The tests run in order and share one environment:
 * approve (chip + PIN: DE 52, DE 55, DE 62 upstream, MACs checked by the peer), decline 51,
 * replay and forged MAC refused without moving the counter, a retry answered from the
 * journal without a second upstream request, checks (57, 12), upstream timeout -> 91 and a
 * reversal forwarded when the peer answers again after a restart of the processor, a
 * terminal reversal, void and refund with DE 90 (25 for an unknown original), balance,
 * settlement totals, and a scan of the database files for the PAN. */
#define _GNU_SOURCE /* setenv, usleep, mkdtemp, kill */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bk_txn.h"
#include "harness.h"
#include "mpos/activation.h"
#include "mpos/dukpt.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/store.h"
#include "mpos/util.h"
#include "sealed_testkit.h"
#include "txn/sealed.h"

#define BDK_HEX  "FEDCBA9876543210F1F1F1F1F1F1F1F1"
#define ZAK_HEX  "0123456789ABCDEFFEDCBA9876543210"
#define ZPK_HEX  "89ABCDEF0123456776543210FEDCBA98"
#define ZEK_HEX  "C1C1C1C1C1C1C1C1A2A2A2A2A2A2A2A2"
#define PAN      "6212094482246349"
#define PIN      "1234"
#define MERCHANT "123456789012345"
#define SERIAL   "TERM-0001"
#define CERT     "AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12"
#define LAT_E7   488566000
#define LON_E7   23522000

static struct hsmd_harness H;
static mpos_crypto_ctx cc;
static char dir[64], db[128], port_file[128], log_file[128], ctl_file[128];
static pid_t peer_pid = -1;
static int peer_port;
static mpos_bk_txn *proc;
static struct stk_term term; /* the terminal (sealed_testkit.h) */
static char tid[9];
static uint32_t next_seq = 1;
static uint8_t device_id[32];

/* ---- environment ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int count_in_log(const char *needle)
{
    char line[4096];
    int n = 0;
    FILE *f = fopen(log_file, "r");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, needle) != NULL) {
            n++;
        }
    }
    fclose(f);
    return n;
}

/* Lines of the peer's log containing every one of the (NULL-terminated) needles. */
static int count_log_all(const char *a, ...)
{
    char line[4096];
    int n = 0;
    FILE *f = fopen(log_file, "r");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        va_list ap;
        va_start(ap, a);
        int ok = 1;
        for (const char *s = a; s != NULL; s = va_arg(ap, const char *)) {
            ok &= strstr(line, s) != NULL;
        }
        va_end(ap);
        n += ok;
    }
    fclose(f);
    return n;
}

static void start_peer(void)
{
    char port_env[32];
    unlink(port_file);
    snprintf(port_env, sizeof(port_env), "%d", peer_port);
    peer_pid = fork();
    assert_true(peer_pid >= 0);
    if (peer_pid == 0) {
        setenv("ISO_PEER_PORT", port_env, 1);
        execl(PYTHON, PYTHON, ISO_PEER, port_file, log_file, ctl_file, ZAK_HEX, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &peer_port) == 1;
            fclose(f);
            if (ok) {
                return;
            }
        }
        usleep(50000);
    }
    fail_msg("the ISO 8583 peer did not start");
}

static void start_proc(void)
{
    mpos_bk_txn_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.store_path = db;
    cfg.hsm_socket = H.sock[HARNESS_BACKEND];
    cfg.hsm_timeout_ms = 5000;
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = (uint16_t)peer_port;
    cfg.upstream_timeout_ms = 1500;
    cfg.echo_s = 1;
    cfg.saf_interval_ms = 300;
    cfg.acquirer_id = "123456";
    cfg.zpk_label = "zpk1";
    cfg.zak_label = "zak1";
    cfg.zek_label = "zek1";
    cfg.min_firmware = 1u << 16; /* 1.0.0 */
    cfg.max_speed_kmh = 900;
    assert_int_equal(mpos_bk_txn_start(&cfg, &proc), MPOS_OK);
    /* Wait for the sign-on: the peer logs it. */
    int before = count_in_log("\"de70\": \"001\"");
    (void)before;
    for (int i = 0; i < 100; i++) {
        if (count_in_log("\"de70\": \"001\"") > 0) {
            usleep(200000); /* the 0810 on its way back */
            return;
        }
        usleep(50000);
    }
    fail_msg("no sign-on");
}

static void put_key(mpos_store *st, const char *label, const char *usage, char alg, char mode,
                    uint8_t dukpt, const char *hex)
{
    char kb[2048];
    assert_int_equal(harness_key_block(&H, usage, alg, mode, 'N', dukpt, hex, kb, sizeof(kb)), 0);
    assert_int_equal(mpos_store_key_put(st, label, kb, "0000", time(NULL)), MPOS_OK);
}

static int group_setup(void **state)
{
    (void)state;
    mpos_store *st = NULL;
    char code[MPOS_ACTIVATION_CODE_LEN + 1], ksn_hex[MPOS_STORE_KSN_HEX_LEN + 1],
        mid[MPOS_STORE_MERCHANT_ID_LEN + 1], dev_hex[65];
    int64_t dev = 0, now = time(NULL);
    struct mpos_store_location loc = {1, LAT_E7 / 10, LON_E7 / 10, 5000};
    struct mpos_store_terminal t;
    snprintf(dir, sizeof(dir), "/tmp/bk_txn_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/store.db", dir);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    snprintf(log_file, sizeof(log_file), "%s/peer.log", dir);
    snprintf(ctl_file, sizeof(ctl_file), "%s/control", dir);
    write_file(ctl_file, "");
    assert_int_equal(mpos_crypto_init(&cc), MPOS_OK);
    assert_int_equal(harness_init(&H), 0);
    assert_int_equal(harness_start(&H, HSMD_PATH, NULL), 0);

    assert_int_equal(mpos_store_open(db, MPOS_STORE_CREATE, 0, &st), MPOS_OK);
    assert_int_equal(mpos_store_migrate(st, now, NULL, NULL), MPOS_OK);
    put_key(st, "bdk1", "B0", 'A', 'X', 1, BDK_HEX);
    put_key(st, "zak1", "M3", 'T', 'C', 0, ZAK_HEX);
    put_key(st, "zpk1", "P0", 'T', 'B', 0, ZPK_HEX);
    put_key(st, "zek1", "D0", 'T', 'B', 0, ZEK_HEX);
    assert_int_equal(mpos_store_merchant_add(st, MERCHANT, "Test shop", NULL, now, mid), MPOS_OK);
    assert_int_equal(mpos_activation_code_generate(code), MPOS_OK);
    assert_int_equal(
        mpos_store_terminal_assign(st, SERIAL, MERCHANT, &loc, 0, code, now + 3600, now), MPOS_OK);
    assert_int_equal(
        mpos_store_ksn_allocator_create(st, MPOS_SCHEME_AES_DUKPT, "00C0FFEE", "bdk1", 1, now),
        MPOS_OK);
    assert_int_equal(mpos_store_ksn_allocate(st, MPOS_SCHEME_AES_DUKPT, NULL, "bdk1", SERIAL, now,
                                             ksn_hex, &dev),
                     MPOS_OK);
    struct mpos_store_terminal_keys keys = {MPOS_SCHEME_AES_DUKPT, ksn_hex, NULL, "bdk1", CERT};
    assert_int_equal(mpos_store_terminal_register_keys(st, SERIAL, &keys, now), MPOS_OK);
    for (size_t i = 0; i < sizeof(device_id); i++) {
        device_id[i] = (uint8_t)(0xA0 + i);
    }
    mpos_hex_encode(device_id, sizeof(device_id), dev_hex);
    assert_int_equal(mpos_store_activation_redeem(st, SERIAL, code, CERT, dev_hex, now), MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(st, SERIAL, &t), MPOS_OK);
    snprintf(tid, sizeof(tid), "%s", t.tid);
    mpos_store_close(st);

    /* The terminal's DUKPT state from the same BDK and its initial key ID. */
    uint8_t bdk[16], ikid[8];
    harness_hex(BDK_HEX, bdk, sizeof(bdk));
    harness_hex(ksn_hex, ikid, sizeof(ikid));
    assert_int_equal(stk_term_load(&term, &cc, MPOS_SEALED_AES128, bdk, sizeof(bdk), ikid),
                     MPOS_OK);
    mpos_cleanse(bdk, sizeof(bdk));

    start_peer();
    start_proc();
    return 0;
}

static void stop_peer(void)
{
    if (peer_pid > 0) {
        kill(peer_pid, SIGTERM);
        waitpid(peer_pid, NULL, 0);
        peer_pid = -1;
    }
}

static int group_teardown(void **state)
{
    (void)state;
    mpos_bk_txn_stop(proc);
    proc = NULL;
    stop_peer();
    harness_stop(&H);
    harness_cleanup(&H);
    mpos_crypto_clear(&cc);
    stk_term_clear(&term);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", dir);
    }
    return 0;
}

/* ---- the terminal ---- */

struct sealed_msg {
    uint8_t buf[MPOS_SEALED_MAX_REQUEST_LEN];
    size_t len;
    mpos_sealed_keys resp_keys;
    uint32_t seq;
};

static size_t field55(uint8_t *out, size_t cap, uint64_t amount)
{
    size_t len = 0;
    uint8_t arqc[8] = {1, 2, 3, 4, 5, 6, 7, 8}, amt[6] = {0}, un[4] = {9, 8, 7, 6};
    uint8_t atc[2] = {0, 5}, cur[2] = {0x01, 0x56};
    for (int i = 5; i >= 0; i--) {
        amt[i] = (uint8_t)((amount % 10) | ((amount / 10) % 10) << 4);
        amount /= 100;
    }
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F26, arqc, 8), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F02, amt, 6), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F37, un, 4), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x9F36, atc, 2), MPOS_OK);
    assert_int_equal(mpos_tlv_put(out, cap, &len, 0x5F2A, cur, 2), MPOS_OK);
    return len;
}

/* The reason the next sealed reversal carries (docs/protocol.md 2.3 DF34). */
static uint8_t rev_reason = MPOS_SEALED_REV_CARD_DECLINED;
/* 1: the next sealed requests are retries (docs/protocol.md 2.3 DF35; no PIN block then). */
static uint8_t seal_retry;

/* Seals a request (type 1 sale ..., msg_type request or reversal, which carries rev_reason)
 * with the next KSN. */
static void seal(struct sealed_msg *m, uint8_t msg_type, uint32_t seq, uint8_t type,
                 uint64_t amount, const char *ref, int card, int with_pin)
{
    mpos_sealed_request q;
    memset(&q, 0, sizeof(q));
    assert_int_equal(stk_term_next(&term), MPOS_OK);
    m->resp_keys = term.resp_keys;
    q.msg_type = msg_type;
    q.reversal_reason = msg_type == MPOS_SEALED_MSG_REVERSAL ? rev_reason : 0;
    q.retry = msg_type == MPOS_SEALED_MSG_REQUEST ? seal_retry : 0;
    q.sequence = seq;
    q.txn_type = type;
    q.amount = amount;
    q.currency = 156;
    snprintf(q.merchant_id, sizeof(q.merchant_id), "%s", MERCHANT);
    snprintf(q.terminal_id, sizeof(q.terminal_id), "%s", tid);
    snprintf(q.datetime, sizeof(q.datetime), "20250601120000");
    q.has_location = 1;
    q.location.lat_e7 = LAT_E7;
    q.location.lon_e7 = LON_E7;
    q.location.accuracy_m = 10;
    q.location.time = (uint64_t)time(NULL);
    if (ref != NULL) {
        snprintf(q.original_ref, sizeof(q.original_ref), "%s", ref);
    }
    if (card) {
        q.entry_mode = MPOS_ENTRY_CHIP;
        snprintf(q.card.pan, sizeof(q.card.pan), "%s", PAN);
        snprintf(q.card.expiry, sizeof(q.card.expiry), "3012");
        /* Track 2 equivalent: PAN D YYMM 220 discretionary F-padded. */
        harness_hex("6212094482246349D30122201234567F", q.card.track2, 16);
        q.card.track2_len = 16;
        q.card.emv_len = field55(q.card.emv, sizeof(q.card.emv), amount);
        if (with_pin) {
            assert_int_equal(stk_term_pin(&term, PIN, PAN, &q), MPOS_OK);
        }
    } else {
        q.entry_mode = MPOS_ENTRY_NONE;
    }
    assert_int_equal(mpos_sealed_seal_request(&cc, &term.req_keys, &q, NULL, NULL, m->buf,
                                              sizeof(m->buf), &m->len),
                     MPOS_OK);
    m->seq = seq;
    mpos_sealed_request_clear(&q);
}

static void context(mpos_bk_txn_context *c, uint8_t type, uint64_t amount, int role)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->serial, sizeof(c->serial), "%s", SERIAL);
    snprintf(c->firmware, sizeof(c->firmware), "1.2.0");
    snprintf(c->merchant_id, sizeof(c->merchant_id), "%s", MERCHANT);
    snprintf(c->username, sizeof(c->username), "alice");
    c->role = role;
    memcpy(c->device_id, device_id, sizeof(device_id));
    c->lat_e7 = LAT_E7;
    c->lon_e7 = LON_E7;
    c->accuracy_m = 10;
    c->loc_time = (uint64_t)time(NULL);
    snprintf(c->source_addr, sizeof(c->source_addr), "127.0.0.1:5555");
    c->has_intent = 1;
    c->intent_type = type;
    c->intent_amount = amount;
    c->intent_currency = 156;
}

/* Processes m and opens the response as the terminal does; returns the process result. */
static int run(const mpos_bk_txn_context *c, struct sealed_msg *m, mpos_sealed_response *r,
               mpos_bk_txn_outcome *o)
{
    uint8_t resp[MPOS_BK_MAX_SEALED_RESP];
    size_t resp_len = 0;
    int rc = mpos_bk_txn_process(proc, c, m->buf, m->len, resp, sizeof(resp), &resp_len, o);
    if (rc == MPOS_OK) {
        assert_int_equal(mpos_sealed_open_response(&cc, &m->resp_keys, m->seq, resp, resp_len, r),
                         MPOS_OK);
        assert_string_equal(r->response_code, o->response_code);
    }
    return rc;
}

/* A terminal and its operator: the operator's intent (c), the terminal's sealed request (m),
 * its opened response (r) and the processor's outcome (o). */
struct xchg {
    mpos_bk_txn_context c;
    struct sealed_msg m;
    mpos_sealed_response r;
    mpos_bk_txn_outcome o;
};

/* Seals a request into x->m (the arguments of seal()), processes it under x->c and checks
 * that it is answered, with response code code. */
static void answered(struct xchg *x, uint8_t msg_type, uint32_t seq, uint8_t type, uint64_t amount,
                     const char *ref, int card, int with_pin, const char *code)
{
    seal(&x->m, msg_type, seq, type, amount, ref, card, with_pin);
    assert_int_equal(run(&x->c, &x->m, &x->r, &x->o), MPOS_OK);
    assert_string_equal(x->o.response_code, code);
}

static int64_t ksn_counter(void)
{
    mpos_store *st = NULL;
    struct mpos_store_terminal t;
    assert_int_equal(mpos_store_open(db, 0, 0, &st), MPOS_OK);
    assert_int_equal(mpos_store_terminal_get(st, SERIAL, &t), MPOS_OK);
    mpos_store_close(st);
    return t.last_ksn_counter;
}

static char approved_rrn[13], approved2_rrn[13];

/* ---- tests ---- */

static void test_approve(void **state)
{
    (void)state;
    struct xchg x;
    context(&x.c, 1, 1000, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 1, "00");
    assert_string_equal(x.r.auth_code, "A1B2C3");
    assert_string_equal(x.r.arc, "00");
    assert_int_equal(x.r.iad_len, 10);
    assert_int_equal(strlen(x.r.rrn), 12);
    assert_string_equal(x.o.masked_pan, "621209******6349");
    snprintf(approved_rrn, sizeof(approved_rrn), "%s", x.r.rrn);
    /* Upstream: one 0200 with PAN, PIN block under the ZPK, DE 55, DE 62, a good MAC. */
    char rrn_key[40];
    snprintf(rrn_key, sizeof(rrn_key), "\"de37\": \"%s\"", x.r.rrn);
    assert_int_equal(count_log_all("\"mti\": \"0200\"", rrn_key, "\"mac_ok\": true",
                                   "\"de2\": true", "\"de52\": true", "\"de55\": true",
                                   "\"de62\": true", "\"de22\": \"051\"", "\"de3\": \"000000\"",
                                   (char *)NULL),
                     1);
}

static void test_decline_51(void **state)
{
    (void)state;
    struct xchg x;
    context(&x.c, 1, 2051, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 2051, NULL, 1, 0, "51");
    assert_string_equal(x.r.auth_code, "");
}

static void test_replay_and_forgery(void **state)
{
    (void)state;
    struct sealed_msg m;
    mpos_sealed_response r;
    mpos_bk_txn_outcome o;
    mpos_bk_txn_context c;
    context(&c, 1, 1500, MPOS_ROLE_CASHIER);
    seal(&m, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1500, NULL, 1, 0);
    /* Forged: one bit of the MAC. Refused in hsmd; the counter does not move. */
    int64_t before = ksn_counter();
    int upstream = count_in_log("\"mti\": \"0200\"");
    m.buf[m.len - 1] ^= 1;
    assert_int_equal(run(&c, &m, &r, &o), MPOS_ERR_VERIFY);
    assert_int_equal(ksn_counter(), before);
    /* Forged amount in clear (the MAC covers it). */
    m.buf[m.len - 1] ^= 1;
    struct sealed_msg f = m;
    for (size_t i = 0; i + 2 < f.len; i++) {
        if (f.buf[i] == 0xDF && f.buf[i + 1] == 0x26) {
            f.buf[i + 8] ^= 0x01; /* last amount digit */
            break;
        }
    }
    assert_int_equal(run(&c, &f, &r, &o), MPOS_ERR_VERIFY);
    assert_int_equal(ksn_counter(), before);
    /* The genuine one goes through and moves the counter; played again: replay. */
    assert_int_equal(run(&c, &m, &r, &o), MPOS_OK);
    assert_string_equal(o.response_code, "00");
    int64_t after = ksn_counter();
    assert_true(after > before);
    assert_int_equal(run(&c, &m, &r, &o), MPOS_ERR_VERIFY);
    assert_int_equal(ksn_counter(), after);
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream + 1);
}

static void test_retry_same_sequence(void **state)
{
    (void)state;
    struct sealed_msg m1, m2;
    mpos_sealed_response r1, r2;
    mpos_bk_txn_outcome o;
    mpos_bk_txn_context c;
    uint32_t seq = next_seq++;
    context(&c, 1, 3000, MPOS_ROLE_CASHIER);
    seal(&m1, MPOS_SEALED_MSG_REQUEST, seq, 1, 3000, NULL, 1, 0);
    assert_int_equal(run(&c, &m1, &r1, &o), MPOS_OK);
    assert_string_equal(o.response_code, "00");
    snprintf(approved2_rrn, sizeof(approved2_rrn), "%s", r1.rrn);
    int upstream = count_in_log("\"mti\": \"0200\"");
    /* The retry: same sequence, a new KSN. Same outcome, sealed for the new KSN. */
    seal(&m2, MPOS_SEALED_MSG_REQUEST, seq, 1, 3000, NULL, 1, 0);
    assert_int_equal(run(&c, &m2, &r2, &o), MPOS_OK);
    assert_string_equal(r2.response_code, "00");
    assert_string_equal(r2.rrn, r1.rrn);
    assert_string_equal(r2.auth_code, r1.auth_code);
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
}

/* Journal rows of this terminal's sequence number (0 or 1: (serial, sequence) is unique). */
static int journal_rows(uint32_t seq, struct mpos_store_journal *e)
{
    mpos_store *st = NULL;
    assert_int_equal(mpos_store_open(db, 0, 0, &st), MPOS_OK);
    int rc = mpos_store_journal_get(st, SERIAL, seq, e);
    mpos_store_close(st);
    assert_true(rc == MPOS_OK || rc == MPOS_STORE_NOT_FOUND);
    return rc == MPOS_OK;
}

/* docs/protocol.md 2.8: a retry (DF35: new KSN, same sequence, no PIN block) is answered from
 * the journal: the first outcome when it is final (no second journal row, nothing upstream),
 * 94 while the first is in flight, 25 for a sequence never seen (nothing journaled, nothing
 * upstream: a retry never starts a charge). */
static void test_retry_flag(void **state)
{
    (void)state;
    struct sealed_msg m1, m2;
    mpos_sealed_response r1, r2;
    mpos_bk_txn_outcome o;
    mpos_bk_txn_context c;
    struct mpos_store_journal e, e2;
    uint32_t seq = next_seq++;
    context(&c, 1, 3151, MPOS_ROLE_CASHIER);
    /* Final: the first send (with its PIN) declined 51 by the issuer (a decline, so that the
     * settlement test's totals stay as they are); the retry gets that outcome. */
    seal(&m1, MPOS_SEALED_MSG_REQUEST, seq, 1, 3151, NULL, 1, 1);
    assert_int_equal(run(&c, &m1, &r1, &o), MPOS_OK);
    assert_string_equal(o.response_code, "51");
    int upstream = count_in_log("\"mti\": \"0200\"");
    assert_int_equal(journal_rows(seq, &e), 1);
    seal_retry = 1;
    seal(&m2, MPOS_SEALED_MSG_REQUEST, seq, 1, 3151, NULL, 1, 0);
    assert_int_equal(run(&c, &m2, &r2, &o), MPOS_OK);
    assert_string_equal(r2.response_code, "51");
    assert_string_equal(r2.rrn, r1.rrn);
    assert_string_equal(r2.auth_code, r1.auth_code);
    assert_string_equal(r2.arc, r1.arc);
    assert_int_equal(r2.iad_len, r1.iad_len);
    assert_memory_equal(r2.iad, r1.iad, r1.iad_len);
    assert_int_equal(r2.sequence, seq);
    assert_memory_equal(r2.ksn, m2.resp_keys.ksn, m2.resp_keys.ksn_len);
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
    assert_int_equal(journal_rows(seq, &e2), 1);
    assert_int_equal(e2.id, e.id);      /* the same row, not a second one */
    assert_string_equal(e2.ksn, e.ksn); /* still the first send's */

    /* Unknown: the first send never arrived. 25, nothing journaled, nothing upstream. */
    uint32_t lost = next_seq++;
    context(&c, 1, 3200, MPOS_ROLE_CASHIER);
    seal(&m2, MPOS_SEALED_MSG_REQUEST, lost, 1, 3200, NULL, 1, 0);
    assert_int_equal(run(&c, &m2, &r2, &o), MPOS_OK);
    assert_string_equal(r2.response_code, "25");
    assert_string_equal(r2.auth_code, "");
    assert_int_equal(journal_rows(lost, &e2), 0);
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
    /* A first send arriving after its retry has a lower KSN counter: refused as a replay,
     * like this older message. */
    seal_retry = 0;
    assert_int_equal(run(&c, &m1, &r1, &o), MPOS_ERR_VERIFY);

    /* In flight: a pending journal row (a first send another worker is still processing). */
    uint32_t busy = next_seq++;
    mpos_store *st = NULL;
    e2 = e;
    e2.id = 0;
    e2.sequence = busy;
    e2.state = MPOS_JOURNAL_PENDING;
    e2.response_code[0] = e2.auth_code[0] = e2.arc[0] = e2.iad[0] = '\0';
    assert_int_equal(mpos_store_open(db, 0, 0, &st), MPOS_OK);
    assert_int_equal(mpos_store_journal_insert(st, &e2, (int64_t)time(NULL)), MPOS_OK);
    mpos_store_close(st);
    context(&c, 1, 3151, MPOS_ROLE_CASHIER);
    seal_retry = 1;
    seal(&m2, MPOS_SEALED_MSG_REQUEST, busy, 1, 3151, NULL, 1, 0);
    assert_int_equal(run(&c, &m2, &r2, &o), MPOS_OK);
    assert_string_equal(r2.response_code, "94");
    /* The first completes (declined 05): the next retry gets that. */
    assert_int_equal(mpos_store_open(db, 0, 0, &st), MPOS_OK);
    assert_int_equal(
        mpos_store_journal_complete(st, e2.id, "05", NULL, NULL, NULL, (int64_t)time(NULL)),
        MPOS_OK);
    mpos_store_close(st);
    seal(&m2, MPOS_SEALED_MSG_REQUEST, busy, 1, 3151, NULL, 1, 0);
    assert_int_equal(run(&c, &m2, &r2, &o), MPOS_OK);
    assert_string_equal(r2.response_code, "05");
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
    seal_retry = 0;
}

static void test_checks(void **state)
{
    (void)state;
    struct xchg x;
    int upstream = count_in_log("\"mti\": \"0200\"");
    /* The operator announced another amount: 57. */
    context(&x.c, 1, 999, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 0, "57");
    /* A cashier may not refund: 57. */
    context(&x.c, 3, 1000, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 3, 1000, approved_rrn, 1, 0, "57");
    /* The envelope's location is not the one the terminal sealed: 57. */
    context(&x.c, 1, 1000, MPOS_ROLE_CASHIER);
    x.c.lat_e7 += 100;
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 0, "57");
    /* Another host device than the one the terminal is bound to: 57 + alert. */
    context(&x.c, 1, 1000, MPOS_ROLE_CASHIER);
    x.c.device_id[0] ^= 1;
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 0, "57");
    assert_non_null(x.o.alert);
    assert_string_equal(x.o.alert, "host_not_bound");
    /* Firmware below the minimum: 12. */
    context(&x.c, 1, 1000, MPOS_ROLE_CASHIER);
    snprintf(x.c.firmware, sizeof(x.c.firmware), "0.9.9");
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 0, "12");
    /* Another merchant's operator: 12. */
    context(&x.c, 1, 1000, MPOS_ROLE_CASHIER);
    snprintf(x.c.merchant_id, sizeof(x.c.merchant_id), "OTHER");
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 1000, NULL, 1, 0, "12");
    /* None of them went upstream. */
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
}

static void test_void_refund(void **state)
{
    (void)state;
    struct xchg x;
    char de90_prefix[40];
    /* Void of the first approval: DE 3 020000, DE 90 = 0200 + its STAN ... */
    context(&x.c, 2, 1000, MPOS_ROLE_SUPERVISOR);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 2, 1000, approved_rrn, 0, 0, "00");
    assert_int_equal(
        count_log_all("\"de3\": \"020000\"", "\"de90\": \"0200", "\"mac_ok\": true", (char *)NULL),
        1);
    /* Refund of the second: DE 3 200000 with DE 90. */
    context(&x.c, 3, 3000, MPOS_ROLE_SUPERVISOR);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 3, 3000, approved2_rrn, 1, 0, "00");
    assert_int_equal(count_log_all("\"de3\": \"200000\"", "\"de90\": \"0200", (char *)NULL), 1);
    /* An unknown original: 25, nothing upstream. */
    int upstream = count_in_log("\"mti\": \"0200\"");
    context(&x.c, 3, 500, MPOS_ROLE_SUPERVISOR);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 3, 500, "999999999999", 1, 0, "25");
    assert_int_equal(count_in_log("\"mti\": \"0200\""), upstream);
    (void)de90_prefix;
}

static void test_balance(void **state)
{
    (void)state;
    struct xchg x;
    context(&x.c, 4, 0, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 4, 0, NULL, 1, 1, "00");
    assert_int_equal(count_log_all("\"mti\": \"0100\"", "\"de3\": \"310000\"", (char *)NULL), 1);
}

static int wait_log(const char *a, const char *b, int want, int ms)
{
    for (int i = 0; i < ms / 50; i++) {
        if (count_log_all(a, b, (char *)NULL) >= want) {
            return 1;
        }
        usleep(50000);
    }
    return 0;
}

static void test_timeout_reversal(void **state)
{
    (void)state;
    struct xchg x;
    char rrn_key[40];
    /* The switch stops answering: 91 to the terminal, a reversal queued. */
    write_file(ctl_file, "silent\ndrop_0400\n");
    context(&x.c, 1, 4200, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 4200, NULL, 1, 0, "91");
    snprintf(rrn_key, sizeof(rrn_key), "\"de37\": \"%s\"", x.r.rrn);
    /* Forwarded (and dropped) at least twice, with reason 68 and DE 90. */
    assert_true(wait_log("\"mti\": \"0400\"", rrn_key, 2, 5000));
    assert_true(count_log_all("\"mti\": \"0400\"", rrn_key, "\"de39\": \"68\"", "\"de90\": \"0200",
                              "\"mac_ok\": true", (char *)NULL) >= 2);
    /* Restart the processor while the reversal is pending; the switch answers again. */
    mpos_bk_txn_stop(proc);
    proc = NULL;
    write_file(ctl_file, "");
    int sent = count_log_all("\"mti\": \"0400\"", rrn_key, (char *)NULL);
    start_proc();
    assert_true(wait_log("\"mti\": \"0400\"", rrn_key, sent + 1, 5000));
    /* Acknowledged: no more 0400s for it after a few intervals. */
    usleep(1000000);
    int after = count_log_all("\"mti\": \"0400\"", rrn_key, (char *)NULL);
    usleep(1200000);
    assert_int_equal(count_log_all("\"mti\": \"0400\"", rrn_key, (char *)NULL), after);
}

/* A switch that sends half a message, or announces one longer than the link takes, and
 * then nothing: the request gets 91 and the link does not wait for the rest: it drops the
 * connection and signs on again within the upstream time limit (docs/system-design.md 4.2). */
static void test_stuck_upstream(void **state)
{
    (void)state;
    static const char *const modes[] = {"partial\n", "oversize\n"};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct xchg x;
        int signons = count_in_log("\"de70\": \"001\"");
        write_file(ctl_file, modes[i]);
        context(&x.c, 1, 4300 + (uint64_t)i, MPOS_ROLE_CASHIER);
        answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 4300 + (uint64_t)i, NULL, 1, 0, "91");
        write_file(ctl_file, "");
        int again = 0;
        for (int k = 0; k < 100 && !again; k++) {
            again = count_in_log("\"de70\": \"001\"") > signons;
            usleep(50000);
        }
        assert_true(again);
        usleep(300000); /* the 0810 on its way back */
        /* Signed on again: the next request is answered. */
        context(&x.c, 1, 4310 + (uint64_t)i, MPOS_ROLE_CASHIER);
        answered(&x, MPOS_SEALED_MSG_REQUEST, next_seq++, 1, 4310 + (uint64_t)i, NULL, 1, 0, "00");
    }
}

static void test_terminal_reversal(void **state)
{
    (void)state;
    struct xchg x;
    char rrn_key[40];
    uint32_t seq = next_seq++;
    context(&x.c, 1, 700, MPOS_ROLE_CASHIER);
    answered(&x, MPOS_SEALED_MSG_REQUEST, seq, 1, 700, NULL, 1, 0, "00");
    snprintf(rrn_key, sizeof(rrn_key), "\"de37\": \"%s\"", x.r.rrn);
    /* The card declined after the approval: the terminal reverses, twice (a retry). */
    x.c.has_intent = 0;
    rev_reason = MPOS_SEALED_REV_CARD_DECLINED;
    for (int i = 0; i < 2; i++) {
        answered(&x, MPOS_SEALED_MSG_REVERSAL, seq, 1, 700, NULL, 0, 0, "00");
        assert_int_equal(x.o.is_reversal, 1);
    }
    assert_true(wait_log("\"mti\": \"0400\"", rrn_key, 1, 5000));
    usleep(1000000);
    assert_int_equal(count_log_all("\"mti\": \"0400\"", rrn_key, (char *)NULL), 1);
    /* The switch got the terminal's reason in DE 39: 06 card declined after approval. */
    assert_int_equal(count_log_all("\"mti\": \"0400\"", rrn_key, "\"de39\": \"06\"",
                                   "\"de90\": \"0200", (char *)NULL),
                     1);
    /* Each reason the terminal can give, on an approved sale of its own: the 0400 carries
     * the DE 39 of docs/system-design.md 4.1, not a guess from the approval. */
    static const struct {
        uint8_t reason;
        const char *de39, *other; /* the code it must carry, one it must not */
    } cases[] = {
        {MPOS_SEALED_REV_NO_RESPONSE, "\"de39\": \"68\"", "\"de39\": \"06\""},
        {MPOS_SEALED_REV_TERMINAL_FAILURE, "\"de39\": \"22\"", "\"de39\": \"06\""},
        {MPOS_SEALED_REV_CANCELLED, "\"de39\": \"22\"", "\"de39\": \"06\""},
        {MPOS_SEALED_REV_CARD_DECLINED, "\"de39\": \"06\"", "\"de39\": \"22\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t s2 = next_seq++;
        x.c.has_intent = 1;
        answered(&x, MPOS_SEALED_MSG_REQUEST, s2, 1, 700, NULL, 1, 0, "00");
        snprintf(rrn_key, sizeof(rrn_key), "\"de37\": \"%s\"", x.r.rrn);
        x.c.has_intent = 0;
        rev_reason = cases[i].reason;
        answered(&x, MPOS_SEALED_MSG_REVERSAL, s2, 1, 700, NULL, 0, 0, "00");
        assert_int_equal(x.o.is_reversal, 1);
        assert_true(wait_log("\"mti\": \"0400\"", rrn_key, 1, 5000));
        assert_int_equal(count_log_all("\"mti\": \"0400\"", rrn_key, cases[i].de39,
                                       "\"de90\": \"0200", "\"mac_ok\": true", (char *)NULL),
                         1);
        assert_int_equal(count_log_all("\"mti\": \"0400\"", rrn_key, cases[i].other, (char *)NULL),
                         0);
    }
    rev_reason = MPOS_SEALED_REV_CARD_DECLINED;
    /* A reversal of a sequence never seen: acknowledged locally. */
    int rev = count_in_log("\"mti\": \"0400\"");
    answered(&x, MPOS_SEALED_MSG_REVERSAL, 900000, 1, 700, NULL, 0, 0, "00");
    usleep(700000);
    assert_int_equal(count_in_log("\"mti\": \"0400\""), rev);
}

static void test_settle(void **state)
{
    (void)state;
    char text[4096], want[256];
    assert_int_equal(mpos_bk_txn_settle(proc, MERCHANT, text, sizeof(text)), MPOS_OK);
    /* Approved: sales 1000 + 1500 + 3000 (700 was reversed, 4200 timed out, 2051 declined);
     * a void of 1000, a refund of 3000; the balance enquiry is not counted. */
    snprintf(want, sizeof(want),
             "merchant=%s terminal=%s currency=156 sale_count=3 sale_amount=5500 refund_count=1 "
             "refund_amount=3000 void_count=1 void_amount=1000 net_amount=1500\n",
             MERCHANT, tid);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "batches=1\n"));
    /* Closed: a second settlement has nothing. */
    assert_int_equal(mpos_bk_txn_settle(proc, MERCHANT, text, sizeof(text)), MPOS_OK);
    assert_string_equal(text, "batches=0\n");
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    size_t n = strlen(needle), cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    int found = 0;
    for (;;) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0 || len == cap) {
            for (size_t i = 0; i + n <= len; i++) {
                if (memcmp(buf + i, needle, n) == 0) {
                    found = 1;
                }
            }
            if (r == 0 || found) {
                break;
            }
            memmove(buf, buf + len - n, n);
            len = n;
        }
    }
    free(buf);
    fclose(f);
    return found;
}

static void test_no_pan_at_rest(void **state)
{
    (void)state;
    const char *suffix[] = {"", "-wal", "-shm"};
    char path[160];
    int files = 0;
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", db, suffix[i]);
        if (access(path, F_OK) == 0) {
            files++;
            assert_false(file_contains(path, PAN));
            assert_false(file_contains(path, "D3012220"));
        }
    }
    assert_true(files >= 1);
    /* The masked PAN is there (the scan is not looking at an empty file). */
    snprintf(path, sizeof(path), "%s", db);
    mpos_bk_txn_stop(proc); /* checkpoint: everything in the main file */
    proc = NULL;
    assert_true(file_contains(path, "621209******6349"));
    assert_false(file_contains(path, PAN));
    start_proc();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_approve),
        cmocka_unit_test(test_decline_51),
        cmocka_unit_test(test_replay_and_forgery),
        cmocka_unit_test(test_retry_same_sequence),
        cmocka_unit_test(test_retry_flag),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_void_refund),
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_timeout_reversal),
        cmocka_unit_test(test_terminal_reversal),
        cmocka_unit_test(test_settle),
        cmocka_unit_test(test_stuck_upstream), /* after the settlement: its sales are extra */
        cmocka_unit_test(test_no_pan_at_rest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
