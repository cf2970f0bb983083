"""Taxi: the driver types the fare on the keypad, the passenger taps; the fare can be split over
several cards.

Keys (board.json ui.keypad): 0-9 type the fare in the display unit, "#" arms it, "*" clears, "B"
then a digit 2..9 splits the armed fare over that many cards (each pays fare // n, the last one the
remainder). The driver sees what is paid and what is left; after the last share the meter is clear.
A tap with nothing armed is refused ("Enter amount first"), nothing journalled.

Taximeter: a meter wired to the unit sends its fare as a text line `FARE <Rial>\n` into the same
key channel (the virtual board: `tapkit emulate press --meter 123000`; a taxi unit's board.json names
the meter's UART under ui.taximeter). "F" starts a line (no key of the keypad sends it), digits up to
"\n" or "\r" are the fare in Rial, other characters are skipped; a complete line arms the fare as "#"
would, unless a split fare is partly paid (then it is ignored: the driver clears with "*" first).

Contract (firmware/app.py's module doc): PROFILE, HISTORY, price() (WAIT while nothing is armed),
key(), idle(), done().
"""

from micropython import const

from firmware import msg

PROFILE = const(2)  # = card_schema.profile.TAXI
HISTORY = const(1)
_MAX_TYPED = const(99999999)
_WAIT = const(-3)  # = card_schema.profile.WAIT

typed = 0  # display unit
remaining = 0  # Rial still to pay
shares = 0  # cards still to pay (0: nothing armed)
total = 0  # shares of this fare
_split = False  # "B" pressed: the next digit is the number of cards
_meter = -1  # a taximeter line being received: the fare so far (-1: none)


def key(term, k):
    global typed, remaining, shares, total, _split, _meter
    if k == "F":
        _meter = 0
        return
    if _meter >= 0:
        if "0" <= k <= "9":
            if _meter <= _MAX_TYPED:
                _meter = _meter * 10 + int(k)
            return
        if k != "\n" and k != "\r":
            return
        if _meter and shares == total:
            remaining = _meter
            shares = total = 1
            typed = 0
        _meter = -1
        idle(term)
        return
    if _split:
        _split = False
        if "2" <= k <= "9" and remaining and shares == total:
            shares = total = int(k)
        idle(term)
        return
    if "0" <= k <= "9":
        if typed * 10 + int(k) <= _MAX_TYPED:
            typed = typed * 10 + int(k)
    elif k == "*":
        typed = remaining = shares = total = 0
    elif k == "#" and typed:
        remaining = msg.rial(typed)
        shares = total = 1
        typed = 0
    elif k == "B":
        _split = True
    idle(term)


def idle(term):
    if shares:
        line1 = msg.text(msg.FARE) + " " + msg.money(remaining)
        if total > 1:
            line1 += " %d/%d" % (total - shares + 1, total)
        term.show(line1, msg.text(msg.IDLE))
    else:
        term.show(msg.text(msg.FARE), str(typed) if typed else "")


def price(t, line, holder, now, trips, terminal_id):
    if not shares:
        return _WAIT, 0
    return (remaining if shares == 1 else remaining // shares), 0


def done(term, amount):
    global remaining, shares, total
    remaining -= amount
    shares -= 1
    if shares <= 0:
        remaining = shares = total = 0
