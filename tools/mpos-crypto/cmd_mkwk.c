/* mpos-crypto mkwk: UnionPay master-key / working-key delivery (docs/mpos-crypto.md, mkwk). */
#include <string.h>

#include "cli.h"
#include "mpos/mkwk.h"
#include "mpos/util.h"

static const char help[] =
    "usage: mpos-crypto mkwk unwrap --tmk HEX --key HEX --kcv HEX [--cipher tdes|sm4]\n"
    "  Decrypts a working key delivered under the terminal master key (ECB) and prints it\n"
    "  only if its legacy check value starts with --kcv.\n"
    "  --tmk HEX          terminal master key, 16 bytes\n"
    "  --key HEX          the encrypted working key: tdes 8 (single length) or 16 bytes,\n"
    "                     sm4 16 bytes\n"
    "  --kcv HEX          the leftmost 4 to 8 bytes of the working key's check value\n"
    "  --cipher tdes|sm4  default tdes\n"
    "Exit 1 with \"check value mismatch\" when the check value does not match.\n";

static int mkwk_unwrap(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {
        {"tmk", 1, NULL}, {"key", 1, NULL}, {"kcv", 1, NULL}, {"cipher", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t tmk[MPOS_MAX_KEY_LEN];
    uint8_t enc[MPOS_MAX_KEY_LEN];
    uint8_t kcv[MPOS_MAX_BLOCK_LEN];
    uint8_t key[MPOS_MKWK_MAX_KEY_LEN];
    size_t tmk_len = 0, enc_len = 0, kcv_len = 0;
    const char *tmk_s, *key_s, *kcv_s, *cipher_s;
    enum mpos_cipher cipher = MPOS_CIPHER_TDES;
    int err;
    int rc = cli_parse(argc, argv, opts, nopts, help);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "tmk", &tmk_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "kcv", &kcv_s)) != CLI_OK) {
        goto exit;
    }
    cipher_s = cli_get(opts, nopts, "cipher");
    if (cipher_s != NULL) {
        if (strcmp(cipher_s, "sm4") == 0) {
            cipher = MPOS_CIPHER_SM4;
        } else if (strcmp(cipher_s, "tdes") != 0) {
            rc = cli_error(CLI_USAGE, "--cipher: must be tdes or sm4");
            goto exit;
        }
    }
    if ((rc = cli_hex("tmk", tmk_s, tmk, sizeof(tmk), &tmk_len)) != CLI_OK ||
        (rc = cli_hex("key", key_s, enc, sizeof(enc), &enc_len)) != CLI_OK ||
        (rc = cli_hex("kcv", kcv_s, kcv, sizeof(kcv), &kcv_len)) != CLI_OK) {
        goto exit;
    }
    if (tmk_len != MPOS_MKWK_TMK_LEN) {
        rc = cli_error(CLI_USAGE, "--tmk: must be %d bytes", MPOS_MKWK_TMK_LEN);
        goto exit;
    }
    if (!mpos_mkwk_key_len_valid(cipher, enc_len)) {
        rc = cli_error(CLI_USAGE, "--key: a %s working key is %s bytes",
                       cipher == MPOS_CIPHER_SM4 ? "sm4" : "tdes",
                       cipher == MPOS_CIPHER_SM4 ? "16" : "8 or 16");
        goto exit;
    }
    if (kcv_len < MPOS_MKWK_KCV_MIN_LEN || kcv_len > MPOS_MKWK_KCV_MAX_LEN) {
        rc = cli_error(CLI_USAGE, "--kcv: must be %d to %d bytes", MPOS_MKWK_KCV_MIN_LEN,
                       MPOS_MKWK_KCV_MAX_LEN);
        goto exit;
    }
    err = mpos_mkwk_unwrap(cc, cipher, tmk, tmk_len, enc, enc_len, kcv, kcv_len, key);
    if (err == MPOS_ERR_VERIFY) {
        rc = cli_error(CLI_FAIL, "check value mismatch");
        goto exit;
    }
    if (err != MPOS_OK) {
        rc = cli_error(CLI_FAIL, "unwrap failed: %s", mpos_strerror(err));
        goto exit;
    }
    cli_print_hex(key, enc_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(tmk);
    MPOS_WIPE_BUFFER(enc);
    MPOS_WIPE_BUFFER(kcv);
    MPOS_WIPE_BUFFER(key);
    return rc;
}

int cli_cmd_mkwk(int argc, char **argv, mpos_crypto_ctx *cc)
{
    if (argc < 2) {
        return cli_error(CLI_USAGE, "mkwk: missing subcommand (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_HELP;
    }
    if (strcmp(argv[1], "unwrap") == 0) {
        return mkwk_unwrap(argc - 2, argv + 2, cc);
    }
    return cli_error(CLI_USAGE, "mkwk: unknown subcommand '%s' (try --help)",
                     cli_echo_safe(argv[1]));
}
