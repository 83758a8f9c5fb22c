#!/usr/bin/env python3
"""The end-to-end environment of openmpos (docs/system-design.md, docs/demo.md).

`Env` builds a fresh system in one private folder and starts every process of it:

    mpos-cardsim ─vpcd─ pcscd ─PC/SC─ mpos-terminal ══link══ mpos-host ══TLS══ mpos-backend
                                                                               │       │
                                                     mpos-switchsim ─ISO 8583──┘  mpos-hsmd

Set-up, in order (each step is one call of the real tools; nothing is faked):
  SoftHSM2 token + LMK (mposctl hsm init), mpos-hsmd (tools and backend sockets), database
  (mposctl db migrate), BDK (AES-128), manufacturer CA and back-end CA (key generate S1 ec +
  ca create), the back end's TLS key (openssl) and certificate (mposctl cert sign --dns
  mpos-backend), the ZMK from known components (mposctl key import --components) and the
  ZPK / ZAK / ZEK generated exportable and exported under it for the switch simulator, the
  signed parameter package (mposctl params publish: a parameter-signing key endorsed by the
  back-end CA key), merchant, operators, one terminal
  (mpos-terminal keygen, mposctl terminal provision, mpos-terminal import, terminal assign
  with a location: the activation code).
Then: mpos-cardsim + pcscd (root, our own reader.conf), mpos-switchsim, mpos-backend,
mpos-terminal run. Every daemon and mpos-host runs as uid/gid 65534 through `setpriv`
(mpos-hsmd drops to 65534 itself); only pcscd runs as root.

Safety: a pcscd we did not start makes us refuse (and we touch nothing of it); every process
is stopped by pid, in reverse order, from stop() (try/finally and SIGINT/SIGTERM/SIGHUP
handlers); children also get a parent-death signal. Nothing is written outside the private
folder but /run/pcscd (pcscd's own, removed when we created it).

Test data: the cards of ../shared/testdata/cards.tsv; key components below are made up for
the tests (never the published vectors'), so the secret scan can tell them apart.
"""
import ctypes
import ctypes.util
import fcntl
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testutil"))
import mpostest  # noqa: E402 (tests/testutil)

SERVICE_UID = 65534
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PCSCD = "/usr/sbin/pcscd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
RUN_DIR = "/run/pcscd"
RUN_COMM = "/run/pcscd/pcscd.comm"
RUN_PID = "/run/pcscd/pcscd.pid"
READER_NAME = "mpos vpcd"

# Made-up test keys (dual-control components, each with its check value computed at run time).
LMK_TOKEN_PIN = "87654321"
ZMK_COMPONENTS = ["5B2C7A1F0E3D4968A7B6C5D4E3F20118", "1F2E3D4C5B6A79880796A5B4C3D2E1F0"]
BDK_KEY_SET_ID = "00E2E001"
MERCHANT_ID = "E2E000000000001"
MERCHANT_NAME = "openmpos e2e shop"
SERIAL = "E2E-TERM-0001"
# The terminal's registered location (Shanghai, People's Square) and radius; hosts report
# positions near it unless a test moves them.
SITE = (31.230416, 121.473701, 500)
NEAR = "31.230500,121.473800,15"
FAR = "31.300000,121.600000,15"  # about 14 km away: outside the radius
OPERATORS = {
    "cashier1": ("cashier", "Till-Drawer-42-Blue!"),
    "super1": ("supervisor", "Night-Manager-Keys-77#"),
}

# Binaries, relative to the build folder; each can be overridden by MPOS_BIN_<NAME> (ctest
# passes $<TARGET_FILE:...> that way).
BINARIES = {
    "hsmd": "hsm/hsmd/mpos-hsmd",
    "mposctl": "tools/mposctl/mposctl",
    "crypto": "tools/mpos-crypto/mpos-crypto",
    "terminal": "terminal/sim/terminal/mpos-terminal",
    "cardsim": "terminal/sim/mpos-cardsim",
    "preload": "terminal/sim/tests/pcsc/libmpos_vpcd_preload.so",
    "backend": "backend/server/mpos-backend",
    "host": "host/cli/mpos-host",
    "switchsim": "tools/mpos-switchsim/mpos-switchsim",
}


class EnvError(Exception):
    """A set-up or control step failed; the message says which and why."""


class Refused(EnvError):
    """The environment cannot start here (another pcscd runs): nothing was touched."""


def _log_default(msg):
    print(msg, file=sys.stderr, flush=True)


def mask_pan(pan):
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def source_dir():
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def cards_tsv():
    src = source_dir()
    shared = os.path.join(src, "..", "shared", "testdata", "cards.tsv")
    return os.path.abspath(shared if os.path.exists(shared) else
                           os.path.join(src, "tests", "data", "cards.tsv"))


def load_cards():
    """name -> PAN (the only column the harness needs: to look for it where it must not be)."""
    cards = {}
    for line in open(cards_tsv(), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        col = line.rstrip("\n").split("\t")
        cards[col[0]] = col[1]
    return cards


# ---- processes -----------------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    """In the child before exec: its own session (a Ctrl-C reaches only us; we stop it in
    order) and SIGTERM when we die."""
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def as_service(argv):
    """argv run as uid/gid 65534 with no supplementary groups; the parent-death signal is set
    again after the credential change (setpriv --pdeathsig), which clears it."""
    return ["setpriv", "--reuid=%d" % SERVICE_UID, "--regid=%d" % SERVICE_UID,
            "--clear-groups", "--pdeathsig", "TERM", "--"] + list(argv)


class Proc:
    """One started process: name, Popen, log file."""

    def __init__(self, name, argv, log, env=None, stdout_pipe=False):
        self.name = name
        self.log = log
        self.logf = open(log, "ab")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self.logf, stderr=self.logf,
            env=env, preexec_fn=_child_setup, close_fds=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=30):
        try:
            with open(self.log, "r", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace=5.0):
        """SIGTERM by pid, SIGKILL after grace; reaped. Returns the exit status."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.logf.close()
        return self.popen.returncode


def _find_process(name):
    """pid of a running (non-zombie) process whose comm is name, else 0."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() != name:
                    continue
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            if st[st.rindex(")") + 2] != "Z":
                return int(d)
        except (OSError, ValueError):
            continue
    return 0


def _unix_listening(path):
    try:
        for line in open("/proc/net/unix"):
            f = line.split()
            if len(f) >= 8 and f[7] == path and int(f[3], 16) & 0x10000:
                return True
    except OSError:
        pass
    return False


def _tcp_listening(port):
    for line in open("/proc/net/tcp"):
        f = line.split()
        if len(f) > 3 and f[1] == "0100007F:%04X" % port and f[3] == "0A":
            return True
    return False


def _free_port_pair():
    """Two consecutive free loopback ports (vpcd: slot i on port + i)."""
    for _ in range(50):
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b = socket.socket()
        try:
            if port >= 65535:
                continue
            b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    raise EnvError("no two consecutive free loopback ports")


class _Pcsc:
    """SCardListReaders through libpcsclite (ctypes): to wait until pcscd lists the readers."""

    def __init__(self):
        name = ctypes.util.find_library("pcsclite") or "libpcsclite.so.1"
        self.lib = ctypes.CDLL(name)

    def readers(self):
        ctx = ctypes.c_long(0)
        if self.lib.SCardEstablishContext(ctypes.c_ulong(2), None, None, ctypes.byref(ctx)):
            return []
        try:
            buf = ctypes.create_string_buffer(4096)
            n = ctypes.c_ulong(len(buf))
            if self.lib.SCardListReaders(ctx, None, buf, ctypes.byref(n)):
                return []
            return [r.decode() for r in buf.raw[:n.value].split(b"\0") if r]
        finally:
            self.lib.SCardReleaseContext(ctx)


# ---- the environment -----------------------------------------------------------------------

class Env:
    def __init__(self, build, root=None, log=_log_default, keys=None, cards=("approve",),
                 backend_policy=None, host_location=NEAR):
        """build: the build folder. root: the private folder (created; default a new one
        under $TMPDIR). keys: the terminal's scripted keypad for its first run. cards: the
        cards in slot 0 (first) and 1 at start. backend_policy: extra [policy] lines."""
        self.build = os.path.abspath(build)
        self.owns_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="mpos-e2e-")
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o755)  # the service user walks through it
        self.say = log
        self.procs = []  # started, in order
        self.bins = {}
        self.cards = load_cards()
        self.initial_cards = list(cards)
        self.keys = keys
        self.policy = dict(backend_policy or {})
        self.host_location = host_location
        self.pcscd_started = False
        self.pcsc_lock = None
        self.had_run = {}
        self.activation_code = None
        self.tid = None
        self._old_handlers = {}
        self.terminal_proc = None
        self.backend_proc = None
        self.switch_proc = None
        self.pcscd_proc = None
        self.cardsim_proc = None
        self.hsmd_proc = None
        self.backend_port = None
        self.switch_port = None
        self.host_runs = 0
        self.lock_wait = int(os.environ.get("MPOS_PCSC_LOCK_WAIT", "120"))

    # -- paths and binaries --
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def bin(self, name, required=True):
        if name not in self.bins:
            env = os.environ.get("MPOS_BIN_" + name.upper())
            self.bins[name] = env or os.path.join(self.build, BINARIES[name])
        p = self.bins[name]
        if required and not os.access(p, os.X_OK):
            raise EnvError("%s is not built (%s): build the whole tree first (make demo does)"
                           % (name, p))
        return p

    def service_dir(self, *parts, mode=0o700):
        """A folder owned by the service user (its daemons write there)."""
        d = self.path(*parts)
        os.makedirs(d, exist_ok=True)
        os.chown(d, SERVICE_UID, SERVICE_UID)
        os.chmod(d, mode)
        return d

    # -- signals --
    def install_signal_handlers(self):
        def handler(sig, frame):
            raise KeyboardInterrupt("signal %d" % sig)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[s] = signal.signal(s, handler)

    def restore_signal_handlers(self):
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        self._old_handlers = {}

    # -- running tools --
    def run(self, argv, what, check=0, stdin=None, timeout=120, env=None, service=False):
        """Runs one command to completion; returns the CompletedProcess (text). check: the
        exit status wanted (None: any)."""
        cmd = as_service(argv) if service else list(argv)
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                           env=env, preexec_fn=lambda: _libc.prctl(PR_SET_PDEATHSIG,
                                                                    signal.SIGTERM, 0, 0, 0))
        if check is not None and p.returncode != check:
            raise EnvError("%s: exit %d (want %d)\n%s%s" % (what, p.returncode, check,
                                                              p.stdout, p.stderr))
        return p

    def ctl(self, *args, check=0, stdin=None, service=True):
        """mposctl against our database and mpos-hsmd's tools socket (as the service user,
        which owns the database folder)."""
        argv = [self.bin("mposctl"), "--db", self.db, "--hsm", self.tools_sock] + list(args)
        return self.run(argv, "mposctl " + " ".join(a for a in args[:3]), check=check,
                        stdin=stdin, service=service)

    def kcv(self, key_hex, cipher):
        return self.run([self.bin("crypto"), "kcv", "--key", key_hex, "--cipher", cipher],
                        "mpos-crypto kcv").stdout.strip()

    def start(self, name, argv, service=True, env=None, stdout_pipe=False):
        log = self.path("logs", name + ".log")
        p = Proc(name, as_service(argv) if service else argv, log, env=env,
                 stdout_pipe=stdout_pipe)
        self.procs.append(p)
        return p

    def wait_for(self, what, cond, proc=None, timeout=15.0):
        end = time.monotonic() + timeout
        while True:
            r = cond()
            if r:
                return r
            if proc is not None and not proc.alive():
                raise EnvError("%s exited during start-up (status %s):\n%s"
                               % (proc.name, proc.popen.returncode, proc.tail()))
            if time.monotonic() > end:
                raise EnvError("%s: not within %.0f s%s" % (what, timeout,
                               (":\n" + proc.tail()) if proc else ""))
            time.sleep(0.02)

    # ---- 1. keys, database, fleet ------------------------------------------------------
    def setup(self):
        t0 = time.monotonic()
        os.makedirs(self.path("logs"), exist_ok=True)
        os.chmod(self.path("logs"), 0o777)  # service processes append their own logs
        self.db_dir = self.service_dir("db")
        self.db = self.path("db", "mpos.db")
        self._lmk()
        self._hsmd()
        self.ctl("db", "migrate")
        self._keys()
        self._fleet()
        self.say("setup: keys, database and fleet ready in %.1f s" % (time.monotonic() - t0))

    def _lmk(self):
        hsm = self.path("hsm")
        os.makedirs(self.path("hsm", "tokens"))
        os.chmod(hsm, 0o755)  # root-owned, writable by nobody else (mpos-hsmd checks)
        conf = self.path("hsm", "softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.path("hsm", "tokens"))
        self.softhsm_env = dict(os.environ, SOFTHSM2_CONF=conf)
        self.run(["softhsm2-util", "--init-token", "--free", "--label", "mpos-e2e",
                  "--so-pin", "12345678", "--pin", LMK_TOKEN_PIN], "softhsm2-util --init-token",
                 env=self.softhsm_env)
        self.pin_file = self.path("hsm", "token.pin")
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (LMK_TOKEN_PIN + "\n").encode())
        os.close(fd)
        self.lmk_wrapped = self.path("hsm", "lmk.wrapped")
        p = self.run([self.bin("mposctl"), "--db", self.path("hsm", "unused.db"), "hsm", "init",
                      "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "mpos-e2e",
                      "--pin-file", self.pin_file, "--lmk-wrapped", self.lmk_wrapped],
                     "mposctl hsm init", env=self.softhsm_env)
        m = re.search(r"^lmk-kcv ([0-9A-F]+)$", p.stdout, re.M)
        if not m:
            raise EnvError("mposctl hsm init: no lmk-kcv in %r" % p.stdout)
        self.lmk_kcv = m.group(1)
        self.say("hsm: SoftHSM2 token mpos-e2e, LMK kcv %s" % self.lmk_kcv)

    def _hsmd(self):
        sockdir = self.path("hsm", "sock")
        os.mkdir(sockdir)
        os.chmod(sockdir, 0o755)
        self.tools_sock = os.path.join(sockdir, "tools.sock")
        self.backend_sock = os.path.join(sockdir, "backend.sock")
        # Started as root: it opens the token and binds the sockets (owned by 65534), then
        # drops to 65534 itself.
        argv = [self.bin("hsmd"), "--socket", "tools=" + self.tools_sock,
                "--socket", "backend=" + self.backend_sock,
                "--audit-log", self.path("hsm", "audit.log"),
                "--lmk-pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "mpos-e2e",
                "--pin-file", self.pin_file, "--lmk-wrapped", self.lmk_wrapped]
        self.hsmd_proc = self.start("mpos-hsmd", argv, service=False, env=self.softhsm_env)

        def up():
            for s in (self.tools_sock, self.backend_sock):
                if not _unix_listening(s):
                    return False
            return True
        self.wait_for("mpos-hsmd sockets", up, self.hsmd_proc)
        self.say("hsm: mpos-hsmd pid %d (drops to uid %d), sockets in %s"
                 % (self.hsmd_proc.pid, SERVICE_UID, sockdir))

    def _keys(self):
        pki = self.service_dir("pki", mode=0o755)
        self.ctl("bdk", "create", "--label", "bdk-aes", "--algorithm", "aes", "--length", "16",
                 "--key-set-id", BDK_KEY_SET_ID)
        # Manufacturer CA (signs device certificates) and back-end CA (signs the TLS server
        # certificate and endorses the parameter package; the terminals' trust anchor).
        for label, cn in (("mfr-ca", "openmpos e2e manufacturer CA"),
                          ("backend-ca", "openmpos e2e back-end CA")):
            self.ctl("key", "generate", "--label", label, "--usage", "S1", "--algorithm", "ec")
            self.ctl("ca", "create", "--key", label, "--cn", cn, "--out",
                     os.path.join(pki, label + ".der"))
        self.mfr_ca = os.path.join(pki, "mfr-ca.der")
        self.backend_ca = os.path.join(pki, "backend-ca.der")
        self.backend_ca_pem = os.path.join(pki, "backend-ca.pem")
        self.run(["openssl", "x509", "-inform", "DER", "-in", self.backend_ca, "-out",
                  self.backend_ca_pem], "openssl x509 (CA to PEM)")
        os.chmod(self.backend_ca_pem, 0o644)
        self.say("pki: manufacturer CA and back-end CA issued by mpos-hsmd")
        self._tls_server_cert(pki)
        self._zone_keys()
        self._params(pki)

    def _tls_server_cert(self, pki):
        self.tls_key = os.path.join(pki, "backend-tls.key")
        csr = os.path.join(pki, "backend-tls.csr")
        self.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", self.tls_key], "openssl genpkey")
        os.chown(self.tls_key, SERVICE_UID, SERVICE_UID)
        os.chmod(self.tls_key, 0o600)
        self.run(["openssl", "req", "-new", "-key", self.tls_key, "-subj", "/CN=mpos-backend",
                  "-out", csr], "openssl req")
        os.chmod(csr, 0o644)
        out = os.path.join(pki, "backend-tls.crt")
        self.ctl("cert", "sign", "--ca-key", "backend-ca", "--ca-cert", self.backend_ca,
                 "--csr", csr, "--dns", "mpos-backend", "--out", out)
        # PEM for the server (whatever mposctl wrote), the chain check done here once.
        self.tls_cert = os.path.join(pki, "backend-tls.pem")
        form = "PEM" if open(out, "rb").read(5) == b"-----" else "DER"
        self.run(["openssl", "x509", "-inform", form, "-in", out, "-out", self.tls_cert],
                 "openssl x509 (server certificate)")
        self.run(["openssl", "verify", "-CAfile", self.backend_ca_pem, "-purpose", "sslserver",
                  self.tls_cert], "openssl verify (server certificate)")
        os.chmod(self.tls_cert, 0o644)
        self.say("pki: back-end TLS certificate (DNS mpos-backend) signed by the back-end CA")

    def _zone_keys(self):
        """ZMK from two known components (the switch simulator holds the same ZMK), then the
        ZPK, ZAK and ZEK generated in mpos-hsmd and exported under it as TR-31 blocks."""
        comps = "".join(c + "\n" for c in ZMK_COMPONENTS)
        self.ctl("key", "import", "--label", "zmk", "--components", "2", "--usage", "K0",
                 "--algorithm", "tdes", "--length", "16", stdin=comps)
        self.zmk = "%032X" % (int(ZMK_COMPONENTS[0], 16) ^ int(ZMK_COMPONENTS[1], 16))
        self.zone = {}
        for label, usage in (("zpk", "P0"), ("zak", "M3"), ("zek", "D0")):
            self.ctl("key", "generate", "--label", label, "--usage", usage, "--algorithm",
                     "tdes", "--length", "16", "--exportable")
            out = self.ctl("key", "export", "--label", label, "--kek", "zmk").stdout.split("\n")
            self.zone[label] = (out[0].strip(), out[1].split()[1])
        self.say("keys: ZMK from 2 components; ZPK, ZAK, ZEK exported under it (kcv %s)"
                 % ", ".join(v[1] for v in self.zone.values()))

    def _params(self, pki):
        self.params = os.path.join(pki, "params.pkg")
        # The parameter-signing key (S0), endorsed by the back-end CA key (the anchor).
        self.ctl("key", "generate", "--label", "params-key", "--usage", "S0", "--algorithm",
                 "ec")
        self.ctl("params", "publish", "--sign-key", "params-key", "--anchor-key", "backend-ca",
                 "--version", "1", "--min-firmware", "0.0.1", "--out", self.params)
        os.chmod(self.params, 0o644)
        self.say("params: package version 1 signed (key endorsed by the back-end CA key)")

    def _fleet(self):
        self.ctl("merchant", "add", "--id", MERCHANT_ID, "--name", MERCHANT_NAME, "--mcc", "5411")
        for user, (role, pw) in OPERATORS.items():
            self.ctl("operator", "add", "--merchant", MERCHANT_ID, "--role", role,
                     "--username", user, stdin=pw + "\n")
        # The terminal: device key born in its key store, provisioned, bundle imported.
        self.ks = self.service_dir("terminal")
        self.ks_dir = os.path.join(self.ks, "keystore")
        p = self.run([self.bin("terminal"), "keygen", "--dir", self.ks_dir, "--serial", SERIAL],
                     "mpos-terminal keygen", service=True)
        csr = p.stdout.strip()
        bundles = self.service_dir("bundles")
        prov = self.ctl("terminal", "provision", "--serial", SERIAL, "--scheme", "dukpt-aes",
                        "--csr", csr, "--ca-key", "mfr-ca", "--ca-cert", self.mfr_ca,
                        "--bdk", "bdk-aes", "--trust-anchor", self.backend_ca,
                        "--out", bundles).stdout
        self.initial_ksn = re.search(r"^initial-ksn\s+(\S+)", prov, re.M).group(1)
        self.run([self.bin("terminal"), "import", "--dir", self.ks_dir, "--bundle",
                  os.path.join(bundles, SERIAL + ".bundle"), "--ca-cert", self.mfr_ca],
                 "mpos-terminal import", service=True)
        self.say("terminal: %s provisioned (AES DUKPT, initial key ID %s), bundle imported"
                 % (SERIAL, self.initial_ksn))
        self.assign()

    def assign(self, ttl=None, reassign=False):
        args = ["terminal", "assign", SERIAL, "--merchant", MERCHANT_ID, "--location",
                "%f,%f,%d" % SITE]
        if ttl:
            args += ["--ttl", ttl]
        if reassign:
            args.append("--reassign")
        out = self.ctl(*args).stdout
        self.activation_code = re.search(r"^activation-code\s+(\S+)", out, re.M).group(1)
        self.say("fleet: %s assigned to merchant %s at %.6f,%.6f radius %d m; activation code "
                 "issued" % (SERIAL, MERCHANT_ID, SITE[0], SITE[1], SITE[2]))
        return self.activation_code

    # ---- 2. card reader: mpos-cardsim + our own pcscd ------------------------------------
    def start_pcsc(self):
        if os.geteuid() != 0:
            raise Refused("needs root: pcscd runs as root and always uses /run/pcscd")
        for p in (PCSCD, VPCD_DRIVER):
            if not os.path.exists(p):
                raise Refused("%s missing (scripts/install-deps installs pcscd and "
                              "vsmartcard-vpcd)" % p)
        # One user of the machine's pcscd at a time: the same lock as mpos-pcsc-harness.
        self.pcsc_lock = open(PCSCD, "rb")
        end = time.monotonic() + self.lock_wait
        said = False
        while True:
            try:
                fcntl.flock(self.pcsc_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > end:
                    raise Refused("another pcscd user (mpos-pcsc-harness or an e2e run) "
                                  "still runs after %d s" % self.lock_wait)
                if not said:
                    self.say("pcsc: waiting (up to %d s) for another pcscd user to finish"
                             % self.lock_wait)
                    said = True
                time.sleep(0.2)
        other = _find_process("pcscd")
        end = time.monotonic() + 5
        while other and time.monotonic() < end:
            time.sleep(0.1)
            other = _find_process("pcscd")
        if other:
            raise Refused("a pcscd is already running (pid %d; see %s). This harness starts "
                          "its own pcscd and never touches one it did not start: stop it "
                          "(systemctl stop pcscd.socket pcscd.service)" % (other, RUN_PID))
        try:
            with open(RUN_PID) as f:
                pid = int(f.read().strip() or 0)
            if pid > 0 and os.path.exists("/proc/%d" % pid):
                raise Refused("%s names pid %d, which runs: another pcscd; not touching it"
                              % (RUN_PID, pid))
        except (OSError, ValueError):
            pass
        if _unix_listening(RUN_COMM):
            raise Refused("%s is listening (socket-activated pcscd: systemctl stop "
                          "pcscd.socket); not touching it" % RUN_COMM)
        self.had_run = {p: os.path.exists(p) for p in (RUN_DIR, RUN_COMM, RUN_PID)}
        if self.had_run[RUN_COMM] and not self.had_run[RUN_PID]:
            raise Refused("%s exists without %s: a leftover; remove it if no pcscd uses it"
                          % (RUN_COMM, RUN_PID))

        pdir = self.service_dir("pcsc", mode=0o755)
        port = _free_port_pair()
        conf = os.path.join(pdir, "reader.conf")
        with open(conf, "w") as f:
            f.write('FRIENDLYNAME "%s"\nDEVICENAME   127.0.0.1:%d\nLIBPATH      %s\n'
                    'CHANNELID    %d\n' % (READER_NAME, port, VPCD_DRIVER, port))
        self.cardsim_ctl = os.path.join(pdir, "cardsim.sock")
        argv = [self.bin("cardsim"), "--cards", cards_tsv(), "--port", str(port),
                "--control", self.cardsim_ctl]
        for slot, name in enumerate(self.initial_cards):
            argv += ["--card", "%d:%s" % (slot, name)]
        self.cardsim_proc = self.start("mpos-cardsim", argv)
        self.wait_for("mpos-cardsim on 127.0.0.1:%d and :%d" % (port, port + 1),
                      lambda: (_tcp_listening(port) and _tcp_listening(port + 1)
                               and os.path.exists(self.cardsim_ctl)), self.cardsim_proc)
        env = dict(os.environ, LD_PRELOAD=self.bin("preload"))
        self.pcscd_proc = self.start("pcscd", [PCSCD, "--foreground", "--config", conf,
                                               "--auto-exit"], service=False, env=env)
        self.pcscd_started = True
        pc = _Pcsc()
        want = {READER_NAME + " 00 00", READER_NAME + " 00 01"}
        self.wait_for("pcscd readers", lambda: want <= set(pc.readers()), self.pcscd_proc)
        self.reader = READER_NAME + " 00 00"
        self.say("pcsc: mpos-cardsim pid %d (card %s), pcscd pid %d (root, reader \"%s\")"
                 % (self.cardsim_proc.pid, self.initial_cards[0] if self.initial_cards else "-",
                    self.pcscd_proc.pid, self.reader))

    def cardsim(self, line):
        """One control command of mpos-cardsim (insert SLOT NAME, remove SLOT, ...)."""
        ans = mpostest.unix_request(self.cardsim_ctl, line, timeout=5, bufsize=512)
        if not ans.startswith("ok"):
            raise EnvError("mpos-cardsim %r: %s" % (line, ans))
        return ans

    def insert(self, name, slot=0):
        return self.cardsim("insert %d %s" % (slot, name))

    def remove(self, slot=0):
        return self.cardsim("remove %d" % slot)

    # ---- 3. services ---------------------------------------------------------------------
    def start_all(self):
        self.start_pcsc()
        self.start_switch()
        self.start_backend()
        self.start_terminal(self.keys)

    def start_switch(self):
        sdir = self.service_dir("switch")
        keys = os.path.join(sdir, "keys.ini")
        with open(keys, "w") as f:
            f.write("# test keys of the e2e environment (made up)\n"
                    "zmk = %s\nzpk = %s\nzak = %s\nzek = %s\npvk = %s\n"
                    % (self.zmk, self.zone["zpk"][0], self.zone["zak"][0], self.zone["zek"][0],
                       "0123456789ABCDEFFEDCBA9876543211"))
        os.chown(keys, SERVICE_UID, SERVICE_UID)
        os.chmod(keys, 0o600)
        self.switch_ctl = os.path.join(sdir, "control.sock")
        self.ledger = os.path.join(sdir, "ledger")
        portf = os.path.join(sdir, "port")
        argv = [self.bin("switchsim"), "--listen", "127.0.0.1:0", "--port-file", portf,
                "--keys", keys, "--cards", cards_tsv(), "--control", self.switch_ctl,
                "--ledger", self.ledger]
        self.switch_proc = self.start("mpos-switchsim", argv)
        self.switch_port = self._read_port(portf, self.switch_proc, "mpos-switchsim")
        self.wait_for("switch control socket", lambda: os.path.exists(self.switch_ctl),
                      self.switch_proc)
        self.say("switch: mpos-switchsim pid %d on 127.0.0.1:%d"
                 % (self.switch_proc.pid, self.switch_port))

    def _read_port(self, portf, proc, what):
        def port():
            try:
                s = open(portf).read().strip()
            except OSError:
                return None
            m = re.search(r"(\d+)\s*$", s)
            return int(m.group(1)) if m else None
        return self.wait_for("%s port file" % what, port, proc)

    def switch(self, line):
        """One control command of mpos-switchsim (delay MS, drop N, late MS, ledger, ...)."""
        ans = mpostest.unix_request(self.switch_ctl, line, timeout=10, bufsize=4096)
        if ans.startswith("error"):
            raise EnvError("mpos-switchsim %r: %s" % (line, ans))
        return ans

    def backend_config(self, extra_policy=None):
        # The store enforces 5 failures / 900 s (the back end refuses other values).
        policy = {"max_login_failures": "5", "lockout_s": "900"}
        policy.update(self.policy)
        policy.update(extra_policy or {})
        lines = [
            "[server]", "listen = 127.0.0.1:0", "workers = 2",
            "cert = " + self.tls_cert, "key = " + self.tls_key, "",
            "[terminal]", "ca = " + self.mfr_ca, "params = " + self.params, "",
            "[store]", "db = " + self.db, "",
            "[hsm]", "socket = " + self.backend_sock, "timeout_ms = 5000", "",
            "[upstream]", "host = 127.0.0.1", "port = %d" % self.switch_port,
            "timeout_ms = 2000", "echo_s = 30", "saf_interval_ms = 300",
            "acquirer_id = 00000000001", "",
            "[keys]", "zpk = zpk", "zak = zak", "zek = zek", "",
            "[policy]"] + ["%s = %s" % kv for kv in sorted(policy.items())]
        return "\n".join(lines) + "\n"

    def start_backend(self, extra_policy=None):
        bdir = self.service_dir("backend")
        conf = os.path.join(bdir, "backend.ini")
        with open(conf, "w") as f:
            f.write(self.backend_config(extra_policy))
        os.chmod(conf, 0o644)
        portf = os.path.join(bdir, "port")
        if os.path.exists(portf):
            os.unlink(portf)
        self.backend_proc = self.start("mpos-backend", [self.bin("backend"), "--config", conf,
                                                        "--port-file", portf, "--foreground"])
        self.backend_port = self._read_port(portf, self.backend_proc, "mpos-backend")
        self.say("backend: mpos-backend pid %d on 127.0.0.1:%d (uid %d)"
                 % (self.backend_proc.pid, self.backend_port, SERVICE_UID))

    def restart_backend(self, extra_policy=None):
        self._stop_one(self.backend_proc)
        self.start_backend(extra_policy)
        self.write_host_config()

    def start_terminal(self, keys=None, online_timeout=None, retry_delay=None, retries=None):
        """(Re)starts mpos-terminal run with a scripted keypad (docs: --keys); the online
        timing options (--online-timeout, --retry-delay, --retries: docs/protocol.md 2.8) when
        given."""
        if self.terminal_proc is not None:
            self._stop_one(self.terminal_proc)
        self.link = os.path.join(self.ks, "link.sock")
        if os.path.exists(self.link):
            os.unlink(self.link)
        self.display_log = os.path.join(self.ks, "display.log")
        argv = [self.bin("terminal"), "run", "--dir", self.ks_dir, "--link", "unix:" + self.link,
                "--reader", self.reader, "--server-name", "mpos-backend",
                "--display-log", self.display_log]
        # Always scripted: without --keys the terminal would read a TTY. An exhausted script
        # makes the keypad time out.
        argv += ["--keys", keys or "wait:1"]
        for opt, v in (("--online-timeout", online_timeout), ("--retry-delay", retry_delay),
                       ("--retries", retries)):
            if v is not None:
                argv += [opt, str(v)]
        self.terminal_proc = self.start("mpos-terminal", argv)
        self.wait_for("mpos-terminal link socket", lambda: _unix_listening(self.link),
                      self.terminal_proc)
        self.write_host_config()
        self.say("terminal: mpos-terminal run pid %d, link unix:%s"
                 % (self.terminal_proc.pid, self.link))

    def stop_terminal(self):
        if self.terminal_proc is not None:
            self._stop_one(self.terminal_proc)
            self.terminal_proc = None

    def keystore_snapshot(self, name):
        """A copy of the terminal's key store (the terminal must be stopped): a test restores
        it to play a cloned or restored device."""
        dst = os.path.join(self.ks, "snap-" + name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.ks_dir, dst, copy_function=shutil.copy2)
        return dst

    def keystore_restore(self, snap):
        shutil.rmtree(self.ks_dir)
        shutil.copytree(snap, self.ks_dir, copy_function=shutil.copy2)
        for dirpath, dirs, files in os.walk(self.ks_dir):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in files]:
                os.chown(n, SERVICE_UID, SERVICE_UID)

    def log_text(self, name):
        try:
            return open(self.path("logs", name + ".log"), errors="replace").read()
        except OSError:
            return ""

    # ---- 4. the cashier app ------------------------------------------------------------
    def write_host_config(self, location=None):
        hdir = self.service_dir("host")
        self.host_conf = os.path.join(hdir, "host.ini")
        with open(self.host_conf, "w") as f:
            f.write("[backend]\naddress = 127.0.0.1:%s\nca = %s\nserver_name = mpos-backend\n\n"
                    "[terminal]\nlink = unix:%s\n\n[host]\nstate = %s\nlocation = %s\n"
                    % (self.backend_port, self.backend_ca_pem, getattr(self, "link", ""),
                       os.path.join(hdir, "state"), location or self.host_location))
        os.chmod(self.host_conf, 0o644)

    def host(self, *args, password=None, root=False, location=None, timeout=60, check=None,
             state=None):
        """Runs mpos-host with our configuration (as the service user; root=True runs it as
        root). Returns the CompletedProcess (stdout: receipt; stderr: prompts)."""
        argv = [self.bin("host"), "--config", self.host_conf]
        if location:
            argv += ["--location", location]
        if state:
            argv += ["--state", state]
        argv += list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPOS_HOST_")}
        env["HOME"] = self.path("host")
        env["XDG_STATE_HOME"] = self.path("host")
        if password is not None:
            env["MPOS_HOST_PASSWORD"] = password
        self.host_runs += 1
        p = self.run(argv, "mpos-host " + " ".join(args[:1]), check=check, timeout=timeout,
                     env=env, service=not root)
        with open(self.path("logs", "mpos-host.log"), "a") as f:
            f.write("== mpos-host %s (exit %d)\n%s%s" % (" ".join(args[:1]), p.returncode,
                                                      p.stdout, p.stderr))
        return p

    def login(self, user="cashier1", **kw):
        return self.host("login", "--merchant", MERCHANT_ID, "--user", user,
                         password=OPERATORS[user][1], **kw)

    def activate(self, code=None, **kw):
        return self.host("activate", "--code", code or self.activation_code, **kw)

    # ---- 5. what the back end and the switch recorded --------------------------------------
    def journal(self, where="1=1", args=()):
        """Journal rows (dicts), oldest first; read-only connection (the back end writes)."""
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM journal WHERE %s ORDER BY id"
                                                 % where, args)]
        finally:
            con.close()

    def sql(self, query, args=()):
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def sql_write(self, query, args=()):
        """A test's direct change to the store (e.g. an activation code made to expire)."""
        con = sqlite3.connect(self.db, timeout=10)
        try:
            con.execute(query, args)
            con.commit()
        finally:
            con.close()

    def ledger_lines(self):
        try:
            return open(self.ledger).read()
        except OSError:
            return ""

    # ---- stopping ------------------------------------------------------------------------
    def _stop_one(self, p):
        if p is None:
            return
        p.stop()
        if p in self.procs:
            self.procs.remove(p)

    def stop(self):
        """Stops every process we started, newest first (pcscd before mpos-cardsim, as the vpcd
        driver wants), by pid; removes /run/pcscd leftovers only if we created them. Returns
        the list of problems (empty when everything is gone)."""
        problems = []
        pids = [p.pid for p in self.procs]
        for p in reversed(list(self.procs)):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                problems.append("%s: %s" % (p.name, e))
        self.procs = []
        for pid in pids:
            if os.path.exists("/proc/%d" % pid):
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        st = f.read()
                    if st[st.rindex(")") + 2] != "Z":
                        problems.append("pid %d still runs" % pid)
                except OSError:
                    pass
        if self.pcscd_started:
            if _find_process("pcscd"):
                problems.append("a pcscd still runs")
            for p in (RUN_COMM, RUN_PID):
                if not self.had_run.get(p) and os.path.lexists(p):
                    os.unlink(p)
            if not self.had_run.get(RUN_DIR) and os.path.isdir(RUN_DIR):
                try:
                    os.rmdir(RUN_DIR)
                except OSError:
                    problems.append("%s not empty" % RUN_DIR)
            self.pcscd_started = False
        if self.pcsc_lock is not None:
            self.pcsc_lock.close()
            self.pcsc_lock = None
        return problems

    def children_left(self):
        """Processes whose parent is us (anything we started and did not reap)."""
        me, left = os.getpid(), []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            rest = st[st.rindex(")") + 2:].split()
            if int(rest[1]) == me and rest[0] != "Z":
                left.append(int(d))
        return left

    def cleanup(self):
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def main():
    """python3 mposenv.py BUILD: builds the environment, starts everything, waits for Ctrl-C
    (for poking at it by hand), then stops it."""
    env = Env(sys.argv[1] if len(sys.argv) > 1 else "build", keys="ok,wait:1000,pin:1234,ok")
    env.install_signal_handlers()
    try:
        env.setup()
        env.start_all()
        print("environment up in %s; host config %s; Ctrl-C stops it"
              % (env.root, env.host_conf), flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping: %s" % (env.stop() or "clean"), flush=True)
        env.cleanup()


if __name__ == "__main__":
    main()
