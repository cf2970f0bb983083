"""The dashboard in a real browser: headless Chromium (the Debian package, scripts/setup.sh installs
it) driven by Playwright, against `tapkit dashboard` serving a store the virtual fleet filled.

The store: `tapkit demo`'s run (a virtual bus running the firmware on MicroPython, three cards
issued by office 9001, synced over its pty) plus two generated days of a 40-bus fleet (harness.
fleetgen: MAC-chained records, a terminal out of contact, an edited amount, a rolled-back card).
Each page is loaded, its numbers are compared with the store's, the charts must have drawn
something, the console must stay clean, and a screenshot is saved (paths printed)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from host_tools import keystore
from host_tools.backoffice import audit, report
from host_tools.backoffice import store as store_mod
from host_tools.backoffice.dashboard import app as dash
from host_tools.backoffice.dashboard.i18n import latin
from host_tools.sim import demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium is not installed (scripts/setup.sh installs it)"
)


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory):
    from harness import fleetgen

    work = tmp_path_factory.mktemp("dash")
    for _ in demo.run(str(work / "run")):
        pass
    url = "sqlite:///%s" % (work / "run" / "taps.db")
    ks_path = str(work / "run" / "issuer.keys")
    ks = keystore.load(ks_path)
    day = int(time.time()) // 86400 * 86400
    fleetgen.generate(
        url,
        ks,
        taps=6000,
        vehicles=40,
        days=2,
        start=day - 2 * 86400,  # the two days before today
        cards=300,
        offices=1,
        lines=8,
        first_terminal=2001,
        first_office=9101,
        card_prefix=7,
    )
    return url, ks_path, work


@pytest.fixture(scope="module")
def served(fleet_store):
    url, ks_path, work = fleet_store
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "dashboard", "--db", url, "--keystore", ks_path,
         "--listen", "127.0.0.1:0", "--audit-every", "1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(work),
    )  # fmt: skip
    try:
        event = json.loads(p.stdout.readline())
        assert event["event"] == "listening", event
        base = event["url"].rstrip("/")
        deadline = time.time() + 180
        while True:  # the background audit verifies the store first
            with urllib.request.urlopen(base + "/api/summary", timeout=30) as r:
                if json.loads(r.read())["not_audited"] == 0:
                    break
            assert time.time() < deadline, "the dashboard's audit did not finish"
            time.sleep(0.5)
        yield base, url, ks_path, work
    finally:
        p.terminate()
        p.wait(timeout=60)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def visit(browser, url, shots, name, capsys):
    """Load a page; returns (page, console errors). Saves its screenshot and prints its path."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    resp = page.goto(url, wait_until="networkidle")
    assert resp.status == 200, (url, resp.status)
    path = os.path.join(shots, name + ".png")
    page.screenshot(path=path, full_page=True)
    with capsys.disabled():
        print("\nscreenshot: %s" % path)
    return page, errors


def drawn(page, sel):
    """Pixels the chart in `sel` painted (uPlot draws on a canvas)."""
    return page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel + ' canvas');
            if (!c) return 0;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""",
        sel,
    )


def text(page, sel):
    return latin(page.inner_text(sel)).strip()


def test_every_page_in_chromium(served, browser, capsys, tmp_path):
    base, url, ks_path, work = served
    shots = os.environ.get("TAPKIT_SCREENSHOTS") or str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    with store_mod.open_store(url, create=False) as db:
        tz = audit.tz_of(db)
        since, until = dash._period(db, {}, tz)
        tot = report.totals(db, since, until, tz)
        refused_want = report.refused_by_reason(db, since, until, tz)
        found = audit.findings(db)
        n_terminals = len(db.terminals())
        clone = next(f for f in found if f["kind"] == "clone")
        edited = next(f for f in found if f["kind"] == "edited")
        missing = [f for f in found if f["kind"] == "missing"]
    assert missing, "the terminal out of contact leaves missing transactions"

    # overview: the figures are the store's; both charts drew; no console error
    page, errors = visit(browser, base + "/", shots, "overview", capsys)
    assert text(page, "#kpi-revenue") == format(tot["revenue"], ",") + " Rial"
    assert text(page, "#kpi-taps") == format(tot["taps"], ",")
    assert text(page, "#kpi-unconfirmed") == format(tot["unconfirmed_amount"], ",") + " Rial"
    assert text(page, "#kpi-findings") == format(len(found), ",")
    assert tot["revenue"] > 0 and tot["topped_up"] > 0
    assert text(page, "#kpi-topped-up") == format(tot["topped_up"], ",") + " Rial"
    assert drawn(page, "#chart-revenue") > 500 and drawn(page, "#chart-taps") > 500
    # the last 48 hours, every hour a point (an hour without taps is a 0, not a gap)
    assert int(page.get_attribute("#chart-taps", "data-points")) == 48
    refused = {
        r: int(n)
        for r, n in re.findall(
            r"<td>([a-z-]+)</td><td class=\"num\" data-value=\"(\d+)\"", page.content()
        )
    }
    assert refused == refused_want and refused
    assert errors == []
    page.close()

    # the same in Persian (right to left) and in Toman
    page, errors = visit(browser, base + "/?lang=fa&unit=toman", shots, "overview-fa", capsys)
    assert page.get_attribute("html", "dir") == "rtl"
    assert "درآمد تأییدشده" in page.inner_text("body")
    assert text(page, "#kpi-revenue") == format(tot["revenue"] // 10, ",") + " تومان"
    assert drawn(page, "#chart-revenue") > 500 and errors == []
    page.close()

    # the fleet board: every source, the one out of contact flagged
    page, errors = visit(browser, base + "/fleet", shots, "fleet", capsys)
    assert text(page, "#n-terminals") == str(n_terminals)
    assert "2002" in page.inner_text("#alerts") and errors == []
    page.close()

    # findings, and their links: the edited record, the rolled-back card
    page, errors = visit(browser, base + "/findings", shots, "findings", capsys)
    assert page.locator("tr.finding").count() == min(len(found), dash.PAGE) and errors == []
    page.click("tr.finding.edited a.to-record")
    page.wait_for_load_state("networkidle")
    assert "/record/%d/%d" % (edited["terminal"], edited["seq"]) in page.url
    assert page.inner_text("#status") == "quarantined" and page.locator("tr.differs").count() == 1
    page.screenshot(path=os.path.join(shots, "record.png"), full_page=True)
    with capsys.disabled():
        print("\nscreenshot: %s" % os.path.join(shots, "record.png"))
    page.close()

    # a card with a missing transaction: its page says where it may be (the bus out of contact)
    page, errors = visit(
        browser, base + "/card?uid=" + missing[0]["uid"], shots, "card-missing", capsys
    )
    body = page.inner_text("body")
    assert "missing transaction" in body and "may be on terminal 2002 (last seen" in body
    assert errors == []
    page.close()

    page, errors = visit(browser, base + "/card?uid=" + clone["uid"], shots, "card", capsys)
    assert "clone or rollback" in page.inner_text("body") and errors == []
    rows = page.locator("#ledger tr").count() - 1
    with store_mod.open_store(url, create=False) as db:
        assert rows == int(db._one("SELECT COUNT(*) FROM taps WHERE uid = ?", (clone["uid"],))[0])
    page.close()

    # card lookup of a demo card: its ledger, newest state as the bus left it
    with store_mod.open_store(url, create=False) as db:
        uid = db._one("SELECT uid FROM taps WHERE terminal = 1001 AND kind = 'charge'")[0]
        state = db._one(
            "SELECT counter, balance FROM taps WHERE uid = ? AND kind = 'charge' ORDER BY counter "
            "DESC LIMIT 1",
            (uid,),
        )
    page, errors = visit(browser, base + "/card?uid=" + uid, shots, "card-demo", capsys)
    assert text(page, "#state-counter") == str(state[0])
    assert text(page, "#state-balance") == format(state[1], ",") + " Rial" and errors == []
    page.close()
