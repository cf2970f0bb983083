"""Board parts of the virtual board (MicroPython unix port), see firmware.hal.

- reader UART: firmware.uart_socket.SocketUART to the PN532 emulator; the port comes from board.json
  (emulator.vboard writes it there), or when that says 0 from $TAPKIT_PN532_PORT.
- flash: `norflash.NORFlash(file, size)`, the NOR model the virtual board deploys as its "chip".
- watchdog: `SoftWDT`; nothing can interrupt a stalled VM from inside, so the watchdog is outside:
  `feed()` writes a heartbeat file (when configured, at most once a second) that the board host
  watches (board.json `wdt.timeout_ms` is its limit).
- display, buzzer, LEDs: text lines on stderr (`DISPLAY| ..`, `BUZZER|..`, `LED|..`), see hal.Board.
- net: None, no network: sync goes over the USB serial.
"""

import time

from firmware import hal


class SoftWDT:
    def __init__(self, heartbeat):
        self.heartbeat = heartbeat  # file path or None
        self._beat = None  # when the heartbeat file was last written

    def feed(self):
        now = time.ticks_ms()
        if self.heartbeat and (self._beat is None or time.ticks_diff(now, self._beat) >= 1000):
            self._beat = now
            try:
                with open(self.heartbeat, "w") as f:
                    f.write("%d\n" % int(time.time()))
            except OSError:
                pass


def _uart(r):
    import os

    from firmware.uart_socket import SocketUART

    port = r.get("port") or os.getenv("TAPKIT_PN532_PORT")
    if not port:
        raise OSError(19, "PN532 port unknown: set TAPKIT_PN532_PORT")  # ENODEV
    return SocketUART(
        r.get("host", "127.0.0.1"), int(port), timeout_ms=int(r.get("timeout_ms", 100))
    )


def _flash(j, base):
    import norflash

    return norflash.NORFlash(
        hal.join(base, j.get("file", "flash.bin")), int(j.get("size", 262144))
    )


def build(spec, base=""):
    b = hal.Board(spec, "unix", base)
    b.uart = b.part("reader", _uart, spec.get("reader", {})) or hal.DeadUART()
    b.flash = b.part("journal", _flash, spec.get("journal", {}), base)
    hb = spec.get("wdt", {}).get("heartbeat")
    b.wdt = SoftWDT(hal.join(base, hb) if hb else None)
    b.reset_cause = "power-on"
    return b
