"""The dashboard (host_tools/backoffice/dashboard) in process (Starlette's test client), on SQLite
and PostgreSQL: every page answers, its numbers are the report's, Persian pages are right to left
and amounts go to Toman; findings link to their records and cards. The real-browser test is
tests/e2e/test_dashboard_browser.py."""

import re

import pytest

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import audit, report
from host_tools.backoffice import store as store_mod
from host_tools.backoffice.dashboard import app as dash
from host_tools.backoffice.dashboard.i18n import latin
from host_tools.cli.app import main

T0 = 1700000000
FARE = 25000


def fill(url, ks):
    """Two terminals, twenty cards, a day of rides, one refusal, one edited row."""
    db = store_mod.open_store(url)
    for tid in (1001, 1002):
        key = keystore.terminal_key(ks, tid)
        prev, recs = taprecord.GENESIS_MAC, []
        for i in range(40):
            card, n = i % 20, i // 20
            kind = taprecord.KIND_CHARGE if i != 7 else taprecord.KIND_REFUSED
            buf = bytearray(taprecord.SIZE)
            prev = taprecord.pack_into(
                buf,
                prev,
                key,
                seq=len(recs) + 1,
                time=T0 + 900 * i + (tid - 1001) * 40000,
                terminal=tid,
                uid=bytes([4, tid - 1000, card, 0, 0, 0, 0x80]),
                kind=kind,
                result=0 if kind == taprecord.KIND_CHARGE else taprecord.RESULT_INSUFFICIENT,
                counter=n + 1 if kind == taprecord.KIND_CHARGE else n,
                amount=FARE,
                balance=100000 - FARE * (n + 1),
                line=10 + tid - 1001,
            )
            recs.append(bytes(buf))
            if kind == taprecord.KIND_CHARGE:
                buf = bytearray(taprecord.SIZE)
                prev = taprecord.pack_into(
                    buf,
                    prev,
                    key,
                    seq=len(recs) + 1,
                    time=T0 + 900 * i + (tid - 1001) * 40000 + 1,
                    terminal=tid,
                    uid=bytes([4, tid - 1000, card, 0, 0, 0, 0x80]),
                    kind=taprecord_host.KIND_CONFIRM,
                    result=taprecord_host.RESULT_COMMIT_ANSWER,
                    counter=n + 1,
                    amount=len(recs),
                    balance=100000 - FARE * (n + 1),
                )
                recs.append(bytes(buf))
        db.ingest(tid, recs, key)
        db.note_sync(tid, {"fw": "0.3.1", "unsynced": 5, "capacity": 1020}, len(recs), via="usb")
    db._exec("UPDATE taps SET amount = 1000 WHERE terminal = 1002 AND seq = 3")
    db._exec("UPDATE terminals SET last_usb = ?, last_sync = ? WHERE id = 1002", (T0, T0))
    return db


@pytest.fixture
def client(store_url, tmp_path):
    from starlette.testclient import TestClient

    ks = keystore.init(str(tmp_path / "issuer.keys"))
    fill(store_url, ks).close()
    backend = dash.Backend(store_url, audit.keys_from(ks))
    backend.audit_once()
    with TestClient(dash.make_app(backend)) as c:
        c.backend = backend
        yield c
    backend.close()


def shown(html, id_):
    m = re.search(r'id="%s">([^<]*)<' % id_, html)
    assert m, id_
    return latin(m.group(1))


def test_every_page_answers_and_shows_the_stores_figures(client):
    with client.backend.store() as s:
        since, until = dash._period(s, {}, 0)
        rep = report.totals(s, since, until)
        found = audit.findings(s)
    html = client.get("/").text
    assert shown(html, "kpi-revenue") == format(rep["revenue"], ",") + " Rial"
    assert rep["revenue"] == 2 * 39 * FARE - FARE  # the edited row is left out
    assert shown(html, "kpi-taps") == format(rep["taps"], ",") == "79"  # (the edited one: none)
    assert shown(html, "kpi-refused") == "2" and shown(html, "kpi-findings") == str(len(found))
    assert 'id="chart-revenue"' in html and "/static/uPlot.iife.min.js" in html
    assert '<script type="application/json" id="chart-data">' in html
    fa = client.get("/?lang=fa&unit=toman").text
    assert '<html lang="fa" dir="rtl">' in fa and "درآمد تأییدشده" in fa
    assert shown(fa, "kpi-revenue") == format(rep["revenue"] // 10, ",") + " تومان"
    for path in ("/fleet", "/findings", "/card", "/api/summary", "/metrics", "/healthz"):
        assert client.get(path).status_code == 200, path
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert client.get("/nope").status_code == 404
    assert client.get("/?since=yesterday").status_code == 400


def test_findings_link_to_the_record_and_the_card(client):
    html = client.get("/findings").text
    m = re.search(r'class="to-record" href="([^"]+)"', html)
    assert m and "/record/1002/3?" in m.group(1)
    rec = client.get(m.group(1)).text
    assert 'id="status">quarantined<' in rec and 'class="differs"' in rec
    assert "column amount edited: stored 1000, the record says 25000" in rec
    card = client.get("/card?uid=04:02:01:00:00:00:80").text
    assert shown(card, "state-counter") == "2" and shown(card, "state-balance") == "50,000 Rial"
    assert card.count('<tr class="st-') == 4  # two charges, their confirms


def test_fleet_board_and_alerts(client):
    html = client.get("/fleet").text
    assert shown(html, "n-terminals") == "2" and shown(html, "n-alerts") == "1"
    assert '<tr class="alert-row" data-terminal="1002">' in html and "stale" in html
    summary = client.get("/api/summary").json()
    assert summary["alerts"] == [{"terminal": 1002, "flags": ["stale"]}]
    assert 'tapkit_terminal_unsynced{role="terminal",terminal="1001"} 5.0' in (
        client.get("/metrics").text
    )


def test_dashboard_command_on_a_missing_store(tmp_path, capsys):
    ks = str(tmp_path / "k")
    keystore.init(ks)
    rc = main(["dashboard", "--db", f"sqlite:///{tmp_path / 'typo.db'}", "--keystore", ks])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("tapkit: error: no store at ") and err.count("\n") == 1
    assert not (tmp_path / "typo.db").exists()


def test_fleet_board_shows_the_firmware_rollouts(client, store_url):
    """A published release's rollout on the fleet board: targeted, running, rolled back, and why."""
    from card_schema import release_host
    from host_tools.backoffice import releases

    payload = release_host.pack(7, "bus-validator", "esp32", "0.2.0", {"firmware/app.mpy": b"x"})
    with store_mod.open_store(store_url) as db:
        releases.publish(db, payload, "terminals:1001-1003")
        for tid, ota in ((1001, [0, 7, 0, 7, 1, ""]), (1002, [0, 6, 0, 7, 2, "reader: broken"])):
            releases.note_status(
                db, tid, releases.from_info({"board": "bus-validator", "ota": ota})
            )
        releases.note_status(
            db, 1003, releases.from_info({"board": "bus-validator", "ota": [2, 6, 7, 0, 0, ""]})
        )
    html = client.get("/fleet").text
    row = re.search(r'<tr data-release="7">(.*?)</tr>', html).group(1)
    cells = {k: latin(v) for k, v in re.findall(r'<td class="num ([a-z-]+)">([^<]*)<', row)}
    assert cells == {
        "targeted": "3",
        "running": "1",
        "in-progress": "1",
        "rolled-back": "1",
        "refused": "0",
    }
    assert "rolled back: reader: broken" in html
