# The Wi-Fi upload format (card_schema/upload.py, upload_host.py) on both interpreters: the exact bytes
# of a batch head and an answer head, encryption and the answer MAC the same on both, round trips, and
# malformed or forged bodies refused with one clear message.
import binascii

from card_schema import signed_host, upload, upload_host
from card_schema.compat import aes_cbc

WIRE = bytes(range(16))
JKEY = bytes(range(16, 32))
IV = bytes(range(32, 48))


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def _refused(fn, *args):
    try:
        fn(*args)
    except ValueError as e:
        return str(e)
    return "accepted"


def _rec(seq):
    r = bytearray(64)
    r[4] = seq  # the record's seq (u32 LE at offset 4)
    return bytes(r)


def test_batch_head_bytes():
    body = upload_host.batch_body(
        WIRE, 1001, [_rec(5)], {"fares_ver": 7, "deny_ver": 2}, part=(2, 9, 4096), iv=IV
    )
    want = (
        "544b4232"  # "TKB2"
        "e9030000"  # terminal 1001
        "07000000"  # fares_ver 7
        "02000000"  # deny_ver 2
        "00000000"  # deny_delta_ver 0
        "0100"  # count 1, no anchor
        "02"  # receiving a deny list
        "09000000"  # version 9
        "00100000"  # 4096 bytes of it held
        "202122232425262728292a2b2c2d2e2f"  # iv
    )
    if _hex(body[: upload.BATCH_HEAD]) != want or len(body) != upload.BATCH_HEAD + 64:
        raise AssertionError(_hex(body[: upload.BATCH_HEAD]))
    # the record is AES-128-CBC under the wire key from the iv: the same bytes on both interpreters
    return _hex(body[upload.BATCH_HEAD :][:16])


def test_records_are_encrypted_and_round_trip_with_anchor():
    versions = {"fares_ver": 3, "deny_ver": 4, "deny_delta_ver": 5}
    body = upload_host.batch_body(WIRE, 7, [_rec(6), _rec(7)], versions, anchor=_rec(5), iv=IV)
    b = upload_host.parse_batch(body)
    if _rec(6) in body:
        raise AssertionError("a record in clear")
    anchor, recs = upload_host.split(upload_host.records(WIRE, b, body), b)
    wrong = upload_host.records(bytes(16), b, body)
    return [
        b.terminal,
        sorted(b.versions.items()),
        b.count,
        b.anchored,
        [r[4] for r in recs],
        anchor[4],
        body[20:22] == b"\x03\x80",
        _refused(upload_host.split, wrong, b),
    ]


def test_malformed_batches_are_refused():
    good = upload_host.batch_body(WIRE, 7, [_rec(6)])
    gap = upload_host.batch_body(WIRE, 7, [_rec(9)], anchor=_rec(5))
    return [
        _refused(upload_host.parse_batch, good[:10]),
        _refused(upload_host.parse_batch, b"TKB1" + good[4:]),
        _refused(upload_host.parse_batch, good + b"\x00"),
        _refused(
            upload_host.split,
            upload_host.records(WIRE, upload_host.parse_batch(gap), gap),
            upload_host.parse_batch(gap),
        ),
        _refused(
            upload_host.parse_batch, upload_host.batch_body(WIRE, 7, [], anchor=_rec(5))[:47]
        ),
    ]


def test_answer_head_bytes_mac_and_chunk():
    chunk = (2, 9, 1000, 512, b"deny list bytes")
    body = upload_host.answer_body(JKEY, WIRE, IV, 12, 1700000000, chunk, iv=bytes(16))
    want = (
        "544b4132"  # "TKA2"
        "0c000000"  # acked 12
        "00f15365"  # server time 1700000000
        "02"  # a chunk of a deny list
        "09000000"  # version 9
        "e8030000"  # of 1000 bytes
        "00020000"  # at offset 512
        "0f000000"  # 15 bytes of it
        "00000000000000000000000000000000"  # the chunk's iv
    )
    if _hex(body[: upload.ANSWER_MACED]) != want:
        raise AssertionError(_hex(body[: upload.ANSWER_MACED]))
    acked, t, got = upload_host.parse_answer(JKEY, WIRE, IV, body)
    plain = aes_cbc(WIRE, bytes(16)).decrypt(body[upload.ANSWER_HEAD :])
    return [acked, t, got == chunk, len(body), _hex(body[45:53]), plain[:15] == chunk[4]]


def test_forged_and_malformed_answers_are_refused():
    body = upload_host.answer_body(JKEY, WIRE, IV, 1, 2, (1, 1, 3, 0, b"abc"))
    forged = bytearray(body)
    forged[4] ^= 1  # acked 1 -> 0
    return [
        _refused(upload_host.parse_answer, JKEY, WIRE, IV, body[:5]),
        _refused(upload_host.parse_answer, JKEY, WIRE, IV, b"TKB2" + body[4:]),
        _refused(upload_host.parse_answer, JKEY, WIRE, IV, bytes(forged)),
        _refused(upload_host.parse_answer, JKEY, WIRE, bytes(16), body),  # another request's
        _refused(upload_host.parse_answer, bytes(16), WIRE, IV, body),  # another terminal's
        _refused(upload_host.parse_answer, JKEY, WIRE, IV, body[:-1]),
        _refused(upload_host.parse_answer, JKEY, WIRE, IV, body + b"x"),
        upload_host.parse_answer(JKEY, WIRE, IV, upload_host.answer_body(JKEY, WIRE, IV, 5, 6)),
    ]


def test_version_keys_follow_the_kind_names():
    return [list(signed_host.VERSION_KEYS), sorted(signed_host.KINDS.items())]


def test_request_tag_is_the_journal_key_over_the_head():
    body = upload_host.batch_body(WIRE, 1001, [_rec(5)], iv=IV, journal_key=JKEY)
    iv = body[31:47]
    if iv[:8] != IV[:8] or not upload_host.authentic(JKEY, body):
        raise AssertionError("not tagged")
    if upload_host.authentic(WIRE, body) or upload_host.authentic(
        JKEY, upload_host.batch_body(WIRE, 1001, [_rec(5)], iv=IV)
    ):
        raise AssertionError("a tag without the journal key")
    changed = bytearray(body)
    changed[4] ^= 1  # another terminal id
    if upload_host.authentic(JKEY, bytes(changed)):
        raise AssertionError("the tag does not cover the head")
    return _hex(iv)
