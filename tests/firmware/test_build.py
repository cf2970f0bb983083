"""Every firmware and card_schema module compiles with mpy-cross, for the unix port and for the ESP32
(xtensawin), and the build's manifest names every file a board gets with its hash."""

import hashlib
import os

import pytest

from host_tools.build import PACKAGES, ROOT, build


@pytest.mark.parametrize("arch", [None, "xtensawin"])
def test_every_module_compiles(tmp_path, arch):
    manifest = build(str(tmp_path), arch=arch)
    for pkg in PACKAGES:
        for name in os.listdir(os.path.join(ROOT, pkg)):
            if name.endswith(".py"):
                rel = "lib/%s/%s.mpy" % (pkg, name[:-3])
                assert rel in manifest, rel
                with open(tmp_path / rel, "rb") as f:
                    data = f.read()
                assert data[:1] == b"M"  # .mpy magic
                assert manifest[rel] == hashlib.sha256(data).hexdigest()
    assert "main.py" in manifest and "boot.py" in manifest


def test_firmware_tests_import_the_mpy_not_the_source(mp_run, mpy_build):
    p = mp_run(
        "import sys, os, firmware.journal; print(os.getcwd()); print(repr(sys.path))", check=True
    )
    cwd, path = p.stdout.splitlines()[:2]
    reachable = [os.path.join(cwd, d) if not d.startswith("/") else d for d in eval(path)]
    assert os.path.join(mpy_build, "lib") in reachable
    for d in reachable:  # no source of the firmware anywhere MicroPython looks
        assert not os.path.exists(os.path.join(d, "firmware", "journal.py")), d
