"""The issuer's signature on a card, host side: the file the card office writes (the layout and
the check: card_schema.issuersig; the RSA key: host_tools.keystore).

    raw = issuersig_host.pack(uid, 70000, kid, lambda d: keystore.issuer_sign(ks, d))
    issuersig.check(keystore.issuer_public(ks), uid, raw)      # 70000
"""

import struct

from card_schema.issuersig import digest

FILE_SIG = 0x05  # the card file (card_schema.citizen_host.FILE_RIGHTS)
SIZE = 264  # HEAD + the RSA-2048 signature
HEAD = 8
FMT = "<BBHI"  # version, key id, reserved, ceiling: the file's first HEAD bytes
VERSION = 1
CEILING_MAX = 0xFFFFFFFF


def pack(uid, ceiling, kid, sign):
    """The file's SIZE bytes for this UID and ceiling; `sign(digest32) -> 256 bytes` signs with
    the issuer key `kid` (RSASSA-PKCS1-v1_5 over the SHA-256 digest)."""
    if not 0 <= ceiling <= CEILING_MAX:
        raise ValueError("ceiling out of range")
    head = struct.pack(FMT, VERSION, kid, 0, ceiling)
    sig = sign(digest(bytes(uid), head))
    raw = head + bytes(sig)
    if len(raw) != SIZE:
        raise ValueError("signature of %d bytes (an RSA-2048 key makes 256)" % len(sig))
    return raw


def unpack(raw):
    """(version, key id, ceiling) of a signature file (not checked: card_schema.issuersig.check)."""
    v, kid, _, ceiling = struct.unpack_from(FMT, raw, 0)
    return v, kid, ceiling
