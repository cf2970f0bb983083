"""The taxi profile's keys and meter lines, table-driven (tests/firmware/test_profiles_keypad_mp.py).

micropython taxi_cases.py CASES.json
"""

import json
import sys
from firmware import msg
from firmware import profile_taxi as p

msg.setup({})


class T:
    table = None

    def show(self, a, b="", s=None):
        pass


t = T()
for name, keys, _ in json.loads(open(sys.argv[1]).read()):
    if keys == "PAID":  # 90,000 split in 3, one share paid, then the meter sends a new fare
        p.key(t, "*")
        for k in "FARE 90000\nB3":
            p.key(t, k)
        p.done(t, 30000)
        keys = "FARE 555\n"
    else:
        p.key(t, "*")
    for k in keys:
        p.key(t, k)
    amount = p.price(None, 0, 0, 0, None, 0)[0]
    print(json.dumps([name, [amount, p.shares, p.total]]))
