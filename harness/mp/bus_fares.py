"""The bus profile's price() on the VM, table-driven (tests/firmware/test_profiles_bus_mp.py).

micropython bus_fares.py CASES.json TERMINAL_ID
"""

import json
import sys
from card_schema import citizen
from firmware import profile_bus

table, cases = json.loads(open(sys.argv[1]).read())
for name, line, holder, now, trips, _, _ in cases:
    raw = None
    if trips:
        recs = bytearray(citizen.TRIP_SIZE * len(trips))
        buf = bytearray(citizen.TRIP_SIZE)
        for i, t in enumerate(trips):
            citizen.pack_trip_into(buf, *(t[:9] + [t[9], t[10]]))
            recs[i * 32 : (i + 1) * 32] = buf
        raw = bytes(recs)
    print(
        json.dumps(
            [name] + list(profile_bus.price(table, line, holder, now, raw, int(sys.argv[2])))
        )
    )
