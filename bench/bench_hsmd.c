#define _GNU_SOURCE 1 /* clock_gettime, pthread */
/* mpos-bench, hsmd section: commands per second through mpos-hsmd's backend socket, with
 * several client connections (bench_hsmd.h). Every request is a real command on data prepared
 * before the timed window, and every answer is checked:
 *   - hsmd-pin-translate: 256 PIN blocks under the PIN keys of KSNs whose counters have 16
 *     one-bits (the most expensive AES DUKPT derivation), translated format 4 to format 4;
 *   - hsmd-sealed-open / hsmd-sealed-respond: 512 sealed chip sales with a PIN, sealed by the
 *     terminal's own code (terminal/core/txn/sealed.h) from one terminal's DUKPT state at
 *     consecutive transactions, opened (with a TDES ZPK and ZEK) or answered by hsmd. hsmd does
 *     not enforce anti-replay (the back end's store does), so the requests are sent in a loop.
 * Before the timed window, one answer of each sealed bench is checked through to the clear
 * values (the PIN under the ZPK, track 2 under the ZEK, the response on the terminal), so a
 * figure can only come from commands that did the whole work. */
#include "bench_hsmd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "mpos/dukpt.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/util.h"
#include "txn/sealed.h"

#define N_REQ    256
#define N_SEALED 512

static const char bdk_hex[] = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
static const char zpk_hex[] = "00112233445566778899AABBCCDDEEFF";
static const char pan[] = "4111111111111111";
/* Sealed benches: the terminal's initial key ID, the zone keys (TDES, different halves), the
 * card (track 2 with service code 201: a chip card) and the PIN. */
static const char ikid_hex[] = "1234567890123456";
static const char zpk_tdes_hex[] = "89ABCDEF0123456776543210FEDCBA98";
static const char zek_tdes_hex[] = "FEDCBA98765432100123456789ABCDEF";
static const char track2_hex[] = "4111111111111111D301220112345F";
static const char expiry[] = "3012";
static const char pin[] = "1234";
/* The terminal is about a million transactions into its life: counters from 0x000F0000 on
 * have 4 to 13 one-bits, so hsmd's DUKPT derivations cost what they cost for a terminal in
 * the field (pin-translate takes the worst case, 16). */
#define FIRST_COUNTER 0x000F0000u

enum hsmd_op { OP_PIN_TRANSLATE, OP_SEALED_OPEN, OP_SEALED_RESPOND };

const struct mpos_bench_hsmd_def mpos_bench_hsmd_defs[MPOS_BENCH_HSMD_COUNT] = {
    {MPOS_BENCH_HSMD_NAME, "DUKPT PIN to ZPK through mpos-hsmd"},
    {MPOS_BENCH_HSMD_SEALED_OPEN_NAME,
     "sealed.open of an AES DUKPT chip sale with PIN (MAC, decrypt, PIN to TDES ZPK format 0, "
     "track 2 under TDES ZEK, PAN hash) through mpos-hsmd"},
    {MPOS_BENCH_HSMD_SEALED_RESPOND_NAME,
     "sealed.respond (AES DUKPT response keys, encrypt + CMAC) through mpos-hsmd"},
};

struct sealed_entry {
    uint8_t msg[HSM_SEALED_MAX_LEN];
    size_t len;
    struct hsm_sealed_respond_req rreq;
};

struct bench_state {
    enum hsmd_op op;
    const char *sock;
    char bdk_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    char zpk_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    char zpk_tdes_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    char zek_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    struct hsm_pin_translate_req req[N_REQ];
    struct sealed_entry sealed[N_SEALED];
    mpos_sealed_keys resp_keys0; /* the terminal's response keys of sealed[0] (the check) */
    atomic_int go, stop;
    atomic_ulong done, failed;
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) of process pid so far, from /proc/<pid>/stat; -1 on error. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static struct hsm_kb_in kb_in(const char *text)
{
    struct hsm_kb_in r = {text, strlen(text)};
    return r;
}

/* N_REQ requests: counters with 16 one-bits, PIN 1234 in format 4 under each PIN key. */
static int prepare_pin(struct bench_state *b)
{
    mpos_crypto_ctx cc;
    uint8_t bdk[16], key[16];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int rc = -1;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    harness_hex(bdk_hex, bdk, sizeof(bdk));
    for (size_t i = 0; i < N_REQ; i++) {
        struct hsm_pin_translate_req *r = &b->req[i];
        uint32_t c = 0;
        while (mpos_popcount32(c) < 16) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c |= 1u << (unsigned)(x % 32);
        }
        memset(r, 0, sizeof(*r));
        r->source = HSM_PIN_FROM_DUKPT;
        r->dukpt.bdk = kb_in(b->bdk_kb);
        harness_hex("1234567890123456", r->dukpt.ksn, 8);
        mpos_store_be32(r->dukpt.ksn + 8, c);
        r->dukpt.ksn_len = 12;
        if (mpos_dukpt_aes_working_key(&cc, bdk, sizeof(bdk), r->dukpt.ksn,
                                       MPOS_DUKPT_AES_USAGE_PIN, MPOS_DUKPT_AES_KEY_AES128,
                                       key) != MPOS_OK ||
            mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, sizeof(key), pin,
                                   pan, NULL, 0, r->pin_block, &r->pin_block_len) != MPOS_OK) {
            goto exit;
        }
        strcpy(r->pan, pan);
        r->zpk = kb_in(b->zpk_kb);
        r->dst_format = MPOS_PIN_FORMAT_4;
    }
    rc = 0;
exit:
    MPOS_WIPE_BUFFER(bdk);
    MPOS_WIPE_BUFFER(key);
    mpos_crypto_clear(&cc);
    return rc;
}

/* Field 55 of an online chip sale as a contact EMV kernel sends it (ARQC and its inputs, the
 * usual online set), amount and sequence as the request's. Never holds track 2 or expiry. */
static int field55(uint64_t amount, uint32_t seq, uint8_t *out, size_t cap, size_t *len)
{
    static const uint8_t arqc[8] = {0x8A, 0x91, 0x2C, 0x3D, 0x11, 0x05, 0x7E, 0x42};
    static const uint8_t aid[7] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
    static const uint8_t iad[7] = {0x06, 0x01, 0x0A, 0x03, 0xA0, 0xB0, 0x00};
    static const uint8_t tvr[5] = {0x00, 0x00, 0x00, 0x80, 0x00};
    uint8_t amt[6], seq4[4], un[4], atc[2];
    uint64_t a = amount;
    for (size_t i = sizeof(amt); i-- > 0;) { /* n12 BCD */
        amt[i] = (uint8_t)((a % 10) | ((a / 10 % 10) << 4));
        a /= 100;
    }
    mpos_store_be32(seq4, seq);
    mpos_store_be32(un, seq * 2654435761u);
    atc[0] = (uint8_t)(seq >> 8);
    atc[1] = (uint8_t)seq;
    *len = 0;
    const struct {
        uint32_t tag;
        const void *v;
        size_t n;
    } objs[] = {
        {0x82, "\x19\x80", 2},
        {0x84, aid, sizeof(aid)},
        {0x95, tvr, sizeof(tvr)},
        {0x9A, "\x26\x01\x15", 3},
        {0x9C, "\x00", 1},
        {0x5F2A, "\x01\x56", 2},
        {0x5F34, "\x01", 1},
        {0x9F02, amt, sizeof(amt)},
        {0x9F03, "\x00\x00\x00\x00\x00\x00", 6},
        {0x9F10, iad, sizeof(iad)},
        {0x9F1A, "\x01\x56", 2},
        {0x9F26, arqc, sizeof(arqc)},
        {0x9F27, "\x80", 1},
        {0x9F33, "\xE0\xF8\xC8", 3},
        {0x9F34, "\x42\x03\x00", 3}, /* enciphered PIN online */
        {0x9F35, "\x22", 1},
        {0x9F36, atc, sizeof(atc)},
        {0x9F37, un, sizeof(un)},
        {0x9F41, seq4, sizeof(seq4)},
    };
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
        if (mpos_tlv_put(out, cap, len, objs[i].tag, objs[i].v, objs[i].n) != MPOS_OK) {
            return -1;
        }
    }
    return 0;
}

/* N_SEALED sealed chip sales with a PIN, one per transaction of the terminal, and the
 * sealed.respond request of each. b->resp_keys0: the terminal's response keys of the first. */
static int prepare_sealed(struct bench_state *b)
{
    static mpos_dukpt_aes_terminal t;
    static mpos_sealed_request q;
    mpos_sealed_keys keys;
    mpos_crypto_ctx cc;
    uint8_t bdk[16], ikid[MPOS_DUKPT_AES_IKID_LEN], ik[16], pin_key[16];
    uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN];
    int rc = -1;
    memset(&keys, 0, sizeof(keys));
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    harness_hex(bdk_hex, bdk, sizeof(bdk));
    harness_hex(ikid_hex, ikid, sizeof(ikid));
    if (mpos_dukpt_aes_initial_key(&cc, bdk, sizeof(bdk), ikid, ik) != MPOS_OK ||
        mpos_dukpt_aes_terminal_load_at(&t, &cc, ik, sizeof(ik), ikid, FIRST_COUNTER) != MPOS_OK) {
        goto exit;
    }
    for (size_t i = 0; i < N_SEALED; i++) {
        struct sealed_entry *e = &b->sealed[i];
        memset(&q, 0, sizeof(q));
        q.msg_type = MPOS_SEALED_MSG_REQUEST;
        q.sequence = 1000u + (uint32_t)i;
        q.txn_type = MPOS_LINK_TXN_SALE;
        q.amount = 1000u + 37u * i;
        q.currency = 156;
        strcpy(q.merchant_id, "898310048990001");
        strcpy(q.terminal_id, "10000001");
        strcpy(q.datetime, "20260115093000");
        q.entry_mode = MPOS_ENTRY_CHIP;
        q.has_location = 1;
        q.location.lat_e7 = -312304170;
        q.location.lon_e7 = 1214737000;
        q.location.accuracy_m = 12;
        q.location.time = 1768469400ull;
        strcpy(q.card.pan, pan);
        strcpy(q.card.expiry, expiry);
        q.card.track2_len = (sizeof(track2_hex) - 1) / 2;
        harness_hex(track2_hex, q.card.track2, q.card.track2_len);
        if (field55(q.amount, q.sequence, q.card.emv, sizeof(q.card.emv), &q.card.emv_len) != 0 ||
            mpos_dukpt_aes_terminal_next(&t, &cc, ksn) != MPOS_OK ||
            mpos_sealed_keys_aes(&keys, &cc, &t, MPOS_SEALED_AES128, MPOS_SEALED_DIR_REQUEST,
                                 ksn) != MPOS_OK ||
            (i == 0 && mpos_sealed_keys_aes(&b->resp_keys0, &cc, &t, MPOS_SEALED_AES128,
                                            MPOS_SEALED_DIR_RESPONSE, ksn) != MPOS_OK) ||
            mpos_dukpt_aes_terminal_working_key(&t, &cc, MPOS_DUKPT_AES_USAGE_PIN,
                                                MPOS_DUKPT_AES_KEY_AES128, pin_key) != MPOS_OK ||
            mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, pin_key,
                                   sizeof(pin_key), pin, pan, NULL, 0, q.pin_block,
                                   &q.pin_block_len) != MPOS_OK) {
            goto exit;
        }
        q.pin_format = 4;
        q.has_pin = 1;
        if (mpos_sealed_seal_request(&cc, &keys, &q, NULL, NULL, e->msg, sizeof(e->msg), &e->len) !=
            MPOS_OK) {
            goto exit;
        }
        mpos_sealed_keys_clear(&keys);
        /* The back end's answer to it: approved, with an ARC and issuer authentication data. */
        struct hsm_sealed_respond_req *r = &e->rreq;
        memset(r, 0, sizeof(*r));
        r->bdk = kb_in(b->bdk_kb);
        r->scheme = MPOS_SEALED_AES128;
        memcpy(r->ksn, ksn, sizeof(ksn));
        r->ksn_len = sizeof(ksn);
        r->sequence = q.sequence;
        strcpy(r->response_code, "00");
        snprintf(r->auth_code, sizeof(r->auth_code), "A%05u", (unsigned)(i % 100000));
        snprintf(r->rrn, sizeof(r->rrn), "6015%08u", (unsigned)i);
        strcpy(r->arc, "00");
        for (size_t k = 0; k < 10; k++) {
            r->iad[k] = (uint8_t)(0x5A ^ (i + k));
        }
        r->iad_len = 10;
    }
    rc = 0;
exit:
    mpos_sealed_keys_clear(&keys);
    mpos_sealed_request_clear(&q);
    mpos_dukpt_aes_terminal_clear(&t);
    MPOS_WIPE_BUFFER(bdk);
    MPOS_WIPE_BUFFER(ik);
    MPOS_WIPE_BUFFER(pin_key);
    mpos_crypto_clear(&cc);
    return rc;
}

static void sealed_open_req(const struct bench_state *b, const struct sealed_entry *e,
                            struct hsm_sealed_open_req *r)
{
    memset(r, 0, sizeof(*r));
    r->bdk = kb_in(b->bdk_kb);
    r->sealed = e->msg;
    r->sealed_len = e->len;
    r->zpk = kb_in(b->zpk_tdes_kb);
    r->zek = kb_in(b->zek_kb);
}

/* Whether an answer of sealed.open did the whole work (cheap: inside the timed loop). */
static int open_complete(const struct hsm_sealed_open_resp *r)
{
    return r->has_pin && r->pin_block_len == 8 && r->track2_enc_len == 16 && r->has_pan_hash &&
           r->chip_card && r->emv_len > 0;
}

/* Before the timed window, one answer of each sealed command, checked down to the clear
 * values: the PIN decrypts under the ZPK (format 0), track 2 under the ZEK, the response opens
 * on the terminal. 0 or -1. */
static int check_sealed(struct bench_state *b)
{
    static struct hsm_sealed_open_resp r;
    struct hsm_sealed_open_req req;
    struct hsm_sealed_respond_resp rresp;
    mpos_sealed_response tr;
    mpos_crypto_ctx cc;
    hsm_client c;
    uint8_t key[16], t2[15], plain[HSM_SEALED_TRACK2_ENC_MAX];
    char pin_out[MPOS_PIN_BUF_LEN];
    int rc = -1;
    memset(&tr, 0, sizeof(tr));
    memset(pin_out, 0, sizeof(pin_out));
    memset(plain, 0, sizeof(plain));
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    if (hsm_client_open(&c, b->sock, 10000) != 0) {
        mpos_crypto_clear(&cc);
        return -1;
    }
    sealed_open_req(b, &b->sealed[0], &req);
    harness_hex(track2_hex, t2, sizeof(t2));
    if (hsm_client_sealed_open(&c, &req, &r) != 0 || !open_complete(&r) ||
        strcmp(r.pan, pan) != 0 || r.fields.sequence != b->sealed[0].rreq.sequence) {
        goto exit;
    }
    harness_hex(zpk_tdes_hex, key, sizeof(key));
    if (mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, sizeof(key),
                               r.pin_block, r.pin_block_len, pan, pin_out) != MPOS_OK ||
        strcmp(pin_out, pin) != 0) {
        goto exit;
    }
    harness_hex(zek_tdes_hex, key, sizeof(key));
    if (mpos_cipher_cbc(&cc, MPOS_CIPHER_TDES, 0, key, sizeof(key), r.track2_iv, r.track2_enc,
                        plain, r.track2_enc_len) != MPOS_OK ||
        memcmp(plain, t2, sizeof(t2)) != 0 || plain[sizeof(t2)] != 0x80) {
        goto exit;
    }
    if (hsm_client_sealed_respond(&c, &b->sealed[0].rreq, &rresp) != 0 ||
        mpos_sealed_open_response(&cc, &b->resp_keys0, b->sealed[0].rreq.sequence, rresp.sealed,
                                  rresp.sealed_len, &tr) != MPOS_OK ||
        strcmp(tr.response_code, "00") != 0 ||
        strcmp(tr.auth_code, b->sealed[0].rreq.auth_code) != 0 ||
        tr.iad_len != b->sealed[0].rreq.iad_len) {
        goto exit;
    }
    rc = 0;
exit:
    if (rc != 0) {
        fprintf(stderr, "mpos-bench: hsmd's sealed answers do not check\n");
    }
    hsm_client_close(&c);
    mpos_sealed_response_clear(&tr);
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(plain);
    MPOS_WIPE_BUFFER(pin_out);
    mpos_cleanse(&r, sizeof(r));
    mpos_crypto_clear(&cc);
    return rc;
}

/* One command of the bench on entry i; 0 when hsmd did it. */
static int one_op(struct bench_state *b, hsm_client *c, unsigned long i)
{
    switch (b->op) {
    case OP_PIN_TRANSLATE: {
        struct hsm_pin_block_resp resp;
        return hsm_client_pin_translate(c, &b->req[i % N_REQ], &resp);
    }
    case OP_SEALED_OPEN: {
        struct hsm_sealed_open_resp resp;
        struct hsm_sealed_open_req req;
        sealed_open_req(b, &b->sealed[i % N_SEALED], &req);
        if (hsm_client_sealed_open(c, &req, &resp) != 0 || !open_complete(&resp)) {
            return -1;
        }
        return 0;
    }
    case OP_SEALED_RESPOND: {
        struct hsm_sealed_respond_resp resp;
        if (hsm_client_sealed_respond(c, &b->sealed[i % N_SEALED].rreq, &resp) != 0 ||
            resp.sealed_len == 0) {
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static void *client_main(void *arg)
{
    struct bench_state *b = arg;
    hsm_client c;
    unsigned long i = (unsigned long)(uintptr_t)&c; /* a different start per thread */
    if (hsm_client_open(&c, b->sock, 10000) != 0) {
        atomic_fetch_add(&b->failed, 1);
        return NULL;
    }
    while (!atomic_load(&b->go)) {
        sched_yield();
    }
    while (!atomic_load(&b->stop)) {
        if (one_op(b, &c, i++) != 0) {
            atomic_fetch_add(&b->failed, 1);
            break;
        }
        atomic_fetch_add_explicit(&b->done, 1, memory_order_relaxed);
    }
    hsm_client_close(&c);
    return NULL;
}

int mpos_bench_hsmd_run(const char *name, const char *hsmd_path, double seconds,
                        unsigned connections, double *rate, double *wall_rate)
{
    static struct hsmd_harness h;
    struct bench_state *b = NULL;
    pthread_t *t = NULL;
    int rc = -1, started = 0;
    unsigned n = 0;
    enum hsmd_op op;
    *rate = 0;
    *wall_rate = 0;
    if (strcmp(name, MPOS_BENCH_HSMD_NAME) == 0) {
        op = OP_PIN_TRANSLATE;
    } else if (strcmp(name, MPOS_BENCH_HSMD_SEALED_OPEN_NAME) == 0) {
        op = OP_SEALED_OPEN;
    } else if (strcmp(name, MPOS_BENCH_HSMD_SEALED_RESPOND_NAME) == 0) {
        op = OP_SEALED_RESPOND;
    } else {
        return -1;
    }
    b = calloc(1, sizeof(*b));
    t = calloc(connections, sizeof(*t));
    if (b == NULL || t == NULL || harness_init(&h) != 0) {
        goto exit;
    }
    started = 1;
    b->op = op;
    if (harness_key_block(&h, "B0", 'A', 'X', 'N', 1, bdk_hex, b->bdk_kb, sizeof(b->bdk_kb)) ||
        harness_key_block(&h, "P0", 'A', 'B', 'N', 0, zpk_hex, b->zpk_kb, sizeof(b->zpk_kb)) ||
        harness_key_block(&h, "P0", 'T', 'B', 'N', 0, zpk_tdes_hex, b->zpk_tdes_kb,
                          sizeof(b->zpk_tdes_kb)) ||
        harness_key_block(&h, "D0", 'T', 'B', 'N', 0, zek_tdes_hex, b->zek_kb, sizeof(b->zek_kb))) {
        goto exit;
    }
    if ((op == OP_PIN_TRANSLATE ? prepare_pin(b) : prepare_sealed(b)) != 0 ||
        harness_start(&h, hsmd_path, NULL) != 0) {
        goto exit;
    }
    b->sock = h.sock[HARNESS_BACKEND];
    if (op != OP_PIN_TRANSLATE && check_sealed(b) != 0) {
        goto exit;
    }
    for (n = 0; n < connections; n++) {
        if (pthread_create(&t[n], NULL, client_main, b) != 0) {
            break;
        }
    }
    atomic_store(&b->go, 1);
    /* Warm-up, then the timed window. */
    struct timespec warm = {0, 200 * 1000000L};
    nanosleep(&warm, NULL);
    unsigned long d0 = atomic_load(&b->done);
    double t0 = clock_s(CLOCK_MONOTONIC);
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID) + proc_cpu_s(h.pid);
    struct timespec run = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&run, NULL);
    unsigned long d1 = atomic_load(&b->done);
    double t1 = clock_s(CLOCK_MONOTONIC);
    double c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID) + proc_cpu_s(h.pid);
    atomic_store(&b->stop, 1);
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    if (n == connections && atomic_load(&b->failed) == 0 && c1 > c0) {
        *wall_rate = (double)(d1 - d0) / (t1 - t0);
        *rate = 2.0 * (double)(d1 - d0) / (c1 - c0);
        rc = 0;
    }
exit:
    if (started) {
        if (harness_stop(&h) != 0) {
            rc = -1;
        }
        harness_cleanup(&h);
    }
    if (b != NULL) {
        mpos_sealed_keys_clear(&b->resp_keys0);
    }
    free(t);
    free(b);
    return rc;
}

int mpos_bench_hsmd_pin_translate(const char *hsmd_path, double seconds, unsigned connections,
                                  double *rate, double *wall_rate)
{
    return mpos_bench_hsmd_run(MPOS_BENCH_HSMD_NAME, hsmd_path, seconds, connections, rate,
                               wall_rate);
}

#ifdef MPOS_BENCH_HSMD_MAIN
/* mpos-bench-hsmd [--tsv] [--seconds S] [--connections N] [--only NAME] */
int main(int argc, char **argv)
{
    double seconds = 5.0;
    unsigned connections = 8;
    int tsv = 0, rc = 0, ran = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tsv") == 0) {
            tsv = 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc) {
            connections = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: mpos-bench-hsmd [--tsv] [--seconds S] [--connections N] "
                            "[--only NAME]\n");
            return 2;
        }
    }
    if (seconds <= 0 || connections == 0 || connections > 1024) {
        return 2;
    }
    for (size_t k = 0; k < MPOS_BENCH_HSMD_COUNT; k++) {
        const struct mpos_bench_hsmd_def *d = &mpos_bench_hsmd_defs[k];
        double rate = 0, wall = 0;
        if (only != NULL && strcmp(only, d->name) != 0) {
            continue;
        }
        ran = 1;
        if (mpos_bench_hsmd_run(d->name, MPOS_HSMD_PATH, seconds, connections, &rate, &wall) != 0) {
            fprintf(stderr, "mpos-bench-hsmd: %s failed\n", d->name);
            rc = 1;
        } else if (tsv) {
            printf("%s\t%.0f\tops/s\n", d->name, rate);
        } else {
            printf("%-22s %14.0f  %s, %u connections, per 2 cores of CPU time (hsmd + clients); "
                   "%.0f/s wall clock\n",
                   d->name, rate, d->what, connections, wall);
        }
        fflush(stdout);
    }
    if (!ran) {
        fprintf(stderr, "mpos-bench-hsmd: no bench named %s\n", only);
        return 2;
    }
    return rc;
}
#endif
