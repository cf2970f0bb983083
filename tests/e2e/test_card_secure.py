"""Cards issued before tapkit secured them, and their migration (`tapkit card secure`, or the next
top-up): card info read by terminals only, MACed (a relay cannot rewrite holder type, status or
expiry), an inspection copy for the read key, and the issuer's PICC master key so that FormatPICC
and DeleteApplication need it. Old keystores load and say how to add the PICC key."""

import json

from card_schema import citizen_host
from card_schema.desfire import CardError
from card_schema.desfire_admin import DESFireAdmin
from e2e_helpers import run_cli
from emulator.card import DESFireCard
from harness.legacy import make_legacy_file


def _card(capsys, keystore_path, path, *args):
    return run_cli(
        capsys, "card", *args, "--reader", "emulator:%s" % path, "--keystore", keystore_path
    )


def _issued(capsys, keystore_path, tmp_path, balance=500000):
    path = tmp_path / "rider.card"
    DESFireCard.blank().save(str(path))
    rc, out, err = _card(capsys, keystore_path, path, "issue", "--balance", str(balance), "--json")
    assert rc == 0, err
    return path


def _format_with_factory_key(path):
    """What anyone with a phone-grade reader can try: FormatPICC with the all-zero PICC key."""
    card = DESFireCard.load(str(path))
    df = DESFireAdmin(card.transceive)
    df.select_application(0)
    try:
        df.authenticate_iso(0, bytes(16))
        df.format_picc()
    except CardError as e:
        return e.status
    return 0


def test_keys_upgrade_adds_the_picc_key_only(capsys, tmp_path, keystore_path):
    doc = json.loads(keystore_path.read_text())
    old = dict(doc["keys"])
    del doc["keys"]["picc"]  # a keystore made before the PICC role
    keystore_path.write_text(json.dumps(doc))
    path = tmp_path / "new.card"
    DESFireCard.blank().save(str(path))
    rc, out, err = _card(capsys, keystore_path, path, "issue")
    assert rc == 1 and "keys upgrade --keystore" in err and len(err.splitlines()) == 1
    assert DESFireCard.load(str(path)).apps == {}  # refused before the card was touched
    rc, out, err = run_cli(capsys, "keys", "upgrade", "--keystore", keystore_path, "--json")
    assert rc == 0, err
    assert out["added"] == ["picc"]
    keys = json.loads(keystore_path.read_text())["keys"]
    assert {k: v for k, v in keys.items() if k != "picc"} == {
        k: v for k, v in old.items() if k != "picc"
    }
    assert len(bytes.fromhex(keys["picc"])) == 16
    rc, out, err = run_cli(capsys, "keys", "upgrade", "--keystore", keystore_path, "--json")
    assert rc == 0 and out["added"] == []


def test_card_secure_migrates_an_old_card_once(capsys, tmp_path, keystore_path):
    path = _issued(capsys, keystore_path, tmp_path)
    assert _format_with_factory_key(path) == 0xAE  # issued now: the factory key is gone
    make_legacy_file(path)
    wiped = tmp_path / "wiped.card"
    wiped.write_text(path.read_text())
    assert _format_with_factory_key(wiped) == 0  # the finding: an old card is wiped by anyone
    assert DESFireCard.load(str(wiped)).apps == {}
    rc, out, err = _card(capsys, keystore_path, path, "show", "--json")
    assert rc == 0 and out["secured"] is False and out["balance"] == 500000
    rc, out, err = _card(capsys, keystore_path, path, "secure", "--json")
    assert rc == 0, err
    assert out["done"] == [
        "card info rights",
        "inspection copy",
        "signature file",
        "issuer signature",
        "picc key",
        "picc key settings",
    ]
    rc, out, err = _card(capsys, keystore_path, path, "secure")
    assert rc == 0 and out.endswith("was already secured\n")
    assert _format_with_factory_key(path) == 0xAE
    card = DESFireCard.load(str(path))
    assert card.picc_key_aes and card.picc_key_settings == citizen_host.PICC_KEY_SETTINGS
    rc, out, err = _card(capsys, keystore_path, path, "show", "--json")
    assert out["secured"] is True and out["balance"] == 500000 and out["holder"] == "adult"
    assert out["signature"] == {"valid": True, "ceiling": 500000}


def test_card_secure_signs_an_old_card_once_and_never_value_added_outside_the_office(
    capsys, tmp_path, keystore_path
):
    from host_tools import keystore
    from host_tools.cardoffice import cardops

    path = _issued(capsys, keystore_path, tmp_path, balance=80000)
    make_legacy_file(path)
    rc, out, err = _card(capsys, keystore_path, path, "show")
    assert rc == 0 and "none: terminals refuse the card (run `tapkit card secure`)" in out
    rc, out, err = _card(capsys, keystore_path, path, "secure", "--json")
    assert rc == 0 and "issuer signature" in out["done"]
    rc, out, err = _card(capsys, keystore_path, path, "show")
    assert "valid, ceiling 80,000 Rial" in out
    # value added with the credit key behind the office's back (no top-up, no new signature)
    ks = keystore.load(str(keystore_path))
    card = DESFireCard.load(str(path))
    df = DESFireAdmin(card.transceive)
    df.select_application(0x544B01)
    df.authenticate_aes(2, cardops._role_key(ks, 2, card.uid))
    df.credit(2, 900000, 3)
    df.commit_transaction()
    card.save()
    rc, out, err = _card(capsys, keystore_path, path, "show")
    assert "ceiling 80,000 Rial: the balance is above it, terminals refuse the card" in out
    rc, out, err = _card(capsys, keystore_path, path, "secure")
    assert rc == 1 and len(err.splitlines()) == 1
    assert "balance 980000 is above its signed ceiling 80000" in err
    rc, out, err = _card(capsys, keystore_path, path, "show", "--json")
    assert out["signature"] == {"valid": True, "ceiling": 80000}  # not signed again


def test_keys_upgrade_adds_the_signing_key_to_a_keystore_without_one(
    capsys, tmp_path, keystore_path
):
    doc = json.loads(keystore_path.read_text())
    del doc["sign"]  # a keystore made before cards were signed
    keystore_path.write_text(json.dumps(doc))
    path = tmp_path / "new.card"
    DESFireCard.blank().save(str(path))
    rc, out, err = _card(capsys, keystore_path, path, "issue")
    assert rc == 1 and "no issuer signing key" in err and "keys upgrade --keystore" in err
    assert DESFireCard.load(str(path)).apps == {}  # refused before the card was touched
    rc, out, err = run_cli(capsys, "keys", "upgrade", "--keystore", keystore_path, "--json")
    assert rc == 0 and out["added"] == ["sign"], err
    new = json.loads(keystore_path.read_text())
    assert new["keys"] == doc["keys"] and new["sign"]["id"] == 1
    rc, out, err = _card(capsys, keystore_path, path, "issue", "--balance", "5000", "--json")
    assert rc == 0, err
    rc, out, err = _card(capsys, keystore_path, path, "show", "--json")
    assert out["signature"] == {"valid": True, "ceiling": 5000}


def test_the_next_topup_secures_an_old_card(capsys, tmp_path, keystore_path):
    path = _issued(capsys, keystore_path, tmp_path)
    make_legacy_file(path)
    rc, out, err = _card(capsys, keystore_path, path, "topup", "--amount", "1000", "--json")
    assert rc == 0, err
    assert out["balance"] == 501000 and out["secured"] is True
    assert _format_with_factory_key(path) == 0xAE
    rc, out, err = _card(capsys, keystore_path, path, "show", "--json")
    assert out["signature"] == {"valid": True, "ceiling": 501000}  # the top-up's new ceiling
