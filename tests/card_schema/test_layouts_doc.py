"""docs/architecture.md's byte layouts against the code: every layout table (marked
`<!-- layout module.FMT[+extra] = module.SIZE -->`) must list the fields of that struct format, in
order, with the offsets and sizes struct computes, and add up to the size constant the code uses."""

import importlib
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "architecture.md")
MARK = re.compile(
    r"<!-- layout (card_schema\.\w+)\.(\w+)(?:\+(\w+))? = (card_schema\.\w+)\.(\w+) -->"
)
ITEM = re.compile(r"(\d*)([xcbB?hHiIlLqQnNefdspP])")
# every layout the doc must carry (the formats that cross a boundary)
REQUIRED = {
    "card_schema.taprecord.FMT",
    "card_schema.citizen.INFO_FMT",
    "card_schema.citizen.TRIP_FMT",
    "card_schema.frames_host.HEADER_FMT",
    "card_schema.upload.BATCH_FMT",
    "card_schema.upload.ANSWER_FMT",
    "card_schema.issuersig_host.FMT",
}


def fields(fmt):
    """[(offset, size)] of the items of a little-endian struct format ("7s" is one item of 7)."""
    if fmt[0] != "<":
        raise AssertionError("%r: the formats are little endian, no padding" % fmt)
    out = []
    off = 0
    for count, code in ITEM.findall(fmt[1:]):
        n = int(count or 1)
        size = struct.calcsize("<" + code)
        if code in "sp":
            out.append((off, n))
            off += n
        elif code == "x":
            off += n
        else:
            for _ in range(n):
                out.append((off, size))
                off += size
    if off != struct.calcsize(fmt):
        raise AssertionError("could not follow %r" % fmt)
    return out


def layouts():
    """[(name, format, size constant, [(off, size) of the table rows])] of the doc."""
    lines = open(DOC).read().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARK.search(line)
        if not m:
            continue
        mod, attr, extra, size_mod, size_attr = m.groups()
        fmt = getattr(importlib.import_module(mod), attr) + (extra or "")
        size = getattr(importlib.import_module(size_mod), size_attr)
        rows = []
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip("|").split("|")]
            if cells[0].isdigit():
                rows.append((int(cells[0]), int(cells[1])))
        out.append(("%s.%s" % (mod, attr), fmt, size, rows))
    return out


def test_every_boundary_format_has_a_layout_table():
    assert REQUIRED <= {name for name, _, _, _ in layouts()}


def test_layout_tables_match_the_struct_formats():
    for name, fmt, size, rows in layouts():
        assert struct.calcsize(fmt) == size, "%s: %r is %d bytes, the code says %d" % (
            name,
            fmt,
            struct.calcsize(fmt),
            size,
        )
        assert rows == fields(fmt), "%s: the doc's table %r, the code's %r" % (
            name,
            rows,
            fields(fmt),
        )
