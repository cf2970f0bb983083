"""Board definitions, installed as package data (a wheel has them too).

One directory per board: board.json (reader chip and bus, pins, UI parts, journal region, default
profile), partitions.csv (ESP32 boards), and optionally manifest.py (the firmware modules it gets, when
they differ from its platform's manifest, boards/manifests/<platform>.py).

    import boards
    boards.names()                             # ["bus-validator", ..., "unix-virtual"]
    boards.spec("taxi-unit")                   # board.json as a dict
    boards.path("taxi-unit", "partitions.csv") # a file of the board, as a filesystem path
    boards.manifest("taxi-unit")               # the manifest naming its firmware modules
    boards.partitions("taxi-unit")             # [Partition(name, type, subtype, offset, size, flags)]

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


class PartitionError(ValueError):
    pass


def _csv_int(text):
    text = text.strip()
    mult = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    return int(text[:-1] if mult > 1 else text, 0) * mult


def partitions(board, name=None):
    """The board's partition table (its partitions.csv, board.json "partitions"), as ESP-IDF's
    gen_esp32part.py reads it: [(name, type, subtype, offset, size, flags)], offsets filled in
    where the CSV leaves them out (apps on 64 KB, data on 4 KB boundaries, from 0x9000). `name`: a
    file path instead of the board's. [] for a board without one."""
    csv = name or path(board, spec(board).get("partitions", "partitions.csv"))
    if not os.path.isfile(csv):
        return []
    out = []
    nxt = 0x9000
    with open(csv) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")] + [""] * 6
            try:
                size = _csv_int(cols[4])
                align = 0x10000 if cols[1] == "app" else 0x1000
                off = _csv_int(cols[3]) if cols[3] else (nxt + align - 1) // align * align
            except (ValueError, IndexError):
                raise PartitionError("%s line %d: bad partition entry %r" % (csv, n, line))
            out.append((cols[0], cols[1], cols[2], off, size, cols[5]))
            nxt = off + size
    return out


def partition(board, label):
    """(offset, size) of the partition labelled `label`, or None."""
    for p in partitions(board):
        if p[0] == label:
            return p[3], p[4]
    return None
