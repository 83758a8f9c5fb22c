#!/usr/bin/env python3
"""Secret scan of everything the tests left at rest (label ops; runs after the hsm, ops and
store tests as the cleanup of their fixture `mpos_artifacts`).

usage: secret_scan.py ARTIFACTS_DIR CARDS_TSV PUBLISHED_TSV [--plant KIND]

Reads every file under ARTIFACTS_DIR (build/test-artifacts/<test>/: audit logs, databases and
their WAL/journal, bundles, key files; text and binary alike) and fails (exit 1), naming the
file and what was found, when it holds:
  - a PAN of CARDS_TSV: ASCII digits, or packed BCD (F-padded when odd); masked PANs
    (first 6 / last 4 with the middle replaced) do not match and are allowed;
  - a key of CARDS_TSV (issuer master keys) or of PUBLISHED_TSV (--bdk, --imk, --kbpk, --mk,
    --key values): hex text (either case) or the raw bytes;
  - a clear ISO 9564 PIN block of a CARDS_TSV PIN: the format 0 plaintext PIN field
    (0 || N || PIN || F..F, e.g. 041234FFFFFFFFFF) or the first half of format 4
    (4 || N || PIN || A..A, e.g. 441234AAAAAAAAAA): hex text or raw bytes.
An empty or missing ARTIFACTS_DIR fails too (nothing was kept: the scan proves nothing).
--plant KIND first writes a file holding one secret of that kind (pan-ascii, pan-bcd, key,
pin-block) into ARTIFACTS_DIR: the self-test registered WILL_FAIL, proving the scan can fail.
"""
import os
import re
import sys


def load_cards(path):
    pans, pins, keys = [], [], []
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        col = line.rstrip("\n").split("\t")
        pans.append(col[1])
        pins.append(col[5])
        keys.append(col[7])
    return pans, pins, keys


def load_published_keys(path):
    keys = set()
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            continue
        args = line.split("\t")[0]
        for m in re.finditer(r"--(bdk|imk|kbpk|mk|key) ([0-9A-Fa-f]+)\b", args):
            if len(m.group(2)) >= 16 and len(m.group(2)) % 2 == 0:
                keys.add(m.group(2).upper())
    return sorted(keys)


def bcd(pan):
    digits = pan + ("F" if len(pan) % 2 else "")
    return bytes.fromhex(digits)


def pin_fields(pin):
    """Format 0 plaintext PIN field and format 4 first half (ISO 9564-1:2017 9.3.1, 9.4.2)."""
    n = "%X" % len(pin)
    return [("0" + n + pin).ljust(16, "F"), ("4" + n + pin).ljust(16, "A")]


def needles(cards, published):
    pans, pins, card_keys = load_cards(cards)
    out = []
    for pan in pans:
        out.append(("PAN (ASCII)", pan.encode()))
        out.append(("PAN (packed BCD)", bcd(pan)))
    for key in card_keys + load_published_keys(published):
        out.append(("key %s... (hex)" % key[:6], key.encode()))
        out.append(("key %s... (hex)" % key[:6], key.lower().encode()))
        out.append(("key %s... (binary)" % key[:6], bytes.fromhex(key)))
    for pin in pins:
        for field in pin_fields(pin):
            out.append(("clear PIN block %s.. (hex)" % field[:2], field.encode()))
            out.append(("clear PIN block %s.. (hex)" % field[:2], field.lower().encode()))
            out.append(("clear PIN block %s.. (binary)" % field[:2], bytes.fromhex(field)))
    return out, pans, pins, card_keys


def plant(root, kind, pans, pins, keys):
    os.makedirs(root, exist_ok=True)
    data = {"pan-ascii": b"note: card " + pans[0].encode() + b" declined\n",
            "pan-bcd": b"\x00\x5a\x08" + bcd(pans[0]) + b"\x00",
            "key": b"\x01" + bytes.fromhex(keys[0]) + b"\x02",
            "pin-block": ("pinblock=%s\n" % pin_fields(pins[0])[0]).encode()}[kind]
    with open(os.path.join(root, "planted-%s.bin" % kind), "wb") as f:
        f.write(data)


def main(argv):
    if len(argv) not in (4, 6) or (len(argv) == 6 and argv[4] != "--plant"):
        print(__doc__)
        return 2
    root, cards, published = argv[1:4]
    found, pans, pins, card_keys = needles(cards, published)
    if len(argv) == 6:
        plant(root, argv[5], pans, pins, card_keys)
    files = []
    for d, _, names in os.walk(root):
        files.extend(os.path.join(d, n) for n in names)
    if not files:
        print("secret scan: no file under %s (no test kept its artifacts)" % root)
        return 1
    bad = 0
    for path in sorted(files):
        if os.path.islink(path) or not os.path.isfile(path):
            continue  # sockets the tests left behind
        data = open(path, "rb").read()
        for what, needle in found:
            if needle in data:
                print("SECRET %s: %s at offset %d" % (os.path.relpath(path, root), what,
                                                      data.index(needle)))
                bad += 1
    print("secret scan: %d files, %d patterns, %d findings" % (len(files), len(found), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
