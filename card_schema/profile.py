"""Terminal profiles: the codes firmware/app.py and the profile modules share with the host.

A profile is the module firmware/profile_<name>.py named by config.json "profile"; its code is the
`profile` byte of the journal's tap record (card_schema.taprecord) and of the card's trip record
(card_schema.citizen). The names, by code, are card_schema.profile_host.NAMES.

A profile's `price(...)` answers (amount in Rial >= 0, trip flags), or one of the codes below as the
amount (flags 0); what firmware/app.py then does is in its module doc:

    REPEAT    a repeat tap, already paid: "Already paid", nothing charged or journalled
    NO_FARE   the table has no fare for this ride: "Out of service", nothing journalled
    WAIT      nothing to pay yet (keypad profiles: no amount typed or chosen): refused, not journalled
    OWN       the profile runs this tap itself after the card checks: `own(term, uid, last, counter,
              now)` (the POS refund)
"""

from card_schema.compat import const

BUS = const(1)
TAXI = const(2)
PARKING = const(3)
POS = const(4)
CHARITY = const(5)

REPEAT = const(-1)
NO_FARE = const(-2)
WAIT = const(-3)
OWN = const(-4)
