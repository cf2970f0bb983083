"""`make bench`: the performance table, measured on the real parts (not installed: a source checkout).

    python -m bench [SECTION ...] [--json] [--taps N] [--drops N] [--cuts N] [--sync-vehicles N]
    make bench [SECTIONS="journal tearing"]           tapkit bench ... (the same, from a checkout)

Sections, in table order (each a module of this package):

    tap       bus tap on a virtual board: APDUs, air bytes and time, heap around a tap, VM time
    heap      heap each firmware module costs once imported (.mpy on the VM)
    flash     `tapkit flash` at 115,200 baud on a virtual board, its watchdog running: first, re-flash;
              then an 8 KB table's config push on that line: bytes the console lost (0)
    tearing   field drops across the firmware's own tap (harness/tearing.py), committed whole or not
    sync      serial sync bytes and time per record; HTTP ingest into SQLite and PostgreSQL
    journal   flash erases/programs per tap, littlefs beside it, boot recovery, power cuts survived
    profiles  APDUs per tap and peak heap in a tap, per terminal profile
    backoffice  a generated month of a 3,000-vehicle fleet: audit, report and dashboard page times
    money     every rial: power cuts, lost/damaged answers, riders next; the ledger against the cards
    ota       firmware updates: the bundle's size, update times over Wi-Fi and USB (115,200 baud), the
              heap of a tap during a download, power cuts at every flash write of an update

The result convention: every section's `run(opts)` returns `(rows, data)`:
- rows: a list of row(section, name, value, unit, note) dicts, {"section", "name", "value", "unit",
  "note"}; value is a number (rounded to what it means), or None for "not measured";
- data: the section's measurements as a JSON dict; failures, if any, under "fails" (a list of lines
  that replay them), which makes the run exit 1.

`--json` prints one JSON object: {"sections": [names run], "rows": [every row], SECTION: data, ...}.
Its keys are stable; name a figure by its path, e.g. `sync.SQLite.ingest_per_s`,
`sync.PostgreSQL.bulk_per_s`, `tearing.committed`, `journal.reentrant.cuts`, `heap.total`,
`money.phantom_charges`, `ota.cuts`, `ota.fails`, `ota.wifi_update_s`, `ota.download_heap_free`,
`flash.first_s`, `flash.reflash_s`, `flash.console_lost`.
"""

import argparse

SECTIONS = (
    "tap",
    "heap",
    "flash",
    "tearing",
    "sync",
    "journal",
    "profiles",
    "backoffice",
    "money",
    "ota",
)


def parser(prog="python -m bench"):
    ap = argparse.ArgumentParser(prog=prog, description="the tapkit performance table")
    ap.add_argument(
        "sections", nargs="*", metavar="SECTION", help="run only these (%s)" % ", ".join(SECTIONS)
    )
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("--taps", type=int, default=10, help="bus taps measured (median)")
    ap.add_argument("--drops", type=int, default=3000, help="tearing campaign field drops")
    ap.add_argument("--seed", type=int, default=1, help="tearing campaign seed")
    ap.add_argument("--cuts", type=int, default=10000, help="journal power cuts (reentrant run)")
    ap.add_argument("--ota-cuts", type=int, default=1000, help="firmware update power cuts")
    ap.add_argument(
        "--replay-ota", metavar="SEED:K", help="ota: rerun one failure id of the update campaign"
    )
    ap.add_argument("--cases", type=int, default=10000, help="money campaign cases")
    ap.add_argument("--workers", type=int, help="money campaign boards at once (default: cores)")
    ap.add_argument(
        "--sync-vehicles", type=int, default=40, help="vehicles x 500 taps for the ingest bench"
    )
    ap.add_argument(
        "--serial-records",
        type=int,
        default=10000,
        help="records of the measured serial sync at 115,200 baud (0: skip it)",
    )
    ap.add_argument(
        "--deny-cards",
        type=int,
        default=100000,
        help="cards of the deny list installed over USB and Wi-Fi (0: skip it)",
    )
    ap.add_argument(
        "--bo-taps",
        default="1000000",
        metavar="N[,N...]",
        help="backoffice: stored taps of the generated month (1000000,10000000 adds 10 M)",
    )
    ap.add_argument(
        "--load-terminals", type=int, default=3000, help="simulated terminals of the load test"
    )
    ap.add_argument(
        "--load-records",
        type=int,
        default=100,
        help="records each terminal of the load test sends",
    )
    ap.add_argument(
        "--replay",
        type=int,
        metavar="SEED",
        help="journal: rerun one reentrant seed and print its lines (with --mode)",
    )
    ap.add_argument("--mode", choices=("linear", "random"), default="random")
    return ap


def row(section, name, value, unit="", note=""):
    """One row of the bench table (see the module doc)."""
    return {"section": section, "name": name, "value": value, "unit": unit, "note": note}


def run(sections=SECTIONS, opts=None, progress=None):
    """Run `sections` (names from SECTIONS) with `opts` (the parsed options of __main__, or None
    for the defaults); returns the --json object. progress(name) is called before each section."""
    import importlib

    opts = opts or parser().parse_args([])
    out = {"sections": list(sections), "rows": []}
    for name in sections:
        if progress:
            progress(name)
        rows, data = importlib.import_module("bench." + name).run(opts)
        out["rows"] += rows
        out[name] = data
    return out


def fails(result):
    """Every failure line of a run() result, over all sections."""
    return [f for name in result["sections"] for f in result[name].get("fails", ())]
