/* mpos-host: the cashier app on the command line (docs/host.md, docs/man/mpos-host.1).
 *
 *   mpos-host [--config FILE] [--terminal unix:PATH|tcp:HOST:PORT] [--backend HOST:PORT]
 *             [--ca FILE] [--server-name NAME] [--state FILE] [--location LAT,LON[,ACC]]
 *             <command> [options]
 *
 * Prompts the terminal shows go to stderr as they happen; the receipt (or the command's
 * result) goes to stdout. Exit status: 0 approved / done, 1 declined / failed, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mpos/util.h"
#include "mposhost.h"
#include "mposhost_gps.h"

#define PROG "mpos-host"

static const char usage_text[] =
    "usage: mpos-host [--config FILE] [--terminal unix:PATH|tcp:HOST:PORT]\n"
    "                 [--backend HOST:PORT] [--ca FILE] [--server-name NAME]\n"
    "                 [--state FILE] [--location LAT,LON[,ACC]]\n"
    "                 [--gpsd HOST:PORT] [--no-gpsd] <command> [options]\n"
    "\n"
    "commands:\n"
    "  login [--merchant M] [--user U] [--password-file FILE]\n"
    "                                password: MPOS_HOST_PASSWORD, the file, or the TTY\n"
    "  activate --code C             activate the terminal with its activation code\n"
    "  sale --amount 12.34 [--currency 156]\n"
    "  void --ref RRN [--amount A] [--currency 156]\n"
    "  refund --ref RRN --amount A [--currency 156]\n"
    "  balance [--currency 156]\n"
    "  settle                        settlement totals (supervisor)\n"
    "  logout                        revoke the session and forget it\n"
    "  info                          the terminal's serial, firmware and state\n"
    "  location                      the location messages would carry, and its source\n"
    "\n"
    "exit status: 0 approved / done, 1 declined / failed, 2 usage\n";

struct cfg {
    char *config, *terminal, *backend, *ca, *server_name, *state, *location, *app_key;
    char *gpsd;            /* HOST:PORT, or "off" */
    int no_gpsd;           /* --no-gpsd */
    char *merchant, *user; /* login defaults from [host] */
};

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
}

/* [backend] address, ca, server_name; [terminal] link; [host] state, location, app_key,
 * merchant, user. Command-line options win: only empty slots are filled. */
static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct cfg *c = user;
    char **dst = NULL;
    if (strcmp(section, "backend") == 0) {
        if (strcmp(name, "address") == 0) {
            dst = &c->backend;
        } else if (strcmp(name, "ca") == 0) {
            dst = &c->ca;
        } else if (strcmp(name, "server_name") == 0) {
            dst = &c->server_name;
        }
    } else if (strcmp(section, "terminal") == 0) {
        if (strcmp(name, "link") == 0) {
            dst = &c->terminal;
        }
    } else if (strcmp(section, "host") == 0) {
        if (strcmp(name, "state") == 0) {
            dst = &c->state;
        } else if (strcmp(name, "location") == 0) {
            dst = &c->location;
        } else if (strcmp(name, "gpsd") == 0) {
            dst = &c->gpsd;
        } else if (strcmp(name, "app_key") == 0) {
            dst = &c->app_key;
        } else if (strcmp(name, "merchant") == 0) {
            dst = &c->merchant;
        } else if (strcmp(name, "user") == 0) {
            dst = &c->user;
        }
    }
    if (dst == NULL) {
        fprintf(stderr, PROG ": config: unknown key [%s] %s\n", section, name);
        return 0;
    }
    if (*dst == NULL) {
        set_str(dst, value);
    }
    return 1;
}

/* "LAT,LON[,ACC]" in decimal degrees and metres. */
static int parse_location(const char *s, struct mposhost_config *hc)
{
    char *end = NULL;
    double lat, lon, acc = 0;
    errno = 0;
    lat = strtod(s, &end);
    if (errno != 0 || end == s || *end != ',') {
        return -1;
    }
    s = end + 1;
    lon = strtod(s, &end);
    if (errno != 0 || end == s || (*end != ',' && *end != '\0')) {
        return -1;
    }
    if (*end == ',') {
        s = end + 1;
        acc = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0') {
            return -1;
        }
    }
    if (!(lat >= -90.0 && lat <= 90.0) || !(lon >= -180.0 && lon <= 180.0) ||
        !(acc >= 0 && acc <= 1000000.0)) {
        return -1;
    }
    hc->lat_e7 = (int32_t)lround(lat * 1e7);
    hc->lon_e7 = (int32_t)lround(lon * 1e7);
    hc->accuracy_m = (uint32_t)lround(acc);
    hc->have_location = 1;
    return 0;
}

/* Why gpsd gave no location (one line, for the refusal), empty when it was not asked. */
static char gps_note[256];

/* H-GEO-1, the last source: a gpsd fix when neither --location nor [host] location gave one.
 * 0 and hc filled, or -1 and gps_note saying why not. */
static int location_from_gpsd(const struct cfg *c, struct mposhost_config *hc)
{
    if (c->no_gpsd || (c->gpsd != NULL && strcmp(c->gpsd, "off") == 0)) {
        snprintf(gps_note, sizeof(gps_note), "gpsd disabled (--no-gpsd or [host] gpsd = off)");
        return -1;
    }
#ifdef MPOSHOST_HAVE_GPSD
    {
        struct mposhost_fix fix;
        if (mposhost_gps_fix(c->gpsd, 0, &fix, gps_note, sizeof(gps_note)) != MPOS_OK) {
            return -1;
        }
        mposhost_gps_apply(&fix, hc);
        return 0;
    }
#else
    (void)hc;
    snprintf(gps_note, sizeof(gps_note), "gpsd is not supported in this build (no libgps)");
    return -1;
#endif
}

/* 1e-7 degrees as a decimal ("-33.8688197"). */
static void print_e7(const char *sep, int32_t v)
{
    int64_t a = v < 0 ? -(int64_t)v : (int64_t)v;
    printf("%s%s%lld.%07lld", sep, v < 0 ? "-" : "", (long long)(a / 10000000),
           (long long)(a % 10000000));
}

/* `location`: the location every message would carry now, and where it comes from (for
 * operators checking a set-up: nothing is sent anywhere). nargs: words after the command. */
static int cmd_location(const struct cfg *c, struct mposhost_config *hc, const char *src, int nargs)
{
    char gsrc[300];
    if (nargs != 0) {
        return usage();
    }
    if (!hc->have_location) {
        if (location_from_gpsd(c, hc) != 0) {
            fprintf(stderr, PROG ": location: none: no --location or [host] location; %s\n",
                    gps_note);
            return 1;
        }
        snprintf(gsrc, sizeof(gsrc), "gpsd %s", c->gpsd != NULL ? c->gpsd : "localhost:2947");
        src = gsrc;
    }
    print_e7("location: ", hc->lat_e7);
    print_e7(",", hc->lon_e7);
    printf("\n");
    if (hc->accuracy_m != 0) {
        printf("accuracy: %u m\n", (unsigned)hc->accuracy_m);
    } else {
        printf("accuracy: not stated\n");
    }
    if (hc->loc_time != 0) {
        printf("time:     %llu (the fix's)\n", (unsigned long long)hc->loc_time);
    } else {
        printf("time:     each message's own\n");
    }
    printf("source:   %s\n", src);
    return 0;
}

static char *default_state(void)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char dir[4096];
    char *path;
    if (xdg != NULL && xdg[0] == '/') {
        snprintf(dir, sizeof(dir), "%s/mpos-host", xdg);
    } else if (home != NULL && home[0] == '/') {
        snprintf(dir, sizeof(dir), "%s/.local/state/mpos-host", home);
    } else {
        return NULL;
    }
    /* Parents as the XDG spec wants them; ours 0700 (the token lives there). */
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            (void)mkdir(dir, 0700);
            *p = '/';
        }
    }
    (void)mkdir(dir, 0700);
    path = malloc(strlen(dir) + 7);
    if (path != NULL) {
        sprintf(path, "%s/state", dir);
    }
    return path;
}

static const char *prompt_text(unsigned id)
{
    static const char *const t[] = {
        "",
        "welcome",
        "terminal not activated",
        "activating",
        "activated",
        "confirm amount on the reader",
        "insert, tap or swipe card",
        "use the chip",
        "chip error: swipe the card",
        "enter PIN on the reader",
        "wrong PIN",
        "processing",
        "approved",
        "declined",
        "cancelled",
        "remove card",
        "card error",
        "no response",
        "card expired",
    };
    return id < sizeof(t) / sizeof(t[0]) ? t[id] : "?";
}

static void on_prompt(void *ctx, const struct mposhost_prompt *p)
{
    (void)ctx;
    if (p->id == 10) {
        fprintf(stderr, "[reader] %s (%u tries left)\n", prompt_text(p->id), (unsigned)p->count);
    } else if (p->id == 5 || p->id == 9 || p->id == 12) {
        char amt[32];
        mposhost_format_amount(p->amount, mposhost_currency_exponent(p->currency), amt,
                               sizeof(amt));
        fprintf(stderr, "[reader] %s: %s %03u\n", prompt_text(p->id), amt, (unsigned)p->currency);
    } else {
        fprintf(stderr, "[reader] %s\n", prompt_text(p->id));
    }
}

static void on_progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static const char *type_name(unsigned t)
{
    switch (t) {
    case 1:
        return "SALE";
    case 2:
        return "VOID";
    case 3:
        return "REFUND";
    case 4:
        return "BALANCE";
    default:
        return "-";
    }
}

static const char *outcome_name(unsigned o)
{
    static const char *const t[] = {
        "?",          "APPROVED",  "DECLINED",         "CANCELLED", "NO RESPONSE (reversed)",
        "CARD ERROR", "ACTIVATED", "ACTIVATION FAILED"};
    return o < 8 ? t[o] : "?";
}

static void print_receipt(const struct mposhost_receipt *r, const char *merchant)
{
    char amt[32];
    mposhost_format_amount(r->amount, mposhost_currency_exponent(r->currency), amt, sizeof(amt));
    printf("merchant:      %s\n", r->merchant_id[0] ? r->merchant_id : merchant);
    printf("terminal:      %s\n", r->terminal_id[0] ? r->terminal_id : "-");
    printf("card:          %s\n", r->masked_pan[0] ? r->masked_pan : "-");
    printf("type:          %s\n", type_name(r->txn_type));
    printf("amount:        %s %03u\n", amt, (unsigned)r->currency);
    printf("sequence:      %u\n", (unsigned)r->sequence);
    printf("auth code:     %s\n", r->auth_code[0] ? r->auth_code : "-");
    printf("rrn:           %s\n", r->rrn[0] ? r->rrn : "-");
    printf("response code: %s\n", r->response_code[0] ? r->response_code : "-");
    printf("result:        %s\n", outcome_name(r->outcome));
}

static int fail(mposhost *h, const char *what, int rc)
{
    const char *m = h != NULL ? mposhost_message(h) : "";
    /* A missing location says why gpsd gave none, on the same line. */
    int gps = rc == MPOSHOST_ERR_CONFIG && gps_note[0] != '\0' && strstr(m, "no location");
    fprintf(stderr, PROG ": %s: %s%s%s%s%s\n", what, mposhost_strerror(rc), m[0] ? ": " : "", m,
            gps ? "; " : "", gps ? gps_note : "");
    return 1;
}

/* The password: MPOS_HOST_PASSWORD, --password-file, or the TTY without echo. */
static int read_password(const char *file, char *out, size_t cap)
{
    const char *env = getenv("MPOS_HOST_PASSWORD");
    size_t n;
    if (file != NULL) {
        FILE *f = fopen(file, "r");
        if (f == NULL) {
            fprintf(stderr, PROG ": cannot read %s\n", file);
            return -1;
        }
        if (fgets(out, (int)cap, f) == NULL) {
            out[0] = '\0';
        }
        fclose(f);
    } else if (env != NULL) {
        snprintf(out, cap, "%s", env);
    } else {
        struct termios old, quiet;
        FILE *tty = fopen("/dev/tty", "r+");
        if (tty == NULL) {
            fprintf(stderr, PROG ": no password (MPOS_HOST_PASSWORD, --password-file or a TTY)\n");
            return -1;
        }
        fputs("password: ", tty);
        fflush(tty);
        tcgetattr(fileno(tty), &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        if (fgets(out, (int)cap, tty) == NULL) {
            out[0] = '\0';
        }
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
        fputs("\n", tty);
        fclose(tty);
    }
    n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
        out[--n] = '\0';
    }
    if (n == 0) {
        fprintf(stderr, PROG ": empty password\n");
        return -1;
    }
    return 0;
}

/* Command options: --name value pairs from argv[i..]. */
struct copts {
    const char *merchant, *user, *password_file, *code, *amount, *currency, *ref;
};

static int parse_copts(int argc, char **argv, int i, struct copts *o, const char *allowed)
{
    memset(o, 0, sizeof(*o));
    for (; i < argc; i += 2) {
        const char **dst = NULL;
        const char *n = argv[i];
        if (strncmp(n, "--", 2) != 0 || strstr(allowed, n + 2) == NULL) {
            return -1;
        }
        if (strcmp(n, "--merchant") == 0) {
            dst = &o->merchant;
        } else if (strcmp(n, "--user") == 0) {
            dst = &o->user;
        } else if (strcmp(n, "--password-file") == 0) {
            dst = &o->password_file;
        } else if (strcmp(n, "--code") == 0) {
            dst = &o->code;
        } else if (strcmp(n, "--amount") == 0) {
            dst = &o->amount;
        } else if (strcmp(n, "--currency") == 0) {
            dst = &o->currency;
        } else if (strcmp(n, "--ref") == 0) {
            dst = &o->ref;
        }
        if (dst == NULL || *dst != NULL || i + 1 >= argc) {
            return -1;
        }
        *dst = argv[i + 1];
    }
    return 0;
}

static int parse_currency(const char *s, uint16_t *cur)
{
    if (s == NULL) {
        *cur = 156; /* CNY */
        return 0;
    }
    if (!mpos_digits_valid(s, 3, 3) || atoi(s) < 1) {
        return -1;
    }
    *cur = (uint16_t)atoi(s);
    return 0;
}

static int run_txn(mposhost *h, enum mposhost_txn_type type, const struct copts *o)
{
    struct mposhost_session s;
    struct mposhost_receipt r;
    uint64_t amount = 0;
    uint16_t cur = 0;
    int rc;
    if (parse_currency(o->currency, &cur) != 0) {
        fprintf(stderr, PROG ": --currency: ISO 4217 numeric, 3 digits\n");
        return 2;
    }
    if (type == MPOSHOST_SALE || type == MPOSHOST_REFUND) {
        if (o->amount == NULL ||
            mposhost_parse_amount(o->amount, mposhost_currency_exponent(cur), &amount) != MPOS_OK ||
            amount == 0) {
            fprintf(stderr, PROG ": --amount: a positive decimal amount with %u decimals\n",
                    mposhost_currency_exponent(cur));
            return 2;
        }
    }
    if ((type == MPOSHOST_VOID || type == MPOSHOST_REFUND) && o->ref == NULL) {
        fprintf(stderr, PROG ": --ref RRN is required\n");
        return 2;
    }
    if (mposhost_session_get(h, &s) != MPOS_OK) {
        memset(&s, 0, sizeof(s));
    }
    /* A void without --amount: the back end's TXN_OK gives the original's amount from its
     * journal (any device's sale of this merchant; docs/system-design.md 1.3). */
    if (type == MPOSHOST_VOID && o->amount != NULL) {
        if (mposhost_parse_amount(o->amount, mposhost_currency_exponent(cur), &amount) != MPOS_OK ||
            amount == 0) {
            fprintf(stderr, PROG ": --amount: a positive decimal amount\n");
            return 2;
        }
    }
    rc = mposhost_txn(h, type, amount, cur, o->ref, &r);
    if (rc != MPOS_OK) {
        return fail(h, type_name((unsigned)type), rc);
    }
    print_receipt(&r, s.merchant[0] ? s.merchant : "-");
    return r.outcome == MPOSHOST_APPROVED ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct cfg c;
    struct mposhost_config hc;
    struct copts o;
    mposhost *h = NULL;
    uint8_t app_key[64];
    const char *cmd, *loc_src;
    int i, ret = 1, rc;
    memset(&c, 0, sizeof(c));
    memset(&hc, 0, sizeof(hc));
    /* A peer that hangs up is an error to report, not a reason to die (mposhost.h). */
    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        char **dst = NULL;
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            ret = 0;
            goto out;
        }
        if (strcmp(argv[i], "--no-gpsd") == 0) {
            c.no_gpsd = 1;
            i--; /* a flag: no value to step over */
            continue;
        }
        if (strcmp(argv[i], "--config") == 0) {
            dst = &c.config;
        } else if (strcmp(argv[i], "--terminal") == 0) {
            dst = &c.terminal;
        } else if (strcmp(argv[i], "--backend") == 0) {
            dst = &c.backend;
        } else if (strcmp(argv[i], "--ca") == 0) {
            dst = &c.ca;
        } else if (strcmp(argv[i], "--server-name") == 0) {
            dst = &c.server_name;
        } else if (strcmp(argv[i], "--state") == 0) {
            dst = &c.state;
        } else if (strcmp(argv[i], "--location") == 0) {
            dst = &c.location;
        } else if (strcmp(argv[i], "--gpsd") == 0) {
            dst = &c.gpsd;
        }
        if (dst == NULL || *dst != NULL || i + 1 >= argc) {
            ret = usage();
            goto out;
        }
        set_str(dst, argv[i + 1]);
    }
    if (i >= argc) {
        ret = usage();
        goto out;
    }
    cmd = argv[i++];
    loc_src = c.location != NULL ? "--location" : "[host] location";
    if (c.config != NULL) {
        int e = ini_parse(c.config, on_ini, &c);
        if (e != 0) {
            if (e > 0) {
                fprintf(stderr, PROG ": %s: error on line %d\n", c.config, e);
            } else {
                fprintf(stderr, PROG ": cannot read %s\n", c.config);
            }
            ret = 2;
            goto out;
        }
    }
    if (c.location != NULL && parse_location(c.location, &hc) != 0) {
        fprintf(stderr, PROG ": location must be LAT,LON[,ACCURACY_M] in degrees\n");
        ret = 2;
        goto out;
    }
    if (strcmp(cmd, "location") == 0) {
        ret = cmd_location(&c, &hc, loc_src, argc - i);
        goto out;
    }
    /* Every command but info talks to the back end: without a configured location, gpsd. */
    if (!hc.have_location && strcmp(cmd, "info") != 0) {
        (void)location_from_gpsd(&c, &hc);
    }
    if (c.state == NULL) {
        c.state = default_state();
    }
    if (c.app_key != NULL) {
        size_t n = strlen(c.app_key);
        if (n < 16 || n > sizeof(app_key)) {
            fprintf(stderr, PROG ": [host] app_key: 16..64 characters\n");
            ret = 2;
            goto out;
        }
        memcpy(app_key, c.app_key, n);
        hc.app_key = app_key;
        hc.app_key_len = n;
    }
    hc.terminal = c.terminal;
    hc.backend = c.backend;
    hc.ca_file = c.ca;
    hc.server_name = c.server_name != NULL ? c.server_name : NULL;
    hc.state_file = c.state;
    hc.on_prompt = on_prompt;
    hc.on_progress = on_progress;
    if (getenv("MPOS_HOST_TIMEOUT_MS") != NULL) {
        hc.timeout_ms = (unsigned)strtoul(getenv("MPOS_HOST_TIMEOUT_MS"), NULL, 10);
    }
    if (c.backend != NULL && hc.server_name == NULL) {
        /* Default: the host part of the address. */
        static char name[256];
        const char *colon = strrchr(c.backend, ':');
        size_t n = colon != NULL ? (size_t)(colon - c.backend) : strlen(c.backend);
        if (n < sizeof(name)) {
            memcpy(name, c.backend, n);
            name[n] = '\0';
            hc.server_name = name;
        }
    }
    if (mposhost_new(&hc, &h) != MPOS_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        ret = 1;
        goto out;
    }

    if (strcmp(cmd, "login") == 0) {
        struct mposhost_session s;
        char pw[256];
        const char *merchant, *user;
        if (parse_copts(argc, argv, i, &o, "merchant user password-file") != 0) {
            ret = usage();
            goto out;
        }
        merchant = o.merchant != NULL ? o.merchant : c.merchant;
        user = o.user != NULL ? o.user : c.user;
        if (merchant == NULL || user == NULL) {
            fprintf(stderr,
                    PROG ": login needs --merchant and --user (or [host] merchant, user)\n");
            ret = 2;
            goto out;
        }
        if (read_password(o.password_file, pw, sizeof(pw)) != 0) {
            MPOS_WIPE_BUFFER(pw);
            ret = 1;
            goto out;
        }
        rc = mposhost_login(h, merchant, user, pw, &s);
        MPOS_WIPE_BUFFER(pw);
        if (rc != MPOS_OK) {
            ret = fail(h, "login", rc);
            goto out;
        }
        printf("logged in: merchant %s, user %s, role %s, until %llu\n", s.merchant, s.username,
               s.role, (unsigned long long)s.expires);
        ret = 0;
    } else if (strcmp(cmd, "logout") == 0) {
        if (parse_copts(argc, argv, i, &o, "") != 0) {
            ret = usage();
            goto out;
        }
        rc = mposhost_logout(h);
        if (rc != MPOS_OK) {
            ret = fail(h, "logout", rc);
            goto out;
        }
        printf("logged out\n");
        ret = 0;
    } else if (strcmp(cmd, "info") == 0) {
        struct mposhost_terminal_info ti;
        static const char *const states[] = {
            "not activated", "idle",   "awaiting confirmation", "awaiting card",
            "awaiting PIN",  "online", "showing result"};
        if (parse_copts(argc, argv, i, &o, "") != 0) {
            ret = usage();
            goto out;
        }
        rc = mposhost_info(h, &ti);
        if (rc != MPOS_OK) {
            ret = fail(h, "info", rc);
            goto out;
        }
        printf("serial:   %s\nfirmware: %s\nstate:    %s\n", ti.serial, ti.firmware,
               ti.state < 7 ? states[ti.state] : "?");
        ret = 0;
    } else if (strcmp(cmd, "activate") == 0) {
        struct mposhost_receipt r;
        if (parse_copts(argc, argv, i, &o, "code") != 0 || o.code == NULL) {
            ret = usage();
            goto out;
        }
        rc = mposhost_activate(h, o.code, &r);
        if (rc != MPOS_OK) {
            ret = fail(h, "activate", rc);
            goto out;
        }
        printf("result: %s\n", outcome_name(r.outcome));
        ret = r.outcome == MPOSHOST_ACTIVATED ? 0 : 1;
    } else if (strcmp(cmd, "sale") == 0) {
        if (parse_copts(argc, argv, i, &o, "amount currency") != 0) {
            ret = usage();
            goto out;
        }
        ret = run_txn(h, MPOSHOST_SALE, &o);
    } else if (strcmp(cmd, "void") == 0) {
        if (parse_copts(argc, argv, i, &o, "ref amount currency") != 0) {
            ret = usage();
            goto out;
        }
        ret = run_txn(h, MPOSHOST_VOID, &o);
    } else if (strcmp(cmd, "refund") == 0) {
        if (parse_copts(argc, argv, i, &o, "ref amount currency") != 0) {
            ret = usage();
            goto out;
        }
        ret = run_txn(h, MPOSHOST_REFUND, &o);
    } else if (strcmp(cmd, "balance") == 0) {
        if (parse_copts(argc, argv, i, &o, "currency") != 0) {
            ret = usage();
            goto out;
        }
        ret = run_txn(h, MPOSHOST_BALANCE, &o);
    } else if (strcmp(cmd, "settle") == 0) {
        static char text[16384];
        if (parse_copts(argc, argv, i, &o, "") != 0) {
            ret = usage();
            goto out;
        }
        rc = mposhost_settle(h, text, sizeof(text));
        if (rc != MPOS_OK) {
            ret = fail(h, "settle", rc);
            goto out;
        }
        fputs(text, stdout);
        if (text[0] != '\0' && text[strlen(text) - 1] != '\n') {
            fputc('\n', stdout);
        }
        ret = 0;
    } else {
        ret = usage();
    }
out:
    mposhost_free(h);
    MPOS_WIPE_BUFFER(app_key);
    free(c.config);
    free(c.terminal);
    free(c.backend);
    free(c.ca);
    free(c.server_name);
    free(c.state);
    free(c.location);
    free(c.gpsd);
    free(c.app_key);
    free(c.merchant);
    free(c.user);
    return ret;
}
