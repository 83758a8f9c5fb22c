/* mpos-bench, hsmd section: throughput through mpos-hsmd's socket (bench/bench_hsmd.c). */
#ifndef MPOS_BENCH_HSMD_H
#define MPOS_BENCH_HSMD_H

/* The bench names: a public interface (docs/performance.md), added to, never renamed. */
#define MPOS_BENCH_HSMD_NAME                "hsmd-pin-translate"
#define MPOS_BENCH_HSMD_SEALED_OPEN_NAME    "hsmd-sealed-open"
#define MPOS_BENCH_HSMD_SEALED_RESPOND_NAME "hsmd-sealed-respond"
#define MPOS_BENCH_HSMD_COUNT               3

/* One hsmd bench: its name and what one operation is, for the table form. */
struct mpos_bench_hsmd_def {
    const char *name;
    const char *what;
};
/* Every hsmd bench, in the order the tools print them. */
extern const struct mpos_bench_hsmd_def mpos_bench_hsmd_defs[MPOS_BENCH_HSMD_COUNT];

/* Starts mpos-hsmd (hsmd_path; its default of 2 worker threads) on sockets in a temporary
 * directory, runs the bench `name` over `connections` client connections, each its own
 * thread, for `seconds`, and stops hsmd. 0, or -1 (also for an unknown name, or when hsmd
 * refused or answered a command short of the whole work). The benches:
 *   - MPOS_BENCH_HSMD_NAME: DUKPT-PIN-to-ZPK translations (AES DUKPT, worst-case counters with
 *     16 one-bits, format 4 to an AES ZPK);
 *   - MPOS_BENCH_HSMD_SEALED_OPEN_NAME: sealed.open of AES-128 DUKPT chip sales with a PIN
 *     (512 requests sealed by the terminal's code at consecutive counters), with a TDES ZPK
 *     and ZEK: MAC verify, decryption, PIN to format 0 under the ZPK, track 2 under the ZEK,
 *     PAN hash;
 *   - MPOS_BENCH_HSMD_SEALED_RESPOND_NAME: sealed.respond to those requests (approval with an
 *     ARC and 10 bytes of issuer authentication data).
 *
 * *rate is the figure, per 2 cores: operations per second of CPU time spent by hsmd and the
 * client threads together, times 2, so that other work on the machine does not count against
 * it (the clients' own CPU counts: conservative). *wall_rate is the plain operations per
 * wall-clock second on this machine as loaded at the time. */
int mpos_bench_hsmd_run(const char *name, const char *hsmd_path, double seconds,
                        unsigned connections, double *rate, double *wall_rate);

/* mpos_bench_hsmd_run(MPOS_BENCH_HSMD_NAME, ...). */
int mpos_bench_hsmd_pin_translate(const char *hsmd_path, double seconds, unsigned connections,
                                  double *rate, double *wall_rate);

#endif
