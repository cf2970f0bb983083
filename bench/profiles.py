"""Per terminal profile: APDUs per tap and the heap around a tap, on a virtual board (firmware on the
MicroPython unix port, 112 KB heap, emulated PN532 and card).

Each profile runs with a signed table of its own and, for the keypad profiles, the keys a driver,
cashier or donor presses before each tap. Parking alternates tap in and tap out.

data: {profile: {figure: median over the taps}}.
"""

import os
import statistics
import tempfile

from bench import row

SECTION = "profiles"
PROFILES = {
    # profile: (fare table, keys before each tap); "repeat": 0: the bench taps one card again and
    # again within seconds (the repeat window itself: harness/money.py)
    "bus": (
        {
            "fares": {"1": 25000},
            "conc": [100, 50, 30, 0],
            "peak": {"pct": 125, "days": [0, 1, 2, 3, 4, 5, 6], "spans": [[420, 540]]},
            "tz": 12600,
            "transfer": {"window": 5400, "pct": 50},
            "repeat": 0,
        },
        "",
    ),
    "taxi": ({"repeat": 0}, "25000#"),
    "parking": (
        {"grace": 0, "steps": [[60, 20000]], "hourly": 30000, "cap": 200000, "repeat": 0},
        "",
    ),
    "pos": ({"max": 1000000, "repeat": 0}, "25000#"),
    "charity": ({"amounts": [25000, 50000], "repeat": 0}, "1"),
}


def measure(taps=5, heap="112K"):
    from harness.boards import deployed_board, rider_card, tap_stats
    from host_tools import keystore

    out = {}
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "k.keys"))
        for n, (profile, (table, keys)) in enumerate(PROFILES.items()):
            card = rider_card(os.path.join(d, profile + ".card"), ks, 50000 * (taps + 1), holder=0)
            state = os.path.join(d, profile)
            stats = []
            with deployed_board(
                state, ks, 100 + n, heap=heap, line=1, zone=1, profile=profile, fares=table
            ) as vb:
                for _ in range(taps):
                    if keys:
                        vb.press(keys)
                    stats.append(tap_stats(vb.tap(card)))
            out[profile] = {k: round(statistics.median(s[k] for s in stats)) for k in stats[0]}
    return out


def run(opts):
    data = measure(min(opts.taps, 5))
    rows = []
    for profile, m in data.items():
        rows += [
            row(SECTION, "profile %s: APDUs per tap" % profile, m["apdus"]),
            row(
                SECTION,
                "profile %s: peak heap in a tap" % profile,
                m["heap_used"] + m["alloc"],
                "B",
                "in use before + allocated during; %d B free after" % m["heap_free"],
            ),
        ]
    return rows, data
