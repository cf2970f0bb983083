"""`tapkit emulate board --profile P --config FILE --fares FILE` in one process, `tapkit emulate press`
and `tapkit emulate tap` in another, as a person trying any kind of virtual terminal would."""

import json
import os
import signal
import subprocess
import sys

import pytest

from e2e_helpers import rider_card, run_cli
from host_tools import keystore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(state, keystore_path, tid, *opts):
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "emulate", "board", "--state", str(state)]
        + ["--keystore", str(keystore_path), "--terminal-id", str(tid)]
        + [str(o) for o in opts],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    while True:
        line = proc.stdout.readline()
        assert line, "emulate board exited: %s" % proc.stderr.read()
        seen.append(line)
        if line.startswith("press keys:"):  # the last line of a keypad terminal's banner
            return proc, "".join(seen)


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


def test_pos_terminal_sale_and_refund_from_the_command_line(tmp_path, capsys, keystore_path):
    ks = keystore.load(str(keystore_path))
    card = tmp_path / "customer.card"
    rider_card(card, ks, 50000, card_no=7)
    (tmp_path / "pos.json").write_text(json.dumps({"max": 1000000, "refund": 300}))
    (tmp_path / "cfg.json").write_text(json.dumps({"unit": "toman", "stop": 4}))
    state = tmp_path / "pos-1"
    proc, banner = _start(
        state, keystore_path, 3001, "--profile", "pos", "--fares", tmp_path / "pos.json",
        "--config", tmp_path / "cfg.json",
    )  # fmt: skip
    try:
        assert "virtual terminal 3001 (pos) running" in banner
        rc, out, err = run_cli(capsys, "emulate", "press", "--board", state, "1200#")
        assert rc == 0, err
        assert out.splitlines()[-1] == "display: Amount 1,200 Toman | Tap your card"
        rc, out, err = run_cli(capsys, "emulate", "tap", "--board", state, card)
        assert rc == 0, err
        assert "-1,200 Toman" in out and "3,800 Toman" in out
        rc, out, err = run_cli(capsys, "emulate", "press", "--board", state, "R#", "--json")
        assert rc == 0, err
        assert out["ok"] and "Refund | Tap your card" in out["display"][-1]
        rc, out, err = run_cli(capsys, "emulate", "tap", "--board", state, card)
        assert rc == 0, err
        assert "Refund  +1,200 Toman" in out and "5,000 Toman" in out
    finally:
        _stop(proc)


def test_taxi_terminal_takes_the_taximeter_line(tmp_path, capsys, keystore_path):
    ks = keystore.load(str(keystore_path))
    card = tmp_path / "rider.card"
    rider_card(card, ks, 200000, card_no=7)
    state = tmp_path / "taxi-1"
    proc, _ = _start(state, keystore_path, 4001, "--profile", "taxi", "--line", 31)
    try:
        rc, out, err = run_cli(capsys, "emulate", "press", "--board", state, "--meter", 123000)
        assert rc == 0, err
        assert out.splitlines()[-1] == "display: Fare 123,000 Rial | Tap your card"
        rc, out, err = run_cli(capsys, "emulate", "tap", "--board", state, card)
        assert rc == 0, err
        assert "-123,000 Rial" in out and "77,000 Rial" in out
    finally:
        _stop(proc)


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["--config", "tram.json"],
            "unknown profile 'tram': one of bus, taxi, parking, pos, charity",
        ),
        (["--fares", "missing.json"], "cannot read missing.json: No such file or directory"),
        (["--config", "bad.json"], "config bad.json is not JSON"),
        (["--fares", "neg.json"], "fare table: amounts are integer Rial >= 0"),
        (["--fares", "prepaid.json"], "fare table: prepaid of zone 1 is parking minutes"),
    ],
)
def test_emulate_board_bad_input_is_one_line(tmp_path, capsys, keystore_path, opts, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "tram.json").write_text(json.dumps({"profile": "tram"}))
    (tmp_path / "neg.json").write_text(json.dumps({"default": -5}))
    (tmp_path / "prepaid.json").write_text(json.dumps({"zones": {"1": {"prepaid": "1h"}}}))
    opts = [str(tmp_path / o) if o.endswith(".json") else o for o in opts]
    rc, out, err = run_cli(
        capsys, "emulate", "board", "--state", tmp_path / "b", "--keystore", keystore_path, *opts
    )
    assert rc == 1 and out == ""
    assert err.startswith("tapkit: error: ") and message in err.replace(str(tmp_path) + "/", "")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(tmp_path / "b")  # nothing deployed


def test_emulate_board_bad_option_is_a_usage_error(tmp_path, capsys, keystore_path):
    rc, out, err = run_cli(
        capsys, "emulate", "board", "--state", tmp_path / "b", "--profile", "tram"
    )
    assert rc == 2 and out == ""
    assert "argument --profile: invalid choice: 'tram' (choose from 'bus', 'taxi'" in err
    assert err.startswith("usage: tapkit emulate board") and "Traceback" not in err
    assert not os.path.exists(tmp_path / "b")


def test_press_on_a_board_that_is_not_running_says_so(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "emulate", "press", "--board", tmp_path / "none", "1#")
    assert rc == 1 and "no virtual board running" in err and "Traceback" not in err
    rc, _, err = run_cli(capsys, "emulate", "press", "--board", tmp_path / "none")
    assert rc == 2 and "nothing to press" in err  # a usage error
