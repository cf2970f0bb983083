"""`tapkit emulate board` in one process and `tapkit emulate tap` / `tapkit sync` in another, as a
person at a terminal would use them."""

import os
import signal
import subprocess
import sys
import time

from e2e_helpers import rider_card, run_cli, sync_json
from emulator.card import DESFireCard
from host_tools import keystore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_emulate_board_then_tap_then_sync(tmp_path, capsys, keystore_path):
    ks = keystore.load(str(keystore_path))
    card = tmp_path / "rider.card"
    rider_card(card, ks, 60000, card_no=7)
    state = tmp_path / "bus-9"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host_tools.cli",
            "emulate",
            "board",
            "--state",
            str(state),
            "--keystore",
            str(keystore_path),
            "--terminal-id",
            "9",
            "--fare",
            "20000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "emulate board exited: %s" % proc.stderr.read()
            if "serial port" in line:
                port = line.split("serial port ")[1].split()[0]
        assert port and port.startswith("/dev/")

        rc, out, err = run_cli(capsys, "emulate", "tap", "--board", state, card)
        assert rc == 0, err
        assert "OK" in out and "40,000" in out  # what the rider saw: new balance

        db = "sqlite:///%s" % (tmp_path / "t.db")
        rc, summary, err = sync_json(capsys, port, keystore_path, db)
        assert rc == 0, err
        # the charge, and the CONFIRM the card's commit answer made of it
        assert summary["stored"] == 2 and summary["terminal"] == 9
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(20)
    assert rc == 0  # Ctrl-C is the normal way to stop a virtual terminal


def test_tap_on_a_board_that_is_not_running_says_so(tmp_path, capsys):
    card = tmp_path / "c.card"
    DESFireCard.blank().save(str(card))
    rc, out, err = run_cli(capsys, "emulate", "tap", "--board", tmp_path / "nothing", card)
    assert rc == 1
    assert "no virtual board running" in err
    assert "Traceback" not in err
