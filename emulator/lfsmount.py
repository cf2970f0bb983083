# The virtual board's storage (MicroPython, unix port; deployed into the board's vlib by
# emulator/vboard.py): `import lfsmount` before boot.py/main.py or the REPL mounts the board's
# littlefs image ($TAPKIT_STATE/fs.img, 4096-byte blocks) as vfs.VfsLfs2 at "/", as an ESP32 mounts
# its vfs partition, and the host's state dir (vfs.VfsPosix) at "/_host" for what the board host
# watches: journal flash.bin, heartbeat, keypad (board.json names them; hal_unix resolves them under
# $TAPKIT_HOST). Geometry as emulator/lfsimage.py (the host side): readsize/progsize/lookahead 32.
import os
import sys

import vfs


class FileBlocks:
    # the extended block-device protocol over the image file
    def __init__(self, path):
        self.f = open(path, "r+b")
        self.n = self.f.seek(0, 2) // 4096

    def readblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.readinto(buf)

    def writeblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return 4096
        if op == 3:  # sync
            self.f.flush()
        return 0  # init, deinit, erase (a program needs no erase in a file)


def mount():
    state = os.getenv("TAPKIT_STATE")
    bdev = FileBlocks(state + "/fs.img")
    vfs.umount("/")
    vfs.mount(vfs.VfsLfs2(bdev, readsize=32, progsize=32, lookahead=32), "/")
    vfs.mount(vfs.VfsPosix(state), "/_host")
    os.chdir("/")
    sys.path[:] = ["", "/lib", "/_host/vlib", ".frozen"]


mount()
del sys.modules["lfsmount"]
