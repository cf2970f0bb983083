"""The citizen-card application on MIFARE DESFire EV1 (AES keys): AID, key roles, files, codecs.

The layout is described in docs/architecture.md. Card info and trip records are fixed-size little-endian
structs so the firmware decodes them with `struct.unpack_from` and no allocation beyond the tuple.

    from card_schema import citizen
    info = citizen.unpack_card_info(raw32)
    info[citizen.CI_HOLDER]      # 0 adult, 1 student, 2 senior, 3 staff
"""

import struct

from card_schema.compat import const

AID = 0x544B01  # "TK" 01
AID_BYTES = b"\x01\x4b\x54"  # as sent in SelectApplication (LSB first)
DIV_SYSTEM = b"tapkit"  # AN10922 system identifier appended to UID || AID

# Key roles (key numbers in the application)
KEY_MASTER = 0
KEY_DEBIT = 1
KEY_CREDIT = 2
KEY_READ = 3
KEY_COUNT = 4
ROLE_NAMES = ("master", "debit", "credit", "read")

# Files
FILE_INFO = 0x01
FILE_PURSE = 0x02
FILE_TRIPS = 0x03

# Communication modes (DESFire comm settings byte)
COMM_PLAIN = 0
COMM_MAC = 1
COMM_ENC = 3

FREE = 0xE  # "free access" nibble

INFO_SIZE = 32
TRIP_SIZE = 32
TRIP_RECORDS = 10  # cyclic file: one record slot is reserved by the card, 9 usable
PURSE_LOWER = 0
PURSE_UPPER = 2000000000  # Rial; int32 on the card
# (file_no, comm, read, write, read_write, change_access)
FILE_RIGHTS = (
    (FILE_INFO, COMM_MAC, FREE, KEY_MASTER, KEY_MASTER, KEY_MASTER),
    (FILE_PURSE, COMM_ENC, KEY_DEBIT, KEY_DEBIT, KEY_CREDIT, KEY_MASTER),
    (FILE_TRIPS, COMM_MAC, KEY_READ, KEY_CREDIT, KEY_DEBIT, KEY_MASTER),
)


def access_rights(read, write, read_write, change):
    """The 2-byte access rights field as DESFire stores it (LSB first): RW|CAR, R|W."""
    return bytes(((read_write << 4) | change, (read << 4) | write))


def file_comm(file_no):
    for f in FILE_RIGHTS:
        if f[0] == file_no:
            return f[1]
    raise ValueError("unknown file")


# Holder types
HOLDER_ADULT = 0
HOLDER_STUDENT = 1
HOLDER_SENIOR = 2
HOLDER_STAFF = 3
HOLDER_NAMES = ("adult", "student", "senior", "staff")

STATUS_ACTIVE = 0
STATUS_BLOCKED = 1

# CardInfo: version, holder, status, reserved, card_no, issuer_id, issued, expiry, reserved
_INFO_FMT = "<BBBBIIII12s"
CI_VERSION = 0
CI_HOLDER = 1
CI_STATUS = 2
CI_CARD_NO = 4
CI_ISSUER = 5
CI_ISSUED = 6
CI_EXPIRY = 7


def pack_card_info(holder, card_no, issuer_id, issued, expiry, status=STATUS_ACTIVE):
    return struct.pack(_INFO_FMT, 1, holder, status, 0, card_no, issuer_id, issued, expiry, bytes(12))


def unpack_card_info(raw):
    if len(raw) < INFO_SIZE:
        raise ValueError("card info too short")
    t = struct.unpack_from(_INFO_FMT, raw, 0)
    if t[CI_VERSION] != 1:
        raise ValueError("card info version")
    return t


# TripRecord: counter, time, terminal, amount, balance_after, line, stop, kind, profile, zone, flags, rsv
_TRIP_FMT = "<IIIIiHHBBBB4s"
TR_COUNTER = 0
TR_TIME = 1
TR_TERMINAL = 2
TR_AMOUNT = 3
TR_BALANCE = 4
TR_LINE = 5
TR_STOP = 6
TR_KIND = 7
TR_PROFILE = 8
TR_ZONE = 9
TR_FLAGS = 10

TRIP_DEBIT = 1
TRIP_CREDIT = 2
TRIP_REFUND = 3
TRIP_KIND_NAMES = ("", "debit", "credit", "refund")



def pack_trip(counter, time, terminal, amount, balance, line=0, stop=0, kind=TRIP_DEBIT, profile=0,
              zone=0, flags=0):
    return struct.pack(_TRIP_FMT, counter, time, terminal, amount, balance, line, stop, kind, profile,
                       zone, flags, bytes(4))


def pack_trip_into(buf, counter, time, terminal, amount, balance, line, stop, kind, profile, zone, flags):
    """Allocation-free variant for the tap path (buf is a reusable 32-byte bytearray)."""
    struct.pack_into(_TRIP_FMT, buf, 0, counter, time, terminal, amount, balance, line, stop, kind,
                     profile, zone, flags, b"\x00\x00\x00\x00")


def unpack_trip(raw, offset=0):
    return struct.unpack_from(_TRIP_FMT, raw, offset)


def div_input(uid):
    """AN10922 diversification input for this application: UID(7) || AID(3) || system id."""
    return bytes(uid) + AID_BYTES + DIV_SYSTEM
