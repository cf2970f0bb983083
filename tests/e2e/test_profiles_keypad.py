"""Keypad and button profiles end to end on the virtual board (firmware on the MicroPython VM, 112 KB
heap): charity box, bakery POS, taxi with a split fare. Keys go through the board's keypad (the
virtual board's `press`), cards through the emulated PN532; the card's balance and trip log and the
synced journal must agree."""

import pytest

from card_schema import citizen_host
from host_tools import keystore

from e2e_helpers import run_cli
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


def test_pos_refund_of_the_last_sale(tmp_path, capsys, keystore_path, ks):
    """The cashier sells, then refunds that sale on the same card ("R", "#" to confirm, tap): the card
    gets the amount back (LimitedCredit, a refund trip record), once; the journal says refund and the
    report counts it as negative revenue."""
    alice, alice_uid = _issue(tmp_path, ks, "alice", citizen_host.HOLDER_ADULT, 100000)
    bob, bob_uid = _issue(tmp_path, ks, "bob", citizen_host.HOLDER_ADULT, 100000)
    vb = _board(tmp_path, ks, 3101, 0, profile="pos", fares={"max": 500000, "refund": 600})
    try:
        assert "Amount 15,000 Rial" in vb.press("15000#")[-1]
        assert vb.tap(alice)["buzzer"] == "ok"
        assert "Amount 4,000 Rial" in vb.press("4000#")[-1]
        assert vb.tap(bob)["buzzer"] == "ok"
        assert "Refund last sale? | #=OK *=cancel" in vb.press("R")[-1]
        assert "Amount | " in vb.press("*")[-1]  # the merchant changed their mind
        shown = vb.tap(alice)  # no refund asked: nothing armed
        assert shown["buzzer"] == "refused" and "Enter amount first" in shown["display"]
        assert "Refund | Tap your card" in vb.press("R#")[-1]
        shown = vb.tap(alice)
        assert shown["buzzer"] == "ok", shown
        assert "Refund  +15,000 Rial" in shown["display"] and "100,000 Rial" in shown["display"]
        vb.press("R#")
        shown = vb.tap(alice)  # once: the newest record is the refund now
        assert shown["buzzer"] == "refused" and "No sale to refund" in shown["display"]
        shown = vb.tap(bob)  # the refund is still asked: bob's sale goes back
        assert shown["buzzer"] == "ok" and "+4,000 Rial" in shown["display"]
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    a = _show(ks, alice)
    assert a["balance"] == 100000
    assert [
        (t["kind"], t["amount"], t["balance_after"], t["profile"]) for t in a["trips"][:2]
    ] == [
        ("refund", 15000, 100000, 4),
        ("debit", 15000, 85000, 4),
    ]
    assert a["trips"][0]["counter"] == a["trips"][1]["counter"] + 1
    assert _show(ks, bob)["balance"] == 100000
    assert [(r["uid"], r["kind"], r["amount"], r["balance"], r["counter"]) for r in recs] == [
        (alice_uid, "charge", 15000, 85000, a["trips"][1]["counter"]),
        (bob_uid, "charge", 4000, 96000, recs[1]["counter"]),
        (alice_uid, "refund", 15000, 100000, a["trips"][0]["counter"]),
        (bob_uid, "refund", 4000, 100000, recs[1]["counter"] + 1),
    ]
    db = "sqlite:///%s" % (tmp_path / "taps.db")
    rc, rep, err = run_cli(
        capsys, "report", "--db", db, "--keystore", str(keystore_path), "--json"
    )
    assert rc == 0, err
    # the sales are confirmed by the refunds (they read the card in the state each sale left);
    # the refunds are the newest: confirmed once a confirm record or a later tap shows them
    unc = rep["unconfirmed"]
    assert rep["charges"] == 2 and rep["refunded"] - unc["amount"] == 19000
    assert rep["revenue"] + unc["amount"] == 0 and unc["amount"] in (0, -19000)
    assert rep["reconciliation"]["balance_breaks"] == []
    assert [c["charged"] + c["unconfirmed"] for c in rep["cards"]] == [0, 0]


def test_taxi_fare_from_the_taximeter_line(tmp_path, capsys, keystore_path, ks):
    """The taximeter sends `FARE 123000` over its line (the virtual board: the key channel); the
    driver splits it over two cards on the keypad."""
    cards = [_issue(tmp_path, ks, "m%d" % i, citizen_host.HOLDER_ADULT, 100000) for i in range(2)]
    vb = _board(tmp_path, ks, 4101, 5, profile="taxi")
    try:
        assert "Fare 123,000 Rial" in vb.press("FARE 123000\n")[-1]
        assert "Fare 123,000 Rial 1/2" in vb.press("B2")[-1]
        shown = [vb.tap(c) for c, _ in cards]
        assert all(s["buzzer"] == "ok" for s in shown), shown
        assert "-61,500 Rial" in shown[0]["display"] and "-61,500 Rial" in shown[1]["display"]
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    assert [_show(ks, c)["balance"] for c, _ in cards] == [38500, 38500]
    assert [(r["uid"], r["profile"], r["amount"]) for r in recs] == [
        (cards[0][1], "taxi", 61500),
        (cards[1][1], "taxi", 61500),
    ]
