/* mposctl terminal: assignment and activation codes, the state machine, listings. */
#include <string.h>

#include "ctl.h"
#include "mpos/activation.h"
#include "mpos/util.h"

static const char help_assign[] =
    "usage: mposctl terminal assign SERIAL --merchant ID [--location LAT,LON,RADIUS_M]\n"
    "                               [--ttl DURATION] [--reassign]\n"
    "Assigns a terminal to a merchant (registering it if it is new) and prints a one-time\n"
    "activation code and its expiry (UTC). The code is 80 random bits as 16 characters of\n"
    "Crockford base32 in four groups; only its hash is stored, and it is shown this once.\n"
    "Any earlier unused code of the terminal is revoked; the terminal must activate with\n"
    "the new one.\n"
    "  --merchant ID      the merchant\n"
    "  --location L       registered location for anti-relocation: latitude and longitude in\n"
    "                     decimal degrees (up to 6 decimals) and a radius in metres, e.g.\n"
    "                     48.856614,2.352222,250\n"
    "  --ttl DURATION     code validity: Ns, Nm, Nh or Nd, 5m to 30d (default 24h)\n"
    "  --reassign         required to move an active or suspended terminal: it then\n"
    "                     returns to provisioned and must activate again\n"
    "Output:\n"
    "  activation-code XXXX-XXXX-XXXX-XXXX\n"
    "  expires 2025-01-31T12:00:00Z\n";

static const char help_state[] =
    "usage: mposctl terminal suspend | resume | retire SERIAL\n"
    "State machine: provisioned -> active on activation; suspend from provisioned or active;\n"
    "resume a suspended terminal (back to active if it was ever activated, else to\n"
    "provisioned); retire from any state but retired. Retired is final: the terminal never\n"
    "transacts or activates again and its KSN is never reused. Prints: SERIAL STATE\n";

static const char help_list[] =
    "usage: mposctl terminal list [--merchant ID]\n"
    "Lists terminals: serial, merchant, terminal ID, state, key scheme, initial KSN (DUKPT)\n"
    "or TMK check value (mkwk), certificate SHA-256 fingerprint. Never a key.\n";

static const char help_show[] = "usage: mposctl terminal show SERIAL\n"
                                "Prints every recorded attribute of one terminal (no key).\n";

static int serial_arg(struct ctl *c, const char *serial)
{
    if (!mpos_store_serial_valid(serial)) {
        return ctl_error(c, CTL_USAGE, "SERIAL: 1 to 32 letters, digits or '-' (case-sensitive)");
    }
    return CTL_OK;
}

static int terminal_assign(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {
        {"merchant", 1, NULL}, {"location", 1, NULL}, {"ttl", 1, NULL}, {"reassign", 0, NULL}};
    const char *pos[1];
    char code[MPOS_ACTIVATION_CODE_LEN + 1] = "";
    char expires[32];
    struct mpos_store_location loc = {0};
    int64_t ttl = 86400;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), pos, 1, 1, help_assign);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *merchant = ctl_get(opts, CTL_NOPTS(opts), "merchant");
    const char *location = ctl_get(opts, CTL_NOPTS(opts), "location");
    const char *ttl_arg = ctl_get(opts, CTL_NOPTS(opts), "ttl");
    int reassign = ctl_get(opts, CTL_NOPTS(opts), "reassign") != NULL;
    rc = serial_arg(c, pos[0]);
    if (rc != CTL_OK) {
        return rc;
    }
    if (merchant == NULL) {
        return ctl_error(c, CTL_USAGE, "missing --merchant (try --help)");
    }
    if (!mpos_store_merchant_id_valid(merchant)) {
        return ctl_error(c, CTL_USAGE, "--merchant: 1 to 15 letters or digits");
    }
    if (location != NULL && !ctl_location(location, &loc)) {
        return ctl_error(c, CTL_USAGE,
                         "--location: LAT,LON,RADIUS_M with |LAT| <= 90, |LON| <= 180 (up to 6 "
                         "decimals) and a radius of 1 to 20000000 metres");
    }
    if (ttl_arg != NULL && !ctl_duration(ttl_arg, 300, 30 * 86400, &ttl)) {
        return ctl_error(c, CTL_USAGE, "--ttl: a duration from 5m to 30d (e.g. 90m, 24h, 7d)");
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_activation_code_generate(code);
    if (rc != MPOS_OK) {
        return ctl_error(c, CTL_FAIL, "random generator failed");
    }
    rc = mpos_store_terminal_assign(c->st, pos[0], merchant, location != NULL ? &loc : NULL,
                                    reassign, code, c->now + ttl, c->now);
    if (rc == MPOS_OK) {
        ctl_time(c->now + ttl, expires);
        fprintf(c->out, "activation-code %s\nexpires %s\n", code, expires);
        rc = CTL_OK;
    } else if (rc == MPOS_STORE_NOT_FOUND) {
        rc = ctl_error(c, CTL_FAIL, "no merchant %s", ctl_echo(merchant));
    } else if (rc == MPOS_STORE_STATE) {
        struct mpos_store_terminal t;
        int grc = mpos_store_terminal_get(c->st, pos[0], &t);
        if (grc == MPOS_OK && t.state == MPOS_TERMINAL_RETIRED) {
            rc = ctl_error(c, CTL_FAIL, "terminal %s is retired", ctl_echo(pos[0]));
        } else if (grc == MPOS_OK) {
            rc = ctl_error(c, CTL_FAIL, "terminal %s is %s: give --reassign to move it",
                           ctl_echo(pos[0]), mpos_terminal_state_name(t.state));
        } else {
            rc = ctl_store_error(c, MPOS_STORE_STATE, "terminal assign");
        }
    } else {
        rc = ctl_store_error(c, rc, "terminal assign");
    }
    mpos_cleanse(code, sizeof(code));
    return rc;
}

static int transition(struct ctl *c, int argc, char **argv, enum mpos_terminal_action action)
{
    const char *pos[1];
    enum mpos_terminal_state to = 0;
    int rc = ctl_parse(c, argc, argv, NULL, 0, pos, 1, 1, help_state);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = serial_arg(c, pos[0]);
    if (rc == CTL_OK) {
        rc = ctl_open_store(c, 0, 0);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_terminal_transition(c->st, pos[0], action, c->now, &to);
    if (rc == MPOS_STORE_NOT_FOUND) {
        return ctl_error(c, CTL_FAIL, "no terminal %s", ctl_echo(pos[0]));
    }
    if (rc == MPOS_STORE_STATE) {
        return ctl_error(c, CTL_FAIL, "terminal %s is %s: cannot %s it", ctl_echo(pos[0]),
                         mpos_terminal_state_name(to), argv[0]);
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "terminal");
    }
    struct mpos_store_terminal t;
    if (mpos_store_terminal_get(c->st, pos[0], &t) == MPOS_OK) {
        fprintf(c->out, "%s %s\n", t.serial, mpos_terminal_state_name(to));
    }
    return CTL_OK;
}

static int terminal_suspend(struct ctl *c, int argc, char **argv)
{
    return transition(c, argc, argv, MPOS_TERMINAL_SUSPEND);
}

static int terminal_resume(struct ctl *c, int argc, char **argv)
{
    return transition(c, argc, argv, MPOS_TERMINAL_RESUME);
}

static int terminal_retire(struct ctl *c, int argc, char **argv)
{
    return transition(c, argc, argv, MPOS_TERMINAL_RETIRE);
}

static const char *or_dash(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "-";
}

static int print_terminal(void *ctx, const struct mpos_store_terminal *t)
{
    struct ctl *c = ctx;
    const char *key = t->scheme == MPOS_SCHEME_MKWK ? t->tmk_kcv : t->initial_ksn;
    fprintf(c->out, "%-20s  %-15s  %-8s  %-11s  %-10s  %-20s  %s\n", t->serial,
            or_dash(t->merchant_id), or_dash(t->tid), mpos_terminal_state_name(t->state),
            t->scheme == MPOS_SCHEME_NONE ? "-" : mpos_terminal_scheme_name(t->scheme),
            or_dash(key), or_dash(t->cert_sha256));
    return 0;
}

static int terminal_list(struct ctl *c, int argc, char **argv)
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
    fprintf(c->out, "%-20s  %-15s  %-8s  %-11s  %-10s  %-20s  %s\n", "SERIAL", "MERCHANT", "TID",
            "STATE", "SCHEME", "KSN/KCV", "CERT-SHA256");
    rc = mpos_store_terminal_list(c->st, merchant, print_terminal, c);
    return rc == MPOS_OK ? CTL_OK : ctl_store_error(c, rc, "terminal list");
}

static int terminal_show(struct ctl *c, int argc, char **argv)
{
    const char *pos[1];
    struct mpos_store_terminal t;
    char tm[5][32];
    int rc = ctl_parse(c, argc, argv, NULL, 0, pos, 1, 1, help_show);
    if (rc == CTL_OK) {
        rc = serial_arg(c, pos[0]);
    }
    if (rc == CTL_OK) {
        rc = ctl_open_store(c, 0, 0);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_terminal_get(c->st, pos[0], &t);
    if (rc == MPOS_STORE_NOT_FOUND) {
        return ctl_error(c, CTL_FAIL, "no terminal %s", ctl_echo(pos[0]));
    }
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, "terminal show");
    }
    ctl_time(t.created_at, tm[0]);
    ctl_time(t.provisioned_at, tm[1]);
    ctl_time(t.activated_at, tm[2]);
    ctl_time(t.retired_at, tm[3]);
    ctl_time(t.updated_at, tm[4]);
    fprintf(c->out, "serial          %s\n", t.serial);
    fprintf(c->out, "merchant        %s\n", or_dash(t.merchant_id));
    fprintf(c->out, "tid             %s\n", or_dash(t.tid));
    fprintf(c->out, "state           %s\n", mpos_terminal_state_name(t.state));
    fprintf(c->out, "scheme          %s\n",
            t.scheme == MPOS_SCHEME_NONE ? "-" : mpos_terminal_scheme_name(t.scheme));
    fprintf(c->out, "initial-ksn     %s\n", or_dash(t.initial_ksn));
    fprintf(c->out, "tmk-kcv         %s\n", or_dash(t.tmk_kcv));
    fprintf(c->out, "key-label       %s\n", or_dash(t.key_label));
    fprintf(c->out, "cert-sha256     %s\n", or_dash(t.cert_sha256));
    if (t.location.set) {
        long long la = (long long)t.location.lat_e6, lo = (long long)t.location.lon_e6;
        fprintf(c->out, "location        %s%lld.%06lld,%s%lld.%06lld,%lld\n", la < 0 ? "-" : "",
                (la < 0 ? -la : la) / 1000000, (la < 0 ? -la : la) % 1000000, lo < 0 ? "-" : "",
                (lo < 0 ? -lo : lo) / 1000000, (lo < 0 ? -lo : lo) % 1000000,
                (long long)t.location.radius_m);
    } else {
        fprintf(c->out, "location        -\n");
    }
    fprintf(c->out, "host-binding    %s\n", or_dash(t.host_binding));
    if (t.has_ksn_counter) {
        fprintf(c->out, "last-ksn-counter %lld\n", (long long)t.last_ksn_counter);
    } else {
        fprintf(c->out, "last-ksn-counter -\n");
    }
    fprintf(c->out, "created         %s\nprovisioned     %s\nactivated       %s\n", tm[0], tm[1],
            tm[2]);
    fprintf(c->out, "retired         %s\nupdated         %s\n", tm[3], tm[4]);
    return CTL_OK;
}

int cmd_terminal(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_command cmds[] = {{"assign", terminal_assign},
                                              {"suspend", terminal_suspend},
                                              {"resume", terminal_resume},
                                              {"retire", terminal_retire},
                                              {"list", terminal_list},
                                              {"show", terminal_show},
                                              {"provision", ctl_terminal_provision},
                                              {NULL, NULL}};
    return ctl_dispatch(c, argc, argv, cmds,
                        "usage: mposctl terminal assign | suspend | resume | retire | list | "
                        "show | provision\n"
                        "       (mposctl terminal <command> --help)\n");
}
