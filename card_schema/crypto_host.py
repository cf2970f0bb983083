"""Crypto helpers only the host side needs (card office, emulator, tests), kept out of
card_schema.crypto so terminals do not load them.

    from card_schema.crypto_host import xor, crc32_desfire
    xor(new_key, old_key)            # ChangeKey of another key
    crc32_desfire(b"123456789")      # 0x340BC6D9
"""

from card_schema.crypto import cmac, crc32_bytes


def xor(a, b):
    """a XOR b over the length of the shorter one (new bytes)."""
    n = min(len(a), len(b))
    return bytes(a[i] ^ b[i] for i in range(n))


def rotr(b):
    """Rotate right by one byte (inverse of card_schema.crypto.rotl)."""
    return bytes(b[-1:]) + bytes(b[:-1])


def cmac8(key, msg):
    """CMAC truncated to the 8 bytes at odd indexes 1, 3, .., 15 (NXP "MACt").

    Note: DESFire EV1 secure messaging (card_schema.desfire) sends the *first* 8 bytes of the CMAC, as
    real EV1 cards do; this odd-byte truncation is the one EV2 secure messaging uses.
    """
    m = cmac(key, msg)
    return bytes(m[i] for i in range(1, 16, 2))


def crc32_desfire(data):
    """The DESFire CRC32 (JAMCRC: the IEEE CRC-32 without the final xor), as an int.

    Appended to data little endian: `crc32_bytes(data)`.
    """
    return int.from_bytes(crc32_bytes(data), "little")


# ---- 2K3DES (the factory PICC master key; host only: terminals never authenticate with DES) ------
# DESFire keys are 16 bytes (K1 || K2); K1 == K2 is single DES. The parity bits (bit 0 of each byte)
# carry the key version and are ignored by the cipher. CPython's `cryptography` keeps TripleDES under
# hazmat.decrepit (older versions: hazmat.primitives.ciphers.algorithms).

ZERO8 = b"\x00" * 8


def _tdes(key):
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # cryptography < 43
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
    key = bytes(key)
    return TripleDES(key + key[:8] if len(key) == 16 else key)


def tdes_ecb_encrypt(key, block):
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    e = Cipher(_tdes(key), modes.ECB()).encryptor()
    return e.update(bytes(block)) + e.finalize()


def tdes_ecb_decrypt(key, block):
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    d = Cipher(_tdes(key), modes.ECB()).decryptor()
    return d.update(bytes(block)) + d.finalize()


def tdes_cbc_encrypt(key, iv, data):
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    e = Cipher(_tdes(key), modes.CBC(bytes(iv))).encryptor()
    return e.update(bytes(data)) + e.finalize()


def tdes_cbc_decrypt(key, iv, data):
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    d = Cipher(_tdes(key), modes.CBC(bytes(iv))).decryptor()
    return d.update(bytes(data)) + d.finalize()


def tdes_cmac_iv(key, iv, msg):
    """CMAC with the 64-bit block cipher (NIST SP 800-38B, R_64 = 0x1B) from a running IV (EV1
    secure messaging after ISO authentication with a DES/2K3DES key). Returns 8 bytes."""
    n = int.from_bytes(tdes_ecb_encrypt(key, ZERO8), "big")
    ks = []
    for _ in range(2):
        n = ((n << 1) ^ (0x1B if n >> 63 else 0)) & ((1 << 64) - 1)
        ks.append(n.to_bytes(8, "big"))
    msg = bytes(msg)
    if msg and len(msg) % 8 == 0:
        last = xor(msg[-8:], ks[0])
        msg = msg[:-8] + last
    else:
        tail = len(msg) % 8
        padded = msg[len(msg) - tail :] + b"\x80" + bytes(7 - tail)
        msg = msg[: len(msg) - tail] + xor(padded, ks[1])
    return tdes_cbc_encrypt(key, iv, msg)[-8:]


def des_session_key(rnd_a, rnd_b, single):
    """The session key after DES/2K3DES authentication: RndA[0:4] RndB[0:4] then RndA[4:8] RndB[4:8]
    (2K3DES), or the first half twice when the card key is single DES (K1 == K2)."""
    k1 = bytes(rnd_a[0:4]) + bytes(rnd_b[0:4])
    return k1 + k1 if single else k1 + bytes(rnd_a[4:8]) + bytes(rnd_b[4:8])


def is_single_des(key):
    """K1 == K2 (ignoring the parity / version bits): the 2K3DES key is effectively single DES."""
    return bytes(b & 0xFE for b in key[:8]) == bytes(b & 0xFE for b in key[8:16])


def cmac_fast(key, msg):
    """cmac(key, msg) with the CMAC of `cryptography` (C speed; CPython only), byte-identical: what
    a server derives thousands of terminal keys and MACs thousands of answers with."""
    from cryptography.hazmat.primitives import cmac as _cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    c = _cmac.CMAC(algorithms.AES(bytes(key)))
    c.update(bytes(msg))
    return c.finalize()
