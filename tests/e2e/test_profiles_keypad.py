"""Keypad and button profiles end to end on the virtual board (firmware on the MicroPython VM, 112 KB
heap): charity box, bakery POS, taxi with a split fare. Keys go through the board's keypad (the
virtual board's `press`), cards through the emulated PN532; the card's balance and trip log and the
synced journal must agree."""

import pytest

from card_schema import citizen_host
from host_tools import keystore

from test_profiles_bus import _board, _issue, _journal, _show


@pytest.fixture
def ks(keystore_path):
    return keystore.load(str(keystore_path))


def test_charity_box_buttons(tmp_path, capsys, keystore_path, ks):
    card, uid = _issue(tmp_path, ks, "donor", citizen_host.HOLDER_SENIOR, 300000)
    vb = _board(
        tmp_path, ks, 2001, 0, profile="charity", fares={"amounts": [50000, 100000, 200000]}
    )
    try:
        assert any("Choose an amount | 1:50,000 Rial 2:100,000" in ln for ln in vb.lines())
        shown = vb.tap(card)  # nothing chosen yet
        assert shown["buzzer"] == "refused" and "Choose an amount" in shown["display"]
        assert "Donation 200,000 Rial" in vb.press("3")[-1]
        assert "Choose an amount" in vb.press("*")[-1]  # changed their mind
        assert "Donation 100,000 Rial" in vb.press("2")[-1]
        shown = vb.tap(card)  # no concession on a donation: the senior gives 100,000
        assert shown["buzzer"] == "ok"
        assert "-100,000 Rial" in shown["display"] and "200,000 Rial" in shown["display"]
        shown = vb.tap(card)  # the choice is used up: the next donor chooses again
        assert shown["buzzer"] == "refused"
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    after = _show(ks, card)
    assert after["balance"] == 200000
    assert after["trips"][0]["amount"] == 100000 and after["trips"][0]["profile"] == 5
    assert [(r["uid"], r["profile"], r["kind"], r["amount"], r["balance"]) for r in recs] == [
        (uid, "charity", "charge", 100000, 200000)
    ]


def test_pos_sale_typed_in_toman(tmp_path, capsys, keystore_path, ks):
    rich, rich_uid = _issue(tmp_path, ks, "rich", citizen_host.HOLDER_STUDENT, 100000)
    poor, poor_uid = _issue(tmp_path, ks, "poor", citizen_host.HOLDER_ADULT, 10000)
    vb = _board(tmp_path, ks, 3001, 0, profile="pos", unit="toman", fares={"max": 500000})
    try:
        assert vb.tap(rich)["buzzer"] == "refused"  # no amount entered
        assert "Amount | 15" in vb.press("15")[-1]
        assert "Amount 1,500 Toman" in vb.press("00#")[-1]
        shown = vb.tap(poor)  # 15,000 Rial > 10,000
        assert shown["buzzer"] == "refused" and "Insufficient" in shown["display"]
        shown = vb.tap(rich)  # the same sale, another card
        assert shown["buzzer"] == "ok"
        assert "-1,500 Toman" in shown["display"] and "8,500 Toman" in shown["display"]
        assert vb.tap(rich)["buzzer"] == "refused"  # the sale is done: nothing armed
        assert "> 50,000 Toman" in vb.press("60000#")[-1]  # above the table's max
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    assert _show(ks, rich)["balance"] == 85000
    assert _show(ks, poor)["balance"] == 10000
    assert [(r["uid"], r["profile"], r["kind"], r["amount"]) for r in recs] == [
        (poor_uid, "pos", "refused", 15000),
        (rich_uid, "pos", "charge", 15000),
    ]


def test_taxi_fare_split_over_three_cards(tmp_path, capsys, keystore_path, ks):
    cards = [_issue(tmp_path, ks, "p%d" % i, citizen_host.HOLDER_ADULT, 100000) for i in range(3)]
    vb = _board(tmp_path, ks, 4001, 31, profile="taxi")
    try:
        assert "Fare 100,000 Rial" in vb.press("100000#")[-1]
        assert "Fare 100,000 Rial 1/3" in vb.press("B3")[-1]
        paid = []
        for card, _ in cards:
            shown = vb.tap(card)
            assert shown["buzzer"] == "ok", shown
            paid.append(shown["display"])
        assert "-33,333 Rial" in paid[0] and "-33,333 Rial" in paid[1]
        assert "-33,334 Rial" in paid[2]  # the last card pays the remainder
        assert vb.tap(cards[0][0])["buzzer"] == "refused"  # the meter is clear
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    assert [_show(ks, c)["balance"] for c, _ in cards] == [66667, 66667, 66666]
    assert [(r["uid"], r["profile"], r["amount"], r["line"]) for r in recs] == [
        (cards[0][1], "taxi", 33333, 31),
        (cards[1][1], "taxi", 33333, 31),
        (cards[2][1], "taxi", 33334, 31),
    ]
    assert sum(r["amount"] for r in recs) == 100000
