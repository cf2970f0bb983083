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
