#!/usr/bin/env python3
"""End to end, what must be refused (label e2e; root; RESOURCE_LOCK pcscd).

One environment (tests/e2e/mposenv.py) and, through mpos-host and mposctl:
  weak password          mposctl operator add refuses a weak password; no operator stored
  host without login     a sale without a session is refused before the terminal is used
  operator lockout       5 bad passwords lock the operator: the right one is refused then
                         (store: failed attempts, locked_until)
  host as root           mpos-host run as root: LOGIN refused (integrity), no session stored
  unknown binary hash    the back end allows only another binary hash: LOGIN refused
  code expired           an activation code past its expiry is refused; the terminal stays
                         provisioned
  code reused            after activating with a code, the same code is refused again: by the
                         terminal; by the back end when the terminal's key store is restored
                         to before the activation (status 4) and after a reassignment (status
                         3); the reassignment's new code activates
  outside radius         a sale from a location outside the terminal's registered radius:
                         57 with alert outside_radius in the journal, no debit
  wrong-CA terminal      a terminal whose certificate another CA signed (registered in the
                         store) cannot open its tunnel: activation fails, it stays provisioned
Every scenario checks the exit status AND what the store / ledger recorded.

usage: test_e2e_security.py (environment: MPOS_BUILD_DIR, MPOS_TEST_ARTIFACTS, MPOS_BIN_*)
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2etest  # noqa: E402
import mposenv  # noqa: E402
from e2etest import check  # noqa: E402

GOOD_PIN = "ok,wait:1000,pin:1234,ok"


def sessions(env):
    return env.sql("SELECT COUNT(*) FROM host_sessions")[0][0]


def t_weak_password(env):
    for pw in ("password", "short1A!", "aaaaaaaaaaaaaaaa1", "weakling-weakling"):
        p = env.ctl("operator", "add", "--merchant", mposenv.MERCHANT_ID, "--role", "cashier",
                    "--username", "weakling", stdin=pw + "\n", check=None)
        check(p.returncode == 1 and p.stderr.startswith("mposctl: "),
              "weak password %r accepted: exit %d" % (pw, p.returncode), p.stdout, p.stderr)
    n = env.sql("SELECT COUNT(*) FROM operators WHERE username='weakling'")[0][0]
    check(n == 0, "operator stored")


def t_without_login(env):
    fresh = env.path("host", "fresh-state")
    p = env.host("sale", "--amount", "1.00", state=fresh)
    check(p.returncode != 0, "sale without login: exit %d" % p.returncode, p.stdout, p.stderr)
    check(re.search(r"log", p.stderr, re.I), "no hint to log in", p.stderr)
    check(env.journal() == [], "journal not empty")


def t_lockout(env):
    env.ctl("operator", "add", "--merchant", mposenv.MERCHANT_ID, "--role", "cashier",
            "--username", "cashier2", stdin="Second-Till-99-Green\n")
    for i in range(5):
        p = env.host("login", "--merchant", mposenv.MERCHANT_ID, "--user", "cashier2",
                     password="Wrong-Password-%d-X" % i)
        check(p.returncode != 0, "bad password accepted", p.stdout, p.stderr)
    p = env.host("login", "--merchant", mposenv.MERCHANT_ID, "--user", "cashier2",
                 password="Second-Till-99-Green")
    check(p.returncode != 0, "locked operator logged in", p.stdout, p.stderr)
    check(re.search(r"lock", p.stderr, re.I), "no 'locked' reason", p.stderr)
    r = env.sql("SELECT failed_attempts, locked_until FROM operators WHERE username='cashier2'")
    check(r and r[0][1] is not None, "store: not locked", r)
    n = env.sql("SELECT COUNT(*) FROM host_sessions WHERE username='cashier2'")[0][0]
    check(n == 0, "a session was stored for the locked operator")


def t_host_root(env):
    n0 = sessions(env)
    p = env.host("login", "--merchant", mposenv.MERCHANT_ID, "--user", "cashier1",
                 password=mposenv.OPERATORS["cashier1"][1], root=True,
                 state=env.path("host", "root-state"))
    check(p.returncode != 0, "login as root accepted", p.stdout, p.stderr)
    check(re.search(r"integrity|root", p.stderr, re.I), "reason", p.stderr)
    check(sessions(env) == n0, "a session was stored")


def t_binary_hash(env):
    n0 = sessions(env)
    env.restart_backend({"binary_hashes": "ab" * 32})
    try:
        p = env.login("cashier1")
        check(p.returncode != 0, "unknown binary accepted", p.stdout, p.stderr)
        check(re.search(r"integrity|binary", p.stderr, re.I), "reason", p.stderr)
        check(sessions(env) == n0, "a session was stored")
    finally:
        env.restart_backend()
    p = env.login("cashier1")
    check(p.returncode == 0, "login after restoring the policy", p.stdout, p.stderr)


def t_code_expired(env):
    code = env.assign()
    env.sql_write("UPDATE activation_codes SET expires_at = expires_at - 2*86400 WHERE "
                  "terminal_serial=? AND used_at IS NULL AND revoked_at IS NULL",
                  (mposenv.SERIAL,))
    env.start_terminal()
    p = env.activate(code)
    check(p.returncode != 0, "expired code accepted", p.stdout, p.stderr)
    # The host cannot read the tunnel: the reason is the back end's (ACTIVATE_OK status 2).
    check(re.search(r"event=activation .*serial=%s status=2\b" % mposenv.SERIAL,
                    env.log_text("mpos-backend")), "back end: no status 2 (expired)")
    st = env.sql("SELECT state FROM terminals WHERE serial=?", (mposenv.SERIAL,))
    check(st == [("provisioned",)], "terminal state", st)


def t_code_reused(env):
    """A code activates once. Replayed (1) to the activated terminal: it refuses itself; (2) by
    the same terminal with its key store restored to before the activation (a cloned or
    restored device): the back end refuses the active terminal (status 4); (3) after the
    terminal was reassigned (back to provisioned, a new code issued): the used code is refused
    (status 3 or 1), and the new code activates it."""
    code = env.assign()
    env.stop_terminal()
    before = env.keystore_snapshot("before-activation")
    env.start_terminal()
    p = env.activate(code)
    check(p.returncode == 0, "activation: exit %d" % p.returncode, p.stdout, p.stderr)
    p = env.activate(code)
    check(p.returncode != 0, "an activated terminal activated again", p.stdout, p.stderr)

    def statuses():
        return [int(m) for m in re.findall(r"event=activation .*serial=%s status=(\d+)"
                                           % mposenv.SERIAL, env.log_text("mpos-backend"))]
    env.stop_terminal()
    env.keystore_restore(before)
    env.start_terminal()
    n = len(statuses())
    p = env.activate(code)
    check(p.returncode != 0, "code used twice (restored key store)", p.stdout, p.stderr)
    check(statuses()[n:] == [4], "back end: want status 4 (terminal active)", statuses())

    code2 = env.assign(reassign=True)
    st = env.sql("SELECT state FROM terminals WHERE serial=?", (mposenv.SERIAL,))
    check(st == [("provisioned",)], "reassigned terminal state", st)
    n = len(statuses())
    p = env.activate(code)
    check(p.returncode != 0, "used code accepted after reassignment", p.stdout, p.stderr)
    check(statuses()[n:] in ([3], [1]), "back end: want status 3 (used) or 1", statuses())
    p = env.activate(code2)
    check(p.returncode == 0, "new code: exit %d" % p.returncode, p.stdout, p.stderr)
    used = env.sql("SELECT COUNT(*) FROM activation_codes WHERE terminal_serial=? AND used_at "
                   "IS NOT NULL", (mposenv.SERIAL,))[0][0]
    check(used == 2, "used codes", used)
    st = env.sql("SELECT state FROM terminals WHERE serial=?", (mposenv.SERIAL,))
    check(st == [("active",)], "terminal state", st)


def t_outside_radius(env):
    import test_e2e_sales as s
    before = s.ledger_balance(env, "approve")
    env.insert("approve")
    env.start_terminal(GOOD_PIN)
    try:
        p = env.host("sale", "--amount", "9.99", location=mposenv.FAR)
    finally:
        env.remove()
    check(p.returncode == 1, "sale outside radius: exit %d" % p.returncode, p.stdout, p.stderr)
    check("57" in p.stdout, "receipt: 57", p.stdout)
    e = env.journal()[-1]
    check(e["response_code"] == "57" and "outside_radius" in (e["alert"] or ""),
          "journal row", e)
    check(s.ledger_balance(env, "approve") == before, "ledger moved")


def t_wrong_ca(env):
    """A second terminal whose device certificate the rogue CA signed."""
    serial = "E2E-ROGUE-0002"
    env.ctl("key", "generate", "--label", "rogue-ca", "--usage", "S1", "--algorithm", "ec")
    rogue = env.path("pki", "rogue-ca.der")
    env.ctl("ca", "create", "--key", "rogue-ca", "--cn", "not the manufacturer", "--out", rogue)
    ks = os.path.join(env.ks, "rogue")
    p = env.run([env.bin("terminal"), "keygen", "--dir", ks, "--serial", serial],
                "keygen", service=True)
    env.ctl("terminal", "provision", "--serial", serial, "--csr", p.stdout.strip(), "--ca-key",
            "rogue-ca", "--ca-cert", rogue, "--bdk", "bdk-aes", "--trust-anchor", env.backend_ca,
            "--out", env.path("bundles"))
    env.run([env.bin("terminal"), "import", "--dir", ks, "--bundle",
             env.path("bundles", serial + ".bundle"), "--ca-cert", rogue], "import",
            service=True)
    out = env.ctl("terminal", "assign", serial, "--merchant", mposenv.MERCHANT_ID).stdout
    code = re.search(r"^activation-code\s+(\S+)", out, re.M).group(1)
    link = os.path.join(env.ks, "rogue.sock")
    t = env.start("mpos-terminal-rogue", [env.bin("terminal"), "run", "--dir", ks, "--link",
                                          "unix:" + link, "--reader", mposenv.READER_NAME +
                                          " 00 01", "--server-name", "mpos-backend",
                                          "--keys", "wait:1"])
    try:
        env.wait_for("rogue terminal link", lambda: mposenv._unix_listening(link), t)
        n = env.log_text("mpos-backend").count("event=tunnel_handshake_failed")
        p = env.host("--terminal", "unix:" + link, "activate", "--code", code)
        check(p.returncode != 0, "the rogue terminal activated", p.stdout, p.stderr)
        # Refused by the inner TLS handshake (the certificate does not chain to [terminal] ca).
        log = env.log_text("mpos-backend")
        check(log.count("event=tunnel_handshake_failed") == n + 1 and
              "unable to get local issuer certificate" in log, "back end: no handshake refusal")
        st = env.sql("SELECT state FROM terminals WHERE serial=?", (serial,))
        check(st == [("provisioned",)], "rogue terminal state", st)
    finally:
        env._stop_one(t)


SCENARIOS = [
    ("weak password refused", t_weak_password),
    ("host without login", t_without_login),
    ("operator lockout", t_lockout),
    ("host running as root", t_host_root),
    ("unknown binary hash", t_binary_hash),
    ("activation code expired", t_code_expired),
    ("activation code reused", t_code_reused),
    ("location outside radius", t_outside_radius),
    ("wrong-CA terminal certificate", t_wrong_ca),
]


def prepare(env):
    p = env.login("cashier1")
    check(p.returncode == 0, "cashier login: exit %d" % p.returncode, p.stdout, p.stderr)


if __name__ == "__main__":
    sys.exit(e2etest.run_program("e2e_security", SCENARIOS, prepare=prepare))
