"""The keypad profiles on the real MicroPython VM (112 KB heap, the built .mpy), table-driven: the POS
refund (keys, which last sale may be refunded, what goes to the card and the journal), the taximeter
line of the taxi profile and prepaid parking.

The POS refund runs against a stand-in terminal that records the card commands and journal records it
is asked for (the end-to-end tests run the same path on emulated cards: tests/e2e/test_profiles_*.py).
"""

import json
from harness import vm

NOW = 1795000000
POS = 3001
SALE, REFUND, CREDIT = 1, 3, 2

# (name, keys before the tap, card's newest trip [kind, seconds ago, terminal, amount, profile] or
#  None, table, expected: "wait" | "sale N" | "none" (no sale to refund) | "refund N")
REFUNDS = [
    ("no refund asked, nothing typed", "", [SALE, 60, POS, 15000, 4], {}, "wait"),
    ("a sale typed", "15#", [SALE, 60, POS, 15000, 4], {}, "sale 15"),
    ("a sale rung again is a new amount", "15#15#", [SALE, 60, POS, 15000, 4], {}, "sale 15"),
    ("another amount after an armed one", "15#7#", [SALE, 60, POS, 15000, 4], {}, "sale 7"),
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

POS_SCRIPT = vm.script("pos_cases")  # harness/mp/pos_cases.py


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
    p = mp_run(POS_SCRIPT, tmp_path / "cases.json", check=True)
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

TAXI_SCRIPT = vm.script("taxi_cases")  # harness/mp/taxi_cases.py


def test_taximeter_line_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps(METER))
    p = mp_run(TAXI_SCRIPT, tmp_path / "cases.json", check=True)
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

PARK_SCRIPT = vm.script("parking_prepaid")  # harness/mp/parking_prepaid.py


def test_parking_prepaid_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps([PREPAID, PREPAID_CASES, NOW]))
    p = mp_run(PARK_SCRIPT, tmp_path / "cases.json", check=True)
    got = {r[0]: r[1:] for r in map(json.loads, p.stdout.splitlines())}
    wrong = [(n, got[n], [w, d]) for n, _, _, w, d in PREPAID_CASES if got[n] != [w, d]]
    assert not wrong, wrong
