"""`tapkit flash`: put the firmware, the board file and a terminal's identity onto readers over USB.

    tapkit flash --port /dev/ttyUSB0 --board esp32-devkitc --terminal-id 1001 --keystore issuer.keys
    tapkit flash --all --board esp32-devkitc --keystore issuer.keys     # every connected reader

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

--all: every port whose USB vendor/product id is an ESP32 bridge (CP210x, CH340/CH9102, FTDI) or the
ESP32's native USB, in parallel; one progress line per port, a summary table; one failing board does
not stop the others. --firmware-image: write MicroPython and the partition table with esptool first
(blank boards; needs the hardware, see esptool_command).
"""

import concurrent.futures
import hashlib
import json
import os
import sys
import threading

from host_tools import TapkitError
from mpybuild import BuildError, cross, manifest

DEFAULT_KEYSTORE = os.environ.get("TAPKIT_KEYSTORE", "issuer.keys")

# USB bridges and the native USB of ESP32 boards: (vendor id, product id or None for any)
USB_IDS = (
    (0x10C4, 0xEA60),  # Silicon Labs CP210x
    (0x10C4, 0xEA70),
    (0x1A86, 0x7523),  # WCH CH340
    (0x1A86, 0x55D4),  # WCH CH9102
    (0x0403, 0x6001),  # FTDI FT232R
    (0x0403, 0x6010),  # FT2232
    (0x0403, 0x6015),  # FT231X
    (0x303A, None),  # Espressif native USB (ESP32-S2/S3/C3 USB-Serial-JTAG)
)
FILES_OF_RECORD = ("config.json", "keys.json")  # the terminal's identity: changes are guarded


_BUILD_LOCK = threading.Lock()


class FlashError(TapkitError):
    pass


def find_ports():
    """Serial ports of connected readers, by USB vendor/product id."""
    from serial.tools import list_ports

    out = []
    for p in list_ports.comports():
        for vid, pid in USB_IDS:
            if p.vid == vid and (pid is None or p.pid == pid):
                out.append(p.device)
                break
    return sorted(out)


def board_spec(board):
    import boards

    try:
        return boards.spec(board)
    except boards.UnknownBoard as e:
        raise FlashError(str(e)) from None


_PT_TYPES = {"app": 0x00, "data": 0x01}
_PT_SUBTYPES = {
    "factory": 0x00,
    "test": 0x20,
    "ota": 0x00,
    "phy": 0x01,
    "nvs": 0x02,
    "coredump": 0x03,
    "nvs_keys": 0x04,
    "efuse": 0x05,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
}


def _pt_int(text):
    text = text.strip()
    mult = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    return int(text[:-1] if mult > 1 else text, 0) * mult


def partition_table(csv_path):
    """The binary ESP32 partition table (what gen_esp32part.py makes) of a partitions.csv."""
    import struct

    entries = b""
    with open(csv_path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")] + [""] * 6
            name, ptype, sub, offset, size, flags = cols[:6]
            try:
                t = _PT_TYPES[ptype] if ptype in _PT_TYPES else int(ptype, 0)
                st = _PT_SUBTYPES[sub] if sub in _PT_SUBTYPES else int(sub, 0)
                if ptype == "app" and sub.startswith("ota_"):
                    st = 0x10 + int(sub[4:])
                entries += struct.pack(
                    "<2sBBLL16sL",
                    b"\xaa\x50",
                    t,
                    st,
                    _pt_int(offset),
                    _pt_int(size),
                    name.encode()[:16],
                    1 if "encrypted" in flags else 0,
                )
            except (KeyError, ValueError):
                raise FlashError(
                    "%s line %d: bad partition entry %r" % (csv_path, n, line)
                ) from None
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return table + b"\xff" * (0xC00 - len(table))


def esptool_command(port, board, image, baud=460800, out_dir=None):
    """The esptool command line that writes a MicroPython image and the board's partition table
    (boards/<board>/partitions.csv, converted to its binary form next to the build)."""
    spec = board_spec(board)
    if spec.get("platform") != "esp32":
        raise FlashError("board %s is not an ESP32: nothing to write with esptool" % board)
    if not os.path.exists(image):
        raise FlashError("no firmware image %s" % image)
    import tempfile

    import boards

    parts = boards.path(board, spec.get("partitions", "partitions.csv"))
    out_dir = out_dir or tempfile.mkdtemp(prefix="tapkit-%s-" % board)
    os.makedirs(out_dir, exist_ok=True)
    table = os.path.join(out_dir, "partitions.bin")
    with open(table, "wb") as f:
        f.write(partition_table(parts))
    esptool = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", port]
    return [
        esptool + ["erase_flash"],
        esptool + ["--baud", str(baud), "write_flash", "-z", "0x1000", image, "0x8000", table],
    ]


def local_files(board, ks, terminal_id, config_over):
    """{device path: bytes} of everything a terminal gets, and the manifest's versions."""
    import boards
    from host_tools import provision

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
    import tempfile

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
    from host_tools.link import LinkError, SerialLink

    try:
        with SerialLink(port, timeout=timeout, retries=1) as link:
            return link.identify()
    except LinkError as e:
        msg = str(e)
        if "busy" in msg or "permission" in msg or "no serial port" in msg:
            raise FlashError(msg) from None
        return None


def _wait_healthy(port, timeout=30.0):
    import time

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
    from host_tools.rawrepl import RawREPL

    say = progress or (lambda msg, done=None, total=None: None)
    say("identify")
    ident = _identify(port)
    if ident:  # the running firmware knows its journal: decide before interrupting it
        _guard(port, int(ident["terminal_id"]), terminal_id, ident.get("unsynced", 0), force)
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


class Progress:
    """One progress line per port: a live bar on a terminal, plain lines in a log."""

    def __init__(self, ports, out=None, quiet=False):
        self.out = out or sys.stderr
        self.quiet = quiet
        self.lock = threading.Lock()
        self.bars = None
        if not quiet and self.out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress as Bars, TextColumn

            self.bars = Bars(
                TextColumn("{task.fields[port]}"),
                BarColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.out),
            )
            self.tasks = {p: self.bars.add_task("waiting", port=p, total=None) for p in ports}

    def __enter__(self):
        if self.bars:
            self.bars.start()
        return self

    def __exit__(self, *exc):
        if self.bars:
            self.bars.stop()

    def __call__(self, port):
        def say(msg, done=None, total=None):
            if self.bars:
                kw = {"completed": done, "total": total} if total else {}
                self.bars.update(self.tasks[port], description=msg, **kw)
            elif not self.quiet and (total is None or done == 0):
                with self.lock:
                    text = msg if total is None else "copy %d files" % total
                    self.out.write("%s: %s\n" % (port, text))
                    self.out.flush()

        return say


def flash_many(ports, board, ks, first_id=None, config_over=None, force=False, progress=None):
    """Flash every port in parallel. Boards that have an identity keep it; blank boards get the next
    free ids from first_id. Returns [report or {"port", "error"}] in port order."""
    progress = progress or Progress(ports, quiet=True)

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


# --- CLI -------------------------------------------------------------------------------------------
def cmd_flash(a):
    from host_tools import keystore
    from host_tools.cli import _console, _print_json, _table

    over = {
        k: v
        for k, v in (("profile", a.profile), ("fare", a.fare), ("line", a.line), ("stop", a.stop))
        if v is not None
    }
    ports = list(a.port or [])
    if a.all and not ports:
        ports = find_ports()
        if not ports:
            raise FlashError("no reader connected (no CP210x/CH340/FTDI/ESP32 USB serial port)")
    if not ports:
        raise FlashError("give --port PORT (or --all)")
    if a.firmware_image:
        import importlib.util
        import subprocess

        if importlib.util.find_spec("esptool") is None:
            raise FlashError("--firmware-image needs esptool: pip install esptool")

        for port in ports:
            for cmd in esptool_command(port, a.board, a.firmware_image):
                if not a.json:
                    print("$ " + " ".join(cmd))
                if subprocess.run(cmd).returncode != 0:
                    raise FlashError("esptool failed on %s (see its output above)" % port)
    ks = keystore.load(a.keystore)
    if len(ports) == 1 and not a.all:
        with Progress(ports, quiet=not sys.stderr.isatty()) as progress:
            r = flash_board(
                ports[0], a.board, ks, a.terminal_id, over, a.force, progress=progress(ports[0])
            )
        if a.json:
            _print_json(r)
        else:
            rows = [(k, str(r[k])) for k in ("port", "terminal_id", "board", "fw", "config_ver")]
            rows += [("files copied", "%d of %d" % (r["copied"], r["files"]))]
            rows += [("unsynced taps", str(r.get("unsynced", 0)))]
            _console().print(_table("flash %s" % ports[0], ["item", "value"], rows))
        return 0
    with Progress(ports) as progress:
        results = flash_many(ports, a.board, ks, a.terminal_id, over, a.force, progress)
    failed = [r for r in results if "error" in r]
    if a.json:
        _print_json({"boards": results, "ok": len(results) - len(failed), "failed": len(failed)})
    else:
        rows = [
            (
                r["port"],
                str(r.get("terminal_id", "-")),
                r.get("fw", "-"),
                str(r.get("copied", "-")),
                "FAILED: " + r["error"] if "error" in r else "ok",
            )
            for r in results
        ]
        _console().print(
            _table(
                "flash: %d ok, %d failed" % (len(results) - len(failed), len(failed)),
                ["port", "terminal", "fw", "copied", "result"],
                rows,
            )
        )
    return 1 if failed else 0


def register(sub, add):
    sp = add(sub, "flash", cmd_flash, "write firmware and a terminal's identity over USB")
    sp.add_argument("--port", action="append", help="serial port (repeat for several)")
    sp.add_argument("--all", action="store_true", help="every connected reader, in parallel")
    sp.add_argument("--board", default="esp32-devkitc", help="board file under boards/")
    sp.add_argument("--terminal-id", type=int, help="identity (first free id with --all)")
    sp.add_argument("--profile")
    sp.add_argument("--fare", type=int, help="flat fare in Rial")
    sp.add_argument("--line", type=int)
    sp.add_argument("--stop", type=int)
    sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
    sp.add_argument("--force", action="store_true", help="change identity despite unsynced taps")
    sp.add_argument("--firmware-image", help="write this MicroPython image with esptool first")
