"""mpybuild: compile MicroPython modules with mpy-cross and put together what a board's filesystem gets.

    from mpybuild import cross, manifest
    entries = manifest.for_board("esp32-devkitc")              # what the board gets (manifest.py)
    hashes = cross.build("/tmp/fw", entries, arch="xtensawin")  # {device path: sha256}

Shared by `tapkit flash` (host_tools/fleet/flash.py), the virtual board (emulator/vboard.py) and the
tests. It imports nothing of host_tools (the emulator uses it), and finds its sources through the
installed packages (importlib), so it works the same from a source checkout and from a wheel.

Output layout (what goes onto the board's filesystem, below its "/"):

    lib/card_schema/*.mpy, lib/firmware/*.mpy     what the board's manifest names
    main.py                                       tiny: starts firmware.app
    boot.py

The hashes let flash verify and skip up-to-date files.
"""

import importlib.util


class BuildError(Exception):
    """mpy-cross failed, or a manifest is wrong: one line for the user."""


def package_dir(name):
    """The directory of an installed package (found, not imported: the host never runs firmware)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("package %s is not installed" % name)
    return list(spec.submodule_search_locations)[0]
