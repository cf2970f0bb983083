"""`tapkit serve`, `tapkit publish`, `tapkit report`: the operator's back office."""

import sys
import time

from host_tools.cli.output import console, count, money, print_json, print_jsonl, table
from host_tools import UsageError
from host_tools.cli.spec import DB, KEYSTORE, Command, arg, lazy_choices


# --- serve / publish ----------------------------------------------------------------------------
def serve(a):
    import signal

    from host_tools import keystore
    from host_tools.backoffice import server
    from host_tools.backoffice import store as store_mod
    from host_tools.backoffice.ingest import Ingest

    ks = keystore.load(a.keystore)
    host, port = server.parse_listen(a.listen)
    ranges = server.parse_ranges(a.terminals)
    if a.workers < 1:
        raise server.ServeError(f"--workers {a.workers}: at least 1")
    server.check_tls(a.tls_cert, a.tls_key)
    server.parse_networks(a.metrics_from)
    store_mod.open_store(a.db).close()  # fails early: bad URL, server down (each worker reopens)
    sock = server.bind(host, port)
    h, p = sock.getsockname()[:2]
    url = f"{'https' if a.tls_cert else 'http'}://{h}:{p}"
    made = []

    def make():  # in each worker: its own store connections
        ingest = Ingest(a.db, ks, ranges)
        made.append(ingest)
        app = server.make_app(ingest, metrics_from=a.metrics_from)
        cfg = server.config(app, a.access_log, a.tls_cert, a.tls_key)
        import uvicorn

        return uvicorn.Server(cfg)

    def term(signum, frame):  # SIGTERM ends the command like Ctrl-C (after uvicorn's shutdown)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, term)
    try:
        sys.stderr.write(
            f"tapkit serve: listening on {url} (store {a.db}, {a.workers} worker"
            f"{'s' if a.workers > 1 else ''})\n"
        )
        sys.stderr.flush()
        if a.json:  # JSON Lines, so a supervisor learns the bound port (--listen HOST:0)
            print_jsonl({"event": "listening", "url": url, "host": h, "port": p})
        server.run_workers(sock, a.workers, make)
    except KeyboardInterrupt:  # stopping the server is how this command ends
        pass
    finally:
        sock.close()
        for ingest in made:
            ingest.close()
    sys.stderr.write("tapkit serve: stopped\n")
    if a.json:
        print_jsonl({"event": "stopped"})
    return 0


def publish(a):
    # the same JSON files as `tapkit tariff sign`, checked the same way: a table the terminals
    # would refuse is refused here, with the reason
    from host_tools.backoffice import store as store_mod
    from host_tools.fleet import tables

    if a.kind == "firmware":  # a release file (tapkit release build) and its rollout plan
        from host_tools.backoffice import releases
        from host_tools.fleet import release

        payload = release.read(a.file)
        with store_mod.open_store(a.db) as db:
            r = releases.publish(db, payload, a.rollout)
        r["bytes"] = len(payload)
        if a.json:
            print_json(r)
        else:
            print(
                f"firmware release {r['release']} for {r['board']} ({len(payload)} bytes), "
                f"rollout {r['plan']}: " + ("published" if r["new"] else "plan updated")
            )
        return 0
    if a.version is None:
        raise UsageError("publish --kind %s needs --version" % a.kind)
    payload = tables.payload_from_file(a.kind, a.file)
    with store_mod.open_store(a.db) as db:
        from host_tools.backoffice import denylist

        try:  # one version, one deny list, whichever kind carries it (denylist.py)
            denylist.check_version(db, tables.KINDS[a.kind], a.version)
        except ValueError as e:
            raise UsageError(str(e))
        new = db.put_config(tables.KINDS[a.kind], a.version, payload)
    r = {"kind": a.kind, "version": a.version, "bytes": len(payload), "new": new}
    if a.json:
        print_json(r)
    else:
        print(
            f"{a.kind} version {a.version} ({len(payload)} bytes) "
            + ("published" if new else "was already published")
        )
    return 0


def _publish_kinds():
    from card_schema import signed_host

    return sorted(signed_host.KINDS) + ["firmware"]


# --- report / audit -----------------------------------------------------------------------------
def _keys(a):
    from host_tools import keystore
    from host_tools.backoffice import audit

    return audit.keys_from(keystore.load(a.keystore))


def _period(a, db):
    from host_tools import TapkitError
    from host_tools.backoffice import audit
    from host_tools.backoffice import report as report_mod

    tz = a.tz if a.tz is not None else audit.tz_of(db)
    try:
        since = report_mod.parse_when(a.since, tz) if a.since else None
        until = report_mod.parse_when(a.until, tz) if a.until else None
    except report_mod.PeriodError as e:
        raise TapkitError(str(e)) from None
    if since is not None and until is not None and until <= since:
        raise TapkitError("--until must be after --since")
    return since, until, tz


def report(a):
    from host_tools.backoffice import report as report_mod
    from host_tools.backoffice import store as store_mod

    db = store_mod.open_store(a.db, create=False)
    try:
        keys = _keys(a)  # every figure is verified: no keystore, no report
        since, until, tz = _period(a, db)
        rep = report_mod.report(
            db, keys, since=since, until=until, tz=tz, cards=a.cards or None, recheck=not a.quick
        )
    finally:
        db.close()
    if a.csv:
        write_csv(rep, a.by or "day", sys.stdout)
    elif a.json:
        print_json(rep)
    else:
        render_report(rep, console(), by=a.by)
    return 0


def write_csv(rep, by, out):
    """One table of the report as CSV: revenue by terminal, line, profile, day or hour."""
    import csv

    rows = rep["revenue_by"][by]
    w = csv.writer(out, lineterminator="\n")
    cols = [by, "taps", "charges", "revenue", "unconfirmed_amount"]
    w.writerow(cols)
    for r in rows:
        w.writerow([r[c] for c in cols])


def audit_cmd(a):
    from host_tools.backoffice import audit
    from host_tools.backoffice import store as store_mod

    db = store_mod.open_store(a.db, create=False)
    try:
        keys = _keys(a)
        if a.tz is not None and a.tz != audit.tz_of(db):
            audit.set_tz(db, a.tz)
        out = audit.run(db, keys, full=a.full)
    finally:
        db.close()
    if a.json:
        print_json(out)
    else:
        print(
            "audited %(audited)d records: %(verified)d verified, %(quarantined)d quarantined, "
            "%(unverified)d unverified (%(seconds).1f s)" % out
        )
    return 0


def _period_text(rep):
    p = rep.get("period") or {}
    if p.get("since") is None and p.get("until") is None:
        return ""
    tz = p.get("tz") or 0

    def show(t):
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t + tz)) if t is not None else "..."

    return f" ({show(p.get('since'))} to {show(p.get('until'))})"


def render_report(rep, con, by=None):
    """Print a report (backoffice.report.report) as tables on a rich console."""
    con.print(
        f"[bold]revenue[/bold] {money(rep['revenue'])} Rial from "
        + count(rep["charges"], "confirmed charge")
        + (
            f" less {count(rep['refunds'], 'refund')} ({money(rep['refunded'])} Rial)"
            if rep.get("refunds")
            else ""
        )
        + f"; {rep['taps']} taps, {rep['refused']} refused"
        + _period_text(rep)
    )
    unc = rep["unconfirmed"]
    if unc["count"]:
        con.print(
            f"unconfirmed: {count(unc['count'], 'money record')}, {money(unc['amount'])} Rial (not in "
            "the revenue until the card's later state or a confirm record settles them)"
        )
    off = rep["office"]
    if off["topups"] or off["payouts"] or off["issued"]:
        con.print(
            f"card office: {count(off['topups'], 'top-up')} {money(off['topped_up'])} Rial, "
            f"{count(off['payouts'], 'card refund')} paid out {money(off['paid_out'])} Rial, "
            f"{count(off['issued'], 'card')} issued with {money(off['issued_balance'])} Rial"
        )
    cols = ("terminal", "taps", "charges", "revenue", "unconfirmed", "refused", "voids", "errors")
    con.print(
        table(
            "terminals and offices",
            cols + ("clock unset", "seq", "last sync"),
            [
                (
                    r["terminal"] if r.get("role") != "office" else f"{r['terminal']} (office)",
                    r["taps"],
                    r["charges"],
                    money(r["revenue"]),
                    money(r["unconfirmed_amount"]),
                    r["refused"],
                    r["voids"],
                    r["errors"],
                    r.get("clock_unset", 0),
                    f"{r['first_seq']}..{r['last_seq']}",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_sync"]))
                    if r.get("last_sync")
                    else "-",
                )
                for r in rep["terminals"]
            ],
            right=cols[1:] + ("clock unset", "seq"),
        )
    )
    cards = rep.get("cards")
    if cards and len(cards) <= 50:
        cols = ("uid", "taps", "charged", "refused", "last balance")
        con.print(
            table(
                "cards",
                cols,
                [
                    (
                        r["uid"],
                        r["taps"],
                        money(r["charged"]),
                        r["refused"],
                        money(r["last_balance"]),
                    )
                    for r in cards
                ],
                right=cols[1:],
            )
        )
    elif cards:
        con.print(f"{len(cards)} cards (--json lists them; `tapkit ledger UID` shows one)")
    if rep["refused_by_reason"]:
        con.print(
            table(
                "refused taps by reason",
                ("reason", "taps"),
                sorted(rep["refused_by_reason"].items()),
                right=("taps",),
            )
        )
    bys = rep.get("revenue_by", {})
    for col in [by] if by else ("line", "profile", "day"):
        if bys.get(col):
            con.print(
                table(
                    "revenue by " + col,
                    (col, "charges", "revenue", "unconfirmed"),
                    [
                        (r[col], r["charges"], money(r["revenue"]), money(r["unconfirmed_amount"]))
                        for r in bys[col]
                    ],
                    right=("charges", "revenue", "unconfirmed")
                    + (("line", "terminal") if col in ("line", "terminal") else ()),
                )
            )
    if unc["records"]:
        con.print(
            table(
                "unconfirmed money records (newest first)",
                ("terminal", "seq", "time", "card", "kind", "counter", "amount"),
                [
                    (
                        r["terminal"],
                        r["seq"],
                        time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["time"])),
                        r["uid"],
                        r["kind"],
                        r["counter"],
                        money(r["amount"]),
                    )
                    for r in unc["records"][:20]
                ],
                right=("seq", "counter", "amount"),
            )
        )
    _render_findings(rep, con)


_FINDING_NAMES = {
    "edited": "record edited",
    "mac": "MAC chain broken",
    "damaged": "record damaged",
    "unverified": "link not verifiable",
    "foreign_kind": "foreign record",
    "seq_gap": "sequence gap",
    "missing": "missing transaction",
    "balance": "balance break",
    "clone": "clone or rollback",
}


def _render_findings(rep, con):
    rec = rep["reconciliation"]
    aud = rep.get("audit") or {}
    if aud.get("not_audited"):
        con.print(f"{aud['not_audited']} records not audited yet (not counted)")
    rows = []
    for f in rec["findings"]:
        where = (
            f"terminal {f['terminal']} seq {f['seq']}"
            if f.get("seq") is not None and f["kind"] not in ("missing", "balance", "clone")
            else f"terminal {f['terminal']}"
            if f["kind"] == "seq_gap"
            else f"card {f['uid']}"
        )
        if f["kind"] == "seq_gap":
            where = f"terminal {f['terminal']}"
        rows.append((_FINDING_NAMES.get(f["kind"], f["kind"]), where, f["text"]))
    if rec.get("refused_uploads"):
        con.print(
            "refused uploads: "
            + ", ".join(f"{k} {v}" for k, v in sorted(rec["refused_uploads"].items()))
        )
    if not rows:
        con.print(
            "reconciliation: every record verified (MAC chains intact, columns as recorded), "
            "no sequence gaps, no missing transactions, no balance breaks, no clones"
        )
        return
    con.print(table("reconciliation", ("problem", "where", "detail"), rows, right=()))


# --- fleet / ledger ------------------------------------------------------------------------------
def fleet(a):
    from host_tools.backoffice import fleetstatus
    from host_tools.backoffice import store as store_mod

    with store_mod.open_store(a.db, create=False) as db:
        rows = fleetstatus.status(db, stale_hours=a.stale_hours, high_water=a.high_water)
    if a.json:
        print_json(
            {"terminals": rows, "alerts": [r["terminal"] for r in fleetstatus.alerts(rows)]}
        )
        return 0

    def ago(r):
        if not r["last_seen"]:
            return "never"
        return "%s (%s h, %s)" % (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_seen"])),
            r["hours_since"],
            r["via"] or "-",
        )

    cols = ("terminal", "last seen", "unsynced", "fill %", "drift s", "fw", "tables", "flags")
    console().print(
        table(
            "fleet status (stale after %g h, high water %d%%)"
            % (a.stale_hours, round(a.high_water * 100)),
            cols,
            [
                (
                    r["terminal"] if r["role"] != "office" else "%d (office)" % r["terminal"],
                    ago(r),
                    "-" if r["unsynced"] is None else r["unsynced"],
                    "-" if r["fill"] is None else r["fill"],
                    "-" if r["clock_drift"] is None else r["clock_drift"],
                    r["versions"].get("fw", "-"),
                    "fares %s deny %s"
                    % (r["versions"].get("fares_ver", "-"), r["versions"].get("deny_ver", "-")),
                    ", ".join(r["flags"]) or "ok",
                )
                for r in rows
            ],
            right=("unsynced", "fill %", "drift s"),
        )
    )
    return 0


def clones(a):
    from host_tools.backoffice import audit, denylist
    from host_tools.backoffice import store as store_mod

    with store_mod.open_store(a.db, create=False) as db:
        if a.auto:
            denylist.set_mode(db, "auto" if a.auto == "on" else "propose")
        audit.run(db, _keys(a))
        p = denylist.proposal(db)
        p["published"] = denylist.publish(db) if a.publish else None
        p["mode"] = denylist.mode(db)
    if a.json:
        print_json(p)
        return 0
    con = console()
    con.print(
        table(
            "cards whose state went back (clones, rollbacks)",
            ("card", "money lost (Rial)", "on the deny list", "finding"),
            [
                (c["uid"], money(c["lost"]), "yes" if c["listed"] else "no", c["text"])
                for c in p["cards"]
            ],
        )
    )
    if p["published"]:
        con.print(
            "deny list version %d published with %d new cards" % (p["published"], len(p["new"]))
        )
    elif p["new"]:
        con.print(
            "%d cards are not on the deny list: --publish adds them (action block); --auto on lets "
            "the audit do it" % len(p["new"])
        )
    con.print("clone deny entries: %s" % ("automatic" if p["mode"] == "auto" else "proposed"))
    return 0


def ledger_cmd(a):
    from host_tools.backoffice import audit, ledger, report
    from host_tools.backoffice import store as store_mod

    uid = a.uid.lower().replace(":", "")
    with store_mod.open_store(a.db, create=False) as db:
        audit.run(db, _keys(a))
        view = ledger.card_view(db, uid)
        report.locate_missing(view["findings"], db.terminals())
    if a.json:
        print_json(view)
        return 0
    con = console()
    st = view["state"]
    con.print(
        f"card {uid}: "
        + (
            f"counter {st['counter']}, balance {money(st['balance'])} Rial"
            if st
            else "no state known"
        )
    )
    cols = ("counter", "time", "source", "seq", "kind", "amount", "balance", "status")
    con.print(
        table(
            "ledger by the card's counter",
            cols,
            [
                (
                    r["counter"],
                    time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["time"])),
                    r["terminal"],
                    r["seq"],
                    r["kind"],
                    money(r["amount"]) if r["kind"] not in ("void", "confirm") else r["amount"],
                    money(r["balance"]) if r["balance"] >= 0 else "-",
                    r["status"],
                )
                for r in view["records"]
            ],
            right=("counter", "seq", "amount", "balance"),
        )
    )
    for f in view["findings"]:
        con.print(f"{_FINDING_NAMES.get(f['kind'], f['kind'])}: {f['text']}")
    return 0


# --- dashboard ---------------------------------------------------------------------------------
def dashboard(a):
    from host_tools.backoffice.dashboard import app as dash
    from host_tools.backoffice.server import parse_listen

    host, port = parse_listen(a.listen)
    backend = dash.Backend(
        a.db,
        _keys(a),
        audit_every=a.audit_every,
        stale_hours=a.stale_hours,
        high_water=a.high_water,
    )

    def ready(h, p):
        sys.stderr.write(f"tapkit dashboard: http://{h}:{p}/ (store {a.db})\n")
        sys.stderr.flush()
        if a.json:
            print_jsonl({"event": "listening", "url": f"http://{h}:{p}/", "host": h, "port": p})

    try:
        dash.serve(backend, host, port, ready)
    except OSError as e:
        from host_tools import TapkitError

        raise TapkitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return 0


STALE_HOURS = arg(
    "--stale-hours",
    type=float,
    default=24.0,
    metavar="H",
    help="flag a terminal not heard from for longer (default 24)",
)
HIGH_WATER = arg(
    "--high-water",
    type=float,
    default=0.8,
    metavar="F",
    help="flag a journal filled to this fraction at its last contact (default 0.8)",
)
_PERIOD = (
    arg("--since", help="from this time on: YYYY-MM-DD[THH:MM] (local to --tz) or unix seconds"),
    arg("--until", help="up to (not including) this time"),
    arg(
        "--tz",
        type=int,
        default=None,
        help="seconds east of UTC for days and hours (Tehran 12600; default: the store's)",
    ),
)


COMMANDS = (
    Command(
        ("serve",),
        serve,
        "HTTP ingest for terminals uploading over Wi-Fi",
        (
            DB,
            arg(
                "--listen",
                default="127.0.0.1:8080",
                metavar="HOST:PORT",
                help="address to listen on (0.0.0.0:8080: every interface; port 0: any free one)",
            ),
            KEYSTORE,
            arg(
                "--terminals",
                default="",
                help="terminal ids accepted, e.g. 1001-1999,2005 (terminals in the store always are)",
            ),
            arg(
                "--workers",
                type=int,
                default=1,
                help="server processes on the one socket (each with its own store connections)",
            ),
            arg("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)"),
            arg("--tls-key", metavar="PEM", help="the private key of --tls-cert"),
            arg(
                "--metrics-from",
                default="127.0.0.0/8,::1",
                metavar="NETS",
                help="who may read /metrics and /healthz (they name the fleet's terminals)",
            ),
            arg(
                "--no-access-log",
                dest="access_log",
                action="store_false",
                help="no line per request on stderr",
            ),
        ),
        json="lines",
    ),
    Command(
        ("publish",),
        publish,
        "publish a fare table or deny list for sync and serve",
        (
            arg(
                "--kind",
                choices=lazy_choices(_publish_kinds),
                required=True,
                metavar="KIND",
                help="what it is: %(choices)s",
            ),
            arg("--version", type=int, help="the table's version number (not for firmware)"),
            arg(
                "--rollout",
                default="all",
                help="firmware: which terminals get it: all, percent:N, terminals:ID,ID-ID, line:N",
            ),
            DB,
            arg("file", help="the payload (card_schema/tariff.py format), or a release (.tkr)"),
        ),
    ),
    Command(
        ("report",),
        report,
        "revenue, refusals and reconciliation (from verified records only)",
        (DB, KEYSTORE)
        + _PERIOD
        + (
            arg(
                "--by",
                choices=("terminal", "line", "profile", "day", "hour"),
                help="show (or with --csv write) only this table",
            ),
            arg("--csv", action="store_true", help="write the --by table (default day) as CSV"),
            arg("--cards", action="store_true", help="list every card (large stores: off)"),
            arg(
                "--quick",
                action="store_true",
                help="skip checking rows audited before (edits since then go unseen)",
            ),
        ),
    ),
    Command(
        ("fleet",),
        fleet,
        "fleet status: last contact, unsynced taps, journal fill, versions, drift, alerts",
        (
            DB,
            STALE_HOURS,
            HIGH_WATER,
        ),
    ),
    Command(
        ("clones",),
        clones,
        "cards whose state went back (clones, rollbacks): money lost, deny-list entries",
        (
            DB,
            KEYSTORE,
            arg("--publish", action="store_true", help="publish the next deny list with them"),
            arg(
                "--auto",
                choices=("on", "off"),
                help="on: the audit publishes new ones itself (store setting clone_deny)",
            ),
        ),
    ),
    Command(
        ("ledger",),
        ledger_cmd,
        "one card's ledger across terminals and offices, by its counter",
        (DB, KEYSTORE, arg("uid", help="the card's UID (hex, 14 digits)")),
    ),
    Command(
        ("dashboard",),
        dashboard,
        "the web dashboard: revenue, taps per hour, refusals, fleet board, findings, card lookup",
        (
            DB,
            KEYSTORE,
            arg("--listen", default="127.0.0.1:8081", metavar="HOST:PORT", help="where to serve"),
            arg(
                "--audit-every",
                type=float,
                default=10.0,
                metavar="S",
                help="seconds between audits of what arrived (default 10)",
            ),
            STALE_HOURS,
            HIGH_WATER,
        ),
        json="lines",
    ),
    Command(
        ("audit",),
        audit_cmd,
        "verify the records stored since the last audit (--full: all of them again)",
        (
            DB,
            KEYSTORE,
            arg("--full", action="store_true", help="every record again, rollups rebuilt"),
            arg(
                "--tz", type=int, default=None, help="the store's day offset (seconds east of UTC)"
            ),
        ),
    ),
)
GROUPS = {}
