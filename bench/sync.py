"""Sync: the serial line's cost per tap record, and HTTP ingest rates into SQLite and PostgreSQL.

Serial: exact line lengths of the frames a `tapkit sync` of 10,000 records exchanges (PULL + RECORDS,
ACK + its answer, per batch of frames.MAX_RECORDS), modelled at 115,200 baud 8N1 (11,520 bytes/s, the
line's own limit), against the 64-byte records alone at that rate. Turnaround (the terminal's main loop
picks a line up within one 20 ms pass) is modelled separately.

HTTP: `tapkit serve`'s ingest (in-process ThreadingHTTPServer, 8 client threads standing for the
terminals, batches of firmware/wifi.py's size) into SQLite and into PostgreSQL, beside a plain bulk
insert of the same rows (executemany in one transaction, no chain check) into a bare table. A fleet
day is 3,000 vehicles x 500 taps = 1.5 M records; the bench runs `vehicles` x `taps` and extrapolates.
The PostgreSQL is harness/pgserver.py's throwaway server (fsync off: a lower bound for a real disk).

data: {"serial": {...}, "SQLite": {records, ingest_per_s, bulk_per_s}, "PostgreSQL": {...}}.
"""

import http.client
import os
import queue
import tempfile
import threading
import time

from card_schema import frames, frames_host, taprecord, taprecord_host, upload_host
from host_tools import keystore
from host_tools.backoffice import ingest
from host_tools.backoffice import server as serve
from host_tools.backoffice import store as store_mod

from bench import row

SECTION = "sync"

BAUD = 115200
LINE_BPS = BAUD // 10  # 8N1: 11,520 bytes/s
LOOP_MS = 20  # the terminal's main loop pass: worst-case wait for a request line
FLEET_DAY = 3000 * 500
WIFI_BATCH = 256  # firmware/wifi.py _BATCH


def serial_model(n=10000):
    per = frames.MAX_RECORDS
    total = 0
    exchanges = 0
    seq = 1
    rec = bytes(64)
    while seq <= n:
        k = min(per, n - seq + 1)
        total += len(frames.encode(frames.PULL, 1, frames_host.pull_body(seq, per)))
        total += len(frames.encode(frames_host.RECORDS, 1, frames_host.records_body([rec] * k)))
        total += len(frames.encode(frames.ACK, 1, frames_host.u32_body(seq + k - 1)))
        total += len(frames.encode(frames_host.ACK_R, 1, frames_host.u32_body(seq + k - 1)))
        exchanges += 2
        seq += k
    return {
        "records": n,
        "bytes": total,
        "bytes_per_record": total / n,
        "seconds": total / LINE_BPS,
        "raw_seconds": n * 64 / LINE_BPS,
        "turnaround_seconds": exchanges * LOOP_MS / 1000,
    }


def _records(ks, tid, n):
    key = keystore.terminal_key(ks, tid)
    prev = taprecord.GENESIS_MAC
    out = []
    for seq in range(1, n + 1):
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf,
            prev,
            key,
            seq=seq,
            time=1700000000 + seq * 60,
            terminal=tid,
            uid=bytes([4, seq % 251, tid % 251, 0, 0, 0, 0x80]),
            kind=taprecord.KIND_CHARGE,
            counter=seq,
            amount=25000,
            balance=10**7 - seq * 25000,
            line=tid % 100,
        )
        out.append(bytes(buf))
    return out


def http_ingest(url, ks, fleet, threads=8, batch=WIFI_BATCH):
    """Records/s through `tapkit serve` (uvicorn in a thread) into `url`: `threads` clients, each a
    terminal at a time uploading its records in encrypted batches of `batch`, keep-alive."""
    ing = ingest.Ingest(url, ks, [(1, 10**6)], pool=threads, log=lambda m: None)
    srv = serve.Running(serve.make_app(ing))
    work = queue.Queue()
    for tid, recs in fleet.items():
        work.put((tid, recs))
    errors = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        while True:
            try:
                tid, recs = work.get_nowait()
            except queue.Empty:
                break
            wire = keystore.wire_key(ks, tid)
            for i in range(0, len(recs), batch):
                c.request(
                    "POST",
                    "/v1/batch",
                    body=upload_host.batch_body(wire, tid, recs[i : i + batch]),
                )
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
        c.close()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    srv.stop()
    ing.close()
    n = sum(len(r) for r in fleet.values())
    if errors:
        raise RuntimeError(f"ingest bench: {len(errors)} batches refused ({errors[0]})")
    return n / dt


def bulk_insert(url, fleet):
    with store_mod.open_store(url) as s:
        cols = [c for c in store_mod._TAP_COLUMNS]
        s._exec(
            "CREATE TABLE bulk_taps AS SELECT * FROM taps WHERE 1 = 0"
            if s.dialect == "postgresql"
            else "CREATE TABLE bulk_taps AS SELECT * FROM taps WHERE 0"
        )
        rows = []
        for tid, recs in fleet.items():
            for raw in recs:
                d = taprecord_host.to_dict(raw)
                d.update(terminal=tid, mac=raw[52:60].hex(), raw=raw, received_at=0)
                rows.append(tuple(d[c] for c in cols))
        sql = s._sql(
            "INSERT INTO bulk_taps ({}) VALUES ({})".format(
                ", ".join(cols), ", ".join("?" * len(cols))
            )
        )
        t0 = time.perf_counter()
        with s._tx():
            s.conn.cursor().executemany(sql, rows)
        return len(rows) / (time.perf_counter() - t0)


def run(opts, taps=500):
    vehicles = opts.sync_vehicles
    m = serial_model()
    rows = [
        row(
            SECTION,
            "serial sync: bytes on the wire per tap record",
            round(m["bytes_per_record"], 1),
            "B",
            "64 B record, base64 lines, PULL/ACK per %d records" % frames.MAX_RECORDS,
        ),
        row(
            SECTION,
            "serial sync: 10,000 records at 115,200 baud",
            round(m["seconds"], 1),
            "s",
            "line limit 11,520 B/s: the bare records need %.1f s; + %.1f s turnaround"
            % (m["raw_seconds"], m["turnaround_seconds"]),
        ),
    ]
    data = {"serial": m}
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "issuer.keys"))
        fleet = {tid: _records(ks, tid, taps) for tid in range(1, vehicles + 1)}
        n = vehicles * taps
        targets = [
            (
                "SQLite",
                "sqlite:///%s" % os.path.join(d, "a.db"),
                "sqlite:///%s" % os.path.join(d, "b.db"),
            )
        ]
        pg = None
        try:
            from harness import pgserver

            pg = pgserver.PGServer.start()
            targets.append(("PostgreSQL", pg.create_database(), pg.create_database()))
        except pgserver.PGUnavailable as e:  # no PostgreSQL here: say so in the table
            rows.append(
                row(SECTION, "HTTP ingest into PostgreSQL", None, "", f"not measured: {e}")
            )
        try:
            for name, url, url2 in targets:
                rate = http_ingest(url, ks, fleet)
                bulk = bulk_insert(url2, fleet)
                data[name] = {"records": n, "ingest_per_s": rate, "bulk_per_s": bulk}
                rows.append(
                    row(
                        SECTION,
                        f"HTTP ingest into {name}",
                        round(rate),
                        "rec/s",
                        "%d vehicles x %d taps (of 3,000 x 500), batches of %d: a fleet day "
                        "%.0f min" % (vehicles, taps, WIFI_BATCH, FLEET_DAY / rate / 60),
                    )
                )
                rows.append(
                    row(
                        SECTION,
                        f"plain bulk insert into {name}",
                        round(bulk),
                        "rec/s",
                        "same rows, one executemany: a fleet day %.1f min"
                        % (FLEET_DAY / bulk / 60),
                    )
                )
        finally:
            if pg is not None:
                pg.stop()
    return rows, data
