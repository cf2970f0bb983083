"""Platform adapter: `const` and the AES-128 block primitive.

Everything above this module is pure Python in the common subset of MicroPython and CPython. Only the
single-block AES engine differs: `cryptolib` (mbedTLS / axTLS, hardware AES on ESP32) on MicroPython,
`cryptography` on CPython. CBC and CMAC are built on the ECB block so both interpreters run the same code.

    from card_schema.compat import aes_ecb_encrypt
    aes_ecb_encrypt(bytes(16), bytes(16))  # one block
"""

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def _const(x):
        return x

    const = _const  # by assignment: mypy wants one signature for micropython.const


try:
    import cryptolib

    _MODE_ECB = const(1)
    # ECB is stateless, so one cipher object serves every block of its key: a tap runs a few keys
    # (session, journal, diversification) through dozens of blocks, and a fresh object per block
    # (its key schedule) was most of a tap's garbage. Two encrypt keys, one decrypt key (an object
    # does one direction only).
    _enc = [b"", None, b"", None]  # type: list  # key, object, key, object (the newer first)
    _dec = [b"", None]  # type: list

    def aes_ecb_encrypt(key, block):
        c = _enc
        if c[0] != key:
            if c[2] == key:
                c[0], c[1], c[2], c[3] = c[2], c[3], c[0], c[1]
            else:
                k = bytes(key)
                c[2], c[3] = c[0], c[1]
                c[0], c[1] = k, cryptolib.aes(k, _MODE_ECB)
        return c[1].encrypt(block)

    def aes_ecb_decrypt(key, block):
        c = _dec
        if c[0] != key:
            c[0] = bytes(key)
            c[1] = cryptolib.aes(c[0], _MODE_ECB)
        return c[1].decrypt(block)

except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def aes_ecb_encrypt(key, block):
        enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
        return enc.update(bytes(block)) + enc.finalize()

    def aes_ecb_decrypt(key, block):
        dec = Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor()
        return dec.update(bytes(block)) + dec.finalize()


def urandom(n):
    """n random bytes from the platform's RNG (ESP32: hardware RNG)."""
    try:
        import os

        return os.urandom(n)
    except (ImportError, AttributeError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))
