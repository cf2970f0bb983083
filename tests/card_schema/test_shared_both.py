"""Every shared test module (tests/shared/t_*.py) runs on CPython and on the MicroPython VM (against the
built .mpy); every test must pass on both and return the same result on both."""

import io
import os
import sys
from contextlib import redirect_stdout

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(HERE), "shared")
MODULES = sorted(n[:-3] for n in os.listdir(SHARED) if n.startswith("t_") and n.endswith(".py"))


def _parse(out):
    rows = {}
    for line in out.splitlines():
        if line.startswith("PASS ") or line.startswith("FAIL "):
            parts = line.split(" ", 2)
            rows[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    return rows


def _run_cpython(name):
    sys.path.insert(0, SHARED)
    try:
        import runner

        buf = io.StringIO()
        with redirect_stdout(buf):
            runner.main(name)
        return buf.getvalue()
    finally:
        sys.path.remove(SHARED)


@pytest.mark.parametrize("name", MODULES)
def test_shared_module_agrees_on_both_interpreters(name, mp_run):
    cpy = _parse(_run_cpython(name))
    p = mp_run(os.path.join(SHARED, "runner.py"), name, path=[SHARED])
    mpy = _parse(p.stdout)
    assert cpy, "no tests found in %s" % name
    failed = {k: v for k, v in cpy.items() if v[0] != "PASS"}
    assert not failed, "CPython failures: %r" % failed
    failed = {k: v for k, v in mpy.items() if v[0] != "PASS"}
    assert not failed, "MicroPython failures: %r\n%s" % (failed, p.stderr)
    assert set(cpy) == set(mpy), "test sets differ: %r" % (set(cpy) ^ set(mpy))
    for k in cpy:
        assert cpy[k] == mpy[k], "%s: CPython %r != MicroPython %r" % (k, cpy[k], mpy[k])
