# Signed config blobs (card_schema/signed.py) on both interpreters.
import binascii

from card_schema import signed

KEY = binascii.unhexlify("000102030405060708090a0b0c0d0e0f")


def test_roundtrip():
    blob = signed.seal(KEY, signed.KIND_FARES, 7, b"fares")
    kind, ver, payload = signed.verify(KEY, blob)
    return [kind, ver, payload, binascii.hexlify(blob).decode()]


def _refused(blob, key=KEY):
    try:
        signed.verify(key, blob)
    except ValueError as e:
        return str(e)
    return "accepted"


def test_forgeries_are_refused():
    blob = signed.seal(KEY, signed.KIND_DENY, 3, b"deny-list")
    flipped = bytearray(blob)
    flipped[15] ^= 1
    other = bytes(16)
    return [_refused(bytes(flipped)), _refused(blob, other), _refused(blob[:-1]), _refused(b"x")]


def test_kind_names_and_peek():
    from card_schema import signed_host

    blob = signed.seal(KEY, signed.KIND_DENY_DELTA, 9, b"x")
    bad = []
    for b in (b"TKS", b"XXXX" + blob[4:]):
        try:
            signed_host.peek(b)
        except ValueError as e:
            bad.append(str(e))
    return [
        signed_host.peek(blob),
        signed_host.version_key(signed.KIND_DENY_DELTA),
        signed_host.CLI_NAMES[signed.KIND_DENY_DELTA],
        signed_host.known(0),
        signed_host.known(4),
        bad,
    ]
