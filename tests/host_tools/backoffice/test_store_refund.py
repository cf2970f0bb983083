"""POS refunds (journal kind 6 "refund") in the tap store and the report, on SQLite and PostgreSQL:
negative revenue per terminal, profile and card; a voided refund is no money; the card's balance
checks follow the refund (previous balance + amount)."""

import io

import pytest
from rich.console import Console

from card_schema import taprecord
from host_tools.backoffice import report as report_mod
from host_tools.backoffice import store as store_mod
from host_tools.cli.backoffice import render_report

from test_store import KEY7, chain, uid

POS = 4


@pytest.fixture
def store(store_url):
    s = store_mod.open_store(store_url)
    yield s
    s.close()


def test_refund_is_negative_revenue(store):
    refund = taprecord.KIND_REFUND
    recs = chain(
        KEY7,
        7,
        [
            {"uid": uid(1), "counter": 1, "amount": 15000, "balance": 85000, "profile": POS},
            {"uid": uid(2), "counter": 1, "amount": 4000, "balance": 96000, "profile": POS},
            {
                "uid": uid(1),
                "kind": refund,
                "counter": 2,
                "amount": 15000,
                "balance": 100000,
                "profile": POS,
            },
            {"uid": uid(1), "counter": 3, "amount": 2000, "balance": 98000, "profile": POS},
            # card 2's refund was journalled, its commit answer lost and the card never committed:
            # the void names seq 5, so no money moved
            {
                "uid": uid(2),
                "kind": refund,
                "counter": 2,
                "amount": 4000,
                "balance": 100000,
                "profile": POS,
            },
            {
                "uid": uid(2),
                "kind": taprecord.KIND_VOID,
                "counter": 2,
                "amount": 5,
                "balance": -1,
                "profile": POS,
            },
        ],
    )
    assert store.ingest(7, recs, KEY7) == (6, 0)
    assert [t["kind"] for t in store.taps()][:3] == ["charge", "charge", "refund"]
    rep = report_mod.report(store, lambda tid, role: KEY7)
    # card 1's last sale (2,000) is unconfirmed: nothing after it proves the card committed it
    assert (rep["revenue"], rep["charges"], rep["refunds"], rep["refunded"]) == (4000, 2, 1, 15000)
    assert (rep["unconfirmed"]["count"], rep["unconfirmed"]["amount"]) == (1, 2000)
    assert [(t["terminal"], t["charges"], t["revenue"]) for t in rep["terminals"]] == [
        (7, 2, 4000)
    ]
    assert [(r["profile"], r["charges"], r["revenue"]) for r in rep["revenue_by"]["profile"]] == [
        ("pos", 2, 4000)
    ]
    assert [(c["uid"], c["charged"]) for c in rep["cards"]] == [
        (uid(1).hex(), 0),
        (uid(2).hex(), 4000),
    ]
    assert rep["cards"][0]["last_balance"] == 98000
    assert rep["voided"] == 1
    assert rep["reconciliation"]["findings"] == []
    out = io.StringIO()
    render_report(rep, Console(file=out, width=140, color_system=None))
    assert (
        "revenue 4,000 Rial from 2 confirmed charges less 1 refund (15,000 Rial)" in out.getvalue()
    )
    assert "unconfirmed: 1 money record, 2,000 Rial" in out.getvalue()
