"""--json is real on every command: stdout is one JSON document (or JSON Lines, one object per
event, for the commands that run until stopped) and nothing else. The commands other tests already
prove are named in tests/host_tools/cli/test_cli_conventions.py JSON_PROOF."""

import json
import os
import signal
import subprocess
import sys

from e2e_helpers import rider_card, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tapkit(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", *map(str, argv)],
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events_until_stopped(p, first, then=None):
    """Read the JSON Lines of `p` up to the event `first`, call then(), Ctrl-C, read the rest."""
    seen = []
    try:
        while not seen or seen[-1]["event"] != first:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            seen.append(json.loads(line))  # every line is JSON
        if then:
            then(seen[-1])
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    seen += [json.loads(ln) for ln in out.splitlines()]
    assert p.returncode == 0, err
    return seen


def test_card_show_and_unblock(capsys, tmp_path, keystore_path):
    card = rider_card(tmp_path / "c.card", keystore_path, 5000)
    rc, d, err = run_cli(
        capsys, "card", "show", "--reader", "emulator:%s" % card, "--keystore", keystore_path,
        "--json",
    )  # fmt: skip
    assert rc == 0 and d["balance"] == 5000, err
    rc, d, err = run_cli(
        capsys, "card", "unblock", "--reader", "emulator:%s" % card, "--keystore", keystore_path,
        "--json",
    )  # fmt: skip
    assert rc == 0 and (d["status"], d["changed"]) == ("active", False), err


def test_emulate_card_json_lines(tmp_path):
    path = tmp_path / "c.card"
    p = tapkit("emulate", "card", path, "--new", "--udp", "127.0.0.1:0", "--json")
    seen = events_until_stopped(p, "serving")
    assert [e["event"] for e in seen] == ["serving", "stopped"]
    assert seen[0]["card"] == str(path) and seen[0]["reader"].startswith("nfc:udp:127.0.0.1:")
    assert len(seen[0]["uid"]) == 14 and os.path.exists(path)


def test_emulate_board_json_lines_then_tap_json(tmp_path, capsys, keystore_path):
    state = tmp_path / "bus"
    card = rider_card(tmp_path / "c.card", keystore_path, 100000)
    p = tapkit("emulate", "board", "--state", state, "--keystore", keystore_path, "--json")

    def tap(running):
        assert running["terminal_id"] == 1001 and running["port"].startswith("/dev/")
        rc, r, err = run_cli(capsys, "emulate", "tap", "--board", state, card, "--json")
        assert rc == 0 and r["buzzer"] == "ok", err

    seen = events_until_stopped(p, "running", tap)
    assert seen[-1] == {"event": "stopped", "terminal_id": 1001}
    shown = [e["line"] for e in seen if e["event"] == "display"]
    assert any("DISPLAY|" in ln for ln in shown), shown


def test_serve_json_lines_say_where_it_listens(tmp_path, keystore_path):
    db = "sqlite:///%s" % (tmp_path / "t.db")
    p = tapkit(
        "serve", "--db", db, "--keystore", keystore_path, "--listen", "127.0.0.1:0", "--json"
    )
    seen = events_until_stopped(p, "listening")
    ev, stopped = seen
    assert stopped == {"event": "stopped"}
    assert ev["host"] == "127.0.0.1" and ev["port"] > 0
    assert ev["url"] == "http://127.0.0.1:%d" % ev["port"]


def test_publish_and_report(capsys, tmp_path):
    db = "sqlite:///%s" % (tmp_path / "t.db")
    (tmp_path / "f.json").write_text('{"default": 25000}')
    rc, d, err = run_cli(
        capsys, "publish", "--kind", "fares", "--version", 3, "--db", db, tmp_path / "f.json",
        "--json",
    )  # fmt: skip
    assert rc == 0 and d["new"] is True and d["version"] == 3, err
    rc, _d, err = run_cli(capsys, "keys", "init", "--keystore", tmp_path / "k", "--json")
    assert rc == 0, err
    rc, d, err = run_cli(capsys, "report", "--db", db, "--keystore", tmp_path / "k", "--json")
    assert rc == 0 and d["taps"] == 0 and d["revenue"] == 0, err
