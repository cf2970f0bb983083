"""The issuer signature check (card_schema/issuersig.py) on the MicroPython VM (bench/tap.py).

    micropython issuersig_cost.py FILE N    -> one JSON line
    FILE: three hex lines, key (key id || modulus), signature file, UID (the unix port fails on
    an argument this long)

Imports the module as a terminal does on a card's first tap (its heap counted, card_schema.compat
being loaded already, as on a terminal), then times N
checks and measures what one check allocates (collection off around it)."""

import binascii
import gc
import json
import sys
import time


def main(argv):
    with open(argv[0]) as f:
        key, raw, uid = (binascii.unhexlify(f.readline().strip()) for _ in range(3))
    n = int(argv[1])
    from card_schema import compat  # noqa: F401  (loaded on a terminal already)

    gc.collect()
    a0 = gc.mem_alloc()
    from card_schema import issuersig

    gc.collect()
    module = gc.mem_alloc() - a0
    us = []
    ceiling = -1
    for _ in range(n):
        t0 = time.ticks_us()
        ceiling = issuersig.check(key, uid, raw)
        us.append(time.ticks_diff(time.ticks_us(), t0))
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    issuersig.check(key, uid, raw)
    alloc = gc.mem_alloc() - a0
    gc.enable()
    us.sort()
    print(
        json.dumps(
            {
                "ceiling": ceiling,
                "best_us": us[0],
                "median_us": us[len(us) // 2],
                "worst_us": us[-1],
                "alloc": alloc,
                "module": module,
            }
        )
    )


main(sys.argv[1:])
