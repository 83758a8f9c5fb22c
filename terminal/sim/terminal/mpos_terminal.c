/* mpos-terminal: the Linux simulator around the portable terminal core (docs/terminal-design.md).
 *
 * First slice: the device identity and provisioning (docs/provisioning.md) and the host link
 * in the "not activated" state (docs/protocol.md, "Host link"):
 *
 *   mpos-terminal keygen --dir DIR --serial SN
 *   mpos-terminal import --dir DIR --bundle FILE --ca-cert FILE
 *   mpos-terminal run    --dir DIR --link unix:PATH|tcp:HOST:PORT
 *
 * The key store lives in DIR through hal_linux's file storage (directory 0700, files 0600).
 * The terminal's serial number is kept in the storage slot "serial" (public data, written at
 * keygen). Private keys never leave the key store: the CSR is signed and the bundle's ECDH is
 * computed by the key store's callbacks; nothing here prints a key.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hal.h"
#include "hal_linux.h"
#include "keystore/keystore.h"
#include "link/link.h"
#include "mpos/crypto.h"
#include "mpos/kcv.h"
#include "mpos/provision.h"
#include "mpos/util.h"

#define TERMINAL_FIRMWARE    "0.1.0-sim"
#define TERMINAL_SERIAL_SLOT "serial"

static const char *const usage_text =
    "usage: mpos-terminal keygen --dir DIR --serial SN\n"
    "       mpos-terminal import --dir DIR --bundle FILE --ca-cert FILE\n"
    "       mpos-terminal run --dir DIR --link unix:PATH|tcp:HOST:PORT\n"
    "\n"
    "keygen  creates the key store in DIR (0700), generates the device P-256 key inside it\n"
    "        and writes the certificate request DIR/SN.csr (PKCS#10, serialNumber=SN)\n"
    "import  opens the provisioning bundle (mposctl terminal provision) under the\n"
    "        manufacturer CA certificate FILE (DER), imports the initial key (AES/TDES DUKPT\n"
    "        or TMK), the device certificate and the trust anchor; prints kind, ID, check value\n"
    "run     serves the host link on a UNIX socket or TCP (port 0: any; the actual address is\n"
    "        printed as link=...): GET_INFO is answered, every other command is refused with\n"
    "        ERROR; SIGTERM or SIGINT stops it\n"
    "\n"
    "Not in this version (later slices): activation, transactions (card, PIN, sealed\n"
    "request) and the TLS tunnel to the back end.\n";

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
        }
        if (dst == NULL || i + 1 >= argc || *dst != NULL) {
            return -1;
        }
        *dst = argv[i + 1];
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

    if (o->dir == NULL || o->serial == NULL || o->bundle || o->ca_cert || o->link) {
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
    if (o->dir == NULL || o->bundle == NULL || o->ca_cert == NULL || o->serial || o->link) {
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

/* ---- run: the host link --------------------------------------------------------------- */

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

struct link_ctx {
    mpos_link_session session;
    mpos_link_decoder dec;
    char serial[MPOS_PROVISION_SERIAL_MAX_LEN + 1];
};

/* Handles one frame; writes the answer to out. 0 or a negative error (close the client). */
static int link_frame(struct link_ctx *l, const mpos_link_frame *frame, uint8_t *out, size_t cap,
                      size_t *out_len)
{
    mpos_link_msg cmd, ev;
    int rc = mpos_link_session_receive(&l->session, frame, &cmd, out, cap, out_len);
    if (rc != 0) {
        return rc > 0 ? 0 : rc; /* > 0: refused with ERROR, written to out */
    }
    memset(&ev, 0, sizeof(ev));
    if (cmd.type == MPOS_LINK_CMD_GET_INFO) {
        ev.type = MPOS_LINK_EVT_INFO;
        ev.u.info.ref_seq = frame->seq;
        ev.u.info.state = (uint8_t)l->session.state;
        snprintf(ev.u.info.serial, sizeof(ev.u.info.serial), "%s", l->serial);
        snprintf(ev.u.info.firmware, sizeof(ev.u.info.firmware), "%s", TERMINAL_FIRMWARE);
    } else {
        /* Allowed by the state table but not in this version (activation, tunnel, location):
         * the terminal fails closed, state unchanged. */
        ev.type = MPOS_LINK_EVT_ERROR;
        ev.u.error.ref_seq = frame->seq;
        ev.u.error.ref_type = frame->type;
        ev.u.error.code = MPOS_LINK_E_INTERNAL;
        ev.u.error.state = (uint8_t)l->session.state;
    }
    return mpos_link_session_send(&l->session, &ev, out, cap, out_len);
}

static int cmd_run(const struct opts *o)
{
    struct term t;
    const char *what = NULL;
    struct link_ctx *l = NULL;
    char mid[MPOS_KEYSTORE_MID_LEN + 1], tid[MPOS_KEYSTORE_TID_LEN + 1];
    char addr[300];
    char *unix_path = NULL;
    static uint8_t in[4096], out[MPOS_LINK_MAX_FRAME_LEN];
    int ret = 1, rc, lfd = -1, cfd = -1;
    struct sigaction sa;

    if (o->dir == NULL || o->link == NULL || o->serial || o->bundle || o->ca_cert) {
        return usage();
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    rc = term_open(&t, o->dir, 0, &what);
    if (rc != 0) {
        ret = fail(what, rc);
        goto exit;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        ret = fail("out of memory", 0);
        goto exit;
    }
    rc = term_serial(&t, l->serial);
    if (rc != 0) {
        ret = fail("no serial in the key store (run keygen first)", rc);
        goto exit;
    }
    rc = mpos_keystore_activation(t.ks, mid, tid);
    /* Activation is a later slice: an activated store would be idle, every other one is not
     * activated. */
    rc = mpos_link_session_init(&l->session,
                                rc == 0 ? MPOS_LINK_STATE_IDLE : MPOS_LINK_STATE_NOT_ACTIVATED);
    if (rc != 0) {
        ret = fail("link session", rc);
        goto exit;
    }
    lfd = link_listen(o->link, addr, sizeof(addr), &unix_path);
    if (lfd == -2) {
        ret = usage();
        goto exit;
    }
    if (lfd < 0) {
        fprintf(stderr, "mpos-terminal: %s: %s\n", o->link, strerror(errno));
        goto exit;
    }
    printf("link=%s\n", addr);
    fflush(stdout);

    while (!stop_flag) {
        struct pollfd pfd = {cfd >= 0 ? cfd : lfd, POLLIN, 0};
        int n = poll(&pfd, 1, 500);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fprintf(stderr, "mpos-terminal: poll: %s\n", strerror(errno));
            goto exit;
        }
        if (n == 0) {
            continue;
        }
        if (cfd < 0) {
            cfd = accept(lfd, NULL, NULL);
            if (cfd >= 0) {
                mpos_link_decoder_init(&l->dec); /* a new host: a fresh stream */
            }
            continue;
        }
        ssize_t got = recv(cfd, in, sizeof(in), 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            close(cfd);
            cfd = -1;
            continue;
        }
        size_t off = 0;
        while (cfd >= 0) {
            size_t used = 0, out_len = 0;
            mpos_link_frame frame;
            rc = mpos_link_decoder_feed(&l->dec, in + off, (size_t)got - off, &used, &frame);
            off += used;
            if (rc != 1) {
                break;
            }
            rc = link_frame(l, &frame, out, sizeof(out), &out_len);
            if (rc != 0 || (out_len > 0 && send_all(cfd, out, out_len) != 0)) {
                close(cfd);
                cfd = -1;
            }
        }
    }
    ret = 0;
exit:
    if (cfd >= 0) {
        close(cfd);
    }
    if (lfd >= 0) {
        close(lfd);
    }
    if (unix_path != NULL) {
        (void)unlink(unix_path);
        free(unix_path);
    }
    free(l);
    term_close(&t);
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
