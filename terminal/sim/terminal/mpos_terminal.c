/* mpos-terminal: the Linux simulator around the portable terminal core (docs/terminal-design.md).
 *
 *   mpos-terminal keygen --dir DIR --serial SN
 *   mpos-terminal import --dir DIR --bundle FILE --ca-cert FILE
 *   mpos-terminal run    --dir DIR --link unix:PATH|tcp:HOST:PORT [--keys SCRIPT]
 *                        [--display-log FILE] [--reader PATTERN] [--swipe-dir DIR]
 *                        [--server-name NAME]
 *
 * keygen and import: the device identity and provisioning (docs/provisioning.md). The key
 * store lives in DIR through hal_linux's file storage (directory 0700, files 0600). The
 * terminal's serial number is kept in the storage slot "serial" (public data, written at
 * keygen). Private keys never leave the key store: the CSR is signed and the bundle's ECDH is
 * computed by the key store's callbacks; nothing here prints a key.
 *
 * run: the acceptance terminal (docs/terminal-design.md, "mpos-terminal run"). The host link
 * (docs/protocol.md 1) is served on one socket, one host at a time. The portable core does the
 * work: terminal/core/txn (the transaction machine), terminal/core/chan (the tunnel to the back
 * end: TLS 1.3 through sim/tls over the link's TUNNEL_DATA, HELLO, activation, parameter
 * packages, SEALED / SEALED_RESP), terminal/core/params and the key store. This file is the
 * port: it owns the sockets and serves the link whenever the core waits (the machine's poll
 * hook, and the TLS transport's recv, which pumps the link socket: TUNNEL_DATA feeds TLS, other
 * commands are dispatched). Keypad, display and card reader are sim_io.h's (PC/SC chip reader,
 * stripe drop file, scripted or TTY keypad, display log).
 *
 * Exit status: 0 success, 1 failure (one line "mpos-terminal: ..." on stderr), 2 usage error.
 * Simulator code: it may use the heap and the OS (the core may not).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "hal.h"
#include "hal_linux.h"
#include "keystore/keystore.h"
#include "link/link.h"
#include "params.h"
#include "sim_io.h"
#include "tls_port.h"
#include "txn/txn.h"
#include "txn/txn_keystore.h"
#include "mpos/crypto.h"
#include "mpos/kcv.h"
#include "mpos/provision.h"
#include "mpos/util.h"

#define TERMINAL_FIRMWARE            "0.1.0-sim"
#define TERMINAL_SERIAL_SLOT         "serial"
#define TERMINAL_READER_DEFAULT      "mpos vpcd 00 00" /* the PC/SC test harness's first reader */
#define TERMINAL_SERVER_NAME_DEFAULT "mpos-backend"

static const char *const usage_text =
    "usage: mpos-terminal keygen --dir DIR --serial SN\n"
    "       mpos-terminal import --dir DIR --bundle FILE --ca-cert FILE\n"
    "       mpos-terminal run --dir DIR --link unix:PATH|tcp:HOST:PORT [--keys SCRIPT]\n"
    "                     [--display-log FILE] [--reader PATTERN] [--swipe-dir DIR]\n"
    "                     [--server-name NAME] [--online-timeout MS] [--retry-delay MS]\n"
    "                     [--retries N]\n"
    "\n"
    "keygen  creates the key store in DIR (0700), generates the device P-256 key inside it\n"
    "        and writes the certificate request DIR/SN.csr (PKCS#10, serialNumber=SN)\n"
    "import  opens the provisioning bundle (mposctl terminal provision) under the\n"
    "        manufacturer CA certificate FILE (DER), imports the initial key (AES/TDES DUKPT\n"
    "        or TMK), the device certificate and the trust anchor; prints kind, ID, check value\n"
    "run     the acceptance terminal. Serves the host link on a UNIX socket or TCP (port 0:\n"
    "        any; the actual address is printed on stdout as link=...), one host connection\n"
    "        at a time (a second one waits until the first closes). GET_INFO -> INFO;\n"
    "        ACTIVATE -> ACK, then the activation through the tunnel (PROMPT_SHOWN\n"
    "        ACTIVATING, then ACTIVATED + RESULT ACTIVATED, or NOT_ACTIVATED + RESULT\n"
    "        ACTIVATION_FAILED); START_TXN -> ACK, then the transaction (PROMPT_SHOWN events,\n"
    "        RESULT); CANCEL, SET_HOST_LOCATION -> ACK or ERROR; TUNNEL_DATA feeds the TLS\n"
    "        client and is not acknowledged; the TLS client's records go out as TUNNEL_DATA\n"
    "        events. The tunnel (TLS 1.3, client certificate from the key store) is opened\n"
    "        when first needed and lives as long as the host connection. A pending reversal\n"
    "        is sent when idle, once per host connection and after each transaction.\n"
    "        SIGTERM or SIGINT stops it (a transaction is cancelled where it still can be,\n"
    "        else finished first). Logs: key=value lines on stderr (masked PANs only).\n"
    "  --keys SCRIPT       scripted keypad: comma-separated ok, cancel, clear, 0..9,\n"
    "                      pin:DIGITS (one key per digit), wait:MS (delay before the next\n"
    "                      key), at:PROMPT (the next key only once PROMPT, a name of\n"
    "                      docs/protocol.md 1.4 such as ENTER_PIN, has been shown since the\n"
    "                      previous key; until then the keypad times out); consumed across\n"
    "                      transactions; when it runs out the keypad times out. E.g.\n"
    "                      ok,at:ENTER_PIN,pin:1234,ok. Without --keys: keys from /dev/tty\n"
    "                      (digits, Enter = OK, Esc or c = CANCEL, Backspace = CLEAR),\n"
    "                      prompts on /dev/tty\n"
    "  --display-log FILE  appends one line per prompt shown: prompt=NAME type=N\n"
    "                      amount=MINOR currency=N count=N (NAME as in docs/protocol.md\n"
    "                      1.4; PIN refreshes are not logged, ENTER_PIN has count=0)\n"
    "  --reader PATTERN    the PC/SC reader whose name contains PATTERN (default:\n"
    "                      $MPOS_PCSC_READER_0, else \"mpos vpcd 00 00\")\n"
    "  --swipe-dir DIR     magnetic stripe: a file DIR/swipe (line 1 track 1, line 2 track 2,\n"
    "                      ASCII; either may be empty) is a swipe; it is read and deleted.\n"
    "                      Create it atomically (write another name, rename)\n"
    "  --server-name NAME  the back end's TLS name (default mpos-backend)\n"
    "  --online-timeout MS the wait for the back end's response (1..600000, default 30000)\n"
    "  --retry-delay MS    the pause before a request whose response was lost is retried\n"
    "                      under a new KSN with the same sequence number (1..600000,\n"
    "                      default 2000; docs/protocol.md 2.8)\n"
    "  --retries N         retries of such a request (0..5, default 1; 0: reverse at once)\n"
    "\n"
    "The firmware version is fixed: " TERMINAL_FIRMWARE ".\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static int fail(const char *what, int rc)
{
    if (rc == 0) {
        fprintf(stderr, "mpos-terminal: %s\n", what);
    } else {
        fprintf(stderr, "mpos-terminal: %s: %s\n", what, mpos_hal_strerror(rc));
    }
    return 1;
}

/* ---- options -------------------------------------------------------------------------- */

struct opts {
    const char *dir, *serial, *bundle, *ca_cert, *link;
    /* run only */
    const char *keys, *display_log, *reader, *swipe_dir, *server_name;
    const char *online_timeout, *retry_delay, *retries;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i += 2) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--dir") == 0) {
            dst = &o->dir;
        } else if (strcmp(argv[i], "--serial") == 0) {
            dst = &o->serial;
        } else if (strcmp(argv[i], "--bundle") == 0) {
            dst = &o->bundle;
        } else if (strcmp(argv[i], "--ca-cert") == 0) {
            dst = &o->ca_cert;
        } else if (strcmp(argv[i], "--link") == 0) {
            dst = &o->link;
        } else if (strcmp(argv[i], "--keys") == 0) {
            dst = &o->keys;
        } else if (strcmp(argv[i], "--display-log") == 0) {
            dst = &o->display_log;
        } else if (strcmp(argv[i], "--reader") == 0) {
            dst = &o->reader;
        } else if (strcmp(argv[i], "--swipe-dir") == 0) {
            dst = &o->swipe_dir;
        } else if (strcmp(argv[i], "--server-name") == 0) {
            dst = &o->server_name;
        } else if (strcmp(argv[i], "--online-timeout") == 0) {
            dst = &o->online_timeout;
        } else if (strcmp(argv[i], "--retry-delay") == 0) {
            dst = &o->retry_delay;
        } else if (strcmp(argv[i], "--retries") == 0) {
            dst = &o->retries;
        }
        if (dst == NULL || i + 1 >= argc || *dst != NULL) {
            return -1;
        }
        *dst = argv[i + 1];
    }
    return 0;
}

/* 1 when an option of `run` alone was given. */
static int run_only(const struct opts *o)
{
    return o->keys || o->display_log || o->reader || o->swipe_dir || o->server_name ||
           o->online_timeout || o->retry_delay || o->retries;
}

/* A decimal option of min..max into *out; absent leaves *out. 0, or -1 when malformed. */
static int num_opt(const char *s, unsigned long min, unsigned long max, uint32_t *out)
{
    char *end = NULL;
    unsigned long v;
    if (s == NULL) {
        return 0;
    }
    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The online timing options into cfg (docs/protocol.md 2.8); -1 when one is malformed. */
static int timing_opts(const struct opts *o, mpos_txn_config *cfg)
{
    uint32_t retries = UINT32_MAX;
    if (num_opt(o->online_timeout, 1, 600000, &cfg->online_timeout_ms) != 0 ||
        num_opt(o->retry_delay, 1, 600000, &cfg->retry_delay_ms) != 0 ||
        num_opt(o->retries, 0, MPOS_TXN_MAX_RETRIES, &retries) != 0) {
        return -1;
    }
    if (retries != UINT32_MAX) {
        cfg->retries = retries == 0 ? MPOS_TXN_NO_RETRY : retries;
    }
    return 0;
}

/* ---- the key store in DIR ------------------------------------------------------------- */

struct term {
    mpos_hal_linux_storage st;
    mpos_hal_storage storage;
    mpos_hal_rng rng;
    mpos_crypto_ctx cc;
    mpos_keystore *ks; /* heap: large */
    int st_open, cc_open, ks_open;
};

static int term_open(struct term *t, const char *dir, unsigned flags, const char **what)
{
    int rc;
    memset(t, 0, sizeof(*t));
    t->ks = calloc(1, sizeof(*t->ks));
    if (t->ks == NULL) {
        *what = "out of memory";
        return MPOS_ERR_IO;
    }
    rc = mpos_hal_linux_storage_open(&t->st, dir, NULL, flags);
    if (rc != 0) {
        *what = "cannot open the key store directory";
        return rc;
    }
    t->st_open = 1;
    mpos_hal_linux_storage_bind(&t->st, &t->storage);
    mpos_hal_linux_rng_bind(&t->rng);
    rc = mpos_crypto_init(&t->cc);
    if (rc != 0) {
        *what = "crypto init failed";
        return rc;
    }
    t->cc_open = 1;
    rc = mpos_keystore_open(t->ks, &t->storage, &t->rng, &t->cc);
    if (rc != 0) {
        *what = "cannot open the key store";
        return rc;
    }
    t->ks_open = 1;
    return 0;
}

static void term_close(struct term *t)
{
    if (t->ks_open) {
        mpos_keystore_close(t->ks);
    }
    free(t->ks);
    if (t->cc_open) {
        mpos_crypto_clear(&t->cc);
    }
    if (t->st_open) {
        mpos_hal_linux_storage_close(&t->st);
    }
    memset(t, 0, sizeof(*t));
}

/* The serial kept in the "serial" slot (NUL-terminated, valid). */
static int term_serial(struct term *t, char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1])
{
    uint8_t buf[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    size_t len = 0;
    int rc = t->storage.read(t->storage.ctx, TERMINAL_SERIAL_SLOT, buf, sizeof(buf), &len);
    if (rc != 0) {
        return rc;
    }
    if (len == 0 || len > MPOS_PROVISION_SERIAL_MAX_LEN) {
        return MPOS_ERR_FORMAT;
    }
    memcpy(serial, buf, len);
    serial[len] = '\0';
    return mpos_provision_serial_valid(serial) ? 0 : MPOS_ERR_FORMAT;
}

static int ks_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    return mpos_keystore_sign((mpos_keystore *)ctx, msg, len, sig);
}

static int ks_ecdh(void *ctx, const uint8_t peer_pub[MPOS_EC_P256_PUB_LEN],
                   uint8_t shared[MPOS_ECDH_P256_LEN])
{
    return mpos_keystore_ecdh((mpos_keystore *)ctx, peer_pub, shared);
}

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return -1;
    }
    *len = fread(buf, 1, cap, fp);
    int bad = ferror(fp) || (*len == cap && fgetc(fp) != EOF);
    fclose(fp);
    return bad ? -1 : 0;
}

/* ---- keygen --------------------------------------------------------------------------- */

static int cmd_keygen(const struct opts *o)
{
    struct term t;
    const char *what = NULL;
    uint8_t pub[MPOS_EC_P256_PUB_LEN], csr[MPOS_PROVISION_CSR_MAX_LEN];
    size_t csr_len = 0;
    char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    char *path = NULL;
    int ret = 1, rc, fd = -1;

    if (o->dir == NULL || o->serial == NULL || o->bundle || o->ca_cert || o->link || run_only(o)) {
        return usage();
    }
    if (!mpos_provision_serial_valid(o->serial)) {
        fprintf(stderr, "mpos-terminal: --serial: 1 to 32 characters of A-Z a-z 0-9 '-'\n");
        return 2;
    }
    rc = term_open(&t, o->dir, MPOS_HAL_LINUX_CREATE, &what);
    if (rc != 0) {
        ret = fail(what, rc);
        goto exit;
    }
    rc = term_serial(&t, serial);
    if (rc == 0 && strcmp(serial, o->serial) != 0) {
        ret = fail("this key store belongs to another serial", 0);
        goto exit;
    }
    if (rc != 0 && rc != MPOS_HAL_NOT_FOUND) {
        ret = fail("cannot read the serial", rc);
        goto exit;
    }
    rc = mpos_keystore_generate_device_key(t.ks, pub);
    if (rc == MPOS_ERR_STATE) {
        ret = fail("a device key exists already (one per device)", 0);
        goto exit;
    }
    if (rc != 0) {
        ret = fail("device key generation failed", rc);
        goto exit;
    }
    rc = t.storage.write(t.storage.ctx, TERMINAL_SERIAL_SLOT, (const uint8_t *)o->serial,
                         strlen(o->serial));
    if (rc != 0) {
        ret = fail("cannot store the serial", rc);
        goto exit;
    }
    struct mpos_provision_device dev = {pub, ks_ecdh, ks_sign, t.ks};
    rc = mpos_provision_csr_build_device(&dev, o->serial, csr, sizeof(csr), &csr_len);
    if (rc != 0) {
        ret = fail("certificate request failed", rc);
        goto exit;
    }
    size_t plen = strlen(o->dir) + strlen(o->serial) + 6;
    path = malloc(plen);
    if (path == NULL) {
        ret = fail("out of memory", 0);
        goto exit;
    }
    snprintf(path, plen, "%s/%s.csr", o->dir, o->serial);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, csr, csr_len) != (ssize_t)csr_len || fsync(fd) != 0) {
        fprintf(stderr, "mpos-terminal: %s: %s\n", path, strerror(errno));
        goto exit;
    }
    printf("%s\n", path);
    ret = 0;
exit:
    if (fd >= 0) {
        close(fd);
    }
    free(path);
    term_close(&t);
    return ret;
}

/* ---- import --------------------------------------------------------------------------- */

static const char *kind_name(enum mpos_provision_kind k)
{
    switch (k) {
    case MPOS_PROVISION_AES_DUKPT:
        return "aes-dukpt";
    case MPOS_PROVISION_TDES_DUKPT:
        return "tdes-dukpt";
    case MPOS_PROVISION_TMK:
        return "tmk";
    case MPOS_PROVISION_TMK_SM4:
        return "tmk-sm4";
    }
    return "?";
}

static int import_key(struct term *t, const struct mpos_provision_key *key)
{
    switch (key->kind) {
    case MPOS_PROVISION_AES_DUKPT: {
        /* Working keys as long as the initial key (X9.24-3-2017 6.2: not longer). */
        enum mpos_dukpt_aes_key_type wk = key->key_len == 16   ? MPOS_DUKPT_AES_KEY_AES128
                                          : key->key_len == 24 ? MPOS_DUKPT_AES_KEY_AES192
                                                               : MPOS_DUKPT_AES_KEY_AES256;
        if (key->id_len != MPOS_DUKPT_AES_IKID_LEN) {
            return MPOS_ERR_FORMAT;
        }
        return mpos_keystore_import_dukpt_aes(t->ks, key->key, key->key_len, key->id, wk);
    }
    case MPOS_PROVISION_TDES_DUKPT:
        if (key->key_len != MPOS_DUKPT_TDES_KEY_LEN || key->id_len != MPOS_DUKPT_TDES_KSN_LEN) {
            return MPOS_ERR_FORMAT;
        }
        return mpos_keystore_import_dukpt_tdes(t->ks, key->key, key->id);
    case MPOS_PROVISION_TMK:
    case MPOS_PROVISION_TMK_SM4:
        if (key->key_len != MPOS_MKWK_TMK_LEN) {
            return MPOS_ERR_FORMAT;
        }
        return mpos_keystore_import_tmk(
            t->ks, key->kind == MPOS_PROVISION_TMK ? MPOS_CIPHER_TDES : MPOS_CIPHER_SM4, key->key);
    }
    return MPOS_ERR_FORMAT;
}

static int cmd_import(const struct opts *o)
{
    struct term t;
    const char *what = NULL;
    static uint8_t bundle[MPOS_PROVISION_BUNDLE_MAX_LEN + 1];
    static uint8_t ca_der[MPOS_PROVISION_CERT_MAX_LEN + 1];
    uint8_t pub[MPOS_EC_P256_PUB_LEN], kcv[MPOS_KCV_MAX_LEN];
    char hex[2 * MPOS_KCV_MAX_LEN + 2 * MPOS_PROVISION_MAX_ID_LEN + 1];
    char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    size_t bundle_len = 0, ca_len = 0, kcv_len;
    struct mpos_provision_cert ca;
    struct mpos_provision_key key;
    mpos_provision_bundle view;
    int ret = 1, rc;

    memset(&key, 0, sizeof(key));
    if (o->dir == NULL || o->bundle == NULL || o->ca_cert == NULL || o->serial || o->link ||
        run_only(o)) {
        return usage();
    }
    if (read_file(o->bundle, bundle, sizeof(bundle), &bundle_len) != 0) {
        fprintf(stderr, "mpos-terminal: %s: cannot read (or longer than %d bytes)\n", o->bundle,
                MPOS_PROVISION_BUNDLE_MAX_LEN);
        return 1;
    }
    if (read_file(o->ca_cert, ca_der, sizeof(ca_der), &ca_len) != 0 ||
        mpos_provision_cert_parse(ca_der, ca_len, &ca) != 0) {
        fprintf(stderr, "mpos-terminal: %s: not a P-256 X.509 certificate (DER)\n", o->ca_cert);
        return 1;
    }
    rc = term_open(&t, o->dir, 0, &what);
    if (rc != 0) {
        ret = fail(what, rc);
        goto exit;
    }
    rc = term_serial(&t, serial);
    if (rc != 0) {
        ret = fail("no serial in the key store (run keygen first)", rc);
        goto exit;
    }
    rc = mpos_keystore_device_public(t.ks, pub);
    if (rc != 0) {
        ret = fail("no device key in the key store (run keygen first)", rc);
        goto exit;
    }
    struct mpos_provision_device dev = {pub, ks_ecdh, ks_sign, t.ks};
    rc = mpos_provision_open_device(&t.cc, &dev, serial, ca.pub, bundle, bundle_len, &view, &key);
    if (rc == MPOS_ERR_VERIFY) {
        fprintf(stderr,
                "mpos-terminal: bundle refused: not for this terminal (%s), not from this CA, or "
                "altered; nothing changed\n",
                serial);
        goto exit;
    }
    if (rc != 0) {
        ret = fail("bundle refused (nothing changed)", rc);
        goto exit;
    }
    /* The key first: a terminal that already holds one refuses here, before anything else
     * is replaced (retiring keys is an explicit step, T-UNIQ-1). */
    rc = import_key(&t, &key);
    if (rc == MPOS_ERR_STATE) {
        ret = fail("transaction keys are loaded already (nothing changed)", 0);
        goto exit;
    }
    if (rc != 0) {
        ret = fail("key import failed", rc);
        goto exit;
    }
    rc = mpos_keystore_set_certificate(t.ks, view.device_cert, view.device_cert_len);
    if (rc != 0) {
        ret = fail("storing the device certificate failed", rc);
        goto exit;
    }
    if (view.trust_anchor != NULL && view.trust_anchor_len > 0) {
        rc = mpos_keystore_set_trust(t.ks, view.trust_anchor, view.trust_anchor_len, NULL, 0);
        if (rc != 0) {
            ret = fail("storing the trust anchor failed", rc);
            goto exit;
        }
    }
    /* The delivered key's check value: CMAC for AES, legacy for TDES and SM4 (X9.24-1:2017
     * A.3), as mposctl registers it. */
    enum mpos_cipher cipher = key.kind == MPOS_PROVISION_AES_DUKPT ? MPOS_CIPHER_AES
                              : key.kind == MPOS_PROVISION_TMK_SM4 ? MPOS_CIPHER_SM4
                                                                   : MPOS_CIPHER_TDES;
    enum mpos_kcv_method method = mpos_kcv_default_method(cipher);
    kcv_len = mpos_kcv_default_len(method);
    rc = mpos_kcv_compute(&t.cc, cipher, method, key.key, key.key_len, kcv, kcv_len);
    if (rc != 0) {
        ret = fail("check value failed", rc);
        goto exit;
    }
    printf("serial %s\n", serial);
    printf("kind %s\n", kind_name(key.kind));
    if (key.id_len > 0) {
        mpos_hex_encode(key.id, key.id_len, hex);
        printf("%s %s\n", key.kind == MPOS_PROVISION_AES_DUKPT ? "initial-key-id" : "initial-ksn",
               hex);
    }
    mpos_hex_encode(kcv, kcv_len, hex);
    printf("kcv %s\n", hex);
    printf("trust-anchor %s\n", view.trust_anchor_len > 0 ? "stored" : "none");
    ret = 0;
exit:
    mpos_provision_key_clear(&key);
    mpos_cleanse(kcv, sizeof(kcv));
    term_close(&t);
    return ret;
}

/* ---- run: the acceptance terminal ------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int send_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Listens on spec; writes the actual address to printable (for link=...). */
static int link_listen(const char *spec, char *printable, size_t cap, char **unix_path)
{
    int fd = -1;
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un sa;
        const char *path = spec + 5;
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path)) {
            return -2;
        }
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0) {
            goto err;
        }
        *unix_path = strdup(path);
        snprintf(printable, cap, "unix:%s", path);
        return fd;
    }
    if (strncmp(spec, "tcp:", 4) == 0) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        char host[64];
        const char *colon = strrchr(spec + 4, ':');
        char *end = NULL;
        if (colon == NULL || (size_t)(colon - (spec + 4)) >= sizeof(host)) {
            return -2;
        }
        memcpy(host, spec + 4, (size_t)(colon - (spec + 4)));
        host[colon - (spec + 4)] = '\0';
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 10);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        if (colon[1] == '\0' || *end != '\0' || errno != 0 || port > 65535 ||
            inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            return -2;
        }
        sa.sin_port = htons((uint16_t)port);
        int one = 1;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
            goto err;
        }
        snprintf(printable, cap, "tcp:%s:%u", host, (unsigned)ntohs(sa.sin_port));
        return fd;
    }
    return -2;
err:
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

#define TUNNEL_IN_CAP (64 * 1024) /* TLS bytes from the host not yet read by the TLS port */

/* Everything `run` holds. Large: on the heap. */
struct app {
    struct term t;
    const struct opts *o;
    char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
    /* the HAL */
    struct sim_keypad kp;
    struct sim_display disp;
    struct sim_reader reader;
    mpos_hal_card_reader hal_reader;
    mpos_hal_keypad hal_keypad;
    mpos_hal_display hal_display;
    mpos_hal_clock hal_clock;
    mpos_hal_tls hal_tls;
    mpos_hal hal;
    mpos_tls_port *tls;
    mpos_hal_transport transport;
    /* the core */
    mpos_params_store params;
    int have_params;
    mpos_emv_params emv;
    mpos_chan chan;
    mpos_txn txn;
    int txn_ready;
    /* the link */
    mpos_link_session session;
    mpos_link_decoder dec;
    int lfd, cfd;
    uint8_t rx[4096];
    size_t rx_pos, rx_len;
    uint8_t out[MPOS_LINK_MAX_FRAME_LEN];
    uint8_t tun_in[TUNNEL_IN_CAP];
    /* Stale records: after the TLS client starts a new connection (its ClientHello), bytes
     * of the connection before it may still come (the back end's answer to a request the
     * terminal gave up on, its close_notify). Until the first handshake record of the new
     * connection, whole records of any other type are dropped (tun_skip: bytes of the record
     * being dropped; tun_hdr: a record header split across TUNNEL_DATA frames). */
    int tun_filter;
    size_t tun_skip;
    uint8_t tun_hdr[5];
    size_t tun_hdr_len;
    size_t tun_len;
    uint32_t conn_id; /* host connections so far */
    /* work the main loop does outside the link handler */
    int busy; /* an activation or transaction is running */
    int pending_start;
    int pending_activate;
    char code[MPOS_LINK_CODE_MAX_LEN + 1];
    int chan_stale;      /* the host connection of the tunnel is gone: close it at top level */
    uint32_t flush_conn; /* the connection a reversal flush was last tried on */
    int flush_again;     /* a transaction ended: try again */
};

static void log_kv(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_kv(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mpos-terminal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void host_drop(struct app *a)
{
    if (a->cfd >= 0) {
        close(a->cfd);
        a->cfd = -1;
        log_kv("event=host_disconnected conn=%u", a->conn_id);
    }
    /* The tunnel lives as long as the host connection (docs/system-design.md 2). It is closed
     * at the top of the main loop, never from here: this may run inside the TLS port's own
     * read (transport recv -> pump), where closing the port would pull the connection from
     * under it. Until then the transport refuses both ways. */
    a->chan_stale = 1;
    a->tun_len = 0;
    a->rx_pos = a->rx_len = 0;
}

static int host_write(struct app *a, const uint8_t *frame, size_t len)
{
    if (a->cfd < 0) {
        return MPOS_ERR_IO;
    }
    if (send_all(a->cfd, frame, len) != 0) {
        host_drop(a);
        return MPOS_ERR_IO;
    }
    return 0;
}

static int send_event(struct app *a, mpos_link_msg *ev)
{
    size_t len = 0;
    int rc = mpos_link_session_send(&a->session, ev, a->out, sizeof(a->out), &len);
    if (rc != 0) {
        return rc;
    }
    return host_write(a, a->out, len);
}

static void send_ack(struct app *a, const mpos_link_frame *f)
{
    mpos_link_msg ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = MPOS_LINK_EVT_ACK;
    ev.u.ack.ref_seq = f->seq;
    ev.u.ack.ref_type = f->type;
    (void)send_event(a, &ev);
}

static void send_error(struct app *a, const mpos_link_frame *f, int code)
{
    mpos_link_msg ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = MPOS_LINK_EVT_ERROR;
    ev.u.error.ref_seq = f->seq;
    ev.u.error.ref_type = f->type;
    ev.u.error.code = (uint8_t)code;
    ev.u.error.state = (uint8_t)a->session.state;
    (void)send_event(a, &ev);
}

static void send_prompt(struct app *a, enum mpos_prompt p)
{
    mpos_link_msg ev;
    mpos_prompt_params none;
    memset(&none, 0, sizeof(none));
    (void)a->hal_display.show(a->hal_display.ctx, p, &none);
    memset(&ev, 0, sizeof(ev));
    ev.type = MPOS_LINK_EVT_PROMPT_SHOWN;
    ev.u.prompt.prompt = (uint8_t)p;
    (void)send_event(a, &ev);
}

static void send_result(struct app *a, uint8_t outcome)
{
    mpos_link_msg ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = MPOS_LINK_EVT_RESULT;
    ev.u.result.outcome = outcome;
    (void)send_event(a, &ev);
}

/* One command from the host. */

/* Takes TUNNEL_DATA bytes for the TLS client (see tun_filter). 0, or -1 when they do not fit. */
static int tunnel_in(struct app *a, const uint8_t *p, size_t n)
{
    while (n > 0 && a->tun_filter) {
        size_t k;
        if (a->tun_skip > 0) {
            k = n < a->tun_skip ? n : a->tun_skip;
            a->tun_skip -= k;
            p += k;
            n -= k;
            continue;
        }
        k = sizeof(a->tun_hdr) - a->tun_hdr_len;
        k = n < k ? n : k;
        memcpy(a->tun_hdr + a->tun_hdr_len, p, k);
        a->tun_hdr_len += k;
        p += k;
        n -= k;
        if (a->tun_hdr_len < sizeof(a->tun_hdr)) {
            break;
        }
        a->tun_hdr_len = 0;
        if (a->tun_hdr[0] == 0x16) { /* handshake: the new connection's first record */
            a->tun_filter = 0;
            if (a->tun_len + sizeof(a->tun_hdr) > sizeof(a->tun_in)) {
                return -1;
            }
            memcpy(a->tun_in + a->tun_len, a->tun_hdr, sizeof(a->tun_hdr));
            a->tun_len += sizeof(a->tun_hdr);
        } else {
            a->tun_skip = (size_t)a->tun_hdr[3] << 8 | a->tun_hdr[4];
            log_kv("event=tunnel_stale_record type=%u len=%zu", (unsigned)a->tun_hdr[0],
                   a->tun_skip);
        }
    }
    if (n == 0) {
        return 0;
    }
    if (a->tun_len + n > sizeof(a->tun_in)) {
        return -1;
    }
    memcpy(a->tun_in + a->tun_len, p, n);
    a->tun_len += n;
    return 0;
}

static void dispatch(struct app *a, const mpos_link_frame *f)
{
    mpos_link_msg cmd;
    size_t reply_len = 0;
    int rc = mpos_link_session_receive(&a->session, f, &cmd, a->out, sizeof(a->out), &reply_len);
    if (rc != 0) {
        if (rc > 0 && reply_len > 0) {
            (void)host_write(a, a->out, reply_len);
        }
        return;
    }
    switch (cmd.type) {
    case MPOS_LINK_CMD_GET_INFO: {
        mpos_link_msg ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = MPOS_LINK_EVT_INFO;
        ev.u.info.ref_seq = f->seq;
        ev.u.info.state = (uint8_t)a->session.state;
        snprintf(ev.u.info.serial, sizeof(ev.u.info.serial), "%s", a->serial);
        snprintf(ev.u.info.firmware, sizeof(ev.u.info.firmware), "%s", TERMINAL_FIRMWARE);
        (void)send_event(a, &ev);
        break;
    }
    case MPOS_LINK_CMD_TUNNEL_DATA:
        /* Not acknowledged (TLS records flow both ways without ACKs, docs/protocol.md 1.3). */
        if (tunnel_in(a, cmd.u.tunnel.data, cmd.u.tunnel.len) != 0) {
            send_error(a, f, MPOS_LINK_E_INTERNAL);
        }
        break;
    case MPOS_LINK_CMD_ACTIVATE:
        if (a->busy || a->pending_activate) {
            send_error(a, f, MPOS_LINK_E_NOT_ALLOWED);
            break;
        }
        snprintf(a->code, sizeof(a->code), "%s", cmd.u.activate.code);
        a->pending_activate = 1;
        send_ack(a, f);
        break;
    case MPOS_LINK_CMD_START_TXN:
        if (a->busy || a->pending_start || a->pending_activate || !a->txn_ready) {
            /* No parameters held yet, or the terminal is busy: it cannot take one now. */
            send_error(a, f, a->txn_ready ? MPOS_LINK_E_NOT_ALLOWED : MPOS_LINK_E_INTERNAL);
            break;
        }
        /* fall through */
    case MPOS_LINK_CMD_CANCEL:
    case MPOS_LINK_CMD_SET_HOST_LOCATION:
        if (!a->txn_ready) {
            send_error(a, f, MPOS_LINK_E_INTERNAL);
            break;
        }
        rc = mpos_txn_command(&a->txn, &cmd);
        if (rc == 0) {
            send_ack(a, f);
            if (cmd.type == MPOS_LINK_CMD_START_TXN) {
                a->pending_start = 1;
            }
        } else {
            send_error(a, f, rc > 0 ? rc : MPOS_LINK_E_INTERNAL);
        }
        break;
    default:
        send_error(a, f, MPOS_LINK_E_INTERNAL);
        break;
    }
}

/* Serves the link for up to timeout_ms: accepts a host when none is connected (a second one
 * waits in the listen queue until the first leaves), reads and dispatches its frames. Returns
 * early once something was received (the caller checks what it was waiting for). */
static void pump(struct app *a, uint32_t timeout_ms)
{
    struct pollfd pfd;
    int n;
    if (stop_flag && a->busy && a->txn_ready && mpos_txn_get_state(&a->txn) != MPOS_TXN_IDLE) {
        /* SIGTERM during a transaction: cancel where the state table allows it, else let it
         * finish (online: the outcome belongs to the back end). */
        mpos_link_msg c;
        memset(&c, 0, sizeof(c));
        c.type = MPOS_LINK_CMD_CANCEL;
        int refused = mpos_txn_command(&a->txn, &c);
        (void)refused; /* online: not cancellable, the machine finishes */
    }
    /* Frames already buffered first. */
    while (a->cfd >= 0 && a->rx_pos < a->rx_len) {
        size_t used = 0;
        mpos_link_frame f;
        int rc =
            mpos_link_decoder_feed(&a->dec, a->rx + a->rx_pos, a->rx_len - a->rx_pos, &used, &f);
        a->rx_pos += used;
        if (rc != 1) {
            break;
        }
        dispatch(a, &f);
        return; /* one frame at a time: the caller looks at its effect */
    }
    pfd.fd = a->cfd >= 0 ? a->cfd : a->lfd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    n = poll(&pfd, 1, (int)timeout_ms);
    if (n <= 0) {
        return;
    }
    if (a->cfd < 0) {
        a->cfd = accept(a->lfd, NULL, NULL);
        if (a->cfd >= 0) {
            a->conn_id++;
            mpos_link_decoder_init(&a->dec); /* a new host: a fresh stream, a new tunnel */
            if (mpos_chan_is_open(&a->chan)) {
                a->chan_stale = 1;
            }
            a->tun_len = 0;
            a->rx_pos = a->rx_len = 0;
            log_kv("event=host_connected conn=%u", a->conn_id);
        }
        return;
    }
    ssize_t got = recv(a->cfd, a->rx, sizeof(a->rx), 0);
    if (got < 0 && errno == EINTR) {
        return;
    }
    if (got <= 0) {
        host_drop(a);
        return;
    }
    a->rx_pos = 0;
    a->rx_len = (size_t)got;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the TLS port's transport: TUNNEL_DATA both ways ---- */

static int tr_send(void *ctx, const uint8_t *data, size_t len)
{
    struct app *a = ctx;
    if (a->chan_stale) {
        return MPOS_ERR_IO;
    }
    if (len >= 6 && data[0] == 0x16 && data[5] == 0x01) {
        /* A ClientHello: the TLS client starts a new connection. Bytes held for the last
         * one go, and stale records are dropped until the server's first handshake record
         * (a HelloRetryRequest's second ClientHello finds nothing held and the server's
         * next record is a handshake record too). */
        a->tun_len = 0;
        a->tun_filter = 1;
        a->tun_skip = 0;
        a->tun_hdr_len = 0;
    }
    while (len > 0) {
        mpos_link_msg ev;
        size_t n = len > MPOS_LINK_MAX_PAYLOAD ? MPOS_LINK_MAX_PAYLOAD : len;
        memset(&ev, 0, sizeof(ev));
        ev.type = MPOS_LINK_EVT_TUNNEL_DATA;
        ev.u.tunnel.data = data;
        ev.u.tunnel.len = n;
        if (send_event(a, &ev) != 0) {
            return MPOS_ERR_IO;
        }
        data += n;
        len -= n;
    }
    return 0;
}

static int tr_recv(void *ctx, uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms)
{
    struct app *a = ctx;
    uint64_t end = now_ms() + timeout_ms;
    uint32_t conn = a->conn_id;
    *len = 0;
    for (;;) {
        if (a->cfd < 0 || a->conn_id != conn || a->chan_stale) {
            return MPOS_HAL_CLOSED; /* the host left: the tunnel is gone */
        }
        if (a->tun_len > 0) {
            size_t n = a->tun_len < cap ? a->tun_len : cap;
            memcpy(buf, a->tun_in, n);
            memmove(a->tun_in, a->tun_in + n, a->tun_len - n);
            a->tun_len -= n;
            *len = n;
            return 0;
        }
        uint64_t now = now_ms();
        if (now >= end) {
            return MPOS_HAL_TIMEOUT;
        }
        /* While the TLS port waits, the link is served: other commands are dispatched. */
        pump(a, (uint32_t)(end - now > 200 ? 200 : end - now));
    }
}

/* ---- the transaction machine's host hooks ---- */

static int txn_write(void *ctx, const uint8_t *frame, size_t len)
{
    return host_write(ctx, frame, len);
}

static void txn_poll(void *ctx)
{
    struct app *a = ctx;
    /* Everything that has arrived, one frame at a time, without waiting. */
    for (int i = 0; i < 64; i++) {
        int had = a->rx_pos < a->rx_len;
        pump(a, 0);
        if (!had && a->rx_pos >= a->rx_len) {
            break;
        }
    }
}

static int txn_setup(struct app *a)
{
    mpos_txn_config cfg;
    mpos_txn_env env;
    memset(&cfg, 0, sizeof(cfg));
    memset(&env, 0, sizeof(env));
    cfg.emv = &a->emv;
    if (timing_opts(a->o, &cfg) != 0) {
        return MPOS_ERR_ARG; /* checked by cmd_run already */
    }
    env.hal = &a->hal;
    env.cc = &a->t.cc;
    mpos_txn_store_keystore(&env.store, a->t.ks);
    mpos_chan_net(&a->chan, &env.net);
    env.host.ctx = a;
    env.host.session = &a->session;
    env.host.write = txn_write;
    env.host.poll = txn_poll;
    int rc = mpos_txn_init(&a->txn, &cfg, &env);
    a->txn_ready = rc == 0 && a->have_params && a->emv.aid_count > 0;
    return rc;
}

static void do_activate(struct app *a)
{
    a->busy = 1;
    a->pending_activate = 0;
    log_kv("event=activation_start");
    send_prompt(a, MPOS_HAL_PROMPT_ACTIVATING);
    int rc = mpos_chan_activate(&a->chan, a->code);
    mpos_cleanse(a->code, sizeof(a->code));
    if (rc == 0) {
        a->have_params = 1;
        a->chan.params_changed = 0;
        (void)txn_setup(a);
        if (mpos_link_session_set_state(&a->session, MPOS_LINK_STATE_IDLE) != 0) {
            rc = MPOS_ERR_STATE;
        }
    }
    if (rc == 0) {
        char mid[MPOS_KEYSTORE_MID_LEN + 1], tid[MPOS_KEYSTORE_TID_LEN + 1];
        if (mpos_keystore_activation(a->t.ks, mid, tid) == 0) {
            log_kv("event=activated merchant_id=%s terminal_id=%s", mid, tid);
        }
        send_prompt(a, MPOS_HAL_PROMPT_ACTIVATED);
        send_result(a, MPOS_LINK_OUTCOME_ACTIVATED);
    } else {
        log_kv("event=activation_failed rc=%d status=%u what=\"%s\"", rc,
               (unsigned)mpos_chan_status(&a->chan),
               rc == MPOS_CHAN_REFUSED ? "refused by the back end" : mpos_hal_strerror(rc));
        send_prompt(a, MPOS_HAL_PROMPT_NOT_ACTIVATED);
        send_result(a, MPOS_LINK_OUTCOME_ACTIVATION_FAILED);
    }
    a->busy = 0;
}

static void do_txn(struct app *a)
{
    mpos_txn_result res;
    a->busy = 1;
    a->pending_start = 0;
    int rr = sim_reader_ready(&a->reader, 1000);
    if (rr != 0) {
        log_kv("event=reader_unavailable pattern=\"%s\" what=\"%s\"", a->o->reader,
               mpos_hal_strerror(rr));
    }
    memset(&res, 0, sizeof(res));
    int rc = mpos_txn_run(&a->txn, &res);
    log_kv("event=txn_done rc=%d outcome=%s reason=%u type=%u amount=%llu currency=%u "
           "sequence=%u entry_mode=%u pan=%s response_code=%s reversal_pending=%d",
           rc, mpos_link_outcome_name(res.outcome), (unsigned)res.reason, (unsigned)res.txn_type,
           (unsigned long long)res.amount, (unsigned)res.currency, (unsigned)res.sequence,
           (unsigned)res.entry_mode, res.masked_pan[0] ? res.masked_pan : "-",
           res.response_code[0] ? res.response_code : "-", res.reversal_pending);
    mpos_cleanse(&res, sizeof(res));
    if (a->chan.params_changed) {
        /* A newer package came with HELLO_OK: the machine takes it while idle. */
        a->chan.params_changed = 0;
        a->have_params = 1;
        (void)txn_setup(a);
    }
    a->flush_again = 1;
    a->busy = 0;
}

static void maybe_flush(struct app *a)
{
    mpos_keystore_info info;
    if (!a->txn_ready || a->cfd < 0 || mpos_txn_get_state(&a->txn) != MPOS_TXN_IDLE ||
        (a->flush_conn == a->conn_id && !a->flush_again)) {
        return;
    }
    a->flush_conn = a->conn_id;
    a->flush_again = 0;
    if (mpos_keystore_info_get(a->t.ks, &info) != 0 || !info.reversal_pending) {
        return;
    }
    a->busy = 1;
    int rc = mpos_txn_flush_reversal(&a->txn);
    a->busy = 0;
    log_kv("event=reversal_flush rc=%d pending=%d", rc, rc == 1);
}

static int cmd_run(const struct opts *given)
{
    struct opts run_opts = *given;
    const struct opts *o = &run_opts;
    struct app *a = NULL;
    const char *what = NULL;
    char mid[MPOS_KEYSTORE_MID_LEN + 1], tid[MPOS_KEYSTORE_TID_LEN + 1];
    char addr[300];
    char *unix_path = NULL;
    int ret = 1, rc, kp_open = 0, disp_open = 0, reader_open = 0, params_open = 0;
    struct sigaction sa;

    if (o->dir == NULL || o->link == NULL || o->serial || o->bundle || o->ca_cert) {
        return usage();
    }
    {
        mpos_txn_config check;
        memset(&check, 0, sizeof(check));
        if (timing_opts(o, &check) != 0) {
            return usage();
        }
    }
    if (run_opts.reader == NULL) {
        /* The harness of the PC/SC tests names its first vpcd reader in this variable. */
        run_opts.reader = getenv("MPOS_PCSC_READER_0");
        if (run_opts.reader == NULL || run_opts.reader[0] == '\0') {
            run_opts.reader = TERMINAL_READER_DEFAULT;
        }
    }
    if (run_opts.server_name == NULL) {
        run_opts.server_name = TERMINAL_SERVER_NAME_DEFAULT;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return fail("out of memory", 0);
    }
    a->o = o;
    a->lfd = a->cfd = -1;
    rc = term_open(&a->t, o->dir, 0, &what);
    if (rc != 0) {
        ret = fail(what, rc);
        goto exit;
    }
    rc = term_serial(&a->t, a->serial);
    if (rc != 0) {
        ret = fail("no serial in the key store (run keygen first)", rc);
        goto exit;
    }
    /* The HAL. */
    if (sim_keypad_init(&a->kp, o->keys) != 0) {
        ret = 2;
        goto exit;
    }
    kp_open = 1;
    if (sim_display_init(&a->disp, o->display_log, o->keys == NULL) != 0) {
        fprintf(stderr, "mpos-terminal: %s: %s\n", o->display_log, strerror(errno));
        goto exit;
    }
    disp_open = 1;
    if (sim_reader_init(&a->reader, o->reader, o->swipe_dir) != 0) {
        ret = fail("reader setup failed", 0);
        goto exit;
    }
    reader_open = 1;
    sim_keypad_bind(&a->kp, &a->hal_keypad);
    sim_display_bind(&a->disp, &a->hal_display);
    sim_keypad_follow(&a->kp, &a->disp); /* --keys at:PROMPT */
    sim_reader_bind(&a->reader, &a->hal_reader);
    mpos_hal_linux_clock_bind(&a->hal_clock);
    rc = mpos_tls_port_new(&a->tls);
    if (rc != 0) {
        ret = fail("TLS port", rc);
        goto exit;
    }
    mpos_tls_port_hal(a->tls, &a->hal_tls);
    a->hal.reader = &a->hal_reader;
    a->hal.keypad = &a->hal_keypad;
    a->hal.display = &a->hal_display;
    a->hal.storage = &a->t.storage;
    a->hal.rng = &a->t.rng;
    a->hal.clock = &a->hal_clock;
    a->hal.tls = &a->hal_tls;
    a->transport.ctx = a;
    a->transport.send = tr_send;
    a->transport.recv = tr_recv;
    /* The parameters held, on the defaults (terminal type, capabilities). */
    uint32_t fw = 0;
    if (mpos_chan_firmware_number(TERMINAL_FIRMWARE, &fw) != 0) {
        ret = fail("firmware version", 0);
        goto exit;
    }
    mpos_emv_params_default(&a->emv);
    rc = mpos_params_open(&a->params, &a->t.storage, &a->t.rng, &a->t.cc, fw, &a->emv);
    if (rc < 0) {
        ret = fail("cannot open the parameter store", rc);
        goto exit;
    }
    params_open = 1;
    a->have_params = rc == 0;
    if (rc == MPOS_PARAMS_FIRMWARE_TOO_OLD) {
        log_kv("event=params_firmware_too_old");
    }
    mpos_chan_config ccfg = {a->serial, TERMINAL_FIRMWARE, o->server_name, 0};
    rc = mpos_chan_init(&a->chan, &a->hal, a->t.ks, &a->params, &a->emv, &a->transport, &ccfg);
    if (rc != 0) {
        ret = fail("channel setup (server name, serial)", rc);
        goto exit;
    }
    rc = mpos_keystore_activation(a->t.ks, mid, tid);
    int activated = rc == 0;
    rc = mpos_link_session_init(&a->session,
                                activated ? MPOS_LINK_STATE_IDLE : MPOS_LINK_STATE_NOT_ACTIVATED);
    if (rc != 0) {
        ret = fail("link session", rc);
        goto exit;
    }
    rc = txn_setup(a);
    if (rc != 0) {
        ret = fail("transaction setup", rc);
        goto exit;
    }
    if (sim_reader_ready(&a->reader, 2000) != 0) {
        log_kv("event=reader_unavailable pattern=\"%s\"", o->reader);
    }
    a->lfd = link_listen(o->link, addr, sizeof(addr), &unix_path);
    if (a->lfd == -2) {
        ret = usage();
        goto exit;
    }
    if (a->lfd < 0) {
        fprintf(stderr, "mpos-terminal: %s: %s\n", o->link, strerror(errno));
        goto exit;
    }
    log_kv("event=start serial=%s firmware=%s activated=%d params=%d server_name=%s", a->serial,
           TERMINAL_FIRMWARE, activated, a->have_params, o->server_name);
    send_prompt(a, activated ? MPOS_HAL_PROMPT_WELCOME : MPOS_HAL_PROMPT_NOT_ACTIVATED);
    printf("link=%s\n", addr);
    fflush(stdout);

    while (!stop_flag) {
        if (a->chan_stale) {
            mpos_chan_close(&a->chan);
            a->chan_stale = 0;
        }
        if (a->pending_activate) {
            do_activate(a);
            continue;
        }
        if (a->pending_start) {
            do_txn(a);
            continue;
        }
        maybe_flush(a);
        pump(a, 500);
    }
    log_kv("event=stop");
    ret = 0;
exit:
    if (a != NULL) {
        host_drop(a);
        mpos_chan_close(&a->chan);
        if (a->lfd >= 0) {
            close(a->lfd);
        }
        if (a->txn_ready || a->txn.env.hal != NULL) {
            mpos_txn_clear(&a->txn);
        }
        if (params_open) {
            mpos_params_close(&a->params);
        }
        mpos_tls_port_free(a->tls);
        if (reader_open) {
            sim_reader_close(&a->reader);
        }
        if (disp_open) {
            sim_display_close(&a->disp);
        }
        if (kp_open) {
            sim_keypad_close(&a->kp);
        }
        term_close(&a->t);
        mpos_cleanse(a, sizeof(*a));
        free(a);
    }
    if (unix_path != NULL) {
        (void)unlink(unix_path);
        free(unix_path);
    }
    return ret;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc < 2 || parse_opts(argc, argv, &o) != 0) {
        return usage();
    }
    if (strcmp(argv[1], "keygen") == 0) {
        return cmd_keygen(&o);
    }
    if (strcmp(argv[1], "import") == 0) {
        return cmd_import(&o);
    }
    if (strcmp(argv[1], "run") == 0) {
        return cmd_run(&o);
    }
    return usage();
}
