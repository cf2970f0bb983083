"""The tap store: every synced journal record, once, with its MAC chain checked.

SQLite by default, PostgreSQL (psycopg 3) when the URL says so; both get the same schema, created and
upgraded by numbered migrations that run by themselves on open (tracked in `schema_version`).

    store = open_store("sqlite:///taps.db")            # or "postgresql://user@host/db"
    inserted, duplicates = store.ingest(7, records, keystore.terminal_key(ks, 7))
    store.last_seq(7)

Ingest is all-or-nothing per batch, idempotent by (terminal, seq), and refuses a batch whose MAC chain
does not continue from what is stored for that terminal (or from the genesis MAC at seq 1).
"""

import array
import binascii
import contextlib
import functools
import itertools
import json
import os
import re
import sqlite3
import struct
import sys
import time
import urllib.parse

from card_schema import signed_host, taprecord, taprecord_host
from host_tools import TapkitError

DEFAULT_URL = "sqlite:///tapkit.db"
NO_UID = "00" * 7
REFUSED_KINDS = ("refused", "denied")


class StoreError(TapkitError):
    """The store cannot be opened or used."""


class ChainError(StoreError):
    """A batch was refused: it does not continue the terminal's MAC chain. Nothing was stored."""


# Migrations: (version, statements). {blob} and {bigint} are filled per dialect. Never edit a released
# migration; append a new one.
MIGRATIONS = [
    (
        1,
        [
            """CREATE TABLE terminals (
                id BIGINT PRIMARY KEY,
                last_seq BIGINT NOT NULL DEFAULT 0,
                last_mac TEXT,
                last_sync BIGINT,
                acked_seq BIGINT,
                info TEXT
            )""",
            """CREATE TABLE taps (
                terminal BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                time BIGINT NOT NULL,
                uid TEXT NOT NULL,
                kind TEXT NOT NULL,
                result TEXT NOT NULL,
                profile TEXT NOT NULL,
                zone INTEGER NOT NULL,
                counter BIGINT NOT NULL,
                amount BIGINT NOT NULL,
                balance BIGINT NOT NULL,
                line INTEGER NOT NULL,
                stop INTEGER NOT NULL,
                duration INTEGER NOT NULL,
                tariff_ver INTEGER NOT NULL,
                deny_ver INTEGER NOT NULL,
                mac TEXT NOT NULL,
                raw {blob} NOT NULL,
                received_at BIGINT NOT NULL,
                PRIMARY KEY (terminal, seq)
            )""",
            "CREATE INDEX taps_card ON taps (uid, counter)",
            "CREATE INDEX taps_kind ON taps (kind)",
        ],
    ),
    (
        2,
        [
            # config payloads the operator published (fare tables, deny lists): signed per terminal
            # when they are sent (keystore.config_key), so the store holds them unsigned
            """CREATE TABLE configs (
                kind INTEGER NOT NULL,
                version BIGINT NOT NULL,
                payload {blob} NOT NULL,
                published_at BIGINT NOT NULL,
                PRIMARY KEY (kind, version)
            )""",
            # every refused Wi-Fi batch (unknown terminal, bad MAC...), for the operator
            """CREATE TABLE rejects (
                at BIGINT NOT NULL,
                terminal BIGINT,
                source TEXT NOT NULL,
                reason TEXT NOT NULL
            )""",
        ],
    ),
    (
        3,
        [
            # the audit (backoffice/audit.py) sets status once a record's MAC chain and columns
            # are verified: NULL = not audited yet; the figures count audited rows only
            "ALTER TABLE taps ADD COLUMN status TEXT",
            "CREATE INDEX taps_unaudited ON taps (terminal, seq) WHERE status IS NULL",
            "CREATE INDEX taps_unconfirmed ON taps (uid) WHERE status = 'unconfirmed'",
            "CREATE INDEX taps_time ON taps (time)",
            # a source is a terminal or a card office (its own key: keystore.office_key)
            "ALTER TABLE terminals ADD COLUMN role TEXT NOT NULL DEFAULT 'terminal'",
            "ALTER TABLE terminals ADD COLUMN last_usb BIGINT",
            "ALTER TABLE terminals ADD COLUMN last_wifi BIGINT",
            # the MAC before a stored record whose predecessor is not stored (a Wi-Fi anchor)
            """CREATE TABLE anchors (
                terminal BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                prev_mac TEXT NOT NULL,
                PRIMARY KEY (terminal, seq)
            )""",
            # what the audit found: edited or unverifiable records, sequence gaps, the ledger's
            # missing transactions, balance breaks, clones (key: kind and where, see audit.py)
            """CREATE TABLE findings (
                key TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                terminal BIGINT,
                seq BIGINT,
                uid TEXT,
                counter_from BIGINT,
                counter_to BIGINT,
                amount BIGINT NOT NULL DEFAULT 0,
                detail TEXT NOT NULL,
                found_at BIGINT NOT NULL
            )""",
            "CREATE INDEX findings_uid ON findings (uid)",
            "CREATE INDEX findings_terminal ON findings (terminal, seq)",
            # rollups of audited records (kept by the audit; rebuilt by `tapkit audit --full`):
            # per half hour (UTC) fleet-wide, and per local day (settings tz) and terminal
            """CREATE TABLE roll_time (
                b30 BIGINT NOT NULL,
                profile TEXT NOT NULL,
                kind TEXT NOT NULL,
                result TEXT NOT NULL,
                status TEXT NOT NULL,
                n BIGINT NOT NULL,
                amount BIGINT NOT NULL,
                PRIMARY KEY (b30, profile, kind, result, status)
            )""",
            """CREATE TABLE roll_day (
                day BIGINT NOT NULL,
                terminal BIGINT NOT NULL,
                line INTEGER NOT NULL,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                n BIGINT NOT NULL,
                amount BIGINT NOT NULL,
                PRIMARY KEY (day, terminal, line, kind, status)
            )""",
            "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        4,
        [
            # cards whose ledger the audit must settle again (a run cut short resumes with them)
            "CREATE TABLE dirty_cards (uid TEXT PRIMARY KEY)",
        ],
    ),
    (
        5,
        [
            # the lowest card counter the new records touch: the ledger settles from there on
            # (NULL: the whole card)
            "ALTER TABLE dirty_cards ADD COLUMN lo BIGINT",
        ],
    ),
    (
        6,
        [
            # PostgreSQL: taps partitioned by month of the tap's time (_partition_taps); SQLite
            # (one depot, one file) stays one table
            lambda store: store._partition_taps(),
        ],
    ),
    (
        7,
        [
            # refused uploads are counted (a row per source, terminal and reason per flush of
            # host_tools/backoffice/ingest.py), not written one fsynced row per bad POST
            "ALTER TABLE rejects ADD COLUMN count BIGINT NOT NULL DEFAULT 1",
        ],
    ),
    (
        8,
        [
            # the record's flag FLAG_CLOCK_UNSET: 1 when the terminal's clock was not set since
            # power-up (its time is not the true time); older rows are 0, as their records say
            "ALTER TABLE taps ADD COLUMN clock_unset INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX taps_clock_unset ON taps (terminal) WHERE clock_unset = 1",
        ],
    ),
]

# PostgreSQL taps partitions: one per calendar month (UTC) of the tap's time, named taps_YYYYMM;
# taps_default holds times outside any (a terminal clock before 2020 or far ahead). Created ahead
# (this month and the next two, when a store first ingests) and whenever a batch brings a new month.
_TAP_INDEXES = (
    "CREATE INDEX taps_card ON taps (uid, counter)",
    "CREATE INDEX taps_kind ON taps (kind)",
    "CREATE INDEX taps_unaudited ON taps (terminal, seq) WHERE status IS NULL",
    "CREATE INDEX taps_unconfirmed ON taps (uid) WHERE status = 'unconfirmed'",
    "CREATE INDEX taps_time ON taps (time)",
)
_FIRST_MONTH = (2020, 1)


def _month(t):
    """(year, month) of unix time t (UTC)."""
    g = time.gmtime(max(0, t))
    return g.tm_year, g.tm_mon


def _month_range(ym):
    """(start, end) unix seconds of a (year, month)."""
    import calendar

    y, m = ym
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return calendar.timegm((y, m, 1, 0, 0, 0)), calendar.timegm((ny, nm, 1, 0, 0, 0))


_DIALECT_TYPES = {
    "sqlite": {"blob": "BLOB"},
    "postgresql": {"blob": "BYTEA"},
}

_TAP_COLUMNS = (
    "terminal",
    "seq",
    "time",
    "uid",
    "kind",
    "result",
    "profile",
    "zone",
    "counter",
    "amount",
    "balance",
    "line",
    "stop",
    "duration",
    "tariff_ver",
    "deny_ver",
    "clock_unset",
    "mac",
    "raw",
    "received_at",
)


def _safe_url(url):
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


class NoStore(StoreError):
    """A read-only command was pointed at a store that does not exist (nothing was created)."""


def open_store(url=DEFAULT_URL, create=True):
    """Open the store at `url` (sqlite:///PATH, a plain path, postgresql://...) and bring its schema
    up to date. `create=False` (the read-only commands: report, dashboard, fleet, ledger) never
    creates one: a missing file, or a database without the tapkit schema, raises NoStore."""
    url = url or DEFAULT_URL
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
        try:
            conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreError(f"cannot connect to {_safe_url(url)}: {first}") from None
        if not create:
            r = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if r is None or r[0] is None:
                conn.close()
                raise NoStore(
                    f"{_safe_url(url)} holds no tapkit store (nothing synced into it yet): "
                    "check --db"
                )
        return Store(conn, "postgresql", url)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        path = path.removeprefix("/")  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    elif "://" in url:
        raise StoreError(f"unknown store URL {url}: use sqlite:///PATH or postgresql://...")
    else:
        path = url
    target = path
    if path != ":memory:":
        if not create:
            if not os.path.isfile(path):
                raise NoStore(
                    f"no store at {path}: check --db (`tapkit sync` or `serve` make one)"
                )
            # mode=rw: SQLite opens the file or fails, it never creates one
            target = "file:%s?mode=rw" % urllib.parse.quote(os.path.abspath(path))
        else:
            d = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(d):
                raise StoreError(f"cannot create the store {path}: folder {d} does not exist")
    try:
        # check_same_thread off: `tapkit serve` hands a connection to one request thread at a time
        conn = sqlite3.connect(
            target,
            isolation_level=None,
            timeout=30,
            check_same_thread=False,
            uri=target.startswith("file:"),
        )
        if not create:
            r = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if r is None:
                conn.close()
                raise NoStore(f"{path} is not a tapkit store (no schema): check --db")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        # durable first: a batch is on disk before the terminal is told it may reclaim it
        conn.execute("PRAGMA synchronous=FULL")
        # the pages a burst of batches touches (20,000 rows: ~8 MB with the indexes) stay in the
        # cache until the commit instead of spilling to the WAL mid-transaction (2 MB by default)
        conn.execute("PRAGMA cache_size=-32768")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the store {path}: {e}") from None
    return Store(conn, "sqlite", url)


class Store:
    def __init__(self, conn, dialect, url):
        self.conn = conn
        self.dialect = dialect
        self.url = url
        self.migrate()

    # ---- plumbing ------------------------------------------------------------------------------

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _sql(self, sql):
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _exec(self, sql, params=()):
        return self.conn.execute(self._sql(sql), params)

    def _all(self, sql, params=()):
        return self._exec(sql, params).fetchall()

    def _one(self, sql, params=()):
        return self._exec(sql, params).fetchone()

    @contextlib.contextmanager
    def _tx(self):
        """One transaction; rolled back on any exception. SQLite takes the write lock up front."""
        if self.dialect == "postgresql":
            with self.conn.transaction():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def migrate(self):
        """Bring the schema to the newest version; returns the version."""
        with self._tx():
            if self.dialect == "postgresql":
                # two hosts opening a fresh database at once: one migrates, the other waits
                self._exec("SELECT pg_advisory_xact_lock(7150)")
            self._exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._one("SELECT MAX(version) FROM schema_version")
            current = row[0] or 0
            types = _DIALECT_TYPES[self.dialect]
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for s in statements:
                    if callable(s):
                        s(self)
                    else:
                        self._exec(s.format(**types))
                self._exec("INSERT INTO schema_version (version) VALUES (?)", (version,))
                current = version
        return current

    def _partition_taps(self):
        """Migration 6 on PostgreSQL: taps becomes a table partitioned by month of `time`, its rows
        copied into their months. The primary key is (terminal, seq, time) (a partitioned key must
        hold the partition column); (terminal, seq) stays unique because every insert goes through
        _ingest under the terminal's row lock, which skips the seqs already stored."""
        if self.dialect != "postgresql":
            return
        self._exec("ALTER TABLE taps RENAME TO taps_unpartitioned")
        for (name,) in self._all(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'taps_unpartitioned'"
        ):
            self._exec(f"ALTER INDEX {name} RENAME TO {name}_old")
        self._exec(
            "CREATE TABLE taps (LIKE taps_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (time)"
        )
        self._exec("ALTER TABLE taps ADD PRIMARY KEY (terminal, seq, time)")
        for sql in _TAP_INDEXES:
            self._exec(sql)
        self._exec("CREATE TABLE taps_default PARTITION OF taps DEFAULT")
        r = self._one("SELECT MIN(time), MAX(time) FROM taps_unpartitioned")
        months = set(self._months_ahead())
        if r[0] is not None:
            ym, last = _month(int(r[0])), _month(int(r[1]))
            while ym <= last:
                months.add(ym)
                ym = (ym[0] + 1, 1) if ym[1] == 12 else (ym[0], ym[1] + 1)
        for ym in sorted(months):
            self._create_month(ym)
        self._exec("INSERT INTO taps SELECT * FROM taps_unpartitioned")
        self._exec("DROP TABLE taps_unpartitioned")

    def _months_ahead(self):
        now = _month(int(time.time()))
        out = [now]
        for _ in range(2):
            y, m = out[-1]
            out.append((y + 1, 1) if m == 12 else (y, m + 1))
        return out

    def _create_month(self, ym):
        """The partition of month ym, unless it exists; rows of it already in taps_default move in.
        Inside the caller's transaction."""
        name = "taps_%04d%02d" % ym
        if self._one("SELECT to_regclass(?)", (name,))[0] is not None:
            return
        start, end = _month_range(ym)
        self._exec(f"CREATE TABLE {name} (LIKE taps INCLUDING DEFAULTS)")
        self._exec(
            f"WITH moved AS (DELETE FROM taps_default WHERE time >= {start} AND time < {end} "
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        )
        self._exec(
            f"ALTER TABLE taps ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})"
        )

    def ensure_months(self, times=()):
        """PostgreSQL: the partitions for unix times `times` (from 2020 up to two months ahead:
        others go to taps_default) and for this month and the next two. A store remembers which it
        made, so a batch costs this only when it brings a month nobody made yet."""
        if self.dialect != "postgresql":
            return
        known = getattr(self, "_months", None)
        if known is None:
            if self._one("SELECT to_regclass('taps_default')")[0] is None:
                return  # not partitioned (a schema before migration 6: tests of it)
            known = self._months = set()
        ahead = self._months_ahead()
        want = set(ahead)
        seen = sorted(ym for ym in map(_month, times) if _FIRST_MONTH <= ym <= ahead[-1])
        if seen:  # and every month between (a batch of several months)
            ym = seen[0]
            while ym <= seen[-1]:
                want.add(ym)
                ym = (ym[0] + 1, 1) if ym[1] == 12 else (ym[0], ym[1] + 1)
        want -= known
        if not want:
            return
        with self._tx():
            self._exec("SELECT pg_advisory_xact_lock(7151)")  # one creator at a time
            for ym in sorted(want):
                self._create_month(ym)
        known |= want

    def partitions(self):
        """[(name, rows)] of the taps partitions, oldest first (PostgreSQL; [] on SQLite)."""
        if self.dialect != "postgresql":
            return []
        rows = self._all(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'taps' ORDER BY c.relname"
        )
        return [(n, int(self._one(f"SELECT COUNT(*) FROM {n}")[0])) for (n,) in rows]

    def drop_months_before(self, year, month):
        """Drop the taps of every month before (year, month) at once (DROP TABLE of the monthly
        partitions: no row-by-row delete); returns the dropped partition names. PostgreSQL only."""
        if self.dialect != "postgresql":
            raise StoreError("dropping months needs the PostgreSQL store (partitioned by month)")
        dropped = []
        with self._tx():
            for name, _ in self.partitions():
                if name != "taps_default" and name < "taps_%04d%02d" % (year, month):
                    self._exec(f"DROP TABLE {name}")
                    dropped.append(name)
        if getattr(self, "_months", None):
            self._months = {ym for ym in self._months if "taps_%04d%02d" % ym not in dropped}
        return dropped

    def schema_version(self):
        return self._one("SELECT MAX(version) FROM schema_version")[0] or 0

    # ---- writing -------------------------------------------------------------------------------

    def ingest(
        self, terminal_id, records, key, allow_gap=False, prev_mac=None, role="terminal", sync=None
    ):
        """Store a run of consecutive records of one terminal; return (inserted, duplicates).

        The chain must continue from the stored record before the first one (genesis MAC at seq 1).
        `allow_gap=True` accepts a batch that starts after a gap (records acknowledged elsewhere): the
        first record's link to its unknown predecessor cannot be checked; the report lists the gap.
        Raises ChainError (nothing stored) for a damaged record, a broken chain, a foreign record or a
        record that differs from the stored one with the same seq.
        `prev_mac`: the MAC field of the record before the first one, when the caller has it but the
        store does not (a Wi-Fi batch's anchor: acknowledged elsewhere); the first record is then
        checked against it (the MAC covers it: a made-up value cannot verify) and kept (table
        anchors) so the audit can check it again. A stored predecessor wins over it.
        `role`: "terminal" or "office" (a card office's journal, host_tools/cardoffice/journal.py);
        one id is one source: a terminal's batch for an office's id is refused, and back.
        `sync`: (info, via) to note_sync in the same transaction (acked seq: the batch's last), so a
        Wi-Fi batch costs one commit. The batch is checked whole at C speed (CRC, sequence, the MAC
        chain: taprecord_host.chain_break) and inserted by COPY (PostgreSQL) or executemany."""
        if self.dialect == "postgresql":
            self.ensure_months(_times(records))
        with self._tx():
            return self._ingest(terminal_id, records, key, allow_gap, prev_mac, role, sync)

    def ingest_group(self, batches):
        """Several ingests in one transaction, each under its own savepoint: one commit (one fsync
        on SQLite) for all of them. `batches`: (terminal_id, records, key, prev_mac, sync) each;
        returns, in order, (inserted, duplicates) or the ChainError that refused that batch (its
        rows rolled back, the others kept). Serve groups the batches of concurrent requests this way
        on SQLite, whose writers take turns anyway (ingest.Ingest). `batches` may be an iterator
        that waits for the next batch (writer.py's): each is written as it comes, the commit
        follows the last."""
        out = []
        if self.dialect == "postgresql":
            batches = list(batches)
            self.ensure_months([t for b in batches for t in _times(b[1])])
        with self._tx():
            for tid, records, key, prev_mac, sync in batches:
                self._exec("SAVEPOINT batch")
                try:
                    out.append(self._ingest(tid, records, key, False, prev_mac, "terminal", sync))
                except ChainError as e:
                    self._exec("ROLLBACK TO batch")
                    out.append(e)
                self._exec("RELEASE batch")
        return out

    def _ingest(self, terminal_id, records, key, allow_gap, prev_mac, role, sync):
        p = records if isinstance(records, Prepared) else Prepared(terminal_id, records, key)
        plain, first, last_mac = p.plain, p.first, p.last_mac
        if not plain:
            return 0, 0
        last = first + p.n - 1
        anchor = None
        old_info = self._lock_terminal(terminal_id, role)
        # the stored neighbourhood in one query: the record before the batch, the ones it
        # overlaps (a retransmission) and the one after it (a batch that fills a hole)
        near = {
            int(q): bytes(raw)
            for q, raw in self._all(
                "SELECT seq, raw FROM taps WHERE terminal = ? AND seq BETWEEN ? AND ?",
                (terminal_id, first - 1, last + 1),
            )
        }
        body = taprecord.BODY
        # the link into the batch
        if first == 1:
            prev = taprecord.GENESIS_MAC
        elif first - 1 in near:
            prev = near[first - 1][body : body + 8]
        elif prev_mac is not None:
            prev = bytes(prev_mac)
            anchor = (terminal_id, first, binascii.hexlify(prev).decode())
        elif allow_gap:
            prev = None
        else:
            raise ChainError(
                f"terminal {terminal_id}: seq {first} does not follow a stored record "
                f"(seq {first - 1} is missing); nothing stored"
            )
        existing = {q: raw for q, raw in near.items() if first <= q <= last}
        # the chain inside the batch is checked (Prepared); its link into what is stored here,
        # unless it follows a gap (its predecessor is unknown: the report lists the gap)
        bad = (
            -1 if prev is None else taprecord_host.chain_break(plain[: taprecord.SIZE], prev, key)
        )
        if bad < 0 and p.bad >= 0:
            bad = p.bad + 1
        if bad >= 0:
            raise ChainError(
                f"terminal {terminal_id}: MAC chain broken at seq {first + bad} (record "
                "altered, missing or not from this terminal's key); nothing stored"
            )
        for seq, raw in existing.items():
            i = seq - first
            if raw != plain[i * taprecord.SIZE : (i + 1) * taprecord.SIZE]:
                raise ChainError(
                    f"terminal {terminal_id}: seq {seq} differs from the stored record "
                    "(two journals with one terminal id?); nothing stored"
                )
        # the link out of the batch, when it fills a hole before stored records
        after = near.get(last + 1)
        if after is not None:
            if not taprecord.mac_ok(after, last_mac, key):
                raise ChainError(
                    f"terminal {terminal_id}: MAC chain broken at stored seq {last + 1} after "
                    "this batch; nothing stored"
                )
            # the hole before it is filled: the audit checks its link again
            self._exec(
                "UPDATE taps SET status = NULL WHERE terminal = ? AND seq = ? AND "
                "status = 'unverified'",
                (terminal_id, last + 1),
            )
            self._exec(
                "DELETE FROM findings WHERE key = ?", (f"unverified:{terminal_id}:{last + 1}",)
            )
        if anchor is not None:
            self._exec(
                "INSERT INTO anchors (terminal, seq, prev_mac) VALUES (?, ?, ?) "
                "ON CONFLICT (terminal, seq) DO NOTHING",
                anchor,
            )
        # a retransmission: the rows not stored yet (a fresh batch: all of them, as they are)
        new = p if not existing else [row for row in p.rows if row[1] not in existing]
        fresh = p.n if new is p else len(new)
        if fresh:
            self._insert_taps(new)
        mac = binascii.hexlify(last_mac).decode()
        if sync is not None:  # one UPDATE for the chain's end and the contact
            self._note_sync(terminal_id, sync[0], last, sync[1], old_info, (last, mac))
        else:
            self._exec(
                "UPDATE terminals SET last_seq = ?, last_mac = ? WHERE id = ? AND last_seq < ?",
                (last, mac, terminal_id, last),
            )
        return fresh, p.n - fresh

    def _insert_taps(self, rows):
        """Insert new tap rows (the caller checked, under the terminal's lock, that none is stored):
        PostgreSQL by COPY (executemany, pipelined, for a few), SQLite by multi-row INSERTs (or
        executemany for one), inside the caller's transaction. `rows`: tuples in _TAP_COLUMNS
        order, or a Prepared batch (SQLite binds slices of its params: no tuple per row)."""
        if isinstance(rows, Prepared):
            if self.dialect == "sqlite" and rows.n > 1:
                self._insert_params(rows.params)
                return
            rows = rows.rows
        if self.dialect == "postgresql" and len(rows) >= 64:  # COPY's setup pays off from here
            with self.conn.cursor() as cur:
                with cur.copy("COPY taps ({}) FROM STDIN".format(", ".join(_TAP_COLUMNS))) as cp:
                    for row in rows:
                        cp.write_row(row)
            return
        if self.dialect == "sqlite" and len(rows) > 1:
            # multi-row INSERTs (up to _MULTI rows each, within the statement's variable limit):
            # one statement step for many rows, about 20 % less than executemany's step per row
            self._insert_params(list(itertools.chain.from_iterable(rows)))
            return
        self.conn.cursor().executemany(_INSERT_SQL[self.dialect], rows)

    def _insert_params(self, params):
        """SQLite: the rows whose values `params` holds, row after row, by multi-row INSERTs."""
        cols = len(_TAP_COLUMNS)
        per = _multi_rows(self.conn) * cols
        for i in range(0, len(params), per):
            part = params[i : i + per] if len(params) > per else params
            self.conn.execute(_multi_insert(len(part) // cols), part)

    def set_statuses(self, updates):
        """[(status, terminal, seq)] in one go (the audit's): PostgreSQL one UPDATE over arrays
        (a round trip per row would be most of the audit's time), SQLite executemany."""
        if not updates:
            return
        if self.dialect == "postgresql":
            st, te, sq = zip(*updates, strict=True)
            self._exec(
                "UPDATE taps SET status = u.s FROM unnest(?::text[], ?::bigint[], ?::bigint[]) "
                "AS u(s, t, q) WHERE taps.terminal = u.t AND taps.seq = u.q",
                (list(st), list(te), list(sq)),
            )
        else:
            self.conn.executemany(
                "UPDATE taps SET status = ? WHERE terminal = ? AND seq = ?", updates
            )

    def upsert_sums(self, table, keys, rows):
        """Add (n, amount) to the rollup rows `rows` [(key values..., n, amount)] of `table`
        (keyed by `keys`), creating missing ones; one statement on PostgreSQL."""
        if not rows:
            return
        cols = list(keys) + ["n", "amount"]
        conflict = (
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET n = {table}.n + excluded.n, "
            f"amount = {table}.amount + excluded.amount"
        )
        if self.dialect == "postgresql":
            types = [_ROLL_TYPES[c] for c in cols]
            arrays = [list(col) for col in zip(*rows, strict=True)]
            self._exec(
                f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest("
                + ", ".join(f"?::{t}[]" for t in types)
                + f") {conflict}",
                arrays,
            )
        else:
            self.conn.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                + conflict,
                rows,
            )

    def _lock_terminal(self, terminal_id, role="terminal"):
        """Create the terminal's row if need be and lock it until the transaction ends (one round
        trip: the upsert takes the row lock and returns it); returns the stored info text."""
        r = self._one(
            "INSERT INTO terminals (id, last_seq, role) VALUES (?, 0, ?) ON CONFLICT (id) "
            "DO UPDATE SET id = excluded.id RETURNING role, info",
            (terminal_id, role),
        )
        if r[0] != role:
            raise ChainError(
                f"id {terminal_id} is a {_ROLE_NAMES.get(r[0], r[0])} in this store, not a "
                f"{_ROLE_NAMES.get(role, role)}: give it another id; nothing stored"
            )
        return r[1]

    def note_sync(self, terminal_id, info=None, acked_seq=None, via=None, role="terminal"):
        """Remember when a source last made contact, what it said about itself (merged into what
        it said before: a Wi-Fi batch carries versions only) and its acked seq. `via`: "usb",
        "wifi" or "file" (an office journal)."""
        with self._tx():
            old = self._lock_terminal(terminal_id, role)
            self._note_sync(terminal_id, info, acked_seq, via, old)

    def _note_sync(self, terminal_id, info, acked_seq, via, old, last=None):
        """note_sync inside the caller's transaction, with the terminal's row locked (`old`: its
        info as stored); `last` = (last_seq, last_mac hex) of an ingest in the same statement."""
        now = int(time.time())
        merged = None
        if info:
            merged = _loads(old) or {}
            merged.update(info)
            if via:
                merged["via"] = via
                merged["seen_" + via] = now  # the contact's own figures are as of then
        seq, mac = last if last is not None else (0, None)
        self._exec(
            "UPDATE terminals SET last_sync = ?, info = COALESCE(?, info), "
            "acked_seq = COALESCE(?, acked_seq), "
            "last_usb = CASE WHEN ? = 'usb' THEN ? ELSE last_usb END, "
            "last_wifi = CASE WHEN ? = 'wifi' THEN ? ELSE last_wifi END, "
            "last_mac = CASE WHEN last_seq < ? THEN ? ELSE last_mac END, "
            "last_seq = CASE WHEN last_seq < ? THEN ? ELSE last_seq END WHERE id = ?",
            (
                now,
                json.dumps(merged, sort_keys=True) if merged else None,
                acked_seq,
                via,
                now,
                via,
                now,
                seq,
                mac,
                seq,
                seq,
                terminal_id,
            ),
        )

    def put_config(self, kind, version, payload):
        """Publish a config payload (signed.KIND_*); a version, once published, never changes."""
        with self._tx():
            r = self._one(
                "SELECT payload FROM configs WHERE kind = ? AND version = ?", (kind, version)
            )
            if r is not None:
                if bytes(r[0]) != bytes(payload):
                    raise StoreError(
                        f"config kind {kind} version {version} is already published with "
                        "other content: publish a new version"
                    )
                return False
            self._exec(
                "INSERT INTO configs (kind, version, payload, published_at) VALUES (?, ?, ?, ?)",
                (kind, version, bytes(payload), int(time.time())),
            )
        return True

    def latest_configs(self):
        """{kind: (version, payload)}: the newest published version of every kind."""
        rows = self._all(
            "SELECT c.kind, c.version, c.payload FROM configs c WHERE c.version = "
            "(SELECT MAX(version) FROM configs d WHERE d.kind = c.kind)"
        )
        return {int(k): (int(v), bytes(p)) for k, v, p in rows}

    def config_versions(self):
        """{kind: newest published version}, payloads not read (serve asks this per batch)."""
        rows = self._all("SELECT kind, MAX(version) FROM configs GROUP BY kind")
        return {int(k): int(v) for k, v in rows}

    def config_payload(self, kind, version):
        r = self._one(
            "SELECT payload FROM configs WHERE kind = ? AND version = ?", (kind, version)
        )
        if r is None:
            raise StoreError(f"config kind {kind} version {version} is not published")
        return bytes(r[0])

    def missing_configs(self, versions):
        """[(kind, version, payload)] published newer than a terminal says it holds (`versions`:
        {"fares_ver": n, "deny_ver": n, ...}, as IDENTIFY and the Wi-Fi batch carry them). Deny
        lists as host_tools/backoffice/denylist.py offer says (a delta from the list it holds when
        that is smaller than the newest full list)."""
        from host_tools.backoffice import denylist

        latest = self.config_versions()
        out = []
        for kind, version in sorted(latest.items()):
            if signed_host.known(kind) and kind not in denylist.KINDS:
                have = int(versions.get(signed_host.version_key(kind), 0) or 0)
                if version > have:
                    out.append((kind, version, self.config_payload(kind, version)))
        out += denylist.offer(latest, versions, self.config_payload)
        return sorted(out, key=lambda c: c[0])

    def note_reject(self, terminal_id, source, reason, count=1):
        with self._tx():
            self._exec(
                "INSERT INTO rejects (at, terminal, source, reason, count) VALUES (?, ?, ?, ?, ?)",
                (int(time.time()), terminal_id, source[:100], reason[:500], int(count)),
            )

    def rejects(self):
        rows = self._all("SELECT at, terminal, source, reason, count FROM rejects ORDER BY at")
        keys = ("at", "terminal", "source", "reason", "count")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ---- reading -------------------------------------------------------------------------------

    def last_seq(self, terminal_id):
        """Highest stored seq of the terminal (0 when none)."""
        r = self._one("SELECT last_seq FROM terminals WHERE id = ?", (terminal_id,))
        return int(r[0]) if r else 0

    def terminal(self, terminal_id):
        r = self._one(
            f"SELECT {_TERMINAL_COLUMNS} FROM terminals WHERE id = ?",
            (terminal_id,),
        )
        return _terminal_row(r) if r else None

    def terminals(self):
        rows = self._all(f"SELECT {_TERMINAL_COLUMNS} FROM terminals ORDER BY id")
        return [_terminal_row(r) for r in rows]

    def taps(self, terminal_id=None, uid=None, limit=None):
        """Stored taps as dicts (oldest first), optionally of one terminal or one card."""
        cols = [c for c in _TAP_COLUMNS if c != "raw"]
        sql = "SELECT {} FROM taps".format(", ".join(cols))
        where, params = [], []
        if terminal_id is not None:
            where.append("terminal = ?")
            params.append(terminal_id)
        if uid is not None:
            where.append("uid = ?")
            params.append(uid)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY terminal, seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [dict(zip(cols, r, strict=True)) for r in self._all(sql, params)]

    def raw_records(self, terminal_id, from_seq=1, to_seq=None):
        sql = "SELECT raw FROM taps WHERE terminal = ? AND seq >= ?"
        params = [terminal_id, from_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        return [bytes(r[0]) for r in self._all(sql + " ORDER BY seq", params)]

    def count(self):
        return int(self._one("SELECT COUNT(*) FROM taps")[0])

    # ---- report queries (the figures are backoffice/report.py over the audit's rollups) ----------

    def card_charges(self, uid=None):
        """[(uid, counter, terminal, seq, time, amount, balance)] of every audited charge (and POS
        refund, its amount negative) that is neither voided nor phantom, by card and counter."""
        rows = self._all(
            "SELECT t.uid, t.counter, t.terminal, t.seq, t.time, "
            "CASE WHEN t.kind = 'refund' THEN -t.amount ELSE t.amount END, t.balance FROM taps t "
            "WHERE t.kind IN ('charge', 'refund') AND t.uid <> ? AND t.counter > 0 AND "
            "t.status IN ('confirmed', 'unconfirmed')"
            + (" AND t.uid = ?" if uid else "")
            + " ORDER BY t.uid, t.counter, t.time, t.terminal, t.seq",
            (NO_UID, uid) if uid else (NO_UID,),
        )
        return [(r[0],) + tuple(int(x) for x in r[1:]) for r in rows]


_ROLE_NAMES = {"terminal": "terminal", "office": "card office"}
_ROLL_TYPES = {
    "b30": "bigint",
    "day": "bigint",
    "terminal": "bigint",
    "line": "integer",
    "profile": "text",
    "kind": "text",
    "result": "text",
    "status": "text",
    "n": "bigint",
    "amount": "bigint",
}


def _loads(text):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# names by code for the text columns, every code 0..255 (taprecord_host._name's rule)
_KIND = [taprecord_host._name(taprecord_host.KIND_NAMES, c) for c in range(256)]
_RESULT = [taprecord_host._name(taprecord_host.RESULT_NAMES, c) for c in range(256)]
_PROFILE = [taprecord_host._name(taprecord_host.PROFILE_NAMES, c) for c in range(256)]
_ROW_FMT = taprecord.FMT + "8sI"  # a whole record: body, MAC, CRC
_INSERT_SQL = {
    d: "INSERT INTO taps ({}) VALUES ({})".format(
        ", ".join(_TAP_COLUMNS), ", ".join([p] * len(_TAP_COLUMNS))
    )
    for d, p in (("sqlite", "?"), ("postgresql", "%s"))
}

_MULTI = 500  # rows per multi-row INSERT on SQLite (at most its variable limit allows)


def _multi_rows(conn):
    if hasattr(conn, "getlimit"):  # Python 3.11+
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    else:  # the compiled-in default: 32766 since SQLite 3.32, 999 before
        limit = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    return max(1, min(_MULTI, limit // len(_TAP_COLUMNS)))


@functools.lru_cache(maxsize=64)
def _multi_insert(n):
    one = "(" + ", ".join("?" * len(_TAP_COLUMNS)) + ")"
    return "INSERT INTO taps ({}) VALUES {}".format(", ".join(_TAP_COLUMNS), ", ".join([one] * n))


class Prepared:
    """A batch checked as far as it can be without the store, at C speed (CRC, version, terminal,
    sequence, the MAC chain from its first record on: inner_break), its rows built: ingest() does
    this itself; serve's SQLite writer process does it for a batch while it writes the one before
    (writer.py), given `bad` (inner_break's answer) from the request's thread, which has the CPU
    to spare. ChainError for what it refuses.

    `params`: the rows' values in one list, row after row in _TAP_COLUMNS order (what SQLite's
    multi-row INSERT binds, built column by column: _params); `rows`: the same as tuples (COPY, a
    batch that overlaps stored records), made when asked for."""

    def __init__(self, terminal_id, records, key, bad=None):
        self.plain = records if isinstance(records, bytes) else b"".join(bytes(r) for r in records)
        self.times = ()
        self.bad = -1
        self.n = len(self.plain) // taprecord.SIZE
        if not self.plain:
            self.params, self.first, self.last_mac = [], 0, b""
            return
        self.params, self.first, self.last_mac = _params(
            terminal_id, self.plain, records, int(time.time())
        )
        # the first record whose link to the one before it in the batch fails (-1: none);
        # _ingest reports it after the batch's link into the store: the first break wins
        self.bad = inner_break(self.plain, key) if bad is None else bad
        self.times = _times(self.plain)

    @property
    def rows(self):
        w = len(_TAP_COLUMNS)
        return [tuple(self.params[i : i + w]) for i in range(0, len(self.params), w)]


def inner_break(plain, key):
    """Index (from 0, the second record) of the first record of joined records `plain` whose MAC
    does not continue the chain from the record before it in `plain`, or -1 (C speed)."""
    size, body = taprecord.SIZE, taprecord.BODY
    if len(plain) <= size:
        return -1
    return taprecord_host.chain_break(plain[size:], plain[body : body + 8], key)


def _times(records):
    """The first and last record's time of a batch (joined bytes or a list of records)."""
    if isinstance(records, Prepared):
        return records.times
    if isinstance(records, bytes):
        if len(records) < taprecord.SIZE:
            return ()
        return struct.unpack_from("<I", records, 8)[0], struct.unpack_from(
            "<I", records, len(records) - 56
        )[0]
    return tuple(struct.unpack_from("<I", r, 8)[0] for r in records if len(r) >= 12)


_PARAMS_COLUMNS = len(_TAP_COLUMNS)  # what _params writes (the columns it knows)
_WORD = "I" if array.array("I").itemsize == 4 else "L"  # 4-byte unsigned words
_BIT0 = bytes(c & taprecord_host.FLAG_CLOCK_UNSET for c in range(256))  # translate: flags -> 0/1


def _params(terminal_id, plain, records, now):
    """(the rows' values in one list, row after row in _TAP_COLUMNS order; first seq; last MAC) of
    joined records, or ChainError for a record of the wrong length, damaged (CRC, version), of
    another terminal or out of sequence.

    Column by column at C speed, no object per record beyond the values bound: a field of every
    record is one strided slice of the batch (its 4-byte words, 2-byte halves or bytes: the
    record's fields are aligned to their size), written into the list's slots for that column by
    one strided assignment; the hex columns are one .hex() of the gathered fields, split; each
    check is one comparison of a whole column. `raw` is a bytearray each: SQLite's module binds it
    as the same BLOB without asking the adapters first (it does for bytes: about a tenth of the
    statement's CPU). Only a batch that fails a check goes record by record (_refuse), for the
    message."""
    size = taprecord.SIZE
    if len(plain) % size:
        if isinstance(records, bytes):
            raise ChainError(
                f"terminal {terminal_id}: a batch of {len(plain)} bytes is not whole "
                f"{size}-byte records; nothing stored"
            )
        for i, r in enumerate(records):
            if len(r) != size:
                raise ChainError(
                    f"terminal {terminal_id}: record {i} of the batch is {len(r)} bytes, "
                    f"not {size}; nothing stored"
                )
    n = len(plain) // size
    first = struct.unpack_from("<I", plain, 4)[0]
    w4 = array.array(_WORD, plain)  # 16 words a record
    if sys.byteorder != "little":
        w4.byteswap()
    crcs = array.array(_WORD, map(binascii.crc32, map(plain.__getitem__, _slices(n, 60))))
    if not (
        plain[0::size] == bytes((taprecord.VERSION,)) * n
        and w4[3::16] == array.array(_WORD, (terminal_id,)) * n
        and w4[1::16] == array.array(_WORD, range(first, first + n))
        and w4[15::16] == crcs
    ):
        _refuse(terminal_id, plain, first)
    w2 = array.array("H", plain)  # 32 halves a record
    s4 = array.array("i", plain)  # the signed words (balance)
    if sys.byteorder != "little":
        w2.byteswap()
        s4.byteswap()
    uid, mac = bytearray(7 * n), bytearray(8 * n)
    for j in range(7):
        uid[j::7] = plain[16 + j :: size]
    for j in range(8):
        mac[j::8] = plain[52 + j :: size]
    cols = _PARAMS_COLUMNS
    out = [terminal_id] * (cols * n)  # column 0 (terminal) already right
    out[1::cols] = w4[1::16].tolist()  # seq
    out[2::cols] = w4[2::16].tolist()  # time
    out[3::cols] = uid.hex(" ", 7).split()
    out[4::cols] = map(_KIND.__getitem__, plain[1::size])
    out[5::cols] = map(_RESULT.__getitem__, plain[2::size])
    out[6::cols] = map(_PROFILE.__getitem__, plain[3::size])
    out[7::cols] = plain[23::size]  # zone
    out[8::cols] = w4[6::16].tolist()  # counter
    out[9::cols] = w4[7::16].tolist()  # amount
    out[10::cols] = s4[8::16].tolist()  # balance
    for k in range(5):  # line, stop, duration, tariff_ver, deny_ver
        out[11 + k :: cols] = w2[18 + k :: 32].tolist()
    out[16::cols] = plain[46::size].translate(_BIT0)  # clock_unset
    out[17::cols] = mac.hex(" ", 8).split()
    out[18::cols] = map(bytearray, map(plain.__getitem__, _slices(n, size)))
    out[19::cols] = (now,) * n
    return out, first, bytes(mac[-8:])


@functools.lru_cache(maxsize=8)
def _slices(n, width):
    """slice objects of the first `width` bytes of each of n records (cached: a batch size recurs)."""
    size = taprecord.SIZE
    return tuple(slice(o, o + width) for o in range(0, n * size, size))


def _refuse(terminal_id, plain, first):
    """ChainError for the first record of a batch that fails _params's checks, in record order."""
    size = taprecord.SIZE
    mv = memoryview(plain)
    crc32 = binascii.crc32
    for i, t in enumerate(struct.iter_unpack(_ROW_FMT, plain)):
        o = i * size
        if t[20] != crc32(mv[o : o + 60]) or t[0] != taprecord.VERSION:
            what = "record CRC" if t[20] != crc32(mv[o : o + 60]) else "record version"
            raise ChainError(
                f"terminal {terminal_id}: record {first + i} of the batch is damaged ({what}); "
                "nothing stored"
            )
        if t[6] != terminal_id:
            raise ChainError(
                f"terminal {terminal_id}: seq {t[4]} belongs to terminal {t[6]}; nothing stored"
            )
        if t[4] != first + i:
            raise ChainError(
                f"terminal {terminal_id}: seq {t[4]} follows seq {first + i - 1} in the batch; "
                "nothing stored"
            )
    raise ChainError(f"terminal {terminal_id}: the batch is damaged; nothing stored")


def _mac_hex(raw):
    return binascii.hexlify(raw[taprecord.BODY : taprecord.BODY + 8]).decode()


_TERMINAL_COLUMNS = "id, last_seq, last_mac, last_sync, acked_seq, info, role, last_usb, last_wifi"


def _terminal_row(r):
    def num(v):
        return int(v) if v is not None else None

    return {
        "id": int(r[0]),
        "last_seq": int(r[1]),
        "last_mac": r[2],
        "last_sync": num(r[3]),
        "acked_seq": num(r[4]),
        "info": _loads(r[5]),
        "role": r[6],
        "last_usb": num(r[7]),
        "last_wifi": num(r[8]),
    }
