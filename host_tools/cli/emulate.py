"""`tapkit emulate`: emulated cards (to pcscd through vpcd, or to nfcpy's udp driver) and virtual
terminals (the firmware on MicroPython), and tapping cards and pressing keys on them."""

import json
import os
import time

from host_tools import TapkitError, UsageError
from host_tools.cli.output import print_json, print_jsonl
from host_tools.cli.spec import HEAP, KEYSTORE, Command, arg, profile


def card(a):
    from emulator.card import DESFireCard
    from emulator.vpcd import VPCDBridge

    if a.new:
        if os.path.exists(a.cardfile):
            raise TapkitError(
                "%s exists: refusing to replace a card (drop --new to serve it)" % a.cardfile
            )
        c = DESFireCard.blank()
        c.save(a.cardfile)
    c = DESFireCard.load(a.cardfile)
    if a.udp is not None:
        return _card_udp(a, c)
    host, _, port = a.vpcd.partition(":")
    bridge = VPCDBridge(c, host or "127.0.0.1", int(port or 35963))
    bridge.connect()
    banner = "serving card %s (UID %s) to vpcd at %s" % (a.cardfile, c.uid.hex().upper(), a.vpcd)
    event = {"event": "serving", "card": a.cardfile, "uid": c.uid.hex().upper(), "vpcd": a.vpcd}
    return _serve(a, bridge, banner, event)


def _serve(a, server, banner, event):
    """Serve until Ctrl-C: a banner, or with --json the JSON Lines events serving and stopped."""
    try:
        if a.json:
            print_jsonl(event)
        else:
            print(banner + "; Ctrl-C to take it away", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # taking the card away is how this command ends
        pass
    finally:
        server.stop()
    if a.json:
        print_jsonl({"event": "stopped", "card": a.cardfile})
    return 0


def _card_udp(a, c):
    from emulator.nfc_udp import NFCUDPCard

    host, _, port = a.udp.rpartition(":")
    try:
        srv = NFCUDPCard(c, host or "127.0.0.1", int(port))
    except (OSError, ValueError) as e:
        raise TapkitError("cannot serve on UDP %s: %s" % (a.udp, e))
    return _serve(
        a,
        srv,
        "serving card %s (UID %s) to nfcpy on udp:%s:%d (--reader nfc:udp:%s:%d)"
        % (a.cardfile, c.uid.hex().upper(), srv.host, srv.port, srv.host, srv.port),
        {
            "event": "serving",
            "card": a.cardfile,
            "uid": c.uid.hex().upper(),
            "reader": "nfc:udp:%s:%d" % (srv.host, srv.port),
        },
    )


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
    from card_schema import profile_host

    if over["profile"] not in profile_host.PROFILES:
        raise TapkitError(  # --profile is checked by argparse: this one came from --config
            "unknown profile %r: one of %s" % (over["profile"], ", ".join(profile_host.PROFILES))
        )
    over.setdefault("fare", 25000)
    over.setdefault("line", 1)
    return over


def _server(url):
    """--wifi URL -> config.json's "server" ("IP:PORT": the firmware resolves no names)."""
    import ipaddress
    from urllib.parse import urlsplit

    u = urlsplit(url if "//" in url else "//" + url)
    try:
        if u.scheme not in ("", "http") or u.path not in ("", "/") or u.port is None:
            raise ValueError
        ipaddress.ip_address(u.hostname or "")
    except ValueError:
        raise UsageError(
            "--wifi %s: the back office as http://IP:PORT (an address: the terminal resolves "
            "no names), e.g. http://127.0.0.1:8080" % url
        )
    return "%s:%d" % (u.hostname, u.port)


def board(a):
    from card_schema import profile_host
    from emulator.vboard import VirtualBoard
    from host_tools import keystore
    from host_tools.fleet import tables
    from host_tools.sim import virtual

    over = _board_config(a)
    if a.wifi:
        over["server"] = _server(a.wifi)
    wifi = bool(over.get("server"))  # a Wi-Fi terminal uploads there (firmware/wifi.py)
    if a.blank:
        os.makedirs(a.state, exist_ok=True)
    else:
        ks = keystore.load(a.keystore)
        fares = deny = None
        if a.fares:  # read and checked as tariff sign and publish do, before anything is written
            fares = tables.load_json(a.fares)
            tables.check_shape("fares", fares, a.fares)
        if a.deny:
            deny = tables.load_json(a.deny)
            tables.check_shape("deny", deny, a.deny)
        if fares is not None:
            tables.fares_payload(fares)
        if deny is not None:
            tables.deny_payload(deny)
        fs = os.path.join(a.state, "fs.img")
        os.makedirs(a.state, exist_ok=True)
        virtual.deploy_virtual(fs, ks, a.terminal_id, fares=fares, deny=deny, **over)
    if a.json:  # JSON Lines: running, then every line the terminal shows, then stopped

        def echo(ln):
            print_jsonl({"event": "display", "line": ln})

    else:

        def echo(ln):
            print(ln, flush=True)

    vb = VirtualBoard(
        a.state,
        heap=a.heap,
        echo=echo,
        wifi=wifi,
        rtc=a.rtc,
        baud=a.baud,
        auto_reset=a.auto_reset,
    )
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM, SIGHUP: stop as Ctrl-C does (no orphaned process)

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        vb.start(blank=a.blank)
        what = "blank board" if a.blank else "%d (%s)" % (a.terminal_id, over["profile"])
        if a.json:
            print_jsonl(
                {
                    "event": "running",
                    "terminal_id": None if a.blank else a.terminal_id,
                    "profile": None if a.blank else over["profile"],
                    "blank": a.blank,
                    "server": over.get("server"),
                    "port": vb.port,
                    "url": vb.url,
                    "state": a.state,
                }
            )
        else:
            print(
                "virtual terminal %s running: serial port %s  (state %s)"
                % (what, vb.port, a.state),
                flush=True,
            )
            print("with DTR/RTS: %s  (a DevKitC's auto-reset)" % vb.url, flush=True)
            if a.blank:
                print(
                    "flash it:    tapkit flash --port %s --board unix-virtual" % vb.port,
                    flush=True,
                )
            print("tap a card:  tapkit emulate tap --board %s CARDFILE" % a.state, flush=True)
            if not a.blank and over["profile"] in profile_host.KEYPAD:
                print("press keys:  tapkit emulate press --board %s KEYS" % a.state, flush=True)
            if wifi:
                print("uploads to:  http://%s" % over["server"], flush=True)
        # up until stopped, as a board on its cable: the firmware, the REPL (mpremote, tapkit
        # flash), resets and crashes come and go on the same serial port
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:  # stopping the terminal is how this command ends
        pass
    finally:
        vb.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if a.json:
        print_jsonl({"event": "stopped", "terminal_id": None if a.blank else a.terminal_id})
    else:
        print(
            "stopped virtual terminal %s" % ("(blank)" if a.blank else a.terminal_id), flush=True
        )
    return 0


def tap(a):
    from host_tools.sim import virtual

    r = virtual.tap(a.board, a.cardfile, timeout=a.timeout)
    if a.json:
        print_json(r)
    else:
        print(r["display"].replace("DISPLAY|", "display:").strip())
    return 0


def press(a):
    keys = a.keys or ""
    if a.meter is not None:
        if a.meter <= 0:
            raise UsageError("--meter: the taximeter's fare in Rial, > 0")
        keys += "FARE %d\n" % a.meter  # the taximeter's line (firmware/profile_taxi.py)
    if not keys:
        raise UsageError("nothing to press: give KEYS or --meter RIAL")
    from host_tools.sim import virtual

    r = virtual.press(a.board, keys)
    if a.json:
        print_json(r)
    else:
        for ln in r.get("display") or []:
            print(ln.replace("DISPLAY|", "display:").strip())
    return 0


_BOARD = arg("--board", required=True, metavar="STATE", help="the running board's state directory")
CARDFILE = arg("cardfile", help="an emulated card's file (tapkit emulate card FILE --new)")

GROUPS = {"emulate": "emulated cards and virtual terminals"}
COMMANDS = (
    Command(
        ("emulate", "card"),
        card,
        "serve a card file to pcscd through vpcd",
        (
            CARDFILE,
            arg("--new", action="store_true", help="create a blank card file first"),
            arg(
                "--vpcd",
                default="127.0.0.1:35963",
                metavar="HOST:PORT",
                help="where pcscd's vpcd driver listens",
            ),
            arg(
                "--udp", metavar="[HOST:]PORT", help="serve to nfcpy's udp driver instead of vpcd"
            ),
        ),
        json="lines",
    ),
    Command(
        ("emulate", "board"),
        board,
        "start a virtual terminal (firmware on MicroPython)",
        (
            arg("--state", default="run/bus-1", help="the board's state directory"),
            KEYSTORE,
            arg("--terminal-id", type=int, default=1001, metavar="ID", help="its identity"),
            profile("%(choices)s (default: bus)"),
            arg("--config", metavar="FILE.json", help="more config.json keys (zone, amounts...)"),
            arg("--fares", metavar="FILE.json", help="fare table, signed for this terminal"),
            arg("--deny", metavar="FILE.json", help="deny list {UID hex: refuse|block}"),
            arg(
                "--fare",
                type=int,
                metavar="RIAL",
                help="flat fare in Rial, when there is no fare table (default: 25000)",
            ),
            arg("--line", type=int, help="line number (taxi: the car's number; default: 1)"),
            arg("--stop", type=int, help="stop number"),
            arg("--zone", type=int, help="parking zone"),
            arg("--lang", choices=("en", "fa"), help="display language (default: en)"),
            arg("--unit", choices=("rial", "toman"), help="display unit (default: rial)"),
            arg(
                "--wifi",
                metavar="URL",
                help='a Wi-Fi terminal uploading to http://IP:PORT (tapkit serve; config "server")',
            ),
            arg("--rtc", action="store_true", help="the board has a DS3231 (keeps its time)"),
            arg(
                "--baud",
                type=int,
                default=115200,
                help="its serial line's rate, both ways (0: as fast as the host; default: %(default)s)",
            ),
            arg(
                "--no-auto-reset",
                dest="auto_reset",
                action="store_false",
                help="its RFC 2217 port's DTR/RTS reset nothing (a board without the circuit)",
            ),
            arg(
                "--blank",
                action="store_true",
                help="plain MicroPython, nothing of tapkit yet (for a first tapkit flash)",
            ),
            HEAP,
        ),
        json="lines",
    ),
    Command(
        ("emulate", "tap"),
        tap,
        "tap a card file on a running virtual terminal",
        (
            _BOARD,
            CARDFILE,
            arg("--timeout", type=float, default=15.0, help="seconds to wait for the terminal"),
        ),
    ),
    Command(
        ("emulate", "press"),
        press,
        "press keys on a running virtual terminal's keypad",
        (
            _BOARD,
            arg("keys", nargs="?", help='keys in order, e.g. "15000#", "R#", "B2"'),
            arg("--meter", type=int, metavar="RIAL", help="a taximeter line: FARE RIAL"),
        ),
    ),
)
