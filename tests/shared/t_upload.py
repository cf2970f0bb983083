# The Wi-Fi upload format (card_schema/upload.py, upload_host.py) on both interpreters: the exact bytes
# of a batch head and an answer, round trips, and malformed bodies refused with one clear message.
import binascii

from card_schema import signed, signed_host, upload, upload_host


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def _refused(fn, body):
    try:
        fn(body)
    except ValueError as e:
        return str(e)
    return "accepted"


def _rec(seq):
    r = bytearray(64)
    r[4] = seq  # the record's seq (u32 LE at offset 4)
    return bytes(r)


def test_batch_head_bytes():
    body = upload_host.batch_body(1001, [_rec(5)], {"fares_ver": 7, "deny_ver": 2})
    want = (
        "544b4231"  # "TKB1"
        "e9030000"  # terminal 1001
        "07000000"  # fares_ver 7
        "02000000"  # deny_ver 2
        "00000000"  # deny_delta_ver 0
        "0100"  # count 1, no anchor
    )
    if _hex(body[: upload.BATCH_HEAD]) != want or len(body) != upload.BATCH_HEAD + 64:
        raise AssertionError(_hex(body[: upload.BATCH_HEAD]))
    return len(body)


def test_batch_round_trip_with_anchor():
    versions = {"fares_ver": 3, "deny_ver": 4, "deny_delta_ver": 5}
    body = upload_host.batch_body(7, [_rec(6), _rec(7)], versions, anchor=_rec(5))
    tid, vers, recs, anchor = upload_host.parse_batch(body)
    return [tid, sorted(vers.items()), [r[4] for r in recs], anchor[4], body[20:22] == b"\x03\x80"]


def test_malformed_batches_are_refused():
    good = upload_host.batch_body(7, [_rec(6)])
    return [
        _refused(upload_host.parse_batch, good[:10]),
        _refused(upload_host.parse_batch, b"XXXX" + good[4:]),
        _refused(upload_host.parse_batch, good + b"\x00"),
        _refused(upload_host.parse_batch, upload_host.batch_body(7, [_rec(9)], anchor=_rec(5))),
        _refused(upload_host.parse_batch, upload_host.batch_body(7, [], anchor=_rec(5))[:22]),
    ]


def test_answer_bytes_and_round_trip():
    blob = signed.seal(bytes(16), signed.KIND_FARES, 2, b"{}")
    body = upload_host.answer_body(12, 1700000000, [blob])
    acked, t, blobs = upload_host.parse_answer(body)
    want = (
        "544b4131"  # "TKA1"
        "0c000000"  # acked 12
        "00f15365"  # server time 1700000000
        "01"  # one blob
        "1f00"  # of 31 bytes (13 head + 2 payload + 16 CMAC)
    )
    if _hex(body[: upload.ANSWER_HEAD + 2]) != want:
        raise AssertionError(_hex(body[: upload.ANSWER_HEAD + 2]))
    return [acked, t, blobs == [blob]]


def test_malformed_answers_are_refused():
    body = upload_host.answer_body(1, 2, [b"abc"])
    return [
        _refused(upload_host.parse_answer, body[:5]),
        _refused(upload_host.parse_answer, b"TKB1" + body[4:]),
        _refused(upload_host.parse_answer, body[:-1]),
        _refused(upload_host.parse_answer, body + b"x"),
    ]


def test_version_keys_follow_the_kind_names():
    return [list(signed_host.VERSION_KEYS), sorted(signed_host.KINDS.items())]
