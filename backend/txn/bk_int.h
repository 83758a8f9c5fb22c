/* mpos_bk_txn internals: the processor's shared state, the upstream ISO 8583 link
 * (bk_upstream.c), the store-and-forward reversals (bk_saf.c) and small helpers (bk_util.c).
 *
 * Locking: the store connection and the mpos-hsmd client are each used by one thread at a
 * time (their own rules), so each has a mutex; neither is ever held while waiting for the
 * network. Order when both are needed: never nested (each call takes one, does one thing). */
#ifndef MPOS_BK_INT_H
#define MPOS_BK_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_txn.h"
#include "client.h"
#include "mpos/iso8583.h"
#include "mpos/store.h"

#define BK_MAX_WAITERS 128  /* requests waiting for a response at once */
#define BK_MSG_MAX     2048 /* longest ISO 8583 message this link sends or takes */

/* One request waiting for its response (matched by STAN and response MTI). */
struct bk_waiter {
    int used;
    uint32_t stan;
    char mti[5]; /* the response's MTI */
    int done;    /* 1: response in buf; -1: the connection dropped (outcome unknown) */
    uint8_t buf[BK_MSG_MAX];
    size_t len;
};

struct bk_upstream {
    mpos_bk_txn *p;
    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cv;
    int fd;
    int signed_on;
    int stop;
    int64_t last_send_ms;
    struct bk_waiter w[BK_MAX_WAITERS];
    pthread_mutex_t send_mu; /* one writer at a time on fd */
};

/* Results of bk_up_exchange besides a negative enum mpos_err. */
enum {
    BK_UP_ANSWERED = 0, /* a response whose MAC verified is in resp */
    BK_UP_NOT_SENT = 1, /* the link was down: nothing left this process */
    BK_UP_TIMEOUT = 2   /* sent (or may have been), no valid response in time */
};

struct mpos_bk_txn {
    mpos_bk_txn_config cfg;
    pthread_mutex_t store_mu;
    mpos_store *st;
    pthread_mutex_t hsm_mu;
    hsm_client hsm;
    /* Key blocks under the LMK, read from the store at start. */
    char zpk[MPOS_STORE_KEYBLOCK_LEN + 1];
    char zak[MPOS_STORE_KEYBLOCK_LEN + 1];
    char zek[MPOS_STORE_KEYBLOCK_LEN + 1];
    struct bk_upstream up;
    /* store-and-forward */
    pthread_t saf_thread;
    int saf_started;
    pthread_mutex_t life_mu; /* stopping, in_flight, saf_kick */
    pthread_cond_t life_cv;
    int stopping;
    int in_flight;
    int saf_kick;
};

/* ---- bk_util.c ---- */
int64_t bk_now_ms(void);
int64_t bk_now_s(void);
/* DE 7 (MMDDhhmmss, UTC) of now. */
void bk_de7(char out[11]);
/* Great-circle distance in metres between two points in 1e-7 degrees (haversine). */
double bk_distance_m(int64_t lat1_e7, int64_t lon1_e7, int64_t lat2_e7, int64_t lon2_e7);
/* "major.minor.patch[-suffix]" -> major << 16 | minor << 8 | patch; MPOS_ERR_FORMAT. */
int bk_firmware_parse(const char *s, uint32_t *out) MPOS_MUST_CHECK;
/* The value of one primitive tag in BER-TLV data (DE 55): 1 found, 0 not, <0 malformed. */
int bk_tlv_get(const uint8_t *buf, size_t len, uint32_t tag, const uint8_t **val, size_t *vlen);

/* Generates (gen = 1) or verifies the ISO 8583 MAC (DE 64/128) of a packed message under the
 * ZAK through mpos-hsmd. gen: writes the MAC into the message's last 8 bytes. */
int bk_mac(mpos_bk_txn *p, uint8_t *msg, size_t len, int gen) MPOS_MUST_CHECK;

/* ---- bk_upstream.c ---- */
int bk_up_start(mpos_bk_txn *p) MPOS_MUST_CHECK;
void bk_up_stop(mpos_bk_txn *p);
int bk_up_ready(mpos_bk_txn *p);
/* Sends msg (its DE 11 is the STAN; DE 64 or 128 is added and MAC'd here) and waits for the
 * response of MTI resp_mti with the same STAN, at most the upstream timeout. On
 * BK_UP_ANSWERED resp_buf (BK_MSG_MAX) holds the response, *resp_len its length. */
int bk_up_exchange(mpos_bk_txn *p, mpos_iso8583_msg *msg, const char *resp_mti, uint8_t *resp_buf,
                   size_t *resp_len) MPOS_MUST_CHECK;

/* ---- bk_saf.c ---- */
int bk_saf_start(mpos_bk_txn *p) MPOS_MUST_CHECK;
void bk_saf_kick(mpos_bk_txn *p);
void bk_saf_stop(mpos_bk_txn *p);
/* DE 90 (n42) of an original: MTI, STAN, DE 7, acquirer ID (11, zero-filled), 11 zeros. */
void bk_de90(const char *mti, int64_t stan, const char *de7, const char *acquirer, char out[43]);

#endif
