"""The board's battery-backed real-time clock: a DS3231 on I2C (board.json "clock": {"file":
"clock.json", "bus": "machine", "chip": "ds3231", "id": 0, "sda": 21, "scl": 22, "addr": 104}, see
docs/architecture.md "The clock"). Imported only on a board that has one: its Clock is the board's
(firmware/hal_esp32.py, hal_unix.py).

    t = clock.read(i2c, 0x68)     # unix seconds, or None: the chip lost its time (OSF set)
    clock.write(i2c, 0x68, t)     # the time registers, then OSF cleared: the time is valid

Registers (DS3231 datasheet, "Timekeeping Registers"): 0x00 seconds, 0x01 minutes, 0x02 hours
(bit 6 set: 12-hour mode, bit 5 PM), 0x03 day of week 1..7, 0x04 date, 0x05 month (bit 7: century),
0x06 year 00..99, all BCD; 0x0F status, bit 7 OSF: the oscillator stopped (first power-up, or both
supply and battery gone) and the time is not valid until written. The chip latches the time
registers on the I2C START, so one 7-byte read is a consistent time. The year is 2000 + year
(+100 with the century bit). Time is UTC.
"""

from micropython import const

from firmware import hal

_STATUS = const(0x0F)
_OSF = const(0x80)


def _bcd(b):
    return (b >> 4) * 10 + (b & 0x0F)


def _b(n):
    return ((n // 10) << 4) | (n % 10)


def _days(y, m, d):
    """Days since 1970-01-01 of a civil date (proleptic Gregorian)."""
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def read(i2c, addr):
    """Unix seconds from the chip, or None when its time is not valid (OSF, or registers that are
    no time: a chip never set)."""
    if i2c.readfrom_mem(addr, _STATUS, 1)[0] & _OSF:
        return None
    r = i2c.readfrom_mem(addr, 0, 7)
    s = _bcd(r[0] & 0x7F)
    mi = _bcd(r[1] & 0x7F)
    if r[2] & 0x40:  # 12-hour mode: 12 AM is 0 h, 12 PM is 12 h
        h = _bcd(r[2] & 0x1F) % 12 + (12 if r[2] & 0x20 else 0)
    else:
        h = _bcd(r[2] & 0x3F)
    d = _bcd(r[4] & 0x3F)
    mo = _bcd(r[5] & 0x1F)
    y = 2000 + _bcd(r[6]) + (100 if r[5] & 0x80 else 0)
    if s > 59 or mi > 59 or h > 23 or not 1 <= d <= 31 or not 1 <= mo <= 12:
        return None
    return ((_days(y, mo, d) * 24 + h) * 60 + mi) * 60 + s


def write(i2c, addr, unix):
    """Set the chip's time (24-hour mode) and clear OSF."""
    unix = int(unix)
    z = unix // 86400 + 719468  # civil from days (the inverse of _days)
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    sod = unix % 86400
    c = 0x80 if y >= 2100 else 0
    i2c.writeto_mem(
        addr,
        0,
        bytes(
            (
                _b(sod % 60),
                _b(sod // 60 % 60),
                _b(sod // 3600),
                (unix // 86400 + 3) % 7 + 1,  # 1 Monday .. 7 Sunday (1970-01-01 was a Thursday)
                _b(d),
                _b(m) | c,
                _b(y % 100),
            )
        ),
    )
    st = i2c.readfrom_mem(addr, _STATUS, 1)[0]
    i2c.writeto_mem(addr, _STATUS, bytes((st & ~_OSF & 0xFF,)))


def _bus(r):
    """(i2c, addr) of the Clock's spec, board.json "clock": id, sda, scl, freq, addr, and bus: the
    module with I2C and Pin (machine; the virtual board's emulated chip: ds3231)."""
    name = r.get("bus", "machine")
    bus = __import__(name)
    if name != "machine":  # the virtual board's chip module: its code goes with this call
        import sys

        sys.modules.pop(name, None)
    i2c = bus.I2C(
        int(r.get("id", 0)),
        scl=bus.Pin(int(r.get("scl", 22))),
        sda=bus.Pin(int(r.get("sda", 21))),
        freq=int(r.get("freq", 400000)),
    )
    return i2c, int(r.get("addr", 0x68))


class Clock(hal.Clock):
    """hal.Clock of a board with an RTC chip (`spec`: its board file's "clock"): built from the
    board's `base` clock; after a power cut (`lost`) the chip's time sets it, unless the chip lost
    it too (then it stays unset, ok 0); every set writes the chip as well."""

    def __init__(self, base, spec, lost):
        self.path, self.offset, self.floor, self.ok = base.path, base.offset, base.floor, base.ok
        self.spec = spec
        if lost:
            i2c, addr = _bus(spec)
            t = read(i2c, addr)
            if t is not None:
                hal.Clock.set(self, t)  # not written back

    def set(self, unix, ok=1):
        unix = hal.Clock.set(self, unix, ok)
        if ok:
            try:
                i2c, addr = _bus(self.spec)
                write(i2c, addr, unix)
            except OSError:
                pass  # the chip does not answer: the clock is right until the next power cut
        return unix
