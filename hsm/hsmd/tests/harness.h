/* Test and bench harness for mpos-hsmd: starts the daemon on sockets in a private temporary
 * directory with a test LMK (components file), stops it by pid, and makes key blocks under the
 * same LMK in-process (the harness opens its own vault with the same components) so that tests
 * can use keys whose values the published vectors give. */
#ifndef MPOS_HSMD_HARNESS_H
#define MPOS_HSMD_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vault.h"

enum { HARNESS_BACKEND = 0, HARNESS_TOOLS = 1, HARNESS_SWITCH = 2, HARNESS_ROLES = 3 };

struct hsmd_harness {
    char dir[64];
    char sock[HARNESS_ROLES][108];
    char audit[128];
    char comps[128];
    pid_t pid;
    /* Set before harness_start to change the defaults: the LMK arguments (NULL: the
     * components file) and a file to give hsmd as standard input (NULL: /dev/null). */
    const char *const *lmk_args;
    const char *stdin_path;
    hsm_vault vault;
    uint8_t lmk_kcv[HSM_KCV_LEN];
};

/* The two test LMK components (hex), for the audit-log leak check. */
extern const char *const harness_component_hex[2];

/* Creates the directory and components file, opens the harness vault. 0 or -1. */
int harness_init(struct hsmd_harness *h);

/* Starts hsmd_path with the three role sockets, the audit log, the components file and
 * extra_args (NULL-terminated, may be NULL); waits until every socket accepts. 0 or -1. */
int harness_start(struct hsmd_harness *h, const char *hsmd_path, const char *const *extra_args);

/* SIGTERM, then waits (at most 10 s). Returns the exit status (0 clean), -1 otherwise. */
int harness_stop(struct hsmd_harness *h);

/* Runs hsmd_path with args (NULL-terminated) and returns its exit status (for refusals). */
int harness_run(const char *hsmd_path, const char *const *args);

/* Removes the files and the directory, closes the vault. */
void harness_cleanup(struct hsmd_harness *h);

/* A key block under the test LMK: usage, algorithm, mode, exportability, DUKPT scheme, key. */
int harness_key_block(struct hsmd_harness *h, const char *usage, char alg, char mode, char exp,
                      uint8_t dukpt, const char *key_hex, char *out, size_t cap);

/* Decodes hex into out (exactly len bytes expected); aborts on a bad literal. */
void harness_hex(const char *hex, uint8_t *out, size_t len);

#endif
