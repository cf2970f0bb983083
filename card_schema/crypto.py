"""DESFire EV1 cryptography over the AES-128 block of `card_schema.compat`: CBC, CMAC (RFC 4493),
AN10922 key diversification, EV1 session keys and the DESFire CRC32.

Pure Python in the common subset of MicroPython and CPython, so the terminal, the emulator and the card
office compute byte-identical results. Only the single-block AES engine is platform specific.

    from card_schema.crypto import cmac, cbc_encrypt, diversify_aes128
    mac = cmac(key, b"message")                      # 16 bytes
    k = diversify_aes128(master, uid + aid + b"sys")  # the card's own key
"""

import binascii

from card_schema.compat import aes_ecb_decrypt, aes_ecb_encrypt

ZERO16 = b"\x00" * 16
_RB = 0x87  # R_128 of RFC 4493: the constant xored in when the shifted-out bit is 1


def xor(a, b):
    """a XOR b over the length of the shorter one (new bytes)."""
    n = min(len(a), len(b))
    out = bytearray(n)
    for i in range(n):
        out[i] = a[i] ^ b[i]
    return bytes(out)


def _xor_into(buf, data, off):
    # buf[0:16] ^= data[off:off+16], in place (no allocation)
    for i in range(16):
        buf[i] ^= data[off + i]


def rotl(b):
    """Rotate left by one byte (DESFire authentication: RndB' = rotl(RndB))."""
    return bytes(b[1:]) + bytes(b[:1])


def rotr(b):
    """Rotate right by one byte (inverse of rotl)."""
    return bytes(b[-1:]) + bytes(b[:-1])


def _shl1(b):
    # the 128-bit value shifted left by one bit (RFC 4493 subkey generation)
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        v = b[i]
        out[i] = ((v << 1) & 0xFF) | carry
        carry = v >> 7
    return out


def subkeys(key):
    """RFC 4493 subkeys (K1, K2) of `key` as bytearrays."""
    L = aes_ecb_encrypt(key, ZERO16)
    k1 = _shl1(L)
    if L[0] & 0x80:  # the bit shifted out of L
        k1[15] ^= _RB
    k2 = _shl1(k1)
    if k1[0] & 0x80:
        k2[15] ^= _RB
    return k1, k2


def cbc_encrypt(key, iv, data):
    """AES-128-CBC of `data` (a multiple of 16 bytes, no padding added)."""
    n = len(data)
    if n % 16:
        raise ValueError("CBC data not a multiple of 16")
    out = bytearray(n)
    blk = bytearray(iv)
    for off in range(0, n, 16):
        _xor_into(blk, data, off)
        blk = aes_ecb_encrypt(key, blk)
        out[off : off + 16] = blk
        blk = bytearray(blk)
    return bytes(out)


def cbc_decrypt(key, iv, data):
    """Inverse of cbc_encrypt."""
    n = len(data)
    if n % 16:
        raise ValueError("CBC data not a multiple of 16")
    out = bytearray(n)
    prev = bytes(iv)
    for off in range(0, n, 16):
        c = bytes(data[off : off + 16])
        p = bytearray(aes_ecb_decrypt(key, c))
        _xor_into(p, prev, 0)
        out[off : off + 16] = p
        prev = c
    return bytes(out)


def cmac_iv(key, iv, msg):
    """CMAC with a starting chaining value `iv` (DESFire EV1 keeps the running IV in the CMAC).

    With iv = 16 zero bytes this is exactly RFC 4493.
    """
    k1, k2 = subkeys(key)
    n = len(msg)
    if n and n % 16 == 0:
        last_len = 16
    else:
        last_len = n % 16
    full = n - last_len  # bytes processed as complete, non-final blocks
    blk = bytearray(iv)
    for off in range(0, full, 16):
        _xor_into(blk, msg, off)
        blk = bytearray(aes_ecb_encrypt(key, blk))
    last = bytearray(16)
    last[0:last_len] = msg[full:n]
    if last_len == 16:
        _xor_into(last, k1, 0)
    else:
        last[last_len] = 0x80
        _xor_into(last, k2, 0)
    _xor_into(blk, last, 0)
    return aes_ecb_encrypt(key, blk)


def cmac(key, msg):
    """AES-CMAC (RFC 4493): 16 bytes."""
    return cmac_iv(key, ZERO16, msg)


def cmac8(key, msg):
    """CMAC truncated to the 8 bytes at odd indexes 1, 3, .., 15 (NXP "MACt").

    Note: DESFire EV1 secure messaging (card_schema.desfire) sends the *first* 8 bytes of the CMAC, as
    real EV1 cards do; this odd-byte truncation is the one EV2 secure messaging uses.
    """
    m = cmac(key, msg)
    return bytes(m[i] for i in range(1, 16, 2))


def diversify_aes128(master_key, div_input):
    """NXP AN10922 AES-128 key diversification: CMAC over 0x01 || M, padded to 32 bytes.

    M is the diversification input (1..31 bytes). When 0x01 || M is shorter than 32 bytes it is padded
    with 80 00.. and the last block is xored with K2, else with K1; the result is the last block of the
    CBC encryption (IV zero).
    """
    m = bytes(div_input)
    if not 0 < len(m) <= 31:
        raise ValueError("diversification input must be 1..31 bytes")
    k1, k2 = subkeys(master_key)
    d = bytearray(32)
    d[0] = 0x01
    d[1 : 1 + len(m)] = m
    if len(m) < 31:
        d[1 + len(m)] = 0x80
        sub = k2
    else:
        sub = k1
    for i in range(16):
        d[16 + i] ^= sub[i]
    return bytes(cbc_encrypt(master_key, ZERO16, d)[16:32])


def ev1_session_key(rnd_a, rnd_b):
    """EV1 AES session key: RndA[0:4] || RndB[0:4] || RndA[12:16] || RndB[12:16]."""
    return bytes(rnd_a[0:4]) + bytes(rnd_b[0:4]) + bytes(rnd_a[12:16]) + bytes(rnd_b[12:16])


def crc32_desfire(data):
    """The DESFire CRC32 (JAMCRC: the IEEE CRC-32 without the final xor), as an int.

    Appended to data little endian: `struct.pack("<I", crc32_desfire(data))`.
    """
    return (binascii.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF


def crc32_bytes(data):
    """crc32_desfire(data) as the 4 little-endian bytes the card sends."""
    c = crc32_desfire(data)
    return bytes((c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, (c >> 24) & 0xFF))
