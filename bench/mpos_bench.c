#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* mpos-bench: throughput of the payment-crypto core on one core.
 *
 *   mpos-bench [--tsv] [--seconds S] [--only NAME]
 *
 * Each figure is the median of 5 timed runs of S/5 seconds of this thread's CPU time (one
 * core, whatever else the machine runs). --tsv prints one
 * "name<TAB>value<TAB>unit" line per figure; the names are a public interface.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpos/crypto.h"
#include "mpos/dukpt.h"
#include "mpos/pin.h"
#include "mpos/tr31.h"
#include "mpos/util.h"
#ifdef MPOS_BENCH_HSMD
#include "bench_hsmd.h"
#endif

#define RUNS       5
#define N_COUNTERS 4096

struct bench {
    const char *name;
    const char *what;
    /* Runs n iterations; returns 0 on success. */
    int (*run)(mpos_crypto_ctx *cc, unsigned long n);
};

static uint32_t aes_counters[N_COUNTERS];  /* counters with 16 one-bits */
static uint32_t tdes_counters[N_COUNTERS]; /* 21-bit counters with 10 one-bits */
static volatile uint8_t sink;

static const uint8_t bdk_aes[16] = {0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
                                    0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1};
static const uint8_t bdk_tdes[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                     0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};

/* Deterministic pseudo-random counters with exactly `ones` one-bits among `bits`. */
static void make_counters(uint32_t *out, unsigned bits, unsigned ones)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < N_COUNTERS; i++) {
        uint32_t c = 0;
        while (mpos_popcount32(c) < ones) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c |= 1u << (unsigned)(x % bits);
        }
        out[i] = c;
    }
}

static int bench_dukpt_aes(mpos_crypto_ctx *cc, unsigned long n)
{
    uint8_t ksn[12] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56};
    uint8_t key[16];
    for (unsigned long i = 0; i < n; i++) {
        mpos_store_be32(ksn + 8, aes_counters[i % N_COUNTERS]);
        if (mpos_dukpt_aes_working_key(cc, bdk_aes, sizeof(bdk_aes), ksn, MPOS_DUKPT_AES_USAGE_PIN,
                                       MPOS_DUKPT_AES_KEY_AES128, key) != MPOS_OK) {
            return -1;
        }
        sink ^= key[0];
    }
    MPOS_WIPE_BUFFER(key);
    return 0;
}

static int bench_dukpt_tdes(mpos_crypto_ctx *cc, unsigned long n)
{
    uint8_t ksn[10] = {0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x00};
    uint8_t key[16];
    for (unsigned long i = 0; i < n; i++) {
        uint32_t c = tdes_counters[i % N_COUNTERS];
        ksn[7] = (uint8_t)(0xE0 | (c >> 16));
        ksn[8] = (uint8_t)(c >> 8);
        ksn[9] = (uint8_t)c;
        if (mpos_dukpt_tdes_working_key(cc, bdk_tdes, sizeof(bdk_tdes), ksn,
                                        MPOS_DUKPT_TDES_USAGE_PIN, key) != MPOS_OK) {
            return -1;
        }
        sink ^= key[0];
    }
    MPOS_WIPE_BUFFER(key);
    return 0;
}

static int bench_pin4(mpos_crypto_ctx *cc, unsigned long n)
{
    static const uint8_t key[16] = {0xAF, 0x8C, 0xB1, 0x33, 0xA7, 0x8F, 0x8D, 0xC2,
                                    0xD1, 0x35, 0x9F, 0x18, 0x52, 0x75, 0x93, 0xFB};
    uint8_t block[MPOS_PIN_BLOCK_MAX_LEN];
    size_t block_len = 0;
    char pin[MPOS_PIN_BUF_LEN];
    for (unsigned long i = 0; i < n; i++) {
        /* Random fill from the CSPRNG, as a terminal does. */
        if (mpos_pin_block_encrypt(cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, sizeof(key), "1234",
                                   "4111111111111111", NULL, 0, block, &block_len) != MPOS_OK ||
            mpos_pin_block_decrypt(cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, sizeof(key), block,
                                   block_len, "4111111111111111", pin) != MPOS_OK) {
            return -1;
        }
        sink ^= (uint8_t)pin[0];
    }
    MPOS_WIPE_BUFFER(pin);
    return 0;
}

static int bench_cmac(mpos_crypto_ctx *cc, unsigned long n)
{
    static const uint8_t key[16] = {0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6,
                                    0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C};
    uint8_t data[64] = {0}, mac[16];
    for (unsigned long i = 0; i < n; i++) {
        data[0] = (uint8_t)i;
        if (mpos_cmac(cc, MPOS_CIPHER_AES, key, sizeof(key), data, sizeof(data), mac) != MPOS_OK) {
            return -1;
        }
        sink ^= mac[0];
    }
    return 0;
}

/* The published X9.143:2021 8.1 block (AES-256 KBPK, AES-128 key, obfuscated to 32 bytes). */
static const char tr31_block[] =
    "D0144P0AE00E00002C77FA3F4A553BED6E88AE5C172A4166E3D4ACA8E2AC71C158A476FAC12C13C3829DE55D3"
    "AB54C48F4C4FEF7AC75E90FC47F1B77E7B19A73ED46E64410082557";
static uint8_t tr31_kbpk[32];

static int bench_tr31(mpos_crypto_ctx *cc, unsigned long n)
{
    mpos_tr31_header hdr;
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 0;
    for (unsigned long i = 0; i < n; i++) {
        if (mpos_tr31_unwrap(cc, tr31_kbpk, sizeof(tr31_kbpk), tr31_block, strlen(tr31_block), &hdr,
                             key, sizeof(key), &key_len) != MPOS_OK) {
            return -1;
        }
        sink ^= key[0];
    }
    MPOS_WIPE_BUFFER(key);
    return 0;
}

static const struct bench benches[] = {
    {"dukpt-aes-pin-worst", "AES DUKPT host PIN key from the BDK, counter with 16 one-bits",
     bench_dukpt_aes},
    {"dukpt-tdes-pin-worst", "TDES DUKPT host PIN key from the BDK, counter with 10 one-bits",
     bench_dukpt_tdes},
    {"pin4-encrypt-decrypt", "ISO 9564 format 4 (AES-128) encrypt + decrypt, random fill",
     bench_pin4},
    {"cmac-aes-64", "AES-128 CMAC of 64 bytes", bench_cmac},
    {"tr31-unwrap", "TR-31 version D unwrap (AES-256 KBPK, AES-128 key)", bench_tr31},
};

/* Throughput per core: the thread's own CPU time, so other processes on the machine (builds,
 * other benchmarks) do not count against it. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median rate over RUNS runs of run_seconds each (iterations grow until a run is long enough). */
static int measure(const struct bench *b, mpos_crypto_ctx *cc, double run_seconds, double *rate)
{
    unsigned long n = 64;
    for (;;) { /* calibrate */
        double t0 = now();
        if (b->run(cc, n) != 0) {
            return -1;
        }
        double dt = now() - t0;
        if (dt >= run_seconds / 4) {
            n = (unsigned long)((double)n * run_seconds / dt) + 1;
            break;
        }
        n *= 4;
    }
    double rates[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        if (b->run(cc, n) != 0) {
            return -1;
        }
        rates[r] = (double)n / (now() - t0);
    }
    qsort(rates, RUNS, sizeof(rates[0]), cmp_double);
    *rate = rates[RUNS / 2];
    return 0;
}

int main(int argc, char **argv)
{
    int tsv = 0;
    double seconds = 5.0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tsv") == 0) {
            tsv = 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: mpos-bench [--tsv] [--seconds S] [--only NAME]\n");
            return 2;
        }
    }
    if (seconds <= 0) {
        seconds = 5.0;
    }
    mpos_crypto_ctx cc;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        fprintf(stderr, "mpos-bench: cannot initialise libcrypto\n");
        return 1;
    }
    make_counters(aes_counters, 32, 16);
    make_counters(tdes_counters, 21, 10);
    size_t kl = 0;
    if (mpos_hex_decode("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
                        tr31_kbpk, sizeof(tr31_kbpk), &kl) != MPOS_OK) {
        return 1;
    }
    if (!tsv) {
        printf("openmpos benchmarks, per core (thread CPU time), median of %d runs (AES-NI %s)\n\n",
               RUNS, cc.use_aesni ? "on" : "off");
        printf("%-22s %14s  %s\n", "name", "ops/s", "what");
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
        const struct bench *b = &benches[i];
        double rate = 0;
        if (only != NULL && strcmp(only, b->name) != 0) {
            continue;
        }
        if (measure(b, &cc, seconds / RUNS, &rate) != 0) {
            fprintf(stderr, "mpos-bench: %s failed\n", b->name);
            rc = 1;
            continue;
        }
        if (tsv) {
            printf("%s\t%.0f\tops/s\n", b->name, rate);
        } else {
            printf("%-22s %14.0f  %s\n", b->name, rate, b->what);
        }
        fflush(stdout);
    }
#ifdef MPOS_BENCH_HSMD
    /* Through mpos-hsmd's socket, 8 client connections (docs/performance.md). */
    for (size_t k = 0; k < MPOS_BENCH_HSMD_COUNT; k++) {
        const struct mpos_bench_hsmd_def *d = &mpos_bench_hsmd_defs[k];
        double rate = 0, wall = 0;
        if (only != NULL && strcmp(only, d->name) != 0) {
            continue;
        }
        if (mpos_bench_hsmd_run(d->name, MPOS_HSMD_PATH, seconds, 8, &rate, &wall) != 0) {
            fprintf(stderr, "mpos-bench: %s failed\n", d->name);
            rc = 1;
        } else if (tsv) {
            printf("%s\t%.0f\tops/s\n", d->name, rate);
        } else {
            printf("%-22s %14.0f  %s, 8 connections, per 2 cores (%.0f/s wall clock as loaded)\n",
                   d->name, rate, d->what, wall);
        }
        fflush(stdout);
    }
#endif
    mpos_crypto_clear(&cc);
    return rc;
}
