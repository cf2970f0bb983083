"""Bus tap (flat fare) on a virtual board: the firmware on the MicroPython unix port (112 KB heap),
the emulated PN532 and DESFire card (harness/boards.py).

- APDUs per tap: counted by the firmware's DESFire client and, independently, by the PN532 emulator;
- bytes over the air per tap and the modelled air time at 106 kbit/s (~85 us per byte on ISO 14443-4
  frames, plus a per-command card processing allowance stated in the table);
- heap allocated during one tap (gc.mem_alloc() across the tap, after a collect) and the heap in use
  around it;
- the VM's wall time per tap on this machine (not an ESP32 number: shown for regressions only);
- a card's first tap at the terminal (the issuer signature read, 5 frames, and checked; later taps
  use the terminal's RAM cache): its APDUs, modelled time and heap, and the RSA-2048 check itself on
  the VM (harness/mp/issuersig_cost.py: time, heap of one check, heap of the module while loaded).

data: {"taps": [per-tap figures], "median": {figure: median, rounded}, "first": {the card's first
tap}, "verify": {"best_us", "median_us", "worst_us", "alloc", "module", "ceiling"}}.
"""

import os
import statistics
import tempfile
import time

from bench import row

SECTION = "tap"
US_PER_BYTE = 85  # 106 kbit/s: 8 data bits + parity + framing, about 85 us per byte
CARD_MS_PER_CMD = 3.0  # allowance for the card's processing per command (EV1 datasheet order)
CARD_MS_COMMIT = 10.0  # CommitTransaction writes EEPROM (tearing-proof): a longer allowance
# the bus profile with a signed fare table (every rule on, no repeat window: the bench taps one card
# again and again) and a 500-entry deny list the card is not on
FARES = {
    "fares": {"1": 25000},
    "conc": [100, 50, 30, 0],
    "peak": {"pct": 125, "days": [0, 1, 2, 3, 4, 5, 6], "spans": [[420, 540]]},
    "tz": 12600,
    "transfer": {"window": 5400, "pct": 50},
    "repeat": 0,
}


def measure(taps=10, heap="112K"):
    """Per-tap figures of `taps` bus taps: the firmware's STAT line + the PN532 emulator's counts."""
    from harness.boards import deployed_board, rider_card, tap_stats
    from host_tools import keystore

    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "k.keys"))
        card = rider_card(os.path.join(d, "c.card"), ks, 25000 * (taps + 1), valid=86400 * 365)
        deny = {bytes([4, i // 256, i % 256, 1, 2, 3, 4]): i % 2 for i in range(500)}
        out = []
        state = os.path.join(d, "vb")
        with deployed_board(
            state, ks, 1, heap=heap, fare=25000, line=1, fares=FARES, deny=deny
        ) as vb:
            for _ in range(taps):
                f0 = vb.chip.stats()
                r = vb.tap(card)
                f1 = vb.chip.stats()
                out.append(tap_stats(r) | {k: f1[k] - f0[k] for k in ("air_bytes", "exchanges")})
    return out


def verify_cost(n=200):
    """The issuer signature check (RSA-2048) on the VM: a fresh keystore signs a card's file."""
    from card_schema import issuersig_host
    from harness import vm
    from host_tools import keystore

    with tempfile.TemporaryDirectory() as d:
        ks = keystore.init(os.path.join(d, "k.keys"))
        uid = bytes.fromhex("04a1b2c3d4e5f6")
        raw = issuersig_host.pack(
            uid, 70000, keystore.issuer_key_id(ks), lambda g: keystore.issuer_sign(ks, g)
        )
        f = os.path.join(d, "sig.txt")
        with open(f, "w") as out:
            out.write("\n".join(x.hex() for x in (keystore.issuer_public(ks), raw, uid)) + "\n")
        p = vm.run(vm.build(os.path.join(d, "b")), vm.script("issuersig_cost"), f, n, check=True)
        return vm.json_lines(p)[0]


def _modelled(t):
    """(air ms, air + card ms) of one tap's figures."""
    air_ms = t["air_bytes"] * US_PER_BYTE / 1000.0
    return air_ms, air_ms + max(t["apdus"] - 1, 0) * CARD_MS_PER_CMD + CARD_MS_COMMIT


def run(opts):
    t0 = time.perf_counter()
    taps = measure(max(opts.taps, 2))
    first, taps = taps[0], taps[1:]  # the first: the issuer signature read and checked
    med = {k: round(statistics.median(t[k] for t in taps)) for k in taps[0]}
    apdus = med["apdus"]
    air_ms, total_ms = _modelled(med)
    card_ms = total_ms - air_ms
    v = verify_cost()
    first_air, first_ms = _modelled(first)
    rows = [
        row(SECTION, "bus tap: APDUs per tap (firmware count)", apdus),
        row(SECTION, "bus tap: InDataExchange per tap (PN532 emulator count)", med["exchanges"]),
        row(SECTION, "bus tap: bytes over the air per tap", med["air_bytes"], "B"),
        row(
            SECTION,
            "bus tap: modelled air time at 106 kbit/s",
            round(air_ms, 1),
            "ms",
            "%d us/byte" % US_PER_BYTE,
        ),
        row(
            SECTION,
            "bus tap: modelled air + card time",
            round(air_ms + card_ms, 1),
            "ms",
            "card %.0f ms/cmd, commit %.0f ms; target < 150 ms"
            % (CARD_MS_PER_CMD, CARD_MS_COMMIT),
        ),
        row(
            SECTION,
            "bus tap: heap allocated during one tap (VM, 112K heap)",
            med["alloc"],
            "B",
            "after gc.collect()",
        ),
        row(SECTION, "bus tap: heap in use before the tap", med["heap_used"], "B"),
        row(SECTION, "bus tap: heap free after the tap", med["heap_free"], "B"),
        row(
            SECTION,
            "bus tap: VM wall time per tap on this machine",
            med["ms"],
            "ms",
            "not an ESP32 figure; median of %d taps (%.0f s)"
            % (len(taps), time.perf_counter() - t0),
        ),
        row(
            SECTION,
            "card's first tap here: APDUs (issuer signature read)",
            first["apdus"],
            "",
            "+%d over a cached card" % (first["apdus"] - apdus),
        ),
        row(
            SECTION,
            "card's first tap here: modelled air + card time",
            round(first_ms, 1),
            "ms",
            "+%.1f ms (%d more bytes over the air)"
            % (first_ms - total_ms, first["air_bytes"] - med["air_bytes"]),
        ),
        row(
            SECTION,
            "card's first tap here: peak heap over a cached tap's",
            (first["peak"] - first["heap_used"]) - (med["peak"] - med["heap_used"]),
            "B",
            "its STAT peak above the heap in use (VM, 112K heap); module loaded and forgotten",
        ),
        row(
            SECTION,
            "issuer signature check (RSA-2048, e=65537) on the VM",
            round(v["best_us"] / 1000.0, 2),
            "ms",
            "best of 200; median %.2f ms, worst %.1f ms on this machine"
            % (v["median_us"] / 1000.0, v["worst_us"] / 1000.0),
        ),
        row(SECTION, "issuer signature check: heap allocated by one check", v["alloc"], "B"),
        row(SECTION, "issuer signature module: heap while loaded", v["module"], "B"),
    ]
    return rows, {"taps": taps, "median": med, "first": first, "verify": v}
