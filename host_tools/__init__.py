"""tapkit host tools (CPython), in rooms with one job each: cardoffice (desk readers, card
operations), fleet (terminals on the cable: sync, flash, diag, provisioning, signed tables),
backoffice (store, Wi-Fi ingest and server, reports), sim (virtual fleet, the demo as data), and cli
(the `tapkit` command line: the only layer that prints). keystore is shared by all of them."""


class TapkitError(Exception):
    """Any error a user should see as one clear line (the CLI prints str(e) and exits non-zero)."""

    exit_code = 1


class UsageError(TapkitError):
    """The command line itself is wrong (a missing or contradictory option): exit code 2, like
    argparse's own usage errors."""

    exit_code = 2
