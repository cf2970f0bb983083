"""Run scripts on the MicroPython VM (the unix port) with the deployed .mpy: one runner for the tests
(tests/conftest.py's `mp_run` fixture) and the bench.

    from harness import vm
    lib = vm.build(tmpdir)                          # firmware + card_schema as .mpy (tmpdir/lib)
    p = vm.run(lib, vm.script("journal_cost"), tmpdir, 64, path=[vm.EMULATOR], heap="1M")
    vm.json_lines(p)                                # the JSON lines the script printed

`micropython -X heapsize=112K` is the heap an ESP32 without PSRAM leaves (TAPKIT_HEAP overrides it).
MICROPYPATH puts the built .mpy first, so a script imports exactly what gets deployed; the working
directory defaults to the build dir ('' is on MicroPython's sys.path, and the repository's root would
let a script import the .py sources instead). The script's own directory is on sys.path too, so the
scripts in harness/mp/ must not be named like a module they import (norflash, machine, vfs...).
"""

import json
import os
import subprocess

from mpybuild import tools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MP = os.path.join(HERE, "mp")  # the MicroPython scripts (real .py files: ruff and mypy see them)
EMULATOR = os.path.join(ROOT, "emulator")  # norflash.py, lfsmount.py: the virtual board's modules
FAKES = os.path.join(ROOT, "tests", "fakes")  # machine, esp32, network as the ESP32 port has them
HEAP = os.environ.get("TAPKIT_HEAP", "112K")


class VMError(RuntimeError):
    pass


def micropython_exe():
    exe = tools.find("micropython")
    if not exe:
        raise VMError(tools.NO_MICROPYTHON)
    return exe


def build(out):
    """Build firmware + card_schema to .mpy into `out` (once: an existing out/lib is kept)."""
    if not os.path.isdir(os.path.join(out, "lib")):
        from mpybuild import cross, manifest

        cross.build(out, manifest.every_module("card_schema", "firmware"))
    return out


def script(name):
    """The path of harness/mp/NAME.py."""
    path = os.path.join(MP, name + ".py")
    if not os.path.exists(path):
        raise VMError("no MicroPython script %s" % path)
    return path


def run(
    build_dir,
    script,
    *args,
    path=(),
    heap=HEAP,
    env=None,
    cwd=None,
    timeout=120,
    check=False,
    lib=None,
    binary=False,
):
    """Run `script` (a file, or code for `-c`) with `args`; returns the CompletedProcess (text, or
    bytes with `binary`: a terminal's binary RECORDS lines are not UTF-8).

    path: more directories for MICROPYPATH, after the .mpy lib (`lib`: another build's lib/ instead
    of build_dir's, e.g. a board's own manifest build). check=True raises VMError on a non-zero
    exit, with the output."""
    mp_path = [lib or os.path.join(build_dir, "lib")] + [str(p) for p in path] + [".frozen"]
    e = dict(os.environ, MICROPYPATH=os.pathsep.join(mp_path))
    if env:
        e.update(env)
    argv = [micropython_exe(), "-X", "heapsize=" + heap]
    argv += [str(script)] if os.path.exists(str(script)) else ["-c", script]
    argv += [str(a) for a in args]
    p = subprocess.run(
        argv, capture_output=True, text=not binary, timeout=timeout, env=e, cwd=cwd or build_dir
    )
    if check and p.returncode != 0:
        raise VMError("micropython failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    return p


def json_lines(p):
    """The JSON objects a script printed, one per line (other lines are skipped)."""
    return [json.loads(x) for x in p.stdout.splitlines() if x.startswith(("{", "["))]
