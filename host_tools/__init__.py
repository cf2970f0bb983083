"""tapkit host tools: the `tapkit` CLI and its library (CPython)."""


class TapkitError(Exception):
    """Any error a user should see as one clear line (the CLI prints str(e) and exits non-zero)."""

    exit_code = 1
