"""The signed deny list (card_schema/tariff.py) looked up on the VM
(tests/firmware/test_profiles_bus_mp.py).

    micropython deny_lookup.py DENY.bin
"""

import sys
from card_schema import signed, tariff

key = bytes(range(16))
try:
    print("load", tariff.load(key, sys.argv[1], signed.KIND_DENY)[0])
except ValueError as e:
    print("refused", e)
    raise SystemExit
v, payload = tariff.load(key, sys.argv[1], signed.KIND_DENY)
n = tariff.deny_count(payload)
buf = bytearray(8)
f = open(sys.argv[1], "rb")
for uid in sys.argv[2:]:
    print(uid, tariff.deny_lookup(f, signed.HEADER + 4, n, bytes.fromhex(uid), buf))
