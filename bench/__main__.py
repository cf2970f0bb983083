"""`python -m bench [SECTION ...] [--json]`: run the bench sections, print the table or one JSON object.

The table is rendered by the CLI's output module (host_tools/cli/output.py, the one place that imports
rich); `tapkit bench` runs this from a source checkout.
"""

import json
import sys

import bench


def render(result):
    """Print the bench table of a bench.run() result (the CLI's output module renders it)."""
    from host_tools.cli.output import console, measures_table

    taps = result.get("tap", {}).get("taps")
    title = "tapkit bench" + (" (median of %d taps)" % len(taps) if taps else "")
    console().print(measures_table(title, result["rows"]))


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
