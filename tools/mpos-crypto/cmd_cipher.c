/* mpos-crypto cipher: AES, TDES and SM4 in ECB and CBC, no padding, straight on the crypto
 * facade (docs/mpos-crypto.md, cipher). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mpos/crypto.h"
#include "mpos/util.h"

static const char help[] =
    "usage: mpos-crypto cipher --alg ALG [--decrypt] --key HEX --data HEX [--iv HEX]\n"
    "  --alg aes-ecb|aes-cbc     AES, key of 16, 24 or 32 bytes, 16-byte blocks\n"
    "        tdes-ecb|tdes-cbc   TDES, key of 8 (single DES), 16 or 24 bytes, 8-byte blocks\n"
    "        sm4-ecb|sm4-cbc     SM4, key of 16 bytes, 16-byte blocks\n"
    "  --decrypt                 decrypt (default: encrypt)\n"
    "  --data HEX                a whole number of blocks (no padding; may be empty)\n"
    "  --iv HEX                  one block, CBC only (default zeros)\n";

struct cipher_alg {
    const char *name;
    enum mpos_cipher cipher;
    int cbc;
    const char *keys;
};

static const struct cipher_alg algs[] = {
    {"aes-ecb", MPOS_CIPHER_AES, 0, "16, 24 or 32"},
    {"aes-cbc", MPOS_CIPHER_AES, 1, "16, 24 or 32"},
    {"tdes-ecb", MPOS_CIPHER_TDES, 0, "8, 16 or 24"},
    {"tdes-cbc", MPOS_CIPHER_TDES, 1, "8, 16 or 24"},
    {"sm4-ecb", MPOS_CIPHER_SM4, 0, "16"},
    {"sm4-cbc", MPOS_CIPHER_SM4, 1, "16"},
};

int cli_cmd_cipher(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"alg", 1, NULL},
                             {"decrypt", 0, NULL},
                             {"key", 1, NULL},
                             {"data", 1, NULL},
                             {"iv", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t key[MPOS_MAX_KEY_LEN];
    uint8_t iv[MPOS_MAX_BLOCK_LEN];
    uint8_t *data = NULL;
    size_t key_len = 0, iv_len = 0, data_len = 0, block, cap;
    const char *alg_s, *key_s, *data_s, *iv_s;
    const struct cipher_alg *a = NULL;
    int encrypt, err;
    int rc = cli_parse(argc - 1, argv + 1, opts, nopts, help);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "alg", &alg_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "data", &data_s)) != CLI_OK) {
        goto exit;
    }
    encrypt = cli_get(opts, nopts, "decrypt") == NULL;
    iv_s = cli_get(opts, nopts, "iv");
    for (size_t i = 0; i < CLI_NOPTS(algs); i++) {
        if (strcmp(alg_s, algs[i].name) == 0) {
            a = &algs[i];
        }
    }
    if (a == NULL) {
        rc = cli_error(CLI_USAGE, "--alg: unknown algorithm '%s' (try --help)",
                       cli_echo_safe(alg_s));
        goto exit;
    }
    block = mpos_cipher_block_len(a->cipher);
    if (iv_s != NULL) {
        if (!a->cbc) {
            rc = cli_error(CLI_USAGE, "--iv is not allowed with --alg %s", a->name);
            goto exit;
        }
        /* Decode into a larger buffer so that a long IV is reported as a wrong length. */
        uint8_t iv_in[2 * MPOS_MAX_BLOCK_LEN];
        rc = cli_hex("iv", iv_s, iv_in, sizeof(iv_in), &iv_len);
        if (rc == CLI_OK && iv_len != block) {
            rc = cli_error(CLI_USAGE, "--iv: %s takes an IV of %zu bytes", a->name, block);
        }
        if (rc == CLI_OK) {
            memcpy(iv, iv_in, block);
        }
        MPOS_WIPE_BUFFER(iv_in);
        if (rc != CLI_OK) {
            goto exit;
        }
    } else {
        memset(iv, 0, sizeof(iv));
    }
    if ((rc = cli_hex("key", key_s, key, sizeof(key), &key_len)) != CLI_OK) {
        goto exit;
    }
    if (!mpos_cipher_key_len_valid(a->cipher, key_len)) {
        rc = cli_error(CLI_USAGE, "--key: %s takes a key of %s bytes", a->name, a->keys);
        goto exit;
    }
    cap = strlen(data_s) / 2 + 1;
    data = malloc(cap);
    if (data == NULL) {
        rc = cli_error(CLI_FAIL, "out of memory");
        goto exit;
    }
    if ((rc = cli_hex("data", data_s, data, cap, &data_len)) != CLI_OK) {
        goto exit;
    }
    if (data_len % block != 0) {
        rc = cli_error(CLI_USAGE, "--data: not a whole number of %zu-byte blocks", block);
        goto exit;
    }
    err = a->cbc ? mpos_cipher_cbc(cc, a->cipher, encrypt, key, key_len, iv, data, data, data_len)
                 : mpos_cipher_ecb(cc, a->cipher, encrypt, key, key_len, data, data, data_len);
    if (err != MPOS_OK) {
        rc = cli_error(CLI_FAIL, "cipher failed: %s", mpos_strerror(err));
        goto exit;
    }
    cli_print_hex(data, data_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(iv);
    if (data != NULL) {
        mpos_cleanse(data, data_len);
        free(data);
    }
    return rc;
}
