#!/usr/bin/env python3
"""Acceptance tests of mpos-terminal through the real binaries (label terminal): mpos-terminal
run + a real pcscd + mpos-cardsim (started by mpos-pcsc-harness, which runs this script) and
mpos-testpeer as cashier host and back end (TEST-ONLY keys: termtest.py).

usage: test_terminal_flows.py GROUP MPOS_TERMINAL MPOS_TESTPEER CARDS_TSV
GROUP: chip | stripe | commands | powerloss | property (one pcscd per group).

Each group: a fresh key store (keygen, device certificate from a per-run manufacturer CA,
test-only import of the AES DUKPT key and the back-end CA), activation through the tunnel,
then its scenarios; every sealed message the peer receives is checked: clear fields against
the order, masked PAN only, KSN never seen twice and increasing (B-REPLAY-1), and in every
approved chip flow the ARQC recomputed from the card's issuer master key.
Environment: MPOS_CARDSIM_CONTROL (from the harness), MPOS_TEST_SCALE (property test size),
MPOS_TEST_ARTIFACTS (keep the files there, for the secret scan).
"""
import os
import random
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import termtest as T  # noqa: E402

GROUP = sys.argv[1]
TERMINAL, PEER, CARDS = [os.path.abspath(a) for a in sys.argv[2:5]]
CARD = T.load_cards(CARDS)

def keys_for(pin):
    """OK once the amount is shown, then the PIN digits and OK once the PIN prompt is shown:
    the card phase polls the keypad too, and an at:PROMPT key is not taken before its prompt
    (sim_io.h), so no key is consumed by the wrong phase whatever the timing."""
    return "at:CONFIRM_AMOUNT,ok,at:ENTER_PIN,pin:%s,ok" % pin


class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        os.makedirs(os.path.join(tmp, "pki"))
        self.pki = T.Pki(os.path.join(tmp, "pki"))
        self.ks = os.path.join(tmp, "ks")
        T.provision(TERMINAL, PEER, self.pki, self.ks)
        self.sock = os.path.join(tmp, "t.sock")
        self.peer = T.Peer(PEER, self.pki, CARDS, self.sock, tmp)
        self.cs = T.Cardsim()
        self.term = None
        self.n = 0
        self.ksns = set()
        self.last_counter = 0

    def start(self, keys=""):
        self.stop()
        self.n += 1
        self.term = T.Terminal(TERMINAL, self.ks, self.tmp, keys, name="t")
        self.peer.connect()
        return self.term

    def stop(self):
        if self.term is not None:
            self.peer.cmd("disconnect")
            self.term.stop()
            self.term = None

    def kill(self):
        self.term.kill()
        self.term = None
        self.peer.wait("closed", timeout=5)

    def set(self, rc="00", mode="normal", arpc=1):
        for k, v in (("rc", rc), ("mode", mode), ("arpc", arpc)):
            self.peer.cmd("set %s %s" % (k, v))
            self.peer.wait("set")

    def activate(self):
        t = self.start()
        assert self.peer.state() == 0, "a new terminal is not activated"
        ans = self.peer.request("activate " + T.CODE)
        assert ans["kind"] == "ack", ans
        res = self.peer.wait("result", timeout=30)
        assert res["outcome"] == "ACTIVATED", (res, t.log())
        assert self.peer.state() == 1
        self.stop()

    def check_sealed(self, s):
        """Rules every sealed message obeys."""
        assert not s["ksn_dup"], "KSN used twice: %s" % s
        assert s["ksn_increasing"], "KSN counter not increasing: %s" % s
        assert s["ksn"] not in self.ksns, s
        self.ksns.add(s["ksn"])
        assert s["mid"] == "MERCHANT0000001" and s["tid"] == "TERM0001", s
        if s["pan"]:
            assert "*" in s["pan"] and len(s["pan"]) >= 12, s

    def txn(self, start="start 1 1234 156", timeout=40, on_prompt=None, remove=True):
        """One transaction to its RESULT; on_prompt(name) runs for every prompt shown. Then
        the card is taken out (REMOVE_CARD holds the terminal in "showing result" while a
        chip card is in) and the terminal is back to idle."""
        ans = self.peer.start(start)
        assert ans["kind"] == "ack", ans
        while True:
            o = self.peer.wait(("prompt", "result"), timeout)
            if o["kind"] == "result":
                break
            if on_prompt is not None:
                on_prompt(o["prompt"])
        for s in o["sealed"]:
            self.check_sealed(s)
        if remove:
            self.cs.remove()
            wait_state(self, 1)
        return o


def only_request(res):
    reqs = [s for s in res["sealed"] if s["msg"] == "request"]
    assert len(reqs) == 1, res
    return reqs[0]


def expect_chip_request(res, card, amount=1234, currency=156, ttype=1):
    r = only_request(res)
    assert r["entry_mode"] == 5 and r["fallback"] == 0, r
    assert r["pan"] == T.masked(CARD[card]["pan"]), r
    assert (r["amount"], r["currency"], r["type"]) == (amount, currency, ttype), r
    assert r["emv"] and r["arqc_verified"] is True, "ARQC not verified: %s" % r
    assert r["emv_amount"] == amount and r["emv_currency"] == currency, r
    return r


# ---- chip --------------------------------------------------------------------------------

def chip_approve(env, card="approve", arpc=1):
    env.cs.insert(card)
    env.start(keys_for(CARD[card]["pin"]))
    env.set(rc="00", arpc=arpc)
    res = env.txn()
    assert res["outcome"] == "APPROVED", (res, env.term.log())
    r = expect_chip_request(res, card)
    assert r["has_pin"] and r["pin_ok"] is True, r
    assert res["pan"] == T.masked(CARD[card]["pan"]) and res["rc"] == "00", res
    assert res["sequence"] == r["sequence"], res
    env.stop()


def chip_approve_19digit(env):
    """Option B key derivation (19-digit PAN), ARPC method 2 in CDOL2."""
    chip_approve(env, "approve-19digit", 2)


def chip_insufficient(env):
    env.cs.insert("insufficient")
    env.start(keys_for(CARD["insufficient"]["pin"]))
    env.set(rc="51")
    res = env.txn()
    assert res["outcome"] == "DECLINED" and res["rc"] == "51", (res, env.term.log())
    expect_chip_request(res, "insufficient")
    env.stop()


def chip_card_declines(env):
    env.cs.insert("card-declines")
    env.start(keys_for(CARD["card-declines"]["pin"]))
    env.set(rc="00")
    res = env.txn()
    assert res["outcome"] != "APPROVED", res
    r = expect_chip_request(res, "card-declines")
    # the card declined after the issuer approved: the terminal reverses this sequence, while
    # idle on the same link (flush) or at the start of the next transaction
    rev = [s for s in res["sealed"] if s["msg"] == "reversal"]
    if not rev:
        rev = [env.peer.wait("sealed", timeout=15,
                             pred=lambda o: o["sealed"]["msg"] == "reversal")["sealed"]]
        env.check_sealed(rev[0])
    assert rev[0]["sequence"] == r["sequence"], (rev, r)
    assert rev[0]["pan"] in ("", r["pan"]), rev
    env.stop()


def chip_wrong_pin(env):
    env.cs.insert("wrong-pin")
    right = CARD["wrong-pin"]["pin"]
    wrong = "0000" if right != "0000" else "1111"
    env.start(keys_for(wrong) + "," + keys_for(right))
    env.set(rc="00")
    res = env.txn()  # takes the card out
    assert res["outcome"] == "DECLINED" and res["rc"] == "55", (res, env.term.log())
    r = expect_chip_request(res, "wrong-pin")
    assert r["pin_ok"] is False, r
    env.cs.insert("wrong-pin")  # a new insertion for the second try
    res2 = env.txn()
    assert res2["outcome"] == "APPROVED", (res2, env.term.log())
    r2 = expect_chip_request(res2, "wrong-pin")
    assert r2["pin_ok"] is True and r2["sequence"] > r["sequence"], r2
    env.stop()


def swipe_on(env, card, prompt_name, tr=None):
    tr = tr or T.tracks(CARD[card])

    def cb(name):
        if name == prompt_name:
            env.term.swipe_file(*tr)
    return cb


def chip_fallback(env):
    env.cs.insert("chip-broken")
    env.start(keys_for(CARD["chip-broken"]["pin"]))
    env.set(rc="00")
    res = env.txn(on_prompt=swipe_on(env, "chip-broken", "CHIP_ERROR_SWIPE"))
    assert "CHIP_ERROR_SWIPE" in res["events"], res
    assert res["outcome"] == "APPROVED", (res, env.term.log())
    r = only_request(res)
    assert r["entry_mode"] == 0x90 and r["fallback"] == 1, r
    assert r["track2"] and not r["emv"] and r["pan"] == T.masked(CARD["chip-broken"]["pan"]), r
    env.stop()


def chip_foreign_aid(env):
    env.cs.insert("foreign-aid")
    env.start("ok")
    res = env.txn(start="start 1 500 156")
    assert res["outcome"] == "CARD_ERROR", (res, env.term.log())
    assert res["sealed"] == [], res
    env.stop()


# ---- stripe ------------------------------------------------------------------------------

def stripe_good(env):
    env.cs.remove()
    env.start(keys_for(CARD["stripe-only"]["pin"]))
    env.set(rc="00")
    res = env.txn(on_prompt=swipe_on(env, "stripe-only", "PRESENT_CARD"))
    assert res["outcome"] == "APPROVED", (res, env.term.log())
    r = only_request(res)
    assert r["entry_mode"] == 0x90 and r["fallback"] == 0 and r["track2"] and not r["emv"], r
    assert r["pan"] == T.masked(CARD["stripe-only"]["pan"]) and r["pin_ok"] is True, r
    env.stop()


def stripe_refused(env, tr, want_prompt):
    """A swipe the terminal must not send: no request; the host then cancels."""
    env.cs.remove()
    env.start("ok")
    seen = []

    def cb(name):
        seen.append(name)
        if name == "PRESENT_CARD":
            env.term.swipe_file(*tr)
        if want_prompt is not None and name == want_prompt:
            env.peer.cmd("cancel")
        if want_prompt is None and name == "PRESENT_CARD":
            time.sleep(1.5)
            env.peer.cmd("cancel")
    res = env.txn(on_prompt=cb)
    assert res["sealed"] == [], res
    assert res["outcome"] in ("CANCELLED", "CARD_ERROR"), res
    if want_prompt is not None:
        assert want_prompt in seen, (seen, res)
    assert env.peer.state() == 1
    env.stop()
    return res


def stripe_chip_card(env):
    stripe_refused(env, T.tracks(CARD["approve"]), "USE_CHIP")


def stripe_bad_luhn(env):
    pan = CARD["stripe-only"]["pan"]
    bad = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    stripe_refused(env, T.tracks(CARD["stripe-only"], pan=bad), None)


def stripe_bad_format(env):
    c = CARD["stripe-only"]
    stripe_refused(env, ("%%B%s?" % c["pan"], ";%s=%s?" % (c["pan"], c["expiry"])), None)


# ---- commands: every type byte in every reachable state ----------------------------------

ALLOWED = {0: {1, 4, 5, 6}, 1: {1, 2, 5, 6}, 2: {1, 3, 5}, 3: {1, 3, 5}, 4: {1, 3, 5},
           5: {1, 5}, 6: {1, 5}}
VALID = {2: "01" + "00000000000004D2" + "009C" + "00",  # sale 12.34 CNY
         3: "-", 4: "0B" + T.CODE.encode().hex(),
         6: "%08X%08X%08X%016X" % (311234567, 1214567890, 25, 1767225600)}
MALFORMED = {1: "00", 5: "-", 2: "01" + "0000000000000000" + "009C" + "00",  # a sale of 0
             3: "00", 4: "02" + "4142",  # a 2-character code
             6: "%08X%08X%08X%016X" % (900000001, 0, 25, 1767225600)}  # latitude > 90


def refuse_all(env, state):
    """Every type the state does not take (valid payloads for the commands), and malformed
    payloads of the ones it takes: ERROR with the right code and state, state unchanged."""
    p = env.peer
    assert p.state() == state, "not in state %d" % state
    sent = []
    for t in range(256):
        if t in ALLOWED[state]:
            continue
        payload = VALID.get(t, "-")
        p.cmd("raw %d %s" % (t, payload))
        sent.append((t, 1 if t not in (1, 2, 3, 4, 5, 6) else 2))
    for t, payload in MALFORMED.items():
        if t in ALLOWED[state]:
            p.cmd("raw %d %s" % (t, payload))
            sent.append((t, 3))
    seqs = [p.wait("sent")["seq"] for _ in sent]
    for (t, code), seq in zip(sent, seqs):
        e = p.wait(("error", "ack", "info"), 30, pred=lambda o, s=seq: o.get("ref") == s)
        assert e["kind"] == "error", "type %d in state %d accepted: %s" % (t, state, e)
        assert (e["type"], e["code"], e["state"]) == (t, code, state), (t, code, state, e)
    assert p.state() == state, "state changed"
    return len(sent)


def wait_state(env, state, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if env.peer.state() == state:
            return
        time.sleep(0.1)
    raise AssertionError("state %d not reached: %s" % (state, env.term.log()))


def commands_all_states(env):
    n = 0
    env.cs.remove()
    env.start()
    n += refuse_all(env, 0)  # not activated (before the group's activation)
    env.stop()
    env.activate()
    env.start()
    n += refuse_all(env, 1)
    env.peer.request("start 1 1234 156")
    wait_state(env, 2)  # no keys: the confirmation waits
    n += refuse_all(env, 2)
    env.peer.request("cancel")
    env.peer.wait("result", timeout=10)
    env.stop()

    env.cs.remove()
    env.start("ok")
    env.peer.request("start 1 1234 156")
    wait_state(env, 3)  # no card
    n += refuse_all(env, 3)
    env.peer.request("cancel")
    env.peer.wait("result", timeout=10)
    env.stop()

    env.cs.insert("approve")
    env.start("ok")
    env.peer.request("start 1 1234 156")
    wait_state(env, 4)  # no PIN keys
    n += refuse_all(env, 4)
    env.peer.request("cancel")
    env.peer.wait("result", timeout=10)
    env.cs.remove()
    wait_state(env, 1)
    env.stop()

    env.cs.insert("approve")
    env.start(keys_for(CARD["approve"]["pin"]))
    env.set(mode="hold")
    env.peer.request("start 1 1234 156")
    env.peer.wait("held", timeout=30)
    wait_state(env, 5)  # the response is held back
    n += refuse_all(env, 5)
    env.peer.cmd("release")
    env.peer.wait("responded")
    env.set(mode="normal")
    wait_state(env, 6)  # the card stays in: REMOVE_CARD
    n += refuse_all(env, 6)
    env.cs.remove()
    res = env.peer.wait("result", timeout=30)
    assert res["outcome"] == "APPROVED", res
    for s in res["sealed"]:
        env.check_sealed(s)
    env.stop()
    print("refused %d frames in 7 states" % n)


# ---- power loss --------------------------------------------------------------------------

def powerloss(env):
    """SIGKILL at each step of a chip transaction, restart on the same key store: no KSN twice
    across the run, the pending reversal sent after the restart."""
    points = [("after confirm", "prompt", "PRESENT_CARD"), ("after card", "prompt", "ENTER_PIN"),
              ("after PIN", "prompt", "PROCESSING"), ("while online", "held", None),
              ("after response", "responded", None)]
    pin = CARD["approve"]["pin"]
    pending = None  # the sequence whose reversal must come after the restart
    env.cs.insert("approve")  # once: the card stays in across the kills
    for name, kind, prompt in points:
        env.start(keys_for(pin))
        if pending is not None:
            rev = env.peer.wait("sealed", 20, pred=lambda o: o["sealed"]["msg"] == "reversal")
            env.check_sealed(rev["sealed"])
            assert rev["sealed"]["sequence"] == pending, (rev, pending)
            pending = None
        env.set(mode="hold" if kind == "held" else "normal")
        ans = env.peer.start("start 1 777 156")
        assert ans["kind"] == "ack", ans
        seen_req = None
        while True:
            o = env.peer.wait(("prompt", "sealed", "held", "responded", "result"), 40)
            if o["kind"] == "sealed":
                env.check_sealed(o["sealed"])
                if o["sealed"]["msg"] == "request":
                    seen_req = o["sealed"]
            if o["kind"] == "result":
                raise AssertionError("%s: the transaction ended before the kill: %s" % (name, o))
            if o["kind"] == "responded" and (seen_req is None
                                             or o["sequence"] != seen_req["sequence"]):
                continue  # the answer to the reversal sent first
            if o["kind"] == kind and (prompt is None or o.get("prompt") == prompt):
                break
        env.kill()
        print("killed %s (request %s)" % (name, "sent" if seen_req else "not sent"))
        if seen_req is not None:
            pending = seen_req["sequence"]
        env.peer.clear()
        env.set(mode="normal")
    # the last restart: the reversal, then a whole transaction approves
    env.start(keys_for(pin))
    if pending is not None:
        rev = env.peer.wait("sealed", 20, pred=lambda o: o["sealed"]["msg"] == "reversal")
        env.check_sealed(rev["sealed"])
        assert rev["sealed"]["sequence"] == pending, (rev, pending)
    res = env.txn(start="start 1 778 156")
    assert res["outcome"] == "APPROVED", (res, env.term.log())
    expect_chip_request(res, "approve", amount=778)
    env.stop()
    dups = [o for o in env.peer.all if o.get("kind") == "sealed" and o["sealed"]["ksn_dup"]]
    assert not dups, dups
    print("%d KSNs, all distinct and increasing" % len(env.ksns))


# ---- property: the display's amount is the sealed amount ---------------------------------

def prop_amounts(env):
    scale = float(os.environ.get("MPOS_TEST_SCALE", "1"))
    n = max(2, int(8 * scale))
    rnd = random.Random(int(os.environ.get("MPOS_TEST_SEED", str(int(time.time())))))
    pin = CARD["approve"]["pin"]
    env.set(rc="00")
    env.cs.insert("approve")
    for i in range(n):
        ttype = rnd.choice([1, 1, 2, 3, 4])
        amount = 0 if ttype == 4 else rnd.choice([1, rnd.randint(1, 99999),
                                                  rnd.randint(1, 999999999999)])
        currency = rnd.choice([156, 344, 446, 840, 978, 392, rnd.randint(1, 999)])
        ref = " REF%06d" % rnd.randint(0, 999999) if ttype in (2, 3) else ""
        # one terminal per order and the card never taken out (faster than a removal per
        # order). The terminal is killed after RESULT (it would wait for REMOVE_CARD); the
        # transaction is complete
        env.start(keys_for(pin))
        res = env.txn(start="start %d %d %d%s" % (ttype, amount, currency, ref), remove=False)
        shown = env.term.prompts()
        conf = [d for d in shown if d["prompt"] == "CONFIRM_AMOUNT"]
        assert len(conf) == 1, shown
        reqs = [s for s in res["sealed"] if s["msg"] == "request"]
        assert len(reqs) == 1, (ttype, amount, currency, res, env.term.log())
        r = reqs[0]
        assert int(conf[0]["amount"]) == r["amount"] == amount, (conf, r)
        assert int(conf[0]["currency"]) == r["currency"] == currency, (conf, r)
        assert int(conf[0]["type"]) == r["type"] == ttype, (conf, r)
        if r["emv"]:
            assert r["emv_amount"] == amount and r["emv_currency"] == currency, r
        if ref:
            assert r["ref"] == ref.strip(), r
        for d in shown:
            assert set(d) <= {"prompt", "type", "amount", "currency", "count"}, d
        env.kill()
    print("%d random orders: display amount == sealed amount" % n)


GROUPS = {
    "chip": [chip_approve, chip_approve_19digit, chip_insufficient,
             chip_card_declines, chip_wrong_pin, chip_fallback, chip_foreign_aid],
    "stripe": [stripe_good, stripe_chip_card, stripe_bad_luhn, stripe_bad_format],
    "commands": [commands_all_states],
    "powerloss": [powerloss],
    "property": [prop_amounts],
}


def main():
    if "MPOS_CARDSIM_CONTROL" not in os.environ:
        print("run through mpos-pcsc-harness (ctest does)", file=sys.stderr)
        return 2
    art = os.environ.get("MPOS_TEST_ARTIFACTS")
    if art:
        os.makedirs(art, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mpos-flows-", dir=art)
    env = None
    failed = 0
    try:
        env = Env(tmp)
        if GROUP != "commands":
            env.activate()
        for fn in GROUPS[GROUP]:
            t0 = time.time()
            name = getattr(fn, "__name__", "?")
            try:
                fn(env)
                print("ok   %s %s (%.1f s)" % (GROUP, name, time.time() - t0))
            except Exception:
                failed += 1
                print("FAIL %s %s" % (GROUP, name))
                traceback.print_exc()
                if env.term is not None:
                    print("--- mpos-terminal log ---\n" + env.term.log())
                env.stop()
                env.peer.clear()
            sys.stdout.flush()
    finally:
        if env is not None:
            env.stop()
            env.peer.stop()
        if not art:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
