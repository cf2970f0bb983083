"""The POS profile's sales and refunds, table-driven (tests/firmware/test_profiles_keypad_mp.py).

micropython pos_cases.py CASES.json
"""

import json
import sys
from card_schema import citizen
from firmware import journal, msg, pn532
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
        self.log = []  # type: list
        self.card = Card(self.log)
        self.journal = J()
        self.mem = journal.Cards(4)  # the terminal's card memory (pending charges)
        self.pending = None
        self.shown = []
        self.errors = []  # type: list

    def show(self, a, b="", sound=None):
        self.shown.append([a, b, sound])

    def write_trip(self, counter, now, amount, balance, flags, kind=1):
        self.log.append(["trip", counter, amount, balance, kind])

    def _journal(self, uid, now, kind, result, counter, amount, balance):
        self.log.append(["journal", kind, counter, amount, balance])
        self.mem.update(77, kind, result, uid, counter, amount, balance, now)
        return 77

    def log_error(self, where, exc):
        self.errors.append(where)

    # the terminal's real journal-then-commit step (firmware/app.py), on this fake terminal
    commit = Terminal.commit


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
# refund in its card memory (the card's trip log tells whether it committed), the refund stays asked


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
except pn532.CardGone as e:
    if e.args[1:] != (-3,):  # firmware.app's code for a commit whose answer was lost
        raise
    i = t.mem.find(b"\x04" * 7)
    if i < 0 or not t.mem.get(i)[1] & 1:
        raise SystemExit("no pending refund after the lost commit")
    e = t.mem.get(i)
    print(json.dumps(["#lost", [e[0] == b"\x04" * 7, e[5], e[2], e[6]], p.refund]))
