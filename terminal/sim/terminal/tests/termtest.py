"""Helpers of the mpos-terminal acceptance tests (test_terminal_flows.py): a test PKI made with
the openssl CLI, the test-only provisioning of a terminal (mpos-terminal keygen, then
mpos-testpeer provision), an mpos-terminal process (`run`), the mpos-testpeer process that plays
the cashier host and the back end, and the mpos-cardsim control socket.

TEST-ONLY keys: the BDK is the published X9.24-3-2017 AES-128 test BDK, the CAs are made per
run in a temporary directory. Every process is started and stopped by pid.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                                "tests", "testutil"))
import mpostest  # noqa: E402  (tests/testutil: shared by the python tests)

BDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"  # X9.24-3-2017 test BDK (AES-128)
IKID = "1234567890123456"
CODE = "TEST-CODE-1"
SERIAL = "SIMTEST0001"
READER = "mpos vpcd 00 00"


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    if p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                     p.stderr))
    return p.stdout


def openssl(*args):
    return run(["openssl"] + list(args))


class Pki:
    """Manufacturer CA (signs device certificates), back-end CA (signs the server certificate
    and is the terminal's trust anchor, and so also its parameter anchor)."""

    def __init__(self, d):
        self.d = d
        for ca in ("mfr", "be"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", self.p(ca + ".key"), "-out", self.p(ca + ".pem"),
                    "-subj", "/CN=openmpos test %s CA" % ca, "-days", "2",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("x509", "-in", self.p("be.pem"), "-outform", "DER", "-out", self.p("be.der"))
        with open(self.p("srv.ext"), "w") as f:
            f.write("subjectAltName=DNS:mpos-backend\nextendedKeyUsage=serverAuth\n"
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        with open(self.p("dev.ext"), "w") as f:
            f.write("extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.p("srv.key"), "-out", self.p("srv.csr"), "-subj",
                "/CN=mpos-backend")
        openssl("x509", "-req", "-in", self.p("srv.csr"), "-CA", self.p("be.pem"), "-CAkey",
                self.p("be.key"), "-CAcreateserial", "-days", "2", "-extfile", self.p("srv.ext"),
                "-out", self.p("srv.pem"))

    def p(self, name):
        return os.path.join(self.d, name)

    def sign_device(self, csr_der, out_der):
        pem = out_der + ".csr.pem"
        openssl("req", "-inform", "DER", "-in", csr_der, "-out", pem)
        openssl("x509", "-req", "-in", pem, "-CA", self.p("mfr.pem"), "-CAkey", self.p("mfr.key"),
                "-CAcreateserial", "-days", "2", "-extfile", self.p("dev.ext"), "-outform", "DER",
                "-out", out_der)


def provision(terminal, peer_bin, pki, ksdir):
    """keygen in the terminal's key store, device certificate from the manufacturer CA, then
    the test-only import of the DUKPT key, certificate and back-end CA (mpos-testpeer
    provision; the product path is mpos-terminal import of an mpos-hsmd bundle)."""
    csr = run([terminal, "keygen", "--dir", ksdir, "--serial", SERIAL]).strip()
    dev = os.path.join(pki.d, "dev.der")
    pki.sign_device(csr, dev)
    run([peer_bin, "provision", "--dir", ksdir, "--bdk", BDK, "--ikid", IKID, "--cert", dev,
         "--trust", pki.p("be.der")])


class Terminal:
    """mpos-terminal run on a Unix socket with a scripted keypad, a display log and a swipe
    directory."""

    def __init__(self, binary, ksdir, tmp, keys="", name="t"):
        self.sock = os.path.join(tmp, name + ".sock")
        self.display = os.path.join(tmp, name + ".display")
        self.swipe = os.path.join(tmp, name + ".swipe")
        os.makedirs(self.swipe, exist_ok=True)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        open(self.display, "w").close()
        self.errpath = os.path.join(tmp, name + ".err")
        self.err = open(self.errpath, "a")
        args = [binary, "run", "--dir", ksdir, "--link", "unix:" + self.sock,
                "--display-log", self.display, "--swipe-dir", self.swipe,
                "--reader", os.environ.get("MPOS_PCSC_READER_0", READER),
                "--server-name", "mpos-backend"]
        if keys:
            args += ["--keys", keys]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err)
        end = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > end:
                self.err.flush()
                raise AssertionError("mpos-terminal did not start:\n" + self.log())
            time.sleep(0.02)

    def log(self):
        self.err.flush()
        with open(self.errpath) as f:
            return f.read()[-4000:]

    def prompts(self):
        """The display log: a list of dicts (prompt, type, amount, currency, count)."""
        out = []
        with open(self.display) as f:
            for line in f:
                d = dict(kv.split("=", 1) for kv in line.split())
                out.append(d)
        return out

    def swipe_file(self, track1, track2):
        tmp = os.path.join(self.swipe, ".swipe.tmp")
        with open(tmp, "w") as f:
            f.write(track1 + "\n" + track2 + "\n")
        os.rename(tmp, os.path.join(self.swipe, "swipe"))

    def forget_swipe(self):
        """A swipe the terminal never took holds a full PAN: never leave it at rest."""
        for n in ("swipe", ".swipe.tmp"):
            if os.path.exists(os.path.join(self.swipe, n)):
                os.unlink(os.path.join(self.swipe, n))

    def stop(self):
        self.forget_swipe()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()

    def kill(self):
        """Power loss: SIGKILL, nothing flushed or closed by the process."""
        self.forget_swipe()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.err.close()


class Peer:
    """mpos-testpeer peer: commands on its stdin, one JSON object per line on its stdout. Lines
    are kept in arrival order until a wait takes them; lines no wait asked for stay (clear()
    drops them)."""

    def __init__(self, binary, pki, cards, sock, tmp, activated=False):
        self.buf = []
        self.all = []
        self.eof = False
        self.cv = threading.Condition()
        self.errpath = os.path.join(tmp, "peer.err")
        self.err = open(self.errpath, "a")
        args = [binary, "peer", "--link", sock, "--cards", cards, "--bdk", BDK,
                "--srv-cert", pki.p("srv.pem"), "--srv-key", pki.p("srv.key"),
                "--client-ca", pki.p("mfr.pem"), "--anchor-key", pki.p("be.key"),
                "--code", CODE]
        if activated:
            args.append("--activated")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        threading.Thread(target=self._reader, daemon=True).start()
        self.wait("ready", timeout=10)

    def _reader(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"kind": "garbage", "line": line}
            with self.cv:
                self.all.append(obj)
                self.buf.append(obj)
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def cmd(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait(self, kinds, timeout=15, pred=None):
        """Takes the first line of one of kinds (a name or a tuple) matching pred."""
        if isinstance(kinds, str):
            kinds = (kinds,)
        end = time.time() + timeout
        with self.cv:
            while True:
                for i, obj in enumerate(self.buf):
                    if obj["kind"] in kinds and (pred is None or pred(obj)):
                        del self.buf[i]
                        return obj
                left = end - time.time()
                if self.eof or left <= 0:
                    raise AssertionError("peer: no %s within %.0f s%s; pending: %s"
                                         % (kinds, timeout, " (peer exited)" if self.eof else "",
                                            self.buf[-12:]))
                self.cv.wait(left)

    def clear(self):
        with self.cv:
            out, self.buf = self.buf, []
        return out

    def connect(self):
        self.cmd("connect 5000")
        self.wait(("connected", "fail"))

    def request(self, text, timeout=10):
        """Sends one command frame; returns the terminal's direct answer to it (the info, ack
        or error event naming the frame's sequence)."""
        word = text.split()[0]
        ftype = {"info": 1, "start": 2, "cancel": 3, "activate": 4, "location": 6}.get(word)
        if word == "raw":
            ftype = int(text.split()[1], 0)
        self.cmd(text)
        sent = self.wait(("sent", "fail"), timeout,
                         pred=lambda o: o["kind"] == "fail" or o["type"] == ftype)
        if sent["kind"] == "fail":
            raise AssertionError("peer: %s: %s" % (text, sent))
        return self.wait(("info", "ack", "error"), timeout,
                         pred=lambda o: o.get("ref") == sent["seq"])

    def state(self):
        return self.request("info")["state"]

    def start(self, text, timeout=30):
        """START_TXN as a cashier app sends it: a terminal that has just connected may be
        sending a reversal it owes (online, state 5) and refuses new orders until it is idle
        (docs/protocol.md 1.5), so "not allowed" in states 5 and 6 is waited out and the order
        sent again."""
        end = time.time() + timeout
        while True:
            r = self.request(text)
            if (r["kind"] != "error" or r["code"] != 2 or r["state"] not in (5, 6)
                    or time.time() > end):
                return r
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.err.close()


class Cardsim:
    """The control socket of the harness's mpos-cardsim (cardsim_main.c header)."""

    def __init__(self):
        self.path = os.environ["MPOS_CARDSIM_CONTROL"]

    def ctl(self, line):
        ans = mpostest.unix_request(self.path, line, timeout=5, bufsize=256)
        if not ans.startswith("ok"):
            raise AssertionError("cardsim %s: %s" % (line, ans))
        return ans

    def insert(self, name, slot=0):
        """Puts the card in. No wait: the terminal reports a card already in as inserted, and
        one that comes later when pcscd's poll sees it. A card taken out must have been seen
        out (the terminal back to idle) before another goes in: a swap between two of
        pcscd's polls (400 ms) is not seen by any reader that polls."""
        self.ctl("insert %d %s" % (slot, name))

    def remove(self, slot=0):
        """Takes the card out; an empty slot is fine."""
        try:
            self.ctl("remove %d" % slot)
        except AssertionError:
            pass


def load_cards(path):
    cards = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            c = line.rstrip("\n").split("\t")
            cards[c[0]] = {"pan": c[1], "expiry": c[2], "sc": c[3], "psn": c[4], "pin": c[5]}
    return cards


def tracks(card, pan=None):
    """Framed tracks 1 and 2 (no LRC) of a cards.tsv row, as a reader delivers them."""
    pan = pan or card["pan"]
    t1 = "%%B%s^TEST/CARDHOLDER^%s%s000000?" % (pan, card["expiry"], card["sc"])
    t2 = ";%s=%s%s000000?" % (pan, card["expiry"], card["sc"])
    return t1, t2


def masked(pan):
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
