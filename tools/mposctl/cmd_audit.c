/* mposctl audit: the audit trail of fleet changes (hash-chained). */
#include "ctl.h"

static const char help_list[] =
    "usage: mposctl audit list [--last N]\n"
    "Prints the audit records (sequence, time UTC, actor, action, object, detail), all or\n"
    "the last N.\n";

static const char help_verify[] =
    "usage: mposctl audit verify\n"
    "Re-computes the hash chain of the audit trail; exit 1 and the first bad record if a\n"
    "record was changed, removed or inserted.\n";

static int print_audit(void *ctx, const struct mpos_store_audit *a)
{
    struct ctl *c = ctx;
    char at[32];
    ctl_time(a->created_at, at);
    fprintf(c->out, "%lld  %s  ", (long long)a->seq, at);
    ctl_put_safe(c->out, a->actor);
    fprintf(c->out, "  %s  ", a->action);
    ctl_put_safe(c->out, a->object);
    fputs("  ", c->out);
    ctl_put_safe(c->out, a->detail);
    fputc('\n', c->out);
    return 0;
}

static int audit_list(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"last", 1, NULL}};
    int64_t last = 0;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_list);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *n = ctl_get(opts, CTL_NOPTS(opts), "last");
    if (n != NULL && !ctl_duration(n, 1, 1000000000, &last)) {
        return ctl_error(c, CTL_USAGE, "--last: a positive number");
    }
    for (const char *p = n; p != NULL && *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return ctl_error(c, CTL_USAGE, "--last: a positive number");
        }
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_audit_list(c->st, last, print_audit, c);
    return rc == MPOS_OK ? CTL_OK : ctl_store_error(c, rc, "audit list");
}

static int audit_verify(struct ctl *c, int argc, char **argv)
{
    int64_t count = 0, bad = 0;
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 0, help_verify);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_audit_verify(c->st, &count, &bad);
    if (rc == MPOS_ERR_VERIFY) {
        return ctl_error(c, CTL_FAIL, "audit trail broken at record %lld", (long long)bad);
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "audit verify");
    }
    fprintf(c->out, "audit trail intact: %lld records\n", (long long)count);
    return CTL_OK;
}

int cmd_audit(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"list", audit_list}, {"verify", audit_verify}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl audit list | verify   (mposctl audit <command> --help)\n");
}
