"""The citizen-card application on MIFARE DESFire EV1 (AES keys): AID, files, codecs the terminal uses.

The layout is described in docs/architecture.md. Card info and trip records are fixed-size little-endian
structs so the firmware decodes them with `struct.unpack_from` and no allocation beyond the tuple.
Terminals load this module, so it carries only what a tap needs; the other key roles, file rights,
field indexes, names and the personalisation codecs are in card_schema.citizen_host (host only).

    from card_schema import citizen
    info = citizen.unpack_card_info(raw32)
    info[citizen.CI_STATUS]      # 0 active, 1 blocked
"""

import struct

from card_schema.compat import const

AID = const(0x544B01)  # "TK" 01; on the wire LSB first: 01 4B 54
# AN10922 diversification input after the UID: AID (LSB first) || system identifier
_DIV_SUFFIX = const(b"\x01\x4b\x54tapkit")

KEY_DEBIT = const(1)  # the terminals' key (card_schema.citizen_host: all key roles)

FILE_INFO = const(0x01)
FILE_PURSE = const(0x02)
FILE_TRIPS = const(0x03)

INFO_SIZE = const(32)
TRIP_SIZE = const(32)

STATUS_BLOCKED = const(1)  # CardInfo status (0 active)

# CardInfo: version, holder, status, reserved, card_no, issuer_id, issued, expiry, reserved
INFO_FMT = "<BBBBIIII12s"
CI_STATUS = const(2)
CI_EXPIRY = const(7)

# TripRecord: counter, time, terminal, amount, balance_after, line, stop, kind, profile, zone, flags, rsv
TRIP_FMT = "<IIIIiHHBBBB4s"
TR_COUNTER = const(0)
TR_TIME = const(1)
TR_TERMINAL = const(2)
TR_AMOUNT = const(3)
TR_BALANCE = const(4)

TRIP_DEBIT = const(1)  # TripRecord kind (2 credit, 3 refund)


def unpack_card_info(raw):
    if len(raw) < INFO_SIZE:
        raise ValueError("card info too short")
    t = struct.unpack_from(INFO_FMT, raw, 0)
    if t[0] != 1:  # version
        raise ValueError("card info version")
    return t


def pack_trip_into(
    buf, counter, time, terminal, amount, balance, line, stop, kind, profile, zone, flags
):
    """Fill a reusable 32-byte bytearray with a TripRecord (no allocation: the tap path uses it)."""
    struct.pack_into(
        TRIP_FMT,
        buf,
        0,
        counter,
        time,
        terminal,
        amount,
        balance,
        line,
        stop,
        kind,
        profile,
        zone,
        flags,
        b"\x00\x00\x00\x00",
    )


def unpack_trip(raw, offset=0):
    return struct.unpack_from(TRIP_FMT, raw, offset)


def div_input(uid):
    """AN10922 diversification input for this application: UID(7) || AID(3) || system id."""
    return bytes(uid) + _DIV_SUFFIX
