"""Signed config blobs, host side: the kinds' names as the CLI, IDENTIFY and the store spell them.

The blob format and the one name table (`signed.NAMES`) are card_schema.signed (terminals load it);
this module derives what only the host and the tests need.

    from card_schema import signed_host
    signed_host.KINDS["deny-delta"]          # signed.KIND_DENY_DELTA
    signed_host.version_key(1)               # "fares_ver"
    kind, version = signed_host.peek(blob)   # the head only, nothing verified
"""

import struct

from card_schema.signed import FMT, HEADER, MAGIC, NAMES

# CLI spelling (`tapkit tariff sign --kind`, `tapkit publish --kind`) -> kind
KINDS = {n.replace("_", "-"): k for k, n in enumerate(NAMES) if n}
CLI_NAMES = {k: n for n, k in KINDS.items()}
# the terminal's info / IDENTIFY keys of the installed versions, in kind order
VERSION_KEYS = tuple(n + "_ver" for n in NAMES[1:])


def known(kind):
    return 0 < kind < len(NAMES)


def version_key(kind):
    """ "fares_ver"...: where the terminal reports the installed version of this kind."""
    if not known(kind):
        raise ValueError("unknown config kind %d" % kind)
    return NAMES[kind] + "_ver"


def peek(blob):
    """(kind, version) from a blob's head, nothing verified; ValueError when it is not a blob."""
    if len(blob) < HEADER:
        raise ValueError("signed blob too short")
    magic, kind, version, _ = struct.unpack_from(FMT, blob, 0)
    if magic != MAGIC:
        raise ValueError("not a signed blob")
    return kind, version


def seal_fast(key, kind, version, payload):
    """signed.seal with the CMAC of `cryptography` (C speed: a server signs an 800 KB deny list per
    terminal in about a millisecond); CPython only, byte-identical to signed.seal."""
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    body = struct.pack(FMT, MAGIC, kind, version, len(payload)) + bytes(payload)
    c = cmac.CMAC(algorithms.AES(bytes(key)))
    c.update(body)
    return body + c.finalize()
