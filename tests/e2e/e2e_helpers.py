"""Helpers for the end-to-end tests (imported by conftest and the test modules)."""

import contextlib
import json
import time

from harness.boards import rider_card  # noqa: F401  (the e2e tests import it from here)
from host_tools.cli.app import main


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


def sync_json(capsys, port, keystore_path, db):
    """`tapkit sync --port PORT --db DB --json`: returns (exit code, summary or text, stderr)."""
    return run_cli(
        capsys, "sync", "--port", port, "--db", db, "--keystore", keystore_path, "--json"
    )
