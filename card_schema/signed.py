"""Signed configuration blobs: fare tables and deny lists the operator sends to a terminal.

    blob = seal(key, KIND_FARES, 7, payload)           # host: sign for one terminal
    kind, version, payload = verify(key, blob)          # terminal: ValueError if forged or damaged
    kind, version, n = verify_file(key, f, buf)         # the same for a blob in an open file, read
                                                        # through `buf` (a deny list of 100,000 cards
                                                        # is 800 KB: never read whole)

Layout: magic "TKS1" | kind u8 | version u32 | length u32 | payload | CMAC-AES(key, all before)[16].
The key is the terminal's own config key (keystore.config_key: diversified from the operator's config
master key by terminal id), so a key pulled out of one terminal cannot sign tables for the others.
A terminal applies a blob only after verify() succeeded, and keeps the version in every tap record.

Config kinds: `NAMES[kind]` is the one name of each kind. On the terminal the blob is stored as
`<name>.bin` (firmware/install.py) and its version is reported as `<name>_ver` (IDENTIFY, the Wi-Fi
batch head, the terminal's info); the CLI spells it with "-" for "_" (card_schema.signed_host).
"""

import struct

from card_schema.compat import aes_cbc
from card_schema.crypto import ZERO16, cmac, subkeys

MAGIC = b"TKS1"
KIND_FARES = 1
KIND_DENY = 2  # full deny list
KIND_DENY_DELTA = 3  # entries to add/remove on top of the current list
NAMES = ("", "fares", "deny", "deny_delta")  # by KIND_*
FMT = "<4sBII"  # magic, kind, version, length
HEADER = 13


def seal(key, kind, version, payload):
    head = struct.pack(FMT, MAGIC, kind, version, len(payload))
    body = head + bytes(payload)
    return body + cmac(key, body)


def verify(key, blob):
    """Check the blob's form and MAC; return (kind, version, payload) or raise ValueError."""
    if len(blob) < HEADER + 16:
        raise ValueError("signed blob too short")
    magic, kind, version, n = struct.unpack_from(FMT, blob, 0)
    if magic != MAGIC or len(blob) != HEADER + n + 16:
        raise ValueError("not a signed blob")
    mv = memoryview(blob)
    if cmac(key, bytes(mv[: HEADER + n])) != bytes(mv[HEADER + n :]):
        raise ValueError("bad signature")
    return kind, version, bytes(mv[HEADER : HEADER + n])


def verify_file(key, f, buf):
    """verify() of the blob that is the whole of open file `f`, read in pieces into `buf` (a
    bytearray, a multiple of 16 bytes): (kind, version, payload length) or ValueError. The CMAC runs
    as CBC in the platform's AES engine (C speed on both interpreters), so its cost is the reads."""
    f.seek(0)
    head = f.read(HEADER)
    if len(head) < HEADER:
        raise ValueError("signed blob too short")
    magic, kind, version, n = struct.unpack(FMT, head)
    end = HEADER + n  # the MAC covers bytes 0..end-1
    if magic != MAGIC or f.seek(0, 2) != end + 16:
        raise ValueError("not a signed blob")
    # RFC 4493: CBC-MAC of every block but the last, then the last one xored with K1 (complete) or
    # padded and xored with K2
    full = (end - 1) // 16 * 16
    c = aes_cbc(key, ZERO16)
    mv = memoryview(buf)
    f.seek(0)
    pos = 0
    while pos < full:
        k = min(len(buf), full - pos)
        if f.readinto(mv[:k]) != k:
            raise ValueError("signed blob: short read")
        c.encrypt(mv[:k], mv[:k])
        pos += k
    last = bytearray(16)
    k = f.readinto(memoryview(last)[: end - full])
    k1, k2 = subkeys(key)
    if k == 16:
        sub = k1
    else:
        last[k] = 0x80
        sub = k2
    for i in range(16):
        last[i] ^= sub[i]
    if c.encrypt(last) != f.read(16):
        raise ValueError("bad signature")
    return kind, version, n
