"""The ESP32 keypad matrix and buttons (firmware/hal_esp32.py) with the ESP32 modules faked
(tests/fakes), step by step (tests/firmware/test_hal_esp32_keypad.py).

steps: [wait ms, polls, closed matrix switches [[row pin, col pin]], button levels {pin: level}];
per step: the keys poll() gave. With "taxi", the keys also go to firmware.profile_taxi.key.
"""

import sys
import json
import time
import machine
from firmware import hal

b = hal.load(sys.argv[1])
steps = json.loads(sys.argv[2])
if sys.argv[3] == "taxi":
    from firmware import msg, profile_taxi as taxi

    msg.setup({})
else:
    taxi = None  # type: ignore[assignment]


class Term:
    def show(self, l1, l2=""):
        pass


out = {"errors": b.errors, "keys": [], "fare": None}
for wait, polls, closed, levels in steps:
    pressed = machine.pressed  # type: ignore[attr-defined]  # the fake machine (tests/fakes)
    pins = machine.levels  # type: ignore[attr-defined]
    pressed.clear()
    pins.clear()
    for r, c in closed:
        pressed.add((r, c))
    for p in levels:
        pins[int(p)] = levels[p]
    time.sleep_ms(wait)
    got = ""
    for _i in range(polls):
        k = b.keypad.poll()
        if k:
            got += k
            if taxi:
                taxi.key(Term(), k)
    out["keys"].append(got)
if taxi:
    out["fare"] = [taxi.remaining, taxi.shares]
print(json.dumps(out))
