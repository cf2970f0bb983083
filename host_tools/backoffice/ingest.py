"""Ingest of Wi-Fi batches: what the HTTP server (server.py) calls for each POST /v1/batch, and its
metrics. Independent of HTTP, so it is easy to test and to bench.

    ingest = Ingest("sqlite:///taps.db", keystore.load("issuer.keys"), terminals=[(1001, 1999)])
    status, answer = ingest.batch(body)     # (200, answer bytes) or (4xx, one line of text)

The format is card_schema/upload.py: a batch head in clear (terminal, its config versions, count, the
config blob it is receiving, a fresh iv) | count x 64-byte journal records encrypted with that
terminal's wire key (keystore.wire_key). After decryption a batch is authenticated by the MAC chain made
with the terminal's own journal key (keystore.terminal_key): it must continue the chain stored for the
terminal, so a forged or altered record (or ciphertext, or a wrong key) is refused (422, nothing of the
batch stored). A request is answered only when its head carries the tag made with that terminal's
journal key (card_schema/upload.py) and the terminal is one of `terminals` or known to the store;
anything else gets one refusal (403 "refused"), the same for an id of ours as for any other, after
the same work (the tag is checked before the store is asked), so a stranger can neither enumerate
the fleet nor fetch its config. Refusals are counted per source (client address), terminal and
reason and written as one row per key every REJECT_FLUSH s; a source past REJECT_BURST refusals
(then REJECT_RATE a second) gets 429 before any parsing. Idempotent by (terminal, seq): the same batch twice is
stored once.

Count bit 15 (ANCHOR): the first record is the terminal's last acknowledged one, sent only as the
chain's anchor (not stored again). It lets the server verify the batch's first record when its
predecessor is not in this store (acknowledged into another store, e.g. over USB): the record's MAC
covers the anchor's MAC, so nothing in the batch goes unauthenticated. A batch that neither continues
the stored chain nor carries an anchor is refused (409), never stored unverified.

Answer (200): `acked` (the last seq of the batch, now durable in the store; 0 for a check-in, an
empty or anchor-only batch: it asks for time and config only and can set no seq), the server time, and one chunk (upload_host.CHUNK bytes) of
the first published config blob the terminal lacks by the versions it sent, signed with its config key
(keystore.config_key), encrypted with its wire key, from where the terminal's staging file ends; the
head MAC'd with its journal key over the request's iv (card_schema/upload.py). Published payloads are
cached by (kind, version) and the signed blobs of the terminals downloading them in a small LRU, so a
chunk costs a slice, not a store read and a signature of 800 KB.

Binary rather than JSON: the terminal streams its 64-byte records from flash through one small
buffer; JSON would need hex or base64 text of every record in its small heap.

Several serve processes may share one PostgreSQL database: store.ingest locks the terminal's row and
inserts with ON CONFLICT DO NOTHING, so two servers given the same batch store it once.
"""

import collections
import queue
import sys
import threading
import time
import zlib

from card_schema import signed_host, taprecord, upload_host
from card_schema.crypto_host import cmac_fast
from host_tools import keystore
from host_tools.backoffice import store as store_mod


class Ingest:
    """What the HTTP handler calls; independent of HTTP so it is easy to test and to bench."""

    CONFIG_TTL = 5.0  # seconds a look at the published config versions is reused
    GROUP = 64  # batches one SQLite commit takes at most
    SEALED = 16  # signed blobs kept for the terminals downloading them
    REJECT_FLUSH = 30.0  # seconds between writes of the counted refusals
    REJECT_BURST = 20  # refusals a source may cause at once...
    REJECT_RATE = 1.0  # ...and then per second; beyond that: 429 before any work
    SOURCES = 1024  # sources (client addresses) tracked; a spray beyond shares one bucket row

    def __init__(self, db_url, ks, terminals=(), pool=4, log=None):
        self.db_url = db_url
        self.ks = ks
        self.ranges = list(terminals)
        self.log = log or (lambda msg: sys.stderr.write(msg + "\n"))
        self.pool = queue.LifoQueue()
        self.lock = threading.Lock()
        self.metrics = {
            "batches": 0,
            "taps_received": 0,
            "taps_stored": 0,
            "duplicates": 0,
            "config_sent": 0,
        }
        self.rejects = {}
        self._pending = {}  # (source, terminal, reason) -> [count, first message]
        self._flushed = time.monotonic()
        self._buckets = collections.OrderedDict()  # source -> [tokens, when]
        self.seen = set()
        self._known = set()
        self._keys = {}  # terminal -> (journal key, wire key, config key)
        self._configs = (0.0, {})  # (when, {kind: version}) of the published configs
        self._payloads = {}  # (kind, version) -> payload
        self._sealed = collections.OrderedDict()  # (terminal, kind, version, ...) -> signed blob
        self._deltas = {}  # deny-list deltas computed for terminals (denylist.offer)
        self._writer = None  # SQLite: the writer process (Writer), started with the server
        # (PostgreSQL) one batch at a time through the CPU-bound checks (the GIL runs one anyway):
        # batches are ready in turn, each one's inserts start while the next is checked, instead
        # of all of them ready together at the end
        self._preparing = threading.Semaphore(1)
        s = store_mod.open_store(db_url)  # fails early: bad URL, server down
        self.pool.put(s)
        for _ in range(pool - 1):
            self.pool.put(None)  # opened when first needed
        if s.dialect == "sqlite":
            from host_tools.backoffice.writer import Writer

            self._writer = Writer(db_url, self.GROUP)

    def close(self):
        self.flush_rejects()
        if self._writer is not None:
            self._writer.close()
        while not self.pool.empty():
            s = self.pool.get_nowait()
            if s is not None:
                s.close()

    def _store(self):
        s = self.pool.get()
        return s if s is not None else store_mod.open_store(self.db_url)

    def _count(self, key, n=1):
        with self.lock:
            self.metrics[key] += n

    def _allowed(self, source):
        """False when `source` spent its refusals: REJECT_BURST at once, then REJECT_RATE a second."""
        now = time.monotonic()
        with self.lock:
            b = self._buckets.pop(source, None)
            tokens = self.REJECT_BURST if b is None else b[0]
            if b is not None:
                tokens = min(self.REJECT_BURST, tokens + (now - b[1]) * self.REJECT_RATE)
            self._buckets[source] = [tokens, now]  # newest last: the oldest are forgotten first
            while len(self._buckets) > self.SOURCES:
                self._buckets.pop(next(iter(self._buckets)))
            return tokens >= 1.0

    def over_budget(self, source):
        """(429, text) for a source that spent its refusals (counted), else None: every endpoint
        a stranger can reach (POST /v1/batch, POST /v1/ota) asks this first."""
        if self._allowed(source):
            return None
        with self.lock:
            self.rejects["rate_limited"] = self.rejects.get("rate_limited", 0) + 1
        return 429, "too many refused requests: slow down"

    def _reject(self, store, tid, reason, message, source="-"):
        """Counted per (source, terminal, reason) in memory and written as one row per key every
        REJECT_FLUSH s (flush_rejects): a flood of bad POSTs costs a counter, not a row and an fsync
        each. The first of each key in a window is logged; the rest are in the count."""
        now = time.monotonic()
        with self.lock:
            self.rejects[reason] = self.rejects.get(reason, 0) + 1
            b = self._buckets.get(source)
            if b is not None:
                b[0] -= 1.0
            key = (source, tid, reason)
            if key not in self._pending and len(self._pending) >= self.SOURCES:
                key = ("other", None, reason)  # a spray of sources: one row for the rest
            agg = self._pending.get(key)
            first = agg is None
            if first:
                agg = self._pending[key] = [0, message]
            agg[0] += 1
            due = now - self._flushed >= self.REJECT_FLUSH
        if first:
            self.log(f"tapkit serve: refused batch from terminal {tid} ({source}): {message}")
        if due:
            self.flush_rejects(store)

    def flush_rejects(self, store=None):
        """Write the counted refusals (one row per source, terminal and reason) to the store."""
        with self.lock:
            pending, self._pending = self._pending, {}
            self._flushed = time.monotonic()
        if not pending:
            return
        own = store is None
        store = self._store() if own else store
        try:
            for (source, tid, reason), (n, message) in pending.items():
                store.note_reject(tid, f"wifi {source}", f"{reason}: {message}", count=n)
        except Exception:  # noqa: BLE001 - the log lines are the record then
            pass
        finally:
            if own:
                self.pool.put(store)

    def known(self, store, tid):
        if tid in self._known or any(lo <= tid <= hi for lo, hi in self.ranges):
            return True
        if store.terminal(tid) is not None:  # synced before (USB or another server)
            self._known.add(tid)
            return True
        return False

    def _write(self, store, item):
        """store.ingest of one batch. SQLite: through the writer process (writer.py), which checks
        the batch and builds its rows there (store.Prepared) while its last statement runs, groups
        the batches that arrive meanwhile into one transaction (one fsync for all, each under its
        own savepoint: store.ingest_group) and answers after the commit; this request's thread
        checks the MAC chain inside the batch (C speed) and sends the decrypted records as they
        are (one bytes object, no row to pickle).
        PostgreSQL: checked here (store.Prepared: CRC, sequence, the batch's own MAC chain at C
        speed), then store.ingest on this request's connection."""
        tid, recs, key, prev, sync = item
        if self._writer is not None:  # the MAC chain inside the batch checked here (C speed)
            return self._writer.write(item + (store_mod.inner_break(recs, key),))
        with self._preparing:
            recs = store_mod.Prepared(tid, recs, key)
        return store.ingest(tid, recs, key, prev_mac=prev, sync=sync)

    def keys(self, tid):
        """(journal key, wire key, config key) of a terminal, derived once."""
        k = self._keys.get(tid)
        if k is None:
            k = self._keys[tid] = (
                keystore.terminal_key(self.ks, tid),
                keystore.wire_key(self.ks, tid),
                keystore.config_key(self.ks, tid),
            )
        return k

    def batch(self, body, source="-"):
        """(HTTP status, answer bytes or one line of text) for one POST /v1/batch from `source` (the
        client's address: refusals are counted and rate-limited per source)."""
        over = self.over_budget(source)
        if over:
            return over
        store = self._store()
        try:
            try:
                b = upload_host.parse_batch(body)
            except ValueError as e:
                self._reject(store, None, "malformed", str(e), source)
                return 400, f"bad batch: {e}"
            tid = b.terminal
            self._count("batches")
            # the request's tag first, for any id (the key derives for any): a stranger gets the
            # same refusal, after the same work, for an id of ours and for any other
            jkey = keystore.terminal_key(self.ks, tid)  # derived, not cached: one timing for all
            if not upload_host.authentic(jkey, body, cmac_fast) or not self.known(store, tid):
                self._reject(store, None, "unauthenticated", f"terminal {tid}", source)
                return 403, "refused"
            jkey, wire, ckey = self.keys(tid)
            recs = bytes(upload_host.records(wire, b, body))  # the batch joined, as stored
            anchor = None
            if b.anchored:
                anchor, recs = recs[: taprecord.SIZE], recs[taprecord.SIZE :]
                if recs and taprecord.seq_of(anchor) + 1 != taprecord.seq_of(recs):
                    # what decrypts to no chain at all (a wrong key, altered ciphertext)
                    e = "the anchor is not the record before the batch"
                    self._reject(store, tid, "bad_mac", e, source)
                    return 422, f"terminal {tid}: {e} (altered, or not this terminal's key)"
            self._count("taps_received", len(recs) // taprecord.SIZE)
            acked = 0  # a check-in (the anchor alone, or nothing) acks nothing: it is only asking
            if recs:
                prev = anchor[taprecord.BODY : taprecord.BODY + 8] if anchor else None
                if self._writer is not None:
                    # SQLite: the writer process writes; this request holds no connection while
                    # it waits, so every request can be in the writer's next group (a pool's
                    # worth at a time made groups of 8 and a commit each)
                    self.pool.put(store)
                    store = None
                error = None
                try:
                    inserted, dups = self._write(
                        store, (tid, recs, jkey, prev, (dict(b.versions), "wifi"))
                    )
                except store_mod.ChainError as e:
                    error = e
                finally:
                    if store is None:
                        store = self._store()
                if error is not None:
                    if "is missing" in str(error):  # no stored predecessor, no anchor
                        self._reject(store, tid, "gap", str(error), source)
                        return 409, str(error) + " (send the anchor record)"
                    self._reject(store, tid, "bad_mac", str(error), source)
                    return 422, str(error)
                self._count("taps_stored", inserted)
                self._count("duplicates", dups)
                acked = taprecord.seq_of(recs[-taprecord.SIZE :])
            with self.lock:
                self.seen.add(tid)
            chunk = self._chunk(store, tid, ckey, b)
            if chunk is None:  # no config to send: maybe a firmware release (otaserve.py)
                from host_tools.backoffice import otaserve

                chunk = otaserve.offer(self, store, tid)
            else:
                self._count("config_sent", len(chunk[4]))
            return 200, upload_host.answer_body(
                jkey, wire, b.iv, acked, int(time.time()), chunk, mac=cmac_fast
            )
        finally:
            self.pool.put(store)

    def _chunk(self, store, tid, ckey, b):
        """(kind, version, total, offset, data): the next piece of the first config the terminal
        lacks, from where its staging file ends (when that is the same blob), or None. Deny lists
        as denylist.offer says (a delta from the list it holds, when smaller than a full list)."""
        from host_tools.backoffice import denylist

        now = time.monotonic()
        when, latest = self._configs
        if now - when > self.CONFIG_TTL:
            latest = store.config_versions()
            self._configs = (now, latest)
        for kind in sorted(latest):
            version = latest[kind]
            if not signed_host.known(kind) or kind in denylist.KINDS:
                continue
            if version <= int(b.versions.get(signed_host.version_key(kind), 0) or 0):
                continue
            return self._piece(tid, ckey, b, kind, version, self._payload(store, kind, version))
        deny = denylist.offer(
            latest, b.versions, lambda k, v: self._payload(store, k, v), self._deltas
        )
        if deny:
            return self._piece(tid, ckey, b, *deny[0])
        return None

    def _piece(self, tid, ckey, b, kind, version, payload):
        blob = self._blob(tid, ckey, kind, version, payload)
        pk, pv, off = b.part
        if (pk, pv) != (kind, version) or not 0 < off < len(blob):
            off = 0
        return kind, version, len(blob), off, blob[off : off + upload_host.CHUNK]

    def _payload(self, store, kind, version):
        with self.lock:
            payload = self._payloads.get((kind, version))
        if payload is None:
            payload = store.config_payload(kind, version)
            with self.lock:
                self._payloads = {(kind, version): payload, **self._payloads}
                if len(self._payloads) > 8:
                    self._payloads = dict(list(self._payloads.items())[:8])
        return payload

    def _blob(self, tid, ckey, kind, version, payload):
        # a computed delta and a published one may share kind and version: the key has its length
        # and CRC too
        key = (tid, kind, version, len(payload), zlib.crc32(payload))
        with self.lock:
            blob = self._sealed.get(key)
            if blob is not None:
                self._sealed.move_to_end(key)
                return blob
        blob = signed_host.seal_fast(ckey, kind, version, payload)
        with self.lock:
            self._sealed[key] = blob
            while len(self._sealed) > self.SEALED:
                self._sealed.popitem(last=False)
        return blob

    def healthy(self):
        store = self._store()
        try:
            store.schema_version()
            return True
        except Exception:  # noqa: BLE001 - any store trouble: not healthy
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass
            store = None
            return False
        finally:
            self.pool.put(store)

    def prometheus(self):
        with self.lock:
            m = dict(self.metrics)
            rejects = dict(self.rejects)
            seen = len(self.seen)
        lines = [
            "# HELP tapkit_batches_total Batches received (well-formed).",
            "# TYPE tapkit_batches_total counter",
            f"tapkit_batches_total {m['batches']}",
            "# HELP tapkit_taps_received_total Tap records received, duplicates included.",
            "# TYPE tapkit_taps_received_total counter",
            f"tapkit_taps_received_total {m['taps_received']}",
            "# HELP tapkit_taps_stored_total Tap records newly stored.",
            "# TYPE tapkit_taps_stored_total counter",
            f"tapkit_taps_stored_total {m['taps_stored']}",
            "# HELP tapkit_taps_duplicate_total Tap records received again (already stored).",
            "# TYPE tapkit_taps_duplicate_total counter",
            f"tapkit_taps_duplicate_total {m['duplicates']}",
            "# HELP tapkit_config_sent_bytes_total Bytes of signed config sent to terminals.",
            "# TYPE tapkit_config_sent_bytes_total counter",
            f"tapkit_config_sent_bytes_total {m['config_sent']}",
            "# HELP tapkit_terminals_seen Terminals whose batches this process accepted.",
            "# TYPE tapkit_terminals_seen gauge",
            f"tapkit_terminals_seen {seen}",
            "# HELP tapkit_rejects_total Batches refused, by reason.",
            "# TYPE tapkit_rejects_total counter",
        ]
        for reason in ("malformed", "unauthenticated", "bad_mac", "gap", "rate_limited"):
            lines.append(f'tapkit_rejects_total{{reason="{reason}"}} {rejects.get(reason, 0)}')
        text = "\n".join(lines) + "\n"
        from host_tools.backoffice.metrics import fleet_metrics

        store = self._store()
        try:  # per-terminal gauges from the store (last seen, unsynced, journal fill...)
            text += fleet_metrics(store).decode()
        finally:
            self.pool.put(store)
        return text
