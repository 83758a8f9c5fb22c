/* mposctl operator: cashier-app operators (A-OPER-1). */
#include "ctl.h"
#include "mpos/crypto.h"
#include "mpos/password.h"
#include "mpos/util.h"

static const char help_add[] =
    "usage: mposctl operator add --merchant ID --role cashier|supervisor [--username USER]\n"
    "Adds an operator of the cashier app. The password is read from the terminal (asked\n"
    "twice, not echoed) or, when standard input is not a terminal, from its first line; it\n"
    "is never taken from the command line. It must have at least 12 characters, of at\n"
    "least two kinds (lowercase, uppercase, digits, other), at least 5 different\n"
    "characters, and must not contain the username. Only an Argon2id hash is stored\n"
    "(t=3, m=64 MiB, p=1, 16-byte random salt).\n"
    "  --username USER   3 to 32 letters, digits, '.', '_' or '-' (stored in lowercase);\n"
    "                    default: a new unique one, 'op' and 8 random lowercase base32\n"
    "                    characters, printed first as username=USER\n";

static const char help_list[] =
    "usage: mposctl operator list [--merchant ID]\n"
    "Lists operators: merchant, username, role, failed logins, locked until, last login.\n";

/* A fresh username: "op" + 8 characters of lowercase base32 (RFC 4648 6), 40 random bits. */
static int generate_username(char out[11])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t r[8];
    if (mpos_random_bytes(r, sizeof(r)) != MPOS_OK) {
        return 0;
    }
    out[0] = 'o';
    out[1] = 'p';
    for (size_t i = 0; i < sizeof(r); i++) {
        out[2 + i] = b32[r[i] & 31u];
    }
    out[10] = '\0';
    return 1;
}

static int operator_add(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"merchant", 1, NULL}, {"role", 1, NULL}, {"username", 1, NULL}};
    char password[MPOS_PASSWORD_MAX_BYTES + 3];
    char generated[11] = "";
    enum mpos_operator_role role = 0;
    int reason = 0;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_add);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *merchant = ctl_get(opts, CTL_NOPTS(opts), "merchant");
    const char *role_arg = ctl_get(opts, CTL_NOPTS(opts), "role");
    const char *user = ctl_get(opts, CTL_NOPTS(opts), "username");
    if (merchant == NULL || role_arg == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --%s (try --help)",
                         merchant == NULL ? "merchant" : "role");
    }
    if (!mpos_store_merchant_id_valid(merchant)) {
        return ctl_error(c, CTL_USAGE, "--merchant: 1 to 15 letters or digits");
    }
    if (mpos_operator_role_parse(role_arg, &role) != MPOS_OK) {
        return ctl_error(c, CTL_USAGE, "--role: cashier or supervisor");
    }
    if (user == NULL) {
        if (!generate_username(generated)) {
            return ctl_error(c, CTL_FAIL, "random generator failed");
        }
        user = generated;
    }
    if (!mpos_store_username_valid(user)) {
        return ctl_error(c, CTL_USAGE, "--username: 3 to 32 letters, digits, '.', '_' or '-'");
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_read_password(c, user, password, sizeof(password));
    if (rc != CTL_OK) {
        goto exit;
    }
    rc = mpos_store_operator_add(c->st, merchant, user, role, password, c->now, &reason);
    /* A generated name already taken (1 in 2^40 per operator): another one. */
    for (int i = 0; rc == MPOS_STORE_EXISTS && generated[0] != '\0' && i < 5; i++) {
        if (!generate_username(generated)) {
            rc = ctl_error(c, CTL_FAIL, "random generator failed");
            goto exit;
        }
        rc = mpos_store_operator_add(c->st, merchant, user, role, password, c->now, &reason);
    }
    if (rc == MPOS_STORE_WEAK_PASSWORD) {
        rc = ctl_error(c, CTL_FAIL, "%s", mpos_password_policy_message(reason));
    } else if (rc == MPOS_STORE_EXISTS) {
        rc = ctl_error(c, CTL_FAIL, "operator %s already exists for merchant %s", ctl_echo(user),
                       ctl_echo(merchant));
    } else if (rc == MPOS_STORE_NOT_FOUND) {
        rc = ctl_error(c, CTL_FAIL, "no merchant %s", ctl_echo(merchant));
    } else if (rc != MPOS_OK) {
        rc = ctl_store_error(c, rc, "operator add");
    } else {
        if (generated[0] != '\0') {
            fprintf(c->out, "username=%s\n", user);
        }
        fprintf(c->out, "operator %s added (%s)\n", ctl_echo(user), mpos_operator_role_name(role));
        rc = CTL_OK;
    }
exit:
    MPOS_WIPE_BUFFER(password);
    return rc;
}

static int print_operator(void *ctx, const struct mpos_store_operator *o)
{
    struct ctl *c = ctx;
    char locked[32], login[32];
    ctl_time(o->locked_until > c->now ? o->locked_until : 0, locked);
    ctl_time(o->last_login_at, login);
    fprintf(c->out, "%-15s  %-32s  %-10s  %6lld  %-20s  %s%s\n", o->merchant_id, o->username,
            mpos_operator_role_name(o->role), (long long)o->failed_attempts, locked, login,
            o->disabled_at != 0 ? "  disabled" : "");
    return 0;
}

static int operator_list(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"merchant", 1, NULL}};
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_list);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *merchant = ctl_get(opts, CTL_NOPTS(opts), "merchant");
    if (merchant != NULL && !mpos_store_merchant_id_valid(merchant)) {
        return ctl_error(c, CTL_USAGE, "--merchant: 1 to 15 letters or digits");
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    fprintf(c->out, "%-15s  %-32s  %-10s  %6s  %-20s  %s\n", "MERCHANT", "USERNAME", "ROLE",
            "FAILED", "LOCKED-UNTIL", "LAST-LOGIN");
    rc = mpos_store_operator_list(c->st, merchant, print_operator, c);
    return rc == MPOS_OK ? CTL_OK : ctl_store_error(c, rc, "operator list");
}

int cmd_operator(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {
        {"add", operator_add}, {"list", operator_list}, {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl operator add | list   (mposctl operator <command> "
                        "--help)\n");
}
