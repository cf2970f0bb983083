"""A stolen terminal's keys (issue "Stolen terminal"): keys.json holds the issuer's debit master key, so
with it a card with a random UID and 2,000,000,000 Rial was made on the emulator and every terminal
charged it. Now every card carries the issuer's RSA signature over its UID and its ceiling (what the
card office put on it; card_schema/issuersig.py), made with a key only the office's keystore holds;
the terminal holds the public key, checks the signature on a card's first tap and refuses a card
without a valid one, or with a balance above its ceiling, charging nothing. Where a terminal still
lets unsigned cards ride (require_issuer_sig off, while an old fleet is signed), the card office's
journal (office 9001 here) makes the back office flag a minted card within one sync.

The real firmware on the virtual board (MicroPython VM, 112 KB heap), real card-office operations
on emulated cards, a real USB sync, the audit."""

import os
import time

from card_schema import citizen, citizen_host, issuersig_host
from card_schema.desfire_admin import MODE_ENC, MODE_MAC, DESFireAdmin
from emulator.card import DESFireCard
from harness.boards import tap_stats
from host_tools import keystore
from host_tools.backoffice import audit, denylist, report
from host_tools.backoffice.store import open_store
from host_tools.cardoffice import cardops
from host_tools.cardoffice.journal import OfficeJournal
from host_tools.cardoffice.readers import EmulatorReader
from host_tools.fleet import sync
from host_tools.fleet.link import SerialLink
from host_tools.sim.virtual import deploy_virtual, new_emulated_card

TID = 1301
FARE = 25000


def _thief(ks):
    """What the thief holds: keys.json of one terminal (the debit master key and the issuer's
    public key); every other issuer key, and the signing key, is the thief's own."""
    stolen = dict(ks, keys={r: os.urandom(16) for r in ks["keys"]})
    stolen["keys"]["debit"] = keystore.master_key(ks, "debit")
    stolen["sign"] = keystore.new_sign_key()
    return stolen


def _on_card(path, ks, role, fn):
    """Run fn(df) on the card at `path`, authenticated with `role`'s key of keystore `ks`."""
    with EmulatorReader(str(path)) as r:
        df = DESFireAdmin(r.transceive)
        df.select_application(citizen.AID)
        key_no = citizen_host.ROLE_NAMES.index(role)
        df.authenticate_aes(key_no, keystore.card_key(ks, role, r.uid))
        return fn(df)


def _balance(path):
    return DESFireCard.load(str(path)).value(citizen.AID, citizen.FILE_PURSE)


def test_keys_on_a_terminal_cannot_mint_value(tmp_path, keystore_path, office_journal):
    from emulator.vboard import VirtualBoard

    ks = keystore.load(str(keystore_path))
    office = OfficeJournal.open(office_journal, ks)
    now = int(time.time())
    genuine, raised = str(tmp_path / "genuine.card"), str(tmp_path / "raised.card")
    new_emulated_card(genuine, ks, card_no=1, balance=100000, now=now, journal=office)
    new_emulated_card(raised, ks, card_no=2, balance=50000, now=now, journal=office)
    stolen = _thief(ks)
    # 1. minted with the stolen debit key: random UID, 2,000,000,000 Rial, the thief's signature
    minted = str(tmp_path / "minted.card")
    new_emulated_card(minted, stolen, card_no=7, balance=2_000_000_000, now=now)
    # 2. the same without a signature file at all
    bare = str(tmp_path / "bare.card")
    new_emulated_card(bare, stolen, card_no=8, balance=2_000_000_000, now=now)
    _on_card(bare, stolen, "master", lambda df: df.delete_file(issuersig_host.FILE_SIG))
    # 3. the genuine card's signature (read with the stolen debit key) copied onto a minted card
    sig = _on_card(
        genuine, stolen, "debit", lambda df: df.read_data(issuersig_host.FILE_SIG, 0, 0, MODE_MAC)
    )
    copied = str(tmp_path / "copied.card")
    new_emulated_card(copied, stolen, card_no=9, balance=100000, now=now)
    _on_card(
        copied,
        stolen,
        "master",
        lambda df: df.write_data(issuersig_host.FILE_SIG, 0, sig, MODE_MAC),
    )

    # 4. a genuine card given 1,000,000 Rial more with the credit key, behind the office's back
    def credit(df):
        df.credit(citizen.FILE_PURSE, 1_000_000, MODE_ENC)
        df.commit_transaction()

    _on_card(raised, ks, "credit", credit)

    state = tmp_path / "bus"
    (state / "fs").mkdir(parents=True)
    deploy_virtual(str(state / "fs"), ks, TID, fare=FARE, line=3, repeat=0)
    db = open_store("sqlite:///%s" % (tmp_path / "taps.db"))
    try:
        with VirtualBoard(str(state)) as vb:
            first = vb.tap(genuine)
            cached = vb.tap(genuine)
            shown = {p: vb.tap(p)["display"] for p in (minted, bare, copied, raised)}
            # the office tops the genuine card up: its new ceiling is checked on the next tap
            with EmulatorReader(genuine) as r:
                cardops.topup(DESFireAdmin(r.transceive), ks, r.uid, 900000, journal=office)
            after_topup = vb.tap(genuine)
            with SerialLink(vb.port, timeout=2) as link:
                sync.sync_terminal(link, db, ks)
        office.sync_into(db)
        audit.run(db, audit.keys_from(ks))
        reasons = report.refused_by_reason(db)
    finally:
        db.close()
    print("first tap", tap_stats(first), "cached", tap_stats(cached))
    assert "OK  -25,000" in first["display"] and "OK  -25,000" in cached["display"]
    assert tap_stats(first)["apdus"] == tap_stats(cached)["apdus"] + 5  # ReadData 0x05 in 5 frames
    for p in (minted, bare, copied):
        assert shown[p] == "DISPLAY| Card not issued | See the card office", p
    assert shown[raised] == "DISPLAY| Balance not valid | See the card office"
    # nothing charged
    assert [_balance(p) for p in (minted, bare, copied, raised)] == [
        2_000_000_000,
        2_000_000_000,
        100000,
        1_050_000,
    ]
    assert "Balance 925,000 Rial" in after_topup["display"]  # 50,000 + 900,000 - 25,000
    # checked again (and the trip log read further: its newest record is the top-up)
    assert tap_stats(after_topup)["apdus"] >= tap_stats(cached)["apdus"] + 5
    assert reasons == {"not-issued": 3, "over-ceiling": 1}  # the report and dashboard show them


def test_a_card_minted_with_the_stolen_debit_key_is_flagged_within_one_sync(
    tmp_path, keystore_path, office_journal
):
    """A terminal still letting unsigned cards ride (require_issuer_sig off): the thief's card
    has no signature file; it rides, and the back office flags it at the first sync."""
    from emulator.vboard import VirtualBoard

    ks = keystore.load(str(keystore_path))
    office = OfficeJournal.open(office_journal, ks)  # office 9001 (tests/e2e/conftest.py)
    now = int(time.time())
    genuine = str(tmp_path / "genuine.card")
    new_emulated_card(genuine, ks, card_no=1, balance=100000, now=now, journal=office)
    stolen = _thief(ks)
    minted = str(tmp_path / "minted.card")
    uid = new_emulated_card(minted, stolen, card_no=7, balance=2_000_000_000, now=now).hex()
    _on_card(minted, stolen, "master", lambda df: df.delete_file(issuersig_host.FILE_SIG))

    state = tmp_path / "bus"
    (state / "fs").mkdir(parents=True)
    deploy_virtual(str(state / "fs"), ks, TID, fare=FARE, line=3, require_issuer_sig=False)
    db = open_store("sqlite:///%s" % (tmp_path / "taps.db"))
    try:
        with VirtualBoard(str(state)) as vb:
            assert vb.tap(genuine)["buzzer"] == "ok"
            shown = vb.tap(minted)
            with SerialLink(vb.port, timeout=2) as link:
                sync.sync_terminal(link, db, ks)  # the one sync
        office.sync_into(db)
        audit.run(db, audit.keys_from(ks))
        found = [f for f in audit.findings(db) if f["kind"] == "minted"]
        proposed = denylist.proposal(db)["new"]  # `tapkit clones --publish` lists it
    finally:
        db.close()
    print("the minted card at the terminal:", shown["display"])
    assert "OK  -25,000" in shown["display"]
    assert [(f["uid"], f["amount"]) for f in found] == [(uid, 2_000_000_000 - FARE)]
    assert "never issued by an office" in found[0]["detail"]["text"]
    assert proposed == [uid]  # the deny-list entry: only the minted card
