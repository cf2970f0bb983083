"""The journal's flash cost and boot recovery on the MicroPython VM (bench/journal.py).

    micropython journal_cost.py DIR SECTORS         -> one JSON line

Needs emulator/ (norflash) on MICROPYPATH.
"""

import sys
import json
import time
import os
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
        out["recovery"].append(
            {
                "fill": j.fill,
                "unsynced": j.unsynced,
                "us": best,
                "reads": chip.reads,
                "bytes_read": chip.bytes_read,
            }
        )
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
