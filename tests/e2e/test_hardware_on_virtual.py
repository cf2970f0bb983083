"""The hardware-in-the-loop tests (tests/hardware) run as a tester would run them, against a virtual
board: `tapkit emulate board --blank` gives the port, TAPKIT_VBOARD presents the card, the desk reader
is an emulated card file. So `make test-hw` cannot rot unnoticed between real-board sessions."""

import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hardware_tests_pass_on_a_virtual_board(tmp_path):
    state = tmp_path / "hw"
    board = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "emulate", "board", "--blank", "--state",
         str(state), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ev = json.loads(board.stdout.readline() or "{}")
        assert ev.get("event") == "running", board.stderr.read()
        env = dict(
            os.environ,
            TAPKIT_PORT=ev["port"],
            TAPKIT_VBOARD=str(state),
            TAPKIT_BOARD="unix-virtual",
            TAPKIT_READER="emulator:%s" % (tmp_path / "tester.card"),
        )
        env.pop("TAPKIT_KEYSTORE", None)
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-ra", "-s", "-m", "hardware",
             "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pt"), "tests/hardware"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert "6 passed" in p.stdout and "skipped" not in p.stdout
        assert "re-flash: nothing to copy" in p.stderr
    finally:
        board.send_signal(signal.SIGTERM)
        board.wait(30)


def test_hardware_tests_skip_with_a_reason_without_a_board():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPKIT_")}
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "tests/hardware"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 skipped" in p.stdout and "no board: set TAPKIT_PORT" in p.stdout
