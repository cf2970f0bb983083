"""Merchant POS (a bakery counter): the cashier types the amount, the customer taps.

Keys (board.json ui.keypad): 0-9 type the amount in the display unit (config "unit": Toman typed,
Rial charged), "#" arms it (the next digit starts a new amount: "4#" rung again is 4, not 44), "*"
clears. The armed amount stays until a charge commits or "*": a
refused card (insufficient balance) can be followed by another card for the same sale. A tap with
nothing armed is refused ("Enter amount first"), nothing journalled. No concessions, no repeat
window: two sales in a row on the same card are two sales.

Refund of the last sale: "R" asks ("Refund last sale? #=OK *=cancel"), "#" is the merchant's
confirmation, then the customer taps. Refunded is the card's own last sale, only when the card's
newest trip record is a sale of this terminal (so once: the refund becomes the newest record) made at
most the table's "refund" seconds ago (default 600; 0: no refunds). One transaction: GetValue ->
LimitedCredit(sale amount, debit key) -> WriteRecord(trip kind refund, counter + 1) -> journal
(KIND_REFUND, the amount given back, the new balance) -> CommitTransaction. The card itself allows a
LimitedCredit only up to its last debit, and once (DESFire value-file semantics). Anything else
("No sale to refund") changes nothing and journals nothing; the refund stays asked for the next tap.

Fare table (optional): {"max": Rial, "refund": seconds}.

Contract (firmware/app.py's module doc): PROFILE, HISTORY, price() (WAIT while nothing is armed,
OWN for a confirmed refund), key(), idle(), own() (through term.write_trip and term.commit), done().
"""

from micropython import const

from card_schema import citizen, desfire, taprecord
from firmware import journal, msg

PROFILE = const(4)  # = card_schema.profile.POS
HISTORY = const(1)
_MAX_TYPED = const(99999999)
_WINDOW = const(600)
_WAIT = const(-3)  # = card_schema.profile.WAIT
_OWN = const(-4)  # = card_schema.profile.OWN
_LIMITED_CREDIT = const(0x1C)  # = card_schema.desfire_admin.CMD_LIMITED_CREDIT
_TRIP_REFUND = const(3)  # = card_schema.citizen_host.TRIP_REFUND
_TR_KIND = const(7)  # = card_schema.citizen_host.TR_KIND
_TR_PROFILE = const(8)  # = card_schema.citizen_host.TR_PROFILE

typed = 0  # in the display unit, as typed
armed = 0  # Rial
refund = 0  # 1: "R" pressed, waiting for "#"; 2: confirmed, the next card is refunded


def key(term, k):
    global typed, armed, refund
    if k == "R":
        typed = armed = 0
        refund = 1
    elif refund:
        if k == "#":
            refund = 2
        else:  # "*" or any other key cancels the refund
            refund = 0
    elif "0" <= k <= "9":
        if typed * 10 + int(k) <= _MAX_TYPED:
            typed = typed * 10 + int(k)
        armed = 0
    elif k == "*":
        typed = armed = 0
    elif k == "#" and typed:
        a = msg.rial(typed)
        mx = (term.table or {}).get("max", 0)
        if mx and a > mx:
            typed = 0
            term.show(msg.text(msg.AMOUNT) + " > " + msg.money(mx), "", "refused")
            return
        armed = a
        typed = 0  # the next digit starts a new amount (a sale rung again is not appended)
    idle(term)


def idle(term):
    if refund == 1:
        term.show(msg.text(msg.REFUND_ASK), msg.text(msg.CONFIRM))
    elif refund:
        term.show(msg.text(msg.REFUND), msg.text(msg.IDLE))
    elif armed:
        term.show(msg.text(msg.AMOUNT) + " " + msg.money(armed), msg.text(msg.IDLE))
    else:
        term.show(msg.text(msg.AMOUNT), str(typed) if typed else "")


def price(t, line, holder, now, trips, terminal_id):
    if refund == 2:
        return _OWN, 0
    return (armed, 0) if armed else (_WAIT, 0)


def own(term, uid, last, counter, now):
    """The refund tap (after the terminal's card checks: blocked, expired, deny list)."""
    if not (
        last
        and last[_TR_KIND] == citizen.TRIP_DEBIT
        and last[_TR_PROFILE] == PROFILE
        and last[citizen.TR_TERMINAL] == term.terminal_id
        and last[citizen.TR_AMOUNT] > 0
        and 0 <= now - last[citizen.TR_TIME] <= (term.table or {}).get("refund", _WINDOW)
    ):
        term.show(msg.text(msg.NO_SALE), "", "refused")
        return
    if term.journal.full:
        raise journal.JournalFull("journal full")
    amount = last[citizen.TR_AMOUNT]
    card = term.card
    balance = card.get_value(citizen.FILE_PURSE, desfire.MODE_ENC) + amount
    card.debit(citizen.FILE_PURSE, amount, desfire.MODE_ENC, _LIMITED_CREDIT)
    counter += 1
    term.write_trip(counter, now, amount, balance, 0, _TRIP_REFUND)
    term.commit(uid, now, taprecord.KIND_REFUND, counter, amount, balance)
    done(term, amount)
    term.show(
        msg.text(msg.REFUND) + "  +" + msg.money(amount),
        msg.text(msg.BALANCE) + " " + msg.money(balance),
        "ok",
    )


def done(term, amount):
    global typed, armed, refund
    typed = armed = refund = 0
