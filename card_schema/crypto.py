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

from card_schema.compat import aes_ecb_decrypt, aes_ecb_encrypt, const

ZERO16 = b"\x00" * 16
_RB = const(0x87)  # R_128 of RFC 4493: the constant xored in when the shifted-out bit is 1


def _xor_into(buf, data, off):
    # buf[0:16] ^= data[off:off+16], in place (no allocation)
    for i in range(16):
        buf[i] ^= data[off + i]


def rotl(b):
    """Rotate left by one byte (DESFire authentication: RndB' = rotl(RndB))."""
    return bytes(b[1:]) + bytes(b[:1])


def subkeys(key):
    """RFC 4493 subkeys (K1, K2) of `key`: L = E(key, 0), K1 = L<<1, K2 = K1<<1 (each shift xors in
    R_128 when the bit shifted out is 1)."""
    k = bytearray(aes_ecb_encrypt(key, ZERO16))
    out = []
    for _ in range(2):  # shift the 128-bit big-endian value left by one, in place (no long ints)
        msb = k[0] & 0x80
        for i in range(15):
            k[i] = ((k[i] << 1) | (k[i + 1] >> 7)) & 0xFF
        k[15] = ((k[15] << 1) & 0xFF) ^ (_RB if msb else 0)
        out.append(bytes(k))
    return out


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
    last_len = n % 16 or (16 if n else 0)
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
