"""The virtual board's watchdog is an ESP32's machine.WDT: once the firmware started it, it runs in
the REPL too (mpremote, `tapkit flash`), where only the firmware's keeper (firmware/keep.py) feeds it
for board.json wdt.keep_s; then, or without a keeper, it resets the board into service. A blank
board (plain MicroPython) never starts it. The line is paced at 115,200 baud, as a DevKitC's."""

import json
import os
import subprocess
import sys
import time

import serial
from e2e_helpers import rider_card, run_cli

import boards
from emulator import lfsimage
from emulator.vboard import BAUD, VirtualBoard
from harness.boards import deploy
from host_tools import keystore

BOARD = "unix-virtual"
TIMEOUT_S = 8  # board.json wdt.timeout_ms


def _mpremote(port, code, timeout=120):
    """(exit code, output); None when the board reset under it and mpremote waited on."""
    try:
        p = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", port, "exec", code],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stdout + p.stderr


def _flash(capsys, vb, keystore_path, *more):
    t = time.monotonic()
    rc, r, err = run_cli(
        capsys, "flash", "--port", vb.port, "--board", BOARD, "--line", 9,
        "--keystore", keystore_path, "--no-console-lock", "--json", *more,
    )  # fmt: skip
    assert rc == 0, err
    return r, time.monotonic() - t


def _watchdog_resets(vb):
    return [ln for ln in vb.lines(0) if ln.startswith("RESET| watchdog")]


def test_flash_and_mpremote_outlast_the_watchdog_in_the_repl(tmp_path, capsys, keystore_path):
    card = rider_card(tmp_path / "a.card", keystore_path, 200000)
    vb = VirtualBoard(str(tmp_path / "bus"), baud=BAUD)
    vb.start(blank=True)
    try:
        hb = os.path.join(vb.state, "heartbeat")
        r, first_s = _flash(capsys, vb, keystore_path, "--terminal-id", 4711)
        assert r["copied"] == r["files"] and first_s > TIMEOUT_S  # a blank board: no watchdog yet
        vb.wait_for("DISPLAY|", timeout=30, since=0)
        deadline = time.monotonic() + 20
        while not os.path.exists(hb):  # the firmware started its watchdog
            assert time.monotonic() < deadline, "the firmware never fed its watchdog"
            time.sleep(0.2)
        # a maintainer's mpremote session longer than the watchdog's timeout: it wipes the
        # firmware's modules, so the next flash copies them all, as a first flash does
        code = (
            "import os, time\n"
            "for d in ('/lib/firmware', '/lib/card_schema'):\n"
            "    for f in os.listdir(d):\n"
            "        os.remove(d + '/' + f)\n"
            "time.sleep(%d)\n"
            "print('wiped')" % (TIMEOUT_S + 3)
        )
        t = time.monotonic()
        rc, out = _mpremote(vb.port, code)
        assert rc == 0 and "wiped" in out, out
        assert time.monotonic() - t > TIMEOUT_S + 2 and vb.in_repl
        r, full_s = _flash(capsys, vb, keystore_path)  # the whole firmware again, watchdog running
        assert r["copied"] >= 30 and full_s > TIMEOUT_S, (r["copied"], full_s)
        assert vb.alive and vb.tap(card)["buzzer"] == "ok"
        r, _ = _flash(capsys, vb, keystore_path)  # a re-flash: nothing to copy
        assert r["copied"] == 0
        assert vb.alive and vb.tap(card)["buzzer"] == "ok"
        assert _watchdog_resets(vb) == []
        assert os.path.exists(hb)  # the watchdog ran all along
    finally:
        vb.stop()


def _board(tmp_path, keystore_path, keep_s=None, keeper=True):
    state = deploy(
        tmp_path / "bus", keystore.load(str(keystore_path)), 1001, fare=25000, line=7, repeat=0
    )
    img = os.path.join(state, "fs.img")
    if keep_s is not None:  # the board file as `tapkit flash` writes it (reader port 0)
        board = boards.spec(BOARD)
        board["wdt"]["keep_s"] = keep_s
        lfsimage.write_files(img, {"/board.json": json.dumps(board)})
    if not keeper:  # a firmware without the keeper (as before issue 15)
        lfsimage.remove(img, "/lib/firmware/keep.mpy")
    vb = VirtualBoard(state, baud=BAUD)
    vb.start()
    return vb


def _ctrl_c(vb):
    """Into the REPL as mpremote and tapkit flash go: a Ctrl-C stops the firmware."""
    with serial.Serial(vb.port, 115200, timeout=1) as s:
        s.write(b"\r\x03")
        s.flush()
        deadline = time.monotonic() + 20
        while not vb.in_repl:
            assert time.monotonic() < deadline, "no REPL"
            time.sleep(0.1)
    return time.monotonic()


def _back_in_service(vb, timeout):
    """Wait for the watchdog's reset and the firmware's boot after it: the seconds it came at."""
    deadline = time.monotonic() + timeout
    while not _watchdog_resets(vb):
        assert time.monotonic() < deadline, "no watchdog reset"
        time.sleep(0.2)
    at = time.monotonic()
    lines = vb.lines(0)
    mark = max(i for i, ln in enumerate(lines) if ln.startswith("RESET| watchdog"))
    vb.wait_for("DISPLAY|", timeout=30, since=mark)
    assert vb.alive and vb.reset_cause == "watchdog"
    return at


def test_without_the_keeper_the_repl_is_reset_after_the_timeout(tmp_path, keystore_path):
    """The model is strict: a firmware with no keeper leaves the REPL unfed, and the board resets
    after the watchdog's timeout, mid-session (item 2 of issue 15 on a real ESP32)."""
    card = rider_card(tmp_path / "a.card", keystore_path, 200000)
    vb = _board(tmp_path, keystore_path, keeper=False)
    try:
        assert vb.tap(card)["buzzer"] == "ok"
        t = _ctrl_c(vb)
        session = subprocess.Popen(
            [sys.executable, "-m", "mpremote", "connect", vb.port, "exec",
             "import time\ntime.sleep(20)\nprint('survived')"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            reset = _back_in_service(vb, 30) - t
        finally:
            try:
                out = session.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:  # mpremote waits on for the board it lost
                session.kill()
                out = session.communicate()[0]
        assert "survived" not in out  # the reset cut the session
        assert TIMEOUT_S - 1 < reset < TIMEOUT_S + 10, reset
        assert "(REPL)" in _watchdog_resets(vb)[0]
        assert vb.tap(card)["buzzer"] == "ok"  # back in service
    finally:
        vb.stop()


def test_the_keeper_window_ends_in_a_reset_into_service(tmp_path, keystore_path):
    """After wdt.keep_s in the REPL the keeper stops feeding: the board resets into service."""
    card = rider_card(tmp_path / "a.card", keystore_path, 200000)
    keep_s = 12
    vb = _board(tmp_path, keystore_path, keep_s=keep_s)
    try:
        t = _ctrl_c(vb)
        time.sleep(keep_s - 2)
        assert vb.in_repl and _watchdog_resets(vb) == []  # past the WDT's 8 s: fed
        reset = _back_in_service(vb, keep_s + 30) - t
        assert keep_s + TIMEOUT_S - 1 < reset < keep_s + TIMEOUT_S + 10, reset
        assert vb.tap(card)["buzzer"] == "ok"
    finally:
        vb.stop()
