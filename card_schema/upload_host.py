"""Wi-Fi upload, host side: whole batch and answer bodies, built and parsed (serve, bench, tests).

The format is card_schema.upload (the terminal packs and parses it in place with that module).

    body = upload_host.batch_body(1001, records, {"fares_ver": 3}, anchor=None)
    terminal, versions, records, anchor = upload_host.parse_batch(body)
    acked, server_time, blobs = upload_host.parse_answer(upload_host.answer_body(10, now, []))
"""

import struct

from card_schema import taprecord
from card_schema.signed_host import VERSION_KEYS
from card_schema.upload import (
    ANCHOR,
    ANSWER_FMT,
    ANSWER_HEAD,
    ANSWER_MAGIC,
    BATCH_FMT,
    BATCH_HEAD,
    BATCH_MAGIC,
    BLOB_LEN_FMT,
)

MAX_RECORDS = 256  # per batch the server takes; the firmware sends far fewer (its heap)


def batch_body(terminal_id, records, versions=None, anchor=None):
    """A batch of `records` (64-byte journal records), optionally led by the `anchor` record."""
    versions = versions or {}
    records = ([anchor] if anchor is not None else []) + list(records)
    fields = [int(versions.get(k, 0)) for k in VERSION_KEYS]
    fields.append(len(records) | (ANCHOR if anchor is not None else 0))
    head = struct.pack(BATCH_FMT, BATCH_MAGIC, terminal_id, *fields)
    return head + b"".join(bytes(r) for r in records)


def parse_batch(body):
    """(terminal, versions dict, [records], anchor record or None) or ValueError."""
    if len(body) < BATCH_HEAD:
        raise ValueError("batch too short")
    magic, tid, fv, dv, ddv, n = struct.unpack_from(BATCH_FMT, body, 0)
    if magic != BATCH_MAGIC:
        raise ValueError("not a tapkit batch")
    anchored = bool(n & ANCHOR)
    n &= ~ANCHOR
    if n > MAX_RECORDS or (anchored and not n):
        raise ValueError("%d records in one batch (at most %d)" % (n, MAX_RECORDS))
    size = taprecord.SIZE
    if len(body) != BATCH_HEAD + n * size:
        raise ValueError("batch length does not match its record count")
    recs = [bytes(body[BATCH_HEAD + i * size : BATCH_HEAD + (i + 1) * size]) for i in range(n)]
    anchor = recs.pop(0) if anchored else None
    if anchor is not None and recs and taprecord.seq_of(anchor) + 1 != taprecord.seq_of(recs[0]):
        raise ValueError("the anchor is not the record before the batch")
    versions = {VERSION_KEYS[0]: fv, VERSION_KEYS[1]: dv, VERSION_KEYS[2]: ddv}
    return tid, versions, recs, anchor


def answer_body(acked, server_time, blobs):
    out = struct.pack(ANSWER_FMT, ANSWER_MAGIC, acked, server_time, len(blobs))
    for b in blobs:
        out += struct.pack(BLOB_LEN_FMT, len(b)) + bytes(b)
    return out


def parse_answer(body):
    """(acked, server_time, [blobs]) or ValueError."""
    if len(body) < ANSWER_HEAD:
        raise ValueError("answer too short")
    magic, acked, t, n = struct.unpack_from(ANSWER_FMT, body, 0)
    if magic != ANSWER_MAGIC:
        raise ValueError("not a tapkit answer")
    pos = ANSWER_HEAD
    blobs = []
    for _ in range(n):
        if pos + 2 > len(body):
            raise ValueError("answer length does not match its blobs")
        ln = struct.unpack_from(BLOB_LEN_FMT, body, pos)[0]
        blobs.append(bytes(body[pos + 2 : pos + 2 + ln]))
        pos += 2 + ln
    if pos != len(body):
        raise ValueError("answer length does not match its blobs")
    return acked, t, blobs
