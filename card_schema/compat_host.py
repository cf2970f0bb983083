"""card_schema.compat's AES engine on CPython, over `cryptography` (compat imports it when there is
no cryptolib). Its own module because every name in a module a terminal loads costs a qstr there, even
in a branch the board never runs."""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class ECB:
    """compat.ECB on CPython: one key, many blocks, `encrypt_into(src, dst)` / `decrypt_into`."""

    def __init__(self, key):
        self.key = bytes(key)
        c = Cipher(algorithms.AES(self.key), modes.ECB())
        self._e = c.encryptor()
        self._d = c.decryptor()

    def encrypt_into(self, src, dst):
        dst[0:16] = self._e.update(bytes(src[0:16]))

    def decrypt_into(self, src, dst):
        dst[0:16] = self._d.update(bytes(src[0:16]))


def aes_ecb_encrypt(key, block):
    enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
    return enc.update(bytes(block)) + enc.finalize()


def aes_ecb_decrypt(key, block):
    dec = Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor()
    return dec.update(bytes(block)) + dec.finalize()


class _CBC:
    """cryptolib.aes(key, MODE_CBC, iv) on CPython: encrypt/decrypt(data, out=None), the chaining
    state kept between calls (each direction on its own, as an object of cryptolib does one)."""

    def __init__(self, key, iv):
        self._c = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv)))
        self._e = self._d = None

    def encrypt(self, data, out=None):
        if self._e is None:
            self._e = self._c.encryptor()
        return _into(self._e.update(bytes(data)), out)

    def decrypt(self, data, out=None):
        if self._d is None:
            self._d = self._c.decryptor()
        return _into(self._d.update(bytes(data)), out)


def _into(r, out):
    if out is None:
        return r
    out[: len(r)] = r
    return None


def aes_cbc(key, iv):
    if len(key) != 16 or len(iv) != 16:
        raise ValueError("AES-128-CBC: 16-byte key and IV")
    return _CBC(key, iv)
