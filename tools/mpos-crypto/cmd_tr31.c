/* mpos-crypto tr31: TR-31 / ANSI X9.143 key blocks, versions B and D (docs/mpos-crypto.md,
 * tr31). */
#include <string.h>

#include "cli.h"
#include "mpos/tr31.h"
#include "mpos/util.h"

static const char help[] =
    "usage: mpos-crypto tr31 wrap --kbpk HEX --key HEX --header HEADER [--padding HEX]\n"
    "       mpos-crypto tr31 unwrap --kbpk HEX --block BLOCK\n"
    "TR-31 / ANSI X9.143 key blocks: version B (TDES KBPK of 16 or 24 bytes) and version D\n"
    "(AES KBPK of 16, 24 or 32 bytes). mpos-crypto tr31 wrap|unwrap --help for details.\n";

static const char help_wrap[] =
    "usage: mpos-crypto tr31 wrap --kbpk HEX --key HEX --header HEADER [--padding HEX]\n"
    "  --kbpk HEX       key block protection key: version B 16 or 24 bytes (TDES),\n"
    "                   version D 16, 24 or 32 bytes (AES)\n"
    "  --key HEX        the key to wrap; its length must suit the header's algorithm:\n"
    "                   T 16 or 24, A 16, 24 or 32, D 8, H 16 to 64 bytes\n"
    "  --header HEADER  16 characters plus optional blocks, e.g. D0000P0AE00E0000; the\n"
    "                   length field is recomputed and a PB block added when needed\n"
    "  --padding HEX    exactly these padding bytes after the key (default: random bytes\n"
    "                   up to the longest key of the algorithm: TDES 24, AES 32, HMAC 64);\n"
    "                   2 + key + padding must be whole cipher blocks (8 for B, 16 for D)\n"
    "Prints the key block.\n";

static const char help_unwrap[] =
    "usage: mpos-crypto tr31 unwrap --kbpk HEX --block BLOCK\n"
    "  --kbpk HEX     key block protection key (B: 16 or 24 bytes, D: 16, 24 or 32 bytes)\n"
    "  --block BLOCK  the key block\n"
    "Checks the header strictly and the MAC in constant time; prints the key in hex.\n"
    "Any failure: exit 1, \"key block rejected\", no key printed.\n";

#define TR31_CLI_KBPK_CAP 64 /* longer than any KBPK: a wrong length is the block's failure */

static int cmd_wrap(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {
        {"kbpk", 1, NULL}, {"key", 1, NULL}, {"header", 1, NULL}, {"padding", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t kbpk[TR31_CLI_KBPK_CAP];
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    uint8_t padding[MPOS_TR31_MAX_PAYLOAD_LEN];
    char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
    mpos_tr31_header hdr;
    size_t kbpk_len = 0, key_len = 0, padding_len = 0, block_len = 0;
    const char *kbpk_s, *key_s, *header_s, *padding_s;
    int err;
    int rc = cli_parse(argc - 1, argv + 1, opts, nopts, help_wrap);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "kbpk", &kbpk_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "header", &header_s)) != CLI_OK ||
        (rc = cli_hex("kbpk", kbpk_s, kbpk, sizeof(kbpk), &kbpk_len)) != CLI_OK ||
        (rc = cli_hex("key", key_s, key, sizeof(key), &key_len)) != CLI_OK) {
        goto exit;
    }
    padding_s = cli_get(opts, nopts, "padding");
    if (padding_s != NULL &&
        (rc = cli_hex("padding", padding_s, padding, sizeof(padding), &padding_len)) != CLI_OK) {
        goto exit;
    }
    err = mpos_tr31_header_parse(header_s, strlen(header_s), MPOS_TR31_PARSE_TEMPLATE, &hdr);
    if (err != MPOS_OK) {
        rc = cli_error(CLI_USAGE, "--header: %s", hdr.why != NULL ? hdr.why : mpos_strerror(err));
        goto exit;
    }
    if (hdr.version == 'B' && kbpk_len != 16 && kbpk_len != 24) {
        rc = cli_error(CLI_USAGE, "--kbpk: version B takes a TDES KBPK of 16 or 24 bytes");
        goto exit;
    }
    if (hdr.version == 'D' && kbpk_len != 16 && kbpk_len != 24 && kbpk_len != 32) {
        rc = cli_error(CLI_USAGE, "--kbpk: version D takes an AES KBPK of 16, 24 or 32 bytes");
        goto exit;
    }
    if (hdr.algorithm == 'E' || hdr.algorithm == 'R' || hdr.algorithm == 'S') {
        rc = cli_error(CLI_USAGE, "--header: asymmetric keys (algorithm %c) are not supported",
                       hdr.algorithm);
        goto exit;
    }
    if (!mpos_tr31_key_len_valid(hdr.algorithm, key_len)) {
        rc = cli_error(CLI_USAGE, "--key: algorithm %c takes a key of %s bytes", hdr.algorithm,
                       hdr.algorithm == 'T'   ? "16 or 24"
                       : hdr.algorithm == 'A' ? "16, 24 or 32"
                       : hdr.algorithm == 'D' ? "8"
                                              : "16 to 64");
        goto exit;
    }
    err = mpos_tr31_wrap(cc, kbpk, kbpk_len, header_s, strlen(header_s), key, key_len,
                         padding_s != NULL ? padding : NULL, padding_len, block, sizeof(block),
                         &block_len);
    if (err == MPOS_ERR_LENGTH && padding_s != NULL) {
        rc = cli_error(CLI_USAGE,
                       "--padding: 2 + key + padding must be whole cipher blocks (%s), no longer "
                       "than the longest key of the algorithm needs",
                       hdr.version == 'B' ? "8 bytes" : "16 bytes");
        goto exit;
    }
    if (err == MPOS_ERR_LENGTH || err == MPOS_ERR_FORMAT) {
        rc = cli_error(CLI_USAGE, "--header: too many optional blocks or too long a key block");
        goto exit;
    }
    if (err != MPOS_OK) {
        rc = cli_error(err == MPOS_ERR_RNG || err == MPOS_ERR_CRYPTO ? CLI_FAIL : CLI_USAGE,
                       "wrap failed: %s", mpos_strerror(err));
        goto exit;
    }
    cli_print_text(block);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(kbpk);
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(padding);
    return rc;
}

static int cmd_unwrap(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"kbpk", 1, NULL}, {"block", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t kbpk[TR31_CLI_KBPK_CAP];
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t kbpk_len = 0, key_len = 0;
    const char *kbpk_s, *block_s;
    int rc = cli_parse(argc - 1, argv + 1, opts, nopts, help_unwrap);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "kbpk", &kbpk_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "block", &block_s)) != CLI_OK ||
        (rc = cli_hex("kbpk", kbpk_s, kbpk, sizeof(kbpk), &kbpk_len)) != CLI_OK) {
        goto exit;
    }
    /* Whatever is wrong with the block, or with the KBPK for it, is one answer: no detail
     * an attacker could use as an oracle. */
    if (mpos_tr31_unwrap(cc, kbpk, kbpk_len, block_s, strlen(block_s), NULL, key, sizeof(key),
                         &key_len) != MPOS_OK) {
        rc = cli_error(CLI_FAIL, "key block rejected");
        goto exit;
    }
    cli_print_hex(key, key_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(kbpk);
    MPOS_WIPE_BUFFER(key);
    return rc;
}

int cli_cmd_tr31(int argc, char **argv, mpos_crypto_ctx *cc)
{
    if (argc < 2) {
        return cli_error(CLI_USAGE, "tr31: missing wrap or unwrap (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_HELP;
    }
    if (strcmp(argv[1], "wrap") == 0) {
        return cmd_wrap(argc - 1, argv + 1, cc);
    }
    if (strcmp(argv[1], "unwrap") == 0) {
        return cmd_unwrap(argc - 1, argv + 1, cc);
    }
    return cli_error(CLI_USAGE, "tr31: unknown subcommand '%s' (try --help)",
                     cli_echo_safe(argv[1]));
}
