"""`tapkit flash` on a virtual board, its USB serial paced at 115,200 baud (an ESP32-DevKitC's
bridge) and its watchdog as strict as the chip's (emulator/vboard.py: it runs in the REPL too,
fed only by the firmware's keeper, firmware/keep.py):

- the first flash of a blank board (plain MicroPython: no watchdog yet), every file copied;
- a re-flash of the running terminal (nothing to copy; its console locked, as `tapkit flash`
  leaves it: unlocked by MAINT first), its watchdog running from the Ctrl-C on;
- watchdog resets during both (any is a failure: a real board would have reset mid-flash);
- then a config push of an 8 KB table (a 1,024-card deny list, `tapkit sync`'s INSTALL chunks)
  over the same paced line: the bytes the console's 259-byte ring buffer lost (must be 0).

data: {"first_s", "files", "reflash_s", "copied" (by the re-flash: 0), "watchdog_resets",
"config_push_s", "config_push_bytes", "console_lost" (bytes lost in the push: 0)}.
"""

import os
import tempfile
import time

from bench import row

SECTION = "flash"
BOARD = "unix-virtual"


def _push_8k_table(vb, ks, d):
    """`tapkit sync` of a terminal whose store holds an 8 KB deny list: (seconds, bytes, lost)."""
    from card_schema import signed, tariff
    from host_tools.backoffice import store as store_mod
    from host_tools.fleet import link as link_mod
    from host_tools.fleet import sync

    payload = tariff.pack_deny(
        {bytes([4]) + (0xA00000 + i).to_bytes(6, "big"): 1 for i in range(1024)}
    )
    with store_mod.open_store("sqlite:///%s" % os.path.join(d, "t.db")) as db:
        db.put_config(signed.KIND_DENY, 5, payload)
        lost0 = vb.console_lost
        t = time.monotonic()
        with link_mod.SerialLink(vb.port, timeout=10.0) as link:
            summary = sync.sync_terminal(link, db, ks)
            took = time.monotonic() - t
            if link.identify()["deny_ver"] != 5:
                raise RuntimeError("config push: the deny list was not installed: %r" % summary)
    return round(took, 1), len(payload), vb.console_lost - lost0


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
            time.sleep(2)  # the re-flashed terminal is up (flash_board saw it healthy)
            push_s, push_bytes, lost = _push_8k_table(vb, ks, d)
            resets = [ln for ln in vb.lines(0) if ln.startswith("RESET| watchdog")]
        finally:
            vb.stop()
    return {
        "first_s": round(first_s, 1),
        "files": r["files"],
        "copied": r2["copied"],
        "reflash_s": round(reflash_s, 1),
        "watchdog_resets": len(resets),
        "config_push_s": push_s,
        "config_push_bytes": push_bytes,
        "console_lost": lost,
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
        row(
            SECTION,
            "config push of an 8 KB table (%d B deny list, tapkit sync)" % m["config_push_bytes"],
            m["config_push_s"],
            "s",
            "INSTALL chunks over the same 115,200-baud line",
        ),
        row(
            SECTION,
            "bytes the console's 259-byte buffer lost in that push",
            m["console_lost"],
            "B",
            "must be 0",
        ),
    ]
    if m["watchdog_resets"] or m["copied"] or m["console_lost"]:
        m["fails"] = [
            "flash: %d watchdog resets, the re-flash copied %d, the config push lost %d B"
            % (m["watchdog_resets"], m["copied"], m["console_lost"])
        ]
    return rows, m
