"""Shared fixtures: the .mpy build and a runner for the real MicroPython VM (unix port).

`mp_run(script_path_or_code, *args, path=[...])` runs `micropython -X heapsize=112K` (the heap an ESP32
without PSRAM leaves) with MICROPYPATH set to the built .mpy lib first, so firmware tests import exactly
what gets deployed (harness/vm.py, shared with the bench; the scripts live in harness/mp/).
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from harness import vm  # noqa: E402  (the checkout's root was just put on sys.path)

HEAP = vm.HEAP


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory):
    """Build firmware + card_schema to .mpy once per session; return the build dir (has lib/)."""
    return vm.build(str(tmp_path_factory.mktemp("mpy")))


@pytest.fixture(scope="session")
def mp_run(mpy_build):
    def run(script, *args, **kw):
        return vm.run(mpy_build, script, *args, **kw)

    return run


@pytest.fixture(autouse=True)
def _pcsc_slot(request):
    """pcscd's vpcd slot 0 is one per machine: a test marked `pcsc` (or using the pcscd fixture)
    holds /tmp/tapkit-pcsc.lock while it runs, so test runs in other checkouts wait their turn."""
    if request.node.get_closest_marker("pcsc") is None and "pcscd" not in request.fixturenames:
        yield
        return
    import fcntl

    with open("/tmp/tapkit-pcsc.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
