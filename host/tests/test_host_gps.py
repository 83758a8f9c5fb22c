#!/usr/bin/env python3
"""mpos-host takes its location from gpsd (docs/host.md "Location", H-GEO-1).

A fake gpsd (TCP on 127.0.0.1, port 0) talks the way gpsd 3.x does to a libgps client: a
VERSION object on connect, then, after ?WATCH={...}; the DEVICES and WATCH objects, then the
scripted reports (SKY, TPV ...) one JSON object per line. Checked with `mpos-host location`
(prints the location and its source) and with `login` against a TCP listener standing in for
the back end (a refused location must not even connect; an accepted one must):
  - the first TPV with mode >= 2 is taken (SKY and mode-1 TPVs before it are skipped), lat/lon
    to 1e-7 degree, accuracy = ceil(eph) or ceil(max(epx, epy)) and at least 1, the fix time;
  - --location and [host] location win over gpsd (which is then not even contacted);
  - [host] gpsd, --gpsd, --no-gpsd, [host] gpsd = off;
  - no fix, a silent gpsd, a gpsd that hangs up, no gpsd at all: refusal within the bound
    (2 s), with the reason on the one error line.

usage: test_host_gps.py MPOS_HOST ON|OFF   (OFF: built without libgps: `location` says so)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = sys.argv[1]
BUILT = len(sys.argv) > 2 and sys.argv[2].upper() in ("ON", "1", "TRUE", "YES")

VERSION = {"class": "VERSION", "release": "3.22", "rev": "3.22", "proto_major": 3,
           "proto_minor": 14}
DEVICES = {"class": "DEVICES", "devices": [{
    "class": "DEVICE", "path": "/dev/ttyACM0", "driver": "u-blox", "subtype": "SW 7.03",
    "activated": "2026-01-15T08:29:00.000Z", "flags": 1, "native": 1, "bps": 9600,
    "parity": "N", "stopbits": 1, "cycle": 1.00, "mincycle": 0.25}]}
WATCH = {"class": "WATCH", "enable": True, "json": True, "nmea": False, "raw": 0,
         "scaled": False, "timing": False, "split24": False, "pps": False}
SKY = {"class": "SKY", "device": "/dev/ttyACM0", "xdop": 0.9, "ydop": 1.1, "hdop": 1.3,
       "satellites": [{"PRN": 5, "el": 45.0, "az": 120.0, "ss": 38.0, "used": True}]}
NOFIX = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 1}


def tpv(mode, lat, lon, when="2026-01-15T08:30:00.000Z", **err):
    d = {"class": "TPV", "device": "/dev/ttyACM0", "mode": mode, "time": when, "ept": 0.005,
         "lat": lat, "lon": lon, "alt": 12.5, "track": 0.0, "speed": 0.0, "climb": 0.0}
    d.update(err)
    return d


FIX_TIME = 1768465800  # 2026-01-15T08:30:00Z


class FakeGpsd:
    """script: list of (delay_s, object) sent after the WATCH; hangup: close after VERSION;
    silent: never send anything."""

    def __init__(self, script=(), hangup=False, silent=False):
        self.script, self.hangup, self.silent = list(script), hangup, silent
        self.conns = 0
        self.watch = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self.client, args=(c,), daemon=True).start()

    @staticmethod
    def send(c, obj):
        c.sendall((json.dumps(obj, separators=(",", ":")) + "\r\n").encode())

    def client(self, c):
        try:
            c.settimeout(5)
            if self.silent:
                self.stop.wait(10)
                return
            self.send(c, VERSION)
            if self.hangup:
                return
            buf = b""
            while b"?WATCH" not in buf or not buf.rstrip().endswith(b";"):
                d = c.recv(4096)
                if not d:
                    return
                buf += d
            self.watch.append(buf.decode(errors="replace"))
            self.send(c, DEVICES)
            self.send(c, WATCH)
            for delay, obj in self.script:
                if self.stop.wait(delay):
                    return
                self.send(c, obj)
            self.stop.wait(10)  # stay connected like gpsd does
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()
        self.t.join(2)


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("MPOS_HOST_PASSWORD", None)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([HOST, *args], capture_output=True, text=True, timeout=30, env=e,
                       stdin=subprocess.DEVNULL)
    return p, time.monotonic() - t0


def expect_location(p, loc, acc, when, source):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    want = (f"location: {loc}\naccuracy: {acc}\ntime:     {when}\nsource:   {source}\n")
    assert p.stdout == want, (p.stdout, want)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Backend:
    """A TCP listener standing in for the back end: counts connections, says nothing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def connections(self):
        n = 0
        while True:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, BlockingIOError):
                return n
            n += 1
            c.close()


def make_ca(tmp):
    """A PEM certificate for --ca (login loads it before connecting); None without openssl."""
    ca = os.path.join(tmp, "ca.pem")
    key = os.path.join(tmp, "ca.key")
    try:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", ca,
                            "-days", "2", "-subj", "/CN=test ca"], capture_output=True,
                           timeout=30)
    except FileNotFoundError:
        return None
    return ca if r.returncode == 0 else None


def test_not_built():
    p, _ = run("--gpsd", "127.0.0.1:1", "location")
    assert p.returncode == 1 and "not supported in this build" in p.stderr, p.stderr
    p, _ = run("--location", "31.2304,121.4737,20", "location")
    expect_location(p, "31.2304000,121.4737000", "20 m", "each message's own", "--location")
    print("ok (built without libgps)")
    return 0


def main():
    if not BUILT:
        return test_not_built()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"XDG_STATE_HOME": os.path.join(tmp, "xdg"), "MPOS_HOST_TIMEOUT_MS": "3000"}

        # 1. The first TPV with mode >= 2, after a SKY and mode-1 TPVs (one with a stale
        # position, as some receivers send); epx/epy only:
        # accuracy ceil(max(8.5, 12.2)) = 13. The later TPV is not taken.
        g = FakeGpsd([(0, SKY), (0.05, NOFIX), (0, tpv(1, 10.0, 10.0, eph=3.0)),
                      (0.05, tpv(3, 31.2304, 121.4737, epx=8.5, epy=12.2, epv=20.0)),
                      (0, tpv(3, 1.0, 1.0, eph=1.0))])
        try:
            p, dt = run("--gpsd", g.addr, "location", env=env)
            expect_location(p, "31.2304000,121.4737000", "13 m", f"{FIX_TIME} (the fix's)",
                            f"gpsd {g.addr}")
            assert dt < 2.5, dt
            assert g.conns == 1 and '"enable":true' in g.watch[0] and '"json":true' in \
                g.watch[0], g.watch
            # 2. --location wins, gpsd not even asked.
            p, _ = run("--gpsd", g.addr, "--location", "-1.5,2.25", "location", env=env)
            expect_location(p, "-1.5000000,2.2500000", "not stated", "each message's own",
                            "--location")
            # 3. [host] location wins over [host] gpsd; [host] gpsd used without location.
            cfg = os.path.join(tmp, "loc.ini")
            with open(cfg, "w") as f:
                f.write(f"[host]\nlocation = 48.8584,2.2945,30\ngpsd = {g.addr}\n")
            p, _ = run("--config", cfg, "location", env=env)
            expect_location(p, "48.8584000,2.2945000", "30 m", "each message's own",
                            "[host] location")
            assert g.conns == 1, g.conns
            with open(cfg, "w") as f:
                f.write(f"[host]\ngpsd = {g.addr}\n")
            p, _ = run("--config", cfg, "location", env=env)
            expect_location(p, "31.2304000,121.4737000", "13 m", f"{FIX_TIME} (the fix's)",
                            f"gpsd {g.addr}")
            assert g.conns == 2, g.conns
            # 4. --no-gpsd and [host] gpsd = off: not asked, refused.
            p, _ = run("--no-gpsd", "--gpsd", g.addr, "location", env=env)
            assert p.returncode == 1 and "gpsd disabled" in p.stderr, p.stderr
            with open(cfg, "w") as f:
                f.write("[host]\ngpsd = off\n")
            p, _ = run("--config", cfg, "location", env=env)
            assert p.returncode == 1 and "gpsd disabled" in p.stderr, p.stderr
            assert g.conns == 2, g.conns
            # 5. The fix is taken for a command that talks to the back end: login connects.
            ca = make_ca(tmp)
            if ca is not None:
                be = Backend()
                p, _ = run("--gpsd", g.addr, "--backend", be.addr, "--ca", ca, "login",
                           "--merchant", "M1", "--user", "u",
                           env={**env, "MPOS_HOST_PASSWORD": "pw", "MPOS_HOST_TIMEOUT_MS": "500"})
                assert p.returncode == 1 and "no location" not in p.stderr, p.stderr
                assert be.connections() == 1, "login did not reach the back end"
                assert g.conns == 3, g.conns
                be.sock.close()
            else:
                print("openssl CLI missing: login part skipped")
        finally:
            g.close()

        # 6. eph wins over epx/epy, rounded up, at least 1 m; a 2D fix is enough.
        for eph, acc in ((4.2, "5 m"), (0.3, "1 m"), (5e7, "1000000 m")):
            g = FakeGpsd([(0, tpv(2, -33.8688197, 151.2092955, eph=eph, epx=90.0, epy=90.0))])
            try:
                p, _ = run("--gpsd", g.addr, "location", env=env)
                expect_location(p, "-33.8688197,151.2092955", acc, f"{FIX_TIME} (the fix's)",
                                f"gpsd {g.addr}")
            finally:
                g.close()

        # 7. No fix (mode 1 every 0.2 s): refused within the bound, login does not connect.
        g = FakeGpsd([(0.2, NOFIX)] * 30)
        try:
            p, dt = run("--gpsd", g.addr, "location", env=env)
            assert p.returncode == 1 and "no 2D/3D fix" in p.stderr, p.stderr
            assert 1.5 < dt < 3.5, dt
            be = Backend()
            p, dt = run("--gpsd", g.addr, "--backend", be.addr, "--ca", "/dev/null", "login",
                        "--merchant", "M1", "--user", "u",
                        env={**env, "MPOS_HOST_PASSWORD": "pw"})
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert "no location" in p.stderr and "no 2D/3D fix" in p.stderr, p.stderr
            assert p.stderr.count("\n") == 1, p.stderr
            assert dt < 3.5, dt
            assert be.connections() == 0, "a message without a location went out"
            be.sock.close()
        finally:
            g.close()

        # 8. A silent gpsd, one that hangs up after VERSION: bounded refusals.
        g = FakeGpsd(silent=True)
        try:
            p, dt = run("--gpsd", g.addr, "location", env=env)
            assert p.returncode == 1 and "no 2D/3D fix" in p.stderr, p.stderr
            assert 1.5 < dt < 3.5, dt
        finally:
            g.close()
        g = FakeGpsd(hangup=True)
        try:
            p, dt = run("--gpsd", g.addr, "location", env=env)
            assert p.returncode == 1 and "gpsd" in p.stderr, p.stderr
            assert dt < 3.5, dt
        finally:
            g.close()

        # 9. No gpsd running: refused at once, and the settle refusal names gpsd.
        addr = f"127.0.0.1:{free_port()}"
        p, dt = run("--gpsd", addr, "location", env=env)
        assert p.returncode == 1 and "cannot connect" in p.stderr, p.stderr
        assert dt < 3.5, dt
        p, _ = run("--gpsd", "no-port-here", "location", env=env)
        assert p.returncode == 1 and "HOST:PORT" in p.stderr, p.stderr
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
