#define _GNU_SOURCE 1 /* clock_gettime, pthread */
/* mpos-bench, hsmd section: DUKPT-PIN-to-ZPK translations per second through mpos-hsmd's
 * backend socket, with several client connections (bench_hsmd.h). Every request is a real
 * translation: 256 PIN blocks are prepared under the PIN keys of KSNs whose counters have 16
 * one-bits (the most expensive AES DUKPT derivation) and each answer is checked for status 0. */
#include "bench_hsmd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "mpos/dukpt.h"
#include "mpos/pin.h"
#include "mpos/util.h"

#define N_REQ 256

static const char bdk_hex[] = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
static const char zpk_hex[] = "00112233445566778899AABBCCDDEEFF";
static const char pan[] = "4111111111111111";

struct bench_state {
    const char *sock;
    char bdk_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    char zpk_kb[HSM_KEYBLOCK_MAX_LEN + 1];
    struct hsm_pin_translate_req req[N_REQ];
    atomic_int go, stop;
    atomic_ulong done, failed;
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) of process pid so far, from /proc/<pid>/stat; -1 on error. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* N_REQ requests: counters with 16 one-bits, PIN 1234 in format 4 under each PIN key. */
static int prepare(struct bench_state *b)
{
    mpos_crypto_ctx cc;
    uint8_t bdk[16], key[16];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int rc = -1;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        return -1;
    }
    harness_hex(bdk_hex, bdk, sizeof(bdk));
    for (size_t i = 0; i < N_REQ; i++) {
        struct hsm_pin_translate_req *r = &b->req[i];
        uint32_t c = 0;
        while (mpos_popcount32(c) < 16) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c |= 1u << (unsigned)(x % 32);
        }
        memset(r, 0, sizeof(*r));
        r->source = HSM_PIN_FROM_DUKPT;
        r->dukpt.bdk.text = b->bdk_kb;
        r->dukpt.bdk.len = strlen(b->bdk_kb);
        harness_hex("1234567890123456", r->dukpt.ksn, 8);
        mpos_store_be32(r->dukpt.ksn + 8, c);
        r->dukpt.ksn_len = 12;
        if (mpos_dukpt_aes_working_key(&cc, bdk, sizeof(bdk), r->dukpt.ksn,
                                       MPOS_DUKPT_AES_USAGE_PIN, MPOS_DUKPT_AES_KEY_AES128,
                                       key) != MPOS_OK ||
            mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, sizeof(key),
                                   "1234", pan, NULL, 0, r->pin_block,
                                   &r->pin_block_len) != MPOS_OK) {
            goto exit;
        }
        strcpy(r->pan, pan);
        r->zpk.text = b->zpk_kb;
        r->zpk.len = strlen(b->zpk_kb);
        r->dst_format = MPOS_PIN_FORMAT_4;
    }
    rc = 0;
exit:
    MPOS_WIPE_BUFFER(bdk);
    MPOS_WIPE_BUFFER(key);
    mpos_crypto_clear(&cc);
    return rc;
}

static void *client_main(void *arg)
{
    struct bench_state *b = arg;
    hsm_client c;
    struct hsm_pin_block_resp resp;
    unsigned long i = (unsigned long)(uintptr_t)&c; /* a different start per thread */
    if (hsm_client_open(&c, b->sock, 10000) != 0) {
        atomic_fetch_add(&b->failed, 1);
        return NULL;
    }
    while (!atomic_load(&b->go)) {
        sched_yield();
    }
    while (!atomic_load(&b->stop)) {
        if (hsm_client_pin_translate(&c, &b->req[i++ % N_REQ], &resp) != 0) {
            atomic_fetch_add(&b->failed, 1);
            break;
        }
        atomic_fetch_add_explicit(&b->done, 1, memory_order_relaxed);
    }
    hsm_client_close(&c);
    return NULL;
}

int mpos_bench_hsmd_pin_translate(const char *hsmd_path, double seconds, unsigned connections,
                                  double *rate, double *wall_rate)
{
    static struct hsmd_harness h;
    struct bench_state *b = calloc(1, sizeof(*b));
    pthread_t *t = calloc(connections, sizeof(*t));
    int rc = -1, started = 0;
    unsigned n = 0;
    *rate = 0;
    *wall_rate = 0;
    if (b == NULL || t == NULL || harness_init(&h) != 0) {
        goto exit;
    }
    started = 1;
    if (harness_key_block(&h, "B0", 'A', 'X', 'N', 1, bdk_hex, b->bdk_kb, sizeof(b->bdk_kb)) ||
        harness_key_block(&h, "P0", 'A', 'B', 'N', 0, zpk_hex, b->zpk_kb, sizeof(b->zpk_kb)) ||
        prepare(b) != 0 || harness_start(&h, hsmd_path, NULL) != 0) {
        goto exit;
    }
    b->sock = h.sock[HARNESS_BACKEND];
    for (n = 0; n < connections; n++) {
        if (pthread_create(&t[n], NULL, client_main, b) != 0) {
            break;
        }
    }
    atomic_store(&b->go, 1);
    /* Warm-up, then the timed window. */
    struct timespec warm = {0, 200 * 1000000L};
    nanosleep(&warm, NULL);
    unsigned long d0 = atomic_load(&b->done);
    double t0 = clock_s(CLOCK_MONOTONIC);
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID) + proc_cpu_s(h.pid);
    struct timespec run = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&run, NULL);
    unsigned long d1 = atomic_load(&b->done);
    double t1 = clock_s(CLOCK_MONOTONIC);
    double c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID) + proc_cpu_s(h.pid);
    atomic_store(&b->stop, 1);
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    if (n == connections && atomic_load(&b->failed) == 0 && c1 > c0) {
        *wall_rate = (double)(d1 - d0) / (t1 - t0);
        *rate = 2.0 * (double)(d1 - d0) / (c1 - c0);
        rc = 0;
    }
exit:
    if (started) {
        if (harness_stop(&h) != 0) {
            rc = -1;
        }
        harness_cleanup(&h);
    }
    free(t);
    free(b);
    return rc;
}

#ifdef MPOS_BENCH_HSMD_MAIN
/* mpos-bench-hsmd [--tsv] [--seconds S] [--connections N] */
int main(int argc, char **argv)
{
    double seconds = 5.0, rate = 0, wall = 0;
    unsigned connections = 8;
    int tsv = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tsv") == 0) {
            tsv = 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc) {
            connections = (unsigned)atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: mpos-bench-hsmd [--tsv] [--seconds S] [--connections N]\n");
            return 2;
        }
    }
    if (seconds <= 0 || connections == 0 || connections > 1024) {
        return 2;
    }
    if (mpos_bench_hsmd_pin_translate(MPOS_HSMD_PATH, seconds, connections, &rate, &wall) != 0) {
        fprintf(stderr, "mpos-bench-hsmd: %s failed\n", MPOS_BENCH_HSMD_NAME);
        return 1;
    }
    if (tsv) {
        printf("%s\t%.0f\tops/s\n", MPOS_BENCH_HSMD_NAME, rate);
    } else {
        printf("%-22s %14.0f  DUKPT (AES, worst counter) PIN to AES ZPK through hsmd, %u "
               "connections, per 2 cores of CPU time (hsmd + clients); %.0f/s wall clock\n",
               MPOS_BENCH_HSMD_NAME, rate, connections, wall);
    }
    return 0;
}
#endif
