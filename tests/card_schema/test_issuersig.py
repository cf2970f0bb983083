"""The issuer signature on a card (card_schema/issuersig.py, issuersig_host.py, the keystore's
signing key): what the card office signs, the terminal's check accepts, and only that. The same
check on the MicroPython VM: tests/shared/t_issuersig.py."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from card_schema import issuersig, issuersig_host
from host_tools import keystore

UID = bytes.fromhex("04112233445566")


@pytest.fixture(scope="module")
def ks(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ks") / "issuer.keys")
    keystore.init(path)
    return keystore.load(path)


def _signed(ks, uid, ceiling):
    return issuersig_host.pack(
        uid, ceiling, keystore.issuer_key_id(ks), lambda d: keystore.issuer_sign(ks, d)
    )


def test_the_office_signs_what_the_terminal_accepts_and_cryptography_verifies(ks):
    pub = keystore.issuer_public(ks)
    assert len(pub) == 257 and pub[0] == 1
    for ceiling in (0, 1, 70000, 2_000_000_000):
        raw = _signed(ks, UID, ceiling)
        assert len(raw) == issuersig_host.SIZE
        assert issuersig.check(pub, UID, raw) == ceiling
        assert issuersig_host.unpack(raw) == (1, 1, ceiling)
    key = load_pem_private_key(ks["sign"]["pem"], None).public_key()
    raw = _signed(ks, UID, 70000)
    key.verify(  # standard RSASSA-PKCS1-v1_5 / SHA-256: any verifier checks it
        raw[issuersig_host.HEAD :],
        issuersig.digest(UID, raw[: issuersig_host.HEAD]),
        padding.PKCS1v15(),
        utils.Prehashed(hashes.SHA256()),
    )


def test_another_uid_another_ceiling_or_another_key_is_refused(ks):
    pub = keystore.issuer_public(ks)
    raw = _signed(ks, UID, 70000)
    other_uid = bytes.fromhex("04112233445567")
    raised = bytearray(raw)
    raised[4:8] = (2_000_000_000).to_bytes(4, "little")
    thief = dict(ks, sign=keystore.new_sign_key())  # a signing key of the thief's own
    assert issuersig.check(pub, other_uid, raw) == -1
    assert issuersig.check(pub, UID, bytes(raised)) == -1
    assert issuersig.check(pub, UID, _signed(thief, UID, 70000)) == -1
    assert issuersig.check(pub, UID, bytes(issuersig_host.SIZE)) == -1
    # PKCS#1 v1.5 with another digest (SHA-1) is not accepted either: the whole EM is compared
    key = load_pem_private_key(ks["sign"]["pem"], None)
    sha1 = key.sign(b"x", padding.PKCS1v15(), hashes.SHA1())
    assert issuersig.check(pub, UID, raw[: issuersig_host.HEAD] + sha1) == -1


def test_the_private_key_stays_in_the_keystore(ks, tmp_path):
    from host_tools.fleet import provision

    keys = provision.terminal_keys(ks, 1001)
    assert bytes.fromhex(keys["issuer"]) == keystore.issuer_public(ks)
    text = str(provision.terminal_files(ks, 1001))
    assert "PRIVATE" not in text and ks["sign"]["pem"].decode()[40:80] not in text
    assert '"require_issuer_sig": true' in provision.terminal_files(ks, 1001)["config.json"]
