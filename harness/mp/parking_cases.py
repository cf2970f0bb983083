"""The parking profile's tariff (steps, grace, daily cap, sessions), table-driven
(tests/firmware/test_profiles_parking_mp.py).

    micropython parking_cases.py CASES.json
"""

import json
import sys
from card_schema import citizen
from firmware import profile_parking as p

table, charges, sessions, now, meter = json.loads(open(sys.argv[1]).read())
for name, minutes, _ in charges:
    print(json.dumps([name, p.charge(table["zones"]["1"], minutes)]))
for name, zone, rec, _, _ in sessions:
    p.zone = zone
    raw = None
    if rec:
        kind, ago, term, amount, prof, z, fl = rec
        raw = bytearray(32)
        citizen.pack_trip_into(raw, 5, now - ago, term, amount, 1000, 0, 0, kind, prof, z, fl)
    print(json.dumps([name, list(p.price(table, 0, 0, now, raw, meter)), p.duration]))
