"""Heap cost of each firmware module on the MicroPython VM, in boot order (run with the built .mpy on
MICROPYPATH): prints "module bytes" per import (after a collect) and the total. The modules a terminal
keeps loaded; not those loaded for a rare job and forgotten (sync, tables, install, diag, wifi).

    python -m bench heap          (the `heap` section of `make bench`; also when trimming RAM)
"""

import gc

MODULES = (
    "card_schema.compat",
    "card_schema.crypto",
    "card_schema.citizen",
    "card_schema.taprecord",
    "card_schema.desfire",
    "card_schema.denylist",
    "firmware.pn532",
    "firmware.uart_socket",
    "firmware.journal",
    "firmware.hal",
    "firmware.hal_unix",
    "norflash",
    "firmware.msg",
    "firmware.msg_en",
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
