"""`tapkit report` and `tapkit audit` as an operator types them: read-only commands create nothing,
every figure is verified, an edited row is named, CSV and --json export, --since/--until."""

import json

import pytest

from card_schema import taprecord, taprecord_host
from host_tools import keystore
from host_tools.backoffice import store as store_mod
from host_tools.cli.app import main

T0 = 1700000000  # 2023-11-14 22:13:20 UTC


def cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def ks_path(tmp_path):
    p = str(tmp_path / "issuer.keys")
    keystore.init(p)
    return p


def fill(url, ks_path, n=4, amount=25000, tid=1001):
    ks = keystore.load(ks_path)
    key = keystore.terminal_key(ks, tid)
    prev, recs = taprecord.GENESIS_MAC, []
    for i in range(n):
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf,
            prev,
            key,
            seq=len(recs) + 1,
            time=T0 + 3600 * i,
            terminal=tid,
            uid=bytes([4, 1, 2, 3, 4, 5, 6]),
            kind=taprecord.KIND_CHARGE,
            counter=i + 1,
            amount=amount,
            balance=200000 - amount * (i + 1),
            line=7,
        )
        recs.append(bytes(buf))
        # the terminal confirms each charge once the card answered its commit
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf,
            prev,
            key,
            seq=len(recs) + 1,
            time=T0 + 3600 * i + 1,
            terminal=tid,
            uid=bytes([4, 1, 2, 3, 4, 5, 6]),
            kind=taprecord_host.KIND_CONFIRM,
            result=taprecord_host.RESULT_COMMIT_ANSWER,
            counter=i + 1,
            amount=len(recs),
            balance=200000 - amount * (i + 1),
        )
        recs.append(bytes(buf))
    with store_mod.open_store(url) as db:
        db.ingest(tid, recs, key)
    return recs


def test_a_missing_store_is_one_line_and_nothing_is_created(tmp_path, capsys, ks_path):
    typo = tmp_path / "typo.db"
    for argv in (
        ("report", "--db", f"sqlite:///{typo}", "--keystore", ks_path),
        ("audit", "--db", f"sqlite:///{typo}", "--keystore", ks_path),
    ):
        rc, out, err = cli(capsys, *argv)
        assert rc != 0 and out == ""
        assert (
            err
            == f"tapkit: error: no store at {typo}: check --db (`tapkit sync` or `serve` make one)\n"
        )
    assert not typo.exists()
    # sync with a port that does not exist: the port is checked before any store is made
    rc, out, err = cli(
        capsys,
        "sync",
        "--port",
        str(tmp_path / "ttyNOPE"),
        "--db",
        f"sqlite:///{typo}",
        "--keystore",
        ks_path,
    )
    assert rc != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert not typo.exists()


def test_report_needs_the_keystore(tmp_path, capsys, ks_path):
    url = f"sqlite:///{tmp_path / 'taps.db'}"
    fill(url, ks_path)
    rc, out, err = cli(capsys, "report", "--db", url, "--keystore", str(tmp_path / "nokeys"))
    assert rc != 0 and err.startswith("tapkit: error: no keystore at ") and err.count("\n") == 1


def test_edited_amount_is_named_and_left_out(tmp_path, capsys, ks_path):
    url = f"sqlite:///{tmp_path / 'taps.db'}"
    fill(url, ks_path)
    rc, out, err = cli(capsys, "report", "--db", url, "--keystore", ks_path)
    assert rc == 0, err
    assert "revenue 100,000 Rial from 4 confirmed charges" in out
    assert "every record verified (MAC chains intact" in out
    with store_mod.open_store(url) as db:
        db._exec("UPDATE taps SET amount = 1000 WHERE terminal = 1001 AND seq = 3")
    rc, out, err = cli(capsys, "report", "--db", url, "--keystore", ks_path, "--json")
    rep = json.loads(out)
    assert rep["revenue"] == 75000  # 25,000 left out, not 24,000 lost
    (f,) = rep["reconciliation"]["findings"]
    assert (f["kind"], f["terminal"], f["seq"]) == ("edited", 1001, 3)
    assert f["text"] == (
        "column amount edited: stored 1000, the record says 25000 (25,000 Rial not counted)"
    )
    rc, out, err = cli(capsys, "report", "--db", url, "--keystore", ks_path)
    assert "MAC chains intact" not in out and "record edited" in out


def test_period_csv_and_json(tmp_path, capsys, ks_path):
    url = f"sqlite:///{tmp_path / 'taps.db'}"
    fill(url, ks_path, n=4)  # 22:13, 23:13, 00:13, 01:13 UTC
    base = ("report", "--db", url, "--keystore", ks_path)
    rc, out, err = cli(capsys, *base, "--since", "2023-11-15", "--json")
    assert rc == 0, err
    rep = json.loads(out)
    assert (rep["revenue"], rep["charges"], rep["period"]["since"]) == (50000, 2, T0 + 6400)
    rc, out, err = cli(capsys, *base, "--by", "hour", "--csv")
    assert out.splitlines() == [
        "hour,taps,charges,revenue,unconfirmed_amount",
        "2023-11-14 22:00,1,1,25000,0",
        "2023-11-14 23:00,1,1,25000,0",
        "2023-11-15 00:00,1,1,25000,0",
        "2023-11-15 01:00,1,1,25000,0",
    ]
    # Tehran days (+3:30): all four fall on the 15th
    rc, out, err = cli(capsys, *base, "--tz", "12600", "--by", "day", "--csv")
    assert out.splitlines()[1:] == ["2023-11-15,4,4,100000,0"]
    rc, out, err = cli(capsys, *base, "--until", "2023-11-14T23:00", "--by", "terminal")
    assert "revenue 25,000 Rial from 1 confirmed charge" in out
    rc, out, err = cli(capsys, *base, "--since", "yesterday")
    assert rc != 0 and "bad time 'yesterday'" in err
    rc, out, err = cli(capsys, "audit", "--db", url, "--keystore", ks_path, "--full", "--json")
    assert rc == 0 and json.loads(out)["verified"] == 8
