/* mposctl: shared context, option parsing and output of the subcommands (docs/man/mposctl.1).
 *
 * Contract: a result goes to stdout; an error is one line on stderr starting "mposctl: ";
 * exit 0 on success, 1 when the operation failed (not found, state does not allow it, weak
 * password, database or HSM error), 2 when the call was wrong (unknown command or option,
 * missing or malformed value). --help on every command prints its usage and exits 0.
 * Nothing secret is ever taken from argv or printed, except the one-time activation code that
 * `terminal assign` exists to show. */
#ifndef MPOSCTL_CTL_H
#define MPOSCTL_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mpos/store.h"

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2, CTL_HELP = 3 };

#define CTL_PATH_MAX 4096

/* Everything one run of mposctl uses: the global options, the configuration, the store. */
struct ctl {
    const char *db_arg;     /* --db */
    const char *config_arg; /* --config */
    const char *hsm_arg;    /* --hsm */
    char db[CTL_PATH_MAX];  /* resolved: --db, else [store] db of the config file */
    char hsm[CTL_PATH_MAX]; /* resolved: --hsm, else [hsm] socket of the config file */
    int hsm_timeout_ms;     /* [hsm] timeout_ms */
    /* [lmk] pkcs11_module, token_label, pin_file, wrapped (mpos-hsmd's keys): the defaults of
     * hsm init; "" when not configured */
    char pkcs11_module[CTL_PATH_MAX];
    char token_label[CTL_PATH_MAX];
    char pin_file[CTL_PATH_MAX];
    char lmk_wrapped[CTL_PATH_MAX];
    int busy_timeout_ms; /* [store] busy_timeout_ms */
    int config_loaded;
    mpos_store *st;
    FILE *out;
    FILE *err;
    int64_t now;
};

struct ctl_opt {
    const char *name; /* without "--" */
    int takes_value;
    const char *value; /* set by ctl_parse: the value, "1" for a flag, NULL when absent */
};

#define CTL_NOPTS(a) (sizeof(a) / sizeof((a)[0]))

/* Parses argv[1..argc) of a command (argv[0] is its name): options (--name VALUE or
 * --name=VALUE, each at most once; the global --db, --config and --hsm are accepted here too)
 * and between min_pos and max_pos positional arguments, stored in pos[]. --help / -h prints
 * help and returns CTL_HELP; errors print one line and return CTL_USAGE. */
int ctl_parse(struct ctl *c, int argc, char **argv, struct ctl_opt *opts, size_t nopts,
              const char **pos, size_t min_pos, size_t max_pos, const char *help);

/* Global options before the command group: consumes them from argv, returns the index of the
 * first other argument, or -1 after printing an error. */
int ctl_parse_globals(struct ctl *c, int argc, char **argv);

const char *ctl_get(const struct ctl_opt *opts, size_t nopts, const char *name);

/* Prints "mposctl: <message>" (one line: control characters replaced) and returns code. */
int ctl_error(struct ctl *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Maps a store result to a message and exit code (1). what: e.g. "terminal T-1". */
int ctl_store_error(struct ctl *c, int rc, const char *what);

/* Reads the configuration file (if any) and resolves the database and HSM locations. */
int ctl_load_config(struct ctl *c);

/* Opens the store (create: for db migrate) and checks the schema is current (unless
 * allow_old). Sets the audit actor to "mposctl:<user>". */
int ctl_open_store(struct ctl *c, int create, int allow_old);

/* Reads a new password: from the terminal (prompted twice, no echo) when stdin is one, else
 * one line from stdin. Never from argv. buf is wiped by the caller. */
int ctl_read_password(struct ctl *c, const char *username, char *buf, size_t cap);

/* Writes s with every control character replaced by '?' (names from the database). */
void ctl_put_safe(FILE *out, const char *s);

/* Formats a Unix time as ISO 8601 UTC ("2025-11-28T17:20:00Z"), or "-" for 0. */
void ctl_time(int64_t t, char out[32]);

/* Parses "24h", "90m", "3600s", "7d" or a number of seconds, within [min, max] seconds. */
int ctl_duration(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses "LAT,LON,RADIUS_M" (decimal degrees, up to 6 decimals; metres). */
int ctl_location(const char *s, struct mpos_store_location *out);

/* Safe to echo: [A-Za-z0-9._:-], at most 64 characters; else a placeholder. For identifiers
 * (serials, merchant IDs, labels, usernames), which are not secret. */
const char *ctl_echo(const char *word);

/* For what should be a command or option name: lowercase letters and '-' only (a misplaced
 * password is never echoed). */
const char *ctl_echo_word(const char *word);

/* Commands: argv[0] is the group name ("merchant"), argv[1] the command. */
int cmd_db(struct ctl *c, int argc, char **argv);
int cmd_merchant(struct ctl *c, int argc, char **argv);
int cmd_terminal(struct ctl *c, int argc, char **argv);
int cmd_operator(struct ctl *c, int argc, char **argv);
int cmd_key(struct ctl *c, int argc, char **argv);
int cmd_audit(struct ctl *c, int argc, char **argv);
int cmd_hsm(struct ctl *c, int argc, char **argv);
int cmd_bdk(struct ctl *c, int argc, char **argv);
int cmd_ca(struct ctl *c, int argc, char **argv);
int cmd_cert(struct ctl *c, int argc, char **argv);
int cmd_params(struct ctl *c, int argc, char **argv); /* cmd_params.c */

/* HSM-backed commands (cmd_hsm.c); CTL_FAIL with a message when mposctl was built without
 * the HSM client. */
int ctl_key_generate(struct ctl *c, int argc, char **argv);
int ctl_key_import(struct ctl *c, int argc, char **argv);
int ctl_key_export(struct ctl *c, int argc, char **argv);
int ctl_terminal_provision(struct ctl *c, int argc, char **argv);

/* A group's commands: dispatches argv[1] (or prints the group's help). */
struct ctl_command {
    const char *name;
    int (*run)(struct ctl *c, int argc, char **argv);
};
int ctl_dispatch(struct ctl *c, int argc, char **argv, const struct ctl_command *cmds,
                 const char *help);

#endif
