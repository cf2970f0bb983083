"""The CLI's one error boundary: what a command raises becomes one line on stderr and an exit code.

Exit codes (README "Exit codes"; tests/host_tools/cli/test_exit_codes.py produces each one):

    0    OK           the command did what it says (also: its reader went away, `report | head -1`)
    1    FAILED       the operation failed: TapkitError (no terminal answers, a corrupt card file,
                      a refused table...), the build's and the board table's errors, serial and OS
                      trouble that escaped the link layer
    2    USAGE        the command line is wrong: argparse's errors and UsageError
    3    INTERNAL     a bug: any other exception ("tapkit: internal error: ...", TAPKIT_DEBUG=1 shows
                      the traceback)
    130  INTERRUPTED  Ctrl-C ("tapkit: interrupted"; an open progress line is ended first)

No command prints a traceback.
"""

import os
import sys

from host_tools import TapkitError, UsageError

OK, FAILED, USAGE, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 130

__all__ = ["OK", "FAILED", "USAGE", "INTERNAL", "INTERRUPTED", "UsageError", "run", "say"]


def say(msg):
    """One line on stderr, after ending a progress line that may be open."""
    from host_tools.cli import output

    output.end_line()
    try:
        sys.stderr.write("tapkit: %s\n" % msg)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def run(fn, args):
    """Run one command handler; its exit code."""
    try:
        return fn(args) or OK
    except BrokenPipeError:
        return _pipe_closed()
    except TapkitError as e:
        say("error: %s" % e)
        return e.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return INTERRUPTED
    except Exception as e:  # serial and OS trouble that escaped the link layer: one line, no trace
        if isinstance(e, _one_line()):
            say("error: %s" % e)
            return FAILED
        try:
            import serial

            if isinstance(e, serial.SerialException):
                say("error: serial port: %s" % e)
                return FAILED
        except ImportError:
            pass
        if isinstance(e, OSError):
            say("error: %s" % _os_error(e))
            return FAILED
        if os.environ.get("TAPKIT_DEBUG"):
            raise
        say(
            "internal error: %s: %s (set TAPKIT_DEBUG=1 for the traceback)" % (type(e).__name__, e)
        )
        return INTERNAL


def _one_line():
    """The errors of the rooms below host_tools whose text is the message (imported only when
    something went wrong: they are not TapkitErrors, those rooms do not import host_tools)."""
    import boards
    from emulator.card import CardFileError
    from mpybuild import BuildError

    return (BuildError, boards.UnknownBoard, CardFileError)


def _os_error(e):
    if e.filename and e.strerror:
        return "%s: %s" % (e.filename, e.strerror)
    return str(e)


def _pipe_closed():
    """The reader of stdout went away (`tapkit report | head -1`): that is its right, so exit 0
    quietly. stdout is pointed at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to flush later
        pass
    return OK
