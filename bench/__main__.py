"""`python -m bench [SECTION ...] [--json]`: run the bench sections, print the table or one JSON object.

The table is rendered here and only here (rich); `tapkit bench` runs this same main().
"""

import json
import sys

import bench


def _value(r):
    if r["value"] is None:
        return "-"
    v = "%d" % r["value"] if isinstance(r["value"], int) else repr(r["value"])
    return "%s %s" % (v, r["unit"]) if r["unit"] else v


def render(result, console=None):
    """The bench table of a bench.run() result: one row per measure, a rule between sections."""
    from rich.console import Console
    from rich.table import Table

    taps = result.get("tap", {}).get("taps")
    title = "tapkit bench" + (" (median of %d taps)" % len(taps) if taps else "")
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("note")
    section = None
    for r in result["rows"]:
        if section is not None and r["section"] != section:
            t.add_section()
        section = r["section"]
        t.add_row(r["name"], _value(r), r["note"])
    (console or Console()).print(t)


def main(argv=None, prog="python -m bench"):
    a = bench.parser(prog).parse_args(argv)
    unknown = [s for s in a.sections if s not in bench.SECTIONS]
    if unknown:
        print(
            "%s: no section %s (sections: %s)" % (prog, unknown[0], ", ".join(bench.SECTIONS)),
            file=sys.stderr,
        )
        return 2
    if a.replay is not None and a.sections != ["journal"]:
        print(
            "%s: --replay replays a journal seed: python -m bench journal --replay S" % prog,
            file=sys.stderr,
        )
        return 2
    sections = [s for s in bench.SECTIONS if s in a.sections] or list(bench.SECTIONS)

    def progress(name):
        if not a.json:
            print("bench: %s ..." % name, file=sys.stderr, flush=True)

    result = bench.run(sections, a, progress)
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        render(result)
    fails = bench.fails(result)
    for f in fails:
        print("FAIL " + f, file=sys.stderr)
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
