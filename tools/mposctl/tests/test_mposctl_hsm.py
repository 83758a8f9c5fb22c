#!/usr/bin/env python3
"""mposctl against a real mpos-hsmd (label ops): hsm status, bdk create, key generate /
export / import / list, ca create, terminal provision (also from two mposctl processes at
once: every initial KSN unique, device IDs without gaps), and hsm init on a SoftHSM2 token
followed by an mpos-hsmd that opens the LMK it wrote.

usage: test_mposctl_hsm.py MPOSCTL MPOS_HSMD MPOS_CRYPTO
Exit 77 (skipped) when openssl or the SoftHSM2 tools are missing.
"""
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
import traceback
from concurrent.futures import ThreadPoolExecutor

MPOSCTL, HSMD, CRYPTO = sys.argv[1:4]
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
COMPONENTS = ["0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0",
              "A5A5A5A55A5A5A5A3C3C3C3CC3C3C3C3966969966996699600FF00FFFF00FF00"]


def kcv(key_hex):
    return subprocess.run([CRYPTO, "kcv", "--key", key_hex, "--cipher", "aes"],
                          capture_output=True, text=True, check=True).stdout.strip()


class Hsmd:
    """An mpos-hsmd with a tools socket, started and stopped by pid."""

    def __init__(self, tmp, extra):
        self.sock = os.path.join(tmp, "tools-%d.sock" % len(os.listdir(tmp)))
        log = os.path.join(tmp, "audit-%d.log" % len(os.listdir(tmp)))
        self.err = open(os.path.join(tmp, "hsmd-%d.err" % len(os.listdir(tmp))), "w+")
        self.proc = subprocess.Popen([HSMD, "--socket", "tools=" + self.sock, "--audit-log", log]
                                     + extra, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err)
        for _ in range(200):
            if self.proc.poll() is not None:
                self.err.seek(0)
                raise AssertionError("mpos-hsmd exited: " + self.err.read())
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("mpos-hsmd did not come up")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def ctl(env, *args, check=0, stdin=""):
    p = subprocess.run([MPOSCTL, "--db", env["db"], "--hsm", env["sock"]] + list(args),
                       input=stdin, capture_output=True, text=True, timeout=120)
    if check is not None and p.returncode != check:
        raise AssertionError("mposctl %s: exit %d (want %d)\n%s%s"
                             % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    if check == 0:
        assert p.stderr == "", p.stderr
    else:
        assert p.stdout == "" and p.stderr.count("\n") == 1 and \
            p.stderr.startswith("mposctl: "), (p.stdout, p.stderr)
    return p.stdout if check == 0 else p.stderr


def make_csr(tmp, serial):
    path = os.path.join(tmp, serial + ".csr")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    os.path.join(tmp, serial + ".key"), "-subj", "/serialNumber=" + serial,
                    "-outform", "DER", "-out", path], check=True, capture_output=True)
    return path


def test_keys_bdk_and_provisioning(tmp):
    comps = os.path.join(tmp, "components")
    with open(comps, "w") as f:
        for c in COMPONENTS:
            f.write("%s %s\n" % (c, kcv(c)))
    os.chmod(comps, 0o600)
    lmk = "%064X" % (int(COMPONENTS[0], 16) ^ int(COMPONENTS[1], 16))
    hsmd = Hsmd(tmp, ["--lmk-components-file", comps])
    try:
        env = {"db": os.path.join(tmp, "mpos.db"), "sock": hsmd.sock}
        ctl(env, "db", "migrate")
        status = ctl(env, "hsm", "status")
        assert re.search(r"^role\s+tools$", status, re.M), status
        assert re.search(r"^lmk-kcv\s+%s$" % kcv(lmk), status, re.M), status

        out = ctl(env, "bdk", "create", "--label", "bdk-aes", "--algorithm", "aes",
                  "--key-set-id", "00a1b2c3")
        assert "key-set-id  00A1B2C3" in out and "scheme      aes-dukpt" in out, out
        out = ctl(env, "bdk", "create", "--label", "bdk-tdes", "--algorithm", "tdes",
                  "--length", "16", "--key-set-id", "FFFF987654", "--first-device", "5")
        assert "tdes-dukpt" in out
        assert "already" in ctl(env, "bdk", "create", "--label", "bdk-aes2", "--algorithm", "aes",
                                "--key-set-id", "00A1B2C3", check=1)
        # The failed bdk create left no orphan key block behind (one transaction).
        assert "bdk-aes2" not in ctl(env, "key", "list")

        for args in (["tk-1", "K1", "aes", "32"], ["kek-1", "K0", "aes", "32"],
                     ["zpk-1", "P0", "aes", "16", "--exportable"], ["pvk-1", "V2", "tdes", "16"],
                     ["ca-1", "S1", "ec", "32"]):
            out = ctl(env, "key", "generate", "--label", args[0], "--usage", args[1],
                      "--algorithm", args[2], "--length", args[3], *args[4:])
            assert re.match(r"^%s [0-9A-F]{6,10}\n$" % args[0], out), out
        assert "already exists" in ctl(env, "key", "generate", "--label", "tk-1", "--usage", "K1",
                                       "--algorithm", "aes", check=1)
        listing = ctl(env, "key", "list")
        for label in ("bdk-aes", "bdk-tdes", "tk-1", "kek-1", "zpk-1", "pvk-1", "ca-1"):
            assert re.search(r"^%s\s" % label, listing, re.M), listing
        assert not re.search(r"D0\d{3}[A-Z0-9]{2}", listing), "a key block in the listing"

        # Export under the KEK and import back: the same key (same check value).
        exp = ctl(env, "key", "export", "--label", "zpk-1", "--kek", "kek-1").splitlines()
        assert exp[0].startswith("D") and exp[1].startswith("kcv "), exp
        block = os.path.join(tmp, "zpk.tr31")
        with open(block, "w") as f:
            f.write(exp[0] + "\n")
        out = ctl(env, "key", "import", "--label", "zpk-copy", "--kek", "kek-1", "--block-file",
                  block, "--kcv", exp[1].split()[1])
        assert out.split() == ["zpk-copy", exp[1].split()[1]], out
        assert "refused" in ctl(env, "key", "import", "--label", "zpk-x", "--kek", "kek-1",
                                "--block-file", block, "--kcv", "000000", check=1)
        assert "refused" in ctl(env, "key", "export", "--label", "pvk-1", "--kek", "kek-1",
                                check=1)

        ca = os.path.join(tmp, "ca.crt")
        out = ctl(env, "ca", "create", "--key", "ca-1", "--cn", "openmpos test CA", "--out", ca)
        assert re.match(r"^cert-sha256 [0-9A-F]{64}\n$", out)
        subj = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", ca, "-noout",
                               "-subject"], capture_output=True, text=True, check=True).stdout
        assert "openmpos test CA" in subj

        outdir = os.path.join(tmp, "bundles")
        os.mkdir(outdir)

        def provision(serial, bdk="bdk-aes"):
            return ctl(env, "terminal", "provision", serial, "--bdk", bdk, "--transport-key",
                       "tk-1", "--csr", make_csr(tmp, serial), "--ca-key", "ca-1", "--ca-cert",
                       ca, "--out", outdir)

        out = provision("T-1")
        assert "initial-ksn  00A1B2C300000001" in out, out
        crt = os.path.join(outdir, "T-1.crt")
        text = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", crt, "-noout",
                               "-subject", "-issuer", "-fingerprint", "-sha256"],
                              capture_output=True, text=True, check=True).stdout
        assert "serialNumber = T-1" in text and "openmpos test CA" in text, text
        fp = re.search(r"Fingerprint=([0-9A-F:]+)", text).group(1).replace(":", "")
        show = ctl(env, "terminal", "show", "T-1")
        assert "cert-sha256     " + fp in show and "initial-ksn     00A1B2C300000001" in show
        assert open(os.path.join(outdir, "T-1.ksn")).read() == "00A1B2C300000001\n"
        blk = open(os.path.join(outdir, "T-1.tr31")).read()
        assert blk.startswith("D") and blk[5:7] == "B1" and "IK1400A1B2C300000001" in blk, blk

        # Two mposctl processes at once, many times: unique KSNs, no gap.
        n = 10
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda s: provision(s), ["P-%02d" % i for i in range(2 * n)]))
        rows = [l.split() for l in ctl(env, "terminal", "list").splitlines()[1:]]
        ksns = [r[5] for r in rows if r[4] == "aes-dukpt"]
        assert len(ksns) == 2 * n + 1 and len(set(ksns)) == len(ksns), ksns
        assert sorted(int(k[8:], 16) for k in ksns) == list(range(1, 2 * n + 2)), ksns

        out = provision("T-TDES", "bdk-tdes")
        assert "initial-ksn  FFFF9876540000A00000" in out, out  # device 5, counter 0

        # Not for a retired terminal; and no KSN spent on the refusal.
        ctl(env, "terminal", "retire", "P-00")
        before = ctl(env, "terminal", "list").count("aes-dukpt")
        assert "retired" in ctl(env, "terminal", "provision", "P-00", "--bdk", "bdk-aes",
                                "--transport-key", "tk-1", "--csr", make_csr(tmp, "P-00b"),
                                "--ca-key", "ca-1", "--ca-cert", ca, "--out", outdir, check=1)
        con = sqlite3.connect(env["db"])
        n_alloc = con.execute("SELECT COUNT(*) FROM ksn_allocations").fetchone()[0]
        blocks = [r[0] for r in con.execute("SELECT key_block FROM keys")]
        con.close()
        assert n_alloc == 2 * n + 2 and before == 2 * n + 1
        assert all(b.startswith("D") for b in blocks)
        data = b"".join(open(env["db"] + s, "rb").read() for s in ("", "-wal")
                        if os.path.exists(env["db"] + s))
        for c in COMPONENTS + [lmk]:
            assert c.encode() not in data and bytes.fromhex(c) not in data
        assert ctl(env, "audit", "verify").startswith("audit trail intact")
    finally:
        hsmd.stop()


def test_hsm_init_softhsm(tmp):
    tokens = os.path.join(tmp, "tokens")
    os.mkdir(tokens)
    conf = os.path.join(tmp, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                % tokens)
    os.environ["SOFTHSM2_CONF"] = conf
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "mpos-test",
                    "--so-pin", "12345678", "--pin", "87654321"], check=True,
                   capture_output=True)
    pin = os.path.join(tmp, "pin")
    with open(pin, "w") as f:
        f.write("87654321\n")
    os.chmod(pin, 0o600)
    wrapped = os.path.join(tmp, "lmk.wrapped")
    env = {"db": os.path.join(tmp, "unused.db"), "sock": os.path.join(tmp, "none.sock")}
    args = ["hsm", "init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "mpos-test",
            "--pin-file", pin, "--lmk-wrapped", wrapped]
    out = ctl(env, *args)
    m = re.match(r"^lmk-kcv ([0-9A-F]{10})\nwrapped ", out)
    assert m, out
    assert os.stat(wrapped).st_mode & 0o777 == 0o600
    assert ctl(env, *args, check=1)  # never overwrites an LMK
    os.chmod(pin, 0o644)
    assert "readable" in ctl(env, "hsm", "init", "--pkcs11-module", SOFTHSM_MODULE,
                             "--token-label", "mpos-test", "--pin-file", pin, "--lmk-wrapped",
                             wrapped + "2", check=1)
    os.chmod(pin, 0o600)
    hsmd = Hsmd(tmp, ["--lmk-pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--token-label",
                      "mpos-test", "--pin-file", pin, "--lmk-wrapped", wrapped])
    try:
        env["sock"] = hsmd.sock
        status = ctl(env, "hsm", "status")
        assert re.search(r"^lmk-kcv\s+%s$" % m.group(1), status, re.M), status
    finally:
        hsmd.stop()


if __name__ == "__main__":
    if shutil.which("openssl") is None:
        print("openssl not installed: skipped")
        sys.exit(77)
    tests = [test_keys_bdk_and_provisioning]
    if shutil.which("softhsm2-util") and os.path.exists(SOFTHSM_MODULE):
        tests.append(test_hsm_init_softhsm)
    passed = failed = 0
    for t in tests:
        tmp = tempfile.mkdtemp(prefix="mposctl-hsm-")
        os.chmod(tmp, 0o755)
        try:
            t(tmp)
            passed += 1
            print("ok     %s" % t.__name__)
        except Exception:
            failed += 1
            print("FAILED %s" % t.__name__)
            traceback.print_exc()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
