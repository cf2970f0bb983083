"""The virtual board behaves like the hardware: a power cut keeps the journalled taps, and the watchdog
resets a firmware whose main loop stops."""

import signal

from e2e_helpers import rider_card, sync_json


def test_power_cycle_keeps_taps_and_sequence(tmp_path, capsys, keystore_path, virtual_bus):
    card = rider_card(tmp_path / "a.card", keystore_path, 100000)
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    virtual_bus.restart("ignition off")
    assert virtual_bus.tap(card)["buzzer"] == "ok"
    db = "sqlite:///%s" % (tmp_path / "t.db")
    rc, summary, err = sync_json(capsys, virtual_bus.port, keystore_path, db)
    assert rc == 0, err
    # both taps: their charges (seq 1, 3) and the CONFIRMs of the commit answers (seq 2, 4)
    assert summary["stored"] == 4 and summary["head_seq"] == 4


def test_watchdog_resets_a_hung_firmware(tmp_path, keystore_path, virtual_bus):
    card = rider_card(tmp_path / "b.card", keystore_path, 100000)
    hung = virtual_bus.proc
    mark = virtual_bus.mark()
    hung.send_signal(signal.SIGSTOP)  # the main loop stops feeding the watchdog
    line = virtual_bus.wait_for("RESET|", timeout=20, since=mark)
    assert "watchdog" in line
    virtual_bus.wait_for("DISPLAY|", timeout=30, since=mark)
    assert virtual_bus.proc is not hung
    assert virtual_bus.tap(card)["buzzer"] == "ok"  # back in service
