"""The ESP32 watchdog's maintenance keeper (firmware/keep.py) with tests/fakes' machine, one
JSON line (tests/firmware/test_hal_esp32.py): boot.py (cwd) starts it after a soft reset only; the
firmware's build stops it; a Ctrl-C in the main loop (main.py around app.run) starts it again, it feeds the WDT from
Timer 0 until board.json wdt.keep_s is over, then stops (the watchdog resets the board into service).

micropython hal_esp32_keep.py  (cwd: board.json, boot.py and main.py; $TAPKIT_FAKE_RESET_CAUSE)
"""

import gc
import json
import sys
import time

import machine

from firmware import hal


def feeds():
    return machine.wdt_feeds[0]  # type: ignore[attr-defined]


def fire():
    machine.fire()  # type: ignore[attr-defined]


out = {}  # type: dict
exec(open("boot.py").read())  # as the port runs it after a reset
out["boot_keeper"] = 0 in machine.Timer.running  # type: ignore[attr-defined]
out["boot_forgot"] = "firmware.keep" not in sys.modules
fire()
out["boot_fed"] = feeds()
hal.load("board.json")  # the firmware starts: its main loop feeds from now on
out["build_stops_it"] = 0 not in machine.Timer.running  # type: ignore[attr-defined]


def ctrl_c(*args):
    raise KeyboardInterrupt  # Ctrl-C in the main loop (the maintenance window)


gc.collect()
from firmware import app  # noqa: E402 - after the board modules: the VM compiles them from source

app.run = ctrl_c
try:
    exec(open("main.py").read(), {"__name__": "__main__"})  # as the port runs it after boot.py
    out["ctrl_c"] = "returned"
except KeyboardInterrupt:
    out["ctrl_c"] = "raised"
out["keeper"] = 0 in machine.Timer.running  # type: ignore[attr-defined]
f0 = feeds()
fire()
fire()
out["fed"] = feeds() - f0
time.sleep(1.2)  # past the board's 1 s window (wdt.keep_s)
fire()
out["after_window"] = [0 in machine.Timer.running, feeds() - f0]  # type: ignore[attr-defined]
print(json.dumps(out))
