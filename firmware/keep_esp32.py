"""The ESP32 watchdog's maintenance keeper (see firmware/hal_esp32.py): machine.WDT cannot be
stopped once started, and in the REPL (mpremote, `tapkit flash`: a first flash over 115,200 baud
outlasts its 8 s) nothing feeds it. `keep()` feeds it from machine.Timer(0) for board.json
wdt.keep_s (300) seconds, then stops feeding, and the watchdog resets the board back into service.

Imported only on the way into the REPL (app.run's Ctrl-C; boot.py after a soft reset, which leaves
a watchdog the firmware started running) and forgotten by boot.py: a tap never holds it. The
firmware's own build (hal_esp32.build) stops the keeper's timer: its main loop feeds from then on.
"""

import json
import time

import machine
from micropython import const

TIMER = const(0)  # machine.Timer id of the keeper (hal_esp32.build stops it)
_KEEP_S = const(300)


def keep(board_path="board.json", seconds=None, soft_only=False):
    """Feed the watchdog from Timer 0 for `seconds` (default board.json wdt.keep_s) and return the
    timer. soft_only (boot.py): only after a soft reset; after any other reset no watchdog runs (and
    making one would start it). Never raises (None): the REPL must come up all the same."""
    try:
        if soft_only and machine.reset_cause() != machine.SOFT_RESET:
            return None
        with open(board_path) as f:
            w = json.load(f).get("wdt", {})
        wdt = machine.WDT(timeout=int(w.get("timeout_ms", 8000)))
        n = int(w.get("keep_s", _KEEP_S) if seconds is None else seconds)
        end = time.ticks_add(time.ticks_ms(), 1000 * n)
        t = machine.Timer(TIMER)

        def feed(_):
            if time.ticks_diff(end, time.ticks_ms()) > 0:
                wdt.feed()
            else:
                t.deinit()  # the window is over: the watchdog resets the board into service

        wdt.feed()
        t.init(period=1000, mode=machine.Timer.PERIODIC, callback=feed)
        return t
    except Exception as e:  # noqa: BLE001 - the way into the REPL must not stop
        print("LOG| watchdog keeper: %s %s" % (type(e).__name__, e))
        return None
