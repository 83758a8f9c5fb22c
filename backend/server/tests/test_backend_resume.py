#!/usr/bin/env python3
"""mpos-backend: the terminal's inner TLS resumes with a session ticket (label e2e;
docs/system-design.md 2). A terminal-like client (client certificate, TLS 1.3, memory BIOs)
through the host protocol's TUNNEL: a full handshake gets a ticket; after a host reconnect
the tunnel resumes with it (no client certificate sent) and HELLO is answered; the back end's
log says resumed=0 then resumed=1. The terminal suspended: the same ticket still resumes the
TLS, but the back end re-checks the registration and refuses it (tunnel ERROR 4, host
ERROR 11); resumed again after `terminal resume`; retired: refused. A ticket is never good
on the outer (host) TLS, nor an outer ticket on the inner TLS (separate session id contexts).

usage: test_backend_resume.py MPOS_BACKEND_TESTD MPOSCTL MPOS_HSMD MPOS_CRYPTO
Exit 77 when python3-cryptography is missing (as test_backend.py).
"""
import os
import re
import socket
import ssl
import struct
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backend_client as bc  # noqa: E402
import test_backend as tb  # noqa: E402  (exits 77 without python3-cryptography)

SERIAL = "T-RES"
HELLO = bc.tlv(0xDF01, SERIAL.encode()) + bc.tlv(0xDF02, b"1.2.0")


class ResumingTerminal(bc.Terminal):
    """bc.Terminal on a shared client context (Python binds a session to its SSLContext),
    offering session when given."""

    def __init__(self, host, ctx, session=None):  # pylint: disable=super-init-not-called
        self.host = host
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_hostname="localhost",
                                session=session)
        self.host_frames = []
        self.plain = b""


def client_ctx(be, fleet):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(be.ca)
    ctx.load_cert_chain(fleet.certs[SERIAL], fleet.keys[SERIAL])
    return ctx


def logged_in(be):
    h = be.host()
    h.login(tb.MERCHANT, "alice", tb.PASSWORDS["alice"])
    return h


def tunnel_ok(be, ctx, session, want_resumed):
    """A tunnel on a new host connection, HELLO answered; returns the session (with the
    back end's new ticket, read along with HELLO_OK)."""
    h = logged_in(be)
    try:
        t = ResumingTerminal(h, ctx, session)
        t.handshake()
        assert t.obj.session_reused == want_resumed, (t.obj.session_reused, want_resumed)
        t.send(0x01, HELLO)
        typ, body = t.recv()
        assert typ == 0x81 and bc.tlv_parse(body)[0xDF04] == b"\x00", (typ, body)
        sess = t.obj.session
        assert sess is not None and sess.has_ticket, "no session ticket from the back end"
        return sess
    finally:
        h.close()


def tunnel_refused(be, ctx, session):
    """The ticket resumes the TLS, then the back end refuses the terminal: tunnel ERROR 4
    (or the close behind it) and host ERROR 11."""
    h = logged_in(be)
    try:
        t = ResumingTerminal(h, ctx, session)
        refused = False
        try:
            t.handshake()
            # The refusal must come from the registration check, not a refused ticket.
            assert t.obj.session_reused, "the ticket did not resume"
            t.send(0x01, HELLO)
            while True:
                typ, body = t.recv()
                if typ is None:
                    break
                assert typ == 0x8F and bc.tlv_parse(body)[0xDF04] == b"\x04", (typ, body)
                refused = True
        except (ssl.SSLError, EOFError):
            refused = True
        h.sock.settimeout(3)
        for _ in range(8):
            if any(ty == bc.ERROR for ty, _ in t.host_frames):
                break
            try:
                t._pull()  # pylint: disable=protected-access
            except (OSError, EOFError):
                break
        errors = [f for ty, f in t.host_frames if ty == bc.ERROR]
        assert refused and errors and \
            struct.unpack(">H", errors[0][bc.T["error"]])[0] == 11, (refused, t.host_frames)
    finally:
        h.close()


def check_resume(be, fleet):
    ctx = client_ctx(be, fleet)
    s1 = tunnel_ok(be, ctx, None, False)
    s2 = tunnel_ok(be, ctx, s1, True)
    s3 = tunnel_ok(be, ctx, s2, True)
    # Inner tickets live 2 h at most (the key ring's window).
    assert 0 < s3.ticket_lifetime_hint <= 7200, s3.ticket_lifetime_hint
    return s3


def check_outer_inner_apart(be, fleet):
    """The two TLS contexts share the ticket key ring but not their session id context: an
    inner ticket does not resume the outer TLS, nor an outer ticket an inner tunnel."""
    ctx = client_ctx(be, fleet)  # one context: Python binds sessions to it
    inner = tunnel_ok(be, ctx, None, False)
    with socket.create_connection(("127.0.0.1", be.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=inner) as s:
            assert not s.session_reused, "an inner ticket resumed the outer TLS"
            s.settimeout(0.5)
            try:
                s.recv(1)  # reads the outer tickets; the back end says nothing first
            except socket.timeout:
                pass
            outer = s.session
    assert outer is not None and outer.has_ticket, "no outer ticket"
    tunnel_ok(be, ctx, outer, False)  # asserts a full handshake


def check_suspended_refused(be, fleet):
    ctx = client_ctx(be, fleet)
    sess = tunnel_ok(be, ctx, None, False)
    fleet.ctl("terminal", "suspend", SERIAL)
    tunnel_refused(be, ctx, sess)
    fleet.ctl("terminal", "resume", SERIAL)
    sess = tunnel_ok(be, ctx, sess, True)
    fleet.ctl("terminal", "retire", SERIAL)
    tunnel_refused(be, ctx, sess)


def main():
    tmp, kept = tb.work_dir("mpos-backend-resume-")
    fleet = tb.Fleet(tmp)
    be = None
    failed = 0
    try:
        fleet.provision(SERIAL, tb.MERCHANT)
        be = tb.Backend(tmp, fleet)
        checks = [("resume", lambda: check_resume(be, fleet)),
                  ("outer_inner_apart", lambda: check_outer_inner_apart(be, fleet)),
                  ("suspended_refused",
                   lambda: check_suspended_refused(be, fleet))]
        failed += tb.run_checks(checks)
        log = be.stop()
        be = None
        opens = re.findall(r"event=tunnel_open .*serial=%s .*resumed=(\d)" % SERIAL, log)
        refusals = re.findall(r"event=terminal_refused .*serial=%s reason=(\w+) resumed=(\d)"
                              % SERIAL, log)
        try:
            assert "0" in opens and "1" in opens, opens
            assert ("suspended", "1") in refusals and ("retired", "1") in refusals, refusals
            print("ok   log")
        except AssertionError:
            failed += 1
            print("FAIL log")
            traceback.print_exc()
        if failed:
            print(log[-6000:])
    finally:
        status = tb.close_down(be, fleet, tmp, kept, failed)
    return status


if __name__ == "__main__":
    sys.exit(main())
