"""littlefs-style reentrant power-cut test of the journal on the MicroPython VM (112K heap is the
firmware's; the driver holding the host's view gets more).

A seeded stream of taps and host syncs (pull, verify the MAC chain, store, ack) runs over the NOR flash
model; power is cut after 1, 2, 3, ... writes since each boot (linear) or after a seeded random number of
writes, the terminal reboots (a new chip object and Journal on the same file) and the stream goes on.
After every reboot: each tap whose append returned (the rider's OK) is in the journal exactly once with
its amount, until the host stored it; seqs run strictly increasing and never repeat; no corrupt record
is returned; the MAC chain verifies from genesis across reclaimed sectors; an ack that was made durable
is not forgotten. The driver is harness/mp/journal_reentrant.py (`make bench` runs >= 10,000 cuts). A failure names its
seed and step; `python -m bench journal --replay SEED --mode MODE` replays it exactly (the stream and the cut points come from the seed alone).
"""

import pytest

from harness import vm


@pytest.mark.parametrize(
    "mode,seeds", [("linear", (1, 9)), ("random", (1, 9)), ("random", (9, 17))]
)
def test_power_cut_reentrant(mp_run, tmp_path, mode, seeds):
    p = mp_run(
        vm.script("journal_reentrant"),
        str(tmp_path),
        seeds[0],
        seeds[1],
        mode,
        400,
        path=[vm.EMULATOR],
        heap="512K",
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = vm.json_lines(p)
    fails = [x["fail"] for x in out if "fail" in x]
    assert not fails, "replay with the seed/step:\n" + "\n".join(fails)
    per_seed = [x for x in out if "cuts" in x]
    assert len(per_seed) == seeds[1] - seeds[0]
    assert all(x["ops"] == 400 and x["cuts"] >= 5 for x in per_seed)
    assert out[-1]["total"] >= 120  # power really was cut that often
    # the stream exercised the ring: some seeds ran it full (taps refused), some wrapped the ring (reclaim)
    assert any(x["full_refusals"] for x in per_seed)
    assert any(x["synced"] > 60 * x["sectors"] for x in per_seed)  # the ring wrapped
