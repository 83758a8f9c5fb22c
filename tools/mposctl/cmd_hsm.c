/* mposctl: the commands that go through mpos-hsmd's tools socket (hsm, bdk, key generate |
 * import | export, terminal provision), and hsm init, which creates the LMK in-process with
 * the vault (hsm/vault/vault.h) and the PKCS#11 token. Keys only ever reach mposctl as key
 * blocks (under the LMK, or under a KEK / transport key for export): never in clear. */
#define _POSIX_C_SOURCE 200809L /* fileno, fstat */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ctl.h"
#include "mpos/crypto.h"
#include "mpos/provision.h"
#include "mpos/util.h"

#include "ctl_hsm.h"

static const char help_hsm_status[] =
    "usage: mposctl hsm status [--hsm SOCKET]\n"
    "Asks mpos-hsmd for its version, the role of the socket, the LMK check value and its\n"
    "counters.\n";

static const char help_hsm_init[] =
    "usage: mposctl hsm init [--pkcs11-module SO] [--token-label LABEL] [--pin-file FILE]\n"
    "                        [--lmk-wrapped FILE]\n"
    "Creates a new LMK: generates it in locked memory, creates the token's non-extractable\n"
    "wrapping key (mpos-lmk-kek) if missing, and writes the LMK wrapped by the token to\n"
    "--lmk-wrapped (mode 0600; an existing file is never overwritten). Prints the LMK check\n"
    "value. The token PIN is read from --pin-file (no group or other permissions).\n"
    "Each option defaults to the [lmk] key of the --config file that mpos-hsmd reads too:\n"
    "pkcs11_module, token_label, pin_file, wrapped; one missing from both is an error.\n";

static const char help_bdk_create[] =
    "usage: mposctl bdk create --type aes128|aes192|aes256|2tdea|3tdea [--label LABEL]\n"
    "                          [--key-set-id HEX] [--first-device N] [--exportable]\n"
    "Generates a DUKPT base derivation key in mpos-hsmd (usage B0), stores its key block\n"
    "under the LMK and creates its KSN allocator, in one transaction. Prints its label,\n"
    "type, check value (never the key), scheme and key set ID.\n"
    "  --type           aes128, aes192, aes256: AES DUKPT (X9.24-3) with a 16, 24 or 32-byte\n"
    "                   BDK; 2tdea, 3tdea: TDES DUKPT (X9.24-1) with a 16 or 24-byte BDK\n"
    "                   (--algorithm aes|tdes [--length BYTES] is accepted instead)\n"
    "  --label LABEL    1 to 64 of [a-z0-9._:-]; default bdk-TYPE-N, N the first free number\n"
    "  --key-set-id HEX aes: the 4-byte BDK ID (8 hex); tdes: the 5-byte key set ID (10 hex);\n"
    "                   default random\n"
    "  --first-device N first derivation ID (aes) or device ID (tdes) handed out (default 1)\n"
    "  --exportable     the BDK may be exported under a KEK (default: never)\n";

static const char help_key_generate[] =
    "usage: mposctl key generate --label LABEL --usage USAGE --algorithm ALG [--length BYTES]\n"
    "                            [--mode MODE] [--exportable]\n"
    "Generates a key in mpos-hsmd and stores its key block under the LMK.\n"
    "  --usage      TR-31 key usage: P0 (PIN), M1..M8 (MAC), D0 (data), K0 (KEK, TMK),\n"
    "               K1 (key block protection), E0..E6 (EMV), V0..V4 (PIN verification),\n"
    "               C0, S0/S1 (signature / CA, with --algorithm ec); BDKs: mposctl bdk create\n"
    "  --algorithm  aes, tdes, hmac, sm4 or ec (P-256)\n"
    "  --length     key bytes (default: aes 16, tdes 16, hmac 32, sm4 16)\n"
    "  --mode       TR-31 mode of use (default from the usage: B, C, X or S)\n"
    "  --exportable the key may be exported under a KEK (default: never)\n"
    "Prints: LABEL KCV (for ec: the first 5 bytes of SHA-256 of the public key)\n";

static const char help_key_import[] =
    "usage: mposctl key import --label LABEL --kek LABEL --block-file FILE [--kcv HEX]\n"
    "                          [--dukpt aes|tdes]\n"
    "       mposctl key import --label LABEL --components 2|3 --usage USAGE\n"
    "                          --algorithm aes|tdes [--length BYTES] [--mode MODE]\n"
    "                          [--exportable]\n"
    "Imports a key received as a TR-31 block under a KEK (a K0/K1 key in the database),\n"
    "re-wrapped by mpos-hsmd under the LMK. FILE holds the block ('-': standard input).\n"
    "--kcv: the check value the sender announced (compared inside mpos-hsmd).\n"
    "With --components: forms the key inside mpos-hsmd from clear components entered under\n"
    "dual control, one hex component per line on standard input (never argv), each --length\n"
    "bytes (default 16); the key is their XOR. Prints each component's check value, for its\n"
    "custodian to compare, then LABEL KCV of the key. A B0 key (a BDK to share, e.g. with a\n"
    "test network) gets its DUKPT scheme from the algorithm.\n";

static const char help_key_export[] =
    "usage: mposctl key export --label LABEL --kek LABEL [--exportability N|E]\n"
    "Exports an exportable key as a TR-31 block under a KEK (default exportability of the\n"
    "block: N, so the receiver cannot pass it on). Prints the block, then its KCV.\n";

static const char help_bdk_import[] =
    "usage: mposctl bdk import --label LABEL --kek LABEL --block-file FILE --key-set-id HEX\n"
    "                          [--first-device N] [--kcv HEX]\n"
    "Imports a BDK received as a TR-31 block (usage B0) under a KEK in the database, and\n"
    "creates its KSN allocator, in one transaction (as bdk create). --key-set-id: AES the\n"
    "4-byte BDK ID (8 hex), TDES the 5-byte key set ID (10 hex).\n";

static const char help_cert_sign[] =
    "usage: mposctl cert sign --ca-key LABEL --ca-cert FILE --csr FILE --dns NAME --out FILE\n"
    "                         [--validity DAYS]\n"
    "Has mpos-hsmd issue a TLS server certificate (X.509 v3, DER; subject CN=NAME, DNS\n"
    "subjectAltName NAME, extendedKeyUsage serverAuth) for the P-256 key of a PKCS#10 request\n"
    "(DER or PEM), signed by a CA key (S1/S0, ec) whose certificate is FILE: the back end's.\n"
    "Writes the certificate to --out (DER; not overwritten), prints its SHA-256. --validity 1\n"
    "to 825 days (default 365).\n";

static const char help_ca_create[] =
    "usage: mposctl ca create --key LABEL --cn NAME [--out FILE] [--validity DAYS]\n"
    "Has mpos-hsmd issue the manufacturer CA's self-signed certificate (X.509 v3, DER,\n"
    "ECDSA P-256 with SHA-256; CA:TRUE, pathlen 0) for an S1/S0 EC key in the database\n"
    "(mposctl key generate --usage S1 --algorithm ec). Keeps it beside the database as\n"
    "DB-ca/LABEL.der (what terminal provision uses by default), also writes it to FILE (not\n"
    "overwritten), and prints its SHA-256 fingerprint. --validity: 1 to 7300 days (default\n"
    "3650).\n";

static const char help_provision[] =
    "usage: mposctl terminal provision --serial SERIAL [--scheme SCHEME] [--csr FILE]\n"
    "                                  [--ca-key LABEL] [--ca-cert FILE] [--bdk LABEL]\n"
    "                                  [--trust-anchor FILE] [--out DIR] [--validity DAYS]\n"
    "Provisions one terminal (T-UNIQ-1, docs/provisioning.md): allocates its unique initial\n"
    "KSN from the BDK's allocator (DUKPT), then one mpos-hsmd command signs its certificate\n"
    "request with the manufacturer CA key and wraps its initial key (DUKPT) or a fresh TMK\n"
    "(mkwk) under a transport key that only this terminal's device key can derive. Records\n"
    "the terminal (state provisioned): KSN or TMK check value and key block, certificate\n"
    "fingerprint. Writes the bundle to DIR/SERIAL.bundle (never overwritten).\n"
    "  --serial SERIAL    1 to 32 of A-Z a-z 0-9 '-', exactly as in the request (case matters)\n"
    "  --scheme SCHEME    dukpt-aes (default), dukpt-tdes, mkwk-tdes (2-key TDES TMK) or\n"
    "                     mkwk-sm4 (SM4 TMK, a TR-31 block with the proprietary algorithm 4)\n"
    "  --csr FILE         the terminal's PKCS#10 request, DER or PEM (P-256, subject\n"
    "                     serialNumber=SERIAL); default DIR/SERIAL.csr, then ./SERIAL.csr\n"
    "  --ca-key LABEL     the manufacturer CA key (S1/S0, ec); default: the one CA key with a\n"
    "                     certificate from mposctl ca create (an error if not exactly one)\n"
    "  --ca-cert FILE     its certificate; default: the one ca create kept (DB-ca/LABEL.der)\n"
    "  --bdk LABEL        DUKPT only: the BDK; default the newest B0 key of the scheme's\n"
    "                     algorithm (AES for dukpt-aes, TDES for dukpt-tdes)\n"
    "  --trust-anchor F   the back end's TLS trust anchor (DER certificate) for the bundle\n"
    "  --out DIR          where to write the bundle (default: the current directory)\n"
    "  --validity DAYS    certificate validity, 1 to 3650 (default 365)\n"
    "Output: serial, scheme, bdk or tmk-algorithm, ca-key, initial-ksn or tmk-kcv and\n"
    "tmk-label, kcv, cert-sha256, cert-serial, bundle.\n";

#if !defined(MPOSCTL_HAVE_HSM) || !defined(MPOSCTL_HAVE_VAULT)
static int no_hsm(struct ctl *c)
{
    return ctl_error(c, CTL_FAIL, "this mposctl was built without the mpos-hsmd client");
}
#endif

#ifdef MPOSCTL_HAVE_HSM

/* ---- small helpers ---------------------------------------------------------------------- */

static int sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? MPOS_OK
                                                                              : MPOS_ERR_CRYPTO;
}

/* Reads a whole file (or stdin for "-") into a new buffer, NUL-terminated; at most max bytes. */
static int read_file(struct ctl *c, const char *path, uint8_t **out, size_t *len, size_t max)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = CTL_OK;
    if (fp == NULL) {
        return ctl_error(c, CTL_FAIL, "cannot read %s: %s", path, strerror(errno));
    }
    buf = malloc(max + 1);
    if (buf == NULL) {
        rc = ctl_error(c, CTL_FAIL, "out of memory");
        goto exit;
    }
    n = fread(buf, 1, max + 1, fp);
    if (ferror(fp) || n > max) {
        rc = ctl_error(c, CTL_FAIL, "%s: unreadable or larger than %zu bytes", path, max);
        goto exit;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
exit:
    free(buf);
    if (fp != stdin) {
        fclose(fp);
    }
    return rc;
}

static int write_file(struct ctl *c, const char *dir, const char *name, const void *data,
                      size_t len)
{
    char path[CTL_PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        return ctl_error(c, CTL_USAGE, "--out: path too long");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return ctl_error(c, CTL_FAIL, "cannot create %s: %s", path, strerror(errno));
    }
    ssize_t w = write(fd, data, len);
    if (w < 0 || (size_t)w != len || fsync(fd) != 0) {
        close(fd);
        return ctl_error(c, CTL_FAIL, "cannot write %s", path);
    }
    close(fd);
    return CTL_OK;
}

static int hex_arg(struct ctl *c, const char *opt, const char *hex, uint8_t *out, size_t want)
{
    size_t n = 0;
    if (mpos_hex_decode(hex, out, want, &n) != MPOS_OK || n != want) {
        return ctl_error(c, CTL_USAGE, "--%s: %zu bytes of hex", opt, want);
    }
    return CTL_OK;
}

static int hsm_open(struct ctl *c, hsm_client *hc)
{
    int rc = ctl_load_config(c);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->hsm[0] == '\0') {
        return ctl_error(c, CTL_USAGE,
                         "no HSM socket: give --hsm SOCKET or [hsm] socket in the --config file");
    }
    rc = hsm_client_open(hc, c->hsm, c->hsm_timeout_ms);
    if (rc != 0) {
        return ctl_error(c, CTL_FAIL, "cannot connect to mpos-hsmd at %s", c->hsm);
    }
    return CTL_OK;
}

static int hsm_error(struct ctl *c, int rc, const char *what)
{
    if (rc > 0) {
        return ctl_error(c, CTL_FAIL, "%s: mpos-hsmd refused: %s", what, hsm_status_name(rc));
    }
    if (rc == HSM_CLIENT_ERR_TIMEOUT) {
        return ctl_error(c, CTL_FAIL, "%s: mpos-hsmd did not answer in time", what);
    }
    if (rc == HSM_CLIENT_ERR_IO) {
        return ctl_error(c, CTL_FAIL, "%s: connection to mpos-hsmd lost", what);
    }
    return ctl_error(c, CTL_FAIL, "%s: %s", what, mpos_strerror(rc));
}

/* A stored key block as a request argument. */
static int load_block(struct ctl *c, const char *opt, const char *label, struct mpos_store_key *k,
                      struct hsm_kb_in *in)
{
    if (!mpos_store_label_valid(label)) {
        return ctl_error(c, CTL_USAGE, "--%s: a key label ([a-z0-9._:-], 1 to 64)", opt);
    }
    int rc = mpos_store_key_get(c->st, label, k);
    if (rc == MPOS_STORE_NOT_FOUND) {
        return ctl_error(c, CTL_FAIL, "no key %s", label);
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "key");
    }
    in->text = k->key_block;
    in->len = strlen(k->key_block);
    return CTL_OK;
}

static int label_free(struct ctl *c, const char *label)
{
    struct mpos_store_key k;
    if (label == NULL || !mpos_store_label_valid(label)) {
        return ctl_error(c, CTL_USAGE, "--label: 1 to 64 of [a-z0-9._:-]");
    }
    int rc = mpos_store_key_get(c->st, label, &k);
    if (rc == MPOS_OK) {
        return ctl_error(c, CTL_FAIL, "key %s already exists", label);
    }
    return rc == MPOS_STORE_NOT_FOUND ? CTL_OK : ctl_store_error(c, rc, "key");
}

static int hsm_status(struct ctl *c, int argc, char **argv)
{
    hsm_client hc;
    struct hsm_client_status s;
    char kcv[2 * HSM_KCV_LEN + 1];
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 0, help_hsm_status);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_open(c, &hc);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_client_status(&hc, &s);
    hsm_client_close(&hc);
    if (rc != 0) {
        return hsm_error(c, rc, "hsm status");
    }
    mpos_hex_encode(s.lmk_kcv, HSM_KCV_LEN, kcv);
    fprintf(c->out, "version   %s\nrole      %s\nlmk-kcv   %s\nuptime    %llus\n", s.version,
            s.role, kcv, (unsigned long long)s.uptime_s);
    fprintf(c->out, "commands  %llu\nrefused   %llu\nsessions  %llu\nworkers   %u\n",
            (unsigned long long)s.commands, (unsigned long long)s.refused,
            (unsigned long long)s.sessions, s.workers);
    return CTL_OK;
}

static int stored_key_output(struct ctl *c, const char *label, const struct hsm_kb_out *block,
                             const uint8_t *kcv, size_t kcv_len)
{
    char hex[2 * HSM_KCV_LEN + 1];
    mpos_hex_encode(kcv, kcv_len, hex);
    int rc = mpos_store_key_put(c->st, label, block->text, hex, c->now);
    if (rc == MPOS_STORE_EXISTS) {
        return ctl_error(c, CTL_FAIL, "key %s already exists", label);
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "key store");
    }
    fprintf(c->out, "%s %s\n", label, hex);
    return CTL_OK;
}

static int parse_alg(const char *s, char *alg, size_t *len)
{
    static const struct {
        const char *name;
        char code;
        size_t len;
    } algs[] = {
        {"aes", 'A', 16}, {"tdes", 'T', 16}, {"hmac", 'H', 32}, {"sm4", '4', 16}, {"ec", 'E', 32}};
    for (size_t i = 0; s != NULL && i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcmp(s, algs[i].name) == 0) {
            *alg = algs[i].code;
            *len = algs[i].len;
            return 1;
        }
    }
    return 0;
}

/* A default mode of use for a key usage (X9.143:2021 6.3.3). */
static char default_mode(const char *usage)
{
    switch (usage[0]) {
    case 'M':
    case 'V':
    case 'C':
        return 'C';
    case 'E':
    case 'B':
        return 'X';
    case 'S':
        return 'S';
    default:
        return 'B';
    }
}

static int key_generate(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"label", 1, NULL},  {"usage", 1, NULL}, {"algorithm", 1, NULL},
                             {"length", 1, NULL}, {"mode", 1, NULL},  {"exportable", 0, NULL}};
    struct hsm_generate_key_req req;
    struct hsm_generate_key_resp resp;
    hsm_client hc;
    size_t len = 0;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_key_generate);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "label");
    const char *usage = ctl_get(opts, CTL_NOPTS(opts), "usage");
    const char *alg = ctl_get(opts, CTL_NOPTS(opts), "algorithm");
    const char *length = ctl_get(opts, CTL_NOPTS(opts), "length");
    const char *mode = ctl_get(opts, CTL_NOPTS(opts), "mode");
    memset(&req, 0, sizeof(req));
    if (label == NULL || usage == NULL || alg == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --label, --usage or --algorithm (try --help)");
    }
    if (strlen(usage) != 2 || usage[0] < 'A' || usage[0] > 'Z') {
        return ctl_error(c, CTL_USAGE, "--usage: a TR-31 key usage such as P0, M6, K0");
    }
    if (strcmp(usage, "B0") == 0) {
        return ctl_error(c, CTL_USAGE, "a BDK is made with: mposctl bdk create");
    }
    if (!parse_alg(alg, &req.attr.algorithm, &len)) {
        return ctl_error(c, CTL_USAGE, "--algorithm: aes, tdes, hmac, sm4 or ec");
    }
    if (length != NULL) {
        int64_t n = 0;
        if (!ctl_duration(length, 8, 64, &n) || strspn(length, "0123456789") != strlen(length)) {
            return ctl_error(c, CTL_USAGE, "--length: key bytes, 8 to 64");
        }
        len = (size_t)n;
    }
    if (mode != NULL && (strlen(mode) != 1 || strchr("BCDEGNSTVXY", mode[0]) == NULL)) {
        return ctl_error(c, CTL_USAGE, "--mode: one TR-31 mode of use letter");
    }
    memcpy(req.attr.usage, usage, 3);
    req.attr.mode = mode != NULL ? mode[0] : default_mode(usage);
    req.attr.exportability = ctl_get(opts, CTL_NOPTS(opts), "exportable") != NULL ? 'E' : 'N';
    req.key_len = len;
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = label_free(c, label);
    }
    if (rc == CTL_OK) {
        rc = hsm_open(c, &hc);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_client_generate_key(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, "key generate");
        goto exit;
    }
    if (req.attr.algorithm == 'E') {
        /* No check value for a key pair: a fingerprint of its public key instead. */
        uint8_t fp[32];
        if (resp.ec_pub_len == 0 || sha256(resp.ec_pub, resp.ec_pub_len, fp) != MPOS_OK) {
            rc = ctl_error(c, CTL_FAIL, "key generate: no public key in the answer");
            goto exit;
        }
        memcpy(resp.kcv, fp, HSM_KCV_LEN);
        resp.kcv_len = HSM_KCV_LEN;
    }
    rc = stored_key_output(c, label, &resp.key, resp.kcv, resp.kcv_len);
exit:
    MPOS_WIPE_CTX(&resp);
    return rc;
}

/* key import --components: the key from 2 or 3 clear components read from stdin (dual
 * control: each custodian types theirs; they never reach argv, the database or the output). */
static int key_from_components(struct ctl *c, struct ctl_opt *opts, size_t nopts)
{
    struct hsm_key_from_components_req req;
    struct hsm_key_from_components_resp resp;
    hsm_client hc;
    char line[2 * HSM_KEY_MAX_LEN + 8], hex[2 * HSM_KCV_LEN + 1];
    size_t len = 16;
    const char *label = ctl_get(opts, nopts, "label");
    const char *n_arg = ctl_get(opts, nopts, "components");
    const char *usage = ctl_get(opts, nopts, "usage");
    const char *alg = ctl_get(opts, nopts, "algorithm");
    const char *length = ctl_get(opts, nopts, "length");
    const char *mode = ctl_get(opts, nopts, "mode");
    int rc;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (ctl_get(opts, nopts, "kek") != NULL || ctl_get(opts, nopts, "block-file") != NULL ||
        ctl_get(opts, nopts, "kcv") != NULL || ctl_get(opts, nopts, "dukpt") != NULL) {
        return ctl_error(c, CTL_USAGE, "--components: no --kek, --block-file, --kcv or --dukpt");
    }
    if (label == NULL || usage == NULL || alg == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --label, --usage or --algorithm (try --help)");
    }
    if (strcmp(n_arg, "2") != 0 && strcmp(n_arg, "3") != 0) {
        return ctl_error(c, CTL_USAGE, "--components: 2 or 3");
    }
    req.n = (size_t)(n_arg[0] - '0');
    if (strlen(usage) != 2 || usage[0] < 'A' || usage[0] > 'Z') {
        return ctl_error(c, CTL_USAGE, "--usage: a TR-31 key usage such as P0, K0, B0");
    }
    if (strcmp(alg, "aes") == 0) {
        req.attr.algorithm = 'A';
    } else if (strcmp(alg, "tdes") == 0) {
        req.attr.algorithm = 'T';
    } else {
        return ctl_error(c, CTL_USAGE, "--algorithm: aes or tdes");
    }
    if (length != NULL) {
        if (strcmp(length, "16") != 0 && strcmp(length, "24") != 0 &&
            (strcmp(length, "32") != 0 || req.attr.algorithm != 'A')) {
            return ctl_error(c, CTL_USAGE, "--length: 16, 24 or 32 (aes); 16 or 24 (tdes)");
        }
        len = (size_t)atoi(length);
    }
    if (mode != NULL && (strlen(mode) != 1 || strchr("BCDEGSTVXY", mode[0]) == NULL)) {
        return ctl_error(c, CTL_USAGE, "--mode: one TR-31 mode of use letter");
    }
    memcpy(req.attr.usage, usage, 3);
    req.attr.mode = mode != NULL ? mode[0] : default_mode(usage);
    req.attr.exportability = ctl_get(opts, nopts, "exportable") != NULL ? 'E' : 'N';
    if (strcmp(usage, "B0") == 0) {
        req.attr.dukpt = req.attr.algorithm == 'A' ? 1 : 2;
    }
    req.key_len = len;
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = label_free(c, label);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    for (size_t i = 0; i < req.n; i++) {
        size_t got = 0;
        if (fgets(line, sizeof(line), stdin) == NULL) {
            rc = ctl_error(c, CTL_USAGE, "component %zu: missing on standard input", i + 1);
            goto exit;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (mpos_hex_decode(line, req.comp[i], sizeof(req.comp[i]), &got) != MPOS_OK ||
            got != len) {
            rc = ctl_error(c, CTL_USAGE, "component %zu: %zu bytes of hex", i + 1, len);
            goto exit;
        }
    }
    rc = hsm_open(c, &hc);
    if (rc != CTL_OK) {
        goto exit;
    }
    rc = hsm_client_key_from_components(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, "key import");
        goto exit;
    }
    for (size_t i = 0; i < req.n; i++) {
        mpos_hex_encode(resp.comp_kcv[i], resp.kcv_len, hex);
        fprintf(c->out, "component-%zu-kcv %s\n", i + 1, hex);
    }
    rc = stored_key_output(c, label, &resp.key, resp.kcv, resp.kcv_len);
exit:
    MPOS_WIPE_BUFFER(line);
    MPOS_WIPE_CTX(&req);
    MPOS_WIPE_CTX(&resp);
    return rc;
}

/* key import and bdk import: the key block in file (trailing line ends ignored) imported by
 * hsmd from under the KEK kek_label into resp, with req's expectations (check value, DUKPT);
 * label must still be free. what names the command in errors. */
static int import_block(struct ctl *c, const char *what, const char *label, const char *kek_label,
                        const char *file, struct hsm_import_key_req *req,
                        struct hsm_import_key_resp *resp)
{
    struct mpos_store_key kek;
    hsm_client hc;
    uint8_t *block = NULL;
    size_t block_len = 0;
    int rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = label_free(c, label);
    }
    if (rc == CTL_OK) {
        rc = load_block(c, "kek", kek_label, &kek, &req->kek);
    }
    if (rc == CTL_OK) {
        rc = read_file(c, file, &block, &block_len, HSM_KEYBLOCK_MAX_LEN + 2);
    }
    if (rc != CTL_OK) {
        goto exit;
    }
    while (block_len > 0 && (block[block_len - 1] == '\n' || block[block_len - 1] == '\r')) {
        block[--block_len] = '\0';
    }
    req->block.text = (const char *)block;
    req->block.len = block_len;
    rc = hsm_open(c, &hc);
    if (rc != CTL_OK) {
        goto exit;
    }
    rc = hsm_client_import_key(&hc, req, resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, what);
    }
exit:
    req->block.text = NULL;
    req->block.len = 0;
    req->kek.text = NULL;
    req->kek.len = 0;
    if (block != NULL) {
        mpos_cleanse(block, block_len);
        free(block);
    }
    return rc;
}

static int key_import(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"label", 1, NULL}, {"kek", 1, NULL},       {"block-file", 1, NULL},
                             {"kcv", 1, NULL},   {"dukpt", 1, NULL},     {"components", 1, NULL},
                             {"usage", 1, NULL}, {"algorithm", 1, NULL}, {"length", 1, NULL},
                             {"mode", 1, NULL},  {"exportable", 0, NULL}};
    struct hsm_import_key_req req;
    struct hsm_import_key_resp resp;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_key_import);
    if (rc != CTL_OK) {
        return rc;
    }
    if (ctl_get(opts, CTL_NOPTS(opts), "components") != NULL) {
        return key_from_components(c, opts, CTL_NOPTS(opts));
    }
    if (ctl_get(opts, CTL_NOPTS(opts), "usage") != NULL ||
        ctl_get(opts, CTL_NOPTS(opts), "algorithm") != NULL ||
        ctl_get(opts, CTL_NOPTS(opts), "length") != NULL ||
        ctl_get(opts, CTL_NOPTS(opts), "mode") != NULL ||
        ctl_get(opts, CTL_NOPTS(opts), "exportable") != NULL) {
        return ctl_error(c, CTL_USAGE,
                         "--usage, --algorithm, --length, --mode, --exportable: "
                         "only with --components");
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "label");
    const char *kek_label = ctl_get(opts, CTL_NOPTS(opts), "kek");
    const char *file = ctl_get(opts, CTL_NOPTS(opts), "block-file");
    const char *kcv = ctl_get(opts, CTL_NOPTS(opts), "kcv");
    const char *dukpt = ctl_get(opts, CTL_NOPTS(opts), "dukpt");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (label == NULL || kek_label == NULL || file == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --label, --kek or --block-file (try --help)");
    }
    if (kcv != NULL &&
        (mpos_hex_decode(kcv, req.expected_kcv, HSM_KCV_LEN, &req.expected_kcv_len) != MPOS_OK ||
         req.expected_kcv_len < 2)) {
        return ctl_error(c, CTL_USAGE, "--kcv: 2 to 5 bytes of hex");
    }
    if (dukpt != NULL) {
        if (strcmp(dukpt, "aes") != 0 && strcmp(dukpt, "tdes") != 0) {
            return ctl_error(c, CTL_USAGE, "--dukpt: aes or tdes");
        }
        req.dukpt = strcmp(dukpt, "aes") == 0 ? 1 : 2;
    }
    rc = import_block(c, "key import", label, kek_label, file, &req, &resp);
    if (rc == CTL_OK) {
        rc = stored_key_output(c, label, &resp.key, resp.kcv, resp.kcv_len);
    }
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static int key_export(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"label", 1, NULL}, {"kek", 1, NULL}, {"exportability", 1, NULL}};
    struct hsm_export_key_req req;
    struct hsm_export_key_resp resp;
    struct mpos_store_key key, kek;
    hsm_client hc;
    char hex[2 * HSM_KCV_LEN + 1];
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_key_export);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "label");
    const char *kek_label = ctl_get(opts, CTL_NOPTS(opts), "kek");
    const char *exp = ctl_get(opts, CTL_NOPTS(opts), "exportability");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (label == NULL || kek_label == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --label or --kek (try --help)");
    }
    if (exp != NULL && strcmp(exp, "N") != 0 && strcmp(exp, "E") != 0) {
        return ctl_error(c, CTL_USAGE, "--exportability: N or E");
    }
    req.exportability = exp != NULL ? exp[0] : 'N';
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = load_block(c, "label", label, &key, &req.key);
    }
    if (rc == CTL_OK) {
        rc = load_block(c, "kek", kek_label, &kek, &req.kek);
    }
    if (rc == CTL_OK) {
        rc = hsm_open(c, &hc);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_client_export_key(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, "key export");
        goto exit;
    }
    mpos_hex_encode(resp.kcv, resp.kcv_len, hex);
    fprintf(c->out, "%s\nkcv %s\n", resp.block.text, hex);
exit:
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static const struct {
    const char *name;
    char algorithm;
    size_t len;
} bdk_types[] = {{"aes128", 'A', 16},
                 {"aes192", 'A', 24},
                 {"aes256", 'A', 32},
                 {"2tdea", 'T', 16},
                 {"3tdea", 'T', 24}};

/* The type name of a BDK of this algorithm and length. */
static const char *bdk_type_name(char algorithm, size_t len)
{
    for (size_t i = 0; i < CTL_NOPTS(bdk_types); i++) {
        if (bdk_types[i].algorithm == algorithm && bdk_types[i].len == len) {
            return bdk_types[i].name;
        }
    }
    return "?";
}

/* The first free default label bdk-TYPE-N (N >= 1). */
static int bdk_default_label(struct ctl *c, const char *type, char *label, size_t cap)
{
    for (int n = 1; n < 100000; n++) {
        struct mpos_store_key k;
        snprintf(label, cap, "bdk-%s-%d", type, n);
        int rc = mpos_store_key_get(c->st, label, &k);
        if (rc == MPOS_STORE_NOT_FOUND) {
            return CTL_OK;
        }
        if (rc != MPOS_OK) {
            return ctl_store_error(c, rc, "key");
        }
    }
    return ctl_error(c, CTL_FAIL, "no free label bdk-%s-N: give --label", type);
}

static int bdk_create(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"type", 1, NULL},       {"label", 1, NULL},
                             {"algorithm", 1, NULL},  {"length", 1, NULL},
                             {"key-set-id", 1, NULL}, {"first-device", 1, NULL},
                             {"exportable", 0, NULL}};
    struct hsm_generate_bdk_req req;
    struct hsm_generate_key_resp resp;
    enum mpos_terminal_scheme scheme = MPOS_SCHEME_AES_DUKPT;
    uint8_t ksi[5];
    char ksi_hex[11], kcv[2 * HSM_KCV_LEN + 1], auto_label[MPOS_STORE_LABEL_LEN + 1];
    int64_t first = 1, n = 0;
    hsm_client hc;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_bdk_create);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *type = ctl_get(opts, CTL_NOPTS(opts), "type");
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "label");
    const char *alg = ctl_get(opts, CTL_NOPTS(opts), "algorithm");
    const char *length = ctl_get(opts, CTL_NOPTS(opts), "length");
    const char *ksi_arg = ctl_get(opts, CTL_NOPTS(opts), "key-set-id");
    const char *first_arg = ctl_get(opts, CTL_NOPTS(opts), "first-device");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (type != NULL && (alg != NULL || length != NULL)) {
        return ctl_error(c, CTL_USAGE, "--type or --algorithm/--length, not both");
    }
    if (type == NULL && alg == NULL) {
        return ctl_error(c, CTL_USAGE,
                         "missing --type aes128|aes192|aes256|2tdea|3tdea (try --help)");
    }
    if (type != NULL) {
        size_t i = 0;
        while (i < CTL_NOPTS(bdk_types) && strcmp(type, bdk_types[i].name) != 0) {
            i++;
        }
        if (i == CTL_NOPTS(bdk_types)) {
            return ctl_error(c, CTL_USAGE, "--type: aes128, aes192, aes256, 2tdea or 3tdea");
        }
        req.algorithm = bdk_types[i].algorithm;
        req.key_len = bdk_types[i].len;
    } else {
        /* The older spelling: --algorithm aes|tdes [--length 16|24|32]. */
        if (strcmp(alg, "aes") == 0) {
            req.algorithm = 'A';
        } else if (strcmp(alg, "tdes") == 0) {
            req.algorithm = 'T';
        } else {
            return ctl_error(c, CTL_USAGE, "--algorithm: aes or tdes");
        }
        req.key_len = 16;
        if (length != NULL) {
            if (strcmp(length, "16") != 0 && strcmp(length, "24") != 0 &&
                (strcmp(length, "32") != 0 || req.algorithm != 'A')) {
                return ctl_error(c, CTL_USAGE, "--length: 16, 24 or 32 (aes); 16 or 24 (tdes)");
            }
            req.key_len = (size_t)atoi(length);
        }
    }
    if (req.algorithm == 'T') {
        scheme = MPOS_SCHEME_TDES_DUKPT;
    }
    const char *type_name = bdk_type_name(req.algorithm, req.key_len);
    if (label != NULL && !mpos_store_label_valid(label)) {
        return ctl_error(c, CTL_USAGE, "--label: 1 to 64 of [a-z0-9._:-]");
    }
    req.exportability = ctl_get(opts, CTL_NOPTS(opts), "exportable") != NULL ? 'E' : 'N';
    size_t ksi_len = scheme == MPOS_SCHEME_AES_DUKPT ? 4 : 5;
    if (ksi_arg != NULL) {
        rc = hex_arg(c, "key-set-id", ksi_arg, ksi, ksi_len);
    } else if (mpos_random_bytes(ksi, ksi_len) != MPOS_OK) {
        rc = ctl_error(c, CTL_FAIL, "random generator failed");
    }
    if (rc != CTL_OK) {
        return rc;
    }
    mpos_hex_encode(ksi, ksi_len, ksi_hex);
    if (first_arg != NULL) {
        if (strspn(first_arg, "0123456789") != strlen(first_arg) ||
            !ctl_duration(first_arg, 0, scheme == MPOS_SCHEME_AES_DUKPT ? 4294967295LL : 524287,
                          &n)) {
            return ctl_error(c, CTL_USAGE, "--first-device: a device ID the scheme allows");
        }
        first = n;
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = label != NULL ? label_free(c, label)
                           : bdk_default_label(c, type_name, auto_label, sizeof(auto_label));
    }
    if (rc == CTL_OK) {
        rc = hsm_open(c, &hc);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_client_generate_bdk(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, "bdk create");
        goto exit;
    }
    mpos_hex_encode(resp.kcv, resp.kcv_len, kcv);
    /* The key block and its allocator together, or neither. A default label taken by another
     * mposctl meanwhile: the next free one. */
    for (int attempt = 0;; attempt++) {
        const char *l = label != NULL ? label : auto_label;
        struct mpos_store_key taken;
        rc = mpos_store_begin(c->st);
        if (rc == MPOS_OK) {
            rc = mpos_store_key_put(c->st, l, resp.key.text, kcv, c->now);
        }
        if (rc == MPOS_OK) {
            rc = mpos_store_ksn_allocator_create(c->st, scheme, ksi_hex, l, first, c->now);
        }
        if (rc == MPOS_OK) {
            rc = mpos_store_commit(c->st);
        } else {
            mpos_store_rollback(c->st);
        }
        if (rc == MPOS_STORE_EXISTS && label == NULL && attempt < 20 &&
            mpos_store_key_get(c->st, l, &taken) == MPOS_OK) {
            rc = bdk_default_label(c, type_name, auto_label, sizeof(auto_label));
            if (rc != CTL_OK) {
                goto exit;
            }
            continue;
        }
        break;
    }
    if (label == NULL) {
        label = auto_label;
    }
    if (rc == MPOS_STORE_EXISTS) {
        rc = ctl_error(c, CTL_FAIL, "key set ID %s or label %s already in use", ksi_hex, label);
        goto exit;
    }
    if (rc != MPOS_OK) {
        rc = ctl_store_error(c, rc, "bdk create");
        goto exit;
    }
    fprintf(c->out,
            "label       %s\ntype        %s\nkcv         %s\nscheme      %s\nkey-set-id  %s\n",
            label, type_name, kcv, mpos_terminal_scheme_name(scheme), ksi_hex);
    rc = CTL_OK;
exit:
    MPOS_WIPE_CTX(&resp);
    return rc;
}

static const struct {
    const char *name;
    enum mpos_terminal_scheme scheme;
    char bdk_algorithm; /* DUKPT: the BDK's TR-31 algorithm; 0: a TMK terminal */
} provision_schemes[] = {{"dukpt-aes", MPOS_SCHEME_AES_DUKPT, 'A'},
                         {"dukpt-tdes", MPOS_SCHEME_TDES_DUKPT, 'T'},
                         {"mkwk-tdes", MPOS_SCHEME_MKWK, 0},
                         {"mkwk-sm4", MPOS_SCHEME_MKWK, 0}};

/* A file for the request, at most max bytes; NULL/0 when path is NULL. */
static int read_opt_file(struct ctl *c, const char *path, uint8_t **out, size_t *len, size_t max)
{
    *out = NULL;
    *len = 0;
    return path == NULL ? CTL_OK : read_file(c, path, out, len, max);
}

/* Where ca create keeps a copy of each CA certificate it issues, for terminal provision:
 * DB-ca/LABEL.der beside the database DB. */
static int ca_cert_path(struct ctl *c, const char *label, char *path, size_t cap)
{
    if ((size_t)snprintf(path, cap, "%s-ca/%s.der", c->db, label) >= cap) {
        return ctl_error(c, CTL_USAGE, "--db: path too long");
    }
    return CTL_OK;
}

/* --csr default: OUT/SERIAL.csr, then ./SERIAL.csr (the terminal emits SERIAL.csr). */
static int default_csr(struct ctl *c, const char *out, const char *serial, char *path, size_t cap)
{
    if ((size_t)snprintf(path, cap, "%s/%s.csr", out, serial) >= cap) {
        return ctl_error(c, CTL_USAGE, "--out: path too long");
    }
    if (access(path, R_OK) == 0) {
        return CTL_OK;
    }
    snprintf(path, cap, "./%s.csr", serial);
    if (access(path, R_OK) == 0) {
        return CTL_OK;
    }
    return ctl_error(c, CTL_FAIL,
                     "no certificate request %s/%s.csr or ./%s.csr (the terminal emits it): "
                     "give --csr FILE",
                     out, serial, serial);
}

struct ca_scan {
    struct ctl *c;
    int need_cert; /* only keys with a certificate stored by ca create */
    int count;
    char label[MPOS_STORE_LABEL_LEN + 1];
};

static int ca_scan_key(void *ctx, const struct mpos_store_key *k)
{
    struct ca_scan *s = ctx;
    char path[CTL_PATH_MAX];
    if (k->algorithm != 'E' || (strcmp(k->usage, "S1") != 0 && strcmp(k->usage, "S0") != 0)) {
        return 0;
    }
    if (s->need_cert &&
        ((size_t)snprintf(path, sizeof(path), "%s-ca/%s.der", s->c->db, k->label) >= sizeof(path) ||
         access(path, R_OK) != 0)) {
        return 0;
    }
    s->count++;
    snprintf(s->label, sizeof(s->label), "%s", k->label);
    return 0;
}

/* --ca-key default: the one CA key (S1/S0, ec) of the database with a certificate from ca
 * create (with --ca-cert given: the one CA key); --ca-cert default: that key's certificate. */
static int default_ca(struct ctl *c, const char **label, char *label_buf, const char **cert,
                      char *cert_buf, size_t cap)
{
    if (*label == NULL) {
        struct ca_scan s = {c, *cert == NULL, 0, ""};
        int rc = mpos_store_key_list(c->st, ca_scan_key, &s);
        if (rc != MPOS_OK) {
            return ctl_store_error(c, rc, "key list");
        }
        if (s.count != 1) {
            return ctl_error(c, CTL_USAGE,
                             s.count == 0 ? "no manufacturer CA in the database (mposctl ca "
                                            "create): give --ca-key LABEL and --ca-cert FILE"
                                          : "%d manufacturer CA keys in the database: give "
                                            "--ca-key LABEL",
                             s.count);
        }
        memcpy(label_buf, s.label, sizeof(s.label));
        *label = label_buf;
    }
    if (*cert == NULL) {
        if (!mpos_store_label_valid(*label)) {
            return ctl_error(c, CTL_USAGE, "--ca-key: a key label ([a-z0-9._:-], 1 to 64)");
        }
        int rc = ca_cert_path(c, *label, cert_buf, cap);
        if (rc != CTL_OK) {
            return rc;
        }
        if (access(cert_buf, R_OK) != 0) {
            return ctl_error(c, CTL_USAGE,
                             "no certificate of CA key %s from mposctl ca create: give --ca-cert "
                             "FILE",
                             *label);
        }
        *cert = cert_buf;
    }
    return CTL_OK;
}

struct bdk_scan {
    char algorithm;
    int64_t newest;
    int ties;
    char label[MPOS_STORE_LABEL_LEN + 1];
};

static int bdk_scan_key(void *ctx, const struct mpos_store_key *k)
{
    struct bdk_scan *s = ctx;
    if (strcmp(k->usage, "B0") != 0 || k->algorithm != s->algorithm) {
        return 0;
    }
    if (s->label[0] == '\0' || k->created_at > s->newest) {
        s->newest = k->created_at;
        s->ties = 1;
        snprintf(s->label, sizeof(s->label), "%s", k->label);
    } else if (k->created_at == s->newest) {
        s->ties++;
    }
    return 0;
}

/* --bdk default: the newest BDK (usage B0) of the scheme's algorithm. */
static int default_bdk(struct ctl *c, char algorithm, const char *scheme,
                       char label[MPOS_STORE_LABEL_LEN + 1])
{
    struct bdk_scan s = {algorithm, 0, 0, ""};
    int rc = mpos_store_key_list(c->st, bdk_scan_key, &s);
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "key list");
    }
    if (s.label[0] == '\0') {
        return ctl_error(c, CTL_FAIL, "no %s BDK in the database (mposctl bdk create --type %s)",
                         algorithm == 'A' ? "AES" : "TDES", algorithm == 'A' ? "aes128" : "2tdea");
    }
    if (s.ties > 1) {
        return ctl_error(c, CTL_USAGE,
                         "%d newest BDKs for %s created in the same second: give "
                         "--bdk LABEL",
                         s.ties, scheme);
    }
    memcpy(label, s.label, sizeof(s.label));
    return CTL_OK;
}

static int provision(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"serial", 1, NULL}, {"scheme", 1, NULL},       {"csr", 1, NULL},
                             {"ca-key", 1, NULL}, {"ca-cert", 1, NULL},      {"bdk", 1, NULL},
                             {"out", 1, NULL},    {"trust-anchor", 1, NULL}, {"validity", 1, NULL}};
    struct mpos_store_key bdk, ca;
    struct hsm_provision_terminal_req req;
    struct hsm_provision_terminal_resp *resp = NULL; /* 9 KiB */
    struct mpos_store_terminal t;
    uint8_t *csr = NULL, *ca_cert = NULL, *anchor = NULL;
    size_t csr_len = 0, ca_cert_len = 0, anchor_len = 0, id_len = 0, si = 0;
    char ksn[MPOS_STORE_KSN_HEX_LEN + 1] = "", fp_hex[65], kcv_hex[2 * HSM_KCV_LEN + 1];
    char cs_hex[2 * HSM_CERT_SERIAL_LEN + 1], tmk_label[MPOS_STORE_LABEL_LEN + 1] = "";
    char name[64], path[CTL_PATH_MAX], csr_path[CTL_PATH_MAX], ca_path[CTL_PATH_MAX];
    char ca_label_buf[MPOS_STORE_LABEL_LEN + 1], bdk_label_buf[MPOS_STORE_LABEL_LEN + 1];
    int64_t days = 365;
    hsm_client hc;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_provision);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&req, 0, sizeof(req));
    const char *serial = ctl_get(opts, CTL_NOPTS(opts), "serial");
    const char *scheme_arg = ctl_get(opts, CTL_NOPTS(opts), "scheme");
    const char *csr_file = ctl_get(opts, CTL_NOPTS(opts), "csr");
    const char *ca_label = ctl_get(opts, CTL_NOPTS(opts), "ca-key");
    const char *ca_file = ctl_get(opts, CTL_NOPTS(opts), "ca-cert");
    const char *bdk_label = ctl_get(opts, CTL_NOPTS(opts), "bdk");
    const char *out = ctl_get(opts, CTL_NOPTS(opts), "out");
    const char *anchor_file = ctl_get(opts, CTL_NOPTS(opts), "trust-anchor");
    const char *validity = ctl_get(opts, CTL_NOPTS(opts), "validity");
    if (scheme_arg == NULL) {
        scheme_arg = "dukpt-aes";
    }
    for (si = 0; si < CTL_NOPTS(provision_schemes); si++) {
        if (strcmp(scheme_arg, provision_schemes[si].name) == 0) {
            break;
        }
    }
    if (si == CTL_NOPTS(provision_schemes)) {
        return ctl_error(c, CTL_USAGE, "--scheme: dukpt-aes, dukpt-tdes, mkwk-tdes or mkwk-sm4");
    }
    const enum mpos_terminal_scheme scheme = provision_schemes[si].scheme;
    const char bdk_alg = provision_schemes[si].bdk_algorithm;
    const char tmk_alg = strcmp(scheme_arg, "mkwk-sm4") == 0 ? HSM_ALG_SM4 : 'T';
    if (serial == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --serial (try --help)");
    }
    /* The serial is the HKDF salt of the transport key and is compared byte for byte by the
     * terminal: taken as given, never case-folded (docs/provisioning.md). */
    if (!mpos_provision_serial_valid(serial) || !mpos_store_serial_valid(serial)) {
        return ctl_error(c, CTL_USAGE,
                         "--serial: 1 to 32 of A-Z a-z 0-9 '-' (case-sensitive, used as given)");
    }
    if (bdk_alg == 0 && bdk_label != NULL) {
        return ctl_error(c, CTL_USAGE, "--bdk: only for a DUKPT scheme");
    }
    if (validity != NULL && (strspn(validity, "0123456789") != strlen(validity) ||
                             !ctl_duration(validity, 1, 3650, &days))) {
        return ctl_error(c, CTL_USAGE, "--validity: 1 to 3650 days");
    }
    if (out == NULL) {
        out = ".";
    }
    snprintf(name, sizeof(name), "%s.bundle", serial);
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", out, name) >= sizeof(path)) {
        return ctl_error(c, CTL_USAGE, "--out: path too long");
    }
    if (access(path, F_OK) == 0) {
        return ctl_error(c, CTL_FAIL, "%s already exists", path);
    }
    rc = ctl_open_store(c, 0, 0);
    /* The defaults: the terminal's request where it left it, the manufacturer CA the store
     * knows, the newest BDK of the scheme. */
    if (rc == CTL_OK && csr_file == NULL) {
        rc = default_csr(c, out, serial, csr_path, sizeof(csr_path));
        csr_file = csr_path;
    }
    if (rc == CTL_OK && (ca_label == NULL || ca_file == NULL)) {
        rc = default_ca(c, &ca_label, ca_label_buf, &ca_file, ca_path, sizeof(ca_path));
    }
    if (rc == CTL_OK && bdk_alg != 0 && bdk_label == NULL) {
        rc = default_bdk(c, bdk_alg, scheme_arg, bdk_label_buf);
        bdk_label = bdk_label_buf;
    }
    if (rc == CTL_OK && bdk_alg != 0) {
        rc = load_block(c, "bdk", bdk_label, &bdk, &req.bdk);
        if (rc == CTL_OK && bdk.algorithm != bdk_alg) {
            rc = ctl_error(c, CTL_USAGE, "--bdk %s is not a %s BDK", bdk_label, scheme_arg);
        }
    }
    if (rc == CTL_OK) {
        rc = load_block(c, "ca-key", ca_label, &ca, &req.ca_key);
    }
    if (rc == CTL_OK) {
        rc = read_file(c, csr_file, &csr, &csr_len, HSM_CSR_MAX_LEN);
    }
    if (rc == CTL_OK) {
        rc = read_file(c, ca_file, &ca_cert, &ca_cert_len, HSM_CERT_MAX_LEN);
    }
    if (rc == CTL_OK) {
        rc = read_opt_file(c, anchor_file, &anchor, &anchor_len, HSM_CERT_MAX_LEN);
    }
    if (rc == CTL_OK && (resp = calloc(1, sizeof(*resp))) == NULL) {
        rc = ctl_error(c, CTL_FAIL, "out of memory");
    }
    if (rc != CTL_OK) {
        goto exit;
    }
    /* The terminal must be able to take keys before a KSN is spent on it. */
    rc = mpos_store_terminal_get(c->st, serial, &t);
    if (rc == MPOS_OK && t.state != MPOS_TERMINAL_PROVISIONED &&
        t.state != MPOS_TERMINAL_SUSPENDED) {
        rc = ctl_error(c, CTL_FAIL, "terminal %s is %s: suspend it before re-keying", t.serial,
                       mpos_terminal_state_name(t.state));
        goto exit;
    }
    if (rc != MPOS_OK && rc != MPOS_STORE_NOT_FOUND) {
        rc = ctl_store_error(c, rc, "terminal");
        goto exit;
    }
    if (bdk_alg != 0) {
        /* T-UNIQ-1: a fresh initial KSN from the BDK's allocator, one atomic increment in the
         * database, never handed out again whatever happens next. */
        rc = mpos_store_ksn_allocate(c->st, scheme, NULL, bdk_label, serial, c->now, ksn, NULL);
        if (rc != MPOS_OK) {
            rc = rc == MPOS_STORE_NOT_FOUND
                     ? ctl_error(c, CTL_FAIL, "key %s is not a BDK with a KSN allocator", bdk_label)
                     : ctl_store_error(c, rc, "KSN allocation");
            goto exit;
        }
        if (mpos_hex_decode(ksn, req.id, sizeof(req.id), &id_len) != MPOS_OK) {
            rc = ctl_error(c, CTL_FAIL, "internal: KSN");
            goto exit;
        }
        req.key = HSM_PROVISION_DUKPT;
        req.id_len = id_len;
    } else {
        req.key = HSM_PROVISION_TMK;
        req.tmk_algorithm = tmk_alg;
    }
    req.ca_cert = ca_cert;
    req.ca_cert_len = ca_cert_len;
    req.csr = csr;
    req.csr_len = csr_len;
    req.trust_anchor = anchor;
    req.trust_anchor_len = anchor_len;
    memcpy(req.serial, serial, strlen(serial) + 1);
    req.not_before = c->now;
    req.not_after = c->now + days * 86400;
    rc = hsm_open(c, &hc);
    if (rc != CTL_OK) {
        goto exit;
    }
    rc = hsm_client_provision_terminal(&hc, &req, resp);
    hsm_client_close(&hc);
    if (rc == HSM_STATUS_UNSUPPORTED) {
        rc = ctl_error(c, CTL_USAGE, "terminal provision: not supported yet by mpos-hsmd");
        goto exit;
    }
    if (rc != 0) {
        rc = hsm_error(c, rc, "terminal provision");
        goto exit;
    }
    /* What hsmd put in the bundle must be what the store registers. */
    if ((bdk_alg != 0 && (resp->id_len != id_len || memcmp(resp->id, req.id, id_len) != 0)) ||
        (bdk_alg == 0 &&
         (resp->tmk.len == 0 ||
          resp->kind != (tmk_alg == HSM_ALG_SM4 ? MPOS_PROVISION_TMK_SM4 : MPOS_PROVISION_TMK))) ||
        resp->kcv_len == 0) {
        rc = ctl_error(c, CTL_FAIL, "terminal provision: inconsistent answer from mpos-hsmd");
        goto exit;
    }
    mpos_hex_encode(resp->cert_sha256, sizeof(resp->cert_sha256), fp_hex);
    mpos_hex_encode(resp->kcv, resp->kcv_len, kcv_hex);
    mpos_hex_encode(resp->cert_serial, sizeof(resp->cert_serial), cs_hex);
    rc = mpos_store_begin(c->st);
    if (rc == MPOS_OK && bdk_alg == 0) {
        /* The TMK's block under the LMK, for the sign-on (mkwk.generate); one label per
         * provisioning: the certificate's fingerprint is unique. */
        snprintf(tmk_label, sizeof(tmk_label), "tmk:%.32s", fp_hex);
        for (char *p = tmk_label; *p != '\0'; p++) {
            *p = (*p >= 'A' && *p <= 'F') ? (char)(*p - 'A' + 'a') : *p;
        }
        rc = mpos_store_key_put(c->st, tmk_label, resp->tmk.text, kcv_hex, c->now);
    }
    if (rc == MPOS_OK) {
        struct mpos_store_terminal_keys keys = {scheme, bdk_alg != 0 ? ksn : NULL,
                                                bdk_alg != 0 ? NULL : kcv_hex,
                                                bdk_alg != 0 ? bdk_label : tmk_label, fp_hex};
        rc = mpos_store_terminal_register_keys(c->st, serial, &keys, c->now);
    }
    if (rc == MPOS_OK) {
        rc = mpos_store_commit(c->st);
    } else {
        mpos_store_rollback(c->st);
    }
    if (rc == MPOS_STORE_STATE) {
        rc = ctl_error(c, CTL_FAIL, "terminal %s cannot take keys in its state", serial);
        goto exit;
    }
    if (rc != MPOS_OK) {
        rc = ctl_store_error(c, rc, "terminal provision");
        goto exit;
    }
    rc = write_file(c, out, name, resp->bundle, resp->bundle_len);
    if (rc == CTL_OK) {
        fprintf(c->out, "serial       %s\nscheme       %s\n", serial,
                mpos_terminal_scheme_name(scheme));
        if (bdk_alg != 0) {
            fprintf(c->out, "bdk          %s\n", bdk_label);
        } else {
            fprintf(c->out, "tmk-algorithm %s\n", tmk_alg == HSM_ALG_SM4 ? "sm4" : "tdes");
        }
        fprintf(c->out, "ca-key       %s\n", ca_label);
        if (bdk_alg != 0) {
            fprintf(c->out, "initial-ksn  %s\n", ksn);
        } else {
            fprintf(c->out, "tmk-kcv      %s\ntmk-label    %s\n", kcv_hex, tmk_label);
        }
        fprintf(c->out, "kcv          %s\ncert-sha256  %s\ncert-serial  %s\nbundle       %s\n",
                kcv_hex, fp_hex, cs_hex, path);
    }
exit:
    free(csr);
    free(ca_cert);
    free(anchor);
    if (resp != NULL) {
        mpos_cleanse(resp, sizeof(*resp));
        free(resp);
    }
    return rc;
}

/* Writes a certificate to a new file (never overwritten). */
static int write_cert(struct ctl *c, const char *path, const uint8_t *der, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return ctl_error(c, CTL_FAIL, "cannot create %s: %s", path, strerror(errno));
    }
    ssize_t w = write(fd, der, len);
    int synced = fsync(fd) == 0;
    close(fd);
    if (w < 0 || (size_t)w != len || !synced) {
        unlink(path);
        return ctl_error(c, CTL_FAIL, "cannot write %s", path);
    }
    return CTL_OK;
}

static int ca_create(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {
        {"key", 1, NULL}, {"cn", 1, NULL}, {"out", 1, NULL}, {"validity", 1, NULL}};
    struct hsm_ca_cert_req req;
    struct hsm_cert_sign_resp resp;
    struct mpos_store_key key;
    hsm_client hc;
    int64_t days = 3650;
    uint8_t fp[32];
    char fp_hex[65], stored[CTL_PATH_MAX], dir[CTL_PATH_MAX], tmp[CTL_PATH_MAX + 32];
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_ca_create);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "key");
    const char *cn = ctl_get(opts, CTL_NOPTS(opts), "cn");
    const char *out = ctl_get(opts, CTL_NOPTS(opts), "out");
    const char *validity = ctl_get(opts, CTL_NOPTS(opts), "validity");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (label == NULL || cn == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --key or --cn (try --help)");
    }
    if (strlen(cn) < 1 || strlen(cn) >= sizeof(req.common_name)) {
        return ctl_error(c, CTL_USAGE, "--cn: 1 to 64 printable characters");
    }
    for (const char *p = cn; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7E) {
            return ctl_error(c, CTL_USAGE, "--cn: 1 to 64 printable characters");
        }
    }
    if (validity != NULL && (strspn(validity, "0123456789") != strlen(validity) ||
                             !ctl_duration(validity, 1, 7300, &days))) {
        return ctl_error(c, CTL_USAGE, "--validity: 1 to 7300 days");
    }
    memcpy(req.common_name, cn, strlen(cn) + 1);
    req.not_before = c->now;
    req.not_after = c->now + days * 86400;
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = load_block(c, "key", label, &key, &req.ca_key);
    }
    if (rc == CTL_OK) {
        rc = hsm_open(c, &hc);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = hsm_client_ca_cert_create(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        return hsm_error(c, rc, "ca create");
    }
    if (sha256(resp.cert, resp.cert_len, fp) != MPOS_OK) {
        return ctl_error(c, CTL_FAIL, "SHA-256 failed");
    }
    mpos_hex_encode(fp, sizeof(fp), fp_hex);
    if (out != NULL) {
        rc = write_cert(c, out, resp.cert, resp.cert_len);
        if (rc != CTL_OK) {
            return rc;
        }
    }
    /* The store's copy, for terminal provision's --ca-cert default (replaced by a newer
     * certificate of the same key: written aside, then renamed over). */
    rc = ca_cert_path(c, label, stored, sizeof(stored));
    if (rc != CTL_OK) {
        return rc;
    }
    if ((size_t)snprintf(dir, sizeof(dir), "%s-ca", c->db) >= sizeof(dir)) {
        return ctl_error(c, CTL_USAGE, "--db: path too long");
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return ctl_error(c, CTL_FAIL, "cannot create %s: %s", dir, strerror(errno));
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", stored, (long)getpid()) >= sizeof(tmp)) {
        return ctl_error(c, CTL_USAGE, "--db: path too long");
    }
    rc = write_cert(c, tmp, resp.cert, resp.cert_len);
    if (rc == CTL_OK && rename(tmp, stored) != 0) {
        unlink(tmp);
        rc = ctl_error(c, CTL_FAIL, "cannot write %s: %s", stored, strerror(errno));
    }
    if (rc != CTL_OK) {
        return rc;
    }
    fprintf(c->out, "cert-sha256 %s\n", fp_hex);
    return CTL_OK;
}

/* bdk import: a BDK received under a KEK, and its KSN allocator, together or not at all. */
static int bdk_import(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"label", 1, NULL},        {"kek", 1, NULL},
                             {"block-file", 1, NULL},   {"key-set-id", 1, NULL},
                             {"first-device", 1, NULL}, {"kcv", 1, NULL}};
    struct hsm_import_key_req req;
    struct hsm_import_key_resp resp;
    uint8_t ksi[5];
    size_t ksi_len = 0;
    char ksi_hex[11], kcv[2 * HSM_KCV_LEN + 1];
    int64_t first = 1;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_bdk_import);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "label");
    const char *kek_label = ctl_get(opts, CTL_NOPTS(opts), "kek");
    const char *file = ctl_get(opts, CTL_NOPTS(opts), "block-file");
    const char *ksi_arg = ctl_get(opts, CTL_NOPTS(opts), "key-set-id");
    const char *first_arg = ctl_get(opts, CTL_NOPTS(opts), "first-device");
    const char *kcv_arg = ctl_get(opts, CTL_NOPTS(opts), "kcv");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (label == NULL || kek_label == NULL || file == NULL || ksi_arg == NULL) {
        return ctl_error(c, CTL_USAGE,
                         "missing --label, --kek, --block-file or --key-set-id (try --help)");
    }
    if (mpos_hex_decode(ksi_arg, ksi, sizeof(ksi), &ksi_len) != MPOS_OK ||
        (ksi_len != 4 && ksi_len != 5)) {
        return ctl_error(c, CTL_USAGE, "--key-set-id: 8 hex (aes) or 10 hex (tdes)");
    }
    if (kcv_arg != NULL && (mpos_hex_decode(kcv_arg, req.expected_kcv, HSM_KCV_LEN,
                                            &req.expected_kcv_len) != MPOS_OK ||
                            req.expected_kcv_len < 2)) {
        return ctl_error(c, CTL_USAGE, "--kcv: 2 to 5 bytes of hex");
    }
    if (first_arg != NULL &&
        (strspn(first_arg, "0123456789") != strlen(first_arg) ||
         !ctl_duration(first_arg, 0, ksi_len == 4 ? 4294967295LL : 524287, &first))) {
        return ctl_error(c, CTL_USAGE, "--first-device: a device ID the scheme allows");
    }
    mpos_hex_encode(ksi, ksi_len, ksi_hex);
    /* The scheme follows the key set ID's length; hsmd checks it against the algorithm. */
    req.dukpt = ksi_len == 4 ? 1 : 2;
    rc = import_block(c, "bdk import", label, kek_label, file, &req, &resp);
    if (rc != CTL_OK) {
        goto exit;
    }
    if (strcmp(resp.attr.usage, "B0") != 0 || resp.attr.dukpt != req.dukpt) {
        rc = ctl_error(c, CTL_FAIL, "bdk import: the block is not a %s BDK (usage B0)",
                       ksi_len == 4 ? "AES" : "TDES");
        goto exit;
    }
    enum mpos_terminal_scheme scheme =
        ksi_len == 4 ? MPOS_SCHEME_AES_DUKPT : MPOS_SCHEME_TDES_DUKPT;
    mpos_hex_encode(resp.kcv, resp.kcv_len, kcv);
    rc = mpos_store_begin(c->st);
    if (rc == MPOS_OK) {
        rc = mpos_store_key_put(c->st, label, resp.key.text, kcv, c->now);
    }
    if (rc == MPOS_OK) {
        rc = mpos_store_ksn_allocator_create(c->st, scheme, ksi_hex, label, first, c->now);
    }
    if (rc == MPOS_OK) {
        rc = mpos_store_commit(c->st);
    } else {
        mpos_store_rollback(c->st);
    }
    if (rc == MPOS_STORE_EXISTS) {
        rc = ctl_error(c, CTL_FAIL, "key set ID %s or label %s already in use", ksi_hex, label);
        goto exit;
    }
    if (rc != MPOS_OK) {
        rc = ctl_store_error(c, rc, "bdk import");
        goto exit;
    }
    fprintf(c->out,
            "label       %s\ntype        %s\nkcv         %s\nscheme      %s\nkey-set-id  %s\n",
            label, resp.attr.algorithm == 'A' ? "aes" : "tdes", kcv,
            mpos_terminal_scheme_name(scheme), ksi_hex);
    rc = CTL_OK;
exit:
    MPOS_WIPE_CTX(&resp);
    return rc;
}

/* The DER of a PKCS#10 request given as DER or one PEM block. */
static int csr_der(struct ctl *c, uint8_t *buf, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len)
{
    if (len > 0 && buf[0] == 0x30) {
        if (len > cap) {
            return ctl_error(c, CTL_FAIL, "--csr: larger than %zu bytes", cap);
        }
        memcpy(out, buf, len);
        *out_len = len;
        return CTL_OK;
    }
    /* PEM: the base64 between the BEGIN and END lines. */
    const char *b = strstr((const char *)buf, "-----BEGIN ");
    const char *e = b != NULL ? strstr(b + 11, "-----END ") : NULL;
    b = b != NULL ? strchr(b + 11, '\n') : NULL;
    if (b == NULL || e == NULL || e < b) {
        return ctl_error(c, CTL_FAIL, "--csr: neither DER nor PEM");
    }
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int n1 = 0, n2 = 0;
    if (ctx == NULL || (size_t)(e - b) * 3 / 4 + 3 > cap) {
        EVP_ENCODE_CTX_free(ctx);
        return ctl_error(c, CTL_FAIL, "--csr: too large");
    }
    EVP_DecodeInit(ctx);
    int ok = EVP_DecodeUpdate(ctx, out, &n1, (const unsigned char *)b, (int)(e - b)) >= 0 &&
             EVP_DecodeFinal(ctx, out + n1, &n2) == 1;
    EVP_ENCODE_CTX_free(ctx);
    if (!ok) {
        return ctl_error(c, CTL_FAIL, "--csr: bad PEM");
    }
    *out_len = (size_t)(n1 + n2);
    return CTL_OK;
}

static int cert_sign(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"ca-key", 1, NULL}, {"ca-cert", 1, NULL}, {"csr", 1, NULL},
                             {"dns", 1, NULL},    {"out", 1, NULL},     {"validity", 1, NULL}};
    struct hsm_cert_sign_req req;
    struct hsm_cert_sign_resp resp;
    struct mpos_store_key key;
    hsm_client hc;
    uint8_t *ca = NULL, *csr = NULL, der[HSM_CERT_MAX_LEN], fp[32];
    size_t ca_len = 0, csr_len = 0, der_len = 0;
    char fp_hex[65];
    int64_t days = 365;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_cert_sign);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "ca-key");
    const char *ca_file = ctl_get(opts, CTL_NOPTS(opts), "ca-cert");
    const char *csr_file = ctl_get(opts, CTL_NOPTS(opts), "csr");
    const char *dns = ctl_get(opts, CTL_NOPTS(opts), "dns");
    const char *out = ctl_get(opts, CTL_NOPTS(opts), "out");
    const char *validity = ctl_get(opts, CTL_NOPTS(opts), "validity");
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (label == NULL || ca_file == NULL || csr_file == NULL || dns == NULL || out == NULL) {
        return ctl_error(c, CTL_USAGE,
                         "missing --ca-key, --ca-cert, --csr, --dns or --out (try --help)");
    }
    if (strlen(dns) == 0 || strlen(dns) >= sizeof(req.dns)) {
        return ctl_error(c, CTL_USAGE, "--dns: a host name, 1 to 253 characters");
    }
    if (validity != NULL && (strspn(validity, "0123456789") != strlen(validity) ||
                             !ctl_duration(validity, 1, 825, &days))) {
        return ctl_error(c, CTL_USAGE, "--validity: 1 to 825 days");
    }
    memcpy(req.dns, dns, strlen(dns) + 1);
    req.not_before = c->now;
    req.not_after = c->now + days * 86400;
    rc = ctl_open_store(c, 0, 0);
    if (rc == CTL_OK) {
        rc = load_block(c, "ca-key", label, &key, &req.ca_key);
    }
    if (rc == CTL_OK) {
        rc = read_file(c, ca_file, &ca, &ca_len, HSM_CERT_MAX_LEN);
    }
    if (rc == CTL_OK) {
        rc = read_file(c, csr_file, &csr, &csr_len, 3 * HSM_CERT_MAX_LEN);
    }
    if (rc == CTL_OK) {
        rc = csr_der(c, csr, csr_len, der, sizeof(der), &der_len);
    }
    if (rc == CTL_OK) {
        rc = hsm_open(c, &hc);
    }
    if (rc != CTL_OK) {
        goto exit;
    }
    req.ca_cert = ca;
    req.ca_cert_len = ca_len;
    req.csr = der;
    req.csr_len = der_len;
    rc = hsm_client_cert_sign(&hc, &req, &resp);
    hsm_client_close(&hc);
    if (rc != 0) {
        rc = hsm_error(c, rc, "cert sign");
        goto exit;
    }
    if (sha256(resp.cert, resp.cert_len, fp) != MPOS_OK) {
        rc = ctl_error(c, CTL_FAIL, "SHA-256 failed");
        goto exit;
    }
    rc = write_cert(c, out, resp.cert, resp.cert_len);
    if (rc == CTL_OK) {
        mpos_hex_encode(fp, sizeof(fp), fp_hex);
        fprintf(c->out, "cert-sha256 %s\n", fp_hex);
    }
exit:
    free(ca);
    free(csr);
    return rc;
}

/* ---- shared with the other command files (ctl_hsm.h) ----------------------------------- */

int ctl_hsm_open(struct ctl *c, hsm_client *hc)
{
    return hsm_open(c, hc);
}

int ctl_hsm_error(struct ctl *c, int rc, const char *what)
{
    return hsm_error(c, rc, what);
}

int ctl_hsm_load_block(struct ctl *c, const char *opt, const char *label, struct mpos_store_key *k,
                       struct hsm_kb_in *in)
{
    return load_block(c, opt, label, k, in);
}

#endif /* MPOSCTL_HAVE_HSM */

#if defined(MPOSCTL_HAVE_HSM) && defined(MPOSCTL_HAVE_VAULT)
#include "vault.h"

static int read_pin_file(struct ctl *c, const char *path, char *pin, size_t cap)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = CTL_OK;
    if (fd < 0) {
        return ctl_error(c, CTL_FAIL, "cannot read %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0) {
        close(fd);
        return ctl_error(c, CTL_FAIL, "%s must not be readable by group or others", path);
    }
    ssize_t n = read(fd, pin, cap - 1);
    close(fd);
    if (n <= 0) {
        return ctl_error(c, CTL_FAIL, "%s: empty", path);
    }
    pin[n] = '\0';
    pin[strcspn(pin, "\r\n")] = '\0';
    if (pin[0] == '\0') {
        rc = ctl_error(c, CTL_FAIL, "%s: empty", path);
    }
    return rc;
}

static int hsm_init(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"pkcs11-module", 1, NULL},
                             {"token-label", 1, NULL},
                             {"pin-file", 1, NULL},
                             {"lmk-wrapped", 1, NULL}};
    hsm_vault v;
    char pin[256];
    char kcv[2 * HSM_KCV_LEN + 1];
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_hsm_init);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *module = ctl_get(opts, CTL_NOPTS(opts), "pkcs11-module");
    const char *label = ctl_get(opts, CTL_NOPTS(opts), "token-label");
    const char *pin_file = ctl_get(opts, CTL_NOPTS(opts), "pin-file");
    const char *wrapped = ctl_get(opts, CTL_NOPTS(opts), "lmk-wrapped");
    rc = ctl_load_config(c);
    if (rc != CTL_OK) {
        return rc;
    }
    /* Each option defaults to mpos-hsmd's [lmk] key of the configuration file. */
    module = module != NULL ? module : c->pkcs11_module[0] != '\0' ? c->pkcs11_module : NULL;
    label = label != NULL ? label : c->token_label[0] != '\0' ? c->token_label : NULL;
    pin_file = pin_file != NULL ? pin_file : c->pin_file[0] != '\0' ? c->pin_file : NULL;
    wrapped = wrapped != NULL ? wrapped : c->lmk_wrapped[0] != '\0' ? c->lmk_wrapped : NULL;
    if (module == NULL || label == NULL || pin_file == NULL || wrapped == NULL) {
        return ctl_error(c, CTL_USAGE,
                         "missing --%s (or %s in the [lmk] section of the --config file)",
                         module == NULL     ? "pkcs11-module"
                         : label == NULL    ? "token-label"
                         : pin_file == NULL ? "pin-file"
                                            : "lmk-wrapped",
                         module == NULL     ? "pkcs11_module"
                         : label == NULL    ? "token_label"
                         : pin_file == NULL ? "pin_file"
                                            : "wrapped");
    }
    rc = read_pin_file(c, pin_file, pin, sizeof(pin));
    if (rc != CTL_OK) {
        goto exit;
    }
    if (hsm_vault_init(&v) != MPOS_OK) {
        rc = ctl_error(c, CTL_FAIL, "cannot lock memory for the LMK (RLIMIT_MEMLOCK)");
        goto exit;
    }
    struct hsm_pkcs11_config cfg = {module, label, pin};
    rc = hsm_vault_create_pkcs11(&v, &cfg, wrapped);
    if (rc != MPOS_OK) {
        rc = ctl_error(c, CTL_FAIL, "LMK not created: %s", mpos_strerror(rc));
    } else {
        mpos_hex_encode(v.lmk_kcv, HSM_KCV_LEN, kcv);
        fprintf(c->out, "lmk-kcv %s\nwrapped %s\n", kcv, wrapped);
        rc = CTL_OK;
    }
    hsm_vault_close(&v);
exit:
    MPOS_WIPE_BUFFER(pin);
    return rc;
}
#else
static int hsm_init(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 0, help_hsm_init);
    return rc != CTL_OK ? rc : no_hsm(c);
}
#endif

#ifndef MPOSCTL_HAVE_HSM
/* Built without hsm/client: the commands exist, say why they cannot run, and keep --help. */
#define HSM_STUB(fn, help)                                                                         \
    static int fn(struct ctl *c, int argc, char **argv)                                            \
    {                                                                                              \
        int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 99, help);                             \
        return rc != CTL_OK ? rc : no_hsm(c);                                                      \
    }
HSM_STUB(hsm_status, help_hsm_status)
HSM_STUB(key_generate, help_key_generate)
HSM_STUB(key_import, help_key_import)
HSM_STUB(key_export, help_key_export)
HSM_STUB(bdk_create, help_bdk_create)
HSM_STUB(provision, help_provision)
HSM_STUB(ca_create, help_ca_create)
HSM_STUB(bdk_import, help_bdk_import)
HSM_STUB(cert_sign, help_cert_sign)
#endif

int ctl_key_generate(struct ctl *c, int argc, char **argv)
{
    return key_generate(c, argc, argv);
}

int ctl_key_import(struct ctl *c, int argc, char **argv)
{
    return key_import(c, argc, argv);
}

int ctl_key_export(struct ctl *c, int argc, char **argv)
{
    return key_export(c, argc, argv);
}

int ctl_terminal_provision(struct ctl *c, int argc, char **argv)
{
    return provision(c, argc, argv);
}

int cmd_hsm(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"status", hsm_status}, {"init", hsm_init}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl hsm status | init   (mposctl hsm <command> --help)\n");
}

int cmd_ca(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {{"create", ca_create}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl ca create   (mposctl ca create --help)\n");
}

int cmd_bdk(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"create", bdk_create}, {"import", bdk_import}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl bdk create | import   (mposctl bdk <command> --help)\n");
}

int cmd_cert(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {{"sign", cert_sign}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl cert sign   (mposctl cert sign --help)\n");
}
