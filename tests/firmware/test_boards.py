"""Every board definition under boards/ loads with firmware.hal on the real MicroPython VM (ESP32 boards
with the ESP32 modules faked, tests/fakes, as tests/firmware/test_hal_esp32.py does) from only the
modules its manifest gives it, names a profile the firmware has, and maps its parts onto pins without
using one twice."""

import json
import os
import socket

import pytest

import boards
from mpybuild import cross, manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKES = os.path.join(ROOT, "tests", "fakes")
EMU = os.path.join(ROOT, "emulator")
BOARDS = sorted(
    d
    for d in os.listdir(os.path.join(ROOT, "boards"))
    if os.path.exists(os.path.join(ROOT, "boards", d, "board.json"))
)

LOAD = (
    "import json, sys\n"
    "from firmware import hal\n"
    "b = hal.load(sys.argv[1])\n"
    "print(json.dumps({'name': b.name, 'platform': b.platform, 'errors': b.errors,\n"
    "    'flash': b.flash.size if b.flash else None, 'keypad': b.keypad is not None}))\n"
)


@pytest.fixture(scope="module")
def manifest_build(tmp_path_factory):
    """board -> lib/ of a build of only what the board's manifest names (one build per manifest)."""
    built = {}

    def lib(board):
        path = boards.manifest(board)
        if path not in built:
            out = str(tmp_path_factory.mktemp("board"))
            cross.build(out, manifest.load(path))
            built[path] = os.path.join(out, "lib")
        return built[path]

    return lib


def _spec(name):
    with open(os.path.join(ROOT, "boards", name, "board.json")) as f:
        return json.load(f)


def test_the_kinds_of_terminal_have_boards():
    kinds = {_spec(b)["profile"] for b in BOARDS}
    assert kinds >= {"bus", "taxi", "parking", "pos", "charity"}
    assert {"taxi-unit", "parking-meter", "pos-counter", "charity-box"} <= set(BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_board_loads_on_the_vm(mp_run, manifest_build, tmp_path, name):
    spec = _spec(name)
    (tmp_path / "board.json").write_text(json.dumps(spec))
    srv = socket.socket()  # the reader's wire: a listening socket is enough to open it
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        if spec["platform"] == "esp32":
            env = {
                "TAPKIT_FAKE_PARTITIONS": os.path.join(ROOT, "boards", name, spec["partitions"]),
                "TAPKIT_FAKE_FLASH_DIR": str(tmp_path),
                "TAPKIT_FAKE_UART": "127.0.0.1:%d" % srv.getsockname()[1],
                "TAPKIT_FAKE_WIFI": "depot:s3cret",
            }
            path = [FAKES, EMU]
        else:
            env = {"TAPKIT_PN532_PORT": str(srv.getsockname()[1])}
            path = [EMU]
        p = mp_run(
            LOAD,
            str(tmp_path / "board.json"),
            path=path,
            env=env,
            cwd=str(tmp_path),
            lib=manifest_build(name),
        )
    finally:
        srv.close()
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["name"] == name and out["platform"] == spec["platform"]
    assert out["errors"] == []
    assert out["flash"] == spec["journal"]["size"]
    assert out["keypad"] == ("keypad" in spec["ui"])  # ESP32: matrix / buttons (Keys)
    assert os.path.exists(os.path.join(ROOT, "firmware", "profile_%s.py" % spec["profile"]))


@pytest.mark.parametrize("name", [b for b in BOARDS if _spec(b)["platform"] == "esp32"])
def test_esp32_board_pins_and_keys(name):
    spec = _spec(name)
    r, ui = spec["reader"], spec["ui"]
    pins = [r["tx"], r["rx"], ui["display"]["sda"], ui["display"]["scl"], ui["buzzer"]["pin"]]
    pins += [ui["led"][c] for c in "rgb"]
    kp = ui.get("keypad")
    if kp:
        if kp["type"] == "matrix":
            pins += kp["rows"] + kp["cols"]
            assert len(kp["keys"]) == len(kp["rows"]) * len(kp["cols"])
        else:
            pins += kp["pins"]
            assert len(kp["keys"]) == len(kp["pins"])
    if "taximeter" in ui:
        pins += [ui["taximeter"]["tx"], ui["taximeter"]["rx"]]
    assert len(pins) == len(set(pins)), sorted(pins)
    assert not set(pins) & set(range(6, 12))  # the flash chip's pins
    with open(os.path.join(ROOT, "boards", name, spec["partitions"])) as f:
        rows = [ln.split(",") for ln in f if ln.strip() and not ln.startswith("#")]
    journal = [row for row in rows if row[0].strip() == "journal"]
    assert journal and int(journal[0][4], 16) == spec["journal"]["size"]
