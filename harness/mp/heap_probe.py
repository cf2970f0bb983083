"""Heap cost of each firmware module on the MicroPython VM, in boot order (run with the built .mpy on
MICROPYPATH): prints "module bytes" per import (after a collect) and the total.

    python -m bench heap          (the `heap` section of `make bench`; also when trimming RAM)
"""

import gc

MODULES = (
    "card_schema.compat",
    "card_schema.crypto",
    "card_schema.citizen",
    "card_schema.taprecord",
    "card_schema.desfire",
    "card_schema.frames",
    "firmware.pn532",
    "firmware.uart_socket",
    "firmware.journal",
    "firmware.serialsync",
    "firmware.hal",
    "firmware.hal_unix",
    "norflash",
    "firmware.msg",
    "firmware.msg_en",
    "card_schema.signed",
    "card_schema.tariff",
    "firmware.app",
    "firmware.profile_bus",
)
gc.collect()
base = gc.mem_alloc()
prev = base
for m in MODULES:
    __import__(m)
    gc.collect()
    now = gc.mem_alloc()
    print(m, now - prev)
    prev = now
print("total", prev - base)
