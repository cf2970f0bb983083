"""Charity box: the donor presses one of a few buttons (fixed amounts), then taps.

Buttons (board.json ui.keypad): "1".."n" choose the amounts of the fare table's "amounts" (Rial; or
config.json "amounts" while no signed table is installed), "*" cancels. The choice stays until a
donation commits or "*". A tap with nothing chosen is refused ("Choose an amount"), nothing journalled.

Contract (firmware/app.py's module doc): PROFILE, HISTORY, WAIT_MSG, price() (WAIT while nothing is
chosen), key(), idle(), done().
"""

from micropython import const

from firmware import msg

PROFILE = const(5)  # = card_schema.profile.CHARITY
HISTORY = const(1)
_WAIT = const(-3)  # = card_schema.profile.WAIT
WAIT_MSG = msg.CHOOSE  # what a tap with nothing chosen shows

chosen = 0  # Rial


def _amounts(term):
    return (term.table or {}).get("amounts") or term.config.get("amounts") or ()


def key(term, k):
    global chosen
    a = _amounts(term)
    if "1" <= k <= "9" and int(k) <= len(a):
        chosen = a[int(k) - 1]
    elif k == "*":
        chosen = 0
    idle(term)


def idle(term):
    if chosen:
        term.show(msg.text(msg.DONATE) + " " + msg.money(chosen), msg.text(msg.IDLE))
        return
    a = _amounts(term)
    term.show(
        msg.text(msg.CHOOSE), " ".join(["%d:%s" % (i + 1, msg.money(a[i])) for i in range(len(a))])
    )


def price(t, line, holder, now, trips, terminal_id):
    return (chosen, 0) if chosen else (_WAIT, 0)


def done(term, amount):
    global chosen
    chosen = 0
