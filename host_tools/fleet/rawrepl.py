"""A MicroPython board's raw REPL over its USB serial port (what `tapkit flash` and `tapkit diag`
use when the firmware is not running; the stock mpremote speaks the same protocol).

    with RawREPL("/dev/ttyUSB0") as dev:      # interrupts the firmware (Ctrl-C), enters raw REPL
        dev.exec("import os")
        dev.eval("os.listdir('/')")            # -> ['boot.py', 'lib', ...]
        dev.put("/config.json", b"...")         # written to a temporary name, then renamed
        dev.soft_reboot()                       # friendly REPL + Ctrl-D: boot.py and main.py run

Every failure is a DeviceError with one line a technician can act on.
"""

import ast
import binascii
import struct
import time

from host_tools import TapkitError

_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
_CHUNK = 2048  # file bytes per exec (base64 in the code: ~2.8 KB a line, sent with flow control)
_ROM = (b"rst:0x", b"ets ", b"boot:0x")  # an ESP32's ROM boot banner: the board just reset


class DeviceError(TapkitError):
    pass


def open_serial(port, baud=115200):
    """Open the port exclusively (fleet.link.open_port: no DTR/RTS pulse on EN); the usual trouble
    (busy, dialout, unplugged) as one line."""
    from host_tools.fleet.link import LinkError, open_port

    try:
        return open_port(port, baud, timeout=0.1)
    except LinkError as e:
        raise DeviceError(str(e)) from None


class RawREPL:
    """`ser`: an open pyserial port to use (closed with this object) instead of opening `port`."""

    def __init__(self, port, baud=115200, timeout=8.0, ser=None):
        self.port = port
        self.timeout = timeout
        self.ser = ser if ser is not None else open_serial(port, baud)
        self.in_raw = False
        self.raw_paste = True  # until the board says it cannot (MicroPython < 1.14)
        self.reset_seen = False  # the ROM banner came by: the board reset after the port opened
        self._buf = bytearray()

    def close(self):
        from host_tools.fleet.link import IO_ERRORS

        try:
            if self.in_raw:
                self.ser.write(b"\r\x02")  # back to the friendly REPL
            self.ser.close()
        except IO_ERRORS:
            pass

    def __enter__(self):
        try:
            self.enter()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the protocol ---------------------------------------------------------------------------
    def _lost(self, e):
        why = getattr(e, "strerror", None) or e
        return DeviceError(
            "lost the board on %s: %s (cable unplugged or board reset?)" % (self.port, why)
        )

    def _write(self, data):
        from host_tools.fleet.link import IO_ERRORS

        try:
            self.ser.write(data)
        except IO_ERRORS as e:
            raise self._lost(e) from None

    def _read_until(self, ending, timeout):
        """(bytes up to and including `ending`, True), or (what came, False) on timeout; bytes
        after `ending` stay buffered for the next read."""
        from host_tools.fleet.link import IO_ERRORS

        data = self._buf
        deadline = time.monotonic() + timeout
        while ending not in data:
            try:
                b = self.ser.read(max(1, min(self.ser.in_waiting, 4096)))
            except IO_ERRORS as e:
                raise self._lost(e) from None
            if b:
                data += b
                deadline = max(deadline, time.monotonic() + 1.0)  # still talking
            elif time.monotonic() > deadline:
                self._buf = bytearray()
                return bytes(data), False
        i = data.index(ending) + len(ending)
        self._buf = data[i:]
        return bytes(data[:i]), True

    def _read_n(self, n, timeout):
        """Exactly n bytes (or fewer on timeout)."""
        from host_tools.fleet.link import IO_ERRORS

        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            try:
                if timeout or self.ser.in_waiting:
                    self._buf += self.ser.read(n - len(self._buf))
            except IO_ERRORS as e:
                raise self._lost(e) from None
            if time.monotonic() >= deadline:
                break
        out, self._buf = bytes(self._buf[:n]), self._buf[n:]
        return out

    def _drain(self):
        from host_tools.fleet.link import IO_ERRORS

        try:
            self.ser.reset_input_buffer()
        except IO_ERRORS as e:
            raise self._lost(e) from None
        self._buf = bytearray()

    def enter(self):
        """Interrupt whatever runs (Ctrl-C twice) and enter the raw REPL. A board that is booting
        (its auto-reset fired when the port opened, or it was just flashed) loses what it is sent
        until MicroPython runs, so this tries again until `timeout`."""
        deadline = time.monotonic() + self.timeout
        seen = b""
        while True:
            self._write(b"\r\x03\x03")
            time.sleep(0.15)
            self._drain()
            self._write(b"\r\x01")
            data, ok = self._read_until(_BANNER, min(1.5, max(0.2, deadline - time.monotonic())))
            if ok:
                break
            seen += data
            if any(m in data for m in _ROM):
                self.reset_seen = True
            if time.monotonic() >= deadline:
                if self.reset_seen:
                    raise DeviceError(
                        "the board on %s reset when the port opened (DTR/RTS) and did not come "
                        "up: wait for it to boot and try again, or use a cable/adapter without "
                        "auto-reset" % self.port
                    )
                raise DeviceError(
                    "the board on %s is not answering: reset it (EN button) or check the cable"
                    % self.port
                )
        if any(m in data for m in _ROM):
            self.reset_seen = True
        self.in_raw = True

    def _send(self, code):
        """Send code and Ctrl-D; wait until the board has taken it. Raw-paste mode (MicroPython
        >= 1.14): the board grants a window of bytes (half its 256-byte input buffer) and one more
        with each 0x01 it sends, so the 260-byte console ring buffer never overflows while it
        compiles; boards without it get the plain raw REPL, 256 bytes every 10 ms (as mpremote)."""
        t = self.timeout
        if self.raw_paste:
            self._write(b"\x05A\x01")
            ans = self._read_n(2, t)
            if ans == b"R\x01":
                return self._paste(code)
            if ans != b"R\x00":  # an old board: it echoed and stays in the raw REPL
                self._read_until(b"w REPL; CTRL-B to exit\r\n>", t)
            self.raw_paste = False
        for i in range(0, len(code), 256):
            self._write(code[i : i + 256])
            time.sleep(0.01)
        self._write(b"\x04")
        ok = self._read_n(2, t)
        if ok != b"OK":
            raise DeviceError(
                "the board on %s stopped answering (%s)"
                % (self.port, "no answer" if not ok else repr(ok[:60]))
            )

    def _paste(self, code):
        head = self._read_n(2, self.timeout)
        if len(head) != 2:
            raise DeviceError("the board on %s stopped answering (raw-paste)" % self.port)
        window = struct.unpack("<H", head)[0]
        credit = window  # the window size itself grants one window (and its 0x01 the next)
        i = 0
        while i < len(code):
            while True:  # take what the board said: a new window, or an early end
                if credit and not self._waiting():
                    break
                b = self._read_n(1, self.timeout if not credit else 0.0)
                if not b:
                    if credit:
                        break
                    raise DeviceError("the board on %s stopped taking code" % self.port)
                if b == b"\x01":
                    credit += window
                elif b == b"\x04":  # the board ended the paste early (e.g. a syntax error)
                    self._write(b"\x04")
                    return
                else:
                    raise DeviceError(
                        "the board on %s sent %r during a raw-paste transfer" % (self.port, b)
                    )
            part = code[i : i + credit]
            self._write(part)
            credit -= len(part)
            i += len(part)
        self._write(b"\x04")
        _, ok = self._read_until(b"\x04", self.timeout)
        if not ok:
            raise DeviceError("the board on %s did not finish the raw-paste transfer" % self.port)

    def _waiting(self):
        from host_tools.fleet.link import IO_ERRORS

        try:
            return len(self._buf) + self.ser.in_waiting
        except IO_ERRORS as e:
            raise self._lost(e) from None

    def exec(self, code, timeout=None):
        """Run code in the raw REPL; return what it printed. An exception on the board is a
        DeviceError with its last line."""
        if isinstance(code, str):
            code = code.encode()
        self._send(code)
        t = timeout or self.timeout
        data, ok = self._read_until(b"\x04", t)
        if not ok:
            raise DeviceError("the board on %s stopped answering (no output)" % self.port)
        out = data[:-1]
        err, ok = self._read_until(b"\x04>", t)
        if not ok:
            raise DeviceError("the board on %s stopped answering" % self.port)
        err = err[:-2].decode("utf-8", "replace").strip()
        if err:
            raise DeviceError(
                "the board on %s: %s" % (self.port, err.splitlines()[-1] if err else err)
            )
        return out.decode("utf-8", "replace")

    def eval(self, expr, timeout=None):
        out = self.exec("print(repr(%s))" % expr, timeout)
        try:
            return ast.literal_eval(out.strip())
        except (ValueError, SyntaxError):
            raise DeviceError("the board on %s sent an unreadable answer" % self.port) from None

    # --- files ----------------------------------------------------------------------------------
    def read(self, path):
        """The file's bytes, or None when it does not exist."""
        out = self.exec(
            "import binascii\ntry:\n f=open(%r,'rb');print(binascii.b2a_base64(f.read()).decode()"
            ",end='');f.close()\nexcept OSError:\n print('-')" % path
        )
        return None if out.strip() == "-" else binascii.a2b_base64(out)

    def put(self, path, data):
        """Write the file atomically: into path + '.new', renamed over path when complete."""
        tmp = path + ".new"
        parts = path.strip("/").split("/")[:-1]
        mk = "".join(
            "\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass" % ("/" + "/".join(parts[: i + 1]))
            for i in range(len(parts))
        )
        self.exec("import os,binascii%s\n_f=open(%r,'wb')" % (mk, tmp))
        try:
            for i in range(0, len(data), _CHUNK):
                b64 = binascii.b2a_base64(data[i : i + _CHUNK], newline=False).decode()
                self.exec("_f.write(binascii.a2b_base64(%r))" % b64)
        finally:
            self.exec("_f.close()")
        self.exec("os.rename(%r,%r)" % (tmp, path))

    def hashes(self, paths):
        """{path: sha256 hex or None} computed on the board (hashlib)."""
        self.exec(
            "import hashlib,binascii\n"
            "def _h(p):\n"
            " try:\n  f=open(p,'rb')\n except OSError:\n  return None\n"
            " h=hashlib.sha256()\n"
            " while True:\n  b=f.read(1024)\n  if not b:\n   break\n  h.update(b)\n"
            " f.close()\n return binascii.hexlify(h.digest()).decode()"
        )
        out = {}
        paths = list(paths)
        for i in range(0, len(paths), 20):
            part = paths[i : i + 20]
            got = self.eval("[_h(p) for p in %r]" % (part,), timeout=30)
            out.update(zip(part, got, strict=True))
        return out

    def soft_reboot(self):
        """Leave the raw REPL and soft-reset from the friendly REPL: boot.py and main.py run."""
        from host_tools.fleet.link import IO_ERRORS

        self._write(b"\r\x02")
        time.sleep(0.1)
        self._write(b"\x04")
        try:
            self.ser.flush()
        except IO_ERRORS as e:
            raise self._lost(e) from None
        self.in_raw = False
