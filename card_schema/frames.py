"""Sync frames: the serial line protocol between a terminal and the host (both ends use this module).

The terminal's USB serial port is also its MicroPython REPL, so a frame is one ASCII line with no
control byte in it: Ctrl-C, Ctrl-D and friends keep reaching the REPL, and a human watching the port
with a terminal program sees tidy lines.

    line    = "~" + base64(payload) + "\\n"
    payload = ver(1)=1 | type(1) | req_id(2 LE) | body | crc32(4 LE, binascii.crc32 of the bytes before)

Anything else on the wire (REPL echo, prints, line noise, a torn line) is not a frame: `decode` raises
`FrameError` and callers drop the line. Base64 is checked strictly (canonical encoding only) so both
interpreters accept exactly the same lines.

    line = encode(PULL, 7, pull_body(1, 11))       # b"~AQIHAAEAAAALAP....\\n"
    ftype, req_id, body = decode(line)
    from_seq, max_n = parse_pull(body)
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def _const(x):
        return x

    const = _const  # by assignment: mypy wants one signature for micropython.const


VERSION = 1

# requests (host -> terminal); the response type is request | 0x80, same req_id
IDENTIFY = 0x01
PULL = 0x02
ACK = 0x03
SET_CLOCK = 0x04
DIAG_LOG = 0x05
RESPONSE = 0x80
IDENTIFY_R = 0x81
RECORDS = 0x82
ACK_R = 0x83
SET_CLOCK_R = 0x84
DIAG_LOG_R = 0x85
ERROR = 0xFF

# ERROR body: code u8 + utf-8 message
ERR_UNKNOWN_TYPE = 1  # the terminal does not implement this request
ERR_BAD_REQUEST = 2  # malformed body
ERR_RANGE = 3  # a sequence number the journal does not have (ack beyond head)
ERR_INTERNAL = 4  # the handler failed (journal I/O...)
ERROR_NAMES = ("", "unknown request", "bad request", "out of range", "internal error")

HEADER = 4  # ver, type, req_id
TRAILER = 4  # crc32
OVERHEAD = HEADER + TRAILER
RECORD_SIZE = 64

# Longest line either side sends or accepts, "~" and "\n" included. Receivers drop longer lines.
MAX_LINE = 1024
# Records per RECORDS frame so the line stays under MAX_LINE:
# payload 8 + 1 + 11 * 64 = 713 bytes -> 4 * ceil(713 / 3) + 2 = 954 characters.
MAX_RECORDS = 11
MAX_PAYLOAD = (MAX_LINE - 2) // 4 * 3

_HDR = "<BBH"
_MIN_TIME = const(1577836800)  # 2020-01-01: SET_CLOCK refuses anything older (an unset host clock)


class FrameError(ValueError):
    """Not a valid frame (callers ignore the line) or a malformed body."""


def line_length(payload_len):
    """Characters of the line carrying a payload of this length ("~" and "\\n" included)."""
    return 2 + 4 * ((payload_len + 2) // 3)


def seal(buf, ftype, req_id, body_len):
    """Finish a frame whose body is already at buf[HEADER:HEADER+body_len]; return the line bytes.

    Lets the terminal build big responses in one preallocated buffer (no body copy)."""
    struct.pack_into(_HDR, buf, 0, VERSION, ftype, req_id & 0xFFFF)
    n = HEADER + body_len
    mv = memoryview(buf)
    struct.pack_into("<I", buf, n, binascii.crc32(mv[0:n]) & 0xFFFFFFFF)
    # b2a_base64 takes any buffer on both interpreters; the stub says bytes (a copy would allocate)
    return b"~" + binascii.b2a_base64(mv[0 : n + TRAILER])  # type: ignore[arg-type]


def encode(ftype, req_id, body=b""):
    """One frame as a line: b"~" + base64(payload) + b"\\n"."""
    n = len(body)
    buf = bytearray(OVERHEAD + n)
    buf[HEADER : HEADER + n] = body
    return seal(buf, ftype, req_id, n)


def decode(line):
    """Parse a line (with or without its line ending); return (type, req_id, body bytes).

    Raises FrameError for anything that is not a complete, intact version-1 frame."""
    if isinstance(line, str):
        try:
            line = line.encode()
        except UnicodeError:
            raise FrameError("not ascii")
    n = len(line)
    while n and line[n - 1] in b"\r\n":
        n -= 1
    if n < 2 or line[0] != 0x7E:  # "~"
        raise FrameError("no frame marker")
    if n > MAX_LINE:
        raise FrameError("line too long")
    text = bytes(line[1:n])
    if len(text) % 4:
        raise FrameError("bad base64 length")
    try:
        payload = binascii.a2b_base64(text)
    except ValueError:  # binascii.Error on CPython is a ValueError
        raise FrameError("bad base64")
    # Both decoders skip characters outside the alphabet; only the canonical encoding is a frame.
    if binascii.b2a_base64(payload)[:-1] != text:
        raise FrameError("bad base64")
    n = len(payload)
    if n < OVERHEAD:
        raise FrameError("frame too short")
    crc = struct.unpack_from("<I", payload, n - TRAILER)[0]
    if crc != binascii.crc32(memoryview(payload)[0 : n - TRAILER]) & 0xFFFFFFFF:
        raise FrameError("bad CRC")
    ver, ftype, req_id = struct.unpack_from(_HDR, payload, 0)
    if ver != VERSION:
        raise FrameError(f"frame version {ver}")
    return ftype, req_id, payload[HEADER : n - TRAILER]


def frame_at(line):
    """The candidate frame in a received line: from its last "~" (a REPL prompt or a torn line may
    precede it; "~" is not a base64 character). None when the line has no marker."""
    i = line.rfind(b"~")
    if i < 0:
        return None
    return line[i:]


# ---- bodies ----------------------------------------------------------------------------------


def u32_body(value):
    return struct.pack("<I", value)


def parse_u32(body):
    if len(body) != 4:
        raise FrameError("body must be a u32")
    return struct.unpack("<I", body)[0]


def pull_body(from_seq, max_n):
    """PULL request: from_seq u32, max u16."""
    return struct.pack("<IH", from_seq, max_n)


def parse_pull(body):
    if len(body) != 6:
        raise FrameError("PULL body must be 6 bytes")
    return struct.unpack("<IH", body)


def records_body(records):
    """RECORDS response: count u8, then count x 64-byte records."""
    n = len(records)
    if n > MAX_RECORDS:
        raise FrameError("too many records for one frame")
    out = bytearray(1 + n * RECORD_SIZE)
    out[0] = n
    for i in range(n):
        r = records[i]
        if len(r) != RECORD_SIZE:
            raise FrameError("record size")
        out[1 + i * RECORD_SIZE : 1 + (i + 1) * RECORD_SIZE] = r
    return bytes(out)


def parse_records(body):
    """List of 64-byte records of a RECORDS body."""
    if not len(body):
        raise FrameError("empty RECORDS body")
    n = body[0]
    if len(body) != 1 + n * RECORD_SIZE:
        raise FrameError("RECORDS body length does not match its count")
    return [bytes(body[1 + i * RECORD_SIZE : 1 + (i + 1) * RECORD_SIZE]) for i in range(n)]


def error_body(code, message):
    msg = message.encode() if isinstance(message, str) else bytes(message)
    return bytes([code & 0xFF]) + msg[:200]


def parse_error(body):
    """(code, message) of an ERROR body."""
    if not len(body):
        return 0, ""
    try:
        msg = bytes(body[1:]).decode()
    except UnicodeError:
        msg = repr(bytes(body[1:]))
    return body[0], msg


def error_name(code):
    return ERROR_NAMES[code] if 0 < code < len(ERROR_NAMES) else f"error {code}"


def check_time(unix):
    """SET_CLOCK sanity check: refuse times before 2020 (an unset clock on the other side)."""
    if unix < _MIN_TIME:
        raise FrameError(f"clock value {unix} is before 2020")
    return unix
