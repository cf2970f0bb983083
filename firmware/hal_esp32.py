"""Board parts of an ESP32 board (boards/esp32-*/board.json), see firmware.hal.

- reader UART: machine.UART(id, baudrate, tx=, rx=, timeout=) wired to the PN532 (HSU mode).
- flash: `PartitionFlash`, the Flash protocol over the data partition labelled in board.json
  (partitions.csv beside it). `readblocks/writeblocks(block, buf, offset)` are the raw extended block
  interface: with an offset, writeblocks programs without erasing (NOR rules), and ioctl(6, block)
  erases one 4 KB block.
- watchdog: machine.WDT (cannot be stopped once started; the main loop feeds it). In the REPL
  nothing would: firmware.keep (imported only on the way there: app.run's Ctrl-C, boot.py
  after a soft reset) feeds it from machine.Timer(0) for board.json wdt.keep_s (300) seconds, then
  lets it reset the board into service; build() stops that timer (the main loop feeds from then on).
- display: the text line (hal.Board); buzzer: PWM on a pin; LED: an RGB LED on three pins (the
  board's sound and drive hooks).
- keypad (board.json ui.keypad: matrix or buttons) and ui.taximeter: firmware.keys_esp32.Keys,
  imported only on a board that has them (a bus validator does not pay its RAM).
- net: network.WLAN(STA_IF).
- clock: a power-on reset restarts the chip's RTC timer, so the clock is unset until a sync sets it
  (hal.Clock), unless board.json "clock" names an RTC chip on a bus ("bus": "machine", a DS3231 on
  machine.I2C: firmware/clock.py, imported only on such a board) with a valid time.

The same module runs on the unix port in CI with tests/fakes (machine, esp32, network) on the path.
"""

import time

import esp32
import machine
import network

from card_schema.compat import const
from firmware import hal

_BLOCK = const(4096)
_PAGE = const(256)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)
_EIO = const(5)

_RESET_NAMES = {
    machine.PWRON_RESET: "power-on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}

_COLORS = {
    "off": (0, 0, 0),
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "yellow": (1, 1, 0),
    "white": (1, 1, 1),
}

_SOUNDS = {  # pattern -> ((freq Hz, ms on, ms off), ...); bounded: at most ~300 ms in total
    "ok": ((2700, 120, 0),),
    "refused": ((800, 120, 60), (800, 120, 0)),
    "error": ((400, 250, 0),),
}


class PartitionFlash:
    """The Flash protocol (size, SECTOR, PAGE, read, program, erase) over an esp32.Partition."""

    SECTOR = 4096
    PAGE = 256

    def __init__(self, part):
        self.part = part
        bs = part.ioctl(_IOCTL_BLOCK_SIZE, 0)
        if bs != _BLOCK:
            raise ValueError("partition block size %d, need 4096" % bs)
        self.size = part.ioctl(_IOCTL_BLOCK_COUNT, 0) * bs
        self.programs = 0
        self.bytes_programmed = 0
        self.erases = 0

    def _range(self, addr, n):
        if addr < 0 or addr + n > self.size:
            raise ValueError("address out of range")

    def read(self, addr, buf):
        self._range(addr, len(buf))
        self.part.readblocks(addr // _BLOCK, buf, addr % _BLOCK)
        return buf

    def program(self, addr, data):
        n = len(data)
        self._range(addr, n)
        if (addr % _PAGE) + n > _PAGE:
            raise ValueError("program crosses a page boundary")
        # with an offset, writeblocks is a raw program (the IDF never erases here)
        self.part.writeblocks(addr // _BLOCK, data, addr % _BLOCK)
        self.programs += 1
        self.bytes_programmed += n

    def erase(self, sector_addr):
        if sector_addr % _BLOCK:
            raise ValueError("erase address not sector aligned")
        self._range(sector_addr, _BLOCK)
        r = self.part.ioctl(_IOCTL_BLOCK_ERASE, sector_addr // _BLOCK)
        if r:
            raise OSError(_EIO, "erase failed at 0x%x" % sector_addr)
        self.erases += 1


def _flash(j):
    label = j.get("partition", "journal")
    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
    if not found:
        raise OSError(19, "no data partition %r (flash the partition table)" % label)  # ENODEV
    f = PartitionFlash(found[0])
    want = j.get("size")
    if want and int(want) != f.size:
        raise ValueError("partition %r is %d bytes, board.json says %d" % (label, f.size, want))
    return f


def _uart(r):
    return machine.UART(
        int(r.get("id", 2)),
        int(r.get("baud", 115200)),
        tx=int(r.get("tx", 17)),
        rx=int(r.get("rx", 16)),
        timeout=int(r.get("timeout_ms", 50)),
        timeout_char=int(r.get("timeout_char_ms", 5)),
    )


class Net:
    """Wi-Fi station: connect(ssid, pw) starts it, isconnected() says when it is up."""

    def __init__(self):
        self.wlan = network.WLAN(network.STA_IF)

    def connect(self, ssid, password=None):
        self.wlan.active(True)
        if not self.wlan.isconnected():
            self.wlan.connect(ssid, password)
        return self.wlan.isconnected()

    def isconnected(self):
        return self.wlan.isconnected()

    def status(self):
        return self.wlan.status()

    def disconnect(self):
        self.wlan.disconnect()


def _buzzer(spec):
    pin = spec.get("pin")
    if pin is None:
        return None
    pwm = machine.PWM(machine.Pin(int(pin), machine.Pin.OUT), freq=2700, duty_u16=0)

    def sound(pattern):
        for freq, on, off in _SOUNDS.get(pattern, ()):
            pwm.freq(freq)
            pwm.duty_u16(32768)
            time.sleep_ms(on)
            pwm.duty_u16(0)
            if off:
                time.sleep_ms(off)

    return sound


def _led(spec):
    if "r" not in spec:
        return None
    pins = [machine.Pin(int(spec[c]), machine.Pin.OUT) for c in ("r", "g", "b")]
    inv = 1 if spec.get("active_low") else 0

    def drive(color):
        rgb = _COLORS.get(color, (0, 0, 0))
        for i in range(3):
            pins[i].value(rgb[i] ^ inv)

    drive("off")
    return drive


def build(spec, base=""):
    cause = _RESET_NAMES.get(machine.reset_cause(), "unknown")
    # a power-on reset starts the RTC timer again: the clock is unset until set (hal.Clock)
    b = hal.Board(spec, "esp32", base, cause, cause != "power-on")
    ui = spec.get("ui", {})
    b.uart = b.part("reader", _uart, spec.get("reader", {})) or hal.DeadUART()
    b.flash = b.part("journal", _flash, spec.get("journal", {}))
    machine.Timer(0).deinit()  # = keep.TIMER: the keeper boot.py started, if any, stops
    b.wdt = machine.WDT(timeout=int(spec.get("wdt", {}).get("timeout_ms", 8000)))
    # display: the text line until the SSD1306 driver comes (UI issue); buzzer and LED are real
    b.sound = b.part("buzzer", _buzzer, ui.get("buzzer", {}))
    b.drive = b.part("led", _led, ui.get("led", {}))
    b.net = b.part("net", Net)
    if "keypad" in ui or "taximeter" in ui:
        from firmware import keys_esp32

        b.keypad = b.part("keypad", keys_esp32.Keys, ui.get("keypad"), ui.get("taximeter"))
    c = spec.get("clock", {})
    if c.get("addr"):  # an RTC chip at that I2C address: firmware/clock.py's Clock, only there
        from firmware import clock

        b.clock = b.part("clock", clock.Clock, b.clock, c, cause == "power-on") or b.clock
    return b
