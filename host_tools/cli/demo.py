"""`tapkit demo`: renders the demo's steps (host_tools/sim/demo.py) as they happen."""

import json

from host_tools.cli.backoffice import render_report
from host_tools.cli.fleet import sync_table
from host_tools.cli.output import console, sync_progress, table
from host_tools.cli.spec import HEAP, Command, arg


def demo(a):
    from host_tools.sim import demo as demo_mod

    # with --json the story goes to stderr and stdout carries only the JSON
    con = console(stderr=a.json)
    rep = None
    for kind, d in demo_mod.run(a.dir, heap=a.heap, progress=None if a.json else sync_progress()):
        if kind == "title":
            con.rule("[bold]" + d)
        elif kind == "step":
            con.print(d)
        elif kind == "card":
            con.print(
                "      card %-7s %-8s %9s Rial  (%s)"
                % (d["name"], d["holder"], format(d["balance"], ","), d["path"])
            )
        elif kind == "port":
            con.print("      serial port %s" % d)
        elif kind == "tap":
            con.print(
                "      %-7s tap %d: %-7s %s"
                % (d["card"], d["n"], d["buzzer"], d["display"].replace("DISPLAY|", ""))
            )
        elif kind == "sync":
            con.print(sync_table(d["port"], d["summary"]))
        elif kind == "report":
            rep = d
            render_report(d, con)
        elif kind == "cards":
            con.print(_cards_table(d))
            if a.json:
                print(json.dumps({"report": rep, "cards": d}, indent=1, default=str))
        elif kind == "done":
            con.print(
                "[green]demo complete: every tap is in the ledger and every card balance agrees"
            )
    return 0


def _cards_table(rows):
    cols = (
        "card",
        "holder",
        "initial (Rial)",
        "charged (Rial)",
        "unconfirmed (Rial)",
        "refused",
        "card balance (Rial)",
        "ledger balance (Rial)",
        "agree",
    )
    return table(
        "cards: read back from the card vs the ledger",
        cols,
        [
            (
                r["card"],
                r["holder"],
                format(r["initial"], ","),
                format(r["charged"], ","),
                format(r.get("unconfirmed", 0), ","),
                r["refused"],
                format(r["card_balance"], ","),
                format(r["ledger_balance"], ",") if r["ledger_balance"] is not None else "-",
                "yes" if r["agree"] else "NO",
            )
            for r in rows
        ],
        right=[c for c in cols if "(Rial)" in c or c == "refused"],
    )


COMMANDS = (
    Command(
        ("demo",),
        demo,
        "the virtual fleet, end to end",
        (
            arg("--dir", default="demo-run", help="where the run's cards, boards and store go"),
            HEAP,
        ),
    ),
)
GROUPS = {}
