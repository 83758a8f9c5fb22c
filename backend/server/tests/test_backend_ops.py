#!/usr/bin/env python3
"""mpos-backend operations (label ops): the command line and configuration (unknown keys,
required settings, --help), refusing to run as root without --allow-root, TLS versions
(TLS 1.2 only when allowed, and then only ECDHE + AEAD), session tickets (resumption works,
no 0-RTT offered), the listening= line and --port-file, SIGTERM ends with status 0; session
expiry, impossible travel declined by policy, max_connections.

usage: test_backend_ops.py MPOS_BACKEND_TESTD MPOSCTL
"""
import datetime
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backend_client as bc  # noqa: E402

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:
    print("python3-cryptography missing: skipped")
    sys.exit(77)

BACKEND, MPOSCTL = [os.path.abspath(a) for a in sys.argv[1:3]]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def setup(tmp):
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    files = {
        "cert": write(os.path.join(tmp, "srv.crt"), cert.public_bytes(serialization.Encoding.PEM)),
        "key": write(os.path.join(tmp, "srv.key"),
                     key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())),
        "ca": write(os.path.join(tmp, "ca.der"), cert.public_bytes(serialization.Encoding.DER)),
        # E3 { E4 { C4 = 1.0.0 } }: what the back end reads of a package.
        "params": write(os.path.join(tmp, "params.bin"),
                        bytes.fromhex("E308E406C40400010000")),
        "db": os.path.join(tmp, "mpos.db"),
    }
    subprocess.run([MPOSCTL, "--db", files["db"], "db", "migrate"], check=True,
                   capture_output=True)
    return files


def ini(tmp, f, extra="", server_extra=""):
    path = os.path.join(tmp, "b.ini")
    with open(path, "w") as fh:
        fh.write("[server]\ncert = %s\nkey = %s\n%s[terminal]\nca = %s\nparams = %s\n"
                 "[store]\ndb = %s\n%s" % (f["cert"], f["key"], server_extra, f["ca"],
                                            f["params"], f["db"], extra))
    return path


def run(args, timeout=20):
    return subprocess.run([BACKEND] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def start(cfg, extra=()):
    p = subprocess.Popen([BACKEND, "--config", cfg, "--foreground", "--allow-root"] +
                         list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    line = p.stdout.readline()
    m = re.match(r"^listening=127\.0\.0\.1:(\d+)$", line.strip())
    if m is None:
        p.kill()
        raise AssertionError("did not start: %r %s" % (line, p.stderr.read()))
    return p, int(m.group(1))


def stop(p):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(30)
    err = p.stderr.read()
    assert rc == 0, (rc, err)
    assert "event=stopped" in err and "status=ok" in err, err
    return err


def check_cli(tmp, f):
    cfg = ini(tmp, f)
    r = run(["--help"])
    assert r.returncode == 0 and "usage: mpos-backend" in r.stderr
    r = run([])
    assert r.returncode == 2 and "--config" in r.stderr
    r = run(["--config", cfg, "--allow-root", "--bogus"])
    assert r.returncode == 2 and "--bogus" in r.stderr
    if os.geteuid() == 0:
        r = run(["--config", cfg, "--foreground"])
        assert r.returncode == 2 and "root" in r.stderr, r
    for bad in ("[server]\nlisten_port = 1\n", "[policy]\nallow_root = yes\n",
                "[nowhere]\nx = 1\n", "[policy]\nbinary_hashes = 1234\n",
                "[policy]\nmax_login_failures = 3\n"):
        r = run(["--config", ini(tmp, f, bad), "--allow-root", "--foreground"])
        assert r.returncode == 2 and "mpos-backend:" in r.stderr, (bad, r)
    path = ini(tmp, f).replace("b.ini", "noparams.ini")
    with open(path, "w") as fh:
        fh.write(open(ini(tmp, f)).read().replace("params = ", "# params = "))
    r = run(["--config", path, "--allow-root", "--foreground"])
    assert r.returncode == 2 and "params" in r.stderr, r
    # Flags override the file; --port-file gets the port.
    pf = os.path.join(tmp, "port")
    p, port = start(ini(tmp, f, server_extra="listen = 127.0.0.1:1\n"),
                    ["--listen", "127.0.0.1:0", "--workers", "3", "--port-file", pf])
    assert port != 1 and open(pf).read().strip() == str(port)
    err = stop(p)
    assert "workers=3" in err


def hello(port, ctx):
    """Connects, sends one malformed frame, reads the ERROR (so that tickets arrive)."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="localhost")
    return s


def check_tls(tmp, f):
    p, port = start(ini(tmp, f))
    try:
        # TLS 1.2 is refused by default.
        ctx12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx12.load_verify_locations(cadata=open(f["ca"], "rb").read())
        ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            hello(port, ctx12).close()
            raise AssertionError("TLS 1.2 accepted without allow_tls12")
        except ssl.SSLError:
            pass
        # TLS 1.3 with a ticket: the second connection resumes.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=open(f["ca"], "rb").read())
        s = hello(port, ctx)
        assert s.version() == "TLSv1.3"
        s.sendall(struct.pack(">I", 1) + b"\x7e")  # an unknown type: ERROR bad-request
        hdr = s.recv(4)
        body = s.recv(struct.unpack(">I", hdr)[0])
        assert body[0] == 0x8F and body[1:6] == b"\x08\x00\x02\x00\x01", body
        sess = s.session
        s.close()
        assert sess is not None and sess.has_ticket
        s2 = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="localhost", session=sess)
        s2.sendall(struct.pack(">I", 1) + b"\x7e")
        s2.recv(4)
        assert s2.session_reused, "ticket resumption did not happen"
        s2.close()
    finally:
        stop(p)
    # allow_tls12 = 1: TLS 1.2 with ECDHE + AEAD only.
    p, port = start(ini(tmp, f, server_extra="allow_tls12 = 1\n"))
    try:
        s = hello(port, ctx12)
        assert s.version() == "TLSv1.2"
        name, _, _ = s.cipher()
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
        s.close()
        weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        weak.load_verify_locations(cadata=open(f["ca"], "rb").read())
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
        try:
            hello(port, weak).close()
            raise AssertionError("a CBC suite was accepted")
        except ssl.SSLError:
            pass
    finally:
        stop(p)


def check_sessions(tmp, f):
    """session_ttl_s, decline_impossible_travel and max_connections (operators need no HSM)."""
    ctl = [MPOSCTL, "--db", f["db"]]
    subprocess.run(ctl + ["merchant", "add", "--id", "OPS1"], check=True, capture_output=True)
    subprocess.run(ctl + ["operator", "add", "--merchant", "OPS1", "--role", "cashier",
                          "--username", "erin"], input="Expiring-pass-2026\n", text=True,
                   check=True, capture_output=True)
    cfg = ini(tmp, f, "[policy]\nsession_ttl_s = 2\ndecline_impossible_travel = 1\n",
              "max_connections = 2\n")
    p, port = start(cfg)
    try:
        ca = f["ca"].replace(".der", ".pem")
        write(ca, open(f["cert"], "rb").read())
        h = bc.Host(port, ca)
        h.login("OPS1", "erin", "Expiring-pass-2026")
        h.txn_begin(1, 10)
        h.expect(bc.TXN_OK)
        # Shanghai to Paris in a minute: declined (and logged).
        h.env.lat, h.env.lon = 488566140, 23522220
        h.env.loc_time = int(time.time()) + 60
        h.txn_begin(1, 10)
        h.expect_error(7)
        # A third connection is refused while two are open.
        h2 = bc.Host(port, ca)
        try:
            h3 = bc.Host(port, ca)
            assert h3.closed_within(3), "max_connections not enforced"
            h3.close()
        except (OSError, bc.ssl.SSLError):
            pass
        h2.close()
        token, device = h.token, h.env.device_id
        time.sleep(2.5)
        h.env.lat, h.env.lon = 311230000, 1214730000
        h.env.loc_time = None
        h.txn_begin(1, 10)
        h.expect_error(9)
        h.close()
        h = bc.Host(port, ca, bc.Envelope(device_id=device))
        h.resume(token, expect=2)  # expired and dropped
        h.close()
    finally:
        err = stop(p)
    assert "alert=impossible_travel" in err and "reason=max_connections" in err, err
    assert "Expiring-pass-2026" not in err


def main():
    tmp = tempfile.mkdtemp(prefix="mpos-backend-ops-")
    failed = 0
    try:
        f = setup(tmp)
        for name, fn in (("cli", check_cli), ("tls", check_tls), ("sessions", check_sessions)):
            try:
                fn(tmp, f)
                print("ok   %s" % name)
            except Exception:
                failed += 1
                print("FAIL %s" % name)
                traceback.print_exc()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
