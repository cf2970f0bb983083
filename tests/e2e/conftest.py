"""Fixtures for the end-to-end tests: real pcscd + vpcd, emulated cards served to it, virtual boards."""

import os

import pytest


@pytest.fixture(scope="session")
def pcscd():
    from emulator.pcscd import ensure_pcscd

    ensure_pcscd()
    return True


from e2e_helpers import run_cli, served_card  # noqa: E402,F401


@pytest.fixture(autouse=True)
def office_journal(tmp_path, monkeypatch):
    """Every `tapkit card` operation is journalled: each test's card office is office 9001 with
    its journal in the test's folder ($TAPKIT_OFFICE, what --office defaults to)."""
    from host_tools.cardoffice.journal import OfficeJournal

    path = str(tmp_path / "office.journal")
    OfficeJournal.init(path, 9001)
    monkeypatch.setenv("TAPKIT_OFFICE", path)
    return path


@pytest.fixture
def keystore_path(tmp_path, capsys):
    path = tmp_path / "issuer.keys"
    rc, _, err = run_cli(capsys, "keys", "init", "--keystore", path, "--json")
    assert rc == 0, err
    assert os.stat(path).st_mode & 0o777 == 0o600
    return path


@pytest.fixture
def virtual_bus(tmp_path, keystore_path):
    """A deployed, running virtual bus terminal (id 1001, fare 25,000 Rial; no repeat window: the
    tests tap the same card for several rides within seconds; test_money.py tests the window)."""
    from emulator.vboard import VirtualBoard
    from harness.boards import deploy
    from host_tools import keystore

    state = deploy(
        tmp_path / "bus", keystore.load(str(keystore_path)), 1001, fare=25000, line=7, repeat=0
    )
    vb = VirtualBoard(state)  # its filesystem: state/fs.img (littlefs)
    vb.start()
    try:
        yield vb
    finally:
        vb.stop()
