/* mpos-crypto emv: ICC master keys, session keys, application cryptograms and ARPCs
 * (docs/mpos-crypto.md, emv). */
#include <string.h>

#include "cli.h"
#include "mpos/emv.h"
#include "mpos/util.h"

/* Longest --data accepted by `emv ac` (far above any CDOL). */
#define EMV_CLI_DATA_MAX 4096
/* Hex inputs are decoded into buffers larger than any valid value, so that a wrong length
 * gets a message naming the length expected rather than a bare "too long". */
#define EMV_CLI_FIELD_CAP 64

static const char help_emv[] =
    "usage: mpos-crypto emv mk | sk | ac | arpc [options]   (mpos-crypto emv <sub> --help)\n"
    "  mk    ICC master key from the issuer master key (EMV 4.3 Book 2 A1.4)\n"
    "  sk    session key from the ICC master key and the ATC (A1.3, or UnionPay PBOC)\n"
    "  ac    application cryptogram ARQC/TC/AAC (ISO 9797-1 alg 3, padding 2)\n"
    "  arpc  authorisation response cryptogram, method 1 (--arc) or 2 (--csu)\n";

static const char help_mk[] =
    "usage: mpos-crypto emv mk --imk HEX --pan DIGITS --psn NN [--option a|b]\n"
    "  ICC master key (EMV 4.3 Book 2 A1.4), 16 bytes with odd parity.\n"
    "  --imk HEX      issuer master key, 16 bytes (2-key TDES)\n"
    "  --pan DIGITS   PAN, 12 to 19 decimal digits\n"
    "  --psn NN       PAN sequence number, 2 decimal digits (00 when the card has none)\n"
    "  --option a|b   a (default, A1.4.1): rightmost 16 digits of PAN||PSN;\n"
    "                 b (A1.4.2): SHA-1 and decimalisation for PANs over 16 digits\n"
    "                 (for 16 digits or fewer, option b is option a)\n";

static const char help_sk[] =
    "usage: mpos-crypto emv sk --mk HEX --atc HEX [--method emv|pboc]\n"
    "  Session key for application cryptograms, 16 bytes with odd parity.\n"
    "  --mk HEX       ICC master key, 16 bytes\n"
    "  --atc HEX      application transaction counter, 2 bytes\n"
    "  --method emv   (default) EMV common session key, A1.3.1: R = ATC||00..00,\n"
    "                 SK = TDES(MK, ATC||F0||00..) || TDES(MK, ATC||0F||00..)\n"
    "  --method pboc  UnionPay PBOC: SK = TDES(MK, 000000000000||ATC) ||\n"
    "                 TDES(MK, 000000000000||(ATC XOR FFFF))\n";

static const char help_ac[] =
    "usage: mpos-crypto emv ac --sk HEX --data HEX\n"
    "  Application cryptogram (ARQC, TC or AAC), 8 bytes: ISO 9797-1 MAC algorithm 3 with\n"
    "  padding method 2 over the cryptogram data (EMV 4.3 Book 2 8.1.2).\n"
    "  --sk HEX       session key, 16 bytes\n"
    "  --data HEX     cryptogram input data (may be empty)\n";

static const char help_arpc[] =
    "usage: mpos-crypto emv arpc --sk HEX --arqc HEX (--arc HEX | --csu HEX [--pad-data HEX])\n"
    "  Authorisation response cryptogram (EMV 4.3 Book 2 8.2).\n"
    "  --sk HEX        session key, 16 bytes\n"
    "  --arqc HEX      the ARQC, 8 bytes\n"
    "  --arc HEX       method 1: authorisation response code, 2 bytes; prints an 8-byte ARPC\n"
    "  --csu HEX       method 2: card status update, 4 bytes; prints a 4-byte ARPC\n"
    "  --pad-data HEX  method 2 only: proprietary authentication data, 0 to 8 bytes\n";

/* Maps a library error after the CLI's own checks: a rejected argument is a usage error,
 * anything else (the crypto provider) a failed operation. */
static int lib_error(int rc)
{
    switch (rc) {
    case MPOS_ERR_ARG:
    case MPOS_ERR_LENGTH:
    case MPOS_ERR_FORMAT:
    case MPOS_ERR_KEY:
    case MPOS_ERR_PAN:
        return cli_error(CLI_USAGE, "%s", mpos_strerror(rc));
    default:
        return cli_error(CLI_FAIL, "%s", mpos_strerror(rc));
    }
}

/* Decodes --name into out (cap bytes) and requires exactly want bytes. */
static int hex_exact(const char *name, const char *value, uint8_t *out, size_t cap, size_t want,
                     const char *what)
{
    size_t len = 0;
    int rc = cli_hex(name, value, out, cap, &len);
    if (rc != CLI_OK) {
        return rc;
    }
    if (len != want) {
        return cli_error(CLI_USAGE, "--%s: must be %zu bytes (%s)", name, want, what);
    }
    return CLI_OK;
}

/* A session key, ICC master key or issuer master key: 16 bytes, 2-key TDES. */
static int key_arg(const char *name, const char *value, uint8_t *out, size_t cap)
{
    return hex_exact(name, value, out, cap, MPOS_EMV_KEY_LEN, "a double-length TDES key");
}

static int cmd_mk(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {
        {"imk", 1, NULL}, {"pan", 1, NULL}, {"psn", 1, NULL}, {"option", 1, NULL}};
    uint8_t imk[EMV_CLI_FIELD_CAP];
    uint8_t mk[MPOS_EMV_KEY_LEN];
    const char *imk_hex = NULL, *pan = NULL, *psn = NULL;
    enum mpos_emv_mk_option option = MPOS_EMV_MK_OPTION_A;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_mk);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, CLI_NOPTS(opts), "imk", &imk_hex)) != CLI_OK ||
        (rc = cli_need(opts, CLI_NOPTS(opts), "pan", &pan)) != CLI_OK ||
        (rc = cli_need(opts, CLI_NOPTS(opts), "psn", &psn)) != CLI_OK) {
        goto exit;
    }
    const char *opt = cli_get(opts, CLI_NOPTS(opts), "option");
    if (opt != NULL) {
        if (strcmp(opt, "a") == 0) {
            option = MPOS_EMV_MK_OPTION_A;
        } else if (strcmp(opt, "b") == 0) {
            option = MPOS_EMV_MK_OPTION_B;
        } else {
            rc = cli_error(CLI_USAGE, "--option: must be a or b");
            goto exit;
        }
    }
    if ((rc = key_arg("imk", imk_hex, imk, sizeof(imk))) != CLI_OK) {
        goto exit;
    }
    /* Never echo the PAN: only what is wrong with it. */
    if (!mpos_digits_valid(pan, MPOS_EMV_PAN_MIN_DIGITS, MPOS_EMV_PAN_MAX_DIGITS)) {
        rc = cli_error(CLI_USAGE, "--pan: must be %d to %d decimal digits", MPOS_EMV_PAN_MIN_DIGITS,
                       MPOS_EMV_PAN_MAX_DIGITS);
        goto exit;
    }
    if (!mpos_digits_valid(psn, MPOS_EMV_PSN_DIGITS, MPOS_EMV_PSN_DIGITS)) {
        rc = cli_error(CLI_USAGE, "--psn: must be %d decimal digits", MPOS_EMV_PSN_DIGITS);
        goto exit;
    }
    int lrc = mpos_emv_derive_icc_mk(cc, option, imk, MPOS_EMV_KEY_LEN, pan, psn, mk);
    if (lrc != MPOS_OK) {
        rc = lib_error(lrc);
        goto exit;
    }
    cli_print_hex(mk, sizeof(mk));
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(imk);
    MPOS_WIPE_BUFFER(mk);
    return rc;
}

static int cmd_sk(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"mk", 1, NULL}, {"atc", 1, NULL}, {"method", 1, NULL}};
    uint8_t mk[EMV_CLI_FIELD_CAP];
    uint8_t atc[EMV_CLI_FIELD_CAP];
    uint8_t sk[MPOS_EMV_KEY_LEN];
    const char *mk_hex = NULL, *atc_hex = NULL;
    enum mpos_emv_sk_method method = MPOS_EMV_SK_COMMON;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_sk);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, CLI_NOPTS(opts), "mk", &mk_hex)) != CLI_OK ||
        (rc = cli_need(opts, CLI_NOPTS(opts), "atc", &atc_hex)) != CLI_OK) {
        goto exit;
    }
    const char *m = cli_get(opts, CLI_NOPTS(opts), "method");
    if (m != NULL) {
        if (strcmp(m, "emv") == 0) {
            method = MPOS_EMV_SK_COMMON;
        } else if (strcmp(m, "pboc") == 0) {
            method = MPOS_EMV_SK_PBOC;
        } else {
            rc = cli_error(CLI_USAGE, "--method: must be emv or pboc");
            goto exit;
        }
    }
    if ((rc = key_arg("mk", mk_hex, mk, sizeof(mk))) != CLI_OK ||
        (rc = hex_exact("atc", atc_hex, atc, sizeof(atc), MPOS_EMV_ATC_LEN,
                        "the application transaction counter")) != CLI_OK) {
        goto exit;
    }
    int lrc = mpos_emv_derive_sk(cc, method, mk, MPOS_EMV_KEY_LEN, atc, sk);
    if (lrc != MPOS_OK) {
        rc = lib_error(lrc);
        goto exit;
    }
    cli_print_hex(sk, sizeof(sk));
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(mk);
    MPOS_WIPE_BUFFER(sk);
    return rc;
}

static int cmd_ac(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"sk", 1, NULL}, {"data", 1, NULL}};
    uint8_t sk[EMV_CLI_FIELD_CAP];
    uint8_t data[EMV_CLI_DATA_MAX];
    uint8_t ac[MPOS_EMV_AC_LEN];
    size_t data_len = 0;
    const char *sk_hex = NULL, *data_hex = NULL;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_ac);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, CLI_NOPTS(opts), "sk", &sk_hex)) != CLI_OK ||
        (rc = cli_need(opts, CLI_NOPTS(opts), "data", &data_hex)) != CLI_OK) {
        goto exit;
    }
    if ((rc = key_arg("sk", sk_hex, sk, sizeof(sk))) != CLI_OK ||
        (rc = cli_hex("data", data_hex, data, sizeof(data), &data_len)) != CLI_OK) {
        goto exit;
    }
    int lrc = mpos_emv_ac_generate(cc, sk, MPOS_EMV_KEY_LEN, data, data_len, ac);
    if (lrc != MPOS_OK) {
        rc = lib_error(lrc);
        goto exit;
    }
    cli_print_hex(ac, sizeof(ac));
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(sk);
    MPOS_WIPE_BUFFER(data);
    return rc;
}

static int cmd_arpc(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"sk", 1, NULL},
                             {"arqc", 1, NULL},
                             {"arc", 1, NULL},
                             {"csu", 1, NULL},
                             {"pad-data", 1, NULL}};
    uint8_t sk[EMV_CLI_FIELD_CAP];
    uint8_t arqc[EMV_CLI_FIELD_CAP];
    uint8_t code[EMV_CLI_FIELD_CAP]; /* ARC or CSU */
    uint8_t prop[EMV_CLI_FIELD_CAP];
    uint8_t arpc[MPOS_EMV_ARPC1_LEN];
    size_t prop_len = 0;
    const char *sk_hex = NULL, *arqc_hex = NULL;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_arpc);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, CLI_NOPTS(opts), "sk", &sk_hex)) != CLI_OK ||
        (rc = cli_need(opts, CLI_NOPTS(opts), "arqc", &arqc_hex)) != CLI_OK) {
        goto exit;
    }
    const char *arc_hex = cli_get(opts, CLI_NOPTS(opts), "arc");
    const char *csu_hex = cli_get(opts, CLI_NOPTS(opts), "csu");
    const char *prop_hex = cli_get(opts, CLI_NOPTS(opts), "pad-data");
    if ((arc_hex == NULL) == (csu_hex == NULL)) {
        rc = cli_error(CLI_USAGE, "give exactly one of --arc (method 1) and --csu (method 2)");
        goto exit;
    }
    if (arc_hex != NULL && prop_hex != NULL) {
        rc = cli_error(CLI_USAGE, "--pad-data goes with --csu (method 2) only");
        goto exit;
    }
    if ((rc = key_arg("sk", sk_hex, sk, sizeof(sk))) != CLI_OK ||
        (rc = hex_exact("arqc", arqc_hex, arqc, sizeof(arqc), MPOS_EMV_AC_LEN,
                        "an application cryptogram")) != CLI_OK) {
        goto exit;
    }
    int lrc;
    size_t arpc_len;
    if (arc_hex != NULL) {
        if ((rc = hex_exact("arc", arc_hex, code, sizeof(code), MPOS_EMV_ARC_LEN,
                            "the authorisation response code")) != CLI_OK) {
            goto exit;
        }
        lrc = mpos_emv_arpc1_generate(cc, sk, MPOS_EMV_KEY_LEN, arqc, code, arpc);
        arpc_len = MPOS_EMV_ARPC1_LEN;
    } else {
        if ((rc = hex_exact("csu", csu_hex, code, sizeof(code), MPOS_EMV_CSU_LEN,
                            "the card status update")) != CLI_OK) {
            goto exit;
        }
        if (prop_hex != NULL) {
            if ((rc = cli_hex("pad-data", prop_hex, prop, sizeof(prop), &prop_len)) != CLI_OK) {
                goto exit;
            }
            if (prop_len > MPOS_EMV_PROP_AUTH_MAX_LEN) {
                rc = cli_error(CLI_USAGE, "--pad-data: at most %d bytes",
                               MPOS_EMV_PROP_AUTH_MAX_LEN);
                goto exit;
            }
        }
        lrc = mpos_emv_arpc2_generate(cc, sk, MPOS_EMV_KEY_LEN, arqc, code, prop, prop_len, arpc);
        arpc_len = MPOS_EMV_ARPC2_LEN;
    }
    if (lrc != MPOS_OK) {
        rc = lib_error(lrc);
        goto exit;
    }
    cli_print_hex(arpc, arpc_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(sk);
    MPOS_WIPE_BUFFER(arpc);
    return rc;
}

int cli_cmd_emv(int argc, char **argv, mpos_crypto_ctx *cc)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv, mpos_crypto_ctx *cc);
    } subs[] = {{"mk", cmd_mk}, {"sk", cmd_sk}, {"ac", cmd_ac}, {"arpc", cmd_arpc}};
    if (argc < 2) {
        return cli_error(CLI_USAGE, "missing emv subcommand: mk, sk, ac or arpc (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help_emv, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_HELP;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (strcmp(argv[1], subs[i].name) == 0) {
            return subs[i].run(argc - 2, argv + 2, cc);
        }
    }
    return cli_error(CLI_USAGE, "unknown emv subcommand '%s' (try --help)", cli_echo_safe(argv[1]));
}
