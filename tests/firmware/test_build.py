"""Every firmware and card_schema module compiles with mpy-cross, for the unix port and for the ESP32
(xtensawin); each board gets the modules its manifest names (boards/manifests, boards/<b>/manifest.py),
no more, and the build names every file a board gets with its hash."""

import hashlib
import os

import pytest

import boards
from mpybuild import BuildError, cross, manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("card_schema", "firmware")


@pytest.mark.parametrize("arch", [None, "xtensawin"])
def test_every_module_compiles(tmp_path, arch):
    hashes = cross.build(str(tmp_path), manifest.every_module(*PACKAGES), arch=arch)
    for pkg in PACKAGES:
        for name in os.listdir(os.path.join(ROOT, pkg)):
            if name.endswith(".py"):
                rel = "lib/%s/%s.mpy" % (pkg, name[:-3])
                assert rel in hashes, rel
                with open(tmp_path / rel, "rb") as f:
                    data = f.read()
                assert data[:1] == b"M"  # .mpy magic
                assert hashes[rel] == hashlib.sha256(data).hexdigest()
    assert "main.py" in hashes and "boot.py" in hashes


def _modules(board):
    return {e.dest for e in manifest.for_board(board)}


def test_each_platform_gets_its_own_adapter_and_no_host_code():
    esp, unix = _modules("esp32-devkitc"), _modules("unix-virtual")
    assert "lib/firmware/hal_esp32.mpy" in esp and "lib/firmware/hal_unix.mpy" not in esp
    assert "lib/firmware/uart_socket.mpy" not in esp and "lib/firmware/keys_esp32.mpy" not in esp
    assert {"lib/firmware/hal_unix.mpy", "lib/firmware/uart_socket.mpy"} <= unix
    assert "lib/firmware/hal_esp32.mpy" not in unix
    for mods in (esp, unix):
        assert "lib/firmware/app.mpy" in mods and "lib/card_schema/desfire.mpy" in mods
        assert not [m for m in mods if m.endswith(("_host.mpy", "_admin.mpy"))], mods


@pytest.mark.parametrize("board", boards.names())
def test_a_board_with_keys_gets_the_key_driver(board):
    spec = boards.spec(board)
    wants = spec["platform"] == "esp32" and bool({"keypad", "taximeter"} & set(spec["ui"]))
    assert ("lib/firmware/keys_esp32.mpy" in _modules(board)) == wants  # firmware/hal_esp32.py


def test_every_firmware_module_goes_to_some_board():
    named = set()
    for b in boards.names():
        named |= _modules(b)
    for name in os.listdir(os.path.join(ROOT, "firmware")):
        if name.endswith(".py"):
            assert "lib/firmware/%s.mpy" % name[:-3] in named, name  # or it is dead code


def test_a_manifest_that_names_a_missing_module_is_one_clear_error(tmp_path):
    (tmp_path / "manifest.py").write_text('include("../../nope.py")\n')
    with pytest.raises(BuildError, match="cannot read manifest .*nope.py"):
        manifest.load(str(tmp_path / "manifest.py"))
    (tmp_path / "manifest.py").write_text('module("nosuch.py", package="firmware")\n')
    with pytest.raises(BuildError, match="names .*nosuch.py: no such file"):
        manifest.load(str(tmp_path / "manifest.py"))


def test_firmware_tests_import_the_mpy_not_the_source(mp_run, mpy_build):
    p = mp_run(
        "import sys, os, firmware.journal; print(os.getcwd()); print(repr(sys.path))", check=True
    )
    cwd, path = p.stdout.splitlines()[:2]
    reachable = [os.path.join(cwd, d) if not d.startswith("/") else d for d in eval(path)]
    assert os.path.join(mpy_build, "lib") in reachable
    for d in reachable:  # no source of the firmware anywhere MicroPython looks
        assert not os.path.exists(os.path.join(d, "firmware", "journal.py")), d
