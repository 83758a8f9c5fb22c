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
  suspended mid-day   mposctl terminal suspend between two sales: the second is refused, not
                      journaled, not charged
  card declines       the issuer approves, the card refuses at the second GENERATE AC: the
                      terminal declines and reverses (reason 06) at its next host connection;
                      journal reversed, ledger restored
Every scenario checks the receipt / exit status AND the journal / ledger.

usage: test_e2e_sales.py (environment: MPOS_BUILD_DIR, MPOS_TEST_ARTIFACTS, MPOS_BIN_*)
"""
import os
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
    # Last: the refused sale leaves a reversal the suspended terminal cannot deliver.
    ("terminal suspended mid-day", t_suspended_mid_day),
]


def prepare(env):
    p = env.login("cashier1")
    check(p.returncode == 0, "cashier login: exit %d" % p.returncode, p.stdout, p.stderr)


if __name__ == "__main__":
    sys.exit(e2etest.run_program("e2e_sales", SCENARIOS, prepare=prepare))
