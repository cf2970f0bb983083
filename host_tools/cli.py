"""The `tapkit` command line. Thin: parse, call the library, render a table or --json.

    tapkit keys init --keystore issuer.keys
    tapkit emulate card alice.card --new          # serve a blank emulated card to pcscd (vpcd)
    tapkit card issue --reader pcsc --balance 200000 --holder student
    tapkit emulate board --state run/bus-1 --terminal-id 1001 --fare 25000
    tapkit emulate tap --board run/bus-1 alice.card
    tapkit emulate board --state run/pos-1 --terminal-id 3001 --profile pos --fares pos.json
    tapkit emulate press --board run/pos-1 "15000#"     # the cashier's keypad (R# refunds)
    tapkit sync --port /dev/pts/5 --db sqlite:///taps.db
    tapkit report --db sqlite:///taps.db
    tapkit demo

`main(argv)` returns the exit code and is callable from tests. Errors are one line on stderr.
"""

import argparse
import json
import os
import sys
import time

from card_schema import profile_host
from host_tools import TapkitError

DEFAULT_KEYSTORE = os.environ.get("TAPKIT_KEYSTORE", "issuer.keys")
DEFAULT_DB = os.environ.get("TAPKIT_DB", "sqlite:///tapkit.db")


def _console(stderr=False):
    from rich.console import Console

    out = sys.stderr if stderr else sys.stdout
    # Off a terminal (logs, CI, pipes) rich would assume 80 columns and truncate the tables.
    return Console(stderr=stderr, width=None if out.isatty() else 120)


def _print_json(obj):
    print(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _table(title, columns, rows):
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(
            c, justify="right" if c.endswith("(Rial)") or c in ("taps", "seq") else "left"
        )
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


# --- keys ---------------------------------------------------------------------------------------
def cmd_keys_init(a):
    from host_tools import keystore

    ks = keystore.init(a.keystore, issuer_id=a.issuer_id)
    res = {
        "keystore": os.path.abspath(a.keystore),
        "issuer_id": ks["issuer_id"],
        "roles": list(keystore.ROLES),
    }
    if a.json:
        _print_json(res)
    else:
        print(
            "created keystore %s (issuer %d; roles %s; file mode 0600)"
            % (a.keystore, ks["issuer_id"], ", ".join(keystore.ROLES))
        )
    return 0


# --- card ---------------------------------------------------------------------------------------
def _card_session(a):
    from card_schema.desfire_admin import DESFireAdmin
    from host_tools import keystore
    from host_tools.readers import open_reader

    ks = keystore.load(a.keystore)
    reader = open_reader(a.reader)
    trace = None
    if getattr(a, "trace", False):
        from card_schema.desfire_admin import status_name

        def trace(direction, data, name=""):
            # frames only: keys never travel in clear (authentication and ChangeKey are enciphered)
            note = name or ""
            if direction == "<" and len(data) >= 2 and data[-2] == 0x91:
                note += ": " + status_name(data[-1])
            sys.stderr.write("%s %s  %s\n" % (direction, data.hex(" ").upper(), note))
            sys.stderr.flush()

    return ks, reader, DESFireAdmin(reader.transceive, wrapped=True, trace=trace)


def _holder(name):
    from card_schema import citizen_host

    try:
        return citizen_host.HOLDER_NAMES.index(name)
    except ValueError:
        raise TapkitError(
            "unknown holder type %r: use one of %s" % (name, ", ".join(citizen_host.HOLDER_NAMES))
        )


def cmd_card_issue(a):
    from host_tools import cardops

    ks, reader, df = _card_session(a)
    with reader:
        now = int(time.time())
        cardops.issue(
            df,
            ks,
            reader.uid,
            holder=_holder(a.holder),
            card_no=a.card_no,
            expiry=now + a.valid_days * 86400,
            balance=a.balance,
            now=now,
        )
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, "issued card")


def cmd_card_topup(a):
    from host_tools import cardops

    if a.amount <= 0:
        raise TapkitError("--amount must be a positive number of Rial")
    ks, reader, df = _card_session(a)
    with reader:
        cardops.topup(df, ks, reader.uid, a.amount, now=int(time.time()))
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, "topped up %d Rial" % a.amount)


def cmd_card_show(a):
    from host_tools import cardops

    ks, reader, df = _card_session(a)
    with reader:
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, None)


def cmd_card_block(a):
    from host_tools import cardops

    ks, reader, df = _card_session(a)
    with reader:
        res = cardops.block(df, ks, reader.uid, blocked=a.sub == "block")
    if a.json:
        _print_json(res)
    else:
        print(
            "card %s (UID %s) %s %s"
            % (
                res["card_no"],
                res["uid"].upper(),
                "is" if res["changed"] else "was already",
                res["status"],
            )
        )
    return 0


def cmd_card_refund(a):
    from host_tools import cardops

    ks, reader, df = _card_session(a)
    with reader:
        res = cardops.refund(df, ks, reader.uid, now=int(time.time()))
    if a.json:
        _print_json(res)
    else:
        print(
            "card %s (UID %s) closed: blocked, %s Rial refunded%s"
            % (
                res["card_no"],
                res["uid"].upper(),
                format(res["refunded"], ","),
                " (refunded earlier)" if res["already"] else "",
            )
        )
    return 0


def _show_card(a, info, headline):
    if a.json:
        _print_json(info)
        return 0
    con = _console()
    if headline:
        con.print(headline)
    shown = dict(info)
    for k in ("expiry", "issued"):
        if k in shown:
            shown[k] = _when(shown[k])
    if "balance" in shown:
        shown["balance"] = "%s Rial" % format(shown["balance"], ",")
    rows = [
        (k, shown[k])
        for k in ("uid", "card_no", "holder", "status", "issued", "expiry", "balance", "counter")
        if k in shown
    ]
    con.print(_table("card", ["field", "value"], rows))
    trips = info.get("trips") or []
    if trips:
        con.print(
            _table(
                "last trips (newest first)",
                ["counter", "time", "kind", "terminal", "amount (Rial)", "balance (Rial)"],
                [
                    (
                        t["counter"],
                        _when(t["time"]),
                        t["kind"],
                        t["terminal"],
                        format(t["amount"], ","),
                        format(t["balance_after"], ","),
                    )
                    for t in trips
                ],
            )
        )
    return 0


# --- emulate ------------------------------------------------------------------------------------
def cmd_emulate_card(a):
    from emulator.card import DESFireCard
    from emulator.vpcd import VPCDBridge

    if a.new:
        if os.path.exists(a.cardfile):
            raise TapkitError(
                "%s exists: refusing to replace a card (drop --new to serve it)" % a.cardfile
            )
        card = DESFireCard.blank()
        card.save(a.cardfile)
    card = DESFireCard.load(a.cardfile)
    if a.udp is not None:
        return _emulate_card_udp(a, card)
    host, _, port = a.vpcd.partition(":")
    bridge = VPCDBridge(card, host or "127.0.0.1", int(port or 35963))
    bridge.connect()
    print(
        "serving card %s (UID %s) to vpcd at %s; Ctrl-C to take it away"
        % (a.cardfile, card.uid.hex().upper(), a.vpcd),
        flush=True,
    )
    try:
        bridge.serve_forever()
    finally:
        bridge.stop()
    return 0


def _emulate_card_udp(a, card):
    from emulator.nfc_udp import NFCUDPCard

    host, _, port = a.udp.rpartition(":")
    try:
        srv = NFCUDPCard(card, host or "127.0.0.1", int(port))
    except (OSError, ValueError) as e:
        raise TapkitError("cannot serve on UDP %s: %s" % (a.udp, e))
    print(
        "serving card %s (UID %s) to nfcpy on udp:%s:%d (--reader nfc:udp:%s:%d); Ctrl-C to take "
        "it away" % (a.cardfile, card.uid.hex().upper(), srv.host, srv.port, srv.host, srv.port),
        flush=True,
    )
    try:
        srv.serve_forever()
    finally:
        srv.stop()
    return 0


PROFILES = profile_host.PROFILES  # firmware/profile_<name>.py


def _json_file(path, what):
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as e:
        raise TapkitError("cannot read %s %s: %s" % (what, path, e.strerror or e))
    except ValueError as e:
        raise TapkitError("%s %s is not JSON: %s" % (what, path, e))
    if not isinstance(obj, dict):
        raise TapkitError("%s %s: a JSON object is expected" % (what, path))
    return obj


def _board_config(a):
    """config.json overrides for `emulate board`: --config FILE first, then the options given."""
    over = _json_file(a.config, "config") if a.config else {}
    over.pop("terminal_id", None)  # --terminal-id names the terminal
    for k in ("profile", "fare", "line", "stop", "zone", "lang", "unit"):
        v = getattr(a, k)
        if v is not None:
            over[k] = v
    over.setdefault("profile", "bus")
    if over["profile"] not in PROFILES:
        raise TapkitError("unknown profile %r: one of %s" % (over["profile"], ", ".join(PROFILES)))
    over.setdefault("fare", 25000)
    over.setdefault("line", 1)
    return over


def cmd_emulate_board(a):
    from emulator.vboard import VirtualBoard
    from host_tools import keystore, provision

    ks = keystore.load(a.keystore)
    over = _board_config(a)
    fares = _json_file(a.fares, "fare table") if a.fares else None
    deny = _json_file(a.deny, "deny list") if a.deny else None
    from host_tools import cli_tariff

    if fares is not None:  # checked before anything is written
        cli_tariff.fares_payload(fares)
    if deny is not None:
        cli_tariff.deny_payload(deny)
    fs = os.path.join(a.state, "fs.img")
    os.makedirs(a.state, exist_ok=True)
    provision.deploy_virtual(fs, ks, a.terminal_id, fares=fares, deny=deny, **over)
    vb = VirtualBoard(a.state, heap=a.heap, echo=lambda ln: print(ln, flush=True))
    vb.start()
    print(
        "virtual terminal %d (%s) running: serial port %s  (state %s)"
        % (a.terminal_id, over["profile"], vb.port, a.state),
        flush=True,
    )
    print("tap a card:  tapkit emulate tap --board %s CARDFILE" % a.state, flush=True)
    if over["profile"] in profile_host.KEYPAD:
        print("press keys:  tapkit emulate press --board %s KEYS" % a.state, flush=True)
    try:
        while vb.alive:
            time.sleep(0.5)
        raise TapkitError(
            "the firmware exited (code %s); see %s/display.log" % (vb.proc.poll(), a.state)
        )
    except KeyboardInterrupt:
        print("stopping virtual terminal %d" % a.terminal_id, flush=True)
        return 0
    finally:
        vb.stop()


def _board_control(board, req):
    """One request to a running virtual board's control socket; errors become one line."""
    from emulator.vboard import BoardError, control

    try:
        r = control(board, req)
    except BoardError as e:
        raise TapkitError(str(e))
    if not r.get("ok"):
        raise TapkitError("%s failed: %s" % (req["cmd"], r.get("error")))
    return r


def cmd_emulate_tap(a):
    r = _board_control(
        a.board, {"cmd": "tap", "card": os.path.abspath(a.cardfile), "timeout": a.timeout}
    )
    if a.json:
        _print_json(r)
    else:
        print(r["display"].replace("DISPLAY|", "display:").strip())
    return 0


def cmd_emulate_press(a):
    keys = a.keys or ""
    if a.meter is not None:
        if a.meter <= 0:
            raise TapkitError("--meter: the taximeter's fare in Rial, > 0")
        keys += "FARE %d\n" % a.meter  # the taximeter's line (firmware/profile_taxi.py)
    if not keys:
        raise TapkitError("nothing to press: give KEYS or --meter RIAL")
    r = _board_control(a.board, {"cmd": "press", "keys": keys})
    if a.json:
        _print_json(r)
    else:
        for ln in r.get("display") or []:
            print(ln.replace("DISPLAY|", "display:").strip())
    return 0


# --- sync / report ------------------------------------------------------------------------------
def cmd_sync(a):
    from host_tools import keystore, store
    from host_tools.link import SerialLink
    from host_tools.sync import sync_terminal

    ks = keystore.load(a.keystore)
    db = store.open_store(a.db)
    try:
        with SerialLink(a.port, baud=a.baud) as link:
            summary = sync_terminal(link, db, ks, progress=None if a.json else _progress())
    finally:
        db.close()
    if a.json:
        _print_json(summary)
    else:
        _console().print(_table("sync %s" % a.port, ["item", "value"], sorted(summary.items())))
    return 0


def _progress():
    tty = sys.stderr.isatty()

    def show(done, total):
        if tty:
            n = 30 * done // total if total else 30
            sys.stderr.write(
                "\r[%s%s] pulled %d/%d records" % ("#" * n, "." * (30 - n), done, total)
            )
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total:
            sys.stderr.write("pulled %d/%d records\n" % (done, total))
        sys.stderr.flush()

    return show


def cmd_report(a):
    from host_tools import report, store

    ks = None
    if a.keystore:
        from host_tools import keystore

        ks = keystore.load(a.keystore)
    db = store.open_store(a.db)
    try:
        rep = report.report(db, ks=ks, tz=a.tz)
    finally:
        db.close()
    if a.json:
        _print_json(rep)
    else:
        report.render_table(rep, _console())
    return 0


def cmd_demo(a):
    from host_tools import demo

    return demo.run(a.dir, json_out=a.json, heap=a.heap)


# --- argument parsing ----------------------------------------------------------------------------
# Areas that register their own commands: each module has `register(sub, add)` where `sub` is the
# top-level subparsers object and `add(parent, name, fn, help)` makes a command with --json.
AREAS = (
    "host_tools.cli_tariff",
    "host_tools.serve",
    "host_tools.flash",
    "host_tools.diag",
)


def _add(parent, name, fn, help_):
    sp = parent.add_parser(name, help=help_)
    sp.set_defaults(fn=fn)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    return sp


def _parser():
    import importlib

    p = argparse.ArgumentParser(prog="tapkit", description="tapkit: fare terminals and cards")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = _add

    keys = sub.add_parser("keys", help="issuer key ceremony").add_subparsers(
        dest="sub", required=True
    )
    sp = add(
        keys, "init", cmd_keys_init, "create issuer master keys (file 0600, never overwritten)"
    )
    sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
    sp.add_argument("--issuer-id", type=int, default=1)

    card = sub.add_parser(
        "card", help="card office: issue, top up, show, block, refund"
    ).add_subparsers(dest="sub", required=True)
    for name, fn, h in (
        ("issue", cmd_card_issue, "personalise a blank card"),
        ("topup", cmd_card_topup, "credit a card (credit key)"),
        ("show", cmd_card_show, "holder, balance, last trips"),
        ("block", cmd_card_block, "block a card (master key): terminals refuse it"),
        ("unblock", cmd_card_block, "unblock a blocked card (master key)"),
        ("refund", cmd_card_refund, "close a card: block it and pay out its balance"),
    ):
        sp = add(card, name, fn, h)
        sp.add_argument(
            "--reader",
            default="pcsc",
            help="pcsc[:NAME] | nfc:usb | nfc:udp[:HOST:PORT] | emulator:CARDFILE",
        )
        sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
        sp.add_argument("--trace", action="store_true", help="print every APDU")
        if name == "issue":
            sp.add_argument("--holder", default="adult")
            sp.add_argument("--balance", type=int, default=0, help="initial balance in Rial")
            sp.add_argument("--card-no", type=int, default=0)
            sp.add_argument("--valid-days", type=int, default=5 * 365)
        if name == "topup":
            sp.add_argument("--amount", type=int, required=True, help="Rial")

    emu = sub.add_parser("emulate", help="emulated cards and virtual terminals").add_subparsers(
        dest="sub", required=True
    )
    sp = add(emu, "card", cmd_emulate_card, "serve a card file to pcscd through vpcd")
    sp.add_argument("cardfile")
    sp.add_argument("--new", action="store_true", help="create a blank card file first")
    sp.add_argument("--vpcd", default="127.0.0.1:35963")
    sp.add_argument(
        "--udp", metavar="[HOST:]PORT", help="serve to nfcpy's udp driver instead of vpcd"
    )
    sp = add(emu, "board", cmd_emulate_board, "start a virtual terminal (firmware on MicroPython)")
    sp.add_argument("--state", default="run/bus-1", help="the board's state directory")
    sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
    sp.add_argument("--terminal-id", type=int, default=1001)
    sp.add_argument("--profile", help="bus (default), taxi, parking, pos or charity")
    sp.add_argument(
        "--config", metavar="FILE.json", help="more config.json keys (zone, amounts...)"
    )
    sp.add_argument("--fares", metavar="FILE.json", help="fare table, signed for this terminal")
    sp.add_argument("--deny", metavar="FILE.json", help="deny list {UID hex: refuse|block}")
    sp.add_argument("--fare", type=int, help="flat fare in Rial (no fare table; default 25000)")
    sp.add_argument("--line", type=int, help="line number (taxi: the car's number)")
    sp.add_argument("--stop", type=int)
    sp.add_argument("--zone", type=int, help="parking zone")
    sp.add_argument("--lang", choices=("en", "fa"))
    sp.add_argument("--unit", choices=("rial", "toman"), help="display unit")
    sp.add_argument("--heap", default="112K")
    sp = add(emu, "tap", cmd_emulate_tap, "tap a card file on a running virtual terminal")
    sp.add_argument("--board", required=True, help="the board's state directory")
    sp.add_argument("cardfile")
    sp.add_argument("--timeout", type=float, default=15.0)
    sp = add(emu, "press", cmd_emulate_press, "press keys on a running virtual terminal's keypad")
    sp.add_argument("--board", required=True, help="the board's state directory")
    sp.add_argument("keys", nargs="?", help='keys in order, e.g. "15000#", "R#", "B2"')
    sp.add_argument("--meter", type=int, metavar="RIAL", help="a taximeter line: FARE RIAL")

    sp = add(sub, "sync", cmd_sync, "pull taps from a terminal over USB serial")
    sp.add_argument("--port", required=True)
    sp.add_argument("--db", default=DEFAULT_DB)
    sp.add_argument("--keystore", default=DEFAULT_KEYSTORE)
    sp.add_argument("--baud", type=int, default=115200)

    sp = add(sub, "report", cmd_report, "revenue, refusals and reconciliation")
    sp.add_argument("--db", default=DEFAULT_DB)
    sp.add_argument("--keystore", help="also re-verify every stored MAC chain with it")
    sp.add_argument("--tz", type=int, default=0, help="seconds east of UTC for the days (12600)")

    sp = add(sub, "demo", cmd_demo, "the virtual fleet, end to end")
    sp.add_argument("--dir", default="demo-run")
    sp.add_argument("--heap", default="112K")

    for name in AREAS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # area not built yet
        mod.register(sub, add)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except TapkitError as e:
        sys.stderr.write("tapkit: error: %s\n" % e)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        sys.stderr.write("tapkit: interrupted\n")
        return 130
    except Exception as e:  # serial and OS trouble that escaped the link layer: one line, no trace
        try:
            import serial

            if isinstance(e, serial.SerialException):
                sys.stderr.write("tapkit: error: serial port: %s\n" % e)
                return 1
        except ImportError:
            pass
        if isinstance(e, OSError):
            sys.stderr.write("tapkit: error: %s\n" % e)
            return 1
        if os.environ.get("TAPKIT_DEBUG"):
            raise
        sys.stderr.write(
            "tapkit: internal error: %s: %s (set TAPKIT_DEBUG=1 for the traceback)\n"
            % (type(e).__name__, e)
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
