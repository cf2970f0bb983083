"""A DS3231 real-time clock on an I2C bus, file-backed: the virtual board's battery-backed RTC.

Runs on CPython (tests, the board host) and on the MicroPython unix port, where the virtual board
deploys it as a board module (`import ds3231`) standing in for `machine` on the I2C path: the
firmware calls `ds3231.I2C(0, scl=ds3231.Pin(22), sda=ds3231.Pin(21)).readfrom_mem(0x68, ...)` as
it calls `machine.I2C(...)` on an ESP32 (firmware/rtc.py).

The chip, as its datasheet says: 19 registers; 0x00..0x06 time and date in BCD (seconds, minutes,
hours with bit 6 = 12-hour mode and bit 5 = PM, day of week 1..7, date, month with bit 7 = century,
year 00..99), 0x07..0x0D alarms, 0x0E control (power-up 0x1C), 0x0F status (bit 7 OSF: the
oscillator stopped, set at first power-up and cleared only by writing 0), 0x10 aging, 0x11/0x12
temperature. The register pointer auto-increments and wraps from 0x12 to 0x00; a read latches the
time once, at its START, so a burst is consistent. The time counts with the host clock from when it
was written. Another address NACKs: OSError(19) (ENODEV, as MicroPython's I2C raises).

State (the chip's battery-backed memory) is a JSON file, by default $TAPKIT_HOST/ds3231.json (the
board host's state dir): {"t": chip seconds since 2000-01-01 at host time "at", "regs": the other
registers, "battery": 0/1}. `power_cut(path)` is the board host's: without a battery the chip
forgets everything and powers up again at 2000-01-01 00:00:00 with OSF set.
"""

import json
import os
import time

ADDR = 0x68
_Y2K = 946684800  # 2000-01-01 00:00:00 UTC in unix seconds
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _bcd(n):
    return ((n // 10) << 4) | (n % 10)


def _dec(b):
    return (b >> 4) * 10 + (b & 15)


def _to_regs(t):
    """Time registers 0x00..0x06 of t seconds since 2000-01-01 (24-hour mode)."""
    days, sod = t // 86400, t % 86400
    dow = (days + 5) % 7 + 1  # 2000-01-01 was a Saturday: 6 (1 Monday .. 7 Sunday)
    y = 2000
    while days >= (366 if _leap(y) else 365):
        days -= 366 if _leap(y) else 365
        y += 1
    m = 0
    while True:
        n = _MDAYS[m] + (1 if m == 1 and _leap(y) else 0)
        if days < n:
            break
        days -= n
        m += 1
    cent = 0x80 if y >= 2100 else 0
    return [
        _bcd(sod % 60),
        _bcd(sod // 60 % 60),
        _bcd(sod // 3600),
        dow,
        _bcd(days + 1),
        _bcd(m + 1) | cent,
        _bcd(y % 100),
    ]


def _from_regs(r):
    """Seconds since 2000-01-01 of time registers (12- or 24-hour mode)."""
    if r[2] & 0x40:
        h = _dec(r[2] & 0x1F) % 12 + (12 if r[2] & 0x20 else 0)
    else:
        h = _dec(r[2] & 0x3F)
    y = 2000 + _dec(r[6]) + (100 if r[5] & 0x80 else 0)
    m = _dec(r[5] & 0x1F)
    days = _dec(r[4] & 0x3F) - 1
    for yy in range(2000, y):
        days += 366 if _leap(yy) else 365
    for mm in range(m - 1):
        days += _MDAYS[mm] + (1 if mm == 1 and _leap(y) else 0)
    return days * 86400 + h * 3600 + _dec(r[1] & 0x7F) * 60 + _dec(r[0] & 0x7F)


def _path(path=None):
    return path or os.getenv("TAPKIT_DS3231") or (os.getenv("TAPKIT_HOST") or "") + "ds3231.json"


def _fresh():
    # power-up state: 2000-01-01 00:00:00, control 0x1C (INTCN, RS2, RS1), status OSF
    regs = [0] * 19
    regs[0x0E] = 0x1C
    regs[0x0F] = 0x88  # OSF, EN32kHz
    regs[0x11] = 25  # 25.00 degrees C
    return {"t": 0, "at": int(time.time()), "regs": regs, "battery": 1}


def load(path=None):
    try:
        with open(_path(path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return _fresh()


def save(state, path=None):
    # in place, no rename: the unix port's VfsPosix (the board's /_host) renames outside its root
    with open(_path(path), "w") as f:
        f.write(json.dumps(state))


def now(state):
    """The chip's seconds since 2000-01-01 at this moment."""
    return state["t"] + int(time.time()) - state["at"]


def power_cut(path=None, battery=None):
    """The board loses power: with a battery the chip keeps counting; without one it starts again
    from its power-up state. `battery` (0/1) changes the battery first (removed, fitted)."""
    s = load(path)
    if battery is not None:
        s["battery"] = int(battery)
    if not s.get("battery", 1):
        s = dict(_fresh(), battery=0)
    save(s, path)


def set_unix(unix, path=None):
    """The chip set to unix seconds, OSF cleared (what a host with a programmer would do)."""
    s = load(path)
    s["t"], s["at"] = int(unix) - _Y2K, int(time.time())
    s["regs"][0x0F] &= 0x7F
    save(s, path)


def unix_of(path=None):
    """The chip's time as unix seconds, and whether OSF is set (its time not valid)."""
    s = load(path)
    return now(s) + _Y2K, bool(s["regs"][0x0F] & 0x80)


class Pin:
    def __init__(self, n, *a, **k):
        self.n = n


class I2C:
    """The bus, machine.I2C's signature; the DS3231 at ADDR is the only device on it."""

    def __init__(self, bus_id=0, scl=None, sda=None, freq=400000, path=None):
        self.path = path

    def scan(self):
        return [ADDR]

    def _chip(self, addr):
        if addr != ADDR:
            raise OSError(19)  # ENODEV: nobody acknowledged the address
        return load(self.path)

    def readfrom_mem(self, addr, reg, n):
        s = self._chip(addr)
        regs = _to_regs(now(s)) + s["regs"][7:]
        return bytes(regs[(reg + i) % 19] for i in range(n))

    def readfrom_mem_into(self, addr, reg, buf):
        buf[:] = self.readfrom_mem(addr, reg, len(buf))

    def writeto_mem(self, addr, reg, buf):
        s = self._chip(addr)
        regs = _to_regs(now(s)) + s["regs"][7:]
        touched = False
        for i, b in enumerate(bytes(buf)):
            r = (reg + i) % 19
            if r in (0x11, 0x12):
                continue  # temperature: read only
            if r == 0x0F:
                b = (regs[r] & b & 0x80) | (b & 0x0B)  # OSF can only be cleared; BSY reads 0
            regs[r] = b
            touched = touched or r < 7
        if touched:  # writing the time registers restarts the seconds from what was written
            s["t"], s["at"] = _from_regs(regs), int(time.time())
        s["regs"] = [0] * 7 + regs[7:]
        save(s, self.path)
