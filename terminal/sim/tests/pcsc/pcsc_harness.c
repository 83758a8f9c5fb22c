/* mpos-pcsc-harness: runs one command against a real pcscd whose only readers are the two
 * vpcd slots of an mpos-cardsim, and leaves nothing behind.
 *
 *   mpos-pcsc-harness --cardsim PATH --preload PATH [--cards PATH] [--card SPEC]...
 *                     [--port N] [--timeout SECONDS] [--lock-wait SECONDS]
 *                     -- COMMAND [ARGS...]
 *
 * Steps (each checked; the first failure stops everything started so far, by pid):
 *   1. Root is required (pcscd runs as root and always uses /run/pcscd, one per machine):
 *      otherwise exit 77 (ctest SKIP_RETURN_CODE) with the reason. So are pcscd and the vpcd
 *      driver of Debian's vsmartcard-vpcd 3.3 (scripts/install-deps), else exit 77.
 *   2. One harness at a time per machine: it waits up to --lock-wait seconds (30) for an
 *      exclusive flock() on the pcscd binary (no lock file is created; the lock goes with
 *      the process). ctest's RESOURCE_LOCK pcscd only orders the tests of one ctest run.
 *      Then no other pcscd may run: a process named pcscd (after 5 s of grace for one that
 *      is exiting), or a listening /run/pcscd/pcscd.comm (a systemd socket unit, say),
 *      makes it refuse (exit 3) and touch nothing: it never stops a pcscd it did not start.
 *   3. A private directory (mkdtemp under $TMPDIR or /tmp) gets reader.conf (vpcd in reversed
 *      mode on 127.0.0.1:<port>, the two slots <port> and <port>+1), the logs and the
 *      control socket of mpos-cardsim.
 *   4. mpos-cardsim starts first (--card SPECs, --control), and the harness waits until both
 *      ports listen (its "ready" line, then /proc/net/tcp): the vpcd driver must find them
 *      when pcscd starts, or pcscd aborts.
 *   5. pcscd starts: `pcscd --foreground --config <reader.conf> --auto-exit`, with
 *      LD_PRELOAD=<preload> (libmpos_vpcd_preload.so: the driver's reconnection fix). The
 *      --config file replaces /etc/reader.conf.d (the system's vpcd entry, which listens on
 *      every interface, is not loaded); --auto-exit makes a pcscd that outlives us quit after
 *      60 s without clients. Both children get PR_SET_PDEATHSIG (SIGTERM) and their own
 *      process group.
 *   6. It waits until pcscd lists both readers ("mpos vpcd 00 00", "mpos vpcd 00 01").
 *   7. COMMAND runs with MPOS_CARDSIM_CONTROL (the control socket), MPOS_PCSC_READER_0 and
 *      _1 (the reader names) and MPOS_PCSC_HARNESS=1 in its environment, for at most
 *      --timeout seconds (45).
 *   8. pcscd is stopped (SIGTERM, SIGKILL after 5 s), then mpos-cardsim (in that order: the
 *      driver must not lose the card emulator while pcscd runs), both by pid, and reaped. The
 *      harness then checks that neither pid exists any more, that no child of its own is left
 *      and that no pcscd process runs; it removes /run/pcscd/pcscd.comm and pcscd.pid if
 *      pcscd left them (only when they were not there before it started) and /run/pcscd if
 *      it created the directory, then its private directory.
 * Exit status: COMMAND's, or 77 (skipped), 3 (refused), 4 (set-up failed), 5 (a process or
 * file was left behind).
 */
#define _GNU_SOURCE /* prctl, setenv */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <winscard.h>

#define EXIT_SKIP     77
#define EXIT_REFUSED  3
#define EXIT_SETUP    4
#define EXIT_LEFTOVER 5

#define PCSCD       "/usr/sbin/pcscd"
#define VPCD_DRIVER "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
#define VPCD_BUILD  "libifdvpcd.so.0.8" /* vsmartcard 3.3: what the preload library fixes */
#define RUN_DIR     "/run/pcscd"
#define RUN_COMM    "/run/pcscd/pcscd.comm"
#define RUN_PID     "/run/pcscd/pcscd.pid"
#define READER_NAME "mpos vpcd"

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mpos-pcsc-harness: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The pid of a running process whose name (/proc/<pid>/comm) is name, other than skip; 0 when
 * there is none. */
static pid_t find_process(const char *name, pid_t skip)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    if (d == NULL) {
        return 0;
    }
    while (found == 0 && (e = readdir(d)) != NULL) {
        char path[64], comm[64];
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        FILE *f;
        if (*end != '\0' || pid <= 0 || (pid_t)pid == skip) {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        if ((f = fopen(path, "r")) == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), f) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
            if (strcmp(comm, name) == 0) {
                /* A zombie is not running: skip it. */
                char st[256];
                FILE *s;
                snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
                if ((s = fopen(path, "r")) != NULL) {
                    if (fgets(st, sizeof(st), s) != NULL) {
                        char *p = strrchr(st, ')');
                        if (p != NULL && p[1] == ' ' && p[2] != 'Z') {
                            found = (pid_t)pid;
                        }
                    }
                    fclose(s);
                }
            }
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* 1 if some process is a child of ours (/proc/<pid>/stat field 4). */
static pid_t find_child(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t me = getpid(), found = 0;
    if (d == NULL) {
        return 0;
    }
    while (found == 0 && (e = readdir(d)) != NULL) {
        char path[64], st[512];
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        FILE *f;
        if (*end != '\0' || pid <= 0) {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        if ((f = fopen(path, "r")) == NULL) {
            continue;
        }
        if (fgets(st, sizeof(st), f) != NULL) {
            char *p = strrchr(st, ')');
            long ppid = 0;
            char state = 0;
            if (p != NULL && sscanf(p + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)me) {
                found = (pid_t)pid;
            }
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* 1 if a Unix socket bound to path is listening (/proc/net/unix: state 01, flags with
 * __SO_ACCEPTCON), without connecting to it (a connection could start a socket-activated
 * pcscd). */
static int unix_listening(const char *path)
{
    FILE *f = fopen("/proc/net/unix", "r");
    char line[512];
    int found = 0;
    if (f == NULL) {
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        unsigned long flags = 0, type = 0, state = 0;
        char p[256] = "";
        if (sscanf(line, "%*s %*s %*s %lx %lx %lx %*s %255s", &flags, &type, &state, p) == 4 &&
            strcmp(p, path) == 0 && (flags & 0x10000ul) != 0) {
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* 1 if 127.0.0.1:port is in LISTEN state (/proc/net/tcp, state 0A). */
static int tcp_listening(unsigned port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    int found = 0;
    if (f == NULL) {
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        unsigned addr = 0, p = 0, st = 0;
        /* "sl: local_address rem_address st": the address is the in-memory 32-bit value. */
        if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X", &addr, &p, &st) == 3 && p == port &&
            st == 0x0A) {
            const uint8_t *b = (const uint8_t *)&addr;
            if (b[0] == 127 && b[1] == 0 && b[2] == 0 && b[3] == 1) {
                found = 1;
            }
        }
    }
    fclose(f);
    return found;
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[512];
    int found = 0;
    if (f == NULL) {
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* 1 if the (binary) file of at most 1 MiB holds needle. */
static int binary_contains(const char *path, const char *needle)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void print_tail(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (f == NULL) {
        return;
    }
    say("--- %s (%s) ---", what, path);
    while (fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr);
    }
    fclose(f);
    say("--- end of %s ---", what);
}

/* fork + exec with stdout and stderr to log (or inherited when log is NULL), its own process
 * group and SIGTERM when we die. */
static pid_t spawn(char *const argv[], const char *log, char *const extra_env[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0) {
            (void)setpgid(pid, pid); /* both sides: no race with exec */
        }
        return pid;
    }
    (void)setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
        _exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (log != NULL) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        (void)dup2(devnull, 0);
        (void)close(devnull);
    }
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL; i += 2) {
        if (setenv(extra_env[i], extra_env[i + 1], 1) != 0) {
            _exit(127);
        }
    }
    execv(argv[0], argv);
    _exit(127);
}

/* Waits up to ms for pid; 1 with *status when it ended, 0 when it still runs. */
static int wait_for(pid_t pid, unsigned ms, int *status)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            return 1;
        }
        if (now_ms() >= end) {
            return 0;
        }
        sleep_ms(10);
    }
}

/* SIGTERM, then SIGKILL after grace_ms; reaps. Returns 1 if SIGKILL was needed. */
static int stop(pid_t pid, const char *what, unsigned grace_ms)
{
    int status = 0;
    if (pid <= 0) {
        return 0;
    }
    if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
        (void)wait_for(pid, 100, &status);
        return 0;
    }
    if (wait_for(pid, grace_ms, &status)) {
        return 0;
    }
    say("%s (pid %ld) did not stop on SIGTERM: SIGKILL", what, (long)pid);
    (void)kill(pid, SIGKILL);
    (void)wait_for(pid, 2000, &status);
    return 1;
}

/* 1 once pcscd lists both readers. */
static int readers_ready(void)
{
    SCARDCONTEXT sc;
    char buf[2048];
    DWORD len = sizeof(buf);
    int n = 0;
    if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &sc) != SCARD_S_SUCCESS) {
        return 0;
    }
    if (SCardListReaders(sc, NULL, buf, &len) == SCARD_S_SUCCESS && len <= sizeof(buf)) {
        for (size_t off = 0; off < len && buf[off] != '\0'; off += strlen(&buf[off]) + 1) {
            if (strcmp(&buf[off], READER_NAME " 00 00") == 0 ||
                strcmp(&buf[off], READER_NAME " 00 01") == 0) {
                n++;
            }
        }
    }
    (void)SCardReleaseContext(sc);
    return n == 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: mpos-pcsc-harness --cardsim PATH --preload PATH [--cards PATH]\n"
                    "                         [--card SPEC]... [--port N] [--timeout SECONDS]\n"
                    "                         [--lock-wait SECONDS]\n"
                    "                         -- COMMAND [ARGS...]\n");
}

int main(int argc, char **argv)
{
    const char *cardsim = NULL, *preload = NULL, *cards = NULL;
    const char *card_specs[8];
    size_t ncards = 0;
    unsigned long port = 35963, timeout_s = 45, lock_wait_s = 30;
    char **command = NULL;
    char dir[PATH_MAX], conf[PATH_MAX + 32], ctl[PATH_MAX + 32], plog[PATH_MAX + 32],
        clog[PATH_MAX + 32];
    pid_t sim_pid = 0, pcscd_pid = 0, test_pid = 0, sim_was = 0, pcscd_was = 0;
    int had_run_dir, had_comm, had_pid, rc = EXIT_SETUP, made_dir = 0, status = 0;
    int started_pcscd = 0;
    struct sigaction sa;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            command = &argv[i + 1];
            break;
        }
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        if (strcmp(argv[i], "--cardsim") == 0) {
            cardsim = argv[++i];
        } else if (strcmp(argv[i], "--preload") == 0) {
            preload = argv[++i];
        } else if (strcmp(argv[i], "--cards") == 0) {
            cards = argv[++i];
        } else if (strcmp(argv[i], "--card") == 0 && ncards < 8) {
            card_specs[ncards++] = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--timeout") == 0) {
            timeout_s = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--lock-wait") == 0) {
            lock_wait_s = strtoul(argv[++i], NULL, 10);
        } else {
            usage();
            return 2;
        }
    }
    if (cardsim == NULL || preload == NULL || command == NULL || command[0] == NULL || port == 0 ||
        port > 65534 || timeout_s == 0 || timeout_s > 3600) {
        usage();
        return 2;
    }

    /* 1. What pcscd needs. */
    if (geteuid() != 0) {
        say("SKIP: needs root (pcscd runs as root and always uses %s, one per machine); run "
            "the test as root, as CI does",
            RUN_DIR);
        return EXIT_SKIP;
    }
    char real[PATH_MAX];
    if (access(PCSCD, X_OK) != 0 || realpath(VPCD_DRIVER, real) == NULL) {
        say("SKIP: %s or %s missing (packages pcscd, vsmartcard-vpcd: scripts/install-deps)", PCSCD,
            VPCD_DRIVER);
        return EXIT_SKIP;
    }
    const char *base = strrchr(real, '/');
    if (base == NULL || strcmp(base + 1, VPCD_BUILD) != 0 ||
        !binary_contains(real, "vicc_connect")) {
        say("SKIP: %s is %s, not the vsmartcard 3.3 driver (%s) whose reconnection the preload "
            "library fixes",
            VPCD_DRIVER, real, VPCD_BUILD);
        return EXIT_SKIP;
    }
    /* Absolute paths: LD_PRELOAD and exec must not depend on the working directory. */
    static char cardsim_abs[PATH_MAX], preload_abs[PATH_MAX];
    if (realpath(cardsim, cardsim_abs) == NULL || realpath(preload, preload_abs) == NULL ||
        access(cardsim_abs, X_OK) != 0 || access(preload_abs, R_OK) != 0) {
        say("%s or %s missing: build them first", cardsim, preload);
        return EXIT_SETUP;
    }
    cardsim = cardsim_abs;
    preload = preload_abs;

    /* 2. One harness at a time on the machine (ctest's RESOURCE_LOCK covers one ctest run
     * only; two build folders may test at once): an advisory lock on the pcscd binary, which
     * creates no file and goes with the process, however it ends. */
    int lock_fd = open(PCSCD, O_RDONLY | O_CLOEXEC);
    if (lock_fd < 0) {
        say("%s: %s", PCSCD, strerror(errno));
        return EXIT_SETUP;
    }
    {
        uint64_t end = now_ms() + lock_wait_s * 1000u;
        int said = 0;
        while (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            if (now_ms() > end) {
                say("REFUSED: another mpos-pcsc-harness still runs after %lu s", lock_wait_s);
                return EXIT_REFUSED;
            }
            if (!said) {
                say("waiting (up to %lu s) for another mpos-pcsc-harness to finish", lock_wait_s);
                said = 1;
            }
            sleep_ms(100);
        }
    }

    /* 2, continued: nobody else's pcscd (one exiting after a harness was killed gets 5 s). */
    pid_t other = find_process("pcscd", 0);
    for (uint64_t end = now_ms() + 5000; other != 0 && now_ms() < end;) {
        sleep_ms(100);
        other = find_process("pcscd", 0);
    }
    if (other != 0) {
        say("REFUSED: a pcscd is already running (pid %ld). This test starts its own pcscd "
            "and never stops one it did not start: stop that one yourself (e.g. systemctl "
            "stop pcscd.socket pcscd.service) or run the test on another machine",
            (long)other);
        return EXIT_REFUSED;
    }
    if (unix_listening(RUN_COMM)) {
        say("REFUSED: %s is listening (a socket-activated pcscd: systemctl stop "
            "pcscd.socket); not touching it",
            RUN_COMM);
        return EXIT_REFUSED;
    }
    had_run_dir = exists(RUN_DIR);
    had_comm = exists(RUN_COMM);
    had_pid = exists(RUN_PID);
    if (had_comm && !had_pid) {
        say("REFUSED: %s exists without %s and no pcscd runs: a leftover that pcscd will not "
            "replace; remove it if you know no pcscd uses it",
            RUN_COMM, RUN_PID);
        return EXIT_REFUSED;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* 3. Our private directory and reader.conf. */
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/mpos-pcsc.XXXXXX", tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        say("mkdtemp: %s", strerror(errno));
        return EXIT_SETUP;
    }
    snprintf(conf, sizeof(conf), "%s/reader.conf", dir);
    snprintf(ctl, sizeof(ctl), "%s/cardsim.sock", dir);
    snprintf(plog, sizeof(plog), "%s/pcscd.log", dir);
    snprintf(clog, sizeof(clog), "%s/cardsim.log", dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        say("%s: %s", conf, strerror(errno));
        goto cleanup;
    }
    /* vpcd in reversed mode: DEVICENAME <host>:<port> makes the driver connect to the card
     * emulator there (slot i on <port> + i); CHANNELID is then unused. */
    fprintf(f,
            "# openmpos test pcscd: the vpcd driver connects to mpos-cardsim on 127.0.0.1\n"
            "FRIENDLYNAME \"%s\"\n"
            "DEVICENAME   127.0.0.1:%lu\n"
            "LIBPATH      %s\n"
            "CHANNELID    %lu\n",
            READER_NAME, port, VPCD_DRIVER, port);
    if (fclose(f) != 0) {
        goto cleanup;
    }
    say("reader.conf %s: FRIENDLYNAME \"%s\", DEVICENAME 127.0.0.1:%lu, LIBPATH %s, CHANNELID %lu",
        conf, READER_NAME, port, VPCD_DRIVER, port);

    /* 4. The card emulator, listening before pcscd starts. */
    {
        char port_s[16];
        char *av[32];
        size_t n = 0;
        snprintf(port_s, sizeof(port_s), "%lu", port);
        av[n++] = (char *)cardsim;
        av[n++] = "--port";
        av[n++] = port_s;
        av[n++] = "--control";
        av[n++] = ctl;
        if (cards != NULL) {
            av[n++] = "--cards";
            av[n++] = (char *)cards;
        }
        for (size_t i = 0; i < ncards; i++) {
            av[n++] = "--card";
            av[n++] = (char *)card_specs[i];
        }
        av[n] = NULL;
        sim_pid = spawn(av, clog, NULL);
        if (sim_pid < 0) {
            say("fork: %s", strerror(errno));
            sim_pid = 0;
            goto cleanup;
        }
        uint64_t end = now_ms() + 5000;
        while (!(file_contains(clog, "mpos-cardsim: ready") && tcp_listening((unsigned)port) &&
                 tcp_listening((unsigned)port + 1))) {
            if (waitpid(sim_pid, &status, WNOHANG) == sim_pid) {
                say("mpos-cardsim exited during start-up (status %d)", status);
                sim_pid = 0;
                print_tail("mpos-cardsim output", clog);
                goto cleanup;
            }
            if (now_ms() > end || g_signal) {
                say("mpos-cardsim did not come up within 5 s");
                print_tail("mpos-cardsim output", clog);
                goto cleanup;
            }
            sleep_ms(10);
        }
        sim_was = sim_pid;
        say("mpos-cardsim pid %ld listens on 127.0.0.1:%lu and :%lu", (long)sim_pid, port,
            port + 1);
    }

    /* 5. pcscd, with only our reader.conf. */
    {
        char *av[] = {PCSCD, "--foreground", "--config", conf, "--auto-exit", NULL};
        char *env[] = {"LD_PRELOAD", (char *)preload, NULL};
        pcscd_pid = spawn(av, plog, env);
        if (pcscd_pid < 0) {
            say("fork: %s", strerror(errno));
            pcscd_pid = 0;
            goto cleanup;
        }
        started_pcscd = 1;
        pcscd_was = pcscd_pid;
        say("pcscd pid %ld: %s --foreground --config %s --auto-exit (LD_PRELOAD=%s)",
            (long)pcscd_pid, PCSCD, conf, preload);
    }

    /* 6. Both readers. */
    {
        uint64_t end = now_ms() + 10000;
        while (!readers_ready()) {
            if (waitpid(pcscd_pid, &status, WNOHANG) == pcscd_pid) {
                say("pcscd exited during start-up (status %d)", status);
                pcscd_pid = 0;
                print_tail("pcscd log", plog);
                goto cleanup;
            }
            if (now_ms() > end || g_signal) {
                say("pcscd did not list the readers within 10 s");
                print_tail("pcscd log", plog);
                goto cleanup;
            }
            sleep_ms(20);
        }
        say("readers \"%s 00 00\" and \"%s 00 01\" are up", READER_NAME, READER_NAME);
    }

    /* 7. The test. */
    {
        char r0[64], r1[64];
        snprintf(r0, sizeof(r0), "%s 00 00", READER_NAME);
        snprintf(r1, sizeof(r1), "%s 00 01", READER_NAME);
        char *env[] = {"MPOS_CARDSIM_CONTROL",
                       ctl,
                       "MPOS_PCSC_READER_0",
                       r0,
                       "MPOS_PCSC_READER_1",
                       r1,
                       "MPOS_PCSC_HARNESS",
                       "1",
                       NULL};
        test_pid = spawn(command, NULL, env);
        if (test_pid < 0) {
            say("fork: %s", strerror(errno));
            test_pid = 0;
            goto cleanup;
        }
        uint64_t end = now_ms() + timeout_s * 1000u;
        for (;;) {
            pid_t r = waitpid(test_pid, &status, WNOHANG);
            if (r == test_pid) {
                test_pid = 0;
                rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (g_signal || now_ms() > end) {
                say(g_signal ? "signal %d: stopping" : "the test ran over %lu s: stopping",
                    g_signal ? (unsigned long)g_signal : timeout_s);
                (void)stop(test_pid, "the test", 2000);
                test_pid = 0;
                rc = 124;
                break;
            }
            if (pcscd_pid > 0 && waitpid(pcscd_pid, &status, WNOHANG) == pcscd_pid) {
                say("pcscd died during the test (status %d)", status);
                pcscd_pid = 0;
            }
            sleep_ms(10);
        }
        if (rc != 0) {
            print_tail("pcscd log", plog);
            print_tail("mpos-cardsim output", clog);
        }
    }

cleanup:
    /* 8. Stop what we started, pcscd first, by pid. */
    if (test_pid > 0) {
        (void)stop(test_pid, "the test", 2000);
    }
    if (pcscd_pid > 0) {
        if (stop(pcscd_pid, "pcscd", 5000) && rc == 0) {
            rc = EXIT_LEFTOVER;
        }
    }
    if (sim_pid > 0) {
        if (stop(sim_pid, "mpos-cardsim", 5000) && rc == 0) {
            rc = EXIT_LEFTOVER;
        }
    }
    {
        int left = 0;
        pid_t p;
        if (pcscd_pid > 0 && (kill(pcscd_pid, 0) == 0 || errno != ESRCH)) {
            say("LEFT BEHIND: pcscd pid %ld still exists", (long)pcscd_pid);
            left = 1;
        }
        if (sim_pid > 0 && (kill(sim_pid, 0) == 0 || errno != ESRCH)) {
            say("LEFT BEHIND: mpos-cardsim pid %ld still exists", (long)sim_pid);
            left = 1;
        }
        if ((p = find_child()) != 0) {
            say("LEFT BEHIND: child process %ld", (long)p);
            left = 1;
        }
        if ((p = find_process("pcscd", 0)) != 0) {
            say("LEFT BEHIND: a pcscd runs (pid %ld)", (long)p);
            left = 1;
        }
        if (started_pcscd) {
            /* pcscd removes its files on a clean exit; after a SIGKILL they stay. */
            if (!had_comm && exists(RUN_COMM)) {
                (void)unlink(RUN_COMM);
            }
            if (!had_pid && exists(RUN_PID)) {
                (void)unlink(RUN_PID);
            }
            if (!had_run_dir && exists(RUN_DIR)) {
                made_dir = 1;
                if (rmdir(RUN_DIR) != 0) {
                    say("LEFT BEHIND: %s is not empty", RUN_DIR);
                    left = 1;
                }
            }
        }
        if (left && (rc == 0 || rc == EXIT_SETUP)) {
            rc = EXIT_LEFTOVER;
        }
        if (!left && started_pcscd) {
            say("stopped pcscd (pid %ld) and mpos-cardsim (pid %ld); no process left%s",
                (long)pcscd_was, (long)sim_was, made_dir ? ", " RUN_DIR " removed" : "");
        }
    }
    (void)unlink(conf);
    (void)unlink(plog);
    (void)unlink(clog);
    (void)unlink(ctl);
    (void)rmdir(dir);
    return rc;
}
