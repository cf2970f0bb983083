"""The per-card ledger across terminals and offices (host_tools/backoffice/ledger.py), through the
store and the report as an operator sees them: every scenario of the issue is flagged.

Cards, terminals and offices are real record chains (real keys from a keystore); the store is
SQLite and PostgreSQL."""

import io

import pytest
from rich.console import Console

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import audit, ledger
from host_tools.backoffice import report as report_mod
from host_tools.backoffice import store as store_mod
from host_tools.cli.app import main
from host_tools.cli.backoffice import render_report

T0 = 1700000000
FARE = 25000
CARD = bytes([4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x80])
UID = CARD.hex()
K = taprecord_host


@pytest.fixture
def ks(tmp_path):
    return keystore.init(str(tmp_path / "issuer.keys"))


@pytest.fixture
def store(store_url):
    s = store_mod.open_store(store_url)
    yield s
    s.close()


class Source:
    """A terminal's (or an office's) journal: records chained with its own key."""

    def __init__(self, ks, sid, role="terminal"):
        self.id, self.role = sid, role
        self.key = keystore.source_key(ks, sid, role)
        self.recs = []
        self.prev = taprecord.GENESIS_MAC

    def add(self, kind, t, counter=0, amount=0, balance=-1, result=0, uid=CARD):
        buf = bytearray(taprecord.SIZE)
        seq = len(self.recs) + 1
        self.prev = taprecord.pack_into(
            buf,
            self.prev,
            self.key,
            seq=seq,
            time=T0 + t,
            terminal=self.id,
            uid=uid,
            kind=kind,
            result=result,
            profile=9 if self.role == "office" else 1,
            counter=counter,
            amount=amount,
            balance=balance,
        )
        self.recs.append(bytes(buf))
        return seq

    def charge(self, t, counter, balance, amount=FARE):
        return self.add(taprecord.KIND_CHARGE, t, counter, amount, balance)

    def sync(self, store, info=None):
        got = store.last_seq(self.id)
        store.ingest(self.id, self.recs[got:], self.key, role=self.role)
        store.note_sync(
            self.id, info or {"unsynced": 0}, len(self.recs), via="usb", role=self.role
        )


def run(store, ks):
    rep = report_mod.report(store, audit.keys_from(ks))
    statuses = {
        (int(t), int(s)): st
        for t, s, st in store._all(
            "SELECT terminal, seq, status FROM taps WHERE kind IN "
            "('charge', 'refund', 'topup', 'payout', 'issue')"
        )
    }
    return rep, statuses


def text(rep):
    out = io.StringIO()
    render_report(rep, Console(file=out, width=400, color_system=None))
    return out.getvalue()


def test_a_top_up_no_longer_hides_a_missing_tap(store, ks, store_url, tmp_path, capsys):
    """The issue: a rider taps on 1002 (not synced), is topped up at the office, taps on 1001.
    With only 1001 and the office synced the old report said "no counter jumps" (6 -> 9 read as
    a top-up). Now counter 7 is a missing transaction that names 1002; the charge before it is
    unconfirmed (nothing proves the card left that state) and not in the revenue."""
    office, t1, t2 = Source(ks, 9001, "office"), Source(ks, 1001), Source(ks, 1002)
    office.add(K.KIND_ISSUE, 0, 1, 200000, 200000)
    office.add(K.KIND_CONFIRM, 1, 1, 1, 200000, K.RESULT_COMMIT_ANSWER)
    for i in range(5):  # counters 2..6 on terminal 1001
        t1.charge(600 + 60 * i, 2 + i, 200000 - FARE * (i + 1))
    t2.charge(2000, 7, 50000)  # counter 7 on terminal 1002
    seq = office.add(K.KIND_TOPUP, 3000, 8, 100000, 150000)
    office.add(K.KIND_CONFIRM, 3001, 8, seq, 150000, K.RESULT_COMMIT_ANSWER)
    t1.charge(4000, 9, 125000)
    office.sync(store)
    t1.sync(store)
    store.note_sync(1002, {"unsynced": 1}, 0, via="usb")  # 1002 said it holds a tap
    store._exec(  # its last contact was before the card's next tap
        "UPDATE terminals SET last_usb = ?, last_sync = ? WHERE id = 1002", (T0 + 1500, T0 + 1500)
    )
    rep, st = run(store, ks)
    (miss,) = rep["reconciliation"]["missing_transactions"]
    assert (miss["uid"], miss["counter_from"], miss["counter_to"]) == (UID, 7, 7)
    assert miss["amount"] == FARE  # the balance fell by 25,000 between counter 6 and 8
    assert miss["suspects"][0] == {
        "terminal": 1002,
        "last_seen": T0 + 1500,  # out of contact since before the card's next record
        "unsynced": 1,
        "silent": True,
    }
    assert "may be on terminal 1002 (last seen " in miss["text"] and "1 unsynced" in miss["text"]
    assert st[(1001, 5)] == "unconfirmed" and rep["unconfirmed"]["amount"] == 2 * FARE
    assert rep["revenue"] == 4 * FARE  # counters 2..5: each followed by a state that proves it
    assert rep["office"]["topped_up"] == 100000 and rep["office"]["issued_balance"] == 200000
    assert "missing transaction" in text(rep) and f"card {UID}" in text(rep)
    # the card's own ledger (tapkit ledger, the dashboard's card page) says where it may be too
    keys = str(tmp_path / "issuer.keys")
    assert main(["ledger", "--db", store_url, "--keystore", keys, UID]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "missing transaction: counter 7: 1 transaction of this card in no record" in out
    assert "may be on terminal 1002 (last seen 2023-11-14 22:38, 1 unsynced)" in out
    # 1002 syncs: the gap closes, everything is confirmed by the card's own later state
    t2.sync(store)
    rep, st = run(store, ks)
    assert rep["reconciliation"]["findings"] == []
    assert rep["revenue"] == 6 * FARE and rep["unconfirmed"]["count"] == 1  # counter 9: newest
    assert st[(1001, 5)] == "confirmed" and st[(1002, 1)] == "confirmed"


def test_unconfirmed_charges_settle_as_the_card_is_seen_again(store, ks):
    t1 = Source(ks, 1001)
    t1.add(taprecord.KIND_REFUSED, 0, 4, 30000, 10000, taprecord.RESULT_INSUFFICIENT)
    t1.charge(10, 5, 10000 - 5000, 5000)
    t1.sync(store)
    rep, st = run(store, ks)
    assert st[(1001, 2)] == "unconfirmed" and rep["revenue"] == 0
    assert rep["unconfirmed"]["records"][0]["amount"] == 5000
    # a confirm record of the same terminal (the commit answered)
    t1.add(K.KIND_CONFIRM, 11, 5, 2, 5000, K.RESULT_COMMIT_ANSWER)
    t1.charge(100, 6, 0, 5000)
    t1.sync(store)
    rep, st = run(store, ks)
    assert st[(1001, 2)] == "confirmed" and st[(1001, 4)] == "unconfirmed"
    # the card is read at counter 6 with the balance the charge left: confirmed by the card
    t1.add(taprecord.KIND_REFUSED, 200, 6, FARE, 0, taprecord.RESULT_INSUFFICIENT)
    t1.sync(store)
    rep, st = run(store, ks)
    assert st[(1001, 4)] == "confirmed" and rep["revenue"] == 10000
    assert rep["reconciliation"]["findings"] == []


def test_a_charge_the_card_never_committed_is_a_phantom(store, ks):
    """Terminal 1001 journalled counter 5 and lost power before the commit (no void). The card
    comes to 1002, which reads counter 4 and charges counter 5 from the same balance: the
    balance before it shows the first never happened."""
    t1, t2 = Source(ks, 1001), Source(ks, 1002)
    t1.charge(0, 5, 50000)
    t2.charge(300, 5, 50000)
    t2.charge(900, 6, 50000 - FARE)
    t1.sync(store)
    t2.sync(store)
    rep, st = run(store, ks)
    assert st[(1001, 1)] == "phantom" and st[(1002, 1)] == "confirmed"
    assert rep["revenue"] == FARE and rep["phantom"] == 1
    assert rep["reconciliation"]["findings"] == []  # an ordinary torn tap, not a problem


def test_a_void_record_cancels_its_charge(store, ks):
    t1 = Source(ks, 1001)
    s = t1.charge(0, 5, 50000)
    t1.add(taprecord.KIND_VOID, 5, 5, s, -1, taprecord.RESULT_REMOVED)
    t1.charge(10, 5, 50000)
    t1.add(taprecord.KIND_REFUSED, 20, 5, FARE * 3, 50000, taprecord.RESULT_INSUFFICIENT)
    t1.sync(store)
    rep, st = run(store, ks)
    assert (st[(1001, 1)], st[(1001, 3)]) == ("voided", "confirmed")
    assert rep["revenue"] == FARE and rep["voided"] == 1


def test_a_replayed_card_image_is_a_rollback_with_the_money_lost(store, ks):
    """A card at counter 5 (50,000) is copied; the original rides twice (counters 6, 7, balance 0);
    the copy is written back and rides twice again: counters 6 and 7 are used twice, the card
    went back after it had reached counter 7, and 50,000 Rial were spent from a replayed state."""
    t1, t2 = Source(ks, 1001), Source(ks, 1002)
    t1.add(taprecord.KIND_REFUSED, 0, 5, 100000, 50000, taprecord.RESULT_INSUFFICIENT)
    t1.charge(100, 6, 25000)
    t1.charge(200, 7, 0)
    t1.add(taprecord.KIND_REFUSED, 300, 7, FARE, 0, taprecord.RESULT_INSUFFICIENT)
    t2.charge(5000, 6, 25000)  # the image of counter 5 is back
    t2.charge(5100, 7, 0)
    t1.sync(store)
    t2.sync(store)
    rep, st = run(store, ks)
    (clone,) = rep["reconciliation"]["clones"]
    assert (clone["uid"], clone["amount"]) == (UID, 50000)
    assert (clone["counter_from"], clone["counter_to"]) == (6, 7)
    assert "card state went back (clone or rollback)" in clone["text"]
    assert (
        "terminal 1002 seq 1 read counter 5 after terminal 1001 seq 4 had read counter 7"
        in (clone["text"])
    )
    assert "50,000 Rial spent from a replayed card state" in clone["text"]
    assert all(v == "confirmed" for v in st.values())  # the money was really taken, twice
    assert "clone or rollback" in text(rep)


def test_same_counter_with_another_balance_is_a_clone(store, ks):
    """Two cards with one UID and one counter, each with its own balance later seen."""
    t1, t2 = Source(ks, 1001), Source(ks, 1002)
    t1.charge(0, 3, 75000)
    t1.add(taprecord.KIND_REFUSED, 60, 3, 100000, 75000, taprecord.RESULT_INSUFFICIENT)
    t2.charge(30, 3, 60000, 40000)
    t2.add(taprecord.KIND_REFUSED, 90, 3, 100000, 60000, taprecord.RESULT_INSUFFICIENT)
    t1.sync(store)
    t2.sync(store)
    rep, st = run(store, ks)
    (clone,) = rep["reconciliation"]["clones"]
    assert clone["counter_from"] == 3 and clone["amount"] == 40000
    assert "counter 3 used 2 times" in clone["text"]
    assert st == {(1001, 1): "confirmed", (1002, 1): "confirmed"}


def test_a_terminal_that_saw_the_card_go_back_raises_a_clone(store, ks):
    t1 = Source(ks, 1001)
    t1.charge(0, 4, 50000)
    t1.add(taprecord.KIND_DENIED, 60, 3, 0, -1, K.RESULT_ROLLBACK)
    t1.sync(store)
    rep, _st = run(store, ks)
    (clone,) = rep["reconciliation"]["clones"]
    assert "terminal 1001 seq 2 refused it: its counter or balance went back" in clone["text"]


def test_money_outside_any_record_is_a_balance_break(store, ks):
    t1 = Source(ks, 1001)
    seq = t1.charge(0, 2, 10000)
    t1.add(K.KIND_CONFIRM, 1, 2, seq, 10000, K.RESULT_COMMIT_ANSWER)
    t1.charge(60, 3, 10000)  # it read 35,000 at counter 2
    t1.sync(store)
    rep, _st = run(store, ks)
    (b,) = rep["reconciliation"]["balance_breaks"]
    assert (b["counter_from"], b["amount"]) == (2, 25000)
    assert "left the balance at 10,000, but terminal 1001 seq 3 read 35,000" in b["text"]


def test_office_records_are_their_own_source(store, ks):
    """An office record in a terminal's chain (a terminal key forging a top-up) is quarantined;
    the office's own records count."""
    t1 = Source(ks, 1001)
    t1.add(K.KIND_TOPUP, 0, 2, 500000, 500000)
    t1.sync(store)
    rep, _st = run(store, ks)
    (f,) = rep["reconciliation"]["findings"]
    assert (f["kind"], f["terminal"], f["seq"]) == ("foreign_kind", 1001, 1)
    assert rep["office"]["topped_up"] == 0
    office = Source(ks, 1001, "office")  # the same id as an office: refused
    office.add(K.KIND_TOPUP, 0, 2, 1, 1)
    with pytest.raises(store_mod.ChainError, match="id 1001 is a terminal in this store"):
        store.ingest(1001, office.recs, office.key, role="office")


def test_resolve_is_a_pure_function_of_the_records():
    rows = [
        dict(
            terminal=1,
            seq=1,
            time=0,
            kind="charge",
            result="ok",
            counter=1,
            amount=5,
            balance=95,
            status="unconfirmed",
            profile="bus",
            line=0,
            uid=UID,
        ),
        dict(
            terminal=1,
            seq=2,
            time=9,
            kind="charge",
            result="ok",
            counter=2,
            amount=5,
            balance=90,
            status="unconfirmed",
            profile="bus",
            line=0,
            uid=UID,
        ),
    ]
    st, found = ledger.resolve(rows)
    assert st == {(1, 1): "confirmed", (1, 2): "unconfirmed"} and found == []
    assert ledger.resolve(list(reversed(rows))) == (st, found)


def test_a_quarantined_record_is_no_missing_transaction(store, ks):
    t1 = Source(ks, 1001)
    for c in (1, 2, 3):
        t1.charge(60 * c, c, 100000 - FARE * c)
    t1.sync(store)
    store._exec("UPDATE taps SET amount = 1 WHERE terminal = 1001 AND seq = 2")
    rep, st = run(store, ks)
    assert [f["kind"] for f in rep["reconciliation"]["findings"]] == ["edited"]
    assert st[(1001, 1)] == "unconfirmed"  # the only proof of it was the edited record


def test_settling_batch_by_batch_gives_what_one_settlement_gives(tmp_path, ks):
    """The audit settles a card from the lowest counter its new records touch (a window): records
    arriving in any order, audited after every batch, end where one audit of all of them ends."""
    from harness import fleetgen

    whole = "sqlite:///%s" % (tmp_path / "whole.db")
    fleetgen.generate(whole, ks, taps=3000, vehicles=12, days=3, cards=60, offices=2, lines=3)
    with store_mod.open_store(whole) as db:
        # (the generator edits one stored amount; ingest below stores what the records say)
        db._exec("UPDATE taps SET amount = 25000 WHERE terminal = 1003 AND seq = 1")
        audit.run(db, audit.keys_from(ks))
        sources = {t["id"]: t["role"] for t in db.terminals()}
        raws = {tid: db.raw_records(tid) for tid in sources}

        def outcome(s):
            st = sorted(tuple(r) for r in s._all("SELECT terminal, seq, status FROM taps"))
            found = sorted(
                tuple(r)
                for r in s._all(
                    "SELECT kind, uid, counter_from, counter_to, amount FROM findings "
                    "WHERE kind IN ('missing', 'balance', 'clone')"
                )
            )
            return st, found

        want = outcome(db)
    assert any(f[0] == "clone" for f in want[1]) and any(f[0] == "missing" for f in want[1])
    with store_mod.open_store("sqlite:///%s" % (tmp_path / "bits.db")) as db:
        keys = audit.keys_from(ks)
        done = {tid: 0 for tid in sources}
        order = sorted(sources, reverse=True)  # the offices first, then terminals backwards
        while any(done[t] < len(raws[t]) for t in sources):
            for tid in order:
                n = 37 + tid % 50
                part = raws[tid][done[tid] : done[tid] + n]
                if part:
                    db.ingest(
                        tid, part, keystore.source_key(ks, tid, sources[tid]), role=sources[tid]
                    )
                    done[tid] += len(part)
                    audit.run(db, keys)
        assert outcome(db) == want
