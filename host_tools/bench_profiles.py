"""`make bench`, per terminal profile: APDUs per tap and the heap around a tap, on a virtual board
(firmware on the MicroPython unix port, 112 KB heap, emulated PN532 and card).

    rows(measure(taps=5))     # [(measure, value, note)] for the bench table

Each profile runs with a signed table of its own and, for the keypad profiles, the keys a driver,
cashier or donor presses before each tap. Parking alternates tap in and tap out.
"""

import os
import re
import statistics
import tempfile
import time

PROFILES = {
    # profile: (fare table, keys before each tap)
    "bus": (
        {
            "fares": {"1": 25000},
            "conc": [100, 50, 30, 0],
            "peak": {"pct": 125, "days": [0, 1, 2, 3, 4, 5, 6], "spans": [[420, 540]]},
            "tz": 12600,
            "transfer": {"window": 5400, "pct": 50},
        },
        "",
    ),
    "taxi": ({}, "25000#"),
    "parking": ({"grace": 0, "steps": [[60, 20000]], "hourly": 30000, "cap": 200000}, ""),
    "pos": ({"max": 1000000}, "25000#"),
    "charity": ({"amounts": [25000, 50000]}, "1"),
}


def measure(taps=5, heap="112K"):
    from emulator.vboard import VirtualBoard
    from host_tools import cardops, keystore, provision

    out = {}
    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "k.keys"))
        for n, (profile, (table, keys)) in enumerate(PROFILES.items()):
            card = os.path.join(d, profile + ".card")
            now = int(time.time())
            cardops.new_emulated_card(
                card,
                ks,
                holder=0,
                card_no=1,
                expiry=now + 86400,
                balance=50000 * (taps + 1),
                now=now,
            )
            state = os.path.join(d, profile)
            fs = os.path.join(state, "fs.img")
            os.makedirs(state)
            provision.deploy_virtual(fs, ks, 100 + n, line=1, zone=1, profile=profile, fares=table)
            rows = []
            with VirtualBoard(state, heap=heap) as vb:
                for _ in range(taps):
                    if keys:
                        vb.press(keys)
                    r = vb.tap(card)
                    m = dict(re.findall(r"(\w+)=(-?\d+)", r["stat"]))
                    rows.append({k: int(v) for k, v in m.items()})
            out[profile] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return out


def rows(data):
    table = []
    for profile, m in data.items():
        table.append(
            (
                "profile %s: APDUs per tap / peak heap in a tap" % profile,
                "%d / %d B" % (m.get("apdus", 0), m.get("heap_used", 0) + m.get("alloc", 0)),
                "in use before + allocated during; %d B free after" % m.get("heap_free", 0),
            )
        )
    return table
