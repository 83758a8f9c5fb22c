/* libmposhost internal: platform signals and the state file. */
#ifndef MPOSHOST_HOSTINT_H
#define MPOSHOST_HOSTINT_H

#include <stddef.h>
#include <stdint.h>

#include "mposhost.h"

/* Device ID (H-DEVID-1): HMAC-SHA-256 of the platform ID (/etc/machine-id) under the app key
 * (NULL: the built-in one). */
int host_device_id(const uint8_t *app_key, size_t app_key_len, uint8_t id[32]);
/* 1 when a tracer is attached (TracerPid in /proc/self/status). */
int host_debugger(void);
/* 1 when running with effective UID 0. */
int host_is_root(void);
/* SHA-256 of the running binary (/proc/self/exe). */
int host_binary_hash(uint8_t hash[32]);

/* The session kept between runs. */
struct host_state {
    uint8_t token[32];
    struct mposhost_session s;
};
/* Writes the state file atomically, mode 0600. */
int host_state_save(const char *path, const struct host_state *st);
/* Reads it; refuses a file that is not a regular file of ours with mode 0600 or stricter
 * (MPOSHOST_ERR_STATE); MPOSHOST_ERR_NOT_LOGGED when there is none. */
int host_state_load(const char *path, struct host_state *st);
int host_state_remove(const char *path);
/* Receipts of approved sales beside the state file (STATE.receipts, 0600): add one, or find
 * the amount and currency of an RRN (MPOSHOST_ERR_NOT_LOGGED when unknown). */
int host_receipt_add(const char *state, const char *rrn, uint64_t amount, uint16_t currency);
int host_receipt_find(const char *state, const char *rrn, uint64_t *amount, uint16_t *currency);

#endif
