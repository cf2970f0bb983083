"""The bus profile end to end: signed fare tables and deny lists on two virtual bus terminals (firmware
on the MicroPython VM, 112 KB heap), emulated cards issued with the card office's library; the card's
balance, its trip log and the synced journal records must agree."""

import time

import pytest

from card_schema import citizen_host
from card_schema.desfire_admin import DESFireAdmin
from host_tools import keystore
from host_tools.backoffice.store import open_store
from host_tools.cardoffice import cardops
from host_tools.cardoffice.readers import EmulatorReader
from host_tools.sim.virtual import deploy_virtual, new_emulated_card

from e2e_helpers import sync_json

FARES = {
    "fares": {"7": 25000, "12": 30000},
    "conc": [100, 50, 30, 0],
    "transfer": {"window": 3600, "pct": 50},
    "repeat": 60,
}


def _issue(tmp_path, ks, name, holder, balance):
    path = str(tmp_path / (name + ".card"))
    now = int(time.time())
    uid = new_emulated_card(
        path, ks, holder=holder, card_no=1, expiry=now + 86400 * 365, balance=balance, now=now
    )
    return path, bytes(uid).hex()


def _show(ks, path):
    with EmulatorReader(path) as r:
        return cardops.show(DESFireAdmin(r.transceive), ks, r.uid)


def _board(tmp_path, ks, tid, line, **over):
    from emulator.vboard import VirtualBoard

    state = tmp_path / ("t%d" % tid)
    fs = state / "fs"
    fs.mkdir(parents=True)
    deploy_virtual(str(fs), ks, tid, line=line, **over)
    vb = VirtualBoard(str(state))
    vb.start()
    return vb


def _journal(capsys, vb, keystore_path, tmp_path):
    db = "sqlite:///%s" % (tmp_path / "taps.db")
    rc, _, err = sync_json(capsys, vb.port, keystore_path, db)
    assert rc == 0, err
    with open_store(db) as st:
        recs = st.taps()
    # every charge is confirmed by a later CONFIRM naming its seq (the card's commit answer)
    confirmed = {r["amount"] for r in recs if r["kind"] == "confirm"}
    assert all(r["seq"] in confirmed for r in recs if r["kind"] == "charge"), recs
    return [r for r in recs if r["kind"] != "confirm"]


@pytest.fixture
def cards(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    return ks, {
        "adult": _issue(tmp_path, ks, "adult", citizen_host.HOLDER_ADULT, 100000),
        "student": _issue(tmp_path, ks, "student", citizen_host.HOLDER_STUDENT, 100000),
        "listed": _issue(tmp_path, ks, "listed", citizen_host.HOLDER_ADULT, 100000),
        "stolen": _issue(tmp_path, ks, "stolen", citizen_host.HOLDER_ADULT, 100000),
    }


def test_bus_fares_transfer_repeat_and_deny_list(tmp_path, capsys, keystore_path, cards):
    ks, c = cards
    deny = {c["listed"][1]: "refuse", c["stolen"][1]: "block"}
    bus7 = _board(tmp_path, ks, 1001, 7, fares=FARES, deny=deny, tariff_ver=3, deny_ver=9)
    bus12 = _board(tmp_path, ks, 1002, 12, fares=FARES, tariff_ver=3, unit="toman")
    try:
        # line 12 first (full fare, shown in Toman), then line 7 within the window: transfer
        shown = bus12.tap(c["adult"][0])
        assert shown["buzzer"] == "ok"
        assert "3,000 Toman" in shown["display"] and "7,000 Toman" in shown["display"]
        shown = bus7.tap(c["adult"][0])
        assert shown["buzzer"] == "ok"
        assert "-12,500 Rial" in shown["display"] and "57,500 Rial" in shown["display"]
        # the rider taps again: recognised, not charged twice
        shown = bus7.tap(c["adult"][0])
        assert shown["buzzer"] == "ok"
        assert "Already paid" in shown["display"] and "57,500" in shown["display"]

        shown = bus7.tap(c["student"][0])
        assert "-12,500 Rial" in shown["display"]

        shown = bus7.tap(c["listed"][0])
        assert shown["buzzer"] == "refused"
        assert "Card not allowed" in shown["display"]
        shown = bus7.tap(c["stolen"][0])
        assert shown["buzzer"] == "refused"
        assert "Card not allowed" in shown["display"]
        # the blocked mark travels with the card: a terminal without the list refuses it too
        shown = bus12.tap(c["stolen"][0])
        assert shown["buzzer"] == "refused"
        assert "Card blocked" in shown["display"]

        recs = _journal(capsys, bus7, keystore_path, tmp_path)
    finally:
        bus7.stop()
        bus12.stop()

    adult = _show(ks, c["adult"][0])
    assert adult["balance"] == 57500
    assert [(t["terminal"], t["amount"], t["line"], t["flags"]) for t in adult["trips"][:2]] == [
        (1001, 12500, 7, 1),  # the transfer flag: the next change is full fare
        (1002, 30000, 12, 0),
    ]
    assert _show(ks, c["student"][0])["balance"] == 87500
    listed = _show(ks, c["listed"][0])
    assert listed["balance"] == 100000 and listed["trips"][0]["kind"] == "credit"
    stolen = _show(ks, c["stolen"][0])
    assert stolen["balance"] == 100000
    assert stolen["trips"][0]["flags"] == 0x80 and stolen["trips"][0]["amount"] == 0

    by_uid = {}
    for r in recs:
        by_uid.setdefault(r["uid"], []).append(r)
    assert all(r["tariff_ver"] == 3 and r["deny_ver"] == 9 for r in recs)
    (a,) = by_uid[c["adult"][1]]  # one record: the repeat tap journals nothing
    assert (a["kind"], a["amount"], a["balance"], a["counter"], a["line"]) == (
        "charge",
        12500,
        57500,
        adult["counter"],
        7,
    )
    (s,) = by_uid[c["student"][1]]
    assert (s["kind"], s["amount"], s["balance"]) == ("charge", 12500, 87500)
    (lr,) = by_uid[c["listed"][1]]
    assert (lr["kind"], lr["result"], lr["counter"]) == ("denied", "deny-list", listed["counter"])
    (sr,) = by_uid[c["stolen"][1]]
    assert (sr["kind"], sr["result"], sr["counter"], sr["balance"]) == (
        "denied",
        "deny-list",
        stolen["counter"],
        100000,
    )


def test_forged_fare_table_is_never_used(tmp_path, capsys, keystore_path, cards):
    ks, c = cards
    state = tmp_path / "forged"
    fs = state / "fs"
    fs.mkdir(parents=True)
    deploy_virtual(str(fs), ks, 1003, line=7, fares=FARES)
    from emulator import lfsimage

    img = str(state / "fs.img")
    blob = bytearray(lfsimage.read_file(img, "/fares.bin"))
    blob[20] ^= 0x01  # one bit of the table changed after signing
    lfsimage.write_files(img, {"/fares.bin": bytes(blob)})
    from emulator.vboard import VirtualBoard

    vb = VirtualBoard(str(state))
    vb.start()
    try:
        shown = vb.tap(c["adult"][0])
        log = "\n".join(vb.lines())
    finally:
        vb.stop()
    assert shown["buzzer"] == "error"
    assert "Out of service" in shown["display"] and "No valid fare table" in shown["display"]
    assert "fares.bin: ValueError bad signature" in log
    assert _show(ks, c["adult"][0])["balance"] == 100000


def test_tables_installed_over_serial_apply_from_the_next_tap(
    tmp_path, capsys, keystore_path, cards
):
    from host_tools.fleet import tables
    from host_tools.fleet.link import LinkError, SerialLink

    ks, c = cards
    vb = _board(tmp_path, ks, 1004, 7, fares=FARES, tariff_ver=3)
    try:
        assert "-25,000 Rial" in vb.tap(c["adult"][0])["display"]
        with SerialLink(vb.port) as link:
            link.key = keystore.terminal_key(ks, 1004)  # INSTALL is a control: tagged
            link.identify()
            assert link.install(tables.fares_blob(ks, 1004, 4, dict(FARES, default=1))) == (
                1,
                4,
            )
            cheaper = dict(FARES, fares={"7": 20000})
            forged = bytearray(tables.fares_blob(ks, 1004, 5, cheaper))
            forged[-1] ^= 1
            with pytest.raises(LinkError, match="bad signature"):
                link.install(bytes(forged))
            assert link.install(tables.deny_blob(ks, 1004, 2, {c["listed"][1]: "refuse"}))
            assert link.install(tables.fares_blob(ks, 1004, 6, cheaper)) == (1, 6)
        shown = vb.tap(c["student"][0])
        assert "-10,000 Rial" in shown["display"]  # table 6: 20,000, student half
        assert "Card not allowed" in vb.tap(c["listed"][0])["display"]
        recs = _journal(capsys, vb, keystore_path, tmp_path)
    finally:
        vb.stop()
    assert [(r["amount"], r["tariff_ver"], r["deny_ver"]) for r in recs] == [
        (25000, 3, 0),
        (10000, 6, 2),
        (0, 6, 2),
    ]
