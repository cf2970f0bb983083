"""Platform adapter: `const`, the AES-128 block primitive and a streaming AES-128-CBC engine.

Everything above this module is pure Python in the common subset of MicroPython and CPython. Only the
single-block AES engine differs: `cryptolib` (mbedTLS / axTLS, hardware AES on ESP32) on MicroPython,
`cryptography` on CPython. CBC and CMAC are built on the ECB block so both interpreters run the same code.

    from card_schema.compat import aes_ecb_encrypt, aes_cbc
    aes_ecb_encrypt(bytes(16), bytes(16))  # one block
    c = aes_cbc(key, iv)                   # CBC, one direction per object, state kept between calls
    c.encrypt(buf, buf)                    # in place, any multiple of 16 bytes (C speed on both)

`aes_cbc` is for bulk data (Wi-Fi batches, streamed verification of big signed blobs): it is
cryptolib's own CBC object on MicroPython and an object with the same two methods on CPython. The
CPython engine lives in card_schema/compat_host.py (a name in this module costs a qstr on a terminal,
even in a branch the board never runs).
"""

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  # a lambda: a def's name would cost a qstr on the board


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

    def aes_cbc(key, iv):
        return cryptolib.aes(bytes(key), 2, bytes(iv))  # 2: MODE_CBC

except ImportError:  # CPython: the same three functions over `cryptography`, kept in a host-only
    # module so that the names of its code cost no qstrs on a terminal
    from card_schema.compat_host import aes_cbc, aes_ecb_decrypt, aes_ecb_encrypt  # noqa: F401


def urandom(n):
    """n random bytes from the platform's RNG (ESP32: hardware RNG)."""
    try:
        import os

        return os.urandom(n)
    except (ImportError, AttributeError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))
