"""Commands are data: each area module of the CLI lists its commands as `Command`s (a path of words,
a handler, a help line, its arguments); app.py builds the parser from the table.

    COMMANDS = (
        Command(("card", "show"), show, "holder, balance, last trips", (READER, KEYSTORE)),
        Command(("diag",), diag, "one screen about a terminal", (port(),), json="lines"),
    )
    GROUPS = {"card": "card office: issue, top up, show, block, refund"}

The rules every command keeps (tests/host_tools/cli/test_conventions.py walks the table):
- every option and positional has a help text; defaults are shown by the help formatter;
- every command gets --json from app.py, and must honour it: `json="object"` (one JSON document on
  stdout, the default) or `json="lines"` (JSON Lines: one compact object per event, for --watch,
  servers and long runs); stdout then carries nothing else (stories go to stderr);
- a serial port is declared with port() (or port(many=True)): `--port PORT|auto`, default
  $TAPKIT_PORT or auto; the handler calls ports.resolve_port(a.port) (or port_list(a));
- failures raise a TapkitError (exit 1), bad usage a UsageError (exit 2); errors.py has the rest.

A handler takes the parsed arguments and returns the exit code (None is 0).
"""

import collections
import os

Command = collections.namedtuple("Command", "path fn help args json", defaults=("object",))


def arg(*names, **kw):
    """One argparse argument: arg("--port", required=True) is add_argument("--port", required=True)."""
    return names, kw


class Env(str):
    """A default taken from an environment variable when it is set: Env("TAPKIT_DB", "x.db") is
    $TAPKIT_DB or "x.db", read when the parser is built (so tests can set the variable). The help
    formatter shows both."""

    def __new__(cls, var, fallback):
        s = str.__new__(cls, os.environ.get(var) or fallback)
        s.var = var
        s.fallback = fallback
        return s

    def fresh(self):
        return Env(self.var, self.fallback)


KEYSTORE = arg(
    "--keystore",
    default=Env("TAPKIT_KEYSTORE", "issuer.keys"),
    metavar="FILE",
    help="issuer keystore (tapkit keys init makes one)",
)
DB = arg(
    "--db",
    default=Env("TAPKIT_DB", "sqlite:///tapkit.db"),
    metavar="URL",
    help="the store: sqlite:///FILE or postgresql://...",
)


class lazy_choices:
    """argparse choices computed on first use (a name table whose module is costly to import at
    start-up). Give the option a metavar; "%(choices)s" in its help lists them."""

    def __init__(self, fn):
        self.fn = fn
        self.got = None

    def _all(self):
        if self.got is None:
            self.got = list(self.fn())
        return self.got

    def __contains__(self, x):
        return x in self._all()

    def __iter__(self):
        return iter(self._all())


def _table_kinds():
    from card_schema import signed_host

    return sorted(signed_host.KINDS)


TABLE_KIND = arg(
    "--kind",
    choices=lazy_choices(_table_kinds),
    required=True,
    metavar="KIND",
    help="what the table is: %(choices)s",
)

HEAP = arg(
    "--heap", default="112K", help="the virtual board's MicroPython heap (an ESP32 without PSRAM)"
)


def _profiles():
    from card_schema import profile_host

    return profile_host.PROFILES


def profile(help="the terminal's fare profile: %(choices)s"):
    return arg("--profile", choices=lazy_choices(_profiles), metavar="PROFILE", help=help)


PORT_HELP = "serial port of the terminal (/dev/ttyUSB0, COM3), or auto: the only one connected"


def port(many=False, help=PORT_HELP):
    """The --port option of every command that talks to a terminal: default $TAPKIT_PORT or auto.
    many=True: --port may be repeated (a.port is then a list; use port_list(a))."""
    if many:
        return arg(
            "--port",
            action="append",
            metavar="PORT",
            help=help + "; repeat for several (default: $TAPKIT_PORT or auto)",
        )
    return arg("--port", default=Env("TAPKIT_PORT", "auto"), metavar="PORT", help=help)


def port_list(a):
    """The ports of a port(many=True) option: as given, else [$TAPKIT_PORT or "auto"]."""
    return list(a.port) if a.port else [os.environ.get("TAPKIT_PORT") or "auto"]


PORT = port()
