"""Flashing: put the firmware, the board file and a terminal's identity onto readers over USB (the
library of `tapkit flash`; esp32.py writes MicroPython itself onto blank boards).

    report = flash_board("/dev/ttyUSB0", "esp32-devkitc", ks, terminal_id=1001, progress=say)
    reports = flash_many(ports.find_ports(), "esp32-devkitc", ks, first_id=1001)

One board (flash_board):
  1. ask the running firmware who it is (IDENTIFY over the sync protocol: id, unsynced taps);
  2. interrupt it and enter the raw REPL; read its identity file when the firmware did not answer;
     refuse to change the identity of a terminal that holds unsynced taps (or whose journal cannot be
     read) unless forced;
  3. build the .mpy of the modules the board's manifest names (mpybuild, boards/manifests), add the
     board file, the terminal's config.json and keys.json (provision.terminal_files: keys for this
     terminal only);
  4. hash every file on the board (hashlib, on the board) and copy only what differs, each file
     written under a temporary name and renamed; read the hashes back to verify; write
     manifest.json (file hashes, versions) last;
  5. soft-reboot it and wait for a healthy IDENTIFY; report terminal id and versions.
The journal is never touched (it is a flash partition, not a file the tool writes), so flashing keeps
every unsynced tap. Re-flashing an up-to-date board copies nothing.

flash_many: several boards in parallel (`--all`: every port ports.find_ports sees); one failing
board does not stop the others. `progress(port)` gives each board's `say(msg, done, total)`.
"""

import concurrent.futures
import hashlib
import json
import tempfile
import threading
import time

import boards
from card_schema import frames
from host_tools import TapkitError
from host_tools.fleet import provision
from host_tools.fleet.link import LinkError, SerialLink, TerminalError
from host_tools.fleet.rawrepl import RawREPL
from mpybuild import BuildError, cross, manifest

FILES_OF_RECORD = ("config.json", "keys.json")  # the terminal's identity: changes are guarded


_BUILD_LOCK = threading.Lock()


class FlashError(TapkitError):
    pass


def board_spec(board):
    try:
        return boards.spec(board)
    except boards.UnknownBoard as e:
        raise FlashError(str(e)) from None


def local_files(board, ks, terminal_id, config_over):
    """{device path: bytes} of everything a terminal gets, and the manifest's versions."""
    files = dict(firmware_files(board))
    with open(boards.path(board), "rb") as f:
        files["/board.json"] = f.read()
    for name, text in provision.terminal_files(ks, terminal_id, **config_over).items():
        files["/" + name] = text.encode()
    cfg = json.loads(files["/config.json"])
    info = {
        "fw": cross.version("firmware"),
        "board": board,
        "terminal_id": int(terminal_id),
        "config_ver": cfg.get("config_ver", 0),
    }
    return files, info


_BUILT = {}  # board -> {device path: bytes}: one build per process (--all flashes many boards)


def firmware_files(board):
    """{device path: bytes} of the firmware `board` gets: the modules its manifest names, compiled
    for its platform (mpybuild), with main.py and boot.py."""
    with _BUILD_LOCK:
        if board not in _BUILT:
            spec = board_spec(board)
            try:
                entries = manifest.for_board(board)
                with tempfile.TemporaryDirectory() as out:
                    arch = cross.ARCH.get(spec.get("platform"))
                    _BUILT[board] = cross.read_built(out, cross.build(out, entries, arch))
            except BuildError as e:
                raise FlashError(str(e)) from None
        return _BUILT[board]


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _identify(port, timeout=1.0):
    """IDENTIFY from a running firmware, or None when nothing answers the sync protocol."""
    try:
        with SerialLink(port, timeout=timeout, retries=1) as link:
            return link.identify()
    except LinkError as e:
        msg = str(e)
        if "busy" in msg or "permission" in msg or "no serial port" in msg:
            raise FlashError(msg) from None
        return None


def unlock(port, ks, ident=None, seconds=600):
    """Open a running terminal's locked USB console for `seconds` (an authenticated MAINT with its
    key from the keystore), so the raw REPL, mpremote and `tapkit flash` reach it; the firmware
    locks it again after that. Returns the seconds, or None when no tapkit firmware answers."""
    from host_tools import keystore

    try:
        with SerialLink(port, timeout=1.0, retries=2) as link:
            info = ident or link.identify()
            link.key = keystore.terminal_key(ks, int(info["terminal_id"]))
            link.identify()  # its nonce
            return link.maintain(seconds)
    except TerminalError as e:
        if e.code == frames.ERR_UNKNOWN_TYPE:
            return None  # firmware from before the lock: its console is open anyway
        raise FlashError("cannot unlock the console on %s: %s" % (port, e)) from None
    except LinkError as e:
        raise FlashError("cannot unlock the console on %s: %s" % (port, e)) from None


def _wait_healthy(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _identify(port, timeout=1.0)
        if info:
            return info
    raise FlashError(
        "the board on %s did not come back after the reboot (no IDENTIFY in %.0f s): "
        "connect with mpremote to see why" % (port, timeout)
    )


def flash_board(
    port, board, ks, terminal_id=None, config_over=None, force=False, progress=None, reboot=True
):
    """Flash one board; returns the report dict. Raises FlashError/DeviceError (one line)."""
    say = progress or (lambda msg, done=None, total=None: None)
    say("identify")
    ident = _identify(port)
    if ident:  # the running firmware knows its journal: decide before interrupting it
        _guard(port, int(ident["terminal_id"]), terminal_id, ident.get("unsynced", 0), force)
        unlock(port, ks, ident)  # a locked console takes no Ctrl-C until then
    with RawREPL(port) as dev:
        say("raw REPL")
        if ident:
            current = int(ident["terminal_id"])
        else:
            current = None
            raw = dev.read("/config.json")
            if raw:
                try:
                    current = int(json.loads(raw)["terminal_id"])
                except (ValueError, KeyError, TypeError):
                    current = None
            _guard(port, current, terminal_id, None, force)
        if terminal_id is None:
            if current is None:
                raise FlashError("the board on %s has no identity: give --terminal-id" % port)
            terminal_id = current
        files, info = local_files(board, ks, terminal_id, config_over or {})
        say("hash")
        on_board = dev.hashes(sorted(files))
        todo = [p for p in sorted(files) if on_board.get(p) != _sha(files[p])]
        try:
            for i, path in enumerate(todo):
                say("copy " + path, i, len(todo))
                dev.put(path, files[path])
        except TapkitError as e:  # each file is whole (renamed into place), the set may be mixed
            raise FlashError(
                "%s (%d of %d files written; the board stays in its REPL: flash it again)"
                % (e, i, len(todo))
            ) from None
        if todo:
            say("verify")
            back = dev.hashes(todo)
            bad = [p for p in todo if back.get(p) != _sha(files[p])]
            if bad:
                raise FlashError(
                    "verify failed on %s: %s differ after writing (flash worn or full?)"
                    % (port, ", ".join(bad[:3]))
                )
        manifest = dict(info, files={p: _sha(b) for p, b in sorted(files.items())})
        mtext = json.dumps(manifest, indent=1, sort_keys=True).encode()
        changed = list(todo)
        if dev.hashes(["/manifest.json"])["/manifest.json"] != _sha(mtext):
            dev.put("/manifest.json", mtext)
            changed.append("/manifest.json")
        report = {
            "port": port,
            "terminal_id": int(terminal_id),
            "board": board,
            "fw": info["fw"],
            "config_ver": info["config_ver"],
            "copied": len(todo),
            "files": len(files),
            "changed": changed,
        }
        if not reboot:
            return report
        say("reboot")
        dev.soft_reboot()
    say("wait for IDENTIFY")
    up = _wait_healthy(port)
    if up.get("fw") != info["fw"]:
        raise FlashError(
            "firmware version mismatch on %s: it runs %s, tapkit flashed %s (a frozen or stale "
            "firmware shadows the files: reflash the MicroPython image)"
            % (port, up.get("fw"), info["fw"])
        )
    if int(up["terminal_id"]) != int(terminal_id):
        raise FlashError(
            "%s answers as terminal %s after flashing %s" % (port, up["terminal_id"], terminal_id)
        )
    report.update(
        fw=up["fw"],
        config_ver=up.get("config_ver"),
        unsynced=up.get("unsynced", 0),
        profile=up.get("profile"),
    )
    return report


def _guard(port, current, wanted, unsynced, force):
    """Refuse to change the identity of a terminal with unsynced taps (unsynced None: unknown)."""
    if force or current is None or wanted is None or current == int(wanted):
        return
    if unsynced is None:
        raise FlashError(
            "terminal %d on %s: its firmware is not running, so its journal cannot be checked "
            "for unsynced taps; sync it first or use --force to change its identity to %d"
            % (current, port, wanted)
        )
    if unsynced:
        raise FlashError(
            "terminal %d on %s holds %d unsynced taps: sync it before changing its identity "
            "to %d (or use --force)" % (current, port, unsynced, wanted)
        )


def flash_many(ports, board, ks, first_id=None, config_over=None, force=False, progress=None):
    """Flash every port in parallel. Boards that have an identity keep it; blank boards get the next
    free ids from first_id. Returns [report or {"port", "error"}] in port order."""
    progress = progress or (lambda port: lambda msg, done=None, total=None: None)

    idents = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(ports))) as ex:
        for port, info in zip(ports, ex.map(_safe_identify, ports), strict=True):
            idents[port] = info
    taken = {int(i["terminal_id"]) for i in idents.values() if i}
    next_id = first_id

    def assign(port):
        nonlocal next_id
        if idents.get(port):
            return None  # keeps its identity (read again by flash_board)
        if next_id is None:
            return None
        while next_id in taken:
            next_id += 1
        taken.add(next_id)
        return next_id

    plan = [(p, assign(p)) for p in ports]

    def one(item):
        port, tid = item
        say = progress(port)
        try:
            r = flash_board(port, board, ks, tid, config_over, force, progress=say)
            say("ok: terminal %d, %d files copied" % (r["terminal_id"], r["copied"]))
            return r
        except TapkitError as e:
            say("FAILED: %s" % e)
            return {"port": port, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one board's trouble must not stop the others
            say("FAILED: %s: %s" % (type(e).__name__, e))
            return {"port": port, "error": "%s: %s" % (type(e).__name__, e)}

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(ports))) as ex:
        return list(ex.map(one, plan))


def _safe_identify(port):
    try:
        return _identify(port)
    except TapkitError:
        return None
