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
