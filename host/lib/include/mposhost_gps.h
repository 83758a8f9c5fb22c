/* libmposhost: the location from gpsd (docs/host.md "Location", H-GEO-1).
 *
 * Built only when CMake found libgps (pkg-config libgps, Debian libgps-dev) and
 * MPOS_HOST_GPSD is ON: the build then defines MPOSHOST_HAVE_GPSD for libmposhost and
 * everything that links it. Without it these functions do not exist and the caller has to
 * take the location from its configuration.
 */
#ifndef MPOSHOST_GPS_H
#define MPOSHOST_GPS_H

#include <stddef.h>
#include <stdint.h>

#include "mposhost.h"

/* gpsd's IANA port on the local machine. */
#define MPOSHOST_GPSD_DEFAULT "localhost:2947"
/* The whole wait for a fix (connect, watch, first usable TPV) when the caller gives 0. */
#define MPOSHOST_GPSD_WAIT_MS 2000u

/* A position fix, in the units of struct mposhost_config. */
struct mposhost_fix {
    int32_t lat_e7, lon_e7; /* 1e-7 degree */
    uint32_t accuracy_m;    /* ceil(eph), else ceil(max(epx, epy)), within 1..1000000;
                               0 when gpsd gave no error estimate at all */
    uint64_t time;          /* the fix's Unix seconds; 0 when gpsd gave no usable time
                               (outside 2000..2099) */
};

#ifdef MPOSHOST_HAVE_GPSD
/* Asks gpsd at "HOST:PORT" (NULL: MPOSHOST_GPSD_DEFAULT; "[v6addr]:port" allowed) for a
 * JSON watch and takes the first TPV report with mode >= 2 (2D or 3D) and a finite latitude
 * and longitude in range. Everything is bounded by wait_ms (0: MPOSHOST_GPSD_WAIT_MS) on the
 * monotonic clock, except the TCP connect itself, which libgps does blocking (immediate on a
 * local machine; a remote gpsd address that does not answer takes the system's connect
 * timeout: prefer localhost or a LAN address).
 * Returns MPOS_OK and *out; MPOS_ERR_ARG bad address; MPOSHOST_ERR_IO cannot connect or
 * gpsd closed the connection; MPOSHOST_ERR_TIMEOUT no usable fix in time. why (cap bytes,
 * may be NULL) receives a one-line reason on failure. */
int mposhost_gps_fix(const char *hostport, unsigned wait_ms, struct mposhost_fix *out, char *why,
                     size_t cap) MPOS_MUST_CHECK;

/* Fills cfg's location (have_location, lat_e7, lon_e7, accuracy_m, loc_time) from a fix. */
void mposhost_gps_apply(const struct mposhost_fix *fix, struct mposhost_config *cfg);
#endif

#endif
