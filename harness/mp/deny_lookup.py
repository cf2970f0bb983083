"""The signed deny list (card_schema/tariff.py) verified and looked up on the VM the way the terminal
does it (tests/firmware/test_profiles_bus_mp.py): verified where it lies, searched in the file.

    micropython deny_lookup.py DENY.bin UIDHEX...

Prints "load VERSION" (or "refused REASON"), one "UIDHEX action" line per UID, then "heap B": the
most any one lookup allocated (the same for a list of 10 entries or of 100,000).
"""

import gc
import sys
from card_schema import signed, tariff

key = bytes(range(16))
try:
    v, f, n = tariff.load(key, sys.argv[1], signed.KIND_DENY, bytearray(512))
    n = (n - 4) // tariff.DENY_ENTRY
    print("load", v)
except ValueError as e:
    print("refused", e)
    raise SystemExit
buf = bytearray(8)
most = 0
for uid in sys.argv[2:]:
    u = bytes.fromhex(uid)
    gc.collect()
    a = gc.mem_alloc()
    r = tariff.deny_lookup(f, signed.HEADER + 4, n, u, buf)
    most = max(most, gc.mem_alloc() - a)
    print(uid, r)
print("heap", most)
