"""Deny-list lookup: the part of the tables a tap needs (card_schema/tariff.py has the format, the
loading and the checks). A module of its own so that the terminal keeps only this in RAM: tariff and
card_schema.signed are loaded when tables are (firmware/tables.py) and forgotten after.
"""

DENY_ENTRY = 8
ACTION_REFUSE = 0
ACTION_BLOCK = 1
ACTION_REMOVE = 0xFF  # delta only


def deny_lookup(f, base, count, uid, buf):
    """Binary search a sorted deny list stored in open file `f` at offset `base` (the first entry).
    `buf` is a reusable 8-byte bytearray. Returns the action, or -1 when the UID is not listed.
    Compares in place: a lookup allocates nothing, whatever the list's length."""
    lo = 0
    hi = count
    while lo < hi:
        mid = (lo + hi) // 2
        f.seek(base + mid * DENY_ENTRY)
        f.readinto(buf)
        c = 0
        for i in range(7):
            c = buf[i] - uid[i]
            if c:
                break
        if not c:
            return buf[7]
        if c < 0:
            lo = mid + 1
        else:
            hi = mid
    return -1
