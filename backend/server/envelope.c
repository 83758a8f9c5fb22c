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

static const uint8_t envelope_tags[] = {HW_T_LAT,      HW_T_LON,         HW_T_ACCURACY,
                                        HW_T_LOC_TIME, HW_T_DEVICE_ID,   HW_T_DEBUGGER,
                                        HW_T_ROOT,     HW_T_BINARY_HASH, HW_T_COUNTER};

int bs_envelope_check(const struct bs_config *c, const struct hw_msg *m, const uint8_t key[32],
                      uint64_t *last_counter, struct bs_envelope *env, const char **why)
{
    uint8_t mac[32];
    memset(env, 0, sizeof(*env));
    *why = "missing";
    for (size_t i = 0; i < sizeof(envelope_tags); i++) {
        if (!m->f[envelope_tags[i]].present) {
            return HW_ERR_ENVELOPE;
        }
    }
    if (!m->f[HW_T_MAC].present || m->mac_off == 0) {
        return HW_ERR_ENVELOPE;
    }
    /* The MAC covers the type byte up to the end of the field before mac. The type byte sits
     * just before the first field: m->f[...].v points into the same buffer. */
    const uint8_t *type_byte = m->f[HW_T_MAC].v - HW_FIELD_HDR - m->mac_off;
    if (mpos_hmac_sha256(key, 32, type_byte, m->mac_off, mac) != MPOS_OK) {
        *why = "internal";
        return HW_ERR_INTERNAL;
    }
    int good = mpos_ct_equal(mac, m->f[HW_T_MAC].v, 32);
    MPOS_WIPE_BUFFER(mac);
    if (!good) {
        *why = "mac";
        return HW_ERR_ENVELOPE;
    }
    env->counter = hw_u64(&m->f[HW_T_COUNTER]);
    if (env->counter <= *last_counter) {
        *why = "counter";
        return HW_ERR_ENVELOPE;
    }
    env->lat_e7 = (int32_t)(uint32_t)hw_u64(&m->f[HW_T_LAT]);
    env->lon_e7 = (int32_t)(uint32_t)hw_u64(&m->f[HW_T_LON]);
    env->accuracy_m = (uint32_t)hw_u64(&m->f[HW_T_ACCURACY]);
    env->loc_time = hw_u64(&m->f[HW_T_LOC_TIME]);
    memcpy(env->device_id, m->f[HW_T_DEVICE_ID].v, 32);
    uint8_t dbg = m->f[HW_T_DEBUGGER].v[0], root = m->f[HW_T_ROOT].v[0];
    memcpy(env->binary_hash, m->f[HW_T_BINARY_HASH].v, 32);
    if (env->lat_e7 < -900000000 || env->lat_e7 > 900000000 || env->lon_e7 < -1800000000 ||
        env->lon_e7 > 1800000000 || dbg > 1 || root > 1) {
        *why = "range";
        return HW_ERR_ENVELOPE;
    }
    env->debugger = dbg;
    env->root = root;
    /* Authentic: the counter moves even if the policy refuses, so the message cannot be
     * replayed either way. */
    *last_counter = env->counter;
    if (env->root && !c->allow_root) {
        *why = "root";
        return HW_ERR_INTEGRITY;
    }
    if (env->debugger && !c->allow_debugger) {
        *why = "debugger";
        return HW_ERR_INTEGRITY;
    }
    if (c->n_binary_hashes > 0) {
        int known = 0;
        for (size_t i = 0; i < c->n_binary_hashes; i++) {
            known |= mpos_ct_equal(c->binary_hashes[i], env->binary_hash, 32);
        }
        if (!known) {
            *why = "binary_hash";
            return HW_ERR_INTEGRITY;
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
