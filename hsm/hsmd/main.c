/* mpos-hsmd: the back end's HSM boundary (docs/hsm-design.md, docs/hsm-protocol.md).
 *
 * Start-up order: core dumps off; configuration; audit log; locked vault and LMK; role sockets
 * (bound and chowned while still root); privilege drop (service user, no capabilities, no new
 * privileges, not dumpable) and its verification; workers; event loop. SIGTERM or SIGINT:
 * the loops stop, the workers' contexts and the vault are wiped, exit 0. */
#include "hsmd.h"

#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static struct hsmd_config cfg;
    static struct hsmd_server srv;
    int rc = 1;
    int was_root = geteuid() == 0;
    if (hsmd_harden_early() != 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    hsmd_config_defaults(&cfg);
    if (hsmd_config_load(&cfg, argc, argv) != 0) {
        hsmd_config_free(&cfg);
        return 2;
    }
    srv.cfg = &cfg;
    srv.audit.fd = -1;
    if (evthread_use_pthreads() != 0 || hsmd_audit_open(&srv.audit, cfg.audit_log) != 0) {
        goto exit;
    }
    if (hsm_vault_init(&srv.vault) != MPOS_OK) {
        fprintf(stderr, "mpos-hsmd: refusing to start: the key arena cannot be locked in memory "
                        "(mlock; check RLIMIT_MEMLOCK / CAP_IPC_LOCK)\n");
        goto exit;
    }
    if (hsmd_lmk_open(&srv.vault, &cfg) != 0) {
        goto exit;
    }
    if (hsmd_server_listen(&srv, was_root) != 0 || hsmd_drop_privileges(was_root) != 0) {
        fprintf(stderr, "mpos-hsmd: refusing to start\n");
        goto exit;
    }
    srv.n_workers = cfg.workers;
    srv.workers = calloc(cfg.workers, sizeof(*srv.workers));
    if (srv.workers == NULL) {
        goto exit;
    }
    for (unsigned i = 0; i < srv.n_workers; i++) {
        srv.workers[i].srv = &srv;
        srv.workers[i].index = i;
    }
    srv.started = time(NULL);
    hsmd_audit_line(&srv.audit, -1, getpid(), getuid(), 0, 0, "start", NULL, NULL, "ok");
    if (hsmd_server_run(&srv) == 0) {
        rc = 0;
    }
exit:
    hsmd_server_shutdown(&srv);
    free(srv.workers);
    srv.workers = NULL;
    hsm_vault_close(&srv.vault);
    if (srv.audit.fd >= 0) {
        hsmd_audit_line(&srv.audit, -1, getpid(), getuid(), 0, 0, "stop", NULL, NULL,
                        rc == 0 ? "ok" : "error");
    }
    hsmd_audit_close(&srv.audit);
    hsmd_config_free(&cfg);
    return rc;
}
