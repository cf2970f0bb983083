"""The watchdog's maintenance keeper (see firmware/hal_esp32.py): machine.WDT cannot be stopped once
the firmware started it, and in the REPL (mpremote, `tapkit flash`: a first flash over 115,200
baud outlasts its 8 s) nothing feeds it. `keep()` feeds it from the hardware Timer 0 for board.json
wdt.keep_s (300) seconds, then stops feeding, and the watchdog resets the board back into service.

Imported only on the way into the REPL (app.run's Ctrl-C; boot.py after a soft reset, which stops
the timers and leaves a watchdog the firmware started running) and forgotten by boot.py: a tap
never holds it. The firmware's own build (hal_esp32, hal_unix) stops the keeper's timer: its main
loop feeds from then on.

The virtual board (board.json wdt.heartbeat: the firmware's feed touches that host file) plays
Timer 0 in its host, across its REPL and firmware programs: keep() writes the window's seconds to
<host>/keep, and the host touches the heartbeat while the window lasts (emulator/vboard.py).
"""

import json
import time

from micropython import const

TIMER = const(0)  # machine.Timer id of the keeper (hal_esp32.build stops it)
_KEEP_S = const(300)


def keep(board_path="board.json", seconds=None):
    """Feed the watchdog from Timer 0 for `seconds` (default board.json wdt.keep_s) and return the
    timer (the virtual board: the seconds). Never raises (None): the REPL must come up all the
    same."""
    try:
        with open(board_path) as f:
            w = json.load(f).get("wdt", {})
        n = int(w.get("keep_s", _KEEP_S) if seconds is None else seconds)
        if w.get("heartbeat"):  # the virtual board: its host plays Timer 0
            import os

            host = os.getenv("TAPKIT_HOST") or board_path[: board_path.rfind("/") + 1]
            with open(host + "keep", "w") as f:
                f.write("%d\n" % n)
            return n
        import machine

        wdt = machine.WDT(timeout=int(w.get("timeout_ms", 8000)))
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
