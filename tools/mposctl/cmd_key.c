/* mposctl key: key blocks under the LMK (the store holds them; mpos-hsmd makes them). */
#include "ctl.h"

static const char help_list[] =
    "usage: mposctl key list\n"
    "Lists the keys in the database: label, TR-31 usage, algorithm, check value, created\n"
    "(UTC). Keys exist there only as TR-31 key blocks under the LMK; no key is printed.\n";

static int print_key(void *ctx, const struct mpos_store_key *k)
{
    struct ctl *c = ctx;
    char at[32];
    ctl_time(k->created_at, at);
    fprintf(c->out, "%-40s  %-5s  %-9c  %-10s  %s\n", k->label, k->usage, k->algorithm, k->kcv, at);
    return 0;
}

static int key_list(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_parse(c, argc, argv, NULL, 0, NULL, 0, 0, help_list);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    fprintf(c->out, "%-40s  %-5s  %-9s  %-10s  %s\n", "LABEL", "USAGE", "ALGORITHM", "KCV",
            "CREATED");
    rc = mpos_store_key_list(c->st, print_key, c);
    return rc == MPOS_OK ? CTL_OK : ctl_store_error(c, rc, "key list");
}

int cmd_key(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {{"list", key_list},
                                              {"generate", ctl_key_generate},
                                              {"import", ctl_key_import},
                                              {"export", ctl_key_export},
                                              {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl key list | generate | import | export\n"
                        "       (mposctl key <command> --help)\n");
}
