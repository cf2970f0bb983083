"""The journal's flash cost, boot recovery and power-cut endurance, measured on the MicroPython VM.

    python -m host_tools.bench_journal [--cuts 10000] [--json]      (also a section of `make bench`)
    python -m host_tools.bench_journal --replay SEED --mode linear|random   (a failing seed, again)

Everything runs as the deployed .mpy on the unix port over the NOR flash model (emulator/norflash.py),
and every number comes from the model's counters:
- erases and bytes programmed per tap, beside the physical floor (64 / 4096 erases per tap) and beside
  the same tap stream appended to a file on MicroPython's littlefs (vfs.VfsLfs2 over a counting block
  device of 4 KB blocks), flushed after every tap as a power-safe journal would have to;
- taps that fit in 1 MB;
- boot recovery at 10%, 50% and 100% full: VM time and the flash reads it makes;
- the littlefs-style reentrant power-cut run (`REENTRANT_VM`, also used by
  tests/firmware/test_journal_reentrant.py): a tap stream with syncs, power cut after 1, 2, 3, ...
  writes (linear) or at seeded random points, a reboot after each cut and the invariant checked.

The VM scripts are kept here as text (host tools never import firmware; they run it).
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTOR = 4096
RECORD = 64
SLOTS = 60  # tap slots per 4 KB sector: page 0 holds the sector header and the ack entries

# ---- the reentrant power-cut driver (MicroPython) ----------------------------------------------
# micropython journal_reentrant.py DIR SEED_FROM SEED_TO MODE OPS
#   MODE: "linear" (cut after 1, 2, 3, ... writes since each boot, wrapping at 97) or "random"
#   (a seeded number of writes, 1..40). Prints one JSON line per seed, {"fail": ...} lines on a
#   violated invariant (with the seed and step that replay it) and a final {"total": ...}.
REENTRANT_VM = r"""
import sys, json, gc, os
from norflash import NORFlash, PowerCut
from firmware.journal import Journal, JournalFull
from card_schema import taprecord

KEY = bytes(range(16))
TID = 7
UID = b"\x04\x11\x22\x33\x44\x55\x66"


class LCG:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n


class Host:
    # What the host has: survives the terminal's power cuts. Stores records in seq order, checks
    # the MAC chain from genesis, acknowledges what it stored.
    def __init__(self):
        self.head = 0  # every record up to here is stored (and verified)
        self.mac = taprecord.GENESIS_MAC
        self.macs = {}  # seq -> mac of stored records the terminal may still hold
        self.ack_floor = 0  # the terminal must never forget an ack it made durable

    def sync(self, j, batches, pending):
        while batches:
            batches -= 1
            recs = j.records(self.head + 1, 11)
            if not recs:
                break
            for r in recs:
                seq = taprecord.seq_of(r)
                if seq != self.head + 1:
                    return "host expected seq %d, got %d" % (self.head + 1, seq)
                if not taprecord.crc_ok(r) or not taprecord.mac_ok(r, self.mac, KEY):
                    return "host: seq %d fails its CRC or MAC chain" % seq
                a = pending.pop(seq, None)
                if a is not None and amount_of(r) != a:
                    return "host: seq %d amount %d, OK was shown for %d" % (seq, amount_of(r), a)
                self.head = seq
                self.mac = bytes(r[52:60])
                self.macs[seq] = self.mac
            j.ack(self.head)  # durable first (stored above), then ACK
            self.ack_floor = max(self.ack_floor, j.acked_durable)
        return None


def amount_of(r):
    return r[28] | r[29] << 8 | r[30] << 16 | r[31] << 24  # the amount field (taprecord)


def tap(j, amount):
    return j.append_tap(time=1700000000 + amount, uid=UID, kind=taprecord.KIND_CHARGE,
                        amount=amount, balance=100000 - amount, line=12, stop=3)


def check(j, host, pending, last_ok):
    # the invariant after a reboot
    if j.head_seq < host.head or j.head_seq < last_ok:
        return "head %d below a seq already shown/stored (%d/%d): seqs would repeat" % (
            j.head_seq, last_ok, host.head)
    if j.acked_seq < host.ack_floor or j.acked_seq > host.head:
        return "acked %d outside [durable ack %d, host head %d]" % (
            j.acked_seq, host.ack_floor, host.head)
    if j.full != (j.room == 0):
        return "full %s but room %d" % (j.full, j.room)
    nxt = j.tail_seq
    if nxt > j.acked_seq + 1:
        return "tail %d beyond acked %d + 1: unsynced taps lost" % (nxt, j.acked_seq)
    prev = taprecord.GENESIS_MAC if nxt == 1 else host.macs.get(nxt - 1)
    while nxt <= j.head_seq:
        recs = j.records(nxt, 16)
        if not recs:
            return "records end at %d, head %d" % (nxt - 1, j.head_seq)
        for r in recs:
            seq = taprecord.seq_of(r)
            if seq != nxt:
                return "seq %d where %d was due (not strictly increasing/contiguous)" % (seq, nxt)
            if not taprecord.crc_ok(r) or r[0] != taprecord.VERSION:
                return "corrupt record returned at seq %d" % seq
            if prev is not None and not taprecord.mac_ok(r, prev, KEY):
                return "MAC chain broken at seq %d" % seq
            m = host.macs.get(seq)
            if m is not None and m != bytes(r[52:60]):
                return "seq %d changed after the host stored it" % seq
            a = pending.get(seq)
            if a is not None and amount_of(r) != a:
                return "seq %d amount %d, OK was shown for %d" % (seq, amount_of(r), a)
            prev = bytes(r[52:60])
            nxt = seq + 1
    for s in pending:
        if s < j.tail_seq or s > j.head_seq:
            return "tap seq %d (OK shown) is not in the journal" % s
    for s in [s for s in host.macs if s < j.tail_seq - 1]:
        del host.macs[s]  # the host keeps them; the chain check needs only the tail's predecessor
    return None


def run(path, seed, mode, n_ops):
    sectors = 2 + seed % 3
    sync_every = 4 + (seed * 7) % 150  # some seeds fill the ring, some sync all the time
    rng = LCG(seed)  # the tap stream
    crng = LCG(seed + 100003)  # the cut points
    try:
        os.remove(path)
    except OSError:
        pass
    host = Host()
    pending = {}  # seq -> amount: taps whose OK was shown, not yet stored by the host
    last_ok = 0
    ops = cuts = full = 0
    while True:
        gc.collect()
        chip = NORFlash(path, sectors * 4096)
        k = 1 + cuts % 97 if mode == "linear" else 1 + crng.next(40)
        chip.cut_after(k if ops < n_ops else 0, seed * 100000 + cuts)
        try:
            j = Journal(chip, KEY, TID)
            err = check(j, host, pending, last_ok)
            if err:
                chip.close()
                return {"fail": "seed=%d step=%d (%s, %d ops done): %s" % (
                    seed, cuts, mode, ops, err), "seed": seed, "step": cuts}
            if ops >= n_ops:
                break
            while ops < n_ops:
                ops += 1
                op = rng.next(sync_every)
                if op == 0:
                    err = host.sync(j, 1 + rng.next(30), pending)
                    if err:
                        chip.close()
                        return {"fail": "seed=%d step=%d (%s, %d ops done): %s" % (
                            seed, cuts, mode, ops, err), "seed": seed, "step": cuts}
                else:
                    amount = 1 + rng.next(50000)
                    try:
                        seq = tap(j, amount)
                    except JournalFull:
                        full += 1  # refused before any charge: nothing shown, nothing lost
                        continue
                    pending[seq] = amount  # the rider's OK
                    last_ok = seq
        except PowerCut:
            cuts += 1
        chip.close()
    chip.close()
    return {"seed": seed, "cuts": cuts, "ops": ops, "head": j.head_seq, "synced": host.head,
            "full_refusals": full, "sectors": sectors}


def main(argv):
    d, s0, s1, mode, n_ops = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    cuts = fails = 0
    for seed in range(s0, s1):
        try:
            r = run(d + "/reentrant.bin", seed, mode, n_ops)
        except Exception as e:  # the journal raised where it must not (a boot that fails...)
            r = {"fail": "seed=%d (%s): %s: %s" % (seed, mode, type(e).__name__, e), "seed": seed}
        print(json.dumps(r))
        if "fail" in r:
            fails += 1
        else:
            cuts += r["cuts"]
    print(json.dumps({"total": cuts, "fails": fails}))


main(sys.argv[1:])
"""

# ---- flash cost and boot recovery of the journal (MicroPython) ---------------------------------
# micropython journal_cost.py DIR SECTORS -> JSON
COST_VM = r"""
import sys, json, time, os
from norflash import NORFlash
from firmware.journal import Journal

KEY = bytes(range(16))
UID = b"\x04\x11\x22\x33\x44\x55\x66"


def tap(j, n):
    return j.append_tap(time=1700000000 + n, uid=UID, kind=1, amount=25000, balance=100000)


def boot(path, size):
    chip = NORFlash(path, size)
    t0 = time.ticks_us()
    j = Journal(chip, KEY, 7)
    us = time.ticks_diff(time.ticks_us(), t0)
    return j, chip, us


def main(argv):
    d, sectors = argv[0], int(argv[1])
    size = sectors * 4096
    path = d + "/cost.bin"
    try:
        os.remove(path)
    except OSError:
        pass
    j, chip, _ = boot(path, size)
    cap = j.capacity
    out = {"capacity": cap, "recovery": []}
    done = 0
    for pct in (10, 50, 100):
        while j.fill < pct and not j.full:
            tap(j, done)
            done += 1
        chip.close()
        best = None
        for _ in range(3):
            j, chip, us = boot(path, size)
            best = us if best is None else min(best, us)
            if _ < 2:
                chip.close()
        out["recovery"].append({"fill": j.fill, "unsynced": j.unsynced, "us": best,
                                "reads": chip.reads, "bytes_read": chip.bytes_read})
    chip.close()
    # steady state: ack everything as it goes, a long stream wraps the ring several times
    j, chip, _ = boot(path, size)
    j.ack(j.head_seq)
    p0, b0, e0 = chip.programs, chip.bytes_programmed, chip.erases
    n = 5 * cap
    for i in range(n):
        tap(j, i)
        if i % 50 == 49:
            j.ack(j.head_seq)  # a sync now and then: an 8-byte ack entry
    out["taps"] = n
    out["programs"] = chip.programs - p0
    out["bytes_programmed"] = chip.bytes_programmed - b0
    out["erases"] = chip.erases - e0
    chip.close()
    print(json.dumps(out))


main(sys.argv[1:])
"""

# ---- the same tap stream appended to a file on littlefs (MicroPython) --------------------------
# micropython lfs_cost.py DIR BLOCKS TAPS -> JSON
LFS_VM = r"""
import sys, json, vfs, os


class CountingBlockDev:
    # a NOR-like block device in RAM: 4 KB erase blocks, counts erases and bytes programmed
    def __init__(self, blocks):
        self.blocks = blocks
        self.data = bytearray(b"\xff" * (blocks * 4096))
        self.erases = self.programs = self.bytes_programmed = 0

    def readblocks(self, n, buf, off=0):
        a = n * 4096 + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:  # the simple protocol: erase, then write whole blocks
            for i in range(len(buf) // 4096):
                self.ioctl(6, n + i)
            off = 0
        a = n * 4096 + off
        self.data[a:a + len(buf)] = buf
        self.programs += 1
        self.bytes_programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            self.erases += 1
            a = arg * 4096
            self.data[a:a + 4096] = b"\xff" * 4096
            return 0


def main(argv):
    blocks, taps = int(argv[1]), int(argv[2])
    bd = CountingBlockDev(blocks)
    vfs.VfsLfs2.mkfs(bd)
    fs = vfs.VfsLfs2(bd)
    vfs.mount(fs, "/lfs")
    rec = bytes(range(64))
    with open("/lfs/journal.bin", "ab") as f:
        f.write(rec)
        f.flush()
    e0, b0, p0 = bd.erases, bd.bytes_programmed, bd.programs
    with open("/lfs/journal.bin", "ab") as f:
        for i in range(taps):
            f.write(rec)
            f.flush()  # durable before the rider's OK
    print(json.dumps({"taps": taps, "erases": bd.erases - e0, "programs": bd.programs - p0,
                      "bytes_programmed": bd.bytes_programmed - b0,
                      "size": os.stat("/lfs/journal.bin")[6]}))
    vfs.umount("/lfs")


main(sys.argv[1:])
"""


def vm_env(build_dir):
    """Build the .mpy into build_dir (once) and return the MICROPYPATH env for the VM scripts."""
    from mpybuild import cross, manifest

    if not os.path.isdir(os.path.join(build_dir, "lib")):
        cross.build(build_dir, manifest.every_module("card_schema", "firmware"))
        shutil.copy(os.path.join(ROOT, "emulator", "norflash.py"), build_dir)
    return dict(
        os.environ, MICROPYPATH=os.pathsep.join([os.path.join(build_dir, "lib"), build_dir])
    )


def run_vm(build_dir, text, *args, heap="112K", timeout=1800):
    """Run one of the VM scripts above; returns the JSON lines it printed."""
    env = vm_env(build_dir)
    script = os.path.join(build_dir, "bench_journal_vm.py")
    with open(script, "w") as f:
        f.write(text)
    p = subprocess.run(
        ["micropython", "-X", "heapsize=" + heap, script] + [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd=build_dir,
        timeout=timeout,
    )
    if p.returncode:
        raise RuntimeError("micropython failed: %s" % (p.stderr.strip() or p.stdout)[-500:])
    return [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]


def reentrant(build_dir, cuts, workers=None):
    """Run seeds (half linear, half random) until at least `cuts` power cuts; several VM processes
    in parallel. Returns {"cuts", "seeds", "fails": [...], "full_refusals"}."""
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(8, os.cpu_count() or 1)
    vm_env(build_dir)
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
                return run_vm(build_dir, REENTRANT_VM, d, c[0], c[1], c[2], 400, heap="512K")
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
    """Every journal number of `make bench`, as a dict."""
    import time

    with tempfile.TemporaryDirectory() as d:
        cost = run_vm(d, COST_VM, d, sectors)[0]
        lfs = run_vm(d, LFS_VM, d, 64, 2000, heap="2M")[0]
        t0 = time.time()
        rt = reentrant(d, cuts)
        rt["seconds"] = round(time.time() - t0, 1)
    return {"journal": cost, "littlefs": lfs, "reentrant": rt, "sectors": sectors}


def rows(m):
    """The bench table rows (measure, value, note) for the numbers of measure()."""
    c, lfs, rt = m["journal"], m["littlefs"], m["reentrant"]
    taps = c["taps"]
    slots = SLOTS
    out = [
        (
            "journal: erases per tap",
            "%.4f" % (c["erases"] / taps),
            "floor %d/4096 = %.4f; 1/%d (one per %d-slot sector)"
            % (RECORD, RECORD / SECTOR, slots, slots),
        ),
        (
            "journal: bytes programmed per tap",
            "%.1f" % (c["bytes_programmed"] / taps),
            "record %d B (+ sector headers and ack entries)" % RECORD,
        ),
        ("journal: flash programs per tap", "%.3f" % (c["programs"] / taps), ""),
        (
            "journal: taps that fit in 1 MB",
            "%d" % (1048576 // SECTOR * slots),
            "%d sectors x %d slots" % (1048576 // SECTOR, slots),
        ),
        (
            "littlefs (VfsLfs2) file append: erases per flushed tap",
            "%.3f" % (lfs["erases"] / lfs["taps"]),
            "same 64 B records, 4 KB blocks, flush per tap",
        ),
        (
            "littlefs (VfsLfs2) file append: bytes programmed per tap",
            "%.0f" % (lfs["bytes_programmed"] / lfs["taps"]),
            "",
        ),
    ]
    for r in c["recovery"]:
        out.append(
            (
                "journal: boot recovery at %d%% full (%d sectors)" % (r["fill"], m["sectors"]),
                "%.1f ms" % (r["us"] / 1000.0),
                "%d flash reads, %d B (VM time, not ESP32)" % (r["reads"], r["bytes_read"]),
            )
        )
    out.append(
        (
            "journal: power cuts survived (reentrant, linear + random)",
            "%d" % rt["cuts"],
            "%d seeds, %d failures, %.0f s" % (rt["seeds"], len(rt["fails"]), rt["seconds"]),
        )
    )
    out += [("  FAILED (replay this seed)", "", f) for f in rt["fails"][:5]]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tapkit bench-journal")
    ap.add_argument("--cuts", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--replay", type=int, metavar="SEED", help="rerun one reentrant seed, print it"
    )
    ap.add_argument("--mode", choices=("linear", "random"), default="random")
    a = ap.parse_args(argv)
    if a.replay is not None:
        with tempfile.TemporaryDirectory() as d:
            for r in run_vm(d, REENTRANT_VM, d, a.replay, a.replay + 1, a.mode, 400, heap="512K"):
                print(json.dumps(r))
        return 0
    m = measure(a.cuts)
    if a.json:
        print(json.dumps(m, indent=1))
    else:
        for r in rows(m):
            print("%-60s %14s  %s" % r)
    for f in m["reentrant"]["fails"]:
        print("FAIL " + f)
    return 1 if m["reentrant"]["fails"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
