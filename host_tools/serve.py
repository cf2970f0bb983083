"""`tapkit serve`: the depot's HTTP ingest for terminals that upload over Wi-Fi (firmware/wifi.py).

    tapkit serve --db postgresql://tapkit@db/taps --listen 0.0.0.0:8080 --terminals 1001-1999
    tapkit publish --kind fares --version 7 fares.payload      # what `serve` and `sync` hand out

Endpoints:
  POST /v1/batch   a batch of journal records from one terminal (binary, below). Authenticated by the
                   MAC chain made with that terminal's own journal key (keystore.terminal_key): the batch
                   must continue the chain stored for the terminal, so a forged or altered record is
                   refused (422, nothing of the batch stored). A terminal outside --terminals and never
                   seen in the store is refused (403). Both are logged (stderr and the `rejects` table).
                   Idempotent by (terminal, seq): the same batch twice is stored once.
  GET /healthz     200 "ok" when the store answers, else 503.
  GET /metrics     Prometheus text: taps received/stored, batches, terminals seen, rejects by reason.

Batch (request body, application/octet-stream; the format is card_schema/upload.py):
    batch head (terminal, its config versions, count) | count x 64-byte journal records
  (consecutive seqs); count bit 15 (ANCHOR): the first record is the terminal's last acknowledged one, sent only as the
  chain's anchor (not stored again). It lets the server verify the batch's first record when its
  predecessor is not in this store (acknowledged into another store, e.g. over USB): the record's
  MAC covers the anchor's MAC, so nothing in the batch goes unauthenticated. A batch that neither
  continues the stored chain nor carries an anchor is refused (409), never stored unverified.
Answer (200, application/octet-stream):
    answer head (acked, server_time, nblobs) | nblobs x (length u16 | signed blob)
  `acked`: the last seq of the batch, now durable in the store (0 for an empty batch: a terminal asks
  for time and config only). The blobs are the newest published config the terminal lacks (by the
  versions it sent), signed with its config key (keystore.config_key).
Errors: 4xx/5xx with one line of text.

Binary rather than JSON: the terminal copies its 64-byte records into one preallocated buffer; JSON
would need hex or base64 text of every record in its small heap.

Several serve processes may share one PostgreSQL database: store.ingest locks the terminal's row and
inserts with ON CONFLICT DO NOTHING, so two servers given the same batch store it once.
"""

import http.server
import queue
import sys
import threading
import time

from card_schema import signed, signed_host, taprecord, upload
from card_schema.upload_host import MAX_RECORDS, answer_body, parse_batch
from host_tools import TapkitError, keystore
from host_tools import store as store_mod
from host_tools import sync as sync_mod


class ServeError(TapkitError):
    pass


def parse_ranges(text):
    """ "1001-1999,2005" -> [(1001, 1999), (2005, 2005)]."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ServeError(f"bad terminal range {part!r}: use e.g. 1001-1999,2005") from None
        if lo > hi:
            raise ServeError(f"bad terminal range {part!r}: {lo} > {hi}")
        out.append((lo, hi))
    return out


# ---- the service ----------------------------------------------------------------------------------
class Ingest:
    """What the HTTP handler calls; independent of HTTP so it is easy to test and to bench."""

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
        self.seen = set()
        self._known = set()
        s = store_mod.open_store(db_url)  # fails early: bad URL, server down
        self.pool.put(s)
        for _ in range(pool - 1):
            self.pool.put(None)  # opened when first needed

    def close(self):
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

    def _reject(self, store, tid, reason, message):
        with self.lock:
            self.rejects[reason] = self.rejects.get(reason, 0) + 1
        self.log(f"tapkit serve: refused batch from terminal {tid}: {message}")
        try:
            store.note_reject(tid, "wifi", f"{reason}: {message}")
        except Exception:  # noqa: BLE001 - the log line above is the record then
            pass

    def known(self, store, tid):
        if tid in self._known or any(lo <= tid <= hi for lo, hi in self.ranges):
            return True
        if store.terminal(tid) is not None:  # synced before (USB or another server)
            self._known.add(tid)
            return True
        return False

    def batch(self, body):
        """(HTTP status, answer bytes or one line of text) for one POST /v1/batch."""
        store = self._store()
        try:
            try:
                tid, versions, recs, anchor = parse_batch(body)
            except ValueError as e:
                self._reject(store, None, "malformed", str(e))
                return 400, f"bad batch: {e}"
            self._count("batches")
            if not self.known(store, tid):
                self._reject(store, tid, "unknown_terminal", "not a terminal of this operator")
                return 403, f"unknown terminal {tid}"
            self._count("taps_received", len(recs))
            acked = 0
            if anchor is not None and not recs:
                acked = taprecord.seq_of(anchor)  # nothing new: the terminal checks in
            if recs:
                key = keystore.terminal_key(self.ks, tid)
                prev = anchor[taprecord.BODY : taprecord.BODY + 8] if anchor else None
                try:
                    inserted, dups = store.ingest(tid, recs, key, prev_mac=prev)
                except store_mod.ChainError as e:
                    if "is missing" in str(e):  # no stored predecessor, no anchor
                        self._reject(store, tid, "gap", str(e))
                        return 409, str(e) + " (send the anchor record)"
                    self._reject(store, tid, "bad_mac", str(e))
                    return 422, str(e)
                self._count("taps_stored", inserted)
                self._count("duplicates", dups)
                acked = taprecord.seq_of(recs[-1])
                store.note_sync(tid, dict(versions, via="wifi"), acked)
            with self.lock:
                self.seen.add(tid)
            blobs = []
            key = keystore.config_key(self.ks, tid)
            for kind, version, payload in sync_mod.missing_config(store, versions):
                blobs.append(signed.seal(key, kind, version, payload))
            self._count("config_sent", len(blobs))
            return 200, answer_body(acked, int(time.time()), blobs)
        finally:
            self.pool.put(store)

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
            "# HELP tapkit_config_sent_total Signed config blobs sent to terminals.",
            "# TYPE tapkit_config_sent_total counter",
            f"tapkit_config_sent_total {m['config_sent']}",
            "# HELP tapkit_terminals_seen Terminals whose batches this process accepted.",
            "# TYPE tapkit_terminals_seen gauge",
            f"tapkit_terminals_seen {seen}",
            "# HELP tapkit_rejects_total Batches refused, by reason.",
            "# TYPE tapkit_rejects_total counter",
        ]
        for reason in ("malformed", "unknown_terminal", "bad_mac", "gap"):
            lines.append(f'tapkit_rejects_total{{reason="{reason}"}} {rejects.get(reason, 0)}')
        return "\n".join(lines) + "\n"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tapkit"
    protocol_version = "HTTP/1.0"  # one request per connection: what the terminal speaks
    ingest = None  # type: Ingest  # set on the class made by make_server
    max_body = upload.BATCH_HEAD + MAX_RECORDS * taprecord.SIZE
    timeout = 30  # seconds per socket read: a stalled terminal does not hold a thread forever

    def log_message(self, fmt, *args):  # access log off: rejects are logged by Ingest
        pass

    def _send(self, status, body, ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = (body + "\n").encode()
        else:
            ctype = "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            ok = self.ingest.healthy()
            self._send(200 if ok else 503, "ok" if ok else "store unavailable")
        elif self.path == "/metrics":
            self._send(200, self.ingest.prometheus().rstrip("\n"), "text/plain; version=0.0.4")
        else:
            self._send(404, "not found")

    def do_POST(self):
        if self.path != "/v1/batch":
            self._send(404, "not found")
            return
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, "Content-Length required")
            return
        if n < 0 or n > self.max_body:
            self._send(413, f"batch of {n} bytes (at most {self.max_body})")
            return
        body = self.rfile.read(n)
        if (
            len(body) != n
        ):  # the connection dropped mid-request: nothing to store, nobody to answer
            return
        try:
            status, out = self.ingest.batch(body)
        except store_mod.StoreError as e:
            self._send(503, f"store unavailable: {e}")
            return
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
            self.ingest.log(f"tapkit serve: internal error: {type(e).__name__}: {e}")
            self._send(500, "internal error")
            return
        self._send(status, out)


def make_server(ingest, host, port):
    handler = type("TapkitHandler", (Handler,), {"ingest": ingest})
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    return srv


def parse_listen(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ServeError(f"bad --listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080") from None


# ---- CLI -----------------------------------------------------------------------------------------
def cmd_serve(a):
    ks = keystore.load(a.keystore)
    host, port = parse_listen(a.listen)
    ingest = Ingest(a.db, ks, parse_ranges(a.terminals))
    try:
        srv = make_server(ingest, host, port)
    except OSError as e:
        ingest.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    h, p = srv.server_address[:2]
    sys.stderr.write(f"tapkit serve: listening on http://{h}:{p} (store {a.db})\n")
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        ingest.close()
    return 0


def cmd_publish(a):
    from host_tools.cli import _print_json

    from host_tools.cli_tariff import payload_from_file

    # the same JSON files as `tapkit tariff sign`, checked the same way: a table the terminals
    # would refuse is refused here, with the reason
    payload = payload_from_file(a.kind, a.file)
    with store_mod.open_store(a.db) as db:
        new = db.put_config(signed_host.KINDS[a.kind], a.version, payload)
    r = {"kind": a.kind, "version": a.version, "bytes": len(payload), "new": new}
    if a.json:
        _print_json(r)
    else:
        print(
            f"{a.kind} version {a.version} ({len(payload)} bytes) "
            + ("published" if new else "was already published")
        )
    return 0


def register(sub, add):
    from host_tools.cli import DEFAULT_DB, DEFAULT_KEYSTORE

    sp = add(sub, "serve", cmd_serve, "HTTP ingest for terminals uploading over Wi-Fi")
    sp.add_argument("--db", default=DEFAULT_DB)
    sp.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT")
    sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
    sp.add_argument(
        "--terminals",
        default="",
        help="terminal ids accepted, e.g. 1001-1999,2005 (terminals in the store always are)",
    )
    sp = add(sub, "publish", cmd_publish, "publish a fare table or deny list for sync and serve")
    sp.add_argument("--kind", choices=sorted(signed_host.KINDS), required=True)
    sp.add_argument("--version", type=int, required=True)
    sp.add_argument("--db", default=DEFAULT_DB)
    sp.add_argument("file", help="the payload (card_schema/tariff.py format)")
