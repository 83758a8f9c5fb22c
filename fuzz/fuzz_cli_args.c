/* libFuzzer target: the mpos-crypto command line, in-process (cli_main of
 * tools/mpos-crypto/cli.h): option parsing, hex/digit/number decoding, each subcommand's
 * validation and, for a valid call, the operation itself.
 *
 * Input: argv words separated by NUL bytes (a final NUL ends the last word); at most
 * FUZZ_MAX_ARGS words of at most FUZZ_MAX_WORD bytes, the rest is cut off. argv[0] is
 * "mpos-crypto". Each word is copied to a heap block of its exact size, so AddressSanitizer
 * catches a read past its NUL. Seeds: fuzz/corpus/fuzz_cli_args/ (published vectors).
 *
 * The crypto context and the two output streams (fixed memory buffers) are set up once. Beyond
 * crashes, leaks and UB, every run is checked against docs/mpos-crypto.md "General rules":
 * exit 0, 1 or 2; exit 0 prints something on stdout ending in a newline and nothing on
 * stderr; exit 1 or 2 prints nothing on stdout and exactly one line starting "mpos-crypto: "
 * on stderr. A broken rule aborts, so libFuzzer keeps the input as a crash.
 */
#define _POSIX_C_SOURCE 200809L /* fmemopen */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define FUZZ_MAX_ARGS   32    /* words after argv[0] */
#define FUZZ_MAX_WORD   1024  /* bytes per word; longer ones are cut */
#define FUZZ_OUTPUT_CAP 16384 /* per stream; the longest legitimate output (help) is far less */

static mpos_crypto_ctx cc;
static char out_buf[FUZZ_OUTPUT_CAP];
static char err_buf[FUZZ_OUTPUT_CAP];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        fputs("fuzz_cli_args: mpos_crypto_init failed\n", stderr);
        abort();
    }
    cli_io.out = fmemopen(out_buf, sizeof(out_buf), "w");
    cli_io.err = fmemopen(err_buf, sizeof(err_buf), "w");
    if (cli_io.out == NULL || cli_io.err == NULL) {
        fputs("fuzz_cli_args: fmemopen failed\n", stderr);
        abort();
    }
    return 0;
}

/* Length written to a memory stream since its last rewind. */
static size_t stream_len(FILE *f)
{
    long n;
    if (fflush(f) != 0 || (n = ftell(f)) < 0) {
        fputs("fuzz_cli_args: output stream failed\n", stderr);
        abort();
    }
    return (size_t)n;
}

static void contract_failure(const char *rule, int rc, size_t out_len, size_t err_len)
{
    fprintf(stderr, "fuzz_cli_args: docs/mpos-crypto.md broken: %s (exit %d)\n", rule, rc);
    fprintf(stderr, "stdout (%zu bytes): %.*s\nstderr (%zu bytes): %.*s\n", out_len,
            (int)(out_len < 400 ? out_len : 400), out_buf, err_len,
            (int)(err_len < 400 ? err_len : 400), err_buf);
    abort();
}

static void check_contract(int rc, size_t out_len, size_t err_len)
{
    if (out_len >= sizeof(out_buf) - 1 || err_len >= sizeof(err_buf) - 1) {
        contract_failure("output not bounded", rc, out_len, err_len);
    }
    if (rc == CLI_OK) {
        if (err_len != 0) {
            contract_failure("success with a message on stderr", rc, out_len, err_len);
        }
        if (out_len == 0 || out_buf[out_len - 1] != '\n') {
            contract_failure("success without a result line on stdout", rc, out_len, err_len);
        }
        return;
    }
    if (rc != CLI_FAIL && rc != CLI_USAGE) {
        contract_failure("exit code other than 0, 1, 2", rc, out_len, err_len);
    }
    if (out_len != 0) {
        contract_failure("failure with output on stdout", rc, out_len, err_len);
    }
    static const char prefix[] = "mpos-crypto: ";
    const char *nl = memchr(err_buf, '\n', err_len);
    if (err_len < sizeof(prefix) || memcmp(err_buf, prefix, sizeof(prefix) - 1) != 0 ||
        nl != err_buf + err_len - 1) {
        contract_failure("failure without exactly one 'mpos-crypto: ' line on stderr", rc, out_len,
                         err_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[FUZZ_MAX_ARGS + 2];
    int argc = 0;
    static const char prog[] = "mpos-crypto";
    argv[argc] = malloc(sizeof(prog));
    if (argv[argc] == NULL) {
        return 0;
    }
    memcpy(argv[argc++], prog, sizeof(prog));
    size_t pos = 0;
    while (pos < size && argc <= FUZZ_MAX_ARGS) {
        const uint8_t *end = memchr(data + pos, 0, size - pos);
        size_t len = end != NULL ? (size_t)(end - (data + pos)) : size - pos;
        size_t keep = len < FUZZ_MAX_WORD ? len : FUZZ_MAX_WORD;
        char *w = malloc(keep + 1);
        if (w == NULL) {
            break;
        }
        memcpy(w, data + pos, keep);
        w[keep] = '\0';
        argv[argc++] = w;
        pos += len + 1;
    }
    argv[argc] = NULL;

    rewind(cli_io.out);
    rewind(cli_io.err);
    int rc = cli_main(argc, argv, &cc);
    check_contract(rc, stream_len(cli_io.out), stream_len(cli_io.err));

    for (int i = 0; i < argc; i++) {
        free(argv[i]);
    }
    return 0;
}
