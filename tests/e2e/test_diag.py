"""`tapkit diag`: the technician's screen, from a running firmware or from the raw REPL."""

import json
import signal
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


def _watch(port, *opts):
    return subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "diag", "--port", port, "--watch", *opts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_diag_watch_sees_a_tap(tmp_path, keystore_path, virtual_bus):
    card = rider_card(tmp_path / "w.card", keystore_path, 100000)
    p = _watch(virtual_bus.port, "--count", "1", "--timeout", "60")
    try:
        first = p.stdout.readline()
        assert first.startswith("watching terminal 1001 (bus, fw "), first
        assert "on %s, journal head 0; Ctrl-C stops" % virtual_bus.port in first
        assert virtual_bus.tap(card)["buzzer"] == "ok"
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "display  OK  -25,000 Rial / Balance 75,000 Rial" in out, out
    assert "journal  seq 1  charge ok" in out and "amount 25,000  balance 75,000 Rial" in out


def test_diag_watch_json_lines_show_refusals_and_reader_errors(
    tmp_path, keystore_path, virtual_bus
):
    """What the journal never holds is on the watch too: a foreign card's refusal on the display,
    and the reader chip's errors. --json: one JSON object per line, nothing else."""
    from emulator.card import DESFireCard
    from emulator.pn532 import Noise

    foreign = tmp_path / "blank.card"
    DESFireCard.blank().save(str(foreign))
    p = _watch(virtual_bus.port, "--json", "--timeout", "120")
    events = []

    def until(pred):
        while True:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            events.append(json.loads(line))
            if pred(events[-1]):
                return events[-1]

    try:
        start = until(lambda e: True)
        assert start["event"] == "start" and start["terminal_id"] == 1001 and start["displays"]
        assert virtual_bus.tap(foreign)["buzzer"] == "refused"
        shown = until(lambda e: e["event"] == "display" and e["sound"] == "refused")
        assert (shown["line1"], shown["line2"]) == ("Card not accepted", "Not a citizen card")
        virtual_bus.chip.noise = Noise(drop=1.0)  # the reader chip stops answering
        err = until(lambda e: e["event"] == "error")
        virtual_bus.chip.noise = None
        assert err["line"].split(" ", 1)[1].startswith("reader: "), err
    finally:
        p.send_signal(signal.SIGINT)
        out, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    for line in out.splitlines():
        events.append(json.loads(line))
    assert not [e for e in events if e["event"] == "tap"]  # a foreign card is never journalled
    assert {e["event"] for e in events} <= {"start", "display", "card", "error"}


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
