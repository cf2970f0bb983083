"""The citizen-card application, host side: key roles, file rights, personalisation codecs and names.

The terminal's part (AID, files, the codecs a tap uses) is card_schema.citizen; this module adds what
only the card office, the reports and the tests need, so terminals do not load it. The layout is
described in docs/architecture.md.

    from card_schema import citizen, citizen_host
    raw = citizen_host.pack_card_info(citizen_host.HOLDER_STUDENT, 1001, 7, issued, expiry)
    citizen.unpack_card_info(raw)[citizen_host.CI_CARD_NO]   # 1001
"""

import struct

from card_schema import issuersig_host
from card_schema.citizen import (
    FILE_INFO,
    FILE_PURSE,
    FILE_TRIPS,
    INFO_FMT,
    KEY_DEBIT,
    STATUS_BLOCKED,  # noqa: F401  (re-exported: the status codes side by side)
    TRIP_DEBIT,
    TRIP_SIZE,
    pack_trip_into,
)

# Key roles (key numbers in the application)
KEY_MASTER = 0
KEY_CREDIT = 2
KEY_READ = 3
KEY_COUNT = 4
ROLE_NAMES = ("master", "debit", "credit", "read")  # by key number (KEY_DEBIT = 1)

# Communication modes (DESFire comm settings byte)
COMM_PLAIN = 0
COMM_MAC = 1
COMM_ENC = 3

FREE = 0xE  # "free access" nibble

TRIP_RECORDS = 10  # cyclic file: one record slot is reserved by the card, 9 usable
PURSE_LOWER = 0
PURSE_UPPER = 2000000000  # Rial; int32 on the card
# Card info is read by terminals with the debit key inside their session (MACed: a relay cannot
# change holder type, status or expiry); its copy for inspection is read with the read key. Both
# are written only with the master key. Cards issued before (card info free to read, no copy) are
# migrated by `tapkit card secure` or their next top-up (host_tools/cardoffice/cardops.secure).
FILE_INFO_COPY = 0x04
# The issuer's signature over UID and ceiling (card_schema.issuersig): read by terminals with the
# debit key in their session, written only with the master key (issue, top-up, `card secure`).
FILE_SIG = issuersig_host.FILE_SIG
# (file_no, comm, read, write, read_write, change_access)
FILE_RIGHTS = (
    (FILE_INFO, COMM_MAC, KEY_DEBIT, KEY_MASTER, KEY_MASTER, KEY_MASTER),
    (FILE_PURSE, COMM_ENC, KEY_DEBIT, KEY_DEBIT, KEY_CREDIT, KEY_MASTER),
    (FILE_TRIPS, COMM_MAC, KEY_READ, KEY_CREDIT, KEY_DEBIT, KEY_MASTER),
    (FILE_INFO_COPY, COMM_MAC, KEY_READ, KEY_MASTER, KEY_MASTER, KEY_MASTER),
    (FILE_SIG, COMM_MAC, KEY_DEBIT, KEY_MASTER, KEY_MASTER, KEY_MASTER),
)
LEGACY_INFO_RIGHTS = (FREE, KEY_MASTER, KEY_MASTER, KEY_MASTER)  # card info before `card secure`

# PICC level after issue: the master key is the issuer's (AES, diversified: picc_div_input) and the
# key settings are 0x0B: master key changeable (0x01), free directory listing (0x02, so GetKeySettings
# and GetApplicationIDs work for anyone), CreateApplication needs the PICC master key (no 0x04: and so
# does DeleteApplication; FormatPICC always does), configuration changeable (0x08).
PICC_KEY_SETTINGS = 0x0B
_PICC_DIV_SUFFIX = b"\x00\x00\x00tapkit"  # AID 000000 (the PICC) || system id


def picc_div_input(uid):
    """AN10922 diversification input of the PICC master key: UID(7) || 000000 || system id."""
    return bytes(uid) + _PICC_DIV_SUFFIX


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

# CardInfo tuple indexes (card_schema.citizen.unpack_card_info; citizen has CI_STATUS, CI_EXPIRY)
CI_VERSION = 0
CI_HOLDER = 1
CI_CARD_NO = 4
CI_ISSUER = 5
CI_ISSUED = 6


def pack_card_info(holder, card_no, issuer_id, issued, expiry, status=STATUS_ACTIVE):
    return struct.pack(
        INFO_FMT, 1, holder, status, 0, card_no, issuer_id, issued, expiry, bytes(12)
    )


# TripRecord tuple indexes after citizen's TR_COUNTER..TR_BALANCE
TR_LINE = 5
TR_STOP = 6
TR_KIND = 7
TR_PROFILE = 8
TR_ZONE = 9
TR_FLAGS = 10

TRIP_CREDIT = 2
TRIP_REFUND = 3

# TripRecord flags
FLAG_TRANSFER = 0x01  # a bus ride discounted as a transfer (firmware/profile_bus.py)
FLAG_OPEN = 0x02  # a parking session is open (firmware/profile_parking.py)
FLAG_BLOCKED = 0x80  # blocked by a deny-list entry (firmware/app.py)
TRIP_KIND_NAMES = ("", "debit", "credit", "refund")


def pack_trip(
    counter,
    time,
    terminal,
    amount,
    balance,
    line=0,
    stop=0,
    kind=TRIP_DEBIT,
    profile=0,
    zone=0,
    flags=0,
):
    buf = bytearray(TRIP_SIZE)
    pack_trip_into(
        buf, counter, time, terminal, amount, balance, line, stop, kind, profile, zone, flags
    )
    return bytes(buf)
