"""`tapkit sync`, `tapkit flash`, `tapkit diag`: the terminals on the USB cable."""

import sys
import time

from host_tools import UsageError
from host_tools.cli.output import (
    FlashProgress,
    console,
    money,
    print_json,
    print_jsonl,
    sync_progress,
    table,
)
from host_tools.cli.spec import DB, KEYSTORE, Command, arg, port, port_list, profile


# --- sync ---------------------------------------------------------------------------------------
def sync(a):
    from host_tools import keystore
    from host_tools.backoffice import store
    from host_tools.fleet import ports
    from host_tools.fleet.link import SerialLink
    from host_tools.fleet.sync import sync_terminal

    where = ports.resolve_port(a.port)
    ks = keystore.load(a.keystore)
    with SerialLink(where, baud=a.baud) as link:  # a bad port fails before the store is made
        db = store.open_store(a.db)
        try:
            summary = sync_terminal(link, db, ks, progress=None if a.json else sync_progress())
        finally:
            db.close()
    if a.json:
        print_json(summary)
    else:
        console().print(sync_table(where, summary))
    return 0


def sync_table(port, summary):
    return table("sync %s" % port, ["item", "value"], sorted(summary.items()))


# --- ports --------------------------------------------------------------------------------------
def ports_cmd(a):
    from host_tools.fleet import ports

    rows = ports.survey(extra=a.extra, probe_ports=not a.no_probe, timeout=a.timeout)
    if a.json:
        print_json({"ports": rows})
        return 0
    if not rows:
        console().print("no serial ports")
        return 0
    console().print(
        table(
            "serial ports",
            ["port", "usb", "what", "answer"],
            [
                (r["port"], r["usb"] or "-", r["bridge"] or r["description"] or "-", _answer(r))
                for r in rows
            ],
            right=(),
        )
    )
    return 0


def _answer(r):
    if r["answer"] == "tapkit":
        return "tapkit terminal %s (%s, fw %s), %s unsynced" % (
            r["terminal_id"],
            r["profile"],
            r["fw"],
            r["unsynced"],
        )
    return {"none": "no tapkit answer", "not probed": "-"}.get(r["answer"], r.get("note", "?"))


# --- unlock -------------------------------------------------------------------------------------
def unlock(a):
    from host_tools import keystore
    from host_tools.fleet import ports
    from host_tools.fleet.flash import FlashError
    from host_tools.fleet.flash import unlock as unlock_port

    port = ports.resolve_port(a.port)
    secs = unlock_port(port, keystore.load(a.keystore), seconds=max(1, a.minutes) * 60)
    if secs is None:
        raise FlashError("no tapkit firmware answers on %s" % port)
    if a.json:
        print_json({"port": port, "open_seconds": secs})
    else:
        print("console on %s open for %d s (then locked again)" % (port, secs))
    return 0


# --- flash --------------------------------------------------------------------------------------
def flash(a):
    from host_tools import keystore
    from host_tools.fleet import esp32, ports
    from host_tools.fleet.flash import FlashError, flash_board, flash_many

    over = {
        k: v
        for k, v in (("profile", a.profile), ("fare", a.fare), ("line", a.line), ("stop", a.stop))
        if v is not None
    }
    over["console_lock"] = a.console_lock  # in the field: the console takes the sync protocol only
    over["require_issuer_sig"] = a.require_issuer_sig  # unsigned cards refused (migration: off)
    if a.all:
        if a.port:
            raise UsageError("give --port or --all, not both")
        found = ports.find_ports()
        if not found:
            raise FlashError("no reader connected (no CP210x/CH340/FTDI/ESP32 USB serial port)")
    else:
        found = [ports.resolve_port(p) for p in port_list(a)]
    if a.flash_encryption and not a.firmware_image:
        raise UsageError("--flash-encryption needs --firmware-image (the chip is written anew)")
    if a.firmware_image:
        for port in found:
            if a.flash_encryption:  # eFuses burnt only when asked: irreversible on the chip
                import subprocess

                for cmd in esp32.encryption_commands(port, a.flash_encryption):
                    if not a.json:
                        print("$ " + " ".join(cmd))
                    if subprocess.run(cmd).returncode != 0:
                        raise FlashError("espefuse failed on %s (see its output above)" % port)
            for argv in esp32.esptool_command(
                port, a.board, a.firmware_image, encrypt=bool(a.flash_encryption)
            ):
                if not a.json:
                    print("$ esptool " + " ".join(argv))
                esp32.run_esptool(argv)
    ks = keystore.load(a.keystore)
    if len(found) == 1 and not a.all:
        with FlashProgress(found, quiet=not sys.stderr.isatty()) as progress:
            r = flash_board(
                found[0], a.board, ks, a.terminal_id, over, a.force, progress=progress(found[0])
            )
        if a.json:
            print_json(r)
        else:
            rows = [(k, str(r[k])) for k in ("port", "terminal_id", "board", "fw", "config_ver")]
            rows += [("files copied", "%d of %d" % (r["copied"], r["files"]))]
            rows += [("unsynced taps", str(r.get("unsynced", 0)))]
            console().print(table("flash %s" % found[0], ["item", "value"], rows))
        return 0
    with FlashProgress(found) as progress:
        results = flash_many(found, a.board, ks, a.terminal_id, over, a.force, progress)
    failed = [r for r in results if "error" in r]
    if a.json:
        print_json({"boards": results, "ok": len(results) - len(failed), "failed": len(failed)})
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
        console().print(
            table(
                "flash: %d ok, %d failed" % (len(results) - len(failed), len(failed)),
                ["port", "terminal", "fw", "copied", "result"],
                rows,
            )
        )
    return 1 if failed else 0


# --- diag ---------------------------------------------------------------------------------------
def diag(a):
    from host_tools.fleet import diag as diag_mod
    from host_tools.fleet import ports

    port = ports.resolve_port(a.port)
    if a.watch:
        try:
            n = _watch(a, port)
        except KeyboardInterrupt:
            return 0
        if a.count and n < a.count:
            raise diag_mod.DiagError("saw %d of %d taps in %.0f s" % (n, a.count, a.timeout))
        return 0
    d = diag_mod.diagnose(port)
    d["port"] = port
    if a.json:
        print_json(d)
        return 0
    console().print(table("diag %s" % port, ["item", "value"], diag_mod.rows(d)))
    return 0


def _watch(a, port):
    """Show what the terminal does as it happens (fleet.diag.watch); with --json one JSON Lines
    record per event. Returns how many journalled taps were seen."""
    from host_tools.fleet import diag as diag_mod

    con = None if a.json else console(highlight=False)
    seen = 0
    for event, d in diag_mod.watch(port, count=a.count, timeout=a.timeout):
        if event == "tap":
            seen += 1
        if a.json:
            print_jsonl(dict(d, event=event))
            continue
        text, style = watch_line(event, d)
        con.print(text, style=style, markup=False)
    return seen


SOUND_STYLE = {"ok": "green", "refused": "red", "error": "yellow"}


def watch_line(event, d):
    """(text, rich style) of one `diag --watch` event: amounts in Rial with thousands separators."""
    if event == "start":
        return (
            "watching terminal %s (%s, fw %s) on %s, journal head %d%s; Ctrl-C stops"
            % (
                d["terminal_id"],
                d["profile"],
                d["fw"],
                d["port"],
                d["head"],
                "" if d["displays"] else " (this firmware reports taps only)",
            ),
            "bold",
        )
    if event == "display":
        text = " / ".join(x for x in (d["line1"], d["line2"]) if x)
        return "%s  display  %s" % (_clock(d["time"]), text), SOUND_STYLE.get(d["sound"])
    if event == "card":
        what = "card %s in the field" % d["uid"].upper() if d["uid"] else "card left the field"
        return "%s  %s" % (_clock(time.time()), what), "dim"
    if event == "error":
        return "%s  error    %s" % (_clock(time.time()), d["line"]), "yellow"
    ok = d["result"] == "ok"
    return (
        "%s  journal  seq %d  %s %s  card %s  amount %s  balance %s Rial"
        % (
            _clock(d["time"]),
            d["seq"],
            d["kind"],
            d["result"],
            d["uid"].upper(),
            money(d["amount"]),
            money(d["balance"]),
        ),
        "green" if ok else "red",
    )


def _clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


BAUD = arg("--baud", type=int, default=115200, help="serial speed (a USB CDC port ignores it)")

COMMANDS = (
    Command(
        ("ports",),
        ports_cmd,
        "serial ports: USB ids, and whether a tapkit terminal answers",
        (
            arg(
                "extra",
                nargs="*",
                metavar="PORT",
                help="also probe these ports (a virtual board's pty)",
            ),
            arg("--no-probe", action="store_true", help="only list, ask no terminal"),
            arg("--timeout", type=float, default=1.0, help="seconds to wait for each answer"),
        ),
    ),
    Command(
        ("sync",),
        sync,
        "pull taps from a terminal over USB serial",
        (port(), DB, KEYSTORE, BAUD),
    ),
    Command(
        ("flash",),
        flash,
        "write firmware and a terminal's identity over USB",
        (
            port(many=True),
            arg("--all", action="store_true", help="every connected reader, in parallel"),
            arg("--board", default="esp32-devkitc", help="board definition (boards/NAME)"),
            arg(
                "--terminal-id",
                type=int,
                metavar="ID",
                help="the terminal's identity (with --all: the first id, counting up)",
            ),
            profile("%(choices)s (default: the board's)"),
            arg("--fare", type=int, metavar="RIAL", help="flat fare in Rial"),
            arg("--line", type=int, help="line number (taxi: the car's number)"),
            arg("--stop", type=int, help="stop number"),
            KEYSTORE,
            arg("--force", action="store_true", help="change identity despite unsynced taps"),
            arg(
                "--firmware-image",
                metavar="FILE.bin",
                help="write this MicroPython image with esptool first",
            ),
            arg(
                "--no-console-lock",
                dest="console_lock",
                action="store_false",
                help="leave the USB console open (a bench board; in the field it is locked)",
            ),
            arg(
                "--no-require-issuer-sig",
                dest="require_issuer_sig",
                action="store_false",
                help="let cards without the issuer's signature ride (while an old fleet's cards "
                "are signed by `tapkit card secure`); a signed card is checked still",
            ),
            arg(
                "--flash-encryption",
                metavar="KEYFILE",
                help="with --firmware-image: burn this 256-bit key and enable flash encryption "
                "(IRREVERSIBLE eFuses; see docs/architecture.md)",
            ),
        ),
    ),
    Command(
        ("unlock",),
        unlock,
        "open a terminal's locked USB console for maintenance (mpremote, REPL)",
        (
            port(),
            KEYSTORE,
            arg("--minutes", type=int, default=10, help="how long until it locks itself again"),
        ),
    ),
    Command(
        ("diag",),
        diag,
        "one screen about a terminal on the USB cable",
        (
            port(),
            arg("--watch", action="store_true", help="show taps live as they happen"),
            arg("--count", type=int, default=0, help="--watch: stop after N taps"),
            arg("--timeout", type=float, default=0.0, help="--watch: stop after N seconds"),
        ),
        json="watch",
    ),
)
GROUPS = {}
