"""Simulated terminals uploading over Wi-Fi: the sync bench's ingest figure and the load test.

    python -m harness.loadgen --url http://127.0.0.1:8080 --keystore issuer.keys \
        --terminals 3000 --records 100 --batch 50 [--first 1] [--resend 0.05] [--seed 1]

Each terminal is a coroutine that speaks what firmware/wifi.py speaks: HTTP/1.0, one request per
connection, its records MAC-chained with its journal key and encrypted with its wire key
(card_schema.upload_host), the answer's MAC checked against its request's iv, `acked` checked. All of
them upload at once (one connection each). A refused connection or a dropped one is retried after a
pause, as the terminal's back-off does; with --resend a share of the batches is sent again after its
answer (the answer "lost"), which the server must store once. Prints one JSON line:
{"terminals", "records", "batches", "seconds", "cpu_s" (the terminals' CPU in that time), "per_s", "resent", "retries", "errors", "p50_ms",
"p99_ms"}. The records (C-speed CMAC) and the request bodies (encrypted, tagged) are built before
the clock starts: a real terminal builds them on its own CPU, not the server machine's. The clock
covers connecting, sending, the server's whole work and each answer's check (its MAC, `acked`).

Not installed (harness/): the bench and tests/host_tools/backoffice/test_load.py run it.
"""

import argparse
import asyncio
import json
import random
import struct
import sys
import time

from card_schema import taprecord, upload_host
from host_tools import keystore

T0 = 1767225600  # 2026-01-01: the taps' clock (one month: one partition on PostgreSQL)


def records(jkey, tid, n, first=1, prev=taprecord.GENESIS_MAC):
    """n consecutive MAC-chained 64-byte records of terminal `tid` (C-speed CMAC)."""
    import binascii

    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    base = cmac.CMAC(algorithms.AES(jkey))
    out = []
    for i in range(n):
        seq = first + i
        body = struct.pack(
            taprecord.FMT,
            taprecord.VERSION,
            taprecord.KIND_CHARGE,
            0,
            1,
            seq,
            T0 + seq * 37 + tid % 3600,
            tid,
            bytes([4, seq % 251, tid % 251, tid // 251 % 251, 0, 0, 0x80]),
            1,
            seq,
            25000,
            10**7 - 25000 * seq,
            tid % 100,
            seq % 40,
            0,
            1,
            0,
            0,
            bytes(5),
        )
        c = base.copy()
        c.update(bytes(prev) + body)
        prev = c.finalize()[:8]
        head = body + prev
        out.append(head + struct.pack("<I", binascii.crc32(head) & 0xFFFFFFFF))
    return out


class Terminal:
    """One terminal's records and, built before any clock starts, its request bodies: a real
    terminal builds them on its own CPU, not the server's machine's."""

    def __init__(self, ks, tid, n, batch, rnd, resend=0.0):
        self.tid = tid
        self.jkey = keystore.terminal_key(ks, tid)
        self.wire = keystore.wire_key(ks, tid)
        self.recs = records(self.jkey, tid, n)
        self.batch = batch
        self.sends = []  # per batch: its last seq and its bodies (two when sent again)
        for i in range(0, len(self.recs), batch):
            chunk = self.recs[i : i + batch]
            bodies = [
                upload_host.batch_body(
                    self.wire, tid, chunk, iv=rnd.randbytes(16), journal_key=self.jkey
                )
                for _ in range(2 if rnd.random() < resend else 1)
            ]
            self.sends.append((taprecord.seq_of(chunk[-1]), bodies))


async def _exchange(host, port, tid, body, timeout):
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        w.write(
            b"POST /v1/batch HTTP/1.0\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % (host.encode(), port, len(body)) + body
        )
        await w.drain()
        data = await asyncio.wait_for(r.read(), timeout)
    finally:
        w.close()
    head, _, answer = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, answer


async def _run_terminal(t, host, port, stats, timeout):
    for last, bodies in t.sends:
        for k, body in enumerate(bodies):
            iv = body[31:47]  # nonce | tag: what the answer's MAC covers
            for attempt in range(20):
                t0 = time.perf_counter()
                try:
                    status, answer = await _exchange(host, port, t.tid, body, timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    stats["retries"] += 1
                    await asyncio.sleep(0.2 * (attempt + 1))  # the terminal's back-off
                    continue
                stats["lat"].append(time.perf_counter() - t0)
                if status != 200:
                    stats["errors"].append(
                        "terminal %d: HTTP %d %s" % (t.tid, status, answer[:80])
                    )
                    return
                try:
                    acked = upload_host.parse_answer(t.jkey, t.wire, iv, answer)[0]
                except ValueError as e:
                    stats["errors"].append("terminal %d: %s" % (t.tid, e))
                    return
                if acked != last:
                    stats["errors"].append("terminal %d: acked %d" % (t.tid, acked))
                    return
                stats["batches"] += 1
                stats["resent"] += k
                break
            else:
                stats["errors"].append("terminal %d: gave up after 20 attempts" % t.tid)
                return


async def _run(terms, host, port, timeout):
    stats = {"batches": 0, "resent": 0, "retries": 0, "errors": [], "lat": []}
    await asyncio.gather(*(_run_terminal(t, host, port, stats, timeout) for t in terms))
    return stats


def run(url, ks, terminals, n, batch, first=1, resend=0.0, seed=1, timeout=120.0):
    """Upload n records from each of `terminals` terminals (ids first..) at once; returns the
    figures (see the module doc)."""
    host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
    rnd = random.Random(seed)
    terms = [Terminal(ks, first + i, n, batch, rnd, resend) for i in range(terminals)]
    # timed: from the first connection to the last answer checked
    t0, c0 = time.perf_counter(), time.process_time()
    stats = asyncio.run(_run(terms, host, int(port), timeout))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    lat = sorted(stats.pop("lat")) or [0.0]
    total = terminals * n
    return dict(
        stats,
        terminals=terminals,
        records=total,
        seconds=dt,
        cpu_s=cpu,
        per_s=total / dt,
        p50_ms=1000 * lat[len(lat) // 2],
        p99_ms=1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m harness.loadgen")
    ap.add_argument("--url", required=True)
    ap.add_argument("--keystore", required=True)
    ap.add_argument("--terminals", type=int, default=3000)
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--resend", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, a.terminals + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    r = run(
        a.url,
        keystore.load(a.keystore),
        a.terminals,
        a.records,
        a.batch,
        a.first,
        a.resend,
        a.seed,
    )
    r["errors"] = r["errors"][:20]
    print(json.dumps(r))
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
