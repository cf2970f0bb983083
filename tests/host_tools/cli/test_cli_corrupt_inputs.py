"""Corrupt inputs (a card file, a keystore, a JSON table, a store) give one clear line and exit 1,
and change nothing."""

import json
import os
import stat

import pytest

from emulator.card import DESFireCard
from host_tools.cli.app import main


def run(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err):
    return err.count("\n") == 1 and "internal error" not in err and "Traceback" not in err


@pytest.fixture
def ks(tmp_path, capsys):
    path = tmp_path / "issuer.keys"
    assert run(capsys, "keys", "init", "--keystore", path)[0] == 0
    return path


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "is not a card file: empty"),
        ("{nope", "is not a card file: not JSON"),
        ('{"uid": "zz"}', "is not a card file: damaged (Non-hexadecimal digit found)"),
        ('{"uid": "04112233445566", "apps": {"F": {}}}', "damaged (no 'files')"),
        ("[1, 2]", "is not a card file: damaged"),
    ],
)
def test_a_corrupt_card_file(capsys, tmp_path, ks, text, says):
    path = tmp_path / "c.card"
    path.write_text(text)
    for argv in (
        ("card", "show", "--reader", "emulator:%s" % path, "--keystore", ks),
        ("emulate", "card", path),
    ):
        rc, out, err = run(capsys, *argv)
        assert rc == 1 and out == "" and one_line(err), err
        assert err.startswith("tapkit: error: %s " % path) and says in err, err
    assert path.read_text() == text


def test_a_good_card_file_still_loads(tmp_path):
    path = tmp_path / "c.card"
    DESFireCard.blank().save(str(path))
    assert DESFireCard.load(str(path)).uid


@pytest.mark.parametrize(
    "doc, says",
    [
        ("", "is not a keystore (not JSON"),
        ("[1]", "is damaged or incomplete (bad content)"),
        ({"keys": {}}, "is damaged or incomplete (no 'master' key)"),
        ({"keys": "x"}, "is damaged or incomplete (bad content)"),
        ("short", "is damaged: the debit key is not 16 bytes"),
        ("hex", "is damaged or incomplete (bad content)"),
        ("issuer", "is damaged or incomplete (bad content)"),
    ],
)
def test_a_corrupt_keystore(capsys, tmp_path, ks, doc, says):
    good = json.loads(ks.read_text())
    if doc == "short":
        doc = dict(good, keys=dict(good["keys"], debit="00"))
    elif doc == "hex":
        doc = dict(good, keys=dict(good["keys"], debit="zz" * 16))
    elif doc == "issuer":
        doc = dict(good, issuer_id="first")
    bad = tmp_path / "bad.keys"
    bad.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    (tmp_path / "f.json").write_text('{"default": 25000}')
    rc, out, err = run(
        capsys, "tariff", "sign", "--kind", "fares", "--version", "1", "--terminal-id", "1",
        "--keystore", bad, tmp_path / "f.json", "-o", tmp_path / "f.bin",
    )  # fmt: skip
    assert rc == 1 and out == "" and one_line(err), err
    assert err.startswith("tapkit: error: keystore %s " % bad) and says in err, err
    assert not (tmp_path / "f.bin").exists()


@pytest.mark.parametrize(
    "kind, text, says",
    [
        ("fares", "", "is not JSON"),
        ("fares", "{", "is not JSON"),
        ("fares", "[1]", "a fare table is a JSON object"),
        ("fares", '{"default": -5}', "fare table: amounts are integer Rial >= 0"),
        ("deny", '{"zz": "refuse"}', "deny list: 'zz' is not a UID in hex"),
        ("deny", '{"04112233445566": "eat"}', "action 'eat' for 04112233445566"),
    ],
)
def test_a_corrupt_json_table(capsys, tmp_path, ks, kind, text, says):
    path = tmp_path / "t.json"
    path.write_text(text)
    db = "sqlite:///%s" % (tmp_path / "t.db")
    for argv in (
        ("tariff", "sign", "--kind", kind, "--version", 1, "--terminal-id", 1, "--keystore", ks,
         path, "-o", tmp_path / "t.bin"),
        ("publish", "--kind", kind, "--version", 1, "--db", db, path),
        ("emulate", "board", "--state", tmp_path / "b", "--keystore", ks,
         "--fares" if kind == "fares" else "--deny", path),
    ):  # fmt: skip
        rc, out, err = run(capsys, *argv)
        assert rc == 1 and out == "" and one_line(err), (argv, err)
        assert err.startswith("tapkit: error: ") and says in err, (argv, err)
    assert not (tmp_path / "t.bin").exists() and not (tmp_path / "b").exists()


def test_a_file_that_is_not_a_store(capsys, tmp_path):
    path = tmp_path / "g.db"
    path.write_text("garbage")
    rc, out, err = run(capsys, "report", "--db", "sqlite:///%s" % path)
    assert rc == 1 and out == "" and one_line(err)
    assert err == "tapkit: error: cannot open the store %s: file is not a database\n" % path


def test_sign_to_a_device_writes_into_it_and_never_replaces_it(capsys, tmp_path, ks):
    """`-o /dev/stdout` (or a fifo, /dev/null): written into, never renamed over (as root, a rename
    would replace the device node)."""
    (tmp_path / "f.json").write_text('{"default": 25000}')
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    import threading

    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    rc, out, err = run(
        capsys, "tariff", "sign", "--kind", "fares", "--version", "1", "--terminal-id", "1",
        "--keystore", ks, tmp_path / "f.json", "-o", fifo,
    )  # fmt: skip
    reader.join(timeout=30)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and len(got[0]) > 40
    assert not (tmp_path / "out.fifo.new").exists()


def test_a_deny_version_not_above_every_published_one(capsys, tmp_path):
    """Deny and deny-delta lists share their versions (host_tools/backoffice/denylist.py): a delta
    published as a version a full list has, or older, is refused with one line, nothing stored."""
    (tmp_path / "d.json").write_text('{"04112233445566": "refuse"}')
    db = "sqlite:///%s" % (tmp_path / "t.db")
    pub = ("publish", "--kind", "deny", "--version", 7, "--db", db, tmp_path / "d.json")
    assert run(capsys, *pub)[0] == 0
    assert run(capsys, *pub)[1] == "deny version 7 (12 bytes) was already published\n"
    for kind, version in (("deny-delta", 7), ("deny-delta", 6), ("deny", 5)):
        argv = ("publish", "--kind", kind, "--version", version, "--db", db, tmp_path / "d.json")
        rc, out, err = run(capsys, *argv)
        assert rc == 2 and out == "" and one_line(err), err  # a usage error: another version
        assert "deny lists are at version 7" in err and "publish version 8 or later" in err
    assert run(capsys, "publish", "--kind", "deny-delta", "--version", 8, "--db", db,
               tmp_path / "d.json")[0] == 0  # fmt: skip
