"""The terminal's journal record: one fixed-size 64-byte record per tap outcome.

Layout (little endian, `_FMT`):

    off  size  field
      0     1  version (1)
      1     1  kind      1 charge, 2 refused, 3 denied, 4 void, 5 error
      2     1  result    reason code (RESULT_*)
      3     1  profile   terminal profile (PROFILE_*)
      4     4  seq       terminal sequence number, never repeats
      8     4  time      unix seconds, terminal clock
     12     4  terminal  terminal id
     16     7  uid       card UID (7 bytes; zero when no card was read)
     23     1  zone
     24     4  counter   card transaction counter after this tap (0 when unknown)
     28     4  amount    Rial charged (void: the seq it voids)
     32     4  balance   balance after, Rial (signed; -1 when unknown)
     36     2  line
     38     2  stop
     40     2  duration  minutes (parking)
     42     2  tariff_ver
     44     2  deny_ver
     46     6  reserved
     52     8  mac       CMAC-AES(terminal key, prev_mac || bytes 0..51)[:8], chained
     60     4  crc       CRC-32 (binascii.crc32) of bytes 0..59

The MAC chain makes a deleted, altered or reordered record detectable by anyone with the terminal key
(the host derives it); the CRC lets boot recovery tell a torn record from a complete one without the key.

    buf = bytearray(SIZE)
    mac = pack_into(buf, prev_mac, key, seq=1, time=t, terminal=7, uid=uid, kind=KIND_CHARGE, ...)
"""

import binascii
import struct

from card_schema.crypto import cmac

SIZE = 64
BODY = 52
VERSION = 1
GENESIS_MAC = b"\x00" * 8

_FMT = "<BBBBIII7sBIIiHHHHH6s"

KIND_CHARGE = 1
KIND_REFUSED = 2
KIND_DENIED = 3
KIND_VOID = 4
KIND_ERROR = 5
KIND_NAMES = ("", "charge", "refused", "denied", "void", "error")

RESULT_OK = 0
RESULT_INSUFFICIENT = 1
RESULT_DENYLIST = 2
RESULT_BLOCKED = 3
RESULT_EXPIRED = 4
RESULT_REMOVED = 5
RESULT_CARD_ERROR = 6
RESULT_FOREIGN = 7
RESULT_NAMES = ("ok", "insufficient", "deny-list", "blocked", "expired", "removed", "card-error",
                "foreign")

PROFILE_BUS = 1
PROFILE_TAXI = 2
PROFILE_PARKING = 3
PROFILE_POS = 4
PROFILE_CHARITY = 5
PROFILE_NAMES = ("", "bus", "taxi", "parking", "pos", "charity")

# tuple indexes of unpack()
F_VERSION = 0
F_KIND = 1
F_RESULT = 2
F_PROFILE = 3
F_SEQ = 4
F_TIME = 5
F_TERMINAL = 6
F_UID = 7
F_ZONE = 8
F_COUNTER = 9
F_AMOUNT = 10
F_BALANCE = 11
F_LINE = 12
F_STOP = 13
F_DURATION = 14
F_TARIFF = 15
F_DENY = 16
F_RESERVED = 17
F_MAC = 18  # only in unpack() results


class RecordError(ValueError):
    pass


def pack_into(buf, prev_mac, key, seq, time, terminal, uid, kind, result=0, profile=PROFILE_BUS,
              zone=0, counter=0, amount=0, balance=-1, line=0, stop=0, duration=0, tariff_ver=0,
              deny_ver=0):
    """Fill `buf` (64 bytes) with a sealed record chained to `prev_mac`; return its 8-byte MAC."""
    struct.pack_into(_FMT, buf, 0, VERSION, kind, result, profile, seq, time, terminal, uid, zone,
                     counter, amount, balance, line, stop, duration, tariff_ver, deny_ver,
                     b"\x00\x00\x00\x00\x00\x00")
    mac = seal_into(buf, prev_mac, key)
    return mac


def seal_into(buf, prev_mac, key):
    """Compute MAC and CRC of a record whose body (bytes 0..51) is filled; return the MAC."""
    mv = memoryview(buf)
    mac = cmac(key, bytes(prev_mac) + bytes(mv[0:BODY]))[:8]
    mv[BODY:BODY + 8] = mac
    struct.pack_into("<I", buf, 60, binascii.crc32(mv[0:60]) & 0xFFFFFFFF)
    return mac


def crc_ok(raw):
    """True when the record's CRC matches: the record was written completely."""
    if len(raw) < SIZE:
        return False
    return struct.unpack_from("<I", raw, 60)[0] == (binascii.crc32(memoryview(raw)[0:60]) & 0xFFFFFFFF)


def unpack(raw):
    """Decode a record (checks CRC and version); returns the field tuple plus the MAC at F_MAC."""
    if not crc_ok(raw):
        raise RecordError("record CRC")
    t = struct.unpack_from(_FMT, raw, 0)
    if t[F_VERSION] != VERSION:
        raise RecordError("record version")
    return t + (bytes(raw[BODY:BODY + 8]),)


def mac_ok(raw, prev_mac, key):
    return cmac(key, bytes(prev_mac) + bytes(raw[0:BODY]))[:8] == bytes(raw[BODY:BODY + 8])


def seq_of(raw):
    return struct.unpack_from("<I", raw, 4)[0]


def verify_chain(records, key, prev_mac=GENESIS_MAC):
    """Check a run of consecutive records. Returns the last MAC; raises RecordError at the first break."""
    for raw in records:
        t = unpack(raw)
        if not mac_ok(raw, prev_mac, key):
            raise RecordError("MAC chain broken at seq %d" % t[F_SEQ])
        prev_mac = t[F_MAC]
    return prev_mac


def to_dict(raw):
    """Host-side view of a record (names instead of codes)."""
    t = unpack(raw)
    kind = t[F_KIND]
    res = t[F_RESULT]
    prof = t[F_PROFILE]
    return {
        "seq": t[F_SEQ],
        "time": t[F_TIME],
        "terminal": t[F_TERMINAL],
        "uid": binascii.hexlify(t[F_UID]).decode(),
        "kind": KIND_NAMES[kind] if kind < len(KIND_NAMES) else str(kind),
        "result": RESULT_NAMES[res] if res < len(RESULT_NAMES) else str(res),
        "profile": PROFILE_NAMES[prof] if prof < len(PROFILE_NAMES) else str(prof),
        "zone": t[F_ZONE],
        "counter": t[F_COUNTER],
        "amount": t[F_AMOUNT],
        "balance": t[F_BALANCE],
        "line": t[F_LINE],
        "stop": t[F_STOP],
        "duration": t[F_DURATION],
        "tariff_ver": t[F_TARIFF],
        "deny_ver": t[F_DENY],
        "mac": binascii.hexlify(t[F_MAC]).decode(),
    }
