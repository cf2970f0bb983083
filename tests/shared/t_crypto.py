# card_schema.crypto on both interpreters: published test vectors (RFC 4493, NXP AN10922) and the
# DESFire-specific pieces (EV1 session key, CRC32, CBC). Common subset only: no pytest here.
import binascii

from card_schema import crypto, crypto_host

u = binascii.unhexlify


def h(b):
    return binascii.hexlify(b).decode()


def check(got, want):
    if got != want:
        raise AssertionError(f"got {got} want {want}")
    return got


RFC_KEY = u("2b7e151628aed2a6abf7158809cf4f3c")
RFC_MSG = u(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)


def test_cmac_rfc4493_subkeys():
    k1, k2 = crypto.subkeys(RFC_KEY)
    check(h(k1), "fbeed618357133667c85e08f7236a8de")
    return check(h(k2), "f7ddac306ae266ccf90bc11ee46d513b")


def test_cmac_rfc4493_empty():
    return check(h(crypto.cmac(RFC_KEY, b"")), "bb1d6929e95937287fa37d129b756746")


def test_cmac_rfc4493_16():
    return check(h(crypto.cmac(RFC_KEY, RFC_MSG[:16])), "070a16b46b4d4144f79bdd9dd04a287c")


def test_cmac_rfc4493_40():
    return check(h(crypto.cmac(RFC_KEY, RFC_MSG[:40])), "dfa66747de9ae63030ca32611497c827")


def test_cmac_rfc4493_64():
    return check(h(crypto.cmac(RFC_KEY, RFC_MSG)), "51f0bebf7e3b9d92fc49741779363cfe")


def test_cmac_iv_zero_is_cmac():
    return check(
        h(crypto.cmac_iv(RFC_KEY, bytes(16), RFC_MSG[:40])), h(crypto.cmac(RFC_KEY, RFC_MSG[:40]))
    )


def test_cmac8_odd_bytes():
    # 51f0bebf7e3b9d92fc49741779363cfe -> bytes 1,3,..,15
    return check(h(crypto_host.cmac8(RFC_KEY, RFC_MSG)), "f0bf3b92491736fe")


def test_diversify_an10922_aes128():
    # NXP AN10922 section 2.2.1: M = UID 04782E21801D80, AID 3042F5, system id "NXP Abu"
    key = u("00112233445566778899AABBCCDDEEFF")
    m = u("04782E21801D803042F54E585020416275")
    return check(h(crypto.diversify_aes128(key, m)), "a8dd63a3b89d54b37ca802473fda9175")


def test_diversify_31_bytes_uses_k1():
    # a 31-byte input fills the 32-byte block exactly: no padding, K1; must differ from 30 + padding
    key = u("00112233445566778899AABBCCDDEEFF")
    a = crypto.diversify_aes128(key, bytes(range(31)))
    b = crypto.diversify_aes128(key, bytes(range(30)))
    if a == b or len(a) != 16:
        raise AssertionError("K1/K2 cases")
    return h(a)


def test_ev1_session_key():
    a = u("000102030405060708090a0b0c0d0e0f")
    b = u("101112131415161718191a1b1c1d1e1f")
    return check(h(crypto.ev1_session_key(a, b)), "00010203101112130c0d0e0f1c1d1e1f")


def test_crc32_desfire():
    # JAMCRC: CRC-32 without the final xor. binascii.crc32(b"123456789") = CBF43926
    check(crypto_host.crc32_desfire(b"123456789"), 0x340BC6D9)
    return check(h(crypto.crc32_bytes(b"123456789")), "d9c60b34")


def test_crc32_desfire_key_example():
    # the DESFire CRC of a key of 16 zero bytes, as appended in ChangeKey
    return h(crypto.crc32_bytes(bytes(16)))


def test_rotl():
    check(h(crypto.rotl(u("0102030405"))), "0203040501")
    return check(h(crypto_host.rotr(u("0203040501"))), "0102030405")


def test_cbc_nist_sp800_38a():
    # NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, first two blocks
    key = RFC_KEY
    iv = u("000102030405060708090a0b0c0d0e0f")
    ct = crypto.cbc_encrypt(key, iv, RFC_MSG[:32])
    return check(h(ct), "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")


def test_cbc_roundtrip():
    key = u("000102030405060708090a0b0c0d0e0f")
    iv = u("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    data = bytes(range(48))
    ct = crypto.cbc_encrypt(key, iv, data)
    check(crypto.cbc_decrypt(key, iv, ct), data)
    return h(ct[-16:])


def test_cbc_rejects_partial_block():
    try:
        crypto.cbc_encrypt(bytes(16), bytes(16), b"abc")
    except ValueError:
        return "ValueError"
    raise AssertionError("no error")
