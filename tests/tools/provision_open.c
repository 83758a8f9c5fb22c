/* mpos-provision-open: a test tool that opens a provisioning bundle as the terminal does
 * (mpos_provision_open, docs/provisioning.md "Opening a bundle") and prints what it
 * delivered, never the key itself:
 *
 *   mpos-provision-open --key DEVICE_PRIV_HEX --serial SERIAL --ca-pub CA_PUB_HEX --bundle FILE
 *
 * Output (exit 0): "kind N", "id HEX" (DUKPT: initial key ID / initial KSN; "-" for a TMK) and
 * "kcv HEX" (the delivered key's check value: CMAC 5 bytes for AES, legacy 3 bytes for TDES
 * and SM4, X9.24-1:2017 A.3), one per line. Exit 1 with "open: <error>" when the bundle does not
 * open (another terminal's key, another CA, a changed byte), 2 for a usage error. */
#include <stdio.h>
#include <string.h>

#include "mpos/crypto.h"
#include "mpos/kcv.h"
#include "mpos/provision.h"
#include "mpos/util.h"

static int usage(void)
{
    fprintf(stderr, "usage: mpos-provision-open --key HEX --serial SERIAL --ca-pub HEX "
                    "--bundle FILE\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *key_hex = NULL, *serial = NULL, *ca_hex = NULL, *file = NULL;
    static uint8_t bundle[MPOS_PROVISION_BUNDLE_MAX_LEN + 1];
    uint8_t priv[MPOS_EC_P256_PRIV_LEN], ca_pub[MPOS_EC_P256_PUB_LEN];
    uint8_t kcv[MPOS_KCV_MAX_LEN];
    char hex[2 * MPOS_PROVISION_MAX_ID_LEN + 1];
    size_t n = 0, len = 0, kcv_len;
    struct mpos_provision_key key;
    mpos_crypto_ctx cc;
    int rc = 1;
    memset(&key, 0, sizeof(key));
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--key") == 0) {
            key_hex = argv[i + 1];
        } else if (strcmp(argv[i], "--serial") == 0) {
            serial = argv[i + 1];
        } else if (strcmp(argv[i], "--ca-pub") == 0) {
            ca_hex = argv[i + 1];
        } else if (strcmp(argv[i], "--bundle") == 0) {
            file = argv[i + 1];
        } else {
            return usage();
        }
    }
    if (argc % 2 != 1 || key_hex == NULL || serial == NULL || ca_hex == NULL || file == NULL ||
        mpos_hex_decode(key_hex, priv, sizeof(priv), &n) != MPOS_OK || n != sizeof(priv) ||
        mpos_hex_decode(ca_hex, ca_pub, sizeof(ca_pub), &n) != MPOS_OK || n != sizeof(ca_pub)) {
        return usage();
    }
    FILE *fp = fopen(file, "rb");
    if (fp == NULL) {
        perror(file);
        return 2;
    }
    len = fread(bundle, 1, sizeof(bundle), fp);
    fclose(fp);
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return 1;
    }
    int orc = mpos_provision_open(&cc, priv, serial, ca_pub, bundle, len, NULL, &key);
    if (orc != MPOS_OK) {
        printf("open: %s\n", mpos_strerror(orc));
        goto exit;
    }
    /* The check value of the delivered key: CMAC for AES, legacy for TDES and SM4
     * (X9.24-1:2017 A.3). */
    enum mpos_cipher cipher = key.kind == MPOS_PROVISION_AES_DUKPT ? MPOS_CIPHER_AES
                              : key.kind == MPOS_PROVISION_TMK_SM4 ? MPOS_CIPHER_SM4
                                                                   : MPOS_CIPHER_TDES;
    enum mpos_kcv_method method = mpos_kcv_default_method(cipher);
    kcv_len = mpos_kcv_default_len(method);
    if (mpos_kcv_compute(&cc, cipher, method, key.key, key.key_len, kcv, kcv_len) != MPOS_OK) {
        printf("open: check value failed\n");
        goto exit;
    }
    printf("kind %d\n", (int)key.kind);
    if (key.id_len > 0) {
        mpos_hex_encode(key.id, key.id_len, hex);
        printf("id %s\n", hex);
    } else {
        printf("id -\n");
    }
    mpos_hex_encode(kcv, kcv_len, hex);
    printf("kcv %s\n", hex);
    rc = 0;
exit:
    mpos_provision_key_clear(&key);
    mpos_cleanse(priv, sizeof(priv));
    mpos_crypto_clear(&cc);
    return rc;
}
