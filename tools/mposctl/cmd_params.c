/* mposctl params publish: builds the signed EMV parameter package (docs/protocol.md 3) with
 * terminal/core/params' builder, both signatures made inside mpos-hsmd (params.sign): the
 * endorsement of the parameter-signing key by the anchor key (the back end's CA key, whose
 * certificate the terminals hold as TLS trust anchor and parameter anchor), the package by
 * the endorsed key. mposctl never sees a private key; before it writes the file it verifies
 * the package under the anchor's public key as a terminal would. */
#define _POSIX_C_SOURCE 200809L /* fsync, fchmod */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_hsm.h"
#include "mpos/ecc.h"
#include "mpos/util.h"

#ifdef MPOSCTL_HAVE_PARAMS
#include "params.h"
#endif

static const char help_params_publish[] =
    "usage: mposctl params publish --sign-key LABEL --anchor-key LABEL --version N\n"
    "                              --min-firmware X.Y.Z --out FILE [--country N]\n"
    "                              [--currency N] [--exponent N] [--mcc NNNN] [--aid HEX]...\n"
    "                              [--validity DAYS]\n"
    "Builds the signed EMV parameter package the terminals take (docs/protocol.md 3): the\n"
    "endorsement of the parameter-signing key (--sign-key, S0 ec) signed by the anchor key\n"
    "(--anchor-key, S1/S0 ec: the back end's CA key, whose certificate is the terminals' trust\n"
    "anchor), and the parameters signed by the endorsed key; both signatures by mpos-hsmd\n"
    "(params.sign). Writes FILE (mode 0644: it is public; never overwritten), prints its\n"
    "version, size and SHA-256.\n"
    "  --version N         1 to 4294967295; terminals take only a version above theirs\n"
    "  --min-firmware V    X.Y.Z (each 0 to 255): older firmware refuses transactions\n"
    "  --country N         terminal country code, ISO 3166 numeric 1 to 999 (default 156)\n"
    "  --currency N        transaction currency, ISO 4217 numeric 1 to 999 (default 156)\n"
    "  --exponent N        currency exponent 0 to 3 (default 2)\n"
    "  --mcc NNNN          merchant category code, 4 digits (default: none)\n"
    "  --aid HEX           an AID (5 to 16 bytes), up to 8 times; default the UnionPay debit,\n"
    "                      credit and quasi-credit AIDs A000000333010101/02/03. Each: partial\n"
    "                      selection allowed, application version 0030, the kernel's TACs\n"
    "                      (denial 0010000000, online D84004F800, default D84000A800), floor\n"
    "                      limit 0 (an online-only terminal), no transaction limit\n"
    "  --validity DAYS     the endorsement's validity, 1 to 3650 days (default 365)\n";

#if defined(MPOSCTL_HAVE_HSM) && defined(MPOSCTL_HAVE_PARAMS)

#define MAX_AID_ARGS 8
/* The endorsement starts one day back: a terminal whose clock is a little behind the back
 * end's must still find the package's issue time and its own time inside the validity. */
#define CLOCK_SKEW_S 86400

static const char *const default_aids[] = {"A000000333010101", "A000000333010102",
                                           "A000000333010103"};

/* The signing callback of the builder: params.sign in mpos-hsmd with one key. */
struct hsm_signer {
    hsm_client *hc;
    struct hsm_kb_in key;
    int hsm_rc; /* the client's result when it failed (for the message) */
};

static int hsm_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[MPOS_ECDSA_P256_SIG_LEN])
{
    struct hsm_signer *s = ctx;
    struct hsm_params_sign_req req;
    struct hsm_params_sign_resp resp;
    memset(&req, 0, sizeof(req));
    req.key = s->key;
    req.data = msg;
    req.data_len = len;
    s->hsm_rc = hsm_client_params_sign(s->hc, &req, &resp);
    if (s->hsm_rc != 0) {
        return MPOS_ERR_CRYPTO;
    }
    if (!resp.has_sig) {
        s->hsm_rc = MPOS_ERR_FORMAT;
        return MPOS_ERR_CRYPTO;
    }
    memcpy(sig, resp.sig, MPOS_ECDSA_P256_SIG_LEN);
    return MPOS_OK;
}

/* A decimal number in [min, max], digits only. */
static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9' || strlen(s) > 20) {
        return 0;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* n3 / n4 as packed BCD in 2 bytes (0156 -> 01 56). */
static void bcd2(unsigned v, uint8_t out[2])
{
    out[0] = (uint8_t)(((v / 1000) % 10) << 4 | ((v / 100) % 10));
    out[1] = (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* "X.Y.Z", each 0..255, into (X << 16) | (Y << 8) | Z. */
static int parse_firmware(const char *s, uint32_t *out)
{
    unsigned long long part[3];
    char buf[16];
    if (s == NULL || strlen(s) >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, s, strlen(s) + 1);
    char *p = buf;
    for (int i = 0; i < 3; i++) {
        char *dot = strchr(p, '.');
        if ((i < 2) != (dot != NULL)) {
            return 0;
        }
        if (dot != NULL) {
            *dot = '\0';
        }
        if (!parse_uint(p, 0, 255, &part[i])) {
            return 0;
        }
        p = dot != NULL ? dot + 1 : p;
    }
    *out = (uint32_t)(part[0] << 16 | part[1] << 8 | part[2]);
    return 1;
}

static int parse_aid(struct ctl *c, const char *hex, mpos_params_aid *a)
{
    static const uint8_t denial[5] = MPOS_EMV_TAC_DENIAL_DEFAULT;
    static const uint8_t online[5] = MPOS_EMV_TAC_ONLINE_DEFAULT;
    static const uint8_t deflt[5] = MPOS_EMV_TAC_DEFAULT_DEFAULT;
    memset(a, 0, sizeof(*a));
    if (strlen(hex) < 10 || strlen(hex) > 2 * sizeof(a->aid) ||
        mpos_hex_decode(hex, a->aid, sizeof(a->aid), &a->aid_len) != MPOS_OK || a->aid_len < 5) {
        return ctl_error(c, CTL_USAGE, "--aid: an AID of 5 to 16 bytes in hex, not '%s'",
                         ctl_echo(hex));
    }
    /* Partial selection: the card's DF name may extend the AID (EMV Book 1 12.3.1). The TACs
     * are the kernel's defaults for this online-only terminal (emv_kernel.h), the floor limit
     * 0 so that every transaction goes online, no transaction limit. */
    a->partial = 1;
    a->app_version[0] = 0x00;
    a->app_version[1] = 0x30;
    memcpy(a->tac_denial, denial, sizeof(denial));
    memcpy(a->tac_online, online, sizeof(online));
    memcpy(a->tac_default, deflt, sizeof(deflt));
    a->floor_limit = 0;
    a->txn_limit = 0;
    return CTL_OK;
}

/* Takes every --aid out of argv (ctl_parse allows an option once), into aids[]. */
static int take_aids(struct ctl *c, int *argc, char **argv, const char **aids, size_t *n)
{
    int out = 1;
    *n = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *value = NULL;
        if (strcmp(a, "--") == 0) {
            while (i < *argc) {
                argv[out++] = argv[i++];
            }
            break;
        }
        if (strcmp(a, "--aid") == 0) {
            if (i + 1 >= *argc) {
                return ctl_error(c, CTL_USAGE, "option --aid needs a value");
            }
            value = argv[++i];
        } else if (strncmp(a, "--aid=", 6) == 0) {
            value = a + 6;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (*n >= MAX_AID_ARGS) {
            return ctl_error(c, CTL_USAGE, "--aid: at most %d", MAX_AID_ARGS);
        }
        aids[(*n)++] = value;
    }
    *argc = out;
    return CTL_OK;
}

static int write_public(struct ctl *c, const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return ctl_error(c, CTL_FAIL, "cannot create %s: %s", path, strerror(errno));
    }
    /* 0644 whatever the umask: the package is public, every terminal fetches it. */
    int ok = fchmod(fd, 0644) == 0;
    ssize_t w = write(fd, data, len);
    ok = ok && w >= 0 && (size_t)w == len && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return ctl_error(c, CTL_FAIL, "cannot write %s", path);
    }
    return CTL_OK;
}

static int params_publish(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"sign-key", 1, NULL}, {"anchor-key", 1, NULL},
                             {"version", 1, NULL},  {"min-firmware", 1, NULL},
                             {"country", 1, NULL},  {"currency", 1, NULL},
                             {"exponent", 1, NULL}, {"mcc", 1, NULL},
                             {"validity", 1, NULL}, {"out", 1, NULL}};
    const char *aid_args[MAX_AID_ARGS];
    size_t n_aids = 0;
    unsigned long long v = 0;
    int64_t days = 365;
    mpos_params p;
    mpos_params_endorsement e;
    mpos_params_package *check = NULL;
    struct mpos_store_key sign_key, anchor_key;
    struct hsm_params_sign_req preq;
    struct hsm_params_sign_resp presp;
    struct hsm_signer signer, anchor;
    hsm_client hc;
    int hc_open = 0;
    uint8_t endorsement[256], anchor_pub[MPOS_EC_P256_PUB_LEN], digest[MPOS_SHA256_LEN];
    uint8_t *pkg = NULL;
    size_t endorsement_len = 0, pkg_len = 0;
    char digest_hex[2 * MPOS_SHA256_LEN + 1];
    char **args = NULL;

    /* A copy of argv without the --aid options (which may repeat). */
    args = calloc((size_t)argc + 1, sizeof(*args));
    if (args == NULL) {
        return ctl_error(c, CTL_FAIL, "out of memory");
    }
    memcpy(args, argv, (size_t)argc * sizeof(*args));
    int rc = take_aids(c, &argc, args, aid_args, &n_aids);
    if (rc == CTL_OK) {
        rc = ctl_parse(c, argc, args, opts, CTL_NOPTS(opts), NULL, 0, 0, help_params_publish);
    }
    if (rc != CTL_OK) {
        free(args);
        return rc;
    }
    free(args);
    const char *sign_label = ctl_get(opts, CTL_NOPTS(opts), "sign-key");
    const char *anchor_label = ctl_get(opts, CTL_NOPTS(opts), "anchor-key");
    const char *version = ctl_get(opts, CTL_NOPTS(opts), "version");
    const char *min_fw = ctl_get(opts, CTL_NOPTS(opts), "min-firmware");
    const char *country = ctl_get(opts, CTL_NOPTS(opts), "country");
    const char *currency = ctl_get(opts, CTL_NOPTS(opts), "currency");
    const char *exponent = ctl_get(opts, CTL_NOPTS(opts), "exponent");
    const char *mcc = ctl_get(opts, CTL_NOPTS(opts), "mcc");
    const char *validity = ctl_get(opts, CTL_NOPTS(opts), "validity");
    const char *out = ctl_get(opts, CTL_NOPTS(opts), "out");
    if (sign_label == NULL || anchor_label == NULL || version == NULL || min_fw == NULL ||
        out == NULL) {
        return ctl_error(c, CTL_USAGE,
                         "missing --sign-key, --anchor-key, --version, "
                         "--min-firmware or --out (try --help)");
    }

    memset(&p, 0, sizeof(p));
    if (!parse_uint(version, 1, UINT32_MAX, &v)) {
        return ctl_error(c, CTL_USAGE, "--version: 1 to 4294967295");
    }
    p.version = (uint32_t)v;
    if (!parse_firmware(min_fw, &p.min_firmware)) {
        return ctl_error(c, CTL_USAGE, "--min-firmware: X.Y.Z, each 0 to 255");
    }
    if (!parse_uint(country != NULL ? country : "156", 1, 999, &v)) {
        return ctl_error(c, CTL_USAGE, "--country: ISO 3166 numeric, 1 to 999");
    }
    bcd2((unsigned)v, p.country);
    if (!parse_uint(currency != NULL ? currency : "156", 1, 999, &v)) {
        return ctl_error(c, CTL_USAGE, "--currency: ISO 4217 numeric, 1 to 999");
    }
    bcd2((unsigned)v, p.currency);
    if (!parse_uint(exponent != NULL ? exponent : "2", 0, 3, &v)) {
        return ctl_error(c, CTL_USAGE, "--exponent: 0 to 3");
    }
    p.currency_exponent = (uint8_t)v;
    if (mcc != NULL) {
        if (strlen(mcc) != 4 || !parse_uint(mcc, 0, 9999, &v)) {
            return ctl_error(c, CTL_USAGE, "--mcc: 4 digits");
        }
        p.has_mcc = 1;
        bcd2((unsigned)v, p.mcc);
    }
    if (validity != NULL && (strspn(validity, "0123456789") != strlen(validity) ||
                             !ctl_duration(validity, 1, 3650, &days))) {
        return ctl_error(c, CTL_USAGE, "--validity: 1 to 3650 days");
    }
    if (n_aids == 0) {
        n_aids = sizeof(default_aids) / sizeof(default_aids[0]);
        memcpy(aid_args, default_aids, sizeof(default_aids));
    }
    for (size_t i = 0; i < n_aids; i++) {
        rc = parse_aid(c, aid_args[i], &p.aids[i]);
        if (rc != CTL_OK) {
            return rc;
        }
        for (size_t j = 0; j < i; j++) {
            if (p.aids[j].aid_len == p.aids[i].aid_len &&
                memcmp(p.aids[j].aid, p.aids[i].aid, p.aids[i].aid_len) == 0) {
                return ctl_error(c, CTL_USAGE, "--aid: %s given twice", ctl_echo(aid_args[i]));
            }
        }
    }
    p.aid_count = n_aids;
    p.capk_count = 0; /* an online-only terminal does no offline data authentication */
    p.issued = c->now;

    memset(&e, 0, sizeof(e));
    e.usage = MPOS_PARAMS_USAGE;
    e.not_before = c->now - CLOCK_SKEW_S;
    e.not_after = c->now + days * 86400;

    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = ctl_hsm_load_block(c, "sign-key", sign_label, &sign_key, &signer.key);
    }
    if (rc == CTL_OK) {
        rc = ctl_hsm_load_block(c, "anchor-key", anchor_label, &anchor_key, &anchor.key);
    }
    if (rc == CTL_OK) {
        rc = ctl_hsm_open(c, &hc);
        hc_open = rc == CTL_OK;
    }
    if (rc != CTL_OK) {
        goto exit;
    }
    signer.hc = &hc;
    anchor.hc = &hc;
    signer.hsm_rc = anchor.hsm_rc = 0;

    /* The public keys: the signing key's goes into the endorsement; the anchor's is what the
     * terminals hold (in the CA certificate), for the check below. */
    memset(&preq, 0, sizeof(preq));
    preq.key = signer.key;
    rc = hsm_client_params_sign(&hc, &preq, &presp);
    if (rc != 0) {
        rc = ctl_hsm_error(c, rc, "params publish: --sign-key");
        goto exit;
    }
    memcpy(e.pub, presp.pub, sizeof(e.pub));
    preq.key = anchor.key;
    rc = hsm_client_params_sign(&hc, &preq, &presp);
    if (rc != 0) {
        rc = ctl_hsm_error(c, rc, "params publish: --anchor-key");
        goto exit;
    }
    memcpy(anchor_pub, presp.pub, sizeof(anchor_pub));
    if (memcmp(anchor_pub, e.pub, sizeof(anchor_pub)) == 0) {
        /* The anchor endorsing itself would make the endorsement pointless: the anchor's
         * private key is to sign endorsements only (docs/protocol.md 3.1). */
        rc = ctl_error(c, CTL_USAGE, "--sign-key and --anchor-key must be different keys");
        goto exit;
    }

    rc = mpos_params_endorsement_build(&e, hsm_sign, &anchor, endorsement, sizeof(endorsement),
                                       &endorsement_len);
    if (rc != MPOS_OK) {
        rc = anchor.hsm_rc != 0
                 ? ctl_hsm_error(c, anchor.hsm_rc, "params publish: endorsement")
                 : ctl_error(c, CTL_FAIL, "params publish: endorsement: %s", mpos_strerror(rc));
        goto exit;
    }
    pkg = malloc(MPOS_PARAMS_MAX_LEN);
    check = malloc(sizeof(*check));
    if (pkg == NULL || check == NULL) {
        rc = ctl_error(c, CTL_FAIL, "out of memory");
        goto exit;
    }
    rc = mpos_params_build(&p, endorsement, endorsement_len, hsm_sign, &signer, pkg,
                           MPOS_PARAMS_MAX_LEN, &pkg_len);
    if (rc != MPOS_OK) {
        rc = signer.hsm_rc != 0
                 ? ctl_hsm_error(c, signer.hsm_rc, "params publish: package")
                 : ctl_error(c, CTL_FAIL, "params publish: package: %s", mpos_strerror(rc));
        goto exit;
    }
    hsm_client_close(&hc);
    hc_open = 0;
    /* What a terminal will do first: verify under the anchor, at the time it was issued. */
    rc = mpos_params_verify(anchor_pub, pkg, pkg_len, c->now, check);
    if (rc != MPOS_OK) {
        rc = ctl_error(c, CTL_FAIL, "params publish: the package does not verify: %s",
                       mpos_strerror(rc));
        goto exit;
    }
    rc = mpos_sha256(pkg, pkg_len, digest) == MPOS_OK ? write_public(c, out, pkg, pkg_len)
                                                      : ctl_error(c, CTL_FAIL, "SHA-256 failed");
    if (rc == CTL_OK) {
        mpos_hex_encode(digest, sizeof(digest), digest_hex);
        fprintf(c->out, "version %lu\nsize %zu\nsha256 %s\n", (unsigned long)p.version, pkg_len,
                digest_hex);
    }
exit:
    if (hc_open) {
        hsm_client_close(&hc);
    }
    free(pkg);
    free(check);
    return rc;
}

#else
static int params_publish(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 99, help_params_publish);
    return rc != CTL_OK ? rc
                        : ctl_error(c, CTL_FAIL,
                                    "this mposctl was built without the mpos-hsmd client or the "
                                    "parameter package module");
}
#endif

int cmd_params(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {{"publish", params_publish}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl params publish   (mposctl params publish --help)\n");
}
