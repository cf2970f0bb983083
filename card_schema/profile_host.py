"""Terminal profiles, host side: names by code, and which profiles take keys.

from card_schema import profile_host
profile_host.NAMES[4]         # "pos": firmware/profile_pos.py, config.json "profile": "pos"
profile_host.code("taxi")     # card_schema.profile.TAXI
"""

from card_schema import profile

OFFICE = 9  # the card office's journal records (host_tools/cardoffice/journal.py); not a terminal

_BY_CODE = {
    profile.BUS: "bus",
    profile.TAXI: "taxi",
    profile.PARKING: "parking",
    profile.POS: "pos",
    profile.CHARITY: "charity",
    OFFICE: "office",
}
NAMES = tuple(_BY_CODE.get(i, "") for i in range(max(_BY_CODE) + 1))  # by code
PROFILES = tuple(n for n in NAMES[1:] if n and n != "office")  # what config.json may name
KEYPAD = ("taxi", "pos", "charity")  # priced by what is typed or chosen on the keys


def code(name):
    """The code of a profile name; ValueError for an unknown one."""
    if name not in PROFILES:
        raise ValueError("unknown profile %r: one of %s" % (name, ", ".join(PROFILES)))
    return NAMES.index(name)


# Defaults a terminal applies when its fare table does not say (firmware copies: profile_bus,
# profile_parking, app's flat fare). A tap of the same card on the same terminal within REPEAT_S
# seconds of its paid ride is "Already paid" (a card resting on the reader across a power cut, a
# rider tapping twice); a table sets "repeat": 0 to turn it off. The flat fare of a terminal without
# a fare table (config "fare") takes config "conc" (percent by holder type) or FLAT_CONC.
DEFAULT_REPEAT = 60
FLAT_CONC = (100, 50, 30, 0)  # adult, student, senior, staff
# A pending charge the card's trip log shows committed is the same tap as the card's return (shown
# OK, not charged again) when the card returns within this many seconds; later it is confirmed and
# the tap goes on as a new one.
SAME_TAP_S = 120
