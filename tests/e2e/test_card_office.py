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
    assert out == {"uid": out["uid"], "card_no": 42, "status": "blocked", "changed": True}
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
    rc, out, err = card(capsys, other, cardfile, "block")
    assert rc == 1
    assert err.startswith("tapkit: error: wrong keys for this card (authentication with the ")
    assert err.count("\n") == 1


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
