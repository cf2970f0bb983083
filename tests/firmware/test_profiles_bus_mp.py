"""The bus profile's fares, the signed tables and the message catalogue, on the real MicroPython VM
(112 KB heap, the built .mpy): table-driven, each case a ride as the terminal prices it."""

import binascii
import calendar
import json

import pytest

from card_schema import signed, signed_host, tariff
from harness import vm

TERMINAL = 1001
TZ = 12600  # Tehran, +3:30
TABLE = {
    "fares": {"7": 25000, "12": 30000},
    "conc": [100, 50, 30, 0],
    "peak": {"pct": 125, "days": [5, 6, 0, 1, 2], "spans": [[420, 540], [990, 1140]]},
    "tz": TZ,
    "transfer": {"window": 5400, "pct": 50},
    "repeat": 10,
}
ADULT, STUDENT, SENIOR, STAFF = range(4)
DEBIT, CREDIT = 1, 2


def at(day, hh, mm, ss=0):
    """Unix time of local (Tehran) 2026-11-23 (a Monday) + `day` days, hh:mm:ss."""
    return calendar.timegm((2026, 11, 23 + day, hh, mm, ss, 0, 0, 0)) - TZ


MON_NOON = at(0, 12, 0)
THU_0800 = at(3, 8, 0)  # Thursday: not a peak day in this table


def trip(ago, line=12, kind=DEBIT, terminal=2002, flags=0, profile=1, now=MON_NOON, counter=5):
    return [counter, now - ago, terminal, 25000, 50000, line, 0, kind, profile, 0, flags]


# (name, line, holder, now, trips newest first, expected amount, expected flags)
CASES = [
    ("adult off-peak", 7, ADULT, MON_NOON, [], 25000, 0),
    ("other line", 12, ADULT, MON_NOON, [], 30000, 0),
    ("student", 7, STUDENT, MON_NOON, [], 12500, 0),
    ("senior", 7, SENIOR, MON_NOON, [], 7500, 0),
    ("staff rides free", 7, STAFF, MON_NOON, [], 0, 0),
    ("before the morning peak", 7, ADULT, at(0, 6, 59, 59), [], 25000, 0),
    ("peak starts at 07:00", 7, ADULT, at(0, 7, 0), [], 31250, 0),
    ("last peak minute", 7, ADULT, at(0, 8, 59, 59), [], 31250, 0),
    ("peak ends at 09:00", 7, ADULT, at(0, 9, 0), [], 25000, 0),
    ("evening peak", 7, ADULT, at(0, 16, 30), [], 31250, 0),
    ("evening peak ends 19:00", 7, ADULT, at(0, 19, 0), [], 25000, 0),
    ("no peak on Thursday", 7, ADULT, THU_0800, [], 25000, 0),
    ("peak on Saturday", 7, ADULT, at(5, 8, 0), [], 31250, 0),
    ("student at peak", 7, STUDENT, at(0, 8, 0), [], 15625, 0),
    ("transfer inside the window", 7, ADULT, MON_NOON, [trip(1800)], 12500, 1),
    ("transfer at the window's end", 7, ADULT, MON_NOON, [trip(5400)], 12500, 1),
    ("outside the window", 7, ADULT, MON_NOON, [trip(5401)], 25000, 0),
    ("same line is no transfer", 7, ADULT, MON_NOON, [trip(1800, line=7)], 25000, 0),
    ("no transfer after a transfer", 7, ADULT, MON_NOON, [trip(1800, flags=1)], 25000, 0),
    ("no transfer from parking", 7, ADULT, MON_NOON, [trip(1800, profile=3)], 25000, 0),
    ("student transfer", 7, STUDENT, MON_NOON, [trip(600)], 6250, 1),
    (
        "transfer behind a top-up",
        7,
        ADULT,
        MON_NOON,
        [trip(300, kind=CREDIT, terminal=9), trip(1800)],
        12500,
        1,
    ),
    ("top-up alone is no ride", 7, ADULT, MON_NOON, [trip(300, kind=CREDIT)], 25000, 0),
    ("repeat tap", 7, ADULT, MON_NOON, [trip(5, line=7, terminal=TERMINAL)], -1, 0),
    ("repeat tap, 9 s", 7, ADULT, MON_NOON, [trip(9, line=7, terminal=TERMINAL)], -1, 0),
    (
        "10 s later is a new ride",
        7,
        ADULT,
        MON_NOON,
        [trip(10, line=7, terminal=TERMINAL)],
        25000,
        0,
    ),
    ("another validator, same line", 7, ADULT, MON_NOON, [trip(5, line=7)], 25000, 0),
    ("line not in the table", 99, ADULT, MON_NOON, [], -2, 0),
]

SCRIPT = vm.script("bus_fares")  # harness/mp/bus_fares.py


def _run(mp_run, tmp_path, table, cases):
    (tmp_path / "cases.json").write_text(json.dumps([table, cases]))
    p = mp_run(SCRIPT, tmp_path / "cases.json", TERMINAL, check=True)
    return {r[0]: (r[1], r[2]) for r in map(json.loads, p.stdout.splitlines())}


def test_bus_fares_table_driven(mp_run, tmp_path):
    got = _run(mp_run, tmp_path, TABLE, CASES)
    wrong = [
        (name, got.get(name), (amount, flags))
        for name, _, _, _, _, amount, flags in CASES
        if got.get(name) != (amount, flags)
    ]
    assert not wrong, wrong


def test_default_fare_and_rounding(mp_run, tmp_path):
    table = dict(TABLE, default=20000, round=1000)
    cases = [
        ("unlisted line takes the default", 99, ADULT, MON_NOON, [], 20000, 0),
        ("student at peak, rounded down", 7, STUDENT, at(0, 8, 0), [], 15000, 0),
        ("flat table", 7, SENIOR, MON_NOON, [], 7000, 0),
    ]
    got = _run(mp_run, tmp_path, table, cases)
    assert got == {c[0]: (c[5], c[6]) for c in cases}


def test_flat_fare_without_table_options(mp_run, tmp_path):
    cases = [("flat", 7, STUDENT, at(0, 8, 0), [trip(60)], 25000, 0)]
    assert _run(mp_run, tmp_path, {"default": 25000}, cases) == {"flat": (25000, 0)}


KEY = bytes(range(16))
DENY_SCRIPT = vm.script("deny_lookup")  # harness/mp/deny_lookup.py


def _uid(i):
    return bytes([4, i // 256, i % 256, i * 7 % 256, 0x20, 0x30, 0x40])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 300])
def test_deny_list_lookup(mp_run, tmp_path, n):
    _lookup(mp_run, tmp_path, n)


def _lookup(mp_run, tmp_path, n):
    entries = {_uid(i): i % 2 for i in range(1, n + 1)}
    blob = signed.seal(KEY, signed.KIND_DENY, 4, tariff.pack_deny(entries))
    (tmp_path / "deny.bin").write_bytes(blob)
    probes = [_uid(i) for i in range(0, n + 2)] + [b"\xff" * 7, b"\x00" * 7]
    p = mp_run(
        DENY_SCRIPT,
        tmp_path / "deny.bin",
        *[binascii.hexlify(u).decode() for u in probes],
        check=True,
    )
    lines = p.stdout.splitlines()
    assert lines[0] == "load 4"
    got = dict(line.split() for line in lines[1:])
    for u in probes:
        assert int(got[binascii.hexlify(u).decode()]) == entries.get(u, -1)
    return int(got["heap"])


def test_deny_list_of_100000_cards_in_constant_ram(mp_run, tmp_path):
    # 800 KB: verified where it lies and searched in the file; a lookup allocates nothing, like one
    # in a 7-entry list
    entries = {
        bytes([4]) + (i * 2654435761 % 2**48).to_bytes(6, "big"): i % 2 for i in range(100000)
    }
    blob = signed_host.seal_fast(KEY, signed.KIND_DENY, 9, tariff.pack_deny(entries))
    (tmp_path / "deny.bin").write_bytes(blob)
    listed = sorted(entries)[::9973]
    probes = listed + [b"\x05" + bytes(6), b"\xff" * 7]
    p = mp_run(
        DENY_SCRIPT, tmp_path / "deny.bin", *[u.hex() for u in probes], check=True, timeout=300
    )
    lines = p.stdout.splitlines()
    assert lines[0] == "load 9"
    got = dict(line.split() for line in lines[1:])
    assert [int(got[u.hex()]) for u in probes] == [entries[u] for u in listed] + [-1, -1]
    assert int(got["heap"]) == _lookup(mp_run, tmp_path, 7) == 0


def test_tampered_deny_list_is_refused(mp_run, tmp_path):
    blob = bytearray(signed.seal(KEY, signed.KIND_DENY, 4, tariff.pack_deny({_uid(1): 1})))
    blob[signed.HEADER + 10] ^= 1  # flip one action bit: "block" becomes "refuse"
    (tmp_path / "deny.bin").write_bytes(bytes(blob))
    p = mp_run(DENY_SCRIPT, tmp_path / "deny.bin", check=True)
    assert p.stdout.strip() == "refused bad signature"


def test_deny_lookup_refuses_an_unsorted_list():
    entries = tariff.pack_deny({_uid(1): 0, _uid(2): 0})
    swapped = entries[:4] + entries[12:20] + entries[4:12]

    class F:  # a file over the payload
        def __init__(self, b):
            self.b, self.p = b, 0

        def seek(self, p):
            self.p = p

        def read(self, n):
            self.p += n
            return self.b[self.p - n : self.p]

        def readinto(self, mv):
            d = self.read(len(mv))
            mv[: len(d)] = d
            return len(d)

    tariff.check(signed.KIND_DENY, F(entries), len(entries))
    with pytest.raises(ValueError, match="not strictly sorted"):
        tariff.check(signed.KIND_DENY, F(swapped), len(swapped))


MSG_SCRIPT = r"""
from firmware import msg
for cfg in ({}, {"unit": "toman"}, {"lang": "fa", "unit": "toman"}, {"lang": "fa"}):
    msg.setup(cfg)
    print(msg.text(msg.INSUFFICIENT) + "|" + msg.money(1234560) + "|" + msg.money(0) + "|" + msg.money(-25000))
"""


def test_messages_catalogue_and_units(mp_run, tmp_path):
    (tmp_path / "msg_mp.py").write_text(MSG_SCRIPT)
    p = mp_run(tmp_path / "msg_mp.py", check=True)
    assert p.stdout.splitlines() == [
        "Insufficient balance|1,234,560 Rial|0 Rial|-25,000 Rial",
        "Insufficient balance|123,456 Toman|0 Toman|-2,500 Toman",
        "موجودی کافی نیست|123,456 تومان|0 تومان|-2,500 تومان",
        "موجودی کافی نیست|1,234,560 ریال|0 ریال|-25,000 ریال",
    ]


def test_catalogues_have_every_message():
    import ast

    lens = []
    for lang in ("en", "fa"):
        with open("firmware/msg_%s.py" % lang) as f:
            tree = ast.parse(f.read())
        lens.append(len(tree.body[-1].value.elts))
    with open("firmware/msg.py") as f:
        n = sum(1 for line in f if "= const(" in line)
    assert lens == [n, n]


@pytest.mark.parametrize("error", ["MemoryError", "EIO"])
def test_a_deny_list_in_use_stays_in_use_when_a_reload_fails(mp_run, tmp_path, error):
    """After an INSTALL the terminal verifies its tables again (firmware/tables.py load). A
    MemoryError in that verification (a fragmented heap beside a host's sync) or a flash read
    error (OSError EIO: the file is there, unlike ENOENT, "none provisioned") must leave the
    verified list in use: both used to empty the terminal's deny list first, and taps until a
    later pass verified it again were not checked against any list."""
    listed = _uid(5)
    blob = signed.seal(KEY, signed.KIND_DENY, 4, tariff.pack_deny({listed: 1, _uid(6): 0}))
    (tmp_path / "deny.bin").write_bytes(blob)
    args = [listed.hex()] + (["EIO"] if error == "EIO" else [])
    p = mp_run(vm.script("tables_keep"), *args, cwd=tmp_path, check=True)
    assert p.stdout.split("\n")[:3] == ["loaded 4 1", "kept 4 1", "reloaded 4 1"]
