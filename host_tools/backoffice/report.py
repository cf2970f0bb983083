"""Revenue and reconciliation report over the audited store.

    rep = report(store, keys=audit.keys_from(ks))      # a JSON-ready dict
    rep = report(store, keys, since=t0, until=t1, tz=12600)

Data only: `tapkit report` renders it (host_tools/cli/backoffice.py), the dashboard shows it.

Every figure comes from audited records (audit.py): `report` first audits what is new, then checks
the rows of its period again (`recheck`: a row edited since its audit is caught and left out), and
sums the rollups of the verified rows. A quarantined record (edited, altered, damaged) is a finding
named by terminal, seq and column and counts nowhere. Money counts when the ledger (ledger.py)
confirmed it: fares (charges less POS refunds) are `revenue`; unconfirmed money records are listed
with their amounts; voided and phantom ones are no money. Card-office money (top-ups, pay-outs at a
card's refund, initial balances) is reported beside the fares, not as revenue.

Periods: `since` (inclusive) and `until` (exclusive) in unix seconds. Days and hours are local to
`tz` (seconds east of UTC; the store's own tz by default, audit.set_tz). The sums come from
roll_time (half hours, any tz that is a multiple of 30 minutes) or roll_day (the store's days, by
terminal and line) when the period fits them, else from the audited rows themselves.
"""

import time

from host_tools.backoffice import audit

REFUSED = ("refused", "denied")
FARE_KINDS = ("charge", "refund")
OFFICE_MONEY = ("issue", "topup", "payout")
_TIME_DIMS = ("hour", "day", "profile", "result")
_DAY_DIMS = ("day", "terminal", "line")
_TAP_DIMS = ("hour", "day", "profile", "result", "terminal", "line")
UNCONFIRMED_LISTED = 200


class PeriodError(ValueError):
    pass


def parse_when(text, tz=0):
    """Unix seconds from "2024-03-01", "2024-03-01T08:30", "2024-03-01 08:30" (local to tz) or a
    plain number of unix seconds; PeriodError with the forms it takes."""
    text = (text or "").strip()
    if text.isdigit():
        return int(text)
    import calendar

    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return calendar.timegm(time.strptime(text, fmt)) - int(tz)
        except ValueError:
            continue
    raise PeriodError(f"bad time {text!r}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM or unix seconds")


def _aligned(t, size, tz=0):
    return t is None or (int(t) + tz) % size == 0


def sums(store, dims, since=None, until=None, tz=0):
    """{(dim values..., kind, status): [n, amount]} of the counted rows (audited, not quarantined)
    in [since, until), grouped by `dims` (hour and day: local to tz, as bucket numbers)."""
    dims = tuple(dims)
    store_tz = audit.tz_of(store)
    if (
        set(dims) <= set(_TIME_DIMS)
        and tz % 1800 == 0
        and _aligned(since, 1800)
        and _aligned(until, 1800)
    ):
        expr = {
            "hour": f"(b30 * 1800 + {tz}) / 3600",
            "day": f"(b30 * 1800 + {tz}) / 86400",
            "profile": "profile",
            "result": "result",
        }
        table, where, params = "roll_time", [], []
        if since is not None:
            where.append("b30 >= ?")
            params.append(int(since) // 1800)
        if until is not None:
            where.append("b30 < ?")
            params.append(int(until) // 1800)
    elif (
        set(dims) <= set(_DAY_DIMS)
        and ("day" not in dims or tz == store_tz)
        and _aligned(since, 86400, store_tz)
        and _aligned(until, 86400, store_tz)
    ):
        expr = {"day": "day", "terminal": "terminal", "line": "line"}
        table, where, params = "roll_day", [], []
        if since is not None:
            where.append("day >= ?")
            params.append((int(since) + store_tz) // 86400)
        if until is not None:
            where.append("day < ?")
            params.append((int(until) + store_tz) // 86400)
    else:
        expr = {
            "hour": f"(time + {tz}) / 3600",
            "day": f"(time + {tz}) / 86400",
            "profile": "profile",
            "result": "result",
            "terminal": "terminal",
            "line": "line",
        }
        unknown = set(dims) - set(_TAP_DIMS)
        if unknown:
            raise ValueError("cannot group by %s" % ", ".join(sorted(unknown)))
        table = "taps"
        where = ["status IS NOT NULL", "status NOT IN ('quarantined', 'unverified')"]
        params = []
        if since is not None:
            where.append("time >= ?")
            params.append(int(since))
        if until is not None:
            where.append("time < ?")
            params.append(int(until))
    cols = [expr[d] for d in dims] + ["kind", "status"]
    n = "SUM(n)" if table != "taps" else "COUNT(*)"
    a = "SUM(amount)" if table != "taps" else "SUM(%s)" % audit._amount_sql()
    sql = "SELECT {}, {}, {} FROM {}".format(", ".join(cols), n, a, table)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY " + ", ".join(cols)
    out = {}
    for r in store._all(sql, params):
        key = tuple(int(v) if isinstance(v, int) else v for v in r[: len(cols)])
        out[key] = [int(r[-2] or 0), int(r[-1] or 0)]
    return out


def _fold(rows):
    """Figures of one group from its {(kind, status): [n, amount]}."""

    def get(kind, status=None):
        n = a = 0
        for (k, s), (nn, aa) in rows.items():
            if k == kind and (status is None or s == status):
                n += nn
                a += aa
        return n, a

    charges, charged = get("charge", "confirmed")
    refunds, refunded = get("refund", "confirmed")
    unconf = [get(k, "unconfirmed") for k in FARE_KINDS]
    out = {
        "taps": sum(nn for (k, _s), (nn, _a) in rows.items() if k not in audit.REF_KINDS),
        "charges": charges,
        "revenue": charged - refunded,
        "refunds": refunds,
        "refunded": refunded,
        "unconfirmed": unconf[0][0] + unconf[1][0],
        "unconfirmed_amount": unconf[0][1] - unconf[1][1],
        "voided": sum(get(k, "voided")[0] for k in FARE_KINDS),
        "phantom": sum(get(k, "phantom")[0] for k in FARE_KINDS),
        "refused": get("refused")[0] + get("denied")[0],
        "voids": get("void")[0],
        "errors": get("error")[0],
    }
    for kind, n_key, a_key in (
        ("topup", "topups", "topped_up"),
        ("payout", "payouts", "paid_out"),
        ("issue", "issued", "issued_balance"),
    ):
        n, a = get(kind, "confirmed")
        out[n_key], out[a_key] = n, a
    return out


def grouped(store, dim, since=None, until=None, tz=0):
    """[(key, figures)] by one dimension, in key order."""
    by = {}
    for key, v in sums(store, (dim,), since, until, tz).items():
        by.setdefault(key[0], {})[key[1:]] = v
    return [(k, _fold(by[k])) for k in sorted(by, key=lambda x: (x is None, x))]


def totals(store, since=None, until=None, tz=0):
    return _fold({k: v for k, v in sums(store, (), since, until, tz).items()})


def refused_by_reason(store, since=None, until=None, tz=0):
    out = {}
    for (result, kind, _status), (n, _a) in sums(store, ("result",), since, until, tz).items():
        if kind in REFUSED:
            out[result] = out.get(result, 0) + n
    return dict(sorted(out.items()))


def _label(dim, k, tz):
    if dim == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(k * 86400))
    if dim == "hour":
        return time.strftime("%Y-%m-%d %H:00", time.gmtime(k * 3600))
    return k


def unconfirmed(store, since=None, until=None, limit=UNCONFIRMED_LISTED, uid=None):
    """The unconfirmed money records (newest first): amount at stake, until the ledger settles."""
    where = ["status = 'unconfirmed'"]
    params = []
    if since is not None:
        where.append("time >= ?")
        params.append(int(since))
    if until is not None:
        where.append("time < ?")
        params.append(int(until))
    if uid:
        where.append("uid = ?")
        params.append(uid)
    rows = store._all(
        "SELECT terminal, seq, time, uid, kind, counter, amount, balance FROM taps WHERE "
        + " AND ".join(where)
        + " ORDER BY time DESC, terminal, seq LIMIT %d" % int(limit),
        params,
    )
    cols = ("terminal", "seq", "time", "uid", "kind", "counter", "amount", "balance")
    return [
        {c: (int(v) if c not in ("uid", "kind") else v) for c, v in zip(cols, r, strict=True)}
        for r in rows
    ]


def card_totals(store, uid=None):
    """[{uid, taps, charged, refused, last_balance, unconfirmed}] per card from its audited
    records: charged is the confirmed fares less confirmed POS refunds, unconfirmed the same of
    the unconfirmed ones; last_balance the balance of the card's newest state the ledger holds
    (money records neither voided nor phantom, and refusals)."""
    where = "uid <> ? AND status IS NOT NULL AND status NOT IN ('quarantined', 'unverified')"
    params = [audit.NO_UID]
    if uid:
        where += " AND uid = ?"
        params.append(uid)
    rows = store._all(
        "SELECT uid, COUNT(*), SUM(CASE WHEN status = 'confirmed' AND kind = 'charge' THEN amount "
        "WHEN status = 'confirmed' AND kind = 'refund' THEN -amount ELSE 0 END), "
        "SUM(CASE WHEN kind IN ('refused', 'denied') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'unconfirmed' AND kind = 'charge' THEN amount "
        "WHEN status = 'unconfirmed' AND kind = 'refund' THEN -amount ELSE 0 END) "
        f"FROM taps WHERE {where} GROUP BY uid ORDER BY uid",
        params,
    )
    balances = dict(
        store._all(
            "SELECT uid, balance FROM (SELECT uid, balance, ROW_NUMBER() OVER (PARTITION BY uid "
            "ORDER BY counter DESC, time DESC, seq DESC) AS n FROM taps WHERE "
            f"{where} AND balance >= 0 AND status NOT IN ('voided', 'phantom') AND kind NOT IN "
            "('void', 'confirm')) b WHERE n = 1",
            params,
        )
    )
    return [
        {
            "uid": u,
            "taps": int(n),
            "charged": int(c or 0),
            "refused": int(r or 0),
            "last_balance": int(balances[u]) if u in balances else None,
            "unconfirmed": int(p or 0),
        }
        for u, n, c, r, p in rows
    ]


def contacts(terminals):
    """(terminal, last seen, records it held beyond the stored ones, unsynced it said) of every
    terminal of store.terminals(): what suspects() weighs, taken once for many findings."""
    out = []
    for t in terminals:
        if t["role"] != "terminal":
            continue
        info = t.get("info") or {}
        seen = max(
            (x for x in (t.get("last_usb"), t.get("last_wifi")) if x), default=t.get("last_sync")
        )
        behind = max(0, int(info.get("head_seq") or 0) - int(t.get("last_seq") or 0))
        out.append((t["id"], seen, behind, int(info.get("unsynced") or 0)))
    return out


def suspects(terminals, finding, now=None, limit=5, seen_by=None):
    """Where a missing transaction may be: terminals not in contact since the card's record after
    the gap (they hold what they took since), then terminals that said at their last contact they
    hold records the store lacks (head seq beyond the stored one); most recently seen first.
    `seen_by`: contacts(terminals), when many findings are placed."""
    after = (finding["detail"] or {}).get("after") or {}
    t_after = after.get("time")
    out = []
    for tid, seen, behind, unsynced in contacts(terminals) if seen_by is None else seen_by:
        silent = t_after is not None and (not seen or seen < t_after)
        if silent or behind:
            out.append(
                {
                    "terminal": tid,
                    "last_seen": seen or None,
                    "unsynced": unsynced if silent else behind,
                    "silent": silent,
                }
            )
    out.sort(key=lambda x: (not x["silent"], -(x["last_seen"] or 0), x["terminal"]))
    return out[:limit], len(out)


def _suspect_text(found, total):
    if not found:
        return "; no terminal has unsynced taps or is out of contact: lost, or not from this fleet"
    parts = []
    for x in found:
        seen = (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(x["last_seen"]))
            if x["last_seen"]
            else "never"
        )
        parts.append(
            f"terminal {x['terminal']} (last seen {seen}"
            + (f", {x['unsynced']} unsynced" if x["unsynced"] else "")
            + ")"
        )
    more = f" and {total - len(found)} more" if total > len(found) else ""
    return "; may be on " + ", ".join(parts) + more


def locate_missing(found, terminals):
    """Each missing transaction in `found` gets where it may be (`suspects`, added to its
    text); `terminals` is store.terminals(). Returns `found`."""
    seen_by = contacts(terminals)
    for f in found:
        if f["kind"] == "missing":
            near, total = suspects(terminals, f, seen_by=seen_by)
            f["suspects"] = near
            f["text"] += _suspect_text(near, total)
    return found


def _finding_view(f):
    """A finding as the report lists it: kind, where, detail, plus the raw fields."""
    d = f["detail"]
    return dict(f, **{"where": _where(f), "text": describe(f)}) if d is not None else f


def _where(f):
    if f["kind"] in audit.RECORD_FINDINGS:
        return {"terminal": f["terminal"], "seq": f["seq"]}
    return {"uid": f["uid"], "counter_from": f["counter_from"], "counter_to": f["counter_to"]}


def describe(f):
    """One line saying what a finding is (the CLI and the dashboard show it)."""
    d = f["detail"]
    k = f["kind"]
    if k == "edited":
        return "; ".join(
            f"column {c['column']} edited: stored {c['stored']}, the record says {c['record']}"
            for c in d["columns"]
        ) + (f" ({f['amount']:,} Rial not counted)" if f["amount"] else "")
    if k in ("mac", "damaged", "unverified", "foreign_kind"):
        return d.get("reason", k) + (f" ({f['amount']:,} Rial not counted)" if f["amount"] else "")
    if k == "seq_gap":
        return f"seq {d['from_seq']}..{d['to_seq']} not in this store ({d['missing']})"
    return d.get("text", k)


def clock_unset(store, since=None, until=None):
    """{terminal: records written while its clock was not set since power-up} (the record's
    FLAG_CLOCK_UNSET: their time runs on from the last time set, it is not the true time), over
    every stored record in [since, until) (by that time), audited or not."""
    where, params = ["clock_unset = 1"], []
    if since is not None:
        where.append("time >= ?")
        params.append(int(since))
    if until is not None:
        where.append("time < ?")
        params.append(int(until))
    sql = "SELECT terminal, COUNT(*) FROM taps WHERE %s GROUP BY terminal" % " AND ".join(where)
    return {int(t): int(n) for t, n in store._all(sql, params)}


def report(store, keys, since=None, until=None, tz=None, cards=None, recheck=True):
    """Everything `tapkit report` shows, as plain data. `keys`: audit.keys_from(keystore)."""
    t0 = time.time()
    summary = audit.run(store, keys)
    again = audit.recheck(store, keys, since, until) if recheck else None
    tz = audit.tz_of(store) if tz is None else int(tz)
    tot = totals(store, since, until, tz)
    by = {}
    for dim in ("terminal", "line", "profile", "day", "hour"):
        by[dim] = [
            {
                dim: _label(dim, k, tz),
                "charges": f["charges"],
                "revenue": f["revenue"],
                "taps": f["taps"],
                "unconfirmed_amount": f["unconfirmed_amount"],
            }
            for k, f in grouped(store, dim, since, until, tz)
            if dim in ("terminal", "day", "hour") or f["charges"] or f["refunds"]
        ]
    per_terminal = dict(grouped(store, "terminal", since, until, tz))
    unset = clock_unset(store, since, until)
    fleet = store.terminals()
    terminals = []
    for t in fleet:
        f = per_terminal.get(t["id"])
        if f is None and (since is not None or until is not None):
            continue
        f = f or _fold({})
        first = store._one("SELECT MIN(seq) FROM taps WHERE terminal = ?", (t["id"],))[0]
        terminals.append(
            dict(
                {"terminal": t["id"], "role": t["role"]},
                **f,
                first_seq=int(first or 0),
                last_seq=t["last_seq"],
                last_sync=t["last_sync"],
                acked_seq=t["acked_seq"],
                clock_unset=unset.get(t["id"], 0),
            )
        )
    found = locate_missing([_finding_view(f) for f in audit.findings(store)], fleet)
    rec_kinds = {"mac", "damaged", "edited", "foreign_kind"}
    uploads = {}
    for r in store.rejects():
        reason = r["reason"].split(":", 1)[0]
        uploads[reason] = uploads.get(reason, 0) + int(r.get("count") or 1)
    n_cards = None
    if cards is None:
        n_cards = int(store._one("SELECT COUNT(*) FROM taps")[0])
        cards = n_cards <= 200000
    rep = {
        "generated_at": int(time.time()),
        "period": {"since": since, "until": until, "tz": tz},
        "audit": {
            "audited_now": summary["audited"],
            "rechecked": again["rechecked"] if again else None,
            "quarantined_now": summary["quarantined"] + (again["quarantined"] if again else 0),
            "not_audited": audit.pending(store),
        },
        "revenue": tot["revenue"],
        "charges": tot["charges"],
        "refunds": tot["refunds"],
        "refunded": tot["refunded"],
        "unconfirmed": {
            "count": tot["unconfirmed"],
            "amount": tot["unconfirmed_amount"],
            "records": unconfirmed(store, since, until),
        },
        "voided": tot["voided"],
        "phantom": tot["phantom"],
        "office": {k: tot[k] for k in ("topups", "topped_up", "payouts", "paid_out", "issued")}
        | {"issued_balance": tot["issued_balance"]},
        "taps": tot["taps"],
        "refused": tot["refused"],
        "refused_by_reason": refused_by_reason(store, since, until, tz),
        "revenue_by": by,
        "terminals": terminals,
        "cards": card_totals(store) if cards else None,
        "reconciliation": {
            "findings": found,
            "sequence_gaps": [
                {
                    "terminal": f["terminal"],
                    "from_seq": f["detail"]["from_seq"],
                    "to_seq": f["detail"]["to_seq"],
                    "missing": f["detail"]["missing"],
                }
                for f in found
                if f["kind"] == "seq_gap"
            ],
            "mac_chain_breaks": [
                {"terminal": f["terminal"], "seq": f["seq"], "kind": f["kind"]}
                for f in found
                if f["kind"] in rec_kinds
            ],
            "unverified": [
                {"terminal": f["terminal"], "seq": f["seq"]}
                for f in found
                if f["kind"] == "unverified"
            ],
            "missing_transactions": [f for f in found if f["kind"] == "missing"],
            "balance_breaks": [f for f in found if f["kind"] == "balance"],
            "clones": [f for f in found if f["kind"] == "clone"],
            "refused_uploads": uploads,
        },
        "seconds": None,
    }
    rep["seconds"] = round(time.time() - t0, 3)
    return rep
