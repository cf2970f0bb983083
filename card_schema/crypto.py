"""DESFire EV1 cryptography over the AES-128 block of `card_schema.compat`: CBC, CMAC (RFC 4493),
AN10922 key diversification, EV1 session keys and the DESFire CRC32.

Pure Python in the common subset of MicroPython and CPython, so the terminal, the emulator and the card
office compute byte-identical results. Only the single-block AES engine is platform specific.
Terminals load this module, so it holds only what the tap path needs; host-only helpers (xor, rotr,
cmac8, crc32_desfire) are in card_schema.crypto_host.

    from card_schema.crypto import cmac, cbc_encrypt, diversify_aes128
    mac = cmac(key, b"message")                      # 16 bytes
    k = diversify_aes128(master, uid + aid + b"sys")  # the card's own key
"""

from binascii import crc32

from card_schema.compat import ECB, const

ZERO16 = b"\x00" * 16
_RB = const(0x87)  # R_128 of RFC 4493: the constant xored in when the shifted-out bit is 1

# The keys in use (the session key and the one before: the journal key, the card key or the master):
# their ciphers and CMAC subkeys are made once, not per block. A tap used to make a cryptolib
# object (~350 bytes) per AES block and its subkeys with 128-bit ints per CMAC: ~25 KB of garbage.
_CACHE = []  # type: list  # [ECB with .k1, .k2 (bytearray(16) each, or None until the first CMAC)], newest first
_CACHED = const(2)


def forget():
    """Drop the cached ciphers (the terminal does after each tap: a long-lived object made in the
    middle of a tap's garbage would split the free heap)."""
    del _CACHE[:]


def _cipher(key):
    for c in _CACHE:
        if c.key == key:
            return c
    c = ECB(key)
    c.k1 = c.k2 = None  # type: ignore[attr-defined]
    _CACHE.insert(0, c)
    del _CACHE[_CACHED:]
    return c


def _xor_into(buf, data, off):
    # buf[0:16] ^= data[off:off+16], in place (no allocation)
    for i in range(16):
        buf[i] ^= data[off + i]


def _dbl(b):
    # b (bytearray(16)) <<= 1 in GF(2^128), in place: R_128 xored in when the top bit falls out
    top = b[0] >> 7
    for i in range(15):
        b[i] = ((b[i] << 1) | (b[i + 1] >> 7)) & 0xFF
    b[15] = ((b[15] << 1) & 0xFF) ^ (_RB if top else 0)


def rotl(b):
    """Rotate left by one byte (DESFire authentication: RndB' = rotl(RndB))."""
    return bytes(b[1:]) + bytes(b[:1])


def _subkeys(c):  # c: an ECB of _cipher (with k1, k2)
    if c.k1 is None:
        k = bytearray(16)
        c.encrypt_into(ZERO16, k)
        _dbl(k)
        c.k1 = bytearray(k)
        _dbl(k)
        c.k2 = k
    return c.k1, c.k2


def subkeys(key):
    """RFC 4493 subkeys (K1, K2) of `key`: L = E(key, 0), K1 = L<<1, K2 = K1<<1 (each shift xors in
    R_128 when the bit shifted out is 1)."""
    k1, k2 = _subkeys(_cipher(bytes(key)))
    return [bytes(k1), bytes(k2)]


def cbc_encrypt(key, iv, data):
    """AES-128-CBC of `data` (a multiple of 16 bytes, no padding added)."""
    n = len(data)
    if n % 16:
        raise ValueError("CBC data not a multiple of 16")
    c = _cipher(key if type(key) is bytes else bytes(key))
    out = bytearray(n)
    blk = bytearray(iv)
    for off in range(0, n, 16):
        _xor_into(blk, data, off)
        c.encrypt_into(blk, blk)
        out[off : off + 16] = blk
    return bytes(out)


def cbc_decrypt(key, iv, data):
    """Inverse of cbc_encrypt."""
    n = len(data)
    if n % 16:
        raise ValueError("CBC data not a multiple of 16")
    c = _cipher(key if type(key) is bytes else bytes(key))
    out = bytearray(n)
    blk = bytearray(16)
    mv = memoryview(data)
    for off in range(0, n, 16):
        c.decrypt_into(mv[off : off + 16], blk)
        _xor_into(blk, iv if off == 0 else data, 0 if off == 0 else off - 16)
        out[off : off + 16] = blk
    return bytes(out)


def cmac_iv(key, iv, msg, n=-1, tail=-1):
    """CMAC with a starting chaining value `iv` (DESFire EV1 keeps the running IV in the CMAC).

    With iv = 16 zero bytes this is exactly RFC 4493. The message is msg[0:n] (n < 0: all of msg)
    followed by the byte `tail` when tail >= 0 (a response's data then its status): no copy.
    """
    c = _cipher(key if type(key) is bytes else bytes(key))
    k1, k2 = _subkeys(c)
    if n < 0:
        n = len(msg)
    total = n + (tail >= 0)
    last_len = total % 16 or (16 if total else 0)
    full = total - last_len  # bytes processed as complete, non-final blocks
    blk = bytearray(iv)
    for off in range(0, full, 16):
        if off + 16 <= n:
            _xor_into(blk, msg, off)
        else:
            for i in range(16):
                blk[i] ^= msg[off + i] if off + i < n else tail
        c.encrypt_into(blk, blk)
    k = k1 if last_len == 16 else k2
    for i in range(16):  # the last block, padded (80 00..) unless complete, xored with K1 or K2
        j = full + i
        if i < last_len:
            b = msg[j] if j < n else tail
        else:
            b = 0x80 if i == last_len else 0
        blk[i] ^= b ^ k[i]
    c.encrypt_into(blk, blk)
    return bytes(blk)


def cmac(key, msg):
    """AES-CMAC (RFC 4493): 16 bytes."""
    return cmac_iv(key, ZERO16, msg)


def diversify_aes128(master_key, div_input):
    """NXP AN10922 AES-128 key diversification: CMAC over 0x01 || M, padded to 32 bytes.

    M is the diversification input (1..31 bytes). When 0x01 || M is shorter than 32 bytes it is padded
    with 80 00.. and the last block is xored with K2, else with K1; the result is the last block of the
    CBC encryption (IV zero). That is exactly AES-CMAC (RFC 4493) of 0x01 || M.
    """
    if not 0 < len(div_input) <= 31:
        raise ValueError("diversification input must be 1..31 bytes")
    return bytes(cmac(master_key, b"\x01" + bytes(div_input)))


def ev1_session_key(rnd_a, rnd_b):
    """EV1 AES session key: RndA[0:4] || RndB[0:4] || RndA[12:16] || RndB[12:16]."""
    return bytes(rnd_a[0:4]) + bytes(rnd_b[0:4]) + bytes(rnd_a[12:16]) + bytes(rnd_b[12:16])


def crc32_bytes(data):
    """The DESFire CRC32 of `data` as the 4 little-endian bytes the card sends (JAMCRC: the IEEE
    CRC-32 without the final xor; card_schema.crypto_host.crc32_desfire gives it as an int)."""
    return ((crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")
