"""Fake `machine` for the MicroPython unix port: just enough of the ESP32 API (signatures as in
micropython-esp32-stubs) to run firmware.hal_esp32 in CI.

- UART(id, baudrate, ..., tx=, rx=, timeout=, timeout_char=): a TCP client to the host:port in
  $TAPKIT_FAKE_UART<id> or $TAPKIT_FAKE_UART ("127.0.0.1:40123"), e.g. the PN532 emulator or a test
  server. read/readinto wait up to `timeout` ms for the first byte and `timeout_char` ms between bytes.
- WDT(id=0, timeout=5000): feed() records the time; `expired()` says whether a real one would have fired.
- Pin, PWM: remember their state (tests read it back). A test drives inputs with the module-level
  `levels` ({pin id: 0/1}, e.g. a button held low) and `pressed` ({(row pin, col pin)}: closed matrix
  switches; an input reads 0 while a pin it is switched to is an output driven low); otherwise an
  input reads its pull (up 1, down 0).
- reset_cause(): $TAPKIT_FAKE_RESET_CAUSE or PWRON_RESET.
- Timer(id): init(period=, mode=, callback=) / deinit(); one timer per id, as the ESP32's hardware
  timers (a new Timer(0) object's deinit() stops the running one). Nothing fires by itself: a test
  calls `fire()` for one period of every running timer. `wdt_feeds[0]` counts the feeds of any WDT
  object (the chip has one watchdog, whatever object feeds it).
- I2C(id, scl=, sda=, freq=): the bus with a DS3231 on it, the emulated chip (emulator/ds3231.py
  on the path; its state in $TAPKIT_DS3231).
"""

import os
import select
import socket
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause():
    v = os.getenv("TAPKIT_FAKE_RESET_CAUSE")
    return int(v) if v else PWRON_RESET


def I2C(bus_id=0, scl=None, sda=None, freq=400000):
    import ds3231

    return ds3231.I2C(bus_id, scl=scl, sda=sda, freq=freq)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    return 240000000


def idle():
    pass


def reset():
    raise SystemExit("machine.reset()")


def soft_reset():
    raise SystemExit("machine.soft_reset()")


levels = {}  # pin id -> level driven from outside (a test sets it)
pressed = set()  # (pin id, pin id): switches closed between two pins (matrix keys held down)
_pins = {}  # pin id -> the newest Pin made on it


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._v = 0 if value is None else int(bool(value))
        _pins[id] = self

    def _level(self):
        if self.id in levels:
            return levels[self.id]
        for a, b in pressed:
            o = _pins.get(b if a == self.id else a if b == self.id else None)
            if o is not None and o.mode in (Pin.OUT, Pin.OPEN_DRAIN) and not o._v:
                return 0
        return 1 if self.pull == Pin.PULL_UP else 0 if self.pull == Pin.PULL_DOWN else self._v

    def value(self, x=None):
        if x is None:
            return self._level() if self.mode == Pin.IN else self._v
        self._v = int(bool(x))
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0


class PWM:
    def __init__(self, dest, *, freq=0, duty_u16=0, duty_ns=0, invert=False):
        self.pin = dest
        self._freq = freq
        self._duty = duty_u16

    def freq(self, value=None):
        if value is None:
            return self._freq
        self._freq = value
        return None

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        self._duty = value
        return None

    def deinit(self):
        self._duty = 0


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1
    running = {}  # type: dict  # id -> the Timer running on that hardware timer

    def __init__(self, id=-1, **kw):
        self.id = id
        self.callback = None
        if kw:
            self.init(**kw)

    def init(self, *, mode=PERIODIC, period=-1, callback=None, **kw):
        self.mode = mode
        self.period = period
        self.callback = callback
        Timer.running[self.id] = self

    def deinit(self):
        t = Timer.running.pop(self.id, None)
        if t is not None:
            t.callback = None


def fire():
    """One period of every running timer: their callbacks run (a one-shot timer stops)."""
    for t in list(Timer.running.values()):
        cb = t.callback
        if t.mode == Timer.ONE_SHOT:
            t.deinit()
        if cb is not None:
            cb(t)


wdt_feeds = [0]


class WDT:
    def __init__(self, *, id=0, timeout=5000):
        if timeout < 1000:
            raise ValueError("esp32 WDT timeout must be >= 1000 ms")
        self.timeout = timeout
        self.feeds = 0
        self.last = time.ticks_ms()

    def feed(self):
        self.feeds += 1
        wdt_feeds[0] += 1
        self.last = time.ticks_ms()

    def expired(self):
        return time.ticks_diff(time.ticks_ms(), self.last) > self.timeout


def _uart_addr(id):
    v = os.getenv("TAPKIT_FAKE_UART%d" % id) or os.getenv("TAPKIT_FAKE_UART")
    if not v:
        raise OSError(19, "fake UART%d: set TAPKIT_FAKE_UART=host:port" % id)  # ENODEV
    host, port = v.rsplit(":", 1)
    return host, int(port)


class UART:
    def __init__(
        self,
        id,
        baudrate=9600,
        bits=8,
        parity=None,
        stop=1,
        *,
        tx=None,
        rx=None,
        txbuf=None,
        rxbuf=None,
        timeout=0,
        timeout_char=0,
        invert=None,
        flow=None,
        rts=None,
        cts=None,
    ):
        self.id = id
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx
        self.timeout = timeout or 0
        self.timeout_char = timeout_char or 0
        host, port = _uart_addr(id)
        self._sock = socket.socket()
        self._sock.connect(socket.getaddrinfo(host, port)[0][-1])
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._rx = bytearray()
        self.written = 0

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        self.baudrate = baudrate
        if "timeout" in kw:
            self.timeout = kw["timeout"]
        if "timeout_char" in kw:
            self.timeout_char = kw["timeout_char"]

    def deinit(self):
        self._sock.close()

    def _pump(self, wait_ms):
        # take whatever the peer sent, waiting at most wait_ms for the first bytes
        got = False
        for ev in self._poll.poll(wait_ms):
            if ev[1] & select.POLLIN:
                data = self._sock.recv(512)
                if data:
                    self._rx.extend(data)
                    got = True
        return got

    def any(self):
        self._pump(0)
        return len(self._rx)

    def write(self, buf):
        data = bytes(buf)
        self._sock.send(data)
        self.written += len(data)
        return len(data)

    def _take(self, n):
        if not self._rx and not self._pump(self.timeout):
            return None
        while len(self._rx) < n and self._pump(self.timeout_char):
            pass
        k = min(n, len(self._rx))
        out = bytes(self._rx[:k])
        self._rx = self._rx[k:]
        return out

    def read(self, nbytes=None):
        if nbytes is None:
            self._pump(self.timeout)
            if not self._rx:
                return None
            out = bytes(self._rx)
            self._rx = bytearray()
            return out
        return self._take(nbytes)

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        data = self._take(n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def readline(self):
        out = bytearray()
        while True:
            b = self._take(1)
            if not b:
                break
            out.extend(b)
            if b == b"\n":
                break
        return bytes(out) if out else None

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        pass
