"""Independent reference model of the payment-crypto schemes behind `mpos-crypto`.

Written from the standards (ANSI X9.24-1-2009, ANSI X9.24-3-2017, ISO 9564-1:2017,
ISO/IEC 9797-1, NIST SP 800-38B, ANSI X9.143 / TR-31, EMV 4.3 Book 2 Annex A1, the UnionPay
POS MAC) and from docs/mpos-crypto.md, without looking at the C code of this repository,
so that it can catch the C code's mistakes. It is used only to generate test vectors
(tests/vectors/gen_independent.py); it is not constant time and it is not hardened.

Only python3-cryptography primitives (block ciphers in ECB/CBC, CMAC) and the standard
library are used. Single DES is TripleDES with the key K|K|K.

`run(argv)` models one `mpos-crypto` invocation: it returns the expected stdout (without
the newline) or raises UsageError (exit 2) / OperationError (exit 1).

Readings chosen where the contract leaves room (each is also noted where it is applied):
  R1 TDES DUKPT with a 3-key (24-byte) BDK: the IPEK is E(BDK, reg) || E(BDK xor mask, reg),
     3-key TDES, with the X9.24-1 mask C0C0C0C000000000 applied to each of the three
     8-byte key parts (the 2-key rule seen as K1|K2|K1). X9.24-1 itself only defines 2-key.
  R2 AES DUKPT `--usage kek`: key usage indicator 0x0002, derived like every other working
     key from the intermediate derivation key of counter FFFFFFFF (all 32 bits walked) with
     derivation data ID || FFFFFFFF. (Confirmed by the published X9.24-3 vector.)
  R3 AES DUKPT working keys are the raw derivation output: 2tdea/3tdea keys get no parity
     adjustment. Algorithm indicators: 2tdea 0, 3tdea 1, aes128 2, aes192 3, aes256 4,
     HMAC is one algorithm indicator, 0005, for every size (X9.24-3-2017 6.3.2 Tables 2
     and 3: the length field carries the HMAC key size); length field in bits.
  R4 AES DUKPT: "longer than the BDK" compares key lengths in bits (2tdea/hmac128 = 128,
     3tdea/hmac192 = 192, hmac256 = 256): an AES-128 BDK refuses 3tdea, aes192, hmac192 ...
  R5 `emv sk`: both methods print the session key with odd parity (the published EMV
     vector has odd parity; the PBOC key is treated the same way).
  R6 `kcv --method cmac`: CMAC over one all-zero block of the cipher's block size
     (8 bytes for TDES, 16 for AES and SM4). (Confirmed for AES by X9.143 8.1.)
  R7 TR-31 wrap: the given optional blocks are kept in order; a PB block filled with ASCII
     '0' characters is appended when needed, of the smallest length that makes the header
     a multiple of the block size (8 for B, 16 for D) and at least 4 characters; the count
     of optional blocks includes it. Header characters 15-16 must be "00".
  R8 TR-31 B/D: the MAC is over header || clear key field and is the CBC IV, so unwrap
     must decrypt before it can verify; nothing is output unless the MAC verifies. KC/KP
     block contents are checked for syntax only.
  R9 PIN decrypt: format 1 fill nibbles may be any value 0-F (the PAN is not needed);
     the random second half of the format 4 PIN field is not checked.
"""

import hashlib
import hmac as _hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC


class UsageError(Exception):
    """exit 2"""


class OperationError(Exception):
    """exit 1"""


# ---------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------

BLOCK = {"aes": 16, "tdes": 8, "sm4": 16}


def _alg(name, key):
    if name == "aes":
        if len(key) not in (16, 24, 32):
            raise UsageError("bad AES key length")
        return algorithms.AES(key)
    if name == "tdes":
        if len(key) == 8:
            key = key * 3  # single DES
        elif len(key) == 16:
            key = key + key[:8]
        elif len(key) != 24:
            raise UsageError("bad TDES key length")
        return algorithms.TripleDES(key)
    if name == "sm4":
        if len(key) != 16:
            raise UsageError("bad SM4 key length")
        return algorithms.SM4(key)
    raise UsageError("unknown cipher")


def ecb_enc(alg, key, data):
    assert len(data) % BLOCK[alg] == 0
    e = Cipher(_alg(alg, key), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def ecb_dec(alg, key, data):
    assert len(data) % BLOCK[alg] == 0
    d = Cipher(_alg(alg, key), modes.ECB()).decryptor()
    return d.update(data) + d.finalize()


def cbc_enc(alg, key, iv, data):
    assert len(data) % BLOCK[alg] == 0
    e = Cipher(_alg(alg, key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def cbc_dec(alg, key, iv, data):
    assert len(data) % BLOCK[alg] == 0
    d = Cipher(_alg(alg, key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def cmac(alg, key, data):
    c = CMAC(_alg(alg, key))
    c.update(data)
    return c.finalize()


def des_enc(key8, block):
    return ecb_enc("tdes", key8, block)


def des_dec(key8, block):
    return ecb_dec("tdes", key8, block)


def xor(a, b):
    assert len(a) == len(b)
    return bytes(x ^ y for x, y in zip(a, b))


def odd_parity(key):
    out = bytearray()
    for b in key:
        hi = b & 0xFE
        out.append(hi | (0 if bin(hi).count("1") % 2 else 1))
    return bytes(out)


def H(b):
    return b.hex().upper()


# ---------------------------------------------------------------------------------------
# TDES DUKPT, ANSI X9.24-1-2009
# ---------------------------------------------------------------------------------------

_TDES_MASK = bytes.fromhex("C0C0C0C000000000")
TDES_VARIANTS = {
    "pin": bytes.fromhex("00000000000000FF00000000000000FF"),
    "mac-req": bytes.fromhex("000000000000FF00000000000000FF00"),
    "mac-resp": bytes.fromhex("00000000FF00000000000000FF000000"),
    "data-req": bytes.fromhex("0000000000FF00000000000000FF0000"),
    "data-resp": bytes.fromhex("000000FF00000000000000FF00000000"),
}


def tdes_dukpt_ipek(bdk, ksn):
    """X9.24-1-2009 A.6: IPEK from BDK and the initial KSN (21 counter bits cleared)."""
    if len(ksn) != 10 or len(bdk) not in (16, 24):
        raise UsageError("bad length")
    reg = ksn[:7] + bytes([ksn[7] & 0xE0])  # leftmost 8 bytes, counter cleared
    # R1: the mask goes on every 8-byte part of the BDK (2 or 3 parts).
    masked = xor(bdk, _TDES_MASK * (len(bdk) // 8))
    return ecb_enc("tdes", bdk, reg) + ecb_enc("tdes", masked, reg)


def _nrkgp(key, reg8):
    """X9.24-1-2009 A.2 non-reversible key generation process (double-length key)."""
    kl, kr = key[:8], key[8:]
    right = xor(des_enc(kl, xor(reg8, kr)), kr)
    m = xor(key, _TDES_MASK + _TDES_MASK)
    ml, mr = m[:8], m[8:]
    left = xor(des_enc(ml, xor(reg8, mr)), mr)
    return left + right


def tdes_dukpt_counter(ksn):
    return int.from_bytes(ksn[7:10], "big") & 0x1FFFFF


def tdes_dukpt_key(bdk, ksn):
    """Transaction (future) key for the KSN's counter, host side."""
    counter = tdes_dukpt_counter(ksn)
    key = tdes_dukpt_ipek(bdk, ksn)
    reg = int.from_bytes(ksn[2:10], "big") & ~0x1FFFFF  # rightmost 64 bits, counter cleared
    bit = 0x100000
    while bit:
        if counter & bit:
            reg |= bit
            key = _nrkgp(key, reg.to_bytes(8, "big"))
        bit >>= 1
    return key


def tdes_dukpt_working(key, usage):
    v = xor(key, TDES_VARIANTS[usage])
    if usage in ("data-req", "data-resp"):
        # one-way function: each half encrypted under the variant key itself
        v = ecb_enc("tdes", v, v[:8]) + ecb_enc("tdes", v, v[8:])
    return v


# ---------------------------------------------------------------------------------------
# AES DUKPT, ANSI X9.24-3-2017
# ---------------------------------------------------------------------------------------

# key type -> (algorithm indicator, length in bits)
AES_DUKPT_KEY_TYPES = {
    "2tdea": (0, 128),
    "3tdea": (1, 192),
    "aes128": (2, 128),
    "aes192": (3, 192),
    "aes256": (4, 256),
    "hmac128": (5, 128),
    "hmac192": (5, 192),
    "hmac256": (5, 256),
}
AES_DUKPT_USAGES = {
    "kek": 0x0002,  # R2
    "pin": 0x1000,
    "mac-gen": 0x2000,
    "mac-verify": 0x2001,
    "mac-both": 0x2002,
    "data-enc": 0x3000,
    "data-dec": 0x3001,
    "data-both": 0x3002,
}
_USAGE_DERIVATION = 0x8000
_USAGE_INITIAL_KEY = 0x8001


def _aes_type_of(key):
    return {16: "aes128", 24: "aes192", 32: "aes256"}[len(key)]


def _aes_dukpt_derive(dkey, usage, key_type, data8):
    """X9.24-3-2017 6.3: derivation data = version 01, block counter, usage, algorithm,
    length in bits, 8 bytes of data; AES-ECB under the derivation key, block by block."""
    alg, bits = AES_DUKPT_KEY_TYPES[key_type]
    out = b""
    i = 1
    while len(out) * 8 < bits:
        dd = (bytes([0x01, i]) + usage.to_bytes(2, "big") + alg.to_bytes(2, "big")
              + bits.to_bytes(2, "big") + data8)
        out += ecb_enc("aes", dkey, dd)
        i += 1
    return out[: bits // 8]


def aes_dukpt_ik(bdk, ksn):
    if len(bdk) not in (16, 24, 32) or len(ksn) != 12:
        raise UsageError("bad length")
    return _aes_dukpt_derive(bdk, _USAGE_INITIAL_KEY, _aes_type_of(bdk), ksn[:8])


def aes_dukpt_intermediate(bdk, ksn):
    """Host side: the intermediate derivation key whose working counter equals the KSN's."""
    key = aes_dukpt_ik(bdk, ksn)
    ktype = _aes_type_of(bdk)
    counter = int.from_bytes(ksn[8:12], "big")
    work = 0
    mask = 0x80000000
    while mask:
        if counter & mask:
            work |= mask
            key = _aes_dukpt_derive(key, _USAGE_DERIVATION, ktype, ksn[4:8] + work.to_bytes(4, "big"))
        mask >>= 1
    return key


def aes_dukpt_working(bdk, ksn, usage, key_type):
    if AES_DUKPT_KEY_TYPES[key_type][1] > len(bdk) * 8:  # R4
        raise UsageError("working key longer than the BDK")
    dkey = aes_dukpt_intermediate(bdk, ksn)
    return _aes_dukpt_derive(dkey, AES_DUKPT_USAGES[usage], key_type, ksn[4:12])


# ---------------------------------------------------------------------------------------
# PIN blocks, ISO 9564-1
# ---------------------------------------------------------------------------------------


def _check_pin_pan(pin, pan):
    if not (pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 12):
        raise UsageError("bad PIN")
    if pan is not None and not (pan.isdigit() and pan.isascii() and 12 <= len(pan) <= 19):
        raise UsageError("bad PAN")


def _pan_field_8(pan):
    digits = pan[:-1][-12:].rjust(12, "0")  # rightmost 12 excluding the check digit
    return bytes.fromhex("0000" + digits)


def _pan_field_16(pan):
    m = len(pan) - 12 if len(pan) > 12 else 0
    s = "%X" % m + pan.rjust(12, "0")
    return bytes.fromhex(s.ljust(32, "0"))


def pin_encrypt(fmt, pin, pan, key, cipher, fill):
    n = len(pin)
    if fmt in (0, 1, 3):
        if fmt == 0:
            field = "0%X%s" % (n, pin) + "F" * (14 - n)
        else:
            field = "%d%X%s%s" % (fmt, n, pin, fill)
        assert len(field) == 16
        clear = bytes.fromhex(field)
        if fmt != 1:
            clear = xor(clear, _pan_field_8(pan))
        return ecb_enc("tdes", key, clear)
    # format 4 (ISO 9564-1:2017 9.4)
    pin_field = bytes.fromhex(("4%X%s" % (n, pin)).ljust(16, "A")) + fill
    i1 = ecb_enc(cipher, key, pin_field)
    return ecb_enc(cipher, key, xor(i1, _pan_field_16(pan)))


def pin_decrypt(fmt, key, block, pan, cipher):
    bad = OperationError("PIN block does not decode")
    if fmt in (0, 1, 3):
        clear = ecb_dec("tdes", key, block)
        if fmt != 1:
            clear = xor(clear, _pan_field_8(pan))
        s = H(clear)
    else:
        i2 = ecb_dec(cipher, key, block)
        s = H(ecb_dec(cipher, key, xor(i2, _pan_field_16(pan))))[:16]
    if s[0] != str(fmt):
        raise bad
    n = int(s[1], 16)
    if not 4 <= n <= 12:
        raise bad
    pin, rest = s[2:2 + n], s[2 + n:16]
    if not all(c in "0123456789" for c in pin):
        raise bad
    allowed = {0: "F", 1: "0123456789ABCDEF", 3: "ABCDEF", 4: "A"}[fmt]
    if not all(c in allowed for c in rest):
        raise bad
    return pin


# ---------------------------------------------------------------------------------------
# MACs
# ---------------------------------------------------------------------------------------


def pad_iso9797(data, method, bs=8):
    if method == 1:
        if len(data) == 0:
            return bytes(bs)
        return data + bytes(-len(data) % bs)
    data = data + b"\x80"
    return data + bytes(-len(data) % bs)


def mac_alg1(key, data, pad):
    """ISO/IEC 9797-1 MAC algorithm 1: CBC-MAC under the (T)DES key as given."""
    return cbc_enc("tdes", key, bytes(8), pad_iso9797(data, pad))[-8:]


def mac_alg3(key, data, pad):
    """ISO/IEC 9797-1 MAC algorithm 3 (X9.19 retail): DES CBC-MAC under K1, then D(K2), E(K1)."""
    k1, k2 = key[:8], key[8:16]
    h = cbc_enc("tdes", k1, bytes(8), pad_iso9797(data, pad))[-8:]
    return des_enc(k1, des_dec(k2, h))


def mac_cup(alg, key, data):
    """UnionPay POS "ECB" MAC as the contract describes it."""
    bs = BLOCK[alg]
    data = data + bytes(-len(data) % bs)
    r = bytes(bs)
    for i in range(0, len(data), bs):
        r = xor(r, data[i:i + bs])
    h = H(r).encode("ascii")
    x = xor(ecb_enc(alg, key, h[:bs]), h[bs:])
    return ecb_enc(alg, key, x)


def kcv(alg, key, method):
    if method == "legacy":
        return ecb_enc(alg, key, bytes(BLOCK[alg]))
    return cmac(alg, key, bytes(BLOCK[alg]))  # R6


# ---------------------------------------------------------------------------------------
# TR-31 / ANSI X9.143, versions B and D
# ---------------------------------------------------------------------------------------

_TR31_USAGES = {"B0", "B1", "B2", "C0", "D0", "D1", "D2", "E0", "E1", "E2", "E3", "E4", "E5",
                "E6", "I0", "K0", "K1", "K2", "K3", "M0", "M1", "M2", "M3", "M4", "M5", "M6",
                "M7", "M8", "P0", "P1", "S0", "S1", "S2", "V0", "V1", "V2", "V3", "V4"}
_TR31_ALGS = {"A", "D", "E", "H", "R", "S", "T"}
_TR31_MODES = {"B", "C", "D", "E", "G", "N", "S", "T", "V", "X", "Y"}
_TR31_EXPORT = {"E", "N", "S"}
_PRINTABLE = set(chr(c) for c in range(0x20, 0x7F))


def _tr31_params(version, kbpk):
    if version == "B":
        if len(kbpk) not in (16, 24):
            raise UsageError("KBPK length")
        return "tdes", 8, 8, {16: (0, 128), 24: (1, 192)}[len(kbpk)]
    if version == "D":
        if len(kbpk) not in (16, 24, 32):
            raise UsageError("KBPK length")
        return "aes", 16, 16, {16: (2, 128), 24: (3, 192), 32: (4, 256)}[len(kbpk)]
    raise UsageError("unsupported key block version")


def _tr31_keys(version, kbpk):
    """X9.143 key derivation (CMAC as PRF): KBEK (usage 0000) and KBAK (usage 0001)."""
    alg, _, _, (algind, bits) = _tr31_params(version, kbpk)
    keys = []
    for usage in (0x0000, 0x0001):
        out = b""
        i = 1
        while len(out) < len(kbpk):
            dd = (bytes([i]) + usage.to_bytes(2, "big") + b"\x00" + algind.to_bytes(2, "big")
                  + bits.to_bytes(2, "big"))
            out += cmac(alg, kbpk, dd)
            i += 1
        keys.append(out[: len(kbpk)])
    return keys


def _tr31_parse_opt_blocks(text, count, err):
    """Returns the list of (id, whole block text) and the number of characters used."""
    pos = 0
    blocks = []
    for _ in range(count):
        if len(text) - pos < 4:
            raise err
        bid = text[pos:pos + 2]
        if not all(c.isascii() and c.isalnum() for c in bid):
            raise err
        lf = text[pos + 2:pos + 4]
        if not all(c in "0123456789ABCDEF" for c in lf):
            raise err
        ln = int(lf, 16)
        if ln == 0:  # extended length: 2 hex digits giving the size of the length, then it
            if len(text) - pos < 6 or not all(c in "0123456789ABCDEF" for c in text[pos + 4:pos + 6]):
                raise err
            ll = int(text[pos + 4:pos + 6], 16)
            lv = text[pos + 6:pos + 6 + ll]
            if ll == 0 or len(lv) != ll or not all(c in "0123456789ABCDEF" for c in lv):
                raise err
            ln = int(lv, 16)
            if ln < 6 + ll:
                raise err
        elif ln < 4:
            raise err
        if pos + ln > len(text):
            raise err
        data = text[pos:pos + ln]
        if not all(c in _PRINTABLE for c in data):
            raise err
        blocks.append((bid, data))
        pos += ln
    return blocks, pos


def _tr31_check_fixed(h, err):
    if len(h) < 16:
        raise err
    if (h[5:7] not in _TR31_USAGES or h[7] not in _TR31_ALGS or h[8] not in _TR31_MODES
            or not (h[9:11].isascii() and h[9:11].isalnum()) or h[11] not in _TR31_EXPORT
            or not (h[12:14].isascii() and h[12:14].isdigit()) or h[14:16] != "00"):
        raise err


def tr31_wrap(kbpk, key, header, padding):
    version = header[:1]
    alg, bs, maclen, _ = _tr31_params(version, kbpk)
    err = UsageError("bad header")
    _tr31_check_fixed(header, err)
    count = int(header[12:14])
    blocks, used = _tr31_parse_opt_blocks(header[16:], count, err)
    if 16 + used != len(header):
        raise err
    opt = "".join(b for _, b in blocks)
    hlen = 16 + len(opt)
    if hlen % bs:  # R7: PB block of '0' characters
        p = -hlen % bs
        if p < 4:
            p += bs
        opt += "PB%02X" % p + "0" * (p - 4)
        count += 1
    keydata = (len(key) * 8).to_bytes(2, "big") + key + padding
    if len(keydata) % bs:
        raise UsageError("padding does not fill the last block")
    total = 16 + len(opt) + 2 * len(keydata) + 2 * maclen
    hdr = version + "%04d" % total + header[5:12] + "%02d" % count + header[14:16] + opt
    kbek, kbak = _tr31_keys(version, kbpk)
    mac = cmac(alg, kbak, hdr.encode("ascii") + keydata)[:maclen]
    enc = cbc_enc(alg, kbek, mac[:bs], keydata)
    return hdr + H(enc) + H(mac)


def tr31_unwrap(kbpk, block):
    err = OperationError("key block rejected")
    version = block[:1]
    if version not in ("B", "D"):
        raise err
    try:
        alg, bs, maclen, _ = _tr31_params(version, kbpk)
    except UsageError:
        raise err
    _tr31_check_fixed(block, err)
    if not block[1:5].isdigit() or int(block[1:5]) != len(block):
        raise err
    blocks, used = _tr31_parse_opt_blocks(block[16:], int(block[12:14]), err)
    ids = [b for b, _ in blocks]
    if "PB" in ids[:-1]:
        raise err
    hlen = 16 + used
    if hlen % bs:
        raise err
    hdr = block[:hlen]
    rest = block[hlen:]
    if (len(rest) % 2 or not all(c in "0123456789ABCDEF" for c in rest)
            or len(rest) // 2 < maclen + bs or (len(rest) // 2 - maclen) % bs):
        raise err
    raw = bytes.fromhex(rest)
    enc, mac = raw[:-maclen], raw[-maclen:]
    kbek, kbak = _tr31_keys(version, kbpk)
    keydata = cbc_dec(alg, kbek, mac[:bs], enc)  # R8
    if not _hmac.compare_digest(cmac(alg, kbak, hdr.encode("ascii") + keydata)[:maclen], mac):
        raise err
    bits = int.from_bytes(keydata[:2], "big")
    if bits == 0 or bits % 8 or bits // 8 > len(keydata) - 2:
        raise err
    return keydata[2:2 + bits // 8]


# ---------------------------------------------------------------------------------------
# EMV 4.3 Book 2 Annex A1, PBOC
# ---------------------------------------------------------------------------------------


def emv_mk(imk, pan, psn, option):
    x = pan + psn
    if option == "b" and len(pan) > 16:
        if len(x) % 2:
            x = "0" + x
        d = H(hashlib.sha1(bytes.fromhex(x)).digest())
        y = "".join(c for c in d if c.isdigit())
        if len(y) < 16:
            y += "".join(str(int(c, 16) - 10) for c in d if not c.isdigit())
        y = y[:16]
    else:
        y = x[-16:].rjust(16, "0")
    yb = bytes.fromhex(y)
    return odd_parity(ecb_enc("tdes", imk, yb) + ecb_enc("tdes", imk, xor(yb, b"\xff" * 8)))


def emv_sk(mk, atc, method):
    if method == "emv":
        k = ecb_enc("tdes", mk, atc + b"\xf0" + bytes(5)) + ecb_enc("tdes", mk, atc + b"\x0f" + bytes(5))
    else:
        k = (ecb_enc("tdes", mk, bytes(6) + atc)
             + ecb_enc("tdes", mk, bytes(6) + xor(atc, b"\xff\xff")))
    return odd_parity(k)  # R5


def emv_ac(sk, data):
    return mac_alg3(sk, data, 2)


def emv_arpc1(sk, arqc, arc):
    return ecb_enc("tdes", sk, xor(arqc, arc + bytes(6)))


def emv_arpc2(sk, arqc, csu, pad_data):
    return mac_alg3(sk, arqc + csu + pad_data, 2)[:4]


# ---------------------------------------------------------------------------------------
# the command line model
# ---------------------------------------------------------------------------------------


def _hex(s, name):
    if len(s) % 2 or any(c not in "0123456789abcdefABCDEF" for c in s):
        raise UsageError("bad hex in " + name)
    return bytes.fromhex(s)


def _parse(argv, valued, flags=()):
    opts = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a[2:] if a.startswith("--") else None
        if name in flags:
            if name in opts:
                raise UsageError("option given twice")
            opts[name] = True
            i += 1
            continue
        if name not in valued or i + 1 >= len(argv):
            raise UsageError("unknown option or missing value: " + a)
        if name in opts:
            raise UsageError("option given twice")
        opts[name] = argv[i + 1]
        i += 2
    return opts


def _need(opts, *names):
    for n in names:
        if n not in opts:
            raise UsageError("missing --" + n)


def _len_opt(opts, lo, hi, default):
    if "len" not in opts:
        return default
    v = opts["len"]
    if not v.isdigit() or not lo <= int(v) <= hi:
        raise UsageError("bad --len")
    return int(v)


def _cmd_dukpt(argv):
    if not argv or argv[0] not in ("ik", "derive"):
        raise UsageError("dukpt ik|derive")
    sub = argv[0]
    o = _parse(argv[1:], ("scheme", "bdk", "ksn") + (("usage", "key-type") if sub == "derive" else ()))
    _need(o, "scheme", "bdk", "ksn")
    bdk, ksn = _hex(o["bdk"], "bdk"), _hex(o["ksn"], "ksn")
    if o["scheme"] == "tdes":
        if len(bdk) not in (16, 24) or len(ksn) != 10:
            raise UsageError("length")
        if sub == "ik":
            return H(tdes_dukpt_ipek(bdk, ksn))
        if "key-type" in o:
            raise UsageError("--key-type is not for tdes")
        c = tdes_dukpt_counter(ksn)
        if c == 0 or bin(c).count("1") > 10:
            raise UsageError("counter")
        key = tdes_dukpt_key(bdk, ksn)
        if "usage" in o:
            if o["usage"] not in TDES_VARIANTS:
                raise UsageError("usage")
            key = tdes_dukpt_working(key, o["usage"])
        return H(key)
    if o["scheme"] == "aes":
        if len(bdk) not in (16, 24, 32) or len(ksn) != 12:
            raise UsageError("length")
        if sub == "ik":
            return H(aes_dukpt_ik(bdk, ksn))
        c = int.from_bytes(ksn[8:], "big")
        usage = o.get("usage")
        if c == 0:
            raise UsageError("counter 0")
        if usage == "kek":
            if c != 0xFFFFFFFF:
                raise UsageError("kek needs counter FFFFFFFF")
        elif bin(c).count("1") > 16:
            raise UsageError("counter")
        if usage is None:
            if "key-type" in o:
                raise UsageError("--key-type needs --usage")
            return H(aes_dukpt_intermediate(bdk, ksn))
        if usage not in AES_DUKPT_USAGES:
            raise UsageError("usage")
        kt = o.get("key-type", _aes_type_of(bdk))
        if kt not in AES_DUKPT_KEY_TYPES:
            raise UsageError("key type")
        return H(aes_dukpt_working(bdk, ksn, usage, kt))
    raise UsageError("scheme")


def _cmd_pin(argv):
    if not argv or argv[0] not in ("encrypt", "decrypt"):
        raise UsageError("pin encrypt|decrypt")
    sub = argv[0]
    if sub == "encrypt":
        o = _parse(argv[1:], ("format", "pin", "pan", "key", "cipher", "fill"))
        _need(o, "format", "pin", "key")
    else:
        o = _parse(argv[1:], ("format", "key", "block", "pan", "cipher"))
        _need(o, "format", "key", "block")
    if o["format"] not in ("0", "1", "3", "4"):
        raise UsageError("format")
    fmt = int(o["format"])
    if fmt != 1:
        _need(o, "pan")
    pan = o.get("pan") if fmt != 1 else None
    if fmt == 1 and "pan" in o:
        _check_pin_pan("0000", o["pan"])  # optional, ignored, but still a PAN
    cipher = o.get("cipher", "aes" if fmt == 4 else "tdes")
    key = _hex(o["key"], "key")
    if fmt == 4:
        if cipher not in ("aes", "sm4") or len(key) not in ((16, 24, 32) if cipher == "aes" else (16,)):
            raise UsageError("cipher/key")
    elif cipher != "tdes" or len(key) not in (16, 24):
        raise UsageError("cipher/key")
    if sub == "encrypt":
        pin = o["pin"]
        _check_pin_pan(pin, pan)
        n = len(pin)
        if fmt == 0:
            if "fill" in o:
                raise UsageError("--fill with format 0")
            fill = None
        elif "fill" not in o:
            raise UsageError("this model needs --fill (no randomness)")
        elif fmt == 4:
            fill = _hex(o["fill"], "fill")
            if len(fill) != 8:
                raise UsageError("fill length")
        else:
            fill = o["fill"].upper()
            ok = "ABCDEF" if fmt == 3 else "0123456789ABCDEF"
            if len(fill) != 14 - n or any(c not in ok for c in fill):
                raise UsageError("fill")
        return H(pin_encrypt(fmt, pin, pan, key, cipher, fill))
    _check_pin_pan("0000", pan)
    block = _hex(o["block"], "block")
    if len(block) != BLOCK[cipher]:
        raise UsageError("block length")
    return pin_decrypt(fmt, key, block, pan, cipher)


def _cmd_mac(argv):
    o = _parse(argv, ("alg", "key", "data", "len", "pad"))
    _need(o, "alg", "key", "data")
    alg = o["alg"]
    key, data = _hex(o["key"], "key"), _hex(o["data"], "data")
    if "pad" in o and alg not in ("retail", "iso9797-1-alg1"):
        raise UsageError("--pad not allowed")
    pad = o.get("pad", "1")
    if pad not in ("1", "2"):
        raise UsageError("pad")
    pad = int(pad)
    if alg == "retail":
        if len(key) != 16:
            raise UsageError("key")
        m = mac_alg3(key, data, pad)
        n = _len_opt(o, 1, 8, 8)
    elif alg == "iso9797-1-alg1":
        if len(key) not in (8, 16, 24):
            raise UsageError("key")
        m = mac_alg1(key, data, pad)
        n = _len_opt(o, 1, 8, 8)
    elif alg in ("cmac-aes", "cmac-tdes", "cmac-sm4"):
        c = alg[5:]
        if len(key) not in {"aes": (16, 24, 32), "tdes": (16, 24), "sm4": (16,)}[c]:
            raise UsageError("key")
        m = cmac(c, key, data)
        n = _len_opt(o, 4, BLOCK[c], BLOCK[c])
    elif alg == "cup-ecb":
        if len(key) not in (8, 16):
            raise UsageError("key")
        m = mac_cup("tdes", key, data)
        n = _len_opt(o, 1, 8, 8)
    elif alg == "cup-ecb-sm4":
        if len(key) != 16:
            raise UsageError("key")
        m = mac_cup("sm4", key, data)
        n = _len_opt(o, 1, 16, 16)
    else:
        raise UsageError("alg")
    return H(m[:n])


def _cmd_kcv(argv):
    o = _parse(argv, ("key", "cipher", "method", "len"))
    _need(o, "key", "cipher")
    c = o["cipher"]
    if c not in BLOCK:
        raise UsageError("cipher")
    key = _hex(o["key"], "key")
    if len(key) not in {"aes": (16, 24, 32), "tdes": (8, 16, 24), "sm4": (16,)}[c]:
        raise UsageError("key")
    method = o.get("method", "cmac" if c == "aes" else "legacy")
    if method not in ("legacy", "cmac"):
        raise UsageError("method")
    n = _len_opt(o, 1, BLOCK[c], 3 if method == "legacy" else 5)
    return H(kcv(c, key, method)[:n])


def _cmd_tr31(argv):
    if not argv or argv[0] not in ("wrap", "unwrap"):
        raise UsageError("tr31 wrap|unwrap")
    if argv[0] == "wrap":
        o = _parse(argv[1:], ("kbpk", "key", "header", "padding"))
        _need(o, "kbpk", "key", "header")
        if "padding" not in o:
            raise UsageError("this model needs --padding (no randomness)")
        return tr31_wrap(_hex(o["kbpk"], "kbpk"), _hex(o["key"], "key"), o["header"],
                         _hex(o["padding"], "padding"))
    o = _parse(argv[1:], ("kbpk", "block"))
    _need(o, "kbpk", "block")
    return H(tr31_unwrap(_hex(o["kbpk"], "kbpk"), o["block"]))


def _cmd_emv(argv):
    if not argv or argv[0] not in ("mk", "sk", "ac", "arpc"):
        raise UsageError("emv mk|sk|ac|arpc")
    sub, rest = argv[0], argv[1:]
    if sub == "mk":
        o = _parse(rest, ("imk", "pan", "psn", "option"))
        _need(o, "imk", "pan", "psn")
        imk = _hex(o["imk"], "imk")
        pan, psn = o["pan"], o["psn"]
        if len(imk) not in (16, 24) or not (pan.isdigit() and 12 <= len(pan) <= 19):
            raise UsageError("imk/pan")
        if len(psn) != 2 or not psn.isdigit():
            raise UsageError("psn")
        opt = o.get("option", "a")
        if opt not in ("a", "b"):
            raise UsageError("option")
        return H(emv_mk(imk, pan, psn, opt))
    if sub == "sk":
        o = _parse(rest, ("mk", "atc", "method"))
        _need(o, "mk", "atc")
        mk, atc = _hex(o["mk"], "mk"), _hex(o["atc"], "atc")
        if len(mk) != 16 or len(atc) != 2:
            raise UsageError("length")
        m = o.get("method", "emv")
        if m not in ("emv", "pboc"):
            raise UsageError("method")
        return H(emv_sk(mk, atc, m))
    if sub == "ac":
        o = _parse(rest, ("sk", "data"))
        _need(o, "sk", "data")
        sk = _hex(o["sk"], "sk")
        if len(sk) != 16:
            raise UsageError("sk")
        return H(emv_ac(sk, _hex(o["data"], "data")))
    o = _parse(rest, ("sk", "arqc", "arc", "csu", "pad-data"))
    _need(o, "sk", "arqc")
    sk, arqc = _hex(o["sk"], "sk"), _hex(o["arqc"], "arqc")
    if len(sk) != 16 or len(arqc) != 8:
        raise UsageError("length")
    if ("arc" in o) == ("csu" in o) or ("pad-data" in o and "csu" not in o):
        raise UsageError("--arc or --csu")
    if "arc" in o:
        arc = _hex(o["arc"], "arc")
        if len(arc) != 2:
            raise UsageError("arc")
        return H(emv_arpc1(sk, arqc, arc))
    csu = _hex(o["csu"], "csu")
    pd = _hex(o.get("pad-data", ""), "pad-data")
    if len(csu) != 4 or len(pd) > 8:
        raise UsageError("csu/pad-data")
    return H(emv_arpc2(sk, arqc, csu, pd))


def _cmd_cipher(argv):
    o = _parse(argv, ("alg", "key", "data", "iv"), ("decrypt",))
    _need(o, "alg", "key", "data")
    try:
        c, mode = o["alg"].split("-")
    except ValueError:
        raise UsageError("alg")
    if c not in BLOCK or mode not in ("ecb", "cbc"):
        raise UsageError("alg")
    key, data = _hex(o["key"], "key"), _hex(o["data"], "data")
    if len(key) not in {"aes": (16, 24, 32), "tdes": (8, 16, 24), "sm4": (16,)}[c]:
        raise UsageError("key")
    bs = BLOCK[c]
    if len(data) % bs:
        raise UsageError("data not whole blocks")
    if mode == "ecb":
        if "iv" in o:
            raise UsageError("--iv with ECB")
        f = ecb_dec if o.get("decrypt") else ecb_enc
        return H(f(c, key, data))
    iv = _hex(o.get("iv", "00" * bs), "iv")
    if len(iv) != bs:
        raise UsageError("iv")
    f = cbc_dec if o.get("decrypt") else cbc_enc
    return H(f(c, key, iv, data))


def _cmd_mkwk(argv):
    if not argv or argv[0] != "unwrap":
        raise UsageError("mkwk unwrap")
    o = _parse(argv[1:], ("tmk", "key", "kcv", "cipher"))
    _need(o, "tmk", "key", "kcv")
    c = o.get("cipher", "tdes")
    if c not in ("tdes", "sm4"):
        raise UsageError("cipher")
    tmk, key, kv = _hex(o["tmk"], "tmk"), _hex(o["key"], "key"), _hex(o["kcv"], "kcv")
    if c == "tdes" and (len(tmk) not in (16, 24) or len(key) not in (8, 16, 24)):
        raise UsageError("length")
    if c == "sm4" and (len(tmk) != 16 or len(key) != 16):
        raise UsageError("length")
    if not 4 <= len(kv) <= 8:
        raise UsageError("kcv length")
    clear = ecb_dec(c, tmk, key)
    if not _hmac.compare_digest(kcv(c, clear, "legacy")[:len(kv)], kv):
        raise OperationError("check value mismatch")
    return H(clear)


COMMANDS = {"dukpt": _cmd_dukpt, "pin": _cmd_pin, "mac": _cmd_mac, "kcv": _cmd_kcv,
            "tr31": _cmd_tr31, "emv": _cmd_emv, "cipher": _cmd_cipher, "mkwk": _cmd_mkwk}


def split_args(text):
    """The argument column of a vector file: split on spaces; '' stands for an empty argument."""
    return ["" if a == "''" else a for a in text.split(" ") if a != ""]


def run(argv):
    """Expected stdout of `mpos-crypto ARGV...` (without the newline); ARGV may be a string
    in the vector-file form (see split_args)."""
    if isinstance(argv, str):
        argv = split_args(argv)
    if not argv or argv[0] not in COMMANDS:
        raise UsageError("unknown subcommand")
    return COMMANDS[argv[0]](list(argv[1:]))
