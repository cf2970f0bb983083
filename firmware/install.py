"""Signed config blobs on the terminal: verify, then make them current atomically.

    kind, version = install.apply(config_key, blob)    # ValueError when forged, damaged or older
    install.versions(info)                              # info["fares_ver"], info["deny_ver"], ...

A blob (card_schema/signed.py) is signed with this terminal's own config key (keys.json "config"). It is
stored whole, signature included, as `<name>.bin` (fares.bin, deny.bin, deny_delta.bin) by
firmware/store.py: written to `<name>.bin.new` first, then renamed over the old file, so a power cut
leaves either the old or the new blob, never half of one. The payload starts at signed.HEADER; what it means is the fare table's and the
deny list's business (their modules read these files). A blob older than the installed one is refused
(a replayed old deny list must not undo a newer one); the same version again is a no-op (retransmission).

The serial INSTALL request carries a blob in chunks (offset u32, total u32, data), appended to
`install.part` (a staging file: store.write, then store.append); the answer is (received u32, kind u8, version u32), kind 0 until the last chunk has been
verified and applied. The Wi-Fi uploader calls `apply` with the blobs of the server's answer.

Imported lazily (serialsync, wifi): it costs heap only on a terminal that is being configured.
"""

import os
import struct

from card_schema import frames, signed, tariff
from card_schema.compat import const
from firmware import store

_INSTALL_FMT = const("<II")  # = card_schema.frames_host.INSTALL_FMT
_ANSWER_FMT = const("<IBI")  # = card_schema.frames_host.INSTALL_ANSWER_FMT
_PART = "install.part"
_MAX_BLOB = const(8192)  # verified in RAM: keep it well inside the free heap


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def installed(kind):
    """Version of the installed blob of this kind (0: none)."""
    try:
        with open(signed.NAMES[kind] + ".bin", "rb") as f:
            head = f.read(signed.HEADER)
        return struct.unpack(signed.FMT, head)[2] if len(head) == signed.HEADER else 0
    except OSError:
        return 0


def versions(info):
    """Put the installed version of every kind into `info` ("fares_ver", "deny_ver"...)."""
    for kind in range(1, len(signed.NAMES)):
        info[signed.NAMES[kind] + "_ver"] = installed(kind)
    return info


def apply(key, blob, info=None):
    """Verify `blob` with the config key and install it; returns (kind, version). ValueError if not."""
    try:
        kind, version, payload = signed.verify(key, blob)
    except ValueError as e:
        raise frames.FrameError("config blob refused: %s" % e)
    names = signed.NAMES
    if not 0 < kind < len(names):
        raise frames.FrameError("unknown config kind %d" % kind)
    have = installed(kind)
    if version < have:
        raise frames.FrameError(
            "config %s %d is older than the installed %d" % (names[kind], version, have)
        )
    if version > have:
        try:
            # A signed table the terminal cannot use must not replace a good one (it would then
            # refuse every paid tap): check the content too before the rename.
            tariff.check(kind, payload)
        except ValueError as e:
            raise frames.FrameError("config %s %d refused: %s" % (names[kind], version, e))
        store.write(names[kind] + ".bin", blob)
    if info is not None:
        info[names[kind] + "_ver"] = version
    return kind, version


def chunk(key, body, info=None):
    """One INSTALL request body; returns the answer body (see the module doc)."""
    off, total = frames.unpack(_INSTALL_FMT, body[:8])
    if total > _MAX_BLOB or not total:
        raise frames.FrameError("config blob of %d bytes (at most %d)" % (total, _MAX_BLOB))
    n = len(body) - 8
    have = 0 if off == 0 else _size(_PART)
    if off > have or off + n > total:
        raise frames.FrameError("chunk at %d but %d bytes received" % (off, have))
    if off == have and (n or not off):
        if off:
            store.append(_PART, memoryview(body)[8:])
        else:
            store.write(_PART, memoryview(body)[8:])  # a new blob: the staging file afresh
        have = off + n
    kind = version = 0
    if have == total:
        with open(_PART, "rb") as f:
            blob = f.read()
        try:
            os.remove(_PART)
        except OSError:
            pass
        kind, version = apply(key, blob, info)
    return struct.pack(_ANSWER_FMT, have, kind, version)
