"""firmware/store.py on the MicroPython VM: config and keys, signed blobs and the clock on littlefs
(vfs.VfsLfs2) over the NOR flash model, replaced atomically; a power cut at every flash write of a save
leaves the old file or the new, never a torn one, and the filesystem mounts and takes the next save."""

import json
import os

import pytest
from harness import vm

EMU = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "emulator")

VM = vm.script("store_cuts")  # harness/mp/store_cuts.py


@pytest.mark.parametrize("seed", [1, 2])
def test_save_survives_a_power_cut_at_every_write(mp_run, tmp_path, seed):
    p = mp_run(VM, str(tmp_path), seed, path=[EMU], timeout=300)
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert out and "fail" not in out[-1], out[-1].get("fail")
    # config/keys JSON, a signed blob (install.py), the clock (hal.Clock.set): every file written
    assert [r["op"] for r in out] == ["save", "write", "clock"]
    for r in out:
        assert r["steps"] >= 3, r  # a save is several flash writes, each one was cut
        assert r["old"] >= 1 and r["new"] >= 1, (
            r
        )  # cuts before the rename commit keep the old file


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


# the virtual board's hardware signals, not files the terminal keeps: the watchdog's heartbeat, its
# keeper's window (the host's Timer 0) and the key channel the host writes (emulator/vboard.py
# reads and writes them in <state>)
NOT_FILES = {"firmware/hal_unix.py", "firmware/keep.py"}


def test_every_file_the_firmware_writes_goes_through_store():
    import ast

    root = os.path.dirname(EMU)
    writers = []
    for n in sorted(os.listdir(os.path.join(root, "firmware"))):
        rel = "firmware/" + n
        if not n.endswith(".py") or rel in NOT_FILES or n == "store.py":
            continue
        with open(os.path.join(root, rel)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            mode = node.args[1] if len(node.args) > 1 else None
            if name == "open" and isinstance(mode, ast.Constant) and set("wax") & set(mode.value):
                writers.append("%s:%d open(..., %r)" % (rel, node.lineno, mode.value))
            elif name == "open" and mode is not None and not isinstance(mode, ast.Constant):
                writers.append("%s:%d open with a computed mode" % (rel, node.lineno))
            elif (
                isinstance(fn, ast.Attribute)
                and name in ("rename", "dump")
                and getattr(fn.value, "id", "") != "store"  # store.rename is the store's own
            ):
                writers.append("%s:%d %s()" % (rel, node.lineno, name))
    assert not writers, "write through firmware/store.py:\n" + "\n".join(writers)
