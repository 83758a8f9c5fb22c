#!/usr/bin/env python3
"""A small ISO 8583 switch for the processor's tests, written independently of lib/iso8583:
the "ASCII 1987, binary bitmap" profile of docs/system-design.md section 4 built and parsed
by hand, the MAC (DE 64 / 128) as ISO/IEC 9797-1 MAC algorithm 3 (X9.19, padding method 1)
under the ZAK given on the command line.

Behaviour, per message received (the control file is re-read each time; one word a line):
  0800        -> 0810 (39 = 00)
  0200 / 0100 -> 0210 / 0110: amount ending in 51 -> 51, else 00 with 38 and DE 55 (91, 8A);
                 "silent" in the control file: no answer (the processor times out)
  0400        -> 0410 (39 = 00); "drop_0400": no answer
  "partial":  a 0200 / 0100 gets the first half of its answer, then nothing more on that
              connection (a stuck switch); "oversize": a 0200 / 0100 gets a length header of
              65535 and 4 bytes, then nothing more (the processor must not wait for the rest)
Every message received is logged as one JSON line (no PAN: only whether DE 2 was there).

usage: iso_peer.py PORT_FILE LOG_FILE CONTROL_FILE ZAK_HEX
"""
import json
import os
import socket
import sys
import warnings

warnings.filterwarnings("ignore")
try:  # cryptography >= 43 moved TDES here; Debian 12's is older
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402
except ImportError:
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402

# field: (kind, max): kind 'n'/'an'/'ans'/'b' fixed, 'll'/'lll' variable
FIELDS = {
    2: ("ll", 19), 3: ("f", 6), 4: ("f", 12), 7: ("f", 10), 11: ("f", 6), 12: ("f", 6),
    13: ("f", 4), 14: ("f", 4), 18: ("f", 4), 22: ("f", 3), 23: ("f", 3), 25: ("f", 2),
    32: ("ll", 11), 35: ("ll", 37), 37: ("f", 12), 38: ("f", 6), 39: ("f", 2), 41: ("f", 8),
    42: ("f", 15), 43: ("f", 40), 49: ("f", 3), 52: ("fb", 8), 53: ("f", 16),
    55: ("lll", 255), 60: ("lll", 999), 61: ("lll", 999), 62: ("lll", 999), 63: ("lll", 999),
    64: ("fb", 8), 70: ("f", 3), 90: ("f", 42), 95: ("f", 42), 128: ("fb", 8),
}


def des(key8):
    return Cipher(TripleDES(key8 * 3), modes.ECB())


def x919(key16, data):
    k1, k2 = key16[:8], key16[8:]
    if len(data) % 8:
        data += b"\0" * (8 - len(data) % 8)
    e1 = des(k1).encryptor()
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = e1.update(bytes(a ^ b for a, b in zip(h, data[i:i + 8])))
    h = des(k2).decryptor().update(h)
    return des(k1).encryptor().update(h)


def parse(msg):
    mti = msg[:4].decode()
    bm = int.from_bytes(msg[4:12], "big")
    pos, nbits = 12, 64
    if bm >> 63 & 1:
        bm = bm << 64 | int.from_bytes(msg[12:20], "big")
        pos, nbits = 20, 128
    fields = {}
    mac_off = None
    for f in range(2, nbits + 1):
        if not (bm >> (nbits - f)) & 1:
            continue
        kind, ln = FIELDS[f]
        if kind == "ll":
            n = int(msg[pos:pos + 2]); pos += 2
        elif kind == "lll":
            n = int(msg[pos:pos + 3]); pos += 3
        else:
            n = ln
        if f in (64, 128):
            mac_off = pos
        fields[f] = msg[pos:pos + n]
        pos += n
    if pos != len(msg):
        raise ValueError("trailing bytes")
    return mti, fields, mac_off


def build(mti, fields, zak):
    fields = dict(fields)
    second = any(f > 64 for f in fields)
    fields[128 if second else 64] = bytes(8)
    nbits = 128 if second else 64
    bm = 0
    for f in fields:
        bm |= 1 << (nbits - f)
    if second:
        bm |= 1 << 127
    out = mti.encode() + bm.to_bytes(nbits // 8, "big")
    for f in sorted(fields):
        kind, _ = FIELDS[f]
        v = fields[f]
        if isinstance(v, str):
            v = v.encode()
        if kind == "ll":
            out += b"%02d" % len(v)
        elif kind == "lll":
            out += b"%03d" % len(v)
        out += v
    out = out[:-8] + x919(zak, out[:-8])
    return len(out).to_bytes(2, "big") + out


def control(path):
    try:
        with open(path) as fh:
            return set(fh.read().split())
    except OSError:
        return set()


def handle(conn, log, ctl_path, zak):
    buf = b""
    stalled = False
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buf += data
        while len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + n:
                break
            msg, buf = buf[2:2 + n], buf[2 + n:]
            mti, f, mac_off = parse(msg)
            mac_ok = mac_off is not None and x919(zak, msg[:mac_off]) == msg[mac_off:mac_off + 8]
            rec = {"mti": mti, "mac_ok": mac_ok, "de2": 2 in f, "de52": 52 in f,
                   "de55": 55 in f, "de62": 62 in f}
            for k in (3, 4, 7, 11, 22, 32, 37, 39, 41, 42, 49, 70, 90):
                if k in f:
                    rec["de%d" % k] = f[k].decode()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if not mac_ok or stalled:
                continue
            ctl = control(ctl_path)
            echo = {k: f[k] for k in (3, 4, 7, 11, 37, 41, 42) if k in f}
            if mti == "0800":
                conn.sendall(build("0810", {7: f[7], 11: f[11], 39: "00", 70: f[70]}, zak))
            elif mti in ("0200", "0100"):
                if "silent" in ctl:
                    continue
                if "oversize" in ctl:
                    conn.sendall(b"\xff\xff0210")
                    stalled = True
                    continue
                amount = int(f[4])
                r = dict(echo)
                if amount % 100 == 51:
                    r[39] = "51"
                else:
                    r[39] = "00"
                    r[38] = "A1B2C3"
                    # 91: ARPC (8) || ARC (2); 8A: ARC
                    r[55] = bytes.fromhex("910A1122334455667788") + b"00" + bytes.fromhex("8A02") + b"00"
                if mti == "0100":
                    r[62] = "balance=123456"
                out = build("0210" if mti == "0200" else "0110", r, zak)
                if "partial" in ctl:
                    conn.sendall(out[:len(out) // 2])
                    stalled = True
                    continue
                conn.sendall(out)
            elif mti == "0400":
                if "drop_0400" in ctl:
                    continue
                r = dict(echo)
                r[39] = "00"
                conn.sendall(build("0410", r, zak))


def main():
    port_file, log_file, ctl_file, zak_hex = sys.argv[1:5]
    zak = bytes.fromhex(zak_hex)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(os.environ.get("ISO_PEER_PORT", "0"))))
    s.listen(4)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(s.getsockname()[1]))
    os.rename(tmp, port_file)
    with open(log_file, "a") as log:
        while True:
            conn, _ = s.accept()
            try:
                handle(conn, log, ctl_file, zak)
            except (OSError, ValueError) as e:
                log.write(json.dumps({"error": str(e)}) + "\n")
                log.flush()
            finally:
                conn.close()


if __name__ == "__main__":
    main()
