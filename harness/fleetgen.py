"""A generated month of a city fleet's taps, for the back office's scale bench and browser test.

    info = generate("sqlite:///month.db", ks, taps=1_000_000, vehicles=3000, days=30)

Every record is a real tap record (card_schema.taprecord), MAC-chained with its terminal's key
(or a card office's), so the audit verifies the generated store exactly as a synced one: riders
(cards) ride buses of lines, each card's counter and balance carried across terminals; a card that
cannot pay is refused and tops up at one of the offices (office journal kinds, confirmed); a few
charges are voided. Rows go in with executemany (SQLite) or COPY (PostgreSQL), bypassing
store.ingest (whose per-batch chain checks are the sync bench's subject): the audit checks them.
Anomalies (`anomalies=True`): one terminal's last taps are not stored (missing transactions),
one card is replayed (a rollback), one stored amount is edited.
"""

import random
import struct
import time

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import store as store_mod

FARE = 25000
_BODY = struct.Struct(taprecord.FMT)
_COLS = store_mod._TAP_COLUMNS
_KIND = taprecord_host.KIND_NAMES
_RESULT = taprecord_host.RESULT_NAMES


class _Source:
    __slots__ = ("id", "key", "seq", "prev", "rows", "line", "role", "seq_kept", "cut")

    def __init__(self, sid, key, line=0, role="terminal"):
        self.id, self.key, self.line, self.role = sid, key, line, role
        self.seq = 0
        self.prev = taprecord.GENESIS_MAC
        self.rows = []

    def record(self, t, uid, kind, result, counter, amount, balance, profile=1):
        self.seq += 1
        body = _BODY.pack(
            1,
            kind,
            result,
            profile,
            self.seq,
            t,
            self.id,
            uid,
            0,
            counter,
            amount,
            balance,
            self.line,
            0,
            0,
            1,
            1,
            0,
            b"\x00" * 5,
        )
        c = CMAC(algorithms.AES(self.key))
        c.update(self.prev + body)
        mac = c.finalize()[:8]
        head = body + mac
        crc = taprecord.crc32(head) & 0xFFFFFFFF
        raw = head + struct.pack("<I", crc)
        self.prev = mac
        self.rows.append(
            (
                self.id,
                self.seq,
                t,
                uid.hex(),
                _KIND[kind],
                _RESULT[result],
                "office" if profile == 9 else "bus",
                0,
                counter,
                amount,
                balance,
                self.line,
                0,
                0,
                1,
                1,
                0,
                mac.hex(),
                raw,
                t + 60,
            )
        )
        return self.seq


def _flush(db, sources):
    rows = [r for s in sources for r in s.rows]
    if not rows:
        return 0
    if db.dialect == "postgresql":
        with db.conn.cursor().copy("COPY taps ({}) FROM STDIN".format(", ".join(_COLS))) as cp:
            for r in rows:
                cp.write_row(r)
    else:
        db.conn.execute("BEGIN")
        db.conn.executemany(
            "INSERT INTO taps ({}) VALUES ({})".format(
                ", ".join(_COLS), ", ".join("?" * len(_COLS))
            ),
            rows,
        )
        db.conn.execute("COMMIT")
    for s in sources:
        s.rows = []
    return len(rows)


def generate(
    url,
    ks,
    taps=1_000_000,
    vehicles=3000,
    days=30,
    start=None,
    cards=None,
    offices=3,
    lines=300,
    seed=1,
    anomalies=True,
    progress=None,
    first_terminal=1001,
    first_office=9001,
    card_prefix=0,
):
    """Fill the store at `url` (new, or one whose ids do not collide: terminals from
    `first_terminal`, offices from `first_office`, card UIDs 04 `card_prefix` ...); returns facts
    about what it holds."""
    rnd = random.Random(seed)
    start = int(start if start is not None else (time.time() // 86400 - days) * 86400)
    cards = cards or max(1000, taps // 30)
    db = store_mod.open_store(url)
    taken = {t["id"] for t in db.terminals()}
    ids = set(range(first_terminal, first_terminal + vehicles))
    ids |= set(range(first_office, first_office + offices))
    if taken & ids:
        db.close()
        raise ValueError("generate(): ids %s are in the store already" % sorted(taken & ids)[:5])
    if db.dialect == "sqlite":
        db.conn.execute("PRAGMA synchronous=OFF")
    terms = [
        _Source(first_terminal + i, keystore.terminal_key(ks, first_terminal + i), 1 + i % lines)
        for i in range(vehicles)
    ]
    offs = [
        _Source(first_office + i, keystore.office_key(ks, first_office + i), role="office")
        for i in range(offices)
    ]
    uids = [bytes([4, card_prefix]) + i.to_bytes(5, "big") for i in range(cards)]
    counter = [0] * cards
    balance = [0] * cards
    # every card is issued at an office before the month, with 100,000..500,000 Rial
    for c in range(cards):
        o = offs[c % offices]
        amount = 100000 * rnd.randint(1, 5)
        s = o.record(start - 86400 + c % 3600, uids[c], 8, 0, 1, amount, amount, 9)
        o.record(start - 86400 + c % 3600, uids[c], 7, 8, 1, s, amount, 9)
        counter[c], balance[c] = 1, amount
    _flush(db, offs)
    per_day = taps // days
    stored = cards * 2
    facts = {"voided": 0, "refused": 0, "topups": 0, "charges": 0, "revenue_all": 0}
    # the rollback: card 0's image copied at 60% of the period and written back at 80%
    t_copy, t_back = start + int(days * 86400 * 0.6), start + int(days * 86400 * 0.8)
    saved = None
    for d in range(days):
        day0 = start + d * 86400
        # rides between 05:00 and 23:00 local-ish, denser at the peaks
        times = sorted(
            day0 + int(5 * 3600 + 18 * 3600 * rnd.betavariate(2, 2)) for _ in range(per_day)
        )
        for t in times:
            if anomalies and saved is None and t >= t_copy:
                saved = (counter[0], balance[0])
            elif anomalies and saved and t >= t_back:
                counter[0], balance[0] = saved
                saved = ()
                facts["rollback_card"] = uids[0].hex()
            c = rnd.randrange(cards) if not (anomalies and rnd.random() < 0.01) else 0
            term = terms[rnd.randrange(vehicles)]
            uid = uids[c]
            if balance[c] < FARE:
                term.record(t, uid, 2, 1, counter[c], FARE, balance[c])
                facts["refused"] += 1
                o = offs[c % offices]
                amount = 200000
                counter[c] += 1
                balance[c] += amount
                s = o.record(t, uid, 9, 0, counter[c], amount, balance[c], 9)
                o.record(t, uid, 7, 8, counter[c], s, balance[c], 9)
                facts["topups"] += 1
                continue
            if rnd.random() < 0.0005:  # the card was pulled before the commit: voided
                s = term.record(t, uid, 1, 0, counter[c] + 1, FARE, balance[c] - FARE)
                term.record(t + 2, uid, 4, 5, counter[c] + 1, s, -1)
                facts["voided"] += 1
            counter[c] += 1
            balance[c] -= FARE
            term.record(t, uid, 1, 0, counter[c], FARE, balance[c])
            facts["charges"] += 1
            facts["revenue_all"] += FARE
        stored += _flush(db, terms + offs)
        if progress:
            progress(d + 1, days)
    now = int(time.time())
    anomalies_done = {}
    lost = None
    if anomalies and vehicles > 3:
        # terminal 2 is out of contact since two days before the end (a short period: half of
        # it): its taps since then are not in the store (the ledger shows missing transactions)
        lost = terms[1]
        cut = start + days * 86400 - min(2 * 86400, days * 43200)
        db._exec("DELETE FROM taps WHERE terminal = ? AND time >= ?", (lost.id, cut))
        r = db._one("SELECT MAX(seq) FROM taps WHERE terminal = ?", (lost.id,))
        lost.seq_kept = int(r[0] or 0)
        lost.cut = cut
        anomalies_done["unsynced_terminal"] = lost.id
        # one stored amount edited (terminal 3's first charge)
        db._exec(
            "UPDATE taps SET amount = 1000 WHERE terminal = ? AND seq = 1 AND kind = 'charge'",
            (terms[2].id,),
        )
        anomalies_done["edited"] = (terms[2].id, 1)
    for s in terms + offs:
        last = s.seq_kept if s is lost else s.seq
        seen = lost.cut if s is lost else now - rnd.randint(0, 3 * 3600)
        db._exec(
            "INSERT INTO terminals (id, last_seq, last_mac, last_sync, acked_seq, info, role, "
            "last_usb, last_wifi) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?)",
            (
                s.id,
                last,
                seen,
                last,
                '{"fw": "0.3.1", "fares_ver": 7, "deny_ver": 3, "unsynced": %d, '
                '"capacity": 1020, "clock_drift": %d, "head_seq": %d}'
                % (
                    s.seq - last if s is lost else rnd.randint(0, 700),
                    rnd.randint(-9, 9),
                    last,
                ),
                s.role,
                seen if s.role == "terminal" else None,
                seen - 600 if s.role == "terminal" and s is not lost else None,
            ),
        )
    if db.dialect == "sqlite":
        db.conn.execute("PRAGMA synchronous=FULL")
        db.conn.execute("ANALYZE")
    else:
        db._exec("ANALYZE")
    n = db.count()
    db.close()
    return dict(
        facts,
        stored=n,
        cards=cards,
        terminals=vehicles,
        offices=offices,
        start=start,
        days=days,
        anomalies=anomalies_done,
    )
