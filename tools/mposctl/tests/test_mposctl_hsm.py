#!/usr/bin/env python3
"""mposctl against a real mpos-hsmd (label ops): hsm status, bdk create, key generate /
export / import / list, ca create, terminal provision through provision.terminal (bundles
for AES DUKPT, TDES DUKPT and TMK terminals, each opening only with its own device key;
also from two mposctl processes at once: every initial KSN unique, device IDs without
gaps), and hsm init on a SoftHSM2 token followed by an mpos-hsmd that opens the LMK it wrote.

Also params publish: the signed EMV parameter package, taken by the terminal's own code
(mposctl-params-check) under the CA certificate, and refused when a byte changes.

usage: test_mposctl_hsm.py MPOSCTL MPOS_HSMD MPOS_CRYPTO MPOS_PROVISION_OPEN [PARAMS_CHECK]
Exit 77 (skipped) when openssl or python3-cryptography is missing. With MPOS_TEST_ARTIFACTS
set, every file (database, audit logs, bundles) is written under it and kept for the secret
scan (tests/secret_scan.py).
"""
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "tests", "testutil"))
import mpostest  # noqa: E402 (tests/testutil, found from here)

MPOSCTL, HSMD, CRYPTO, OPEN = [os.path.abspath(a) for a in sys.argv[1:5]]
PARAMS_CHECK = os.path.abspath(sys.argv[5]) if len(sys.argv) > 5 else None
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
COMPONENTS = ["0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0",
              "A5A5A5A55A5A5A5A3C3C3C3CC3C3C3C3966969966996699600FF00FFFF00FF00"]


def kcv(key_hex):
    return subprocess.run([CRYPTO, "kcv", "--key", key_hex, "--cipher", "aes"],
                          capture_output=True, text=True, check=True).stdout.strip()


class Hsmd(mpostest.Hsmd):
    """An mpos-hsmd with a tools socket, started and stopped by pid; several may share tmp
    (each gets the next number)."""

    def __init__(self, tmp, extra):
        n = len(os.listdir(tmp))
        super().__init__(HSMD, os.path.join(tmp, "tools-%d.sock" % n),
                         os.path.join(tmp, "audit-%d.log" % n),
                         os.path.join(tmp, "hsmd-%d.err" % n), extra)


def components_hsmd(tmp):
    """An mpos-hsmd whose LMK comes from the test's components file (tmp/components: each
    line a component and its check value, mode 0600, as mposctl hsm init writes it)."""
    comps = os.path.join(tmp, "components")
    with open(comps, "w") as f:
        for c in COMPONENTS:
            f.write("%s %s\n" % (c, kcv(c)))
    os.chmod(comps, 0o600)
    return Hsmd(tmp, ["--lmk-components-file", comps])


def ctl(env, *args, check=0, stdin="", cwd=None):
    p = subprocess.run([MPOSCTL, "--db", env["db"], "--hsm", env["sock"]] + list(args),
                       input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)
    if check is not None and p.returncode != check:
        raise AssertionError("mposctl %s: exit %d (want %d)\n%s%s"
                             % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    if check == 0:
        assert p.stderr == "", p.stderr
    else:
        assert p.stdout == "" and p.stderr.count("\n") == 1 and \
            p.stderr.startswith("mposctl: "), (p.stdout, p.stderr)
    return p.stdout if check == 0 else p.stderr


def make_csr(tmp, serial, subject=None):
    """A P-256 device key and its PKCS#10 request (subject serialNumber=serial), made with
    python3-cryptography as the terminal's key store would. Returns (csr path, private
    scalar hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, subject or serial)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    path = os.path.join(tmp, serial + ".csr")
    with open(path, "wb") as f:
        f.write(csr.public_bytes(serialization.Encoding.DER if len(serial) % 2 else
                                 serialization.Encoding.PEM))
    return path, "%064X" % key.private_numbers().private_value


def ca_public_hex(ca_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_der_x509_certificate(open(ca_path, "rb").read())
    return cert.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint).hex()


def open_bundle(bundle, priv_hex, serial, ca_pub):
    """mpos_provision_open as the terminal runs it: {'kind', 'id', 'kcv'} or None."""
    p = subprocess.run([OPEN, "--key", priv_hex, "--serial", serial, "--ca-pub", ca_pub,
                        "--bundle", bundle], capture_output=True, text=True, timeout=60)
    if p.returncode == 1 and p.stdout.startswith("open: "):
        return None
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return dict(l.split(" ", 1) for l in p.stdout.splitlines())


def fields(out):
    return dict(l.split(None, 1) for l in out.splitlines())


def test_keys_bdk_and_provisioning(tmp):
    lmk = "%064X" % (int(COMPONENTS[0], 16) ^ int(COMPONENTS[1], 16))
    hsmd = components_hsmd(tmp)
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
        # A key block's 16-character header (D, length, usage, ...): longer than any
        # column of the listing, so a check value with "D0" and digits in it cannot match.
        assert not re.search(r"\bD0\d{3}[0-9A-Z]{11}", listing), listing

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
        ca_pub = ca_public_hex(ca)
        devkeys = {}

        def provision(serial, scheme="dukpt-aes", bdk="bdk-aes", check=0, extra=()):
            csr, devkeys[serial] = make_csr(tmp, serial)
            args = ["terminal", "provision", "--serial", serial, "--scheme", scheme, "--csr", csr,
                    "--ca-key", "ca-1", "--ca-cert", ca, "--out", outdir] + list(extra)
            if bdk is not None:
                args += ["--bdk", bdk]
            return ctl(env, *args, check=check)

        def opens(serial, key_of=None, as_serial=None):
            return open_bundle(os.path.join(outdir, serial + ".bundle"),
                               devkeys[key_of or serial], as_serial or serial, ca_pub)

        # The shared transport key path is gone (T-UNIQ-1).
        err = ctl(env, "terminal", "provision", "--serial", "X-1", "--transport-key", "tk-1",
                  check=2)
        assert "transport-key" in err, err

        out = fields(provision("T-1", extra=["--trust-anchor", ca]))
        assert out["initial-ksn"] == "00A1B2C300000001" and out["scheme"] == "aes-dukpt", out
        assert re.match(r"^[0-9A-F]{10}$", out["kcv"]) and re.match(r"^[0-9A-F]{32}$",
                                                                      out["cert-serial"]), out
        bundle = open(os.path.join(outdir, "T-1.bundle"), "rb").read()
        assert bundle[:1] == b"\xe1" and 1000 < len(bundle) <= 8192, len(bundle)
        got = opens("T-1")
        assert got == {"kind": "1", "id": "00A1B2C300000001", "kcv": out["kcv"]}, got
        show = ctl(env, "terminal", "show", "T-1")
        assert "cert-sha256     " + out["cert-sha256"] in show, show
        assert "initial-ksn     00A1B2C300000001" in show and "state           provisioned" in show

        # Case is kept (the serial is the HKDF salt); other characters are refused.
        out = fields(provision("t-lower"))
        assert out["serial"] == "t-lower" and opens("t-lower")["kcv"] == out["kcv"], out
        assert "T-LOWER" not in ctl(env, "terminal", "list")
        assert opens("t-lower", as_serial="T-LOWER") is None
        for bad in ("T_1", "T 1", "T.1", "A" * 33, "\u00e9t\u00e9"):
            err = ctl(env, "terminal", "provision", "--serial", bad, "--csr", ca, "--ca-key",
                      "ca-1", "--ca-cert", ca, "--bdk", "bdk-aes", check=2)
            assert "--serial" in err and "case-sensitive" in err, err
        # A request for another serial is refused by mpos-hsmd, and no terminal is recorded.
        csr, _ = make_csr(tmp, "W-1", subject="W-2")
        assert "refused" in ctl(env, "terminal", "provision", "--serial", "W-1", "--csr", csr,
                                "--ca-key", "ca-1", "--ca-cert", ca, "--bdk", "bdk-aes",
                                "--out", outdir, check=1)
        assert "W-1" not in ctl(env, "terminal", "list")

        # TDES DUKPT and a TMK terminal (UnionPay master/working keys).
        out = fields(provision("T-TDES", "dukpt-tdes", "bdk-tdes"))
        assert out["initial-ksn"] == "FFFF9876540000A00000", out  # device 5, counter 0
        assert opens("T-TDES") == {"kind": "2", "id": "FFFF9876540000A00000", "kcv": out["kcv"]}
        assert "not a dukpt-aes BDK" in ctl(env, "terminal", "provision", "--serial", "T-X",
                                            "--csr", csr, "--ca-key", "ca-1", "--ca-cert", ca,
                                            "--bdk", "bdk-tdes", check=2)
        out = fields(provision("M-1", "mkwk-tdes", None))
        assert re.match(r"^[0-9A-F]{6}$", out["tmk-kcv"]) and out["kcv"] == out["tmk-kcv"], out
        assert opens("M-1") == {"kind": "3", "id": "-", "kcv": out["tmk-kcv"]}
        show = ctl(env, "terminal", "show", "M-1")
        assert "tmk-kcv         " + out["tmk-kcv"] in show and "scheme          mkwk" in show
        assert "key-label       " + out["tmk-label"] in show, show
        assert re.search(r"^%s\s" % re.escape(out["tmk-label"]), ctl(env, "key", "list"), re.M)
        # An SM4 TMK terminal: a TR-31 block with the proprietary algorithm '4' (kind 4), its
        # legacy SM4 check value registered; it opens for its own device only.
        out = fields(provision("M-2", "mkwk-sm4", None))
        assert re.match(r"^[0-9A-F]{6}$", out["tmk-kcv"]) and out["kcv"] == out["tmk-kcv"], out
        assert out["tmk-algorithm"] == "sm4", out
        assert opens("M-2") == {"kind": "4", "id": "-", "kcv": out["tmk-kcv"]}
        assert opens("M-2", key_of="M-1") is None
        assert opens("M-2", key_of="M-1", as_serial="M-1") is None
        show = ctl(env, "terminal", "show", "M-2")
        assert "tmk-kcv         " + out["tmk-kcv"] in show and "scheme          mkwk" in show
        assert re.search(r"^%s\s+K0\s+4\s+%s\s" % (re.escape(out["tmk-label"]),
                                                      out["tmk-kcv"]),
                         ctl(env, "key", "list"), re.M)

        # Two mposctl processes at once, many times: unique KSNs, no gap.
        n = 10
        serials = ["P-%02d" % i for i in range(2 * n)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            outs = list(pool.map(lambda s: fields(provision(s)), serials))
        rows = [l.split() for l in ctl(env, "terminal", "list").splitlines()[1:]]
        ksns = [r[5] for r in rows if r[4] == "aes-dukpt"]
        assert len(ksns) == 2 * n + 2 and len(set(ksns)) == len(ksns), ksns
        # Device ID 3 was spent on W-1, whose request mpos-hsmd refused: never handed out again.
        assert sorted(int(k[8:], 16) for k in ksns) == [i for i in range(1, 2 * n + 4)
                                                        if i != 3], ksns
        # Each bundle opens with its own device key only, and delivers the registered key.
        for s, o in zip(serials, outs):
            got = opens(s)
            assert got == {"kind": "1", "id": o["initial-ksn"], "kcv": o["kcv"]}, (s, got, o)
        assert len({o["kcv"] for o in outs}) == len(outs)
        everyone = ["T-1", "t-lower", "T-TDES", "M-1", "M-2"] + serials
        for i, s in enumerate(everyone):
            other = everyone[(i + 1) % len(everyone)]
            assert opens(s, key_of=other) is None, (s, other)
            assert opens(s, key_of=other, as_serial=other) is None, (s, other)

        # Not for a retired terminal; and no KSN spent on the refusal.
        ctl(env, "terminal", "retire", "P-00")
        before = ctl(env, "terminal", "list").count("aes-dukpt")
        csr, _ = make_csr(tmp, "P-00b", subject="P-00")
        assert "retired" in ctl(env, "terminal", "provision", "--serial", "P-00", "--bdk",
                                "bdk-aes", "--csr", csr, "--ca-key", "ca-1", "--ca-cert", ca,
                                "--out", tmp, check=1)
        con = sqlite3.connect(env["db"])
        n_alloc = con.execute("SELECT COUNT(*) FROM ksn_allocations").fetchone()[0]
        blocks = [r[0] for r in con.execute("SELECT key_block FROM keys")]
        con.close()
        assert n_alloc == 2 * n + 4 and before == 2 * n + 2, (n_alloc, before)
        assert all(b.startswith("D") for b in blocks)
        data = b"".join(open(env["db"] + s, "rb").read() for s in ("", "-wal")
                        if os.path.exists(env["db"] + s))
        for c in COMPONENTS + [lmk]:
            assert c.encode() not in data and bytes.fromhex(c) not in data
        assert ctl(env, "audit", "verify").startswith("audit trail intact")
    finally:
        hsmd.stop()


def test_spelled_forms(tmp):
    """The forms the issue spells, called exactly as written: bdk create --type, terminal
    provision --serial SN [--scheme S] with every other option defaulted (the request as
    ./SN.csr, the one manufacturer CA of the database, the newest BDK of the scheme),
    operator add without --username, terminal assign / suspend / resume / retire / list."""
    hsmd = components_hsmd(tmp)
    try:
        env = {"db": os.path.join(tmp, "spelled.db"), "sock": hsmd.sock}
        ctl(env, "db", "migrate")
        assert re.search(r"^role\s+tools$", ctl(env, "hsm", "status"), re.M)
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        # No BDK, no CA yet: clear messages.
        make_csr(work, "SN-0")
        assert "no manufacturer CA" in ctl(env, "terminal", "provision", "--serial", "SN-0",
                                           cwd=work, check=2)
        ctl(env, "key", "generate", "--label", "mfg-ca", "--usage", "S1", "--algorithm", "ec")
        out = ctl(env, "ca", "create", "--key", "mfg-ca", "--cn", "spelled CA")
        assert re.match(r"^cert-sha256 [0-9A-F]{64}\n$", out), out
        ca_cert = env["db"] + "-ca/mfg-ca.der"
        ca_pub = ca_public_hex(ca_cert)
        assert "no AES BDK" in ctl(env, "terminal", "provision", "--serial", "SN-0", cwd=work,
                                   check=1)
        assert "emits" in ctl(env, "terminal", "provision", "--serial", "SN-NOCSR", cwd=work,
                              check=1)

        bdks = {}
        # The older types first, then (a second later) the ones provisioning must pick.
        for i, t in enumerate(["3tdea", "aes192", "aes256", "2tdea", "aes128"]):
            if i == 3:
                time.sleep(1.1)
            out = fields(ctl(env, "bdk", "create", "--type", t))
            assert out["label"] == "bdk-%s-1" % t and out["type"] == t, out
            assert re.match(r"^[0-9A-F]{%d}$" % (10 if t.startswith("aes") else 6),
                            out["kcv"]), out
            assert out["scheme"] == ("aes-dukpt" if t.startswith("aes") else "tdes-dukpt")
            bdks[t] = out
        listing = ctl(env, "key", "list")
        for t, o in bdks.items():
            assert re.search(r"^%s\s+B0\s+[AT]\s+%s\s" % (o["label"], o["kcv"]), listing,
                             re.M), listing
        # A key block's 16-character header (D, length, usage, ...): longer than any
        # column of the listing, so a check value with "D0" and digits in it cannot match.
        assert not re.search(r"\bD0\d{3}[0-9A-Z]{11}", listing), listing

        devkeys = {}
        for serial, scheme in (("SN-1", None), ("SN-2", "dukpt-aes"), ("SN-3", "dukpt-tdes"),
                               ("SN-4", "mkwk-tdes"), ("SN-5", "mkwk-sm4")):
            _, devkeys[serial] = make_csr(work, serial)
            args = ["terminal", "provision", "--serial", serial]
            if scheme is not None:
                args += ["--scheme", scheme]
            out = fields(ctl(env, *args, cwd=work))
            assert out["ca-key"] == "mfg-ca", out
            assert out["bundle"] == "./%s.bundle" % serial, out
            got = open_bundle(os.path.join(work, serial + ".bundle"), devkeys[serial], serial,
                              ca_pub)
            if scheme in (None, "dukpt-aes"):
                assert out["bdk"] == "bdk-aes128-1", out
                assert got == {"kind": "1", "id": out["initial-ksn"], "kcv": out["kcv"]}, got
            elif scheme == "dukpt-tdes":
                assert out["bdk"] == "bdk-2tdea-1", out
                assert got == {"kind": "2", "id": out["initial-ksn"], "kcv": out["kcv"]}, got
            else:
                kind = "4" if scheme == "mkwk-sm4" else "3"
                assert got == {"kind": kind, "id": "-", "kcv": out["tmk-kcv"]}, got
        for serial in devkeys:
            for other in devkeys:
                if other != serial:
                    assert open_bundle(os.path.join(work, serial + ".bundle"), devkeys[other],
                                       serial, ca_pub) is None
        # With two CAs, the CA must be named.
        ctl(env, "key", "generate", "--label", "mfg-ca2", "--usage", "S1", "--algorithm", "ec")
        ctl(env, "ca", "create", "--key", "mfg-ca2", "--cn", "second CA")
        make_csr(work, "SN-6")
        assert "--ca-key" in ctl(env, "terminal", "provision", "--serial", "SN-6", cwd=work,
                                 check=2)
        out = fields(ctl(env, "terminal", "provision", "--serial", "SN-6", "--ca-key", "mfg-ca2",
                         cwd=work))
        assert out["ca-key"] == "mfg-ca2", out

        mid = ctl(env, "merchant", "add").strip()
        out = ctl(env, "operator", "add", "--merchant", mid, "--role", "cashier",
                  stdin="Violet-Harbour-42-Lamp\n")
        assert re.match(r"^username=op[a-z2-7]{8}\n", out), out
        out = ctl(env, "terminal", "assign", "SN-1", "--merchant", mid, "--location",
                  "48.856614,2.352222,250")
        assert re.match(r"^activation-code \S+\nexpires \S+Z\n$", out), out
        assert ctl(env, "terminal", "suspend", "SN-1") == "SN-1 suspended\n"
        assert ctl(env, "terminal", "resume", "SN-1") == "SN-1 provisioned\n"
        assert ctl(env, "terminal", "retire", "SN-1") == "SN-1 retired\n"
        lst = ctl(env, "terminal", "list")
        for serial in devkeys:
            assert re.search(r"^%s\s" % serial, lst, re.M), lst
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


def test_e2e_commands(tmp):
    """key import --components, bdk import, cert sign (the end-to-end environment's set-up)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    hsmd = components_hsmd(tmp)
    try:
        env = {"db": os.path.join(tmp, "mpos.db"), "sock": hsmd.sock}
        ctl(env, "db", "migrate")
        # A KEK from three AES components (dual control on stdin); each component's check
        # value is its AES CMAC KCV, and so is the key's (their XOR).
        parts = ["00112233445566778899AABBCCDDEEFF", "0F0E0D0C0B0A09080706050403020100",
                 "A1B2C3D4E5F60718293A4B5C6D7E8F90"]
        out = ctl(env, "key", "import", "--label", "kek-c", "--components", "3", "--usage", "K0",
                  "--algorithm", "aes", stdin="\n".join(parts) + "\n")
        lines = out.splitlines()
        for i, p in enumerate(parts):
            assert lines[i] == "component-%d-kcv %s" % (i + 1, kcv(p)), out
        key = "%032X" % (int(parts[0], 16) ^ int(parts[1], 16) ^ int(parts[2], 16))
        assert lines[3] == "kek-c %s" % kcv(key), out
        assert parts[0] not in out and "kek-c" in ctl(env, "key", "list")
        # Refused: equal components (exit 1), a missing one, wrong length, a component on argv.
        assert "refused" in ctl(env, "key", "import", "--label", "k2", "--components", "2",
                                "--usage", "K0", "--algorithm", "aes",
                                stdin=parts[0] + "\n" + parts[0] + "\n", check=1)
        ctl(env, "key", "import", "--label", "k2", "--components", "2", "--usage", "K0",
            "--algorithm", "aes", stdin=parts[0] + "\n", check=2)
        ctl(env, "key", "import", "--label", "k2", "--components", "2", "--usage", "K0",
            "--algorithm", "tdes", "--length", "24", stdin=parts[0] + "\n" + parts[1] + "\n",
            check=2)
        ctl(env, "key", "import", "--label", "k2", "--components", "4", "--usage", "K0",
            "--algorithm", "aes", check=2)
        assert "k2" not in ctl(env, "key", "list")

        # bdk import: a BDK exported under the KEK comes back with its allocator.
        ctl(env, "bdk", "create", "--label", "bdk-src", "--type", "aes128", "--exportable",
            "--key-set-id", "01020304")
        exp = ctl(env, "key", "export", "--label", "bdk-src", "--kek", "kek-c").splitlines()
        block = os.path.join(tmp, "bdk.tr31")
        with open(block, "w") as f:
            f.write(exp[0] + "\n")
        out = fields(ctl(env, "bdk", "import", "--label", "bdk-in", "--kek", "kek-c",
                         "--block-file", block, "--key-set-id", "0A0B0C0D"))
        assert out["scheme"] == "aes-dukpt" and out["key-set-id"] == "0A0B0C0D", out
        assert out["kcv"] == exp[1].split()[1], (out, exp)
        # The same key set ID twice: refused, no orphan key block.
        assert "already" in ctl(env, "bdk", "import", "--label", "bdk-in2", "--kek", "kek-c",
                                "--block-file", block, "--key-set-id", "0A0B0C0D", check=1)
        assert "bdk-in2" not in ctl(env, "key", "list")
        # A TDES key set ID for an AES BDK: refused.
        ctl(env, "bdk", "import", "--label", "bdk-in3", "--kek", "kek-c", "--block-file", block,
            "--key-set-id", "FFFF000001", check=1)

        # cert sign: the back end's TLS server certificate.
        ctl(env, "key", "generate", "--label", "be-ca", "--usage", "S1", "--algorithm", "ec")
        ca = os.path.join(tmp, "be-ca.der")
        ctl(env, "ca", "create", "--key", "be-ca", "--cn", "openmpos test back-end CA",
            "--out", ca)
        skey = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])).sign(skey, hashes.SHA256())
        csr_path = os.path.join(tmp, "srv.csr")
        with open(csr_path, "wb") as f:
            f.write(csr.public_bytes(serialization.Encoding.PEM))
        crt = os.path.join(tmp, "srv.der")
        out = ctl(env, "cert", "sign", "--ca-key", "be-ca", "--ca-cert", ca, "--csr", csr_path,
                  "--dns", "backend.test", "--out", crt, "--validity", "30")
        der = open(crt, "rb").read()
        assert out == "cert-sha256 %s\n" % hashlib.sha256(der).hexdigest().upper() or \
            out == "cert-sha256 %s\n" % hashlib.sha256(der).hexdigest(), out
        cert = x509.load_der_x509_certificate(der)
        cacert = x509.load_der_x509_certificate(open(ca, "rb").read())
        cacert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                   ec.ECDSA(hashes.SHA256()))
        assert cert.issuer == cacert.subject
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "backend.test"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["backend.test"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.public_key().public_numbers() == skey.public_key().public_numbers()
        # Not overwritten; a bad host name; a CA certificate of another key.
        ctl(env, "cert", "sign", "--ca-key", "be-ca", "--ca-cert", ca, "--csr", csr_path,
            "--dns", "backend.test", "--out", crt, check=1)
        assert "refused" in ctl(env, "cert", "sign", "--ca-key", "be-ca", "--ca-cert", ca,
                                "--csr", csr_path, "--dns", "-bad..name", "--out",
                                crt + "2", check=1)
        ctl(env, "key", "generate", "--label", "other-ca", "--usage", "S1", "--algorithm", "ec")
        assert "refused" in ctl(env, "cert", "sign", "--ca-key", "other-ca", "--ca-cert", ca,
                                "--csr", csr_path, "--dns", "backend.test", "--out", crt + "3",
                                check=1)
    finally:
        hsmd.stop()


def params_check(*args):
    """mposctl-params-check: (exit status, {package: [result lines]})."""
    p = subprocess.run([PARAMS_CHECK] + list(args), capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), (p.returncode, p.stdout, p.stderr)
    res, cur = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^(\S+): (applied|firmware-too-old|refused .*)$", line)
        if m:
            cur = m.group(1)
            res[cur] = [m.group(2)]
        else:
            res[cur].append(line)
    return p.returncode, res


def test_params_publish(tmp):
    """params publish: both signatures by mpos-hsmd, the package taken by the terminal's code
    under the back end's CA certificate, refused after any change of a byte."""
    hsmd = components_hsmd(tmp)
    try:
        env = {"db": os.path.join(tmp, "mpos.db"), "sock": hsmd.sock}
        ctl(env, "db", "migrate")
        ctl(env, "key", "generate", "--label", "be-ca", "--usage", "S1", "--algorithm", "ec")
        ca = os.path.join(tmp, "be-ca.der")
        ctl(env, "ca", "create", "--key", "be-ca", "--cn", "openmpos test back-end CA",
            "--out", ca)
        ctl(env, "key", "generate", "--label", "params-1", "--usage", "S0", "--algorithm", "ec")
        base = ["params", "publish", "--sign-key", "params-1", "--anchor-key", "be-ca"]

        # The defaults: the three UnionPay AIDs, China / CNY / 2.
        p1 = os.path.join(tmp, "params-1.bin")
        out = fields(ctl(env, *base, "--version", "1", "--min-firmware", "1.0.0",
                         "--out", p1))
        data = open(p1, "rb").read()
        assert out["version"] == "1" and out["size"] == str(len(data)), out
        assert out["sha256"].lower() == hashlib.sha256(data).hexdigest(), out
        assert os.stat(p1).st_mode & 0o777 == 0o644
        assert data[0] == 0xE3 and len(data) <= 4096
        rc, res = params_check("--anchor", ca, p1)
        assert rc == 0 and res[p1][0] == "applied", res
        lines = res[p1]
        assert "version 1" in lines and "country 0156" in lines and "currency 0156" in lines
        assert "exponent 2" in lines and not any(l.startswith("mcc") for l in lines), lines
        aids = [l for l in lines if l.startswith("aid ")]
        want = ["aid A00000033301010%d partial=1 version=0030 denial=0010000000 "
                "online=D84004F800 default=D84000A800 floor=0 limit=0" % i for i in (1, 2, 3)]
        assert aids == want, aids

        # Any changed byte: refused (syntax or signature), nothing applied.
        bad = os.path.join(tmp, "bad.bin")
        positions = sorted(set(list(range(0, len(data), 11)) + [len(data) - 1, 40, 170, 250]))
        for pos in positions:
            with open(bad, "wb") as f:
                f.write(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
            rc, res = params_check("--anchor", ca, bad)
            assert rc == 1 and res[bad][0].startswith("refused "), (pos, res)
        # A package that lost its last byte, or got one more.
        for blob in (data[:-1], data + b"\x00"):
            with open(bad, "wb") as f:
                f.write(blob)
            rc, res = params_check("--anchor", ca, bad)
            assert rc == 1 and res[bad][0].startswith("refused "), res

        # Another anchor (another CA's certificate): refused, signature verification.
        ctl(env, "key", "generate", "--label", "other-ca", "--usage", "S1", "--algorithm", "ec")
        other = os.path.join(tmp, "other-ca.der")
        ctl(env, "ca", "create", "--key", "other-ca", "--cn", "someone else", "--out", other)
        rc, res = params_check("--anchor", other, p1)
        assert rc == 1 and res[p1][0].startswith("refused ") and "verif" in res[p1][0], res

        # Chosen AIDs and fields; versions only go up on the terminal; a minimum firmware
        # above the running one holds the package and runs nothing.
        p2 = os.path.join(tmp, "params-2.bin")
        out = fields(ctl(env, *base, "--version", "2", "--min-firmware", "1.2.3", "--country",
                         "344", "--currency", "344", "--exponent", "2", "--mcc", "5812",
                         "--aid", "A000000333010101", "--aid=A0000003330101", "--validity",
                         "30", "--out", p2))
        assert out["version"] == "2", out
        rc, res = params_check("--anchor", ca, "--firmware", "1.2.3", p2, p1)
        assert rc == 1 and res[p2][0] == "applied", res
        assert "country 0344" in res[p2] and "currency 0344" in res[p2] and \
            "mcc 5812" in res[p2], res
        assert [l.split()[1] for l in res[p2] if l.startswith("aid ")] == \
            ["A000000333010101", "A0000003330101"], res
        assert res[p1][0].startswith("refused ") and "rolled back" in res[p1][0], res
        rc, res = params_check("--anchor", ca, "--firmware", "1.2.2", p2)
        assert rc == 0 and res[p2][0] == "firmware-too-old", res
        rc, res = params_check("--anchor", ca, "--firmware", "2.0.0", p1, p2)
        assert rc == 0 and res[p1][0] == "applied" and res[p2][0] == "applied", res

        # Refused calls: nothing written.
        p3 = os.path.join(tmp, "params-3.bin")
        for args in (["--version", "0"], ["--version", "-1"], ["--version", "4294967296"],
                     ["--version", "x1"], ["--min-firmware", "1.2"],
                     ["--min-firmware", "1.256.0"], ["--aid", "ZZ00000333010101"],
                     ["--aid", "A0000003"], ["--aid", "A000000333010101000000000000000000"],
                     ["--aid", "A00000033301010"],
                     ["--aid", "A000000333010101", "--aid", "A000000333010101"],
                     ["--country", "0"], ["--currency", "1000"], ["--exponent", "4"],
                     ["--mcc", "58"], ["--validity", "0"], ["--validity", "3651"]):
            full = {"--version": "3", "--min-firmware": "1.0.0"}
            extra = []
            i = 0
            while i < len(args):
                if args[i] in full:
                    full[args[i]] = args[i + 1]
                else:
                    extra += args[i:i + 2]
                i += 2
            argv = base + [a for kv in full.items() for a in kv] + extra + ["--out", p3]
            ctl(env, *argv, check=2)
            assert not os.path.exists(p3), args
        ctl(env, "params", "publish", "--anchor-key", "be-ca", "--version", "3",
            "--min-firmware", "1.0.0", "--out", p3, check=2)
        # The same key as signer and anchor; a key that is not an EC signing key; an unknown
        # label; an existing file.
        ctl(env, "params", "publish", "--sign-key", "be-ca", "--anchor-key", "be-ca",
            "--version", "3", "--min-firmware", "1.0.0", "--out", p3, check=2)
        ctl(env, "key", "generate", "--label", "k0", "--usage", "K0", "--algorithm", "aes")
        assert "refused" in ctl(env, "params", "publish", "--sign-key", "k0", "--anchor-key",
                                "be-ca", "--version", "3", "--min-firmware", "1.0.0",
                                "--out", p3, check=1)
        ctl(env, "params", "publish", "--sign-key", "nope", "--anchor-key", "be-ca",
            "--version", "3", "--min-firmware", "1.0.0", "--out", p3, check=1)
        assert not os.path.exists(p3)
        ctl(env, *base, "--version", "3", "--min-firmware", "1.0.0", "--out", p1, check=1)
        assert open(p1, "rb").read() == data
        assert "params publish" in ctl(env, "params", "publish", "--help")
    finally:
        hsmd.stop()


if __name__ == "__main__":
    if shutil.which("openssl") is None:
        print("openssl not installed: skipped")
        sys.exit(77)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("python3-cryptography not installed: skipped")
        sys.exit(77)
    tests = [test_keys_bdk_and_provisioning, test_spelled_forms, test_e2e_commands]
    if PARAMS_CHECK:
        tests.append(test_params_publish)
    if shutil.which("softhsm2-util") and os.path.exists(SOFTHSM_MODULE):
        tests.append(test_hsm_init_softhsm)
    artifacts = os.environ.get("MPOS_TEST_ARTIFACTS")
    if artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
        os.makedirs(artifacts)
    passed = failed = 0
    for i, t in enumerate(tests):
        if artifacts:
            tmp = os.path.join(artifacts, "t%d" % i)  # short: socket paths
            os.mkdir(tmp)
        else:
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
            if not artifacts:
                shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
