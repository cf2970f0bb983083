"""Board definitions, installed as package data (a wheel has them too).

One directory per board: board.json (reader chip and bus, pins, UI parts, journal region, default
profile), partitions.csv (ESP32 boards), and optionally manifest.py (the firmware modules it gets, when
they differ from its platform's manifest, boards/manifests/<platform>.py).

    import boards
    boards.names()                             # ["bus-validator", ..., "unix-virtual"]
    boards.spec("taxi-unit")                   # board.json as a dict
    boards.path("taxi-unit", "partitions.csv") # a file of the board, as a filesystem path
    boards.manifest("taxi-unit")               # the manifest naming its firmware modules

Plain data: imports nothing of the project (firmware reads board.json from the board's own "/").
"""

import importlib.resources
import json
import os


class UnknownBoard(LookupError):
    def __str__(self):
        return "unknown board %r (known: %s)" % (self.args[0], ", ".join(names()))


def _root():
    # an installed or checked-out package directory (not a zip: mpy-cross and littlefs read files)
    return str(importlib.resources.files(__name__))


def names():
    root = _root()
    return sorted(
        d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "board.json"))
    )


def path(board, name="board.json"):
    """The filesystem path of a file of `board` (UnknownBoard when there is no such board)."""
    d = os.path.join(_root(), board)
    if "/" in board or board.startswith(".") or not os.path.isfile(os.path.join(d, "board.json")):
        raise UnknownBoard(board)
    return os.path.join(d, name)


def spec(board):
    """board.json of `board` as a dict."""
    with open(path(board)) as f:
        return json.load(f)


def manifest(board):
    """The firmware manifest of `board`: its own manifest.py, else its platform's."""
    own = path(board, "manifest.py")
    if os.path.isfile(own):
        return own
    return platform_manifest(spec(board)["platform"])


def platform_manifest(platform):
    return os.path.join(_root(), "manifests", "%s.py" % platform)
