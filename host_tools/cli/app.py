"""The `tapkit` command line: one table of commands (each area module's COMMANDS), one parser built
from it, one error boundary (errors.py), one output module (output.py).

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
    tapkit bench journal                          # from a source checkout: bench/

`main(argv)` returns the exit code and is callable from tests. Errors are one line on stderr.
"""

import argparse

from host_tools.cli import backoffice, bench, card, demo, emulate, errors, fleet, keys, tariff

AREAS = (
    keys,
    card,
    emulate,
    fleet,
    backoffice,
    tariff,
    demo,
    bench,
)  # the order of `tapkit --help`


def commands():
    """Every command of every area, in help order."""
    return [c for area in AREAS for c in area.COMMANDS]


def parser():
    groups = {}
    for area in AREAS:
        groups.update(area.GROUPS)
    p = argparse.ArgumentParser(prog="tapkit", description="tapkit: fare terminals and cards")
    sub = p.add_subparsers(dest="cmd", required=True)
    parents = {}
    for c in commands():
        parent = sub
        for depth, word in enumerate(c.path[:-1]):
            key = c.path[: depth + 1]
            if key not in parents:
                grp = parent.add_parser(word, help=groups.get(" ".join(key)))
                parents[key] = grp.add_subparsers(dest="sub", required=True)
            parent = parents[key]
        sp = parent.add_parser(c.path[-1], help=c.help)
        sp.set_defaults(fn=c.fn)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        for names, kw in c.args:
            sp.add_argument(*names, **kw)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    return errors.run(args.fn, args)
