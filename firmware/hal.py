"""The board layer: read boards/<name>/board.json and build the parts the firmware drives.

    from firmware import hal
    board = hal.load("board.json")
    board.display.show("Tap your card", "3,000 Rial")
    line = board.console.poll_line()       # a complete line from the USB serial, or None
    board.flash.program(0, b"...")          # the journal region (Flash protocol)
    board.wdt.feed()

`Board` attributes: name, platform, reset_cause ("power-on", "watchdog", ...), uart (PN532 wire:
write, read, readinto, any), flash (size, SECTOR, PAGE, read, program, erase), wdt (feed), console
(poll_line, write), display (show), buzzer (beep), led (set), clock (time, set), net (connect,
isconnected; None without a network), errors (what failed while building the board: a dead part never
stops the boot). Methods: log(msg), stat(msg) (diagnostics lines on stderr), part(what, build, *args)
(for the builders).

display, buzzer and led are the Board itself: text lines on stderr (`DISPLAY| line1 | line2`,
`BUZZER|ok`, `LED|green`; the virtual board shows them), and on a board with real parts the platform
sets the hooks `sound(pattern)` and `drive(color)` (an ESP32 panel driver, SSD1306, comes with the UI
issue; until then the display is the text line only).

`firmware.hal_<platform>` (esp32, unix) builds the platform parts (uart, flash, wdt, net, the buzzer and
LED hooks); the parts that are the same everywhere (console, text UI, clock) are built here. Every
class and method costs RAM on the board (a class ~300 bytes, a method ~100 plus its code), so the module
keeps to what the firmware uses.
"""

import json
import select
import sys
import time

from micropython import const

_LINE_MAX = const(1100)  # longest console line kept (sync frames are <= 1024 bytes + newline)
_POLL_BYTES = const(256)  # bytes taken from the console per poll_line() call (bounded work)
_ENODEV = const(19)
_POLLIN = const(0x0001)  # select.POLLIN (the same on every port)


def load(board_path="board.json"):
    """Read the board definition and build its Board with firmware.hal_<platform>.build(spec, base)
    (an unknown platform is an ImportError naming the module it looked for)."""
    with open(board_path) as f:
        spec = json.load(f)
    mod = __import__("firmware.hal_" + str(spec.get("platform")), None, None, ("build",))
    return mod.build(spec, board_path[: board_path.rfind("/") + 1])


def join(base, name):
    """The path of `name` beside board.json: base is its directory with a trailing "/" (or "")."""
    return name if name.startswith("/") else base + name


class Board:
    """The parts of one board. The platform's build() sets uart, flash, wdt, net and the UI hooks."""

    sound = None  # buzzer hook: sound(pattern)
    drive = None  # LED hook: drive(color)
    keypad = None  # keys and buttons: poll() -> one key ("0".."9", "*", "#", "A".."D") or None

    def __init__(self, spec, platform, base, reset_cause="unknown", ok=1):
        self.name = spec.get("name", "?")
        self.platform = platform
        self.errors = []
        self.reset_cause = reset_cause  # the platform says why it booted
        self.uart = self.flash = self.wdt = self.net = None
        self.console = Console()
        self.display = self.buzzer = self.led = self
        self.clock = Clock(join(base, spec.get("clock", {}).get("file", "clock.json")), ok)

    def part(self, what, build, *args):
        """build(*args); a failure is recorded in `errors` and None stands in."""
        try:
            return build(*args)
        except Exception as e:  # a missing reader or display must not stop the boot
            self.errors.append("%s: %s %s" % (what, type(e).__name__, e))

    def log(self, msg):
        _err_line("LOG| ", msg)

    def stat(self, msg):
        _err_line("STAT| ", msg)

    def show(self, line1, line2=""):
        _err_line("DISPLAY| ", line1 + " | " + line2)

    def beep(self, pattern):
        _err_line("BUZZER|", pattern, self.sound)

    def set(self, color):
        _err_line("LED|", color, self.drive)


def _err_line(prefix, msg, hook=None):
    """One text line on stderr (what the virtual board shows), then the hardware hook, if any."""
    try:
        sys.stderr.write(prefix + msg + "\n")
    except Exception:  # the console is gone (host closed the pty): nothing to tell
        pass
    if hook is not None:
        try:
            hook(msg)
        except Exception:  # a flaky buzzer or LED must not stop a tap
            pass


class DeadUART:
    """Stands in for a reader wire that could not be opened: every call raises OSError(ENODEV) (the
    reason is in Board.errors)."""

    def write(self, *a):
        raise OSError(_ENODEV)

    read = readinto = any = write


class Console:
    """Non-blocking line reader on the USB serial / REPL port (sys.stdin), writer on sys.stdout.

    `poll_line()` never blocks: it takes what is waiting (at most _POLL_BYTES per call) and returns one
    complete line without its newline, or None. A line longer than the buffer is dropped whole (noise,
    not a frame). Ctrl-C still reaches the REPL: the port's driver turns it into KeyboardInterrupt.
    """

    def __init__(self):
        self._in = sys.stdin.buffer
        # the USB serial / stdout is unbuffered on every port: write(bytes) goes out at once
        self.write = sys.stdout.buffer.write
        self._buf = bytearray(_LINE_MAX)
        self._one = bytearray(1)
        self._n = (
            0  # bytes of the line so far; -1 inside an overlong line (dropped to its newline)
        )
        self._poll = None  # no pollable stdin (detached): the console stays silent
        try:
            p = select.poll()
            p.register(self._in, _POLLIN)
            self._poll = p
        except Exception:
            pass

    def poll_line(self):
        buf = self._buf
        for _ in range(_POLL_BYTES):
            if self._poll is None:
                return None
            ev = self._poll.poll(0)
            if not ev:
                return None
            if not ev[0][1] & _POLLIN or not self._in.readinto(self._one):
                self._poll = None  # hang-up or EOF (the host side closed): stop polling a dead fd
                return None
            c = self._one[0]
            n = self._n
            if c == 0x0A:
                self._n = 0
                if n < 0:
                    continue  # the end of an overlong line
                if n and buf[n - 1] == 0x0D:
                    n -= 1
                return bytes(memoryview(buf)[:n])
            if n < 0:
                continue
            if n >= _LINE_MAX:
                self._n = -1
                continue
            buf[n] = c
            self._n = n + 1
        return None


class Clock:
    """Unix seconds: the platform clock plus an offset that `set(unix)` persists in a small file.

    `ok` is 1 while the clock was set since power-up. A power-on reset restarts the ESP32's RTC
    timer (`ok=0` here; the virtual board says so for a power cut): the clock then runs on from the
    last time that was set (never below it) and `ok` stays 0 until the next set (a sync, an upload,
    the board's RTC chip at boot: firmware/clock.py, a subclass only a board with one loads). The
    journal marks every record written meanwhile (card_schema.taprecord_host.FLAG_CLOCK_UNSET);
    `ok` is kept in the file, so a soft or watchdog reset in between does not clear it. Names here
    are ones the board has already (qstrs: a Wi-Fi board is near the qstr pool's next growth).
    """

    def __init__(self, path, ok=1):
        self.path = path
        self.offset = 0
        self.floor = 0
        self.ok = 1
        try:
            with open(path) as f:
                d = json.load(f)
            self.offset = int(d["offset"])
            self.floor = int(d["floor"])
            self.ok = int(d.get("ok", 1))
        except Exception:  # no file yet, or a damaged one: start from the platform clock
            pass
        if not ok:
            self.set(self.floor, 0)

    def time(self):
        return max(int(time.time()) + self.offset, self.floor)

    def set(self, unix, ok=1):
        self.floor = unix = int(unix)
        self.offset = unix - int(time.time())
        self.ok = ok
        import firmware
        from firmware import store  # a clock set is rare (a sync, an upload): loaded for it (RAM)

        try:
            store.save(self.path, {"offset": self.offset, "floor": unix, "ok": ok})
        except OSError:
            pass  # read-only fs: the clock is still right until the next reset
        finally:
            firmware.forget("store")
        return unix
