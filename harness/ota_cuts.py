"""The firmware update's power-cut campaign (issue 17): seeds written here, run on the VM by
harness/mp/ota_cuts.py (its docstring says what is cut and checked).

    r = campaign(work, cuts=1000)        # {"cuts", "fails": ["SEED:k", ...], "seeds", "writes", ...}
    replay("7:118")                      # one failure again: {"fail": why} or {} (it passes)

A seed picks the sets (4..9 files of 200..3,000 bytes named as the firmware's, the new set changing,
adding and dropping some), where the old set runs (lib as flashed, or lib_b after an update), the
INSTALL chunk size, and whether the new set's self-test fails (every fourth: its reader driver is
broken, so the update must roll back by itself). Linear runs cut at every flash write of the whole
update (staging chunks, ota.bin, the staging's files and states, the switch, boot.py's trial mark,
the confirm, the rollback); random ones at seeded points. Everything needed to replay a failure is
its id: the seed and the write the power was cut at.
"""

import hashlib
import json
import os
import random
import shutil
import tempfile

KEY = bytes(range(0x40, 0x50))  # the terminal's config key (the bundle is sealed with it)
NAMES = (
    "firmware/__init__.mpy",
    "firmware/app.mpy",
    "firmware/journal.mpy",
    "firmware/pn532.mpy",
    "firmware/ota.mpy",
    "firmware/wifi.mpy",
    "card_schema/signed.mpy",
    "card_schema/frames.mpy",
    "card_schema/taprecord.mpy",
    "card_schema/tariff.mpy",
)


def seed_files(seed, out):
    """Write seed `seed`'s spec.json, old/ set, bundle.bin and boot.py into `out`."""
    from card_schema import release, release_host, signed_host
    from mpybuild import cross

    rng = random.Random(seed)
    names = rng.sample(NAMES, rng.randint(4, 9))
    old = {p: rng.randbytes(rng.randint(200, 3000)) for p in names}
    new = {}
    for p in names:
        r = rng.random()
        if r < 0.15:
            continue  # a file the new set drops
        new[p] = old[p] if r < 0.35 else rng.randbytes(rng.randint(200, 3000))
    for p in NAMES:
        if p not in old and rng.random() < 0.2:
            new[p] = rng.randbytes(rng.randint(200, 3000))  # one it adds
    new["firmware/__init__.mpy"] = rng.randbytes(300)  # its VERSION: the sets always differ
    start_b = seed % 3 == 2
    payload = release_host.pack(2, "unix-virtual", "unix", "0.2.0", new)
    blob = signed_host.seal_fast(KEY, release.KIND_FIRMWARE, 2, payload)
    for p, data in old.items():
        os.makedirs(os.path.dirname(os.path.join(out, "old", p)), exist_ok=True)
        with open(os.path.join(out, "old", p), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "bundle.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, "boot.py"), "w") as f:
        f.write(cross.BOOT_PY)

    def digests(files):
        return {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}

    spec = {
        "key": KEY.hex(),
        "old": digests(old),
        "new": digests(new),
        "old_dir": "lib_b" if start_b else "lib",
        "new_dir": "lib" if start_b else "lib_b",
        "start": ["lib_b", 1, 0, 0, 0, 0, [1, 1, ""]] if start_b else None,
        "chunk": rng.choice((97, 161, 240)),
        "bad": seed % 4 == 3,
        "bundle": len(blob),
    }
    with open(os.path.join(out, "spec.json"), "w") as f:
        json.dump(spec, f)
    return spec


def run_seed(build_dir, seed, mode, a, b, timeout=1800):
    """One VM run: its result line ({"seed", "writes", "cuts", "fails", "outcomes"}) and the
    failure lines."""
    from harness import vm

    # the flash images in memory where there is a tmpfs: the NOR model flushes every program
    d = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else build_dir)
    try:
        seed_files(seed, d)
        p = vm.run(
            build_dir,
            vm.script("ota_cuts"),
            d,
            seed,
            mode,
            a,
            b,
            path=[vm.EMULATOR],
            heap="2M",
            timeout=timeout,
        )
        lines = vm.json_lines(p)
        res = [x for x in lines if "seed" in x]
        fails = [x for x in lines if "fail" in x]
        if not res:
            out = (p.stdout + p.stderr).strip().splitlines() or ["no output"]
            fails.append(
                {
                    "fail": "VM (exit %d): %s" % (p.returncode, out[-1]),
                    "id": "%d:0" % seed,
                }
            )
            res = [{"seed": seed, "writes": 0, "cuts": 0, "fails": [], "outcomes": {}}]
        r = res[0]
        r["fails"] = sorted({f["id"] for f in fails})
        r["why"] = {f["id"]: f["fail"] for f in fails}
        return r
    finally:
        shutil.rmtree(d, ignore_errors=True)


def campaign(build_dir, cuts=1000, workers=2, linear=True, seed0=2):
    """Seeds from `seed0` (2: an updated terminal's lib_b, then 3: a broken self-test) until at least
    `cuts` cuts: linear (every write of the update) or random (30 seeded
    points a seed). {"cuts", "seeds", "fails", "why", "writes": [per seed], "outcomes"}."""
    from concurrent.futures import ThreadPoolExecutor

    from harness import vm

    vm.build(build_dir)
    total = {"cuts": 0, "seeds": 0, "fails": [], "why": {}, "writes": [], "outcomes": {}}
    seed = seed0
    while total["cuts"] < cuts:
        before = total["cuts"]
        batch = list(range(seed, seed + workers))
        seed += workers
        args = [(s, "linear", 1, 1 << 30) if linear else (s, "random", s, 30) for s in batch]
        with ThreadPoolExecutor(workers) as ex:
            for r in ex.map(lambda x: run_seed(build_dir, *x), args):
                total["cuts"] += r["cuts"]
                total["seeds"] += 1
                total["fails"] += r["fails"]
                total["why"].update(r["why"])
                total["writes"].append(r["writes"])
                for k, v in r["outcomes"].items():
                    total["outcomes"][k] = total["outcomes"].get(k, 0) + v
        if total["cuts"] == before:
            break  # the VM runs failed (their lines are in fails): more seeds would too
    return total


def replay(build_dir, fid):
    """One failure id ("SEED:k") again: the VM's failure line(s), [] when it passes now."""
    from harness import vm

    vm.build(build_dir)
    seed, k = (int(x) for x in fid.split(":"))
    r = run_seed(build_dir, seed, "linear", k, k + 1)
    return [{"id": i, "fail": w} for i, w in r["why"].items()]
