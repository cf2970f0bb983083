"""Hardware in the loop: a real flash, diag, taps with a card the tester presents, and a sync, on the
board at $TAPKIT_PORT (README "Testing on a real board"; `make test-hw`). Skipped, with the reason,
when $TAPKIT_PORT is not set.

    TAPKIT_PORT=/dev/ttyUSB0            the terminal's USB serial (required)
    TAPKIT_BOARD=esp32-devkitc          its board file (default esp32-devkitc)
    TAPKIT_READER=pcsc                  a desk reader: the card is issued (a blank one) or read there,
                                        and its balance checked after the tap; without one the tap is
                                        checked in the journal only (any card this keystore issued)
    TAPKIT_KEYSTORE=issuer.keys         the keys the card was issued with (default: a new keystore,
                                        so the card on the desk reader must be blank)
    TAPKIT_TERMINAL_ID=9901             the identity flashed (default 9901)
    TAPKIT_TAP_TIMEOUT=90               seconds the tester has for each card move

The same tests run against a virtual board: `tapkit emulate board --blank --state S` gives the port;
TAPKIT_VBOARD=S makes the test present the card itself (the board's control socket, as `tapkit
emulate tap` does) and TAPKIT_READER=emulator:CARDFILE is the desk reader.

The tests run in order (one flashed board, one card): flash, re-flash, a REPL session longer than
the watchdog's timeout, diag, tap, sync.
"""

import json
import os
import sqlite3
import sys
import time

import pytest

from host_tools.cli.app import main

PORT = os.environ.get("TAPKIT_PORT")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(
        not PORT, reason="no board: set TAPKIT_PORT (README 'Testing on a real board')"
    ),
]
BOARD = os.environ.get("TAPKIT_BOARD") or "esp32-devkitc"
READER = os.environ.get("TAPKIT_READER")
VBOARD = os.environ.get("TAPKIT_VBOARD")
TID = int(os.environ.get("TAPKIT_TERMINAL_ID") or 9901)
TAP_TIMEOUT = float(os.environ.get("TAPKIT_TAP_TIMEOUT") or 90)
FARE = 1000
BALANCE = 50000


def _cli(capsys, *argv):
    """`tapkit ARGV --json` in this process: (exit code, parsed JSON or text, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, out, err


def _tell(capsys, text):
    """A line for the tester (printed past pytest's capture)."""
    with capsys.disabled():
        print("\n>>> " + text, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The keystore, the office journal, the store and what the tests learn on the way."""
    d = tmp_path_factory.mktemp("hw")
    ks = os.environ.get("TAPKIT_KEYSTORE") or str(d / "issuer.keys")
    if not os.path.exists(ks):
        assert main(["keys", "init", "--keystore", ks]) == 0
    office = str(d / "office.journal")
    from host_tools.cardoffice.journal import OfficeJournal

    OfficeJournal.init(office, 9001)
    old = os.environ.get("TAPKIT_OFFICE")
    os.environ["TAPKIT_OFFICE"] = office
    yield {"ks": ks, "db": "sqlite:///%s" % (d / "taps.db"), "dir": d}
    if old is None:
        os.environ.pop("TAPKIT_OFFICE", None)
    else:
        os.environ["TAPKIT_OFFICE"] = old


def _identify(port):
    from host_tools.fleet.link import SerialLink

    with SerialLink(port, timeout=3) as link:
        return link.identify()


def test_1_flash(capsys, rig):
    t0 = time.monotonic()
    rc, r, err = _cli(
        capsys, "flash", "--port", PORT, "--board", BOARD, "--terminal-id", TID,
        "--fare", FARE, "--keystore", rig["ks"], "--no-console-lock",
    )  # fmt: skip
    rig["flash_s"] = time.monotonic() - t0
    assert rc == 0, err
    assert r["terminal_id"] == TID and r["fw"]
    assert r["files"] > 20 and r["copied"] <= r["files"]
    _tell(
        capsys, "flash: %d files, %d copied in %.1f s" % (r["files"], r["copied"], rig["flash_s"])
    )


def test_2_reflash_copies_nothing(capsys, rig):
    t0 = time.monotonic()
    rc, r, err = _cli(
        capsys, "flash", "--port", PORT, "--board", BOARD, "--terminal-id", TID,
        "--fare", FARE, "--keystore", rig["ks"], "--no-console-lock",
    )  # fmt: skip
    took = time.monotonic() - t0
    assert rc == 0, err
    assert r["copied"] == 0 and r["changed"] == []  # every file's hash matched on the board
    _tell(capsys, "re-flash: nothing to copy, %.1f s" % took)


def test_2_a_repl_session_outlasts_the_watchdog(capsys, rig):
    """The firmware's watchdog (8 s) cannot be stopped and runs on in the REPL: an mpremote session
    longer than that must not reset the board (the firmware's keeper feeds it, firmware/keep.py).
    Then `mpremote reset` puts the board back into service."""
    import subprocess

    def mpremote(*args):
        return subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", PORT, *args],
            capture_output=True,
            text=True,
            timeout=90,
        )

    t0 = time.monotonic()
    p = mpremote("exec", "import time\ntime.sleep(12)\nprint('still here')")
    took = time.monotonic() - t0
    assert p.returncode == 0 and "still here" in p.stdout, p.stdout + p.stderr
    mpremote("reset")
    deadline = time.monotonic() + 30
    while True:
        try:
            assert _identify(PORT)["terminal_id"] == TID
            break
        except Exception:  # noqa: BLE001 - booting
            assert time.monotonic() < deadline, "the board did not come back into service"
            time.sleep(1)
    _tell(capsys, "REPL session of %.1f s: no watchdog reset" % took)


def test_3_diag(capsys, rig):
    rc, d, err = _cli(capsys, "diag", "--port", PORT)
    assert rc == 0, err
    assert d["via"] == "firmware (sync protocol)"
    assert d["terminal_id"] == TID and d["profile"] == "bus"
    assert d["line_test"] is True
    assert d["reader"], "the PN532 did not answer: check its wiring and HSU mode"
    rig["head0"] = _identify(PORT)["head_seq"]


def _present(card, to, capsys):
    """Have the card presented to `to` ("terminal") or put back on the desk reader."""
    if VBOARD and to == "terminal":
        from host_tools.sim import virtual

        return virtual.tap(VBOARD, card, timeout=30)
    if to == "terminal":
        _tell(
            capsys, "present the card to the terminal, hold it until it beeps, then take it away"
        )
    elif not READER.startswith("emulator:"):
        _tell(capsys, "put the card back on the desk reader %s" % READER)


def _card_balance(capsys, ks, timeout):
    deadline = time.monotonic() + timeout
    while True:
        rc, c, err = _cli(capsys, "card", "show", "--reader", READER, "--keystore", ks)
        if rc == 0:
            return c
        if time.monotonic() > deadline:
            raise AssertionError("no card on the desk reader %s: %s" % (READER, err))
        time.sleep(1)


def test_4_tap(capsys, rig):
    card = None
    if READER:
        if READER.startswith("emulator:"):
            card = READER.split(":", 1)[1]
            if not os.path.exists(card):
                from emulator.card import DESFireCard

                DESFireCard.blank().save(card)
        rc, c, err = _cli(capsys, "card", "show", "--reader", READER, "--keystore", rig["ks"])
        if rc != 0:  # a blank card: issue it
            _tell(capsys, "issuing the card on %s" % READER)
            rc, c, err = _cli(
                capsys, "card", "issue", "--reader", READER, "--keystore", rig["ks"],
                "--balance", BALANCE,
            )  # fmt: skip
            assert rc == 0, err
            c = _card_balance(capsys, rig["ks"], 10)
        rig["balance0"] = c["balance"]
        assert c["balance"] >= FARE, "the card needs at least %d Rial" % FARE
    head0 = rig["head0"]
    _present(card, "terminal", capsys)
    deadline = time.monotonic() + TAP_TIMEOUT
    info = _identify(PORT)
    while info["head_seq"] < head0 + 2:  # the charge and the CONFIRM of its commit answer
        assert time.monotonic() < deadline, "no tap journalled within %d s" % TAP_TIMEOUT
        time.sleep(1)
        info = _identify(PORT)
    rig["head1"] = info["head_seq"]
    if READER:
        _present(card, "reader", capsys)
        c = _card_balance(capsys, rig["ks"], TAP_TIMEOUT)
        assert c["balance"] == rig["balance0"] - FARE  # the card paid the flat fare once
        rig["uid"] = c["uid"]


def test_5_sync(capsys, rig):
    rc, s, err = _cli(capsys, "sync", "--port", PORT, "--db", rig["db"], "--keystore", rig["ks"])
    assert rc == 0, err
    assert s["terminal"] == TID and s["head_seq"] == rig["head1"] and s["stored"] >= 2
    assert _identify(PORT)["unsynced"] == 0  # acknowledged: the journal may reuse the space
    rc, rep, err = _cli(capsys, "report", "--db", rig["db"], "--keystore", rig["ks"])
    assert rc == 0, err
    assert rep["audit"]["quarantined_now"] == 0 and rep["charges"] >= 1
    with sqlite3.connect(rig["db"].split("///", 1)[1]) as db:
        got = db.execute(
            "SELECT uid, amount FROM taps WHERE terminal = ? AND kind = 'charge' ORDER BY seq",
            (TID,),
        ).fetchall()
    assert got and got[-1][1] == FARE
    if "uid" in rig:
        assert got[-1][0] == rig["uid"].lower()
