"""Board parts of the virtual board (MicroPython unix port), see firmware.hal.

- reader UART: firmware.uart_socket.SocketUART to the PN532 emulator; the port comes from board.json
  (emulator.vboard writes it there), or when that says 0 from $TAPKIT_PN532_PORT.
- flash: `norflash.NORFlash(file, size)`, the NOR model the virtual board deploys as its "chip".
- watchdog: `SoftWDT`; nothing can interrupt a stalled VM from inside, so the watchdog is outside:
  `feed()` writes a heartbeat file (when configured, at most once a second) that the board host
  watches (board.json `wdt.timeout_ms` is its limit). It keeps watching in the REPL, as an ESP32's
  machine.WDT does: the keeper (firmware/keep.py) has the host feed it for a while; build() stops
  that (removes <host>/keep, the host's Timer 0).
- keypad / buttons (board.json ui.keypad): `KeyFile`, keys the board host appends to a file.
- display, buzzer, LEDs: text lines on stderr (`DISPLAY| ..`, `BUZZER|..`, `LED|..`), see hal.Board.
- clock: the host's, which never stops; $TAPKIT_CLOCK_LOST (the board host's power cut) makes the
  boot one that lost it (hal.Clock); board.json "clock" with "bus": "ds3231" is the emulated DS3231
  (emulator/ds3231.py deployed as the board module `ds3231`, standing in for machine's I2C and Pin).
- net: None, no network (sync goes over the USB serial); board.json "net": {"loopback": true} gives the
  virtual board "Wi-Fi" that is the host's loopback, always up (firmware/wifi.py uploads through it).
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


class KeyFile:
    """The virtual board's keypad: the board host appends the pressed keys to a file
    (emulator.vboard `press`); `poll()` returns the next one or None. Keys pressed before boot are
    gone, as on a real keypad."""

    def __init__(self, path):
        open(path, "ab").close()
        self.f = open(path, "rb")
        self.f.seek(0, 2)
        self.b = bytearray(1)

    def poll(self):
        if not self.f.readinto(self.b):
            return None
        k = chr(self.b[0])
        c = k if k > " " else "\\x%02x" % self.b[0]  # a taximeter line's "\n": one log line
        hal._err_line("KEY|", "%s %d" % (c, self.f.tell()))  # taken: the board host sees how far
        return k


def _uart(r):
    import os

    from firmware.uart_socket import SocketUART

    port = r.get("port") or os.getenv("TAPKIT_PN532_PORT")
    if not port:
        raise OSError(19, "PN532 port unknown: set TAPKIT_PN532_PORT")  # ENODEV
    return SocketUART(
        r.get("host", "127.0.0.1"), int(port), timeout_ms=int(r.get("timeout_ms", 100))
    )


def _host(base, name):
    """Where a file the board host watches lives (journal, heartbeat, keypad): the virtual board
    mounts its host state dir at $TAPKIT_HOST ("/_host/"), beside its littlefs image at "/"."""
    import os

    return hal.join(os.getenv("TAPKIT_HOST") or base, name)


def _flash(j, base):
    import norflash

    return norflash.NORFlash(_host(base, j.get("file", "flash.bin")), int(j.get("size", 262144)))


def _loopnet():
    class LoopNet:  # made only on a board with "net": no cost on the others
        def connect(self, ssid, password=None):
            return True

        def isconnected(self):
            return True

    return LoopNet()


def build(spec, base=""):
    import os

    cause = os.getenv("TAPKIT_RESET_CAUSE") or "power-on"  # the virtual board says why
    # the host's clock never stops; the virtual board says when its power cut lost the time
    lost = os.getenv("TAPKIT_CLOCK_LOST")
    b = hal.Board(spec, "unix", base, cause, 0 if lost else 1)
    b.uart = b.part("reader", _uart, spec.get("reader", {})) or hal.DeadUART()
    b.flash = b.part("journal", _flash, spec.get("journal", {}), base)
    hb = spec.get("wdt", {}).get("heartbeat")
    if hb:
        try:  # = machine.Timer(0).deinit(): the keeper boot.py started (firmware/keep.py) stops
            os.remove(_host(base, "keep"))
        except OSError:
            pass
    b.wdt = SoftWDT(_host(base, hb) if hb else None)
    if spec.get("net"):
        b.net = b.part("net", _loopnet)
    kp = spec.get("ui", {}).get("keypad")
    if kp:
        b.keypad = b.part("keypad", KeyFile, _host(base, kp.get("file", "keypad")))
    c = spec.get("clock", {})
    if c.get("addr"):  # an RTC chip at that I2C address: firmware/clock.py's Clock, only there
        from firmware import clock

        b.clock = b.part("clock", clock.Clock, b.clock, c, lost) or b.clock
    return b
