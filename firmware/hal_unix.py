"""Board parts of the virtual board (MicroPython unix port), see firmware.hal.

- reader UART: firmware.uart_socket.SocketUART to the PN532 emulator; the port comes from board.json,
  or when that says 0 from $TAPKIT_PN532_PORT or runtime.json (`pn532_port`) beside board.json.
- flash: `norflash.NORFlash(file, size)`, the NOR model the virtual board deploys as its "chip".
- watchdog: `SoftWDT`; nothing can interrupt a stalled VM from inside, so it is honest about it:
  `feed()` writes a heartbeat file (when configured) that the board host watches, and `check()` raises
  `WatchdogTimeout` when called after the timeout passed without a feed.
- display, buzzer, LEDs: text lines on stderr (`DISPLAY| ..`, `BUZZER|..`, `LED|..`).
- net: no network (`NoNet`).
"""

import json
import os
import time
from time import ticks_diff, ticks_ms

from firmware import hal


class WatchdogTimeout(Exception):
    pass


class SoftWDT:
    def __init__(self, timeout_ms=8000, heartbeat=None):
        self.timeout_ms = timeout_ms
        self.heartbeat = heartbeat
        self.last = ticks_ms()
        self.feeds = 0
        self._beat = self.last

    def feed(self):
        now = ticks_ms()
        self.last = now
        self.feeds += 1
        if self.heartbeat and (self.feeds == 1 or ticks_diff(now, self._beat) >= 1000):
            self._beat = now
            try:
                with open(self.heartbeat, "w") as f:
                    f.write("%d\n" % int(time.time()))
            except OSError:
                pass

    def check(self):
        late = ticks_diff(ticks_ms(), self.last)
        if late > self.timeout_ms:
            raise WatchdogTimeout(
                "main loop stalled %d ms (watchdog %d ms)" % (late, self.timeout_ms)
            )
        return late


class NoNet:
    """The virtual board has no Wi-Fi: sync goes over the USB serial."""

    def connect(self, ssid=None, password=None):
        return False

    def isconnected(self):
        return False

    def status(self):
        return "no network"

    def disconnect(self):
        pass


def _pn532_port(spec_port, base):
    if spec_port:
        return int(spec_port)
    env = os.getenv("TAPKIT_PN532_PORT")
    if env:
        return int(env)
    try:
        with open(hal.join(base, "runtime.json")) as f:
            return int(json.load(f)["pn532_port"])
    except (OSError, ValueError, KeyError):
        raise OSError(19, "PN532 port unknown: set TAPKIT_PN532_PORT")  # ENODEV


def _uart(r, base):
    from firmware.uart_socket import SocketUART

    return SocketUART(
        r.get("host", "127.0.0.1"),
        _pn532_port(r.get("port", 0), base),
        timeout_ms=int(r.get("timeout_ms", 100)),
    )


def _flash(j, base):
    import norflash

    return norflash.NORFlash(
        hal.join(base, j.get("file", "flash.bin")), int(j.get("size", 262144))
    )


def build(spec, base=""):
    b = hal.Board(spec, "unix")
    r = spec.get("reader", {})
    j = spec.get("journal", {})
    w = spec.get("wdt", {})
    b.uart = b.part("reader", lambda: _uart(r, base))
    if b.uart is None:
        b.uart = hal.DeadUART(b.errors[-1])
    b.flash = b.part("journal", lambda: _flash(j, base))
    hb = w.get("heartbeat")
    b.wdt = SoftWDT(int(w.get("timeout_ms", 8000)), hal.join(base, hb) if hb else None)
    b.console = hal.Console()
    b.display = hal.TextDisplay()
    b.buzzer = hal.TextBuzzer()
    b.led = hal.TextLED()
    b.clock = hal.Clock(
        hal.join(base, spec.get("clock", {}).get("file", "clock.json")), lambda: int(time.time())
    )
    b.net = NoNet()
    b._reset_cause = "power-on"
    return b
