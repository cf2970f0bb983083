"""The same card-office scenario (issue, top up, show, block, refund) through every reader path:
pcsc (pyscard -> pcscd -> vpcd -> the emulated card), nfc udp (nfcpy's udp driver -> the emulated
ISO 14443-4 card of `tapkit emulate card --udp`) and the in-process emulator."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from card_schema import citizen
from e2e_helpers import run_cli, served_card
from emulator.card import DESFireCard
from emulator.nfc_udp import NFCUDPCard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def _path(kind, cardfile, request):
    if kind == "pcsc":
        request.getfixturevalue("pcscd")
        with served_card(cardfile):
            yield "pcsc:Virtual PCD 00 00"
    elif kind == "nfc-udp":
        srv = NFCUDPCard(DESFireCard.load(str(cardfile)), "127.0.0.1", 0).serve_in_thread()
        try:
            yield "nfc:udp:127.0.0.1:%d" % srv.port
        finally:
            srv.stop()
    else:
        yield "emulator:%s" % cardfile


@pytest.mark.parametrize(
    "kind", [pytest.param("pcsc", marks=pytest.mark.pcsc), "nfc-udp", "emulator"]
)
def test_card_office_scenario(kind, tmp_path, capsys, keystore_path, request):
    cardfile = tmp_path / "alice.card"
    DESFireCard.blank().save(str(cardfile))
    with _path(kind, cardfile, request) as reader:

        def card(*args):
            return run_cli(
                capsys, "card", *args, "--reader", reader, "--keystore", keystore_path, "--json"
            )

        rc, out, err = card("issue", "--holder", "student", "--card-no", "5", "--balance", "50000")
        assert rc == 0, err
        assert (out["holder"], out["card_no"], out["balance"]) == ("student", 5, 50000)
        rc, out, err = card("topup", "--amount", "20000")
        assert rc == 0, err
        rc, out, err = card("show")
        assert rc == 0, err
        assert out["balance"] == 70000 and out["status"] == "active" and out["counter"] == 2
        assert [(t["kind"], t["amount"], t["balance_after"]) for t in out["trips"]] == [
            ("credit", 20000, 70000),
            ("credit", 50000, 50000),
        ]
        rc, out, err = card("block")
        assert rc == 0 and out["status"] == "blocked", err
        rc, out, err = card("topup", "--amount", "1000")
        assert rc == 1 and "is blocked" in err
        rc, out, err = card("refund")
        assert rc == 0 and out["refunded"] == 70000, err
    on_file = DESFireCard.load(str(cardfile))
    assert on_file.value(citizen.AID, citizen.FILE_PURSE) == 0
    assert (
        citizen.unpack_trip(on_file.records(citizen.AID, citizen.FILE_TRIPS)[0])[
            citizen.TR_COUNTER
        ]
        == 3
    )


def test_nfc_reader_errors(capsys, keystore_path, tmp_path):
    # an empty field: the udp "air" is there, no card answers the polls
    with NFCUDPCard(None, "127.0.0.1", 0).serve_in_thread() as srv:
        reader = "nfc:udp:127.0.0.1:%d" % srv.port
        rc, out, err = run_cli(
            capsys, "card", "show", "--reader", reader, "--keystore", keystore_path
        )
    assert rc == 1
    assert err == "tapkit: error: no card on reader %s: put a card on the reader\n" % reader
    rc, out, err = run_cli(
        capsys, "card", "show", "--reader", "nfc:serial", "--keystore", keystore_path
    )
    assert rc == 1 and "use nfc:usb or nfc:udp" in err


def test_card_removed_on_nfc_udp(capsys, keystore_path, tmp_path):
    """The field drops (the card is taken away) in the middle of a top-up over nfcpy."""
    cardfile = tmp_path / "bob.card"
    DESFireCard.blank().save(str(cardfile))
    card = DESFireCard.load(str(cardfile))
    with NFCUDPCard(card, "127.0.0.1", 0).serve_in_thread() as srv:
        reader = "nfc:udp:127.0.0.1:%d" % srv.port
        rc, out, err = run_cli(
            capsys, "card", "issue", "--reader", reader, "--keystore", keystore_path
        )
        assert rc == 0, err
        before = DESFireCard.load(str(cardfile)).to_json()
        card.tear = lambda c, f: "before" if f[1] == 0x0C else None  # at the Credit
        rc, out, err = run_cli(
            capsys,
            "card",
            "topup",
            "--amount",
            "500",
            "--reader",
            reader,
            "--keystore",
            keystore_path,
        )
        assert rc == 1 and err.count("\n") == 1
        assert err.startswith(
            "tapkit: error: card removed during top-up: the balance is unchanged"
        )
        after = DESFireCard.load(str(cardfile)).to_json()
        # only the signed ceiling moved (it goes on the card before the credit)
        for doc in (before, after):
            doc["apps"]["544B01"]["files"].pop("5")
        assert after == before


def test_emulate_card_udp_command(tmp_path, capsys, keystore_path):
    """`tapkit emulate card CARDFILE --new --udp PORT` in its own process, used with nfc:udp."""
    cardfile = tmp_path / "carol.card"
    probe = NFCUDPCard(None, "127.0.0.1", 0)
    port = probe.port
    probe.stop()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host_tools.cli",
            "emulate",
            "card",
            str(cardfile),
            "--new",
            "--udp",
            "127.0.0.1:%d" % port,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "to nfcpy on udp:127.0.0.1:%d" % port in line, proc.stderr.read()
        rc, out, err = run_cli(
            capsys,
            "card",
            "issue",
            "--balance",
            "3000",
            "--reader",
            "nfc:udp:127.0.0.1:%d" % port,
            "--keystore",
            keystore_path,
            "--json",
        )
        assert rc == 0 and out["balance"] == 3000, err
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    time.sleep(0)
    assert DESFireCard.load(str(cardfile)).value(citizen.AID, citizen.FILE_PURSE) == 3000
