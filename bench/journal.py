"""The journal's flash cost, boot recovery and power-cut endurance, measured on the MicroPython VM.

    python -m bench journal [--cuts 10000] [--json]
    python -m bench journal --replay SEED --mode linear|random     (a failing seed, again)

Everything runs as the deployed .mpy on the unix port over the NOR flash model (emulator/norflash.py),
and every number comes from the model's counters (the VM scripts are harness/mp/journal_cost.py,
lfs_cost.py and journal_reentrant.py):
- erases and bytes programmed per tap, beside the physical floor (64 / 4096 erases per tap) and beside
  the same tap stream appended to a file on MicroPython's littlefs (vfs.VfsLfs2 over a counting block
  device of 4 KB blocks), flushed after every tap as a power-safe journal would have to;
- taps that fit in 1 MB;
- boot recovery at 10%, 50% and 100% full: VM time and the flash reads it makes;
- the littlefs-style reentrant power-cut run (also tests/firmware/test_journal_reentrant.py): a tap
  stream with syncs, power cut after 1, 2, 3, ... writes (linear) or at seeded random points, a
  reboot after each cut and the invariant checked.

data: {"journal": {...}, "littlefs": {...}, "reentrant": {cuts, seeds, fails, full_refusals,
seconds}, "sectors": n, "fails": [replayable failure lines]}.
"""

import os
import shutil
import tempfile
import time

from bench import row

SECTION = "journal"
SECTOR = 4096
RECORD = 64
SLOTS = 60  # tap slots per 4 KB sector: page 0 holds the sector header and the ack entries


def run_vm(build_dir, name, *args, heap="112K", timeout=1800):
    """Run harness/mp/NAME.py on the VM; returns the JSON lines it printed."""
    from harness import vm

    p = vm.run(
        vm.build(build_dir),
        vm.script(name),
        *args,
        path=[vm.EMULATOR],
        heap=heap,
        timeout=timeout,
        check=True,
    )
    return vm.json_lines(p)


def reentrant(build_dir, cuts, workers=None):
    """Run seeds (half linear, half random) until at least `cuts` power cuts; several VM processes
    in parallel. Returns {"cuts", "seeds", "fails": [...], "full_refusals"}."""
    from concurrent.futures import ThreadPoolExecutor

    from harness import vm

    workers = workers or min(8, os.cpu_count() or 1)
    vm.build(build_dir)
    per_seed = 22  # about 22 cuts per seed of 400 ops (measured); more seeds are added if short
    total = {"cuts": 0, "seeds": 0, "fails": [], "full_refusals": 0}
    seed = 1
    while total["cuts"] < cuts:
        n = max(workers, (cuts - total["cuts"]) // per_seed + 1)
        chunks = []
        step = max(1, n // workers)
        for i in range(0, n, step):
            mode = "linear" if (seed + i) % 2 else "random"
            chunks.append((seed + i, seed + min(i + step, n), mode))
        seed += n

        def one(c):
            d = tempfile.mkdtemp(dir=build_dir)
            try:
                return run_vm(
                    build_dir, "journal_reentrant", d, c[0], c[1], c[2], 400, heap="512K"
                )
            finally:
                shutil.rmtree(d, ignore_errors=True)

        with ThreadPoolExecutor(workers) as ex:
            for lines in ex.map(one, chunks):
                for r in lines:
                    if "fail" in r:
                        total["fails"].append(r["fail"])
                    elif "seed" in r:
                        total["seeds"] += 1
                        total["cuts"] += r["cuts"]
                        total["full_refusals"] += r["full_refusals"]
    return total


def measure(cuts=10000, sectors=64):
    """Every journal number of the bench, as a dict."""
    with tempfile.TemporaryDirectory() as d:
        cost = run_vm(d, "journal_cost", d, sectors)[0]
        lfs = run_vm(d, "lfs_cost", d, 64, 2000, heap="2M")[0]
        t0 = time.time()
        rt = reentrant(d, cuts)
        rt["seconds"] = round(time.time() - t0, 1)
    return {"journal": cost, "littlefs": lfs, "reentrant": rt, "sectors": sectors}


def replay(seed, mode):
    """One reentrant seed again: the JSON lines it prints (a failure names the step)."""
    with tempfile.TemporaryDirectory() as d:
        return run_vm(d, "journal_reentrant", d, seed, seed + 1, mode, 400, heap="512K")


def rows(m):
    """The bench table rows for the numbers of measure()."""
    c, lfs, rt = m["journal"], m["littlefs"], m["reentrant"]
    taps = c["taps"]
    out = [
        row(
            SECTION,
            "journal: erases per tap",
            round(c["erases"] / taps, 4),
            "",
            "floor %d/4096 = %.4f; 1/%d (one per %d-slot sector)"
            % (RECORD, RECORD / SECTOR, SLOTS, SLOTS),
        ),
        row(
            SECTION,
            "journal: bytes programmed per tap",
            round(c["bytes_programmed"] / taps, 1),
            "B",
            "record %d B (+ sector headers and ack entries)" % RECORD,
        ),
        row(SECTION, "journal: flash programs per tap", round(c["programs"] / taps, 3)),
        row(
            SECTION,
            "journal: taps that fit in 1 MB",
            1048576 // SECTOR * SLOTS,
            "",
            "%d sectors x %d slots" % (1048576 // SECTOR, SLOTS),
        ),
        row(
            SECTION,
            "littlefs (VfsLfs2) file append: erases per flushed tap",
            round(lfs["erases"] / lfs["taps"], 3),
            "",
            "same 64 B records, 4 KB blocks, flush per tap",
        ),
        row(
            SECTION,
            "littlefs (VfsLfs2) file append: bytes programmed per tap",
            round(lfs["bytes_programmed"] / lfs["taps"]),
            "B",
        ),
    ]
    for r in c["recovery"]:
        out.append(
            row(
                SECTION,
                "journal: boot recovery at %d%% full (%d sectors)" % (r["fill"], m["sectors"]),
                round(r["us"] / 1000.0, 1),
                "ms",
                "%d flash reads, %d B (VM time, not ESP32)" % (r["reads"], r["bytes_read"]),
            )
        )
    out.append(
        row(
            SECTION,
            "journal: power cuts survived (reentrant, linear + random)",
            rt["cuts"],
            "",
            "%d seeds, %d failures, %.0f s" % (rt["seeds"], len(rt["fails"]), rt["seconds"]),
        )
    )
    out += [row(SECTION, "  FAILED (replay this seed)", None, "", f) for f in rt["fails"][:5]]
    return out


def run(opts):
    if opts.replay is not None:
        lines = replay(opts.replay, opts.mode)
        fails = [r["fail"] for r in lines if "fail" in r]
        note = "seed %d (%s)" % (opts.replay, opts.mode)
        return [row(SECTION, "journal: replayed reentrant seed", len(fails), "failures", note)] + [
            row(SECTION, "  FAILED", None, "", f) for f in fails
        ], {"replay": lines, "fails": fails}
    m = measure(opts.cuts)
    m["fails"] = list(m["reentrant"]["fails"])
    return rows(m), m
