"""The ESP32 board layer (firmware/hal_esp32.py) on the real MicroPython VM, with the ESP32 modules
faked (tests/fakes: machine, esp32, network) so CI needs no board:

- hal.load of boards/esp32-devkitc builds UART2 (to a socket server in this test), WDT, the journal
  partition (esp32.Partition over the NOR model), Wi-Fi, buzzer/LED pins;
- the journal runs on that partition and survives a reboot (a new process).
"""

import json
import os
import shutil
import socket
import threading

import pytest
from harness import vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKES = os.path.join(ROOT, "tests", "fakes")
EMU = os.path.join(ROOT, "emulator")
BOARD = os.path.join(ROOT, "boards", "esp32-devkitc")

VM = vm.script("hal_esp32_board")  # harness/mp/hal_esp32_board.py


class EchoPN532:
    """A stand-in for the reader on the other end of UART2: answers every frame with ACK + data."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(2)
        self.port = self.srv.getsockname()[1]
        self.seen = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                while True:
                    data = c.recv(512)
                    if not data:
                        break
                    self.seen.append(data)
                    c.sendall(bytes.fromhex("0000ff00ff00"))  # PN532 ACK frame

    def close(self):
        self.srv.close()


@pytest.fixture
def esp32_env(tmp_path):
    chip = EchoPN532()
    shutil.copy(os.path.join(BOARD, "board.json"), tmp_path / "board.json")
    env = {
        "TAPKIT_FAKE_PARTITIONS": os.path.join(BOARD, "partitions.csv"),
        "TAPKIT_FAKE_FLASH_DIR": str(tmp_path),
        "TAPKIT_FAKE_UART": "127.0.0.1:%d" % chip.port,
        "TAPKIT_FAKE_WIFI": "depot:s3cret",
    }
    yield env, tmp_path, chip
    chip.close()


def run_board(mp_run, env, tmp_path, taps):
    p = mp_run(
        VM,
        str(tmp_path / "board.json"),
        taps,
        path=[FAKES, EMU],
        env=env,
        cwd=str(tmp_path),
    )
    assert p.returncode == 0, "micropython failed:\n%s\n%s" % (p.stdout, p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_esp32_board_builds_from_fakes_and_journal_survives_reboot(mp_run, esp32_env):
    env, tmp_path, chip = esp32_env
    out, stderr = run_board(mp_run, env, tmp_path, 5)
    assert out["name"] == "esp32-devkitc" and out["platform"] == "esp32"
    assert out["errors"] == []
    assert out["reset"] == "power-on"
    assert out["uart"] == [2, 115200, 17, 16, 50]
    assert out["uart_reply"] == "0000ff00ff00"
    assert chip.seen and chip.seen[0] == bytes.fromhex("0000ff02fed4022a00")
    assert out["flash"] == [524288, 4096, 256]
    assert out["wdt"] == [8000, 1]
    assert out["wifi"] == [False, True, True]
    assert "DISPLAY| Tap your card | 3,000 Rial" in stderr
    assert "BUZZER|ok" in stderr and "LED|green" in stderr
    assert out["recovered_head"] == 0 and out["head"] == 5
    assert out["capacity"] == 128 * 60
    # the partition is a 512 KB file beside the board: the NOR model, as the fake esp32 maps it
    assert os.path.getsize(tmp_path / "journal.bin") == 524288
    assert out["flash_stats"]["erases"] == 1 and out["flash_stats"]["programs"] == 6

    out, _ = run_board(mp_run, env, tmp_path, 3)  # reboot: a new process on the same "chip"
    assert out["recovered_head"] == 5 and out["head"] == 8


def test_esp32_board_without_reader_or_partition_still_boots(mp_run, esp32_env, tmp_path):
    env, tmp_path, _ = esp32_env
    env = dict(env)
    env["TAPKIT_FAKE_UART"] = ""
    csv = tmp_path / "nojournal.csv"
    csv.write_text("nvs, data, nvs, 0x9000, 0x6000,\n")
    env["TAPKIT_FAKE_PARTITIONS"] = str(csv)
    code = (
        "from firmware import hal\n"
        "b = hal.load(%r)\n"
        "print(len(b.errors), b.flash is None)\n"
        "try:\n"
        "    b.uart.write(b'x')\n"
        "except OSError as e:\n"
        "    print('uart', e.args[0])\n"
        "print('\\n'.join(b.errors))\n" % str(tmp_path / "board.json")
    )
    p = mp_run(code, path=[FAKES, EMU], env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "2 True" and lines[1] == "uart 19"
    assert "reader" in lines[2] and "journal" in lines[3] and "partition" in lines[3]


def test_unix_board_builds_norflash_and_text_ui(mp_run, tmp_path):
    board = json.load(open(os.path.join(ROOT, "boards", "unix-virtual", "board.json")))
    with open(tmp_path / "board.json", "w") as f:
        json.dump(board, f)
    code = (
        "from firmware import hal\n"
        "b = hal.load(%r)\n"
        "print(b.platform, b.flash.size, b.net, b.reset_cause)\n"
        "b.wdt.feed(); print(open('heartbeat').read().strip().isdigit())\n"
        "b.clock.set(1800000000); print(abs(b.clock.time() - 1800000000) < 5)\n"
        "b.display.show('Tap your card')\n"
        "print(b.errors)\n" % str(tmp_path / "board.json")
    )
    env = {"TAPKIT_PN532_PORT": ""}
    p = mp_run(code, path=[EMU], env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "unix 262144 None power-on"
    assert lines[1] == "True" and lines[2] == "True"
    assert "reader" in lines[3]  # no PN532 emulator running: recorded, the board still boots
    assert "DISPLAY| Tap your card | " in p.stderr
    assert os.path.getsize(tmp_path / "flash.bin") == 262144
    assert json.load(open(tmp_path / "clock.json"))["floor"] == 1800000000
    assert os.path.exists(tmp_path / "heartbeat")


@pytest.mark.parametrize("cause", [5, 1])  # machine.SOFT_RESET, PWRON_RESET
def test_watchdog_keeper_in_the_repl_then_back_into_service(mp_run, tmp_path, cause):
    """machine.WDT cannot be stopped and the REPL (mpremote, tapkit flash) feeds nothing: after a
    soft reset boot.py's keeper feeds it from Timer 0 (not after a power-on: no watchdog runs), the
    firmware's build stops it, and a Ctrl-C in the main loop hands it to the keeper again, which
    feeds it for wdt.keep_s and then no more (the watchdog resets the board into service)."""
    from mpybuild import cross

    board = json.load(open(os.path.join(BOARD, "board.json")))
    board["wdt"]["keep_s"] = 1
    (tmp_path / "board.json").write_text(json.dumps(board))
    (tmp_path / "boot.py").write_text(cross.BOOT_PY)
    (tmp_path / "main.py").write_text(cross.MAIN_PY)
    env = {"TAPKIT_FAKE_RESET_CAUSE": str(cause)}
    p = mp_run(vm.script("hal_esp32_keep"), path=[FAKES, EMU], env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    soft = cause == 5
    assert out == {
        "boot_keeper": soft,
        "boot_forgot": True,
        "boot_fed": 2 if soft else 0,  # its first feed, then one per period
        "build_stops_it": True,
        "ctrl_c": "raised",
        "keeper": True,
        "fed": 2,  # two periods
        "after_window": [False, 2],  # the window is over: not fed, the timer stopped
    }
