"""The virtual board behaves like the hardware: a power cut keeps the journalled taps, and the watchdog
resets a firmware whose main loop stops."""

import json
import signal
import time

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


def _unset_by_seq(db):
    import sqlite3

    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT seq, clock_unset FROM taps ORDER BY seq"))


def test_power_cut_without_rtc_marks_taps_until_a_sync_sets_the_clock(
    tmp_path, capsys, keystore_path, virtual_bus
):
    import time

    from e2e_helpers import run_cli

    card = rider_card(tmp_path / "c.card", keystore_path, 100000)
    db = tmp_path / "t.db"
    url = "sqlite:///%s" % db
    assert sync_json(capsys, virtual_bus.port, keystore_path, url)[0] == 0  # the clock is set
    virtual_bus.restart("power cut", clock_lost=True)  # no RTC: the chip's clock starts again
    t0 = time.time()
    assert virtual_bus.tap(card)["buzzer"] == "ok"  # seq 1, 2 (charge, confirm): marked
    rc, summary, err = sync_json(capsys, virtual_bus.port, keystore_path, url)
    assert rc == 0, err
    assert summary["clock_set"] is True  # set although it drifted a few seconds only
    virtual_bus.restart("watchdog test")  # a reset after the sync: the clock stays set
    assert virtual_bus.tap(card)["buzzer"] == "ok"  # seq 3, 4: not marked
    assert sync_json(capsys, virtual_bus.port, keystore_path, url)[0] == 0
    assert _unset_by_seq(db) == {1: 1, 2: 1, 3: 0, 4: 0}
    rc, rep, err = run_cli(capsys, "report", "--db", url, "--keystore", keystore_path, "--json")
    assert rc == 0, err
    (row,) = [r for r in rep["terminals"] if r["terminal"] == 1001]
    assert row["clock_unset"] == 2
    rc, text, err = run_cli(capsys, "report", "--db", url, "--keystore", keystore_path)
    assert "clock unset" in text
    from host_tools.backoffice import fleetstatus, store

    with store.open_store(url, create=False) as s:
        (st,) = [r for r in fleetstatus.status(s) if r["terminal"] == 1001]
    assert st["clock_unset"] == 2 and "clock_unset" not in st["flags"]  # set since
    assert time.time() - t0 < 120


def test_power_cut_with_a_ds3231_keeps_the_time(tmp_path, capsys, keystore_path):
    import time

    from emulator import ds3231
    from emulator.vboard import VirtualBoard
    from harness.boards import deploy
    from host_tools import keystore

    state = deploy(tmp_path / "rtc", keystore.load(str(keystore_path)), 1002, fare=25000, repeat=0)
    # 128K: a board with an RTC keeps its driver resident (firmware/clock.py, ~2.5 KB) and on main
    # reading it after a power cut grows the VM's qstr pool by a block (~7 KB; the heap work's
    # firmware.warm grows it first thing at boot); the emulated chip's module comes and goes
    vb = VirtualBoard(state, rtc=True, heap="128K").start()
    chip = str(tmp_path / "rtc" / "ds3231.json")
    try:
        card = rider_card(tmp_path / "d.card", keystore_path, 100000)
        url = "sqlite:///%s" % (tmp_path / "r.db")
        vb.restart("first power-up", clock_lost=True)  # a new chip: OSF, no valid time yet
        assert ds3231.unix_of(chip)[1]
        assert vb.tap(card)["buzzer"] == "ok"  # seq 1, 2: marked
        rc, summary, err = sync_json(capsys, vb.port, keystore_path, url)
        assert rc == 0, err
        assert summary["clock_set"] is True  # the clock and the chip (OSF cleared)
        t, osf = ds3231.unix_of(chip)
        assert not osf and abs(t - time.time()) <= 2
        vb.restart("power cut", clock_lost=True)  # the chip kept counting on its battery
        assert vb.tap(card)["buzzer"] == "ok"  # seq 3, 4: not marked
        rc, summary, err = sync_json(capsys, vb.port, keystore_path, url)
        assert rc == 0, err
        assert summary["clock_set"] is False  # the DS3231's time was right
        # the battery flat as well: the taps are marked until the next sync
        ds3231.power_cut(chip, battery=0)
        vb.restart("power cut, flat battery", clock_lost=True)
        assert vb.tap(card)["buzzer"] == "ok"  # seq 5, 6: marked
        assert sync_json(capsys, vb.port, keystore_path, url)[0] == 0
        assert _unset_by_seq(tmp_path / "r.db") == {1: 1, 2: 1, 3: 0, 4: 0, 5: 1, 6: 1}
    finally:
        vb.stop()


def test_console_ring_buffer_an_8_kb_deny_list_over_usb_loses_nothing(
    tmp_path, capsys, keystore_path, virtual_bus
):
    """The virtual board's console is the ESP32's: a 259-byte ring buffer, bytes beyond it lost
    while the firmware has not read them. A blind 4 KB burst loses most of itself; a sync pushing an
    8 KB deny list over a 115,200-baud line (INSTALL chunks that fit the buffer, one per answer)
    loses none."""
    import os

    from e2e_helpers import run_cli

    from host_tools.fleet.link import SerialLink

    virtual_bus.baud = 0  # at USB speed (a native-USB S2/S3 board): faster than the firmware reads
    lost0 = virtual_bus.console_lost
    fd = os.open(virtual_bus.port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"x" * 4096 + b"\n")  # noise, no frame: the firmware takes 256 B a pass
        time.sleep(1.0)
    finally:
        os.close(fd)
    assert virtual_bus.console_lost - lost0 > 4096 - 2 * 259  # beyond the ring: lost
    virtual_bus.baud = 115200  # the DevKitC's USB-UART bridge (every board's default)

    deny = {"04%012x" % (0xA00000 + i): "refuse" for i in range(1024)}  # 1024 x 8 B = 8 KB
    (tmp_path / "deny.json").write_text(json.dumps(deny))
    db = "sqlite:///%s" % (tmp_path / "t.db")
    rc, out, err = run_cli(
        capsys, "publish", "--kind", "deny", "--version", 5, "--db", db, tmp_path / "deny.json",
        "--json",
    )  # fmt: skip
    assert rc == 0, err
    lost0 = virtual_bus.console_lost
    t0 = time.monotonic()
    rc, summary, err = sync_json(capsys, virtual_bus.port, keystore_path, db)
    took = time.monotonic() - t0
    assert rc == 0, err
    with SerialLink(virtual_bus.port, timeout=3) as link:
        assert link.identify()["deny_ver"] == 5  # installed: every chunk arrived whole
    assert virtual_bus.console_lost - lost0 == 0
    print("8 KB deny list over USB at 115,200 baud: %.1f s, 0 bytes lost" % took)
