/* libmposhost: the location from gpsd through libgps (H-GEO-1, docs/host.md "Location").
 *
 * Compiled only when libgps is there (host/lib/CMakeLists.txt). One short conversation: open,
 * ?WATCH={"enable":true,"json":true}, read reports until the first TPV with a 2D or 3D fix,
 * close. The whole wait is bounded so a cashier never stares at a hung command because the
 * receiver has no sky view.
 */
#define _POSIX_C_SOURCE 200809L

#include <gps.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mposhost_gps.h"

/* The fix time the terminal accepts in SET_HOST_LOCATION (docs/protocol.md 1.3). */
#define FIX_TIME_MIN 946684800ull  /* 2000-01-01 */
#define FIX_TIME_MAX 4102444799ull /* 2099-12-31 23:59:59 */
#define ACCURACY_MAX 1000000.0

static void why_set(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || cap == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port; the port 1..65535 in decimal. */
static int split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon, *h = s, *p;
    size_t hn;
    char *end = NULL;
    unsigned long v;
    if (s == NULL) {
        s = MPOSHOST_GPSD_DEFAULT;
        h = s;
    }
    colon = strrchr(s, ':');
    if (colon == NULL) {
        return -1;
    }
    hn = (size_t)(colon - s);
    if (hn >= 2 && s[0] == '[' && s[hn - 1] == ']') {
        h = s + 1;
        hn -= 2;
    } else if (memchr(s, ':', hn) != NULL) {
        return -1; /* a bare IPv6 address is ambiguous: brackets required */
    }
    p = colon + 1;
    if (hn == 0 || hn >= hcap || p[0] < '0' || p[0] > '9' || strlen(p) >= pcap) {
        return -1;
    }
    v = strtoul(p, &end, 10);
    if (*end != '\0' || v < 1 || v > 65535) {
        return -1;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    snprintf(port, pcap, "%lu", v);
    return 0;
}

/* The horizontal error estimate: eph, else the larger of the two axes, rounded up so the
 * claim is never better than gpsd's. 0 when gpsd gave none. */
static uint32_t accuracy_of(const struct gps_fix_t *f)
{
    double e = NAN;
    if (isfinite(f->eph) && f->eph >= 0) {
        e = f->eph;
    } else if (isfinite(f->epx) && isfinite(f->epy) && f->epx >= 0 && f->epy >= 0) {
        e = f->epx > f->epy ? f->epx : f->epy;
    } else if (isfinite(f->epx) && f->epx >= 0) {
        e = f->epx;
    } else if (isfinite(f->epy) && f->epy >= 0) {
        e = f->epy;
    }
    if (!isfinite(e)) {
        return 0;
    }
    e = ceil(e);
    if (e < 1.0) {
        e = 1.0;
    }
    if (e > ACCURACY_MAX) {
        e = ACCURACY_MAX;
    }
    return (uint32_t)e;
}

/* 1 when the last report read was a TPV with a usable position (libgps resets `set` for
 * every TPV, so LATLON_SET and MODE_SET describe this report, not an older one). */
static int usable_fix(const struct gps_data_t *g)
{
    const struct gps_fix_t *f = &g->fix;
    if ((g->set & (LATLON_SET | MODE_SET)) != (LATLON_SET | MODE_SET) || f->mode < MODE_2D) {
        return 0;
    }
    return isfinite(f->latitude) && isfinite(f->longitude) && f->latitude >= -90.0 &&
           f->latitude <= 90.0 && f->longitude >= -180.0 && f->longitude <= 180.0;
}

int mposhost_gps_fix(const char *hostport, unsigned wait_ms, struct mposhost_fix *out, char *why,
                     size_t cap)
{
    struct gps_data_t g;
    char host[256], port[8];
    const char *shown = hostport != NULL ? hostport : MPOSHOST_GPSD_DEFAULT;
    uint64_t deadline;
    int rc = MPOSHOST_ERR_TIMEOUT;
    unsigned reports = 0;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    why_set(why, cap, "%s", "");
    if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)) != 0) {
        why_set(why, cap, "gpsd address must be HOST:PORT");
        return MPOS_ERR_ARG;
    }
    deadline = now_ms() + (wait_ms != 0 ? wait_ms : MPOSHOST_GPSD_WAIT_MS);
    memset(&g, 0, sizeof(g));
    if (gps_open(host, port, &g) != 0) {
        why_set(why, cap, "gpsd %s: cannot connect (gpsd not running?)", shown);
        return MPOSHOST_ERR_IO;
    }
    if (gps_stream(&g, WATCH_ENABLE | WATCH_JSON, NULL) != 0) {
        why_set(why, cap, "gpsd %s: cannot start the watch", shown);
        (void)gps_close(&g);
        return MPOSHOST_ERR_IO;
    }
    for (;;) {
        uint64_t t = now_ms(), left;
        if (t >= deadline) {
            break;
        }
        left = deadline - t < 1000u ? deadline - t : 1000u; /* keeps the µs in an int */
        /* gps_waiting() also answers true for lines libgps has buffered already. */
        if (!gps_waiting(&g, (int)(left * 1000u))) {
            continue; /* timeout or EINTR: the deadline check decides */
        }
        if (gps_read(&g, NULL, 0) < 0) {
            why_set(why, cap, "gpsd %s: connection closed before a fix", shown);
            rc = MPOSHOST_ERR_IO;
            break;
        }
        reports++;
        if (usable_fix(&g)) {
            double tsec = (double)g.fix.time.tv_sec;
            out->lat_e7 = (int32_t)lround(g.fix.latitude * 1e7);
            out->lon_e7 = (int32_t)lround(g.fix.longitude * 1e7);
            out->accuracy_m = accuracy_of(&g.fix);
            if ((g.set & TIME_SET) != 0 && tsec >= (double)FIX_TIME_MIN &&
                tsec <= (double)FIX_TIME_MAX) {
                out->time = (uint64_t)g.fix.time.tv_sec;
            }
            rc = MPOS_OK;
            break;
        }
    }
    if (rc == MPOSHOST_ERR_TIMEOUT) {
        why_set(why, cap, "gpsd %s: no 2D/3D fix within %u ms (%u reports)", shown,
                wait_ms != 0 ? wait_ms : MPOSHOST_GPSD_WAIT_MS, reports);
    }
    (void)gps_stream(&g, WATCH_DISABLE, NULL);
    (void)gps_close(&g);
    return rc;
}

void mposhost_gps_apply(const struct mposhost_fix *fix, struct mposhost_config *cfg)
{
    cfg->have_location = 1;
    cfg->lat_e7 = fix->lat_e7;
    cfg->lon_e7 = fix->lon_e7;
    cfg->accuracy_m = fix->accuracy_m;
    cfg->loc_time = fix->time;
}
