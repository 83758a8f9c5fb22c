/* mpos-crypto: shared option parsing and output for the subcommands. */
#ifndef MPOS_CLI_H
#define MPOS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mpos/crypto.h"

/* Exit codes (docs/mpos-crypto.md): the operation failed / the call was wrong. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = 3 };

struct cli_opt {
    const char *name;  /* without the leading "--" */
    int takes_value;   /* 1: --name VALUE; 0: a flag */
    const char *value; /* set by cli_parse: the value, "1" for a flag seen, NULL if absent */
};

#define CLI_NOPTS(a) (sizeof(a) / sizeof((a)[0]))

/* Where the subcommands print: stdout/stderr normally, memory streams in the fuzz target. */
struct cli_io {
    FILE *out;
    FILE *err;
};
extern struct cli_io cli_io;

/* Parses argv[0..argc) as options. --help/-h prints help to stdout and returns CLI_HELP.
 * Unknown, repeated or valueless options: one error line, CLI_USAGE. */
int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t nopts, const char *help);

/* word itself if it is safe to echo in an error message (lowercase letters and '-'), else a
 * placeholder: a misplaced PIN, PAN or key must never reach stderr. */
const char *cli_echo_safe(const char *word);

/* The value of an option, or NULL. */
const char *cli_get(const struct cli_opt *opts, size_t nopts, const char *name);

/* Like cli_get, but a missing option is a usage error (printed). */
int cli_need(const struct cli_opt *opts, size_t nopts, const char *name, const char **value);

/* Decodes the hex value of --name into out (at most cap bytes). Errors are printed. */
int cli_hex(const char *name, const char *value, uint8_t *out, size_t cap, size_t *len);

/* Decimal number of --name in [min, max]. */
int cli_uint(const char *name, const char *value, unsigned long min, unsigned long max,
             unsigned long *out);

/* Prints "mpos-crypto: <message>" on stderr and returns code. Never pass secrets. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the result (uppercase hex, or text) and a newline on stdout. */
void cli_print_hex(const uint8_t *data, size_t len);
void cli_print_text(const char *text);

/* Subcommands: argv[0] is the subcommand name. */
int cli_cmd_dukpt(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_pin(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_mac(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_kcv(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_tr31(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_emv(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_cipher(int argc, char **argv, mpos_crypto_ctx *cc);
int cli_cmd_mkwk(int argc, char **argv, mpos_crypto_ctx *cc);

/* The whole tool: returns the process exit code (CLI_HELP becomes 0). */
int cli_main(int argc, char **argv, mpos_crypto_ctx *cc);

#endif
