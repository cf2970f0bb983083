"""`tapkit tariff sign|show`: what an operator types to make fare tables and deny lists for a terminal."""

import json

from e2e_helpers import run_cli

TABLE = {"fares": {"7": 25000}, "default": 30000, "conc": [100, 50, 30, 0], "repeat": 10}


def test_sign_and_show_fares(tmp_path, capsys, keystore_path):
    src = tmp_path / "fares.json"
    src.write_text(json.dumps(TABLE))
    out = tmp_path / "t1001-fares.bin"
    rc, res, err = run_cli(
        capsys, "tariff", "sign", src, "--kind", "fares", "--version", 7, "--terminal-id", 1001,
        "--keystore", keystore_path, "-o", out, "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert res["version"] == 7 and res["output"] == str(out) and res["bytes"] == out.stat().st_size
    rc, shown, err = run_cli(
        capsys, "tariff", "show", out, "--terminal-id", 1001, "--keystore", keystore_path, "--json"
    )
    assert rc == 0, err
    assert shown == {"kind": "fares", "version": 7, "terminal_id": 1001, "table": TABLE}

    # signed for 1001: terminal 1002 refuses it
    rc, _, err = run_cli(
        capsys, "tariff", "show", out, "--terminal-id", 1002, "--keystore", keystore_path
    )
    assert rc == 1
    assert err == "tapkit: error: not a valid blob for terminal 1002: bad signature\n"


def test_sign_and_show_deny_list(tmp_path, capsys, keystore_path):
    src = tmp_path / "deny.json"
    src.write_text(json.dumps({"04a1b2c3d4e5f6": "block", "04:00:00:00:00:00:01": "refuse"}))
    out = tmp_path / "deny.bin"
    rc, _, err = run_cli(
        capsys, "tariff", "sign", src, "--kind", "deny", "--version", 2, "--terminal-id", 5,
        "--keystore", keystore_path, "-o", out,
    )  # fmt: skip
    assert rc == 0, err
    rc, shown, err = run_cli(
        capsys, "tariff", "show", out, "--terminal-id", 5, "--keystore", keystore_path, "--json"
    )
    assert rc == 0, err
    assert shown["entries"] == {"04000000000001": "refuse", "04a1b2c3d4e5f6": "block"}
    assert shown["kind"] == "deny" and shown["version"] == 2


def test_bad_input_is_one_line(tmp_path, capsys, keystore_path):
    def sign(content, kind="fares", version=1):
        src = tmp_path / "in.json"
        src.write_text(content)
        rc, out, err = run_cli(
            capsys, "tariff", "sign", src, "--kind", kind, "--version", version,
            "--terminal-id", 1, "--keystore", keystore_path, "-o", tmp_path / "x.bin",
        )  # fmt: skip
        assert rc == 1 and err.count("\n") == 1 and err.startswith("tapkit: error: "), err
        return err

    assert "is not JSON" in sign("{")
    assert "amounts are integer Rial" in sign(json.dumps({"fares": {"7": 2.5}}))
    assert "not 7 bytes" in sign(json.dumps({"04a1": "block"}), kind="deny")
    assert "action 'lock'" in sign(json.dumps({"04a1b2c3d4e5f6": "lock"}), kind="deny")
    assert "version 70000 out of range" in sign(json.dumps(TABLE), version=70000)
    assert not (tmp_path / "x.bin").exists()  # nothing written on a refusal
