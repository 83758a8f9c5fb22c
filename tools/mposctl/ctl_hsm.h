/* mposctl: the mpos-hsmd helpers of cmd_hsm.c that other command files share (only when
 * mposctl is built with the HSM client, MPOSCTL_HAVE_HSM). */
#ifndef MPOSCTL_CTL_HSM_H
#define MPOSCTL_CTL_HSM_H

#include "ctl.h"

#ifdef MPOSCTL_HAVE_HSM
#include "client.h"

/* Connects to mpos-hsmd's socket (--hsm, else the configuration's [hsm] socket). CTL_OK, or
 * the exit code after printing the error. */
int ctl_hsm_open(struct ctl *c, hsm_client *hc);

/* Prints a failed hsm_client_* result (what: the command, e.g. "params publish") and returns
 * CTL_FAIL. rc: a positive HSM status, HSM_CLIENT_ERR_*, or a negative enum mpos_err. */
int ctl_hsm_error(struct ctl *c, int rc, const char *what);

/* The key block of the key labelled label (option --opt) from the open store, as a request
 * argument: in->text points into *k, which must outlive the request. */
int ctl_hsm_load_block(struct ctl *c, const char *opt, const char *label, struct mpos_store_key *k,
                       struct hsm_kb_in *in);
#endif

#endif
