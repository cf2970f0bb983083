"""`tapkit flash` on a virtual board, its USB serial paced at 115,200 baud (an ESP32-DevKitC's
bridge) and its watchdog as strict as the chip's (emulator/vboard.py: it runs in the REPL too,
fed only by the firmware's keeper, firmware/keep.py):

- the first flash of a blank board (plain MicroPython: no watchdog yet), every file copied;
- a re-flash of the running terminal (nothing to copy; its console locked, as `tapkit flash`
  leaves it: unlocked by MAINT first), its watchdog running from the Ctrl-C on;
- watchdog resets during both (any is a failure: a real board would have reset mid-flash).

data: {"first_s", "files", "reflash_s", "copied" (by the re-flash: 0), "watchdog_resets"}.
"""

import os
import tempfile
import time

from bench import row

SECTION = "flash"
BOARD = "unix-virtual"


def measure():
    from emulator.vboard import BAUD, VirtualBoard
    from host_tools import keystore
    from host_tools.fleet import flash

    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "issuer.keys"))
        vb = VirtualBoard(os.path.join(d, "board"), baud=BAUD)
        vb.start(blank=True)
        try:
            t = time.monotonic()
            over = {"line": 9, "console_lock": True}  # as `tapkit flash` (a locked console)
            r = flash.flash_board(vb.port, BOARD, ks, 4711, over)
            first_s = time.monotonic() - t
            vb.wait_for("DISPLAY|", timeout=30, since=0)
            time.sleep(2)  # the firmware runs and feeds its watchdog
            t = time.monotonic()
            r2 = flash.flash_board(vb.port, BOARD, ks, None, over)
            reflash_s = time.monotonic() - t
            resets = [ln for ln in vb.lines(0) if ln.startswith("RESET| watchdog")]
        finally:
            vb.stop()
    return {
        "first_s": round(first_s, 1),
        "files": r["files"],
        "copied": r2["copied"],
        "reflash_s": round(reflash_s, 1),
        "watchdog_resets": len(resets),
    }


def run(opts):
    m = measure()
    rows = [
        row(
            SECTION,
            "first flash of a blank board (%d files, 115,200 baud)" % m["files"],
            m["first_s"],
            "s",
            "every file copied and verified, then the reboot and a healthy identify",
        ),
        row(
            SECTION,
            "re-flash, nothing to copy (watchdog running)",
            m["reflash_s"],
            "s",
            "hashes on the board, manifest, reboot",
        ),
        row(SECTION, "watchdog resets during the flashes", m["watchdog_resets"], "", "must be 0"),
    ]
    if m["watchdog_resets"] or m["copied"]:
        m["fails"] = [
            "flash: %d watchdog resets, the re-flash copied %d"
            % (m["watchdog_resets"], m["copied"])
        ]
    return rows, m
