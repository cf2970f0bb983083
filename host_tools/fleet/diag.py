"""Diagnostics of a terminal on the USB cable, for the technician at the roadside (`tapkit diag`).

    d = diagnose("/dev/ttyUSB0")           # a JSON-ready dict
    rows(d)                                # [(item, value)]: the lines of the screen
    for event, data in watch(port, count=1): ...   # ("start", {...}), then ("tap", record dict)

While the firmware runs, everything comes over the sync protocol: IDENTIFY (identity, versions,
clock, journal), DIAG (firmware/diag.py: uptime, reset cause, heap, reader chip and its line test,
card in the field, Wi-Fi, last sync, errors) and DIAG_LOG (the newest diagnostics lines). When the
firmware does not answer, the raw REPL is the fallback: the files on the board (identity, manifest,
versions) and MicroPython's own numbers; the screen says which way it was read.
"""

import json
import time

from card_schema import frames, taprecord_host
from host_tools import TapkitError
from host_tools.fleet.link import LinkError, PortUnavailable, SerialLink, TerminalError
from host_tools.fleet.rawrepl import RawREPL

DIAG = frames.DIAG  # request type of firmware/diag.py


class DiagError(TapkitError):
    pass


def read_running(link, self_test=True):
    """Diagnostics from a running firmware (raises LinkError when it does not answer)."""
    sent = time.time()
    info = link.identify()
    # clock 0: the terminal's clock was not set since power-up (firmware/hal.py Clock ok)
    info["drift"] = int(info["clock"]) - int(round(sent)) if info.get("clock") else None
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
    try:
        with SerialLink(port, timeout=1.5, retries=1) as link:
            return read_running(link, self_test)
    except PortUnavailable as e:
        raise DiagError(str(e)) from None
    except LinkError:  # no answer (the firmware is stopped): its REPL still tells a lot
        pass
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
    if "ota" in d or "fw" in d:
        from host_tools.fleet import release

        out.append(("firmware", release.status_text(d.get("ota"))))
    if "clock" in d and not d["clock"]:
        out.append(("clock", "not set since power-up (a power cut)  << set it: tapkit sync"))
    elif "clock" in d:
        drift = d.get("drift") or 0
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


def watch(port, count=0, timeout=0.0, interval=0.3):
    """What the terminal does, as it happens (records are read, never acknowledged). Yields
    (event, data): "start" {port, head, terminal_id, profile, fw} once, then as they come
    "display" {n, time, line1, line2, sound} (every text the terminal shows, refusals of foreign
    cards included), "card" {uid} (a card entered the field; "" when it left), "error" {line}
    (the diagnostics log: reader and sync errors...) and "tap" (taprecord_host.to_dict: each
    journalled record). Stops after `count` journalled taps or `timeout` seconds (0: never).

    Each poll is one DIAG "w" request (firmware/diag.py); a firmware without it answers the full
    DIAG instead, and then only the journal is watched."""
    seen = 0
    deadline = time.monotonic() + timeout if timeout else None
    with SerialLink(port, timeout=1.5, retries=2) as link:
        info = link.identify()
        head = info["head_seq"]
        w = _poll(link)
        yield (
            "start",
            {
                "port": port,
                "head": head,
                "terminal_id": info.get("terminal_id"),
                "profile": info.get("profile"),
                "fw": info.get("fw"),
                "displays": "shows" in w,
            },
        )
        shown, nerr, card = w.get("shown", 0), w.get("nerr", 0), w.get("card", "")
        while True:
            if "shows" in w:
                for n, t, line1, line2, sound in w["shows"]:
                    if n > shown:
                        yield (
                            "display",
                            {
                                "n": n,
                                "time": t,
                                "line1": line1,
                                "line2": line2,
                                "sound": sound,
                            },
                        )
                shown = max(shown, w["shown"])
                new = w["nerr"] - nerr
                for line in w["err"][-new:] if new > 0 else []:
                    yield "error", {"line": line}
                nerr = w["nerr"]
                if w["card"] != card:
                    card = w["card"]
                    yield "card", {"uid": card}
                now_head = w["head"]
            else:
                now_head = link.identify()["head_seq"]
            while now_head > head:
                recs = link.pull(head + 1)
                if not recs:
                    break
                for raw in recs:
                    t = taprecord_host.to_dict(raw)
                    head = max(head, t["seq"])
                    yield "tap", t
                    seen += 1
                    if count and seen >= count:
                        return
            if deadline and time.monotonic() > deadline:
                return
            time.sleep(interval)
            w = _poll(link) if "shows" in w else {}  # an old firmware: IDENTIFY only


def _poll(link):
    """One DIAG "w" answer (a dict with "shows"), or {} from a firmware that does not know it."""
    try:
        d = json.loads(bytes(link.request(DIAG, b"w")).decode())
    except TerminalError:  # no firmware/diag.py at all
        return {}
    return d if "shows" in d else {}
