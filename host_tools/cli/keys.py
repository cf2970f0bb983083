"""`tapkit keys`: the issuer key ceremony."""

import os

from host_tools.cli.output import print_json
from host_tools.cli.spec import KEYSTORE, Command, arg


def init(a):
    from host_tools import keystore

    ks = keystore.init(a.keystore, issuer_id=a.issuer_id)
    res = {
        "keystore": os.path.abspath(a.keystore),
        "issuer_id": ks["issuer_id"],
        "roles": list(keystore.ROLES),
        "sign": {"id": keystore.issuer_key_id(ks), "bits": keystore.SIGN_BITS},
    }
    if a.json:
        print_json(res)
    else:
        print(
            "created keystore %s (issuer %d; roles %s; card signing key RSA-%d; file mode 0600)"
            % (a.keystore, ks["issuer_id"], ", ".join(keystore.ROLES), keystore.SIGN_BITS)
        )
    return 0


def upgrade(a):
    from host_tools import keystore

    added = keystore.upgrade(a.keystore)
    res = {"keystore": os.path.abspath(a.keystore), "added": added}
    if a.json:
        print_json(res)
    elif added:
        print(
            "keystore %s: added the %s key%s (the other keys are unchanged)"
            % (a.keystore, ", ".join(added), "s" if len(added) > 1 else "")
        )
    else:
        print("keystore %s already has every key role" % a.keystore)
    return 0


GROUPS = {"keys": "issuer key ceremony"}
COMMANDS = (
    Command(
        ("keys", "init"),
        init,
        "create issuer master keys (file 0600, never overwritten)",
        (
            KEYSTORE,
            arg("--issuer-id", type=int, default=1, metavar="N", help="the card issuer's id"),
        ),
    ),
    Command(
        ("keys", "upgrade"),
        upgrade,
        "add the key roles a keystore made by an older tapkit lacks (picc: the cards' PICC key)",
        (KEYSTORE,),
    ),
)
