/* openmpos terminal simulator: RNG and clock of the Linux HAL (hal_linux.h). */
#define _POSIX_C_SOURCE 200809L

#include <string.h>
#include <time.h>

#include "hal_linux.h"
#include "mpos/crypto.h"

static int rng_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    if (out == NULL && len != 0) {
        return MPOS_ERR_ARG;
    }
    if (len == 0) {
        return MPOS_OK;
    }
    if (mpos_random_bytes(out, len) != MPOS_OK) {
        memset(out, 0, len);
        return MPOS_ERR_RNG;
    }
    return MPOS_OK;
}

void mpos_hal_linux_rng_bind(mpos_hal_rng *rng)
{
    if (rng != NULL) {
        rng->ctx = NULL;
        rng->random = rng_random;
    }
}

static int clock_now(void *ctx, int64_t *unix_seconds)
{
    struct timespec ts;
    (void)ctx;
    if (unix_seconds == NULL) {
        return MPOS_ERR_ARG;
    }
    *unix_seconds = 0;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return MPOS_ERR_IO;
    }
    *unix_seconds = (int64_t)ts.tv_sec;
    return MPOS_OK;
}

static int clock_monotonic_ms(void *ctx, uint64_t *ms)
{
    struct timespec ts;
    (void)ctx;
    if (ms == NULL) {
        return MPOS_ERR_ARG;
    }
    *ms = 0;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || ts.tv_sec < 0) {
        return MPOS_ERR_IO;
    }
    *ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return MPOS_OK;
}

void mpos_hal_linux_clock_bind(mpos_hal_clock *clock)
{
    if (clock != NULL) {
        clock->ctx = NULL;
        clock->now = clock_now;
        clock->monotonic_ms = clock_monotonic_ms;
    }
}
