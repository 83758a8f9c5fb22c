#!/usr/bin/env python3
"""`make demo`: one chip + PIN sale through the whole system (docs/demo.md).

usage: demo.py BUILD_DIR

Builds a fresh environment in a private temporary folder (tests/e2e/mposenv.py), activates
the terminal through the cashier app, logs the cashier in, runs a sale of 12.34 CNY with the
test card "approve" (PIN 1234 typed by the terminal's scripted keypad), prints the receipt and
the journal line the back end stored (masked PAN only), and stops every process it started.
Exit 0 when the sale was approved and recorded; 1 otherwise; 3 when it cannot run here
(another pcscd runs), 77 when not root.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mposenv  # noqa: E402

T0 = time.monotonic()


def say(msg):
    print("[%5.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def show_host(p):
    for line in p.stderr.splitlines():
        if line.strip():
            print("          reader/host: " + line, flush=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    build = sys.argv[1]
    if os.geteuid() != 0:
        say("demo: needs root (pcscd runs as root; the services drop to uid 65534): skipped")
        return 77
    env = mposenv.Env(build, log=say, keys="ok,wait:1000,pin:1234,ok", cards=("approve",))
    env.install_signal_handlers()
    rc = 1
    try:
        for b in ("hsmd", "mposctl", "crypto", "terminal", "cardsim", "preload", "backend",
                  "host", "switchsim"):
            env.bin(b)
        say("1/5 setting up a fresh system in %s" % env.root)
        env.setup()
        say("2/5 starting the card reader, the card network, the back end and the terminal")
        env.start_all()

        say("3/5 activating the terminal through the cashier app (one-time code)")
        p = env.login("cashier1")
        show_host(p)
        if p.returncode != 0:
            raise mposenv.EnvError("login failed:\n" + p.stdout + p.stderr)
        p = env.activate()
        show_host(p)
        if p.returncode != 0:
            raise mposenv.EnvError("activation failed:\n" + p.stdout + p.stderr)
        say("    terminal %s activated" % mposenv.SERIAL)

        say("4/5 sale of 12.34 CNY: card 'approve' in the reader, PIN 1234 on its keypad")
        p = env.host("sale", "--amount", "12.34", "--currency", "156", timeout=45)
        env.remove()  # the card is taken out of the reader: the terminal goes back to idle
        show_host(p)
        print("\n---------------- receipt (mpos-host) ----------------", flush=True)
        print(p.stdout.rstrip(), flush=True)
        print("-----------------------------------------------------\n", flush=True)
        if p.returncode != 0:
            raise mposenv.EnvError("the sale was not approved (exit %d)" % p.returncode)

        say("5/5 the back end's journal (the store; masked PAN and keyed hash only)")
        rows = env.journal()
        if not rows:
            raise mposenv.EnvError("no journal entry")
        r = rows[-1]
        keys = ("id", "serial", "sequence", "merchant_id", "tid", "username", "txn_type",
                "amount", "currency", "masked_pan", "stan", "rrn", "entry_mode",
                "response_code", "auth_code", "state", "lat_e7", "lon_e7", "alert")
        print("    journal: " + " ".join("%s=%s" % (k, r.get(k)) for k in keys if k in r),
              flush=True)
        pan = env.cards["approve"]
        if pan in str(r) or r.get("masked_pan") != mposenv.mask_pan(pan):
            raise mposenv.EnvError("the journal line does not hold the masked PAN only")
        if r.get("response_code") != "00":
            raise mposenv.EnvError("journal: response code %s" % r.get("response_code"))
        ledger = env.switch("ledger")
        print("    switch ledger: " + ledger, flush=True)
        rc = 0
    except mposenv.Refused as e:
        say("demo: cannot run here: %s" % e)
        rc = 3
    except mposenv.EnvError as e:
        say("demo: FAILED: %s" % e)
        for p in list(env.procs):
            t = p.tail(15)
            if t:
                print("--- %s (last lines) ---\n%s" % (p.name, t), flush=True)
    except KeyboardInterrupt:
        say("demo: interrupted")
        rc = 130
    finally:
        problems = env.stop()
        env.restore_signal_handlers()
        env.cleanup()
        if problems:
            say("demo: LEFT BEHIND: %s" % "; ".join(problems))
            rc = rc or 1
        else:
            say("stopped every process (by pid); removed %s" % env.root)
    if rc == 0:
        say("demo: sale approved, authorized by the card network and journaled in %.1f s"
            % (time.monotonic() - T0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
