"""`tapkit flash` onto virtual boards over their USB serial (the raw REPL), then `tapkit diag`."""

import os
import threading
import time

import pytest
from e2e_helpers import rider_card, run_cli

from emulator import lfsimage
from emulator.vboard import VirtualBoard
from host_tools import keystore
from host_tools.fleet import esp32, flash

BOARD = "unix-virtual"


@pytest.fixture
def blank_boards(tmp_path):
    boards = []

    def make(n, **kw):
        for i in range(n):
            vb = VirtualBoard(str(tmp_path / ("board-%d" % i)), **kw)
            vb.start(blank=True)
            boards.append(vb)
        return boards

    yield make
    for vb in boards:
        vb.stop()


def test_flash_fresh_board_then_diag_then_nothing_to_copy(capsys, keystore_path, blank_boards):
    (vb,) = blank_boards(1)
    assert not vb.alive  # factory fresh: MicroPython's REPL only
    rc, r, err = run_cli(
        capsys, "flash", "--port", vb.port, "--board", BOARD, "--terminal-id", 4711,
        "--line", 9, "--keystore", keystore_path, "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert r["terminal_id"] == 4711 and r["fw"] == "0.1.0" and r["unsynced"] == 0
    assert r["copied"] == r["files"] and "/lib/firmware/app.mpy" in r["changed"]
    assert "/lib/card_schema/desfire_admin.mpy" not in r["changed"]  # host-only code stays home
    assert vb.alive  # rebooted into the firmware
    fs = lfsimage.listdir(vb.image)  # the board's littlefs image: what the firmware booted from
    assert {"manifest.json", "config.json", "keys.json", "board.json", "main.py"} <= set(fs)
    assert not os.path.exists(os.path.join(vb.state, "fs"))
    assert (
        lfsimage.read_file(vb.image, "/lib/firmware/app.mpy")
        == flash.local_files(BOARD, keystore.load(str(keystore_path)), 4711, {"line": 9})[0][
            "/lib/firmware/app.mpy"
        ]
    )

    rc, d, err = run_cli(capsys, "diag", "--port", vb.port, "--json")
    assert rc == 0, err
    assert d["via"] == "firmware (sync protocol)"
    assert (d["terminal_id"], d["fw"], d["config_ver"], d["profile"]) == (4711, "0.1.0", 1, "bus")
    assert d["reset"] == "soft" and d["line_test"] is True and d["reader"][:3] == [0x32, 1, 6]
    assert abs(d["drift"]) <= 2 and d["unsynced"] == 0 and d["wifi"] == "none"

    rc, r2, err = run_cli(
        capsys, "flash", "--port", vb.port, "--board", BOARD, "--line", 9,
        "--keystore", keystore_path, "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert r2["copied"] == 0 and r2["changed"] == [] and r2["terminal_id"] == 4711


def test_flash_keeps_unsynced_taps_and_guards_identity(
    tmp_path, capsys, keystore_path, virtual_bus
):
    card = rider_card(tmp_path / "rider.card", keystore_path, 100000)
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    rc, r, err = run_cli(
        capsys, "flash", "--port", virtual_bus.port, "--board", BOARD, "--fare", 30000,
        "--keystore", keystore_path, "--json",
    )  # fmt: skip
    assert rc == 0, err
    # the tap (its charge and the CONFIRM of the card's commit answer) survived the flash
    assert r["terminal_id"] == 1001 and r["unsynced"] == 2
    assert "/config.json" in r["changed"]
    # the new fare is in force (another rider: the flashed config has the 60 s repeat window)
    other = rider_card(tmp_path / "other.card", keystore_path, 100000, card_no=2)
    assert "30,000" in virtual_bus.tap(other)["display"]
    rc, out, err = run_cli(
        capsys, "flash", "--port", virtual_bus.port, "--board", BOARD, "--terminal-id", 1002,
        "--keystore", keystore_path,
    )  # fmt: skip
    assert rc == 1
    assert "terminal 1001" in err and "4 unsynced taps" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    rc, d, err = run_cli(capsys, "diag", "--port", virtual_bus.port, "--json")
    assert (d["terminal_id"], d["unsynced"], d["head_seq"]) == (1001, 4, 4)


def test_flash_all_three_boards_one_unplugged_mid_way(capsys, keystore_path, blank_boards):
    # unpaced (as before 3b12e4c): its subject is the unplug beside two good flashes; three paced
    # first flashes at once (about 17 s each) on a loaded host failed a good board too, once
    # (ok 1, failed 2); the paced first flash is test_flash_fresh_board's and bench flash's
    boards = blank_boards(3, baud=0)
    victim = boards[1]

    def copying():  # /lib/firmware is in the image (read while the board writes it)
        try:
            return lfsimage.exists(victim.image, "/lib/firmware")
        except lfsimage.ImageError:
            return False

    def unplug():  # the cable of the second board is pulled while its files are copied
        deadline = time.monotonic() + 60
        while not copying() and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.stop()

    t = threading.Thread(target=unplug, daemon=True)
    t.start()
    argv = ["flash", "--board", BOARD, "--terminal-id", 2001, "--keystore", keystore_path]
    for vb in boards:
        argv += ["--port", vb.port]
    rc, r, err = run_cli(capsys, *argv, "--json")
    t.join()
    assert rc == 1
    assert (r["ok"], r["failed"]) == (2, 1)
    by_port = {b["port"]: b for b in r["boards"]}
    error = by_port[victim.port]["error"]
    assert any(w in error for w in ("lost the board", "not answering", "stopped answering"))
    assert "flash it again" in error and "\n" not in error
    ids = sorted(by_port[vb.port]["terminal_id"] for vb in (boards[0], boards[2]))
    assert ids == [2001, 2003]
    for vb in (boards[0], boards[2]):
        assert vb.alive
    # progress: one line per port and step on stderr
    assert "%s: ok: terminal" % boards[0].port in err
    assert "%s: FAILED" % victim.port in err


def test_flash_errors_are_one_line(capsys, keystore_path, tmp_path, blank_boards):
    import serial

    (vb,) = blank_boards(1)
    with serial.Serial(vb.port, exclusive=True):  # mpremote or screen still holds the port
        rc, _, err = run_cli(
            capsys, "flash", "--port", vb.port, "--board", BOARD, "--terminal-id", 1,
            "--keystore", keystore_path,
        )  # fmt: skip
    assert rc == 1 and "is busy" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(
        capsys, "flash", "--port", str(tmp_path / "ttyUSB9"), "--board", BOARD,
        "--terminal-id", 1, "--keystore", keystore_path,
    )  # fmt: skip
    assert rc == 1 and "no serial port" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(
        capsys, "flash", "--port", "/dev/null", "--board", "nosuch", "--keystore", keystore_path
    )
    assert rc == 1 and len(err.strip().splitlines()) == 1


def test_an_esp32_is_flashed_with_the_esp32_manifest(keystore_path):
    files, info = flash.local_files("taxi-unit", keystore.load(str(keystore_path)), 7, {})
    assert {"/lib/firmware/hal_esp32.mpy", "/lib/firmware/keys_esp32.mpy"} <= set(files)
    assert "/lib/firmware/hal_unix.mpy" not in files  # the unix port's adapter stays home
    assert "/lib/firmware/uart_socket.mpy" not in files
    assert files["/lib/firmware/app.mpy"][:2] == b"M\x06"  # .mpy v6
    assert info["fw"] == "0.1.0" and info["board"] == "taxi-unit"


def _merged(path, app=1000):
    """A stand-in for MicroPython's ESP32_GENERIC .bin: bootloader, its own partition table at file
    offset 0x7000 (0x8000 in flash), app at 0xF000 (0x10000), as ports/esp32/makeimg.py merges them."""
    img = bytearray(b"\xff" * 0xF000)
    img[0:4] = b"\xe9\x03\x02\x20"
    img[0x7000:0x7002] = b"\xaa\x50"  # MicroPython's table (the board's replaces it)
    img += b"\xe9" + bytes(app - 1)
    path.write_bytes(bytes(img))
    return bytes(img)


def test_esptool_command_for_a_blank_esp32(tmp_path):
    import struct

    image = tmp_path / "ESP32_GENERIC-v1.24.bin"
    orig = _merged(image)
    erase, write = esp32.esptool_command(
        "/dev/ttyUSB0", "esp32-devkitc", str(image), out_dir=str(tmp_path)
    )
    assert erase == ["--chip", "esp32", "--port", "/dev/ttyUSB0", "erase-flash"]
    assert write[write.index("--port") + 1] == "/dev/ttyUSB0"
    merged = str(tmp_path / "ESP32_GENERIC-v1.24-esp32-devkitc.bin")
    # one file at 0x1000: no partitions.bin at 0x8000 overlapping the image (esptool refuses that)
    assert write[write.index("write-flash") :] == ["write-flash", "-z", "0x1000", merged]
    data = open(merged, "rb").read()
    table = data[0x7000:0x7C00]
    assert data[:0x7000] == orig[:0x7000] and data[0x7C00:] == orig[0x7C00:]
    rows = [struct.unpack_from("<2sBBLL16sL", table, i * 32) for i in range(6)]
    journal = [r for r in rows if r[5].rstrip(b"\0") == b"journal"][0]
    assert journal[1:5] == (1, 0x40, 0x380000, 0x80000)  # data, custom subtype, 512 KB at 3.5 MB
    assert rows[5][0] == b"\xeb\xeb"  # the MD5 entry closes the table
    with pytest.raises(esp32.ImageError, match="not an ESP32"):
        esp32.esptool_command("/dev/ttyUSB0", BOARD, str(image))


def test_flash_encryption_is_explicit_and_the_commands_are_built(tmp_path, capsys):
    """--flash-encryption KEY: the espefuse commands that burn the key and turn encryption on, then
    the image written through the chip's encryption with vfs (keys.json) flagged encrypted. Built,
    never run here; without the option no eFuse command exists at all."""
    import struct

    from host_tools.cli.app import main

    image = tmp_path / "ESP32_GENERIC.bin"
    _merged(image)
    key = tmp_path / "fe.key"
    key.write_bytes(bytes(32))
    fuses = esp32.encryption_commands("/dev/ttyUSB0", str(key))
    assert [c[c.index("--do-not-confirm") + 1 :] for c in fuses] == [
        ["burn_key", "flash_encryption", str(key)],
        ["burn_efuse", "FLASH_CRYPT_CONFIG", "0xF"],
        ["burn_efuse", "FLASH_CRYPT_CNT", "127"],
        ["burn_efuse", "DISABLE_DL_DECRYPT", "1", "DISABLE_DL_CACHE", "1"],
    ]
    assert all(c[1:3] == ["-m", "espefuse"] for c in fuses)
    _, write = esp32.esptool_command(
        "/dev/ttyUSB0", "esp32-devkitc", str(image), out_dir=str(tmp_path), encrypt=True
    )
    assert write[write.index("write-flash") :][:2] == ["write-flash", "--encrypt"]
    table = open(write[-1], "rb").read()[0x7000:0x7C00]  # the merged image's table
    rows = {
        r[5].rstrip(b"\0"): r[6]
        for r in (struct.unpack_from("<2sBBLL16sL", table, i * 32) for i in range(5))
    }
    assert rows[b"vfs"] == 1 and rows[b"journal"] == 0 and rows[b"nvs"] == 0
    with pytest.raises(esp32.ImageError, match="no flash-encryption key"):
        esp32.encryption_commands("/dev/ttyUSB0", str(tmp_path / "missing.key"))
    # the option wants the image (the chip is written anew) and says so in one line
    code = main(["flash", "--port", "/dev/null", "--flash-encryption", str(key)])
    err = capsys.readouterr().err
    assert code != 0 and "--flash-encryption needs --firmware-image" in err


def test_esptool_refuses_an_app_only_image_and_a_too_big_app(tmp_path):
    app_only = tmp_path / "micropython.bin"
    app_only.write_bytes(b"\xe9" + bytes(0x20000))  # the app alone (build/micropython.bin)
    with pytest.raises(esp32.ImageError, match="not MicroPython's merged ESP32 image"):
        esp32.esptool_command(
            "/dev/ttyUSB0", "esp32-devkitc", str(app_only), out_dir=str(tmp_path)
        )
    big = tmp_path / "big.bin"
    _merged(big, app=0x1F0001)  # one byte more than the 0x1F0000 factory partition
    with pytest.raises(esp32.ImageError, match="does not fit"):
        esp32.esptool_command("/dev/ttyUSB0", "esp32-devkitc", str(big), out_dir=str(tmp_path))


def test_esptool_runs_as_a_library_and_its_errors_are_one_line(tmp_path):
    image = tmp_path / "ESP32_GENERIC.bin"
    _merged(image)
    erase, _write = esp32.esptool_command(
        "/dev/tapkit-no-such-port", "esp32-devkitc", str(image), out_dir=str(tmp_path)
    )
    with pytest.raises(esp32.ImageError) as e:
        esp32.run_esptool(erase + [])  # no such port: esptool's own error, one line
    assert "\n" not in str(e.value) and "/dev/tapkit-no-such-port" in str(e.value)


def _silent_pty(banner=b""):
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    if banner:
        os.write(master, banner)
    return master, slave, os.ttyname(slave)


def test_board_not_answering_and_reset_on_connect():
    from host_tools.fleet.rawrepl import DeviceError, RawREPL

    master, slave, port = _silent_pty()
    try:
        dev = RawREPL(port, timeout=1.0)
        with pytest.raises(DeviceError, match="not answering: reset it .* check the cable"):
            dev.enter()
        dev.close()
        # an ESP32 whose auto-reset circuit fired when the port opened prints its ROM banner
        dev = RawREPL(port, timeout=1.0)
        dev.ser.reset_input_buffer = lambda: None  # the banner arrives after the flush
        os.write(master, b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n")
        with pytest.raises(DeviceError, match="reset when the port opened"):
            dev.enter()
        dev.close()
    finally:
        os.close(master)
        os.close(slave)


def test_firmware_version_mismatch(capsys, keystore_path, blank_boards, monkeypatch):
    """The board keeps running another firmware than the one flashed (a frozen copy shadows it)."""
    from mpybuild import cross

    (vb,) = blank_boards(1)
    monkeypatch.setattr(cross, "version", lambda package="firmware": "9.9.9")
    rc, _, err = run_cli(
        capsys, "flash", "--port", vb.port, "--board", BOARD, "--terminal-id", 5,
        "--keystore", keystore_path,
    )  # fmt: skip
    assert rc == 1 and "firmware version mismatch" in err and "it runs 0.1.0" in err
    assert len(err.strip().splitlines()) == 1
