/* mpos-backend: the host envelope (docs/system-design.md 1.3; H-GEO-1, H-DEVID-1, H-BASE-1).
 *
 * MAC keys are bound to the outer TLS connection through its exporter (RFC 8446 7.5), so a
 * message recorded on one connection is worthless on another; the counter makes it worthless
 * twice on the same one. The self-reported signals (root, debugger, binary hash, location)
 * are only as honest as the app that sends them: docs/backend.md says what they prove.
 */
#include "server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/ecc.h"
#include "mpos/hmac.h"
#include "mpos/hostmsg.h"
#include "mpos/util.h"

static const char LOGIN_LABEL[] = MPOS_HOSTMSG_EXPORTER_LOGIN;
static const char SESSION_LABEL[] = MPOS_HOSTMSG_EXPORTER_SESSION;

static int exporter(SSL *ssl, const char *label, uint8_t out[32])
{
    /* Empty context (use_context = 1, length 0), as 1.3 says for both labels. */
    if (SSL_export_keying_material(ssl, out, 32, label, strlen(label), (const unsigned char *)"", 0,
                                   1) != 1) {
        mpos_cleanse(out, 32);
        return MPOS_ERR_CRYPTO;
    }
    return 0;
}

int bs_login_key(SSL *ssl, uint8_t key[32])
{
    uint8_t ikm[32];
    int rc = exporter(ssl, LOGIN_LABEL, ikm);
    if (rc == 0) {
        /* HKDF (RFC 5869) as lib/hostmsg derives it for the host: one derivation for both. */
        rc = mpos_hostmsg_login_key(ikm, key);
    }
    MPOS_WIPE_BUFFER(ikm);
    return rc;
}

int bs_session_key(SSL *ssl, const uint8_t token[32], uint8_t key[32])
{
    uint8_t salt[32];
    int rc = exporter(ssl, SESSION_LABEL, salt);
    if (rc == 0) {
        rc = mpos_hostmsg_env_key(token, salt, key);
    }
    MPOS_WIPE_BUFFER(salt);
    return rc;
}

int bs_msg_parse(mpos_hostmsg *m, const uint8_t *msg, size_t len)
{
    int rc = mpos_hostmsg_parse(m, msg, len);
    if (rc == MPOS_OK) {
        rc = mpos_hostmsg_check_allowed(m);
    }
    return rc;
}

int bs_envelope_check(const struct bs_config *c, const mpos_hostmsg *m, const uint8_t key[32],
                      uint64_t *last_counter, struct bs_envelope *env, const char **why)
{
    struct mpos_hostmsg_envelope e;
    uint64_t counter = 0;
    memset(env, 0, sizeof(*env));
    *why = "missing";
    for (uint8_t tag = 0; tag < MPOS_HOSTMSG_TAG_LIMIT; tag++) {
        if ((MPOS_HOSTMSG_ENVELOPE_FIELDS & MPOS_HOSTMSG_BIT(tag)) != 0 &&
            !mpos_hostmsg_has(m, tag)) {
            return MPOS_HMERR_ENVELOPE;
        }
    }
    /* The MAC covers the type byte up to the end of the field before mac (constant time). */
    int rc = mpos_hostmsg_verify_mac(m, key, 32);
    if (rc == MPOS_ERR_VERIFY || rc == MPOS_ERR_FORMAT) {
        *why = "mac";
        return MPOS_HMERR_ENVELOPE;
    }
    if (rc != MPOS_OK) {
        *why = "internal";
        return MPOS_HMERR_INTERNAL;
    }
    if (mpos_hostmsg_get_u64(m, MPOS_HM_COUNTER, &counter) != MPOS_OK || counter <= *last_counter) {
        *why = "counter";
        return MPOS_HMERR_ENVELOPE;
    }
    /* The ranges of H-GEO-1 (lib/hostmsg: coordinates, accuracy, loc-time; flags 0/1). */
    if (mpos_hostmsg_get_envelope(m, &e) != MPOS_OK) {
        *why = "range";
        return MPOS_HMERR_ENVELOPE;
    }
    env->counter = e.counter;
    env->lat_e7 = e.lat;
    env->lon_e7 = e.lon;
    env->accuracy_m = e.accuracy;
    env->loc_time = e.loc_time;
    memcpy(env->device_id, e.device_id, sizeof(env->device_id));
    memcpy(env->binary_hash, e.binary_hash, sizeof(env->binary_hash));
    env->debugger = e.debugger;
    env->root = e.root;
    /* Authentic: the counter moves even if the policy refuses, so the message cannot be
     * replayed either way. */
    *last_counter = env->counter;
    if (env->root && !c->allow_root) {
        *why = "root";
        return MPOS_HMERR_INTEGRITY;
    }
    if (env->debugger && !c->allow_debugger) {
        *why = "debugger";
        return MPOS_HMERR_INTEGRITY;
    }
    if (c->n_binary_hashes > 0) {
        int known = 0;
        for (size_t i = 0; i < c->n_binary_hashes; i++) {
            known |= mpos_ct_equal(c->binary_hashes[i], env->binary_hash, 32);
        }
        if (!known) {
            *why = "binary_hash";
            return MPOS_HMERR_INTEGRITY;
        }
    }
    *why = "ok";
    return 0;
}

/* ---- impossible travel ------------------------------------------------------------------ */

#define TRAVEL_MAX 4096

struct place {
    char who[64];
    int32_t lat_e7, lon_e7;
    uint32_t accuracy_m;
    uint64_t t;
};

static pthread_mutex_t travel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct place places[TRAVEL_MAX];
static size_t n_places, next_evict;

/* Great-circle distance in km (haversine, mean Earth radius 6371 km). */
static double distance_km(int32_t lat1, int32_t lon1, int32_t lat2, int32_t lon2)
{
    const double d2r = 3.14159265358979323846 / 180.0;
    double p1 = lat1 / 1e7 * d2r, p2 = lat2 / 1e7 * d2r;
    double dp = p2 - p1, dl = (lon2 - lon1) / 1e7 * d2r;
    double a = sin(dp / 2) * sin(dp / 2) + cos(p1) * cos(p2) * sin(dl / 2) * sin(dl / 2);
    return 2 * 6371.0 * atan2(sqrt(a), sqrt(1 - a));
}

int bs_travel_check(const char *who, const struct bs_envelope *env, int max_speed_kmh)
{
    int alert = 0;
    size_t i;
    pthread_mutex_lock(&travel_lock);
    for (i = 0; i < n_places; i++) {
        if (strncmp(places[i].who, who, sizeof(places[i].who)) == 0) {
            break;
        }
    }
    if (i < n_places) {
        struct place *p = &places[i];
        double km = distance_km(p->lat_e7, p->lon_e7, env->lat_e7, env->lon_e7);
        uint64_t dt = env->loc_time > p->t ? env->loc_time - p->t : p->t - env->loc_time;
        /* Allowance: the speed over the time between the fixes, plus both fixes' accuracy. */
        double allowed = (double)max_speed_kmh * (double)dt / 3600.0 +
                         ((double)p->accuracy_m + (double)env->accuracy_m) / 1000.0;
        alert = km > allowed;
    } else if (n_places < TRAVEL_MAX) {
        i = n_places++;
    } else {
        i = next_evict++ % TRAVEL_MAX; /* a bounded table: the oldest slots are reused */
    }
    struct place *p = &places[i];
    strncpy(p->who, who, sizeof(p->who) - 1);
    p->who[sizeof(p->who) - 1] = '\0';
    p->lat_e7 = env->lat_e7;
    p->lon_e7 = env->lon_e7;
    p->accuracy_m = env->accuracy_m;
    p->t = env->loc_time;
    pthread_mutex_unlock(&travel_lock);
    return alert;
}

void bs_travel_free(void)
{
    pthread_mutex_lock(&travel_lock);
    memset(places, 0, sizeof(places));
    n_places = 0;
    pthread_mutex_unlock(&travel_lock);
}
