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

    def aes_ecb_encrypt(key, block):
        return cryptolib.aes(key, _MODE_ECB).encrypt(block)

    def aes_ecb_decrypt(key, block):
        return cryptolib.aes(key, _MODE_ECB).decrypt(block)

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
