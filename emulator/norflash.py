"""A NOR flash chip model, file-backed, with power-cut injection.

Runs unchanged on CPython (tests, bench) and on the MicroPython unix port, where the virtual board
deploys it as its flash "chip" (`import norflash`). The data lives in a file, never in the heap: every
operation seeks and moves small pieces, so a 1 MB chip costs no RAM.

NOR rules, as on the SPI flash of an ESP32 module:
- `program(addr, data)` can only clear bits: the cell becomes `old AND data`. One program never crosses
  a page boundary (256 bytes); the chip would wrap inside the page, we refuse with ValueError instead.
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
    flash.stats()                    # {'programs': 1, 'bytes_programmed': 2, 'erases': 0, ...}
"""

_CHUNK = 256
_LCG_MUL = 1103515245
_LCG_ADD = 12345
_LCG_MASK = 0x7FFFFFFF


class PowerCut(Exception):
    """Power was lost during (or before) this operation; the chip instance is dead."""


class NORFlash:
    SECTOR = 4096
    PAGE = 256

    def __init__(self, path, size, sector=4096, page=256):
        if size <= 0 or size % sector or sector % page:
            raise ValueError("size must be a multiple of sector, sector of page")
        self.path = path
        self.size = size
        self.SECTOR = sector
        self.PAGE = page
        self._buf = bytearray(_CHUNK)
        self.programs = 0
        self.bytes_programmed = 0
        self.erases = 0
        self.reads = 0
        self.bytes_read = 0
        self._cut_in = 0  # ops until the cut (0: no cut armed)
        self._rng = 1
        self.dead = False
        try:
            f = open(path, "r+b")
        except OSError:  # ENOENT: a new chip, fully erased
            f = open(path, "wb")
            ff = b"\xff" * _CHUNK
            n = size
            while n > 0:
                f.write(ff if n >= _CHUNK else ff[:n])
                n -= _CHUNK
            f.close()
            f = open(path, "r+b")
        f.seek(0, 2)
        have = f.tell()
        if have < size:  # a shorter file grows with erased cells
            ff = b"\xff" * _CHUNK
            while have < size:
                n = min(_CHUNK, size - have)
                f.write(ff[:n])
                have += n
            f.flush()
        self._f = f

    # -- power-cut injection -------------------------------------------------------------------
    def cut_after(self, n_ops, seed=1):
        """Lose power during the `n_ops`-th program/erase from now (1 = the next one)."""
        if n_ops < 1:
            raise ValueError("n_ops must be >= 1")
        self._cut_in = n_ops
        self._rng = (seed & _LCG_MASK) or 1

    def _rand(self, n):
        """Next LCG value in range(n)."""
        self._rng = (self._rng * _LCG_MUL + _LCG_ADD) & _LCG_MASK
        return (self._rng >> 8) % n

    def _alive(self):
        if self.dead:
            raise PowerCut("flash has no power")

    def _tick(self):
        """Count one program/erase toward an armed cut; True when this op is the cut one."""
        if self._cut_in:
            self._cut_in -= 1
            if self._cut_in == 0:
                self.dead = True
                return True
        return False

    # -- the chip --------------------------------------------------------------------------------
    def _check(self, addr, n):
        if addr < 0 or n < 0 or addr + n > self.size:
            raise ValueError("address out of range")

    def read(self, addr, buf):
        """Fill `buf` from `addr`."""
        self._alive()
        n = len(buf)
        self._check(addr, n)
        self._f.seek(addr)
        mv = memoryview(buf)
        got = 0
        while got < n:
            r = self._f.readinto(mv[got:])
            if not r:
                raise OSError(5)  # EIO: the backing file is short
            got += r
        self.reads += 1
        self.bytes_read += n
        return buf

    def program(self, addr, data):
        """NOR program: each byte becomes old AND new. Never crosses a page boundary."""
        self._alive()
        n = len(data)
        self._check(addr, n)
        if n == 0:
            return
        if (addr % self.PAGE) + n > self.PAGE:
            raise ValueError("program crosses a page boundary")
        cut = self._tick()
        keep = n
        partial = False
        if cut:
            keep = self._rand(n)  # bytes fully programmed before the power failed
            partial = self._rand(2) == 1  # the next byte had some of its bits cleared
        old = memoryview(self._buf)[:n]
        self._f.seek(addr)
        self._f.readinto(old)
        for i in range(keep):
            old[i] &= data[i]
        if partial and keep < n:
            old[keep] &= data[keep] | (self._rand(256) & 0xFF)
        self._f.seek(addr)
        self._f.write(old)
        self._f.flush()
        self.programs += 1
        self.bytes_programmed += n
        if cut:
            raise PowerCut("power cut during program at 0x%x (%d of %d bytes)" % (addr, keep, n))

    def erase(self, sector_addr):
        """Set the 4 KB sector at `sector_addr` (aligned) to 0xFF."""
        self._alive()
        if sector_addr % self.SECTOR:
            raise ValueError("erase address not sector aligned")
        self._check(sector_addr, self.SECTOR)
        cut = self._tick()
        done = self.SECTOR
        noise = 0
        if cut:
            done = self._rand(self.SECTOR)
            if self._rand(2):
                noise = 1 + self._rand(16)
        ff = memoryview(self._buf)
        for i in range(_CHUNK):
            ff[i] = 0xFF
        self._f.seek(sector_addr)
        left = done
        while left > 0:
            k = min(_CHUNK, left)
            self._f.write(ff[:k])
            left -= k
        if noise:
            noise = min(noise, self.SECTOR - done)
            for i in range(noise):
                ff[i] = self._rand(256)
            self._f.seek(sector_addr + done)
            self._f.write(ff[:noise])
        self._f.flush()
        self.erases += 1
        if cut:
            raise PowerCut(
                "power cut during erase of 0x%x (%d bytes erased)" % (sector_addr, done)
            )

    def stats(self):
        return {
            "programs": self.programs,
            "bytes_programmed": self.bytes_programmed,
            "erases": self.erases,
            "reads": self.reads,
            "bytes_read": self.bytes_read,
        }

    def close(self):
        try:
            self._f.close()
        except OSError:
            pass
