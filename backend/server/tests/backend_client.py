"""An independent host-protocol client for mpos-backend's tests (docs/system-design.md 1).

Frames, fields, the envelope, its MAC and the HKDF key schedule are written here from the
design document alone (no code shared with backend/server or lib/hostmsg). TLS is Python's
ssl module; the TLS exporter (RFC 8446 7.5), which the ssl module does not offer, is called
in the same libssl through ctypes on the SSL object of the socket.
"""
import ctypes
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time

LOGIN, RESUME, TUNNEL, TXN_BEGIN, SETTLE, LOGOUT = 1, 2, 3, 4, 5, 6
LOGIN_OK, RESUME_OK, TUNNEL_DOWN, TXN_OK, SETTLE_OK, LOGOUT_OK, TXN_RESULT, ERROR = (
    0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x8F)
T = dict(merchant=1, username=2, password=3, device_id=4, token=5, role=6, expires=7, error=8,
         message=9, data=10, txn_type=11, amount=12, currency=13, reference=14, text=15,
         merchant_id=16, terminal_id=17, masked_pan=18, response_code=19, auth_code=20, rrn=21,
         sequence=22, lat=0x20, lon=0x21, accuracy=0x22, loc_time=0x23, debugger=0x24,
         root=0x25, binary_hash=0x26, counter=0x27, mac=0x3F)

_libssl = ctypes.CDLL("libssl.so.3")
_libssl.SSL_export_keying_material.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
    ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
_libssl.SSL_get_version.argtypes = [ctypes.c_void_p]
_libssl.SSL_get_version.restype = ctypes.c_char_p


def _ssl_pointer(sock):
    """The SSL * of an ssl.SSLSocket: CPython's _ssl object is {PyObject_HEAD; PyObject
    *Socket; SSL *ssl; ...}. Checked against the version the socket reports."""
    obj = sock._sslobj
    ptr = ctypes.c_void_p.from_address(id(obj) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    if _libssl.SSL_get_version(ptr).decode() != sock.version():
        raise RuntimeError("cannot reach the SSL object of this Python")
    return ptr


def exporter(sock, label):
    out = ctypes.create_string_buffer(32)
    if _libssl.SSL_export_keying_material(_ssl_pointer(sock), out, 32, label.encode(),
                                          len(label), b"", 0, 1) != 1:
        raise RuntimeError("exporter failed")
    return out.raw


def hkdf(salt, ikm, info, n=32):
    """RFC 5869 with SHA-256."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:n]


def field(tag, value):
    if isinstance(tag, str):
        tag = T[tag]
    return bytes([tag]) + struct.pack(">H", len(value)) + value


def parse_fields(body):
    out, i = {}, 0
    while i < len(body):
        tag, n = body[i], struct.unpack(">H", body[i + 1:i + 3])[0]
        out[tag] = body[i + 3:i + 3 + n]
        i += 3 + n
    assert i == len(body), "trailing bytes in a frame from the back end"
    return out


class Envelope:
    def __init__(self, device_id=None, binary_hash=None):
        self.device_id = device_id or os.urandom(32)
        self.binary_hash = binary_hash or b"\x11" * 32
        self.lat, self.lon, self.accuracy = 311230000, 1214730000, 20  # Shanghai
        self.debugger, self.root = 0, 0
        self.loc_time = None

    def fields(self, counter, skip=()):
        vals = dict(lat=struct.pack(">i", self.lat), lon=struct.pack(">i", self.lon),
                    accuracy=struct.pack(">I", self.accuracy),
                    loc_time=struct.pack(">Q", self.loc_time or int(time.time())),
                    device_id=self.device_id, debugger=bytes([self.debugger]),
                    root=bytes([self.root]), binary_hash=self.binary_hash,
                    counter=struct.pack(">Q", counter))
        return b"".join(field(k, v) for k, v in vals.items() if k not in skip)


class Host:
    """One host connection: outer TLS to the back end, frames, envelope, counter."""

    def __init__(self, port, ca, env=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(ca)
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.env = env or Envelope()
        self.counter = 0
        self.key = None
        self.token = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def login_key(self):
        return hkdf(None, exporter(self.sock, "EXPORTER-openmpos-login"), b"openmpos login v1")

    def session_key(self, token):
        return hkdf(exporter(self.sock, "EXPORTER-openmpos-session"), token,
                    b"openmpos host envelope v1")

    def send(self, mtype, body=b"", key=None, counter=None, mac=True, skip=(), bad_mac=False):
        if counter is None:
            self.counter += 1
            counter = self.counter
        msg = bytes([mtype]) + body + self.env.fields(counter, skip)
        if mac:
            tag = hmac.new(key or self.key, msg, hashlib.sha256).digest()
            if bad_mac:
                tag = bytes([tag[0] ^ 1]) + tag[1:]
            msg += field("mac", tag)
        self.sock.sendall(struct.pack(">I", len(msg)) + msg)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def recv(self):
        n = struct.unpack(">I", self.recv_exact(4))[0]
        assert 1 <= n <= 65536
        msg = self.recv_exact(n)
        return msg[0], parse_fields(msg[1:])

    def expect(self, mtype):
        t, f = self.recv()
        assert t == mtype, "want 0x%02X, got 0x%02X %r" % (mtype, t, f)
        return f

    def expect_error(self, code):
        t, f = self.recv()
        assert t == ERROR, "want ERROR %d, got 0x%02X %r" % (code, t, f)
        got = struct.unpack(">H", f[T["error"]])[0]
        assert got == code, "want ERROR %d, got %d (%r)" % (code, got, f.get(T["message"]))
        return f

    def login(self, merchant, user, password, expect=LOGIN_OK):
        body = (field("merchant", merchant.encode()) + field("username", user.encode()) +
                field("password", password.encode()))
        self.send(LOGIN, body, key=self.login_key())
        if expect != LOGIN_OK:
            return self.expect_error(expect)
        f = self.expect(LOGIN_OK)
        self.token = f[T["token"]]
        self.key = self.session_key(self.token)
        return f

    def resume(self, token, expect=RESUME_OK):
        self.send(RESUME, field("token", token), key=self.session_key(token))
        if expect != RESUME_OK:
            return self.expect_error(expect)
        f = self.expect(RESUME_OK)
        self.token = token
        self.key = self.session_key(token)
        return f

    def txn_begin(self, txn_type, amount, currency=156, reference=None):
        body = (field("txn_type", bytes([txn_type])) + field("amount", struct.pack(">Q", amount))
                + field("currency", struct.pack(">H", currency)))
        if reference:
            body += field("reference", reference.encode())
        self.send(TXN_BEGIN, body)

    def tunnel(self, data):
        for i in range(0, len(data), 16384):
            self.send(TUNNEL, field("data", data[i:i + 16384]))

    def closed_within(self, seconds):
        """True when the back end closes the connection within the time."""
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError, EOFError):
            return True
        except socket.timeout:
            return False
        except OSError:
            return True


class Terminal:
    """The terminal's inner TLS over a Host's TUNNEL messages (memory BIOs)."""

    def __init__(self, host, backend_ca, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(backend_ca)
        ctx.load_cert_chain(cert, key)
        self.host = host
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_hostname="localhost")
        self.host_frames = []  # other frames seen meanwhile (ERROR, TXN_RESULT)
        self.plain = b""

    def _push(self):
        data = self.outb.read()
        if data:
            self.host.tunnel(data)

    def _pull(self):
        """One frame from the back end: tunnel bytes go to the inner TLS, others are kept."""
        t, f = self.host.recv()
        if t == TUNNEL_DOWN:
            self.inb.write(f[T["data"]])
        else:
            self.host_frames.append((t, f))
        return t

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._push()
                return
            except ssl.SSLWantReadError:
                self._push()
                self._pull()

    def send(self, mtype, body):
        self.obj.write(bytes([mtype]) + struct.pack(">H", len(body)) + body)
        self._push()

    def recv(self):
        """One tunnel message (type, body); raises ssl.SSLError on an alert or EOFError."""
        while True:
            if len(self.plain) >= 3:
                n = struct.unpack(">H", self.plain[1:3])[0]
                if len(self.plain) >= 3 + n:
                    msg, self.plain = self.plain[:3 + n], self.plain[3 + n:]
                    return msg[0], msg[3:]
            try:
                data = self.obj.read(65536)
                if not data:
                    raise EOFError("tunnel closed")  # close_notify
                self.plain += data
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                raise EOFError("tunnel closed")
            if self._pull() == ERROR:
                return None, None


def tlv(tag, value):
    t = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    ln = bytes([n]) if n < 0x80 else (b"\x81" + bytes([n]) if n < 0x100 else
                                      b"\x82" + struct.pack(">H", n))
    return t + ln + value


def tlv_parse(data):
    """Top-level BER-TLV objects of data: {tag: value} (tags of 1 or 2 bytes)."""
    out, i = {}, 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            tag = tag << 8 | data[i]
            i += 1
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        out[tag] = data[i:i + n]
        i += n
    return out
