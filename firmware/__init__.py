"""tapkit terminal firmware (MicroPython: ESP32, and the unix port as the virtual board)."""

VERSION = "0.1.0"


def forget(*args):
    """Drop the modules firmware.<name> from the module cache, so the GC takes their code back: for
    what the terminal needs rarely (install, diag, store), imported where used and forgotten after.

        from firmware import store
        try:
            store.save("clock.json", d)
        finally:
            firmware.forget("store")
    """
    import sys

    for n in args:
        sys.modules.pop("firmware." + n, None)
        globals().pop(n, None)


def load(name):
    """Import firmware.<name> for a rare job (sync, diag, install) and return it. A long-running
    board's heap is in pieces: collect first, so the module's blocks find the most room, and after
    a MemoryError (part of it loaded) forget it, collect and try once more (and forget it again when
    that fails too)."""
    import gc

    gc.collect()
    try:
        return _imp(name)
    except MemoryError:
        forget(name)
        gc.collect()
    try:
        return _imp(name)
    except MemoryError:
        forget(name)  # a half-loaded module must not stay in the heap
        raise


def _imp(name):
    import sys

    __import__("firmware." + name)
    return sys.modules["firmware." + name]


def warm():
    """Load the rare modules (sync, diag, install, the issuer signature check) once and forget
    them, first thing at boot (main.py). Their names (qstrs) stay interned for good, and the VM's
    qstr pool grows in doubling blocks (640 entries: ~7 KB in one piece on the 64-bit VM, ~4.5 KB on an ESP32): grown now, in
    an empty heap; later, in a heap a day of taps has cut up, it would fail ("memory allocation
    failed, allocating 640 bytes" counts entries) and the terminal could no longer sync."""
    import gc
    import sys

    import card_schema

    for m in ("serialsync", "diag", "install"):
        load(m)
        forget(m)
    sys.modules.pop("card_schema.frames", None)  # the sync's: loaded again with it
    card_schema.__dict__.pop("frames", None)
    import card_schema.issuersig  # noqa: F401  (a card's first tap here: firmware/app.py _ceiling)

    sys.modules.pop("card_schema.issuersig", None)
    card_schema.__dict__.pop("issuersig", None)
    gc.collect()
