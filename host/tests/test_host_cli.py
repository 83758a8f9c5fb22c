#!/usr/bin/env python3
"""mpos-host against a real mpos-terminal (GET_INFO over the link, unix and tcp), and the CLI
contract: usage errors exit 2, strict amounts, failures exit 1 with one line on stderr.

usage: test_host_cli.py MPOS_HOST [MPOS_TERMINAL]
Without MPOS_TERMINAL (target not built) the terminal part is skipped, the rest runs.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

HOST = sys.argv[1]
TERMINAL = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None


def host(*args, env=None, check=None):
    e = dict(os.environ)
    e.pop("MPOS_HOST_PASSWORD", None)
    if env:
        e.update(env)
    p = subprocess.run([HOST, *args], capture_output=True, text=True, timeout=60, env=e,
                       stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
    return p


def main():
    with tempfile.TemporaryDirectory() as tmp:
        env = {"XDG_STATE_HOME": os.path.join(tmp, "xdg"), "MPOS_HOST_TIMEOUT_MS": "5000"}
        # Usage: exit 2.
        for args in ([], ["bogus"], ["sale"], ["sale", "--amount", "12.3"],
                     ["sale", "--amount", "-1"], ["sale", "--amount", "0"],
                     ["sale", "--amount", "1.00", "--currency", "15"],
                     ["refund", "--amount", "1.00"], ["activate"], ["sale", "--bogus", "1"],
                     ["--location", "91,0", "info"], ["--terminal"], ["info", "extra"]):
            p = host(*args, env=env)
            assert p.returncode == 2, (args, p.returncode, p.stderr)
            assert p.stdout == "", (args, p.stdout)
        # Not logged in: exit 1, one line, and the state directory is private.
        p = host("--backend", "127.0.0.1:9", "--ca", "/dev/null", "--location", "31.23,121.47",
                 "settle", env=env, check=1)
        assert "not logged in" in p.stderr and p.stderr.count("\n") == 1, p.stderr
        st = os.stat(os.path.join(tmp, "xdg", "mpos-host"))
        assert st.st_mode & 0o777 == 0o700, oct(st.st_mode)
        # No terminal there: exit 1.
        p = host("--terminal", "unix:" + os.path.join(tmp, "none.sock"), "info", env=env, check=1)
        assert "cannot connect" in p.stderr, p.stderr
        # Login without a password source (no TTY in ctest): exit 1, nothing sent.
        p = host("login", "--merchant", "M1", "--user", "u", env=env)
        assert p.returncode == 1, (p.returncode, p.stderr)
        # Config file: an unknown key is refused.
        cfg = os.path.join(tmp, "bad.ini")
        with open(cfg, "w") as f:
            f.write("[backend]\naddress = 127.0.0.1:1\nbogus = 1\n")
        host("--config", cfg, "info", env=env, check=2)

        if TERMINAL is None:
            print("mpos-terminal not built: GET_INFO part skipped")
            return 0
        d = os.path.join(tmp, "term")
        p = subprocess.run([TERMINAL, "keygen", "--dir", d, "--serial", "HOSTTEST01"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        for spec in ("unix:" + os.path.join(tmp, "link.sock"), "tcp:127.0.0.1:0"):
            run = subprocess.Popen([TERMINAL, "run", "--dir", d, "--link", spec],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            try:
                line = run.stdout.readline().strip()
                m = re.match(r"^link=(.*)$", line)
                assert m, line
                link = m.group(1)
                # Through the config file this time for tcp.
                if link.startswith("tcp:"):
                    cfg = os.path.join(tmp, "host.ini")
                    with open(cfg, "w") as f:
                        f.write(f"[terminal]\nlink = {link}\n[host]\nlocation = 31.2304,121.4737,20\n")
                    p = host("--config", cfg, "info", env=env, check=0)
                else:
                    p = host("--terminal", link, "info", env=env, check=0)
                assert "serial:   HOSTTEST01" in p.stdout, p.stdout
                assert "state:    not activated" in p.stdout, p.stdout
                assert re.search(r"firmware: \S+", p.stdout), p.stdout
                # A sale needs a session first: refused before the terminal is touched.
                p = host("--terminal", link, "--backend", "127.0.0.1:9", "--ca", "/dev/null",
                         "--location", "31.23,121.47", "sale", "--amount", "1.00", env=env,
                         check=1)
                assert "not logged in" in p.stderr, p.stderr
            finally:
                run.send_signal(signal.SIGTERM)
                assert run.wait(10) == 0
                run.stdout.close()
                run.stderr.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
