#!/usr/bin/env python3
"""Runs mpos-crypto over a vector file and checks every line.

Vector files (published.tsv, independent.tsv): `args<TAB>expected stdout<TAB>source`.
The call must exit 0, print exactly the expected value and a newline, and nothing on stderr.

Negative files (negative.tsv): `args<TAB>exit code<TAB>why`. The call must exit with that
code, print nothing on stdout and exactly one line on stderr starting "mpos-crypto: ".
Arguments are split on spaces; the token '' stands for an empty argument.
"""
import subprocess
import sys


def split_args(text):
    return ["" if a == "''" else a for a in text.split(" ") if a != ""]


def run(binary, args):
    p = subprocess.run([binary] + args, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("--vectors", "--negative"):
        sys.exit("usage: run_vectors.py --vectors|--negative MPOS_CRYPTO FILE")
    mode, binary, path = sys.argv[1:]
    passed = failed = 0
    with open(path, encoding="ascii") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                print(f"{path}:{lineno}: malformed line")
                failed += 1
                continue
            args = split_args(cols[0])
            rc, out, err = run(binary, args)
            if mode == "--vectors":
                ok = rc == 0 and out == cols[1] + "\n" and err == ""
                want = f"exit 0, stdout {cols[1]!r}"
            else:
                ok = (rc == int(cols[1]) and out == "" and err.count("\n") == 1
                      and err.startswith("mpos-crypto: "))
                want = f"exit {cols[1]}, no stdout, one error line"
            if ok:
                passed += 1
            else:
                failed += 1
                print(f"{path}:{lineno}: FAIL mpos-crypto {cols[0]}\n"
                      f"  want {want}\n  got exit {rc}, stdout {out!r}, stderr {err!r}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
