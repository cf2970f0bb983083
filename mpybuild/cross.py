"""mpy-cross: .py -> .mpy, and a board's whole build (see the package docstring)."""

import ast
import hashlib
import os
import subprocess
import sys

from mpybuild import BuildError, package_dir, tools

MAIN_PY = """# tapkit: start the terminal firmware (the main loop never returns on a healthy board)
import firmware
firmware.warm()  # the rare modules' names while the heap is empty (firmware/__init__.py)
import firmware.app
firmware.app.run()
"""
BOOT_PY = """# tapkit boot: nothing to do before main.py (storage is mounted by the port)
"""
ARCH = {"esp32": "xtensawin", "unix": None}  # board platform -> mpy-cross -march (None: bytecode)


def _mpy_cross():
    exe = tools.find("mpy-cross")
    if exe:
        return [exe]
    return [sys.executable, "-m", "mpy_cross"]


def compile_file(src, dst, arch=None, name=None):
    """src (.py) -> dst (.mpy); `name` is the source name tracebacks show (default: src's name)."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    cmd = _mpy_cross() + ["-O1", "-o", dst]
    if arch:
        cmd.append("-march=" + arch)
    # -s sets the source name recorded in tracebacks (device path, not the build machine's)
    cmd += ["-s", name or os.path.basename(src), src]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(
            "mpy-cross failed on %s: %s" % (src, p.stderr.strip() or p.stdout.strip())
        )


def build(out, entries, arch=None):
    """Compile `entries` (manifest.Entry) into `out`, add main.py and boot.py; return
    {device path: sha256} of every file the board gets. Up-to-date .mpy files are kept."""
    hashes = {}
    for e in entries:
        dst = os.path.join(out, e.dest)
        if not _fresh(e.source, dst):
            compile_file(e.source, dst, arch, e.name)
        hashes[e.dest] = _sha256(dst)
    for rel, text in (("main.py", MAIN_PY), ("boot.py", BOOT_PY)):
        path = os.path.join(out, rel)
        with open(path, "w") as f:
            f.write(text)
        hashes[rel] = _sha256(path)
    return hashes


def read_built(out, hashes):
    """{"/" + device path: bytes} of a build (what a board's filesystem gets)."""
    files = {}
    for rel in hashes:
        with open(os.path.join(out, rel), "rb") as f:
            files["/" + rel] = f.read()
    return files


def version(package="firmware"):
    """The VERSION string of a package, read from its source without importing it (the host never
    imports firmware modules: it deploys them)."""
    with open(os.path.join(package_dir(package), "__init__.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "VERSION"
        ]:
            return ast.literal_eval(node.value)
    raise BuildError("%s has no VERSION" % package)


def _fresh(src, dst):
    try:
        return os.stat(dst).st_mtime >= os.stat(src).st_mtime
    except OSError:
        return False


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()
