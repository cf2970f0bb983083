"""Firmware releases: build the signed bundle a terminal updates itself from (the library of
`tapkit release build|show|install` and of the Wi-Fi server's firmware chunks).

    payload = build("bus-validator", 7, min_fares=3)      # the board's .mpy set (mpybuild), unsealed
    write(path, payload); payload = read(path)             # a .tkr file: what `publish` stores
    blob = seal(ks, 1001, payload)                         # for terminal 1001 only (its config key)
    info = describe(payload)                               # release, board, files, sizes, hashes

A bundle holds the firmware set a board's manifest names (boards/manifests; what `tapkit flash`
copies into /lib, without boot.py and main.py, which stay), its release number, the firmware version,
the oldest fare table and deny list it runs with, and a SHA-256 per file (card_schema/release.py).
The payload is the same for every terminal of the board; it is sealed per terminal with that
terminal's config key (card_schema.signed, kind release.KIND_FIRMWARE), as fare tables are, so a key
taken out of one terminal cannot make a bundle another one accepts, and a terminal refuses a bundle
that is not for its board (firmware/ota.py). Sealing costs one CMAC of ~150 KB (cryptography: well
under a millisecond), so a server seals per terminal when it sends.

Why CMAC and not a signature: a bytecode Ed25519 verify measured on the VM takes 40 ms of curve
arithmetic and more big-int garbage than the 112 KB heap, and MicroPython has no SHA-512
(docs/architecture.md "Firmware releases" has the figures); the per-terminal CMAC runs in the AES
engine at the cost of reading the file, and is what the fare tables already use.
"""

import os

from card_schema import release, release_host, signed, signed_host
from host_tools import TapkitError, keystore
from host_tools.fleet import flash


class ReleaseError(TapkitError):
    pass


def firmware_set(board):
    """{path below the set's folder: bytes}: the board's .mpy files (flash.firmware_files without
    boot.py, main.py and the board's identity)."""
    out = {}
    for p, data in flash.firmware_files(board).items():
        if p.startswith("/lib/"):
            out[p[len("/lib/") :]] = data
    return out


def build(board, rel, min_fares=0, min_deny=0, files=None, fw=None):
    """The unsealed payload of release `rel` for `board`. `files` replaces or adds files of the set
    (a test's broken module; a hotfix)."""
    spec = flash.board_spec(board)
    fs = firmware_set(board)
    if files:
        fs.update(files)
    try:
        from mpybuild import cross

        return release_host.pack(
            int(rel),
            board,
            spec.get("platform", ""),
            fw or cross.version("firmware"),
            fs,
            min_fares=int(min_fares),
            min_deny=int(min_deny),
        )
    except ValueError as e:
        raise ReleaseError(f"release {rel}: {e}") from None


def write(path, payload):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


def read(path):
    """A .tkr file's payload, checked (every file's hash); ReleaseError when it is not one."""
    try:
        with open(path, "rb") as f:
            payload = f.read()
    except OSError as e:
        raise ReleaseError(f"cannot read release {path}: {e.strerror or e}") from None
    describe(payload, path)
    return payload


def describe(payload, where="release"):
    try:
        r = release_host.unpack(payload)
    except ValueError as e:
        raise ReleaseError(f"{where}: {e}") from None
    files = r.pop("files")
    r["files"] = {p: {"bytes": len(b), "sha256": r["sha256"][p]} for p, b in sorted(files.items())}
    del r["sha256"]
    r["bytes"] = len(payload)
    r["sealed_bytes"] = len(payload) + signed.HEADER + 16
    return r


def seal(ks, terminal_id, payload):
    """The bundle for one terminal: signed with its config key (C-speed CMAC)."""
    if "config" not in ks.get("keys", {}):
        raise ReleaseError("the keystore has no config key: create it with `tapkit keys init`")
    key = keystore.config_key(ks, int(terminal_id))
    rel = release.head(payload)[0]
    return signed_host.seal_fast(key, release.KIND_FIRMWARE, rel, payload)


def install(link, ks, payload, progress=None):
    """Send a release over the USB sync link (INSTALL chunks, resumable): (release, the terminal's
    OTA status). The terminal stages it in its main loop, then boots it on trial."""
    ident = link.identify()
    tid = int(ident["terminal_id"])
    r = describe(payload)
    if ident.get("board") and ident["board"] != r["board"]:
        raise ReleaseError(
            f"terminal {tid} is a {ident['board']}; release {r['release']} is for {r['board']}"
        )
    link.key = keystore.terminal_key(ks, tid)  # INSTALL is a tagged control (it obeys no other)
    kind, version = link.install(seal(ks, tid, payload))
    return version, link.identify().get("ota")


def status_text(o):
    """info["ota"] ([state, running, staged, last release, result, reason]) as words."""
    if not o:
        return "as flashed"
    st, run, staged, last, res, why = (list(o) + [0] * 6)[:6]
    out = "release %s" % (run or "as flashed")
    if st:
        out += ", %s %s" % (release.STATES[st] if st < len(release.STATES) else st, staged)
    if last:
        out += ", last %s %s" % (last, release.RESULTS[res] if res < len(release.RESULTS) else res)
        if why:
            out += " (%s)" % why
    return out
