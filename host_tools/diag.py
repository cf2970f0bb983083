"""`tapkit diag`: one screen about a terminal on the USB cable, for the technician at the roadside.

    tapkit diag --port /dev/ttyUSB0          # or --port auto: the only connected reader
    tapkit diag --port auto --watch          # then every tap as it happens (Ctrl-C stops)
    tapkit diag --port auto --json

While the firmware runs, everything comes over the sync protocol: IDENTIFY (identity, versions,
clock, journal), DIAG (firmware/diag.py: uptime, reset cause, heap, reader chip and its line test,
card in the field, Wi-Fi, last sync, errors) and DIAG_LOG (the newest diagnostics lines). When the
firmware does not answer, the raw REPL is the fallback: the files on the board (identity, manifest,
versions) and MicroPython's own numbers; the screen says which way it was read.
"""

import json
import sys
import time

from card_schema import frames
from host_tools import TapkitError

DIAG = frames.DIAG  # request type of firmware/diag.py


class DiagError(TapkitError):
    pass


def resolve_port(port):
    if port != "auto":
        return port
    from host_tools.flash import find_ports

    ports = find_ports()
    if not ports:
        raise DiagError("no terminal connected (no CP210x/CH340/FTDI/ESP32 USB serial port found)")
    if len(ports) > 1:
        raise DiagError(
            "%d terminals connected (%s): give --port" % (len(ports), ", ".join(ports))
        )
    return ports[0]


def read_running(link, self_test=True):
    """Diagnostics from a running firmware (raises LinkError when it does not answer)."""
    from host_tools.link import TerminalError

    sent = time.time()
    info = link.identify()
    info["drift"] = int(info.get("clock", 0)) - int(round(sent))
    try:
        info.update(json.loads(bytes(link.request(DIAG, b"" if self_test else b"t")).decode()))
    except TerminalError as e:  # an older firmware without firmware/diag.py
        info["diag_error"] = str(e)
    try:
        info["log"] = link.diag_log()
    except TerminalError:
        info["log"] = []
    info["via"] = "firmware (sync protocol)"
    return info


_REPL_PROBE = """
import os,gc,json,sys
d={}
for n in ('config.json','manifest.json'):
 try:
  f=open('/'+n);d[n]=json.load(f);f.close()
 except Exception as e:
  d[n]=None
s=os.statvfs('/')
gc.collect()
d['fs_free']=s[0]*s[3];d['fs_size']=s[0]*s[2]
d['heap_free']=gc.mem_free();d['heap_used']=gc.mem_alloc()
d['mpy']=sys.version;d['platform']=sys.platform
print(json.dumps(d))
"""


def read_repl(port):
    """What the raw REPL can tell when the firmware is not running."""
    from host_tools.rawrepl import RawREPL

    with RawREPL(port) as dev:
        d = json.loads(dev.exec(_REPL_PROBE))
    cfg = d.pop("config.json") or {}
    man = d.pop("manifest.json") or {}
    info = {
        "via": "raw REPL (the firmware is not running)",
        "terminal_id": cfg.get("terminal_id"),
        "profile": cfg.get("profile"),
        "config_ver": cfg.get("config_ver"),
        "tariff_ver": cfg.get("tariff_ver"),
        "deny_ver": cfg.get("deny_ver"),
        "fw": man.get("fw"),
        "board": man.get("board"),
    }
    info.update(d)
    return info


def diagnose(port, self_test=True):
    from host_tools.link import LinkError, SerialLink

    try:
        with SerialLink(port, timeout=1.5, retries=1) as link:
            return read_running(link, self_test)
    except LinkError as e:
        msg = str(e)
        if "busy" in msg or "permission" in msg or "no serial port" in msg:
            raise DiagError(msg) from None
    return read_repl(port)


def _ago(t, now=None):
    if not t:
        return "never"
    s = int((now or time.time()) - t)
    return "%s (%d s ago)" % (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)), s)


def rows(d):
    """(item, value) lines of the screen."""
    out = [("read via", d.get("via", "?")), ("terminal", str(d.get("terminal_id", "-")))]
    out.append(("profile", str(d.get("profile", "-"))))
    out.append(("board", str(d.get("board", "-"))))
    out.append(
        (
            "versions",
            "fw %s, config %s, fares %s, deny %s"
            % (
                d.get("fw", "-"),
                d.get("config_ver", "-"),
                d.get("fares_ver", d.get("tariff_ver", "-")),
                d.get("deny_ver", "-"),
            ),
        )
    )
    if "clock" in d:
        drift = d.get("drift", 0)
        out.append(
            (
                "clock",
                "%s, %+d s from this laptop%s"
                % (
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["clock"])),
                    drift,
                    "  << set it: tapkit sync" if abs(drift) > 60 else "",
                ),
            )
        )
    if "capacity" in d:
        used = d.get("head_seq", 0) - d.get("tail_seq", 1) + 1
        out.append(
            (
                "journal",
                "%d unsynced taps, %d of %d records used (head %d, acked %d)"
                % (
                    d.get("unsynced", 0),
                    max(used, 0),
                    d["capacity"],
                    d.get("head_seq", 0),
                    d.get("acked_seq", 0),
                ),
            )
        )
    if "last_sync" in d:
        out.append(("last sync", _ago(d["last_sync"], d.get("clock")) + " (USB)"))
    if "reader" in d:
        r = d["reader"]
        chip = "PN5%02x v%d.%d" % (r[0], r[1], r[2]) if isinstance(r, list) and len(r) >= 3 else r
        test = d.get("line_test")
        field = ("card in field: " + d["card"]) if d.get("card") else "no card in field"
        out.append(
            (
                "reader",
                "%s, line test %s, %s"
                % (chip, "ok" if test is True else "FAILED: %s" % test, field),
            )
        )
    if "wifi" in d:
        out.append(("wi-fi", d["wifi"]))
    if "up" in d:
        out.append(("uptime", "%d s, reset cause: %s" % (d["up"], d.get("reset", "?"))))
    if "heap_free" in d:
        out.append(("heap", "%d bytes free, %d used" % (d["heap_free"], d.get("heap_used", 0))))
    if "fs_free" in d:
        out.append(("filesystem", "%d of %d bytes free" % (d["fs_free"], d["fs_size"])))
    if "taps" in d:
        out.append(("since boot", "%d taps, %d requests" % (d["taps"], d.get("requests", 0))))
    errs = list(d.get("log") or d.get("err") or [])
    if d.get("board_errors"):
        errs = list(d["board_errors"]) + errs
    out.append(("last errors", "\n".join(errs[-5:]) if errs else "none"))
    if d.get("diag_error"):
        out.append(("note", d["diag_error"]))
    return out


def watch(port, out=None, count=0, timeout=0.0, interval=0.3):
    """Print each new tap as it is journalled (records are read, never acknowledged)."""
    from card_schema import taprecord_host
    from host_tools.link import SerialLink

    out = out or sys.stdout
    seen = 0
    deadline = time.monotonic() + timeout if timeout else None
    with SerialLink(port, timeout=1.5, retries=2) as link:
        head = link.identify()["head_seq"]
        out.write("watching terminal on %s (journal head %d); Ctrl-C stops\n" % (port, head))
        out.flush()
        while True:
            info = link.identify()
            while info["head_seq"] > head:
                recs = link.pull(head + 1)
                if not recs:
                    break
                for raw in recs:
                    t = taprecord_host.to_dict(raw)
                    head = max(head, t["seq"])
                    out.write(
                        "%s  seq %d  %s %s  card %s  amount %d  balance %d Rial\n"
                        % (
                            time.strftime("%H:%M:%S", time.localtime(t["time"])),
                            t["seq"],
                            t["kind"],
                            t["result"],
                            t["uid"],
                            t["amount"],
                            t["balance"],
                        )
                    )
                    out.flush()
                    seen += 1
                    if count and seen >= count:
                        return seen
            if deadline and time.monotonic() > deadline:
                return seen
            time.sleep(interval)


def cmd_diag(a):
    from host_tools.cli import _console, _print_json, _table

    port = resolve_port(a.port)
    if a.watch:
        try:
            n = watch(port, count=a.count, timeout=a.timeout)
        except KeyboardInterrupt:
            return 0
        if a.count and n < a.count:
            raise DiagError("saw %d of %d taps in %.0f s" % (n, a.count, a.timeout))
        return 0
    d = diagnose(port)
    d["port"] = port
    if a.json:
        _print_json(d)
        return 0
    _console().print(_table("diag %s" % port, ["item", "value"], rows(d)))
    return 0


def register(sub, add):
    sp = add(sub, "diag", cmd_diag, "one screen about a terminal on the USB cable")
    sp.add_argument("--port", default="auto", help="serial port, or auto (the only reader)")
    sp.add_argument("--watch", action="store_true", help="show taps live as they happen")
    sp.add_argument("--count", type=int, default=0, help="--watch: stop after N taps")
    sp.add_argument("--timeout", type=float, default=0.0, help="--watch: stop after N seconds")
