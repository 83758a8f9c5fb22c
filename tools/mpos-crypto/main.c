/* mpos-crypto: dispatch to the subcommands. */
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: mpos-crypto <command> [options]   (mpos-crypto <command> --help)\n"
    "commands:\n"
    "  dukpt   ik | derive          AES (X9.24-3) and TDES (X9.24-1) DUKPT keys\n"
    "  pin     encrypt | decrypt    ISO 9564-1 PIN blocks, formats 0, 1, 3, 4\n"
    "  mac                          ISO 9797-1 alg 1/3, CMAC, UnionPay ECB MAC\n"
    "  kcv                          key check values (legacy, CMAC)\n"
    "  tr31    wrap | unwrap        TR-31 / X9.143 key blocks, versions B and D\n"
    "  emv     mk | sk | ac | arpc  EMV/PBOC application cryptograms\n"
    "  cipher                       AES, TDES, SM4 in ECB/CBC\n"
    "  mkwk    unwrap               UnionPay master-key/working-key delivery\n"
    "Results go to stdout (uppercase hex); errors to stderr; exit 1 when the operation\n"
    "fails, 2 when the call is wrong.\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv, mpos_crypto_ctx *cc);
};

static const struct command commands[] = {
#ifdef MPOS_CLI_HAVE_dukpt
    {"dukpt", cli_cmd_dukpt},
#endif
#ifdef MPOS_CLI_HAVE_pin
    {"pin", cli_cmd_pin},
#endif
#ifdef MPOS_CLI_HAVE_mac
    {"mac", cli_cmd_mac},
#endif
#ifdef MPOS_CLI_HAVE_kcv
    {"kcv", cli_cmd_kcv},
#endif
#ifdef MPOS_CLI_HAVE_tr31
    {"tr31", cli_cmd_tr31},
#endif
#ifdef MPOS_CLI_HAVE_emv
    {"emv", cli_cmd_emv},
#endif
#ifdef MPOS_CLI_HAVE_cipher
    {"cipher", cli_cmd_cipher},
#endif
#ifdef MPOS_CLI_HAVE_mkwk
    {"mkwk", cli_cmd_mkwk},
#endif
    {NULL, NULL}};

int cli_main(int argc, char **argv, mpos_crypto_ctx *cc)
{
    if (argc < 2) {
        return cli_error(CLI_USAGE, "missing command (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_OK;
    }
    for (const struct command *c = commands; c->name != NULL; c++) {
        if (strcmp(argv[1], c->name) == 0) {
            int rc = c->run(argc - 1, argv + 1, cc);
            return rc == CLI_HELP ? CLI_OK : rc;
        }
    }
    return cli_error(CLI_USAGE, "unknown command '%s' (try --help)", cli_echo_safe(argv[1]));
}
