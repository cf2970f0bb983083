"""Fare tables and deny lists: the payloads carried inside card_schema.signed blobs, and how a terminal
installs, loads and looks them up.

Fare table (signed.KIND_FARES): a UTF-8 JSON object (decoded once, when installed or at boot):

    {"profile": "bus",
     "fares": {"7": 25000, "12": 30000},  # Rial per line; "default" for the others (absent: refused)
     "default": 25000,
     "conc": [100, 50, 30, 0],             # percent of the fare per holder type (adult student senior staff)
     "peak": {"pct": 125, "days": [5, 6, 0, 1, 2], "spans": [[420, 540], [990, 1140]]},
                                           # weekday 0 = Monday; spans in local minutes [from, to)
     "tz": 12600,                          # local time = unix + tz seconds (Tehran +3:30)
     "transfer": {"window": 5400, "pct": 100},  # discount percent for a ride on another line
     "repeat": 10,                         # seconds: a repeat tap on the same terminal is not charged
     "round": 0}                           # round fares down to a multiple (Rial), 0 = none

Deny list (signed.KIND_DENY): `count u32` then `count` entries of 8 bytes, sorted by UID:
`uid(7) | action(1)` with action 0 refuse, 1 refuse and block the card's application. The terminal
keeps the verified blob in a file and looks UIDs up with a binary search over it (8 bytes of RAM per
probe, whatever the list's length: card_schema/denylist.py, the one part of this module a tap needs).

Deny-list delta (signed.KIND_DENY_DELTA): the same entry format; action 0xFF removes a UID of the full
list. A delta older than the full list is stale and ignored.

On the terminal each lives as the signed blob itself in a file (`fares.bin`, `deny.bin`,
`deny_delta.bin`), installed by firmware/install.py (verify, write `<name>.new`, rename: a power cut
leaves the old or the new blob, never a mixture; a blob that fails verification leaves the old one in
force). The terminal verifies them again when it loads them, and runs with none it cannot verify.
"""

import json
import struct

from card_schema import signed
from card_schema.compat import const
from card_schema.denylist import (  # noqa: F401 - tariff's names too (install, host tools)
    ACTION_BLOCK,
    ACTION_REFUSE,
    ACTION_REMOVE,
    DENY_ENTRY,
    deny_lookup,
)

_MAX_FARES = const(8192)  # a fare table is decoded in RAM


def load(key, path, kind, buf):
    """Open the blob file `path` and verify it where it lies (signed.verify_file, through the
    reusable `buf`): (version, open file at the payload, payload length). OSError when the file is
    missing, ValueError (file closed) when it fails verification, is of another kind or is a deny
    list whose length does not match its count. A fare table is then read (it is small); a deny list
    of 100,000 cards (800 KB) stays in its file and is searched there."""
    f = open(path, "rb")
    try:
        k, version, n = signed.verify_file(key, f, buf)
        if k != kind:
            raise ValueError("blob kind %d, expected %d" % (k, kind))
        f.seek(signed.HEADER)
        if kind != signed.KIND_FARES:
            count = struct.unpack("<I", f.read(4))[0]
            if n != 4 + count * DENY_ENTRY:
                raise ValueError("deny list length")
            f.seek(signed.HEADER)
    except Exception:
        f.close()
        raise
    return version, f, n


def check(kind, f, n):
    """ValueError when the verified `n`-byte payload of this kind at the position of open file `f`
    is not one the firmware can use (an installer calls it before replacing a good table): a fare
    table must decode; a deny list's length must match its count and its UIDs be strictly sorted (the
    binary search needs them so), read in 512-byte pieces whatever its length."""
    if kind == signed.KIND_FARES:
        if n > _MAX_FARES:
            raise ValueError("fare table of %d bytes" % n)
        fare_table(f.read(n))
        return
    if n < 4:
        raise ValueError("deny list too short")
    count = struct.unpack("<I", f.read(4))[0]
    if n != 4 + count * DENY_ENTRY:
        raise ValueError("deny list length")
    buf = bytearray(512)
    mv = memoryview(buf)
    prev = b""
    while count:
        k = min(64, count)
        if f.readinto(mv[: k * DENY_ENTRY]) != k * DENY_ENTRY:
            raise ValueError("deny list: short read")
        for i in range(0, k * DENY_ENTRY, DENY_ENTRY):
            u = bytes(mv[i : i + 7])
            if u <= prev:
                raise ValueError("deny list: UIDs not strictly sorted")
            prev = u
        count -= k


def fare_table(payload):
    """Decode and check a fare table payload; ValueError when it is not one."""
    t = json.loads(payload)
    if not isinstance(t, dict) or not isinstance(t.get("fares", {}), dict):
        raise ValueError("fare table: not an object")
    conc = t.get("conc", [100])
    if not isinstance(conc, list) or not conc:
        raise ValueError("fare table: conc")
    for v in list(t.get("fares", {}).values()) + conc + [t.get("default", 0)]:
        if not isinstance(v, int) or v < 0:
            raise ValueError("fare table: amounts are integer Rial >= 0")
    return t


def deny_count(payload):
    """Number of entries of a deny-list payload; ValueError when the length does not match."""
    if len(payload) < 4:
        raise ValueError("deny list too short")
    n = struct.unpack_from("<I", payload, 0)[0]
    if len(payload) != 4 + n * DENY_ENTRY:
        raise ValueError("deny list length")
    return n


def pack_deny(entries):
    """Host: the payload for {uid(7 bytes): action}."""
    out = [struct.pack("<I", len(entries))]
    for uid in sorted(entries):
        if len(uid) != 7:
            raise ValueError("deny list: UIDs are 7 bytes")
        out.append(bytes(uid) + bytes([entries[uid]]))
    return b"".join(out)
