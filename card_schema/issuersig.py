"""The issuer's signature on a card (file 0x05): the card office signs the card's UID and its
ceiling, the most value the office has put on the card (its balance after the issue or the latest
top-up), with the issuer's RSA-2048 key (RSASSA-PKCS1-v1_5, SHA-256, e = 65537). The private key
never leaves the office's keystore; a terminal holds only the public key and refuses a card
without a valid signature, or with a balance above its ceiling (docs/architecture.md, "Keys on a
terminal cannot mint value"). A terminal loads this module on a card's first tap only and forgets
it after; signing and names are in card_schema.issuersig_host.

File 0x05 (std data, 264 bytes, MAC, read: debit key, write: master key):

    off size
      0    1  version 1
      1    1  key id (the keystore's signing key; a terminal knows one)
      2    2  reserved 0
      4    4  ceiling, Rial, u32 little endian
      8  256  signature, big endian (RFC 8017) over b"TKS1" || UID(7) || bytes 0..7

    ceiling = issuersig.check(key, uid, raw)   # key: key id(1) || modulus(256); -1: not valid
"""

import hashlib

from card_schema.compat import const

# the layout's owner is card_schema.issuersig_host (private copies here: no names on a terminal)
_SIZE = const(264)  # = card_schema.issuersig_host.SIZE
_HEAD = const(8)  # = card_schema.issuersig_host.HEAD
_K = const(256)  # modulus bytes (RSA-2048)
_MAGIC = const(b"TKS1")
# 0x00 ends the padding, then the DER DigestInfo of SHA-256 (RFC 8017 9.2, note 1)
_T = const(b"\x00\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20")


def digest(uid, data):
    """SHA-256 of the signed message: b"TKS1" || UID || the file's first 8 bytes (`data`)."""
    h = hashlib.sha256(_MAGIC)
    h.update(uid)
    h.update(data)
    return h.digest()


def check(key, uid, raw):
    """The ceiling this issuer key signed for this UID, or -1 (no valid signature). `raw`: the
    file's 264 bytes. The big ints live only inside this call (a 2048-bit pow: ~600 bytes)."""
    if len(raw) != _SIZE or raw[0] != 1 or raw[1] != key[0] or len(key) != _K + 1:
        return -1
    mv = memoryview(raw)
    n = int.from_bytes(memoryview(key)[1:], "big")
    s = int.from_bytes(mv[_HEAD:], "big")
    if s >= n:
        return -1
    em = pow(s, 65537, n).to_bytes(_K, "big")
    del s, n  # the big ints are garbage before the digest is made
    # EM = 00 01 FF..FF 00 DigestInfo H (RFC 8017 9.2): compared whole, never parsed
    ok = (
        em[0] == 0
        and em[1] == 1
        and em.count(b"\xff", 2, _K - 52) == _K - 54
        and em[_K - 52 : _K - 32] == _T
        and em[_K - 32 :] == digest(uid, mv[0:_HEAD])
    )
    return int.from_bytes(mv[4:_HEAD], "little") if ok else -1
