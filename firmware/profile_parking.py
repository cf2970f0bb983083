"""Parking meter: tap in starts a session written to the card, tap out pays by duration.

The session is a trip record (profile PARKING) with FLAG_OPEN (card_schema.citizen_host), the meter's
zone (config.json "zone") and the start time, amount 0, written in the same transaction as every trip record (counter + 1). The next tap
at a meter closes it: a record without it carries the charge, the journal record the duration.

Fare table (per zone in "zones", or one rule for all):
    {"zones": {"1": {"grace": 10, "steps": [[60, 20000], [120, 50000]], "hourly": 30000,
                     "cap": 200000}},
     "other_zone": "cap", "repeat": 60}
- grace: minutes free (a driver who leaves at once pays nothing);
- steps: [up to minutes, Rial] cumulative; beyond the last step every started hour costs "hourly";
- cap: the most one 24 h day costs; a session of several days pays the cap per full day plus the
  rest (capped);
- a card with an open session of another zone: "other_zone" "cap" (default) closes it at that zone's
  daily cap (the meter cannot know when the car left), "duration" charges the duration by that
  zone's rule; either way the next tap starts a session here;
- repeat: seconds in which a second tap on the meter that opened the session is not a tap out
  (default 60, card_schema.tariff_host.DEFAULT_REPEAT), nor a tap on the meter that closed it a new
  session (the driver who saw the tap out's OK vanish in a power cut taps again: "Already paid";
  a new session opened then would be charged at the next tap out, from now);
- prepaid (optional, per zone): minutes paid up front at tap in (the rule's charge for them, carried
  as the open record's amount); tap out charges the session by the rule minus what was prepaid:
  leaving early refunds nothing, an overstay pays the difference (an other-zone cap likewise).

Contract (firmware/app.py's module doc): PROFILE, HISTORY, duration, setup(), price() (REPEAT for
the same driver again at once), ok().
"""

from micropython import const

from card_schema import citizen
from firmware import msg

PROFILE = const(3)  # = card_schema.profile.PARKING
HISTORY = const(1)

_REPEAT = const(-1)  # = card_schema.profile.REPEAT
_DEFAULT_REPEAT = const(60)  # = card_schema.tariff_host.DEFAULT_REPEAT
_FLAG_OPEN = const(0x02)  # = card_schema.citizen_host.FLAG_OPEN
_TR_KIND = const(7)  # = card_schema.citizen_host.TR_KIND
_TR_PROFILE = const(8)  # = card_schema.citizen_host.TR_PROFILE
_TR_ZONE = const(9)  # = card_schema.citizen_host.TR_ZONE
_TR_FLAGS = const(10)  # = card_schema.citizen_host.TR_FLAGS

zone = 0  # this meter's zone (set up from the terminal's config)
duration = 0  # minutes of the session the last tap closed (the journal's duration field)


def setup(term):
    global zone
    zone = term.zone


def _rule(t, z):
    return t.get("zones", {}).get(str(z)) or t


def charge(rule, minutes):
    """Rial for a session of `minutes` under one zone's rule."""
    if minutes <= rule.get("grace", 0):
        return 0
    cap = rule.get("cap", 0)
    days = 0
    if cap:
        days = minutes // 1440
        minutes -= days * 1440
    amount = 0
    upto = 0
    if not minutes:  # whole days
        return days * cap
    for step in rule.get("steps", ()):
        upto, amount = step[0], step[1]
        if minutes <= upto:
            break
    else:
        amount += (minutes - upto + 59) // 60 * rule.get("hourly", 0)
    if cap:
        amount = days * cap + min(amount, cap)
    return amount


def price(t, line, holder, now, trips, terminal_id):
    global duration
    duration = 0
    last = citizen.unpack_trip(trips, 0) if trips else None
    if not (
        last
        and last[_TR_KIND] == citizen.TRIP_DEBIT
        and last[_TR_PROFILE] == PROFILE
        and last[_TR_FLAGS] & _FLAG_OPEN
    ):
        if (
            last
            and last[_TR_KIND] == citizen.TRIP_DEBIT
            and last[_TR_PROFILE] == PROFILE
            and last[citizen.TR_TERMINAL] == terminal_id
            and 0 <= now - last[citizen.TR_TIME] < t.get("repeat", _DEFAULT_REPEAT)
        ):
            return _REPEAT, 0  # just tapped out here (its OK lost in a power cut): already paid
        p = _rule(t, zone).get("prepaid", 0)
        return (charge(_rule(t, zone), p) if p else 0), _FLAG_OPEN  # tap in
    start = last[citizen.TR_TIME]
    z = last[_TR_ZONE]
    if (
        z == zone
        and last[citizen.TR_TERMINAL] == terminal_id
        and 0 <= now - start < t.get("repeat", _DEFAULT_REPEAT)
    ):
        return _REPEAT, 0  # the same driver again at once: already parked
    duration = max(now - start, 0) // 60
    rule = _rule(t, z)
    paid = last[citizen.TR_AMOUNT]  # prepaid at tap in (0 without prepaid minutes)
    if z != zone and t.get("other_zone", "cap") == "cap" and rule.get("cap"):
        return max(rule["cap"] - paid, 0), 0
    return max(charge(rule, duration) - paid, 0), 0


def ok(fare, flags):
    if flags & _FLAG_OPEN:
        return msg.text(msg.PARK_START) + ("  -" + msg.money(fare) if fare else "")
    return "%s %d min  -%s" % (msg.text(msg.PARKED), duration, msg.money(fare))
