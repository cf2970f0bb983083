"""Revenue and reconciliation report over the tap store.

    rep = report(store)                 # a JSON-ready dict
    render_table(rep, rich.console.Console())

Amounts are integer Rial. A charge voided by a later void record (the card commit failed after the
terminal journalled it) counts as no money. "Refused" means kind refused (insufficient balance) or denied
(deny list, blocked, expired card).
"""

import time


def report(store):
    """Everything the `tapkit report` command shows, as plain data."""
    cards = [
        {"uid": uid, "taps": taps, "charged": charged, "refused": refused, "last_balance": balance}
        for uid, taps, charged, refused, balance in store.card_totals()
    ]
    revenue, charges = store.revenue()
    refused = {reason: n for reason, n in store.refused_by_reason()}
    terminals = []
    for row in store.terminal_totals():
        tid, taps, n_charges, rev, n_refused, voids, errors, first, last, tmin, tmax = row
        t = store.terminal(tid) or {}
        terminals.append(
            {
                "terminal": tid,
                "taps": taps,
                "charges": n_charges,
                "revenue": rev,
                "refused": n_refused,
                "voids": voids,
                "errors": errors,
                "first_seq": first,
                "last_seq": last,
                "first_time": tmin,
                "last_time": tmax,
                "last_sync": t.get("last_sync"),
                "acked_seq": t.get("acked_seq"),
            }
        )
    gaps = [
        {"terminal": t, "from_seq": a, "to_seq": b, "missing": b - a + 1}
        for t, a, b in store.sequence_gaps()
    ]
    repeats = [
        {"uid": uid, "counter": c, "taps": [{"terminal": t, "seq": s} for t, s in where]}
        for uid, c, where in store.repeated_counters()
    ]
    return {
        "generated_at": int(time.time()),
        "taps": sum(t["taps"] for t in terminals),
        "revenue": revenue,
        "charges": charges,
        "refused": sum(refused.values()),
        "refused_by_reason": refused,
        "cards": cards,
        "terminals": terminals,
        "reconciliation": {"sequence_gaps": gaps, "repeated_counters": repeats},
    }


def _money(v):
    return "-" if v is None else f"{v:,}"


def render_table(rep, console):
    """Print the report as rich tables on `console`."""
    from rich.table import Table

    console.print(
        f"[bold]revenue[/bold] {_money(rep['revenue'])} Rial from {rep['charges']} charges; "
        f"{rep['taps']} taps, {rep['refused']} refused"
    )

    t = Table(title="terminals")
    for c in (
        "terminal",
        "taps",
        "charges",
        "revenue",
        "refused",
        "voids",
        "errors",
        "seq",
        "last sync",
    ):
        t.add_column(c, justify="right" if c not in ("seq", "last sync") else "left")
    for r in rep["terminals"]:
        sync = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_sync"]))
            if r.get("last_sync")
            else "-"
        )
        t.add_row(
            str(r["terminal"]),
            str(r["taps"]),
            str(r["charges"]),
            _money(r["revenue"]),
            str(r["refused"]),
            str(r["voids"]),
            str(r["errors"]),
            f"{r['first_seq']}..{r['last_seq']}",
            sync,
        )
    console.print(t)

    t = Table(title="cards")
    for c in ("uid", "taps", "charged", "refused", "last balance"):
        t.add_column(c, justify="left" if c == "uid" else "right")
    for r in rep["cards"]:
        t.add_row(
            r["uid"],
            str(r["taps"]),
            _money(r["charged"]),
            str(r["refused"]),
            _money(r["last_balance"]),
        )
    console.print(t)

    if rep["refused_by_reason"]:
        t = Table(title="refused taps by reason")
        t.add_column("reason")
        t.add_column("taps", justify="right")
        for reason, n in sorted(rep["refused_by_reason"].items()):
            t.add_row(reason, str(n))
        console.print(t)

    rec = rep["reconciliation"]
    if not rec["sequence_gaps"] and not rec["repeated_counters"]:
        console.print("reconciliation: no sequence gaps, no repeated card counters")
        return
    t = Table(title="reconciliation")
    t.add_column("problem")
    t.add_column("where")
    t.add_column("detail")
    for g in rec["sequence_gaps"]:
        t.add_row(
            "sequence gap",
            f"terminal {g['terminal']}",
            f"seq {g['from_seq']}..{g['to_seq']} missing ({g['missing']})",
        )
    for r in rec["repeated_counters"]:
        t.add_row(
            "repeated card counter",
            "card {}".format(r["uid"]),
            f"counter {r['counter']} charged {len(r['taps'])} times: "
            + ", ".join(f"terminal {x['terminal']} seq {x['seq']}" for x in r["taps"]),
        )
    console.print(t)
