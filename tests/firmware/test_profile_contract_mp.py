"""The profile contract (firmware/app.py's module doc) on the MicroPython VM: each profile module, as
built for the board, defines its code and exactly the hooks and constants its docstring lists, from
the documented set (a hook outside it would never be called)."""

import os

from card_schema import profile_host
from harness import vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the names firmware/app.py reads of a profile (required: PROFILE, price)
CONTRACT = ("PROFILE", "price", "HISTORY", "WAIT_MSG", "duration") + (
    "setup",
    "key",
    "idle",
    "ok",
    "done",
    "own",
)
# name: (code, HISTORY, the names of the contract it defines)
EXPECTED = {
    "bus": (1, 3, ["PROFILE", "price", "HISTORY"]),
    "taxi": (2, 1, ["PROFILE", "price", "HISTORY", "key", "idle", "done"]),
    "parking": (3, 1, ["PROFILE", "price", "HISTORY", "duration", "setup", "ok"]),
    "pos": (4, 1, ["PROFILE", "price", "HISTORY", "key", "idle", "done", "own"]),
    "charity": (5, 1, ["PROFILE", "price", "HISTORY", "WAIT_MSG", "key", "idle", "done"]),
}


def test_every_profile_defines_the_hooks_it_documents(mp_run):
    assert sorted(EXPECTED) == sorted(profile_host.PROFILES)
    p = mp_run(vm.script("profile_contract"), ",".join(CONTRACT), *EXPECTED, check=True)
    got = {r[0]: tuple(r[1:]) for r in vm.json_lines(p)}
    for name, (code, history, names) in EXPECTED.items():
        assert got[name] == (code, history, names), name
        assert code == profile_host.code(name)
        with open(os.path.join(ROOT, "firmware", "profile_%s.py" % name)) as f:
            doc = f.read().split('"""')[1]
        contract = doc[doc.index("Contract (firmware/app.py") :]
        for n in names:
            assert n in contract, "%s: the docstring does not list %s" % (name, n)
