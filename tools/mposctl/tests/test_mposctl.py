#!/usr/bin/env python3
"""mposctl command-line tests (label ops): --help everywhere, exit codes, one-line errors on
stderr and nothing on stdout, the schema commands, merchants, terminal assignment and its
state machine, operator passwords (policy, never from argv), parallel runs, configuration
files, and a scan of the database files for secrets.

usage: test_mposctl.py PATH/TO/mposctl
"""
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

MPOSCTL = sys.argv[1]

# With MPOS_TEST_ARTIFACTS set (ctest), the databases are written under it and kept for the
# secret scan (tests/secret_scan.py) instead of in throw-away temporary directories.
ARTIFACTS = os.environ.get("MPOS_TEST_ARTIFACTS")
if ARTIFACTS:
    import shutil
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(ARTIFACTS)

    class _KeptDirectory:
        def __init__(self, prefix="tmp"):
            self.name = tempfile.mkdtemp(prefix=prefix, dir=ARTIFACTS)

        def cleanup(self):
            pass

    tempfile.TemporaryDirectory = _KeptDirectory
CODE_RE = re.compile(r"^activation-code ([0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3})\n"
                     r"expires (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\n$")

GROUP_COMMANDS = {
    "db": ["migrate", "status"],
    "merchant": ["add", "list"],
    "terminal": ["assign", "suspend", "resume", "retire", "list", "show", "provision"],
    "operator": ["add", "list"],
    "key": ["list", "generate", "import", "export"],
    "bdk": ["create"],
    "hsm": ["status", "init"],
    "audit": ["list", "verify"],
}


def run(*args, stdin=None, db=None, check=None):
    argv = [MPOSCTL] + (["--db", db] if db else []) + list(args)
    p = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True,
                       text=True, timeout=120)
    if check is not None and p.returncode != check:
        raise AssertionError("%s: exit %d (want %d)\nstdout: %s\nstderr: %s"
                             % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def ok(*args, **kw):
    p = run(*args, check=0, **kw)
    assert p.stderr == "", p.stderr
    return p.stdout


def fails(code, *args, **kw):
    """The call fails with exit `code`, one 'mposctl: ' line on stderr, nothing on stdout."""
    p = run(*args, check=code, **kw)
    assert p.stdout == "", "stdout on error: %r" % p.stdout
    lines = p.stderr.split("\n")
    assert len(lines) == 2 and lines[1] == "" and lines[0].startswith("mposctl: "), \
        "not one error line: %r" % p.stderr
    return lines[0]


class Env:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mposctl-test-")
        self.db = os.path.join(self.tmp.name, "mpos.db")
        ok("db", "migrate", db=self.db)


def test_help_everywhere():
    for args in (["--help"], ["-h"], ["help"]):
        out = ok(*args)
        assert out.startswith("usage: mposctl"), out
    for group, commands in GROUP_COMMANDS.items():
        out = ok(group, "--help")
        assert out.startswith("usage: mposctl " + group), out
        for cmd in commands:
            out = ok(group, cmd, "--help")
            assert out.startswith("usage: mposctl " + group + " " + cmd) or \
                out.startswith("usage: mposctl " + group + " suspend"), (group, cmd, out)
            # --help wins wherever it is, and needs no database.
            out = ok(group, cmd, "--bogus", "--help")
            assert out.startswith("usage:")


def test_usage_errors():
    e = Env()
    assert "missing command" in fails(2)
    assert "unknown command" in fails(2, "frobnicate", db=e.db)
    assert "unknown command" in fails(2, "merchant", "delete", db=e.db)
    assert "missing command" in fails(2, "terminal", db=e.db)
    assert "unknown option" in fails(2, "merchant", "list", "--verbose", db=e.db)
    assert "given twice" in fails(2, "merchant", "add", "--name", "a", "--name", "b", db=e.db)
    assert "needs a value" in fails(2, "merchant", "add", "--name", db=e.db)
    assert "--id" in fails(2, "merchant", "add", "--name", "x", "--id", "no-dash", db=e.db)
    assert "--mcc" in fails(2, "merchant", "add", "--name", "x", "--mcc", "12", db=e.db)
    assert "missing argument" in fails(2, "terminal", "suspend", db=e.db)
    assert "unexpected argument" in fails(2, "terminal", "suspend", "A", "B", db=e.db)
    assert "SERIAL" in fails(2, "terminal", "suspend", "bad serial!", db=e.db)
    assert "--location" in fails(2, "terminal", "assign", "T1", "--merchant", "M",
                                 "--location", "91,0,10", db=e.db)
    assert "--location" in fails(2, "terminal", "assign", "T1", "--merchant", "M",
                                 "--location", "1.1234567,0,10", db=e.db)
    assert "--ttl" in fails(2, "terminal", "assign", "T1", "--merchant", "M", "--ttl", "1m",
                            db=e.db)
    assert "--ttl" in fails(2, "terminal", "assign", "T1", "--merchant", "M", "--ttl", "31d",
                            db=e.db)
    assert "--role" in fails(2, "operator", "add", "--merchant", "M", "--role", "admin",
                             "--username", "bob", db=e.db)
    # No database given anywhere.
    assert "no database" in fails(2, "merchant", "list")
    # Control characters never reach the terminal; unsafe words are not echoed.
    line = fails(2, "merchant", "list", "--x\x1b[31m", db=e.db)
    assert "\x1b" not in line and "(not shown)" in line


def test_schema():
    tmp = tempfile.TemporaryDirectory(prefix="mposctl-test-")
    db = os.path.join(tmp.name, "new.db")
    assert "no database" in fails(1, "merchant", "list", db=db)
    assert not os.path.exists(db)
    assert ok("db", "migrate", db=db) == "schema version 2 (was 0)\n"
    assert os.stat(db).st_mode & 0o777 == 0o600
    assert ok("db", "migrate", db=db) == "schema version 2 (was 2)\n"  # idempotent
    assert ok("db", "status", db=db) == "schema version 2 (mposctl 2)\n"
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_version VALUES (7, 0, 'future')")
    con.commit()
    con.close()
    for args in (("merchant", "list"), ("db", "migrate"), ("db", "status")):
        assert "newer schema" in fails(1, *args, db=db)


def test_merchants_and_terminals():
    e = Env()
    assert ok("merchant", "add", "--name", "Café Zürich", db=e.db) == "000000000000001\n"
    assert ok("merchant", "add", "--name", "Shop", "--id", "shop7", "--mcc", "5411",
              db=e.db) == "SHOP7\n"
    assert "already exists" in fails(1, "merchant", "add", "--name", "x", "--id", "SHOP7", db=e.db)
    out = ok("merchant", "list", db=e.db).splitlines()
    assert out[0].split() == ["ID", "MCC", "CREATED", "NAME"]
    assert len(out) == 3 and out[2].startswith("SHOP7") and "Café Zürich" in out[1]

    assert "no merchant" in fails(1, "terminal", "assign", "T1", "--merchant", "NOPE", db=e.db)
    before = int(time.time())
    out = ok("terminal", "assign", "T-1", "--merchant", "shop7", "--ttl", "90m",
             "--location", "-33.8688,151.2093,100", db=e.db)
    m = CODE_RE.match(out)
    assert m, out
    expires = time.mktime(time.strptime(m.group(2), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 5400 - 5 <= expires <= time.time() + 5400 + 5
    codes = {m.group(1)}
    # Default TTL 24 h; a second code for a provisioned terminal replaces the first.
    out = ok("terminal", "assign", "T-1", "--merchant", "SHOP7", db=e.db)
    m = CODE_RE.match(out)
    codes.add(m.group(1))
    assert len(codes) == 2
    show = ok("terminal", "show", "T-1", db=e.db)
    assert "location        -33.868800,151.209300,100" in show, show
    assert "state           provisioned" in show

    # State machine.
    assert ok("terminal", "suspend", "T-1", db=e.db) == "T-1 suspended\n"
    assert "cannot suspend" in fails(1, "terminal", "suspend", "T-1", db=e.db)
    assert "give --reassign" in fails(1, "terminal", "assign", "T-1", "--merchant", "SHOP7",
                                      db=e.db)
    assert ok("terminal", "resume", "T-1", db=e.db) == "T-1 provisioned\n"
    assert "cannot resume" in fails(1, "terminal", "resume", "T-1", db=e.db)
    ok("terminal", "assign", "T-2", "--merchant", "000000000000001", db=e.db)
    ok("terminal", "suspend", "T-2", db=e.db)
    assert CODE_RE.match(ok("terminal", "assign", "T-2", "--merchant", "SHOP7", "--reassign",
                            db=e.db))
    assert ok("terminal", "retire", "T-2", db=e.db) == "T-2 retired\n"
    for verb in ("suspend", "resume", "retire"):
        assert "retired" in fails(1, "terminal", verb, "T-2", db=e.db)
    assert "retired" in fails(1, "terminal", "assign", "T-2", "--merchant", "SHOP7",
                              "--reassign", db=e.db)
    assert "no terminal" in fails(1, "terminal", "retire", "T-404", db=e.db)
    assert "no terminal" in fails(1, "terminal", "retire", "t-1", db=e.db)  # exact serials

    lst = ok("terminal", "list", db=e.db).splitlines()
    assert lst[0].split() == ["SERIAL", "MERCHANT", "TID", "STATE", "SCHEME", "KSN/KCV",
                              "CERT-SHA256"]
    rows = {l.split()[0]: l.split() for l in lst[1:]}
    assert rows["T-1"][1:4] == ["SHOP7", "00000001", "provisioned"]
    assert rows["T-2"][1:4] == ["SHOP7", "00000002", "retired"]
    assert ok("terminal", "list", "--merchant", "000000000000001", db=e.db).count("\n") == 1

    audit = ok("audit", "list", db=e.db)
    assert "terminal.retire" in audit and "mposctl:" in audit
    for c in codes:
        assert c not in audit and c.replace("-", "") not in audit
    assert ok("audit", "verify", db=e.db).startswith("audit trail intact")
    assert len(ok("audit", "list", "--last", "2", db=e.db).splitlines()) == 2


def test_spelled_forms():
    """The forms the issue spells, called exactly so (no HSM needed for these)."""
    e = Env()
    ok("db", "migrate", db=e.db)
    mid = ok("merchant", "add", db=e.db).strip()
    assert re.match(r"^[0-9]{15}$", mid), mid
    assert mid in ok("merchant", "list", db=e.db)
    good = "Violet-Harbour-42-Lamp"
    out = ok("operator", "add", "--merchant", mid, "--role", "cashier", stdin=good + "\n",
             db=e.db)
    m = re.match(r"^username=(op[a-z2-7]{8})\noperator \1 added \(cashier\)\n$", out)
    assert m, out
    out2 = ok("operator", "add", "--merchant", mid, "--role", "supervisor", stdin=good + "\n",
              db=e.db)
    user2 = out2.splitlines()[0].split("=", 1)[1]
    assert user2 != m.group(1)
    users = [l.split()[1] for l in ok("operator", "list", db=e.db).splitlines()[1:]]
    assert sorted(users) == sorted([m.group(1), user2]), users
    out = ok("terminal", "assign", "SN-1", "--merchant", mid, db=e.db)
    assert re.match(r"^activation-code [0-9A-Z]{4}(-[0-9A-Z]{4}){3}\nexpires \S+Z\n$", out), out
    out = ok("terminal", "assign", "SN-2", "--merchant", mid, "--location",
             "48.856614,2.352222,250", db=e.db)
    assert out.startswith("activation-code ") and "\nexpires " in out, out
    assert "48.856614,2.352222,250" in ok("terminal", "show", "SN-2", db=e.db)
    assert ok("terminal", "suspend", "SN-1", db=e.db) == "SN-1 suspended\n"
    assert ok("terminal", "resume", "SN-1", db=e.db) == "SN-1 provisioned\n"
    assert ok("terminal", "retire", "SN-1", db=e.db) == "SN-1 retired\n"
    lst = ok("terminal", "list", db=e.db)
    assert re.search(r"^SN-1\s+%s\s+\S+\s+retired" % mid, lst, re.M), lst
    assert re.search(r"^SN-2\s+%s\s" % mid, lst, re.M), lst
    assert ok("key", "list", db=e.db).startswith("LABEL")


def test_operators():
    e = Env()
    ok("merchant", "add", "--name", "Shop", "--id", "S1", db=e.db)
    weak = {
        "short-1A": "too short",
        "alllowercaseletters": "one kind",
        "123456789012345678": "one kind",
        "Aaaaaaaaaaaaaaaaaa": "repetitive",
        "Xx-Carol-2024-yy": "contains the username",
    }
    for pw, why in weak.items():
        line = fails(1, "operator", "add", "--merchant", "S1", "--role", "cashier",
                     "--username", "carol", stdin=pw + "\n", db=e.db)
        assert why in line, (pw, line)
        assert pw not in line
    assert "empty password" in fails(1, "operator", "add", "--merchant", "S1", "--role",
                                     "cashier", "--username", "carol", stdin="\n", db=e.db)
    assert "no password" in fails(1, "operator", "add", "--merchant", "S1", "--role",
                                  "cashier", "--username", "carol", stdin="", db=e.db)
    # Never from argv: there is no such option, and the value is not echoed.
    line = fails(2, "operator", "add", "--merchant", "S1", "--role", "cashier", "--username",
                 "carol", "--password=Secret-Value-123", db=e.db)
    assert "Secret-Value-123" not in line
    for stray in (["Secret-Value-123"], ["--Secret-Value-123"]):
        line = fails(2, "operator", "add", "--merchant", "S1", "--role", "cashier",
                     "--username", "carol", *stray, db=e.db)
        assert "Secret" not in line, line
    assert "Secret" not in fails(2, "Secret-Value-123", db=e.db)
    assert "Secret" not in fails(2, "operator", "Secret-Value-123", db=e.db)
    good = "Violet-Harbour-42-Lamp"
    out = ok("operator", "add", "--merchant", "s1", "--role", "supervisor", "--username",
             "Carol", stdin=good + "\r\n", db=e.db)
    assert out == "operator Carol added (supervisor)\n" or "carol" in out.lower()
    assert "already exists" in fails(1, "operator", "add", "--merchant", "S1", "--role",
                                     "cashier", "--username", "carol", stdin=good + "\n",
                                     db=e.db)
    assert "no merchant" in fails(1, "operator", "add", "--merchant", "S2", "--role", "cashier",
                                  "--username", "dave", stdin=good + "\n", db=e.db)
    lst = ok("operator", "list", db=e.db).splitlines()
    assert lst[1].split()[:4] == ["S1", "carol", "supervisor", "0"]
    con = sqlite3.connect(e.db)
    (h,) = con.execute("SELECT password_hash FROM operators").fetchone()
    con.close()
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=1$"), h
    try:
        from argon2 import PasswordHasher  # python3-argon2, when installed: independent check
        assert PasswordHasher().verify(h, good)
    except ImportError:
        pass


def test_config_file():
    e = Env()
    cfg = os.path.join(e.tmp.name, "mposctl.conf")
    with open(cfg, "w") as f:
        f.write("; test\n[store]\ndb = %s\nbusy_timeout_ms = 2000\n[hsm]\nsocket = %s\n"
                % (e.db, os.path.join(e.tmp.name, "none.sock")))
    assert ok("--config", cfg, "merchant", "add", "--name", "Via config") == "000000000000001\n"
    assert "000000000000001" in ok("merchant", "list", "--config", cfg)
    env_out = subprocess.run([MPOSCTL, "merchant", "list"], capture_output=True, text=True,
                             env=dict(os.environ, MPOSCTL_CONFIG=cfg))
    assert env_out.returncode == 0 and "Via config" in env_out.stdout
    # The HSM socket from the file: nobody listens there.
    assert "mpos-hsmd" in fails(1, "--config", cfg, "hsm", "status") or \
        "without the mpos-hsmd client" in fails(1, "--config", cfg, "hsm", "status")
    with open(cfg, "a") as f:
        f.write("[store]\ncolour = blue\n")
    assert "line" in fails(2, "--config", cfg, "merchant", "list")
    assert "cannot read" in fails(2, "--config", cfg + ".missing", "merchant", "list")


def test_parallel_runs():
    """Two (and more) mposctl processes at once: generated IDs never collide."""
    e = Env()
    n = 40

    def worker(k):
        ids = []
        for i in range(n):
            out = ok("merchant", "add", "--name", "w%d-%d" % (k, i), db=e.db)
            ids.append(out.strip())
        return ids

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, range(4)))
    ids = [i for r in results for i in r]
    assert len(ids) == 4 * n and len(set(ids)) == 4 * n, "duplicate merchant IDs"
    assert sorted(ids) == ["%015d" % i for i in range(1, 4 * n + 1)]

    def assign(k):
        return [CODE_RE.match(ok("terminal", "assign", "P%d-%d" % (k, i), "--merchant",
                                 "000000000000001", db=e.db)).group(1) for i in range(n // 2)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = [c for r in pool.map(assign, range(2)) for c in r]
    assert len(set(codes)) == len(codes)
    tids = [l.split()[2] for l in ok("terminal", "list", db=e.db).splitlines()[1:]]
    assert len(tids) == n and len(set(tids)) == n
    assert ok("audit", "verify", db=e.db) == "audit trail intact: %d records\n" % (5 * n)


def test_no_secret_in_database():
    e = Env()
    ok("merchant", "add", "--name", "Shop", "--id", "S1", db=e.db)
    pw = "Quiet-Meadow-7781-Brass"
    ok("operator", "add", "--merchant", "S1", "--role", "cashier", "--username", "erin",
       stdin=pw + "\n", db=e.db)
    code = CODE_RE.match(ok("terminal", "assign", "T-9", "--merchant", "S1", db=e.db)).group(1)
    needles = [pw.encode(), code.encode(), code.replace("-", "").encode(),
               code.lower().encode(), code.replace("-", "").lower().encode()]
    files = [e.db + s for s in ("", "-wal", "-shm") if os.path.exists(e.db + s)]
    assert files
    for path in files:
        data = open(path, "rb").read()
        for n in needles:
            assert n not in data, "%s holds a secret" % path
    # And nothing but key blocks in the keys table (empty here) / no clear-looking keys.
    con = sqlite3.connect(e.db)
    assert con.execute("SELECT COUNT(*) FROM activation_codes WHERE length(code_hash) = 64"
                       ).fetchone()[0] == 1
    con.close()


def test_hsm_commands_without_hsm():
    e = Env()
    sock = os.path.join(e.tmp.name, "absent.sock")
    out = fails(1, "--hsm", sock, "hsm", "status")
    assert "mpos-hsmd" in out
    assert "no HSM socket" in fails(2, "bdk", "create", "--label", "bdk-1", "--algorithm", "aes",
                                    db=e.db)
    assert "bdk create" in fails(2, "key", "generate", "--label", "k", "--usage", "B0",
                                 "--algorithm", "aes", db=e.db)
    assert "mpos-hsmd" in fails(1, "--hsm", sock, "key", "generate", "--label", "k", "--usage",
                                "P0", "--algorithm", "aes", db=e.db)
    assert ok("key", "list", db=e.db).startswith("LABEL")
    # The spelled forms reach the HSM step (their other options are optional).
    for t in ("aes128", "aes192", "aes256", "2tdea", "3tdea"):
        assert "no HSM socket" in fails(2, "bdk", "create", "--type", t, db=e.db)
    assert "--type" in fails(2, "bdk", "create", "--type", "aes512", db=e.db)
    assert "not both" in fails(2, "bdk", "create", "--type", "aes128", "--algorithm", "aes",
                               db=e.db)
    assert "--pkcs11-module" in fails(2, "hsm", "init", db=e.db)


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]

if __name__ == "__main__":
    passed = failed = 0
    for t in TESTS:
        try:
            t()
            passed += 1
            print("ok     %s" % t.__name__)
        except Exception:
            failed += 1
            print("FAILED %s" % t.__name__)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
