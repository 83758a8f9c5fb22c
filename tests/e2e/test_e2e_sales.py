#!/usr/bin/env python3
"""End to end, the money paths (label e2e; root; RESOURCE_LOCK pcscd).

One environment (tests/e2e/mposenv.py: SoftHSM2 + mpos-hsmd, store, switch simulator,
mpos-backend, mpos-cardsim behind a real pcscd, mpos-terminal run) and, through mpos-host:
  before activation   a sale is refused, nothing is journaled or charged
  activation          the one-time code activates the terminal (store: state active)
  sale approved       chip + PIN, receipt 00 with auth code and RRN; journal 00 with the
                      masked PAN; the switch ledger debits the card once
  balance             balance inquiry: journal type 4, no debit
  declined 51         card "insufficient": receipt and journal 51, no debit
  declined 55         card "wrong-pin" with a wrong PIN: 55, no debit
  retried             the switch answers the same request twice: one approval, one journal
                      row, one debit
  retried after a     the switch answers late (1.5 s, under the back end's 2 s upstream
  lost response       timeout) and the terminal gives up after 1 s: it retries under a new
                      KSN with the same sequence number (docs/protocol.md 2.8) and gets the
                      first outcome: approved, one journal row, one debit, no reversal
  void                supervisor voids the first sale by its RRN: journal type 2 naming the
                      original, the ledger gives the money back
  refund              supervisor refunds part of the retried sale: journal type 3 naming
                      the original, ledger credit
  switch timeout      the switch answers after the back end's timeout: 91 to the terminal, a
                      reversal (reason 68) stored and forwarded until acknowledged; the
                      ledger ends where it started
  back end killed     the switch holds its answer; mpos-backend is SIGKILLed once the journal
  mid-flight          entry is pending with the request sent upstream (and the switch has
                      debited); restarted on the same store it finishes the entry with 91 and
                      reverses it (reason 68) by store-and-forward until the 0410: ledger
                      restored, mpos-host not approved; the terminal's own reversal of it is
                      answered idempotently (one queue row, no second credit)
  suspended mid-day   mposctl terminal suspend between two sales: the second is refused, not
                      journaled, not charged
  card declines       the issuer approves, the card refuses at the second GENERATE AC: the
                      terminal declines and reverses (reason 06) at its next host connection;
                      journal reversed, ledger restored
Every scenario checks the receipt / exit status AND the journal / ledger.

usage: test_e2e_sales.py (environment: MPOS_BUILD_DIR, MPOS_TEST_ARTIFACTS, MPOS_BIN_*)
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2etest  # noqa: E402
import mposenv  # noqa: E402
from e2etest import check, parse_receipt, wait_until  # noqa: E402



def pin_keys(pin):
    """The keypad script of one chip + PIN transaction: OK on the amount, then the PIN once
    the card is read (the card phase polls the keypad too and would eat the digits)."""
    return "ok,wait:1000,pin:%s,ok" % pin


GOOD_PIN = pin_keys("1234")


def pan(env, card):
    return env.cards[card]


def ledger_balance(env, card):
    """The card's balance in minor units from the switch's ledger line (masked PAN)."""
    import re
    line = env.switch("ledger")
    m = re.search(re.escape(mposenv.mask_pan(pan(env, card))) + r"\D{1,20}?(-?\d+(?:\.\d+)?)",
                  line)
    check(m, "ledger: no balance for %s" % card, line)
    v = m.group(1)
    return int(round(float(v) * 100)) if "." in v else int(v)


def txn(env, *args, card="approve", keys=GOOD_PIN, user=None, location=None, timeout=60,
        terminal_opts=None):
    """One transaction through mpos-host: card in slot 0, a fresh terminal process with the
    keypad script (each host command is a new link connection and tunnel anyway) and
    terminal_opts (start_terminal's keyword options)."""
    if card:
        env.insert(card)
    env.start_terminal(keys, **(terminal_opts or {}))
    try:
        p = env.host(*args, location=location, timeout=timeout)
    finally:
        if card:
            env.remove()  # the terminal waits for the card to go (REMOVE_CARD), then idles
    return p, parse_receipt(p.stdout)


def rows(env):
    return env.journal()


STATE = {}


def t_before_activation(env):
    before = ledger_balance(env, "approve")
    p, r = txn(env, "sale", "--amount", "1.00")
    check(p.returncode == 1, "sale before activation: exit %d" % p.returncode, p.stdout, p.stderr)
    check(r.get("response-code", r.get("result", "")) != "00", "approved?", p.stdout)
    check(rows(env) == [], "journal not empty", rows(env))
    check(ledger_balance(env, "approve") == before, "the card was charged")
    st = env.sql("SELECT state FROM terminals WHERE serial=?", (mposenv.SERIAL,))
    check(st == [("provisioned",)], "terminal state", st)


def t_activation(env):
    env.start_terminal()
    p = env.activate()
    check(p.returncode == 0, "activate: exit %d" % p.returncode, p.stdout, p.stderr)
    st = env.sql("SELECT state, tid, merchant_id FROM terminals WHERE serial=?",
                 (mposenv.SERIAL,))
    check(st and st[0][0] == "active" and st[0][2] == mposenv.MERCHANT_ID, "state", st)
    used = env.sql("SELECT used_at FROM activation_codes WHERE terminal_serial=? AND "
                   "used_at IS NOT NULL", (mposenv.SERIAL,))
    check(len(used) == 1, "activation code not marked used", used)
    env.tid = st[0][1]


def t_sale_approved(env):
    before = ledger_balance(env, "approve")
    n0 = len(rows(env))
    p, r = txn(env, "sale", "--amount", "12.34")
    check(p.returncode == 0, "sale: exit %d" % p.returncode, p.stdout, p.stderr)
    masked = mposenv.mask_pan(pan(env, "approve"))
    check(masked in p.stdout and pan(env, "approve") not in p.stdout + p.stderr,
          "receipt: masked PAN", p.stdout)
    check(mposenv.MERCHANT_ID in p.stdout, "receipt: merchant", p.stdout)
    j = rows(env)
    check(len(j) == n0 + 1, "one journal row", j)
    e = j[-1]
    check(e["response_code"] == "00" and e["txn_type"] == 1 and e["amount"] == 1234
          and e["currency"] == 156 and e["masked_pan"] == masked and e["state"] == "done",
          "journal row", e)
    check(e["rrn"] in p.stdout, "receipt: RRN %s" % e["rrn"], p.stdout)
    check(e["auth_code"] and e["auth_code"] in p.stdout, "receipt: auth code", p.stdout)
    check(pan(env, "approve") not in str(e), "PAN in the journal")
    check(e["lat_e7"] is not None and e["device_id"], "journal: location and device", e)
    check(ledger_balance(env, "approve") == before - 1234, "ledger: one debit of 12.34")
    STATE["sale"] = e


def t_balance(env):
    before = ledger_balance(env, "approve")
    p, r = txn(env, "balance")
    check(p.returncode == 0, "balance: exit %d" % p.returncode, p.stdout, p.stderr)
    e = rows(env)[-1]
    check(e["txn_type"] == 4 and e["response_code"] == "00", "journal row", e)
    check(ledger_balance(env, "approve") == before, "balance inquiry moved money")


def t_declined_51(env):
    before = ledger_balance(env, "insufficient")
    p, r = txn(env, "sale", "--amount", "20.00", card="insufficient", keys=pin_keys("4321"))
    check(p.returncode == 1, "exit %d" % p.returncode, p.stdout, p.stderr)
    check("51" in p.stdout, "receipt: 51", p.stdout)
    e = rows(env)[-1]
    check(e["response_code"] == "51" and e["masked_pan"] == mposenv.mask_pan(
        pan(env, "insufficient")), "journal row", e)
    check(ledger_balance(env, "insufficient") == before, "ledger moved")


def t_declined_55(env):
    before = ledger_balance(env, "wrong-pin")
    p, r = txn(env, "sale", "--amount", "3.00", card="wrong-pin", keys=pin_keys("1111"))
    check(p.returncode == 1, "exit %d" % p.returncode, p.stdout, p.stderr)
    check("55" in p.stdout, "receipt: 55", p.stdout)
    e = rows(env)[-1]
    check(e["response_code"] == "55", "journal row", e)
    check(ledger_balance(env, "wrong-pin") == before, "ledger moved")


def t_retried(env):
    before = ledger_balance(env, "approve")
    n0 = len(rows(env))
    env.switch("duplicate 1")
    p, r = txn(env, "sale", "--amount", "2.50")
    check(p.returncode == 0, "exit %d" % p.returncode, p.stdout, p.stderr)
    j = rows(env)
    check(len(j) == n0 + 1 and j[-1]["response_code"] == "00", "one journal row", j[n0:])
    check(ledger_balance(env, "approve") == before - 250, "ledger: exactly one debit")
    STATE["retried"] = j[-1]


def t_retried_lost_response(env):
    before = ledger_balance(env, "approve")
    n0 = len(rows(env))
    rev0 = env.sql("SELECT COUNT(*) FROM reversals")[0][0]
    # The back end's upstream timeout is 2 s ([upstream] timeout_ms): the switch answers after
    # 1.5 s, so the first send is approved; the terminal stopped waiting after 1 s and
    # retries 2.5 s later, when the journal has the outcome.
    env.switch("late 1500")
    try:
        p, r = txn(env, "sale", "--amount", "3.25",
                   terminal_opts={"online_timeout": 1000, "retry_delay": 2500})
        check(p.returncode == 0, "exit %d (approved is 0)" % p.returncode, p.stdout, p.stderr)
        j = rows(env)
        check(len(j) == n0 + 1, "one journal row", j[n0:])
        e = j[-1]
        check(e["response_code"] == "00" and e["amount"] == 325 and e["state"] == "done",
              "journal row", e)
        check(e["rrn"] in p.stdout, "receipt: the first outcome's RRN %s" % e["rrn"], p.stdout)
    finally:
        # A reversal the terminal would hold goes at its next host connection: this one, so
        # that it shows below (and never lands in the next scenario's ledger arithmetic).
        txn(env, "balance")
        time.sleep(2)
    rv = env.sql("SELECT COUNT(*) FROM reversals")[0][0]
    check(rv == rev0, "a reversal was queued", rv)
    check(env.journal("id=?", (e["id"],))[0]["reversed"] == 0, "journal: reversed")
    check(ledger_balance(env, "approve") == before - 325, "ledger: exactly one debit")


def t_void(env):
    orig = STATE.get("sale")
    check(orig, "no approved sale to void")
    before = ledger_balance(env, "approve")
    p = env.login("super1")
    check(p.returncode == 0, "supervisor login", p.stdout, p.stderr)
    p, r = txn(env, "void", "--ref", orig["rrn"], "--amount", "%d.%02d" % divmod(orig["amount"],
                                                                                 100))
    check(p.returncode == 0, "void: exit %d" % p.returncode, p.stdout, p.stderr)
    e = rows(env)[-1]
    check(e["txn_type"] == 2 and e["original_rrn"] == orig["rrn"] and e["response_code"] == "00",
          "journal row", e)
    check(ledger_balance(env, "approve") == before + orig["amount"], "ledger: void credit")


def t_refund(env):
    # Part of the 2.50 sale (the first one is voided: the issuer refuses refunds of it).
    orig = STATE.get("retried")
    check(orig, "no approved sale to refund")
    before = ledger_balance(env, "approve")
    p, r = txn(env, "refund", "--ref", orig["rrn"], "--amount", "1.00")
    check(p.returncode == 0, "refund: exit %d" % p.returncode, p.stdout, p.stderr)
    e = rows(env)[-1]
    check(e["txn_type"] == 3 and e["amount"] == 100 and e["response_code"] == "00"
          and e["original_rrn"] == orig["rrn"], "journal row", e)
    check(ledger_balance(env, "approve") == before + 100, "ledger: refund credit")
    p = env.login("cashier1")
    check(p.returncode == 0, "cashier login", p.stdout, p.stderr)


def t_switch_timeout(env):
    before = ledger_balance(env, "approve")
    env.switch("late 3500")  # [upstream] timeout_ms is 2000
    p, r = txn(env, "sale", "--amount", "7.00")
    check(p.returncode == 1, "exit %d" % p.returncode, p.stdout, p.stderr)
    check("91" in p.stdout, "receipt: 91", p.stdout)
    e = rows(env)[-1]
    check(e["response_code"] == "91", "journal row", e)
    jid = e["id"]

    def reversed_done():
        r = env.sql("SELECT reason, state FROM reversals WHERE journal_id=?", (jid,))
        return r if r and r[0][1] == "done" else None
    r = wait_until("reversal 68 acknowledged", reversed_done, timeout=20)
    check(r[0][0] == "68", "reversal reason", r)
    wait_until("ledger restored", lambda: ledger_balance(env, "approve") == before, 10)


def t_card_declines(env):
    before = ledger_balance(env, "card-declines")
    p, r = txn(env, "sale", "--amount", "4.00", card="card-declines", keys=pin_keys("1357"))
    check(p.returncode == 1, "exit %d" % p.returncode, p.stdout, p.stderr)
    e = rows(env)[-1]
    check(e["masked_pan"] == mposenv.mask_pan(pan(env, "card-declines")), "journal row", e)
    jid = e["id"]
    # The terminal sends its reversal at once when idle with a tunnel, else at the start of
    # the next transaction: a balance inquiry makes sure it went.
    txn(env, "balance", keys=GOOD_PIN)

    def reversed_done():
        r = env.sql("SELECT reason, state FROM reversals WHERE journal_id=?", (jid,))
        return r if r and r[0][1] == "done" else None
    r = wait_until("reversal 06 acknowledged", reversed_done, timeout=20)
    check(r[0][0] == "06", "reversal reason", r)
    check(env.journal("id=?", (jid,))[0]["reversed"] == 1, "journal: reversed")
    wait_until("ledger restored", lambda: ledger_balance(env, "card-declines") == before, 10)


def t_backend_crash(env):
    amount = 890
    before = ledger_balance(env, "approve")
    last = rows(env)
    last_id = last[-1]["id"] if last else 0
    lost0 = env.log_text("mpos-switchsim").count("response_lost reason=connection_gone")
    # The switch decides (and debits) at once but answers after 2.5 s, the back end gives up
    # after 2 s ([upstream] timeout_ms): mpos-backend is killed before either happens.
    env.switch("late 2500")
    env.insert("approve")
    hp = None
    try:
        # The terminal waits 4 s for its answer, then retries once: both land on a dead
        # tunnel (mpos-host loses its back-end connection with the kill).
        env.start_terminal(GOOD_PIN, online_timeout=4000, retry_delay=500, retries=1)
        argv = mposenv.as_service([env.bin("host"), "--config", env.host_conf, "sale",
                                   "--amount", "%d.%02d" % divmod(amount, 100)])
        henv = {k: v for k, v in os.environ.items() if not k.startswith("MPOS_HOST_")}
        henv["HOME"] = henv["XDG_STATE_HOME"] = env.path("host")
        hp = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=henv,
                              preexec_fn=mposenv._child_setup)

        def in_flight():
            # pending + upstream_sent: bk_txn.c marks the entry sent before the first byte
            # goes; the switch's debit proves the request really arrived.
            j = env.journal("id > ? AND state = 'pending' AND upstream_sent = 1", (last_id,))
            return j[0] if j and ledger_balance(env, "approve") == before - amount else None
        e = wait_until("journal pending, request at the switch", in_flight, timeout=20,
                       step=0.05)
        jid = e["id"]
        os.kill(env.backend_proc.pid, signal.SIGKILL)
        env.backend_proc.popen.wait(5)
        check(env.backend_proc.popen.returncode == -signal.SIGKILL, "mpos-backend not killed",
              env.backend_proc.popen.returncode)
        j = env.journal("id=?", (jid,))[0]
        check(j["state"] == "pending" and j["reversed"] == 0,
              "the kill came after the outcome", j)
        # The switch answers into the dead connection; the money stays debited meanwhile.
        wait_until("the switch's late answer", lambda: env.log_text("mpos-switchsim").count(
            "response_lost reason=connection_gone") > lost0, timeout=5)
        check(ledger_balance(env, "approve") == before - amount, "ledger: one debit")
        # The first 0400 after the restart goes unanswered: the reversal stays queued and is
        # sent again until an 0410 comes (the switch credits once, then "already reversed").
        env.switch("drop 1")
        env.restart_backend()

        def reversal_done():
            r = env.sql("SELECT reason, state, attempts FROM reversals WHERE journal_id=?",
                        (jid,))
            return r if r and r[0][1] == "done" else None
        r = wait_until("reversal of the crashed entry acknowledged", reversal_done, timeout=15)
        check(len(r) == 1 and r[0][:2] == ("68", "done") and r[0][2] >= 2,
              "reversal row (reason, state, attempts)", r)
        j = env.journal("id=?", (jid,))[0]
        check(j["state"] == "done" and j["response_code"] == "91" and j["reversed"] == 1
              and not j["auth_code"], "journal after recovery", j)
        wait_until("ledger restored", lambda: ledger_balance(env, "approve") == before, 10)
        out, err = hp.communicate(timeout=30)
        with open(env.path("logs", "mpos-host.log"), "a") as f:
            f.write("== mpos-host sale, back end killed (exit %d)\n%s%s"
                    % (hp.returncode, out, err))
        rc = parse_receipt(out).get("response-code", parse_receipt(out).get("result", ""))
        check(hp.returncode != 0 and rc != "00", "mpos-host: exit %d" % hp.returncode, out, err)
    finally:
        if hp is not None and hp.poll() is None:
            hp.kill()
            hp.communicate(timeout=5)
        env.remove()
    # A reversal the terminal holds for the lost sale goes at its next host connection: the
    # back end must answer it without a second queue row or a second credit.
    p, _ = txn(env, "balance")
    check(p.returncode == 0, "balance after the crash: exit %d" % p.returncode, p.stdout, p.stderr)
    # The terminal got no valid response, so it reverses (docs/protocol.md 2.8, reason 01);
    # the back end answered it (its log line) and found the queue row already there.
    seq = e["sequence"]
    check(any("reversal=1" in ln and re.search(r"\bsequence=%d\b" % seq, ln)
              for ln in env.log_text("mpos-backend").splitlines()),
          "the terminal's reversal of sequence %d never reached the back end" % seq)
    time.sleep(1)
    r = env.sql("SELECT reason, state FROM reversals WHERE journal_id=?", (jid,))
    check(r == [("68", "done")], "reversal row after the terminal's reversal", r)
    j = env.journal("id > ? AND txn_type = 1", (last_id,))
    check(len(j) == 1 and j[0]["response_code"] == "91", "one sale journaled", j)
    check(ledger_balance(env, "approve") == before, "ledger: credited twice?")


def t_suspended_mid_day(env):
    before = ledger_balance(env, "approve")
    p, r = txn(env, "sale", "--amount", "1.11")
    check(p.returncode == 0, "first sale: exit %d" % p.returncode, p.stdout, p.stderr)
    n0 = len(rows(env))
    env.ctl("terminal", "suspend", mposenv.SERIAL)
    p, r = txn(env, "sale", "--amount", "1.12")
    check(p.returncode != 0, "sale on a suspended terminal: exit %d" % p.returncode, p.stdout)
    j = rows(env)
    check(all(x["response_code"] != "00" for x in j[n0:]), "approved after suspension", j[n0:])
    check(ledger_balance(env, "approve") == before - 111, "ledger: only the first sale")
    env.ctl("terminal", "resume", mposenv.SERIAL)


SCENARIOS = [
    ("before activation", t_before_activation),
    ("activation", t_activation),
    ("sale approved", t_sale_approved),
    ("balance", t_balance),
    ("declined 51", t_declined_51),
    ("declined 55 wrong PIN", t_declined_55),
    ("retried: one charge", t_retried),
    ("retried after a lost response: one charge", t_retried_lost_response),
    ("void", t_void),
    ("refund", t_refund),
    ("reversal after switch timeout", t_switch_timeout),
    ("reversal after the card declines", t_card_declines),
    ("back end killed mid-flight: 91, reversal forwarded after restart", t_backend_crash),
    # Last: the refused sale leaves a reversal the suspended terminal cannot deliver.
    ("terminal suspended mid-day", t_suspended_mid_day),
]


def prepare(env):
    p = env.login("cashier1")
    check(p.returncode == 0, "cashier login: exit %d" % p.returncode, p.stdout, p.stderr)


if __name__ == "__main__":
    sys.exit(e2etest.run_program("e2e_sales", SCENARIOS, prepare=prepare))
