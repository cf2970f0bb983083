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
