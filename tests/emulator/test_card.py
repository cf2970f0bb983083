"""The emulated DESFire EV1 card driven by the real client and the card-office operations: what a user
sees (balances, counters, status codes, error lines), in both framings, through the card file."""

import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from card_schema import citizen, citizen_host
from card_schema.crypto import rotl
from card_schema.desfire import MODE_ENC, MODE_MAC, CardError
from card_schema.desfire_admin import DESFireAdmin
from emulator.card import DESFireCard
from host_tools import TapkitError, keystore
from host_tools.cardoffice import cardops
from host_tools.keystore import card_key

AID = citizen.AID
T0 = 1700000000


_SIGN = keystore.new_sign_key()


def _ks(seed):
    keys = {
        r: bytes([seed + i]) * 16
        for i, r in enumerate(("master", "debit", "credit", "read", "journal", "picc"))
    }
    return {"issuer_id": 7, "keys": keys, "path": None, "sign": _SIGN}


@pytest.fixture
def ks():
    return _ks(0x10)


@pytest.fixture(params=[True, False], ids=["wrapped", "native"])
def wrapped(request):
    return request.param


@pytest.fixture
def card(tmp_path):
    return DESFireCard.blank(path=str(tmp_path / "card.json"))


@pytest.fixture
def issued(card, ks, wrapped):
    df = DESFireAdmin(card.transceive, wrapped=wrapped)
    cardops.issue(df, ks, card.uid, "student", 1001, T0 + 86400 * 365, balance=50000, now=T0)
    return card, DESFireAdmin(card.transceive, wrapped=wrapped)


def _auth(df, ks, card, role):
    df.select_application(AID)
    df.authenticate_aes(citizen_host.ROLE_NAMES.index(role), card_key(ks, role, card.uid))


def _debit_tap(df, ks, card, amount, commit=True):
    """What a terminal does: debit key, balance, counter, debit + trip record, commit."""
    _auth(df, ks, card, "debit")
    balance = df.get_value(citizen.FILE_PURSE, MODE_ENC)
    raw = df.read_records(citizen.FILE_TRIPS, 0, 1, citizen.TRIP_SIZE, MODE_MAC)
    counter = citizen.unpack_trip(raw)[citizen.TR_COUNTER]
    df.debit(citizen.FILE_PURSE, amount, MODE_ENC)
    trip = citizen_host.pack_trip(
        counter + 1, T0 + 60, 42, amount, balance - amount, line=7, stop=3
    )
    df.write_record(citizen.FILE_TRIPS, 0, trip, MODE_MAC)
    if commit:
        df.commit_transaction()
    return balance - amount


def test_issue_topup_show(issued, ks):
    card, df = issued
    assert cardops.topup(df, ks, card.uid, 20000, terminal_id=5, now=T0 + 10) == 70000
    s = cardops.show(df, ks, card.uid)
    assert s["balance"] == 70000
    assert s["holder"] == "student" and s["status"] == "active" and s["card_no"] == 1001
    assert s["issuer_id"] == 7 and s["expiry"] == T0 + 86400 * 365
    assert s["counter"] == 2
    assert [(t["kind"], t["amount"], t["balance_after"], t["counter"]) for t in s["trips"]] == [
        ("credit", 20000, 70000, 2),
        ("credit", 50000, 50000, 1),
    ]
    assert s["trips"][0]["terminal"] == 5
    assert cardops.read_balance(df, ks, card.uid) == 70000
    assert card.value(AID, citizen.FILE_PURSE) == 70000


def test_issued_card_structure(issued, ks):
    card, df = issued
    df.select_application(AID)
    assert df.get_file_ids() == [1, 2, 3, 4, 5]
    assert df.get_key_settings() == (cardops.APP_KEY_SETTINGS, 0x84)  # 4 AES keys
    # card info: only the debit key reads it (MACed, in the terminal's session); its copy: read key
    # the issuer signature too (debit key reads it, only the master key writes it: 264 bytes)
    for file_no, read in (
        (citizen.FILE_INFO, 1),
        (citizen_host.FILE_INFO_COPY, 3),
        (citizen_host.FILE_SIG, 1),
    ):
        s = df.get_file_settings(file_no)
        assert (s["comm"], s["read"], s["write"], s["read_write"], s["change"]) == (
            1,
            read,
            0,
            0,
            0,
        )
    purse = df.get_file_settings(citizen.FILE_PURSE)
    assert (purse["type"], purse["comm"], purse["read"], purse["write"], purse["read_write"]) == (
        2,
        citizen_host.COMM_ENC,
        1,
        1,
        2,
    )
    trips = df.get_file_settings(citizen.FILE_TRIPS)
    assert (trips["record_size"], trips["max_records"], trips["records"]) == (32, 10, 1)
    # the default key no longer works; the diversified ones do
    with pytest.raises(CardError) as e:
        df.authenticate_aes(0, bytes(16))
    assert e.value.status == 0xAE
    _auth(df, ks, card, "master")
    assert df.get_card_uid() == card.uid
    # the PICC: the issuer's AES key (diversified), settings 0x0B; the factory key is gone
    df.select_application(0)
    assert df.get_key_settings() == (citizen_host.PICC_KEY_SETTINGS, 0x81)
    with pytest.raises(CardError) as e:
        df.authenticate_iso(0, bytes(16))
    assert e.value.status == 0xAE
    df.select_application(0)
    df.authenticate_aes(0, keystore.picc_key(ks, card.uid))


def test_debit_with_debit_key(issued, ks):
    card, df = issued
    assert _debit_tap(df, ks, card, 1500) == 48500
    s = cardops.show(df, ks, card.uid)
    assert s["balance"] == 48500 and s["counter"] == 2
    assert s["trips"][0]["kind"] == "debit" and s["trips"][0]["line"] == 7


def test_field_off_loses_uncommitted_debit(issued, ks):
    card, df = issued
    _debit_tap(df, ks, card, 1500, commit=False)
    card.field_off()  # the rider pulled the card away before CommitTransaction
    assert DESFireCard.load(card.path).value(AID, citizen.FILE_PURSE) == 50000
    s = cardops.show(DESFireAdmin(card.transceive), ks, card.uid)
    assert s["balance"] == 50000 and s["counter"] == 1 and len(s["trips"]) == 1


def test_abort_transaction_discards(issued, ks):
    card, df = issued
    _debit_tap(df, ks, card, 1500, commit=False)
    df.abort_transaction()
    df.commit_transaction()  # nothing left to commit
    assert cardops.read_balance(df, ks, card.uid) == 50000


def test_debit_below_zero_is_boundary_error(issued, ks):
    card, df = issued
    _auth(df, ks, card, "debit")
    with pytest.raises(CardError) as e:
        df.debit(citizen.FILE_PURSE, 50001, MODE_ENC)
    assert e.value.status == 0xBE
    assert "boundary error" in str(e.value)
    assert not df.authenticated  # an error ends the session on both sides
    assert cardops.read_balance(df, ks, card.uid) == 50000


def test_read_key_cannot_debit(issued, ks):
    card, df = issued
    _auth(df, ks, card, "read")
    with pytest.raises(CardError) as e:
        df.debit(citizen.FILE_PURSE, 100, MODE_ENC)
    assert e.value.status == 0x9D
    with pytest.raises(CardError) as e:
        _auth(df, ks, card, "read")
        df.get_value(citizen.FILE_PURSE, MODE_ENC)
    assert e.value.status == 0x9D


def test_debit_key_cannot_credit_but_can_refund(issued, ks):
    card, df = issued
    _auth(df, ks, card, "debit")
    with pytest.raises(CardError) as e:
        df.credit(citizen.FILE_PURSE, 100, MODE_ENC)
    assert e.value.status == 0x9D
    _debit_tap(df, ks, card, 2000)
    _auth(df, ks, card, "debit")  # refund (LimitedCredit) up to the last debit
    with pytest.raises(CardError) as e:
        df.limited_credit(citizen.FILE_PURSE, 2001, MODE_ENC)
    assert e.value.status == 0xBE
    _auth(df, ks, card, "debit")
    df.limited_credit(citizen.FILE_PURSE, 2000, MODE_ENC)
    df.commit_transaction()
    assert cardops.read_balance(df, ks, card.uid) == 50000


def test_credit_key_cannot_read_trips_read_key_cannot_write(issued, ks):
    card, df = issued
    _auth(df, ks, card, "credit")
    with pytest.raises(CardError) as e:
        df.read_records(citizen.FILE_TRIPS, 0, 1, 32, MODE_MAC)
    assert e.value.status == 0x9D
    _auth(df, ks, card, "read")
    with pytest.raises(CardError) as e:
        df.write_record(citizen.FILE_TRIPS, 0, bytes(32), MODE_MAC)
    assert e.value.status == 0x9D


def test_unauthenticated_access(issued, ks):
    _card, df = issued
    df.select_application(AID)
    for file_no in (citizen.FILE_INFO, citizen_host.FILE_INFO_COPY, citizen.FILE_PURSE):
        with pytest.raises(CardError) as e:  # card info is no longer free to read
            if file_no == citizen.FILE_PURSE:
                df.get_value(file_no)
            else:
                df.read_data(file_no, 0, 32)
        assert e.value.status == 0xAE
    _auth(df, ks, _card, "read")  # the inspection copy, with the read key
    info = citizen.unpack_card_info(df.read_data(citizen_host.FILE_INFO_COPY, 0, 32, MODE_MAC))
    assert info[citizen_host.CI_CARD_NO] == 1001


def test_wrong_key_is_authentication_error(issued, ks):
    card, df = issued
    df.select_application(AID)
    with pytest.raises(CardError) as e:
        df.authenticate_aes(1, card_key(_ks(0x40), "debit", card.uid))
    assert e.value.status == 0xAE
    with pytest.raises(cardops.WrongKeys) as e:
        cardops.show(df, _ks(0x40), card.uid)
    assert str(e.value).startswith("wrong keys for this card (authentication")


def test_not_a_citizen_card(card, ks, wrapped):
    df = DESFireAdmin(card.transceive, wrapped=wrapped)
    with pytest.raises(TapkitError) as e:
        cardops.show(df, ks, card.uid)
    assert str(e.value) == "card is not a tapkit citizen card (application 544B01 not found)"


def test_issue_twice_refused(issued, ks):
    card, df = issued
    with pytest.raises(TapkitError, match="already"):
        cardops.issue(df, ks, card.uid, "adult", 1, T0, now=T0)


def test_blocked_card_cannot_be_topped_up(issued, ks):
    card, df = issued
    cardops.block(df, ks, card.uid)
    assert cardops.show(df, ks, card.uid)["status"] == "blocked"
    with pytest.raises(cardops.CardBlocked):
        cardops.topup(df, ks, card.uid, 100)


def test_cyclic_trip_log_keeps_newest_nine(issued, ks):
    card, df = issued
    for _ in range(11):
        _debit_tap(df, ks, card, 100)
    s = cardops.show(df, ks, card.uid)
    assert [t["counter"] for t in s["trips"]] == list(range(12, 3, -1))
    assert s["balance"] == 50000 - 1100 and s["counter"] == 12


def test_persistence_roundtrip(issued, ks, tmp_path):
    card, df = issued
    cardops.topup(df, ks, card.uid, 5000, now=T0)
    with open(card.path) as f:
        doc = json.load(f)
    assert doc["uid"] == card.uid.hex() and "544B01" in doc["apps"]
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []  # atomic writes
    again = DESFireCard.load(card.path)
    assert again.uid == card.uid
    assert (
        cardops.show(DESFireAdmin(again.transceive, wrapped=False), ks, card.uid)["balance"]
        == 55000
    )
    other = str(tmp_path / "copy.json")
    again.save(other)
    assert DESFireCard.load(other).value(AID, citizen.FILE_PURSE) == 55000


def test_auth_matches_independent_aes(issued, ks):
    """Cross-check the card's authentication with the `cryptography` CBC (not card_schema.crypto)."""
    card, _ = issued
    key = card_key(ks, "debit", card.uid)
    rnd_b = bytes(range(16, 32))
    card.random = lambda n: rnd_b
    card.select()
    assert card.transceive(bytes.fromhex("5A014B54")) == b"\x00"
    r = card.transceive(b"\xaa\x01")
    assert r[0] == 0xAF
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    assert dec.update(r[1:]) + dec.finalize() == rnd_b
    rnd_a = bytes(range(100, 116))
    enc = Cipher(algorithms.AES(key), modes.CBC(r[1:17])).encryptor()
    token = enc.update(rnd_a + rotl(rnd_b)) + enc.finalize()
    r2 = card.transceive(b"\xaf" + token)
    assert r2[0] == 0
    dec = Cipher(algorithms.AES(key), modes.CBC(token[16:])).decryptor()
    assert dec.update(r2[1:]) + dec.finalize() == rotl(rnd_a)
    assert card.session_key == rnd_a[:4] + rnd_b[:4] + rnd_a[12:] + rnd_b[12:]


def test_identity_and_counters(card):
    assert card.uid[0] == 0x04 and len(card.uid) == 7
    assert card.sak == 0x20 and card.atr == bytes.fromhex("3B8180018080")
    df = DESFireAdmin(card.transceive, wrapped=False)
    assert df.get_version()["uid"] == card.uid
    assert df.get_key_settings() == (0x0F, 0x01)
    assert df.get_application_ids() == []
    assert card.frames == df.apdus == 5 and card.bytes_in > 0 and card.bytes_out > 0  # 3 + 1 + 1


def test_illegal_command_and_wrapped_errors(card):
    assert card.transceive(b"\x99") == b"\x1c"
    assert card.transceive(bytes.fromhex("905A0000030000AA00")) == b"\x91\xa0"  # no such app
    assert card.transceive(bytes.fromhex("90AA00000100")) == b"\x91\xae"  # PICC key is DES


def test_long_enciphered_data_and_backup_file(card, wrapped):
    """Chaining in both directions under secure messaging; backup files wait for the commit."""
    df = DESFireAdmin(card.transceive, wrapped=wrapped)
    key = bytes(range(16))
    df.select_application(0)
    df.create_application(0x123456, 0x0F, 2)
    df.select_application(0x123456)
    df.authenticate_aes(0, bytes(16))
    df.change_key(1, key, bytes(16))
    ar = citizen_host.access_rights(1, 1, 1, 0)
    df.create_std_data_file(5, citizen_host.COMM_ENC, ar, 128)
    df.create_backup_data_file(6, citizen_host.COMM_MAC, ar, 100)
    df.authenticate_aes(1, key)
    data = bytes(range(100, 200))
    df.write_data(5, 10, data, MODE_ENC)
    assert df.read_data(5, 10, 100, MODE_ENC) == data
    assert df.read_data(5, 0, 0, MODE_ENC) == bytes(10) + data + bytes(18)  # length 0: to the end
    df.write_data(6, 0, data, MODE_MAC)
    assert df.read_data(6, 0, 0, MODE_MAC) == bytes(100)  # not committed yet
    df.commit_transaction()
    assert df.read_data(6, 0, 0, MODE_MAC) == data
    df.write_data(6, 0, bytes(100), MODE_MAC)
    card.field_off()
    df = DESFireAdmin(card.transceive, wrapped=wrapped)
    df.select_application(0x123456)
    df.authenticate_aes(1, key)
    assert df.read_data(6, 0, 0, MODE_MAC) == data
    assert df.apdus == 5 and card.frames > 20  # select, auth x2, read (100 bytes + MAC: 2 frames)
    assert sorted(df.get_file_ids()) == [5, 6]
    df.select_application(0)
    df.authenticate_iso(0, bytes(16))  # DeleteApplication and FormatPICC need the PICC master key
    df.delete_application(0x123456)
    df.format_picc()
    assert df.get_application_ids() == []
