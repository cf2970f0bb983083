"""The virtual board: a terminal's firmware on the MicroPython unix port, wired like an ESP32.

    vb = VirtualBoard("/tmp/bus-1")        # state dir; its fs.img holds the deployed firmware (.mpy)
    vb.start()                             # prints nothing; vb.port is the pty (its "USB serial")
    vb.tap("card-a.json")                  # put a card file into the RF field, wait for the beep
    vb.stop()

What stands for what:
- USB serial -> a pty. The board host relays bytes between the pty master and the firmware's
  stdin/stdout, so `tapkit sync --port /dev/pts/N` (pyserial) talks to it like to /dev/ttyUSB0.
- UART2 + PN532 -> emulator.pn532.PN532Emulator on TCP 127.0.0.1:<port>; the firmware's hal_unix opens
  it through firmware/uart_socket.py. Its RF field holds 0 or 1 emulated card (emulator.card).
- the board's filesystem (its vfs partition) -> <state>/fs.img, a littlefs image (4096-byte blocks,
  the size of the vfs partition in the board's partitions.csv: 1.5 MB, as a DevKitC's) that the firmware and the REPL mount as vfs.VfsLfs2 at "/" (emulator/lfsmount.py, run
  before boot.py and main.py); the host reads and writes it with emulator/lfsimage.py
  (littlefs-python) while the board is off. The files the board host watches stay host files in
  <state>, mounted on the board at "/_host" ($TAPKIT_HOST, see firmware/hal_unix.py): the journal
  flash.bin, the watchdog's heartbeat, the keypad.
- journal flash partition -> <state>/flash.bin, the NOR model (emulator/norflash.py, deployed as the
  board's `norflash` module).
- display, buzzer, LEDs -> the firmware's stderr lines (`DISPLAY| ..`, `BUZZER|..`, `LED|..`),
  written to <state>/display.log and kept for waiting on.
- the MicroPython REPL -> emulator/repl.py, a MicroPython program the host runs on the same port
  when the firmware is not running: Ctrl-C on the serial line interrupts the firmware (SIGINT:
  KeyboardInterrupt) and the board drops into the friendly REPL; raw REPL, raw-paste and soft reset
  (boot.py + main.py again) behave as on an ESP32, so the stock `mpremote connect PORT ...` works.
  The REPL's filesystem is the board's littlefs image, the files the firmware runs from.
- the watchdog (an ESP32's machine.WDT) -> the board host: once the firmware fed it (touched
  <state>/heartbeat) it runs until a power-on or hard reset, in the REPL too; there the firmware's
  keeper (firmware/keep.py) has the host play its Timer 0 (<state>/keep: the host touches the
  heartbeat for that many seconds), then the board resets into service. A blank board never starts it.
- the person at the bus -> the control socket <state>/control.sock (JSON lines), used by
  `tapkit emulate tap`.
"""

import fcntl
import importlib.resources
import json
import os
import re
import signal
import socket
import subprocess
import threading
import termios
import time
import tty

import boards
from emulator import lfsimage
from emulator.card import DESFireCard
from emulator.pn532 import PN532Emulator, RFField
from mpybuild import tools

HERE = str(importlib.resources.files("emulator"))  # repl.py and the board's own modules
DEFAULT_HEAP = "112K"
# the USB-UART bridge to the ESP32's UART0 runs at 115,200 baud: ~11,520 bytes/s each way (8N1);
# every VirtualBoard paces it so by default, as `tapkit emulate board` does (baud=0: as fast as the
# host, a native-USB S2/S3 board). Measured when the default became paced (2026-12-02, a loaded
# 2-core host): the 278 tests that boot virtual boards (tests/e2e, tests/emulator, test_bench) all
# pass paced; the 205 timed both ways took 2,394 s paced, 2,197 s unpaced (+197 s, +9%), 109 s of
# it an 800 KB deny list over USB (tests/e2e/test_deny_capacity.py, which therefore runs unpaced:
# its subject is the flash, and test_vboard's 8 KB push is the paced install)
BAUD = 115200
DEFAULT_BAUD = BAUD
# the ESP32 port's console input: a 260-byte ring buffer (ports/esp32/mphalport.c), 259 usable (one
# slot always empty, py/ringbuf.h); what arrives while it is full is lost
RING = 259
# what the keeper's timer writes to the heartbeat (the firmware's feed writes its time)
_KEEPER_FEED = "keeper\n"
# the board's own modules ("frozen" on the chip: vlib, on the board's path before its /lib), as
# module name -> emulator source: the NOR chip, the storage mount, the RTC chip, and the ESP32
# port's errno numbers (emulator/esp32_errno.py, esp32_socket.py: EINPROGRESS 119, ETIMEDOUT 116...)
VLIB = {
    "norflash": "norflash",
    "lfsmount": "lfsmount",
    "ds3231": "ds3231",
    "errno": "esp32_errno",
    "socket": "esp32_socket",
}
# The heap the stand-in errno and socket (above) cost the firmware, which an ESP32 does not pay
# (both are C modules in flash there), so the board's heap is `heap` plus this and the firmware has
# what it would have on the chip:
# - the modules, measured on a board: the first tap's heap in use (after a collection) with them
#   minus without, 2,592 bytes on a Wi-Fi board (2,528 on a USB one, about as much in an empty
#   VM); 2,880 with the firmware of the watchdog's keeper and the Wi-Fi download (their two
#   entries in sys.modules, whose table grows in steps with the firmware's imports): the refund
#   stays at or below the cost, tests/e2e/test_vboard_esp32_net.py measures it again;
# - a socket's wrapper (esp32_socket.socket around the unix port's), 100 bytes beyond the socket
#   an ESP32 makes: the firmware holds one at a time (tests/emulator/test_esp32_errno.py).
# norflash, lfsmount and ds3231 stand for C drivers too but are not refunded: a little stricter.
REFUND_MODULES = 2592
REFUND_SOCKET = 100
HEAP_REFUND = REFUND_MODULES + REFUND_SOCKET
_TAGGED = re.compile(r"^[A-Z]+\|")  # DISPLAY|, BUZZER|, LOG|, STAT|...: the board's own lines


class BoardError(Exception):
    pass


def micropython_exe():
    exe = tools.find("micropython")
    if not exe:
        raise BoardError(tools.NO_MICROPYTHON)
    return exe


def heap_bytes(heap):
    """`heap` ("112K", "1M" or bytes) in bytes, with the stand-in modules' refund (HEAP_REFUND):
    what the board's MicroPython gets for `-X heapsize`."""
    h = str(heap).strip().upper()
    n = int(h[:-1]) * {"K": 1024, "M": 1024 * 1024}[h[-1]] if h[-1] in "KM" else int(h)
    return n + HEAP_REFUND


def vfs_size(board):
    """Bytes of the board's vfs partition (its partitions.csv), the littlefs image's size."""
    p = boards.partition(board, "vfs")
    return p[1] if p else lfsimage.BLOCK_SIZE * lfsimage.BLOCK_COUNT


class _Pacer:
    """A UART's byte rate: wait(n) returns when n more bytes may have gone at the board's `baud`
    (8N1; read at each call: a test may change it on a running board)."""

    def __init__(self, vb):
        self.vb = vb
        self.t = time.monotonic()

    def wait(self, n):
        if not self.vb.baud:
            return
        now = time.monotonic()
        self.t = max(self.t, now - 0.002) + n * 10.0 / self.vb.baud  # no credit for idle time
        if self.t > now:
            time.sleep(self.t - now)


def _unread(fd):
    """Bytes waiting in a pipe (FIONREAD): what the board's program has not read of its console."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return int.from_bytes(buf, "little")


class VirtualBoard:
    def __init__(
        self,
        state_dir,
        heap=DEFAULT_HEAP,
        board="unix-virtual",
        echo=None,
        wifi=False,
        rtc=False,
        baud=DEFAULT_BAUD,
        auto_reset=True,
    ):
        self.state = os.path.abspath(state_dir)
        self.wifi = wifi  # "Wi-Fi" = the host's loopback (board.json "net"), for firmware/wifi.py
        self.rtc = rtc  # a DS3231 (board.json "clock"; emulator/ds3231.py, <state>/ds3231.json)
        self._clock_lost = False  # the next boot is one after a power cut that lost the clock
        self.baud = baud  # the serial line's rate both ways (0: unpaced)
        self.console_lost = 0  # bytes the console's 259-byte ring buffer had no room for
        # a DevKitC's auto-reset circuit (DTR/RTS to EN/IO0) on the RFC 2217 port (self.url);
        # False: a board without one (the lines change nothing)
        self.auto_reset = auto_reset
        self.url = None  # rfc2217://127.0.0.1:N, the serial port with modem lines
        self._rfc = self._rfc_conn = self._rfc_pm = None
        self._dtr = self._rts = self._io0_low = False
        self.download = False  # held in the ROM's download mode (IO0 low at EN's release)
        self.image = os.path.join(self.state, "fs.img")  # the board's filesystem (littlefs)
        self.fs = self.image
        self.vlib = os.path.join(self.state, "vlib")
        self.heap = heap
        self.board = board
        self.echo = echo  # callable(line) for each display/buzzer line, e.g. print
        self.field = RFField()
        self.chip = None
        self.proc = None
        self.port = None
        self._master = self._slave = None
        self._lines = []
        self._cond = threading.Condition()
        self._threads = []
        self._ctl = None
        self._stopping = False
        self.card = None
        self._serial_tail = bytearray()  # the last bytes the firmware wrote to its USB serial
        self._io = threading.RLock()  # who gets the serial line's bytes (firmware or REPL)
        self._held = None  # bytes that arrived while the board switched programs
        self._fw_deaths = 0  # times the firmware ended by itself (crash): wait_for stops early
        self._repl_busy = False
        self._kbd_locked = False  # the firmware locked its console (KBD|locked on stderr)
        self.kind = None  # "fw" or "repl": the program on the board
        self.reset_cause = "power-on"

    # --- life cycle -------------------------------------------------------------------------------
    def start(self, wait_ready=30.0, blank=False):
        """Power the board up. blank=True: an empty filesystem is fine (a board fresh from the
        factory: MicroPython and its REPL only, nothing to wait for)."""
        os.makedirs(self.state, exist_ok=True)
        legacy = os.path.join(self.state, "fs")  # a firmware deployed as files (older tapkit)
        if not os.path.exists(self.image) and os.path.exists(os.path.join(legacy, "main.py")):
            lfsimage.import_dir(self.image, legacy, size=vfs_size(self.board))
        lfsimage.create(self.image, size=vfs_size(self.board))
        has_main = "main.py" in self._root()
        if not has_main and not blank:
            raise BoardError("no firmware deployed in %s (deploy it first)" % self.image)
        self._deploy_vlib()
        self.chip = PN532Emulator(self.field)
        self.chip.serve("127.0.0.1", 0)
        self._write_board_json(has_main)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._boot("power-on")
        self._spawn(self._pty_in)
        self._start_rfc2217()
        self._spawn(self._watchdog)
        self._start_control()
        self._write_runtime()
        if wait_ready and has_main:
            self.wait_for("DISPLAY|", timeout=wait_ready, since=0)
        return self

    def _deploy_vlib(self):
        """The board's own modules (its "frozen" code, VLIB), as .mpy (compiling source on the
        board would cost the firmware's heap a parse tree)."""
        from mpybuild.cross import compile_file

        os.makedirs(self.vlib, exist_ok=True)
        for mod, srcname in VLIB.items():
            src = os.path.join(HERE, srcname + ".py")
            dst = os.path.join(self.vlib, mod + ".mpy")
            try:
                os.unlink(os.path.join(self.vlib, mod + ".py"))  # .py would shadow the .mpy
            except OSError:
                pass
            try:
                fresh = os.stat(dst).st_mtime >= os.stat(src).st_mtime
            except OSError:
                fresh = False
            if not fresh:
                compile_file(src, dst, name=mod)  # the module's name: a qstr the board has

    def _env(self):
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([self.vlib, ".frozen"])  # lfsmount sets the board's
        env["TAPKIT_PN532_PORT"] = str(self.chip.port)
        env["TAPKIT_STATE"] = self.state
        env["TAPKIT_HOST"] = "/_host/"
        env["TAPKIT_BOARD"] = self.board
        return env

    def _boot(self, cause):
        """Run boot.py and main.py (the firmware), as the board does after a reset; with no main.py
        the board goes straight to its REPL."""
        self.reset_cause = cause
        self._wdt_reset(cause)
        root = self._root()
        if "main.py" in root:
            return self._spawn_fw("boot.py" in root)
        return self._spawn_repl("friendly")

    def _root(self):
        """The names in the board's "/" (read from its image: call while no program runs)."""
        try:
            return set(lfsimage.listdir(self.image))
        except (OSError, lfsimage.ImageError):
            return set()

    def _spawn_fw(self, has_boot=True):
        env = self._env()
        env["TAPKIT_RESET_CAUSE"] = self.reset_cause
        if self._clock_lost:
            env["TAPKIT_CLOCK_LOST"] = "1"  # hal_unix: the platform clock lost its time
            self._clock_lost = False
        # the stand-in errno and socket first, in the empty heap: one block at its bottom (what
        # HEAP_REFUND gives back), the firmware's own objects then lie as they would on the chip
        code = "import errno, socket\n" if "socket" in VLIB else ""
        code += "import lfsmount\n" + ("import boot\n" if has_boot else "") + "import main"
        t0 = time.time()
        proc = self._popen(
            "fw",
            [micropython_exe(), "-X", "heapsize=%d" % heap_bytes(self.heap), "-c", code],
            env,
        )
        proc.t0 = t0  # the watchdog watches it from its own first feed on
        return proc

    def _spawn_repl(self, mode):
        env = self._env()
        env["TAPKIT_REPL"] = mode
        env["TAPKIT_RESET_CAUSE"] = self.reset_cause  # machine.reset_cause() in the REPL
        return self._popen(
            "repl",
            [
                micropython_exe(),
                "-X",
                "heapsize=%d" % heap_bytes(self.heap),
                os.path.join(HERE, "repl.py"),
            ],
            env,
        )

    def _popen(self, kind, argv, env):
        proc = subprocess.Popen(
            argv,
            cwd=self.state,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        proc.kind = kind
        proc.replaced = proc.interrupted = False
        with self._io:
            if self._stopping:  # stop() ran while this one started: no orphan
                proc.kill()
                proc.wait()
                return proc
            self.proc = proc
            self.kind = kind
            self._repl_busy = False
            self._kbd_locked = False  # every boot starts with Ctrl-C on (until the firmware locks)
            if kind == "fw":
                self.boots = getattr(self, "boots", 0) + 1
            held, self._held = bytes(self._held or b""), None
            if held:
                self._to_proc(proc, held)
        proc.relays = [
            self._spawn(lambda: self._fw_to_pty(proc)),
            self._spawn(lambda: self._stderr_reader(proc)),
        ]
        self._spawn(lambda: self._reaper(proc))
        return proc

    def _reaper(self, proc):
        """What the board does when its program ends: the firmware ending (Ctrl-C, a crash) drops
        into the REPL; the REPL ending is a reset (repl.py's exit code says which)."""
        rc = proc.wait()
        for (
            t
        ) in proc.relays:  # its last words (a traceback) reach the line before the next program's
            t.join(2.0)
        with self._io:
            if proc.replaced or self._stopping or proc is not self.proc:
                return
            if self._held is None:
                self._held = bytearray()  # hold what arrives until the next program runs
        if proc.kind == "fw" and rc == 12:  # the firmware's machine.reset() (firmware/ota.py)
            self._event("RESET| machine.reset()")
            self._boot("hard")
        elif proc.kind == "fw":
            if not proc.interrupted:
                self._fw_deaths += 1
                self._event("RESET| firmware ended (exit %s): REPL" % rc)
            self._spawn_repl("friendly")
        elif rc == 10:
            self.reset_cause = "soft"
            self._wdt_reset("soft")
            self._spawn_repl("raw")
        elif rc == 11:
            self._boot("soft")
        else:
            self._event("RESET| %s" % ("machine.reset()" if rc == 12 else "REPL ended (%s)" % rc))
            self._boot("hard" if rc == 12 else "power-on")

    def restart(self, reason="power cycle", wait_ready=30.0, clock_lost=False):
        """Cut the firmware's power (SIGKILL, like a bus ignition) and boot it again.
        clock_lost=True: the cut was long enough to lose the chip's clock (an ESP32's RTC timer
        always restarts at power-on; the virtual board's is the host's, so say it): the firmware
        boots with its clock unset, unless the board's DS3231 (rtc=True) kept the time on its
        battery (emulator.ds3231.power_cut(path, battery=0) flattens it)."""
        if clock_lost:
            from emulator import ds3231

            self._clock_lost = True
            ds3231.power_cut(os.path.join(self.state, "ds3231.json"))
        with self._io:
            old = self.proc
            if old is not None:
                old.replaced = True
            self._held = bytearray()
        if old and old.poll() is None:
            old.kill()
            old.wait()
        for t in getattr(old, "relays", ())[1:]:  # its last lines in first (its stderr reader):
            t.join(5)  # read late on a loaded host, its DISPLAY passed for the new boot's below
        self._event("RESET| %s" % reason)
        mark = self.mark()
        self._boot("watchdog" if reason.startswith("watchdog") else "power-on")
        if wait_ready and self.kind == "fw":
            self.wait_for("DISPLAY|", timeout=wait_ready, since=mark)

    def _event(self, line):
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()
        with open(os.path.join(self.state, "display.log"), "a") as f:
            f.write(line + "\n")

    def _wdt_reset(self, cause):
        """What a reset does to the watchdog: every reset stops the timers (the keeper's Timer 0);
        only a power-on, hard or watchdog reset stops the WDT itself (its heartbeat goes)."""
        for name in ("keep",) if cause == "soft" else ("keep", "heartbeat"):
            try:
                os.unlink(os.path.join(self.state, name))
            except OSError:
                pass

    @staticmethod
    def _fw_fed(hb, proc):
        """The firmware program `proc` has fed the watchdog itself (not only the keeper's timer)."""
        try:
            with open(hb) as f:
                return f.read() != _KEEPER_FEED and os.fstat(f.fileno()).st_mtime >= proc.t0
        except (OSError, AttributeError):
            return False

    def _watchdog(self):
        """The hardware watchdog: the firmware's main loop touches <state>/heartbeat (/_host on the
        board) when it feeds the WDT; once fed it runs until a hard reset, whatever the board runs
        (firmware, REPL), and if nothing feeds it for longer than the board's WDT timeout, the board
        is reset (into service). In the REPL only the keeper feeds it: Timer 0, played here."""
        try:
            board = json.loads(lfsimage.read_file(self.image, "/board.json"))
            timeout = board.get("wdt", {}).get("timeout_ms", 8000) / 1000.0
        except (OSError, ValueError, lfsimage.ImageError):
            timeout = 8.0
        hb = os.path.join(self.state, "heartbeat")
        keep = os.path.join(self.state, "keep")
        while not self._stopping:
            time.sleep(0.5)
            proc = self.proc
            now = time.time()
            try:  # Timer 0 with the keeper's feed (firmware/keep.py): seconds from the file's time
                with open(keep) as f:
                    if now < os.fstat(f.fileno()).st_mtime + int(f.read() or 0):
                        with open(hb, "w") as h:
                            h.write(_KEEPER_FEED)
            except (OSError, ValueError):
                pass
            try:
                age = now - os.stat(hb).st_mtime
            except OSError:
                continue  # not started since the last hard reset (booting, a blank board)
            if proc is None or proc.poll() is not None or self._stopping:
                continue  # between two programs
            if proc.kind == "fw" and not getattr(proc, "fed", False):
                proc.fed = self._fw_fed(hb, proc)
                if not proc.fed:
                    continue  # its boot (a loaded host boots it slower than a chip: not watched)
            if age > timeout + 1.0:
                self.resets = getattr(self, "resets", 0) + 1
                what = "main loop" if proc.kind == "fw" else "REPL"
                self.restart("watchdog: not fed for %.1f s (%s)" % (age, what), wait_ready=0)

    # --- the RFC 2217 port and the auto-reset circuit ---------------------------------------------
    def _start_rfc2217(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self._rfc = s
        self.url = "rfc2217://127.0.0.1:%d" % s.getsockname()[1]
        self._spawn(self._rfc_loop)

    def _rfc_loop(self):
        import serial.rfc2217 as rfc

        while not self._stopping:
            try:
                conn, _ = self._rfc.accept()
            except OSError:
                return
            self._dtr = self._rts = False
            pm = rfc.PortManager(_Lines(self), _Conn(conn))
            self._rfc_conn, self._rfc_pm = conn, pm
            pacer = _Pacer(self)
            try:
                while not self._stopping:
                    data = conn.recv(64)
                    if not data:
                        break
                    payload = b"".join(pm.filter(data))
                    if payload:
                        pacer.wait(len(payload))
                        self._rx(payload)
            except OSError:
                pass
            finally:
                self._rfc_conn = self._rfc_pm = None
                conn.close()
                self._modem(False, False)  # the host closed the port: both lines drop

    def _modem(self, dtr, rts):
        """A DevKitC's auto-reset circuit (two transistors): EN is low while RTS is asserted and
        DTR is not (the chip held in reset), IO0 low while DTR is asserted and RTS is not. EN's
        release is a power-on reset (the RTC timer too: the clock is lost), into the ROM's download
        mode when IO0 is low then (esptool's reset; the virtual board has no ROM: it stays silent
        until the next reset)."""
        en_was_low = self._rts and not self._dtr
        self._dtr, self._rts = dtr, rts
        if not self.auto_reset or self._stopping:
            return
        en_low = rts and not dtr
        if dtr and not rts:
            self._io0_low = True  # IO0 low: seen while EN rises, the ROM's download mode
        if en_low and not en_was_low:
            self._event("RESET| EN low (RTS)")
            with self._io:
                old = self.proc
                if old is not None:
                    old.replaced = True
                self._held = None  # a chip in reset: what arrives is lost
            if old is not None and old.poll() is None:
                old.kill()
                old.wait()
        elif en_was_low and not en_low:
            self._io0_low = bool(dtr and not rts)
            self._spawn(self._en_released)

    def _en_released(self):
        """EN rises through its RC delay (a DevKitC's capacitor) and the chip samples IO0 as it
        leaves reset: esptool asserts DTR just before it drops RTS and holds IO0 low for 50 ms. The
        board boots into download mode when IO0 was low within 0.1 s of EN's release (the RFC 2217
        link adds a round trip per line change)."""
        time.sleep(0.1)
        with self._io:
            if (self._rts and not self._dtr) or self._stopping:
                return  # held in reset again
            self.download = self._io0_low
        if self.download:
            self._event("RESET| EN released with IO0 low: download mode (no ROM here)")
            return
        self._clock_lost = True  # EN is CHIP_PU: a power-on reset, the RTC timer too
        self._boot("power-on")

    def stop(self):
        if self._rfc is not None:
            try:
                self._rfc.close()
            except OSError:
                pass
        with self._io:
            self._stopping = True
            proc = self.proc
        if proc and proc.poll() is None:
            proc.replaced = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.chip:
            self.chip.close()
        if self._ctl:
            try:
                self._ctl.close()
            except OSError:
                pass
            try:
                os.unlink(self.control_path)
            except OSError:
                pass
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        try:
            os.unlink(os.path.join(self.state, "runtime.json"))
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def alive(self):
        """The firmware is running (not the REPL, not between two programs)."""
        p = self.proc
        return p is not None and p.kind == "fw" and p.poll() is None

    @property
    def in_repl(self):
        p = self.proc
        return p is not None and p.kind == "repl" and p.poll() is None

    @property
    def control_path(self):
        return os.path.join(self.state, "control.sock")

    # --- the RF field ---------------------------------------------------------------------------
    def place(self, card):
        """Put a card in front of the antenna: a card file (its path) or a card model in memory
        (an emulator.card.DESFireCard, or anything that answers like one)."""
        if isinstance(card, (str, os.PathLike)):
            card = DESFireCard.load(card)
        self.card = card
        self.field.place(card)
        return card

    def remove(self, wait_seen=5.0):
        """Take the card away; by default wait until the firmware has polled the empty field (a
        rider cannot lift a card and tap again within one poll, and the firmware rightly treats a
        card that never left as the same tap)."""
        polls = self.chip.empty_polls
        self.field.remove()
        self.card = None
        deadline = time.monotonic() + wait_seen
        while wait_seen and self.alive and self.chip.empty_polls == polls:
            if time.monotonic() > deadline:
                raise BoardError(
                    "the firmware did not poll the reader for %.0f s after the card "
                    "was removed" % wait_seen
                )
            time.sleep(0.01)

    def press(self, keys, timeout=10.0):
        """Press keys on the board's keypad or buttons (board.json ui.keypad), one at a time: each
        goes when the firmware has taken the one before (its `KEY|k offset` line). Returns the
        display lines the keys produced."""
        mark = self.mark()
        path = os.path.join(self.state, "keypad")
        for k in keys:
            with open(path, "ab") as f:
                f.write(k.encode())
                size = f.tell()
            deadline = time.monotonic() + timeout
            while self._key_offset() < size:
                if time.monotonic() > deadline or not self.alive:
                    raise BoardError("the firmware did not take key %r from its keypad" % k)
                time.sleep(0.01)
        time.sleep(0.1)  # the display line the last key makes
        return [ln for ln in self.lines(mark) if ln.startswith("DISPLAY|")]

    def _key_offset(self):
        with self._cond:
            for ln in reversed(self._lines):
                if ln.startswith("KEY|"):
                    return int(ln.rsplit(" ", 1)[1])
        return 0

    def tap(self, card, timeout=15.0, hold=0.0):
        """Put a card (a path or a card model, see place) on the reader until the terminal beeps;
        return what the display showed."""
        mark = self.mark()
        self.place(card)
        try:
            beep = self.wait_for("BUZZER|", timeout=timeout, since=mark)
            at_beep = self.lines(mark)
            self.wait_for("STAT|", timeout=timeout, since=mark)
            if hold:
                time.sleep(hold)
        finally:
            self.remove()
        out = self.lines(mark)
        shown = [ln for ln in at_beep if ln.startswith("DISPLAY|")]
        stat = [ln for ln in out if ln.startswith("STAT|")]
        return {
            "display": shown[-1] if shown else "",
            "buzzer": beep.split("|", 1)[1].strip(),
            "stat": stat[-1] if stat else "",
        }

    # --- output of the terminal -----------------------------------------------------------------
    def mark(self):
        with self._cond:
            return len(self._lines)

    def lines(self, since=0):
        with self._cond:
            return list(self._lines[since:])

    def wait_for(self, prefix, timeout=10.0, since=None):
        deadline = time.monotonic() + timeout
        deaths = self._fw_deaths
        with self._cond:
            start = len(self._lines) if since is None else since
            while True:
                for ln in self._lines[start:]:
                    if ln.startswith(prefix):
                        return ln
                start = len(self._lines)
                left = deadline - time.monotonic()
                dead = self._fw_deaths != deaths or self._stopping
                if left <= 0 or dead:
                    tail = "\n".join(self._lines[-15:])
                    serial = self._serial_tail.decode("utf-8", "replace").strip()
                    if serial:  # tracebacks go to the USB serial, as on a real board
                        tail += "\n[serial]\n" + "\n".join(serial.splitlines()[-12:])
                    why = "firmware exited (%s)" % self.proc.poll() if dead else "timed out"
                    raise BoardError(
                        "virtual board %s waiting for %r; last output:\n%s" % (why, prefix, tail)
                    )
                self._cond.wait(min(left, 0.5))

    # --- internals ------------------------------------------------------------------------------
    def _spawn(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _write_board_json(self, deployed=True):
        """Wire the board: the reader is the PN532 emulator ($TAPKIT_PN532_PORT), the journal
        partition is <state>/flash.bin (the stock board file's "flash.bin", which hal_unix finds
        under $TAPKIT_HOST). A board file written by `tapkit flash` (reader port 0) is left as
        flashed; otherwise the board file in the image is written with this run's wiring."""
        if not deployed:
            return  # a blank board: its board file comes with `tapkit flash`
        try:
            if json.loads(lfsimage.read_file(self.image, "/board.json"))["reader"]["port"] == 0:
                return
        except (OSError, ValueError, KeyError, TypeError, lfsimage.ImageError):
            pass
        board = boards.spec(self.board)
        board.setdefault("reader", {})["port"] = self.chip.port
        board["reader"]["host"] = "127.0.0.1"
        if self.wifi:
            board["net"] = {"loopback": True}
        if self.rtc:  # a DS3231; its I2C bus is the chip model (emulator/ds3231.py)
            board.setdefault("clock", {}).update(bus="ds3231", chip="ds3231", addr=104)
        lfsimage.write_files(self.image, {"/board.json": json.dumps(board, indent=1)})

    def _write_runtime(self):
        rt = {
            "port": self.port,
            "pid": self.proc.pid,
            "pn532_port": self.chip.port,
            "control": self.control_path,
            "host_pid": os.getpid(),
            "url": self.url,
        }
        with open(os.path.join(self.state, "runtime.json"), "w") as f:
            json.dump(rt, f)

    def _pty_in(self):
        """The serial line into the board: to the running program; a Ctrl-C interrupts the
        firmware (or code the REPL executes) the way the board's UART interrupt does."""
        pacer = _Pacer(self)
        while not self._stopping:
            try:
                data = os.read(self._master, 64)  # the bridge's pace: the host's write waits
            except OSError:
                return
            if not data:
                return
            pacer.wait(len(data))
            self._rx(data)

    def _rx(self, data):
        """Bytes on the board's UART (from the pty or the RFC 2217 port)."""
        with self._io:
            if self._held is not None:  # switching programs: the ring buffer keeps it
                room = max(0, RING - len(self._held))
                self.console_lost += max(0, len(data) - room)
                self._held += data[:room]
                return
            proc = self.proc
            fw = proc.kind == "fw" and not self._kbd_locked  # a locked console: a byte
            if b"\x03" in data and (fw or self._repl_busy):
                i = data.index(b"\x03")
                self._to_proc(proc, data[:i])
                if proc.kind == "fw":
                    self._held = bytearray(data[i + 1 :])
                    proc.interrupted = True
                    self._spawn(lambda p=proc: self._interrupt(p))
                else:
                    self._repl_busy = False
                    proc.send_signal(signal.SIGINT)
                    self._to_proc(proc, data[i + 1 :])
                return
            self._to_proc(proc, data)

    def _interrupt(self, proc):
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
        except OSError:
            pass

    def _to_proc(self, proc, data):
        """Into the console's ring buffer: what the program has not read yet fills it, what does
        not fit is lost (counted in console_lost)."""
        if not data:
            return
        room = max(0, RING - _unread(proc.stdin.fileno()))
        if len(data) > room:
            self.console_lost += len(data) - room
            data = data[:room]
            if not data:
                return
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def _fw_to_pty(self, proc):
        out = proc.stdout
        pacer = _Pacer(self)
        while True:
            data = out.read1(64) if hasattr(out, "read1") else out.read(1)
            if not data:
                return
            pacer.wait(len(data))
            self._serial_tail += data
            del self._serial_tail[:-2048]
            pm, conn = self._rfc_pm, self._rfc_conn
            if pm is not None and proc is self.proc:
                try:
                    conn.sendall(b"".join(pm.escape(data)))
                except OSError:
                    pass
            try:
                os.write(self._master, data)
            except OSError:
                return

    def _stderr_reader(self, proc):
        log = open(os.path.join(self.state, "display.log"), "a", buffering=1)
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("REPL|"):
                    self._repl_busy = line == "REPL|exec" and proc is self.proc
                    continue
                if line.startswith("KBD|") and proc is self.proc:
                    # micropython.kbd_intr(-1) on the board: its UART ISR no longer turns 0x03
                    # into KeyboardInterrupt (firmware/hal.py lock_console)
                    self._kbd_locked = line == "KBD|locked"
                if not _TAGGED.match(line) and self._master is not None:
                    try:  # a traceback: on a board it is printed on the USB serial
                        os.write(self._master, line.encode() + b"\r\n")
                    except OSError:
                        pass
                log.write(line + "\n")
                if self.echo and (line.startswith("DISPLAY|") or line.startswith("BUZZER|")):
                    self.echo(line)
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        finally:
            log.close()
            with self._cond:
                self._cond.notify_all()

    def _start_control(self):
        try:
            os.unlink(self.control_path)
        except OSError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.control_path)
        s.listen(4)
        self._ctl = s
        self._spawn(self._control_loop)

    def _control_loop(self):
        while not self._stopping:
            try:
                conn, _ = self._ctl.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rwb")
                for raw in f:
                    try:
                        reply = self._control(json.loads(raw))
                    except Exception as e:  # a bad request must not kill the board
                        reply = {"ok": False, "error": "%s" % e}
                    f.write((json.dumps(reply) + "\n").encode())
                    f.flush()

    def _control(self, req):
        cmd = req.get("cmd")
        if cmd == "tap":
            r = self.tap(
                req["card"], timeout=float(req.get("timeout", 15)), hold=float(req.get("hold", 0))
            )
            return dict(r, ok=True)
        if cmd == "place":
            self.place(req["card"])
            return {"ok": True}
        if cmd == "remove":
            self.remove()
            return {"ok": True}
        if cmd == "press":
            return {"ok": True, "display": self.press(req["keys"])}
        if cmd == "status":
            shown = [ln for ln in self.lines() if ln.startswith("DISPLAY|")]
            return {
                "ok": True,
                "port": self.port,
                "alive": self.alive,
                "mode": "firmware" if self.alive else "repl" if self.in_repl else "off",
                "display": shown[-1] if shown else "",
            }
        return {"ok": False, "error": "unknown command %r" % cmd}


def control(state_dir, req, timeout=30.0):
    """Send one request to a running virtual board's control socket (used by `tapkit emulate tap`)."""
    path = os.path.join(os.path.abspath(state_dir), "control.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        raise BoardError(
            "no virtual board running in %s (start one with `tapkit emulate board`)" % state_dir
        )
    with s:
        f = s.makefile("rwb")
        f.write((json.dumps(req) + "\n").encode())
        f.flush()
        line = f.readline()
    if not line:
        raise BoardError("the virtual board in %s closed the control connection" % state_dir)
    return json.loads(line)


class _Conn:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass


class _Lines:
    """The serial port pyserial's RFC 2217 server side (PortManager) drives: the modem lines go to
    the board's auto-reset circuit; line settings are accepted (the virtual UART has one speed)."""

    def __init__(self, vb):
        self._vb = vb
        self._dtr = self._rts = False
        self.baudrate = vb.baud or BAUD
        self.bytesize, self.parity, self.stopbits = 8, "N", 1
        self.xonxoff = self.rtscts = self.break_condition = False
        self.cts = self.dsr = self.cd = True
        self.ri = False

    @property
    def dtr(self):
        return self._dtr

    @dtr.setter
    def dtr(self, on):
        self._dtr = bool(on)
        self._vb._modem(self._dtr, self._rts)

    @property
    def rts(self):
        return self._rts

    @rts.setter
    def rts(self, on):
        self._rts = bool(on)
        self._vb._modem(self._dtr, self._rts)

    def reset_input_buffer(self):
        pass

    def reset_output_buffer(self):
        pass
