"""Bench section "backoffice": the back office at a fleet's scale, on SQLite and PostgreSQL.

A generated month of a 3,000-vehicle fleet (harness/fleetgen.py: MAC-chained records, cards moving
between buses, top-ups at 3 offices, a terminal out of contact, an edited amount, a rolled-back
card) of `--bo-taps` stored taps (default 1,000,000; `--bo-taps 1000000,10000000` adds 10 M), then:
  - the first audit of all of it (MAC chains, columns, ledger, rollups), in records/s;
  - an incremental audit of 1,000 new taps (what the dashboard's background audit does);
  - `tapkit report` over the month: with its recheck of every row (the auditor's report) and
    `--quick` (rollups only); a one-day report with its recheck;
  - each dashboard page (in process, Starlette's test client; median of 3 loads).
The pages read rollups and indexed lookups only: their time does not grow with the taps stored;
the audit and a full recheck are linear in the rows they cover.
"""

import os
import statistics
import tempfile
import time

from bench import row
from host_tools import keystore

SECTION = "backoffice"
PAGES = ("/", "/fleet", "/findings", "/card?uid={uid}", "/api/summary")


def _timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t0, out


def _page_times(url, keys, uid, n=3):
    import warnings

    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    from host_tools.backoffice.dashboard import app as dash

    backend = dash.Backend(url, keys)
    out = {}
    try:
        with TestClient(dash.make_app(backend)) as c:
            for p in PAGES:
                path = p.format(uid=uid)
                c.get(path)  # warm (templates compiled, connection opened)
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, (path, r.status_code)
                out[p.split("?")[0]] = statistics.median(times)
    finally:
        backend.close()
    return out


def _more(url, ks, n=1000):
    """n new taps of an existing terminal (the steady state: a batch just synced)."""
    from card_schema import taprecord
    from host_tools.backoffice import store as store_mod

    with store_mod.open_store(url) as db:
        tid = 1005
        key = keystore.terminal_key(ks, tid)
        last = db.last_seq(tid)
        prev = bytes.fromhex(
            db._one("SELECT mac FROM taps WHERE terminal = ? AND seq = ?", (tid, last))[0]
        )
        t = int(db._one("SELECT MAX(time) FROM taps")[0]) + 60
        recs = []
        for i in range(n):
            buf = bytearray(taprecord.SIZE)
            prev = taprecord.pack_into(
                buf,
                prev,
                key,
                seq=last + 1 + i,
                time=t + i,
                terminal=tid,
                uid=bytes([4, 9, 9]) + i.to_bytes(4, "big"),
                kind=taprecord.KIND_CHARGE,
                counter=1,
                amount=25000,
                balance=75000,
            )
            recs.append(bytes(buf))
        db.ingest(tid, recs, key)


def measure(name, url, ks, taps, vehicles=3000):
    from harness import fleetgen
    from host_tools.backoffice import audit, report
    from host_tools.backoffice import store as store_mod

    keys = audit.keys_from(ks)
    gen_s, info = _timed(fleetgen.generate, url, ks, taps=taps, vehicles=vehicles, days=30)
    db = store_mod.open_store(url, create=False)
    try:
        audit_s, a = _timed(audit.run, db, keys)
        full_s, rep = _timed(report.report, db, keys, cards=False)
        quick_s, _ = _timed(report.report, db, keys, cards=False, recheck=False)
        day0 = info["start"] + 15 * 86400
        day_s, _ = _timed(report.report, db, keys, since=day0, until=day0 + 86400, cards=False)
        _more(url, ks)
        inc_s, _ = _timed(audit.run, db, keys)
        uid = db._one("SELECT uid FROM taps WHERE kind = 'charge' LIMIT 1")[0]
        kinds = {}
        for f in rep["reconciliation"]["findings"]:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    finally:
        db.close()
    pages = _page_times(url, keys, uid)
    stored = info["stored"]
    data = {
        "stored": stored,
        "generate_s": gen_s,
        "audit_s": audit_s,
        "audit_per_s": stored / audit_s,
        "report_s": full_s,
        "report_quick_s": quick_s,
        "report_day_s": day_s,
        "audit_1000_new_s": inc_s,
        "pages_s": pages,
        "findings": kinds,
        "revenue": rep["revenue"],
        "unconfirmed": rep["unconfirmed"]["amount"],
    }
    m = "%.1fM" % (stored / 1e6)
    rows = [
        row(
            SECTION,
            f"{name} {m}: first audit",
            round(stored / audit_s),
            "rec/s",
            "%.0f s for %d records (MAC, columns, ledger, rollups)" % (audit_s, stored),
        ),
        row(
            SECTION,
            f"{name} {m}: audit of 1,000 new taps",
            round(inc_s, 2),
            "s",
            "the dashboard's background audit, steady state",
        ),
        row(
            SECTION,
            f"{name} {m}: report, month, with recheck",
            round(full_s, 1),
            "s",
            "every row of the month decoded and compared again",
        ),
        row(
            SECTION,
            f"{name} {m}: report --quick, month",
            round(quick_s, 2),
            "s",
            "rollups and findings only",
        ),
        row(
            SECTION,
            f"{name} {m}: report, one day, with recheck",
            round(day_s, 2),
            "s",
            "the day's rows checked again",
        ),
    ]
    for p, s in pages.items():
        rows.append(
            row(SECTION, f"{name} {m}: page {p}", round(s * 1000), "ms", "median of 3, in process")
        )
    rows.append(
        row(
            SECTION,
            f"{name} {m}: findings",
            sum(kinds.values()),
            "",
            ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        )
    )
    return rows, data


def run(opts):
    sizes = [int(x) for x in str(getattr(opts, "bo_taps", "1000000")).split(",") if x]
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "issuer.keys"))
        targets = [("SQLite", lambda n: "sqlite:///%s" % os.path.join(d, "bo%d.db" % n))]
        pg = None
        try:
            from harness import pgserver

            pg = pgserver.PGServer.start()
            targets.append(("PostgreSQL", lambda n: pg.create_database()))
        except pgserver.PGUnavailable as e:
            rows.append(row(SECTION, "PostgreSQL", None, "", f"not measured: {e}"))
        try:
            for n in sizes:
                for name, make in targets:
                    r, dd = measure(name, make(n), ks, n)
                    rows += r
                    data.setdefault(name, {})[str(n)] = dd
        finally:
            if pg is not None:
                pg.stop()
    return rows, data
