"""The rare controls and the production lock: SET_CLOCK, MAINT, the console's Ctrl-C.

Imported when one of them arrives (firmware/serialsync.py) or at boot to lock the console
(firmware/app.py), and forgotten after: a Wi-Fi board's heap has no room for code it runs once a
sync. The state lives in the `auth` list (the Terminal's, which every Responder it loads shares):
[nonce, untagged clock seconds left this boot, (tag, answer) of the last tagged SET_CLOCK, controls
refused, alarm, maintenance (seconds asked, then a 1-tuple deadline in ticks, None when locked)].
"""

import struct
import sys
import time

from card_schema import frames
from card_schema.compat import const, urandom

_MIN_TIME = const(1577836800)  # 2020-01-01: SET_CLOCK refuses anything older (an unset host clock)
_MAINT = const(0x07)  # = card_schema.frames_host.MAINT


def lock(on):
    """The production lock: while on, Ctrl-C on the USB console is a byte like any other (the sync
    protocol ignores it), so neither noise nor a stranger's mpremote stops the firmware; off (an
    authenticated MAINT), the REPL is reachable again."""
    try:
        import micropython

        micropython.kbd_intr(-1 if on else 3)
    except (ImportError, AttributeError):
        pass
    try:  # the virtual board models the UART interrupt from this line
        sys.stderr.write("KBD|locked\n" if on else "KBD|open\n")
    except Exception:  # noqa: BLE001 - the console is gone: nothing to tell
        pass


def maint(r, body, _tagged):
    """MAINT (tagged: `_tagged` is serialsync's check): seconds u16; the answer is them and the
    new nonce."""
    b = _tagged(r, _MAINT, body)
    a = r.auth
    a[5] = frames.unpack("<H", b)[0]
    a[0] = urandom(8)  # a recorded MAINT is never obeyed again
    return bytes(b) + a[0]


def maintain(term, m):
    """Maintenance mode (firmware/app.py calls it while auth[5] is set): the console takes Ctrl-C
    for m s (mpremote, `tapkit flash`), then locks itself again."""
    st = term.auth
    now = time.ticks_ms()
    if isinstance(m, int):
        st[5] = (time.ticks_add(now, m * 1000),)
        lock(False)
        term.board.log("console open for maintenance, %d s" % m)
    elif time.ticks_diff(m[0], now) <= 0:
        st[5] = None
        if term.config.get("console_lock"):
            lock(True)
        term.board.log("console locked again")


def set_clock(r, body, _tagged):
    """SET_CLOCK: tagged, the clock is set, the nonce renewed and the answer is the clock before
    and the new nonce; untagged, only a drift fix (auth[1] seconds in all per boot). The same tagged
    control again (its answer lost) gets the same answer and changes nothing."""
    a = r.auth  # [nonce, untagged seconds left, (tag, answer) of the last, refused, alarm]
    last = a[2]
    if last is not None and len(body) == 4 + 8 and body[4:] == last[0]:
        return last[1]
    b = None if len(body) == 4 else _tagged(r, frames.SET_CLOCK, body)
    unix = frames.unpack("<I", body if b is None else b)[0]
    if unix < _MIN_TIME:
        raise frames.FrameError("clock value %d is before 2020" % unix)
    now = int(r.clock.time())
    if b is None:
        step = abs(unix - now)
        if step > a[1]:
            a[3] += 1  # counted as a refused control: ERR_AUTH, logged
            raise ValueError("untagged clock step of %d s refused" % step)
        a[1] -= step
    r.clock.set(unix)
    out = struct.pack("<I", now & 0xFFFFFFFF)
    if b is not None:
        a[0] = urandom(8)
        out += a[0]
        a[2] = (bytes(body[4:]), out)
    return out
