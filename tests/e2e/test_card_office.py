"""`tapkit card ...` as the card office uses it, on an emulated card (--reader emulator:CARDFILE):
block / unblock / refund, the one-line errors, --trace, and keys never shown."""

import binascii
import json

import pytest

from card_schema import citizen
from e2e_helpers import run_cli
from emulator.card import DESFireCard
from host_tools import keystore

pytestmark = pytest.mark.usefixtures("keystore_path")


@pytest.fixture
def cardfile(tmp_path):
    path = tmp_path / "rider.card"
    DESFireCard.blank().save(str(path))
    return path


def card(capsys, keystore_path, cardfile, *args):
    return run_cli(
        capsys, "card", *args, "--reader", "emulator:%s" % cardfile, "--keystore", keystore_path
    )


@pytest.fixture
def issued(capsys, keystore_path, cardfile):
    rc, out, err = card(
        capsys, keystore_path, cardfile, "issue", "--balance", "80000", "--card-no", "42", "--json"
    )
    assert rc == 0, err
    assert out["balance"] == 80000 and out["status"] == "active"
    return cardfile


def test_block_refuses_topup_then_unblock(capsys, keystore_path, issued):
    rc, out, err = card(capsys, keystore_path, issued, "block", "--json")
    assert rc == 0, err
    assert out == {
        "uid": out["uid"],
        "card_no": 42,
        "status": "blocked",
        "changed": True,
        "counter": 1,  # the card state the block leaves (journalled with it)
        "balance": 80000,
    }
    rc, out, err = card(capsys, keystore_path, issued, "show", "--json")
    assert out["status"] == "blocked" and out["balance"] == 80000
    rc, out, err = card(capsys, keystore_path, issued, "topup", "--amount", "1000")
    assert rc == 1
    assert err == "tapkit: error: card 42 is blocked: it cannot be topped up\n"
    rc, out, err = card(capsys, keystore_path, issued, "block")
    assert rc == 0 and "was already blocked" in out
    rc, out, err = card(capsys, keystore_path, issued, "unblock")
    assert rc == 0 and out.startswith("card 42 (UID ") and out.endswith("is active\n")
    rc, out, err = card(capsys, keystore_path, issued, "topup", "--amount", "1000", "--json")
    assert rc == 0 and out["balance"] == 81000


def test_refund_closes_the_card_and_logs_the_payout(capsys, keystore_path, issued):
    rc, out, err = card(capsys, keystore_path, issued, "refund")
    assert rc == 0, err
    assert out.startswith("card 42 (UID ") and out.endswith(
        "closed: blocked, 80,000 Rial refunded\n"
    )
    rc, out, err = card(capsys, keystore_path, issued, "show", "--json")
    assert out["status"] == "blocked" and out["balance"] == 0
    newest = out["trips"][0]
    assert (newest["kind"], newest["amount"], newest["balance_after"]) == ("refund", 80000, 0)
    assert newest["counter"] == out["counter"] == 2  # the issue credit was transaction 1
    # again: nothing more to pay out, and it says what was refunded
    rc, out, err = card(capsys, keystore_path, issued, "refund", "--json")
    assert rc == 0
    assert (out["refunded"], out["already"], out["balance"], out["counter"]) == (80000, True, 0, 2)
    assert DESFireCard.load(str(issued)).value(citizen.AID, citizen.FILE_PURSE) == 0


def test_errors_are_one_line(capsys, keystore_path, cardfile, tmp_path):
    # no card file (the emulator's "no card on the reader")
    rc, out, err = card(capsys, keystore_path, tmp_path / "nope.card", "show")
    assert rc == 1 and err.count("\n") == 1 and "no card file" in err
    # a blank card: not one of ours
    rc, out, err = card(capsys, keystore_path, cardfile, "show")
    assert rc == 1
    assert (
        err == "tapkit: error: card is not a tapkit citizen card (application 544B01 not found)\n"
    )
    # unknown reader kind
    rc, out, err = run_cli(
        capsys, "card", "show", "--reader", "magic", "--keystore", keystore_path
    )
    assert rc == 1 and err.startswith("tapkit: error: unknown reader 'magic'")
    # another issuer's keys
    rc, _, err = card(capsys, keystore_path, cardfile, "issue")
    assert rc == 0, err
    other = tmp_path / "other.keys"
    keystore.init(str(other))
    rc, out, err = card(capsys, other, cardfile, "show")
    assert rc == 1
    assert err.startswith("tapkit: error: wrong keys for this card (authentication with the ")
    assert err.count("\n") == 1
    # an operation is refused before the card is touched: the office journal is not its key's
    rc, out, err = card(capsys, other, cardfile, "block")
    assert rc == 1 and "MAC chain broken at seq 1" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "op,args,frame,expect",
    [
        ("topup", ["--amount", "5000"], 2, "the card is unchanged (nothing was committed)"),
        ("topup", ["--amount", "5000"], -1, "may or may not have taken the credit of 5000 Rial"),
        ("refund", [], 3, "the card is unchanged (nothing was committed)"),
        ("refund", [], -1, "the card is blocked; the refund of 80000 Rial may or may not be"),
    ],
)
def test_card_removed_says_what_state_the_card_is_in(
    capsys, keystore_path, issued, monkeypatch, op, args, frame, expect
):
    """The card leaves the field at a chosen frame (-1: the CommitTransaction, answer lost)."""
    load = DESFireCard.load
    seen = []

    def tear(c, f):
        seen.append(f)
        cmd = f[1]
        if (frame == -1 and cmd == 0xC7) or len(seen) == frame:
            return "before" if frame != -1 else "after"
        return None

    def load_torn(path):
        c = load(path)
        c.tear = tear
        return c

    before = load(str(issued))
    monkeypatch.setattr(DESFireCard, "load", staticmethod(load_torn))
    rc, out, err = card(capsys, keystore_path, issued, op, *args)
    assert rc == 1
    assert err.startswith(
        "tapkit: error: card removed during %s: " % ("top-up" if op == "topup" else op)
    )
    assert expect in err and err.count("\n") == 1
    after = load(str(issued))
    if "unchanged" in expect:
        assert after.to_json() == before.to_json()
    monkeypatch.setattr(DESFireCard, "load", staticmethod(load))
    if op == "refund":  # run it again: it pays out only what is left, once
        rc, out, err = card(capsys, keystore_path, issued, "refund", "--json")
        assert rc == 0 and out["refunded"] == 80000 and out["balance"] == 0
        rc, out, err = card(capsys, keystore_path, issued, "show", "--json")
        assert [t["kind"] for t in out["trips"]].count("refund") == 1


def test_trace_names_every_apdu_and_never_shows_a_key(capsys, keystore_path, cardfile):
    rc, out, err = card(
        capsys, keystore_path, cardfile, "issue", "--balance", "1000", "--trace", "--json"
    )
    assert rc == 0
    lines = err.splitlines()
    assert lines and all(ln[:2] in ("> ", "< ") for ln in lines)
    names = {ln.split("  ", 1)[1].split(":")[0] for ln in lines}
    assert {
        "CreateApplication",
        "AuthenticateAES",
        "ChangeKey",
        "Credit",
        "CommitTransaction",
    } <= names
    assert any(ln.startswith("< ") and ln.endswith(": OK") for ln in lines)
    # no issuer key, diversified card key or session-free key material in the trace or the output
    ks = keystore.load(str(keystore_path))
    uid = DESFireCard.load(str(cardfile)).uid
    secrets = []
    for role, k in ks["keys"].items():
        secrets.append(k)
        secrets.append(keystore.card_key(ks, role, uid))
    text = (err + json.dumps(out)).replace(" ", "").lower()
    for k in secrets:
        assert binascii.hexlify(k).decode() not in text
    for ln in lines:  # also not split across bytes in the spaced hex
        assert all(
            binascii.hexlify(k[:8]).decode() not in ln.replace(" ", "").lower() for k in secrets
        )


def office_records(keystore_path, path):
    from card_schema import taprecord_host
    from host_tools.cardoffice.journal import OfficeJournal

    j = OfficeJournal.open(path, keystore.load(str(keystore_path)))
    return [
        (r["seq"], r["kind"], r["counter"], r["amount"], r["balance"])
        for r in map(taprecord_host.to_dict, j.records())
    ]


def test_every_operation_is_in_the_office_journal_and_reaches_the_store(
    capsys, keystore_path, cardfile, office_journal, tmp_path
):
    """The issue: card-office money never reached the database. Each operation is a MAC-chained
    record of office 9001 (the card state it leaves: counter, balance), money ones confirmed after
    the commit; `tapkit office sync` stores them like taps, once; the report shows the money."""
    rc, out, err = card(capsys, keystore_path, cardfile, "issue", "--balance", "80000", "--json")
    assert rc == 0, err
    for args in (("topup", "--amount", "20000"), ("block",), ("unblock",), ("refund",)):
        rc, out, err = card(capsys, keystore_path, cardfile, *args)
        assert rc == 0, err
    assert office_records(keystore_path, office_journal) == [
        (1, "issue", 1, 80000, 80000),
        (2, "confirm", 1, 1, 80000),
        (3, "topup", 2, 20000, 100000),
        (4, "confirm", 2, 3, 100000),
        (5, "block", 2, 0, 100000),
        (6, "unblock", 2, 0, 100000),
        (7, "block", 2, 0, 100000),
        (8, "payout", 3, 100000, 0),  # `card refund` records what was paid out
        (9, "confirm", 3, 8, 0),
    ]
    rc, out, err = card(capsys, keystore_path, cardfile, "show", "--json")
    assert out["trips"][0]["terminal"] == 9001  # the card's trip log names the office
    rc, out, err = run_cli(capsys, "office", "show", "--keystore", keystore_path, "--json")
    assert rc == 0 and out["office_id"] == 9001 and out["records"][7]["kind"] == "payout"
    db = "sqlite:///%s" % (tmp_path / "office.db")
    sync = ("office", "sync", "--db", db, "--keystore", keystore_path, "--json")
    rc, out, err = run_cli(capsys, *sync)
    assert rc == 0, err
    assert (out["office"], out["stored"], out["duplicates"]) == (9001, 9, 0)
    rc, out, err = run_cli(capsys, *sync)  # again: nothing new
    assert (out["stored"], out["last_seq"]) == (0, 9)
    rc, rep, err = run_cli(capsys, "report", "--db", db, "--keystore", keystore_path, "--json")
    assert rc == 0, err
    assert rep["office"] == {
        "topups": 1,
        "topped_up": 20000,
        "payouts": 1,
        "paid_out": 100000,
        "issued": 1,
        "issued_balance": 80000,
    }
    assert rep["revenue"] == 0 and rep["reconciliation"]["mac_chain_breaks"] == []
    assert [(t["terminal"], t["role"]) for t in rep["terminals"]] == [(9001, "office")]


def test_an_operation_without_an_office_journal_touches_no_card(
    capsys, keystore_path, cardfile, tmp_path
):
    before = cardfile.read_bytes()
    rc, out, err = card(
        capsys, keystore_path, cardfile, "issue", "--office", str(tmp_path / "none.journal")
    )
    assert rc == 1 and err.count("\n") == 1
    assert "no office journal at " in err and "`tapkit office init --id N`" in err
    assert cardfile.read_bytes() == before
    rc, out, err = run_cli(
        capsys, "office", "init", "--id", "9002", "--office", str(tmp_path / "j"), "--json"
    )
    assert rc == 0 and out == {"journal": str(tmp_path / "j"), "office_id": 9002}, err
    rc, out, err = run_cli(
        capsys, "office", "init", "--id", "9002", "--office", str(tmp_path / "j")
    )
    assert rc == 1 and "already exists" in err


@pytest.mark.parametrize("frame", [2, -1])
def test_a_torn_topup_leaves_no_record_or_an_unconfirmed_one(
    capsys, keystore_path, issued, monkeypatch, office_journal, frame
):
    """Torn before the commit: no money record (the card is unchanged). Answer of the commit
    lost: the top-up record stays unconfirmed (no confirm, no void): the ledger settles it."""
    load = DESFireCard.load
    seen = []

    def tear(c, f):
        seen.append(f)
        if (frame == -1 and f[1] == 0xC7) or len(seen) == frame:
            return "before" if frame != -1 else "after"
        return None

    def load_torn(path):
        c = load(path)
        c.tear = tear
        return c

    monkeypatch.setattr(DESFireCard, "load", staticmethod(load_torn))
    rc, out, err = card(capsys, keystore_path, issued, "topup", "--amount", "5000")
    assert rc == 1
    kinds = [k for _s, k, *_ in office_records(keystore_path, office_journal)]
    assert kinds == (["issue", "confirm"] if frame == 2 else ["issue", "confirm", "topup"])


def test_a_torn_journal_tail_is_cut_and_a_damaged_one_refused(tmp_path, keystore_path):
    from host_tools.cardoffice.journal import JournalError, OfficeJournal

    ks = keystore.load(str(keystore_path))
    path = str(tmp_path / "o.journal")
    OfficeJournal.init(path, 9003)
    j = OfficeJournal.open(path, ks)
    for i in range(3):
        j.append(9, bytes(7), counter=i + 1, amount=10, balance=10 * (i + 1))
    with open(path, "ab") as f:
        f.write(b"\x01" * 40)  # the power went while the 4th record was written
    j = OfficeJournal.open(path, ks)
    assert j.head_seq() == 3 and j.append(9, bytes(7), counter=4, amount=10, balance=40) == 4
    data = bytearray(open(path, "rb").read())
    data[64 + 64 + 30] ^= 1  # record 2 altered
    open(path, "wb").write(bytes(data))
    with pytest.raises(JournalError, match="damaged at record 2"):
        OfficeJournal.open(path, ks)
    other = keystore.init(str(tmp_path / "other.keys"))
    p2 = str(tmp_path / "p2.journal")
    OfficeJournal.init(p2, 9004)
    OfficeJournal.open(p2, ks).append(9, bytes(7), counter=1, amount=1, balance=1)
    with pytest.raises(JournalError, match="MAC chain broken at seq 1"):
        OfficeJournal.open(p2, other)
