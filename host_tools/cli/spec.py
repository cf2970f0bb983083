"""Commands are data: each area module of the CLI lists its commands as `Command`s (a path of words,
a handler, a help line, its arguments); app.py builds the parser from the table.

    COMMANDS = (
        Command(("card", "show"), show, "holder, balance, last trips", (READER, KEYSTORE)),
    )
    GROUPS = {"card": "card office: issue, top up, show, block, refund"}

Every command also gets --json. A handler takes the parsed arguments and returns the exit code.
"""

import collections
import os

Command = collections.namedtuple("Command", "path fn help args")


def arg(*names, **kw):
    """One argparse argument: arg("--port", required=True) is add_argument("--port", required=True)."""
    return names, kw


DEFAULT_KEYSTORE = os.environ.get("TAPKIT_KEYSTORE", "issuer.keys")
DEFAULT_DB = os.environ.get("TAPKIT_DB", "sqlite:///tapkit.db")

KEYSTORE = arg("--keystore", default=DEFAULT_KEYSTORE)
DB = arg("--db", default=DEFAULT_DB)
PORT = arg("--port", required=True)
