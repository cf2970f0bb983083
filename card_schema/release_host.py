"""Firmware releases, host side: pack a bundle's payload, read one back (card_schema/release.py has
the layout; the terminal reads it with release.head/entry).

    payload = pack(7, "bus-validator", "esp32", "0.2.0", {"firmware/app.mpy": b"..."}, min_fares=3)
    r = unpack(payload)      # {"release": 7, "board": ..., "files": {path: bytes}, ...}
"""

import hashlib
import struct

from card_schema.release import ENTRY, ENTRY_FMT, HEAD, HEAD_FMT, MAGIC, entry, head

PATH_MAX = 32


def pack(rel, board, platform, fw, files, min_fares=0, min_deny=0):
    """The payload of a release: head, one entry per file (sorted by path), the files."""
    if not 0 < rel < 1 << 32:
        raise ValueError("release number %r: 1 .. 2^32-1" % (rel,))
    for name, value, n in (("board", board, 16), ("platform", platform, 8), ("fw", fw, 16)):
        if len(value.encode()) > n:
            raise ValueError(f"{name} {value!r} is longer than {n} bytes")
    paths = sorted(files)
    out = [
        struct.pack(
            HEAD_FMT,
            MAGIC,
            rel,
            board.encode(),
            platform.encode(),
            fw.encode(),
            min_fares,
            min_deny,
            len(paths),
        )
    ]
    for p in paths:
        if len(p.encode()) > PATH_MAX:
            raise ValueError(f"file path {p!r} is longer than {PATH_MAX} bytes")
        data = bytes(files[p])
        out.append(struct.pack(ENTRY_FMT, p.encode(), len(data), hashlib.sha256(data).digest()))
    out += [bytes(files[p]) for p in paths]
    return b"".join(out)


def unpack(payload):
    """The release in `payload` as a dict; ValueError when it is damaged (a file's hash)."""
    rel, board, platform, fw, min_fares, min_deny, count = head(payload)
    off = HEAD + count * ENTRY
    files = {}
    hashes = {}
    for i in range(count):
        path, size, sha = entry(payload, HEAD + i * ENTRY)
        data = bytes(payload[off : off + size])
        if len(data) != size or hashlib.sha256(data).digest() != sha:
            raise ValueError(f"release file {path} does not match its hash")
        files[path] = data
        hashes[path] = sha.hex()
        off += size
    if off != len(payload):
        raise ValueError("release payload has %d bytes after its files" % (len(payload) - off))
    return {
        "release": rel,
        "board": board,
        "platform": platform,
        "fw": fw,
        "min_fares": min_fares,
        "min_deny": min_deny,
        "files": files,
        "sha256": hashes,
    }


def ota_body(journal_key, terminal, board, status, wanted, part_off, iv, mac=None):
    """A TKO1 request (card_schema/release.py): `status` = info["ota"] list of the terminal."""
    from card_schema.crypto import cmac
    from card_schema.release import OTA_FMT, OTA_MACED, OTA_MAGIC

    st, run, _, last, res = (list(status or ()) + [0] * 5)[:5]
    head = struct.pack(
        OTA_FMT, OTA_MAGIC, terminal, board.encode(), run, st, 0, last, res, wanted, part_off,
        bytes(iv), b"",
    )[:OTA_MACED]  # fmt: skip
    return head + (mac or cmac)(journal_key, head)[:8]


class OTARequest:
    def __init__(self, terminal, board, running, state, last, result, wanted, part_off, iv, mac):
        self.terminal, self.board, self.running, self.state = terminal, board, running, state
        self.last, self.result, self.wanted, self.part_off = last, result, wanted, part_off
        self.iv, self.mac = iv, mac


def parse_ota(body):
    """The TKO1 head (MAC not checked: the server needs the terminal's key first); ValueError."""
    from card_schema.release import OTA_FMT, OTA_HEAD, OTA_MAGIC

    if len(body) != OTA_HEAD:
        raise ValueError("OTA request of %d bytes (%d expected)" % (len(body), OTA_HEAD))
    magic, tid, board, run, st, _, last, res, wanted, off, iv, mac = struct.unpack(OTA_FMT, body)
    if magic != OTA_MAGIC:
        raise ValueError("not an OTA request (TKO1)")
    return OTARequest(tid, board.rstrip(b"\0").decode(), run, st, last, res, wanted, off, iv, mac)
