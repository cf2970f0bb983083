"""The audit: every figure of the back office comes from records it verified.

    keys = audit.keys_from(keystore.load("issuer.keys"))     # (source id, role) -> journal key
    summary = audit.run(store, keys)            # the records stored since the last run
    audit.run(store, keys, full=True)           # every record again; rollups and findings rebuilt
    audit.recheck(store, keys, since, until)    # rows audited before: still what was verified?

A stored row holds the raw 64-byte record (MAC-chained with its source's key) and columns decoded
from it at ingest. Only the raw record is tamper-evident; a column can be edited in the database.
So the audit, for each row not audited yet (status NULL, a partial index):
  - checks the record's CRC and version, its MAC against the stored predecessor's MAC field (the
    genesis MAC at seq 1, a kept Wi-Fi anchor after a gap), and that every column equals the
    decoded record;
  - a record that fails becomes a finding named by terminal, seq (and column) and its row gets
    status "quarantined": left out of every figure; a record whose predecessor is not in this
    store and has no anchor is "unverified" (its link cannot be checked; audited again when the
    hole is filled, store.ingest resets it);
  - a verified row gets a status: "ok" for records that move no money; for money records (charges,
    POS refunds, card-office operations) "confirmed", "unconfirmed", "voided" or "phantom" as the
    card's ledger settles them (host_tools/backoffice/ledger.py);
  - the rollups (roll_time per half hour, roll_day per local day and terminal) are kept by adding
    what changed; reports and the dashboard read them.
`recheck` runs the same checks over rows audited before (the report does it for its period): a row
edited since its audit is quarantined then, its rollup buckets rebuilt from the verified rows.

Record findings (table findings, key "kind:terminal:seq"): damaged, mac, edited (detail names the
columns, stored and record values), unverified, foreign_kind (an office kind in a terminal's
journal or back), seq_gap (key "seq_gap:terminal:first").
"""

import binascii
import json
import time

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import store as store_mod

# columns the audit compares with the decoded record: the store's, less raw and received_at
COLUMNS = tuple(c for c in store_mod._TAP_COLUMNS if c not in ("raw", "received_at"))
_SELECT = "SELECT {}, raw, status FROM taps".format(", ".join(COLUMNS))
_I_RAW = len(COLUMNS)
_I_STATUS = _I_RAW + 1

MONEY_KINDS = ("charge", "refund", "issue", "topup", "payout")  # records that move money
REF_KINDS = ("void", "confirm")  # records whose amount is the seq of a money record they settle
BAD = ("quarantined", "unverified")  # rows no figure counts
NO_UID = "00" * 7  # a record with no card read
RECORD_FINDINGS = ("damaged", "mac", "edited", "unverified", "foreign_kind", "seq_gap")
_OFFICE_KINDS = taprecord_host.OFFICE_KINDS
_BATCH = 20000


def keys_from(ks):
    """(source id, role) -> journal key, from an issuer keystore (host_tools.keystore)."""
    cache = {}

    def key(source_id, role):
        k = (source_id, role)
        if k not in cache:
            cache[k] = keystore.source_key(ks, source_id, role)
        return cache[k]

    return key


def _mac_ok(key, raw, prev):
    c = CMAC(algorithms.AES(key))
    c.update(bytes(prev) + bytes(raw[: taprecord.BODY]))
    return c.finalize()[:8] == bytes(raw[taprecord.BODY : taprecord.BODY + 8])


def money_amount(kind, amount):
    """What a record adds to a rollup's amount: Rial for money and refusals, 0 for void/confirm
    (their amount is a seq)."""
    return 0 if kind in REF_KINDS or amount is None else int(amount)


class Rollups:
    """Deltas to roll_time and roll_day, summed in memory and written in one go."""

    def __init__(self, tz):
        self.tz = tz
        self.time = {}
        self.day = {}

    def add(self, row, status, sign=1):
        """row: a dict with time, profile, kind, result, terminal, line, amount."""
        if status is None or status in BAD:
            return
        a = money_amount(row["kind"], row["amount"]) * sign
        k = (int(row["time"]) // 1800, row["profile"], row["kind"], row["result"], status)
        n0, a0 = self.time.get(k, (0, 0))
        self.time[k] = (n0 + sign, a0 + a)
        k = (
            (int(row["time"]) + self.tz) // 86400,
            int(row["terminal"]),
            int(row["line"]),
            row["kind"],
            status,
        )
        n0, a0 = self.day.get(k, (0, 0))
        self.day[k] = (n0 + sign, a0 + a)

    def move(self, row, old, new):
        if old != new:
            self.add(row, old, -1)
            self.add(row, new, 1)

    def flush(self, store):
        t = [k + v for k, v in self.time.items() if v != (0, 0)]
        d = [k + v for k, v in self.day.items() if v != (0, 0)]
        shrunk_t = [k for k, v in self.time.items() if v[0] < 0]
        shrunk_d = [k for k, v in self.day.items() if v[0] < 0]
        cur = store.conn.cursor()
        store.upsert_sums("roll_time", ("b30", "profile", "kind", "result", "status"), t)
        store.upsert_sums("roll_day", ("day", "terminal", "line", "kind", "status"), d)
        # a status that moved away leaves an empty row: gone, so a rebuild compares equal
        if shrunk_t:
            cur.executemany(
                store._sql(
                    "DELETE FROM roll_time WHERE b30 = ? AND profile = ? AND kind = ? AND "
                    "result = ? AND status = ? AND n = 0"
                ),
                shrunk_t,
            )
        if shrunk_d:
            cur.executemany(
                store._sql(
                    "DELETE FROM roll_day WHERE day = ? AND terminal = ? AND line = ? AND "
                    "kind = ? AND status = ? AND n = 0"
                ),
                shrunk_d,
            )
        self.time.clear()
        self.day.clear()


def tz_of(store):
    """The store's day offset in seconds east of UTC (settings "tz"; roll_day is by its days)."""
    r = store._one("SELECT value FROM settings WHERE name = 'tz'")
    return int(r[0]) if r else 0


def set_tz(store, tz):
    """Change the store's day offset and rebuild roll_day by it."""
    with store._tx():
        store._exec(
            "INSERT INTO settings (name, value) VALUES ('tz', ?) ON CONFLICT (name) DO UPDATE "
            "SET value = excluded.value",
            (str(int(tz)),),
        )
        _rebuild_days(store, int(tz))


def _counted():
    return "status IS NOT NULL AND status NOT IN ('quarantined', 'unverified')"


def _amount_sql():
    return "CASE WHEN kind IN ('void', 'confirm') THEN 0 ELSE amount END"


def _rebuild_days(store, tz, days=None):
    where = ""
    params = ()
    if days is not None:
        if not days:
            return
        lo, hi = min(days), max(days)
        where = " AND time >= ? AND time < ?"
        params = (lo * 86400 - tz, (hi + 1) * 86400 - tz)
        store._exec("DELETE FROM roll_day WHERE day BETWEEN ? AND ?", (lo, hi))
    else:
        store._exec("DELETE FROM roll_day")
    store._exec(
        "INSERT INTO roll_day (day, terminal, line, kind, status, n, amount) "
        f"SELECT (time + {tz}) / 86400 AS d, terminal, line, kind, status, COUNT(*), "
        f"SUM({_amount_sql()}) FROM taps WHERE {_counted()}{where} "
        "GROUP BY (time + %d) / 86400, terminal, line, kind, status" % tz,
        params,
    )


def _rebuild_times(store, buckets=None):
    where = ""
    params = ()
    if buckets is not None:
        if not buckets:
            return
        lo, hi = min(buckets), max(buckets)
        where = " AND time >= ? AND time < ?"
        params = (lo * 1800, (hi + 1) * 1800)
        store._exec("DELETE FROM roll_time WHERE b30 BETWEEN ? AND ?", (lo, hi))
    else:
        store._exec("DELETE FROM roll_time")
    store._exec(
        "INSERT INTO roll_time (b30, profile, kind, result, status, n, amount) "
        f"SELECT time / 1800, profile, kind, result, status, COUNT(*), SUM({_amount_sql()}) "
        f"FROM taps WHERE {_counted()}{where} GROUP BY time / 1800, profile, kind, result, status",
        params,
    )


def rebuild_rollups(store):
    """Both rollups from the audited rows (what `run(full=True)` ends with; tests compare)."""
    with store._tx():
        _rebuild_times(store)
        _rebuild_days(store, tz_of(store))


# ---- checking one record -------------------------------------------------------------------------


def _row_dict(r):
    d = dict(zip(COLUMNS, r[:_I_RAW], strict=True))
    d["raw"] = bytes(r[_I_RAW])
    d["status"] = r[_I_STATUS]
    return d


def _norm(v):
    return int(v) if isinstance(v, int) or (isinstance(v, str) and v.lstrip("-").isdigit()) else v


def check(row, prev_mac, key, role):
    """(problems, decoded record) of one stored row: problems [] when verified, else
    [(finding kind, detail dict)]; the record is None when it cannot be decoded.

    `prev_mac`: the MAC field of the stored predecessor (None: the link cannot be checked)."""
    raw = row["raw"]
    try:
        rec = taprecord_host.to_dict(raw)
    except (taprecord_host.RecordError, ValueError) as e:
        return [("damaged", {"reason": str(e)})], None
    problems = []
    if prev_mac is None:
        problems.append(("unverified", {"reason": "its predecessor is not in this store"}))
    elif not _mac_ok(key, raw, prev_mac):
        problems.append(("mac", {"reason": "MAC does not follow from the stored predecessor"}))
    if tuple(row[c] for c in COLUMNS) != tuple(rec[c] for c in COLUMNS):  # the fast path
        edited = []
        for col in COLUMNS:
            stored = row[col]
            want = rec[col]
            if _norm(stored) != _norm(want):
                edited.append({"column": col, "stored": stored, "record": want})
        if edited:
            problems.append(("edited", {"columns": edited}))
    office = rec["kind"] in _OFFICE_KINDS or rec["profile"] == "office"
    if not problems and office != (role == "office"):
        problems.append(
            (
                "foreign_kind",
                {"reason": f"a {rec['kind']} record ({rec['profile']}) in a {role}'s journal"},
            )
        )
    return problems, rec


def _initial_status(rec):
    """A verified record's status before the ledger settles it."""
    return "unconfirmed" if rec["kind"] in MONEY_KINDS else "ok"


# ---- the run ---------------------------------------------------------------------------------------


class _Run:
    def __init__(self, store, keys, now):
        self.store = store
        self.keys = keys
        self.now = now
        self.roles = {t["id"]: t["role"] for t in store.terminals()}
        self.roll = Rollups(tz_of(store))
        self.updates = []  # (status, terminal, seq)
        self.findings = []  # rows for the findings table
        self.clear = []  # finding keys to delete
        self.touched = {}  # terminal -> [seq] newly verified
        self.refs = []  # (terminal, target seq, kind) of verified void/confirm records
        self.cards = {}  # uid -> the lowest counter whose ledger must settle again
        self.stats = {"audited": 0, "verified": 0, "quarantined": 0, "unverified": 0}
        self.dirty_times = set()  # buckets of rows counted before and quarantined now
        self.dirty_days = set()

    def key(self, tid):
        return self.keys(tid, self.roles.get(tid, "terminal"))

    def finding(self, kind, row, detail, amount=0):
        self.findings.append(
            (
                f"{kind}:{row['terminal']}:{row['seq']}",
                kind,
                int(row["terminal"]),
                int(row["seq"]),
                row.get("uid"),
                None,
                None,
                amount,
                json.dumps(detail, sort_keys=True, default=str),
                self.now,
            )
        )

    def predecessors(self, tid, seqs):
        """{seq: MAC field of stored seq-1 or the anchor before seq} for the given seqs."""
        out = {}
        seqs = sorted(set(seqs))
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            marks = ", ".join("?" * len(part))
            for s, raw in self.store._all(
                f"SELECT seq, raw FROM taps WHERE terminal = ? AND seq IN ({marks})",
                [tid] + [s - 1 for s in part],
            ):
                out[int(s) + 1] = bytes(raw)[taprecord.BODY : taprecord.BODY + 8]
            lack = [s for s in part if s not in out and s != 1]
            if lack:  # an anchor only where no stored predecessor is
                marks = ", ".join("?" * len(lack))
                for s, mac in self.store._all(
                    f"SELECT seq, prev_mac FROM anchors WHERE terminal = ? AND seq IN ({marks})",
                    [tid] + lack,
                ):
                    out.setdefault(int(s), binascii.unhexlify(mac))
        for s in seqs:
            if s == 1:
                out[1] = taprecord.GENESIS_MAC
        return out

    def rows(self, rows, recheck=False, carry=None):
        """Check a list of row dicts of one terminal (ascending seq). `carry`: {terminal: (seq,
        MAC field)} of the last row checked before (recheck walks the period chunk by chunk)."""
        if not rows:
            return
        tid = int(rows[0]["terminal"])
        role = self.roles.get(tid, "terminal")
        key = self.key(tid)
        need = [
            r["seq"] for i, r in enumerate(rows) if i == 0 or rows[i - 1]["seq"] != r["seq"] - 1
        ]
        known = {}
        if carry is not None and tid in carry:
            s0, mac0 = carry[tid]
            known[s0 + 1] = mac0
        preds = self.predecessors(tid, [s for s in need if s not in known])
        preds.update(known)
        if carry is not None:
            carry[tid] = (
                int(rows[-1]["seq"]),
                rows[-1]["raw"][taprecord.BODY : taprecord.BODY + 8],
            )
        prev_row = None
        for r in rows:
            seq = int(r["seq"])
            if prev_row is not None and int(prev_row["seq"]) == seq - 1:
                prev = prev_row["raw"][taprecord.BODY : taprecord.BODY + 8]
            else:
                prev = preds.get(seq)
            prev_row = r
            problems, rec = check(r, prev, key, role)
            old = r["status"]
            if recheck and not problems:
                continue
            self.stats["audited"] += 1
            if old is not None:  # audited before: what was found then goes (a new row has none)
                for kind in RECORD_FINDINGS[:5]:
                    self.clear.append(f"{kind}:{tid}:{seq}")
            if problems:
                status = "unverified" if problems[0][0] == "unverified" else "quarantined"
                self.stats[status] += 1
                rec_amount = _record_amount(r["raw"])
                for kind, detail in problems:
                    self.finding(kind, r, detail, rec_amount)
                if prev is None and not recheck:
                    self.gap_before(tid, seq)
                if old is not None and old not in BAD:
                    self.dirty_row(r)  # it was counted: its buckets and its card again
                    for u, c in ((r.get("uid"), r.get("counter")), (rec and rec["uid"], 0)):
                        if u:
                            self.touch(u, None if rec is None else min(_int(c), rec["counter"]))
                self.updates.append((status, tid, seq))
                continue
            status = _initial_status(rec)
            self.stats["verified"] += 1
            self.roll.add(rec, status)
            self.updates.append((status, tid, seq))
            self.touched.setdefault(tid, []).append(seq)
            if rec["kind"] in REF_KINDS and rec["uid"] == NO_UID:
                # (a void or confirm carries its card's uid; one without it: find the card)
                self.refs.append((tid, int(rec["amount"]), rec["kind"]))
            if rec["uid"] != "00" * 7 and (rec["kind"] in MONEY_KINDS or rec["counter"]):
                self.touch(rec["uid"], rec["counter"])

    def touch(self, uid, counter):
        """The card's ledger settles again from `counter` - 1 on (None: all of it)."""
        lo = None if counter is None else max(0, int(counter) - 1)
        if uid in self.cards:
            old = self.cards[uid]
            lo = None if old is None or lo is None else min(old, lo)
        self.cards[uid] = lo

    def dirty_row(self, r):
        """A row counted before is now left out: its buckets are rebuilt (its counted values are
        not known for sure: the row is what was edited)."""
        self.dirty_times.update(_buckets(r, 1800, 0))
        self.dirty_days.update(_buckets(r, 86400, self.roll.tz))

    def gap_before(self, tid, seq):
        r = self.store._one("SELECT MAX(seq) FROM taps WHERE terminal = ? AND seq < ?", (tid, seq))
        lo = int(r[0]) + 1 if r and r[0] is not None else 1
        if lo <= seq - 1:
            self.findings.append(
                (
                    f"seq_gap:{tid}:{lo}",
                    "seq_gap",
                    tid,
                    lo,
                    None,
                    None,
                    None,
                    0,
                    json.dumps({"from_seq": lo, "to_seq": seq - 1, "missing": seq - lo}),
                    self.now,
                )
            )

    def flush(self, rollups=True):
        st = self.store
        cur = st.conn.cursor()
        if self.clear:
            cur.executemany(
                st._sql("DELETE FROM findings WHERE key = ?"), [(k,) for k in self.clear]
            )
        if self.findings:
            cur.executemany(
                st._sql(
                    "INSERT INTO findings (key, kind, terminal, seq, uid, counter_from, "
                    "counter_to, amount, detail, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET detail = excluded.detail, "
                    "amount = excluded.amount, counter_from = excluded.counter_from, "
                    "counter_to = excluded.counter_to"
                ),
                self.findings,
            )
        st.set_statuses(self.updates)
        if rollups:
            self.roll.flush(st)
        self.clear, self.findings, self.updates = [], [], []


def _record_amount(raw):
    try:
        rec = taprecord_host.to_dict(raw)
    except (taprecord_host.RecordError, ValueError):
        return 0
    return money_amount(rec["kind"], rec["amount"]) if rec["kind"] in MONEY_KINDS else 0


def _buckets(r, size, tz):
    """Bucket numbers of a row by its time column and by its record's time (either may be true)."""
    out = set()
    try:
        out.add((int(r["time"]) + tz) // size)
    except (TypeError, ValueError):
        pass
    try:
        out.add((taprecord_host.to_dict(r["raw"])["time"] + tz) // size)
    except (taprecord_host.RecordError, ValueError):
        pass
    return out


def _settle_refs(run):
    """Void and confirm records settle the money record they name (same terminal)."""
    st = run.store
    for tid, target, _kind in run.refs:
        r = st._one(_SELECT + " WHERE terminal = ? AND seq = ?", (tid, target))
        if r is None:
            continue
        row = _row_dict(r)
        if row["kind"] in MONEY_KINDS and row["status"] not in BAD and row["uid"] != "00" * 7:
            run.touch(row["uid"], row["counter"])


def _fill_gaps(run):
    """Sequence gaps that newly verified records closed (or split): derived again."""
    st = run.store
    for tid, seqs in run.touched.items():
        lo, hi = min(seqs), max(seqs)
        for key, a, detail in st._all(
            "SELECT key, seq, detail FROM findings WHERE kind = 'seq_gap' AND terminal = ? AND "
            "seq <= ?",
            (tid, hi),
        ):
            b = json.loads(detail)["to_seq"]
            if b < lo:
                continue
            st._exec("DELETE FROM findings WHERE key = ?", (key,))
            have = [
                int(s)
                for (s,) in st._all(
                    "SELECT seq FROM taps WHERE terminal = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                    (tid, int(a), b),
                )
            ]
            start = int(a)
            for s in have + [b + 1]:
                if s > start:
                    st._exec(
                        "INSERT INTO findings (key, kind, terminal, seq, uid, counter_from, "
                        "counter_to, amount, detail, found_at) VALUES (?, 'seq_gap', ?, ?, NULL, "
                        "NULL, NULL, 0, ?, ?) ON CONFLICT (key) DO NOTHING",
                        (
                            f"seq_gap:{tid}:{start}",
                            tid,
                            start,
                            json.dumps({"from_seq": start, "to_seq": s - 1, "missing": s - start}),
                            run.now,
                        ),
                    )
                start = s + 1


def _settle(run):
    """Money statuses of the cards whose records changed (the ledger), with their rollups."""
    from host_tools.backoffice import ledger

    ledger.settle(run.store, run.cards, run.roll, run.now)


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _mark(store, cards):
    """Cards whose ledger must be settled again, from which counter on ({uid: lo}; kept in the
    store: a run cut short resumes)."""
    rows = [(u, lo) for u, lo in sorted(cards.items()) if u and u != NO_UID]
    if rows:
        store.conn.cursor().executemany(
            store._sql(
                "INSERT INTO dirty_cards (uid, lo) VALUES (?, ?) ON CONFLICT (uid) DO UPDATE SET "
                "lo = CASE WHEN dirty_cards.lo IS NULL OR excluded.lo IS NULL THEN NULL "
                "WHEN excluded.lo < dirty_cards.lo THEN excluded.lo ELSE dirty_cards.lo END"
            ),
            rows,
        )


def settle_dirty(store, now, chunk=500):
    """Settle every card marked dirty, `chunk` cards per transaction."""
    from host_tools.backoffice import ledger

    n = 0
    while True:
        with store._tx():
            got = store._all("SELECT uid, lo FROM dirty_cards LIMIT %d" % chunk)
            if not got:
                return n
            uids = [u for u, _lo in got]
            roll = Rollups(tz_of(store))
            ledger.settle(store, {u: lo for u, lo in got}, roll, now)
            roll.flush(store)
            marks = ", ".join("?" * len(uids))
            store._exec(f"DELETE FROM dirty_cards WHERE uid IN ({marks})", uids)
            n += len(uids)


def run(store, keys, full=False, now=None, batch=_BATCH):
    """Audit what is not audited yet (full: everything again), then settle the ledger of every
    card it touched. Returns counts (JSON-ready)."""
    now = int(now if now is not None else time.time())
    t0 = time.time()
    total = {"audited": 0, "verified": 0, "quarantined": 0, "unverified": 0}
    if full:
        with store._tx():
            store._exec("UPDATE taps SET status = NULL WHERE status IS NOT NULL")
            store._exec("DELETE FROM findings")
            store._exec("DELETE FROM roll_time")
            store._exec("DELETE FROM roll_day")
            store._exec("DELETE FROM dirty_cards")
    after = (-1, -1)  # keyset: each batch starts past the last (PostgreSQL keeps the rows just
    # audited in the partial index until a vacuum: starting from the front rescans them)
    while True:
        with store._tx():
            r = _Run(store, keys, now)
            rows = [
                _row_dict(x)
                for x in store._all(
                    _SELECT + " WHERE status IS NULL AND (terminal, seq) > (?, ?) "
                    "ORDER BY terminal, seq LIMIT %d" % batch,
                    after,
                )
            ]
            if not rows:
                break
            after = (int(rows[-1]["terminal"]), int(rows[-1]["seq"]))
            by = {}
            for row in rows:
                by.setdefault(int(row["terminal"]), []).append(row)
            for tid in sorted(by):
                r.rows(by[tid])
            r.flush()
            _fill_gaps(r)
            _settle_refs(r)
            _mark(store, r.cards)
            for k in total:
                total[k] += r.stats[k]
    total["cards_settled"] = settle_dirty(store, now)
    if total["cards_settled"]:
        from host_tools.backoffice import denylist  # clones onto the deny list (setting "auto")

        total["deny_published"] = denylist.auto(store)
    total["seconds"] = round(time.time() - t0, 3)
    return total


def recheck(store, keys, since=None, until=None, now=None, chunk=6 * 3600):
    """Check rows audited before (time in [since, until)) again: a row edited since its audit is
    quarantined now and its rollup buckets rebuilt. Returns {"rechecked", "quarantined"}."""
    now = int(now if now is not None else time.time())
    out = {"rechecked": 0, "quarantined": 0}
    if since is None or until is None:
        r = store._one("SELECT MIN(time), MAX(time) FROM taps")
        if r is None or r[0] is None:
            return out
        since = int(r[0]) if since is None else since
        until = int(r[1]) + 1 if until is None else until
    t = int(since)
    carry = {}
    while t < until:
        end = min(int(until), t + chunk)
        with store._tx():
            run_ = _Run(store, keys, now)
            rows = [
                _row_dict(x)
                for x in store._all(
                    _SELECT + " WHERE time >= ? AND time < ? AND status IS NOT NULL AND "
                    "status NOT IN ('quarantined', 'unverified')",
                    (t, end),
                )
            ]
            out["rechecked"] += len(rows)
            rows.sort(key=lambda d: (int(d["terminal"]), int(d["seq"])))
            by = {}
            for row in rows:
                by.setdefault(int(row["terminal"]), []).append(row)
            for tid in sorted(by):
                run_.rows(by[tid], recheck=True, carry=carry)
            out["quarantined"] += run_.stats["quarantined"]
            run_.flush()
            if run_.dirty_times or run_.dirty_days:
                _rebuild_times(store, run_.dirty_times)
                _rebuild_days(store, run_.roll.tz, run_.dirty_days)
                _settle(run_)
                run_.flush()
        t = end
    return out


def findings(store, kinds=None, uid=None, limit=None, offset=0):
    """Stored findings as dicts (detail decoded), record findings first by terminal and seq."""
    sql = (
        "SELECT key, kind, terminal, seq, uid, counter_from, counter_to, amount, detail, "
        "found_at FROM findings"
    )
    where, params = [], []
    if kinds:
        where.append("kind IN (%s)" % ", ".join("?" * len(kinds)))
        params += list(kinds)
    if uid:
        where.append("uid = ?")
        params.append(uid)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY kind, terminal, seq, uid, counter_from"
    if limit:
        sql += " LIMIT %d OFFSET %d" % (int(limit), int(offset))
    out = []
    for r in store._all(sql, params):
        d = dict(
            zip(
                (
                    "key",
                    "kind",
                    "terminal",
                    "seq",
                    "uid",
                    "counter_from",
                    "counter_to",
                    "amount",
                    "detail",
                    "found_at",
                ),
                r,
                strict=True,
            )
        )
        d["detail"] = json.loads(d["detail"])
        for k in ("terminal", "seq", "counter_from", "counter_to", "amount", "found_at"):
            if d[k] is not None:
                d[k] = int(d[k])
        out.append(d)
    return out


def pending(store):
    """Rows not audited yet (the report says how many). SQLite is told to count the partial
    index: statistics taken while rows waited for their audit (an ANALYZE after a bulk load)
    make its planner scan the whole table instead (2 to 10 s a page at 12 M rows)."""
    hint = " INDEXED BY taps_unaudited" if store.dialect == "sqlite" else ""
    return int(store._one(f"SELECT COUNT(*) FROM taps{hint} WHERE status IS NULL")[0])
