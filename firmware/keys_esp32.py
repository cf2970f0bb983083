"""ESP32 keypad, buttons and taximeter (board.json ui.keypad, ui.taximeter), see firmware.hal_esp32;
imported only on a board that has them.

- matrix: rows are open-drain outputs (idle released), columns inputs with pull-ups; a poll drives one
  row low at a time and reads the columns. buttons: one pin each, pull-up, active low (or pull-down,
  active high with "active_low": false). A key is reported once per press, after two equal scans on
  consecutive polls (debounce); "keys" maps row * ncols + col (or the button's index) to its character.
- taximeter: machine.UART(id, baud, tx=, rx=, timeout=0), read without waiting; a complete line
  `FARE <Rial>` goes into the key channel as "F<digits>\n" (firmware/profile_taxi.py), one key per
  poll and never split by a key; other, malformed or overlong lines are dropped.
"""

import machine

from micropython import const

_METER_MAX = const(24)  # longest taximeter line kept; longer: noise, dropped


class Keys:
    """Keypad / buttons and the taximeter line: poll() -> the next key or None, never waits."""

    def __init__(self, kp, meter):
        P = machine.Pin
        self.keys = kp.get("keys", "") if kp else ""
        self.rows = []
        self.cols = []
        self.low = 0  # the level of a pressed key on a column / button pin
        if kp and kp.get("type") == "matrix":
            self.rows = [P(int(n), P.OPEN_DRAIN, value=1) for n in kp["rows"]]
            self.cols = [P(int(n), P.IN, P.PULL_UP) for n in kp["cols"]]
        elif kp:
            self.low = 0 if kp.get("active_low", True) else 1
            pull = P.PULL_DOWN if self.low else P.PULL_UP
            self.cols = [P(int(n), P.IN, pull) for n in kp["pins"]]
        self.last = self.sent = -1  # the last scan, the key last reported (-1: none)
        self.uart = None
        if meter:
            self.uart = machine.UART(
                int(meter.get("id", 1)),
                int(meter.get("baud", 9600)),
                tx=int(meter["tx"]),
                rx=int(meter["rx"]),
                timeout=0,
            )
        self.line = bytearray()  # the meter line so far
        self.skip = False  # inside an overlong meter line: dropped to its newline
        self.out = b""  # a meter line going into the key channel, one key per poll
        self.i = 0

    def _scan(self):
        cols = self.cols
        if not self.rows:
            for c in range(len(cols)):
                if cols[c].value() == self.low:
                    return c
            return -1
        for r in range(len(self.rows)):
            row = self.rows[r]
            row.value(0)
            for c in range(len(cols)):
                if not cols[c].value():
                    row.value(1)
                    return r * len(cols) + c
            row.value(1)
        return -1

    def _meter(self, u):
        n = u.any()
        for b in (u.read(n) if n else None) or b"":
            if b != 10 and b != 13:
                if len(self.line) < _METER_MAX:
                    self.line.append(b)
                else:
                    self.skip = True
                continue
            ln = self.line
            if not self.skip and ln[:5] == b"FARE " and ln[5:].isdigit():
                self.out = b"F" + ln[5:] + b"\n"  # the newest complete line wins
                self.i = 0
            self.line = bytearray()
            self.skip = False

    def poll(self):
        u = self.uart
        if u is not None and self.i >= len(self.out):
            self._meter(u)
        if self.i < len(self.out):  # a meter line is never split by a key
            self.i += 1
            return chr(self.out[self.i - 1])
        k = self._scan() if self.cols else -1
        stable = k == self.last
        self.last = k
        if not stable or k == self.sent:
            return None
        self.sent = k
        return self.keys[k] if 0 <= k < len(self.keys) else None
