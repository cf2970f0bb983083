"""A stolen terminal's keys (issue "Stolen terminal"): keys.json holds the issuer's debit master key, so
with it a card with a random UID and 2,000,000,000 Rial was made on the emulator and the back office
listed it as a normal card. The card office journals every issue and top-up (office 9001 here), so
the back office flags such a card within one sync: a minted finding, with the money.

The real firmware on the virtual board (MicroPython VM, 112 KB heap), a real USB sync, the audit."""

import os
import time

from host_tools import keystore
from host_tools.backoffice import audit, denylist
from host_tools.backoffice.store import open_store
from host_tools.cardoffice.journal import OfficeJournal
from host_tools.fleet import sync
from host_tools.fleet.link import SerialLink
from host_tools.sim.virtual import deploy_virtual, new_emulated_card

TID = 1301


def test_a_card_minted_with_the_stolen_debit_key_is_flagged_within_one_sync(
    tmp_path, keystore_path, office_journal
):
    from emulator.vboard import VirtualBoard

    ks = keystore.load(str(keystore_path))
    office = OfficeJournal.open(office_journal, ks)  # office 9001 (tests/e2e/conftest.py)
    now = int(time.time())
    genuine = str(tmp_path / "genuine.card")
    new_emulated_card(genuine, ks, card_no=1, balance=100000, now=now, journal=office)
    # what the thief holds: keys.json of one terminal (the debit master key); every other issuer
    # key is made up
    stolen = dict(ks, keys={r: os.urandom(16) for r in ks["keys"]})
    stolen["keys"]["debit"] = keystore.master_key(ks, "debit")
    stolen["sign"] = keystore.new_sign_key()  # the issuer's signing key is not on a terminal
    minted = str(tmp_path / "minted.card")
    uid = new_emulated_card(minted, stolen, card_no=7, balance=2_000_000_000, now=now).hex()

    state = tmp_path / "bus"
    (state / "fs").mkdir(parents=True)
    deploy_virtual(str(state / "fs"), ks, TID, fare=25000, line=3)
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
    assert [(f["uid"], f["amount"]) for f in found] == [(uid, 2_000_000_000 - 25000)]
    assert "never issued by an office" in found[0]["detail"]["text"]
    assert proposed == [uid]  # the deny-list entry: only the minted card
