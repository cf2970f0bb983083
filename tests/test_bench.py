"""The bench (bench/, not installed) through `tapkit bench`: one row shape, one JSON object, and one
clear line where there is no source checkout."""

import json
import shutil
import subprocess
import sys

import pytest

from host_tools.cli import app
from host_tools.cli import bench as cli_bench

ROW_KEYS = {"section", "name", "value", "unit", "note"}


def test_tapkit_bench_runs_a_section_of_the_checkout(capfd):
    assert app.main(["bench", "heap", "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert out["sections"] == ["heap"]
    assert all(set(r) == ROW_KEYS and r["section"] == "heap" for r in out["rows"])
    heap = out["heap"]
    assert heap["total"] == sum(heap["modules"].values())
    assert out["rows"][0]["value"] == heap["total"] and out["rows"][0]["unit"] == "B"
    assert "firmware.app" in heap["modules"]
    # the figure: the tap path with the least heap free at its peak, by name
    worst = heap["worst_path"]
    assert set(worst) == {"path", "heap_free"}
    assert worst["heap_free"] == min(p["heap_free"] for p in heap["paths"].values())
    assert heap["paths"][worst["path"]]["heap_free"] == worst["heap_free"]
    want = {"charge", "parking out", "journal full", "usb install, charge", "wifi, uploaded"}
    assert want <= set(heap["paths"])
    row = [r for r in out["rows"] if r["name"].startswith("worst tap path")]
    assert row[0]["value"] == worst["heap_free"] and worst["path"] in row[0]["name"]


def test_tapkit_bench_without_a_checkout_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli_bench, "checkout", lambda: None)
    assert app.main(["bench"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a source checkout" in err


def test_an_unknown_section_is_one_line_and_exit_2():
    p = subprocess.run(
        [sys.executable, "-m", "bench", "nonsense"],
        cwd=cli_bench.checkout(),
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().endswith(
        "(sections: tap, heap, flash, tearing, sync, journal, profiles, backoffice, money, ota)"
    )


@pytest.mark.skipif(not shutil.which("valgrind"), reason="the TLS heap needs valgrind's massif")
def test_the_tls_handshake_heap_is_measured_on_the_vm():
    from harness import tls_heap

    r = tls_heap.measure()
    # mbedTLS's buffers and ECC working set: tens of KB of C heap, a few KB of MicroPython heap
    assert r["cipher"].startswith("ECDHE-ECDSA") and 10_000 < r["c_heap_peak"] < 64_000
    assert 1_000 < r["mp_heap"] < 16_000
