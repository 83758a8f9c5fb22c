#!/usr/bin/env python3
"""mpos-backend end to end (label e2e): an independent host client (backend_client.py) against
the daemon linked with a test double of the transaction processor, over a fleet made by
mposctl with a real mpos-hsmd (merchant, operators, manufacturer CA, provisioned terminals).

Host protocol (docs/system-design.md 1): login ok, bad password, lock-out after 5 failures,
forged and missing envelope, root / debugger / unknown binary refused, counter replay,
role forbidden, session resume (and its device binding, and logout), idle timeout, frame
timeout, oversize frame, SIGTERM with a transaction in flight. Inner TLS (2): activation with the code, a sealed request and its
TXN_RESULT, a client certificate from another CA refused, a suspended terminal refused, a
terminal of another merchant refused.

usage: test_backend.py MPOS_BACKEND_TESTD MPOSCTL MPOS_HSMD MPOS_CRYPTO
Exit 77 when python3-cryptography is missing.
"""
import datetime
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "tests", "testutil"))
import backend_client as bc  # noqa: E402
import mpostest  # noqa: E402 (tests/testutil, found from here)

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:
    print("python3-cryptography missing: skipped")
    sys.exit(77)

BACKEND, MPOSCTL, HSMD, CRYPTO = [os.path.abspath(a) for a in sys.argv[1:5]]
COMPONENTS = ["0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0",
              "A5A5A5A55A5A5A5A3C3C3C3CC3C3C3C3966969966996699600FF00FFFF00FF00"]
GOOD_BINARY = hashlib.sha256(b"mpos-host 1.0.0").digest()
MERCHANT, OTHER = "M1TEST", "M2TEST"
PASSWORDS = {"alice": "Cashier-pass-2026", "bob": "Supervisor-pass-2026",
             "carol": "Lockout-pass-2026", "dave": "Resume-pass-2026"}


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def write(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(days=1))
            .not_valid_after(now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key, ca_cert, subject, server=False):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now() - datetime.timedelta(days=1))
         .not_valid_after(now() + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class Fleet:
    """The database: merchants, operators, a manufacturer CA and provisioned terminals."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.db = os.path.join(tmp, "mpos.db")
        comps = os.path.join(tmp, "components")
        with open(comps, "w") as f:
            for c in COMPONENTS:
                kcv = subprocess.run([CRYPTO, "kcv", "--key", c, "--cipher", "aes"],
                                     capture_output=True, text=True, check=True).stdout.strip()
                f.write("%s %s\n" % (c, kcv))
        os.chmod(comps, 0o600)
        self.hsmd = mpostest.Hsmd(HSMD, os.path.join(tmp, "tools.sock"),
                                  os.path.join(tmp, "hsmd-audit.log"),
                                  os.path.join(tmp, "hsmd.err"), ["--lmk-components-file", comps])
        self.ctl("db", "migrate")
        self.ctl("merchant", "add", "--id", MERCHANT, "--name", "Test shop")
        self.ctl("merchant", "add", "--id", OTHER, "--name", "Other shop")
        for user, role in (("alice", "cashier"), ("bob", "supervisor"), ("carol", "cashier"),
                           ("dave", "cashier")):
            self.ctl("operator", "add", "--merchant", MERCHANT, "--role", role, "--username",
                     user, stdin=PASSWORDS[user] + "\n")
        self.ctl("bdk", "create", "--type", "aes128", "--label", "bdk-1", "--key-set-id",
                 "00A1B2C3")
        self.ctl("key", "generate", "--label", "mfg-ca", "--usage", "S1", "--algorithm", "ec")
        self.ca_der = os.path.join(tmp, "mfg-ca.der")
        self.ctl("ca", "create", "--key", "mfg-ca", "--cn", "openmpos test manufacturer",
                 "--out", self.ca_der)
        self.codes, self.keys, self.certs = {}, {}, {}
        for serial, merchant in (("T-OK", MERCHANT), ("T-SUSP", MERCHANT), ("T-ELSE", OTHER)):
            self.provision(serial, merchant)
        self.ctl("terminal", "suspend", "T-SUSP")

    def ctl(self, *args, stdin=""):
        p = subprocess.run([MPOSCTL, "--db", self.db, "--hsm", self.hsmd.sock] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=120,
                           cwd=self.tmp)
        assert p.returncode == 0, "mposctl %s: %d\n%s%s" % (args, p.returncode, p.stdout,
                                                             p.stderr)
        return p.stdout

    def provision(self, serial, merchant):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key,
                                                                             hashes.SHA256())
        csr_path = write(os.path.join(self.tmp, serial + ".csr"),
                         csr.public_bytes(serialization.Encoding.DER))
        outdir = os.path.join(self.tmp, "bundles")
        os.makedirs(outdir, exist_ok=True)
        self.ctl("terminal", "provision", "--serial", serial, "--csr", csr_path, "--out", outdir)
        bundle = open(os.path.join(outdir, serial + ".bundle"), "rb").read()
        e2 = bc.tlv_parse(bc.tlv_parse(bundle)[0xE1])[0xE2]
        cert_der = bc.tlv_parse(e2)[0xC5]
        cert = x509.load_der_x509_certificate(cert_der)
        self.keys[serial] = write(os.path.join(self.tmp, serial + ".key"), pem_key(key))
        self.certs[serial] = write(os.path.join(self.tmp, serial + ".crt"), pem_cert(cert))
        out = self.ctl("terminal", "assign", serial, "--merchant", merchant)
        self.codes[serial] = re.search(r"activation-code (\S+)", out).group(1)

    def stop(self):
        self.hsmd.stop()


class Backend:
    def __init__(self, tmp, fleet, extra_ini=""):
        ca_key, ca_cert = make_ca("openmpos test back-end CA")
        skey, scert = issue(ca_key, ca_cert,
                            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                            server=True)
        self.ca = write(os.path.join(tmp, "backend-ca.pem"), pem_cert(ca_cert))
        cert = write(os.path.join(tmp, "backend.crt"), pem_cert(scert))
        key = write(os.path.join(tmp, "backend.key"), pem_key(skey))
        # A parameter package as the back end reads it (the E4's minimum firmware, 1.0.0);
        # its signatures are the terminal's business, not the back end's.
        e4 = bc.tlv(0xE4, bc.tlv(0xC1, b"\x01") + bc.tlv(0xC2, b"\0\0\0\x01") +
                    bc.tlv(0xC3, b"\0" * 8) + bc.tlv(0xC4, b"\x00\x01\x00\x00"))
        self.package = bc.tlv(0xE3, bc.tlv(0xE5, b"") + e4 + bc.tlv(0xCB, b"\x55" * 64))
        params = write(os.path.join(tmp, "params.bin"), self.package)
        ini = os.path.join(tmp, "backend.ini")
        with open(ini, "w") as f:
            f.write("[server]\ncert = %s\nkey = %s\nidle_timeout_s = 3\nworkers = 2\n"
                    "[terminal]\nca = %s\nparams = %s\n[store]\ndb = %s\n"
                    "[policy]\nbinary_hashes = %s\nbind_host_device = 1\n%s"
                    % (cert, key, fleet.ca_der, params, fleet.db, GOOD_BINARY.hex(), extra_ini))
        self.log = open(os.path.join(tmp, "backend.log"), "w+")
        port_file = os.path.join(tmp, "backend.port")
        self.proc = subprocess.Popen([BACKEND, "--config", ini, "--foreground", "--allow-root",
                                      "--port-file", port_file],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"^listening=127\.0\.0\.1:(\d+)$", line.strip())
        if m is None:
            self.log.seek(0)
            raise AssertionError("mpos-backend did not start: %r\n%s" % (line, self.log.read()))
        self.port = int(m.group(1))
        assert open(port_file).read().strip() == str(self.port)

    def host(self, **kw):
        env = bc.Envelope(binary_hash=GOOD_BINARY, **kw)
        return bc.Host(self.port, self.ca, env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(30)
            assert rc == 0, "mpos-backend exit status %d after SIGTERM" % rc
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return text


def check_login(be):
    h = be.host()
    f = h.login(MERCHANT, "alice", PASSWORDS["alice"])
    assert f[bc.T["role"]] == b"cashier" and len(f[bc.T["token"]]) == 32
    assert struct.unpack(">Q", f[bc.T["expires"]])[0] > time.time() + 3600
    # Usernames are case-insensitive (stored lowercase).
    h.txn_begin(1, 1234)
    h.expect(bc.TXN_OK)
    h.send(bc.LOGOUT)
    h.expect(bc.LOGOUT_OK)
    # After LOGOUT nothing but LOGIN / RESUME.
    h.txn_begin(1, 1)
    h.expect_error(2)
    h.close()

    h = be.host()
    h.login(MERCHANT, "alice", "Wrong-password-1", expect=3)
    h.login(MERCHANT, "nobody", "Wrong-password-1", expect=3)
    h.close()


def check_lockout(be):
    h = be.host()
    for _ in range(5):
        h.login(MERCHANT, "carol", "Not-her-password-1", expect=3)
    # Locked now, even with the right password.
    h.login(MERCHANT, "carol", PASSWORDS["carol"], expect=4)
    h.close()


def check_envelope(be):
    h = be.host()
    # A LOGIN whose MAC is wrong, one without envelope at all, one without its mac field.
    body = (bc.field("merchant", MERCHANT.encode()) + bc.field("username", b"alice") +
            bc.field("password", PASSWORDS["alice"].encode()))
    h.send(bc.LOGIN, body, key=h.login_key(), bad_mac=True)
    h.expect_error(6)
    msg = bytes([bc.LOGIN]) + body
    h.sock.sendall(struct.pack(">I", len(msg)) + msg)
    h.expect_error(6)
    h.send(bc.LOGIN, body, mac=False)
    h.expect_error(6)
    # A MAC under another connection's key is no better.
    other = be.host()
    h.send(bc.LOGIN, body, key=other.login_key())
    h.expect_error(6)
    other.close()
    # Missing location field.
    h.send(bc.LOGIN, body, key=h.login_key(), skip=("lat",))
    h.expect_error(6)
    # Out-of-range latitude.
    h.env.lat = 900000001
    h.send(bc.LOGIN, body, key=h.login_key())
    h.expect_error(6)
    h.env.lat = 311230000
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    # After login: the session key, not the login key.
    h.txn_begin(1, 5)
    h.expect(bc.TXN_OK)
    h.send(bc.TXN_BEGIN, bc.field("txn_type", b"\x01") + bc.field("amount", bytes(8)) +
           bc.field("currency", b"\x00\x9c"), key=h.login_key())
    h.expect_error(6)
    # Counter replay: the last accepted counter again, and a lower one, with a valid MAC.
    h.send(bc.TXN_BEGIN, bc.field("txn_type", b"\x01") + bc.field("amount", bytes(8)) +
           bc.field("currency", b"\x00\x9c"), counter=h.counter - 1)
    h.expect_error(6)
    h.send(bc.TXN_BEGIN, bc.field("txn_type", b"\x01") + bc.field("amount", bytes(8)) +
           bc.field("currency", b"\x00\x9c"), counter=1)
    h.expect_error(6)
    # Malformed: unknown tag, duplicate tag.
    h.send(bc.TXN_BEGIN, bc.field(0x30, b"x"))
    h.expect_error(1)
    h.send(bc.TXN_BEGIN, bc.field("txn_type", b"\x01") + bc.field("txn_type", b"\x01"))
    h.expect_error(1)
    # Still usable.
    h.txn_begin(4, 0)
    h.expect(bc.TXN_OK)
    h.close()


def check_integrity(be):
    for attr, val in (("root", 1), ("debugger", 1), ("binary_hash", b"\x22" * 32)):
        h = be.host()
        setattr(h.env, attr, val)
        h.login(MERCHANT, "alice", PASSWORDS["alice"], expect=7)
        h.close()
    # A session that turns rooted later is refused too.
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    h.env.root = 1
    h.txn_begin(1, 100)
    h.expect_error(7)
    h.env.root = 0
    h.txn_begin(1, 100)
    h.expect(bc.TXN_OK)
    h.close()


def check_roles(be):
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    h.txn_begin(2, 100, reference="000000000001")  # void
    h.expect_error(5)
    h.txn_begin(3, 100, reference="000000000001")  # refund
    h.expect_error(5)
    h.send(bc.SETTLE)
    h.expect_error(5)
    h.txn_begin(1, 100)
    h.expect(bc.TXN_OK)
    h.close()
    h = be.host()
    f = h.login(MERCHANT, "bob", PASSWORDS["bob"])
    assert f[bc.T["role"]] == b"supervisor"
    h.txn_begin(2, 0, reference="000000000001")
    h.expect(bc.TXN_OK)
    h.send(bc.SETTLE)
    f = h.expect(bc.SETTLE_OK)
    assert b"batch=" in f[bc.T["text"]]
    h.close()


def _err(h, send, code):
    send()
    return h.expect_error(code)


def check_void_by_ref(be):
    """TXN_BEGIN void/refund: the back end looks the original up by RRN (the double's journal:
    ...001 an approved sale of 1234 in 156, ...002 voided, ...003 declined) and TXN_OK carries
    its amount and currency."""
    h = be.host()
    h.login(MERCHANT, "bob", PASSWORDS["bob"])
    h.txn_begin(2, 0, currency=840, reference="000000000001")  # the RRN only
    f = h.expect(bc.TXN_OK)
    assert struct.unpack(">Q", f[bc.T["amount"]])[0] == 1234, f
    assert struct.unpack(">H", f[bc.T["currency"]])[0] == 156, f
    h.txn_begin(2, 1234, reference="000000000001")  # the right amount: fine too
    h.expect(bc.TXN_OK)
    for ref, why in (("000000000009", b"original-not-found"),
                     ("000000000002", b"original-already-voided"),
                     ("000000000003", b"original-not-approved"),
                     ("12345", b"original-not-found")):
        f = _err(h, lambda: h.txn_begin(2, 0, reference=ref), 1)
        assert f[bc.T["message"]] == why, (ref, f)
    f = _err(h, lambda: h.txn_begin(2, 99, reference="000000000001"), 1)
    assert f[bc.T["message"]] == b"amount-differs", f
    # Refund: up to the original's amount, in its currency.
    h.txn_begin(3, 1000, currency=840, reference="000000000001")
    f = h.expect(bc.TXN_OK)
    assert struct.unpack(">Q", f[bc.T["amount"]])[0] == 1000, f
    assert struct.unpack(">H", f[bc.T["currency"]])[0] == 156, f
    f = _err(h, lambda: h.txn_begin(3, 1235, reference="000000000001"), 1)
    assert f[bc.T["message"]] == b"refund-above-original", f
    # A sale's TXN_OK carries nothing.
    h.txn_begin(1, 5)
    f = h.expect(bc.TXN_OK)
    assert bc.T["amount"] not in f, f
    h.close()


def check_resume(be):
    h = be.host()
    h.login(MERCHANT, "dave", PASSWORDS["dave"])
    token, device = h.token, h.env.device_id
    h.close()
    # A new connection (new TLS exporter) resumes with the token from the same device.
    h2 = be.host(device_id=device)
    f = h2.resume(token)
    assert f[bc.T["role"]] == b"cashier" and f[bc.T["merchant"]] == MERCHANT.encode()
    h2.txn_begin(1, 42)
    h2.expect(bc.TXN_OK)
    # Another device with the stolen token: refused.
    h3 = be.host()
    h3.resume(token, expect=2)
    h3.key = os.urandom(32)
    h3.txn_begin(1, 1)
    h3.expect_error(2)
    h3.close()
    # A token never issued: refused alike.
    h4 = be.host()
    h4.resume(os.urandom(32), expect=2)
    h4.close()
    # Logout revokes it everywhere.
    h2.send(bc.LOGOUT)
    h2.expect(bc.LOGOUT_OK)
    h2.close()
    h5 = be.host(device_id=device)
    h5.resume(token, expect=2)
    h5.close()


def check_restart(tmp, fleet, be):
    """Sessions are rows of the store: they survive a restart of mpos-backend; a revoked one
    stays revoked. Returns the new back end."""
    h = be.host()
    h.login(MERCHANT, "dave", PASSWORDS["dave"])
    token, device = h.token, h.env.device_id
    h.close()
    h = be.host()
    h.login(MERCHANT, "dave", PASSWORDS["dave"])
    revoked, revoked_device = h.token, h.env.device_id
    h.send(bc.LOGOUT)
    h.expect(bc.LOGOUT_OK)
    h.close()
    prev_log = be.stop()
    be = Backend(tmp, fleet)
    be.prev_log = prev_log
    h = be.host(device_id=device)
    f = h.resume(token)
    assert f[bc.T["role"]] == b"cashier" and f[bc.T["merchant"]] == MERCHANT.encode()
    h.txn_begin(1, 42)
    h.expect(bc.TXN_OK)
    h.close()
    h = be.host(device_id=revoked_device)
    h.resume(revoked, expect=2)
    h.close()
    # Still bound to its device after the restart.
    h = be.host()
    h.resume(token, expect=2)
    h.close()
    return be


def check_limits(be):
    # Oversize frame: closed at once.
    h = be.host()
    h.sock.sendall(struct.pack(">I", 65537) + b"\x03")
    assert h.closed_within(2), "an oversize frame did not close the connection"
    h.close()
    # Idle: [server] idle_timeout_s = 3.
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    t0 = time.time()
    assert h.closed_within(8), "an idle connection stayed open"
    assert time.time() - t0 >= 2.5
    h.close()
    # A frame started and never finished: closed after 10 s even while bytes trickle in.
    h = be.host()
    h.sock.sendall(struct.pack(">I", 100) + b"\x03")
    t0 = time.time()
    closed = False
    while time.time() - t0 < 14:
        try:
            h.sock.sendall(b"\x00")
        except OSError:
            closed = True
            break
        if h.closed_within(1.5):
            closed = True
            break
    assert closed and time.time() - t0 >= 9, "a slow frame was not cut after 10 s"
    h.close()


def activate(be, fleet, h, serial):
    t = bc.Terminal(h, be.ca, fleet.certs[serial], fleet.keys[serial])
    t.handshake()
    return t


def check_tunnel(be, fleet):
    # TUNNEL before login: refused.
    h = be.host()
    h.send(bc.TUNNEL, bc.field("data", b"\x16\x03\x01"), key=h.login_key())
    h.expect_error(2)
    h.close()

    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    t = activate(be, fleet, h, "T-OK")
    hello = bc.tlv(0xDF01, b"T-OK") + bc.tlv(0xDF02, b"1.2.0")
    # A SEALED before HELLO is refused (status 6).
    t.send(0x03, b"\x01\x02")
    typ, body = t.recv()
    assert typ == 0x8F and bc.tlv_parse(body)[0xDF04] == b"\x06", (typ, body)
    t.send(0x01, hello)
    typ, body = t.recv()
    f = bc.tlv_parse(body)
    assert typ == 0x81 and f[0xDF04] == b"\x00" and f[0xDF08] == b"\x00", (typ, f)
    # Not activated yet: SEALED refused with status 5.
    t.send(0x03, b"\x01\x02")
    typ, body = t.recv()
    assert typ == 0x8F and bc.tlv_parse(body)[0xDF04] == b"\x05"
    # Wrong code, then the right one.
    t.send(0x02, hello + bc.tlv(0xDF03, b"0000-0000-0000-0000"))
    typ, body = t.recv()
    assert typ == 0x82 and bc.tlv_parse(body)[0xDF04] == b"\x01", (typ, body)
    t.send(0x02, hello + bc.tlv(0xDF03, fleet.codes["T-OK"].encode()))
    typ, body = t.recv()
    f = bc.tlv_parse(body)
    assert typ == 0x82 and f[0xDF04] == b"\x00", (typ, f)
    assert f[0xDF05] == MERCHANT.ljust(15).encode() and re.match(rb"^\d{8}$", f[0xDF06])
    assert f[0xDF07] == be.package
    # The code is single use.
    t.send(0x02, hello + bc.tlv(0xDF03, fleet.codes["T-OK"].encode()))
    typ, body = t.recv()
    assert typ == 0x82 and bc.tlv_parse(body)[0xDF04] != b"\x00"
    show = fleet.ctl("terminal", "show", "T-OK")
    assert re.search(r"state\s+active", show), show
    assert h.env.device_id.hex().upper() in show.upper(), "host binding not recorded"
    # A sealed request: the response comes down the tunnel, TXN_RESULT to the host.
    h.txn_begin(1, 2500)
    # The TXN_OK arrives among tunnel traffic: read it through the terminal's pump.
    assert h.expect(bc.TXN_OK) is not None
    t.send(0x03, b"\x01sealed-request")
    typ, body = t.recv()
    assert typ == 0x83 and body == b"RESP:\x01sealed-request", (typ, body)
    t0, f = h.recv()
    assert t0 == bc.TXN_RESULT, (t0, f)
    assert struct.unpack(">Q", f[bc.T["amount"]])[0] == 2500
    assert f[bc.T["masked_pan"]] == b"622588******1234" and f[bc.T["response_code"]] == b"00"
    # A request that does not verify: ERROR 6, nothing else.
    t.send(0x03, b"\x00forged")
    typ, body = t.recv()
    assert typ == 0x8F and bc.tlv_parse(body)[0xDF04] == b"\x06"
    h.close()

    # HELLO of an activated terminal on a new connection: MID, TID, package.
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    t = activate(be, fleet, h, "T-OK")
    t.send(0x01, hello)
    typ, body = t.recv()
    f = bc.tlv_parse(body)
    assert typ == 0x81 and f[0xDF08] == b"\x01" and f[0xDF07] == be.package, f
    # HELLO naming another serial than the certificate: refused.
    t.send(0x01, bc.tlv(0xDF01, b"T-SUSP") + bc.tlv(0xDF02, b"1.2.0"))
    typ, body = t.recv()
    assert typ == 0x8F and bc.tlv_parse(body)[0xDF04] == b"\x06"
    h.close()


def refused_terminal(be, h, cert, key):
    """The inner handshake with this certificate: the back end must refuse it (a TLS alert, or
    ERROR status 4 then close) and tell the host ERROR 11."""
    t = bc.Terminal(h, be.ca, cert, key)
    refused = False
    try:
        t.handshake()
        t.send(0x01, bc.tlv(0xDF01, b"T-OK") + bc.tlv(0xDF02, b"1.2.0"))
        while True:
            typ, body = t.recv()
            if typ is None:
                break
            if typ == 0x8F:
                assert bc.tlv_parse(body)[0xDF04] == b"\x04"
                refused = True
            else:
                raise AssertionError("refused terminal got 0x%02X" % typ)
    except (bc.ssl.SSLError, EOFError):
        refused = True
    # The host's ERROR may still be on its way behind the tunnel bytes.
    h.sock.settimeout(3)
    for _ in range(8):
        if any(ty == bc.ERROR for ty, _ in t.host_frames):
            break
        try:
            t._pull()
        except (OSError, EOFError):
            break
    h.sock.settimeout(15)
    errors = [f for ty, f in t.host_frames if ty == bc.ERROR]
    assert refused and errors and struct.unpack(">H", errors[0][bc.T["error"]])[0] == 11, \
        (refused, t.host_frames)


def check_refused_terminals(tmp, be, fleet):
    # Same serial, a certificate from a CA of our own: the handshake fails.
    ca_key, ca_cert = make_ca("rogue manufacturer")
    k, c = issue(ca_key, ca_cert, x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "T-OK")]))
    rogue_cert = write(os.path.join(tmp, "rogue.crt"), pem_cert(c))
    rogue_key = write(os.path.join(tmp, "rogue.key"), pem_key(k))
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    refused_terminal(be, h, rogue_cert, rogue_key)
    # The connection survives: the genuine terminal still opens a tunnel on it.
    t = activate(be, fleet, h, "T-OK")
    t.send(0x01, bc.tlv(0xDF01, b"T-OK") + bc.tlv(0xDF02, b"1.2.0"))
    typ, _ = t.recv()
    assert typ == 0x81
    h.close()
    # Suspended: a genuine certificate, refused after the handshake.
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    refused_terminal(be, h, fleet.certs["T-SUSP"], fleet.keys["T-SUSP"])
    h.close()
    # Another merchant's terminal through this merchant's operator: refused.
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    refused_terminal(be, h, fleet.certs["T-ELSE"], fleet.keys["T-ELSE"])
    h.close()


def check_shutdown(be, fleet):
    """SIGTERM with a transaction in flight: its answer still arrives, then exit 0."""
    h = be.host()
    h.login(MERCHANT, "alice", PASSWORDS["alice"])
    t = activate(be, fleet, h, "T-OK")
    t.send(0x01, bc.tlv(0xDF01, b"T-OK") + bc.tlv(0xDF02, b"1.2.0"))
    assert t.recv()[0] == 0x81
    t.send(0x03, b"\x02slow")  # the double takes 1.5 s over it
    time.sleep(0.4)
    be.proc.send_signal(signal.SIGTERM)
    typ, body = t.recv()
    assert typ == 0x83 and body == b"RESP:\x02slow", (typ, body)
    assert h.recv()[0] == bc.TXN_RESULT
    assert be.proc.wait(30) == 0
    # Nothing listens any more.
    try:
        socket.create_connection(("127.0.0.1", be.port), timeout=2).close()
        raise AssertionError("still accepting after SIGTERM")
    except OSError:
        pass
    h.close()


def work_dir(prefix):
    """The test's folder: MPOS_TEST_ARTIFACTS (emptied; kept afterwards for the developer) or
    a new temporary one. Returns (folder, whether it is kept)."""
    art = os.environ.get("MPOS_TEST_ARTIFACTS")
    if art:
        shutil.rmtree(art, ignore_errors=True)
        os.makedirs(art, exist_ok=True)
        return art, True
    return tempfile.mkdtemp(prefix=prefix), False


def run_checks(checks):
    """Runs each (name, function) of checks, one line each; returns how many failed."""
    failed = 0
    for name, fn in checks:
        try:
            fn()
            print("ok   %s" % name)
        except Exception:  # pylint: disable=broad-except
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc()
    return failed


def close_down(be, fleet, tmp, kept, failed):
    """Stops the back end (when still running) and the fleet, removes tmp unless kept, and
    says how it went; returns the exit status."""
    if be is not None:
        be.stop()
    fleet.stop()
    if not kept:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


def main():
    tmp, kept = work_dir("mpos-backend-")
    fleet = Fleet(tmp)
    be = None
    failed = 0
    try:
        be = Backend(tmp, fleet)

        def restart(old):
            nonlocal be
            be = check_restart(tmp, fleet, old)

        checks = [("login", lambda: check_login(be)), ("lockout", lambda: check_lockout(be)),
                  ("envelope", lambda: check_envelope(be)),
                  ("integrity", lambda: check_integrity(be)), ("roles", lambda: check_roles(be)),
                  ("void_by_ref", lambda: check_void_by_ref(be)),
                  ("resume", lambda: check_resume(be)), ("tunnel", lambda: check_tunnel(be, fleet)),
                  ("refused_terminals", lambda: check_refused_terminals(tmp, be, fleet)),
                  ("limits", lambda: check_limits(be)),
                  ("shutdown", lambda: check_shutdown(be, fleet))]
        checks.insert(len(checks) - 1, ("restart", lambda: restart(be)))
        failed += run_checks(checks)
        log = getattr(be, "prev_log", "") + be.stop()
        be = None
        # Logs: key=value lines; no password, token or activation code in them.
        for user, pw in PASSWORDS.items():
            assert pw not in log, "a password in the log"
        for code in fleet.codes.values():
            assert code not in log, "an activation code in the log"
        assert "event=login " in log, "no login event logged"
        for line in log.splitlines():
            assert line.startswith("ts="), "not a key=value line: %r" % line
        if failed:
            print(log[-6000:])
    finally:
        status = close_down(be, fleet, tmp, kept, failed)
    return status


if __name__ == "__main__":
    sys.exit(main())
