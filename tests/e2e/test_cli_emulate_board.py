"""`tapkit emulate board` as a user runs it: a Wi-Fi terminal started from the command line (--wifi)
uploads to a real server, the board stays up across stock mpremote sessions, a soft reset and a
`tapkit flash`, takes taps after each, and SIGTERM leaves no micropython process behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from e2e_helpers import rider_card, run_cli

from host_tools import keystore
from host_tools.backoffice import ingest, server
from host_tools.backoffice import store as store_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TID = 1001


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def _mpremote(port, *args, timeout=60):
    p = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p.stdout


def _procs_in(state):
    """pids of the processes whose working directory is the board's state dir (its programs)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink("/proc/%s/cwd" % pid) == os.path.realpath(state):
                    out.append(int(pid))
            except OSError:
                pass
    return out


def _start(tmp_path, keystore_path, *more):
    state = tmp_path / "bus"
    (tmp_path / "cfg.json").write_text(json.dumps({"repeat": 0, "upload_idle_ms": 1000}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "emulate", "board", "--state", str(state),
         "--keystore", str(keystore_path), "--terminal-id", str(TID), "--fare", "20000",
         "--config", str(tmp_path / "cfg.json"), "--json", *more],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ev = None
    while ev is None or ev.get("event") != "running":
        line = proc.stdout.readline()
        assert line, "emulate board exited: %s" % proc.stderr.read()
        ev = json.loads(line)
    return proc, state, ev


def _tapper(capsys, state, card):
    def tap():
        rc, out, err = run_cli(capsys, "emulate", "tap", "--board", state, card, "--json")
        assert rc == 0, err
        return out

    return tap


def test_emulate_board_stays_up_across_mpremote_soft_reset_and_flash(
    tmp_path, capsys, keystore_path
):
    card = rider_card(tmp_path / "a.card", keystore_path, 200000)
    proc, state, ev = _start(tmp_path, keystore_path)
    vport = ev["port"]
    tap = _tapper(capsys, state, card)
    try:
        assert tap()["buzzer"] == "ok"
        for _ in range(3):  # any number of stock mpremote sessions: the board stays up
            out = _mpremote(vport, "exec", "import sys; print(sys.implementation.name)")
            assert out.split()[-1] == "micropython"
        assert proc.poll() is None
        mark = len(open(state / "display.log").read())
        # mpremote left it at the friendly REPL (firmware stopped): no taps, as on an ESP32 (a soft
        # reset in the raw REPL, `mpremote soft-reset`, runs boot.py only); Ctrl-D at the prompt
        # is a soft reset that runs boot.py and main.py again
        import serial

        with serial.Serial(vport, 115200, timeout=1) as s:
            s.write(b"\r\x04")
            s.flush()
            _wait(
                lambda: "Tap your card" in open(state / "display.log").read()[mark:], what="boot"
            )
        assert tap()["buzzer"] == "ok"  # taps after a soft reset
        rc, r, err = run_cli(
            capsys, "flash", "--port", vport, "--board", "unix-virtual", "--terminal-id", TID,
            "--keystore", keystore_path, "--json",
        )  # fmt: skip
        assert rc == 0, err
        assert proc.poll() is None  # still up after the flash's raw REPL and reboot
        assert tap()["buzzer"] == "ok"
        assert _procs_in(state)  # the board's program runs in its state dir
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0, proc.stderr.read()
    assert json.loads(proc.stdout.read().splitlines()[-1])["event"] == "stopped"
    time.sleep(0.5)
    assert _procs_in(state) == []  # no orphaned micropython


def test_emulate_board_wifi_from_the_command_line(tmp_path, capsys, keystore_path):
    ks = keystore.load(str(keystore_path))
    card = rider_card(tmp_path / "a.card", keystore_path, 200000)
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    store_mod.open_store(url).close()
    port = _free_port()
    ing = ingest.Ingest(url, ks, [(TID, TID)], log=lambda m: None)
    srv = server.Running(server.make_app(ing), "127.0.0.1", port)
    proc, state, ev = _start(tmp_path, keystore_path, "--wifi", "http://127.0.0.1:%d" % port)
    try:
        assert ev["server"] == "127.0.0.1:%d" % port
        assert _tapper(capsys, state, card)()["buzzer"] == "ok"
        with store_mod.open_store(url) as db:  # the charge and its CONFIRM came over "Wi-Fi"
            _wait(lambda: db.count() >= 2, what="the Wi-Fi upload")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        srv.stop()
        ing.close()
    assert rc == 0


def test_emulate_board_wifi_needs_an_address(tmp_path, capsys, keystore_path):
    for bad in ("ftp://127.0.0.1:21", "http://backoffice.local:8080", "127.0.0.1"):
        rc, out, err = run_cli(
            capsys, "emulate", "board", "--state", tmp_path / "b", "--keystore", keystore_path,
            "--wifi", bad,
        )  # fmt: skip
        assert rc == 2 and err.count("\n") == 1 and "http://IP:PORT" in err, (bad, err)
    assert not os.path.exists(tmp_path / "b")  # nothing written
