"""The per-card ledger: a card's transactions from every terminal and office, by the card's counter.

    statuses, found = resolve(rows)     # rows: one card's audited records (dicts), any order
    settle(store, uids, rollups, now)   # what the audit calls for the cards whose records changed

Data only; the audit (audit.py) calls `settle` and the report and dashboard read the statuses it
leaves in taps.status and the card findings it leaves in the findings table.
"""

import bisect
import json

MONEY_KINDS = ("charge", "refund", "issue", "topup", "payout")
REF_KINDS = ("void", "confirm")
BAD = ("quarantined", "unverified")
CARD_FINDINGS = ("missing", "balance", "clone", "minted")
LOADS = ("issue", "topup", "refund")  # what puts money on a card: an office's issue and top-ups,
# a POS refund
NO_UID = "00" * 7

_FIELDS = (
    "terminal",
    "seq",
    "time",
    "uid",
    "kind",
    "result",
    "profile",
    "counter",
    "amount",
    "balance",
    "line",
    "status",
)


SLACK = 120  # seconds of clock disagreement between sources the time rule tolerates


def _delta(r):
    """What a card transaction did to the balance."""
    k = r["kind"]
    if k in ("charge", "payout"):
        return -r["amount"]
    if k in ("refund", "topup", "issue"):
        return r["amount"]
    return 0  # a terminal's block write (deny list, action block)


def is_claim(r):
    """A record of a card transaction: it says the card went from counter - 1 to counter."""
    k = r["kind"]
    if k in MONEY_KINDS:
        return r["counter"] > 0
    # the deny list's block action writes a trip record (counter + 1, true balance, amount 0)
    return k == "denied" and r["result"] == "deny-list" and r["balance"] >= 0 and r["counter"] > 0


def observation(r):
    """(counter, balance or None) of the card state a record that is no claim read, or None."""
    k = r["kind"]
    if k == "issue" and r["counter"] == 0:
        return 0, 0
    if k in ("refused", "denied", "block", "unblock") and not is_claim(r) and r["counter"] > 0:
        # (counter 0 on a terminal's record: unknown, the card's trip log was not read)
        return r["counter"], r["balance"] if r["balance"] >= 0 else None
    return None


def _money(v):
    return format(v, ",")


def _at(r):
    return f"terminal {r['terminal']} seq {r['seq']}"


def resolve(rows):
    """({(terminal, seq): status} for the money records, [finding dicts]) of one card.

    rows: the card's audited records (ledger fields), any order. The rules (docs/architecture.md,
    "The ledger"): a money record is voided by a void of its source naming its seq, confirmed by a
    confirm naming it or by the card's own later state (a later record read the card at its
    counter with its balance); phantom when another transaction of that counter is the one the
    card went on from; else unconfirmed. Findings: missing transactions (counters the card went
    through that no record explains), balance breaks, clones or rollbacks (money lost)."""
    # quarantined or unverified records count nowhere, but the counter one claims is no
    # "missing transaction": the record is there, named by its own finding
    held = {r["counter"] for r in rows if r.get("status") in BAD and is_claim(r)}
    rows = [r for r in rows if r.get("status") not in BAD]
    refs = {}
    for r in rows:
        if r["kind"] in REF_KINDS:
            refs.setdefault((r["terminal"], r["amount"]), set()).add(r["kind"])
    status = {}
    claims = {}  # counter -> [live claims]
    seen = {}  # state counter -> [(balance or None, record)]
    reads = []  # (time, counter read, record): every record that read the card
    for r in rows:
        key = (r["terminal"], r["seq"])
        if is_claim(r):
            c = r["counter"]
            pb = r["balance"] - _delta(r)
            seen.setdefault(c - 1, []).append((pb, r))
            reads.append((r["time"], c - 1, r))
            got = refs.get(key, ())
            if "void" in got:
                status[key] = "voided"
                continue
            r = dict(r, _conf="confirm" in got)
            claims.setdefault(c, []).append(r)
        else:
            o = observation(r)
            if o is not None:
                seen.setdefault(o[0], []).append((o[1], r))
                reads.append((r["time"], o[0], r))
    found = []
    # a terminal saw the card's counter or balance go back against its own last sight of it
    alarms = [r for r in rows if r["kind"] == "denied" and r["result"] == "rollback"]

    # the card went back: a claim read counter c - 1 after the card had been read at >= c
    reads.sort(key=lambda x: x[0])
    times = [t for t, _rc, _rd in reads]
    best = []  # best[i]: the read with the highest counter among reads[0..i]
    for i, rd in enumerate(reads):
        best.append(rd if i == 0 or rd[1] > best[-1][1] else best[-1])
    replayed = []
    for c, group in claims.items():
        for x in group:
            i = bisect.bisect_left(times, x["time"] - SLACK) - 1
            if i >= 0 and best[i][1] >= c:
                replayed.append((x, best[i][2]))
    replayed.sort(key=lambda p: (p[0]["time"], p[0]["terminal"], p[0]["seq"]))
    clone = bool(replayed or alarms)
    for c, group in claims.items():
        conf = [x for x in group if x["_conf"]]
        states = {b for b, _ in seen.get(c, []) if b is not None}
        evidenced = {x["balance"] for x in group if x["balance"] in states}
        if len(conf) >= 2 or len(evidenced) >= 2:
            clone = True
    decided = {}
    for c in sorted(claims):
        group = claims[c]
        states = {b for b, _ in seen.get(c, []) if b is not None}
        conf = [x for x in group if x["_conf"]]
        cand = [x for x in group if not x["_conf"] and x["balance"] in states]
        open_ = [x for x in group if not x["_conf"] and x["balance"] not in states]
        for x in conf:
            decided[(x["terminal"], x["seq"])] = "confirmed"
        if clone:
            for x in cand:
                decided[(x["terminal"], x["seq"])] = "confirmed"
            for x in open_:
                decided[(x["terminal"], x["seq"])] = "unconfirmed"
            continue
        explained = {x["balance"] for x in conf}
        if cand:
            latest = max(cand, key=lambda x: (x["time"], x["terminal"], x["seq"]))
            for x in cand:
                ok = x is latest and x["balance"] not in explained
                decided[(x["terminal"], x["seq"])] = "confirmed" if ok else "phantom"
            explained.add(latest["balance"])
        for x in open_:
            if explained:
                decided[(x["terminal"], x["seq"])] = "phantom"
            elif [y for y in open_ if _later(y, x)]:
                # a later transaction read the card at counter c - 1: this one did not happen
                decided[(x["terminal"], x["seq"])] = "phantom"
            else:
                decided[(x["terminal"], x["seq"])] = "unconfirmed"
        # the card was read at counter c with a balance none of its claims left
        live = [x for x in group if decided[(x["terminal"], x["seq"])] != "phantom"]
        for b in sorted(states - {x["balance"] for x in group}):
            reader = next(rd for bb, rd in seen[c] if bb == b)
            if live:
                x = live[0]
                found.append(
                    {
                        "kind": "balance",
                        "counter_from": c,
                        "counter_to": c,
                        "terminal": reader["terminal"],
                        "seq": reader["seq"],
                        "amount": b - x["balance"],
                        "detail": {
                            "text": f"counter {c}: {_at(x)} left the balance at "
                            f"{_money(x['balance'])}, but {_at(reader)} read "
                            f"{_money(b)} at that counter ({b - x['balance']:+,} Rial outside any "
                            "record, or this transaction never committed and the one that did "
                            "is missing)",
                            "left": {"terminal": x["terminal"], "seq": x["seq"]},
                        },
                    }
                )
    for x in (x for g in claims.values() for x in g):
        key = (x["terminal"], x["seq"])
        if x["kind"] in MONEY_KINDS:
            status[key] = decided[key]

    # counters the card went through that no live claim explains
    all_reads = [rc for _t, rc, _r in reads]
    if all_reads:
        base, top = min(all_reads), max(all_reads)
        live_c = {
            c
            for c, g in claims.items()
            for x in g
            if decided[(x["terminal"], x["seq"])] in ("confirmed", "unconfirmed")
        }
        known = live_c | held
        k = base + 1
        while k <= top:
            if k in known:
                k += 1
                continue
            lo = k
            while k + 1 <= top and k + 1 not in known:
                k += 1
            found.append(_missing(lo, k, claims, seen, decided, reads))
            k += 1

    if clone:
        found.append(_clone(claims, decided, replayed, alarms))
    return status, found


def _later(y, x):
    """y happened after x: a later time, or the same source's later seq."""
    if y["time"] != x["time"]:
        return y["time"] > x["time"]
    return y["terminal"] == x["terminal"] and y["seq"] > x["seq"]


def _missing(lo, hi, claims, seen, decided, reads):
    """The finding for counters lo..hi that no record explains."""

    def live(c):
        return [x for x in claims.get(c, []) if decided[(x["terminal"], x["seq"])] != "phantom"]

    before = None
    for c in range(lo - 1, -1, -1):
        if live(c) or seen.get(c):
            before = (live(c) or [rd for _b, rd in seen.get(c, [])])[-1]
            break
    after = min(
        (rd for t, rc, rd in reads if rc >= hi),
        key=lambda rd: (rd["counter"], rd["time"]),
        default=None,
    )
    amount = None
    if lo == hi and before is not None and after is not None:
        b0 = [x["balance"] for x in live(lo - 1)] or [
            b for b, _ in seen.get(lo - 1, []) if b is not None
        ]
        b1 = [b for b, rd in seen.get(hi, []) if b is not None]
        if b0 and b1:
            amount = b0[-1] - b1[0]
    n = hi - lo + 1
    text = (
        f"counter {lo}" + (f"..{hi}" if hi > lo else "") + f": {n} transaction"
        f"{'s' if n > 1 else ''} of this card in no record here"
    )
    if before is not None:
        text += f" (after {_at(before)}"
    if after is not None:
        text += (" and " if before is not None else " (") + f"before {_at(after)}"
    if before is not None or after is not None:
        text += ")"
    if amount:
        text += (
            f"; the balance fell by {_money(amount)}"
            if amount > 0
            else (f"; the balance rose by {_money(-amount)}")
        )

    def brief(r):
        return None if r is None else {k: r[k] for k in ("terminal", "seq", "time", "counter")}

    return {
        "kind": "missing",
        "counter_from": lo,
        "counter_to": hi,
        "terminal": after["terminal"] if after else None,
        "seq": after["seq"] if after else None,
        "amount": amount or 0,
        "detail": {"text": text, "before": brief(before), "after": brief(after), "count": n},
    }


def _clone(claims, decided, replayed, alarms=()):
    """One finding per card: the counters used more than once and the money spent from replayed
    card states (every debit but the first of a counter)."""
    dup = []
    lost = 0
    for c in sorted(claims):
        live = sorted(
            (x for x in claims[c] if decided[(x["terminal"], x["seq"])] != "phantom"),
            key=lambda x: (x["time"], x["terminal"], x["seq"]),
        )
        if len(live) < 2:
            continue
        dup.append(
            {
                "counter": c,
                "records": [
                    {k: x[k] for k in ("terminal", "seq", "time", "amount", "balance", "kind")}
                    for x in live
                ],
            }
        )
        lost += sum(-_delta(x) for x in live[1:] if _delta(x) < 0)
    cs = [d["counter"] for d in dup] or [x["counter"] for x, _ in replayed]
    parts = []
    for d in dup[:3]:
        parts.append(
            f"counter {d['counter']} used {len(d['records'])} times ("
            + ", ".join(
                f"terminal {r['terminal']} seq {r['seq']} balance {_money(r['balance'])}"
                for r in d["records"]
            )
            + ")"
        )
    for x, rd in replayed[:2]:
        parts.append(
            f"{_at(x)} read counter {x['counter'] - 1} after {_at(rd)} had read counter "
            f"{rd['counter'] if not is_claim(rd) else rd['counter'] - 1}"
        )
    for a in alarms[:2]:
        parts.append(f"{_at(a)} refused it: its counter or balance went back")
    cs = cs or [a["counter"] for a in alarms]
    text = "card state went back (clone or rollback): " + "; ".join(parts)
    at = (
        replayed[0][0]
        if replayed
        else alarms[0]
        if alarms
        else dup[0]["records"][-1]
        if dup
        else None
    )
    text += f"; {_money(lost)} Rial spent from a replayed card state"
    return {
        "kind": "clone",
        "counter_from": min(cs) if cs else 0,
        "counter_to": max(cs) if cs else 0,
        "terminal": at["terminal"] if at else None,
        "seq": at["seq"] if at else None,
        "amount": lost,
        "detail": {"text": text, "counters": dup, "lost": lost},
    }


def card_rows(store, uid):
    """Every audited record of one card (quarantined and unverified ones too: resolve leaves
    them out of the ledger)."""
    rows = store._all(
        "SELECT {} FROM taps WHERE uid = ? AND status IS NOT NULL "
        "ORDER BY counter, time, terminal, seq".format(", ".join(_FIELDS)),
        (uid,),
    )
    out = []
    for r in rows:
        d = dict(zip(_FIELDS, r, strict=True))
        for k in ("terminal", "seq", "time", "counter", "amount", "balance", "line"):
            d[k] = int(d[k])
        out.append(d)
    return out


def _windows(store, cards):
    """{uid: lowest counter to settle from (None: all)}: a card's new records at counter c can
    change what is decided from c - 1 on, and a card finding reaching into that range is
    decided again whole (its start lowers the window)."""
    out = dict(cards)
    part = [u for u, lo in cards.items() if lo is not None]
    if not part:
        return out
    marks = ", ".join("?" * len(part))
    for u, a, b in store._all(
        "SELECT uid, counter_from, counter_to FROM findings WHERE uid IN (%s) AND kind IN (%s)"
        % (marks, ", ".join("?" * len(CARD_FINDINGS))),
        tuple(part) + CARD_FINDINGS,
    ):
        lo = out[u]
        if lo is not None and b is not None and int(b) >= lo and a is not None:
            out[u] = min(lo, int(a))
    return out


def _rows_of(store, windows):
    """{uid: card_rows from its window on} for many cards in one query."""
    out = {u: [] for u in windows}
    if not windows:
        return out
    if store.dialect == "postgresql":
        # the windows as a joined array: an OR of a thousand cards took PostgreSQL 5.8 s over
        # the month partitions (the bench's audit of 1,000 new taps, 200,000 stored)
        us = list(windows)
        rows = store._all(
            "SELECT {} FROM taps t JOIN unnest(?::text[], ?::bigint[]) AS w(u, lo) "
            "ON t.uid = w.u AND t.counter >= w.lo WHERE t.status IS NOT NULL "
            "ORDER BY t.uid, t.counter, t.time, t.terminal, t.seq".format(
                ", ".join("t." + f for f in _FIELDS)
            ),
            (us, [-1 if windows[u] is None else windows[u] - 1 for u in us]),
        )
        return _into(out, rows)
    conds, params = [], []
    for u, lo in windows.items():
        if lo is None:
            conds.append("uid = ?")
            params.append(u)
        else:
            # one below the window: a record there tells the state the window starts from (a
            # gap right at its start is seen only so)
            conds.append("(uid = ? AND counter >= ?)")
            params += [u, lo - 1]
    rows = store._all(
        "SELECT {} FROM taps WHERE ({}) AND status IS NOT NULL "
        "ORDER BY uid, counter, time, terminal, seq".format(
            ", ".join(_FIELDS), " OR ".join(conds)
        ),
        params,
    )
    return _into(out, rows)


def _into(out, rows):
    for r in rows:
        d = dict(zip(_FIELDS, r, strict=True))
        for k in ("terminal", "seq", "time", "counter", "amount", "balance", "line"):
            d[k] = int(d[k])
        out[d["uid"]].append(d)
    return out


def settle(store, cards, rollups, now, chunk=500):
    """Resolve cards again: new statuses into taps (and the rollups), card findings into the
    findings table. `cards`: uids (all of each card) or {uid: lowest counter touched} (the
    ledger from just below it on: statuses and findings below are settled already)."""
    if not isinstance(cards, dict):
        cards = {u: None for u in cards}
    updates = []
    uids = sorted(u for u in cards if u and u != NO_UID)
    found_rows = []
    office = has_office(store)
    for i in range(0, len(uids), chunk):
        part = uids[i : i + chunk]
        windows = _windows(store, {u: cards[u] for u in part})
        rows_of = _rows_of(store, windows)
        loaded = _loaded(store, part)
        for uid in part:
            lo = windows[uid]
            store._exec(
                "DELETE FROM findings WHERE uid = ? AND kind IN (%s)"
                % ", ".join("?" * len(CARD_FINDINGS))
                + ("" if lo is None else " AND counter_to >= ?"),
                (uid,) + CARD_FINDINGS + (() if lo is None else (lo,)),
            )
        for uid in part:
            rows = rows_of[uid]
            statuses, found = resolve(rows)
            m = minted(rows, loaded.get(uid), office)
            if m is not None:
                found.append(m)
            for r in rows:
                new = statuses.get((r["terminal"], r["seq"]))
                if new is not None and new != r["status"]:
                    rollups.move(r, r["status"], new)
                    updates.append((new, r["terminal"], r["seq"]))
            for f in found:
                found_rows.append(
                    (
                        f"{f['kind']}:{uid}:{f['counter_from']}",
                        f["kind"],
                        f.get("terminal"),
                        f.get("seq"),
                        uid,
                        f["counter_from"],
                        f["counter_to"],
                        int(f.get("amount", 0)),
                        json.dumps(f.get("detail", {}), sort_keys=True, default=str),
                        now,
                    )
                )
    cur = store.conn.cursor()
    if found_rows:
        cur.executemany(
            store._sql(
                "INSERT INTO findings (key, kind, terminal, seq, uid, counter_from, counter_to, "
                "amount, detail, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET detail = excluded.detail, "
                "counter_to = excluded.counter_to, amount = excluded.amount, "
                "terminal = excluded.terminal, seq = excluded.seq"
            ),
            found_rows,
        )
    store.set_statuses(updates)


def _loaded(store, uids):
    """{uid: (Rial, issued)}: what offices loaded onto each card (issue balances, top-ups) and POS
    refunds gave back, from every audited record of the card (not only the settling window), and
    whether an office's issue record is among them (then the card's whole history is known)."""
    if not uids:
        return {}
    rows = store._all(
        "SELECT uid, SUM(amount), SUM(CASE WHEN kind = 'issue' THEN 1 ELSE 0 END) "
        "FROM taps WHERE uid IN (%s) AND kind IN (%s) "
        "AND status IS NOT NULL AND status NOT IN (%s, 'voided', 'phantom') GROUP BY uid"
        % (", ".join("?" * len(uids)), ", ".join("?" * len(LOADS)), ", ".join("?" * len(BAD))),
        tuple(uids) + LOADS + BAD,
    )
    return {u: (int(n or 0), bool(issued)) for u, n, issued in rows}


def has_office(store):
    """True when an office's journal feeds this store (then a card no office issued is minted)."""
    return store._one("SELECT 1 FROM terminals WHERE role = 'office' LIMIT 1") is not None


def minted(rows, loaded, office):
    """The minted finding of one card, or None: a terminal read a balance above everything the
    offices ever loaded onto it (and POS refunds gave back), or, where an office journal feeds the
    store, a card no office ever issued was charged. Value a stolen debit key made: the terminals
    cannot tell it from money (docs/architecture.md "Keys on a terminal cannot mint value")."""
    seen = [
        r
        for r in rows
        if r["kind"] not in LOADS
        and r["kind"] != "payout"
        and r.get("status") not in BAD
        and r["balance"] >= 0
        and r["counter"] > 0
    ]
    if not seen or (loaded is None and not office):
        return None
    top = max(seen, key=lambda r: (r["balance"], r["time"]))
    issued = loaded is not None and loaded[1]
    loaded = None if loaded is None else loaded[0]
    if loaded is None:
        text = (
            f"card never issued by an office: {_at(top)} read it at counter {top['counter']} "
            f"with {_money(top['balance'])} Rial"
        )
        excess = top["balance"]
    elif issued and top["balance"] > loaded:  # (a card issued before the journal: unknown)
        excess = top["balance"] - loaded
        text = (
            f"{_at(top)} read {_money(top['balance'])} Rial at counter {top['counter']}, "
            f"{_money(excess)} above the {_money(loaded)} the offices ever loaded"
        )
    else:
        return None
    return {
        "kind": "minted",
        "counter_from": top["counter"],
        "counter_to": top["counter"],
        "terminal": top["terminal"],
        "seq": top["seq"],
        "amount": excess,
        "detail": {"text": text, "loaded": loaded, "balance": top["balance"]},
    }


def card_view(store, uid):
    """One card's ledger as the card lookup shows it: its records by counter (with statuses),
    its findings, and the newest state the ledger holds (None when no record has it)."""
    rows = card_rows(store, uid)
    unaudited = store._one("SELECT COUNT(*) FROM taps WHERE uid = ? AND status IS NULL", (uid,))
    found = [
        dict(
            zip(("key", "kind", "counter_from", "counter_to", "amount", "detail"), r, strict=True)
        )
        for r in store._all(
            "SELECT key, kind, counter_from, counter_to, amount, detail FROM findings "
            "WHERE uid = ? ORDER BY counter_from",
            (uid,),
        )
    ]
    for f in found:
        f["detail"] = json.loads(f["detail"])
        f["text"] = f["detail"].get("text", f["kind"])
    state = None
    for r in rows:
        if r["status"] in BAD or r["kind"] in REF_KINDS:
            continue
        ok = r["status"] in ("confirmed", "ok", "unconfirmed") and r["balance"] >= 0
        if ok and (state is None or r["counter"] >= state["counter"]):
            state = {"counter": r["counter"], "balance": r["balance"], "time": r["time"]}
    return {
        "uid": uid,
        "records": rows,
        "findings": found,
        "state": state,
        "not_audited": int(unaudited[0]),
    }
