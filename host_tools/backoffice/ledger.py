"""The per-card ledger: a card's transactions from every terminal and office, by the card's counter.

    statuses, found = resolve(rows)     # rows: one card's audited records (dicts), any order
    settle(store, uids, rollups, now)   # what the audit calls for the cards whose records changed

Data only; the audit (audit.py) calls `settle` and the report and dashboard read the statuses it
leaves in taps.status and the card findings it leaves in the findings table.
"""

import json

MONEY_KINDS = ("charge", "refund", "issue", "topup", "payout")
REF_KINDS = ("void", "confirm")
BAD = ("quarantined", "unverified")
CARD_FINDINGS = ("missing", "balance", "clone")
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


def resolve(rows):
    """({(terminal, seq): status} for the money records, [finding dicts]) of one card."""
    refs = {}
    for r in rows:
        if r["kind"] in REF_KINDS:
            refs.setdefault((r["terminal"], r["amount"]), set()).add(r["kind"])
    out = {}
    for r in rows:
        if r["kind"] not in MONEY_KINDS:
            continue
        got = refs.get((r["terminal"], r["seq"]), set())
        out[(r["terminal"], r["seq"])] = "voided" if "void" in got else "confirmed"
    return out, []


def card_rows(store, uid):
    """Every audited record of one card (quarantined and unverified ones left out)."""
    rows = store._all(
        "SELECT {} FROM taps WHERE uid = ? AND status IS NOT NULL AND status NOT IN "
        "('quarantined', 'unverified') ORDER BY counter, time, terminal, seq".format(
            ", ".join(_FIELDS)
        ),
        (uid,),
    )
    out = []
    for r in rows:
        d = dict(zip(_FIELDS, r, strict=True))
        for k in ("terminal", "seq", "time", "counter", "amount", "balance", "line"):
            d[k] = int(d[k])
        out.append(d)
    return out


def settle(store, uids, rollups, now):
    """Resolve the cards `uids` again: new statuses into taps (and the rollups), card findings
    into the findings table."""
    updates = []
    for uid in sorted(u for u in uids if u and u != NO_UID):
        rows = card_rows(store, uid)
        statuses, found = resolve(rows)
        for r in rows:
            new = statuses.get((r["terminal"], r["seq"]))
            if new is not None and new != r["status"]:
                rollups.move(r, r["status"], new)
                updates.append((new, r["terminal"], r["seq"]))
        store._exec(
            "DELETE FROM findings WHERE uid = ? AND kind IN (%s)"
            % ", ".join("?" * len(CARD_FINDINGS)),
            (uid,) + CARD_FINDINGS,
        )
        for f in found:
            store._exec(
                "INSERT INTO findings (key, kind, terminal, seq, uid, counter_from, counter_to, "
                "amount, detail, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET detail = excluded.detail",
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
                ),
            )
    if updates:
        store.conn.cursor().executemany(
            store._sql("UPDATE taps SET status = ? WHERE terminal = ? AND seq = ?"), updates
        )
