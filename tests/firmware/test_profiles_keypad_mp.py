"""The keypad profiles on the real MicroPython VM (112 KB heap, the built .mpy), table-driven: the POS
refund (keys, which last sale may be refunded, what goes to the card and the journal), the taximeter
line of the taxi profile and prepaid parking.

The POS refund runs against a stand-in terminal that records the card commands and journal records it
is asked for (the end-to-end tests run the same path on emulated cards: tests/e2e/test_profiles_*.py).
"""

import json

NOW = 1795000000
POS = 3001
SALE, REFUND, CREDIT = 1, 3, 2

# (name, keys before the tap, card's newest trip [kind, seconds ago, terminal, amount, profile] or
#  None, table, expected: "wait" | "sale N" | "none" (no sale to refund) | "refund N")
REFUNDS = [
    ("no refund asked, nothing typed", "", [SALE, 60, POS, 15000, 4], {}, "wait"),
    ("a sale typed", "15#", [SALE, 60, POS, 15000, 4], {}, "sale 15"),
    ("R without the confirmation", "R", [SALE, 60, POS, 15000, 4], {}, "wait"),
    ("R then * cancels", "R*", [SALE, 60, POS, 15000, 4], {}, "wait"),
    ("R then a digit cancels", "R5", [SALE, 60, POS, 15000, 4], {}, "wait"),
    ("refund of this terminal's sale", "R#", [SALE, 60, POS, 15000, 4], {}, "refund 15000"),
    ("R clears a typed amount", "15#R#", [SALE, 60, POS, 15000, 4], {}, "refund 15000"),
    ("at the window's end", "R#", [SALE, 600, POS, 15000, 4], {}, "refund 15000"),
    ("after the window", "R#", [SALE, 601, POS, 15000, 4], {}, "none"),
    ("the table's window", "R#", [SALE, 1700, POS, 15000, 4], {"refund": 1800}, "refund 15000"),
    ("refunds switched off", "R#", [SALE, 5, POS, 15000, 4], {"refund": 0}, "none"),
    ("another terminal's sale", "R#", [SALE, 60, 3002, 15000, 4], {}, "none"),
    ("a bus ride is no sale", "R#", [SALE, 60, POS, 15000, 1], {}, "none"),
    ("refunded already", "R#", [REFUND, 30, POS, 15000, 4], {}, "none"),
    ("a top-up since the sale", "R#", [CREDIT, 30, 9, 50000, 0], {}, "none"),
    ("a new card", "R#", None, {}, "none"),
    ("a free sale", "R#", [SALE, 60, POS, 0, 4], {}, "none"),
    ("a clock behind the sale", "R#", [SALE, -5, POS, 15000, 4], {}, "none"),
]

POS_SCRIPT = r"""
import json, sys
from card_schema import citizen
from firmware import msg
from firmware import profile_pos as p
from firmware.app import Terminal
msg.setup({})
cases, now, tid = json.loads(open(sys.argv[1]).read())

class Card:
    def __init__(self, log):
        self.log = log
    def get_value(self, f, mode):
        self.log.append(["get_value", f])
        return 40000
    def debit(self, f, amount, mode, cmd=0xDC):
        self.log.append(["credit" if cmd == 0x1C else "debit", f, amount])
    def commit_transaction(self):
        self.log.append(["commit"])

class J:
    full = False

class Term:
    def __init__(self, table):
        self.table = table
        self.terminal_id = tid
        self.log = []
        self.card = Card(self.log)
        self.journal = J()
        self.pending = None
        self.shown = []
    def show(self, a, b="", sound=None):
        self.shown.append([a, b, sound])
    def _write_trip(self, counter, now, amount, balance, flags, kind=1):
        self.log.append(["trip", counter, amount, balance, kind])
    def _journal(self, uid, now, kind, result, counter, amount, balance):
        self.log.append(["journal", kind, counter, amount, balance])
        return 77
    # the terminal's real journal-then-commit step (firmware/app.py), on this fake terminal
    _commit = Terminal._commit

for name, keys, rec, table, _ in cases:
    p.done(None, 0)
    t = Term(table)
    for k in keys:
        p.key(t, k)
    raw = last = None
    if rec:
        kind, ago, term, amount, prof = rec
        raw = bytearray(32)
        citizen.pack_trip_into(raw, 5, now - ago, term, amount, 25000, 0, 0, kind, prof, 0, 0)
        last = citizen.unpack_trip(raw)
    fare, flags = p.price(table, 0, 0, now, raw, tid)
    if fare == -4:
        p.own(t, b"\x04" * 7, last, 5 if last else 0, now)
    print(json.dumps([name, fare, t.log, t.shown[-1:], p.refund]))

# the card leaves as the refund commits (its answer is lost): the terminal remembers the pending
# refund (the card's trip log tells next time whether it committed), the refund stays asked
from firmware import pn532
class GoneCard(Card):
    def commit_transaction(self):
        raise pn532.CardGone("gone", 1)
p.done(None, 0)
t = Term({})
t.card = GoneCard(t.log)
for k in "R#":
    p.key(t, k)
raw = bytearray(32)
citizen.pack_trip_into(raw, 5, now - 60, tid, 15000, 25000, 0, 0, 1, 4, 0, 0)
try:
    p.own(t, b"\x04" * 7, citizen.unpack_trip(raw), 5, now)
except pn532.CardGone:
    print(json.dumps(["#lost", [t.pending[0] == b"\x04" * 7] + list(t.pending[1:]), p.refund]))
"""


def _expected(want):
    if want == "wait":
        return -3, []
    if want.startswith("sale"):
        return int(want.split()[1]), []
    if want == "none":
        return -4, []
    amount = int(want.split()[1])
    return -4, [
        ["get_value", 2],
        ["credit", 2, amount],
        ["trip", 6, amount, 40000 + amount, REFUND],
        ["journal", 6, 6, amount, 40000 + amount],
        ["commit"],
    ]


def test_pos_refund_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps([REFUNDS, NOW, POS]))
    (tmp_path / "pos_mp.py").write_text(POS_SCRIPT)
    p = mp_run(tmp_path / "pos_mp.py", tmp_path / "cases.json", check=True)
    got = {r[0]: r[1:] for r in map(json.loads, p.stdout.splitlines())}
    assert got["#lost"] == [[True, 77, 6, NOW], 2]
    wrong = []
    for name, _, _, _, want in REFUNDS:
        fare, log, shown, refund_state = got[name]
        exp_fare, exp_log = _expected(want)
        if fare != exp_fare or log != exp_log:
            wrong.append((name, fare, log, exp_fare, exp_log))
        if want == "none" and shown != [["No sale to refund", "", "refused"]]:
            wrong.append((name, shown))
        if want.startswith("refund"):  # done: the refund is used up, and the display says so
            amount = int(want.split()[1])
            line1 = "Refund  +%s Rial" % format(amount, ",")
            if refund_state != 0 or shown[0][0] != line1 or shown[0][2] != "ok":
                wrong.append((name, shown, refund_state))
    assert not wrong, wrong


def test_pos_refund_keys_show_the_question(mp_run):
    code = (
        "from firmware import msg\n"
        "from firmware import profile_pos as p\n"
        "msg.setup({})\n"
        "class T:\n"
        "    table = None\n"
        "    def show(self, a, b='', s=None): print(a + ' | ' + b)\n"
        "t = T()\n"
        "for k in 'R#*': p.key(t, k)\n"
    )
    p = mp_run(code, check=True)
    assert p.stdout.splitlines() == [
        "Refund last sale? | #=OK *=cancel",
        "Refund | Tap your card",
        "Amount | ",
    ]


# (name, keys, expected [amount to pay, shares, total] after them)
METER = [
    ("a meter line arms the fare", "FARE 123000\n", [123000, 1, 1]),
    ("carriage return ends it too", "FARE 5000\r", [5000, 1, 1]),
    ("replaces an armed typed fare", "900#FARE 123000\n", [123000, 1, 1]),
    ("split after a meter line", "FARE 90000\nB3", [30000, 3, 3]),
    ("an empty line arms nothing", "FARE \n", [-3, 0, 0]),
    ("ignored while a split is partly paid", "PAID", [30000, 2, 3]),
    ("digits after a line are the keypad's", "FARE 100\n7#", [7, 1, 1]),
]

TAXI_SCRIPT = r"""
import json, sys
from firmware import msg
from firmware import profile_taxi as p
msg.setup({})
class T:
    table = None
    def show(self, a, b="", s=None):
        pass
t = T()
for name, keys, _ in json.loads(open(sys.argv[1]).read()):
    if keys == "PAID":  # 90,000 split in 3, one share paid, then the meter sends a new fare
        p.key(t, "*")
        for k in "FARE 90000\nB3":
            p.key(t, k)
        p.done(t, 30000)
        keys = "FARE 555\n"
    else:
        p.key(t, "*")
    for k in keys:
        p.key(t, k)
    amount = p.price(None, 0, 0, 0, None, 0)[0]
    print(json.dumps([name, [amount, p.shares, p.total]]))
"""


def test_taximeter_line_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps(METER))
    (tmp_path / "taxi_mp.py").write_text(TAXI_SCRIPT)
    p = mp_run(tmp_path / "taxi_mp.py", tmp_path / "cases.json", check=True)
    got = dict(map(json.loads, p.stdout.splitlines()))
    wrong = [(n, got[n], want) for n, _, want in METER if got[n] != want]
    assert not wrong, wrong


RULE = {"grace": 10, "steps": [[60, 20000], [120, 50000]], "hourly": 30000, "cap": 200000}
PREPAID = {"zones": {"1": dict(RULE, prepaid=60), "2": RULE}, "repeat": 60}
OPEN = 2

# (name, meter zone, newest record [seconds ago, terminal, amount, zone, flags] or None, expected
#  [amount, flags], duration)
PREPAID_CASES = [
    ("tap in pays the prepaid hour", 1, None, [20000, OPEN], 0),
    ("a zone without prepaid taps in free", 2, None, [0, OPEN], 0),
    ("leaving early refunds nothing", 1, [20 * 60, 7001, 20000, 1, OPEN], [0, 0], 20),
    ("inside the prepaid hour", 1, [60 * 60, 7001, 20000, 1, OPEN], [0, 0], 60),
    ("overstay pays the difference", 1, [95 * 60, 7001, 20000, 1, OPEN], [30000, 0], 95),
    ("a long overstay", 1, [181 * 60, 7001, 20000, 1, OPEN], [90000, 0], 181),
    ("overstay up to the cap", 1, [600 * 60, 7001, 20000, 1, OPEN], [180000, 0], 600),
    ("other zone's cap less the prepaid", 2, [30 * 60, 7001, 20000, 1, OPEN], [180000, 0], 30),
]

PARK_SCRIPT = r"""
import json, sys
from card_schema import citizen
from firmware import profile_parking as p
table, cases, now = json.loads(open(sys.argv[1]).read())
for name, zone, rec, _, _ in cases:
    p.zone = zone
    raw = None
    if rec:
        ago, term, amount, z, fl = rec
        raw = bytearray(32)
        citizen.pack_trip_into(raw, 5, now - ago, term, amount, 1000, 0, 0, 1, 3, z, fl)
    print(json.dumps([name, list(p.price(table, 0, 0, now, raw, 7002)), p.duration]))
"""


def test_parking_prepaid_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps([PREPAID, PREPAID_CASES, NOW]))
    (tmp_path / "park_mp.py").write_text(PARK_SCRIPT)
    p = mp_run(tmp_path / "park_mp.py", tmp_path / "cases.json", check=True)
    got = {r[0]: r[1:] for r in map(json.loads, p.stdout.splitlines())}
    wrong = [(n, got[n], [w, d]) for n, _, _, w, d in PREPAID_CASES if got[n] != [w, d]]
    assert not wrong, wrong
