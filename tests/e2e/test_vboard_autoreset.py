"""The virtual board's RFC 2217 port has the modem lines a DevKitC's USB bridge has: its auto-reset
circuit resets the chip when a host drives EN low through RTS (esptool, the IDE's reset), holds it in
the ROM's download mode when IO0 is low as EN is released, and a board without the circuit ignores
the lines."""

import time

import serial

from e2e_helpers import rider_card

from emulator.vboard import VirtualBoard
from harness.boards import deploy
from host_tools import keystore
from host_tools.fleet.link import SerialLink


def _lines(url, *steps):
    s = serial.serial_for_url(url, baudrate=115200, timeout=1, do_not_open=True)
    s.dtr = s.rts = True  # both asserted: EN high, IO0 high (pyserial's default on open)
    s.open()
    try:
        for dtr, rts in steps:
            s.dtr, s.rts = dtr, rts
            time.sleep(0.2)
    finally:
        s.close()


def test_rts_resets_the_board_and_esptools_sequence_holds_it_in_download_mode(
    tmp_path, keystore_path
):
    ks = keystore.load(str(keystore_path))
    vb = VirtualBoard(deploy(tmp_path / "bus", ks, 1001, fare=25000, repeat=0)).start()
    try:
        assert vb.url.startswith("rfc2217://127.0.0.1:")
        with SerialLink(vb.url, timeout=3) as link:  # tapkit's own opener: no reset
            assert link.identify()["terminal_id"] == 1001
        boots = vb.boots
        mark = vb.mark()
        _lines(vb.url, (False, True), (True, True))  # RTS alone: EN low, then released
        vb.wait_for("RESET| EN low", timeout=10, since=mark)
        vb.wait_for("DISPLAY| Tap your card", timeout=30, since=mark)
        assert vb.boots == boots + 1 and vb.reset_cause == "power-on"
        card = rider_card(tmp_path / "a.card", ks, 100000)
        assert vb.tap(card)["buzzer"] == "ok"  # back in service
        mark = vb.mark()
        _lines(vb.url, (False, True), (True, False))  # esptool: EN low, then EN up with IO0 low
        vb.wait_for("RESET| EN released with IO0 low", timeout=10, since=mark)
        assert vb.download and not vb.alive
        _lines(vb.url, (False, True), (False, False))  # EN pulsed again with IO0 high: it boots
        vb.wait_for("DISPLAY| Tap your card", timeout=30, since=mark)
        assert vb.alive and not vb.download
    finally:
        vb.stop()


def test_a_board_without_the_circuit_ignores_the_lines(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    vb = VirtualBoard(deploy(tmp_path / "bus", ks, 1001, fare=25000), auto_reset=False).start()
    try:
        boots = vb.boots
        _lines(vb.url, (False, True), (True, False), (False, False))
        time.sleep(1)
        assert vb.boots == boots and vb.alive
        with SerialLink(vb.url, timeout=3) as link:
            assert link.identify()["terminal_id"] == 1001
    finally:
        vb.stop()
