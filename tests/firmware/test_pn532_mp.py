"""firmware/pn532.py on the real MicroPython VM, over SocketUART, against the emulated chip.

The emulator (emulator.pn532) runs in this test process behind a TCP socket; the firmware driver
runs under `micropython -X heapsize=112K` from the built .mpy, exactly as on the virtual board.
"""

import json

import pytest

from emulator.pn532 import PN532Emulator, RFField


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
SCRIPT = r"""
import sys, json, micropython
from firmware.pn532 import PN532, ReaderError, CardGone
from firmware.uart_socket import SocketUART

port = int(sys.argv[1])
mode = sys.argv[2]
uart = SocketUART("127.0.0.1", port, timeout_ms=50)
chip = PN532(uart, timeout_ms=500)

def out(**kw):
    print(json.dumps(kw))

def hexs(b):
    return "".join("%02x" % x for x in b)

def heap_free_exchange(apdu, n):
    # the hot path: after one warm-up call, exchange(copy=False) must allocate nothing
    chip.exchange(apdu, copy=False)
    micropython.heap_lock()
    try:
        for _ in range(n):
            r = chip.exchange(apdu, copy=False)
        ok = True
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    return ok

if mode == "basic":
    chip.wakeup()
    out(step="fw", v=list(chip.firmware_version()))
    out(step="selftest", ok=chip.self_test())
    out(step="list", uid=chip.list_target(100))
elif mode == "card":
    chip.wakeup()
    uid = chip.list_target(200)
    out(step="list", uid=hexs(uid))
    out(step="getversion", r=hexs(chip.exchange(b"\x90\x60\x00\x00\x00")))
    out(step="echo", r=hexs(chip.exchange(bytes(range(1, 41)))))
    out(step="heapfree", ok=heap_free_exchange(b"\x90\x6c\x00\x00\x01\x02\x00", 5))
    chip.release()
    try:
        chip.exchange(b"\x90\x60\x00\x00\x00")
        out(step="after_release", err=None)
    except CardGone as e:
        out(step="after_release", err="CardGone", code=e.args[1])
elif mode == "gone":
    chip.wakeup()
    chip.list_target(200)
    out(step="first", r=hexs(chip.exchange(b"\x90\x5a\x00\x00\x03\x01\x4b\x54\x00")))
    try:
        chip.exchange(b"\x90\x6c\x00\x00\x01\x02\x00")
        out(step="second", err=None)
    except CardGone as e:
        out(step="second", err="CardGone", code=e.args[1], reader=isinstance(e, ReaderError))
    out(step="list_again", uid=chip.list_target(100))
elif mode == "noisy":
    chip.wakeup()
    ok = 0
    for i in range(20):
        uid = chip.list_target(200)
        r = chip.exchange(bytes([0x90, 0x6c, 0, 0, 1, i, 0]))
        if uid is not None and bytes(r) == bytes([0x00, i, 1, 0, 0, 0x6c, 0x90, 0x91, 0x00]):
            ok += 1
    out(step="noisy", ok=ok)
elif mode == "reconnect":
    chip.wakeup()
    out(step="fw1", v=list(chip.firmware_version()))
    sys.stdin.readline()  # the test drops the connection, then lets us go on
    out(step="fw2", v=list(chip.firmware_version()), reconnects=uart.reconnects)
"""


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
    script = tmp_path / "drive_pn532.py"
    script.write_text(SCRIPT)

    def go(mode):
        p = mp_run(str(script), chip.port, mode, timeout=60)
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

    from tests.conftest import HEAP, micropython_exe

    script = tmp_path / "drive_pn532.py"
    script.write_text(SCRIPT)
    # run interactively: the script waits on stdin while we cut the connection
    p = subprocess.Popen(
        [micropython_exe(), "-X", "heapsize=" + HEAP, str(script), str(chip.port), "reconnect"],
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
