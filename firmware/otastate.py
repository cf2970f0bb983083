"""The small half of firmware updates (firmware/ota.py has the rest and the states): what a running
terminal needs of them, loaded for a moment and forgotten, so that ota.py (its code and its names in
the VM's qstr pool) is loaded only at a boot that has an update's work to do.

    otastate.boot(term)        # at boot (app.py): IDENTIFY's status from ota.json, or ota.boot()
    otastate.board(f, info)    # install.apply: a release for another board refused at once
"""

from card_schema.compat import const
from card_schema.frames import FrameError

_BIN = const("ota.bin")  # = firmware.ota._BIN
_HEADER = const(13)  # = card_schema.signed.HEADER


def _load():
    import json

    try:
        with open("ota.json") as f:
            return json.load(f)
    except OSError:
        return None


def boot(term):
    """At boot (app.py): firmware/ota.py when an update needs the boot (confirm or roll back a set
    on trial, stage a verified release: the heap is whole then, and each of those ends in a reset,
    so its names never stay in a running terminal's qstr pool); otherwise ota.json (a list) gives
    IDENTIFY its status."""
    import os

    try:
        os.stat(_BIN)
    except OSError:
        s = _load()
        if s is None:
            return  # never updated
        if not (s[2] or s[3] or s[4]):
            last = s[6] or (0, 0, "")
            term.info["ota"] = [0, s[1], 0, last[0], last[1], last[2]]
            return
    import firmware

    try:
        firmware.load("ota").boot(term)
    except Exception as e:  # noqa: BLE001 - an update never stops the terminal
        term.log_error("ota", e)


def board(f, info):
    """A release names its board and platform (card_schema/release.py head, bytes 8..31): one for
    another board is refused before it takes any room. The rest is checked by firmware/ota.py."""
    import sys

    f.seek(_HEADER + 8)
    h = f.read(24)
    board = bytes(h[:16]).rstrip(b"\0").decode()
    plat = bytes(h[16:]).rstrip(b"\0").decode()
    me = (info or {}).get("board", "")
    mine = "esp32" if sys.platform == "esp32" else "unix"
    if (board, plat) != (me, mine):
        why = "for board %s (%s), this is %s (%s)" % (board, plat, me, mine)
        if info is not None:  # the status the host sees: [.., last release, result refused, why]
            f.seek(_HEADER + 4)
            o = info.get("ota") or [0, 0, 0]
            info["ota"] = o[:3] + [int.from_bytes(f.read(4), "little"), 3, why]
        raise FrameError("firmware refused: " + why)
