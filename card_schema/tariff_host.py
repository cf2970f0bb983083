"""Fare-table defaults a terminal applies when its table does not say (host side: the firmware copies
them as private consts, tests/firmware/test_const_owners.py holds each copy to its owner here).

    from card_schema import tariff_host
    tariff_host.DEFAULT_REPEAT      # 60 s
"""

# Defaults a terminal applies when its fare table does not say (firmware copies: profile_bus,
# profile_parking, app's flat fare). A tap of the same card on the same terminal within DEFAULT_REPEAT
# seconds of its paid ride is "Already paid" (a card resting on the reader across a power cut, a
# rider tapping twice); a table sets "repeat": 0 to turn it off. The flat fare of a terminal without
# a fare table (config "fare") takes config "conc" (percent by holder type) or FLAT_CONC.
DEFAULT_REPEAT = 60
FLAT_CONC = (100, 50, 30, 0)  # adult, student, senior, staff
# A pending charge the card's trip log shows committed is the same tap as the card's return (shown
# OK, not charged again) when the card returns within this many seconds; later it is confirmed and
# the tap goes on as a new one.
SAME_TAP_S = 120
