"""The tap store (host_tools/backoffice/store.py) and the report, on SQLite and on PostgreSQL."""

import binascii
import io
import json

import pytest
from rich.console import Console

from card_schema import taprecord, taprecord_host
from host_tools.backoffice import audit
from host_tools.backoffice import report as report_mod
from host_tools.backoffice import store as store_mod
from host_tools.cli.backoffice import render_report

KEY7 = bytes(range(16))
KEY8 = bytes(range(16, 32))
T0 = 1700000000


def uid(n):
    return bytes([4, n, 0, 0, 0, 0, 0x80])


def chain(key, terminal, specs, first_seq=1, prev=taprecord.GENESIS_MAC):
    """Sealed records for `specs` (dicts of pack_into keyword arguments), seq from first_seq."""
    out = []
    for i, spec in enumerate(specs):
        buf = bytearray(taprecord.SIZE)
        kw = {"time": T0 + 60 * (first_seq + i), "uid": uid(1), "kind": taprecord.KIND_CHARGE}
        kw.update(spec)
        prev = taprecord.pack_into(buf, prev, key, seq=first_seq + i, terminal=terminal, **kw)
        out.append(bytes(buf))
    return out


def charges(n, card=1, start_counter=1, amount=250):
    return [
        {
            "uid": uid(card),
            "counter": start_counter + i,
            "amount": amount,
            "balance": 10000 - amount * (start_counter + i),
        }
        for i in range(n)
    ]


@pytest.fixture
def store(store_url):
    s = store_mod.open_store(store_url)
    yield s
    s.close()


def test_ingest_is_idempotent(store):
    recs = chain(KEY7, 7, charges(15))
    assert store.ingest(7, recs[:10], KEY7) == (10, 0)
    assert store.ingest(7, recs[:10], KEY7) == (0, 10)
    assert store.ingest(7, recs[4:15], KEY7) == (5, 6)  # overlaps what is stored
    assert store.last_seq(7) == 15 and store.last_seq(8) == 0
    assert store.count() == 15
    assert store.raw_records(7) == recs
    taps = store.taps(7)
    assert [t["seq"] for t in taps] == list(range(1, 16))
    assert taps[0]["uid"] == uid(1).hex() and taps[0]["kind"] == "charge"
    assert taps[0]["mac"] == recs[0][52:60].hex()
    assert store.terminal(7)["last_mac"] == recs[-1][52:60].hex()
    assert store.ingest(7, [], KEY7) == (0, 0)


def test_a_big_batch_is_stored_whole_in_multi_row_inserts(store):
    """More records than one multi-row INSERT takes (SQLite: store._MULTI rows a statement), with
    a retransmitted part: every record stored once, as sent, its columns decoded."""
    n = 2 * store_mod._MULTI + 17
    recs = chain(KEY7, 7, charges(n))
    assert store.ingest(7, recs[: n - 40], KEY7) == (n - 40, 0)
    assert store.ingest(7, recs[n - 600 :], KEY7) == (40, 560)
    assert store.count() == n and store.raw_records(7) == recs
    taps = store.taps(7)
    assert [t["seq"] for t in taps] == list(range(1, n + 1))
    assert [t["counter"] for t in taps] == list(range(1, n + 1))
    assert taps[-1]["mac"] == recs[-1][52:60].hex()


def test_columns_are_the_records_fields_and_a_damaged_record_is_named(store):
    """The rows are built column by column from the batch (store._params); every stored column must
    be what the record decoder (taprecord_host.to_dict) reads from its raw bytes, for fields at the
    ends of their ranges (a negative balance, names past the tables, the clock flag)."""
    specs = [
        {
            "uid": bytes([i, 255 - i, 7, 0, 0x80, 1, i]),
            "kind": 1 + i % 9,
            "result": (i * 37) % 256,
            "profile": (i * 11) % 256,
            "zone": i % 256,
            "counter": 2**32 - 1 - i,
            "amount": i * 1000,
            "balance": -1 - i if i % 2 else 2**31 - 1 - i,
            "line": 65535 - i,
            "stop": i,
            "duration": 3 * i,
            "tariff_ver": 40000 + i,
            "deny_ver": i * 7,
            "flags": taprecord_host.FLAG_CLOCK_UNSET if i % 3 == 0 else 2,
        }
        for i in range(40)
    ]
    recs = chain(KEY7, 7, specs)
    assert store.ingest(7, recs, KEY7) == (40, 0)
    assert [bytes(r) for r in store.raw_records(7)] == recs
    for row, raw in zip(store.taps(7), recs, strict=True):
        d = taprecord_host.to_dict(raw)
        assert {k: row[k] for k in d} == d
    # the first damaged record of a batch is the one named, whatever else is wrong after it
    more = chain(KEY7, 7, charges(6), first_seq=41, prev=recs[-1][52:60])
    crc = bytearray(more[2])
    crc[60] ^= 1
    with pytest.raises(
        store_mod.ChainError, match="record 43 of the batch is damaged .record CRC"
    ):
        store.ingest(7, more[:2] + [bytes(crc)] + more[4:], KEY7)
    version = bytearray(more[1])
    version[0] = 9
    version[60:64] = (binascii.crc32(version[:60]) & 0xFFFFFFFF).to_bytes(4, "little")
    with pytest.raises(
        store_mod.ChainError, match="record 42 of the batch is damaged .record ver"
    ):
        store.ingest(7, more[:1] + [bytes(version)] + more[2:3] + [bytes(crc)], KEY7)
    other = chain(KEY7, 8, charges(2), first_seq=42, prev=more[0][52:60])
    with pytest.raises(store_mod.ChainError, match="seq 42 belongs to terminal 8"):
        store.ingest(7, more[:1] + other, KEY7)
    assert store.count() == 40 and store.last_seq(7) == 40


def test_chain_break_is_refused_and_nothing_is_stored(store):
    recs = chain(KEY7, 7, charges(12))
    store.ingest(7, recs[:4], KEY7)
    # record 8 altered (amount 250 -> 0) and re-CRCed: the CRC passes, the MAC chain does not
    bad = bytearray(recs[7])
    bad[28:32] = (0).to_bytes(4, "little")
    bad[60:64] = (binascii.crc32(bad[:60]) & 0xFFFFFFFF).to_bytes(4, "little")
    batch = recs[4:7] + [bytes(bad)] + recs[8:12]
    with pytest.raises(store_mod.ChainError, match="terminal 7: MAC chain broken at seq 8"):
        store.ingest(7, batch, KEY7)
    assert store.count() == 4 and store.last_seq(7) == 4  # seq 5..7 were fine: not stored either

    # a deleted record (seq 6 missing) breaks the chain at seq 7
    with pytest.raises(store_mod.ChainError, match="seq 7 follows seq 5"):
        store.ingest(7, recs[4:5] + recs[6:8], KEY7)
    # the right records under another terminal's key
    with pytest.raises(store_mod.ChainError, match="MAC chain broken at seq 5"):
        store.ingest(7, recs[4:8], KEY8)
    # a batch that does not continue what is stored
    with pytest.raises(store_mod.ChainError, match="seq 9 does not follow a stored record"):
        store.ingest(7, recs[8:], KEY7)
    # another journal with the same terminal id (a different seq 3)
    other = chain(KEY7, 7, charges(4, card=2))
    with pytest.raises(store_mod.ChainError, match="terminal 7: seq 1 differs from the stored"):
        store.ingest(7, other, KEY7)
    # records of terminal 8 offered as terminal 7
    with pytest.raises(store_mod.ChainError, match="seq 1 belongs to terminal 8"):
        store.ingest(7, chain(KEY7, 8, charges(2)), KEY7)
    # a torn record (bad CRC)
    with pytest.raises(store_mod.ChainError, match="damaged"):
        store.ingest(7, [recs[4][:60] + b"\0\0\0\0"], KEY7)
    assert store.count() == 4
    assert store.ingest(7, recs[4:], KEY7) == (8, 0)  # the genuine records still go in


def test_gap_only_when_allowed(store):
    recs = chain(KEY7, 7, charges(10))
    with pytest.raises(store_mod.ChainError):
        store.ingest(7, recs[5:], KEY7)
    assert store.ingest(7, recs[5:], KEY7, allow_gap=True) == (5, 0)
    gaps = report_mod.report(store, keys)["reconciliation"]["sequence_gaps"]
    assert gaps == [{"terminal": 7, "from_seq": 1, "to_seq": 5, "missing": 5}]
    # the genuine records fill the hole later (they chain into the stored seq 6)
    assert store.ingest(7, recs[:5], KEY7) == (5, 0)
    assert store.raw_records(7) == recs
    assert report_mod.report(store, keys)["reconciliation"]["sequence_gaps"] == []


def test_hole_filler_must_chain_into_the_next_stored_record(store):
    recs = chain(KEY7, 7, charges(10))
    store.ingest(7, recs[:3], KEY7)
    store.ingest(7, recs[6:], KEY7, allow_gap=True)
    fake = chain(KEY7, 7, charges(3, card=5), first_seq=4, prev=recs[2][52:60])
    with pytest.raises(store_mod.ChainError, match="stored seq 7 after this batch"):
        store.ingest(7, fake, KEY7)
    assert store.ingest(7, recs[3:6], KEY7) == (3, 0)


def test_migrations_are_tracked_and_run_once(store_url):
    s = store_mod.open_store(store_url)
    assert s.schema_version() == len(store_mod.MIGRATIONS)
    s.ingest(7, chain(KEY7, 7, charges(2)), KEY7)
    s.close()
    s = store_mod.open_store(store_url)  # reopening neither fails nor loses data
    assert s.schema_version() == len(store_mod.MIGRATIONS) and s.count() == 2
    rows = s._all("SELECT version FROM schema_version")
    assert [r[0] for r in rows] == [m[0] for m in store_mod.MIGRATIONS]
    s.close()


def keys(tid, role="terminal"):
    """The audit's key lookup for the test terminals."""
    return {7: KEY7, 8: KEY8}[tid]


def scenario(store):
    """Two terminals, four cards: the numbers test_report checks."""
    t7 = chain(
        KEY7,
        7,
        [
            # card 1: three charges of 250 from 10000
            {"uid": uid(1), "counter": 1, "amount": 250, "balance": 9750},
            {"uid": uid(1), "counter": 2, "amount": 250, "balance": 9500},
            # card 2: charge 400, then its commit failed: a void record names seq 3
            {"uid": uid(2), "counter": 5, "amount": 400, "balance": 600},
            {
                "uid": uid(2),
                "kind": taprecord.KIND_VOID,
                "amount": 3,
                "counter": 4,
                "balance": 1000,
            },
            {"uid": uid(1), "counter": 3, "amount": 250, "balance": 9250},
            # card 3: insufficient balance, then denied (deny list)
            {
                "uid": uid(3),
                "kind": taprecord.KIND_REFUSED,
                "result": taprecord.RESULT_INSUFFICIENT,
                "counter": 9,
                "balance": 100,
            },
            {
                "uid": uid(3),
                "kind": taprecord.KIND_DENIED,
                "result": taprecord_host.RESULT_DENYLIST,
                "balance": -1,
            },
            # no card read at all (error record)
            {
                "uid": bytes(7),
                "kind": taprecord_host.KIND_ERROR,
                "result": taprecord_host.RESULT_CARD_ERROR,
            },
        ],
    )
    store.ingest(7, t7, KEY7)
    t8 = chain(
        KEY8,
        8,
        [
            {"uid": uid(4), "counter": 1, "amount": 1000, "balance": 4000, "profile": 2},
            # card 1 again with counter 3: a clone or a replay of the charge on terminal 7 seq 5
            {"uid": uid(1), "counter": 3, "amount": 250, "balance": 9250},
            {"uid": uid(4), "counter": 2, "amount": 1000, "balance": 3000, "profile": 2},
            {"uid": uid(4), "counter": 3, "amount": 1000, "balance": 2000, "profile": 2},
            {
                "uid": uid(4),
                "kind": taprecord.KIND_REFUSED,
                "result": taprecord.RESULT_INSUFFICIENT,
                "counter": 3,
                "balance": 2000,
            },
            {
                "uid": uid(4),
                "kind": taprecord.KIND_REFUSED,
                "result": taprecord.RESULT_INSUFFICIENT,
                "counter": 3,
                "balance": 2000,
            },
        ],
    )
    store.ingest(8, t8[:2], KEY8)
    store.ingest(8, t8[4:], KEY8, allow_gap=True)  # seq 3..4 acknowledged elsewhere
    return t7, t8


def with_confirms(specs):
    """The records a terminal of the pending-charge firmware writes: each charge followed by a
    CONFIRM naming its seq (seq numbers from 1)."""
    out = []
    for spec in specs:
        out.append(spec)
        if spec.get("kind", taprecord.KIND_CHARGE) == taprecord.KIND_CHARGE:
            out.append(
                {
                    "uid": spec["uid"],
                    "kind": taprecord_host.KIND_CONFIRM,
                    "result": taprecord_host.RESULT_COMMIT_ANSWER,
                    "counter": spec["counter"],
                    "amount": len(out),
                    "balance": spec["balance"],
                    "time": spec.get("time", T0 + 60 * len(out)),
                }
            )
    return out


def test_report(store):
    scenario(store)
    rep = report_mod.report(store, keys)
    json.dumps(rep)  # JSON-ready
    # confirmed money only: card 1's counters 1 and 2 (each followed by a state that proves it);
    # its counter 3 was journalled on both terminals from one state: the earlier (terminal 8) never
    # happened (phantom), the later is unconfirmed; card 4's counter 1 is unconfirmed (its
    # counters 2 and 3 are not in this store: missing); the voided 400 is no money
    assert rep["revenue"] == 500 and rep["charges"] == 2
    assert (rep["voided"], rep["phantom"]) == (1, 1)
    assert (rep["unconfirmed"]["count"], rep["unconfirmed"]["amount"]) == (2, 1250)
    # terminal 8 seq 5 follows a gap with no anchor: its link cannot be verified, it counts nowhere
    assert rep["taps"] == 10  # (a void is no tap)
    assert rep["refused"] == 3
    assert rep["refused_by_reason"] == {"insufficient": 2, "deny-list": 1}
    cards = {c["uid"]: c for c in rep["cards"]}
    assert set(cards) == {uid(n).hex() for n in (1, 2, 3, 4)}  # the no-card error is not a card
    assert cards[uid(1).hex()] == {
        "uid": uid(1).hex(),
        "taps": 4,
        "charged": 500,
        "refused": 0,
        "last_balance": 9250,
        "unconfirmed": 250,
    }
    # its only balance is the voided charge's: no state of the card is known
    assert cards[uid(2).hex()]["charged"] == 0 and cards[uid(2).hex()]["last_balance"] is None
    assert cards[uid(3).hex()] == {
        "uid": uid(3).hex(),
        "taps": 2,
        "charged": 0,
        "refused": 2,
        "last_balance": 100,
        "unconfirmed": 0,
    }
    assert cards[uid(4).hex()]["charged"] == 0 and cards[uid(4).hex()]["last_balance"] == 2000
    terms = {t["terminal"]: t for t in rep["terminals"]}
    assert (
        terms[7]["taps"],
        terms[7]["charges"],
        terms[7]["revenue"],
        terms[7]["refused"],
        terms[7]["voids"],
        terms[7]["errors"],
    ) == (7, 2, 500, 2, 1, 1)
    assert (
        terms[8]["taps"],
        terms[8]["revenue"],
        terms[8]["unconfirmed_amount"],
        terms[8]["first_seq"],
        terms[8]["last_seq"],
    ) == (3, 0, 1000, 1, 6)
    rec = rep["reconciliation"]
    assert rec["sequence_gaps"] == [{"terminal": 8, "from_seq": 3, "to_seq": 4, "missing": 2}]
    assert rec["unverified"] == [{"terminal": 8, "seq": 5}]
    assert rec["mac_chain_breaks"] == []
    (miss,) = rec["missing_transactions"]
    assert (miss["uid"], miss["counter_from"], miss["counter_to"]) == (uid(4).hex(), 2, 3)
    assert rec["clones"] == [] and rec["balance_breaks"] == []

    out = io.StringIO()
    render_report(rep, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "revenue 500 Rial from 2 confirmed charges" in text
    assert "unconfirmed: 2 money records, 1,250 Rial" in text
    assert "seq 3..4 not in this store (2)" in text
    assert "terminal 8 seq 5" in text and "predecessor is not in this store" in text
    assert "counter 2..3: 2 transactions of this card in no record here" in text


def test_filling_the_gap_verifies_what_followed_it(store):
    _t7, t8 = scenario(store)
    report_mod.report(store, keys)
    store.ingest(8, t8[2:4], KEY8)  # the records acknowledged elsewhere arrive after all
    rep = report_mod.report(store, keys)
    rec = rep["reconciliation"]
    assert rec["findings"] == []
    assert rep["taps"] == 7 + 6 and rep["revenue"] == 500 + 3000  # card 4: counters 1..3 now
    assert audit.pending(store) == 0


def test_an_edited_column_is_named_and_left_out(store):
    """The issue: one amount edited from 25000 to 1000 lowered the revenue and the report still
    said "MAC chains intact". The audit compares every column with the MAC-verified record."""
    specs = [
        {"uid": uid(1), "counter": c, "amount": 25000, "balance": 100000 - 25000 * c}
        for c in (1, 2, 3)
    ]
    recs = chain(KEY7, 7, with_confirms(specs))  # charges at seq 1, 3, 5
    store.ingest(7, recs, KEY7)
    before = report_mod.report(store, keys)
    assert before["revenue"] == 75000 and before["reconciliation"]["findings"] == []
    # someone edits the column after the audit: the report's recheck of its period finds it
    store._exec("UPDATE taps SET amount = 1000 WHERE terminal = 7 AND seq = 3")
    rep = report_mod.report(store, keys)
    assert rep["revenue"] == 50000  # not 51000: the edited row is left out, not believed
    (f,) = rep["reconciliation"]["findings"]
    assert (f["kind"], f["terminal"], f["seq"], f["amount"]) == ("edited", 7, 3, 25000)
    assert f["detail"]["columns"] == [{"column": "amount", "stored": 1000, "record": 25000}]
    assert rep["reconciliation"]["mac_chain_breaks"] == [
        {"terminal": 7, "seq": 3, "kind": "edited"}
    ]
    out = io.StringIO()
    render_report(rep, Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert "record edited" in text and "terminal 7 seq 3" in text
    assert "column amount edited: stored 1000, the record says 25000" in text
    assert "MAC chains intact" not in text
    # the raw record altered too (CRC made to fit): the MAC names it
    bad = bytearray(recs[0])
    bad[28:32] = (1000).to_bytes(4, "little")
    bad[60:64] = (binascii.crc32(bytes(bad[:60])) & 0xFFFFFFFF).to_bytes(4, "little")
    store._exec(
        "UPDATE taps SET raw = ?, amount = 1000 WHERE terminal = 7 AND seq = 1", (bytes(bad),)
    )
    rep = report_mod.report(store, keys)
    assert rep["revenue"] == 25000
    kinds = {(f["terminal"], f["seq"]): f["kind"] for f in rep["reconciliation"]["findings"]}
    assert kinds == {(7, 1): "mac", (7, 3): "edited"}  # no "missing" for their counters
    # the rollups the audit keeps are what a rebuild from the verified rows gives
    kept = (
        sorted(store._all("SELECT * FROM roll_day")),
        sorted(store._all("SELECT * FROM roll_time")),
    )
    audit.rebuild_rollups(store)
    assert kept == (
        sorted(store._all("SELECT * FROM roll_day")),
        sorted(store._all("SELECT * FROM roll_time")),
    )
    # an edit before any audit is caught by the first one (no recheck needed)
    more = with_confirms([{"uid": uid(1), "counter": 4, "amount": 25000, "balance": 0}])
    store.ingest(7, chain(KEY7, 7, more, first_seq=7, prev=recs[-1][52:60]), KEY7)
    store._exec("UPDATE taps SET line = 99 WHERE terminal = 7 AND seq = 7")
    rep = report_mod.report(store, keys, recheck=False)
    assert rep["audit"]["quarantined_now"] == 1 and rep["revenue"] == 25000


def test_empty_report(store):
    rep = report_mod.report(store, keys)
    assert (rep["revenue"], rep["taps"], rep["cards"], rep["terminals"]) == (0, 0, [], [])
    out = io.StringIO()
    render_report(rep, Console(file=out, width=100, color_system=None))
    assert "every record verified" in out.getvalue()


def test_read_only_opening_creates_nothing(store_url, tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(store_mod.NoStore, match="no store at .*typo.db: check --db"):
        store_mod.open_store(f"sqlite:///{path}", create=False)
    assert not path.exists()
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(store_mod.NoStore, match="not a tapkit store"):
        store_mod.open_store(f"sqlite:///{tmp_path / 'empty.db'}", create=False)
    if store_url.startswith("postgresql"):
        with pytest.raises(store_mod.NoStore, match="holds no tapkit store"):
            store_mod.open_store(store_url, create=False)
        assert store_mod.open_store(store_url, create=False) if False else True
    store_mod.open_store(store_url).close()  # made by a writer
    store_mod.open_store(store_url, create=False).close()  # then a reader opens it


def test_open_store_errors(tmp_path):
    with pytest.raises(store_mod.StoreError, match="unknown store URL"):
        store_mod.open_store("mysql://x/y")
    with pytest.raises(store_mod.StoreError, match="does not exist"):
        store_mod.open_store(f"sqlite:///{tmp_path}/nope/taps.db")
    with pytest.raises(store_mod.StoreError, match=r"cannot connect to postgresql://u:\*\*\*@"):
        store_mod.open_store("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    s = store_mod.open_store(str(tmp_path / "plain.db"))  # a plain path is SQLite
    assert s.dialect == "sqlite"
    s.close()


def test_report_revenue_by_and_card_checks(store_url, tmp_path):
    from host_tools import keystore

    ks = keystore.init(str(tmp_path / "issuer.keys"))
    key = keystore.terminal_key(ks, 7)
    day2 = T0 + 86400
    recs = chain(
        key,
        7,
        with_confirms(
            [
                {"uid": uid(1), "counter": 1, "amount": 250, "balance": 9750, "line": 3},
                {"uid": uid(1), "counter": 2, "amount": 250, "balance": 9500, "line": 3},
                # counters 3 and 4 of card 1 never reached this store: missing
                {"uid": uid(1), "counter": 5, "amount": 250, "balance": 8750, "line": 9},
                {"uid": uid(2), "counter": 1, "amount": 250, "balance": 5000, "line": 9},
                # card 2 was topped up at an office (counters 2 and 3) whose journal is not
                # here: that no longer explains the jump away
                {
                    "uid": uid(2),
                    "counter": 4,
                    "amount": 250,
                    "balance": 19750,
                    "line": 9,
                    "time": day2,
                },
                {
                    "uid": uid(3),
                    "counter": 1,
                    "amount": 250,
                    "balance": 1000,
                    "line": 9,
                    "time": day2,
                },
                # 150 Rial appeared on card 3 between two consecutive counters
                {
                    "uid": uid(3),
                    "counter": 2,
                    "amount": 250,
                    "balance": 900,
                    "line": 9,
                    "time": day2 + 60,
                },
            ]
        ),
    )
    with store_mod.open_store(store_url) as s:
        s.ingest(7, recs, key)
        s.note_reject(7, "wifi", "bad_mac: MAC chain broken at seq 9")
        s.note_reject(None, "wifi", "malformed: batch too short")
        rep = report_mod.report(s, audit.keys_from(ks))
        assert rep["reconciliation"]["mac_chain_breaks"] == []
        # by hour and by day in Tehran time, and one day only
        teh = report_mod.report(s, audit.keys_from(ks), tz=12600)
        day1 = report_mod.report(
            s, audit.keys_from(ks), since=T0 - T0 % 86400, until=day2 - day2 % 86400
        )
        # someone edits a stored record afterwards (the CRC no longer fits: damaged)
        bad = bytearray(recs[2])
        bad[28] = 1
        s._exec("UPDATE taps SET raw = ? WHERE terminal = 7 AND seq = 3", (bytes(bad),))
        rep2 = report_mod.report(s, audit.keys_from(ks))
    by = rep["revenue_by"]
    assert [(r["line"], r["charges"], r["revenue"]) for r in by["line"]] == [
        (3, 2, 500),
        (9, 5, 1250),
    ]
    assert [(r["profile"], r["charges"], r["revenue"]) for r in by["profile"]] == [
        ("bus", 7, 1750)
    ]
    assert [(r["terminal"], r["charges"], r["revenue"]) for r in by["terminal"]] == [(7, 7, 1750)]
    assert [(d["charges"], d["revenue"]) for d in by["day"]] == [(4, 1000), (3, 750)]
    assert by["day"][0]["day"] == "2023-11-14"
    assert [h["hour"] for h in by["hour"]] == ["2023-11-14 22:00", "2023-11-15 22:00"]
    assert [h["hour"] for h in teh["revenue_by"]["hour"]] == [
        "2023-11-15 01:00",
        "2023-11-16 01:00",
    ]
    assert teh["revenue_by"]["day"][0]["day"] == "2023-11-15"
    assert (day1["revenue"], day1["charges"], day1["taps"]) == (1000, 4, 4)
    assert [t["terminal"] for t in day1["terminals"]] == [7]
    rec = rep["reconciliation"]
    assert [
        (m["uid"], m["counter_from"], m["counter_to"], m["detail"]["count"])
        for m in rec["missing_transactions"]
    ] == [(uid(1).hex(), 3, 4, 2), (uid(2).hex(), 2, 3, 2)]
    assert [(b["uid"], b["counter_from"], b["amount"]) for b in rec["balance_breaks"]] == [
        (uid(3).hex(), 1, 150)
    ]
    assert rec["refused_uploads"] == {"bad_mac": 1, "malformed": 1}
    assert rep2["reconciliation"]["mac_chain_breaks"] == [
        {"terminal": 7, "seq": 3, "kind": "damaged"}
    ]
    assert rep2["revenue"] == 1500
    out = io.StringIO()
    render_report(rep2, Console(file=out, width=300, color_system=None))
    text = out.getvalue()
    assert "counter 3..4: 2 transactions of this card in no record here" in text
    assert "left the balance at 1,000, but terminal 7 seq 13 read 1,150" in text
    assert "record damaged" in text


def test_the_unaudited_count_reads_its_partial_index_whatever_the_statistics(tmp_path):
    """Statistics taken while every row waited for its audit (ANALYZE after a bulk load, as at
    12 M generated taps) made SQLite count the unaudited rows by scanning the table: 2 to 10 s
    on every dashboard page. The count is told to read its partial index."""
    db = store_mod.open_store("sqlite:///%s" % (tmp_path / "taps.db"))
    db.conn.execute("ANALYZE")
    db.conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'taps'")
    db.conn.executemany(
        "INSERT INTO sqlite_stat1 VALUES ('taps', ?, ?)",
        [
            ("taps_unaudited", "12305562 4098 1"),
            ("taps_kind", "12305562 2050927"),
            ("sqlite_autoindex_taps_1", "12305562 4098 1"),
        ],
    )
    db.conn.execute("ANALYZE sqlite_schema")  # the planner reloads the statistics
    plain = "SELECT COUNT(*) FROM taps WHERE status IS NULL"
    plan = " ".join(str(r[-1]) for r in db.conn.execute("EXPLAIN QUERY PLAN " + plain))
    assert plan == "SCAN taps"  # what these statistics make of the query as it was
    asked = []
    one = db._one
    db._one = lambda sql, params=(): asked.append(sql) or one(sql, params)
    assert audit.pending(db) == 0
    (sql,) = asked
    plan = " ".join(str(r[-1]) for r in db.conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "USING COVERING INDEX taps_unaudited" in plan or "USING INDEX taps_unaudited" in plan
    db.close()
