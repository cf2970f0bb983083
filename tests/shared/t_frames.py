# Sync frames (card_schema/frames.py, frames_host.py) on both interpreters: the exact line of known frames, round trips,
# and every kind of damage rejected. Each test returns a value both interpreters must agree on.
import binascii
import struct

from card_schema import frames, frames_host


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def _rejected(line):
    try:
        frames.decode(line)
    except frames.FrameError:
        return True
    return False


def test_known_pull_frame():
    line = frames.encode(frames.PULL, 0x1234, frames_host.pull_body(5, 11))
    payload = binascii.a2b_base64(line[1:])
    expect = "01" + "02" + "3412" + "05000000" + "0b00"  # ver, PULL, req_id LE, from_seq 5, max 11
    crc = struct.pack("<I", binascii.crc32(binascii.unhexlify(expect)) & 0xFFFFFFFF)
    if _hex(payload) != expect + _hex(crc):
        raise AssertionError("payload " + _hex(payload))
    if line != b"~AQI0EgUAAAALANazQWA=\n":
        raise AssertionError(f"line {line!r}")
    return line


def test_known_identify_frame():
    # the smallest frame: header + crc, no body
    line = frames.encode(frames.IDENTIFY, 1)
    if line != b"~AQEBAA/jIYE=\n":
        raise AssertionError(f"line {line!r}")
    return frames.decode(line)


def test_roundtrip_every_type():
    out = []
    for t in (
        frames.IDENTIFY,
        frames.PULL,
        frames.ACK,
        frames.SET_CLOCK,
        frames.DIAG_LOG,
        0x81,
        0x82,
        0x83,
        0x84,
        0x85,
        frames.ERROR,
    ):
        for body in (b"", b"\x00", b"ab", b"xyz", bytes(range(256))):
            for rid in (0, 1, 0x7FFF, 0xFFFF):
                line = frames.encode(t, rid, body)
                got = frames.decode(line)
                if got != (t, rid, body):
                    raise AssertionError(f"roundtrip {got!r}")
                if frames.decode(line[:-1]) != got or frames.decode(line[:-1] + b"\r\n") != got:
                    raise AssertionError("line ending")
                for c in line:
                    if c < 0x20 and c != 0x0A:
                        raise AssertionError("control byte in line")
                out.append(len(line))
    return sum(out)


def test_records_body_max_fits_line():
    recs = [bytes([i]) * 64 for i in range(frames.MAX_RECORDS)]
    line = frames.encode(frames_host.RECORDS, 9, frames_host.records_body(recs))
    if len(line) >= frames.MAX_LINE:
        raise AssertionError("line too long")
    _t, _rid, body = frames.decode(line)
    if frames_host.parse_records(body) != recs:
        raise AssertionError("records")
    if (
        frames_host.line_length(frames.OVERHEAD + 1 + 64 * (frames.MAX_RECORDS + 1))
        <= frames.MAX_LINE
    ):
        raise AssertionError("MAX_RECORDS is not the largest that fits")
    if frames_host.line_length(frames.OVERHEAD + frames.MAX_BODY + 1) <= frames.MAX_LINE:
        raise AssertionError("MAX_BODY is not the largest that fits")
    if frames_host.line_length(frames.OVERHEAD + frames.MAX_BODY) > frames.MAX_LINE:
        raise AssertionError("MAX_BODY does not fit")
    if frames_host.line_length(frames.OVERHEAD + frames.MAX_REQUEST_BODY) > frames.MAX_REQUEST:
        raise AssertionError("MAX_REQUEST_BODY does not fit the console budget")
    if (
        frames_host.line_length(frames.OVERHEAD + frames.MAX_REQUEST_BODY + 1)
        <= frames.MAX_REQUEST
    ):
        raise AssertionError("MAX_REQUEST_BODY is not the largest that fits")
    if frames.MAX_REQUEST >= 259:
        raise AssertionError("MAX_REQUEST must fit the ESP32's 259-byte console ring buffer")
    return len(line), frames_host.line_length(frames.OVERHEAD + 1 + 64 * frames.MAX_RECORDS)


def test_body_helpers():
    out = []
    out.append(frames.unpack("<IH", frames_host.pull_body(0xFFFFFFFF, 0xFFFF)))
    out.append(frames_host.parse_u32(frames_host.u32_body(1700000000)))
    out.append(frames_host.parse_error(bytes([frames.ERR_RANGE]) + b"ack 12 beyond head 10"))
    out.append(frames_host.parse_error(b"\x04\xff"))  # not utf-8: shown as its repr
    out.append(frames_host.parse_error(b""))
    out.append([frames_host.error_name(c) for c in range(6)])
    out.append(frames_host.parse_records(frames_host.records_body([])))
    for bad in (
        lambda: frames.unpack("<IH", b"\x00" * 5),
        lambda: frames.unpack("<IH", b"\x00" * 7),
        lambda: frames_host.parse_u32(b"\x00" * 3),
        lambda: frames_host.parse_records(b""),
        lambda: frames_host.parse_records(b"\x02" + bytes(64)),
        lambda: frames_host.records_body([bytes(64)] * (frames.MAX_RECORDS + 1)),
        lambda: frames_host.records_body([bytes(63)]),
    ):
        try:
            bad()
            out.append("accepted")
        except frames.FrameError:
            out.append("rejected")
    return out


def test_decode_takes_the_frame_at_the_last_marker():
    line = frames.encode(frames.ACK, 3, frames_host.u32_body(4))
    want = (frames.ACK, 3, frames_host.u32_body(4))
    return [
        frames.decode(b">>> " + line) == want,
        frames.decode(b"~AQI0Eg" + line) == want,  # a torn line followed by a whole one
        frames.decode(line[:-1] + line) == want,  # two frames glued: the last one counts
        frames.decode(bytearray(line)) == want,
        frames.decode(memoryview(line)[:-1]) == want,
        _rejected(b"hello\n"),
        _rejected(line + b"~"),  # a marker after the frame hides it
    ]


def test_encode_refuses_a_body_beyond_max_line():
    ok = frames.encode(frames.DIAG_LOG | frames.RESPONSE, 1, bytes(frames.MAX_BODY))
    try:
        frames.encode(frames.DIAG_LOG | frames.RESPONSE, 1, bytes(frames.MAX_BODY + 1))
        refused = False
    except ValueError as e:
        refused = not isinstance(e, frames.FrameError)  # a sender bug, not a bad frame
    if len(ok) > frames.MAX_LINE or not refused:
        raise AssertionError("MAX_BODY")
    return len(ok), frames.decode(ok)[2] == bytes(frames.MAX_BODY)


def test_every_corruption_rejected():
    good = frames.encode(frames.ACK, 0x0102, frames_host.u32_body(42))
    body = good[1:-1]
    payload = bytearray(binascii.a2b_base64(body))
    cases = []
    # each bit of the payload flipped: the CRC catches it (header, body and CRC bytes alike)
    flips = 0
    for i in range(len(payload) * 8):
        p = bytearray(payload)
        p[i // 8] ^= 1 << (i % 8)
        if _rejected(b"~" + binascii.b2a_base64(p)):
            flips += 1
    cases.append(("bit flips rejected", flips, len(payload) * 8))
    # every base64 character replaced by another valid one
    subs = 0
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i in range(len(body)):
        if body[i] == 0x3D:  # "="
            continue
        b = bytearray(body)
        b[i] = alphabet[(alphabet.find(bytes([b[i]])) + 1) % 64]
        subs += _rejected(b"~" + bytes(b) + b"\n")
    cases.append(("substitutions rejected", subs))
    if subs != len(body) - body.count(b"="):
        raise AssertionError("a substituted character got through")
    # wrong version with a correct CRC
    p = bytearray(payload[:-4])
    p[0] = 2
    p += struct.pack("<I", binascii.crc32(p) & 0xFFFFFFFF)
    cases.append(("version 2", _rejected(b"~" + binascii.b2a_base64(p))))
    # too short: 7 payload bytes with a valid-looking layout
    short = bytearray(b"\x01\x03\x02")
    short += struct.pack("<I", binascii.crc32(short) & 0xFFFFFFFF)
    cases.append(("short", _rejected(b"~" + binascii.b2a_base64(short))))
    cases.append(("empty payload", _rejected(b"~\n")))
    cases.append(("no marker", _rejected(body + b"\n")))
    cases.append(("other marker", _rejected(b"#" + body + b"\n")))
    cases.append(("truncated", _rejected(good[:-5])))
    cases.append(("truncated by 4", _rejected(good[:-5] + b"\n")))
    cases.append(("extra char", _rejected(good[:-1] + b"A\n")))
    cases.append(("space inside", _rejected(b"~" + body[:4] + b" " + body[4:] + b"\n")))
    cases.append(("junk char inside", _rejected(b"~" + body[:4] + b"!!!!" + body[4:] + b"\n")))
    cases.append(("bad padding", _rejected(b"~" + body[:-1] + b"A\n")))
    cases.append(("non-ascii", _rejected(b"~" + body[:4] + b"\xff" + body[5:] + b"\n")))
    cases.append(("too long", _rejected(b"~" + b"AAAA" * 300 + b"\n")))
    cases.append(("repl text", _rejected(b">>> print(1)\r\n")))
    cases.append(("control bytes", _rejected(b"\x03\x04\r\n")))
    for c in cases[1:]:
        if c[-1] is not True and c[0] != "substitutions rejected":
            raise AssertionError(f"accepted: {c[0]}")
    if flips != len(payload) * 8:
        raise AssertionError("a bit flip got through")
    return cases


def test_no_repl_control_byte_on_the_wire():
    # The port is also the MicroPython REPL: Ctrl-A..E (raw REPL, soft reset, paste mode) and Ctrl-C
    # must never appear in a frame. Every line is "~", base64 characters and "\n", whatever the body.
    allowed = b"~\n=+/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    bodies = [b"", bytes(range(256))[:200], b"\x01\x02\x03\x04\x05" * 100, b"\xff" * 700]
    seen = 0
    for ftype in (frames.IDENTIFY, frames.PULL, frames.INSTALL, frames_host.RECORDS, frames.ERROR):
        for req_id in (0, 1, 3, 0x0303, 0xFFFF):
            for body in bodies:
                line = frames.encode(ftype, req_id, body)
                for ch in line:
                    if ch not in allowed:
                        raise AssertionError("byte %d in a frame" % ch)
                seen += len(line)
    return seen
