"""The production lock on the USB console (issue "Stolen terminal"): the port was an open MicroPython
REPL (`mpremote connect PORT fs cat keys.json` printed the debit master key) and a 0x03 byte of line
noise was a KeyboardInterrupt (3 of 50 noisy sync runs dropped the firmware into the REPL).

A terminal provisioned with console_lock (what `tapkit flash` does) on the virtual board: noise never
stops it, a stranger's mpremote gets nothing, `tapkit unlock` with the keystore opens the console
for a while and it locks itself again."""

import json
import random
import subprocess
import sys
import time

import pytest
import serial

from emulator.vboard import VirtualBoard
from host_tools import keystore
from host_tools.backoffice.store import open_store
from host_tools.cli.app import main
from host_tools.fleet import sync
from host_tools.fleet.link import SerialLink
from host_tools.sim.virtual import deploy_virtual

TID = 1401


def _mpremote(port, *args, timeout=25):
    try:
        return subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", port, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None  # it never got a prompt


@pytest.fixture
def locked(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    state = tmp_path / "bus"
    (state / "fs").mkdir(parents=True)
    deploy_virtual(str(state / "fs"), ks, TID, fare=25000, console_lock=True)
    vb = VirtualBoard(str(state))
    vb.start()
    vb.wait_for("KBD|locked", timeout=30, since=0)
    try:
        yield vb, ks
    finally:
        vb.stop()


def test_noise_on_a_locked_console_never_stops_the_firmware(locked, tmp_path):
    vb, ks = locked
    rnd = random.Random(12)  # the campaign's seed: a failure replays
    db = open_store("sqlite:///%s" % (tmp_path / "taps.db"))
    try:
        for _ in range(8):
            noise = bytes(rnd.choice(b"\x03\x01\x02\x04\x05~\n\r") for _ in range(40))
            noise += bytes(rnd.getrandbits(8) for _ in range(40))
            with serial.Serial(vb.port, 115200, timeout=0.2) as s:
                s.write(noise)
                s.write(b"\r\x03\x03\x01")  # what mpremote sends to enter the raw REPL
                time.sleep(0.2)
            with SerialLink(vb.port, timeout=2) as link:
                sync.sync_terminal(link, db, ks)
    finally:
        db.close()
    assert vb.alive and not vb.in_repl and vb.boots == 1


def test_a_stranger_gets_no_repl_the_keystore_unlocks_it_for_a_while(
    locked, keystore_path, capsys
):
    vb, ks = locked
    p = _mpremote(vb.port, "fs", "cat", ":keys.json")
    assert p is None or "debit" not in p.stdout
    assert vb.alive and not vb.in_repl
    # a recorded unlock is no good: the answer renews the nonce
    assert main(["unlock", "--port", vb.port, "--keystore", str(keystore_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["open_seconds"] == 600
    vb.wait_for("KBD|open", timeout=10, since=0)
    p = _mpremote(vb.port, "exec", "import firmware; print(firmware.VERSION)", timeout=60)
    assert p is not None and p.returncode == 0 and p.stdout.strip() == "0.1.0"
    mark = vb.mark()
    _mpremote(vb.port, "reset", timeout=60)
    vb.wait_for("KBD|locked", timeout=30, since=mark)  # the firmware is back, locked again


def test_maintenance_mode_locks_itself_again(locked):
    vb, ks = locked
    with SerialLink(vb.port, timeout=2) as link:
        link.key = keystore.terminal_key(ks, TID)
        link.identify()
        assert link.maintain(2) == 2
    mark = vb.mark()
    vb.wait_for("LOG| console locked again", timeout=20, since=mark)
    with serial.Serial(vb.port, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\x03")
    time.sleep(1.0)
    assert vb.alive and not vb.in_repl
