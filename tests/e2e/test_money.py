"""Every rial: the findings of the issue, each as the scenario that showed it, on the real firmware
(a virtual bus, flat fare 25,000 Rial) with the emulator's hooks at the card and the PN532, and the
campaign that proves the promise over seeded cases (harness/money.py; `make bench` runs 10,000+).

What each asserts is what a rider and an operator see: the card's balance and trip log, the lines
on the display, the records the back office gets and what its ledger counts."""

import json
import os

import pytest

from card_schema import citizen, citizen_host
from card_schema.desfire_admin import DESFireAdmin
from e2e_helpers import run_cli
from harness import money
from harness.legacy import make_legacy
from host_tools.cardoffice import cardops
from host_tools.fleet.link import SerialLink

FARE = money.FARE


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = money.Run(20261, "bus", str(tmp_path_factory.mktemp("money") / "bus")).start()
    yield r
    r.stop()


@pytest.fixture
def fresh(run):
    """New riders for one test, outside the repeat window of the others; no message untrue."""
    run.jump(300)
    del run.failures[:]
    yield lambda holder="adult", **kw: money._Intent(run.new_card(holder, **kw), money.TERMINAL)
    assert run.failures == []


def _mine(recs, card):
    uid = bytes(card.uid).hex()
    return [r for r in recs if r["uid"] == uid]


def _named(recs, seq):
    return [
        (r["kind"], r["result"])
        for r in recs
        if r["kind"] in ("confirm", "void") and r["amount"] == seq
    ]


def _charge(run, recs, card, n=-1):
    return [r for r in _mine(recs, card) if r["kind"] == "charge"][n]


def _paid(card):
    return 10**9 - money._state(card)[0]


def test_a_cut_just_before_the_commit_is_no_revenue_then_void_when_the_card_returns(run, fresh):
    a = fresh()
    run._try("cut", a, ("cut-before", 8, 0, 0, 0))  # journalled, CommitTransaction never sent
    assert run.killed
    run.vb.field.remove()
    run.restart()
    recs = run.records()
    c = _charge(run, recs, a.card)
    assert _named(recs, c["seq"]) == [] and _paid(a.card) == 0
    led = money.ledger(recs)
    assert (c["uid"], c["counter"]) in led["pending"]  # listed unconfirmed, not revenue
    assert led["cards"].get(c["uid"], {}).get("revenue", 0) == 0
    run._try("back", a)  # the rider returns: the trip log says no commit: void, then one charge
    recs = run.records()
    assert _named(recs, c["seq"]) == [("void", "trip-log")]
    assert money.ledger(recs)["cards"][c["uid"]]["revenue"] == FARE == _paid(a.card)
    assert a.changes == 1


@pytest.mark.parametrize("cut", ["cut-after", "cut-ok"])
def test_a_card_resting_on_the_reader_across_a_power_cut_is_not_charged_again(run, fresh, cut):
    a = fresh()
    mark = run.vb.mark()
    run._try("cut", a, (cut, 8, 0, 0, 0), hold=True)  # committed; the power goes
    assert run.killed
    run.restart()  # the card never left: the terminal sees it as it boots
    reset = mark + run.vb.lines(mark).index("RESET| power cut")
    run._wait(reset, "STAT|", 20)
    lines = run.vb.lines(reset)
    beep = next(ln for ln in lines if ln.startswith("BUZZER|"))
    shown = [ln for ln in lines[: lines.index(beep)] if ln.startswith("DISPLAY|")][-1]
    run.vb.field.remove()
    run.vb.remove()
    assert _paid(a.card) == FARE  # charged once
    assert beep == "BUZZER|ok" and ("OK" in shown or "Already paid" in shown)
    recs = run.records()
    c = _charge(run, recs, a.card)
    assert len([r for r in _mine(recs, a.card) if r["kind"] == "charge"]) == 1
    assert _named(recs, c["seq"]) in ([("confirm", "trip-log")], [("confirm", "commit-answer")])


def test_a_damaged_commit_answer_is_checked_on_the_card_never_tap_again(run, fresh):
    a = fresh()
    shown = run._try("damaged", a, ("damaged", 8, 3, 4, 0), hold=True)  # committed, answer bad
    run.vb.field.remove()
    run.vb.remove()
    lines = " / ".join(run.shown)
    assert "Checking - | keep the card on the reader" in lines and "tap again" not in lines
    assert shown[1] == "ok" and "OK  -25,000 Rial" in shown[0]
    assert _paid(a.card) == FARE and a.changes == 1
    recs = run.records()
    assert _named(recs, _charge(run, recs, a.card)["seq"]) == [("confirm", "trip-log")]


def test_a_lost_answer_with_the_card_pulled_is_pending_and_the_next_tap_does_not_charge(
    run, fresh
):
    a = fresh()
    shown = run._try("lost", a, ("lost", 8, 0, 0, 0), pull=True)  # committed, answer lost, gone
    assert shown == ("DISPLAY| Not confirmed yet | Tap the card to check", "error")
    assert _paid(a.card) == FARE
    shown = run._try("back", a)
    assert shown[1] == "ok" and "OK  -25,000 Rial" in shown[0]  # resolved from the trip log
    assert _paid(a.card) == FARE and a.changes == 1


def test_a_commit_that_never_reached_the_card_is_pending_not_no_charge(run, fresh):
    a = fresh()
    shown = run._try("drop", a, ("drop", 8, "before", 0, 0), pull=True)  # the card never got it
    assert "No charge" not in shown[0] and "Not confirmed yet" in shown[0]
    recs = run.records()
    c = _charge(run, recs, a.card)
    assert _named(recs, c["seq"]) == [] and _paid(a.card) == 0
    run._try("back", a)
    recs = run.records()
    assert _named(recs, c["seq"]) == [("void", "trip-log")] and _paid(a.card) == FARE


def test_a_commit_frame_never_sent_is_voided_at_once_and_says_no_charge_is_true(run, fresh):
    a = fresh()
    shown = run._try("unlisted", a, ("unlisted", 7, 0, 0, 0))  # the chip lost the card: no send
    assert shown == ("DISPLAY| Card removed | Please tap again", "error")
    recs = run.records()
    c = _charge(run, recs, a.card)
    assert _named(recs, c["seq"]) == [("void", "not-sent")] and _paid(a.card) == 0


@pytest.mark.parametrize("fault", [("lost", 8, 0, 0, 0), ("drop", 8, "before", 0, 0)])
def test_the_next_rider_does_not_wipe_a_pending_charge(run, fresh, fault):
    a, b = fresh(), fresh("student")
    run._try("fault", a, fault, pull=True)
    run._try("other rider", b)
    assert _paid(b.card) == FARE // 2  # a student pays half the flat fare
    shown = run._try("back", a)
    assert shown[1] == "ok" and a.changes == 1 and _paid(a.card) == FARE


def _relay_on_card_info(offset, value):
    """A man in the middle rewriting one byte of the card-info answer (ReadData of file 1)."""

    def relay(frame, answer):
        if frame[:2] == b"\xbd\x01" and answer and answer[0] == 0 and len(answer) > offset + 1:
            answer = bytearray(answer)
            answer[1 + offset] = value
            answer = bytes(answer)
        return answer

    return relay


@pytest.mark.parametrize(
    "case,offset,value",
    [("adult to staff (free)", 1, 3), ("blocked to active", 2, 0), ("expiry extended", 31, 0x7F)],
)
def test_card_info_rewritten_by_a_relay_is_never_acted_on(run, fresh, case, offset, value):
    kw = {"expiry": 1000} if "expiry" in case else {}
    a = fresh(**kw)
    if "blocked" in case:
        df = DESFireAdmin(a.card.card.transceive)
        cardops.block(df, run.ks, a.card.uid)
        a.card.card.field_off()
    a.card.relay = _relay_on_card_info(offset, value)
    try:
        shown = run._try(case, a)
    finally:
        a.card.relay = None
    assert shown == ("DISPLAY| Card error | Please tap again", "error")  # the MAC failed
    assert _paid(a.card) == 0
    recs = run.records()
    assert [r["kind"] for r in _mine(recs, a.card)] == []  # no free ride, no pass
    shown = run._try("without the relay", a)
    want = {"adult to staff (free)": "OK  -25,000", "blocked to active": "Card blocked"}
    assert want.get(case, "Card expired") in shown[0]


def test_a_sync_keeps_the_campaigns_clock_the_next_ride_is_charged(run, fresh):
    """The campaign moves the terminal's clock on (Run.jump) to put every intent outside the repeat
    windows; a sync sets the clock when it drifts, and with the host's own clock it put the terminal
    back behind every jump: the campaign's new rides were then "Already paid" or the OK of an earlier
    pending charge (2 "untrue messages" in 1,500 cases of the bench, right after its sync at case
    150)."""
    a = fresh()
    assert "-25,000" in run._try("a ride", a)[0]
    run.jump(200)  # the next ride: a new intent, outside the repeat window
    run.sync()
    with SerialLink(run.vb.port) as link:
        assert abs(link.identify()["clock"] - run.now()) <= 5  # was the host's: jumps behind
    b = money._Intent(a.card, money.TERMINAL)
    assert "-25,000" in run._try("the next ride, after a sync", b)[0]
    assert _paid(a.card) == 2 * FARE


def test_a_card_image_restored_to_an_older_state_is_refused_also_after_a_reboot(
    run, fresh, tmp_path, capsys
):
    a = fresh()
    old = a.card.card.to_json()  # the rider's copy of the card before the ride
    run._try("ride", a)
    assert _paid(a.card) == FARE
    a.card.card._restore(old)  # the card rolled back: the fare back on it
    n = money._state(a.card)[1]
    uid = bytes(a.card.uid).hex()
    run.history[uid] = {c: t for c, t in run.history[uid].items() if c <= n}  # what it holds now
    run.jump(300)
    for where in ("rollback", "rollback after a reboot"):
        before = money._state(a.card)
        shown = run._try(where, money._Intent(a.card, money.TERMINAL))  # a new tap of the copy
        assert shown == ("DISPLAY| Card not allowed | See the card office", "refused")
        assert money._state(a.card)[:2] == before[:2]
        run.restart()
    recs = run.records()
    assert [(r["kind"], r["result"]) for r in _mine(recs, a.card)][-2:] == [
        ("denied", "rollback"),
        ("denied", "rollback"),
    ]
    # the back office: a clone finding with the money lost, and its deny-list entry
    ks = tmp_path / "issuer.keys"
    ks.write_text(json.dumps({"version": 1, "issuer_id": 1, "keys": {
        k: v.hex() for k, v in run.ks["keys"].items()}}))  # fmt: skip
    db = "sqlite:///" + os.path.join(run.state_dir, "office.db")
    rc, out, err = run_cli(capsys, "clones", "--db", db, "--keystore", ks, "--json")
    assert rc == 0, err
    (mine,) = [c for c in out["cards"] if c["uid"] == uid]
    # nothing lost: the terminal refused the restored image before it rode (the ledger counts
    # what a copy spent elsewhere); not on the deny list yet, entries proposed, not automatic
    assert "went back" in mine["text"] and mine["lost"] == 0 and not mine["listed"]
    assert out["mode"] == "propose" and uid in out["new"]
    rc, out, err = run_cli(capsys, "clones", "--db", db, "--keystore", ks, "--publish", "--json")
    assert rc == 0 and out["published"] == 1
    rc, out, err = run_cli(capsys, "clones", "--db", db, "--keystore", ks, "--json")
    assert [c["listed"] for c in out["cards"] if c["uid"] == uid] == [True] and out["new"] == []
    rc, out, err = run_cli(
        capsys, "clones", "--db", db, "--keystore", ks, "--auto", "on", "--json"
    )
    assert rc == 0 and out["mode"] == "auto"  # from now on the audit publishes new ones itself


def test_flat_fare_concessions_and_the_repeat_window_also_across_a_reboot(run, fresh):
    s, o = fresh("student"), fresh("senior")
    assert "-12,500" in run._try("student", s)[0] and "-7,500" in run._try("senior", o)[0]
    assert run._try("again", s)[0].startswith("DISPLAY| Already paid")
    run.restart()
    assert run._try("again after a reboot", s)[0].startswith("DISPLAY| Already paid")
    assert _paid(s.card) == FARE // 2 and _paid(o.card) == FARE * 30 // 100


def test_the_other_rider_of_a_case_is_outside_the_windows_also_when_every_card_rode(run):
    """When every card but the rider had ridden within the campaign's window, the other rider was
    the next card anyway (one had ridden a second before: "Already paid" for a new intent)."""
    saved = dict(run.last_use)
    now = run.now()
    run.last_use = {i: now - 5 for i in range(money.CARDS)}
    run.last_use[3] = now - 1000  # the rider: the card that rode longest ago
    try:
        a, b = run.riders()
        assert a == 3 and b != a and run.now() - run.last_use[b] >= 130
    finally:
        run.last_use = saved


def test_a_card_issued_before_cards_were_signed_is_refused_until_it_is_secured(run, fresh):
    a = fresh()
    make_legacy(a.card.card)  # no issuer signature: require_issuer_sig (the default) refuses it
    shown = run._try("legacy card", a)
    assert shown == ("DISPLAY| Card not issued | See the card office", "refused")
    assert _paid(a.card) == 0
    df = DESFireAdmin(a.card.card.transceive)
    assert cardops.secure(df, run.ks, a.card.uid)["done"][:4] == [
        "card info rights",
        "inspection copy",
        "signature file",
        "issuer signature",
    ]
    a.card.card.field_off()
    run.jump(300)
    assert "-25,000" in run._try("secured card", a)[0]
    assert _paid(a.card) == FARE


@pytest.fixture(scope="module")
def pos(tmp_path_factory):
    r = money.Run(20262, "pos", str(tmp_path_factory.mktemp("money") / "pos")).start()
    yield r
    r.stop()


def _pos_sale(run, amount):
    return money._Intent(run.new_card(), money.TERMINAL, amount=amount)


def test_pos_a_cut_right_after_the_ok_then_the_sale_rung_again(pos):
    """Design (docs/architecture.md "The tap"): the POS has no repeat window of its own, but the
    terminal's rule covers it: the same amount rung again on the same card within the window
    (default 60 s) is not charged twice (the earlier OK, resolved from the card's trip log, or
    "Already paid"); another amount, or the same after the window, is a new sale rung and charged.
    Every message is true (the harness's judge) and the journal has one charge per sale charged."""
    pos.jump(300)
    del pos.failures[:]
    sale = _pos_sale(pos, 4)
    assert pos._try("sale", sale, ("cut-ok", 0, "before", 0, 0)) is None and pos.killed
    pos.vb.field.remove()
    pos.restart()
    shown = pos._try("rung again after the cut", sale)  # the same sale: the cashier retries it
    assert shown[1] == "ok" and ("OK  -4 Rial" in shown[0] or "Already paid" in shown[0])
    assert _paid(sale.card) == 4
    other = money._Intent(sale.card, money.TERMINAL, amount=7)  # another sale, at once
    assert "OK  -7 Rial" in pos._try("another sale", other)[0]
    pos.jump(120)  # the same amount, after the window: a new sale too
    again = money._Intent(sale.card, money.TERMINAL, amount=4)
    assert "OK  -4 Rial" in pos._try("the same amount later", again)[0]
    assert _paid(sale.card) == 15 and pos.failures == []
    recs = pos.records()
    charges = [r for r in _mine(recs, sale.card) if r["kind"] == "charge"]
    assert [c["amount"] for c in charges] == [4, 7, 4]
    led = money.ledger(recs)
    assert led["cards"][bytes(sale.card.uid).hex()]["revenue"] == 15


@pytest.mark.parametrize("where", ["bus", "pos"])
@pytest.mark.parametrize("frame", [5, 7])
def test_a_card_resting_on_the_reader_when_it_says_removed_is_charged_once(run, pos, where, frame):
    """The reader chip loses its target after frame `frame` (the next frame is never sent: PN532
    status 27) while the card rests on the reader: "Card removed" (true: nothing was committed; a
    commit frame never sent is voided at once), the terminal sees the card again and charges it
    once; lifted and put back within the same second, it is not charged again."""
    r = run if where == "bus" else pos
    r.jump(300)
    del r.failures[:]
    a = money._Intent(r.new_card(), money.TERMINAL, amount=3)
    fare = FARE if where == "bus" else 3
    r._keys(a)
    mark = r.vb.mark()
    shown = r.attempt(a.card, ("unlisted", frame, 0, 0, 0), hold=True)
    assert shown[0].startswith("DISPLAY| Card removed")
    first = mark + r.vb.lines(mark).index("BUZZER|error") + 1
    r._wait(first, "BUZZER|", 20)  # the card never left: the terminal taps it again
    r._wait(first + [ln[:7] for ln in r.vb.lines(first)].index("BUZZER|"), "STAT|", 20)
    r.vb.field.remove()
    r.vb.remove()
    assert _paid(a.card) == fare
    assert any(ln.startswith("DISPLAY| OK  -") for ln in r.vb.lines(mark))
    if where == "pos":
        r._keys(a)  # the cashier rings the same amount again
    assert r.attempt(a.card)[0].startswith("DISPLAY| Already paid")
    assert _paid(a.card) == fare


@pytest.fixture(scope="module")
def parking(tmp_path_factory):
    r = money.Run(20263, "parking", str(tmp_path_factory.mktemp("money") / "parking")).start()
    yield r
    r.stop()


def test_parking_a_tap_out_whose_ok_a_power_cut_took_opens_no_new_session(parking):
    """The 10,000-case bench's 2 double charges (parking, a timer cut at the tap out): the power
    went right after "Parked N min -fare", the driver tapped again and the meter opened a new
    session, which the next tap out anywhere would charge from then. Now a tap at the meter that
    closed the session within its repeat window is "Already paid"; and the campaign takes the car
    park's OK texts for an OK (it cuts at them, and a driver who saw one does not tap again)."""
    r = parking
    r.jump(300)
    del r.failures[:]
    a = money._Intent(r.new_card(), money.TERMINAL)
    assert r._try("tap in", a)[0].startswith("DISPLAY| Parking started")
    r.jump(120)  # outside the repeat window: the next tap is the tap out
    out = money._Intent(a.card, money.TERMINAL)
    assert r._try("tap out, cut at its OK", out, ("cut-ok", 0, "before", 0, 0)) is None
    assert r.killed and any(ln.startswith("DISPLAY| Parked") for ln in r.shown)
    r.vb.field.remove()
    r.restart()
    shown = r._try("the driver taps again", out)
    assert shown[1] == "ok" and ("Already paid" in shown[0] or "OK  -4,000" in shown[0])
    assert out.changes == 1 and r.failures == []
    last = money._state(a.card)[2]
    assert last[citizen.TR_AMOUNT] == 4000 and not last[10] & citizen_host.FLAG_OPEN


@pytest.mark.parametrize(
    "profile,cases", [("bus", 100), ("pos", 30), ("parking", 30), ("taxi", 20), ("charity", 20)]
)
def test_the_campaign_holds_the_promise(profile, cases):
    t = money.money_campaign(seed=7, cases=cases, profile=profile)
    assert t["cases"] == cases and t["cuts"] > cases // 4
    for k in ("phantom_charges", "double_charges", "unresolved", "ledger_minus_cards"):
        assert t[k] == 0, (k, t)
    assert t["untrue_messages"] == 0 and t["missed_charges"] == 0
    assert t["confirmed"] + t["voided"] == t["charges"]
