"""Tearing campaign on the firmware's own tap (harness/tearing.py): thousands of seeded field drops
across the fare debit on a virtual bus board, each followed by the rider's tap again.

data: the campaign's tally {drops, committed, not_committed, taps, before, after, inside, seed,
seconds}; a broken invariant is a failure line that replays it (seed and step).
"""

import time

from bench import row

SECTION = "tearing"


def run(opts):
    from harness.tearing import TearingFailure, tearing_campaign

    t0 = time.perf_counter()
    try:
        tally = tearing_campaign(opts.seed, opts.drops)
        fails = []
    except TearingFailure as e:
        tally, fails = {"drops": 0, "committed": 0, "not_committed": 0}, [str(e)]
    tally["seed"] = opts.seed
    tally["seconds"] = round(time.perf_counter() - t0, 1)
    tally["fails"] = fails
    rows = [
        row(
            SECTION,
            "tearing: field drops across the firmware's debit transaction",
            tally["drops"],
            "",
            "seed %d; before %d / after %d / inside %d"
            % (opts.seed, tally.get("before", 0), tally.get("after", 0), tally.get("inside", 0)),
        ),
        row(SECTION, "tearing: committed whole", tally["committed"]),
        row(SECTION, "tearing: not committed at all", tally["not_committed"]),
        row(
            SECTION,
            "tearing: half committed",
            None if fails else 0,
            "",
            "the rider's next tap charged exactly once after every drop (%.0f s)"
            % tally["seconds"],
        ),
    ]
    rows += [
        row(SECTION, "  FAILED (replay: python -m bench tearing)", None, "", f) for f in fails
    ]
    return rows, tally
