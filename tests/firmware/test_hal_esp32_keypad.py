"""The ESP32 keypad, buttons and taximeter (firmware/keys_esp32.py `Keys`, built by
firmware/hal_esp32.py) on the real MicroPython VM, with the ESP32 modules faked (tests/fakes): the test
closes matrix switches and holds button pins through the fake `machine` (machine.pressed,
machine.levels), and the taximeter's UART1 is a socket this test serves lines on.

- a matrix key held over several polls is reported once; a one-poll blip is not; pressed again, again;
- buttons (active low) give their keys;
- the meter's `FARE <Rial>` line arrives in the key channel and arms the taxi profile's fare; noise,
  malformed and overlong lines are dropped; a held key never splits the line.
"""

import json
import os
import shutil
import socket
import threading
from harness import vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKES = os.path.join(ROOT, "tests", "fakes")
EMU = os.path.join(ROOT, "emulator")

# steps: [wait ms, polls, closed matrix switches [[row pin, col pin]], button levels {pin: level}];
# per step: the keys poll() gave. With "taxi", the keys also go to firmware.profile_taxi.key.
VM = vm.script("hal_esp32_keys")  # harness/mp/hal_esp32_keys.py


def _server(send=b""):
    """A listening socket standing in for a UART's other end; sends `send` to whoever connects."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)

    def run():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c:
            c.sendall(send)
            c.recv(1)  # hold the line open until the VM is gone

    threading.Thread(target=run, daemon=True).start()
    return srv


def _run(mp_run, tmp_path, board, steps, mode="", meter=b""):
    reader, taximeter = _server(), _server(meter)
    # the board file in tmp_path: the board writes its clock file beside it (a power-on)
    shutil.copy(os.path.join(ROOT, "boards", board, "board.json"), tmp_path / "board.json")
    try:
        env = {
            "TAPKIT_FAKE_PARTITIONS": os.path.join(ROOT, "boards", board, "partitions.csv"),
            "TAPKIT_FAKE_FLASH_DIR": str(tmp_path),
            "TAPKIT_FAKE_UART2": "127.0.0.1:%d" % reader.getsockname()[1],
            "TAPKIT_FAKE_UART1": "127.0.0.1:%d" % taximeter.getsockname()[1],
            "TAPKIT_FAKE_WIFI": "depot:s3cret",
        }
        p = mp_run(
            VM,
            str(tmp_path / "board.json"),
            json.dumps(steps),
            mode or "-",
            path=[FAKES, EMU],
            env=env,
            cwd=str(tmp_path),
        )
    finally:
        reader.close()
        taximeter.close()
    assert p.returncode == 0, "micropython failed:\n%s\n%s" % (p.stdout, p.stderr)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["errors"] == []
    return out


# taxi-unit: rows 4, 5, 18, 19; cols 23, 32, 33, 13; keys "123A456B789C*0#D"
KEY = {"1": [4, 23], "5": [5, 32], "7": [18, 23], "C": [18, 13], "#": [19, 33], "D": [19, 13]}
KEY["0"] = [19, 32]


def test_matrix_key_reported_once_per_press_and_debounced(mp_run, tmp_path):
    steps = [
        [0, 3, [], {}],  # nothing pressed
        [0, 6, [KEY["5"]], {}],  # held over six polls: one "5"
        [0, 2, [], {}],  # released
        [0, 3, [KEY["5"]], {}],  # pressed again: another "5"
        [0, 2, [], {}],
        [0, 1, [KEY["1"]], {}],  # a one-poll blip (contact bounce) ...
        [0, 2, [], {}],  # ... released at once: no key
        [0, 2, [KEY["#"]], {}],
        [0, 2, [KEY["D"]], {}],  # straight from "#" to "D" (roll-over): "D" once
        [0, 2, [], {}],
        [0, 2, [KEY["C"]], {}],
        [0, 2, [KEY["0"]], {}],
    ]
    out = _run(mp_run, tmp_path, "taxi-unit", steps)
    assert out["keys"] == ["", "5", "", "5", "", "", "", "#", "D", "", "C", "0"]


def test_pos_counter_matrix_has_its_refund_key(mp_run, tmp_path):
    # pos-counter: the same wiring, "R" where the taxi has "A" (row 4, col 13)
    out = _run(mp_run, tmp_path, "pos-counter", [[0, 3, [[4, 13]], {}], [0, 2, [], {}]])
    assert out["keys"] == ["R", ""]


def test_buttons_active_low(mp_run, tmp_path):
    # charity-box: buttons on 32, 33, 13, 23 -> "123*"; parking-meter: 32, 33 -> "AB"
    steps = [
        [0, 3, [], {}],
        [0, 4, [], {"33": 0}],  # "2" held
        [0, 2, [], {"33": 1}],  # released (driven high: same as the pull-up)
        [0, 2, [], {"23": 0}],  # "*"
        [0, 2, [], {}],
        [0, 1, [], {"32": 0}],  # a blip: nothing
        [0, 2, [], {}],
        [0, 2, [], {"32": 0}],  # "1"
    ]
    out = _run(mp_run, tmp_path, "charity-box", steps)
    assert out["keys"] == ["", "2", "", "*", "", "", "", "1"]
    out = _run(mp_run, tmp_path, "parking-meter", [[0, 2, [], {"33": 0}], [0, 2, [], {}]])
    assert out["keys"] == ["B", ""]


def test_taximeter_line_arrives_as_the_fare(mp_run, tmp_path):
    meter = (
        b"HELLO\r\nFARE 12x00\nFARE \n"  # noise, a malformed fare, no fare: dropped
        + b"FARE "
        + b"9" * 40
        + b"\n"  # overlong: dropped
        + b"FARE 123000\r\n"
    )
    steps = [
        [300, 1, [KEY["7"]], {}],  # "7" held while the line arrives
        [0, 12, [KEY["7"]], {}],
        [0, 3, [], {}],
    ]
    out = _run(mp_run, tmp_path, "taxi-unit", steps, "taxi", meter)
    # the line goes into the key channel whole ("F", digits, newline); the held key comes after it
    assert "".join(out["keys"]) == "F123000\n7"
    assert out["fare"] == [123000, 1]  # the taxi profile armed the meter's fare
