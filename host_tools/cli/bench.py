"""`tapkit bench`: the performance table of a source checkout (`python -m bench` there).

The bench and the harness it runs on (bench/, harness/) are not installed: from a wheel this command
says it needs a checkout. Its options are bench's own (bench/__init__.py), passed on as given.
"""

import os
import subprocess
import sys

import host_tools
from host_tools import TapkitError
from host_tools.cli.spec import Command, arg


def checkout():
    """The source checkout this host_tools runs from (it holds bench/ and harness/), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(host_tools.__file__)))
    if os.path.isfile(os.path.join(root, "bench", "__main__.py")) and os.path.isdir(
        os.path.join(root, "harness")
    ):
        return root
    return None


def bench(a):
    root = checkout()
    if root is None:
        raise TapkitError(
            "tapkit bench needs a source checkout (bench/ and harness/ are not installed): "
            "clone the repository and run `make bench` (or `tapkit bench`) in it"
        )
    argv = list(a.sections) + (["--json"] if a.json else [])
    for opt in ("taps", "drops", "seed", "cuts", "sync_vehicles", "replay", "mode"):
        v = getattr(a, opt)
        if v is not None:
            argv += ["--" + opt.replace("_", "-"), str(v)]
    # the checkout's own bench, harness and host_tools (cwd is first on sys.path with -m)
    return subprocess.run([sys.executable, "-m", "bench"] + argv, cwd=root).returncode


COMMANDS = (
    Command(
        ("bench",),
        bench,
        "the performance table (a source checkout: bench/)",
        (
            arg(
                "sections",
                nargs="*",
                metavar="SECTION",
                help="tap heap tearing sync journal profiles",
            ),
            arg("--taps", type=int, help="bus taps measured (median; bench default 10)"),
            arg("--drops", type=int, help="tearing campaign field drops"),
            arg("--seed", type=int, help="tearing campaign seed"),
            arg("--cuts", type=int, help="journal power cuts"),
            arg(
                "--sync-vehicles",
                type=int,
                help="vehicles x 500 taps for the ingest bench (bench default 40)",
            ),
            arg("--replay", type=int, metavar="SEED", help="journal: one reentrant seed again"),
            arg(
                "--mode",
                choices=("linear", "random"),
                help="journal --replay: how the cuts were placed (bench default random)",
            ),
        ),
    ),
)
GROUPS = {}
