"""Wi-Fi upload, host side: whole batch and answer bodies, built and parsed (serve, bench, tests).

The format is card_schema.upload (the terminal packs and parses it in place with that module). Common
subset of MicroPython and CPython (tests/shared/t_upload.py runs it on both).

    body = upload_host.batch_body(wire, 1001, records, {"fares_ver": 3}, anchor=None, journal_key=jkey)
    head = upload_host.parse_batch(body)             # Batch: terminal, versions, count, iv, part...
    upload_host.authentic(jkey, body)                # the request's tag is the terminal's
    plain = upload_host.records(wire, head, body)    # count x 64 bytes, the anchor first if any
    ans = upload_host.answer_body(jkey, wire, head.iv, acked=10, server_time=now)
    acked, server_time, chunk = upload_host.parse_answer(jkey, wire, head.iv, ans)

`wire` is the terminal's wire key (keystore.wire_key), `jkey` its journal key (keystore.terminal_key).
"""

import struct

from card_schema import taprecord
from card_schema.compat import aes_cbc, urandom
from card_schema.crypto import cmac
from card_schema.signed_host import VERSION_KEYS
from card_schema.upload import (
    ANCHOR,
    ANSWER_FMT,
    ANSWER_HEAD,
    ANSWER_MACED,
    ANSWER_MAGIC,
    BATCH_FMT,
    BATCH_HEAD,
    BATCH_MAGIC,
    REQUEST_TAGGED,
)

MAX_RECORDS = 1024  # per batch the server takes (the firmware sends up to firmware/wifi.py _BATCH)
CHUNK = 16384  # config bytes per answer the server sends


class Batch:
    """A parsed batch head (and where its records are in the body)."""

    def __init__(self, terminal, versions, count, anchored, part, iv):
        self.terminal = terminal
        self.versions = versions  # {"fares_ver": n, "deny_ver": n, "deny_delta_ver": n}
        self.count = count  # records in the body, the anchor included
        self.anchored = anchored
        self.part = part  # (kind, version, offset) of the config blob the terminal is receiving
        self.iv = iv


def _pad16(n):
    return (n + 15) // 16 * 16


def request_tag(journal_key, body, nonce, mac=cmac):
    """The 8-byte tag of a batch head: cmac(journal key, head bytes 0..30 | nonce)[:8]."""
    return mac(journal_key, bytes(body[:REQUEST_TAGGED]) + bytes(nonce))[:8]


def authentic(journal_key, body, mac=cmac):
    """True when the batch head's iv carries the tag made with `journal_key` (card_schema.upload)."""
    iv = body[REQUEST_TAGGED : REQUEST_TAGGED + 16]
    return len(iv) == 16 and request_tag(journal_key, body, iv[:8], mac) == bytes(iv[8:])


def batch_body(
    wire_key,
    terminal_id,
    records,
    versions=None,
    anchor=None,
    part=(0, 0, 0),
    iv=None,
    journal_key=None,
):
    """A batch of `records` (64-byte journal records), optionally led by the `anchor` record,
    encrypted with the terminal's wire key; with `journal_key` the iv is nonce | tag (what the server
    answers: `iv` then gives the nonce, its first 8 bytes)."""
    versions = versions or {}
    records = ([anchor] if anchor is not None else []) + list(records)
    iv = bytes(iv) if iv is not None else urandom(16)
    fields = [int(versions.get(k, 0)) for k in VERSION_KEYS]
    fields.append(len(records) | (ANCHOR if anchor is not None else 0))
    head = struct.pack(BATCH_FMT, BATCH_MAGIC, terminal_id, *fields, *part, iv)
    if journal_key is not None:
        iv = iv[:8] + request_tag(journal_key, head, iv[:8])
        head = head[:REQUEST_TAGGED] + iv
    plain = b"".join(bytes(r) for r in records)
    return head + (aes_cbc(wire_key, iv).encrypt(plain) if plain else b"")


def parse_batch(body):
    """The Batch of a body (its head only: no key needed) or ValueError."""
    if len(body) < BATCH_HEAD:
        raise ValueError("batch too short")
    magic, tid, fv, dv, ddv, n, pk, pv, po, iv = struct.unpack_from(BATCH_FMT, body, 0)
    if magic != BATCH_MAGIC:
        raise ValueError("not a tapkit batch (TKB2)")
    anchored = bool(n & ANCHOR)
    n &= ~ANCHOR
    if n > MAX_RECORDS + 1 or (anchored and not n):
        raise ValueError("%d records in one batch (at most %d)" % (n, MAX_RECORDS))
    if len(body) != BATCH_HEAD + n * taprecord.SIZE:
        raise ValueError("batch length does not match its record count")
    versions = {VERSION_KEYS[0]: fv, VERSION_KEYS[1]: dv, VERSION_KEYS[2]: ddv}
    return Batch(tid, versions, n, anchored, (pk, pv, po), bytes(iv))


def records(wire_key, batch, body):
    """The decrypted records of a parsed batch: count x 64 bytes (the anchor first, if any)."""
    n = batch.count * taprecord.SIZE
    if not n:
        return b""
    return aes_cbc(wire_key, batch.iv).decrypt(memoryview(body)[BATCH_HEAD : BATCH_HEAD + n])


def split(plain, batch):
    """(anchor or None, [records]) of decrypted records; ValueError when the anchor is not the record
    before the batch."""
    size = taprecord.SIZE
    recs = [bytes(plain[i : i + size]) for i in range(0, len(plain), size)]
    anchor = recs.pop(0) if batch.anchored else None
    if anchor is not None and recs and taprecord.seq_of(anchor) + 1 != taprecord.seq_of(recs[0]):
        raise ValueError("the anchor is not the record before the batch")
    return anchor, recs


def answer_body(journal_key, wire_key, req_iv, acked, server_time, chunk=None, iv=None, mac=cmac):
    """The answer to the request whose iv is `req_iv`; `chunk` = (kind, version, total, offset,
    data) of a signed config blob the terminal lacks, or None. `mac`: the CMAC function (a server
    passes a C-speed one, card_schema.crypto_host.cmac_fast)."""
    kind, version, total, offset, data = chunk or (0, 0, 0, 0, b"")
    iv = bytes(iv) if iv is not None else urandom(16)
    head = struct.pack(
        ANSWER_FMT,
        ANSWER_MAGIC,
        acked,
        server_time,
        kind,
        version,
        total,
        offset,
        len(data),
        iv,
        b"",
    )[:ANSWER_MACED]
    out = head + mac(journal_key, bytes(req_iv) + head)[:8]
    if data:
        padded = bytes(data) + bytes(_pad16(len(data)) - len(data))
        out += aes_cbc(wire_key, iv).encrypt(padded)
    return out


def parse_answer(journal_key, wire_key, req_iv, body):
    """(acked, server_time, chunk or None) of an answer to the request of `req_iv`; chunk = (kind,
    version, total, offset, data). ValueError when it is not one, or its MAC does not verify."""
    if len(body) < ANSWER_HEAD:
        raise ValueError("answer too short")
    magic, acked, t, kind, version, total, offset, n, iv, mac = struct.unpack_from(
        ANSWER_FMT, body, 0
    )
    if magic != ANSWER_MAGIC:
        raise ValueError("not a tapkit answer (TKA2)")
    if cmac(journal_key, bytes(req_iv) + bytes(body[:ANSWER_MACED]))[:8] != mac:
        raise ValueError("answer MAC does not verify (not this terminal's server, or replayed)")
    if len(body) != ANSWER_HEAD + _pad16(n):
        raise ValueError("answer length does not match its chunk")
    chunk = None
    if kind:
        data = aes_cbc(wire_key, iv).decrypt(memoryview(body)[ANSWER_HEAD:]) if n else b""
        chunk = (kind, version, total, offset, bytes(data[:n]))
    return acked, t, chunk
