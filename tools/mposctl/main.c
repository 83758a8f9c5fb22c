/* mposctl: key and fleet management for the openmpos back end (docs/man/mposctl.1). */
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "mpos/crypto.h"

static const char usage[] =
    "usage: mposctl [--db PATH] [--config FILE] [--hsm SOCKET] <group> <command> [options]\n"
    "       mposctl <group> --help      mposctl <group> <command> --help\n"
    "groups and commands:\n"
    "  db        migrate | status                    the database schema\n"
    "  merchant  add | list                          merchants\n"
    "  terminal  assign | suspend | resume | retire | list | show | provision\n"
    "                                                terminals and activation codes\n"
    "  operator  add | list                          cashier-app operators (Argon2id)\n"
    "  key       list | generate | import | export   key blocks under the LMK\n"
    "  key       ... | import --components           a key from clear components (dual control)\n"
    "  bdk       create | import                     DUKPT base keys and their KSN allocator\n"
    "  ca        create                              the manufacturer CA certificate\n"
    "  cert      sign                                the back end's TLS server certificate\n"
    "  params    publish                             the signed EMV parameter package\n"
    "  hsm       status | init                       mpos-hsmd\n"
    "  audit     list | verify                       the audit trail of fleet changes\n"
    "  settle    [--merchant ID]                     close the batch, print the totals\n"
    "global options (also accepted after the command):\n"
    "  --db PATH        the database (SQLite file); else [store] db in the configuration\n"
    "  --config FILE    INI configuration ([store] db, busy_timeout_ms; [hsm] socket,\n"
    "                   timeout_ms); else $MPOSCTL_CONFIG\n"
    "  --hsm SOCKET     mpos-hsmd's tools socket; else [hsm] socket in the configuration\n"
    "Results go to stdout, errors to stderr (one line); exit 0 on success, 1 when the\n"
    "operation failed, 2 when the call was wrong.\n";

int cmd_settle(struct ctl *c, int argc, char **argv); /* cmd_settle.c */

static const struct ctl_command groups[] = {{"db", cmd_db},
                                            {"merchant", cmd_merchant},
                                            {"terminal", cmd_terminal},
                                            {"operator", cmd_operator},
                                            {"key", cmd_key},
                                            {"bdk", cmd_bdk},
                                            {"hsm", cmd_hsm},
                                            {"audit", cmd_audit},
                                            {"ca", cmd_ca},
                                            {"cert", cmd_cert},
                                            {"params", cmd_params},
                                            {"settle", cmd_settle},
                                            {NULL, NULL}};

int main(int argc, char **argv)
{
    struct ctl c;
    memset(&c, 0, sizeof(c));
    c.out = stdout;
    c.err = stderr;
    c.now = (int64_t)time(NULL);
    int rc = CTL_OK;
    int first = ctl_parse_globals(&c, argc, argv);
    if (first < 0) {
        rc = CTL_USAGE;
        goto exit;
    }
    if (first >= argc) {
        rc = ctl_error(&c, CTL_USAGE, "missing command (try mposctl --help)");
        goto exit;
    }
    const char *g = argv[first];
    if (strcmp(g, "--help") == 0 || strcmp(g, "-h") == 0 || strcmp(g, "help") == 0) {
        fputs(usage, c.out);
        goto exit;
    }
    if (strcmp(g, "--version") == 0) {
        fputs("mposctl (openmpos) 0.1.0\n", c.out);
        goto exit;
    }
    const struct ctl_command *grp = groups;
    while (grp->name != NULL && strcmp(grp->name, g) != 0) {
        grp++;
    }
    if (grp->name == NULL) {
        rc =
            ctl_error(&c, CTL_USAGE, "unknown command '%s' (try mposctl --help)", ctl_echo_word(g));
        goto exit;
    }
    rc = grp->run(&c, argc - first, argv + first);
exit:
    mpos_store_close(c.st);
    if (fflush(c.out) != 0 && rc == CTL_OK) {
        rc = ctl_error(&c, CTL_FAIL, "cannot write the result");
    }
    return rc == CTL_HELP ? CTL_OK : rc;
}
