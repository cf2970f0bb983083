"""The factory PICC master key: the all-zero 2K3DES key, ISO (0x1A) and legacy (0x0A) authentication,
EV1 messaging with 3DES CMACs after ISO authentication, PICC key settings, changing it to AES, and
personalisation of a blank card through it."""

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from card_schema.desfire import CardError
from card_schema.desfire_admin import DESFireAdmin
from emulator.card import DESFireCard
from host_tools import TapkitError, keystore
from host_tools.cardoffice import cardops

ZERO = bytes(16)
RND_A = bytes.fromhex("0102030405060708")
RND_B = bytes.fromhex("A1A2A3A4A5A6A7A8")


def _tdes_cbc(key, iv, data, decrypt=False):
    c = Cipher(TripleDES(key + key[:8]), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


@pytest.fixture(params=[True, False], ids=["wrapped", "native"])
def wrapped(request):
    return request.param


def _client(card, wrapped):
    card.random = lambda n: (RND_B * 2)[:n]
    return DESFireAdmin(card.transceive, wrapped=wrapped, random=lambda n: (RND_A * 2)[:n])


def test_iso_authentication_frames_are_the_standard_ones():
    """0x1A: E(K, IV=0, RndB), then E(K, IV=ekRndB, RndA || RndB<<8), then E(K, IV, RndA<<8)."""
    card = DESFireCard.blank()
    card.random = lambda n: (RND_B * 2)[:n]
    card.select()
    # 90 1A 00 00 01 00 00: AuthenticateISO key 0 -> E(K, 0, RndB) 91 AF
    r = card.transceive(bytes.fromhex("901A0000010000"))
    ek_b = _tdes_cbc(ZERO, bytes(8), RND_B)
    assert r == ek_b + b"\x91\xaf"
    msg = _tdes_cbc(ZERO, ek_b, RND_A + RND_B[1:] + RND_B[:1])
    # 90 AF 00 00 10 <E(RndA || RndB')> 00 -> E(K, last block, RndA') 91 00
    r = card.transceive(bytes.fromhex("90AF000010") + msg + b"\x00")
    assert r == _tdes_cbc(ZERO, msg[8:], RND_A[1:] + RND_A[:1]) + b"\x91\x00"
    # single DES key (K1 == K2): session key RndA[0:4] RndB[0:4] twice
    assert card.session_key == RND_A[:4] + RND_B[:4] + RND_A[:4] + RND_B[:4]


@pytest.mark.parametrize("how", ["iso", "legacy"])
def test_factory_key_authenticates_and_opens_picc_management(how, wrapped):
    card = DESFireCard.blank()
    card.picc_key_settings = 0x09  # create / delete needs the PICC master key
    df = _client(card, wrapped)
    df.select_application(0)
    with pytest.raises(CardError) as e:
        df.create_application(0x010203, 0x0B, 2)
    assert e.value.status == 0xAE  # authentication error
    getattr(df, "authenticate_" + how)(0, ZERO)
    assert df.get_key_settings() == (0x09, 0x01)  # ISO: its 3DES CMAC was checked
    df.create_application(0x010203, 0x0B, 2)
    assert df.get_application_ids() == [0x010203]
    assert df.authenticated


@pytest.mark.parametrize("how", ["iso", "legacy"])
def test_wrong_des_key_is_refused(how, wrapped):
    df = _client(DESFireCard.blank(), wrapped)
    df.select_application(0)
    with pytest.raises(CardError) as e:
        getattr(df, "authenticate_" + how)(0, bytes(range(16)))
    assert e.value.status == 0xAE and not df.authenticated
    with pytest.raises(CardError) as e:
        df.authenticate_aes(0, ZERO)  # the factory key is DES: AES authentication is refused
    assert e.value.status == 0xAE


def test_change_picc_key_to_aes_persists(tmp_path, wrapped):
    path = str(tmp_path / "c.card")
    card = DESFireCard.blank(path=path)
    card.save()
    df = _client(card, wrapped)
    df.select_application(0)
    df.authenticate_iso(0, ZERO)
    new = bytes(range(16))
    df.change_picc_key(new, aes=True, version=2)
    assert not df.authenticated
    card = DESFireCard.load(path)
    df = _client(card, wrapped)
    df.select_application(0)
    with pytest.raises(CardError):
        df.authenticate_iso(0, ZERO)
    df.select_application(0)
    df.authenticate_aes(0, new)
    assert df.get_key_settings() == (0x0F, 0x81)
    assert df.get_key_version(0) == 2


def test_issue_authenticates_with_the_factory_picc_key(wrapped):
    ks = {
        "issuer_id": 1,
        "keys": {
            r: bytes([i + 1]) * 16
            for i, r in enumerate(("master", "debit", "credit", "read", "picc"))
        },
        "path": None,
        "sign": keystore.new_sign_key(),
    }
    card = DESFireCard.blank()
    card.picc_key_settings = 0x09  # only the PICC master key may create applications
    frames = []
    df = DESFireAdmin(card.transceive, wrapped=wrapped, trace=lambda d, f, n: frames.append(n))
    cardops.issue(df, ks, card.uid, "adult", 1, 2**31 - 1, balance=100, now=1)
    assert frames.index("AuthenticateISO") < frames.index("CreateApplication")
    assert cardops.show(df, ks, card.uid)["balance"] == 100
    # the PICC key is not the factory one any more and create is not free: one clear line
    card2 = DESFireCard.blank()
    card2.picc_key_settings = 0x09
    card2.picc_key = bytes(range(16))
    with pytest.raises(TapkitError) as e:
        cardops.issue(
            DESFireAdmin(card2.transceive, wrapped=wrapped), ks, card2.uid, "adult", 2, 2**31 - 1
        )
    assert (
        str(e.value)
        == "card refused CreateApplication: authentication error (0xAE) in CreateApplication"
    )


@pytest.mark.parametrize(
    "msg,mac",
    [
        ("", "b7a688e122ffaf95"),
        ("6bc1bee22e409f96", "8e8f293136283797"),
        ("6bc1bee22e409f96e93d7e117393172aae2d8a57", "743ddbe0ce2dc2ed"),
        ("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51", "33e6b1092400eae5"),
    ],
)
def test_tdes_cmac_nist_sp800_38b(msg, mac):
    """NIST SP 800-38B appendix D.2 (three-key TDEA): the CMAC of the 3DES secure messaging."""
    from card_schema.crypto_host import ZERO8, tdes_cmac_iv

    key = bytes.fromhex("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5")
    assert tdes_cmac_iv(key, ZERO8, bytes.fromhex(msg)).hex() == mac
