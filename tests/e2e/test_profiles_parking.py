"""The parking meter end to end on the virtual board: tap in writes the session to the card, the
terminal clock moves on (SET_CLOCK over the USB serial, as a sync would), tap out pays by duration;
a session left open in another zone is closed at that zone's cap."""

import time

from card_schema import citizen_host
from host_tools import keystore
from host_tools.fleet.link import SerialLink

from test_profiles_bus import _board, _issue, _journal, _show

RULE = {"grace": 10, "steps": [[60, 20000], [120, 50000]], "hourly": 30000, "cap": 200000}
TABLE = {"zones": {"1": RULE, "2": dict(RULE, cap=120000)}, "repeat": 30}


def _set_clock(board, ks, unix):
    """SET_CLOCK as `tapkit sync` sends it: tagged with the terminal's key over its nonce."""
    with SerialLink(board.port) as link:
        link.key = keystore.terminal_key(ks, link.identify()["terminal_id"])
        link.identify()
        link.set_clock(unix)


def test_parking_tap_in_tap_out_and_other_zone(tmp_path, capsys, keystore_path):
    ks = keystore.load(str(keystore_path))
    car, uid = _issue(tmp_path, ks, "car", citizen_host.HOLDER_STUDENT, 500000)
    zone1 = _board(tmp_path, ks, 7001, 0, profile="parking", zone=1, fares=TABLE)
    zone2 = _board(tmp_path, ks, 7002, 0, profile="parking", zone=2, fares=TABLE)
    try:
        t0 = int(time.time())
        _set_clock(zone1, ks, t0)
        shown = zone1.tap(car)
        assert shown["buzzer"] == "ok" and "Parking started" in shown["display"]
        assert "Already paid" in zone1.tap(car)["display"]  # a second tap at once is no tap out
        _set_clock(zone1, ks, t0 + 95 * 60 + 5)  # 95 minutes later
        shown = zone1.tap(car)
        assert shown["buzzer"] == "ok"
        assert "Parked 95 min  -50,000 Rial" in shown["display"]  # no concession on parking
        assert "450,000" in shown["display"]

        shown = zone2.tap(car)  # parks in zone 2, drives off without tapping out...
        assert "Parking started" in shown["display"]
        shown = zone1.tap(car)  # ...and taps at a zone 1 meter: zone 2's cap closes it
        assert "-120,000 Rial" in shown["display"]
        recs = _journal(capsys, zone1, keystore_path, tmp_path)
    finally:
        zone1.stop()
        zone2.stop()
    after = _show(ks, car)
    assert after["balance"] == 330000
    assert [(t["terminal"], t["zone"], t["amount"], t["flags"]) for t in after["trips"][:4]] == [
        (7001, 1, 120000, 0),
        (7002, 2, 0, 2),
        (7001, 1, 50000, 0),
        (7001, 1, 0, 2),
    ]
    assert [(r["uid"], r["profile"], r["zone"], r["amount"], r["duration"]) for r in recs] == [
        (uid, "parking", 1, 0, 0),
        (uid, "parking", 1, 50000, 95),
        (uid, "parking", 1, 120000, recs[2]["duration"]),
    ]
    assert recs[2]["counter"] == after["counter"] and recs[2]["balance"] == 330000


def test_parking_prepaid_hour_then_overstay(tmp_path, capsys, keystore_path):
    """Prepaid minutes: tap in pays the prepaid hour up front; leaving early refunds nothing, an
    overstay pays the rest of the session's charge."""
    ks = keystore.load(str(keystore_path))
    car, uid = _issue(tmp_path, ks, "car", citizen_host.HOLDER_ADULT, 100000)
    early, early_uid = _issue(tmp_path, ks, "early", citizen_host.HOLDER_ADULT, 100000)
    table = {"zones": {"1": dict(RULE, prepaid=60)}, "repeat": 30}
    meter = _board(tmp_path, ks, 7011, 0, profile="parking", zone=1, fares=table)
    try:
        t0 = int(time.time())
        _set_clock(meter, ks, t0)
        shown = meter.tap(car)
        assert shown["buzzer"] == "ok" and "Parking started  -20,000 Rial" in shown["display"]
        assert "80,000" in shown["display"]
        assert "Parking started  -20,000 Rial" in meter.tap(early)["display"]
        _set_clock(meter, ks, t0 + 20 * 60 + 5)
        shown = meter.tap(early)  # left after 20 minutes: nothing back, nothing more
        assert shown["buzzer"] == "ok" and "Parked 20 min  -0 Rial" in shown["display"]
        _set_clock(meter, ks, t0 + 95 * 60 + 5)
        shown = meter.tap(car)  # 95 minutes: 50,000 by the rule, 20,000 of it prepaid
        assert "Parked 95 min  -30,000 Rial" in shown["display"] and "50,000" in shown["display"]
        recs = _journal(capsys, meter, keystore_path, tmp_path)
    finally:
        meter.stop()
    assert _show(ks, car)["balance"] == 50000
    assert _show(ks, early)["balance"] == 80000
    assert [(r["uid"], r["amount"], r["duration"]) for r in recs] == [
        (uid, 20000, 0),
        (early_uid, 20000, 0),
        (early_uid, 0, 20),
        (uid, 30000, 95),
    ]
