"""Revenue and reconciliation report over the tap store.

    rep = report(store, ks=keystore.load(path))   # a JSON-ready dict; ks: also check the MAC chains
    render_table(rep, rich.console.Console())

Revenue per terminal, line, profile and day (UTC days, or shifted by `tz` seconds). Reconciliation:
- sequence gaps: holes in a terminal's stored sequence (records not synced here, or lost);
- MAC chains (with the keystore): every stored record re-verified against its stored predecessor with
  the terminal's key; a break means the store was altered after ingest;
- repeated card counters: one counter charged twice (a cloned card or a replayed transaction);
- counter jumps: a card's counter skips values while its balance fell at least by the charge: taps
  of that card are missing from the store (a terminal not synced yet, or lost records). A skip with a
  balance that rose is a top-up at the card office (it writes a trip record too) and is not listed;
- balance breaks: consecutive counters whose balances do not follow (previous balance - this charge):
  money that appeared or vanished on the card outside any recorded operation;
- refused uploads: Wi-Fi batches the server refused (unknown terminal, bad MAC), by reason.

Amounts are integer Rial. POS refunds (kind refund) count as negative revenue. A charge voided by a later void record (the card commit failed after the
terminal journalled it) counts as no money. "Refused" means kind refused (insufficient balance) or denied
(deny list, blocked, expired card).
"""

import time

from card_schema import taprecord


def _day(n):
    return time.strftime("%Y-%m-%d", time.gmtime(n * 86400))


def card_checks(charges):
    """(counter_jumps, balance_breaks) over store.card_charges() rows."""
    jumps, breaks = [], []
    prev = None
    for row in charges:
        uid, counter, term, seq, _t, amount, balance = row
        if prev is not None and prev[0] == uid and counter > prev[1]:
            expected = prev[6] - amount
            where = {"terminal": term, "seq": seq, "prev_terminal": prev[2], "prev_seq": prev[3]}
            if counter == prev[1] + 1 and balance != expected:
                breaks.append(
                    dict(
                        uid=uid,
                        counter=counter,
                        expected_balance=expected,
                        balance=balance,
                        difference=balance - expected,
                        **where,
                    )
                )
            elif counter > prev[1] + 1 and balance <= expected:
                jumps.append(
                    dict(
                        uid=uid,
                        from_counter=prev[1],
                        to_counter=counter,
                        missing=counter - prev[1] - 1,
                        **where,
                    )
                )
        prev = row
    return jumps, breaks


def chain_breaks(store, ks):
    """[{terminal, seq}]: stored records whose MAC does not follow from the stored predecessor."""
    from host_tools import keystore

    out = []
    for t in store.terminals():
        tid = t["id"]
        key = keystore.terminal_key(ks, tid)
        prev_seq, prev_mac = 0, taprecord.GENESIS_MAC
        for raw in store.raw_records(tid):
            seq = taprecord.seq_of(raw)
            if seq == prev_seq + 1 and not taprecord.mac_ok(raw, prev_mac, key):
                out.append({"terminal": tid, "seq": seq})
            prev_seq, prev_mac = seq, raw[taprecord.BODY : taprecord.BODY + 8]
    return out


def report(store, ks=None, tz=0):
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
    by = {
        col: [
            {col: (_day(k) if col == "day" else k), "charges": n, "revenue": a}
            for k, n, a in store.revenue_by(col, tz)
        ]
        for col in ("terminal", "line", "profile", "day")
    }
    jumps, breaks = card_checks(store.card_charges())
    uploads = {}
    for r in store.rejects():
        reason = r["reason"].split(":", 1)[0]
        uploads[reason] = uploads.get(reason, 0) + 1
    return {
        "generated_at": int(time.time()),
        "revenue_by": by,
        "taps": sum(t["taps"] for t in terminals),
        "revenue": revenue,
        "charges": charges,
        "refunds": store.refunds()[0],
        "refunded": store.refunds()[1],
        "refused": sum(refused.values()),
        "refused_by_reason": refused,
        "cards": cards,
        "terminals": terminals,
        "reconciliation": {
            "sequence_gaps": gaps,
            "mac_chain_breaks": chain_breaks(store, ks) if ks is not None else None,
            "repeated_counters": repeats,
            "counter_jumps": jumps,
            "balance_breaks": breaks,
            "refused_uploads": uploads,
        },
    }


def _money(v):
    return "-" if v is None else f"{v:,}"


def render_table(rep, console):
    """Print the report as rich tables on `console`."""
    from rich.table import Table

    console.print(
        f"[bold]revenue[/bold] {_money(rep['revenue'])} Rial from {rep['charges']} charges"
        + (
            f" less {rep['refunds']} refunds ({_money(rep['refunded'])} Rial)"
            if rep.get("refunds")
            else ""
        )
        + f"; {rep['taps']} taps, {rep['refused']} refused"
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

    by = rep.get("revenue_by", {})
    for col in ("line", "profile", "day"):
        if not by.get(col):
            continue
        t = Table(title="revenue by " + col)
        t.add_column(col, justify="right" if col == "line" else "left")
        t.add_column("charges", justify="right")
        t.add_column("revenue", justify="right")
        for r in by[col]:
            t.add_row(str(r[col]), str(r["charges"]), _money(r["revenue"]))
        console.print(t)

    rec = rep["reconciliation"]
    chains = rec.get("mac_chain_breaks")
    if chains is None:
        console.print("MAC chains: not checked (give --keystore)")
    problems = (
        rec["sequence_gaps"]
        + (chains or [])
        + rec["repeated_counters"]
        + rec.get("counter_jumps", [])
        + rec.get("balance_breaks", [])
    )
    if rec.get("refused_uploads"):
        console.print(
            "refused uploads: "
            + ", ".join(f"{k} {v}" for k, v in sorted(rec["refused_uploads"].items()))
        )
    if not problems:
        console.print(
            "reconciliation: no sequence gaps, no repeated card counters, no counter jumps, "
            "no balance breaks" + ("" if chains is None else ", MAC chains intact")
        )
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
    for b in chains or []:
        t.add_row("MAC chain broken", f"terminal {b['terminal']}", f"seq {b['seq']} altered")
    for j in rec.get("counter_jumps", []):
        t.add_row(
            "card counter jump",
            "card {}".format(j["uid"]),
            f"counter {j['from_counter']} -> {j['to_counter']} ({j['missing']} taps missing) "
            f"at terminal {j['terminal']} seq {j['seq']}",
        )
    for b in rec.get("balance_breaks", []):
        t.add_row(
            "balance break",
            "card {}".format(b["uid"]),
            f"counter {b['counter']}: balance {_money(b['balance'])}, expected "
            f"{_money(b['expected_balance'])} ({b['difference']:+,}) at terminal {b['terminal']} "
            f"seq {b['seq']}",
        )
    console.print(t)
