#!/usr/bin/env python3
"""mpos-switchsim end to end: an independent ISO 8583 client (this file's own codec, MAC, PIN
block and EMV cryptograms on python3-cryptography; TR-31 key blocks and the option B ICC master
key from the built mpos-crypto) against the simulator: network management, approvals with the
ARPC checked, declines (14 51 54 55 75 05), a bad MAC left unanswered, reversals (idempotent),
void, refund, balance, and every control command. Exit 0 on success, 1 on a failure."""

import argparse
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import warnings

warnings.filterwarnings("ignore")
try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402
except ImportError:  # python3-cryptography before 43 (Debian 12)
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402

# ---- crypto (independent of lib/) ---------------------------------------------------------


def tdes(key, data, decrypt=False):
    k = key if len(key) != 8 else key * 3
    c = Cipher(TripleDES(k), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def tdes_cbc(key, iv, data, decrypt=False):
    c = Cipher(TripleDES(key), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def mac_alg3(key, data, pad):
    """ISO 9797-1 MAC algorithm 3 (X9.19), padding method 1 or 2."""
    if pad == 2:
        data = data + b"\x80"
    if len(data) % 8 or not data:
        data = data + bytes(8 - len(data) % 8)
    k1, k2 = key[:8], key[8:16]
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = tdes(k1, xor(h, data[i:i + 8]))
    return tdes(k1, tdes(k2, h, decrypt=True))


def pin_block0(key, pin, pan):
    field = bytes.fromhex(("0%X" % len(pin)) + pin + "F" * (14 - len(pin)))
    panf = bytes.fromhex("0000" + pan[-13:-1])
    return tdes(key, xor(field, panf))


def icc_mk_option_a(imk, pan, psn):
    y = bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))
    return tdes(imk, y) + tdes(imk, xor(y, b"\xff" * 8))


def session_key(mk, atc):
    return tdes(mk, atc + b"\xf0" + bytes(5)) + tdes(mk, atc + b"\x0f" + bytes(5))


def tlv(tag, value):
    t = bytes.fromhex("%X" % tag if tag > 0xFF else "%02X" % tag)
    return t + bytes([len(value)]) + value


def tlv_parse(data):
    out, i = {}, 0
    while i < len(data):
        t = data[i]
        i += 1
        if t & 0x1F == 0x1F:
            t = (t << 8) | data[i]
            i += 1
        n = data[i]
        i += 1
        out[t] = data[i:i + n]
        i += n
    return out


# ---- ISO 8583 (the profile of docs/system-design.md 4: ASCII, binary bitmap) --------------

FIELDS = {  # number: (length kind, max length, charset)
    2: ("LL", 19, "n"), 3: ("F", 6, "n"), 4: ("F", 12, "n"), 7: ("F", 10, "n"), 11: ("F", 6, "n"),
    12: ("F", 6, "n"), 13: ("F", 4, "n"), 14: ("F", 4, "n"), 22: ("F", 3, "n"), 23: ("F", 3, "n"),
    25: ("F", 2, "n"), 32: ("LL", 11, "n"), 35: ("LL", 37, "z"), 37: ("F", 12, "an"),
    38: ("F", 6, "an"), 39: ("F", 2, "an"), 41: ("F", 8, "ans"), 42: ("F", 15, "ans"),
    49: ("F", 3, "n"), 52: ("F", 8, "b"), 55: ("LLL", 255, "b"), 62: ("LLL", 999, "ans"),
    64: ("F", 8, "b"), 70: ("F", 3, "n"), 90: ("F", 42, "n"), 128: ("F", 8, "b"),
}


def iso_pack(mti, fields):
    fields = dict(fields)
    secondary = any(f > 64 for f in fields)
    if secondary and 64 in fields:
        fields[128] = fields.pop(64)
    bitmap = bytearray(16 if secondary else 8)
    if secondary:
        bitmap[0] |= 0x80
    body = b""
    for f in sorted(fields):
        kind, mx, cs = FIELDS[f]
        v = fields[f]
        v = v if isinstance(v, bytes) else v.encode()
        if kind == "F":
            assert len(v) == mx, (f, v)
        else:
            body += ("%0*d" % (len(kind), len(v))).encode()
        body += v
        bitmap[(f - 1) // 8] |= 0x80 >> ((f - 1) % 8)
    return mti.encode() + bytes(bitmap) + body


def iso_unpack(msg):
    mti = msg[:4].decode()
    bm = msg[4:12]
    i = 12
    if bm[0] & 0x80:
        bm += msg[12:20]
        i = 20
    out = {}
    for f in range(2, 8 * len(bm) + 1):
        if not bm[(f - 1) // 8] & (0x80 >> ((f - 1) % 8)):
            continue
        kind, mx, cs = FIELDS[f]
        if kind == "F":
            n = mx
        else:
            n = int(msg[i:i + len(kind)])
            i += len(kind)
        v = msg[i:i + n]
        i += n
        out[f] = v if cs == "b" else v.decode()
    assert i == len(msg), "trailing bytes"
    return mti, out


# ---- the test -----------------------------------------------------------------------------

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


class Env:
    pass


def crypto_cli(env, *args):
    return subprocess.run([env.crypto] + list(args), check=True, capture_output=True,
                          text=True).stdout.strip()


def load_cards(path):
    cards = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        cards[f[0]] = dict(name=f[0], pan=f[1], exp=f[2], svc=f[3], psn=f[4], pin=f[5],
                           imk=bytes.fromhex(f[7]), text=f[8])
    return cards


class Link:
    """One switch connection with its framing, MAC and STAN counter."""

    def __init__(self, env):
        self.env = env
        self.s = socket.create_connection(("127.0.0.1", env.port), timeout=5)

    def send(self, raw):
        self.s.sendall(len(raw).to_bytes(2, "big") + raw)

    def recv(self, timeout=3.0):
        self.s.settimeout(timeout)
        try:
            hdr = b""
            while len(hdr) < 2:
                c = self.s.recv(2 - len(hdr))
                if not c:
                    return None
                hdr += c
            n = int.from_bytes(hdr, "big")
            body = b""
            while len(body) < n:
                c = self.s.recv(n - len(body))
                if not c:
                    return None
                body += c
            return body
        except socket.timeout:
            return None

    def macd(self, mti, fields):
        fields = dict(fields)
        fields[64] = bytes(8)
        raw = iso_pack(mti, fields)
        return raw[:-8] + mac_alg3(self.env.zak, raw[:-8], 1)

    def request(self, mti, fields, timeout=3.0):
        self.send(self.macd(mti, fields))
        return self.response(timeout)

    def response(self, timeout=3.0):
        raw = self.recv(timeout)
        if raw is None:
            return None, None
        mti, f = iso_unpack(raw)
        if 64 in f or 128 in f:
            mac = f.get(64, f.get(128))
            check(mac == mac_alg3(self.env.zak, raw[:-8], 1), "%s MAC verifies" % mti)
        return mti, f


STAN = [100]
RRN = [500000000000]


def de7():
    return time.strftime("%m%d%H%M%S", time.gmtime())


def track2_de62(env, card, expiry=None):
    digits = card["pan"] + "D" + (expiry or card["exp"]) + card["svc"] + "00000"
    if len(digits) % 2:
        digits += "F"
    plain = bytes.fromhex(digits) + b"\x80"
    plain += bytes((8 - len(plain) % 8) % 8)
    iv = os.urandom(8)
    return (iv + tdes_cbc(env.zek, iv, plain)).hex().upper()


def emv_data(env, card, amount, atc, tamper=False):
    """DE 55 with an ARQC computed as the virtual card does (terminal/sim/cardsim/card.c)."""
    if len(card["pan"]) > 16:
        mk = bytes.fromhex(crypto_cli(env, "emv", "mk", "--imk", card["imk"].hex(), "--pan",
                                      card["pan"], "--psn", card["psn"], "--option", "b"))
    else:
        mk = icc_mk_option_a(card["imk"], card["pan"], card["psn"])
    sk = session_key(mk, atc)
    amt = bytes.fromhex("%012d" % amount)
    objs = [(0x9F02, amt), (0x9F03, bytes(6)), (0x9F1A, bytes.fromhex("0156")),
            (0x95, bytes(5)), (0x5F2A, bytes.fromhex("0156")), (0x9A, bytes.fromhex("260115")),
            (0x9C, b"\x00"), (0x9F37, bytes.fromhex("11223344")), (0x82, bytes.fromhex("7C00")),
            (0x9F36, atc)]
    iad = bytes.fromhex("07010103A0A00001")  # length, DKI, CVN, CVR (03 A0A000), algorithm
    data = b"".join(v for _, v in objs) + iad[3:7]
    arqc = mac_alg3(sk, data, 2)
    if tamper:
        arqc = bytes([arqc[0] ^ 1]) + arqc[1:]
    d55 = b"".join(tlv(t, v) for t, v in objs) + tlv(0x9F10, iad) + tlv(0x9F26, arqc) + \
        tlv(0x9F27, b"\x80")
    return d55, sk, arqc


def txn(env, link, card, proc="000000", amount=1000, pin=None, chip=True, tamper=False,
        de62=None, de90=None, mti="0200", atc=b"\x00\x21", pan=None, timeout=3.0, send_only=False):
    STAN[0] += 1
    RRN[0] += 1
    f = {2: pan or card["pan"], 3: proc, 4: "%012d" % amount, 7: de7(), 11: "%06d" % STAN[0],
         12: time.strftime("%H%M%S"), 13: time.strftime("%m%d"), 22: "051" if pin else "052",
         23: "0" + card["psn"], 25: "00", 32: "12345678", 37: "%012d" % RRN[0], 41: "TERM0001",
         42: "MERCHANT0000001", 49: "156"}
    sk = arqc = None
    if pin is not None:
        f[52] = pin_block0(env.zpk, pin, card["pan"])
    if chip:
        f[55], sk, arqc = emv_data(env, card, amount, atc, tamper)
    if de62:
        f[62] = de62
    if de90:
        f[90] = de90
    if send_only:
        link.send(link.macd(mti, f))
        return f
    mti_r, r = link.request(mti, f, timeout)
    return dict(req=f, mti=mti_r, resp=r, sk=sk, arqc=arqc)


def de90_of(t):
    f = t["req"]
    return "0200" + f[11] + f[7] + f[32].rjust(11, "0") + "0" * 11


def reversal(env, link, t, reason="68"):
    STAN[0] += 1
    o = t["req"]
    f = {2: o[2], 3: o[3], 4: o[4], 7: o[7], 11: "%06d" % STAN[0], 32: o[32], 37: o[37],
         39: reason, 41: o[41], 42: o[42], 49: o[49], 90: de90_of(t)}
    return link.request("0400", f)


class Control:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rw")

    def cmd(self, line):
        self.f.write(line + "\n")
        self.f.flush()
        return self.f.readline().strip()


def ledger(ctl):
    ans = ctl.cmd("ledger")
    assert ans.startswith("ok "), ans
    return dict(kv.split("=") for kv in ans[3:].split())


def mask(pan):
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchsim", required=True)
    ap.add_argument("--crypto", required=True)
    ap.add_argument("--cards", required=True)
    args = ap.parse_args()
    env = Env()
    env.crypto = args.crypto
    cards = load_cards(args.cards)
    tmp = tempfile.mkdtemp(prefix="switchsim-")
    proc = None
    try:
        zmk = os.urandom(16)
        env.zpk, env.zak, env.zek, pvk = (os.urandom(16) for _ in range(4))

        def wrap(key, header):
            return crypto_cli(env, "tr31", "wrap", "--kbpk", zmk.hex(), "--key", key.hex(),
                              "--header", header)

        keys = os.path.join(tmp, "keys.ini")
        with open(keys, "w") as kf:
            kf.write("[switch]\n# test keys\nzmk = %s\nzpk = %s\nzak = %s\nzek = %s\npvk = %s\n"
                     "pvki = 1\n" % (zmk.hex().upper(), wrap(env.zpk, "B0000P0TE00N0000"),
                                     wrap(env.zak, "B0000M3TC00N0000"),
                                     wrap(env.zek, "B0000D0TB00N0000"), pvk.hex().upper()))
        ctl_path = os.path.join(tmp, "ctl.sock")
        ledger_path = os.path.join(tmp, "ledger.txt")
        port_file = os.path.join(tmp, "port")
        errlog = open(os.path.join(tmp, "stderr.log"), "w")
        proc = subprocess.Popen([args.switchsim, "--keys", keys, "--cards", args.cards,
                                 "--control", ctl_path, "--ledger", ledger_path, "--port-file",
                                 port_file, "--read-timeout", "1500"],
                                stdout=subprocess.PIPE, stderr=errlog, text=True)
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"listening=127\.0\.0\.1:(\d+)", line)
        check(m is not None, "prints listening=127.0.0.1:PORT (%s)" % line)
        env.port = int(m.group(1))
        while proc.stdout.readline().strip() != "ready":
            pass
        check(int(open(port_file).read()) == env.port, "port file")
        check(oct(os.stat(ctl_path).st_mode & 0o777) == "0o600", "control socket mode 0600")
        ctl = Control(ctl_path)
        start = ledger(ctl)
        ap_c, ins, wp, exp_c, c19 = (cards["approve"], cards["insufficient"], cards["wrong-pin"],
                                     cards["expired"], cards["approve-19digit"])
        check(start[mask(ap_c["pan"])] == "10000000", "default balance 100000.00")
        check(start[mask(ins["pan"])] == "100", "balance from the behaviour text (1.00)")

        link = Link(env)
        # -- network management (no MAC)
        for code in ("001", "301"):
            STAN[0] += 1
            link.send(iso_pack("0800", {7: de7(), 11: "%06d" % STAN[0], 70: code}))
            mti, r = link.response()
            check(mti == "0810" and r[39] == "00" and r[70] == code and r[11] == "%06d" % STAN[0],
                  "0800/%s answered 0810 00" % code)

        # a MAC'd 0800 (the back end MACs everything) gets a MAC'd 0810; a bad one no answer
        STAN[0] += 1
        mti, r = link.request("0800", {7: de7(), 11: "%06d" % STAN[0], 70: "002"})
        check(mti == "0810" and r[39] == "00" and 128 in r, "MAC'd sign-off: MAC'd 0810 00")
        raw = link.macd("0800", {7: de7(), 11: "%06d" % STAN[0], 70: "301"})
        link.send(raw[:-1] + bytes([raw[-1] ^ 0x40]))
        check(link.recv(1.0) is None, "0800 with a bad MAC: no response")

        # -- approval with ARPC method 1
        t = txn(env, link, ap_c, amount=1000, pin=ap_c["pin"], de62=track2_de62(env, ap_c))
        r = t["resp"]
        check(t["mti"] == "0210" and r[39] == "00", "sale approved")
        check(re.fullmatch(r"[A-Za-z0-9 ]{6}", r.get(38, "")) is not None, "DE 38 auth code")
        for f in (3, 4, 7, 11, 37, 41, 42):
            check(r.get(f) == t["req"][f], "response echoes DE %d" % f)
        e = tlv_parse(r[55])
        arc = b"00"
        arpc = tdes(t["sk"], xor(t["arqc"], arc + bytes(6)))
        check(e.get(0x91) == arpc + arc, "DE 55 91 = ARPC || ARC (method 1)")
        check(e.get(0x8A) == arc, "DE 55 8A = ARC")
        check(ledger(ctl)[mask(ap_c["pan"])] == "9999000", "ledger debited 10.00")

        # -- 19-digit card: option B key, ARPC method 2 (ARPC || CSU)
        t = txn(env, link, c19, amount=2500, pin=c19["pin"])
        e = tlv_parse(t["resp"][55])
        csu = bytes.fromhex("00800000")
        want = crypto_cli(env, "emv", "arpc", "--sk", t["sk"].hex(), "--arqc", t["arqc"].hex(),
                          "--csu", csu.hex())
        check(t["resp"][39] == "00" and e.get(0x91) == bytes.fromhex(want) + csu,
              "19-digit PAN approved, 91 = ARPC || CSU (method 2)")

        # -- declines
        t = txn(env, link, ins, amount=50000, pin=ins["pin"])
        check(t["resp"][39] == "51", "insufficient funds 51")
        t = txn(env, link, ins, amount=50, pin=ins["pin"])
        check(t["resp"][39] == "00", "small amount on the 1.00 card approved")
        t = txn(env, link, ap_c, pan="6212000000000000003", chip=False)
        check(t["resp"][39] == "14", "unknown PAN 14")
        t = txn(env, link, ap_c, amount=700, pin=ap_c["pin"], tamper=True)
        e = tlv_parse(t["resp"][55])
        check(t["resp"][39] == "05" and 0x91 not in e, "bad ARQC 05, no ARPC")
        t = txn(env, link, exp_c, amount=100, pin=exp_c["pin"], de62=track2_de62(env, exp_c))
        check(t["resp"][39] == "54", "expired card 54 (expiry from DE 62 under the ZEK)")
        t = txn(env, link, ap_c, amount=100, pin=ap_c["pin"],
                de62=track2_de62(env, ap_c, expiry="2001"))
        check(t["resp"][39] == "54", "expiry taken from DE 62, not from the record")
        t = txn(env, link, wp, amount=100, pin="9999")
        check(t["resp"][39] == "55", "wrong PIN 55")
        t = txn(env, link, wp, amount=100, pin=wp["pin"])
        check(t["resp"][39] == "00", "then the right PIN 00")
        codes = [txn(env, link, wp, amount=100, pin="0000")["resp"][39] for _ in range(3)]
        check(codes == ["55", "55", "75"], "three wrong PINs: 55 55 75 (%s)" % codes)
        t = txn(env, link, wp, amount=100, pin=wp["pin"])
        check(t["resp"][39] == "75", "right PIN after the limit still 75")

        # -- bad MAC: no answer at all
        STAN[0] += 1
        raw = link.macd("0200", {2: ap_c["pan"], 3: "000000", 4: "%012d" % 100, 7: de7(),
                                 11: "%06d" % STAN[0], 37: "000000000001", 41: "TERM0001",
                                 42: "MERCHANT0000001"})
        link.send(raw[:-1] + bytes([raw[-1] ^ 1]))
        check(link.recv(1.0) is None, "bad MAC: no response")
        check("bad_mac=2" in ctl.cmd("status"), "status counts the bad MACs")

        # -- reversal: twice, one effect
        bal0 = int(ledger(ctl)[mask(ap_c["pan"])])
        t = txn(env, link, ap_c, amount=2000, pin=ap_c["pin"])
        check(int(ledger(ctl)[mask(ap_c["pan"])]) == bal0 - 2000, "sale 20.00 debited")
        m1, r1 = reversal(env, link, t)
        m2, r2 = reversal(env, link, t)
        check(m1 == "0410" and r1[39] == "00" and m2 == "0410" and r2[39] == "00",
              "the same 0400 twice: two 0410 00")
        check(r1.get(90) == de90_of(t), "0410 echoes DE 90")
        check(int(ledger(ctl)[mask(ap_c["pan"])]) == bal0, "reversal restored the balance once")
        unknown = dict(t["req"])
        unknown[11] = "999999"
        m3, r3 = reversal(env, link, dict(req=unknown))
        check(m3 == "0410" and r3[39] == "25", "reversal of an unknown original: 0410 25")

        # -- void and refund
        t = txn(env, link, ap_c, amount=3000, pin=ap_c["pin"])
        v = txn(env, link, ap_c, proc="020000", amount=3000, de90=de90_of(t), chip=False)
        check(v["resp"][39] == "00", "void approved")
        check(int(ledger(ctl)[mask(ap_c["pan"])]) == bal0, "void credited the sale back")
        v = txn(env, link, ap_c, proc="020000", amount=3000, de90=de90_of(t), chip=False)
        check(v["resp"][39] == "12", "a second void of the same sale is refused")
        t = txn(env, link, ap_c, amount=5000, pin=ap_c["pin"])
        rf = txn(env, link, ap_c, proc="200000", amount=2000, de90=de90_of(t), chip=False)
        check(rf["resp"][39] == "00", "refund approved")
        check(int(ledger(ctl)[mask(ap_c["pan"])]) == bal0 - 3000, "refund credited 20.00")
        rf = txn(env, link, ap_c, proc="200000", amount=4000, de90=de90_of(t), chip=False)
        check(rf["resp"][39] == "13", "refund above what is left: 13")
        rf = txn(env, link, ap_c, proc="200000", amount=100, de90="0200999999" + "0" * 32,
                 chip=False)
        check(rf["resp"][39] == "25", "refund of an unknown original: 25")

        # -- balance inquiry
        b = txn(env, link, ap_c, proc="310000", amount=0, mti="0100", pin=ap_c["pin"])
        check(b["mti"] == "0110" and b["resp"][39] == "00", "balance 0110 00")
        check(b["resp"].get(62) == "balance=%d" % (bal0 - 3000), "DE 62 balance=<minor units>")

        # -- controls
        check(ctl.cmd("rc %s 05" % ap_c["pan"]) == "ok", "control rc")
        check(txn(env, link, ap_c, amount=100, pin=ap_c["pin"])["resp"][39] == "05",
              "forced response code")
        check(ctl.cmd("rc %s -" % ap_c["pan"]) == "ok", "control rc clear")
        check(ctl.cmd("rc 6212000000000000003 05").startswith("error:"), "rc unknown card error")
        check(ctl.cmd("bogus").startswith("error:"), "unknown command error")

        check(ctl.cmd("delay 400") == "ok", "control delay")
        t0 = time.monotonic()
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"])
        check(r["resp"][39] == "00" and time.monotonic() - t0 >= 0.4, "delayed response")
        ctl.cmd("delay 0")

        check(ctl.cmd("drop 1") == "ok", "control drop")
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"], timeout=1.0)
        check(r["resp"] is None, "dropped request unanswered")
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"])
        check(r["resp"] is not None and r["resp"][39] == "00", "next request answered")

        check(ctl.cmd("duplicate 1") == "ok", "control duplicate")
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"])
        m2, r2 = link.response(2.0)
        check(r2 is not None and r2[11] == r["req"][11], "response sent twice")
        check(link.recv(0.5) is None, "only twice")

        check(ctl.cmd("late 800") == "ok", "control late")
        t0 = time.monotonic()
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"], timeout=0.4)
        check(r["resp"] is None, "late response not there before its time")
        m2, r2 = link.response(2.0)
        check(r2 is not None and r2[11] == r["req"][11] and time.monotonic() - t0 >= 0.8,
              "late response arrives after the delay")
        t0 = time.monotonic()
        r = txn(env, link, ap_c, amount=100, pin=ap_c["pin"])
        check(r["resp"] is not None and time.monotonic() - t0 < 0.5, "late applies once")

        st = ctl.cmd("status")
        check(st.startswith("ok ") and "dropped=1" in st and "duplicated=1" in st and
              "connections=1" in st, "status counts (%s)" % st)

        link2 = Link(env)
        ans = ctl.cmd("disconnect")
        check(ans == "ok closed=2", "control disconnect (%s)" % ans)
        check(link.recv(1.0) is None and link2.recv(1.0) is None, "connections closed")

        # bounded input: an oversized frame or a stalled partial frame closes the connection
        link = Link(env)
        link.s.sendall(b"\xff\xff")
        check(link.recv(2.0) is None, "oversized frame closes")
        link = Link(env)
        link.s.sendall(b"\x00\x40ABC")
        t0 = time.monotonic()
        check(link.recv(4.0) is None and time.monotonic() - t0 < 3.5, "read timeout closes")

        led = open(ledger_path).read()
        check("reversed=1" in led and "type=void" in led and "type=refund" in led,
              "ledger file lists the transactions")
        check(ctl.cmd("reset") == "ok", "control reset")
        check(ledger(ctl) == start, "reset restores the balances")
        link = Link(env)
        t = txn(env, link, wp, amount=100, pin=wp["pin"])
        check(t["resp"][39] == "00", "reset clears the PIN try counter")

        # nothing secret at rest or in the log
        proc.terminate()
        proc.wait(10)
        check(proc.returncode == 0, "clean exit on SIGTERM")
        check(not os.path.exists(ctl_path), "control socket removed")
        errlog.close()
        text = open(os.path.join(tmp, "stderr.log")).read() + open(ledger_path).read()
        secrets = [c["pan"] for c in cards.values()] + [env.zpk.hex(), env.zak.hex(),
                                                          env.zek.hex(), zmk.hex(), pvk.hex()]
        check(not any(s.lower() in text.lower() for s in secrets),
              "no PAN or key in the log or the ledger")
        check(mask(ap_c["pan"]) in text, "masked PANs in the log")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
