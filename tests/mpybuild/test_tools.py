"""Tools are found beside the running Python (a venv that is not activated), then on PATH."""

import os
import stat
import subprocess
import sys

from mpybuild import tools


def _exe(path):
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_tool_beside_sys_executable_wins_without_path(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    mp = _exe(venv_bin / "micropython")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert tools.find("micropython") == mp
    assert tools.find("no-such-tool-here") is None


def test_path_is_the_fallback(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    mp = _exe(other / "tapkit-test-tool")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(other))
    assert tools.find("tapkit-test-tool") == mp


def test_an_unactivated_venv_finds_its_micropython(tmp_path):
    """`.venv/bin/python -m ...` with PATH not naming .venv/bin: its micropython is used (the
    virtual board and the VM runner ask mpybuild.tools)."""
    venv = tmp_path / "v"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    mp = _exe(venv / "bin" / "micropython")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from mpybuild import tools; print(tools.find('micropython'))"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": root},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert p.stdout.strip() == mp
