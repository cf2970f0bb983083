"""`tapkit serve`, `tapkit publish`, `tapkit report`: the operator's back office."""

import sys
import time

from host_tools.cli.output import console, money, print_json, print_jsonl, table
from host_tools.cli.spec import DB, KEYSTORE, TABLE_KIND, Command, arg


# --- serve / publish ----------------------------------------------------------------------------
def serve(a):
    from host_tools import keystore
    from host_tools.backoffice.ingest import Ingest
    from host_tools.backoffice.server import ServeError, make_server, parse_listen, parse_ranges

    ks = keystore.load(a.keystore)
    host, port = parse_listen(a.listen)
    ingest = Ingest(a.db, ks, parse_ranges(a.terminals))
    try:
        srv = make_server(ingest, host, port)
    except OSError as e:
        ingest.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    h, p = srv.server_address[:2]
    try:
        sys.stderr.write(f"tapkit serve: listening on http://{h}:{p} (store {a.db})\n")
        sys.stderr.flush()
        if a.json:  # JSON Lines, so a supervisor learns the bound port (--listen HOST:0)
            print_jsonl({"event": "listening", "url": f"http://{h}:{p}", "host": h, "port": p})
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:  # stopping the server is how this command ends
        pass
    finally:
        srv.server_close()
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

    payload = tables.payload_from_file(a.kind, a.file)
    with store_mod.open_store(a.db) as db:
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


# --- report -------------------------------------------------------------------------------------
def report(a):
    from host_tools import keystore
    from host_tools.backoffice import report as report_mod
    from host_tools.backoffice import store as store_mod

    ks = keystore.load(a.keystore) if a.keystore else None
    db = store_mod.open_store(a.db)
    try:
        rep = report_mod.report(db, ks=ks, tz=a.tz)
    finally:
        db.close()
    if a.json:
        print_json(rep)
    else:
        render_report(rep, console())
    return 0


def render_report(rep, con):
    """Print a report (backoffice.report.report) as tables on a rich console."""
    con.print(
        f"[bold]revenue[/bold] {money(rep['revenue'])} Rial from {rep['charges']} charges"
        + (
            f" less {rep['refunds']} refunds ({money(rep['refunded'])} Rial)"
            if rep.get("refunds")
            else ""
        )
        + f"; {rep['taps']} taps, {rep['refused']} refused"
    )
    cols = ("terminal", "taps", "charges", "revenue", "refused", "voids", "errors", "seq")
    con.print(
        table(
            "terminals",
            cols + ("last sync",),
            [
                (
                    r["terminal"],
                    r["taps"],
                    r["charges"],
                    money(r["revenue"]),
                    r["refused"],
                    r["voids"],
                    r["errors"],
                    f"{r['first_seq']}..{r['last_seq']}",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_sync"]))
                    if r.get("last_sync")
                    else "-",
                )
                for r in rep["terminals"]
            ],
            right=cols[:-1],
        )
    )
    cols = ("uid", "taps", "charged", "refused", "last balance")
    con.print(
        table(
            "cards",
            cols,
            [
                (r["uid"], r["taps"], money(r["charged"]), r["refused"], money(r["last_balance"]))
                for r in rep["cards"]
            ],
            right=cols[1:],
        )
    )
    if rep["refused_by_reason"]:
        con.print(
            table(
                "refused taps by reason",
                ("reason", "taps"),
                sorted(rep["refused_by_reason"].items()),
                right=("taps",),
            )
        )
    by = rep.get("revenue_by", {})
    for col in ("line", "profile", "day"):
        if by.get(col):
            con.print(
                table(
                    "revenue by " + col,
                    (col, "charges", "revenue"),
                    [(r[col], r["charges"], money(r["revenue"])) for r in by[col]],
                    right=("charges", "revenue") + (("line",) if col == "line" else ()),
                )
            )

    rec = rep["reconciliation"]
    chains = rec.get("mac_chain_breaks")
    if chains is None:
        con.print("MAC chains: not checked (give --keystore)")
    problems = (
        rec["sequence_gaps"]
        + (chains or [])
        + rec["repeated_counters"]
        + rec.get("counter_jumps", [])
        + rec.get("balance_breaks", [])
    )
    if rec.get("refused_uploads"):
        con.print(
            "refused uploads: "
            + ", ".join(f"{k} {v}" for k, v in sorted(rec["refused_uploads"].items()))
        )
    if not problems:
        con.print(
            "reconciliation: no sequence gaps, no repeated card counters, no counter jumps, "
            "no balance breaks" + ("" if chains is None else ", MAC chains intact")
        )
        return
    rows = []
    for g in rec["sequence_gaps"]:
        rows.append(
            (
                "sequence gap",
                f"terminal {g['terminal']}",
                f"seq {g['from_seq']}..{g['to_seq']} missing ({g['missing']})",
            )
        )
    for r in rec["repeated_counters"]:
        rows.append(
            (
                "repeated card counter",
                "card {}".format(r["uid"]),
                f"counter {r['counter']} charged {len(r['taps'])} times: "
                + ", ".join(f"terminal {x['terminal']} seq {x['seq']}" for x in r["taps"]),
            )
        )
    for b in chains or []:
        rows.append(("MAC chain broken", f"terminal {b['terminal']}", f"seq {b['seq']} altered"))
    for j in rec.get("counter_jumps", []):
        rows.append(
            (
                "card counter jump",
                "card {}".format(j["uid"]),
                f"counter {j['from_counter']} -> {j['to_counter']} ({j['missing']} taps missing) "
                f"at terminal {j['terminal']} seq {j['seq']}",
            )
        )
    for b in rec.get("balance_breaks", []):
        rows.append(
            (
                "balance break",
                "card {}".format(b["uid"]),
                f"counter {b['counter']}: balance {money(b['balance'])}, expected "
                f"{money(b['expected_balance'])} ({b['difference']:+,}) at terminal "
                f"{b['terminal']} seq {b['seq']}",
            )
        )
    con.print(table("reconciliation", ("problem", "where", "detail"), rows, right=()))


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
        ),
        json="lines",
    ),
    Command(
        ("publish",),
        publish,
        "publish a fare table or deny list for sync and serve",
        (
            TABLE_KIND,
            arg("--version", type=int, required=True, help="the table's version number"),
            DB,
            arg("file", help="the payload (card_schema/tariff.py format)"),
        ),
    ),
    Command(
        ("report",),
        report,
        "revenue, refusals and reconciliation",
        (
            DB,
            arg(
                "--keystore",
                metavar="FILE",
                help="issuer keystore: also re-verify every stored MAC chain with it",
            ),
            arg(
                "--tz",
                type=int,
                default=0,
                help="seconds east of UTC for the days (Tehran: 12600)",
            ),
        ),
    ),
)
GROUPS = {}
