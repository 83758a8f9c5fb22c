/* mposctl-params-check: takes parameter packages as a terminal does, for the tests of
 * mposctl params publish. The terminal's own code (terminal/core/params) on the key store's
 * in-memory storage HAL: the anchor key from the CA certificate (mpos_params_anchor_key, as
 * the key store's parameter anchor holds it), then mpos_params_verify_and_apply of each
 * package in turn on one fresh device, so that versions must go up.
 *
 * usage: mposctl-params-check --anchor CERT.der [--firmware X.Y.Z] PACKAGE...
 * Prints per package "PACKAGE: applied|firmware-too-old" with the kernel parameters that
 * resulted (version, AIDs, country, currency, exponent, MCC), or "PACKAGE: refused ERROR".
 * Exit 0 when every package was applied, 1 when one was refused, 2 on a usage or I/O error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emv_kernel.h"
#include "mem_storage.h"
#include "mpos/crypto.h"
#include "mpos/util.h"
#include "params.h"

static int test_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return mpos_random_bytes(out, len);
}

static long read_all(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f) || (n == cap && fgetc(f) != EOF);
    fclose(f);
    return bad ? -1 : (long)n;
}

static void print_hex(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        printf("%02X", b[i]);
    }
}

static void print_emv(const mpos_params_store *st, const mpos_emv_params *emv)
{
    const mpos_params *p = NULL;
    if (mpos_params_current(st, &p, NULL) != MPOS_OK) {
        return;
    }
    printf("version %lu\n", (unsigned long)p->version);
    for (size_t i = 0; i < emv->aid_count; i++) {
        const mpos_emv_aid_param *a = &emv->aids[i];
        const mpos_params_aid *pa = mpos_params_aid_find(p, a->aid, a->aid_len);
        printf("aid ");
        print_hex(a->aid, a->aid_len);
        printf(" partial=%d version=", a->partial);
        print_hex(a->app_version, 2);
        printf(" denial=");
        print_hex(a->tac_denial, 5);
        printf(" online=");
        print_hex(a->tac_online, 5);
        printf(" default=");
        print_hex(a->tac_default, 5);
        printf(" floor=%lu limit=%llu\n", pa != NULL ? (unsigned long)pa->floor_limit : 0UL,
               pa != NULL ? (unsigned long long)pa->txn_limit : 0ULL);
    }
    printf("country ");
    print_hex(emv->terminal_country, 2);
    printf("\ncurrency ");
    print_hex(emv->currency, 2);
    printf("\nexponent %u\n", (unsigned)emv->currency_exponent);
    if (p->has_mcc) {
        printf("mcc ");
        print_hex(p->mcc, 2);
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    static uint8_t cert[4096], pkg[MPOS_PARAMS_MAX_LEN + 1];
    static mem_storage mem;
    static mpos_params_store st;
    static mpos_emv_params emv;
    mpos_hal_storage hal;
    mpos_hal_rng rng = {NULL, test_random};
    mpos_crypto_ctx cc;
    uint8_t anchor[MPOS_EC_P256_PUB_LEN];
    const char *anchor_path = NULL;
    unsigned fw[3] = {1, 0, 0};
    int i = 1, status = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc) {
            return 2;
        }
        if (strcmp(argv[i], "--anchor") == 0) {
            anchor_path = argv[i + 1];
        } else if (strcmp(argv[i], "--firmware") == 0) {
            if (sscanf(argv[i + 1], "%u.%u.%u", &fw[0], &fw[1], &fw[2]) != 3) {
                return 2;
            }
        } else {
            return 2;
        }
    }
    if (anchor_path == NULL || i >= argc) {
        fprintf(stderr, "usage: mposctl-params-check --anchor CERT.der [--firmware X.Y.Z] "
                        "PACKAGE...\n");
        return 2;
    }
    long n = read_all(anchor_path, cert, sizeof(cert));
    if (n <= 0 || mpos_crypto_init(&cc) != MPOS_OK) {
        fprintf(stderr, "cannot read %s\n", anchor_path);
        return 2;
    }
    int rc = mpos_params_anchor_key(cert, (size_t)n, anchor);
    if (rc != MPOS_OK) {
        printf("anchor: refused %s\n", mpos_hal_strerror(rc));
        mpos_crypto_clear(&cc);
        return 1;
    }
    uint32_t firmware = (uint32_t)(fw[0] << 16 | fw[1] << 8 | fw[2]);
    mem_storage_init(&mem, (uint64_t)time(NULL));
    mem_storage_bind(&mem, &hal);
    mpos_emv_params_default(&emv);
    rc = mpos_params_open(&st, &hal, &rng, &cc, firmware, &emv);
    if (rc != MPOS_PARAMS_NONE) {
        fprintf(stderr, "open: %d\n", rc);
        mpos_crypto_clear(&cc);
        return 2;
    }
    for (; i < argc; i++) {
        n = read_all(argv[i], pkg, sizeof(pkg));
        if (n < 0) {
            fprintf(stderr, "cannot read %s\n", argv[i]);
            status = 2;
            break;
        }
        rc = mpos_params_verify_and_apply(&st, anchor, firmware, (int64_t)time(NULL), pkg,
                                          (size_t)n, &emv);
        if (rc < 0) {
            printf("%s: refused %s\n", argv[i], mpos_hal_strerror(rc));
            status = 1;
            continue;
        }
        printf("%s: %s\n", argv[i], rc == MPOS_OK ? "applied" : "firmware-too-old");
        print_emv(&st, &emv);
    }
    mpos_params_close(&st);
    mpos_crypto_clear(&cc);
    return status;
}
