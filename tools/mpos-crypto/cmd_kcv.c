/* mpos-crypto kcv: key check values (docs/mpos-crypto.md, kcv). */
#include <string.h>

#include "cli.h"
#include "mpos/kcv.h"
#include "mpos/util.h"

static const char help[] =
    "usage: mpos-crypto kcv --key HEX --cipher aes|tdes|sm4 [--method legacy|cmac] [--len BYTES]\n"
    "  --cipher aes    key of 16, 24 or 32 bytes\n"
    "           tdes   key of 8 (single length, used as K|K), 16 or 24 bytes\n"
    "           sm4    key of 16 bytes\n"
    "  --method legacy encrypt one all-zero block (ECB); default for tdes and sm4, 3 bytes\n"
    "           cmac   CMAC of one all-zero block (ANSI X9.24-1:2017 A.3); default for aes,\n"
    "                  5 bytes\n"
    "  --len BYTES     keep the leftmost BYTES (1 to the cipher's block length)\n";

static int parse_cipher(const char *s, enum mpos_cipher *cipher)
{
    if (strcmp(s, "aes") == 0) {
        *cipher = MPOS_CIPHER_AES;
    } else if (strcmp(s, "tdes") == 0) {
        *cipher = MPOS_CIPHER_TDES;
    } else if (strcmp(s, "sm4") == 0) {
        *cipher = MPOS_CIPHER_SM4;
    } else {
        return cli_error(CLI_USAGE, "--cipher: must be aes, tdes or sm4");
    }
    return CLI_OK;
}

int cli_cmd_kcv(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {
        {"key", 1, NULL}, {"cipher", 1, NULL}, {"method", 1, NULL}, {"len", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t key[MPOS_MAX_KEY_LEN];
    uint8_t kcv[MPOS_KCV_MAX_LEN];
    size_t key_len = 0;
    const char *key_s, *cipher_s, *method_s, *len_s;
    enum mpos_cipher cipher = MPOS_CIPHER_TDES;
    enum mpos_kcv_method method;
    unsigned long kcv_len;
    int err;
    int rc = cli_parse(argc - 1, argv + 1, opts, nopts, help);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "cipher", &cipher_s)) != CLI_OK ||
        (rc = parse_cipher(cipher_s, &cipher)) != CLI_OK) {
        goto exit;
    }
    method = mpos_kcv_default_method(cipher);
    method_s = cli_get(opts, nopts, "method");
    if (method_s != NULL) {
        if (strcmp(method_s, "legacy") == 0) {
            method = MPOS_KCV_LEGACY;
        } else if (strcmp(method_s, "cmac") == 0) {
            method = MPOS_KCV_CMAC;
        } else {
            rc = cli_error(CLI_USAGE, "--method: must be legacy or cmac");
            goto exit;
        }
    }
    if ((rc = cli_hex("key", key_s, key, sizeof(key), &key_len)) != CLI_OK) {
        goto exit;
    }
    if (!mpos_cipher_key_len_valid(cipher, key_len)) {
        rc = cli_error(CLI_USAGE, "--key: %s takes a key of %s bytes", cipher_s,
                       cipher == MPOS_CIPHER_AES    ? "16, 24 or 32"
                       : cipher == MPOS_CIPHER_TDES ? "8, 16 or 24"
                                                    : "16");
        goto exit;
    }
    kcv_len = mpos_kcv_default_len(method);
    len_s = cli_get(opts, nopts, "len");
    if (len_s != NULL &&
        (rc = cli_uint("len", len_s, 1, mpos_cipher_block_len(cipher), &kcv_len)) != CLI_OK) {
        goto exit;
    }
    err = mpos_kcv_compute(cc, cipher, method, key, key_len, kcv, (size_t)kcv_len);
    if (err != MPOS_OK) {
        rc = cli_error(CLI_FAIL, "check value failed: %s", mpos_strerror(err));
        goto exit;
    }
    cli_print_hex(kcv, (size_t)kcv_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(kcv);
    return rc;
}
