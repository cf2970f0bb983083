"""Each profile module as the terminal loads it (firmware.app's contract): its code, constants and
which names of the contract it defines (tests/firmware/test_profile_contract_mp.py).

micropython profile_contract.py NAMES_OF_THE_CONTRACT PROFILE...
"""

import json
import sys

from firmware import msg

msg.setup({})
names = sys.argv[1].split(",")
for profile in sys.argv[2:]:
    p = __import__("firmware.profile_" + profile, None, None, ("price",))
    has = [n for n in names if hasattr(p, n)]
    print(json.dumps([profile, p.PROFILE, getattr(p, "HISTORY", 1), has]))
