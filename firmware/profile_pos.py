"""Merchant POS (a bakery counter): the cashier types the amount, the customer taps.

Keys (board.json ui.keypad): 0-9 type the amount in the display unit (config "unit": Toman typed,
Rial charged), "#" arms it, "*" clears. The armed amount stays until a charge commits or "*": a
refused card (insufficient balance) can be followed by another card for the same sale. A tap with
nothing armed is refused ("Enter amount first"), nothing journalled. Fare table (optional): {"max":
Rial}, the largest sale the terminal takes. No concessions, no repeat window: two sales in a row on
the same card are two sales.

Refund of the last sale is not in this profile yet: the card allows it (LimitedCredit with the debit
key, `DESFire.debit(file, amount, mode, 0x1C)`), but the journal has no refund record kind.
"""

from micropython import const

from firmware import msg

PROFILE = const(4)  # taprecord profile: pos
HISTORY = const(1)
_MAX_TYPED = const(99999999)

typed = 0  # in the display unit, as typed
armed = 0  # Rial


def key(term, k):
    global typed, armed
    if "0" <= k <= "9":
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
    idle(term)


def idle(term):
    if armed:
        term.show(msg.text(msg.AMOUNT) + " " + msg.money(armed), msg.text(msg.IDLE))
    else:
        term.show(msg.text(msg.AMOUNT), str(typed) if typed else "")


def price(t, line, holder, now, trips, terminal_id):
    return (armed, 0) if armed else (-3, 0)


def done(term, amount):
    global typed, armed
    typed = armed = 0
