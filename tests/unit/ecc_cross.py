#!/usr/bin/env python3
"""Independent side of tests/unit/test_ecc.c: checks the C facade's P-256, ECDSA and HKDF
(mpos/ecc.h) against the Python `cryptography` package (OpenSSL-backed, but a separate code
path: its own key encoding, DER signatures and HKDF driver).

Input file, one case per line, hex fields separated by spaces ("-" for an empty one):
    priv_c pub_c msg sig_c salt info
Output, one line per case:
    pub_py z sig_py okm
where pub_py is a fresh key pair's public point, z = ECDH(py key, pub_c), sig_py an ECDSA
signature of msg by the py key (raw r || s) and okm = HKDF-SHA256(salt, z, info, 42).
The script exits 1 if pub_c is not priv_c * G or sig_c does not verify, 77 when the package is
missing (the C test skips)."""
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    sys.exit(77)


def point(pub):
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)


def field(text):
    return b"" if text == "-" else bytes.fromhex(text)


def raw(sig_der):
    r, s = utils.decode_dss_signature(sig_der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def main():
    with open(sys.argv[1], encoding="ascii") as f:
        lines = [l.split() for l in f if l.strip()]
    for priv_c, pub_c, msg, sig_c, salt, info in (map(field, l) for l in lines):
        key_c = ec.derive_private_key(int.from_bytes(priv_c, "big"), ec.SECP256R1())
        if key_c.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) != pub_c:
            print("public key of the C scalar differs", file=sys.stderr)
            sys.exit(1)
        der = utils.encode_dss_signature(int.from_bytes(sig_c[:32], "big"),
                                         int.from_bytes(sig_c[32:], "big"))
        try:
            point(pub_c).verify(der, msg, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            print("C signature does not verify", file=sys.stderr)
            sys.exit(1)
        mine = ec.generate_private_key(ec.SECP256R1())
        pub_py = mine.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        z = mine.exchange(ec.ECDH(), point(pub_c))
        sig_py = raw(mine.sign(msg, ec.ECDSA(hashes.SHA256())))
        okm = HKDF(hashes.SHA256(), 42, salt or None, info).derive(z)
        print(pub_py.hex(), z.hex(), sig_py.hex(), okm.hex())


if __name__ == "__main__":
    main()
