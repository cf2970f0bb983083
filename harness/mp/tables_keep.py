"""firmware/tables.py load on the VM, the way the terminal calls it after an INSTALL: a deny list in
use stays in use when verifying the tables fails for lack of memory (tests/firmware/
test_profiles_bus_mp.py).

    micropython tables_keep.py UIDHEX [EIO]  (in a directory holding deny.bin, sealed with bytes(range(16)))

Prints "loaded VERSION ACTION" after a clean load, "kept VERSION ACTION" after a load whose deny-list
verification raised MemoryError (with EIO: OSError(EIO), a flash read error), then "reloaded VERSION ACTION" once memory is back (ACTION: the
listed UID's action, -1 for not listed).
"""

import sys
from card_schema import denylist, signed, tariff
from firmware import tables


class Term:
    config_key = bytes(range(16))
    config: dict = {}
    fare = 0
    tariff_ver = 0

    def __init__(self):
        self.deny = []
        self.table = None
        self.deny_ver = 0
        self.info = {}
        self._vers = None

    def log_error(self, where, e):
        print("error", where, e)

    def action(self, uid):
        for f, n in self.deny:
            a = denylist.deny_lookup(f, signed.HEADER + 4, n, uid, bytearray(8))
            if a >= 0:
                return a
        return -1


uid = bytes.fromhex(sys.argv[1])
t = Term()
tables.load(t)
print("loaded", t.info["deny_ver"], t.action(uid))

real = tariff.load


EIO = len(sys.argv) > 2 and sys.argv[2] == "EIO"


def short(key, name, kind, buf):
    if kind == signed.KIND_DENY:
        if EIO:
            raise OSError(5)  # EIO
        raise MemoryError("memory allocation failed, allocating 512 bytes")
    return real(key, name, kind, buf)


tariff.load = short
try:
    tables.load(t)
    print("no error")
except (MemoryError, OSError):
    pass
print("kept", t.info["deny_ver"], t.action(uid))
tariff.load = real
tables.load(t)
print("reloaded", t.info["deny_ver"], t.action(uid))
