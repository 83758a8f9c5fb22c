#!/usr/bin/env python3
"""mpos-terminal against a real mpos-hsmd and mposctl (label terminal): keygen for two serials
(the device key born in each key store), mposctl terminal provision from each terminal's own
CSR, import of each bundle into its own terminal (the initial key ID equals the one mposctl
registered) and into the other terminal (refused, key store unchanged byte for byte), then
run on tcp:127.0.0.1:0 with a tiny host-link client: GET_INFO answered with the serial and the
state "not activated", a forbidden and an unknown command answered with ERROR.

usage: test_terminal_provision.py MPOS_TERMINAL MPOSCTL MPOS_HSMD MPOS_CRYPTO
With MPOS_TEST_ARTIFACTS set, every file is written under it and kept for the secret scan.
Every process is started and stopped by pid. The mpos-hsmd and mposctl helpers follow
tools/mposctl/tests/test_mposctl_hsm.py.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                                "tests", "testutil"))
import mpostest  # noqa: E402 (tests/testutil, found from here)

TERMINAL, MPOSCTL, HSMD, CRYPTO = [os.path.abspath(a) for a in sys.argv[1:5]]
COMPONENTS = ["0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0",
              "A5A5A5A55A5A5A5A3C3C3C3CC3C3C3C3966969966996699600FF00FFFF00FF00"]


def kcv(key_hex):
    return subprocess.run([CRYPTO, "kcv", "--key", key_hex, "--cipher", "aes"],
                          capture_output=True, text=True, check=True).stdout.strip()


class Hsmd(mpostest.Hsmd):
    """An mpos-hsmd with a tools socket, started and stopped by pid (tests/testutil)."""

    def __init__(self, tmp, extra):
        super().__init__(HSMD, os.path.join(tmp, "tools.sock"), os.path.join(tmp, "audit.log"),
                         os.path.join(tmp, "hsmd.err"), extra)


def ctl(env, *args, check=0):
    p = subprocess.run([MPOSCTL, "--db", env["db"], "--hsm", env["sock"]] + list(args),
                       capture_output=True, text=True, timeout=120)
    if p.returncode != check:
        raise AssertionError("mposctl %s: exit %d (want %d)\n%s%s"
                             % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p.stdout


def term(*args, check=0):
    p = subprocess.run([TERMINAL] + list(args), capture_output=True, text=True, timeout=60)
    if check is not None and p.returncode != check:
        raise AssertionError("mpos-terminal %s: exit %d (want %d)\n%s%s"
                             % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def fields(out):
    return dict(l.split(None, 1) for l in out.splitlines())


def snapshot(d):
    """Every file of a key store directory: name -> (mode, sha256)."""
    return {n: (stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode),
                hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest())
            for n in sorted(os.listdir(d))}


# ---- the host link (docs/protocol.md 1.1) --------------------------------------------------

def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(ftype, seq, payload=b""):
    head = struct.pack(">2sBBHH", b"MP", 1, ftype, seq, len(payload))
    head += struct.pack(">H", crc16(head))
    body = head + payload
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


_pending = {}  # bytes read past a frame, per socket (events may arrive back to back)


def read_frame(s):
    buf = _pending.pop(s, b"")
    while len(buf) < 10:
        chunk = s.recv(4096)
        assert chunk, "link closed"
        buf += chunk
    magic, ver, ftype, seq, n, hcrc = struct.unpack(">2sBBHHH", buf[:10])
    assert magic == b"MP" and ver == 1 and hcrc == crc16(buf[:8]), buf
    while len(buf) < 14 + n:
        chunk = s.recv(4096)
        assert chunk, "link closed"
        buf += chunk
    assert struct.unpack(">I", buf[10 + n:14 + n])[0] == zlib.crc32(buf[:10 + n]) & 0xFFFFFFFF
    if len(buf) > 14 + n:
        _pending[s] = buf[14 + n:]
    return ftype, seq, buf[10:10 + n]


def parse_info(p):
    ref, state = struct.unpack(">HB", p[:3])
    sl = p[3]
    serial = p[4:4 + sl].decode()
    fl = p[4 + sl]
    fw = p[5 + sl:5 + sl + fl].decode()
    assert len(p) == 5 + sl + fl
    return ref, state, serial, fw


# ---- the test ------------------------------------------------------------------------------

def test_provision_import_run(tmp):
    crt = os.path.join(tmp, "components")
    with open(crt, "w") as f:
        for c in COMPONENTS:
            f.write("%s %s\n" % (c, kcv(c)))
    os.chmod(crt, 0o600)
    hsmd = Hsmd(tmp, ["--lmk-components-file", crt])
    run = None
    try:
        env = {"db": os.path.join(tmp, "mpos.db"), "sock": hsmd.sock}
        ctl(env, "db", "migrate")
        ctl(env, "bdk", "create", "--label", "bdk-aes", "--algorithm", "aes",
            "--key-set-id", "00a1b2c3")
        ctl(env, "key", "generate", "--label", "ca-1", "--usage", "S1", "--algorithm", "ec",
            "--length", "32")
        ca = os.path.join(tmp, "ca.crt")
        ctl(env, "ca", "create", "--key", "ca-1", "--cn", "openmpos test CA", "--out", ca)
        outdir = os.path.join(tmp, "bundles")
        os.mkdir(outdir)

        serials = ["SIM-A1", "SIM-B2"]
        dirs, registered = {}, {}
        for sn in serials:
            d = os.path.join(tmp, "ks-" + sn)
            p = term("keygen", "--dir", d, "--serial", sn)
            csr = os.path.join(d, sn + ".csr")
            assert p.stdout.strip() == csr and p.stderr == "", (p.stdout, p.stderr)
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
            for n in os.listdir(d):
                assert stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode) == 0o600, n
            der = open(csr, "rb").read()
            assert der[:1] == b"\x30" and sn.encode() in der, der.hex()
            # One device key per key store.
            p = term("keygen", "--dir", d, "--serial", sn, check=1)
            assert "device key exists" in p.stderr, p.stderr
            dirs[sn] = d
            out = fields(ctl(env, "terminal", "provision", "--serial", sn, "--scheme",
                             "dukpt-aes", "--csr", csr, "--ca-key", "ca-1", "--ca-cert", ca,
                             "--bdk", "bdk-aes", "--out", outdir, "--trust-anchor", ca))
            registered[sn] = out
            assert re.match(r"^[0-9A-F]{16}$", out["initial-ksn"]), out

        # Each bundle into the other terminal first: refused, nothing changed.
        for sn, other in ((serials[0], serials[1]), (serials[1], serials[0])):
            before = snapshot(dirs[other])
            p = term("import", "--dir", dirs[other], "--bundle",
                     os.path.join(outdir, sn + ".bundle"), "--ca-cert", ca, check=1)
            assert p.stdout == "" and "not for this terminal" in p.stderr, (p.stdout, p.stderr)
            assert p.stderr.count("\n") == 1, p.stderr
            assert snapshot(dirs[other]) == before, "key store changed"

        # Each into its own: the initial key ID and check value mposctl registered.
        for sn in serials:
            p = term("import", "--dir", dirs[sn], "--bundle", os.path.join(outdir, sn + ".bundle"),
                     "--ca-cert", ca)
            got = fields(p.stdout)
            assert got["serial"] == sn and got["kind"] == "aes-dukpt", got
            assert got["initial-key-id"] == registered[sn]["initial-ksn"], (got, registered[sn])
            assert got["kcv"] == registered[sn]["kcv"], (got, registered[sn])
            assert got["trust-anchor"] == "stored", got
        assert registered[serials[0]]["initial-ksn"] != registered[serials[1]]["initial-ksn"]

        # A second import: keys are loaded already, refused, nothing changed.
        before = snapshot(dirs[serials[0]])
        p = term("import", "--dir", dirs[serials[0]], "--bundle",
                 os.path.join(outdir, serials[0] + ".bundle"), "--ca-cert", ca, check=1)
        assert "loaded already" in p.stderr, p.stderr
        assert snapshot(dirs[serials[0]]) == before

        # The host link.
        sn = serials[0]
        errf = open(os.path.join(tmp, "run.err"), "w+")
        run = subprocess.Popen([TERMINAL, "run", "--dir", dirs[sn], "--link", "tcp:127.0.0.1:0"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf,
                               text=True)
        line = run.stdout.readline().strip()
        m = re.match(r"^link=tcp:127\.0\.0\.1:(\d+)$", line)
        assert m and int(m.group(1)) > 0, line
        s = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10)
        # Noise first: the decoder skips it.
        s.sendall(b"\x00garbage" + frame(0x01, 7))
        t, seq0, p = read_frame(s)
        assert t == 0x81, (t, p)
        ref, state, serial, fw = parse_info(p)
        assert (ref, state, serial) == (7, 0, sn) and fw, (ref, state, serial, fw)
        # START_TXN (forbidden when not activated): ERROR 02, state 0.
        s.sendall(frame(0x02, 8, bytes(11)))
        t, seq1, p = read_frame(s)
        assert t == 0x83 and p == struct.pack(">HBBB", 8, 0x02, 2, 0), (t, p.hex())
        # An unknown command: ERROR 01.
        s.sendall(frame(0x7E, 9))
        t, seq2, p = read_frame(s)
        assert t == 0x83 and p == struct.pack(">HBBB", 9, 0x7E, 1, 0), (t, p.hex())
        # ACTIVATE: ACK, PROMPT_SHOWN ACTIVATING, then the terminal's TLS client starts the
        # tunnel (ClientHello as TUNNEL_DATA events). No back end here: the host goes away,
        # which ends the tunnel and fails the activation.
        code = b"ABCD-1234"
        s.sendall(frame(0x04, 10, bytes([len(code)]) + code))
        t, seq3, p = read_frame(s)
        assert t == 0x82 and p == struct.pack(">HB", 10, 0x04), (t, p.hex())
        assert seq1 == (seq0 + 1) & 0xFFFF and seq3 == (seq2 + 1) & 0xFFFF
        t, _, p = read_frame(s)
        assert t == 0x84 and p[0] == 3, (t, p.hex())
        t, _, p = read_frame(s)
        assert t == 0x86 and p[0] == 0x16, (t, p[:8].hex())  # a TLS handshake record
        # A second ACTIVATE while the first runs: refused (ERROR 02), state 0.
        s.sendall(frame(0x04, 11, bytes([len(code)]) + code))
        while True:
            t, _, p = read_frame(s)
            if t != 0x86:
                break
        assert t == 0x83 and p == struct.pack(">HBBB", 11, 0x04, 2, 0), (t, p.hex())
        s.close()
        # A new host connection: still not activated, still answering.
        s = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10)
        s.sendall(frame(0x01, 12))
        t, _, p = read_frame(s)
        assert t == 0x81 and parse_info(p)[:3] == (12, 0, sn), (t, p.hex())
        s.close()
        run.send_signal(signal.SIGTERM)
        assert run.wait(10) == 0, "run exit status"
        errf.seek(0)
        # Logs only: key=value lines (the activation failed, nothing secret in them).
        log = errf.read()
        for ln in log.splitlines():
            assert re.match(r'^mpos-terminal: event=\w+( \w+=("[^"]*"|\S*))*$', ln), ln
        assert "event=activation_failed" in log and code.decode() not in log, log
        errf.close()
        run.stdout.close()
        run = None
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
        hsmd.stop()


if __name__ == "__main__":
    if shutil.which("openssl") is None:
        print("openssl not installed: skipped")
        sys.exit(77)
    artifacts = os.environ.get("MPOS_TEST_ARTIFACTS")
    if artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
        os.makedirs(artifacts)
        tmp = os.path.join(artifacts, "t0")  # short: socket paths
        os.mkdir(tmp)
    else:
        tmp = tempfile.mkdtemp(prefix="mpos-term-")
    os.chmod(tmp, 0o755)
    rc = 0
    try:
        test_provision_import_run(tmp)
        print("ok     test_provision_import_run")
    except Exception:
        print("FAILED test_provision_import_run")
        traceback.print_exc()
        rc = 1
    finally:
        if not artifacts:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)
