"""Platform adapter: `const`, the AES-128 block primitive and a streaming AES-128-CBC engine.

Everything above this module is pure Python in the common subset of MicroPython and CPython. Only the
single-block AES engine differs: `cryptolib` (mbedTLS / axTLS, hardware AES on ESP32) on MicroPython,
`cryptography` on CPython. CBC and CMAC are built on the ECB block so both interpreters run the same code.

    from card_schema.compat import ECB, aes_ecb_encrypt, aes_cbc
    aes_ecb_encrypt(bytes(16), bytes(16))  # one block, a one-off key
    c = ECB(key); c.encrypt_into(block, out)   # a key used for many blocks: no allocation
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

    class ECB:
        """One AES-128 key, reused for many blocks: `encrypt_into(src, dst)` and `decrypt_into`
        write 16 bytes into dst (which may be src) and allocate nothing. cryptolib's aes objects
        (~350 bytes of heap each) are made once per key, one per direction (an object that has
        encrypted may not decrypt)."""

        def __init__(self, key):
            self.key = bytes(key)
            self._e = self._d = None

        def encrypt_into(self, src, dst):
            if self._e is None:
                self._e = cryptolib.aes(self.key, _MODE_ECB)
            self._e.encrypt(src, dst)

        def decrypt_into(self, src, dst):
            if self._d is None:
                self._d = cryptolib.aes(self.key, _MODE_ECB)
            self._d.decrypt(src, dst)

    def aes_cbc(key, iv):
        return cryptolib.aes(bytes(key), 2, bytes(iv))  # 2: MODE_CBC

    def aes_ecb_encrypt(key, block):
        """One block (bytes) with a one-off key."""
        out = bytearray(16)
        ECB(key).encrypt_into(block, out)
        return bytes(out)

    def aes_ecb_decrypt(key, block):
        out = bytearray(16)
        ECB(key).decrypt_into(block, out)
        return bytes(out)

except ImportError:  # CPython: the same names over `cryptography`, kept in a host-only
    # module so that the names of its code cost no qstrs on a terminal
    from card_schema.compat_host import ECB, aes_cbc, aes_ecb_decrypt, aes_ecb_encrypt  # type: ignore[assignment]  # noqa: F401


def urandom(n):
    """n random bytes from the platform's RNG (ESP32: hardware RNG)."""
    try:
        import os

        return os.urandom(n)
    except (ImportError, AttributeError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))
