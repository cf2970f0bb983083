"""The terminal's journal record: one fixed-size 64-byte record per tap outcome.

Layout (little endian, `_FMT`):

    off  size  field
      0     1  version (1)
      1     1  kind      1 charge, 2 refused, 3 denied, 4 void, 5 error, 6 refund, 7 confirm
                         (8.. card-office kinds: card_schema.taprecord_host)
      2     1  result    reason code (RESULT_*)
      3     1  profile   terminal profile (card_schema.profile)
      4     4  seq       terminal sequence number, never repeats
      8     4  time      unix seconds, terminal clock
     12     4  terminal  terminal id
     16     7  uid       card UID (7 bytes; zero when no card was read)
     23     1  zone
     24     4  counter   card transaction counter after this tap (0 when unknown)
     28     4  amount    Rial charged (void, confirm: the seq it voids, confirms)
     32     4  balance   balance after, Rial (signed; -1 when unknown)
     36     2  line
     38     2  stop
     40     2  duration  minutes (parking)
     42     2  tariff_ver
     44     2  deny_ver
     46     1  flags     taprecord_host.FLAG_CLOCK_UNSET (bit 0): the terminal's clock was not set since power-up
                         (a power cut on a board without a battery-backed RTC: `time` runs on from
                         the last time set, it is not the true time)
     47     5  reserved
     52     8  mac       CMAC-AES(terminal key, prev_mac || bytes 0..51)[:8], chained
     60     4  crc       CRC-32 (binascii.crc32) of bytes 0..59

The MAC chain makes a deleted, altered or reordered record detectable by anyone with the terminal key
(the host derives it); the CRC lets boot recovery tell a torn record from a complete one without the key.

Terminals load this module, so it holds only what the journal writes and checks; decoding, chain
verification and the code -> name tables are in card_schema.taprecord_host.

    buf = bytearray(SIZE)
    mac = pack_into(buf, prev_mac, key, seq=1, time=t, terminal=7, uid=uid, kind=KIND_CHARGE, ...)
"""

from binascii import crc32
from struct import pack_into as _pack, unpack_from

from card_schema.compat import const
from card_schema.crypto import cmac

SIZE = const(64)
BODY = const(52)
VERSION = const(1)
GENESIS_MAC = b"\x00" * 8

FMT = (
    "<BBBBIII7sBIIiHHHHHB5s"  # the body, bytes 0..51 (card_schema.taprecord_host decodes with it)
)

# kind (5 error, 7 confirm: see card_schema.taprecord_host)
KIND_CHARGE = const(1)
KIND_REFUSED = const(2)
KIND_DENIED = const(3)
KIND_VOID = const(4)
KIND_REFUND = const(6)  # a POS refund of the card's last sale: amount given back, new balance

# result (2 deny-list, 6 card error, 7 foreign, 8-11: see card_schema.taprecord_host)
RESULT_OK = const(0)
RESULT_INSUFFICIENT = const(1)
RESULT_BLOCKED = const(3)
RESULT_EXPIRED = const(4)
RESULT_REMOVED = const(5)

_PROFILE_BUS = const(1)  # = card_schema.profile.BUS


def pack_into(
    buf,
    prev_mac,
    key,
    seq,
    time,
    terminal,
    uid,
    kind,
    result=0,
    profile=_PROFILE_BUS,
    zone=0,
    counter=0,
    amount=0,
    balance=-1,
    line=0,
    stop=0,
    duration=0,
    tariff_ver=0,
    deny_ver=0,
    flags=0,
):
    """Fill `buf` (64 bytes) with a sealed record chained to `prev_mac`; return its 8-byte MAC."""
    _pack(
        FMT,
        buf,
        0,
        VERSION,
        kind,
        result,
        profile,
        seq,
        time,
        terminal,
        uid,
        zone,
        counter,
        amount,
        balance,
        line,
        stop,
        duration,
        tariff_ver,
        deny_ver,
        flags,
        b"\x00\x00\x00\x00\x00",
    )
    return seal_into(buf, prev_mac, key)


def seal_into(buf, prev_mac, key):
    """Compute MAC and CRC of a record whose body (bytes 0..51) is filled; return the MAC."""
    mv = memoryview(buf)
    msg = bytearray(8 + BODY)  # prev_mac || body: one buffer (the tap path counts its garbage)
    msg[0:8] = prev_mac
    msg[8:] = mv[0:BODY]
    mac = cmac(key, msg)[:8]
    mv[BODY : BODY + 8] = mac
    _pack("<I", buf, 60, crc32(mv[0:60]) & 0xFFFFFFFF)
    return mac


def crc_ok(raw):
    """True when the record's CRC matches: the record was written completely."""
    return len(raw) >= SIZE and unpack_from("<I", raw, 60)[0] == (
        crc32(memoryview(raw)[0:60]) & 0xFFFFFFFF
    )


def mac_ok(raw, prev_mac, key):
    return cmac(key, bytes(prev_mac) + bytes(raw[0:BODY]))[:8] == bytes(raw[BODY : BODY + 8])


def seq_of(raw):
    return unpack_from("<I", raw, 4)[0]
