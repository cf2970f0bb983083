"""The walking skeleton end to end: a card issued through pyscard + pcscd + vpcd, tapped on a virtual bus
terminal (firmware on the MicroPython VM behind an emulated PN532), synced over the pty into SQLite."""

import pytest

from emulator.card import DESFireCard

from e2e_helpers import run_cli, served_card, sync_json

pytestmark = pytest.mark.pcsc
READER = "pcsc:Virtual PCD 00 00"
FARE = 25000


def _issue(capsys, card, keystore_path, balance):
    with served_card(card):
        rc, info, err = run_cli(
            capsys,
            "card",
            "issue",
            "--reader",
            READER,
            "--keystore",
            keystore_path,
            "--balance",
            balance,
            "--holder",
            "adult",  # full fare (a student card pays the concession, test_money.py)
            "--json",
        )
    assert rc == 0, err
    assert info["balance"] == balance
    return info


def _show(capsys, card, keystore_path):
    with served_card(card):
        rc, info, err = run_cli(
            capsys, "card", "show", "--reader", READER, "--keystore", keystore_path, "--json"
        )
    assert rc == 0, err
    return info


def _sync_and_report(capsys, vb, keystore_path, tmp_path):
    db = "sqlite:///%s" % (tmp_path / "taps.db")
    rc, summary, err = sync_json(capsys, vb.port, keystore_path, db)
    assert rc == 0, err
    rc, rep, err = run_cli(capsys, "report", "--db", db, "--keystore", keystore_path, "--json")
    assert rc == 0, err
    return summary, rep


def test_tap_is_charged_on_card_and_in_ledger(tmp_path, capsys, pcscd, keystore_path, virtual_bus):
    card = tmp_path / "rider.card"
    DESFireCard.blank().save(str(card))
    issued = _issue(capsys, card, keystore_path, 100000)

    shown = virtual_bus.tap(str(card))
    assert shown["buzzer"] == "ok"
    assert "75,000" in shown["display"]  # the rider sees the new balance

    summary, rep = _sync_and_report(capsys, virtual_bus, keystore_path, tmp_path)
    assert summary["stored"] == 2  # the charge and the CONFIRM of the card's commit answer
    rows = [r for r in rep["cards"] if r["uid"] == issued["uid"]]
    assert len(rows) == 1
    # one tap: confirmed by the terminal's confirm record, or unconfirmed until the card shows up
    # again (then it is listed with its amount, not counted as revenue yet)
    assert rows[0]["charged"] + rows[0]["unconfirmed"] == FARE
    assert rows[0]["last_balance"] == 100000 - FARE
    assert rep["revenue"] + rep["unconfirmed"]["amount"] == FARE

    after = _show(capsys, card, keystore_path)
    assert after["balance"] == 100000 - FARE
    assert after["counter"] == issued["counter"] + 1
    assert after["trips"][0]["terminal"] == 1001
    assert after["trips"][0]["amount"] == FARE


def test_card_below_fare_is_refused_and_unchanged(
    tmp_path, capsys, pcscd, keystore_path, virtual_bus
):
    card = tmp_path / "poor.card"
    DESFireCard.blank().save(str(card))
    issued = _issue(capsys, card, keystore_path, 10000)

    shown = virtual_bus.tap(str(card))
    assert shown["buzzer"] == "refused"
    assert "Insufficient" in shown["display"]

    after = _show(capsys, card, keystore_path)
    assert after["balance"] == 10000
    assert after["counter"] == issued["counter"]
    assert after["trips"] == issued["trips"]

    summary, rep = _sync_and_report(capsys, virtual_bus, keystore_path, tmp_path)
    assert summary["stored"] == 1  # the refusal is journalled and synced
    assert rep["revenue"] == 0
    assert rep["refused_by_reason"].get("insufficient") == 1
