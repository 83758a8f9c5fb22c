#!/usr/bin/env python3
"""H-KERNEL-1: the cashier app holds no card-kernel code.

Runs `nm` on each file given (static archive, shared library, executable) and fails when a
symbol matches emv|tlv|pin.?block|pinblock|dukpt (case-insensitive): no EMV kernel, TLV
parser, PIN-block or DUKPT code may be in libmposhost or mpos-host.

--expect-found inverts the verdict: the files must contain such symbols (run on lib/tlv's
archive, it shows that the check can fail). Exit 0 pass, 1 fail.
"""
import re
import subprocess
import sys

PATTERN = re.compile(r"emv|tlv|pin.?block|pinblock|dukpt", re.IGNORECASE)


def symbols(path):
    out = []
    for args in (["nm", "-A", path], ["nm", "-A", "-D", path]):
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0 and "no symbols" not in r.stderr:
            if args[-2] == "-D":
                continue  # archives have no dynamic table
            sys.exit(f"nm failed on {path}: {r.stderr.strip()}")
        out += [ln.split()[-1] for ln in r.stdout.splitlines() if ln.split()]
    return out


def main():
    args = sys.argv[1:]
    expect = "--expect-found" in args
    files = [a for a in args if a != "--expect-found"]
    if not files:
        sys.exit("usage: check_symbols.py [--expect-found] FILE...")
    total = 0
    for f in files:
        syms = symbols(f)
        if not syms:
            sys.exit(f"{f}: no symbols at all (stripped?): the check would prove nothing")
        hits = sorted({s for s in syms if PATTERN.search(s)})
        total += len(hits)
        print(f"{f}: {len(syms)} symbols, {len(hits)} forbidden")
        for h in hits[:20]:
            print(f"  {h}")
    if expect:
        if total == 0:
            print("FAIL: expected forbidden symbols, found none")
            return 1
        print("ok: the check finds forbidden symbols where they are")
        return 0
    if total:
        print("FAIL: forbidden symbols (H-KERNEL-1)")
        return 1
    print("ok: no EMV, TLV, PIN-block or DUKPT symbol")
    return 0


if __name__ == "__main__":
    sys.exit(main())
