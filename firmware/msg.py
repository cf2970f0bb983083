"""The message catalogue: what the display says, in English or Persian, amounts in the operator's unit.

    from firmware import msg
    msg.setup({"lang": "fa", "unit": "toman"})
    msg.text(msg.INSUFFICIENT)      # "موجودی کافی نیست"
    msg.money(250000)               # "25,000 تومان" (the card holds Rial; a Toman is 10 Rial)

The texts are in firmware/msg_en.py and firmware/msg_fa.py (same order as the indexes below); only
the configured language is imported. config.json: "lang" ("en" default, "fa"), "unit" ("rial" default, "toman"). Amounts are integer Rial
everywhere else (card, journal, host); only the display converts (Toman rounds down). Digits stay
Latin (the displays' fonts have them; the host reports use the same).
"""

from micropython import const

IDLE = const(0)
OK = const(1)
BALANCE = const(2)
INSUFFICIENT = const(3)
BLOCKED = const(4)
OFFICE = const(5)
EXPIRED = const(6)
DENIED = const(7)
FOREIGN = const(8)
NOT_CITIZEN = const(9)
REMOVED = const(10)
TAP_AGAIN = const(11)
CARD_ERROR = const(12)
FULL = const(13)
SYNC_NEEDED = const(14)
TERM_ERROR = const(15)
NO_CHARGE = const(16)
NO_SERVICE = const(17)
NO_FARES = const(18)
PAID = const(19)
TRANSFER = const(20)
NO_FARE = const(21)
CHOOSE = const(22)
DONATE = const(23)
AMOUNT = const(24)
ENTER = const(25)
FARE = const(26)
PAID_OF = const(27)
LEFT = const(28)
PARK_START = const(29)
PARKED = const(30)
REFUND = const(31)
REFUND_ASK = const(32)
CONFIRM = const(33)
NO_SALE = const(34)
# shown by firmware/app.py through private copies of the index (a public name is a qstr on every
# board): the issuer signature's refusals
_NOT_ISSUED = const(35)
_BAD_VALUE = const(36)

_cat = ()  # type: tuple
_div = 1
_unit = " Rial"


def setup(config):
    global _cat, _div, _unit
    fa = config.get("lang") == "fa"
    _cat = __import__("firmware.msg_" + ("fa" if fa else "en"), None, None, ("T",)).T
    if config.get("unit") == "toman":
        _div = 10
        _unit = " تومان" if fa else " Toman"
    else:
        _div = 1
        _unit = " ریال" if fa else " Rial"


def text(i):
    return _cat[i]


def rial(v):
    """An amount typed in the configured unit, in Rial."""
    return v * _div


def money(rial):
    """12345670 Rial -> '12,345,670 Rial' (or '1,234,567 Toman'): grouped, in the configured unit."""
    v = rial // _div if rial >= 0 else -(-rial // _div)
    neg = v < 0
    s = str(-v if neg else v)
    out = ""
    while len(s) > 3:
        out = "," + s[-3:] + out
        s = s[:-3]
    return ("-" if neg else "") + s + out + _unit
