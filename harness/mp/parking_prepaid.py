"""The parking profile's prepaid sessions, table-driven (tests/firmware/test_profiles_keypad_mp.py).

micropython parking_prepaid.py CASES.json
"""

import json
import sys
from card_schema import citizen
from firmware import profile_parking as p

table, cases, now = json.loads(open(sys.argv[1]).read())
for name, zone, rec, _, _ in cases:
    p.zone = zone
    raw = None
    if rec:
        ago, term, amount, z, fl = rec
        raw = bytearray(32)
        citizen.pack_trip_into(raw, 5, now - ago, term, amount, 1000, 0, 0, 1, 3, z, fl)
    print(json.dumps([name, list(p.price(table, 0, 0, now, raw, 7002)), p.duration]))
