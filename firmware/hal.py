"""The board layer: read boards/<name>/board.json and build the parts the firmware drives.

    from firmware import hal
    board = hal.load("board.json")
    board.display.show("Tap your card", "3,000 Rial")
    line = board.console.poll_line()       # a complete line from the USB serial, or None
    board.flash.program(0, b"...")          # the journal region (Flash protocol)
    board.wdt.feed()

`Board` attributes: name, platform, spec (the parsed JSON), profile, uart (PN532 wire: write, read,
readinto, any), flash (size, SECTOR, PAGE, read, program, erase), wdt (feed), console (poll_line, write),
display (show), buzzer (beep), led (set), clock (time, set), net (connect, isconnected), errors (what
failed while building the board: a dead part never stops the boot). Methods: reset_cause(), free_heap(),
log(msg), stat(msg).

The platform modules (firmware.hal_esp32, firmware.hal_unix) build the platform parts; the parts that
are the same everywhere (console, text UI, clock) live here.
"""

import gc
import json
import select
import sys

from card_schema.compat import const

_LINE_MAX = const(1100)  # longest console line kept (sync frames are <= 1024 bytes + newline)
_POLL_BYTES = const(256)  # bytes taken from the console per poll_line() call (bounded work)
_ENODEV = const(19)

# platform name -> module that builds its parts (a table, not an if-ladder)
PLATFORMS = {"esp32": "firmware.hal_esp32", "unix": "firmware.hal_unix"}


class HALError(Exception):
    pass


def load(board_path="board.json"):
    """Read the board definition and build its Board."""
    try:
        with open(board_path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise HALError("board definition %s: %s" % (board_path, e))
    plat = spec.get("platform")
    modname = PLATFORMS.get(plat)
    if modname is None:
        raise HALError("unknown platform %r in %s" % (plat, board_path))
    mod = __import__(modname, None, None, ("build",))
    return mod.build(spec, _dirname(board_path))


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else ("/" if i == 0 else "")


def join(base, name):
    """base/name unless name is absolute or base is empty."""
    if not base or name.startswith("/"):
        return name
    return base + "/" + name


class Board:
    def __init__(self, spec, platform):
        self.spec = spec
        self.name = spec.get("name", "?")
        self.platform = platform
        self.profile = spec.get("profile", "bus")
        self.errors = []
        self.uart = None
        self.flash = None
        self.wdt = None
        self.console = None
        self.display = None
        self.buzzer = None
        self.led = None
        self.clock = None
        self.net = None
        self._reset_cause = "unknown"

    def part(self, what, build, fallback=None):
        """Build one part; a failure is recorded in `errors` and `fallback` stands in."""
        try:
            return build()
        except Exception as e:  # a missing reader or display must not stop the boot
            self.errors.append("%s: %s %s" % (what, type(e).__name__, e))
            return fallback

    def reset_cause(self):
        return self._reset_cause

    def free_heap(self):
        return gc.mem_free() if hasattr(gc, "mem_free") else -1

    def log(self, msg):
        _err_line("LOG| ", msg)

    def stat(self, msg):
        _err_line("STAT| ", msg)


def _err_line(prefix, msg):
    try:
        sys.stderr.write(prefix + msg + "\n")
    except Exception:  # the console is gone (host closed the pty): nothing to tell
        pass


class DeadUART:
    """Stands in for a reader wire that could not be opened: every call raises OSError(ENODEV)."""

    def __init__(self, why):
        self.why = why

    def _fail(self, *a):
        raise OSError(_ENODEV, "reader UART unavailable: %s" % self.why)

    write = _fail
    read = _fail
    readinto = _fail
    any = _fail


class Console:
    """Non-blocking line reader on the USB serial / REPL port (sys.stdin), writer on sys.stdout.

    `poll_line()` never blocks: it takes what is waiting (at most _POLL_BYTES per call) and returns one
    complete line without its newline, or None. A line longer than the buffer is dropped whole (noise,
    not a frame). Ctrl-C still reaches the REPL: the port's driver turns it into KeyboardInterrupt.
    """

    def __init__(self, stdin=None, stdout=None):
        sin = stdin if stdin is not None else sys.stdin.buffer
        self._in = sin
        self._out = stdout if stdout is not None else sys.stdout.buffer
        self._buf = bytearray(_LINE_MAX)
        self._one = bytearray(1)
        self._n = 0
        self._drop = False  # inside an overlong line: discard until its newline
        self.dropped = 0
        self.eof = False
        try:
            self._poll = select.poll()
            self._poll.register(sin, select.POLLIN)
            self._polling = True
        except (OSError, TypeError, ValueError, AttributeError):
            self._polling = False  # no pollable stdin (detached): the console stays silent

    def _ready(self):
        if not self._polling or self.eof:
            return False
        for ev in self._poll.poll(0):
            if ev[1] & select.POLLIN:
                return True
            if ev[1] & (select.POLLHUP | select.POLLERR):
                self.eof = True
        return False

    def poll_line(self):
        for _ in range(_POLL_BYTES):
            if not self._ready():
                return None
            if not self._in.readinto(self._one):
                self.eof = True  # the host side closed: stop polling a dead fd
                return None
            c = self._one[0]
            if c == 0x0A:
                if self._drop:
                    self._drop = False
                    self._n = 0
                    continue
                n = self._n
                self._n = 0
                if n and self._buf[n - 1] == 0x0D:
                    n -= 1
                return bytes(self._buf[:n])
            if self._drop:
                continue
            if self._n >= _LINE_MAX:
                self._drop = True
                self.dropped += 1
                self._n = 0
                continue
            self._buf[self._n] = c
            self._n += 1
        return None

    def write(self, data):
        raw = data.encode() if isinstance(data, str) else data
        n = self._out.write(raw)
        try:
            self._out.flush()
        except AttributeError:
            pass
        return n


class TextDisplay:
    """The display as text: prints `DISPLAY| line1 | line2` on stderr and keeps the lines.

    On an ESP32 a real panel driver (SSD1306) draws `lines`; the text line stays for the log.
    """

    def __init__(self, draw=None):
        self.lines = ("", "")
        self._draw = draw

    def show(self, line1, line2=""):
        self.lines = (line1, line2)
        _err_line("DISPLAY| ", line1 + " | " + line2)
        if self._draw is not None:
            try:
                self._draw(line1, line2)
            except Exception:  # a flaky panel must not stop a tap
                pass


class TextBuzzer:
    def __init__(self, sound=None):
        self.last = None
        self._sound = sound

    def beep(self, pattern):
        self.last = pattern
        _err_line("BUZZER|", str(pattern))
        if self._sound is not None:
            try:
                self._sound(pattern)
            except Exception:
                pass


class TextLED:
    def __init__(self, drive=None):
        self.color = "off"
        self._drive = drive

    def set(self, color):
        self.color = color
        _err_line("LED|", str(color))
        if self._drive is not None:
            try:
                self._drive(color)
            except Exception:
                pass


class Clock:
    """Unix seconds: the platform clock plus an offset that `set(unix)` persists in a small file.

    A board without a battery-backed RTC loses time on power-off; `time()` then never goes below the
    last time that was set or saved (a later SET_CLOCK from the host corrects it).
    """

    def __init__(self, path, now):
        self.path = path
        self._now = now  # platform seconds (int)
        self.offset = 0
        self.floor = 0
        try:
            with open(path) as f:
                d = json.load(f)
            self.offset = int(d.get("offset", 0))
            self.floor = int(d.get("floor", 0))
        except (OSError, ValueError, AttributeError):
            pass

    def time(self):
        t = self._now() + self.offset
        return max(t, self.floor)

    def set(self, unix):
        unix = int(unix)
        self.offset = unix - self._now()
        self.floor = unix
        try:
            with open(self.path, "w") as f:
                json.dump({"offset": self.offset, "floor": unix}, f)
        except OSError:
            pass  # read-only fs: the clock is still right until the next reset
        return unix
