"""`tapkit tariff`: fare tables and deny lists signed for one terminal, and checking a signed blob.

    tapkit tariff sign --terminal-id 1001 --kind fares --version 3 fares.json -o fares.bin
    tapkit tariff sign --terminal-id 1001 --kind deny --version 12 deny.json -o deny.bin
    tapkit tariff show fares.bin --terminal-id 1001          # verify and print what it holds

The formats and the checks are host_tools/fleet/tables.py's.
"""

import json
import os

from host_tools.cli.output import console, print_json, table
from host_tools.cli.spec import KEYSTORE, TABLE_KIND, Command, arg


def sign(a):
    from host_tools import keystore
    from host_tools.fleet import tables

    ks = keystore.load(a.keystore)
    blob = tables.blob_from_file(ks, a.terminal_id, a.kind, a.version, a.input)
    out = a.output or "%s.bin" % a.kind.replace("-", "_")
    if os.path.exists(out) and not os.path.isfile(
        out
    ):  # -o /dev/stdout, a fifo: never rename over
        with open(out, "wb") as f:
            f.write(blob)
    else:  # a file: the old blob or the new one, never half of one
        with open(out + ".new", "wb") as f:
            f.write(blob)
        os.replace(out + ".new", out)
    res = {
        "kind": a.kind,
        "version": a.version,
        "terminal_id": a.terminal_id,
        "bytes": len(blob),
        "output": out,
    }
    if a.json:
        print_json(res)
    else:
        print(
            "signed %s version %d for terminal %d: %s (%d bytes)"
            % (a.kind, a.version, a.terminal_id, out, len(blob))
        )
    return 0


def show(a):
    from host_tools import keystore
    from host_tools.fleet import tables

    ks = keystore.load(a.keystore)
    d = tables.read_blob_file(ks, a.terminal_id, a.blob)
    if a.json:
        print_json(d)
        return 0
    rows = [
        (k, json.dumps(v) if not isinstance(v, str) else v)
        for k, v in sorted((d.get("table") or d.get("entries")).items())
    ]
    title = "%s version %d, terminal %d" % (d["kind"], d["version"], d["terminal_id"])
    console(width=120).print(table(title, ["key", "value"], rows, right=()))
    return 0


_TERMINAL = arg(
    "--terminal-id", type=int, required=True, metavar="ID", help="the terminal it is signed for"
)

GROUPS = {"tariff": "fare tables and deny lists: sign, show"}
COMMANDS = (
    Command(
        ("tariff", "sign"),
        sign,
        "sign a fare table or deny list (JSON) for one terminal",
        (
            arg("input", help="the table as JSON (card_schema/tariff.py format)"),
            TABLE_KIND,
            arg("--version", type=int, required=True, help="the table's version number"),
            _TERMINAL,
            KEYSTORE,
            arg("-o", "--output", help="the blob (default: fares.bin, deny.bin, deny_delta.bin)"),
        ),
    ),
    Command(
        ("tariff", "show"),
        show,
        "verify a signed blob for a terminal and print it",
        (arg("blob", help="a signed blob (fares.bin, deny.bin...)"), _TERMINAL, KEYSTORE),
    ),
)
