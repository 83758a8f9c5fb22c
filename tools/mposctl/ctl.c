/* mposctl: option parsing, configuration, store access, password input, formatting. */
#define _POSIX_C_SOURCE 200809L /* getline, fileno, termios, getpwuid */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "ctl.h"
#include "mpos/password.h"
#include "mpos/util.h"

int ctl_error(struct ctl *c, int code, const char *fmt, ...)
{
    char msg[512] = "";
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) {
        msg[0] = '\0';
    }
    va_end(ap);
    /* Always one line: a value echoed in the message may hold newlines or escapes. */
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            *p = '?';
        }
    }
    fprintf(c->err, "mposctl: %s\n", msg);
    return code;
}

const char *ctl_echo(const char *word)
{
    size_t n = 0;
    if (word == NULL) {
        return "(none)";
    }
    for (; word[n] != '\0'; n++) {
        char ch = word[n];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok || n >= 64) {
            return "(not shown)";
        }
    }
    return n > 0 ? word : "(empty)";
}

/* ---- options ---------------------------------------------------------------------------- */

static int set_global(struct ctl *c, const char *name, const char *value)
{
    const char **slot = strcmp(name, "db") == 0       ? &c->db_arg
                        : strcmp(name, "config") == 0 ? &c->config_arg
                        : strcmp(name, "hsm") == 0    ? &c->hsm_arg
                                                      : NULL;
    if (slot == NULL) {
        return 1; /* not a global option */
    }
    if (*slot != NULL) {
        return ctl_error(c, CTL_USAGE, "option --%s given twice", name);
    }
    if (value == NULL || value[0] == '\0') {
        return ctl_error(c, CTL_USAGE, "option --%s needs a value", name);
    }
    *slot = value;
    return CTL_OK;
}

/* Splits "--name=value" / "--name" value. *name_len: length of the name after "--". */
static const char *split_option(const char *arg, size_t *name_len)
{
    const char *eq = strchr(arg + 2, '=');
    *name_len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    return eq != NULL ? eq + 1 : NULL;
}

/* For words that should be a command or an option name: only lowercase letters and '-' are
 * echoed, as in mpos-crypto; anything else could be a password typed in the wrong place. */
static const char *echo_word(const char *word)
{
    size_t n = 0;
    for (; word[n] != '\0'; n++) {
        if (n >= 24 || !((word[n] >= 'a' && word[n] <= 'z') || word[n] == '-')) {
            return "(not shown)";
        }
    }
    return n > 0 ? word : "(empty)";
}

const char *ctl_echo_word(const char *word)
{
    return word != NULL ? echo_word(word) : "(none)";
}

int ctl_parse_globals(struct ctl *c, int argc, char **argv)
{
    int i = 1;
    while (i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') {
        size_t len = 0;
        char name[16];
        const char *inline_value = split_option(argv[i], &len);
        if (len >= sizeof(name)) {
            break;
        }
        memcpy(name, argv[i] + 2, len);
        name[len] = '\0';
        if (strcmp(name, "db") != 0 && strcmp(name, "config") != 0 && strcmp(name, "hsm") != 0) {
            break; /* --help, --version or a mistake: the caller decides */
        }
        const char *value = inline_value;
        if (value == NULL) {
            if (i + 1 >= argc) {
                ctl_error(c, CTL_USAGE, "option --%s needs a value", name);
                return -1;
            }
            value = argv[++i];
        }
        if (set_global(c, name, value) != CTL_OK) {
            return -1;
        }
        i++;
    }
    return i;
}

int ctl_parse(struct ctl *c, int argc, char **argv, struct ctl_opt *opts, size_t nopts,
              const char **pos, size_t min_pos, size_t max_pos, const char *help)
{
    size_t npos = 0;
    for (size_t j = 0; j < nopts; j++) {
        opts[j].value = NULL;
    }
    for (size_t j = 0; j < max_pos; j++) {
        pos[j] = NULL;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, c->out);
            return CTL_HELP;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            /* Everything after is positional (a serial starting with '-'). */
            for (i++; i < argc; i++) {
                if (npos >= max_pos) {
                    return ctl_error(c, CTL_USAGE, "too many arguments (try --help)");
                }
                pos[npos++] = argv[i];
            }
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (npos >= max_pos) {
                return ctl_error(c, CTL_USAGE, "unexpected argument %d (try --help)", i);
            }
            pos[npos++] = a;
            continue;
        }
        size_t len = 0;
        const char *value = split_option(a, &len);
        size_t j = 0;
        while (j < nopts &&
               !(strlen(opts[j].name) == len && strncmp(opts[j].name, a + 2, len) == 0)) {
            j++;
        }
        if (j == nopts) {
            char name[16];
            if (len < sizeof(name)) {
                memcpy(name, a + 2, len);
                name[len] = '\0';
                if (strcmp(name, "db") == 0 || strcmp(name, "config") == 0 ||
                    strcmp(name, "hsm") == 0) {
                    if (value == NULL) {
                        if (i + 1 >= argc) {
                            return ctl_error(c, CTL_USAGE, "option --%s needs a value", name);
                        }
                        value = argv[++i];
                    }
                    int rc = set_global(c, name, value);
                    if (rc != CTL_OK) {
                        return rc;
                    }
                    continue;
                }
            }
            return ctl_error(c, CTL_USAGE, "unknown option '%s' (try --help)", echo_word(a));
        }
        if (opts[j].value != NULL) {
            return ctl_error(c, CTL_USAGE, "option --%s given twice", opts[j].name);
        }
        if (opts[j].takes_value) {
            if (value == NULL) {
                if (i + 1 >= argc) {
                    return ctl_error(c, CTL_USAGE, "option --%s needs a value", opts[j].name);
                }
                value = argv[++i];
            }
            opts[j].value = value;
        } else {
            if (value != NULL) {
                return ctl_error(c, CTL_USAGE, "option --%s takes no value", opts[j].name);
            }
            opts[j].value = "1";
        }
    }
    if (npos < min_pos) {
        return ctl_error(c, CTL_USAGE, "missing argument (try --help)");
    }
    return CTL_OK;
}

const char *ctl_get(const struct ctl_opt *opts, size_t nopts, const char *name)
{
    for (size_t j = 0; j < nopts; j++) {
        if (strcmp(opts[j].name, name) == 0) {
            return opts[j].value;
        }
    }
    return NULL;
}

int ctl_dispatch(struct ctl *c, int argc, char **argv, const struct ctl_command *cmds,
                 const char *help)
{
    if (argc < 2) {
        return ctl_error(c, CTL_USAGE, "missing command after '%s' (try mposctl %s --help)",
                         argv[0], argv[0]);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(help, c->out);
        return CTL_HELP;
    }
    for (const struct ctl_command *cmd = cmds; cmd->name != NULL; cmd++) {
        if (strcmp(argv[1], cmd->name) == 0) {
            return cmd->run(c, argc - 1, argv + 1);
        }
    }
    return ctl_error(c, CTL_USAGE, "unknown command '%s %s' (try mposctl %s --help)", argv[0],
                     echo_word(argv[1]), argv[0]);
}

/* ---- configuration ---------------------------------------------------------------------- */

struct ini_state {
    struct ctl *c;
    int bad_line; /* first line with an unknown section/key or a bad value */
};

static int copy_path(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= CTL_PATH_MAX) {
        return 0;
    }
    memcpy(dst, src, n + 1);
    return 1;
}

static int int_value(const char *v, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        return 0;
    }
    *out = (int)n;
    return 1;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *s = user;
    struct ctl *c = s->c;
    int ok = 0;
    if (strcmp(section, "store") == 0 && strcmp(name, "db") == 0) {
        ok = c->db_arg != NULL || copy_path(c->db, value);
    } else if (strcmp(section, "store") == 0 && strcmp(name, "busy_timeout_ms") == 0) {
        ok = int_value(value, 1, 600000, &c->busy_timeout_ms);
    } else if (strcmp(section, "hsm") == 0 && strcmp(name, "socket") == 0) {
        ok = c->hsm_arg != NULL || copy_path(c->hsm, value);
    } else if (strcmp(section, "hsm") == 0 && strcmp(name, "timeout_ms") == 0) {
        ok = int_value(value, 1, 600000, &c->hsm_timeout_ms);
    } else if (strcmp(section, "lmk") == 0) {
        /* mpos-hsmd's [lmk] keys (hsm/hsmd/config.c): the defaults of hsm init; the others
         * (source, components, ...) are mpos-hsmd's alone. */
        char *dst = strcmp(name, "pkcs11_module") == 0 ? c->pkcs11_module
                    : strcmp(name, "token_label") == 0 ? c->token_label
                    : strcmp(name, "pin_file") == 0    ? c->pin_file
                    : strcmp(name, "wrapped") == 0     ? c->lmk_wrapped
                                                       : NULL;
        ok = dst == NULL || copy_path(dst, value);
    }
    return ok; /* 0 stops inih and reports the line */
}

int ctl_load_config(struct ctl *c)
{
    if (c->config_loaded) {
        return CTL_OK;
    }
    c->config_loaded = 1;
    if (c->db_arg != NULL && !copy_path(c->db, c->db_arg)) {
        return ctl_error(c, CTL_USAGE, "--db: path too long");
    }
    if (c->hsm_arg != NULL && !copy_path(c->hsm, c->hsm_arg)) {
        return ctl_error(c, CTL_USAGE, "--hsm: path too long");
    }
    const char *path = c->config_arg != NULL ? c->config_arg : getenv("MPOSCTL_CONFIG");
    if (path == NULL || path[0] == '\0') {
        return CTL_OK;
    }
    struct ini_state s = {c, 0};
    int line = ini_parse(path, on_ini_line, &s);
    if (line < 0) {
        return ctl_error(c, CTL_USAGE, "cannot read configuration file %s", path);
    }
    if (line > 0) {
        return ctl_error(c, CTL_USAGE,
                         "configuration file %s, line %d: unknown section or key, or bad value",
                         path, line);
    }
    return CTL_OK;
}

/* ---- the store -------------------------------------------------------------------------- */

static void set_actor(struct ctl *c)
{
    char actor[MPOS_STORE_ACTOR_LEN + 1];
    const struct passwd *pw = getpwuid(getuid());
    const char *sudo = getenv("SUDO_USER");
    if (sudo != NULL && sudo[0] != '\0') {
        snprintf(actor, sizeof(actor), "mposctl:%s(sudo:%s)", pw != NULL ? pw->pw_name : "?", sudo);
    } else if (pw != NULL) {
        snprintf(actor, sizeof(actor), "mposctl:%s", pw->pw_name);
    } else {
        snprintf(actor, sizeof(actor), "mposctl:uid%lu", (unsigned long)getuid());
    }
    mpos_store_set_actor(c->st, actor);
}

int ctl_open_store(struct ctl *c, int create, int allow_old)
{
    int64_t version = 0;
    int rc = ctl_load_config(c);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->db[0] == '\0') {
        return ctl_error(c, CTL_USAGE,
                         "no database: give --db PATH or [store] db in the --config file");
    }
    rc = mpos_store_open(c->db, create ? MPOS_STORE_CREATE : 0, c->busy_timeout_ms, &c->st);
    if (rc == MPOS_STORE_ERR_NO_DB) {
        return ctl_error(c, CTL_FAIL, "no database at %s (create it with: mposctl db migrate)",
                         c->db);
    }
    if (rc == MPOS_STORE_ERR_SCHEMA_NEW) {
        return ctl_error(c, CTL_FAIL,
                         "database %s has a newer schema than this mposctl (version %d): "
                         "refusing to touch it",
                         c->db, MPOS_STORE_SCHEMA_VERSION);
    }
    if (rc != MPOS_OK) {
        return ctl_error(c, CTL_FAIL, "cannot open database %s: %s", c->db,
                         mpos_store_strerror(rc));
    }
    set_actor(c);
    rc = mpos_store_schema_version(c->st, &version);
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "database");
    }
    if (!allow_old && version < MPOS_STORE_SCHEMA_VERSION) {
        return ctl_error(c, CTL_FAIL,
                         "database schema is version %lld, this mposctl needs %d: run "
                         "'mposctl db migrate'",
                         (long long)version, MPOS_STORE_SCHEMA_VERSION);
    }
    return CTL_OK;
}

int ctl_store_error(struct ctl *c, int rc, const char *what)
{
    if (rc == MPOS_STORE_ERR_DB || rc == MPOS_STORE_ERR_BUSY) {
        return ctl_error(c, CTL_FAIL, "%s: %s (%s)", what, mpos_store_strerror(rc),
                         mpos_store_errmsg(c->st));
    }
    return ctl_error(c, CTL_FAIL, "%s: %s", what, mpos_store_strerror(rc));
}

/* ---- passwords -------------------------------------------------------------------------- */

/* Reads one line into buf without echo from the terminal fd. */
static int read_tty_line(struct ctl *c, FILE *tty, const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    int fd = fileno(tty);
    int rc = CTL_OK;
    fputs(prompt, c->err);
    fflush(c->err);
    if (tcgetattr(fd, &old) != 0) {
        return ctl_error(c, CTL_FAIL, "cannot read the password from the terminal");
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        return ctl_error(c, CTL_FAIL, "cannot turn off echo on the terminal");
    }
    if (fgets(buf, (int)cap, tty) == NULL) {
        rc = ctl_error(c, CTL_FAIL, "no password entered");
    }
    (void)tcsetattr(fd, TCSAFLUSH, &old);
    fputc('\n', c->err);
    return rc;
}

/* Strips one trailing "\n" or "\r\n"; CTL_FAIL if the line did not fit. */
static int chomp(struct ctl *c, char *buf, size_t cap)
{
    size_t n = strnlen(buf, cap);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r') {
            buf[--n] = '\0';
        }
        return CTL_OK;
    }
    if (n + 1 >= cap) {
        return ctl_error(c, CTL_FAIL, "password too long: at most %d bytes",
                         MPOS_PASSWORD_MAX_BYTES);
    }
    return CTL_OK; /* last line without a newline */
}

int ctl_read_password(struct ctl *c, const char *username, char *buf, size_t cap)
{
    char again[MPOS_PASSWORD_MAX_BYTES + 3];
    char prompt[96];
    int rc = CTL_OK;
    buf[0] = '\0';
    if (isatty(STDIN_FILENO)) {
        FILE *tty = fopen("/dev/tty", "r");
        if (tty == NULL) {
            return ctl_error(c, CTL_FAIL, "cannot open the terminal to read the password");
        }
        snprintf(prompt, sizeof(prompt), "New password for %s: ", ctl_echo(username));
        rc = read_tty_line(c, tty, prompt, buf, cap);
        if (rc == CTL_OK) {
            rc = chomp(c, buf, cap);
        }
        if (rc == CTL_OK) {
            rc = read_tty_line(c, tty, "Repeat the password: ", again, sizeof(again));
        }
        if (rc == CTL_OK) {
            rc = chomp(c, again, sizeof(again));
        }
        if (rc == CTL_OK && strcmp(buf, again) != 0) {
            rc = ctl_error(c, CTL_FAIL, "the two passwords differ");
        }
        fclose(tty);
    } else {
        /* Non-interactive: the first line of stdin (a pipe or a file, never argv). */
        if (fgets(buf, (int)cap, stdin) == NULL) {
            rc = ctl_error(c, CTL_FAIL, "no password on standard input");
        } else {
            rc = chomp(c, buf, cap);
        }
    }
    if (rc == CTL_OK && buf[0] == '\0') {
        rc = ctl_error(c, CTL_FAIL, "empty password");
    }
    MPOS_WIPE_BUFFER(again);
    if (rc != CTL_OK) {
        mpos_cleanse(buf, cap);
    }
    return rc;
}

/* ---- formatting and parsing ------------------------------------------------------------- */

void ctl_put_safe(FILE *out, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        fputc((ch < 0x20 || ch == 0x7F) ? '?' : ch, out);
    }
}

void ctl_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t == 0 || gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, 32, "-");
    }
}

int ctl_duration(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    int64_t unit = 1;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return 0;
    }
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno != 0 || n > 1000000000ULL) {
        return 0;
    }
    if (*end != '\0') {
        unit = end[0] == 's'   ? 1
               : end[0] == 'm' ? 60
               : end[0] == 'h' ? 3600
               : end[0] == 'd' ? 86400
                               : 0;
        if (unit == 0 || end[1] != '\0') {
            return 0;
        }
    }
    int64_t v = (int64_t)n * unit;
    if (v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* Decimal degrees with at most 6 decimals into microdegrees, exactly (no floating point). */
static int parse_e6(const char *s, const char *end, int64_t limit, int64_t *out)
{
    int neg = 0, digits = 0, frac = -1;
    int64_t v = 0;
    if (s < end && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    for (; s < end; s++) {
        if (*s == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*s < '0' || *s > '9' || frac >= 6 || digits >= 9) {
            return 0;
        }
        v = v * 10 + (*s - '0');
        digits++;
        if (frac >= 0) {
            frac++;
        }
    }
    if (digits == 0 || frac == 0) {
        return 0;
    }
    for (int i = frac < 0 ? 0 : frac; i < 6; i++) {
        v *= 10;
    }
    if (v > limit) {
        return 0;
    }
    *out = neg ? -v : v;
    return 1;
}

int ctl_location(const char *s, struct mpos_store_location *out)
{
    const char *c1 = s != NULL ? strchr(s, ',') : NULL;
    const char *c2 = c1 != NULL ? strchr(c1 + 1, ',') : NULL;
    char *end = NULL;
    memset(out, 0, sizeof(*out));
    if (c2 == NULL || strchr(c2 + 1, ',') != NULL || c2[1] < '1' || c2[1] > '9') {
        return 0;
    }
    if (!parse_e6(s, c1, 90000000, &out->lat_e6) ||
        !parse_e6(c1 + 1, c2, 180000000, &out->lon_e6)) {
        return 0;
    }
    errno = 0;
    unsigned long r = strtoul(c2 + 1, &end, 10);
    if (errno != 0 || *end != '\0' || r < 1 || r > 20000000) {
        return 0;
    }
    out->radius_m = (int64_t)r;
    out->set = 1;
    return 1;
}
