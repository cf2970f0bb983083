"""firmware/store.py on littlefs over the NOR flash model, a power cut at every flash write of a JSON
save, a blob write and a clock set (tests/firmware/test_store_lfs.py).

    micropython store_cuts.py DIR SEED
"""

import sys
import json
import gc
import vfs
from norflash import NORFlash, PowerCut
from norblocks import NORBlockDev
from firmware import hal, store

SIZE = 16 * 4096
MP = "/st"


def mount(path):
    fl = NORFlash(path, SIZE)
    vfs.mount(vfs.VfsLfs2(NORBlockDev(fl)), MP)  # type: ignore[abstract, arg-type]
    return fl


def umount(fl):
    try:
        vfs.umount(MP)
    except Exception:
        pass
    fl.close()


def config(v):
    # about 1 KB: a fare table's worth, so a save takes several programs
    return {"ver": v, "fare": 25000 + v, "fares": {str(i): 1000 * i + v for i in range(60)}}


def blob(v):
    return bytes([v]) * 1500  # a signed blob's size: several programs


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# (name, file, write version v of it, read it back)
OPS = (
    (
        "save",
        "/config.json",
        lambda p, v: store.save(p, config(v)),
        lambda p, v: store.load(p) == config(v),
    ),
    ("write", "/fares.bin", lambda p, v: store.write(p, blob(v)), lambda p, v: read(p) == blob(v)),
    (
        "clock",
        "/clock.json",
        lambda p, v: hal.Clock(p).set(1700000000 + v),
        lambda p, v: hal.Clock(p).floor == 1700000000 + v,
    ),
)


def copy(src, dst):
    buf = bytearray(4096)
    with open(src, "rb") as f, open(dst, "wb") as g:
        while f.readinto(buf):
            g.write(buf)


def campaign(d, seed, name, path, put, has):
    """Cut the power at every flash write of put(v=2) over v=1; the reboot reads v=1 or v=2."""
    base, work = d + "/base.bin", d + "/work.bin"
    path = MP + path
    fl = NORFlash(base, SIZE)
    vfs.VfsLfs2.mkfs(NORBlockDev(fl))  # type: ignore[arg-type]  # a duck-typed block device
    fl.close()
    fl = mount(base)
    store.save(MP + "/keys.json", {"journal": "00" * 16})
    put(path, 1)
    umount(fl)
    old = new = 0
    for step in range(1, 500):
        gc.collect()
        copy(base, work)
        fl = NORFlash(work, SIZE)
        fl.cut_after(step, seed * 1000 + step)
        cut = False
        try:
            vfs.mount(vfs.VfsLfs2(NORBlockDev(fl)), MP)  # type: ignore[abstract, arg-type]
            put(path, 2)
        except PowerCut:
            cut = True
        umount(fl)
        fl = mount(work)  # the reboot: must mount, never needs a format
        tag = "%s seed=%d step=%d" % (name, seed, step)
        if has(path, 1) and cut:
            old += 1
        elif has(path, 2):
            new += 1
        else:
            return {"fail": "%s: neither the old nor the new %s" % (tag, path)}
        if store.load(MP + "/keys.json") != {"journal": "00" * 16}:
            return {"fail": "%s: keys.json changed" % tag}
        put(path, 3)  # the filesystem goes on
        if not has(path, 3):
            return {"fail": "%s: the write after the cut did not land" % tag}
        umount(fl)
        if not cut:
            break  # the write completed before the cut point: every write of it was cut once
    return {"op": name, "steps": step, "old": old, "new": new}


def main(argv):
    d, seed = argv[0], int(argv[1])
    for name, path, put, has in OPS:
        r = campaign(d, seed, name, path, put, has)
        print(json.dumps(r))
        if "fail" in r:
            return


main(sys.argv[1:])
