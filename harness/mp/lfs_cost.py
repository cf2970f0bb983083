"""The bench's tap stream appended to a file on MicroPython's littlefs (vfs.VfsLfs2 over a counting
block device of 4 KB blocks), flushed after every tap (bench/journal.py).

    micropython lfs_cost.py DIR BLOCKS TAPS         -> one JSON line
"""

import sys
import json
import vfs
import os


class CountingBlockDev:
    # a NOR-like block device in RAM: 4 KB erase blocks, counts erases and bytes programmed
    def __init__(self, blocks):
        self.blocks = blocks
        self.data = bytearray(b"\xff" * (blocks * 4096))
        self.erases = self.programs = self.bytes_programmed = 0

    def readblocks(self, n, buf, off=0):
        a = n * 4096 + off
        buf[:] = self.data[a : a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:  # the simple protocol: erase, then write whole blocks
            for i in range(len(buf) // 4096):
                self.ioctl(6, n + i)
            off = 0
        a = n * 4096 + off
        self.data[a : a + len(buf)] = buf
        self.programs += 1
        self.bytes_programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            self.erases += 1
            a = arg * 4096
            self.data[a : a + 4096] = b"\xff" * 4096
            return 0


def main(argv):
    blocks, taps = int(argv[1]), int(argv[2])
    bd = CountingBlockDev(blocks)
    vfs.VfsLfs2.mkfs(bd)  # type: ignore[arg-type]  # a duck-typed block device
    fs = vfs.VfsLfs2(bd)  # type: ignore[abstract, arg-type]
    vfs.mount(fs, "/lfs")
    rec = bytes(range(64))
    with open("/lfs/journal.bin", "ab") as f:
        f.write(rec)
        f.flush()
    e0, b0, p0 = bd.erases, bd.bytes_programmed, bd.programs
    with open("/lfs/journal.bin", "ab") as f:
        for _i in range(taps):
            f.write(rec)
            f.flush()  # durable before the rider's OK
    print(
        json.dumps(
            {
                "taps": taps,
                "erases": bd.erases - e0,
                "programs": bd.programs - p0,
                "bytes_programmed": bd.bytes_programmed - b0,
                "size": os.stat("/lfs/journal.bin")[6],
            }
        )
    )
    vfs.umount("/lfs")


main(sys.argv[1:])
