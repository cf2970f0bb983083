"""The `tapkit` command line: one table of commands (each area module's COMMANDS), one parser built
from it, one error boundary (errors.py), one output module (output.py).

    tapkit keys init --keystore issuer.keys
    tapkit emulate card alice.card --new          # serve a blank emulated card to pcscd (vpcd)
    tapkit card issue --reader pcsc --balance 200000 --holder student
    tapkit emulate board --state run/bus-1 --terminal-id 1001 --fare 25000
    tapkit emulate tap --board run/bus-1 alice.card
    tapkit emulate board --state run/pos-1 --terminal-id 3001 --profile pos --fares pos.json
    tapkit emulate press --board run/pos-1 "15000#"     # the cashier's keypad (R# refunds)
    tapkit sync --port /dev/pts/5 --db sqlite:///taps.db --keystore issuer.keys
    tapkit report --db sqlite:///taps.db
    tapkit demo
    tapkit bench journal                          # from a source checkout: bench/

`main(argv)` returns the exit code (errors.py lists them) and is callable from tests; usage errors
return 2 instead of raising SystemExit. Errors are one line on stderr. The area modules import their
libraries inside the handlers, so `tapkit --help` loads no crypto, database or serial code.
"""

import argparse
import sys

from host_tools.cli import (
    backoffice,
    bench,
    card,
    demo,
    emulate,
    errors,
    fleet,
    keys,
    release,
    tariff,
)
from host_tools.cli.spec import Env

AREAS = (
    keys,
    card,
    emulate,
    fleet,
    backoffice,
    tariff,
    release,
    demo,
    bench,
)  # the order of `tapkit --help`

JSON_HELP = {
    "object": "print one JSON document on stdout instead of tables",
    "lines": "print JSON Lines on stdout: one object per event",
    "watch": "print one JSON document on stdout (with --watch: JSON Lines, one per event)",
}

EPILOG = (
    "environment: TAPKIT_PORT, TAPKIT_DB, TAPKIT_KEYSTORE (defaults), TAPKIT_DEBUG=1 (tracebacks). "
    "exit codes: 0 ok, 1 operation failed, 2 usage, 3 internal error, 130 interrupted."
)


def version():
    from importlib import metadata

    try:
        v = metadata.version("tapkit")
    except metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
        v = "unknown (not installed)"
    return "tapkit %s (Python %d.%d.%d)" % ((v,) + tuple(sys.version_info[:3]))


class VersionAction(argparse.Action):
    """--version, looked up only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, and which environment variable sets it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "%(default)" in text or "default:" in text or action.option_strings == []:
            return text
        if isinstance(d, Env):
            return "%s (default: $%s or %s)" % (text, d.var, d.fallback)
        if d is None or d is False or d == [] or d is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


def commands():
    """Every command of every area, in help order."""
    return [c for area in AREAS for c in area.COMMANDS]


def _fresh(kw):
    d = kw.get("default")
    return dict(kw, default=d.fresh()) if isinstance(d, Env) else kw


def parser():
    groups = {}
    for area in AREAS:
        groups.update(area.GROUPS)
    p = argparse.ArgumentParser(
        prog="tapkit",
        description="tapkit: fare terminals and cards",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action=VersionAction, help="print the version and exit")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    parents = {}
    for c in commands():
        parent = sub
        for depth, word in enumerate(c.path[:-1]):
            key = c.path[: depth + 1]
            if key not in parents:
                grp = parent.add_parser(
                    word, help=groups.get(" ".join(key)), formatter_class=HelpFormatter
                )
                parents[key] = grp.add_subparsers(dest="sub", required=True, metavar="COMMAND")
            parent = parents[key]
        sp = parent.add_parser(
            c.path[-1],
            help=c.help,
            description=c.help,
            formatter_class=HelpFormatter,
        )
        sp.set_defaults(fn=c.fn, json_mode=c.json)
        sp.add_argument("--json", action="store_true", help=JSON_HELP[c.json])
        for names, kw in c.args:
            sp.add_argument(*names, **_fresh(kw))
    return p


def main(argv=None):
    try:
        try:
            args = parser().parse_args(argv)
        except SystemExit as e:  # --help, --version (0) and usage errors (2)
            rc = e.code if isinstance(e.code, int) else errors.USAGE
        else:
            rc = errors.run(args.fn, args)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is seen by this boundary
        return rc
    except BrokenPipeError:  # `tapkit report | head -1`, `tapkit --help | head -1`
        return errors._pipe_closed()
    except KeyboardInterrupt:
        errors.say("interrupted")
        return errors.INTERRUPTED
