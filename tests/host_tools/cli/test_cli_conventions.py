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


# The test that runs each command with --json and parses what it prints (JSON, or JSON Lines for
# the json="lines" commands). A new command adds its line here, or this test fails.
JSON_PROOF = {
    "release build": "tests/host_tools/fleet/test_release.py::test_release_file_round_trip_and_cli",
    "release show": "tests/host_tools/fleet/test_release.py::test_release_file_round_trip_and_cli",
    "release install": "tests/e2e/test_ota_usb.py::test_usb_update_confirmed_then_broken_release_rolled_back",
    "release status": "tests/host_tools/fleet/test_release.py::test_release_file_round_trip_and_cli",
    "keys init": "tests/host_tools/cli/test_cli_exit_codes.py::test_0_ok",
    "readers": "tests/e2e/test_cli_ports_readers.py::test_readers_lists_the_pcsc_reader_and_its_card",
    "card issue": "tests/e2e/test_card_office.py::issued",
    "card topup": "tests/e2e/test_card_office.py::test_block_refuses_topup_then_unblock",
    "card show": "tests/e2e/test_cli_json.py::test_card_show_and_unblock",
    "card block": "tests/e2e/test_card_office.py::test_block_refuses_topup_then_unblock",
    "card unblock": "tests/e2e/test_cli_json.py::test_card_show_and_unblock",
    "card refund": "tests/e2e/test_card_office.py::test_refund_closes_the_card_and_logs_the_payout",
    "card secure": "tests/e2e/test_card_secure.py::test_card_secure_migrates_an_old_card_once",
    "keys upgrade": "tests/e2e/test_card_secure.py::test_keys_upgrade_adds_the_picc_key_only",
    "emulate card": "tests/e2e/test_cli_json.py::test_emulate_card_json_lines",
    "emulate board": "tests/e2e/test_cli_json.py::test_emulate_board_json_lines_then_tap_json",
    "emulate tap": "tests/e2e/test_cli_json.py::test_emulate_board_json_lines_then_tap_json",
    "emulate press": "tests/e2e/test_cli_emulate_profiles.py::test_pos_terminal_sale_and_refund_from_the_command_line",
    "ports": "tests/e2e/test_cli_ports_readers.py::test_ports_finds_the_terminal_on_a_virtual_boards_pty",
    "unlock": "tests/e2e/test_console_lock.py::test_a_stranger_gets_no_repl_the_keystore_unlocks_it_for_a_while",
    "sync": "tests/host_tools/fleet/test_sync.py::test_cli_sync_killed_mid_ingest_then_rerun_stores_every_tap_once",
    "flash": "tests/e2e/test_flash.py::test_flash_fresh_board_then_diag_then_nothing_to_copy",
    "diag": "tests/e2e/test_diag.py::test_diag_watch_json_lines_show_refusals_and_reader_errors",
    "serve": "tests/e2e/test_cli_json.py::test_serve_json_lines_say_where_it_listens",
    "publish": "tests/e2e/test_cli_json.py::test_publish_and_report",
    "report": "tests/e2e/test_cli_json.py::test_publish_and_report",
    "tariff sign": "tests/e2e/test_profiles_tariff_cli.py::test_sign_and_show_fares",
    "tariff show": "tests/e2e/test_profiles_tariff_cli.py::test_sign_and_show_fares",
    "demo": "tests/e2e/test_demo.py::test_demo_json_every_card_agrees_with_the_ledger",
    "bench": "tests/test_bench.py::test_tapkit_bench_runs_a_section_of_the_checkout",
    "audit": "tests/host_tools/backoffice/test_report_cli.py::test_period_csv_and_json",
    "office init": "tests/e2e/test_card_office.py::test_an_operation_without_an_office_journal_touches_no_card",
    "office show": "tests/e2e/test_card_office.py::test_every_operation_is_in_the_office_journal_and_reaches_the_store",
    "office sync": "tests/e2e/test_card_office.py::test_every_operation_is_in_the_office_journal_and_reaches_the_store",
    "fleet": "tests/host_tools/backoffice/test_fleetstatus.py::test_fleet_and_ledger_commands",
    "ledger": "tests/host_tools/backoffice/test_fleetstatus.py::test_fleet_and_ledger_commands",
    "clones": "tests/e2e/test_money.py::test_a_card_image_restored_to_an_older_state_is_refused_also_after_a_reboot",
    "dashboard": "tests/e2e/test_dashboard_browser.py::served",
}


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_command_has_a_test_of_its_json(path):
    name = " ".join(path)
    assert name in JSON_PROOF, "%s: name the test that parses its --json in JSON_PROOF" % name
    file, func = JSON_PROOF[name].split("::")
    with open(os.path.join(ROOT, file)) as f:
        text = f.read()
    assert "def %s(" % func in text, JSON_PROOF[name]
    assert "--json" in text, JSON_PROOF[name]
