"""`tapkit ports` (serial ports, and who answers on them) and `tapkit readers` (desk readers)."""

import os

import pytest

from e2e_helpers import run_cli, served_card
from emulator.card import DESFireCard


def test_ports_finds_the_terminal_on_a_virtual_boards_pty(capsys, virtual_bus, tmp_path):
    master, slave = os.openpty()  # a serial port where nothing answers
    silent = os.ttyname(slave)
    try:
        rc, d, err = run_cli(capsys, "ports", virtual_bus.port, silent, "--json")
        assert rc == 0, err
        by = {r["port"]: r for r in d["ports"]}
        bus = by[virtual_bus.port]
        assert (bus["answer"], bus["terminal_id"], bus["profile"]) == ("tapkit", 1001, "bus")
        assert bus["unsynced"] == 0 and bus["fw"]
        assert by[silent]["answer"] == "none" and "no answer" in by[silent]["note"]
        rc, out, err = run_cli(capsys, "ports", virtual_bus.port, silent)
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 0, err
    lines = {ln.split("│")[1].strip(): ln for ln in out.splitlines() if "│" in ln}
    assert "tapkit terminal 1001 (bus, fw" in lines[virtual_bus.port]
    assert "no tapkit answer" in lines[silent]


def test_ports_lists_usb_ids_and_the_bridge(capsys, monkeypatch):
    """What pyserial reports of a CP2102 board and of a modem: only the terminal bridge is probed."""
    from serial.tools.list_ports_common import ListPortInfo

    def info(dev, vid, pid, desc):
        p = ListPortInfo(dev)
        p.vid, p.pid, p.description = vid, pid, desc
        return p

    fake = [
        info("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102 USB to UART"),
        info("/dev/ttyACM0", 0x1199, 0x9071, "modem"),
    ]
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: fake)
    rc, d, err = run_cli(capsys, "ports", "--json", "--timeout", "0.3")
    assert rc == 0, err
    usb0, acm0 = sorted(d["ports"], key=lambda r: r["port"], reverse=True)
    assert (usb0["usb"], usb0["bridge"]) == ("10C4:EA60", "Silicon Labs CP210x")
    assert usb0["answer"] == "unavailable" and "no serial port /dev/ttyUSB0" in usb0["note"]
    assert (acm0["usb"], acm0["bridge"], acm0["answer"]) == ("1199:9071", None, "not probed")


@pytest.mark.pcsc
def test_readers_lists_the_pcsc_reader_and_its_card(capsys, pcscd, tmp_path):
    path = tmp_path / "c.card"
    DESFireCard.blank().save(str(path))
    with served_card(path):
        rc, d, err = run_cli(capsys, "readers", "--json")
        assert rc == 0, err
        slot0 = [r for r in d["readers"] if r["reader"] == "pcsc:Virtual PCD 00 00"]
        assert slot0 and slot0[0]["card"] == "ATR 3B 81 80 01 80 80"  # a DESFire EV1
        rc, out, err = run_cli(capsys, "readers")
    assert rc == 0 and "pcsc:Virtual PCD 00 00" in out and "ATR 3B 81 80 01 80 80" in out


def test_readers_says_when_pcscd_is_not_there(capsys, monkeypatch):
    from smartcard.pcsc.PCSCExceptions import EstablishContextException

    def no_pcscd():
        raise EstablishContextException(0x8010001D)  # SCARD_E_NO_SERVICE

    monkeypatch.setattr("smartcard.System.readers", no_pcscd)
    rc, d, err = run_cli(capsys, "readers", "--json")
    assert rc == 0, err
    assert d["errors"]["pcsc"] == "pcscd is not running (sudo systemctl start pcscd)"
