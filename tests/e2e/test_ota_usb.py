"""Firmware update over USB on a virtual terminal: a signed release sent with INSTALL chunks, staged
beside the running set, booted on trial, confirmed by its self-test; tampered, foreign and broken
releases refused or rolled back, and the terminal takes taps after each (firmware/ota.py)."""

import json

import pytest

from harness.boards import deployed_board, rider_card
from harness.ota_fleet import broken_reader
from host_tools import keystore
from host_tools.fleet import release
from host_tools.fleet.link import SerialLink, TerminalError


def _ota(link):
    return link.identify().get("ota")


@pytest.fixture
def ks(keystore_path):
    return keystore.load(str(keystore_path))


def test_usb_update_confirmed_then_broken_release_rolled_back(tmp_path, ks, keystore_path, capsys):
    from host_tools.cli.app import main

    card = rider_card(tmp_path / "c.card", ks, balance=100000)
    with deployed_board(tmp_path / "bus", ks, 1001, fare=25000) as vb:
        release.write(str(tmp_path / "r2.tkr"), release.build("unix-virtual", 2))
        mark = vb.mark()
        argv = ["release", "install", str(tmp_path / "r2.tkr"), "--port", vb.port]
        assert main(argv + ["--keystore", str(keystore_path), "--json"]) == 0
        sent = json.loads(capsys.readouterr().out)
        assert sent["release"] == 2 and sent["ota"][0] == 2  # verified, waiting to be staged
        vb.wait_for("LOG| ota: release 2 staged", timeout=60, since=mark)
        vb.wait_for("LOG| ota: release 2 confirmed", timeout=60, since=mark)
        vb.wait_for("LOG| boot: terminal 1001 ready", timeout=30, since=mark)
        with SerialLink(vb.port, timeout=5.0) as link:
            assert _ota(link)[:2] == [0, 2] and _ota(link)[3:5] == [2, 1]  # running 2, confirmed
        assert vb.tap(card)["buzzer"] == "ok"

        # tampered: one byte of the sealed bundle changed; for another board: refused at once
        blob = bytearray(release.seal(ks, 1001, release.build("unix-virtual", 3)))
        blob[len(blob) // 2] ^= 1
        with SerialLink(vb.port, timeout=5.0) as link:
            link.key = keystore.terminal_key(ks, 1001)  # INSTALL is a tagged control
            link.identify()  # the nonce its tag covers
            with pytest.raises(TerminalError, match="bad signature"):
                link.install(bytes(blob))
            other = release_for_board(ks, "bus-validator", "unix")
            with pytest.raises(TerminalError, match="for board bus-validator"):
                link.install(other)
            assert _ota(link)[1] == 2
            # untagged (no key): refused before anything of it is kept
            link.key = None
            with pytest.raises(TerminalError, match="tag"):
                link.install(release.seal(ks, 1001, release.build("unix-virtual", 4)))
            assert _ota(link)[:3] == [0, 2, 0]

        # a release whose reader driver is broken: staged, booted on trial, self-test fails,
        # back to release 2 by itself, and the terminal reports why
        bad = release.build(
            "unix-virtual", 3, files={"firmware/pn532.mpy": broken_reader(tmp_path)}
        )
        mark = vb.mark()
        with SerialLink(vb.port, timeout=5.0) as link:
            release.install(link, ks, bad)
        vb.wait_for("LOG| ota: release 3 rolled back: reader", timeout=90, since=mark)
        mark = vb.mark()
        vb.wait_for("LOG| boot: terminal 1001 ready", timeout=30, since=mark)
        with SerialLink(vb.port, timeout=5.0) as link:
            o = _ota(link)
        assert o[1] == 2 and o[3:5] == [3, 2] and "reader" in o[5]
        assert vb.tap(card)["buzzer"] == "ok"


def release_for_board(ks, board, platform):
    """A sealed release that names another board (the files of this one)."""
    from card_schema import release_host

    payload = release_host.pack(5, board, platform, "0.1.0", release.firmware_set("unix-virtual"))
    return release.seal(ks, 1001, payload)
