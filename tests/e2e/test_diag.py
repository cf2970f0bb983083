"""`tapkit diag`: the technician's screen, from a running firmware or from the raw REPL."""

import subprocess
import sys
import time

from e2e_helpers import rider_card, run_cli, sync_json

from host_tools.fleet import ports


def test_diag_screen_of_a_running_terminal(capsys, virtual_bus):
    rc, out, err = run_cli(capsys, "diag", "--port", virtual_bus.port)
    assert rc == 0, err
    for seen in (
        "firmware (sync protocol)",
        "1001",
        "fw 0.1.0",
        "from this laptop",
        "0 unsynced taps",
        "PN532 v1.6, line test ok",
        "reset cause: power-on",
        "bytes free",
        "never (USB)",
    ):
        assert seen in out, (seen, out)


def test_diag_after_sync_and_from_the_raw_repl(tmp_path, capsys, keystore_path, virtual_bus):
    card = rider_card(tmp_path / "c.card", keystore_path, 100000)
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    db = "sqlite:///%s" % (tmp_path / "t.db")
    rc, _, err = sync_json(capsys, virtual_bus.port, keystore_path, db)
    assert rc == 0, err
    rc, d, err = run_cli(capsys, "diag", "--port", virtual_bus.port, "--json")
    assert rc == 0, err
    assert d["unsynced"] == 0 and d["taps"] == 1 and abs(d["last_sync"] - time.time()) < 30
    # a technician left the board in its REPL: diag still reads it, and says how
    p = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", virtual_bus.port, "exec", "pass"],
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0 and not virtual_bus.alive
    rc, d, err = run_cli(capsys, "diag", "--port", virtual_bus.port, "--json")
    assert rc == 0, err
    assert d["via"] == "raw REPL (the firmware is not running)"
    assert d["terminal_id"] == 1001 and d["profile"] == "bus" and d["heap_free"] > 0


def test_diag_watch_sees_a_tap(tmp_path, keystore_path, virtual_bus):
    card = rider_card(tmp_path / "w.card", keystore_path, 100000)
    p = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "diag", "--port", virtual_bus.port, "--watch",
         "--count", "1", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = p.stdout.readline()
        assert first.startswith("watching terminal on %s" % virtual_bus.port), first
        assert virtual_bus.tap(card)["buzzer"] == "ok"
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "seq 1  charge ok" in out and "amount 25000  balance 75000 Rial" in out


def test_diag_port_auto_without_readers(capsys, monkeypatch):
    monkeypatch.setattr("host_tools.fleet.ports.find_ports", lambda: [])
    rc, _, err = run_cli(capsys, "diag", "--port", "auto")
    assert rc == 1 and "no terminal connected" in err
    monkeypatch.setattr(
        "host_tools.fleet.ports.find_ports", lambda: ["/dev/ttyUSB0", "/dev/ttyUSB1"]
    )
    rc, _, err = run_cli(capsys, "diag", "--port", "auto")
    assert rc == 1 and "2 terminals connected" in err
    assert ports.resolve_port("/dev/ttyACM0") == "/dev/ttyACM0"
