"""Sync: the serial line, Wi-Fi confidentiality's cost, HTTP ingest into SQLite and PostgreSQL.

Serial: measured, a real `tapkit sync` (streamed: a window of PULLs, binary RECORDS lines) of
`--serial-records` (10,000) records from a virtual bus terminal through harness/serial_line.py's line
paced at 115,200 baud 8N1 (11,520 bytes/s each way), against the 64-byte records alone at that rate;
beside it the stop-and-wait exchange of a proto-1 terminal, modelled (exact line lengths of PULL +
RECORDS, ACK + its answer per batch of frames.MAX_RECORDS, plus one 20 ms main-loop pass of
turnaround per exchange). The install time of a `--deny-cards` (100,000) deny list over that line
and over the virtual Wi-Fi (the firmware's uploader fetching it from `tapkit serve`).

Wi-Fi: the heap a TLS handshake would take on the terminal (harness/tls_heap.py, valgrind's massif
on the VM), the measured reason the records are encrypted with a per-terminal key instead; and the
heap of the upload itself (harness/heap_paths.py wifi_upload): a virtual Wi-Fi board uploads
WIFI_HEAP_RECORDS (2,048) records (encrypted with its wire key, streamed from flash) into `tapkit
serve`, alone and while a host asks IDENTIFY over USB every second (the sync responder beside the
uploader); the probe's main.py samples the heap after every step of an exchange (live, after a
collection; and as the step left it). wifi_upload_heap_free: the 112 KB heap minus the highest
live figure of both runs.

HTTP: `tapkit serve`'s ingest beside a plain bulk insert of the same rows, into SQLite and into
PostgreSQL; `vehicles` (40) x `taps` (500) = 20,000 records, the same ones for both. A fleet day is
3,000 vehicles x 500 taps = 1.5 M records: the bench extrapolates. What is timed:
- ingest_per_s: records / the wall time harness/loadgen.py (another process: the terminals) takes
  from opening its first connection to having checked its last answer: `vehicles` terminals at
  once, each POSTing its records as encrypted batches of up to 1,024 (one here) to `tapkit serve`
  (uvicorn in a thread of this process; on SQLite its writer process), each answer's MAC and
  `acked` checked. Inside that time: HTTP, the request tag (CMAC), decryption, the batch's whole
  MAC chain, CRC, sequence, the link to the stored chain, rows, the inserts, the terminals' rows,
  the commits (SQLite synchronous=FULL: a batch is answered only after its commit) and the
  answers. Not inside it (done before the clock starts, as a terminal does on its own CPU): making
  the records and their request bodies (encrypted, tagged); starting the server, its store
  connection and the writer process.
- bulk_per_s: records / the wall time of one transaction in this process that inserts the rows,
  already built as Python tuples (no decryption, no MAC or chain check), by one executemany into a
  new table with the DDL and indexes of `taps`, and commits (the same store settings:
  synchronous=FULL, WAL). The rows are built before the clock starts. (Ingest's writer binds the
  same values more cheaply than this plain executemany: multi-row INSERTs from one parameter list
  built column by column, `raw` as bytearray, which sqlite3 binds without its adapter lookup; the
  database's work per row, the table, its key and indexes, and the settings are the same.)
Each figure is the median of ROUNDS (5) runs, ingest and bulk in turn, each into a new database
(the runs are in data: ingest_runs_per_s, bulk_runs_per_s). Beside them (once): a bare table (no
key, no index), SQLite's multi-row INSERTs as ingest writes, PostgreSQL's COPY. CPU seconds of
the median ingest run: this process (HTTP, decryption, MACs; on PostgreSQL the inserts too), the
SQLite writer process, and the terminals' in their timed window. Then the load test: `--load-terminals`
(3,000) terminals uploading at once to `tapkit serve --workers 2`, every record stored exactly once.
The PostgreSQL is harness/pgserver.py's throwaway server (fsync off: a lower bound for a real disk).

data: {"serial": {model}, "serial_line": {records, seconds, raw_seconds, of_line, ...},
"deny_install": {...}, "tls_handshake": {...}, "wifi_upload_heap": {"alone": {...}, "host polling":
{...}}, "wifi_upload_heap_free", "SQLite": {records, ingest_per_s, bulk_per_s, ...},
"PostgreSQL": {...}, "load": {...}}.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from card_schema import frames, frames_host, taprecord_host
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
WIFI_BATCH = 1024  # firmware/wifi.py _BATCH
WIFI_HEAP_RECORDS = 2048  # the upload whose heap is measured: two whole batches
LOAD_BATCH = 50  # the load test's batches: many exchanges, the server's per-request cost
ROUNDS = 5  # ingest and bulk insert in turn, this many times each: the medians are the figures


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
        total += len(  # the ACK with its control tag
            frames.encode(
                frames.ACK, 1, frames_host.u32_body(seq + k - 1) + bytes(frames_host.TAG)
            )
        )
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


def serial_line(n=10000):
    """A real `tapkit sync` of n records from a virtual bus terminal (the firmware on the VM, its
    journal on the NOR model, filled by the firmware's own Journal) through harness/serial_line.py's
    line paced at 115,200 baud 8N1, streamed (a window of PULLs, binary RECORDS lines) into SQLite.
    Returns {records, seconds, raw_seconds, of_line, to_host, to_board, stored, duplicates}."""
    from emulator import lfsimage
    from emulator.vboard import VirtualBoard
    from harness import serial_line, vm
    from host_tools.fleet import link as link_mod
    from host_tools.fleet import provision, sync
    from host_tools.sim.virtual import deploy_virtual

    tid = 1001
    sectors = -(-n // 60) + 8  # 60 taps a sector; room so the journal is not full
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "issuer.keys"))
        state = os.path.join(d, "bus")
        os.makedirs(os.path.join(state, "fs"))
        deploy_virtual(os.path.join(state, "fs"), ks, tid, fare=25000, line=7)
        vb = VirtualBoard(state)
        vb.start()
        try:
            board = json.loads(lfsimage.read_file(vb.image, "/board.json"))
            board["journal"]["size"] = sectors * 4096
            lfsimage.write_files(vb.image, {"/board.json": json.dumps(board)})
            flash = os.path.join(state, "flash.bin")
            os.remove(flash)
            key = provision.terminal_keys(ks, tid)["journal"]
            vm.run(
                vm.build(os.path.join(d, "mpy")),
                vm.script("journal_fill"),
                flash,
                sectors * 4096,
                key,
                tid,
                n,
                path=[vm.EMULATOR],
                timeout=1800,
                check=True,
            )
            vb.restart("journal filled")
            db = store_mod.open_store("sqlite:///%s" % os.path.join(d, "taps.db"))
            try:
                with serial_line.PacedLine(vb.port) as line:
                    with link_mod.SerialLink(line.port, timeout=5.0) as link:
                        t0 = time.perf_counter()
                        s = sync.sync_terminal(link, db, ks)
                        took = time.perf_counter() - t0
                    moved = dict(line.moved)
                stored = db.count()
            finally:
                db.close()
        finally:
            vb.stop()
    raw = n * 64 / LINE_BPS
    return {
        "records": n,
        "seconds": took,
        "raw_seconds": raw,
        "of_line": raw / took,
        "to_host": moved["to_host"],
        "to_board": moved["to_board"],
        "stored": stored,
        "pulled": s["pulled"],
        "duplicates": s["duplicates"],
    }


def _deny_blob(n):
    from card_schema import tariff

    entries = {bytes([4]) + (i * 7919 + 1).to_bytes(6, "big"): i % 2 for i in range(n)}
    return tariff.pack_deny(entries)


def deny_install(n=100000):
    """The time a deny list of n cards takes to install on a virtual bus terminal: over USB
    (`link.install` through harness/serial_line.py's line at 115,200 baud, chunked, verified on
    the terminal before use) and over the virtual Wi-Fi (the terminal's uploader fetching it from
    `tapkit serve` in encrypted chunks: from the first chunk served to the version the terminal
    reports). Returns {cards, bytes, usb_seconds, usb_chunks, wifi_seconds, wifi_chunks,
    wifi_identify_refused}."""
    import socket

    from card_schema import signed, signed_host
    from emulator.vboard import VirtualBoard
    from harness import serial_line
    from host_tools.fleet import link as link_mod
    from host_tools.sim.virtual import deploy_virtual

    tid = 1001
    payload = _deny_blob(n)
    out = {"cards": n}
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "issuer.keys"))
        blob = signed_host.seal_fast(keystore.config_key(ks, tid), signed.KIND_DENY, 5, payload)
        out["bytes"] = len(blob)
        # USB
        state = os.path.join(d, "usb")
        os.makedirs(os.path.join(state, "fs"))
        deploy_virtual(os.path.join(state, "fs"), ks, tid, fare=25000, line=7)
        with VirtualBoard(state) as vb:
            with serial_line.PacedLine(vb.port) as line:
                with link_mod.SerialLink(line.port, timeout=10.0) as link:
                    link.key = keystore.terminal_key(ks, tid)  # INSTALL is a tagged control
                    link.identify()
                    t0 = time.perf_counter()
                    got = link.install(blob)
                    out["usb_seconds"] = time.perf_counter() - t0
                    out["usb_chunks"] = -(-len(blob) // frames_host.INSTALL_CHUNK)
                    if got != (signed.KIND_DENY, 5) or link.identify()["deny_ver"] != 5:
                        raise RuntimeError("USB install of the deny list: %r" % (got,))
        # Wi-Fi
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "sqlite:///%s" % os.path.join(d, "taps.db")
        with store_mod.open_store(url) as db:
            db.put_config(signed.KIND_DENY, 5, payload)
        ing = ingest.Ingest(url, ks, [(tid, tid)], log=lambda m: None)
        served = []
        chunk = ing._chunk

        def timed(*a):
            c = chunk(*a)
            if c is not None:
                served.append(time.perf_counter())
            return c

        ing._chunk = timed
        srv = serve.Running(serve.make_app(ing), "127.0.0.1", port)
        state = os.path.join(d, "wifi")
        os.makedirs(os.path.join(state, "fs"))
        deploy_virtual(
            os.path.join(state, "fs"),
            ks,
            tid,
            fare=25000,
            line=7,
            server="127.0.0.1:%d" % port,
            upload_backoff_max_ms=1000,
            upload_idle_ms=1000,
        )
        try:
            with VirtualBoard(state, wifi=True) as vb:
                with link_mod.SerialLink(vb.port, timeout=5.0) as link:
                    deadline = time.monotonic() + 1800
                    refused = 0
                    while True:
                        try:
                            if link.identify().get("deny_ver") == 5:
                                break
                        except link_mod.TerminalError:  # the answer found no heap: counted
                            refused += 1
                        if time.monotonic() > deadline:
                            raise RuntimeError("Wi-Fi install of the deny list: timed out")
                        # every few seconds: a console line beside the exchange costs its heap
                        time.sleep(3.0)
                    done = time.perf_counter()
        finally:
            srv.stop()
            ing.close()
        out["wifi_seconds"] = done - served[0]
        out["wifi_identify_refused"] = refused  # IDENTIFYs answered "memory allocation failed"
        out["wifi_chunks"] = len(served)
    return out


def _records(ks, tid, n):
    from harness import loadgen

    return loadgen.records(keystore.terminal_key(ks, tid), tid, n)


def _loadgen(url, ks_path, terminals, n, batch, resend=0.0, timeout=1800):
    """harness/loadgen.py in its own process (the terminals are not the server's CPU)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.loadgen",
            "--url",
            url,
            "--keystore",
            ks_path,
            "--terminals",
            str(terminals),
            "--records",
            str(n),
            "--batch",
            str(batch),
            "--resend",
            str(resend),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        r = json.loads(p.stdout)
    except ValueError:
        raise RuntimeError("loadgen failed: %s" % (p.stderr.strip().splitlines() or ["?"])[-1])
    if r["errors"]:
        raise RuntimeError(
            "ingest bench: %d batches refused (%s)" % (len(r["errors"]), r["errors"][0])
        )
    return r


def _proc_cpu(pid):
    """CPU seconds (user + system) of a running process so far (Linux /proc), or 0.0."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def http_ingest(url, ks, ks_path, vehicles, taps, batch=WIFI_BATCH, stats=None):
    """Records/s through `tapkit serve` (uvicorn in a thread here) into `url`, the terminals in
    another process (harness/loadgen.py: all at once, encrypted batches of up to `batch`). `stats`
    (a dict) gets the run's wall seconds and CPU seconds: this process (HTTP, decryption, MACs; on
    PostgreSQL the inserts too), SQLite's writer process, and the terminals' in their timed
    window (loadgen's own count)."""
    ing = ingest.Ingest(url, ks, [(1, 10**6)], pool=8, log=lambda m: None)
    srv = serve.Running(serve.make_app(ing))
    w = ing._writer
    try:
        w0 = _proc_cpu(w.proc.pid) if w is not None else 0.0  # its start-up is not the run's
        c0 = time.process_time()
        r = _loadgen(srv.url, ks_path, vehicles, taps, batch)
        if stats is not None:
            stats.update(
                seconds=r["seconds"],
                server_cpu_s=time.process_time() - c0,
                writer_cpu_s=(_proc_cpu(w.proc.pid) - w0) if w is not None else 0.0,
                loadgen_cpu_s=r["cpu_s"],
            )
        return r["per_s"]
    finally:
        srv.stop()
        ing.close()


def load_test(url, ks_path, terminals, n, batch, workers=2):
    """3,000 simulated terminals at once against `tapkit serve --workers N` (a subprocess) on
    `url`; a share of the batches sent twice. Returns loadgen's figures plus what the store holds:
    stored, duplicates (rows beyond one per terminal and seq) and missing."""
    from harness import serveproc

    p, base = serveproc.start(url, ks_path, terminals, workers)
    try:
        r = _loadgen(base, ks_path, terminals, n, batch, resend=0.05)
    finally:
        p.terminate()
        p.wait(timeout=60)
    with store_mod.open_store(url) as s:
        total, distinct = s._one(
            "SELECT COUNT(*), COUNT(DISTINCT terminal * 1000000 + seq) FROM taps"
        )
    r.update(
        stored=int(total),
        duplicates=int(total) - int(distinct),
        missing=terminals * n - int(distinct),
        workers=workers,
    )
    return r


def bulk_insert(url, fleet, bare=False, copy=False, stats=None, multi=False):
    """Records/s of the plain bulk insert of the same rows: one executemany in one transaction, no
    chain check, into a table shaped as `taps` is (its primary key and indexes: what the database
    itself costs for these rows), or with `bare` into a table without them; `copy` (PostgreSQL)
    by one COPY, `multi` (SQLite) by multi-row INSERTs as ingest writes (store._insert_taps)."""
    with store_mod.open_store(url) as s:
        cols = list(store_mod._TAP_COLUMNS)
        if s.dialect == "postgresql":
            like = "" if bare else " INCLUDING DEFAULTS INCLUDING INDEXES"
            s._exec(f"CREATE TABLE bulk_taps (LIKE taps{like})")
        elif bare:
            s._exec("CREATE TABLE bulk_taps AS SELECT * FROM taps WHERE 0")
        else:  # the same DDL and indexes, renamed
            for (sql,) in s._all(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'taps' AND sql IS NOT NULL "
                "ORDER BY type DESC"
            ):
                sql = sql.replace("CREATE TABLE taps", "CREATE TABLE bulk_taps")
                sql = sql.replace(" ON taps ", " ON bulk_taps ").replace(
                    "INDEX taps_", "INDEX bt_"
                )
                s._exec(sql)
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
        t0, c0 = time.perf_counter(), time.process_time()
        with s._tx():
            if copy:  # PostgreSQL's own fastest way in (what ingest uses for a batch)
                with s.conn.cursor() as cur:
                    with cur.copy("COPY bulk_taps ({}) FROM STDIN".format(", ".join(cols))) as cp:
                        for r in rows:
                            cp.write_row(r)
            elif multi:
                per = store_mod._multi_rows(s.conn)
                one = "(" + ", ".join("?" * len(cols)) + ")"
                for i in range(0, len(rows), per):
                    part = rows[i : i + per]
                    s.conn.execute(
                        sql.split(" VALUES ")[0] + " VALUES " + ", ".join([one] * len(part)),
                        [v for r in part for v in r],
                    )
            else:
                s.conn.cursor().executemany(sql, rows)
        if stats is not None:
            stats.update(seconds=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
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
            "serial sync: 10,000 records at 115,200 baud, stop and wait (model)",
            round(m["seconds"] + m["turnaround_seconds"], 1),
            "s",
            "a proto-1 terminal: the bare records need %.1f s; %.1f s of lines + %.1f s turnaround"
            % (m["raw_seconds"], m["seconds"], m["turnaround_seconds"]),
        ),
    ]
    data = {"serial": m}
    n_serial = getattr(opts, "serial_records", 10000)
    if n_serial:
        line = serial_line(n_serial)
        data["serial_line"] = line
        rows.append(
            row(
                SECTION,
                "serial sync: %s records at 115,200 baud, streamed (measured)" % f"{n_serial:,}",
                round(line["seconds"], 1),
                "s",
                "a virtual bus terminal through a paced line: the bare records need %.1f s (%.0f "
                "%% of the line's rate for them); %d stored, %d duplicates"
                % (
                    line["raw_seconds"],
                    100 * line["of_line"],
                    line["stored"],
                    line["duplicates"],
                ),
            )
        )
    n_deny = getattr(opts, "deny_cards", 100000)
    if n_deny:
        di = deny_install(n_deny)
        data["deny_install"] = di
        for link_name, key, how in (
            ("USB at 115,200 baud", "usb", "INSTALL chunks of %d B" % frames_host.INSTALL_CHUNK),
            ("the virtual Wi-Fi", "wifi", "encrypted answer chunks of up to 16 KB"),
        ):
            rows.append(
                row(
                    SECTION,
                    "deny list of %s cards: install over %s" % (f"{n_deny:,}", link_name),
                    round(di[key + "_seconds"], 1),
                    "s",
                    "%s B signed blob, %d %s; verified on the terminal before use"
                    % (f"{di['bytes']:,}", di[key + "_chunks"], how),
                )
            )
    from harness import tls_heap

    try:
        tls = tls_heap.measure()
        data["tls_handshake"] = tls
        rows.append(
            row(
                SECTION,
                "Wi-Fi: a TLS 1.2 handshake on the VM (not used: records encrypted instead)",
                round(tls["c_heap_peak"] / 1024, 1),
                "KB",
                "mbedTLS's C heap at its peak (%s, server pinned), beside %.1f KB of the "
                "MicroPython heap; the wire key costs one AES object and the 512-byte buffer"
                % (tls["cipher"], tls["mp_heap"] / 1024),
            )
        )
    except tls_heap.Unavailable as e:
        rows.append(row(SECTION, "Wi-Fi: a TLS 1.2 handshake on the VM", None, "", str(e)))
    from harness import heap_paths

    heaps = {}
    for name, poll in (("alone", None), ("host polling", 1.0)):
        with tempfile.TemporaryDirectory() as d:
            heaps[name] = h = heap_paths.wifi_upload(d, WIFI_HEAP_RECORDS, poll, probe=True)
        rows.append(
            row(
                SECTION,
                "Wi-Fi upload, records encrypted (%s): heap free at its peak" % name,
                round(h["heap_free"] / 1024, 1),
                "KB",
                "of the VM's 112 KB: %s records in %d exchanges of up to %d; live at the "
                "peak %s B (%.1f KB free counting one step's garbage)%s"
                % (
                    f"{h['records']:,}",
                    h["exchanges"],
                    WIFI_BATCH,
                    f"{h['live']:,}",
                    h["heap_free_garbage"] / 1024,
                    "; IDENTIFY over USB every 1 s (%d answered)" % h["identify"] if poll else "",
                ),
            )
        )
    data["wifi_upload_heap"] = heaps
    data["wifi_upload_heap_free"] = min(h["heap_free"] for h in heaps.values())
    with tempfile.TemporaryDirectory() as d:
        ks_path = os.path.join(d, "issuer.keys")
        ks = keystore.init(ks_path)
        fleet = {tid: _records(ks, tid, taps) for tid in range(1, vehicles + 1)}
        n = vehicles * taps
        pg = None
        dbs = iter(range(10**6))

        def sqlite_db():
            return "sqlite:///%s" % os.path.join(d, "s%d.db" % next(dbs))

        targets = [("SQLite", sqlite_db)]
        try:
            from harness import pgserver

            pg = pgserver.PGServer.start()
            targets.append(("PostgreSQL", pg.create_database))
        except pgserver.PGUnavailable as e:  # no PostgreSQL here: say so in the table
            rows.append(
                row(SECTION, "HTTP ingest into PostgreSQL", None, "", f"not measured: {e}")
            )
        try:
            for name, new_db in targets:
                # ROUNDS rounds, ingest and bulk in turn, each into a new database: the medians
                # (a shared machine's load moves either figure by tens of % from one second to
                # the next; in turn, both meet the same load)
                runs = []
                for _ in range(ROUNDS):
                    ist, bst = {}, {}
                    rate = http_ingest(new_db(), ks, ks_path, vehicles, taps, stats=ist)
                    bulk = bulk_insert(new_db(), fleet, stats=bst)
                    runs.append((rate, bulk, ist, bst))
                rate = statistics.median(r[0] for r in runs)
                bulk = statistics.median(r[1] for r in runs)
                ist = sorted(runs, key=lambda r: r[0])[len(runs) // 2][2]  # the median ingest's
                bst = sorted(runs, key=lambda r: r[1])[len(runs) // 2][3]
                bare = bulk_insert(new_db(), fleet, bare=True)
                data[name] = {
                    "records": n,
                    "rounds": ROUNDS,
                    "ingest_per_s": rate,
                    "bulk_per_s": bulk,
                    "bare_per_s": bare,
                    "ingest_of_bulk": rate / bulk,
                    "ingest_runs_per_s": [r[0] for r in runs],
                    "bulk_runs_per_s": [r[1] for r in runs],
                    "ingest_seconds": ist["seconds"],
                    "ingest_cpu_s": ist["server_cpu_s"] + ist["writer_cpu_s"],
                    "ingest_server_cpu_s": ist["server_cpu_s"],
                    "ingest_writer_cpu_s": ist["writer_cpu_s"],
                    "loadgen_cpu_s": ist["loadgen_cpu_s"],
                    "bulk_seconds": bst["seconds"],
                    "bulk_cpu_s": bst["cpu_s"],
                }
                if name == "PostgreSQL":
                    cp = bulk_insert(new_db(), fleet, copy=True)
                    data[name].update(copy_per_s=cp, ingest_of_copy=rate / cp)
                else:
                    mr = bulk_insert(new_db(), fleet, multi=True)
                    data[name].update(multi_per_s=mr, ingest_of_multi=rate / mr)
                rows.append(
                    row(
                        SECTION,
                        f"HTTP ingest into {name}",
                        round(rate),
                        "rec/s",
                        "%.0f %% of the bulk insert (medians of %d in turn; runs %s %%); %d "
                        "vehicles x %d taps (of 3,000 x 500), batches of up to %d, MACs checked, "
                        "acked after commit: a fleet day %.1f min; %.2f s wall, CPU %.2f s server "
                        "+ %.2f s SQLite writer (terminals %.2f s)"
                        % (
                            100 * rate / bulk,
                            ROUNDS,
                            "/".join("%.0f" % (100 * r[0] / r[1]) for r in runs),
                            vehicles,
                            taps,
                            WIFI_BATCH,
                            FLEET_DAY / rate / 60,
                            ist["seconds"],
                            ist["server_cpu_s"],
                            ist["writer_cpu_s"],
                            ist["loadgen_cpu_s"],
                        ),
                    )
                )
                rows.append(
                    row(
                        SECTION,
                        f"plain bulk insert into {name}",
                        round(bulk),
                        "rec/s",
                        "same rows, one executemany, a table shaped as taps (key, indexes): a "
                        "fleet day %.1f min; %.2f s wall, CPU %.2f s"
                        % (FLEET_DAY / bulk / 60, bst["seconds"], bst["cpu_s"]),
                    )
                )
                rows.append(
                    row(
                        SECTION,
                        f"  the same into a bare table ({name})",
                        round(bare),
                        "rec/s",
                        "no key, no index: what the database writes without them",
                    )
                )
                if name == "SQLite":
                    rows.append(
                        row(
                            SECTION,
                            "  the same by multi-row INSERTs (SQLite)",
                            round(data[name]["multi_per_s"]),
                            "rec/s",
                            "into a table shaped as taps, %d rows a statement as ingest writes: "
                            "ingest is %.0f %% of it"
                            % (store_mod._MULTI, 100 * data[name]["ingest_of_multi"]),
                        )
                    )
                if name == "PostgreSQL":
                    rows.append(
                        row(
                            SECTION,
                            "  the same by COPY (PostgreSQL)",
                            round(data[name]["copy_per_s"]),
                            "rec/s",
                            "into a table shaped as taps, one COPY: ingest is %.0f %% of it"
                            % (100 * data[name]["ingest_of_copy"]),
                        )
                    )
            # the load test: a depot's whole fleet at once, several server processes, one database
            load_url = (
                pg.create_database()
                if pg is not None
                else "sqlite:///%s" % os.path.join(d, "l.db")
            )
            lt = load_test(
                load_url,
                ks_path,
                opts.load_terminals,
                opts.load_records,
                LOAD_BATCH,
                workers=2 if pg is not None else 1,
            )
            data["load"] = {
                k: lt[k]
                for k in (
                    "terminals",
                    "records",
                    "stored",
                    "duplicates",
                    "missing",
                    "resent",
                    "retries",
                    "seconds",
                    "per_s",
                    "p50_ms",
                    "p99_ms",
                    "workers",
                )
            }
            data["load"]["store"] = "PostgreSQL" if pg is not None else "SQLite"
            rows.append(
                row(
                    SECTION,
                    "load test: %d terminals at once" % lt["terminals"],
                    round(lt["per_s"]),
                    "rec/s",
                    "%s, %d serve processes: %d records in %.1f s (batches of %d, %d sent twice), "
                    "p99 %.0f ms; stored %d, duplicates %d, missing %d"
                    % (
                        data["load"]["store"],
                        lt["workers"],
                        lt["records"],
                        lt["seconds"],
                        LOAD_BATCH,
                        lt["resent"],
                        lt["p99_ms"],
                        lt["stored"],
                        lt["duplicates"],
                        lt["missing"],
                    ),
                )
            )
            if lt["duplicates"] or lt["missing"]:
                data.setdefault("fails", []).append(
                    "load test: %d duplicates, %d missing" % (lt["duplicates"], lt["missing"])
                )
        finally:
            if pg is not None:
                pg.stop()
    return rows, data
