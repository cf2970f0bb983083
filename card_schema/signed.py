"""Signed configuration blobs: fare tables and deny lists the operator sends to a terminal.

    blob = seal(key, KIND_FARES, 7, payload)           # host: sign for one terminal
    kind, version, payload = verify(key, blob)          # terminal: ValueError if forged or damaged

Layout: magic "TKS1" | kind u8 | version u32 | length u32 | payload | CMAC-AES(key, all before)[16].
The key is the terminal's own config key (keystore.config_key: diversified from the operator's config
master key by terminal id), so a key pulled out of one terminal cannot sign tables for the others.
A terminal applies a blob only after verify() succeeded, and keeps the version in every tap record.

Config kinds: `NAMES[kind]` is the one name of each kind. On the terminal the blob is stored as
`<name>.bin` (firmware/install.py) and its version is reported as `<name>_ver` (IDENTIFY, the Wi-Fi
batch head, the terminal's info); the CLI spells it with "-" for "_" (card_schema.signed_host).
"""

import struct

from card_schema.crypto import cmac

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
