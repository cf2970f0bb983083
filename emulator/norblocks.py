"""littlefs's extended block-device protocol over the NOR flash model (emulator/norflash.py), for
the VM scripts that put littlefs on the model (harness/mp/store_cuts.py, harness/mp/ota_cuts.py; run
with emulator/ on their path, harness.vm.EMULATOR). Not a module of the virtual board (its vlib):
the board's own storage is emulator/lfsmount.py over its image file.

    from norblocks import NORBlockDev
    vfs.mount(vfs.VfsLfs2(NORBlockDev(NORFlash(path, size))), "/")

4 KB blocks = sectors, programs split at 256-byte pages (the chip's rule), erase = ioctl 6. After a
power cut the chip raises PowerCut for everything, also when the file the cut left open is
finalised later (its MemoryError "heap is locked" on stderr is that: harmless, a real board has no
RAM left over).
"""


class NORBlockDev:
    def __init__(self, flash):
        self.f = flash

    def readblocks(self, n, buf, off=0):
        self.f.read(n * 4096 + off, buf)

    def writeblocks(self, n, buf, off=0):
        a = n * 4096 + off
        mv = memoryview(buf)
        i = 0
        while i < len(buf):
            k = min(256 - (a + i) % 256, len(buf) - i)
            self.f.program(a + i, mv[i : i + k])
            i += k

    def ioctl(self, op, arg):
        if op == 4:
            return self.f.size // 4096
        if op == 5:
            return 4096
        if op == 6:
            self.f.erase(arg * 4096)
            return 0
