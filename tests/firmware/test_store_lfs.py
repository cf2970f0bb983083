"""firmware/store.py on the MicroPython VM: config and keys on littlefs (vfs.VfsLfs2) over the NOR flash
model, replaced atomically; a power cut at every flash write of a save leaves the old file or the new,
never a torn one, and the filesystem mounts and takes the next save."""

import json
import os

import pytest

EMU = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "emulator")

VM = r"""
import sys, json, gc, vfs
from norflash import NORFlash, PowerCut
from firmware import store

SIZE = 16 * 4096
MP = "/st"


class NORBlockDev:
    # littlefs's extended block-device protocol over the NOR model: 4 KB blocks = sectors,
    # programs split at 256-byte pages (the chip's rule), erase = ioctl 6. After a cut the chip
    # raises PowerCut for everything, also when the file the cut left open is finalised later (its
    # MemoryError "heap is locked" on stderr is that: harmless, a real board has no RAM left over).
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
            self.f.program(a + i, mv[i:i + k])
            i += k

    def ioctl(self, op, arg):
        if op == 4:
            return self.f.size // 4096
        if op == 5:
            return 4096
        if op == 6:
            self.f.erase(arg * 4096)
            return 0


def mount(path):
    fl = NORFlash(path, SIZE)
    vfs.mount(vfs.VfsLfs2(NORBlockDev(fl)), MP)
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


def copy(src, dst):
    buf = bytearray(4096)
    with open(src, "rb") as f, open(dst, "wb") as g:
        while f.readinto(buf):
            g.write(buf)


def main(argv):
    d, seed = argv[0], int(argv[1])
    base, work = d + "/base.bin", d + "/work.bin"
    fl = NORFlash(base, SIZE)
    vfs.VfsLfs2.mkfs(NORBlockDev(fl))
    fl.close()
    fl = mount(base)
    store.save(MP + "/keys.json", {"journal": "00" * 16})
    store.save(MP + "/config.json", config(1))
    umount(fl)
    old = new = 0
    for step in range(1, 500):
        gc.collect()
        copy(base, work)
        fl = NORFlash(work, SIZE)
        fl.cut_after(step, seed * 1000 + step)
        cut = False
        try:
            vfs.mount(vfs.VfsLfs2(NORBlockDev(fl)), MP)
            store.save(MP + "/config.json", config(2))
        except PowerCut:
            cut = True
        umount(fl)
        fl = mount(work)  # the reboot: must mount, never needs a format
        got = store.load(MP + "/config.json")
        tag = "seed=%d step=%d" % (seed, step)
        if got == config(1) and cut:
            old += 1
        elif got == config(2):
            new += 1
        else:
            print(json.dumps({"fail": "%s: read %r" % (tag, got)}))
            return
        if store.load(MP + "/keys.json") != {"journal": "00" * 16}:
            print(json.dumps({"fail": "%s: keys.json changed" % tag}))
            return
        store.save(MP + "/config.json", config(3))  # the filesystem goes on
        if store.load(MP + "/config.json") != config(3):
            print(json.dumps({"fail": "%s: the save after the cut did not land" % tag}))
            return
        umount(fl)
        if not cut:
            break  # the save completed before the cut point: every write of it was cut once
    print(json.dumps({"steps": step, "old": old, "new": new}))


main(sys.argv[1:])
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_save_survives_a_power_cut_at_every_write(mp_run, tmp_path, seed):
    script = tmp_path / "store_vm.py"
    script.write_text(VM)
    p = mp_run(str(script), str(tmp_path), seed, path=[EMU], timeout=300)
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert out and "fail" not in out[-1], out[-1].get("fail")
    r = out[-1]
    assert r["steps"] >= 3  # a save is several flash writes, each one was cut
    assert r["old"] >= 1 and r["new"] >= 1  # cuts before the rename commit keep the old file


def test_load_default_and_damage(mp_run, tmp_path):
    code = (
        "from firmware import store\n"
        "import json\n"
        "print(json.dumps(store.load('none.json', {'d': 1})))\n"
        "store.save('c.json', {'fare': 25000})\n"
        "print(json.dumps(store.load('c.json')))\n"
        "open('bad.json', 'w').write('{\"fa')\n"
        "try:\n"
        "    store.load('bad.json', {})\n"
        "except ValueError:\n"
        "    print('damaged')\n"
    )
    p = mp_run(code, cwd=str(tmp_path), check=True)
    assert p.stdout.split("\n")[:3] == ['{"d": 1}', '{"fare": 25000}', "damaged"]
    assert not os.path.exists(tmp_path / "c.json.new")
