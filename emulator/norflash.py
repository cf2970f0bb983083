"""A NOR flash chip model, file-backed, with power-cut injection.

Runs unchanged on CPython (tests, bench) and on the MicroPython unix port, where the virtual board
deploys it as its flash "chip" (`import norflash`; on an ESP32 the chip is esp32.Partition, in C). It
is compiled from source on the board, inside the firmware's heap, so it stays small: every name and
method here costs RAM there. The data lives in a file, never in the heap: every operation seeks and
moves at most 256 bytes, so a 1 MB chip costs no RAM.

NOR rules, as on the SPI flash of an ESP32 module (4 KB sectors, 256-byte pages):
- `program(addr, data)` can only clear bits: the cell becomes `old AND data`. One program never crosses
  a page boundary; the chip would wrap inside the page, we refuse with ValueError instead.
- `erase(sector_addr)` sets a whole 4 KB sector back to 0xFF; the address must be sector aligned.

Power cuts: `cut_after(n, seed)` makes the n-th program/erase from now the one during which power is
lost. A cut program leaves a prefix of the bytes written (and possibly some cleared bits of the next
byte); a cut erase leaves a prefix of the sector at 0xFF, possibly a few random bytes after it, and the
rest unchanged. The cut raises `PowerCut`, and every later operation raises it too: the instance stands
for a chip without power and must be discarded (the "reboot" opens a new one on the same file).
The damage is chosen by a tiny LCG from the seed, so a failing case replays exactly on both interpreters.

    flash = NORFlash("flash.bin", 262144)
    flash.program(0, b"\\x01\\x02")
    flash.cut_after(3, seed=7)       # the third program/erase from now loses power
    flash.programs, flash.bytes_programmed, flash.erases     # counters: 1, 2, 0
    flash.reads, flash.bytes_read                            # reads: what boot recovery costs
"""

# Geometry: 4096-byte sectors, 256-byte pages, written as numbers (not const names: this module is
# compiled on the board, where even a const's name costs RAM). A page is also the most one file
# operation moves.


class PowerCut(Exception):
    """Power was lost during (or before) this operation; the chip instance is dead."""


class NORFlash:
    SECTOR = 4096
    PAGE = 256

    def __init__(self, path, size):
        if size <= 0 or size % 4096:
            raise ValueError("size")
        self.size = size
        self._buf = bytearray(256)
        self.programs = 0
        self.bytes_programmed = 0
        self.erases = 0
        self.reads = 0
        self.bytes_read = 0
        # _cut: 0 no cut armed, > 0 program/erase ops until the cut, -1 the power is gone
        self._cut = 0
        self._rng = 1
        try:
            f = open(path, "r+b")
        except OSError:  # ENOENT: a new chip
            f = open(path, "w+b")
        n = f.seek(0, 2)
        while n < size:  # a new or shorter file grows with erased cells
            n += f.write(b"\xff" * min(4096, size - n))
        f.flush()
        self._f = f

    # -- power-cut injection -------------------------------------------------------------------
    def cut_after(self, n, seed=1):
        """Lose power during the n-th program/erase from now (1 = the next one, 0 = never)."""
        self._cut = n
        self._rng = (seed & 0x7FFFFFFF) or 1

    def _rand(self, n):
        """Next LCG value in range(n)."""
        self._rng = (self._rng * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._rng >> 8) % n

    def _op(self, addr, n, kind):
        """Checks before a read (kind 0), program (1) or erase (2); True when this op is the cut one."""
        if self._cut < 0:
            raise PowerCut("no power")
        if addr < 0 or n < 0 or addr + n > self.size:
            raise ValueError("address out of range")
        if kind == 1 and (addr % 256) + n > 256:
            raise ValueError("program crosses a page boundary")
        if kind == 2 and addr % 4096:
            raise ValueError("erase address not sector aligned")
        if kind and n and self._cut:
            self._cut -= 1
            if not self._cut:
                self._cut = -1
                return True
        return False

    # -- the chip --------------------------------------------------------------------------------
    def read(self, addr, buf):
        """Fill `buf` from `addr`."""
        self._op(addr, len(buf), 0)
        self.reads += 1
        self.bytes_read += len(buf)
        self._f.seek(addr)
        if self._f.readinto(buf) != len(buf):
            raise OSError(5)  # EIO: the backing file is short
        return buf

    def program(self, addr, data):
        """NOR program: each byte becomes old AND new. Never crosses a page boundary."""
        n = len(data)
        # k: bytes fully programmed before the power failed, p: the next byte had some bits cleared
        if self._op(addr, n, 1):
            k = self._rand(n)
            p = self._rand(2)
        else:
            k = n
            p = 0
            if not n:
                return
        f = self._f
        b = memoryview(self._buf)[:n]
        f.seek(addr)
        f.readinto(b)
        for i in range(k):
            b[i] &= data[i]
        if p and k < n:
            b[k] &= data[k] | self._rand(256)
        f.seek(addr)
        f.write(b)
        f.flush()
        self.programs += 1
        self.bytes_programmed += n
        if k < n:
            raise PowerCut("cut programming 0x%x" % addr)

    def erase(self, addr):
        """Set the 4 KB sector at `addr` (sector aligned) to 0xFF."""
        # k: bytes erased before the power failed, p: random bytes left right after them
        k = 4096
        p = 0
        if self._op(addr, 4096, 2):
            k = self._rand(4096)
            if self._rand(2):
                p = min(1 + self._rand(16), 4096 - k)
        f = self._f
        b = self._buf
        for i in range(256):
            b[i] = 0xFF
        f.seek(addr)
        for i in range(0, k, 256):
            f.write(memoryview(b)[: min(256, k - i)])
        for i in range(p):
            b[i] = self._rand(256)
        f.write(memoryview(b)[:p])
        f.flush()
        self.erases += 1
        if k < 4096:
            raise PowerCut("cut erasing 0x%x" % addr)

    def close(self):
        self._f.close()
