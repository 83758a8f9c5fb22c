"""A tiny runner for the end-to-end test programs (tests/e2e/test_*.py).

Each program builds one environment (mposenv.Env) under $MPOS_TEST_ARTIFACTS/env (kept for
the secret scan), runs its scenarios in order (each prints "ok" or "FAILED" with the reason),
then stops every process and checks that
  - no process it started is left (by pid, and no child of ours at all),
  - /run/pcscd is gone when we created it,
  - the artifacts hold no PAN, key or clear PIN block of the test cards (tests/secret_scan.py)
    and no keypad script with PIN digits.
Exit 0 when everything passed, 1 otherwise, 77 when it cannot run here (not root), 3 when it
refused to start (another pcscd runs).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mposenv  # noqa: E402


class Failed(AssertionError):
    pass


def check(cond, what, *detail):
    if not cond:
        raise Failed(what + ("\n" + "\n".join(str(d) for d in detail) if detail else ""))


def parse_receipt(text):
    """The receipt lines of mpos-host (key=value or 'key: value') as a dict with lowercase
    keys, '_' and ' ' turned into '-'."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9 _-]*?)\s*[=:]\s*(.*?)\s*$", line)
        if m:
            out[re.sub(r"[ _]+", "-", m.group(1).strip().lower())] = m.group(2)
    return out


def wait_until(what, cond, timeout=15.0, step=0.2):
    end = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > end:
            raise Failed("%s: not within %.0f s" % (what, timeout))
        time.sleep(step)


def run_program(name, scenarios, env_kwargs=None, prepare=None):
    """scenarios: [(name, fn(env))]. prepare(env): after start, before the scenarios (its
    failure fails every scenario)."""
    if os.geteuid() != 0:
        print("SKIP: needs root (pcscd runs as root; the daemons run as uid 65534)")
        return 77
    artifacts = os.environ.get("MPOS_TEST_ARTIFACTS")
    if artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
        os.makedirs(artifacts)
        root = os.path.join(artifacts, "env")
    else:
        artifacts = tempfile.mkdtemp(prefix="mpos-%s-" % name)
        root = os.path.join(artifacts, "env")
    os.chmod(artifacts, 0o755)  # the service user (65534) walks through to env/
    build = os.environ.get("MPOS_BUILD_DIR", os.getcwd())
    t0 = time.monotonic()

    def say(msg):
        print("[%6.1fs] %s" % (time.monotonic() - t0, msg), flush=True)

    env = mposenv.Env(build, root=root, log=say, **(env_kwargs or {}))
    env.install_signal_handlers()
    passed, failed = 0, []
    rc = 0
    try:
        env.setup()
        env.start_all()
        if prepare is not None:
            prepare(env)
        for sname, fn in scenarios:
            ts = time.monotonic()
            try:
                fn(env)
                passed += 1
                say("ok     %s (%.1f s)" % (sname, time.monotonic() - ts))
            except (AssertionError, mposenv.EnvError, subprocess.TimeoutExpired) as e:
                failed.append(sname)
                say("FAILED %s: %s" % (sname, e))
                traceback.print_exc(limit=3)
                for p in env.procs:
                    if not p.alive():
                        say("  %s exited (status %s):\n%s" % (p.name, p.popen.returncode,
                                                               p.tail(15)))
    except mposenv.Refused as e:
        say("REFUSED: %s" % e)
        rc = 3
    except KeyboardInterrupt:
        say("interrupted")
        rc = 130
    except Exception as e:  # set-up failed: every scenario fails
        say("FAILED set-up: %s" % e)
        traceback.print_exc()
        for p in env.procs:
            say("--- %s:\n%s" % (p.name, p.tail(20)))
        failed.append("set-up")
    finally:
        problems = env.stop()
        env.restore_signal_handlers()
    left = env.children_left()
    if left:
        problems.append("children left: %s" % left)
    if problems:
        say("FAILED cleanup: %s" % "; ".join(problems))
        failed.append("cleanup")
    else:
        say("ok     no process left behind")
    if rc == 0:
        bad = scan_artifacts(artifacts, env)
        if bad:
            say("FAILED artifact scan: %s" % bad)
            failed.append("artifact scan")
        else:
            say("ok     artifacts hold no PAN, key or PIN")
    if not os.environ.get("MPOS_TEST_ARTIFACTS"):
        shutil.rmtree(artifacts, ignore_errors=True)
    say("%d passed, %d failed%s" % (passed, len(failed),
                                    (": " + ", ".join(failed)) if failed else ""))
    if rc:
        return rc
    return 1 if failed else 0


def scan_artifacts(artifacts, env):
    """tests/secret_scan.py over our artifacts, plus the keypad scripts' PIN digits."""
    src = mposenv.source_dir()
    vectors = os.environ.get("MPOS_PUBLISHED_VECTORS")
    if not vectors:
        shared = os.path.join(src, "..", "shared", "vectors", "published.tsv")
        vectors = shared if os.path.exists(shared) else os.path.join(src, "tests", "vectors",
                                                                     "published.tsv")
    p = subprocess.run([sys.executable, os.path.join(src, "tests", "secret_scan.py"), artifacts,
                        mposenv.cards_tsv(), vectors], capture_output=True, text=True)
    if p.returncode != 0:
        return (p.stdout + p.stderr).strip()[-2000:]
    for dirpath, _, files in os.walk(artifacts):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            if re.search(rb"pin:\d{4}", data):
                return "%s holds a keypad script with PIN digits" % path
    return ""
