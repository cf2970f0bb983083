"""`make bench`: the performance table, measured on the real parts.

    python -m host_tools.bench [--taps N] [--json]

Bus tap (flat fare) on a virtual board (firmware on the MicroPython unix port, 112 KB heap, emulated
PN532 and DESFire card):
- APDUs per tap: counted by the firmware's DESFire client and, independently, by the card emulator;
- bytes over the air per tap and the modelled air time at 106 kbit/s (~85 us per byte on ISO 14443-4
  frames, plus a per-command card processing allowance stated in the table);
- heap allocated during one tap (gc.mem_alloc() across the tap, after a collect) and the heap in use
  around it, beside the heap size;
- the VM's wall time per tap on this machine (not an ESP32 number: shown for regressions only).
"""

import argparse
import json
import os
import re
import statistics
import tempfile
import time

US_PER_BYTE = 85  # 106 kbit/s: 8 data bits + parity + framing, about 85 us per byte
CARD_MS_PER_CMD = 3.0  # allowance for the card's processing per command (EV1 datasheet order)
CARD_MS_COMMIT = 10.0  # CommitTransaction writes EEPROM (tearing-proof): a longer allowance


def bench_bus_tap(taps=10, heap="112K"):
    from card_schema import citizen_host
    from emulator.vboard import VirtualBoard
    from host_tools import cardops, keystore, provision

    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "k.keys"))
        card = os.path.join(d, "c.card")
        now = int(time.time())
        cardops.new_emulated_card(
            card,
            ks,
            holder=citizen_host.HOLDER_ADULT,
            card_no=1,
            expiry=now + 86400 * 365,
            balance=25000 * (taps + 1),
            now=now,
        )
        fs = os.path.join(d, "vb", "fs.img")
        os.makedirs(os.path.dirname(fs))
        # the bus profile with a signed fare table (every rule on, no repeat window: the bench taps
        # one card again and again) and a 500-entry deny list the card is not on
        fares = {
            "fares": {"1": 25000},
            "conc": [100, 50, 30, 0],
            "peak": {"pct": 125, "days": [0, 1, 2, 3, 4, 5, 6], "spans": [[420, 540]]},
            "tz": 12600,
            "transfer": {"window": 5400, "pct": 50},
        }
        deny = {bytes([4, i // 256, i % 256, 1, 2, 3, 4]): i % 2 for i in range(500)}
        provision.deploy_virtual(fs, ks, 1, fare=25000, line=1, fares=fares, deny=deny)
        vb = VirtualBoard(os.path.join(d, "vb"), heap=heap)
        rows = []
        with vb:
            for _ in range(taps):
                f0 = vb.chip.stats() if hasattr(vb.chip, "stats") else {}
                r = vb.tap(card)
                f1 = vb.chip.stats() if hasattr(vb.chip, "stats") else {}
                m = dict(re.findall(r"(\w+)=(-?\d+)", r["stat"]))
                rows.append(
                    {k: int(v) for k, v in m.items()}
                    | {
                        "air_bytes": f1.get("air_bytes", 0) - f0.get("air_bytes", 0),
                        "exchanges": f1.get("exchanges", 0) - f0.get("exchanges", 0),
                    }
                )
    return rows


def firmware_heap():
    """Heap each firmware module costs once imported on the VM (bytecode, qstrs, objects)."""
    import shutil
    import subprocess

    from mpybuild import cross, manifest

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # a source checkout (bench)
    with tempfile.TemporaryDirectory() as d:
        cross.build(d, manifest.every_module("card_schema", "firmware"))
        shutil.copy(os.path.join(root, "emulator", "norflash.py"), d)
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([os.path.join(d, "lib"), d]))
        p = subprocess.run(
            [
                "micropython",
                "-X",
                "heapsize=1M",
                os.path.join(root, "harness", "mp", "heap_probe.py"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=d,
            timeout=60,
        )
    rows = {}
    for line in p.stdout.splitlines():
        name, _, n = line.rpartition(" ")
        if n.isdigit():
            rows[name] = int(n)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tapkit bench")
    ap.add_argument("--taps", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--drops", type=int, default=3000, help="tearing campaign field drops")
    ap.add_argument("--cuts", type=int, default=10000, help="journal power cuts (reentrant run)")
    ap.add_argument(
        "--sync-vehicles", type=int, default=40, help="vehicles x 500 taps for the ingest bench"
    )
    a = ap.parse_args(argv)
    heap = firmware_heap()
    rows = bench_bus_tap(a.taps)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    apdus = med.get("apdus", 0)
    air_ms = med.get("air_bytes", 0) * US_PER_BYTE / 1000.0
    card_ms = max(apdus - 1, 0) * CARD_MS_PER_CMD + CARD_MS_COMMIT
    table = [
        ("bus tap: APDUs per tap (firmware count)", "%d" % apdus, ""),
        (
            "bus tap: InDataExchange per tap (PN532 emulator count)",
            "%d" % med.get("exchanges", 0),
            "",
        ),
        ("bus tap: bytes over the air per tap", "%d" % med.get("air_bytes", 0), ""),
        (
            "bus tap: modelled air time at 106 kbit/s",
            "%.1f ms" % air_ms,
            "%d us/byte" % US_PER_BYTE,
        ),
        (
            "bus tap: modelled air + card time",
            "%.1f ms" % (air_ms + card_ms),
            "card %.0f ms/cmd, commit %.0f ms; target < 150 ms"
            % (CARD_MS_PER_CMD, CARD_MS_COMMIT),
        ),
        (
            "bus tap: heap allocated during one tap (VM, 112K heap)",
            "%d B" % med.get("alloc", 0),
            "after gc.collect()",
        ),
        ("bus tap: heap in use before the tap", "%d B" % med.get("heap_used", 0), ""),
        ("bus tap: heap free after the tap", "%d B" % med.get("heap_free", 0), ""),
        (
            "bus tap: VM wall time per tap on this machine",
            "%d ms" % med.get("ms", 0),
            "not an ESP32 figure",
        ),
        (
            "firmware: heap taken by importing all modules (.mpy)",
            "%d B" % heap.get("total", 0),
            "64-bit unix port; an ESP32 (32-bit) needs less",
        ),
    ] + [("  module %s" % k, "%d B" % v, "") for k, v in heap.items() if k != "total"]
    from host_tools.bench_card import bench_rows

    tearing, tear_rows = bench_rows(a.drops)
    table += tear_rows
    from host_tools.bench_sync import bench_rows as sync_rows

    sync_data, sync_table = sync_rows(a.sync_vehicles)
    table += sync_table
    from host_tools import bench_journal

    journal_data = bench_journal.measure(a.cuts)
    table += bench_journal.rows(journal_data)
    from host_tools import bench_profiles

    profile_data = bench_profiles.measure(min(a.taps, 5))
    table += bench_profiles.rows(profile_data)
    if a.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "median": med,
                    "firmware_heap": heap,
                    "tearing": tearing,
                    "sync": sync_data,
                    "journal": journal_data,
                    "profiles": profile_data,
                },
                indent=1,
            )
        )
        return 0
    from rich.table import Table

    from host_tools.cli import _console

    t = Table(title="tapkit bench (median of %d taps)" % a.taps)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("note")
    for r in table:
        t.add_row(*r)
    _console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
