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
import time

from host_tools import TapkitError

_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
_CHUNK = 2048  # file bytes per exec (base64 in the code: ~2.8 KB a line)


class DeviceError(TapkitError):
    pass


def open_serial(port, baud=115200):
    """Open the port exclusively; the usual trouble (busy, dialout, unplugged) as one line."""
    import serial

    from host_tools.fleet.link import open_error

    try:
        return serial.Serial(port, baud, timeout=0.1, exclusive=True)
    except (OSError, serial.SerialException) as e:
        raise DeviceError(str(open_error(port, e))) from None


class RawREPL:
    def __init__(self, port, baud=115200, timeout=8.0):
        self.port = port
        self.timeout = timeout
        self.ser = open_serial(port, baud)
        self.in_raw = False
        self._buf = bytearray()

    def close(self):
        try:
            if self.in_raw:
                self.ser.write(b"\r\x02")  # back to the friendly REPL
            self.ser.close()
        except OSError:
            pass

    def __enter__(self):
        self.enter()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the protocol ---------------------------------------------------------------------------
    def _read_until(self, ending, timeout):
        """(bytes up to and including `ending`, True), or (what came, False) on timeout; bytes
        after `ending` stay buffered for the next read."""
        data = self._buf
        deadline = time.monotonic() + timeout
        while ending not in data:
            try:
                b = self.ser.read(max(1, min(self.ser.in_waiting, 4096)))
            except OSError as e:
                raise DeviceError("lost the board on %s: %s" % (self.port, e)) from None
            if b:
                data += b
                deadline = max(deadline, time.monotonic() + 1.0)  # still talking
            elif time.monotonic() > deadline:
                self._buf = bytearray()
                return bytes(data), False
        i = data.index(ending) + len(ending)
        self._buf = data[i:]
        return bytes(data[:i]), True

    def enter(self):
        """Interrupt whatever runs (Ctrl-C twice) and enter the raw REPL."""
        w = self.ser.write
        w(b"\r\x03\x03")
        time.sleep(0.15)
        self.ser.reset_input_buffer()
        self._buf = bytearray()
        w(b"\r\x01")
        data, ok = self._read_until(_BANNER, self.timeout)
        if not ok:
            if b"rst:0x" in data or b"ets " in data or b"boot:0x" in data:
                raise DeviceError(
                    "the board on %s reset when the port opened (DTR/RTS): wait for it to boot "
                    "and try again, or use a cable/adapter without auto-reset" % self.port
                )
            raise DeviceError(
                "the board on %s is not answering: reset it (EN button) or check the cable"
                % self.port
            )
        self.in_raw = True

    def exec(self, code, timeout=None):
        """Run code in the raw REPL; return what it printed. An exception on the board is a
        DeviceError with its last line."""
        if isinstance(code, str):
            code = code.encode()
        w = self.ser.write
        try:
            for i in range(0, len(code), 256):
                w(code[i : i + 256])
            w(b"\x04")
        except OSError as e:
            raise DeviceError("lost the board on %s: %s" % (self.port, e)) from None
        t = timeout or self.timeout
        data, ok = self._read_until(b"\x04", t)
        if not ok or not data.startswith(b"OK"):
            raise DeviceError(
                "the board on %s stopped answering (%s)"
                % (self.port, "no answer" if not data else repr(data[:60]))
            )
        out = data[2:-1]
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
        self.ser.write(b"\r\x02")
        time.sleep(0.1)
        self.ser.write(b"\x04")
        self.ser.flush()
        self.in_raw = False
