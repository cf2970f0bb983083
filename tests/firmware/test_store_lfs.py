"""firmware/store.py on the MicroPython VM: config and keys on littlefs (vfs.VfsLfs2) over the NOR flash
model, replaced atomically; a power cut at every flash write of a save leaves the old file or the new,
never a torn one, and the filesystem mounts and takes the next save."""

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
