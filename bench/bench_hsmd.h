/* mpos-bench, hsmd section: throughput through mpos-hsmd's socket (bench/bench_hsmd.c). */
#ifndef MPOS_BENCH_HSMD_H
#define MPOS_BENCH_HSMD_H

#define MPOS_BENCH_HSMD_NAME "hsmd-pin-translate"

/* Starts mpos-hsmd (hsmd_path; its default of 2 worker threads) on sockets in a temporary
 * directory, and measures DUKPT-PIN-to-ZPK translations (AES DUKPT, worst-case counters with
 * 16 one-bits, format 4 to an AES ZPK) over `connections` client connections, each its own
 * thread, for `seconds`. Stops hsmd. 0, or -1.
 *
 * *rate is the figure of the goal, per 2 cores: translations per second of CPU time spent by
 * hsmd and the client threads together, times 2, so that other work on the machine does not
 * count against it (the clients' own CPU counts: conservative). *wall_rate is the plain
 * translations per wall-clock second on this machine as loaded at the time. */
int mpos_bench_hsmd_pin_translate(const char *hsmd_path, double seconds, unsigned connections,
                                  double *rate, double *wall_rate);

#endif
