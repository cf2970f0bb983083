"""Fake `esp32` for the MicroPython unix port: `Partition` backed by the NOR flash model.

The partition table is read from the CSV in $TAPKIT_FAKE_PARTITIONS (the board's partitions.csv);
each data partition is a `norflash.NORFlash` on <$TAPKIT_FAKE_FLASH_DIR>/<label>.bin, so what the
firmware writes survives a "reboot" (a new process) exactly like the chip's contents.
Follows the esp32.Partition API of micropython-esp32-stubs: find(type, subtype, label),
readblocks(block, buf[, offset]), writeblocks(block, buf[, offset]) (without offset: erase first),
ioctl(op, arg) with 4 block count, 5 block size, 6 erase block, info().
"""

import os

import norflash

_SUBTYPES = {
    "nvs": 0x01,
    "phy": 0x01,
    "factory": 0x00,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
    "ota": 0x00,
}
_flashes = {}


def _int(s):
    s = s.strip()
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def _table():
    path = os.getenv("TAPKIT_FAKE_PARTITIONS")
    if not path:
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cols = [c.strip() for c in line.split(",")]
            label, typ, sub, off, size = cols[0], cols[1], cols[2], cols[3], cols[4]
            t = Partition.TYPE_APP if typ == "app" else Partition.TYPE_DATA
            st = _SUBTYPES[sub] if sub in _SUBTYPES else _int(sub)
            out.append((t, st, _int(off), _int(size), label))
    return out


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        row = None
        for r in _table():
            if r[4] == id:
                row = r
        if row is None:
            raise ValueError("no partition %r" % (id,))
        self._row = row
        self.block_size = block_size
        self.label = row[4]
        self._flash = None

    def _chip(self):
        if self._flash is None:
            key = self.label
            if key not in _flashes:
                d = os.getenv("TAPKIT_FAKE_FLASH_DIR") or "."
                _flashes[key] = norflash.NORFlash(d + "/" + key + ".bin", self._row[3])
            self._flash = _flashes[key]
        return self._flash

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None):
        out = []
        for r in _table():
            if r[0] != type:
                continue
            if subtype != 0xFF and r[1] != subtype:
                continue
            if label is not None and r[4] != label:
                continue
            out.append(Partition(r[4]))
        return out

    def info(self):
        t, st, off, size, label = self._row
        return (t, st, off, size, label, False)

    def readblocks(self, block_num, buf, offset=0):
        self._chip().read(block_num * self.block_size + offset, buf)
        return True

    def writeblocks(self, block_num, buf, offset=None):
        chip = self._chip()
        addr = block_num * self.block_size
        if offset is None:
            # the simple block interface erases the blocks it writes
            n = (len(buf) + self.block_size - 1) // self.block_size
            for i in range(n):
                chip.erase(addr + i * self.block_size)
            offset = 0
        addr += offset
        # the IDF splits a write into page programs; so does the fake
        mv = memoryview(buf)
        pos = 0
        while pos < len(buf):
            k = chip.PAGE - ((addr + pos) % chip.PAGE)
            k = min(k, len(buf) - pos)
            chip.program(addr + pos, mv[pos : pos + k])
            pos += k

    def ioctl(self, op, arg=0):
        if op in (1, 2, 3):  # init, deinit, sync
            return 0
        if op == 4:  # block count
            return self._row[3] // self.block_size
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase block
            self._chip().erase(arg * self.block_size)
            return 0
        return None

    def set_boot(self):
        pass

    def get_next_update(self):
        raise OSError(2, "no OTA partitions")  # ENOENT

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        pass


def idf_heap_info(capabilities):
    return []
