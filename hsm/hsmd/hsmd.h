/* mpos-hsmd internals: configuration, server context, workers, sessions, audit, hardening.
 * docs/hsm-design.md describes the daemon; docs/hsm-protocol.md its wire protocol.
 *
 * Threads: the main thread owns the listeners (one per role socket) and the signals; each
 * worker thread runs its own libevent loop with the sessions handed to it, its own copy of
 * the vault handle with its own mpos_crypto_ctx, and does I/O and crypto of those sessions.
 * Nothing is shared between workers but the read-only vault arena, the configuration, the
 * audit file descriptor and a few atomic counters. */
#ifndef MPOS_HSMD_H
#define MPOS_HSMD_H

#define _GNU_SOURCE 1 /* SO_PEERCRED, struct ucred, setresuid */

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "mpos/daemon.h"
#include "ops.h"
#include "proto.h"
#include "vault.h"

#define HSMD_VERSION        "openmpos 0.1.0"
#define HSMD_MAX_WORKERS    64
#define HSMD_SERVICE_ID     65534        /* uid/gid after the drop when started as root */
#define HSMD_OUT_HIGH_WATER (256 * 1024) /* stop reading a client whose replies pile up */
#define HSMD_KCV_CACHE_SIZE 64           /* key blocks whose check values a worker remembers */

enum hsmd_role { HSMD_ROLE_BACKEND = 0, HSMD_ROLE_TOOLS = 1, HSMD_ROLE_SWITCH = 2, HSMD_ROLES };

enum hsmd_lmk_source {
    HSMD_LMK_NONE = 0,
    HSMD_LMK_PKCS11,         /* token + wrapped LMK file */
    HSMD_LMK_COMPONENTS,     /* dual control: components typed on stdin */
    HSMD_LMK_COMPONENTS_FILE /* tests: components and check values from a file */
};

struct hsmd_config {
    char *socket[HSMD_ROLES];    /* NULL: no socket for that role */
    long socket_uid[HSMD_ROLES]; /* owner of the socket (the client's service user); -1 default */
    long socket_gid[HSMD_ROLES];
    uint64_t allow[HSMD_ROLES]; /* bit i: command i of hsm_proto_commands() */
    unsigned workers;
    size_t max_request;
    unsigned idle_timeout; /* seconds */
    unsigned max_clients;
    char *audit_log;
    enum hsmd_lmk_source lmk_source;
    char *pkcs11_module;
    char *token_label;
    char *pin_file;
    char *lmk_wrapped;
    unsigned components; /* 2 or 3 */
    char *components_file;
};

/* config.c */
void hsmd_config_defaults(struct hsmd_config *c);
/* Reads the command line (and the INI file it names, whose values the flags override).
 * 0, or -1 with a message on stderr. */
int hsmd_config_load(struct hsmd_config *c, int argc, char **argv);
void hsmd_config_free(struct hsmd_config *c);
const char *hsmd_role_name(int role);
/* Parses a list of command names separated by spaces or commas into an allow mask. */
int hsmd_allow_parse(const char *list, uint64_t *mask);
void hsmd_usage(void);

/* audit.c: one line per command, one write(2) each (O_APPEND), never a secret. */
struct hsmd_audit {
    int fd;
};
int hsmd_audit_open(struct hsmd_audit *a, const char *path);
void hsmd_audit_close(struct hsmd_audit *a);
/* Writes "time role=.. pid=.. uid=.. conn=.. id=.. cmd=.. kcv=.. [note] result=..". kcvs is a
 * comma-separated hex list or NULL; cmd a command name or an event ("connect", "timeout");
 * note NULL, "" or "name=value" pairs a command adds (sealed.open: "pan=" and the masked PAN,
 * first 6 and last 4 digits), never a secret. */
void hsmd_audit_line(struct hsmd_audit *a, int role, pid_t pid, uid_t uid, uint64_t conn,
                     uint32_t request_id, const char *cmd, const char *kcvs, const char *note,
                     const char *result);

/* harden.c */
/* Refuses (-1, message) a directory that others can write to or another user owns. */
int hsmd_check_dir(const char *path);
/* Refuses (-1, message) a secret file that is not a regular file owned by us (or root) with
 * no group or other permission bits. */
int hsmd_check_secret_file(const char *path);
/* Core dumps off, not dumpable: called first thing. */
int hsmd_harden_early(void);
/* Root: drop the bounding set, setgroups/setresgid/setresuid to HSMD_SERVICE_ID. Everyone: no
 * new privileges, no capabilities, not dumpable; then verify (CapEff/CapPrm 0, uid not 0 when
 * started as root). -1 with a message if anything fails. */
int hsmd_drop_privileges(int was_root);

/* lmk.c: opens the vault from the configured LMK source. */
int hsmd_lmk_open(hsm_vault *v, const struct hsmd_config *c);

/* A key-block check value remembered for the audit log (the block text is public). */
struct hsmd_kcv_entry {
    uint32_t hash;
    uint16_t len;
    uint8_t kcv_len;
    uint8_t kcv[HSM_KCV_LEN];
    char text[HSM_KEYBLOCK_MAX_LEN];
};

struct hsmd_server;
struct hsmd_session;

struct hsmd_handoff {
    int fd;
    int role;
    pid_t pid;
    uid_t uid;
    uint64_t conn;
};

struct hsmd_worker {
    struct hsmd_server *srv;
    unsigned index;
    struct mpos_dworker dw; /* thread, event_base (dw.base), queue of hsmd_handoff */
    hsm_vault vault;        /* this worker's handle: shared locked arena, own crypto context */
    struct hsmd_session *sessions; /* doubly linked list of live sessions */
    uint8_t *out;                  /* response buffer, HSM_PROTO_PREFIX_LEN + max response */
    size_t out_cap;
    struct hsmd_kcv_entry kcv_cache[HSMD_KCV_CACHE_SIZE];
    struct hsm_card_data_resp card_resp; /* large: kept here rather than on the stack */
    struct hsm_provision_terminal_resp provision_resp; /* 9 KiB: likewise */
    struct hsm_sealed_open_resp sealed_resp;           /* 1 KiB: likewise */
    atomic_uint n_sessions;
};

struct hsmd_listener {
    struct hsmd_server *srv;
    int role;
    struct evconnlistener *lev;
};

struct hsmd_server {
    const struct hsmd_config *cfg;
    hsm_vault vault; /* owner of the arena */
    struct hsmd_audit audit;
    struct event_base *base; /* main thread: listeners, signals */
    struct event *sig_term, *sig_int;
    struct hsmd_listener listeners[HSMD_ROLES];
    struct hsmd_worker *workers;
    unsigned n_workers;
    unsigned next_worker;
    time_t started;
    atomic_uint_fast64_t conn_seq;
    atomic_uint_fast64_t commands, refused, sessions;
    atomic_uint clients;
};

/* server.c */
int hsmd_server_listen(struct hsmd_server *s, int was_root);
int hsmd_server_run(struct hsmd_server *s);
void hsmd_server_shutdown(struct hsmd_server *s);

/* worker.c */
int hsmd_worker_start(struct hsmd_worker *w);
void hsmd_worker_stop(struct hsmd_worker *w);
void hsmd_worker_free(struct hsmd_worker *w);
int hsmd_worker_hand(struct hsmd_worker *w, const struct hsmd_handoff *h);

/* session.c */
struct hsmd_session *hsmd_session_new(struct hsmd_worker *w, const struct hsmd_handoff *h);
void hsmd_session_free(struct hsmd_session *s);

/* Context of one command while it runs in a worker. */
struct hsmd_call {
    struct hsmd_worker *w;
    int role;
    char kcvs[96]; /* check values for the audit line, hex, comma-separated */
    char note[40]; /* more for the audit line ("pan=411111******1111"); "" none */
};

/* dispatch.c: runs the command of a decoded request and writes the whole response frame into
 * out. Returns the status sent. */
int hsmd_dispatch(struct hsmd_call *call, const hsm_msg *req, uint8_t *out, size_t cap,
                  size_t *out_len);
/* Writes a response frame with status and no field. */
size_t hsmd_error_frame(uint8_t *out, size_t cap, uint16_t command, uint32_t request_id,
                        int status);

/* kcv_cache.c: appends the check value of a key block (under the LMK) to call->kcvs. */
void hsmd_audit_kcv_block(struct hsmd_call *call, const uint8_t *text, size_t len);
void hsmd_audit_kcv_bytes(struct hsmd_call *call, const uint8_t *kcv, size_t len);

#endif
