"""Journal tap records, host side: decoding, MAC chain verification and the code -> name tables.

The record layout and the writer are card_schema.taprecord (terminals load only that one); this module
adds what the host (store, report, sync) and the tests need.

    from card_schema import taprecord_host
    last_mac = taprecord_host.verify_chain(records, key)   # raises RecordError at the first break
    taprecord_host.to_dict(records[0])["kind"]            # "charge"
"""

import binascii
import struct

from card_schema.profile_host import NAMES as PROFILE_NAMES
from card_schema.taprecord import (
    BODY,
    FMT,
    GENESIS_MAC,
    SIZE,
    VERSION,
    crc_ok,
    mac_ok,
)

# codes the terminal firmware does not write itself (the others are in card_schema.taprecord)
KIND_ERROR = 5
# A charge (or refund) journalled before CommitTransaction is *confirmed* by a later record of the
# same terminal of kind CONFIRM whose `amount` names the confirmed seq (as a VOID names the voided
# seq); its result says how the terminal knows: RESULT_COMMIT_ANSWER (the card's MACed answer to
# CommitTransaction) or RESULT_TRIP_LOG (the card's own trip log, read when it came back). A charge
# neither confirmed nor voided is *unconfirmed* (docs/architecture.md "Pending charges").
KIND_CONFIRM = 7
# the card office's journal (host_tools/cardoffice/journal.py): the same record, chained with the
# office's key (host_tools.keystore.office_key); counter and balance are the card's after the
# operation, amount what it moved (issue: the initial balance, topup: credited, payout: the balance
# paid out when the card is closed; block/unblock: 0). Money records are confirmed (KIND_CONFIRM) or
# voided (KIND_VOID) by a later record of the same office, like a terminal's charges.
KIND_ISSUE = 8
KIND_TOPUP = 9
KIND_PAYOUT = 10
KIND_BLOCK = 11
KIND_UNBLOCK = 12
KIND_NAMES = (
    "",
    "charge",
    "refused",
    "denied",
    "void",
    "error",
    "refund",
    "confirm",
    "issue",
    "topup",
    "payout",
    "block",
    "unblock",
)
OFFICE_KINDS = ("issue", "topup", "payout", "block", "unblock")

# flags (byte 46): bit 0, the terminal's clock was not set since power-up (firmware/hal.py Clock:
# the terminal writes its Clock.unset there, 0 or 1; a name on the board would cost a qstr)
FLAG_CLOCK_UNSET = 1

RESULT_DENYLIST = 2
RESULT_CARD_ERROR = 6
RESULT_FOREIGN = 7
RESULT_COMMIT_ANSWER = 8  # CONFIRM: the card answered CommitTransaction (MAC verified)
RESULT_TRIP_LOG = 9  # CONFIRM or VOID: the card's trip log says whether the commit happened
RESULT_NOT_SENT = 10  # VOID: the CommitTransaction frame was never sent (no charge possible)
RESULT_ROLLBACK = 11  # DENIED: the card's counter/balance went back (a restored image or a clone)
# DENIED: no valid issuer signature (card_schema.issuersig: a card no office issued, e.g. made with
# a stolen debit key), or a balance above the ceiling the office signed (value added outside it)
RESULT_NOT_ISSUED = 12
RESULT_OVER_CEILING = 13
RESULT_NAMES = (
    "ok",
    "insufficient",
    "deny-list",
    "blocked",
    "expired",
    "removed",
    "card-error",
    "foreign",
    "commit-answer",
    "trip-log",
    "not-sent",
    "rollback",
    "not-issued",
    "over-ceiling",
)

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
F_FLAGS = 17
F_RESERVED = 18
F_MAC = 19  # only in unpack() results


class RecordError(ValueError):
    pass


def unpack(raw):
    """Decode a record (checks CRC and version); returns the field tuple plus the MAC at F_MAC."""
    if not crc_ok(raw):
        raise RecordError("record CRC")
    t = struct.unpack_from(FMT, raw, 0)
    if t[F_VERSION] != VERSION:
        raise RecordError("record version")
    return t + (bytes(raw[BODY : BODY + 8]),)


def verify_chain(records, key, prev_mac=GENESIS_MAC):
    """Check a run of consecutive records. Returns the last MAC; raises RecordError at the first break."""
    for raw in records:
        t = unpack(raw)
        if not mac_ok(raw, prev_mac, key):
            raise RecordError("MAC chain broken at seq %d" % t[F_SEQ])
        prev_mac = t[F_MAC]
    return prev_mac


def _name(names, code):
    return names[code] if code < len(names) else str(code)


def to_dict(raw):
    """Host-side view of a record (names instead of codes)."""
    t = unpack(raw)
    return {
        "seq": t[F_SEQ],
        "time": t[F_TIME],
        "terminal": t[F_TERMINAL],
        "uid": binascii.hexlify(t[F_UID]).decode(),
        "kind": _name(KIND_NAMES, t[F_KIND]),
        "result": _name(RESULT_NAMES, t[F_RESULT]),
        "profile": _name(PROFILE_NAMES, t[F_PROFILE]),
        "zone": t[F_ZONE],
        "counter": t[F_COUNTER],
        "amount": t[F_AMOUNT],
        "balance": t[F_BALANCE],
        "line": t[F_LINE],
        "stop": t[F_STOP],
        "duration": t[F_DURATION],
        "tariff_ver": t[F_TARIFF],
        "deny_ver": t[F_DENY],
        "clock_unset": t[F_FLAGS] & FLAG_CLOCK_UNSET,  # 0 or 1, as the store keeps it
        "mac": binascii.hexlify(t[F_MAC]).decode(),
    }


def chain_break(plain, prev_mac, key):
    """Index of the first record of `plain` (consecutive 64-byte records, joined) whose MAC does not
    continue the chain from `prev_mac`, or -1 when every one does. CPython only: the CMACs of a whole
    batch in four AES-ECB calls of `cryptography` (C speed), not a Python loop per block.

    Each MAC is cmac(key, prev_mac | body52)[:8] over a 60-byte message: blocks M1 M2 M3 full and M4
    the last 12 bytes padded (0x80, zeros) and xored with K2 (RFC 4493). The predecessor of record i
    is the MAC field of record i-1 as received, so the messages are independent: the CBC-MAC runs
    block by block across the batch (block 1 of every message, then 2...). The blocks are gathered
    by strided slices (byte j of every record at once: about 70 C-speed copies a batch, whatever its
    size), not an object per record."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from card_schema.crypto import subkeys

    n = len(plain) // SIZE
    if not n:
        return -1
    if len(plain) != n * SIZE:
        raise ValueError(
            "chain_break: %d bytes are not whole %d-byte records" % (len(plain), SIZE)
        )
    plain = bytes(plain)
    macs = bytearray(8 * n)  # the MAC field of every record, joined
    for j in range(8):
        macs[j::8] = plain[BODY + j :: SIZE]
    prevs = bytes(prev_mac) + macs[:-8]  # each record's predecessor MAC
    m = [bytearray(16 * n) for _ in range(4)]  # block k of message i at m[k][16 i:16 i + 16]
    for j in range(8):
        m[0][j::16] = prevs[j::8]
        m[0][8 + j :: 16] = plain[j::SIZE]
    for k, width in ((1, 16), (2, 16), (3, 12)):
        for j in range(width):
            m[k][j::16] = plain[16 * k - 8 + j :: SIZE]
    m[3][12::16] = b"\x80" * n
    enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

    def xor(a, b):
        return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(
            len(a), "little"
        )

    c = enc.update(m[0])
    c = enc.update(xor(c, m[1]))
    c = enc.update(xor(c, m[2]))
    c = enc.update(xor(xor(c, m[3]), subkeys(key)[1] * n))
    got = bytearray(8 * n)
    for j in range(8):
        got[j::8] = c[j::16]
    if got == macs:
        return -1
    for i in range(n):
        if got[8 * i : 8 * i + 8] != macs[8 * i : 8 * i + 8]:
            return i
    return -1
