"""Revenue and reconciliation report over the tap store.

    rep = report(store, ks=keystore.load(path))   # a JSON-ready dict; ks: also check the MAC chains

Data only: `tapkit report` renders it (host_tools/cli/backoffice.py).

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
from host_tools import keystore


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
