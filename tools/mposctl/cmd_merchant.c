/* mposctl merchant: merchants (A-MGMT-1). */
#include "ctl.h"
#include "mpos/util.h"

static const char help_add[] =
    "usage: mposctl merchant add [--name NAME] [--id ID] [--mcc MCC]\n"
    "Adds a merchant and prints its ID.\n"
    "  --name NAME   1 to 64 bytes of UTF-8, no control characters; default: the --id given,\n"
    "                else \"merchant\"\n"
    "  --id ID       the merchant ID (ISO 8583 field 42): 1 to 15 letters or digits, stored\n"
    "                in uppercase; default: the next free 15-digit number\n"
    "  --mcc MCC     merchant category code (ISO 18245), 4 digits\n";

static const char help_list[] = "usage: mposctl merchant list\n"
                                "Lists the merchants: ID, MCC, created (UTC), name.\n";

static int merchant_add(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"name", 1, NULL}, {"id", 1, NULL}, {"mcc", 1, NULL}};
    char id[MPOS_STORE_MERCHANT_ID_LEN + 1];
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_add);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *name = ctl_get(opts, CTL_NOPTS(opts), "name");
    const char *mid = ctl_get(opts, CTL_NOPTS(opts), "id");
    const char *mcc = ctl_get(opts, CTL_NOPTS(opts), "mcc");
    if (name == NULL) {
        name = mid != NULL ? mid : "merchant";
    }
    if (!mpos_store_merchant_name_valid(name)) {
        return ctl_error(c, CTL_USAGE, "--name: 1 to 64 bytes of UTF-8 without control characters");
    }
    if (mid != NULL && !mpos_store_merchant_id_valid(mid)) {
        return ctl_error(c, CTL_USAGE, "--id: 1 to 15 letters or digits");
    }
    if (mcc != NULL && !mpos_digits_valid(mcc, 4, 4)) {
        return ctl_error(c, CTL_USAGE, "--mcc: 4 digits");
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_merchant_add(c->st, mid, name, mcc, c->now, id);
    if (rc == MPOS_STORE_EXISTS) {
        return ctl_error(c, CTL_FAIL, "merchant %s already exists", ctl_echo(mid));
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "merchant add");
    }
    fprintf(c->out, "%s\n", id);
    return CTL_OK;
}

static int print_merchant(void *ctx, const struct mpos_store_merchant *m)
{
    struct ctl *c = ctx;
    char created[32];
    ctl_time(m->created_at, created);
    fprintf(c->out, "%-15s  %-4s  %-20s  ", m->id, m->mcc[0] != '\0' ? m->mcc : "-", created);
    ctl_put_safe(c->out, m->name);
    fputc('\n', c->out);
    return 0;
}

static int merchant_list(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 0, help_list);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    fprintf(c->out, "%-15s  %-4s  %-20s  %s\n", "ID", "MCC", "CREATED", "NAME");
    rc = mpos_store_merchant_list(c->st, print_merchant, c);
    return rc == MPOS_OK ? CTL_OK : ctl_store_error(c, rc, "merchant list");
}

int cmd_merchant(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"add", merchant_add}, {"list", merchant_list}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl merchant add | list   (mposctl merchant <command> "
                        "--help)\n");
}
