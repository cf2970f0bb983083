"""The load test: 3,000 simulated terminals (harness/loadgen.py, each its own connection, all at
once) uploading encrypted batches to `tapkit serve` on 127.0.0.1, a share of the batches sent twice
(a lost answer); every record is stored exactly once, within a bounded time. On PostgreSQL with two
server processes (several servers on one database), and on SQLite with one."""

import json
import os
import subprocess
import sys
import time

import pytest

from harness import serveproc
from host_tools import keystore
from host_tools.backoffice import store as store_mod

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
TERMINALS, RECORDS, BATCH = 3000, 10, 5


@pytest.mark.parametrize("db,workers", [("postgresql", 2), ("sqlite", 1)])
def test_3000_terminals_at_once_every_record_once(db, workers, tmp_path, pg_server):
    ks_path = str(tmp_path / "issuer.keys")
    keystore.init(ks_path)
    url = (
        pg_server.create_database() if db == "postgresql" else "sqlite:///%s" % (tmp_path / "t.db")
    )
    store_mod.open_store(url).close()
    p, base = serveproc.start(url, ks_path, TERMINALS, workers, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.loadgen",
                "--url",
                base,
                "--keystore",
                ks_path,
                "--terminals",
                str(TERMINALS),
                "--records",
                str(RECORDS),
                "--batch",
                str(BATCH),
                "--resend",
                "0.05",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr[-2000:]
        got = json.loads(r.stdout)
    finally:
        p.terminate()
        p.wait(timeout=60)
    assert got["errors"] == [] and got["batches"] == TERMINALS * RECORDS // BATCH + got["resent"]
    assert got["resent"] > 0 and took < 600
    with store_mod.open_store(url) as s:
        total, distinct = s._one(
            "SELECT COUNT(*), COUNT(DISTINCT terminal * 1000000 + seq) FROM taps"
        )
        assert (total, distinct) == (TERMINALS * RECORDS, TERMINALS * RECORDS)
        per = s._all("SELECT terminal, MIN(seq), MAX(seq), COUNT(*) FROM taps GROUP BY terminal")
    assert len(per) == TERMINALS and all(r[1:] == (1, RECORDS, RECORDS) for r in per)
    print(
        "%s x%d: %.0f records/s, %d resent, %d retries, p99 %.0f ms"
        % (db, workers, got["per_s"], got["resent"], got["retries"], got["p99_ms"])
    )
