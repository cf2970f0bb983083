"""Bus / van profile: the fare of one ride, from the signed fare table (card_schema/tariff.py) and the
card's own trip log.

    from firmware import profile_bus
    amount, flags = profile_bus.price(table, line, holder, now, trips, terminal_id)

- fare per line (`fares`, else `default`; neither: NO_FARE, card_schema.profile);
- peak: `peak.pct` percent on `peak.days` (0 = Monday) inside `peak.spans` ([from, to) local minutes,
  local = unix + `tz`);
- concession: `conc[holder]` percent (CardInfo holder: 0 adult, 1 student, 2 senior, 3 staff);
- transfer: the newest debit on the card was on another line of a bus, within `transfer.window`
  seconds, and was not itself a transfer: `transfer.pct` percent off, the new trip record carries
  _FLAG_TRANSFER (so a journey has one discounted change, not a chain of them);
- repeat: the newest trip record is a debit by this terminal less than `repeat` seconds ago (default
  60, card_schema.tariff_host.DEFAULT_REPEAT; 0 turns it off): REPEAT
  (already paid, nothing is charged or journalled);
- `round`: the fare is rounded down to a multiple of it.

`trips` are the card's newest records, newest first (citizen.TRIP_SIZE each; None for a new card).
Loaded by firmware.app through config.json "profile" ("bus"): only the configured profile is in RAM.
Contract (firmware/app.py's module doc): PROFILE, HISTORY, price(); no hooks.
"""

from micropython import const

from card_schema import citizen

PROFILE = const(1)  # = card_schema.profile.BUS
HISTORY = const(3)  # trip records the tap reads: the newest debit behind a top-up or two

_REPEAT = const(-1)  # = card_schema.profile.REPEAT
_DEFAULT_REPEAT = const(60)  # = card_schema.tariff_host.DEFAULT_REPEAT
_NO_FARE = const(-2)  # = card_schema.profile.NO_FARE
_FLAG_TRANSFER = const(0x01)  # = card_schema.citizen_host.FLAG_TRANSFER
_TR_LINE = const(5)  # = card_schema.citizen_host.TR_LINE
_TR_KIND = const(7)  # = card_schema.citizen_host.TR_KIND
_TR_PROFILE = const(8)  # = card_schema.citizen_host.TR_PROFILE
_TR_FLAGS = const(10)  # = card_schema.citizen_host.TR_FLAGS


def price(t, line, holder, now, trips, terminal_id):
    """(amount in Rial, trip flags), or (_REPEAT | _NO_FARE, 0)."""
    last = None
    if trips:
        last = citizen.unpack_trip(trips, 0)
        if (
            last[_TR_KIND] == citizen.TRIP_DEBIT
            and last[citizen.TR_TERMINAL] == terminal_id
            and 0 <= now - last[citizen.TR_TIME] < t.get("repeat", _DEFAULT_REPEAT)
        ):
            return _REPEAT, 0
    fare = t.get("fares", {}).get(str(line), t.get("default"))
    if fare is None:
        return _NO_FARE, 0
    peak = t.get("peak")
    if peak:
        local = now + t.get("tz", 0)
        day = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday (3)
        m = local % 86400 // 60
        if day in peak.get("days", ()):
            for span in peak.get("spans", ()):
                if span[0] <= m < span[1]:
                    fare = fare * peak.get("pct", 100) // 100
                    break
    conc = t.get("conc", (100,))
    fare = fare * conc[holder if holder < len(conc) else 0] // 100
    flags = 0
    tr = t.get("transfer")
    if tr and trips:
        for i in range(0, len(trips), citizen.TRIP_SIZE):
            r = citizen.unpack_trip(trips, i)
            if r[_TR_KIND] != citizen.TRIP_DEBIT:
                continue  # a top-up or refund between the rides
            if (
                r[_TR_PROFILE] == PROFILE
                and r[_TR_LINE] != line
                and not r[_TR_FLAGS] & _FLAG_TRANSFER
                and 0 <= now - r[citizen.TR_TIME] <= tr.get("window", 0)
            ):
                fare = fare * (100 - tr.get("pct", 0)) // 100
                flags = _FLAG_TRANSFER
            break  # only the newest ride counts
    r = t.get("round", 0)
    if r:
        fare -= fare % r
    return fare, flags
