/* mposctl settle: closes the open settlement batch of one merchant (or of every merchant) and
 * prints its totals per terminal as key=value lines, the same lines mpos-backend's SETTLE
 * answer carries (mpos_store_settle). */
#include "ctl.h"

/* The group table in main.c names it; ctl.h is shared with other commands. */
int cmd_settle(struct ctl *c, int argc, char **argv);

static const char help_settle[] =
    "usage: mposctl settle [--merchant ID]\n"
    "Closes the open batch of the merchant (of every merchant without --merchant): each gets a\n"
    "new batch number, and its completed transactions are settled in it. Prints one line per\n"
    "terminal: batch, merchant, terminal, currency, count and amount of approved sales,\n"
    "refunds and voids (reversed transactions excluded), and the net amount; then\n"
    "batches=N.\n";

static int print_totals(void *ctx, const struct mpos_store_settle_totals *t)
{
    struct ctl *c = ctx;
    fprintf(c->out,
            "batch=%lld merchant=%s terminal=%s currency=%lld sale_count=%lld sale_amount=%lld "
            "refund_count=%lld refund_amount=%lld void_count=%lld void_amount=%lld "
            "net_amount=%lld\n",
            (long long)t->batch, ctl_echo(t->merchant_id), ctl_echo(t->tid), (long long)t->currency,
            (long long)t->sale_count, (long long)t->sale_amount, (long long)t->refund_count,
            (long long)t->refund_amount, (long long)t->void_count, (long long)t->void_amount,
            (long long)(t->sale_amount - t->refund_amount - t->void_amount));
    return 0;
}

int cmd_settle(struct ctl *c, int argc, char **argv)
{
    struct ctl_opt opts[] = {{"merchant", 1, NULL}};
    int64_t batches = 0;
    int rc = ctl_parse(c, argc, argv, opts, CTL_NOPTS(opts), NULL, 0, 0, help_settle);
    if (rc != CTL_OK) {
        return rc;
    }
    const char *mid = ctl_get(opts, CTL_NOPTS(opts), "merchant");
    if (mid != NULL && !mpos_store_merchant_id_valid(mid)) {
        return ctl_error(c, CTL_USAGE, "--merchant: 1 to 15 of A-Z 0-9");
    }
    rc = ctl_open_store(c, 0, 0);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = mpos_store_settle(c->st, mid, c->now, print_totals, c, &batches);
    if (rc != MPOS_OK) {
        return ctl_store_error(c, rc, mid != NULL ? "merchant" : "settlement");
    }
    fprintf(c->out, "batches=%lld\n", (long long)batches);
    return CTL_OK;
}
