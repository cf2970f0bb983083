# The issuer signature check (card_schema/issuersig.py) on both interpreters: one vector made with
# the `cryptography` package (RSA-2048, RSASSA-PKCS1-v1_5, SHA-256) for UID 04a1b2c3d4e5f6 and a
# ceiling of 70,000 Rial; the terminal's check accepts it and refuses every change.
import binascii

from card_schema import issuersig

KEY = binascii.unhexlify(
    "01b3378ede6073674081720b1128a856a14152ec4ee5ede9abd9a4c8c329c77752a8c1ab2773c9430a69ad9f5a0d"
    "e7f70e673410e518f7f7bb50f0530f709568d15a27c167e678593dec181eb220ff7531be27b1e7f753f7154dad5c"
    "0599c883ac8a9c930b8297ee48fb2692c093f624ec55921d3477b02f7b3ae4f810e246ad189df551857c4bcc78b0"
    "f68ac6d3ae6e22a3943fcd2096deccf1f0f837fa88ad837c10fd416a746257d7e958c104b8c0de4e601bf663fdb5"
    "506339a5d01224523d6d89f7fad6f5c8f2c86a42627ce67b11501438f35b3b86d3050c4b2aefdf52fa8f798c690c"
    "c3a1a13590d275a831179512778d3687e9016bb6ee242e81538c81"
)
RAW = binascii.unhexlify(
    "010100007011010065c90679479b7b16f71814091214161c5782aab316e0800c15ad5e74ed12493856051588ee22"
    "4d89c8c94cdb8b0f60bc2f24e64fbcb1b35ff21edea9adb64d8646dd94b754d3999a9ceb9a75bbbb71ae68199b41"
    "cc94cd9d9ab68026ecc80c2d26dc1275dc87969efe92c126d072f882732b8097737aa90c845b0450710cb2966562"
    "c98343f9358aabe72d5e2378eb9f7b3a6de00cd54725667f6d8b96e774a2267cfd19b9123482a47b9422f795d49f"
    "3dcb1c3d305a34239171d1d93c29f0f8d7c421524486adc0c70be487d7ca2ff7735b0a2d94ac28723e69db3a50d3"
    "f49a47fd96f13e1bda0d2a9bc23a269724ea65d95d651c5270896d8b99c8866adba6"
)
UID = binascii.unhexlify("04a1b2c3d4e5f6")


def _flip(b, i):
    b = bytearray(b)
    b[i] ^= 1
    return bytes(b)


def test_a_genuine_signature_gives_its_ceiling():
    return issuersig.check(KEY, UID, RAW)


def test_every_change_is_refused():
    return [
        issuersig.check(KEY, _flip(UID, 6), RAW),  # the signature copied to another UID
        issuersig.check(KEY, UID, _flip(RAW, 6)),  # the ceiling changed
        issuersig.check(KEY, UID, _flip(RAW, 100)),  # the signature altered
        issuersig.check(KEY, UID, _flip(RAW, 1)),  # another key id
        issuersig.check(_flip(KEY, 40), UID, RAW),  # another issuer's key
        issuersig.check(KEY, UID, RAW[:-1]),  # short
        issuersig.check(KEY, UID, bytes(264)),  # an empty file (a card just secured)
        issuersig.check(KEY, UID, RAW[:8] + KEY[1:]),  # s >= n
    ]
