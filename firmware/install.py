"""Signed config blobs on the terminal: received in chunks, verified, then made current atomically.

    have = install.put(off, total, data)               # a chunk into the staging file
    kind, version = install.apply(config_key, info)    # when have == total: verify, install
    install.wifi(term)                                  # the same, for a Wi-Fi download (app.py)
    install.versions(info)                              # info["fares_ver"], info["deny_ver"], ...

A blob (card_schema/signed.py) is signed with this terminal's own config key (keys.json "config"). It
arrives in chunks over either link: the serial INSTALL request (offset u32, total u32, data; `chunk`)
or the Wi-Fi answer (firmware/wifi.py), and is appended to the staging file `install.part`. Nothing of
it is used before the last chunk: then the whole file is verified where it lies (signed.verify_file:
the CMAC streamed through a 512-byte buffer, so a deny list of 100,000 cards (800 KB) needs no more
RAM than a fare table), its content checked (a fare table decodes; a deny list's length matches its
count and its UIDs are strictly sorted, which the binary search needs), and it is renamed to
`<name>.bin` (fares.bin, deny.bin, deny_delta.bin) by firmware/store.py: littlefs commits a rename
atomically, so a power cut leaves the old blob or the new one, never a mixture, and one during the
transfer leaves `install.part` to resume from.

Resuming: the staging file starts with the blob's own head (magic, kind, version, length), so the
terminal knows what it holds (`part()`); the Wi-Fi batch head reports it, and a serial INSTALL with
offset 0xFFFFFFFF and the blob's first 13 bytes asks how much of that blob is already here. A blob
older than the installed one is refused (a replayed old deny list must not undo a newer one); the same
version again is a no-op (retransmission). A blob the filesystem has no room for is refused at its
first chunk (a replacement needs the old and the new one on flash at once).

The serial answer is (received u32, kind u8, version u32), kind 0 until the last chunk has been
verified and applied. Imported lazily (serialsync, wifi): it costs heap only while a terminal is
being configured.
"""

import os
import struct

from card_schema import frames, signed, tariff
from card_schema.compat import const
from firmware import store

_INSTALL_FMT = const("<II")  # = card_schema.frames_host.INSTALL_FMT
_ANSWER_FMT = const("<IBI")  # = card_schema.frames_host.INSTALL_ANSWER_FMT
_QUERY = const(0xFFFFFFFF)  # = card_schema.frames_host.INSTALL_QUERY
_PART = const("install.part")
_FIRMWARE = const(4)  # = card_schema.release.KIND_FIRMWARE
_OTA_BIN = const("ota.bin")  # = firmware.ota._BIN
_REFUSED = const(3)  # = card_schema.release.REFUSED
_SPARE = const(16384)  # flash left free after a blob (littlefs needs blocks to commit a rename)


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


def part():
    """(kind, version, total, received) of the blob in the staging file; zeros when there is none."""
    try:
        with open(_PART, "rb") as f:
            head = f.read(signed.HEADER)
    except OSError:
        return 0, 0, 0, 0
    if len(head) < signed.HEADER:
        return 0, 0, 0, 0
    magic, kind, version, n = struct.unpack(signed.FMT, head)
    if magic != signed.MAGIC:
        return 0, 0, 0, 0
    return kind, version, signed.HEADER + n + 16, _size(_PART)


def put(off, total, data):
    """Put the chunk `data` of a `total`-byte blob at `off` into the staging file; returns the bytes
    received. Offset 0 starts the staging file afresh (after checking the filesystem has room for
    the blob); a chunk that does not continue it changes nothing (the answer says where to go on)."""
    if not off:
        if total < signed.HEADER + 16:
            raise frames.FrameError("config blob of %d bytes" % total)
        try:
            st = os.statvfs("/")
            free = st[0] * st[4] + _size(_PART)  # f_bsize * f_bavail, and the staging file's own
        except (OSError, AttributeError):
            free = total + _SPARE  # a filesystem that cannot say: the writes will tell
        if total + _SPARE > free:
            raise frames.FrameError(
                "config blob of %d bytes: %d bytes of flash free" % (total, free - _SPARE)
            )
        store.write(_PART, data)
        return len(data)
    have = _size(_PART)
    if off == have and off + len(data) <= total and part()[2] == total:
        store.append(_PART, data)
        have += len(data)
    return have


def apply(key, info=None):
    """Verify the complete staging file and install it; returns (kind, version). FrameError (the
    staging file removed) when it is forged, damaged, unusable or older than the installed one."""
    names = signed.NAMES
    try:
        with open(_PART, "rb") as f:
            try:
                kind, version, n = signed.verify_file(key, f, bytearray(512))
            except ValueError as e:
                raise frames.FrameError("config blob refused: %s" % e)
            if kind == _FIRMWARE:  # a firmware release: staged at a safe moment (firmware/ota.py)
                import firmware

                try:
                    firmware.load("otastate").board(f, info)
                finally:
                    firmware.forget("otastate")
                f.close()
                store.rename(_PART, _OTA_BIN)
                if info is not None:
                    o = info.get("ota") or [0, 0, 0, 0, 0, ""]
                    info["ota"] = [2, o[1], version] + o[3:]  # release.STAGING
                return kind, version
            if not 0 < kind < len(names):
                raise frames.FrameError("unknown config kind %d" % kind)
            have = installed(kind)
            if version < have:
                raise frames.FrameError(
                    "config %s %d is older than the installed %d" % (names[kind], version, have)
                )
            # A signed table the terminal cannot use must not replace a good one (it would then
            # refuse every paid tap): check the content too before the rename.
            f.seek(signed.HEADER)
            try:
                tariff.check(kind, f, n)
            except ValueError as e:
                raise frames.FrameError("config %s %d refused: %s" % (names[kind], version, e))
        if version > have:
            store.rename(_PART, names[kind] + ".bin")
    finally:
        try:
            os.remove(_PART)
        except OSError:
            pass
    if info is not None:
        info[names[kind] + "_ver"] = version
    return kind, version


def chunk(key, body, info=None):
    """One INSTALL request body; returns the answer body (see the module doc)."""
    off, total = frames.unpack(_INSTALL_FMT, body[:8])
    data = memoryview(body)[8:]
    kind = version = 0
    if off == _QUERY:  # how much of this blob (its first bytes in `data`) is here?
        k, v, t, have = part()
        if t != total or bytes(data[: signed.HEADER]) != struct.pack(
            signed.FMT, signed.MAGIC, k, v, t - signed.HEADER - 16
        ):
            have = 0
        return struct.pack(_ANSWER_FMT, have, 0, 0)
    if off + len(data) > total:
        raise frames.FrameError("chunk at %d beyond the blob's %d bytes" % (off, total))
    have = put(off, total, data)
    if have < off:
        raise frames.FrameError("chunk at %d but %d bytes received" % (off, have))
    if have == total:
        kind, version = apply(key, info)
    return struct.pack(_ANSWER_FMT, have, kind, version)


def wifi(term):
    """Install the blob a Wi-Fi download completed in install.part (firmware/wifi.py; app.py calls
    this once the uploader is forgotten: its heap is the install's). A firmware release refused
    (forged, damaged, another board's) is reported to the server, which then offers it no more
    (until the next boot's report: a download damaged on the way is tried again then)."""
    up = term.up
    p = up[3]
    up[3] = [0, 0, 0, 0]
    try:
        key = getattr(term, "config_key", None)
        if key is None:
            raise ValueError("no config key")
        apply(key, term.info)
    except ValueError as e:
        term.log_error("wifi config", e)
        if p[0] == _FIRMWARE:
            o = term.info.get("ota") or [0, 0, 0, 0, 0, ""]
            if o[3:5] != [p[1], _REFUSED]:  # otastate.board said why already
                term.info["ota"] = o[0:3] + [p[1], _REFUSED, str(e)]
    if p[0] == _FIRMWARE:
        up[5] = -1  # the end of the download reported (verified: staging; or refused)
