"""Exit codes (host_tools/cli/errors.py, README "Exit codes"), each produced by a real command, and
the quiet behaviour in pipes and on Ctrl-C."""

import io
import json
import os
import signal
import subprocess
import sys
import time

from host_tools.cli import app, errors, output

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
ENV = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")


def run(capsys, *argv):
    capsys.readouterr()
    rc = app.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def tapkit(*argv, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", *map(str, argv)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_0_ok(capsys, tmp_path):
    rc, out, err = run(capsys, "keys", "init", "--keystore", tmp_path / "k", "--json")
    assert (rc, err) == (0, "") and json.loads(out)["issuer_id"] == 1


def test_1_the_operation_failed(capsys, tmp_path):
    rc, out, err = run(
        capsys, "sync", "--port", tmp_path / "ttyNONE", "--keystore", tmp_path / "k"
    )
    assert rc == 1 and out == ""
    assert (
        err
        == "tapkit: error: no keystore at {0}: create one with `tapkit keys init --keystore {0}`\n".format(
            tmp_path / "k"
        )
    )


def test_2_usage(capsys, tmp_path):
    rc, out, err = run(capsys, "sync", "--baud", "fast")
    assert rc == 2 and out == "" and "argument --baud: invalid int value: 'fast'" in err
    rc, _, err = run(capsys, "bogus")
    assert rc == 2 and "invalid choice: 'bogus'" in err
    # a usage error only the handler can see (UsageError) is a usage error too
    rc, _, err = run(capsys, "emulate", "press", "--board", tmp_path)
    assert rc == 2 and err == "tapkit: error: nothing to press: give KEYS or --meter RIAL\n"


def test_3_internal_error(capsys, tmp_path, monkeypatch):
    def broken(*a, **kw):
        return {}["issuer_id"]  # a bug

    monkeypatch.setattr("host_tools.keystore.init", broken)
    rc, out, err = run(capsys, "keys", "init", "--keystore", tmp_path / "k")
    assert rc == 3 and out == ""
    assert (
        err
        == "tapkit: internal error: KeyError: 'issuer_id' (set TAPKIT_DEBUG=1 for the traceback)\n"
    )


def test_130_interrupted_sync_waiting_for_a_silent_terminal(tmp_path):
    ks = tmp_path / "k"
    assert app.main(["keys", "init", "--keystore", str(ks)]) == 0
    master, slave = os.openpty()  # a serial port nobody answers on
    try:
        p = tapkit(
            "sync", "--port", os.ttyname(slave), "--keystore", ks, "--db",
            "sqlite:///%s" % (tmp_path / "t.db"),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while os.read(master, 4096).find(b"~") < 0:  # the first IDENTIFY is on the wire
            assert time.monotonic() < deadline
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 130 and out == b""
    assert err == b"tapkit: interrupted\n"


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_ctrl_c_ends_the_progress_line_and_shows_the_cursor(monkeypatch):
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    show = output.sync_progress()
    show(3, 10)

    def sync(a):
        raise KeyboardInterrupt

    assert errors.run(sync, None) == 130
    assert tty.getvalue() == (
        "\r[#########.....................] pulled 3/10 records\n\x1b[?25htapkit: interrupted\n"
    )


def test_a_closed_pipe_is_quiet_and_ok(tmp_path):
    """`tapkit report | head -1`: the reader went away; no traceback, exit 0."""
    from host_tools import keystore
    from host_tools.backoffice import store

    db = "sqlite:///%s" % (tmp_path / "t.db")
    store.open_store(db).close()  # the report reads a store, it makes none
    ks = str(tmp_path / "issuer.keys")
    keystore.init(ks)
    p = tapkit("report", "--db", db, "--keystore", ks)
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0 and err == b""
    shell = subprocess.run(
        "set -o pipefail; %s -m host_tools.cli report --db %s --keystore %s | head -1"
        % (sys.executable, db, ks),
        shell=True,
        executable="/bin/bash",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0 and shell.stderr == "" and shell.stdout.startswith("revenue 0")
