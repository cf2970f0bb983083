"""The rules every `tapkit` command keeps (host_tools/cli/spec.py), checked over the whole command
table, so a command added later keeps them too."""

import argparse
import os
import subprocess
import sys

import pytest

from host_tools.cli import app
from host_tools.cli.spec import Env

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


def _leaves(p, path=()):
    """(command words, its parser) for every runnable command."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sp in action.choices.items():
                yield from _leaves(sp, path + (word,))
            return
    yield path, p


LEAVES = dict(_leaves(app.parser()))


def test_the_parser_has_every_command_of_the_table():
    assert set(LEAVES) == {c.path for c in app.commands()}


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_option_has_help_and_every_command_has_json(path):
    p = LEAVES[path]
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in p._actions
        if not a.help or not a.help.strip() or a.help == argparse.SUPPRESS
    ]
    assert not missing, "%s: options without help: %s" % (" ".join(path), missing)
    assert "--json" in p._option_string_actions, " ".join(path)
    c = {c.path: c for c in app.commands()}[path]
    assert c.json in app.JSON_HELP, "%s: json= must be one of %s" % (path, sorted(app.JSON_HELP))


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_a_port_option_is_declared_with_spec_port(path):
    a = LEAVES[path]._option_string_actions.get("--port")
    if a is None:
        return
    if a.default is None:  # port(many=True): repeated --port, else $TAPKIT_PORT or auto
        assert isinstance(a, argparse._AppendAction) and "TAPKIT_PORT" in a.help, path
    else:
        assert isinstance(a.default, Env) and a.default.var == "TAPKIT_PORT", path
        assert a.default.fallback == "auto", path


def test_env_defaults_are_read_when_the_parser_is_built(monkeypatch):
    monkeypatch.setenv("TAPKIT_PORT", "/dev/ttyTEST")
    monkeypatch.setenv("TAPKIT_DB", "sqlite:///env.db")
    a = app.parser().parse_args(["sync"])
    assert (a.port, a.db) == ("/dev/ttyTEST", "sqlite:///env.db")
    monkeypatch.delenv("TAPKIT_PORT")
    assert app.parser().parse_args(["diag"]).port == "auto"


def test_help_shows_defaults_and_their_variables(capsys):
    assert app.main(["sync", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: $TAPKIT_PORT or auto)" in out
    assert "(default: $TAPKIT_DB or sqlite:///tapkit.db)" in out
    assert "(default: 115200)" in out


def test_version(capsys):
    assert app.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tapkit ") and "Python %d.%d" % sys.version_info[:2] in out


def test_help_loads_no_crypto_database_serial_or_rich():
    """`tapkit --help` (and building the parser for any command) imports the command table only:
    the libraries load inside the handlers."""
    code = (
        "import sys, io, contextlib\n"
        "from host_tools.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()): app.main(['--help'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    ).stdout.split()
    heavy = ("cryptography", "sqlite3", "serial", "rich", "http", "smartcard", "nfc", "psycopg")
    loaded = sorted({m.split(".")[0] for m in out} & set(heavy))
    assert loaded == [], loaded
    assert not [m for m in out if m.startswith(("emulator", "host_tools.fleet", "card_schema"))]
