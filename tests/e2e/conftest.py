"""Fixtures for the end-to-end tests: real pcscd + vpcd, emulated cards served to it, virtual boards."""

import contextlib
import json
import os
import time

import pytest

from host_tools.cli import main


@pytest.fixture(scope="session")
def pcscd():
    from emulator.pcscd import ensure_pcscd

    ensure_pcscd()
    return True


@contextlib.contextmanager
def served_card(path, timeout=20.0):
    """Serve a card file to pcscd through vpcd (as `tapkit emulate card` does) until the block ends."""
    from smartcard.System import readers

    from emulator.card import DESFireCard
    from emulator.vpcd import VPCDBridge

    card = DESFireCard.load(str(path))
    bridge = VPCDBridge(card, "127.0.0.1", 35963)
    bridge.connect()
    bridge.serve_in_thread()
    try:
        deadline = time.monotonic() + timeout
        while True:  # wait until pcscd reports the card present in the virtual reader
            rs = [r for r in readers() if str(r).startswith("Virtual PCD 00 00")]
            if rs:
                try:
                    c = rs[0].createConnection()
                    c.connect()
                    c.disconnect()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError("pcscd never saw the emulated card in Virtual PCD 00 00")
            time.sleep(0.2)
        yield card
    finally:
        bridge.stop()


def run_cli(capsys, *argv):
    """Run `tapkit ARGV --json`; return (exit code, parsed stdout or text, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, out, err


@pytest.fixture
def keystore_path(tmp_path, capsys):
    path = tmp_path / "issuer.keys"
    rc, _, err = run_cli(capsys, "keys", "init", "--keystore", path, "--json")
    assert rc == 0, err
    assert os.stat(path).st_mode & 0o777 == 0o600
    return path


@pytest.fixture
def virtual_bus(tmp_path, keystore_path):
    """A deployed, running virtual bus terminal (id 1001, fare 25,000 Rial)."""
    from emulator.vboard import VirtualBoard
    from host_tools import keystore, provision

    state = tmp_path / "bus"
    fs = state / "fs"
    fs.mkdir(parents=True)
    provision.deploy_virtual(str(fs), keystore.load(str(keystore_path)), 1001, fare=25000, line=7)
    vb = VirtualBoard(str(state))
    vb.start()
    try:
        yield vb
    finally:
        vb.stop()
