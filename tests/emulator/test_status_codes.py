"""The card's real status codes for the inspection and value commands, as the client reports them:
GetKeySettings, GetFileIDs, GetFileSettings, LimitedCredit, AbortTransaction; permission denied,
boundary, length, file / application not found, command aborted, integrity error. Both framings."""

import pytest

from card_schema.desfire import MODE_ENC, MODE_MAC, MODE_PLAIN, CardError
from card_schema.desfire_admin import DESFireAdmin
from emulator.card import DESFireCard

AID = 0x5A5A01
KEY1 = bytes(range(16))
FREE, NEVER = 0xE, 0xF


def ar(r, w, rw, car):
    return bytes(((rw << 4) | car, (r << 4) | w))  # as on the wire, LSB first


@pytest.fixture(params=[True, False], ids=["wrapped", "native"])
def wrapped(request):
    return request.param


class Flip:
    """A link that corrupts the last data byte of the next frame with a given command code."""

    def __init__(self, card, wrapped):
        self.card, self.wrapped, self.cmd = card, wrapped, None

    def __call__(self, frame):
        frame = bytearray(frame)
        if self.cmd is not None and frame[1 if self.wrapped else 0] == self.cmd:
            frame[-2 if self.wrapped else -1] ^= 0x01  # wrapped: the byte before Le
            self.cmd = None
        return self.card.transceive(bytes(frame))


@pytest.fixture
def app(wrapped):
    """An app (key settings 0x09: no free listing) with a std file (MAC), a value file with limited
    credit (ENC) and a cyclic record file (MAC); key 1 reads, key 2 writes, key 0 is the master."""
    card = DESFireCard.blank()
    link = Flip(card, wrapped)
    df = DESFireAdmin(link, wrapped=wrapped)
    df.select_application(0)
    df.create_application(AID, 0x09, 3)
    df.select_application(AID)
    df.authenticate_aes(0, bytes(16))
    df.create_std_data_file(1, MODE_MAC, ar(1, 2, 0, 0), 32)
    df.create_value_file(2, MODE_ENC, ar(1, 2, 0, 0), 0, 1000, 500, True)
    df.create_cyclic_record_file(3, MODE_MAC, ar(1, 2, 0, 0), 16, 4)
    df.change_key(1, KEY1, bytes(16))
    df.change_key(2, KEY1[::-1], bytes(16))
    return card, link, df


def _status(fn, *args):
    with pytest.raises(CardError) as e:
        fn(*args)
    return e.value.status


def test_get_key_settings(app):
    card, link, df = app
    df.select_application(AID)
    assert df.get_key_settings() == (0x09, 0x83)  # 3 AES keys
    df.select_application(0)
    assert df.get_key_settings() == (0x0F, 0x01)  # factory PICC: DES key, all free
    # a data byte where none belongs: length error (raw frame: 90 45 00 00 01 00 00)
    assert card.transceive(bytes.fromhex("90450000010000")) == b"\x91\x7e"


def test_get_file_ids_and_settings_rights(app):
    card, link, df = app
    df.select_application(AID)
    assert _status(df.get_file_ids) == 0xAE  # listing not free (0x09): authenticate first
    df.select_application(AID)
    df.authenticate_aes(1, KEY1)
    assert _status(df.get_file_ids) == 0x9D  # key 1 is not the master key: permission denied
    df.select_application(AID)
    df.authenticate_aes(0, bytes(16))
    assert sorted(df.get_file_ids()) == [1, 2, 3]
    s = df.get_file_settings(2)
    assert (s["type"], s["comm"], s["read"], s["write"], s["read_write"], s["change"]) == (
        2,
        MODE_ENC,
        1,
        2,
        0,
        0,
    )
    assert (s["lower"], s["upper"], s["limited_credit"], s["limited_credit_enabled"]) == (
        0,
        1000,
        0,
        1,
    )
    assert _status(df.get_file_settings, 9) == 0xF0  # file not found
    # GetFileSettings without its file number: length error (90 F5 00 00 00)
    card.select()
    card.transceive(bytes.fromhex("905A000003015A5A00"))
    assert card.transceive(bytes.fromhex("90F5000000")) == b"\x91\x7e"


def test_application_not_found(app):
    card, link, df = app
    assert _status(df.select_application, 0x010101) == 0xA0


def test_limited_credit_boundaries(app):
    card, link, df = app
    df.select_application(AID)
    df.authenticate_aes(2, KEY1[::-1])  # the write key
    assert _status(df.limited_credit, 2, 1, MODE_ENC) == 0xBE  # nothing debited yet: limit 0
    df.select_application(AID)
    df.authenticate_aes(1, KEY1)
    df.debit(2, 300, MODE_ENC)
    df.commit_transaction()
    df.authenticate_aes(2, KEY1[::-1])
    assert _status(df.limited_credit, 2, 301, MODE_ENC) == 0xBE  # above the last debit
    df.authenticate_aes(2, KEY1[::-1])
    df.limited_credit(2, 300, MODE_ENC)
    assert _status(df.limited_credit, 2, 1, MODE_ENC) == 0x9D  # once per transaction
    df.authenticate_aes(2, KEY1[::-1])
    df.limited_credit(2, 200, MODE_ENC)
    df.commit_transaction()
    df.authenticate_aes(1, KEY1)
    assert df.get_value(2, MODE_ENC) == 400  # 500 - 300 + 200
    assert _status(df.limited_credit, 2, 1, MODE_ENC) == 0x9D  # the read key may not


def test_abort_transaction(app):
    card, link, df = app
    df.select_application(AID)
    df.authenticate_aes(1, KEY1)
    df.debit(2, 100, MODE_ENC)
    df.abort_transaction()
    df.commit_transaction()
    assert df.get_value(2, MODE_ENC) == 500
    assert _status(df.debit, 2, 501, MODE_ENC) == 0xBE  # below the lower limit


def test_command_aborted_by_a_new_command(app, wrapped):
    card, link, df = app
    card.select()
    pre = bytes.fromhex("90") if wrapped else b""
    if wrapped:
        assert card.transceive(bytes.fromhex("905A000003015A5A00"))[-2:] == b"\x91\x00"
        r = card.transceive(bytes.fromhex("90AA0000010100"))  # AuthenticateAES key 1: challenge
        assert r[-2:] == b"\x91\xaf"
        # instead of the second auth frame, a new command: GetKeySettings
        assert card.transceive(bytes.fromhex("9045000000")) == b"\x91\xca"
    else:
        assert card.transceive(bytes.fromhex("5A015A5A")) == b"\x00"
        assert card.transceive(bytes.fromhex("AA01"))[0] == 0xAF
        assert card.transceive(bytes.fromhex("45")) == b"\xca"
    assert card.session_key is None and pre is not None
    # a read cut short the same way (GetVersion answers in three frames)
    df.select_application(0)
    card.transceive(bytes.fromhex("9060000000") if wrapped else b"\x60")
    assert _status(df.get_key_settings) == 0xCA
    assert df.get_key_settings() == (0x0F, 0x01)  # the next command runs normally


@pytest.mark.parametrize(
    "cmd,call", [(0x3D, "write_data"), (0x3B, "write_record"), (0x1C, "limited_credit")]
)
def test_integrity_error_on_a_corrupted_command(app, cmd, call):
    card, link, df = app
    df.select_application(AID)
    if cmd == 0x1C:
        df.authenticate_aes(2, KEY1[::-1])
        link.cmd = 0x1C
        st = _status(df.limited_credit, 2, 0, MODE_ENC)  # enciphered: the CRC fails
    else:
        df.authenticate_aes(2, KEY1[::-1])
        link.cmd = cmd
        fn = getattr(df, call)
        st = _status(fn, 1 if cmd == 0x3D else 3, 0, b"0123456789abcdef", MODE_MAC)
    assert st == 0x1E  # integrity error
    assert not df.authenticated and card.session_key is None
    df.select_application(AID)
    df.authenticate_aes(1, KEY1)
    assert _status(df.read_records, 3, 0, 1, 16, MODE_MAC) == 0xBE  # nothing was written


def test_plain_mode_is_refused_on_a_maced_file_with_wrong_framing(app):
    card, link, df = app
    df.select_application(AID)
    df.authenticate_aes(2, KEY1[::-1])
    # MAC file written as if plain (no MAC appended): the card waits for the rest of the frame
    r = df._xfer(0x3D, bytes.fromhex("01 000000 040000".replace(" ", "")) + b"abcd")
    assert r[0] == 0xAF
    assert _status(df.read_data, 1, 0, 4, MODE_PLAIN) == 0xCA  # and the next command aborts it
