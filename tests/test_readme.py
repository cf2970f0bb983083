"""The README reads cold: every `tapkit` example in it is a command line the real parser accepts,
and the card-office block runs as written, in order, on an emulated card."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

from host_tools.cli import app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()


def _blocks():
    """(line, tapkit argv) of every indented code line starting with `tapkit`."""
    out = []
    for line in README.splitlines():
        m = re.match(r"^ {4}(tapkit .*)$", line)
        if m:
            out.append(shlex.split(m.group(1), comments=True))
    return out


def _inline():
    """Inline `tapkit ...` spans of the prose (the placeholder in `tapkit COMMAND --help` aside)."""
    spans = re.findall(r"`(tapkit [^`]+)`", README)
    return [shlex.split(s) for s in spans if "COMMAND" not in s and "|" not in s]


EXAMPLES = _blocks()


def test_the_readme_has_examples():
    assert len(EXAMPLES) > 20


@pytest.mark.parametrize("argv", EXAMPLES + _inline(), ids=" ".join)
def test_every_example_parses(argv, capsys):
    assert argv[0] == "tapkit"
    try:
        args = app.parser().parse_args(argv[1:])
    except SystemExit as e:
        if e.code == 0:  # --version, --help
            return
        err = capsys.readouterr().err
        raise AssertionError("README example `%s`: %s" % (" ".join(argv), err.strip())) from e
    assert callable(args.fn)


def test_the_sync_example_names_its_keystore():
    sync = [a for a in EXAMPLES if a[1] == "sync"]
    assert sync and all("--keystore" in a for a in sync)


def test_the_card_office_block_runs_as_written(tmp_path):
    """keys init, emulate card --new (a blank card file), then the card block of "Card tools"."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TAPKIT_KEYSTORE", None)

    def tapkit(argv, **kw):
        return subprocess.run(
            [sys.executable, "-m", "host_tools.cli", *argv[1:]],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, **kw,
        )  # fmt: skip

    keys = next(a for a in EXAMPLES if a[1:3] == ["keys", "init"])
    assert tapkit(keys).returncode == 0
    new = next(a for a in EXAMPLES if a[1:3] == ["emulate", "card"] and "--new" in a)
    p = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", *new[1:], "--udp", "127.0.0.1:0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert p.stdout.readline().startswith(b"serving card alice.card")
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    init = next(a for a in EXAMPLES if a[1:3] == ["office", "init"])
    assert tapkit(init).returncode == 0  # every card-office operation goes into its journal
    office = [a for a in EXAMPLES if a[1] == "card" and "--reader" in a and "emulator:" in str(a)]
    assert [a[2] for a in office] == [
        "issue",
        "topup",
        "show",
        "secure",
        "block",
        "unblock",
        "refund",
    ]
    out = {}
    for argv in office:
        r = tapkit(argv)
        assert r.returncode == 0 and r.stderr == "", (argv, r.stderr)
        out[argv[2]] = r.stdout
    assert json.loads(out["show"])["balance"] == 200000 + 50000
    assert "250,000 Rial refunded" in out["refund"]
    assert "was already secured" in out["secure"]  # issue puts the PICC key on the card
    for argv in (a for a in EXAMPLES if a[1] == "office" and a[2] in ("show", "sync")):
        r = tapkit(argv)
        assert r.returncode == 0 and r.stderr == "", (argv, r.stderr)
    assert "9 records stored" in r.stdout  # issue, top-up and the payout confirmed; 3 blocks
