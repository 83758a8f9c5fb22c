/* mpos-crypto: option parsing and output shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mpos/util.h"

struct cli_io cli_io;

int cli_error(int code, const char *fmt, ...)
{
    FILE *err = cli_io.err != NULL ? cli_io.err : stderr;
    char msg[256] = "";
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) {
        msg[0] = '\0';
    }
    va_end(ap);
    /* Always one line: an argument echoed in the message may hold newlines or escapes. */
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            *p = '?';
        }
    }
    fprintf(err, "mpos-crypto: %s\n", msg);
    return code;
}

/* Only a name made of lowercase letters and '-' is echoed in a message: anything else could be
 * a PIN, a PAN or a key typed in the wrong place. */
static const char *echo_safe(const char *word)
{
    size_t n = 0;
    for (; word[n] != '\0'; n++) {
        if (n >= 24 || !((word[n] >= 'a' && word[n] <= 'z') || word[n] == '-')) {
            return "(not shown)";
        }
    }
    return n > 0 ? word : "(empty)";
}

int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t nopts, const char *help)
{
    for (size_t j = 0; j < nopts; j++) {
        opts[j].value = NULL;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, cli_io.out != NULL ? cli_io.out : stdout);
            return CLI_HELP;
        }
        if (strncmp(a, "--", 2) != 0) {
            return cli_error(
                CLI_USAGE, "unexpected argument %d: values follow an --option (try --help)", i + 1);
        }
        size_t j = 0;
        while (j < nopts && strcmp(opts[j].name, a + 2) != 0) {
            j++;
        }
        if (j == nopts) {
            return cli_error(CLI_USAGE, "unknown option '%s' (try --help)", echo_safe(a));
        }
        if (opts[j].value != NULL) {
            return cli_error(CLI_USAGE, "option --%s given twice", opts[j].name);
        }
        if (opts[j].takes_value) {
            if (i + 1 >= argc) {
                return cli_error(CLI_USAGE, "option --%s needs a value", opts[j].name);
            }
            opts[j].value = argv[++i];
        } else {
            opts[j].value = "1";
        }
    }
    return CLI_OK;
}

const char *cli_echo_safe(const char *word)
{
    return echo_safe(word);
}

const char *cli_get(const struct cli_opt *opts, size_t nopts, const char *name)
{
    for (size_t j = 0; j < nopts; j++) {
        if (strcmp(opts[j].name, name) == 0) {
            return opts[j].value;
        }
    }
    return NULL;
}

int cli_need(const struct cli_opt *opts, size_t nopts, const char *name, const char **value)
{
    *value = cli_get(opts, nopts, name);
    if (*value == NULL) {
        return cli_error(CLI_USAGE, "missing --%s (try --help)", name);
    }
    return CLI_OK;
}

int cli_hex(const char *name, const char *value, uint8_t *out, size_t cap, size_t *len)
{
    int rc = mpos_hex_decode(value, out, cap, len);
    if (rc == MPOS_ERR_FORMAT) {
        return cli_error(CLI_USAGE, "--%s: not an even number of hex digits", name);
    }
    if (rc == MPOS_ERR_LENGTH) {
        return cli_error(CLI_USAGE, "--%s: too long (at most %zu bytes)", name, cap);
    }
    return rc == MPOS_OK ? CLI_OK : cli_error(CLI_USAGE, "--%s: %s", name, mpos_strerror(rc));
}

int cli_uint(const char *name, const char *value, unsigned long min, unsigned long max,
             unsigned long *out)
{
    char *end = NULL;
    if (value[0] < '0' || value[0] > '9') {
        return cli_error(CLI_USAGE, "--%s: not a number", name);
    }
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return cli_error(CLI_USAGE, "--%s: must be a number from %lu to %lu", name, min, max);
    }
    *out = v;
    return CLI_OK;
}

void cli_print_hex(const uint8_t *data, size_t len)
{
    FILE *out = cli_io.out != NULL ? cli_io.out : stdout;
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        fputc(digits[data[i] >> 4], out);
        fputc(digits[data[i] & 0x0F], out);
    }
    fputc('\n', out);
}

void cli_print_text(const char *text)
{
    FILE *out = cli_io.out != NULL ? cli_io.out : stdout;
    fputs(text, out);
    fputc('\n', out);
}
