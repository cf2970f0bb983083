"""firmware/pn532.py on the real MicroPython VM, over SocketUART, against the emulated chip.

The emulator (emulator.pn532) runs in this test process behind a TCP socket; the firmware driver
runs under `micropython -X heapsize=112K` from the built .mpy, exactly as on the virtual board.
"""

import json

import pytest

from emulator.pn532 import PN532Emulator, RFField
from harness import vm


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


class FakeCard:
    uid = hx("04 A1 B2 C3 D4 E5 F6")
    atqa = hx("03 44")
    sak = 0x20
    ats = hx("06 75 77 81 02 80")

    def __init__(self, field=None, leave_after=None):
        self.field = field
        self.leave_after = leave_after
        self.frames = []
        self.powered_off = 0

    def transceive(self, apdu):
        self.frames.append(bytes(apdu))
        if self.leave_after is not None and len(self.frames) > self.leave_after:
            self.field.remove()  # the rider pulled the card away during this command
            raise ConnectionError("card left")
        if apdu == hx("90 60 00 00 00"):  # GetVersion, first part
            return hx("04 01 01 01 00 1A 05 91 AF")
        return bytes(apdu[::-1]) + hx("91 00")

    def field_off(self):
        self.powered_off += 1


# The firmware side. argv: port; prints one JSON line per step so the test can assert.
SCRIPT = vm.script("pn532_drive")  # harness/mp/pn532_drive.py


@pytest.fixture
def field():
    return RFField()


@pytest.fixture
def chip(field):
    emu = PN532Emulator(field).serve()
    yield emu
    emu.close()


@pytest.fixture
def run(mp_run, tmp_path, chip):

    def go(mode):
        p = mp_run(SCRIPT, chip.port, mode, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        return {d.pop("step"): d for d in map(json.loads, p.stdout.splitlines())}

    return go


def test_wakeup_version_selftest_and_empty_field(run):
    r = run("basic")
    assert r["fw"]["v"] == [0x32, 1, 6, 7]
    assert r["selftest"]["ok"] is True
    assert r["list"]["uid"] is None


def test_list_target_and_exchange(run, field, chip):
    card = FakeCard()
    field.place(card)
    r = run("card")
    assert r["list"]["uid"] == "04a1b2c3d4e5f6"
    assert r["getversion"]["r"] == "04010101001a0591af"
    assert r["echo"]["r"] == bytes(range(40, 0, -1)).hex() + "9100"
    assert r["heapfree"]["ok"] is True
    assert r["after_release"] == {"err": "CardGone", "code": 0x27}
    assert card.frames[0] == hx("90 60 00 00 00")
    assert chip.exchanges == 9


def test_card_removed_raises_card_gone(run, field):
    card = FakeCard(field, leave_after=1)
    field.place(card)
    r = run("gone")
    assert r["first"]["r"] == "00544b010300005a909100"
    assert r["second"] == {"err": "CardGone", "code": 0x01, "reader": True}
    assert r["list_again"]["uid"] is None
    assert card.powered_off >= 1


class Garbage:
    """chip -> host noise: junk before some frames, a flipped byte in others (replayable).
    Counts the NACK frames the host sends back (asking for a corrupted response again)."""

    def __init__(self):
        self.n = 0
        self.nacks = 0

    def __call__(self, direction, data):
        if direction != "tx":
            self.nacks += data.count(hx("00 00 FF FF 00 00"))
            return data
        self.n += 1
        if self.n % 3 == 0:
            return hx("FF 00 13 00 FF 42 55") + data  # junk, including a false start code
        if self.n % 5 == 0 and len(data) > 12:
            b = bytearray(data)
            b[-3] ^= 0x10  # corrupt the response payload: the DCS fails, the driver NACKs
            return bytes(b)
        return data


def test_garbage_on_the_line_is_survived(run, field, chip):
    field.place(FakeCard())
    chip.noise = Garbage()
    r = run("noisy")
    assert r["noisy"]["ok"] == 20
    assert chip.noise.nacks >= 1


def test_socket_uart_reconnects_when_the_emulator_drops(mpy_build, tmp_path, chip):
    import os
    import subprocess
    import time

    # run interactively: the script waits on stdin while we cut the connection
    p = subprocess.Popen(
        [vm.micropython_exe(), "-X", "heapsize=" + vm.HEAP, SCRIPT, str(chip.port), "reconnect"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, MICROPYPATH=os.path.join(mpy_build, "lib") + os.pathsep + ".frozen"),
    )
    try:
        first = json.loads(p.stdout.readline())
        assert first["v"] == [0x32, 1, 6, 7]
        conn = chip._conn
        conn.shutdown(2)  # the emulator side goes away (as on a restart)
        time.sleep(0.05)
        p.stdin.write("\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out + err
    second = json.loads(out.splitlines()[0])
    assert second["v"] == [0x32, 1, 6, 7]
    assert second["reconnects"] >= 1
