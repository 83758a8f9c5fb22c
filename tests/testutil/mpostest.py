"""Shared helpers of the Python tests (TEST-ONLY): daemons started and stopped by pid, the
one-line control sockets of the simulators, and an mpos-hsmd with a tools socket.

A test finds this module from its own place in the tree, e.g. from tools/mposctl/tests:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "..", "tests", "testutil"))
    import mpostest
"""
import os
import signal
import socket
import subprocess
import time


def stop_process(proc, timeout=10):
    """SIGTERM to this process (by its pid, never by name), then SIGKILL after timeout s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_unix_socket(proc, path, err, what, tries=200, delay=0.05):
    """Waits until path accepts a connection. AssertionError with the daemon's output (err,
    a file opened w+) when it exits first, or when it does not come up in tries rounds."""
    for _ in range(tries):
        if proc.poll() is not None:
            err.seek(0)
            raise AssertionError("%s exited: %s" % (what, err.read()))
        try:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
            finally:
                s.close()
            return
        except OSError:
            time.sleep(delay)
    raise AssertionError("%s did not come up" % what)


def unix_request(path, line, timeout=5, bufsize=512):
    """Sends one line to a control socket (mpos-cardsim, mpos-switchsim) and returns its
    one-line answer, stripped. The caller judges the answer ("ok ...", "error ...")."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((line + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(bufsize)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return buf.decode().strip()


class Hsmd:
    """An mpos-hsmd with a tools socket, started in the foreground and stopped by pid.

    hsmd: the binary; sock, audit_log, err_path: where its socket, audit log and output go;
    extra: more arguments (e.g. ["--lmk-components-file", path])."""

    def __init__(self, hsmd, sock, audit_log, err_path, extra=()):
        self.sock = sock
        self.err = open(err_path, "w+")
        self.proc = subprocess.Popen([hsmd, "--socket", "tools=" + sock, "--audit-log",
                                      audit_log] + list(extra), stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        try:
            wait_unix_socket(self.proc, sock, self.err, "mpos-hsmd")
        except AssertionError:
            self.stop()
            raise

    def stop(self):
        stop_process(self.proc)
        if not self.err.closed:
            self.err.close()
