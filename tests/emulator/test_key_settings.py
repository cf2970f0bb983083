"""Key settings and the rights they give, as a DESFire EV1 enforces them (emulator/card.py): FormatPICC
always needs the PICC master key; DeleteApplication the PICC master key, or the application's own
master key only when PICC key settings bit 2 is set; ChangeKeySettings (0x54) the master key of the
selected level and bit 3; ChangeFileSettings (0x5F) the file's change-access key (plain when that
right is free, refused when it is never). Exact frames of the refusals; both framings for the rest."""

import pytest

from card_schema.desfire import MODE_ENC, MODE_MAC, MODE_PLAIN, CardError
from card_schema.desfire_admin import DESFireAdmin
from emulator.card import DESFireCard

AID = 0x5A5A02
K = bytes(range(16))
PICC = bytes(range(16, 32))


def ar(r, w, rw, car):
    return bytes(((rw << 4) | car, (r << 4) | w))  # as on the wire, LSB first


def _card(wrapped=False, picc_settings=None, app_settings=0x0B):
    """A card with one AES app (key 0 master = K, key 1 = K reversed) and a std file 1 (MAC, read
    key 1, change access key 0), a file 2 whose change access is free and a file 3 never; with
    `picc_settings`, the PICC key is AES (PICC) and has those settings."""
    card = DESFireCard.blank(uid=bytes.fromhex("04A1A2A3A4A5A6"))
    lines = []

    def trace(direction, frame, name):
        lines.append("%s %s" % (direction, frame.hex(" ").upper()))

    df = DESFireAdmin(card.transceive, wrapped=wrapped, trace=trace)
    df.select_application(0)
    df.authenticate_iso(0, bytes(16))
    df.create_application(AID, app_settings, 2)
    df.select_application(AID)
    df.authenticate_aes(0, bytes(16))
    df.create_std_data_file(1, MODE_MAC, ar(1, 0, 0, 0), 32)
    df.create_std_data_file(2, MODE_PLAIN, ar(1, 0, 0, 0xE), 8)
    df.create_std_data_file(3, MODE_PLAIN, ar(1, 0, 0, 0xF), 8)
    df.change_key(1, K[::-1], bytes(16))
    df.change_key(0, K)
    if picc_settings is not None:
        df.select_application(0)
        df.authenticate_iso(0, bytes(16))
        df.change_picc_key(PICC, aes=True)
        df.authenticate_aes(0, PICC)
        df.change_key_settings(picc_settings)
    df.select_application(0)
    del lines[:]
    return card, df, lines


def _status(fn, *args):
    with pytest.raises(CardError) as e:
        fn(*args)
    return e.value.status


def test_format_picc_needs_the_picc_master_key_even_on_a_factory_card():
    card, df, lines = _card()
    assert _status(df.format_picc) == 0xAE
    assert lines == ["> FC", "< AE"]  # FormatPICC -> authentication error
    assert AID in card.apps
    df.select_application(0)
    df.authenticate_iso(0, bytes(16))  # the factory key: anyone can, until issue changes it
    df.format_picc()
    assert card.apps == {}


def test_an_issued_card_cannot_be_formatted_or_emptied_without_the_issuer_key():
    card, df, lines = _card(picc_settings=0x0B)
    assert _status(df.format_picc) == 0xAE
    assert _status(df.authenticate_iso, 0, bytes(16)) == 0xAE  # the factory key is gone (AES now)
    df.select_application(0)
    assert _status(df.delete_application, AID) == 0xAE
    assert lines[-2:] == ["> DA 02 5A 5A", "< AE"]  # DeleteApplication -> authentication error
    # the application's own master key may not delete it: PICC key settings bit 2 is clear
    df.select_application(AID)
    df.authenticate_aes(0, K)
    assert _status(df.delete_application, AID) == 0x9D
    df.select_application(0)
    assert _status(df.create_application, 0x010203, 0x0B, 1) == 0xAE  # no free create either
    assert df.get_application_ids() == [AID]  # listing stays free (bit 1)
    df.authenticate_aes(0, PICC)
    df.delete_application(AID)
    df.format_picc()
    assert card.apps == {}


def test_with_free_create_delete_the_application_master_key_deletes_its_application():
    card, df, _ = _card()  # factory PICC settings 0x0F
    df.select_application(AID)
    df.authenticate_aes(0, K)
    df.delete_application(AID)
    assert AID not in card.apps


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "native"])
def test_change_key_settings_needs_the_level_master_key_and_bit_3(wrapped):
    card, df, lines = _card(wrapped)
    df.select_application(AID)
    assert _status(df.change_key_settings, 0x09) == 0xAE  # not authenticated: refused before data
    df.authenticate_aes(1, K[::-1])
    assert _status(df.change_key_settings, 0x09) == 0xAE  # key 1 is not the master key
    df.authenticate_aes(0, K)
    df.change_key_settings(0x03)  # configuration frozen from now on (no bit 3)
    assert card.apps[AID]["key_settings"] == 0x03
    assert df.get_key_settings()[0] == 0x03
    assert _status(df.change_key_settings, 0x0B) == 0x9D
    df.select_application(0)
    df.authenticate_iso(0, bytes(16))
    df.change_picc_key(PICC, aes=True)
    df.authenticate_aes(0, PICC)
    df.change_key_settings(0x0B)
    assert card.picc_key_settings == 0x0B


def test_a_damaged_change_key_settings_is_an_integrity_error():
    card, df, _ = _card()
    df.select_application(AID)
    df.authenticate_aes(0, K)
    real = df.transceive

    def flip(frame):  # a native frame is a view of the session's reused buffer
        if frame[0] == 0x54:
            frame = bytes(frame[:-1]) + bytes((frame[-1] ^ 1,))
        return real(frame)

    df.transceive = flip
    assert _status(df.change_key_settings, 0x09) == 0x1E
    assert card.apps[AID]["key_settings"] == 0x0B


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "native"])
def test_change_file_settings_needs_the_change_access_key(wrapped):
    card, df, lines = _card(wrapped)
    df.select_application(AID)
    new = ar(0xE, 0, 0, 0)  # read free
    assert _status(df.change_file_settings, 1, MODE_MAC, new) == 0xAE
    df.authenticate_aes(1, K[::-1])
    assert _status(df.change_file_settings, 1, MODE_MAC, new) == 0x9D
    df.authenticate_aes(0, K)
    assert _status(df.change_file_settings, 3, MODE_PLAIN, new) == 0x9D  # change access: never
    df.authenticate_aes(0, K)
    assert _status(df.change_file_settings, 1, 4, new) == 0x9E  # no comm mode 4
    df.authenticate_aes(0, K)
    df.change_file_settings(1, MODE_ENC, new)
    f = card.apps[AID]["files"][1]
    assert (f["comm"], f["access"]) == (MODE_ENC, 0xE000)
    df.select_application(AID)
    df.change_file_settings(2, MODE_MAC, ar(1, 1, 0, 0xE), free=True)  # a free right: plain
    assert card.apps[AID]["files"][2]["access"] == 0x1100 | 0x0E
