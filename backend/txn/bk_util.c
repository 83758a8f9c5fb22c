/* mpos_bk_txn: small helpers (clock, DE 7, distance, firmware version, DE 55 lookup) and the
 * ISO 8583 MAC through mpos-hsmd (the ZAK never leaves it). */
#define _GNU_SOURCE /* clock_gettime, gmtime_r, strcasecmp, M_PI */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bk_int.h"
#include "mpos/tlv.h"

int64_t bk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bk_now_s(void)
{
    return (int64_t)time(NULL);
}

void bk_de7(char out[11])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    snprintf(buf, sizeof(buf), "%02u%02u%02u%02u%02u", (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u);
    memcpy(out, buf, 10);
    out[10] = '\0';
}

double bk_distance_m(int64_t lat1_e7, int64_t lon1_e7, int64_t lat2_e7, int64_t lon2_e7)
{
    const double r = 6371008.8; /* mean Earth radius, metres (IUGG) */
    const double rad = M_PI / 180.0 / 1e7;
    double p1 = (double)lat1_e7 * rad, p2 = (double)lat2_e7 * rad;
    double dp = p2 - p1, dl = (double)(lon2_e7 - lon1_e7) * rad;
    double a = sin(dp / 2) * sin(dp / 2) + cos(p1) * cos(p2) * sin(dl / 2) * sin(dl / 2);
    if (a > 1.0) {
        a = 1.0;
    }
    return 2.0 * r * asin(sqrt(a));
}

static int parse_part(const char **s, unsigned *out)
{
    unsigned v = 0;
    int digits = 0;
    while (**s >= '0' && **s <= '9' && digits < 4) {
        v = v * 10 + (unsigned)(**s - '0');
        (*s)++;
        digits++;
    }
    if (digits == 0 || v > 255) {
        return MPOS_ERR_FORMAT;
    }
    *out = v;
    return MPOS_OK;
}

int bk_firmware_parse(const char *s, uint32_t *out)
{
    unsigned a = 0, b = 0, c = 0;
    if (s == NULL || parse_part(&s, &a) != MPOS_OK || *s++ != '.' ||
        parse_part(&s, &b) != MPOS_OK || *s++ != '.' || parse_part(&s, &c) != MPOS_OK ||
        (*s != '\0' && *s != '-')) {
        return MPOS_ERR_FORMAT;
    }
    *out = (uint32_t)(a << 16 | b << 8 | c);
    return MPOS_OK;
}

int bk_tlv_get(const uint8_t *buf, size_t len, uint32_t tag, const uint8_t **val, size_t *vlen)
{
    mpos_tlv obj;
    int found = 0;
    *val = NULL;
    *vlen = 0;
    if (len == 0) {
        return 0;
    }
    int rc = mpos_tlv_find_deep(buf, len, 0, tag, &obj, &found);
    if (rc != MPOS_OK) {
        return rc;
    }
    if (found && !obj.constructed) {
        *val = obj.value;
        *vlen = obj.len;
        return 1;
    }
    return 0;
}

int bk_mac(mpos_bk_txn *p, uint8_t *msg, size_t len, int gen)
{
    size_t mac_in = 0;
    int rc = mpos_iso8583_mac_range(msg, len, &mac_in);
    if (rc != MPOS_OK) {
        return rc;
    }
    struct hsm_mac_req req;
    struct hsm_mac_resp resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.alg = HSM_MAC_ISO9797_3;
    req.key.text = p->zak;
    req.key.len = strlen(p->zak);
    req.data = msg;
    req.data_len = mac_in;
    pthread_mutex_lock(&p->hsm_mu);
    if (gen) {
        req.mac_len = MPOS_ISO8583_MAC_LEN;
        rc = hsm_client_mac_generate(&p->hsm, &req, &resp);
    } else {
        memcpy(req.mac, msg + mac_in, MPOS_ISO8583_MAC_LEN);
        req.mac_len = MPOS_ISO8583_MAC_LEN;
        rc = hsm_client_mac_verify(&p->hsm, &req);
    }
    pthread_mutex_unlock(&p->hsm_mu);
    if (rc == 0 && gen) {
        if (resp.mac_len != MPOS_ISO8583_MAC_LEN) {
            return MPOS_ERR_CRYPTO;
        }
        memcpy(msg + mac_in, resp.mac, MPOS_ISO8583_MAC_LEN);
    }
    /* hsmd's refusal (a positive status) is a MAC that does not verify, or a key problem. */
    return rc == 0 ? MPOS_OK : rc > 0 ? MPOS_ERR_VERIFY : rc;
}
