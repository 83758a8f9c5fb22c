/* mpos-testpeer: the other end of mpos-terminal in the acceptance tests (TEST-ONLY: it holds a
 * test BDK, test issuer master keys and test CA keys; nothing of it belongs in a product).
 *
 *   mpos-testpeer peer --link PATH --cards cards.tsv --bdk HEX --srv-cert PEM --srv-key PEM
 *                      --client-ca PEM --anchor-key PEM [--code CODE] [--mid MID] [--tid TID]
 *                      [--params-version N] [--activated]
 *   mpos-testpeer provision --dir DIR --bdk HEX --ikid HEX --cert DER --trust DER
 *
 * peer: plays the cashier host AND the back end of one terminal.
 *   - Host: connects to the terminal's link (a Unix socket), sends the commands read from
 *     standard input (below) and reports every event on standard output, one JSON object per
 *     line. A RESULT event ends a transaction: its line ("kind":"result") carries the prompts
 *     shown and the sealed messages the back end received since START_TXN / ACTIVATE.
 *   - Back end: the TLS records of the link's TUNNEL_DATA go to an OpenSSL TLS 1.3 server over
 *     memory BIOs (certificate --srv-cert for the name the terminal checks; the client must
 *     present a certificate chaining to --client-ca). Inside, lib/tunnel messages: HELLO ->
 *     HELLO_OK, ACTIVATE -> ACTIVATE_OK (with --code; merchant and terminal ID and a parameter
 *     package signed with terminal/core/params' builder: the endorsement by --anchor-key, the
 *     back-end CA key the terminal holds as its anchor; UnionPay AIDs A000000333010101/02/03
 *     and the virtual card's CA key), SEALED -> opened with mpos_sealed_open_request under
 *     AES DUKPT keys derived in software from --bdk; for a chip request the ARQC is
 *     recomputed from the card's issuer master key (cards.tsv: option A/B by PAN length, the
 *     PSN of the row, the common session key, the AC data the virtual card uses, card.c) and
 *     the online PIN block is decrypted and compared with the row's PIN (wrong: "55"). The
 *     answer is a SEALED_RESP with the configured response code and an ARPC of method 1 or 2.
 *     Every KSN is remembered: a KSN seen twice or not above the previous one is reported.
 *
 * Commands (standard input, one per line):
 *   connect [MS]                   connect to the link (retrying up to MS ms, 5000)
 *   disconnect                     close the link (the terminal forgets its tunnel)
 *   info                           GET_INFO
 *   start TYPE AMOUNT CURRENCY [REF]  START_TXN
 *   cancel                         CANCEL
 *   activate CODE                  ACTIVATE
 *   location LAT_E7 LON_E7 ACC TIME   SET_HOST_LOCATION
 *   raw TYPE HEX|-                 any frame type with any payload (the refusal tests)
 *   set rc XX                      response code for the next requests ("00")
 *   set mode normal|error|badmac|hold|close   answer normally, with a tunnel ERROR 7, with a
 *                                  corrupted MAC, later (hold: "held", then the release
 *                                  command sends it), or by closing the tunnel (close_notify)
 *   release                        sends the response held back in mode hold
 *   set arpc 1|2                   ARPC method (1)
 *   quit
 * Every command frame sent is reported as {"kind":"sent","seq":N,"type":T}.
 *
 * provision: the test-only provisioning of a terminal without mpos-hsmd: opens the key store
 * in DIR (after mpos-terminal keygen), imports the AES-128 DUKPT initial key derived from the
 * BDK for the initial key ID, the device certificate and the back-end CA certificate (trust
 * anchor; no separate parameter anchor).
 *
 * Exit status: 0 after quit or end of input, 1 on a failure, 2 on a usage error. Card data
 * never leaves this process in clear (masked PANs only in the JSON lines).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "card.h"
#include "hal_linux.h"
#include "keystore/keystore.h"
#include "link/link.h"
#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/ecc.h"
#include "mpos/emv.h"
#include "mpos/pin.h"
#include "mpos/tlv.h"
#include "mpos/tunnel.h"
#include "mpos/util.h"
#include "params.h"
#include "txn/sealed.h"

#define MAX_CARDS 32
#define MAX_KSNS  4096
#define MAX_EVTS  64
#define JSON_MAX  16384

enum mode { MODE_NORMAL, MODE_ERROR, MODE_BADMAC, MODE_HOLD, MODE_CLOSE };

struct card_row {
    char name[32], pan[20], psn[3], pin[13];
    uint8_t imk[MPOS_EMV_KEY_LEN];
};

struct peer {
    /* configuration */
    const char *link_path;
    char code[MPOS_TUNNEL_CODE_MAX + 1];
    char mid[MPOS_TUNNEL_MERCHANT_LEN + 1];
    char tid[MPOS_TUNNEL_TERMINAL_LEN + 1];
    uint8_t bdk[32];
    size_t bdk_len;
    int activated;
    struct card_row cards[MAX_CARDS];
    size_t ncards;
    uint8_t pkg[MPOS_PARAMS_MAX_LEN];
    size_t pkg_len;
    /* scenario */
    char rc[3];
    enum mode mode;
    int arpc;
    /* link */
    int fd;
    mpos_link_decoder dec;
    uint16_t seq;
    /* TLS server and tunnel */
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    int hs_done;
    mpos_tunnel_reader rd;
    /* crypto */
    mpos_crypto_ctx cc;
    /* KSNs seen (anti-replay report) */
    uint8_t ksns[MAX_KSNS][MPOS_SEALED_MAX_KSN_LEN];
    size_t nksn;
    uint32_t last_counter;
    /* a response held back (mode hold) until the release command */
    uint8_t held[MPOS_SEALED_MAX_RESPONSE_LEN];
    size_t held_len;
    uint32_t held_seq;
    char held_rc[3];
    /* the transaction in progress (between START_TXN / ACTIVATE and RESULT) */
    char evts[JSON_MAX];
    size_t evts_len;
    char sealed[JSON_MAX];
    size_t sealed_len;
};

static struct peer P;

/* ---- output ------------------------------------------------------------------------------ */

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void append(char *buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    if (*len >= JSON_MAX - 1) {
        return;
    }
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, JSON_MAX - *len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *len += (size_t)n < JSON_MAX - *len ? (size_t)n : JSON_MAX - 1 - *len;
    }
}

static void hex(char *dst, const uint8_t *p, size_t n)
{
    static const char d[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = d[p[i] >> 4];
        dst[2 * i + 1] = d[p[i] & 15];
    }
    dst[2 * n] = '\0';
}

static int unhex(const char *s, uint8_t *out_buf, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > cap) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out_buf[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

static void txn_reset(void)
{
    P.evts_len = 0;
    P.evts[0] = '\0';
    P.sealed_len = 0;
    P.sealed[0] = '\0';
}

/* ---- the link (host side) ---------------------------------------------------------------- */

static void link_close(const char *why)
{
    if (P.fd >= 0) {
        close(P.fd);
        P.fd = -1;
        out("{\"kind\":\"closed\",\"why\":\"%s\"}", why);
    }
    if (P.ssl != NULL) {
        SSL_free(P.ssl); /* frees both BIOs */
        P.ssl = NULL;
    }
    mpos_tunnel_reader_init(&P.rd);
}

static int send_frame_x(uint8_t type, const uint8_t *payload, size_t len, int report)
{
    uint8_t buf[MPOS_LINK_MAX_FRAME_LEN];
    size_t n = 0, off = 0;
    uint16_t seq = P.seq++;
    if (P.fd < 0) {
        out("{\"kind\":\"fail\",\"what\":\"not connected\"}");
        return -1;
    }
    if (mpos_link_frame_encode(type, seq, payload, len, buf, sizeof(buf), &n) != 0) {
        return -1;
    }
    while (off < n) {
        ssize_t w = send(P.fd, buf + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            link_close("send failed");
            return -1;
        }
        off += (size_t)w;
    }
    if (report) {
        out("{\"kind\":\"sent\",\"seq\":%u,\"type\":%u}", seq, type);
    }
    return 0;
}

/* A command frame, reported as "sent" (the TLS relay's frames are not). */
static int send_frame(uint8_t type, const uint8_t *payload, size_t len)
{
    return send_frame_x(type, payload, len, 1);
}

static int send_msg(mpos_link_msg *m)
{
    uint8_t buf[MPOS_LINK_MAX_FRAME_LEN];
    size_t n = 0;
    m->seq = P.seq;
    if (mpos_link_encode(m, buf, sizeof(buf), &n) != 0) {
        out("{\"kind\":\"fail\",\"what\":\"cannot encode the command\"}");
        return -1;
    }
    /* payload of the encoded frame, resent through send_frame for one code path */
    return send_frame(m->type, buf + MPOS_LINK_HEADER_LEN,
                      n - MPOS_LINK_HEADER_LEN - MPOS_LINK_TRAILER_LEN);
}

static void tls_flush(void)
{
    uint8_t buf[MPOS_LINK_MAX_PAYLOAD];
    while (P.ssl != NULL && BIO_ctrl_pending(P.wbio) > 0) {
        int n = BIO_read(P.wbio, buf, sizeof(buf));
        if (n <= 0 || send_frame_x(MPOS_LINK_CMD_TUNNEL_DATA, buf, (size_t)n, 0) != 0) {
            break;
        }
    }
}

/* ---- back end: keys ---------------------------------------------------------------------- */

static int key_fn(void *ctx, enum mpos_sealed_scheme scheme, enum mpos_sealed_dir dir,
                  const uint8_t *ksn, size_t ksn_len, mpos_sealed_keys *keys)
{
    uint8_t mk[16], dk[16];
    int r;
    (void)ctx;
    if (scheme != MPOS_SEALED_AES128 || ksn_len != MPOS_DUKPT_AES_KSN_LEN) {
        return MPOS_ERR_KEY;
    }
    int req = dir == MPOS_SEALED_DIR_REQUEST;
    /* X9.24-3-2017 6.3.2 usages: request 2000 / 3000, response 2001 / 3001 (protocol.md 2.1) */
    if ((r = mpos_dukpt_aes_working_key(&P.cc, P.bdk, P.bdk_len, ksn,
                                        req ? MPOS_DUKPT_AES_USAGE_MAC_GEN
                                            : MPOS_DUKPT_AES_USAGE_MAC_VERIFY,
                                        MPOS_DUKPT_AES_KEY_AES128, mk)) == 0 &&
        (r = mpos_dukpt_aes_working_key(&P.cc, P.bdk, P.bdk_len, ksn,
                                        req ? MPOS_DUKPT_AES_USAGE_DATA_ENC
                                            : MPOS_DUKPT_AES_USAGE_DATA_DEC,
                                        MPOS_DUKPT_AES_KEY_AES128, dk)) == 0) {
        r = mpos_sealed_keys_set(keys, scheme, dir, ksn, ksn_len, mk, dk, 16);
    }
    mpos_cleanse(mk, sizeof(mk));
    mpos_cleanse(dk, sizeof(dk));
    return r;
}

static const struct card_row *card_by_pan(const char *pan)
{
    for (size_t i = 0; i < P.ncards; i++) {
        if (strcmp(P.cards[i].pan, pan) == 0) {
            return &P.cards[i];
        }
    }
    return NULL;
}

/* The PIN block (format 4 under the AES DUKPT PIN key, usage 1000) against the row's PIN:
 * 1 right, 0 wrong, -1 cannot tell. */
static int pin_check(const mpos_sealed_request *q, const struct card_row *c)
{
    uint8_t pk[16];
    char pin[MPOS_PIN_BUF_LEN];
    int res = -1;
    if (!q->has_pin || c == NULL || q->pin_format != 4) {
        return -1;
    }
    if (mpos_dukpt_aes_working_key(&P.cc, P.bdk, P.bdk_len, q->ksn, MPOS_DUKPT_AES_USAGE_PIN,
                                   MPOS_DUKPT_AES_KEY_AES128, pk) == 0 &&
        mpos_pin_block_decrypt(&P.cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, pk, sizeof(pk),
                               q->pin_block, q->pin_block_len, q->card.pan, pin) == 0) {
        res = strcmp(pin, c->pin) == 0;
    }
    mpos_cleanse(pk, sizeof(pk));
    mpos_cleanse(pin, sizeof(pin));
    return res;
}

static int emv_get(const uint8_t *emv, size_t len, uint32_t tag, size_t want, uint8_t *dst)
{
    mpos_tlv o;
    int found = 0;
    if (mpos_tlv_find(emv, len, MPOS_TLV_STRICT, tag, &o, &found) != 0 || !found ||
        (want != 0 && o.len != want)) {
        return -1;
    }
    memcpy(dst, o.value, o.len);
    return (int)o.len;
}

/* Issuer side of the ARQC (EMV Book 2 8.1, A1.4, A1.3.1) as the virtual card computes it:
 * 1 verified, 0 not, -1 missing data. On 1, sk holds the session key for the ARPC. */
static int arqc_check(const mpos_sealed_request *q, const struct card_row *c,
                      uint8_t sk[MPOS_EMV_KEY_LEN], uint8_t arqc[MPOS_EMV_AC_LEN])
{
    struct mpos_emv_ac_fields f;
    uint8_t mk[MPOS_EMV_KEY_LEN], data[MPOS_EMV_AC_DATA_MAX_LEN], iad[32];
    size_t dlen = 0;
    int n, res = -1;
    const uint8_t *e = q->card.emv;
    size_t el = q->card.emv_len;
    memset(&f, 0, sizeof(f));
    if (c == NULL || el == 0) {
        return -1;
    }
    if (emv_get(e, el, 0x9F02, 6, f.amount_authorised) < 0 ||
        emv_get(e, el, 0x9F1A, 2, f.terminal_country) < 0 || emv_get(e, el, 0x95, 5, f.tvr) < 0 ||
        emv_get(e, el, 0x5F2A, 2, f.currency) < 0 || emv_get(e, el, 0x9A, 3, f.date) < 0 ||
        emv_get(e, el, 0x9C, 1, &f.type) < 0 || emv_get(e, el, 0x9F37, 4, f.un) < 0 ||
        emv_get(e, el, 0x82, 2, f.aip) < 0 || emv_get(e, el, 0x9F36, 2, f.atc) < 0 ||
        emv_get(e, el, 0x9F26, 8, arqc) < 0 || (n = emv_get(e, el, 0x9F10, 0, iad)) < 8) {
        return -1;
    }
    (void)emv_get(e, el, 0x9F03, 6, f.amount_other); /* zeros when absent, as on the card */
    /* PBOC IAD: length, DKI, CVN, then the CVR with its length byte: the issuer-defined part
     * of the AC data (card.c) */
    f.iad_part = &iad[3];
    f.iad_part_len = (size_t)iad[3] + 1;
    if ((size_t)n < 3 + f.iad_part_len) {
        return -1;
    }
    enum mpos_emv_mk_option opt = strlen(c->pan) > 16 ? MPOS_EMV_MK_OPTION_B : MPOS_EMV_MK_OPTION_A;
    if (mpos_emv_derive_icc_mk(&P.cc, opt, c->imk, sizeof(c->imk), c->pan, c->psn, mk) == 0 &&
        mpos_emv_derive_sk(&P.cc, MPOS_EMV_SK_COMMON, mk, sizeof(mk), f.atc, sk) == 0 &&
        mpos_emv_ac_data_build(&f, data, sizeof(data), &dlen) == 0) {
        res = mpos_emv_ac_verify(&P.cc, sk, MPOS_EMV_KEY_LEN, data, dlen, arqc) == 0;
    }
    mpos_cleanse(mk, sizeof(mk));
    return res;
}

/* ---- back end: tunnel messages ----------------------------------------------------------- */

static void tun_send(const mpos_tunnel_msg *m)
{
    static uint8_t buf[MPOS_TUNNEL_MAX_MSG];
    size_t n = 0;
    if (P.ssl == NULL) {
        return;
    }
    if (mpos_tunnel_encode(m, buf, sizeof(buf), &n) != 0) {
        out("{\"kind\":\"fail\",\"what\":\"tunnel encode\"}");
        return;
    }
    if (SSL_write(P.ssl, buf, (int)n) != (int)n) {
        out("{\"kind\":\"fail\",\"what\":\"SSL_write\"}");
    }
    tls_flush();
}

static void tun_error(uint8_t status)
{
    static mpos_tunnel_msg m;
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ERROR);
    m.status = status;
    tun_send(&m);
}

static void fill_activation(mpos_tunnel_msg *m)
{
    memcpy(m->merchant_id, P.mid, sizeof(m->merchant_id));
    memcpy(m->terminal_id, P.tid, sizeof(m->terminal_id));
    memcpy(m->params, P.pkg, P.pkg_len);
    m->params_len = P.pkg_len;
}

static void on_sealed(const uint8_t *body, size_t len)
{
    static mpos_sealed_request q;
    static mpos_sealed_response resp;
    static uint8_t sealed[MPOS_SEALED_MAX_RESPONSE_LEN];
    static mpos_tunnel_msg m;
    uint8_t sk[MPOS_EMV_KEY_LEN], arqc[MPOS_EMV_AC_LEN];
    char ksn_hex[2 * MPOS_SEALED_MAX_KSN_LEN + 1], line[2048];
    size_t ll = 0, slen = 0;
    int r = mpos_sealed_open_request(&P.cc, key_fn, NULL, body, len, &q);
    if (r != 0) {
        out("{\"kind\":\"sealed_refused\",\"err\":%d}", r);
        tun_error(MPOS_TUNNEL_ST_REFUSED);
        return;
    }
    hex(ksn_hex, q.ksn, q.ksn_len);
    /* anti-replay, as the back end's B-REPLAY-1: report, never silently accept */
    int dup = 0;
    for (size_t i = 0; i < P.nksn; i++) {
        dup |= q.ksn_len == MPOS_DUKPT_AES_KSN_LEN && memcmp(P.ksns[i], q.ksn, q.ksn_len) == 0;
    }
    uint32_t counter = mpos_load_be32(&q.ksn[8]);
    int increasing = counter > P.last_counter;
    if (P.nksn < MAX_KSNS) {
        memcpy(P.ksns[P.nksn++], q.ksn, q.ksn_len);
    }
    if (counter > P.last_counter) {
        P.last_counter = counter;
    }
    const struct card_row *c = q.card.pan[0] ? card_by_pan(q.card.pan) : NULL;
    int is_req = q.msg_type == MPOS_SEALED_MSG_REQUEST;
    int chip = q.entry_mode == MPOS_ENTRY_CHIP;
    int arqc_ok = chip ? arqc_check(&q, c, sk, arqc) : -1;
    int pin_ok = pin_check(&q, c);
    const char *answer = "normal";
    uint8_t a9f02[6] = {0}, c5f2a[2] = {0};
    long long emv_amount = -1;
    int emv_currency = -1;
    if (chip && emv_get(q.card.emv, q.card.emv_len, 0x9F02, 6, a9f02) == 6 &&
        emv_get(q.card.emv, q.card.emv_len, 0x5F2A, 2, c5f2a) == 2) {
        emv_amount = 0;
        for (size_t i = 0; i < 6; i++) {
            emv_amount = emv_amount * 100 + (a9f02[i] >> 4) * 10 + (a9f02[i] & 15);
        }
        emv_currency =
            (c5f2a[0] >> 4) * 1000 + (c5f2a[0] & 15) * 100 + (c5f2a[1] >> 4) * 10 + (c5f2a[1] & 15);
    }
    char rc[3];
    memcpy(rc, is_req ? P.rc : "00", 3);
    if (is_req && pin_ok == 0) {
        memcpy(rc, "55", 3); /* incorrect PIN */
    }
    if (is_req && chip && arqc_ok != 1) {
        memcpy(rc, "05", 3); /* a cryptogram that does not verify: do not honour */
    }
    if (is_req) {
        answer = P.mode == MODE_ERROR    ? "error"
                 : P.mode == MODE_BADMAC ? "badmac"
                 : P.mode == MODE_HOLD   ? "hold"
                 : P.mode == MODE_CLOSE  ? "close"
                                         : "normal";
    }
    append(line, &ll, "{\"msg\":\"%s\",\"ksn\":\"%s\",\"ksn_dup\":%s,\"ksn_increasing\":%s,",
           is_req ? "request" : "reversal", ksn_hex, dup ? "true" : "false",
           increasing ? "true" : "false");
    append(line, &ll,
           "\"sequence\":%u,\"type\":%u,\"amount\":%llu,\"currency\":%u,\"entry_mode\":%u,"
           "\"fallback\":%u,\"pan\":\"%s\",\"mid\":\"%s\",\"tid\":\"%s\",\"ref\":\"%s\",",
           q.sequence, q.txn_type, (unsigned long long)q.amount, q.currency, q.entry_mode,
           q.fallback, q.masked_pan, q.merchant_id, q.terminal_id, q.original_ref);
    append(line, &ll,
           "\"has_location\":%s,\"has_pin\":%s,\"pin_ok\":%s,\"track2\":%s,\"emv\":%s,"
           "\"arqc_verified\":%s,\"emv_amount\":%lld,\"emv_currency\":%d,\"rc\":\"%s\","
           "\"answer\":\"%s\"}",
           q.has_location ? "true" : "false", q.has_pin ? "true" : "false",
           pin_ok < 0 ? "null"
           : pin_ok   ? "true"
                      : "false",
           q.card.track2_len ? "true" : "false", q.card.emv_len ? "true" : "false",
           arqc_ok < 0 ? "null"
           : arqc_ok   ? "true"
                       : "false",
           emv_amount, emv_currency, rc, answer);
    out("{\"kind\":\"sealed\",\"sealed\":%s}", line);
    append(P.sealed, &P.sealed_len, "%s%s", P.sealed_len ? "," : "", line);

    if (is_req && P.mode == MODE_CLOSE) {
        /* close_notify: the terminal's tunnel ends; the link stays */
        (void)SSL_shutdown(P.ssl);
        tls_flush();
        SSL_free(P.ssl);
        P.ssl = NULL;
        mpos_tunnel_reader_init(&P.rd);
        goto exit;
    }
    if (is_req && P.mode == MODE_ERROR) {
        tun_error(MPOS_TUNNEL_ST_INTERNAL);
        goto exit;
    }
    memset(&resp, 0, sizeof(resp));
    resp.scheme = q.scheme;
    memcpy(resp.ksn, q.ksn, q.ksn_len);
    resp.ksn_len = q.ksn_len;
    resp.sequence = q.sequence;
    memcpy(resp.response_code, rc, 3);
    if (is_req && strcmp(rc, "00") == 0) {
        snprintf(resp.auth_code, sizeof(resp.auth_code), "A%05u", q.sequence % 100000u);
    }
    if (is_req) {
        snprintf(resp.rrn, sizeof(resp.rrn), "%012u", q.sequence);
    }
    if (is_req && chip && arqc_ok == 1) {
        /* Issuer authentication data (Book 2 8.2): ARC = the response code's two characters */
        uint8_t arc[2] = {(uint8_t)rc[0], (uint8_t)rc[1]};
        memcpy(resp.arc, rc, 3);
        if (P.arpc == 2) {
            static const uint8_t csu[4] = {0x00, 0x80, 0x00, 0x00};
            if (mpos_emv_arpc2_generate(&P.cc, sk, sizeof(sk), arqc, csu, NULL, 0, resp.iad) == 0) {
                memcpy(&resp.iad[4], csu, 4);
                resp.iad_len = 8;
            }
        } else if (mpos_emv_arpc1_generate(&P.cc, sk, sizeof(sk), arqc, arc, resp.iad) == 0) {
            memcpy(&resp.iad[8], arc, 2);
            resp.iad_len = 10;
        }
    }
    r = mpos_sealed_seal_response(&P.cc, key_fn, NULL, &resp, NULL, NULL, sealed, sizeof(sealed),
                                  &slen);
    if (r != 0) {
        out("{\"kind\":\"fail\",\"what\":\"seal response\",\"err\":%d}", r);
        tun_error(MPOS_TUNNEL_ST_INTERNAL);
        goto exit;
    }
    if (is_req && P.mode == MODE_BADMAC) {
        sealed[slen - 1] ^= 0x01; /* the last byte of the MAC */
    }
    if (is_req && P.mode == MODE_HOLD) {
        /* kept for the release command (the terminal waits online meanwhile) */
        memcpy(P.held, sealed, slen);
        P.held_len = slen;
        P.held_seq = q.sequence;
        memcpy(P.held_rc, rc, 3);
        out("{\"kind\":\"held\",\"sequence\":%u}", q.sequence);
        goto exit;
    }
    mpos_tunnel_msg_init(&m, MPOS_TUNNEL_SEALED_RESP);
    m.body = sealed;
    m.body_len = slen;
    tun_send(&m);
    out("{\"kind\":\"responded\",\"sequence\":%u,\"rc\":\"%s\"}", q.sequence, rc);
exit:
    mpos_cleanse(sk, sizeof(sk));
    mpos_sealed_request_clear(&q);
    mpos_sealed_response_clear(&resp);
}

static void on_tunnel(const mpos_tunnel_msg *in)
{
    static mpos_tunnel_msg m;
    switch (in->type) {
    case MPOS_TUNNEL_HELLO:
        out("{\"kind\":\"tunnel\",\"msg\":\"HELLO\",\"serial\":\"%s\",\"firmware\":\"%s\"}",
            in->serial, in->firmware);
        mpos_tunnel_msg_init(&m, MPOS_TUNNEL_HELLO_OK);
        m.status = MPOS_TUNNEL_ST_OK;
        m.activated = (uint8_t)P.activated;
        if (P.activated) {
            fill_activation(&m);
        }
        tun_send(&m);
        break;
    case MPOS_TUNNEL_ACTIVATE: {
        int ok = strcmp(in->code, P.code) == 0;
        out("{\"kind\":\"tunnel\",\"msg\":\"ACTIVATE\",\"serial\":\"%s\",\"ok\":%s}", in->serial,
            ok ? "true" : "false");
        mpos_tunnel_msg_init(&m, MPOS_TUNNEL_ACTIVATE_OK);
        m.status = ok ? MPOS_TUNNEL_ST_OK : MPOS_TUNNEL_ST_CODE_WRONG;
        if (ok) {
            fill_activation(&m);
            P.activated = 1;
        }
        tun_send(&m);
        break;
    }
    case MPOS_TUNNEL_SEALED:
        on_sealed(in->body, in->body_len);
        break;
    default:
        out("{\"kind\":\"tunnel\",\"msg\":\"%s\",\"unexpected\":true}",
            mpos_tunnel_type_name(in->type));
        tun_error(MPOS_TUNNEL_ST_REFUSED);
        break;
    }
}

static void tls_fail(const char *what)
{
    char err[256] = "";
    unsigned long e = ERR_get_error();
    if (e != 0) {
        ERR_error_string_n(e, err, sizeof(err));
    }
    ERR_clear_error();
    out("{\"kind\":\"tls\",\"event\":\"error\",\"what\":\"%s\",\"ssl\":\"%s\"}", what, err);
    tls_flush(); /* the alert */
    SSL_free(P.ssl);
    P.ssl = NULL;
    mpos_tunnel_reader_init(&P.rd);
}

static void on_tunnel_data(const uint8_t *data, size_t len)
{
    static uint8_t buf[MPOS_TUNNEL_MAX_MSG];
    static mpos_tunnel_msg m;
    if (P.ssl == NULL) {
        /* the first bytes of a new inner connection (system-design.md 2) */
        P.ssl = SSL_new(P.ctx);
        P.rbio = BIO_new(BIO_s_mem());
        P.wbio = BIO_new(BIO_s_mem());
        if (P.ssl == NULL || P.rbio == NULL || P.wbio == NULL) {
            out("{\"kind\":\"fail\",\"what\":\"SSL_new\"}");
            exit(1);
        }
        SSL_set_bio(P.ssl, P.rbio, P.wbio);
        SSL_set_accept_state(P.ssl);
        P.hs_done = 0;
        mpos_tunnel_reader_init(&P.rd);
    }
    BIO_write(P.rbio, data, (int)len);
    if (!P.hs_done) {
        int r = SSL_do_handshake(P.ssl);
        if (r != 1) {
            int e = SSL_get_error(P.ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                tls_flush();
                return;
            }
            tls_fail("handshake");
            return;
        }
        P.hs_done = 1;
        X509 *cert = SSL_get0_peer_certificate(P.ssl);
        char subj[256] = "";
        if (cert != NULL) {
            X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof(subj));
        }
        out("{\"kind\":\"tls\",\"event\":\"handshake\",\"version\":\"%s\",\"client\":\"%s\"}",
            SSL_get_version(P.ssl), subj);
        tls_flush();
    }
    for (;;) {
        int n = SSL_read(P.ssl, buf, sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(P.ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                break;
            }
            if (e == SSL_ERROR_ZERO_RETURN) {
                out("{\"kind\":\"tls\",\"event\":\"close_notify\"}");
                SSL_free(P.ssl);
                P.ssl = NULL;
                return;
            }
            tls_fail("read");
            return;
        }
        const uint8_t *p = buf;
        size_t left = (size_t)n;
        while (left > 0 && P.ssl != NULL) {
            size_t used = 0;
            int got = 0;
            if (mpos_tunnel_reader_feed(&P.rd, p, left, &used) != 0) {
                out("{\"kind\":\"tunnel\",\"msg\":\"framing error\"}");
                tls_fail("tunnel framing");
                return;
            }
            p += used;
            left -= used;
            int r = mpos_tunnel_reader_take(&P.rd, &m, &got);
            if (r != 0) {
                out("{\"kind\":\"tunnel\",\"msg\":\"malformed\"}");
                tun_error(MPOS_TUNNEL_ST_REFUSED);
            } else if (got) {
                on_tunnel(&m);
            }
        }
        if (P.ssl == NULL) {
            return;
        }
    }
    tls_flush();
}

/* ---- events from the terminal ------------------------------------------------------------ */

static void on_frame(const mpos_link_frame *f)
{
    static mpos_link_msg m;
    if (mpos_link_decode(f, &m) != 0) {
        out("{\"kind\":\"bad_event\",\"type\":%u,\"len\":%zu}", f->type, f->len);
        return;
    }
    switch (m.type) {
    case MPOS_LINK_EVT_TUNNEL_DATA:
        on_tunnel_data(m.u.tunnel.data, m.u.tunnel.len);
        break;
    case MPOS_LINK_EVT_INFO:
        out("{\"kind\":\"info\",\"ref\":%u,\"state\":%u,\"serial\":\"%s\",\"firmware\":\"%s\"}",
            m.u.info.ref_seq, m.u.info.state, m.u.info.serial, m.u.info.firmware);
        break;
    case MPOS_LINK_EVT_ACK:
        out("{\"kind\":\"ack\",\"ref\":%u,\"type\":%u}", m.u.ack.ref_seq, m.u.ack.ref_type);
        break;
    case MPOS_LINK_EVT_ERROR:
        out("{\"kind\":\"error\",\"ref\":%u,\"type\":%u,\"code\":%u,\"state\":%u}",
            m.u.error.ref_seq, m.u.error.ref_type, m.u.error.code, m.u.error.state);
        break;
    case MPOS_LINK_EVT_PROMPT_SHOWN:
        out("{\"kind\":\"prompt\",\"prompt\":\"%s\",\"type\":%u,\"amount\":%llu,\"currency\":%u,"
            "\"count\":%u}",
            mpos_link_prompt_name(m.u.prompt.prompt), m.u.prompt.txn_type,
            (unsigned long long)m.u.prompt.amount, m.u.prompt.currency, m.u.prompt.count);
        append(P.evts, &P.evts_len, "%s\"%s\"", P.evts_len ? "," : "",
               mpos_link_prompt_name(m.u.prompt.prompt));
        break;
    case MPOS_LINK_EVT_RESULT:
        out("{\"kind\":\"result\",\"outcome\":\"%s\",\"type\":%u,\"amount\":%llu,\"currency\":%u,"
            "\"sequence\":%u,\"rc\":\"%s\",\"auth\":\"%s\",\"rrn\":\"%s\",\"pan\":\"%s\","
            "\"events\":[%s],\"sealed\":[%s]}",
            mpos_link_outcome_name(m.u.result.outcome), m.u.result.txn_type,
            (unsigned long long)m.u.result.amount, m.u.result.currency, m.u.result.txn_seq,
            m.u.result.response_code, m.u.result.auth_code, m.u.result.rrn, m.u.result.masked_pan,
            P.evts, P.sealed);
        txn_reset();
        break;
    default:
        out("{\"kind\":\"unexpected\",\"type\":%u}", m.type);
        break;
    }
}

static void on_link_readable(void)
{
    uint8_t buf[8192];
    ssize_t n = recv(P.fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        link_close(n == 0 ? "terminal closed the link" : "recv failed");
        return;
    }
    const uint8_t *p = buf;
    size_t left = (size_t)n;
    while (left > 0 && P.fd >= 0) {
        size_t used = 0;
        mpos_link_frame f;
        int r = mpos_link_decoder_feed(&P.dec, p, left, &used, &f);
        p += used;
        left -= used;
        if (r == 1) {
            on_frame(&f);
        } else if (r != 0) {
            break;
        }
    }
}

/* ---- commands ---------------------------------------------------------------------------- */

static void do_connect(unsigned ms)
{
    struct sockaddr_un a;
    struct timespec ts = {0, 20 * 1000000L};
    link_close("reconnect");
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", P.link_path);
    for (unsigned waited = 0;; waited += 20) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            P.fd = fd;
            break;
        }
        if (fd >= 0) {
            close(fd);
        }
        if (waited >= ms) {
            out("{\"kind\":\"fail\",\"what\":\"connect\",\"errno\":%d}", errno);
            return;
        }
        nanosleep(&ts, NULL);
    }
    mpos_link_decoder_init(&P.dec);
    txn_reset();
    out("{\"kind\":\"connected\"}");
}

static void command(char *line)
{
    static mpos_link_msg m;
    char *argv[8];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok != NULL && argc < 8;
         tok = strtok(NULL, " \t\r\n")) {
        argv[argc++] = tok;
    }
    if (argc == 0) {
        return;
    }
    memset(&m, 0, sizeof(m));
    if (strcmp(argv[0], "connect") == 0) {
        do_connect(argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 5000u);
    } else if (strcmp(argv[0], "disconnect") == 0) {
        link_close("disconnect command");
    } else if (strcmp(argv[0], "info") == 0) {
        m.type = MPOS_LINK_CMD_GET_INFO;
        (void)send_msg(&m);
    } else if (strcmp(argv[0], "start") == 0 && argc >= 4) {
        m.type = MPOS_LINK_CMD_START_TXN;
        m.u.start.txn_type = (uint8_t)strtoul(argv[1], NULL, 10);
        m.u.start.amount = strtoull(argv[2], NULL, 10);
        m.u.start.currency = (uint16_t)strtoul(argv[3], NULL, 10);
        if (argc > 4) {
            snprintf(m.u.start.original_ref, sizeof(m.u.start.original_ref), "%s", argv[4]);
        }
        txn_reset();
        (void)send_msg(&m);
    } else if (strcmp(argv[0], "cancel") == 0) {
        m.type = MPOS_LINK_CMD_CANCEL;
        (void)send_msg(&m);
    } else if (strcmp(argv[0], "activate") == 0 && argc == 2) {
        m.type = MPOS_LINK_CMD_ACTIVATE;
        snprintf(m.u.activate.code, sizeof(m.u.activate.code), "%s", argv[1]);
        txn_reset();
        (void)send_msg(&m);
    } else if (strcmp(argv[0], "location") == 0 && argc == 5) {
        m.type = MPOS_LINK_CMD_SET_HOST_LOCATION;
        m.u.location.lat_e7 = (int32_t)strtol(argv[1], NULL, 10);
        m.u.location.lon_e7 = (int32_t)strtol(argv[2], NULL, 10);
        m.u.location.accuracy_m = (uint32_t)strtoul(argv[3], NULL, 10);
        m.u.location.time = strtoull(argv[4], NULL, 10);
        (void)send_msg(&m);
    } else if (strcmp(argv[0], "raw") == 0 && argc == 3) {
        static uint8_t payload[MPOS_LINK_MAX_PAYLOAD];
        size_t n = 0;
        if (strcmp(argv[2], "-") != 0 && unhex(argv[2], payload, sizeof(payload), &n) != 0) {
            out("{\"kind\":\"fail\",\"what\":\"bad hex\"}");
            return;
        }
        (void)send_frame((uint8_t)strtoul(argv[1], NULL, 0), payload, n);
    } else if (strcmp(argv[0], "set") == 0 && argc == 3) {
        if (strcmp(argv[1], "rc") == 0 && strlen(argv[2]) == 2) {
            memcpy(P.rc, argv[2], 3);
        } else if (strcmp(argv[1], "mode") == 0) {
            P.mode = strcmp(argv[2], "error") == 0    ? MODE_ERROR
                     : strcmp(argv[2], "badmac") == 0 ? MODE_BADMAC
                     : strcmp(argv[2], "hold") == 0   ? MODE_HOLD
                     : strcmp(argv[2], "close") == 0  ? MODE_CLOSE
                                                      : MODE_NORMAL;
        } else if (strcmp(argv[1], "arpc") == 0) {
            P.arpc = atoi(argv[2]) == 2 ? 2 : 1;
        } else {
            out("{\"kind\":\"fail\",\"what\":\"bad set\"}");
            return;
        }
        out("{\"kind\":\"set\",\"rc\":\"%s\",\"mode\":%d,\"arpc\":%d}", P.rc, (int)P.mode, P.arpc);
    } else if (strcmp(argv[0], "release") == 0) {
        static mpos_tunnel_msg tm;
        if (P.held_len == 0 || P.ssl == NULL) {
            out("{\"kind\":\"fail\",\"what\":\"nothing held\"}");
            return;
        }
        mpos_tunnel_msg_init(&tm, MPOS_TUNNEL_SEALED_RESP);
        tm.body = P.held;
        tm.body_len = P.held_len;
        tun_send(&tm);
        P.held_len = 0;
        out("{\"kind\":\"responded\",\"sequence\":%u,\"rc\":\"%s\"}", P.held_seq, P.held_rc);
    } else if (strcmp(argv[0], "quit") == 0) {
        link_close("quit");
        exit(0);
    } else {
        out("{\"kind\":\"fail\",\"what\":\"unknown command\"}");
    }
}

/* ---- set-up ------------------------------------------------------------------------------ */

static int load_cards(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL && P.ncards < MAX_CARDS) {
        static mpos_cardsim_profile pr;
        if (line[0] == '#' || line[0] == '\n' || mpos_cardsim_profile_parse(line, &pr) != 0) {
            continue;
        }
        struct card_row *c = &P.cards[P.ncards++];
        snprintf(c->name, sizeof(c->name), "%s", pr.name);
        snprintf(c->pan, sizeof(c->pan), "%s", pr.pan);
        snprintf(c->psn, sizeof(c->psn), "%s", pr.psn);
        snprintf(c->pin, sizeof(c->pin), "%s", pr.pin);
        memcpy(c->imk, pr.imk, sizeof(c->imk));
        mpos_cleanse(&pr, sizeof(pr));
    }
    fclose(f);
    return P.ncards > 0 ? 0 : -1;
}

static int anchor_sign(void *ctx, const uint8_t *msg, size_t len,
                       uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    return mpos_ecdsa_p256_sign((const uint8_t *)ctx, msg, len, sig);
}

/* The 32-byte scalar of a P-256 private key in a PEM file. */
static int load_p256_priv(const char *path, uint8_t priv[MPOS_EC_P256_PRIV_LEN])
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;
    BIGNUM *d = NULL;
    int ok;
    if (f == NULL) {
        return -1;
    }
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ok = k != NULL && EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1 &&
         BN_bn2binpad(d, priv, MPOS_EC_P256_PRIV_LEN) == MPOS_EC_P256_PRIV_LEN;
    BN_clear_free(d);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

/* The parameter package of the tests (docs/protocol.md 3): endorsement by the anchor (the
 * back-end CA key), a fresh parameter-signing key, three UnionPay AIDs, the virtual card's CA
 * key, China / CNY. */
static int build_package(const char *anchor_path, uint32_t version)
{
    static mpos_params p;
    static mpos_params_endorsement e;
    uint8_t anchor[MPOS_EC_P256_PRIV_LEN], spriv[MPOS_EC_P256_PRIV_LEN], end[512];
    size_t end_len = 0, ml = 0, xl = 0;
    int64_t now = (int64_t)time(NULL);
    int r = -1;
    static const char *const aids[3] = {"A000000333010101", "A000000333010102", "A000000333010103"};
    memset(&p, 0, sizeof(p));
    memset(&e, 0, sizeof(e));
    if (load_p256_priv(anchor_path, anchor) != 0 || mpos_ec_p256_generate(spriv, e.pub) != 0) {
        goto exit;
    }
    e.usage = MPOS_PARAMS_USAGE;
    e.not_before = now - 86400;
    e.not_after = now + 30 * 86400;
    if (mpos_params_endorsement_build(&e, anchor_sign, anchor, end, sizeof(end), &end_len) != 0) {
        goto exit;
    }
    p.version = version;
    p.issued = now;
    p.min_firmware = 0x000100; /* 0.1.0: mpos-terminal is 0.1.0-sim */
    p.country[0] = 0x01;
    p.country[1] = 0x56;
    p.currency[0] = 0x01;
    p.currency[1] = 0x56;
    p.currency_exponent = 2;
    for (size_t i = 0; i < 3; i++) {
        mpos_params_aid *a = &p.aids[i];
        size_t n = 0;
        if (unhex(aids[i], a->aid, sizeof(a->aid), &n) != 0) {
            goto exit;
        }
        a->aid_len = n;
        a->partial = 1;
        a->app_version[1] = 0x30;
        memcpy(a->tac_denial, "\x00\x10\x00\x00\x00", 5);
        memcpy(a->tac_online, "\xD8\x40\x04\xF8\x00", 5);
        memcpy(a->tac_default, "\xD8\x40\x00\xA8\x00", 5);
        a->floor_limit = 0; /* every transaction goes online */
        a->txn_limit = 0;
    }
    p.aid_count = 3;
    mpos_params_capk *k = &p.capks[0];
    memcpy(k->rid, "\xA0\x00\x00\x03\x33", 5);
    if (mpos_cardsim_ca_key(&k->index, k->modulus, sizeof(k->modulus), &ml, k->exponent,
                            sizeof(k->exponent), &xl) != 0) {
        goto exit;
    }
    k->modulus_len = ml;
    k->exponent_len = xl;
    k->expiry = 20991231;
    p.capk_count = 1;
    r = mpos_params_build(&p, end, end_len, anchor_sign, spriv, P.pkg, sizeof(P.pkg), &P.pkg_len);
exit:
    mpos_cleanse(anchor, sizeof(anchor));
    mpos_cleanse(spriv, sizeof(spriv));
    return r;
}

static int tls_setup(const char *cert, const char *key, const char *client_ca)
{
    P.ctx = SSL_CTX_new(TLS_server_method());
    if (P.ctx == NULL || SSL_CTX_set_min_proto_version(P.ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(P.ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(P.ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(P.ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(P.ctx) != 1) {
        return -1;
    }
    /* the client certificate must chain to the manufacturer CA only (no system store) */
    X509_STORE *st = X509_STORE_new();
    if (st == NULL || X509_STORE_load_file(st, client_ca) != 1) {
        X509_STORE_free(st);
        return -1;
    }
    SSL_CTX_set_cert_store(P.ctx, st);
    SSL_CTX_set_verify(P.ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_num_tickets(P.ctx, 0);
    SSL_CTX_set_max_early_data(P.ctx, 0);
    return 0;
}

static const char *arg(int argc, char **argv, const char *name)
{
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return NULL;
}

static int has_flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int read_all(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    *len = fread(buf, 1, cap, f);
    int bad = ferror(f) || *len == cap;
    fclose(f);
    return bad ? -1 : 0;
}

/* Test-only provisioning: what mpos-terminal import does with an hsmd bundle, from test keys. */
static int cmd_provision(int argc, char **argv)
{
    const char *dir = arg(argc, argv, "--dir"), *bdk = arg(argc, argv, "--bdk"),
               *ikid_s = arg(argc, argv, "--ikid"), *cert = arg(argc, argv, "--cert"),
               *trust = arg(argc, argv, "--trust");
    static mpos_keystore ks;
    static uint8_t cert_der[4096], trust_der[4096];
    mpos_hal_linux_storage st;
    mpos_hal_storage storage;
    mpos_hal_rng rng;
    uint8_t b[32], ik[32], ikid[MPOS_DUKPT_AES_IKID_LEN];
    size_t bl = 0, il = 0, cl = 0, tl = 0;
    int r, ret = 1;
    if (dir == NULL || bdk == NULL || ikid_s == NULL || cert == NULL || trust == NULL ||
        unhex(bdk, b, sizeof(b), &bl) != 0 || bl != 16 ||
        unhex(ikid_s, ikid, sizeof(ikid), &il) != 0 || il != sizeof(ikid) ||
        read_all(cert, cert_der, sizeof(cert_der), &cl) != 0 ||
        read_all(trust, trust_der, sizeof(trust_der), &tl) != 0) {
        fprintf(stderr, "mpos-testpeer provision: bad arguments or unreadable files\n");
        return 2;
    }
    if ((r = mpos_crypto_init(&P.cc)) != 0 ||
        (r = mpos_hal_linux_storage_open(&st, dir, NULL, 0)) != 0) {
        fprintf(stderr, "mpos-testpeer provision: open: %d\n", r);
        return 1;
    }
    mpos_hal_linux_storage_bind(&st, &storage);
    mpos_hal_linux_rng_bind(&rng);
    if ((r = mpos_keystore_open(&ks, &storage, &rng, &P.cc)) != 0) {
        fprintf(stderr, "mpos-testpeer provision: key store: %d\n", r);
        goto exit;
    }
    if ((r = mpos_dukpt_aes_initial_key(&P.cc, b, bl, ikid, ik)) != 0 ||
        (r = mpos_keystore_import_dukpt_aes(&ks, ik, bl, ikid, MPOS_DUKPT_AES_KEY_AES128)) != 0 ||
        (r = mpos_keystore_set_certificate(&ks, cert_der, cl)) != 0 ||
        (r = mpos_keystore_set_trust(&ks, trust_der, tl, NULL, 0)) != 0) {
        fprintf(stderr, "mpos-testpeer provision: import: %d\n", r);
    } else {
        printf("provisioned\n");
        ret = 0;
    }
    mpos_keystore_close(&ks);
exit:
    mpos_cleanse(b, sizeof(b));
    mpos_cleanse(ik, sizeof(ik));
    mpos_hal_linux_storage_close(&st);
    mpos_crypto_clear(&P.cc);
    return ret;
}

static int cmd_peer(int argc, char **argv)
{
    const char *cards = arg(argc, argv, "--cards"), *bdk = arg(argc, argv, "--bdk"),
               *cert = arg(argc, argv, "--srv-cert"), *key = arg(argc, argv, "--srv-key"),
               *ca = arg(argc, argv, "--client-ca"), *anchor = arg(argc, argv, "--anchor-key"),
               *ver = arg(argc, argv, "--params-version");
    P.link_path = arg(argc, argv, "--link");
    P.fd = -1;
    P.arpc = 1;
    memcpy(P.rc, "00", 3);
    snprintf(P.code, sizeof(P.code), "%s",
             arg(argc, argv, "--code") ? arg(argc, argv, "--code") : "TEST-CODE-1");
    snprintf(P.mid, sizeof(P.mid), "%s",
             arg(argc, argv, "--mid") ? arg(argc, argv, "--mid") : "MERCHANT0000001");
    snprintf(P.tid, sizeof(P.tid), "%s",
             arg(argc, argv, "--tid") ? arg(argc, argv, "--tid") : "TERM0001");
    P.activated = has_flag(argc, argv, "--activated");
    if (P.link_path == NULL || cards == NULL || bdk == NULL || cert == NULL || key == NULL ||
        ca == NULL || anchor == NULL || unhex(bdk, P.bdk, sizeof(P.bdk), &P.bdk_len) != 0 ||
        P.bdk_len != 16 || strlen(P.mid) != 15 || strlen(P.tid) != 8) {
        fprintf(stderr, "mpos-testpeer peer: missing or bad options\n");
        return 2;
    }
    if (mpos_crypto_init(&P.cc) != 0 || load_cards(cards) != 0 ||
        build_package(anchor, ver ? (uint32_t)strtoul(ver, NULL, 10) : 1u) != 0 ||
        tls_setup(cert, key, ca) != 0) {
        fprintf(stderr, "mpos-testpeer peer: set-up failed (cards, anchor key, TLS files)\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    txn_reset();
    out("{\"kind\":\"ready\"}");
    char line[8192];
    size_t ll = 0;
    for (;;) {
        struct pollfd pf[2] = {{0, POLLIN, 0}, {P.fd, POLLIN, 0}};
        int n = poll(pf, P.fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return 1;
        }
        if (P.fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            on_link_readable();
        }
        if (pf[0].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(0, line + ll, sizeof(line) - 1 - ll);
            if (r <= 0) {
                link_close("end of input");
                return 0;
            }
            ll += (size_t)r;
            line[ll] = '\0';
            char *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = '\0';
                command(line);
                size_t rest = ll - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest);
                ll = rest;
                line[ll] = '\0';
            }
            if (ll >= sizeof(line) - 1) {
                ll = 0; /* a line too long: dropped */
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "peer") == 0) {
        return cmd_peer(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "provision") == 0) {
        return cmd_provision(argc, argv);
    }
    fprintf(stderr, "usage: mpos-testpeer peer ... | provision ... (see the source header)\n");
    return 2;
}
