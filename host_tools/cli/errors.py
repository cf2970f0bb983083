"""The CLI's one error boundary: what a command raises becomes one line on stderr and an exit code.

TapkitError (and the build's and the board table's errors) -> "tapkit: error: ..." and its exit_code;
serial.SerialException and OSError that escaped the link layer -> one line, exit 1;
KeyboardInterrupt -> "tapkit: interrupted", 130; anything else -> "tapkit: internal error: ...", 2
(TAPKIT_DEBUG=1 shows the traceback). No command prints a traceback.
"""

import os
import sys

import boards
from host_tools import TapkitError
from mpybuild import BuildError

ONE_LINE = (TapkitError, BuildError, boards.UnknownBoard)  # errors whose text is the message


def run(fn, args):
    """Run one command handler; its exit code."""
    try:
        return fn(args) or 0
    except ONE_LINE as e:
        sys.stderr.write("tapkit: error: %s\n" % e)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        sys.stderr.write("tapkit: interrupted\n")
        return 130
    except Exception as e:  # serial and OS trouble that escaped the link layer: one line, no trace
        try:
            import serial

            if isinstance(e, serial.SerialException):
                sys.stderr.write("tapkit: error: serial port: %s\n" % e)
                return 1
        except ImportError:
            pass
        if isinstance(e, OSError):
            sys.stderr.write("tapkit: error: %s\n" % e)
            return 1
        if os.environ.get("TAPKIT_DEBUG"):
            raise
        sys.stderr.write(
            "tapkit: internal error: %s: %s (set TAPKIT_DEBUG=1 for the traceback)\n"
            % (type(e).__name__, e)
        )
        return 2
