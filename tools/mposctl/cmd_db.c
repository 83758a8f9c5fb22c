/* mposctl db: the database schema. */
#include "ctl.h"

static const char help_migrate[] =
    "usage: mposctl db migrate [--db PATH]\n"
    "Creates the database if it does not exist (mode 0600) and applies the missing schema\n"
    "migrations, each in its own transaction. Safe to run again, and from several hosts at\n"
    "once. A database with a newer schema than this mposctl is refused.\n"
    "Prints: schema version N (was M)\n";

static const char help_status[] = "usage: mposctl db status [--db PATH]\n"
                                  "Prints the schema version of the database and of mposctl.\n";

static int db_migrate(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[1] = {{"help", 0, NULL}};
    int64_t from = 0, to = 0;
    int rc = ctl_parse(c, argc, argv, opts, 0, NULL, 0, 0, help_migrate);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_open_store(c, 1, 1);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_migrate(c->st, c->now, &from, &to);
    if (rc == MPOS_STORE_ERR_SCHEMA_NEW) {
        return ctl_error(c, CTL_FAIL,
                         "database schema is version %lld, newer than this mposctl (%d): refused",
                         (long long)to, MPOS_STORE_SCHEMA_VERSION);
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "migration");
    }
    fprintf(c->out, "schema version %lld (was %lld)\n", (long long)to, (long long)from);
    return CTL_OK;
}

static int db_status(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[1] = {{"help", 0, NULL}};
    int64_t v = 0;
    int rc = ctl_parse(c, argc, argv, opts, 0, NULL, 0, 0, help_status);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_open_store(c, 0, 1);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_schema_version(c->st, &v);
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "database");
    }
    fprintf(c->out, "schema version %lld (mposctl %d)%s\n", (long long)v, MPOS_STORE_SCHEMA_VERSION,
            v < MPOS_STORE_SCHEMA_VERSION ? ": run mposctl db migrate" : "");
    return CTL_OK;
}

int cmd_db(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"migrate", db_migrate}, {"status", db_status}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl db migrate | status   (mposctl db <command> --help)\n");
}
