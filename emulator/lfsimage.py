"""The virtual board's filesystem: a littlefs image file, read and written from CPython.

The board (emulator/lfsmount.py, on the MicroPython unix port) mounts the same file as vfs.VfsLfs2
at "/", over a file-backed block device of BLOCK_SIZE-byte blocks; this module opens it with
littlefs-python in the same geometry (read/prog size 32, lookahead 32: MicroPython's defaults), so
the host can put the firmware onto a board and read back what the board wrote.

    write_files("bus/fs.img", {"/main.py": b"...", "lib/firmware/app.mpy": data})  # makes dirs
    read_file("bus/fs.img", "/config.json")       # -> bytes (FileNotFoundError when absent)
    listdir("bus/fs.img", "/lib")                 # -> ["card_schema", "firmware"]
    walk_files("bus/fs.img")                      # -> {"/boot.py": b"...", ...}

Write only while the board is off (its running program caches the filesystem's state); reading
while it runs sees the last complete commit (littlefs is power-loss safe).
"""

import os

BLOCK_SIZE = 4096
BLOCK_COUNT = 512  # 2 MB: no board's (a board has its partitions.csv vfs: vboard.vfs_size)
_GEOMETRY = {"read_size": 32, "prog_size": 32, "lookahead_size": 32, "block_cycles": 100}


class ImageError(Exception):
    pass


def _lfs(img, create=False, size=None):
    from littlefs import LittleFS, UserContext

    if not os.path.exists(img):
        if not create:
            raise FileNotFoundError("no filesystem image %s" % img)
        n = (size or BLOCK_SIZE * BLOCK_COUNT) // BLOCK_SIZE  # the board's vfs partition
        fs = LittleFS(block_size=BLOCK_SIZE, block_count=n, mount=False, **_GEOMETRY)
        fs.format()
        _save(fs, img)
    with open(img, "rb") as f:
        data = f.read()
    if not data or len(data) % BLOCK_SIZE:
        raise ImageError("%s is not a littlefs image of %d-byte blocks" % (img, BLOCK_SIZE))
    ctx = UserContext(len(data))
    ctx.buffer[:] = data
    fs = LittleFS(
        ctx, block_size=BLOCK_SIZE, block_count=len(data) // BLOCK_SIZE, mount=False, **_GEOMETRY
    )
    try:
        fs.mount()
    except Exception as e:  # littlefs.LittleFSError: a damaged or foreign image
        raise ImageError("%s: not a mountable littlefs image (%s)" % (img, e)) from None
    return fs


def _save(fs, img):
    os.makedirs(os.path.dirname(os.path.abspath(img)), exist_ok=True)
    tmp = img + ".new"
    with open(tmp, "wb") as f:
        f.write(bytes(fs.context.buffer))
    os.replace(tmp, img)


def _p(path):
    return "/" + path.strip("/")


def create(img, size=None):
    """A formatted, empty image of `size` bytes (default 2 MB; a board's vfs partition: see
    emulator.vboard.vfs_size) when there is none (a board fresh from the factory); an existing one
    is kept, whatever its size."""
    _lfs(img, create=True, size=size)


def write_files(img, files, size=None):
    """Write {path: bytes or str} into the image (created when missing, `size` bytes), parent dirs
    included; the image file is replaced as a whole (a crash leaves the old or the new one)."""
    fs = _lfs(img, create=True, size=size)
    for path, data in files.items():
        path = _p(path)
        parts = path.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            d = "/" + "/".join(parts[: i + 1])
            try:
                fs.mkdir(d)
            except FileExistsError:
                pass
        with fs.open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    _save(fs, img)


def remove(img, path):
    fs = _lfs(img)
    fs.remove(_p(path))
    _save(fs, img)


def read_file(img, path):
    fs = _lfs(img)
    with fs.open(_p(path), "rb") as f:
        return f.read()


def exists(img, path):
    from littlefs import LittleFSError

    try:
        _lfs(img).stat(_p(path))
        return True
    except FileNotFoundError:
        return False
    except LittleFSError as e:
        if e.code == LittleFSError.Error.LFS_ERR_NOENT:
            return False
        raise


def listdir(img, path="/"):
    return sorted(_lfs(img).listdir(_p(path)))


def walk_files(img):
    """{path: bytes} of every file in the image."""
    fs = _lfs(img)
    out = {}
    for top, _dirs, names in fs.walk("/"):
        for n in names:
            p = _p(top.rstrip("/") + "/" + n)
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    return out


def import_dir(img, src, size=None):
    """Copy a host directory tree (e.g. a build) into the image."""
    files = {}
    for top, _dirs, names in os.walk(src):
        for n in names:
            full = os.path.join(top, n)
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    files["/" + os.path.relpath(full, src)] = f.read()
    write_files(img, files, size)
