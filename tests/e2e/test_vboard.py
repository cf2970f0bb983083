"""The virtual board behaves like the hardware: a power cut keeps the journalled taps, and the watchdog
resets a firmware whose main loop stops."""

import signal
import time

from card_schema import citizen_host
from e2e_helpers import run_cli
from host_tools import cardops, keystore


def _card(path, keystore_path, balance):
    ks = keystore.load(str(keystore_path))
    now = int(time.time())
    cardops.new_emulated_card(
        str(path),
        ks,
        holder=citizen_host.HOLDER_ADULT,
        card_no=1,
        expiry=now + 86400,
        balance=balance,
        now=now,
    )
    return str(path)


def test_power_cycle_keeps_taps_and_sequence(tmp_path, capsys, keystore_path, virtual_bus):
    card = _card(tmp_path / "a.card", keystore_path, 100000)
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    virtual_bus.restart("ignition off")
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    db = "sqlite:///%s" % (tmp_path / "t.db")
    rc, summary, err = run_cli(
        capsys,
        "sync",
        "--port",
        virtual_bus.port,
        "--db",
        db,
        "--keystore",
        keystore_path,
        "--json",
    )
    assert rc == 0, err
    assert summary["stored"] == 2 and summary["head_seq"] == 2  # both taps, seq 1 and 2


def test_watchdog_resets_a_hung_firmware(tmp_path, keystore_path, virtual_bus):
    card = _card(tmp_path / "b.card", keystore_path, 100000)
    hung = virtual_bus.proc
    mark = virtual_bus.mark()
    hung.send_signal(signal.SIGSTOP)  # the main loop stops feeding the watchdog
    line = virtual_bus.wait_for("RESET|", timeout=20, since=mark)
    assert "watchdog" in line
    virtual_bus.wait_for("DISPLAY|", timeout=30, since=mark)
    assert virtual_bus.proc is not hung
    assert virtual_bus.tap(card)["buzzer"] == "ok"  # back in service
