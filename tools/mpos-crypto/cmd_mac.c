/* mpos-crypto mac: ISO 9797-1 algorithms 1 and 3, CMAC, UnionPay POS ECB MAC
 * (docs/mpos-crypto.md, mac). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mpos/crypto.h"
#include "mpos/mac.h"
#include "mpos/util.h"

static const char help[] =
    "usage: mpos-crypto mac --alg A --key HEX --data HEX [--len BYTES] [--pad 1|2]\n"
    "  --alg retail          ISO 9797-1 MAC algorithm 3 (ANSI X9.19), 16-byte key, 8-byte MAC\n"
    "        iso9797-1-alg1  ISO 9797-1 MAC algorithm 1 (CBC-MAC), DES/TDES key of 8, 16\n"
    "                        or 24 bytes, 8-byte MAC\n"
    "        cmac-aes        NIST SP 800-38B CMAC, AES key of 16, 24 or 32 bytes\n"
    "        cmac-tdes       CMAC, TDES key of 16 or 24 bytes\n"
    "        cmac-sm4        CMAC, SM4 key of 16 bytes\n"
    "        cup-ecb         UnionPay POS ECB MAC, TDES MAK of 8 or 16 bytes, 8-byte MAC\n"
    "                        (the field-64 MAC is --len 4)\n"
    "        cup-ecb-sm4     UnionPay POS ECB MAC with SM4, 16-byte key, 16-byte MAC\n"
    "  --data HEX            the message (may be empty)\n"
    "  --len BYTES           keep the leftmost BYTES (1 to the MAC length; 4 to 16 for CMAC)\n"
    "  --pad 1|2             ISO 9797-1 padding method, retail and iso9797-1-alg1 only\n"
    "                        (default 1: zeros; 2: 0x80 then zeros)\n";

enum mac_kind { KIND_ISO, KIND_CMAC, KIND_CUP };

struct mac_alg {
    const char *name;
    enum mac_kind kind;
    enum mpos_mac_alg alg; /* KIND_ISO, KIND_CUP */
    enum mpos_cipher cipher;
    const char *keys; /* for the error message */
};

static const struct mac_alg algs[] = {
    {"retail", KIND_ISO, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES, "16"},
    {"iso9797-1-alg1", KIND_ISO, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, "8, 16 or 24"},
    {"cmac-aes", KIND_CMAC, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_AES, "16, 24 or 32"},
    {"cmac-tdes", KIND_CMAC, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_TDES, "16 or 24"},
    {"cmac-sm4", KIND_CMAC, MPOS_MAC_ALG_ISO9797_1, MPOS_CIPHER_SM4, "16"},
    {"cup-ecb", KIND_CUP, MPOS_MAC_ALG_CUP_ECB, MPOS_CIPHER_TDES, "8 or 16"},
    {"cup-ecb-sm4", KIND_CUP, MPOS_MAC_ALG_CUP_ECB, MPOS_CIPHER_SM4, "16"},
};

static int key_len_ok(const struct mac_alg *a, size_t n)
{
    switch (a->kind) {
    case KIND_CMAC:
        /* CMAC-TDES takes 2- and 3-key TDES; a single-DES CMAC is not offered. */
        return a->cipher == MPOS_CIPHER_TDES ? (n == 16 || n == 24)
                                             : mpos_cipher_key_len_valid(a->cipher, n);
    case KIND_ISO:
        return a->alg == MPOS_MAC_ALG_ISO9797_3 ? n == 16 : (n == 8 || n == 16 || n == 24);
    case KIND_CUP:
        return a->cipher == MPOS_CIPHER_SM4 ? n == 16 : (n == 8 || n == 16);
    }
    return 0;
}

int cli_cmd_mac(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {
        {"alg", 1, NULL}, {"key", 1, NULL}, {"data", 1, NULL}, {"len", 1, NULL}, {"pad", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    uint8_t key[MPOS_MAX_KEY_LEN];
    uint8_t mac[MPOS_MAX_BLOCK_LEN];
    uint8_t *data = NULL;
    size_t key_len = 0, data_len = 0;
    const char *alg_s, *key_s, *data_s, *len_s, *pad_s;
    const struct mac_alg *a = NULL;
    enum mpos_mac_pad pad = MPOS_MAC_PAD_1;
    unsigned long out_len;
    size_t block, cap;
    int err;
    int rc = cli_parse(argc - 1, argv + 1, opts, nopts, help);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = cli_need(opts, nopts, "alg", &alg_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "data", &data_s)) != CLI_OK) {
        goto exit;
    }
    len_s = cli_get(opts, nopts, "len");
    pad_s = cli_get(opts, nopts, "pad");
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
    if (pad_s != NULL) {
        if (a->kind != KIND_ISO) {
            rc = cli_error(CLI_USAGE, "--pad is not allowed with --alg %s", a->name);
            goto exit;
        }
        if (strcmp(pad_s, "1") != 0 && strcmp(pad_s, "2") != 0) {
            rc = cli_error(CLI_USAGE, "--pad: must be 1 or 2");
            goto exit;
        }
        pad = pad_s[0] == '2' ? MPOS_MAC_PAD_2 : MPOS_MAC_PAD_1;
    }
    if ((rc = cli_hex("key", key_s, key, sizeof(key), &key_len)) != CLI_OK) {
        goto exit;
    }
    if (!key_len_ok(a, key_len)) {
        rc = cli_error(CLI_USAGE, "--key: %s takes a key of %s bytes", a->name, a->keys);
        goto exit;
    }
    block = mpos_cipher_block_len(a->cipher);
    out_len = block;
    if (len_s != NULL) {
        unsigned long min = a->kind == KIND_CMAC ? 4 : 1;
        if ((rc = cli_uint("len", len_s, min, block, &out_len)) != CLI_OK) {
            goto exit;
        }
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
    switch (a->kind) {
    case KIND_CMAC:
        err = mpos_cmac(cc, a->cipher, key, key_len, data, data_len, mac);
        break;
    case KIND_CUP:
        err = mpos_mac_cup_ecb(cc, a->cipher, key, key_len, data, data_len, mac);
        break;
    default:
        err = a->alg == MPOS_MAC_ALG_ISO9797_3
                  ? mpos_mac_iso9797_alg3(cc, key, key_len, pad, data, data_len, mac)
                  : mpos_mac_iso9797_alg1(cc, key, key_len, pad, data, data_len, mac);
        break;
    }
    if (err != MPOS_OK) {
        rc = cli_error(CLI_FAIL, "MAC failed: %s", mpos_strerror(err));
        goto exit;
    }
    cli_print_hex(mac, (size_t)out_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(mac);
    if (data != NULL) {
        mpos_cleanse(data, data_len);
        free(data);
    }
    return rc;
}
