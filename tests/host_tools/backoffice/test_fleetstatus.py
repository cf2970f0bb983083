"""Fleet status (host_tools/backoffice/fleetstatus.py), its Prometheus gauges and `tapkit fleet`,
`tapkit ledger`: what the store heard from each terminal at its last contact, flagged."""

import json
import time

from prometheus_client.parser import text_string_to_metric_families

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import fleetstatus, metrics
from host_tools.backoffice import store as store_mod
from host_tools.cli.app import main

NOW = int(time.time())


def make(tmp_path):
    ks_path = str(tmp_path / "issuer.keys")
    ks = keystore.init(ks_path)
    url = f"sqlite:///{tmp_path / 'taps.db'}"
    db = store_mod.open_store(url)
    key = keystore.terminal_key(ks, 1001)
    prev, recs = taprecord.GENESIS_MAC, []
    for i, kind in enumerate((taprecord.KIND_CHARGE, taprecord_host.KIND_ERROR)):
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf,
            prev,
            key,
            seq=i + 1,
            time=NOW - 600,
            terminal=1001,
            uid=bytes([4, 9, 9, 9, 9, 9, 9]),
            kind=kind,
            result=taprecord_host.RESULT_CARD_ERROR if i else 0,
            counter=3,
            amount=25000,
            balance=75000,
        )
        recs.append(bytes(buf))
    db.ingest(1001, recs, key)
    # 1001 over USB: it held 850 of 1,020 slots unsynced, its clock 90 s fast
    info = {"fw": "0.3.1", "fares_ver": 7, "deny_ver": 2, "unsynced": 850, "capacity": 1020}
    db.note_sync(1001, dict(info, clock_drift=90, diag=["12:00 reader: no answer"]), 2, via="usb")
    # 1002 last heard two days ago over Wi-Fi; 1003 only known from a refused upload
    db.note_sync(1002, {"fares_ver": 6, "deny_ver": 2}, 0, via="wifi")
    db._exec(
        "UPDATE terminals SET last_wifi = ?, last_sync = ? WHERE id = 1002", (NOW - 2 * 86400,) * 2
    )
    db.note_reject(1003, "wifi", "bad_mac: MAC chain broken at seq 4")
    db._exec("INSERT INTO terminals (id, last_seq) VALUES (1003, 0)")
    return db, url, ks_path


def test_status_flags_and_alerts(tmp_path):
    db, _url, _ks = make(tmp_path)
    rows = {r["terminal"]: r for r in fleetstatus.status(db, now=NOW, stale_hours=24)}
    t1 = rows[1001]
    assert (t1["via"], t1["unsynced"], t1["fill"], t1["clock_drift"]) == ("usb", 850, 83.3, 90)
    assert t1["versions"] == {"fw": "0.3.1", "fares_ver": 7, "deny_ver": 2}
    assert t1["flags"] == ["high_water", "drift"]
    whats = [e["what"] for e in t1["errors"]]
    assert "error record: card-error" in whats and "12:00 reader: no answer" in whats
    t2 = rows[1002]
    assert (t2["via"], t2["flags"], t2["hours_since"]) == ("wifi", ["stale"], 48.0)
    assert rows[1003]["flags"] == ["never", "rejects"]
    assert [r["terminal"] for r in fleetstatus.alerts(list(rows.values()))] == [1001, 1002, 1003]
    # the hours are the operator's: 72 h is not stale yet, and a lower high water flags sooner
    rows = {r["terminal"]: r for r in fleetstatus.status(db, now=NOW, stale_hours=72)}
    assert rows[1002]["flags"] == []
    db.close()


def test_prometheus_gauges_per_terminal(tmp_path):
    db, _url, _ks = make(tmp_path)
    fams = {f.name: f for f in text_string_to_metric_families(metrics.fleet_metrics(db).decode())}
    by = {(s.name, s.labels.get("terminal")): s.value for f in fams.values() for s in f.samples}
    assert by[("tapkit_terminal_unsynced", "1001")] == 850
    assert round(by[("tapkit_terminal_journal_fill_ratio", "1001")], 3) == 0.833
    assert by[("tapkit_terminal_clock_drift_seconds", "1001")] == 90
    assert (
        by[("tapkit_terminal_stale", "1002")] == 1 and by[("tapkit_terminal_stale", "1001")] == 0
    )
    assert by[("tapkit_terminal_last_seen_seconds", "1002")] == NOW - 2 * 86400
    assert by[("tapkit_unaudited_records", None)] == 2
    db.close()


def test_fleet_and_ledger_commands(tmp_path, capsys):
    db, url, ks = make(tmp_path)
    db.close()
    assert main(["fleet", "--db", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["alerts"] == [1001, 1002, 1003]
    assert main(["fleet", "--db", url, "--stale-hours", "72", "--high-water", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "stale after 72 h, high water 90%" in text and "drift" in text
    assert main(["ledger", "--db", url, "--keystore", ks, "04:09:09:09:09:09:09", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["status"]) for r in view["records"]] == [
        ("charge", "unconfirmed"),
        ("error", "ok"),
    ]
    assert view["state"] == {"counter": 3, "balance": 75000, "time": NOW - 600}
    rc = main(["fleet", "--db", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert rc != 0 and not (tmp_path / "nope.db").exists()
